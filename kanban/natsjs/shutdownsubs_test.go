package natsjs_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/kanban"
	"github.com/taipattern/taikit/kanban/natsembed"
	"github.com/taipattern/taikit/kanban/natsjs"
)

// TestShutdownReleasesTheAckSubscription: the subscription PublishAsync's
// acknowledgements come to is ended by Shutdown. It lived on until the
// connection closed, one more for every queue a long-lived connection
// opened and shut down.
func TestShutdownReleasesTheAckSubscription(t *testing.T) {
	srv := startServer(t, natsembed.Options{InProcess: true})
	nc := connect(t, srv.Connect)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cycle := func(i int) {
		q, err := natsjs.New[int](ctx, nc, natsjs.Options{Stream: "ASYNC_SUBS_" + strconv.Itoa(i)})
		require.NoError(t, err)
		// The first goes as a probe, on a subscription of its own; once
		// it is answered the next go through the client.
		for n := range 3 {
			require.NoError(t, q.PublishAsync(ctx, kanban.Message[int]{ID: strconv.Itoa(n), Payload: n}))
			require.NoError(t, q.Flush(ctx))
		}
		require.Equal(t, int64(3), q.Stats().Published)
		require.NoError(t, q.Shutdown(ctx))
	}
	cycle(0)
	before := nc.NumSubscriptions()
	for i := 1; i <= 5; i++ {
		cycle(i)
	}
	require.Equal(t, before, nc.NumSubscriptions(), "subscriptions left by queues shut down")
}
