package kanbanotel_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/baggage"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/goleak"

	"github.com/taipattern/taikit/kanban"
	"github.com/taipattern/taikit/kanban/kanbanotel"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// delivered is what a handler saw of one message.
type delivered struct {
	span    trace.SpanContext // the handler's span
	parent  trace.SpanContext
	bag     baggage.Baggage
	headers kanban.Header
}

// roundTrip publishes one message with pctx on a memory queue with p and
// returns what its handler saw, with a span of tracer started in it.
func roundTrip(t *testing.T, p kanban.Propagator, pctx context.Context, tracer trace.Tracer) delivered {
	t.Helper()
	q, err := kanban.NewMemory[string](kanban.MemoryOptions{Propagator: p})
	require.NoError(t, err)
	require.NoError(t, q.Publish(pctx, kanban.NewMessage("", "x")))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var got delivered
	err = q.Consume(ctx, func(hctx context.Context, d kanban.Delivery[string]) error {
		defer cancel()
		got.parent = trace.SpanContextFromContext(hctx)
		_, span := tracer.Start(hctx, "handle")
		got.span = span.SpanContext()
		span.End()
		got.bag = baggage.FromContext(hctx)
		got.headers = d.Headers
		return nil
	}, kanban.ConsumeOptions{})
	require.NoError(t, err)
	return got
}

func newTracer(t *testing.T) (trace.Tracer, *tracetest.SpanRecorder) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	return tp.Tracer("kanbanotel_test"), rec
}

// withBaggage returns ctx with a baggage member, as a service might hold
// one that must not leave it.
func withBaggage(t *testing.T, ctx context.Context) context.Context {
	m, err := baggage.NewMember("customer", "c-42")
	require.NoError(t, err)
	b, err := baggage.New(m)
	require.NoError(t, err)
	return baggage.ContextWithBaggage(ctx, b)
}

// setGlobal registers p globally for the test and restores the previous
// one after it.
func setGlobal(t *testing.T, p propagation.TextMapPropagator) {
	prev := otel.GetTextMapPropagator()
	otel.SetTextMapPropagator(p)
	t.Cleanup(func() { otel.SetTextMapPropagator(prev) })
}

func TestTraceContextJoinsThePublishersTrace(t *testing.T) {
	tracer, rec := newTracer(t)
	// Baggage registered globally and present in ctx: TraceContext still
	// carries the trace alone.
	setGlobal(t, propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}))
	pctx, pub := tracer.Start(withBaggage(t, context.Background()), "publish")
	pub.End()
	got := roundTrip(t, kanbanotel.TraceContext(), pctx, tracer)

	spans := rec.Ended()
	require.Len(t, spans, 2)
	publisher := spans[0].SpanContext()
	assert.True(t, got.parent.IsRemote(), "the handler's ctx holds the publisher's span, extracted")
	assert.Equal(t, publisher.TraceID(), got.span.TraceID(), "one trace")
	assert.Equal(t, publisher.SpanID(), spans[1].Parent().SpanID(), "the handling is a child of the publish")
	assert.Contains(t, got.headers, "traceparent")
	assert.NotContains(t, got.headers, "baggage", "TraceContext never carries baggage")
	assert.Zero(t, got.bag.Len())
}

func TestTraceContextCarriesTracestate(t *testing.T) {
	ts, err := trace.ParseTraceState("vendor=v1")
	require.NoError(t, err)
	sc := trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: trace.TraceID{1}, SpanID: trace.SpanID{2}, TraceFlags: trace.FlagsSampled, TraceState: ts,
	})
	tracer, _ := newTracer(t)
	got := roundTrip(t, kanbanotel.TraceContext(), trace.ContextWithSpanContext(context.Background(), sc), tracer)
	assert.Equal(t, kanban.Header{
		"traceparent": "00-01000000000000000000000000000000-0200000000000000-01",
		"tracestate":  "vendor=v1",
	}, got.headers, "the W3C headers and nothing else")
	assert.Equal(t, "vendor=v1", got.parent.TraceState().String())
}

// TestGlobalFollowsRegistration: a queue made before a global propagator
// is registered carries nothing until one is, then carries what it does.
func TestGlobalFollowsRegistration(t *testing.T) {
	tracer, _ := newTracer(t)
	setGlobal(t, propagation.NewCompositeTextMapPropagator()) // none
	p := kanbanotel.Global()
	pctx, pub := tracer.Start(withBaggage(t, context.Background()), "publish")
	pub.End()

	got := roundTrip(t, p, pctx, tracer)
	assert.Empty(t, got.headers, "nothing registered, nothing carried")
	assert.False(t, got.parent.IsValid())

	otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}))
	got = roundTrip(t, p, pctx, tracer)
	assert.Contains(t, got.headers, "traceparent")
	assert.Equal(t, pub.SpanContext().TraceID(), got.span.TraceID())
	assert.Equal(t, "c-42", got.bag.Member("customer").Value(), "the registered propagator's baggage comes along")
}

func TestNew(t *testing.T) {
	assert.Nil(t, kanbanotel.New(nil), "nil carries nothing")
	tracer, _ := newTracer(t)
	pctx, pub := tracer.Start(withBaggage(t, context.Background()), "publish")
	pub.End()
	got := roundTrip(t, kanbanotel.New(propagation.Baggage{}), pctx, tracer)
	assert.Equal(t, "c-42", got.bag.Member("customer").Value())
	assert.NotContains(t, got.headers, "traceparent", "the given propagator only")
	assert.False(t, got.parent.IsValid())
}

// A delivered message's trace context is read whatever the case of its
// header names, as W3C Trace Context asks of a receiver: a publisher that
// is not a kanban queue may write them through an http.Header, which
// sends "Traceparent".
func TestTraceContextReadsHeaderNamesInAnyCase(t *testing.T) {
	const parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	setGlobal(t, propagation.TraceContext{})
	for _, h := range []kanban.Header{
		{"Traceparent": parent, "Tracestate": "vendor=v1"},
		{"TRACEPARENT": parent, "TraceState": "vendor=v1", "x-other": "y"},
		// The exact name wins over another case, whatever the map's order.
		{"traceparent": parent, "Traceparent": "00-11111111111111111111111111111111-1111111111111111-01", "tracestate": "vendor=v1"},
	} {
		for _, p := range []kanban.Propagator{kanbanotel.TraceContext(), kanbanotel.New(propagation.TraceContext{}), kanbanotel.Global()} {
			ctx := p.Extract(context.Background(), h)
			sc := trace.SpanContextFromContext(ctx)
			assert.Equal(t, "4bf92f3577b34da6a3ce929d0e0e4736", sc.TraceID().String(), "%v", h)
			assert.Equal(t, "00f067aa0ba902b7", sc.SpanID().String(), "%v", h)
			assert.True(t, sc.IsRemote())
			assert.Equal(t, "vendor=v1", sc.TraceState().String(), "%v", h)
		}
	}
}

// unsetPropagator is a propagator whose methods read its fields, as most
// do: a nil *unsetPropagator panics when called.
type unsetPropagator struct{ fields []string }

func (p *unsetPropagator) Inject(context.Context, propagation.TextMapCarrier) { _ = p.fields }

func (p *unsetPropagator) Extract(ctx context.Context, _ propagation.TextMapCarrier) context.Context {
	_ = p.fields
	return ctx
}

func (p *unsetPropagator) Fields() []string { return p.fields }

// A nil pointer given to New (a propagator left unset) carries nothing, as
// nil does: wrapped, it passed kanban's check for a nil Propagator and
// panicked in every Publish.
func TestNewNilPointerCarriesNothing(t *testing.T) {
	var unset *unsetPropagator
	p := kanbanotel.New(unset)
	assert.Nil(t, p)
	tracer, _ := newTracer(t)
	pctx, pub := tracer.Start(context.Background(), "publish")
	pub.End()
	got := roundTrip(t, p, pctx, tracer)
	assert.Empty(t, got.headers)
	assert.False(t, got.parent.IsValid())
}

// TestRedriveInNewTraceDropsTheOldTracestate: a dead letter redriven in
// another trace carries that trace's traceparent and not the tracestate
// of the trace it was first published in, which belongs to another trace
// (W3C Trace Context keeps the two together).
func TestRedriveInNewTraceDropsTheOldTracestate(t *testing.T) {
	for _, c := range []struct {
		name string
		p    kanban.Propagator
	}{
		{"TraceContext", kanbanotel.TraceContext()},
		{"New", kanbanotel.New(propagation.TraceContext{})},
		{"Global", kanbanotel.Global()},
	} {
		t.Run(c.name, func(t *testing.T) {
			setGlobal(t, propagation.TraceContext{})
			ts, err := trace.ParseTraceState("vendor=v1")
			require.NoError(t, err)
			first := trace.NewSpanContext(trace.SpanContextConfig{
				TraceID: trace.TraceID{1}, SpanID: trace.SpanID{2}, TraceFlags: trace.FlagsSampled, TraceState: ts,
			})
			second := trace.NewSpanContext(trace.SpanContextConfig{
				TraceID: trace.TraceID{3}, SpanID: trace.SpanID{4}, TraceFlags: trace.FlagsSampled,
			})
			q, err := kanban.NewMemory[string](kanban.MemoryOptions{Propagator: c.p})
			require.NoError(t, err)
			require.NoError(t, q.Publish(trace.ContextWithSpanContext(context.Background(), first), kanban.NewMessage("", "x")))
			consume := func() (trace.SpanContext, kanban.Header) {
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				var sc trace.SpanContext
				var h kanban.Header
				err := q.Consume(ctx, func(hctx context.Context, d kanban.Delivery[string]) error {
					defer cancel()
					sc, h = trace.SpanContextFromContext(hctx), d.Headers
					return kanban.Permanent(errors.New("refused"))
				}, kanban.ConsumeOptions{})
				require.NoError(t, err)
				return sc, h
			}
			sc, _ := consume()
			require.Equal(t, "vendor=v1", sc.TraceState().String())
			n, err := q.RedriveDeadLetters(trace.ContextWithSpanContext(context.Background(), second), kanban.DeadLetterFilter{All: true})
			require.NoError(t, err)
			require.Equal(t, 1, n)
			sc, h := consume()
			assert.Equal(t, second.TraceID(), sc.TraceID(), "the redrive's trace")
			assert.Empty(t, sc.TraceState().String(), "no tracestate of the first trace: headers %v", h)
		})
	}
}
