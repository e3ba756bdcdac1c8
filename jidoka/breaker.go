package jidoka

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/taipattern/taikit/tai"
)

// Breaker is a circuit breaker: it stops calling a dependency that keeps
// failing, and lets a few probe calls through after a while to see whether
// it has recovered.
//
// It is closed at first: calls run and their results are counted. When a
// trip rule of its BreakerOptions holds it opens: calls are refused with an
// *OpenError until the open period ends, then it turns half-open and gives
// probe leases to up to HalfOpenProbes calls at a time. HalfOpenSuccesses
// probe successes close it; a probe failure opens it again, for longer with
// back-off. Trip, Reset, ForceOpen, Disable and MetricsOnly change the state
// by hand.
//
// Every state change starts a new generation; results of calls admitted in
// an earlier generation are ignored. In the closed state a call touches no
// lock but a time window's: with only a consecutive-failure rule a success
// reads two shared words (the period and the failure count) and no clock;
// a count window adds an atomic add (the call's slot) and four atomic
// reads (the slot, the totals), and a swap and an add when the call's
// outcome differs from the one its slot held; a time window takes a short
// lock. A call refused while the breaker is open reads one atomic word
// more, and in the last second of the open period (its last half, if it is
// shorter) the clock: a call that comes when the period has ended is let
// through even if the timer that turns the breaker half-open has not run
// yet, as a caller that waited for the RetryAfter hint does.
//
// The breaker reads the time itself (the monotonic clock, through
// time.Since); a test controls it with testing/synctest.
//
// A Breaker is a tai.Guard and a tai.Namer. It is safe for concurrent use.
// Make one with NewBreaker; the zero Breaker is not usable: it runs no
// call (Do and Allow return an error saying it was not made by
// NewBreaker), State and Snapshot report StateForcedOpen, and Trip, Reset,
// ForceOpen, Disable and MetricsOnly do nothing.
type Breaker struct {
	cur   atomic.Pointer[period]
	s     settings
	epoch time.Time // times are nanoseconds since epoch, read with time.Since
	wall  wallClock // makes times of them for events, errors and Snapshot

	mu        sync.Mutex // serialises state changes and half-open leases
	trips     int
	lastLease uint64
	events    queue[Event]
}

// period is one generation of a Breaker: the state it is in and what that
// state counts. A call keeps the period it was admitted in and reports to
// it; a period that is no longer current ignores the reports.
type period struct {
	state  State
	gen    uint64
	since  int64
	reason string

	// closed and metrics-only
	consec atomic.Int64
	count  *countWindow
	window *timeWindow
	done   func(error) // cached done of Allow, when no start time is needed

	// open and forced open; half-open with every lease taken
	reject *OpenError
	until  int64
	timer  *time.Timer
	ending atomic.Bool // the open period ends within openLead: refusals read the clock
	// handOff, guarded by Breaker.mu: State or Snapshot ended this open
	// period and left the event of the change to its timer to deliver.
	handOff bool

	// half-open, guarded by Breaker.mu
	leases    []lease
	successes int
}

type lease struct {
	id    uint64 // 0: free
	start int64
}

// errBreakerNotMade is the error of a call through a Breaker that
// NewBreaker did not make: it has no period to run the call in.
var errBreakerNotMade = errors.New("jidoka: Breaker not made by NewBreaker")

// errPanicked stands for the result of a call that panicked.
var errPanicked = errors.New("jidoka: call panicked")

// NewBreaker returns a closed breaker configured by opts, or an error naming
// the first invalid field and its value.
func NewBreaker(opts BreakerOptions) (*Breaker, error) {
	s, err := opts.settings()
	if err != nil {
		return nil, err
	}
	b := &Breaker{s: s, epoch: time.Now()}
	b.cur.Store(b.newPeriod(StateClosed, 1, "new", 0, nil))
	return b, nil
}

// now returns the time in nanoseconds since b.epoch. time.Since reads only
// the monotonic clock, about half the cost of time.Now.
func (b *Breaker) now() int64 { return int64(time.Since(b.epoch)) }

// at converts a reading of now to a time.Time whose wall clock reads as
// today's, however the wall clock was set since the breaker was made.
func (b *Breaker) at(n int64) time.Time { return b.wall.at(b.epoch, time.Duration(n)) }

// Name returns BreakerOptions.Name.
func (b *Breaker) Name() string { return b.s.name }

// State returns the state the next call finds. It reads one atomic word,
// and the clock when the breaker is open. Once the open period has ended
// the breaker is half-open, whether or not the timer that turns it
// half-open has run yet: State then makes that change itself, as a call
// would. It does not deliver the event of the change: OnStateChange never
// runs on a goroutine that only reads the breaker (which may hold a lock
// of its own that a listener takes); the timer, whose time has come,
// delivers it.
func (b *Breaker) State() State {
	p := b.cur.Load()
	if p == nil {
		return StateForcedOpen // the zero Breaker refuses every call
	}
	if b.ended(p) {
		b.mu.Lock()
		if b.cur.Load() == p {
			b.handOffLocked(p)
		}
		p = b.cur.Load()
		b.mu.Unlock()
	}
	return p.state
}

// ended reports whether p is an open period that has ended, its timer not
// having turned the breaker half-open yet.
func (b *Breaker) ended(p *period) bool {
	return p.state == StateOpen && b.now() >= p.until
}

// Do calls fn if the breaker admits a call and counts its result; it returns
// fn's error, or an *OpenError (errors.Is ErrOpen) without calling fn. When
// ctx is already done it returns ctx.Err() without calling fn or counting.
// A panic in fn counts as a failure and is passed on. A runtime.Goexit in
// fn (t.FailNow in a test) counts as a failure too, before the goroutine
// ends: a half-open probe reports it, and so gives its lease back. Without
// an Ignore of one's own, the error of a call whose ctx was canceled by
// the time fn returned is not counted, whatever it is: the caller gave up,
// and the dependency is not to blame (see BreakerOptions.Ignore).
func (b *Breaker) Do(ctx context.Context, fn func(context.Context) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	p := b.cur.Load()
	if p == nil {
		return errBreakerNotMade
	}
	var id uint64
	if p.state != StateClosed {
		if p.state == StateForcedOpen || p.state == StateOpen && !p.ending.Load() {
			return p.reject
		}
		var err error
		if p, id, err = b.admit(p); err != nil {
			return err
		}
		if p.state == StateDisabled {
			return fn(ctx)
		}
	}
	var start int64
	if b.s.timing {
		start = b.now()
	}
	ok := false
	defer func() {
		if !ok {
			b.finish(p, id, start, errPanicked, false)
		}
	}()
	err := fn(ctx)
	ok = true
	// Only a failure asks the context: a success costs nothing more.
	gaveUp := err != nil && b.s.ignoreCanceledCalls && errors.Is(ctx.Err(), context.Canceled)
	b.finish(p, id, start, err, gaveUp)
	return err
}

// Execute calls fn through b as Do does and returns its value; the zero R
// when fn was not called.
func Execute[R any](ctx context.Context, b *Breaker, fn func(context.Context) (R, error)) (R, error) {
	var r R
	err := b.Do(ctx, func(ctx context.Context) error {
		var err error
		r, err = fn(ctx)
		return err
	})
	return r, err
}

// Allow is the two-step form of Do, for calls that do not fit in a
// function: it admits a call or returns an *OpenError, and the caller
// reports the result with done exactly once. A half-open probe that never
// reports gives its lease back after ProbeTimeout, and a second report of
// a probe is ignored; in the closed state done cannot tell one call from
// another, and a second report counts as another call's. A
// *tai.PanicError given to done, as a tai pipeline reports a panicking
// action, counts as a failure whatever IsFailure and Ignore say. When ctx
// is already done it returns ctx.Err(). done is told the error only, not
// ctx: unlike Do, it cannot tell that the caller canceled ctx while the
// call ran, and counts the error as the classifiers judge it. A caller
// that gives up reports context.Canceled, or an error that wraps it, to
// have the call ignored (a tai pipeline reports the action's error: an
// action that returns ctx.Err(), or an error wrapping it, when its ctx is
// canceled is not counted).
//
// In the closed state without a slow-call rule done is made once per
// generation, so Allow does not allocate.
func (b *Breaker) Allow(ctx context.Context) (done func(err error), err error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	p := b.cur.Load()
	if p == nil {
		return nil, errBreakerNotMade
	}
	p, id, err := b.admit(p)
	if err != nil {
		return nil, err
	}
	switch {
	case p.state == StateDisabled:
		return ignoreResult, nil
	case id == 0 && p.done != nil:
		return p.done, nil
	}
	var start int64
	if b.s.timing {
		start = b.now()
	}
	return func(err error) { b.finish(p, id, start, err, false) }, nil
}

func ignoreResult(error) {}

// admit returns the period a call runs in and its probe lease (0 outside
// half-open), or the rejection.
func (b *Breaker) admit(p *period) (*period, uint64, error) {
	for {
		switch p.state {
		case StateClosed, StateMetricsOnly, StateDisabled:
			return p, 0, nil
		case StateForcedOpen:
			return nil, 0, p.reject
		case StateOpen:
			if !p.ending.Load() || !b.ended(p) {
				return nil, 0, p.reject
			}
			// The open period has ended and its timer has not run yet:
			// a caller that waited for the RetryAfter hint comes at that
			// very moment, and is let through as the hint promised.
			b.expire(p)
			p = b.cur.Load()
			continue
		}
		id, err := b.acquire(p)
		if id != 0 || err != nil {
			return p, id, err
		}
		p = b.cur.Load() // the state changed while we waited for the lock
	}
}

// acquire takes a probe lease in the half-open period p. It returns 0 and
// no error when p is no longer current.
func (b *Breaker) acquire(p *period) (uint64, error) {
	now := b.now()
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.cur.Load() != p {
		return 0, nil
	}
	free := -1
	for i := range p.leases {
		if p.leases[i].id == 0 {
			free = i
			break
		}
	}
	if free < 0 { // reclaim the leases of probes that never reported
		for i := range p.leases {
			if now-p.leases[i].start >= b.s.probeTimeout {
				p.leases[i] = lease{}
				if free < 0 {
					free = i
				}
			}
		}
	}
	if free < 0 {
		return 0, p.reject
	}
	b.lastLease++
	p.leases[free] = lease{id: b.lastLease, start: now}
	return b.lastLease, nil
}

// finish reports the result of a call admitted in p. gaveUp: the caller
// canceled the call's context, and the default Ignore applies.
func (b *Breaker) finish(p *period, id uint64, start int64, err error, gaveUp bool) {
	if id != 0 {
		b.release(p, id, start, err, gaveUp)
	} else if p.state == StateClosed || p.state == StateMetricsOnly {
		b.record(p, start, err, gaveUp)
	}
}

// A result is what a call's error counts as.
type result uint8

const (
	resultSuccess result = iota
	resultFailure
	resultIgnored // neither: the call is not counted
)

// classify tells what err counts as; gaveUp as for finish.
func (b *Breaker) classify(err error, gaveUp bool) result {
	switch {
	case err == nil:
		return resultSuccess
	case err == errPanicked || isPanic(err): // a panic, not an error the classifiers judge
		return resultFailure
	case errors.Is(err, ErrBulkheadFull) || errors.Is(err, ErrOpen):
		// A guard inside this breaker refused the call: it never reached
		// the dependency, whose health is all the breaker counts.
		return resultIgnored
	case gaveUp || b.s.ignore(err):
		return resultIgnored
	case b.s.isFailure == nil || b.s.isFailure(err):
		return resultFailure
	}
	return resultSuccess
}

// isPanic reports whether err is, or wraps, a panic as a tai pipeline (or
// tai.DoTwoStep) reports it: a guard between the breaker and the action
// (a Timeout whose deadline passed) may have wrapped it.
// It walks the tree as errors.As would, without the allocation of a
// target.
func isPanic(err error) bool {
	for err != nil {
		switch e := err.(type) {
		case *tai.PanicError:
			return true
		case interface{ Unwrap() error }:
			err = e.Unwrap()
		case interface{ Unwrap() []error }:
			for _, err := range e.Unwrap() {
				if isPanic(err) {
					return true
				}
			}
			return false
		default:
			return false
		}
	}
	return false
}

// record counts the result of a call in the closed or metrics-only period p
// and trips the breaker when a rule holds.
func (b *Breaker) record(p *period, start int64, err error, gaveUp bool) {
	if err == nil && b.s.plain {
		if p.consec.Load() != 0 { // write only when there is something to reset
			p.consec.Store(0)
		}
		return
	}
	r := b.classify(err, gaveUp)
	if r == resultIgnored {
		return
	}
	failed := r == resultFailure
	var now int64
	if b.s.timing || p.window != nil {
		now = b.now()
	}
	var bits uint32
	if failed {
		bits |= bitFailure
	}
	if b.s.timing && now-start > b.s.slowDur {
		bits |= bitSlow
	}
	var c cause
	if b.s.consecutive > 0 {
		if failed {
			if n := p.consec.Add(1); n >= b.s.consecutive {
				c = cause{kind: causeConsecutive, n: n}
			}
		} else if p.consec.Load() != 0 {
			p.consec.Store(0)
		}
	}
	var t tally
	switch {
	case p.count != nil:
		t = p.count.record(bits)
	case p.window != nil:
		t = p.window.record(now, bits)
	}
	if c.kind == causeNone {
		c = b.rateCause(t)
	}
	if c.kind != causeNone && p.state == StateClosed {
		b.trip(p, c)
	}
}

// rateCause returns the rate rule that holds for t, if any.
func (b *Breaker) rateCause(t tally) cause {
	if t.calls == 0 || t.calls < b.s.minCalls {
		return cause{}
	}
	if b.s.failureRate > 0 && float64(t.failures)/float64(t.calls) >= b.s.failureRate {
		return cause{kind: causeFailureRate, t: t}
	}
	if b.s.slowRate > 0 && float64(t.slow)/float64(t.calls) >= b.s.slowRate {
		return cause{kind: causeSlowRate, t: t}
	}
	return cause{}
}

// release reports the result of a half-open probe holding lease id.
func (b *Breaker) release(p *period, id uint64, start int64, err error, gaveUp bool) {
	judged := false
	defer func() {
		if !judged {
			// Ignore or IsFailure panicked: the probe is not counted, as
			// in the closed state, and its lease is given back before
			// the panic goes on.
			b.settle(p, id, resultIgnored, false)
		}
	}()
	r := b.classify(err, gaveUp)
	judged = true
	var now int64
	if b.s.timing {
		now = b.now()
	}
	slow := b.s.timing && now-start > b.s.slowDur // an ignored result is never slow: see settle
	b.settle(p, id, r, slow)
}

// settle gives back lease id of the half-open period p and acts on the
// probe's result r.
func (b *Breaker) settle(p *period, id uint64, r result, slow bool) {
	b.mu.Lock()
	if b.cur.Load() != p {
		b.mu.Unlock()
		return
	}
	i := 0
	for i < len(p.leases) && p.leases[i].id != id {
		i++
	}
	if i == len(p.leases) { // reclaimed after ProbeTimeout
		b.mu.Unlock()
		return
	}
	p.leases[i] = lease{}
	switch {
	case r == resultIgnored:
	case r == resultFailure:
		b.trips++
		b.enter(p, StateOpen, "probe failed")
	case slow:
		b.trips++
		b.enter(p, StateOpen, "probe was slow")
	default:
		p.successes++
		if p.successes >= b.s.probeSuccess {
			b.trips = 0
			b.enter(p, StateClosed, fmt.Sprintf("%d probes succeeded", p.successes))
		}
	}
	b.mu.Unlock()
	b.deliver()
}

// trip opens the breaker if p is still the current period.
func (b *Breaker) trip(p *period, c cause) {
	b.mu.Lock()
	if b.cur.Load() != p {
		b.mu.Unlock()
		return
	}
	b.trips++
	b.enter(p, StateOpen, c.String(&b.s))
	b.mu.Unlock()
	b.deliver()
}

// openLead is how long before the end of an open period (at most half
// of it, rounded up to a whole nanosecond) the calls it refuses start to
// read the clock.
const openLead = time.Second

// openTimer is the function of the timer of the open period p. It runs
// first openLead before the period ends, and from then on a refused call
// reads the clock, so that one that comes when the period has ended is let
// through even if the timer has not run again by then; and again at the
// end, when it turns the breaker half-open.
//
// When it finds that State or Snapshot ended p (see handOffLocked), it
// delivers the events pending.
func (b *Breaker) openTimer(p *period) {
	b.mu.Lock()
	if b.cur.Load() != p {
		handOff := p.handOff
		b.mu.Unlock()
		if handOff {
			b.deliver()
		}
		return
	}
	if !p.ending.Load() {
		p.ending.Store(true)
		if rest := p.until - b.now(); rest > 0 {
			p.timer.Reset(time.Duration(rest))
			b.mu.Unlock()
			return
		}
	}
	b.expireLocked(p)
	b.mu.Unlock()
	b.deliver()
}

// expire ends the open period p: the breaker turns half-open.
func (b *Breaker) expire(p *period) {
	b.mu.Lock()
	if b.cur.Load() != p {
		b.mu.Unlock()
		return
	}
	b.expireLocked(p)
	b.mu.Unlock()
	b.deliver()
}

// expireLocked turns the breaker half-open at the end of the current open
// period p. Called with b.mu held.
func (b *Breaker) expireLocked(p *period) {
	b.enter(p, StateHalfOpen, "open period of "+time.Duration(p.until-p.since).String()+" ended")
}

// handOffLocked turns the breaker half-open at the end of the current open
// period p for State or Snapshot, which deliver no event: a goroutine that
// only reads the breaker may hold a lock of its own that a listener takes.
// The timer of p, whose time has come, is left to run and deliver the
// event. Called with b.mu held.
func (b *Breaker) handOffLocked(p *period) {
	p.handOff = true
	b.expireLocked(p)
}

// Trip opens the breaker now, as if a rule had tripped it: calls are
// refused for the open period (with back-off), then probes decide. The
// reason shows in events, errors and Snapshot. A breaker already open stays
// in its current open period; one whose open period has ended is half-open
// (see State), and opens again.
func (b *Breaker) Trip(reason string) {
	if reason == "" {
		reason = "tripped"
	}
	b.force(StateOpen, reason)
}

// Reset closes the breaker and clears its counts and back-off, from any
// state, including the forced ones. It always starts a new generation: on
// a closed breaker too, so that calls admitted before it do not count after
// it, though no event is delivered (the state did not change).
func (b *Breaker) Reset() { b.force(StateClosed, "reset") }

// ForceOpen refuses every call until Reset, Trip, Disable or MetricsOnly.
// It keeps the back-off: a Trip after it opens the breaker for longer, as
// after a failed half-open period.
func (b *Breaker) ForceOpen(reason string) {
	if reason == "" {
		reason = "forced open"
	}
	b.force(StateForcedOpen, reason)
}

// Disable lets every call through and counts nothing until Reset, Trip,
// ForceOpen or MetricsOnly. Like Reset, it clears the back-off: a trip
// after it opens the breaker for OpenDuration.
func (b *Breaker) Disable() { b.force(StateDisabled, "disabled") }

// MetricsOnly lets every call through and counts the results (Snapshot shows
// them) but never trips, until Reset, Trip, ForceOpen or Disable. Like
// Reset, it clears the back-off: a trip after it opens the breaker for
// OpenDuration.
func (b *Breaker) MetricsOnly() { b.force(StateMetricsOnly, "metrics only") }

func (b *Breaker) force(to State, reason string) {
	if b.cur.Load() == nil {
		return // the zero Breaker has no state to change
	}
	b.mu.Lock()
	p := b.cur.Load()
	if b.ended(p) {
		// The open period has ended: the breaker is half-open, whether or
		// not the timer has made it so, and a Trip opens it again.
		b.expireLocked(p)
		p = b.cur.Load()
	}
	if p.state == to && to != StateClosed {
		b.mu.Unlock()
		return
	}
	switch to {
	case StateOpen:
		b.trips++
	case StateClosed, StateDisabled, StateMetricsOnly:
		// Every call goes through, as when closed: the run of trips ends,
		// and a trip after this opens for OpenDuration.
		b.trips = 0
	}
	b.enter(p, to, reason)
	b.mu.Unlock()
	b.deliver()
}

// enter starts the next period in state to and queues its event. Called
// with b.mu held.
func (b *Breaker) enter(old *period, to State, reason string) {
	if old.timer != nil && !old.handOff {
		old.timer.Stop()
	}
	now := b.now()
	p := b.newPeriod(to, old.gen+1, reason, now, old)
	b.cur.Store(p)
	if b.s.onChange != nil && old.state != to {
		b.events.push(Event{Breaker: b.s.name, From: old.state, To: to, Reason: reason, Time: b.at(now), Generation: p.gen})
	}
}

func (b *Breaker) newPeriod(state State, gen uint64, reason string, now int64, old *period) *period {
	p := &period{state: state, gen: gen, since: now, reason: reason}
	switch state {
	case StateClosed, StateMetricsOnly:
		if b.s.windowSize > 0 {
			p.count = newCountWindow(b.s.windowSize)
		} else if b.s.windowDur > 0 {
			p.window = newTimeWindow(b.s.windowDur, b.s.buckets)
		}
		if !b.s.timing {
			p.done = func(err error) { b.record(p, 0, err, false) }
		}
	case StateOpen:
		d := b.s.openFor(b.trips)
		p.until = now + d
		if p.until < now { // a period too long to add: it ends at the farthest time
			p.until = math.MaxInt64
		}
		p.reject = &OpenError{Breaker: b.s.name, State: StateOpen, Reason: reason, until: b.at(p.until)}
		// The lead is at most half the period, rounded up, so that a period
		// of one nanosecond has one too: its timer runs first at once.
		lead := min(time.Duration(d-d/2), openLead)
		p.timer = time.AfterFunc(time.Duration(d)-lead, func() { b.openTimer(p) })
	case StateForcedOpen:
		p.reject = &OpenError{Breaker: b.s.name, State: StateForcedOpen, Reason: reason}
	case StateHalfOpen:
		p.leases = make([]lease, b.s.probes)
		why := reason
		if old != nil {
			why = old.reason
		}
		p.reject = &OpenError{Breaker: b.s.name, State: StateHalfOpen, Reason: why}
	}
	return p
}

func (b *Breaker) deliver() {
	if b.s.onChange != nil {
		b.events.drain(b.notify)
	}
}

// notify calls OnStateChange with ev, recovering and logging a panic.
func (b *Breaker) notify(ev Event) {
	defer func() {
		if v := recover(); v != nil {
			logPanic(b.s.logger, "breaker", b.s.name, newPanicError("breaker OnStateChange", v))
		}
	}()
	b.s.onChange(ev)
}

// Snapshot returns the state, counts and rates of the breaker at one moment.
// Its State is what State returns: an open period that has ended is turned
// half-open, as State does, and the event left to the breaker's timer to
// deliver: OnStateChange never runs on the goroutine of Snapshot.
func (b *Breaker) Snapshot() Snapshot {
	if b.cur.Load() == nil {
		return Snapshot{State: StateForcedOpen, Reason: errBreakerNotMade.Error()}
	}
	b.mu.Lock()
	p := b.cur.Load()
	if b.ended(p) {
		b.handOffLocked(p)
		p = b.cur.Load()
	}
	s := b.snapshotLocked(p)
	b.mu.Unlock()
	return s
}

// snapshotLocked returns the Snapshot of the current period p. Called with
// b.mu held.
func (b *Breaker) snapshotLocked(p *period) Snapshot {
	s := Snapshot{
		Name:                b.s.name,
		State:               p.state,
		Reason:              p.reason,
		Since:               b.at(p.since),
		Generation:          p.gen,
		Trips:               b.trips,
		ConsecutiveFailures: int(p.consec.Load()),
		ProbeSuccesses:      p.successes,
	}
	if p.state == StateOpen {
		s.NextProbe = b.at(p.until)
	}
	for _, l := range p.leases {
		if l.id != 0 {
			s.ProbesInFlight++
		}
	}
	var t tally
	switch {
	case p.count != nil:
		t = p.count.tally()
	case p.window != nil:
		t = p.window.tally(b.now())
	}
	s.Calls, s.Failures, s.SlowCalls = int(t.calls), int(t.failures), int(t.slow)
	if t.calls > 0 {
		s.FailureRate = float64(t.failures) / float64(t.calls)
		s.SlowCallRate = float64(t.slow) / float64(t.calls)
	}
	return s
}

// cause is the trip rule that holds, formatted only when it trips.
type cause struct {
	kind uint8
	n    int64
	t    tally
}

const (
	causeNone = iota
	causeConsecutive
	causeFailureRate
	causeSlowRate
)

func (c cause) String(s *settings) string {
	switch c.kind {
	case causeConsecutive:
		return fmt.Sprintf("%d consecutive failures", c.n)
	case causeFailureRate:
		return fmt.Sprintf("failure rate %.3g over %d calls reached %.3g", float64(c.t.failures)/float64(c.t.calls), c.t.calls, s.failureRate)
	case causeSlowRate:
		return fmt.Sprintf("slow-call rate %.3g over %d calls reached %.3g", float64(c.t.slow)/float64(c.t.calls), c.t.calls, s.slowRate)
	}
	return ""
}
