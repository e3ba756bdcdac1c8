package heijunka

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"
)

// LimiterOptions configures a Limiter. The zero value is ready to use.
type LimiterOptions struct {
	// Name names the limiter in errors and to the tai pipeline (tai.Namer).
	// Default "heijunka.limiter".
	Name string
	// Now is the clock. Default: the monotonic system clock, read as time
	// since the limiter was made (the cheapest reading there is). Tests
	// inject a fake clock, or call the ...N forms with explicit times.
	Now func() time.Time
}

// Limiter is one token bucket, run as the generic cell rate algorithm
// (GCRA). Its whole state is one atomic word, the theoretical arrival time:
// the instant at which the bucket would be full again. A call reads the
// clock once, computes the next state and installs it with a
// compare-and-swap; there is no mutex on the hot path, and a denied call
// writes nothing.
//
// A new Limiter starts full: Burst events may pass at once. A request for
// more events than Burst can never pass (AllowN reports false, ReserveN is
// not OK, WaitN fails at once). A closed Limit (Rate 0) admits nothing; an
// Unlimited one admits everything.
//
// Every method that reads the clock has a form taking the time explicitly
// (AllowN, DecideN, ReserveN, SetLimitAt), a pure function of that time;
// do not mix explicit times with the Limiter's own clock unless they come
// from the same source.
//
// Use NewLimiter; the zero Limiter admits nothing. A Limiter is safe for
// concurrent use.
type Limiter struct {
	p atomic.Pointer[params]
	// tat sits on its own cache line: it is written by every admitted
	// call, p only by SetLimit.
	_   [56]byte
	tat atomic.Int64
	_   [56]byte

	epoch time.Time
	now   func() time.Time
	name  string
	mu    sync.Mutex // serializes SetLimit
	sleep func(ctx context.Context, d time.Duration) error
}

// NewLimiter returns a full Limiter for limit, or an error if limit is
// invalid (see Limit).
func NewLimiter(limit Limit, opts LimiterOptions) (*Limiter, error) {
	p, err := limit.params()
	if err != nil {
		return nil, err
	}
	l := &Limiter{name: opts.Name, now: opts.Now, sleep: sleepCtx}
	if l.name == "" {
		l.name = "heijunka.limiter"
	}
	if l.now != nil {
		l.epoch = l.now()
	} else {
		l.epoch = time.Now()
	}
	l.p.Store(&p)
	l.tat.Store(minTAT)
	return l, nil
}

// Name returns the limiter's name.
func (l *Limiter) Name() string { return l.name }

// Limit returns the current Limit.
func (l *Limiter) Limit() Limit {
	if p := l.p.Load(); p != nil {
		return p.limit
	}
	return Limit{}
}

// nanos reads the limiter's clock once, as nanoseconds since its epoch.
func (l *Limiter) nanos() int64 {
	if l.now == nil {
		return clampNow(time.Since(l.epoch))
	}
	return clampNow(l.now().Sub(l.epoch))
}

func (l *Limiter) rel(t time.Time) int64 { return clampNow(t.Sub(l.epoch)) }

// Allow reports whether one event may pass now, and records it if so.
func (l *Limiter) Allow() bool { return l.allow(l.nanos(), 1) }

// AllowN reports whether n events may pass at time now, and records them if
// so. AllowN with n = 0 reports true; n < 0 or n > Burst reports false.
func (l *Limiter) AllowN(now time.Time, n int) bool { return l.allow(l.rel(now), n) }

func (l *Limiter) allow(now int64, n int) bool {
	p := l.p.Load()
	if p == nil || p.mode != modeFinite {
		return p != nil && n >= 0 && (n == 0 || p.mode == modeUnlimited)
	}
	if uint(n) > uint(p.burst) {
		return false
	}
	inc := int64(n) * p.interval
	for {
		tat := l.tat.Load()
		next := max(tat, now) + inc
		if next-now > p.tolerance {
			return false
		}
		if n == 0 || l.tat.CompareAndSwap(tat, next) {
			return true
		}
	}
}

// Decide is like Allow but returns the whole Decision: remaining capacity,
// retry-after and reset-after.
func (l *Limiter) Decide() Decision { return l.decide(l.nanos(), 1) }

// DecideN is like AllowN but returns the whole Decision. For n < 0 it
// returns a denied Decision with RetryAfter InfDuration.
func (l *Limiter) DecideN(now time.Time, n int) Decision { return l.decide(l.rel(now), n) }

func (l *Limiter) decide(now int64, n int) Decision {
	p := l.p.Load()
	if p == nil || n < 0 {
		d := Decision{RetryAfter: InfDuration}
		if p != nil {
			d.Limit = p.limit
		}
		return d
	}
	for {
		tat := l.tat.Load()
		next, d := p.decide(tat, now, n)
		if next == tat || l.tat.CompareAndSwap(tat, next) {
			return d
		}
	}
}

// Admit makes the Limiter a tai.Gate shared by all keys: it admits one
// event now or returns a *LimitedError (errors.Is ErrLimited) carrying the
// Decision. The key is ignored; use Keyed for a limit per key.
func (l *Limiter) Admit(_ context.Context, _ string) error {
	d := l.decide(l.nanos(), 1)
	if d.Allowed {
		return nil
	}
	return &LimitedError{Name: l.name, Decision: d}
}

// Reservation is a promise of events at a future time, returned by value
// (it allocates nothing). Reserve books the events whether or not they can
// pass now; Delay tells how long to wait before acting, and Cancel returns
// the events if they will not be used.
type Reservation struct {
	lim      *Limiter
	p        *params
	ok       bool
	canceled bool
	n        int
	act      int64 // when the events may act, nanoseconds since the limiter's epoch
}

// OK reports whether the reservation was granted. It is false when n
// exceeds Burst, the Limit is closed, or the wait would exceed the
// limiter's horizon (about 146 years) or the caller's bound.
func (r Reservation) OK() bool { return r.ok }

// Delay returns how long to wait before acting, per the limiter's clock: 0
// if the events may act now, InfDuration if the reservation is not OK.
func (r Reservation) Delay() time.Duration {
	if !r.ok {
		return InfDuration
	}
	return r.delay(r.lim.nanos())
}

// DelayFrom returns how long after now the events may act; InfDuration if
// the reservation is not OK.
func (r Reservation) DelayFrom(now time.Time) time.Duration {
	if !r.ok {
		return InfDuration
	}
	return r.delay(r.lim.rel(now))
}

func (r Reservation) delay(now int64) time.Duration {
	if r.act <= now {
		return 0
	}
	return time.Duration(r.act - now)
}

// Cancel returns the reserved events to the limiter, as far as the
// reservation is still in the future, so other callers may use them.
// Calling it again, on a reservation that is not OK or after SetLimit
// changed the Limit does nothing. Cancel on a copy of a canceled
// Reservation would return the events twice: cancel the value you got.
func (r *Reservation) Cancel() {
	if r.ok && !r.canceled {
		r.CancelAt(r.lim.timeOf(r.lim.nanos()))
	}
}

// CancelAt is Cancel at time now.
func (r *Reservation) CancelAt(now time.Time) {
	if !r.ok || r.canceled {
		return
	}
	r.canceled = true
	if r.n == 0 || r.p.mode != modeFinite || r.lim.p.Load() != r.p || r.act <= r.lim.rel(now) {
		return
	}
	r.lim.tat.Add(-int64(r.n) * r.p.interval)
}

func (l *Limiter) timeOf(nanos int64) time.Time { return l.epoch.Add(time.Duration(nanos)) }

// Reserve books one event now; see Reservation.
func (l *Limiter) Reserve() Reservation { return l.reserve(l.nanos(), 1, maxAhead) }

// ReserveN books n events at time now; see Reservation.
func (l *Limiter) ReserveN(now time.Time, n int) Reservation {
	return l.reserve(l.rel(now), n, maxAhead)
}

// reserve books n events unless they could not act within maxDelay.
func (l *Limiter) reserve(now int64, n int, maxDelay int64) Reservation {
	p := l.p.Load()
	r := Reservation{lim: l, p: p, n: n, act: now}
	if p == nil || n < 0 {
		return r
	}
	switch p.mode {
	case modeUnlimited:
		r.ok = true
		return r
	case modeClosed:
		r.ok = n == 0
		return r
	}
	if n > p.burst {
		return r
	}
	inc := int64(n) * p.interval
	for {
		tat := l.tat.Load()
		next := max(tat, now) + inc
		act := max(next-p.tolerance, now)
		if next-now > maxAhead || act-now > maxDelay {
			r.act = act
			return r
		}
		if n == 0 || l.tat.CompareAndSwap(tat, next) {
			r.ok, r.act = true, act
			return r
		}
	}
}

// Wait blocks until one event may pass, or ctx ends.
func (l *Limiter) Wait(ctx context.Context) error { return l.WaitN(ctx, 1) }

// WaitN blocks until n events may pass and records them, or returns an
// error: ctx's error if it ends first; a *LimitedError at once when n
// exceeds Burst, the Limit is closed, or the wait would outlast ctx's
// deadline (nothing is booked then).
func (l *Limiter) WaitN(ctx context.Context, n int) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	var nowT time.Time
	if l.now != nil {
		nowT = l.now()
	} else {
		nowT = time.Now()
	}
	now := l.rel(nowT)
	maxDelay := maxAhead
	if dl, ok := ctx.Deadline(); ok {
		maxDelay = int64(dl.Sub(nowT))
	}
	r := l.reserve(now, n, maxDelay)
	if !r.ok {
		d := Decision{Limit: l.Limit(), RetryAfter: InfDuration}
		if r.act > now && r.p != nil && n <= r.p.burst {
			d.RetryAfter = time.Duration(r.act - now)
		}
		return &LimitedError{Name: l.name, Decision: d}
	}
	delay := r.delay(now)
	if delay == 0 {
		return nil
	}
	if err := l.sleep(ctx, delay); err != nil {
		r.Cancel()
		return err
	}
	return nil
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// SetLimit changes the Limit now. See SetLimitAt.
func (l *Limiter) SetLimit(limit Limit) error {
	if l.epoch.IsZero() {
		return errNotMade
	}
	return l.SetLimitAt(l.timeOf(l.nanos()), limit)
}

var errNotMade = errors.New("heijunka: SetLimit on a Limiter not made by NewLimiter")

// SetLimitAt changes the Limit at time now. Events admitted recently still
// count: the debt (events not yet refilled) carries over to the new Limit,
// capped at its Burst. Switching from or to a closed or Unlimited Limit
// starts full. Calls racing with SetLimit are decided under the old or the
// new Limit. An invalid limit returns an error and changes nothing.
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
	old := l.p.Swap(&np)
	t := l.rel(now)
	for {
		tat := l.tat.Load()
		if l.tat.CompareAndSwap(tat, carry(old, &np, tat, t)) {
			return nil
		}
	}
}

// carry converts a schedule under old into one under np with the same debt
// in events.
func carry(old, np *params, tat, now int64) int64 {
	if old == nil || old.mode != modeFinite || np.mode != modeFinite || tat <= now {
		return minTAT
	}
	debt := float64(tat-now) / float64(old.interval)
	ahead := debt * float64(np.interval)
	if ahead > float64(np.tolerance) {
		return now + np.tolerance
	}
	return now + int64(ahead)
}
