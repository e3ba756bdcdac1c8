package tai

import (
	"errors"
	"fmt"
	"runtime/debug"
	"strconv"
	"time"
)

// Outcome is how a signal ended. The zero Outcome is not an outcome: every
// Result and Record of a processed signal has one of the four below, and a
// zero one in a struct shows that it was never set.
type Outcome uint8

// The outcomes.
const (
	// Succeeded: the policies allowed the signal and the action returned
	// no error.
	Succeeded Outcome = iota + 1
	// Denied: a policy said no (or Review, with WithHoldOnReview).
	Denied
	// Rejected: the signal was shed before the action ran — a gate (rate
	// limit, stopped line) or a guard (open breaker) turned it away. A
	// caller may retry it later (HTTP 429 or 503). A signal whose caller
	// gave up (canceled its context) while a gate or a guard made it wait
	// is not shed: it is Failed.
	Rejected
	// Failed: a policy or the action erred or panicked, the context ended
	// before a stage or was canceled while a gate or a guard made the
	// signal wait, or the signal was invalid (ErrInvalidSignal).
	Failed
)

var outcomeNames = [...]string{"invalid", "succeeded", "denied", "rejected", "failed"}

// Outcomes returns every Outcome in order, Succeeded to Failed, for code
// that pre-creates one counter each. Each call returns a new slice.
func Outcomes() []Outcome {
	return []Outcome{Succeeded, Denied, Rejected, Failed}
}

// Valid reports whether o is Succeeded, Denied, Rejected or Failed.
func (o Outcome) Valid() bool { return o >= Succeeded && o <= Failed }

// String returns "succeeded", "denied", "rejected" or "failed", and
// "invalid" for the zero Outcome.
func (o Outcome) String() string {
	if int(o) < len(outcomeNames) {
		return outcomeNames[o]
	}
	return "outcome(" + strconv.Itoa(int(o)) + ")"
}

// MarshalText encodes the outcome as its String. It returns an error for
// an Outcome that is not Valid, the zero one included.
func (o Outcome) MarshalText() ([]byte, error) {
	if !o.Valid() {
		return nil, fmt.Errorf("tai: invalid outcome %d", uint8(o))
	}
	return []byte(o.String()), nil
}

// UnmarshalText decodes "succeeded", "denied", "rejected" or "failed".
func (o *Outcome) UnmarshalText(b []byte) error {
	for _, v := range Outcomes() {
		if string(b) == outcomeNames[v] {
			*o = v
			return nil
		}
	}
	return fmt.Errorf("tai: unknown outcome %q", b)
}

var (
	// ErrDenied matches (errors.Is) every *DeniedError.
	ErrDenied = errors.New("tai: denied")
	// ErrRejected matches every *RejectedError.
	ErrRejected = errors.New("tai: rejected")
	// ErrInvalidSignal matches the error Process returns for a signal
	// without an ID or a Kind. Such a signal is a programming error, not
	// load to shed: its Outcome is Failed, never Rejected.
	ErrInvalidSignal = errors.New("tai: invalid signal")
	// ErrAbandoned is matched (Outcome Failed) by the error of a signal
	// whose Guard returned while a call of the fn it was handed was still
	// running: the action, or a guard inside it that may yet run the
	// action (a retry waiting to call again). The late result is
	// discarded. The error the guards returned (a timeout's
	// context.DeadlineExceeded) is in the error too, reachable with
	// errors.Is and errors.As, but does not decide its Outcome.
	ErrAbandoned = errors.New("tai: guard returned before the action it started")
)

// OutcomeOf tells the Outcome an error from Process stands for: nil is
// Succeeded, a *DeniedError is Denied, a *RejectedError is Rejected, any
// other error is Failed. The outermost of tai's errors in err's tree
// decides: a *PolicyError, *PanicError or *StageError is Failed whatever
// it wraps (a policy that errs with another pipeline's rejection failed),
// as is the error of an abandoned signal (ErrAbandoned) whatever its
// guards returned, and a *RejectedError is Rejected whatever its hook's
// error. Without one
// of them, an error matching ErrDenied is Denied, ErrRejected Rejected.
// The tree is searched as errors.As searches it, depth first: of the
// errors an errors.Join holds, the first that holds one of tai's decides,
// however deep in it that one lies.
// An action's error is returned by Process as it is, so an action that
// returns another pipeline's rejection or denial passes that outcome on.
// A caller maps outcomes to responses in one switch:
//
//	switch tai.OutcomeOf(err) {
//	case tai.Succeeded: // 200
//	case tai.Denied:    // 402 or 403
//	case tai.Rejected:  // 429 or 503, with RetryAfter(err)
//	case tai.Failed:    // 502
//	}
func OutcomeOf(err error) Outcome {
	var o outcomer
	switch {
	case err == nil:
		return Succeeded
	case errors.As(err, &o):
		return o.outcome()
	case errors.Is(err, ErrDenied):
		return Denied
	case errors.Is(err, ErrRejected):
		return Rejected
	}
	return Failed
}

// outcomer is implemented by tai's errors: each stands for one Outcome.
type outcomer interface {
	error
	outcome() Outcome
}

func (*DeniedError) outcome() Outcome    { return Denied }
func (*RejectedError) outcome() Outcome  { return Rejected }
func (*PolicyError) outcome() Outcome    { return Failed }
func (*PanicError) outcome() Outcome     { return Failed }
func (*StageError) outcome() Outcome     { return Failed }
func (*abandonedError) outcome() Outcome { return Failed }

// DeniedError is returned when a policy denies a signal (or holds it for
// review). It carries the Decision.
type DeniedError struct {
	Decision Decision
}

// Error returns "tai: deny by policy "name": reason" (or review).
func (e *DeniedError) Error() string {
	d := &e.Decision
	msg := "tai: " + d.Verdict.String()
	if d.Policy != "" {
		msg += " by policy " + strconv.Quote(d.Policy)
	}
	if d.Reason != "" {
		msg += ": " + d.Reason
	}
	return msg
}

// Is reports whether target is ErrDenied.
func (e *DeniedError) Is(target error) bool { return target == ErrDenied }

// RejectedError is returned when a gate or a guard sheds a signal. Err is
// the hook's own error, reachable with errors.Is and errors.As.
type RejectedError struct {
	Stage Stage // StageGate, or StageAction for a guard
	// Hook is the name, when it has one, of the gate that rejected the
	// signal, or of the guard whose error Err is: the guard that refused,
	// or a guard outside it that returned an error of its own in place
	// of the refusal (see Guard).
	Hook string
	Err  error
}

// Error names the stage, the hook and the hook's error (when Err is set:
// a RejectedError a caller builds without one still has a message).
func (e *RejectedError) Error() string {
	msg := "tai: rejected at " + e.Stage.String()
	if e.Hook != "" {
		msg += " " + strconv.Quote(e.Hook)
	}
	return withCause(msg, e.Err)
}

// withCause returns msg, followed by err's message after a colon when err
// is not nil.
func withCause(msg string, err error) string {
	if err == nil {
		return msg
	}
	return msg + ": " + err.Error()
}

// Is reports whether target is ErrRejected.
func (e *RejectedError) Is(target error) bool { return target == ErrRejected }

// Unwrap returns the hook's error.
func (e *RejectedError) Unwrap() error { return e.Err }

// RetryAfter returns the retry hint of the error, if any error in its tree
// has a method RetryAfter() time.Duration (heijunka and jidoka errors do).
// It returns 0 when there is none. It never returns less than 0: a
// negative hint counts as 0, retry at once.
//
// An error with the method answers for what it wraps. Of the errors joined
// by errors.Join (or any error with Unwrap() []error) the longest hint
// wins: a call refused by two limits is refused until both let it through,
// and a retry at the shorter hint would be refused again.
func RetryAfter(err error) time.Duration {
	type hinted = interface{ RetryAfter() time.Duration }
	if err == nil {
		return 0
	}
	if e, ok := err.(hinted); ok {
		return max(e.RetryAfter(), 0)
	}
	if e, ok := err.(interface{ As(any) bool }); ok {
		var h hinted
		if e.As(&h) && h != nil {
			return max(h.RetryAfter(), 0)
		}
	}
	switch e := err.(type) {
	case interface{ Unwrap() error }:
		return RetryAfter(e.Unwrap())
	case interface{ Unwrap() []error }:
		var d time.Duration
		for _, err := range e.Unwrap() {
			d = max(d, RetryAfter(err))
		}
		return d
	}
	return 0
}

// PolicyError is returned when a policy errs (or returns no verdict). The
// signal fails closed: the action does not run.
type PolicyError struct {
	Policy string // the name of the policy that failed, when it has one
	Err    error  // the policy's error
}

// Error names the policy and its error (when Err is set).
func (e *PolicyError) Error() string {
	if e.Policy == "" {
		return withCause("tai: policy failed", e.Err)
	}
	return withCause("tai: policy "+strconv.Quote(e.Policy)+" failed", e.Err)
}

// Unwrap returns the policy's error.
func (e *PolicyError) Unwrap() error { return e.Err }

// PanicError is a recovered panic from a gate, policy, guard or action, or
// one of them ending its goroutine with runtime.Goexit (which Process's
// caller never sees return, but the observers do). The signal fails; the
// process keeps running.
type PanicError struct {
	Stage Stage  // where the panic happened
	Value any    // what was passed to panic; nil for a runtime.Goexit
	Stack []byte // the goroutine's stack where it panicked
}

func newPanicError(stage Stage, v any) *PanicError {
	return &PanicError{Stage: stage, Value: v, Stack: debug.Stack()}
}

// Error returns "tai: panic in <stage>: <value>", or "tai: runtime.Goexit
// in <stage>" when Value is nil: since Go 1.21 a panic(nil) reaches
// recover as a *runtime.PanicNilError, so only a goroutine that ended
// has no value.
func (e *PanicError) Error() string {
	if e.Value == nil {
		return "tai: runtime.Goexit in " + e.Stage.String()
	}
	return fmt.Sprintf("tai: panic in %s: %v", e.Stage, e.Value)
}

// Unwrap returns the panic value if it is an error.
func (e *PanicError) Unwrap() error {
	err, _ := e.Value.(error)
	return err
}

// StageError is returned when the context has ended before a stage: the
// gates (when the pipeline has any), the policy or the action. It is also
// returned when the context was canceled while a gate or a guard made the
// signal wait (for a rate limit's token, a bulkhead's slot) and the hook
// turned it away with context.Canceled, or an error wrapping it: the
// caller gave up, and the signal was not shed (Rejected) but Failed.
// Stage is then the stage that did not run: the policy after a gate, the
// action after a guard. (A deadline that passes during such a wait is a
// refusal: the hook kept the signal waiting longer than the caller
// allowed, and the signal is Rejected.)
type StageError struct {
	Stage Stage // the stage that was about to run
	// Err is ctx.Err(), or the error of the gate or guard that was
	// waiting, which wraps context.Canceled.
	Err error
}

// Error returns "tai: before <stage>: <ctx.Err()>" ("tai: before
// <stage>" when Err is nil).
func (e *StageError) Error() string {
	return withCause("tai: before "+e.Stage.String(), e.Err)
}

// Unwrap returns the context's error.
func (e *StageError) Unwrap() error { return e.Err }

// abandonedError is the error of a signal a guard abandoned (see
// ErrAbandoned): it names the guard that returned early and keeps the
// error the guards returned, if any.
type abandonedError struct {
	guard string
	err   error
}

// Error returns "tai: guard returned before the action it started (guard
// "name")", and the guards' error after a colon.
func (e *abandonedError) Error() string {
	msg := ErrAbandoned.Error() + " (guard " + strconv.Quote(e.guard) + ")"
	if e.err != nil {
		msg += ": " + e.err.Error()
	}
	return msg
}

// Unwrap returns ErrAbandoned and the guards' error.
func (e *abandonedError) Unwrap() []error {
	if e.err == nil {
		return []error{ErrAbandoned}
	}
	return []error{ErrAbandoned, e.err}
}
