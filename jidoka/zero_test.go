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

// The zero value of each guard is not usable: its calls say it was not
// made by its constructor, run no call, and neither panic nor wait. Each
// test runs in a synctest bubble, which reports a wait that nothing would
// end as a deadlock.

// zeroCall is a call a zero guard must not run.
func zeroCall(t *testing.T) func(context.Context) error {
	return func(context.Context) error {
		t.Error("a guard not made by its constructor ran the call")
		return nil
	}
}

// TestZeroBreakerRunsNoCall: Do and Allow of the zero Breaker panicked (it
// has no period), Allow with its lock held when it came through admit, and
// Trip, Reset, ForceOpen, Disable and MetricsOnly panicked holding the
// lock, so every later call of them waited for good.
func TestZeroBreakerRunsNoCall(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		var b jidoka.Breaker
		for range 2 { // the first calls leave nothing held
			require.NotPanics(t, func() { assert.ErrorContains(t, b.Do(ctx, zeroCall(t)), "not made by NewBreaker") })
			require.NotPanics(t, func() {
				done, err := b.Allow(ctx)
				assert.ErrorContains(t, err, "not made by NewBreaker")
				assert.Nil(t, done)
			})
			require.NotPanics(t, func() {
				_, err := jidoka.Execute(ctx, &b, func(context.Context) (int, error) {
					t.Error("the zero Breaker ran the call")
					return 0, nil
				})
				assert.ErrorContains(t, err, "not made by NewBreaker")
			})
			require.NotPanics(t, func() { b.Trip("x") })
			require.NotPanics(t, func() { b.ForceOpen("x") })
			require.NotPanics(t, func() { b.Disable() })
			require.NotPanics(t, func() { b.MetricsOnly() })
			require.NotPanics(t, func() { b.Reset() })
		}
		// It refuses every call, as a breaker forced open does; a zero
		// State would read StateClosed.
		assert.Equal(t, jidoka.StateForcedOpen, b.State())
		s := b.Snapshot()
		assert.Equal(t, jidoka.StateForcedOpen, s.State)
		assert.Contains(t, s.Reason, "not made by NewBreaker")
		assert.Zero(t, s.Generation, "a breaker NewBreaker made starts at generation 1")
		assert.Empty(t, b.Name())
	})
}

// TestZeroBulkheadRunsNoCall: the zero Bulkhead's Allow returned a nil
// done and a nil error, so a caller told it was admitted called a nil
// done, and Do ran the call with no limit at all.
func TestZeroBulkheadRunsNoCall(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		var b jidoka.Bulkhead
		require.NotPanics(t, func() {
			done, err := b.Allow(ctx)
			assert.ErrorContains(t, err, "not made by NewBulkhead")
			assert.Nil(t, done)
		})
		require.NotPanics(t, func() { assert.ErrorContains(t, b.Do(ctx, zeroCall(t)), "not made by NewBulkhead") })
		assert.Zero(t, b.Running())
		assert.Zero(t, b.Waiting())
		assert.Empty(t, b.Name())
	})
}

// TestZeroFallbackRunsNoCall: the zero Fallback has no Func; it ran the
// call and panicked on the call's first error.
func TestZeroFallbackRunsNoCall(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var f jidoka.Fallback
		require.NotPanics(t, func() {
			assert.ErrorContains(t, f.Do(context.Background(), zeroCall(t)), "not made by NewFallback")
		})
		require.NotPanics(t, func() {
			err := f.Do(context.Background(), func(context.Context) error {
				t.Error("the zero Fallback ran the call")
				return errors.New("down")
			})
			assert.ErrorContains(t, err, "not made by NewFallback")
		})
		assert.Empty(t, f.Name())
	})
}

// TestZeroHedgeRunsNoCall: the zero Hedge ran the call alone and then
// panicked, on a success, recording its latency.
func TestZeroHedgeRunsNoCall(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var h jidoka.Hedge
		require.NotPanics(t, func() {
			assert.ErrorContains(t, h.Do(context.Background(), zeroCall(t)), "not made by NewHedge")
		})
		assert.Zero(t, h.Delay())
		assert.Empty(t, h.Name())
	})
}

// TestZeroRetryRunsNoCall: the zero Retry has no budget; Do panicked
// before the first call.
func TestZeroRetryRunsNoCall(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var r jidoka.Retry
		require.NotPanics(t, func() {
			assert.ErrorContains(t, r.Do(context.Background(), zeroCall(t)), "not made by NewRetry")
		})
		assert.Nil(t, r.Budget())
		assert.Empty(t, r.Name())
	})
}

// TestZeroTimeoutRunsNoCall: the zero Timeout has no Duration; it ran
// the call with a context whose deadline had passed, and answered its
// error as a timeout "after 0s", or panicked when the caller's context
// could end.
func TestZeroTimeoutRunsNoCall(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var to jidoka.Timeout
		ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
		defer cancel()
		for _, ctx := range []context.Context{context.Background(), ctx} {
			require.NotPanics(t, func() {
				err := to.Do(ctx, zeroCall(t))
				assert.ErrorContains(t, err, "not made by NewTimeout")
				assert.NotErrorIs(t, err, jidoka.ErrTimeout, "no call timed out")
			})
		}
		assert.Zero(t, to.Duration())
		assert.Empty(t, to.Name())
	})
}

// TestZeroRetryBudgetHoldsNoRetry: as documented, the zero RetryBudget
// holds no retry and never earns one.
func TestZeroRetryBudgetHoldsNoRetry(t *testing.T) {
	var b jidoka.RetryBudget
	for range 100 {
		b.Deposit()
	}
	assert.False(t, b.Withdraw())
	assert.Zero(t, b.Tokens())
}

// TestZeroWatchdogStartsNothing: the zero Watchdog reports unhealthy and
// refuses to start; a Shutdown of it has nothing to stop.
func TestZeroWatchdogStartsNothing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var w jidoka.Watchdog
		assert.False(t, w.Healthy())
		assert.Zero(t, w.Status().Checks)
		assert.ErrorContains(t, w.Start(context.Background()), "not made by NewWatchdog")
		assert.NoError(t, w.Shutdown(context.Background()))
		assert.Empty(t, w.Name())
	})
}

// TestZeroGuardsInAPipeline: a pipeline around a zero guard rejects the
// signal with the guard's error, the action unrun.
func TestZeroGuardsInAPipeline(t *testing.T) {
	for name, g := range map[string]tai.Guard{
		"Breaker": &jidoka.Breaker{}, "Bulkhead": &jidoka.Bulkhead{}, "Fallback": &jidoka.Fallback{},
		"Hedge": &jidoka.Hedge{}, "Retry": &jidoka.Retry{}, "Timeout": &jidoka.Timeout{},
	} {
		t.Run(name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				p, err := tai.New(tai.PolicyFunc[int](func(context.Context, tai.Signal[int]) (tai.Decision, error) {
					return tai.Decision{Verdict: tai.Allow}, nil
				}), tai.ActionFunc[int, int](func(context.Context, tai.Signal[int]) (int, error) {
					t.Error("the action ran through a guard not made by its constructor")
					return 0, nil
				}), tai.WithGuards(g))
				require.NoError(t, err)
				var res tai.Result[int]
				require.NotPanics(t, func() {
					res, err = p.Process(context.Background(), tai.Signal[int]{ID: "1", Kind: "k"})
				})
				assert.ErrorContains(t, err, "not made by New"+name)
				assert.NotEqual(t, tai.Succeeded, res.Outcome)
			})
		})
	}
}
