// Package tai is the core of taikit: the TAI pattern, Signal → Policy →
// Action → Result.
//
// A [Signal] is one thing that happened and asks for an action: a payment, a
// deployment request. A [Policy] decides whether it may proceed and says why
// in a [Decision] (Allow, Review or Deny, with a reason and a risk score).
// An [Action] does the work. A [Pipeline] runs the three in order and tells
// how each signal ended as an [Outcome]:
//
//	p, err := tai.New(policy, action,
//		tai.WithGates(limiter, line),      // admission: rate limits, a stopped line
//		tai.WithGuards(breaker),           // around the action: a circuit breaker
//		tai.WithObservers(metrics, audit), // every finished signal, as a Record
//		tai.WithTracer(tracer))            // a span per stage
//	res, err := p.Process(ctx, tai.NewSignal("payment", customerID, payment))
//
// # Stages and hooks
//
// The stages run in this order: gates → policy → guards around the action →
// observers. The hooks are small, non-generic interfaces — [Gate], [Guard],
// [Observer], [Tracer] — so the packages that implement them (jidoka,
// heijunka, kaizen) carry no type parameters, and options
// are not generic either: only the policy and the action know the payload
// type T and the result type R, and Go infers both from them.
//
// The hooks that ship are in the other packages: heijunka's limiters and
// ramps and jidoka's Line are gates, jidoka's Breaker is a guard, kaizen's
// metrics, statistics and audit trail are observers and its OpenTelemetry
// adapter is a tracer. Anything else is a function away: [GateFunc],
// [GuardFunc] (a deadline for the action, a cap on how many run at once)
// and [ObserverFunc] adapt ordinary functions.
//
// Hooks that are not configured cost nothing. A pipeline with only a policy
// and an action adds a context check per stage and a deferred recover to
// the two calls, reads no clock and allocates nothing; with hooks it still
// allocates nothing per signal on the success path, the Record handed to
// observers included. A guard that only admits calls and learns their
// results, as a circuit breaker does (or a bulkhead, which holds a slot
// from one to the other), can be a [TwoStepGuard]: the pipeline then calls
// it before and after the action instead of wrapping the action in it.
//
// # Time
//
// A pipeline with observers reads the runtime's clock: one time.Now at the
// start of a signal gives [Record].Start, the wall-clock time, and the
// monotonic reading from which Duration and the stage times are measured.
// There is no clock to configure; tests that need to control time run in a
// testing/synctest bubble, where Start and the durations are exact.
//
// # Policies
//
// [All] requires every policy to allow (the first Deny wins; Review if any
// says Review). [Any] takes the first Allow. [NewScored] adds weighted rule
// risks into a score in [0, 1] and compares it with a review and a deny
// threshold, the way fraud scoring works; its Decision lists each rule's
// contribution. [Named] names a policy, [FailOpen] lets an advisory policy's
// outage allow instead of fail.
//
// A policy that errs fails the signal (fail closed) unless it is wrapped in
// FailOpen; the Decision then says FailedOpen, and so does the Record.
//
// # Outcomes and errors
//
// Process returns a [Result] and an error; [OutcomeOf] maps the error to the
// [Outcome] — Succeeded, Denied, Rejected or Failed — so a caller maps
// outcomes to responses in one switch, without string matching:
//
//   - a gate or a guard that sheds the signal gives a *[RejectedError]
//     (errors.Is(err, ErrRejected)) wrapping the hook's own error, so
//     errors.Is(err, heijunka.ErrLimited) and errors.Is(err, jidoka.ErrOpen)
//     work, and [RetryAfter] finds the hint to send in a Retry-After header;
//   - a Deny gives a *[DeniedError] carrying the Decision
//     (errors.Is(err, ErrDenied));
//   - a policy error gives a *[PolicyError]; a panic anywhere in the
//     pipeline (but in a FailOpen policy or rule, which fails open) gives
//     a *[PanicError] with the stack (the line stops for that signal, the
//     process keeps running); a context that has ended before
//     a stage (the gates, the policy, the action), or that was canceled
//     while a gate or a guard made the signal wait, gives a *[StageError],
//     in which errors.Is finds ctx.Err(); all of them are Failed;
//   - an action's error is returned as it is, and is Failed unless it is
//     one of tai's own errors (or wraps one with %w): an action that calls
//     another pipeline and returns its *[RejectedError] passes the shedding
//     on, Rejected with its RetryAfter, and its *[DeniedError] Denied. An
//     action that wants such an error to fail the signal returns an error
//     of its own that does not wrap it;
//   - a signal without an ID or a Kind is a programming error: Process
//     returns an error matching [ErrInvalidSignal], Failed as well, and no
//     hook sees the signal.
//
// Rejected is the one outcome that says "try again later" (an HTTP 429 or
// 503): only a gate or a guard that sheds load gives it. A caller that
// gives up (cancels its context) while a gate or a guard makes it wait (a
// rate limit's wait, a bulkhead's line) is not load shed, and its signal
// is Failed; a deadline that passes during the wait is a refusal, and
// Rejected. The zero [Outcome] and the zero [Verdict] are not valid
// values, so a field left unset is never read as a success or an Allow.
//
// # Review
//
// A Review verdict lets the action run by default, and the Result says
// Review. [WithHoldOnReview] stops it instead, as a Denied outcome whose
// Decision has Verdict Review: a payment held for a person to look at.
//
// # Names shared with other packages
//
// [Decision] is a policy's answer; heijunka.Decision is a limiter's answer
// to a request for events. [Stage] is a step of the pipeline;
// heijunka.RampStage is a step of a traffic ramp. The package name tells
// them apart wherever both are used.
package tai
