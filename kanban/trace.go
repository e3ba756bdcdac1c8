package kanban

import (
	"context"
	"errors"
	"time"
)

// A Tracer records a span around each publish and each handler attempt of
// a queue, as OpenTelemetry's messaging conventions describe them; the
// queue calls it and knows nothing of the tracing library. Package
// kanban/kanbanotel implements it with OpenTelemetry. A nil Tracer records
// nothing and costs nothing.
//
// Start begins the span of op as a child of ctx and returns the ctx that
// carries it, and the function that ends it with the operation's error
// (nil for success). The queue calls the function exactly once. For
// OpSend the returned ctx is what the queue's Propagator injects into the
// message, so the consumer's spans follow from the producer's; for
// OpProcess it is the handler's ctx.
type Tracer interface {
	Start(ctx context.Context, op Operation) (context.Context, func(err error))
}

// OperationType is what a traced operation does.
type OperationType uint8

// The operations a queue traces, named as OpenTelemetry's
// messaging.operation.type values.
const (
	// OpSend is a Publish or TryPublish (and the re-publish of a
	// redriven dead letter): a span of kind producer.
	OpSend OperationType = iota + 1
	// OpProcess is one handler attempt: a span of kind consumer.
	OpProcess
)

// String returns "send" or "process".
func (t OperationType) String() string {
	switch t {
	case OpSend:
		return "send"
	case OpProcess:
		return "process"
	}
	return "unknown"
}

// Operation describes a traced operation to a Tracer.
type Operation struct {
	Type OperationType
	// System is the messaging system: "kanban" for Memory, "nats" for
	// natsjs (messaging.system).
	System string
	// Queue is the queue's name: MemoryOptions.Name, the JetStream stream
	// (messaging.destination.name).
	Queue string
	// Consumer is the consumer group for OpProcess: the JetStream durable;
	// "" for Memory and for OpSend (messaging.consumer.group.name).
	Consumer string
	// MessageID is the message's ID (messaging.message.id).
	MessageID string
	// Attempt is the delivery's attempt, from 1, for OpProcess; 0 for
	// OpSend.
	Attempt int
	// BodySize is the size in bytes of the message's body, its payload as
	// the queue's Codec encodes it (not its headers), as the backend
	// publishes it or delivers it (messaging.message.body.size). Zero
	// when the backend does not know it: Memory without a Codec holds
	// values, not bytes, and tells none; Memory with a Codec, and natsjs,
	// tell it for OpSend and OpProcess. A payload that encodes to no
	// bytes has zero too.
	BodySize int
}

// HandlerObserver is told how long each handler attempt took and how it
// ended (ConsumeOptions.Observer): a metrics histogram, for one. It is
// called on the handler's goroutine once the handler returns, so it must
// be quick and safe for concurrent use.
type HandlerObserver interface {
	ObserveHandler(d time.Duration, err error)
}

// HandlerObserverFunc adapts a function to a HandlerObserver.
type HandlerObserverFunc func(d time.Duration, err error)

// ObserveHandler calls f(d, err).
func (f HandlerObserverFunc) ObserveHandler(d time.Duration, err error) { f(d, err) }

// StartSend starts the span of a publish for a backend: it returns ctx
// and a no-op when t is nil.
func StartSend(ctx context.Context, t Tracer, system, queue, id string) (context.Context, func(error)) {
	return startSend(ctx, t, Operation{System: system, Queue: queue, MessageID: id})
}

// startSend starts the span of op, a publish (its Type is OpSend
// whatever it says): it returns ctx and a no-op when t is nil.
func startSend(ctx context.Context, t Tracer, op Operation) (context.Context, func(error)) {
	if t == nil {
		return ctx, endNothing
	}
	op.Type = OpSend
	return t.Start(ctx, op)
}

func endNothing(error) {}

// SendTraced runs publish, a backend's publish of message id to queue,
// inside the span StartSend starts, and ends the span however publish
// ends: with its error, or with ErrPublishInterrupted when it panics (a
// Codec's Marshal, say) or calls runtime.Goexit, which then goes on. With
// a nil t it calls publish alone.
func SendTraced(ctx context.Context, t Tracer, system, queue, id string, publish func(context.Context) error) error {
	return SendTracedOp(ctx, t, Operation{System: system, Queue: queue, MessageID: id}, publish)
}

// SendTracedOp is SendTraced for a backend that tells the Tracer more of
// the message than SendTraced's arguments do: its BodySize, say. op's
// Type is OpSend whatever it says.
func SendTracedOp(ctx context.Context, t Tracer, op Operation, publish func(context.Context) error) error {
	if t == nil {
		return publish(ctx)
	}
	ctx, end := startSend(ctx, t, op)
	returned := false
	defer func() {
		if !returned {
			end(ErrPublishInterrupted)
		}
	}()
	err := publish(ctx)
	returned = true
	end(err)
	return err
}

// ErrPublishInterrupted ends the span of a publish that panicked or
// called runtime.Goexit (SendTraced).
var ErrPublishInterrupted = errors.New("kanban: publish interrupted by a panic or runtime.Goexit")
