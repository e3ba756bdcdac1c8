package natsjs_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/kanban"
	"github.com/taipattern/taikit/kanban/natsjs"
)

// TestWorkerBoundToADurableOfFewerDeliveries: a worker not permitted to
// update a durable an administrator made with a MaxDeliver below the
// consumer's MaxAttempts dead-letters a failing message at its last
// delivery the server makes. It retried it instead, and the server never
// delivered it again: the message stayed in the work stream, neither
// handled nor dead-lettered.
func TestWorkerBoundToADurableOfFewerDeliveries(t *testing.T) {
	ns := startUsersServer(t, user("admin"), user("worker", workerPerms...))
	ctx := context.Background()
	opts := natsjs.Options{Stream: "MADE", FetchWait: 50 * time.Millisecond}
	admin, err := natsjs.New[int](ctx, connectAs(t, ns, "admin", &violations{}), opts)
	require.NoError(t, err)
	_, err = admin.JetStream().CreateConsumer(ctx, "MADE", jetstream.ConsumerConfig{
		Durable: "MADE_WORKERS", AckPolicy: jetstream.AckExplicitPolicy, MaxAckPending: 1,
		MaxDeliver: 2, FilterSubject: "MADE",
	})
	require.NoError(t, err)

	q, err := natsjs.New[int](ctx, connectAs(t, ns, "worker", &violations{}), opts)
	require.NoError(t, err)
	require.NoError(t, q.Publish(ctx, kanban.Message[int]{ID: "fails", Payload: 1}))
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var attempts atomic.Int32
	done := make(chan error, 1)
	go func() {
		done <- q.Consume(cctx, func(context.Context, kanban.Delivery[int]) error {
			attempts.Add(1)
			return errors.New("boom")
		}, kanban.ConsumeOptions{MaxAttempts: 5, Backoff: kanban.BackoffFunc(func(int) time.Duration { return time.Millisecond })})
	}()
	assert.Eventually(t, func() bool {
		b, err := q.Backlog(ctx)
		return err == nil && b.DeadLetters == 1 && b.Depth == 0
	}, 10*time.Second, 5*time.Millisecond, "the message dead-lettered")
	cancel()
	require.NoError(t, <-done)
	assert.Equal(t, int32(2), attempts.Load(), "handled at each of the durable's deliveries")
	dls, err := q.DeadLetters(ctx)
	require.NoError(t, err)
	require.Len(t, dls, 1)
	assert.Equal(t, 2, dls[0].Attempts)
	assert.Equal(t, "boom", dls[0].Reason)
}

// TestWorkerBoundToADurableOfSmallPulls: a worker not permitted to update
// a durable an administrator made with a MaxRequestBatch below the WIP,
// or a MaxRequestExpires below FetchWait, pulls within them. The server
// refused every pull request, and the consumer handled nothing, trying
// again each second until its ctx ended.
func TestWorkerBoundToADurableOfSmallPulls(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  jetstream.ConsumerConfig
	}{
		{"MaxRequestBatch", jetstream.ConsumerConfig{MaxRequestBatch: 2}},
		{"MaxRequestExpires", jetstream.ConsumerConfig{MaxRequestExpires: 20 * time.Millisecond}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ns := startUsersServer(t, user("admin"), user("worker", workerPerms...))
			ctx := context.Background()
			opts := natsjs.Options{Stream: "MADE", FetchWait: 50 * time.Millisecond}
			admin, err := natsjs.New[int](ctx, connectAs(t, ns, "admin", &violations{}), opts)
			require.NoError(t, err)
			cfg := tc.cfg
			cfg.Durable, cfg.AckPolicy, cfg.MaxAckPending, cfg.MaxDeliver, cfg.FilterSubject = "MADE_WORKERS", jetstream.AckExplicitPolicy, 4, -1, "MADE"
			_, err = admin.JetStream().CreateConsumer(ctx, "MADE", cfg)
			require.NoError(t, err)

			q, err := natsjs.New[int](ctx, connectAs(t, ns, "worker", &violations{}), opts)
			require.NoError(t, err)
			for _, id := range []string{"a", "b", "c", "d", "e"} {
				require.NoError(t, q.Publish(ctx, kanban.Message[int]{ID: id, Payload: 1}))
			}
			handled, stop := consumeCounting(t, ctx, q, 4)
			assert.Eventually(t, func() bool { return handled.Load() == 5 }, 10*time.Second, time.Millisecond, "every message handled")
			assert.NoError(t, stop())
		})
	}
}

// TestWorkerBoundToAHeadersOnlyDurable: a worker bound to a durable an
// administrator made to deliver headers only refuses to consume from it.
// It handled each message's empty payload, and dead-lettered it as one
// that cannot be decoded, payload lost, and terminated the message.
func TestWorkerBoundToAHeadersOnlyDurable(t *testing.T) {
	ns := startUsersServer(t, user("admin"), user("worker", workerPerms...))
	ctx := context.Background()
	opts := natsjs.Options{Stream: "MADE", FetchWait: 50 * time.Millisecond}
	admin, err := natsjs.New[int](ctx, connectAs(t, ns, "admin", &violations{}), opts)
	require.NoError(t, err)
	_, err = admin.JetStream().CreateConsumer(ctx, "MADE", jetstream.ConsumerConfig{
		Durable: "MADE_WORKERS", AckPolicy: jetstream.AckExplicitPolicy, MaxAckPending: 1,
		MaxDeliver: -1, FilterSubject: "MADE", HeadersOnly: true,
	})
	require.NoError(t, err)

	q, err := natsjs.New[int](ctx, connectAs(t, ns, "worker", &violations{}), opts)
	require.NoError(t, err)
	require.NoError(t, q.Publish(ctx, kanban.Message[int]{ID: "kept", Payload: 7}))
	cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	err = q.Consume(cctx, func(context.Context, kanban.Delivery[int]) error { return nil }, kanban.ConsumeOptions{})
	if assert.Error(t, err) {
		assert.Contains(t, err.Error(), "HeadersOnly")
	}
	assert.NoError(t, cctx.Err(), "returned at once")
	b, err := q.Backlog(ctx)
	require.NoError(t, err)
	assert.Equal(t, kanban.Backlog{Depth: 1, OldestKnown: true}, kanban.Backlog{Depth: b.Depth, DeadLetters: b.DeadLetters, OldestKnown: b.OldestKnown})
}
