package jidoka

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sync"
	"time"
)

// Defaults and limits of WatchdogOptions.
const (
	DefaultWatchdogInterval = 10 * time.Second
	DefaultFailAfter        = 3
	DefaultRecoverAfter     = 3
	MinWatchdogInterval     = time.Millisecond
)

// WatchdogOptions configures a Watchdog. Check is required; every other
// zero field has a default.
type WatchdogOptions struct {
	// Name names the watchdog in events, results and logs.
	Name string
	// Check probes health: nil means healthy. It gets a context that is
	// cancelled after Timeout, or when the watchdog stops. A panic in it
	// is recovered and fails the check with a *PanicError; a call of
	// runtime.Goexit fails it too. Required.
	Check func(ctx context.Context) error
	// Interval is the pause between the end of one check and the start of
	// the next; the first check runs at Start. Zero means
	// DefaultWatchdogInterval (10 s); it must be at least
	// MinWatchdogInterval (1 ms).
	Interval time.Duration
	// Timeout bounds a check: its context is cancelled when it runs
	// longer, and the check fails even if it then returns nil. A check
	// that ignores its context and does not return fails when the next
	// check is due (Timeout plus Interval after it began) and again every
	// Interval until it returns; no other check starts meanwhile. Zero
	// means Interval.
	Timeout time.Duration
	// LatencyLimit makes a check that returns nil but takes longer count
	// as a failure (ErrSlowCheck). Zero: no limit besides Timeout.
	LatencyLimit time.Duration
	// FailAfter is how many failed checks in a row make the watchdog
	// unhealthy and call OnFail. Zero means DefaultFailAfter (3).
	FailAfter int
	// RecoverAfter is how many passed checks in a row make an unhealthy
	// watchdog healthy again and call OnRecover. Zero means
	// DefaultRecoverAfter (3).
	RecoverAfter int
	// OnFail is called once each time the watchdog turns unhealthy, with
	// the watchdog's context (cancelled by Shutdown); checks wait until it
	// returns. A deployment rolls back here. A panic in it is recovered
	// and logged on Logger as a *PanicError, and the watchdog keeps
	// running. So it does if OnFail ends its goroutine with runtime.Goexit
	// (t.FailNow in a test): each callback runs on a goroutine of its own,
	// which the watchdog waits for, and the Goexit is logged with its
	// stack. Nil: nothing is called.
	OnFail func(ctx context.Context, ev WatchdogEvent)
	// OnRecover is called once each time the watchdog turns healthy again,
	// like OnFail.
	OnRecover func(ctx context.Context, ev WatchdogEvent)
	// OnCheck is called after every check, after OnFail or OnRecover
	// (even one that panicked or ended its goroutine): for metrics and
	// logs. A panic or a runtime.Goexit in it is logged like one of
	// OnFail. Nil: nothing.
	OnCheck func(r CheckResult)
	// Logger receives what the watchdog cannot return to a caller: a panic
	// or runtime.Goexit of OnFail, OnRecover or OnCheck. Nil means
	// slog.Default() at the time of logging.
	Logger *slog.Logger
}

// WatchdogEvent reports that a Watchdog turned unhealthy or healthy.
type WatchdogEvent struct {
	Watchdog string    // the watchdog's Name
	Healthy  bool      // the new health
	Err      error     // the failure of the last failed check
	Checks   int       // how many checks in a row led here
	Time     time.Time // when the check that led here ended
}

// CheckResult is the outcome of one check of a Watchdog.
type CheckResult struct {
	Watchdog string
	Err      error         // nil when the check passed
	Latency  time.Duration // how long the check took
	Time     time.Time     // when it ended
	Healthy  bool          // the watchdog's health after it
}

// WatchdogStatus is the state of a Watchdog at one moment.
type WatchdogStatus struct {
	Healthy              bool
	ConsecutiveFailures  int
	ConsecutiveSuccesses int
	Checks               int   // checks run so far
	LastErr              error // the error of the last failed check
	LastCheck            time.Time
	LastLatency          time.Duration
}

// Watchdog probes health on an interval. After FailAfter failed checks in a
// row it turns unhealthy and calls OnFail once; after RecoverAfter passed
// checks in a row it turns healthy again and calls OnRecover. A check that
// errs, panics, outlives Timeout or exceeds LatencyLimit fails.
//
// A Watchdog starts healthy. Start runs it on a goroutine it owns, until
// the context given to Start ends or Shutdown is called; after Shutdown
// returns nil that goroutine is gone. Time is read from the runtime
// (time.Now and timers); a test controls it with testing/synctest. A
// Watchdog is safe for concurrent use. Make one with NewWatchdog; the zero
// Watchdog is not usable.
type Watchdog struct {
	name               string
	check              func(context.Context) error
	interval, timeout  time.Duration
	limit              time.Duration
	failAfter, recover int
	onFail, onRecover  func(context.Context, WatchdogEvent)
	onCheck            func(CheckResult)
	logger             *slog.Logger

	mu      sync.Mutex
	status  WatchdogStatus
	started bool
	shut    bool
	cancel  context.CancelFunc
	done    chan struct{} // closed when the goroutine of Start ends

	// atGate, if set (by tests), is called by each check's goroutine
	// before it looks whether the watchdog was stopped.
	atGate func()
}

// NewWatchdog returns a healthy, not yet started watchdog configured by
// opts, or an error naming the first invalid field and its value.
func NewWatchdog(opts WatchdogOptions) (*Watchdog, error) {
	switch {
	case opts.Check == nil:
		return nil, errors.New("jidoka: watchdog Check is nil")
	case opts.Interval < 0 || (opts.Interval > 0 && opts.Interval < MinWatchdogInterval):
		return nil, fmt.Errorf("jidoka: watchdog Interval must be 0 or at least %v, got %v", MinWatchdogInterval, opts.Interval)
	case opts.Timeout < 0:
		return nil, fmt.Errorf("jidoka: watchdog Timeout must not be negative, got %v", opts.Timeout)
	case opts.LatencyLimit < 0:
		return nil, fmt.Errorf("jidoka: watchdog LatencyLimit must not be negative, got %v", opts.LatencyLimit)
	case opts.FailAfter < 0:
		return nil, fmt.Errorf("jidoka: watchdog FailAfter must not be negative, got %d", opts.FailAfter)
	case opts.RecoverAfter < 0:
		return nil, fmt.Errorf("jidoka: watchdog RecoverAfter must not be negative, got %d", opts.RecoverAfter)
	}
	w := &Watchdog{
		name:      opts.Name,
		check:     opts.Check,
		interval:  orDuration(opts.Interval, DefaultWatchdogInterval),
		limit:     opts.LatencyLimit,
		failAfter: orInt(opts.FailAfter, DefaultFailAfter),
		recover:   orInt(opts.RecoverAfter, DefaultRecoverAfter),
		onFail:    opts.OnFail,
		onRecover: opts.OnRecover,
		onCheck:   opts.OnCheck,
		logger:    opts.Logger,
		status:    WatchdogStatus{Healthy: true},
		done:      make(chan struct{}),
	}
	w.timeout = orDuration(opts.Timeout, w.interval)
	return w, nil
}

// Name returns WatchdogOptions.Name.
func (w *Watchdog) Name() string { return w.name }

// errWatchdogNotMade is the error of Start on a Watchdog that NewWatchdog
// did not make: it has no check to run, and no interval to wait.
var errWatchdogNotMade = errors.New("jidoka: the Watchdog was not made by NewWatchdog; it cannot start")

// Start runs the first check and then one every Interval on a goroutine of
// the watchdog, until ctx ends or Shutdown is called (a ctx that has ended
// already gets no check at all). It returns
// ErrWatchdogStarted if the watchdog was started or shut down before, and
// an error, starting nothing, for a Watchdog NewWatchdog did not make.
func (w *Watchdog) Start(ctx context.Context) error {
	if w.done == nil {
		return errWatchdogNotMade
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.started || w.shut {
		return ErrWatchdogStarted
	}
	w.started = true
	ctx, w.cancel = context.WithCancel(ctx)
	go w.run(ctx)
	return nil
}

// Shutdown stops the watchdog: it cancels the context of the check or
// callback in progress, if any, and waits until the watchdog's goroutine
// has ended. Once Shutdown has cancelled it, no check is begun, not even
// the first of Start or one that fell due at the same moment: only a
// check already on its way into Check when Shutdown was called may still
// enter it. A check stopped this way (or by the end of the context given
// to Start) is not counted, whatever it returns, and no callback hears of
// it. If ctx ends first, Shutdown returns ctx.Err(); the goroutine still
// ends on its own once the function it is in returns.
// Shutdown may be called before Start (the watchdog then never starts)
// and more than once: every call after the goroutine has ended returns
// nil.
//
// Called from Check, OnFail, OnRecover or OnCheck, Shutdown waits for the
// watchdog's goroutine, which waits for the function that called it, so it
// returns only when ctx ends: give it the
// context the watchdog passed in, which it cancels (it then returns
// context.Canceled at once), or call it on a goroutine of its own.
func (w *Watchdog) Shutdown(ctx context.Context) error {
	w.mu.Lock()
	w.shut = true
	started := w.started
	if w.cancel != nil {
		w.cancel()
	}
	w.mu.Unlock()
	if !started {
		return nil
	}
	select {
	case <-w.done: // ended already: nil, even with ctx ended
		return nil
	default:
	}
	select {
	case <-w.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Healthy reports whether the watchdog is healthy.
func (w *Watchdog) Healthy() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.status.Healthy
}

// Status returns the health and the counts of the watchdog.
func (w *Watchdog) Status() WatchdogStatus {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.status
}

func (w *Watchdog) run(ctx context.Context) {
	defer close(w.done)
	t := time.NewTimer(w.interval)
	defer t.Stop()
	for ctx.Err() == nil {
		w.probe(ctx)
		t.Reset(w.interval)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// probe runs one check and acts on its result. The check runs on a
// goroutine of its own, so that one that ignores its context and does not
// return is still counted: as timed out when the next check is due, and
// again every Interval until it returns. No other check starts meanwhile,
// and probe returns only once the check has.
func (w *Watchdog) probe(ctx context.Context) {
	cctx, cancel := context.WithTimeout(ctx, w.timeout)
	defer cancel()
	start := time.Now()
	result := make(chan error, 1)
	go func() {
		err := errCheckGoexit // unless runCheck returns
		defer func() { result <- err }()
		err = w.runCheck(ctx, cctx)
	}()

	hung := time.NewTimer(addSat(w.timeout, w.interval))
	defer hung.Stop()
	var err error
	counted := false // as hung
	for waiting := true; waiting; {
		select {
		case err = <-result:
			waiting = false
		case <-ctx.Done():
			err = <-result // Shutdown waits for the check
			waiting = false
		case <-hung.C:
			if ctx.Err() != nil {
				continue // stopping: the case above waits for it
			}
			now := time.Now()
			w.record(ctx, fmt.Errorf("jidoka: check timed out after %v: %w", w.timeout, context.DeadlineExceeded), now.Sub(start), now)
			counted = true
			hung.Reset(w.interval)
		}
	}
	if counted {
		return
	}
	end := time.Now()
	latency := end.Sub(start)
	// The context's timer may not have run yet when the check returns at
	// its deadline: the clock tells too.
	timedOut := cctx.Err() == context.DeadlineExceeded || latency >= w.timeout
	switch {
	case timedOut:
		if err == nil { // it ignored its context and answered late
			err = context.DeadlineExceeded
		}
		err = fmt.Errorf("jidoka: check timed out after %v: %w", w.timeout, err)
	case err == nil && w.limit > 0 && latency > w.limit:
		err = fmt.Errorf("%w: took %v, limit %v", ErrSlowCheck, latency, w.limit)
	}
	if ctx.Err() != nil {
		// Stopped mid-check: a failure is ours, not the service's, and
		// a pass may be a check that took its cancellation for an
		// answer. Neither is counted, nor reported.
		return
	}
	w.record(ctx, err, latency, end)
}

// record counts the result of a check that ended (or was given up on) at
// end after latency, and calls the callbacks it calls for.
func (w *Watchdog) record(ctx context.Context, err error, latency time.Duration, end time.Time) {
	w.mu.Lock()
	st := &w.status
	st.Checks++
	st.LastCheck, st.LastLatency = end, latency
	var fire func(context.Context, WatchdogEvent)
	var where string
	var ev WatchdogEvent
	if err != nil {
		st.LastErr = err
		st.ConsecutiveFailures++
		st.ConsecutiveSuccesses = 0
		if st.Healthy && st.ConsecutiveFailures >= w.failAfter {
			st.Healthy = false
			fire, where = w.onFail, "watchdog OnFail"
			ev = WatchdogEvent{Watchdog: w.name, Healthy: false, Err: err, Checks: st.ConsecutiveFailures, Time: end}
		}
	} else {
		st.ConsecutiveSuccesses++
		st.ConsecutiveFailures = 0
		if !st.Healthy && st.ConsecutiveSuccesses >= w.recover {
			st.Healthy = true
			fire, where = w.onRecover, "watchdog OnRecover"
			ev = WatchdogEvent{Watchdog: w.name, Healthy: true, Err: st.LastErr, Checks: st.ConsecutiveSuccesses, Time: end}
		}
	}
	healthy := st.Healthy
	w.mu.Unlock()

	if fire != nil {
		w.callback(where, func() { fire(ctx, ev) })
	}
	if w.onCheck != nil {
		w.callback("watchdog OnCheck", func() {
			w.onCheck(CheckResult{Watchdog: w.name, Err: err, Latency: latency, Time: end, Healthy: healthy})
		})
	}
}

// addSat returns a+b for non-negative durations, math.MaxInt64 where the
// sum would overflow.
func addSat(a, b time.Duration) time.Duration {
	if a > math.MaxInt64-b {
		return math.MaxInt64
	}
	return a + b
}

// errCheckGoexit fails a check that ended its goroutine with
// runtime.Goexit instead of returning.
var errCheckGoexit = errors.New("jidoka: watchdog Check called runtime.Goexit")

// runCheck calls Check with ctx, turning a panic into a *PanicError,
// unless the watchdog's context run has ended: a tick or the first check of
// Start that races with Shutdown (or with the end of the context given to
// Start) starts no check once Shutdown has cancelled run.
func (w *Watchdog) runCheck(run, ctx context.Context) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = newPanicError("watchdog Check", v)
		}
	}()
	if w.atGate != nil {
		w.atGate()
	}
	if err := run.Err(); err != nil {
		return err
	}
	return w.check(ctx)
}

// callback calls fn, which runs the callback named where, and waits for it.
// fn runs on a goroutine of its own, so that one ending with runtime.Goexit
// ends that goroutine and not the watchdog's; a panic or a Goexit is
// logged, and the watchdog keeps running.
func (w *Watchdog) callback(where string, fn func()) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		returned := false
		defer func() {
			if v := recover(); v != nil {
				logPanic(w.logger, "watchdog", w.name, newPanicError(where, v))
			} else if !returned {
				logGoexit(w.logger, "watchdog", w.name, where)
			}
		}()
		fn()
		returned = true
	}()
	<-done
}
