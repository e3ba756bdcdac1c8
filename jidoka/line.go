package jidoka

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// LineOptions configures a Line. The zero LineOptions is valid: an unnamed
// line without events or retry hint.
type LineOptions struct {
	// Name names the line in errors, events and tai hooks.
	Name string
	// OnChange is called after every stop and start, in order, with no
	// lock held: it may call the line. A panic in it is recovered and
	// logged on Logger as a *PanicError; the line keeps its state and the
	// events after it are still delivered. One that ends its goroutine
	// (runtime.Goexit: t.FailNow in a test) ends the Stop or Start that was
	// delivering, which does not return; the events after its own are
	// delivered on that goroutine before it ends. Nil: no events.
	OnChange func(LineEvent)
	// RetryAfter is the hint a stopped line gives the signals it refuses:
	// StoppedError.RetryAfter returns it, and tai.RetryAfter finds it (an
	// HTTP service can send it as Retry-After). It must not be negative.
	// Zero: no hint.
	RetryAfter time.Duration
	// Logger receives what the line cannot return to a caller: a panic of
	// OnChange. Nil means slog.Default() at the time of logging.
	Logger *slog.Logger
}

// LineEvent is a stop or a start of a Line.
type LineEvent struct {
	Line    string    // the line's Name
	Stopped bool      // true for a stop, false for a start
	Reason  string    // the reason given to Stop; for a start, the reason of the stop it ends
	Time    time.Time // when
}

// LineStatus is the state of a Line at one moment.
type LineStatus struct {
	Stopped bool
	Reason  string    // the reason of the current stop, "" while running
	Since   time.Time // when the current stop began, zero while running
	Stops   uint64    // how many times the line has been stopped
}

// Line is a stop-the-line switch: anyone who sees a problem (a person, an
// andon rule, a watchdog) calls Stop, and the line refuses new work until
// someone calls Start. It is a tai.Gate: Admit returns a *StoppedError
// (errors.Is ErrLineStopped) naming the reason while the line is stopped.
//
// The zero Line is running, unnamed, without events and without retry
// hint. A Line is safe for concurrent use; Admit reads one atomic word and
// does not allocate.
type Line struct {
	name       string
	onChange   func(LineEvent)
	retryAfter time.Duration
	logger     *slog.Logger

	stop   atomic.Pointer[StoppedError] // nil while running; written under mu
	mu     sync.Mutex                   // serialises Stop and Start, and guards stops
	stops  uint64
	events queue[LineEvent]
}

// NewLine returns a running line configured by opts, or an error naming the
// invalid field and its value.
func NewLine(opts LineOptions) (*Line, error) {
	if opts.RetryAfter < 0 {
		return nil, fmt.Errorf("jidoka: line RetryAfter must not be negative, got %v", opts.RetryAfter)
	}
	return &Line{name: opts.Name, onChange: opts.OnChange, retryAfter: opts.RetryAfter, logger: opts.Logger}, nil
}

// Name returns LineOptions.Name.
func (l *Line) Name() string { return l.name }

// Admit returns nil while the line runs and its *StoppedError while it is
// stopped.
func (l *Line) Admit(_ context.Context, _ string) error {
	if s := l.stop.Load(); s != nil {
		return s
	}
	return nil
}

// Stop stops the line for reason and reports whether it was running. A
// line already stopped keeps its first reason.
func (l *Line) Stop(reason string) bool {
	l.mu.Lock()
	if l.stop.Load() != nil {
		l.mu.Unlock()
		return false
	}
	now := time.Now()
	l.stop.Store(&StoppedError{Line: l.name, Reason: reason, Since: now, retryAfter: l.retryAfter})
	l.stops++
	if l.onChange != nil {
		l.events.push(LineEvent{Line: l.name, Stopped: true, Reason: reason, Time: now})
	}
	l.mu.Unlock()
	l.deliver()
	return true
}

// Start restarts the line and reports whether it was stopped.
func (l *Line) Start() bool { return l.start(0) }

// EndStop restarts the line if it is still stopped by its n-th stop, n
// being LineStatus.Stops as it was right after that Stop, and reports
// whether it did. It ends one particular stop: once the line has been
// started, and perhaps stopped again since (for any reason, even the same
// one), EndStop(n) does nothing. A restart by EndStop is delivered to
// OnChange as a Start is.
//
// Whoever stops a line and means to restart only that stop (an andon rule
// that stopped it, say) takes n from Status after its Stop returned true;
// if Stops has grown by more than one since before that Stop, someone else
// stopped the line in between, and the current stop may not be theirs.
func (l *Line) EndStop(n uint64) bool {
	if n == 0 { // no stop has that number
		return false
	}
	return l.start(n)
}

// start restarts the line if it is stopped and, unless n is 0, if the
// current stop is its n-th; it reports whether it did.
func (l *Line) start(n uint64) bool {
	l.mu.Lock()
	s := l.stop.Load()
	if s == nil || (n != 0 && l.stops != n) {
		l.mu.Unlock()
		return false
	}
	l.stop.Store(nil)
	if l.onChange != nil {
		l.events.push(LineEvent{Line: l.name, Reason: s.Reason, Time: time.Now()})
	}
	l.mu.Unlock()
	l.deliver()
	return true
}

// Stopped reports whether the line is stopped, and why.
func (l *Line) Stopped() (bool, string) {
	if s := l.stop.Load(); s != nil {
		return true, s.Reason
	}
	return false, ""
}

// Status returns whether the line is stopped, why, since when and how many
// times it has been stopped, all as of one moment: a stopped line's Stops
// is the number of its current stop.
func (l *Line) Status() LineStatus {
	l.mu.Lock()
	defer l.mu.Unlock()
	if s := l.stop.Load(); s != nil {
		return LineStatus{Stopped: true, Reason: s.Reason, Since: s.Since, Stops: l.stops}
	}
	return LineStatus{Stops: l.stops}
}

func (l *Line) deliver() {
	if l.onChange != nil {
		l.events.drain(l.notify)
	}
}

// notify calls OnChange with ev, recovering and logging a panic.
func (l *Line) notify(ev LineEvent) {
	defer func() {
		if v := recover(); v != nil {
			logPanic(l.logger, "line", l.name, newPanicError("line OnChange", v))
		}
	}()
	l.onChange(ev)
}
