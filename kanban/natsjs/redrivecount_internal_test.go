package natsjs

import (
	"context"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/kanban"
)

// TestRedriveRacedBetweenPublishAndDeleteCountsOnce: two operators
// redriving the same dead letter at once, the second publishing (a
// duplicate) and deleting it between the first's publish and delete,
// count it once between them: the one whose delete took it.
func TestRedriveRacedBetweenPublishAndDeleteCountsOnce(t *testing.T) {
	for name, storage := range storages {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			q, other, meanwhile := racedQueues(t, "RACED_REDRIVE_DELETE", storage, 3)
			*meanwhile = func(uint64) {}
			var others int
			q.js = racedJS{JetStream: q.js, name: q.opts.DeadLetterStream, beforeDelete: func(seq uint64) {
				n, err := other.RedriveDeadLetters(ctx, kanban.DeadLetterFilter{Seq: seq})
				assert.NoError(t, err)
				others += n
			}}
			n, err := q.RedriveDeadLetters(ctx, kanban.DeadLetterFilter{All: true})
			require.NoError(t, err)
			// The first dead letter's delete is the probe, not raced.
			assert.Equal(t, 2, others, "the other operator deleted the last two")
			assert.Equal(t, 3, n+others, "each dead letter counted once between them")
			b, err := other.Backlog(ctx)
			require.NoError(t, err)
			assert.Equal(t, int64(3), b.Depth, "each stored once")
			assert.Zero(t, b.DeadLetters)
			assert.Equal(t, int64(3), q.Stats().Redriven+other.Stats().Redriven)
		})
	}
}

// TestRedriveIntoFullStreamKeepsTheServersAnswer: a redrive the work
// stream refuses for being full fails with kanban.ErrFull wrapping the
// server's answer, which names the limit reached, as TryPublish's does.
func TestRedriveIntoFullStreamKeepsTheServersAnswer(t *testing.T) {
	ctx := context.Background()
	nc := inProcessConn(t)
	q, err := New[int](ctx, nc, Options{Stream: "REDRIVE_FULL", Storage: MemoryStorage, Capacity: 1})
	require.NoError(t, err)
	require.NoError(t, q.Publish(ctx, kanban.Message[int]{ID: "in", Payload: 1}))
	_, err = q.js.PublishMsg(ctx, &nats.Msg{Subject: q.opts.DeadLetterStream, Data: []byte("2"), Header: nats.Header{
		HeaderID: {"d.dead.1.1"}, HeaderMessageID: {"d"}, HeaderReason: {"refused"}, HeaderAttempts: {"1"},
	}})
	require.NoError(t, err)
	n, err := q.RedriveDeadLetters(ctx, kanban.DeadLetterFilter{All: true})
	assert.Zero(t, n)
	require.ErrorIs(t, err, kanban.ErrFull)
	var api *jetstream.APIError
	assert.ErrorAs(t, err, &api, "the server's answer")
	assert.ErrorContains(t, err, "maximum messages exceeded")
	tryErr := q.TryPublish(ctx, kanban.Message[int]{ID: "more", Payload: 3})
	assert.ErrorAs(t, tryErr, &api, "as TryPublish's")
}
