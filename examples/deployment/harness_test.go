package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/taipattern/taikit/examples/internal/datadir"
	"github.com/taipattern/taikit/examples/internal/svctest"
)

// childArgsEnv, when set, makes the test binary run the service itself
// with these arguments (see TestMain): the crash test runs it as a process
// of its own, to kill it.
const childArgsEnv = "DEPLOYMENT_TEST_CHILD_ARGS"

func TestMain(m *testing.M) {
	svctest.RunAsChild(childArgsEnv, "deployment", func(args []string) error {
		return run(context.Background(), args, os.Getenv, os.Stderr)
	})
	goleak.VerifyTestMain(m)
}

// fastArgs make rollouts of a few hundred milliseconds.
// Every health sample counts, however few requests it rests on: the
// simulated fleet's numbers are exact.
var fastArgs = []string{"-stages", "canary:5:150ms,staging:25:150ms,prod:100:0s", "-health-interval", "25ms", "-min-requests", "0"}

// syncBuffer holds a service's logs for a test to read.
type syncBuffer = svctest.SyncBuffer

// testService is the service on a loopback port, in this process.
type testService struct {
	*Service
	URL  string
	logs *syncBuffer
	// shutdown stops it as main does, once: waiting requests and event
	// streams end, then the server, then the service. The test's cleanup
	// calls it too.
	shutdown func()
	// clock is the NATS server's clock as the service reads it from the
	// region locks' bucket, unless the test wraps that bucket itself.
	clock *serverClock
}

// locksAged makes the region locks of deployment id look taken by as
// much earlier, as the NATS server's clock tells their age.
func (ts *testService) locksAged(id string, by time.Duration) { ts.clock.age(id, by) }

// startService starts the service with a fresh data dir and these flags.
func startService(t testing.TB, args ...string) *testService {
	t.Helper()
	return startServiceIn(t, t.TempDir(), args...)
}

func startServiceIn(t testing.TB, dir string, args ...string) *testService {
	t.Helper()
	return startServiceWith(t, dir, nil, args...)
}

// startServiceWith starts the service with these flags, and what set
// changes in the configuration.
func startServiceWith(t testing.TB, dir string, set func(*Config), args ...string) *testService {
	t.Helper()
	cfg, err := parseConfig(append([]string{"-data-dir", dir, "-instance", "test"}, args...), func(string) string { return "" })
	require.NoError(t, err)
	clock := &serverClock{}
	cfg.WrapLocks = clock.wrap
	if set != nil {
		set(&cfg)
	}
	logs := &syncBuffer{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	lock, err := datadir.Acquire(dir)
	require.NoError(t, err)
	svc, err := newService(context.Background(), cfg, log, lock)
	require.NoError(t, err)
	srv := httptest.NewServer(svc.Handler())
	var once sync.Once
	shutdown := func() {
		once.Do(func() {
			svc.closeWaiters()
			srv.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			require.NoError(t, svc.Close(ctx))
		})
	}
	t.Cleanup(func() {
		shutdown()
		if t.Failed() {
			t.Logf("service log:\n%s", logs.String())
		}
	})
	return &testService{Service: svc, URL: srv.URL, logs: logs, shutdown: shutdown, clock: clock}
}

// reply is a decoded response.
type reply struct {
	Code   int
	Header http.Header
	Body   []byte
}

func (r reply) deployment(t *testing.T) Deployment {
	t.Helper()
	var d Deployment
	require.NoError(t, json.Unmarshal(r.Body, &d), "body: %s", r.Body)
	return d
}

func (r reply) errorBody(t *testing.T) map[string]any {
	t.Helper()
	var e struct {
		Error map[string]any `json:"error"`
	}
	require.NoError(t, json.Unmarshal(r.Body, &e), "body: %s", r.Body)
	require.NotNil(t, e.Error, "body: %s", r.Body)
	return e.Error
}

// helperT is what do needs of a test: a *testing.T, or a *rapid.T in a
// model test.
type helperT interface {
	require.TestingT
	Helper()
}

// do sends a request with a JSON body (a string sent as is) and headers
// given as name, value pairs.
func do(t helperT, method, url string, body any, header ...string) reply {
	t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		raw, err := json.Marshal(b)
		require.NoError(t, err)
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequest(method, url, rd)
	require.NoError(t, err)
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return reply{Code: resp.StatusCode, Header: resp.Header, Body: raw}
}

func deploy(t *testing.T, base string, req map[string]any, header ...string) reply {
	t.Helper()
	return do(t, "POST", base+"/deploy", req, header...)
}

// waitFor polls GET /deploy/{id} until cond holds or 30 s pass.
func waitFor(t *testing.T, base, id string, cond func(Deployment) bool) Deployment {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		r := do(t, "GET", base+"/deploy/"+id, nil)
		require.Equal(t, 200, r.Code, "%s", r.Body)
		d := r.deployment(t)
		if cond(d) {
			return d
		}
		if time.Now().After(deadline) {
			t.Fatalf("deployment %s never reached the state; last: %s", id, r.Body)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func ended(d Deployment) bool { return terminal(d.Status) }

var readyLine = regexp.MustCompile(`msg="deployment service ready" .*\bapi=(http://[^ ]+)/deploy`)

// startChild starts the service on dir in a child process and waits for it
// to be ready.
func startChild(t *testing.T, dir string, args ...string) *svctest.Child {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	return svctest.StartChild(ctx, t, childArgsEnv, "-data-dir "+dir+" -addr 127.0.0.1:0 -instance crash "+strings.Join(args, " "), readyLine)
}
