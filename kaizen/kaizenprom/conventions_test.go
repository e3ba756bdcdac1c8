package kaizenprom_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/heijunka"
	"github.com/taipattern/taikit/jidoka"
	"github.com/taipattern/taikit/kaizen/kaizenprom"
	"github.com/taipattern/taikit/kanban"
	"github.com/taipattern/taikit/tai"
)

// awkwardNames are label values that test the escaping of an exposition:
// characters outside ASCII, the three the text format escapes (quote,
// backslash, newline), others it does not (tab, carriage return), the
// format's own punctuation, and a value far longer than any name.
func awkwardNames() []string {
	return []string{
		"plain",
		"ünïcödé 支払い 💳",
		`quo"te`,
		`back\slash`,
		`trailing\`,
		"new\nline",
		"tab\tand\rreturn",
		`{kind="x",le="+Inf"} 1`,
		"# HELP taikit_signals_total lies",
		strings.Repeat("長い", 2000),
	}
}

// conventionsRegistry puts every family kaizenprom offers on one registry,
// with native histograms, constant labels of awkward values, and every
// awkward name as a kind, a policy, a breaker, a line, a watchdog, a
// limiter, a gate and a queue.
func conventionsRegistry(t *testing.T) *prometheus.Registry {
	t.Helper()
	reg := prometheus.NewRegistry()
	ctx := context.Background()
	constLabels := prometheus.Labels{"service": "pay\"ments\\\n✓"}
	m, err := kaizenprom.NewMetrics(reg, kaizenprom.MetricsOptions{ConstLabels: constLabels, NativeHistogramBucketFactor: 1.1})
	require.NoError(t, err)
	copts := kaizenprom.CollectorOptions{ConstLabels: constLabels}
	jc, err := kaizenprom.NewJidokaCollector(reg, copts)
	require.NoError(t, err)
	hc, err := kaizenprom.NewHeijunkaCollector(reg, copts)
	require.NoError(t, err)
	kc, err := kaizenprom.NewKanbanCollector(reg, copts)
	require.NoError(t, err)

	tr := m.Tracer(nil)
	kinds := append(awkwardNames(), "", "bad\xff\xfeutf8")
	for i, kind := range kinds {
		_, sp := tr.Start(ctx, tai.SpanInfo{Stage: tai.StageSignal, Name: kind, Kind: kind})
		sp.End(nil)
		for o, outcome := range tai.Outcomes() {
			r := tai.Record{ID: "1", Kind: kind, Outcome: outcome, Duration: time.Duration(i*o+1) * time.Millisecond,
				Decision:    tai.Decision{Verdict: tai.Verdict(o%3 + 1), Policy: kinds[(i+o)%len(kinds)]},
				StagesTimed: true, Reached: [tai.StageAction + 1]bool{true, true, true, true}}
			r.Stages[tai.StageGate] = time.Microsecond
			r.Stages[tai.StagePolicy] = time.Duration(o) * time.Millisecond
			r.Stages[tai.StageAction] = time.Duration(i) * time.Second
			if o%2 == 0 {
				r.Span = tai.SpanContext{TraceID: tai.TraceID{byte(i + 1)}, SpanID: tai.SpanID{byte(o + 1)}, Sampled: true}
			}
			m.Observe(ctx, r)
		}
	}

	for i, name := range awkwardNames() {
		b, err := jidoka.NewBreaker(jidoka.BreakerOptions{Name: name})
		require.NoError(t, err)
		require.NoError(t, jc.AddBreaker(b))
		require.NoError(t, jc.AddLine(mustLine(t, name)))
		w, err := jidoka.NewWatchdog(jidoka.WatchdogOptions{Name: name, Check: func(context.Context) error { return nil }})
		require.NoError(t, err)
		require.NoError(t, jc.AddWatchdog(w))

		if i%2 == 0 {
			l, err := heijunka.NewLimiter(heijunka.PerSecond(float64(i+1)), heijunka.LimiterOptions{Name: name})
			require.NoError(t, err)
			require.NoError(t, hc.AddLimiter(l))
			g := hc.Gate(l)
			for range 3 {
				_ = g.Admit(ctx, "k")
			}
		} else {
			k, err := heijunka.NewKeyed(heijunka.Unlimited(), heijunka.KeyedOptions{Name: name})
			require.NoError(t, err)
			require.NoError(t, hc.AddKeyed(k))
			_ = hc.Gate(k).Admit(ctx, "k")
		}
		_ = hc.Gate(namedGate(name+"\xff")).Admit(ctx, "k")
		_ = hc.Gate(failingGate{}).Admit(ctx, "k")

		q, err := kanban.NewMemory[string](kanban.MemoryOptions{})
		require.NoError(t, err)
		require.NoError(t, q.Publish(ctx, kanban.Message[string]{ID: "m1", Payload: name}))
		require.NoError(t, kc.AddQueue(name, q))
		obs, err := kc.HandlerObserver(name)
		require.NoError(t, err)
		obs.ObserveHandler(time.Duration(i)*time.Millisecond, nil)
	}
	return reg
}

// failingGate rejects every signal with an error that is no limit.
type failingGate struct{}

func (failingGate) Admit(context.Context, string) error { return errors.New("store down") }

var (
	conventionMetricName = regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_]*$`) // no colon: those are recording rules'
	conventionLabelName  = regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_]*$`)
)

// TestExpositionFollowsPrometheusConventions checks each family of a
// registry holding every collector, fed awkward names, against the
// Prometheus naming and exposition rules, and the scrape with promtool.
func TestExpositionFollowsPrometheusConventions(t *testing.T) {
	reg := conventionsRegistry(t)
	mfs, err := reg.Gather()
	require.NoError(t, err)

	// Every family of the package is there.
	var names []string
	for _, mf := range mfs {
		names = append(names, mf.GetName())
	}
	for _, want := range []string{
		"taikit_signals_total", "taikit_decisions_total", "taikit_signal_duration_seconds",
		"taikit_stage_duration_seconds", "taikit_signals_in_flight",
		"taikit_breaker_state", "taikit_breaker_transitions_total", "taikit_breaker_failure_ratio",
		"taikit_breaker_slow_call_ratio", "taikit_line_stopped", "taikit_line_stops_total",
		"taikit_watchdog_healthy", "taikit_watchdog_checks_total",
		"taikit_limiter_rate", "taikit_limiter_burst", "taikit_limiter_live_keys", "taikit_limiter_requests_total",
		"taikit_queue_published_total", "taikit_queue_duplicates_total", "taikit_queue_handled_total",
		"taikit_queue_retried_total", "taikit_queue_redelivered_total", "taikit_queue_dead_lettered_total",
		"taikit_queue_redriven_total", "taikit_queue_in_flight", "taikit_queue_depth",
		"taikit_queue_oldest_age_seconds", "taikit_queue_dead_letters", "taikit_queue_backlog_up",
		"taikit_queue_handler_duration_seconds",
	} {
		assert.Contains(t, names, want)
	}

	for _, mf := range mfs {
		name := mf.GetName()
		assert.Regexp(t, conventionMetricName, name)
		assert.NotEmpty(t, strings.TrimSpace(mf.GetHelp()), "%s has HELP text", name)
		assert.True(t, utf8.ValidString(mf.GetHelp()), name)
		switch mf.GetType() {
		case dto.MetricType_COUNTER:
			assert.True(t, strings.HasSuffix(name, "_total"), "counter %s ends in _total", name)
		case dto.MetricType_GAUGE, dto.MetricType_HISTOGRAM:
			assert.False(t, strings.HasSuffix(name, "_total"), "%s is no counter and does not end in _total", name)
		default:
			t.Errorf("%s is a %v: the package exports counters, gauges and histograms", name, mf.GetType())
		}
		assert.False(t, strings.HasSuffix(name, "_info"), "%s: the package exports no info metrics", name)
		if strings.Contains(name, "duration") || strings.Contains(name, "_age") {
			assert.True(t, strings.HasSuffix(name, "_seconds"), "%s measures time in seconds", name)
		}
		for _, bad := range []string{"_milliseconds", "_ms", "_bytes_total", "_percent", "_count", "_sum", "_bucket"} {
			assert.False(t, strings.HasSuffix(name, bad), "%s: base units, no reserved suffix", name)
		}
		for _, metric := range mf.GetMetric() {
			seen := map[string]bool{}
			for _, lp := range metric.GetLabel() {
				ln := lp.GetName()
				assert.Regexp(t, conventionLabelName, ln, name)
				assert.False(t, strings.HasPrefix(ln, "__"), "%s: label %s is reserved", name, ln)
				assert.NotEqual(t, "quantile", ln, "%s: no summaries, so no quantile label", name)
				assert.NotEqual(t, "le", ln, "%s: le is a histogram's bucket label, never a label of a series", name)
				assert.False(t, seen[ln], "%s: label %s twice", name, ln)
				seen[ln] = true
				assert.True(t, utf8.ValidString(lp.GetValue()), "%s{%s=%q}", name, ln, lp.GetValue())
			}
			if h := metric.GetHistogram(); h != nil {
				checkClassicBuckets(t, name, h)
			}
		}
	}

	// A kind or policy is cut to MaxLabelValueLen bytes.
	for _, mf := range mfs {
		for _, metric := range mf.GetMetric() {
			for _, lp := range metric.GetLabel() {
				if lp.GetName() == "kind" || lp.GetName() == "policy" {
					assert.LessOrEqual(t, len(lp.GetValue()), kaizenprom.MaxLabelValueLen, "%s{%s}", mf.GetName(), lp.GetName())
				}
			}
		}
	}

	problems, err := testutil.GatherAndLint(reg)
	require.NoError(t, err)
	assert.Empty(t, problems)

	text := exposition(t, reg)
	promtoolCheck(t, text)
	checkRoundTrip(t, mfs, text)
}

// checkClassicBuckets checks the classic buckets of a histogram series:
// bounds finite, strictly increasing (so sorted and unique), counts
// cumulative and at most the series' count.
func checkClassicBuckets(t *testing.T, name string, h *dto.Histogram) {
	t.Helper()
	var prevBound float64 = math.Inf(-1)
	var prevCount uint64
	for _, b := range h.GetBucket() {
		ub := b.GetUpperBound()
		assert.False(t, math.IsInf(ub, 0) || math.IsNaN(ub), "%s: +Inf is the encoder's own bucket", name)
		assert.Greater(t, ub, prevBound, "%s: bounds strictly increasing", name)
		assert.GreaterOrEqual(t, b.GetCumulativeCount(), prevCount, "%s: counts cumulative", name)
		prevBound, prevCount = ub, b.GetCumulativeCount()
	}
	assert.LessOrEqual(t, prevCount, h.GetSampleCount(), name)
	assert.False(t, math.IsNaN(h.GetSampleSum()) || h.GetSampleSum() < 0, "%s: a sum of durations", name)
}

// checkRoundTrip parses the text exposition back and checks that every
// series has the labels it was gathered with: each value escaped so that
// it reads back as it was.
func checkRoundTrip(t *testing.T, gathered []*dto.MetricFamily, text []byte) {
	t.Helper()
	parser := expfmt.NewTextParser(model.LegacyValidation)
	parsed, err := parser.TextToMetricFamilies(bytes.NewReader(text))
	require.NoError(t, err)
	require.Len(t, parsed, len(gathered))
	for _, mf := range gathered {
		p := parsed[mf.GetName()]
		require.NotNil(t, p, mf.GetName())
		assert.Equal(t, mf.GetHelp(), p.GetHelp(), mf.GetName())
		assert.Equal(t, mf.GetType(), p.GetType(), mf.GetName())
		require.Len(t, p.GetMetric(), len(mf.GetMetric()), mf.GetName())
		for i, m := range mf.GetMetric() {
			assert.Equal(t, labelMap(m), labelMap(p.GetMetric()[i]), mf.GetName())
		}
	}
}

func labelMap(m *dto.Metric) map[string]string {
	l := map[string]string{}
	for _, lp := range m.GetLabel() {
		l[lp.GetName()] = lp.GetValue()
	}
	return l
}

// TestNativeHistogramsParseFromAProtobufScrape scrapes the registry in the
// protobuf format, as Prometheus scrapes native histograms, parses it with
// client_golang's own decoder and checks each native histogram: a schema
// Prometheus takes, spans and deltas that account for every observation,
// and no more buckets than MaxNativeHistogramBuckets.
func TestNativeHistogramsParseFromAProtobufScrape(t *testing.T) {
	reg := conventionsRegistry(t)
	srv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	defer srv.Close()
	req, err := http.NewRequest(http.MethodGet, srv.URL, nil)
	require.NoError(t, err)
	req.Header.Set("Accept", "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited")
	resp, err := srv.Client().Do(req)
	require.NoError(t, err)
	defer func() { _ = resp.Body.Close() }()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	format := expfmt.ResponseFormat(resp.Header)
	require.Equal(t, expfmt.TypeProtoDelim, format.FormatType(), "Content-Type %s", resp.Header.Get("Content-Type"))

	dec := expfmt.NewDecoder(resp.Body, format)
	natives := 0
	for {
		var mf dto.MetricFamily
		if err := dec.Decode(&mf); errors.Is(err, io.EOF) {
			break
		} else {
			require.NoError(t, err)
		}
		if mf.GetType() != dto.MetricType_HISTOGRAM {
			continue
		}
		for _, m := range mf.GetMetric() {
			h := m.GetHistogram()
			checkClassicBuckets(t, mf.GetName(), h)
			if !isNative(h) {
				assert.NotContains(t, []string{"taikit_signal_duration_seconds", "taikit_stage_duration_seconds"}, mf.GetName(),
					"with NativeHistogramBucketFactor every series of Metrics is native")
				continue
			}
			natives++
			checkNative(t, mf.GetName(), h)
		}
	}
	assert.Positive(t, natives)
}

func isNative(h *dto.Histogram) bool {
	return h.Schema != nil || len(h.GetPositiveSpan()) > 0 || h.GetZeroThreshold() > 0
}

// checkNative checks a native histogram as Prometheus reads it.
func checkNative(t *testing.T, name string, h *dto.Histogram) {
	t.Helper()
	assert.True(t, h.GetSchema() >= -4 && h.GetSchema() <= 8, "%s: schema %d", name, h.GetSchema())
	assert.GreaterOrEqual(t, h.GetZeroThreshold(), 0.0, name)
	assert.Empty(t, h.GetNegativeSpan(), "%s: no negative durations", name)
	assert.Empty(t, h.GetNegativeDelta(), "%s: no negative durations", name)
	total, buckets := checkSpans(t, name, h.GetPositiveSpan(), h.GetPositiveDelta())
	assert.Equal(t, h.GetSampleCount(), total+h.GetZeroCount(), "%s: buckets and zero bucket hold every observation", name)
	assert.LessOrEqual(t, buckets, kaizenprom.MaxNativeHistogramBuckets, name)
}

// checkSpans checks that the spans cover exactly the deltas, that no
// bucket count goes below zero, and returns the observations the buckets
// hold and the number of buckets.
func checkSpans(t *testing.T, name string, spans []*dto.BucketSpan, deltas []int64) (total uint64, buckets int) {
	t.Helper()
	n := 0
	for i, s := range spans {
		if i > 0 {
			assert.GreaterOrEqual(t, s.GetOffset(), int32(0), "%s: spans in order", name)
		}
		n += int(s.GetLength())
	}
	require.Equal(t, n, len(deltas), "%s: spans cover the deltas", name)
	var count int64
	for _, d := range deltas {
		count += d
		require.GreaterOrEqual(t, count, int64(0), "%s: bucket counts", name)
		total += uint64(count)
	}
	return total, len(deltas)
}

// TestExpositionCardinalityIsBounded feeds Metrics and the HeijunkaCollector's
// gates far more kinds, policies and names than their bounds, as a
// program that made them from input would, and checks that the series of
// a scrape stay within what the docs state.
func TestExpositionCardinalityIsBounded(t *testing.T) {
	reg := prometheus.NewRegistry()
	const maxKinds, maxPolicies = 4, 3
	m, err := kaizenprom.NewMetrics(reg, kaizenprom.MetricsOptions{MaxKinds: maxKinds, MaxPolicies: maxPolicies, NoStages: true})
	require.NoError(t, err)
	tr := m.Tracer(nil)
	ctx := context.Background()
	for i := range 200 {
		kind := strings.Repeat("k", i+1) + "\n\"\\"
		_, sp := tr.Start(ctx, tai.SpanInfo{Stage: tai.StageSignal, Name: kind, Kind: kind})
		sp.End(nil)
		for j := range 20 {
			m.Observe(ctx, tai.Record{ID: "1", Kind: kind, Outcome: tai.Denied, Duration: time.Millisecond,
				Decision: tai.Decision{Verdict: tai.Deny, Policy: strings.Repeat("p", j+1)}})
		}
	}
	mfs, err := reg.Gather()
	require.NoError(t, err)
	kinds := map[string]bool{}
	policies := map[string]map[string]bool{}
	for _, mf := range mfs {
		for _, metric := range mf.GetMetric() {
			l := labelMap(metric)
			kinds[l["kind"]] = true
			if p, ok := l["policy"]; ok {
				if policies[l["kind"]] == nil {
					policies[l["kind"]] = map[string]bool{}
				}
				policies[l["kind"]][p] = true
			}
		}
	}
	assert.Len(t, kinds, maxKinds+1, "MaxKinds kinds and OverflowKind")
	assert.True(t, kinds[kaizenprom.OverflowKind])
	for kind, ps := range policies {
		assert.LessOrEqual(t, len(ps), maxPolicies+1, "kind %q: MaxPolicies policies and OverflowPolicy", kind)
	}
	perHistogram := len(kaizenprom.DefaultBuckets()) + 3
	perKind := 4 + 1 + 4*perHistogram // as MetricsOptions.MaxKinds states it with NoStages
	// Only denials were counted, so each kind has one verdict of each of
	// its policies: at most three series each, as MaxPolicies states.
	assert.LessOrEqual(t, scrapedSeries(t, reg), (maxKinds+1)*(perKind+3*(maxPolicies+1)))
	promtoolCheck(t, exposition(t, reg))
}
