package natsjs

import (
	"context"
	"sync/atomic"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/kanban"
)

// racedJS is a JetStream whose dead-letter stream, name, runs meanwhile
// on each dead letter it hands out (another operator acting on it between
// this call's read and its own act) and beforeDelete before each delete
// (one acting between this call's redrive and its delete); either may be
// nil.
type racedJS struct {
	jetstream.JetStream
	name                    string
	meanwhile, beforeDelete func(seq uint64)
}

func (j racedJS) Stream(ctx context.Context, name string) (jetstream.Stream, error) {
	s, err := j.JetStream.Stream(ctx, name)
	if err != nil || name != j.name {
		return s, err
	}
	return racedStream{s, j.meanwhile, j.beforeDelete}, nil
}

type racedStream struct {
	jetstream.Stream
	meanwhile, beforeDelete func(seq uint64)
}

func (s racedStream) DeleteMsg(ctx context.Context, seq uint64) error {
	if s.beforeDelete != nil {
		s.beforeDelete(seq)
	}
	return s.Stream.DeleteMsg(ctx, seq)
}

func (s racedStream) GetMsg(ctx context.Context, seq uint64, opts ...jetstream.GetMsgOpt) (*jetstream.RawStreamMsg, error) {
	m, err := s.Stream.GetMsg(ctx, seq, opts...)
	if err == nil && s.meanwhile != nil {
		s.meanwhile(m.Sequence)
	}
	return m, err
}

// storages names the storages the raced tests run on: the server answers
// the delete of a message not there differently in each.
var storages = map[string]Storage{"file": FileStorage, "memory": MemoryStorage}

// racedQueues returns two queues on the same streams, the first with n
// dead letters (IDs d1, d2, ...) and its dead-letter stream raced by
// meanwhile, which the test sets to act through the second.
func racedQueues(t *testing.T, stream string, storage Storage, n int) (q, other *Queue[int], meanwhile *func(seq uint64)) {
	t.Helper()
	nc := inProcessConn(t)
	ctx := context.Background()
	var err error
	q, err = New[int](ctx, nc, Options{Stream: stream, Storage: storage})
	require.NoError(t, err)
	other, err = New[int](ctx, nc, Options{Stream: stream, Storage: storage})
	require.NoError(t, err)
	for i := 1; i <= n; i++ {
		id := "d" + string(rune('0'+i))
		_, err := q.js.PublishMsg(ctx, &nats.Msg{Subject: q.opts.DeadLetterStream, Data: []byte("1"), Header: nats.Header{
			HeaderID: {id + ".dead." + id}, HeaderMessageID: {id}, HeaderReason: {"refused"}, HeaderAttempts: {"1"},
		}})
		require.NoError(t, err)
	}
	meanwhile = new(func(uint64))
	q.js = racedJS{JetStream: q.js, name: q.opts.DeadLetterStream, meanwhile: func(seq uint64) { (*meanwhile)(seq) }}
	return q, other, meanwhile
}

// TestDeleteDeadLettersCountsOnlyItsOwn: a dead letter another operator
// deletes between this call's read of it and its delete is not counted
// as deleted by this call, and one named by Seq is not found, as it
// would be a moment later: both callers were told they deleted it.
func TestDeleteDeadLettersCountsOnlyItsOwn(t *testing.T) {
	for name, storage := range storages {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			q, other, meanwhile := racedQueues(t, "RACED_DELETE", storage, 3)
			*meanwhile = func(seq uint64) {
				n, err := other.DeleteDeadLetters(ctx, kanban.DeadLetterFilter{Seq: seq})
				assert.NoError(t, err)
				assert.Equal(t, 1, n)
			}
			n, err := q.DeleteDeadLetters(ctx, kanban.DeadLetterFilter{Seq: 1})
			assert.ErrorIs(t, err, kanban.ErrDeadLetterNotFound)
			assert.Zero(t, n)
			n, err = q.DeleteDeadLetters(ctx, kanban.DeadLetterFilter{All: true})
			assert.NoError(t, err)
			assert.Zero(t, n, "the other operator deleted every one")
		})
	}
}

// TestRedriveDeadLettersCountsOnlyItsOwn: a dead letter another operator
// redrives between this call's read of it and its redrive is stored once
// and counted once, by the other operator: this call's publish is a
// duplicate and its delete finds nothing.
func TestRedriveDeadLettersCountsOnlyItsOwn(t *testing.T) {
	for name, storage := range storages {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			q, other, meanwhile := racedQueues(t, "RACED_REDRIVE", storage, 3)
			*meanwhile = func(seq uint64) {
				n, err := other.RedriveDeadLetters(ctx, kanban.DeadLetterFilter{Seq: seq})
				assert.NoError(t, err)
				assert.Equal(t, 1, n)
			}
			n, err := q.RedriveDeadLetters(ctx, kanban.DeadLetterFilter{Seq: 1})
			assert.ErrorIs(t, err, kanban.ErrDeadLetterNotFound)
			assert.Zero(t, n)
			n, err = q.RedriveDeadLetters(ctx, kanban.DeadLetterFilter{All: true})
			assert.NoError(t, err)
			assert.Zero(t, n, "the other operator redrove every one")
			b, err := other.Backlog(ctx)
			require.NoError(t, err)
			assert.Equal(t, int64(3), b.Depth, "each stored once")
			assert.Zero(t, b.DeadLetters)
			assert.Equal(t, int64(3), other.Stats().Redriven)
			assert.Zero(t, q.Stats().Redriven)
		})
	}
}

// countingJS is a JetStream that counts the messages read from its
// stream name.
type countingJS struct {
	jetstream.JetStream
	name  string
	reads *atomic.Int64
}

func (j countingJS) Stream(ctx context.Context, name string) (jetstream.Stream, error) {
	s, err := j.JetStream.Stream(ctx, name)
	if err != nil || name != j.name {
		return s, err
	}
	return countingStream{s, j.reads}, nil
}

type countingStream struct {
	jetstream.Stream
	reads *atomic.Int64
}

func (s countingStream) GetMsg(ctx context.Context, seq uint64, opts ...jetstream.GetMsgOpt) (*jetstream.RawStreamMsg, error) {
	s.reads.Add(1)
	return s.Stream.GetMsg(ctx, seq, opts...)
}

// TestListOneDeadLetterReadsOnlyIt: listing the dead letter a Seq names
// (the board's links to a dead letter do) reads that one, not every dead
// letter kept.
func TestListOneDeadLetterReadsOnlyIt(t *testing.T) {
	ctx := context.Background()
	q, _, meanwhile := racedQueues(t, "LIST_ONE", FileStorage, 9)
	*meanwhile = func(uint64) {}
	var reads atomic.Int64
	q.js = countingJS{JetStream: q.js, name: q.opts.DeadLetterStream, reads: &reads}
	for _, c := range []struct {
		query kanban.DeadLetterQuery
		want  []string
	}{
		{kanban.DeadLetterQuery{Filter: kanban.DeadLetterFilter{Seq: 4}}, []string{"d4"}},
		{kanban.DeadLetterQuery{Filter: kanban.DeadLetterFilter{Seq: 4}, Newest: true}, []string{"d4"}},
		{kanban.DeadLetterQuery{Filter: kanban.DeadLetterFilter{Seq: 4, Key: "k"}}, nil},
		{kanban.DeadLetterQuery{Filter: kanban.DeadLetterFilter{Seq: 4, ID: "d4"}, Cursor: 3}, []string{"d4"}},
		{kanban.DeadLetterQuery{Filter: kanban.DeadLetterFilter{Seq: 4}, Cursor: 4}, nil},
		{kanban.DeadLetterQuery{Filter: kanban.DeadLetterFilter{Seq: 4}, Cursor: 4, Newest: true}, nil},
		{kanban.DeadLetterQuery{Filter: kanban.DeadLetterFilter{Seq: 4}, Cursor: 5, Newest: true}, []string{"d4"}},
		{kanban.DeadLetterQuery{Filter: kanban.DeadLetterFilter{Seq: 99}}, nil},
	} {
		reads.Store(0)
		page, err := q.ListDeadLetters(ctx, c.query)
		require.NoError(t, err)
		var ids []string
		for _, d := range page.Letters {
			ids = append(ids, d.ID)
		}
		assert.Equal(t, c.want, ids, "%+v", c.query)
		assert.Zero(t, page.Next, "%+v", c.query)
		assert.Equal(t, 9, page.Total, "%+v", c.query)
		assert.LessOrEqual(t, reads.Load(), int64(1), "%+v", c.query)
	}
}
