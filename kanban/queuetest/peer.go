package queuetest

// The cases of Watermill's pub/sub test suite (pubsub/tests) and handler
// middlewares (Retry, Recoverer, Timeout, PoisonQueue) for which a kanban
// Queue has the same notion, each stating what every backend does. Where
// kanban differs the comment says how:
//
//   - Watermill nacks a message; a kanban handler returns an error, and
//     the queue retries it after the back-off, up to MaxAttempts, then
//     dead-letters it (Watermill's Retry and PoisonQueue together).
//   - Watermill cancels a message's context once it is acked, and when
//     the subscriber closes; a kanban handler's ctx is the consumer's,
//     ended at the drain deadline, or once Consume returns: a consumer
//     whose ctx ends lets its running handlers finish.
//   - Watermill's Timeout middleware cancels the message's context after
//     a while; kanban sets no deadline on an attempt: a handler bounds its
//     own work, and the error it returns then fails the attempt as any
//     error does.

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/kanban"
)

// quickBackoff retries at once, or nearly: the suite tests what is
// retried, not when.
var quickBackoff = kanban.BackoffFunc(func(int) time.Duration { return time.Millisecond })

// ledger records what handlers did with each message, by ID.
type ledger struct {
	mu       sync.Mutex
	handled  map[string]int   // successful attempts
	failed   map[string]int   // failed attempts
	attempts map[string][]int // Delivery.Attempt of every attempt
	order    map[string][]int // by key, Payload.N of each success
	want     int
	all      chan struct{} // closed once want messages have succeeded
}

// newLedger returns a ledger that closes all once want distinct messages
// have succeeded.
func newLedger(want int) *ledger {
	return &ledger{
		handled: map[string]int{}, failed: map[string]int{}, attempts: map[string][]int{}, order: map[string][]int{},
		want: want, all: make(chan struct{}),
	}
}

// record notes an attempt at d, a success unless failed.
func (l *ledger) record(d kanban.Delivery[Payload], failed bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.attempts[d.ID] = append(l.attempts[d.ID], d.Attempt)
	if failed {
		l.failed[d.ID]++
		return
	}
	l.handled[d.ID]++
	l.order[d.Key] = append(l.order[d.Key], d.Payload.N)
	if len(l.handled) == l.want && l.handled[d.ID] == 1 {
		close(l.all)
	}
}

// succeeded returns how many distinct messages have succeeded.
func (l *ledger) succeeded() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.handled)
}

// assertOnce asserts that each of msgs succeeded exactly once.
func (l *ledger) assertOnce(t *testing.T, msgs []kanban.Message[Payload]) {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	want := map[string]int{}
	for _, m := range msgs {
		want[m.ID] = 1
	}
	assert.Equal(t, want, l.handled, "every message handled once: nothing lost, nothing handled again once acknowledged")
}

// assertKeyOrder asserts that each key's messages succeeded in the order
// they were published.
func (l *ledger) assertKeyOrder(t *testing.T, msgs []kanban.Message[Payload]) {
	t.Helper()
	want := map[string][]int{}
	for _, m := range msgs {
		want[m.Key] = append(want[m.Key], m.Payload.N)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	assert.Equal(t, want, l.order, "each key's messages in the order published")
}

func keyedMessages(n, keys int) []kanban.Message[Payload] {
	msgs := make([]kanban.Message[Payload], n)
	for i := range msgs {
		msgs[i] = msg(i, "k"+strconv.Itoa(i%keys))
	}
	return msgs
}

// testResendOnError is Watermill's TestResendOnError: a message whose
// handler fails is delivered again, and the consumer goes on with the
// others meanwhile. Every message here fails its first attempt: each is
// handled on its second, after the back-off, none is dead-lettered, and
// the stats count one retry and one redelivery for each.
func testResendOnError(t *testing.T, newQueue NewQueue) {
	for _, perKey := range []bool{false, true} {
		t.Run(fmt.Sprintf("PerKey=%v", perKey), func(t *testing.T) {
			const n = 20
			q := newQueue(t, defaultOptions())
			msgs := keyedMessages(n, 4)
			publishAll(t, q, msgs...)
			l := newLedger(n)
			c := startConsumer(t, q, func(_ context.Context, d kanban.Delivery[Payload]) error {
				if d.Attempt == 1 {
					l.record(d, true)
					return fmt.Errorf("first attempt at %s", d.ID)
				}
				l.record(d, false)
				return nil
			}, kanban.ConsumeOptions{WIP: 4, PerKey: perKey, Backoff: quickBackoff})
			waitFor(t, l.all, "every message handled")
			require.NoError(t, c.stop(t))
			l.assertOnce(t, msgs)
			l.mu.Lock()
			for _, m := range msgs {
				assert.Equal(t, []int{1, 2}, l.attempts[m.ID], "attempts at %s", m.ID)
			}
			l.mu.Unlock()
			if perKey {
				l.assertKeyOrder(t, msgs)
			}
			dl, err := q.DeadLetters(context.Background())
			require.NoError(t, err)
			assert.Empty(t, dl)
			s := q.Stats()
			assert.Equal(t, int64(n), s.Handled)
			assert.Equal(t, int64(n), s.Retried)
			assert.Equal(t, int64(n), s.Redelivered)
			assert.Equal(t, int64(0), s.InFlight)
		})
	}
}

// testContinueAfterErrors is Watermill's TestContinueAfterErrors: a
// consumer that fails every message it is given, then stops, leaves
// every message to the next one; nothing is lost while it waits out its
// back-off across the stop, and the attempts go on counting from where
// the first consumer left them (on JetStream a message handed back
// unstarted at the stop counts an attempt too: see
// kanban.ConsumeOptions.MaxAttempts).
func testContinueAfterErrors(t *testing.T, newQueue NewQueue) {
	const n = 20
	q := newQueue(t, defaultOptions())
	msgs := keyedMessages(n, 4)
	publishAll(t, q, msgs...)
	l := newLedger(n)
	// MaxAttempts well above the failures the first consumer can make
	// (n, and the WIP it holds as it stops): none is dead-lettered.
	opts := kanban.ConsumeOptions{WIP: 4, MaxAttempts: 100, Backoff: quickBackoff}

	failures := newCountdown(n)
	first := startConsumer(t, q, func(_ context.Context, d kanban.Delivery[Payload]) error {
		l.record(d, true)
		failures.hit()
		return errors.New("not yet")
	}, opts)
	waitFor(t, failures.done, "the first consumer's failures")
	require.NoError(t, first.stop(t))

	second := startConsumer(t, q, func(_ context.Context, d kanban.Delivery[Payload]) error {
		l.record(d, false)
		return nil
	}, opts)
	waitFor(t, l.all, "every message handled by the second consumer")
	require.NoError(t, second.stop(t))
	l.assertOnce(t, msgs)
	l.mu.Lock()
	for _, m := range msgs {
		at := l.attempts[m.ID]
		last := at[len(at)-1]
		assert.Greater(t, last, l.failed[m.ID], "%s: its attempts counted on, not afresh (%v)", m.ID, at)
	}
	l.mu.Unlock()
	dl, err := q.DeadLetters(context.Background())
	require.NoError(t, err)
	assert.Empty(t, dl)
	assert.Equal(t, int64(0), q.Stats().InFlight)
}

// testContinueAfterStops is Watermill's TestContinueAfterSubscribeClose:
// consumers that stop in turn, each part way through the backlog, lose
// nothing. A consumer whose ctx ends lets its running handlers finish
// and acknowledges their messages before Consume returns, and hands back
// the messages it pulled and did not start: so with clean stops (no
// drain deadline passing) no message is handled twice, and with PerKey
// each key's messages are handled in the order they were published,
// across the stops.
func testContinueAfterStops(t *testing.T, newQueue NewQueue) {
	for _, perKey := range []bool{false, true} {
		t.Run(fmt.Sprintf("PerKey=%v", perKey), func(t *testing.T) {
			const n, batch = 60, 12
			q := newQueue(t, defaultOptions())
			msgs := keyedMessages(n, 5)
			publishAll(t, q, msgs...)
			l := newLedger(n)
			consumers := 0
			for l.succeeded() < n {
				consumers++
				require.LessOrEqual(t, consumers, n, "each consumer handles one message at least")
				// The deadline only keeps a consumer that is never given
				// the rest from hanging.
				ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
				stopAt := newCountdown(batch)
				err := q.Consume(ctx, func(_ context.Context, d kanban.Delivery[Payload]) error {
					l.record(d, false)
					stopAt.hit()
					select {
					case <-stopAt.done:
						cancel() // stop part way, with other handlers running
					case <-l.all:
						cancel()
					default:
					}
					return nil
				}, kanban.ConsumeOptions{WIP: 4, PerKey: perKey})
				timedOut := errors.Is(ctx.Err(), context.DeadlineExceeded)
				cancel()
				require.NoError(t, err, "consumer %d", consumers)
				require.False(t, timedOut, "consumer %d was given no more messages, with %d of %d handled", consumers, l.succeeded(), n)
				assert.Equal(t, int64(0), q.Stats().InFlight, "consumer %d settled or handed back all it pulled", consumers)
			}
			t.Logf("%d consumers", consumers)
			l.assertOnce(t, msgs)
			if perKey {
				l.assertKeyOrder(t, msgs)
			}
			assert.Equal(t, int64(n), q.Stats().Handled)
		})
	}
}

// testConcurrentStops is Watermill's TestConcurrentClose: consumers of one
// queue started together and stopped together, with messages flowing,
// each return nil, and lose nothing; a consumer started afterwards
// handles what they left, and no message is handled twice.
func testConcurrentStops(t *testing.T, newQueue NewQueue) {
	const n, consumers = 40, 6
	q := newQueue(t, defaultOptions())
	msgs := keyedMessages(n, 8)
	publishAll(t, q, msgs...)
	l := newLedger(n)
	some := newCountdown(10)
	h := func(_ context.Context, d kanban.Delivery[Payload]) error {
		l.record(d, false)
		some.hit()
		return nil
	}
	var (
		start = make(chan struct{})
		wg    sync.WaitGroup
		stops = make([]context.CancelFunc, consumers)
		errs  = make(chan error, consumers)
	)
	for i := range consumers {
		ctx, cancel := context.WithCancel(context.Background())
		stops[i] = cancel
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			errs <- q.Consume(ctx, h, kanban.ConsumeOptions{WIP: 2, PerKey: i%2 == 0})
		}()
	}
	close(start)
	waitFor(t, some.done, "ten messages handled")
	stopAll := make(chan struct{})
	for _, stop := range stops {
		go func() { <-stopAll; stop() }()
	}
	close(stopAll)
	returned := make(chan struct{})
	go func() { wg.Wait(); close(returned) }()
	waitFor(t, returned, "every consumer to return")
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	assert.Equal(t, int64(0), q.Stats().InFlight)

	c := startConsumer(t, q, func(_ context.Context, d kanban.Delivery[Payload]) error {
		l.record(d, false)
		return nil
	}, kanban.ConsumeOptions{WIP: 4})
	waitFor(t, l.all, "every message")
	require.NoError(t, c.stop(t))
	l.assertOnce(t, msgs)
	assert.Equal(t, int64(n), q.Stats().Handled)
}

// testHandlerPanics is Watermill's Recoverer: a handler that panics fails
// its attempt, as one returning an error does, and the consumer goes on.
// The message is retried; once its attempts are used up it is
// dead-lettered with the panic (a *kanban.PanicError) as reason.
func testHandlerPanics(t *testing.T, newQueue NewQueue) {
	for _, perKey := range []bool{false, true} {
		t.Run(fmt.Sprintf("PerKey=%v", perKey), func(t *testing.T) {
			q := newQueue(t, defaultOptions())
			once, always, good := msg(1, "k"), msg(2, "k"), msg(3, "k")
			publishAll(t, q, once, always, good)
			l := newLedger(0)
			done := newCountdown(3)
			c := startConsumer(t, q, func(_ context.Context, d kanban.Delivery[Payload]) error {
				switch {
				case d.ID == always.ID || (d.ID == once.ID && d.Attempt == 1):
					l.record(d, true)
					if d.ID == always.ID && d.Attempt == 3 {
						done.hit()
					}
					panic("handler bug " + d.ID)
				}
				l.record(d, false)
				done.hit()
				return nil
			}, kanban.ConsumeOptions{MaxAttempts: 3, PerKey: perKey, Backoff: quickBackoff})
			waitFor(t, done.done, "both good messages handled and the bad one dead")
			require.NoError(t, c.stop(t))
			l.mu.Lock()
			assert.Equal(t, []int{1, 2}, l.attempts[once.ID], "a panic is retried")
			assert.Equal(t, []int{1, 2, 3}, l.attempts[always.ID])
			assert.Equal(t, 1, l.handled[good.ID], "the consumer goes on after a panic")
			l.mu.Unlock()
			dls, err := q.DeadLetters(context.Background())
			require.NoError(t, err)
			require.Len(t, dls, 1)
			assert.Equal(t, always.ID, dls[0].ID)
			assert.Equal(t, (&kanban.PanicError{Value: "handler bug " + always.ID}).Error(), dls[0].Reason)
			assert.Equal(t, 3, dls[0].Attempts)
			s := q.Stats()
			assert.Equal(t, int64(2), s.Handled)
			assert.Equal(t, int64(3), s.Retried, "one for the panic once, two for the one always")
			assert.Equal(t, int64(1), s.DeadLettered)
			assert.Equal(t, int64(0), s.InFlight)
		})
	}
}

// testHandlerTimeout is Watermill's Timeout middleware: kanban sets no
// deadline on an attempt, so a handler bounds its own work, with
// context.WithTimeout on its ctx. The error it returns when that deadline
// passes fails the attempt as any error does: retried after the back-off,
// the attempt counted, and dead-lettered with the error as reason once
// the attempts are used up. Only the consumer's own drain deadline hands
// a message back without counting its attempt (see DrainDeadline).
func testHandlerTimeout(t *testing.T, newQueue NewQueue) {
	for _, perKey := range []bool{false, true} {
		t.Run(fmt.Sprintf("PerKey=%v", perKey), func(t *testing.T) {
			q := newQueue(t, defaultOptions())
			slowTwice, slowAlways := msg(1, "k"), msg(2, "k")
			publishAll(t, q, slowTwice, slowAlways)
			l := newLedger(0)
			done := newCountdown(2)
			// work takes longer than the handler allows itself, except the
			// third attempt at slowTwice.
			work := func(ctx context.Context, d kanban.Delivery[Payload]) error {
				if d.ID == slowTwice.ID && d.Attempt == 3 {
					return nil
				}
				<-ctx.Done()
				return ctx.Err()
			}
			c := startConsumer(t, q, func(ctx context.Context, d kanban.Delivery[Payload]) error {
				ctx, cancel := context.WithTimeout(ctx, time.Nanosecond)
				defer cancel()
				err := work(ctx, d)
				l.record(d, err != nil)
				if d.Attempt == 3 {
					done.hit()
				}
				return err
			}, kanban.ConsumeOptions{MaxAttempts: 3, PerKey: perKey, Backoff: quickBackoff})
			waitFor(t, done.done, "the third attempt at each")
			require.NoError(t, c.stop(t))
			l.mu.Lock()
			assert.Equal(t, []int{1, 2, 3}, l.attempts[slowTwice.ID])
			assert.Equal(t, 1, l.handled[slowTwice.ID])
			assert.Equal(t, []int{1, 2, 3}, l.attempts[slowAlways.ID])
			l.mu.Unlock()
			dls, err := q.DeadLetters(context.Background())
			require.NoError(t, err)
			require.Len(t, dls, 1)
			assert.Equal(t, slowAlways.ID, dls[0].ID)
			assert.Equal(t, context.DeadlineExceeded.Error(), dls[0].Reason)
			assert.Equal(t, 3, dls[0].Attempts)
			s := q.Stats()
			assert.Equal(t, int64(1), s.Handled)
			assert.Equal(t, int64(4), s.Retried)
			assert.Equal(t, int64(1), s.DeadLettered)
		})
	}
}

// ctxValueKey is a key of a value of Consume's ctx.
type ctxValueKey struct{}

// testHandlerContext is Watermill's TestSubscribeCtx and TestMessageCtx.
// The handler's ctx carries the values of Consume's ctx (and what the
// Propagator extracts: see ContextPropagation). It is not cancelled when
// Consume's ctx ends, nor when the handler returns: the consumer lets a
// running handler finish, and acknowledges its message. It is cancelled
// at the drain deadline (see DrainDeadline), and once Consume has
// returned, so work a handler left running on it stops then.
func testHandlerContext(t *testing.T, newQueue NewQueue) {
	q := newQueue(t, defaultOptions())
	publishAll(t, q, msg(1, ""))
	ctx, cancel := context.WithCancel(context.WithValue(context.Background(), ctxValueKey{}, "consumer"))
	defer cancel()
	started, stopped := make(chan struct{}), make(chan struct{})
	var (
		hctx      context.Context
		value     any
		doneAtEnd bool
	)
	done := make(chan error, 1)
	go func() {
		done <- q.Consume(ctx, func(c context.Context, _ kanban.Delivery[Payload]) error {
			hctx, value = c, c.Value(ctxValueKey{})
			close(started)
			<-stopped // Consume's ctx has ended
			doneAtEnd = c.Err() != nil
			return nil
		}, kanban.ConsumeOptions{})
	}()
	waitFor(t, started, "the handler")
	cancel()
	close(stopped)
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(waitLimit):
		t.Fatal("Consume did not return")
	}
	assert.Equal(t, "consumer", value, "the handler's ctx carries the values of Consume's")
	assert.False(t, doneAtEnd, "a running handler's ctx outlives Consume's, until the drain deadline")
	assert.Error(t, hctx.Err(), "cancelled once Consume has returned")
	s := q.Stats()
	assert.Equal(t, int64(1), s.Handled, "the handler finished during the drain: its message is acknowledged")
	assert.Equal(t, int64(0), s.InFlight)
}
