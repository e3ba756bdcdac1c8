package main

import (
	"context"

	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/taipattern/taikit/examples/internal/svc"
)

// newTracerProvider records every deployment's spans (deployments are few
// and each is worth its trace) and exports them over OTLP/HTTP when
// -otlp-endpoint is set; the resource reads OTEL_SERVICE_NAME and
// OTEL_RESOURCE_ATTRIBUTES too. A deployment is one trace: the request's
// span is the root, each region's rollout joins it through the queue's
// message headers, and the pipeline, each policy, each stage and each
// failed analysis add their spans.
func newTracerProvider(cfg Config) (*sdktrace.TracerProvider, error) {
	return svc.Tracing{Service: "deployment", Instance: cfg.Instance, Endpoint: cfg.OTLPEndpoint.Reveal(), Processor: cfg.TraceProcessor}.TracerProvider()
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
