package kanbanotel_test

import (
	"context"
	"fmt"
	"time"

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
