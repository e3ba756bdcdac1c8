package jidoka_test

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"runtime"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/jidoka"
)

func okCheck(context.Context) error { return nil }

func TestNewWatchdogValidates(t *testing.T) {
	tests := []struct {
		opts jidoka.WatchdogOptions
		want string
	}{
		{jidoka.WatchdogOptions{}, "jidoka: watchdog Check is nil"},
		{jidoka.WatchdogOptions{Check: okCheck, Interval: -time.Second}, "jidoka: watchdog Interval must be 0 or at least 1ms, got -1s"},
		{jidoka.WatchdogOptions{Check: okCheck, Interval: time.Microsecond}, "jidoka: watchdog Interval must be 0 or at least 1ms, got 1µs"},
		{jidoka.WatchdogOptions{Check: okCheck, Timeout: -1}, "jidoka: watchdog Timeout must not be negative, got -1ns"},
		{jidoka.WatchdogOptions{Check: okCheck, LatencyLimit: -1}, "jidoka: watchdog LatencyLimit must not be negative, got -1ns"},
		{jidoka.WatchdogOptions{Check: okCheck, FailAfter: -2}, "jidoka: watchdog FailAfter must not be negative, got -2"},
		{jidoka.WatchdogOptions{Check: okCheck, RecoverAfter: -3}, "jidoka: watchdog RecoverAfter must not be negative, got -3"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			w, err := jidoka.NewWatchdog(tt.opts)
			assert.Nil(t, w)
			require.EqualError(t, err, tt.want)
		})
	}
	w, err := jidoka.NewWatchdog(jidoka.WatchdogOptions{Check: okCheck, Interval: jidoka.MinWatchdogInterval})
	require.NoError(t, err, "the minimum interval is allowed")
	assert.NotNil(t, w)
}

// watchdogRig runs a started watchdog in a synctest bubble and hands out
// its check results one at a time. The bubble's clock moves whenever the
// test waits for the next result.
type watchdogRig struct {
	w        *jidoka.Watchdog
	results  chan jidoka.CheckResult
	fails    chan jidoka.WatchdogEvent
	recovers chan jidoka.WatchdogEvent
}

func newWatchdogRig(t *testing.T, opts jidoka.WatchdogOptions) *watchdogRig {
	t.Helper()
	r := &watchdogRig{
		results:  make(chan jidoka.CheckResult, 100),
		fails:    make(chan jidoka.WatchdogEvent, 10),
		recovers: make(chan jidoka.WatchdogEvent, 10),
	}
	opts.OnCheck = func(res jidoka.CheckResult) { r.results <- res }
	opts.OnFail = func(_ context.Context, ev jidoka.WatchdogEvent) { r.fails <- ev }
	opts.OnRecover = func(_ context.Context, ev jidoka.WatchdogEvent) { r.recovers <- ev }
	w, err := jidoka.NewWatchdog(opts)
	require.NoError(t, err)
	r.w = w
	require.NoError(t, w.Start(context.Background()))
	t.Cleanup(func() { require.NoError(t, w.Shutdown(context.Background())) })
	return r
}

func TestWatchdogFailsAndRecovers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		health := []error{nil, errBoom, errBoom, nil, errBoom, errBoom, errBoom, errBoom, nil, nil, errBoom, nil, nil}
		i := 0
		start := time.Now()
		r := newWatchdogRig(t, jidoka.WatchdogOptions{
			Name: "api/eu", Interval: 10 * time.Second, FailAfter: 3, RecoverAfter: 2,
			Check: func(context.Context) error { err := health[i]; i++; return err },
		})
		wantHealthy := []bool{true, true, true, true, true, true, false, false, false, true, true, true, true}
		for n := range health {
			res := <-r.results
			assert.Equal(t, "api/eu", res.Watchdog)
			assert.Equal(t, start.Add(time.Duration(n)*10*time.Second), res.Time, "check %d: the first at Start, then one every Interval", n)
			assert.Equal(t, health[n], res.Err, "check %d", n)
			assert.Equal(t, wantHealthy[n], res.Healthy, "check %d", n)
			assert.Equal(t, wantHealthy[n], r.w.Healthy(), "check %d", n)
			switch n {
			case 6:
				ev := <-r.fails
				assert.Equal(t, "api/eu", ev.Watchdog)
				assert.False(t, ev.Healthy)
				assert.Equal(t, 3, ev.Checks)
				assert.ErrorIs(t, ev.Err, errBoom)
				assert.Equal(t, res.Time, ev.Time)
			case 9:
				ev := <-r.recovers
				assert.True(t, ev.Healthy)
				assert.Equal(t, 2, ev.Checks)
				assert.ErrorIs(t, ev.Err, errBoom, "the failure recovered from")
			}
		}
		assert.Empty(t, r.fails, "OnFail once per failure spell")
		assert.Empty(t, r.recovers, "OnRecover once per recovery")
		s := r.w.Status()
		assert.True(t, s.Healthy)
		assert.Equal(t, len(health), s.Checks)
		assert.Equal(t, 2, s.ConsecutiveSuccesses)
		assert.Zero(t, s.ConsecutiveFailures)
		assert.ErrorIs(t, s.LastErr, errBoom)
		assert.Equal(t, start.Add(time.Duration(len(health)-1)*10*time.Second), s.LastCheck)
	})
}

func TestWatchdogDefaults(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		var checks []time.Time
		r := newWatchdogRig(t, jidoka.WatchdogOptions{Check: func(ctx context.Context) error {
			checks = append(checks, time.Now())
			if len(checks) == 4 { // hangs: the timeout is the interval
				<-ctx.Done()
				return ctx.Err()
			}
			return errBoom
		}})
		for range 3 {
			<-r.results
		}
		ev := <-r.fails
		assert.Equal(t, jidoka.DefaultFailAfter, ev.Checks)
		res := <-r.results
		assert.Equal(t, "jidoka: check timed out after 10s: context deadline exceeded", res.Err.Error())
		assert.Equal(t, jidoka.DefaultWatchdogInterval, res.Latency)
		assert.Equal(t, []time.Time{start, start.Add(10 * time.Second), start.Add(20 * time.Second), start.Add(30 * time.Second)}, checks)
	})
}

// The interval runs from the end of a check to the start of the next.
func TestWatchdogIntervalFollowsTheCheck(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		var began []time.Duration
		r := newWatchdogRig(t, jidoka.WatchdogOptions{Interval: 10 * time.Second, Check: func(context.Context) error {
			began = append(began, time.Since(start))
			time.Sleep(3 * time.Second)
			return nil
		}})
		for range 3 {
			res := <-r.results
			require.NoError(t, res.Err, "no LatencyLimit: a slow answer passes")
			assert.Equal(t, 3*time.Second, res.Latency)
		}
		assert.Equal(t, []time.Duration{0, 13 * time.Second, 26 * time.Second}, began)
		assert.Equal(t, 3*time.Second, r.w.Status().LastLatency)
	})
}

func TestWatchdogLatencyAndTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		started := make(chan struct{}, 1)
		var mode atomic.Value // written by the test, read by the check
		mode.Store("slow")
		r := newWatchdogRig(t, jidoka.WatchdogOptions{
			Interval: 10 * time.Second, Timeout: 5 * time.Second, LatencyLimit: 2 * time.Second,
			FailAfter: 2, RecoverAfter: 1,
			Check: func(ctx context.Context) error {
				switch mode.Load() {
				case "slow": // answers, but too late
					time.Sleep(3 * time.Second)
				case "limit": // answers exactly at the limit: not too late
					time.Sleep(2 * time.Second)
				case "hang": // answers only when given up on
					started <- struct{}{}
					<-ctx.Done()
					return ctx.Err()
				case "panic":
					panic("probe bug")
				}
				return nil
			},
		})

		res := <-r.results
		require.ErrorIs(t, res.Err, jidoka.ErrSlowCheck)
		assert.Equal(t, "jidoka: health check too slow: took 3s, limit 2s", res.Err.Error())
		assert.Equal(t, 3*time.Second, res.Latency)

		mode.Store("hang")
		res = <-r.results
		<-started
		require.ErrorIs(t, res.Err, context.DeadlineExceeded)
		assert.Equal(t, "jidoka: check timed out after 5s: context deadline exceeded", res.Err.Error())
		assert.Equal(t, 5*time.Second, res.Latency)
		ev := <-r.fails
		assert.False(t, ev.Healthy)

		mode.Store("limit")
		res = <-r.results
		require.NoError(t, res.Err)
		assert.True(t, (<-r.recovers).Healthy)

		mode.Store("panic")
		res = <-r.results
		var pe *jidoka.PanicError
		require.ErrorAs(t, res.Err, &pe)
		assert.Equal(t, "jidoka: panic in watchdog Check: probe bug", res.Err.Error())
		assert.Equal(t, "watchdog Check", pe.Where)
		assert.Equal(t, "probe bug", pe.Value)
		assert.Contains(t, string(pe.Stack), "TestWatchdogLatencyAndTimeout", "the stack where the check panicked")
	})
}

// A check's own error stays as it is when the check ends within Timeout,
// slow or not.
func TestWatchdogCheckErrorIsKept(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newWatchdogRig(t, jidoka.WatchdogOptions{Interval: time.Minute, Timeout: 5 * time.Second, LatencyLimit: 2 * time.Second,
			Check: func(context.Context) error { time.Sleep(3 * time.Second); return errBoom }})
		res := <-r.results
		assert.Same(t, errBoom, res.Err)
	})
}

// A check that ignores its context and answers nil after Timeout fails.
func TestWatchdogLateAnswerFails(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newWatchdogRig(t, jidoka.WatchdogOptions{Interval: time.Minute, Timeout: 5 * time.Second, FailAfter: 1,
			Check: func(context.Context) error { time.Sleep(6 * time.Second); return nil }})
		res := <-r.results
		require.ErrorIs(t, res.Err, context.DeadlineExceeded)
		assert.Equal(t, "jidoka: check timed out after 5s: context deadline exceeded", res.Err.Error())
		assert.False(t, (<-r.fails).Healthy)
	})
}

// A check still running when its Timeout ends has outlived it, whether or
// not the context's timer has run by the time it returns: it fails, as a
// check does that fails on a connection given the check's deadline.
func TestWatchdogAnswerAtTheTimeoutFails(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newWatchdogRig(t, jidoka.WatchdogOptions{Interval: time.Minute, Timeout: 5 * time.Second,
			Check: func(ctx context.Context) error { time.Sleep(5 * time.Second); return nil }})
		for range 50 {
			res := <-r.results
			require.ErrorIs(t, res.Err, context.DeadlineExceeded)
			assert.Equal(t, "jidoka: check timed out after 5s: context deadline exceeded", res.Err.Error())
		}
	})
	synctest.Test(t, func(t *testing.T) {
		r := newWatchdogRig(t, jidoka.WatchdogOptions{Interval: time.Minute, Timeout: 5 * time.Second,
			Check: func(ctx context.Context) error { return readUntilDeadline(t, ctx) }})
		for range 50 {
			res := <-r.results
			require.ErrorIs(t, res.Err, os.ErrDeadlineExceeded)
			assert.Equal(t, "jidoka: check timed out after 5s: read pipe: i/o timeout", res.Err.Error())
		}
	})
}

// A check that panics with an error fails with a *PanicError that wraps
// it; a panicking callback with no Logger is logged on slog.Default().
func TestWatchdogPanicValues(t *testing.T) {
	logs := &logRecorder{}
	defer slog.SetDefault(slog.Default())
	slog.SetDefault(logs.logger())
	synctest.Test(t, func(t *testing.T) {
		errDown := errors.New("down")
		results := make(chan jidoka.CheckResult, 1)
		w, err := jidoka.NewWatchdog(jidoka.WatchdogOptions{Name: "eu", Interval: time.Minute,
			Check:   func(context.Context) error { panic(errDown) },
			OnCheck: func(r jidoka.CheckResult) { results <- r; panic("metrics bug") },
		})
		require.NoError(t, err)
		require.NoError(t, w.Start(context.Background()))
		res := <-results
		require.NoError(t, w.Shutdown(context.Background()))
		require.ErrorIs(t, res.Err, errDown)
		var pe *jidoka.PanicError
		require.ErrorAs(t, res.Err, &pe)
		assert.Equal(t, errDown, pe.Value)
	})
	recs := logs.records()
	require.Len(t, recs, 1)
	assert.Equal(t, "watchdog OnCheck", recs[0].attrs["where"])
	assert.Equal(t, "eu", recs[0].attrs["watchdog"])
}

// TestWatchdogCallbackPanics: a panicking OnFail, OnRecover or OnCheck is
// logged with its stack and the watchdog keeps checking.
func TestWatchdogCallbackPanics(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		logs, w, checks := failThenRecover(t, jidoka.WatchdogOptions{
			OnFail:    func(context.Context, jidoka.WatchdogEvent) { panic("rollback bug") },
			OnRecover: func(context.Context, jidoka.WatchdogEvent) { panic(errors.New("recover bug")) },
			OnCheck:   func(jidoka.CheckResult) { panic("metrics bug") },
		})
		assert.Equal(t, int32(2), checks)
		assert.Equal(t, 2, w.Status().Checks)

		recs := logs.records()
		require.Len(t, recs, 4)
		for i, want := range []struct{ where, panic string }{
			{"watchdog OnFail", "rollback bug"},
			{"watchdog OnCheck", "metrics bug"},
			{"watchdog OnRecover", "recover bug"},
			{"watchdog OnCheck", "metrics bug"},
		} {
			assert.Equal(t, slog.LevelError, recs[i].Level)
			assert.Equal(t, "eu", recs[i].attrs["watchdog"])
			assert.Equal(t, want.where, recs[i].attrs["where"])
			assert.Equal(t, want.panic, recs[i].attrs["panic"])
			assert.Contains(t, recs[i].attrs["stack"], "TestWatchdogCallbackPanics")
		}
	})
}

// TestWatchdogCallbackGoexit: an OnFail, OnRecover or OnCheck that ends
// its goroutine with runtime.Goexit (t.FailNow in a test) is logged with
// its stack, as a panic is, and the watchdog keeps checking; the OnCheck
// of a check whose OnFail ended its goroutine is still called.
func TestWatchdogCallbackGoexit(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var reported atomic.Int32
		logs, _, checks := failThenRecover(t, jidoka.WatchdogOptions{
			OnFail:    func(context.Context, jidoka.WatchdogEvent) { runtime.Goexit() },
			OnRecover: func(context.Context, jidoka.WatchdogEvent) { runtime.Goexit() },
			OnCheck: func(jidoka.CheckResult) {
				reported.Add(1)
				runtime.Goexit()
			},
		})
		assert.Equal(t, int32(2), checks)
		assert.Equal(t, int32(2), reported.Load(), "OnCheck was called after every check")

		recs := logs.records()
		var wheres []string
		for _, rec := range recs {
			assert.Equal(t, slog.LevelError, rec.Level)
			assert.Equal(t, "jidoka: a callback called runtime.Goexit", rec.Msg)
			assert.Equal(t, "eu", rec.attrs["watchdog"])
			assert.Contains(t, rec.attrs["stack"], "TestWatchdogCallbackGoexit")
			wheres = append(wheres, rec.attrs["where"])
		}
		assert.Equal(t, []string{"watchdog OnFail", "watchdog OnCheck", "watchdog OnRecover", "watchdog OnCheck"}, wheres)
	})
}

func TestWatchdogLifecycle(t *testing.T) {
	ctx := context.Background()
	t.Run("shut down before Start", func(t *testing.T) {
		w, err := jidoka.NewWatchdog(jidoka.WatchdogOptions{Check: okCheck})
		require.NoError(t, err)
		assert.True(t, w.Healthy())
		require.NoError(t, w.Shutdown(ctx))
		require.ErrorIs(t, w.Start(ctx), jidoka.ErrWatchdogStarted)
		require.NoError(t, w.Shutdown(ctx))
	})
	t.Run("the zero Watchdog does not start", func(t *testing.T) {
		// Started, it would check nothing in a loop without pause, and
		// its goroutine would crash the program as it ended.
		var w jidoka.Watchdog
		err := w.Start(ctx)
		require.EqualError(t, err, "jidoka: the Watchdog was not made by NewWatchdog; it cannot start")
		require.NotErrorIs(t, err, jidoka.ErrWatchdogStarted)
		require.NoError(t, w.Shutdown(ctx), "nothing to stop")
		require.Error(t, w.Start(ctx), "nor after Shutdown")
	})
	t.Run("stopped by its context", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			checks := 0
			w, err := jidoka.NewWatchdog(jidoka.WatchdogOptions{Check: okCheck, Interval: time.Second,
				OnCheck: func(jidoka.CheckResult) { checks++ }})
			require.NoError(t, err)
			runCtx, cancel := context.WithCancel(ctx)
			require.NoError(t, w.Start(runCtx))
			require.ErrorIs(t, w.Start(runCtx), jidoka.ErrWatchdogStarted)
			time.Sleep(2500 * time.Millisecond)
			cancel()
			synctest.Wait() // the goroutine has ended on its own
			time.Sleep(time.Hour)
			assert.Equal(t, 3, checks, "checks at 0, 1 s and 2 s, none after the context ended")
			require.NoError(t, w.Shutdown(ctx))
			require.NoError(t, w.Shutdown(ctx), "Shutdown twice")
			require.ErrorIs(t, w.Start(ctx), jidoka.ErrWatchdogStarted)
		})
	})
	t.Run("Shutdown cancels a check in progress and does not count it", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			w, err := jidoka.NewWatchdog(jidoka.WatchdogOptions{FailAfter: 1,
				Check:  func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() },
				OnFail: func(context.Context, jidoka.WatchdogEvent) { t.Error("OnFail called for a check stopped by Shutdown") },
			})
			require.NoError(t, err)
			require.NoError(t, w.Start(ctx))
			synctest.Wait()
			require.NoError(t, w.Shutdown(ctx))
			assert.True(t, w.Healthy())
			assert.Zero(t, w.Status().Checks)
		})
	})
	t.Run("Shutdown returns when its context ends", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			unblock := make(chan struct{})
			w, err := jidoka.NewWatchdog(jidoka.WatchdogOptions{FailAfter: 1,
				Check:  func(context.Context) error { return errBoom },
				OnFail: func(context.Context, jidoka.WatchdogEvent) { <-unblock }, // ignores its context
			})
			require.NoError(t, err)
			require.NoError(t, w.Start(ctx))
			synctest.Wait()
			sctx, cancel := context.WithTimeout(ctx, time.Second)
			defer cancel()
			start := time.Now()
			require.ErrorIs(t, w.Shutdown(sctx), context.DeadlineExceeded)
			assert.Equal(t, time.Second, time.Since(start), "Shutdown waited until its context ended")
			close(unblock)
			require.NoError(t, w.Shutdown(ctx), "the goroutine ends on its own; a later Shutdown sees it")
			assert.Equal(t, 1, w.Status().Checks)
		})
	})
}

// A check that ignores its context and never returns fails when the next
// check is due, and again every Interval while it hangs: the watchdog turns
// unhealthy and calls OnFail, with no second check started beside it. Once
// it returns, checks go on as before.
func TestWatchdogHungCheckFails(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		release := make(chan struct{})
		var calls atomic.Int32
		start := time.Now()
		r := newWatchdogRig(t, jidoka.WatchdogOptions{Name: "db", Interval: 10 * time.Second, Timeout: 5 * time.Second,
			FailAfter: 2, RecoverAfter: 1,
			Check: func(context.Context) error {
				if calls.Add(1) == 1 {
					<-release // ignores its context
				}
				return nil
			}})
		for n := 1; n <= 3; n++ {
			res := <-r.results
			require.ErrorIs(t, res.Err, context.DeadlineExceeded, "report %d", n)
			assert.Equal(t, "jidoka: check timed out after 5s: context deadline exceeded", res.Err.Error())
			assert.Equal(t, time.Duration(5+10*n)*time.Second, res.Latency, "report %d: when the next check was due", n)
			assert.Equal(t, start.Add(res.Latency), res.Time)
			if n == 2 {
				ev := <-r.fails
				assert.False(t, ev.Healthy)
				assert.Equal(t, 2, ev.Checks)
			}
		}
		assert.False(t, r.w.Healthy())
		assert.Equal(t, int32(1), calls.Load(), "no check started while the first hangs")
		close(release)
		res := <-r.results
		require.NoError(t, res.Err)
		assert.Equal(t, int32(2), calls.Load())
		assert.True(t, (<-r.recovers).Healthy)
	})
}

// Once the watchdog's goroutine has ended, Shutdown returns nil whatever
// its context, as documented: even one already cancelled.
func TestWatchdogShutdownAfterTheEndWithAnEndedContext(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ended, cancel := context.WithCancel(context.Background())
		cancel()
		for range 50 {
			w, err := jidoka.NewWatchdog(jidoka.WatchdogOptions{Check: okCheck})
			require.NoError(t, err)
			require.NoError(t, w.Start(context.Background()))
			require.NoError(t, w.Shutdown(context.Background()))
			require.NoError(t, w.Shutdown(ended), "the goroutine has ended")
		}
	})
}

// Shutdown called from OnFail with the context it was given returns at
// once, and the watchdog ends after OnFail returns.
func TestWatchdogShutdownFromOnFail(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var w *jidoka.Watchdog
		got := make(chan error, 1)
		w, err := jidoka.NewWatchdog(jidoka.WatchdogOptions{FailAfter: 1, Interval: time.Second,
			Check:  func(context.Context) error { return errBoom },
			OnFail: func(ctx context.Context, _ jidoka.WatchdogEvent) { got <- w.Shutdown(ctx) }})
		require.NoError(t, err)
		require.NoError(t, w.Start(context.Background()))
		require.ErrorIs(t, <-got, context.Canceled)
		require.NoError(t, w.Shutdown(context.Background()))
		assert.Equal(t, 1, w.Status().Checks)
	})
}

// A check that ends its goroutine with runtime.Goexit (t.FailNow in a test
// helper does) fails, and the watchdog goes on checking.
func TestWatchdogCheckGoexitFails(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newWatchdogRig(t, jidoka.WatchdogOptions{Interval: time.Second, FailAfter: 2,
			Check: func(context.Context) error { runtime.Goexit(); return nil }})
		for range 2 {
			res := <-r.results
			require.Error(t, res.Err)
			assert.Equal(t, "jidoka: watchdog Check called runtime.Goexit", res.Err.Error())
		}
		assert.False(t, (<-r.fails).Healthy)
	})
}

// A check that Shutdown stopped is not counted, whatever it returns: one
// that answers nil once its context is cancelled (a probe that treats a
// cancelled request as "no error seen") neither counts as a pass nor
// turns an unhealthy watchdog healthy, and no callback hears of it.
func TestWatchdogCheckStoppedByShutdownIsNotCounted(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var calls atomic.Int32
		var recovered, reported atomic.Int32
		w, err := jidoka.NewWatchdog(jidoka.WatchdogOptions{Interval: time.Second, FailAfter: 1, RecoverAfter: 1,
			Check: func(ctx context.Context) error {
				if calls.Add(1) == 1 {
					return errBoom
				}
				<-ctx.Done()
				return nil
			},
			OnRecover: func(context.Context, jidoka.WatchdogEvent) { recovered.Add(1) },
			OnCheck:   func(jidoka.CheckResult) { reported.Add(1) },
		})
		require.NoError(t, err)
		require.NoError(t, w.Start(context.Background()))
		time.Sleep(1500 * time.Millisecond) // the first check failed; the second waits
		synctest.Wait()
		require.False(t, w.Healthy())
		require.Equal(t, int32(2), calls.Load())
		require.NoError(t, w.Shutdown(context.Background()))
		assert.False(t, w.Healthy(), "a check stopped by Shutdown made the watchdog healthy")
		assert.Equal(t, 1, w.Status().Checks, "a check stopped by Shutdown was counted")
		assert.Zero(t, recovered.Load(), "OnRecover called for a check stopped by Shutdown")
		assert.Equal(t, int32(1), reported.Load(), "OnCheck called for a check stopped by Shutdown")
	})
}

// failThenRecover runs, in a synctest bubble, a watchdog with the
// callbacks of opts whose first check fails and second passes: it turns
// unhealthy, keeps checking and turns healthy again, then is shut down.
// It returns what the watchdog logged, the watchdog and the checks made.
func failThenRecover(t *testing.T, opts jidoka.WatchdogOptions) (*logRecorder, *jidoka.Watchdog, int32) {
	t.Helper()
	logs := &logRecorder{}
	var healthy atomic.Bool // written by the test, read by the check
	var checks atomic.Int32
	opts.Name, opts.Interval, opts.FailAfter, opts.RecoverAfter, opts.Logger = "eu", time.Second, 1, 1, logs.logger()
	opts.Check = func(context.Context) error {
		checks.Add(1)
		if healthy.Load() {
			return nil
		}
		return errBoom
	}
	w, err := jidoka.NewWatchdog(opts)
	require.NoError(t, err)
	require.NoError(t, w.Start(context.Background()))
	synctest.Wait()
	assert.False(t, w.Healthy())
	healthy.Store(true)
	time.Sleep(time.Second)
	synctest.Wait()
	assert.True(t, w.Healthy(), "the watchdog kept checking")
	require.NoError(t, w.Shutdown(context.Background()))
	return logs, w, checks.Load()
}

// A watchdog started with a context that has ended already runs no check.
func TestWatchdogStartedWithAnEndedContextChecksNothing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ended, cancel := context.WithCancel(context.Background())
		cancel()
		var calls atomic.Int32
		w, err := jidoka.NewWatchdog(jidoka.WatchdogOptions{Interval: time.Second,
			Check: func(context.Context) error { calls.Add(1); return nil }})
		require.NoError(t, err)
		require.NoError(t, w.Start(ended))
		synctest.Wait()
		require.NoError(t, w.Shutdown(context.Background()))
		assert.Zero(t, calls.Load(), "a check ran on an ended context")
		assert.Zero(t, w.Status().Checks)
	})
}
