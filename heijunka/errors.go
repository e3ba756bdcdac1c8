package heijunka

import (
	"errors"
	"strconv"
	"time"
)

var (
	// ErrLimited matches (errors.Is) every *LimitedError: a request was
	// over its limit.
	ErrLimited = errors.New("heijunka: limited")
	// ErrStoreFull is returned by a MemoryStore with the RejectNew policy
	// when it holds MaxKeys keys and none is fresh.
	ErrStoreFull = errors.New("heijunka: store full")
)

// LimitedError is returned when a limiter turns a request away. It carries
// the Decision, so callers can set Retry-After and RateLimit headers, and
// tai.RetryAfter finds its RetryAfter method.
type LimitedError struct {
	Name     string // the limiter's name, if it has one
	Decision Decision
}

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
