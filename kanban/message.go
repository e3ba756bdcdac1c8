package kanban

import (
	"context"
	"crypto/rand"
	"encoding/hex"
)

// Message is one unit of work on a queue.
type Message[T any] struct {
	// ID identifies the message. Publishing the same ID twice within the
	// queue's deduplication window stores it once. It must not be empty.
	ID string
	// Key says what the message is about (a customer, a region). With
	// ConsumeOptions.PerKey, messages of one key are handled one at a time,
	// in order. Empty means no key: such messages are never held back.
	Key string
	// Payload is the caller's data. Backends that cross a wire encode it
	// with the queue's Codec.
	Payload T
	// Headers travel with the message; names are kept exactly as written.
	// Publish adds what the queue's Propagator injects (the trace context
	// of its ctx) to a copy, never to the caller's map. May be nil.
	Headers Header
}

// NewMessage returns a Message with key and payload and a new random ID:
// 128 bits as 32 lower-case hex digits, the form of tai.NewID. Use it for
// work that has no identity of its own. When the same work may be
// published twice (a retried request, a replayed event), give the message
// that work's own ID instead — a signal's ID, an idempotency key — so the
// queue's deduplication drops the repeat: two NewMessage calls never
// share an ID. Publishing one Message value twice is still deduplicated.
func NewMessage[T any](key string, payload T) Message[T] {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never returns an error
	return Message[T]{ID: hex.EncodeToString(b[:]), Key: key, Payload: payload}
}

// Delivery is a message handed to a Handler.
type Delivery[T any] struct {
	Message[T]
	// Attempt counts deliveries of this message, starting at 1.
	Attempt int
}

// Handler does the work of one message. A nil error acknowledges the
// message; an error retries it with back-off until MaxAttempts, after
// which it goes to the dead letters with the error text as reason. An
// error made with Permanent dead-letters it at once. A panic is recovered
// and counts as the error *PanicError; so does a runtime.Goexit (t.FailNow
// in a test's handler).
//
// d.Headers is the handler's own copy: what it writes there is not seen
// by a later attempt, nor kept in a dead letter.
//
// ctx carries the values of Consume's ctx and the trace context of the
// publisher. It is cancelled when the consumer's drain deadline passes,
// and once Consume has returned; not when Consume's ctx ends (a running
// handler finishes during the drain), nor when the handler returns: work
// it leaves running on ctx goes on until then. Consume sets no deadline
// on an attempt: a handler bounds its own (context.WithTimeout on ctx),
// and the error it returns when that passes fails the attempt as any
// error does: retried after the back-off, up to MaxAttempts. Only the
// drain deadline's cancellation hands the message back instead (see
// ErrDrainTimeout).
type Handler[T any] func(ctx context.Context, d Delivery[T]) error

// Header holds message headers, keeping names exactly as written (no
// canonical casing), which is how NATS headers are matched. Its Get, Set
// and Keys methods give it the shape of a text-map carrier, as
// OpenTelemetry propagators take.
type Header map[string]string

// Get returns the value of the header named key, or "".
func (h Header) Get(key string) string { return h[key] }

// Set stores value under key. It does nothing on a nil Header.
func (h Header) Set(key, value string) {
	if h != nil {
		h[key] = value
	}
}

// Keys lists the header names.
func (h Header) Keys() []string {
	keys := make([]string, 0, len(h))
	for k := range h {
		keys = append(keys, k)
	}
	return keys
}

// Clone returns a copy of h, nil for nil.
func (h Header) Clone() Header {
	if h == nil {
		return nil
	}
	c := make(Header, len(h))
	for k, v := range h {
		c[k] = v
	}
	return c
}
