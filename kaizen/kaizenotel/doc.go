// Package kaizenotel traces taikit pipelines with OpenTelemetry. It links
// only the OpenTelemetry API: the program chooses the SDK and exporter,
// and hands its TracerProvider in (or sets the global one).
//
// NewTracer returns a tai.Tracer: a span per signal, a child per gate,
// policy (and per combinator child or scored rule) and action. Failures
// set status Error and error.type; denials record the verdict and
// rejections (load shed by a gate or guard) the outcome, and neither is an
// error. No key, payload, error message or (by default) ID is recorded.
//
//	tracer := kaizenotel.NewTracer(kaizenotel.TracerOptions{Provider: tp})
//	p, err := tai.New(policy, action, tai.WithTracer(tracer))
//
// To count in-flight signals as well, wrap it with kaizenprom's
// Metrics.Tracer: metrics.Tracer(tracer).
package kaizenotel
