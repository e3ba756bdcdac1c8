package heijunka

import (
	"errors"
	"fmt"
	"runtime/debug"
	"strconv"
	"time"
)

var (
	// ErrLimited matches (errors.Is) every *LimitedError: a request was
	// over its limit.
	ErrLimited = errors.New("heijunka: limited")
	// ErrStoreFull is returned by a MemoryStore with the RejectNew policy
	// when it holds MaxKeys keys and none is fresh. Keyed.Admit returns it
	// wrapped in an error whose RetryAfter method (read by tai.RetryAfter)
	// says when a key held becomes fresh.
	ErrStoreFull = errors.New("heijunka: store full")
)

// LimitedError is returned when a limiter turns a request away. It carries
// the Decision, so callers can set Retry-After and RateLimit headers, and
// tai.RetryAfter finds its RetryAfter method.
type LimitedError struct {
	Name     string // the limiter's name, if it has one
	Decision Decision
}

// Error describes the limit and when to retry:
// `heijunka: "velocity" over limit 5/min burst 5; retry after 12s`.
func (e *LimitedError) Error() string {
	msg := "heijunka: "
	if e.Name != "" {
		msg += strconv.Quote(e.Name) + " "
	}
	msg += "over limit " + e.Decision.Limit.String()
	if ra := e.Decision.RetryAfter; ra == InfDuration {
		msg += "; the request can never pass"
	} else if ra > 0 {
		msg += "; retry after " + ra.String()
	}
	return msg
}

// Is reports whether target is ErrLimited.
func (e *LimitedError) Is(target error) bool { return target == ErrLimited }

// RetryAfter returns how long until the request would pass; InfDuration
// if it never can.
func (e *LimitedError) RetryAfter() time.Duration { return e.Decision.RetryAfter }

// PanicError is a panic recovered from a function given to heijunka (a
// Ramp's OnEvent listener), so that a faulty listener cannot stop the
// delivery of later events. It is returned by the call that ran the
// function.
type PanicError struct {
	Where string // the function that panicked, e.g. "Ramp.OnEvent"
	Value any    // what was passed to panic
	Stack []byte // the goroutine's stack where it panicked (debug.Stack)
}

func newPanicError(where string, v any) *PanicError {
	return &PanicError{Where: where, Value: v, Stack: debug.Stack()}
}

// Error returns "heijunka: panic in <Where>: <Value>".
func (e *PanicError) Error() string {
	return fmt.Sprintf("heijunka: panic in %s: %v", e.Where, e.Value)
}

// Unwrap returns the panic value if it is an error.
func (e *PanicError) Unwrap() error {
	err, _ := e.Value.(error)
	return err
}
