package jidoka

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"time"

	"github.com/taipattern/taikit/tai"
)

// Defaults of RetryOptions.
const (
	DefaultMaxAttempts = 3
	DefaultBaseDelay   = 100 * time.Millisecond
	DefaultMaxDelay    = 10 * time.Second
	DefaultMultiplier  = 2.0
)

// MaxAttemptsLimit is the most attempts RetryOptions.MaxAttempts may ask
// for.
const MaxAttemptsLimit = 1000

// ErrPermanent matches (errors.Is) an error wrapped by Permanent: one that
// retrying cannot mend.
var ErrPermanent = errors.New("jidoka: permanent error")

// Permanent wraps err so that Retryable (the default RetryOptions.RetryOn)
// refuses to retry it. The result matches ErrPermanent and unwraps to err,
// so errors.Is and errors.As still find err; Permanent(nil) is nil.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &permanentError{err}
}

type permanentError struct{ err error }

func (e *permanentError) Error() string        { return e.err.Error() }
func (e *permanentError) Unwrap() error        { return e.err }
func (e *permanentError) Is(target error) bool { return target == ErrPermanent }

// Retryable is the default RetryOptions.RetryOn. It refuses to retry nil;
// context.Canceled (someone gave up on the call; a deadline that passed,
// such as a Timeout's inside the Retry, is retried); an error that matches
// ErrPermanent; a denial, an invalid signal or a panic from tai (tai.ErrDenied,
// tai.ErrInvalidSignal, *tai.PanicError) or a panic jidoka recovered
// (*PanicError). Every other error is retried, rejections by other guards
// (ErrOpen, ErrBulkheadFull) included: their RetryAfter hints set the wait.
func Retryable(err error) bool {
	if err == nil ||
		errors.Is(err, context.Canceled) ||
		errors.Is(err, ErrPermanent) ||
		errors.Is(err, tai.ErrDenied) ||
		errors.Is(err, tai.ErrInvalidSignal) {
		return false
	}
	var tp *tai.PanicError
	var jp *PanicError
	return !errors.As(err, &tp) && !errors.As(err, &jp)
}

// RetryOptions configures a Retry. The zero RetryOptions is valid: three
// attempts, 100 ms to 10 s of jittered exponential backoff, and a budget of
// its own that lets retries add a fifth to the calls. Every zero field has a
// default; NewRetry rejects negative or contradictory values with an error
// naming the field and the value.
type RetryOptions struct {
	// Name names the retry in errors and tai hooks.
	Name string
	// MaxAttempts is the most calls of fn per Do, the first included: 3
	// means up to two retries. Zero means DefaultMaxAttempts (3); 1 never
	// retries. At most MaxAttemptsLimit.
	MaxAttempts int
	// BaseDelay is the backoff before the first retry; it doubles (by
	// Multiplier) for each further retry up to MaxDelay. The wait is a
	// uniform random share of it ("full jitter"), so that clients that
	// failed together do not retry together. Zero means
	// DefaultBaseDelay (100 ms), or MaxDelay if that is smaller.
	BaseDelay time.Duration
	// MaxDelay caps the backoff. Zero means DefaultMaxDelay (10 s), or
	// BaseDelay if that is larger.
	MaxDelay time.Duration
	// Multiplier is the growth of the backoff per retry. Zero means
	// DefaultMultiplier (2); it must be finite and at least 1.
	Multiplier float64
	// MaxRetryAfter is the longest RetryAfter hint (see RetryAfter) a
	// retry waits for. An error whose hint is longer ends the retries at
	// once: the caller gets the error, and its hint, to come back later.
	// Zero means MaxDelay.
	MaxRetryAfter time.Duration
	// RetryOn tells which errors are worth another attempt. Nil means
	// Retryable.
	RetryOn func(err error) bool
	// Budget caps retries at a share of calls. Nil means a budget of this
	// Retry's own with the defaults of RetryBudgetOptions. Share one
	// budget between the Retry guards that call the same service.
	Budget *RetryBudget
	// Jitter picks the wait before a retry from [0, d], d being the
	// backoff. Nil means uniformly at random. Tests may pass a function
	// that returns d (no jitter) or 0. A result outside [0, d] is clamped.
	Jitter func(d time.Duration) time.Duration
}

// Retry is a tai.Guard that calls fn again when it fails, up to
// MaxAttempts calls, with exponential backoff and full jitter between
// them. A retry is made only when
//
//   - RetryOn (by default Retryable) accepts the error;
//   - the caller's context has not ended;
//   - the budget has a retry to give (see RetryBudget); every Do deposits
//     one call into it, every retry withdraws one;
//   - the wait fits before the caller's deadline, if ctx has one.
//
// The wait is the jittered backoff, or the error's RetryAfter hint (see
// RetryAfter) when that is longer: a breaker that is open for another
// second is not called sooner. A hint longer than MaxRetryAfter ends the
// retries. A wait that ctx ends returns the last error at once.
//
// Do returns nil on the first success, or else the error of the last call
// of fn, unchanged, so that errors.Is and tai.OutcomeOf see what the call
// saw. Do calls fn one call after another, never two at a time, on the
// goroutine that called Do. Its success path does not allocate. Make one
// with NewRetry; the zero Retry is not usable: it has no budget (Budget
// returns nil), and Do returns an error saying it was not made by
// NewRetry, without calling fn.
type Retry struct {
	name          string
	attempts      int
	base, maxWait time.Duration
	mult          float64
	maxHint       time.Duration
	retryOn       func(error) bool
	budget        *RetryBudget
	jitter        func(time.Duration) time.Duration
}

// NewRetry returns a Retry configured by opts, or an error naming the first
// invalid field and its value.
func NewRetry(opts RetryOptions) (*Retry, error) {
	r := &Retry{
		name: opts.Name, attempts: opts.MaxAttempts, base: opts.BaseDelay, maxWait: opts.MaxDelay,
		mult: opts.Multiplier, maxHint: opts.MaxRetryAfter, retryOn: opts.RetryOn,
		budget: opts.Budget, jitter: opts.Jitter,
	}
	switch {
	case r.attempts < 0 || r.attempts > MaxAttemptsLimit:
		return nil, fmt.Errorf("jidoka: RetryOptions.MaxAttempts is %d, want a value in [1, %d] (0 for %d)", opts.MaxAttempts, MaxAttemptsLimit, DefaultMaxAttempts)
	case r.base < 0:
		return nil, fmt.Errorf("jidoka: RetryOptions.BaseDelay is %v, want >= 0", opts.BaseDelay)
	case r.maxWait < 0:
		return nil, fmt.Errorf("jidoka: RetryOptions.MaxDelay is %v, want >= 0", opts.MaxDelay)
	case math.IsNaN(r.mult) || math.IsInf(r.mult, 0) || (r.mult != 0 && r.mult < 1):
		return nil, fmt.Errorf("jidoka: RetryOptions.Multiplier is %v, want a finite value >= 1", opts.Multiplier)
	case r.maxHint < 0:
		return nil, fmt.Errorf("jidoka: RetryOptions.MaxRetryAfter is %v, want >= 0", opts.MaxRetryAfter)
	}
	if r.attempts == 0 {
		r.attempts = DefaultMaxAttempts
	}
	if r.base == 0 {
		r.base = DefaultBaseDelay
		if r.maxWait > 0 {
			r.base = min(r.base, r.maxWait)
		}
	}
	if r.maxWait == 0 {
		r.maxWait = max(DefaultMaxDelay, r.base)
	}
	if r.maxWait < r.base {
		return nil, fmt.Errorf("jidoka: RetryOptions.MaxDelay %v is less than BaseDelay %v", opts.MaxDelay, r.base)
	}
	if r.mult == 0 {
		r.mult = DefaultMultiplier
	}
	if r.maxHint == 0 {
		r.maxHint = r.maxWait
	}
	if r.retryOn == nil {
		r.retryOn = Retryable
	}
	if r.budget == nil {
		r.budget, _ = NewRetryBudget(RetryBudgetOptions{})
	}
	if r.jitter == nil {
		r.jitter = fullJitter
	}
	return r, nil
}

func fullJitter(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	return time.Duration(rand.Uint64N(uint64(d) + 1)) // d+1 as an int64 overflows at math.MaxInt64
}

// errRetryNotMade is the error of Do on a Retry that NewRetry did not make.
var errRetryNotMade = errors.New("jidoka: Retry not made by NewRetry")

// Name returns RetryOptions.Name.
func (r *Retry) Name() string { return r.name }

// Budget returns the retry budget, RetryOptions.Budget or the Retry's own
// (nil for the zero Retry).
func (r *Retry) Budget() *RetryBudget { return r.budget }

// Do calls fn, and again while it fails and a retry is allowed; see Retry.
// When ctx is already done it returns ctx.Err() without calling fn.
func (r *Retry) Do(ctx context.Context, fn func(context.Context) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if r.budget == nil {
		return errRetryNotMade
	}
	r.budget.Deposit()
	err := fn(ctx)
	if err == nil {
		return nil
	}
	return r.again(ctx, fn, err)
}

// again retries after the first call of fn failed with err.
func (r *Retry) again(ctx context.Context, fn func(context.Context) error, err error) error {
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for attempt := 1; attempt < r.attempts; attempt++ {
		if ctx.Err() != nil || !r.retryOn(err) {
			return err
		}
		wait := r.jittered(attempt)
		if hint := RetryAfter(err); hint > 0 {
			if hint > r.maxHint {
				return err
			}
			wait = max(wait, hint)
		}
		if dl, ok := ctx.Deadline(); ok && time.Until(dl) <= wait {
			return err // the caller would be gone before the retry
		}
		if !r.budget.Withdraw() {
			return err
		}
		if wait > 0 {
			if timer == nil {
				timer = time.NewTimer(wait)
			} else {
				timer.Reset(wait)
			}
			select {
			case <-ctx.Done():
			case <-timer.C:
			}
			// A ctx that ended as the wait did may be seen second: the
			// retry would run with it, and answer with its end.
			if ctx.Err() != nil {
				r.budget.refund() // the retry is not made
				return err
			}
		}
		if err = fn(ctx); err == nil {
			return nil
		}
	}
	return err
}

// jittered returns the wait before retry number attempt (1 for the first).
func (r *Retry) jittered(attempt int) time.Duration {
	d := float64(r.base) * math.Pow(r.mult, float64(attempt-1))
	backoff := r.maxWait
	if d < float64(r.maxWait) {
		backoff = time.Duration(d)
	}
	return min(max(r.jitter(backoff), 0), backoff)
}
