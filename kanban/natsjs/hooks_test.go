package natsjs_test

import (
	"context"
	"errors"
	"log/slog"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/kanban"
	"github.com/taipattern/taikit/kanban/natsembed"
	"github.com/taipattern/taikit/kanban/natsjs"
)

// logCounts counts the records logged, by message.
type logCounts struct {
	mu sync.Mutex
	n  map[string]int
}

func (l *logCounts) Enabled(context.Context, slog.Level) bool { return true }
func (l *logCounts) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.n == nil {
		l.n = make(map[string]int)
	}
	l.n[r.Message]++
	return nil
}
func (l *logCounts) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *logCounts) WithGroup(string) slog.Handler      { return l }

func (l *logCounts) count(msg string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.n[msg]
}

// TestConsumeSurvivesHooksAndGoexit: on JetStream too, a consumer whose
// Backoff and Observer panic, and whose handler ends its goroutine with
// runtime.Goexit, keeps running: the Goexit fails its attempt (the
// message is retried, then dead-lettered), the failed message is retried
// after the default back-off, and the others are handled and acknowledged.
func TestConsumeSurvivesHooksAndGoexit(t *testing.T) {
	srv := startServer(t, natsembed.Options{InProcess: true})
	q, err := natsjs.New[int](context.Background(), connect(t, srv.Connect), natsjs.Options{Stream: "HOOKS", FetchWait: 100 * time.Millisecond})
	require.NoError(t, err)
	for _, id := range []string{"exits", "fails once", "ok"} {
		require.NoError(t, q.Publish(context.Background(), kanban.Message[int]{ID: id}))
	}
	var log logCounts
	var mu sync.Mutex
	handled := map[string]int{} // attempts that returned nil, by ID
	done := make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	consumed := make(chan error)
	go func() {
		consumed <- q.Consume(ctx, func(_ context.Context, d kanban.Delivery[int]) error {
			switch {
			case d.ID == "exits":
				runtime.Goexit()
			case d.ID == "fails once" && d.Attempt == 1:
				return errors.New("fail")
			}
			mu.Lock()
			defer mu.Unlock()
			if handled[d.ID]++; len(handled) == 2 {
				close(done)
			}
			return nil
		}, kanban.ConsumeOptions{
			WIP: 2, MaxAttempts: 2, Logger: slog.New(&log),
			Backoff:  kanban.BackoffFunc(func(int) time.Duration { panic("bad backoff") }),
			Observer: kanban.HandlerObserverFunc(func(time.Duration, error) { panic("bad observer") }),
		})
	}()
	select {
	case <-done:
	case <-time.After(time.Minute):
		t.Fatal("the handled messages were not all handled")
	}
	var dl []kanban.DeadLetter
	require.Eventually(t, func() bool {
		dl, err = q.DeadLetters(context.Background())
		return err == nil && len(dl) == 1
	}, time.Minute, 10*time.Millisecond, "the exiting message is dead-lettered")
	cancel()
	require.NoError(t, <-consumed)

	assert.Equal(t, "exits", dl[0].ID)
	assert.Equal(t, "kanban: runtime.Goexit in handler", dl[0].Reason)
	assert.Equal(t, 2, dl[0].Attempts)
	assert.Equal(t, map[string]int{"fails once": 1, "ok": 1}, handled)
	s := q.Stats()
	assert.Equal(t, int64(2), s.Handled)
	assert.Equal(t, int64(2), s.Retried, "fails once, and exits")
	assert.Zero(t, s.InFlight)
	assert.Equal(t, 2, log.count("kanban: handler called runtime.Goexit"))
	assert.Equal(t, 2, log.count("kanban: Backoff panicked"))
	assert.Equal(t, 5, log.count("kanban: Observer panicked"), "one for each attempt")
}

// hookCodec is JSON, except that decoding the payload 13 panics and
// decoding 14 calls runtime.Goexit.
type hookCodec struct{ kanban.JSON }

func (c hookCodec) Unmarshal(data []byte, v any) error {
	switch string(data) {
	case "13":
		panic("bad codec")
	case "14":
		runtime.Goexit()
	}
	return c.JSON.Unmarshal(data, v)
}

// panickingPropagator writes a header on Publish and panics extracting it.
type panickingPropagator struct{}

func (panickingPropagator) Inject(_ context.Context, h kanban.Header) { h.Set("trace", "t") }
func (panickingPropagator) Extract(context.Context, kanban.Header) context.Context {
	panic("bad propagator")
}

// TestConsumeSurvivesCodecAndPropagator: on JetStream too, a Codec that
// panics or calls runtime.Goexit decoding a payload has its message
// dead-lettered as one it cannot decode, a Propagator that panics in
// Extract is logged, and the consumer goes on: the good message is
// handled and acknowledged.
func TestConsumeSurvivesCodecAndPropagator(t *testing.T) {
	tests := []struct {
		name    string
		payload int
		reason  string
		logged  string
	}{
		{"panic", 13, "kanban: cannot decode payload: Codec panicked: bad codec", "kanban: Codec panicked"},
		{"Goexit", 14, "kanban: cannot decode payload: Codec called runtime.Goexit", "kanban: Codec called runtime.Goexit"},
	}
	srv := startServer(t, natsembed.Options{InProcess: true})
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			q, err := natsjs.New[int](context.Background(), connect(t, srv.Connect), natsjs.Options{
				Stream: "CODEC" + strconv.Itoa(i), FetchWait: 100 * time.Millisecond,
				Codec: hookCodec{}, Propagator: panickingPropagator{},
			})
			require.NoError(t, err)
			require.NoError(t, q.Publish(context.Background(), kanban.Message[int]{ID: "bad", Payload: tc.payload}))
			require.NoError(t, q.Publish(context.Background(), kanban.Message[int]{ID: "ok", Payload: 1}))
			var log logCounts
			handled := make(chan string, 10)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			consumed := make(chan error)
			go func() {
				consumed <- q.Consume(ctx, func(_ context.Context, d kanban.Delivery[int]) error {
					handled <- d.ID
					return nil
				}, kanban.ConsumeOptions{WIP: 2, Logger: slog.New(&log)})
			}()
			var dl []kanban.DeadLetter
			require.Eventually(t, func() bool {
				dl, err = q.DeadLetters(context.Background())
				return err == nil && len(dl) == 1 && q.Stats().Handled == 1 && q.Stats().InFlight == 0
			}, 10*time.Second, 10*time.Millisecond, "the bad message is dead-lettered and the good one handled")
			cancel()
			require.NoError(t, <-consumed)
			assert.Equal(t, "ok", <-handled)
			assert.Empty(t, handled)
			assert.Equal(t, "bad", dl[0].ID)
			assert.Equal(t, tc.reason, dl[0].Reason)
			assert.Equal(t, 1, log.count(tc.logged))
			assert.Equal(t, 1, log.count("kanban: Propagator panicked"))
		})
	}
}

// TestConsumeHookGoexits: on JetStream too, a handler and its Backoff
// both calling runtime.Goexit on an attempt have the message retried
// after the default back-off, then dead-lettered; an Observer that calls
// runtime.Goexit is logged as the Observer's, and a message whose handler
// succeeded is acknowledged.
func TestConsumeHookGoexits(t *testing.T) {
	srv := startServer(t, natsembed.Options{InProcess: true})
	q, err := natsjs.New[int](context.Background(), connect(t, srv.Connect), natsjs.Options{Stream: "HOOKEXITS", FetchWait: 100 * time.Millisecond})
	require.NoError(t, err)
	for _, id := range []string{"exits", "ok"} {
		require.NoError(t, q.Publish(context.Background(), kanban.Message[int]{ID: id}))
	}
	var log logCounts
	var mu sync.Mutex
	handled := map[string]int{} // attempts that returned nil, by ID
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	consumed := make(chan error)
	go func() {
		consumed <- q.Consume(ctx, func(_ context.Context, d kanban.Delivery[int]) error {
			if d.ID == "exits" {
				runtime.Goexit()
			}
			mu.Lock()
			defer mu.Unlock()
			handled[d.ID]++
			return nil
		}, kanban.ConsumeOptions{
			WIP: 2, MaxAttempts: 2, Logger: slog.New(&log),
			Backoff:  kanban.BackoffFunc(func(int) time.Duration { runtime.Goexit(); return 0 }),
			Observer: kanban.HandlerObserverFunc(func(time.Duration, error) { runtime.Goexit() }),
		})
	}()
	var dl []kanban.DeadLetter
	require.Eventually(t, func() bool {
		dl, err = q.DeadLetters(context.Background())
		s := q.Stats()
		return err == nil && len(dl) == 1 && s.Handled == 1 && s.InFlight == 0
	}, 10*time.Second, 10*time.Millisecond, "the exiting message is dead-lettered and the other handled")
	cancel()
	require.NoError(t, <-consumed)

	assert.Equal(t, "exits", dl[0].ID)
	assert.Equal(t, "kanban: runtime.Goexit in handler", dl[0].Reason)
	assert.Equal(t, 2, dl[0].Attempts)
	mu.Lock()
	assert.Equal(t, map[string]int{"ok": 1}, handled)
	mu.Unlock()
	assert.Equal(t, int64(1), q.Stats().Retried)
	assert.Equal(t, 2, log.count("kanban: handler called runtime.Goexit"))
	assert.Equal(t, 1, log.count("kanban: Backoff called runtime.Goexit"))
	assert.Equal(t, 3, log.count("kanban: Observer called runtime.Goexit"), "one for each attempt")
}
