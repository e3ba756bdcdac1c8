package heijunka_test

import (
	"context"
	"math"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/heijunka"
	"github.com/taipattern/taikit/tai"
)

// The edge cases that golang.org/x/time/rate documents, as a Limiter
// decides them. Where it decides otherwise than rate.Limiter, the
// Limiter's doc says so; the tests here state what it does. Other tests
// state the rest: a zero rate with a burst (TestLimiterSpecialLimits), a
// finite rate with Burst 0 (TestLimitValidation), times going back
// (TestLimiterSetLimitThenEarlierTime, TestLimiterWindowPropertyTimeGoingBack),
// reservations canceled (TestReservationCancelKeepsLaterBookings and
// after), and a wait that would outlast its deadline (TestLimiterWait).

// TestLimiterUnlimitedOfBurstZero: a Rate of +Inf admits any number of
// events whatever its Burst, 0 included, as rate.NewLimiter(rate.Inf, 0)
// does. rate.Inf itself is math.MaxFloat64, a finite rate above one event
// per nanosecond: invalid, with an error that points to Unlimited.
func TestLimiterUnlimitedOfBurstZero(t *testing.T) {
	limit := heijunka.Limit{Rate: math.Inf(1)}
	require.NoError(t, limit.Validate())
	lim := newLimiter(t, limit)
	assert.True(t, lim.AllowN(t0, math.MaxInt))
	assert.Equal(t, heijunka.Decision{Allowed: true, Limit: limit, Remaining: math.MaxInt}, lim.DecideN(t0, math.MaxInt))
	r := lim.ReserveN(t0, math.MaxInt)
	require.True(t, r.OK())
	assert.Equal(t, time.Duration(0), r.DelayFrom(t0))
	assert.NoError(t, lim.WaitN(context.Background(), math.MaxInt))

	k, err := heijunka.NewKeyed(limit)
	require.NoError(t, err)
	d, err := k.AllowN(context.Background(), t0, "a", math.MaxInt)
	require.NoError(t, err)
	assert.True(t, d.Allowed)

	assert.ErrorContains(t, heijunka.Limit{Rate: math.MaxFloat64}.Validate(), "use Unlimited for no limit")
}

// TestLimiterHugeN: more events than the Burst, up to math.MaxInt, whose
// intervals would overflow any time, never pass and book nothing, as in
// rate.Limiter: AllowN reports false, DecideN a RetryAfter of
// InfDuration, ReserveN a reservation that is not OK, and WaitN fails at
// once. So during a warm-up, for more than the full Burst.
func TestLimiterHugeN(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		limit := heijunka.Limit{Rate: 10, Burst: 3}
		for _, warmUp := range []bool{false, true} {
			lim := newLimiter(t, limit)
			inForce := limit
			if warmUp {
				w, err := heijunka.NewWarmUp(lim, heijunka.WarmUpOptions{From: 0.5, Over: time.Second, Steps: 2})
				require.NoError(t, err)
				require.NoError(t, w.Start())
				inForce = lim.Limit()
				require.Less(t, inForce.Burst, limit.Burst)
			}
			now := time.Now()
			for _, n := range []int{limit.Burst + 1, 1 << 40, math.MaxInt} {
				assert.False(t, lim.AllowN(now, n), "warm-up %v, n %d", warmUp, n)
				assert.Equal(t, heijunka.Decision{Limit: inForce, Remaining: inForce.Burst, RetryAfter: heijunka.InfDuration},
					lim.DecideN(now, n), "warm-up %v, n %d", warmUp, n)
				r := lim.ReserveN(now, n)
				assert.False(t, r.OK(), "warm-up %v, n %d", warmUp, n)
				assert.Equal(t, heijunka.InfDuration, r.DelayFrom(now), "warm-up %v, n %d", warmUp, n)
				r.CancelAt(now) // does nothing
				err := lim.WaitN(context.Background(), n)
				require.ErrorIs(t, err, heijunka.ErrLimited, "warm-up %v, n %d", warmUp, n)
				assert.Equal(t, heijunka.InfDuration, tai.RetryAfter(err), "warm-up %v, n %d", warmUp, n)
				assert.Equal(t, now, time.Now(), "warm-up %v, n %d: it fails at once", warmUp, n)
			}
			assert.True(t, lim.AllowN(now, inForce.Burst), "warm-up %v: nothing was booked", warmUp)
		}
	})
}

// TestLimiterWaitZeroEvents: WaitN of no events passes at once while the
// limiter is within its burst. Booked past it by reservations, it waits
// until the limiter is within it again, as rate.Limiter's does, and fails
// at once when its context's deadline comes before that. It books
// nothing.
func TestLimiterWaitZeroEvents(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		lim := newLimiter(t, heijunka.Limit{Rate: 10, Burst: 1})
		start := time.Now()
		require.NoError(t, lim.WaitN(ctx, 0))
		require.True(t, lim.Allow())
		require.NoError(t, lim.WaitN(ctx, 0), "the burst used, and no more")
		assert.Equal(t, start, time.Now(), "no wait")

		require.True(t, lim.Reserve().OK()) // acts at 100ms
		require.True(t, lim.Reserve().OK()) // acts at 200ms: within the burst from then on
		dctx, cancel := context.WithTimeout(ctx, 150*time.Millisecond)
		defer cancel()
		err := lim.WaitN(dctx, 0)
		require.ErrorIs(t, err, heijunka.ErrLimited, "the wait would outlast the deadline")
		assert.Equal(t, 200*time.Millisecond, tai.RetryAfter(err))
		assert.Equal(t, start, time.Now(), "it fails at once")

		require.NoError(t, lim.WaitN(ctx, 0))
		assert.Equal(t, 200*time.Millisecond, time.Since(start))
		assert.Equal(t, 100*time.Millisecond, lim.Decide().ResetAfter, "nothing booked: the last reservation's event alone")
	})
}

// TestLimiterWaitAcrossAChangeOfLimit: a WaitN under way when the Limit
// changes passes at the time it was booked, whatever the new Limit, as
// rate.Limiter's waits do: its events carry over to the new Limit and act
// at their time (see SetLimitAt). Calls after the change are decided
// under the new Limit.
func TestLimiterWaitAcrossAChangeOfLimit(t *testing.T) {
	for _, tc := range []struct {
		name  string
		to    heijunka.Limit
		allow bool // whether an event passes right after the change
	}{
		{"faster", heijunka.Limit{Rate: 100, Burst: 5}, true},
		{"slower", heijunka.Limit{Rate: 0.1, Burst: 1}, false},
		{"unlimited", heijunka.Unlimited(), true},
		{"closed", heijunka.Limit{}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				lim := newLimiter(t, heijunka.Limit{Rate: 1, Burst: 1})
				start := time.Now()
				require.True(t, lim.Allow())
				cancel, done := startWait(lim, 1) // due at 1s
				defer cancel()
				require.NoError(t, lim.SetLimit(tc.to))
				assert.Equal(t, tc.allow, lim.Allow(), "under the new Limit")
				require.NoError(t, <-done)
				assert.Equal(t, time.Second, time.Since(start), "the wait passed at its time")
			})
		})
	}
}

// TestLimiterLongIdle: after decades without a call a limiter is full,
// and no fuller: the time between calls is never turned into a count of
// events, so no count overflows, even at one event per nanosecond. Past
// about 73 years from its creation a Limiter's time stands still (see
// Limiter): calls a century and two centuries on count as one instant.
func TestLimiterLongIdle(t *testing.T) {
	year := 365 * 24 * time.Hour
	limit := heijunka.Limit{Rate: 1e9, Burst: 5}
	lim := newLimiter(t, limit)
	require.True(t, lim.AllowN(t0, 5))
	later := t0.Add(50 * year)
	d := lim.DecideN(later, 0)
	assert.Equal(t, 5, d.Remaining)
	assert.Equal(t, time.Duration(0), d.ResetAfter)
	require.True(t, lim.AllowN(later, 5), "full again")
	assert.False(t, lim.AllowN(later, 1), "and no fuller")
	assert.True(t, lim.AllowN(later.Add(time.Nanosecond), 1), "one more an interval later")

	require.True(t, lim.AllowN(t0.Add(100*year), 5))
	assert.False(t, lim.AllowN(t0.Add(200*year), 1), "the same instant to the Limiter")
}
