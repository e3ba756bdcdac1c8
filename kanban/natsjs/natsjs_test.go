package natsjs_test

import (
	"context"
	"errors"
	"math"
	"net"
	"os"
	"os/exec"
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
	"github.com/taipattern/taikit/kanban/queuetest"
)

// restartToken is the token of a server a test restarts: the same across
// its restarts, as a deployment's configuration would keep it.
const restartToken = "natsjs-test-token-0123456789"

func startServer(t *testing.T, opts natsembed.Options) *natsembed.Server {
	t.Helper()
	srv, err := natsembed.Start(context.Background(), opts)
	require.NoError(t, err)
	t.Cleanup(func() { assert.NoError(t, srv.Shutdown(context.Background())) })
	return srv
}

func connect(t *testing.T, dial func(...nats.Option) (*nats.Conn, error), opts ...nats.Option) *nats.Conn {
	t.Helper()
	nc, err := dial(opts...)
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	return nc
}

var streams atomic.Int64

// factory makes queues on fresh streams reached through dial.
func factory(dial func(...nats.Option) (*nats.Conn, error)) queuetest.NewQueue {
	return func(t *testing.T, opts queuetest.Options) kanban.Queue[queuetest.Payload] {
		nc := connect(t, dial)
		q, err := natsjs.New[queuetest.Payload](context.Background(), nc, natsjs.Options{
			Stream:     "Q" + strconv.FormatInt(streams.Add(1), 10),
			Capacity:   int64(opts.Capacity),
			Codec:      opts.Codec,
			Propagator: opts.Propagator,
			Tracer:     opts.Tracer,
			FetchWait:  100 * time.Millisecond,
		})
		require.NoError(t, err)
		return q
	}
}

func TestConformanceEmbedded(t *testing.T) {
	srv := startServer(t, natsembed.Options{InProcess: true})
	queuetest.Run(t, factory(srv.Connect))
}

func TestConformanceDebianServer(t *testing.T) {
	queuetest.Run(t, factory(debianServer(t)))
}

// debianServer starts the nats-server binary the system has (2.9 on
// Debian 12), with JetStream, and returns a dial to it once it answers
// JetStream requests. It skips the test when there is none, unless
// TAIKIT_REQUIRE_SERVERS=1.
func debianServer(t *testing.T) func(...nats.Option) (*nats.Conn, error) {
	t.Helper()
	bin, err := exec.LookPath("nats-server")
	if err != nil {
		if _, serr := os.Stat("/usr/sbin/nats-server"); serr == nil {
			bin = "/usr/sbin/nats-server"
		}
	}
	if bin == "" {
		if os.Getenv("TAIKIT_REQUIRE_SERVERS") == "1" {
			t.Fatal("nats-server binary not found and TAIKIT_REQUIRE_SERVERS=1")
		}
		t.Skip("nats-server binary not found (apt install nats-server); set TAIKIT_REQUIRE_SERVERS=1 to require it")
	}
	port := freePort(t)
	cmd := exec.Command(bin, "-a", "127.0.0.1", "-p", strconv.Itoa(port), "-js", "-sd", t.TempDir())
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	url := "nats://127.0.0.1:" + strconv.Itoa(port)
	dial := func(opts ...nats.Option) (*nats.Conn, error) {
		return nats.Connect(url, append([]nats.Option{nats.RetryOnFailedConnect(true), nats.MaxReconnects(100), nats.ReconnectWait(20 * time.Millisecond)}, opts...)...)
	}
	// Ready once a JetStream request is answered.
	nc := connect(t, dial)
	ready := false
	for range 250 {
		if _, err := nc.Request("$JS.API.INFO", nil, 100*time.Millisecond); err == nil {
			ready = true
			break
		}
		time.Sleep(20 * time.Millisecond) // waiting for an external process, not timing a test
	}
	require.True(t, ready, "nats-server did not answer")
	return dial
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func TestKillServerMidStream(t *testing.T) {
	const total = 10000
	dir := t.TempDir()
	srv, err := natsembed.Start(context.Background(), natsembed.Options{StoreDir: dir, Token: restartToken})
	require.NoError(t, err)
	port := srv.Port()
	var srvMu sync.Mutex
	defer func() {
		srvMu.Lock()
		assert.NoError(t, srv.Shutdown(context.Background()))
		srvMu.Unlock()
	}()
	url := srv.ClientURL()
	dial := func(opts ...nats.Option) (*nats.Conn, error) {
		return nats.Connect(url, nats.MaxReconnects(-1), nats.ReconnectWait(20*time.Millisecond), nats.ReconnectBufSize(8<<20))
	}
	opts := natsjs.Options{Stream: "RESTART", AckWait: 2 * time.Second, FetchWait: 200 * time.Millisecond, PublishTimeout: time.Second}
	pubConn, conConn := connect(t, dial), connect(t, dial)
	pub, err := natsjs.New[int](context.Background(), pubConn, opts)
	require.NoError(t, err)
	con, err := natsjs.New[int](context.Background(), conConn, opts)
	require.NoError(t, err)

	var mu sync.Mutex
	seen := make(map[string]int, total)
	all := make(chan struct{})
	kill := make(chan struct{})
	var killOnce, allOnce sync.Once
	ctx, cancel := context.WithCancel(context.Background())
	consumed := make(chan error, 1)
	go func() {
		consumed <- con.Consume(ctx, func(_ context.Context, d kanban.Delivery[int]) error {
			mu.Lock()
			seen[d.ID]++
			n := len(seen)
			mu.Unlock()
			if n == total/3 {
				killOnce.Do(func() { close(kill) })
			}
			if n == total {
				allOnce.Do(func() { close(all) })
			}
			return nil
		}, kanban.ConsumeOptions{WIP: 64})
	}()

	var pubErrs atomic.Int64
	var wg sync.WaitGroup
	pctx, pcancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer pcancel()
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < total; i += 4 {
				m := kanban.Message[int]{ID: "id-" + strconv.Itoa(i), Payload: i}
				// Retry through the outage: the ID makes it safe.
				for pub.Publish(pctx, m) != nil && pctx.Err() == nil {
					pubErrs.Add(1)
				}
			}
		}()
	}

	select {
	case <-kill:
	case <-time.After(2 * time.Minute):
		t.Fatal("consumer never reached the kill point")
	}
	srvMu.Lock()
	require.NoError(t, srv.Shutdown(context.Background()))
	srv, err = natsembed.Start(context.Background(), natsembed.Options{StoreDir: dir, Port: port, Token: restartToken})
	srvMu.Unlock()
	require.NoError(t, err)

	wg.Wait()
	require.NoError(t, pctx.Err(), "publishing did not finish")
	select {
	case <-all:
	case <-time.After(2 * time.Minute):
		mu.Lock()
		n := len(seen)
		mu.Unlock()
		t.Fatalf("only %d of %d messages handled after the restart", n, total)
	}
	cancel()
	require.NoError(t, <-consumed)
	mu.Lock()
	defer mu.Unlock()
	dups := 0
	for i := range total {
		c := seen["id-"+strconv.Itoa(i)]
		require.GreaterOrEqual(t, c, 1, "message %d lost", i)
		dups += c - 1
	}
	t.Logf("kill and restart: %d messages handled, %d duplicates, %d publish retries", total, dups, pubErrs.Load())
}

func TestSharedDurableHoldsGlobalWIP(t *testing.T) {
	const n, wip = 80, 4
	srv := startServer(t, natsembed.Options{InProcess: true})
	opts := natsjs.Options{Stream: "SHARED", FetchWait: 100 * time.Millisecond}
	var queues []*natsjs.Queue[int]
	for range 2 {
		q, err := natsjs.New[int](context.Background(), connect(t, srv.Connect), opts)
		require.NoError(t, err)
		queues = append(queues, q)
	}
	for i := range n {
		require.NoError(t, queues[0].Publish(context.Background(), kanban.Message[int]{ID: strconv.Itoa(i), Payload: i}))
	}
	var running, peak, handled atomic.Int64
	var perConsumer [2]atomic.Int64
	full, all := make(chan struct{}), make(chan struct{})
	var fullOnce, allOnce sync.Once
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for i, q := range queues {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := q.Consume(ctx, func(hctx context.Context, _ kanban.Delivery[int]) error {
				cur := running.Add(1)
				for p := peak.Load(); cur > p && !peak.CompareAndSwap(p, cur); p = peak.Load() {
				}
				if cur == wip {
					fullOnce.Do(func() { close(full) })
				}
				select {
				case <-full:
				case <-hctx.Done():
				}
				running.Add(-1)
				perConsumer[i].Add(1)
				if handled.Add(1) == n {
					allOnce.Do(func() { close(all) })
				}
				return nil
			}, kanban.ConsumeOptions{WIP: wip})
			assert.NoError(t, err)
		}()
	}
	select {
	case <-all:
	case <-time.After(time.Minute):
		t.Fatalf("handled %d of %d", handled.Load(), n)
	}
	cancel()
	wg.Wait()
	assert.Equal(t, int64(wip), peak.Load(), "the durable's MaxAckPending holds WIP across both consumers")
	t.Logf("consumer 1 handled %d, consumer 2 handled %d", perConsumer[0].Load(), perConsumer[1].Load())
}

func TestPublishAsyncAndFlush(t *testing.T) {
	srv := startServer(t, natsembed.Options{InProcess: true})
	nc := connect(t, srv.Connect)
	var reported sync.Map
	q, err := natsjs.New[int](context.Background(), nc, natsjs.Options{
		Stream: "ASYNC", Capacity: 10, MaxPublishPending: 4, AsyncAttempts: 1,
		OnPublishError: func(id string, err error) { reported.Store(id, err) },
	})
	require.NoError(t, err)
	ctx := context.Background()
	for i := range 15 {
		require.NoError(t, q.PublishAsync(ctx, kanban.Message[int]{ID: strconv.Itoa(i), Payload: i}))
	}
	err = q.Flush(ctx)
	require.Error(t, err)
	assert.ErrorIs(t, err, kanban.ErrFull)
	n := 0
	reported.Range(func(k, v any) bool {
		n++
		assert.ErrorIs(t, v.(error), kanban.ErrFull, "id %v", k)
		return true
	})
	assert.Equal(t, 5, n, "every failed publish is reported")
	assert.Equal(t, int64(10), q.Stats().Published)
	assert.NoError(t, q.Shutdown(ctx), "errors are returned once")
	require.ErrorIs(t, q.PublishAsync(ctx, kanban.Message[int]{}), kanban.ErrNoID)
}

// Replicas reach the streams: a single server holds one replica, and
// refuses three, which only a cluster can hold.
func TestReplicasReachTheStreams(t *testing.T) {
	srv := startServer(t, natsembed.Options{InProcess: true})
	nc, err := srv.Connect()
	require.NoError(t, err)
	defer nc.Close()
	ctx := context.Background()
	_, err = natsjs.New[int](ctx, nc, natsjs.Options{Stream: "R1", Replicas: 1})
	require.NoError(t, err)
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	for _, name := range []string{"R1", "R1_DLQ"} {
		st, err := js.Stream(ctx, name)
		require.NoError(t, err)
		assert.Equal(t, 1, st.CachedInfo().Config.Replicas, name)
	}
	_, err = natsjs.New[int](ctx, nc, natsjs.Options{Stream: "R3", Replicas: 3})
	require.Error(t, err, "one server cannot hold three replicas")
	assert.Contains(t, strings.ToLower(err.Error()), "replicas")
}

func TestOptionsValidate(t *testing.T) {
	tests := []struct {
		opts natsjs.Options
		want string
	}{
		{natsjs.Options{Stream: "a.b"}, `natsjs: invalid Stream "a.b"`},
		{natsjs.Options{Durable: "x y"}, `natsjs: invalid Durable "x y"`},
		{natsjs.Options{Stream: "S", DeadLetterStream: "S"}, `natsjs: invalid DeadLetterStream "S"`},
		{natsjs.Options{Capacity: -1}, "natsjs: invalid Capacity -1"},
		{natsjs.Options{DeadLetterLimit: -1}, "natsjs: invalid DeadLetterLimit -1"},
		{natsjs.Options{DeadLetterMaxBytes: -1}, "natsjs: invalid DeadLetterMaxBytes -1: must not be negative"},
		{natsjs.Options{Replicas: -1}, "natsjs: invalid Replicas -1: must be between 0 and 5"},
		{natsjs.Options{Replicas: 6}, "natsjs: invalid Replicas 6"},
		{natsjs.Options{DedupWindow: -1}, "natsjs: invalid DedupWindow -1ns"},
		{natsjs.Options{Storage: 7}, "natsjs: invalid Storage 7"},
		{natsjs.Options{AckWait: time.Millisecond}, "natsjs: invalid AckWait 1ms"},
		{natsjs.Options{FetchWait: time.Microsecond}, "natsjs: invalid FetchWait 1µs"},
		{natsjs.Options{MaxPublishPending: -1}, "natsjs: invalid MaxPublishPending -1"},
		{natsjs.Options{PublishTimeout: -1}, "natsjs: invalid PublishTimeout -1ns"},
		{natsjs.Options{AsyncAttempts: -1}, "natsjs: invalid AsyncAttempts -1: must be between 0 and 1000"},
		{natsjs.Options{AsyncAttempts: 1001}, "natsjs: invalid AsyncAttempts 1001"},
		{natsjs.Options{AsyncRetryWait: -1}, "natsjs: invalid AsyncRetryWait -1ns"},
		{natsjs.Options{AsyncRetryWait: time.Microsecond}, "natsjs: invalid AsyncRetryWait 1µs: must be 0 or at least 1ms"},
		{natsjs.Options{DedupWindow: 30 * time.Second}, "natsjs: invalid AsyncAttempts 10: re-publishing may last up to 56.72s, beyond DedupWindow 30s"},
		{natsjs.Options{AsyncAttempts: 1000, PublishTimeout: time.Hour}, "natsjs: invalid AsyncAttempts 1000"},
	}
	for _, tc := range tests {
		err := tc.opts.Validate()
		require.Error(t, err, "%+v", tc.opts)
		assert.Contains(t, err.Error(), tc.want)
		_, err = natsjs.New[int](context.Background(), nil, tc.opts)
		assert.Contains(t, err.Error(), tc.want, "New validates")
	}
	for _, ok := range []natsjs.Options{
		{},
		{DedupWindow: 30 * time.Second, AsyncAttempts: 1},
		{DedupWindow: 30 * time.Second, AsyncAttempts: 5, PublishTimeout: time.Second},
		{AsyncAttempts: 1000, AsyncRetryWait: time.Millisecond, PublishTimeout: time.Millisecond, DedupWindow: time.Hour},
	} {
		assert.NoError(t, ok.Validate(), "%+v", ok)
	}
	_, err := natsjs.New[int](context.Background(), nil, natsjs.Options{})
	assert.EqualError(t, err, "natsjs: nil connection")
}

// TestOptionsValidateHugeRetrySpan: re-publishing that would last past
// the largest time.Duration is refused as lasting beyond DedupWindow. The
// span was summed without bound, wrapped round to a negative duration and
// passed, so that re-publishes outlasted the dedup window and could store
// a message twice.
func TestOptionsValidateHugeRetrySpan(t *testing.T) {
	for _, opts := range []natsjs.Options{
		{AsyncAttempts: 5, PublishTimeout: math.MaxInt64 / 4},
		{AsyncAttempts: 3, PublishTimeout: math.MaxInt64 / 2, DedupWindow: time.Hour},
		{AsyncAttempts: 1000, AsyncRetryWait: math.MaxInt64 / 500, DedupWindow: 24 * time.Hour},
	} {
		assert.ErrorContains(t, opts.Validate(), "natsjs: invalid AsyncAttempts", "%+v", opts)
	}
}

func TestConsumeRejectsBadOptions(t *testing.T) {
	srv := startServer(t, natsembed.Options{InProcess: true})
	q, err := natsjs.New[int](context.Background(), connect(t, srv.Connect), natsjs.Options{Stream: "OPTS"})
	require.NoError(t, err)
	err = q.Consume(context.Background(), func(context.Context, kanban.Delivery[int]) error { return nil }, kanban.ConsumeOptions{WIP: -1})
	assert.ErrorContains(t, err, "kanban: invalid WIP -1")
	assert.False(t, errors.Is(err, context.Canceled))
}

// TestStreams: New makes the work stream a work queue that refuses new
// messages when full, and the dead-letter stream one that keeps messages
// and drops the oldest beyond its limit, both with the storage and
// deduplication window asked for.
func TestStreams(t *testing.T) {
	srv := startServer(t, natsembed.Options{InProcess: true})
	ctx := context.Background()
	q, err := natsjs.New[int](ctx, connect(t, srv.Connect), natsjs.Options{
		Stream: "WORK", DeadLetterStream: "DEAD", Capacity: 5, DeadLetterLimit: 3,
		DedupWindow: time.Minute, Storage: natsjs.MemoryStorage, MaxBytes: 1 << 20, MaxAge: time.Hour,
	})
	require.NoError(t, err)
	for _, want := range []jetstream.StreamConfig{
		{Name: "WORK", Subjects: []string{"WORK"}, Retention: jetstream.WorkQueuePolicy, Discard: jetstream.DiscardNew, MaxMsgs: 5},
		{Name: "DEAD", Subjects: []string{"DEAD"}, Retention: jetstream.LimitsPolicy, Discard: jetstream.DiscardOld, MaxMsgs: 3},
	} {
		s, err := q.JetStream().Stream(ctx, want.Name)
		require.NoError(t, err)
		info, err := s.Info(ctx)
		require.NoError(t, err)
		got := info.Config
		assert.Equal(t, want.Subjects, got.Subjects, want.Name)
		assert.Equal(t, want.Retention, got.Retention, want.Name)
		assert.Equal(t, want.Discard, got.Discard, want.Name)
		assert.Equal(t, want.MaxMsgs, got.MaxMsgs, want.Name)
		assert.Equal(t, time.Minute, got.Duplicates, want.Name)
		assert.Equal(t, jetstream.MemoryStorage, got.Storage, want.Name)
	}
	work, err := q.JetStream().Stream(ctx, "WORK")
	require.NoError(t, err)
	assert.Equal(t, int64(1<<20), work.CachedInfo().Config.MaxBytes)
	assert.Equal(t, time.Hour, work.CachedInfo().Config.MaxAge)
	dead, err := q.JetStream().Stream(ctx, "DEAD")
	require.NoError(t, err)
	assert.Zero(t, dead.CachedInfo().Config.MaxAge, "dead letters are kept by count alone")
	o := q.Options()
	assert.Equal(t, "WORK_WORKERS", o.Durable, "Options returns the defaults filled in")
	assert.Equal(t, 30*time.Second, o.AckWait)
}

// A work stream at MaxBytes refuses new messages as one at Capacity does.
func TestMaxBytesRefusesWhenFull(t *testing.T) {
	srv := startServer(t, natsembed.Options{InProcess: true})
	ctx := context.Background()
	q, err := natsjs.New[[]byte](ctx, connect(t, srv.Connect), natsjs.Options{
		Stream: "BYTES", Capacity: 1000, MaxBytes: 4096, Storage: natsjs.MemoryStorage,
	})
	require.NoError(t, err)
	payload := make([]byte, 1000)
	accepted := 0
	for i := range 10 {
		err = q.TryPublish(ctx, kanban.Message[[]byte]{ID: strconv.Itoa(i), Payload: payload})
		if err != nil {
			break
		}
		accepted++
	}
	require.ErrorIs(t, err, kanban.ErrFull)
	assert.Positive(t, accepted)
	assert.Less(t, accepted, 4, "4096 bytes hold fewer than four 1000-byte messages with their headers")
	require.NoError(t, q.Shutdown(ctx))
}

func TestMaxBytesAndMaxAgeAreValidated(t *testing.T) {
	assert.ErrorContains(t, natsjs.Options{MaxBytes: -1}.Validate(), "invalid MaxBytes -1")
	assert.ErrorContains(t, natsjs.Options{MaxAge: -time.Second}.Validate(), "invalid MaxAge -1s")
}

// MaxAge and DedupWindow are checked as JetStream checks them, so that New
// names the field instead of failing on the server's refusal; and a
// MaxAge shorter than the default DedupWindow shortens it, as JetStream's
// own default does, instead of making every New fail with "duplicates
// window can not be larger then max age".
func TestMaxAgeAndDedupWindowAsJetStreamTakesThem(t *testing.T) {
	srv := startServer(t, natsembed.Options{InProcess: true})
	nc := connect(t, srv.Connect)
	ctx := context.Background()
	for _, tc := range []struct {
		opts natsjs.Options
		want string
	}{
		{natsjs.Options{MaxAge: 50 * time.Millisecond}, "natsjs: invalid MaxAge 50ms: must be 0 or at least 100ms"},
		{natsjs.Options{DedupWindow: 50 * time.Millisecond, AsyncAttempts: 1}, "natsjs: invalid DedupWindow 50ms: must be 0 or at least 100ms"},
		{natsjs.Options{MaxAge: time.Hour, DedupWindow: 2 * time.Hour}, "natsjs: invalid DedupWindow 2h0m0s: must not exceed MaxAge 1h0m0s"},
		{natsjs.Options{MaxAge: 30 * time.Second}, "natsjs: invalid AsyncAttempts 10: re-publishing may last up to 56.72s, beyond DedupWindow 30s (MaxAge)"},
		{natsjs.Options{DeadLetterStream: "KANBAN"}, `natsjs: invalid DeadLetterStream "KANBAN": must differ from Stream "KANBAN"`},
		{natsjs.Options{Stream: strings.Repeat("S", 256)}, `natsjs: invalid Stream "` + strings.Repeat("S", 256) + `": 256 bytes, more than the 255 JetStream takes`},
		{natsjs.Options{Stream: strings.Repeat("S", 250)}, `natsjs: invalid Durable "` + strings.Repeat("S", 250) + `_WORKERS" (made from Stream): 258 bytes, more than the 255 JetStream takes`},
		{natsjs.Options{Stream: strings.Repeat("S", 252), Durable: "W"}, `natsjs: invalid DeadLetterStream "` + strings.Repeat("S", 252) + `_DLQ" (made from Stream): 256 bytes, more than the 255 JetStream takes`},
	} {
		_, err := natsjs.New[int](ctx, nc, tc.opts)
		assert.EqualError(t, err, tc.want, "%+v", tc.opts)
	}
	for i, tc := range []struct {
		opts   natsjs.Options
		window time.Duration
	}{
		{natsjs.Options{MaxAge: time.Minute}, time.Minute},
		{natsjs.Options{MaxAge: time.Hour}, 2 * time.Minute},
		{natsjs.Options{MaxAge: 100 * time.Millisecond, DedupWindow: 100 * time.Millisecond, AsyncAttempts: 1}, 100 * time.Millisecond},
		{natsjs.Options{MaxAge: time.Second, AsyncAttempts: 1}, time.Second},
	} {
		tc.opts.Stream = "AGE" + strconv.Itoa(i)
		q, err := natsjs.New[int](ctx, nc, tc.opts)
		require.NoError(t, err, "%+v", tc.opts)
		assert.Equal(t, tc.window, q.Options().DedupWindow)
		s, err := q.JetStream().Stream(ctx, tc.opts.Stream)
		require.NoError(t, err)
		assert.Equal(t, tc.window, s.CachedInfo().Config.Duplicates)
		assert.Equal(t, tc.opts.MaxAge, s.CachedInfo().Config.MaxAge)
	}
}

// A message larger than MaxBytes on its own is refused at once with
// ErrTooLarge, not taken for a full stream: it would never fit, so
// Publish waited for room until its ctx ended and TryPublish said ErrFull.
func TestMessageLargerThanMaxBytes(t *testing.T) {
	srv := startServer(t, natsembed.Options{InProcess: true})
	ctx := context.Background()
	for _, storage := range []natsjs.Storage{natsjs.FileStorage, natsjs.MemoryStorage} {
		q, err := natsjs.New[[]byte](ctx, connect(t, srv.Connect), natsjs.Options{
			Stream: "HUGE" + strconv.Itoa(int(storage)), MaxBytes: 4096, Storage: storage,
		})
		require.NoError(t, err)
		huge := kanban.Message[[]byte]{ID: "huge", Payload: make([]byte, 5000)}
		for name, publish := range map[string]func(context.Context, kanban.Message[[]byte]) error{
			"Publish": q.Publish, "TryPublish": q.TryPublish,
		} {
			pctx, cancel := context.WithTimeout(ctx, 10*time.Second) // bounds a Publish that waits for room
			err := publish(pctx, huge)
			cancel()
			require.ErrorIs(t, err, natsjs.ErrTooLarge, name)
			assert.NotErrorIs(t, err, kanban.ErrFull, name)
			assert.ErrorContains(t, err, "message huge", name)
		}
		// One that fits waits for room as before.
		require.NoError(t, q.Publish(ctx, kanban.Message[[]byte]{ID: "a", Payload: make([]byte, 3000)}))
		err = q.TryPublish(ctx, kanban.Message[[]byte]{ID: "b", Payload: make([]byte, 3000)})
		require.ErrorIs(t, err, kanban.ErrFull)
		require.NoError(t, q.Shutdown(ctx))
	}
}

// rawCodec stores a []byte payload as it is.
type rawCodec struct{}

func (rawCodec) Marshal(v any) ([]byte, error) { return v.([]byte), nil }
func (rawCodec) Unmarshal(data []byte, v any) error {
	*v.(*[]byte) = append([]byte(nil), data...)
	return nil
}

// ErrTooLarge is exact: a message that takes MaxBytes to the byte is
// stored, and one a byte larger, which the server would refuse even on an
// empty stream, is refused.
func TestTooLargeIsExact(t *testing.T) {
	srv := startServer(t, natsembed.Options{InProcess: true})
	ctx := context.Background()
	// The subject "EDGEn" (5), the header "NATS/1.0\r\nNats-Msg-Id: edge\r\n\r\n" (31)
	// and the framing: 34 bytes in a file, 16 in memory.
	for storage, payload := range map[natsjs.Storage]int{natsjs.FileStorage: 4096 - 70, natsjs.MemoryStorage: 4096 - 52} {
		name := "EDGE" + strconv.Itoa(int(storage))
		q, err := natsjs.New[[]byte](ctx, connect(t, srv.Connect), natsjs.Options{
			Stream: name, MaxBytes: 4096, Storage: storage, Codec: rawCodec{},
		})
		require.NoError(t, err)
		err = q.TryPublish(ctx, kanban.Message[[]byte]{ID: "edge", Payload: make([]byte, payload+1)})
		require.ErrorIs(t, err, natsjs.ErrTooLarge, name)
		_, err = q.JetStream().PublishMsg(ctx, &nats.Msg{Subject: name, Data: make([]byte, payload+1), Header: nats.Header{"Nats-Msg-Id": {"edge"}}})
		require.ErrorContains(t, err, "maximum bytes exceeded", "%s: the server refuses it too", name)
		require.NoError(t, q.TryPublish(ctx, kanban.Message[[]byte]{ID: "edge", Payload: make([]byte, payload)}), name)
		require.NoError(t, q.Shutdown(ctx))
	}
}
