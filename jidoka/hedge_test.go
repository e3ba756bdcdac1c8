package jidoka_test

import (
	"context"
	"errors"
	"math"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/jidoka"
	"github.com/taipattern/taikit/tai"
)

func TestNewHedgeRejectsBadOptions(t *testing.T) {
	for _, tt := range []struct {
		opts jidoka.HedgeOptions
		want string
	}{
		{jidoka.HedgeOptions{}, "Delay and Quantile are both 0"},
		{jidoka.HedgeOptions{Delay: -1}, "HedgeOptions.Delay is -1ns"},
		{jidoka.HedgeOptions{Quantile: 1}, "HedgeOptions.Quantile is 1"},
		{jidoka.HedgeOptions{Quantile: -0.5}, "HedgeOptions.Quantile is -0.5"},
		{jidoka.HedgeOptions{Quantile: math.NaN()}, "HedgeOptions.Quantile is NaN"},
		{jidoka.HedgeOptions{Delay: 1, Samples: -1}, "HedgeOptions.Samples is -1"},
		{jidoka.HedgeOptions{Delay: 1, Window: -1}, "HedgeOptions.Window is -1"},
		{jidoka.HedgeOptions{Delay: 1, MaxHedges: -1}, "HedgeOptions.MaxHedges is -1"},
		{jidoka.HedgeOptions{Delay: 1, MaxHedges: jidoka.MaxHedges + 1}, "HedgeOptions.MaxHedges is 11"},
		{jidoka.HedgeOptions{Quantile: 0.9, Window: 5}, "HedgeOptions.Window is 5, want at least twice Samples (20)"},
		{jidoka.HedgeOptions{Quantile: 0.9, Samples: 1, Window: 1}, "HedgeOptions.Window is 1, want at least twice Samples (1)"},
		{jidoka.HedgeOptions{Quantile: 0.9, Samples: 501}, "HedgeOptions.Window is 1000, want at least twice Samples (501)"},
		{jidoka.HedgeOptions{Quantile: 0.9, Samples: 3, Window: 5}, "HedgeOptions.Window is 5, want at least twice Samples (3)"},
	} {
		h, err := jidoka.NewHedge(tt.opts)
		assert.Nil(t, h)
		require.Error(t, err)
		assert.Contains(t, err.Error(), tt.want)
	}
}

// The first request hangs on a slow replica; the hedge answers; the server
// sees the first request cancelled.
func TestHedgeCancelsTheLoser(t *testing.T) {
	var hits atomic.Int64
	cancelled := make(chan struct{}, 10)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if hits.Add(1) == 1 {
			<-r.Context().Done()
			cancelled <- struct{}{}
			return
		}
		_, _ = w.Write([]byte("ok"))
	}))
	defer srv.Close()
	defer http.DefaultClient.CloseIdleConnections()

	// One hedge at most: with more, a hedge slower than the delay (a
	// loaded machine) starts another, and the count would say how fast
	// the machine was rather than what the hedge did.
	h, err := jidoka.NewHedge(jidoka.HedgeOptions{Name: "search", Delay: 20 * time.Millisecond, MaxHedges: 1})
	require.NoError(t, err)
	err = h.Do(context.Background(), func(ctx context.Context) error { return get(ctx, srv.URL) })
	require.NoError(t, err)
	waitFor(t, cancelled, "the server to see the slow request cancelled")
	assert.Equal(t, int64(2), hits.Load(), "the first request and its hedge")
}

func TestHedgeTiming(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h, err := jidoka.NewHedge(jidoka.HedgeOptions{Delay: time.Second, MaxHedges: 2})
		require.NoError(t, err)
		start := time.Now()
		var mu sync.Mutex
		var started []time.Duration
		var calls atomic.Int32
		err = h.Do(context.Background(), func(ctx context.Context) error {
			n := calls.Add(1)
			mu.Lock()
			started = append(started, time.Since(start))
			mu.Unlock()
			if n < 3 {
				<-ctx.Done()
				return ctx.Err()
			}
			time.Sleep(time.Second)
			return nil
		})
		require.NoError(t, err)
		assert.Equal(t, []time.Duration{0, time.Second, 2 * time.Second}, started)
		assert.Equal(t, 3*time.Second, time.Since(start))
	})
}

// A Delay too long to add to the time the Hedge has run, as "never hedge
// by time" might be written, is the farthest time there is, as a
// Timeout's Duration is: the sum overflowed to a deadline in the past, and
// the hedge started at once.
func TestHedgeLongestDelayStartsNoHedge(t *testing.T) {
	for name, opts := range map[string]jidoka.HedgeOptions{
		"Delay":    {Delay: math.MaxInt64, MaxHedges: 2},
		"Quantile": {Delay: math.MaxInt64 - 1, Quantile: 0.9, Samples: 1, Window: 2, MaxHedges: 2},
	} {
		t.Run(name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				h, err := jidoka.NewHedge(opts)
				require.NoError(t, err)
				time.Sleep(time.Second) // the Hedge has run a while
				for range 3 {           // with a quantile, the later calls know a latency
					var calls atomic.Int32
					start := time.Now()
					err = h.Do(context.Background(), func(ctx context.Context) error {
						calls.Add(1)
						select {
						case <-ctx.Done():
							return ctx.Err()
						case <-time.After(time.Hour):
							return nil
						}
					})
					require.NoError(t, err)
					assert.Equal(t, int32(1), calls.Load(), "no hedge was started")
					assert.Equal(t, time.Hour, time.Since(start))
				}
				assert.GreaterOrEqual(t, h.Delay(), time.Duration(math.MaxInt64-1))
			})
		})
	}
}

func TestHedgeFailureIsNotHedged(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h, err := jidoka.NewHedge(jidoka.HedgeOptions{Delay: time.Second})
		require.NoError(t, err)
		calls := 0
		err = h.Do(context.Background(), func(context.Context) error { calls++; return errFlaky })
		assert.ErrorIs(t, err, errFlaky)
		assert.Equal(t, 1, calls)
	})
}

func TestHedgeAllFail(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h, err := jidoka.NewHedge(jidoka.HedgeOptions{Delay: time.Second})
		require.NoError(t, err)
		var calls atomic.Int32
		first := errors.New("first")
		err = h.Do(context.Background(), func(context.Context) error {
			if calls.Add(1) == 1 {
				time.Sleep(2 * time.Second)
				return first
			}
			time.Sleep(2 * time.Second)
			return errFlaky
		})
		assert.ErrorIs(t, err, first, "the first call's error")
		assert.Equal(t, int32(2), calls.Load())
	})
}

func TestHedgeCallerCancels(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h, err := jidoka.NewHedge(jidoka.HedgeOptions{Delay: time.Second, MaxHedges: 3})
		require.NoError(t, err)
		ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
		defer cancel()
		var calls atomic.Int32
		err = h.Do(ctx, func(ctx context.Context) error {
			calls.Add(1)
			<-ctx.Done()
			return ctx.Err()
		})
		assert.ErrorIs(t, err, context.DeadlineExceeded)
		assert.Equal(t, int32(2), calls.Load(), "no hedge after the caller's context ended")

		err = h.Do(ctx, func(context.Context) error { calls.Add(1); return nil })
		assert.ErrorIs(t, err, context.DeadlineExceeded)
		assert.Equal(t, int32(2), calls.Load())
	})
}

func TestHedgePanicPassesOn(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h, err := jidoka.NewHedge(jidoka.HedgeOptions{Delay: time.Second})
		require.NoError(t, err)
		var calls atomic.Int32
		var loserEnded atomic.Bool
		assert.PanicsWithValue(t, "boom", func() {
			_ = h.Do(context.Background(), func(ctx context.Context) error {
				if calls.Add(1) == 1 {
					<-ctx.Done()
					loserEnded.Store(true)
					return ctx.Err()
				}
				panic("boom")
			})
		})
		assert.True(t, loserEnded.Load(), "Do waited for the other call before passing the panic on")
	})
}

// The quantile delay follows the latencies of recent calls: with calls of
// 10 ms, 0.9 of them hedge after about 10 ms (a bucket's upper bound).
func TestHedgeQuantile(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h, err := jidoka.NewHedge(jidoka.HedgeOptions{Quantile: 0.9, Samples: 10, Window: 100})
		require.NoError(t, err)
		assert.Zero(t, h.Delay(), "no hedging before the latencies are known")
		ctx := context.Background()
		calls := 0
		sleep := func(d time.Duration) func(context.Context) error {
			return func(context.Context) error { calls++; time.Sleep(d); return nil }
		}
		for range 10 {
			require.NoError(t, h.Do(ctx, sleep(10*time.Millisecond)))
		}
		assert.Equal(t, 10, calls, "nothing hedged while learning")
		d := h.Delay()
		assert.GreaterOrEqual(t, d, 10*time.Millisecond)
		assert.LessOrEqual(t, d, 12500*time.Microsecond)

		// The service slows down: the quantile follows once the old
		// latencies fade.
		for range 300 {
			require.NoError(t, h.Do(ctx, func(ctx context.Context) error {
				time.Sleep(100 * time.Millisecond)
				return nil
			}))
		}
		d = h.Delay()
		assert.GreaterOrEqual(t, d, 100*time.Millisecond)
		assert.LessOrEqual(t, d, 125*time.Millisecond)

		// With a least Delay, that is the floor.
		h, err = jidoka.NewHedge(jidoka.HedgeOptions{Quantile: 0.5, Delay: time.Second, Samples: 1})
		require.NoError(t, err)
		assert.Equal(t, time.Second, h.Delay())
		require.NoError(t, h.Do(ctx, sleep(time.Millisecond)))
		assert.Equal(t, time.Second, h.Delay())
	})
}

// A pipeline whose action runs under a Hedge: the concurrent calls of the
// action race on nothing (go test -race), and the Result's Value is the
// winner's.
func TestHedgeInAPipeline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h, err := jidoka.NewHedge(jidoka.HedgeOptions{Delay: 10 * time.Millisecond, MaxHedges: 3})
		require.NoError(t, err)
		var calls atomic.Int32
		action := tai.ActionFunc[int, string](func(ctx context.Context, s tai.Signal[int]) (string, error) {
			n := calls.Add(1)
			if n%4 != 0 { // three slow calls, then a quick one
				select {
				case <-ctx.Done():
					return "loser " + strconv.Itoa(int(n)), ctx.Err()
				case <-time.After(time.Second):
					return "late " + strconv.Itoa(int(n)), nil
				}
			}
			return "winner " + strconv.Itoa(int(n)), nil
		})
		p, err := tai.New(allowAll, action, tai.WithGuards(h))
		require.NoError(t, err)
		for i := range 5 {
			res, err := p.Process(context.Background(), tai.Signal[int]{ID: strconv.Itoa(i), Kind: "k"})
			require.NoError(t, err)
			assert.Equal(t, "winner "+strconv.Itoa(4*(i+1)), res.Value)
		}
	})
}

// Under a Retry, the pipeline runs the action again for the same signal
// and keeps the value of the call that succeeded.
func TestRetryInAPipeline(t *testing.T) {
	r, err := jidoka.NewRetry(jidoka.RetryOptions{MaxAttempts: 3, BaseDelay: time.Microsecond, Budget: bigBudget(t)})
	require.NoError(t, err)
	calls := 0
	action := tai.ActionFunc[int, int](func(ctx context.Context, s tai.Signal[int]) (int, error) {
		calls++
		if calls%3 != 0 {
			return -calls, errFlaky
		}
		return calls, nil
	})
	p, err := tai.New(allowAll, action, tai.WithGuards(r))
	require.NoError(t, err)
	res, err := p.Process(context.Background(), tai.Signal[int]{ID: "1", Kind: "k"})
	require.NoError(t, err)
	assert.Equal(t, 3, res.Value)

	// Every attempt fails: Failed, with the last error.
	calls = 1
	p2, err := tai.New(allowAll, tai.ActionFunc[int, int](func(context.Context, tai.Signal[int]) (int, error) {
		return 0, errFlaky
	}), tai.WithGuards(r))
	require.NoError(t, err)
	res, err = p2.Process(context.Background(), tai.Signal[int]{ID: "2", Kind: "k"})
	assert.ErrorIs(t, err, errFlaky)
	assert.Equal(t, tai.Failed, res.Outcome)
}

// With the smallest Window NewHedge takes, the quantile is used for at
// least half of the calls, even when every latency falls in a bucket of
// its own and each halving empties them all.
func TestHedgeSmallestWindow(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const samples, window = 3, 6
		h, err := jidoka.NewHedge(jidoka.HedgeOptions{Quantile: 0.9, Samples: samples, Window: window})
		require.NoError(t, err)
		ctx := context.Background()
		used := 0
		const calls = 20 * window
		for i := range calls {
			// 1, 2, 4, ... 2^19 µs: a bucket each, never two in one.
			d := time.Duration(1<<(i%20)) * time.Microsecond
			require.NoError(t, h.Do(ctx, func(context.Context) error { time.Sleep(d); return nil }))
			if h.Delay() > 0 {
				used++
			}
		}
		assert.GreaterOrEqual(t, used, calls/2, "the quantile was used after %d of %d calls", used, calls)
	})
}

// The quantile follows the latencies callers see. A call that a hedge
// answered counts as slow as its caller found it (the time from Do to the
// answer), not as fast as the hedge alone: timed by the hedge, the slow
// calls vanished from the latencies, the quantile sank below them, and
// every slow call was hedged, 30% of the calls here where 0.8 allows 20%.
func TestHedgeQuantileKeepsTheHedgedCallsSlow(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h, err := jidoka.NewHedge(jidoka.HedgeOptions{Quantile: 0.8, Samples: 20, Window: 1000})
		require.NoError(t, err)
		ctx := context.Background()
		// The first call of a Do takes 1 ms seven times in ten, and 1 s,
		// 2 s or 3 s the other three, spread so that the 0.8 quantile of
		// every run of calls from the first is at least 1 s; a hedge
		// takes 1 ms.
		firsts := []time.Duration{1, 1000, 1, 1, 2000, 1, 1, 3000, 1, 1}
		hedged := 0
		const dos = 300
		for i := range dos {
			var calls atomic.Int32
			require.NoError(t, h.Do(ctx, func(ctx context.Context) error {
				d := time.Millisecond
				if calls.Add(1) == 1 {
					d = firsts[i%len(firsts)] * time.Millisecond
				}
				select {
				case <-ctx.Done():
					return ctx.Err()
				case <-time.After(d):
					return nil
				}
			}))
			if i >= dos/2 && calls.Load() > 1 {
				hedged++
			}
		}
		assert.GreaterOrEqual(t, h.Delay(), time.Second, "the 0.8 quantile of what callers saw is at least 1 s")
		assert.LessOrEqual(t, hedged, dos/2/5, "hedged %d of %d calls at 0.8", hedged, dos/2)
	})
}

// A first call that ends Do's goroutine with runtime.Goexit (t.FailNow in
// a test) leaves no call behind: the hedges started are cancelled and
// have returned by the time that goroutine ends, and none starts after.
func TestHedgeGoexitInTheFirstCallLeavesNoCallBehind(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h, err := jidoka.NewHedge(jidoka.HedgeOptions{Delay: time.Second, MaxHedges: 3})
		require.NoError(t, err)
		var calls, running atomic.Int32
		release := make(chan struct{})
		ended := make(chan struct{})
		go func() {
			defer close(ended)
			_ = h.Do(context.Background(), func(ctx context.Context) error {
				if calls.Add(1) == 1 {
					time.Sleep(1500 * time.Millisecond) // one hedge has started
					runtime.Goexit()
				}
				running.Add(1)
				defer running.Add(-1)
				select {
				case <-ctx.Done():
				case <-release:
				}
				return ctx.Err()
			})
		}()
		<-ended
		assert.Equal(t, int32(0), running.Load(), "a hedge still runs after Do's goroutine ended")
		close(release)
		time.Sleep(time.Minute)
		synctest.Wait()
		assert.Equal(t, int32(2), calls.Load(), "a hedge started after Do's goroutine ended")
	})
}

// A hedge that ends its goroutine with runtime.Goexit did not succeed,
// and is no panic: the first call's success is Do's result.
func TestHedgeGoexitInAHedgeIsNoSuccessAndNoPanic(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h, err := jidoka.NewHedge(jidoka.HedgeOptions{Delay: time.Second})
		require.NoError(t, err)
		var calls atomic.Int32
		assert.NotPanics(t, func() {
			err = h.Do(context.Background(), func(ctx context.Context) error {
				if calls.Add(1) == 2 {
					runtime.Goexit()
				}
				time.Sleep(2 * time.Second)
				return nil
			})
		})
		assert.NoError(t, err)
		assert.Equal(t, int32(2), calls.Load())
	})
}

// TestHedgeConcurrentCallsKeepTheirOwnTimes: calls of one Hedge that
// overlap, each slow by its own amount and started at its own time, are
// each hedged at their own delays — after Delay, 2*Delay and so on from
// their own start, while their first call runs, MaxHedges at most —
// however their waits interleave on the Hedge's lists.
func TestHedgeConcurrentCallsKeepTheirOwnTimes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const delay, maxHedges, calls = 100 * time.Millisecond, 3, 60
		h, err := jidoka.NewHedge(jidoka.HedgeOptions{Delay: delay, MaxHedges: maxHedges})
		require.NoError(t, err)
		starts := make([][]time.Duration, calls)
		var wg sync.WaitGroup
		for i := range calls {
			// Starts 7 ms apart; first calls taking 0.25 to 5.25 delays,
			// never a multiple of it, in an order of their own.
			took := delay/4 + time.Duration(i*37%11)*delay/2
			wg.Go(func() {
				time.Sleep(time.Duration(i) * 7 * time.Millisecond)
				begin := time.Now()
				var mu sync.Mutex
				err := h.Do(context.Background(), func(ctx context.Context) error {
					mu.Lock()
					n := len(starts[i])
					starts[i] = append(starts[i], time.Since(begin))
					mu.Unlock()
					if n == 0 {
						time.Sleep(took)
						return nil
					}
					<-ctx.Done()
					return ctx.Err()
				})
				assert.NoError(t, err)
			})
		}
		wg.Wait()
		for i := range calls {
			took := delay/4 + time.Duration(i*37%11)*delay/2
			want := []time.Duration{0}
			for k := 1; k <= maxHedges && time.Duration(k)*delay < took; k++ {
				want = append(want, time.Duration(k)*delay)
			}
			assert.Equal(t, want, starts[i], "call %d, its first call taking %v", i, took)
		}
	})
}
