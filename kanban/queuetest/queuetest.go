// Package queuetest is the conformance suite every kanban.Queue backend
// passes, in the manner of testing/slogtest:
//
//	func TestConformance(t *testing.T) {
//		queuetest.Run(t, func(t *testing.T, opts queuetest.Options) kanban.Queue[queuetest.Payload] {
//			q, err := mybackend.New[queuetest.Payload](..., opts.Capacity, opts.Codec, opts.Propagator)
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
// the Propagator injects at Publish reaching the handler's ctx.
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

// propagator carries the string under traceKey in traceHeader.
type propagator struct{}

func (propagator) Inject(ctx context.Context, h kanban.Header) {
	if v, ok := ctx.Value(traceKey{}).(string); ok {
		h.Set(traceHeader, v)
	}
}

func (propagator) Extract(ctx context.Context, h kanban.Header) context.Context {
	if v := h.Get(traceHeader); v != "" {
		return context.WithValue(ctx, traceKey{}, v)
	}
	return ctx
}
