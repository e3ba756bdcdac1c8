package jidoka_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/jidoka"
	"github.com/taipattern/taikit/tai"
)

var errFlaky = errors.New("flaky")

func noJitter(d time.Duration) time.Duration { return d }

func TestNewRetryRejectsBadOptions(t *testing.T) {
	for _, tt := range []struct {
		opts jidoka.RetryOptions
		want string
	}{
		{jidoka.RetryOptions{MaxAttempts: -1}, "RetryOptions.MaxAttempts is -1"},
		{jidoka.RetryOptions{MaxAttempts: jidoka.MaxAttemptsLimit + 1}, "RetryOptions.MaxAttempts is 1001"},
		{jidoka.RetryOptions{BaseDelay: -time.Second}, "RetryOptions.BaseDelay is -1s"},
		{jidoka.RetryOptions{MaxDelay: -time.Second}, "RetryOptions.MaxDelay is -1s"},
		{jidoka.RetryOptions{BaseDelay: time.Second, MaxDelay: time.Millisecond}, "MaxDelay 1ms is less than BaseDelay 1s"},
		{jidoka.RetryOptions{Multiplier: 0.5}, "RetryOptions.Multiplier is 0.5"},
		{jidoka.RetryOptions{Multiplier: math.Inf(1)}, "RetryOptions.Multiplier is +Inf"},
		{jidoka.RetryOptions{Multiplier: math.NaN()}, "RetryOptions.Multiplier is NaN"},
		{jidoka.RetryOptions{MaxRetryAfter: -1}, "RetryOptions.MaxRetryAfter is -1ns"},
	} {
		t.Run(tt.want, func(t *testing.T) {
			r, err := jidoka.NewRetry(tt.opts)
			assert.Nil(t, r)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.want)
		})
	}
	r, err := jidoka.NewRetry(jidoka.RetryOptions{BaseDelay: time.Minute})
	require.NoError(t, err, "a large BaseDelay raises the default MaxDelay")
	assert.NotNil(t, r.Budget())
}

// A MaxDelay shorter than DefaultBaseDelay, with no BaseDelay, caps the
// backoff from the first retry on: the default base gives way to it, as
// the default MaxDelay gives way to a longer BaseDelay.
func TestRetryMaxDelayAloneCapsTheDefaultBase(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r, err := jidoka.NewRetry(jidoka.RetryOptions{
			MaxAttempts: 3, MaxDelay: 30 * time.Millisecond, Jitter: noJitter, Budget: bigBudget(t),
		})
		require.NoError(t, err, "only MaxDelay set")
		var at []time.Duration
		start := time.Now()
		err = r.Do(context.Background(), func(context.Context) error {
			at = append(at, time.Since(start))
			return errFlaky
		})
		assert.ErrorIs(t, err, errFlaky)
		ms := time.Millisecond
		assert.Equal(t, []time.Duration{0, 30 * ms, 60 * ms}, at)
	})
}

// The waits between attempts are the backoff, doubled each time and capped
// at MaxDelay (no jitter here), and a RetryAfter hint longer than the
// backoff replaces it.
func TestRetryBackoff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r, err := jidoka.NewRetry(jidoka.RetryOptions{
			MaxAttempts: 6, BaseDelay: 100 * time.Millisecond, MaxDelay: 500 * time.Millisecond,
			Jitter: noJitter, Budget: bigBudget(t),
		})
		require.NoError(t, err)
		var at []time.Duration
		start := time.Now()
		err = r.Do(context.Background(), func(context.Context) error {
			at = append(at, time.Since(start))
			return errFlaky
		})
		assert.ErrorIs(t, err, errFlaky)
		ms := time.Millisecond
		assert.Equal(t, []time.Duration{0, 100 * ms, 300 * ms, 700 * ms, 1200 * ms, 1700 * ms}, at)
	})
}

func TestRetryFullJitterStaysWithinTheBackoff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var asked []time.Duration
		r, err := jidoka.NewRetry(jidoka.RetryOptions{
			MaxAttempts: 4, BaseDelay: time.Second, MaxDelay: time.Minute, Budget: bigBudget(t),
			Jitter: func(d time.Duration) time.Duration { asked = append(asked, d); return 2 * d }, // clamped to d
		})
		require.NoError(t, err)
		start := time.Now()
		_ = r.Do(context.Background(), func(context.Context) error { return errFlaky })
		assert.Equal(t, []time.Duration{time.Second, 2 * time.Second, 4 * time.Second}, asked)
		assert.Equal(t, 7*time.Second, time.Since(start))

		// The default jitter: every wait in [0, backoff].
		r, err = jidoka.NewRetry(jidoka.RetryOptions{MaxAttempts: 50, BaseDelay: time.Second, MaxDelay: time.Second, Budget: bigBudget(t)})
		require.NoError(t, err)
		last := time.Now()
		var waits []time.Duration
		_ = r.Do(context.Background(), func(context.Context) error {
			waits = append(waits, time.Since(last))
			last = time.Now()
			return errFlaky
		})
		require.Len(t, waits, 50)
		distinct := map[time.Duration]bool{}
		for _, w := range waits[1:] {
			assert.GreaterOrEqual(t, w, time.Duration(0))
			assert.LessOrEqual(t, w, time.Second)
			distinct[w] = true
		}
		assert.Greater(t, len(distinct), 10, "the waits are spread, not fixed")
	})
}

// The default jitter takes the longest backoff there is: a wait drawn from
// [0, math.MaxInt64].
func TestRetryFullJitterOfTheLongestBackoff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r, err := jidoka.NewRetry(jidoka.RetryOptions{BaseDelay: math.MaxInt64, Budget: bigBudget(t)})
		require.NoError(t, err)
		ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
		defer cancel()
		calls := 0
		err = r.Do(ctx, func(context.Context) error { calls++; return errFlaky })
		require.ErrorIs(t, err, errFlaky)
		assert.GreaterOrEqual(t, calls, 1)
	})
}

type hinted struct{ d time.Duration }

func (h hinted) Error() string             { return fmt.Sprintf("retry in %v", h.d) }
func (h hinted) RetryAfter() time.Duration { return h.d }

func TestRetryHonoursRetryAfter(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r, err := jidoka.NewRetry(jidoka.RetryOptions{
			MaxAttempts: 3, BaseDelay: 10 * time.Millisecond, MaxDelay: time.Second,
			MaxRetryAfter: 5 * time.Second, Jitter: noJitter, Budget: bigBudget(t),
		})
		require.NoError(t, err)
		var at []time.Duration
		start := time.Now()
		err = r.Do(context.Background(), func(context.Context) error {
			at = append(at, time.Since(start))
			return fmt.Errorf("wrapped: %w", hinted{2 * time.Second})
		})
		assert.Equal(t, []time.Duration{0, 2 * time.Second, 4 * time.Second}, at)
		assert.Equal(t, 2*time.Second, jidoka.RetryAfter(err))

		// A hint longer than MaxRetryAfter ends the retries.
		calls := 0
		err = r.Do(context.Background(), func(context.Context) error { calls++; return hinted{time.Minute} })
		assert.Equal(t, 1, calls)
		assert.Equal(t, time.Minute, jidoka.RetryAfter(err))
	})
}

func TestRetryAnOpenBreaker(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b, err := jidoka.NewBreaker(jidoka.BreakerOptions{ConsecutiveFailures: 1, OpenDuration: time.Second, HalfOpenSuccesses: 1})
		require.NoError(t, err)
		// Four attempts: the third may come at the very instant the open
		// period ends, before the breaker's timer has let a probe through.
		r, err := jidoka.NewRetry(jidoka.RetryOptions{MaxAttempts: 4, BaseDelay: time.Millisecond, MaxRetryAfter: 2 * time.Second, Budget: bigBudget(t)})
		require.NoError(t, err)
		calls := 0
		start := time.Now()
		err = r.Do(context.Background(), func(ctx context.Context) error {
			return b.Do(ctx, func(context.Context) error {
				calls++
				if calls == 1 {
					return errFlaky
				}
				return nil
			})
		})
		require.NoError(t, err)
		assert.Equal(t, 2, calls)
		assert.GreaterOrEqual(t, time.Since(start), time.Second, "the retry waited for the breaker's open period")
	})
}

// A retry that waits out an open breaker's RetryAfter hint is let
// through: the breaker's open period ends at its time, whether or not the
// timer that ends it has run by then.
func TestRetryAfterTheOpenPeriodIsLetThrough(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b, err := jidoka.NewBreaker(jidoka.BreakerOptions{ConsecutiveFailures: 1, OpenDuration: time.Second, HalfOpenSuccesses: 1})
		require.NoError(t, err)
		r, err := jidoka.NewRetry(jidoka.RetryOptions{MaxAttempts: 2, BaseDelay: time.Millisecond, MaxRetryAfter: 2 * time.Second, Budget: bigBudget(t)})
		require.NoError(t, err)
		// The retry and the breaker's timer are due at the same instant,
		// and either may run first: try many times.
		for range 50 {
			b.Trip("down")
			calls := 0
			start := time.Now()
			err = r.Do(context.Background(), func(ctx context.Context) error {
				return b.Do(ctx, func(context.Context) error {
					calls++
					return nil
				})
			})
			require.NoError(t, err, "the one retry, made when the hint said, was refused")
			require.Equal(t, 1, calls)
			require.Equal(t, time.Second, time.Since(start))
			require.Equal(t, jidoka.StateClosed, b.State())
		}
	})
}

func TestRetryStopsAtTheCallersDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r, err := jidoka.NewRetry(jidoka.RetryOptions{MaxAttempts: 10, BaseDelay: time.Second, Jitter: noJitter, Budget: bigBudget(t)})
		require.NoError(t, err)
		ctx, cancel := context.WithTimeout(context.Background(), 2500*time.Millisecond)
		defer cancel()
		calls := 0
		start := time.Now()
		err = r.Do(ctx, func(context.Context) error { calls++; return errFlaky })
		assert.ErrorIs(t, err, errFlaky)
		// Waits of 1 s, then 2 s would end past the deadline: no third call.
		assert.Equal(t, 2, calls)
		assert.Equal(t, time.Second, time.Since(start), "it gave up without waiting in vain")
	})
}

func TestRetryStopsWhenTheCallerCancels(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r, err := jidoka.NewRetry(jidoka.RetryOptions{MaxAttempts: 10, BaseDelay: time.Minute, Jitter: noJitter, Budget: bigBudget(t)})
		require.NoError(t, err)
		ctx, cancel := context.WithCancel(context.Background())
		go func() { time.Sleep(time.Second); cancel() }()
		calls := 0
		start := time.Now()
		err = r.Do(ctx, func(context.Context) error { calls++; return errFlaky })
		assert.ErrorIs(t, err, errFlaky)
		assert.Equal(t, 1, calls)
		assert.Equal(t, time.Second, time.Since(start))

		err = r.Do(ctx, func(context.Context) error { calls++; return nil })
		assert.ErrorIs(t, err, context.Canceled)
		assert.Equal(t, 1, calls, "a done context calls nothing")
	})
}

func TestRetryable(t *testing.T) {
	for _, tt := range []struct {
		err  error
		want bool
	}{
		{nil, false},
		{errFlaky, true},
		{context.Canceled, false},
		{fmt.Errorf("get: %w", context.Canceled), false},
		{context.DeadlineExceeded, true},
		{&jidoka.TimeoutError{Err: context.DeadlineExceeded}, true},
		{jidoka.Permanent(errFlaky), false},
		{&tai.DeniedError{}, false},
		{fmt.Errorf("%w: no ID", tai.ErrInvalidSignal), false},
		{&tai.PanicError{Value: "x"}, false},
		{&jidoka.PanicError{Value: "x"}, false},
		{jidoka.ErrOpen, true},
		{&tai.RejectedError{Err: jidoka.ErrBulkheadFull}, true},
	} {
		assert.Equal(t, tt.want, jidoka.Retryable(tt.err), "%v", tt.err)
	}
	assert.NoError(t, jidoka.Permanent(nil))
	p := jidoka.Permanent(errFlaky)
	assert.ErrorIs(t, p, errFlaky)
	assert.Equal(t, "flaky", p.Error())
}

func TestRetryOnlyWhatTheClassifierAllows(t *testing.T) {
	r, err := jidoka.NewRetry(jidoka.RetryOptions{
		MaxAttempts: 5, BaseDelay: time.Microsecond, Budget: bigBudget(t),
		RetryOn: func(err error) bool { return errors.Is(err, errFlaky) },
	})
	require.NoError(t, err)
	other := errors.New("other")
	calls := 0
	err = r.Do(context.Background(), func(context.Context) error {
		calls++
		if calls < 3 {
			return errFlaky
		}
		return other
	})
	assert.ErrorIs(t, err, other)
	assert.Equal(t, 3, calls)
}

// Against a server that always fails, the retries stop at the budget:
// calls × (1 + Ratio) + Burst requests at most, not calls × MaxAttempts.
func TestRetryStopsAtTheBudget(t *testing.T) {
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	defer srv.Close()
	defer http.DefaultClient.CloseIdleConnections()
	budget, err := jidoka.NewRetryBudget(jidoka.RetryBudgetOptions{Ratio: 0.1, Burst: 5})
	require.NoError(t, err)
	r, err := jidoka.NewRetry(jidoka.RetryOptions{MaxAttempts: 4, BaseDelay: time.Microsecond, MaxDelay: time.Microsecond, Budget: budget})
	require.NoError(t, err)

	const calls = 200
	for range calls {
		err := r.Do(context.Background(), func(ctx context.Context) error { return get(ctx, srv.URL) })
		require.Error(t, err)
	}
	retries := hits.Load() - calls
	assert.LessOrEqual(t, retries, int64(calls*0.1+5), "retries beyond the budget")
	assert.GreaterOrEqual(t, retries, int64(calls*0.1), "the budget's retries were used")
	assert.Less(t, budget.Tokens(), 1.0)
}

// With a server that fails every other request, retries turn every call
// into a success.
func TestRetryFlappingServer(t *testing.T) {
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if hits.Add(1)%2 == 1 {
			w.WriteHeader(http.StatusBadGateway)
		}
	}))
	defer srv.Close()
	defer http.DefaultClient.CloseIdleConnections()
	r, err := jidoka.NewRetry(jidoka.RetryOptions{BaseDelay: time.Microsecond, Budget: bigBudget(t)})
	require.NoError(t, err)
	for range 20 {
		require.NoError(t, r.Do(context.Background(), func(ctx context.Context) error { return get(ctx, srv.URL) }))
	}
	assert.Equal(t, int64(40), hits.Load())
}

func TestRetrySuccessDoesNotAllocate(t *testing.T) {
	skipUnderRace(t)
	r, err := jidoka.NewRetry(jidoka.RetryOptions{})
	require.NoError(t, err)
	to, err := jidoka.NewTimeout(jidoka.TimeoutOptions{Duration: time.Minute})
	require.NoError(t, err)
	ctx := context.Background()
	inner := func(ctx context.Context) error { return ctx.Err() }
	assert.Zero(t, testing.AllocsPerRun(1000, func() {
		if err := r.Do(ctx, inner); err != nil {
			t.Fatal(err)
		}
	}))
	fn := func(ctx context.Context) error { return to.Do(ctx, inner) }
	assert.Equal(t, 1.0, testing.AllocsPerRun(1000, func() {
		if err := r.Do(ctx, fn); err != nil {
			t.Fatal(err)
		}
	}), "around a Timeout: its context")
}

func bigBudget(t *testing.T) *jidoka.RetryBudget {
	b, err := jidoka.NewRetryBudget(jidoka.RetryBudgetOptions{Ratio: 1, Burst: 1000})
	require.NoError(t, err)
	return b
}

// A retry whose wait the caller's context ends is never made, and gives
// its token back: callers that give up during an outage do not spend the
// budget the retries of the others need.
func TestRetryNotMadeGivesItsTokenBack(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		budget, err := jidoka.NewRetryBudget(jidoka.RetryBudgetOptions{Ratio: 0.001, Burst: 2})
		require.NoError(t, err)
		r, err := jidoka.NewRetry(jidoka.RetryOptions{MaxAttempts: 2, BaseDelay: time.Second, Jitter: noJitter, Budget: budget})
		require.NoError(t, err)
		for range 3 {
			ctx, cancel := context.WithCancel(context.Background())
			go func() { time.Sleep(time.Second / 2); cancel() }()
			calls := 0
			err = r.Do(ctx, func(context.Context) error { calls++; return errFlaky })
			assert.ErrorIs(t, err, errFlaky)
			assert.Equal(t, 1, calls, "the caller left during the wait")
			cancel()
		}
		assert.InDelta(t, 2.0, budget.Tokens(), 0.01, "no retry was made: the budget is still full")

		calls := 0
		err = r.Do(context.Background(), func(context.Context) error { calls++; return errFlaky })
		assert.ErrorIs(t, err, errFlaky)
		assert.Equal(t, 2, calls, "a caller that waits still gets its retry")
	})
}

// A caller whose context ends at the very moment the wait before a retry
// does gets no retry: it would run with a context that has ended, and
// answer with the cancellation in place of the last error. When both
// have happened, the wait may see either first; every time, Do returns the
// last error at once and gives the retry's token back.
func TestRetryNotMadeWhenTheCallerCancelsAsTheWaitEnds(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		budget, err := jidoka.NewRetryBudget(jidoka.RetryBudgetOptions{Ratio: 0.001, Burst: 2})
		require.NoError(t, err)
		r, err := jidoka.NewRetry(jidoka.RetryOptions{MaxAttempts: 2, BaseDelay: time.Second, Jitter: noJitter, Budget: budget})
		require.NoError(t, err)
		for i := range 100 {
			ctx := &endsAsTheWaitEnds{wait: time.Second}
			ctx.Context, ctx.cancel = context.WithCancel(context.Background())
			calls := 0
			err = r.Do(ctx, func(ctx context.Context) error {
				calls++
				if err := ctx.Err(); err != nil {
					return err
				}
				return errFlaky
			})
			require.ErrorIs(t, err, errFlaky, "run %d", i)
			require.Equal(t, 1, calls, "run %d: a retry was made after the caller had gone", i)
		}
		assert.InDelta(t, 2.0, budget.Tokens(), 0.01, "no retry was made: the budget is still full")
	})
}

// endsAsTheWaitEnds is a context that its first Done ends once wait has
// passed: a Retry that asks for Done to wait before a retry of that length
// finds both its timer and the context done.
type endsAsTheWaitEnds struct {
	context.Context
	cancel context.CancelFunc
	wait   time.Duration
	asked  bool
}

func (c *endsAsTheWaitEnds) Done() <-chan struct{} {
	if !c.asked {
		c.asked = true
		time.Sleep(c.wait)
		c.cancel()
	}
	return c.Context.Done()
}
