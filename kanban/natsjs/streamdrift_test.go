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
	"github.com/taipattern/taikit/kanban/natsjs"
)

// TestWorkerBoundToAShorterDedupWindow: a worker not permitted to update a
// stream made with a shorter DedupWindow than its own takes the stream's,
// in Options, and New refuses it when its PublishAsync re-publishing may
// outlast that window, as Validate refuses such options: a message sent
// again after its first copy was stored would be stored twice. Before, New
// took the stream and Options reported the window asked for.
func TestWorkerBoundToAShorterDedupWindow(t *testing.T) {
	ns := startUsersServer(t, user("admin"), user("worker", workerPerms...))
	ctx := context.Background()
	_, err := natsjs.New[int](ctx, connectAs(t, ns, "admin", &violations{}), natsjs.Options{
		Stream: "MADE", DedupWindow: time.Second, AsyncAttempts: 1,
	})
	require.NoError(t, err)

	_, err = natsjs.New[int](ctx, connectAs(t, ns, "worker", &violations{}), natsjs.Options{Stream: "MADE"})
	require.Error(t, err, "re-publishing for up to a minute against a window of 1s")
	assert.ErrorContains(t, err, "AsyncAttempts 10")
	assert.ErrorContains(t, err, "DedupWindow 1s")
	assert.ErrorContains(t, err, "MADE")

	q, err := natsjs.New[int](ctx, connectAs(t, ns, "worker", &violations{}), natsjs.Options{Stream: "MADE", AsyncAttempts: 1})
	require.NoError(t, err, "no re-publishing")
	assert.Equal(t, time.Second, q.Options().DedupWindow, "the stream's window")
}

// setMaxMsgSize sets the MaxMsgSize of the stream name, as an
// administrator would.
func setMaxMsgSize(t *testing.T, js jetstream.JetStream, name string, size int32) {
	t.Helper()
	s, err := js.Stream(context.Background(), name)
	require.NoError(t, err)
	cfg := s.CachedInfo().Config
	cfg.MaxMsgSize = size
	_, err = js.UpdateStream(context.Background(), cfg)
	require.NoError(t, err)
}

// TestWorkerBoundToStreamsOfSmallerMessages: a worker not permitted to
// update streams an administrator gave a MaxMsgSize says so at Warn, naming
// it, and refuses at once with ErrTooLarge a message the work stream would
// refuse, or whose dead letter the dead-letter stream would: one stored
// could never be dead-lettered, and came back without end. Before, the
// warning left it out, Publish returned the server's refusal, PublishAsync
// sent the message AsyncAttempts times, and a message stored was handed
// back at every attempt to dead-letter it.
func TestWorkerBoundToStreamsOfSmallerMessages(t *testing.T) {
	for _, tc := range []struct {
		name, stream string
		size         int32
	}{
		{"work", "MADE", 512},
		{"dead letter", "MADE_DLQ", 2048},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ns := startUsersServer(t, user("admin"), user("worker", workerPerms...))
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			admin, err := natsjs.New[[]byte](ctx, connectAs(t, ns, "admin", &violations{}), natsjs.Options{Stream: "MADE", Codec: rawCodec{}})
			require.NoError(t, err)
			setMaxMsgSize(t, admin.JetStream(), tc.stream, tc.size)

			differs := newMsgLog("natsjs: the connection may not update the stream; the queue uses it as it is")
			var got slog.Record
			logger := slog.New(recordHandler{differs: differs, last: &got})
			q, err := natsjs.New[[]byte](ctx, connectAs(t, ns, "worker", &violations{}), natsjs.Options{
				Stream: "MADE", Codec: rawCodec{}, Logger: logger, AsyncAttempts: 3,
			})
			require.NoError(t, err)
			require.Equal(t, 1, differs.count(), "the stream's MaxMsgSize is told")
			got.Attrs(func(a slog.Attr) bool {
				if a.Key == "differs" {
					assert.Contains(t, a.Value.String(), "MaxMsgSize")
				}
				return true
			})

			big := kanban.Message[[]byte]{ID: "big", Payload: make([]byte, 1000)}
			for name, publish := range map[string]func(context.Context, kanban.Message[[]byte]) error{
				"Publish": q.Publish, "TryPublish": q.TryPublish, "PublishAsync": q.PublishAsync,
			} {
				assert.ErrorIs(t, publish(ctx, big), natsjs.ErrTooLarge, name)
			}
			require.NoError(t, q.Flush(ctx))
			require.NoError(t, q.TryPublish(ctx, kanban.Message[[]byte]{ID: "small", Payload: make([]byte, 100)}))
			if tc.stream == "MADE" {
				// The bound is the server's: headers ("NATS/1.0\r\n",
				// "Nats-Msg-Id: edge\r\n", "\r\n") and payload.
				fits := int(tc.size) - len("NATS/1.0\r\nNats-Msg-Id: edge\r\n\r\n")
				assert.ErrorIs(t, q.TryPublish(ctx, kanban.Message[[]byte]{ID: "edge", Payload: make([]byte, fits+1)}), natsjs.ErrTooLarge)
				require.NoError(t, q.TryPublish(ctx, kanban.Message[[]byte]{ID: "edge", Payload: make([]byte, fits)}), "one that fits exactly")
			}
			require.NoError(t, q.Shutdown(ctx))
		})
	}
}

// recordHandler counts the records differs counts and keeps the last one
// of its message.
type recordHandler struct {
	differs *msgLog
	last    *slog.Record
}

func (h recordHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h recordHandler) Handle(ctx context.Context, r slog.Record) error {
	if r.Message == h.differs.msg {
		*h.last = r.Clone()
	}
	return msgHandler{h.differs}.Handle(ctx, r)
}
func (h recordHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h recordHandler) WithGroup(string) slog.Handler      { return h }

// TestRedriveBoundToStreamsOfSmallerMessages: a worker not permitted to
// update streams an administrator gave a MaxMsgSize after a message was
// dead-lettered refuses with ErrTooLarge to redrive it when the work
// stream would refuse it with the redrive's headers, or the dead-letter
// stream its dead letter, and keeps the dead letter. Before, the work
// stream's refusal came back as the server's, and a message whose dead
// letter no longer fitted was redriven, never to be dead-lettered again.
func TestRedriveBoundToStreamsOfSmallerMessages(t *testing.T) {
	for _, tc := range []struct {
		name, stream string
		size         int32
	}{
		{"work", "MADE", 50},
		{"dead letter", "MADE_DLQ", 1000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ns := startUsersServer(t, user("admin"), user("worker", workerPerms...))
			ctx := context.Background()
			admin, err := natsjs.New[int](ctx, connectAs(t, ns, "admin", &violations{}), natsjs.Options{Stream: "MADE", FetchWait: 100 * time.Millisecond})
			require.NoError(t, err)
			require.NoError(t, admin.Publish(ctx, kanban.Message[int]{ID: "m", Payload: 7}))
			refuseAll(t, admin, 1)
			setMaxMsgSize(t, admin.JetStream(), tc.stream, tc.size)

			q, err := natsjs.New[int](ctx, connectAs(t, ns, "worker", &violations{}), natsjs.Options{Stream: "MADE"})
			require.NoError(t, err)
			n, err := q.RedriveDeadLetters(ctx, kanban.DeadLetterFilter{All: true})
			require.ErrorIs(t, err, natsjs.ErrTooLarge)
			assert.ErrorContains(t, err, "MaxMsgSize")
			assert.Zero(t, n)
			dls, err := admin.DeadLetters(ctx)
			require.NoError(t, err)
			assert.Len(t, dls, 1, "the dead letter is kept")
		})
	}
}
