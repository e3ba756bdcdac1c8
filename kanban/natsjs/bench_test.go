package natsjs_test

import (
	"context"
	"strconv"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/kanban"
	"github.com/taipattern/taikit/kanban/natsembed"
	"github.com/taipattern/taikit/kanban/natsjs"
)

// inProcessServer starts an in-process server and connects to it.
func inProcessServer(tb testing.TB) *nats.Conn {
	tb.Helper()
	srv, err := natsembed.Start(context.Background(), natsembed.Options{InProcess: true})
	require.NoError(tb, err)
	tb.Cleanup(func() { assert.NoError(tb, srv.Shutdown(context.Background())) })
	nc, err := srv.Connect()
	require.NoError(tb, err)
	tb.Cleanup(nc.Close)
	return nc
}

// benchmarkPublish publishes b.N messages of a few bytes, one at a time,
// with send, to a memory-stored queue of an in-process server.
func benchmarkPublish(b *testing.B, send func(*natsjs.Queue[int], context.Context, kanban.Message[int]) error) {
	nc := inProcessServer(b)
	ctx := context.Background()
	q, err := natsjs.New[int](ctx, nc, natsjs.Options{Stream: "BENCH", Storage: natsjs.MemoryStorage, Capacity: 1 << 40})
	require.NoError(b, err)
	b.Cleanup(func() { require.NoError(b, q.Shutdown(ctx)) })
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		if err := send(q, ctx, kanban.Message[int]{ID: strconv.Itoa(i), Key: "k", Payload: i}); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkPublish(b *testing.B) { benchmarkPublish(b, (*natsjs.Queue[int]).Publish) }

func BenchmarkTryPublish(b *testing.B) { benchmarkPublish(b, (*natsjs.Queue[int]).TryPublish) }
