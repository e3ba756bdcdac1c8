package kanban

import (
	"context"
	"errors"
	"math"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// recordingSource is a Source whose leases record how they are settled;
// Pull is never called (the tests dispatch by hand).
type recordingSource struct {
	inTurn bool
	mu     sync.Mutex
	events []string
}

func (s *recordingSource) Pull(ctx context.Context, _ int) ([]Lease[int], error) {
	<-ctx.Done()
	return nil, ctx.Err()
}
func (s *recordingSource) HeartbeatInterval() time.Duration { return 0 }
func (s *recordingSource) ReleaseOrder() ReleaseOrder {
	if s.inTurn {
		return ReleaseInTurn
	}
	return ReleaseToFront
}

func (s *recordingSource) record(ev string) {
	s.mu.Lock()
	s.events = append(s.events, ev)
	s.mu.Unlock()
}

func (s *recordingSource) recorded() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.events...)
}

type recordingLease struct {
	s       *recordingSource
	id, key string
}

func (l *recordingLease) ID() string   { return l.id }
func (l *recordingLease) Key() string  { return l.key }
func (l *recordingLease) Attempt() int { return 1 }
func (l *recordingLease) Message() (Message[int], error) {
	return Message[int]{ID: l.id, Key: l.key}, nil
}
func (l *recordingLease) Ack(context.Context) error { l.s.record("ack " + l.id); return nil }
func (l *recordingLease) Retry(context.Context, time.Duration) error {
	l.s.record("retry " + l.id)
	return nil
}
func (l *recordingLease) Release(context.Context) error { l.s.record("release " + l.id); return nil }
func (l *recordingLease) DeadLetter(context.Context, string, int) error {
	l.s.record("dead " + l.id)
	return nil
}
func (l *recordingLease) Extend(context.Context) error { return nil }

// TestDrainReleasesLeasesNoWorkerTookYet: a lease dispatched to the
// workers that none of them has taken when the drain starts is released,
// not started: here the consumer's one worker (WIP 1) has handled its
// message and freed its slot, the pull loop has pulled the next and
// dispatched it, and the worker takes work again only once the drain has
// begun. Released in the order that has the source deliver each key's
// messages again in their order: with PerKey the one dispatched comes
// before those waiting behind it in its key's lane and those a Pull
// returned as the consumer stopped.
func TestDrainReleasesLeasesNoWorkerTookYet(t *testing.T) {
	for _, tc := range []struct {
		name   string
		inTurn bool
		perKey bool
		want   []string
	}{
		{"to front", false, false, []string{"release a1"}},
		{"in turn", true, false, []string{"release a1"}},
		{"to front, per key", false, true, []string{"release a3", "release a2", "release a1"}},
		{"in turn, per key", true, true, []string{"release a1", "release a2", "release a3"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				ctx, cancel := context.WithCancel(context.Background())
				src := &recordingSource{inTurn: tc.inTurn}
				handled := false
				o := ConsumeOptions{WIP: 1, PerKey: tc.perKey}.WithDefaults()
				e := newEngine[int](ctx, src, func(context.Context, Delivery[int]) error {
					handled = true
					return nil
				}, o, Runtime{Counters: new(Counters)})
				defer e.cancelHandlers()
				// The one worker, between its last message and the next.
				e.workers = 1
				e.wg.Add(1)
				ls := []*recordingLease{{src, "a1", "a"}, {src, "a2", "a"}, {src, "a3", "a"}}
				require.True(t, e.dispatch(ctx, ls[0], false))
				var back []Lease[int]
				if tc.perKey {
					e.free++ // a2 waits in a's lane, in a slot of a larger WIP
					require.True(t, e.dispatch(ctx, ls[1], false))
					cancel()
					e.free++
					require.False(t, e.dispatch(ctx, ls[2], false), "pulled as the consumer stopped")
					back = []Lease[int]{ls[2]}
				}
				cancel()
				done := make(chan error, 1)
				go func() { done <- e.drain(back) }()
				synctest.Wait() // the drain has begun, and waits for the worker
				go e.worker(nil, nil)
				require.NoError(t, <-done)
				assert.False(t, handled, "no message starts once the drain has begun")
				assert.Equal(t, tc.want, src.recorded())
				assert.Zero(t, e.rt.Counters.Snapshot().InFlight)
			})
		})
	}
}

// TestDrainReleasesInPullOrderAcrossKeys: the leases the drain hands
// back at once go back in the order they were pulled, across keys, even
// when one no worker took was pulled after one waiting in its key's lane,
// or before it.
func TestDrainReleasesInPullOrderAcrossKeys(t *testing.T) {
	for _, tc := range []struct {
		name   string
		inTurn bool
		pulled []string // each lease's ID; its key is its first letter
		want   []string
	}{
		{"to front", false, []string{"a1", "a2", "b1"}, []string{"release b1", "release a2", "release a1"}},
		{"in turn", true, []string{"a1", "a2", "b1"}, []string{"release a1", "release a2", "release b1"}},
		{"to front, lane pulled last", false, []string{"a1", "b1", "a2"}, []string{"release a2", "release b1", "release a1"}},
		{"in turn, lane pulled last", true, []string{"a1", "b1", "a2"}, []string{"release a1", "release b1", "release a2"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			src := &recordingSource{inTurn: tc.inTurn}
			o := ConsumeOptions{WIP: 3, PerKey: true}.WithDefaults()
			e := newEngine[int](ctx, src, func(context.Context, Delivery[int]) error {
				t.Error("no message starts once the drain has begun")
				return nil
			}, o, Runtime{Counters: new(Counters)})
			defer e.cancelHandlers()
			// Every worker busy elsewhere: the leases wait, a2 behind a1.
			e.workers = o.WIP
			for _, id := range tc.pulled {
				require.True(t, e.dispatch(ctx, &recordingLease{src, id, id[:1]}, false))
			}
			cancel()
			require.NoError(t, e.drain(nil))
			assert.Equal(t, tc.want, src.recorded())
		})
	}
}

// delayLease is a keyed lease that records the delay of its Retry.
type delayLease struct {
	recordingLease
	delay time.Duration
}

func (l *delayLease) Retry(_ context.Context, delay time.Duration) error {
	l.delay = delay
	return nil
}

// TestInPlaceRetryAtTheDrainWithTheMostNegativeBackoff: a keyed message
// whose attempt fails once the drain has begun is retried after what is
// left of its back-off; a back-off of the most negative Duration (what a
// float64 past the largest Duration converts to, on amd64, in a Backoff
// of one's own) leaves nothing, and the message is retried at once. What
// was left was computed as the delay minus the time waited, which
// overflowed to about 292 years: the message waited that long.
func TestInPlaceRetryAtTheDrainWithTheMostNegativeBackoff(t *testing.T) {
	src := &recordingSource{}
	o := ConsumeOptions{PerKey: true, Backoff: BackoffFunc(func(int) time.Duration { return math.MinInt64 })}.WithDefaults()
	e := newEngine[int](context.Background(), src, func(context.Context, Delivery[int]) error { return nil }, o, Runtime{Counters: new(Counters)})
	defer e.cancelHandlers()
	e.stopped.Store(true)
	close(e.stopping)
	// Both the timer of the back-off and the drain are ready: the wait
	// ends on either, so try it often enough to take both ways.
	for i := range 64 {
		l := &delayLease{recordingLease: recordingLease{src, "a1", "a"}}
		d := &Delivery[int]{Message: Message[int]{ID: "a1", Key: "a"}, Attempt: 1}
		again := e.failed(l, d, errors.New("transient"), 1, true, &exit{}, &e.rt.Counters.base)
		require.False(t, again, "no attempt in place once the drain has begun")
		require.LessOrEqual(t, l.delay, time.Duration(0), "try %d: retried after %v", i, l.delay)
	}
}
