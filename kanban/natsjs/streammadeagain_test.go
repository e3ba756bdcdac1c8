package natsjs_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/kanban"
	"github.com/taipattern/taikit/kanban/natsembed"
	"github.com/taipattern/taikit/kanban/natsjs"
)

// TestStoppingConsumerSettlesNothingOfAStreamMadeAgain: a consumer that
// acknowledged a message, its stream then deleted and made again (New)
// and its durable made again by another process's Consume, settles
// nothing of the new stream as it stops. It acknowledged its last
// message again, to confirm the settlements sent before the stop, and
// that acknowledgement, naming the message by its stream sequence
// number, settled the message the new stream numbered so: one published
// since, handled by the other process, gone from the stream while its
// handler ran, and not retried when it failed.
func TestStoppingConsumerSettlesNothingOfAStreamMadeAgain(t *testing.T) {
	t.Run("embedded", func(t *testing.T) {
		settlesNothingOfAStreamMadeAgain(t, startServer(t, natsembed.Options{InProcess: true}).Connect)
	})
	t.Run("debian", func(t *testing.T) { settlesNothingOfAStreamMadeAgain(t, debianServer(t)) })
}

func settlesNothingOfAStreamMadeAgain(t *testing.T, dial func(...nats.Option) (*nats.Conn, error)) {
	ctx := context.Background()
	opts := natsjs.Options{Stream: "REMADE", FetchWait: 50 * time.Millisecond}
	a, err := natsjs.New[string](ctx, connect(t, dial), opts)
	require.NoError(t, err)
	require.NoError(t, a.Publish(ctx, kanban.Message[string]{ID: "before", Payload: "before"}))
	require.NoError(t, a.Publish(ctx, kanban.Message[string]{ID: "blocker", Payload: "blocker"}))

	// "before" is acknowledged; "blocker" holds the consumer's one slot,
	// so that it pulls nothing while the stream and its durable go and
	// are made again.
	started := make(chan string, 4)
	unblock := make(chan struct{})
	actx, acancel := context.WithCancel(ctx)
	adone := make(chan error, 1)
	go func() {
		adone <- a.Consume(actx, func(_ context.Context, d kanban.Delivery[string]) error {
			started <- d.ID
			if d.ID == "blocker" {
				<-unblock
				return errors.New("again")
			}
			return nil
		}, kanban.ConsumeOptions{WIP: 1})
	}()
	require.Equal(t, "before", <-started)
	require.Equal(t, "blocker", <-started)

	js, err := jetstream.New(connect(t, dial))
	require.NoError(t, err)
	require.NoError(t, js.DeleteStream(ctx, "REMADE"))
	b, err := natsjs.New[string](ctx, connect(t, dial), opts)
	require.NoError(t, err)
	require.NoError(t, b.Publish(ctx, kanban.Message[string]{ID: "x", Payload: "x"}))
	bstarted := make(chan string, 4)
	bfail := make(chan struct{})
	bctx, bcancel := context.WithCancel(ctx)
	bdone := make(chan error, 1)
	go func() {
		bdone <- b.Consume(bctx, func(_ context.Context, d kanban.Delivery[string]) error {
			bstarted <- d.ID
			<-bfail
			return errors.New("not yet")
		}, kanban.ConsumeOptions{WIP: 1})
	}()
	require.Equal(t, "x", <-bstarted) // the number "before" had
	close(unblock)
	// Its failure retried before the stop, without waiting for an answer.
	require.Eventually(t, func() bool { return a.Stats().InFlight == 0 }, 10*time.Second, time.Millisecond)
	acancel()
	require.NoError(t, <-adone)
	bl, err := b.Backlog(ctx)
	require.NoError(t, err)
	assert.Equal(t, int64(1), bl.Depth, "x, being handled, is still in the stream")
	close(bfail)
	bcancel()
	require.NoError(t, <-bdone)
	bl, err = b.Backlog(ctx)
	require.NoError(t, err)
	assert.Equal(t, int64(1), bl.Depth, "x, retried, is still in the stream")
}
