package natsjs

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/taipattern/taikit/kanban"
)

// ErrClosed is wrapped by the failure of a PublishAsync message that was
// still waiting to be re-published when Close gave up on it.
var ErrClosed = errors.New("natsjs: queue closed")

const (
	maxAsyncAttempts = 1000
	// maxRetryWait caps the doubling wait between re-publishes (unless
	// AsyncRetryWait is larger).
	maxRetryWait = 2 * time.Second
	// keptAsyncErrors is how many final failures Flush returns in full.
	keptAsyncErrors = 64
)

func (c Config) retryBackoff() kanban.Exponential {
	return kanban.Exponential{Initial: c.AsyncRetryWait, Max: max(maxRetryWait, c.AsyncRetryWait)}
}

// retrySpan bounds how long after its first send a PublishAsync message
// may be sent again: every attempt waiting out PublishTimeout, every wait
// at its most jittered. c has its defaults filled in.
func (c Config) retrySpan() time.Duration {
	worst := c.retryBackoff()
	worst.Rand = func() float64 { return 1 }
	span := time.Duration(c.AsyncAttempts-1) * c.PublishTimeout
	for n := 1; n < c.AsyncAttempts; n++ {
		span += worst.Delay(n)
	}
	return span
}

// asyncState follows every PublishAsync message from acceptance until it
// is settled: acknowledged, or failed for good. Each message holds one of
// the MaxPublishPending slots while it is sent, awaits its
// acknowledgement or waits for a re-publish.
type asyncState struct {
	mu      sync.Mutex
	held    int                       // messages accepted and not settled
	room    chan struct{}             // closed when held drops below the limit
	idle    chan struct{}             // closed when held drops to zero
	retries map[*nats.Msg]*retryState // messages that failed at least once
	closed  bool                      // no more re-publishing
	timers  sync.WaitGroup            // retry timers scheduled or running
	errs    []error                   // final failures since the last Flush
	lost    int                       // final failures beyond the ones kept
}

type retryState struct {
	attempts int         // sends that failed
	last     error       // the latest failure
	stop     func() bool // cancels the scheduled re-publish; nil when none is
}

// settle releases a message's slot. a.mu is held.
func (a *asyncState) settle(limit int) {
	a.held--
	if a.room != nil && a.held < limit {
		close(a.room)
		a.room = nil
	}
	if a.idle != nil && a.held == 0 {
		close(a.idle)
		a.idle = nil
	}
}

// PublishAsync sends msg without waiting for its acknowledgement. It waits
// only while MaxPublishPending messages are unsettled (until ctx ends). A
// failed send is repeated, up to AsyncAttempts times in all, with waits
// starting at AsyncRetryWait; a full stream is retried the same way, as
// consumers make room; a closed connection ends the attempts at once.
// Only the final failure of a message — reported as kanban.ErrFull for a
// full stream — goes to OnPublishError and is returned by the next Flush.
// An error returned by PublishAsync itself means msg was not sent.
func (q *Queue[T]) PublishAsync(ctx context.Context, msg kanban.Message[T]) error {
	nm, err := q.encode(ctx, msg)
	if err != nil {
		return err
	}
	a, limit := &q.async, q.cfg.MaxPublishPending
	a.mu.Lock()
	for a.held >= limit {
		if a.room == nil {
			a.room = make(chan struct{})
		}
		room := a.room
		a.mu.Unlock()
		select {
		case <-room:
		case <-ctx.Done():
			return ctx.Err()
		}
		a.mu.Lock()
	}
	a.held++
	a.mu.Unlock()
	// The slot keeps the client's own pending count below its limit, so
	// this send never stalls.
	if _, err := q.js.PublishMsgAsync(nm); err != nil {
		a.mu.Lock()
		a.settle(limit)
		a.mu.Unlock()
		return fmt.Errorf("natsjs: publishing message %s: %w", msg.ID, err)
	}
	return nil
}

func (q *Queue[T]) onAsyncAck(_ jetstream.JetStream, m *nats.Msg, ack *jetstream.PubAck) {
	q.countAck(ack)
	a := &q.async
	a.mu.Lock()
	if len(a.retries) > 0 {
		delete(a.retries, m)
	}
	a.settle(q.cfg.MaxPublishPending)
	a.mu.Unlock()
}

// onAsyncErr runs on a client goroutine, sometimes under the client's
// publisher lock: it must not publish, so a re-publish runs on a timer.
func (q *Queue[T]) onAsyncErr(_ jetstream.JetStream, m *nats.Msg, err error) {
	q.failed(m, err)
}

// failed handles a failed send of m: it schedules the next attempt, or
// settles m as failed when the attempts are spent, the queue is closed or
// the connection is.
func (q *Queue[T]) failed(m *nats.Msg, err error) {
	a := &q.async
	a.mu.Lock()
	r := a.retries[m]
	if r == nil {
		r = &retryState{}
		if a.retries == nil {
			a.retries = make(map[*nats.Msg]*retryState)
		}
		a.retries[m] = r
	}
	r.attempts++
	r.last = err
	if a.closed || r.attempts >= q.cfg.AsyncAttempts || hopeless(err) {
		delete(a.retries, m)
		a.mu.Unlock()
		q.giveUp(m, r, nil)
		return
	}
	next, delay := r.attempts+1, q.backoff.Delay(r.attempts)
	a.timers.Add(1)
	r.stop = q.cfg.Clock.AfterFunc(delay, func() { q.republish(m) })
	a.mu.Unlock()
	q.cfg.Logger.Debug("natsjs: re-publishing", "id", msgID(m), "attempt", next, "after", delay, "err", err)
}

// hopeless reports failures no repeat can fix.
func hopeless(err error) bool {
	return errors.Is(err, nats.ErrConnectionClosed) || errors.Is(err, jetstream.ErrJetStreamPublisherClosed)
}

// republish sends m again once its wait is over.
func (q *Queue[T]) republish(m *nats.Msg) {
	a := &q.async
	defer a.timers.Done()
	a.mu.Lock()
	r := a.retries[m]
	if r == nil || r.stop == nil { // Close stopped it
		a.mu.Unlock()
		return
	}
	r.stop = nil
	if a.closed {
		delete(a.retries, m)
		a.mu.Unlock()
		q.giveUp(m, r, ErrClosed)
		return
	}
	a.mu.Unlock()
	if _, err := q.js.PublishMsgAsync(m); err != nil {
		q.failed(m, err)
	}
}

// giveUp settles m as failed after r's attempts, reporting the failure to
// OnPublishError before Flush can see the slot free. cause, when not nil,
// is why no further attempt is made. a.mu is not held.
func (q *Queue[T]) giveUp(m *nats.Msg, r *retryState, cause error) {
	id, last := msgID(m), r.last
	if isFull(last) {
		last = fmt.Errorf("%w: %v", kanban.ErrFull, last)
	}
	var err error
	switch {
	case cause != nil:
		err = fmt.Errorf("natsjs: publishing message %s: %w after %d attempts: %w", id, cause, r.attempts, last)
	case r.attempts > 1:
		err = fmt.Errorf("natsjs: publishing message %s: %d attempts failed: %w", id, r.attempts, last)
	default:
		err = fmt.Errorf("natsjs: publishing message %s: %w", id, last)
	}
	if q.cfg.OnPublishError != nil {
		q.cfg.OnPublishError(id, err)
	}
	a := &q.async
	a.mu.Lock()
	if len(a.errs) < keptAsyncErrors {
		a.errs = append(a.errs, err)
	} else {
		a.lost++
	}
	a.settle(q.cfg.MaxPublishPending)
	a.mu.Unlock()
}

func msgID(m *nats.Msg) string {
	if m == nil || m.Header == nil {
		return ""
	}
	return m.Header.Get(HeaderID)
}

// Flush waits until no PublishAsync message is unsettled — each is
// acknowledged or has failed for good, including those waiting to be
// re-published — or ctx ends. It returns the final failures since the
// last Flush joined (the first 64 of them, and a count of the rest), nil
// when none failed, or ctx's error, keeping the failures for the next
// Flush.
func (q *Queue[T]) Flush(ctx context.Context) error {
	a := &q.async
	a.mu.Lock()
	for a.held > 0 {
		if a.idle == nil {
			a.idle = make(chan struct{})
		}
		idle := a.idle
		a.mu.Unlock()
		select {
		case <-idle:
		case <-ctx.Done():
			return ctx.Err()
		}
		a.mu.Lock()
	}
	a.mu.Unlock()
	return q.takeErrors()
}

func (q *Queue[T]) takeErrors() error {
	a := &q.async
	a.mu.Lock()
	errs, lost := a.errs, a.lost
	a.errs, a.lost = nil, 0
	a.mu.Unlock()
	if lost > 0 {
		errs = append(errs, fmt.Errorf("natsjs: and %d more failed publishes", lost))
	}
	return errors.Join(errs...)
}

// Close waits like Flush, then stops re-publishing: when ctx ended first,
// every message still waiting for a re-publish fails at once with
// ErrClosed, and a later failure of a message still awaiting its
// acknowledgement is final. No retry timer runs once Close returns. It
// returns Flush's result, joined with the failures Close caused. The
// connection stays open; PublishAsync still sends, without re-publishing.
func (q *Queue[T]) Close(ctx context.Context) error {
	err := q.Flush(ctx)
	a := &q.async
	a.mu.Lock()
	a.closed = true
	var stopped []*nats.Msg
	for m, r := range a.retries {
		if r.stop != nil && r.stop() {
			stopped = append(stopped, m)
		}
	}
	rs := make([]*retryState, len(stopped))
	for i, m := range stopped {
		rs[i] = a.retries[m]
		rs[i].stop = nil
		delete(a.retries, m)
	}
	a.mu.Unlock()
	for i, m := range stopped {
		q.giveUp(m, rs[i], ErrClosed)
		a.timers.Done()
	}
	a.timers.Wait() // re-publishes already running
	if err != nil {
		return errors.Join(err, q.takeErrors())
	}
	return nil
}
