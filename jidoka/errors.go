package jidoka

import (
	"errors"
	"strconv"
	"time"
)

var (
	// ErrOpen matches (errors.Is) every *OpenError: a Breaker refused a
	// call because it is open, forced open, or half-open with every probe
	// lease taken.
	ErrOpen = errors.New("jidoka: breaker open")
	// ErrLineStopped matches every *StoppedError: a stopped Line refused a
	// signal.
	ErrLineStopped = errors.New("jidoka: line stopped")
	// ErrWatchdogStarted is returned by Watchdog.Start when the watchdog is
	// already running or has been closed.
	ErrWatchdogStarted = errors.New("jidoka: watchdog already started or closed")
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

	m     *monotonic
	until int64 // end of the open period on m; 0 when unknown
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
// rest of the open period, read from the breaker's clock when called. It is
// 0 when the breaker is forced open (no end is known), when it is half-open,
// or when the period has ended. tai.RetryAfter finds it.
func (e *OpenError) RetryAfter() time.Duration {
	if e.until == 0 || e.m == nil {
		return 0
	}
	if d := e.until - e.m.now(); d > 0 {
		return time.Duration(d)
	}
	return 0
}

// Until returns when the open period ends, the zero time when no end is
// known (forced open, half-open).
func (e *OpenError) Until() time.Time {
	if e.until == 0 || e.m == nil {
		return time.Time{}
	}
	return e.m.at(e.until)
}

// StoppedError is the rejection of a stopped Line. One value is made per
// stop and returned to every signal refused until the line starts again;
// treat it as read-only.
type StoppedError struct {
	Line   string    // the line's Name
	Reason string    // the reason given to Stop
	Since  time.Time // when the line stopped
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
