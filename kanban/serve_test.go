package kanban_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/kanban"
)

// The tests of this file run Serve on a scripted backend, as a backend
// author would: they check what Serve promises of Source and Lease.

// pull is one scripted answer of backend.Pull.
type pull struct {
	leases []*lease
	err    error
	// after, when set, is closed before Pull answers: it waits for it.
	after <-chan struct{}
}

// backend is a kanban.Source whose Pull answers as scripted, then hands
// out the leases in ready (at most max at a time), then blocks until ctx
// ends. It records what Serve does to its leases.
type backend struct {
	heartbeat time.Duration

	mu     sync.Mutex
	script []pull
	ready  []*lease
	maxes  []int           // Pull's max, call by call
	pulls  []time.Duration // when each Pull was called, since start
	events []string        // "ack a", "extend a@10s", ...
	start  time.Time
	// onCtxEnd, when set, is what a Pull blocked when ctx ends returns.
	onCtxEnd []*lease
}

func newBackend(ready ...*lease) *backend {
	b := &backend{ready: ready, start: time.Now()}
	for _, l := range ready {
		l.b = b
	}
	return b
}

func (b *backend) HeartbeatInterval() time.Duration { return b.heartbeat }

func (b *backend) Pull(ctx context.Context, max int) ([]kanban.Lease[int], error) {
	b.mu.Lock()
	b.maxes = append(b.maxes, max)
	b.pulls = append(b.pulls, time.Since(b.start))
	if len(b.script) > 0 {
		p := b.script[0]
		b.script = b.script[1:]
		b.mu.Unlock()
		if p.after != nil {
			<-p.after
		}
		return b.leases(p.leases), p.err
	}
	if n := min(max, len(b.ready)); n > 0 {
		out := b.ready[:n]
		b.ready = b.ready[n:]
		b.mu.Unlock()
		return b.leases(out), nil
	}
	b.mu.Unlock()
	<-ctx.Done()
	return b.leases(b.onCtxEnd), ctx.Err()
}

func (b *backend) leases(ls []*lease) []kanban.Lease[int] {
	out := make([]kanban.Lease[int], len(ls))
	for i, l := range ls {
		l.b = b
		out[i] = l
	}
	return out
}

func (b *backend) record(format string, args ...any) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.events = append(b.events, fmt.Sprintf(format, args...))
}

func (b *backend) recorded() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.events...)
}

type lease struct {
	b       *backend
	id      string
	key     string
	attempt int
	// err, when set, is what every settlement and Extend return.
	err error
	// settling, when set, runs in every settlement once it is recorded,
	// as a backend's own hook would: it may panic or call runtime.Goexit.
	settling func()
	// extending, when set, runs in Extend once it is recorded.
	extending func()
}

func (l *lease) ID() string   { return l.id }
func (l *lease) Key() string  { return l.key }
func (l *lease) Attempt() int { return max(l.attempt, 1) }
func (l *lease) Message() (kanban.Message[int], error) {
	return kanban.Message[int]{ID: l.id}, nil
}
func (l *lease) Ack(context.Context) error { return l.settle("ack %s", l.id) }
func (l *lease) Retry(_ context.Context, d time.Duration) error {
	return l.settle("retry %s %v", l.id, d)
}
func (l *lease) Release(context.Context) error { return l.settle("release %s", l.id) }
func (l *lease) DeadLetter(_ context.Context, reason string, attempts int) error {
	return l.settle("dead %s %d %s", l.id, attempts, reason)
}

// settle records a settlement, runs l.settling and returns l.err.
func (l *lease) settle(format string, args ...any) error {
	l.b.record(format, args...)
	if l.settling != nil {
		l.settling()
	}
	return l.err
}
func (l *lease) Extend(context.Context) error {
	l.b.record("extend %s@%v", l.id, time.Since(l.b.start))
	if l.extending != nil {
		l.extending()
	}
	return l.err
}

// serve runs Serve on b until stop is called, and returns what it
// returned.
func serve(t *testing.T, b *backend, h kanban.Handler[int], o kanban.ConsumeOptions) (stop func() error) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- kanban.Serve(ctx, kanban.Source[int](b), h, o, kanban.Runtime{}) }()
	return func() error {
		cancel()
		return <-done
	}
}

// TestServeExtendsRunningLeases: a lease is extended every heartbeat
// interval while its handler runs, once it has been held for an interval,
// and no longer once settled.
func TestServeExtendsRunningLeases(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBackend(&lease{id: "a"}, &lease{id: "b"})
		b.heartbeat = 10 * time.Second
		work := map[string]time.Duration{"a": 25 * time.Second, "b": 32 * time.Second}
		stop := serve(t, b, func(_ context.Context, d kanban.Delivery[int]) error {
			time.Sleep(work[d.ID])
			return nil
		}, kanban.ConsumeOptions{})
		time.Sleep(time.Minute)
		require.NoError(t, stop())
		assert.Equal(t, []string{
			"extend a@10s", "extend a@20s", "ack a", // a runs from 0 to 25s
			"extend b@35s", "extend b@45s", "extend b@55s", "ack b", // b from 25s to 57s
		}, b.recorded())
	})
}

// TestServeExtendsALeaseAnIntervalAfterItsPull: a lease pulled between
// two of another's extensions is extended an interval after its own pull,
// not at the other's next extension nor an interval after that: one
// extension lost still leaves the next in time, whenever the lease was
// pulled.
func TestServeExtendsALeaseAnIntervalAfterItsPull(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBackend(&lease{id: "a"}, &lease{id: "b"})
		b.heartbeat = 10 * time.Second
		work := map[string]time.Duration{"a": time.Second, "b": 35 * time.Second}
		stop := serve(t, b, func(_ context.Context, d kanban.Delivery[int]) error {
			time.Sleep(work[d.ID])
			return nil
		}, kanban.ConsumeOptions{})
		time.Sleep(time.Minute)
		require.NoError(t, stop())
		assert.Equal(t, []string{
			"ack a",
			"extend b@11s", "extend b@21s", "extend b@31s", "ack b", // b runs from 1s to 36s
		}, b.recorded())
	})
}

// TestServeExtendsLeasesOnTheirOwnSchedules: leases pulled half an
// interval apart are each extended an interval after their own pull and
// last extension; one nearly due (within a quarter interval) goes with one
// that is due.
func TestServeExtendsLeasesOnTheirOwnSchedules(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		late, later := make(chan struct{}), make(chan struct{})
		b := newBackend()
		b.heartbeat = 10 * time.Second
		b.script = []pull{
			{leases: []*lease{{id: "a"}}},
			{leases: []*lease{{id: "b"}}, after: late},
			{leases: []*lease{{id: "c"}}, after: later},
		}
		stop := serve(t, b, func(context.Context, kanban.Delivery[int]) error {
			time.Sleep(24 * time.Second)
			return nil
		}, kanban.ConsumeOptions{WIP: 3})
		time.Sleep(5 * time.Second)
		close(late) // b is pulled at 5s
		time.Sleep(2 * time.Second)
		close(later) // c at 7s: nearly due at 15s, with b; not at 10s, with a
		time.Sleep(time.Minute)
		require.NoError(t, stop())
		assert.ElementsMatch(t, []string{
			"extend a@10s", "extend b@15s", "extend c@15s", "extend a@20s", "ack a", // a runs from 0 to 24s
			"extend b@25s", "extend c@25s", "ack b", "ack c", // b from 5s to 29s, c from 7s to 31s
		}, b.recorded())
	})
}

// TestServeSettlesNoLeaseWhileExtendingIt: a lease whose handler returns
// while the heartbeat is extending it is settled once the extension has
// returned, not during it: a backend may reuse a settled lease, and an
// extension racing the settlement could reach a message settled already.
func TestServeSettlesNoLeaseWhileExtendingIt(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		extending, release := make(chan struct{}), make(chan struct{})
		a := &lease{id: "a"}
		a.extending = func() {
			close(extending)
			<-release
			a.b.record("extended a")
		}
		b := newBackend(a)
		b.heartbeat = time.Second
		stop := serve(t, b, func(context.Context, kanban.Delivery[int]) error {
			<-extending
			return nil
		}, kanban.ConsumeOptions{})
		<-extending
		synctest.Wait()
		assert.Equal(t, []string{"extend a@1s"}, b.recorded(), "not settled while being extended")
		close(release)
		synctest.Wait()
		require.NoError(t, stop())
		assert.Equal(t, []string{"extend a@1s", "extended a", "ack a"}, b.recorded())
	})
}

// TestServeExtendPanicOrGoexit: a backend's Extend that panics or calls
// runtime.Goexit is logged as such, and the heartbeat goes on extending
// the leases held.
func TestServeExtendPanicOrGoexit(t *testing.T) {
	for _, how := range []string{"panicked", "called runtime.Goexit"} {
		t.Run(how, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				a := &lease{id: "a", extending: func() {
					if how == "panicked" {
						panicInHook("bad extend")
					}
					runtime.Goexit()
				}}
				b := newBackend(a)
				b.heartbeat = time.Second
				var log logRecorder
				stop := serve(t, b, func(context.Context, kanban.Delivery[int]) error {
					time.Sleep(3500 * time.Millisecond)
					return nil
				}, kanban.ConsumeOptions{Logger: slog.New(&log)})
				time.Sleep(time.Minute)
				require.NoError(t, stop())
				assert.Equal(t, []string{"extend a@1s", "extend a@2s", "extend a@3s", "ack a"}, b.recorded())
				logged := log.attrs("kanban: extending a lease " + how)
				require.Len(t, logged, 3)
				assert.Equal(t, "a", logged[0]["id"])
				assert.Equal(t, slog.LevelError, logged[0]["level"])
			})
		})
	}
}

// TestServeExtendsLeasesWaitingForTheirKey: with PerKey, a lease waiting
// behind a running message of its key is extended too, as it is held from
// the moment it is pulled; left alone, its backend would deliver it again
// (to this consumer, into the same key's line) once its lease ran out.
func TestServeExtendsLeasesWaitingForTheirKey(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBackend(&lease{id: "a1", key: "k"}, &lease{id: "a2", key: "k"})
		b.heartbeat = 10 * time.Second
		stop := serve(t, b, func(_ context.Context, d kanban.Delivery[int]) error {
			time.Sleep(24 * time.Second)
			return nil
		}, kanban.ConsumeOptions{WIP: 2, PerKey: true})
		time.Sleep(time.Minute)
		require.NoError(t, stop())
		var a2 []string
		for _, ev := range b.recorded() {
			if strings.HasSuffix(ev, "a2") || strings.Contains(ev, "a2@") {
				a2 = append(a2, ev)
			}
		}
		// a2 waits from 0 to 24s, then runs until 48s.
		assert.Equal(t, []string{"extend a2@10s", "extend a2@20s", "extend a2@30s", "extend a2@40s", "ack a2"}, a2)
	})
}

// TestServeRetriesFailedPulls: a failed Pull is logged and tried again
// after a wait that doubles, from 10ms, and starts again from 10ms once a
// Pull succeeds.
func TestServeRetriesFailedPulls(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		down := errors.New("server down")
		b := newBackend()
		b.script = []pull{{err: down}, {err: down}, {err: down}, {leases: []*lease{{id: "a"}}}, {err: down}}
		var log logRecorder
		stop := serve(t, b, func(context.Context, kanban.Delivery[int]) error { return nil },
			kanban.ConsumeOptions{Logger: slog.New(&log)})
		time.Sleep(time.Second)
		require.NoError(t, stop())
		ms := time.Millisecond
		assert.Equal(t, []time.Duration{0, 10 * ms, 30 * ms, 70 * ms, 70 * ms, 80 * ms}, b.pulls)
		var waits []any
		for _, a := range log.attrs("kanban: pull failed") {
			assert.Equal(t, down, a["err"])
			waits = append(waits, a["retry_in"])
		}
		assert.Equal(t, []any{10 * ms, 20 * ms, 40 * ms, 10 * ms}, waits)
		assert.Equal(t, []string{"ack a"}, b.recorded())
	})
}

// TestServeStopsOnAPermanentPullError: a Pull error marked Permanent says
// the backend can deliver nothing more (its connection closed for good):
// Serve pulls no more, releases what came with the error, lets the running
// handler finish, logs nothing and returns the error, without waiting for
// ctx. A drain that times out returns ErrDrainTimeout as well.
func TestServeStopsOnAPermanentPullError(t *testing.T) {
	for _, tc := range []struct {
		name  string
		work  time.Duration
		drain time.Duration
		want  []string
	}{
		{"drained", 5 * time.Second, time.Minute, []string{"release late", "ack a"}},
		{"drain timed out", time.Hour, time.Second, []string{"release late", "release a"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				closed := errors.New("connection closed")
				b := newBackend()
				// The error comes once a has started: a message not
				// started when the consumer stops is released instead.
				running := make(chan struct{})
				b.script = []pull{{leases: []*lease{{id: "a"}}}, {leases: []*lease{{id: "late"}}, err: kanban.Permanent(closed), after: running}}
				var log logRecorder
				var started []string
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				err := kanban.Serve(ctx, kanban.Source[int](b), func(ctx context.Context, d kanban.Delivery[int]) error {
					started = append(started, d.ID)
					close(running)
					select {
					case <-time.After(tc.work):
						return nil
					case <-ctx.Done():
						return ctx.Err()
					}
				}, kanban.ConsumeOptions{WIP: 4, DrainTimeout: tc.drain, Logger: slog.New(&log)}, kanban.Runtime{})
				require.Error(t, err)
				assert.ErrorIs(t, err, closed)
				assert.True(t, kanban.IsPermanent(err))
				assert.Equal(t, tc.drain == time.Second, errors.Is(err, kanban.ErrDrainTimeout))
				assert.Len(t, b.pulls, 2, "pulled again after a Permanent error")
				assert.Equal(t, []string{"a"}, started)
				assert.Equal(t, tc.want, b.recorded())
				assert.Empty(t, log.records)
			})
		})
	}
}

// TestServePullsFreeWIPInBatches: Serve never asks for more than its free
// WIP, and waits until a quarter of the WIP is free before it pulls again.
func TestServePullsFreeWIPInBatches(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var ls []*lease
		for i := range 12 {
			ls = append(ls, &lease{id: fmt.Sprint(i)})
		}
		b := newBackend(ls...)
		stop := serve(t, b, func(_ context.Context, d kanban.Delivery[int]) error {
			var i int
			fmt.Sscan(d.ID, &i)
			time.Sleep(time.Duration(i+1) * time.Second) // one finishes each second
			return nil
		}, kanban.ConsumeOptions{WIP: 8})
		time.Sleep(time.Minute)
		require.NoError(t, stop())
		// 8 at first; then 2 each time two are free, until none are left.
		assert.Equal(t, []int{8, 2, 2, 2}, b.maxes)
		assert.Equal(t, []time.Duration{0, 2 * time.Second, 4 * time.Second, 6 * time.Second}, b.pulls)
	})
}

// TestServePullsAgainAfterAShortPull: after a Pull that returned fewer
// leases than asked for, the next Pull comes as soon as a slot is free,
// not once a quarter of the WIP is: the source may still be delivering
// what it pulled for (a JetStream request stays open), and a message it
// delivers must not wait there, its lease not extended, for the running
// handlers to finish.
func TestServePullsAgainAfterAShortPull(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var ls []*lease
		for i := range 7 {
			ls = append(ls, &lease{id: fmt.Sprint(i)})
		}
		b := newBackend(ls...)
		stop := serve(t, b, func(context.Context, kanban.Delivery[int]) error {
			time.Sleep(10 * time.Second)
			return nil
		}, kanban.ConsumeOptions{WIP: 8})
		time.Sleep(time.Second)
		synctest.Wait()
		require.NoError(t, stop())
		assert.Equal(t, []int{8, 1}, b.maxes)
		assert.Equal(t, []time.Duration{0, 0}, b.pulls)
	})
}

// TestServeReleasesLeasesPulledAsItStops: leases a Pull returns together
// with ctx's error are released, not handled, the last first.
func TestServeReleasesLeasesPulledAsItStops(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBackend()
		b.onCtxEnd = []*lease{{id: "late1"}, {id: "late2"}}
		called := false
		stop := serve(t, b, func(context.Context, kanban.Delivery[int]) error {
			called = true
			return nil
		}, kanban.ConsumeOptions{WIP: 4})
		synctest.Wait()
		require.NoError(t, stop())
		assert.False(t, called)
		assert.Equal(t, []string{"release late2", "release late1"}, b.recorded(), "the last first, so a backend releasing to the front keeps the order")
	})
}

// inTurnBackend is a backend that delivers released messages again in the
// order they were released, as JetStream does.
type inTurnBackend struct{ *backend }

func (inTurnBackend) ReleaseOrder() kanban.ReleaseOrder { return kanban.ReleaseInTurn }

// TestServeHandsBackInTheSourcesReleaseOrder: as it stops, Serve hands
// back a key's messages not started — those waiting behind the running
// one, then those a Pull returned with ctx's error — in the order that
// has the backend deliver them again in their order: the last first to a
// backend that releases to the front (by default), the first first to
// one that releases in turn. To the latter, once the running one is
// settled: the drain deadline releases it, and it must come again first.
func TestServeHandsBackInTheSourcesReleaseOrder(t *testing.T) {
	front := func(b *backend) kanban.Source[int] { return b }
	inTurn := func(b *backend) kanban.Source[int] { return inTurnBackend{b} }
	for _, tc := range []struct {
		name    string
		src     func(*backend) kanban.Source[int]
		timeout bool // the running handler outlasts the drain
		want    []string
	}{
		{"to front", front, false, []string{"release a3", "release a2", "ack a1"}},
		{"to front, drain timeout", front, true, []string{"release a3", "release a2", "release a1"}},
		{"in turn", inTurn, false, []string{"ack a1", "release a2", "release a3"}},
		{"in turn, drain timeout", inTurn, true, []string{"release a1", "release a2", "release a3"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				b := newBackend()
				b.script = []pull{{leases: []*lease{{id: "a1", key: "a"}, {id: "a2", key: "a"}}}}
				b.onCtxEnd = []*lease{{id: "a3", key: "a"}}
				ctx, cancel := context.WithCancel(context.Background())
				done := make(chan error, 1)
				go func() {
					done <- kanban.Serve(ctx, tc.src(b), func(hctx context.Context, _ kanban.Delivery[int]) error {
						if tc.timeout {
							<-hctx.Done()
							return hctx.Err()
						}
						time.Sleep(10 * time.Second)
						return nil
					}, kanban.ConsumeOptions{WIP: 4, PerKey: true, DrainTimeout: time.Minute}, kanban.Runtime{})
				}()
				time.Sleep(time.Second)
				synctest.Wait()
				cancel()
				if err := <-done; tc.timeout {
					require.ErrorIs(t, err, kanban.ErrDrainTimeout)
				} else {
					require.NoError(t, err)
				}
				assert.Equal(t, tc.want, b.recorded())
			})
		})
	}
}

// TestServeExtendsLeasesHeldBackInTheDrain: to a backend that releases in
// turn, a key's messages wait in the drain for the running one to be
// settled, and their leases are extended meanwhile: those waiting behind
// it, and one a Pull returned with ctx's error, from then.
func TestServeExtendsLeasesHeldBackInTheDrain(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBackend()
		b.heartbeat = 10 * time.Second
		b.script = []pull{{leases: []*lease{{id: "a1", key: "a"}, {id: "a2", key: "a"}}}}
		b.onCtxEnd = []*lease{{id: "a3", key: "a"}}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() {
			done <- kanban.Serve(ctx, inTurnBackend{b}, func(context.Context, kanban.Delivery[int]) error {
				time.Sleep(25 * time.Second)
				return nil
			}, kanban.ConsumeOptions{WIP: 4, PerKey: true, DrainTimeout: time.Minute}, kanban.Runtime{})
		}()
		time.Sleep(time.Second)
		synctest.Wait()
		cancel()
		require.NoError(t, <-done)
		// a3, held from 1s, is nearly due at 10s, and extended with the
		// others.
		assert.ElementsMatch(t, []string{
			"extend a1@10s", "extend a2@10s", "extend a3@10s", "extend a1@20s", "extend a2@20s", "extend a3@20s",
		}, b.recorded()[:6])
		assert.Equal(t, []string{"ack a1", "release a2", "release a3"}, b.recorded()[6:])
	})
}

// TestServeLogsSettleFailures: a failed settlement or lease extension is
// logged with the message ID; the message comes back when the backend's
// lease expires.
func TestServeLogsSettleFailures(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		lost := errors.New("connection lost")
		b := newBackend(&lease{id: "ack", err: lost}, &lease{id: "retry", err: lost}, &lease{id: "dead", err: lost}, &lease{id: "slow", err: lost})
		b.heartbeat = time.Second
		b.onCtxEnd = []*lease{{id: "release", err: lost}}
		var log logRecorder
		stop := serve(t, b, func(_ context.Context, d kanban.Delivery[int]) error {
			switch d.ID {
			case "retry":
				return errors.New("again")
			case "dead":
				return kanban.Permanent(errors.New("no"))
			case "slow":
				time.Sleep(1500 * time.Millisecond) // extended once, at 1s
			}
			return nil
		}, kanban.ConsumeOptions{Logger: slog.New(&log), Backoff: kanban.BackoffFunc(func(int) time.Duration { return time.Minute })})
		time.Sleep(time.Minute)
		require.NoError(t, stop())
		var settled []any
		for _, a := range log.attrs("kanban: settling a message failed") {
			assert.Equal(t, lost, a["err"])
			settled = append(settled, a["id"])
		}
		assert.ElementsMatch(t, []any{"ack", "retry", "dead", "slow", "release"}, settled)
		extended := log.attrs("kanban: extending a lease failed")
		require.Len(t, extended, 1)
		assert.Equal(t, "slow", extended[0]["id"])
		assert.Equal(t, lost, extended[0]["err"])
	})
}

// TestServeLogsNothingWhenAllGoesWell: settlements and extensions that
// succeed are not logged.
func TestServeLogsNothingWhenAllGoesWell(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBackend(&lease{id: "slow"}, &lease{id: "retry"})
		b.heartbeat = time.Second
		var log logRecorder
		stop := serve(t, b, func(_ context.Context, d kanban.Delivery[int]) error {
			if d.ID == "retry" {
				return errors.New("again")
			}
			time.Sleep(5 * time.Second)
			return nil
		}, kanban.ConsumeOptions{Logger: slog.New(&log)})
		time.Sleep(time.Minute)
		require.NoError(t, stop())
		assert.Empty(t, log.records)
		assert.Contains(t, b.recorded(), "extend slow@4s")
	})
}

// TestServeDeadLettersOverDelivered: a message delivered more often than
// MaxAttempts (a backend redelivering after crashes) is dead-lettered
// without running the handler; one on its last attempt still runs.
func TestServeDeadLettersOverDelivered(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBackend(&lease{id: "last", attempt: 3}, &lease{id: "over", attempt: 4})
		var handled []string
		stop := serve(t, b, func(_ context.Context, d kanban.Delivery[int]) error {
			handled = append(handled, d.ID)
			return nil
		}, kanban.ConsumeOptions{MaxAttempts: 3})
		synctest.Wait()
		require.NoError(t, stop())
		assert.Equal(t, []string{"last"}, handled)
		assert.Equal(t, []string{"ack last", "dead over 4 kanban: delivered 4 times, more than MaxAttempts 3"}, b.recorded())
	})
}

func TestServeRejectsANilHandler(t *testing.T) {
	err := kanban.Serve(context.Background(), kanban.Source[int](newBackend()), nil, kanban.ConsumeOptions{}, kanban.Runtime{})
	assert.EqualError(t, err, "kanban: nil handler")
}

// TestServeCountsIntoRuntimeCounters: the counts go to the Counters the
// backend lends.
func TestServeCountsIntoRuntimeCounters(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBackend(&lease{id: "ok"}, &lease{id: "bad"})
		var c kanban.Counters
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() {
			done <- kanban.Serve(ctx, kanban.Source[int](b), func(_ context.Context, d kanban.Delivery[int]) error {
				if d.ID == "bad" {
					return kanban.Permanent(errors.New("no"))
				}
				return nil
			}, kanban.ConsumeOptions{}, kanban.Runtime{Counters: &c})
		}()
		synctest.Wait()
		cancel()
		require.NoError(t, <-done)
		assert.Equal(t, kanban.QueueStats{Handled: 1, DeadLettered: 1}, c.Snapshot())
	})
}

// TestServeSettlementPanicOrGoexit: a backend's settlement (Ack, Retry,
// DeadLetter) that panics or calls runtime.Goexit, running a hook of its
// own, is logged as such and not taken for the handler's: the message is
// settled once, not again as a failed attempt, its WIP slot is freed, and
// the consumer goes on to the next message.
func TestServeSettlementPanicOrGoexit(t *testing.T) {
	for _, how := range []string{"panicked", "called runtime.Goexit"} {
		for _, tc := range []struct {
			name    string
			result  error
			settled string
		}{
			{"Ack", nil, "ack x"},
			{"Retry", errors.New("again"), "retry x 1s"},
			{"DeadLetter", kanban.Permanent(errors.New("no")), "dead x 1 no"},
		} {
			t.Run(tc.name+" "+how, func(t *testing.T) {
				synctest.Test(t, func(t *testing.T) {
					x := &lease{id: "x", settling: func() {
						if how == "panicked" {
							panicInHook("bad backend")
						}
						runtime.Goexit()
					}}
					b := newBackend(x, &lease{id: "y"})
					var log logRecorder
					stop := serve(t, b, func(_ context.Context, d kanban.Delivery[int]) error {
						if d.ID == "x" {
							return tc.result
						}
						return nil
					}, kanban.ConsumeOptions{
						WIP: 1, MaxAttempts: 3, Logger: slog.New(&log),
						Backoff: kanban.BackoffFunc(func(int) time.Duration { return time.Second }),
					})
					time.Sleep(time.Minute)
					synctest.Wait()
					require.NoError(t, stop())
					assert.Equal(t, []string{tc.settled, "ack y"}, b.recorded())
					logged := log.attrs("kanban: settling a message " + how)
					require.Len(t, logged, 1)
					assert.Equal(t, slog.LevelError, logged[0]["level"])
					assert.Equal(t, "x", logged[0]["id"])
					if how == "panicked" {
						assert.Equal(t, "bad backend", logged[0]["panic"])
						assert.Contains(t, logged[0]["stack"], "panicInHook")
					} else {
						assert.Contains(t, logged[0]["stack"], "runtime.Goexit")
					}
					assert.Empty(t, log.attrs("kanban: handler called runtime.Goexit"))
				})
			})
		}
	}
}

// TestServeCountsOnlyStoredDeadLetters: a dead letter the backend failed
// to store is not counted in DeadLettered: the message stays in the
// queue, to be delivered again, and was counted once more each time.
func TestServeCountsOnlyStoredDeadLetters(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBackend(&lease{id: "a", err: errors.New("dead-letter stream unavailable")}, &lease{id: "b"})
		var c kanban.Counters
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() {
			done <- kanban.Serve(ctx, kanban.Source[int](b), func(context.Context, kanban.Delivery[int]) error {
				return kanban.Permanent(errors.New("corrupt"))
			}, kanban.ConsumeOptions{Logger: slog.New(slog.DiscardHandler)}, kanban.Runtime{Counters: &c})
		}()
		synctest.Wait()
		cancel()
		require.NoError(t, <-done)
		assert.ElementsMatch(t, []string{"dead a 1 corrupt", "dead b 1 corrupt"}, b.recorded())
		assert.EqualValues(t, 1, c.Snapshot().DeadLettered, "b's dead letter alone was stored")
	})
}

// TestServeReleaseGoexitInTheDrain: a Release that calls runtime.Goexit
// as the drain hands back the messages not started is logged, counts as
// settled, and stops neither the drain nor Serve: the other messages are
// released all the same and Serve returns, in its caller's goroutine. To
// a backend that releases in turn, the messages of a key handed back once
// its running one is settled go back all the same.
func TestServeReleaseGoexitInTheDrain(t *testing.T) {
	goexit := func() { runtime.Goexit() }
	for _, tc := range []struct {
		name string
		// goexits names the lease whose Release calls runtime.Goexit.
		goexits string
		inTurn  bool
		want    []string
	}{
		{"to front, first", "a3", false, []string{"release a3", "release a2", "ack a1"}},
		{"to front, last", "a2", false, []string{"release a3", "release a2", "ack a1"}},
		{"in turn", "a2", true, []string{"ack a1", "release a2", "release a3"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				b := newBackend()
				ls := map[string]*lease{"a1": {id: "a1", key: "a"}, "a2": {id: "a2", key: "a"}, "a3": {id: "a3", key: "a"}}
				ls[tc.goexits].settling = goexit
				b.script = []pull{{leases: []*lease{ls["a1"], ls["a2"]}}}
				b.onCtxEnd = []*lease{ls["a3"]}
				var src kanban.Source[int] = b
				if tc.inTurn {
					src = inTurnBackend{b}
				}
				var log logRecorder
				ctx, cancel := context.WithCancel(context.Background())
				done := make(chan error, 1)
				exited := make(chan struct{})
				go func() {
					defer close(exited)
					done <- kanban.Serve(ctx, src, func(context.Context, kanban.Delivery[int]) error {
						time.Sleep(10 * time.Second)
						return nil
					}, kanban.ConsumeOptions{WIP: 4, PerKey: true, DrainTimeout: time.Minute, Logger: slog.New(&log)},
						kanban.Runtime{})
				}()
				time.Sleep(time.Second)
				synctest.Wait()
				cancel()
				<-exited
				select {
				case err := <-done:
					require.NoError(t, err)
				default:
					t.Fatal("Serve did not return: its caller's goroutine ended")
				}
				assert.Equal(t, tc.want, b.recorded())
				logged := log.attrs("kanban: settling a message called runtime.Goexit")
				require.Len(t, logged, 1)
				assert.Equal(t, tc.goexits, logged[0]["id"])
			})
		})
	}
}

// valueLease is a lease held as a struct value that cannot be compared
// (it holds a slice), as a backend may hand out.
type valueLease struct {
	*lease
	tags []string
}

// valueSource is a backend whose leases are valueLease values.
type valueSource struct{ *backend }

func (s valueSource) Pull(ctx context.Context, max int) ([]kanban.Lease[int], error) {
	ls, err := s.backend.Pull(ctx, max)
	for i, l := range ls {
		ls[i] = valueLease{lease: l.(*lease), tags: []string{"t"}}
	}
	return ls, err
}

// TestServeExtendsLeasesThatAreNotComparable: a Lease that is a struct
// value holding a slice, which cannot be a map key nor be compared, is
// extended and settled as a pointer is, and Serve does not panic: also
// as it waits for its key in the drain, and is released in the drain.
func TestServeExtendsLeasesThatAreNotComparable(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBackend(&lease{id: "a"}, &lease{id: "b"})
		b.heartbeat = 10 * time.Second
		work := map[string]time.Duration{"a": 25 * time.Second, "b": 32 * time.Second}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() {
			done <- kanban.Serve(ctx, valueSource{b}, func(_ context.Context, d kanban.Delivery[int]) error {
				time.Sleep(work[d.ID])
				return nil
			}, kanban.ConsumeOptions{}, kanban.Runtime{})
		}()
		time.Sleep(time.Minute)
		cancel()
		require.NoError(t, <-done)
		assert.Equal(t, []string{
			"extend a@10s", "extend a@20s", "ack a",
			"extend b@35s", "extend b@45s", "extend b@55s", "ack b",
		}, b.recorded())
	})
	synctest.Test(t, func(t *testing.T) {
		b := newBackend()
		b.heartbeat = 10 * time.Second
		b.script = []pull{{leases: []*lease{{id: "a1", key: "a"}, {id: "a2", key: "a"}}}}
		b.onCtxEnd = []*lease{{id: "a3", key: "a"}}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() {
			done <- kanban.Serve(ctx, inTurnValueSource{valueSource{b}}, func(context.Context, kanban.Delivery[int]) error {
				time.Sleep(25 * time.Second)
				return nil
			}, kanban.ConsumeOptions{WIP: 4, PerKey: true, DrainTimeout: time.Minute}, kanban.Runtime{})
		}()
		time.Sleep(time.Second)
		synctest.Wait()
		cancel()
		require.NoError(t, <-done)
		// a3, held from 1s, is nearly due at 10s, and extended with the
		// others.
		assert.ElementsMatch(t, []string{
			"extend a1@10s", "extend a2@10s", "extend a3@10s", "extend a1@20s", "extend a2@20s", "extend a3@20s",
		}, b.recorded()[:6])
		assert.Equal(t, []string{"ack a1", "release a2", "release a3"}, b.recorded()[6:])
	})
}

// inTurnValueSource is a valueSource that releases in turn.
type inTurnValueSource struct{ valueSource }

func (inTurnValueSource) ReleaseOrder() kanban.ReleaseOrder { return kanban.ReleaseInTurn }

// stalledSource is a backend whose lease of the message hang has an
// Extend that waits until its ctx ends, as a call over a stalled
// connection does.
type stalledSource struct {
	*backend
	hang string
}

func (s stalledSource) Pull(ctx context.Context, max int) ([]kanban.Lease[int], error) {
	ls, err := s.backend.Pull(ctx, max)
	for i, l := range ls {
		if l.ID() == s.hang {
			ls[i] = stalledLease{l.(*lease)}
		}
	}
	return ls, err
}

type stalledLease struct{ *lease }

func (l stalledLease) Extend(ctx context.Context) error {
	l.b.record("extend %s@%v", l.id, time.Since(l.b.start))
	<-ctx.Done()
	l.b.record("extension of %s cancelled@%v", l.id, time.Since(l.b.start))
	return ctx.Err()
}

// TestServeCancelsAnExtensionItSettles: a settlement that finds its lease
// being extended cancels the extension's ctx, and waits for it to return:
// a drain handing back a message waiting behind its key does not wait for
// an Extend that waits on a stalled connection, which nothing else would
// end before the drain's deadline, and that deadline only runs once the
// messages not started are handed back. The cancelled extension is not
// logged as a failure.
func TestServeCancelsAnExtensionItSettles(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBackend(&lease{id: "a1", key: "k"}, &lease{id: "a2", key: "k"})
		b.heartbeat = time.Second
		var log logRecorder
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() {
			done <- kanban.Serve(ctx, stalledSource{b, "a2"}, func(ctx context.Context, d kanban.Delivery[int]) error {
				time.Sleep(10 * time.Second)
				return nil
			}, kanban.ConsumeOptions{WIP: 2, PerKey: true, DrainTimeout: time.Minute, Logger: slog.New(&log)}, kanban.Runtime{})
		}()
		time.Sleep(1500 * time.Millisecond) // a2's extension, at 1s, waits
		cancel()
		select {
		case err := <-done:
			require.NoError(t, err)
		case <-time.After(time.Hour):
			t.Fatal("Serve did not return")
		}
		var a2 []string
		for _, ev := range b.recorded() {
			if strings.Contains(ev, "a2") {
				a2 = append(a2, ev)
			}
		}
		assert.Equal(t, []string{"extend a2@1s", "extension of a2 cancelled@1.5s", "release a2"}, a2)
		assert.Equal(t, "ack a1", b.recorded()[len(b.recorded())-1])
		assert.Empty(t, log.attrs("kanban: extending a lease failed"))
	})
}
