package kanban_test

import (
	"context"
	"errors"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/kanban"
)

// TestMemoryBacklog: the age is that of the message at the head of the
// line, from its publish; a message waiting for its retry is held (Depth)
// but not in line, and comes back with its age.
func TestMemoryBacklog(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		q, err := kanban.NewMemory[string](kanban.MemoryOptions{})
		require.NoError(t, err)
		ctx := context.Background()
		backlog := func() kanban.Backlog {
			b, err := q.Backlog(ctx)
			require.NoError(t, err)
			return b
		}
		require.NoError(t, q.Publish(ctx, kanban.Message[string]{ID: "a"}))
		time.Sleep(5 * time.Second)
		require.NoError(t, q.Publish(ctx, kanban.Message[string]{ID: "b"}))
		time.Sleep(5 * time.Second)
		assert.Equal(t, kanban.Backlog{Depth: 2, Oldest: 10 * time.Second, OldestKnown: true}, backlog())

		cctx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() {
			done <- q.Consume(cctx, func(_ context.Context, d kanban.Delivery[string]) error {
				if d.ID == "a" && d.Attempt == 1 {
					return errors.New("later")
				}
				return kanban.Permanent(errors.New("no"))
			}, kanban.ConsumeOptions{Backoff: kanban.BackoffFunc(func(int) time.Duration { return time.Hour })})
		}()
		synctest.Wait()
		assert.Equal(t, kanban.Backlog{Depth: 1, OldestKnown: true, DeadLetters: 1}, backlog(), "a waits for its retry, b is dead")
		cancel()
		require.NoError(t, <-done)

		time.Sleep(time.Hour)
		synctest.Wait()
		assert.Equal(t, kanban.Backlog{Depth: 1, Oldest: time.Hour + 10*time.Second, OldestKnown: true, DeadLetters: 1}, backlog(),
			"a back in line, as old as it is")

		noDedup, err := kanban.NewMemory[string](kanban.MemoryOptions{DedupWindow: -1})
		require.NoError(t, err)
		require.NoError(t, noDedup.Publish(ctx, kanban.Message[string]{ID: "a"}))
		time.Sleep(time.Second)
		b, err := noDedup.Backlog(ctx)
		require.NoError(t, err)
		assert.Equal(t, kanban.Backlog{Depth: 1}, b, "without deduplication the age is not known")

		cancelled, cancel := context.WithCancel(ctx)
		cancel()
		_, err = q.Backlog(cancelled)
		assert.ErrorIs(t, err, context.Canceled)
	})
}

// TestMemoryBacklogCountsMessagesTakenAhead: messages a consumer's worker
// took together with the one it runs, and has not started, are waiting:
// the age is that of the oldest of them while a handler holds them up.
func TestMemoryBacklogCountsMessagesTakenAhead(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		q, err := kanban.NewMemory[string](kanban.MemoryOptions{})
		require.NoError(t, err)
		ctx := context.Background()
		for _, id := range []string{"a", "b", "c"} {
			require.NoError(t, q.Publish(ctx, kanban.Message[string]{ID: id}))
			time.Sleep(time.Second)
		}
		cctx, cancel := context.WithCancel(ctx)
		unblock := map[string]chan struct{}{"a": make(chan struct{}), "b": make(chan struct{})}
		done := make(chan error, 1)
		go func() {
			done <- q.Consume(cctx, func(_ context.Context, d kanban.Delivery[string]) error {
				if ch := unblock[d.ID]; ch != nil {
					<-ch // a hung call
				}
				return nil
			}, kanban.ConsumeOptions{})
		}()
		synctest.Wait()
		time.Sleep(time.Minute)
		b, err := q.Backlog(ctx)
		require.NoError(t, err)
		assert.Equal(t, kanban.Backlog{Depth: 3, Oldest: time.Minute + 2*time.Second, OldestKnown: true}, b,
			"b waits behind a, published a minute and 2s ago")

		close(unblock["a"])
		synctest.Wait()
		b, err = q.Backlog(ctx)
		require.NoError(t, err)
		assert.Equal(t, kanban.Backlog{Depth: 3, Oldest: time.Minute + time.Second, OldestKnown: true}, b,
			"c waits behind b (a is handled, and acknowledged with the next take)")

		close(unblock["b"])
		synctest.Wait()
		b, err = q.Backlog(ctx)
		require.NoError(t, err)
		assert.Equal(t, kanban.Backlog{OldestKnown: true}, b, "nothing waits")
		cancel()
		require.NoError(t, <-done)
	})
}
