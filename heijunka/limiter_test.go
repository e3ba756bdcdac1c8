package heijunka_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"pgregory.net/rapid"

	"github.com/taipattern/taikit/heijunka"
	"github.com/taipattern/taikit/tai"
)

var t0 = time.Unix(1_900_000_000, 0)

func newLimiter(t testing.TB, l heijunka.Limit) *heijunka.Limiter {
	t.Helper()
	lim, err := heijunka.NewLimiter(l, heijunka.LimiterOptions{Name: "test"})
	require.NoError(t, err)
	return lim
}

func TestLimiterStartsFullAndRefills(t *testing.T) {
	lim := newLimiter(t, heijunka.Limit{Rate: 10, Burst: 3})
	for i := range 3 {
		assert.True(t, lim.AllowN(t0, 1), "event %d of the burst", i)
	}
	assert.False(t, lim.AllowN(t0, 1))
	assert.False(t, lim.AllowN(t0.Add(99*time.Millisecond), 1))
	assert.True(t, lim.AllowN(t0.Add(100*time.Millisecond), 1))
	assert.True(t, lim.AllowN(t0.Add(time.Hour), 3), "full after a quiet hour")
	assert.False(t, lim.AllowN(t0.Add(time.Hour), 1), "and not fuller")
}

func TestLimiterDecisions(t *testing.T) {
	lim := newLimiter(t, heijunka.Limit{Rate: 10, Burst: 3})
	d := lim.DecideN(t0, 2)
	assert.Equal(t, heijunka.Decision{Allowed: true, Limit: lim.Limit(), Remaining: 1, ResetAfter: 200 * time.Millisecond}, d)
	d = lim.DecideN(t0, 2)
	assert.Equal(t, heijunka.Decision{Limit: lim.Limit(), Remaining: 1, RetryAfter: 100 * time.Millisecond, ResetAfter: 200 * time.Millisecond}, d)
	d = lim.DecideN(t0, 4)
	assert.False(t, d.Allowed)
	assert.Equal(t, heijunka.InfDuration, d.RetryAfter, "more than the burst never passes")
	d = lim.DecideN(t0, -1)
	assert.Equal(t, heijunka.Decision{Limit: lim.Limit(), RetryAfter: heijunka.InfDuration}, d, "negative events never pass")
	d = lim.DecideN(t0, 0)
	assert.True(t, d.Allowed)
	assert.Equal(t, 1, d.Remaining)
}

func TestLimiterSpecialLimits(t *testing.T) {
	for _, tc := range []struct {
		name  string
		limit heijunka.Limit
		allow bool
	}{
		{"unlimited", heijunka.Unlimited(), true},
		{"closed", heijunka.Limit{}, false},
		{"closed with a burst", heijunka.Limit{Burst: 10}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lim := newLimiter(t, tc.limit)
			for range 100 {
				require.Equal(t, tc.allow, lim.AllowN(t0, 1000))
			}
			r := lim.ReserveN(t0, 5)
			assert.Equal(t, tc.allow, r.OK())
			assert.Equal(t, tc.allow, lim.DecideN(t0, 1).Allowed)
			assert.True(t, lim.AllowN(t0, 0), "zero events always pass")
			assert.False(t, lim.AllowN(t0, -1), "negative events never do")
		})
	}
	var zero heijunka.Limiter
	assert.False(t, zero.Allow(), "the zero Limiter admits nothing")
	assert.False(t, zero.AllowN(t0, 0))
	assert.False(t, zero.Reserve().OK())
	assert.Equal(t, heijunka.Decision{RetryAfter: heijunka.InfDuration}, zero.Decide())
	assert.Equal(t, heijunka.Limit{}, zero.Limit())
	assert.ErrorIs(t, zero.Wait(context.Background()), heijunka.ErrLimited)
	assert.ErrorContains(t, zero.SetLimit(heijunka.PerSecond(1)), "not made by NewLimiter")
	assert.ErrorContains(t, zero.SetLimitAt(t0, heijunka.PerSecond(1)), "not made by NewLimiter")
	assert.False(t, zero.Allow(), "and stays so")
}

func TestLimiterReserve(t *testing.T) {
	lim := newLimiter(t, heijunka.Limit{Rate: 10, Burst: 2})
	r1 := lim.ReserveN(t0, 2)
	require.True(t, r1.OK())
	assert.Equal(t, time.Duration(0), r1.DelayFrom(t0))
	r2 := lim.ReserveN(t0, 1)
	require.True(t, r2.OK())
	assert.Equal(t, 100*time.Millisecond, r2.DelayFrom(t0))
	r3 := lim.ReserveN(t0, 2)
	require.True(t, r3.OK())
	assert.Equal(t, 300*time.Millisecond, r3.DelayFrom(t0))
	assert.False(t, lim.ReserveN(t0, 3).OK(), "more than the burst")
	assert.Equal(t, heijunka.InfDuration, lim.ReserveN(t0, 3).DelayFrom(t0))

	r3.CancelAt(t0)
	r3.CancelAt(t0) // a second cancel does nothing
	r4 := lim.ReserveN(t0, 1)
	assert.Equal(t, 200*time.Millisecond, r4.DelayFrom(t0), "r3's events came back, once")

	// A reservation whose time has come is not returned by Cancel: r2
	// acts at t0+100ms.
	r2.CancelAt(t0.Add(100 * time.Millisecond))
	assert.Equal(t, 300*time.Millisecond, lim.ReserveN(t0, 1).DelayFrom(t0))
	assert.Equal(t, time.Duration(0), r2.DelayFrom(t0.Add(100*time.Millisecond)))
	assert.Equal(t, time.Duration(0), r2.DelayFrom(t0.Add(time.Second)))
}

// TestLimiterWaitNeverPasses: a WaitN that can never pass fails at once
// with a RetryAfter of InfDuration.
func TestLimiterWaitNeverPasses(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name  string
		limit heijunka.Limit
		n     int
	}{
		{"negative n", heijunka.PerSecond(10), -1},
		{"more than the burst", heijunka.PerSecond(10), 11},
		{"closed", heijunka.Limit{}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lim := newLimiter(t, tc.limit)
			err := lim.WaitN(ctx, tc.n)
			var le *heijunka.LimitedError
			require.ErrorAs(t, err, &le)
			assert.Equal(t, heijunka.Decision{Limit: tc.limit, RetryAfter: heijunka.InfDuration}, le.Decision)
		})
	}
	require.NoError(t, newLimiter(t, heijunka.Unlimited()).WaitN(ctx, 1000))
	require.NoError(t, newLimiter(t, heijunka.Limit{}).WaitN(ctx, 0))
}

// TestReservationCancelsOnce cancels one reservation through several
// holders of it, at once: its events come back once, not once per call.
func TestReservationCancelsOnce(t *testing.T) {
	lim := newLimiter(t, heijunka.Limit{Rate: 10, Burst: 2})
	require.True(t, lim.AllowN(t0, 2))
	r := lim.ReserveN(t0, 2) // acts at t0+200ms
	require.True(t, r.OK())
	require.Equal(t, 200*time.Millisecond, r.DelayFrom(t0))
	holders := []*heijunka.Reservation{r, r, r, r}
	var wg sync.WaitGroup
	for _, h := range holders {
		wg.Go(func() { h.CancelAt(t0) })
	}
	wg.Wait()
	r.CancelAt(t0)
	d := lim.DecideN(t0, 0)
	assert.Equal(t, 200*time.Millisecond, d.ResetAfter, "two events returned, not eight")
	assert.Equal(t, 0, d.Remaining)
	next := lim.ReserveN(t0, 1)
	assert.Equal(t, 100*time.Millisecond, next.DelayFrom(t0), "the next booking queues behind the burst only")

	var none *heijunka.Reservation
	assert.False(t, none.OK())
	assert.Equal(t, heijunka.InfDuration, none.DelayFrom(t0))
	none.Cancel() // does nothing
}

func TestLimiterWait(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		lim := newLimiter(t, heijunka.Limit{Rate: 10, Burst: 1})
		ctx := context.Background()
		start := time.Now()
		require.NoError(t, lim.Wait(ctx))
		assert.Equal(t, time.Duration(0), time.Since(start), "full: no wait")
		require.NoError(t, lim.Wait(ctx))
		require.NoError(t, lim.Wait(ctx))
		assert.Equal(t, 200*time.Millisecond, time.Since(start), "then one interval each")

		err := lim.WaitN(ctx, 2)
		require.ErrorIs(t, err, heijunka.ErrLimited, "more than the burst fails at once")
		assert.Equal(t, heijunka.InfDuration, tai.RetryAfter(err))

		dctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
		defer cancel()
		before := time.Now()
		err = lim.Wait(dctx)
		require.ErrorIs(t, err, heijunka.ErrLimited, "the wait would outlast the deadline")
		assert.Equal(t, 100*time.Millisecond, tai.RetryAfter(err))
		assert.Equal(t, before, time.Now(), "it fails at once")
		assert.True(t, lim.AllowN(time.Now().Add(100*time.Millisecond), 1), "and booked nothing")

		cctx, cancel2 := context.WithCancel(ctx)
		cancel2()
		assert.ErrorIs(t, lim.Wait(cctx), context.Canceled)

		// A wait cut short by its context returns its events.
		time.Sleep(time.Second)
		require.True(t, lim.Allow())
		cctx, cancel3 := context.WithCancel(ctx)
		go func() {
			time.Sleep(30 * time.Millisecond)
			cancel3()
		}()
		before = time.Now()
		require.ErrorIs(t, lim.Wait(cctx), context.Canceled)
		assert.Equal(t, 30*time.Millisecond, time.Since(before))
		time.Sleep(70 * time.Millisecond)
		assert.True(t, lim.Allow(), "the canceled wait gave its event back")
		assert.False(t, lim.Allow())
	})
}

func TestLimiterAdmitIsAGate(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		lim := newLimiter(t, heijunka.PerMinute(2))
		var g tai.Gate = lim
		require.NoError(t, g.Admit(context.Background(), "a"))
		require.NoError(t, g.Admit(context.Background(), "b"))
		err := g.Admit(context.Background(), "c")
		require.ErrorIs(t, err, heijunka.ErrLimited)
		var le *heijunka.LimitedError
		require.ErrorAs(t, err, &le)
		assert.Equal(t, "test", le.Name)
		assert.Equal(t, 30*time.Second, tai.RetryAfter(err))
		assert.Equal(t, `heijunka: "test" over limit 2/min burst 2; retry after 30s`, err.Error())
		time.Sleep(30 * time.Second)
		require.NoError(t, g.Admit(context.Background(), "d"))
	})
}

func TestLimiterSetLimitCarriesDebt(t *testing.T) {
	lim := newLimiter(t, heijunka.Limit{Rate: 1, Burst: 10})
	require.True(t, lim.AllowN(t0, 4)) // debt: 4 events
	require.NoError(t, lim.SetLimitAt(t0, heijunka.Limit{Rate: 100, Burst: 10}))
	d := lim.DecideN(t0, 0)
	assert.Equal(t, 6, d.Remaining, "the debt carries over in events")
	assert.Equal(t, 40*time.Millisecond, d.ResetAfter, "and refills at the new rate")

	require.NoError(t, lim.SetLimitAt(t0, heijunka.Limit{Rate: 100, Burst: 2}))
	assert.Equal(t, 0, lim.DecideN(t0, 0).Remaining, "capped at the new burst")

	require.Error(t, lim.SetLimitAt(t0, heijunka.Limit{Rate: -1, Burst: 1}))
	assert.Equal(t, heijunka.Limit{Rate: 100, Burst: 2}, lim.Limit(), "an invalid limit changes nothing")

	require.NoError(t, lim.SetLimitAt(t0, heijunka.Limit{}))
	assert.False(t, lim.AllowN(t0, 1), "closed")
	require.NoError(t, lim.SetLimitAt(t0, heijunka.Limit{Rate: 1, Burst: 3}))
	assert.True(t, lim.AllowN(t0, 3), "reopened full")
}

func TestLimiterConcurrent(t *testing.T) {
	lim := newLimiter(t, heijunka.Limit{Rate: 1, Burst: 1000})
	var admitted atomic.Int64
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for i := range 500 {
				now := t0
				if i%2 == 0 && lim.AllowN(now, 1) {
					admitted.Add(1)
				} else if i%2 == 1 {
					if lim.DecideN(now, 1).Allowed {
						admitted.Add(1)
					}
				}
			}
		})
	}
	wg.Wait()
	assert.Equal(t, int64(1000), admitted.Load(), "4000 calls at one instant admit exactly the burst")
}

// TestLimiterWindowProperty: over any window of length w, a limiter admits
// at most Burst + Rate·w events, whatever the limit and the sequence of
// requests (AllowN, DecideN, reservations and cancels).
func TestLimiterWindowProperty(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		limit := heijunka.Limit{
			Rate:  rapid.Float64Range(0.5, 1000).Draw(t, "rate"),
			Burst: rapid.IntRange(1, 20).Draw(t, "burst"),
		}
		lim, err := heijunka.NewLimiter(limit, heijunka.LimiterOptions{})
		if err != nil {
			t.Fatal(err)
		}
		var events []time.Time // when admitted events act
		now := t0
		steps := rapid.IntRange(1, 200).Draw(t, "steps")
		for range steps {
			maxGap := int64(2 * float64(time.Second) / limit.Rate)
			now = now.Add(time.Duration(rapid.Int64Range(0, maxGap).Draw(t, "gap")))
			n := rapid.IntRange(0, limit.Burst+1).Draw(t, "n")
			switch rapid.IntRange(0, 2).Draw(t, "op") {
			case 0:
				if lim.AllowN(now, n) {
					events = appendN(events, now, n)
				}
			case 1:
				if lim.DecideN(now, n).Allowed {
					events = appendN(events, now, n)
				}
			case 2:
				r := lim.ReserveN(now, n)
				if !r.OK() {
					continue
				}
				if rapid.Bool().Draw(t, "cancel") {
					r.CancelAt(now)
				} else {
					events = appendN(events, now.Add(r.DelayFrom(now)), n)
				}
			}
		}
		sortTimes(events)
		for i := range events {
			for j := i; j < len(events); j++ {
				w := events[j].Sub(events[i])
				// Intervals are rounded to whole nanoseconds: allow for it.
				bound := float64(limit.Burst) + w.Seconds()*1e9/float64(limit.Interval())
				if float64(j-i+1) > bound+1e-6 {
					t.Fatalf("%d events in a window of %v, bound %.3f", j-i+1, w, bound)
				}
			}
		}
	})
}

func appendN(ts []time.Time, t time.Time, n int) []time.Time {
	for range n {
		ts = append(ts, t)
	}
	return ts
}

func sortTimes(ts []time.Time) {
	for i := 1; i < len(ts); i++ {
		for j := i; j > 0 && ts[j].Before(ts[j-1]); j-- {
			ts[j], ts[j-1] = ts[j-1], ts[j]
		}
	}
}
