package heijunka

import (
	"context"
	"errors"
	"math"
	"math/bits"
	"sync"
	"sync/atomic"
	"time"
)

// LimiterOptions configures a Limiter. The zero value is ready to use.
type LimiterOptions struct {
	// Name names the limiter in errors and to the tai pipeline (tai.Namer).
	// Default "heijunka.limiter".
	Name string
}

// Limiter is one token bucket, run as the generic cell rate algorithm
// (GCRA). Its state is one atomic word, the theoretical arrival time: the
// instant at which the bucket would be full again (beside it, a call given
// a time that books events notes the time, which a change of Limit reads).
// A call reads the clock once, computes the next state and installs it
// with a compare-and-swap; there is no mutex on the hot path, and a denied
// call writes nothing. (A call that meets a change of Limit under way
// waits for it to finish, and is then decided under the new Limit.)
//
// A new Limiter starts full: Burst events may pass at once. A request for
// more events than Burst can never pass (AllowN reports false, ReserveN is
// not OK, WaitN fails at once), but during a warm-up: then one for no more
// than the full Burst passes once the climb reaches a step whose Burst
// takes it, a Decision's RetryAfter says when, and WaitN waits for that
// step. A closed Limit (Rate 0) admits nothing; an Unlimited one admits
// everything.
//
// The methods without a time read time.Now; each has a form taking the
// time explicitly (AllowN, DecideN, ReserveN, SetLimitAt), a pure function
// of that time. Do not mix explicit times with the Limiter's own reading of
// the clock unless they come from the same source. (Tests that need the
// clock itself to move use testing/synctest.) A time more than about 73
// years from the Limiter's creation counts as that far, no further.
//
// A time earlier than one used before counts as that much longer to wait:
// going back never frees events, also across a change of Limit made at
// such a time (SetLimitAt, or a WarmUp's StartAt), which counts the debt
// as a change at the latest time used would. During a warm-up, a time
// before the step in force was set counts as that many intervals of the
// full Limit, not of the step's (see WarmUp).
//
// Code moving from golang.org/x/time/rate writes rate.NewLimiter(r, b) as
// NewLimiter(Limit{Rate: r, Burst: b}, LimiterOptions{}), rate.Inf as
// Unlimited() (see Limit), SetBurst(b) as SetLimit(l.Limit().WithBurst(b))
// (outside a warm-up, which SetLimit ends), and TokensAt(t) as
// DecideN(t, 0).Remaining: whole events, never below 0 (ResetAfter tells a
// debt). It finds the same decisions for the same calls and times, but for
// these differences: a Limit of Rate 0 admits nothing (rate.Limiter spends
// what is left of its burst); a finite Rate with Burst 0, or one whose Burst
// takes more than ten years to refill, is an invalid Limit; n < 0 is refused
// (rate.Limiter takes it for events given back); a WaitN that cannot pass
// fails with a *LimitedError; SetLimitAt carries the events used, not the
// tokens left, so raising Burst frees the added events at once and lowering
// it still counts what was used, and switching from or to a closed or
// Unlimited Limit starts full (rate.Limiter keeps its tokens, or its
// deficit); a time going back frees nothing (rate.Limiter refills the
// stretch again); a Reservation canceled once its time has come (at once,
// for one that need not wait) or after the Limit changed returns nothing
// (rate.Limiter returns its tokens until that time has passed, a change of
// Limit or not); and the rate is rounded as Limit says.
//
// A WarmUp may drive the Limit of a Limiter after a recovery; the Limiter
// is used as before, and its calls raise the limit as the climb goes on.
//
// Use NewLimiter; the zero Limiter admits nothing. A Limiter is safe for
// concurrent use.
type Limiter struct {
	st    atomic.Pointer[state]
	climb atomic.Pointer[climb] // a warm-up under way, if any
	epoch time.Time
	name  string
	mu    sync.Mutex // serializes changes of the limit
}

// state is a Limit in force and the schedule kept under it: the
// theoretical arrival time, in nanoseconds since the limiter's epoch. A
// change of Limit retires the state, setting its schedule to retired so
// that no call can book under it any more, and installs a new state with
// the schedule converted. A schedule and the Limit it is counted in thus
// change together: a call that read one Limit cannot book on a schedule
// counted in another, nor book after the conversion has read it.
type state struct {
	p params
	// back counts a time gone back before the state was installed by a
	// WarmUp's climb: see goneBack.
	back goneBack
	tat  atomic.Int64
	// hi is the latest time given to a call that booked events under
	// this state, or at which a change of Limit converted the schedule
	// into it (minTAT for none); see saw and converted.
	hi atomic.Int64

	// The reservations booked under this state, as far as a cancel needs
	// them (see Reservation.cancel); guarded by resMu. Allow and Decide
	// book without it: their events act when they are booked.
	resMu sync.Mutex
	// top is the latest reservation of events booked that was not
	// canceled in full (nil for none), and lastAct when the latest events
	// of those up to it act (math.MinInt64 for none). Each reservation
	// links to the top before it, so that canceling the top in full puts
	// back the latest one before it whose events still act.
	top     *Reservation
	lastAct int64
	// seq numbers the bookings of events; end is the schedule as the
	// latest booking or cancel left it, so that a schedule beyond it holds
	// events allowed since; allowed is the number of the latest booking
	// found with events allowed after it (0 for none).
	seq, allowed uint64
	end          int64
}

// newState returns a state of the Limit p with the schedule tat, used
// last at hi.
func newState(p *params, tat, hi int64) *state {
	st := &state{p: *p, back: goneBack{since: minTAT}, lastAct: math.MinInt64, end: tat}
	st.tat.Store(tat)
	st.hi.Store(hi)
	return st
}

// newClimbState returns a state of p, a step of a climb to a full Limit
// of interval fullIv, with the schedule tat converted into it at hi: a
// call at a time before hi counts the time gone back to it as events of
// the full Limit (see goneBack).
func newClimbState(p *params, tat, hi, fullIv int64) *state {
	st := newState(p, tat, hi)
	st.back = goneBack{since: hi, fullIv: fullIv}
	return st
}

// goneBack is how a state a climb installed counts the time from a call
// at a time before since, when the climb converted the debt into it at
// its start or at a step, back to since: as events of the full Limit,
// fullIv nanoseconds each. Counted at the step's own slower rate, as one
// Limit counts a time going back, the time gone back would be fewer
// events than the full Limit counts for it, and events that the full
// Limit would hold back would pass, in a window reaching back before
// since. The debt counted at since is one the full Limit may have owed
// then (see climb.startSchedule); before since it may have owed that
// debt and one event more each interval of its own.
type goneBack struct {
	since  int64 // minTAT for a state no climb installed
	fullIv int64
}

// base returns the schedule from which a call at now, before since,
// books events under p, given the schedule tat: as a call at since
// would; and the schedule the call is decided from: that and the time
// gone back, counted in events of the full Limit, converted into p.
func (g goneBack) base(p *params, tat, now int64) (from, base int64) {
	from = max(tat, g.since)
	back := g.since - now
	if p.interval > g.fullIv {
		// Rounded up: a time gone back never frees a nanosecond.
		b := math.Ceil(float64(back) * float64(p.interval) / float64(g.fullIv))
		if b >= float64(maxSchedule) {
			back = maxSchedule
		} else {
			back = max(back, int64(b))
		}
	}
	// Within maxSchedule, as every schedule: sums with it stay in int64.
	return from, from + min(back, maxSchedule-from)
}

// decide is p.decide for a call at now with the schedule tat, counting
// a time before since as base says: it returns the schedule to store
// (tat when nothing is booked) and the Decision. The Decision's
// RetryAfter is counted from now's schedule; see retry.
func (g goneBack) decide(p *params, tat, now int64, n int) (int64, Decision) {
	if now >= g.since {
		return p.decide(tat, now, n)
	}
	from, base := g.base(p, tat, now)
	next, d := p.decide(base, now, n)
	if next == base {
		return tat, d
	}
	return from + int64(n)*p.interval, d
}

// retry returns how long after now n events, no more than p's Burst and
// denied at now with the schedule tat, pass under p if nothing else
// happens, given wait, decide's RetryAfter: a call before since owes
// less of the time gone back the later it comes, so it passes sooner
// than wait, at the first time found by bisection (whether the call
// passes rises with its time). From since on, wait is exact.
func (g goneBack) retry(p *params, tat, now int64, n int, wait int64) int64 {
	if now >= g.since {
		return wait
	}
	lo, hi := now+1, now+wait // they pass at now+wait: see decide
	for lo < hi {
		mid := lo + (hi-lo)/2
		if _, d := g.decide(p, tat, mid, n); d.Allowed {
			hi = mid
		} else {
			lo = mid + 1
		}
	}
	return lo - now
}

// saw records that a call at now, a time its caller gave (AllowN, DecideN,
// ReserveN), is about to book events under st. It runs before the call's
// compare-and-swap, so that a change of Limit, which reads hi once it has
// retired the state, finds the time of every such booking made under it
// (and perhaps of one that lost its race and books nothing, which only
// makes the change count from a later time). The calls that read the
// Limiter's own clock do not note it, and cost no more for it: that clock
// does not go back, and SetLimit reads it once no call can book under the
// old Limit, later than any of theirs.
func (st *state) saw(now int64) {
	for h := st.hi.Load(); now > h; h = st.hi.Load() {
		if st.hi.CompareAndSwap(h, now) {
			return
		}
	}
}

// converted returns the schedule of a change of Limit at now from the
// retired state old, given conv, which converts old's schedule at a time,
// and the time the new state counts as used. The debt is counted at now;
// but when events were booked under old at a later time (a time going
// back), or a change converted the schedule into old at one, the schedule
// is at least the one a change at that time gives: the time gone back
// counts as that much longer to wait. Counted at now alone, a faster
// Limit would pay off the time gone back at its own rate, as if it were
// events, and let events pass that the change at the later time would
// not.
func (old *state) converted(now int64, conv func(at int64) int64) (tat, hi int64) {
	tat = conv(now)
	hi = old.hi.Load()
	if hi > now {
		tat = max(tat, conv(hi))
	}
	return tat, max(hi, now)
}

// retired is the schedule of a state that a change of Limit has replaced.
// No schedule reaches it (they stay within maxSchedule).
const retired = math.MaxInt64

// NewLimiter returns a full Limiter for limit, or an error if limit is
// invalid (see Limit).
func NewLimiter(limit Limit, opts LimiterOptions) (*Limiter, error) {
	p, err := limit.params()
	if err != nil {
		return nil, err
	}
	l := &Limiter{name: opts.Name, epoch: time.Now()}
	if l.name == "" {
		l.name = "heijunka.limiter"
	}
	l.st.Store(newState(&p, minTAT, minTAT))
	return l, nil
}

// Name returns the limiter's name.
func (l *Limiter) Name() string { return l.name }

// Limit returns the Limit in force now; during a warm-up, the limit of the
// step the climb has reached.
func (l *Limiter) Limit() Limit {
	if c := l.climb.Load(); c != nil {
		l.tick(c, l.nanos())
	}
	if st := l.st.Load(); st != nil {
		return st.p.limit
	}
	return Limit{}
}

// nanos reads the clock once, as nanoseconds since the limiter's epoch.
func (l *Limiter) nanos() int64 { return clampNow(time.Since(l.epoch)) }

func (l *Limiter) rel(t time.Time) int64 { return clampNow(t.Sub(l.epoch)) }

// stateAt returns the state in force at now, after raising a warm-up's
// limit if the climb has reached a new step. Outside a warm-up it costs one
// atomic load more than reading st.
func (l *Limiter) stateAt(now int64) *state {
	if c := l.climb.Load(); c != nil {
		l.tick(c, now)
	}
	return l.st.Load()
}

// awaitChange waits for the change of Limit under way, which holds l.mu
// from retiring the old state to installing the new, and returns the new
// state.
func (l *Limiter) awaitChange() *state {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.st.Load()
}

// Allow reports whether one event may pass now, and records it if so.
func (l *Limiter) Allow() bool { return l.allow(l.nanos(), 1, false) }

// AllowN reports whether n events may pass at time now, and records them if
// so. AllowN with n = 0 records nothing and reports whether the limiter
// is within its burst, as DecideN's Decision does: true unless Reserve or
// Wait have booked events past the burst, a WarmUp's Start kept a debt
// past the Burst of the climb's first step (see WarmUp), or now is so far
// before a time used already that the time gone back, which counts as
// debt, passes the burst; false on the zero Limiter, which admits
// nothing. n < 0 reports false, and so
// does n > Burst under a finite Limit; an Unlimited one admits any n.
func (l *Limiter) AllowN(now time.Time, n int) bool { return l.allow(l.rel(now), n, true) }

// allow decides on n events at now and books them if they pass; given
// reports that the caller gave now (see state.saw).
func (l *Limiter) allow(now int64, n int, given bool) bool {
	// A state retired by a change of Limit ends the inner loop; the outer
	// one starts again under the new state.
	for st := l.stateAt(now); ; st = l.awaitChange() {
		if st == nil || st.p.mode != modeFinite {
			return st != nil && n >= 0 && (n == 0 || st.p.mode == modeUnlimited)
		}
		p := &st.p
		if uint(n) > uint(p.burst) {
			return false
		}
		inc := int64(n) * p.interval
		for {
			tat := st.tat.Load()
			if tat == retired {
				break
			}
			next, over := max(tat, now)+inc, int64(0)
			if now < st.back.since {
				// A time before the climb's step was set: decided with
				// the time gone back, booked as at since.
				from, base := st.back.base(p, tat, now)
				next, over = from+inc, base-from
			}
			if next+over-now > p.tolerance {
				return false
			}
			if n == 0 {
				return true
			}
			if given {
				st.saw(now)
			}
			if st.tat.CompareAndSwap(tat, next) {
				return true
			}
		}
	}
}

// Decide is like Allow but returns the whole Decision: remaining capacity,
// retry-after and reset-after.
func (l *Limiter) Decide() Decision { return l.decide(l.nanos(), 1, false) }

// DecideN is like AllowN but returns the whole Decision. For n < 0 it
// returns a denied Decision with RetryAfter InfDuration.
func (l *Limiter) DecideN(now time.Time, n int) Decision { return l.decide(l.rel(now), n, true) }

func (l *Limiter) decide(now int64, n int, given bool) Decision {
	st := l.stateAt(now)
	if st == nil || n < 0 {
		d := Decision{RetryAfter: InfDuration}
		if st != nil {
			d.Limit = st.p.limit
		}
		return d
	}
	for {
		tat := st.tat.Load()
		if tat == retired { // the Limit changed: decide under the new one
			st = l.awaitChange()
			continue
		}
		next, d := st.back.decide(&st.p, tat, now, n)
		if given && next != tat {
			st.saw(now)
		}
		if next == tat || st.tat.CompareAndSwap(tat, next) {
			if !d.Allowed && st.p.mode == modeFinite {
				if d.RetryAfter != InfDuration {
					d.RetryAfter = time.Duration(st.back.retry(&st.p, tat, now, n, int64(d.RetryAfter)))
				}
				if c := l.climb.Load(); c != nil {
					if d.RetryAfter == InfDuration {
						// More events than the Burst: a warm-up under
						// way may reach a step that takes them.
						if wait, _, ok := c.retryFor(&st.p, st.back, tat, st.hi.Load(), now, n); ok {
							d.RetryAfter = time.Duration(wait)
						}
					} else {
						d.RetryAfter = time.Duration(c.sooner(&st.p, st.back, tat, st.hi.Load(), now, n, int64(d.RetryAfter)))
					}
				}
			}
			return d
		}
	}
}

// Admit makes the Limiter a tai.Gate shared by all keys: it admits one
// event now or returns a *LimitedError (errors.Is ErrLimited) carrying the
// Decision. The key is ignored; use Keyed for a limit per key.
func (l *Limiter) Admit(_ context.Context, _ string) error {
	d := l.decide(l.nanos(), 1, false)
	if d.Allowed {
		return nil
	}
	return &LimitedError{Name: l.name, Decision: d}
}

// Reservation is a promise of events at a future time, made by Reserve or
// ReserveN: the events are booked whether or not they can pass now; Delay
// tells how long to wait before acting, and Cancel returns the events if
// they will not be used.
//
// A Reservation is used through the pointer Reserve returns, and is safe
// for concurrent use: however many goroutines hold that pointer and
// however often they cancel, the events are returned at most once. Do not
// copy the Reservation value itself (go vet reports copies).
type Reservation struct {
	lim *Limiter
	st  *state // the state booked under
	n   int
	act int64 // when the events may act, nanoseconds since the limiter's epoch
	// prev and prevLast are the state's top and lastAct before it, put
	// back when it is canceled in full as the latest; links is how many
	// reservations lead down from it through prev. prev is nil also when
	// that top's time had come by the booking, which no cancel needs, and
	// past maxLinks, so that a chain of reservations held by no one is
	// not kept alive. Guarded by the state's resMu, as are seq, the
	// booking's number among the state's, and dropped: the reservation
	// was canceled before its time, so its events never act.
	prev     *Reservation
	prevLast int64
	seq      uint64
	canceled atomic.Bool
	links    uint8
	ok       bool
	dropped  bool
}

// maxLinks bounds the chain of reservations a state keeps alive. A cancel
// that would pass the end of the chain puts back the lastAct kept with it,
// which counts every booking before: it returns no more, and perhaps less,
// than the whole chain would let it.
const maxLinks = 64

// OK reports whether the reservation was granted. It is false when n is
// negative or exceeds Burst (but for an Unlimited Limit, which grants any
// n), when the Limit is closed and n is not 0, on the zero Limiter, and
// when the wait would exceed the limiter's horizon (about 146 years
// ahead; less, down to about 136 years, for a time more than 63 years
// after the limiter's creation) or the caller's bound.
func (r *Reservation) OK() bool { return r != nil && r.ok }

// Delay returns how long to wait before acting, by the clock: 0 if the
// events may act now, InfDuration if the reservation is not OK.
func (r *Reservation) Delay() time.Duration {
	if !r.OK() {
		return InfDuration
	}
	return r.delay(r.lim.nanos())
}

// DelayFrom returns how long after now the events may act; InfDuration if
// the reservation is not OK.
func (r *Reservation) DelayFrom(now time.Time) time.Duration {
	if !r.OK() {
		return InfDuration
	}
	return r.delay(r.lim.rel(now))
}

func (r *Reservation) delay(now int64) time.Duration {
	if r.act <= now {
		return 0
	}
	return time.Duration(r.act - now)
}

// Cancel returns the reserved events to the limiter, as far as the
// reservation is still in the future, so other callers may use them. As in
// golang.org/x/time/rate, events booked after this reservation keep their
// times, so only the part of it that nothing booked later queues behind
// comes back: cancel the latest reservation first to return all. Only
// the first Cancel or CancelAt does anything; so does nothing a Cancel on a
// reservation that is not OK, whose time has come, or made before the Limit
// changed (SetLimit, or a warm-up's step). Nor does one once an event
// was allowed after the reservation at its time or later (by Allow, Decide
// or a WaitN that did not wait): the reservation's time has thus come,
// even if CancelAt is given a time earlier than the event's. An event
// allowed before the reservation's time, in room that a cancel before
// made, does not make that time come.
func (r *Reservation) Cancel() {
	if r.OK() {
		r.cancel(r.lim.nanos(), true)
	}
}

// CancelAt is Cancel at time now.
func (r *Reservation) CancelAt(now time.Time) {
	if r.OK() {
		r.cancel(r.lim.rel(now), false)
	}
}

// cancel cancels r at now, unless it was canceled before, and reports
// whether r's time had come, so that its events act and nothing came back.
// clock reports that now was read from the Limiter's clock, not given.
func (r *Reservation) cancel(now int64, clock bool) (come bool) {
	if !r.canceled.CompareAndSwap(false, true) {
		return false
	}
	if r.act <= now {
		return true
	}
	// A reservation under an Unlimited Limit has an interval of 0, and
	// one under a closed Limit is OK only for no events: both return
	// nothing, as one of no events does.
	if r.n == 0 {
		return false
	}
	// What was booked after r acts at times given already: returning r's
	// share under it would let a new booking act with it, beyond the
	// burst. The bookings after r may move down into r's place in the
	// schedule only as far as none comes before its own time: by r's
	// events' share less the time from r's act to the latest act booked
	// after r. Events allowed at once act by now; the reservations after
	// r act by the state's lastAct, unless every one of them was canceled
	// in full (r is the top again). Those canceled before their time, as
	// r is from here on, never act: once the ones after them are canceled
	// in full, lastAct no longer counts them. A state retired since, by a
	// change of Limit, takes nothing back.
	//
	// An event allowed after r in the schedule at r's time or later
	// shows that r's time has come, though now, earlier than that event's
	// time, says it has not. Such a cancel returns nothing, as it would at
	// that time. (An event allowed before r's time, in room that a cancel
	// before made, acts by now: it holds r's events back no more than the
	// others acting by now.)
	st := r.st
	inc := int64(r.n) * st.p.interval
	st.resMu.Lock()
	defer st.resMu.Unlock()
	if tat := st.tat.Load(); tat == retired || st.cameBy(tat, r, now, clock) {
		return tat != retired
	}
	r.dropped = true
	later := now
	if st.top != r {
		later = max(later, st.lastAct)
	}
	back := inc - max(later-r.act, 0)
	if back <= 0 {
		return false
	}
	for {
		tat := st.tat.Load()
		if tat == retired || st.cameBy(tat, r, now, clock) {
			return tat != retired // an event allowed since: r's time came
		}
		if st.tat.CompareAndSwap(tat, tat-back) {
			st.end = tat - back
			break
		}
	}
	if back == inc && st.top == r {
		// The latest booking before r becomes the top, passing over
		// those canceled before their time: what they keep of the
		// schedule never acts, so their times hold nothing back.
		top, last := r.prev, r.prevLast
		for top != nil && top.dropped {
			top, last = top.prev, top.prevLast
		}
		st.top, st.lastAct = top, last
	}
	return false
}

// Reserve books one event now; see Reservation.
func (l *Limiter) Reserve() *Reservation {
	r := new(Reservation)
	l.reserve(r, l.nanos(), 1, maxAhead, false)
	return r
}

// ReserveN books n events at time now; see Reservation.
func (l *Limiter) ReserveN(now time.Time, n int) *Reservation {
	r := new(Reservation)
	l.reserve(r, l.rel(now), n, maxAhead, true)
	return r
}

// reserve books n events into r, which must be zero, unless they could
// not act within maxDelay; given reports that the caller gave now.
func (l *Limiter) reserve(r *Reservation, now int64, n int, maxDelay int64, given bool) {
	// As in allow, a retired state starts the booking again under the new.
	for st := l.stateAt(now); ; st = l.awaitChange() {
		r.lim, r.st, r.n, r.act = l, st, n, now
		if st == nil || n < 0 {
			return
		}
		p := &st.p
		switch p.mode {
		case modeUnlimited:
			r.ok = true
			return
		case modeClosed:
			r.ok = n == 0
			return
		}
		if n > p.burst {
			return
		}
		inc := int64(n) * p.interval
		for {
			tat := st.tat.Load()
			if tat == retired {
				break
			}
			next := max(tat, now) + inc
			act := max(next-p.tolerance, now)
			if now < st.back.since {
				// Booked as at since, acting when a call would pass.
				from, base := st.back.base(p, tat, now)
				next, act = from+inc, now
				if wait := base + inc - now - p.tolerance; wait > 0 {
					act = now + st.back.retry(p, tat, now, n, wait)
				}
			}
			if next-now > maxAhead || next > maxSchedule || act-now > maxDelay {
				r.act = act
				return
			}
			if n == 0 {
				r.ok, r.act = true, act
				return
			}
			if st.book(r, tat, next, act, now, given) {
				return
			}
		}
	}
}

// book records the reservation r, made at now, of the schedule from tat to
// next, acting at act, unless the schedule is no longer tat; given reports
// that the caller gave now.
func (st *state) book(r *Reservation, tat, next, act, now int64, given bool) bool {
	st.resMu.Lock()
	defer st.resMu.Unlock()
	if given {
		st.saw(now)
	}
	if !st.tat.CompareAndSwap(tat, next) {
		return false
	}
	st.allowedSince(tat, nil)
	st.seq++
	st.end = next
	r.ok, r.act, r.seq = true, act, st.seq
	r.prev, r.prevLast = st.top, st.lastAct
	if r.prev != nil {
		r.links = r.prev.links + 1
		if r.prev.act <= now || r.links > maxLinks {
			// Its time has come, or the chain is long: a cancel of r in
			// full puts back lastAct, which counts it, and passes no
			// further down the chain, which is not kept alive through r.
			r.prev, r.links = nil, 0
		}
	}
	st.lastAct = max(st.lastAct, act)
	st.top = r
	return true
}

// allowedSince reports whether events were allowed after the booking r
// (nil for none), given the schedule tat, which is not retired: a
// schedule beyond end holds events allowed after the latest booking.
// st.resMu must be held.
func (st *state) allowedSince(tat int64, r *Reservation) bool {
	if tat > st.end {
		st.allowed = st.seq
	}
	return r != nil && r.seq <= st.allowed
}

// cameBy reports whether events were allowed after the booking r, given
// the schedule tat, which is not retired, at r's time or later, for a
// cancel at now (read from the Limiter's clock if clock is set). Such an
// event was allowed by the latest time given to a call that booked events
// (hi), or by the clock, which such a cancel reads again: an event allowed
// by the clock a moment after now may be one. st.resMu must be held.
func (st *state) cameBy(tat int64, r *Reservation, now int64, clock bool) bool {
	if !st.allowedSince(tat, r) {
		return false
	}
	if clock {
		now = max(now, r.lim.nanos())
	}
	return max(now, st.hi.Load()) >= r.act
}

// Wait blocks until one event may pass, or ctx ends.
func (l *Limiter) Wait(ctx context.Context) error { return l.WaitN(ctx, 1) }

// WaitN blocks until n events may pass and records them, or returns an
// error: ctx's error if it ends before they may pass (the events are
// returned then, as Reservation.Cancel returns them: not once the Limit
// has changed; a ctx that ends as they may pass lets them pass, and so
// does one that ends once an event was allowed after them at their time
// or later, by Allow, Decide or a WaitN that did not wait: their time has
// thus come as Cancel counts it, and WaitN returns nil at once, even if
// that event's time was given ahead of the clock), or
// context.DeadlineExceeded when its deadline has passed already; a
// *LimitedError at once when n is
// negative, n exceeds the Burst of a finite Limit, the Limit is closed
// (and n is not 0), or the wait would outlast ctx's deadline (nothing is
// booked then). The error's Decision is the one DecideN would give at
// that time, Remaining and ResetAfter included, so that RateLimit fields
// can be set from it; its RetryAfter is how long WaitN would wait.
// During a warm-up, n above the Burst of the step in force but not above
// the full Burst waits for the step that takes n events, then books them
// under it; and n within it that a later step lets pass sooner than the
// step in force would waits for that time, as RetryAfter counts it, then
// books them. An Unlimited Limit passes any n at once.
func (l *Limiter) WaitN(ctx context.Context, n int) error {
	// woke is set once a sleep for a step of the warm-up has lasted its
	// whole time: the events may pass then, even if ctx ended as it did.
	woke := false
	for {
		err := ctx.Err()
		if err != nil && !woke {
			return err
		}
		nowT := time.Now()
		now := l.rel(nowT)
		maxDelay := maxAhead
		if dl, ok := ctx.Deadline(); ok {
			maxDelay = int64(dl.Sub(nowT))
			if maxDelay < 0 && err == nil {
				// Passed, though ctx has not said so yet: its error is the
				// one that will be, not a limit the events may never pass.
				err = context.DeadlineExceeded
			}
		}
		if err != nil {
			if woke && l.allow(now, n, false) {
				return nil
			}
			return err
		}
		woke = false
		if d, ok := l.climbWait(now, n); ok {
			// A step of the warm-up lets the events pass sooner than the
			// step in force would: wait for it, then book under it.
			wait := int64(d.RetryAfter)
			if wait > maxDelay {
				return &LimitedError{Name: l.name, Decision: d}
			}
			if woke, err = l.sleepUntil(ctx, now+wait); !woke {
				return err
			}
			continue
		}
		if l.allow(now, n, false) {
			return nil // no wait, so nothing to cancel: no Reservation
		}
		r := new(Reservation)
		l.reserve(r, now, n, maxDelay, false)
		if r.ok {
			return r.wait(ctx, now)
		}
		st := r.st
		if st == nil || n < 0 || st.p.mode != modeFinite {
			// n < 0, a closed Limit or the zero Limiter: the events never
			// pass, and DecideN says no more than that.
			d := Decision{RetryAfter: InfDuration}
			if st != nil {
				d.Limit = st.p.limit
			}
			return &LimitedError{Name: l.name, Decision: d}
		}
		p := &st.p
		tat := st.tat.Load()
		if tat == retired {
			continue // the Limit changed: book under the new one
		}
		// The Decision is DecideN's at now, so that RateLimit fields set
		// from the error tell the quota as it is (a ResetAfter of 0 would
		// say the limiter is full); only RetryAfter is WaitN's own.
		_, d := st.back.decide(p, tat, now, n)
		if d.Allowed {
			continue // events came back since reserve: book them now
		}
		switch {
		case r.act > now && n <= p.burst:
			d.RetryAfter = time.Duration(r.act - now)
		case n > p.burst:
			// More events than the Burst: a warm-up under way may reach
			// a step that takes them. Wait for that step, then book
			// under it.
			c := l.climb.Load()
			if c == nil {
				break
			}
			wait, begin, ok := c.retryFor(p, st.back, tat, st.hi.Load(), now, n)
			if !ok {
				break
			}
			d.RetryAfter = time.Duration(wait)
			if wait <= maxDelay && begin > now {
				if woke, err = l.sleepUntil(ctx, begin); !woke {
					return err
				}
				continue
			}
		}
		return &LimitedError{Name: l.name, Decision: d}
	}
}

// climbWait returns, during a warm-up, the Decision DecideN gives at now
// for n events within the Burst of the step in force, when it denies
// them and a later step lets them pass sooner than that step would (see
// climb.sooner): its RetryAfter is how long they must wait. ok is false
// otherwise: no warm-up, no wait, or the step's own wait, which is exact.
func (l *Limiter) climbWait(now int64, n int) (d Decision, ok bool) {
	c := l.climb.Load()
	if c == nil {
		return d, false
	}
	st := l.stateAt(now)
	if st == nil || st.p.mode != modeFinite || n < 0 || n > st.p.burst {
		return d, false
	}
	tat := st.tat.Load()
	if tat == retired {
		return d, false // the Limit is changing: reserve waits for it
	}
	if _, d = st.back.decide(&st.p, tat, now, n); d.Allowed {
		return d, false
	}
	own := st.back.retry(&st.p, tat, now, n, int64(d.RetryAfter))
	wait := c.sooner(&st.p, st.back, tat, st.hi.Load(), now, n, own)
	d.RetryAfter = time.Duration(wait)
	return d, wait < own
}

// wait waits for the events of r, booked at now, to act, or cancels them
// when ctx ends first and returns its error. A ctx that ends as the events
// act (at the same instant, or seen only once their time has come) finds
// nothing to cancel: the events act, and the wait passes.
func (r *Reservation) wait(ctx context.Context, now int64) error {
	delay := r.delay(now)
	if delay == 0 {
		return nil
	}
	if err := sleep(ctx, delay); err != nil {
		if r.cancel(r.lim.nanos(), true) {
			return nil
		}
		return err
	}
	return nil
}

// sleepUntil waits for the limiter's clock to reach due and reports true,
// or reports false with ctx's error when ctx ends before it: a ctx that
// ends at due, or is seen ending only once due has passed, ends no wait.
func (l *Limiter) sleepUntil(ctx context.Context, due int64) (bool, error) {
	if err := sleep(ctx, time.Duration(due-l.nanos())); err != nil && l.nanos() < due {
		return false, err
	}
	return true, nil
}

// sleep waits for d to pass, or returns ctx's error when it ends first.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// SetLimit changes the Limit now. See SetLimitAt. Now is read once no
// call can book under the old Limit any more, so that the events of a
// call that read the clock a moment later count as used, not as booked
// ahead.
func (l *Limiter) SetLimit(limit Limit) error {
	np, err := limit.params()
	if err != nil {
		return err
	}
	if l.epoch.IsZero() {
		return errNotMade
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	c := l.climb.Swap(nil)
	if l.st.Load().p.limit == limit {
		return nil // see SetLimitAt
	}
	old, tat := l.retire()
	sched, hi := old.converted(l.nanos(), func(at int64) int64 { return c.endSchedule(&old.p, &np, tat, at) })
	l.st.Store(newState(&np, sched, hi))
	return nil
}

var errNotMade = errors.New("heijunka: Limiter not made by NewLimiter")

// SetLimitAt changes the Limit at time now, and ends a warm-up under way.
// Events admitted recently still count: the debt (events not yet refilled)
// carries over to the new Limit, capped at its Burst; events booked by
// Reserve or Wait past the old Burst carry over whole, and still act at the
// times given, which may be sooner or later than the new Limit would give
// (as in golang.org/x/time/rate). Setting a warm-up's full Limit during
// its climb carries, up to the Burst, the debt the full Limit may still
// owe, if more (see WarmUp). Switching from or to
// a closed or Unlimited Limit starts full. Setting the Limit in force
// again changes nothing but ending a warm-up: reservations made before
// still return their events when canceled. Calls racing with SetLimit are
// decided under the old or the new Limit. An invalid limit returns an
// error and changes nothing.
func (l *Limiter) SetLimitAt(now time.Time, limit Limit) error {
	np, err := limit.params()
	if err != nil {
		return err
	}
	if l.epoch.IsZero() {
		return errNotMade
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	c := l.climb.Swap(nil)
	if l.st.Load().p.limit == limit {
		// The schedule would carry over unchanged: keeping the state
		// keeps the reservations made under it cancelable.
		return nil
	}
	old, tat := l.retire()
	sched, hi := old.converted(l.rel(now), func(at int64) int64 { return c.endSchedule(&old.p, &np, tat, at) })
	l.st.Store(newState(&np, sched, hi))
	return nil
}

// setParams installs np, a step of a climb to a full Limit of interval
// fullIv, at now, carrying the debt over. l.mu must be held.
func (l *Limiter) setParams(np *params, now, fullIv int64) {
	old, tat := l.retire()
	l.install(old, tat, np, now, fullIv)
}

// retire ends the bookings under the state in force and returns it with
// its schedule. Calls that meet the retired state wait for l.mu, which
// must be held from retire to install.
func (l *Limiter) retire() (*state, int64) {
	old := l.st.Load()
	return old, old.tat.Swap(retired)
}

// install makes np, a step of a climb to a full Limit of interval
// fullIv, the limit in force, with the schedule tat of the retired state
// old carried over at now. l.mu must be held.
func (l *Limiter) install(old *state, tat int64, np *params, now, fullIv int64) {
	sched, hi := old.converted(now, func(at int64) int64 { return carry(&old.p, np, tat, at) })
	l.st.Store(newClimbState(np, sched, hi, fullIv))
}

// carry converts a schedule under old into one under np with the same debt
// in events: the events used, up to np's burst, and whole those booked
// past old's burst, which still act at their times. With no debt left
// at now, the schedule stays as it is: full from tat on, so that a time
// earlier than tat still finds the events that old counted there.
func carry(old, np *params, tat, now int64) int64 {
	if old == nil || old.mode != modeFinite || np.mode != modeFinite {
		return minTAT
	}
	if tat <= now {
		return tat
	}
	// Rounded up: a conversion never frees a nanosecond of the debt.
	var booked int64
	if over := tat - now - old.tolerance; over > 0 {
		tat -= over
		// At most maxAhead, as reserve allows: the sum below stays
		// within int64.
		booked = mulDivCeil(over, np.interval, old.interval, maxAhead)
	}
	ahead := mulDivCeil(tat-now, np.interval, old.interval, np.tolerance)
	// What lies past maxSchedule could not have been booked either.
	return min(now+ahead+booked, maxSchedule)
}

// mulDivCeil returns ⌈a·b/c⌉, or limit if that is more, for a and b at
// least 0 and c and limit above 0. It is exact: a conversion between
// intervals of a debt past 2^53 nanoseconds, which float64 does not hold
// to the nanosecond, must still not free one.
func mulDivCeil(a, b, c, limit int64) int64 {
	hi, lo := bits.Mul64(uint64(a), uint64(b))
	if hi >= uint64(c) {
		return limit // the quotient does not fit in 64 bits
	}
	q, r := bits.Div64(hi, lo, uint64(c))
	if q >= uint64(limit) {
		return limit
	}
	if r != 0 {
		q++
	}
	return int64(q)
}
