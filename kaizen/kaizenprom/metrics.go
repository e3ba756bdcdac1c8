package kaizenprom

import (
	"context"
	"fmt"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/taipattern/taikit/internal/utf8text"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/taipattern/taikit/tai"
)

// DefaultBuckets returns the upper bounds, in seconds, of the duration
// histogram when MetricsOptions.Buckets is empty: 0.5 ms to 30 s. Each
// call returns a new slice.
func DefaultBuckets() []float64 {
	return []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30}
}

// MaxNativeHistogramBuckets bounds the buckets of each native histogram
// series of Metrics (see MetricsOptions.NativeHistogramBucketFactor):
// latencies spread over many powers of two, as a slow client or a timeout
// makes them, would otherwise give it a bucket for each, in memory and in
// every scrape. When a series has more, its buckets are made wider, which
// loses resolution but no observation; the series is never reset, so its
// counts only grow.
const MaxNativeHistogramBuckets = 160

// MaxLabelValueLen is the length, in bytes, of the longest label value
// Metrics gives a signal kind or a policy name. A longer one is labelled
// with its first MaxLabelValueLen bytes, cut at a character boundary: a
// kind or policy made from user input by mistake could otherwise be as
// long as that input and be written out in full in each of its series,
// at every scrape, and a Prometheus with a label_value_length_limit
// would refuse the whole scrape. Kinds and policies that differ only
// past it share the series of their label value, and one of the
// MetricsOptions.MaxKinds or MaxPolicies.
const MaxLabelValueLen = utf8text.LabelValueLen

// DefaultMaxKinds is the number of signal kinds Metrics labels its series
// with when MetricsOptions.MaxKinds is zero, as many as kaizen.Stats keeps
// by default.
const DefaultMaxKinds = 64

// OverflowKind is the kind label value under which Metrics counts the
// signals of every kind past MetricsOptions.MaxKinds. A signal kind of
// that name, if one is seen before the limit, shares its series, and
// the MetricsOptions.MaxPolicies policies they have.
const OverflowKind = "_other"

// DefaultMaxPolicies is the number of policy names Metrics labels the
// decisions of each kind with when MetricsOptions.MaxPolicies is zero.
const DefaultMaxPolicies = 32

// OverflowPolicy is the policy label value under which Metrics counts the
// decisions of every policy of a kind past MetricsOptions.MaxPolicies. A
// policy of that name, if one is seen before the limit, shares its
// series.
const OverflowPolicy = "_other"

// MetricsOptions configures Metrics. The zero value is useful: namespace
// "taikit", the DefaultBuckets, exemplars on sampled signals, up to
// DefaultMaxKinds kinds and DefaultMaxPolicies policies of each.
type MetricsOptions struct {
	// Namespace prefixes every metric name. Empty means "taikit". It must
	// be a valid Prometheus name without a colon, which Prometheus keeps
	// for recording rules: letters, digits and underscores, not starting
	// with a digit.
	Namespace string
	// Subsystem, if set, goes between the namespace and the name. It
	// follows the rules of Namespace.
	Subsystem string
	// Buckets are the upper bounds in seconds of the duration histogram:
	// positive, finite, strictly increasing. Empty means DefaultBuckets.
	Buckets []float64
	// NativeHistogramBucketFactor, when above 1 and at most 2, adds a
	// native histogram with that growth factor to the classic buckets
	// (Prometheus 2.40+ scrapes it with protobuf). Zero means classic
	// buckets only; any other value is an error. Each series keeps at most
	// MaxNativeHistogramBuckets buckets: past that, its buckets are made
	// wider (its growth factor squared), never reset.
	//
	// A Prometheus that ingests native histograms stores the classic
	// series of such a histogram (_bucket, _sum, _count) only when told
	// to scrape classic histograms too (always_scrape_classic_histograms;
	// scrape_classic_histograms before 3.0): rules that read them, as the
	// latency rules andon.PrometheusRules writes do, need it.
	NativeHistogramBucketFactor float64
	// ConstLabels are added to every metric (for example the service).
	// Each name must be a Prometheus label name, [a-zA-Z_][a-zA-Z0-9_]*
	// ("service_name", not "service-name"), not starting with "__", which
	// Prometheus reserves; each value must be valid UTF-8. "le", which
	// Prometheus keeps for the bucket bounds of a histogram, is refused,
	// and so are the labels of the metrics: "kind", "outcome", "policy",
	// "verdict" and "stage".
	ConstLabels prometheus.Labels
	// NoStages turns off stage_duration_seconds, which then has no
	// series; signal_duration_seconds still times the whole signal. By
	// default Metrics is a tai.StageObserver and also times the gate,
	// policy and action stages, which makes the pipeline read the clock
	// at each stage boundary.
	NoStages bool
	// NoExemplars turns off exemplars. By default the counter and the
	// histogram of a signal whose span is sampled carry an exemplar with
	// its trace_id and span_id. Only the OpenMetrics and protobuf formats
	// carry exemplars: serve the registry with
	// promhttp.HandlerOpts{EnableOpenMetrics: true}, since without it
	// promhttp answers Prometheus' default scrape in the classic text
	// format, which drops them.
	NoExemplars bool
	// MaxKinds bounds the number of signal kinds the Metrics labels its
	// series with, each kind taking 131 series with the DefaultBuckets
	// (four counters, the in-flight gauge of Metrics.Tracer, and seven
	// histograms of a series for each bucket bound, +Inf, _sum and
	// _count; 77 with NoStages), and three for each of its policies (see
	// MaxPolicies): kinds come from code, and one made
	// from user input by mistake would otherwise grow the series, in
	// memory and in every scrape, without bound. The
	// signals of further kinds are counted, in every family (the
	// in-flight gauge too), under the kind OverflowKind, whose series
	// appear with the first of them: a sum over kinds still counts every
	// signal, and a series of OverflowKind above zero says the limit was
	// reached. The first kinds seen keep their series. Kinds are
	// counted by their label value: kinds that are not valid UTF-8 and
	// clean to the same value, or that are cut to the same first
	// MaxLabelValueLen bytes (see Metrics), share its series and take
	// one of the MaxKinds. Zero means DefaultMaxKinds; it must not be
	// negative.
	MaxKinds int
	// MaxPolicies bounds the number of policy names decisions_total
	// labels the decisions of each kind with, each name taking three
	// series (one a verdict): a policy sets the name in its Decision
	// itself, and one that made it from the signal by mistake would
	// otherwise grow the series without bound. The decisions of further
	// policies of a kind are counted under the policy OverflowPolicy,
	// whose series appear with the first of them: a sum over policies
	// still counts every decision, and a series of OverflowPolicy above
	// zero says the limit was reached. The first policies seen keep
	// their series. Policies are counted by their label value, as kinds
	// are: "" and "unnamed" take one of the MaxPolicies, as do names
	// that clean or are cut to the same value. Zero means
	// DefaultMaxPolicies; it must not be negative.
	MaxPolicies int
}

// Metrics is a tai.Observer that counts signals and decisions and times
// the stages of a pipeline as Prometheus metrics. With namespace "taikit":
//
//	taikit_signals_total{kind, outcome}                counter
//	taikit_decisions_total{kind, policy, verdict}      counter
//	taikit_signal_duration_seconds{kind, outcome}      histogram
//	taikit_stage_duration_seconds{kind, stage}         histogram
//	taikit_signals_in_flight{kind}                     gauge
//
// Labels take only bounded values: the signal's Kind, the Outcome, the
// deciding policy's name ("unnamed" when it has none), the Verdict and the
// Stage. Never a signal ID or Key. A kind or policy name that is not
// valid UTF-8, which Prometheus refuses, is labelled with U+FFFD in place
// of its bad bytes, and one longer than MaxLabelValueLen bytes with its
// first MaxLabelValueLen, cut at a character boundary, so that no label
// value is longer. Kinds and policy names come from code,
// so their number is small; a service must not make them from user input.
// Should it do so, MetricsOptions.MaxKinds bounds the kinds, and the
// signals of the kinds past it are counted under OverflowKind;
// MetricsOptions.MaxPolicies bounds the policies of each kind, and the
// decisions of the policies past it are counted under OverflowPolicy.
//
// signal_duration_seconds times the whole signal (Record.Duration), by
// its outcome, so a latency objective can count only the signals that
// succeeded and a sum over outcomes is every signal once. A negative
// Duration is observed as zero, as kaizen.Stats counts it.
// stage_duration_seconds times the stages inside it — "gate", "policy" and
// "action" — in a family of its own, so no sum adds a stage to the signal
// that contains it; a stage the signal did not reach is not observed,
// and one it reached is, even when it took no time (tai.Record.Reached).
// Stage times need the pipeline to read the clock at each stage boundary,
// which it does because Metrics is a tai.StageObserver (Metrics behind
// an observer that is not one observes no stage, since the Record has no
// time for it: tai.Record.StagesTimed);
// MetricsOptions.NoStages turns that off (and the family has no series).
//
// An Observer sees only finished signals, so in-flight counting needs the
// start of a signal too: wrap the pipeline's Tracer with Metrics.Tracer.
// Without it the in-flight gauge has no series.
//
// Observe allocates nothing unless the signal is sampled (its exemplar
// allocates): the series of a kind are created once, on its first signal,
// and kept in a copy-on-write map. (A kind or policy name that is not
// valid UTF-8 is kept there too, MaxKinds of them, and MaxPolicies of
// each kind; one past them is cleaned at each signal, which allocates.
// One longer than MaxLabelValueLen is never kept, lest it hold its
// bytes: it is cut at each signal, which allocates only when its first
// MaxLabelValueLen bytes are not valid UTF-8.)
//
// Make a Metrics with NewMetrics. The zero Metrics, which has no families,
// counts nothing: its Observe does nothing, and its Tracer (as that of a
// nil *Metrics) returns the next tracer as it is.
type Metrics struct {
	signals   *prometheus.CounterVec
	decisions *prometheus.CounterVec
	durations *prometheus.HistogramVec // the whole signal, by outcome
	stageDurs *prometheus.HistogramVec // each stage inside it
	inFlight  *prometheus.GaugeVec
	exemplars bool
	stages    bool

	mu          sync.Mutex // serializes the writers of the kinds' flights
	kinds       labelSet[kindMetrics]
	maxPolicies int
}

type kindMetrics struct {
	kind      string
	outcomes  [numOutcomes]prometheus.Counter
	durations [numOutcomes]prometheus.Observer
	stages    [tai.StageAction + 1]prometheus.Observer // gate, policy and action; the signal's slot stays nil
	policies  labelSet[[tai.Deny + 1]prometheus.Counter]
	decisions *prometheus.CounterVec
	// flight is the kind's in-flight gauge, made at its first signal
	// traced (Metrics.Tracer): without a tracer the gauge has no series.
	flight atomic.Pointer[flight]
}

// metricsLabels are the variable labels of the families of Metrics.
var metricsLabels = []string{"kind", "outcome", "policy", "verdict", "stage"}

// numOutcomes sizes the outcome counters, indexed by tai.Outcome: slot 0,
// the invalid zero Outcome, stays nil.
const numOutcomes = int(tai.Failed) + 1

// NewMetrics creates the metric families and registers them with reg. A
// nil reg, or a nil *prometheus.Registry (also one behind
// prometheus.WrapRegistererWith), is an error: pass
// prometheus.NewRegistry(), or prometheus.DefaultRegisterer to use the
// global registry deliberately. When reg already holds the same families
// (NewMetrics was called before with the same namespace), the registered
// ones are reused, so two Metrics on one registry add to the same series
// instead of panicking; the histograms keep the buckets they were first
// made with, whatever the later opts.Buckets say.
func NewMetrics(reg prometheus.Registerer, opts MetricsOptions) (*Metrics, error) {
	if err := checkRegisterer(reg, "NewMetrics"); err != nil {
		return nil, err
	}
	ns := opts.Namespace
	if ns == "" {
		ns = defaultNamespace
	}
	if err := checkName("MetricsOptions.Namespace", ns); err != nil {
		return nil, fmt.Errorf("kaizenprom: %w", err)
	}
	if opts.Subsystem != "" {
		if err := checkName("MetricsOptions.Subsystem", opts.Subsystem); err != nil {
			return nil, fmt.Errorf("kaizenprom: %w", err)
		}
	}
	if err := checkConstLabels("MetricsOptions.ConstLabels", opts.ConstLabels); err != nil {
		return nil, fmt.Errorf("kaizenprom: %w", err)
	}
	if err := checkHistogramLabels("MetricsOptions.ConstLabels", opts.ConstLabels); err != nil {
		return nil, fmt.Errorf("kaizenprom: %w", err)
	}
	// Checked before any family is registered: a registry keeps the label
	// names of a family it once held, even once unregistered, so a family
	// taken with a wrong one would refuse every later NewMetrics on it.
	if err := checkNotVariable("MetricsOptions.ConstLabels", opts.ConstLabels, metricsLabels); err != nil {
		return nil, fmt.Errorf("kaizenprom: %w", err)
	}
	buckets := slices.Clone(opts.Buckets)
	if len(buckets) == 0 {
		buckets = DefaultBuckets()
	}
	if err := checkBuckets("MetricsOptions.Buckets", buckets); err != nil {
		return nil, fmt.Errorf("kaizenprom: %w", err)
	}
	if f := opts.NativeHistogramBucketFactor; f != 0 && !(f > 1 && f <= 2) {
		return nil, fmt.Errorf("kaizenprom: MetricsOptions.NativeHistogramBucketFactor %v is outside (1, 2]", f)
	}
	maxKinds := opts.MaxKinds
	switch {
	case maxKinds == 0:
		maxKinds = DefaultMaxKinds
	case maxKinds < 0:
		return nil, fmt.Errorf("kaizenprom: MetricsOptions.MaxKinds %d is negative", opts.MaxKinds)
	}
	maxPolicies := opts.MaxPolicies
	switch {
	case maxPolicies == 0:
		maxPolicies = DefaultMaxPolicies
	case maxPolicies < 0:
		return nil, fmt.Errorf("kaizenprom: MetricsOptions.MaxPolicies %d is negative", opts.MaxPolicies)
	}

	m := &Metrics{exemplars: !opts.NoExemplars, stages: !opts.NoStages, maxPolicies: maxPolicies}
	// A family that fails to register unregisters those this call added,
	// so a failed call leaves reg as it was and a corrected one can follow.
	var added []prometheus.Collector
	fail := func(err error) (*Metrics, error) {
		for _, c := range added {
			reg.Unregister(c)
		}
		return nil, err
	}
	var err error
	m.signals, err = registerNew(reg, &added, prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: ns, Subsystem: opts.Subsystem, Name: "signals_total", ConstLabels: opts.ConstLabels,
		Help: "Signals that finished a pipeline, by kind and outcome (succeeded, denied, rejected, failed).",
	}, []string{"kind", "outcome"}))
	if err != nil {
		return fail(err)
	}
	m.decisions, err = registerNew(reg, &added, prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: ns, Subsystem: opts.Subsystem, Name: "decisions_total", ConstLabels: opts.ConstLabels,
		Help: "Deciding policy decisions, by kind, policy and verdict (allow, review, deny).",
	}, []string{"kind", "policy", "verdict"}))
	if err != nil {
		return fail(err)
	}
	m.durations, err = registerNew(reg, &added, prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: ns, Subsystem: opts.Subsystem, Name: "signal_duration_seconds", ConstLabels: opts.ConstLabels,
		Help:                           "Time signals took from start to result, by kind and outcome.",
		Buckets:                        buckets,
		NativeHistogramBucketFactor:    opts.NativeHistogramBucketFactor,
		NativeHistogramMaxBucketNumber: MaxNativeHistogramBuckets,
	}, []string{"kind", "outcome"}))
	if err != nil {
		return fail(err)
	}
	m.stageDurs, err = registerNew(reg, &added, prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: ns, Subsystem: opts.Subsystem, Name: "stage_duration_seconds", ConstLabels: opts.ConstLabels,
		Help:                           "Time signals spent in each stage of the pipeline (gate, policy, action), by kind and stage.",
		Buckets:                        buckets,
		NativeHistogramBucketFactor:    opts.NativeHistogramBucketFactor,
		NativeHistogramMaxBucketNumber: MaxNativeHistogramBuckets,
	}, []string{"kind", "stage"}))
	if err != nil {
		return fail(err)
	}
	m.inFlight, err = registerNew(reg, &added, prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: ns, Subsystem: opts.Subsystem, Name: "signals_in_flight", ConstLabels: opts.ConstLabels,
		Help: "Signals started and not yet finished, by kind (counted by Metrics.Tracer).",
	}, []string{"kind"}))
	if err != nil {
		return fail(err)
	}
	m.kinds.init(maxKinds)
	return m, nil
}

// ObservesStages reports whether Metrics wants Record.Stages: true unless
// MetricsOptions.NoStages is set. It makes Metrics a tai.StageObserver.
func (m *Metrics) ObservesStages() bool { return m.stages }

// Observe counts the signal, its decision and its stage durations.
func (m *Metrics) Observe(_ context.Context, r tai.Record) {
	if m.kinds.table.Load() == nil {
		return // the zero Metrics: no families to count in
	}
	k := m.kindOf(r.Kind)
	if m.exemplars && r.Span.Sampled && r.Span.TraceID.IsValid() {
		m.observeExemplar(k, &r)
		return
	}
	if r.Outcome.Valid() {
		k.outcomes[r.Outcome].Inc()
		k.durations[r.Outcome].Observe(seconds(r.Duration))
	}
	if v := r.Decision.Verdict; v.Valid() {
		k.policy(r.Decision.Policy)[v].Inc()
	}
	if !m.stages {
		return
	}
	k.observeStages(&r)
}

// observeExemplar is Observe for a sampled signal: the outcome counter and
// the signal's duration carry the trace's IDs.
func (m *Metrics) observeExemplar(k *kindMetrics, r *tai.Record) {
	ex := prometheus.Labels{"trace_id": r.Span.TraceID.String()}
	if r.Span.SpanID.IsValid() {
		ex["span_id"] = r.Span.SpanID.String()
	}
	if r.Outcome.Valid() {
		if a, ok := k.outcomes[r.Outcome].(prometheus.ExemplarAdder); ok {
			a.AddWithExemplar(1, ex)
		} else {
			k.outcomes[r.Outcome].Inc()
		}
		if o, ok := k.durations[r.Outcome].(prometheus.ExemplarObserver); ok {
			o.ObserveWithExemplar(seconds(r.Duration), ex)
		} else {
			k.durations[r.Outcome].Observe(seconds(r.Duration))
		}
	}
	if v := r.Decision.Verdict; v.Valid() {
		k.policy(r.Decision.Policy)[v].Inc()
	}
	if !m.stages {
		return
	}
	k.observeStages(r)
}

// observeStages observes the time of each stage r reached when the
// pipeline timed the stages (tai.Record.StagesTimed): one timed at zero
// too (under testing/synctest, or with a coarse clock). A pipeline that
// did not (Metrics behind an observer that is no tai.StageObserver)
// leaves them zero, and a stage it reached, which took its time, is not
// observed, even in a signal that took no time on the clock. A stage with
// a time of its own, as in a Record made without StagesTimed, is.
func (k *kindMetrics) observeStages(r *tai.Record) {
	for st := tai.StageGate; st <= tai.StageAction; st++ {
		if d := r.Stages[st]; d > 0 || r.Reached[st] && r.StagesTimed {
			k.stages[st].Observe(seconds(d))
		}
	}
}

// kindOf returns the series of kind, found or made: those of its label
// value, which kinds that clean to the same value share; those of
// OverflowKind once m has series for MaxKinds label values.
func (m *Metrics) kindOf(kind string) *kindMetrics {
	return m.kinds.get(kind, labelValue, OverflowKind, m.newKind)
}

// newKind makes the series of the kind label value label.
func (m *Metrics) newKind(label string) *kindMetrics {
	k := &kindMetrics{kind: label, decisions: m.decisions}
	for _, o := range tai.Outcomes() {
		k.outcomes[o] = m.signals.WithLabelValues(label, o.String())
		k.durations[o] = m.durations.WithLabelValues(label, o.String())
	}
	if m.stages {
		for st := tai.StageGate; st <= tai.StageAction; st++ {
			k.stages[st] = m.stageDurs.WithLabelValues(label, st.String())
		}
	}
	k.policies.init(m.maxPolicies)
	return k
}

// checkBuckets returns an error naming field when buckets are not the
// upper bounds of a histogram: positive, finite and strictly increasing.
// client_golang panics on such bounds when it makes a series.
func checkBuckets(field string, buckets []float64) error {
	if len(buckets) == 0 {
		return fmt.Errorf("%s is empty", field)
	}
	for i, b := range buckets {
		if !(b > 0) || math.IsInf(b, 0) {
			return fmt.Errorf("%s[%d] %v is not a positive finite number", field, i, b)
		}
		if i > 0 && b <= buckets[i-1] {
			return fmt.Errorf("%s[%d] %v is not above the bucket before it (%v)", field, i, b, buckets[i-1])
		}
	}
	return nil
}

// seconds is d in seconds, as a histogram observes it: a negative d is
// zero, since the sum of a histogram must only grow.
func seconds(d time.Duration) float64 { return max(d, 0).Seconds() }

// labelValue is the kind or policy name s as a label's value: Prometheus
// takes only valid UTF-8 (WithLabelValues panics on anything else), so
// bytes that are not are replaced by U+FFFD; and it is at most
// MaxLabelValueLen bytes long, cut at a character boundary. Only the
// first MaxLabelValueLen+1 bytes of s are read, so a long s costs no more
// than a short one; for a valid s it allocates nothing.
func labelValue(s string) string { return utf8text.Cut(s, MaxLabelValueLen) }

// policy returns the decision counters of a policy, indexed by Verdict:
// those of its label value, which policies that clean to the same value
// share ("" is "unnamed"); those of OverflowPolicy once the kind has
// counters for MaxPolicies label values.
func (k *kindMetrics) policy(name string) *[tai.Deny + 1]prometheus.Counter {
	return k.policies.get(name, policyLabel, OverflowPolicy, k.policyCounters)
}

// policyLabel is the label value of the policy named name.
func policyLabel(name string) string {
	if name == "" {
		return "unnamed"
	}
	return labelValue(name)
}

// policyCounters makes the decision counters of the policy label value
// label, indexed by Verdict.
func (k *kindMetrics) policyCounters(label string) *[tai.Deny + 1]prometheus.Counter {
	c := new([tai.Deny + 1]prometheus.Counter)
	for _, v := range []tai.Verdict{tai.Allow, tai.Review, tai.Deny} {
		c[v] = k.decisions.WithLabelValues(k.kind, label, v.String())
	}
	return c
}
