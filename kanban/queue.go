package kanban

import (
	"context"
	"time"
)

// Queue is a pull-based work queue of payloads of type T. Producers
// Publish; consumers pull with Consume, handling no more than their WIP
// at once. Delivery is at least once: a handler may see a message again
// after a crash or a lost acknowledgement, so handlers should be
// idempotent on the message ID.
//
// Every backend passes the conformance suite in package
// kanban/queuetest.
type Queue[T any] interface {
	// Publish stores msg, waiting for room while the queue is full, until
	// ctx ends. A message whose ID was published within the queue's
	// deduplication window is dropped and Publish returns nil. What the
	// queue's Propagator injects for ctx (its trace context) is added to
	// the message's headers.
	Publish(ctx context.Context, msg Message[T]) error
	// TryPublish is Publish without the wait: it returns ErrFull when
	// the queue is full.
	TryPublish(ctx context.Context, msg Message[T]) error
	// Consume pulls messages and runs h on each, as ConsumeOptions say,
	// until ctx ends; then it drains (see Serve) and returns nil, or
	// ErrDrainTimeout. ctx is how a consumer is shut down: every goroutine
	// Consume started has ended when it returns. It returns an error at
	// once for invalid options, and after a drain when the backend can no
	// longer deliver (its connection closed for good); that error is
	// marked Permanent, as restarting Consume on the same queue cannot mend
	// it.
	Consume(ctx context.Context, h Handler[T], opts ConsumeOptions) error
	// DeadLetters returns the dead letters kept, oldest first.
	DeadLetters(ctx context.Context) ([]DeadLetter, error)
	// Stats returns the counts of this queue value (this process).
	Stats() QueueStats
}

// Source is the seam between the consumer runtime (Serve) and a backend:
// where messages are pulled from. Backends implement it; users do not
// need it. A Source may implement ReleaseOrderer too, to say in which
// order its backend delivers released messages again.
type Source[T any] interface {
	// Pull waits until at least one message is available or ctx ends, and
	// returns at most max leases. It may return leases together with an
	// error (for instance ctx's, when a fetch in progress ended); the
	// runtime settles every lease it gets. The runtime calls Pull again
	// after an error, unless the error is marked with Permanent: that
	// says no later Pull can succeed (the backend's connection is closed
	// for good), and Serve drains and returns the error.
	//
	// The runtime pulls once a quarter of the WIP is free, for all the
	// free slots; but after a Pull that returned fewer than max leases,
	// as soon as one slot is free: a source may go on delivering what it
	// pulled for (a pull request still open), and that is taken at once.
	Pull(ctx context.Context, max int) ([]Lease[T], error)
	// HeartbeatInterval is how often the runtime extends the leases it
	// holds; 0 means leases never expire, and none is extended. A lease
	// is extended an interval after its pull and an interval after each
	// extension, or up to a quarter interval sooner (see Serve): return
	// well under the time a lease stays held without an extension, so that
	// one extension lost on its way still leaves time for the next (natsjs
	// returns a third of its AckWait, or of the shortest entry of a
	// durable's BackOff).
	HeartbeatInterval() time.Duration
}

// ReleaseOrder is the order in which a backend delivers again the
// messages released to it (see Lease.Release), among themselves. Serve
// hands back the messages it pulled and did not start, when it stops, in
// the order that has them delivered again in the order they were pulled,
// so that with PerKey the next consumer handles each key's messages in
// their order.
type ReleaseOrder uint8

const (
	// ReleaseToFront: a released message is put at the front of the
	// queue, ahead of the messages released before it, so the last
	// released comes first. Serve releases the last pulled first. The
	// in-memory queue orders releases so, and so does a Source that does
	// not say (see ReleaseOrderer).
	ReleaseToFront ReleaseOrder = iota
	// ReleaseInTurn: released messages are delivered again in the order
	// they were released, the first released first. Serve releases the
	// first pulled first, and a key's messages waiting behind a running
	// one (PerKey) once that one is settled (see Serve). JetStream orders
	// negative acknowledgements so (natsjs).
	ReleaseInTurn
)

// ReleaseOrderer is an optional interface of a Source: ReleaseOrder says
// how its backend orders released messages. Serve asks once, as it
// starts. A Source that does not implement it is taken to release to the
// front (ReleaseToFront).
type ReleaseOrderer interface {
	ReleaseOrder() ReleaseOrder
}

// BodySizer is an optional interface of a Lease: BodySize returns the
// size in bytes of the message's body as it was delivered, its payload as
// the queue's Codec encoded it (not its headers). Serve tells the Tracer
// of each attempt at the message (Operation.BodySize); a Lease that does
// not implement it, or returns 0, tells none.
type BodySizer interface {
	BodySize() int
}

// Lease is one pulled message, held until it is settled by exactly one of
// Ack, Retry, Release or DeadLetter. Serve does not touch a lease once it
// has called one of those, so a backend may reuse the value.
type Lease[T any] interface {
	// ID returns the message's ID without decoding it.
	ID() string
	// Key returns the message's Key without decoding it.
	Key() string
	// Attempt counts deliveries of the message, starting at 1.
	Attempt() int
	// Message decodes the message; an error sends it to the dead letters,
	// and so does a panic or a runtime.Goexit.
	Message() (Message[T], error)
	// Ack settles the message as done.
	Ack(ctx context.Context) error
	// Retry hands the message back to be delivered again after delay.
	Retry(ctx context.Context, delay time.Duration) error
	// Release hands back a message that was pulled and not handled, to be
	// delivered again at once.
	Release(ctx context.Context) error
	// DeadLetter stores the message with reason and attempts among the
	// dead letters, then removes it from the queue. When it fails, the
	// message stays in the queue, to be delivered again: Serve
	// dead-letters its next delivery to the same consumer (a later
	// Attempt of the same ID) with this reason, without running the
	// handler.
	DeadLetter(ctx context.Context, reason string, attempts int) error
	// Extend keeps the lease held while a handler is still working.
	// Serve calls it from a goroutine of its own, but never once a
	// settlement has begun: one cancels the ctx of an Extend under way,
	// the extension being moot, and waits for it to return.
	Extend(ctx context.Context) error
}

// Runtime is what a backend lends the consumer runtime.
type Runtime struct {
	// Propagator extracts what the publisher injected (its trace context)
	// from message headers into the handler's ctx. nil means none.
	Propagator Propagator
	// Counters receives the handled, retried, redelivered, dead-lettered
	// and in-flight counts. nil means not counted.
	Counters *Counters
	// Tracer, if not nil, records a span around each handler attempt.
	Tracer Tracer
	// System, Queue and Consumer describe the queue to the Tracer (see
	// Operation).
	System, Queue, Consumer string
}
