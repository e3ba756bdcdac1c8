package natsjs_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/kanban"
	"github.com/taipattern/taikit/kanban/natsembed"
	"github.com/taipattern/taikit/kanban/natsjs"
)

// TestNewKeepsStreamSettingsItDoesNotOwn: New updating streams an
// administrator gave settings the queue does not set (a description,
// compression, direct gets, metadata, a per-subject limit) keeps them, and
// still sets its own (here Capacity). Before, New sent its whole
// configuration, and the update reset every setting it left out.
func TestNewKeepsStreamSettingsItDoesNotOwn(t *testing.T) {
	srv := startServer(t, natsembed.Options{InProcess: true})
	nc := connect(t, srv.Connect)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := natsjs.New[int](ctx, nc, natsjs.Options{Stream: "ADMIN"})
	require.NoError(t, err)
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	for _, name := range []string{"ADMIN", "ADMIN_DLQ"} {
		s, err := js.Stream(ctx, name)
		require.NoError(t, err)
		cfg := s.CachedInfo().Config
		cfg.Description = "orders waiting for the warehouse"
		cfg.Compression = jetstream.S2Compression
		cfg.AllowDirect = true
		cfg.Metadata = map[string]string{"owner": "warehouse"}
		_, err = js.UpdateStream(ctx, cfg)
		require.NoError(t, err)
	}

	_, err = natsjs.New[int](ctx, nc, natsjs.Options{Stream: "ADMIN", Capacity: 500, DeadLetterLimit: 50})
	require.NoError(t, err)
	for name, limit := range map[string]int64{"ADMIN": 501, "ADMIN_DLQ": 50} { // the work stream holds the keeper too
		s, err := js.Stream(ctx, name)
		require.NoError(t, err)
		cfg := s.CachedInfo().Config
		assert.Equal(t, "orders waiting for the warehouse", cfg.Description, name)
		assert.Equal(t, jetstream.S2Compression, cfg.Compression, name)
		assert.True(t, cfg.AllowDirect, name)
		assert.Equal(t, "warehouse", cfg.Metadata["owner"], name)
		assert.Equal(t, limit, cfg.MaxMsgs, "%s: the queue's own setting is updated", name)
	}
}

// TestConsumeTakesADurableWithItsOwnMaxWaiting: a durable given a
// MaxWaiting other than the server's default (by an administrator, or by
// another client) is updated by Consume and delivers, keeping its
// MaxWaiting, which the server lets no update change. Before, Consume
// asked for the default MaxWaiting, and the server refused the update:
// Consume returned "max waiting can not be updated" and handled nothing.
func TestConsumeTakesADurableWithItsOwnMaxWaiting(t *testing.T) {
	srv := startServer(t, natsembed.Options{InProcess: true})
	nc := connect(t, srv.Connect)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	q, err := natsjs.New[int](ctx, nc, natsjs.Options{Stream: "WAITING", FetchWait: 50 * time.Millisecond})
	require.NoError(t, err)
	js := q.JetStream()
	_, err = js.CreateOrUpdateConsumer(ctx, "WAITING", jetstream.ConsumerConfig{
		Durable: "WAITING_WORKERS", AckPolicy: jetstream.AckExplicitPolicy, FilterSubject: "WAITING",
		MaxWaiting: 64, Description: "the warehouse's workers",
	})
	require.NoError(t, err)
	require.NoError(t, q.Publish(ctx, kanban.Message[int]{ID: "m", Payload: 1}))

	cctx, stop := context.WithCancel(ctx)
	defer stop()
	handled := make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		done <- q.Consume(cctx, func(_ context.Context, d kanban.Delivery[int]) error {
			handled <- d.ID
			return nil
		}, kanban.ConsumeOptions{WIP: 3})
	}()
	select {
	case id := <-handled:
		assert.Equal(t, "m", id)
	case err := <-done:
		t.Fatalf("Consume returned before handling the message: %v", err)
	}
	stop()
	require.NoError(t, <-done)
	c, err := js.Consumer(ctx, "WAITING", "WAITING_WORKERS")
	require.NoError(t, err)
	assert.Equal(t, 64, c.CachedInfo().Config.MaxWaiting, "kept")
	assert.Equal(t, 3, c.CachedInfo().Config.MaxAckPending, "updated with the WIP of Consume")
}

// TestOptionsValidatePublishTimeoutTooShort: a PublishTimeout under 1ms,
// which no acknowledgement can beat, is refused, naming it; 1ms is taken.
// Before, a PublishTimeout of 1ns was taken, and every publish failed.
func TestOptionsValidatePublishTimeoutTooShort(t *testing.T) {
	for _, d := range []time.Duration{time.Nanosecond, time.Millisecond - 1} {
		err := natsjs.Options{PublishTimeout: d}.Validate()
		require.Error(t, err, "%v", d)
		assert.ErrorContains(t, err, "natsjs: invalid PublishTimeout "+d.String())
		assert.ErrorContains(t, err, "at least 1ms")
	}
	assert.NoError(t, natsjs.Options{PublishTimeout: time.Millisecond, AsyncAttempts: 1}.Validate())
}
