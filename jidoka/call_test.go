package jidoka_test

import (
	"context"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/jidoka"
)

func TestCall(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		h, err := jidoka.NewHedge(jidoka.HedgeOptions{Delay: time.Second, MaxHedges: 3})
		require.NoError(t, err)
		var calls atomic.Int32
		// Four calls at once, the last two succeed: the third, first to
		// succeed, is kept.
		v, err := jidoka.Call(ctx, h, func(ctx context.Context) (int, error) {
			n := calls.Add(1)
			switch n {
			case 1, 2:
				<-ctx.Done()
				return -int(n), ctx.Err()
			case 3:
				time.Sleep(2 * time.Second)
			case 4:
				time.Sleep(5 * time.Second) // still running when 3 succeeds
			}
			return int(n), nil
		})
		require.NoError(t, err)
		assert.Equal(t, 3, v)

		r, err := jidoka.NewRetry(jidoka.RetryOptions{MaxAttempts: 3, BaseDelay: time.Millisecond, Budget: bigBudget(t)})
		require.NoError(t, err)
		n := 0
		v, err = jidoka.Call(ctx, r, func(context.Context) (int, error) {
			n++
			return n, errFlaky
		})
		assert.ErrorIs(t, err, errFlaky)
		assert.Zero(t, v, "no value with an error")

		f, err := jidoka.NewFallback(jidoka.FallbackOptions{Func: func(context.Context, error) error { return nil }})
		require.NoError(t, err)
		v, err = jidoka.Call(ctx, f, func(context.Context) (int, error) { return 42, errFlaky })
		require.NoError(t, err)
		assert.Equal(t, 42, v, "the value returned with the error the fallback replaced")
	})
}

// Call costs a closure and its state: two allocations, as documented.
func TestCallAllocations(t *testing.T) {
	skipUnderRace(t)
	f, err := jidoka.NewFallback(jidoka.FallbackOptions{Func: func(context.Context, error) error { return nil }})
	require.NoError(t, err)
	ctx := context.Background()
	fn := func(context.Context) (string, error) { return "quote", nil }
	assert.Equal(t, 2.0, testing.AllocsPerRun(1000, func() {
		if v, err := jidoka.Call(ctx, f, fn); err != nil || v != "quote" {
			t.Fatal(v, err)
		}
	}))
}
