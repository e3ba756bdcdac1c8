package natsjs_test

import (
	"context"
	"errors"
	"log/slog"
	"runtime"
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

// msgLog counts the log records with one message.
type msgLog struct {
	msg     string
	mu      sync.Mutex
	n       int
	changed chan struct{} // closed at the next record
}

func newMsgLog(msg string) *msgLog { return &msgLog{msg: msg, changed: make(chan struct{})} }

// newRepublishLog counts the "natsjs: re-publishing" records, one per
// failed send that waits for another attempt.
func newRepublishLog() *msgLog { return newMsgLog("natsjs: re-publishing") }

func (l *msgLog) logger() *slog.Logger { return slog.New(msgHandler{l}) }

func (l *msgLog) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.n
}

// wait blocks until n records were logged, or fails the test after 30s.
func (l *msgLog) wait(t *testing.T, n int) {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for {
		l.mu.Lock()
		got, ch := l.n, l.changed
		l.mu.Unlock()
		if got >= n {
			return
		}
		select {
		case <-ch:
		case <-deadline:
			t.Fatalf("%d records %q logged, want %d", got, l.msg, n)
		}
	}
}

type msgHandler struct{ l *msgLog }

func (h msgHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h msgHandler) Handle(_ context.Context, r slog.Record) error {
	if r.Message == h.l.msg {
		h.l.mu.Lock()
		h.l.n++
		close(h.l.changed)
		h.l.changed = make(chan struct{})
		h.l.mu.Unlock()
	}
	return nil
}
func (h msgHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h msgHandler) WithGroup(string) slog.Handler      { return h }

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
	srv, err := natsembed.Start(context.Background(), natsembed.Options{StoreDir: dir, Token: restartToken})
	require.NoError(t, err)
	port := srv.Port()
	defer func() { assert.NoError(t, srv.Shutdown(context.Background())) }()
	url := srv.ClientURL()
	dial := func(opts ...nats.Option) (*nats.Conn, error) {
		return nats.Connect(url, nats.MaxReconnects(-1), nats.ReconnectWait(20*time.Millisecond), nats.ReconnectBufSize(8<<20))
	}
	var failures errorLog
	republished := newRepublishLog()
	opts := natsjs.Options{
		Stream: "ASYNC_RESTART", FetchWait: 200 * time.Millisecond, PublishTimeout: time.Second,
		OnPublishError: failures.record,
		Logger:         republished.logger(),
	}
	q, err := natsjs.New[int](context.Background(), connect(t, dial), opts)
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
	select {
	case <-kill:
	case err := <-published:
		t.Fatalf("publishing ended before the kill: %v", err)
	}
	require.NoError(t, srv.Shutdown(context.Background()))
	srv, err = natsembed.Start(context.Background(), natsembed.Options{StoreDir: dir, Port: port, Token: restartToken})
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
	require.NoError(t, q.Shutdown(context.Background()))
	t.Logf("restart under PublishAsync: %d messages handled, %d duplicates, %d re-publishes", total, dups, republished.count())
}

// downQueue starts a server, connects a queue made with opts to it, and
// stops the server once the client has seen it go: every send then fails
// after PublishTimeout.
func downQueue(t *testing.T, opts natsjs.Options) *natsjs.Queue[int] {
	t.Helper()
	srv, err := natsembed.Start(context.Background(), natsembed.Options{})
	require.NoError(t, err)
	down := make(chan struct{})
	var downOnce sync.Once
	nc := connect(t, srv.Connect, nats.MaxReconnects(-1), nats.ReconnectWait(20*time.Millisecond),
		nats.DisconnectErrHandler(func(*nats.Conn, error) { downOnce.Do(func() { close(down) }) }))
	q, err := natsjs.New[int](context.Background(), nc, opts)
	require.NoError(t, err)
	require.NoError(t, srv.Shutdown(context.Background()))
	select {
	case <-down:
	case <-time.After(30 * time.Second):
		t.Fatal("the client did not see the server go")
	}
	return q
}

// TestPublishAsyncFinalFailure publishes while the server is down: each
// message is sent AsyncAttempts times, with a wait before each repeat,
// then reported exactly once to OnPublishError and by Flush.
func TestPublishAsyncFinalFailure(t *testing.T) {
	const n = 40
	for _, attempts := range []int{1, 3} {
		t.Run("attempts="+strconv.Itoa(attempts), func(t *testing.T) {
			var failures errorLog
			republished := newRepublishLog()
			q := downQueue(t, natsjs.Options{
				Stream: "ASYNC_DOWN", PublishTimeout: 200 * time.Millisecond, AsyncAttempts: attempts,
				AsyncRetryWait: time.Millisecond, OnPublishError: failures.record, Logger: republished.logger(),
			})
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			for i := range n {
				require.NoError(t, q.PublishAsync(ctx, kanban.Message[int]{ID: "id-" + strconv.Itoa(i), Payload: i}))
			}
			err := q.Flush(ctx)
			require.Error(t, err)
			require.NoError(t, ctx.Err(), "Flush returned the failures, not a timeout")
			assert.Equal(t, n*(attempts-1), republished.count(), "one wait before each repeat")

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
			assert.NoError(t, q.Shutdown(ctx))
		})
	}
}

// TestFlushWaitsForRetry fills the stream: the messages that found it
// full wait for a re-publish, Flush waits for them, and they are stored
// once consumers make room.
func TestFlushWaitsForRetry(t *testing.T) {
	const capacity, extra = 10, 5
	srv := startServer(t, natsembed.Options{InProcess: true})
	var failures errorLog
	republished := newRepublishLog()
	q, err := natsjs.New[int](context.Background(), connect(t, srv.Connect), natsjs.Options{
		Stream: "ASYNC_FULL", Capacity: capacity, FetchWait: 100 * time.Millisecond,
		AsyncAttempts: 20, AsyncRetryWait: 10 * time.Millisecond, PublishTimeout: time.Second,
		OnPublishError: failures.record, Logger: republished.logger(),
	})
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for i := range capacity + extra {
		require.NoError(t, q.PublishAsync(ctx, kanban.Message[int]{ID: strconv.Itoa(i), Payload: i}))
	}
	republished.wait(t, extra) // each message beyond capacity found the stream full

	short, cancelShort := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancelShort()
	require.ErrorIs(t, q.Flush(short), context.DeadlineExceeded, "Flush waits for the messages waiting to be re-published")
	assert.Empty(t, failures.snapshot(), "a message waiting for a re-publish has not failed")

	var seen map[string]int
	consumed := make(chan error, 1)
	go func() {
		var err error
		seen, err = consumeIDs(q, capacity+extra)
		consumed <- err
	}()
	require.NoError(t, q.Flush(ctx), "re-published into the room the consumer made")
	require.NoError(t, <-consumed)
	for i := range capacity + extra {
		assert.GreaterOrEqual(t, seen[strconv.Itoa(i)], 1, "message %d", i)
	}
	assert.Empty(t, failures.snapshot())
	assert.Equal(t, int64(capacity+extra), q.Stats().Published)
	require.NoError(t, q.Shutdown(ctx))
}

// TestShutdownStopsRetries shuts a queue down while a message waits for
// its re-publish: the wait is cancelled, the message fails with
// ErrClosed, and PublishAsync is refused afterwards.
func TestShutdownStopsRetries(t *testing.T) {
	srv := startServer(t, natsembed.Options{InProcess: true})
	var failures errorLog
	republished := newRepublishLog()
	q, err := natsjs.New[int](context.Background(), connect(t, srv.Connect), natsjs.Options{
		Stream: "ASYNC_CLOSE", Capacity: 1, AsyncAttempts: 5,
		// The wait outlasts the test: only Shutdown can end it.
		AsyncRetryWait: time.Minute, DedupWindow: 10 * time.Minute,
		OnPublishError: failures.record, Logger: republished.logger(),
	})
	require.NoError(t, err)
	ctx := context.Background()
	require.NoError(t, q.PublishAsync(ctx, kanban.Message[int]{ID: "stored", Payload: 1}))
	require.NoError(t, q.PublishAsync(ctx, kanban.Message[int]{ID: "waiting", Payload: 2}))
	republished.wait(t, 1)

	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	err = q.Shutdown(short)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.ErrorIs(t, err, natsjs.ErrClosed)
	assert.ErrorIs(t, err, kanban.ErrFull, "the last failure is kept")
	reported := failures.snapshot()
	require.Len(t, reported, 1)
	require.Len(t, reported["waiting"], 1)
	assert.ErrorIs(t, reported["waiting"][0], natsjs.ErrClosed)
	assert.ErrorContains(t, reported["waiting"][0], "after 1 attempts")

	assert.ErrorIs(t, q.PublishAsync(ctx, kanban.Message[int]{ID: "late", Payload: 3}), natsjs.ErrClosed)
	assert.NoError(t, q.Shutdown(ctx), "a second call finds nothing left")
	assert.NoError(t, q.Flush(ctx))
	assert.Equal(t, 1, republished.count(), "no re-publish after Shutdown")
	assert.Len(t, failures.snapshot(), 1)
}

// TestShutdownMakesLaterFailuresFinal: a message still awaiting its
// acknowledgement when Shutdown gives up is not re-published when the
// acknowledgement fails, and a PublishAsync waiting for a slot is refused.
func TestShutdownMakesLaterFailuresFinal(t *testing.T) {
	var failures errorLog
	republished := newRepublishLog()
	q := downQueue(t, natsjs.Options{
		Stream: "ASYNC_LATE", PublishTimeout: 200 * time.Millisecond, MaxPublishPending: 1,
		OnPublishError: failures.record, Logger: republished.logger(),
	})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	require.NoError(t, q.PublishAsync(ctx, kanban.Message[int]{ID: "pending", Payload: 1}))
	waiting := make(chan error, 1)
	go func() { waiting <- q.PublishAsync(ctx, kanban.Message[int]{ID: "no-slot", Payload: 2}) }()

	ended, cancelEnded := context.WithCancel(ctx)
	cancelEnded()
	require.ErrorIs(t, q.Shutdown(ended), context.Canceled)
	select {
	case err := <-waiting:
		assert.ErrorIs(t, err, natsjs.ErrClosed, "a PublishAsync waiting for a slot is refused")
	case <-ctx.Done():
		t.Fatal("PublishAsync still waits for a slot after Shutdown")
	}
	err := q.Flush(ctx)
	require.NoError(t, ctx.Err())
	require.Error(t, err)
	assert.ErrorContains(t, err, "publishing message pending:")
	assert.Zero(t, republished.count(), "the failure after Shutdown is final")
	assert.Len(t, failures.snapshot()["pending"], 1)
	assert.NoError(t, q.Shutdown(ctx))
}

// TestOnPublishErrorPanics: an OnPublishError that panics does not take
// the failed message's slot with it: the failure is still returned by
// Flush or Shutdown, the panic is logged, and neither Flush nor a second
// Shutdown waits for the slot until its ctx ends. On a client goroutine
// (a send's final failure) the panic ended the process; in Shutdown it
// went to Shutdown's caller and left the other messages it was failing
// unsettled.
func TestOnPublishErrorPanics(t *testing.T) {
	panicked := newMsgLog("natsjs: OnPublishError panicked")
	onError := func(string, error) { panic("bad callback") }
	t.Run("Shutdown", func(t *testing.T) {
		srv := startServer(t, natsembed.Options{InProcess: true})
		republished := newRepublishLog()
		q, err := natsjs.New[int](context.Background(), connect(t, srv.Connect), natsjs.Options{
			Stream: "ASYNC_PANIC", Capacity: 1, AsyncAttempts: 5,
			AsyncRetryWait: time.Minute, DedupWindow: 10 * time.Minute, // only Shutdown ends the waits
			OnPublishError: onError, Logger: slog.New(multiHandler{msgHandler{panicked}, msgHandler{republished}}),
		})
		require.NoError(t, err)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		require.NoError(t, q.PublishAsync(ctx, kanban.Message[int]{ID: "stored", Payload: 1}))
		for _, id := range []string{"w1", "w2"} {
			require.NoError(t, q.PublishAsync(ctx, kanban.Message[int]{ID: id, Payload: 2}))
		}
		republished.wait(t, 2) // both found the stream full
		short, cancelShort := context.WithTimeout(ctx, 50*time.Millisecond)
		defer cancelShort()
		var serr error
		require.NotPanics(t, func() { serr = q.Shutdown(short) })
		assert.ErrorIs(t, serr, natsjs.ErrClosed)
		assert.ErrorContains(t, serr, "publishing message w1:")
		assert.ErrorContains(t, serr, "publishing message w2:")
		assert.NoError(t, q.Flush(ctx), "nothing left unsettled")
		assert.NoError(t, q.Shutdown(ctx))
		assert.Equal(t, 2, panicked.count())
	})
	t.Run("final failure", func(t *testing.T) {
		q := downQueue(t, natsjs.Options{
			Stream: "ASYNC_PANIC_DOWN", PublishTimeout: 100 * time.Millisecond, AsyncAttempts: 1,
			OnPublishError: onError, Logger: panicked.logger(),
		})
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		require.NoError(t, q.PublishAsync(ctx, kanban.Message[int]{ID: "lost", Payload: 1}))
		err := q.Flush(ctx)
		require.NoError(t, ctx.Err())
		assert.ErrorContains(t, err, "publishing message lost:")
		assert.NoError(t, q.Shutdown(ctx))
	})
}

// TestOnPublishErrorGoexitInShutdown: an OnPublishError that ends its
// goroutine (runtime.Goexit, as t.FailNow and require do) while Shutdown
// fails the messages waiting to be sent again ends Shutdown, but leaves
// none of them unsettled: a later Flush returns their failures at once.
// Before, the messages after the first were never settled, and Flush and
// Shutdown waited for them until their ctx ended.
func TestOnPublishErrorGoexitInShutdown(t *testing.T) {
	srv := startServer(t, natsembed.Options{InProcess: true})
	republished := newRepublishLog()
	var mu sync.Mutex
	var reported []string
	q, err := natsjs.New[int](context.Background(), connect(t, srv.Connect), natsjs.Options{
		Stream: "ASYNC_GOEXIT", Capacity: 1, AsyncAttempts: 5,
		AsyncRetryWait: time.Minute, DedupWindow: 10 * time.Minute, // only Shutdown ends the waits
		OnPublishError: func(id string, _ error) {
			mu.Lock()
			reported = append(reported, id)
			mu.Unlock()
			runtime.Goexit()
		},
		Logger: slog.New(msgHandler{republished}),
	})
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	require.NoError(t, q.PublishAsync(ctx, kanban.Message[int]{ID: "stored", Payload: 1}))
	for _, id := range []string{"w1", "w2", "w3"} {
		require.NoError(t, q.PublishAsync(ctx, kanban.Message[int]{ID: id, Payload: 2}))
	}
	republished.wait(t, 3) // all found the stream full
	short, cancelShort := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancelShort()
	ended := make(chan struct{})
	go func() {
		defer close(ended)
		_ = q.Shutdown(short) // fails the messages waiting once short ends
		t.Error("Shutdown returned though OnPublishError ended its goroutine")
	}()
	<-ended
	fctx, cancelFlush := context.WithTimeout(ctx, 5*time.Second)
	defer cancelFlush()
	err = q.Flush(fctx)
	require.NoError(t, fctx.Err(), "Flush waited for messages never settled")
	for _, id := range []string{"w1", "w2", "w3"} {
		assert.ErrorContains(t, err, "publishing message "+id+":")
	}
	mu.Lock()
	assert.ElementsMatch(t, []string{"w1", "w2", "w3"}, reported, "each failure reported")
	mu.Unlock()
}
