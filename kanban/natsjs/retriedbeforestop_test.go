package natsjs_test

import (
	"bytes"
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/kanban"
	"github.com/taipattern/taikit/kanban/natsembed"
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
		fetchWait = 300 * time.Millisecond
		lag       = 5 * fetchWait // longer than the pull request open as the consumer stops
		ackWait   = 2 * time.Minute
		backoff   = 500 * time.Millisecond
	)
	dir := t.TempDir()
	ctx := context.Background()
	srv, err := natsembed.Start(ctx, natsembed.Options{StoreDir: dir})
	require.NoError(t, err)
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// The first chunk that carries the retry stops the consumer, and
	// reaches the server only lag later; all the client sends after it
	// waits behind it.
	var held atomic.Bool
	proxied := startProxy(t, srv.ClientURL(), func(b []byte) {
		if bytes.Contains(b, []byte("-NAK")) && !held.Swap(true) {
			cancel()
			time.Sleep(lag)
		}
	}, nil)
	nc := connect(t, func(o ...nats.Option) (*nats.Conn, error) {
		return nats.Connect(proxied, append(o, nats.NoReconnect())...)
	})
	opts := natsjs.Options{Stream: "RETRIED", AckWait: ackWait, FetchWait: fetchWait, PublishTimeout: 4 * lag}
	q, err := natsjs.New[int](ctx, nc, opts)
	require.NoError(t, err)
	require.NoError(t, q.Publish(ctx, kanban.Message[int]{ID: "m0", Payload: 0}))
	consumeOpts := kanban.ConsumeOptions{WIP: 2, MaxAttempts: 5, Backoff: kanban.BackoffFunc(func(int) time.Duration { return backoff })}
	done := make(chan error, 1)
	go func() {
		done <- q.Consume(cctx, func(context.Context, kanban.Delivery[int]) error {
			return errors.New("failing")
		}, consumeOpts)
	}()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(30 * time.Second):
		t.Fatal("the consumer did not stop")
	}
	require.True(t, held.Load(), "the retry was not sent")
	require.NoError(t, q.Shutdown(ctx))
	nc.Close()
	require.NoError(t, srv.Shutdown(ctx))

	srv = startServer(t, natsembed.Options{StoreDir: dir, InProcess: true})
	q, err = natsjs.New[int](ctx, connect(t, srv.Connect), opts)
	require.NoError(t, err)
	handled := make(chan int, 1)
	cctx, cancel = context.WithCancel(ctx)
	defer cancel()
	go func() {
		done <- q.Consume(cctx, func(_ context.Context, d kanban.Delivery[int]) error {
			select {
			case handled <- d.Attempt:
			default:
			}
			return nil
		}, consumeOpts)
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
