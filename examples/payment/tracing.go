package main

import (
	"net/http"
	"strings"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
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

// traceHTTP opens a server span per request, joined to the caller's trace
// when the request carries a traceparent header. The pipeline's spans
// become its children.
func (s *Service) traceHTTP(mux *http.ServeMux, next http.Handler) http.Handler {
	tracer := s.tracer
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if untraced(r.URL.Path) {
			next.ServeHTTP(w, r)
			return
		}
		ctx := s.propagate.Extract(r.Context(), propagation.HeaderCarrier(r.Header))
		// Spans are named by route, as the conventions say ("GET
		// /payment/{id}"), or by method alone for a path no route
		// serves: never by a path a client chose.
		name := r.Method
		attrs := []attribute.KeyValue{semconv.HTTPRequestMethodKey.String(r.Method), semconv.URLPath(r.URL.Path)}
		if _, pattern := mux.Handler(r); pattern != "" {
			_, route, found := strings.Cut(pattern, " ")
			if !found {
				route = pattern
			}
			name += " " + route
			attrs = append(attrs, semconv.HTTPRoute(route))
		}
		ctx, span := tracer.Start(ctx, name, trace.WithSpanKind(trace.SpanKindServer), trace.WithAttributes(attrs...))
		rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
		next.ServeHTTP(rec, r.WithContext(ctx))
		span.SetAttributes(semconv.HTTPResponseStatusCode(rec.status))
		if rec.status >= 500 {
			span.SetStatus(codes.Error, http.StatusText(rec.status))
		}
		span.End()
	})
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (r *statusRecorder) WriteHeader(code int) {
	r.status = code
	r.ResponseWriter.WriteHeader(code)
}

// Flush passes flushes through, for streaming responses.
func (r *statusRecorder) Flush() {
	if f, ok := r.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap lets http.ResponseController reach the real writer.
func (r *statusRecorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

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
