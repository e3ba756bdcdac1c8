package main

import (
	"net/http"
	"strings"

	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel/metric/noop"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.17.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/taipattern/taikit/examples/internal/svc"
)

// newTracerProvider returns the service's tracer provider. Every payment
// gets a trace ID (in its response, logs and audit line, and joined to the
// caller's trace); TraceSample of them are recorded, by default all when
// they are exported over OTLP/HTTP and none when they would go nowhere. It
// is passed to the library explicitly; no global is set.
func newTracerProvider(cfg Config) (*sdktrace.TracerProvider, error) {
	ratio := cfg.TraceSample
	if ratio < 0 {
		ratio = 0
		if cfg.OTLPEndpoint != "" || cfg.TraceProcessor != nil {
			ratio = 1
		}
	}
	return svc.Tracing{Service: "payment", Instance: cfg.Instance, Endpoint: cfg.OTLPEndpoint, Processor: cfg.TraceProcessor,
		Sampler: sdktrace.ParentBased(sdktrace.TraceIDRatioBased(ratio))}.TracerProvider()
}

// traceHTTP opens a server span per request with otelhttp (the current
// HTTP semantic conventions), joined to the caller's trace when the request
// carries a traceparent header; the pipeline's spans become its children.
// Spans are named by route, as the conventions say ("GET /payment/{id}"),
// or by method alone for a path no route serves: never by a path a client
// chose. otelhttp's metrics go nowhere: the service exports its own.
func (s *Service) traceHTTP(mux *http.ServeMux, next http.Handler) http.Handler {
	routed := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, route := routeOf(mux, r); route != "" {
			trace.SpanFromContext(r.Context()).SetAttributes(semconv.HTTPRoute(route))
		}
		next.ServeHTTP(w, r)
	})
	return otelhttp.NewHandler(routed, "",
		otelhttp.WithTracerProvider(s.tracing),
		otelhttp.WithPropagators(s.propagate),
		otelhttp.WithMeterProvider(noop.NewMeterProvider()),
		otelhttp.WithFilter(func(r *http.Request) bool { return !untraced(r.URL.Path) }),
		otelhttp.WithSpanNameFormatter(func(_ string, r *http.Request) string {
			if _, route := routeOf(mux, r); route != "" {
				return r.Method + " " + route
			}
			return r.Method
		}),
	)
}

// routeOf is the route of mux that serves r ("/payment/{id}"), or "".
func routeOf(mux *http.ServeMux, r *http.Request) (http.Handler, string) {
	h, pattern := mux.Handler(r)
	if pattern == "" {
		return h, ""
	}
	if _, route, found := strings.Cut(pattern, " "); found {
		return h, route
	}
	return h, pattern
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
