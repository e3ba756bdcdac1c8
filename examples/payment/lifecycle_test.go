package main

import (
	"bufio"
	"context"
	"crypto/sha256"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/examples/internal/datadir"
	"github.com/taipattern/taikit/examples/internal/svctest"
)

// dirDigest maps every file under dir but the embedded NATS store (which
// the running service's JetStream may rewrite on its own) to the SHA-256
// of its contents.
func dirDigest(t *testing.T, dir string) map[string][32]byte {
	t.Helper()
	out := map[string][32]byte{}
	require.NoError(t, filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		if d.IsDir() {
			if rel == "nats" {
				return filepath.SkipDir
			}
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		out[rel] = sha256.Sum256(b)
		return nil
	}))
	return out
}

// TestSecondStartChangesNothing starts the service a second time on the
// data dir of a running one, and once on a fresh dir with the port busy:
// both fail at once with a message saying why, and neither changes a file
// of the running service nor creates any state.
func TestSecondStartChangesNothing(t *testing.T) {
	cfg := testConfig(t)
	ts := startService(t, cfg)
	first := ts.pay(t, "cust_first", 10, nil)
	require.Equal(t, http.StatusOK, first.Code, string(first.Raw))
	require.NoError(t, ts.audit.Flush(context.Background()))
	before := dirDigest(t, cfg.DataDir)
	require.Contains(t, before, "audit-test.jsonl")
	require.Contains(t, before, "LOCK")

	busy, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer busy.Close()
	noEnv := func(string) string { return "" }
	start := func(dir string) error {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		return run(ctx, []string{"-data-dir", dir, "-addr", busy.Addr().String(), "-instance", "test"}, noEnv, testWriter{t})
	}

	err = start(cfg.DataDir)
	require.ErrorIs(t, err, datadir.ErrInUse)
	assert.Contains(t, err.Error(), "process "+strconv.Itoa(os.Getpid()), "names the process holding it")
	assert.Equal(t, before, dirDigest(t, cfg.DataDir), "the running service's files are untouched")

	fresh := filepath.Join(t.TempDir(), "fresh")
	err = start(fresh)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "cannot listen on -addr "+busy.Addr().String())
	assert.NoDirExists(t, fresh, "the data dir the failed start made is taken away: no NATS store, no audit trail, no lock file")
	l, err := datadir.Acquire(fresh)
	require.NoError(t, err, "the failed start released the directory")
	require.NoError(t, l.Release())

	// The first service goes on as before.
	got := ts.do(t, http.MethodGet, "/payment/"+first.str("transaction_id"), nil)
	assert.Equal(t, http.StatusOK, got.Code, string(got.Raw))
	assert.Equal(t, http.StatusOK, ts.pay(t, "cust_second", 10, nil).Code)
}

// TestSecondSignalStopsAtOnce stops the service while a payment waits on a
// slow gateway, then signals it again: the first signal waits for the
// payment, the second ends the process at once, as an operator pressing
// Ctrl-C twice expects.
func TestSecondSignalStopsAtOnce(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	child := svctest.StartChild(ctx, t, childArgsEnv,
		"-data-dir "+t.TempDir()+" -addr 127.0.0.1:0 -instance second -request-timeout 5m -gateway-latency 1m", readyLine)
	go func() {
		body := strings.NewReader(`{"amount":10,"customer_id":"c1","currency":"USD","merchant_id":"m1"}`)
		if resp, err := http.Post(child.URL+"/payment", "application/json", body); err == nil {
			resp.Body.Close()
		}
	}()
	for !strings.Contains(get(ctx, t, child.URL+"/metrics"), "\ntaikit_signals_in_flight{kind=\"payment\"} 1\n") {
		select {
		case <-ctx.Done():
			t.Fatal("the payment never reached the gateway")
		case <-time.After(20 * time.Millisecond):
		}
	}
	require.NoError(t, child.Cmd.Process.Signal(syscall.SIGTERM))
	child.WaitLog(ctx, t, `msg="shutting down"`)
	err := child.Stop(ctx, t, os.Interrupt)
	require.Error(t, err, "the second signal ends the process")
	assert.NotContains(t, child.Logs.String(), "msg=stopped", "it did not wait for the payment")
}

// get returns the body at url.
func get(ctx context.Context, t *testing.T, url string) string {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	require.NoError(t, err)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return string(b)
}

// TestSlowBodyStillHearsTheAnswer sends a payment whose body arrives late,
// as from a client on a slow link: the server's write timeout runs from the
// end of the request's headers, so a body that took most of it left too
// little for the payment, and the client was cut off without an answer
// from a payment that ran. The answer's deadline counts from the body.
func TestSlowBodyStillHearsTheAnswer(t *testing.T) {
	cfg := testConfig(t)
	cfg.RequestTimeout = time.Second
	cfg.GatewayDelay = 400 * time.Millisecond
	ts := startService(t, cfg)
	srv := newHTTPServer(cfg, ts.Service, slog.New(slog.DiscardHandler))
	// The body and the payment together outlast this write timeout; the
	// service's own (-request-timeout and 10 s) would take a body 10 s
	// late to show the same.
	srv.WriteTimeout = 800 * time.Millisecond
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	t.Cleanup(func() {
		require.NoError(t, srv.Close())
		require.ErrorIs(t, <-served, http.ErrServerClosed)
	})

	conn, err := net.Dial("tcp", ln.Addr().String())
	require.NoError(t, err)
	defer conn.Close()
	body := `{"amount": 3, "customer_id": "slow_link", "currency": "USD", "merchant_id": "m"}`
	_, err = io.WriteString(conn, "POST /payment HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"+
		"Content-Length: "+strconv.Itoa(len(body))+"\r\n\r\n")
	require.NoError(t, err)
	time.Sleep(600 * time.Millisecond) // the client's slow link, not a wait for the server
	_, err = io.WriteString(conn, body)
	require.NoError(t, err)
	require.NoError(t, conn.SetReadDeadline(time.Now().Add(time.Minute)))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	require.NoError(t, err, "the payment ran, and its answer must reach the client")
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode, string(raw))
	require.Contains(t, string(raw), `"status":"SUCCESS"`)
}

// TestPaymentBegunAfterShutdownIsRefused sends a payment whose body
// arrives after the server began to shut down: it is refused with 503 and
// nothing is charged. Run, it could outlast the server's wait for the
// requests in flight, and be cut off as the service closed its stores,
// charged and never recorded.
func TestPaymentBegunAfterShutdownIsRefused(t *testing.T) {
	cfg := testConfig(t)
	ts := startService(t, cfg)
	srv := newHTTPServer(cfg, ts.Service, slog.New(slog.DiscardHandler))
	entered := make(chan struct{}, 1)
	handler := srv.Handler
	srv.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		entered <- struct{}{}
		handler.ServeHTTP(w, r)
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()

	conn, err := net.Dial("tcp", ln.Addr().String())
	require.NoError(t, err)
	defer conn.Close()
	body := `{"amount": 3, "customer_id": "late", "currency": "USD", "merchant_id": "m"}`
	_, err = io.WriteString(conn, "POST /payment HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"+
		"Content-Length: "+strconv.Itoa(len(body))+"\r\n\r\n")
	require.NoError(t, err)
	// The request is being served, its body awaited: Shutdown waits for
	// it.
	<-entered
	shutdown := make(chan error, 1)
	go func() { shutdown <- srv.Shutdown(context.Background()) }()
	require.Eventually(t, ts.draining.Load, 10*time.Second, time.Millisecond, "the server began to shut down")

	_, err = io.WriteString(conn, body)
	require.NoError(t, err)
	require.NoError(t, conn.SetReadDeadline(time.Now().Add(time.Minute)))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	require.NoError(t, err)
	raw, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode, string(raw))
	assert.Contains(t, string(raw), `"code":"shutting_down"`)
	assert.Equal(t, "1", resp.Header.Get("Retry-After"))
	assert.Zero(t, ts.gateway.Calls(), "nothing charged")
	require.NoError(t, <-shutdown)
	require.ErrorIs(t, <-served, http.ErrServerClosed)
}

// TestStartWithLimitsBeyondTheDisk: byte limits larger than the embedded
// server's storage (its share of the data dir's free space) fail the
// start with JetStream's refusal and what to do about it: which limits
// to lower, where to free space.
func TestStartWithLimitsBeyondTheDisk(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	dir := filepath.Join(t.TempDir(), "data")
	err := run(ctx, []string{"-data-dir", dir, "-addr", "127.0.0.1:0", "-instance", "test", "-payments-max-bytes", "1000000000GiB"},
		func(string) string { return "" }, testWriter{t})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "insufficient storage resources available")
	assert.Contains(t, err.Error(), "JetStream cannot set aside the stores' byte limits (-payments-max-bytes, -idempotency-max-bytes, "+
		"-confirm-max-bytes, -customer-state-max-bytes): the embedded server's storage is part of the free space on the file system of "+dir)
}

// Close waits for the commits retried in the background, whose number
// may rise while it waits (a request cut off at shutdown finishing its
// payment), and once closed none begins: a sync.WaitGroup allows neither
// an Add racing its Wait at zero nor tells a late Add it is too late.
func TestBackgroundCommitsCountedWhileWaitedFor(t *testing.T) {
	var c backgroundCommits
	require.NoError(t, c.wait(context.Background()), "none running")
	require.True(t, c.begin())
	waited := make(chan error, 1)
	go func() { waited <- c.wait(context.Background()) }()
	require.True(t, c.begin(), "a commit begins while Close waits")
	c.end()
	select {
	case err := <-waited:
		t.Fatalf("the wait ended with a commit running: %v", err)
	case <-time.After(20 * time.Millisecond):
	}
	c.end()
	require.NoError(t, <-waited)

	ctx, cancel := context.WithCancel(context.Background())
	require.True(t, c.begin())
	cancel()
	require.ErrorIs(t, c.wait(ctx), context.Canceled, "the wait ends with its context")
	c.close()
	assert.False(t, c.begin(), "closed: no commit begins")
	c.end()
	require.NoError(t, c.wait(context.Background()))
}
