package heijunka

import (
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
// count). Outside a climb this costs one atomic load per call. A climb ends
// at full, or when SetLimit sets a limit of its own.
//
// Everything is a function of the time the Limiter's calls are made at, so
// the explicit-time methods (AllowN, StartAt, ...) make a climb
// deterministic. Make one with NewWarmUp; the zero WarmUp is not usable.
// A WarmUp is safe for concurrent use.
type WarmUp struct {
	lim   *Limiter
	from  float64
	over  time.Duration
	steps int64
}

// climb is a warm-up under way on a Limiter: its limit rises from a
// fraction of full to full in even steps.
type climb struct {
	full  Limit
	from  float64
	start int64 // nanoseconds since the limiter's epoch
	over  int64 // nanoseconds, at least steps
	steps int64
	step  atomic.Int64 // the step in force, 0..steps-1
}

// NewWarmUp returns a WarmUp for lim, not yet started, or an error for
// invalid options or a lim whose Limit is not finite (closed or
// Unlimited: there is nothing to climb to).
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
	if _, err := w.newClimb(lim.Limit(), 0); err != nil {
		return nil, err
	}
	return w, nil
}

// newClimb returns a climb to full starting at start, or an error when
// full cannot be climbed to.
func (w *WarmUp) newClimb(full Limit, start int64) (*climb, error) {
	if full.IsClosed() || full.IsUnlimited() {
		return nil, fmt.Errorf("heijunka: warm-up needs a finite limit, not %v", full)
	}
	c := &climb{full: full, from: w.from, start: start, over: int64(w.over), steps: w.steps}
	// The first step has the lowest rate and the longest interval: if it
	// is valid, so is every later one (limitAt keeps their Burst within
	// the refill a Limit may take).
	if err := c.limitAt(0).Validate(); err != nil {
		return nil, fmt.Errorf("heijunka: warm-up From %v of %v: %w", w.from, full, err)
	}
	return c, nil
}

// Limiter returns the Limiter the warm-up drives.
func (w *WarmUp) Limiter() *Limiter { return w.lim }

// Start begins a climb now. See StartAt. Now is read once no call can
// book under the Limiter's old limit any more, as SetLimit reads it.
func (w *WarmUp) Start() error { return w.start(func() int64 { return w.lim.nanos() }) }

// StartAt begins a climb at time now: the limit drops to From of full and
// climbs back over Over. Full is the Limiter's limit, or, when a climb is
// already under way, that climb's full limit (a second recovery restarts
// the climb, it does not lower its goal). It returns an error, and changes
// nothing, when the Limiter's limit is not finite.
func (w *WarmUp) StartAt(now time.Time) error {
	return w.start(func() int64 { return w.lim.rel(now) })
}

// start begins a climb at the time now returns, read once the Limiter's
// old limit is retired.
func (w *WarmUp) start(now func() int64) error {
	l := w.lim
	l.mu.Lock()
	defer l.mu.Unlock()
	full := l.st.Load().p.limit
	if c := l.climb.Load(); c != nil {
		full = c.full
	}
	c, err := w.newClimb(full, 0)
	if err != nil {
		return err
	}
	np, _ := c.limitAt(0).params() // valid: newClimb checked it
	old, tat := l.retire()
	c.start = now()
	l.climb.Store(c)
	l.install(old, tat, &np, c.start)
	return nil
}

// LimitAt returns the limit the warm-up gives at time now: a step of the
// climb under way, or, outside a climb, the Limiter's limit.
func (w *WarmUp) LimitAt(now time.Time) Limit {
	l := w.lim
	if c := l.climb.Load(); c != nil {
		return c.limitAt(c.stepAt(l.rel(now)))
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

// tick sets the limit of the step the climb c has reached at now, if it
// is a later step than the one in force; at the last step the climb ends
// at full.
func (l *Limiter) tick(c *climb, now int64) {
	cur := c.step.Load()
	s := c.stepAt(now)
	if s <= cur {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.climb.Load() != c || c.step.Load() != cur {
		return // the climb ended, restarted or moved on meanwhile
	}
	c.step.Store(s)
	if s >= c.steps {
		l.climb.Store(nil)
	}
	np, _ := c.limitAt(s).params() // valid, as step 0's is: see limitAt
	l.setParams(&np, now)
}
