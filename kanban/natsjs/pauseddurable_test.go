package natsjs_test

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/kanban"
	"github.com/taipattern/taikit/kanban/natsembed"
	"github.com/taipattern/taikit/kanban/natsjs"
)

// TestConsumeWarnsOfAPausedDurable: a durable an operator paused (nats
// consumer pause) stays paused when Consume updates it, as the server
// keeps a pause across updates, and delivers nothing until the pause ends:
// Consume says so at Warn, once, with the time the pause ends. Before,
// Consume pulled from it without a word, and the messages waited unseen.
func TestConsumeWarnsOfAPausedDurable(t *testing.T) {
	srv := startServer(t, natsembed.Options{InProcess: true})
	nc := connect(t, srv.Connect)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	paused := newMsgLog("natsjs: the consumer is paused; it delivers nothing until the pause ends")
	var got slog.Record
	q, err := natsjs.New[int](ctx, nc, natsjs.Options{
		Stream: "PAUSED", FetchWait: 20 * time.Millisecond,
		Logger: slog.New(recordHandler{differs: paused, last: &got}),
	})
	require.NoError(t, err)
	js := q.JetStream()
	_, err = js.CreateOrUpdateConsumer(ctx, "PAUSED", jetstream.ConsumerConfig{
		Durable: "PAUSED_WORKERS", AckPolicy: jetstream.AckExplicitPolicy, FilterSubject: "PAUSED",
	})
	require.NoError(t, err)
	until := time.Now().Add(time.Hour).UTC()
	_, err = js.PauseConsumer(ctx, "PAUSED", "PAUSED_WORKERS", until)
	require.NoError(t, err)
	require.NoError(t, q.Publish(ctx, kanban.Message[int]{ID: "waits", Payload: 1}))

	cctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- q.Consume(cctx, func(context.Context, kanban.Delivery[int]) error {
			t.Error("a paused durable delivered a message")
			return nil
		}, kanban.ConsumeOptions{WIP: 2})
	}()
	paused.wait(t, 1)
	stop()
	require.NoError(t, <-done)
	assert.Equal(t, 1, paused.count(), "warned once")
	got.Attrs(func(a slog.Attr) bool {
		switch a.Key {
		case "consumer":
			assert.Equal(t, "PAUSED_WORKERS", a.Value.String())
		case "pause_until":
			assert.WithinDuration(t, until, a.Value.Time(), time.Second)
		}
		return true
	})

	c, err := js.Consumer(ctx, "PAUSED", "PAUSED_WORKERS")
	require.NoError(t, err)
	assert.True(t, c.CachedInfo().Paused, "the durable is kept paused")
	assert.Equal(t, 2, c.CachedInfo().Config.MaxAckPending, "and updated with the WIP of Consume")
	b, err := q.Backlog(ctx)
	require.NoError(t, err)
	assert.Equal(t, int64(1), b.Depth, "the message waits for the pause to end")
}
