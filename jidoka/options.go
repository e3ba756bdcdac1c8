package jidoka

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"time"
)

// Defaults of BreakerOptions.
const (
	DefaultConsecutiveFailures = 5
	DefaultWindowSize          = 100
	DefaultWindowBuckets       = 10
	DefaultMinimumCalls        = 10
	DefaultSlowCallDuration    = 5 * time.Second
	DefaultOpenDuration        = 30 * time.Second
	DefaultBackoffFactor       = 2.0
	DefaultHalfOpenProbes      = 1
	DefaultHalfOpenSuccesses   = 3
	DefaultProbeTimeout        = 30 * time.Second
)

// Limits of BreakerOptions, to keep memory and arithmetic bounded.
const (
	MaxWindowSize     = 1 << 20
	MaxWindowBuckets  = 1 << 12
	MaxHalfOpenProbes = 1 << 10
)

// BreakerOptions configures a Breaker. The zero BreakerOptions is valid: a
// breaker that opens after DefaultConsecutiveFailures failures in a row.
// Every zero field has a default; NewBreaker rejects negative or
// contradictory values with an error naming the field and the value.
//
// The trip rules may be combined; the breaker opens when any of them holds:
//
//   - ConsecutiveFailures: that many failures in a row.
//   - FailureRate: the share of failures among the calls in the window
//     reaches it, once the window holds MinimumCalls calls.
//   - SlowCallRate: the share of calls slower than SlowCallDuration (failed
//     or not) reaches it, under the same minimum.
//
// The window is a count window (the last WindowSize calls) or a time window
// (the calls of the last WindowDuration, kept in WindowBuckets buckets that
// expire one at a time).
type BreakerOptions struct {
	// Name names the breaker in errors, events and tai hooks.
	Name string

	// ConsecutiveFailures opens the breaker after this many failures in a
	// row. Zero means DefaultConsecutiveFailures (5) when neither
	// FailureRate nor SlowCallRate is set, and no consecutive rule when
	// one of them is; set it explicitly to combine it with a rate rule.
	ConsecutiveFailures int

	// FailureRate in (0, 1] opens the breaker when failures/calls in the
	// window reach it. Zero: no failure-rate rule.
	FailureRate float64
	// SlowCallRate in (0, 1] opens the breaker when slow calls/calls in
	// the window reach it. Zero: no slow-call rule.
	SlowCallRate float64
	// SlowCallDuration is how long a call may take before it counts as
	// slow. Used only with SlowCallRate; zero means
	// DefaultSlowCallDuration (5 s). Slow-call detection reads the clock
	// before and after every call.
	SlowCallDuration time.Duration
	// MinimumCalls is how many calls the window must hold before the rates
	// count. Zero means DefaultMinimumCalls (10), or WindowSize if that is
	// smaller.
	MinimumCalls int

	// WindowSize makes the window a count window of the last WindowSize
	// calls. WindowDuration makes it a time window instead; setting both
	// is an error. With a rate rule and neither set, the window is a count
	// window of DefaultWindowSize (100) calls. Without a rate rule a
	// window only feeds Snapshot.
	WindowSize int
	// WindowDuration makes the window a time window of this length.
	WindowDuration time.Duration
	// WindowBuckets is how many buckets a time window has; the oldest
	// bucket expires every WindowDuration/WindowBuckets, counted from when
	// NewBreaker made the breaker, not from when its state began: with one
	// bucket the window is emptied at every whole WindowDuration since the
	// breaker was made. Zero means DefaultWindowBuckets (10).
	WindowBuckets int

	// OpenDuration is how long the breaker stays open before it lets
	// probes through (half-open). Zero means DefaultOpenDuration (30 s).
	OpenDuration time.Duration
	// MaxOpenDuration turns on exponential back-off: each trip that
	// follows a failed half-open period multiplies the open duration by
	// BackoffFactor, up to MaxOpenDuration. Zero: every open period lasts
	// OpenDuration. The back-off resets when the breaker closes, and on
	// Disable and MetricsOnly.
	MaxOpenDuration time.Duration
	// BackoffFactor is the multiplier of the back-off, at least 1. Zero
	// means DefaultBackoffFactor (2).
	BackoffFactor float64

	// HalfOpenProbes is how many probe calls may be in flight at once in
	// the half-open state; each holds a lease. Zero means
	// DefaultHalfOpenProbes (1).
	HalfOpenProbes int
	// HalfOpenSuccesses is how many probe successes close the breaker. A
	// probe failure (or a slow probe, with a slow-call rule) reopens it.
	// Zero means DefaultHalfOpenSuccesses (3).
	HalfOpenSuccesses int
	// ProbeTimeout is how long a probe lease is held without a report
	// before it can be given to another probe; the late report is then
	// ignored. Zero means DefaultProbeTimeout (30 s).
	ProbeTimeout time.Duration

	// IsFailure reports whether a non-nil error counts as a failure; an
	// error for which it returns false counts as a success. A nil error is
	// always a success, and a panic always a failure (a *tai.PanicError,
	// as a tai pipeline reports an action's, even wrapped by a guard
	// between them, such as a Timeout's *TimeoutError). A refusal by a guard
	// inside the breaker (errors.Is ErrBulkheadFull or ErrOpen: a full
	// Bulkhead, another Breaker) is never counted, whatever IsFailure and
	// Ignore say: the call did not reach the dependency, and a probe so
	// refused gives its lease back. A panic in IsFailure or Ignore goes on
	// to the caller of Do, or of done; the call is not counted, and a
	// probe gives its lease back. Nil means every error is a failure.
	IsFailure func(err error) bool
	// Ignore reports whether an error is neither a success nor a failure:
	// the call is not counted and gives back its probe lease. It is asked
	// before IsFailure, and never about a panic or a refusal; it is asked
	// about every other error, whatever the call's context. Nil means the
	// errors of a caller that gave up: errors.Is(err, context.Canceled),
	// and, through Do, any error of a call whose context was canceled by
	// the time it returned (an RPC client's own "canceled" error, the last
	// error of a Retry inside the breaker whose wait the caller canceled);
	// done of Allow sees the error alone (see Allow). A deadline that
	// passed (context.DeadlineExceeded, a Timeout's *TimeoutError) is
	// counted: the dependency did not answer in the time it was given. To
	// ignore nothing, set a func that returns false.
	Ignore func(err error) bool

	// OnStateChange is called after every change of state, in the order of
	// the changes, with no lock held: it may call the breaker (State,
	// Snapshot, Trip, Reset, ...). It runs on a goroutine that caused a
	// change (a call, Trip and the other methods that set the state, the
	// open timer), never on one that only reads the breaker: when State or
	// Snapshot finds the open period ended and turns the breaker
	// half-open, the open timer, whose time has come, delivers that event,
	// so a reader that holds a lock of its own (a metrics scrape, a board)
	// does not run the listener under it. A change made while another
	// goroutine is delivering events is delivered by that goroutine, after
	// the events before it. A panic in it is recovered and logged on Logger as a
	// *PanicError: it never reaches the call that caused the change, and
	// the events after it are still delivered. One that ends
	// its goroutine (runtime.Goexit: t.FailNow in a test) ends the call
	// that was delivering, which does not return; the events after its own
	// are delivered on that goroutine before it ends. Nil: no events.
	OnStateChange func(Event)

	// Logger receives what the breaker cannot return to a caller: a panic
	// of OnStateChange. Nil means slog.Default() at the time of logging.
	Logger *slog.Logger
}

// settings is a validated BreakerOptions with its defaults applied.
type settings struct {
	name                 string
	consecutive          int64
	failureRate          float64
	slowRate             float64
	slowDur              int64
	minCalls             int64
	windowSize           int
	windowDur            int64
	buckets              int
	openDur, maxOpenDur  int64
	factor               float64
	probes, probeSuccess int
	probeTimeout         int64
	isFailure            func(error) bool
	ignore               func(error) bool
	onChange             func(Event)
	logger               *slog.Logger

	ignoreCanceledCalls bool // Ignore is the default: Do ignores a call whose ctx was canceled
	timing              bool // slow-call rule: clock read before and after each call
	plain               bool // no window and no slow rule: a success only resets the consecutive count
}

func isCanceled(err error) bool { return errors.Is(err, context.Canceled) }

func badRate(r float64) bool { return math.IsNaN(r) || r < 0 || r > 1 }

func (c *BreakerOptions) settings() (settings, error) {
	s := settings{name: c.Name, isFailure: c.IsFailure, ignore: c.Ignore, onChange: c.OnStateChange, logger: c.Logger}
	if s.ignore == nil {
		s.ignore, s.ignoreCanceledCalls = isCanceled, true
	}
	switch {
	case c.ConsecutiveFailures < 0:
		return s, fmt.Errorf("jidoka: ConsecutiveFailures must not be negative, got %d", c.ConsecutiveFailures)
	case badRate(c.FailureRate):
		return s, fmt.Errorf("jidoka: FailureRate must be in [0, 1], got %v", c.FailureRate)
	case badRate(c.SlowCallRate):
		return s, fmt.Errorf("jidoka: SlowCallRate must be in [0, 1], got %v", c.SlowCallRate)
	case c.SlowCallDuration < 0:
		return s, fmt.Errorf("jidoka: SlowCallDuration must not be negative, got %v", c.SlowCallDuration)
	case c.MinimumCalls < 0:
		return s, fmt.Errorf("jidoka: MinimumCalls must not be negative, got %d", c.MinimumCalls)
	case c.WindowSize < 0 || c.WindowSize > MaxWindowSize:
		return s, fmt.Errorf("jidoka: WindowSize must be in [0, %d], got %d", MaxWindowSize, c.WindowSize)
	case c.WindowDuration < 0:
		return s, fmt.Errorf("jidoka: WindowDuration must not be negative, got %v", c.WindowDuration)
	case c.WindowSize > 0 && c.WindowDuration > 0:
		return s, fmt.Errorf("jidoka: WindowSize (%d) and WindowDuration (%v) are exclusive, set one", c.WindowSize, c.WindowDuration)
	case c.WindowBuckets < 0 || c.WindowBuckets > MaxWindowBuckets:
		return s, fmt.Errorf("jidoka: WindowBuckets must be in [0, %d], got %d", MaxWindowBuckets, c.WindowBuckets)
	case c.OpenDuration < 0:
		return s, fmt.Errorf("jidoka: OpenDuration must not be negative, got %v", c.OpenDuration)
	case c.MaxOpenDuration < 0:
		return s, fmt.Errorf("jidoka: MaxOpenDuration must not be negative, got %v", c.MaxOpenDuration)
	case math.IsNaN(c.BackoffFactor) || math.IsInf(c.BackoffFactor, 0) || (c.BackoffFactor != 0 && c.BackoffFactor < 1):
		return s, fmt.Errorf("jidoka: BackoffFactor must be at least 1, got %v", c.BackoffFactor)
	case c.HalfOpenProbes < 0 || c.HalfOpenProbes > MaxHalfOpenProbes:
		return s, fmt.Errorf("jidoka: HalfOpenProbes must be in [0, %d], got %d", MaxHalfOpenProbes, c.HalfOpenProbes)
	case c.HalfOpenSuccesses < 0:
		return s, fmt.Errorf("jidoka: HalfOpenSuccesses must not be negative, got %d", c.HalfOpenSuccesses)
	case c.ProbeTimeout < 0:
		return s, fmt.Errorf("jidoka: ProbeTimeout must not be negative, got %v", c.ProbeTimeout)
	}

	s.failureRate, s.slowRate = c.FailureRate, c.SlowCallRate
	rates := s.failureRate > 0 || s.slowRate > 0
	s.consecutive = int64(c.ConsecutiveFailures)
	if s.consecutive == 0 && !rates {
		s.consecutive = DefaultConsecutiveFailures
	}
	if s.slowRate > 0 {
		s.timing = true
		s.slowDur = int64(orDuration(c.SlowCallDuration, DefaultSlowCallDuration))
	}

	s.windowSize, s.windowDur = c.WindowSize, int64(c.WindowDuration)
	if rates && s.windowSize == 0 && s.windowDur == 0 {
		s.windowSize = DefaultWindowSize
	}
	if s.windowDur > 0 {
		s.buckets = c.WindowBuckets
		if s.buckets == 0 {
			s.buckets = DefaultWindowBuckets
		}
		if s.windowDur < int64(s.buckets) {
			return s, fmt.Errorf("jidoka: WindowDuration (%v) must be at least one nanosecond per bucket (%d buckets)", c.WindowDuration, s.buckets)
		}
	}
	s.minCalls = int64(c.MinimumCalls)
	if s.minCalls == 0 {
		s.minCalls = DefaultMinimumCalls
		if s.windowSize > 0 && s.windowSize < DefaultMinimumCalls {
			s.minCalls = int64(s.windowSize)
		}
	} else if s.windowSize > 0 && s.minCalls > int64(s.windowSize) {
		return s, fmt.Errorf("jidoka: MinimumCalls (%d) exceeds WindowSize (%d), the rates would never count", c.MinimumCalls, s.windowSize)
	}

	s.openDur = int64(orDuration(c.OpenDuration, DefaultOpenDuration))
	s.maxOpenDur = int64(c.MaxOpenDuration)
	if s.maxOpenDur > 0 && s.maxOpenDur < s.openDur {
		return s, fmt.Errorf("jidoka: MaxOpenDuration (%v) is shorter than OpenDuration (%v)", c.MaxOpenDuration, time.Duration(s.openDur))
	}
	s.factor = c.BackoffFactor
	if s.factor == 0 {
		s.factor = DefaultBackoffFactor
	}

	s.probes = orInt(c.HalfOpenProbes, DefaultHalfOpenProbes)
	s.probeSuccess = orInt(c.HalfOpenSuccesses, DefaultHalfOpenSuccesses)
	s.probeTimeout = int64(orDuration(c.ProbeTimeout, DefaultProbeTimeout))
	s.plain = s.windowSize == 0 && s.windowDur == 0 && !s.timing
	return s, nil
}

// openFor returns the length of the open period after trips trips in a row:
// OpenDuration × BackoffFactor^(trips-1), at most MaxOpenDuration. It is
// computed at once, not a step per trip: a step truncated to whole
// nanoseconds would lose a growth of less than one, and the steps would
// add up to a loop as long as the run of trips.
func (s *settings) openFor(trips int) int64 {
	if s.maxOpenDur == 0 || s.factor == 1 || trips <= 1 {
		return s.openDur
	}
	d := float64(s.openDur) * math.Pow(s.factor, float64(trips-1))
	if d >= float64(s.maxOpenDur) {
		return s.maxOpenDur
	}
	return int64(d)
}

func orDuration(d, def time.Duration) time.Duration {
	if d == 0 {
		return def
	}
	return d
}

func orInt(n, def int) int {
	if n == 0 {
		return def
	}
	return n
}
