package kanban_test

import (
	"math"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/kanban"
)

func TestExponentialDelay(t *testing.T) {
	fixed := func(r float64) func() float64 { return func() float64 { return r } }
	tests := []struct {
		name    string
		b       kanban.Exponential
		attempt int
		want    time.Duration
	}{
		{"defaults, middle of jitter", kanban.Exponential{Rand: fixed(0.5)}, 1, 100 * time.Millisecond},
		{"doubles", kanban.Exponential{Rand: fixed(0.5)}, 3, 400 * time.Millisecond},
		{"jitter low end", kanban.Exponential{Rand: fixed(0)}, 1, 80 * time.Millisecond},
		{"jitter high end", kanban.Exponential{Rand: fixed(1)}, 1, 120 * time.Millisecond},
		{"capped", kanban.Exponential{Max: time.Second, Rand: fixed(0.5)}, 20, time.Second},
		{"jitter never exceeds cap", kanban.Exponential{Max: time.Second, Rand: fixed(1)}, 20, time.Second},
		{"no jitter", kanban.Exponential{Initial: time.Second, Multiplier: 3, Jitter: -1}, 3, 9 * time.Second},
		{"attempt 0 treated as 1", kanban.Exponential{Jitter: -1}, 0, 100 * time.Millisecond},
		{"huge attempt does not overflow", kanban.Exponential{Jitter: -1}, 1 << 30, 30 * time.Second},
		// float64(math.MaxInt64) is 2^63, one past the largest Duration.
		{"capped at the largest Max", kanban.Exponential{Initial: time.Hour, Max: math.MaxInt64, Jitter: -1}, 100, math.MaxInt64},
		{"the largest Initial", kanban.Exponential{Initial: math.MaxInt64, Max: math.MaxInt64, Jitter: -1}, 1, math.MaxInt64},
		{"jittered up to the largest Max", kanban.Exponential{Initial: time.Hour, Max: math.MaxInt64, Rand: fixed(1)}, 100, math.MaxInt64},
		{"jittered down from the largest Max", kanban.Exponential{Initial: time.Hour, Max: math.MaxInt64, Rand: fixed(0)}, 100, time.Duration(0.8 * float64(math.MaxInt64))},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, tc.b.Delay(tc.attempt))
		})
	}
}

func TestExponentialValidate(t *testing.T) {
	bad := []struct {
		b    kanban.Exponential
		want string
	}{
		{kanban.Exponential{Initial: -1}, "kanban: invalid Exponential.Initial -1ns: must not be negative"},
		{kanban.Exponential{Max: -1}, "kanban: invalid Exponential.Max -1ns: must not be negative"},
		{kanban.Exponential{Multiplier: 0.5}, "kanban: invalid Exponential.Multiplier 0.5: must be finite and at least 1"},
		{kanban.Exponential{Multiplier: math.NaN()}, "kanban: invalid Exponential.Multiplier NaN: must be finite and at least 1"},
		{kanban.Exponential{Multiplier: math.Inf(1)}, "kanban: invalid Exponential.Multiplier +Inf: must be finite and at least 1"},
		{kanban.Exponential{Jitter: 1.5}, "kanban: invalid Exponential.Jitter 1.5: must be a number at most 1"},
		{kanban.Exponential{Jitter: math.NaN()}, "kanban: invalid Exponential.Jitter NaN: must be a number at most 1"},
		{kanban.Exponential{Initial: time.Minute, Max: time.Second}, "kanban: invalid Exponential.Initial 1m0s: must not exceed Max"},
		{kanban.Exponential{Initial: 31 * time.Second}, "kanban: invalid Exponential.Initial 31s: must not exceed Max"},
	}
	for _, tc := range bad {
		assert.EqualError(t, tc.b.Validate(), tc.want)
	}
	for _, ok := range []kanban.Exponential{
		{},
		{Multiplier: 1},                          // a constant delay
		{Jitter: 1},                              // from nothing to twice the delay
		{Jitter: -1},                             // none
		{Initial: time.Second, Max: time.Second}, // constant, capped
		{Initial: 30 * time.Second},              // the default Max
	} {
		require.NoError(t, ok.Validate(), "%+v", ok)
	}
}

// TestExponentialDelayStaysInRange: whatever the fields, even ones
// Validate rejects, and whatever Rand returns, Delay is between 0 and Max.
func TestExponentialDelayStaysInRange(t *testing.T) {
	for _, r := range []float64{0, 0.5, 0.999, math.NaN(), -1, 2, math.Inf(1), math.Inf(-1)} {
		for _, b := range []kanban.Exponential{
			{Rand: func() float64 { return r }},
			{Jitter: 1.5, Rand: func() float64 { return r }},
			{Multiplier: 0.5, Rand: func() float64 { return r }},
			{Multiplier: math.NaN(), Rand: func() float64 { return r }},
			{Initial: time.Hour, Max: time.Minute, Rand: func() float64 { return r }},
			{Max: -time.Second, Rand: func() float64 { return r }},
			{Max: math.MinInt64, Jitter: -1},
			{Initial: -time.Second, Rand: func() float64 { return r }},
			{Initial: -time.Hour, Max: -time.Minute, Rand: func() float64 { return r }},
		} {
			for attempt := range 40 {
				d := b.Delay(attempt)
				assert.GreaterOrEqual(t, d, time.Duration(0))
				assert.LessOrEqual(t, d, max(b.Max, 30*time.Second))
			}
		}
	}
}
