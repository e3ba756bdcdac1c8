package main

import (
	"bufio"
	"context"
	"encoding/base64"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/examples/internal/svc"
	"github.com/taipattern/taikit/kanban/natsembed"
)

func TestSecureDefaults(t *testing.T) {
	env := func(kv ...string) func(string) string {
		return func(k string) string {
			for i := 0; i+1 < len(kv); i += 2 {
				if kv[i] == k {
					return kv[i+1]
				}
			}
			return ""
		}
	}
	dir := t.TempDir()
	c, err := parseConfig([]string{"-data-dir", dir}, env())
	require.NoError(t, err)
	assert.Equal(t, "127.0.0.1:3001", c.Addr, "no token: loopback only")
	assert.Contains(t, c.AllowedHosts, "localhost")
	assert.NotContains(t, c.AllowedHosts, "*")

	c, err = parseConfig([]string{"-data-dir", dir}, env("API_TOKEN", "t0ken"))
	require.NoError(t, err)
	assert.Equal(t, ":3001", c.Addr, "a token: every interface")

	_, err = parseConfig([]string{"-data-dir", dir, "-addr", ":3001"}, env())
	assert.ErrorContains(t, err, "-addr :3001 listens beyond loopback without -api-token")
	_, err = parseConfig([]string{"-data-dir", dir, "-addr", "0.0.0.0:3001"}, env())
	assert.ErrorContains(t, err, "without -api-token")

	_, err = parseConfig([]string{"-data-dir", dir, "-api-token", "same", "-admin-token", "same"}, env())
	assert.ErrorContains(t, err, "the admin token must differ from the API token")

	file := filepath.Join(t.TempDir(), "admin")
	require.NoError(t, os.WriteFile(file, []byte("from-a-file\n"), 0o600))
	c, err = parseConfig([]string{"-data-dir", dir}, env("API_TOKEN", "api", "ADMIN_TOKEN_FILE", file))
	require.NoError(t, err)
	assert.Equal(t, "from-a-file", c.AdminToken.Reveal())
	_, err = parseConfig([]string{"-data-dir", dir, "-admin-token", "x", "-admin-token-file", file}, env())
	assert.ErrorContains(t, err, "both set")

	c, err = parseConfig([]string{"-data-dir", dir, "-allowed-hosts", "pay.example, localhost"}, env())
	require.NoError(t, err)
	assert.Equal(t, []string{"pay.example", "localhost"}, c.AllowedHosts)
}

func TestTokensGuardTheAPIAndTheAdmin(t *testing.T) {
	cfg := testConfig(t)
	cfg.APIToken, cfg.AdminToken = svc.NewSecret("api-token"), svc.NewSecret("admin-token")
	ts := startService(t, cfg)
	api := []string{"Authorization", "bearer api-token"} // the scheme in any case
	admin := []string{"Authorization", "Bearer admin-token"}

	r := ts.pay(t, "cust_tok", 5, nil, api...)
	require.Equal(t, http.StatusOK, r.Code, string(r.Raw))
	id := r.str("transaction_id")
	assert.Equal(t, http.StatusUnauthorized, ts.do(t, http.MethodGet, "/payment/"+id, nil).Code, "reading a payment needs the token too")
	assert.Equal(t, http.StatusUnauthorized, ts.do(t, http.MethodGet, "/payment/"+id, nil, admin...).Code, "the admin token is not the API token")
	assert.Equal(t, http.StatusOK, ts.do(t, http.MethodGet, "/payment/"+id, nil, api...).Code)
	assert.Equal(t, http.StatusUnauthorized, ts.pay(t, "cust_tok", 5, nil).Code)

	assert.Equal(t, http.StatusUnauthorized, ts.do(t, http.MethodPost, "/admin/gateway", `{"failure_rate": 1}`, api...).Code, "the API token cannot run chaos")
	assert.Equal(t, http.StatusOK, ts.do(t, http.MethodGet, "/admin/gateway", nil, admin...).Code)
	basic := "Basic " + base64.StdEncoding.EncodeToString([]byte("ops:api-token"))
	assert.Equal(t, http.StatusUnauthorized, ts.do(t, http.MethodGet, "/andon/api/state", nil, "Authorization", basic).Code)
	assert.Equal(t, http.StatusOK, ts.do(t, http.MethodGet, "/andon/api/state", nil, admin...).Code)

	// Every refusal is counted: 3 API 401s, 1 admin 401, 1 board 401.
	assert.Equal(t, 5.0, testutil.ToFloat64(ts.badRequests.WithLabelValues("401")))
	bad := ts.pay(t, "cust_tok", 5, nil, append(api, "Idempotency-Key", strings.Repeat("k", 256))...)
	assert.Equal(t, http.StatusBadRequest, bad.Code)
	assert.Equal(t, 1.0, testutil.ToFloat64(ts.badRequests.WithLabelValues("400")), "a bad header too")
}

// Without an admin token the cord cannot be pulled from the board, nor the
// gateway changed: only the state can be read.
func TestNoAdminTokenNoCord(t *testing.T) {
	ts := startService(t, testConfig(t))
	r := ts.do(t, http.MethodPost, "/andon/api/cord", `{"action": "pull", "reason": "prank", "who": "mallory"}`, "X-Andon-Board", "1")
	assert.Equal(t, http.StatusForbidden, r.Code, string(r.Raw))
	stopped, _ := ts.line.Stopped()
	assert.False(t, stopped)
	assert.Equal(t, http.StatusOK, ts.do(t, http.MethodGet, "/andon/api/state", nil).Code)
	assert.Equal(t, http.StatusForbidden, ts.do(t, http.MethodPost, "/admin/gateway", `{"failure_rate": 1}`).Code)
}

func TestHostAllowList(t *testing.T) {
	ts := startService(t, testConfig(t))
	for host, want := range map[string]int{"127.0.0.1": 200, "localhost:3001": 200, "evil.example": 421, "localhost.evil.example": 421} {
		req, err := http.NewRequest(http.MethodGet, ts.URL+"/healthz", nil)
		require.NoError(t, err)
		req.Host = host
		resp, err := ts.http.Client().Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		assert.Equal(t, want, resp.StatusCode, host)
	}
}

// inProcess runs the service as main does, in this process, until stop.
type inProcess struct {
	url  string
	logs *syncBuffer
	stop func() error // ends it as SIGTERM would, and waits for run to return
}

func runInProcess(t *testing.T, args []string) *inProcess {
	t.Helper()
	logs := &syncBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, append([]string{"-addr", "127.0.0.1:0"}, args...), func(string) string { return "" }, logs)
	}()
	p := &inProcess{logs: logs}
	var once sync.Once
	var runErr error
	p.stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case runErr = <-done:
			case <-time.After(60 * time.Second):
				t.Fatalf("the service did not stop\n%s", logs.String())
			}
		})
		return runErr
	}
	t.Cleanup(func() { _ = p.stop() })
	deadline := time.Now().Add(30 * time.Second)
	for p.url == "" {
		sc := bufio.NewScanner(strings.NewReader(logs.String()))
		for sc.Scan() {
			if m := readyLine.FindStringSubmatch(sc.Text()); m != nil {
				p.url = m[1]
			}
		}
		select {
		case err := <-done:
			t.Fatalf("the service ended before it was ready: %v\n%s", err, logs.String())
		case <-time.After(5 * time.Millisecond):
		}
		require.True(t, time.Now().Before(deadline), "the service was not ready in time\n%s", logs.String())
	}
	return p
}

func TestSecretsNeverLogged(t *testing.T) {
	// A server that takes any credentials: the test is of what the
	// service logs of the ones it is given.
	natsSrv, err := natsembed.Start(context.Background(), natsembed.Options{StoreDir: t.TempDir(), NoAuth: true})
	require.NoError(t, err)
	t.Cleanup(func() { stopNATS(t, natsSrv) })
	natsURL := strings.Replace(natsSrv.ClientURL(), "nats://", "nats://payments:nats-s3cret@", 1)
	p := runInProcess(t, []string{"-data-dir", t.TempDir(), "-instance", "test", "-nats-url", natsURL,
		"-api-token", "api-s3cret", "-api-token-previous", "previous-s3cret", "-admin-token", "admin-s3cret", "-log-level", "debug"})
	require.NoError(t, p.stop())
	logs := p.logs.String()
	assert.Contains(t, logs, "payments:xxxxx@127.0.0.1", "the NATS server is named")
	for _, secret := range []string{"nats-s3cret", "api-s3cret", "previous-s3cret", "admin-s3cret"} {
		assert.NotContains(t, logs, secret)
	}
	assert.Equal(t, "redis://xxxxx@h:6379,nats://u:xxxxx@h", svc.RedactURL("redis://tok@h:6379,nats://u:p@h"))
}

var sseState = regexp.MustCompile(`(?m)^event: state$`)

// TestShutdownWithOpenBoardStreams: board tabs left open do not hold a
// graceful shutdown: the streams end as it begins.
func TestShutdownWithOpenBoardStreams(t *testing.T) {
	p := runInProcess(t, []string{"-data-dir", t.TempDir(), "-instance", "test"})
	client := &http.Client{Timeout: time.Minute}
	r, err := client.Post(p.url+"/payment", "application/json", strings.NewReader(`{"amount": 3, "customer_id": "c", "currency": "USD", "merchant_id": "m"}`))
	require.NoError(t, err)
	r.Body.Close()
	require.Equal(t, http.StatusOK, r.StatusCode)

	var ended sync.WaitGroup
	for range 20 {
		resp, err := client.Get(p.url + "/andon/api/events")
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, resp.StatusCode)
		br := bufio.NewReader(resp.Body)
		line, err := br.ReadString('\n')
		require.NoError(t, err)
		require.True(t, sseState.MatchString(line), "the stream is live: %q", line)
		ended.Go(func() {
			defer resp.Body.Close()
			for {
				if _, err := br.ReadString('\n'); err != nil {
					return
				}
			}
		})
	}
	start := time.Now()
	require.NoError(t, p.stop())
	took := time.Since(start)
	ended.Wait()
	assert.Less(t, took, 5*time.Second, "shutdown with 20 board streams open")
	assert.Contains(t, p.logs.String(), `msg=stopped`)
}

func TestBoardStreamsAreCapped(t *testing.T) {
	ts := startService(t, testConfig(t))
	var bodies []*http.Response
	defer func() {
		for _, b := range bodies {
			b.Body.Close()
		}
	}()
	for i := range maxBoardStreams {
		resp, err := ts.http.Client().Get(ts.URL + "/andon/api/events")
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, resp.StatusCode, "stream %d", i)
		bodies = append(bodies, resp)
	}
	over := ts.do(t, http.MethodGet, "/andon/api/events", nil)
	assert.Equal(t, http.StatusServiceUnavailable, over.Code)
	assert.Equal(t, "5", over.Header.Get("Retry-After"))
	assert.Contains(t, string(over.Raw), "too many live pages; poll api/state")
	assert.True(t, readmeCodes(t)[over.errField("code")], "error code %q of a stream past the cap is not in the README's tables of error codes", over.errField("code"))
	assert.Equal(t, http.StatusOK, ts.do(t, http.MethodGet, "/andon/api/state", nil).Code, "the page polls instead")
	bodies[0].Body.Close()
	bodies = bodies[1:]
	require.Eventually(t, func() bool {
		resp, err := ts.http.Client().Get(ts.URL + "/andon/api/events")
		if err != nil {
			return false
		}
		if resp.StatusCode != http.StatusOK {
			resp.Body.Close()
			return false
		}
		bodies = append(bodies, resp)
		return true
	}, 10*time.Second, 10*time.Millisecond, "a stream that ends frees its slot")
}

// The debug server serves the profiles, but not the command line, which
// holds the tokens given as flags.
func TestDebugServerHidesTheCommandLine(t *testing.T) {
	srv := httptest.NewServer(debugMux("127.0.0.1:6060"))
	defer srv.Close()
	get := func(path string) (int, string) {
		resp, err := srv.Client().Get(srv.URL + path)
		require.NoError(t, err)
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		return resp.StatusCode, string(b)
	}
	code, body := get("/debug/pprof/cmdline")
	assert.Equal(t, http.StatusNotFound, code, body)
	assert.NotContains(t, body, os.Args[0])
	code, _ = get("/debug/pprof/")
	assert.Equal(t, http.StatusOK, code, "the index")
	code, _ = get("/debug/pprof/heap?debug=1")
	assert.Equal(t, http.StatusOK, code, "a profile")
}

// TestDebugServerAnswersLoopbackHostsOnly: the profiles are served to a
// request naming a loopback host (or the listener's own), and refused
// with 421 to one naming any other: a page whose name an attacker points
// at 127.0.0.1 (DNS rebinding) had the visitor's browser read them.
func TestDebugServerAnswersLoopbackHostsOnly(t *testing.T) {
	srv := httptest.NewServer(debugMux("127.0.0.2:6060"))
	defer srv.Close()
	for host, want := range map[string]int{
		"localhost:6060": http.StatusOK, "127.0.0.1:6060": http.StatusOK, "[::1]:6060": http.StatusOK,
		"127.0.0.2:6060": http.StatusOK, "LOCALHOST": http.StatusOK,
		"rebind.example:6060": http.StatusMisdirectedRequest, "10.0.0.1:6060": http.StatusMisdirectedRequest,
	} {
		req, err := http.NewRequest(http.MethodGet, srv.URL+"/debug/pprof/goroutine?debug=1", nil)
		require.NoError(t, err)
		req.Host = host
		resp, err := srv.Client().Do(req)
		require.NoError(t, err)
		_ = resp.Body.Close()
		assert.Equal(t, want, resp.StatusCode, "Host %s", host)
	}
}
