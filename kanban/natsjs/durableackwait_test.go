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

// TestLastConsumerSetsTheDurablesAckWait: the durable's AckWait, which
// bounds the leases of every process sharing it, is that of the last
// process to start consuming, as Options.AckWait says.
func TestLastConsumerSetsTheDurablesAckWait(t *testing.T) {
	srv := startServer(t, natsembed.Options{InProcess: true})
	ctx := context.Background()
	newQueue := func(ackWait time.Duration) *natsjs.Queue[int] {
		q, err := natsjs.New[int](ctx, connect(t, srv.Connect), natsjs.Options{
			Stream: "ACKWAIT", AckWait: ackWait, FetchWait: 50 * time.Millisecond,
		})
		require.NoError(t, err)
		return q
	}
	ackWait := func(q *natsjs.Queue[int]) time.Duration {
		c, err := q.JetStream().Consumer(ctx, "ACKWAIT", "ACKWAIT_WORKERS")
		if err != nil {
			return -1
		}
		return c.CachedInfo().Config.AckWait
	}
	handled := make(chan string, 1)
	consume := func(q *natsjs.Queue[int]) (stop func()) {
		cctx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() {
			done <- q.Consume(cctx, func(_ context.Context, d kanban.Delivery[int]) error {
				handled <- d.ID
				return nil
			}, kanban.ConsumeOptions{})
		}()
		return func() { cancel(); assert.NoError(t, <-done) }
	}
	long, short := newQueue(3*time.Second), newQueue(300*time.Millisecond)
	stopLong := consume(long)
	defer stopLong()
	// Consume sends the request that makes the durable twice (a probe,
	// then jetstream's): once the first consumer has pulled, both are
	// done, and neither lands after the second consumer's.
	require.NoError(t, long.Publish(ctx, kanban.Message[int]{ID: "pulled"}))
	assert.Equal(t, "pulled", next(t, handled))
	require.Equal(t, 3*time.Second, ackWait(long))
	stopShort := consume(short)
	defer stopShort()
	require.Eventually(t, func() bool { return ackWait(long) == 300*time.Millisecond }, 10*time.Second, time.Millisecond,
		"the last to start sets it, for the first process too")
}
