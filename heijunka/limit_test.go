package heijunka_test

import (
	"math"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/heijunka"
)

func TestLimitConstructors(t *testing.T) {
	for _, tc := range []struct {
		name     string
		got      heijunka.Limit
		want     heijunka.Limit
		interval time.Duration
	}{
		{"PerSecond", heijunka.PerSecond(10), heijunka.Limit{Rate: 10, Burst: 10}, 100 * time.Millisecond},
		{"PerSecond fraction", heijunka.PerSecond(2.5), heijunka.Limit{Rate: 2.5, Burst: 3}, 400 * time.Millisecond},
		{"PerMinute", heijunka.PerMinute(5), heijunka.Limit{Rate: 5.0 / 60, Burst: 5}, 12 * time.Second},
		{"PerHour", heijunka.PerHour(1), heijunka.Limit{Rate: 1.0 / 3600, Burst: 1}, time.Hour},
		{"PerHour at one event per nanosecond", heijunka.PerHour(3.6e12), heijunka.Limit{Rate: 1e9, Burst: 3.6e12}, time.Nanosecond},
		{"PerHour past 2^40", heijunka.PerHour(1<<41 + 0.5), heijunka.Limit{Rate: (1<<41 + 0.5) / 3600, Burst: 1<<41 + 1}, 2 * time.Nanosecond},
		{"Every", heijunka.Every(250 * time.Millisecond), heijunka.Limit{Rate: 4, Burst: 1}, 250 * time.Millisecond},
		{"Every(0) is unlimited", heijunka.Every(0), heijunka.Unlimited(), 0},
		{"WithBurst", heijunka.PerSecond(1).WithBurst(7), heijunka.Limit{Rate: 1, Burst: 7}, time.Second},
		{"zero is closed", heijunka.Limit{}, heijunka.Limit{}, heijunka.InfDuration},
	} {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, tc.got)
			require.NoError(t, tc.got.Validate())
			assert.Equal(t, tc.interval, tc.got.Interval())
		})
	}
}

func TestLimitValidation(t *testing.T) {
	for _, tc := range []struct {
		name  string
		limit heijunka.Limit
		want  string
	}{
		{"NaN", heijunka.PerSecond(math.NaN()), "Rate NaN is not a number"},
		{"negative rate", heijunka.PerSecond(-1), "Rate -1 is negative"},
		{"negative interval", heijunka.Every(-time.Second), "is negative"},
		{"negative burst", heijunka.PerSecond(1).WithBurst(-2), "Burst -2 is negative"},
		{"zero burst", heijunka.PerSecond(3).WithBurst(0), "Burst 0 with Rate 3/s"},
		{"faster than a nanosecond", heijunka.PerSecond(1 << 30), "exceeds one event per nanosecond"},
		{"absurd burst", heijunka.PerHour(1).WithBurst(1 << 20), "more than ten years"},
		{"tiny rate", heijunka.Limit{Rate: 1e-12, Burst: 1}, "more than ten years"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.limit.Validate()
			require.Error(t, err)
			assert.Contains(t, err.Error(), "heijunka: ")
			assert.Contains(t, err.Error(), tc.want)
			_, err = heijunka.NewLimiter(tc.limit, heijunka.LimiterOptions{})
			assert.Error(t, err)
			_, err = heijunka.NewKeyed(tc.limit, heijunka.KeyedOptions{})
			assert.Error(t, err)
			assert.Equal(t, time.Duration(0), tc.limit.Interval())
		})
	}
}

func TestLimitSpecialValues(t *testing.T) {
	assert.True(t, heijunka.Unlimited().IsUnlimited())
	assert.True(t, heijunka.PerSecond(math.Inf(1)).IsUnlimited(), "an infinite rate is unlimited")
	assert.True(t, heijunka.Limit{}.IsClosed())
	assert.True(t, heijunka.Limit{Rate: 0, Burst: 9}.IsClosed())
	assert.False(t, heijunka.PerSecond(1).IsClosed())
	assert.Equal(t, "unlimited", heijunka.Unlimited().String())
	assert.Equal(t, "closed", heijunka.Limit{}.String())
	assert.Equal(t, "10/s burst 10", heijunka.PerSecond(10).String())
	assert.Equal(t, "5/min burst 5", heijunka.PerMinute(5).String())
	assert.Equal(t, "2/h burst 2", heijunka.PerHour(2).String())
	assert.Equal(t, 1, heijunka.PerSecond(1e300).Burst, "huge counts do not overflow the burst")
	assert.Equal(t, 1<<40, heijunka.PerSecond(1<<40).Burst, "a burst up to 2^40 is kept")

	assert.True(t, heijunka.Limit{Rate: math.Inf(1)}.IsUnlimited(), "whatever the burst")
	assert.False(t, heijunka.PerSecond(1).IsUnlimited())
	assert.False(t, heijunka.Limit{Rate: math.Inf(1), Burst: -1}.IsUnlimited(), "an invalid limit is neither")
	assert.False(t, heijunka.Limit{Rate: 0, Burst: -1}.IsClosed(), "an invalid limit is neither")
	assert.False(t, heijunka.Unlimited().IsClosed())
	assert.False(t, heijunka.Limit{}.IsUnlimited())

	// Each unit is used from a rate of one per unit.
	assert.Equal(t, "1/s burst 1", heijunka.PerSecond(1).String())
	assert.Equal(t, "1/min burst 1", heijunka.PerMinute(1).String())
	assert.Equal(t, "1/h burst 1", heijunka.PerHour(1).String())
	assert.Equal(t, "0.5/h burst 1", heijunka.Limit{Rate: 0.5 / 3600, Burst: 1}.String())
}

// TestLimitBounds: the largest valid limits are valid, and one step past
// them is not.
func TestLimitBounds(t *testing.T) {
	const tenYears = 10 * 365 * 24 * 3600 // seconds
	require.NoError(t, heijunka.Limit{Rate: 1, Burst: tenYears}.Validate(), "a refill of exactly ten years")
	assert.ErrorContains(t, heijunka.Limit{Rate: 1, Burst: tenYears + 1}.Validate(), "more than ten years")
	// Past 2^53 a Burst is not exact as a float64: the bound holds in whole
	// nanoseconds all the same.
	thirds := heijunka.Limit{Rate: 1e9 / 3, Burst: tenYears * 1e9 / 3}
	require.Equal(t, 3*time.Nanosecond, thirds.Interval())
	require.NoError(t, thirds.Validate(), "a refill of exactly ten years")
	assert.ErrorContains(t, thirds.WithBurst(thirds.Burst+1).Validate(), "more than ten years", "three nanoseconds more")
	require.NoError(t, heijunka.PerSecond(1e9).Validate(), "one event per nanosecond")
	assert.ErrorContains(t, heijunka.PerSecond(1e9+1).Validate(), "exceeds one event per nanosecond")
}
