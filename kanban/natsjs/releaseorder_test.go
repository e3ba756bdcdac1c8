package natsjs_test

import (
	"context"
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/kanban"
	"github.com/taipattern/taikit/kanban/natsembed"
	"github.com/taipattern/taikit/kanban/natsjs"
)

// TestStoppedConsumerHandsBackAKeysMessagesInOrder: the messages of a
// key that a PerKey consumer pulled and had not started when it stopped
// come to the next consumer in their order. JetStream delivers messages
// negatively acknowledged in the order they were, so the consumer hands
// them back in their order; handed back the last first (as a queue that
// puts a released message at its front needs), the next consumer had
// them in reverse. The first message of the key waits in place for its
// retry as the consumer stops, and comes back after its back-off.
func TestStoppedConsumerHandsBackAKeysMessagesInOrder(t *testing.T) {
	const n = 5
	q := keyedMessages(t, "RELEASE_ORDER", n)
	handBackBehindAFailure(t, q, n)
	assert.Equal(t, []string{"m1", "m2", "m3", "m4"}, handledInOrder(t, q, n-1))
}

// handBackBehindAFailure runs a PerKey consumer of q, which holds n
// messages of one key m0 to m(n-1), until it has pulled them all: m0
// fails and waits an hour for its retry, the others wait behind it. Then
// it stops the consumer, which hands them back.
func handBackBehindAFailure(t *testing.T, q *natsjs.Queue[int], n int) {
	t.Helper()
	failed := make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- q.Consume(ctx, func(_ context.Context, d kanban.Delivery[int]) error {
			if d.ID != "m0" || d.Attempt != 1 {
				t.Errorf("%s handled at attempt %d by the consumer stopping", d.ID, d.Attempt)
				return nil
			}
			close(failed)
			return errors.New("failing")
		}, kanban.ConsumeOptions{WIP: 2 * n, PerKey: true, Backoff: kanban.BackoffFunc(func(int) time.Duration { return time.Hour })})
	}()
	<-failed
	// Every message pulled: m0 waiting for its retry, the others behind it.
	require.Eventually(t, func() bool { return q.Stats().InFlight == int64(n) }, 10*time.Second, time.Millisecond)
	cancel()
	require.NoError(t, <-done)
}

// TestDrainTimeoutKeepsAKeysOrder: when the drain deadline cancels a
// PerKey handler, its message, handed back, comes to the next consumer
// before the messages of its key that waited behind it. They were handed
// back as the drain began, before it: JetStream, delivering them in
// turn, gave the next consumer the running message last.
func TestDrainTimeoutKeepsAKeysOrder(t *testing.T) {
	const n = 5
	ctx := context.Background()
	q := keyedMessages(t, "DRAIN_ORDER", n)

	started := make(chan struct{})
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- q.Consume(cctx, func(hctx context.Context, d kanban.Delivery[int]) error {
			if d.ID != "m0" {
				t.Errorf("%s handled by the consumer stopping", d.ID)
				return nil
			}
			close(started)
			<-hctx.Done() // until the drain deadline
			return hctx.Err()
		}, kanban.ConsumeOptions{WIP: 2 * n, PerKey: true, DrainTimeout: 100 * time.Millisecond})
	}()
	<-started
	require.Eventually(t, func() bool { return q.Stats().InFlight == n }, 10*time.Second, time.Millisecond)
	cancel()
	require.ErrorIs(t, <-done, kanban.ErrDrainTimeout)

	assert.Equal(t, []string{"m0", "m1", "m2", "m3", "m4"}, handledInOrder(t, q, n))
}

// keyedMessages returns a queue on an in-process server holding n
// messages of one key, m0 to m(n-1).
func keyedMessages(t *testing.T, stream string, n int) *natsjs.Queue[int] {
	t.Helper()
	srv := startServer(t, natsembed.Options{InProcess: true})
	ctx := context.Background()
	q, err := natsjs.New[int](ctx, connect(t, srv.Connect), natsjs.Options{
		Stream: stream, FetchWait: 200 * time.Millisecond,
	})
	require.NoError(t, err)
	for i := range n {
		require.NoError(t, q.Publish(ctx, kanban.Message[int]{ID: "m" + strconv.Itoa(i), Key: "k", Payload: i}))
	}
	return q
}

// handledInOrder consumes q one message at a time until n are handled,
// and returns their IDs in the order they were.
func handledInOrder(t *testing.T, q *natsjs.Queue[int], n int) []string {
	t.Helper()
	got := make(chan string, n)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- q.Consume(ctx, func(_ context.Context, d kanban.Delivery[int]) error {
			got <- d.ID
			return nil
		}, kanban.ConsumeOptions{WIP: 1})
	}()
	var order []string
wait:
	for len(order) < n {
		select {
		case id := <-got:
			order = append(order, id)
		case <-time.After(20 * time.Second):
			t.Errorf("handled only %v", order)
			break wait
		}
	}
	cancel()
	require.NoError(t, <-done)
	return order
}

// TestNextConsumerGetsHandedBackMessagesFirst: the messages a stopping
// PerKey consumer hands back come to the consumer started right after it
// before the messages of their key it never pulled. A release was a
// negative acknowledgement with a delay alone, which the server holds
// until its timer next fires, some milliseconds later: a consumer pulling
// meanwhile was given the next messages of the stream first, m3 before m1.
func TestNextConsumerGetsHandedBackMessagesFirst(t *testing.T) {
	const n = 6
	q := keyedMessages(t, "NEXT_FIRST", n)
	opts := kanban.ConsumeOptions{WIP: 3, PerKey: true}
	started := make(chan struct{})
	stopped := make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- q.Consume(ctx, func(_ context.Context, d kanban.Delivery[int]) error {
			if d.ID != "m0" {
				t.Errorf("%s handled by the consumer stopping", d.ID)
				return nil
			}
			close(started)
			<-stopped
			return nil
		}, opts)
	}()
	<-started
	// m1 and m2 pulled, waiting behind m0.
	require.Eventually(t, func() bool { return q.Stats().InFlight == 3 }, 10*time.Second, time.Millisecond)
	cancel()
	close(stopped)
	require.NoError(t, <-done)

	// The next consumer, as the one before, started at once.
	var order []string
	ctx, cancel = context.WithCancel(context.Background())
	defer cancel()
	require.NoError(t, q.Consume(ctx, func(_ context.Context, d kanban.Delivery[int]) error {
		if order = append(order, d.ID); len(order) == n-1 {
			cancel()
		}
		return nil
	}, opts))
	assert.Equal(t, []string{"m1", "m2", "m3", "m4", "m5"}, order)
}
