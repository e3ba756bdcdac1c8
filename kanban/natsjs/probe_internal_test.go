package natsjs

import (
	"context"
	"runtime"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/kanban"
	"github.com/taipattern/taikit/kanban/natsembed"
)

// bytesPerRun returns the bytes the process allocates, on average, in
// each of runs calls of f, after one call to warm up.
func bytesPerRun(runs int, f func()) uint64 {
	f()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range runs {
		f()
	}
	runtime.ReadMemStats(&after)
	return (after.TotalAlloc - before.TotalAlloc) / uint64(runs)
}

// TestProbeAllocatesLittle: a probed request waits for its one reply
// on a subscription of a few slots. A synchronous subscription's
// buffer is the connection's SubChanLen, 65,536 slots, half a megabyte
// allocated by every Backlog (three probes) and every dead-letter call:
// a service reading the backlog each second churned its heap.
func TestProbeAllocatesLittle(t *testing.T) {
	nc := inProcessConn(t)
	ctx := context.Background()
	q, err := New[int](ctx, nc, Options{Stream: "PROBE_BYTES"})
	require.NoError(t, err)
	t.Cleanup(func() { assert.NoError(t, q.Shutdown(ctx)) })
	require.NoError(t, q.Publish(ctx, kanban.Message[int]{ID: "a"}))
	n := bytesPerRun(20, func() {
		_, err := q.Backlog(ctx)
		require.NoError(t, err)
	})
	// The server's side of the seven requests, in process, and the
	// client's; a synchronous subscription alone is 512 KiB.
	assert.Less(t, n, uint64(256<<10), "bytes allocated by one Backlog")
	t.Logf("%d bytes a Backlog", n)
}

// TestProbeEndsWhenTheConnectionCloses: a probe waiting for its reply
// returns nats.ErrConnectionClosed as soon as the connection closes, as
// a request does, not when its ctx ends; and "no responders" is
// nats.ErrNoResponders.
func TestProbeEndsWhenTheConnectionCloses(t *testing.T) {
	srv, err := natsembed.Start(context.Background(), natsembed.Options{InProcess: true})
	require.NoError(t, err)
	t.Cleanup(func() { assert.NoError(t, srv.Shutdown(context.Background())) })
	nc, err := srv.Connect()
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	other, err := srv.Connect()
	require.NoError(t, err)
	t.Cleanup(other.Close)

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, err = probeRequest(ctx, nc, &nats.Msg{Subject: "NOBODY"})
	require.ErrorIs(t, err, nats.ErrNoResponders)

	// The one listening closes the prober's connection instead of replying.
	sub, err := other.Subscribe("SILENT", func(*nats.Msg) { nc.Close() })
	require.NoError(t, err)
	require.NoError(t, other.Flush())
	_, err = probeRequest(ctx, nc, &nats.Msg{Subject: "SILENT"})
	require.ErrorIs(t, err, nats.ErrConnectionClosed)
	require.NoError(t, ctx.Err(), "ended by the close, not by ctx")
	require.NoError(t, sub.Unsubscribe())

	_, err = probeRequest(ctx, nc, &nats.Msg{Subject: "SILENT"})
	require.ErrorIs(t, err, nats.ErrConnectionClosed, "on a closed connection")
}
