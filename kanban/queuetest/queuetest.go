// Package queuetest is the conformance suite every kanban.Queue backend
// passes, in the manner of testing/slogtest:
//
//	func TestConformance(t *testing.T) {
//		queuetest.Run(t, func(t *testing.T, opts queuetest.Options) kanban.Queue[queuetest.Payload] {
//			q, err := mybackend.New[queuetest.Payload](..., opts.Capacity, opts.Codec, opts.Propagator, opts.Tracer)
//			require.NoError(t, err)
//			return q
//		})
//	}
//
// Each subtest asks for a fresh, empty queue. The suite proves: a typed
// round trip with headers kept as written; WIP never exceeded (and
// reached); per-key order, also across a retry; retries with the
// requested back-off; dead letters with payload, reason and attempts,
// at once for Permanent errors; deduplication by ID; backpressure
// (TryPublish fails with ErrFull, Publish waits); a drain that loses
// nothing; a drain deadline that releases the message; a payload that
// cannot be decoded dead-lettered without stopping the consumer; and what
// the Propagator injects at Publish reaching the handler's ctx; the
// Tracer's spans around publishes and handler attempts, the first the
// parent of what is propagated; and the queue's dead letters listed a page
// at a time, filtered, redriven (exactly once, nothing lost when the queue
// is full; one that still cannot be decoded dead-lettered again at its
// first delivery) and deleted — a filter naming by its Seq a dead letter
// its other fields do not match refused with a *kanban.DeadLetterMismatchError
// in the same words from every backend —, and its Backlog — so every backend must implement
// kanban.DeadLetterStore and kanban.BacklogReader too.
//
// It also holds the cases of Watermill's pub/sub test suite and handler
// middlewares for which a queue has the same notion (see peer.go): a
// failed message delivered again while the others go on; a consumer that
// fails everything, then stops, leaving every message to the next, its
// attempts counted on; consumers stopped in turn part way through the
// backlog, and stopped together, losing nothing and handling nothing
// twice, each key's messages in their order across the stops; a handler
// that panics retried, then dead-lettered with the panic as reason; a
// handler's own deadline failing its attempt as any error does; and the
// handler's ctx carrying the values of Consume's, outliving Consume's
// ctx while the drain waits, and cancelled once Consume returns.
package queuetest

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/taipattern/taikit/kanban"
)

// Payload is the message type of the suite's queues.
type Payload struct {
	N    int               `json:"n"`
	Text string            `json:"text"`
	Tags []string          `json:"tags,omitempty"`
	Meta map[string]string `json:"meta,omitempty"`
	At   time.Time         `json:"at"`
}

// Poison is a Payload.Text that the suite's Codec encodes but refuses to
// decode, standing for a message a consumer cannot read.
const Poison = "poison"

// Options are what a subtest needs of a new queue. The factory must
// honour every field.
type Options struct {
	// Capacity is the most messages the queue may hold (0: the backend's
	// default).
	Capacity int
	// Codec must encode and decode payloads (for backends without a wire,
	// too, so that a bad payload can be tested).
	Codec kanban.Codec
	// Propagator is the queue's (the suite's own, which carries a value of
	// the publisher's ctx in a header).
	Propagator kanban.Propagator
	// Tracer is the queue's (a *Tracer, which records what it is told).
	Tracer kanban.Tracer
}

// NewQueue returns a new, empty queue made as opts say. It arranges its
// own cleanup with t.Cleanup.
type NewQueue func(t *testing.T, opts Options) kanban.Queue[Payload]

// Codec is JSON that fails to decode a payload whose Text is Poison.
type Codec struct{}

// Marshal encodes v as JSON.
func (Codec) Marshal(v any) ([]byte, error) { return kanban.JSON{}.Marshal(v) }

// Unmarshal decodes JSON, failing for a poison payload.
func (Codec) Unmarshal(data []byte, v any) error {
	if bytes.Contains(data, []byte(`"text":"`+Poison+`"`)) {
		return errPoison
	}
	return kanban.JSON{}.Unmarshal(data, v)
}

type poisonError struct{}

func (poisonError) Error() string { return "queuetest: poison payload" }

var errPoison error = poisonError{}

// traceHeader is the header the suite's Propagator writes; lower case, as
// W3C traceparent is, to prove names are kept as written.
const traceHeader = "queuetest-trace"

// traceKey is the ctx key of the value the suite's Propagator carries.
type traceKey struct{}

// spanHeader and spanKey carry the name of a Tracer's span.
const spanHeader = "queuetest-span"

type spanKey struct{}

// propagator carries the string under traceKey in traceHeader, and the
// one under spanKey in spanHeader.
type propagator struct{}

func (propagator) Inject(ctx context.Context, h kanban.Header) {
	if v, ok := ctx.Value(traceKey{}).(string); ok {
		h.Set(traceHeader, v)
	}
	if v, ok := ctx.Value(spanKey{}).(string); ok {
		h.Set(spanHeader, v)
	}
}

func (propagator) Extract(ctx context.Context, h kanban.Header) context.Context {
	if v := h.Get(traceHeader); v != "" {
		ctx = context.WithValue(ctx, traceKey{}, v)
	}
	if v := h.Get(spanHeader); v != "" {
		ctx = context.WithValue(ctx, spanKey{}, v)
	}
	return ctx
}
