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

// A durable deleted while Consume runs is created again: Consume had
// pulled from it, with "no responders" every second, until its ctx ended,
// and handled nothing more. The stream deleted too, and made again by New
// (another process starting), is the same.
func TestConsumeCreatesItsDurableAgain(t *testing.T) {
	for _, stream := range []bool{false, true} {
		name := "durable"
		if stream {
			name = "stream"
		}
		t.Run(name, func(t *testing.T) {
			srv := startServer(t, natsembed.Options{InProcess: true})
			nc := connect(t, srv.Connect)
			ctx := context.Background()
			opts := natsjs.Options{Stream: "GONE", FetchWait: 50 * time.Millisecond}
			q, err := natsjs.New[int](ctx, nc, opts)
			require.NoError(t, err)
			handled := make(chan string, 10)
			cctx, cancel := context.WithCancel(ctx)
			done := make(chan error, 1)
			go func() {
				done <- q.Consume(cctx, func(_ context.Context, d kanban.Delivery[int]) error {
					handled <- d.ID
					return nil
				}, kanban.ConsumeOptions{WIP: 3})
			}()
			require.NoError(t, q.Publish(ctx, kanban.Message[int]{ID: "before"}))
			assert.Equal(t, "before", <-handled)

			js, err := jetstream.New(nc)
			require.NoError(t, err)
			if stream {
				require.NoError(t, js.DeleteStream(ctx, "GONE"))
				_, err = natsjs.New[int](ctx, nc, opts)
				require.NoError(t, err)
			} else {
				require.NoError(t, js.DeleteConsumer(ctx, "GONE", "GONE_WORKERS"))
			}
			require.NoError(t, q.Publish(ctx, kanban.Message[int]{ID: "after"}))
			// "before" may come again: its ack can reach the server after
			// the durable was deleted.
			for id := ""; id != "after"; {
				select {
				case id = <-handled:
					require.Contains(t, []string{"before", "after"}, id)
				case <-time.After(30 * time.Second):
					t.Fatal("the message published after the durable went was never handled")
				}
			}
			c, err := js.Consumer(ctx, "GONE", "GONE_WORKERS")
			require.NoError(t, err)
			assert.Equal(t, 3, c.CachedInfo().Config.MaxAckPending, "created again with the WIP of Consume")
			cancel()
			require.NoError(t, <-done)
		})
	}
}
