package jidoka_test

import (
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/jidoka"
)

// TestBreakerCountsExactlyUnderContention runs thousands of goroutines
// through the lock-free windows at once: not one result may be lost.
func TestBreakerCountsExactlyUnderContention(t *testing.T) {
	const n = 4000
	for _, opts := range []jidoka.BreakerOptions{
		{FailureRate: 0.9, WindowSize: n},
		{FailureRate: 0.9, WindowDuration: time.Minute},
	} {
		b := newBreaker(t, opts)
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := range n {
			wg.Go(func() {
				<-start
				var err error
				if i%4 == 0 {
					err = errBoom
				}
				_ = call(b, err)
			})
		}
		close(start)
		wg.Wait()
		s := b.Snapshot()
		assert.Equal(t, jidoka.StateClosed, s.State)
		assert.Equal(t, n, s.Calls)
		assert.Equal(t, n/4, s.Failures)
	}
}

// TestBreakerConcurrentChaos drives one breaker from hundreds of
// goroutines while the state is changed under them (trips, resets, forced
// states, open periods ending) and results arrive late, across generations.
// The breaker must keep its invariants, never hold more probe leases than
// HalfOpenProbes, and deliver its events as one ordered chain.
//
// Time moves in rounds: every worker sleeps a millisecond after each call,
// so the bubble's clock advances once all of them (and the hand) sleep, and
// the open timers fire while the workers of the next round run.
func TestBreakerConcurrentChaos(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const (
			workers = 500
			perG    = 100
			probes  = 3
		)
		var (
			mu     sync.Mutex
			events []jidoka.Event
		)
		b, err := jidoka.NewBreaker(jidoka.BreakerOptions{
			ConsecutiveFailures: 3, FailureRate: 0.5, WindowSize: 64, MinimumCalls: 8,
			OpenDuration: 2 * time.Millisecond, HalfOpenProbes: probes, HalfOpenSuccesses: 2, ProbeTimeout: time.Hour,
			OnStateChange: func(ev jidoka.Event) {
				mu.Lock()
				events = append(events, ev)
				mu.Unlock()
			},
		})
		require.NoError(t, err)

		var (
			late      = make(chan func(error), workers*perG)
			handWG    sync.WaitGroup
			workersWG sync.WaitGroup
			stop      = make(chan struct{})
			ctx       = context.Background()
		)
		handWG.Go(func() { // the hand on the switches, bounded by the workers' rounds
			r := rand.New(rand.NewPCG(1, 2))
			for range 10 * perG {
				select {
				case <-stop:
					return
				default:
				}
				switch r.IntN(10) { // now and then, a change by hand
				case 0:
					b.Trip("chaos")
				case 1:
					b.Reset()
				case 2:
					b.ForceOpen("chaos")
				}
				s := b.Snapshot()
				if s.ProbesInFlight > probes || s.Failures > s.Calls || s.Calls > 64 {
					t.Errorf("broken snapshot %+v", s)
				}
				time.Sleep(time.Millisecond)
			}
		})
		for g := range workers {
			workersWG.Go(func() {
				r := rand.New(rand.NewPCG(uint64(g), 7))
				for range perG {
					var result error
					if r.IntN(3) == 0 {
						result = errBoom
					}
					if r.IntN(2) == 0 {
						done, err := b.Allow(ctx)
						if err == nil {
							late <- func(error) { done(result) }
						} else if !errors.Is(err, jidoka.ErrOpen) {
							t.Errorf("Allow: %v", err)
						}
					} else {
						err := b.Do(ctx, func(context.Context) error { return result })
						if err != nil && err != result && !errors.Is(err, jidoka.ErrOpen) {
							t.Errorf("Do: %v", err)
						}
					}
					time.Sleep(time.Millisecond)
				}
			})
		}
		workersWG.Wait()
		close(stop)
		handWG.Wait()
		close(late)
		for done := range late { // results of calls from many generations ago
			done(nil)
		}
		synctest.Wait() // the last open timer's event, if it fired

		s := b.Snapshot()
		assert.LessOrEqual(t, s.ProbesInFlight, probes)
		mu.Lock()
		defer mu.Unlock()
		require.NotEmpty(t, events)
		var expired, closed int // the chaos reached the timer and the probes
		for _, ev := range events {
			switch {
			case ev.From == jidoka.StateOpen && ev.To == jidoka.StateHalfOpen:
				expired++
			case ev.From == jidoka.StateHalfOpen && ev.To == jidoka.StateClosed:
				closed++
			}
		}
		assert.NotZero(t, expired, "no open period ended")
		assert.NotZero(t, closed, "no probes closed the breaker")
		assert.Equal(t, jidoka.StateClosed, events[0].From)
		for i := 1; i < len(events); i++ {
			require.Equal(t, events[i-1].To, events[i].From, "event %d", i)
			require.Greater(t, events[i].Generation, events[i-1].Generation, "event %d", i)
		}
		assert.Equal(t, s.State, events[len(events)-1].To)
	})
}

// TestBreakerHalfOpenNeverExceedsLeases lets thousands of goroutines race
// for the probe leases of a half-open breaker with calls that block: exactly
// HalfOpenProbes may run.
func TestBreakerHalfOpenNeverExceedsLeases(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const (
			probes = 5
			n      = 2000
		)
		b := newBreaker(t, jidoka.BreakerOptions{ConsecutiveFailures: 1, OpenDuration: time.Second, HalfOpenProbes: probes, HalfOpenSuccesses: 100})
		calls(t, b, 1, errBoom)
		advance(time.Second)
		release := make(chan struct{})
		var admitted, rejected atomic.Int64
		var wg sync.WaitGroup
		for range n {
			wg.Go(func() {
				err := b.Do(context.Background(), func(context.Context) error {
					admitted.Add(1)
					<-release
					return nil
				})
				if errors.Is(err, jidoka.ErrOpen) {
					rejected.Add(1)
				}
			})
		}
		synctest.Wait() // the probes wait for release; every other call was refused
		assert.Equal(t, int64(probes), admitted.Load())
		assert.Equal(t, int64(n-probes), rejected.Load())
		assert.Equal(t, probes, b.Snapshot().ProbesInFlight)
		close(release)
		wg.Wait()
		s := b.Snapshot()
		assert.Equal(t, 0, s.ProbesInFlight)
		assert.Equal(t, probes, s.ProbeSuccesses)
	})
}
