package jidoka_test

import (
	"context"
	"errors"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/jidoka"
	"github.com/taipattern/taikit/tai"
)

func TestNewFallbackNeedsAFunc(t *testing.T) {
	f, err := jidoka.NewFallback(jidoka.FallbackOptions{Name: "x"})
	assert.Nil(t, f)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "FallbackOptions.Func is nil")
}

func TestFallback(t *testing.T) {
	degraded := errors.New("degraded")
	var seen error
	f, err := jidoka.NewFallback(jidoka.FallbackOptions{
		Name: "fb",
		When: func(err error) bool { return !errors.Is(err, jidoka.ErrPermanent) },
		Func: func(ctx context.Context, err error) error { seen = err; return degraded },
	})
	require.NoError(t, err)
	assert.Equal(t, "fb", f.Name())
	ctx := context.Background()

	assert.NoError(t, f.Do(ctx, func(context.Context) error { return nil }))
	assert.Nil(t, seen, "no fallback for a success")

	assert.ErrorIs(t, f.Do(ctx, func(context.Context) error { return errFlaky }), degraded)
	assert.ErrorIs(t, seen, errFlaky, "Func is told the error")

	seen = nil
	perm := jidoka.Permanent(errFlaky)
	assert.Equal(t, perm, f.Do(ctx, func(context.Context) error { return perm }))
	assert.Nil(t, seen, "When chose to keep this error")
}

func TestFallbackDefaultKeepsCancellation(t *testing.T) {
	f, err := jidoka.NewFallback(jidoka.FallbackOptions{Func: func(context.Context, error) error { return nil }})
	require.NoError(t, err)
	ctx := context.Background()
	assert.NoError(t, f.Do(ctx, func(context.Context) error { return errFlaky }))
	assert.ErrorIs(t, f.Do(ctx, func(context.Context) error { return context.Canceled }), context.Canceled)
}

// A caller that gave up gets no fallback, whatever error is left when it
// did: a Retry inside the Fallback, as the guards are usually ordered,
// returns the last call's error when the caller cancels during its wait,
// and an action may answer a cancellation with an error of its own.
func TestFallbackDefaultKeepsTheCallOfACallerThatGaveUp(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		called := 0
		f, err := jidoka.NewFallback(jidoka.FallbackOptions{Func: func(context.Context, error) error { called++; return nil }})
		require.NoError(t, err)
		r, err := jidoka.NewRetry(jidoka.RetryOptions{
			MaxAttempts: 3, BaseDelay: time.Second,
			Jitter: func(d time.Duration) time.Duration { return d },
		})
		require.NoError(t, err)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		time.AfterFunc(500*time.Millisecond, cancel) // during the wait before the first retry
		calls := 0
		err = f.Do(ctx, func(ctx context.Context) error {
			return r.Do(ctx, func(context.Context) error { calls++; return errFlaky })
		})
		assert.Equal(t, 1, calls, "the retry was not made")
		assert.Equal(t, errFlaky, err, "the error is returned as it is")
		assert.Zero(t, called, "Func is not asked to answer a caller that gave up")

		ctx, cancel = context.WithCancel(context.Background())
		err = f.Do(ctx, func(context.Context) error { cancel(); return errFlaky })
		assert.Equal(t, errFlaky, err)
		assert.Zero(t, called)

		ctx, cancel = context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		assert.NoError(t, f.Do(ctx, func(ctx context.Context) error { <-ctx.Done(); return errFlaky }),
			"a caller's deadline that passed is a failure to degrade from")
		assert.Equal(t, 1, called)
	})
}

// A denial is a decision, not a failure to degrade from: an action that
// asks another pipeline, whose policy denies, keeps the Denied outcome
// under a Fallback without When, as it does without one. A signal that
// pipeline found invalid is a defect to fix, and fails.
func TestFallbackDefaultKeepsDenials(t *testing.T) {
	called := false
	f, err := jidoka.NewFallback(jidoka.FallbackOptions{Func: func(context.Context, error) error { called = true; return nil }})
	require.NoError(t, err)
	deny := tai.PolicyFunc[int](func(context.Context, tai.Signal[int]) (tai.Decision, error) {
		return tai.Decision{Verdict: tai.Deny, Policy: "fraud", Reason: "blacklisted"}, nil
	})
	charge := tai.ActionFunc[int, string](func(context.Context, tai.Signal[int]) (string, error) { return "charged", nil })
	fraud, err := tai.New(deny, charge)
	require.NoError(t, err)
	action := tai.ActionFunc[int, string](func(ctx context.Context, s tai.Signal[int]) (string, error) {
		res, err := fraud.Process(ctx, s)
		return res.Value, err
	})
	p, err := tai.New(allowAll, action, tai.WithGuards(f))
	require.NoError(t, err)
	res, err := p.Process(context.Background(), tai.Signal[int]{ID: "s", Kind: "k"})
	require.ErrorIs(t, err, tai.ErrDenied)
	assert.Equal(t, tai.Denied, res.Outcome)
	assert.False(t, called, "Func is not asked to answer a denial")

	action = tai.ActionFunc[int, string](func(ctx context.Context, s tai.Signal[int]) (string, error) {
		res, err := fraud.Process(ctx, tai.Signal[int]{ID: s.ID}) // no Kind
		return res.Value, err
	})
	p, err = tai.New(allowAll, action, tai.WithGuards(f))
	require.NoError(t, err)
	res, err = p.Process(context.Background(), tai.Signal[int]{ID: "s", Kind: "k"})
	require.ErrorIs(t, err, tai.ErrInvalidSignal)
	assert.Equal(t, tai.Failed, res.Outcome)
	assert.False(t, called, "Func is not asked to answer an invalid signal")
}

// In a pipeline the fallback turns the action's failure into a success
// with the value the action returned along with its error; a guard inside
// it that refuses the call leaves the signal Rejected.
func TestFallbackInAPipeline(t *testing.T) {
	f, err := jidoka.NewFallback(jidoka.FallbackOptions{Func: func(context.Context, error) error { return nil }})
	require.NoError(t, err)
	b, err := jidoka.NewBreaker(jidoka.BreakerOptions{Name: "br", ConsecutiveFailures: 2})
	require.NoError(t, err)
	action := tai.ActionFunc[int, string](func(context.Context, tai.Signal[int]) (string, error) {
		return "cached", errFlaky
	})
	p, err := tai.New(allowAll, action, tai.WithGuards(f, b))
	require.NoError(t, err)
	ctx := context.Background()
	for i := range 2 {
		res, err := p.Process(ctx, tai.Signal[int]{ID: "s", Kind: "k"})
		require.NoError(t, err, "call %d", i)
		assert.Equal(t, "cached", res.Value)
		assert.Equal(t, tai.Succeeded, res.Outcome)
	}
	res, err := p.Process(ctx, tai.Signal[int]{ID: "s", Kind: "k"})
	assert.Equal(t, tai.Rejected, res.Outcome, "the breaker is open: the action did not run")
	assert.Empty(t, res.Value)
	assert.Error(t, err)
}

// A panic is a defect, not a failure to degrade from: the default When
// keeps it, so a pipeline's action that panics under a Fallback fails with
// the *tai.PanicError, as it does with Do alone, where the panic goes on.
func TestFallbackDefaultKeepsPanics(t *testing.T) {
	called := false
	f, err := jidoka.NewFallback(jidoka.FallbackOptions{Func: func(context.Context, error) error { called = true; return nil }})
	require.NoError(t, err)
	action := tai.ActionFunc[int, string](func(context.Context, tai.Signal[int]) (string, error) {
		panic("nil map")
	})
	p, err := tai.New(allowAll, action, tai.WithGuards(f))
	require.NoError(t, err)
	res, err := p.Process(context.Background(), tai.Signal[int]{ID: "s", Kind: "k"})
	var pe *tai.PanicError
	require.ErrorAs(t, err, &pe, "the panic is the signal's error")
	assert.Equal(t, "nil map", pe.Value)
	assert.Equal(t, tai.Failed, res.Outcome)
	assert.False(t, called, "Func is not asked to answer for a panic")

	jp := &jidoka.PanicError{Where: "check", Value: "x"}
	assert.Equal(t, jp, f.Do(context.Background(), func(context.Context) error { return jp }),
		"a panic jidoka recovered is kept too")

	assert.PanicsWithValue(t, "boom", func() {
		_ = f.Do(context.Background(), func(context.Context) error { panic("boom") })
	}, "with Do alone the panic goes on")
	assert.False(t, called)
}

// Every guard's Do, given a context that has already ended, returns its
// error and calls nothing: not fn, and not a Fallback's Func. A Fallback
// called fn, and answered the deadline its caller had already passed with
// Func, as if a call had been made and had failed; a pipeline does not run
// its guards once the context has ended either.
func TestGuardsOnAnEndedContextCallNothing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		funcCalled := false
		fallback, err := jidoka.NewFallback(jidoka.FallbackOptions{Func: func(context.Context, error) error { funcCalled = true; return nil }})
		require.NoError(t, err)
		timeout, err := jidoka.NewTimeout(jidoka.TimeoutOptions{Duration: time.Second})
		require.NoError(t, err)
		retry, err := jidoka.NewRetry(jidoka.RetryOptions{MaxAttempts: 3})
		require.NoError(t, err)
		bulkhead, err := jidoka.NewBulkhead(jidoka.BulkheadOptions{MaxConcurrent: 1})
		require.NoError(t, err)
		hedge, err := jidoka.NewHedge(jidoka.HedgeOptions{Delay: time.Second})
		require.NoError(t, err)
		breaker, err := jidoka.NewBreaker(jidoka.BreakerOptions{ConsecutiveFailures: 1})
		require.NoError(t, err)
		guards := map[string]tai.Guard{
			"Fallback": fallback, "Timeout": timeout, "Retry": retry,
			"Bulkhead": bulkhead, "Hedge": hedge, "Breaker": breaker,
		}

		canceled, cancel := context.WithCancel(context.Background())
		cancel()
		expired, cancel := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
		defer cancel()
		for name, g := range guards {
			for _, ctx := range []context.Context{canceled, expired} {
				called := false
				err := g.Do(ctx, func(context.Context) error { called = true; return errFlaky })
				assert.Equal(t, ctx.Err(), err, "%s: the context's error", name)
				assert.False(t, called, "%s called fn on a context that had ended (%v)", name, ctx.Err())
			}
		}
		assert.False(t, funcCalled, "the Fallback's Func answered a call that was not made")
		assert.Equal(t, jidoka.StateClosed, breaker.State())
	})
}
