package natsjs

import (
	"context"
	"errors"
	"fmt"
	"math"
	"runtime/debug"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/taipattern/taikit/kanban"
)

// ErrClosed is wrapped by the failure of a PublishAsync message that was
// still waiting to be re-published when Shutdown gave up on it, and
// returned by PublishAsync after Shutdown.
var ErrClosed = errors.New("natsjs: queue shut down")

const (
	maxAsyncAttempts = 1000
	// maxRetryWait caps the doubling wait between re-publishes (unless
	// AsyncRetryWait is larger).
	maxRetryWait = 2 * time.Second
	// keptAsyncErrors is how many final failures Flush returns in full.
	keptAsyncErrors = 64
)

func (c Options) retryBackoff() kanban.Exponential {
	return kanban.Exponential{Initial: c.AsyncRetryWait, Max: max(maxRetryWait, c.AsyncRetryWait)}
}

// retrySpan bounds how long after its first send a PublishAsync message
// may be sent again: every attempt waiting out PublishTimeout, every wait
// at its most jittered. It saturates at the largest Duration instead of
// wrapping round to a negative one. c has its defaults filled in.
func (c Options) retrySpan() time.Duration {
	worst := c.retryBackoff()
	worst.Rand = func() float64 { return 1 }
	var span time.Duration
	add := func(d time.Duration) {
		if d > math.MaxInt64-span {
			span = math.MaxInt64
		} else {
			span += d
		}
	}
	for n := 1; n < c.AsyncAttempts; n++ {
		add(c.PublishTimeout)
		add(worst.Delay(n))
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
	closed  bool                      // shut down: no more re-publishing
	timers  int                       // re-publish timers scheduled or running
	stopped chan struct{}             // closed when timers drops to zero
	errs    []error                   // final failures since the last Flush
	lost    int                       // final failures beyond the ones kept
}

type retryState struct {
	attempts int         // sends that failed
	last     error       // the latest failure
	unsure   bool        // an attempt failed after the stream may have stored it
	stop     func() bool // cancels the scheduled re-publish; nil when none is
}

// settle releases a message's slot. a.mu is held.
func (a *asyncState) settle(limit int) {
	a.held--
	if a.held < limit {
		wake(&a.room)
	}
	if a.held == 0 {
		wake(&a.idle)
	}
}

// timerDone counts out a re-publish timer that was stopped or has run.
// a.mu is held.
func (a *asyncState) timerDone() {
	a.timers--
	if a.timers == 0 {
		wake(&a.stopped)
	}
}

// await waits while blocked() holds, or until ctx ends. It is called with
// a.mu held, which it releases while it waits: whoever changes what
// blocked reads calls wake(signal) under a.mu.
func (a *asyncState) await(ctx context.Context, blocked func() bool, signal *chan struct{}) error {
	for blocked() {
		if *signal == nil {
			*signal = make(chan struct{})
		}
		ch := *signal
		a.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			a.mu.Lock()
			return ctx.Err()
		}
		a.mu.Lock()
	}
	return nil
}

// wake releases the waiters on *signal, if any.
func wake(signal *chan struct{}) {
	if *signal != nil {
		close(*signal)
		*signal = nil
	}
}

// PublishAsync sends msg without waiting for its acknowledgement. It waits
// only while MaxPublishPending messages are unsettled (until ctx ends). A
// failed send is repeated, up to AsyncAttempts times in all, with waits
// starting at AsyncRetryWait; a full stream is retried the same way, as
// consumers make room; a closed connection ends the attempts at once.
// Only the final failure of a message — wrapping kanban.ErrFull, and the
// server's answer, for a full stream — goes to OnPublishError and is returned by the next Flush.
// A repeat that the stream answers as a duplicate after an attempt whose
// acknowledgement was lost (timed out, or cut off by a disconnect) is
// counted in Stats as published, not as a duplicate: the stream most
// likely stored that attempt, and the message once.
// An error returned by PublishAsync itself means msg was not sent, or
// not stored: among others, one wrapping ErrInvalidMessage or
// ErrTooLarge, as Publish checks msg, ErrClosed after Shutdown, one
// matching nats.ErrConnectionClosed on a closed connection, and one
// wrapping nats.ErrPermissionViolation, naming the subject, on a
// connection not permitted to publish to the work subject (or to
// subscribe to the inbox the acknowledgement comes to).
//
// The server tells of such a refusal only as an error on the
// connection. So, as Publish does, until the server has answered one
// publish of the Queue to the work subject, PublishAsync sends msg with
// a ping, while the connection is connected, and looks for the refusal
// before it returns: it waits a round trip then (and, while other
// probes of the connection run, for its turn), not for the
// acknowledgement; ctx ending ends that wait, and msg is sent all the
// same, a refusal not looked for. A message so sent that meets a disconnect fails its
// attempt after PublishTimeout, not as soon as the client sees the
// disconnect. A re-publish looks for the refusal the same way, and a
// refusal is its final failure.
func (q *Queue[T]) PublishAsync(ctx context.Context, msg kanban.Message[T]) error {
	if q.opts.Tracer != nil {
		return q.sendTraced(ctx, msg, func(ctx context.Context, data []byte) error {
			return q.publishAsync(ctx, msg, data)
		})
	}
	data, err := q.marshal(msg)
	if err != nil {
		return err
	}
	return q.publishAsync(ctx, msg, data)
}

func (q *Queue[T]) publishAsync(ctx context.Context, msg kanban.Message[T], data []byte) error {
	nm, err := q.encode(ctx, msg, data)
	if err != nil {
		return err
	}
	a, limit := &q.async, q.opts.MaxPublishPending
	a.mu.Lock()
	if err := a.await(ctx, func() bool { return a.held >= limit && !a.closed }, &a.room); err != nil {
		a.mu.Unlock()
		return err
	}
	if a.closed {
		a.mu.Unlock()
		return fmt.Errorf("natsjs: publishing message %s: %w", msg.ID, ErrClosed)
	}
	a.held++
	a.mu.Unlock()
	if err := q.sendAsync(ctx, nm); err != nil {
		a.mu.Lock()
		a.settle(limit)
		a.mu.Unlock()
		return fmt.Errorf("natsjs: publishing message %s: %w", msg.ID, err)
	}
	q.published(len(nm.Data))
	return nil
}

// sendAsync sends m, a PublishAsync message holding a slot, and returns
// the error of a send that failed: m was not sent, or the server refused
// it (an error wrapping nats.ErrPermissionViolation, see isDenied).
// Until the server has answered one publish of the Queue to the work
// subject, m goes as Publish's do (see sendProbed), so that a connection
// not permitted to publish there is told so at once, and its
// acknowledgement is waited for on a goroutine of the Queue (see
// awaitProbe); it goes through the client otherwise, and while the
// connection is not connected, when no refusal can be seen. ctx ending
// ends the wait for the turn to probe, or for the refusal, and not the
// send: m then goes through the client, or is waited for as one sent.
func (q *Queue[T]) sendAsync(ctx context.Context, m *nats.Msg) error {
	nc := q.js.Conn()
	if !q.workTaken.ok.Load() && nc.IsConnected() {
		pctx, cancel := context.WithTimeout(ctx, q.opts.PublishTimeout)
		sub, err := probeSend(pctx, nc, m, q.workTaken.done())
		cancel()
		switch {
		case err == nil:
			a := &q.async
			a.mu.Lock()
			a.timers++
			a.mu.Unlock()
			go q.awaitProbe(m, sub)
			return nil
		case isDenied(err):
			return err
		}
		// Not sent (another publish answered meanwhile, or ctx ended,
		// say): through the client, which reports what is wrong.
	}
	// The slot keeps the client's own pending count below its limit, so
	// this send never stalls.
	if _, err := q.ajs.PublishMsgAsync(m); err != nil {
		return connError(nc, err)
	}
	return nil
}

// awaitProbe waits for the stream's answer to m, which sendAsync sent on
// sub, until PublishTimeout after the send (as the client waits for its
// sends' answers; the flush that looked for a refusal counts in it), and
// settles m as onAsyncAck and onAsyncErr do the client's: acknowledged,
// sent again after a wait, or failed for good. No stream listening, m
// goes through the client, which tries again for one coming back, as
// Publish does (see sendProbed).
func (q *Queue[T]) awaitProbe(m *nats.Msg, sub *replySub) {
	a := &q.async
	defer func() {
		a.mu.Lock()
		a.timerDone()
		a.mu.Unlock()
	}()
	ctx, cancel := context.WithDeadline(context.Background(), sub.sent.Add(q.opts.PublishTimeout))
	reply, err := sub.next(ctx)
	cancel()
	sub.unsubscribe()
	var ack *jetstream.PubAck
	switch {
	case err == nil:
		q.workTaken.answer()
		ack, err = pubAckOf(reply)
	case errors.Is(err, context.DeadlineExceeded):
		err = jetstream.ErrAsyncPublishTimeout // as the client's
	case errors.Is(err, nats.ErrNoResponders):
		if _, err := q.ajs.PublishMsgAsync(m); err != nil {
			q.failed(m, connError(q.js.Conn(), err), false)
		}
		return
	}
	if err != nil {
		q.failed(m, err, outcomeUnknown(err))
		return
	}
	q.onAsyncAck(q.ajs, m, ack)
}

// onAsyncAck counts m published or a duplicate, then settles it: counted
// before Flush can return. A duplicate answering a re-publish of m after
// an attempt whose outcome is unknown is most likely that attempt's own
// copy — stored, its acknowledgement lost — so it counts as published: m
// was stored once.
func (q *Queue[T]) onAsyncAck(_ jetstream.JetStream, m *nats.Msg, ack *jetstream.PubAck) {
	if !q.workTaken.ok.Load() {
		q.workTaken.answer() // the connection may publish there: see sendProbed
	}
	a := &q.async
	a.mu.Lock()
	r := a.retries[m]
	if r != nil {
		delete(a.retries, m)
	}
	if ack.Duplicate && r != nil && r.unsure {
		q.counters.AddPublished(1)
	} else {
		q.countAck(ack)
	}
	a.settle(q.opts.MaxPublishPending)
	a.mu.Unlock()
}

// onAsyncErr runs on a client goroutine, sometimes under the client's
// publisher lock: it must not publish, so a re-publish runs on a timer.
func (q *Queue[T]) onAsyncErr(_ jetstream.JetStream, m *nats.Msg, err error) {
	q.failed(m, err, outcomeUnknown(err))
}

// outcomeUnknown reports whether err, the failure of a send whose message
// reached the connection, leaves open that the stream stored it: its
// acknowledgement timed out, was lost to a disconnect or could not be
// read. A refusal from the server (an API error), or no stream listening,
// means it stored nothing.
func outcomeUnknown(err error) bool {
	return errors.Is(err, jetstream.ErrAsyncPublishTimeout) || errors.Is(err, nats.ErrDisconnected) ||
		errors.Is(err, jetstream.ErrInvalidJSAck)
}

// failed handles a failed send of m: it schedules the next attempt, or
// settles m as failed when the attempts are spent, the queue is closed or
// the connection is. unsure says the stream may have stored m all the
// same (see outcomeUnknown).
func (q *Queue[T]) failed(m *nats.Msg, err error, unsure bool) {
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
	r.unsure = r.unsure || unsure
	if a.closed || r.attempts >= q.opts.AsyncAttempts || hopeless(err) {
		delete(a.retries, m)
		a.mu.Unlock()
		q.giveUp(m, r, nil)
		return
	}
	next, delay := r.attempts+1, q.backoff.Delay(r.attempts)
	a.timers++
	r.stop = time.AfterFunc(delay, func() { q.republish(m) }).Stop
	a.mu.Unlock()
	q.opts.Logger.Debug("natsjs: re-publishing", "id", msgID(m), "attempt", next, "after", delay, "err", err)
}

// hopeless reports failures no repeat can fix: among them the server's
// refusal of a connection not permitted to publish to the work subject.
func hopeless(err error) bool {
	return errors.Is(err, nats.ErrConnectionClosed) || errors.Is(err, jetstream.ErrJetStreamPublisherClosed) ||
		isDenied(err)
}

// republish sends m again once its wait is over.
func (q *Queue[T]) republish(m *nats.Msg) {
	a := &q.async
	defer func() {
		a.mu.Lock()
		a.timerDone()
		a.mu.Unlock()
	}()
	a.mu.Lock()
	r := a.retries[m]
	if r == nil || r.stop == nil { // Shutdown stopped it
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
	if err := q.sendAsync(context.Background(), m); err != nil {
		q.failed(m, err, false) // not sent, or refused
	}
}

// giveUp settles m as failed after r's attempts, reporting the failure to
// OnPublishError before Flush can see the slot free. cause, when not nil,
// is why no further attempt is made. a.mu is not held.
func (q *Queue[T]) giveUp(m *nats.Msg, r *retryState, cause error) {
	id, last := msgID(m), r.last
	if isFull(last) {
		last = fullError(last)
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
	// Deferred: settled also when OnPublishError panics or ends its
	// goroutine, which would leave Flush and Shutdown waiting for the slot.
	defer func() {
		a := &q.async
		a.mu.Lock()
		if len(a.errs) < keptAsyncErrors {
			a.errs = append(a.errs, err)
		} else {
			a.lost++
		}
		a.settle(q.opts.MaxPublishPending)
		a.mu.Unlock()
	}()
	if q.opts.OnPublishError != nil {
		q.reportFailure(id, err)
	}
}

// giveUpAll gives up on each of ms, in order, with cause. Each is given
// up in a deferred call: an OnPublishError that ends the goroutine
// (runtime.Goexit, as t.FailNow does) ends it once every one is settled,
// instead of leaving those after it waiting, and Flush and Shutdown with
// them.
func (q *Queue[T]) giveUpAll(ms []*nats.Msg, rs []*retryState, cause error) {
	for i := len(ms) - 1; i >= 0; i-- {
		defer q.giveUp(ms[i], rs[i], cause)
	}
}

// reportFailure calls OnPublishError with a message's final failure. A
// panic in it is logged at Error and goes no further: it runs on a client
// goroutine, where it would end the process, or in Shutdown, which has
// other messages to settle.
func (q *Queue[T]) reportFailure(id string, err error) {
	defer func() {
		if v := recover(); v != nil {
			q.opts.Logger.Error("natsjs: OnPublishError panicked", "id", id, "err", err, "panic", v, "stack", string(debug.Stack()))
		}
	}()
	q.opts.OnPublishError(id, err)
}

func msgID(m *nats.Msg) string {
	if m == nil || m.Header == nil {
		return ""
	}
	return messageID(m.Header)
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
	err := a.await(ctx, func() bool { return a.held > 0 }, &a.idle)
	a.mu.Unlock()
	if err != nil {
		return err
	}
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

// Shutdown stops the queue's asynchronous publishing, in the manner of
// http.Server.Shutdown. It waits like Flush until every PublishAsync
// message is settled or ctx ends; then it stops re-publishing: every
// message still waiting for a re-publish fails at once with ErrClosed
// (reported to OnPublishError), a later failure of a message still
// awaiting its acknowledgement is final, and PublishAsync returns
// ErrClosed (one running alongside Shutdown is either accepted before
// the wait ends, and waited for, or returns ErrClosed). Last it waits,
// until ctx ends, for re-publishes already under way. It returns Flush's
// result joined with the failures it caused, or with ctx's error when
// ctx ended first; then what is still under way finishes on its own.
//
// Once nothing is under way it also ends the subscription the
// acknowledgements came to, which would otherwise last as long as the
// connection. After a nil return no goroutine or subscription of the
// queue's asynchronous publishing remains. A second call waits for what
// the first left under way, releases the same once nothing is, and
// returns nil then. Publish and Consume are not affected (a consumer
// stops with the ctx of Consume), and the connection stays open.
func (q *Queue[T]) Shutdown(ctx context.Context) error {
	a := &q.async
	a.mu.Lock()
	// Closed in the same hold of a.mu as the wait ends: a PublishAsync
	// taking a slot in between would be accepted and left unsettled.
	err := a.await(ctx, func() bool { return a.held > 0 }, &a.idle)
	a.closed = true
	wake(&a.room) // PublishAsync calls waiting for a slot return ErrClosed
	var stopped []*nats.Msg
	var rs []*retryState
	for m, r := range a.retries {
		if r.stop != nil && r.stop() {
			r.stop = nil
			stopped, rs = append(stopped, m), append(rs, r)
			delete(a.retries, m)
			a.timerDone()
		}
	}
	a.mu.Unlock()
	q.giveUpAll(stopped, rs, ErrClosed)
	if ferr := q.takeErrors(); err == nil {
		err = ferr
	} else {
		err = errors.Join(err, ferr)
	}
	a.mu.Lock()
	werr := a.await(ctx, func() bool { return a.timers > 0 }, &a.stopped)
	done := a.held == 0 && a.timers == 0
	a.mu.Unlock()
	if done {
		// Nothing more goes through ajs: its subscription for
		// acknowledgements, and the goroutine watching the connection for
		// it, would otherwise last as long as the connection. Not under
		// a.mu: the client may call onAsyncErr under its own lock.
		q.ajs.CleanupPublisher()
	}
	if werr != nil && !errors.Is(err, werr) {
		err = errors.Join(err, werr)
	}
	return err
}
