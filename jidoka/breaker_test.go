package jidoka_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"runtime"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/jidoka"
	"github.com/taipattern/taikit/tai"
)

var errBoom = errors.New("boom")

func newBreaker(t testing.TB, opts jidoka.BreakerOptions) *jidoka.Breaker {
	t.Helper()
	b, err := jidoka.NewBreaker(opts)
	require.NoError(t, err)
	return b
}

// advance moves the clock of the test's bubble forward by d and lets every
// timer due by then run: an open period ends when its time has come.
func advance(d time.Duration) {
	time.Sleep(d)
	synctest.Wait()
}

// call runs one call through b that returns err.
func call(b *jidoka.Breaker, err error) error {
	return b.Do(context.Background(), func(context.Context) error { return err })
}

// slowCall runs one call that takes d and returns err.
func slowCall(b *jidoka.Breaker, d time.Duration, err error) error {
	return b.Do(context.Background(), func(context.Context) error { time.Sleep(d); return err })
}

func calls(t *testing.T, b *jidoka.Breaker, n int, err error) {
	t.Helper()
	for range n {
		require.ErrorIs(t, call(b, err), err)
	}
}

func TestNewBreakerValidates(t *testing.T) {
	tests := []struct {
		opts jidoka.BreakerOptions
		want string
	}{
		{jidoka.BreakerOptions{ConsecutiveFailures: -1}, "ConsecutiveFailures must not be negative, got -1"},
		{jidoka.BreakerOptions{FailureRate: 1.5}, "FailureRate must be in [0, 1], got 1.5"},
		{jidoka.BreakerOptions{SlowCallRate: -0.1}, "SlowCallRate must be in [0, 1], got -0.1"},
		{jidoka.BreakerOptions{FailureRate: math.NaN()}, "FailureRate must be in [0, 1], got NaN"},
		{jidoka.BreakerOptions{SlowCallDuration: -time.Second}, "SlowCallDuration must not be negative"},
		{jidoka.BreakerOptions{MinimumCalls: -3}, "MinimumCalls must not be negative, got -3"},
		{jidoka.BreakerOptions{WindowSize: -1}, "WindowSize must be in"},
		{jidoka.BreakerOptions{WindowSize: jidoka.MaxWindowSize + 1}, "WindowSize must be in"},
		{jidoka.BreakerOptions{WindowDuration: -time.Second}, "WindowDuration must not be negative"},
		{jidoka.BreakerOptions{WindowSize: 10, WindowDuration: time.Second}, "WindowSize (10) and WindowDuration (1s) are exclusive"},
		{jidoka.BreakerOptions{WindowDuration: time.Second, WindowBuckets: -2}, "WindowBuckets must be in"},
		{jidoka.BreakerOptions{WindowDuration: 5, WindowBuckets: 10}, "WindowDuration (5ns) must be at least one nanosecond per bucket"},
		{jidoka.BreakerOptions{FailureRate: 0.5, WindowSize: 5, MinimumCalls: 6}, "MinimumCalls (6) exceeds WindowSize (5)"},
		{jidoka.BreakerOptions{OpenDuration: -time.Second}, "OpenDuration must not be negative"},
		{jidoka.BreakerOptions{MaxOpenDuration: -time.Second}, "MaxOpenDuration must not be negative"},
		{jidoka.BreakerOptions{OpenDuration: time.Minute, MaxOpenDuration: time.Second}, "MaxOpenDuration (1s) is shorter than OpenDuration (1m0s)"},
		{jidoka.BreakerOptions{BackoffFactor: 0.5}, "BackoffFactor must be at least 1, got 0.5"},
		{jidoka.BreakerOptions{BackoffFactor: math.NaN()}, "BackoffFactor must be at least 1, got NaN"},
		{jidoka.BreakerOptions{BackoffFactor: math.Inf(1)}, "BackoffFactor must be at least 1, got +Inf"},
		{jidoka.BreakerOptions{HalfOpenProbes: -1}, "HalfOpenProbes must be in"},
		{jidoka.BreakerOptions{HalfOpenProbes: jidoka.MaxHalfOpenProbes + 1}, "HalfOpenProbes must be in"},
		{jidoka.BreakerOptions{HalfOpenSuccesses: -1}, "HalfOpenSuccesses must not be negative"},
		{jidoka.BreakerOptions{ProbeTimeout: -1}, "ProbeTimeout must not be negative"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			b, err := jidoka.NewBreaker(tt.opts)
			require.Error(t, err)
			assert.Nil(t, b)
			assert.Contains(t, err.Error(), "jidoka: "+tt.want)
		})
	}
}

// Every limit is inclusive: the boundary value itself is valid.
func TestNewBreakerAcceptsLimits(t *testing.T) {
	for _, opts := range []jidoka.BreakerOptions{
		{FailureRate: 1, SlowCallRate: 1},
		{FailureRate: 0.5, WindowSize: jidoka.MaxWindowSize},
		{FailureRate: 0.5, WindowDuration: jidoka.MaxWindowBuckets, WindowBuckets: jidoka.MaxWindowBuckets},
		{FailureRate: 0.5, WindowSize: 20, MinimumCalls: 20},
		{HalfOpenProbes: jidoka.MaxHalfOpenProbes},
		{OpenDuration: time.Minute, MaxOpenDuration: time.Minute},
		{MaxOpenDuration: time.Hour, BackoffFactor: 1},
	} {
		b, err := jidoka.NewBreaker(opts)
		require.NoError(t, err, "%+v", opts)
		assert.NotNil(t, b)
	}
}

func TestBreakerDefaults(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBreaker(t, jidoka.BreakerOptions{Name: "gateway"})
		assert.Equal(t, "gateway", b.Name())
		start := time.Now()

		calls(t, b, 4, errBoom)
		assert.Equal(t, jidoka.StateClosed, b.State())
		assert.Equal(t, 4, b.Snapshot().ConsecutiveFailures)
		assert.Zero(t, b.Snapshot().Calls, "no rate rule: no window")
		calls(t, b, 1, errBoom) // the fifth in a row trips
		s := b.Snapshot()
		assert.Equal(t, jidoka.StateOpen, s.State)
		assert.Equal(t, "5 consecutive failures", s.Reason)
		assert.Equal(t, start.Add(30*time.Second), s.NextProbe)
		assert.Equal(t, 1, s.Trips)

		advance(30*time.Second - 1)
		assert.Equal(t, jidoka.StateOpen, b.State())
		advance(1)
		assert.Equal(t, jidoka.StateHalfOpen, b.State())

		// One probe at a time; three successes close.
		for i := range 3 {
			assert.Equal(t, jidoka.StateHalfOpen, b.State(), "before probe %d", i)
			require.NoError(t, call(b, nil))
		}
		s = b.Snapshot()
		assert.Equal(t, jidoka.StateClosed, s.State)
		assert.Equal(t, "3 probes succeeded", s.Reason)
		assert.Equal(t, 0, s.Trips)
	})
}

// A rate rule alone gets a count window of DefaultWindowSize calls, and
// the rates count once DefaultMinimumCalls calls are in the window; a time
// window has DefaultWindowBuckets buckets.
func TestBreakerRateDefaults(t *testing.T) {
	for _, opts := range []jidoka.BreakerOptions{
		{FailureRate: 0.5},
		{FailureRate: 0.5, WindowDuration: time.Minute},
	} {
		synctest.Test(t, func(t *testing.T) {
			b := newBreaker(t, opts)
			calls(t, b, jidoka.DefaultMinimumCalls-1, errBoom)
			assert.Equal(t, jidoka.StateClosed, b.State(), "%+v", opts)
			calls(t, b, 1, errBoom)
			assert.Equal(t, "failure rate 1 over 10 calls reached 0.5", b.Snapshot().Reason, "%+v", opts)
		})
	}

	b := newBreaker(t, jidoka.BreakerOptions{FailureRate: 0.5})
	calls(t, b, jidoka.DefaultWindowSize+50, nil)
	assert.Equal(t, jidoka.DefaultWindowSize, b.Snapshot().Calls)

	synctest.Test(t, func(t *testing.T) {
		b := newBreaker(t, jidoka.BreakerOptions{FailureRate: 0.5, WindowDuration: time.Minute}) // buckets of 6 s
		calls(t, b, 1, nil)
		advance(30 * time.Second)
		calls(t, b, 1, nil)
		advance(30 * time.Second)
		assert.Equal(t, 1, b.Snapshot().Calls, "the first bucket has expired, the sixth has not")
	})
}

func TestBreakerSuccessResetsConsecutive(t *testing.T) {
	b := newBreaker(t, jidoka.BreakerOptions{ConsecutiveFailures: 3})
	calls(t, b, 2, errBoom)
	calls(t, b, 1, nil)
	assert.Equal(t, 0, b.Snapshot().ConsecutiveFailures)
	calls(t, b, 2, errBoom)
	assert.Equal(t, jidoka.StateClosed, b.State())
	calls(t, b, 1, errBoom)
	assert.Equal(t, jidoka.StateOpen, b.State())
}

// step is one call of a trip-rule scenario: its result and how long it takes.
type step struct {
	err  error
	took time.Duration
	wait time.Duration // clock advance before the call
}

func steps(n int, s step) []step {
	out := make([]step, n)
	for i := range out {
		out[i] = s
	}
	return out
}

func concat(parts ...[]step) []step {
	var out []step
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

func TestBreakerTripRules(t *testing.T) {
	ok, fail := step{}, step{err: errBoom}
	slow := step{took: 2 * time.Second}
	tests := []struct {
		name   string
		opts   jidoka.BreakerOptions
		calls  []step
		open   bool   // open after all calls
		reason string // the trip reason, when open
		tripAt int    // index of the call that trips, when open
	}{
		{
			name:  "count window below minimum calls",
			opts:  jidoka.BreakerOptions{FailureRate: 0.5, WindowSize: 20, MinimumCalls: 10},
			calls: steps(9, fail),
		},
		{
			name:   "count window reaches minimum with a success",
			opts:   jidoka.BreakerOptions{FailureRate: 0.5, WindowSize: 20, MinimumCalls: 10},
			calls:  concat(steps(5, fail), steps(5, ok)),
			open:   true,
			reason: "failure rate 0.5 over 10 calls reached 0.5",
			tripAt: 9,
		},
		{
			name:  "count window rate just under",
			opts:  jidoka.BreakerOptions{FailureRate: 0.5, WindowSize: 10},
			calls: concat(steps(4, fail), steps(30, ok), steps(4, fail), steps(2, ok)),
		},
		{
			name:   "count window slides",
			opts:   jidoka.BreakerOptions{FailureRate: 0.7, WindowSize: 10},
			calls:  concat(steps(10, ok), steps(6, fail), steps(1, fail)),
			open:   true,
			reason: "failure rate 0.7 over 10 calls reached 0.7",
			tripAt: 16,
		},
		{
			name:   "rate rule turns the default consecutive rule off",
			opts:   jidoka.BreakerOptions{FailureRate: 0.9, WindowSize: 100, MinimumCalls: 50},
			calls:  concat(steps(45, ok), steps(45, fail), steps(405, fail)),
			open:   true,
			reason: "failure rate 0.9 over 100 calls reached 0.9",
			tripAt: 134, // the 45 successes slide out until 10 are left

		},
		{
			name:   "consecutive and rate combined",
			opts:   jidoka.BreakerOptions{ConsecutiveFailures: 3, FailureRate: 0.9, WindowSize: 100},
			calls:  concat(steps(20, ok), steps(3, fail)),
			open:   true,
			reason: "3 consecutive failures",
			tripAt: 22,
		},
		{
			name:   "time window",
			opts:   jidoka.BreakerOptions{FailureRate: 0.5, WindowDuration: 10 * time.Second, MinimumCalls: 4},
			calls:  concat(steps(2, ok), steps(1, fail), steps(1, fail)),
			open:   true,
			reason: "failure rate 0.5 over 4 calls reached 0.5",
			tripAt: 3,
		},
		{
			name: "time window forgets old failures",
			opts: jidoka.BreakerOptions{FailureRate: 0.5, WindowDuration: 10 * time.Second, MinimumCalls: 4},
			calls: concat(steps(3, fail), []step{{wait: 11 * time.Second}},
				steps(2, ok), steps(1, fail)),
		},
		{
			name: "time window expires one bucket at a time",
			opts: jidoka.BreakerOptions{FailureRate: 0.5, WindowDuration: 10 * time.Second, WindowBuckets: 10, MinimumCalls: 4},
			// t=0: a success; t=5s: a success and a failure; t=10.5s: the
			// bucket of t=0 has expired, so a failure makes 1 of 3 calls
			// (too few) and the next success 2 failures of 4 calls. Without
			// expiry the failure at 10.5s would trip; with the whole window
			// cleared the success would not.
			calls: []step{ok, {wait: 5 * time.Second}, fail,
				{wait: 5500 * time.Millisecond, err: errBoom}, ok},
			open:   true,
			reason: "failure rate 0.5 over 4 calls reached 0.5",
			tripAt: 4,
		},
		{
			name:   "slow-call rate counts slow successes",
			opts:   jidoka.BreakerOptions{SlowCallRate: 0.5, SlowCallDuration: time.Second, WindowSize: 4},
			calls:  concat(steps(2, ok), steps(2, slow)),
			open:   true,
			reason: "slow-call rate 0.5 over 4 calls reached 0.5",
			tripAt: 3,
		},
		{
			name:  "a call of exactly SlowCallDuration is not slow",
			opts:  jidoka.BreakerOptions{SlowCallRate: 0.5, SlowCallDuration: time.Second, WindowSize: 4},
			calls: concat(steps(4, step{took: time.Second})),
		},
		{
			name:   "slow-call rate in a time window",
			opts:   jidoka.BreakerOptions{SlowCallRate: 1, SlowCallDuration: time.Second, WindowDuration: time.Minute, MinimumCalls: 3},
			calls:  steps(3, slow),
			open:   true,
			reason: "slow-call rate 1 over 3 calls reached 1",
			tripAt: 2,
		},
		{
			name: "IsFailure decides",
			opts: jidoka.BreakerOptions{ConsecutiveFailures: 2, IsFailure: func(err error) bool {
				return !errors.Is(err, errNotFound)
			}},
			calls: steps(10, step{err: errNotFound}),
		},
		{
			name:  "context.Canceled is ignored",
			opts:  jidoka.BreakerOptions{ConsecutiveFailures: 2},
			calls: concat(steps(1, fail), steps(5, step{err: context.Canceled}), steps(1, ok), steps(1, fail)),
		},
		{
			name:   "Ignore replaces the default",
			opts:   jidoka.BreakerOptions{ConsecutiveFailures: 2, Ignore: func(error) bool { return false }},
			calls:  steps(2, step{err: context.Canceled}),
			open:   true,
			reason: "2 consecutive failures",
			tripAt: 1,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				b := newBreaker(t, tt.opts)
				tripped := -1
				for i, s := range tt.calls {
					advance(s.wait)
					err := slowCall(b, s.took, s.err)
					if tripped < 0 {
						require.ErrorIs(t, err, s.err, "call %d", i)
						if b.State() == jidoka.StateOpen {
							tripped = i
						}
					} else {
						require.ErrorIs(t, err, jidoka.ErrOpen, "call %d", i)
					}
				}
				s := b.Snapshot()
				if !tt.open {
					assert.Equal(t, jidoka.StateClosed, s.State, "tripped at call %d: %s", tripped, s.Reason)
					return
				}
				assert.Equal(t, jidoka.StateOpen, s.State)
				assert.Equal(t, tt.tripAt, tripped)
				assert.Equal(t, tt.reason, s.Reason)
			})
		})
	}
}

var errNotFound = errors.New("not found")

func TestBreakerSnapshotCounts(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBreaker(t, jidoka.BreakerOptions{FailureRate: 0.9, SlowCallRate: 0.9, SlowCallDuration: time.Second, WindowSize: 10})
		calls(t, b, 3, errBoom)
		require.NoError(t, slowCall(b, 2*time.Second, nil))
		calls(t, b, 4, nil)
		s := b.Snapshot()
		assert.Equal(t, 8, s.Calls)
		assert.Equal(t, 3, s.Failures)
		assert.Equal(t, 1, s.SlowCalls)
		assert.InDelta(t, 3.0/8, s.FailureRate, 1e-12)
		assert.InDelta(t, 1.0/8, s.SlowCallRate, 1e-12)
		assert.Equal(t, 0, s.ConsecutiveFailures, "no consecutive rule with rate rules")

		b.Reset()
		s = b.Snapshot()
		assert.Equal(t, jidoka.StateClosed, s.State)
		assert.Zero(t, s.Calls, "Reset clears the window")
		assert.Zero(t, s.FailureRate, "no calls, no rate")
		assert.Zero(t, s.SlowCallRate)

		// A time window forgets as time passes, also in Snapshot.
		tb := newBreaker(t, jidoka.BreakerOptions{FailureRate: 0.9, WindowDuration: 10 * time.Second, WindowBuckets: 5})
		calls(t, tb, 3, errBoom)
		advance(4 * time.Second)
		calls(t, tb, 2, nil)
		assert.Equal(t, 5, tb.Snapshot().Calls)
		advance(7 * time.Second)
		assert.Equal(t, 2, tb.Snapshot().Calls)
		assert.Equal(t, 0, tb.Snapshot().Failures)
		advance(10 * time.Second)
		assert.Equal(t, 0, tb.Snapshot().Calls)

		// WindowBuckets sets how coarsely the window forgets: with 2
		// buckets of 5 s, a call at 4.9 s leaves with the first bucket at
		// 10 s; with 10 buckets of 1 s it would stay until 14 s.
		cb := newBreaker(t, jidoka.BreakerOptions{FailureRate: 0.9, WindowDuration: 10 * time.Second, WindowBuckets: 2})
		advance(4900 * time.Millisecond)
		calls(t, cb, 1, nil)
		advance(5100*time.Millisecond - 1)
		assert.Equal(t, 1, cb.Snapshot().Calls)
		advance(1)
		assert.Equal(t, 0, cb.Snapshot().Calls)

		// The window of a later period counts from when that period began.
		advance(time.Minute)
		tb.Reset()
		calls(t, tb, 3, errBoom)
		advance(4 * time.Second)
		calls(t, tb, 2, nil)
		advance(7 * time.Second)
		s = tb.Snapshot()
		assert.Equal(t, 2, s.Calls)
		assert.Equal(t, 0, s.Failures)
	})
}

func TestBreakerHalfOpenLeases(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBreaker(t, jidoka.BreakerOptions{ConsecutiveFailures: 1, OpenDuration: 10 * time.Second, HalfOpenProbes: 2, HalfOpenSuccesses: 3})
		ctx := context.Background()
		calls(t, b, 1, errBoom)
		advance(10 * time.Second)
		require.Equal(t, jidoka.StateHalfOpen, b.State())

		done1, err := b.Allow(ctx)
		require.NoError(t, err)
		done2, err := b.Allow(ctx)
		require.NoError(t, err)
		_, err = b.Allow(ctx)
		var oe *jidoka.OpenError
		require.ErrorAs(t, err, &oe)
		assert.Equal(t, jidoka.StateHalfOpen, oe.State)
		assert.Equal(t, "1 consecutive failures", oe.Reason)
		assert.Zero(t, oe.RetryAfter())
		assert.Equal(t, 2, b.Snapshot().ProbesInFlight)

		done1(nil)
		done1(errBoom) // a second report of the same lease is ignored
		done2(nil)
		s := b.Snapshot()
		assert.Equal(t, jidoka.StateHalfOpen, s.State)
		assert.Equal(t, 2, s.ProbeSuccesses)
		assert.Equal(t, 0, s.ProbesInFlight)

		require.NoError(t, call(b, nil))
		assert.Equal(t, jidoka.StateClosed, b.State())
	})
}

func TestBreakerProbeFailureBacksOff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBreaker(t, jidoka.BreakerOptions{
			ConsecutiveFailures: 1, HalfOpenSuccesses: 1,
			OpenDuration: 10 * time.Second, MaxOpenDuration: 60 * time.Second, BackoffFactor: 2,
		})
		calls(t, b, 1, errBoom)
		for _, d := range []time.Duration{10, 20, 40, 60, 60} {
			d *= time.Second
			s := b.Snapshot()
			require.Equal(t, jidoka.StateOpen, s.State)
			assert.Equal(t, time.Now().Add(d), s.NextProbe, "trip %d", s.Trips)
			advance(d - 1)
			require.Equal(t, jidoka.StateOpen, b.State())
			advance(1)
			require.Equal(t, jidoka.StateHalfOpen, b.State())
			calls(t, b, 1, errBoom) // the probe fails: open again, longer
			assert.Equal(t, "probe failed", b.Snapshot().Reason)
		}
		advance(60 * time.Second)
		calls(t, b, 1, nil)
		require.Equal(t, jidoka.StateClosed, b.State())
		calls(t, b, 1, errBoom) // back-off was reset by closing
		assert.Equal(t, time.Now().Add(10*time.Second), b.Snapshot().NextProbe)
	})
}

// BackoffFactor sets how fast open periods grow; 1 keeps them all at
// OpenDuration.
func TestBreakerBackoffFactor(t *testing.T) {
	for _, tt := range []struct {
		factor float64
		want   []time.Duration
	}{
		{3, []time.Duration{10, 30, 90, 100, 100}},
		{1, []time.Duration{10, 10, 10}},
	} {
		synctest.Test(t, func(t *testing.T) {
			b := newBreaker(t, jidoka.BreakerOptions{ConsecutiveFailures: 1, HalfOpenSuccesses: 1,
				OpenDuration: 10 * time.Second, MaxOpenDuration: 100 * time.Second, BackoffFactor: tt.factor})
			calls(t, b, 1, errBoom)
			for _, d := range tt.want {
				d *= time.Second
				assert.Equal(t, time.Now().Add(d), b.Snapshot().NextProbe, "factor %v, trip %d", tt.factor, b.Snapshot().Trips)
				advance(d)
				calls(t, b, 1, errBoom)
			}
		})
	}
}

func TestBreakerSlowProbeReopens(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBreaker(t, jidoka.BreakerOptions{ConsecutiveFailures: 1, SlowCallRate: 1, SlowCallDuration: time.Second, OpenDuration: time.Minute})
		calls(t, b, 1, errBoom)
		advance(time.Minute)
		require.NoError(t, slowCall(b, 3*time.Second, nil))
		s := b.Snapshot()
		assert.Equal(t, jidoka.StateOpen, s.State)
		assert.Equal(t, "probe was slow", s.Reason)
		assert.Equal(t, 2, s.Trips, "a slow probe is a trip of its own")
	})
}

// A probe is slow only when it takes longer than SlowCallDuration: one that
// takes exactly that long is a success and closes the breaker. A probe run
// through Allow and done is timed from Allow, as one run through Do.
func TestBreakerProbeOfExactlySlowCallDuration(t *testing.T) {
	probes := map[string]func(b *jidoka.Breaker, took time.Duration) error{
		"Do": func(b *jidoka.Breaker, took time.Duration) error { return slowCall(b, took, nil) },
		"Allow": func(b *jidoka.Breaker, took time.Duration) error {
			done, err := b.Allow(context.Background())
			if err != nil {
				return err
			}
			time.Sleep(took)
			done(nil)
			return nil
		},
	}
	for path, probe := range probes {
		for _, tt := range []struct {
			took time.Duration
			want jidoka.State
		}{
			{time.Second, jidoka.StateClosed},
			{time.Second + 1, jidoka.StateOpen},
		} {
			t.Run(path+"/"+tt.took.String(), func(t *testing.T) {
				synctest.Test(t, func(t *testing.T) {
					b := newBreaker(t, jidoka.BreakerOptions{ConsecutiveFailures: 1, SlowCallRate: 1, SlowCallDuration: time.Second,
						OpenDuration: time.Minute, HalfOpenSuccesses: 1})
					calls(t, b, 1, errBoom)
					advance(time.Minute)
					require.Equal(t, jidoka.StateHalfOpen, b.State())
					require.NoError(t, probe(b, tt.took))
					assert.Equal(t, tt.want, b.State())
				})
			})
		}
	}
}

// Slow calls leave a time window with their bucket: old slow calls neither
// show in Snapshot nor trip the breaker.
func TestBreakerTimeWindowForgetsSlowCalls(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		// Buckets of 1 s; the window is the last 3 buckets.
		b := newBreaker(t, jidoka.BreakerOptions{SlowCallRate: 0.5, SlowCallDuration: 100 * time.Millisecond,
			WindowDuration: 3 * time.Second, WindowBuckets: 3, MinimumCalls: 2})
		advance(time.Second)
		calls(t, b, 2, nil)                                        // 1 s: bucket 1
		require.NoError(t, slowCall(b, 500*time.Millisecond, nil)) // ends at 1.5 s: bucket 1
		s := b.Snapshot()
		assert.Equal(t, 3, s.Calls)
		assert.Equal(t, 1, s.SlowCalls)
		advance(time.Second)
		calls(t, b, 1, nil) // 2.5 s: bucket 2
		assert.Equal(t, 1, b.Snapshot().SlowCalls)

		advance(2 * time.Second) // 4.5 s: bucket 1 has left the window
		s = b.Snapshot()
		assert.Equal(t, 1, s.Calls)
		assert.Equal(t, 0, s.SlowCalls, "the slow call expired with its bucket")
		calls(t, b, 1, nil) // 2 calls, none slow: a remembered slow call would make the rate 0.5
		assert.Equal(t, jidoka.StateClosed, b.State())

		// The bucket that held the slow call is reused and expires again.
		advance(time.Second)
		calls(t, b, 1, nil) // 5.5 s: bucket 5
		advance(2 * time.Second)
		s = b.Snapshot() // 7.5 s: buckets 5 to 7
		assert.Equal(t, 1, s.Calls)
		assert.Equal(t, 0, s.SlowCalls)
	})
}

func TestBreakerReclaimsLeases(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBreaker(t, jidoka.BreakerOptions{ConsecutiveFailures: 1, OpenDuration: time.Second, ProbeTimeout: 5 * time.Second, HalfOpenSuccesses: 1})
		ctx := context.Background()
		calls(t, b, 1, errBoom)
		advance(time.Second)
		lost, err := b.Allow(ctx) // a probe that never reports
		require.NoError(t, err)
		advance(5*time.Second - 1)
		_, err = b.Allow(ctx)
		require.ErrorIs(t, err, jidoka.ErrOpen, "the lease is still held")
		advance(1)
		done, err := b.Allow(ctx)
		require.NoError(t, err, "the lease was reclaimed")
		lost(errBoom) // the late report of the reclaimed lease is ignored
		assert.Equal(t, jidoka.StateHalfOpen, b.State())
		done(nil)
		assert.Equal(t, jidoka.StateClosed, b.State())
	})
}

// Leases past ProbeTimeout are reclaimed only when a probe needs one, and
// then all of them: a late report counts as long as its lease was not
// reclaimed.
func TestBreakerReclaimsLeasesWhenNeeded(t *testing.T) {
	ctx := context.Background()
	opts := jidoka.BreakerOptions{ConsecutiveFailures: 1, OpenDuration: time.Second, ProbeTimeout: 5 * time.Second,
		HalfOpenProbes: 2, HalfOpenSuccesses: 3}
	t.Run("a free lease leaves the late ones alone", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			b := newBreaker(t, opts)
			calls(t, b, 1, errBoom)
			advance(time.Second)
			first, err := b.Allow(ctx)
			require.NoError(t, err)
			late, err := b.Allow(ctx)
			require.NoError(t, err)
			first(nil) // its lease is free again
			advance(time.Minute)
			_, err = b.Allow(ctx) // takes the free lease
			require.NoError(t, err)
			assert.Equal(t, 2, b.Snapshot().ProbesInFlight)
			late(errBoom) // its lease was never given away: the failure counts
			s := b.Snapshot()
			assert.Equal(t, jidoka.StateOpen, s.State)
			assert.Equal(t, "probe failed", s.Reason)
		})
	})
	t.Run("every late lease is reclaimed at once", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			b := newBreaker(t, opts)
			calls(t, b, 1, errBoom)
			advance(time.Second)
			lost1, err := b.Allow(ctx)
			require.NoError(t, err)
			lost2, err := b.Allow(ctx)
			require.NoError(t, err)
			advance(5 * time.Second)
			_, err = b.Allow(ctx)
			require.NoError(t, err)
			assert.Equal(t, 1, b.Snapshot().ProbesInFlight, "both late leases were reclaimed, one given out")
			lost1(errBoom)
			lost2(errBoom)
			assert.Equal(t, jidoka.StateHalfOpen, b.State(), "late reports of reclaimed leases are ignored")
			_, err = b.Allow(ctx)
			require.NoError(t, err, "the second reclaimed lease is free")
		})
	})
}

func TestBreakerCanceledGivesBackLease(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBreaker(t, jidoka.BreakerOptions{ConsecutiveFailures: 1, OpenDuration: time.Second, HalfOpenSuccesses: 1})
		calls(t, b, 1, errBoom)
		advance(time.Second)
		require.ErrorIs(t, call(b, context.Canceled), context.Canceled)
		s := b.Snapshot()
		assert.Equal(t, jidoka.StateHalfOpen, s.State)
		assert.Equal(t, 0, s.ProbesInFlight)
		assert.Equal(t, 0, s.ProbeSuccesses)
		require.NoError(t, call(b, nil))
		assert.Equal(t, jidoka.StateClosed, b.State())
	})
}

func TestBreakerIgnoresLateResults(t *testing.T) {
	ctx := context.Background()
	t.Run("closed to closed", func(t *testing.T) {
		b := newBreaker(t, jidoka.BreakerOptions{ConsecutiveFailures: 2, FailureRate: 0.5, WindowSize: 4, MinimumCalls: 1})
		var late []func(error)
		for range 3 {
			done, err := b.Allow(ctx)
			require.NoError(t, err)
			late = append(late, done)
		}
		b.Reset()
		for _, done := range late {
			done(errBoom)
		}
		s := b.Snapshot()
		assert.Equal(t, jidoka.StateClosed, s.State)
		assert.Zero(t, s.Calls)
		assert.Zero(t, s.ConsecutiveFailures)
	})
	t.Run("closed result in half-open", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			b := newBreaker(t, jidoka.BreakerOptions{ConsecutiveFailures: 1, OpenDuration: time.Second, HalfOpenSuccesses: 1})
			early, err := b.Allow(ctx)
			require.NoError(t, err)
			calls(t, b, 1, errBoom)
			advance(time.Second)
			require.Equal(t, jidoka.StateHalfOpen, b.State())
			early(nil) // began while closed: not a probe
			assert.Equal(t, jidoka.StateHalfOpen, b.State())
			early(errBoom)
			assert.Equal(t, jidoka.StateHalfOpen, b.State())
		})
	})
	t.Run("probe result after reset", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			b := newBreaker(t, jidoka.BreakerOptions{ConsecutiveFailures: 1, OpenDuration: time.Second})
			calls(t, b, 1, errBoom)
			advance(time.Second)
			probe, err := b.Allow(ctx)
			require.NoError(t, err)
			b.Reset()
			probe(errBoom)
			assert.Equal(t, jidoka.StateClosed, b.State())
			assert.Zero(t, b.Snapshot().ConsecutiveFailures)
		})
	})
	t.Run("the timer of an ended open period", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			b := newBreaker(t, jidoka.BreakerOptions{ConsecutiveFailures: 1, OpenDuration: time.Second})
			calls(t, b, 1, errBoom)
			b.Reset()
			b.ForceOpen("")
			advance(time.Hour)
			assert.Equal(t, jidoka.StateForcedOpen, b.State())
		})
	})
}

func TestBreakerForcedStates(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBreaker(t, jidoka.BreakerOptions{Name: "gw", ConsecutiveFailures: 1, WindowSize: 10})
		ran := 0
		fn := func(context.Context) error { ran++; return errBoom }
		ctx := context.Background()

		b.ForceOpen("")
		assert.Equal(t, "forced open", b.Snapshot().Reason, "the reason when none is given")
		b.Reset()
		b.Trip("")
		assert.Equal(t, "tripped", b.Snapshot().Reason, "the reason when none is given")
		b.Reset()

		b.ForceOpen("maintenance")
		err := b.Do(ctx, fn)
		var oe *jidoka.OpenError
		require.ErrorAs(t, err, &oe)
		assert.Equal(t, jidoka.StateForcedOpen, oe.State)
		assert.Equal(t, `jidoka: breaker "gw" is forced-open: maintenance`, err.Error())
		assert.Zero(t, oe.RetryAfter())
		assert.True(t, oe.Until().IsZero())
		advance(24 * time.Hour)
		assert.Equal(t, jidoka.StateForcedOpen, b.State(), "no timer ends a forced open")
		assert.Zero(t, ran)

		b.Disable()
		for range 5 {
			require.ErrorIs(t, b.Do(ctx, fn), errBoom)
		}
		assert.Equal(t, 5, ran)
		s := b.Snapshot()
		assert.Equal(t, jidoka.StateDisabled, s.State)
		assert.Zero(t, s.Calls, "disabled counts nothing")
		done, err := b.Allow(ctx)
		require.NoError(t, err)
		done(errBoom)

		b.MetricsOnly()
		for range 5 {
			require.ErrorIs(t, b.Do(ctx, fn), errBoom)
		}
		s = b.Snapshot()
		assert.Equal(t, jidoka.StateMetricsOnly, s.State)
		assert.Equal(t, 5, s.Calls)
		assert.Equal(t, 5, s.Failures)
		assert.Equal(t, 5, s.ConsecutiveFailures)

		b.Trip("by hand")
		s = b.Snapshot()
		assert.Equal(t, jidoka.StateOpen, s.State)
		assert.Equal(t, "by hand", s.Reason)
		b.Trip("again") // already open: the period stays
		assert.Equal(t, "by hand", b.Snapshot().Reason)
		b.Reset()
		assert.Equal(t, jidoka.StateClosed, b.State())
		require.ErrorIs(t, b.Do(ctx, fn), errBoom)
		assert.Equal(t, jidoka.StateOpen, b.State())
	})
}

// A call that comes when the open period ends is a probe, whether or not
// the timer that ends the period has run by then.
func TestBreakerLetsAProbeThroughWhenTheOpenPeriodEnds(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b, err := jidoka.NewBreaker(jidoka.BreakerOptions{OpenDuration: time.Second, HalfOpenSuccesses: 1})
		require.NoError(t, err)
		ctx := context.Background()
		// The sleep and the breaker's timer end at the same instant, and
		// either may run first: try many times.
		for range 50 {
			b.Trip("down")
			_, err := b.Allow(ctx)
			hint := jidoka.RetryAfter(err)
			require.Equal(t, time.Second, hint)
			time.Sleep(hint)
			done, err := b.Allow(ctx)
			require.NoError(t, err, "refused when the hint said to come back")
			done(nil)
			require.Equal(t, jidoka.StateClosed, b.State())
		}
	})
}

// So it is, too, when the open period is very short: one of a nanosecond
// has no last half of whole nanoseconds before its end.
func TestBreakerLetsAProbeThroughWhenAShortOpenPeriodEnds(t *testing.T) {
	for _, d := range []time.Duration{time.Nanosecond, 2 * time.Nanosecond, 3 * time.Nanosecond, 1500 * time.Millisecond} {
		t.Run(d.String(), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				b, err := jidoka.NewBreaker(jidoka.BreakerOptions{OpenDuration: d, HalfOpenSuccesses: 1})
				require.NoError(t, err)
				ctx := context.Background()
				for range 50 {
					b.Trip("down")
					_, err := b.Allow(ctx)
					hint := jidoka.RetryAfter(err)
					require.Equal(t, d, hint)
					time.Sleep(hint)
					done, err := b.Allow(ctx)
					require.NoError(t, err, "refused when the hint said to come back")
					done(nil)
					require.Equal(t, jidoka.StateClosed, b.State())
				}
			})
		})
	}
}

func TestBreakerOpenError(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBreaker(t, jidoka.BreakerOptions{Name: "gateway", ConsecutiveFailures: 2, OpenDuration: 30 * time.Second})
		calls(t, b, 2, errBoom)
		ran := false
		err := b.Do(context.Background(), func(context.Context) error { ran = true; return nil })
		assert.False(t, ran)
		require.ErrorIs(t, err, jidoka.ErrOpen)
		assert.Equal(t, `jidoka: breaker "gateway" is open: 2 consecutive failures`, err.Error())
		assert.Equal(t, 30*time.Second, tai.RetryAfter(err))
		advance(10 * time.Second)
		assert.Equal(t, 20*time.Second, tai.RetryAfter(fmt.Errorf("wrapped: %w", err)))
		var oe *jidoka.OpenError
		require.ErrorAs(t, err, &oe)
		assert.Equal(t, "gateway", oe.Breaker)
		assert.Equal(t, time.Now().Add(20*time.Second), oe.Until())
		assert.Same(t, oe, call(b, nil), "one error value per open period")
		advance(20 * time.Second)
		assert.Zero(t, oe.RetryAfter(), "the period is over")
	})
}

func TestBreakerContextDone(t *testing.T) {
	b := newBreaker(t, jidoka.BreakerOptions{ConsecutiveFailures: 1})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	ran := false
	err := b.Do(ctx, func(context.Context) error { ran = true; return nil })
	require.ErrorIs(t, err, context.Canceled)
	assert.False(t, ran)
	_, err = b.Allow(ctx)
	require.ErrorIs(t, err, context.Canceled)
	assert.Equal(t, jidoka.StateClosed, b.State())
}

func TestBreakerPanicCountsAsFailure(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBreaker(t, jidoka.BreakerOptions{ConsecutiveFailures: 1, OpenDuration: time.Second, HalfOpenSuccesses: 1})
		panicky := func(context.Context) error { panic("gateway exploded") }
		assert.PanicsWithValue(t, "gateway exploded", func() { _ = b.Do(context.Background(), panicky) })
		assert.Equal(t, jidoka.StateOpen, b.State())
		advance(time.Second)
		assert.Panics(t, func() { _ = b.Do(context.Background(), panicky) })
		s := b.Snapshot()
		assert.Equal(t, jidoka.StateOpen, s.State, "a panicking probe reopens")
		assert.Equal(t, 0, s.ProbesInFlight)
	})
}

func TestExecute(t *testing.T) {
	b := newBreaker(t, jidoka.BreakerOptions{ConsecutiveFailures: 1})
	ctx := context.Background()
	v, err := jidoka.Execute(ctx, b, func(context.Context) (string, error) { return "auth-42", nil })
	require.NoError(t, err)
	assert.Equal(t, "auth-42", v)
	v, err = jidoka.Execute(ctx, b, func(context.Context) (string, error) { return "partial", errBoom })
	require.ErrorIs(t, err, errBoom)
	assert.Equal(t, "partial", v)
	v, err = jidoka.Execute(ctx, b, func(context.Context) (string, error) { return "never", nil })
	require.ErrorIs(t, err, jidoka.ErrOpen)
	assert.Empty(t, v)
}

func TestBreakerAllocations(t *testing.T) {
	ctx := context.Background()
	ok := func(context.Context) error { return nil }
	for _, cfg := range []jidoka.BreakerOptions{
		{},
		{FailureRate: 0.5, WindowSize: 100},
		{FailureRate: 0.5, WindowDuration: 10 * time.Second},
		{SlowCallRate: 0.5, WindowSize: 100},
	} {
		b, err := jidoka.NewBreaker(cfg)
		require.NoError(t, err)
		assert.Zero(t, testing.AllocsPerRun(100, func() { _ = b.Do(ctx, ok) }), "Do %+v", cfg)
		assert.Zero(t, testing.AllocsPerRun(100, func() {
			_, _ = jidoka.Execute(ctx, b, func(context.Context) (int, error) { return 1, nil })
		}), "Execute %+v", cfg)
		if cfg.SlowCallRate == 0 {
			assert.Zero(t, testing.AllocsPerRun(100, func() {
				done, _ := b.Allow(ctx)
				done(nil)
			}), "Allow %+v", cfg)
		}
		b.Trip("test")
		assert.Zero(t, testing.AllocsPerRun(100, func() { _ = b.Do(ctx, ok) }), "rejection %+v", cfg)
		b.Reset()
	}
}

func TestBreakerIsTaiGuard(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBreaker(t, jidoka.BreakerOptions{Name: "gateway", ConsecutiveFailures: 1})
		var _ tai.Guard = b
		var _ tai.TwoStepGuard = b // the pipeline calls Allow and done, not Do
		var _ tai.Namer = b
		policy := tai.PolicyFunc[int](func(context.Context, tai.Signal[int]) (tai.Decision, error) {
			return tai.Decision{Verdict: tai.Allow}, nil
		})
		fail := true
		action := tai.ActionFunc[int, int](func(_ context.Context, s tai.Signal[int]) (int, error) {
			if fail {
				return 0, errBoom
			}
			return s.Payload, nil
		})
		p, err := tai.New(policy, action, tai.WithGuards(b))
		require.NoError(t, err)
		sig := tai.Signal[int]{ID: "1", Kind: "payment", Payload: 7}
		_, err = p.Process(context.Background(), sig)
		require.ErrorIs(t, err, errBoom)
		assert.Equal(t, tai.Failed, tai.OutcomeOf(err))

		fail = false
		_, err = p.Process(context.Background(), sig)
		require.ErrorIs(t, err, jidoka.ErrOpen)
		assert.Equal(t, tai.Rejected, tai.OutcomeOf(err))
		var re *tai.RejectedError
		require.ErrorAs(t, err, &re)
		assert.Equal(t, "gateway", re.Hook)
		assert.Equal(t, jidoka.DefaultOpenDuration, tai.RetryAfter(err))
	})
}

func TestStateString(t *testing.T) {
	names := map[jidoka.State]string{
		jidoka.StateClosed: "closed", jidoka.StateHalfOpen: "half-open", jidoka.StateOpen: "open",
		jidoka.StateForcedOpen: "forced-open", jidoka.StateDisabled: "disabled", jidoka.StateMetricsOnly: "metrics-only",
		jidoka.State(6): "state(6)", jidoka.State(42): "state(42)",
	}
	for s, want := range names {
		assert.Equal(t, want, s.String())
		text, err := s.MarshalText()
		if s >= 6 {
			require.EqualError(t, err, fmt.Sprintf("jidoka: invalid state %d", s))
			continue
		}
		require.NoError(t, err)
		assert.Equal(t, want, string(text))
	}
}

// A State decodes from the text it encodes to, so that a Snapshot or an
// Event sent as JSON (to a board, a log pipeline) reads back as it was.
func TestStateTextRoundTrip(t *testing.T) {
	for _, s := range []jidoka.State{jidoka.StateClosed, jidoka.StateHalfOpen, jidoka.StateOpen,
		jidoka.StateForcedOpen, jidoka.StateDisabled, jidoka.StateMetricsOnly} {
		in := jidoka.Event{Breaker: "gateway", From: jidoka.StateClosed, To: s, Reason: "why", Generation: 2}
		data, err := json.Marshal(in)
		require.NoError(t, err)
		var out jidoka.Event
		require.NoError(t, json.Unmarshal(data, &out), "%s", data)
		assert.Equal(t, in, out)
	}
	snap := jidoka.Snapshot{Name: "gateway", State: jidoka.StateHalfOpen, ProbesInFlight: 1}
	data, err := json.Marshal(snap)
	require.NoError(t, err)
	var back jidoka.Snapshot
	require.NoError(t, json.Unmarshal(data, &back), "%s", data)
	assert.Equal(t, snap, back)

	var s jidoka.State
	err = json.Unmarshal([]byte(`"ajar"`), &s)
	require.Error(t, err)
	assert.Contains(t, err.Error(), `jidoka: unknown state "ajar"`)
}

// TestBreakerEventsReentrant has the listener call the breaker from inside
// its events: State, Snapshot, Trip and Reset must not deadlock, and the
// events they cause arrive after the current one, in order.
func TestBreakerEventsReentrant(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var (
			b      *jidoka.Breaker
			got    []string
			states []jidoka.State
			snaps  []jidoka.State
			gens   []uint64
			times  []time.Time
		)
		start := time.Now()
		b, err := jidoka.NewBreaker(jidoka.BreakerOptions{
			Name: "gw", ConsecutiveFailures: 1, OpenDuration: time.Second, HalfOpenSuccesses: 1,
			OnStateChange: func(ev jidoka.Event) {
				assert.Equal(t, "gw", ev.Breaker)
				got = append(got, fmt.Sprintf("%s->%s (%s)", ev.From, ev.To, ev.Reason))
				gens = append(gens, ev.Generation)
				times = append(times, ev.Time)
				states = append(states, b.State())
				snaps = append(snaps, b.Snapshot().State)
				switch {
				case ev.To == jidoka.StateOpen && ev.Reason == "1 consecutive failures":
					b.Reset() // queued: delivered after this event
				case ev.To == jidoka.StateClosed && ev.Reason == "reset" && len(got) == 2:
					b.Trip("listener")
					b.Trip("listener again") // no change, no event
				}
			},
		})
		require.NoError(t, err)
		b.Reset() // closed to closed: a new generation, no event
		assert.Equal(t, uint64(2), b.Snapshot().Generation)
		advance(time.Minute)
		calls(t, b, 1, errBoom)
		advance(time.Second)
		require.NoError(t, call(b, nil))

		assert.Equal(t, []string{
			"closed->open (1 consecutive failures)",
			"open->closed (reset)",
			"closed->open (listener)",
			"open->half-open (open period of 1s ended)",
			"half-open->closed (1 probes succeeded)",
		}, got)
		// Each listener call saw the state its event led to: the change it
		// made itself was delivered only after it returned.
		assert.Equal(t, []jidoka.State{jidoka.StateOpen, jidoka.StateClosed, jidoka.StateOpen, jidoka.StateHalfOpen, jidoka.StateClosed}, states)
		assert.Equal(t, states, snaps)
		assert.Equal(t, []uint64{3, 4, 5, 6, 7}, gens)
		at := start.Add(time.Minute)
		assert.Equal(t, []time.Time{at, at, at, at.Add(time.Second), at.Add(time.Second)}, times)
	})
}

// TestBreakerEventsFromManyGoroutines changes the state from many
// goroutines while a slow listener runs: events must form one chain (each
// From is the previous To) with growing generations.
func TestBreakerEventsFromManyGoroutines(t *testing.T) {
	var (
		mu     sync.Mutex
		events []jidoka.Event
	)
	b, err := jidoka.NewBreaker(jidoka.BreakerOptions{OnStateChange: func(ev jidoka.Event) {
		mu.Lock()
		events = append(events, ev)
		mu.Unlock()
	}})
	require.NoError(t, err)
	var wg sync.WaitGroup
	for g := range 16 {
		wg.Go(func() {
			for i := range 200 {
				switch (g + i) % 4 {
				case 0:
					b.Trip("t")
				case 1:
					b.Reset()
				case 2:
					b.ForceOpen("f")
				case 3:
					b.MetricsOnly()
				}
			}
		})
	}
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	require.NotEmpty(t, events)
	assert.Equal(t, jidoka.StateClosed, events[0].From)
	for i := 1; i < len(events); i++ {
		require.Equal(t, events[i-1].To, events[i].From, "event %d", i)
		require.Greater(t, events[i].Generation, events[i-1].Generation, "event %d", i)
	}
	assert.Equal(t, b.State(), events[len(events)-1].To)
}

// TestBreakerListenerPanicIsRecovered has the listener panic: the panic
// reaches neither the call that caused the change nor the open timer's
// goroutine; it is logged with its stack, and the events after it are
// delivered.
func TestBreakerListenerPanicIsRecovered(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var got []jidoka.State
		logs := &logRecorder{}
		b, err := jidoka.NewBreaker(jidoka.BreakerOptions{
			Name: "gw", ConsecutiveFailures: 1, OpenDuration: time.Second, Logger: logs.logger(),
			OnStateChange: func(ev jidoka.Event) {
				got = append(got, ev.To)
				if ev.To != jidoka.StateClosed {
					panic("listener bug in " + ev.To.String())
				}
			},
		})
		require.NoError(t, err)
		require.ErrorIs(t, call(b, errBoom), errBoom, "the call's own result, not the listener's panic")
		advance(time.Second) // the timer's goroutine survives the panic too
		require.NoError(t, call(b, nil))
		require.NoError(t, call(b, nil))
		require.NoError(t, call(b, nil))
		b.ForceOpen("")
		b.Reset()
		assert.Equal(t, []jidoka.State{jidoka.StateOpen, jidoka.StateHalfOpen, jidoka.StateClosed, jidoka.StateForcedOpen, jidoka.StateClosed}, got)

		recs := logs.records()
		require.Len(t, recs, 3)
		for i, want := range []string{"open", "half-open", "forced-open"} {
			assert.Equal(t, slog.LevelError, recs[i].Level)
			assert.Equal(t, "gw", recs[i].attrs["breaker"])
			assert.Equal(t, "breaker OnStateChange", recs[i].attrs["where"])
			assert.Equal(t, "listener bug in "+want, recs[i].attrs["panic"])
			assert.Contains(t, recs[i].attrs["stack"], "TestBreakerListenerPanicIsRecovered", "the stack of the panic")
		}
	})
}

// An open period too long to add to the clock ends at the farthest time
// there is: the refusal still tells callers to stay away, not to come back
// at once.
func TestBreakerLongestOpenPeriod(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBreaker(t, jidoka.BreakerOptions{ConsecutiveFailures: 1, OpenDuration: math.MaxInt64})
		advance(time.Second)
		require.ErrorIs(t, call(b, errBoom), errBoom)
		err := call(b, nil)
		require.ErrorIs(t, err, jidoka.ErrOpen)
		assert.Greater(t, tai.RetryAfter(err), 200*365*24*time.Hour)
		assert.True(t, b.Snapshot().NextProbe.After(time.Now()), "NextProbe %v", b.Snapshot().NextProbe)
	})
}

// A panic counts as a failure whatever IsFailure and Ignore say of errors:
// they are asked about errors, and a panic returned none.
func TestBreakerPanicIsAFailureWhateverTheClassifiers(t *testing.T) {
	panicky := func(context.Context) error { panic("gateway exploded") }
	for name, opts := range map[string]jidoka.BreakerOptions{
		"IsFailure": {IsFailure: func(err error) bool { return errors.Is(err, errBoom) }},
		"Ignore":    {Ignore: func(err error) bool { return !errors.Is(err, errBoom) }},
	} {
		t.Run(name, func(t *testing.T) {
			opts.ConsecutiveFailures = 1
			b := newBreaker(t, opts)
			assert.Panics(t, func() { _ = b.Do(context.Background(), panicky) })
			assert.Equal(t, jidoka.StateOpen, b.State())
			b.Reset()
			done, err := b.Allow(context.Background())
			require.NoError(t, err)
			done(errBoom) // the classifiers work as before for errors
			assert.Equal(t, jidoka.StateOpen, b.State())
		})
	}
}

// An IsFailure or Ignore that panics passes its panic on, and the call is
// not counted. A half-open probe so judged gives its lease back: it kept
// it, and the breaker refused every call as half-open with every probe in
// flight until ProbeTimeout.
func TestBreakerClassifierPanicGivesTheProbeLeaseBack(t *testing.T) {
	bad := func(error) bool { panic("bad classifier") }
	for name, opts := range map[string]jidoka.BreakerOptions{
		"IsFailure": {IsFailure: bad},
		"Ignore":    {Ignore: bad},
	} {
		t.Run(name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				opts.ConsecutiveFailures = 1
				opts.OpenDuration = time.Second
				b := newBreaker(t, opts)
				assert.PanicsWithValue(t, "bad classifier", func() { _ = call(b, errBoom) })
				assert.Equal(t, jidoka.StateClosed, b.State(), "closed: the call is not counted")

				b.Trip("by hand")
				advance(time.Second)
				require.Equal(t, jidoka.StateHalfOpen, b.State())
				assert.PanicsWithValue(t, "bad classifier", func() { _ = call(b, errBoom) })
				s := b.Snapshot()
				assert.Equal(t, jidoka.StateHalfOpen, s.State)
				assert.Zero(t, s.ProbesInFlight, "the probe's lease is back")

				done, err := b.Allow(context.Background())
				require.NoError(t, err, "another probe is let through")
				assert.PanicsWithValue(t, "bad classifier", func() { done(errBoom) })
				assert.Zero(t, b.Snapshot().ProbesInFlight, "through Allow too")
				calls(t, b, 1, nil) // the classifiers are not asked about a success
				assert.Equal(t, 1, b.Snapshot().ProbeSuccesses)
			})
		})
	}
}

// In a tai pipeline the breaker hears of a panicking action through done,
// as a *tai.PanicError: a failure too, whatever IsFailure says of errors.
func TestBreakerPanicInAPipelineIsAFailure(t *testing.T) {
	b := newBreaker(t, jidoka.BreakerOptions{ConsecutiveFailures: 1, IsFailure: func(err error) bool { return errors.Is(err, errBoom) }})
	policy := tai.PolicyFunc[int](func(context.Context, tai.Signal[int]) (tai.Decision, error) {
		return tai.Decision{Verdict: tai.Allow}, nil
	})
	action := tai.ActionFunc[int, int](func(context.Context, tai.Signal[int]) (int, error) { panic("gateway exploded") })
	p, err := tai.New(policy, action, tai.WithGuards(b))
	require.NoError(t, err)
	_, err = p.Process(context.Background(), tai.Signal[int]{ID: "1", Kind: "payment"})
	var pe *tai.PanicError
	require.ErrorAs(t, err, &pe)
	assert.Equal(t, jidoka.StateOpen, b.State())
}

// A bulkhead or another breaker inside the breaker that refuses a call
// kept it from the dependency: the breaker counts nothing, and a probe it
// admitted gives its lease back instead of reopening it. So it goes in
// both the order the package recommends, Breaker(Bulkhead(action)), and
// with a guard that makes the pipeline wrap them all.
func TestBreakerIgnoresRefusalsOfGuardsInsideIt(t *testing.T) {
	timeout, err := jidoka.NewTimeout(jidoka.TimeoutOptions{Duration: time.Hour})
	require.NoError(t, err)
	for name, outer := range map[string][]tai.Guard{"two steps": nil, "wrapped": {timeout}} {
		t.Run(name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				b := newBreaker(t, jidoka.BreakerOptions{Name: "br", ConsecutiveFailures: 1, OpenDuration: time.Minute, HalfOpenSuccesses: 1})
				inner := newBreaker(t, jidoka.BreakerOptions{Name: "inner"})
				bh, err := jidoka.NewBulkhead(jidoka.BulkheadOptions{Name: "bh", MaxConcurrent: 1})
				require.NoError(t, err)
				action := tai.ActionFunc[int, string](func(context.Context, tai.Signal[int]) (string, error) { return "ok", nil })
				p, err := tai.New(allowAll, action, tai.WithGuards(append(outer, b, inner, bh)...))
				require.NoError(t, err)
				ctx := context.Background()
				sig := tai.Signal[int]{ID: "s", Kind: "k"}

				hold, err := bh.Allow(ctx) // the only slot
				require.NoError(t, err)
				for range 3 {
					res, err := p.Process(ctx, sig)
					require.ErrorIs(t, err, jidoka.ErrBulkheadFull)
					assert.Equal(t, tai.Rejected, res.Outcome)
				}
				assert.Equal(t, jidoka.StateClosed, b.State(), "a full bulkhead is no failure of the dependency")

				inner.ForceOpen("maintenance")
				_, err = p.Process(ctx, sig)
				require.ErrorIs(t, err, jidoka.ErrOpen)
				assert.Equal(t, jidoka.StateClosed, b.State(), "nor is another breaker's refusal")
				inner.Reset()

				b.Trip("test")
				advance(time.Minute)
				require.Equal(t, jidoka.StateHalfOpen, b.State())
				_, err = p.Process(ctx, sig)
				require.ErrorIs(t, err, jidoka.ErrBulkheadFull)
				s := b.Snapshot()
				assert.Equal(t, jidoka.StateHalfOpen, s.State, "a probe that never reached the dependency does not reopen the breaker")
				assert.Zero(t, s.ProbesInFlight, "and gives its lease back")

				hold(nil)
				res, err := p.Process(ctx, sig)
				require.NoError(t, err)
				assert.Equal(t, "ok", res.Value)
				assert.Equal(t, jidoka.StateClosed, b.State(), "the next probe reaches the dependency and closes it")
			})
		})
	}
}

// A panic reaches a breaker wrapped when a guard between them wraps the
// action's error: a Timeout whose deadline passed before the action
// panicked (a nil response dereferenced after the request timed out). It
// is a failure all the same, whatever IsFailure says of errors.
func TestBreakerWrappedPanicIsAFailure(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBreaker(t, jidoka.BreakerOptions{ConsecutiveFailures: 1, IsFailure: func(err error) bool { return errors.Is(err, errBoom) }})
		timeout, err := jidoka.NewTimeout(jidoka.TimeoutOptions{Duration: time.Second})
		require.NoError(t, err)
		action := tai.ActionFunc[int, int](func(ctx context.Context, _ tai.Signal[int]) (int, error) {
			<-ctx.Done()
			var resp *struct{ Status int }
			return resp.Status, nil
		})
		p, err := tai.New(allowAll, action, tai.WithGuards(b, timeout))
		require.NoError(t, err)
		_, err = p.Process(context.Background(), tai.Signal[int]{ID: "1", Kind: "payment"})
		var pe *tai.PanicError
		require.ErrorAs(t, err, &pe)
		require.ErrorIs(t, err, jidoka.ErrTimeout)
		assert.Equal(t, jidoka.StateOpen, b.State())

		counting := newBreaker(t, jidoka.BreakerOptions{ConsecutiveFailures: 1 << 30})
		wrapped := fmt.Errorf("charge: %w", errBoom)
		fail := func(context.Context) error { return wrapped }
		assert.Zero(t, testing.AllocsPerRun(100, func() { _ = counting.Do(context.Background(), fail) }),
			"telling a wrapped panic from an error costs a failure no allocation")
	})
}

// A caller that gives up does not count against the dependency: by default
// Do ignores whatever error a call returns once the caller canceled its
// context (an RPC client's own "canceled" error, say), in the closed state
// and as a half-open probe, which gives its lease back. A deadline that
// passed is the dependency's slowness and counts; a panic still counts;
// an Ignore of one's own is asked about every error, whatever the context.
func TestBreakerCallerCancellationIsNotCounted(t *testing.T) {
	errRPCCanceled := errors.New("rpc error: code = Canceled") // does not wrap context.Canceled
	canceledCall := func(b *jidoka.Breaker) error {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		return b.Do(ctx, func(context.Context) error { cancel(); return errRPCCanceled })
	}
	t.Run("closed", func(t *testing.T) {
		b := newBreaker(t, jidoka.BreakerOptions{ConsecutiveFailures: 1, FailureRate: 0.5, WindowSize: 4, MinimumCalls: 1})
		require.ErrorIs(t, canceledCall(b), errRPCCanceled)
		s := b.Snapshot()
		assert.Equal(t, jidoka.StateClosed, s.State)
		assert.Equal(t, 0, s.Calls, "the call is not counted at all")
	})
	t.Run("half-open", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			b := newBreaker(t, jidoka.BreakerOptions{ConsecutiveFailures: 1, OpenDuration: time.Second, HalfOpenSuccesses: 1})
			calls(t, b, 1, errBoom)
			advance(time.Second)
			require.ErrorIs(t, canceledCall(b), errRPCCanceled)
			s := b.Snapshot()
			assert.Equal(t, jidoka.StateHalfOpen, s.State)
			assert.Equal(t, 0, s.ProbesInFlight, "the probe gave its lease back")
			require.NoError(t, call(b, nil))
			assert.Equal(t, jidoka.StateClosed, b.State())
		})
	})
	t.Run("deadline counts", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			b := newBreaker(t, jidoka.BreakerOptions{ConsecutiveFailures: 1})
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			err := b.Do(ctx, func(ctx context.Context) error { <-ctx.Done(); return errRPCCanceled })
			require.ErrorIs(t, err, errRPCCanceled)
			assert.Equal(t, jidoka.StateOpen, b.State())
		})
	})
	t.Run("a Timeout's deadline outside counts", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			b := newBreaker(t, jidoka.BreakerOptions{ConsecutiveFailures: 1})
			to, err := jidoka.NewTimeout(jidoka.TimeoutOptions{Duration: time.Second})
			require.NoError(t, err)
			err = to.Do(context.Background(), func(ctx context.Context) error {
				return b.Do(ctx, func(ctx context.Context) error { <-ctx.Done(); return errRPCCanceled })
			})
			require.ErrorIs(t, err, jidoka.ErrTimeout)
			assert.Equal(t, jidoka.StateOpen, b.State())
		})
	})
	t.Run("panic counts", func(t *testing.T) {
		b := newBreaker(t, jidoka.BreakerOptions{ConsecutiveFailures: 1})
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		err := b.Do(ctx, func(context.Context) error { cancel(); return &tai.PanicError{Value: "boom"} })
		require.Error(t, err)
		assert.Equal(t, jidoka.StateOpen, b.State())
	})
	t.Run("own Ignore", func(t *testing.T) {
		b := newBreaker(t, jidoka.BreakerOptions{ConsecutiveFailures: 1, Ignore: func(error) bool { return false }})
		require.ErrorIs(t, canceledCall(b), errRPCCanceled)
		assert.Equal(t, jidoka.StateOpen, b.State())
	})
	t.Run("Allow judges the error alone", func(t *testing.T) {
		b := newBreaker(t, jidoka.BreakerOptions{ConsecutiveFailures: 1})
		ctx, cancel := context.WithCancel(context.Background())
		done, err := b.Allow(ctx)
		require.NoError(t, err)
		cancel()
		done(errRPCCanceled)
		assert.Equal(t, jidoka.StateOpen, b.State(), "done is not told the context")
	})
}

// Disable and MetricsOnly let every call through, as the closed state does,
// and end the run of trips as closing does: a trip after them opens for
// OpenDuration, not for the back-off the trips before them had reached.
// ForceOpen keeps the run: the dependency has not been seen to recover.
// The back-off compounds: open periods grow by BackoffFactor per trip even
// when one step adds less than a nanosecond, which truncating each step to
// whole nanoseconds lost, keeping every period at OpenDuration. Here
// 5 ns × 1.1^(k-1): 5 ns for the first trips, then 6 ns, 7 ns, ... 11 ns.
func TestBreakerBackoffCompoundsBelowANanosecondAStep(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBreaker(t, jidoka.BreakerOptions{ConsecutiveFailures: 1, HalfOpenSuccesses: 1,
			OpenDuration: 5, MaxOpenDuration: time.Second, BackoffFactor: 1.1})
		calls(t, b, 1, errBoom)
		var got []time.Duration
		for range 10 {
			d := time.Until(b.Snapshot().NextProbe)
			got = append(got, d)
			advance(d)
			calls(t, b, 1, errBoom) // the probe fails
		}
		want := make([]time.Duration, 10)
		for k := range want {
			want[k] = time.Duration(5 * math.Pow(1.1, float64(k)))
		}
		assert.Equal(t, want, got)
	})
}

func TestBreakerManualStatesAndBackoff(t *testing.T) {
	for _, tt := range []struct {
		name   string
		manual func(*jidoka.Breaker)
		trips  int
		open   time.Duration
	}{
		{"Disable", (*jidoka.Breaker).Disable, 1, 10 * time.Second},
		{"MetricsOnly", (*jidoka.Breaker).MetricsOnly, 1, 10 * time.Second},
		{"ForceOpen", func(b *jidoka.Breaker) { b.ForceOpen("") }, 4, 80 * time.Second},
	} {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				b := newBreaker(t, jidoka.BreakerOptions{ConsecutiveFailures: 1, HalfOpenSuccesses: 1,
					OpenDuration: 10 * time.Second, MaxOpenDuration: 100 * time.Second})
				calls(t, b, 1, errBoom)
				for _, d := range []time.Duration{10, 20} {
					advance(d * time.Second)
					calls(t, b, 1, errBoom) // the probe fails
				}
				require.Equal(t, 3, b.Snapshot().Trips)
				tt.manual(b)
				for range 2 {
					_ = call(b, nil) // refused when forced open
				}
				b.Trip("by hand")
				s := b.Snapshot()
				assert.Equal(t, tt.trips, s.Trips)
				assert.Equal(t, time.Now().Add(tt.open), s.NextProbe)
			})
		})
	}
}

// TestBreakerListenerEndingItsGoroutine: an OnStateChange that ends its
// goroutine with runtime.Goexit (t.FailNow in a test) ends the call that
// was delivering, not the delivery: the events queued behind its own, here
// a Reset it made, are delivered before that goroutine ends, not at the
// breaker's next change of state.
func TestBreakerListenerEndingItsGoroutine(t *testing.T) {
	events := make(chan jidoka.State, 4)
	var b *jidoka.Breaker
	b = newBreaker(t, jidoka.BreakerOptions{Name: "gw", OnStateChange: func(ev jidoka.Event) {
		events <- ev.To
		if ev.To == jidoka.StateOpen {
			b.Reset() // queued behind this event
			runtime.Goexit()
		}
	}})
	ended := make(chan struct{})
	go func() {
		defer close(ended)
		b.Trip("by hand")
		t.Error("Trip returned from a listener that ended its goroutine")
	}()
	<-ended
	require.Equal(t, jidoka.StateClosed, b.State())
	require.Len(t, events, 2, "the reset was not delivered")
	assert.Equal(t, jidoka.StateOpen, <-events)
	assert.Equal(t, jidoka.StateClosed, <-events)
}

// TestBreakerGoexitCountsAsAFailure: a call that ends its goroutine with
// runtime.Goexit (t.FailNow in a test) did not succeed, and counts as a
// failure, as a panic does, whether it ran through Do, Execute or a tai
// pipeline (which reports it as a *tai.PanicError). A half-open probe
// that does so gives its lease back: the breaker opens again, and is
// never left half-open with a lease nobody will return.
func TestBreakerGoexitCountsAsAFailure(t *testing.T) {
	goexit := func(context.Context) error { runtime.Goexit(); return nil }
	for name, run := range map[string]func(b *jidoka.Breaker){
		"Do": func(b *jidoka.Breaker) { _ = b.Do(context.Background(), goexit) },
		"Execute": func(b *jidoka.Breaker) {
			_, _ = jidoka.Execute(context.Background(), b, func(ctx context.Context) (int, error) { return 0, goexit(ctx) })
		},
		"pipeline": func(b *jidoka.Breaker) {
			action := tai.ActionFunc[int, int](func(ctx context.Context, _ tai.Signal[int]) (int, error) { return 0, goexit(ctx) })
			p, err := tai.New(allowAll, action, tai.WithGuards(b))
			if err == nil {
				_, _ = p.Process(context.Background(), tai.Signal[int]{ID: "s", Kind: "k"})
			}
		},
	} {
		t.Run(name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				b := newBreaker(t, jidoka.BreakerOptions{ConsecutiveFailures: 2, OpenDuration: time.Second, HalfOpenSuccesses: 1})
				// goexits runs a call that ends its goroutine on a goroutine
				// of its own, and waits for that goroutine to end.
				goexits := func() {
					ended := make(chan struct{})
					go func() {
						defer close(ended)
						run(b)
						t.Error("the call returned")
					}()
					<-ended
				}

				goexits()
				s := b.Snapshot()
				assert.Equal(t, jidoka.StateClosed, s.State)
				assert.Equal(t, 1, s.ConsecutiveFailures, "counted as a failure")
				goexits()
				require.Equal(t, jidoka.StateOpen, b.State(), "the second failure in a row trips it")

				advance(time.Second)
				require.Equal(t, jidoka.StateHalfOpen, b.State())
				goexits()
				s = b.Snapshot()
				assert.Equal(t, jidoka.StateOpen, s.State, "a probe that failed opens it again")
				assert.Zero(t, s.ProbesInFlight, "the probe's lease is back")

				advance(time.Second)
				calls(t, b, 1, nil)
				assert.Equal(t, jidoka.StateClosed, b.State(), "the next probe is let through, and closes it")
			})
		})
	}
}

// Once the open period has ended, State and Snapshot report what the next
// call sees: a half-open breaker, whether or not the timer that ends the
// period has run by then, counted in the generation, with one event of the
// change.
func TestBreakerStateWhenTheOpenPeriodEnds(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var events eventLog
		b := newBreaker(t, jidoka.BreakerOptions{OpenDuration: time.Second, OnStateChange: events.add})
		// The sleep and the breaker's timer end at the same instant, and
		// either may run first: try many times.
		for i := range 50 {
			b.Trip("down")
			opened := b.Snapshot()
			require.Equal(t, jidoka.StateOpen, opened.State)
			events.reset()
			time.Sleep(time.Second)
			if i%2 == 0 {
				require.Equal(t, jidoka.StateHalfOpen, b.State(), "round %d", i)
			} else {
				s := b.Snapshot()
				require.Equal(t, jidoka.StateHalfOpen, s.State, "round %d", i)
				require.Equal(t, opened.Generation+1, s.Generation)
				require.Equal(t, time.Now(), s.Since)
				require.Zero(t, s.NextProbe)
			}
			synctest.Wait() // the timer's goroutine may be delivering the event
			events.requireHalfOpened(t, opened.Generation+1, i)
			b.Reset()
		}
	})
}

// eventLog keeps the events a breaker delivers, for a test to check.
type eventLog struct {
	mu     sync.Mutex
	events []jidoka.Event
}

func (l *eventLog) add(ev jidoka.Event) {
	l.mu.Lock()
	l.events = append(l.events, ev)
	l.mu.Unlock()
}

func (l *eventLog) reset() {
	l.mu.Lock()
	l.events = nil
	l.mu.Unlock()
}

// requireHalfOpened requires the log to hold one event, of the change
// from open to half-open with generation gen, in round i of a test.
func (l *eventLog) requireHalfOpened(t *testing.T, gen uint64, i int) {
	t.Helper()
	l.mu.Lock()
	got := slices.Clone(l.events)
	l.mu.Unlock()
	require.Len(t, got, 1, "round %d", i)
	require.Equal(t, jidoka.StateOpen, got[0].From)
	require.Equal(t, jidoka.StateHalfOpen, got[0].To)
	require.Equal(t, gen, got[0].Generation)
}

// Trip when the open period has ended opens the breaker for a new period,
// as it does a half-open breaker, whether or not the timer that ends the
// period has run by then: the trip is not lost to the half-open state the
// timer would turn the breaker to next.
func TestBreakerTripWhenTheOpenPeriodEnds(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBreaker(t, jidoka.BreakerOptions{OpenDuration: time.Second, MaxOpenDuration: time.Minute, BackoffFactor: 2})
		ctx := context.Background()
		for i := range 50 {
			b.Trip("down")
			time.Sleep(time.Second)
			b.Trip("still down")
			synctest.Wait() // the old period's timer has run, if it was to
			_, err := b.Allow(ctx)
			require.ErrorIs(t, err, jidoka.ErrOpen, "round %d", i)
			assert.Equal(t, 2*time.Second, jidoka.RetryAfter(err), "round %d: the back-off of a second trip", i)
			s := b.Snapshot()
			assert.Equal(t, jidoka.StateOpen, s.State)
			assert.Equal(t, "still down", s.Reason)
			b.Reset()
		}
	})
}

// State and Snapshot never run OnStateChange on the goroutine that reads
// the breaker, though they turn a breaker whose open period has ended
// half-open: a reader that holds a lock of its own while it reads (a
// metrics scrape, a board poll) and a listener that takes that lock do not
// deadlock. The breaker's timer, whose time has come, delivers the event,
// once.
func TestBreakerReaderDoesNotRunTheListener(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		lock := make(chan struct{}, 1) // the reader's lock, held while it reads
		var events eventLog
		b := newBreaker(t, jidoka.BreakerOptions{OpenDuration: time.Second, OnStateChange: func(ev jidoka.Event) {
			lock <- struct{}{}
			<-lock
			events.add(ev)
		}})
		// The sleep and the breaker's timer end at the same instant, and
		// either may run first: try many times.
		for i := range 40 {
			b.Trip("down")
			opened := b.Snapshot()
			events.reset()
			time.Sleep(time.Second)
			var st jidoka.State
			read := make(chan struct{})
			go func() {
				defer close(read)
				lock <- struct{}{}
				if i%2 == 0 {
					st = b.State()
				} else {
					st = b.Snapshot().State
				}
				select { // the reader lets its lock go, unless it was taken from it
				case <-lock:
				default:
				}
			}()
			synctest.Wait()
			select {
			case <-read:
			default:
				t.Errorf("round %d: the reader ran OnStateChange while it held its own lock", i)
				<-lock // take the lock from the reader, which lets the listener go on
				<-read
			}
			synctest.Wait() // the timer's goroutine delivers the event
			require.Equal(t, jidoka.StateHalfOpen, st, "round %d", i)
			events.requireHalfOpened(t, opened.Generation+1, i)
			b.Reset()
		}
	})
}

// A listener may read the breaker, and trip and reset it, from inside:
// none of those calls deadlocks, including a State or Snapshot that turns
// the breaker half-open from within the listener, and the events they
// cause are delivered after the listener's own, in order.
func TestBreakerListenerReadsTheBreaker(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var b *jidoka.Breaker
		var got []string
		b = newBreaker(t, jidoka.BreakerOptions{ConsecutiveFailures: 1, OpenDuration: time.Second, OnStateChange: func(ev jidoka.Event) {
			got = append(got, fmt.Sprintf("%s->%s", ev.From, ev.To))
			if ev.To == jidoka.StateOpen && len(got) == 1 {
				time.Sleep(time.Second) // the open period ends while the listener runs
				assert.Equal(t, jidoka.StateHalfOpen, b.State())
				assert.Equal(t, jidoka.StateHalfOpen, b.Snapshot().State)
				b.Trip("again")
				assert.Equal(t, jidoka.StateOpen, b.Snapshot().State)
			}
		}})
		require.ErrorIs(t, call(b, errBoom), errBoom)
		synctest.Wait()
		assert.Equal(t, []string{"closed->open", "open->half-open", "half-open->open"}, got)
		assert.Equal(t, jidoka.StateOpen, b.State())
	})
}

// A listener that panics leaves no lock of the breaker held: the panic is
// logged, and the breaker goes on being read, changed and called, on the
// goroutine that delivered and on others.
func TestBreakerListenerPanicLeavesNoLockHeld(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		logs := &logRecorder{}
		var b *jidoka.Breaker
		b = newBreaker(t, jidoka.BreakerOptions{ConsecutiveFailures: 1, OpenDuration: time.Second, HalfOpenSuccesses: 1, Logger: logs.logger(),
			OnStateChange: func(ev jidoka.Event) {
				_ = b.Snapshot()
				panic("listener bug")
			}})
		require.ErrorIs(t, call(b, errBoom), errBoom)
		assert.Equal(t, jidoka.StateOpen, b.Snapshot().State)
		time.Sleep(time.Second)
		assert.Equal(t, jidoka.StateHalfOpen, b.State())
		synctest.Wait() // the timer's goroutine delivers, and survives the panic
		done := make(chan struct{})
		go func() {
			defer close(done)
			assert.NoError(t, call(b, nil))
			b.Trip("by hand")
			b.Reset()
		}()
		<-done
		assert.Equal(t, jidoka.StateClosed, b.Snapshot().State)
		assert.Len(t, logs.records(), 5, "open, half-open, closed, open, closed")
	})
}
