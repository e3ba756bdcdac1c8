package andon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"runtime/debug"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/taipattern/taikit/internal/typednil"
	"github.com/taipattern/taikit/kanban"
	"github.com/taipattern/taikit/tai"
)

// A Notifier tells people or systems about alerts: a log, a webhook,
// Alertmanager. The evaluator calls Notify from a worker goroutine of its
// own per notifier, never from evaluation, with a batch of alerts that
// changed: State Firing for alerts that fired (or are re-sent), Resolved
// for alerts that resolved. The slice is the notifier's own, to reorder
// or keep; the alerts' maps (Labels, Annotations) are shared and must not
// be changed. The context's deadline is
// NotifyOptions.Timeout after the call, for each attempt (a Webhook,
// which sends a request per alert name, is given it for each request
// instead).
//
// An error is retried with NotifyOptions.Backoff up to
// NotifyOptions.MaxAttempts times, unless it is marked with
// kanban.Permanent (a receiver that answered 400 Bad Request will answer
// it again). A Webhook, which sends one request per alert name, has only
// the names whose request failed and is worth retrying sent again; so
// does a notifier that returns a Webhook's error as its own, wrapped or
// not (errors.Join of it and nil errors wraps it alone), unless it marks
// it with kanban.Permanent, but not one that joins it with other errors
// (errors.Join), which is retried whole. A panic
// fails the batch at once, as a *PanicError, and so does one in the
// methods of the error returned (Unwrap, As, RetryAfter), as a nil pointer
// returned as an error may panic in them. A runtime.Goexit in any of them
// (t.FailNow in a test's notifier) fails the batch for good too, and the
// worker goes on in a new goroutine. A Notifier
// that also has a Name() method (tai.Namer) is named by it in logs and
// NotifierStats. NewEvaluator reads that name, and a Refresher's
// Refreshes, once; a panic in either is its error.
type Notifier interface {
	Notify(ctx context.Context, alerts []Alert) error
}

// A Refresher is a Notifier whose receiver forgets an alert it does not
// hear of again before the alert's ValidUntil, as Alertmanager does: the
// evaluator re-sends firing alerts to it every NotifyOptions.ResendInterval.
// As a Prometheus server does, it re-sends a resolution too, at that
// interval for 15 minutes after the alert resolved, while the alert stays
// Resolved: Alertmanager keeps alerts in memory only, and one that
// restarted after the resolution came would otherwise never tell its
// receivers that the alert resolved. Other notifiers hear of an alert
// once when it fires and once when it resolves; one whose resolution did
// not go out (dropped or given up) before the alert fired again hears of
// the new firing alert, with its FiredAt, in its place.
type Refresher interface {
	Notifier
	// Refreshes reports whether firing alerts, and resolutions, must be
	// re-sent.
	Refreshes() bool
}

// NotifyOptions configures the delivery of notifications. The zero value
// is useful: every zero field has the default its comment names.
type NotifyOptions struct {
	// QueueSize bounds the alerts waiting for each notifier. When a
	// notifier falls behind, a re-send of a queued firing alert replaces
	// the queued one, and one of a firing alert waiting for a retry is
	// sent in its place (a resolution is queued after it, never in its
	// place); a notification that finds the queue full is
	// dropped, counted in NotifierStats.Dropped and logged (one line per
	// evaluation, with the count and the first ten alert names), and offered
	// again at the next evaluation if the alert still fires; a resolution
	// is offered again while the alert does not fire, resolved, pending or
	// inactive. Should the alert fire again before its resolution goes
	// out, the resolution is out of date and is not sent: the new firing
	// alert is, in its place (to a Refresher too, without waiting for
	// ResendInterval), as Prometheus replaces a resolved alert that fires
	// again, so that a receiver still holding the old one hears that it
	// fires now. A webhook's receiver reads the new FiredAt as its
	// startsAt; Alertmanager merges the alert into the firing one it
	// holds and keeps that one's startsAt, until its endsAt has passed.
	// Zero means 256; otherwise from 1 to 1048576 (1<<20).
	QueueSize int
	// Timeout bounds each Notify call; each retry has the whole of it
	// again. A Webhook, which sends one request per alert name, gives it
	// to each request, so that a slow answer for one name leaves the next
	// request its whole time, as Alertmanager's per-receiver timeouts do.
	// Zero means 10s.
	Timeout time.Duration
	// MaxAttempts is how many times a batch is tried before it is given
	// up (counted in NotifierStats.Failed and logged). Alerts given up
	// after a failure worth a retry are offered again at the next
	// evaluation, as dropped ones are: a firing alert while it still
	// fires, a resolution while the alert does not fire (or, once the
	// alert fires again, the new firing alert in its place). Alerts that
	// failed for good (a permanent error, a panic) are not. A resolution
	// goes only to a receiver that took the alert firing: one whose
	// firing alert was given up (or refused for good) and never delivered
	// is not told, nor kept owed, of its resolution. Zero means 4;
	// otherwise from 1 (no retries) to 100.
	MaxAttempts int
	// Backoff says how long to wait before each retry. Nil means
	// kanban.Exponential{Initial: 500 * time.Millisecond}: 500ms,
	// doubling, capped at 30s, with 20% jitter. A kanban.Exponential is
	// checked with its Validate method; a nil function or pointer (a nil
	// kanban.BackoffFunc or *kanban.Exponential) is refused. A Backoff
	// that panics gives the batch up, as its last attempt would (the
	// panic is logged as a *PanicError). An error with a RetryAfter
	// method (tai.RetryAfter), as a Webhook's or Alertmanager's is when a
	// 429 or 5xx answer has a Retry-After header, waits that long instead
	// when it is longer, up to 5 minutes; when the batch failed with
	// several such errors (a Webhook sends a request per alert name), the
	// longest wait counts. That wait outlasts a batch given up after
	// MaxAttempts: what is queued after it, the alerts offered again
	// among them, is not sent before it has passed.
	Backoff kanban.Backoff
	// ResendInterval is how often firing alerts are re-sent to a
	// Refresher (Alertmanager), and resolutions for 15 minutes after the
	// alerts resolved; they are re-sent no more often than the rules are
	// evaluated. Alerts carry ValidUntil four times the longer of
	// ResendInterval and EvaluatorOptions.Interval ahead, as Prometheus
	// sets endsAt. Zero means one minute.
	ResendInterval time.Duration
}

func (o NotifyOptions) withDefaults() (NotifyOptions, error) {
	checks := []struct {
		name string
		v    time.Duration
		def  time.Duration
		p    *time.Duration
	}{
		{"Timeout", o.Timeout, 10 * time.Second, &o.Timeout},
		{"ResendInterval", o.ResendInterval, time.Minute, &o.ResendInterval},
	}
	for _, c := range checks {
		switch {
		case c.v == 0:
			*c.p = c.def
		case c.v < 0:
			return o, fmt.Errorf("andon: NotifyOptions.%s %v is negative", c.name, c.v)
		}
	}
	if typednil.Holds(o.Backoff) {
		// Not nil as an interface, yet every retry would panic in it (a
		// nil *kanban.Exponential already in its Validate).
		return o, fmt.Errorf("andon: NotifyOptions.Backoff is a nil %T", o.Backoff)
	}
	switch b := o.Backoff.(type) {
	case nil:
		o.Backoff = kanban.Exponential{Initial: 500 * time.Millisecond}
	case kanban.Exponential:
		if err := b.Validate(); err != nil {
			return o, fmt.Errorf("andon: NotifyOptions.Backoff: %w", err)
		}
	case *kanban.Exponential:
		if err := b.Validate(); err != nil {
			return o, fmt.Errorf("andon: NotifyOptions.Backoff: %w", err)
		}
	}
	switch {
	case o.QueueSize == 0:
		o.QueueSize = 256
	case o.QueueSize < 0 || o.QueueSize > 1<<20:
		return o, fmt.Errorf("andon: NotifyOptions.QueueSize %d is outside [1, %d]", o.QueueSize, 1<<20)
	}
	switch {
	case o.MaxAttempts == 0:
		o.MaxAttempts = 4
	case o.MaxAttempts < 0 || o.MaxAttempts > 100:
		return o, fmt.Errorf("andon: NotifyOptions.MaxAttempts %d is outside [1, 100]", o.MaxAttempts)
	}
	return o, nil
}

// NotifierStats counts what happened to the notifications of one
// notifier.
type NotifierStats struct {
	// Name is the notifier's Name(), or its position ("notifier 2").
	Name string `json:"name"`
	// Sent counts alerts delivered; Failed alerts given up after
	// MaxAttempts (or a permanent error, or a panic, or a call Shutdown
	// canceled); Dropped alerts that found the queue full, or were still
	// queued or waiting for a retry when Shutdown gave up.
	Sent    uint64 `json:"sent"`
	Failed  uint64 `json:"failed"`
	Dropped uint64 `json:"dropped"`
	// Retries counts retried Notify calls.
	Retries uint64 `json:"retries"`
	// Queued is the number of alerts waiting now.
	Queued int `json:"queued"`
}

// requestTimer is a Notifier that sends several requests in one Notify
// call and bounds each with NotifyOptions.Timeout itself (a Webhook),
// taking it from the context with requestContext: the evaluator then
// gives the call the Timeout once per request it sends the batch in.
type requestTimer interface {
	Notifier
	timesRequests()
}

// countMessages returns the number of messages a Webhook sends alerts
// in, one per alert name or more (see Webhook.Notify), at least 1.
func countMessages(alerts []Alert) int {
	return max(1, len(groupByName(alerts)))
}

// requestTimeoutKey is the context key of the timeout a requestTimer
// gives each request.
type requestTimeoutKey struct{}

// requestContext returns the context of one request of a requestTimer:
// ctx with the evaluator's NotifyOptions.Timeout when it carries one, ctx
// as it is otherwise (a notifier called directly).
func requestContext(ctx context.Context) (context.Context, context.CancelFunc) {
	if d, ok := ctx.Value(requestTimeoutKey{}).(time.Duration); ok {
		return context.WithTimeout(ctx, d)
	}
	return context.WithCancel(ctx)
}

// firingSent is what a dispatcher knows of a firing alert it queued,
// by fingerprint, until the alert's resolution is queued.
type firingSent struct {
	at      time.Time // when it was queued
	firedAt time.Time // the FiredAt of the alert queued
	// missed is set when the receiver may hold the alert firing but
	// missed a later notification of it, dropped or given up: a re-send,
	// the alert firing again, or its resolution. While the alert fires,
	// it is offered again at once, to any notifier, so that the receiver
	// hears of it as it fires now, with its FiredAt, rather than keep an
	// older firing alert, or one that has resolved since.
	missed bool
	// refused is set when the receiver, which did not hold the alert
	// firing, refused it for good: no resolution is owed for it, and it
	// is not offered again while it fires (the alert firing again, with
	// another FiredAt, is a new alert).
	refused bool
}

// resolutionSent is when a Refresher was last sent the resolution of an
// alert that resolved at resolvedAt.
type resolutionSent struct {
	resolvedAt, at time.Time
}

// resolvedRetention is how long after an alert resolved its resolution is
// re-sent to a Refresher, as long as a Prometheus server keeps a resolved
// alert and re-sends it to Alertmanager.
const resolvedRetention = 15 * time.Minute

// dispatcher owns the queue and the worker goroutine of one notifier.
type dispatcher struct {
	n       Notifier
	name    string
	refresh bool
	// perRequest is set for a notifier that bounds each of its requests
	// with the timeout (a Webhook): its Notify call has no deadline.
	perRequest bool
	opts       NotifyOptions
	log        *slog.Logger
	ctx        context.Context // canceled by the evaluator's Shutdown

	mu    sync.Mutex
	queue []Alert
	index map[string]int // fingerprint → position in queue
	sent  map[string]firingSent
	// held holds the fingerprints of the alerts the receiver took firing
	// and has not taken the resolution of since: it holds them firing,
	// so it is owed their resolutions, and only it is.
	held map[string]struct{}
	owed map[string]Alert // fingerprint → a resolution dropped or given up
	// resolved holds, for a Refresher, the resolutions queued, to be
	// re-sent for resolvedRetention.
	resolved map[string]resolutionSent
	// notBefore is when the receiver said, with the Retry-After of the
	// last failure of a batch given up, it could be asked again: the
	// batches after it wait until then, as its retry would have.
	notBefore time.Time
	busy      bool
	idle      []chan struct{}
	stats     NotifierStats

	// owedAll counts the entries of owed of every dispatcher of the
	// evaluator: it asks evaluations to offer pending and inactive alerts.
	owedAll *atomic.Int64

	wake   chan struct{}
	exited chan struct{}
}

// notifierTraits is what a dispatcher reads of its notifier once: its
// name and whether it is a Refresher that refreshes.
type notifierTraits struct {
	name    string
	refresh bool
}

// readNotifierTraits reads the i-th notifier's Name and Refreshes methods,
// the program's code: a panic in one is an error naming the notifier and
// the method, not a panic of NewEvaluator's caller.
func readNotifierTraits(i int, n Notifier) (t notifierTraits, err error) {
	method := "Name"
	defer func() {
		if v := recover(); v != nil {
			err = fmt.Errorf("the %s method of EvaluatorOptions.Notifiers[%d] (%T) panicked: %s", method, i, n, panicText(v))
		}
	}()
	t.name = fmt.Sprintf("notifier %d", i)
	if nm, ok := n.(tai.Namer); ok {
		if s := nm.Name(); s != "" {
			t.name = s
		}
	}
	method = "Refreshes"
	if r, ok := n.(Refresher); ok {
		t.refresh = r.Refreshes()
	}
	return t, nil
}

func newDispatcher(ctx context.Context, n Notifier, t notifierTraits, opts NotifyOptions, log *slog.Logger, owed *atomic.Int64) *dispatcher {
	d := &dispatcher{
		n: n, name: t.name, refresh: t.refresh, opts: opts, log: log, ctx: ctx,
		index: map[string]int{}, sent: map[string]firingSent{}, held: map[string]struct{}{}, owed: map[string]Alert{}, owedAll: owed,
		resolved: map[string]resolutionSent{}, wake: make(chan struct{}, 1), exited: make(chan struct{}),
	}
	_, d.perRequest = n.(requestTimer)
	d.stats.Name = d.name
	return d
}

// offer queues the alerts this notifier has not heard of in their present
// state: a firing alert once (and again every ResendInterval for a
// Refresher), a resolved alert once if it was sent firing, unless the
// receiver refused that for good (and again every ResendInterval for
// resolvedRetention for a Refresher). A resolution that was dropped or
// given up is queued again while the alert does not fire, Pending or Inactive
// as well as Resolved: the receiver holds the alert firing until it hears
// of it. Should the alert fire again first, the resolution is out of
// date and the new firing alert is queued in its place, to any notifier:
// the receiver, which holds the old one, hears that it fires now (see
// NotifyOptions.QueueSize). It never blocks.
func (d *dispatcher) offer(now time.Time, alerts []Alert) {
	var dropped int
	var names []string // of the alerts dropped, the first few
	defer func() {
		// One line for the offer, however many it dropped: while a
		// receiver is down, every evaluation drops the same alerts.
		if dropped > 0 {
			d.log.Warn("andon: notification dropped: queue full", "notifier", d.name, "count", dropped,
				"alertnames", names, "queue_size", d.opts.QueueSize)
		}
	}()
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.ctx.Err() != nil { // shut down: the worker is gone or going
		return
	}
	for _, a := range alerts {
		s, firing := d.sent[a.Fingerprint]
		resend := false // a resolution re-sent to a Refresher
		if a.State == Firing {
			delete(d.resolved, a.Fingerprint)
		}
		if a.State == Firing && len(d.owed) > 0 {
			// Firing again: the resolution owed is out of date, and the
			// receiver, which still holds the alert firing, hears of
			// the new one instead (owe marked it missed).
			d.forgive(a.Fingerprint)
		}
		switch {
		case a.State == Firing && a.Silenced:
			// A silence mutes what the receiver is told anew, not what
			// it holds: a Refresher that holds the alert firing is
			// still re-sent it, or its ValidUntil passes and
			// Alertmanager tells its receivers the alert resolved.
			if _, held := d.held[a.Fingerprint]; !d.refresh || !firing || s.refused || !held ||
				!s.missed && now.Sub(s.at) < d.opts.ResendInterval {
				continue
			}
		case a.State == Firing:
			switch {
			case firing && s.missed:
				// The receiver missed what followed the firing alert it
				// holds (its resolution, say, with the alert firing
				// again since): it hears of the alert as it fires now,
				// or it keeps the old one, with its old FiredAt.
				firing = false
			case firing && s.refused && !a.FiredAt.Equal(s.firedAt):
				// Fired again since the refused one, which resolved
				// while the alert was not offered (pending or inactive
				// with no resolution owed): a new alert.
				firing = false
			}
			if firing && (!d.refresh || now.Sub(s.at) < d.opts.ResendInterval) {
				continue
			}
		case a.State == Resolved:
			if !firing {
				// Sent already, or never sent firing: a Refresher that
				// was sent it is sent it again, for a while.
				if resend = d.resendsResolution(now, a); !resend {
					continue
				}
				break
			}
			if s.refused {
				// The receiver refused it firing: it does not hold it.
				delete(d.sent, a.Fingerprint)
				continue
			}
		case a.State != Firing && firing:
			// Pending or Inactive again since a resolution that did
			// not go out: send that one.
			r, ok := d.owed[a.Fingerprint]
			if !ok {
				continue
			}
			a = r
		default:
			continue
		}
		if i, ok := d.index[a.Fingerprint]; ok && d.queue[i].State == a.State {
			d.queue[i] = a // a newer re-send replaces the queued one
		} else if len(d.queue) >= d.opts.QueueSize {
			// Not marked as sent: the next evaluation offers it again
			// while the alert fires; a resolution, kept as owed, while
			// the alert does not fire, or, should the alert fire again
			// first, the new firing alert in its place.
			d.stats.Dropped++
			dropped++
			if len(names) < 10 && !slices.Contains(names, a.Name) {
				names = append(names, a.Name)
			}
			if a.State == Resolved && !resend {
				d.owe(a)
			}
			continue
		} else {
			d.index[a.Fingerprint] = len(d.queue)
			d.queue = append(d.queue, a)
		}
		if a.State == Firing {
			d.sent[a.Fingerprint] = firingSent{at: now, firedAt: a.FiredAt}
		} else {
			delete(d.sent, a.Fingerprint)
			d.forgive(a.Fingerprint)
			if a.State == Resolved && d.refresh {
				d.resolved[a.Fingerprint] = resolutionSent{resolvedAt: a.ResolvedAt, at: now}
			}
		}
	}
	if len(d.queue) > 0 {
		select {
		case d.wake <- struct{}{}:
		default:
		}
	}
}

// resendsResolution reports whether the resolution of a, which this
// notifier was sent, is to be re-sent at now: to a Refresher, every
// ResendInterval until resolvedRetention has passed since a resolved. It
// forgets one past that; d.mu is held.
func (d *dispatcher) resendsResolution(now time.Time, a Alert) bool {
	r, ok := d.resolved[a.Fingerprint]
	switch {
	case !ok || !r.resolvedAt.Equal(a.ResolvedAt):
		return false
	case now.Sub(a.ResolvedAt) > resolvedRetention:
		delete(d.resolved, a.Fingerprint)
		return false
	}
	return now.Sub(r.at) >= d.opts.ResendInterval
}

// run is the worker: it sends what is queued, in batches, until the
// evaluator's Shutdown cancels ctx.
func (d *dispatcher) run() {
	stopped := false
	defer func() {
		if stopped {
			close(d.exited)
			return
		}
		// A callback (the notifier, its error's methods, the Backoff)
		// ended this goroutine with runtime.Goexit, and send failed its
		// batch: the worker goes on in a new goroutine, woken to send
		// what is queued and to release Flush, so that Shutdown does not
		// wait for a worker that is gone.
		select {
		case d.wake <- struct{}{}:
		default:
		}
		go d.run()
	}()
	for {
		select {
		case <-d.wake:
		case <-d.ctx.Done():
		}
		for {
			d.mu.Lock()
			if d.ctx.Err() != nil {
				if n := len(d.queue); n > 0 {
					d.stats.Dropped += uint64(n)
					d.log.Warn("andon: notifications dropped at shutdown", "notifier", d.name, "count", n)
				}
				d.queue, d.busy = nil, false
				clear(d.index)
				d.wakeIdle()
				d.mu.Unlock()
				stopped = true
				return
			}
			if wait := time.Until(d.notBefore); wait > 0 && len(d.queue) > 0 {
				// What is queued waits, and new notifications join it.
				d.mu.Unlock()
				t := time.NewTimer(wait)
				select {
				case <-t.C:
				case <-d.ctx.Done():
					t.Stop()
				}
				continue
			}
			batch := d.queue
			d.queue = nil
			clear(d.index)
			if len(batch) == 0 {
				d.busy = false
				d.wakeIdle()
				d.mu.Unlock()
				break
			}
			d.busy = true
			d.mu.Unlock()
			d.send(batch)
		}
	}
}

// wakeIdle releases Flush callers; d.mu is held.
func (d *dispatcher) wakeIdle() {
	for _, c := range d.idle {
		close(c)
	}
	d.idle = nil
}

// send delivers a batch, retrying with back-off. Should a callback end
// the goroutine with runtime.Goexit, as t.FailNow in a test's notifier
// does, the batch fails for good, as for a panic, and run carries on in
// a new goroutine. A batch already counted, delivered or failed, when the
// goroutine ends (in the error's Error method, read by the log line of
// its failure) is not counted again: it keeps the fate it was given.
func (d *dispatcher) send(batch []Alert) {
	attempt := 0
	goexit := true
	// in names the callback running, for a runtime.Goexit in it, as a
	// *PanicError names it. settled is set once batch is counted, as
	// delivered or failed, and its state noted: a Goexit after that (in
	// the error's Error method, read by the log) fails nothing twice.
	in, settled := "notifier "+d.name, false
	defer func() {
		switch {
		case !goexit:
		case settled || len(batch) == 0:
			d.log.Error("andon: notifier goroutine ended with runtime.Goexit", "notifier", d.name,
				"in", in, "stack", string(debug.Stack()))
		default:
			err := kanban.Permanent(fmt.Errorf("andon: %s ended its goroutine with runtime.Goexit", in))
			d.refuse(batch)
			d.fail(batch, attempt, err, "stack", string(debug.Stack()))
		}
	}()
	// The loop reads and sets batch, attempt, in and settled, which the
	// deferred function reports should the goroutine end in it.
	func() {
		for {
			attempt++
			var ctx context.Context
			var cancel context.CancelFunc
			if d.perRequest {
				// Each request has the Timeout; the call, which sends one
				// request per message, has as many of them, however the
				// notifier (a type embedding a Webhook) spends them.
				whole := time.Duration(math.MaxInt64)
				if n := time.Duration(countMessages(batch)); d.opts.Timeout <= whole/n {
					whole = d.opts.Timeout * n
				}
				ctx, cancel = context.WithTimeout(context.WithValue(d.ctx, requestTimeoutKey{}, d.opts.Timeout), whole)
			} else {
				ctx, cancel = context.WithTimeout(d.ctx, d.opts.Timeout)
			}
			in = "notifier " + d.name
			err := d.notify(ctx, batch)
			cancel()
			if err == nil {
				settled = true
				d.delivered(batch)
				return
			}
			in = "error of notifier " + d.name
			f := d.classify(err)
			if p := f.partial; p != nil {
				// Some requests of the batch went out, or failed for good:
				// count them now and retry only the others. The state of
				// those failed is noted before the log reads their errors.
				d.delivered(p.delivered(batch))
				batch = p.retry
				if len(p.failed) > 0 {
					d.refuse(p.failed)
					d.fail(p.failed, attempt, errors.Join(p.failedErrs...))
				}
				if len(batch) == 0 {
					return
				}
			}
			err = f.err
			if f.permanent || attempt >= d.opts.MaxAttempts || d.ctx.Err() != nil {
				settled = true
				if f.permanent {
					d.refuse(batch)
				} else {
					d.unsend(batch)
					d.holdFor(f.retryAfter)
				}
				d.fail(batch, attempt, err)
				return
			}
			in = "backoff of notifier " + d.name
			delay, perr := d.delay(attempt)
			in = "error of notifier " + d.name
			if perr != nil {
				// No wait to retry after: give the batch up as after the
				// last attempt, to be offered again at the next evaluation.
				settled = true
				d.unsend(batch)
				d.holdFor(f.retryAfter)
				d.fail(batch, attempt, errors.Join(err, perr))
				return
			}
			d.count(func(s *NotifierStats) { s.Retries++ })
			d.log.Warn("andon: notification failed; retrying", "notifier", d.name, "attempt", attempt, "err", err)
			if ra := min(f.retryAfter, maxRetryAfter); ra > delay {
				delay = ra // a receiver asked for a longer wait
			}
			t := time.NewTimer(max(0, delay))
			select {
			case <-t.C:
			case <-d.ctx.Done():
				t.Stop()
			}
			if d.ctx.Err() != nil {
				// Shutdown gave up waiting: the batch is abandoned, as a
				// queued one is, not tried with a context that has ended.
				settled = true
				d.abandon(batch)
				return
			}
			if batch = d.unreplaced(batch); len(batch) == 0 {
				return
			}
		}
	}()
	goexit = false
}

// unreplaced returns the alerts of a batch about to be retried that no
// notification queued since replaces: a firing alert whose next queued
// notification is a firing one too (a newer re-send to a Refresher) is
// left to it, as a queued one would be replaced by it. Its ValidUntil may
// have passed during the wait, and Alertmanager, given an endsAt in the
// past, resolves an alert that still fires. A resolution, and a firing
// alert a resolution follows, queued or in the batch, are retried as they
// are: the resolution goes only with the firing alert it resolves.
func (d *dispatcher) unreplaced(batch []Alert) []Alert {
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.queue) == 0 {
		return batch
	}
	next := make(map[string]AlertState, len(d.queue))
	for _, a := range d.queue {
		if _, ok := next[a.Fingerprint]; !ok {
			next[a.Fingerprint] = a.State
		}
	}
	kept := batch[:0]
	for i, a := range batch {
		// batch[i+1:] is read before it is written over.
		if s, ok := next[a.Fingerprint]; ok && a.State == Firing && s == Firing && !notLast(batch, i) {
			continue
		}
		kept = append(kept, a)
	}
	clear(batch[len(kept):])
	return kept
}

// failure is what the error of a failed Notify call says.
type failure struct {
	err        error         // the error the batch (what is left of it) failed with
	partial    *partialError // of a notifier that sends several requests
	permanent  bool          // kanban.IsPermanent
	retryAfter time.Duration // tai.RetryAfter
}

// classify reads err through its methods (Unwrap, As, RetryAfter), which
// the notifier's error type defines and which may panic, as a nil
// pointer's do: a panic fails the batch for good, as one in Notify does,
// rather than the worker and the program with it.
func (d *dispatcher) classify(err error) (f failure) {
	defer func() {
		if v := recover(); v != nil {
			f = failure{err: kanban.Permanent(newPanicError("error of notifier "+d.name, v)), permanent: true}
		}
	}()
	f.err = err
	if p := partialOf(err); p != nil {
		f.partial = p
		f.err = errors.Join(p.retryErrs...)
		// A Webhook marks its error with kanban.Permanent only when no
		// request is worth a retry: a mark over one with requests worth
		// a retry is the notifier's own, and they are not retried.
		if f.err != nil && kanban.IsPermanent(err) && !kanban.IsPermanent(f.err) {
			f.err = kanban.Permanent(f.err)
		}
	}
	f.permanent = kanban.IsPermanent(f.err)
	f.retryAfter = tai.RetryAfter(f.err)
	return f
}

// partialOf returns the *partialError that err stands for: err itself,
// or err wrapping it alone, one error in another (kanban.Permanent,
// fmt.Errorf with one %w, errors.Join of it and nil errors: a notifier of
// one's own whose other receiver succeeded). An error that joins it with
// other errors (a notifier of one's own whose other receiver failed too)
// is not one: the others failed, maybe for the alerts the partial error
// says went out, and the batch is retried or given up whole.
func partialOf(err error) *partialError {
	for err != nil {
		switch e := err.(type) {
		case *partialError:
			return e
		case interface{ Unwrap() error }:
			err = e.Unwrap()
		case interface{ Unwrap() []error }:
			err = nil
			for _, u := range e.Unwrap() {
				if u == nil {
					continue
				}
				if err != nil {
					return nil // joined with another failure
				}
				err = u
			}
		default:
			return nil
		}
	}
	return nil
}

// delay calls NotifyOptions.Backoff, turning a panic into a *PanicError.
func (d *dispatcher) delay(attempt int) (delay time.Duration, err error) {
	defer func() {
		if v := recover(); v != nil {
			err = newPanicError("backoff of notifier "+d.name, v)
		}
	}()
	return d.opts.Backoff.Delay(attempt), nil
}

// holdFor keeps the next batches from being sent before the wait a
// receiver asked for, at most maxRetryAfter, has passed since now: the
// Retry-After of a batch given up outlasts it.
func (d *dispatcher) holdFor(wait time.Duration) {
	if wait = min(wait, maxRetryAfter); wait <= 0 {
		return
	}
	d.mu.Lock()
	d.notBefore = time.Now().Add(wait)
	d.mu.Unlock()
}

// abandon counts and logs the alerts of a batch that Shutdown left
// waiting for a retry, as dropped.
func (d *dispatcher) abandon(batch []Alert) {
	d.count(func(s *NotifierStats) { s.Dropped += uint64(len(batch)) })
	d.log.Warn("andon: notifications dropped at shutdown", "notifier", d.name, "count", len(batch))
}

// fail counts and logs alerts given up on after attempt attempts, with
// more attributes to log, if any.
func (d *dispatcher) fail(alerts []Alert, attempt int, err error, more ...any) {
	d.count(func(s *NotifierStats) { s.Failed += uint64(len(alerts)) })
	attrs := append([]any{"notifier", d.name, "alerts", len(alerts), "attempts", attempt, "err", err}, more...)
	if p := (*PanicError)(nil); errors.As(err, &p) {
		attrs = append(attrs, "stack", string(p.Stack))
	}
	d.log.Error("andon: notification failed", attrs...)
}

// delivered counts the alerts a Notify call delivered and notes which
// the receiver now holds firing.
func (d *dispatcher) delivered(alerts []Alert) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.stats.Sent += uint64(len(alerts))
	for _, a := range alerts {
		if a.State == Firing {
			d.held[a.Fingerprint] = struct{}{}
		} else {
			delete(d.held, a.Fingerprint)
		}
	}
}

// unsend forgets that the alerts of a batch given up were sent, so that
// the next evaluation offers them again: a firing alert while it still
// fires, a resolution while the alert does not fire, as for a
// notification dropped from a full queue. Only a receiver that holds the
// alert firing, from an earlier send, is owed its resolution, and should
// the alert fire again first, the new firing alert; one that never took
// it firing is owed none. A firing alert given up while the receiver
// holds an older one (a re-send to a Refresher, or the alert firing
// again) is offered again at once, to any notifier. An alert queued
// again since, in a newer state, is left to that notification.
func (d *dispatcher) unsend(batch []Alert) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for i, a := range batch {
		if notLast(batch, i) {
			continue // the batch's last notification of the alert says where it stands
		}
		_, held := d.held[a.Fingerprint]
		switch {
		case a.State == Firing && !held:
			d.unhear(a.Fingerprint, false)
		case d.queued(a.Fingerprint):
		case a.State == Firing:
			d.sent[a.Fingerprint] = firingSent{missed: true}
		case a.State == Resolved && held:
			if _, firing := d.sent[a.Fingerprint]; !firing {
				// The receiver still has it firing: offer the
				// resolution again, or the alert firing again.
				d.owe(a)
			}
		}
	}
}

// refuse notes the alerts of a batch that failed for good: a firing
// alert the receiver does not hold firing is owed no resolution, and it
// is not offered again before it resolves (a Refresher's is, after
// ResendInterval).
func (d *dispatcher) refuse(batch []Alert) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for i, a := range batch {
		if notLast(batch, i) || a.State != Firing {
			continue
		}
		if _, held := d.held[a.Fingerprint]; !held {
			d.unhear(a.Fingerprint, true)
		}
	}
}

// notLast reports whether a notification of the same alert follows
// batch[i] in batch.
func notLast(batch []Alert, i int) bool {
	return slices.ContainsFunc(batch[i+1:], func(a Alert) bool { return a.Fingerprint == batch[i].Fingerprint })
}

// queued reports whether a notification of the alert is queued; d.mu is
// held.
func (d *dispatcher) queued(fingerprint string) bool {
	_, ok := d.index[fingerprint]
	return ok
}

// unhear forgets a firing alert that was given up and that the receiver
// does not hold firing: the receiver is owed no resolution for it, and
// one queued since is taken back, unless a firing alert queued after it
// may yet be delivered. If no firing alert is queued, a resolution owed
// is forgotten and the alert is offered again while it fires, or,
// refused, not before a Refresher's ResendInterval; d.mu is held. With a
// firing alert queued, a resolution owed is that alert's (the alert
// firing again forgives an older one): it is kept.
func (d *dispatcher) unhear(fingerprint string, refused bool) {
	firing := false
	kept := d.queue[:0]
	for _, a := range d.queue {
		if a.Fingerprint == fingerprint && !firing {
			if a.State == Resolved {
				continue
			}
			firing = true
		}
		kept = append(kept, a)
	}
	if len(kept) < len(d.queue) {
		clear(d.queue[len(kept):])
		d.queue = kept
		clear(d.index)
		for i, a := range d.queue {
			d.index[a.Fingerprint] = i
		}
	}
	if firing {
		return // to the firing alert queued
	}
	d.forgive(fingerprint)
	if s, ok := d.sent[fingerprint]; ok && refused {
		s.refused = true
		d.sent[fingerprint] = s
	} else {
		delete(d.sent, fingerprint)
	}
}

// owe keeps a resolution that did not go out until it does, or the alert
// fires again, when the new firing alert is offered at once in its
// place: the receiver holds the old one; d.mu is held.
func (d *dispatcher) owe(a Alert) {
	if _, ok := d.owed[a.Fingerprint]; !ok {
		d.owedAll.Add(1)
	}
	d.owed[a.Fingerprint] = a
	d.sent[a.Fingerprint] = firingSent{missed: true}
}

// forgive forgets the resolution owed for fingerprint, if any; d.mu is
// held.
func (d *dispatcher) forgive(fingerprint string) {
	if _, ok := d.owed[fingerprint]; ok {
		delete(d.owed, fingerprint)
		d.owedAll.Add(-1)
	}
}

// notify calls the notifier, turning a panic into a permanent
// *PanicError.
func (d *dispatcher) notify(ctx context.Context, batch []Alert) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = kanban.Permanent(newPanicError("notifier "+d.name, v))
		}
	}()
	// A copy: the notifier may sort the batch, or keep it, and the
	// dispatcher reads the batch's order after the call (which alerts
	// went out, which notification of an alert is its last).
	return d.n.Notify(ctx, slices.Clone(batch))
}

func (d *dispatcher) count(f func(*NotifierStats)) {
	d.mu.Lock()
	f(&d.stats)
	d.mu.Unlock()
}

// flush waits until nothing is queued or being sent.
func (d *dispatcher) flush(ctx context.Context) error {
	d.mu.Lock()
	if (len(d.queue) == 0 && !d.busy) || d.ctx.Err() != nil {
		d.mu.Unlock()
		return nil
	}
	c := make(chan struct{})
	d.idle = append(d.idle, c)
	d.mu.Unlock()
	select {
	case <-c:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (d *dispatcher) snapshot() NotifierStats {
	d.mu.Lock()
	defer d.mu.Unlock()
	s := d.stats
	s.Queued = len(d.queue)
	return s
}
