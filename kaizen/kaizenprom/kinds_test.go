package kaizenprom_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/kaizen/kaizenprom"
	"github.com/taipattern/taikit/tai"
)

// kindsOf returns the kind label values of the family name.
func kindsOf(t *testing.T, g prometheus.Gatherer, name string) map[string]bool {
	t.Helper()
	kinds := map[string]bool{}
	if mf := family(t, g, name); mf != nil {
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "kind" {
					kinds[l.GetValue()] = true
				}
			}
		}
	}
	return kinds
}

// TestMetricsCapsTheKinds: a flood of kinds (made from user input, by
// mistake) does not grow the series without bound: past MaxKinds, the
// signals of a further kind are counted under OverflowKind, in every
// family, in-flight gauge included, so that a sum over kinds still
// counts every signal.
func TestMetricsCapsTheKinds(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := kaizenprom.NewMetrics(reg, kaizenprom.MetricsOptions{MaxKinds: 2})
	require.NoError(t, err)
	tracer := m.Tracer(nil)
	for i := range 10 {
		kind := fmt.Sprintf("kind-%d", i%5) // kind-0 to kind-4, twice each
		_, span := tracer.Start(context.Background(), tai.SpanInfo{Stage: tai.StageSignal, Kind: kind})
		defer span.End(nil)
		m.Observe(context.Background(), tai.Record{Kind: kind, Outcome: tai.Succeeded,
			Decision: tai.Decision{Verdict: tai.Allow, Policy: "p"}})
	}
	want := map[string]bool{"kind-0": true, "kind-1": true, kaizenprom.OverflowKind: true}
	for _, name := range []string{"taikit_signals_total", "taikit_decisions_total", "taikit_signal_duration_seconds", "taikit_signals_in_flight"} {
		assert.Equal(t, want, kindsOf(t, reg, name), name)
	}
	ok := map[string]string{"outcome": "succeeded"}
	count := func(kind string) float64 {
		ok["kind"] = kind
		return counterValue(t, reg, "taikit_signals_total", ok)
	}
	assert.Equal(t, 2.0, count("kind-0"))
	assert.Equal(t, 2.0, count("kind-1"))
	assert.Equal(t, 6.0, count(kaizenprom.OverflowKind), "kind-2 to kind-4, twice each")
	inFlight := series(t, reg, "taikit_signals_in_flight", map[string]string{"kind": kaizenprom.OverflowKind})
	require.NotNil(t, inFlight)
	assert.Equal(t, 6.0, inFlight.GetGauge().GetValue())
}

func TestMetricsMaxKindsDefaultAndValidation(t *testing.T) {
	_, err := kaizenprom.NewMetrics(prometheus.NewRegistry(), kaizenprom.MetricsOptions{MaxKinds: -1})
	require.ErrorContains(t, err, "kaizenprom: MetricsOptions.MaxKinds -1 is negative")

	reg := prometheus.NewRegistry()
	m, err := kaizenprom.NewMetrics(reg, kaizenprom.MetricsOptions{})
	require.NoError(t, err)
	for i := range kaizenprom.DefaultMaxKinds + 10 {
		m.Observe(context.Background(), tai.Record{Kind: fmt.Sprintf("kind-%d", i), Outcome: tai.Failed})
	}
	kinds := kindsOf(t, reg, "taikit_signals_total")
	assert.Len(t, kinds, kaizenprom.DefaultMaxKinds+1)
	assert.True(t, kinds[kaizenprom.OverflowKind])
	assert.Equal(t, 10.0, counterValue(t, reg, "taikit_signals_total", map[string]string{"kind": kaizenprom.OverflowKind, "outcome": "failed"}))
}

// policiesOf returns the policy label values of decisions_total for kind.
func policiesOf(t *testing.T, g prometheus.Gatherer, kind string) map[string]bool {
	t.Helper()
	policies := map[string]bool{}
	if mf := family(t, g, "taikit_decisions_total"); mf != nil {
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["kind"] == kind {
				policies[labels["policy"]] = true
			}
		}
	}
	return policies
}

// TestMetricsCapsThePolicies: a flood of policy names (a policy that
// makes its Decision.Policy from the signal, by mistake) does not grow
// decisions_total without bound: past MaxPolicies, the decisions of a
// further policy of a kind are counted under OverflowPolicy, so that a
// sum over policies still counts every decision. Each kind has its own
// MaxPolicies. They had a series for every name.
func TestMetricsCapsThePolicies(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := kaizenprom.NewMetrics(reg, kaizenprom.MetricsOptions{MaxPolicies: 2})
	require.NoError(t, err)
	for _, kind := range []string{"a", "b"} {
		for i := range 10 {
			policy := fmt.Sprintf("policy-%d", i%5) // policy-0 to policy-4, twice each
			m.Observe(context.Background(), tai.Record{Kind: kind, Outcome: tai.Denied,
				Decision: tai.Decision{Verdict: tai.Deny, Policy: policy}})
		}
	}
	for _, kind := range []string{"a", "b"} {
		want := map[string]bool{"policy-0": true, "policy-1": true, kaizenprom.OverflowPolicy: true}
		assert.Equal(t, want, policiesOf(t, reg, kind), kind)
		count := func(policy string) float64 {
			return counterValue(t, reg, "taikit_decisions_total", map[string]string{"kind": kind, "policy": policy, "verdict": "deny"})
		}
		assert.Equal(t, 2.0, count("policy-0"))
		assert.Equal(t, 2.0, count("policy-1"))
		assert.Equal(t, 6.0, count(kaizenprom.OverflowPolicy), "policy-2 to policy-4, twice each")
	}
}

// TestMetricsOverflowKindNamedKindSharesThePolicies: a kind named
// OverflowKind, seen before MaxKinds is reached, shares its series with
// the kinds past the limit, its policies too, so that OverflowKind has
// MaxPolicies policies and OverflowPolicy, as any kind has. The two had
// MaxPolicies each under the one label.
func TestMetricsOverflowKindNamedKindSharesThePolicies(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := kaizenprom.NewMetrics(reg, kaizenprom.MetricsOptions{MaxKinds: 1, MaxPolicies: 2})
	require.NoError(t, err)
	for i := range 5 {
		for _, kind := range []string{kaizenprom.OverflowKind, "past-the-limit"} {
			m.Observe(context.Background(), tai.Record{Kind: kind, Outcome: tai.Succeeded,
				Decision: tai.Decision{Verdict: tai.Allow, Policy: fmt.Sprintf("%s-policy-%d", kind, i)}})
		}
	}
	// The first two policies seen under the label keep their series.
	want := map[string]bool{"_other-policy-0": true, "past-the-limit-policy-0": true, kaizenprom.OverflowPolicy: true}
	assert.Equal(t, want, policiesOf(t, reg, kaizenprom.OverflowKind))
	assert.Equal(t, 8.0, counterValue(t, reg, "taikit_decisions_total",
		map[string]string{"kind": kaizenprom.OverflowKind, "policy": kaizenprom.OverflowPolicy, "verdict": "allow"}))
}

func TestMetricsMaxPoliciesDefaultAndValidation(t *testing.T) {
	_, err := kaizenprom.NewMetrics(prometheus.NewRegistry(), kaizenprom.MetricsOptions{MaxPolicies: -1})
	require.ErrorContains(t, err, "kaizenprom: MetricsOptions.MaxPolicies -1 is negative")

	reg := prometheus.NewRegistry()
	m, err := kaizenprom.NewMetrics(reg, kaizenprom.MetricsOptions{})
	require.NoError(t, err)
	for i := range 1000 {
		m.Observe(context.Background(), tai.Record{Kind: "k", Outcome: tai.Succeeded,
			Decision: tai.Decision{Verdict: tai.Allow, Policy: fmt.Sprintf("user-%d", i)}})
	}
	policies := policiesOf(t, reg, "k")
	assert.Len(t, policies, kaizenprom.DefaultMaxPolicies+1)
	assert.True(t, policies[kaizenprom.OverflowPolicy])
	assert.Equal(t, float64(1000-kaizenprom.DefaultMaxPolicies),
		counterValue(t, reg, "taikit_decisions_total", map[string]string{"kind": "k", "policy": kaizenprom.OverflowPolicy, "verdict": "allow"}))
}

// TestMetricsKindsSharingALabelShareASlot: kinds that are not valid
// UTF-8 and clean to the same label value ("x\xff" and "x\xfe" both to
// "x\uFFFD", as does "x\uFFFD" itself) count in one series, so they
// take one of the MaxKinds slots, and a further kind still has series of
// its own. Each took a slot, and pushed the next kind into OverflowKind.
// The same holds for policies: "" is labelled "unnamed", and shares the
// slot of a policy named so.
func TestMetricsKindsSharingALabelShareASlot(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := kaizenprom.NewMetrics(reg, kaizenprom.MetricsOptions{MaxKinds: 2, MaxPolicies: 2})
	require.NoError(t, err)
	tracer := m.Tracer(nil)
	for _, kind := range []string{"x\xff", "x\xfe", "x\uFFFD", "b"} {
		for _, policy := range []string{"", "unnamed", "p\xff", "p\xfe", "q"} {
			_, span := tracer.Start(context.Background(), tai.SpanInfo{Stage: tai.StageSignal, Kind: kind})
			defer span.End(nil)
			m.Observe(context.Background(), tai.Record{Kind: kind, Outcome: tai.Succeeded,
				Decision: tai.Decision{Verdict: tai.Allow, Policy: policy}})
		}
	}
	want := map[string]bool{"x\uFFFD": true, "b": true}
	for _, name := range []string{"taikit_signals_total", "taikit_decisions_total", "taikit_signal_duration_seconds", "taikit_signals_in_flight"} {
		assert.Equal(t, want, kindsOf(t, reg, name), name)
	}
	ok := map[string]string{"outcome": "succeeded"}
	ok["kind"] = "x\uFFFD"
	assert.Equal(t, 15.0, counterValue(t, reg, "taikit_signals_total", ok))
	ok["kind"] = "b"
	assert.Equal(t, 5.0, counterValue(t, reg, "taikit_signals_total", ok))
	for kind, n := range map[string]float64{"x\uFFFD": 3, "b": 1} {
		assert.Equal(t, map[string]bool{"unnamed": true, "p\uFFFD": true, kaizenprom.OverflowPolicy: true}, policiesOf(t, reg, kind), kind)
		decisions := func(policy string) float64 {
			return counterValue(t, reg, "taikit_decisions_total", map[string]string{"kind": kind, "policy": policy, "verdict": "allow"})
		}
		assert.Equal(t, 2*n, decisions("unnamed"), kind)
		assert.Equal(t, 2*n, decisions("p\uFFFD"), kind)
		assert.Equal(t, n, decisions(kaizenprom.OverflowPolicy), kind, "q")
	}
}

// TestMetricsKindsConcurrently: signals of many kinds, some not valid
// UTF-8 or too long and sharing a label value, observed and traced from many
// goroutines at once, are each counted once, and the kinds stay within
// MaxKinds and OverflowKind.
func TestMetricsKindsConcurrently(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := kaizenprom.NewMetrics(reg, kaizenprom.MetricsOptions{MaxKinds: 3, MaxPolicies: 2})
	require.NoError(t, err)
	tracer := m.Tracer(nil)
	long := strings.Repeat("l", kaizenprom.MaxLabelValueLen)
	kinds := []string{"a", "b\xff", "b\xfe", "b\uFFFD", "c", "d\xff", "d\xfe", "e", kaizenprom.OverflowKind, long + "1", long + "2"}
	policies := []string{"", "unnamed", "p\xff", "p\xfe", "q", long + "p", long + "q"}
	const goroutines, each = 8, 200
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for i := range each {
				kind := kinds[(g+i)%len(kinds)]
				_, span := tracer.Start(context.Background(), tai.SpanInfo{Stage: tai.StageSignal, Kind: kind})
				m.Observe(context.Background(), tai.Record{Kind: kind, Outcome: tai.Succeeded,
					Decision: tai.Decision{Verdict: tai.Allow, Policy: policies[i%len(policies)]}})
				span.End(nil)
			}
		})
	}
	wg.Wait()
	got := kindsOf(t, reg, "taikit_signals_total")
	assert.LessOrEqual(t, len(got), 4, "MaxKinds label values and OverflowKind: %v", got)
	var signals, decisions, inFlight float64
	for _, mf := range mustGather(t, reg) {
		for _, s := range mf.GetMetric() {
			switch mf.GetName() {
			case "taikit_signals_total":
				signals += s.GetCounter().GetValue()
			case "taikit_decisions_total":
				decisions += s.GetCounter().GetValue()
			case "taikit_signals_in_flight":
				inFlight += s.GetGauge().GetValue()
			}
		}
	}
	assert.Equal(t, float64(goroutines*each), signals)
	assert.Equal(t, float64(goroutines*each), decisions)
	assert.Zero(t, inFlight)
}

func mustGather(t *testing.T, g prometheus.Gatherer) []*dto.MetricFamily {
	t.Helper()
	mfs, err := g.Gather()
	require.NoError(t, err)
	return mfs
}

// TestMetricsInvalidUTF8KindAllocatesNothing: a kind and a policy name
// that are not valid UTF-8 are kept by name once seen, so a signal of
// them is counted without cleaning them again.
func TestMetricsInvalidUTF8KindAllocatesNothing(t *testing.T) {
	m, err := kaizenprom.NewMetrics(prometheus.NewRegistry(), kaizenprom.MetricsOptions{})
	require.NoError(t, err)
	r := tai.Record{Kind: "k\xff", Outcome: tai.Succeeded, Decision: tai.Decision{Verdict: tai.Allow, Policy: "p\xff"}}
	m.Observe(context.Background(), r)
	assert.Zero(t, testing.AllocsPerRun(100, func() { m.Observe(context.Background(), r) }))
}
