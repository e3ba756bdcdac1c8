package jidoka_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/jidoka"
)

func okCheck(context.Context) error { return nil }

func TestNewWatchdogValidates(t *testing.T) {
	tests := []struct {
		cfg  jidoka.WatchdogConfig
		want string
	}{
		{jidoka.WatchdogConfig{}, "jidoka: watchdog Check is nil"},
		{jidoka.WatchdogConfig{Check: okCheck, Interval: -time.Second}, "jidoka: watchdog Interval must be 0 or at least 1ms, got -1s"},
		{jidoka.WatchdogConfig{Check: okCheck, Interval: time.Microsecond}, "jidoka: watchdog Interval must be 0 or at least 1ms, got 1µs"},
		{jidoka.WatchdogConfig{Check: okCheck, Timeout: -1}, "jidoka: watchdog Timeout must not be negative, got -1ns"},
		{jidoka.WatchdogConfig{Check: okCheck, LatencyLimit: -1}, "jidoka: watchdog LatencyLimit must not be negative, got -1ns"},
		{jidoka.WatchdogConfig{Check: okCheck, FailAfter: -2}, "jidoka: watchdog FailAfter must not be negative, got -2"},
		{jidoka.WatchdogConfig{Check: okCheck, RecoverAfter: -3}, "jidoka: watchdog RecoverAfter must not be negative, got -3"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			w, err := jidoka.NewWatchdog(tt.cfg)
			assert.Nil(t, w)
			require.EqualError(t, err, tt.want)
		})
	}
}

// watchdogRig runs a watchdog on a manual clock and hands out its check
// results one at a time.
type watchdogRig struct {
	t        *testing.T
	w        *jidoka.Watchdog
	clock    *manualClock
	results  chan jidoka.CheckResult
	fails    chan jidoka.WatchdogEvent
	recovers chan jidoka.WatchdogEvent
	interval time.Duration
}

func newWatchdogRig(t *testing.T, cfg jidoka.WatchdogConfig) *watchdogRig {
	clock, _ := cfg.Clock.(*manualClock)
	if clock == nil {
		clock = newManualClock()
	}
	r := &watchdogRig{
		t: t, clock: clock, interval: cfg.Interval,
		results:  make(chan jidoka.CheckResult),
		fails:    make(chan jidoka.WatchdogEvent, 10),
		recovers: make(chan jidoka.WatchdogEvent, 10),
	}
	cfg.Clock = r.clock
	cfg.OnCheck = func(res jidoka.CheckResult) { r.results <- res }
	cfg.OnFail = func(_ context.Context, ev jidoka.WatchdogEvent) { r.fails <- ev }
	cfg.OnRecover = func(_ context.Context, ev jidoka.WatchdogEvent) { r.recovers <- ev }
	w, err := jidoka.NewWatchdog(cfg)
	require.NoError(t, err)
	r.w = w
	require.NoError(t, w.Start(context.Background()))
	t.Cleanup(func() { require.NoError(t, w.Close()) })
	return r
}

// next waits for the interval timer, fires it and returns the check result.
func (r *watchdogRig) next() jidoka.CheckResult {
	r.clock.BlockUntil(1)
	r.clock.Advance(r.interval)
	return <-r.results
}

func TestWatchdogFailsAndRecovers(t *testing.T) {
	health := []error{nil, errBoom, errBoom, nil, errBoom, errBoom, errBoom, errBoom, nil, nil, errBoom, nil, nil}
	i := 0
	r := newWatchdogRig(t, jidoka.WatchdogConfig{
		Name: "api/eu", Interval: 10 * time.Second, FailAfter: 3, RecoverAfter: 2,
		Check: func(context.Context) error { err := health[i]; i++; return err },
	})
	wantHealthy := []bool{true, true, true, true, true, true, false, false, false, true, true, true, true}
	var res jidoka.CheckResult
	for n := range health {
		if n == 0 {
			res = <-r.results // the first check runs at Start
		} else {
			res = r.next()
		}
		assert.Equal(t, "api/eu", res.Watchdog)
		assert.Equal(t, health[n], res.Err, "check %d", n)
		assert.Equal(t, wantHealthy[n], res.Healthy, "check %d", n)
		assert.Equal(t, wantHealthy[n], r.w.Healthy(), "check %d", n)
		switch n {
		case 6:
			ev := <-r.fails
			assert.False(t, ev.Healthy)
			assert.Equal(t, 3, ev.Checks)
			assert.ErrorIs(t, ev.Err, errBoom)
			assert.Equal(t, r.clock.Now(), ev.Time)
		case 9:
			ev := <-r.recovers
			assert.True(t, ev.Healthy)
			assert.Equal(t, 2, ev.Checks)
		}
	}
	assert.Empty(t, r.fails, "OnFail once per failure spell")
	assert.Empty(t, r.recovers, "OnRecover once per recovery")
	s := r.w.Status()
	assert.True(t, s.Healthy)
	assert.Equal(t, len(health), s.Checks)
	assert.Equal(t, 2, s.ConsecutiveSuccesses)
	assert.ErrorIs(t, s.LastErr, errBoom)
}

func TestWatchdogLatencyAndTimeout(t *testing.T) {
	clock := newManualClock()
	started := make(chan struct{}, 1)
	mode := "slow"
	r := newWatchdogRig(t, jidoka.WatchdogConfig{
		Interval: 10 * time.Second, Timeout: 5 * time.Second, LatencyLimit: 2 * time.Second,
		FailAfter: 2, RecoverAfter: 1, Clock: clock,
		Check: func(ctx context.Context) error {
			switch mode {
			case "slow": // answers, but too late
				clock.Advance(3 * time.Second)
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

	mode = "hang"
	r.clock.BlockUntil(1)
	r.clock.Advance(r.interval)
	<-started
	r.clock.BlockUntil(1) // the timeout timer of the hanging check
	r.clock.Advance(5 * time.Second)
	res = <-r.results
	require.ErrorIs(t, res.Err, context.Canceled)
	assert.Contains(t, res.Err.Error(), "jidoka: check timed out after 5s")
	ev := <-r.fails
	assert.False(t, ev.Healthy)

	mode = "ok"
	res = r.next()
	require.NoError(t, res.Err)
	assert.True(t, (<-r.recovers).Healthy)

	mode = "panic"
	res = r.next()
	require.Error(t, res.Err)
	assert.Equal(t, "jidoka: watchdog check panicked: probe bug", res.Err.Error())
}

func TestWatchdogLifecycle(t *testing.T) {
	w, err := jidoka.NewWatchdog(jidoka.WatchdogConfig{Check: okCheck, Clock: newManualClock()})
	require.NoError(t, err)
	assert.True(t, w.Healthy())
	require.NoError(t, w.Close(), "Close before Start")
	require.ErrorIs(t, w.Start(context.Background()), jidoka.ErrWatchdogStarted)

	// Stopped by its context.
	checked := make(chan struct{}, 1)
	w, err = jidoka.NewWatchdog(jidoka.WatchdogConfig{Check: okCheck, Clock: newManualClock(),
		OnCheck: func(jidoka.CheckResult) { checked <- struct{}{} }})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	require.NoError(t, w.Start(ctx))
	require.ErrorIs(t, w.Start(ctx), jidoka.ErrWatchdogStarted)
	<-checked
	cancel()
	require.NoError(t, w.Close())
	require.NoError(t, w.Close(), "Close twice")

	// Close cancels a check in progress and does not count its failure.
	inCheck := make(chan struct{})
	w, err = jidoka.NewWatchdog(jidoka.WatchdogConfig{Clock: newManualClock(), FailAfter: 1,
		Check:  func(ctx context.Context) error { close(inCheck); <-ctx.Done(); return ctx.Err() },
		OnFail: func(context.Context, jidoka.WatchdogEvent) { t.Error("OnFail called for a check stopped by Close") },
	})
	require.NoError(t, err)
	require.NoError(t, w.Start(context.Background()))
	<-inCheck
	require.NoError(t, w.Close())
	assert.True(t, w.Healthy())
	assert.Zero(t, w.Status().Checks)
}

func TestWatchdogSystemClock(t *testing.T) {
	// The default clock: a watchdog that fails at once stops and reports
	// through OnFail; no timing is asserted.
	failed := make(chan jidoka.WatchdogEvent, 1)
	w, err := jidoka.NewWatchdog(jidoka.WatchdogConfig{
		Interval: time.Millisecond, FailAfter: 2,
		Check:  func(context.Context) error { return errors.New("down") },
		OnFail: func(_ context.Context, ev jidoka.WatchdogEvent) { failed <- ev },
	})
	require.NoError(t, err)
	require.NoError(t, w.Start(context.Background()))
	ev := <-failed
	require.NoError(t, w.Close())
	assert.Equal(t, 2, ev.Checks)
	assert.EqualError(t, ev.Err, "down")
}
