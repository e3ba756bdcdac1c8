package natsjs_test

import (
	"context"
	"errors"
	"math"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/kanban"
	"github.com/taipattern/taikit/kanban/natsembed"
	"github.com/taipattern/taikit/kanban/natsjs"
)

// refuseAll consumes q, refusing every message, until n have been refused.
func refuseAll(t *testing.T, q *natsjs.Queue[int], n int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	seen := 0
	require.NoError(t, q.Consume(ctx, func(_ context.Context, d kanban.Delivery[int]) error {
		seen++
		if seen == n {
			cancel()
		}
		return kanban.Permanent(errors.New("refused " + strconv.Itoa(d.Attempt)))
	}, kanban.ConsumeOptions{}))
	require.Equal(t, n, seen)
}

// depth returns the work stream's depth, -1 when it cannot be read. It
// runs in require.Eventually's goroutine, so it does not fail the test.
func depth(q *natsjs.Queue[int]) int64 {
	b, err := q.Backlog(context.Background())
	if err != nil {
		return -1
	}
	return b.Depth
}

// TestRedriveRepeatedIsStoredOnce: a redrive whose message was stored but
// whose dead letter was not deleted (the delete failed, the process died)
// is stored once when repeated within DedupWindow, and the dead letter
// then goes.
func TestRedriveRepeatedIsStoredOnce(t *testing.T) {
	srv := startServer(t, natsembed.Options{InProcess: true})
	nc := connect(t, srv.Connect)
	q, err := natsjs.New[int](context.Background(), nc, natsjs.Options{Stream: "REDRIVE_TWICE", FetchWait: 100 * time.Millisecond})
	require.NoError(t, err)
	ctx := context.Background()
	require.NoError(t, q.Publish(ctx, kanban.Message[int]{ID: "m", Key: "k", Payload: 7}))
	refuseAll(t, q, 1)
	dls, err := q.DeadLetters(ctx)
	require.NoError(t, err)
	require.Len(t, dls, 1)
	seq := dls[0].Seq
	dlq, err := q.JetStream().Stream(ctx, q.Options().DeadLetterStream)
	require.NoError(t, err)
	stored, err := dlq.GetMsg(ctx, seq)
	require.NoError(t, err)

	// What a first redrive that died before deleting left: the message
	// in the work stream under the redrive's dedup ID.
	_, err = q.JetStream().PublishMsg(ctx, &nats.Msg{Subject: "REDRIVE_TWICE", Data: []byte("7"), Header: nats.Header{
		natsjs.HeaderID:        {"m.redrive." + strconv.FormatUint(seq, 10) + "." + strconv.FormatInt(stored.Time.UnixNano(), 10)},
		natsjs.HeaderMessageID: {"m"}, natsjs.HeaderKey: {"k"},
	}})
	require.NoError(t, err)
	require.Eventually(t, func() bool { return depth(q) == 1 }, time.Minute, time.Millisecond)

	n, err := q.RedriveDeadLetters(ctx, kanban.DeadLetterFilter{Seq: seq})
	require.NoError(t, err)
	assert.Equal(t, 1, n)
	assert.Equal(t, int64(1), depth(q), "stored once")
	assert.Zero(t, q.Stats().Redriven, "the stream said duplicate: nothing new stored")
	dls, err = q.DeadLetters(ctx)
	require.NoError(t, err)
	assert.Empty(t, dls, "and the dead letter is gone")
}

// TestRedriveAfterDeadLetterStreamRecreated: a dead-letter stream deleted
// and made again numbers its dead letters from 1 again; a redrive of one
// within DedupWindow of the redrive of the dead letter of the same message
// and number in the stream before is stored, not taken for a duplicate of
// it (and the dead letter deleted, its message lost).
func TestRedriveAfterDeadLetterStreamRecreated(t *testing.T) {
	srv := startServer(t, natsembed.Options{InProcess: true})
	nc := connect(t, srv.Connect)
	q, err := natsjs.New[int](context.Background(), nc, natsjs.Options{Stream: "REDRIVE_RECREATED", FetchWait: 100 * time.Millisecond})
	require.NoError(t, err)
	ctx := context.Background()
	require.NoError(t, q.Publish(ctx, kanban.Message[int]{ID: "m", Payload: 7}))
	refuseAll(t, q, 1)
	n, err := q.RedriveDeadLetters(ctx, kanban.DeadLetterFilter{All: true})
	require.NoError(t, err)
	require.Equal(t, 1, n)

	// An operator deletes the dead-letter stream and makes it again.
	js := q.JetStream()
	dlq, err := js.Stream(ctx, q.Options().DeadLetterStream)
	require.NoError(t, err)
	info, err := dlq.Info(ctx)
	require.NoError(t, err)
	require.NoError(t, js.DeleteStream(ctx, info.Config.Name))
	_, err = js.CreateStream(ctx, info.Config)
	require.NoError(t, err)

	refuseAll(t, q, 1) // the redriven message dies again
	dls, err := q.DeadLetters(ctx)
	require.NoError(t, err)
	require.Len(t, dls, 1)
	require.Equal(t, uint64(1), dls[0].Seq, "numbered from 1 again, as the first")
	require.Eventually(t, func() bool { return depth(q) == 0 }, time.Minute, time.Millisecond)

	n, err = q.RedriveDeadLetters(ctx, kanban.DeadLetterFilter{All: true})
	require.NoError(t, err)
	assert.Equal(t, 1, n)
	assert.Equal(t, int64(1), depth(q), "the second redrive is stored")
	assert.Equal(t, int64(2), q.Stats().Redriven)
}

// TestRedrivenMessageDeadAgain: a redriven message keeps its ID through a
// second death and a second redrive, and each redrive is stored.
func TestRedrivenMessageDeadAgain(t *testing.T) {
	srv := startServer(t, natsembed.Options{InProcess: true})
	nc := connect(t, srv.Connect)
	q, err := natsjs.New[int](context.Background(), nc, natsjs.Options{Stream: "REDRIVE_AGAIN", FetchWait: 100 * time.Millisecond})
	require.NoError(t, err)
	ctx := context.Background()
	require.NoError(t, q.Publish(ctx, kanban.Message[int]{ID: "m", Key: "k", Payload: 7, Headers: kanban.Header{"X-Own": "yes"}}))
	for round := 1; round <= 3; round++ {
		refuseAll(t, q, 1)
		dls, err := q.DeadLetters(ctx)
		require.NoError(t, err)
		require.Len(t, dls, 1, "round %d", round)
		d := dls[0]
		assert.Equal(t, "m", d.ID, "round %d", round)
		assert.Equal(t, "k", d.Key)
		assert.Equal(t, "yes", d.Headers["X-Own"])
		assert.NotContains(t, d.Headers, natsjs.HeaderMessageID)
		assert.NotContains(t, d.Headers, natsjs.HeaderID)
		assert.Equal(t, "refused 1", d.Reason, "round %d: deliveries counted afresh", round)
		if round == 3 {
			break
		}
		require.Eventually(t, func() bool { return depth(q) == 0 }, time.Minute, time.Millisecond)
		n, err := q.RedriveDeadLetters(ctx, kanban.DeadLetterFilter{ID: "m"})
		require.NoError(t, err)
		require.Equal(t, 1, n, "round %d", round)
	}
	assert.Equal(t, int64(2), q.Stats().Redriven)
	assert.Equal(t, int64(3), q.Stats().DeadLettered)
}

// TestDeadLettersWhenTheServerIsGone: every operation fails with an
// error, none panics, and nothing is lost once the server is back.
func TestDeadLettersWhenTheServerIsGone(t *testing.T) {
	srv := startServer(t, natsembed.Options{InProcess: true})
	nc := connect(t, srv.Connect)
	q, err := natsjs.New[int](context.Background(), nc, natsjs.Options{Stream: "GONE", FetchWait: 100 * time.Millisecond})
	require.NoError(t, err)
	require.NoError(t, q.Publish(context.Background(), kanban.Message[int]{ID: "m"}))
	refuseAll(t, q, 1)
	nc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err = q.ListDeadLetters(ctx, kanban.DeadLetterQuery{})
	assert.Error(t, err)
	n, err := q.RedriveDeadLetters(ctx, kanban.DeadLetterFilter{All: true})
	assert.Error(t, err)
	assert.Zero(t, n)
	n, err = q.DeleteDeadLetters(ctx, kanban.DeadLetterFilter{All: true})
	assert.Error(t, err)
	assert.Zero(t, n)
	_, err = q.Backlog(ctx)
	assert.Error(t, err)

	q2, err := natsjs.New[int](context.Background(), connect(t, srv.Connect), natsjs.Options{Stream: "GONE"})
	require.NoError(t, err)
	dls, err := q2.DeadLetters(context.Background())
	require.NoError(t, err)
	assert.Len(t, dls, 1, "the dead letter is still there")
}

// TestSameIDDeadTwiceIsKeptTwice: a message published again with the ID
// of one dead-lettered moments before — once the work stream's dedup
// window has passed — is dead-lettered too, not dropped by the
// dead-letter stream as a duplicate (and lost).
func TestSameIDDeadTwiceIsKeptTwice(t *testing.T) {
	srv := startServer(t, natsembed.Options{InProcess: true})
	nc := connect(t, srv.Connect)
	const window = 4 * time.Second
	q, err := natsjs.New[int](context.Background(), nc, natsjs.Options{
		Stream: "SAME_ID", FetchWait: 100 * time.Millisecond, DedupWindow: window, AsyncAttempts: 1,
	})
	require.NoError(t, err)
	ctx := context.Background()
	require.NoError(t, q.Publish(ctx, kanban.Message[int]{ID: "m", Payload: 1}))
	start := time.Now()
	// The first dies after a retry 3s later, so the dead-letter stream's
	// window runs until about 7s, the work stream's until 4s.
	cctx, cancel := context.WithTimeout(ctx, time.Minute)
	require.NoError(t, q.Consume(cctx, func(_ context.Context, d kanban.Delivery[int]) error {
		if d.Attempt == 1 {
			return errors.New("later")
		}
		cancel()
		return kanban.Permanent(errors.New("refused"))
	}, kanban.ConsumeOptions{Backoff: kanban.BackoffFunc(func(int) time.Duration { return 3 * time.Second })}))
	cancel()
	// Published again once the work stream has forgotten the ID; the
	// dead-letter stream, whose window began later, still remembers it.
	for {
		before := q.Stats().Duplicates
		require.NoError(t, q.Publish(ctx, kanban.Message[int]{ID: "m", Payload: 2}))
		if q.Stats().Duplicates == before {
			break
		}
		require.Less(t, time.Since(start), time.Minute, "the work stream never forgot the ID")
		time.Sleep(50 * time.Millisecond) // polling for the window's end under a deadline
	}
	refuseAll(t, q, 1)
	dls, err := q.DeadLetters(ctx)
	require.NoError(t, err)
	require.Len(t, dls, 2, "both deaths kept")
	assert.Equal(t, "m", dls[0].ID)
	assert.Equal(t, "m", dls[1].ID)
	assert.Equal(t, "1", string(dls[0].Payload))
	assert.Equal(t, "2", string(dls[1].Payload))
	assert.Less(t, time.Since(start), window+dls[0].Time.Sub(start), "the second death fell in the dead-letter stream's window")
}

// TestDeadLetterScansSkipDeletedOnes: reading the dead letters costs a
// request per dead letter kept, not per sequence number the stream has
// used: dead letters redriven or deleted from the middle (the oldest one
// kept) are skipped in one request, however many there were.
func TestDeadLetterScansSkipDeletedOnes(t *testing.T) {
	srv := startServer(t, natsembed.Options{InProcess: true})
	nc := connect(t, srv.Connect)
	ctx := context.Background()
	q, err := natsjs.New[int](ctx, nc, natsjs.Options{Stream: "GAPS"})
	require.NoError(t, err)
	dead := func(id, key string) {
		_, err := q.JetStream().PublishMsg(ctx, &nats.Msg{Subject: "GAPS_DLQ", Data: []byte("1"), Header: nats.Header{
			natsjs.HeaderID: {id}, natsjs.HeaderKey: {key}, natsjs.HeaderReason: {"no"},
		}})
		require.NoError(t, err)
	}
	dead("first", "kept")
	for i := range 300 {
		dead("gone"+strconv.Itoa(i), "gone")
	}
	dead("last", "kept")
	n, err := q.DeleteDeadLetters(ctx, kanban.DeadLetterFilter{Key: "gone"})
	require.NoError(t, err)
	require.Equal(t, 300, n)

	gets, err := nc.SubscribeSync("$JS.API.STREAM.MSG.GET.GAPS_DLQ")
	require.NoError(t, err)
	requests := func() int {
		t.Helper()
		require.NoError(t, nc.Flush())
		n, _, err := gets.Pending()
		require.NoError(t, err)
		for range n {
			_, err := gets.NextMsg(0)
			require.NoError(t, err)
		}
		return n
	}
	dls, err := q.DeadLetters(ctx)
	require.NoError(t, err)
	require.Len(t, dls, 2)
	assert.Equal(t, []string{"first", "last"}, []string{dls[0].ID, dls[1].ID})
	assert.LessOrEqual(t, requests(), 3, "DeadLetters")

	page, err := q.ListDeadLetters(ctx, kanban.DeadLetterQuery{Filter: kanban.DeadLetterFilter{Key: "none"}})
	require.NoError(t, err)
	assert.Empty(t, page.Letters)
	assert.LessOrEqual(t, requests(), 3, "ListDeadLetters")

	page, err = q.ListDeadLetters(ctx, kanban.DeadLetterQuery{Limit: 1})
	require.NoError(t, err)
	require.Len(t, page.Letters, 1)
	assert.Equal(t, "first", page.Letters[0].ID)
	assert.Equal(t, dls[1].Seq-1, page.Letters[0].Seq+300)
	assert.Equal(t, page.Letters[0].Seq, page.Next, "the last dead letter comes next")
	assert.LessOrEqual(t, requests(), 3, "a page")

	n, err = q.RedriveDeadLetters(ctx, kanban.DeadLetterFilter{Reason: "none"})
	require.NoError(t, err)
	assert.Zero(t, n)
	assert.LessOrEqual(t, requests(), 3, "RedriveDeadLetters")

	// A cursor past the last dead letter, the largest one too, is the end.
	for _, cursor := range []uint64{dls[1].Seq, math.MaxUint64} {
		page, err = q.ListDeadLetters(ctx, kanban.DeadLetterQuery{Cursor: cursor})
		require.NoError(t, err)
		assert.Empty(t, page.Letters, "after %d", cursor)
		assert.Zero(t, page.Next)
	}
}

// A message as large as Publish takes can be dead-lettered, with a reason
// however long: its dead letter fits within the server's max_payload.
// Before, one within the dead letter's headers of max_payload, or failing
// with an error text of a megabyte, was refused by the dead-letter stream
// at every delivery, and its handler ran again and again.
func TestLargestMessageCanBeDeadLettered(t *testing.T) {
	srv := startServer(t, natsembed.Options{InProcess: true})
	ctx := context.Background()
	nc := connect(t, srv.Connect)
	lo := largestPayload(t, nc, natsjs.Options{Codec: rawCodec{}, Storage: natsjs.MemoryStorage}, "FULL", func(n int) kanban.Message[[]byte] {
		return kanban.Message[[]byte]{ID: "largest", Key: "k", Payload: make([]byte, n)}
	}, int(nc.MaxPayload()))
	assert.Greater(t, lo, int(nc.MaxPayload())-2048, "the room kept for a dead letter is small")

	q, err := natsjs.New[[]byte](ctx, nc, natsjs.Options{Stream: "LARGEST", Codec: rawCodec{}, FetchWait: 50 * time.Millisecond})
	require.NoError(t, err)
	require.NoError(t, q.Publish(ctx, kanban.Message[[]byte]{ID: "largest", Key: "k", Payload: make([]byte, lo)}))
	long := strings.Repeat("é", 1<<20) // 2 MB of two-byte characters
	var calls atomic.Int64
	cctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- q.Consume(cctx, func(context.Context, kanban.Delivery[[]byte]) error {
			calls.Add(1)
			return kanban.Permanent(errors.New(long))
		}, kanban.ConsumeOptions{})
	}()
	var dls []kanban.DeadLetter
	for range 1000 {
		if dls, err = q.DeadLetters(ctx); err != nil || len(dls) > 0 {
			break
		}
		time.Sleep(10 * time.Millisecond) // polling the server's state, not timing the test
	}
	cancel()
	require.NoError(t, <-done)
	require.NoError(t, err)
	require.Len(t, dls, 1, "dead-lettered")
	assert.Equal(t, int64(1), calls.Load(), "handled once")
	assert.Len(t, dls[0].Payload, lo)
	assert.Equal(t, strings.Repeat("é", 512), dls[0].Reason, "the first 1024 bytes, whole characters")
	require.NoError(t, q.Shutdown(ctx))
}

// A dead letter whose message, with the headers of its redrive, takes more
// than MaxBytes is refused with ErrTooLarge and kept: its message was
// published within a few bytes of MaxBytes, and the redrive's Kanban-Id
// and longer Nats-Msg-Id (with the dead letter's number and its time in
// nanoseconds, 19 digits) took it past. The server's refusal read as a
// full stream, so RedriveDeadLetters said kanban.ErrFull of an empty one,
// and waiting for room never helped.
func TestRedriveLargerThanMaxBytes(t *testing.T) {
	srv := startServer(t, natsembed.Options{InProcess: true})
	ctx := context.Background()
	q, err := natsjs.New[[]byte](ctx, connect(t, srv.Connect), natsjs.Options{
		Stream: "EDGE", MaxBytes: 4096, Codec: rawCodec{}, FetchWait: 50 * time.Millisecond,
	})
	require.NoError(t, err)
	// 4096 to the byte in a file store (see TestTooLargeIsExact).
	require.NoError(t, q.TryPublish(ctx, kanban.Message[[]byte]{ID: "edge", Payload: make([]byte, 4096-69)}))
	cctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- q.Consume(cctx, func(context.Context, kanban.Delivery[[]byte]) error {
			defer cancel()
			return kanban.Permanent(errors.New("refused"))
		}, kanban.ConsumeOptions{MaxAttempts: 1})
	}()
	require.NoError(t, <-done)
	b, err := q.Backlog(ctx)
	require.NoError(t, err)
	require.Equal(t, int64(1), b.DeadLetters)

	n, err := q.RedriveDeadLetters(ctx, kanban.DeadLetterFilter{All: true})
	assert.Zero(t, n)
	require.ErrorIs(t, err, natsjs.ErrTooLarge)
	assert.NotErrorIs(t, err, kanban.ErrFull)
	assert.ErrorContains(t, err, "natsjs: redriving dead letter 1 (message edge): natsjs: message too large: it takes 4143 bytes in the work stream with the headers of its redrive, more than its MaxBytes 4096")
	dead, err := q.DeadLetters(ctx)
	require.NoError(t, err)
	require.Len(t, dead, 1, "the dead letter is kept")
	require.NoError(t, q.Shutdown(ctx))
}

// TestDeadLetterAfterWorkStreamRecreated: a work stream deleted and made
// again numbers its messages from 1 again; a message of the same ID
// stored at the same number and dead-lettered within the dead-letter
// stream's DedupWindow is kept, not dropped as a duplicate of the dead
// letter of the message before (and, terminated, lost).
func TestDeadLetterAfterWorkStreamRecreated(t *testing.T) {
	srv := startServer(t, natsembed.Options{InProcess: true})
	nc := connect(t, srv.Connect)
	opts := natsjs.Options{Stream: "DEAD_RECREATED", FetchWait: 100 * time.Millisecond}
	q, err := natsjs.New[int](context.Background(), nc, opts)
	require.NoError(t, err)
	ctx := context.Background()
	require.NoError(t, q.Publish(ctx, kanban.Message[int]{ID: "m", Payload: 1}))
	refuseAll(t, q, 1)

	// An operator deletes the work stream; New makes it again.
	require.NoError(t, q.JetStream().DeleteStream(ctx, opts.Stream))
	q, err = natsjs.New[int](context.Background(), nc, opts)
	require.NoError(t, err)
	require.NoError(t, q.Publish(ctx, kanban.Message[int]{ID: "m", Payload: 2}))
	refuseAll(t, q, 1)
	require.Eventually(t, func() bool { return depth(q) == 0 }, time.Minute, time.Millisecond, "the second is settled")

	dls, err := q.DeadLetters(ctx)
	require.NoError(t, err)
	require.Len(t, dls, 2, "both deaths kept")
	assert.Equal(t, "1", string(dls[0].Payload))
	assert.Equal(t, "2", string(dls[1].Payload))
	assert.Equal(t, "m", dls[1].ID)
}

// TestDeadLetterOpsWhenAStreamIsGone: with the work stream deleted, a
// redrive fails naming the stream that did not answer and keeps the dead
// letter; with the dead-letter stream deleted, each call fails naming
// that stream, as not found.
func TestDeadLetterOpsWhenAStreamIsGone(t *testing.T) {
	srv := startServer(t, natsembed.Options{InProcess: true})
	nc := connect(t, srv.Connect)
	opts := natsjs.Options{Stream: "GONE_WORK", FetchWait: 100 * time.Millisecond}
	q, err := natsjs.New[int](context.Background(), nc, opts)
	require.NoError(t, err)
	ctx := context.Background()
	require.NoError(t, q.Publish(ctx, kanban.Message[int]{ID: "m", Payload: 1}))
	refuseAll(t, q, 1)
	require.NoError(t, q.JetStream().DeleteStream(ctx, opts.Stream))

	n, err := q.RedriveDeadLetters(ctx, kanban.DeadLetterFilter{All: true})
	require.Error(t, err)
	assert.Zero(t, n)
	assert.Contains(t, err.Error(), "natsjs: redriving dead letter 1 (message m): ")
	assert.Contains(t, err.Error(), "stream GONE_WORK", "the stream that did not answer")
	for _, publish := range []func(context.Context, kanban.Message[int]) error{q.Publish, q.TryPublish} {
		pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := publish(pctx, kanban.Message[int]{ID: "after", Payload: 2})
		cancel()
		assert.ErrorIs(t, err, jetstream.ErrNoStreamResponse)
		assert.ErrorContains(t, err, "natsjs: publishing message after: stream GONE_WORK did not answer")
	}
	dls, err := q.DeadLetters(ctx)
	require.NoError(t, err)
	assert.Len(t, dls, 1, "the dead letter kept")

	require.NoError(t, q.JetStream().DeleteStream(ctx, q.Options().DeadLetterStream))
	_, err = q.ListDeadLetters(ctx, kanban.DeadLetterQuery{})
	assert.ErrorIs(t, err, jetstream.ErrStreamNotFound)
	assert.ErrorContains(t, err, "natsjs: stream GONE_WORK_DLQ: ")
	for _, f := range []kanban.DeadLetterFilter{{All: true}, {Seq: 1}} {
		n, err = q.RedriveDeadLetters(ctx, f)
		assert.ErrorIs(t, err, jetstream.ErrStreamNotFound)
		assert.ErrorContains(t, err, "natsjs: stream GONE_WORK_DLQ: ")
		assert.Zero(t, n)
		n, err = q.DeleteDeadLetters(ctx, f)
		assert.ErrorIs(t, err, jetstream.ErrStreamNotFound)
		assert.ErrorContains(t, err, "natsjs: stream GONE_WORK_DLQ: ")
		assert.Zero(t, n)
	}
}

// TestForeignDeadLetterHasTheStreamsTime: a dead letter another client
// stored without Kanban-Time (or with one that does not parse) is dated
// by the stream, when it was stored, not the zero time — which is before
// every Before, so an "older than" delete would take it however new.
func TestForeignDeadLetterHasTheStreamsTime(t *testing.T) {
	srv := startServer(t, natsembed.Options{InProcess: true})
	nc := connect(t, srv.Connect)
	q, err := natsjs.New[int](context.Background(), nc, natsjs.Options{Stream: "FOREIGN", FetchWait: 100 * time.Millisecond})
	require.NoError(t, err)
	ctx := context.Background()
	dlq := q.Options().DeadLetterStream
	before := time.Now()
	for _, h := range []nats.Header{{natsjs.HeaderKey: {"k"}}, {natsjs.HeaderTime: {"yesterday"}}} {
		_, err := q.JetStream().PublishMsg(ctx, &nats.Msg{Subject: dlq, Header: h, Data: []byte("1")})
		require.NoError(t, err)
	}
	dls, err := q.DeadLetters(ctx)
	require.NoError(t, err)
	require.Len(t, dls, 2)
	for _, d := range dls {
		assert.False(t, d.Time.Before(before.Add(-time.Second)), "dead letter %d dated %v", d.Seq, d.Time)
		assert.False(t, d.Time.After(time.Now().Add(time.Second)), "dead letter %d dated %v", d.Seq, d.Time)
	}
	n, err := q.DeleteDeadLetters(ctx, kanban.DeadLetterFilter{Before: before.Add(-time.Hour)})
	require.NoError(t, err)
	assert.Zero(t, n, "stored now: none is older than an hour")
}
