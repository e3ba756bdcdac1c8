package main

import (
	"net/http"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/taipattern/taikit/examples/internal/svc"
)

// newTracerProvider returns the service's tracer provider. Every payment
// gets a trace ID (in its response, logs and audit line, and joined to the
// caller's trace); TraceSample of them are recorded, by default all when
// they are exported over OTLP/HTTP and none when they would go nowhere,
// but for those whose caller's traceparent decides: a payment follows its
// caller's sampled flag (parent-based sampling). It is passed to the
// library explicitly; no global is set.
func newTracerProvider(cfg Config) (*sdktrace.TracerProvider, error) {
	ratio := cfg.TraceSample
	if ratio < 0 {
		ratio = 0
		if cfg.OTLPEndpoint.IsSet() || cfg.TraceProcessor != nil {
			ratio = 1
		}
	}
	return svc.Tracing{Service: "payment", Instance: cfg.Instance, Endpoint: cfg.OTLPEndpoint.Reveal(), Processor: cfg.TraceProcessor,
		Sampler: sdktrace.ParentBased(sdktrace.TraceIDRatioBased(ratio))}.TracerProvider()
}

// traceHTTP opens a server span per request (svc.TraceHTTP) except for
// the paths untraced names.
func (s *Service) traceHTTP(mux *http.ServeMux, next http.Handler) http.Handler {
	return svc.TraceHTTP(mux, next, s.tracing, s.propagate, func(r *http.Request) bool { return untraced(r.URL.Path) })
}

// untraced reports the paths whose requests get no span: scrapes, health
// probes and the board's event streams, which would drown the payments'
// traces (and a stream's span would last as long as its tab is open).
func untraced(path string) bool {
	switch path {
	case "/metrics", "/health", "/healthz", "/readyz", "/andon/api/events", "/andon/api/state":
		return true
	}
	return false
}
