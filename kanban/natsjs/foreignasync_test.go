package natsjs_test

import (
	"context"
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

// Asynchronous publishes of the caller's own through the queue's
// JetStream context are not the queue's: their acknowledgements and
// failures neither count in Stats, nor free a slot of MaxPublishPending,
// nor go to OnPublishError and Flush, nor are sent again.
func TestForeignPublishAsyncIsNotTheQueues(t *testing.T) {
	srv := startServer(t, natsembed.Options{InProcess: true})
	nc := connect(t, srv.Connect)
	ctx := context.Background()
	var mu sync.Mutex
	var reported []string
	q, err := natsjs.New[int](ctx, nc, natsjs.Options{
		Stream: "FOREIGN", MaxPublishPending: 1, AsyncAttempts: 1,
		OnPublishError: func(id string, err error) {
			mu.Lock()
			defer mu.Unlock()
			reported = append(reported, id+": "+err.Error())
		},
	})
	require.NoError(t, err)
	js := q.JetStream()
	_, err = js.CreateStream(ctx, jetstream.StreamConfig{Name: "OTHER", Subjects: []string{"other"}, Storage: jetstream.MemoryStorage})
	require.NoError(t, err)

	// One stored, one that no stream takes.
	stored, err := js.PublishAsync("other", []byte("x"))
	require.NoError(t, err)
	lost, err := js.PublishAsync("nowhere", []byte("y"), jetstream.WithRetryAttempts(0))
	require.NoError(t, err)
	for _, f := range []jetstream.PubAckFuture{stored, lost} {
		select {
		case <-f.Ok():
		case <-f.Err():
		case <-time.After(30 * time.Second):
			t.Fatal("no answer to a foreign publish")
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(30 * time.Second):
		t.Fatal("foreign publishes not complete")
	}

	assert.Zero(t, q.Stats().Published, "a foreign acknowledgement is not the queue's")
	assert.NoError(t, q.Flush(ctx), "a foreign failure is not the queue's")
	mu.Lock()
	assert.Empty(t, reported, "a foreign failure is not reported")
	mu.Unlock()

	// The queue's own slot is still held by its own message until it is
	// settled: a foreign settlement freed none.
	require.NoError(t, q.PublishAsync(ctx, kanban.Message[int]{ID: "mine", Payload: 1}))
	require.NoError(t, q.Flush(ctx))
	assert.Equal(t, int64(1), q.Stats().Published)
	require.NoError(t, q.Shutdown(ctx))
}
