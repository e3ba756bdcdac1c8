package main

import (
	"context"
	"fmt"
	"strings"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
)

// newTracerProvider records every deployment's spans (deployments are few
// and each is worth its trace) and exports them over OTLP/HTTP when
// -otlp-endpoint is set; the resource reads OTEL_SERVICE_NAME and
// OTEL_RESOURCE_ATTRIBUTES too. A deployment is one trace: the request's
// span is the root, each region's rollout joins it through the queue's
// message headers, and the pipeline, each policy, each stage and each
// failed analysis add their spans.
func newTracerProvider(cfg Config) (*sdktrace.TracerProvider, error) {
	res, err := resource.New(context.Background(),
		resource.WithSchemaURL(semconv.SchemaURL),
		resource.WithAttributes(semconv.ServiceName("deployment"), semconv.ServiceInstanceID(cfg.Instance)),
		resource.WithTelemetrySDK(),
		resource.WithFromEnv(),
	)
	if err != nil {
		return nil, fmt.Errorf("trace resource: %w", err)
	}
	opts := []sdktrace.TracerProviderOption{sdktrace.WithResource(res)}
	if cfg.TraceProcessor != nil {
		opts = append(opts, sdktrace.WithSpanProcessor(cfg.TraceProcessor))
	}
	if endpoint := cfg.OTLPEndpoint; endpoint != "" {
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

// deploymentAttrs are the attributes every span of a deployment carries.
func deploymentAttrs(d *Deployment) []attribute.KeyValue {
	return []attribute.KeyValue{
		attribute.String("deployment.id", d.ID),
		attribute.String("deployment.service", d.Service),
		attribute.String("deployment.version", d.Version),
		attribute.String("deployment.strategy", d.Strategy),
	}
}

// startSpan opens a span of the service's tracer.
func (s *Service) startSpan(ctx context.Context, name string, attrs ...attribute.KeyValue) (context.Context, trace.Span) {
	return s.tracer.Start(ctx, name, trace.WithAttributes(attrs...))
}
