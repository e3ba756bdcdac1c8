package kaizenprom_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/kaizen/kaizenprom"
	"github.com/taipattern/taikit/tai"
)

// TestMetricsSeriesPerKind counts the series a kind adds to a scrape, as
// MetricsOptions.MaxKinds states them: four counters, the in-flight gauge
// and seven histograms of a series per bound, +Inf, _sum and _count (131
// with the DefaultBuckets, 77 with NoStages), and three more for each of
// its policies.
func TestMetricsSeriesPerKind(t *testing.T) {
	perHistogram := len(kaizenprom.DefaultBuckets()) + 3
	cases := []struct {
		name string
		opts kaizenprom.MetricsOptions
		want int
	}{
		{"stages", kaizenprom.MetricsOptions{}, 4 + 1 + 7*perHistogram},
		{"no stages", kaizenprom.MetricsOptions{NoStages: true}, 4 + 1 + 4*perHistogram},
	}
	require.Equal(t, 131, cases[0].want)
	require.Equal(t, 77, cases[1].want)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			reg := prometheus.NewRegistry()
			m, err := kaizenprom.NewMetrics(reg, c.opts)
			require.NoError(t, err)
			tr := m.Tracer(nil)
			_, sp := tr.Start(context.Background(), tai.SpanInfo{Stage: tai.StageSignal, Name: "payment", Kind: "payment"})
			sp.End(nil)
			assert.Equal(t, c.want, scrapedSeries(t, reg), "a kind without decisions")

			m.Observe(context.Background(), tai.Record{ID: "1", Kind: "payment", Outcome: tai.Denied, Duration: time.Millisecond,
				Decision: tai.Decision{Verdict: tai.Deny, Policy: "fraud"}})
			assert.Equal(t, c.want+3, scrapedSeries(t, reg), "and a policy")
		})
	}
}

// scrapedSeries counts the samples of a scrape of g in the text format.
func scrapedSeries(t *testing.T, g prometheus.Gatherer) int {
	t.Helper()
	n := 0
	for line := range strings.Lines(string(exposition(t, g))) {
		if !strings.HasPrefix(line, "#") && strings.TrimSpace(line) != "" {
			n++
		}
	}
	return n
}

// TestMetricsExemplarsServedAsOpenMetrics: the exemplars of a sampled
// signal reach a scrape served with promhttp.HandlerOpts{EnableOpenMetrics:
// true}, as the docs say to serve them; promhttp's default, the classic
// text format, has no exemplars.
func TestMetricsExemplarsServedAsOpenMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := kaizenprom.NewMetrics(reg, kaizenprom.MetricsOptions{})
	require.NoError(t, err)
	r := tai.Record{ID: "1", Kind: "payment", Outcome: tai.Succeeded, Duration: 3 * time.Millisecond,
		Span: tai.SpanContext{TraceID: tai.TraceID{1, 2, 3}, SpanID: tai.SpanID{4}, Sampled: true}}
	m.Observe(context.Background(), r)

	scrape := func(opts promhttp.HandlerOpts) string {
		srv := httptest.NewServer(promhttp.HandlerFor(reg, opts))
		defer srv.Close()
		req, err := http.NewRequest(http.MethodGet, srv.URL, nil)
		require.NoError(t, err)
		// What Prometheus asks for by default.
		req.Header.Set("Accept", "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1")
		resp, err := srv.Client().Do(req)
		require.NoError(t, err)
		defer func() { _ = resp.Body.Close() }()
		body, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		return string(body)
	}
	openMetrics := scrape(promhttp.HandlerOpts{EnableOpenMetrics: true})
	for _, prefix := range []string{
		`taikit_signals_total{kind="payment",outcome="succeeded"} 1.0 # {`,
		`taikit_signal_duration_seconds_bucket{kind="payment",outcome="succeeded",le="0.005"} 1 # {`,
	} {
		line := lineWithPrefix(openMetrics, prefix)
		require.NotEmpty(t, line, "no exemplar on %s", prefix)
		assert.Contains(t, line, `trace_id="`+r.Span.TraceID.String()+`"`)
		assert.Contains(t, line, `span_id="`+r.Span.SpanID.String()+`"`)
	}
	assert.NotContains(t, scrape(promhttp.HandlerOpts{}), "trace_id", "the classic text format carries no exemplars")
}

// lineWithPrefix returns the line of text that starts with prefix, or "".
func lineWithPrefix(text, prefix string) string {
	for line := range strings.Lines(text) {
		if strings.HasPrefix(line, prefix) {
			return line
		}
	}
	return ""
}
