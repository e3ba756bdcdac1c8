package kanban

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/taipattern/taikit/internal/typednil"
)

// MaxWIP bounds ConsumeOptions.WIP; larger values are rejected as a
// mistake rather than allowed to exhaust memory.
const MaxWIP = 1 << 16

// ConsumeOptions configure a consumer. The zero value is usable: one
// message at a time, five attempts, exponential back-off, 30s drain.
type ConsumeOptions struct {
	// WIP caps the messages pulled and not yet settled by this consumer,
	// hence the handlers running at once. 0 means 1. On JetStream the
	// durable consumer's MaxAckPending is set to it, so the cap holds
	// across every process sharing the durable, and a message waiting
	// out the back-off of a failed attempt holds its slot until JetStream
	// delivers it again (see kanban/natsjs). A consumer of a Memory
	// queue without PerKey caps its handlers alone: it takes a backlog a
	// few messages at a time, up to four per handler, and another
	// consumer cannot have those it holds (see Memory.Consume).
	WIP int
	// PerKey handles messages with the same non-empty Key one at a time,
	// in the order they were pulled. A failed message is retried in place
	// (its key waits for it) so that order survives retries; each attempt
	// reads the message afresh from the backend, decoding its payload
	// again, as a redelivery does. The order holds within one consumer
	// (one Consume call): two consumers of one queue (two Consume calls
	// on a Memory queue, or processes sharing a JetStream durable) may
	// each be handling a message of the same key at once.
	//
	// The messages of a key pulled behind one being retried wait in the
	// consumer, each holding a WIP slot: while they fill the WIP, the
	// consumer pulls nothing, and the messages of every other key wait
	// too, until the retries end (up to MaxAttempts back-offs). With a
	// WIP of 1, every failure holds the consumer for its back-off.
	//
	// A drain that starts while a message waits to be retried in place,
	// or whose handler then fails, hands it back to be delivered again
	// once its back-off, counted from the failure, has passed (what is
	// left of it, not the whole again); the messages of its key pulled
	// behind it are handed back at once (to JetStream, once it has been),
	// so the next consumer handles them before it: order holds across
	// retries, not across a restart in the middle of them.
	//
	// A Memory queue counts the attempts made in place among its
	// deliveries; JetStream counts only its own, so there a message
	// interrupted so can be handled more than MaxAttempts times in all
	// (at most MaxAttempts per delivery).
	PerKey bool
	// MaxAttempts is the number of deliveries before a failing message is
	// dead-lettered. 0 means 5.
	//
	// A Memory queue counts the deliveries that were handled; JetStream
	// counts every one, so there a message handed back unstarted (pulled
	// as its consumer stopped, or waiting behind its key at a drain) uses
	// up an attempt (two at most for one stop, however many consumers
	// stop together: see kanban/natsjs): with a small MaxAttempts and a
	// consumer that stops often with a backlog, a message can be
	// dead-lettered having been handled fewer times.
	MaxAttempts int
	// Backoff spaces attempts. nil means Exponential{}. A Delay that
	// panics is logged at Error level with its stack ("kanban: Backoff
	// panicked"), as a handler's panic is, and the message is retried
	// after the delay Exponential{} would give: a mistake in the back-off
	// neither stops the consumer nor uses up the message's attempts.
	Backoff Backoff
	// DrainTimeout bounds the wait for in-flight handlers once ctx ends;
	// when it passes their context is cancelled. 0 means 30s.
	DrainTimeout time.Duration
	// Logger receives errors the consumer recovers from (a failed ack, a
	// pull error). nil discards them.
	Logger *slog.Logger
	// Observer, if not nil, is told the duration and error of every
	// handler attempt (a histogram of handler durations, for one:
	// kaizenprom.KanbanCollector.HandlerObserver). nil reads no clock.
	// An ObserveHandler that panics is logged at Error level with its
	// stack ("kanban: Observer panicked") and changes nothing else: the
	// message is settled as its handler's result says. So is a panic in
	// the queue's Tracer ("kanban: Tracer panicked"). One that calls
	// runtime.Goexit is logged as such ("kanban: Observer called
	// runtime.Goexit"), not as the handler's, and the message is settled
	// as its handler's result says, or, when the goroutine ended before
	// the handler ran (in the Tracer's Start, or the queue's Propagator),
	// retried after the delay Exponential{} would give.
	Observer HandlerObserver
}

type validator interface{ Validate() error }

// Validate reports the first field out of range, naming it.
func (o ConsumeOptions) Validate() error {
	switch {
	case o.WIP < 0 || o.WIP > MaxWIP:
		return optionError("kanban", "WIP", o.WIP, "must be between 0 and 65536")
	case o.MaxAttempts < 0:
		return optionError("kanban", "MaxAttempts", o.MaxAttempts, "must not be negative")
	case o.DrainTimeout < 0:
		return optionError("kanban", "DrainTimeout", o.DrainTimeout, "must not be negative")
	}
	// A nil function or pointer in an interface is not nil: it would
	// panic on every attempt.
	if typednil.Holds(o.Backoff) {
		return fmt.Errorf("kanban: invalid Backoff: a nil %T", o.Backoff)
	}
	if typednil.Holds(o.Observer) {
		return fmt.Errorf("kanban: invalid Observer: a nil %T", o.Observer)
	}
	if v, ok := o.Backoff.(validator); ok {
		if err := v.Validate(); err != nil {
			return err
		}
	}
	return nil
}

// WithDefaults returns o with every zero field set to its default.
func (o ConsumeOptions) WithDefaults() ConsumeOptions {
	if o.WIP == 0 {
		o.WIP = 1
	}
	if o.MaxAttempts == 0 {
		o.MaxAttempts = 5
	}
	if o.Backoff == nil {
		o.Backoff = Exponential{}
	}
	if o.DrainTimeout == 0 {
		o.DrainTimeout = 30 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o
}
