package kanbanotel_test

import (
	"context"
	"fmt"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/taipattern/taikit/kanban"
	"github.com/taipattern/taikit/kanban/kanbanotel"
)

// The handler's ctx carries the publisher's trace: its spans join it.
func ExampleTraceContext() {
	q, _ := kanban.NewMemory[string](kanban.MemoryOptions{Propagator: kanbanotel.TraceContext()})

	// A publisher inside a traced request (here a span context made by hand).
	sc := trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: trace.TraceID{0x4b, 0xf9}, SpanID: trace.SpanID{0x00, 0xf0}, TraceFlags: trace.FlagsSampled,
	})
	_ = q.Publish(trace.ContextWithSpanContext(context.Background(), sc), kanban.NewMessage("customer-7", "charge"))

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = q.Consume(ctx, func(ctx context.Context, d kanban.Delivery[string]) error {
		defer cancel()
		fmt.Println(d.Headers["traceparent"])
		fmt.Println(trace.SpanContextFromContext(ctx).TraceID() == sc.TraceID())
		return nil
	}, kanban.ConsumeOptions{})
	// Output:
	// 00-4bf90000000000000000000000000000-00f0000000000000-01
	// true
}

// A Tracer records a send span per publish and a process span per handler
// attempt, the second a child of the first through the message.
func ExampleNewTracer() {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	defer func() { _ = tp.Shutdown(context.Background()) }()
	q, _ := kanban.NewMemory[string](kanban.MemoryOptions{
		Name:       "ORDERS",
		Propagator: kanbanotel.TraceContext(),
		Tracer:     kanbanotel.NewTracer(kanbanotel.TracerOptions{Provider: tp}),
	})
	_ = q.Publish(context.Background(), kanban.Message[string]{ID: "order-1", Payload: "charge"})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = q.Consume(ctx, func(context.Context, kanban.Delivery[string]) error {
		cancel()
		return nil
	}, kanban.ConsumeOptions{})
	spans := rec.Ended()
	for _, s := range spans {
		fmt.Println(s.Name(), s.SpanKind())
	}
	fmt.Println(spans[1].Parent().SpanID() == spans[0].SpanContext().SpanID())
	// Output:
	// send ORDERS producer
	// process ORDERS consumer
	// true
}
