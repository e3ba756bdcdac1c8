package jidoka

import (
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"strconv"
	"time"

	"github.com/taipattern/taikit/tai"
)

var (
	// ErrOpen matches (errors.Is) every *OpenError: a Breaker refused a
	// call because it is open, forced open, or half-open with every probe
	// lease taken.
	ErrOpen = errors.New("jidoka: breaker open")
	// ErrLineStopped matches every *StoppedError: a stopped Line refused a
	// signal.
	ErrLineStopped = errors.New("jidoka: line stopped")
	// ErrWatchdogStarted is returned by Watchdog.Start when the watchdog was
	// started or shut down before.
	ErrWatchdogStarted = errors.New("jidoka: watchdog already started or shut down")
	// ErrSlowCheck matches the failure a Watchdog records for a check that
	// returned nil but took longer than its LatencyLimit.
	ErrSlowCheck = errors.New("jidoka: health check too slow")
)

// OpenError is the rejection of a Breaker. One value is made per open
// period and returned to every call refused in it, so a rejection costs no
// allocation; treat it as read-only.
type OpenError struct {
	Breaker string // the breaker's Name
	State   State  // StateOpen, StateForcedOpen or StateHalfOpen (every probe lease taken)
	Reason  string // why the breaker left the closed state

	until time.Time // end of the open period; zero when unknown
}

func (e *OpenError) Error() string {
	msg := "jidoka: breaker"
	if e.Breaker != "" {
		msg += " " + strconv.Quote(e.Breaker)
	}
	if e.State == StateHalfOpen {
		msg += " is half-open with every probe in flight"
	} else {
		msg += " is " + e.State.String()
	}
	if e.Reason != "" {
		msg += ": " + e.Reason
	}
	return msg
}

// Is reports whether target is ErrOpen.
func (e *OpenError) Is(target error) bool { return target == ErrOpen }

// RetryAfter returns how long until the breaker lets a probe through: the
// rest of the open period, as of the call to RetryAfter. It is 0 when the
// breaker is forced open (no end is known), when it is half-open, or when
// the period has ended. RetryAfter and tai.RetryAfter find it.
func (e *OpenError) RetryAfter() time.Duration {
	if e.until.IsZero() {
		return 0
	}
	return max(time.Until(e.until), 0)
}

// Until returns when the open period ends, the zero time when no end is
// known (forced open, half-open).
func (e *OpenError) Until() time.Time { return e.until }

// StoppedError is the rejection of a stopped Line. One value is made per
// stop and returned to every signal refused until the line starts again;
// treat it as read-only.
type StoppedError struct {
	Line   string    // the line's Name
	Reason string    // the reason given to Stop
	Since  time.Time // when the line stopped

	retryAfter time.Duration // LineOptions.RetryAfter
}

func (e *StoppedError) Error() string {
	msg := "jidoka: line"
	if e.Line != "" {
		msg += " " + strconv.Quote(e.Line)
	}
	msg += " is stopped"
	if e.Reason != "" {
		msg += ": " + e.Reason
	}
	return msg
}

// Is reports whether target is ErrLineStopped.
func (e *StoppedError) Is(target error) bool { return target == ErrLineStopped }

// RetryAfter returns the line's LineOptions.RetryAfter: the wait a refused
// caller is told to take before trying again (a stop has no known end, so
// it is a hint chosen by whoever runs the line). It is 0 when none was set.
// RetryAfter and tai.RetryAfter find it.
func (e *StoppedError) RetryAfter() time.Duration { return e.retryAfter }

// PanicError is a panic that jidoka recovered from a function of yours. A
// Watchdog's Check that panics fails that check with a *PanicError as its
// error. A panic in a listener or callback (a Breaker's OnStateChange, a
// Line's OnChange, a Watchdog's OnFail, OnRecover or OnCheck) is logged as
// a *PanicError on the Logger of the options, and the breaker, line or
// watchdog keeps working.
type PanicError struct {
	Where string // the function that panicked: "watchdog Check", "breaker OnStateChange", ...
	Value any    // what was passed to panic
	Stack []byte // the stack of the goroutine where it panicked
}

func newPanicError(where string, v any) *PanicError {
	return &PanicError{Where: where, Value: v, Stack: debug.Stack()}
}

func (e *PanicError) Error() string {
	return fmt.Sprintf("jidoka: panic in %s: %v", e.Where, e.Value)
}

// Unwrap returns the panic value if it is an error.
func (e *PanicError) Unwrap() error {
	err, _ := e.Value.(error)
	return err
}

// logPanic logs a recovered panic of a listener or callback on l, or on
// slog.Default() when l is nil. owner names the breaker, line or watchdog.
func logPanic(l *slog.Logger, owner, name string, e *PanicError) {
	if l == nil {
		l = slog.Default()
	}
	l.Error("jidoka: recovered a panic", owner, name, "where", e.Where, "panic", fmt.Sprint(e.Value), "stack", string(e.Stack))
}

// logGoexit logs, on l or on slog.Default() when l is nil, that the
// callback named where ended its goroutine with runtime.Goexit, with the
// stack of that goroutine; call it in a deferred function of that
// goroutine. owner names the watchdog.
func logGoexit(l *slog.Logger, owner, name, where string) {
	if l == nil {
		l = slog.Default()
	}
	l.Error("jidoka: a callback called runtime.Goexit", owner, name, "where", where, "stack", string(debug.Stack()))
}

// RetryAfter returns the retry hint of err: the RetryAfter() of the first
// error down its chain that has such a method (*OpenError, *StoppedError,
// *BulkheadFullError, heijunka's rejections, or an error of your own), or
// 0 when none has. Of errors joined (errors.Join) the longest hint wins: a
// call refused by two guards is refused until both let it through. A
// negative hint counts as 0. It is tai.RetryAfter, for code that uses
// jidoka alone.
func RetryAfter(err error) time.Duration { return tai.RetryAfter(err) }
