package natsjs_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/kanban"
	"github.com/taipattern/taikit/kanban/natsembed"
	"github.com/taipattern/taikit/kanban/natsjs"
)

// TestDedupAcrossARestart: a server restarted on its store remembers the
// IDs of the messages its work stream still holds, but not of those
// handled (acknowledged, so removed) before it stopped: a message
// published again with such an ID is stored, and handled, again, within
// DedupWindow. Without the restart it is a duplicate.
func TestDedupAcrossARestart(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	srv, err := natsembed.Start(ctx, natsembed.Options{StoreDir: dir, Token: restartToken})
	require.NoError(t, err)
	port := srv.Port()
	defer func() { assert.NoError(t, srv.Shutdown(context.Background())) }()
	nc := connect(t, func(...nats.Option) (*nats.Conn, error) {
		return nats.Connect(srv.ClientURL(), nats.MaxReconnects(-1), nats.ReconnectWait(20*time.Millisecond))
	})
	q, err := natsjs.New[int](ctx, nc, natsjs.Options{Stream: "DEDUP", FetchWait: 50 * time.Millisecond})
	require.NoError(t, err)
	require.NoError(t, q.Publish(ctx, kanban.Message[int]{ID: "handled"}))
	cctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- q.Consume(cctx, func(context.Context, kanban.Delivery[int]) error {
			stop()
			return nil
		}, kanban.ConsumeOptions{WIP: 1})
	}()
	require.NoError(t, <-done)
	require.NoError(t, q.Publish(ctx, kanban.Message[int]{ID: "kept"}))
	require.NoError(t, q.Publish(ctx, kanban.Message[int]{ID: "handled"}))
	require.NoError(t, q.Publish(ctx, kanban.Message[int]{ID: "kept"}))
	assert.Equal(t, kanban.QueueStats{Published: 2, Duplicates: 2}, pick(q.Stats()), "both remembered while the server runs")

	require.NoError(t, srv.Shutdown(ctx))
	srv, err = natsembed.Start(ctx, natsembed.Options{StoreDir: dir, Port: port, Token: restartToken})
	require.NoError(t, err)

	require.NoError(t, q.Publish(ctx, kanban.Message[int]{ID: "kept"}))
	assert.Equal(t, kanban.QueueStats{Published: 2, Duplicates: 3}, pick(q.Stats()), "the message held is remembered")
	require.NoError(t, q.Publish(ctx, kanban.Message[int]{ID: "handled"}))
	assert.Equal(t, kanban.QueueStats{Published: 3, Duplicates: 3}, pick(q.Stats()), "the message handled is forgotten")
	b, err := q.Backlog(ctx)
	require.NoError(t, err)
	assert.Equal(t, int64(2), b.Depth, "and stored again")
}

// pick keeps the publishing counts of s.
func pick(s kanban.QueueStats) kanban.QueueStats {
	return kanban.QueueStats{Published: s.Published, Duplicates: s.Duplicates}
}
