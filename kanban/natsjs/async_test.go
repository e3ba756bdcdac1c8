package natsjs_test

import (
	"context"
	"errors"
	"log/slog"
	"strconv"
	"strings"
	"sync"
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

// manualClock is a kanban.Clock whose timers run only when the test fires
// them.
type manualClock struct {
	mu      sync.Mutex
	timers  []*manualTimer
	added   chan struct{} // a signal after each AfterFunc
	stopped int
}

type manualTimer struct {
	f          func()
	done, dead bool
}

func newManualClock() *manualClock { return &manualClock{added: make(chan struct{}, 1)} }

func (c *manualClock) Now() time.Time { return time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC) }

func (c *manualClock) AfterFunc(_ time.Duration, f func()) func() bool {
	c.mu.Lock()
	t := &manualTimer{f: f}
	c.timers = append(c.timers, t)
	c.mu.Unlock()
	select {
	case c.added <- struct{}{}:
	default:
	}
	return func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		if t.done || t.dead {
			return false
		}
		t.dead = true
		c.stopped++
		return true
	}
}

// pending counts timers neither fired nor stopped.
func (c *manualClock) pending() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, t := range c.timers {
		if !t.done && !t.dead {
			n++
		}
	}
	return n
}

// stops counts timers stopped before they fired.
func (c *manualClock) stops() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stopped
}

// scheduled counts every timer ever set.
func (c *manualClock) scheduled() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.timers)
}

// waitPending blocks until n timers are pending or the test's patience
// ends.
func (c *manualClock) waitPending(t *testing.T, n int) {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for c.pending() < n {
		select {
		case <-c.added:
		case <-deadline:
			t.Fatalf("%d timers pending, want %d", c.pending(), n)
		}
	}
}

// fire runs every pending timer, on the caller's goroutine.
func (c *manualClock) fire() int {
	c.mu.Lock()
	var due []*manualTimer
	for _, t := range c.timers {
		if !t.done && !t.dead {
			t.done = true
			due = append(due, t)
		}
	}
	c.mu.Unlock()
	for _, t := range due {
		t.f()
	}
	return len(due)
}

// errorLog records OnPublishError calls.
type errorLog struct {
	mu   sync.Mutex
	errs map[string][]error
}

func (l *errorLog) record(id string, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.errs == nil {
		l.errs = make(map[string][]error)
	}
	l.errs[id] = append(l.errs[id], err)
}

func (l *errorLog) snapshot() map[string][]error {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make(map[string][]error, len(l.errs))
	for k, v := range l.errs {
		out[k] = append([]error(nil), v...)
	}
	return out
}

// countingHandler counts log records whose message is msg.
type countingHandler struct {
	msg string
	n   *atomic.Int64
}

func (h countingHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h countingHandler) Handle(_ context.Context, r slog.Record) error {
	if r.Message == h.msg {
		h.n.Add(1)
	}
	return nil
}
func (h countingHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h countingHandler) WithGroup(string) slog.Handler      { return h }

// consumeIDs consumes q until want distinct IDs were handled (or a
// minute passes) and returns how often each ID was handled.
func consumeIDs(q *natsjs.Queue[int], want int) (map[string]int, error) {
	var mu sync.Mutex
	seen := make(map[string]int, want)
	all := make(chan struct{})
	var once sync.Once
	ctx, cancel := context.WithCancel(context.Background())
	consumed := make(chan error, 1)
	go func() {
		consumed <- q.Consume(ctx, func(_ context.Context, d kanban.Delivery[int]) error {
			mu.Lock()
			seen[d.ID]++
			n := len(seen)
			mu.Unlock()
			if n == want {
				once.Do(func() { close(all) })
			}
			return nil
		}, kanban.ConsumeOptions{WIP: 64})
	}()
	select {
	case <-all:
	case <-time.After(time.Minute):
	}
	cancel()
	err := <-consumed
	mu.Lock()
	defer mu.Unlock()
	return seen, err
}

// TestPublishAsyncSurvivesServerRestart kills the server while messages
// are published with PublishAsync alone and restarts it on the same store
// and port: re-publishing delivers every message and reports no failure.
func TestPublishAsyncSurvivesServerRestart(t *testing.T) {
	const total = 2000
	dir := t.TempDir()
	srv, err := natsembed.Start(context.Background(), natsembed.Options{StoreDir: dir})
	require.NoError(t, err)
	port := srv.Port()
	defer func() { srv.Shutdown() }()
	url := srv.ClientURL()
	dial := func(opts ...nats.Option) (*nats.Conn, error) {
		return nats.Connect(url, nats.MaxReconnects(-1), nats.ReconnectWait(20*time.Millisecond), nats.ReconnectBufSize(8<<20))
	}
	var failures errorLog
	var republished atomic.Int64
	cfg := natsjs.Config{
		Stream: "ASYNC_RESTART", FetchWait: 200 * time.Millisecond, PublishTimeout: time.Second,
		OnPublishError: failures.record,
		Logger:         slog.New(countingHandler{msg: "natsjs: re-publishing", n: &republished}),
	}
	q, err := natsjs.New[int](context.Background(), connect(t, dial), cfg)
	require.NoError(t, err)

	kill := make(chan struct{})
	published := make(chan error, 1)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	go func() {
		for i := range total {
			if i == total/3 {
				close(kill)
			}
			if err := q.PublishAsync(ctx, kanban.Message[int]{ID: "id-" + strconv.Itoa(i), Payload: i}); err != nil {
				published <- err
				return
			}
		}
		published <- q.Flush(ctx)
	}()
	<-kill
	srv.Shutdown()
	srv, err = natsembed.Start(context.Background(), natsembed.Options{StoreDir: dir, Port: port})
	require.NoError(t, err)
	require.NoError(t, <-published, "every PublishAsync is acknowledged in the end")
	assert.Empty(t, failures.snapshot(), "no message failed for good")

	seen, err := consumeIDs(q, total)
	require.NoError(t, err)
	dups := 0
	for i := range total {
		c := seen["id-"+strconv.Itoa(i)]
		require.GreaterOrEqual(t, c, 1, "message %d lost", i)
		dups += c - 1
	}
	require.NoError(t, q.Close(context.Background()))
	t.Logf("restart under PublishAsync: %d messages handled, %d duplicates, %d re-publishes", total, dups, republished.Load())
}

// TestPublishAsyncFinalFailure publishes while the server is down: each
// message is sent AsyncAttempts times, then reported exactly once to
// OnPublishError and by Flush.
func TestPublishAsyncFinalFailure(t *testing.T) {
	const n = 40
	for _, attempts := range []int{1, 3} {
		t.Run("attempts="+strconv.Itoa(attempts), func(t *testing.T) {
			srv, err := natsembed.Start(context.Background(), natsembed.Options{})
			require.NoError(t, err)
			defer srv.Shutdown()
			down := make(chan struct{})
			var downOnce sync.Once
			nc := connect(t, srv.Connect, nats.MaxReconnects(-1), nats.ReconnectWait(20*time.Millisecond),
				nats.DisconnectErrHandler(func(*nats.Conn, error) { downOnce.Do(func() { close(down) }) }))
			clk := newManualClock()
			var failures errorLog
			q, err := natsjs.New[int](context.Background(), nc, natsjs.Config{
				Stream: "ASYNC_DOWN", PublishTimeout: 200 * time.Millisecond, AsyncAttempts: attempts,
				Clock: clk, OnPublishError: failures.record,
			})
			require.NoError(t, err)
			srv.Shutdown()
			<-down

			ctx := context.Background()
			for i := range n {
				require.NoError(t, q.PublishAsync(ctx, kanban.Message[int]{ID: "id-" + strconv.Itoa(i), Payload: i}))
			}
			flushed := make(chan error, 1)
			go func() { flushed <- q.Flush(ctx) }()
			for range attempts - 1 {
				clk.waitPending(t, n)
				assert.Equal(t, n, clk.fire())
			}
			err = <-flushed
			require.Error(t, err)
			assert.Equal(t, n*(attempts-1), clk.scheduled(), "one wait before each repeat")

			reported := failures.snapshot()
			assert.Len(t, reported, n)
			for i := range n {
				id := "id-" + strconv.Itoa(i)
				errs := reported[id]
				require.Len(t, errs, 1, "%s is reported exactly once", id)
				assert.True(t, errors.Is(errs[0], jetstream.ErrAsyncPublishTimeout) || errors.Is(errs[0], nats.ErrDisconnected), "%v", errs[0])
				if attempts > 1 {
					assert.ErrorContains(t, errs[0], strconv.Itoa(attempts)+" attempts failed")
				}
				assert.ErrorContains(t, err, "publishing message "+id+":", "Flush returns %s", id)
			}
			assert.Equal(t, n, strings.Count(err.Error(), "natsjs: publishing message"))
			assert.NoError(t, q.Flush(ctx), "failures are returned once")
			assert.NoError(t, q.Close(ctx))
		})
	}
}

// TestFlushWaitsForRetry fills the stream: the messages that found it
// full wait for a re-publish, Flush waits for them, and they are stored
// once consumers make room.
func TestFlushWaitsForRetry(t *testing.T) {
	const capacity, extra = 10, 5
	srv := startServer(t, natsembed.Options{InProcess: true})
	clk := newManualClock()
	var failures errorLog
	q, err := natsjs.New[int](context.Background(), connect(t, srv.Connect), natsjs.Config{
		Stream: "ASYNC_FULL", Capacity: capacity, FetchWait: 100 * time.Millisecond,
		AsyncAttempts: 20, PublishTimeout: time.Second, Clock: clk, OnPublishError: failures.record,
	})
	require.NoError(t, err)
	ctx := context.Background()
	for i := range capacity + extra {
		require.NoError(t, q.PublishAsync(ctx, kanban.Message[int]{ID: strconv.Itoa(i), Payload: i}))
	}
	clk.waitPending(t, extra)

	short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	require.ErrorIs(t, q.Flush(short), context.DeadlineExceeded, "Flush waits for the messages waiting to be re-published")
	assert.Empty(t, failures.snapshot(), "a message waiting for a re-publish has not failed")

	var seen map[string]int
	consumed := make(chan error, 1)
	go func() {
		var err error
		seen, err = consumeIDs(q, capacity+extra)
		consumed <- err
	}()
	// The stream has room once the consumer has taken the stored messages.
	stream, err := q.JetStream().Stream(ctx, "ASYNC_FULL")
	require.NoError(t, err)
	for empty := false; !empty; {
		info, err := stream.Info(ctx)
		require.NoError(t, err)
		if empty = info.State.Msgs == 0; !empty {
			time.Sleep(5 * time.Millisecond) // waiting for the server, not timing the test
		}
	}
	flushed := make(chan error, 1)
	go func() { flushed <- q.Flush(ctx) }()
	var flushErr error
	for done := false; !done; {
		clk.fire()
		select {
		case flushErr = <-flushed:
			done = true
		case <-clk.added:
		case <-time.After(time.Minute):
			t.Fatal("Flush did not return")
		}
	}
	require.NoError(t, flushErr)
	require.NoError(t, <-consumed)
	for i := range capacity + extra {
		assert.GreaterOrEqual(t, seen[strconv.Itoa(i)], 1, "message %d", i)
	}
	assert.Empty(t, failures.snapshot())
	assert.Equal(t, int64(capacity+extra), q.Stats().Published)
	require.NoError(t, q.Close(ctx))
}

// TestCloseStopsRetries closes a queue while a message waits for its
// re-publish: the wait is cancelled, the message fails with ErrClosed,
// and later failures are final.
func TestCloseStopsRetries(t *testing.T) {
	srv := startServer(t, natsembed.Options{InProcess: true})
	clk := newManualClock()
	var failures errorLog
	q, err := natsjs.New[int](context.Background(), connect(t, srv.Connect), natsjs.Config{
		Stream: "ASYNC_CLOSE", Capacity: 1, AsyncAttempts: 5, Clock: clk, OnPublishError: failures.record,
	})
	require.NoError(t, err)
	ctx := context.Background()
	require.NoError(t, q.PublishAsync(ctx, kanban.Message[int]{ID: "stored", Payload: 1}))
	require.NoError(t, q.PublishAsync(ctx, kanban.Message[int]{ID: "waiting", Payload: 2}))
	clk.waitPending(t, 1)

	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	err = q.Close(short)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.ErrorIs(t, err, natsjs.ErrClosed)
	assert.ErrorIs(t, err, kanban.ErrFull, "the last failure is kept")
	assert.Equal(t, 0, clk.pending(), "the wait is cancelled")
	assert.Equal(t, 1, clk.stops())
	assert.Equal(t, 0, clk.fire())
	reported := failures.snapshot()
	require.Len(t, reported, 1)
	require.Len(t, reported["waiting"], 1)
	assert.ErrorIs(t, reported["waiting"][0], natsjs.ErrClosed)

	// After Close a failure is final at once.
	require.NoError(t, q.PublishAsync(ctx, kanban.Message[int]{ID: "late", Payload: 3}))
	err = q.Flush(ctx)
	assert.ErrorIs(t, err, kanban.ErrFull)
	assert.NotErrorIs(t, err, natsjs.ErrClosed)
	assert.Equal(t, 1, clk.scheduled(), "no wait after Close")
	assert.Len(t, failures.snapshot()["late"], 1)
}
