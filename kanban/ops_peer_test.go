package kanban_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"pgregory.net/rapid"

	"github.com/taipattern/taikit/kanban"
)

// What operators of other queues expect of dead letters (asynq's archived
// tasks, River's discarded jobs, SQS's redrive to source), stated for the
// Memory queue at the edges: a redrive while a consumer runs, a Seq not
// kept, a filter matching none, a redriven message failing again, the
// order letters are listed in, a redrive into a full queue, two redrives
// at once, per-key order, and the Backlog after each operation.

// opsFixture is a Memory queue and a handler that records each delivery
// and fails those whose ID has an error set.
type opsFixture struct {
	t *testing.T
	q *kanban.Memory[string]

	mu      sync.Mutex
	fail    map[string]error // by ID: what the handler returns
	seen    []kanban.Delivery[string]
	running int
	most    int // the most handlers running at once
	hold    chan struct{}
}

func newOpsFixture(t *testing.T, opts kanban.MemoryOptions) *opsFixture {
	t.Helper()
	q, err := kanban.NewMemory[string](opts)
	require.NoError(t, err)
	return &opsFixture{t: t, q: q, fail: map[string]error{}}
}

func (f *opsFixture) setFail(id string, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err == nil {
		delete(f.fail, id)
		return
	}
	f.fail[id] = err
}

func (f *opsFixture) handle(ctx context.Context, d kanban.Delivery[string]) error {
	f.mu.Lock()
	f.seen = append(f.seen, d)
	f.running++
	f.most = max(f.most, f.running)
	err, hold := f.fail[d.ID], f.hold
	f.mu.Unlock()
	if hold != nil {
		select {
		case <-hold:
		case <-ctx.Done():
		}
	}
	f.mu.Lock()
	f.running--
	f.mu.Unlock()
	return err
}

// consume starts a consumer and returns what stops it.
func (f *opsFixture) consume(opts kanban.ConsumeOptions) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.q.Consume(ctx, f.handle, opts) }()
	return func() {
		cancel()
		require.NoError(f.t, <-done)
	}
}

func (f *opsFixture) publish(ids ...string) {
	for _, id := range ids {
		require.NoError(f.t, f.q.Publish(context.Background(), kanban.Message[string]{ID: id, Key: "k-" + id[:1], Payload: "p-" + id}))
	}
}

// refuse publishes ids and has a consumer with WIP 1 refuse each with
// reason "refused <id>", so that they are dead-lettered in that order.
func (f *opsFixture) refuse(ids ...string) {
	for _, id := range ids {
		f.setFail(id, kanban.Permanent(errors.New("refused "+id)))
	}
	stop := f.consume(kanban.ConsumeOptions{WIP: 1})
	f.publish(ids...)
	synctest.Wait()
	stop()
}

// deliveries returns the IDs delivered, and the attempts of each, in
// order, and forgets them.
func (f *opsFixture) deliveries() (ids []string, attempts map[string][]int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	attempts = map[string][]int{}
	ids = []string{}
	for _, d := range f.seen {
		ids = append(ids, d.ID)
		attempts[d.ID] = append(attempts[d.ID], d.Attempt)
	}
	f.seen = nil
	return ids, attempts
}

func (f *opsFixture) letters(q kanban.DeadLetterQuery) kanban.DeadLetterPage {
	f.t.Helper()
	p, err := f.q.ListDeadLetters(context.Background(), q)
	require.NoError(f.t, err)
	return p
}

func (f *opsFixture) backlog() kanban.Backlog {
	f.t.Helper()
	b, err := f.q.Backlog(context.Background())
	require.NoError(f.t, err)
	return b
}

func letterIDs(p kanban.DeadLetterPage) []string {
	out := []string{}
	for _, d := range p.Letters {
		out = append(out, d.ID)
	}
	return out
}

// TestRedriveWhileConsumingDeliversOnceFromAttemptOne: a message that ran
// out of attempts, redriven while its consumer runs, is delivered once
// more, its deliveries counted afresh from 1 (as a redrive to source in
// SQS resets the receive count), and leaves no dead letter behind.
func TestRedriveWhileConsumingDeliversOnceFromAttemptOne(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newOpsFixture(t, kanban.MemoryOptions{})
		ctx := context.Background()
		f.setFail("x1", errors.New("gateway down"))
		stop := f.consume(kanban.ConsumeOptions{WIP: 2, MaxAttempts: 3,
			Backoff: kanban.BackoffFunc(func(int) time.Duration { return time.Second })})
		defer stop()
		f.publish("x1", "y1")
		time.Sleep(time.Minute)
		synctest.Wait()
		p := f.letters(kanban.DeadLetterQuery{})
		require.Equal(t, []string{"x1"}, letterIDs(p))
		assert.Equal(t, 3, p.Letters[0].Attempts, "MaxAttempts deliveries made")
		assert.Equal(t, "gateway down", p.Letters[0].Reason)
		_, attempts := f.deliveries()
		assert.Equal(t, []int{1, 2, 3}, attempts["x1"])

		f.setFail("x1", nil) // fixed
		n, err := f.q.RedriveDeadLetters(ctx, kanban.DeadLetterFilter{Seq: p.Letters[0].Seq})
		require.NoError(t, err)
		assert.Equal(t, 1, n)
		time.Sleep(time.Minute)
		synctest.Wait()
		ids, attempts := f.deliveries()
		assert.Equal(t, []string{"x1"}, ids, "delivered once")
		assert.Equal(t, []int{1}, attempts["x1"], "counted afresh")
		assert.Empty(t, f.letters(kanban.DeadLetterQuery{}).Letters)
		assert.Equal(t, kanban.Backlog{OldestKnown: true}, f.backlog())
		st := f.q.Stats()
		assert.Equal(t, int64(1), st.Redriven)
		assert.Equal(t, int64(1), st.DeadLettered)
		assert.Equal(t, int64(2), st.Handled)
		assert.Equal(t, int64(2), st.Retried)
	})
}

// TestRedriveOrDeleteOfASeqNotKept: naming a dead letter that is not kept
// (deleted, redriven, or never there) is ErrDeadLetterNotFound, naming
// the Seq, and changes nothing, as asynq's "task not found" for an ID
// not among the archived tasks.
func TestRedriveOrDeleteOfASeqNotKept(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newOpsFixture(t, kanban.MemoryOptions{})
		ctx := context.Background()
		f.refuse("a1", "b1", "c1")
		all := f.letters(kanban.DeadLetterQuery{})
		require.Len(t, all.Letters, 3)
		first, second := all.Letters[0].Seq, all.Letters[1].Seq

		n, err := f.q.DeleteDeadLetters(ctx, kanban.DeadLetterFilter{Seq: first})
		require.NoError(t, err)
		assert.Equal(t, 1, n)
		n, err = f.q.RedriveDeadLetters(ctx, kanban.DeadLetterFilter{Seq: second})
		require.NoError(t, err)
		assert.Equal(t, 1, n)

		for _, seq := range []uint64{first, second, all.Letters[2].Seq + 1, 1 << 62} {
			n, err = f.q.RedriveDeadLetters(ctx, kanban.DeadLetterFilter{Seq: seq})
			require.ErrorIs(t, err, kanban.ErrDeadLetterNotFound, "redrive %d", seq)
			assert.Contains(t, err.Error(), "dead letter "+strconv.FormatUint(seq, 10))
			assert.Zero(t, n)
			n, err = f.q.DeleteDeadLetters(ctx, kanban.DeadLetterFilter{Seq: seq})
			require.ErrorIs(t, err, kanban.ErrDeadLetterNotFound, "delete %d", seq)
			assert.Contains(t, err.Error(), "dead letter "+strconv.FormatUint(seq, 10))
			assert.Zero(t, n)
		}
		assert.Equal(t, []string{"c1"}, letterIDs(f.letters(kanban.DeadLetterQuery{})))
		assert.Equal(t, kanban.Backlog{Depth: 1, OldestKnown: true, DeadLetters: 1}, f.backlog(), "b1 waits")
		assert.Equal(t, int64(1), f.q.Stats().Redriven)
	})
}

// TestDeadLetterFilterMatchingNone: a redrive or delete whose filter
// matches no dead letter (one not naming a Seq) does nothing and is no
// error, as asynq's "run all" of an empty archive: it returns 0.
func TestDeadLetterFilterMatchingNone(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newOpsFixture(t, kanban.MemoryOptions{})
		ctx := context.Background()

		// An empty store.
		for _, filter := range []kanban.DeadLetterFilter{{All: true}, {Key: "k-a"}} {
			n, err := f.q.RedriveDeadLetters(ctx, filter)
			assert.NoError(t, err)
			assert.Zero(t, n)
			n, err = f.q.DeleteDeadLetters(ctx, filter)
			assert.NoError(t, err)
			assert.Zero(t, n)
		}

		f.refuse("a1", "b1")
		before := f.letters(kanban.DeadLetterQuery{})
		for _, filter := range []kanban.DeadLetterFilter{
			{ID: "z1"},
			{Key: "k-z"},
			{Reason: "refused z"},
			{Before: before.Letters[0].Time},
			{ID: "a1", Key: "k-b"},
			{ID: "a1", Reason: "refused b1"},
		} {
			n, err := f.q.RedriveDeadLetters(ctx, filter)
			assert.NoError(t, err, "redrive %+v", filter)
			assert.Zero(t, n, "redrive %+v", filter)
			n, err = f.q.DeleteDeadLetters(ctx, filter)
			assert.NoError(t, err, "delete %+v", filter)
			assert.Zero(t, n, "delete %+v", filter)
			p := f.letters(kanban.DeadLetterQuery{Filter: filter})
			assert.Empty(t, p.Letters, "list %+v", filter)
			assert.Zero(t, p.Next)
			assert.Equal(t, 2, p.Total, "Total counts every dead letter")
		}
		assert.Equal(t, before, f.letters(kanban.DeadLetterQuery{}))
		assert.Equal(t, kanban.Backlog{OldestKnown: true, DeadLetters: 2}, f.backlog())
		assert.Zero(t, f.q.Stats().Redriven)
	})
}

// TestRedriveAfterDelete: a dead letter deleted cannot be redriven: a
// redrive by its ID finds nothing, one of All moves only the others.
func TestRedriveAfterDelete(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newOpsFixture(t, kanban.MemoryOptions{})
		ctx := context.Background()
		f.refuse("a1", "b1", "a2")
		n, err := f.q.DeleteDeadLetters(ctx, kanban.DeadLetterFilter{ID: "b1"})
		require.NoError(t, err)
		assert.Equal(t, 1, n)
		n, err = f.q.RedriveDeadLetters(ctx, kanban.DeadLetterFilter{ID: "b1"})
		require.NoError(t, err)
		assert.Zero(t, n)
		n, err = f.q.RedriveDeadLetters(ctx, kanban.DeadLetterFilter{All: true})
		require.NoError(t, err)
		assert.Equal(t, 2, n)
		assert.Equal(t, kanban.Backlog{Depth: 2, OldestKnown: true}, f.backlog())

		f.setFail("a1", nil)
		f.setFail("a2", nil)
		f.deliveries()
		stop := f.consume(kanban.ConsumeOptions{WIP: 1})
		synctest.Wait()
		stop()
		ids, _ := f.deliveries()
		assert.Equal(t, []string{"a1", "a2"}, ids, "oldest first; the deleted one never comes")
	})
}

// TestRedrivenMessageFailingAgain: a redriven message that fails again is
// dead-lettered again with its new reason and attempts, as a new dead
// letter (a new Seq, the newest), and listed once: its old letter went
// with the redrive.
func TestRedrivenMessageFailingAgain(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newOpsFixture(t, kanban.MemoryOptions{})
		ctx := context.Background()
		f.refuse("a1", "b1")
		old := f.letters(kanban.DeadLetterQuery{})
		require.Equal(t, []string{"a1", "b1"}, letterIDs(old))

		f.setFail("a1", errors.New("card expired"))
		stop := f.consume(kanban.ConsumeOptions{WIP: 1, MaxAttempts: 2,
			Backoff: kanban.BackoffFunc(func(int) time.Duration { return time.Second })})
		n, err := f.q.RedriveDeadLetters(ctx, kanban.DeadLetterFilter{ID: "a1"})
		require.NoError(t, err)
		assert.Equal(t, 1, n)
		time.Sleep(time.Minute)
		synctest.Wait()
		stop()

		p := f.letters(kanban.DeadLetterQuery{})
		require.Equal(t, []string{"b1", "a1"}, letterIDs(p), "once each, the refailed one newest")
		assert.Equal(t, 2, p.Total)
		again := p.Letters[1]
		assert.Equal(t, "card expired", again.Reason, "the new reason")
		assert.Equal(t, 2, again.Attempts, "the deliveries since the redrive")
		assert.Greater(t, again.Seq, old.Letters[1].Seq, "a dead letter of its own")
		assert.Equal(t, `"p-a1"`, string(again.Payload))
		assert.Equal(t, "k-a", again.Key)
		_, err = f.q.RedriveDeadLetters(ctx, kanban.DeadLetterFilter{Seq: old.Letters[0].Seq})
		assert.ErrorIs(t, err, kanban.ErrDeadLetterNotFound, "the old letter is gone")
		st := f.q.Stats()
		assert.Equal(t, int64(3), st.DeadLettered)
		assert.Equal(t, int64(1), st.Redriven)
		assert.Equal(t, kanban.Backlog{OldestKnown: true, DeadLetters: 2}, f.backlog())
	})
}

// TestDeadLettersListedInSeqOrder: dead letters are listed in the order
// they were dead-lettered (by Seq), either way, whatever was redriven or
// deleted in between; a cursor taken before a change continues after it
// without repeating or skipping a letter still kept.
func TestDeadLettersListedInSeqOrder(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newOpsFixture(t, kanban.MemoryOptions{})
		ctx := context.Background()
		f.refuse("a1", "b1", "c1", "d1", "e1")
		page := f.letters(kanban.DeadLetterQuery{Limit: 2})
		require.Equal(t, []string{"a1", "b1"}, letterIDs(page))
		require.NotZero(t, page.Next)

		// b1 and d1 are redriven and refused again; c1 is deleted.
		n, err := f.q.RedriveDeadLetters(ctx, kanban.DeadLetterFilter{Reason: "refused b1"})
		require.NoError(t, err)
		assert.Equal(t, 1, n)
		n, err = f.q.RedriveDeadLetters(ctx, kanban.DeadLetterFilter{ID: "d1"})
		require.NoError(t, err)
		assert.Equal(t, 1, n)
		stop := f.consume(kanban.ConsumeOptions{WIP: 1})
		synctest.Wait()
		stop()
		n, err = f.q.DeleteDeadLetters(ctx, kanban.DeadLetterFilter{Key: "k-c"})
		require.NoError(t, err)
		assert.Equal(t, 1, n)

		assert.Equal(t, []string{"a1", "e1", "b1", "d1"}, letterIDs(f.letters(kanban.DeadLetterQuery{})))
		assert.Equal(t, []string{"d1", "b1", "e1", "a1"}, letterIDs(f.letters(kanban.DeadLetterQuery{Newest: true})))
		rest := f.letters(kanban.DeadLetterQuery{Limit: 2, Cursor: page.Next})
		assert.Equal(t, []string{"e1", "b1"}, letterIDs(rest), "the cursor of b1's old letter")
		rest = f.letters(kanban.DeadLetterQuery{Limit: 2, Cursor: rest.Next})
		assert.Equal(t, []string{"d1"}, letterIDs(rest))
		assert.Zero(t, rest.Next)
		dls, err := f.q.DeadLetters(ctx)
		require.NoError(t, err)
		assert.Equal(t, f.letters(kanban.DeadLetterQuery{}).Letters, dls, "DeadLetters lists them alike")
	})
}

// TestRedriveAllIntoAFullQueue: a redrive never takes the queue past its
// Capacity: into a full queue it moves what fits, oldest first, and
// fails with ErrFull naming the first letter left, which stays with the
// ones after it, in order; nothing is lost, and once there is room they
// go too. A consumer running meanwhile holds to its WIP.
func TestRedriveAllIntoAFullQueue(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newOpsFixture(t, kanban.MemoryOptions{Capacity: 3})
		ctx := context.Background()
		f.refuse("a1", "b1", "c1", "d1")
		for _, id := range []string{"a1", "b1", "c1", "d1"} {
			f.setFail(id, nil)
		}
		f.deliveries()
		all := f.letters(kanban.DeadLetterQuery{})
		f.publish("p1", "q1")

		n, err := f.q.RedriveDeadLetters(ctx, kanban.DeadLetterFilter{All: true})
		require.ErrorIs(t, err, kanban.ErrFull)
		assert.Contains(t, err.Error(), "dead letter "+strconv.FormatUint(all.Letters[1].Seq, 10)+" (message b1)")
		assert.Equal(t, 1, n)
		assert.Equal(t, 3, f.q.Len())
		assert.Equal(t, []string{"b1", "c1", "d1"}, letterIDs(f.letters(kanban.DeadLetterQuery{})))
		n, err = f.q.RedriveDeadLetters(ctx, kanban.DeadLetterFilter{Seq: all.Letters[2].Seq})
		require.ErrorIs(t, err, kanban.ErrFull, "full, not missing")
		assert.Zero(t, n)
		assert.Equal(t, kanban.Backlog{Depth: 3, OldestKnown: true, DeadLetters: 3}, f.backlog())

		// Handlers held: the queue stays full while they run.
		f.mu.Lock()
		f.hold = make(chan struct{})
		f.mu.Unlock()
		stop := f.consume(kanban.ConsumeOptions{WIP: 2, PerKey: true})
		synctest.Wait()
		n, err = f.q.RedriveDeadLetters(ctx, kanban.DeadLetterFilter{All: true})
		require.ErrorIs(t, err, kanban.ErrFull)
		assert.Zero(t, n)
		f.mu.Lock()
		close(f.hold)
		f.hold = nil
		f.mu.Unlock()
		synctest.Wait()
		n, err = f.q.RedriveDeadLetters(ctx, kanban.DeadLetterFilter{All: true})
		require.NoError(t, err)
		assert.Equal(t, 3, n)
		synctest.Wait()
		stop()

		ids, attempts := f.deliveries()
		assert.ElementsMatch(t, []string{"p1", "q1", "a1", "b1", "c1", "d1"}, ids)
		for id, a := range attempts {
			assert.Equal(t, []int{1}, a, "%s delivered once", id)
		}
		f.mu.Lock()
		assert.LessOrEqual(t, f.most, 2, "WIP")
		f.mu.Unlock()
		assert.Empty(t, f.letters(kanban.DeadLetterQuery{}).Letters)
		assert.Equal(t, kanban.Backlog{OldestKnown: true}, f.backlog())
	})
}

// TestConcurrentRedriveAll: two redrives of every dead letter at once
// move each letter once between them, and each message is delivered once.
func TestConcurrentRedriveAll(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newOpsFixture(t, kanban.MemoryOptions{})
		ctx := context.Background()
		var ids []string
		for i := range 40 {
			ids = append(ids, "m"+strconv.Itoa(i))
		}
		f.refuse(ids...)
		for _, id := range ids {
			f.setFail(id, nil)
		}
		f.deliveries()
		stop := f.consume(kanban.ConsumeOptions{WIP: 3})
		var wg sync.WaitGroup
		var counts [2]int
		var errs [2]error
		for i := range 2 {
			wg.Go(func() { counts[i], errs[i] = f.q.RedriveDeadLetters(ctx, kanban.DeadLetterFilter{All: true}) })
		}
		wg.Wait()
		synctest.Wait()
		stop()
		require.NoError(t, errs[0])
		require.NoError(t, errs[1])
		assert.Equal(t, len(ids), counts[0]+counts[1])
		got, attempts := f.deliveries()
		assert.ElementsMatch(t, ids, got, "each delivered once")
		for id, a := range attempts {
			assert.Equal(t, []int{1}, a, id)
		}
		assert.Equal(t, int64(len(ids)), f.q.Stats().Redriven)
		assert.Equal(t, kanban.Backlog{OldestKnown: true}, f.backlog())
	})
}

// TestRedriveKeepsKeyOrder: a redrive moves a key's dead letters back in
// the order they were dead-lettered, so a PerKey consumer handles them
// in that order, as it did the first time.
func TestRedriveKeepsKeyOrder(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newOpsFixture(t, kanban.MemoryOptions{})
		ctx := context.Background()
		order := []string{"a1", "b1", "a2", "a3", "b2", "a4", "b3"}
		f.refuse(order...)
		for _, id := range order {
			f.setFail(id, nil)
		}
		f.deliveries()
		stop := f.consume(kanban.ConsumeOptions{WIP: 4, PerKey: true})
		n, err := f.q.RedriveDeadLetters(ctx, kanban.DeadLetterFilter{Key: "k-a"})
		require.NoError(t, err)
		assert.Equal(t, 4, n)
		n, err = f.q.RedriveDeadLetters(ctx, kanban.DeadLetterFilter{All: true})
		require.NoError(t, err)
		assert.Equal(t, 3, n)
		synctest.Wait()
		stop()
		got, _ := f.deliveries()
		byKey := map[string][]string{}
		for _, id := range got {
			byKey[id[:1]] = append(byKey[id[:1]], id)
		}
		assert.Equal(t, []string{"a1", "a2", "a3", "a4"}, byKey["a"])
		assert.Equal(t, []string{"b1", "b2", "b3"}, byKey["b"])
	})
}

// TestBacklogAfterDeadLetterOperations: Depth counts a redriven message
// from the redrive; Oldest times it from the redrive, as a publish; a
// deletion or a redrive changes DeadLetters by the letters it took, and
// a list changes nothing.
func TestBacklogAfterDeadLetterOperations(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newOpsFixture(t, kanban.MemoryOptions{})
		ctx := context.Background()
		f.publish("a1", "b1", "c1")
		time.Sleep(5 * time.Second)
		assert.Equal(t, kanban.Backlog{Depth: 3, Oldest: 5 * time.Second, OldestKnown: true}, f.backlog())
		for _, id := range []string{"a1", "b1", "c1"} {
			f.setFail(id, kanban.Permanent(errors.New("refused "+id)))
		}
		stop := f.consume(kanban.ConsumeOptions{WIP: 1})
		synctest.Wait()
		stop()
		assert.Equal(t, kanban.Backlog{OldestKnown: true, DeadLetters: 3}, f.backlog())

		time.Sleep(10 * time.Second)
		n, err := f.q.RedriveDeadLetters(ctx, kanban.DeadLetterFilter{ID: "a1"})
		require.NoError(t, err)
		require.Equal(t, 1, n)
		assert.Equal(t, kanban.Backlog{Depth: 1, OldestKnown: true, DeadLetters: 2}, f.backlog())
		time.Sleep(3 * time.Second)
		f.letters(kanban.DeadLetterQuery{})
		assert.Equal(t, kanban.Backlog{Depth: 1, Oldest: 3 * time.Second, OldestKnown: true, DeadLetters: 2}, f.backlog())

		n, err = f.q.DeleteDeadLetters(ctx, kanban.DeadLetterFilter{ID: "b1"})
		require.NoError(t, err)
		require.Equal(t, 1, n)
		assert.Equal(t, kanban.Backlog{Depth: 1, Oldest: 3 * time.Second, OldestKnown: true, DeadLetters: 1}, f.backlog())

		n, err = f.q.RedriveDeadLetters(ctx, kanban.DeadLetterFilter{All: true})
		require.NoError(t, err)
		require.Equal(t, 1, n)
		assert.Equal(t, kanban.Backlog{Depth: 2, Oldest: 3 * time.Second, OldestKnown: true}, f.backlog(), "a1 at the head")
		time.Sleep(time.Second)
		assert.Equal(t, kanban.Backlog{Depth: 2, Oldest: 4 * time.Second, OldestKnown: true}, f.backlog())
	})
}

// dlModelLetter is a dead letter as the model of TestDeadLetterOpsMatchModel
// knows it.
type dlModelLetter struct {
	seq          uint64
	id, key, why string
}

// TestDeadLetterOpsMatchModel drives a Memory queue's dead letters and a
// model of them (a list in Seq order, the oldest pushed out past the
// limit) with the same random dead-letterings, redrives (the messages
// handled or refused again), deletions and listings, filtered by All,
// Seq (kept or not), ID, Key, Reason or two fields at once, and requires
// the same counts, errors, pages and Backlog after each step.
func TestDeadLetterOpsMatchModel(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		limit := rapid.IntRange(1, 8).Draw(rt, "deadLetterLimit")
		type step struct {
			op      int // 0 dead-letter, 1 redrive, 2 delete, 3 list
			id, key string
			why     string // the reason of a dead-lettering or a refusal; "" handles
			filter  int
			seq     int // an index into the letters kept, or past them
			limit   int
			newest  bool
		}
		var steps []step
		for range rapid.IntRange(1, 30).Draw(rt, "steps") {
			steps = append(steps, step{
				op:     rapid.IntRange(0, 3).Draw(rt, "op"),
				id:     "m" + strconv.Itoa(rapid.IntRange(0, 3).Draw(rt, "id")),
				key:    []string{"", "a", "b"}[rapid.IntRange(0, 2).Draw(rt, "key")],
				why:    []string{"", "gateway down", "card expired", "gateway slow"}[rapid.IntRange(0, 3).Draw(rt, "why")],
				filter: rapid.IntRange(0, 6).Draw(rt, "filter"),
				seq:    rapid.IntRange(0, 9).Draw(rt, "seq"),
				limit:  rapid.IntRange(1, 4).Draw(rt, "limit"),
				newest: rapid.Bool().Draw(rt, "newest"),
			})
		}
		var failure string
		synctest.Test(t, func(t *testing.T) {
			q, err := kanban.NewMemory[string](kanban.MemoryOptions{DeadLetterLimit: limit, DedupWindow: -1})
			require.NoError(t, err)
			ctx, cancel := context.WithCancel(context.Background())
			var mu sync.Mutex
			why := ""
			done := make(chan error, 1)
			go func() {
				done <- q.Consume(ctx, func(context.Context, kanban.Delivery[string]) error {
					mu.Lock()
					defer mu.Unlock()
					if why == "" {
						return nil
					}
					return kanban.Permanent(errors.New(why))
				}, kanban.ConsumeOptions{WIP: 1})
			}()
			defer func() {
				cancel()
				require.NoError(t, <-done)
			}()

			var (
				model      []dlModelLetter
				seq        uint64
				dead, redr int64
			)
			store := func(l dlModelLetter) {
				seq++
				l.seq = seq
				if len(model) == limit {
					model = model[1:]
				}
				model = append(model, l)
			}
			for i, s := range steps {
				f := kanban.DeadLetterFilter{All: true}
				switch s.filter {
				case 1:
					f = kanban.DeadLetterFilter{Seq: seq + 1}
					if s.seq < len(model) {
						f.Seq = model[s.seq].seq
					}
				case 2:
					f = kanban.DeadLetterFilter{ID: s.id}
				case 3:
					f = kanban.DeadLetterFilter{Key: s.key}
				case 4:
					f = kanban.DeadLetterFilter{Reason: "gateway"}
				case 5:
					f = kanban.DeadLetterFilter{ID: s.id, Key: s.key}
				case 6:
					f = kanban.DeadLetterFilter{Reason: "expired", Key: s.key}
				}
				if f.Key == "" && !f.All && f.ID == "" && f.Seq == 0 && f.Reason == "" {
					f.All = true
				}
				match := func(l dlModelLetter) bool {
					return f.All || ((f.Seq == 0 || l.seq == f.Seq) && (f.ID == "" || l.id == f.ID) &&
						(f.Key == "" || l.key == f.Key) && (f.Reason == "" || strings.Contains(l.why, f.Reason)))
				}
				var kept, moved []dlModelLetter
				for _, l := range model {
					if match(l) {
						moved = append(moved, l)
					} else {
						kept = append(kept, l)
					}
				}
				var wantErr error
				if f.Seq != 0 && len(moved) == 0 {
					wantErr = kanban.ErrDeadLetterNotFound
				}
				switch s.op {
				case 0:
					mu.Lock()
					why = s.why
					if why == "" {
						why = "refused"
					}
					reason := why
					mu.Unlock()
					if err := q.Publish(context.Background(), kanban.Message[string]{ID: s.id, Key: s.key}); err != nil {
						failure = fmt.Sprintf("step %d: publish: %v", i, err)
						return
					}
					synctest.Wait()
					store(dlModelLetter{id: s.id, key: s.key, why: reason})
					dead++
				case 1, 2:
					mu.Lock()
					why = s.why
					mu.Unlock()
					var n int
					if s.op == 1 {
						n, err = q.RedriveDeadLetters(context.Background(), f)
					} else {
						n, err = q.DeleteDeadLetters(context.Background(), f)
					}
					synctest.Wait()
					if n != len(moved) || !errors.Is(err, wantErr) || (err == nil) != (wantErr == nil) {
						failure = fmt.Sprintf("step %d: op %d of %+v: %d, %v; want %d, %v", i, s.op, f, n, err, len(moved), wantErr)
						return
					}
					model = kept
					if s.op == 1 {
						redr += int64(len(moved))
						for _, l := range moved {
							if s.why != "" {
								l.why = s.why
								store(l)
								dead++
							}
						}
					}
				case 3:
					want := []string{}
					for _, l := range moved {
						want = append(want, l.id+"/"+strconv.FormatUint(l.seq, 10)+"/"+l.why)
					}
					if s.newest {
						slices.Reverse(want)
					}
					got := []string{}
					var cursor uint64
					for pages := 0; ; pages++ {
						p, err := q.ListDeadLetters(context.Background(), kanban.DeadLetterQuery{Filter: f, Limit: s.limit, Newest: s.newest, Cursor: cursor})
						if err != nil || p.Total != len(model) || len(p.Letters) > s.limit || pages > len(model) {
							failure = fmt.Sprintf("step %d: list %+v: %+v, %v; %d kept", i, f, p, err, len(model))
							return
						}
						for _, d := range p.Letters {
							got = append(got, d.ID+"/"+strconv.FormatUint(d.Seq, 10)+"/"+d.Reason)
						}
						if p.Next == 0 {
							break
						}
						cursor = p.Next
					}
					if !slices.Equal(got, want) {
						failure = fmt.Sprintf("step %d: list %+v newest %v: %v; want %v", i, f, s.newest, got, want)
						return
					}
				}
				dls, err := q.DeadLetters(context.Background())
				require.NoError(t, err)
				if len(dls) != len(model) {
					failure = fmt.Sprintf("step %d: %d dead letters, want %d", i, len(dls), len(model))
					return
				}
				for j, d := range dls {
					l := model[j]
					if d.Seq != l.seq || d.ID != l.id || d.Key != l.key || d.Reason != l.why || d.Attempts != 1 {
						failure = fmt.Sprintf("step %d: dead letter %d is %+v; want %+v", i, j, d, l)
						return
					}
				}
				b, err := q.Backlog(context.Background())
				require.NoError(t, err)
				if b != (kanban.Backlog{DeadLetters: int64(len(model))}) {
					failure = fmt.Sprintf("step %d: backlog %+v with %d dead letters", i, b, len(model))
					return
				}
				st := q.Stats()
				if st.DeadLettered != dead || st.Redriven != redr || st.InFlight != 0 {
					failure = fmt.Sprintf("step %d: stats %+v; want %d dead-lettered, %d redriven", i, st, dead, redr)
					return
				}
			}
		})
		if failure != "" {
			rt.Fatal(failure)
		}
	})
}
