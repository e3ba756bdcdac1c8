package natsjs_test

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/kanban"
	"github.com/taipattern/taikit/kanban/natsembed"
	"github.com/taipattern/taikit/kanban/natsjs"
)

// onRepublish is a slog handler that runs do, once, when the queue logs
// its first re-publish: the log is written before the re-publish can be
// sent, on the client goroutine that times the acknowledgement out, so do
// runs before the repeat reaches the server.
type onRepublish struct {
	once *sync.Once
	do   func()
}

func (h onRepublish) Enabled(context.Context, slog.Level) bool { return true }
func (h onRepublish) Handle(_ context.Context, r slog.Record) error {
	if r.Message == "natsjs: re-publishing" {
		h.once.Do(h.do)
	}
	return nil
}
func (h onRepublish) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h onRepublish) WithGroup(string) slog.Handler      { return h }

// TestPublishAsyncLostAckCountsPublished loses the acknowledgement of a
// PublishAsync message the stream stored (the stream sends none), so the
// queue sends it again and the stream answers that repeat as a duplicate
// of its own first send: the message was stored once, and Stats counts it
// published, not a duplicate. A later publish of the same ID by someone
// else is a duplicate still.
func TestPublishAsyncLostAckCountsPublished(t *testing.T) {
	srv := startServer(t, natsembed.Options{InProcess: true})
	nc := connect(t, srv.Connect)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	admin, err := jetstream.New(connect(t, srv.Connect))
	require.NoError(t, err)
	setNoAck := func(noAck bool) {
		s, err := admin.Stream(ctx, "LOSTACK")
		require.NoError(t, err)
		cfg := s.CachedInfo().Config
		cfg.NoAck = noAck
		_, err = admin.UpdateStream(ctx, cfg)
		require.NoError(t, err)
	}
	var once sync.Once
	q, err := natsjs.New[int](ctx, nc, natsjs.Options{
		Stream: "LOSTACK", PublishTimeout: 200 * time.Millisecond, AsyncRetryWait: time.Millisecond,
		Logger: slog.New(onRepublish{once: &once, do: func() { setNoAck(false) }}),
	})
	require.NoError(t, err)
	setNoAck(true) // the stream stores messages and acknowledges none

	require.NoError(t, q.PublishAsync(ctx, kanban.Message[int]{ID: "m1", Payload: 1}))
	require.NoError(t, q.Flush(ctx))
	backlog, err := q.Backlog(ctx)
	require.NoError(t, err)
	require.EqualValues(t, 1, backlog.Depth, "stored once")
	st := q.Stats()
	assert.EqualValues(t, 1, st.Published, "the message the stream stored is published")
	assert.Zero(t, st.Duplicates, "the repeat of its own send is no duplicate")

	require.NoError(t, q.PublishAsync(ctx, kanban.Message[int]{ID: "m1", Payload: 1}))
	require.NoError(t, q.Flush(ctx))
	st = q.Stats()
	assert.EqualValues(t, 1, st.Published)
	assert.EqualValues(t, 1, st.Duplicates, "another publish of a stored ID is a duplicate")
	require.NoError(t, q.Shutdown(ctx))
}
