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

// TestDurableMadeHeadersOnlyWhileConsuming: a durable updated to deliver
// headers only (HeadersOnly) while Consume runs delivers each message
// without its payload. Consume ends with an error naming HeadersOnly and
// hands the message back: it stays in the stream, payload and all. It
// was handed to the runtime, dead-lettered without its payload as one
// that cannot be decoded, and terminated in the work stream.
func TestDurableMadeHeadersOnlyWhileConsuming(t *testing.T) {
	srv := startServer(t, natsembed.Options{InProcess: true})
	ctx := context.Background()
	q, err := natsjs.New[int](ctx, connect(t, srv.Connect), natsjs.Options{Stream: "HDRONLY", FetchWait: 50 * time.Millisecond})
	require.NoError(t, err)
	require.NoError(t, q.Publish(ctx, kanban.Message[int]{ID: "first", Payload: 1}))

	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	handled := make(chan int, 2)
	done := make(chan error, 1)
	go func() {
		done <- q.Consume(cctx, func(_ context.Context, d kanban.Delivery[int]) error {
			handled <- d.Payload
			return nil
		}, kanban.ConsumeOptions{})
	}()
	select {
	case p := <-handled:
		require.Equal(t, 1, p)
	case <-cctx.Done():
		t.Fatal("the first message was not handled")
	}

	cons, err := q.JetStream().Consumer(ctx, "HDRONLY", q.Options().Durable)
	require.NoError(t, err)
	cfg := cons.CachedInfo().Config
	cfg.HeadersOnly = true
	_, err = q.JetStream().UpdateConsumer(ctx, "HDRONLY", cfg)
	require.NoError(t, err)
	require.NoError(t, q.Publish(ctx, kanban.Message[int]{ID: "kept", Payload: 7}))

	err = <-done
	if assert.Error(t, err) {
		assert.Contains(t, err.Error(), "HeadersOnly")
	}
	assert.NoError(t, cctx.Err(), "returned at once")
	assert.Empty(t, handled, "no message handled without its payload")
	b, err := q.Backlog(ctx)
	require.NoError(t, err)
	assert.Equal(t, int64(1), b.Depth, "the message kept")
	assert.Equal(t, int64(0), b.DeadLetters, "nothing dead-lettered")
}
