// Package kanbanotel carries OpenTelemetry context through kanban queues:
// it adapts OpenTelemetry text-map propagators to kanban.Propagator, so a
// handler's spans join the trace of the Publish that queued its message.
//
//	q, err := kanban.NewMemory[Order](kanban.MemoryOptions{Propagator: kanbanotel.TraceContext()})
//
// Three propagators cover the usual needs:
//
//   - TraceContext carries the W3C trace context alone — the traceparent
//     and tracestate headers — and never baggage, whatever is registered
//     globally. A service whose messages may leave its trust boundary, or
//     whose baggage may hold what must not travel (a payment service), uses
//     it.
//   - Global follows OpenTelemetry's global propagator,
//     otel.GetTextMapPropagator(), looked up at each Publish and each
//     delivery, so one registered after the queue was made is used. While
//     none is registered it carries nothing.
//   - New adapts any other propagation.TextMapPropagator.
//
// Each reads a delivered message's headers whatever the case of their
// names ("Traceparent" as well as "traceparent"), as W3C Trace Context
// asks of a receiver, and writes them as the propagator names them (in
// lower case for OpenTelemetry's own; "X-Amzn-Trace-Id" as AWS X-Ray's
// writes it, which a receiver matching names exactly must then use). A
// propagator that
// injects anything has every field it names (its Fields) written, empty
// when it has no value for it — a tracestate beside a traceparent, when
// the trace has none — so that one already in the message's headers (a
// dead letter redriven in another trace) is replaced and not read as the
// new trace's.
//
// NewTracer records the queue's own spans, as OpenTelemetry's messaging
// conventions name them: "send {queue}" around each publish and "process
// {queue}" around each handler attempt, with the messaging.* attributes.
// With a propagator too, each process span is a child of its message's
// send span and links to it:
//
//	q, err := natsjs.New[Order](ctx, nc, natsjs.Options{
//		Stream:     "ORDERS",
//		Propagator: kanbanotel.TraceContext(),
//		Tracer:     kanbanotel.NewTracer(kanbanotel.TracerOptions{Provider: tp}),
//	})
package kanbanotel

import (
	"context"
	"strings"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/taipattern/taikit/internal/typednil"
	"github.com/taipattern/taikit/kanban"
)

// New returns a kanban.Propagator that injects and extracts with p. It
// returns nil, which carries nothing, for a nil p, or one holding a nil
// pointer or func (a propagator left unset): wrapped, that would pass
// for a Propagator and panic in every Publish.
func New(p propagation.TextMapPropagator) kanban.Propagator {
	if p == nil || typednil.Holds(p) {
		return nil
	}
	return fixed{p}
}

// TraceContext returns a kanban.Propagator that carries the W3C trace
// context (the traceparent and tracestate headers) and nothing else: no
// baggage, and no propagator registered globally.
func TraceContext() kanban.Propagator { return fixed{propagation.TraceContext{}} }

// Global returns a kanban.Propagator that uses OpenTelemetry's global
// propagator as it is at each call (otel.GetTextMapPropagator), so that
// one registered with otel.SetTextMapPropagator after the queue was made
// takes effect at once. It carries what the registered propagator carries
// — baggage too, if it is registered; use TraceContext to carry the trace
// alone.
func Global() kanban.Propagator { return global{} }

// fixed carries with one propagator. kanban.Header has the methods of a
// propagation.TextMapCarrier, so it is handed over as it is to Inject.
type fixed struct{ p propagation.TextMapPropagator }

func (f fixed) Inject(ctx context.Context, h kanban.Header) {
	f.p.Inject(ctx, h)
	ownFields(h, f.p.Fields())
}

// ownFields writes an empty value into h, the headers a propagator
// injected, for each of its fields (TextMapPropagator.Fields) it left
// out, once it injected any: the queue merges h into the message's own
// headers, and those may hold values of another trace — a dead letter
// redriven in a new trace, headers copied from a delivery — which would
// otherwise travel beside the new ones (a tracestate beside a fresh
// traceparent) and be read as theirs.
func ownFields(h kanban.Header, fields []string) {
	if len(h) == 0 {
		return // nothing to carry: the message keeps its own
	}
	for _, f := range fields {
		if _, ok := h[f]; !ok {
			h[f] = ""
		}
	}
}

func (f fixed) Extract(ctx context.Context, h kanban.Header) context.Context {
	return created(ctx, f.p.Extract(ctx, received(h)))
}

// received is the carrier of a delivered message's headers. Its Get finds
// a name in any case, as W3C Trace Context asks of a receiver: a publisher
// that is not a kanban queue may have written its headers through an
// http.Header, which sends "Traceparent". It never writes the headers.
type received kanban.Header

// Get returns the value of key, or of the least (in byte order) of the
// names equal to key in another case, so that the answer does not depend
// on the map's order.
func (r received) Get(key string) string {
	if v, ok := r[key]; ok {
		return v
	}
	var name, value string
	for k, v := range r {
		if strings.EqualFold(k, key) && (name == "" || k < name) {
			name, value = k, v
		}
	}
	return value
}

// Set does nothing: an extracting propagator does not write, and the
// message's headers are not its to change.
func (received) Set(string, string) {}

// Keys returns the header names.
func (r received) Keys() []string { return kanban.Header(r).Keys() }

type global struct{}

func (global) Inject(ctx context.Context, h kanban.Header) {
	p := otel.GetTextMapPropagator()
	p.Inject(ctx, h)
	ownFields(h, p.Fields())
}

func (global) Extract(ctx context.Context, h kanban.Header) context.Context {
	return created(ctx, otel.GetTextMapPropagator().Extract(ctx, received(h)))
}

// createdKey holds, in the ctx a propagator of this package extracted
// from a message, a *creation: the message's creation context, which a
// process span links to (see NewTracer).
type createdKey struct{}

// creation is the trace context a propagator extracted from a message, and
// the ctx it returned holding it. A ctx derived from that one holds the
// creation too, but is not the message's: a consumer started under a job
// whose trace was extracted from a message of another queue would
// otherwise link every process span to the job's creation context, for
// messages that carry none of their own.
type creation struct {
	sc  trace.SpanContext
	ctx context.Context
}

// created returns ctx, which a propagator extracted from a message into
// parent, noting the span context it extracted, if it did. A span context
// of parent's own, a remote parent the consumer's ctx held before, is not
// the message's.
func created(parent, ctx context.Context) context.Context {
	sc := trace.SpanContextFromContext(ctx)
	if !sc.IsValid() || sc.Equal(trace.SpanContextFromContext(parent)) {
		return ctx
	}
	c := &creation{sc: sc}
	c.ctx = context.WithValue(ctx, createdKey{}, c)
	return c.ctx
}

// creationOf returns the creation context of the message whose headers a
// propagator of this package extracted into ctx: only ctx as the
// propagator returned it holds one.
func creationOf(ctx context.Context) (trace.SpanContext, bool) {
	c, ok := ctx.Value(createdKey{}).(*creation)
	if !ok || c.ctx != ctx {
		return trace.SpanContext{}, false
	}
	return c.sc, true
}
