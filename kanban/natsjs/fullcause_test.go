package natsjs_test

import (
	"context"
	"errors"
	"testing"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/kanban"
	"github.com/taipattern/taikit/kanban/natsembed"
	"github.com/taipattern/taikit/kanban/natsjs"
)

// TestFullStreamErrorKeepsTheServersAnswer: the kanban.ErrFull of
// TryPublish, and of a PublishAsync message whose last attempt found the
// stream full, wraps the server's answer too, so that a caller reads its
// API error code (10077, the store failed) and which limit was reached.
func TestFullStreamErrorKeepsTheServersAnswer(t *testing.T) {
	srv := startServer(t, natsembed.Options{InProcess: true})
	ctx := context.Background()
	q, err := natsjs.New[int](ctx, connect(t, srv.Connect), natsjs.Options{
		Stream: "FULL_CAUSE", Capacity: 1, AsyncAttempts: 1,
	})
	require.NoError(t, err)
	require.NoError(t, q.Publish(ctx, kanban.Message[int]{ID: "a", Payload: 1}))

	check := func(name string, err error) {
		t.Helper()
		require.ErrorIs(t, err, kanban.ErrFull, name)
		var api *jetstream.APIError
		if assert.True(t, errors.As(err, &api), "%s: %v wraps no *jetstream.APIError", name, err) {
			assert.Equal(t, jetstream.ErrorCode(10077), api.ErrorCode, name)
			assert.Contains(t, api.Description, "maximum messages exceeded", name)
		}
		// The server answers 503, but a full stream is not out of reach.
		assert.False(t, natsjs.Unreachable(err), name)
	}
	check("TryPublish", q.TryPublish(ctx, kanban.Message[int]{ID: "b", Payload: 2}))

	require.NoError(t, q.PublishAsync(ctx, kanban.Message[int]{ID: "c", Payload: 3}))
	check("Flush", q.Flush(ctx))
	require.NoError(t, q.Shutdown(ctx))
}
