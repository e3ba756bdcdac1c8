package kaizenprom_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/kaizen/kaizenprom"
	"github.com/taipattern/taikit/tai"
)

// TestMetricsCapsTheLengthOfLabelValues: a kind or a policy name made
// from user input by mistake can be as long as that input. Labelled as it
// is, it would be written out in full in each of the kind's series, at
// every scrape (131 series of a 64 KiB kind are 8 MiB a scrape), and a
// Prometheus with a label_value_length_limit would refuse the whole
// scrape. Its label value is its first MaxLabelValueLen bytes, cut at a
// character boundary, in every family, the in-flight gauge too.
func TestMetricsCapsTheLengthOfLabelValues(t *testing.T) {
	long := strings.Repeat("k", 64<<10)
	euros := strings.Repeat("€", 100) // 300 bytes of three-byte characters
	cases := []struct {
		name, kind, policy string
		wantKind, wantPol  string
	}{
		{"ascii", long, long + "p", long[:kaizenprom.MaxLabelValueLen], long[:kaizenprom.MaxLabelValueLen]},
		// 42 euros are 126 bytes: a 43rd would pass the limit.
		{"cut at a character boundary", euros, "p" + euros, euros[:126], "p" + euros[:126]},
		{"not valid UTF-8", long + "\xff", strings.Repeat("\xff", 1000), long[:kaizenprom.MaxLabelValueLen], "\uFFFD"},
		// The limit falls after the third byte of a four-byte character,
		// where U+FFFD would just fit: the valid name is cut before it.
		{"a character cut where U+FFFD would fit", strings.Repeat("k", 125) + "😀" + long, "p",
			strings.Repeat("k", 125), "p"},
		// A name of exactly MaxLabelValueLen bytes whose last is bad: its
		// U+FFFD would pass the limit.
		{"a bad byte at the limit", strings.Repeat("k", kaizenprom.MaxLabelValueLen-1) + "\xff", "p",
			strings.Repeat("k", kaizenprom.MaxLabelValueLen-1), "p"},
		{"invalid bytes growing as they are cleaned", strings.Repeat("a\xff", 1000), "p", strings.Repeat("a\uFFFD", 32), "p"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			reg := prometheus.NewRegistry()
			m, err := kaizenprom.NewMetrics(reg, kaizenprom.MetricsOptions{})
			require.NoError(t, err)
			_, span := m.Tracer(nil).Start(context.Background(), tai.SpanInfo{Stage: tai.StageSignal, Kind: c.kind})
			defer span.End(nil)
			m.Observe(context.Background(), tai.Record{Kind: c.kind, Outcome: tai.Succeeded,
				StagesTimed: true, Reached: [tai.StageAction + 1]bool{true, true, true, true},
				Decision: tai.Decision{Verdict: tai.Allow, Policy: c.policy}})

			var tooLong, notUTF8 []string
			for _, mf := range mustGather(t, reg) {
				for _, s := range mf.GetMetric() {
					for _, l := range s.GetLabel() {
						if len(l.GetValue()) > kaizenprom.MaxLabelValueLen {
							tooLong = append(tooLong, fmt.Sprintf("%s{%s}: %d bytes", mf.GetName(), l.GetName(), len(l.GetValue())))
						}
						if !utf8.ValidString(l.GetValue()) {
							notUTF8 = append(notUTF8, mf.GetName()+"{"+l.GetName()+"}")
						}
					}
				}
			}
			assert.Empty(t, tooLong, "label values longer than MaxLabelValueLen")
			assert.Empty(t, notUTF8, "label values not valid UTF-8")
			want := map[string]bool{c.wantKind: true}
			for _, name := range []string{"taikit_signals_total", "taikit_decisions_total", "taikit_signal_duration_seconds", "taikit_stage_duration_seconds", "taikit_signals_in_flight"} {
				assert.Equal(t, want, kindsOf(t, reg, name), name)
			}
			assert.Equal(t, map[string]bool{c.wantPol: true}, policiesOf(t, reg, c.wantKind))
			promtoolCheck(t, exposition(t, reg))
		})
	}
}

// TestMetricsLongKindsSharingALabelShareASlot: kinds that differ only
// past MaxLabelValueLen bytes have one label value, count in its series
// and take one of the MaxKinds slots; a signal of such a kind, once its
// series are made, is counted without allocating.
func TestMetricsLongKindsSharingALabelShareASlot(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := kaizenprom.NewMetrics(reg, kaizenprom.MetricsOptions{MaxKinds: 2})
	require.NoError(t, err)
	prefix := strings.Repeat("k", kaizenprom.MaxLabelValueLen)
	for i := range 10 {
		kind := prefix + strings.Repeat("x", i+1)
		m.Observe(context.Background(), tai.Record{Kind: kind, Outcome: tai.Succeeded})
	}
	m.Observe(context.Background(), tai.Record{Kind: "b", Outcome: tai.Succeeded})
	m.Observe(context.Background(), tai.Record{Kind: "c", Outcome: tai.Succeeded})
	assert.Equal(t, map[string]bool{prefix: true, "b": true, kaizenprom.OverflowKind: true}, kindsOf(t, reg, "taikit_signals_total"))
	ok := map[string]string{"outcome": "succeeded", "kind": prefix}
	assert.Equal(t, 10.0, counterValue(t, reg, "taikit_signals_total", ok))

	r := tai.Record{Kind: prefix + "yz", Outcome: tai.Succeeded, Decision: tai.Decision{Verdict: tai.Allow, Policy: prefix + "p"}}
	m.Observe(context.Background(), r)
	assert.Zero(t, testing.AllocsPerRun(100, func() { m.Observe(context.Background(), r) }))
}
