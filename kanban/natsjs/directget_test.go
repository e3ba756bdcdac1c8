package natsjs_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/kanban"
	"github.com/taipattern/taikit/kanban/natsembed"
	"github.com/taipattern/taikit/kanban/natsjs"
)

// TestDeadLettersFromADirectGetStream: a dead-letter stream that allows
// direct gets (one an administrator made or changed so) answers reads
// with the server's Nats-Stream, Nats-Sequence, Nats-Subject and
// Nats-Time-Stamp headers. They are not the message's: a dead letter
// lists its own headers alone, and a redrive hands the handler the
// message's headers as published.
func TestDeadLettersFromADirectGetStream(t *testing.T) {
	srv := startServer(t, natsembed.Options{InProcess: true})
	ctx := context.Background()
	q, err := natsjs.New[int](ctx, connect(t, srv.Connect), natsjs.Options{Stream: "DIRECT", FetchWait: 100 * time.Millisecond})
	require.NoError(t, err)
	require.NoError(t, q.Publish(ctx, kanban.Message[int]{ID: "m", Key: "k", Payload: 7, Headers: kanban.Header{"Tenant": "t1"}}))
	refuseAll(t, q, 1)

	dlq, err := q.JetStream().Stream(ctx, q.Options().DeadLetterStream)
	require.NoError(t, err)
	cfg := dlq.CachedInfo().Config
	cfg.AllowDirect = true
	_, err = q.JetStream().UpdateStream(ctx, cfg)
	require.NoError(t, err)

	want := kanban.Header{"Tenant": "t1"}
	dls, err := q.DeadLetters(ctx)
	require.NoError(t, err)
	require.Len(t, dls, 1)
	assert.Equal(t, want, dls[0].Headers, "DeadLetters")
	assert.Equal(t, "m", dls[0].ID)
	page, err := q.ListDeadLetters(ctx, kanban.DeadLetterQuery{Newest: true})
	require.NoError(t, err)
	require.Len(t, page.Letters, 1)
	assert.Equal(t, want, page.Letters[0].Headers, "ListDeadLetters")

	n, err := q.RedriveDeadLetters(ctx, kanban.DeadLetterFilter{All: true})
	require.NoError(t, err)
	require.Equal(t, 1, n)
	cctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	var got kanban.Header
	require.NoError(t, q.Consume(cctx, func(_ context.Context, d kanban.Delivery[int]) error {
		got = d.Headers
		cancel()
		return nil
	}, kanban.ConsumeOptions{}))
	assert.Equal(t, want, got, "the redriven message's headers")
	assert.False(t, errors.Is(cctx.Err(), context.DeadlineExceeded), "not handled")
}
