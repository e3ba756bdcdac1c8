package kaizenprom_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"math"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/kaizen/internal/pipelinetest"
	"github.com/taipattern/taikit/kaizen/kaizenprom"
	"github.com/taipattern/taikit/tai"
)

func TestNewMetricsValidates(t *testing.T) {
	cases := []struct {
		name string
		opts kaizenprom.MetricsOptions
		want string
	}{
		{"namespace", kaizenprom.MetricsOptions{Namespace: "my-app"}, `Namespace "my-app"`},
		{"subsystem", kaizenprom.MetricsOptions{Subsystem: "1x"}, `Subsystem "1x"`},
		// Prometheus keeps colons for the names of recording rules;
		// promtool check metrics refuses a metric name holding one.
		{"namespace colon", kaizenprom.MetricsOptions{Namespace: "job:taikit"}, `Namespace "job:taikit"`},
		{"subsystem colon", kaizenprom.MetricsOptions{Subsystem: "pay:ments"}, `Subsystem "pay:ments"`},
		{"bucket zero", kaizenprom.MetricsOptions{Buckets: []float64{0, 1}}, "Buckets[0] 0"},
		{"bucket inf", kaizenprom.MetricsOptions{Buckets: []float64{1, math.Inf(1)}}, "Buckets[1] +Inf"},
		{"bucket order", kaizenprom.MetricsOptions{Buckets: []float64{1, 0.5}}, "Buckets[1] 0.5 is not above"},
		{"native factor", kaizenprom.MetricsOptions{NativeHistogramBucketFactor: 0.5}, "NativeHistogramBucketFactor 0.5"},
		// Prometheus takes "le" for the bucket bounds of a histogram;
		// client_golang panics at the first observation.
		{"const label le", kaizenprom.MetricsOptions{ConstLabels: prometheus.Labels{"le": "x"}}, `ConstLabels: "le"`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := kaizenprom.NewMetrics(prometheus.NewRegistry(), c.opts)
			require.Error(t, err)
			assert.Contains(t, err.Error(), "kaizenprom: MetricsOptions."+c.want)
		})
	}
	_, err := kaizenprom.NewMetrics(nil, kaizenprom.MetricsOptions{})
	require.ErrorContains(t, err, "nil prometheus.Registerer")
}

// family returns the gathered family called name, or nil.
func family(t *testing.T, g prometheus.Gatherer, name string) *dto.MetricFamily {
	t.Helper()
	mfs, err := g.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf
		}
	}
	return nil
}

// series returns the metric of family name whose labels are exactly
// labels, or nil.
func series(t *testing.T, g prometheus.Gatherer, name string, labels map[string]string) *dto.Metric {
	t.Helper()
	mf := family(t, g, name)
	if mf == nil {
		return nil
	}
	for _, m := range mf.GetMetric() {
		got := map[string]string{}
		for _, lp := range m.GetLabel() {
			got[lp.GetName()] = lp.GetValue()
		}
		if len(got) == len(labels) {
			match := true
			for k, v := range labels {
				match = match && got[k] == v
			}
			if match {
				return m
			}
		}
	}
	return nil
}

func counterValue(t *testing.T, g prometheus.Gatherer, name string, labels map[string]string) float64 {
	t.Helper()
	m := series(t, g, name, labels)
	if m == nil {
		return 0
	}
	return m.GetCounter().GetValue()
}

func TestMetricsThroughPipeline(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := kaizenprom.NewMetrics(reg, kaizenprom.MetricsOptions{})
	require.NoError(t, err)
	p, err := pipelinetest.New(tai.WithObservers(m))
	require.NoError(t, err)
	for _, s := range pipelinetest.Signals() {
		_, _ = p.Process(context.Background(), s)
	}

	for outcome, want := range map[string]float64{"succeeded": 1, "denied": 2, "rejected": 1, "failed": 1} {
		assert.Equal(t, want, counterValue(t, reg, "taikit_signals_total", map[string]string{"kind": "payment", "outcome": outcome}), outcome)
	}
	assert.Equal(t, 2.0, counterValue(t, reg, "taikit_decisions_total", map[string]string{"kind": "payment", "policy": "fraud", "verdict": "allow"}))
	assert.Equal(t, 1.0, counterValue(t, reg, "taikit_decisions_total", map[string]string{"kind": "payment", "policy": "fraud", "verdict": "deny"}))
	assert.Equal(t, 1.0, counterValue(t, reg, "taikit_decisions_total", map[string]string{"kind": "payment", "policy": "allowlist", "verdict": "deny"}))

	count := func(family, label, value string) uint64 {
		s := series(t, reg, family, map[string]string{"kind": "payment", label: value})
		if s == nil {
			return 0
		}
		return s.GetHistogram().GetSampleCount()
	}
	for outcome, want := range map[string]uint64{"succeeded": 1, "denied": 2, "rejected": 1, "failed": 1} {
		assert.Equal(t, want, count("taikit_signal_duration_seconds", "outcome", outcome), "the whole signal, by outcome: %s", outcome)
	}
	hist := func(stage string) uint64 { return count("taikit_stage_duration_seconds", "stage", stage) }
	assert.Nil(t, series(t, reg, "taikit_stage_duration_seconds", map[string]string{"kind": "payment", "stage": "signal"}),
		"the whole signal is not a stage: a sum over stages counts each stage once")
	assert.Equal(t, uint64(5), hist("gate"))
	assert.Equal(t, uint64(4), hist("policy"), "the rejected signal never reached the policy")
	assert.Equal(t, uint64(2), hist("action"))

	// No IDs or keys in any label.
	mfs, err := reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		for _, mt := range mf.GetMetric() {
			for _, lp := range mt.GetLabel() {
				assert.NotContains(t, lp.GetValue(), "cust_", "label %s", lp.GetName())
				assert.NotContains(t, lp.GetValue(), "s1")
			}
		}
	}

	problems, err := testutil.GatherAndLint(reg)
	require.NoError(t, err)
	assert.Empty(t, problems)
}

func TestMetricsDoubleRegistrationReuses(t *testing.T) {
	reg := prometheus.NewRegistry()
	m1, err := kaizenprom.NewMetrics(reg, kaizenprom.MetricsOptions{})
	require.NoError(t, err)
	m2, err := kaizenprom.NewMetrics(reg, kaizenprom.MetricsOptions{})
	require.NoError(t, err, "a second registration reuses the collectors")
	r := tai.Record{ID: "1", Kind: "k", Outcome: tai.Succeeded, Duration: time.Millisecond}
	m1.Observe(context.Background(), r)
	m2.Observe(context.Background(), r)
	assert.Equal(t, 2.0, counterValue(t, reg, "taikit_signals_total", map[string]string{"kind": "k", "outcome": "succeeded"}))

	// Another namespace on the same registry is a separate set.
	m3, err := kaizenprom.NewMetrics(reg, kaizenprom.MetricsOptions{Namespace: "other"})
	require.NoError(t, err)
	m3.Observe(context.Background(), r)
	assert.Equal(t, 1.0, counterValue(t, reg, "other_signals_total", map[string]string{"kind": "k", "outcome": "succeeded"}))

	// A different collector under the same name is an error, not a panic.
	reg2 := prometheus.NewRegistry()
	reg2.MustRegister(prometheus.NewCounterVec(prometheus.CounterOpts{Name: "taikit_signals_total", Help: "x"}, []string{"kind", "outcome"}))
	_, err = kaizenprom.NewMetrics(reg2, kaizenprom.MetricsOptions{})
	require.ErrorContains(t, err, "kaizenprom: registering metrics")
}

// TestNewMetricsFailingRegistersNothing: NewMetrics that fails leaves the
// registry as it found it, so the same registry takes a corrected
// NewMetrics. A constant label that is one of the metrics' own is refused
// before any family is registered: a registry keeps the label names of a
// family even once it is unregistered.
func TestNewMetricsFailingRegistersNothing(t *testing.T) {
	for _, label := range []string{"kind", "outcome", "policy", "verdict", "stage"} {
		t.Run(label, func(t *testing.T) {
			reg := prometheus.NewRegistry()
			_, err := kaizenprom.NewMetrics(reg, kaizenprom.MetricsOptions{ConstLabels: prometheus.Labels{label: "x"}})
			require.ErrorContains(t, err, `kaizenprom: MetricsOptions.ConstLabels: "`+label+`" is a label of the metrics`)
			m, err := kaizenprom.NewMetrics(reg, kaizenprom.MetricsOptions{})
			require.NoError(t, err, "a failed NewMetrics left families registered")
			m.Observe(context.Background(), tai.Record{ID: "1", Kind: "k", Outcome: tai.Succeeded, Duration: time.Millisecond})
			assert.Equal(t, 1.0, counterValue(t, reg, "taikit_signals_total", map[string]string{"kind": "k", "outcome": "succeeded"}))
		})
	}
	// A family that fails to register for another reason unregisters
	// those the call added; those that were there before it stay.
	reg := prometheus.NewRegistry()
	m, err := kaizenprom.NewMetrics(reg, kaizenprom.MetricsOptions{})
	require.NoError(t, err)
	reg.MustRegister(prometheus.NewGauge(prometheus.GaugeOpts{Name: "other_signals_in_flight", Help: "x"}))
	_, err = kaizenprom.NewMetrics(reg, kaizenprom.MetricsOptions{Namespace: "other"})
	require.ErrorContains(t, err, "kaizenprom: registering metrics")
	m.Observe(context.Background(), tai.Record{ID: "1", Kind: "k", Outcome: tai.Succeeded, Duration: time.Millisecond})
	assert.Equal(t, 1.0, counterValue(t, reg, "taikit_signals_total", map[string]string{"kind": "k", "outcome": "succeeded"}))
	assert.False(t, reg.Unregister(prometheus.NewCounterVec(prometheus.CounterOpts{Name: "other_signals_total"}, []string{"kind", "outcome"})),
		"the failed call's families are unregistered")
}

func TestMetricsInFlight(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := kaizenprom.NewMetrics(reg, kaizenprom.MetricsOptions{})
	require.NoError(t, err)
	gauge := func() float64 {
		s := series(t, reg, "taikit_signals_in_flight", map[string]string{"kind": "payment"})
		if s == nil {
			return math.NaN()
		}
		return s.GetGauge().GetValue()
	}
	var during float64
	action := tai.ActionFunc[pipelinetest.Order, string](func(context.Context, tai.Signal[pipelinetest.Order]) (string, error) {
		during = gauge()
		return "ok", nil
	})
	allow := tai.PolicyFunc[pipelinetest.Order](func(context.Context, tai.Signal[pipelinetest.Order]) (tai.Decision, error) {
		return tai.Decision{Verdict: tai.Allow}, nil
	})
	next := new(recTracer)
	for _, next := range []tai.Tracer{nil, next} {
		p, err := tai.New(allow, action, tai.WithObservers(m), tai.WithTracer(m.Tracer(next)))
		require.NoError(t, err)
		during = math.NaN()
		res, err := p.Process(context.Background(), tai.Signal[pipelinetest.Order]{ID: "1", Kind: "payment"})
		require.NoError(t, err)
		assert.Equal(t, 1.0, during, "one signal in flight during its action")
		assert.Equal(t, 0.0, gauge(), "none after it")
		if next == nil {
			assert.Equal(t, tai.SpanContext{}, res.Span, "no tracer, no span")
		} else {
			assert.Equal(t, tai.TraceID{1}, res.Span.TraceID, "the result carries the next tracer's span")
		}
	}
	assert.Equal(t, []string{"signal", "policy", "action"}, next.started, "every span goes on to the next tracer")
	assert.ElementsMatch(t, next.started, next.ended, "and is ended there")
}

// TestMetricsInFlightTracerWrapsOnce: a tracer Metrics.Tracer returned,
// given to Tracer again (by the same Metrics, or by another on the same
// registry, which counts in the same gauge), counts a signal in flight
// once, not once per wrapping.
func TestMetricsInFlightTracerWrapsOnce(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := kaizenprom.NewMetrics(reg, kaizenprom.MetricsOptions{})
	require.NoError(t, err)
	again, err := kaizenprom.NewMetrics(reg, kaizenprom.MetricsOptions{})
	require.NoError(t, err)
	inFlight := func() float64 {
		return gaugeValue(t, reg, "taikit_signals_in_flight", map[string]string{"kind": "payment"})
	}
	next := new(recTracer)
	for _, tr := range []tai.Tracer{m.Tracer(m.Tracer(next)), again.Tracer(m.Tracer(next)), m.Tracer(m.Tracer(nil))} {
		_, sp := tr.Start(context.Background(), tai.SpanInfo{Stage: tai.StageSignal, Kind: "payment"})
		assert.Equal(t, 1.0, inFlight(), "one signal in flight")
		sp.End(nil)
		assert.Equal(t, 0.0, inFlight())
	}
	assert.Equal(t, []string{"signal", "signal"}, next.started, "the next tracer starts each span once")

	// Metrics on another registry count in a gauge of their own.
	other := prometheus.NewRegistry()
	om, err := kaizenprom.NewMetrics(other, kaizenprom.MetricsOptions{})
	require.NoError(t, err)
	_, sp := om.Tracer(m.Tracer(nil)).Start(context.Background(), tai.SpanInfo{Stage: tai.StageSignal, Kind: "payment"})
	assert.Equal(t, 1.0, inFlight())
	assert.Equal(t, 1.0, gaugeValue(t, other, "taikit_signals_in_flight", map[string]string{"kind": "payment"}))
	sp.End(nil)
}

func TestMetricsInFlightNextTracerWithoutSpan(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := kaizenprom.NewMetrics(reg, kaizenprom.MetricsOptions{})
	require.NoError(t, err)
	tr := m.Tracer(nilSpanTracer{})
	_, sp := tr.Start(context.Background(), tai.SpanInfo{Stage: tai.StageSignal, Kind: "payment"})
	require.NotNil(t, sp, "a next tracer's nil span is replaced")
	assert.Equal(t, 1.0, gaugeValue(t, reg, "taikit_signals_in_flight", map[string]string{"kind": "payment"}))
	sp.End(nil)
	assert.Equal(t, 0.0, gaugeValue(t, reg, "taikit_signals_in_flight", map[string]string{"kind": "payment"}))
}

// recTracer is a tai.Tracer that records the stages of the spans it
// starts and ends; every span has trace ID {1}.
type recTracer struct {
	mu             sync.Mutex
	started, ended []string
}

type recSpan struct {
	t     *recTracer
	stage string
	sc    tai.SpanContext
}

func (s *recSpan) End(error) {
	s.t.mu.Lock()
	defer s.t.mu.Unlock()
	s.t.ended = append(s.t.ended, s.stage)
}

func (s *recSpan) SpanContext() tai.SpanContext { return s.sc }

func (t *recTracer) Start(ctx context.Context, info tai.SpanInfo) (context.Context, tai.Span) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.started = append(t.started, info.Stage.String())
	sp := &recSpan{t: t, stage: info.Stage.String(), sc: tai.SpanContext{TraceID: tai.TraceID{1}, SpanID: tai.SpanID{byte(len(t.started))}}}
	return ctx, sp
}

// nilSpanTracer is a tai.Tracer whose spans are nil.
type nilSpanTracer struct{}

func (nilSpanTracer) Start(ctx context.Context, _ tai.SpanInfo) (context.Context, tai.Span) {
	return ctx, nil
}

func TestMetricsExemplars(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := kaizenprom.NewMetrics(reg, kaizenprom.MetricsOptions{})
	require.NoError(t, err)
	r := tai.Record{ID: "1", Kind: "k", Outcome: tai.Failed, Err: errors.New("x"), Duration: 3 * time.Millisecond,
		Span: tai.SpanContext{TraceID: tai.TraceID{1, 2, 3}, SpanID: tai.SpanID{4}, Sampled: true}}
	r.Stages[tai.StageSignal] = r.Duration
	r.Stages[tai.StageAction] = r.Duration
	m.Observe(context.Background(), r)
	c := series(t, reg, "taikit_signals_total", map[string]string{"kind": "k", "outcome": "failed"})
	require.NotNil(t, c)
	ex := c.GetCounter().GetExemplar()
	require.NotNil(t, ex, "a sampled signal carries an exemplar")
	labels := map[string]string{}
	for _, lp := range ex.GetLabel() {
		labels[lp.GetName()] = lp.GetValue()
	}
	assert.Equal(t, r.Span.TraceID.String(), labels["trace_id"])
	assert.Equal(t, r.Span.SpanID.String(), labels["span_id"])
	h := series(t, reg, "taikit_signal_duration_seconds", map[string]string{"kind": "k", "outcome": "failed"})
	require.NotNil(t, h)
	found := false
	for _, b := range h.GetHistogram().GetBucket() {
		found = found || b.GetExemplar() != nil
	}
	assert.True(t, found, "the signal histogram carries an exemplar")

	// Unsampled, or exemplars off: none.
	reg2 := prometheus.NewRegistry()
	m2, err := kaizenprom.NewMetrics(reg2, kaizenprom.MetricsOptions{NoExemplars: true})
	require.NoError(t, err)
	m2.Observe(context.Background(), r)
	c2 := series(t, reg2, "taikit_signals_total", map[string]string{"kind": "k", "outcome": "failed"})
	require.NotNil(t, c2)
	assert.Nil(t, c2.GetCounter().GetExemplar())
	assert.Equal(t, 1.0, c2.GetCounter().GetValue())
}

func TestMetricsObserveAllocatesNothing(t *testing.T) {
	m, err := kaizenprom.NewMetrics(prometheus.NewRegistry(), kaizenprom.MetricsOptions{})
	require.NoError(t, err)
	r := pipelinetest.RealisticRecord()
	ctx := context.Background()
	m.Observe(ctx, r)
	assert.Zero(t, testing.AllocsPerRun(1000, func() { m.Observe(ctx, r) }))
}

// exposition returns the registry's metrics in the Prometheus text format.
func exposition(t *testing.T, g prometheus.Gatherer) []byte {
	t.Helper()
	mfs, err := g.Gather()
	require.NoError(t, err)
	var buf bytes.Buffer
	enc := expfmt.NewEncoder(&buf, expfmt.NewFormat(expfmt.TypeTextPlain))
	for _, mf := range mfs {
		require.NoError(t, enc.Encode(mf))
	}
	return buf.Bytes()
}

// requireBinary returns the path of an external tool, or skips the test
// when it is missing and TAIKIT_REQUIRE_SERVERS is not 1.
func requireBinary(t *testing.T, name string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("TAIKIT_REQUIRE_SERVERS") == "1" {
			t.Fatalf("%s not found and TAIKIT_REQUIRE_SERVERS=1: %v", name, err)
		}
		t.Skipf("%s not found on PATH; install it (Debian: prometheus) or set TAIKIT_REQUIRE_SERVERS=1 to fail instead", name)
	}
	return path
}

// promtoolCheck runs `promtool check metrics` on an exposition.
func promtoolCheck(t *testing.T, text []byte) {
	t.Helper()
	promtool := requireBinary(t, "promtool")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, promtool, "check", "metrics")
	cmd.Stdin = bytes.NewReader(text)
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "promtool check metrics:\n%s\n--- exposition ---\n%s", out, text)
	assert.Empty(t, strings.TrimSpace(string(out)), "promtool reported problems")
}

func TestMetricsPromtool(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := kaizenprom.NewMetrics(reg, kaizenprom.MetricsOptions{ConstLabels: prometheus.Labels{"service": "payments"}})
	require.NoError(t, err)
	p, err := pipelinetest.New(tai.WithObservers(m), tai.WithTracer(m.Tracer(nil)))
	require.NoError(t, err)
	for _, s := range pipelinetest.Signals() {
		_, _ = p.Process(context.Background(), s)
	}
	text := exposition(t, reg)
	require.Contains(t, string(text), `taikit_signals_total{kind="payment",outcome="denied",service="payments"} 2`)
	require.Contains(t, string(text), `taikit_signals_in_flight{kind="payment",service="payments"} 0`)
	promtoolCheck(t, text)
}

func TestDefaultBuckets(t *testing.T) {
	b := kaizenprom.DefaultBuckets()
	require.Len(t, b, 15)
	assert.Equal(t, 0.0005, b[0])
	assert.Equal(t, 30.0, b[len(b)-1])
	b[0] = 42
	assert.Equal(t, 0.0005, kaizenprom.DefaultBuckets()[0], "each call returns a new slice")

	reg := prometheus.NewRegistry()
	m, err := kaizenprom.NewMetrics(reg, kaizenprom.MetricsOptions{})
	require.NoError(t, err)
	m.Observe(context.Background(), tai.Record{ID: "1", Kind: "k", Outcome: tai.Succeeded, Duration: time.Millisecond})
	h := series(t, reg, "taikit_signal_duration_seconds", map[string]string{"kind": "k", "outcome": "succeeded"})
	require.NotNil(t, h)
	var bounds []float64
	for _, bk := range h.GetHistogram().GetBucket() {
		bounds = append(bounds, bk.GetUpperBound())
	}
	assert.Equal(t, kaizenprom.DefaultBuckets(), bounds, "empty Buckets means DefaultBuckets")

	own := []float64{0.1, 1}
	reg2 := prometheus.NewRegistry()
	m2, err := kaizenprom.NewMetrics(reg2, kaizenprom.MetricsOptions{Buckets: own})
	require.NoError(t, err)
	own[0] = 0.5 // the caller's slice is not kept
	m2.Observe(context.Background(), tai.Record{ID: "1", Kind: "k", Outcome: tai.Succeeded, Duration: 200 * time.Millisecond})
	h2 := series(t, reg2, "taikit_signal_duration_seconds", map[string]string{"kind": "k", "outcome": "succeeded"})
	require.NotNil(t, h2)
	require.Len(t, h2.GetHistogram().GetBucket(), 2)
	assert.Equal(t, 0.1, h2.GetHistogram().GetBucket()[0].GetUpperBound())
	assert.Equal(t, uint64(0), h2.GetHistogram().GetBucket()[0].GetCumulativeCount())
}

// A record whose Outcome is not one of tai's (the zero Outcome, or a number
// past Failed) counts in no outcome series and makes none, with or without
// an exemplar, and its duration is in no series either.
func TestMetricsInvalidOutcomeCountsNowhere(t *testing.T) {
	for _, sampled := range []bool{false, true} {
		reg := prometheus.NewRegistry()
		m, err := kaizenprom.NewMetrics(reg, kaizenprom.MetricsOptions{})
		require.NoError(t, err)
		for _, o := range []tai.Outcome{0, tai.Failed + 1} {
			r := tai.Record{ID: "1", Kind: "k", Outcome: o, Duration: time.Millisecond,
				Span: tai.SpanContext{TraceID: tai.TraceID{1}, SpanID: tai.SpanID{2}, Sampled: sampled}}
			m.Observe(context.Background(), r)
		}
		families, err := reg.Gather()
		require.NoError(t, err)
		var outcomes []string
		for _, f := range families {
			if f.GetName() != "taikit_signals_total" {
				continue
			}
			for _, s := range f.GetMetric() {
				for _, lp := range s.GetLabel() {
					if lp.GetName() == "outcome" {
						outcomes = append(outcomes, lp.GetValue())
					}
				}
				assert.Zero(t, s.GetCounter().GetValue(), "sampled %v", sampled)
			}
		}
		assert.ElementsMatch(t, []string{"succeeded", "denied", "rejected", "failed"}, outcomes, "sampled %v", sampled)
		for _, f := range families {
			if f.GetName() == "taikit_signal_duration_seconds" {
				for _, s := range f.GetMetric() {
					assert.Zero(t, s.GetHistogram().GetSampleCount(), "sampled %v", sampled)
				}
			}
		}
	}
}

// A Kind or policy name that is not valid UTF-8 is counted under a label
// with U+FFFD in place of its bad bytes: Prometheus refuses the bytes, and
// WithLabelValues panicked in Observe.
func TestMetricsInvalidUTF8Labels(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := kaizenprom.NewMetrics(reg, kaizenprom.MetricsOptions{})
	require.NoError(t, err)
	r := tai.Record{ID: "1", Kind: "k\xff", Outcome: tai.Succeeded, Duration: time.Millisecond,
		Decision: tai.Decision{Verdict: tai.Allow, Policy: "p\xfe"}}
	require.NotPanics(t, func() {
		m.Observe(context.Background(), r)
		m.Observe(context.Background(), r)
	})
	assert.Equal(t, 2.0, counterValue(t, reg, "taikit_signals_total", map[string]string{"kind": "k\uFFFD", "outcome": "succeeded"}))
	assert.Equal(t, 2.0, counterValue(t, reg, "taikit_decisions_total", map[string]string{"kind": "k\uFFFD", "policy": "p\uFFFD", "verdict": "allow"}))
}

// With NoStages, Metrics asks for no stage times and keeps no stage
// series, even for a record that carries them (another observer of the
// pipeline may have asked for them).
func TestMetricsNoStages(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := kaizenprom.NewMetrics(reg, kaizenprom.MetricsOptions{NoStages: true})
	require.NoError(t, err)
	assert.False(t, m.ObservesStages())
	for _, sampled := range []bool{false, true} {
		r := tai.Record{ID: "1", Kind: "k", Outcome: tai.Succeeded, Duration: time.Millisecond,
			Span: tai.SpanContext{TraceID: tai.TraceID{1}, SpanID: tai.SpanID{2}, Sampled: sampled}}
		r.Stages[tai.StageAction] = time.Millisecond
		m.Observe(context.Background(), r)
	}
	h := series(t, reg, "taikit_signal_duration_seconds", map[string]string{"kind": "k", "outcome": "succeeded"})
	require.NotNil(t, h)
	assert.EqualValues(t, 2, h.GetHistogram().GetSampleCount())
	assert.Nil(t, family(t, reg, "taikit_stage_duration_seconds"), "no stage series")
}

// A negative Duration (a record made by hand, or timed across a step of
// the wall clock) is observed as zero, as kaizen.Stats counts it: the sum
// of a histogram only grows, and one that went down would read to
// rate() as a reset and add its whole value again.
func TestMetricsNegativeDurationIsZero(t *testing.T) {
	for _, sampled := range []bool{false, true} {
		reg := prometheus.NewRegistry()
		m, err := kaizenprom.NewMetrics(reg, kaizenprom.MetricsOptions{NativeHistogramBucketFactor: 1.1})
		require.NoError(t, err)
		for _, d := range []time.Duration{-3 * time.Second, 2 * time.Second} {
			m.Observe(context.Background(), tai.Record{ID: "1", Kind: "k", Outcome: tai.Succeeded, Duration: d,
				Span: tai.SpanContext{TraceID: tai.TraceID{1}, SpanID: tai.SpanID{2}, Sampled: sampled}})
		}
		h := series(t, reg, "taikit_signal_duration_seconds", map[string]string{"kind": "k", "outcome": "succeeded"}).GetHistogram()
		assert.EqualValues(t, 2, h.GetSampleCount(), "sampled %v", sampled)
		assert.Equal(t, 2.0, h.GetSampleSum(), "sampled %v", sampled)
		assert.EqualValues(t, 1, h.GetBucket()[0].GetCumulativeCount(), "sampled %v", sampled)
		assert.EqualValues(t, 1, h.GetZeroCount(), "sampled %v: in the native histogram's zero bucket", sampled)
		assert.Empty(t, h.GetNegativeSpan(), "sampled %v", sampled)
	}
}

// TestMetricsInFlightNextTracerPanics runs signals through a pipeline whose
// next tracer panics in Start or in a span's End: the pipeline recovers the
// panic and fails the signal, which is then no longer in flight.
func TestMetricsInFlightNextTracerPanics(t *testing.T) {
	for _, where := range []string{"start", "end"} {
		t.Run(where, func(t *testing.T) {
			reg := prometheus.NewRegistry()
			m, err := kaizenprom.NewMetrics(reg, kaizenprom.MetricsOptions{})
			require.NoError(t, err)
			allow := tai.PolicyFunc[pipelinetest.Order](func(context.Context, tai.Signal[pipelinetest.Order]) (tai.Decision, error) {
				return tai.Decision{Verdict: tai.Allow}, nil
			})
			action := tai.ActionFunc[pipelinetest.Order, string](func(context.Context, tai.Signal[pipelinetest.Order]) (string, error) {
				return "ok", nil
			})
			p, err := tai.New(allow, action, tai.WithObservers(m), tai.WithTracer(m.Tracer(panicTracer{where: where})),
				tai.WithLogger(slog.New(slog.DiscardHandler)))
			require.NoError(t, err)
			_, err = p.Process(context.Background(), tai.Signal[pipelinetest.Order]{ID: "1", Kind: "payment"})
			var pe *tai.PanicError
			require.ErrorAs(t, err, &pe, "the pipeline recovers the tracer's panic")
			assert.Equal(t, 0.0, gaugeValue(t, reg, "taikit_signals_in_flight", map[string]string{"kind": "payment"}),
				"a signal whose tracer panicked is not left in flight")
		})
	}
}

// panicTracer is a tai.Tracer that panics when it starts a signal's span
// (where "start") or when that span ends (where "end").
type panicTracer struct{ where string }

type panicSpan struct{}

func (panicSpan) End(error)                    { panic("span end") }
func (panicSpan) SpanContext() tai.SpanContext { return tai.SpanContext{} }

func (t panicTracer) Start(ctx context.Context, info tai.SpanInfo) (context.Context, tai.Span) {
	if info.Stage != tai.StageSignal {
		return ctx, noopSpan{}
	}
	if t.where == "start" {
		panic("span start")
	}
	return ctx, panicSpan{}
}

type noopSpan struct{}

func (noopSpan) End(error)                    {}
func (noopSpan) SpanContext() tai.SpanContext { return tai.SpanContext{} }

// TestMetricsNativeHistogramIsBounded: latencies spread over many powers
// of two (a slow client, a timeout) would give a native histogram a
// bucket for each, without bound; the histogram keeps at most
// MaxNativeHistogramBuckets by widening its buckets, and loses no
// observation doing so.
func TestMetricsNativeHistogramIsBounded(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := kaizenprom.NewMetrics(reg, kaizenprom.MetricsOptions{NativeHistogramBucketFactor: 1.01})
	require.NoError(t, err)
	var n uint64
	for e := range 40 { // 1ns to 18 minutes
		for j := 0; j < 128; j += 8 {
			d := time.Duration(1)<<e + time.Duration(j)*(time.Duration(1)<<e)/128
			m.Observe(context.Background(), tai.Record{ID: "1", Kind: "k", Outcome: tai.Succeeded, Duration: d,
				Stages: [tai.StageAction + 1]time.Duration{tai.StageAction: d}})
			n++
		}
	}
	for name, labels := range map[string]map[string]string{
		"taikit_signal_duration_seconds": {"kind": "k", "outcome": "succeeded"},
		"taikit_stage_duration_seconds":  {"kind": "k", "stage": "action"},
	} {
		h := series(t, reg, name, labels).GetHistogram()
		require.NotNil(t, h, name)
		// The populated buckets: the spans may hold a few empty ones
		// between them, each with a delta that brings its count to 0.
		var buckets, count int64
		for _, delta := range h.GetPositiveDelta() {
			if count += delta; count > 0 {
				buckets++
			}
		}
		assert.Positive(t, buckets, "%s has a native histogram", name)
		assert.LessOrEqual(t, buckets, int64(kaizenprom.MaxNativeHistogramBuckets), name)
		assert.Equal(t, n, h.GetSampleCount(), "%s lost no observation", name)
	}
}

// A next tracer that is a nil pointer (one left unset) is no tracer, as
// tai.WithTracer takes it: the in-flight gauge still counts, and no signal
// fails on it.
func TestMetricsInFlightNextTracerNilPointer(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := kaizenprom.NewMetrics(reg, kaizenprom.MetricsOptions{})
	require.NoError(t, err)
	allow := tai.PolicyFunc[pipelinetest.Order](func(context.Context, tai.Signal[pipelinetest.Order]) (tai.Decision, error) {
		return tai.Decision{Verdict: tai.Allow}, nil
	})
	var during float64
	action := tai.ActionFunc[pipelinetest.Order, string](func(context.Context, tai.Signal[pipelinetest.Order]) (string, error) {
		during = gaugeValue(t, reg, "taikit_signals_in_flight", map[string]string{"kind": "payment"})
		return "ok", nil
	})
	var unset *recTracer
	p, err := tai.New(allow, action, tai.WithObservers(m), tai.WithTracer(m.Tracer(unset)))
	require.NoError(t, err)
	res, err := p.Process(context.Background(), tai.Signal[pipelinetest.Order]{ID: "1", Kind: "payment"})
	require.NoError(t, err)
	assert.Equal(t, tai.Succeeded, res.Outcome)
	assert.Equal(t, tai.SpanContext{}, res.Span, "no tracer, no span")
	assert.Equal(t, 1.0, during, "one signal in flight during its action")
	assert.Equal(t, 0.0, gaugeValue(t, reg, "taikit_signals_in_flight", map[string]string{"kind": "payment"}))
}

// TestMetricsNotMadeByNewMetricsFailsNoSignal: a Metrics that NewMetrics
// did not make — a nil *Metrics (a field left unset) or a declared one —
// counts nothing, and the tracer it returns is next's tracing alone. That
// tracer panicked at the start of every signal, which the pipeline
// failed with a *tai.PanicError, and its Observe at every signal.
func TestMetricsNotMadeByNewMetricsFailsNoSignal(t *testing.T) {
	var unset *kaizenprom.Metrics
	for name, m := range map[string]*kaizenprom.Metrics{"nil": unset, "zero": {}} {
		t.Run(name, func(t *testing.T) {
			require.Nil(t, m.Tracer(nil), "no next, no tracing: tai.WithTracer takes nil for none")
			next := new(recTracer)
			opts := []tai.Option{tai.WithTracer(m.Tracer(next))}
			if m != nil {
				opts = append(opts, tai.WithObservers(m))
			}
			p, err := pipelinetest.New(opts...)
			require.NoError(t, err)
			res, err := p.Process(context.Background(), pipelinetest.Signals()[0])
			require.NoError(t, err)
			assert.Equal(t, tai.Succeeded, res.Outcome)
			assert.Equal(t, tai.TraceID{1}, res.Span.TraceID, "next traced the signal")
			assert.Contains(t, next.ended, "signal")
			if m != nil {
				require.NotPanics(t, func() { m.Observe(context.Background(), pipelinetest.RealisticRecord()) })
			}
		})
	}
}
