package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/taipattern/taikit/examples/internal/svc"
	"github.com/taipattern/taikit/kaizen"
)

// scriptedMix sends 6 successes, 2 blocked, 1 review (the service holds
// for review from 0.3), 2 failed and 3 rate-limited payments.
func scriptedMix(t *testing.T, ts *testService) []string {
	var ids []string
	keep := func(r reply) { ids = append(ids, r.str("transaction_id")) }
	for i := range 6 {
		keep(ts.pay(t, fmt.Sprintf("ok_%d", i), 10, nil))
	}
	keep(ts.pay(t, "big_1", 25000, nil))
	keep(ts.pay(t, "big_2", 30000, nil))
	keep(ts.pay(t, "flagged", 6000, nil))
	require.NoError(t, ts.gateway.Set(1, 0))
	keep(ts.pay(t, "fail_1", 10, nil))
	keep(ts.pay(t, "fail_2", 10, nil))
	require.NoError(t, ts.gateway.Set(0, 0))
	for range 5 {
		keep(ts.pay(t, "burst", 1, nil))
	}
	for range 3 {
		keep(ts.pay(t, "burst", 1, nil))
	}
	return ids
}

// mixConfig holds payments scoring 0.3 or more for review.
func mixConfig(t *testing.T) Config {
	cfg := testConfig(t)
	cfg.FraudRules = reviewRules(t)
	return cfg
}

func TestMetricsAfterMix(t *testing.T) {
	ts := startService(t, mixConfig(t))
	scriptedMix(t, ts)
	// 6 + 5 burst successes.
	want := map[string]float64{StatusSuccess: 11, StatusFraudBlocked: 2, StatusReview: 1, StatusFailed: 2, StatusRateLimited: 3}
	for status, n := range want {
		assert.Equal(t, n, testutil.ToFloat64(ts.transactions.WithLabelValues(status)), status)
	}
	assert.Equal(t, 3.0, testutil.ToFloat64(ts.fraud))

	body := ts.do(t, http.MethodGet, "/metrics", nil).Raw
	text := string(body)
	for _, line := range []string{
		`payment_transaction_total{status="SUCCESS"} 11`,
		`payment_fraud_detected_total 3`,
		`taikit_signals_total{kind="payment",outcome="succeeded"} 11`,
		`taikit_signals_total{kind="payment",outcome="denied"} 3`,
		`taikit_signals_total{kind="payment",outcome="failed"} 2`,
		`taikit_signals_total{kind="payment",outcome="rejected"} 3`,
		`taikit_decisions_total{kind="payment",policy="fraud",verdict="deny"} 2`,
		`taikit_decisions_total{kind="payment",policy="fraud",verdict="review"} 1`,
		`taikit_breaker_state{breaker="gateway",state="closed"} 1`,
		`taikit_line_stopped{line="payments"} 0`,
		// Rules that added to a score: the two blocked amounts and the
		// flagged one, each over the day's limit too.
		`payment_fraud_rule_hits_total{rule="amount"} 3`,
		`payment_fraud_rule_hits_total{rule="daily_amount"} 3`,
		`payment_fraud_rule_hits_total{rule="velocity"} 0`,
		`go_build_info{`,
		// Buckets resolve a payment under a millisecond; the whole
		// payment by outcome, its stages in a family of their own.
		`taikit_signal_duration_seconds_bucket{kind="payment",outcome="succeeded",le="5e-05"}`,
		`taikit_signal_duration_seconds_bucket{kind="payment",outcome="succeeded",le="0.00025"}`,
		`taikit_signal_duration_seconds_count{kind="payment",outcome="denied"} 3`,
		`taikit_stage_duration_seconds_bucket{kind="payment",stage="action",le="5e-05"}`,
	} {
		assert.Contains(t, text, line)
	}
	// The confirmations of the 11 successes are handled.
	require.Eventually(t, func() bool {
		return strings.Contains(string(ts.do(t, http.MethodGet, "/metrics", nil).Raw), `taikit_queue_handled_total{queue="confirmations"} 11`)
	}, 10*time.Second, 20*time.Millisecond)

	var stats struct {
		Kinds map[string]struct {
			Windows []struct {
				Window  string `json:"window"`
				Current struct {
					Total    int            `json:"total"`
					Outcomes map[string]int `json:"outcomes"`
				} `json:"current"`
			} `json:"windows"`
		} `json:"kinds"`
	}
	require.NoError(t, json.Unmarshal(ts.do(t, http.MethodGet, "/kaizen", nil).Raw, &stats))
	require.Contains(t, stats.Kinds, "payment")
	w := stats.Kinds["payment"].Windows[0]
	assert.Equal(t, "1m", w.Window)
	assert.Equal(t, 19, w.Current.Total)
	assert.Equal(t, 2, w.Current.Outcomes["failed"])
}

func TestAuditTrail(t *testing.T) {
	cfg := mixConfig(t)
	ts := startService(t, cfg)
	ids := scriptedMix(t, ts)
	require.NoError(t, ts.audit.Flush(context.Background()))

	path := filepath.Join(cfg.DataDir, "audit-test.jsonl")
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	seen := map[string]string{}
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var e struct {
			ID      string `json:"id"`
			TraceID string `json:"trace_id"`
		}
		require.NoError(t, json.Unmarshal(sc.Bytes(), &e))
		seen[e.ID] = e.TraceID
		assert.NotContains(t, sc.Text(), "card", "no card data in the trail")
	}
	require.NoError(t, sc.Err())
	for _, id := range ids {
		require.Contains(t, seen, id)
		assert.Len(t, seen[id], 32, "trace id of %s", id)
	}
	_, err = f.Seek(0, 0)
	require.NoError(t, err)
	require.NoError(t, kaizen.VerifyAudit(f))

	// Tampering is found and named.
	raw, err := os.ReadFile(path)
	require.NoError(t, err)
	tampered := strings.Replace(string(raw), `"outcome":"denied"`, `"outcome":"succeeded"`, 1)
	require.NotEqual(t, string(raw), tampered)
	err = kaizen.VerifyAudit(strings.NewReader(tampered))
	require.ErrorIs(t, err, kaizen.ErrAuditTampered)
}

func TestOneTraceJoinsEverything(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	cfg := testConfig(t)
	cfg.TraceProcessor = rec
	ts := startService(t, cfg)

	// The caller's own trace: the service joins it.
	parent := trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: trace.TraceID{0x4b, 0xf9, 1}, SpanID: trace.SpanID{0x00, 0xf0, 2}, TraceFlags: trace.FlagsSampled,
	})
	traceparent := fmt.Sprintf("00-%s-%s-01", parent.TraceID(), parent.SpanID())
	r := ts.pay(t, "cust_t", 12, nil, "traceparent", traceparent)
	require.Equal(t, http.StatusOK, r.Code)
	assert.Equal(t, parent.TraceID().String(), r.str("trace_id"))

	var spans []sdktrace.ReadOnlySpan
	require.Eventually(t, func() bool {
		spans = rec.Ended()
		for _, s := range spans {
			if s.Name() == "process PAYMENT_CONFIRMATIONS" {
				return true
			}
		}
		return false
	}, 10*time.Second, 10*time.Millisecond)

	byName := map[string]sdktrace.ReadOnlySpan{}
	byID := map[trace.SpanID]sdktrace.ReadOnlySpan{}
	for _, s := range spans {
		if s.SpanContext().TraceID() != parent.TraceID() {
			continue
		}
		byName[s.Name()] = s
		byID[s.SpanContext().SpanID()] = s
	}
	for _, name := range []string{"POST /payment", "send PAYMENT_CONFIRMATIONS", "process PAYMENT_CONFIRMATIONS"} {
		require.Contains(t, byName, name, "spans: %v", names(spans))
	}
	// Walk from the consumer up to the HTTP request: one chain.
	chain := []string{}
	for s := byName["process PAYMENT_CONFIRMATIONS"]; s != nil; s = byID[s.Parent().SpanID()] {
		chain = append(chain, s.Name())
	}
	assert.Equal(t, []string{"process PAYMENT_CONFIRMATIONS", "send PAYMENT_CONFIRMATIONS", "POST /payment"}, chain,
		"the confirmation is published by the request once the payment is decided, and consumed in its trace")
	// And the pipeline's stages are children of the signal span.
	stages := 0
	for _, s := range spans {
		if p, ok := byID[s.Parent().SpanID()]; ok && p.Name() != "POST /payment" && s.SpanContext().TraceID() == parent.TraceID() {
			stages++
		}
	}
	assert.GreaterOrEqual(t, stages, 4, "gate(s), policy, rules, action under the signal")

	// The messaging spans say what they are, as OpenTelemetry's
	// conventions name it.
	for _, op := range []string{"send", "process"} {
		attrs := map[string]string{}
		for _, kv := range byName[op+" PAYMENT_CONFIRMATIONS"].Attributes() {
			attrs[string(kv.Key)] = kv.Value.String()
		}
		assert.Equal(t, "nats", attrs["messaging.system"], op)
		assert.Equal(t, "PAYMENT_CONFIRMATIONS", attrs["messaging.destination.name"], op)
		assert.Equal(t, op, attrs["messaging.operation.type"], op)
		assert.Equal(t, r.str("transaction_id"), attrs["messaging.message.id"], op)
	}
	assert.Equal(t, trace.SpanKindProducer, byName["send PAYMENT_CONFIRMATIONS"].SpanKind())

	// Scrapes and probes make no spans.
	before := len(rec.Ended())
	ts.do(t, http.MethodGet, "/metrics", nil)
	ts.do(t, http.MethodGet, "/healthz", nil)
	for _, s := range rec.Ended()[before:] {
		assert.NotContains(t, []string{"GET /metrics", "GET /healthz"}, s.Name())
	}
}

func names(spans []sdktrace.ReadOnlySpan) []string {
	var out []string
	for _, s := range spans {
		out = append(out, s.Name())
	}
	return out
}

// Server spans are named by route, never by a path a client chose, and
// the resource follows OTEL_SERVICE_NAME.
func TestSpanNamesAndResource(t *testing.T) {
	t.Setenv("OTEL_SERVICE_NAME", "payments-eu")
	rec := tracetest.NewSpanRecorder()
	cfg := testConfig(t)
	cfg.TraceProcessor = rec
	ts := startService(t, cfg)
	r := ts.pay(t, "cust_n", 3, nil)
	require.Equal(t, http.StatusOK, r.Code)
	ts.do(t, http.MethodGet, "/payment/"+r.str("transaction_id"), nil)
	ts.do(t, http.MethodGet, "/no/such/path/12345", nil)
	ts.do(t, http.MethodGet, "/metrics", nil) // scrapes and probes get no span
	ts.do(t, http.MethodGet, "/healthz", nil)
	routes := map[string]string{}
	for _, s := range rec.Ended() {
		if s.SpanKind() != trace.SpanKindServer {
			continue
		}
		route := ""
		for _, kv := range s.Attributes() {
			if kv.Key == "http.route" {
				route = kv.Value.AsString()
			}
		}
		routes[s.Name()] = route
		assert.Equal(t, "go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp", s.InstrumentationScope().Name,
			"server spans come from otelhttp, with the current HTTP conventions")
		status := false
		for _, kv := range s.Attributes() {
			status = status || kv.Key == "http.response.status_code"
		}
		assert.True(t, status, "%s has http.response.status_code", s.Name())
		name, _ := s.Resource().Set().Value("service.name")
		assert.Equal(t, "payments-eu", name.AsString())
	}
	assert.Equal(t, map[string]string{"POST /payment": "/payment", "GET /payment/{id}": "/payment/{id}", "GET": ""}, routes)
}

// The audit trail survives a restart: the second run appends to the first
// run's file with the chain continued, so the file verifies as one trail;
// with -audit-key-file the hashes need the key.
func TestAuditTrailContinuesAcrossRestarts(t *testing.T) {
	cfg := testConfig(t)
	key := []byte("0123456789abcdef0123")
	cfg.AuditKey = svc.NewSecretBytes(key)
	runService(t, cfg, "first_a", "first_b")
	runService(t, cfg, "second_a")

	path := filepath.Join(cfg.DataDir, "audit-test.jsonl")
	sum, err := kaizen.VerifyAuditFiles(kaizen.VerifyOptions{Key: key}, path)
	require.NoError(t, err)
	assert.EqualValues(t, 5, sum.Lines, "both runs' payments, and the rules each run put in force, in one chain")
	_, err = kaizen.VerifyAuditFiles(kaizen.VerifyOptions{}, path)
	require.ErrorIs(t, err, kaizen.ErrAuditTampered, "a keyed trail does not verify without its key")

	// A trail changed while the service was down stops the next start,
	// and the file is left as it was.
	raw, err := os.ReadFile(path)
	require.NoError(t, err)
	edited := strings.Replace(string(raw), "first_b", "first_c", 1)
	require.NoError(t, os.WriteFile(path, []byte(edited), 0o600))
	_, err = NewService(context.Background(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	require.ErrorIs(t, err, kaizen.ErrAuditTampered)
	after, err := os.ReadFile(path)
	require.NoError(t, err)
	assert.Equal(t, edited, string(after))
}

func TestAuditKeyFileIsChecked(t *testing.T) {
	short := filepath.Join(t.TempDir(), "short")
	require.NoError(t, os.WriteFile(short, []byte("too short"), 0o600))
	_, err := parseConfig([]string{"-data-dir", t.TempDir(), "-audit-key-file", short}, func(string) string { return "" })
	require.ErrorContains(t, err, "needs at least 16")
	_, err = parseConfig([]string{"-data-dir", t.TempDir(), "-audit-key-file", filepath.Join(t.TempDir(), "missing")}, func(string) string { return "" })
	require.ErrorContains(t, err, "-audit-key-file")
}

// The service publishes its audit trail's head to JetStream; a trail whose
// tail was cut after that no longer holds the published hash, and
// verification with it as Expect says so.
func TestAuditHeadPublished(t *testing.T) {
	cfg := testConfig(t)
	ts := startService(t, cfg)
	for _, c := range []string{"h1", "h2", "h3"} {
		require.Equal(t, http.StatusOK, ts.pay(t, c, 10, nil).Code)
	}
	ctx := context.Background()
	require.NoError(t, ts.publishAuditHead(ctx))
	lines, hash, err := AuditHead(ctx, ts.js, "test")
	require.NoError(t, err)
	assert.EqualValues(t, 4, lines, "the rules put in force, and three payments")

	path := filepath.Join(cfg.DataDir, "audit-test.jsonl")
	sum, err := kaizen.VerifyAuditFiles(kaizen.VerifyOptions{Expect: hash}, path)
	require.NoError(t, err)
	assert.Equal(t, hash, sum.Last)

	raw, err := os.ReadFile(path)
	require.NoError(t, err)
	cut := raw[:strings.LastIndexByte(string(raw[:len(raw)-1]), '\n')+1] // the last line gone
	_, err = kaizen.VerifyAuditWith(strings.NewReader(string(cut)), kaizen.VerifyOptions{Expect: hash})
	require.ErrorIs(t, err, kaizen.ErrAuditTampered, "the cut trail lacks the published head")
}

// Every instance name the configuration takes names an audit head the
// service can publish: a name the heads bucket cannot key (a '.' at its
// end, "..") is refused at the start, not found out at every publication
// and by a shutdown that fails.
func TestEveryInstanceTakenNamesAnAuditHead(t *testing.T) {
	for _, name := range []string{"eu.west-1", "a.", "a..b", "eu_1.", "x.y..z"} {
		t.Run(name, func(t *testing.T) {
			cfg, err := parseConfig([]string{"-data-dir", t.TempDir(), "-instance", name}, func(string) string { return "" })
			if err != nil {
				require.NotEqual(t, "eu.west-1", name, "a name of dot-separated parts is taken")
				assert.ErrorContains(t, err, "-instance")
				return
			}
			cfg.Clock = newManualClock()
			svc, err := NewService(context.Background(), cfg, slog.New(slog.DiscardHandler))
			require.NoError(t, err)
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			assert.NoError(t, svc.publishAuditHead(ctx), "the head of instance %q", name)
			assert.NoError(t, svc.Close(ctx), "the shutdown of instance %q", name)
		})
	}
}

// A payment's audit line is written before its answer goes out, also when
// the payment ran out of time (504, after which the money may have moved):
// the payment's own deadline, over by then, does not cut the wait short.
func TestAuditLineWrittenBeforeATimedOutPaymentsAnswer(t *testing.T) {
	cfg := testConfig(t)
	cfg.RequestTimeout = 3 * time.Second // 2 s for the gateway, 1 s to store
	cfg.auditWrite = func(e *kaizen.AuditEntry) {
		if e.Kind == "payment" {
			time.Sleep(300 * time.Millisecond) // a slow disk
		}
	}
	ts := startService(t, cfg)
	require.NoError(t, ts.gateway.Set(0, time.Minute))
	r := ts.pay(t, "cust_slow", 5, nil, "Idempotency-Key", "k504")
	require.Equal(t, http.StatusGatewayTimeout, r.Code, string(r.Raw))
	raw, err := os.ReadFile(filepath.Join(cfg.DataDir, "audit-test.jsonl"))
	require.NoError(t, err)
	assert.Contains(t, string(raw), r.str("transaction_id"), "the line was written before the answer")
}
