package jidoka_test

// The cases of failsafe-go's tests (v0.9.8: retrypolicy, timeout, bulkhead,
// hedgepolicy, fallback, budget) for which jidoka's guards have the same
// notion, each stating what jidoka does. Where the two differ, the comment
// says how, and why jidoka's answer is the one it documents.

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/jidoka"
)

// MaxAttempts counts calls, the first included, as failsafe-go's
// WithMaxAttempts does; its WithMaxRetries(n) is MaxAttempts n+1. Zero is
// the default (3), not "no retry"; a negative value, failsafe-go's
// "unlimited", is refused.
func TestPeerRetryMaxAttemptsCountsCalls(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		for _, tc := range []struct{ attempts, calls int }{{0, 3}, {1, 1}, {2, 2}, {3, 3}, {7, 7}} {
			r, err := jidoka.NewRetry(jidoka.RetryOptions{MaxAttempts: tc.attempts, Jitter: noJitter, Budget: bigBudget(t)})
			require.NoError(t, err)
			calls := 0
			err = r.Do(context.Background(), func(context.Context) error { calls++; return errFlaky })
			assert.Equal(t, errFlaky, err, "MaxAttempts %d: the last error, unchanged", tc.attempts)
			assert.Equal(t, tc.calls, calls, "MaxAttempts %d", tc.attempts)
		}
		_, err := jidoka.NewRetry(jidoka.RetryOptions{MaxAttempts: -1})
		require.ErrorContains(t, err, "RetryOptions.MaxAttempts is -1")
	})
}

// jidoka has no MaxDuration of its own: the caller's deadline, or a
// Timeout around the Retry, bounds the retries. A retry whose wait would
// end past the deadline is not waited for: Do returns the last error at
// once rather than sleep in vain (failsafe-go shortens the last wait to
// the time left and calls once more).
func TestPeerRetryMaxDurationIsTheDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		to, err := jidoka.NewTimeout(jidoka.TimeoutOptions{Duration: 2500 * time.Millisecond})
		require.NoError(t, err)
		r, err := jidoka.NewRetry(jidoka.RetryOptions{MaxAttempts: 10, BaseDelay: time.Second, Jitter: noJitter, Budget: bigBudget(t)})
		require.NoError(t, err)

		var at []time.Duration
		start := time.Now()
		err = to.Do(context.Background(), func(ctx context.Context) error {
			return r.Do(ctx, func(context.Context) error { at = append(at, time.Since(start)); return errFlaky })
		})
		assert.Equal(t, errFlaky, err, "the deadline did not pass: the call's own error")
		assert.Equal(t, []time.Duration{0, time.Second}, at, "a wait of 2 s would end past 2.5 s")
		assert.Equal(t, time.Second, time.Since(start))

		// A call that runs into the deadline ends the retries with it.
		at = nil
		start = time.Now()
		err = to.Do(context.Background(), func(ctx context.Context) error {
			return r.Do(ctx, func(ctx context.Context) error {
				at = append(at, time.Since(start))
				<-ctx.Done()
				return ctx.Err()
			})
		})
		assert.ErrorIs(t, err, jidoka.ErrTimeout)
		assert.Equal(t, []time.Duration{0}, at)
		assert.Equal(t, 2500*time.Millisecond, time.Since(start))
	})
}

// Full jitter: each wait is drawn from [0, backoff], the backoff growing
// by Multiplier up to MaxDelay. A Jitter that strays is clamped: never a
// negative wait, never one above the backoff (failsafe-go's jitter adds or
// takes up to its amount, and may go past its max delay).
func TestPeerRetryJitterBounds(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		for _, tc := range []struct {
			name   string
			jitter func(time.Duration) time.Duration
			want   []time.Duration // the times of the calls
		}{
			{"negative", func(time.Duration) time.Duration { return -time.Hour }, []time.Duration{0, 0, 0, 0}},
			{"above", func(d time.Duration) time.Duration { return d + time.Hour }, []time.Duration{0, time.Second, 3 * time.Second, 6 * time.Second}},
			{"none", noJitter, []time.Duration{0, time.Second, 3 * time.Second, 6 * time.Second}},
			{"half", func(d time.Duration) time.Duration { return d / 2 }, []time.Duration{0, time.Second / 2, 3 * time.Second / 2, 3 * time.Second}},
		} {
			r, err := jidoka.NewRetry(jidoka.RetryOptions{
				MaxAttempts: 4, BaseDelay: time.Second, MaxDelay: 3 * time.Second, Jitter: tc.jitter, Budget: bigBudget(t),
			})
			require.NoError(t, err)
			var at []time.Duration
			start := time.Now()
			_ = r.Do(context.Background(), func(context.Context) error { at = append(at, time.Since(start)); return errFlaky })
			assert.Equal(t, tc.want, at, tc.name)
		}

		// The default jitter over many retries: never below 0, never above
		// MaxDelay, though the backoff would have grown far past it.
		r, err := jidoka.NewRetry(jidoka.RetryOptions{MaxAttempts: 200, BaseDelay: time.Millisecond, MaxDelay: time.Second, Multiplier: 10, Budget: bigBudget(t)})
		require.NoError(t, err)
		last := time.Now()
		calls := 0
		_ = r.Do(context.Background(), func(context.Context) error {
			calls++
			w := time.Since(last)
			assert.GreaterOrEqual(t, w, time.Duration(0))
			assert.LessOrEqual(t, w, time.Second)
			last = time.Now()
			return errFlaky
		})
		assert.Equal(t, 200, calls)
	})
}

// Aborting: failsafe-go's AbortOn is RetryOn refusing the error, or an
// error wrapped with Permanent (found through any wrapping). The error
// returned is the call's own: errors.Is finds what it wraps.
func TestPeerRetryAbortOn(t *testing.T) {
	errFatal := errors.New("card declined")
	for _, tc := range []struct {
		name    string
		retryOn func(error) bool
		err     error
	}{
		{"permanent", nil, jidoka.Permanent(errFatal)},
		{"permanent, wrapped", nil, errors.Join(errors.New("charge"), jidoka.Permanent(errFatal))},
		{"RetryOn", func(err error) bool { return !errors.Is(err, errFatal) }, errFatal},
	} {
		r, err := jidoka.NewRetry(jidoka.RetryOptions{MaxAttempts: 5, RetryOn: tc.retryOn, Budget: bigBudget(t)})
		require.NoError(t, err)
		calls := 0
		err = r.Do(context.Background(), func(context.Context) error {
			calls++
			if calls == 1 {
				return errFlaky
			}
			return tc.err
		})
		assert.Equal(t, 2, calls, tc.name)
		assert.Equal(t, tc.err, err, tc.name)
		assert.ErrorIs(t, err, errFatal, tc.name)
	}
}

// errPending is what the call in TestPeerRetryOnAResult returns for a
// result that is not final.
var errPending = errors.New("payment pending")

// A Guard sees errors only: to retry on a result (failsafe-go's
// HandleResult), the call returns an error for it. Through Call, the value
// of the call that succeeded is returned; when none did, the error of the
// last call and the zero value (failsafe-go returns an ExceededError that
// holds the last result).
func TestPeerRetryOnAResult(t *testing.T) {
	r, err := jidoka.NewRetry(jidoka.RetryOptions{MaxAttempts: 3, Jitter: func(time.Duration) time.Duration { return 0 }, Budget: bigBudget(t)})
	require.NoError(t, err)
	status := func(answers ...string) func(context.Context) (string, error) {
		i := 0
		return func(context.Context) (string, error) {
			s := answers[i]
			i++
			if s == "pending" {
				return s, errPending
			}
			return s, nil
		}
	}
	got, err := jidoka.Call(context.Background(), r, status("pending", "pending", "settled"))
	require.NoError(t, err)
	assert.Equal(t, "settled", got)

	got, err = jidoka.Call(context.Background(), r, status("pending", "pending", "pending"))
	assert.Equal(t, errPending, err)
	assert.Empty(t, got)
}

// A caller that cancels during the backoff is answered at once, with the
// last call's error, as Retry documents (failsafe-go answers
// context.Canceled): the retry was not made, so its budget token is given
// back. A Fallback around the Retry knows the caller gave up by its
// context, and does not answer for it.
func TestPeerRetryCanceledDuringTheBackoff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		budget, err := jidoka.NewRetryBudget(jidoka.RetryBudgetOptions{Burst: 3})
		require.NoError(t, err)
		r, err := jidoka.NewRetry(jidoka.RetryOptions{MaxAttempts: 3, BaseDelay: time.Minute, Jitter: noJitter, Budget: budget})
		require.NoError(t, err)
		fb, err := jidoka.NewFallback(jidoka.FallbackOptions{Func: func(context.Context, error) error { return nil }})
		require.NoError(t, err)

		ctx, cancel := context.WithCancel(context.Background())
		time.AfterFunc(time.Second, cancel)
		calls := 0
		start := time.Now()
		err = fb.Do(ctx, func(ctx context.Context) error {
			return r.Do(ctx, func(context.Context) error { calls++; return errFlaky })
		})
		assert.Equal(t, time.Second, time.Since(start), "answered as the caller canceled, not after the backoff")
		assert.Equal(t, errFlaky, err)
		assert.NotErrorIs(t, err, context.Canceled)
		assert.Equal(t, 1, calls)
		assert.Equal(t, 3.0, budget.Tokens(), "the token of the retry not made is given back")
	})
}

// A Retry-After hint sets the wait when it is longer than the backoff, up
// to MaxRetryAfter even past MaxDelay; a longer hint, or one that would
// end past the caller's deadline, ends the retries at once, and the caller
// gets the error with its hint.
func TestPeerRetryAfterHonouredButCapped(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r, err := jidoka.NewRetry(jidoka.RetryOptions{
			MaxAttempts: 2, BaseDelay: 100 * time.Millisecond, MaxDelay: time.Second, MaxRetryAfter: 5 * time.Second,
			Jitter: noJitter, Budget: bigBudget(t),
		})
		require.NoError(t, err)
		for _, tc := range []struct {
			name     string
			hint     time.Duration
			deadline time.Duration // 0: none
			want     []time.Duration
		}{
			{"shorter than the backoff", 50 * time.Millisecond, 0, []time.Duration{0, 100 * time.Millisecond}},
			{"past MaxDelay", 3 * time.Second, 0, []time.Duration{0, 3 * time.Second}},
			{"MaxRetryAfter", 5 * time.Second, 0, []time.Duration{0, 5 * time.Second}},
			{"past MaxRetryAfter", 5*time.Second + 1, 0, []time.Duration{0}},
			{"past the deadline", 3 * time.Second, 2 * time.Second, []time.Duration{0}},
		} {
			ctx, cancel := context.Background(), context.CancelFunc(func() {})
			if tc.deadline > 0 {
				ctx, cancel = context.WithTimeout(ctx, tc.deadline)
			}
			var at []time.Duration
			start := time.Now()
			err := r.Do(ctx, func(context.Context) error { at = append(at, time.Since(start)); return hinted{tc.hint} })
			cancel()
			assert.Equal(t, tc.want, at, tc.name)
			assert.Equal(t, tc.hint, jidoka.RetryAfter(err), tc.name)
			assert.Equal(t, at[len(at)-1], time.Since(start), "%s: no wait after the last call", tc.name)
		}
	})
}

// Many callers failing at once, through Retry guards that share a budget:
// the retries never pass Ratio × calls + Burst, however the calls
// interleave (failsafe-go's budget caps the retries in flight at a share
// of the calls in flight instead). The budget starts full, so the first
// failures are retried: at least Burst retries are made.
func TestPeerRetryBudgetUnderConcurrency(t *testing.T) {
	budget, err := jidoka.NewRetryBudget(jidoka.RetryBudgetOptions{Ratio: 0.2, Burst: 10})
	require.NoError(t, err)
	const callers, each = 8, 50
	var calls, retries atomic.Int64
	var wg sync.WaitGroup
	for range callers {
		r, err := jidoka.NewRetry(jidoka.RetryOptions{MaxAttempts: 4, Jitter: func(time.Duration) time.Duration { return 0 }, Budget: budget})
		require.NoError(t, err)
		wg.Go(func() {
			for range each {
				first := true
				_ = r.Do(context.Background(), func(context.Context) error {
					if first {
						calls.Add(1)
						first = false
					} else {
						retries.Add(1)
					}
					return errFlaky
				})
			}
		})
	}
	wg.Wait()
	assert.Equal(t, int64(callers*each), calls.Load())
	assert.LessOrEqual(t, retries.Load(), int64(0.2*callers*each+10))
	assert.GreaterOrEqual(t, retries.Load(), int64(10))
	assert.GreaterOrEqual(t, budget.Tokens(), 0.0)
}

// A call that ignores its context runs on past the deadline, and Do waits
// for it, as every jidoka guard waits for what it started (failsafe-go
// also waits). Its error then comes as a *TimeoutError; a success that
// came late is a success (failsafe-go answers ErrExceeded for it).
func TestPeerTimeoutCallIgnoresItsContext(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		to, err := jidoka.NewTimeout(jidoka.TimeoutOptions{Name: "gateway", Duration: time.Second})
		require.NoError(t, err)
		for _, result := range []error{errFlaky, nil} {
			start := time.Now()
			err := to.Do(context.Background(), func(context.Context) error { time.Sleep(3 * time.Second); return result })
			assert.Equal(t, 3*time.Second, time.Since(start), "Do returns when the call does, not at the deadline")
			if result == nil {
				assert.NoError(t, err)
				continue
			}
			var te *jidoka.TimeoutError
			require.ErrorAs(t, err, &te)
			assert.Equal(t, time.Second, te.Duration)
			assert.ErrorIs(t, err, errFlaky)
			assert.ErrorIs(t, err, context.DeadlineExceeded)
		}
	})
}

// A Duration of 0 or less is refused when the Timeout is made (failsafe-go
// takes it, and its timer races the call from the start); the zero
// Timeout calls nothing.
func TestPeerTimeoutOfZeroOrNegative(t *testing.T) {
	for _, d := range []time.Duration{0, -1, -time.Second} {
		to, err := jidoka.NewTimeout(jidoka.TimeoutOptions{Duration: d})
		assert.Nil(t, to)
		assert.ErrorContains(t, err, "TimeoutOptions.Duration is "+d.String()+", want > 0")
	}
	called := false
	err := (&jidoka.Timeout{}).Do(context.Background(), func(context.Context) error { called = true; return nil })
	assert.Error(t, err)
	assert.False(t, called)
}

// A MaxConcurrent of 0 is refused when the Bulkhead is made (failsafe-go
// takes it, and no call ever gets a permit).
func TestPeerBulkheadMaxConcurrentZero(t *testing.T) {
	for _, n := range []int{0, -1} {
		b, err := jidoka.NewBulkhead(jidoka.BulkheadOptions{MaxConcurrent: n})
		assert.Nil(t, b)
		assert.ErrorContains(t, err, "BulkheadOptions.MaxConcurrent is")
	}
}

// A wait for a slot ends when MaxWait runs out, or when the caller's
// context ends; both are refusals (*BulkheadFullError, Waited), and one
// that the context ended wraps its error, so that errors.Is finds
// context.Canceled too (failsafe-go answers ctx.Err() alone). A slot freed
// in time is taken.
func TestPeerBulkheadMaxWaitAndCanceledWait(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b, err := jidoka.NewBulkhead(jidoka.BulkheadOptions{Name: "db", MaxConcurrent: 1, MaxWaiting: 4, MaxWait: time.Second})
		require.NoError(t, err)
		hold, err := b.Allow(context.Background())
		require.NoError(t, err)

		start := time.Now()
		_, err = b.Allow(context.Background())
		var full *jidoka.BulkheadFullError
		require.ErrorAs(t, err, &full)
		assert.True(t, full.Waited)
		assert.NoError(t, full.Err)
		assert.Equal(t, time.Second, time.Since(start), "refused when MaxWait ran out")

		ctx, cancel := context.WithCancel(context.Background())
		time.AfterFunc(100*time.Millisecond, cancel)
		start = time.Now()
		_, err = b.Allow(ctx)
		assert.ErrorIs(t, err, jidoka.ErrBulkheadFull)
		assert.ErrorIs(t, err, context.Canceled)
		assert.Equal(t, 100*time.Millisecond, time.Since(start), "refused as the caller canceled")
		assert.Zero(t, b.Waiting())

		time.AfterFunc(500*time.Millisecond, func() { hold(nil) })
		start = time.Now()
		done, err := b.Allow(context.Background())
		require.NoError(t, err)
		assert.Equal(t, 500*time.Millisecond, time.Since(start), "the slot freed in time is taken")
		done(nil)
		assert.Zero(t, b.Running())
	})
}

// A done called twice on an idle bulkhead gives nothing back: the next
// calls still find one slot (failsafe-go's second release blocks until
// another call takes a permit, and then frees that one).
func TestPeerBulkheadReleaseTwice(t *testing.T) {
	b, err := jidoka.NewBulkhead(jidoka.BulkheadOptions{MaxConcurrent: 1})
	require.NoError(t, err)
	done, err := b.Allow(context.Background())
	require.NoError(t, err)
	done(nil)
	done(nil)
	assert.Zero(t, b.Running())
	hold, err := b.Allow(context.Background())
	require.NoError(t, err)
	_, err = b.Allow(context.Background())
	assert.ErrorIs(t, err, jidoka.ErrBulkheadFull)
	hold(nil)
}

// A Delay of 0 is refused without a Quantile: jidoka's Delay 0 means "no
// least delay" beside a Quantile, and no call is hedged until enough
// latencies are known (failsafe-go's delay 0 starts every hedge at once).
// A Delay of a nanosecond comes closest to starting them all at once.
func TestPeerHedgeDelayZero(t *testing.T) {
	_, err := jidoka.NewHedge(jidoka.HedgeOptions{})
	require.ErrorContains(t, err, "HedgeOptions.Delay and Quantile are both 0")

	synctest.Test(t, func(t *testing.T) {
		h, err := jidoka.NewHedge(jidoka.HedgeOptions{Quantile: 0.9, Samples: 5})
		require.NoError(t, err)
		assert.Zero(t, h.Delay())
		var calls atomic.Int32
		for range 5 {
			require.NoError(t, h.Do(context.Background(), func(context.Context) error {
				calls.Add(1)
				time.Sleep(time.Second)
				return nil
			}))
		}
		assert.Equal(t, int32(5), calls.Load(), "no hedge before Samples latencies are known")
		assert.Positive(t, h.Delay())
	})
}

// MaxHedges is the most calls started beside the first, one Delay apart;
// zero means one.
func TestPeerHedgeMaxHedges(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		for _, tc := range []struct{ hedges, calls int32 }{{0, 2}, {1, 2}, {3, 4}, {jidoka.MaxHedges, jidoka.MaxHedges + 1}} {
			h, err := jidoka.NewHedge(jidoka.HedgeOptions{Delay: time.Second, MaxHedges: int(tc.hedges)})
			require.NoError(t, err)
			ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
			var calls atomic.Int32
			err = h.Do(ctx, func(ctx context.Context) error { calls.Add(1); <-ctx.Done(); return ctx.Err() })
			cancel()
			assert.ErrorIs(t, err, context.DeadlineExceeded)
			assert.Equal(t, tc.calls, calls.Load(), "MaxHedges %d", tc.hedges)
		}
		_, err := jidoka.NewHedge(jidoka.HedgeOptions{Delay: time.Second, MaxHedges: jidoka.MaxHedges + 1})
		require.ErrorContains(t, err, "HedgeOptions.MaxHedges is 11")
	})
}

// The first success wins: its value is the answer, every other call's
// context is canceled, and Do returns only once they have all returned.
// A failure wins nothing (failsafe-go, by default, takes the first call to
// return, failed or not, and cancels the rest).
func TestPeerHedgeFirstSuccessWinsLosersCanceled(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h, err := jidoka.NewHedge(jidoka.HedgeOptions{Delay: time.Second, MaxHedges: 3})
		require.NoError(t, err)
		var n atomic.Int32
		var mu sync.Mutex
		var losers []error // each loser's ctx.Err() as it returned
		got, err := jidoka.Call(context.Background(), h, func(ctx context.Context) (int32, error) {
			i := n.Add(1)
			if i == 3 { // the second hedge, at 2 s, answers at once
				return i, nil
			}
			<-ctx.Done()
			time.Sleep(time.Millisecond) // a loser takes a moment to give up
			mu.Lock()
			losers = append(losers, ctx.Err())
			mu.Unlock()
			return 0, ctx.Err()
		})
		require.NoError(t, err)
		assert.Equal(t, int32(3), got)
		assert.Equal(t, int32(3), n.Load(), "no hedge after the win")
		mu.Lock()
		defer mu.Unlock()
		assert.Equal(t, []error{context.Canceled, context.Canceled}, losers, "every loser canceled, and returned before Do did")
	})
}

// When every call fails, Do returns the first call's error, whichever
// call failed last, once every call has returned: while one runs, it may
// yet succeed. (failsafe-go, by default, returns the error of the first
// call to fail and cancels the rest; told to go on after errors, the error
// of the last one to fail.)
func TestPeerHedgeAllFail(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		errFirst, errHedge := errors.New("first"), errors.New("hedge")
		for _, tc := range []struct {
			name             string
			firstAt, hedgeAt time.Duration // when each call fails
			returns          time.Duration // when Do returns
		}{
			{"the hedge fails last", 1500 * time.Millisecond, 3 * time.Second, 3 * time.Second},
			{"the first call fails last", 3 * time.Second, 1500 * time.Millisecond, 3 * time.Second},
		} {
			h, err := jidoka.NewHedge(jidoka.HedgeOptions{Delay: time.Second})
			require.NoError(t, err)
			var n atomic.Int32
			start := time.Now()
			err = h.Do(context.Background(), func(context.Context) error {
				if n.Add(1) == 1 {
					time.Sleep(tc.firstAt)
					return errFirst
				}
				time.Sleep(tc.hedgeAt - time.Second)
				return errHedge
			})
			assert.Equal(t, errFirst, err, tc.name)
			assert.Equal(t, tc.returns, time.Since(start), tc.name)
		}
	})
}

// A panic is not a failure to fall back from: it goes on through Do, and
// Func is not called (failsafe-go does not recover panics either).
func TestPeerFallbackOnAPanic(t *testing.T) {
	called := false
	fb, err := jidoka.NewFallback(jidoka.FallbackOptions{Func: func(context.Context, error) error { called = true; return nil }})
	require.NoError(t, err)
	assert.PanicsWithValue(t, "boom", func() {
		_ = fb.Do(context.Background(), func(context.Context) error { panic("boom") })
	})
	assert.False(t, called)
}

// With When, only the errors it chooses are replaced; the others come
// back unchanged, and so does success.
func TestPeerFallbackOnASpecificErrorOnly(t *testing.T) {
	errUnavailable := errors.New("unavailable")
	errOther := errors.New("other")
	var seen []error
	fb, err := jidoka.NewFallback(jidoka.FallbackOptions{
		When: func(err error) bool { return errors.Is(err, errUnavailable) },
		Func: func(_ context.Context, err error) error { seen = append(seen, err); return nil },
	})
	require.NoError(t, err)
	wrapped := errors.Join(errors.New("gateway"), errUnavailable)
	for _, tc := range []struct{ in, want error }{
		{nil, nil}, {errUnavailable, nil}, {wrapped, nil}, {errOther, errOther},
		{context.DeadlineExceeded, context.DeadlineExceeded},
	} {
		got := fb.Do(context.Background(), func(context.Context) error { return tc.in })
		assert.Equal(t, tc.want, got, "%v", tc.in)
	}
	assert.Equal(t, []error{errUnavailable, wrapped}, seen, "Func gets the error it replaces")
}

// Guards composed around a call that blocks until its context ends, as
// failsafe-go's timeout tests compose them.
func TestPeerTimeoutComposed(t *testing.T) {
	blocked := func(calls *atomic.Int32) func(context.Context) error {
		return func(ctx context.Context) error {
			calls.Add(1)
			<-ctx.Done()
			return ctx.Err()
		}
	}
	newTimeout := func(t *testing.T, d time.Duration) *jidoka.Timeout {
		to, err := jidoka.NewTimeout(jidoka.TimeoutOptions{Duration: d})
		require.NoError(t, err)
		return to
	}

	// Retry(Timeout): each call is cut short, and retried.
	t.Run("retry of a timeout", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			to := newTimeout(t, time.Second)
			r, err := jidoka.NewRetry(jidoka.RetryOptions{MaxAttempts: 3, BaseDelay: time.Second, Jitter: noJitter, Budget: bigBudget(t)})
			require.NoError(t, err)
			var calls atomic.Int32
			start := time.Now()
			err = r.Do(context.Background(), func(ctx context.Context) error { return to.Do(ctx, blocked(&calls)) })
			assert.ErrorIs(t, err, jidoka.ErrTimeout)
			assert.Equal(t, int32(3), calls.Load())
			assert.Equal(t, 6*time.Second, time.Since(start), "three calls of 1 s, waits of 1 s and 2 s")
		})
	})

	// Timeout(Hedge): the deadline ends every call, the hedges' too.
	t.Run("timeout of a hedge", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			to := newTimeout(t, 2500*time.Millisecond)
			h, err := jidoka.NewHedge(jidoka.HedgeOptions{Delay: time.Second, MaxHedges: 5})
			require.NoError(t, err)
			var calls atomic.Int32
			start := time.Now()
			err = to.Do(context.Background(), func(ctx context.Context) error { return h.Do(ctx, blocked(&calls)) })
			assert.ErrorIs(t, err, jidoka.ErrTimeout)
			assert.Equal(t, int32(3), calls.Load(), "the first call and hedges at 1 s and 2 s")
			assert.Equal(t, 2500*time.Millisecond, time.Since(start))
		})
	})

	// Fallback(Timeout): a deadline that passed is a failure to degrade
	// from.
	t.Run("fallback of a timeout", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			to := newTimeout(t, time.Second)
			var replaced error
			fb, err := jidoka.NewFallback(jidoka.FallbackOptions{Func: func(_ context.Context, err error) error { replaced = err; return nil }})
			require.NoError(t, err)
			var calls atomic.Int32
			err = fb.Do(context.Background(), func(ctx context.Context) error { return to.Do(ctx, blocked(&calls)) })
			assert.NoError(t, err)
			assert.ErrorIs(t, replaced, jidoka.ErrTimeout)
		})
	})

	// Timeout(Fallback): the call inside sees its deadline pass, and the
	// Fallback answers for it: Do succeeds (failsafe-go's timeout skips an
	// inner fallback and answers ErrExceeded). The Fallback's Func gets the
	// ended context, and may use it or not.
	t.Run("timeout of a fallback", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			to := newTimeout(t, time.Second)
			var funcCtxErr error
			fb, err := jidoka.NewFallback(jidoka.FallbackOptions{Func: func(ctx context.Context, _ error) error { funcCtxErr = ctx.Err(); return nil }})
			require.NoError(t, err)
			var calls atomic.Int32
			start := time.Now()
			err = to.Do(context.Background(), func(ctx context.Context) error { return fb.Do(ctx, blocked(&calls)) })
			assert.NoError(t, err)
			assert.Equal(t, time.Second, time.Since(start))
			assert.ErrorIs(t, funcCtxErr, context.DeadlineExceeded)
		})
	})
}
