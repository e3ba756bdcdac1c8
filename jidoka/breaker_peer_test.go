package jidoka_test

// What a Breaker does in the cases other circuit breakers are known by:
// sony/gobreaker (MaxRequests, Interval, IsSuccessful, IsExcluded, the
// generation, the two-step breaker) and resilience4j (sliding windows,
// minimumNumberOfCalls, permittedNumberOfCallsInHalfOpenState,
// slowCallRateThreshold, ignored and recorded exceptions). Where the
// Breaker does otherwise, the test says how and why.

import (
	"context"
	"errors"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/jidoka"
	"github.com/taipattern/taikit/tai"
)

var errBreakerExcluded = errors.New("excluded")

func isBreakerExcluded(err error) bool { return errors.Is(err, errBreakerExcluded) }

// halfOpenBreaker returns a breaker made with opts (one failure trips it, the
// open period is a second) that is half-open.
func halfOpenBreaker(t *testing.T, opts jidoka.BreakerOptions) *jidoka.Breaker {
	t.Helper()
	opts.ConsecutiveFailures = 1
	opts.OpenDuration = time.Second
	b := newBreaker(t, opts)
	calls(t, b, 1, errBoom)
	advance(time.Second)
	require.Equal(t, jidoka.StateHalfOpen, b.State())
	return b
}

// Half-open, HalfOpenProbes calls run at once and the others are refused
// as half-open with every probe in flight, through Do and Allow alike.
// The limit is on probes in flight, not on probes in all: a probe that
// reported gives its lease to the next (gobreaker's MaxRequests and
// resilience4j's permittedNumberOfCallsInHalfOpenState count every call
// of the half-open state, and refuse the rest until it ends).
func TestBreakerPeerHalfOpenRefusesBeyondItsProbes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := halfOpenBreaker(t, jidoka.BreakerOptions{HalfOpenProbes: 2, HalfOpenSuccesses: 3})
		ctx := context.Background()
		done1, err := b.Allow(ctx)
		require.NoError(t, err)
		done2, err := b.Allow(ctx)
		require.NoError(t, err)

		ran := false
		err = b.Do(ctx, func(context.Context) error { ran = true; return nil })
		var oe *jidoka.OpenError
		require.ErrorAs(t, err, &oe)
		assert.Equal(t, jidoka.StateHalfOpen, oe.State)
		assert.False(t, ran)
		_, err = b.Allow(ctx)
		require.ErrorIs(t, err, jidoka.ErrOpen)

		done1(nil)
		done3, err := b.Allow(ctx)
		require.NoError(t, err, "a probe that reported gives its lease to the next")
		_, err = b.Allow(ctx)
		require.ErrorIs(t, err, jidoka.ErrOpen)
		done2(nil)
		done3(nil)
		assert.Equal(t, jidoka.StateClosed, b.State(), "three probe successes close it")
	})
}

// A probe whose error is ignored gives its lease back and counts for
// nothing, so probes in flight that end that way do not keep the breaker
// refusing calls (gobreaker's two-step test of excluded requests).
func TestBreakerPeerIgnoredProbesGiveTheirLeasesBack(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := halfOpenBreaker(t, jidoka.BreakerOptions{HalfOpenProbes: 2, HalfOpenSuccesses: 2, Ignore: isBreakerExcluded})
		ctx := context.Background()
		ex1, err := b.Allow(ctx)
		require.NoError(t, err)
		ex2, err := b.Allow(ctx)
		require.NoError(t, err)
		require.ErrorIs(t, call(b, nil), jidoka.ErrOpen)
		require.ErrorIs(t, call(b, errBoom), jidoka.ErrOpen)
		ex1(errBreakerExcluded)
		ex2(errBreakerExcluded)
		s := b.Snapshot()
		assert.Equal(t, jidoka.StateHalfOpen, s.State)
		assert.Zero(t, s.ProbesInFlight)
		assert.Zero(t, s.ProbeSuccesses)

		require.NoError(t, call(b, nil))
		assert.Equal(t, 1, b.Snapshot().ProbeSuccesses)
		require.ErrorIs(t, call(b, errBoom), errBoom)
		assert.Equal(t, jidoka.StateOpen, b.State(), "a probe failure reopens it")
	})
}

// One probe failure reopens the breaker at once, whatever successes came
// before it and whatever probes are still in flight; their results are
// then of an earlier generation and ignored. The next half-open state
// counts its probe successes from zero. (resilience4j waits for every
// permitted call and compares their failure rate with its threshold;
// the Breaker does as gobreaker does: a dependency that fails a probe has
// not recovered.)
func TestBreakerPeerProbeFailureReopensAtOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := halfOpenBreaker(t, jidoka.BreakerOptions{HalfOpenProbes: 3, HalfOpenSuccesses: 3})
		ctx := context.Background()
		require.NoError(t, call(b, nil))
		require.NoError(t, call(b, nil))
		inFlight, err := b.Allow(ctx)
		require.NoError(t, err)
		require.ErrorIs(t, call(b, errBoom), errBoom)
		s := b.Snapshot()
		assert.Equal(t, jidoka.StateOpen, s.State)
		assert.Equal(t, "probe failed", s.Reason)

		inFlight(nil) // of the half-open state that ended
		advance(time.Second)
		s = b.Snapshot()
		require.Equal(t, jidoka.StateHalfOpen, s.State)
		assert.Zero(t, s.ProbeSuccesses, "probe successes count from zero in each half-open state")
		assert.Zero(t, s.ProbesInFlight)
		calls(t, b, 2, nil)
		assert.Equal(t, jidoka.StateHalfOpen, b.State())
		calls(t, b, 1, nil)
		assert.Equal(t, jidoka.StateClosed, b.State())
	})
}

// Every change of state clears the counts: a breaker that closes again
// starts with an empty window and no run of failures.
func TestBreakerPeerCountsResetOnStateChange(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBreaker(t, jidoka.BreakerOptions{ConsecutiveFailures: 3, FailureRate: 0.9, WindowSize: 10,
			OpenDuration: time.Second, HalfOpenSuccesses: 1})
		calls(t, b, 3, nil)
		calls(t, b, 3, errBoom)
		s := b.Snapshot()
		require.Equal(t, jidoka.StateOpen, s.State)
		assert.Zero(t, s.Calls, "the open state counts no calls")
		assert.Zero(t, s.ConsecutiveFailures)
		advance(time.Second)
		calls(t, b, 1, nil)
		s = b.Snapshot()
		require.Equal(t, jidoka.StateClosed, s.State)
		assert.Zero(t, s.Calls, "the probe is not a call of the closed state's window")
		assert.Zero(t, s.Failures)
		assert.Zero(t, s.ConsecutiveFailures)
		calls(t, b, 2, errBoom)
		assert.Equal(t, jidoka.StateClosed, b.State(), "two failures of three: the run before the trip is forgotten")
	})
}

// A time window of one bucket is gobreaker's Interval: every
// WindowDuration it forgets all it holds. The buckets are laid out from
// when the breaker was made, not from when the state began: a breaker
// that closes late in a bucket forgets the calls of that bucket when it
// ends, as every bucket expires on one schedule. The run of consecutive
// failures is not a window's and never expires (gobreaker's Interval
// clears it too): ConsecutiveFailures counts failures in a row however
// far apart they come.
func TestBreakerPeerCountsResetAtIntervalBoundaries(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBreaker(t, jidoka.BreakerOptions{ConsecutiveFailures: 3, FailureRate: 0.6, MinimumCalls: 3,
			WindowDuration: 10 * time.Second, WindowBuckets: 1})
		calls(t, b, 1, nil)
		calls(t, b, 1, errBoom)
		advance(10*time.Second - 1)
		assert.Equal(t, 2, b.Snapshot().Calls)
		advance(1)
		s := b.Snapshot()
		assert.Zero(t, s.Calls, "the interval ended")
		assert.Equal(t, 1, s.ConsecutiveFailures, "a run of failures outlives the interval")

		calls(t, b, 1, errBoom)
		calls(t, b, 1, nil)
		assert.Equal(t, jidoka.StateClosed, b.State(), "1 failure of 2 calls: under the minimum")
		calls(t, b, 1, errBoom)
		s = b.Snapshot()
		assert.Equal(t, jidoka.StateOpen, s.State)
		assert.Equal(t, "failure rate 0.667 over 3 calls reached 0.6", s.Reason)

		b.Reset()
		advance(9 * time.Second) // 19 s: one second left in this bucket
		calls(t, b, 2, errBoom)
		advance(time.Second)
		assert.Zero(t, b.Snapshot().Calls, "the bucket ends on the breaker's schedule, not a second period's")
		calls(t, b, 1, errBoom)
		s = b.Snapshot()
		assert.Equal(t, jidoka.StateOpen, s.State)
		assert.Equal(t, "3 consecutive failures", s.Reason)
	})
}

// A time window counts a call in the bucket of the time it ended (as
// resilience4j records a call's outcome when it completes). A call that
// began before an interval ended and ends after counts in the new
// interval; gobreaker drops it with the generation its Interval ended.
func TestBreakerPeerCallAcrossAnIntervalCountsWhenItEnds(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBreaker(t, jidoka.BreakerOptions{FailureRate: 0.5, MinimumCalls: 2,
			WindowDuration: 10 * time.Second, WindowBuckets: 1})
		advance(9 * time.Second)
		long, err := b.Allow(context.Background())
		require.NoError(t, err)
		calls(t, b, 1, nil)
		advance(2 * time.Second)
		assert.Zero(t, b.Snapshot().Calls)
		long(errBoom)
		s := b.Snapshot()
		assert.Equal(t, jidoka.StateClosed, s.State, "one call: under the minimum")
		assert.Equal(t, 1, s.Calls)
		assert.Equal(t, 1, s.Failures)
	})
}

// IsFailure that returns false makes an error a success, in every way a
// nil error is one: it ends a run of failures, counts in the window, and
// a probe that returns it counts toward closing (gobreaker's IsSuccessful,
// resilience4j's exceptions outside recordExceptions). Ignore makes it
// nothing: it neither ends a run of failures nor counts in the window nor
// toward MinimumCalls (gobreaker's IsExcluded, resilience4j's
// ignoreExceptions). Ignore is asked first.
func TestBreakerPeerClassifiers(t *testing.T) {
	opts := jidoka.BreakerOptions{
		ConsecutiveFailures: 3, FailureRate: 0.9, WindowSize: 10, MinimumCalls: 4,
		IsFailure: func(err error) bool { return !errors.Is(err, errNotFound) && !errors.Is(err, errBreakerExcluded) },
		Ignore:    isBreakerExcluded,
	}
	notFound := step{err: errNotFound}
	excluded := step{err: errBreakerExcluded}
	fail := step{err: errBoom}
	for _, tt := range []struct {
		name  string
		calls []step
		want  jidoka.Snapshot // State and Reason, or Calls, Failures and ConsecutiveFailures
	}{
		{"a success by IsFailure ends a run", []step{fail, fail, notFound, fail, fail},
			jidoka.Snapshot{State: jidoka.StateClosed, Calls: 5, Failures: 4, ConsecutiveFailures: 2}},
		{"an ignored error does not end a run", []step{fail, fail, excluded, fail},
			jidoka.Snapshot{State: jidoka.StateOpen, Reason: "3 consecutive failures"}},
		{"an ignored error is not a call", []step{fail, excluded, excluded, notFound, fail},
			jidoka.Snapshot{State: jidoka.StateClosed, Calls: 3, Failures: 2, ConsecutiveFailures: 1}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			b := newBreaker(t, opts)
			for i, s := range tt.calls {
				require.ErrorIs(t, call(b, s.err), s.err, "call %d", i)
			}
			s := b.Snapshot()
			assert.Equal(t, tt.want.State, s.State)
			if tt.want.State == jidoka.StateOpen {
				assert.Equal(t, tt.want.Reason, s.Reason)
				return
			}
			assert.Equal(t, tt.want.Calls, s.Calls)
			assert.Equal(t, tt.want.Failures, s.Failures)
			assert.Equal(t, tt.want.ConsecutiveFailures, s.ConsecutiveFailures)
		})
	}
	t.Run("probes", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			o := opts
			o.HalfOpenSuccesses = 2
			b := halfOpenBreaker(t, o)
			require.ErrorIs(t, call(b, errNotFound), errNotFound)
			require.ErrorIs(t, call(b, errBreakerExcluded), errBreakerExcluded)
			s := b.Snapshot()
			assert.Equal(t, 1, s.ProbeSuccesses, "a success by IsFailure counts, an ignored error does not")
			require.ErrorIs(t, call(b, errNotFound), errNotFound)
			assert.Equal(t, jidoka.StateClosed, b.State())
		})
	})
}

// A panic in the protected call is a failure, and goes on to the caller
// as it was raised, through Do and Execute (gobreaker's
// TestPanicInRequest). The panic's value is not an error the classifiers
// judge: even one Ignore would ignore counts.
func TestBreakerPeerPanicIsAFailureAndGoesOn(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBreaker(t, jidoka.BreakerOptions{ConsecutiveFailures: 3, FailureRate: 0.9, WindowSize: 10, MinimumCalls: 10})
		ctx := context.Background()
		assert.PanicsWithValue(t, "oops", func() {
			_ = b.Do(ctx, func(context.Context) error { panic("oops") })
		})
		assert.PanicsWithError(t, context.Canceled.Error(), func() {
			_, _ = jidoka.Execute(ctx, b, func(context.Context) (int, error) { panic(context.Canceled) })
		})
		s := b.Snapshot()
		assert.Equal(t, jidoka.StateClosed, s.State)
		assert.Equal(t, 2, s.Calls)
		assert.Equal(t, 2, s.Failures)
		assert.Equal(t, 2, s.ConsecutiveFailures)

		done, err := b.Allow(ctx) // a two-step caller reports a panic as a tai pipeline does
		require.NoError(t, err)
		done(&tai.PanicError{Value: "oops"})
		s = b.Snapshot()
		assert.Equal(t, jidoka.StateOpen, s.State)
		assert.Equal(t, "3 consecutive failures", s.Reason)
	})
}

// A result belongs to the generation its call was admitted in. A call
// admitted while closed that ends after the breaker opened and turned
// half-open neither reopens it, nor counts as a probe success, nor takes
// or gives back a probe lease; one that ends after the breaker closed
// again does not count in the new closed state, nor does a probe that
// ends after the others closed it (gobreaker's TestGeneration;
// resilience4j counts such a call in the state it ends in).
func TestBreakerPeerResultOfAnOldStateDoesNotCount(t *testing.T) {
	for _, result := range []error{nil, errBoom} {
		t.Run(resultName(result), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				b := newBreaker(t, jidoka.BreakerOptions{ConsecutiveFailures: 1, FailureRate: 0.5, WindowSize: 10, MinimumCalls: 1,
					OpenDuration: time.Second, HalfOpenProbes: 2, HalfOpenSuccesses: 2})
				ctx := context.Background()
				// startLate starts a call that returns result once finish is
				// called, and finish returns the call's error.
				startLate := func() (finish func() error) {
					started, release, finished := make(chan struct{}), make(chan struct{}), make(chan error, 1)
					go func() {
						finished <- b.Do(ctx, func(context.Context) error { close(started); <-release; return result })
					}()
					<-started
					return func() error { close(release); return <-finished }
				}
				lateToHalfOpen := startLate()
				lateToClosed := startLate()
				calls(t, b, 1, errBoom)
				advance(time.Second)
				probe, err := b.Allow(ctx)
				require.NoError(t, err)
				require.ErrorIs(t, lateToHalfOpen(), result)
				s := b.Snapshot()
				assert.Equal(t, jidoka.StateHalfOpen, s.State)
				assert.Zero(t, s.ProbeSuccesses)
				assert.Equal(t, 1, s.ProbesInFlight, "the late call took no lease and gave none back")

				probe(nil)
				lateProbe := startLate()
				require.NoError(t, call(b, nil))
				require.Equal(t, jidoka.StateClosed, b.State(), "two probe successes close it")
				require.ErrorIs(t, lateToClosed(), result)
				require.ErrorIs(t, lateProbe(), result)
				s = b.Snapshot()
				assert.Equal(t, jidoka.StateClosed, s.State)
				assert.Zero(t, s.Calls, "neither counts in the closed state after them")
				assert.Zero(t, s.ConsecutiveFailures)
			})
		})
	}
}

func resultName(err error) string {
	if err == nil {
		return "success"
	}
	return err.Error()
}

// done of Allow is to be called exactly once. Called twice while closed,
// it counts twice, as gobreaker's and resilience4j's two-step forms do:
// the closed state's done is made once per generation so that Allow does
// not allocate, and cannot tell one call from another. A probe's second
// report is ignored: its lease was given back by the first. A done never
// called counts nothing while closed, and holds its probe lease until
// ProbeTimeout (in gobreaker it uses up one of MaxRequests for as long as
// the half-open state lasts).
func TestBreakerPeerDoneTwiceOrNever(t *testing.T) {
	ctx := context.Background()
	t.Run("twice while closed", func(t *testing.T) {
		b := newBreaker(t, jidoka.BreakerOptions{ConsecutiveFailures: 2, FailureRate: 0.9, WindowSize: 10, MinimumCalls: 10})
		done, err := b.Allow(ctx)
		require.NoError(t, err)
		done(nil)
		done(nil)
		assert.Equal(t, 2, b.Snapshot().Calls)
		done, err = b.Allow(ctx)
		require.NoError(t, err)
		done(errBoom)
		done(errBoom)
		assert.Equal(t, jidoka.StateOpen, b.State())
	})
	t.Run("twice as a probe", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			b := halfOpenBreaker(t, jidoka.BreakerOptions{HalfOpenSuccesses: 2})
			done, err := b.Allow(ctx)
			require.NoError(t, err)
			done(nil)
			done(nil)
			done(errBoom)
			s := b.Snapshot()
			assert.Equal(t, jidoka.StateHalfOpen, s.State)
			assert.Equal(t, 1, s.ProbeSuccesses)
		})
	})
	t.Run("never while closed", func(t *testing.T) {
		b := newBreaker(t, jidoka.BreakerOptions{ConsecutiveFailures: 1, FailureRate: 0.9, WindowSize: 10})
		for range 100 {
			_, err := b.Allow(ctx)
			require.NoError(t, err)
		}
		s := b.Snapshot()
		assert.Equal(t, jidoka.StateClosed, s.State)
		assert.Zero(t, s.Calls)
	})
	t.Run("never as a probe", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			b := halfOpenBreaker(t, jidoka.BreakerOptions{HalfOpenSuccesses: 1, ProbeTimeout: time.Minute})
			_, err := b.Allow(ctx)
			require.NoError(t, err)
			advance(time.Minute - 1)
			require.ErrorIs(t, call(b, nil), jidoka.ErrOpen)
			advance(1)
			require.NoError(t, call(b, nil))
			assert.Equal(t, jidoka.StateClosed, b.State())
		})
	})
}

// Many goroutines calling at once, through Do and Allow, lose no result
// and count no ignored one (gobreaker's TestCircuitBreakerInParallel).
func TestBreakerPeerInParallel(t *testing.T) {
	const (
		goroutines = 10
		perG       = 1000
	)
	for _, opts := range []jidoka.BreakerOptions{
		{FailureRate: 0.9, WindowSize: goroutines * perG},
		{FailureRate: 0.9, WindowDuration: time.Hour},
		{FailureRate: 0.9, SlowCallRate: 0.9, WindowSize: goroutines * perG},
	} {
		opts.Ignore = isBreakerExcluded
		b := newBreaker(t, opts)
		ctx := context.Background()
		var wg sync.WaitGroup
		for g := range goroutines {
			wg.Go(func() {
				for i := range perG {
					var err error
					switch i % 4 {
					case 0:
						err = errBreakerExcluded
					case 1:
						err = errBoom
					}
					if (g+i)%2 == 0 {
						_ = call(b, err)
						continue
					}
					done, aerr := b.Allow(ctx)
					if !assert.NoError(t, aerr) {
						return
					}
					done(err)
				}
			})
		}
		wg.Wait()
		s := b.Snapshot()
		assert.Equal(t, jidoka.StateClosed, s.State)
		assert.Equal(t, goroutines*perG*3/4, s.Calls, "%+v", opts)
		assert.Equal(t, goroutines*perG/4, s.Failures, "%+v", opts)
	}
}

// The rates are judged only once the window holds MinimumCalls calls:
// nine failures of nine stay closed under a minimum of ten, and the tenth
// call trips whatever its result, as resilience4j's minimumNumberOfCalls
// does. Ignored calls do not make up the minimum. In a time window the
// minimum is of the calls still in it.
func TestBreakerPeerMinimumCalls(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		for _, last := range []error{nil, errBoom} {
			b := newBreaker(t, jidoka.BreakerOptions{FailureRate: 0.5, WindowSize: 100, MinimumCalls: 10, Ignore: isBreakerExcluded})
			calls(t, b, 9, errBoom)
			calls(t, b, 5, errBreakerExcluded)
			require.Equal(t, jidoka.StateClosed, b.State())
			_ = call(b, last)
			s := b.Snapshot()
			assert.Equal(t, jidoka.StateOpen, s.State)
		}

		b := newBreaker(t, jidoka.BreakerOptions{FailureRate: 0.5, WindowDuration: 10 * time.Second, WindowBuckets: 10, MinimumCalls: 10})
		calls(t, b, 9, errBoom)
		advance(10 * time.Second)
		calls(t, b, 1, errBoom)
		assert.Equal(t, jidoka.StateClosed, b.State(), "the nine failures left the window")
		calls(t, b, 8, errBoom)
		assert.Equal(t, jidoka.StateClosed, b.State())
		calls(t, b, 1, errBoom)
		assert.Equal(t, jidoka.StateOpen, b.State())
	})
}

// A call is slow when it takes longer than SlowCallDuration, whether it
// succeeded or failed, and the slow-call rate trips the breaker once it
// reaches SlowCallRate over MinimumCalls calls (resilience4j's
// slowCallDurationThreshold and slowCallRateThreshold). An ignored call
// is not counted, slow or not. A slow probe reopens the breaker even if
// it succeeded: resilience4j would judge the rate of the permitted calls,
// the Breaker takes one slow probe to mean the dependency has not
// recovered (see HalfOpenSuccesses).
func TestBreakerPeerSlowCalls(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBreaker(t, jidoka.BreakerOptions{SlowCallRate: 0.5, SlowCallDuration: time.Second, FailureRate: 0.9,
			WindowSize: 10, MinimumCalls: 4, Ignore: isBreakerExcluded, OpenDuration: time.Minute, HalfOpenSuccesses: 1})
		require.ErrorIs(t, slowCall(b, 2*time.Second, errBreakerExcluded), errBreakerExcluded)
		require.ErrorIs(t, slowCall(b, 2*time.Second, errBoom), errBoom)
		require.NoError(t, slowCall(b, time.Second, nil))
		s := b.Snapshot()
		assert.Equal(t, 2, s.Calls)
		assert.Equal(t, 1, s.SlowCalls, "a slow failure is slow; an ignored call is nothing")
		calls(t, b, 1, nil)
		assert.Equal(t, jidoka.StateClosed, b.State(), "under the minimum")
		require.NoError(t, slowCall(b, 2*time.Second, nil))
		s = b.Snapshot()
		assert.Equal(t, jidoka.StateOpen, s.State)
		assert.Equal(t, "slow-call rate 0.5 over 4 calls reached 0.5", s.Reason)

		advance(time.Minute)
		require.NoError(t, slowCall(b, 2*time.Second, nil))
		s = b.Snapshot()
		assert.Equal(t, jidoka.StateOpen, s.State)
		assert.Equal(t, "probe was slow", s.Reason)
	})
}
