package jidoka

import (
	"fmt"
	"strconv"
	"time"
)

// State is the state of a Breaker.
type State uint8

// The states of a Breaker. The zero State is StateClosed.
const (
	// StateClosed: calls run and their results are counted; a trip rule
	// opens the breaker.
	StateClosed State = iota
	// StateHalfOpen: the open period has ended; up to HalfOpenProbes calls
	// run as probes at a time, the others are refused.
	StateHalfOpen
	// StateOpen: calls are refused until the open period ends.
	StateOpen
	// StateForcedOpen: calls are refused until Reset (or another forcing
	// call); no timer ends it.
	StateForcedOpen
	// StateDisabled: every call runs and nothing is counted.
	StateDisabled
	// StateMetricsOnly: every call runs and is counted, but the breaker
	// never trips.
	StateMetricsOnly
)

var stateNames = [...]string{"closed", "half-open", "open", "forced-open", "disabled", "metrics-only"}

// String returns "closed", "half-open", "open", "forced-open", "disabled"
// or "metrics-only".
func (s State) String() string {
	if int(s) < len(stateNames) {
		return stateNames[s]
	}
	return "state(" + strconv.Itoa(int(s)) + ")"
}

// MarshalText encodes the state as its String.
func (s State) MarshalText() ([]byte, error) {
	if int(s) >= len(stateNames) {
		return nil, fmt.Errorf("jidoka: invalid state %d", uint8(s))
	}
	return []byte(stateNames[s]), nil
}

// UnmarshalText decodes a state from its String: "closed", "half-open",
// "open", "forced-open", "disabled" or "metrics-only".
func (s *State) UnmarshalText(text []byte) error {
	for i, name := range stateNames {
		if string(text) == name {
			*s = State(i)
			return nil
		}
	}
	return fmt.Errorf("jidoka: unknown state %q", text)
}

// Event is a change of a Breaker's state, passed to BreakerOptions.OnStateChange.
type Event struct {
	Breaker    string    // the breaker's Name
	From, To   State     // the states before and after
	Reason     string    // why: the rule that tripped, "reset", the reason given to Trip, ...
	Time       time.Time // when
	Generation uint64    // the generation the change started; it grows by one per change, and per Reset of a closed breaker (no event)
}

// Snapshot is a consistent view of a Breaker at one moment.
type Snapshot struct {
	Name   string
	State  State
	Reason string    // why the breaker entered State
	Since  time.Time // when it entered State
	// NextProbe is when the open period ends and probes are let through;
	// zero unless State is StateOpen.
	NextProbe time.Time
	// Generation is 1 for a new breaker and grows by one per state change,
	// and per Reset of a closed breaker, which changes no state but clears
	// the counts; results of calls admitted in an earlier generation are
	// ignored.
	Generation uint64
	// Trips counts the trips since the breaker last closed, or was
	// disabled or made metrics-only; it drives the back-off of the open
	// duration.
	Trips int

	// ConsecutiveFailures is the current run of failures (closed and
	// metrics-only states, with a consecutive rule).
	ConsecutiveFailures int
	// Calls, Failures and SlowCalls are counted in the window, when one is
	// configured (closed and metrics-only states); zero otherwise.
	Calls, Failures, SlowCalls int
	// FailureRate and SlowCallRate are Failures/Calls and SlowCalls/Calls,
	// zero without calls.
	FailureRate, SlowCallRate float64

	// ProbesInFlight and ProbeSuccesses describe the half-open state.
	ProbesInFlight, ProbeSuccesses int
}
