package natsjs_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/kanban"
	"github.com/taipattern/taikit/kanban/natsembed"
	"github.com/taipattern/taikit/kanban/natsjs"
)

// TestMessagePulledAsTheConsumerStopsIsHandedBackAtOnce: a message that
// the open pull request delivers after the consumer's ctx has ended is
// handed back at once, and so comes back with one delivery counted.
// Held until the request expired (FetchWait, here many AckWaits), its
// lease ran out meanwhile, the server delivered it again into the same
// request, and every copy used up an attempt: the next consumer saw it
// at attempt 5, or dead-lettered it without handling it.
func TestMessagePulledAsTheConsumerStopsIsHandedBackAtOnce(t *testing.T) {
	// An AckWait of 1.5s, not the least (100ms): the leases held while the
	// request runs out are extended a third of it apart, and the two
	// thirds left are what a loaded machine has to get each extension to
	// the server; 500ms left 333ms, less than a busy machine can take.
	const ackWait = 1500 * time.Millisecond
	srv := startServer(t, natsembed.Options{InProcess: true})
	ctx := context.Background()
	q, err := natsjs.New[int](ctx, connect(t, srv.Connect), natsjs.Options{
		Stream: "STOP_PULL", AckWait: ackWait, FetchWait: 5 * ackWait,
	})
	require.NoError(t, err)
	js := q.JetStream()
	cctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- q.Consume(cctx, func(context.Context, kanban.Delivery[int]) error {
			t.Error("handled after its consumer stopped")
			return nil
		}, kanban.ConsumeOptions{WIP: 8})
	}()
	// Wait for the open pull request, then stop and publish into it.
	require.Eventually(t, func() bool {
		c, err := js.Consumer(ctx, "STOP_PULL", "STOP_PULL_WORKERS")
		if err != nil {
			return false
		}
		info, err := c.Info(ctx)
		return err == nil && info.NumWaiting > 0
	}, 10*time.Second, time.Millisecond)
	cancel()
	require.NoError(t, q.Publish(ctx, kanban.Message[int]{ID: "late", Payload: 1}))
	require.NoError(t, <-done)

	got := make(chan kanban.Delivery[int], 1)
	cctx, cancel = context.WithCancel(ctx)
	defer cancel()
	go func() {
		done <- q.Consume(cctx, func(_ context.Context, d kanban.Delivery[int]) error {
			got <- d
			return nil
		}, kanban.ConsumeOptions{WIP: 1, MaxAttempts: 3})
	}()
	require.Eventually(t, func() bool { return depth(q) == 0 }, 20*time.Second, 10*time.Millisecond)
	dead, err := q.DeadLetters(ctx)
	require.NoError(t, err)
	for _, d := range dead {
		t.Errorf("dead-lettered unhandled: %s", d.Reason)
	}
	select {
	case d := <-got:
		assert.Equal(t, 2, d.Attempt, "the delivery handed back counts once")
	default:
		t.Error("not handled")
	}
	cancel()
	require.NoError(t, <-done)
}
