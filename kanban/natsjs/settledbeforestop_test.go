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

// TestSettledBeforeTheStopOutlivesARestart: a message its handler settles
// just before the consumer's ctx ends — acknowledged, or dead-lettered
// and terminated — is settled for the server started next on the same
// store, however soon the server stops after Consume returns. Such a
// settlement is sent without waiting for the server's answer, and
// nothing after it waited for one: over a slow link (here a proxy that
// holds the settlement back for longer than the open pull request runs)
// Consume returned, and the server stopped, before the settlement reached
// it, and the message was delivered again after the restart.
func TestSettledBeforeTheStopOutlivesARestart(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error  // the handler's
		mark string // the settlement the proxy holds back
		dead int64  // dead letters after the restart
	}{
		{name: "acknowledged", mark: "+ACK"},
		{name: "dead-lettered", err: errors.New("failing"), mark: "+TERM", dead: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			opts := natsjs.Options{Stream: "SETTLED", AckWait: time.Minute}
			q := stopWhileHeld(t, opts, tc.mark, kanban.ConsumeOptions{WIP: 2, MaxAttempts: 1},
				func(context.Context, kanban.Delivery[int]) error { return tc.err })
			b, err := q.Backlog(ctx)
			require.NoError(t, err)
			require.Zero(t, b.Depth, "messages in the work stream after the restart")
			require.Equal(t, tc.dead, b.DeadLetters, "dead letters after the restart")
			require.NoError(t, q.Shutdown(ctx))
		})
	}
}

// stopWhileHeld publishes one message to a queue of opts on a server of
// its own and consumes it with handler and consume until the first chunk
// the client sends that holds mark (a settlement's body) stops the
// consumer: that chunk, and all the client sends after it, reach the
// server only some time later, longer than the pull request open as the
// consumer stops runs. Once Consume has returned, the queue, its
// connection and the server are shut down, and a server started on the
// same store; stopWhileHeld returns a queue of opts on it.
func stopWhileHeld(t *testing.T, opts natsjs.Options, mark string, consume kanban.ConsumeOptions,
	handler func(context.Context, kanban.Delivery[int]) error) *natsjs.Queue[int] {
	t.Helper()
	const (
		fetchWait = 300 * time.Millisecond
		lag       = 5 * fetchWait // longer than the pull request open as the consumer stops
	)
	opts.FetchWait, opts.PublishTimeout = fetchWait, 4*lag
	dir := t.TempDir()
	ctx := context.Background()
	srv, err := natsembed.Start(ctx, natsembed.Options{StoreDir: dir})
	require.NoError(t, err)
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var held atomic.Bool
	proxied := startProxy(t, srv.ClientURL(), func(b []byte) {
		if bytes.Contains(b, []byte(mark)) && !held.Swap(true) {
			cancel()
			time.Sleep(lag)
		}
	}, nil)
	nc := connect(t, func(o ...nats.Option) (*nats.Conn, error) {
		return nats.Connect(proxied, append(o, nats.NoReconnect())...)
	})
	q, err := natsjs.New[int](ctx, nc, opts)
	require.NoError(t, err)
	require.NoError(t, q.Publish(ctx, kanban.Message[int]{ID: "m0", Payload: 0}))
	// A WIP of 2 or more keeps the pull request that delivered m0 open
	// while m0 is handled: no request is sent after the settlement, whose
	// expiry would come only once the server had read it.
	require.GreaterOrEqual(t, consume.WIP, 2)
	done := make(chan error, 1)
	go func() { done <- q.Consume(cctx, handler, consume) }()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(30 * time.Second):
		t.Fatal("the consumer did not stop")
	}
	require.True(t, held.Load(), "the settlement was not sent")
	require.NoError(t, q.Shutdown(ctx))
	nc.Close()
	require.NoError(t, srv.Shutdown(ctx))

	srv = startServer(t, natsembed.Options{StoreDir: dir, InProcess: true})
	q, err = natsjs.New[int](ctx, connect(t, srv.Connect), opts)
	require.NoError(t, err)
	return q
}
