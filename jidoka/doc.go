// Package jidoka stops the line the moment something is wrong, and lets a
// person or a rule restart it. It holds three tools — a circuit breaker, a
// stop-the-line switch and a watchdog — and the guards that keep a call to
// another service from taking the line down with it: Timeout, Retry,
// Bulkhead, Fallback and Hedge.
//
// # Breaker
//
// A Breaker is a circuit breaker and a tai.Guard. Closed, it runs calls and
// counts their results; when a trip rule holds it opens and refuses calls
// with an *OpenError (errors.Is(err, ErrOpen), with a RetryAfter hint that
// tai.RetryAfter finds). After the open period it turns half-open and lets a
// few probe calls through; enough probe successes close it, a probe failure
// opens it again.
//
//	b, err := jidoka.NewBreaker(jidoka.BreakerOptions{
//		Name:                "gateway",
//		ConsecutiveFailures: 5,                // five failures in a row,
//		FailureRate:         0.5,              // or half of the last
//		WindowSize:          100,              // 100 calls failing
//		OpenDuration:        30 * time.Second, // the default
//	})
//	err = b.Do(ctx, func(ctx context.Context) error { return gateway.Charge(ctx, p) })
//	res, err := jidoka.Execute(ctx, b, gateway.Authorize)  // with a result
//	done, err := b.Allow(ctx); /* ... */ done(callErr)       // two steps
//
// Trip rules combine: consecutive failures, failure rate and slow-call rate
// over a count window (the last N calls) or a time window (a duration in
// buckets), counted once the window holds MinimumCalls calls. Open periods
// can back off exponentially on repeated trips. Half-open probes hold
// leases; a probe that never reports gives its lease back after
// ProbeTimeout. A caller that gave up (context.Canceled, or through Do any
// error once the caller canceled the call's context) neither counts nor
// keeps a lease, nor does the refusal of a guard inside the breaker (a
// full Bulkhead); a deadline that passed counts as a failure.
//
// Every change of state starts a new generation, and results of calls that
// began in an earlier one are ignored. State changes are delivered to
// BreakerOptions.OnStateChange in order and with no lock held, so a
// listener may call State, Snapshot, Trip or Reset without deadlock; and
// never on a goroutine that only reads the breaker with State or Snapshot,
// so a reader may hold a lock of its own that a listener takes. Trip, Reset,
// ForceOpen, Disable and MetricsOnly set the state by hand; Snapshot shows
// the state, counts, rates and the next probe time.
//
// The closed path is built for speed: no allocation, no lock but a time
// window's short one, and with count-based rules no clock read; a refused
// call reads two atomic words (and the clock in the last second of the
// open period) and returns an error made once per open period.
//
// # Guards
//
// Each guard is a tai.Guard, usable alone through its Do or in a tai
// pipeline through tai.WithGuards; Breaker and Bulkhead are also
// tai.TwoStepGuards (Allow, then done). Each is made by a constructor
// that takes XxxOptions and returns an error naming a bad field. Given a
// context that has already ended, each returns ctx.Err() and calls
// nothing: not fn, and not a Fallback's Func.
//
//   - Timeout gives a call a deadline: its context ends after Duration,
//     and an error it returns past the deadline becomes a *TimeoutError
//     (errors.Is ErrTimeout and context.DeadlineExceeded).
//   - Retry calls again after a failure: MaxAttempts calls at most,
//     exponential backoff with full jitter, only for errors RetryOn
//     accepts (Retryable by default: not a cancelled call, not a
//     Permanent error, not a denial), never sooner than the error's
//     RetryAfter hint, never past the caller's deadline, and only while
//     its RetryBudget has a retry to give (retries ≤ Ratio × calls +
//     Burst).
//   - Bulkhead caps the calls running at once, with an optional bounded
//     line of waiting calls; a refusal is a *BulkheadFullError
//     (errors.Is ErrBulkheadFull) with a RetryAfter hint.
//   - Fallback replaces chosen errors by what its Func returns; the
//     fallback value comes from the call itself (see Fallback).
//   - Hedge starts the same call again when the first is slow — after a
//     fixed delay or a quantile of recent latencies — takes the first
//     success and cancels the others.
//
// RetryAfter(err) returns the retry hint of any error in err's tree, as
// tai.RetryAfter does, for code that uses jidoka alone. Call(ctx, g, fn)
// runs a function with a result through any guard and keeps the value of
// its first success, as a pipeline does: safe under a Hedge, whose calls
// run at the same time.
//
// Guards nest: the first given to tai.WithGuards is the outermost. The
// order that usually fits, outermost first, is
//
//	Fallback(Retry(Timeout(Breaker(Bulkhead(action)))))
//	tai.WithGuards(fallback, retry, timeout, breaker, bulkhead)
//
// so that the fallback sees only what is left when the retries are spent;
// each retry gets a deadline of its own and asks the breaker anew (an open
// breaker's RetryAfter sets the wait, or ends the retries when it is
// longer than MaxRetryAfter); the breaker counts the calls that timed out
// as failures (and not the calls the bulkhead refused); and the bulkhead
// holds a slot only while the action runs, not while a retry waits. A Hedge goes where Retry would, or inside it;
// a Timeout outside a Hedge bounds the hedged calls together. Under Retry
// the action runs several times for one signal, one after another; under
// Hedge several at a time: it must allow that (see tai.Guard).
//
// The guards read the time themselves, like the breaker: test them with
// testing/synctest (see Time below).
//
// # Line
//
// A Line is a stop-the-line switch and a tai.Gate: Stop(reason) makes Admit
// refuse every signal with a *StoppedError (errors.Is(err,
// ErrLineStopped)) naming the reason, and the retry hint of
// LineOptions.RetryAfter, until Start. EndStop(n) restarts it only if its
// current stop is its n-th (LineStatus.Stops), so whoever stopped it can
// end their own stop and leave one made since by someone else. Changes are
// delivered to LineOptions.OnChange like breaker events.
//
// # Watchdog
//
// A Watchdog runs a health Check on an interval. A check that errs, panics,
// outlives its Timeout or exceeds LatencyLimit fails; after FailAfter
// failures in a row OnFail is called once (roll back there), and after
// RecoverAfter passes in a row OnRecover. Start runs it on a goroutine it
// owns until its context ends or Shutdown, which waits for that goroutine
// as net/http.Server.Shutdown does.
//
// # Panics
//
// A function of yours that panics inside jidoka does not take the breaker,
// line or watchdog down: a Watchdog's Check that panics fails its check, and
// a listener or callback that panics (OnStateChange, OnChange, OnFail,
// OnRecover, OnCheck) is logged on the Logger of the options. Either way
// the panic is a *PanicError carrying the value and the stack. A panic in
// the function given to Breaker.Do counts as a failure and is passed on to
// the caller. One in BreakerOptions.IsFailure or Ignore is passed on too,
// and the call is not counted: a half-open probe gives its lease back.
//
// One that ends its goroutine with runtime.Goexit (t.FailNow in a test)
// does not either: a Check doing so fails its check; the function given to
// Breaker.Do or Execute, or the action under a breaker in a tai pipeline,
// doing so did not succeed, and counts as a failure as a panic does (a
// half-open probe gives its lease back); a listener doing so ends the call
// that was delivering to it, but the events after its own are delivered
// before that goroutine ends; a Watchdog's callback runs on a goroutine of
// its own, so the Goexit is logged and checks go on.
//
// # Time
//
// Breaker, Line, Watchdog and the guards read the time themselves
// (time.Now, time.Since, timers): there is no clock to inject (Retry's
// Jitter may be, to make its waits exact). Tests control time with
// testing/synctest, where a sleep moves a fake clock at once. Make the
// breaker, line, watchdog, Timeout or Hedge inside the bubble, so that its
// timers and the instant it counts from belong to the bubble's clock, and
// use it only there: a Timeout or a Hedge reuses its timers from call to
// call, and one used both inside a bubble and outside it may reset a
// bubble's timer from outside, which testing/synctest ends the program
// for:
//
//	synctest.Test(t, func(t *testing.T) {
//		b, _ := jidoka.NewBreaker(jidoka.BreakerOptions{ConsecutiveFailures: 1, OpenDuration: time.Minute})
//		_ = b.Do(ctx, fail)
//		time.Sleep(time.Minute) // the open period ends
//		// b.State() == jidoka.StateHalfOpen, as the next call finds it
//	})
package jidoka
