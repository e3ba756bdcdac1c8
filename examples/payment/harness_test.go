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
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/taipattern/taikit/examples/internal/svctest"
)

func TestMain(m *testing.M) {
	svctest.RunAsChild(childArgsEnv, "payment", func(args []string) error {
		return run(context.Background(), args, os.Getenv, os.Stderr)
	})
	goleak.VerifyTestMain(m)
}

// manualClock is the service's clock (Config.Now) in tests: it moves only
// when told to. It drives the fraud rules, the per-customer limit,
// idempotency expiry and alert evaluation; the breaker keeps real time
// (tests shorten Config.BreakerOpen instead).
type manualClock struct {
	mu  sync.Mutex
	now time.Time
}

func newManualClock() *manualClock {
	return &manualClock{now: time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)}
}

// Now returns the clock's time.
func (c *manualClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Advance moves the clock forward by d.
func (c *manualClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// testService is a running service on a loopback port.
type testService struct {
	*Service
	URL   string
	http  *httptest.Server
	clock *manualClock
	logs  *syncBuffer
}

// syncBuffer holds a service's logs for a test to read.
type syncBuffer = svctest.SyncBuffer

// testConfig is the default configuration of a test service: embedded NATS
// on no port, data under the test's temp dir, a manual clock.
func testConfig(t *testing.T) Config {
	t.Helper()
	cfg, err := parseConfig([]string{"-data-dir", t.TempDir(), "-instance", "test"}, func(string) string { return "" })
	require.NoError(t, err)
	cfg.Clock = newManualClock()
	return cfg
}

func startService(t *testing.T, cfg Config) *testService {
	t.Helper()
	logs := &syncBuffer{}
	log := slog.New(slog.NewTextHandler(io.MultiWriter(logs, testWriter{t}), &slog.HandlerOptions{Level: slog.LevelWarn}))
	svc, err := NewService(context.Background(), cfg, log)
	require.NoError(t, err)
	srv := httptest.NewUnstartedServer(svc.Handler())
	srv.Config.MaxHeaderBytes = 64 << 10
	svc.ConfigureServer(srv.Config)
	srv.Start()
	ts := &testService{Service: svc, URL: srv.URL, http: srv, logs: logs}
	ts.clock, _ = cfg.Clock.(*manualClock)
	t.Cleanup(func() {
		srv.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		require.NoError(t, svc.Close(ctx))
	})
	return ts
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	if os.Getenv("PAYMENT_TEST_LOGS") != "" {
		w.t.Log(string(bytes.TrimRight(p, "\n")))
	}
	return len(p), nil
}

// reply is a decoded response.
type reply struct {
	Code   int
	Header http.Header
	Body   map[string]any
	Raw    []byte
}

func (r reply) str(key string) string {
	s, _ := r.Body[key].(string)
	return s
}

func (r reply) errField(key string) string {
	e, _ := r.Body["error"].(map[string]any)
	s, _ := e[key].(string)
	return s
}

func (ts *testService) do(t *testing.T, method, path string, body any, headers ...string) reply {
	t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = bytes.NewReader([]byte(b))
	case []byte:
		rd = bytes.NewReader(b)
	default:
		raw, err := json.Marshal(b)
		require.NoError(t, err)
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequest(method, ts.URL+path, rd)
	require.NoError(t, err)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := ts.http.Client().Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	r := reply{Code: resp.StatusCode, Header: resp.Header, Raw: raw}
	if len(raw) > 0 && raw[0] == '{' {
		require.NoError(t, json.Unmarshal(raw, &r.Body), string(raw))
	}
	return r
}

// pay posts a payment for customer of amount USD with extra fields.
func (ts *testService) pay(t *testing.T, customer string, amount float64, extra map[string]any, headers ...string) reply {
	t.Helper()
	body := map[string]any{"amount": amount, "customer_id": customer, "currency": "USD", "merchant_id": "merc_456"}
	for k, v := range extra {
		body[k] = v
	}
	return ts.do(t, http.MethodPost, "/payment", body, headers...)
}

func writeFile(path, s string) error { return os.WriteFile(path, []byte(s), 0o644) }

// confirmed reports whether GET /payment/{id} finds the payment confirmed.
func (ts *testService) confirmed(t *testing.T, id string) bool {
	t.Helper()
	r := ts.do(t, http.MethodGet, "/payment/"+id, nil)
	return r.Code == http.StatusOK && r.Body["confirmed"] == true
}
