package natsjs_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/kanban"
	"github.com/taipattern/taikit/kanban/natsembed"
	"github.com/taipattern/taikit/kanban/natsjs"
)

// TestConsumersStoppingTogetherPassNoMessageAround: consumers of one
// durable that stop together (the replicas of a service scaled down, or
// shut down at once) do not hand a message from one to the other until
// its attempts are used up. The message one of them hands back went to
// the oldest pull request still open, another's that was stopping too,
// which handed it back once that request ended, to the next: each
// delivery counted among its attempts, and with as many consumers as
// MaxAttempts the next consumer dead-lettered it without its ever being
// handled.
func TestConsumersStoppingTogetherPassNoMessageAround(t *testing.T) {
	const others = 6
	srv := startServer(t, natsembed.Options{InProcess: true})
	ctx := context.Background()
	q, err := natsjs.New[int](ctx, connect(t, srv.Connect), natsjs.Options{
		Stream: "TOGETHER_STOP", FetchWait: time.Second,
	})
	require.NoError(t, err)
	for i, id := range []string{"m0", "m1"} {
		require.NoError(t, q.Publish(ctx, kanban.Message[int]{ID: id, Key: "k", Payload: i}))
	}
	opts := kanban.ConsumeOptions{WIP: 2, PerKey: true}
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	started, finish := make(chan struct{}), make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan error, others+1)
	consume := func(h kanban.Handler[int]) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- q.Consume(cctx, h, opts)
		}()
	}
	// The first pulls both: m0 runs until the stop, m1 waits behind it.
	consume(func(_ context.Context, d kanban.Delivery[int]) error {
		if d.ID != "m0" {
			t.Errorf("%s handled by a consumer stopping", d.ID)
			return nil
		}
		close(started)
		<-finish
		return nil
	})
	<-started
	require.Eventually(t, func() bool { return q.Stats().InFlight == 2 }, 10*time.Second, time.Millisecond)
	// The others wait, each with a pull request open: the durable's
	// MaxAckPending, the WIP, is taken.
	for range others {
		consume(func(_ context.Context, d kanban.Delivery[int]) error {
			t.Errorf("%s handled by a consumer stopping", d.ID)
			return nil
		})
	}
	js := q.JetStream()
	require.Eventually(t, func() bool {
		c, err := js.Consumer(ctx, "TOGETHER_STOP", "TOGETHER_STOP_WORKERS")
		if err != nil {
			return false
		}
		info, err := c.Info(ctx)
		return err == nil && info.NumWaiting >= others
	}, 10*time.Second, time.Millisecond)
	cancel()
	close(finish)
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}

	// The next consumer settles m1: handled, or dead-lettered.
	got := make(chan kanban.Delivery[int], 1)
	nctx, stop := context.WithCancel(ctx)
	defer stop()
	done := make(chan error, 1)
	go func() {
		done <- q.Consume(nctx, func(_ context.Context, d kanban.Delivery[int]) error {
			got <- d
			return nil
		}, kanban.ConsumeOptions{WIP: 1, MaxAttempts: 3})
	}()
	require.Eventually(t, func() bool { return depth(q) == 0 }, 30*time.Second, 10*time.Millisecond)
	stop()
	require.NoError(t, <-done)
	dead, err := q.DeadLetters(ctx)
	require.NoError(t, err)
	for _, d := range dead {
		t.Errorf("%s dead-lettered unhandled: %s", d.ID, d.Reason)
	}
	select {
	case d := <-got:
		assert.Equal(t, "m1", d.ID)
		assert.Equal(t, 3, d.Attempt, "delivered to the first consumer, to one other stopping, then here")
	default:
		t.Error("m1 not handled")
	}
}
