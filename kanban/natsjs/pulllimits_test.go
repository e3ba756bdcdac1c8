package natsjs_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/kanban"
	"github.com/taipattern/taikit/kanban/natsembed"
	"github.com/taipattern/taikit/kanban/natsjs"
)

// TestDurableGivenSmallPullsWhileConsuming: a durable given a
// MaxRequestBatch below the WIP, or a MaxRequestExpires below FetchWait,
// while Consume runs has its pull requests refused; the consumer then
// pulls within them (the messages published then are more than the
// request open as it changed takes). It pulled as before, refused each time, and handled
// nothing more until its ctx ended.
func TestDurableGivenSmallPullsWhileConsuming(t *testing.T) {
	for _, tc := range []struct {
		name string
		set  func(*jetstream.ConsumerConfig)
	}{
		{"MaxRequestBatch", func(c *jetstream.ConsumerConfig) { c.MaxRequestBatch = 1 }},
		{"MaxRequestExpires", func(c *jetstream.ConsumerConfig) { c.MaxRequestExpires = 20 * time.Millisecond }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := startServer(t, natsembed.Options{InProcess: true})
			ctx := context.Background()
			q, err := natsjs.New[int](ctx, connect(t, srv.Connect), natsjs.Options{Stream: "LIMITS", FetchWait: 50 * time.Millisecond})
			require.NoError(t, err)
			require.NoError(t, q.Publish(ctx, kanban.Message[int]{ID: "first", Payload: 1}))

			handled, stop := consumeCounting(t, ctx, q, 4)
			require.Eventually(t, func() bool { return handled.Load() == 1 }, 10*time.Second, time.Millisecond, "the first message handled")

			cons, err := q.JetStream().Consumer(ctx, "LIMITS", q.Options().Durable)
			require.NoError(t, err)
			cfg := cons.CachedInfo().Config
			tc.set(&cfg)
			_, err = q.JetStream().UpdateConsumer(ctx, "LIMITS", cfg)
			require.NoError(t, err)
			for _, id := range []string{"a", "b", "c", "d", "e", "f"} {
				require.NoError(t, q.Publish(ctx, kanban.Message[int]{ID: id, Payload: 1}))
			}
			assert.Eventually(t, func() bool { return handled.Load() == 7 }, 10*time.Second, time.Millisecond, "every message handled")
			assert.NoError(t, stop())
		})
	}
}

// consumeCounting consumes q with a WIP of wip, counting the messages
// handled, until stop (or the test's end), which returns what Consume
// returned.
func consumeCounting(t *testing.T, ctx context.Context, q *natsjs.Queue[int], wip int) (handled *atomic.Int32, stop func() error) {
	ctx, cancel := context.WithCancel(ctx)
	t.Cleanup(cancel)
	handled = new(atomic.Int32)
	done := make(chan error, 1)
	go func() {
		done <- q.Consume(ctx, func(context.Context, kanban.Delivery[int]) error {
			handled.Add(1)
			return nil
		}, kanban.ConsumeOptions{WIP: wip})
	}()
	return handled, func() error {
		cancel()
		return <-done
	}
}
