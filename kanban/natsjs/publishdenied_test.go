package natsjs_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/kanban"
	"github.com/taipattern/taikit/kanban/natsjs"
)

// TestPublishNotPermitted: Publish and TryPublish on a connection not
// permitted to publish to the work subject fail at once with the
// server's refusal, naming the subject, each time; they waited out
// PublishTimeout (an hour here) and failed with a bare timeout. A
// permitted connection publishes as before.
func TestPublishNotPermitted(t *testing.T) {
	ns := startUsersServer(t, user("admin"), user("reader", "$JS.API.>", "$JS.ACK.>"))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	opts := natsjs.Options{Stream: "NOPUB", PublishTimeout: time.Hour, AsyncAttempts: 1}
	admin, err := natsjs.New[int](ctx, connectAs(t, ns, "admin", &violations{}), opts)
	require.NoError(t, err)
	q, err := natsjs.New[int](ctx, connectAs(t, ns, "reader", &violations{}), opts)
	require.NoError(t, err)
	for i, publish := range []func(context.Context, kanban.Message[int]) error{q.Publish, q.TryPublish, q.Publish} {
		err := publish(ctx, kanban.Message[int]{ID: "a", Payload: i})
		require.ErrorIs(t, err, nats.ErrPermissionViolation, "call %d", i)
		assert.Contains(t, err.Error(), `"NOPUB"`)
		assert.Contains(t, err.Error(), "message a")
	}
	require.NoError(t, ctx.Err())
	assert.Zero(t, q.Stats().Published)

	for i := range 3 {
		require.NoError(t, admin.Publish(ctx, kanban.Message[int]{ID: string(rune('a' + i)), Payload: i}))
	}
	require.NoError(t, admin.TryPublish(ctx, kanban.Message[int]{ID: "a"}))
	st := admin.Stats()
	assert.Equal(t, int64(3), st.Published)
	assert.Equal(t, int64(1), st.Duplicates)
	b, err := admin.Backlog(ctx)
	require.NoError(t, err)
	assert.Equal(t, int64(3), b.Depth)
	require.NoError(t, q.Shutdown(ctx))
	require.NoError(t, admin.Shutdown(ctx))
}

// TestPublishAsyncNotPermitted: PublishAsync on a connection not
// permitted to publish to the work subject fails at once with the
// server's refusal, naming the subject, each time; it was accepted, and
// its acknowledgement waited out PublishTimeout (an hour here) at every
// attempt. Once a publish is answered, PublishAsync goes as before.
func TestPublishAsyncNotPermitted(t *testing.T) {
	ns := startUsersServer(t, user("admin"), user("reader", "$JS.API.>", "$JS.ACK.>"))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	opts := natsjs.Options{Stream: "NOPUB_ASYNC", PublishTimeout: time.Hour, AsyncAttempts: 1}
	admin, err := natsjs.New[int](ctx, connectAs(t, ns, "admin", &violations{}), opts)
	require.NoError(t, err)
	q, err := natsjs.New[int](ctx, connectAs(t, ns, "reader", &violations{}), opts)
	require.NoError(t, err)
	for i := range 2 {
		err := q.PublishAsync(ctx, kanban.Message[int]{ID: "a", Payload: i})
		require.ErrorIs(t, err, nats.ErrPermissionViolation, "call %d", i)
		assert.Contains(t, err.Error(), `"NOPUB_ASYNC"`)
		assert.Contains(t, err.Error(), "message a")
	}
	require.NoError(t, q.Flush(ctx), "nothing accepted")
	require.NoError(t, ctx.Err())
	assert.Zero(t, q.Stats().Published)

	for i := range 3 {
		require.NoError(t, admin.PublishAsync(ctx, kanban.Message[int]{ID: string(rune('a' + i)), Payload: i}))
	}
	require.NoError(t, admin.PublishAsync(ctx, kanban.Message[int]{ID: "a"}))
	require.NoError(t, admin.Flush(ctx))
	st := admin.Stats()
	assert.Equal(t, int64(3), st.Published)
	assert.Equal(t, int64(1), st.Duplicates)
	b, err := admin.Backlog(ctx)
	require.NoError(t, err)
	assert.Equal(t, int64(3), b.Depth)
	require.NoError(t, q.Shutdown(ctx))
	require.NoError(t, admin.Shutdown(ctx))
}
