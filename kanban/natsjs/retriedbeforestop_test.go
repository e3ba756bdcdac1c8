package natsjs_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/kanban"
	"github.com/taipattern/taikit/kanban/natsjs"
)

// TestRetriedBeforeTheStopOutlivesARestart: a retry made just before the
// consumer's ctx ends, by a consumer that acknowledged no message (its
// every handler failing), is taken by the server before Consume returns,
// so the server started next on the same store delivers the message
// again after its back-off, not once its lease has run out. The retry is
// sent without waiting for the server's answer, and the consumer had no
// acknowledged message to confirm it with: over a slow link (a proxy that
// holds the retry back for longer than the open pull request runs)
// Consume returned, and the server stopped, before the retry reached it.
func TestRetriedBeforeTheStopOutlivesARestart(t *testing.T) {
	const (
		ackWait = 2 * time.Minute
		backoff = 500 * time.Millisecond
	)
	ctx := context.Background()
	consume := kanban.ConsumeOptions{WIP: 2, MaxAttempts: 5, Backoff: kanban.BackoffFunc(func(int) time.Duration { return backoff })}
	q := stopWhileHeld(t, natsjs.Options{Stream: "RETRIED", AckWait: ackWait}, "-NAK", consume,
		func(context.Context, kanban.Delivery[int]) error { return errors.New("failing") })
	handled := make(chan int, 1)
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- q.Consume(cctx, func(_ context.Context, d kanban.Delivery[int]) error {
			select {
			case handled <- d.Attempt:
			default:
			}
			return nil
		}, consume)
	}()
	select {
	case attempt := <-handled:
		require.Equal(t, 2, attempt, "the message's second delivery")
	case <-time.After(ackWait / 8):
		t.Fatal("the retried message did not come again after its back-off: the retry was lost")
	}
	cancel()
	require.NoError(t, <-done)
	require.NoError(t, q.Shutdown(ctx))
}
