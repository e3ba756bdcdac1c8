package queuetest

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/kanban"
)

// stores returns q as the dead-letter store and backlog reader every
// backend must be.
func stores(t *testing.T, q kanban.Queue[Payload]) (kanban.DeadLetterStore, kanban.BacklogReader) {
	t.Helper()
	s, ok := q.(kanban.DeadLetterStore)
	require.True(t, ok, "%T does not implement kanban.DeadLetterStore", q)
	b, ok := q.(kanban.BacklogReader)
	require.True(t, ok, "%T does not implement kanban.BacklogReader", q)
	return s, b
}

// keys are the keys of the messages killDeadLetters sends to the dead
// letters, in order.
var keys = []string{"a", "b", "a", "c", "a"}

// killDeadLetters publishes one message per key of keys, m-1 to m-5, and
// has a consumer with WIP 1 fail each for good with reason "refused <key>",
// so that they are dead-lettered in that order. It returns the messages.
func killDeadLetters(t *testing.T, q kanban.Queue[Payload]) []kanban.Message[Payload] {
	t.Helper()
	var msgs []kanban.Message[Payload]
	for i, k := range keys {
		m := msg(i+1, k)
		m.Headers = kanban.Header{"X-Kept": strconv.Itoa(i + 1)}
		msgs = append(msgs, m)
	}
	publishAll(t, q, msgs...)
	dead := newCountdown(len(msgs))
	c := startConsumer(t, q, func(_ context.Context, d kanban.Delivery[Payload]) error {
		dead.hit()
		return kanban.Permanent(errors.New("refused " + d.Key))
	}, kanban.ConsumeOptions{WIP: 1})
	waitFor(t, dead.done, "every message to be refused")
	require.NoError(t, c.stop(t))
	return msgs
}

func ids(ls []kanban.DeadLetter) []string {
	out := []string{}
	for _, d := range ls {
		out = append(out, d.ID)
	}
	return out
}

func testDeadLetterList(t *testing.T, newQueue NewQueue) {
	q := newQueue(t, defaultOptions())
	s, _ := stores(t, q)
	ctx := context.Background()
	before := time.Now()
	msgs := killDeadLetters(t, q)

	all, err := s.ListDeadLetters(ctx, kanban.DeadLetterQuery{})
	require.NoError(t, err)
	assert.Equal(t, []string{"m-1", "m-2", "m-3", "m-4", "m-5"}, ids(all.Letters), "oldest first")
	assert.Equal(t, 5, all.Total)
	assert.Zero(t, all.Next, "one page holds them all")
	for i, d := range all.Letters {
		if i > 0 {
			assert.Greater(t, d.Seq, all.Letters[i-1].Seq, "Seq grows")
		}
		assert.Equal(t, msgs[i].Key, d.Key)
		assert.Equal(t, "refused "+msgs[i].Key, d.Reason)
		assert.Equal(t, 1, d.Attempts)
		assert.Equal(t, strconv.Itoa(i+1), d.Headers["X-Kept"])
		assert.False(t, d.Time.Before(before.Add(-time.Second)), "dead-lettered during the test")
		var p Payload
		require.NoError(t, Codec{}.Unmarshal(d.Payload, &p))
		assert.Equal(t, msgs[i].Payload, p)
	}
	old, err := q.DeadLetters(ctx)
	require.NoError(t, err)
	assert.Equal(t, all.Letters, old, "DeadLetters lists the same, with their Seq")

	// Paging, either way.
	for _, newest := range []bool{false, true} {
		var got []string
		var cursor uint64
		pages := 0
		for {
			p, err := s.ListDeadLetters(ctx, kanban.DeadLetterQuery{Limit: 2, Newest: newest, Cursor: cursor})
			require.NoError(t, err)
			pages++
			assert.LessOrEqual(t, len(p.Letters), 2)
			got = append(got, ids(p.Letters)...)
			if p.Next == 0 {
				break
			}
			cursor = p.Next
			require.Less(t, pages, 10, "paging does not end")
		}
		want := []string{"m-1", "m-2", "m-3", "m-4", "m-5"}
		if newest {
			want = []string{"m-5", "m-4", "m-3", "m-2", "m-1"}
		}
		assert.Equal(t, want, got, "newest=%v", newest)
		assert.Equal(t, 3, pages, "newest=%v: pages of 2, 2 and 1", newest)
	}
	// A page that ends exactly at the last match has no Next.
	p, err := s.ListDeadLetters(ctx, kanban.DeadLetterQuery{Limit: 5})
	require.NoError(t, err)
	assert.Len(t, p.Letters, 5)
	assert.Zero(t, p.Next)

	// Filters.
	for _, tc := range []struct {
		name string
		f    kanban.DeadLetterFilter
		want []string
	}{
		{"key", kanban.DeadLetterFilter{Key: "a"}, []string{"m-1", "m-3", "m-5"}},
		{"reason", kanban.DeadLetterFilter{Reason: "used c"}, []string{"m-4"}},
		{"id", kanban.DeadLetterFilter{ID: "m-2"}, []string{"m-2"}},
		{"seq", kanban.DeadLetterFilter{Seq: all.Letters[2].Seq}, []string{"m-3"}},
		{"key and reason", kanban.DeadLetterFilter{Key: "a", Reason: "refused b"}, []string{}},
		{"before now", kanban.DeadLetterFilter{Before: time.Now().Add(time.Second)}, []string{"m-1", "m-2", "m-3", "m-4", "m-5"}},
		{"before the first", kanban.DeadLetterFilter{Before: all.Letters[0].Time}, []string{}},
		{"no such key", kanban.DeadLetterFilter{Key: "z"}, []string{}},
	} {
		p, err := s.ListDeadLetters(ctx, kanban.DeadLetterQuery{Filter: tc.f})
		require.NoError(t, err, tc.name)
		assert.Equal(t, tc.want, ids(p.Letters), tc.name)
		assert.Equal(t, 5, p.Total, "%s: Total counts every dead letter", tc.name)
	}
	// A filtered page continues with the next match.
	p, err = s.ListDeadLetters(ctx, kanban.DeadLetterQuery{Filter: kanban.DeadLetterFilter{Key: "a"}, Limit: 1, Newest: true})
	require.NoError(t, err)
	assert.Equal(t, []string{"m-5"}, ids(p.Letters))
	p, err = s.ListDeadLetters(ctx, kanban.DeadLetterQuery{Filter: kanban.DeadLetterFilter{Key: "a"}, Limit: 1, Newest: true, Cursor: p.Next})
	require.NoError(t, err)
	assert.Equal(t, []string{"m-3"}, ids(p.Letters))
	assert.NotZero(t, p.Next, "m-1 is left")
}

// redriveConsumer handles redriven messages: it records each delivery
// and counts down done.
type redriveConsumer struct {
	mu   sync.Mutex
	seen []kanban.Delivery[Payload]
}

func (r *redriveConsumer) handler(done *countdown) kanban.Handler[Payload] {
	return func(_ context.Context, d kanban.Delivery[Payload]) error {
		r.mu.Lock()
		r.seen = append(r.seen, d)
		r.mu.Unlock()
		done.hit()
		return nil
	}
}

func (r *redriveConsumer) deliveries() []kanban.Delivery[Payload] {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]kanban.Delivery[Payload](nil), r.seen...)
}

func testDeadLetterRedrive(t *testing.T, newQueue NewQueue) {
	q := newQueue(t, defaultOptions())
	s, _ := stores(t, q)
	ctx := context.Background()
	msgs := killDeadLetters(t, q)
	all, err := s.ListDeadLetters(ctx, kanban.DeadLetterQuery{})
	require.NoError(t, err)
	require.Len(t, all.Letters, 5)

	// One by Seq, then the rest of key "a", then all that is left.
	n, err := s.RedriveDeadLetters(ctx, kanban.DeadLetterFilter{Seq: all.Letters[1].Seq})
	require.NoError(t, err)
	assert.Equal(t, 1, n)
	n, err = s.RedriveDeadLetters(ctx, kanban.DeadLetterFilter{Seq: all.Letters[1].Seq})
	require.ErrorIs(t, err, kanban.ErrDeadLetterNotFound, "a dead letter redriven is gone")
	assert.Zero(t, n)
	n, err = s.RedriveDeadLetters(ctx, kanban.DeadLetterFilter{Key: "a", Before: time.Now().Add(time.Second)})
	require.NoError(t, err)
	assert.Equal(t, 3, n)
	left, err := s.ListDeadLetters(ctx, kanban.DeadLetterQuery{})
	require.NoError(t, err)
	assert.Equal(t, []string{"m-4"}, ids(left.Letters))
	n, err = s.RedriveDeadLetters(ctx, kanban.DeadLetterFilter{All: true})
	require.NoError(t, err)
	assert.Equal(t, 1, n)
	n, err = s.RedriveDeadLetters(ctx, kanban.DeadLetterFilter{All: true})
	require.NoError(t, err)
	assert.Zero(t, n, "nothing left to redrive")

	// The redriven messages are delivered once each, as they were, from
	// their first attempt, within the dedup window of their first publish.
	// A sentinel published once they are delivered comes after any copy
	// of them (WIP 1, in order).
	r := &redriveConsumer{}
	done := newCountdown(len(msgs))
	sentinel := make(chan struct{})
	c := startConsumer(t, q, func(ctx context.Context, d kanban.Delivery[Payload]) error {
		if d.ID == "m-99" {
			close(sentinel)
			return nil
		}
		return r.handler(done)(ctx, d)
	}, kanban.ConsumeOptions{WIP: 1})
	waitFor(t, done.done, "the redriven messages")
	publishAll(t, q, msg(99, ""))
	waitFor(t, sentinel, "the sentinel")
	require.NoError(t, c.stop(t))

	got := map[string]kanban.Delivery[Payload]{}
	for _, d := range r.deliveries() {
		_, twice := got[d.ID]
		assert.False(t, twice, "%s delivered twice", d.ID)
		got[d.ID] = d
	}
	require.Len(t, got, len(msgs))
	for i, m := range msgs {
		d := got[m.ID]
		assert.Equal(t, 1, d.Attempt, "%s: a redrive counts deliveries afresh", m.ID)
		assert.Equal(t, m.Key, d.Key)
		assert.Equal(t, m.Payload, d.Payload)
		assert.Equal(t, strconv.Itoa(i+1), d.Headers["X-Kept"], "%s: headers kept", m.ID)
	}
	dl, err := q.DeadLetters(ctx)
	require.NoError(t, err)
	assert.Empty(t, dl)
	st := q.Stats()
	assert.Equal(t, int64(5), st.Redriven)
	assert.Equal(t, int64(5), st.DeadLettered)
}

// testRedriveWhenFull: a redrive that cannot store its message (the queue
// full) leaves the dead letter, so nothing is lost, and stops there.
func testRedriveWhenFull(t *testing.T, newQueue NewQueue) {
	opts := defaultOptions()
	opts.Capacity = 2
	q := newQueue(t, opts)
	s, r := stores(t, q)
	ctx := context.Background()
	publishAll(t, q, msg(1, "a"), msg(2, "b"))
	dead := newCountdown(2)
	c := startConsumer(t, q, func(_ context.Context, d kanban.Delivery[Payload]) error {
		dead.hit()
		return kanban.Permanent(errors.New("refused"))
	}, kanban.ConsumeOptions{WIP: 1})
	waitFor(t, dead.done, "both messages to be refused")
	require.NoError(t, c.stop(t))
	waitDepth(t, r, 0)

	require.NoError(t, q.TryPublish(ctx, msg(3, "")), "one place taken")
	n, err := s.RedriveDeadLetters(ctx, kanban.DeadLetterFilter{All: true})
	require.ErrorIs(t, err, kanban.ErrFull)
	assert.Equal(t, 1, n, "the first fits, the second does not")
	left, err := s.ListDeadLetters(ctx, kanban.DeadLetterQuery{})
	require.NoError(t, err)
	assert.Equal(t, []string{"m-2"}, ids(left.Letters), "the one not redriven stays")
	n, err = s.RedriveDeadLetters(ctx, kanban.DeadLetterFilter{All: true})
	require.ErrorIs(t, err, kanban.ErrFull)
	assert.Zero(t, n)

	rc := &redriveConsumer{}
	done := newCountdown(2)
	c = startConsumer(t, q, rc.handler(done), kanban.ConsumeOptions{WIP: 1})
	waitFor(t, done.done, "m-3 and m-1")
	require.NoError(t, c.stop(t))
	waitDepth(t, r, 0)
	n, err = s.RedriveDeadLetters(ctx, kanban.DeadLetterFilter{All: true})
	require.NoError(t, err)
	assert.Equal(t, 1, n, "room again")
	done = newCountdown(1)
	c = startConsumer(t, q, rc.handler(done), kanban.ConsumeOptions{WIP: 1})
	waitFor(t, done.done, "m-2")
	require.NoError(t, c.stop(t))
	assert.ElementsMatch(t, []string{"m-1", "m-2", "m-3"}, func() []string {
		var out []string
		for _, d := range rc.deliveries() {
			out = append(out, d.ID)
		}
		return out
	}(), "every message delivered once")
	dl, err := q.DeadLetters(ctx)
	require.NoError(t, err)
	assert.Empty(t, dl)
}

func testDeadLetterDelete(t *testing.T, newQueue NewQueue) {
	q := newQueue(t, defaultOptions())
	s, _ := stores(t, q)
	ctx := context.Background()
	killDeadLetters(t, q)
	all, err := s.ListDeadLetters(ctx, kanban.DeadLetterQuery{})
	require.NoError(t, err)

	n, err := s.DeleteDeadLetters(ctx, kanban.DeadLetterFilter{Seq: all.Letters[0].Seq})
	require.NoError(t, err)
	assert.Equal(t, 1, n)
	n, err = s.DeleteDeadLetters(ctx, kanban.DeadLetterFilter{Seq: all.Letters[0].Seq})
	require.ErrorIs(t, err, kanban.ErrDeadLetterNotFound)
	assert.Zero(t, n)
	n, err = s.DeleteDeadLetters(ctx, kanban.DeadLetterFilter{Reason: "refused a"})
	require.NoError(t, err)
	assert.Equal(t, 2, n, "m-3 and m-5")
	n, err = s.DeleteDeadLetters(ctx, kanban.DeadLetterFilter{Key: "z"})
	require.NoError(t, err)
	assert.Zero(t, n, "a filter matching nothing deletes nothing")
	p, err := s.ListDeadLetters(ctx, kanban.DeadLetterQuery{})
	require.NoError(t, err)
	assert.Equal(t, []string{"m-2", "m-4"}, ids(p.Letters))
	assert.Equal(t, 2, p.Total)
	n, err = s.DeleteDeadLetters(ctx, kanban.DeadLetterFilter{All: true})
	require.NoError(t, err)
	assert.Equal(t, 2, n)
	p, err = s.ListDeadLetters(ctx, kanban.DeadLetterQuery{})
	require.NoError(t, err)
	assert.Empty(t, p.Letters)
	assert.Zero(t, p.Total)
	assert.Zero(t, q.Stats().Redriven, "deleting redrives nothing")
}

func testDeadLetterBadInput(t *testing.T, newQueue NewQueue) {
	q := newQueue(t, defaultOptions())
	s, _ := stores(t, q)
	ctx := context.Background()
	killDeadLetters(t, q)
	for _, f := range []kanban.DeadLetterFilter{{}, {All: true, Key: "a"}, {Reason: string(make([]byte, kanban.MaxFilterText+1))}} {
		n, err := s.RedriveDeadLetters(ctx, f)
		assert.Error(t, err, "redrive %+v", f)
		assert.Zero(t, n)
		n, err = s.DeleteDeadLetters(ctx, f)
		assert.Error(t, err, "delete %+v", f)
		assert.Zero(t, n)
	}
	_, err := s.RedriveDeadLetters(ctx, kanban.DeadLetterFilter{})
	assert.ErrorIs(t, err, kanban.ErrEmptyFilter)
	for _, query := range []kanban.DeadLetterQuery{{Limit: -1}, {Limit: kanban.MaxDeadLetterPage + 1}, {Filter: kanban.DeadLetterFilter{All: true, ID: "x"}}} {
		_, err := s.ListDeadLetters(ctx, query)
		assert.Error(t, err, "list %+v", query)
	}
	_, err = s.RedriveDeadLetters(ctx, kanban.DeadLetterFilter{Seq: 1 << 60})
	assert.ErrorIs(t, err, kanban.ErrDeadLetterNotFound)
	_, err = s.DeleteDeadLetters(ctx, kanban.DeadLetterFilter{Seq: 1 << 60})
	assert.ErrorIs(t, err, kanban.ErrDeadLetterNotFound)
	p, err := s.ListDeadLetters(ctx, kanban.DeadLetterQuery{})
	require.NoError(t, err)
	assert.Len(t, p.Letters, 5, "bad input changed nothing")
}

func testBacklog(t *testing.T, newQueue NewQueue) {
	q := newQueue(t, defaultOptions())
	_, r := stores(t, q)
	ctx := context.Background()
	b, err := r.Backlog(ctx)
	require.NoError(t, err)
	assert.Equal(t, kanban.Backlog{OldestKnown: b.OldestKnown}, b, "empty")

	start := time.Now()
	publishAll(t, q, msg(1, ""), msg(2, ""), msg(3, ""))
	b, err = r.Backlog(ctx)
	elapsed := time.Since(start)
	require.NoError(t, err)
	assert.Equal(t, int64(3), b.Depth)
	assert.Zero(t, b.DeadLetters)
	if b.OldestKnown {
		assert.GreaterOrEqual(t, b.Oldest, time.Duration(0))
		// Wall clocks of client and server may differ by a millisecond's
		// rounding.
		assert.LessOrEqual(t, b.Oldest, elapsed+time.Millisecond, "no older than the test")
	} else {
		assert.Zero(t, b.Oldest)
	}

	done := newCountdown(3)
	c := startConsumer(t, q, func(_ context.Context, d kanban.Delivery[Payload]) error {
		done.hit()
		if d.ID == "m-2" {
			return kanban.Permanent(errors.New("refused"))
		}
		return nil
	}, kanban.ConsumeOptions{})
	waitFor(t, done.done, "three messages")
	require.NoError(t, c.stop(t))
	b = waitDepth(t, r, 0)
	assert.Equal(t, kanban.Backlog{DeadLetters: 1, OldestKnown: b.OldestKnown}, b)
}

// waitDepth waits until r's Depth is depth and returns the Backlog: a
// backend may settle acknowledgements after the handler has returned.
func waitDepth(t *testing.T, r kanban.BacklogReader, depth int64) kanban.Backlog {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for {
		b, err := r.Backlog(context.Background())
		require.NoError(t, err)
		if b.Depth == depth {
			return b
		}
		if time.Now().After(deadline) {
			t.Fatalf("backlog depth %d, want %d", b.Depth, depth)
		}
		time.Sleep(time.Millisecond) // polling a condition under a deadline
	}
}

func testTracing(t *testing.T, newQueue NewQueue) {
	opts := defaultOptions()
	tr := NewTracer()
	opts.Tracer = tr
	q := newQueue(t, opts)
	publishAll(t, q, msg(1, "k"))
	var mu sync.Mutex
	var observed []error
	done := newCountdown(2)
	c := startConsumer(t, q, func(_ context.Context, d kanban.Delivery[Payload]) error {
		defer done.hit()
		if d.Attempt == 1 {
			return errors.New("once")
		}
		return nil
	}, kanban.ConsumeOptions{
		Backoff: kanban.BackoffFunc(func(int) time.Duration { return time.Millisecond }),
		Observer: kanban.HandlerObserverFunc(func(d time.Duration, err error) {
			assert.GreaterOrEqual(t, d, time.Duration(0))
			mu.Lock()
			observed = append(observed, err)
			mu.Unlock()
		}),
	})
	waitFor(t, done.done, "two attempts")
	require.NoError(t, c.stop(t))

	spans := tr.Spans()
	require.Len(t, spans, 3, "a send and two processes")
	send, p1, p2 := spans[0], spans[1], spans[2]
	assert.Equal(t, kanban.OpSend, send.Op.Type)
	assert.Equal(t, "m-1", send.Op.MessageID)
	assert.NotEmpty(t, send.Op.System)
	assert.NotEmpty(t, send.Op.Queue)
	assert.True(t, send.Ended)
	assert.NoError(t, send.Err)
	for i, p := range []Span{p1, p2} {
		assert.Equal(t, kanban.OpProcess, p.Op.Type)
		assert.Equal(t, "m-1", p.Op.MessageID)
		assert.Equal(t, i+1, p.Op.Attempt)
		assert.Equal(t, send.Op.System, p.Op.System)
		assert.Equal(t, send.Op.Queue, p.Op.Queue)
		assert.Equal(t, send.Name, p.Parent, "the process span follows the send span, through the message")
		assert.True(t, p.Ended)
	}
	assert.EqualError(t, p1.Err, "once")
	assert.NoError(t, p2.Err)
	mu.Lock()
	assert.Len(t, observed, 2)
	if len(observed) == 2 {
		assert.EqualError(t, observed[0], "once")
		assert.NoError(t, observed[1])
	}
	mu.Unlock()
	assert.Equal(t, int64(1), q.Stats().Redelivered)

	// A failed publish ends its span with the error.
	err := q.Publish(context.Background(), kanban.Message[Payload]{})
	require.ErrorIs(t, err, kanban.ErrNoID)
	spans = tr.Spans()
	require.Len(t, spans, 4)
	assert.ErrorIs(t, spans[3].Err, kanban.ErrNoID)
}

// testRedriveUndecodable: a dead letter whose payload the Codec cannot
// decode is redriven like any other — counted afresh from its first
// delivery — and, still undecodable, dead-lettered again at that first
// delivery, with its raw payload, without reaching the handler or
// stopping the consumer.
func testRedriveUndecodable(t *testing.T, newQueue NewQueue) {
	q := newQueue(t, defaultOptions())
	s, r := stores(t, q)
	ctx := context.Background()
	bad := msg(1, "k")
	bad.Payload.Text = Poison
	publishAll(t, q, bad)
	var mu sync.Mutex
	var handled []string
	good := make(chan struct{})
	h := func(_ context.Context, d kanban.Delivery[Payload]) error {
		mu.Lock()
		handled = append(handled, d.ID)
		mu.Unlock()
		if d.ID == "m-2" {
			close(good)
		}
		return nil
	}
	c := startConsumer(t, q, h, kanban.ConsumeOptions{})
	first := waitDeadLetters(t, s, 1)
	require.NoError(t, c.stop(t))

	n, err := s.RedriveDeadLetters(ctx, kanban.DeadLetterFilter{Seq: first[0].Seq})
	require.NoError(t, err)
	assert.Equal(t, 1, n)
	publishAll(t, q, msg(2, "k")) // behind it, of its key
	c = startConsumer(t, q, h, kanban.ConsumeOptions{PerKey: true})
	waitFor(t, good, "the message behind the redriven one")
	again := waitDeadLetters(t, s, 1)
	require.NoError(t, c.stop(t))
	waitDepth(t, r, 0)

	mu.Lock()
	assert.Equal(t, []string{"m-2"}, handled, "the bad payload never reaches the handler")
	mu.Unlock()
	d := again[0]
	assert.Equal(t, bad.ID, d.ID)
	assert.Greater(t, d.Seq, first[0].Seq, "a dead letter of its own")
	assert.Contains(t, d.Reason, "decode")
	assert.Equal(t, 1, d.Attempts, "its deliveries counted afresh")
	assert.Equal(t, first[0].Payload, d.Payload, "the raw payload is kept")
	st := q.Stats()
	assert.Equal(t, int64(1), st.Redriven)
	assert.Equal(t, int64(2), st.DeadLettered)
	assert.Equal(t, int64(1), st.Handled)
	assert.Equal(t, int64(0), st.InFlight)
}

// waitDeadLetters waits until s keeps n dead letters and returns them: a
// backend may store a dead letter after its consumer has moved on.
func waitDeadLetters(t *testing.T, s kanban.DeadLetterStore, n int) []kanban.DeadLetter {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for {
		p, err := s.ListDeadLetters(context.Background(), kanban.DeadLetterQuery{})
		require.NoError(t, err)
		if len(p.Letters) == n {
			return p.Letters
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d dead letters, want %d", len(p.Letters), n)
		}
		time.Sleep(time.Millisecond) // polling a condition under a deadline
	}
}

// testDeadLetterSeqNotMatching: a redrive or delete whose filter names a
// dead letter kept by its Seq, and fields it does not match, does nothing
// and says so — naming what the dead letter has, in the same words from
// every backend — rather than that the dead letter is not there. It is
// ErrDeadLetterNotFound all the same, as the filter selects none.
func testDeadLetterSeqNotMatching(t *testing.T, newQueue NewQueue) {
	q := newQueue(t, defaultOptions())
	s, _ := stores(t, q)
	ctx := context.Background()
	killDeadLetters(t, q)
	all, err := s.ListDeadLetters(ctx, kanban.DeadLetterQuery{})
	require.NoError(t, err)
	require.Len(t, all.Letters, 5)
	third := all.Letters[2] // m-3, key "a", "refused a"
	seq := strconv.FormatUint(third.Seq, 10)
	at := third.Time.UTC().Format(time.RFC3339Nano)
	before := third.Time.Add(-time.Second)
	for _, tc := range []struct {
		name string
		f    kanban.DeadLetterFilter
		want string // after "kanban: <op> dead letter <seq>: "
	}{
		{"key", kanban.DeadLetterFilter{Seq: third.Seq, Key: "other"},
			`it does not match the filter: its key is "a", not "other"`},
		{"id", kanban.DeadLetterFilter{Seq: third.Seq, ID: "m-4"},
			`it does not match the filter: its ID is "m-3", not "m-4"`},
		{"reason", kanban.DeadLetterFilter{Seq: third.Seq, Reason: "refused b"},
			`it does not match the filter: its reason "refused a" does not contain "refused b"`},
		{"before", kanban.DeadLetterFilter{Seq: third.Seq, Before: before},
			`it does not match the filter: it was dead-lettered at ` + at + `, not before ` + before.UTC().Format(time.RFC3339Nano)},
		{"two fields, one matching", kanban.DeadLetterFilter{Seq: third.Seq, Key: "a", Reason: "refused c"},
			`it does not match the filter: its reason "refused a" does not contain "refused c"`},
		{"every field", kanban.DeadLetterFilter{Seq: third.Seq, ID: "m-9", Key: "b", Reason: "x"},
			`it does not match the filter: its ID is "m-3", not "m-9"; its key is "a", not "b"; its reason "refused a" does not contain "x"`},
	} {
		n, err := s.RedriveDeadLetters(ctx, tc.f)
		require.ErrorIs(t, err, kanban.ErrDeadLetterNotFound, "redrive, %s", tc.name)
		assert.EqualError(t, err, "kanban: redriving dead letter "+seq+": "+tc.want, "redrive, %s", tc.name)
		assert.Zero(t, n, "redrive, %s", tc.name)
		n, err = s.DeleteDeadLetters(ctx, tc.f)
		require.ErrorIs(t, err, kanban.ErrDeadLetterNotFound, "delete, %s", tc.name)
		assert.EqualError(t, err, "kanban: deleting dead letter "+seq+": "+tc.want, "delete, %s", tc.name)
		assert.Zero(t, n, "delete, %s", tc.name)
		var mismatch *kanban.DeadLetterMismatchError
		if assert.ErrorAs(t, err, &mismatch, tc.name) {
			assert.Equal(t, third.Seq, mismatch.Letter.Seq, tc.name)
			assert.Equal(t, tc.f, mismatch.Filter, tc.name)
		}
	}
	p, err := s.ListDeadLetters(ctx, kanban.DeadLetterQuery{})
	require.NoError(t, err)
	assert.Equal(t, all.Letters, p.Letters, "nothing redriven or deleted")
	assert.Zero(t, q.Stats().Redriven)

	// Matching, it goes.
	n, err := s.DeleteDeadLetters(ctx, kanban.DeadLetterFilter{Seq: third.Seq, Key: "a", Reason: "refused a", Before: third.Time.Add(time.Second)})
	require.NoError(t, err)
	assert.Equal(t, 1, n)
}
