package kanbanotel

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"

	"github.com/taipattern/taikit/internal/modversion"
	"github.com/taipattern/taikit/internal/typednil"
	"github.com/taipattern/taikit/internal/utf8text"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/taipattern/taikit/kanban"
)

// instrumentation names the tracer the spans come from.
const instrumentation = "github.com/taipattern/taikit/kanban/kanbanotel"

// AttemptKey is the attribute holding a process span's delivery attempt,
// from 1; OpenTelemetry's messaging conventions have no general one.
const AttemptKey = attribute.Key("kanban.delivery.attempt")

// MaxMessageIDLen is the length, in bytes, a message ID is cut to in a
// span's messaging.message.id, at a character boundary: a publisher may
// choose IDs of any length, and an OpenTelemetry SDK cuts attribute values
// only when its AttributeValueLengthLimit is set.
const MaxMessageIDLen = 256

// MaxErrorTextLen is the length, in bytes, an error's text is cut to in a
// span's status description (TracerOptions.ErrorText), at a character
// boundary: an error may quote a whole message.
const MaxErrorTextLen = 1024

// TracerOptions configure NewTracer. The zero value uses the global
// TracerProvider and records no error text.
type TracerOptions struct {
	// Provider makes the spans; NewTracer asks it for its tracer once.
	// nil, or a nil pointer (a provider left unset), means OpenTelemetry's
	// global provider as it is at each span (otel.GetTracerProvider), so
	// one registered after the queue was made is used.
	Provider trace.TracerProvider
	// ErrorText puts an error's text in its span's status description.
	// Off by default: a handler's error may quote what it was working on
	// (an account, a card), which must not leave the service in traces;
	// the span then has status Error with the error.type alone. The text
	// is cut to MaxErrorTextLen bytes.
	ErrorText bool
}

// NewTracer returns a kanban.Tracer that records OpenTelemetry spans as
// the messaging semantic conventions describe them:
//
//	send {queue}      kind producer, around Publish, TryPublish, PublishAsync and each redriven dead letter
//	process {queue}   kind consumer, around each handler attempt
//
// with messaging.system ("kanban" for kanban.Memory, "nats" for natsjs),
// messaging.destination.name (the queue or stream), messaging.operation.type
// and messaging.operation.name ("send" or "process"),
// messaging.message.id, messaging.message.body.size (the size in bytes
// of the payload as the queue's Codec encoded it, when the queue knows
// it: natsjs does, and kanban.Memory with a Codec; without one it holds
// values, not bytes, and tells none), and
// messaging.consumer.group.name (the JetStream durable) and
// kanban.delivery.attempt on process spans. An empty queue name or
// message ID, and a body size of 0, are left out, and the span of an
// operation on a queue without a name is named "send" or "process"
// alone, as the conventions ask when the destination is not known. A
// failed operation's span has status Error and error.type: "permanent",
// "panic" (a handler, or a publish, that panicked or called
// runtime.Goexit), "full", "timeout", "canceled" or "_OTHER".
//
// The send span is the parent of what the queue's Propagator injects, so
// with a Propagator of this package (TraceContext, say) each process span
// is a child of its message's send span, in the publisher's trace, and
// links to it, as the conventions ask of a process span; the handler's own
// spans are children of the process span. A message without a trace
// context, or with one the Propagator cannot read (a malformed
// traceparent), gets a process span without a link, a child of whatever
// span the consumer's ctx holds, even one a Propagator of this package
// extracted from another message (a consumer started in the handler of
// another queue's message): a process span links only to what the
// Propagator extracted for its own message, found in the ctx the queue
// passes from the Propagator to the Tracer as it is. A Propagator of
// another package gives the parent but no link: the Tracer cannot tell
// the context it extracted from one the consumer's ctx held already.
//
// The spans come from the instrumentation scope named after this
// package's import path, versioned with the version of the module that
// holds this package, with the schema URL of the version of the
// conventions they follow, https://opentelemetry.io/schemas/1.43.0.
//
// The attributes of the queue (all but the message ID, the body size and
// the attempt) are given at the span's start, where a sampler reads them,
// as the conventions ask; those of the message are set only on a span
// that records, so that one the sampler drops costs little, and so is a
// process span's link: the context it links to is the span's parent,
// which the sampler reads (as SamplingParameters.ParentContext, not among
// its Links).
//
// A message ID, queue or error text that is not UTF-8 is recorded with
// U+FFFD in place of each run of bytes that is not: OTLP carries UTF-8
// alone, and an exporter refuses a batch holding anything else.
// A message ID is cut to MaxMessageIDLen bytes and an error text to
// MaxErrorTextLen, each at a character boundary.
func NewTracer(opts TracerOptions) kanban.Tracer {
	if typednil.Holds(opts.Provider) {
		// It would panic at the first span, in a publisher or in a
		// consumer's worker, where nothing recovers.
		opts.Provider = nil
	}
	t := &tracer{opts: opts}
	if opts.Provider != nil {
		t.tracer = tracerOf(opts.Provider)
	}
	return t
}

type tracer struct {
	opts   TracerOptions
	tracer trace.Tracer // of opts.Provider; nil for the global provider

	// shapes holds, per operation type, system, queue and consumer, the
	// span name and start options, built once: a span then starts without
	// building them again. Copied on write; at most maxShapes entries,
	// each of names of at most maxShapeKey bytes.
	shapes   atomic.Pointer[map[shapeKey]*spanShape]
	shapesMu sync.Mutex
}

// maxShapes bounds tracer.shapes: queues and consumers come from
// configuration, but a program could make them up as it runs.
const maxShapes = 1024

// maxShapeKey bounds the bytes of the names of a shape kept in
// tracer.shapes, so that maxShapes bounds its memory too: longer ones are
// built for their span alone.
const maxShapeKey = 256

type shapeKey struct {
	typ                     kanban.OperationType
	system, queue, consumer string
}

type spanShape struct {
	name string
	opts []trace.SpanStartOption // shared by every span of the shape: never appended to
}

// tracerOf returns tp's tracer for the spans of this package.
func tracerOf(tp trace.TracerProvider) trace.Tracer {
	return tp.Tracer(instrumentation, scopeOptions()...)
}

// scopeOptions are the options of the tracer of this package's scope,
// built once: the tracer of the global provider is asked for at each span.
var scopeOptions = sync.OnceValue(func() []trace.TracerOption {
	return []trace.TracerOption{
		trace.WithInstrumentationVersion(modversion.Running(instrumentation)),
		trace.WithSchemaURL(semconv.SchemaURL),
	}
})

func (t *tracer) Start(ctx context.Context, op kanban.Operation) (context.Context, func(error)) {
	tr := t.tracer
	if tr == nil {
		tr = tracerOf(otel.GetTracerProvider())
	}
	shape := t.shape(op)
	parent := ctx
	ctx, span := tr.Start(ctx, shape.name, shape.opts...)
	if !span.IsRecording() {
		// Not sampled (or a no-op provider's): what it would record is
		// dropped, and ending it records nothing either.
		return ctx, endNothing
	}
	// Of the message, not the queue: no sampler needs them, so they are
	// built only for a span that records.
	if op.MessageID != "" {
		span.SetAttributes(semconv.MessagingMessageID(utf8text.Cut(op.MessageID, MaxMessageIDLen)))
	}
	if op.BodySize > 0 {
		span.SetAttributes(semconv.MessagingMessageBodySize(op.BodySize))
	}
	if op.Type == kanban.OpProcess {
		span.SetAttributes(AttemptKey.Int(op.Attempt))
		// The conventions ask a process span to link to its message's
		// creation context, even when it is also its child: here the
		// send span the Propagator extracted, a remote parent. A remote
		// parent the consumer's ctx held already is not the message's,
		// even one a Propagator of this package extracted from another
		// message. The link is the span's parent, which the sampler was
		// given: added once the span records, it costs a dropped span
		// nothing.
		if sc, ok := creationOf(parent); ok {
			span.AddLink(trace.Link{SpanContext: sc})
		}
	}
	return ctx, func(err error) {
		if err == nil {
			span.End()
			return
		}
		// Reading err may panic (a typed nil whose Unwrap or Error reads
		// its receiver), which the queue recovers: the span is ended all
		// the same, and as failed, not as a success.
		typ := semconv.ErrorTypeOther.Value.AsString()
		desc := typ
		defer func() {
			span.SetAttributes(semconv.ErrorTypeKey.String(typ))
			span.SetStatus(codes.Error, desc)
			span.End()
		}()
		typ = errorType(err)
		desc = typ
		if t.opts.ErrorText {
			desc = utf8text.Cut(err.Error(), MaxErrorTextLen)
		}
	}
}

// endNothing is the end of a span that records nothing: it has nothing to
// do.
func endNothing(error) {}

// shape returns the name and start options of op's span.
func (t *tracer) shape(op kanban.Operation) *spanShape {
	k := shapeKey{typ: op.Type, system: op.System, queue: op.Queue, consumer: op.Consumer}
	m := t.shapes.Load()
	if m != nil {
		if s, ok := (*m)[k]; ok {
			return s
		}
	}
	s := newShape(op)
	if len(k.system)+len(k.queue)+len(k.consumer) > maxShapeKey || (m != nil && len(*m) >= maxShapes) {
		return s // not kept, and no lock taken to learn it
	}
	t.shapesMu.Lock()
	defer t.shapesMu.Unlock()
	old := t.shapes.Load()
	var prev map[shapeKey]*spanShape
	if old != nil {
		if len(*old) >= maxShapes {
			return s
		}
		prev = *old
	}
	next := make(map[shapeKey]*spanShape, 1+len(prev))
	for k, v := range prev {
		next[k] = v
	}
	next[k] = s
	t.shapes.Store(&next)
	return s
}

// newShape builds the name and start options of op's span: its kind and
// the attributes of its queue, which a sampler may read.
func newShape(op kanban.Operation) *spanShape {
	kind, opType := trace.SpanKindProducer, semconv.MessagingOperationTypeSend
	if op.Type == kanban.OpProcess {
		kind, opType = trace.SpanKindConsumer, semconv.MessagingOperationTypeProcess
	}
	name := op.Type.String()
	attrs := make([]attribute.KeyValue, 0, 5)
	attrs = append(attrs,
		semconv.MessagingSystemKey.String(utf8text.Clean(op.System)),
		opType,
		semconv.MessagingOperationName(name),
	)
	spanName := name
	// A queue or consumer without a name is left out, of the span's name
	// too, as the conventions ask of what is not known; an empty value
	// would read as a name.
	if op.Queue != "" {
		queue := utf8text.Clean(op.Queue)
		attrs = append(attrs, semconv.MessagingDestinationName(queue))
		spanName += " " + queue
	}
	if op.Consumer != "" {
		attrs = append(attrs, semconv.MessagingConsumerGroupName(utf8text.Clean(op.Consumer)))
	}
	return &spanShape{name: spanName, opts: []trace.SpanStartOption{trace.WithSpanKind(kind), trace.WithAttributes(attrs...)}}
}

// errorType names the kind of err, in few values, for error.type.
func errorType(err error) string {
	var p *kanban.PanicError
	switch {
	// A publish cut short by a panic (or runtime.Goexit, which a
	// handler's attempt reports as a *kanban.PanicError too).
	case errors.As(err, &p), errors.Is(err, kanban.ErrPublishInterrupted):
		return "panic"
	case kanban.IsPermanent(err):
		return "permanent"
	case errors.Is(err, kanban.ErrFull):
		return "full"
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	case errors.Is(err, context.Canceled):
		return "canceled"
	}
	return semconv.ErrorTypeOther.Value.AsString()
}
