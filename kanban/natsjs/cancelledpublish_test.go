package natsjs_test

import (
	"context"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/kanban"
	"github.com/taipattern/taikit/kanban/natsembed"
	"github.com/taipattern/taikit/kanban/natsjs"
)

// A Publish or TryPublish whose ctx has ended stores nothing: it returns
// ctx's error, as a Memory queue does, and the caller can take that error
// for "not stored". The first publishes of a Queue go as probes, whose
// turn a done ctx could win.
func TestPublishWithEndedContextStoresNothing(t *testing.T) {
	srv := startServer(t, natsembed.Options{InProcess: true})
	nc := connect(t, srv.Connect)
	ctx := context.Background()
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	for i := range 20 {
		q, err := natsjs.New[int](ctx, nc, natsjs.Options{Stream: "ENDED" + strconv.Itoa(i), Storage: natsjs.MemoryStorage})
		require.NoError(t, err)
		require.ErrorIs(t, q.Publish(cancelled, kanban.Message[int]{ID: "a", Payload: 1}), context.Canceled)
		require.ErrorIs(t, q.TryPublish(cancelled, kanban.Message[int]{ID: "b", Payload: 1}), context.Canceled)
		b, err := q.Backlog(ctx)
		require.NoError(t, err)
		require.Zero(t, b.Depth, "queue %d", i)
		require.Zero(t, q.Stats().Published)
	}
}
