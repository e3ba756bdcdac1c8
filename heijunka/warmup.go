package heijunka

import (
	"context"
	"fmt"
	"math"
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
	// Name and Now are as in LimiterOptions.
	Name string
	Now  func() time.Time
}

// WarmUp is a Limiter (with the same methods) whose limit climbs after a recovery. A service that
// was down, or whose dependency's breaker has just closed, should not
// take all the waiting traffic back at once: Start drops the limit to a
// fraction of full and raises it in even steps until, after Over, it is
// full again. A new WarmUp is at full until Start.
//
// Each call checks, with one atomic load, whether the climb has reached a
// new step, and raises the limit if so (Limiter.SetLimit: recent events
// still count). Everything is a function of the clock, so an injected Now
// makes the climb deterministic. Safe for concurrent use.
type WarmUp struct {
	lim   *Limiter
	full  Limit
	from  float64
	over  time.Duration
	steps int64

	start atomic.Int64 // when the climb began, nanoseconds since the limiter's epoch
	step  atomic.Int64 // the step reached, 0..steps; steps means full
}

// NewWarmUp returns a WarmUp at full, or an error for an invalid limit
// (which must be finite: neither closed nor Unlimited) or options.
func NewWarmUp(full Limit, opts WarmUpOptions) (*WarmUp, error) {
	if err := full.Validate(); err != nil {
		return nil, err
	}
	if full.IsClosed() || full.IsUnlimited() {
		return nil, fmt.Errorf("heijunka: warm-up needs a finite limit, not %v", full)
	}
	w := &WarmUp{full: full, from: opts.From, over: opts.Over, steps: int64(opts.Steps)}
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
		return nil, fmt.Errorf("heijunka: warm-up Steps %d is not in [1, Over in nanoseconds = %d]", opts.Steps, int64(w.over))
	}
	lim, err := NewLimiter(full, LimiterOptions{Name: opts.Name, Now: opts.Now})
	if err != nil {
		return nil, err
	}
	if opts.Name == "" {
		lim.name = "heijunka.warmup"
	}
	w.lim = lim
	w.start.Store(minTAT) // no climb yet
	w.step.Store(w.steps)
	return w, nil
}

// Start begins a climb now: the limit drops to From of full.
func (w *WarmUp) Start() { w.StartAt(w.lim.timeOf(w.lim.nanos())) }

// StartAt begins a climb at time now.
func (w *WarmUp) StartAt(now time.Time) {
	w.lim.mu.Lock() // orders concurrent starts with each other
	t := w.lim.rel(now)
	w.start.Store(t)
	w.step.Store(-1) // forces the next tick to set step 0
	w.lim.mu.Unlock()
	w.tick(t)
}

// LimitAt returns the limit in force at time now.
func (w *WarmUp) LimitAt(now time.Time) Limit { return w.limitAt(w.stepAt(w.lim.rel(now))) }

func (w *WarmUp) stepAt(now int64) int64 {
	start := w.start.Load()
	if start == minTAT {
		return w.steps
	}
	el := now - start
	if el < 0 {
		return 0
	}
	if el >= int64(w.over) {
		return w.steps
	}
	return el / (int64(w.over) / w.steps)
}

func (w *WarmUp) limitAt(step int64) Limit {
	if step >= w.steps {
		return w.full
	}
	f := w.from + (1-w.from)*float64(step)/float64(w.steps)
	return Limit{Rate: w.full.Rate * f, Burst: max(1, int(math.Round(float64(w.full.Burst)*f)))}
}

// tick raises the limit when the climb has reached a new step.
func (w *WarmUp) tick(now int64) {
	cur := w.step.Load()
	if cur == w.steps {
		return // full: the common case costs one load
	}
	s := w.stepAt(now)
	if s == cur || !w.step.CompareAndSwap(cur, s) {
		return
	}
	// The scaled limit of a valid finite limit is valid.
	_ = w.lim.SetLimitAt(w.lim.timeOf(now), w.limitAt(s))
}

// Allow reports whether one event may pass now; see Limiter.Allow.
func (w *WarmUp) Allow() bool {
	t := w.lim.nanos()
	w.tick(t)
	return w.lim.allow(t, 1)
}

// AllowN is Limiter.AllowN under the warm-up.
func (w *WarmUp) AllowN(now time.Time, n int) bool {
	t := w.lim.rel(now)
	w.tick(t)
	return w.lim.allow(t, n)
}

// Decide is Limiter.Decide under the warm-up.
func (w *WarmUp) Decide() Decision {
	t := w.lim.nanos()
	w.tick(t)
	return w.lim.decide(t, 1)
}

// DecideN is Limiter.DecideN under the warm-up.
func (w *WarmUp) DecideN(now time.Time, n int) Decision {
	t := w.lim.rel(now)
	w.tick(t)
	return w.lim.decide(t, n)
}

// Reserve is Limiter.Reserve under the warm-up.
func (w *WarmUp) Reserve() Reservation {
	t := w.lim.nanos()
	w.tick(t)
	return w.lim.reserve(t, 1, maxAhead)
}

// ReserveN is Limiter.ReserveN under the warm-up.
func (w *WarmUp) ReserveN(now time.Time, n int) Reservation {
	t := w.lim.rel(now)
	w.tick(t)
	return w.lim.reserve(t, n, maxAhead)
}

// Wait is Limiter.Wait under the warm-up.
func (w *WarmUp) Wait(ctx context.Context) error { return w.WaitN(ctx, 1) }

// WaitN is Limiter.WaitN under the warm-up.
func (w *WarmUp) WaitN(ctx context.Context, n int) error {
	w.tick(w.lim.nanos())
	return w.lim.WaitN(ctx, n)
}

// Admit implements tai.Gate; see Limiter.Admit.
func (w *WarmUp) Admit(ctx context.Context, key string) error {
	w.tick(w.lim.nanos())
	return w.lim.Admit(ctx, key)
}

// Name returns the warm-up's name.
func (w *WarmUp) Name() string { return w.lim.name }

// Full returns the limit the warm-up climbs to.
func (w *WarmUp) Full() Limit { return w.full }
