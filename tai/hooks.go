package tai

import (
	"context"
	"encoding/hex"
	"strconv"
	"time"
)

// A Gate admits or rejects a signal before any policy runs. Gates carry the
// admission controls of the line: per-key rate limits (heijunka), a stopped
// line (jidoka), a ramp that admits only a share of keys.
//
// Admit returns nil to let the signal through. Any error rejects it: the
// pipeline wraps the error in a *RejectedError, so the caller sees Outcome
// Rejected and can still reach the gate's own error with errors.Is and
// errors.As (heijunka.ErrLimited, jidoka.ErrLineStopped, ...). The one
// exception is a gate that waits (for a token) until the caller cancels
// ctx and returns context.Canceled, or an error wrapping it: the caller
// gave up, nothing was shed, and the signal fails with a *StageError
// (Outcome Failed). A wait that ctx's deadline ends is a rejection.
type Gate interface {
	Admit(ctx context.Context, key string) error
}

// GateFunc adapts an ordinary function to a Gate, as http.HandlerFunc does
// for handlers.
type GateFunc func(ctx context.Context, key string) error

// Admit calls f(ctx, key).
func (f GateFunc) Admit(ctx context.Context, key string) error { return f(ctx, key) }

// A Guard wraps the action: a circuit breaker (jidoka.Breaker), a cap on
// the calls running at once (jidoka.Bulkhead), a deadline
// (jidoka.Timeout), retries (jidoka.Retry), hedged calls (jidoka.Hedge) or
// a fallback (jidoka.Fallback). A GuardFunc makes one of a few lines (see
// the GuardFunc example).
//
// Do calls fn, the rest of the chain (the guards inside this one, then the
// action), and returns its error or an error of its own that replaces it;
// or it does not call fn at all and returns the reason (breaker open, too
// many running). The pipeline tells the two apart: when fn was never
// called the outcome is Rejected, otherwise it follows the error Do
// returned. (When fn was never called because the caller canceled ctx
// while a guard made it wait, and the error is or wraps context.Canceled,
// the caller gave up: the signal fails with a *StageError, as with the
// Allow of a TwoStepGuard that waits, and is not Rejected.) A rejection's
// error is the one Do returned, or, when a guard outside the refusing one
// turned it into nil (a fallback), the refusing guard's own, so
// errors.Is and RetryAfter still find it; under a retry
// that was refused more than once, that of the last refusal, the reason
// the action did not run in the end. Its Hook names the guard whose
// error it is: the refusing guard when the error is its refusal or wraps
// it, the guard outside it that returned an error of its own in place of
// the refusal (a retry giving up with "retries exhausted") otherwise.
//
// Do may call fn more than once. A retry calls it again after a failure,
// one call after another on Do's goroutine; a hedge calls it again while
// the first call still runs, on goroutines of its own, so that calls of
// fn for one signal run at the same time. The pipeline allows both: each
// call runs the guards inside and the action afresh, and the Result's
// Value is that of the first call of the action that succeeded — or,
// when none did and a guard turned the error into nil (a fallback), that
// of the last call to return. An action under a guard that retries must
// therefore be safe to run again for the same signal (idempotent, or made
// so with the signal's ID as an idempotency key); under a guard that
// hedges it must also be safe to run concurrently with itself, and should
// honour its context, which the hedge cancels for the calls that lose.
//
// Do must not return before every call of fn it started has returned,
// and must not call fn after it returned. A guard that abandons fn (runs
// it on another goroutine and stops waiting) breaks that contract; when
// the call is still running as Do returns (in the action, or in a guard
// inside this one, such as a retry waiting to call again), the pipeline
// detects it, fails the signal with ErrAbandoned (its message names the
// guard that returned early, and the error the guards returned is kept
// in it) and discards the late result; the late call still runs the
// action with this signal. A call that begins after Do
// returned cannot be detected: the signal has ended as Do said, and the
// pipeline reuses what fn runs for the next signals, so the late call
// runs the action with another signal's data, or with the zero Signal.
//
// The guards of a pipeline nest in the order given to WithGuards, the
// first outermost. A usual order, outermost first, is fallback, retry,
// timeout, breaker, bulkhead: the fallback sees what is left when the
// retries are spent; each retry gets a fresh deadline and asks the
// breaker anew; the breaker counts the calls that timed out; the bulkhead
// holds a slot only while the action runs.
//
// A guard that only needs to admit a call and learn its result can also be
// a TwoStepGuard, which the pipeline calls without wrapping the action.
type Guard interface {
	Do(ctx context.Context, fn func(context.Context) error) error
}

// A TwoStepGuard is a Guard that can also admit a call before it runs and
// learn its result afterwards, without wrapping it in a function, as
// jidoka.Breaker does. When every guard of a pipeline is a TwoStepGuard,
// the pipeline does not call Do: it calls each guard's Allow in order, runs
// the action, and reports its result — the action's error, or a
// *PanicError if it panicked — to each guard's done, innermost first. A
// guard whose Allow returns an error rejects the signal (or, when the
// caller gave up while it waited, fails it, as under Do), and the guards
// already passed are told that error, as their Do would have seen it come
// back from fn. That is exactly what Do would have done, without the
// closures and the per-signal state that wrapping needs. (A pipeline with
// more than eight guards calls them all through Do.)
//
// Allow returns done (nil when the guard wants no report) and a nil error,
// or the reason for refusing. The pipeline calls each done it was given
// exactly once, even when the action or other dones panic or end the
// goroutine (runtime.Goexit); a done that panics fails the signal with a
// *PanicError, which the guards outside it are told in place of the
// result. A guard that holds something while the action runs takes it in
// Allow and gives it back in done, as jidoka.Bulkhead does with its slot.
// A guard that must wrap the call — one that gives the action a deadline,
// calls it again (a retry, a hedge) or replaces its result (a fallback) —
// implements only Guard; then every guard of the pipeline is called
// through Do.
type TwoStepGuard interface {
	Guard
	Allow(ctx context.Context) (done func(err error), err error)
}

// DoTwoStep is the Do of a TwoStepGuard, for callers that wrap: it calls
// g.Allow, then fn if g allows it, and reports to done what fn returned —
// or, should fn panic, a *PanicError before the panic goes on, so a guard
// counting failures (a circuit breaker's probe) hears of it. A
// TwoStepGuard can implement Do by calling it.
func DoTwoStep(ctx context.Context, g TwoStepGuard, fn func(context.Context) error) error {
	done, err := g.Allow(ctx)
	if err != nil {
		return err
	}
	if done == nil {
		return fn(ctx)
	}
	returned := false
	defer func() {
		if !returned {
			v := recover() // nil when fn called runtime.Goexit
			done(newPanicError(StageAction, v))
			if v != nil {
				panic(v)
			}
		}
	}()
	err = fn(ctx)
	returned = true
	done(err)
	return err
}

// GuardFunc adapts an ordinary function to a Guard.
type GuardFunc func(ctx context.Context, fn func(context.Context) error) error

// Do calls f(ctx, fn).
func (f GuardFunc) Do(ctx context.Context, fn func(context.Context) error) error { return f(ctx, fn) }

// An Observer sees every finished signal as a Record: metrics, andon boards,
// audit trails. Observe runs on the goroutine that called Process, after the
// result is known and before Process returns, so it should be quick; an
// Observer that does slow work (network, disk) hands it to its own goroutine.
//
// ctx is the context given to Process, carrying the signal's span when the
// pipeline has a Tracer. The Record is passed by value and may be kept. A
// panic in Observe is recovered and logged; it never changes the result of
// the signal, and the observers after it still run. So they do after an
// Observe that ends its goroutine with runtime.Goexit, which is logged
// too and then goes on ending the goroutine that called Process.
type Observer interface {
	Observe(ctx context.Context, r Record)
}

// A StageObserver is an Observer that needs the time of each stage
// (Record.Stages), such as a histogram per stage. The pipeline reads the
// clock at the start and end of a signal for every observer, and at each
// stage boundary only when some observer is a StageObserver whose
// ObservesStages returns true: a clock read costs more than the rest of a
// hook.
type StageObserver interface {
	Observer
	ObservesStages() bool
}

// ObserverFunc adapts an ordinary function to an Observer.
type ObserverFunc func(ctx context.Context, r Record)

// Observe calls f(ctx, r).
func (f ObserverFunc) Observe(ctx context.Context, r Record) { f(ctx, r) }

// Stage names a step of the pipeline. (heijunka has stages of its own, of
// a traffic ramp: heijunka.RampStage.)
type Stage uint8

// The stages of a signal, in the order they run. StageSignal is the whole
// signal; it is the parent of the others in a trace.
const (
	StageSignal Stage = iota
	StageGate
	StagePolicy
	StageAction
	numStages
)

var stageNames = [...]string{"signal", "gate", "policy", "action"}

// String returns "signal", "gate", "policy" or "action".
func (s Stage) String() string {
	if int(s) < len(stageNames) {
		return stageNames[s]
	}
	return "stage(" + strconv.Itoa(int(s)) + ")"
}

// SpanInfo describes a span a Tracer is asked to open. It holds no key and
// no payload: those can identify a person, and a tracer records them only
// if its owner chooses to.
type SpanInfo struct {
	Stage    Stage
	Name     string // the gate's or policy's name; the signal's Kind for StageSignal
	Kind     string // the signal's Kind
	SignalID string // the signal's ID
}

// A Tracer opens a span for each stage of a signal and returns a context
// carrying it, which the pipeline passes on to the stage. The first span of
// a signal has Stage StageSignal; the others are opened inside its context.
//
// Combinators (All, Any, Scored) open a span for each policy or rule they
// evaluate when they find a Tracer in their context. A Tracer that wants
// this returns, from its StageSignal Start, a context made with
// ContextWithTracer. A Tracer that does not (or a no-op one) costs the
// combinators nothing. The span of a combinator's child ends with the
// child's error when it failed, with a *DeniedError holding the child's
// decision when it denied (even when the combinator then allows, as Any
// may), and with nil when it allowed or asked for review.
type Tracer interface {
	Start(ctx context.Context, info SpanInfo) (context.Context, Span)
}

// A Span is one stage of a signal in a trace.
type Span interface {
	// End closes the span. err is the error the stage ended with, nil on
	// success; a tracer can tell a denial from a failure with OutcomeOf.
	End(err error)
	// SpanContext returns the identifiers of the span, copied into the
	// signal's Record and Result so logs and audit lines can be joined
	// with the trace.
	SpanContext() SpanContext
}

type tracerKey struct{}

// ContextWithTracer returns a copy of ctx that carries t, so combinators
// evaluated within it open a span per child policy. A nil t, or one that
// holds a nil pointer or function, carries no Tracer, as in WithTracer:
// TracerFromContext then returns nil, also where ctx carried a Tracer
// before.
func ContextWithTracer(ctx context.Context, t Tracer) context.Context {
	if isNil(t) {
		t = nil
	}
	return context.WithValue(ctx, tracerKey{}, t)
}

// TracerFromContext returns the Tracer stored by ContextWithTracer, or nil.
func TracerFromContext(ctx context.Context) Tracer {
	t, _ := ctx.Value(tracerKey{}).(Tracer)
	return t
}

// StartSpan opens a span with the Tracer in ctx, if there is one. Without a
// Tracer it returns ctx and a nil Span; End on the result is then a no-op
// through EndSpan. Policies use it to trace work of their own.
func StartSpan(ctx context.Context, info SpanInfo) (context.Context, Span) {
	if t := TracerFromContext(ctx); t != nil {
		return t.Start(ctx, info)
	}
	return ctx, nil
}

// EndSpan ends s if it is not nil.
func EndSpan(s Span, err error) {
	if s != nil {
		s.End(err)
	}
}

// TraceID is a W3C trace identifier.
type TraceID [16]byte

// SpanID is a W3C span identifier.
type SpanID [8]byte

// IsValid reports whether the ID is not all zeros.
func (t TraceID) IsValid() bool { return t != TraceID{} }

// String returns the ID as 32 lower-case hex digits, or "" for the zero ID.
func (t TraceID) String() string {
	if !t.IsValid() {
		return ""
	}
	return hex.EncodeToString(t[:])
}

// IsValid reports whether the ID is not all zeros.
func (s SpanID) IsValid() bool { return s != SpanID{} }

// String returns the ID as 16 lower-case hex digits, or "" for the zero ID.
func (s SpanID) String() string {
	if !s.IsValid() {
		return ""
	}
	return hex.EncodeToString(s[:])
}

// SpanContext identifies a span in a trace.
type SpanContext struct {
	TraceID TraceID
	SpanID  SpanID
	Sampled bool
}

// Record is what an Observer learns about a finished signal. It carries no
// payload: observers are not generic, and the payload is where personal data
// lives.
//
// Start is the time.Now of the start of Process: the wall clock, as the
// system had it then, with its monotonic reading. Duration and Stages are
// measured from it on the monotonic clock (as time.Since measures), so a
// step of the wall clock never shows in them.
type Record struct {
	ID   string // the signal's ID
	Kind string // the signal's Kind
	Key  string // the signal's Key

	Outcome Outcome // how the signal ended, as in its Result
	// Decision is the deciding decision of the policy stage. Its Verdict is
	// zero when the signal did not reach a decision (a gate rejected it, or
	// the policy failed).
	Decision Decision
	// Err is the error Process returned, nil when Outcome is Succeeded.
	Err error

	Start    time.Time     // when Process began
	Duration time.Duration // from Start to the end of the last stage reached
	// Stages holds the time spent in each stage, indexed by Stage, when an
	// observer of the pipeline is a StageObserver (StagesTimed); otherwise
	// only the StageSignal entry is set. The StageSignal entry equals
	// Duration; a stage not reached is zero. A stage reached may be zero
	// too (under testing/synctest, or with a clock coarser than the
	// stage): Reached tells the two apart.
	Stages [numStages]time.Duration
	// StagesTimed reports that the pipeline read the clock at each stage
	// boundary, so Stages holds the time of every stage reached, zero
	// ones included. Without it a stage reached has no time of its own,
	// which a signal that took no time at all does not tell apart from
	// one timed at zero.
	StagesTimed bool
	// Reached marks, indexed by Stage, the stages the signal entered,
	// whether or not an observer is a StageObserver: the gate stage when
	// the pipeline has gates, the policy stage, the action stage, each
	// once the context check before it passed. The StageSignal entry is
	// always true.
	Reached [numStages]bool

	// Span is the signal's root span, zero without a Tracer.
	Span SpanContext
}

// StageDuration returns the time spent in stage s.
func (r *Record) StageDuration(s Stage) time.Duration {
	if int(s) < len(r.Stages) {
		return r.Stages[s]
	}
	return 0
}
