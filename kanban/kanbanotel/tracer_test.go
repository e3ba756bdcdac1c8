package kanbanotel_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/taipattern/taikit/kanban"
	"github.com/taipattern/taikit/kanban/kanbanotel"
)

func attrs(s sdktrace.ReadOnlySpan) map[attribute.Key]attribute.Value {
	m := map[attribute.Key]attribute.Value{}
	for _, kv := range s.Attributes() {
		m[kv.Key] = kv.Value
	}
	return m
}

func byName(spans []sdktrace.ReadOnlySpan, name string) []sdktrace.ReadOnlySpan {
	var out []sdktrace.ReadOnlySpan
	for _, s := range spans {
		if s.Name() == name {
			out = append(out, s)
		}
	}
	return out
}

// consumeUntil runs q's consumer with h until h has been called n times.
func consumeUntil(t *testing.T, q *kanban.Memory[string], n int, h kanban.Handler[string]) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	calls := 0
	err := q.Consume(ctx, func(hctx context.Context, d kanban.Delivery[string]) error {
		calls++
		if calls == n {
			defer cancel()
		}
		return h(hctx, d)
	}, kanban.ConsumeOptions{Backoff: kanban.BackoffFunc(func(int) time.Duration { return 0 })})
	require.NoError(t, err)
	require.Equal(t, n, calls)
}

func TestTracerRecordsMessagingSpans(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	q, err := kanban.NewMemory[string](kanban.MemoryOptions{
		Name: "ORDERS", Propagator: kanbanotel.TraceContext(), Tracer: kanbanotel.NewTracer(kanbanotel.TracerOptions{Provider: tp}),
	})
	require.NoError(t, err)

	rctx, request := tp.Tracer("test").Start(context.Background(), "request")
	require.NoError(t, q.Publish(rctx, kanban.Message[string]{ID: "order-1", Key: "customer-7", Payload: "x"}))
	request.End()
	consumeUntil(t, q, 2, func(ctx context.Context, d kanban.Delivery[string]) error {
		_, span := tp.Tracer("test").Start(ctx, "handle")
		span.End()
		if d.Attempt == 1 {
			return errors.New("card 4111 1111 1111 1111 declined")
		}
		return nil
	})

	spans := rec.Ended()
	sends := byName(spans, "send ORDERS")
	require.Len(t, sends, 1)
	send := sends[0]
	assert.Equal(t, trace.SpanKindProducer, send.SpanKind())
	assert.Equal(t, request.SpanContext().SpanID(), send.Parent().SpanID(), "the send span is the publisher's child")
	assert.Equal(t, map[attribute.Key]attribute.Value{
		"messaging.system":           attribute.StringValue("kanban"),
		"messaging.destination.name": attribute.StringValue("ORDERS"),
		"messaging.operation.type":   attribute.StringValue("send"),
		"messaging.operation.name":   attribute.StringValue("send"),
		"messaging.message.id":       attribute.StringValue("order-1"),
	}, attrs(send))
	assert.Equal(t, codes.Unset, send.Status().Code)

	procs := byName(spans, "process ORDERS")
	require.Len(t, procs, 2)
	for i, p := range procs {
		assert.Equal(t, trace.SpanKindConsumer, p.SpanKind())
		assert.Equal(t, send.SpanContext().TraceID(), p.SpanContext().TraceID(), "in the publisher's trace")
		assert.Equal(t, send.SpanContext().SpanID(), p.Parent().SpanID(), "a child of the send span, through the message")
		require.Len(t, p.Links(), 1, "a process span links to its message's creation context")
		assert.True(t, send.SpanContext().Equal(p.Links()[0].SpanContext.WithRemote(false)), "the link is the send span")
		a := attrs(p)
		assert.Equal(t, "process", a["messaging.operation.type"].AsString())
		assert.Equal(t, "process", a["messaging.operation.name"].AsString())
		assert.Equal(t, "order-1", a["messaging.message.id"].AsString())
		assert.Equal(t, "ORDERS", a["messaging.destination.name"].AsString())
		assert.Equal(t, int64(i+1), a[kanbanotel.AttemptKey].AsInt64())
		assert.NotContains(t, a, attribute.Key("messaging.consumer.group.name"), "a memory queue has no consumer group")
	}
	assert.Equal(t, codes.Error, procs[0].Status().Code)
	assert.Equal(t, "_OTHER", procs[0].Status().Description, "no error text by default")
	assert.Equal(t, "_OTHER", attrs(procs[0])["error.type"].AsString())
	assert.Equal(t, codes.Unset, procs[1].Status().Code)
	for _, s := range spans {
		for _, e := range s.Events() {
			for _, kv := range e.Attributes {
				assert.NotContains(t, kv.Value.String(), "4111", "the error text stays out of the trace")
			}
		}
	}
	handles := byName(spans, "handle")
	require.Len(t, handles, 2)
	for i, h := range handles {
		assert.Equal(t, procs[i].SpanContext().SpanID(), h.Parent().SpanID(), "the handler's spans are children of its attempt's")
	}
}

func TestTracerErrorTypes(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	q, err := kanban.NewMemory[string](kanban.MemoryOptions{
		Capacity: 2, Tracer: kanbanotel.NewTracer(kanbanotel.TracerOptions{Provider: tp, ErrorText: true}),
	})
	require.NoError(t, err)
	ctx := context.Background()
	require.NoError(t, q.Publish(ctx, kanban.Message[string]{ID: "p"}))
	require.NoError(t, q.Publish(ctx, kanban.Message[string]{ID: "q"}))
	require.ErrorIs(t, q.TryPublish(ctx, kanban.Message[string]{ID: "r"}), kanban.ErrFull)
	consumeUntil(t, q, 2, func(_ context.Context, d kanban.Delivery[string]) error {
		if d.ID == "p" {
			return kanban.Permanent(errors.New("refused"))
		}
		panic(kanban.Permanent(errors.New("boom")))
	})
	sends := byName(rec.Ended(), "send kanban")
	require.Len(t, sends, 3)
	assert.Equal(t, "full", attrs(sends[2])["error.type"].AsString())
	assert.Equal(t, "kanban: queue full", sends[2].Status().Description, "ErrorText puts the text in the status")
	procs := byName(rec.Ended(), "process kanban")
	require.GreaterOrEqual(t, len(procs), 2)
	assert.Equal(t, "permanent", attrs(procs[0])["error.type"].AsString())
	assert.Equal(t, "refused", procs[0].Status().Description)
	assert.Equal(t, "panic", attrs(procs[1])["error.type"].AsString())

	// A redrive is a send too.
	n, err := q.RedriveDeadLetters(ctx, kanban.DeadLetterFilter{ID: "p"})
	require.NoError(t, err)
	require.Equal(t, 1, n)
	sends = byName(rec.Ended(), "send kanban")
	require.Len(t, sends, 4)
	assert.Equal(t, "p", attrs(sends[3])["messaging.message.id"].AsString())
}

func TestTracerFollowsTheGlobalProvider(t *testing.T) {
	q, err := kanban.NewMemory[string](kanban.MemoryOptions{Tracer: kanbanotel.NewTracer(kanbanotel.TracerOptions{})})
	require.NoError(t, err)
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	prev := otel.GetTracerProvider()
	otel.SetTracerProvider(tp)
	t.Cleanup(func() { otel.SetTracerProvider(prev) })
	require.NoError(t, q.Publish(context.Background(), kanban.Message[string]{ID: "a"}))
	assert.Len(t, byName(rec.Ended(), "send kanban"), 1, "a provider registered after the queue was made")
}

// A message without a trace context the Propagator can read gets a
// process span without a link, a child of the span of the consumer's ctx.
func TestTracerProcessWithoutCreationContext(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	// The headers come from a publisher that does not trace: no send
	// span replaces them.
	q, err := kanban.NewMemory[string](kanban.MemoryOptions{
		Name: "ORDERS", Propagator: kanbanotel.TraceContext(),
		Tracer: processOnly{kanbanotel.NewTracer(kanbanotel.TracerOptions{Provider: tp})},
	})
	require.NoError(t, err)
	malformed := []string{
		"",
		"garbage",
		"00-00000000000000000000000000000000-00f067aa0ba902b7-01", // zero trace ID
		"00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", // zero span ID
		"00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01", // upper case
		"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", // version ff
		"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
		"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
		"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0g",
		"\x00\xff\n",
	}
	for i, tp := range malformed {
		require.NoError(t, q.Publish(context.Background(), kanban.Message[string]{
			ID: "m-" + string(rune('a'+i)), Payload: "x", Headers: kanban.Header{"traceparent": tp, "tracestate": "k=v"},
		}))
	}
	require.NoError(t, q.Publish(context.Background(), kanban.Message[string]{ID: "no-headers", Payload: "x"}))
	const valid = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	require.NoError(t, q.Publish(context.Background(), kanban.Message[string]{
		ID: "valid", Payload: "x", Headers: kanban.Header{"traceparent": valid},
	}))

	ctx, consumer := tp.Tracer("test").Start(context.Background(), "consumer")
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	calls := 0
	require.NoError(t, q.Consume(ctx, func(context.Context, kanban.Delivery[string]) error {
		if calls++; calls == len(malformed)+2 {
			cancel()
		}
		return nil
	}, kanban.ConsumeOptions{}))
	consumer.End()

	procs := byName(rec.Ended(), "process ORDERS")
	require.Len(t, procs, len(malformed)+2)
	for _, p := range procs {
		id := attrs(p)["messaging.message.id"].AsString()
		if id == "valid" {
			require.Len(t, p.Links(), 1, "the control message links to its creation context")
			assert.Equal(t, valid, "00-"+p.Links()[0].SpanContext.TraceID().String()+"-"+p.Links()[0].SpanContext.SpanID().String()+"-01")
			assert.Equal(t, p.Links()[0].SpanContext.SpanID(), p.Parent().SpanID(), "and is its child")
			continue
		}
		assert.Empty(t, p.Links(), "%s: no creation context to link to", id)
		assert.Equal(t, consumer.SpanContext().SpanID(), p.Parent().SpanID(), "%s: a child of the consumer's span", id)
	}
}

// processOnly traces the handler attempts alone.
type processOnly struct{ kanban.Tracer }

func (p processOnly) Start(ctx context.Context, op kanban.Operation) (context.Context, func(error)) {
	if op.Type != kanban.OpProcess {
		return ctx, func(error) {}
	}
	return p.Tracer.Start(ctx, op)
}

// Every string a span holds is UTF-8, whatever bytes the message ID, the
// queue's name or the handler's error held: an OTLP exporter refuses a
// batch with one that is not, and with it the spans of other messages.
func TestTracerRecordsUTF8Only(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	q, err := kanban.NewMemory[string](kanban.MemoryOptions{
		Name: "ORD\xffERS", Tracer: kanbanotel.NewTracer(kanbanotel.TracerOptions{Provider: tp, ErrorText: true}),
	})
	require.NoError(t, err)
	require.NoError(t, q.Publish(context.Background(), kanban.Message[string]{ID: "order-\xfe\xff1", Payload: "x"}))
	consumeUntil(t, q, 1, func(context.Context, kanban.Delivery[string]) error {
		return kanban.Permanent(errors.New("declined \xc3"))
	})

	spans := rec.Ended()
	require.Len(t, spans, 2)
	for _, s := range spans {
		assert.True(t, utf8.ValidString(s.Name()), "%q", s.Name())
		assert.True(t, utf8.ValidString(s.Status().Description), "%q", s.Status().Description)
		for _, kv := range s.Attributes() {
			assert.True(t, utf8.ValidString(kv.Value.String()), "%s: %q", kv.Key, kv.Value.String())
		}
		a := attrs(s)
		assert.Equal(t, "order-\uFFFD1", a["messaging.message.id"].AsString(), "the valid bytes kept")
		assert.Equal(t, "ORD\uFFFDERS", a["messaging.destination.name"].AsString())
	}
	assert.Equal(t, "send ORD\uFFFDERS", spans[0].Name())
	assert.Equal(t, "declined \uFFFD", spans[1].Status().Description)
}

// A Provider holding a nil pointer, a provider the program left unset, is
// no provider: the global one makes the spans.
func TestTracerNilPointerProviderIsTheGlobalOne(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	prev := otel.GetTracerProvider()
	otel.SetTracerProvider(tp)
	t.Cleanup(func() { otel.SetTracerProvider(prev) })

	var unset *sdktrace.TracerProvider
	q, err := kanban.NewMemory[string](kanban.MemoryOptions{Tracer: kanbanotel.NewTracer(kanbanotel.TracerOptions{Provider: unset})})
	require.NoError(t, err)
	require.NotPanics(t, func() {
		require.NoError(t, q.Publish(context.Background(), kanban.Message[string]{ID: "a", Payload: "x"}))
	})
	consumeUntil(t, q, 1, func(context.Context, kanban.Delivery[string]) error { return nil })
	assert.Len(t, byName(rec.Ended(), "send kanban"), 1)
	assert.Len(t, byName(rec.Ended(), "process kanban"), 1)
}

// A consumer whose ctx holds a remote span context already (a consumer
// started under a job's extracted trace) links each process span to its
// message's creation context alone: a message without one, or with one the
// Propagator cannot read, links to nothing, not to the consumer's parent.
// That holds too when the job's trace was extracted by a Propagator of
// this package (the job came as a message of another queue): it is the
// job's creation context, not the message's.
func TestTracerLinksOnlyTheMessagesCreationContext(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	job := trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: trace.TraceID{7}, SpanID: trace.SpanID{7}, TraceFlags: trace.FlagsSampled, Remote: true,
	})
	for _, jc := range []struct {
		name string
		ctx  func() context.Context
	}{
		{"remote", func() context.Context { return trace.ContextWithRemoteSpanContext(context.Background(), job) }},
		{"extracted", func() context.Context {
			return kanbanotel.TraceContext().Extract(context.Background(), kanban.Header{
				"traceparent": "00-" + job.TraceID().String() + "-" + job.SpanID().String() + "-01",
			})
		}},
	} {
		for _, p := range []struct {
			name string
			p    kanban.Propagator
		}{
			{"TraceContext", kanbanotel.TraceContext()},
			{"New", kanbanotel.New(propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}))},
		} {
			t.Run(jc.name+"/"+p.name, func(t *testing.T) {
				rec.Reset()
				q, err := kanban.NewMemory[string](kanban.MemoryOptions{
					Name: "ORDERS", Propagator: p.p,
					Tracer: processOnly{kanbanotel.NewTracer(kanbanotel.TracerOptions{Provider: tp})},
				})
				require.NoError(t, err)
				const valid = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
				for _, m := range []kanban.Message[string]{
					{ID: "none", Payload: "x"},
					{ID: "other-headers", Payload: "x", Headers: kanban.Header{"x-tenant": "t-1"}},
					{ID: "malformed", Payload: "x", Headers: kanban.Header{"traceparent": "garbage"}},
					{ID: "valid", Payload: "x", Headers: kanban.Header{"traceparent": valid}},
				} {
					require.NoError(t, q.Publish(context.Background(), m))
				}

				ctx, cancel := context.WithTimeout(jc.ctx(), 30*time.Second)
				defer cancel()
				calls := 0
				require.NoError(t, q.Consume(ctx, func(context.Context, kanban.Delivery[string]) error {
					if calls++; calls == 4 {
						cancel()
					}
					return nil
				}, kanban.ConsumeOptions{}))

				procs := byName(rec.Ended(), "process ORDERS")
				require.Len(t, procs, 4)
				for _, s := range procs {
					id := attrs(s)["messaging.message.id"].AsString()
					if id == "valid" {
						require.Len(t, s.Links(), 1)
						assert.Equal(t, "4bf92f3577b34da6a3ce929d0e0e4736", s.Links()[0].SpanContext.TraceID().String())
						assert.Equal(t, s.Links()[0].SpanContext.SpanID(), s.Parent().SpanID())
						continue
					}
					assert.Empty(t, s.Links(), "%s: the consumer's parent is not the message's creation context", id)
					assert.Equal(t, job.SpanID(), s.Parent().SpanID(), "%s: a child of the consumer's parent", id)
				}
			})
		}
	}
}

// chainErr is an error whose Unwrap reads its receiver: a nil *chainErr
// returned as an error (a typed nil) panics when its chain is walked.
type chainErr struct{ err error }

func (e *chainErr) Error() string { return "chain" }
func (e *chainErr) Unwrap() error { return e.err }

// TestTracerEndsTheSpanWhenTheErrorPanics: an operation that ends with an
// error whose chain cannot be walked (a typed nil) makes the end function
// panic, which the queue recovers; the span is ended all the same, not
// left open and lost from the trace.
func TestTracerEndsTheSpanWhenTheErrorPanics(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	tr := kanbanotel.NewTracer(kanbanotel.TracerOptions{Provider: tp})
	for _, op := range []kanban.OperationType{kanban.OpSend, kanban.OpProcess} {
		rec.Reset()
		_, end := tr.Start(context.Background(), kanban.Operation{Type: op, System: "kanban", Queue: "orders", MessageID: "m1", Attempt: 1})
		var typedNil *chainErr
		require.Panics(t, func() { end(typedNil) }, "the error's chain cannot be walked")
		assert.Len(t, rec.Ended(), 1, "the %v span is ended", op)
	}
}

// TestTracerOmitsAnEmptyDestination: an operation on a queue without a
// name (a backend's Runtime that names none) has a span named for its
// operation alone, without a messaging.destination.name, as the messaging
// conventions ask when the destination is not known; and a publish of a
// message without an ID (refused) has no messaging.message.id.
func TestTracerOmitsAnEmptyDestination(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	tr := kanbanotel.NewTracer(kanbanotel.TracerOptions{Provider: tp})
	for _, op := range []kanban.OperationType{kanban.OpSend, kanban.OpProcess} {
		rec.Reset()
		_, end := tr.Start(context.Background(), kanban.Operation{Type: op, System: "custom", Attempt: 1})
		end(nil)
		ended := rec.Ended()
		require.Len(t, ended, 1)
		assert.Equal(t, op.String(), ended[0].Name(), "no trailing destination")
		a := attrs(ended[0])
		assert.NotContains(t, a, attribute.Key("messaging.destination.name"))
		assert.NotContains(t, a, attribute.Key("messaging.message.id"))
		assert.Equal(t, "custom", a["messaging.system"].AsString())
		assert.Equal(t, op.String(), a["messaging.operation.name"].AsString())
	}
}

// panicCodec panics in Marshal, as a Codec with a bug does.
type panicCodec struct{}

func (panicCodec) Marshal(any) ([]byte, error) { panic("codec bug") }
func (panicCodec) Unmarshal([]byte, any) error { return nil }

// TestTracerNamesAPublishPanicAsOne: a publish cut short by a panic (a
// Codec's Marshal, here) has the error.type of a panic, as a handler's
// attempt that panics does, not "_OTHER".
func TestTracerNamesAPublishPanicAsOne(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	q, err := kanban.NewMemory[string](kanban.MemoryOptions{
		Name: "ORDERS", Codec: panicCodec{}, Tracer: kanbanotel.NewTracer(kanbanotel.TracerOptions{Provider: tp}),
	})
	require.NoError(t, err)
	require.PanicsWithValue(t, "codec bug", func() {
		_ = q.Publish(context.Background(), kanban.Message[string]{ID: "m1", Payload: "x"})
	})
	sends := byName(rec.Ended(), "send ORDERS")
	require.Len(t, sends, 1, "the span is ended")
	assert.Equal(t, codes.Error, sends[0].Status().Code)
	assert.Equal(t, "panic", attrs(sends[0])["error.type"].AsString())
}

// TestTracerMarksTheSpanFailedWhenTheErrorPanics: the span of an
// operation that ended with an error whose chain cannot be walked is
// ended as failed (status Error, error.type "_OTHER"), not as a success.
func TestTracerMarksTheSpanFailedWhenTheErrorPanics(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	for _, errorText := range []bool{false, true} {
		tr := kanbanotel.NewTracer(kanbanotel.TracerOptions{Provider: tp, ErrorText: errorText})
		for _, op := range []kanban.OperationType{kanban.OpSend, kanban.OpProcess} {
			rec.Reset()
			_, end := tr.Start(context.Background(), kanban.Operation{Type: op, System: "kanban", Queue: "orders", MessageID: "m1", Attempt: 1})
			var typedNil *chainErr
			require.Panics(t, func() { end(typedNil) })
			ended := rec.Ended()
			require.Len(t, ended, 1)
			assert.Equal(t, codes.Error, ended[0].Status().Code, "%v, ErrorText %v: failed", op, errorText)
			assert.Equal(t, "_OTHER", attrs(ended[0])["error.type"].AsString(), "%v, ErrorText %v", op, errorText)
		}
		if errorText {
			// An error whose Error alone panics: its type is read, its
			// text cannot be.
			rec.Reset()
			_, end := tr.Start(context.Background(), kanban.Operation{Type: kanban.OpSend, System: "kanban", Queue: "orders", MessageID: "m1"})
			var typedNil *textErr
			require.Panics(t, func() { end(typedNil) })
			ended := rec.Ended()
			require.Len(t, ended, 1)
			assert.Equal(t, codes.Error, ended[0].Status().Code)
			assert.Equal(t, "_OTHER", ended[0].Status().Description)
		}
	}
}

// textErr is an error whose Error reads its receiver.
type textErr struct{ msg string }

func (e *textErr) Error() string { return e.msg }

// The spans' instrumentation scope names the schema of the semantic
// conventions their names and attributes follow, so a backend can
// translate them to a later version; it named none.
func TestTracerScopeNamesTheConventionsSchema(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	tr := kanbanotel.NewTracer(kanbanotel.TracerOptions{Provider: tp})
	_, end := tr.Start(context.Background(), kanban.Operation{Type: kanban.OpSend, System: "kanban", Queue: "q", MessageID: "a"})
	end(nil)
	ended := rec.Ended()
	require.Len(t, ended, 1)
	scope := ended[0].InstrumentationScope()
	assert.Equal(t, "github.com/taipattern/taikit/kanban/kanbanotel", scope.Name)
	assert.Equal(t, "https://opentelemetry.io/schemas/1.43.0", scope.SchemaURL)
}

// The spans' instrumentation scope carries the version of the module
// that made them, as kaizenotel's do, so a backend can tell the spans of
// one release from another's; it carried none.
func TestTracerScopeIsVersioned(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	prev := otel.GetTracerProvider()
	otel.SetTracerProvider(tp)
	t.Cleanup(func() { otel.SetTracerProvider(prev) })
	for _, opts := range []kanbanotel.TracerOptions{{Provider: tp}, {}} {
		tr := kanbanotel.NewTracer(opts)
		_, end := tr.Start(context.Background(), kanban.Operation{Type: kanban.OpProcess, System: "kanban", Queue: "q", MessageID: "a", Attempt: 1})
		end(nil)
	}
	ended := rec.Ended()
	require.Len(t, ended, 2)
	for _, s := range ended {
		assert.NotEmpty(t, s.InstrumentationScope().Version, "a provider given and the global one")
	}
}

// countingProvider counts the tracers asked of it.
type countingProvider struct {
	trace.TracerProvider
	calls int
}

func (p *countingProvider) Tracer(name string, opts ...trace.TracerOption) trace.Tracer {
	p.calls++
	return p.TracerProvider.Tracer(name, opts...)
}

// A Tracer with a Provider asks it for its tracer once, not at each span:
// an SDK provider takes a lock to find it, which every publish and every
// attempt paid, sampled or not.
func TestTracerAsksItsProviderOnce(t *testing.T) {
	tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.NeverSample()))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	cp := &countingProvider{TracerProvider: tp}
	tr := kanbanotel.NewTracer(kanbanotel.TracerOptions{Provider: cp})
	for range 3 {
		_, end := tr.Start(context.Background(), kanban.Operation{Type: kanban.OpSend, System: "kanban", Queue: "q", MessageID: "a"})
		end(nil)
	}
	assert.Equal(t, 1, cp.calls)
}

// A span the sampler drops costs little: the attributes a sampler may read
// (those of the queue) are built once per queue, the rest only for a span
// that records, and a span that records nothing is not ended. An unsampled
// send made 9 allocations, a process span 13, and then 7: its link to its
// message's creation context, built for every span.
func TestTracerUnsampledSpansAllocateLittle(t *testing.T) {
	tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.NeverSample())))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	tr := kanbanotel.NewTracer(kanbanotel.TracerOptions{Provider: tp})
	send := kanban.Operation{Type: kanban.OpSend, System: "kanban", Queue: "orders", MessageID: "order-1"}
	sendCtx, end := tr.Start(context.Background(), send)
	end(nil)
	h := kanban.Header{}
	kanbanotel.TraceContext().Inject(sendCtx, h)
	consumer := kanbanotel.TraceContext().Extract(context.Background(), h)
	process := kanban.Operation{Type: kanban.OpProcess, System: "kanban", Queue: "orders", MessageID: "order-1", Consumer: "billing", Attempt: 1}
	for _, tc := range []struct {
		name string
		ctx  context.Context
		op   kanban.Operation
		max  float64
	}{
		// The SDK's: its copy of the attributes, the span and the
		// context holding it.
		{"send", context.Background(), send, 3},
		{"process", consumer, process, 3},
	} {
		err := errors.New("failed")
		allocs := testing.AllocsPerRun(100, func() {
			_, end := tr.Start(tc.ctx, tc.op)
			end(err)
		})
		assert.LessOrEqual(t, allocs, tc.max, tc.name)
	}
}

// attrSampler samples every span, keeping the attributes it was given at
// the start.
type attrSampler struct {
	attrs   [][]attribute.KeyValue
	parents []trace.SpanContext
}

func (s *attrSampler) ShouldSample(p sdktrace.SamplingParameters) sdktrace.SamplingResult {
	s.attrs = append(s.attrs, p.Attributes)
	s.parents = append(s.parents, trace.SpanContextFromContext(p.ParentContext))
	return sdktrace.SamplingResult{Decision: sdktrace.RecordAndSample}
}

func (*attrSampler) Description() string { return "attrSampler" }

// A sampler reads the attributes of the queue at the span's start, as the
// messaging conventions ask; the message ID and the attempt, set once the
// span records, are on the span all the same.
func TestTracerGivesTheSamplerTheQueuesAttributes(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	smp := &attrSampler{}
	tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(smp), sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	tr := kanbanotel.NewTracer(kanbanotel.TracerOptions{Provider: tp})
	_, end := tr.Start(context.Background(), kanban.Operation{Type: kanban.OpProcess, System: "nats", Queue: "ORDERS", Consumer: "billing", MessageID: "m", Attempt: 2})
	end(nil)
	require.Len(t, smp.attrs, 1)
	got := map[attribute.Key]string{}
	for _, kv := range smp.attrs[0] {
		got[kv.Key] = kv.Value.String()
	}
	assert.Equal(t, map[attribute.Key]string{
		"messaging.system":              "nats",
		"messaging.operation.type":      "process",
		"messaging.operation.name":      "process",
		"messaging.destination.name":    "ORDERS",
		"messaging.consumer.group.name": "billing",
	}, got)
	ended := rec.Ended()
	require.Len(t, ended, 1)
	a := attrs(ended[0])
	assert.Equal(t, "m", a["messaging.message.id"].AsString())
	assert.Equal(t, int64(2), a[kanbanotel.AttemptKey].AsInt64())
	assert.Equal(t, "ORDERS", a["messaging.destination.name"].AsString())
}

// A sampler reads a process span's creation context, which the span links
// to once it records, as the span's parent.
func TestTracerGivesTheSamplerTheCreationContext(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	smp := &attrSampler{}
	tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(smp), sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	tr := kanbanotel.NewTracer(kanbanotel.TracerOptions{Provider: tp})
	sendCtx, end := tr.Start(context.Background(), kanban.Operation{Type: kanban.OpSend, System: "nats", Queue: "ORDERS", MessageID: "m"})
	end(nil)
	h := kanban.Header{}
	kanbanotel.TraceContext().Inject(sendCtx, h)
	_, end = tr.Start(kanbanotel.TraceContext().Extract(context.Background(), h),
		kanban.Operation{Type: kanban.OpProcess, System: "nats", Queue: "ORDERS", Consumer: "billing", MessageID: "m", Attempt: 1})
	end(nil)
	require.Len(t, smp.parents, 2)
	send := trace.SpanContextFromContext(sendCtx)
	assert.True(t, send.Equal(smp.parents[1].WithRemote(false)), "the sampler's parent is the send span")
	ended := rec.Ended()
	require.Len(t, ended, 2)
	require.Len(t, ended[1].Links(), 1)
	assert.True(t, send.Equal(ended[1].Links()[0].SpanContext.WithRemote(false)), "the link is the send span")
}

// A message ID and an error's text are cut, at a character boundary, to
// MaxMessageIDLen and MaxErrorTextLen bytes: an SDK without an
// AttributeValueLengthLimit would export them whole, however long.
func TestTracerCutsLongIDsAndErrorTexts(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	tr := kanbanotel.NewTracer(kanbanotel.TracerOptions{Provider: tp, ErrorText: true})
	id := "m-" + strings.Repeat("é", kanbanotel.MaxMessageIDLen) // a 2-byte character across the cut
	text := "charging " + strings.Repeat("€", kanbanotel.MaxErrorTextLen)
	for _, op := range []kanban.OperationType{kanban.OpSend, kanban.OpProcess} {
		rec.Reset()
		_, end := tr.Start(context.Background(), kanban.Operation{Type: op, System: "kanban", Queue: "orders", MessageID: id, Attempt: 1})
		end(errors.New(text))
		ended := rec.Ended()
		require.Len(t, ended, 1)
		got := attrs(ended[0])["messaging.message.id"].AsString()
		assert.LessOrEqual(t, len(got), kanbanotel.MaxMessageIDLen, "%v", op)
		assert.Greater(t, len(got), kanbanotel.MaxMessageIDLen-utf8.UTFMax, "%v: cut no shorter than a character", op)
		assert.True(t, strings.HasPrefix(id, got) && utf8.ValidString(got), "%v: %q", op, got)
		desc := ended[0].Status().Description
		assert.LessOrEqual(t, len(desc), kanbanotel.MaxErrorTextLen, "%v", op)
		assert.Greater(t, len(desc), kanbanotel.MaxErrorTextLen-utf8.UTFMax, "%v: cut no shorter than a character", op)
		assert.True(t, strings.HasPrefix(text, desc) && utf8.ValidString(desc), "%v: %q", op, desc)
	}
}
