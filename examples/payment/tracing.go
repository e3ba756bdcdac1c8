package main

import (
	"context"
	"net/http"
	"strings"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.26.0"
	"go.opentelemetry.io/otel/trace"
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
	opts := []sdktrace.TracerProviderOption{
		sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(ratio))),
		sdktrace.WithResource(resource.NewSchemaless(
			semconv.ServiceName("payment"), semconv.ServiceInstanceID(cfg.Instance))),
	}
	if cfg.TraceProcessor != nil {
		opts = append(opts, sdktrace.WithSpanProcessor(cfg.TraceProcessor))
	}
	if cfg.OTLPEndpoint != "" {
		endpoint := cfg.OTLPEndpoint
		var eopts []otlptracehttp.Option
		if strings.HasPrefix(endpoint, "http://") || strings.HasPrefix(endpoint, "https://") {
			eopts = append(eopts, otlptracehttp.WithEndpointURL(strings.TrimSuffix(endpoint, "/")+"/v1/traces"))
		} else {
			eopts = append(eopts, otlptracehttp.WithEndpoint(endpoint), otlptracehttp.WithInsecure())
		}
		exp, err := otlptracehttp.New(context.Background(), eopts...)
		if err != nil {
			return nil, err
		}
		opts = append(opts, sdktrace.WithBatcher(exp))
	}
	return sdktrace.NewTracerProvider(opts...), nil
}

// traceHTTP opens a server span per request, joined to the caller's trace
// when the request carries a traceparent header. The pipeline's spans
// become its children.
func (s *Service) traceHTTP(next http.Handler) http.Handler {
	tracer := s.tracer
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if untraced(r.URL.Path) {
			next.ServeHTTP(w, r)
			return
		}
		ctx := s.propagate.Extract(r.Context(), propagation.HeaderCarrier(r.Header))
		ctx, span := tracer.Start(ctx, r.Method+" "+routeOf(r), trace.WithSpanKind(trace.SpanKindServer),
			trace.WithAttributes(semconv.HTTPRequestMethodKey.String(r.Method), semconv.URLPath(r.URL.Path)))
		rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
		next.ServeHTTP(rec, r.WithContext(ctx))
		span.SetAttributes(attribute.Int("http.response.status_code", rec.status))
		if rec.status >= 500 {
			span.SetStatus(codes.Error, http.StatusText(rec.status))
		}
		span.End()
	})
}

// routeOf names a request's route without IDs, to keep span names few.
func routeOf(r *http.Request) string {
	if strings.HasPrefix(r.URL.Path, "/payment/") {
		return "/payment/{id}"
	}
	return r.URL.Path
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
