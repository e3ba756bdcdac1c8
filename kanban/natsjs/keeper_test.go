package natsjs_test

import (
	"context"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
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

// lastBlock returns the number of the newest block file of the stream
// named name under the server's store directory: the file store numbers
// its block files 1, 2, ... as it makes them.
func lastBlock(t *testing.T, storeDir, name string) int {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(storeDir, "jetstream", "*", "streams", name, "msgs", "*.blk"))
	require.NoError(t, err)
	require.NotEmpty(t, files, "no block file of %s", name)
	last := 0
	for _, f := range files {
		n, err := strconv.Atoi(strings.TrimSuffix(filepath.Base(f), ".blk"))
		require.NoError(t, err, f)
		last = max(last, n)
	}
	return last
}

// drained waits until the work stream of q holds no message to handle.
func drained(t *testing.T, q *natsjs.Queue[int]) {
	t.Helper()
	require.Eventually(t, func() bool {
		b, err := q.Backlog(context.Background())
		return err == nil && b.Depth == 0
	}, 10*time.Second, time.Millisecond)
}

// next returns the next ID handled, or fails the test after 10 s.
func next(t *testing.T, handled <-chan string) string {
	t.Helper()
	select {
	case id := <-handled:
		return id
	case <-time.After(10 * time.Second):
		t.Fatal("nothing handled in 10s")
		return ""
	}
}

// TestKeeperSavesBlockFiles: a file-stored queue whose consumer keeps up,
// its stream emptied by every acknowledgement, keeps writing to the block
// file it has. Without the keeper the server made a new block file (and
// deleted the old one) for nearly every message.
func TestKeeperSavesBlockFiles(t *testing.T) {
	dir := t.TempDir()
	srv := startServer(t, natsembed.Options{StoreDir: dir, InProcess: true})
	ctx := context.Background()
	q, err := natsjs.New[int](ctx, connect(t, srv.Connect), natsjs.Options{Stream: "KEPT", FetchWait: 100 * time.Millisecond})
	require.NoError(t, err)
	handled := make(chan string, 1)
	cctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() {
		assert.NoError(t, q.Consume(cctx, func(_ context.Context, d kanban.Delivery[int]) error {
			handled <- d.ID
			return nil
		}, kanban.ConsumeOptions{WIP: 1}))
	})
	const n = 40
	for i := range n {
		id := strconv.Itoa(i)
		require.NoError(t, q.Publish(ctx, kanban.Message[int]{ID: id, Payload: i}))
		require.Equal(t, id, next(t, handled))
		drained(t, q)
	}
	stop()
	wg.Wait()
	assert.LessOrEqual(t, lastBlock(t, dir, "KEPT"), 2, "block files made for %d messages handled one at a time", n)
	require.NoError(t, q.Shutdown(ctx))
}

// TestKeeperIsNotWork: the keeper of a file-stored queue is not counted in
// its Depth, never handed to a handler, takes no room of Capacity, and is
// not counted published.
func TestKeeperIsNotWork(t *testing.T) {
	srv := startServer(t, natsembed.Options{InProcess: true})
	ctx := context.Background()
	q, err := natsjs.New[int](ctx, connect(t, srv.Connect), natsjs.Options{Stream: "NOT_WORK", Capacity: 3, FetchWait: 100 * time.Millisecond})
	require.NoError(t, err)
	s, err := q.JetStream().Stream(ctx, "NOT_WORK")
	require.NoError(t, err)
	require.Equal(t, uint64(1), s.CachedInfo().State.Msgs, "the keeper is stored when the queue is made")

	b, err := q.Backlog(ctx)
	require.NoError(t, err)
	assert.Zero(t, b.Depth)
	for i := range 3 {
		require.NoError(t, q.TryPublish(ctx, kanban.Message[int]{ID: strconv.Itoa(i), Payload: i}))
	}
	require.ErrorIs(t, q.TryPublish(ctx, kanban.Message[int]{ID: "over", Payload: 9}), kanban.ErrFull, "Capacity is the work's")
	b, err = q.Backlog(ctx)
	require.NoError(t, err)
	assert.Equal(t, int64(3), b.Depth)
	assert.Equal(t, int64(3), q.Stats().Published)

	var mu sync.Mutex
	var ids []string
	cctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() {
		assert.NoError(t, q.Consume(cctx, func(_ context.Context, d kanban.Delivery[int]) error {
			mu.Lock()
			ids = append(ids, d.ID)
			mu.Unlock()
			return nil
		}, kanban.ConsumeOptions{WIP: 4}))
	})
	drained(t, q)
	stop()
	wg.Wait()
	assert.ElementsMatch(t, []string{"0", "1", "2"}, ids)
	info, err := s.Info(ctx, jetstream.WithSubjectFilter("NOT_WORK.keeper"))
	require.NoError(t, err)
	assert.Equal(t, uint64(1), info.State.Subjects["NOT_WORK.keeper"], "the keeper stays")
	require.NoError(t, q.Shutdown(ctx))
}

// TestKeeperReplacesTheOneBefore: each keeper replaces the one before, so
// the stream holds one however many are published (every 64 KiB published
// and by every New).
func TestKeeperReplacesTheOneBefore(t *testing.T) {
	srv := startServer(t, natsembed.Options{InProcess: true})
	ctx := context.Background()
	nc := connect(t, srv.Connect)
	opts := natsjs.Options{Stream: "ONE_KEEPER", Codec: rawCodec{}}
	q, err := natsjs.New[[]byte](ctx, nc, opts)
	require.NoError(t, err)
	again, err := natsjs.New[[]byte](ctx, nc, opts)
	require.NoError(t, err)
	for i := range 40 { // 40 × 8 KiB: keepers published on the way
		require.NoError(t, q.Publish(ctx, kanban.Message[[]byte]{ID: strconv.Itoa(i), Payload: make([]byte, 8<<10)}))
	}
	require.NoError(t, nc.Flush()) // the keepers are sent without waiting
	s, err := q.JetStream().Stream(ctx, "ONE_KEEPER")
	require.NoError(t, err)
	info, err := s.Info(ctx, jetstream.WithSubjectFilter("ONE_KEEPER.keeper"))
	require.NoError(t, err)
	assert.Equal(t, uint64(1), info.State.Subjects["ONE_KEEPER.keeper"])
	assert.Greater(t, info.State.LastSeq, uint64(2+40), "keepers were published after the first two")
	require.NoError(t, q.Shutdown(ctx))
	require.NoError(t, again.Shutdown(ctx))
}

// TestKeeperDeliveredIsDropped: a keeper that reaches the handlers anyway
// — the durable was updated without the filter that leaves keepers out,
// as a process of an earlier version makes it — is acknowledged and
// dropped, not handled or dead-lettered.
func TestKeeperDeliveredIsDropped(t *testing.T) {
	srv := startServer(t, natsembed.Options{InProcess: true})
	ctx := context.Background()
	nc := connect(t, srv.Connect)
	q, err := natsjs.New[int](ctx, nc, natsjs.Options{Stream: "OLD_DURABLE", FetchWait: 100 * time.Millisecond})
	require.NoError(t, err)
	handled := make(chan string, 4)
	cctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() {
		assert.NoError(t, q.Consume(cctx, func(_ context.Context, d kanban.Delivery[int]) error {
			handled <- d.ID
			return nil
		}, kanban.ConsumeOptions{WIP: 1, MaxAttempts: 1}))
	})
	require.NoError(t, q.Publish(ctx, kanban.Message[int]{ID: "a", Payload: 1}))
	require.Equal(t, "a", next(t, handled))

	js := q.JetStream()
	cons, err := js.Consumer(ctx, "OLD_DURABLE", "OLD_DURABLE_WORKERS")
	require.NoError(t, err)
	cfg := cons.CachedInfo().Config
	require.Equal(t, "OLD_DURABLE", cfg.FilterSubject)
	cfg.FilterSubject = ""
	_, err = js.UpdateConsumer(ctx, "OLD_DURABLE", cfg)
	require.NoError(t, err)
	_, err = js.PublishMsg(ctx, &nats.Msg{Subject: "OLD_DURABLE.keeper", Header: nats.Header{"Nats-Rollup": {"sub"}}})
	require.NoError(t, err)
	require.NoError(t, q.Publish(ctx, kanban.Message[int]{ID: "b", Payload: 2}))
	require.Equal(t, "b", next(t, handled), "the keeper before it was not handed on")

	s, err := js.Stream(ctx, "OLD_DURABLE")
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		info, err := s.Info(ctx)
		return err == nil && info.State.Msgs == 0
	}, 10*time.Second, time.Millisecond, "the keeper delivered was acknowledged")
	stop()
	wg.Wait()
	b, err := q.Backlog(ctx)
	require.NoError(t, err)
	assert.Zero(t, b.DeadLetters)
	assert.Empty(t, handled)
	require.NoError(t, q.Shutdown(ctx))
}

// TestMemoryQueueHasNoKeeper: a memory stream has no block files, and no
// keeper: its stream holds the messages alone, as before.
func TestMemoryQueueHasNoKeeper(t *testing.T) {
	srv := startServer(t, natsembed.Options{InProcess: true})
	ctx := context.Background()
	q, err := natsjs.New[int](ctx, connect(t, srv.Connect), natsjs.Options{Stream: "NO_KEEPER", Storage: natsjs.MemoryStorage})
	require.NoError(t, err)
	s, err := q.JetStream().Stream(ctx, "NO_KEEPER")
	require.NoError(t, err)
	assert.Zero(t, s.CachedInfo().State.Msgs)
	assert.Equal(t, []string{"NO_KEEPER"}, s.CachedInfo().Config.Subjects)
	require.NoError(t, q.Shutdown(ctx))
}

// TestKeeperAddedToAStreamMadeBefore: New updates a work stream made
// without a keeper (by an earlier version) and its durable: the messages
// in it stay, are counted and handled, and the keeper is added.
func TestKeeperAddedToAStreamMadeBefore(t *testing.T) {
	srv := startServer(t, natsembed.Options{InProcess: true})
	ctx := context.Background()
	nc := connect(t, srv.Connect)
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	_, err = js.CreateStream(ctx, jetstream.StreamConfig{Name: "BEFORE", Subjects: []string{"BEFORE"},
		Retention: jetstream.WorkQueuePolicy, Discard: jetstream.DiscardNew, MaxMsgs: 2, Duplicates: 2 * time.Minute})
	require.NoError(t, err)
	_, err = js.CreateOrUpdateConsumer(ctx, "BEFORE", jetstream.ConsumerConfig{Durable: "BEFORE_WORKERS",
		AckPolicy: jetstream.AckExplicitPolicy, AckWait: 30 * time.Second, MaxAckPending: 1, MaxDeliver: -1})
	require.NoError(t, err)
	for _, id := range []string{"a", "b"} {
		_, err = js.PublishMsg(ctx, &nats.Msg{Subject: "BEFORE", Data: []byte("1"), Header: nats.Header{natsjs.HeaderID: {id}}})
		require.NoError(t, err)
	}

	q, err := natsjs.New[int](ctx, nc, natsjs.Options{Stream: "BEFORE", Capacity: 2, FetchWait: 100 * time.Millisecond})
	require.NoError(t, err)
	s, err := js.Stream(ctx, "BEFORE")
	require.NoError(t, err)
	assert.Equal(t, uint64(3), s.CachedInfo().State.Msgs, "the two messages and the keeper")
	b, err := q.Backlog(ctx)
	require.NoError(t, err)
	assert.Equal(t, int64(2), b.Depth)
	require.ErrorIs(t, q.TryPublish(ctx, kanban.Message[int]{ID: "c", Payload: 1}), kanban.ErrFull)

	handled := make(chan string, 2)
	cctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() {
		assert.NoError(t, q.Consume(cctx, func(_ context.Context, d kanban.Delivery[int]) error {
			handled <- d.ID
			return nil
		}, kanban.ConsumeOptions{WIP: 1}))
	})
	assert.Equal(t, "a", next(t, handled))
	assert.Equal(t, "b", next(t, handled))
	drained(t, q)
	stop()
	wg.Wait()
	require.NoError(t, q.Shutdown(ctx))
}
