package heijunka

import (
	"errors"
	"fmt"
	"math"
	"math/bits"
	"sync/atomic"
	"time"
)

// WarmUpOptions configures a WarmUp. The zero value is ready to use.
type WarmUpOptions struct {
	// From is the fraction of the full limit allowed when a climb starts,
	// in (0, 1]. Default 0.1.
	From float64
	// Over is how long the climb to the full limit takes. Default one
	// minute.
	Over time.Duration
	// Steps is how many times the limit is raised on the way, evenly.
	// Default 20; at most Over in nanoseconds.
	Steps int
}

// WarmUp is a schedule for the Limit of one Limiter after a recovery. A
// service that was down, or whose dependency's breaker has just closed,
// should not take all the waiting traffic back at once: Start drops the
// Limiter's limit to a fraction (From) of full and raises it in even steps
// until, after Over, it is full again.
//
// The Limiter is used as ever (Allow, Wait, Admit, ...): a WarmUp adds no
// method to it and runs no goroutine. While a climb is under way, each call
// of the Limiter checks whether the climb has reached a new step and, if
// so, sets that step's limit (as SetLimit does: recent events still
// count). Outside a climb this costs one atomic load per call. At Start
// the debt carries over as SetLimit carries it, capped at the first
// step's Burst, unless the steps' rising Bursts would then let the events
// forgiven pass again: for a climb short beside the full Limit's refill
// time, more of the debt is kept, past that Burst (all of it for a climb
// of more than 4096 Steps, or one started again during a climb of the
// same options), so that over any window a climb lets no more events
// pass than the full Limit would; but events booked by Reserve or Wait
// to act later still act at the times given when a step begins, as
// under SetLimit, and the step may let others pass right after them. A
// climb started during the climb of another WarmUp of the same Limiter
// with other options counts the debt from the most the full Limit may
// still owe, and may keep more than the step in force owes. A climb ends
// at full, or when SetLimit sets a limit of its own; SetLimit of the full
// Limit keeps, up to its Burst, the debt the full Limit may still owe, so
// that a climb ended early lets no more events pass than the full Limit
// would. A request for more events than a step's Burst, but no more
// than the full Burst, passes once the climb reaches a step that takes
// it: DecideN's RetryAfter says when, and WaitN waits for it. The
// RetryAfter of any denied request counts the steps that begin before it
// passes, each paying the debt off at its own rate, as the Limiter's
// calls at those times would: it is exact, if nothing else happens, to
// the nanosecond, also for a request at a time earlier than one used
// before (decided under the step in force, which may be a later one than
// the step of its time). A call at a time before the step in force was
// set, or the climb started, counts the time gone back to then as events
// of the full Limit, and books its events as a call then would: the
// step's slower rate would count fewer events for it, and let more pass
// over a window reaching back before then than the full Limit would.
//
// Everything is a function of the time the Limiter's calls are made at, so
// the explicit-time methods (AllowN, StartAt, ...) make a climb
// deterministic. Make one with NewWarmUp; the zero WarmUp is not usable:
// it drives no Limiter, Start returns an error saying so, and LimitAt
// returns the zero Limit. A WarmUp is safe for concurrent use.
type WarmUp struct {
	lim   *Limiter
	from  float64
	over  time.Duration
	steps int64
}

// climb is a warm-up under way on a Limiter: its limit rises from a
// fraction of full to full in even steps.
type climb struct {
	full   Limit
	fullIv int64 // the full Limit's interval
	from   float64
	start  int64 // nanoseconds since the limiter's epoch
	over   int64 // nanoseconds, at least steps
	steps  int64
	step   atomic.Int64 // the step in force, 0..steps-1
	// gap bounds from below, at start, the debt the Limiter owes less
	// the debt the full Limit alone would owe for the same calls, in
	// events (see startSchedule). Set before the climb is stored.
	gap float64
}

// NewWarmUp returns a WarmUp for lim, not yet started, or an error for
// invalid options or a lim whose Limit is not finite (closed or
// Unlimited: there is nothing to climb to). The options are checked
// against the Limit a climb would go to: during the climb of another
// WarmUp of lim, that climb's full Limit, not its step's.
func NewWarmUp(lim *Limiter, opts WarmUpOptions) (*WarmUp, error) {
	if lim == nil || lim.epoch.IsZero() {
		return nil, fmt.Errorf("heijunka: warm-up of %w", errNotMade)
	}
	w := &WarmUp{lim: lim, from: opts.From, over: opts.Over, steps: int64(opts.Steps)}
	if w.from == 0 {
		w.from = 0.1
	}
	if w.over == 0 {
		w.over = time.Minute
	}
	if w.steps == 0 {
		w.steps = 20
	}
	switch {
	case math.IsNaN(w.from) || w.from <= 0 || w.from > 1:
		return nil, fmt.Errorf("heijunka: warm-up From %v is not in (0, 1]", opts.From)
	case w.over < 0:
		return nil, fmt.Errorf("heijunka: warm-up Over %v is negative", opts.Over)
	case w.steps < 0 || w.steps > int64(w.over):
		if opts.Steps == 0 {
			return nil, fmt.Errorf("heijunka: warm-up Over %v is shorter than the default 20 Steps of 1ns; set Steps", opts.Over)
		}
		return nil, fmt.Errorf("heijunka: warm-up Steps %d is not in [1, Over in nanoseconds = %d]", opts.Steps, int64(w.over))
	}
	if _, err := w.newClimb(lim.fullLimit(), 0); err != nil {
		return nil, err
	}
	return w, nil
}

// fullLimit returns the Limit a climb started now would climb to: the
// full Limit of the climb under way, if any (its step's is lower), else
// the Limit in force.
func (l *Limiter) fullLimit() Limit {
	l.mu.Lock()
	defer l.mu.Unlock()
	if c := l.climb.Load(); c != nil {
		return c.full
	}
	return l.st.Load().p.limit
}

// newClimb returns a climb to full starting at start, or an error when
// full cannot be climbed to.
func (w *WarmUp) newClimb(full Limit, start int64) (*climb, error) {
	if full.IsClosed() || full.IsUnlimited() {
		return nil, fmt.Errorf("heijunka: warm-up needs a finite limit, not %v", full)
	}
	fp, err := full.params()
	if err != nil {
		return nil, err
	}
	c := &climb{full: full, fullIv: fp.interval, from: w.from, start: start, over: int64(w.over), steps: w.steps}
	// The first step has the lowest rate and the longest interval: if it
	// is valid and finite, so is every later one (limitAt keeps their
	// Burst within the refill a Limit may take). A From so small that
	// From·Rate rounds to 0 gives a closed first step, valid but no
	// bound on the later steps' intervals.
	first := c.limitAt(0)
	if err := first.Validate(); err != nil {
		return nil, fmt.Errorf("heijunka: warm-up From %v of %v: %w", w.from, full, err)
	}
	if first.IsClosed() {
		return nil, fmt.Errorf("heijunka: warm-up From %v of %v rounds to a Rate of 0", w.from, full)
	}
	return c, nil
}

// Limiter returns the Limiter the warm-up drives (nil for the zero
// WarmUp).
func (w *WarmUp) Limiter() *Limiter { return w.lim }

var errWarmUpNotMade = errors.New("heijunka: WarmUp not made by NewWarmUp")

// Start begins a climb now. See StartAt. Now is read once no call can
// book under the Limiter's old limit any more, as SetLimit reads it.
func (w *WarmUp) Start() error { return w.start(func() int64 { return w.lim.nanos() }) }

// StartAt begins a climb at time now: the limit drops to From of full and
// climbs back over Over. The events used before now still count (see
// WarmUp). Full is the Limiter's limit, or, when a climb is already under
// way, that climb's full limit (a second recovery restarts the climb, it
// does not lower its goal). A now earlier than the latest time the
// Limiter booked events at, or changed its limit at, counts as that time,
// and a now before the start of the climb under way as that start: a
// time going back never frees events. It returns an error, and changes
// nothing, when the Limiter's limit is not finite.
func (w *WarmUp) StartAt(now time.Time) error {
	return w.start(func() int64 { return w.lim.rel(now) })
}

// start begins a climb at the time now returns, read once the Limiter's
// old limit is retired.
func (w *WarmUp) start(now func() int64) error {
	l := w.lim
	if l == nil {
		return errWarmUpNotMade
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	full := l.st.Load().p.limit
	prev := l.climb.Load()
	if prev != nil {
		full = prev.full
	}
	c, err := w.newClimb(full, 0)
	if err != nil {
		return err
	}
	np, _ := c.limitAt(0).params() // valid: newClimb checked it
	old, tat := l.retire()
	// A time before the latest one a call booked events at, or a change
	// of limit was made at, counts as that time: the debt is counted
	// there, as SetLimitAt counts it (see state.converted). Counted at the
	// earlier time, the time gone back would be taken for events of the
	// limit in force, which a faster first step pays off sooner.
	c.start = max(now(), old.hi.Load())
	if prev != nil {
		// A time before the start of the climb under way counts as that
		// start: the climb started again lags behind that one (see
		// startSchedule), never ahead of it.
		c.start = max(c.start, prev.start)
	}
	tat = c.startSchedule(prev, &old.p, &np, tat)
	l.climb.Store(c)
	l.st.Store(newClimbState(&np, tat, c.start, c.fullIv))
	return nil
}

// startSchedule converts the schedule tat under old, the Limit in force
// when the climb c starts, into one under np, its first step, and sets
// c.gap; prev is the climb under way then, if any. SetLimit caps the debt
// in events at the new Burst; but the steps carry the debt in events, so
// the events forgiven so would pass again as the steps' Bursts rose,
// faster than the full Limit lets them. The debt kept is the least that
// no step start frees: at each, the debt left must be at least what the
// full Limit alone would still owe, less the Burst the step lacks of the
// full one. That is the capped debt unless the climb is short beside the
// refill of the full Limit. A climb of more than maxStepsCounted steps,
// or one started again during a climb of the same shape, keeps the debt
// whole.
//
// During a climb, what the full Limit would owe is not known, but bounded
// (see climb.owedAt): a climb started during one of another shape counts
// from that bound, and may keep more than the debt under old, even when
// there is none.
func (c *climb) startSchedule(prev *climb, old, np *params, tat int64) int64 {
	now := c.start
	full, err := c.full.params()
	if err != nil || old.mode != modeFinite {
		return carry(old, np, tat, now) // not reached: both are finite
	}
	debt := 0.0 // under old, in events
	if tat > now {
		debt = float64(tat-now) / float64(old.interval)
	}
	owed, exact := debt, old.limit == c.full
	if !exact && prev != nil {
		owed = prev.owedAt(old, &full, debt, now)
	}
	c.gap = debt - owed
	if !exact && (prev == nil || prev.sameShape(c)) {
		// A climb started again as it started lags behind the one under
		// way: its steps' rates and Bursts are never above that one's at
		// the same time, so the whole debt keeps that one's bound.
		if tat <= now {
			return carry(old, np, tat, now)
		}
		return min(now+c.wholeAhead(old, np, tat), maxSchedule)
	}
	need := owed
	if c.steps <= maxStepsCounted {
		need = c.leastDebt(&full, np, owed)
	}
	c.gap = need - owed
	if !exact {
		if need <= 0 {
			return carry(old, np, tat, now)
		}
		// Perhaps more than the debt under old. At most maxAhead, as
		// reserve books: the sum below stays within int64.
		return min(now+int64(min(math.Ceil(need*float64(np.interval)), float64(maxAhead))), maxSchedule)
	}
	if tat <= now {
		return carry(old, np, tat, now)
	}
	whole := c.wholeAhead(old, np, tat)
	if c.steps <= maxStepsCounted {
		// At most whole: the conversion to int64 is exact.
		whole = int64(min(math.Ceil(need*float64(np.interval)), float64(whole)))
	}
	return min(now+whole, maxSchedule)
}

// wholeAhead is the debt of the schedule tat under old, later than the
// climb's start, converted to np whole.
func (c *climb) wholeAhead(old, np *params, tat int64) int64 {
	whole := tat - c.start
	if np.interval != old.interval {
		// Rounded up, as carry rounds, and at most maxAhead, as reserve
		// books: the sum with the start stays within int64.
		whole = int64(min(math.Ceil(float64(whole)/float64(old.interval)*float64(np.interval)), float64(maxAhead)))
	}
	return whole
}

// maxStepsCounted bounds the step starts startSchedule and owedAt look at,
// so that Start costs little whatever the Steps.
const maxStepsCounted = 1 << 12

// leastDebt returns the debt in events under np, the first step, that
// startSchedule keeps, given owed, the full Limit's debt at the start or
// a bound on it.
func (c *climb) leastDebt(full, np *params, owed float64) float64 {
	now := c.start
	// At the start: the capped debt, or what was booked past the Burst.
	need := max(min(owed, float64(np.burst)), owed-float64(full.burst-np.burst))
	// Calls that keep the full Limit in debt leave it paying off at its
	// rate and the climb at the steps' rates all along: each step start
	// must find the debt so counted (it may run below zero) at least the
	// Burst the step lacks of the full one.
	drained := 0.0 // events the steps so far paid off
	last, iv := now, np.interval
	for s := int64(1); s <= c.steps; s++ {
		at, ok := c.begins(s)
		if !ok {
			break
		}
		drained += float64(at-last) / float64(iv)
		p, err := c.limitAt(s).params()
		if err != nil {
			return owed // not reached: every step's Limit is valid
		}
		left := owed - float64(at-now)/float64(full.interval)
		need = max(need, left-float64(full.burst-p.burst)+drained)
		last, iv = at, p.interval
	}
	return min(need, owed)
}

// owedAt bounds from above, at now, the debt the full Limit alone would
// owe for the calls the Limiter took, given debt, the Limiter's own in
// events under old, the step of the climb c in force (or an earlier one,
// not yet raised). The Limiter owes at least the full Limit's debt less
// the Burst old lacks of the full one: no climb lets more events pass
// than the full Limit would. And the debt the Limiter owes less the full
// Limit's was at least c.gap at c's start; while below zero it has grown
// since at least by what the full Limit paid off beyond the steps (a
// debt paid off in full stops paying off, which brings that difference
// to zero at most).
func (c *climb) owedAt(old, full *params, debt float64, now int64) float64 {
	g := float64(old.burst - full.burst)
	if el := now - c.start; el > 0 {
		// The steps paid off at most at their rates; past the steps
		// counted, at the rate of the step of now, the highest so far.
		drained := 0.0
		last := c.start
		for s := int64(1); s <= min(c.steps, maxStepsCounted); s++ {
			at, ok := c.begins(s)
			if !ok || at > now {
				break
			}
			p, _ := c.limitAt(s - 1).params() // valid: see limitAt
			drained += float64(at-last) / float64(p.interval)
			last = at
		}
		p, _ := c.limitAt(c.stepAt(now)).params()
		drained += float64(now-last) / float64(p.interval)
		g = max(g, min(c.gap+float64(el)/float64(full.interval)-drained, 0))
	} else {
		g = max(g, min(c.gap, 0))
	}
	return max(debt-g, 0)
}

// endSchedule converts the schedule tat under old, the Limit in force at
// now, into one under np, set by SetLimit to end the climb c (nil for no
// climb): as carry converts it, but, when np is the climb's full Limit,
// with at least the debt the full Limit alone may still owe for the calls
// taken (see owedAt), up to its Burst. The steps carry a debt in events
// of their own Bursts, and a climb's start may keep less of the full
// Limit's debt than that: carried over as it is, SetLimit of the full
// Limit would let pass at once events the full Limit alone would not.
func (c *climb) endSchedule(old, np *params, tat, now int64) int64 {
	next := carry(old, np, tat, now)
	if c == nil || np.limit != c.full || old.mode != modeFinite || np.mode != modeFinite {
		return next
	}
	debt := 0.0 // under old, in events
	if tat > now {
		debt = float64(tat-now) / float64(old.interval)
	}
	owed := min(c.owedAt(old, np, debt, now), float64(np.burst))
	if owed <= 0 {
		return next
	}
	// At most the tolerance of np, as carry keeps it: the sum stays
	// within int64.
	ahead := np.tolerance
	if a := math.Ceil(owed * float64(np.interval)); a < float64(np.tolerance) {
		ahead = int64(a)
	}
	return max(next, min(now+ahead, maxSchedule))
}

// sameShape reports whether the climbs c and d climb to the same full
// Limit from the same fraction in the same steps over the same time.
func (c *climb) sameShape(d *climb) bool {
	return c.full == d.full && c.from == d.from && c.over == d.over && c.steps == d.steps
}

// LimitAt returns the limit a call of the Limiter at time now would be
// decided under, were it the next call: during a climb (of this WarmUp or
// another of the Limiter), the limit of the step the climb reaches at now,
// or of a later step that a call at a later time set already, as a time
// going back does not lower the step (see WarmUp); outside a climb, the
// Limiter's limit. It changes nothing: for a time ahead of the calls made
// so far, it gives that time's step, and the Limiter's limit stays.
func (w *WarmUp) LimitAt(now time.Time) Limit {
	l := w.lim
	if l == nil {
		return Limit{} // the zero WarmUp
	}
	if c := l.climb.Load(); c != nil {
		return c.limitAt(max(c.stepAt(l.rel(now)), c.step.Load()))
	}
	return l.st.Load().p.limit
}

// stepAt returns the step in force at now: step s begins at s·Over/Steps
// (rounded up to a nanosecond), so the steps share Over evenly and the
// last one ends at Over, whether or not Steps divides it.
func (c *climb) stepAt(now int64) int64 {
	el := now - c.start
	switch {
	case el < 0:
		return 0
	case el >= c.over:
		return c.steps
	}
	// el·steps < over² fits in 128 bits, and its high word is below over.
	hi, lo := bits.Mul64(uint64(el), uint64(c.steps))
	s, _ := bits.Div64(hi, lo, uint64(c.over))
	return int64(s)
}

func (c *climb) limitAt(step int64) Limit {
	if step >= c.steps {
		return c.full
	}
	f := c.from + (1-c.from)*float64(step)/float64(c.steps)
	l := Limit{Rate: c.full.Rate * f, Burst: max(1, int(math.Round(float64(c.full.Burst)*f)))}
	// Rounding Burst up lengthens the refill: for a full Limit close to
	// the ten years a Limit may take to refill, a step's could pass them.
	// Such a step keeps the largest Burst that refills in time (at least
	// 1: the interval only shortens as the rate climbs, and the first
	// step's fits). The refill is counted in whole nanoseconds, as Limit
	// counts it: in floating point a Burst one too many can seem to fit.
	// Once the product in float64 is within twice the bound, the one in
	// int64 cannot overflow.
	iv := math.Round(1e9 / l.Rate)
	if iv*float64(l.Burst) > 2*float64(maxTolerance) || int64(iv)*int64(l.Burst) > maxTolerance {
		l.Burst = 1
		if iv <= float64(maxTolerance) {
			l.Burst = max(1, int(maxTolerance/int64(iv)))
		}
	}
	return l
}

// retryFor is, for a request of n events more than the Burst of the Limit
// p in force at now, with the schedule tat, how long until the climb lets
// it pass if nothing else happens; and when the first step whose Burst
// takes n events begins. used is the latest time the state was used at
// (state.hi). ok is false when no step takes them (more than the full
// Burst), or not before the Limiter's clock stops (nowBound).
func (c *climb) retryFor(p *params, back goneBack, tat, used, now int64, n int) (wait, begin int64, ok bool) {
	if n > c.full.Burst {
		return 0, 0, false
	}
	// A call at t reaches the step of t and converts the schedule to it
	// then: whether it passes rises with t, as the debt falls and the
	// Burst climbs. It passes once the climb is over and the schedule
	// has run out, if not before: the first t that passes is found by
	// bisection. Under a p that is no step of the climb (a change of
	// limit raced with the call), every call is taken to set its step:
	// under p itself the n events would not pass anyway.
	sp, found := c.stepOf(p, now)
	if !found {
		sp = -1
	}
	hi := min(max(c.end(), tat, now), nowBound)
	if !c.passesAt(p, back, sp, tat, used, hi, n) {
		return 0, 0, false
	}
	wait = c.firstPass(p, back, sp, tat, used, n, now, hi) - now
	// The steps' Bursts rise with the steps (see limitAt), and the last
	// step's is the full Burst.
	first, last := int64(0), c.steps
	for first < last {
		mid := first + (last-first)/2
		if c.limitAt(mid).Burst >= n {
			last = mid
		} else {
			first = mid + 1
		}
	}
	begin, ok = c.begins(first)
	return wait, begin, ok
}

// sooner returns how long until n events, no more than the Burst of the
// Limit p in force at now, pass with the schedule tat, given wait, the
// time p alone would take (see goneBack.retry; back is the state's, as in
// passesAt). When that wait reaches into a later step, the
// step's higher rate pays the debt off sooner: the first time that passes
// is found by bisection, as retryFor finds it. A wait within the step of
// p is exact already and costs a few multiplications. p is the step in
// force: the step of now, or, at a time earlier than one used before, a
// later one, which decides the calls until the step after it begins. used
// is the latest time the state was used at (state.hi).
func (c *climb) sooner(p *params, back goneBack, tat, used, now int64, n int, wait int64) int64 {
	s, ok := c.stepOf(p, now)
	if !ok || s >= c.steps {
		return wait // the climb is over, or a change of limit raced with the call
	}
	next, ok := c.begins(s + 1)
	if !ok || wait > nowBound-now || now+wait < next {
		return wait
	}
	// Under p, nothing passes before now+wait; a later step may let it
	// pass from its beginning on. Or only later: the debt it carries over
	// counts from the latest time used (see state.converted), which may
	// lie after now. It passes once the climb is over and the schedule
	// has run out, if not before.
	if at := now + wait; !c.passesAt(p, back, s, tat, used, at, n) {
		last := min(max(c.end(), tat, at), nowBound)
		if !c.passesAt(p, back, s, tat, used, last, n) {
			return wait // not reached: the full Burst takes n
		}
		return c.firstPass(p, back, s, tat, used, n, at, last) - now
	}
	return c.firstPass(p, back, s, tat, used, n, next, now+wait) - now
}

// stepOf returns the step of the climb whose limit p is, in force at now:
// the step of now, or a later one that a call at a later time set (a
// time going back does not lower the step). ok is false when p is
// neither, as when a change of limit races with the call. The later step
// is tried first: steps may share a Limit (all of them do for a From of
// 1), and the step a later call set is the one in force then.
func (c *climb) stepOf(p *params, now int64) (s int64, ok bool) {
	if s = c.step.Load(); s > c.stepAt(now) && p.limit == c.limitAt(s) {
		return s, true
	}
	if s = c.stepAt(now); p.limit == c.limitAt(s) {
		return s, true
	}
	return 0, false
}

// end returns when the climb reaches full, or nowBound if after it.
func (c *climb) end() int64 {
	if c.over <= nowBound-c.start {
		return c.start + c.over
	}
	return nowBound
}

// firstPass returns the first time from lo to hi at which n events pass
// with the schedule tat under p, the step sp (see passesAt), by bisection:
// whether they pass rises with the time. They must pass at hi.
func (c *climb) firstPass(p *params, back goneBack, sp, tat, used int64, n int, lo, hi int64) int64 {
	for lo < hi {
		mid := lo + (hi-lo)/2
		if c.passesAt(p, back, sp, tat, used, mid, n) {
			hi = mid
		} else {
			lo = mid + 1
		}
	}
	return lo
}

// passesAt reports whether n events would pass at t, the first call since
// the schedule tat under p, the step sp, was booked, the state last used
// at used: a call at a t within step sp or before is decided under p,
// counting a time gone back as back does; a later one sets the limit of
// the step the climb has reached at t, carrying the debt over as the
// Limiter does (see state.converted), and counts a time before used as
// the state it installs would.
func (c *climb) passesAt(p *params, back goneBack, sp, tat, used, t int64, n int) bool {
	s := c.stepAt(t)
	if s <= sp {
		_, d := back.decide(p, tat, t, n)
		return d.Allowed
	}
	np, err := c.limitAt(s).params()
	if err != nil {
		return false // not reached: every step's Limit is valid
	}
	next := carry(p, &np, tat, t)
	if used > t {
		next = max(next, carry(p, &np, tat, used))
	}
	_, d := goneBack{since: max(used, t), fullIv: c.fullIv}.decide(&np, next, t, n)
	return d.Allowed
}

// begins returns when step s begins: the first nanosecond stepAt places in
// it, s·Over/Steps rounded up. ok is false when that is past nowBound,
// which the Limiter's clock never passes.
func (c *climb) begins(s int64) (at int64, ok bool) {
	// s·over + steps - 1 < steps·2^64: the quotient fits in 64 bits.
	hi, lo := bits.Mul64(uint64(s), uint64(c.over))
	lo, cy := bits.Add64(lo, uint64(c.steps-1), 0)
	q, _ := bits.Div64(hi+cy, lo, uint64(c.steps))
	if q > uint64(nowBound-c.start) {
		return 0, false
	}
	return c.start + int64(q), true
}

// tick sets the limit of the step the climb c has reached at now, if it
// is a later step than the one in force; at the last step the climb ends
// at full.
func (l *Limiter) tick(c *climb, now int64) {
	s := c.stepAt(now)
	if s <= c.step.Load() {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	// Another call may have set a step meanwhile: an earlier one than s
	// leaves s to set here, or this call would be decided under it.
	if l.climb.Load() != c || c.step.Load() >= s {
		return // the climb ended, restarted or reached s meanwhile
	}
	c.step.Store(s)
	if s >= c.steps {
		l.climb.Store(nil)
	}
	np, _ := c.limitAt(s).params() // valid, as step 0's is: see limitAt
	l.setParams(&np, now, c.fullIv)
}
