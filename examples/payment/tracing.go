package main

import (
	"context"
	"fmt"
	"net/http"
	"strings"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
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
	// The service's name and instance, which OTEL_SERVICE_NAME and
	// OTEL_RESOURCE_ATTRIBUTES override, as everywhere in OpenTelemetry.
	res, err := resource.New(context.Background(),
		resource.WithSchemaURL(semconv.SchemaURL),
		resource.WithAttributes(semconv.ServiceName("payment"), semconv.ServiceInstanceID(cfg.Instance)),
		resource.WithTelemetrySDK(),
		resource.WithFromEnv(),
	)
	if err != nil {
		return nil, fmt.Errorf("trace resource: %w", err)
	}
	opts := []sdktrace.TracerProviderOption{
		sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(ratio))),
		sdktrace.WithResource(res),
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
