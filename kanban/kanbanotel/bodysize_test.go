package kanbanotel_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/taipattern/taikit/kanban"
	"github.com/taipattern/taikit/kanban/kanbanotel"
)

// bodySizeKey is the attribute of the size of a message's body.
const bodySizeKey = attribute.Key("messaging.message.body.size")

// TestTracerRecordsTheBodySize: the send and process spans of a queue
// that knows the size of its messages' bodies (natsjs: the payload as its
// Codec encoded it) have it as messaging.message.body.size; one that does
// not know it (0) has none, rather than a size of 0.
func TestTracerRecordsTheBodySize(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	tr := kanbanotel.NewTracer(kanbanotel.TracerOptions{Provider: tp})
	for _, op := range []kanban.Operation{
		{Type: kanban.OpSend, System: "nats", Queue: "ORDERS", MessageID: "m1", BodySize: 17},
		{Type: kanban.OpProcess, System: "nats", Queue: "ORDERS", Consumer: "billing", MessageID: "m1", Attempt: 1, BodySize: 17},
	} {
		rec.Reset()
		_, end := tr.Start(context.Background(), op)
		end(nil)
		ended := rec.Ended()
		require.Len(t, ended, 1)
		assert.Equal(t, int64(17), attrs(ended[0])[bodySizeKey].AsInt64(), "%v", op.Type)

		rec.Reset()
		op.BodySize = 0
		_, end = tr.Start(context.Background(), op)
		end(nil)
		ended = rec.Ended()
		require.Len(t, ended, 1)
		assert.NotContains(t, attrs(ended[0]), bodySizeKey, "%v without a size", op.Type)
	}
}

// TestTracerRecordsTheBodySizeForMemoryWithACodec: a kanban.Memory
// queue with a Codec holds its payloads encoded, so its send and process
// spans have the size of the encoding as messaging.message.body.size; one
// without a Codec holds values, not bytes, and its spans have none.
func TestTracerRecordsTheBodySizeForMemoryWithACodec(t *testing.T) {
	body, err := kanban.JSON{}.Marshal("a payload")
	require.NoError(t, err)
	for _, codec := range []kanban.Codec{nil, kanban.JSON{}} {
		rec := tracetest.NewSpanRecorder()
		tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
		q, err := kanban.NewMemory[string](kanban.MemoryOptions{
			Name: "ORDERS", Codec: codec, Tracer: kanbanotel.NewTracer(kanbanotel.TracerOptions{Provider: tp}),
		})
		require.NoError(t, err)
		require.NoError(t, q.Publish(context.Background(), kanban.Message[string]{ID: "m1", Payload: "a payload"}))
		consumeUntil(t, q, 1, func(context.Context, kanban.Delivery[string]) error { return nil })
		ended := rec.Ended()
		require.Len(t, byName(ended, "send ORDERS"), 1)
		require.Len(t, byName(ended, "process ORDERS"), 1)
		for _, s := range ended {
			if codec == nil {
				assert.NotContains(t, attrs(s), bodySizeKey, "%s without a Codec", s.Name())
				continue
			}
			assert.Equal(t, int64(len(body)), attrs(s)[bodySizeKey].AsInt64(), "%s with a Codec", s.Name())
		}
		require.NoError(t, tp.Shutdown(context.Background()))
	}
}
