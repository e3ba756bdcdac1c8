package kanbanotel_test

import (
	"context"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/taipattern/taikit/kanban"
	"github.com/taipattern/taikit/kanban/kanbanotel"
)

// BenchmarkTracerUnsampled measures a span the sampler drops, as most are
// in a busy service: a send, and a process span of a message whose send
// span was dropped too.
func BenchmarkTracerUnsampled(b *testing.B) {
	tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.NeverSample())))
	b.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	tr := kanbanotel.NewTracer(kanbanotel.TracerOptions{Provider: tp})
	send := kanban.Operation{Type: kanban.OpSend, System: "kanban", Queue: "orders", MessageID: "order-1"}
	b.Run("send", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_, end := tr.Start(context.Background(), send)
			end(nil)
		}
	})
	sendCtx, end := tr.Start(context.Background(), send)
	end(nil)
	h := kanban.Header{}
	kanbanotel.TraceContext().Inject(sendCtx, h)
	consumer := kanbanotel.TraceContext().Extract(context.Background(), h)
	if !trace.SpanContextFromContext(consumer).IsValid() {
		b.Fatal("no trace context extracted")
	}
	process := kanban.Operation{Type: kanban.OpProcess, System: "kanban", Queue: "orders", MessageID: "order-1", Consumer: "billing", Attempt: 1}
	b.Run("process", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_, end := tr.Start(consumer, process)
			end(nil)
		}
	})
}
