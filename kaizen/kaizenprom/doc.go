// Package kaizenprom exports what a taikit pipeline does as Prometheus
// metrics, on a caller-given prometheus.Registerer: never the global one
// unless it is passed, and registering twice on one registry reuses the
// collectors instead of panicking.
//
// NewMetrics registers the pipeline's families and returns a tai.Observer:
//
//	reg := prometheus.NewRegistry()
//	metrics, err := kaizenprom.NewMetrics(reg, kaizenprom.MetricsOptions{})
//	p, err := tai.New(policy, action,
//		tai.WithObservers(metrics),
//		tai.WithTracer(metrics.Tracer(nil))) // counts signals in flight
//
// The families (namespace "taikit" by default) are signals_total{kind,
// outcome}, decisions_total{kind, policy, verdict},
// signal_duration_seconds{kind, outcome} (the whole signal),
// stage_duration_seconds{kind, stage} (gate, policy, action) and
// signals_in_flight{kind}. Labels
// hold only bounded values, never IDs or keys, of at most
// MaxLabelValueLen bytes; the kinds are at most
// MetricsOptions.MaxKinds, the signals of further kinds counted under
// OverflowKind, and the policies of each kind at most
// MetricsOptions.MaxPolicies, the decisions of further policies counted
// under OverflowPolicy. A sampled signal leaves an
// exemplar with its trace ID, which a scrape carries in the OpenMetrics
// format: serve the registry with promhttp.HandlerOpts{EnableOpenMetrics:
// true}.
//
// The collectors export the state of the other TPS packages, read at
// scrape time: JidokaCollector (breakers, lines, watchdogs),
// HeijunkaCollector (limiters, and the admissions of the gates it wraps)
// and KanbanCollector (queues).
//
// Metrics and kaizen.Stats together add about 100 ns and no allocation
// to a signal (BenchmarkObservers).
package kaizenprom
