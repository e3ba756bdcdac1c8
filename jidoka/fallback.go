package jidoka

import (
	"context"
	"errors"

	"github.com/taipattern/taikit/tai"
)

// FallbackOptions configures a Fallback.
type FallbackOptions struct {
	// Name names the fallback in tai hooks.
	Name string
	// When chooses the errors Fallback replaces. Nil means every error
	// but three kinds. The errors of a caller that gave up, which wants
	// no answer: context.Canceled, and any error once the context given
	// to Do has been canceled (a Retry inside the Fallback returns the
	// last call's error when the caller cancels its wait, and an action
	// may answer a cancellation with an error of its own); a deadline that
	// passed while the call ran is a failure to degrade from (one that had
	// passed before Do was called is not: see Do). A denial
	// (tai.ErrDenied, as an action that asks another pipeline returns its
	// *tai.DeniedError): a decision, not a failure, which a pipeline keeps
	// as the outcome Denied. And a defect to fix, not a failure to degrade
	// from: an invalid signal (tai.ErrInvalidSignal) or a panic, a
	// *tai.PanicError or a *PanicError (a tai pipeline turns an action's
	// panic into a *tai.PanicError, and the signal fails with it, as a
	// panic goes on through Do alone). These are what Retryable does not
	// retry either, but for ErrPermanent: a permanent failure may still be
	// degraded from. A When of your own is asked about every error fn
	// returns, whatever the context.
	When func(err error) bool
	// Func is what the error is replaced by: its result is what Do
	// returns, nil to make the call a success. It gets the context of the
	// call and the error. It must not be nil.
	Func func(ctx context.Context, err error) error
}

// Fallback is a tai.Guard that turns chosen failures into something else:
// a default, a cached answer, a degraded mode, or a different error. Do
// calls fn, and if fn's error is one When chooses, returns Func(ctx, err)
// in its place.
//
// Func returns an error only; the fallback value is the call's own
// business. With Do alone, the function given to Do writes its result to
// a variable of the caller, and writes the fallback value there when it
// fails; with Call, it returns the fallback value with its error, as an
// action does in a pipeline. In a tai pipeline the action returns the fallback value together
// with its error (return cached, err): when a Fallback turns the error into
// nil, the Result's Value is the value the action returned with it. See
// the Fallback examples.
//
// Put Fallback outermost, so that it sees the error that is left after the
// other guards did what they could (retries spent, breaker open). In a
// pipeline a guard inside it that refuses the call (an open breaker, a full
// bulkhead) leaves the action unrun, and the signal is Rejected whatever
// Func returns; to answer such a refusal too, use Fallback with Do inside
// the action. Make one with NewFallback; the zero Fallback is not usable:
// it has no Func, and Do returns an error saying it was not made by
// NewFallback, without calling fn.
type Fallback struct {
	name string
	when func(error) bool // nil: the default, which asks the context too
	fn   func(context.Context, error) error
}

// NewFallback returns a Fallback configured by opts, or an error when
// opts.Func is nil.
func NewFallback(opts FallbackOptions) (*Fallback, error) {
	if opts.Func == nil {
		return nil, errors.New("jidoka: FallbackOptions.Func is nil")
	}
	return &Fallback{name: opts.Name, when: opts.When, fn: opts.Func}, nil
}

// degradable is the default When: every error but a cancellation, one
// that ends a call whose ctx was canceled, a denial, an invalid signal and
// a panic.
func degradable(ctx context.Context, err error) bool {
	if errors.Is(err, context.Canceled) || errors.Is(ctx.Err(), context.Canceled) ||
		errors.Is(err, tai.ErrDenied) || errors.Is(err, tai.ErrInvalidSignal) {
		return false
	}
	var tp *tai.PanicError
	var jp *PanicError
	return !errors.As(err, &tp) && !errors.As(err, &jp)
}

// errFallbackNotMade is the error of Do on a Fallback that NewFallback did
// not make: it has no Func to answer a failure with.
var errFallbackNotMade = errors.New("jidoka: Fallback not made by NewFallback")

// Name returns FallbackOptions.Name.
func (f *Fallback) Name() string { return f.name }

// Do calls fn and returns its error, or Func's result for an error When
// chooses. When ctx is already done it returns ctx.Err() without calling
// fn or Func, as the other guards do: no call was made, so there is no
// failure to degrade from, and the caller has given up or has no time
// left for an answer.
func (f *Fallback) Do(ctx context.Context, fn func(context.Context) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if f.fn == nil {
		return errFallbackNotMade
	}
	err := fn(ctx)
	if err == nil {
		return nil
	}
	var replace bool
	if f.when != nil {
		replace = f.when(err)
	} else {
		replace = degradable(ctx, err)
	}
	if !replace {
		return err
	}
	return f.fn(ctx, err)
}
