package jidoka

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults and limits of WatchdogConfig.
const (
	DefaultWatchdogInterval = 10 * time.Second
	DefaultFailAfter        = 3
	DefaultRecoverAfter     = 3
	MinWatchdogInterval     = time.Millisecond
)

// WatchdogConfig configures a Watchdog. Check is required; every other zero
// field has a default.
type WatchdogConfig struct {
	// Name names the watchdog in events and results.
	Name string
	// Check probes health: nil means healthy. It gets a context that is
	// cancelled after Timeout, or when the watchdog stops. Required.
	Check func(ctx context.Context) error
	// Interval is the pause between the end of one check and the start of
	// the next; the first check runs at Start. Zero means
	// DefaultWatchdogInterval (10 s); it must be at least
	// MinWatchdogInterval (1 ms).
	Interval time.Duration
	// Timeout bounds a check: its context is cancelled when it runs
	// longer. Zero means Interval.
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
	// OnFail is called once each time the watchdog turns unhealthy, on the
	// watchdog's goroutine with its context; checks wait until it returns.
	// A deployment rolls back here. Nil: nothing is called.
	OnFail func(ctx context.Context, ev WatchdogEvent)
	// OnRecover is called once each time the watchdog turns healthy again,
	// like OnFail.
	OnRecover func(ctx context.Context, ev WatchdogEvent)
	// OnCheck is called after every check, after OnFail or OnRecover, on
	// the watchdog's goroutine: for metrics and logs. Nil: nothing.
	OnCheck func(r CheckResult)
	// Clock schedules checks and measures them; nil means the system
	// clock.
	Clock Clock
}

// WatchdogEvent reports that a Watchdog turned unhealthy or healthy.
type WatchdogEvent struct {
	Watchdog string    // the watchdog's Name
	Healthy  bool      // the new health
	Err      error     // the failure of the last failed check
	Checks   int       // how many checks in a row led here
	Time     time.Time // when, on the watchdog's clock
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
// the context given to Start ends or Close is called. It is safe for
// concurrent use.
type Watchdog struct {
	name               string
	check              func(context.Context) error
	interval, timeout  time.Duration
	limit              time.Duration
	failAfter, recover int
	onFail, onRecover  func(context.Context, WatchdogEvent)
	onCheck            func(CheckResult)
	clock              Clock

	mu      sync.Mutex
	status  WatchdogStatus
	started bool
	closed  bool
	cancel  context.CancelFunc
	done    chan struct{}
}

// NewWatchdog returns a healthy, not yet started watchdog configured by
// cfg, or an error naming the first invalid field.
func NewWatchdog(cfg WatchdogConfig) (*Watchdog, error) {
	switch {
	case cfg.Check == nil:
		return nil, errors.New("jidoka: watchdog Check is nil")
	case cfg.Interval < 0 || (cfg.Interval > 0 && cfg.Interval < MinWatchdogInterval):
		return nil, fmt.Errorf("jidoka: watchdog Interval must be 0 or at least %v, got %v", MinWatchdogInterval, cfg.Interval)
	case cfg.Timeout < 0:
		return nil, fmt.Errorf("jidoka: watchdog Timeout must not be negative, got %v", cfg.Timeout)
	case cfg.LatencyLimit < 0:
		return nil, fmt.Errorf("jidoka: watchdog LatencyLimit must not be negative, got %v", cfg.LatencyLimit)
	case cfg.FailAfter < 0:
		return nil, fmt.Errorf("jidoka: watchdog FailAfter must not be negative, got %d", cfg.FailAfter)
	case cfg.RecoverAfter < 0:
		return nil, fmt.Errorf("jidoka: watchdog RecoverAfter must not be negative, got %d", cfg.RecoverAfter)
	}
	w := &Watchdog{
		name:      cfg.Name,
		check:     cfg.Check,
		interval:  orDuration(cfg.Interval, DefaultWatchdogInterval),
		limit:     cfg.LatencyLimit,
		failAfter: orInt(cfg.FailAfter, DefaultFailAfter),
		recover:   orInt(cfg.RecoverAfter, DefaultRecoverAfter),
		onFail:    cfg.OnFail,
		onRecover: cfg.OnRecover,
		onCheck:   cfg.OnCheck,
		clock:     cfg.Clock,
		status:    WatchdogStatus{Healthy: true},
		done:      make(chan struct{}),
	}
	w.timeout = orDuration(cfg.Timeout, w.interval)
	if w.clock == nil {
		w.clock = SystemClock
	}
	return w, nil
}

// Name returns WatchdogConfig.Name.
func (w *Watchdog) Name() string { return w.name }

// Start runs the first check and then one every Interval on a goroutine of
// the watchdog, until ctx ends or Close is called. It returns
// ErrWatchdogStarted if the watchdog was started or closed before.
func (w *Watchdog) Start(ctx context.Context) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.started || w.closed {
		return ErrWatchdogStarted
	}
	w.started = true
	ctx, w.cancel = context.WithCancel(ctx)
	go w.run(ctx)
	return nil
}

// Close stops the watchdog, cancelling a check in progress, and waits for
// its goroutine to end. It may be called more than once, and before Start.
func (w *Watchdog) Close() error {
	w.mu.Lock()
	started := w.started
	w.closed = true
	if w.cancel != nil {
		w.cancel()
	}
	w.mu.Unlock()
	if started {
		<-w.done
	}
	return nil
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
	tick := make(chan struct{}, 1)
	for ctx.Err() == nil {
		w.probe(ctx)
		t := w.clock.AfterFunc(w.interval, func() {
			select {
			case tick <- struct{}{}:
			default:
			}
		})
		select {
		case <-ctx.Done():
			t.Stop()
		case <-tick:
		}
	}
}

// probe runs one check and acts on its result.
func (w *Watchdog) probe(ctx context.Context) {
	cctx, cancel := context.WithCancel(ctx)
	var timedOut atomic.Bool
	timer := w.clock.AfterFunc(w.timeout, func() { timedOut.Store(true); cancel() })
	start := w.clock.Now()
	err := w.runCheck(cctx)
	end := w.clock.Now()
	timer.Stop()
	cancel()
	latency := end.Sub(start)
	switch {
	case err != nil && timedOut.Load():
		err = fmt.Errorf("jidoka: check timed out after %v: %w", w.timeout, err)
	case err == nil && w.limit > 0 && latency > w.limit:
		err = fmt.Errorf("%w: took %v, limit %v", ErrSlowCheck, latency, w.limit)
	}
	if err != nil && ctx.Err() != nil {
		return // stopped mid-check: the failure is ours, not the service's
	}

	w.mu.Lock()
	st := &w.status
	st.Checks++
	st.LastCheck, st.LastLatency = end, latency
	var fire func(context.Context, WatchdogEvent)
	var ev WatchdogEvent
	if err != nil {
		st.LastErr = err
		st.ConsecutiveFailures++
		st.ConsecutiveSuccesses = 0
		if st.Healthy && st.ConsecutiveFailures >= w.failAfter {
			st.Healthy = false
			fire = w.onFail
			ev = WatchdogEvent{Watchdog: w.name, Healthy: false, Err: err, Checks: st.ConsecutiveFailures, Time: end}
		}
	} else {
		st.ConsecutiveSuccesses++
		st.ConsecutiveFailures = 0
		if !st.Healthy && st.ConsecutiveSuccesses >= w.recover {
			st.Healthy = true
			fire = w.onRecover
			ev = WatchdogEvent{Watchdog: w.name, Healthy: true, Err: st.LastErr, Checks: st.ConsecutiveSuccesses, Time: end}
		}
	}
	healthy := st.Healthy
	w.mu.Unlock()

	if fire != nil {
		fire(ctx, ev)
	}
	if w.onCheck != nil {
		w.onCheck(CheckResult{Watchdog: w.name, Err: err, Latency: latency, Time: end, Healthy: healthy})
	}
}

// runCheck calls Check, turning a panic into a failure.
func (w *Watchdog) runCheck(ctx context.Context) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = fmt.Errorf("jidoka: watchdog check panicked: %v", v)
		}
	}()
	return w.check(ctx)
}
