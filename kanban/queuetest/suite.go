package queuetest

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/kanban"
)

// waitLimit bounds every wait of the suite, so a broken backend fails
// instead of hanging. It is a safety net, not a timing assertion.
const waitLimit = 60 * time.Second

// Run runs the conformance suite against the queues newQueue makes.
func Run(t *testing.T, newQueue NewQueue) {
	tests := []struct {
		name string
		run  func(*testing.T, NewQueue)
	}{
		{"RoundTrip", testRoundTrip},
		{"WIPNeverExceeded", testWIP},
		{"PerKeyOrder", testPerKeyOrder},
		{"RetriesWithBackoff", testRetries},
		{"DeadLetters", testDeadLetters},
		{"Dedup", testDedup},
		{"Backpressure", testBackpressure},
		{"DrainLosesNothing", testDrain},
		{"DrainDeadline", testDrainDeadline},
		{"BadPayload", testBadPayload},
		{"ContextPropagation", testPropagation},
		{"Tracing", testTracing},
		{"DeadLetterList", testDeadLetterList},
		{"DeadLetterRedrive", testDeadLetterRedrive},
		{"DeadLetterRedriveWhenFull", testRedriveWhenFull},
		{"DeadLetterRedriveUndecodable", testRedriveUndecodable},
		{"DeadLetterDelete", testDeadLetterDelete},
		{"DeadLetterBadInput", testDeadLetterBadInput},
		{"DeadLetterSeqNotMatching", testDeadLetterSeqNotMatching},
		{"Backlog", testBacklog},
		{"ResendOnError", testResendOnError},
		{"ContinueAfterErrors", testContinueAfterErrors},
		{"ContinueAfterStops", testContinueAfterStops},
		{"ConcurrentStops", testConcurrentStops},
		{"HandlerPanics", testHandlerPanics},
		{"HandlerTimeout", testHandlerTimeout},
		{"HandlerContext", testHandlerContext},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.run(t, newQueue) })
	}
}

func defaultOptions() Options {
	return Options{Codec: Codec{}, Propagator: propagator{}, Tracer: NewTracer()}
}

func msg(i int, key string) kanban.Message[Payload] {
	return kanban.Message[Payload]{ID: "m-" + strconv.Itoa(i), Key: key, Payload: Payload{N: i, Text: "t" + strconv.Itoa(i)}}
}

// consumer runs Consume on its own goroutine until stop is called.
type consumer struct {
	cancel context.CancelFunc
	done   chan error
}

func startConsumer(t *testing.T, q kanban.Queue[Payload], h kanban.Handler[Payload], o kanban.ConsumeOptions) *consumer {
	ctx, cancel := context.WithCancel(context.Background())
	c := &consumer{cancel: cancel, done: make(chan error, 1)}
	go func() { c.done <- q.Consume(ctx, h, o) }()
	t.Cleanup(func() { _ = c.stop(t) })
	return c
}

// stop ends the consumer and returns what Consume returned.
func (c *consumer) stop(t *testing.T) error {
	c.cancel()
	if c.done == nil {
		return nil
	}
	select {
	case err := <-c.done:
		c.done = nil
		return err
	case <-time.After(waitLimit):
		t.Fatal("Consume did not return after its context ended")
		return nil
	}
}

func waitFor(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(waitLimit):
		t.Fatalf("timed out waiting for %s", what)
	}
}

// countdown closes done after n calls of hit.
type countdown struct {
	left atomic.Int64
	done chan struct{}
}

func newCountdown(n int) *countdown {
	c := &countdown{done: make(chan struct{})}
	c.left.Store(int64(n))
	return c
}

func (c *countdown) hit() {
	if c.left.Add(-1) == 0 {
		close(c.done)
	}
}

func publishAll(t *testing.T, q kanban.Queue[Payload], msgs ...kanban.Message[Payload]) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	for _, m := range msgs {
		require.NoError(t, q.Publish(ctx, m))
	}
}

func testRoundTrip(t *testing.T, newQueue NewQueue) {
	q := newQueue(t, defaultOptions())
	at := time.Date(2025, 3, 4, 5, 6, 7, 8, time.UTC)
	want := kanban.Message[Payload]{
		ID: "order-1", Key: "customer-7",
		Payload: Payload{N: 42, Text: "ünïcode", Tags: []string{"a", "b"}, Meta: map[string]string{"k": "v"}, At: at},
		Headers: kanban.Header{"X-Custom-CaSe": "kept", "lower-case": "also"},
	}
	publishAll(t, q, want)
	got := make(chan kanban.Delivery[Payload], 1)
	c := startConsumer(t, q, func(_ context.Context, d kanban.Delivery[Payload]) error {
		got <- d
		return nil
	}, kanban.ConsumeOptions{})
	var d kanban.Delivery[Payload]
	select {
	case d = <-got:
	case <-time.After(waitLimit):
		t.Fatal("message not delivered")
	}
	require.NoError(t, c.stop(t))
	assert.Equal(t, want.ID, d.ID)
	assert.Equal(t, want.Key, d.Key)
	assert.Equal(t, 1, d.Attempt)
	assert.True(t, want.Payload.At.Equal(d.Payload.At))
	d.Payload.At = want.Payload.At
	assert.Equal(t, want.Payload, d.Payload)
	assert.Equal(t, "kept", d.Headers["X-Custom-CaSe"], "header names are kept as written")
	assert.Equal(t, "also", d.Headers["lower-case"])
	s := q.Stats()
	assert.Equal(t, int64(1), s.Published)
	assert.Equal(t, int64(1), s.Handled)
	assert.Equal(t, int64(0), s.InFlight)
}

func testWIP(t *testing.T, newQueue NewQueue) {
	for _, perKey := range []bool{false, true} {
		t.Run(fmt.Sprintf("PerKey=%v", perKey), func(t *testing.T) {
			const n, wip = 60, 4
			q := newQueue(t, defaultOptions())
			var msgs []kanban.Message[Payload]
			for i := range n {
				msgs = append(msgs, msg(i, strconv.Itoa(i%10)))
			}
			publishAll(t, q, msgs...)
			var running, peak atomic.Int64
			full := make(chan struct{})
			var once sync.Once
			all := newCountdown(n)
			c := startConsumer(t, q, func(ctx context.Context, _ kanban.Delivery[Payload]) error {
				cur := running.Add(1)
				for p := peak.Load(); cur > p && !peak.CompareAndSwap(p, cur); p = peak.Load() {
				}
				if cur == wip {
					once.Do(func() { close(full) })
				}
				// The first handlers wait until WIP of them run at once,
				// proving the cap is reached and not only respected.
				select {
				case <-full:
				case <-ctx.Done():
				}
				running.Add(-1)
				all.hit()
				return nil
			}, kanban.ConsumeOptions{WIP: wip, PerKey: perKey})
			waitFor(t, all.done, "all messages handled")
			require.NoError(t, c.stop(t))
			assert.Equal(t, int64(wip), peak.Load(), "peak concurrency must reach and never exceed WIP")
			assert.Equal(t, int64(0), q.Stats().InFlight)
		})
	}
}

func testPerKeyOrder(t *testing.T, newQueue NewQueue) {
	const perKey = 25
	keys := []string{"eu", "us", "ap"}
	q := newQueue(t, defaultOptions())
	var msgs []kanban.Message[Payload]
	for i := range perKey * len(keys) {
		msgs = append(msgs, msg(i, keys[i%len(keys)]))
	}
	publishAll(t, q, msgs...)
	var mu sync.Mutex
	seen := map[string][]int{}
	busy := map[string]bool{}
	overlap := false
	failedOnce := false
	all := newCountdown(len(msgs))
	c := startConsumer(t, q, func(_ context.Context, d kanban.Delivery[Payload]) error {
		mu.Lock()
		if busy[d.Key] {
			overlap = true
		}
		busy[d.Key] = true
		// One message fails once: the retry must keep its key's order.
		fail := d.Payload.N == 7 && !failedOnce
		if fail {
			failedOnce = true
		} else {
			seen[d.Key] = append(seen[d.Key], d.Payload.N)
		}
		mu.Unlock()
		runtime.Gosched() // give another message of the key a chance to overlap
		mu.Lock()
		busy[d.Key] = false
		mu.Unlock()
		if fail {
			return errors.New("transient")
		}
		all.hit()
		return nil
	}, kanban.ConsumeOptions{WIP: 8, PerKey: true, Backoff: kanban.BackoffFunc(func(int) time.Duration { return time.Millisecond })})
	waitFor(t, all.done, "all messages handled")
	require.NoError(t, c.stop(t))
	mu.Lock()
	defer mu.Unlock()
	assert.False(t, overlap, "two messages of one key ran at once")
	for ki, k := range keys {
		var want []int
		for i := ki; i < perKey*len(keys); i += len(keys) {
			want = append(want, i)
		}
		assert.Equal(t, want, seen[k], "order of key %s", k)
	}
}

func testRetries(t *testing.T, newQueue NewQueue) {
	for _, perKey := range []bool{false, true} {
		t.Run(fmt.Sprintf("PerKey=%v", perKey), func(t *testing.T) {
			q := newQueue(t, defaultOptions())
			publishAll(t, q, msg(1, "k"))
			var mu sync.Mutex
			var attempts []int
			var delays []int
			done := make(chan struct{})
			backoff := kanban.BackoffFunc(func(attempt int) time.Duration {
				mu.Lock()
				delays = append(delays, attempt)
				mu.Unlock()
				return time.Duration(attempt) * time.Millisecond
			})
			c := startConsumer(t, q, func(_ context.Context, d kanban.Delivery[Payload]) error {
				mu.Lock()
				attempts = append(attempts, d.Attempt)
				mu.Unlock()
				if d.Attempt < 3 {
					return fmt.Errorf("fail %d", d.Attempt)
				}
				close(done)
				return nil
			}, kanban.ConsumeOptions{MaxAttempts: 5, PerKey: perKey, Backoff: backoff})
			waitFor(t, done, "third attempt")
			require.NoError(t, c.stop(t))
			mu.Lock()
			defer mu.Unlock()
			assert.Equal(t, []int{1, 2, 3}, attempts)
			assert.Equal(t, []int{1, 2}, delays, "back-off asked after each failed attempt")
			s := q.Stats()
			assert.Equal(t, int64(2), s.Retried)
			assert.Equal(t, int64(1), s.Handled)
			dl, err := q.DeadLetters(context.Background())
			require.NoError(t, err)
			assert.Empty(t, dl)
		})
	}
}

func testDeadLetters(t *testing.T, newQueue NewQueue) {
	q := newQueue(t, defaultOptions())
	exhausted := msg(1, "a")
	exhausted.Headers = kanban.Header{"Trace-Me": "yes"}
	permanent := msg(2, "b")
	publishAll(t, q, exhausted, permanent)
	var calls sync.Map
	dead := newCountdown(2)
	c := startConsumer(t, q, func(_ context.Context, d kanban.Delivery[Payload]) error {
		n, _ := calls.LoadOrStore(d.ID, new(atomic.Int64))
		n.(*atomic.Int64).Add(1)
		if d.ID == permanent.ID {
			dead.hit()
			return kanban.Permanent(errors.New("card declined"))
		}
		if d.Attempt == 3 {
			dead.hit()
		}
		return fmt.Errorf("boom %d", d.Attempt)
	}, kanban.ConsumeOptions{WIP: 2, MaxAttempts: 3, Backoff: kanban.BackoffFunc(func(int) time.Duration { return time.Millisecond })})
	waitFor(t, dead.done, "both messages to fail for good")
	require.NoError(t, c.stop(t))

	dls, err := q.DeadLetters(context.Background())
	require.NoError(t, err)
	require.Len(t, dls, 2)
	byID := map[string]kanban.DeadLetter{}
	for _, d := range dls {
		byID[d.ID] = d
	}
	d := byID[exhausted.ID]
	assert.Equal(t, "a", d.Key)
	assert.Equal(t, "boom 3", d.Reason)
	assert.Equal(t, 3, d.Attempts)
	assert.Equal(t, "yes", d.Headers["Trace-Me"])
	assert.False(t, d.Time.IsZero())
	var p Payload
	require.NoError(t, Codec{}.Unmarshal(d.Payload, &p))
	assert.Equal(t, exhausted.Payload, p)

	d = byID[permanent.ID]
	assert.Equal(t, "card declined", d.Reason)
	assert.Equal(t, 1, d.Attempts)
	n, _ := calls.Load(permanent.ID)
	assert.Equal(t, int64(1), n.(*atomic.Int64).Load(), "a permanent error is not retried")

	s := q.Stats()
	assert.Equal(t, int64(2), s.DeadLettered)
	assert.Equal(t, int64(2), s.Retried)
	assert.Equal(t, int64(0), s.Handled)
	assert.Equal(t, int64(0), s.InFlight)
}

func testDedup(t *testing.T, newQueue NewQueue) {
	q := newQueue(t, defaultOptions())
	a, b := msg(1, ""), msg(2, "")
	a2 := a
	a2.Payload.Text = "second publish of the same id"
	sentinel := msg(99, "")
	publishAll(t, q, a, b, a2, a, sentinel)
	var mu sync.Mutex
	count := map[string]int{}
	texts := map[string]string{}
	done := make(chan struct{})
	c := startConsumer(t, q, func(_ context.Context, d kanban.Delivery[Payload]) error {
		mu.Lock()
		count[d.ID]++
		texts[d.ID] = d.Payload.Text
		mu.Unlock()
		if d.ID == sentinel.ID {
			close(done)
		}
		return nil
	}, kanban.ConsumeOptions{WIP: 1})
	waitFor(t, done, "sentinel")
	require.NoError(t, c.stop(t))
	mu.Lock()
	defer mu.Unlock()
	assert.Equal(t, map[string]int{a.ID: 1, b.ID: 1, sentinel.ID: 1}, count)
	assert.Equal(t, a.Payload.Text, texts[a.ID], "the first publish wins")
	s := q.Stats()
	assert.Equal(t, int64(3), s.Published)
	assert.Equal(t, int64(2), s.Duplicates)
}

func testBackpressure(t *testing.T, newQueue NewQueue) {
	opts := defaultOptions()
	opts.Capacity = 2
	q := newQueue(t, opts)
	ctx := context.Background()
	require.NoError(t, q.TryPublish(ctx, msg(1, "")))
	require.NoError(t, q.TryPublish(ctx, msg(2, "")))
	require.ErrorIs(t, q.TryPublish(ctx, msg(3, "")), kanban.ErrFull)

	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	require.ErrorIs(t, q.Publish(cancelled, msg(3, "")), context.Canceled)

	published := make(chan error, 1)
	go func() {
		pctx, cancel := context.WithTimeout(ctx, waitLimit)
		defer cancel()
		published <- q.Publish(pctx, msg(3, ""))
	}()
	// Still full: the waiting Publish has not got in.
	require.ErrorIs(t, q.TryPublish(ctx, msg(4, "")), kanban.ErrFull)

	var mu sync.Mutex
	var got []int
	all := newCountdown(3)
	c := startConsumer(t, q, func(_ context.Context, d kanban.Delivery[Payload]) error {
		mu.Lock()
		got = append(got, d.Payload.N)
		mu.Unlock()
		all.hit()
		return nil
	}, kanban.ConsumeOptions{})
	select {
	case err := <-published:
		require.NoError(t, err, "Publish waits for room, then stores")
	case <-time.After(waitLimit):
		t.Fatal("Publish did not return once there was room")
	}
	waitFor(t, all.done, "three messages")
	require.NoError(t, c.stop(t))
	mu.Lock()
	defer mu.Unlock()
	assert.ElementsMatch(t, []int{1, 2, 3}, got)
}

func testDrain(t *testing.T, newQueue NewQueue) {
	const n = 40
	q := newQueue(t, defaultOptions())
	var msgs []kanban.Message[Payload]
	for i := range n {
		msgs = append(msgs, msg(i, strconv.Itoa(i%3)))
	}
	publishAll(t, q, msgs...)
	var mu sync.Mutex
	handled := map[string]int{}
	record := func(id string) {
		mu.Lock()
		handled[id]++
		mu.Unlock()
	}
	// First consumer: stop it from inside a handler while others are in
	// flight and more are waiting for their key.
	ctx, cancel := context.WithCancel(context.Background())
	stopAt := newCountdown(10)
	release := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- q.Consume(ctx, func(_ context.Context, d kanban.Delivery[Payload]) error {
			stopAt.hit()
			select {
			case <-stopAt.done:
				cancel()
				<-release // in-flight work outlives the consumer's ctx
			default:
			}
			record(d.ID)
			return nil
		}, kanban.ConsumeOptions{WIP: 6, PerKey: true})
	}()
	waitFor(t, stopAt.done, "ten handlers")
	close(release)
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(waitLimit):
		t.Fatal("Consume did not drain")
	}
	assert.Equal(t, int64(0), q.Stats().InFlight, "every pulled message settled or released")

	mu.Lock()
	first := len(handled)
	mu.Unlock()
	require.Less(t, first, n, "the first consumer stopped early")
	// Second consumer: everything not handled is still there.
	all := make(chan struct{})
	var once sync.Once
	c := startConsumer(t, q, func(_ context.Context, d kanban.Delivery[Payload]) error {
		record(d.ID)
		mu.Lock()
		if len(handled) == n {
			once.Do(func() { close(all) })
		}
		mu.Unlock()
		return nil
	}, kanban.ConsumeOptions{WIP: 6, PerKey: true})
	waitFor(t, all, "every message")
	require.NoError(t, c.stop(t))
	mu.Lock()
	defer mu.Unlock()
	dups := 0
	for _, c := range handled {
		dups += c - 1
	}
	t.Logf("drain: %d handled by the first consumer, %d duplicates", first, dups)
}

func testDrainDeadline(t *testing.T, newQueue NewQueue) {
	for _, perKey := range []bool{false, true} {
		t.Run(fmt.Sprintf("PerKey=%v", perKey), func(t *testing.T) {
			q := newQueue(t, defaultOptions())
			publishAll(t, q, msg(1, ""))
			started := make(chan struct{})
			var once sync.Once
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() {
				done <- q.Consume(ctx, func(hctx context.Context, _ kanban.Delivery[Payload]) error {
					once.Do(func() { close(started) })
					<-hctx.Done() // a handler that only stops when told
					return hctx.Err()
				}, kanban.ConsumeOptions{DrainTimeout: time.Millisecond, PerKey: perKey})
			}()
			waitFor(t, started, "handler start")
			cancel()
			select {
			case err := <-done:
				require.ErrorIs(t, err, kanban.ErrDrainTimeout)
			case <-time.After(waitLimit):
				t.Fatal("Consume did not return at the drain deadline")
			}
			// The cancelled message was released, not lost nor dead-lettered.
			got := make(chan kanban.Delivery[Payload], 1)
			c := startConsumer(t, q, func(_ context.Context, d kanban.Delivery[Payload]) error {
				select {
				case got <- d:
				default:
				}
				return nil
			}, kanban.ConsumeOptions{})
			select {
			case d := <-got:
				assert.Equal(t, "m-1", d.ID)
			case <-time.After(waitLimit):
				t.Fatal("released message not redelivered")
			}
			require.NoError(t, c.stop(t))
			dl, err := q.DeadLetters(context.Background())
			require.NoError(t, err)
			assert.Empty(t, dl)
			s := q.Stats()
			assert.Equal(t, int64(1), s.Handled, "handled once, by the second consumer")
			assert.Equal(t, int64(0), s.Retried, "a cancelled handler's message is not retried")
			assert.Equal(t, int64(0), s.InFlight)
		})
	}
}

func testBadPayload(t *testing.T, newQueue NewQueue) {
	for _, perKey := range []bool{false, true} {
		t.Run(fmt.Sprintf("PerKey=%v", perKey), func(t *testing.T) {
			q := newQueue(t, defaultOptions())
			bad := msg(1, "k")
			bad.Payload.Text = Poison
			good := msg(2, "k")
			publishAll(t, q, bad, good)
			var handled []string
			var mu sync.Mutex
			done := make(chan struct{})
			c := startConsumer(t, q, func(_ context.Context, d kanban.Delivery[Payload]) error {
				mu.Lock()
				handled = append(handled, d.ID)
				mu.Unlock()
				if d.ID == good.ID {
					close(done)
				}
				return nil
			}, kanban.ConsumeOptions{PerKey: perKey})
			waitFor(t, done, "the good message after the bad one")
			require.NoError(t, c.stop(t))
			mu.Lock()
			assert.Equal(t, []string{good.ID}, handled, "the bad payload never reaches the handler")
			mu.Unlock()
			dls, err := q.DeadLetters(context.Background())
			require.NoError(t, err)
			require.Len(t, dls, 1)
			assert.Equal(t, bad.ID, dls[0].ID)
			assert.Contains(t, dls[0].Reason, "decode")
			assert.Contains(t, dls[0].Reason, "poison")
			assert.Equal(t, 1, dls[0].Attempts)
			assert.Contains(t, string(dls[0].Payload), Poison, "the raw payload is kept")
			s := q.Stats()
			assert.Equal(t, int64(1), s.Handled, "the good message alone")
			assert.Equal(t, int64(1), s.DeadLettered)
			assert.Equal(t, int64(0), s.InFlight)
		})
	}
}

func testPropagation(t *testing.T, newQueue NewQueue) {
	q := newQueue(t, defaultOptions())
	traced := msg(1, "")
	traced.Headers = kanban.Header{"X-Own": "kept"}
	own := traced.Headers.Clone()
	pctx := context.WithValue(context.Background(), traceKey{}, "trace-1")
	require.NoError(t, q.Publish(pctx, traced))
	assert.Equal(t, own, traced.Headers, "Publish adds to a copy, never to the caller's headers")
	publishAll(t, q, msg(2, "")) // a ctx with nothing to carry

	type seen struct {
		value   any
		headers kanban.Header
	}
	got := make(chan seen, 2)
	all := newCountdown(2)
	c := startConsumer(t, q, func(ctx context.Context, d kanban.Delivery[Payload]) error {
		got <- seen{ctx.Value(traceKey{}), d.Headers}
		all.hit()
		return nil
	}, kanban.ConsumeOptions{})
	waitFor(t, all.done, "both messages")
	require.NoError(t, c.stop(t))
	first, second := <-got, <-got
	assert.Equal(t, "trace-1", first.value, "the handler's ctx carries what the publisher's did")
	assert.Equal(t, "trace-1", first.headers[traceHeader], "in a header named as written")
	assert.Equal(t, "kept", first.headers["X-Own"])
	assert.Nil(t, second.value)
	assert.NotContains(t, second.headers, traceHeader, "nothing injected, nothing carried")
}
