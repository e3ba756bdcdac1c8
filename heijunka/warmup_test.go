package heijunka_test

import (
	"context"
	"math"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/heijunka"
)

func TestWarmUpClimbs(t *testing.T) {
	clock := newFakeClock()
	full := heijunka.Limit{Rate: 100, Burst: 100}
	w, err := heijunka.NewWarmUp(full, heijunka.WarmUpOptions{From: 0.1, Over: 10 * time.Second, Steps: 10, Now: clock.Now})
	require.NoError(t, err)
	assert.Equal(t, full, w.LimitAt(clock.Now()), "full until a recovery")

	w.Start()
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
		got := w.LimitAt(clock.Now().Add(tc.at))
		assert.InDelta(t, tc.limit.Rate, got.Rate, 1e-9, "at %v", tc.at)
		assert.Equal(t, tc.limit.Burst, got.Burst, "at %v", tc.at)
	}

	// Just after recovery only the reduced burst passes at once.
	admitted := 0
	for range 200 {
		if w.Allow() {
			admitted++
		}
	}
	assert.Equal(t, 10, admitted)

	// Count what passes each second while the clock runs in 10 ms ticks:
	// it climbs, and is never more than the step's burst plus its rate.
	var perSecond []int
	for s := range 12 {
		n := 0
		for range 100 {
			clock.Advance(10 * time.Millisecond)
			for w.AllowN(clock.Now(), 1) {
				n++
			}
		}
		perSecond = append(perSecond, n)
		lim := w.LimitAt(clock.Now())
		assert.LessOrEqual(t, float64(n), float64(lim.Burst)+lim.Rate, "second %d", s)
	}
	for i := 1; i < len(perSecond); i++ {
		assert.GreaterOrEqual(t, perSecond[i], perSecond[i-1], "climbing: %v", perSecond)
	}
	assert.InDelta(t, 100, perSecond[len(perSecond)-1], 2, "full again: %v", perSecond)
	assert.Less(t, perSecond[0], 30, "started low: %v", perSecond)
	clock.Advance(time.Second)
	require.NoError(t, w.Admit(context.Background(), ""))
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
		{"invalid limit", heijunka.PerSecond(-1), heijunka.WarmUpOptions{}, "Rate -1"},
		{"From above 1", heijunka.PerSecond(1), heijunka.WarmUpOptions{From: 1.5}, "From 1.5"},
		{"From NaN", heijunka.PerSecond(1), heijunka.WarmUpOptions{From: math.NaN()}, "From NaN"},
		{"negative From", heijunka.PerSecond(1), heijunka.WarmUpOptions{From: -0.1}, "From -0.1"},
		{"negative Over", heijunka.PerSecond(1), heijunka.WarmUpOptions{Over: -time.Second}, "Over -1s"},
		{"too many Steps", heijunka.PerSecond(1), heijunka.WarmUpOptions{Over: 10, Steps: 11}, "Steps 11"},
		{"negative Steps", heijunka.PerSecond(1), heijunka.WarmUpOptions{Steps: -1}, "Steps -1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := heijunka.NewWarmUp(tc.limit, tc.opts)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
}
