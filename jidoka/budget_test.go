package jidoka_test

import (
	"math"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"pgregory.net/rapid"

	"github.com/taipattern/taikit/jidoka"
)

func TestNewRetryBudgetRejectsBadOptions(t *testing.T) {
	for _, tt := range []struct {
		opts jidoka.RetryBudgetOptions
		want string
	}{
		{jidoka.RetryBudgetOptions{Ratio: -0.1}, "RetryBudgetOptions.Ratio is -0.1"},
		{jidoka.RetryBudgetOptions{Ratio: math.NaN()}, "RetryBudgetOptions.Ratio is NaN"},
		{jidoka.RetryBudgetOptions{Ratio: jidoka.MaxBudgetRatio + 1}, "RetryBudgetOptions.Ratio is 1001"},
		{jidoka.RetryBudgetOptions{Burst: -1}, "RetryBudgetOptions.Burst is -1"},
		{jidoka.RetryBudgetOptions{Burst: jidoka.MaxBudgetBurst + 1}, "RetryBudgetOptions.Burst is"},
	} {
		b, err := jidoka.NewRetryBudget(tt.opts)
		assert.Nil(t, b)
		require.Error(t, err)
		assert.Contains(t, err.Error(), tt.want)
	}
	b, err := jidoka.NewRetryBudget(jidoka.RetryBudgetOptions{})
	require.NoError(t, err)
	assert.Equal(t, float64(jidoka.DefaultBudgetBurst), b.Tokens())
}

// The budget against a model in exact arithmetic (millionths of a token):
// it starts full, a deposit adds Ratio up to Burst, a withdrawal takes a
// whole token or fails. Over the whole run, retries ≤ Ratio × calls +
// Burst.
func TestRetryBudgetModel(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		ratioMicros := rapid.Int64Range(1, 3_000_000).Draw(t, "ratioMicros")
		burst := rapid.IntRange(1, 20).Draw(t, "burst")
		b, err := jidoka.NewRetryBudget(jidoka.RetryBudgetOptions{Ratio: float64(ratioMicros) / 1e6, Burst: burst})
		require.NoError(t, err)
		limit := int64(burst) * 1_000_000
		model := limit
		var calls, retries int64
		for _, deposit := range rapid.SliceOfN(rapid.Bool(), 1, 300).Draw(t, "ops") {
			if deposit {
				b.Deposit()
				calls++
				model = min(model+ratioMicros, limit)
			} else {
				want := model >= 1_000_000
				if want {
					model -= 1_000_000
					retries++
				}
				if got := b.Withdraw(); got != want {
					t.Fatalf("Withdraw = %v, model says %v (model %d µtokens)", got, want, model)
				}
			}
			if got := b.Tokens(); math.Abs(got-float64(model)/1e6) > 1e-9 {
				t.Fatalf("Tokens = %v, model %v", got, float64(model)/1e6)
			}
		}
		if float64(retries) > float64(ratioMicros)/1e6*float64(calls)+float64(burst)+1e-9 {
			t.Fatalf("%d retries for %d calls, ratio %v, burst %d", retries, calls, float64(ratioMicros)/1e6, burst)
		}
	})
}

// Concurrent callers never withdraw more than the budget held.
func TestRetryBudgetConcurrent(t *testing.T) {
	b, err := jidoka.NewRetryBudget(jidoka.RetryBudgetOptions{Ratio: 0.5, Burst: 10})
	require.NoError(t, err)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var retries int
	for range 8 {
		wg.Go(func() {
			n := 0
			for range 1000 {
				b.Deposit()
				if b.Withdraw() {
					n++
				}
				if b.Withdraw() {
					n++
				}
			}
			mu.Lock()
			retries += n
			mu.Unlock()
		})
	}
	wg.Wait()
	assert.LessOrEqual(t, retries, 8*1000/2+10)
	assert.GreaterOrEqual(t, retries, 8*1000/2)
}

// Ratio is kept to the millionth of a token, rounded down: over a long run
// the retries never exceed Ratio × calls + Burst, even for a Ratio that
// rounding to the nearest millionth would raise.
func TestRetryBudgetLongRunKeepsItsBound(t *testing.T) {
	for _, ratio := range []float64{1.5e-6, 2.5e-6, 1e-6, 0.000249} {
		b, err := jidoka.NewRetryBudget(jidoka.RetryBudgetOptions{Ratio: ratio, Burst: 1})
		require.NoError(t, err)
		var retries int
		calls := 2_000_000
		for range calls {
			b.Deposit()
			for b.Withdraw() {
				retries++
			}
		}
		assert.LessOrEqual(t, float64(retries), ratio*float64(calls)+1, "ratio %v", ratio)
		assert.GreaterOrEqual(t, float64(retries), ratio*float64(calls)-1, "ratio %v", ratio)
	}
}

// A Ratio below a millionth cannot be kept: it is refused, not raised to
// a millionth.
func TestNewRetryBudgetRefusesRatioBelowAMillionth(t *testing.T) {
	for _, ratio := range []float64{1e-7, 9.99e-7, math.SmallestNonzeroFloat64} {
		b, err := jidoka.NewRetryBudget(jidoka.RetryBudgetOptions{Ratio: ratio})
		assert.Nil(t, b)
		require.Error(t, err, "ratio %v", ratio)
		assert.Contains(t, err.Error(), "RetryBudgetOptions.Ratio is")
	}
	_, err := jidoka.NewRetryBudget(jidoka.RetryBudgetOptions{Ratio: jidoka.MinBudgetRatio})
	require.NoError(t, err)
}
