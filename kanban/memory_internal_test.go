package kanban

import (
	"context"
	"errors"
	"reflect"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
	"unsafe"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// closed is a stop channel for take that is already closed: take then
// returns a message only if one is ready, and never waits, so a test
// whose message went missing fails instead of hanging.
var closed = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

// mustTake takes the ready message, failing the test if there is none.
func mustTake(t *testing.T, q *Memory[int], w *memWaiter[int]) *memEntry[int] {
	t.Helper()
	e, ok := q.take(w, closed)
	require.True(t, ok, "no message ready")
	return e
}

func TestTakeWithdrawsAWaiterWhenStopped(t *testing.T) {
	q, err := NewMemory[int](MemoryOptions{})
	require.NoError(t, err)
	stop := make(chan struct{})
	close(stop)
	_, ok := q.take(newMemWaiter[int](nil), stop)
	assert.False(t, ok)
	q.mu.Lock()
	assert.Empty(t, q.waiters, "a stopped taker is no longer handed messages")
	q.mu.Unlock()
	require.NoError(t, q.Publish(context.Background(), Message[int]{ID: "a", Payload: 1}))
	e := mustTake(t, q, newMemWaiter[int](nil))
	assert.Equal(t, 1, e.m.d.Payload)
	assert.Equal(t, 1, e.m.d.Attempt)
}

func TestEntriesAreReusedAfterAck(t *testing.T) {
	q, err := NewMemory[int](MemoryOptions{DedupWindow: -1})
	require.NoError(t, err)
	ctx := context.Background()
	w := newMemWaiter[int](nil)
	// publish writes the fields of Message one by one: one added to
	// Message must be added there too.
	require.Equal(t, 4, reflect.TypeFor[Message[int]]().NumField(), "publish copies every field of Message")
	for i := range 100 {
		m := Message[int]{ID: "m", Payload: i}
		if i%2 == 0 {
			m.Key, m.Headers = "k"+strconv.Itoa(i), Header{"h": strconv.Itoa(i)}
		}
		require.NoError(t, q.Publish(ctx, m))
		e := mustTake(t, q, w)
		require.Equal(t, m, e.m.d.Message, "a reused lease carries its new message and nothing of the last")
		require.Equal(t, 1, e.m.d.Attempt)
		require.NoError(t, e.Ack(ctx))
	}
	assert.Equal(t, 0, q.Len())
	allocs := testing.AllocsPerRun(100, func() {
		_ = q.Publish(ctx, Message[int]{ID: "m"})
		e, _ := q.take(w, closed) // nil, and a panic, if the message went missing
		_ = e.Ack(ctx)
	})
	assert.Zero(t, allocs, "publish, take and ack reuse entries")
	allocs = testing.AllocsPerRun(100, func() {
		_ = q.Publish(ctx, Message[int]{ID: "m"})
		e, _ := q.take(w, closed)
		_ = e.Release(ctx)
		e, _ = q.take(w, closed)
		_ = e.Retry(ctx, 0)
		e, _ = q.take(w, closed)
		_ = e.Ack(ctx)
	})
	assert.Zero(t, allocs, "a released or retried entry is reused too")
	assert.Equal(t, 0, q.Len())
}

// TestMemoryLayout keeps what a publish and a take touch under the lock on
// two cache lines. (A Memory falls in a size class that is a multiple of
// 64 bytes, so its offsets are its alignment within a line.)
func TestMemoryLayout(t *testing.T) {
	var q Memory[int]
	assert.Zero(t, unsafe.Offsetof(q.mu)%64, "mu starts a cache line")
	assert.Less(t, unsafe.Offsetof(q.space), unsafe.Offsetof(q.mu)+128, "the fields used under mu fit two lines")
}

func TestAttemptsCountDeliveries(t *testing.T) {
	q, err := NewMemory[int](MemoryOptions{DedupWindow: -1})
	require.NoError(t, err)
	ctx := context.Background()
	require.NoError(t, q.Publish(ctx, Message[int]{ID: "a"}))
	e := mustTake(t, q, newMemWaiter[int](nil))
	assert.Equal(t, 1, e.Attempt())
	require.NoError(t, e.Release(ctx))
	e = mustTake(t, q, newMemWaiter[int](nil))
	assert.Equal(t, 1, e.Attempt(), "a release is not an attempt")
	require.NoError(t, e.Retry(ctx, 0))
	e = mustTake(t, q, newMemWaiter[int](nil))
	assert.Equal(t, 2, e.Attempt(), "a retry is")
	require.NoError(t, e.Ack(ctx))
	require.NoError(t, q.Publish(ctx, Message[int]{ID: "b"}))
	e = mustTake(t, q, newMemWaiter[int](nil))
	assert.Equal(t, "b", e.ID())
	assert.Equal(t, 1, e.Attempt(), "a reused entry starts again")
}

// TestTakeStoppedAsAMessageIsHandedOver: a taker whose stop closes while
// a publisher hands it a message does not lose the message: it goes back
// to the front of the queue, for the next taker.
func TestTakeStoppedAsAMessageIsHandedOver(t *testing.T) {
	q, err := NewMemory[int](MemoryOptions{DedupWindow: -1})
	require.NoError(t, err)
	ctx := context.Background()
	for i := range 500 {
		w, stop := newMemWaiter[int](nil), make(chan struct{})
		type result struct {
			e  *memEntry[int]
			ok bool
		}
		got := make(chan result, 1)
		go func() {
			e, ok := q.take(w, stop)
			got <- result{e, ok}
		}()
		listed := false
		for range 1_000_000 { // bounded: the taker lists itself at once
			q.mu.Lock()
			listed = len(q.waiters) == 1
			q.mu.Unlock()
			if listed {
				break
			}
			runtime.Gosched()
		}
		require.True(t, listed, "round %d: the taker never waited", i)
		close(stop) // the taker gives up as the message arrives
		require.NoError(t, q.Publish(ctx, Message[int]{ID: "m", Payload: i}))
		r := <-got
		if !r.ok {
			r.e = mustTake(t, q, newMemWaiter[int](nil))
		}
		require.Equal(t, i, r.e.m.d.Payload, "round %d", i)
		require.Equal(t, 1, r.e.m.d.Attempt)
		require.NoError(t, r.e.Ack(ctx))
		require.Zero(t, q.Len())
		q.mu.Lock()
		require.Empty(t, q.waiters, "round %d: a stopped taker is not left waiting", i)
		q.mu.Unlock()
	}
}

// TestSharedLeasesStayWithTheirWorker: the leases of Serve's shared
// workers never join the free list that Pull's leases come from, even
// when they dead-letter, retry or release their message: a Pull handed
// one would share it with a running worker.
func TestSharedLeasesStayWithTheirWorker(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		q, err := NewMemory[int](MemoryOptions{})
		require.NoError(t, err)
		for i := range 12 {
			require.NoError(t, q.Publish(context.Background(), Message[int]{ID: strconv.Itoa(i), Payload: i}))
		}
		ctx, cancel := context.WithCancel(context.Background())
		var handled atomic.Int64
		err = q.Consume(ctx, func(_ context.Context, d Delivery[int]) error {
			handled.Add(1)
			switch {
			case d.Payload == 11:
				cancel()
				<-ctx.Done()
				return nil
			case d.Payload%2 == 0:
				return Permanent(errors.New("no"))
			}
			return errors.New("again") // retried after the back-off, then released by the drain
		}, ConsumeOptions{WIP: 3, MaxAttempts: 2, Backoff: BackoffFunc(func(int) time.Duration { return 0 })})
		require.NoError(t, err)
		require.Positive(t, handled.Load())
		q.mu.Lock()
		defer q.mu.Unlock()
		for _, e := range q.free {
			assert.False(t, e.own, "a shared worker's lease is in the free list")
		}
	})
}

// parked reports whether a goroutine running fn (a function name as stacks
// print it) is blocked: waiting on a lock or a channel.
func parked(fn string) bool {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	for _, g := range strings.Split(string(buf), "\n\n") {
		head, _, _ := strings.Cut(g, "\n")
		if strings.Contains(g, fn) && !strings.Contains(head, "[running]") && !strings.Contains(head, "[runnable]") {
			return true
		}
	}
	return false
}

// TestFullOnlyWithADuplicatesRoomIsNotFull: a publish holds room while
// its ID is checked against the dedup window; a TryPublish or a redrive
// that finds the queue full only by that room waits for the check, and
// stores its message once the duplicate gives the room back. They
// returned ErrFull, the queue empty.
func TestFullOnlyWithADuplicatesRoomIsNotFull(t *testing.T) {
	for _, tc := range []struct {
		name string // the function, as stacks print it
		do   func(q *Memory[int]) error
		id   string // of the message it stores
	}{
		{"TryPublish", func(q *Memory[int]) error {
			return q.TryPublish(context.Background(), Message[int]{ID: "z"})
		}, "z"},
		{"RedriveDeadLetters", func(q *Memory[int]) error {
			_, err := q.RedriveDeadLetters(context.Background(), DeadLetterFilter{All: true})
			return err
		}, "y"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			q, err := NewMemory[int](MemoryOptions{Capacity: 1})
			require.NoError(t, err)
			ctx := context.Background()
			w := newMemWaiter[int](nil)
			require.NoError(t, q.Publish(ctx, Message[int]{ID: "y"}))
			require.NoError(t, mustTake(t, q, w).DeadLetter(ctx, "failed", 1))
			require.NoError(t, q.Publish(ctx, Message[int]{ID: "x"}))
			require.NoError(t, mustTake(t, q, w).Ack(ctx)) // empty, x in the window

			err, dupErr := duringDuplicateCheck(q, tc.name, func() error { return tc.do(q) })
			require.NoError(t, err, "the queue holds nothing but a duplicate")
			require.NoError(t, dupErr)
			assert.Equal(t, int64(1), q.Stats().Duplicates)
			require.Equal(t, 1, q.Len())
			assert.Equal(t, tc.id, mustTake(t, q, w).ID(), "stored")
		})
	}
}

// duringDuplicateCheck runs do while a repeat of ID x, which q holds in
// its dedup window, holds its room until its check ends; the check ends
// once do waits for it (parked in name, as stacks print it) or returns.
// It returns do's error and the repeat's.
func duringDuplicateCheck(q *Memory[int], name string, do func() error) (err, dupErr error) {
	q.dedupMu.Lock() // the repeat of x holds its room until its check
	dup := make(chan error, 1)
	go func() { dup <- q.Publish(context.Background(), Message[int]{ID: "x"}) }()
	for q.Len() == 0 {
		runtime.Gosched()
	}
	done := make(chan error, 1)
	go func() { done <- do() }()
	for !parked(name) && len(done) == 0 {
		runtime.Gosched()
	}
	q.dedupMu.Unlock()
	return <-done, <-dup
}

// TestRedriveWaitsForTheRoomOfEveryLetterItMoves: a redrive of several
// dead letters that finds room for some only because a duplicate's
// publish holds the rest waits for its check, and moves them all. It moved
// those it had room for and failed with ErrFull on the next, though the
// duplicate then gave its room back.
func TestRedriveWaitsForTheRoomOfEveryLetterItMoves(t *testing.T) {
	q, err := NewMemory[int](MemoryOptions{Capacity: 2})
	require.NoError(t, err)
	ctx := context.Background()
	w := newMemWaiter[int](nil)
	for _, id := range []string{"y1", "y2"} {
		require.NoError(t, q.Publish(ctx, Message[int]{ID: id}))
		require.NoError(t, mustTake(t, q, w).DeadLetter(ctx, "failed", 1))
	}
	require.NoError(t, q.Publish(ctx, Message[int]{ID: "x"}))
	require.NoError(t, mustTake(t, q, w).Ack(ctx)) // empty, x in the window

	var n int
	err, dupErr := duringDuplicateCheck(q, "RedriveDeadLetters", func() (err error) {
		n, err = q.RedriveDeadLetters(ctx, DeadLetterFilter{All: true})
		return err
	})
	require.NoError(t, err, "the queue holds nothing but a duplicate")
	assert.Equal(t, 2, n)
	require.NoError(t, dupErr)
	assert.Equal(t, int64(1), q.Stats().Duplicates)
	require.Equal(t, 2, q.Len())
	dead, err := q.DeadLetters(ctx)
	require.NoError(t, err)
	assert.Empty(t, dead)
	assert.Equal(t, "y1", mustTake(t, q, w).ID())
	assert.Equal(t, "y2", mustTake(t, q, w).ID())
}

// TestDeadLetterAtTheLimitMovesNoOther: a dead letter stored when the
// store is at DeadLetterLimit pushes the oldest out without moving the
// others down one each, which cost a copy of the whole store, under the
// queue's lock, for every dead letter once the limit was reached (a
// millisecond each at a limit of 100 000). A letter kept is moved only
// when the store's array is reallocated, a few times in its life.
func TestDeadLetterAtTheLimitMovesNoOther(t *testing.T) {
	const limit = 64
	q, err := NewMemory[int](MemoryOptions{DeadLetterLimit: limit, DedupWindow: -1})
	require.NoError(t, err)
	ctx := context.Background()
	w := newMemWaiter[int](nil)
	deadLetter := func(i int) {
		require.NoError(t, q.Publish(ctx, Message[int]{ID: strconv.Itoa(i), Payload: i}))
		require.NoError(t, mustTake(t, q, w).DeadLetter(ctx, "r", 1))
	}
	for i := range limit {
		deadLetter(i)
	}
	// Follow the newest letter through its life in the store.
	followed := q.dead[len(q.dead)-1].dl.Seq
	at := &q.dead[len(q.dead)-1]
	moves := 0
	for i := range limit - 1 {
		deadLetter(limit + i)
		q.mu.Lock()
		j := int(followed - q.dead[0].dl.Seq)
		require.Equal(t, followed, q.dead[j].dl.Seq)
		if p := &q.dead[j]; p != at {
			moves++
			at = p
		}
		q.mu.Unlock()
	}
	assert.LessOrEqual(t, moves, 4, "a letter kept is moved only when the store grows its array")
	dls, err := q.DeadLetters(ctx)
	require.NoError(t, err)
	require.Len(t, dls, limit)
	for i, d := range dls {
		assert.Equal(t, strconv.Itoa(limit+i-1), d.ID, "the oldest pushed out, the rest in order")
	}
	assert.Equal(t, 0, q.Len())
}
