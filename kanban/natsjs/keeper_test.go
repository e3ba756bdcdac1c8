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
func drained[T any](t *testing.T, q *natsjs.Queue[T]) {
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

// runConsumer runs q's consumer with opts until the returned stop is
// called; each message handled sends its ID on handled.
func runConsumer[T any](t *testing.T, q *natsjs.Queue[T], opts kanban.ConsumeOptions) (handled <-chan string, stop func()) {
	t.Helper()
	ids := make(chan string, 64)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		assert.NoError(t, q.Consume(ctx, func(_ context.Context, d kanban.Delivery[T]) error {
			ids <- d.ID
			return nil
		}, opts))
	})
	return ids, func() { cancel(); wg.Wait() }
}

// handleAll consumes q until it is drained and returns the IDs handled,
// in their order.
func handleAll[T any](t *testing.T, q *natsjs.Queue[T], wip int) []string {
	t.Helper()
	handled, stop := runConsumer(t, q, kanban.ConsumeOptions{WIP: wip})
	drained(t, q)
	stop()
	var ids []string
	for len(handled) > 0 {
		ids = append(ids, <-handled)
	}
	return ids
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
	handled, stop := runConsumer(t, q, kanban.ConsumeOptions{WIP: 1})
	const n = 40
	for i := range n {
		id := strconv.Itoa(i)
		require.NoError(t, q.Publish(ctx, kanban.Message[int]{ID: id, Payload: i}))
		require.Equal(t, id, next(t, handled))
		drained(t, q)
	}
	stop()
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

	assert.ElementsMatch(t, []string{"0", "1", "2"}, handleAll(t, q, 4))
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
	handled, stop := runConsumer(t, q, kanban.ConsumeOptions{WIP: 1, MaxAttempts: 1})
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

	assert.Equal(t, []string{"a", "b"}, handleAll(t, q, 1))
	require.NoError(t, q.Shutdown(ctx))
}

// TestLoweredCapacityDropsNoMessage: a queue made with a lower Capacity
// than the work stream's messages — Capacity lowered, or a process
// configured with less than another sharing the stream — leaves every
// message in it to be handled, and refuses new ones until the stream is
// below the new Capacity, as a memory-stored queue does. A limit on the
// work subject's messages would make the server delete the oldest beyond
// it when New lowers it, refusing new messages or not. (A 2.9 server
// deletes the oldest beyond a lowered MaxMsgs too, of any stream.)
func TestLoweredCapacityDropsNoMessage(t *testing.T) {
	ctx := context.Background()
	nc := connect(t, startServer(t, natsembed.Options{InProcess: true}).Connect)
	opts := natsjs.Options{Stream: "LOWERED", Capacity: 5, FetchWait: 100 * time.Millisecond}
	q, err := natsjs.New[int](ctx, nc, opts)
	require.NoError(t, err)
	want := make([]string, 5)
	for i := range want {
		want[i] = strconv.Itoa(i)
		require.NoError(t, q.Publish(ctx, kanban.Message[int]{ID: want[i], Payload: i}))
	}
	opts.Capacity = 3
	lowered, err := natsjs.New[int](ctx, nc, opts)
	require.NoError(t, err)
	b, err := lowered.Backlog(ctx)
	require.NoError(t, err)
	assert.Equal(t, int64(5), b.Depth, "no message dropped")
	require.ErrorIs(t, lowered.TryPublish(ctx, kanban.Message[int]{ID: "over", Payload: 9}), kanban.ErrFull)

	assert.Equal(t, want, handleAll(t, lowered, 1))
	for i := range 3 {
		require.NoError(t, lowered.TryPublish(ctx, kanban.Message[int]{ID: "new" + strconv.Itoa(i), Payload: i}))
	}
	require.ErrorIs(t, lowered.TryPublish(ctx, kanban.Message[int]{ID: "over", Payload: 9}), kanban.ErrFull, "the new Capacity")
	require.NoError(t, q.Shutdown(ctx))
	require.NoError(t, lowered.Shutdown(ctx))
}

// TestKeeperRotatesAtCapacityOne: with Capacity 1 a keeper still
// replaces the one before, on a server (2.9) that holds a roll-up to the
// stream's limit of messages per subject as any other message.
func TestKeeperRotatesAtCapacityOne(t *testing.T) {
	ctx := context.Background()
	nc := connect(t, debianServer(t))
	opts := natsjs.Options{Stream: "CAPACITY_ONE", Capacity: 1}
	q, err := natsjs.New[int](ctx, nc, opts)
	require.NoError(t, err)
	again, err := natsjs.New[int](ctx, nc, opts)
	require.NoError(t, err)
	s, err := q.JetStream().Stream(ctx, "CAPACITY_ONE")
	require.NoError(t, err)
	state := s.CachedInfo().State
	assert.Equal(t, uint64(1), state.Msgs, "one keeper")
	assert.Equal(t, uint64(2), state.LastSeq, "the second New's keeper replaced the first")
	require.NoError(t, q.Publish(ctx, kanban.Message[int]{ID: "a", Payload: 1}))
	require.ErrorIs(t, q.TryPublish(ctx, kanban.Message[int]{ID: "b", Payload: 2}), kanban.ErrFull)
	require.NoError(t, q.Shutdown(ctx))
	require.NoError(t, again.Shutdown(ctx))
}

// TestKeeperSubjectOfAnotherStream: a work stream whose keeper's subject
// another stream takes already (one on "<Stream>.>") is made without a
// keeper, as a memory-stored one: New does not fail, and no keeper goes
// into the other stream.
func TestKeeperSubjectOfAnotherStream(t *testing.T) {
	srv := startServer(t, natsembed.Options{InProcess: true})
	ctx := context.Background()
	nc := connect(t, srv.Connect)
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	events, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "EVENTS", Subjects: []string{"ORDERS.>"}})
	require.NoError(t, err)

	q, err := natsjs.New[[]byte](ctx, nc, natsjs.Options{Stream: "ORDERS", Capacity: 2, Codec: rawCodec{}, FetchWait: 100 * time.Millisecond})
	require.NoError(t, err)
	s, err := js.Stream(ctx, "ORDERS")
	require.NoError(t, err)
	assert.Equal(t, []string{"ORDERS"}, s.CachedInfo().Config.Subjects)
	assert.Equal(t, int64(2), s.CachedInfo().Config.MaxMsgs)
	for i := range 2 {
		require.NoError(t, q.Publish(ctx, kanban.Message[[]byte]{ID: strconv.Itoa(i), Payload: make([]byte, 40<<10)}))
	}
	require.ErrorIs(t, q.TryPublish(ctx, kanban.Message[[]byte]{ID: "over", Payload: []byte("x")}), kanban.ErrFull)
	require.NoError(t, nc.Flush())
	info, err := events.Info(ctx)
	require.NoError(t, err)
	assert.Zero(t, info.State.Msgs, "no keeper in the other stream")

	assert.Equal(t, []string{"0", "1"}, handleAll(t, q, 1))
	require.NoError(t, q.Shutdown(ctx))
}

// TestKeeperAddedWhileAQueueWithoutOneRuns: a Queue made without a keeper
// (another stream took the keeper's subject then) and one made with it
// after that stream was deleted share the work stream: both leave the
// keeper out of Backlog's Depth, and the durable filters it out whichever
// of them creates it last, so that no consumer is handed the keeper and
// removes it.
func TestKeeperAddedWhileAQueueWithoutOneRuns(t *testing.T) {
	for name, dial := range map[string]func(...nats.Option) (*nats.Conn, error){
		"embedded": startServer(t, natsembed.Options{InProcess: true}).Connect,
		"debian":   debianServer(t),
	} {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			nc := connect(t, dial)
			js, err := jetstream.New(nc)
			require.NoError(t, err)
			_, err = js.CreateStream(ctx, jetstream.StreamConfig{Name: "EVENTS", Subjects: []string{"MIXED.>"}})
			require.NoError(t, err)
			opts := natsjs.Options{Stream: "MIXED", Capacity: 3, FetchWait: 100 * time.Millisecond}
			without, err := natsjs.New[int](ctx, nc, opts)
			require.NoError(t, err)
			require.NoError(t, js.DeleteStream(ctx, "EVENTS"))
			with, err := natsjs.New[int](ctx, nc, opts)
			require.NoError(t, err)
			s, err := js.Stream(ctx, "MIXED")
			require.NoError(t, err)
			require.Equal(t, uint64(1), s.CachedInfo().State.Msgs, "the keeper")

			for _, q := range []*natsjs.Queue[int]{without, with} {
				b, err := q.Backlog(ctx)
				require.NoError(t, err)
				assert.Zero(t, b.Depth, "the keeper is not counted")
			}
			// The one with the keeper creates the durable first, the one
			// without it after.
			for i, q := range []*natsjs.Queue[int]{with, without} {
				handled, stop := runConsumer(t, q, kanban.ConsumeOptions{WIP: 1})
				id := strconv.Itoa(i)
				require.NoError(t, with.Publish(ctx, kanban.Message[int]{ID: id, Payload: i}))
				assert.Equal(t, id, next(t, handled))
				stop()
				c, err := js.Consumer(ctx, "MIXED", with.Options().Durable)
				require.NoError(t, err)
				assert.Equal(t, "MIXED", c.CachedInfo().Config.FilterSubject, "the keeper filtered out")
			}
			require.NoError(t, without.Shutdown(ctx))
			require.NoError(t, with.Shutdown(ctx))
		})
	}
}

// TestWorkSubjectOfAnotherStreamLogsNoKeeperFallback: when another stream
// takes the work subject itself, New fails, and does not log first that
// it made the work stream without a keeper; it logs that when it made it.
func TestWorkSubjectOfAnotherStreamLogsNoKeeperFallback(t *testing.T) {
	ctx := context.Background()
	nc := connect(t, startServer(t, natsembed.Options{InProcess: true}).Connect)
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	_, err = js.CreateStream(ctx, jetstream.StreamConfig{Name: "EVENTS", Subjects: []string{"TAKEN", "TAKEN.>"}})
	require.NoError(t, err)
	log := newMsgLog("natsjs: the work stream's keeper subject is another stream's; the work stream has no keeper")
	_, err = natsjs.New[int](ctx, nc, natsjs.Options{Stream: "TAKEN", Logger: log.logger()})
	require.Error(t, err)
	assert.Zero(t, log.count(), "no work stream was made")

	// The keeper's subject alone taken: New makes the stream and says so.
	_, err = js.CreateStream(ctx, jetstream.StreamConfig{Name: "OTHER", Subjects: []string{"FREE.>"}})
	require.NoError(t, err)
	q, err := natsjs.New[int](ctx, nc, natsjs.Options{Stream: "FREE", Logger: log.logger()})
	require.NoError(t, err)
	assert.Equal(t, 1, log.count())
	require.NoError(t, q.Shutdown(ctx))
}
