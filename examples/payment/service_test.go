package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/andon"
	"github.com/taipattern/taikit/examples/internal/svc"
	"github.com/taipattern/taikit/kanban"
)

func TestHappyPath(t *testing.T) {
	ts := startService(t, testConfig(t))
	r := ts.pay(t, "cust_123", 99.99, map[string]any{"metadata": map[string]string{"order": "A-1"}})
	require.Equal(t, http.StatusOK, r.Code, string(r.Raw))
	assert.Equal(t, StatusSuccess, r.str("status"))
	assert.True(t, strings.HasPrefix(r.str("transaction_id"), "txn_"))
	assert.Equal(t, 99.99, r.Body["amount"])
	assert.Equal(t, "USD", r.str("currency"))
	assert.Equal(t, 0.0, r.Body["fraud_score"])
	assert.NotEmpty(t, r.str("timestamp"))
	assert.Contains(t, r.Body, "processing_time_ms")
	gw, _ := r.Body["gateway_response"].(map[string]any)
	assert.Equal(t, "approved", gw["message"])
	assert.Len(t, r.str("trace_id"), 32)
	assert.EqualValues(t, 1, ts.gateway.Calls())
}

// A payment's metadata is kept with it: its answer and GET /payment/{id}
// return it as sent.
func TestMetadataIsStoredAndReturned(t *testing.T) {
	ts := startService(t, testConfig(t))
	meta := map[string]any{"order": "A-1", "note": "gift — wrap it"}
	r := ts.pay(t, "cust_meta", 12.5, map[string]any{"metadata": meta})
	require.Equal(t, http.StatusOK, r.Code, string(r.Raw))
	assert.Equal(t, meta, r.Body["metadata"], "in the answer")
	got := ts.do(t, http.MethodGet, "/payment/"+r.str("transaction_id"), nil)
	require.Equal(t, http.StatusOK, got.Code, string(got.Raw))
	assert.Equal(t, meta, got.Body["metadata"], "in the stored payment")

	none := ts.pay(t, "cust_meta", 1, nil)
	require.Equal(t, http.StatusOK, none.Code, string(none.Raw))
	assert.NotContains(t, none.Body, "metadata", "none sent, none answered")
}

// A metadata value sent as JSON null reads as absent, as a null amount or
// location field does: the payment's answer and GET /payment/{id} leave
// its key out, never turn it into an empty string, and it is the same
// request as one without it.
func TestMetadataNullValueReadsAsAbsent(t *testing.T) {
	ts := startService(t, testConfig(t))
	body := func(meta string) string {
		return `{"amount": 1, "customer_id": "c", "currency": "USD", "merchant_id": "m", "metadata": ` + meta + `}`
	}
	for _, tc := range []struct {
		meta string
		want any // the answer's metadata; nil: none
	}{
		{`{"note": null, "order": "A-1"}`, map[string]any{"order": "A-1"}},
		{`{"note": null}`, nil},
		{`null`, nil},
	} {
		t.Run(tc.meta, func(t *testing.T) {
			r := ts.do(t, http.MethodPost, "/payment", body(tc.meta))
			require.Equal(t, http.StatusOK, r.Code, string(r.Raw))
			got := ts.do(t, http.MethodGet, "/payment/"+r.str("transaction_id"), nil)
			require.Equal(t, http.StatusOK, got.Code, string(got.Raw))
			for name, answer := range map[string]reply{"POST": r, "GET": got} {
				meta, sent := answer.Body["metadata"]
				if tc.want == nil {
					assert.False(t, sent, "%s: no metadata answered: %s", name, answer.Raw)
					continue
				}
				assert.Equal(t, tc.want, meta, "%s: %s", name, answer.Raw)
			}
		})
	}
	key := "Idempotency-Key"
	first := ts.do(t, http.MethodPost, "/payment", body(`{"note": null, "order": "A-1"}`), key, "null-note")
	require.Equal(t, http.StatusOK, first.Code, string(first.Raw))
	again := ts.do(t, http.MethodPost, "/payment", body(`{"order": "A-1"}`), key, "null-note")
	require.Equal(t, http.StatusOK, again.Code, string(again.Raw))
	assert.Equal(t, first.str("transaction_id"), again.str("transaction_id"), "a null value is no value: the same request")
	other := ts.do(t, http.MethodPost, "/payment", body(`{"note": "", "order": "A-1"}`), key, "null-note")
	assert.Equal(t, http.StatusUnprocessableEntity, other.Code, "an empty string is a value: another request: %s", other.Raw)
}

// The fraud rules through the service, with the built-in CEL rules and
// with the Go rules: the same answers.
func TestFraudRules(t *testing.T) {
	for _, rules := range []string{fraudRulesEmbedded, fraudRulesGo} {
		t.Run(rules, func(t *testing.T) { testFraudRules(t, rules) })
	}
}

func testFraudRules(t *testing.T, rules string) {
	cfg := testConfig(t)
	cfg.Blacklist = "customer:cust_bad,merchant:merc_bad,country:KP"
	cfg.CustomerLimit = 1000 // the velocity rule, not the limiter, is under test
	cfg.FraudRules = rules
	require.NoError(t, cfg.validate())
	ts := startService(t, cfg)
	clock := ts.clock

	blocked := func(t *testing.T, r reply, reason string) {
		t.Helper()
		require.Equal(t, http.StatusPaymentRequired, r.Code, string(r.Raw))
		assert.Equal(t, StatusFraudBlocked, r.str("status"))
		assert.GreaterOrEqual(t, r.Body["fraud_score"], 0.5)
		assert.Contains(t, string(r.Raw), reason)
		assert.Nil(t, r.Body["gateway_response"])
		assert.Equal(t, "fraud_blocked", r.errField("code"))
	}
	t.Run("blacklisted customer", func(t *testing.T) {
		blocked(t, ts.pay(t, "cust_bad", 10, nil), "customer is blacklisted")
	})
	t.Run("blacklisted merchant", func(t *testing.T) {
		r := ts.do(t, http.MethodPost, "/payment", map[string]any{"amount": 10, "customer_id": "c1", "currency": "USD", "merchant_id": "merc_bad"})
		blocked(t, r, "merchant is blacklisted")
	})
	t.Run("blacklisted customer scores 1", func(t *testing.T) {
		r := ts.pay(t, "cust_bad", 10, nil)
		assert.Equal(t, 1.0, r.Body["fraud_score"])
	})
	t.Run("blacklisted country", func(t *testing.T) {
		blocked(t, ts.pay(t, "c2", 10, map[string]any{"location": map[string]any{"country": "kp"}}), "country KP is blacklisted")
	})
	flagged := func(t *testing.T, r reply, score float64, reasons ...string) {
		t.Helper()
		require.Equal(t, http.StatusOK, r.Code, string(r.Raw))
		assert.Equal(t, StatusSuccess, r.str("status"), "flagged, and charged")
		assert.InDelta(t, score, r.Body["fraud_score"], 1e-9)
		for _, reason := range reasons {
			assert.Contains(t, string(r.Raw), reason)
		}
	}
	t.Run("amount", func(t *testing.T) {
		flagged(t, ts.pay(t, "a1", 4000, nil), 0)
		flagged(t, ts.pay(t, "a2", 4000.01, nil), 0.15, "amount 4000.01 near the 5000.00 limit")
		flagged(t, ts.pay(t, "a3", 5000, nil), 0.15, "near the 5000.00 limit")
		flagged(t, ts.pay(t, "a4", 5000.01, nil), 0.4, "amount 5000.01 over 5000.00", "5000.01 USD today would exceed 5000.00")
		flagged(t, ts.pay(t, "a5", 20000, nil), 0.4, "amount 20000.00 over 5000.00")
		blocked(t, ts.pay(t, "a6", 20000.01, nil), "amount 20000.01 over four times the 5000.00 limit")
	})
	t.Run("daily amount", func(t *testing.T) {
		for range 2 {
			require.Equal(t, StatusSuccess, ts.pay(t, "c5", 2000, nil).str("status"))
		}
		flagged(t, ts.pay(t, "c5", 1000, nil), 0, "") // exactly 5000.00 today
		flagged(t, ts.pay(t, "c5", 0.01, nil), 0.1, "5000.01 USD today would exceed 5000.00")
		// Another currency has a budget of its own, and the next day a
		// new one.
		r := ts.do(t, http.MethodPost, "/payment", map[string]any{"amount": 1500, "customer_id": "c5", "currency": "EUR", "merchant_id": "m"})
		flagged(t, r, 0)
		clock.Advance(24 * time.Hour)
		flagged(t, ts.pay(t, "c5", 1500, nil), 0)
	})
	t.Run("two flags block", func(t *testing.T) {
		berlin := map[string]any{"location": map[string]any{"latitude": 52.52, "longitude": 13.405}}
		warsaw := map[string]any{"location": map[string]any{"latitude": 52.2297, "longitude": 21.0122}}
		flagged(t, ts.pay(t, "c8", 10, berlin), 0)
		clock.Advance(time.Hour) // 517 km in an hour: fast, not impossible
		r := ts.pay(t, "c8", 6000, warsaw)
		blocked(t, r, "over 5000.00")
		assert.InDelta(t, 0.7, r.Body["fraud_score"], 1e-9, "0.3 amount, 0.1 daily, 0.3 travel")
	})
	t.Run("velocity", func(t *testing.T) {
		for i := range 5 {
			require.Equal(t, StatusSuccess, ts.pay(t, "c6", 1, nil).str("status"), "attempt %d", i+1)
			clock.Advance(time.Second)
		}
		blocked(t, ts.pay(t, "c6", 1, nil), "6 attempts in 1m0s (limit 5)")
		// Blocked attempts count too: the window must empty entirely.
		clock.Advance(55 * time.Second)
		blocked(t, ts.pay(t, "c6", 1, nil), "attempts in 1m0s")
		clock.Advance(61 * time.Second)
		assert.Equal(t, StatusSuccess, ts.pay(t, "c6", 1, nil).str("status"))
	})
	t.Run("impossible travel", func(t *testing.T) {
		berlin := map[string]any{"location": map[string]any{"latitude": 52.52, "longitude": 13.405, "country": "DE"}}
		newYork := map[string]any{"location": map[string]any{"latitude": 40.7128, "longitude": -74.006, "country": "US"}}
		potsdam := map[string]any{"location": map[string]any{"latitude": 52.39, "longitude": 13.06}}
		require.Equal(t, StatusSuccess, ts.pay(t, "c7", 10, berlin).str("status"))
		clock.Advance(10 * time.Minute)
		assert.Equal(t, StatusSuccess, ts.pay(t, "c7", 10, potsdam).str("status"), "a short move is noise")
		clock.Advance(30 * time.Minute)
		blocked(t, ts.pay(t, "c7", 10, newYork), "km/h, limit 900")
		// A day later the same trip is a flight.
		clock.Advance(24 * time.Hour)
		assert.Equal(t, StatusSuccess, ts.pay(t, "c7", 10, berlin).str("status"))
	})
}

// halfOpen waits for the breaker's open period to pass.
func (ts *testService) halfOpen(t *testing.T) {
	t.Helper()
	require.Eventually(t, func() bool { return ts.breaker.State().String() == "half-open" },
		20*time.Second, 5*time.Millisecond, "the breaker probes after its open period")
}

func TestBreakerOpensAndRecovers(t *testing.T) {
	cfg := testConfig(t)
	cfg.BreakerOpen = 1500 * time.Millisecond
	ts := startService(t, cfg)
	require.NoError(t, ts.gateway.Set(1, 0))

	for i := range 5 {
		r := ts.pay(t, fmt.Sprintf("b%d", i), 10, nil)
		require.Equal(t, http.StatusBadGateway, r.Code, string(r.Raw))
		assert.Equal(t, StatusFailed, r.str("status"))
		assert.Equal(t, "payment gateway failed", r.errField("message"))
		assert.Equal(t, "gateway_failed", r.errField("code"))
	}
	assert.EqualValues(t, 5, ts.gateway.Calls())
	assert.Equal(t, "open", ts.breaker.State().String())

	// Open: answered at once with 503 and Retry-After, the gateway is
	// not called.
	for i := range 10 {
		r := ts.pay(t, fmt.Sprintf("o%d", i), 10, nil)
		require.Equal(t, http.StatusServiceUnavailable, r.Code, string(r.Raw))
		retry, err := strconv.Atoi(r.Header.Get("Retry-After"))
		require.NoError(t, err)
		assert.True(t, retry == 1 || retry == 2, "Retry-After %d: the open period left, rounded up to whole seconds", retry)
		assert.Contains(t, r.errField("message"), "circuit open")
		assert.Equal(t, "gateway_unavailable", r.errField("code"))
	}
	assert.EqualValues(t, 5, ts.gateway.Calls(), "no gateway call while open")

	// The gateway recovers; after the open period probes go through and
	// three successes close the breaker.
	require.NoError(t, ts.gateway.Set(0, 0))
	ts.halfOpen(t)
	for i := range 3 {
		r := ts.pay(t, fmt.Sprintf("h%d", i), 10, nil)
		require.Equal(t, http.StatusOK, r.Code, string(r.Raw))
	}
	assert.Equal(t, "closed", ts.breaker.State().String())
	assert.EqualValues(t, 8, ts.gateway.Calls())
}

// A payment the open breaker refuses never reached the gateway: it spends
// nothing of its customer's limit and is no attempt the fraud rules count,
// so a customer who retried through a gateway outage is neither rate
// limited nor blocked for velocity once the gateway is back.
func TestOpenBreakerSpendsNoCustomerLimit(t *testing.T) {
	ts := startService(t, testConfig(t))
	ts.breaker.ForceOpen("gateway outage")
	for i := range 2 * int(ts.cfg.CustomerLimit) {
		r := ts.pay(t, "cust_outage", 10, nil)
		require.Equal(t, http.StatusServiceUnavailable, r.Code, "attempt %d: %s", i+1, r.Raw)
		require.Equal(t, "gateway_unavailable", r.errField("code"), "attempt %d", i+1)
	}
	ts.breaker.Reset()
	for i := range int(ts.cfg.CustomerLimit) {
		r := ts.pay(t, "cust_outage", 10, nil)
		require.Equal(t, http.StatusOK, r.Code, "payment %d after the outage: %s", i+1, r.Raw)
	}
	assert.EqualValues(t, ts.cfg.CustomerLimit, ts.gateway.Calls())

	// With a limit that lets more through, the refused payments are no
	// attempts: the first payment after the outage is not the sixth in a
	// minute.
	cfg := testConfig(t)
	cfg.CustomerLimit = 100
	ts = startService(t, cfg)
	ts.breaker.ForceOpen("gateway outage")
	for range 5 {
		require.Equal(t, http.StatusServiceUnavailable, ts.pay(t, "cust_outage", 10, nil).Code)
	}
	ts.breaker.Reset()
	r := ts.pay(t, "cust_outage", 10, nil)
	assert.Equal(t, http.StatusOK, r.Code, string(r.Raw))
}

func TestCustomerFloodIsLimitedOthersSucceed(t *testing.T) {
	ts := startService(t, testConfig(t))
	codes := map[int]int{}
	var retryAfter string
	for range 20 {
		r := ts.pay(t, "flooder", 1, nil)
		codes[r.Code]++
		if r.Code == http.StatusTooManyRequests {
			assert.Equal(t, StatusRateLimited, r.str("status"))
			retryAfter = r.Header.Get("Retry-After")
		}
	}
	assert.Equal(t, 5, codes[http.StatusOK], "the burst of 5 per minute")
	assert.Equal(t, 15, codes[http.StatusTooManyRequests])
	assert.Equal(t, "12", retryAfter, "one payment per 12 s refills")
	for i := range 10 {
		assert.Equal(t, http.StatusOK, ts.pay(t, fmt.Sprintf("other_%d", i), 1, nil).Code)
	}
	// The limiter refills one payment per 12 s; the velocity rule still
	// remembers the minute's attempts, so wait for both.
	ts.clock.Advance(61 * time.Second)
	assert.Equal(t, http.StatusOK, ts.pay(t, "flooder", 1, nil).Code, "refilled")
}

func TestConfirmationVisible(t *testing.T) {
	ts := startService(t, testConfig(t))
	r := ts.pay(t, "cust_c", 42, nil)
	require.Equal(t, http.StatusOK, r.Code)
	id := r.str("transaction_id")
	require.Eventually(t, func() bool {
		g := ts.do(t, http.MethodGet, "/payment/"+id, nil)
		return g.Code == http.StatusOK && g.Body["confirmed"] == true
	}, 10*time.Second, 10*time.Millisecond)
	g := ts.do(t, http.MethodGet, "/payment/"+id, nil)
	assert.Equal(t, StatusSuccess, g.str("status"))
	assert.NotEmpty(t, g.str("confirmed_at"))

	missing := ts.do(t, http.MethodGet, "/payment/txn_nope", nil)
	assert.Equal(t, http.StatusNotFound, missing.Code)
	assert.Equal(t, "not_found", missing.errField("code"))
}

func TestIdempotency(t *testing.T) {
	ts := startService(t, testConfig(t))
	first := ts.pay(t, "cust_i", 25, nil, "Idempotency-Key", "order-1")
	require.Equal(t, http.StatusOK, first.Code)
	again := ts.pay(t, "cust_i", 25, nil, "Idempotency-Key", "order-1")
	assert.Equal(t, first.Code, again.Code)
	assert.JSONEq(t, string(first.Raw), string(again.Raw), "the first response, replayed")
	assert.Equal(t, "true", again.Header.Get("Idempotent-Replayed"))
	assert.EqualValues(t, 1, ts.gateway.Calls())

	other := ts.pay(t, "cust_i", 26, nil, "Idempotency-Key", "order-1")
	assert.Equal(t, http.StatusUnprocessableEntity, other.Code)
	assert.Equal(t, "idempotency_key_reused", other.errField("code"))
	assert.Equal(t, 1.0, testutil.ToFloat64(ts.badRequests.WithLabelValues("422")), "refused before processing, and counted")

	// A payment the gateway declined moved no money: the key is released
	// and the retry charges.
	require.NoError(t, ts.gateway.Set(1, 0))
	failed := ts.pay(t, "cust_j", 5, nil, "Idempotency-Key", "order-2")
	require.Equal(t, http.StatusBadGateway, failed.Code)
	require.NoError(t, ts.gateway.Set(0, 0))
	retried := ts.pay(t, "cust_j", 5, nil, "Idempotency-Key", "order-2")
	assert.Equal(t, http.StatusOK, retried.Code, string(retried.Raw))
	assert.Empty(t, retried.Header.Get("Idempotent-Replayed"))
	assert.EqualValues(t, 3, ts.gateway.Calls())

	// Keys expire after a day.
	ts.clock.Advance(25 * time.Hour)
	fresh := ts.pay(t, "cust_i", 26, nil, "Idempotency-Key", "order-1")
	assert.Equal(t, http.StatusOK, fresh.Code)
	assert.NotEqual(t, first.str("transaction_id"), fresh.str("transaction_id"))

	bad := ts.pay(t, "cust_i", 26, nil, "Idempotency-Key", strings.Repeat("k", 256))
	assert.Equal(t, http.StatusBadRequest, bad.Code)
}

func TestIdempotencyConcurrentChargesOnce(t *testing.T) {
	ts := startService(t, testConfig(t))
	require.NoError(t, ts.gateway.Set(0, 20*time.Millisecond)) // keep the first request in flight
	var wg sync.WaitGroup
	var mu sync.Mutex
	codes := map[int]int{}
	ids := map[string]bool{}
	for range 100 {
		wg.Go(func() {
			r := ts.pay(t, "cust_k", 77, nil, "Idempotency-Key", "one-key")
			mu.Lock()
			defer mu.Unlock()
			codes[r.Code]++
			if r.Code == http.StatusOK {
				ids[r.str("transaction_id")] = true
			}
		})
	}
	wg.Wait()
	assert.EqualValues(t, 1, ts.gateway.Calls(), "charged exactly once: %v", codes)
	assert.Len(t, ids, 1, "every success is the same payment")
	assert.Equal(t, 100, codes[http.StatusOK]+codes[http.StatusConflict])
	assert.GreaterOrEqual(t, codes[http.StatusOK], 1)
}

func TestBadInput(t *testing.T) {
	cfg := testConfig(t)
	cfg.APIToken = svc.NewSecret("secret-token")
	ts := startService(t, cfg)
	auth := []string{"Authorization", "Bearer secret-token"}
	valid := `{"amount": 1, "customer_id": "c", "currency": "USD", "merchant_id": "m"}`
	tests := []struct {
		name    string
		body    string
		headers []string
		code    int
		field   string
	}{
		{"no token", valid, nil, http.StatusUnauthorized, ""},
		{"wrong token", valid, []string{"Authorization", "Bearer nope"}, http.StatusUnauthorized, ""},
		{"malformed", `{"amount":`, auth, http.StatusBadRequest, ""},
		{"wrong type", `{"amount": "1", "customer_id": "c", "currency": "USD", "merchant_id": "m"}`, auth, http.StatusBadRequest, "amount"},
		{"unknown field", `{"amount": 1, "customer_id": "c", "currency": "USD", "merchant_id": "m", "cvv": "123"}`, auth, http.StatusBadRequest, "cvv"},
		{"missing field", `{"amount": 1, "currency": "USD", "merchant_id": "m"}`, auth, http.StatusBadRequest, "customer_id"},
		{"zero amount", `{"amount": 0, "customer_id": "c", "currency": "USD", "merchant_id": "m"}`, auth, http.StatusBadRequest, "amount"},
		{"too many decimals", `{"amount": 1.234, "customer_id": "c", "currency": "USD", "merchant_id": "m"}`, auth, http.StatusBadRequest, "amount"},
		{"absurd amount", `{"amount": 1e15, "customer_id": "c", "currency": "USD", "merchant_id": "m"}`, auth, http.StatusBadRequest, "amount"},
		{"currency", `{"amount": 1, "customer_id": "c", "currency": "DOLLARS", "merchant_id": "m"}`, auth, http.StatusBadRequest, "currency"},
		{"too large", `{"amount": 1, "customer_id": "c", "currency": "USD", "merchant_id": "m", "metadata": {"a": "` + strings.Repeat("x", 1<<20) + `"}}`, auth, http.StatusRequestEntityTooLarge, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := ts.do(t, http.MethodPost, "/payment", tt.body, tt.headers...)
			assert.Equal(t, tt.code, r.Code, string(r.Raw))
			assert.Equal(t, tt.field, r.errField("field"))
			assert.NotEmpty(t, r.errField("message"))
		})
	}
	t.Run("content type", func(t *testing.T) {
		req, _ := http.NewRequest(http.MethodPost, ts.URL+"/payment", strings.NewReader(valid))
		req.Header.Set("Content-Type", "text/plain")
		req.Header.Set("Authorization", "Bearer secret-token")
		resp, err := ts.http.Client().Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		assert.Equal(t, http.StatusUnsupportedMediaType, resp.StatusCode)
	})
	t.Run("method", func(t *testing.T) {
		r := ts.do(t, http.MethodPut, "/payment", valid, auth...)
		assert.Equal(t, http.StatusMethodNotAllowed, r.Code)
		assert.Equal(t, "method_not_allowed", r.errField("code"), "JSON in the error schema: %s", r.Raw)
	})
	t.Run("no route", func(t *testing.T) {
		r := ts.do(t, http.MethodGet, "/payments", nil, auth...)
		assert.Equal(t, http.StatusNotFound, r.Code)
		assert.Equal(t, "not_found", r.errField("code"), "JSON in the error schema: %s", r.Raw)
	})
	assert.Zero(t, ts.gateway.Calls(), "nothing was charged")
	ok := ts.do(t, http.MethodPost, "/payment", valid, auth...)
	assert.Equal(t, http.StatusOK, ok.Code, string(ok.Raw))
}

func TestAdminGateway(t *testing.T) {
	cfg := testConfig(t)
	cfg.AdminToken = svc.NewSecret("admin")
	ts := startService(t, cfg)
	assert.Equal(t, http.StatusUnauthorized, ts.do(t, http.MethodPost, "/admin/gateway", `{"failure_rate": 1}`).Code)
	r := ts.do(t, http.MethodPost, "/admin/gateway", `{"failure_rate": 0.5, "latency_ms": 3}`, "Authorization", "Bearer admin")
	require.Equal(t, http.StatusOK, r.Code, string(r.Raw))
	rate, latency := ts.gateway.Settings()
	assert.Equal(t, 0.5, rate)
	assert.Equal(t, 3*time.Millisecond, latency)
	bad := ts.do(t, http.MethodPost, "/admin/gateway", `{"failure_rate": 2}`, "Authorization", "Bearer admin")
	assert.Equal(t, http.StatusBadRequest, bad.Code)
	rate, _ = ts.gateway.Settings()
	assert.Equal(t, 0.5, rate, "a bad request changes nothing")

	closed := startService(t, testConfig(t))
	assert.Equal(t, http.StatusForbidden, closed.do(t, http.MethodGet, "/admin/gateway", nil).Code, "no token configured: no admin API")
}

func TestHealthAndReady(t *testing.T) {
	ts := startService(t, testConfig(t))
	assert.Equal(t, http.StatusOK, ts.do(t, http.MethodGet, "/healthz", nil).Code)
	assert.Equal(t, http.StatusOK, ts.do(t, http.MethodGet, "/readyz", nil).Code)
	ts.line.Stop("maintenance")
	r := ts.pay(t, "cust_l", 1, nil)
	assert.Equal(t, http.StatusServiceUnavailable, r.Code)
	assert.Contains(t, r.errField("message"), "stopped")
	ts.line.Start()
	assert.Equal(t, http.StatusOK, ts.pay(t, "cust_l", 1, nil).Code)
	_ = context.Background()
}

// The rolling statistics answer a kind they have no statistics of in the
// one error schema, as every other route does: a 404 not_found naming the
// kind, not kaizen's plain text. A kind they have answers as before.
func TestStatisticsErrorsAreJSON(t *testing.T) {
	ts := startService(t, testConfig(t))
	for _, kind := range []string{"nope", "payment"} { // no payment yet: no statistics of it either
		r := ts.do(t, http.MethodGet, "/kaizen?kind="+kind, nil)
		require.Equal(t, http.StatusNotFound, r.Code, string(r.Raw))
		assert.Equal(t, "application/json", r.Header.Get("Content-Type"))
		assert.Equal(t, "not_found", r.errField("code"), string(r.Raw))
		assert.Equal(t, "kind", r.errField("field"), string(r.Raw))
		assert.Contains(t, r.errField("message"), `"`+kind+`"`)
	}
	require.Equal(t, http.StatusOK, ts.pay(t, "cust_k", 1, nil).Code)
	r := ts.do(t, http.MethodGet, "/kaizen?kind=payment", nil)
	require.Equal(t, http.StatusOK, r.Code, string(r.Raw))
	kinds, _ := r.Body["kinds"].(map[string]any)
	assert.Contains(t, kinds, "payment", string(r.Raw))
	assert.Equal(t, http.StatusOK, ts.do(t, http.MethodGet, "/kaizen", nil).Code)
	// A query that does not parse, or names two kinds, answered every kind.
	for _, q := range []string{"kind=%zz", "kind=a;b", "kind=payment&kind=x"} {
		r := ts.do(t, http.MethodGet, "/kaizen?"+q, nil)
		require.Equal(t, http.StatusBadRequest, r.Code, "%s: %s", q, r.Raw)
		assert.Equal(t, "invalid_request", r.errField("code"), string(r.Raw))
		assert.Contains(t, r.errField("message"), "query", string(r.Raw))
	}
}

// IDs that NATS cannot take as subjects or keys are client errors: 400,
// never a 5xx from a store that refuses them (which would feed the error
// rate alert).
func TestIDsInvalidForNATSAreClientErrors(t *testing.T) {
	cfg := testConfig(t)
	cfg.CustomerState = "nats"
	ts := startService(t, cfg)
	for _, id := range []string{"a.", ".a", "a..b", "a.*", "a.>", "a b", "ü"} {
		r := ts.do(t, http.MethodPost, "/payment", map[string]any{"amount": 1, "customer_id": id, "currency": "USD", "merchant_id": "m"})
		assert.Equal(t, http.StatusBadRequest, r.Code, "customer %q: %s", id, r.Raw)
		assert.Equal(t, "customer_id", r.errField("field"), id)
		r = ts.do(t, http.MethodPost, "/payment", map[string]any{"amount": 1, "customer_id": "c", "currency": "USD", "merchant_id": id})
		assert.Equal(t, http.StatusBadRequest, r.Code, "merchant %q: %s", id, r.Raw)
		g := ts.do(t, http.MethodGet, "/payment/"+url.PathEscape(id), nil)
		assert.Equal(t, http.StatusNotFound, g.Code, "GET /payment/%s: %s", id, g.Raw)
	}
	ok := ts.do(t, http.MethodPost, "/payment", map[string]any{"amount": 1, "customer_id": "a.b", "currency": "USD", "merchant_id": "m.c"})
	assert.Equal(t, http.StatusOK, ok.Code, string(ok.Raw))
	assert.EqualValues(t, 1, ts.gateway.Calls())
}

// With a review threshold, flagged payments are held instead of charged:
// the Go rules' -review-threshold, or a rule file's thresholds.review.
func TestReviewBand(t *testing.T) {
	for _, tc := range []struct {
		name string
		set  func(*Config)
	}{
		{"go", func(cfg *Config) { cfg.FraudRules, cfg.Fraud.Review = fraudRulesGo, 0.3 }},
		{"rule file", func(cfg *Config) { cfg.FraudRules = reviewRules(t) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig(t)
			tc.set(&cfg)
			ts := startService(t, cfg)
			r := ts.pay(t, "c4", 5000.01, nil)
			require.Equal(t, http.StatusAccepted, r.Code, string(r.Raw))
			assert.Equal(t, StatusReview, r.str("status"))
			assert.InDelta(t, 0.4, r.Body["fraud_score"], 1e-9)
			assert.Nil(t, r.Body["gateway_response"])
			assert.Nil(t, r.Body["error"], "a hold is not an error")
			assert.Zero(t, ts.gateway.Calls())
			below := ts.pay(t, "c9", 4500, nil)
			assert.Equal(t, StatusSuccess, below.str("status"), "0.15 is below the band")
		})
	}
}

// A confirmation the consumer refuses is dead-lettered, and an operator
// sees it on the board and lists and deletes it through the admin API,
// which wants the admin token even to read (the payloads are payments).
func TestConfirmationDeadLettersThroughTheAdminAPI(t *testing.T) {
	const admin = "admin-token-0123456789"
	cfg := testConfig(t)
	cfg.AdminToken = svc.NewSecret(admin)
	ts := startService(t, cfg)
	auth := []string{"Authorization", "Bearer " + admin}
	require.NoError(t, ts.queue.Publish(context.Background(), kanban.Message[Confirmation]{
		ID: "txn_forged", Key: "cust_x", Payload: Confirmation{TransactionID: "txn_other"}}))

	var page struct {
		DeadLetters []struct {
			Seq    uint64 `json:"seq"`
			ID     string `json:"id"`
			Reason string `json:"reason"`
		} `json:"dead_letters"`
	}
	require.Eventually(t, func() bool {
		r := ts.do(t, http.MethodGet, "/admin/queues/confirmations/deadletters", nil, auth...)
		require.Equal(t, http.StatusOK, r.Code, string(r.Raw))
		require.NoError(t, json.Unmarshal(r.Raw, &page))
		return len(page.DeadLetters) == 1
	}, 10*time.Second, 20*time.Millisecond)
	assert.Equal(t, "txn_forged", page.DeadLetters[0].ID)
	assert.Contains(t, page.DeadLetters[0].Reason, `names transaction "txn_other"`)

	r := ts.do(t, http.MethodGet, "/admin/queues/confirmations/deadletters", nil)
	assert.Equal(t, http.StatusUnauthorized, r.Code, "reads need the admin token: %s", r.Raw)
	r = ts.do(t, http.MethodGet, "/admin/queues", nil, "Authorization", "Bearer wrong-token-0123456789")
	assert.Equal(t, http.StatusUnauthorized, r.Code, "%s", r.Raw)

	// The board shows the queue and its dead letter.
	require.Eventually(t, func() bool {
		var st andon.BoardState
		r := ts.do(t, http.MethodGet, "/andon/api/state", nil, auth...)
		require.NoError(t, json.Unmarshal(r.Raw, &st))
		for _, p := range st.Panels {
			if p.Title == "Confirmation dead letters" && len(p.Rows) == 1 && p.Rows[0].Cells[2] == "txn_forged" {
				return true
			}
		}
		return false
	}, 10*time.Second, 50*time.Millisecond, "the board lists the dead letter")

	r = ts.do(t, http.MethodDelete, fmt.Sprintf("/admin/queues/confirmations/deadletters/%d", page.DeadLetters[0].Seq), nil, auth...)
	require.Equal(t, http.StatusOK, r.Code, string(r.Raw))
	r = ts.do(t, http.MethodGet, "/admin/queues/confirmations/deadletters", nil, auth...)
	require.NoError(t, json.Unmarshal(r.Raw, &page))
	assert.Empty(t, page.DeadLetters, "deleted")
	assert.Contains(t, string(ts.do(t, http.MethodGet, "/metrics", nil).Raw), `taikit_queue_handler_duration_seconds_count{queue="confirmations"}`)
}

// A NATS server whose JetStream has stopped (turned off, or the server
// restarted without it) stores no payment: the service is not ready then,
// though its connection to the server is up.
func TestNotReadyWithoutJetStream(t *testing.T) {
	natsSrv := startNATS(t, t.TempDir(), 0)
	t.Cleanup(func() { stopNATS(t, natsSrv) })
	cfg := testConfig(t)
	cfg.NATSURL = svc.NewURL(natsSrv.ClientURL())
	svc, err := NewService(context.Background(), cfg, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	srv := httptest.NewServer(svc.Handler())
	ts := &testService{Service: svc, URL: srv.URL, http: srv, logs: &syncBuffer{}}
	defer func() {
		srv.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		// Its last audit head has nowhere to go.
		_ = svc.Close(ctx)
	}()
	require.Equal(t, http.StatusOK, ts.do(t, http.MethodGet, "/readyz", nil).Code)
	require.NoError(t, natsSrv.NATS().ShutdownJetStream())
	r := ts.do(t, http.MethodGet, "/readyz", nil)
	assert.Equal(t, http.StatusServiceUnavailable, r.Code, string(r.Raw))
	assert.Equal(t, "unavailable", r.str("jetstream"), string(r.Raw))
	assert.Equal(t, "ok", r.str("nats"), "the connection is up")
}
