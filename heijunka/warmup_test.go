package heijunka_test

import (
	"context"
	"fmt"
	"math"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"pgregory.net/rapid"

	"github.com/taipattern/taikit/heijunka"
)

func TestWarmUpClimbs(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		full := heijunka.Limit{Rate: 100, Burst: 100}
		lim := newLimiter(t, full)
		w, err := heijunka.NewWarmUp(lim, heijunka.WarmUpOptions{From: 0.1, Over: 10 * time.Second, Steps: 10})
		require.NoError(t, err)
		assert.Same(t, lim, w.Limiter())
		assert.Equal(t, full, w.LimitAt(time.Now()), "full until a recovery")

		require.NoError(t, w.Start())
		assert.Equal(t, heijunka.Limit{Rate: 10, Burst: 10}, lim.Limit(), "the limiter itself is lowered")
		for _, tc := range []struct {
			at    time.Duration
			limit heijunka.Limit
		}{
			{0, heijunka.Limit{Rate: 10, Burst: 10}},
			{999 * time.Millisecond, heijunka.Limit{Rate: 10, Burst: 10}},
			{time.Second, heijunka.Limit{Rate: 19, Burst: 19}},
			{5 * time.Second, heijunka.Limit{Rate: 55, Burst: 55}},
			{10 * time.Second, full},
			{time.Hour, full},
		} {
			got := w.LimitAt(time.Now().Add(tc.at))
			assert.InDelta(t, tc.limit.Rate, got.Rate, 1e-9, "at %v", tc.at)
			assert.Equal(t, tc.limit.Burst, got.Burst, "at %v", tc.at)
		}

		// Just after recovery only the reduced burst passes at once.
		admitted := 0
		for range 200 {
			if lim.Allow() {
				admitted++
			}
		}
		assert.Equal(t, 10, admitted)

		// Count what passes each second while the clock runs in 10 ms ticks:
		// it climbs, and is never more than the step's burst plus its rate.
		// Each tick takes at most 1000 events: a limiter that admits
		// everything fails the test instead of looping for ever.
		var perSecond []int
		for s := range 12 {
			n := 0
			for range 100 {
				time.Sleep(10 * time.Millisecond)
				for range 1000 {
					if !lim.Allow() {
						break
					}
					n++
				}
			}
			perSecond = append(perSecond, n)
			l := w.LimitAt(time.Now())
			assert.LessOrEqual(t, float64(n), float64(l.Burst)+l.Rate, "second %d", s)
			assert.Equal(t, l, lim.Limit(), "second %d: the limiter follows the schedule", s)
		}
		for i := 1; i < len(perSecond); i++ {
			assert.GreaterOrEqual(t, perSecond[i], perSecond[i-1], "climbing: %v", perSecond)
		}
		assert.InDelta(t, 100, perSecond[len(perSecond)-1], 2, "full again: %v", perSecond)
		assert.Less(t, perSecond[0], 30, "started low: %v", perSecond)
		time.Sleep(time.Second)
		require.NoError(t, lim.Admit(context.Background(), ""))
		assert.Equal(t, full, lim.Limit())
	})
}

// TestWarmUpExplicitTimes drives a climb with the explicit-time methods
// alone: each call raises the limit to the step its time has reached.
func TestWarmUpExplicitTimes(t *testing.T) {
	full := heijunka.Limit{Rate: 10, Burst: 10}
	lim := newLimiter(t, full)
	w, err := heijunka.NewWarmUp(lim, heijunka.WarmUpOptions{From: 0.5, Over: 4 * time.Second, Steps: 4})
	require.NoError(t, err)
	require.NoError(t, w.StartAt(t0))
	assert.True(t, lim.AllowN(t0, 5), "half the burst")
	assert.False(t, lim.AllowN(t0, 1))

	// Step 2 at t0+2s: 7.5/s, burst 8. The debt of 5 events at 5/s, less
	// 2 s of refill, is 0: full at the new step.
	d := lim.DecideN(t0.Add(2*time.Second), 0)
	assert.Equal(t, heijunka.Limit{Rate: 7.5, Burst: 8}, d.Limit)
	assert.Equal(t, 8, d.Remaining)

	// Another recovery restarts the climb towards the same full limit.
	require.NoError(t, w.StartAt(t0.Add(3*time.Second)))
	assert.Equal(t, heijunka.Limit{Rate: 5, Burst: 5}, lim.DecideN(t0.Add(3*time.Second), 0).Limit)
	assert.Equal(t, full, w.LimitAt(t0.Add(7*time.Second)))
	assert.Equal(t, full, lim.DecideN(t0.Add(7*time.Second), 0).Limit)
	assert.Equal(t, full, lim.DecideN(t0.Add(3*time.Second), 0).Limit, "the climb is over: an earlier time does not lower it again")
}

// TestWarmUpReservationsWithinAStep: the limit changes only when the climb
// reaches a new step, so a reservation made during a step can be canceled
// while it lasts, whatever other calls came between.
func TestWarmUpReservationsWithinAStep(t *testing.T) {
	lim := newLimiter(t, heijunka.Limit{Rate: 10, Burst: 10})
	w, err := heijunka.NewWarmUp(lim, heijunka.WarmUpOptions{From: 0.5, Over: 10 * time.Second, Steps: 10})
	require.NoError(t, err)
	require.NoError(t, w.StartAt(t0))
	// The first step is 5/s, burst 5: one event each 200 ms.
	require.True(t, lim.AllowN(t0, 5), "the first step's burst")
	r := lim.ReserveN(t0.Add(100*time.Millisecond), 1)
	require.Equal(t, 100*time.Millisecond, r.DelayFrom(t0.Add(100*time.Millisecond)))
	assert.False(t, lim.AllowN(t0.Add(150*time.Millisecond), 1), "a call in the same step")
	r.CancelAt(t0.Add(150 * time.Millisecond))
	assert.True(t, lim.AllowN(t0.Add(200*time.Millisecond), 1), "the reservation's event came back")
}

// TestWarmUpEndsWithSetLimit: a limit set by hand wins over the climb.
func TestWarmUpEndsWithSetLimit(t *testing.T) {
	lim := newLimiter(t, heijunka.PerSecond(100))
	w, err := heijunka.NewWarmUp(lim, heijunka.WarmUpOptions{Over: 10 * time.Second, Steps: 10})
	require.NoError(t, err)
	require.NoError(t, w.StartAt(t0))
	require.NoError(t, lim.SetLimitAt(t0.Add(time.Second), heijunka.PerSecond(50)))
	assert.Equal(t, heijunka.PerSecond(50), lim.DecideN(t0.Add(5*time.Second), 0).Limit)
	assert.Equal(t, heijunka.PerSecond(50), lim.DecideN(t0.Add(time.Minute), 0).Limit)
	assert.Equal(t, heijunka.PerSecond(50), w.LimitAt(t0.Add(5*time.Second)))

	// A new climb goes to the limit in force then.
	require.NoError(t, w.StartAt(t0.Add(time.Minute)))
	assert.Equal(t, heijunka.Limit{Rate: 5, Burst: 5}, lim.DecideN(t0.Add(time.Minute), 0).Limit)

	// A limit that cannot be climbed to cannot start a climb.
	require.NoError(t, lim.SetLimit(heijunka.Unlimited()))
	require.ErrorContains(t, w.Start(), "needs a finite limit, not unlimited")
	assert.Equal(t, heijunka.Unlimited(), lim.Limit(), "and nothing changed")
}

func TestWarmUpValidation(t *testing.T) {
	for _, tc := range []struct {
		name  string
		limit heijunka.Limit
		opts  heijunka.WarmUpOptions
		want  string
	}{
		{"unlimited", heijunka.Unlimited(), heijunka.WarmUpOptions{}, "needs a finite limit"},
		{"closed", heijunka.Limit{}, heijunka.WarmUpOptions{}, "needs a finite limit"},
		{"From above 1", heijunka.PerSecond(1), heijunka.WarmUpOptions{From: 1.5}, "From 1.5"},
		{"From NaN", heijunka.PerSecond(1), heijunka.WarmUpOptions{From: math.NaN()}, "From NaN is not in (0, 1]"},
		{"negative From", heijunka.PerSecond(1), heijunka.WarmUpOptions{From: -0.1}, "From -0.1 is not in (0, 1]"},
		{"From too low to refill", heijunka.Limit{Rate: 1e-7, Burst: 1}, heijunka.WarmUpOptions{From: 0.01}, "From 0.01 of"},
		{"negative Over", heijunka.PerSecond(1), heijunka.WarmUpOptions{Over: -time.Second}, "Over -1s"},
		{"too many Steps", heijunka.PerSecond(1), heijunka.WarmUpOptions{Over: 10, Steps: 11}, "Steps 11"},
		{"negative Steps", heijunka.PerSecond(1), heijunka.WarmUpOptions{Steps: -1}, "Steps -1"},
		{"Over too short for the default Steps", heijunka.PerSecond(1), heijunka.WarmUpOptions{Over: 5}, "Over 5ns is shorter than the default 20 Steps of 1ns; set Steps"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := heijunka.NewWarmUp(newLimiter(t, tc.limit), tc.opts)
			require.Error(t, err)
			assert.Contains(t, err.Error(), "heijunka: warm-up ")
			assert.Contains(t, err.Error(), tc.want)
		})
	}
	_, err := heijunka.NewWarmUp(nil, heijunka.WarmUpOptions{})
	assert.ErrorContains(t, err, "not made by NewLimiter")
	_, err = heijunka.NewWarmUp(&heijunka.Limiter{}, heijunka.WarmUpOptions{})
	assert.ErrorContains(t, err, "not made by NewLimiter")
}

// TestWarmUpBounds: the largest valid options are valid: From 1 (a climb
// that stays at full) and as many Steps as Over has nanoseconds.
func TestWarmUpBounds(t *testing.T) {
	full := heijunka.PerSecond(10)
	lim := newLimiter(t, full)
	w, err := heijunka.NewWarmUp(lim, heijunka.WarmUpOptions{From: 1})
	require.NoError(t, err)
	require.NoError(t, w.StartAt(t0))
	assert.Equal(t, full, lim.DecideN(t0, 0).Limit, "From 1 starts at full")

	lim = newLimiter(t, full)
	w, err = heijunka.NewWarmUp(lim, heijunka.WarmUpOptions{From: 0.5, Over: 10, Steps: 10})
	require.NoError(t, err)
	require.NoError(t, w.StartAt(t0))
	assert.Equal(t, heijunka.Limit{Rate: 5, Burst: 5}, w.LimitAt(t0))
	assert.Equal(t, heijunka.Limit{Rate: 5.5, Burst: 6}, w.LimitAt(t0.Add(1)), "a step each nanosecond")
	assert.Equal(t, full, w.LimitAt(t0.Add(10)))
}

// TestWarmUpStepsOfASlowLimit climbs to a Limit that takes more than nine
// years to refill. Rounding a step's Burst up can make the step's refill
// longer than the first step's, past the ten years a Limit may take: every
// step still gives a valid Limit, and the events it admits.
func TestWarmUpStepsOfASlowLimit(t *testing.T) {
	year := 365 * 24 * time.Hour
	full := heijunka.Every(year * 95 / 100).WithBurst(10) // refills in 9.5 years
	require.NoError(t, full.Validate())
	t0 := time.Now()
	for step := range 21 {
		// A limiter of its own for each step, full when the step begins.
		lim := newLimiter(t, full)
		w, err := heijunka.NewWarmUp(lim, heijunka.WarmUpOptions{From: 0.1, Over: 20 * time.Second, Steps: 20})
		require.NoError(t, err)
		require.NoError(t, w.StartAt(t0))
		at := t0.Add(time.Duration(step) * time.Second)
		limit := w.LimitAt(at)
		require.NoError(t, limit.Validate(), "step %d: %v", step, limit)
		d := lim.DecideN(at, 1)
		assert.True(t, d.Allowed, "step %d: %v", step, d)
		assert.Equal(t, limit, d.Limit, "step %d", step)
	}
}

// TestWarmUpStepsOfAFastLongLimit climbs to a fast Limit whose Burst takes
// the whole ten years to refill. A step whose Burst, rounded, would refill
// past them keeps the largest Burst that refills in time, counted in whole
// nanoseconds as Limit counts it: a Burst chosen by floating-point division
// may be one too many, and the step's Limit then invalid, which a climb
// must never install (the Limiter would admit nothing, or divide by a zero
// interval).
func TestWarmUpStepsOfAFastLongLimit(t *testing.T) {
	tenYears := int64(10 * 365 * 24 * time.Hour)
	full := heijunka.Limit{Rate: 1e9, Burst: int(tenYears)} // one event a nanosecond
	require.NoError(t, full.Validate())
	t0 := time.Now()
	for _, steps := range []int{23, 1, 61} {
		for _, from := range []float64{0.01, 0.016, 0.017, 0.024, 0.25} {
			for step := range steps + 1 {
				lim := newLimiter(t, full)
				w, err := heijunka.NewWarmUp(lim, heijunka.WarmUpOptions{From: from, Over: time.Duration(steps) * time.Second, Steps: steps})
				require.NoError(t, err, "From %v, %d steps", from, steps)
				require.NoError(t, w.StartAt(t0))
				at := t0.Add(time.Duration(step) * time.Second)
				limit := w.LimitAt(at)
				require.NoError(t, limit.Validate(), "From %v, step %d of %d: %v", from, step, steps, limit)
				d := lim.DecideN(at, 1)
				assert.True(t, d.Allowed, "From %v, step %d of %d: %v", from, step, steps, d)
				assert.Equal(t, limit, d.Limit, "From %v, step %d of %d", from, step, steps)
			}
		}
	}
}

// TestWarmUpTakesAllOfOver: a climb reaches full after Over, not before,
// when Over does not divide into Steps whole nanoseconds; the steps share
// Over as evenly as nanoseconds allow.
func TestWarmUpTakesAllOfOver(t *testing.T) {
	full := heijunka.Limit{Rate: 10, Burst: 10}
	for _, tc := range []struct {
		over  time.Duration
		steps int
	}{
		{100, 51},
		{100, 99},
		{time.Minute, 7},
		{10 * time.Second, 3},
	} {
		t.Run(fmt.Sprintf("%v in %d steps", tc.over, tc.steps), func(t *testing.T) {
			w, err := heijunka.NewWarmUp(newLimiter(t, full), heijunka.WarmUpOptions{From: 0.5, Over: tc.over, Steps: tc.steps})
			require.NoError(t, err)
			require.NoError(t, w.StartAt(t0))
			assert.NotEqual(t, full, w.LimitAt(t0.Add(tc.over-1)), "still climbing just before Over")
			assert.Equal(t, full, w.LimitAt(t0.Add(tc.over)), "full at Over")
			// Step s begins at s·Over/Steps, rounded up to a nanosecond.
			changes := 0
			for s := int64(1); s <= int64(tc.steps); s++ {
				begins := (s*int64(tc.over) + int64(tc.steps) - 1) / int64(tc.steps)
				before, at := w.LimitAt(t0.Add(time.Duration(begins-1))), w.LimitAt(t0.Add(time.Duration(begins)))
				if assert.NotEqual(t, before, at, "step %d begins at %dns", s, begins) {
					changes++
				}
			}
			assert.Equal(t, tc.steps, changes, "a change at every step")
		})
	}
}

// TestWarmUpRetryAfterForMoreThanTheStepsBurst: during a climb, a request
// for more events than the step's Burst but no more than the full Burst
// passes once the climb reaches a step whose Burst takes it. Its Decision
// says when, not that it never can, and WaitN waits for that step.
func TestWarmUpRetryAfterForMoreThanTheStepsBurst(t *testing.T) {
	full := heijunka.Limit{Rate: 100, Burst: 100}
	start := func(t *testing.T) *heijunka.Limiter {
		lim := newLimiter(t, full)
		// Step s begins at s seconds, with a Burst of 10+9s: 20 events
		// fit from step 2 on.
		w, err := heijunka.NewWarmUp(lim, heijunka.WarmUpOptions{From: 0.1, Over: 10 * time.Second, Steps: 10})
		require.NoError(t, err)
		require.NoError(t, w.StartAt(t0))
		return lim
	}

	t.Run("full", func(t *testing.T) {
		d := start(t).DecideN(t0, 20)
		assert.False(t, d.Allowed)
		assert.Equal(t, 2*time.Second, d.RetryAfter, "when step 2 begins")

		lim := start(t)
		assert.False(t, lim.AllowN(t0.Add(2*time.Second-1), 20), "not before")
		assert.True(t, lim.AllowN(t0.Add(2*time.Second), 20), "then")
	})

	t.Run("in debt", func(t *testing.T) {
		// Three reservations of 10 at 10/s: the schedule is 3 s ahead, and
		// 1 s of it (10 events) is still owed when step 2 begins.
		book := func(lim *heijunka.Limiter) {
			for range 3 {
				require.True(t, lim.ReserveN(t0, 10).OK())
			}
		}
		lim := start(t)
		book(lim)
		d := lim.DecideN(t0, 20)
		assert.False(t, d.Allowed)
		require.Greater(t, d.RetryAfter, 2*time.Second, "step 2, then the debt")
		require.Less(t, d.RetryAfter, 3*time.Second, "refilled at step 2's rate")

		lim = start(t)
		book(lim)
		assert.False(t, lim.AllowN(t0.Add(d.RetryAfter-1), 20), "not before")
		lim = start(t)
		book(lim)
		assert.True(t, lim.AllowN(t0.Add(d.RetryAfter), 20), "then")
	})

	t.Run("more than full", func(t *testing.T) {
		d := start(t).DecideN(t0, 101)
		assert.Equal(t, heijunka.InfDuration, d.RetryAfter, "no step takes more than the full Burst")
	})

	t.Run("WaitN", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			lim := newLimiter(t, full)
			w, err := heijunka.NewWarmUp(lim, heijunka.WarmUpOptions{From: 0.1, Over: 10 * time.Second, Steps: 10})
			require.NoError(t, err)
			require.NoError(t, w.Start())
			begin := time.Now()

			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			err = lim.WaitN(ctx, 20)
			cancel()
			var le *heijunka.LimitedError
			require.ErrorAs(t, err, &le, "step 2 comes after the deadline")
			assert.Equal(t, 2*time.Second, le.RetryAfter())
			assert.Equal(t, begin, time.Now(), "and WaitN said so at once")

			require.NoError(t, lim.WaitN(context.Background(), 20))
			assert.Equal(t, 2*time.Second, time.Since(begin), "WaitN waited for step 2")
			assert.Equal(t, 28, lim.Limit().Burst)
		})
	})
}

// TestWarmUpRetryAfterAcrossSteps: a request within the step's Burst that
// is denied waits for the debt to be paid, and a step that begins on the
// way pays it at its higher rate: RetryAfter counts that, to the
// nanosecond, where the step's own rate alone would give too long a wait.
func TestWarmUpRetryAfterAcrossSteps(t *testing.T) {
	start := func(t *testing.T) *heijunka.Limiter {
		// Step s begins at s seconds, with a Rate of 1+0.9s and a Burst
		// of round(1+0.9s).
		lim := newLimiter(t, heijunka.Limit{Rate: 10, Burst: 10})
		w, err := heijunka.NewWarmUp(lim, heijunka.WarmUpOptions{From: 0.1, Over: 10 * time.Second, Steps: 10})
		require.NoError(t, err)
		require.NoError(t, w.StartAt(t0))
		return lim
	}
	for _, tc := range []struct {
		name   string
		booked int // events booked at t0 at step 0 (1/s, Burst 1)
		at     time.Duration
		n      int
	}{
		{"one step", 2, 0, 1},
		{"several steps", 5, 0, 1},
		{"within a step", 1, 500 * time.Millisecond, 1},
		{"more than one event", 4, 1500 * time.Millisecond, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// The same calls each time: a step's limit is set by the
			// first call in it, and the debt converted then.
			now := t0.Add(tc.at)
			decide := func() (*heijunka.Limiter, heijunka.Decision) {
				lim := start(t)
				for range tc.booked {
					require.True(t, lim.ReserveN(t0, 1).OK())
				}
				return lim, lim.DecideN(now, tc.n)
			}
			lim, d := decide()
			require.False(t, d.Allowed)
			require.Less(t, d.RetryAfter, heijunka.InfDuration)
			assert.False(t, lim.AllowN(now.Add(d.RetryAfter-1), tc.n), "not a nanosecond before RetryAfter %v", d.RetryAfter)
			lim, _ = decide()
			assert.True(t, lim.AllowN(now.Add(d.RetryAfter), tc.n), "at RetryAfter %v", d.RetryAfter)
		})
	}
}

// TestWarmUpWaitNAcrossSteps: WaitN for events within the step's Burst
// counts the steps that begin while it waits, as RetryAfter does: it does
// not give up on a deadline the climb lets it meet, and passes when the
// climb lets it.
func TestWarmUpWaitNAcrossSteps(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		// Step s begins at s seconds, with a Rate of 1+0.9s and a Burst
		// of round(1+0.9s).
		lim := newLimiter(t, heijunka.Limit{Rate: 10, Burst: 10})
		w, err := heijunka.NewWarmUp(lim, heijunka.WarmUpOptions{From: 0.1, Over: 10 * time.Second, Steps: 10})
		require.NoError(t, err)
		require.NoError(t, w.Start())
		begin := time.Now()
		require.True(t, lim.Allow())
		require.True(t, lim.Reserve().OK()) // step 0 would pass the next event at 2 s, step 1 does at 1 s
		require.Equal(t, time.Second, lim.Decide().RetryAfter)

		ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
		defer cancel()
		require.NoError(t, lim.WaitN(ctx, 1), "the event passes before the deadline")
		assert.Equal(t, time.Second, time.Since(begin), "when step 1 lets it")
	})
}

// TestWarmUpFromThatRoundsToClosed: a From so small that From·Rate rounds
// to 0 would start the climb at a closed Limit, which admits nothing and
// tells callers they never pass; its next steps could be invalid Limits,
// and deciding under them divided by zero. NewWarmUp refuses it.
func TestWarmUpFromThatRoundsToClosed(t *testing.T) {
	lim := newLimiter(t, heijunka.Limit{Rate: 0.5, Burst: 1})
	_, err := heijunka.NewWarmUp(lim, heijunka.WarmUpOptions{From: 5e-324, Over: 1000 * time.Second, Steps: 1e12})
	require.Error(t, err)
	assert.ErrorContains(t, err, "heijunka: warm-up From 5e-324 of 30/min burst 1 rounds to a Rate of 0")
}

// TestWarmUpWaitNUpToTheDeadline: a WaitN that a later step of the climb
// lets pass at the instant its context ends passes, as one whose booking
// acts then does: it does not wait the whole time to fail.
func TestWarmUpWaitNUpToTheDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		for i := range 16 {
			// Step s begins at s seconds, with a Rate of 1+0.9s and a
			// Burst of round(1+0.9s).
			lim := newLimiter(t, heijunka.Limit{Rate: 10, Burst: 10})
			w, err := heijunka.NewWarmUp(lim, heijunka.WarmUpOptions{From: 0.1, Over: 10 * time.Second, Steps: 10})
			require.NoError(t, err)
			require.NoError(t, w.Start())
			begin := time.Now()
			require.True(t, lim.Allow())
			require.True(t, lim.Reserve().OK()) // step 1 lets the next event pass at 1 s
			require.Equal(t, time.Second, lim.Decide().RetryAfter)

			ctx := endsAt{context.Background(), begin.Add(time.Second)}
			require.NoError(t, lim.WaitN(ctx, 1), "run %d: the event passes at the deadline", i)
			assert.Equal(t, time.Second, time.Since(begin))
			assert.False(t, lim.Allow(), "run %d: the event was booked", i)
		}
	})
}

// TestWarmUpAdmitsNoMoreThanTheFullLimit starts a climb right after the
// Limiter used its whole burst, as a limiter in front of a failing service
// does until it recovers, and takes every event the climb lets pass: over
// any window no more pass than the full Limit alone would let. The events
// used before the start still count whole: forgiven down to the first
// step's Burst, they came back as the steps' Bursts rose, and nearly half
// as many again as the full Limit allows passed in the minute of the climb.
func TestWarmUpAdmitsNoMoreThanTheFullLimit(t *testing.T) {
	for _, tc := range []struct {
		full heijunka.Limit
		opts heijunka.WarmUpOptions
	}{
		{heijunka.PerMinute(60), heijunka.WarmUpOptions{From: 0.1, Over: time.Minute, Steps: 20}},
		{heijunka.PerMinute(60), heijunka.WarmUpOptions{From: 0.1, Over: time.Minute, Steps: 4}},
		{heijunka.PerMinute(60), heijunka.WarmUpOptions{From: 0.5, Over: 10 * time.Second, Steps: 1000}},
		{heijunka.PerMinute(5), heijunka.WarmUpOptions{From: 0.2, Over: 30 * time.Second, Steps: 7}},
		{heijunka.PerSecond(100), heijunka.WarmUpOptions{From: 0.1, Over: time.Minute, Steps: 20}},
		{heijunka.PerSecond(100), heijunka.WarmUpOptions{From: 0.1, Over: 100 * time.Millisecond, Steps: 10}},
		{heijunka.Limit{Rate: 1, Burst: 2}, heijunka.WarmUpOptions{From: 0.5, Over: 1, Steps: 1}},
		{heijunka.Limit{Rate: 10, Burst: 100}, heijunka.WarmUpOptions{From: 0.01, Over: time.Second, Steps: 1000}},
	} {
		t.Run(fmt.Sprintf("%v from %v over %v in %d", tc.full, tc.opts.From, tc.opts.Over, tc.opts.Steps), func(t *testing.T) {
			lim := newLimiter(t, tc.full)
			w, err := heijunka.NewWarmUp(lim, tc.opts)
			require.NoError(t, err)
			var events []time.Time
			take := func(at time.Time) {
				for lim.AllowN(at, 1) {
					events = append(events, at)
				}
			}
			take(t0)
			require.Len(t, events, tc.full.Burst)
			require.NoError(t, w.StartAt(t0))
			take(t0.Add(1))
			// Over the climb and a refill of the full Limit after it.
			span := tc.opts.Over + tc.full.Interval()*time.Duration(tc.full.Burst)
			for at := t0; at.Before(t0.Add(span)); {
				at = at.Add(span / 600)
				take(at)
			}
			for i := range events {
				for j := i; j < len(events); j++ {
					w := events[j].Sub(events[i])
					bound := float64(tc.full.Burst) + w.Seconds()*1e9/float64(tc.full.Interval())
					if float64(j-i+1) > bound+1e-6 {
						t.Fatalf("%d events from %v to %v, bound %.3f", j-i+1, events[i].Sub(t0), events[j].Sub(t0), bound)
					}
				}
			}
		})
	}
}

// TestWarmUpWindowProperty: whatever the full Limit, the climb and the
// times of the calls, and however often the climb starts again, a
// Limiter under a warm-up lets no more events pass in a window than the
// full Limit alone allows.
func TestWarmUpWindowProperty(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		full := heijunka.Limit{
			Rate:  rapid.Float64Range(0.5, 1000).Draw(t, "rate"),
			Burst: rapid.IntRange(1, 30).Draw(t, "burst"),
		}
		opts := heijunka.WarmUpOptions{
			From:  rapid.Float64Range(0.05, 1).Draw(t, "from"),
			Over:  time.Duration(rapid.Int64Range(20, int64(20*time.Second)).Draw(t, "over")),
			Steps: rapid.IntRange(1, 20).Draw(t, "steps"),
		}
		lim, err := heijunka.NewLimiter(full, heijunka.LimiterOptions{})
		if err != nil {
			t.Fatal(err)
		}
		w, err := heijunka.NewWarmUp(lim, opts)
		if err != nil {
			t.Fatal(err)
		}
		var events []time.Time
		now := t0
		maxGap := int64(2 * float64(time.Second) / full.Rate)
		for range rapid.IntRange(1, 150).Draw(t, "calls") {
			now = now.Add(time.Duration(rapid.Int64Range(0, maxGap).Draw(t, "gap")))
			n := rapid.IntRange(0, full.Burst+1).Draw(t, "n")
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
				if err := w.StartAt(now); err != nil {
					t.Fatal(err)
				}
			}
		}
		for i := range events {
			for j := i; j < len(events); j++ {
				w := events[j].Sub(events[i])
				// Intervals are rounded to whole nanoseconds: allow for it.
				bound := float64(full.Burst) + w.Seconds()*1e9/float64(full.Interval())
				if float64(j-i+1) > bound+1e-6 {
					t.Fatalf("%d events in a window of %v, bound %.3f", j-i+1, w, bound)
				}
			}
		}
	})
}

// TestWarmUpAfterASaturatedLimiterAdmitsSoon: a climb that is long beside
// the refill of the full Limit keeps no more of the debt than the first
// step's Burst takes, as SetLimit would: a Limiter that used up its burst
// just before the start lets the next event pass one interval of the
// first step after it, not once the whole debt is paid off at the steps'
// rates.
func TestWarmUpAfterASaturatedLimiterAdmitsSoon(t *testing.T) {
	lim := newLimiter(t, heijunka.PerSecond(100))
	w, err := heijunka.NewWarmUp(lim, heijunka.WarmUpOptions{From: 0.1, Over: time.Minute, Steps: 20})
	require.NoError(t, err)
	require.True(t, lim.AllowN(t0, 100))
	require.NoError(t, w.StartAt(t0))
	d := lim.DecideN(t0, 1)
	assert.Equal(t, heijunka.Limit{Rate: 10, Burst: 10}, d.Limit)
	assert.Equal(t, 100*time.Millisecond, d.RetryAfter)
	assert.True(t, lim.AllowN(t0.Add(100*time.Millisecond), 1))
}

// TestWarmUpWindowPropertyAfterUse: a climb started at any time after a
// Limiter used any part of its burst, short or long beside the full
// Limit's refill, lets no more events pass in a window than the full
// Limit alone allows, whatever the calls take after the start.
func TestWarmUpWindowPropertyAfterUse(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		full := heijunka.Limit{
			Rate:  rapid.Float64Range(0.01, 1000).Draw(t, "rate"),
			Burst: rapid.IntRange(1, 200).Draw(t, "burst"),
		}
		refill := full.Interval() * time.Duration(full.Burst)
		opts := heijunka.WarmUpOptions{
			From:  rapid.Float64Range(0.01, 1).Draw(t, "from"),
			Over:  time.Duration(rapid.Int64Range(int64(refill/50)+100, int64(refill*3)+100).Draw(t, "over")),
			Steps: rapid.IntRange(1, 100).Draw(t, "steps"),
		}
		lim, err := heijunka.NewLimiter(full, heijunka.LimiterOptions{})
		if err != nil {
			t.Fatal(err)
		}
		w, err := heijunka.NewWarmUp(lim, opts)
		if err != nil {
			t.Skip(err) // a From whose first step rounds to a Rate of 0
		}
		var events []time.Time
		take := func(at time.Time, most int) {
			for range most {
				if !lim.AllowN(at, 1) {
					return
				}
				events = append(events, at)
			}
		}
		now := t0
		take(now, rapid.IntRange(0, full.Burst).Draw(t, "used"))
		now = now.Add(time.Duration(rapid.Int64Range(0, int64(refill)).Draw(t, "before")))
		require.NoError(t, w.StartAt(now))
		span := opts.Over + refill
		for range 300 {
			now = now.Add(time.Duration(rapid.Int64Range(0, int64(span/100)).Draw(t, "gap")))
			take(now, rapid.IntRange(0, full.Burst).Draw(t, "most"))
		}
		for i := range events {
			for j := i; j < len(events); j++ {
				w := events[j].Sub(events[i])
				bound := float64(full.Burst) + w.Seconds()*1e9/float64(full.Interval())
				if float64(j-i+1) > bound+1e-6 {
					t.Fatalf("%d events in a window of %v, bound %.3f", j-i+1, w, bound)
				}
			}
		}
	})
}

// TestWarmUpStartedDuringAnothersClimb: a Limiter with two WarmUps, a slow
// one for a long outage and a quick one for a short blip, climbs under the
// slow one when the quick one starts. The quick climb's first step takes
// more events than the slow one's and it reaches full sooner: the debt of
// the slow climb's first step, kept whole, let about as many events again
// as the full Burst pass at once, where the full Limit allowed none.
func TestWarmUpStartedDuringAnothersClimb(t *testing.T) {
	full := heijunka.PerMinute(60)
	lim := newLimiter(t, full)
	slow, err := heijunka.NewWarmUp(lim, heijunka.WarmUpOptions{From: 0.1, Over: time.Hour, Steps: 20})
	require.NoError(t, err)
	quick, err := heijunka.NewWarmUp(lim, heijunka.WarmUpOptions{From: 0.5, Over: 10 * time.Second, Steps: 5})
	require.NoError(t, err)
	var events []time.Time
	take := func(at time.Time) {
		for lim.AllowN(at, 1) {
			events = append(events, at)
		}
	}
	take(t0)
	require.Len(t, events, full.Burst)
	require.NoError(t, slow.StartAt(t0))
	require.NoError(t, quick.StartAt(t0))
	take(t0)
	assert.Equal(t, full.Burst, len(events), "events at the start")
	for at := t0; at.Before(t0.Add(2 * time.Minute)); {
		at = at.Add(100 * time.Millisecond)
		take(at)
	}
	for i := range events {
		for j := i; j < len(events); j++ {
			w := events[j].Sub(events[i])
			bound := float64(full.Burst) + w.Seconds()*1e9/float64(full.Interval())
			if float64(j-i+1) > bound+1e-6 {
				t.Fatalf("%d events from %v to %v, bound %.3f", j-i+1, events[i].Sub(t0), events[j].Sub(t0), bound)
			}
		}
	}
}

// TestWarmUpStartedDuringAnothersClimbOwingNothing: the slow climb's first
// step has paid off its debt, but the full Limit, whose Burst its step's
// rounds down from a tenth, would still owe part of it: the quick climb
// counts that part, where it started as if nothing were owed and let
// three events more pass than the full Limit allows.
func TestWarmUpStartedDuringAnothersClimbOwingNothing(t *testing.T) {
	full := heijunka.Limit{Rate: 1, Burst: 14}
	lim := newLimiter(t, full)
	slow, err := heijunka.NewWarmUp(lim, heijunka.WarmUpOptions{From: 0.1, Over: time.Hour, Steps: 20})
	require.NoError(t, err)
	quick, err := heijunka.NewWarmUp(lim, heijunka.WarmUpOptions{From: 0.9, Over: 10 * time.Second, Steps: 5})
	require.NoError(t, err)
	require.True(t, lim.AllowN(t0, full.Burst))
	require.NoError(t, slow.StartAt(t0))
	at := t0.Add(10 * time.Second)
	require.Equal(t, heijunka.Limit{Rate: 0.1, Burst: 1}, lim.DecideN(at, 0).Limit)
	require.Zero(t, lim.DecideN(at, 0).ResetAfter, "the step owes nothing")
	require.NoError(t, quick.StartAt(at))
	n := 0
	for lim.AllowN(at, 1) {
		n++
	}
	// The full Limit lets 10 more pass in the 10 s; the quick climb's
	// first step, a Burst of 13 rather than 14, lets one fewer.
	assert.Equal(t, 9, n)
}

// TestWarmUpWindowPropertyManyWarmUps: whatever the full Limit, up to one
// event per nanosecond, and however a Limiter's WarmUps of different
// options start climbs during each other's, or SetLimit of the full Limit
// ends them, no more events pass in a window than the full Limit alone
// allows, counted in whole nanoseconds.
func TestWarmUpWindowPropertyManyWarmUps(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		full := heijunka.Limit{
			Rate:  rapid.SampledFrom([]float64{0.5, 3, 100, 1e6, 3e8, 1e9}).Draw(t, "rate"),
			Burst: rapid.IntRange(1, 40).Draw(t, "burst"),
		}
		iv := int64(full.Interval())
		refill := iv * int64(full.Burst)
		lim, err := heijunka.NewLimiter(full, heijunka.LimiterOptions{})
		if err != nil {
			t.Fatal(err)
		}
		var ws []*heijunka.WarmUp
		for range 3 {
			opts := heijunka.WarmUpOptions{
				From:  rapid.Float64Range(0.01, 1).Draw(t, "from"),
				Over:  time.Duration(rapid.Int64Range(1, 3*refill+10).Draw(t, "over")),
				Steps: rapid.SampledFrom([]int{1, 2, 3, 7, 20, 100, 5000}).Draw(t, "steps"),
			}
			opts.Steps = int(min(int64(opts.Steps), int64(opts.Over)))
			w, err := heijunka.NewWarmUp(lim, opts)
			if err != nil {
				t.Skip(err) // a From whose first step rounds to a Rate of 0
			}
			ws = append(ws, w)
		}
		var events []time.Time
		now := t0
		for range rapid.IntRange(1, 150).Draw(t, "calls") {
			now = now.Add(time.Duration(rapid.Int64Range(0, 2*iv).Draw(t, "gap")))
			n := rapid.IntRange(0, full.Burst+1).Draw(t, "n")
			switch rapid.IntRange(0, 4).Draw(t, "op") {
			case 0:
				if lim.AllowN(now, n) {
					events = appendN(events, now, n)
				}
			case 1:
				if lim.DecideN(now, n).Allowed {
					events = appendN(events, now, n)
				}
			case 4:
				if err := lim.SetLimitAt(now, full); err != nil {
					t.Fatal(err)
				}
			default:
				if err := ws[rapid.IntRange(0, len(ws)-1).Draw(t, "w")].StartAt(now); err != nil {
					t.Fatal(err)
				}
			}
		}
		for i := range events {
			for j := i; j < len(events); j++ {
				if w := int64(events[j].Sub(events[i])); int64(j-i+1-full.Burst)*iv > w {
					t.Fatalf("%d events in a window of %dns, burst %d, interval %dns", j-i+1, w, full.Burst, iv)
				}
			}
		}
	})
}

// TestWarmUpStartPastTheBurstAllowsNoZero: a climb short beside the full
// Limit's refill, started on a saturated Limiter, keeps a debt past its
// first step's Burst: AllowN with no events reports it, as it reports a
// booking past the burst.
func TestWarmUpStartPastTheBurstAllowsNoZero(t *testing.T) {
	lim := newLimiter(t, heijunka.PerMinute(60))
	w, err := heijunka.NewWarmUp(lim, heijunka.WarmUpOptions{From: 0.1, Over: time.Minute, Steps: 20})
	require.NoError(t, err)
	require.True(t, lim.AllowN(t0, 60))
	require.NoError(t, w.StartAt(t0))
	assert.False(t, lim.AllowN(t0, 0), "a debt past the first step's Burst")
	assert.Equal(t, 0, lim.DecideN(t0, 0).Remaining)
}

// TestWarmUpStartedAgainAtAnEarlierTime: a WarmUp started again with a
// time before the start of its climb under way, as two calls of
// StartAt(time.Now()) may arrive in the other order, climbs from that
// climb's start. It climbed from the earlier time, reached full before
// the event the full Limit counted was paid off (a call with a time read
// before the restart's set it), and let another event pass 700ms after
// it under a Limit of one a second.
func TestWarmUpStartedAgainAtAnEarlierTime(t *testing.T) {
	full := heijunka.Limit{Rate: 1, Burst: 1}
	lim := newLimiter(t, full)
	w, err := heijunka.NewWarmUp(lim, heijunka.WarmUpOptions{From: 0.1, Over: 100 * time.Millisecond, Steps: 1})
	require.NoError(t, err)
	require.True(t, lim.AllowN(t0, 1))
	require.NoError(t, w.StartAt(t0))
	require.NoError(t, w.StartAt(t0.Add(-500*time.Millisecond)))
	assert.Equal(t, heijunka.Limit{Rate: 0.1, Burst: 1}, lim.DecideN(t0.Add(-400*time.Millisecond), 0).Limit, "the step at -400ms")
	assert.False(t, lim.AllowN(t0.Add(700*time.Millisecond), 1), "an event at 700ms")
}

// TestWarmUpEndedBySetLimitToFull: a climb ended at once by setting the
// full Limit again, on a saturated Limiter, lets no more events pass
// than the full Limit alone: the debt of the climb's first step, a Burst
// of 1, carried over as it was, let 4 events pass at once where the full
// Limit allowed none.
func TestWarmUpEndedBySetLimitToFull(t *testing.T) {
	full := heijunka.Limit{Rate: 1, Burst: 10}
	for _, tc := range []struct {
		name  string
		after time.Duration
	}{
		{"at the start", 0},
		{"within the first step", 500 * time.Millisecond},
		{"within a later step", 3500 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lim := newLimiter(t, full)
			w, err := heijunka.NewWarmUp(lim, heijunka.WarmUpOptions{From: 0.1, Over: 10 * time.Second, Steps: 10})
			require.NoError(t, err)
			require.True(t, lim.AllowN(t0, full.Burst))
			require.NoError(t, w.StartAt(t0))
			at := t0.Add(tc.after)
			lim.DecideN(at, 0) // the climb reaches its step
			require.NoError(t, lim.SetLimitAt(at, full))
			n := 0
			for lim.AllowN(at, 1) {
				n++
			}
			// The full Limit paid off one event a second since t0.
			assert.Equal(t, int(tc.after/time.Second), n)
		})
	}
}

// TestNewWarmUpDuringAClimbChecksTheFullLimit: a WarmUp made while another
// climbs is checked against the full Limit it will climb to, not the step
// in force. The step's lower rate made a From that is valid for the full
// Limit look as if its first step took more than ten years to refill.
func TestNewWarmUpDuringAClimbChecksTheFullLimit(t *testing.T) {
	full := heijunka.Limit{Rate: 1e-3, Burst: 1}
	lim := newLimiter(t, full)
	first, err := heijunka.NewWarmUp(lim, heijunka.WarmUpOptions{From: 0.01})
	require.NoError(t, err)
	opts := heijunka.WarmUpOptions{From: 1e-4}
	_, err = heijunka.NewWarmUp(newLimiter(t, full), opts)
	require.NoError(t, err, "valid for the full Limit")
	require.NoError(t, first.Start())
	second, err := heijunka.NewWarmUp(lim, opts)
	require.NoError(t, err, "the full Limit is the same during a climb")
	require.NoError(t, second.Start())
	assert.InDelta(t, 1e-7, lim.Limit().Rate, 1e-12, "the second climb starts from its From of full")
}

// TestWarmUpRetryAfterAfterATimeGoneBack: a climb started at a time
// earlier than one used before converts the debt at its steps as a
// change at that later time would (see SetLimitAt); the RetryAfter of a
// denied request counts the conversion so, and the request passes then.
func TestWarmUpRetryAfterAfterATimeGoneBack(t *testing.T) {
	build := func() *heijunka.Limiter {
		lim := newLimiter(t, heijunka.Limit{Rate: 1, Burst: 2})
		w, err := heijunka.NewWarmUp(lim, heijunka.WarmUpOptions{From: 0.75, Over: 20, Steps: 1})
		require.NoError(t, err)
		require.True(t, lim.AllowN(t0, 1))
		require.NoError(t, w.StartAt(t0.Add(-500*time.Millisecond)))
		require.True(t, lim.AllowN(t0.Add(500*time.Millisecond), 0), "the climb is over")
		require.NoError(t, w.StartAt(t0))
		return lim
	}
	d := build().DecideN(t0, 1)
	require.False(t, d.Allowed)
	lim := build()
	assert.False(t, lim.DecideN(t0.Add(d.RetryAfter-1), 1).Allowed, "a nanosecond before RetryAfter %v", d.RetryAfter)
	lim = build()
	assert.True(t, lim.DecideN(t0.Add(d.RetryAfter), 1).Allowed, "at RetryAfter %v", d.RetryAfter)
}

// TestWarmUpWindowPropertyTimeGoingBack: the window property holds when
// times go back as well as forward, across climbs of two WarmUps started
// at any of those times and ended by SetLimitAt of the full Limit. A climb
// ended at a time before its start let events pass sooner than the full
// Limit allows.
func TestWarmUpWindowPropertyTimeGoingBack(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		full := heijunka.Limit{
			Rate:  rapid.Float64Range(0.5, 100).Draw(t, "rate"),
			Burst: rapid.IntRange(1, 20).Draw(t, "burst"),
		}
		lim, err := heijunka.NewLimiter(full, heijunka.LimiterOptions{})
		if err != nil {
			t.Fatal(err)
		}
		iv := full.Interval()
		var ws []*heijunka.WarmUp
		for range 2 {
			w, err := heijunka.NewWarmUp(lim, heijunka.WarmUpOptions{
				// Often near 1, where a step's Burst rounded up is the full one.
				From:  rapid.OneOf(rapid.Float64Range(0.05, 1), rapid.Float64Range(0.7, 1)).Draw(t, "from"),
				Over:  time.Duration(rapid.Int64Range(20, int64(40*iv)).Draw(t, "over")),
				Steps: rapid.IntRange(1, 10).Draw(t, "steps"),
			})
			if err != nil {
				t.Fatal(err)
			}
			ws = append(ws, w)
		}
		var events []time.Time
		now := t0
		// How far a step may go back, in quarter intervals: as far as a
		// full Burst and an interval more. Two intervals at most, with
		// From drawn evenly, missed a call gone back before the step in
		// force was set, counted at the step's slower rate.
		back := -rapid.Int64Range(0, 4*int64(full.Burst+1)).Draw(t, "back")
		for range rapid.IntRange(1, 150).Draw(t, "calls") {
			now = now.Add(time.Duration(rapid.Int64Range(back, 8).Draw(t, "gap")) * iv / 4)
			n := rapid.IntRange(0, full.Burst+1).Draw(t, "n")
			switch rapid.IntRange(0, 3).Draw(t, "op") {
			case 0:
				if lim.AllowN(now, n) {
					events = appendN(events, now, n)
				}
			case 1:
				if lim.DecideN(now, n).Allowed {
					events = appendN(events, now, n)
				}
			case 2:
				if err := ws[rapid.IntRange(0, 1).Draw(t, "warmUp")].StartAt(now); err != nil {
					t.Fatal(err)
				}
			case 3:
				if err := lim.SetLimitAt(now, full); err != nil {
					t.Fatal(err)
				}
			}
		}
		sortTimes(events)
		for i := range events {
			for j := i; j < len(events); j++ {
				w := events[j].Sub(events[i])
				bound := float64(full.Burst) + w.Seconds()*1e9/float64(iv)
				if float64(j-i+1) > bound+1e-6 {
					t.Fatalf("%d events in a window of %v, bound %.3f", j-i+1, w, bound)
				}
			}
		}
	})
}

// TestWarmUpRetryAfterAtATimeGoneBackAcrossSteps: a request at a time
// earlier than one used before is decided under the step in force, a
// later one than the step of its time; the step after that pays the debt
// off at its higher rate. RetryAfter counts it, to the nanosecond, where
// the step in force alone would give too long a wait.
func TestWarmUpRetryAfterAtATimeGoneBackAcrossSteps(t *testing.T) {
	// Step s begins at s seconds, with a Rate of 1+0.9s and a Burst of
	// round(1+0.9s): 2.8/s burst 3 at step 2, 3.7/s burst 4 at step 3.
	build := func() *heijunka.Limiter {
		lim := newLimiter(t, heijunka.Limit{Rate: 10, Burst: 10})
		w, err := heijunka.NewWarmUp(lim, heijunka.WarmUpOptions{From: 0.1, Over: 10 * time.Second, Steps: 10})
		require.NoError(t, err)
		require.NoError(t, w.StartAt(t0))
		for range 2 {
			require.True(t, lim.ReserveN(t0.Add(2*time.Second), 3).OK(), "booked at step 2")
		}
		return lim
	}
	now := t0.Add(1500 * time.Millisecond) // at step 1, under step 2
	d := build().DecideN(now, 1)
	require.False(t, d.Allowed)
	require.Less(t, d.RetryAfter, heijunka.InfDuration)
	assert.False(t, build().AllowN(now.Add(d.RetryAfter-1), 1), "a nanosecond before RetryAfter %v", d.RetryAfter)
	assert.True(t, build().AllowN(now.Add(d.RetryAfter), 1), "at RetryAfter %v", d.RetryAfter)
}

// TestWarmUpRetryAfterAtATimeGoneBackUnderEqualSteps: a climb of From 1
// has every step at the full Limit, so a step's Limit does not tell which
// step is in force. A request at a time before the step in force was set
// was counted as if the step of its time were in force, and a later step
// as if it were still to come: its RetryAfter said 500ms where the events
// pass after 375ms.
func TestWarmUpRetryAfterAtATimeGoneBackUnderEqualSteps(t *testing.T) {
	// Step 1 begins at 1.25s; the climb ends at 2.5s.
	build := func() *heijunka.Limiter {
		lim := newLimiter(t, heijunka.Limit{Rate: 1, Burst: 4})
		w, err := heijunka.NewWarmUp(lim, heijunka.WarmUpOptions{From: 1, Over: 2500 * time.Millisecond, Steps: 2})
		require.NoError(t, err)
		require.NoError(t, w.StartAt(t0))
		require.True(t, lim.AllowN(t0.Add(1750*time.Millisecond), 0), "sets step 1 at 1.75s")
		require.True(t, lim.AllowN(t0.Add(2*time.Second), 1), "the schedule runs to 3s")
		return lim
	}
	// A call at t before 1.75s passes two events once the schedule (3s),
	// the time gone back to 1.75s and two intervals lie within the Burst
	// (4s) of t: 3s + (1.75s - t) + 2s ≤ t + 4s, from 1.375s on.
	now := t0.Add(time.Second)
	d := build().DecideN(now, 2)
	require.False(t, d.Allowed)
	assert.Equal(t, 375*time.Millisecond, d.RetryAfter)
	assert.False(t, build().AllowN(now.Add(d.RetryAfter-1), 2), "a nanosecond before RetryAfter %v", d.RetryAfter)
	assert.True(t, build().AllowN(now.Add(d.RetryAfter), 2), "at RetryAfter %v", d.RetryAfter)
}

// TestWarmUpRetryAfterPropertyTimeGoingBack: whatever the calls before,
// at times going back as well as forward, the RetryAfter of a denied
// request during a climb is exact: the same calls followed by the request
// a nanosecond before it are denied, and at it allowed.
func TestWarmUpRetryAfterPropertyTimeGoingBack(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		full := heijunka.Limit{
			Rate:  rapid.Float64Range(0.5, 100).Draw(t, "rate"),
			Burst: rapid.IntRange(1, 20).Draw(t, "burst"),
		}
		iv := full.Interval()
		opts := heijunka.WarmUpOptions{
			From:  rapid.Float64Range(0.05, 1).Draw(t, "from"),
			Over:  time.Duration(rapid.IntRange(1, 40).Draw(t, "over")) * iv / 2,
			Steps: rapid.IntRange(1, 10).Draw(t, "steps"),
		}
		type call struct {
			op  int
			at  time.Time
			n   int
			out bool
		}
		calls := []call{{op: 0, at: t0}} // a climb from the start
		now := t0
		// How far a step may go back, in quarter intervals: as far as a
		// full Burst and an interval more, before the step in force was set.
		back := -rapid.Int64Range(8, 4*int64(full.Burst+1)+8).Draw(t, "back")
		for range rapid.IntRange(1, 30).Draw(t, "calls") {
			now = now.Add(time.Duration(rapid.Int64Range(back, 8).Draw(t, "gap")) * iv / 4)
			calls = append(calls, call{op: rapid.IntRange(0, 2).Draw(t, "op"), at: now, n: rapid.IntRange(0, full.Burst).Draw(t, "n")})
		}
		// replay makes the calls on a new Limiter, each as it went the
		// first time.
		replay := func(record bool) *heijunka.Limiter {
			lim, err := heijunka.NewLimiter(full, heijunka.LimiterOptions{})
			if err != nil {
				t.Fatal(err)
			}
			w, err := heijunka.NewWarmUp(lim, opts)
			if err != nil {
				t.Fatal(err)
			}
			for i := range calls {
				c := &calls[i]
				var out bool
				switch c.op {
				case 0:
					out = w.StartAt(c.at) == nil
				case 1:
					out = lim.AllowN(c.at, c.n)
				case 2:
					out = lim.ReserveN(c.at, c.n).OK()
				}
				if record {
					c.out = out
				} else if out != c.out {
					t.Fatalf("call %d went otherwise when made again", i)
				}
			}
			return lim
		}
		lim := replay(true)
		at := now.Add(time.Duration(rapid.Int64Range(back, 8).Draw(t, "gap")) * iv / 4)
		n := rapid.IntRange(1, full.Burst).Draw(t, "n")
		d := lim.DecideN(at, n)
		if d.Allowed || d.RetryAfter == heijunka.InfDuration {
			return
		}
		// The same calls, the denied request (which may raise the step)
		// and its retry.
		retry := func(after time.Duration) bool {
			lim := replay(false)
			if lim.DecideN(at, n) != d {
				t.Fatalf("the request went otherwise when made again")
			}
			return lim.AllowN(at.Add(after), n)
		}
		if retry(d.RetryAfter - 1) {
			t.Fatalf("%d events allowed a nanosecond before RetryAfter %v", n, d.RetryAfter)
		}
		if !retry(d.RetryAfter) {
			t.Fatalf("%d events denied at RetryAfter %v", n, d.RetryAfter)
		}
	})
}

// TestWarmUpLimitAtATimeGoneBack: LimitAt gives the limit a call at that
// time would be decided under. A call at a later time raised the climb to
// its step, and an earlier time does not lower it again: LimitAt gave
// the step of the earlier time, a limit no call got. A time ahead of the
// calls gives its step without raising the Limiter to it.
func TestWarmUpLimitAtATimeGoneBack(t *testing.T) {
	// Step s begins at s seconds, with a Rate of 1+0.9s and a Burst of
	// round(1+0.9s).
	lim := newLimiter(t, heijunka.Limit{Rate: 10, Burst: 10})
	w, err := heijunka.NewWarmUp(lim, heijunka.WarmUpOptions{From: 0.1, Over: 10 * time.Second, Steps: 10})
	require.NoError(t, err)
	require.NoError(t, w.StartAt(t0))
	step5 := heijunka.Limit{Rate: 5.5, Burst: 6}
	assert.Equal(t, step5, w.LimitAt(t0.Add(5*time.Second)), "ahead of the calls")
	assert.Equal(t, heijunka.Limit{Rate: 1, Burst: 1}, lim.DecideN(t0, 0).Limit, "and the Limiter was not raised")

	require.Equal(t, step5, lim.DecideN(t0.Add(5*time.Second), 0).Limit)
	at := t0.Add(2 * time.Second)
	assert.Equal(t, step5, w.LimitAt(at), "step 5 is in force")
	assert.Equal(t, step5, lim.DecideN(at, 0).Limit)
	assert.Equal(t, step5, w.LimitAt(t0.Add(-time.Second)), "before the climb's start")
	assert.Equal(t, heijunka.Limit{Rate: 6.4, Burst: 6}, w.LimitAt(t0.Add(6*time.Second)))
}

// TestWarmUpLimitAtPropertyTimeGoingBack: whatever the calls before, at
// times going back as well as forward, across climbs of two WarmUps and
// limits set by hand, LimitAt of a time is the Limit a call at that time
// is then decided under.
func TestWarmUpLimitAtPropertyTimeGoingBack(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		full := heijunka.Limit{
			Rate:  rapid.Float64Range(0.5, 100).Draw(t, "rate"),
			Burst: rapid.IntRange(1, 20).Draw(t, "burst"),
		}
		lim, err := heijunka.NewLimiter(full, heijunka.LimiterOptions{})
		if err != nil {
			t.Fatal(err)
		}
		iv := full.Interval()
		var ws []*heijunka.WarmUp
		for range 2 {
			w, err := heijunka.NewWarmUp(lim, heijunka.WarmUpOptions{
				From:  rapid.Float64Range(0.05, 1).Draw(t, "from"),
				Over:  time.Duration(rapid.Int64Range(20, int64(40*iv)).Draw(t, "over")),
				Steps: rapid.IntRange(1, 10).Draw(t, "steps"),
			})
			if err != nil {
				t.Fatal(err)
			}
			ws = append(ws, w)
		}
		now := t0
		for range rapid.IntRange(1, 100).Draw(t, "calls") {
			now = now.Add(time.Duration(rapid.Int64Range(-8, 8).Draw(t, "gap")) * iv / 4)
			w := ws[rapid.IntRange(0, 1).Draw(t, "warmUp")]
			switch rapid.IntRange(0, 4).Draw(t, "op") {
			case 0:
				want := w.LimitAt(now)
				if got := lim.DecideN(now, rapid.IntRange(0, full.Burst+1).Draw(t, "n")).Limit; got != want {
					t.Fatalf("a call at %v decided under %v, LimitAt gave %v", now.Sub(t0), got, want)
				}
			case 1:
				lim.AllowN(now, rapid.IntRange(0, full.Burst).Draw(t, "n"))
			case 2:
				lim.ReserveN(now, rapid.IntRange(0, full.Burst).Draw(t, "n"))
			case 3:
				if err := w.StartAt(now); err != nil {
					t.Fatal(err)
				}
			case 4:
				limit := full
				if rapid.Bool().Draw(t, "halve") {
					limit.Rate /= 2
				}
				if err := lim.SetLimitAt(now, limit); err != nil {
					t.Fatal(err)
				}
			}
		}
	})
}

// TestWarmUpStartedAtAnEarlierTimeThanAnEvent: a climb started again, by
// a WarmUp whose first step is faster than the step in force, at a time
// earlier than an event booked before lets no more events pass than the
// full Limit would. The debt was counted at the earlier time, the time
// gone back taken for events of the slower step and paid off at the
// faster one: under a full Limit of one a second, a second event passed
// 750ms after the first.
func TestWarmUpStartedAtAnEarlierTimeThanAnEvent(t *testing.T) {
	lim := newLimiter(t, heijunka.Limit{Rate: 1, Burst: 1})
	slow, err := heijunka.NewWarmUp(lim, heijunka.WarmUpOptions{From: 0.5, Over: time.Second, Steps: 1})
	require.NoError(t, err)
	fast, err := heijunka.NewWarmUp(lim, heijunka.WarmUpOptions{From: 1, Over: 20, Steps: 1})
	require.NoError(t, err)
	require.NoError(t, slow.StartAt(t0)) // 0.5/s, burst 1, for a second
	require.True(t, lim.AllowN(t0.Add(500*time.Millisecond), 1))
	require.NoError(t, fast.StartAt(t0)) // at full from t0 on
	assert.False(t, lim.AllowN(t0.Add(1250*time.Millisecond), 1), "750ms after the event")
	assert.False(t, lim.AllowN(t0.Add(1500*time.Millisecond-1), 1), "a nanosecond before a second has passed")
	assert.True(t, lim.AllowN(t0.Add(1500*time.Millisecond), 1), "a second after the event")
}

// TestWarmUpTimeGoneBackBeforeTheStep: a call at a time before the step
// in force was set, at the climb's start or at a step a later call
// reached, counts the time gone back as events of the full Limit. It
// counted it at the step's slower rate, as fewer events: under a full
// Limit of 0.5/s burst 2, a third event passed 1.75s after two, where the
// full Limit allows at most 2.875. RetryAfter counts the time gone back
// so, to the nanosecond.
func TestWarmUpTimeGoneBackBeforeTheStep(t *testing.T) {
	full := heijunka.Limit{Rate: 0.5, Burst: 2}
	for _, tc := range []struct {
		name  string
		opts  heijunka.WarmUpOptions
		start time.Duration
		step  time.Duration // a call at this time sets a later step, if not 0
		at    time.Duration
	}{
		{
			name:  "before the start",
			opts:  heijunka.WarmUpOptions{From: 0.77, Over: time.Hour, Steps: 1}, // 0.385/s burst 2
			start: 3500 * time.Millisecond,
			at:    1750 * time.Millisecond,
		},
		{
			// 0.25/s burst 1, then 0.375/s burst 2 from 2.75s on.
			name:  "before a step",
			opts:  heijunka.WarmUpOptions{From: 0.5, Over: 4 * time.Second, Steps: 2},
			start: 750 * time.Millisecond,
			step:  2750 * time.Millisecond,
			at:    1750 * time.Millisecond,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			build := func() *heijunka.Limiter {
				lim := newLimiter(t, full)
				w, err := heijunka.NewWarmUp(lim, tc.opts)
				require.NoError(t, err)
				require.True(t, lim.AllowN(t0, 2))
				require.NoError(t, w.StartAt(t0.Add(tc.start)))
				if tc.step != 0 {
					lim.DecideN(t0.Add(tc.step), 0)
					require.Equal(t, w.LimitAt(t0.Add(tc.step)), lim.DecideN(t0.Add(tc.at), 0).Limit, "the later step is in force")
				}
				return lim
			}
			at := t0.Add(tc.at)
			assert.False(t, build().AllowN(at, 1), "a third event %v after two", tc.at)
			d := build().DecideN(at, 1)
			require.False(t, d.Allowed)
			assert.False(t, build().AllowN(at.Add(d.RetryAfter-1), 1), "a nanosecond before RetryAfter %v", d.RetryAfter)
			assert.True(t, build().AllowN(at.Add(d.RetryAfter), 1), "at RetryAfter %v", d.RetryAfter)
			r := build().ReserveN(at, 1)
			require.True(t, r.OK())
			assert.Equal(t, d.RetryAfter, r.DelayFrom(at), "a reservation acts when a call would pass")
		})
	}
}

// TestWarmUpWindowPropertyBeforeTheStep: after a climb started on a
// saturated Limiter, calls at times before the start, or at any times
// around the climb (before the step a later call set, too), let no more
// events pass in a window than the full Limit alone allows. The start
// and the calls are drawn where that is most at risk: the first step's
// Burst often rounded up, the debt at the start small, the call gone
// back far.
func TestWarmUpWindowPropertyBeforeTheStep(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		full := heijunka.Limit{
			Rate:  rapid.Float64Range(0.5, 100).Draw(t, "rate"),
			Burst: rapid.IntRange(1, 10).Draw(t, "burst"),
		}
		iv := full.Interval()
		refill := iv * time.Duration(full.Burst)
		opts := heijunka.WarmUpOptions{
			From:  rapid.Float64Range(0.05, 1).Draw(t, "from"),
			Over:  time.Duration(rapid.IntRange(1, 32*full.Burst).Draw(t, "over")) * iv / 8,
			Steps: rapid.IntRange(1, 10).Draw(t, "steps"),
		}
		opts.Steps = int(min(int64(opts.Steps), int64(opts.Over)))
		if rapid.Bool().Draw(t, "roundsUp") {
			// Just past where the first step's Burst rounds up: its
			// refill is the longest beside the full Limit's, and so is
			// the time a call may go back and still pass.
			k := full.Burst - rapid.IntRange(0, full.Burst-1).Draw(t, "stepBurstBelowFull")
			opts.From = (float64(k) - 0.5 + rapid.Float64Range(0, 0.1).Draw(t, "past")) / float64(full.Burst)
		}
		lim, err := heijunka.NewLimiter(full, heijunka.LimiterOptions{})
		if err != nil {
			t.Fatal(err)
		}
		w, err := heijunka.NewWarmUp(lim, opts)
		if err != nil {
			t.Fatal(err)
		}
		var events []time.Time
		take := func(at time.Time, most int) {
			for range most {
				if !lim.AllowN(at, 1) {
					return
				}
				events = append(events, at)
			}
		}
		take(t0, full.Burst) // saturated, as in front of a service that failed
		// Times in eighths of an interval; the start often late in the
		// refill, when the debt is small and a call gone back may pass.
		eighth := iv / 8
		start := t0.Add(time.Duration(8*full.Burst-rapid.IntRange(0, 8*full.Burst).Draw(t, "startBeforeRefilled")) * eighth)
		if err := w.StartAt(start); err != nil {
			t.Fatal(err)
		}
		// First a call gone back before the start, often far, then any.
		back := 8*full.Burst - rapid.IntRange(0, 8*full.Burst).Draw(t, "backLessThanARefill")
		take(start.Add(-time.Duration(back)*eighth), full.Burst)
		for range rapid.IntRange(0, 30).Draw(t, "calls") {
			last := int64((opts.Over + refill) / eighth)
			if rapid.Bool().Draw(t, "beforeTheStart") {
				last = 0
			}
			at := start.Add(time.Duration(rapid.Int64Range(-int64(refill/eighth), last).Draw(t, "at")) * eighth)
			take(at, rapid.IntRange(0, full.Burst).Draw(t, "most"))
		}
		sortTimes(events)
		for i := range events {
			for j := i; j < len(events); j++ {
				w := events[j].Sub(events[i])
				bound := float64(full.Burst) + w.Seconds()*1e9/float64(iv)
				if float64(j-i+1) > bound+1e-6 {
					t.Fatalf("%d events in a window of %v, bound %.3f", j-i+1, w, bound)
				}
			}
		}
	})
}

// TestZeroWarmUpRefusesToStart: the zero WarmUp drives no Limiter; Start
// says so instead of panicking.
func TestZeroWarmUpRefusesToStart(t *testing.T) {
	var w heijunka.WarmUp
	require.NotPanics(t, func() { assert.ErrorContains(t, w.Start(), "not made by NewWarmUp") })
	require.NotPanics(t, func() { assert.ErrorContains(t, w.StartAt(time.Now()), "not made by NewWarmUp") })
	require.NotPanics(t, func() { assert.Equal(t, heijunka.Limit{}, w.LimitAt(time.Now()), "no Limiter: the zero Limit") })
	assert.Nil(t, w.Limiter())
}
