package kanban_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/kanban"
)

func TestConsumeOptionsValidate(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tests := []struct {
			opts kanban.ConsumeOptions
			want string
		}{
			{kanban.ConsumeOptions{WIP: -1}, "kanban: invalid WIP -1"},
			{kanban.ConsumeOptions{WIP: kanban.MaxWIP + 1}, "kanban: invalid WIP 65537"},
			{kanban.ConsumeOptions{MaxAttempts: -2}, "kanban: invalid MaxAttempts -2"},
			{kanban.ConsumeOptions{DrainTimeout: -time.Second}, "kanban: invalid DrainTimeout -1s"},
			{kanban.ConsumeOptions{Backoff: kanban.Exponential{Multiplier: 0.5}}, "kanban: invalid Exponential.Multiplier 0.5"},
			{kanban.ConsumeOptions{Backoff: kanban.Exponential{Jitter: 1.5}}, "kanban: invalid Exponential.Jitter 1.5"},
			{kanban.ConsumeOptions{Backoff: kanban.Exponential{Initial: -1}}, "kanban: invalid Exponential.Initial -1ns"},
			{kanban.ConsumeOptions{Backoff: kanban.Exponential{Initial: time.Minute, Max: time.Second}}, "kanban: invalid Exponential.Initial 1m0s"},
			// A nil function or pointer would panic in a worker, where
			// nothing recovers it, at the first failure (or handler).
			{kanban.ConsumeOptions{Backoff: kanban.BackoffFunc(nil)}, "kanban: invalid Backoff: a nil kanban.BackoffFunc"},
			{kanban.ConsumeOptions{Backoff: (*kanban.Exponential)(nil)}, "kanban: invalid Backoff: a nil *kanban.Exponential"},
			{kanban.ConsumeOptions{Observer: kanban.HandlerObserverFunc(nil)}, "kanban: invalid Observer: a nil kanban.HandlerObserverFunc"},
		}
		q, err := kanban.NewMemory[int](kanban.MemoryOptions{})
		require.NoError(t, err)
		for _, tc := range tests {
			err := tc.opts.Validate()
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
			err = q.Consume(context.Background(), func(context.Context, kanban.Delivery[int]) error { return nil }, tc.opts)
			assert.Contains(t, err.Error(), tc.want, "Consume validates too")
		}
		assert.NoError(t, kanban.ConsumeOptions{}.Validate())
		assert.NoError(t, kanban.ConsumeOptions{WIP: kanban.MaxWIP}.Validate(), "MaxWIP itself is allowed")
	})
}

// TestConsumeDefaults: the zero ConsumeOptions handle one message at a
// time, make five attempts spaced by the default Exponential back-off,
// and wait 30s for running handlers when the consumer stops.
func TestConsumeDefaults(t *testing.T) {
	t.Run("one at a time", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			q, err := kanban.NewMemory[int](kanban.MemoryOptions{})
			require.NoError(t, err)
			for _, id := range []string{"a", "b", "c"} {
				require.NoError(t, q.Publish(context.Background(), kanban.Message[int]{ID: id}))
			}
			ctx, cancel := context.WithCancel(context.Background())
			var running, peak, handled atomic.Int64
			err = q.Consume(ctx, func(context.Context, kanban.Delivery[int]) error {
				peak.Store(max(peak.Load(), running.Add(1)))
				time.Sleep(time.Second) // others would start meanwhile
				running.Add(-1)
				if handled.Add(1) == 3 {
					cancel()
				}
				return nil
			}, kanban.ConsumeOptions{})
			require.NoError(t, err)
			assert.Equal(t, int64(1), peak.Load())
		})
	})
	t.Run("five attempts, exponential back-off", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			q, err := kanban.NewMemory[int](kanban.MemoryOptions{})
			require.NoError(t, err)
			require.NoError(t, q.Publish(context.Background(), kanban.Message[int]{ID: "a"}))
			ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
			defer cancel()
			start := time.Now()
			var at []time.Duration
			err = q.Consume(ctx, func(_ context.Context, d kanban.Delivery[int]) error {
				at = append(at, time.Since(start))
				if d.Attempt == 5 {
					cancel()
				}
				return errors.New("down")
			}, kanban.ConsumeOptions{})
			require.NoError(t, err)
			require.Len(t, at, 5)
			for i, want := range []time.Duration{100, 200, 400, 800} { // ms, ±20% jitter
				gap := at[i+1] - at[i]
				assert.InDelta(t, float64(want*time.Millisecond), float64(gap), 0.2*float64(want*time.Millisecond)+1, "wait after attempt %d", i+1)
			}
			dl, err := q.DeadLetters(context.Background())
			require.NoError(t, err)
			require.Len(t, dl, 1)
			assert.Equal(t, 5, dl[0].Attempts)
		})
	})
	t.Run("30s drain", func(t *testing.T) {
		for _, work := range []time.Duration{30*time.Second - time.Nanosecond, time.Minute} {
			synctest.Test(t, func(t *testing.T) {
				q, err := kanban.NewMemory[int](kanban.MemoryOptions{})
				require.NoError(t, err)
				require.NoError(t, q.Publish(context.Background(), kanban.Message[int]{ID: "a"}))
				ctx, cancel := context.WithCancel(context.Background())
				var stopped time.Time
				var finished bool
				err = q.Consume(ctx, func(hctx context.Context, _ kanban.Delivery[int]) error {
					cancel()
					stopped = time.Now()
					select {
					case <-time.After(work):
						finished = true
						return nil
					case <-hctx.Done():
						return hctx.Err()
					}
				}, kanban.ConsumeOptions{})
				if work < 30*time.Second {
					require.NoError(t, err)
					assert.True(t, finished, "a handler within the drain timeout finishes")
					assert.Zero(t, q.Len())
				} else {
					require.ErrorIs(t, err, kanban.ErrDrainTimeout)
					assert.Equal(t, 30*time.Second, time.Since(stopped), "cancelled at the drain timeout")
					assert.Equal(t, 1, q.Len(), "its message is released")
				}
			})
		}
	})
}
