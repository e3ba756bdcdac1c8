package kaizenprom_test

import (
	"context"
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"pgregory.net/rapid"

	"github.com/taipattern/taikit/kaizen/kaizenprom"
	"github.com/taipattern/taikit/tai"
)

// metricsModel computes, from the records and spans a Metrics was given,
// the series its docs say it exports, by family and labels.
type metricsModel struct {
	maxKinds, maxPolicies int
	stages                bool

	kinds    []string            // the kinds' label values with series of their own, as seen
	policies map[string][]string // by kind (or overflow), the policies' label values with series of their own
	values   map[string]float64  // counters and gauges, by series
	hists    map[string][]float64
	open     []string // the kinds of the signals in flight
}

// overflow stands for the kinds past MaxKinds among the kinds of the
// model, which no kind seen is. A kind named OverflowKind, seen before the
// limit, stands for them itself: they share its series, policies
// included.
const overflow = "\x00overflow"

// long is a kind or policy name of MaxLabelValueLen bytes, the label
// value of the longer names that start with it.
var long = strings.Repeat("€", kaizenprom.MaxLabelValueLen/3) + strings.Repeat("l", kaizenprom.MaxLabelValueLen%3)

func seriesKey(family string, labels ...string) string {
	return family + "{" + strings.Join(labels, ",") + "}"
}

// label is the label value of a kind or policy.
func label(name string) string {
	if name == overflow {
		return kaizenprom.OverflowKind
	}
	l := strings.ToValidUTF8(name, "\uFFFD")
	for len(l) > kaizenprom.MaxLabelValueLen {
		_, size := utf8.DecodeLastRuneInString(l)
		l = l[:len(l)-size]
	}
	return l
}

// kindOf returns the kind whose series kind counts in, making them.
// Kinds that clean to the same label value are one kind.
func (m *metricsModel) kindOf(kind string) string {
	kind = label(kind)
	if slices.Contains(m.kinds, kind) {
		return kind
	}
	if len(m.kinds) >= m.maxKinds {
		if slices.Contains(m.kinds, kaizenprom.OverflowKind) {
			return kaizenprom.OverflowKind
		}
		kind = overflow
		if _, ok := m.policies[kind]; ok {
			return kind
		}
	} else {
		m.kinds = append(m.kinds, kind)
	}
	m.policies[kind] = []string{}
	for _, o := range tai.Outcomes() {
		m.values[seriesKey("signals_total", label(kind), o.String())] += 0
		m.histogram(seriesKey("signal_duration_seconds", label(kind), o.String()))
	}
	if m.stages {
		for _, st := range []tai.Stage{tai.StageGate, tai.StagePolicy, tai.StageAction} {
			m.histogram(seriesKey("stage_duration_seconds", label(kind), st.String()))
		}
	}
	return kind
}

// histogram makes the histogram series k, unless it is made: a kind
// named OverflowKind and the kinds past MaxKinds share their series.
func (m *metricsModel) histogram(k string) {
	if _, ok := m.hists[k]; !ok {
		m.hists[k] = nil
	}
}

// policyOf returns the policy label value of policy in kind, making its
// series. Policies that clean to the same label value are one policy,
// and "" is "unnamed".
func (m *metricsModel) policyOf(kind, policy string) string {
	if policy == "" {
		policy = "unnamed"
	}
	policy = label(policy)
	if !slices.Contains(m.policies[kind], policy) {
		if len(m.policies[kind]) >= m.maxPolicies {
			policy = overflow
		} else {
			m.policies[kind] = append(m.policies[kind], policy)
		}
	}
	name := policy
	if policy == overflow {
		name = kaizenprom.OverflowPolicy
	}
	for _, v := range []tai.Verdict{tai.Allow, tai.Review, tai.Deny} {
		m.values[seriesKey("decisions_total", label(kind), name, v.String())] += 0
	}
	return name
}

func (m *metricsModel) observe(r tai.Record, timed bool) {
	kind := m.kindOf(r.Kind)
	if r.Outcome.Valid() {
		m.values[seriesKey("signals_total", label(kind), r.Outcome.String())]++
		k := seriesKey("signal_duration_seconds", label(kind), r.Outcome.String())
		m.hists[k] = append(m.hists[k], max(r.Duration, 0).Seconds())
	}
	if r.Decision.Verdict.Valid() {
		policy := m.policyOf(kind, r.Decision.Policy)
		m.values[seriesKey("decisions_total", label(kind), policy, r.Decision.Verdict.String())]++
	}
	if !m.stages || !timed {
		return // a stage not timed is not observed
	}
	for _, st := range []tai.Stage{tai.StageGate, tai.StagePolicy, tai.StageAction} {
		if r.Reached[st] {
			k := seriesKey("stage_duration_seconds", label(kind), st.String())
			m.hists[k] = append(m.hists[k], max(r.Stages[st], 0).Seconds())
		}
	}
}

func (m *metricsModel) start(kind string) {
	m.open = append(m.open, kind)
	m.values[seriesKey("signals_in_flight", label(m.kindOf(kind)))]++
}

func (m *metricsModel) end(i int) {
	m.values[seriesKey("signals_in_flight", label(m.kindOf(m.open[i])))]--
	m.open = slices.Delete(m.open, i, i+1)
}

// check compares what reg exports with the model.
func (m *metricsModel) check(reg *prometheus.Registry) string {
	mfs, err := reg.Gather()
	if err != nil {
		return err.Error()
	}
	values := map[string]float64{}
	hists := map[string]*dto.Histogram{}
	for _, mf := range mfs {
		family := strings.TrimPrefix(mf.GetName(), "taikit_")
		for _, s := range mf.GetMetric() {
			var labels []string
			for _, name := range []string{"kind", "policy", "outcome", "stage", "verdict"} {
				for _, l := range s.GetLabel() {
					if l.GetName() == name {
						labels = append(labels, l.GetValue())
					}
				}
			}
			if family == "decisions_total" { // kind, policy, verdict
				labels = []string{labels[0], labels[1], labels[2]}
			}
			k := seriesKey(family, labels...)
			switch {
			case s.Counter != nil:
				values[k] = s.GetCounter().GetValue()
			case s.Gauge != nil:
				values[k] = s.GetGauge().GetValue()
			case s.Histogram != nil:
				hists[k] = s.GetHistogram()
			}
		}
	}
	if !maps.Equal(values, m.values) {
		return fmt.Sprintf("counters and gauges\n%v\nwant\n%v", values, m.values)
	}
	if got, want := slices.Sorted(maps.Keys(hists)), slices.Sorted(maps.Keys(m.hists)); !slices.Equal(got, want) {
		return fmt.Sprintf("histograms %q, want %q", got, want)
	}
	for k, obs := range m.hists {
		h := hists[k]
		sum := 0.0
		for _, v := range obs {
			sum += v
		}
		if h.GetSampleCount() != uint64(len(obs)) || math.Abs(h.GetSampleSum()-sum) > 1e-9*sum {
			return fmt.Sprintf("%s: count %d sum %v, want %d %v", k, h.GetSampleCount(), h.GetSampleSum(), len(obs), sum)
		}
		for _, b := range h.GetBucket() {
			n := uint64(0)
			for _, v := range obs {
				if v <= b.GetUpperBound() {
					n++
				}
			}
			if b.GetCumulativeCount() != n {
				return fmt.Sprintf("%s: bucket le=%v holds %d, want %d", k, b.GetUpperBound(), b.GetCumulativeCount(), n)
			}
		}
	}
	return ""
}

// TestMetricsMatchesModel drives Metrics, and a model of the series its
// docs describe, with random records (kinds and policies past their
// limits, names that are not UTF-8, outcomes and verdicts outside their
// enums, negative durations, sampled spans, stages timed or not) and
// signals going in and out of flight, and requires the same series with
// the same values after each step.
func TestMetricsMatchesModel(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		opts := kaizenprom.MetricsOptions{
			MaxKinds:    rapid.IntRange(1, 3).Draw(rt, "maxKinds"),
			MaxPolicies: rapid.IntRange(1, 3).Draw(rt, "maxPolicies"),
			NoStages:    rapid.Bool().Draw(rt, "noStages"),
			NoExemplars: rapid.Bool().Draw(rt, "noExemplars"),
		}
		reg := prometheus.NewRegistry()
		metrics, err := kaizenprom.NewMetrics(reg, opts)
		if err != nil {
			rt.Fatal(err)
		}
		m := &metricsModel{maxKinds: opts.MaxKinds, maxPolicies: opts.MaxPolicies, stages: !opts.NoStages,
			policies: map[string][]string{}, values: map[string]float64{}, hists: map[string][]float64{}}
		tracer := metrics.Tracer(nil)
		var open []tai.Span
		kinds := rapid.SampledFrom([]string{"a", "b", "c", "d", kaizenprom.OverflowKind, "x\xff", "x\xfe", long + "1", long + "2", long[1:] + "\xff\xfe"})
		duration := rapid.Map(rapid.Int64Range(-int64(time.Second), int64(40*time.Second)), func(ns int64) time.Duration { return time.Duration(ns) })
		for range rapid.IntRange(1, 50).Draw(rt, "steps") {
			switch rapid.IntRange(0, 5).Draw(rt, "op") {
			case 0, 1, 2:
				r := tai.Record{
					Kind:     kinds.Draw(rt, "kind"),
					Outcome:  tai.Outcome(rapid.IntRange(0, 5).Draw(rt, "outcome")),
					Decision: tai.Decision{Verdict: tai.Verdict(rapid.IntRange(0, 4).Draw(rt, "verdict")), Policy: rapid.SampledFrom([]string{"", "p", "q", "r", "unnamed", "p\xff", long + "p", long + "q"}).Draw(rt, "policy")},
				}
				if rapid.Bool().Draw(rt, "sampled") {
					r.Span = tai.SpanContext{TraceID: tai.TraceID{1}, SpanID: tai.SpanID{byte(rapid.IntRange(0, 1).Draw(rt, "spanID"))}, Sampled: true}
				}
				reached := rapid.IntRange(int(tai.StageSignal), int(tai.StageAction)).Draw(rt, "reached")
				r.Reached[tai.StageSignal] = true
				for st := tai.StageGate; int(st) <= reached; st++ {
					r.Reached[st] = true
					r.Stages[st] = max(duration.Draw(rt, "stage"), 0)
					r.Duration += r.Stages[st]
				}
				timed := rapid.Bool().Draw(rt, "timed")
				if !timed {
					// Only the whole signal is timed, and may have taken
					// no time on the clock.
					r.Stages = [len(r.Stages)]time.Duration{}
					r.Duration = duration.Draw(rt, "duration")
				}
				r.Stages[tai.StageSignal] = r.Duration
				r.StagesTimed = timed
				metrics.Observe(context.Background(), r)
				m.observe(r, timed)
			case 3, 4:
				kind := kinds.Draw(rt, "kind")
				_, sp := tracer.Start(context.Background(), tai.SpanInfo{Stage: tai.StageSignal, Kind: kind})
				open = append(open, sp)
				m.start(kind)
			case 5:
				if len(open) == 0 {
					continue
				}
				i := rapid.IntRange(0, len(open)-1).Draw(rt, "end")
				open[i].End(nil)
				open = slices.Delete(open, i, i+1)
				m.end(i)
			}
			if f := m.check(reg); f != "" {
				rt.Fatal(f)
			}
		}
	})
}
