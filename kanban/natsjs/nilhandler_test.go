package natsjs_test

import (
	"context"
	"testing"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/kanban"
	"github.com/taipattern/taikit/kanban/natsembed"
	"github.com/taipattern/taikit/kanban/natsjs"
)

// Consume refuses a nil handler at once, as a Memory queue does: without
// creating or changing the durable every process shares, and also when
// its ctx has already ended.
func TestConsumeRefusesNilHandler(t *testing.T) {
	srv := startServer(t, natsembed.Options{InProcess: true})
	nc := connect(t, srv.Connect)
	ctx := context.Background()
	q, err := natsjs.New[int](ctx, nc, natsjs.Options{Stream: "NILHANDLER"})
	require.NoError(t, err)

	require.Error(t, q.Consume(ctx, nil, kanban.ConsumeOptions{WIP: 3}))
	_, err = q.JetStream().Consumer(ctx, "NILHANDLER", q.Options().Durable)
	assert.ErrorIs(t, err, jetstream.ErrConsumerNotFound, "the durable is left alone")

	ended, cancel := context.WithCancel(ctx)
	cancel()
	require.Error(t, q.Consume(ended, nil, kanban.ConsumeOptions{}))
}

// A Consume whose ctx has already ended returns without creating or
// changing the durable every process shares.
func TestConsumeWithEndedContextLeavesTheDurable(t *testing.T) {
	srv := startServer(t, natsembed.Options{InProcess: true})
	nc := connect(t, srv.Connect)
	ctx := context.Background()
	q, err := natsjs.New[int](ctx, nc, natsjs.Options{Stream: "ENDEDCONSUME"})
	require.NoError(t, err)
	ended, cancel := context.WithCancel(ctx)
	cancel()
	h := func(context.Context, kanban.Delivery[int]) error { return nil }
	for range 20 {
		require.NoError(t, q.Consume(ended, h, kanban.ConsumeOptions{WIP: 3}))
	}
	_, err = q.JetStream().Consumer(ctx, "ENDEDCONSUME", q.Options().Durable)
	assert.ErrorIs(t, err, jetstream.ErrConsumerNotFound, "the durable is left alone")
}
