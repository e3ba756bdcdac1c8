// Package kaizen measures pipelines: kaizen is improvement through
// measurement. It plugs into the hooks of package tai and needs nothing
// global: registries, tracer providers and writers are passed in.
//
// # Metrics
//
// NewMetrics registers Prometheus families on a caller-given Registerer
// and returns a tai.Observer:
//
//	reg := prometheus.NewRegistry()
//	metrics, err := kaizen.NewMetrics(reg, kaizen.MetricsOptions{})
//	p, err := tai.New(policy, action,
//		tai.WithObservers(metrics),
//		tai.WithTracer(metrics.Tracer(nil))) // counts signals in flight
//
// The families (namespace "taikit" by default) are signals_total{kind,
// outcome}, decisions_total{kind, policy, verdict},
// signal_duration_seconds{kind, stage} and signals_in_flight{kind}. Labels
// hold only bounded values, never IDs or keys. A sampled signal leaves an
// exemplar with its trace ID. Registering twice on one registry reuses the
// collectors. The collectors in collect_*.go export the state of the other
// TPS packages (breakers, lines, limiters, queues) at scrape time.
//
// # Tracing
//
// NewTracer returns a tai.Tracer backed by an OpenTelemetry
// TracerProvider (the global one unless given): a span per signal, a
// child per gate, policy (and per combinator child or scored rule) and
// action. Failures set status Error and error.type; denials record the
// verdict and are not errors. No key, payload or (by default) ID is
// recorded. To count in-flight signals as well, wrap it:
// metrics.Tracer(kaizen.NewTracer(opts)).
//
// # Stats
//
// NewStats keeps rolling statistics per kind in memory — counts by outcome
// and verdict, rates, latency quantiles, trends against the previous
// window — over configurable windows (1m, 5m and 1h by default) with
// bounded memory. Snapshot returns plain values for code (andon rules read
// it); Stats is also an http.Handler serving the snapshot as JSON.
//
//	w, ok := stats.Window("payment", 5*time.Minute)
//	errorRatio := w.Current.Ratio(tai.Failed)
//	p99 := w.Current.P99
//	worse := w.Trend.ErrorRate.Direction == kaizen.Worse
//
// # Audit trail
//
// NewAudit writes one JSON line per finished signal (AuditEntry), each
// carrying the SHA-256 of the line before it; the first line's prev is
// GenesisHash. VerifyAudit reads a trail back and names the first edited,
// deleted, inserted or reordered line. A Redact hook masks sensitive
// fields before a line is hashed. The trail never drops a record
// silently: a slow writer blocks Observe (backpressure), and after a
// write failure every unwritten record is handed to OnUnwritten (logged
// by default) and Err reports the failure.
//
// # Cost
//
// Metrics and Stats together add about 100 ns and no allocation to a
// signal (BenchmarkObservers); the audit writer sustains several hundred
// thousand records per second to a file (BenchmarkAudit).
package kaizen
