package natsjs

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/kanban"
)

// ackingJS is a JetStream whose work stream, name, has its first
// message acknowledged (deleted) just before Backlog reads it, as a
// consumer would between Backlog's two requests.
type ackingJS struct {
	jetstream.JetStream
	name string
}

func (j ackingJS) Stream(ctx context.Context, name string) (jetstream.Stream, error) {
	s, err := j.JetStream.Stream(ctx, name)
	if err != nil || name != j.name {
		return s, err
	}
	return ackingStream{s}, nil
}

type ackingStream struct{ jetstream.Stream }

func (s ackingStream) GetMsg(ctx context.Context, seq uint64, opts ...jetstream.GetMsgOpt) (*jetstream.RawStreamMsg, error) {
	if err := s.DeleteMsg(ctx, seq); err != nil {
		return nil, err
	}
	return s.Stream.GetMsg(ctx, seq, opts...)
}

// TestBacklogOldestAfterTheFirstIsAcknowledged: a message acknowledged
// between Backlog's read of the work stream's state and its read of the
// first message leaves Oldest the age of the one after it, not 0 while
// the stream holds messages: a busy queue's oldest age dropped to 0 on
// many reads, and an alert on it never fired.
func TestBacklogOldestAfterTheFirstIsAcknowledged(t *testing.T) {
	nc := inProcessConn(t)
	ctx := context.Background()
	q, err := New[int](ctx, nc, Options{Stream: "ACKED_FIRST"})
	require.NoError(t, err)
	t.Cleanup(func() { assert.NoError(t, q.Shutdown(ctx)) })
	start := time.Now()
	for _, id := range []string{"a", "b", "c"} {
		require.NoError(t, q.Publish(ctx, kanban.Message[int]{ID: id}))
	}
	q.js = ackingJS{JetStream: q.js, name: "ACKED_FIRST"}
	b, err := q.Backlog(ctx)
	require.NoError(t, err)
	took := time.Since(start)
	assert.Equal(t, int64(3), b.Depth, "as the state read before the acknowledgement said")
	assert.True(t, b.OldestKnown)
	assert.Positive(t, b.Oldest, "the age of b")
	assert.LessOrEqual(t, b.Oldest, took)
}
