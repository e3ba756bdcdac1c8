package andon_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/andon"
	"github.com/taipattern/taikit/tai"
)

// A burn rate names its objective as it is: a 99.999% objective, five
// nines, is not "100%", which no objective can be.
func TestBurnRateNamesItsObjective(t *testing.T) {
	stats := newStats(t, andon.BurnWindowsOf(andon.PageBurnWindows())...)
	for _, c := range []struct {
		objective float64
		want      string
	}{
		{0.999, "99.9%"},
		{0.9995, "99.95%"},
		{0.95, "95%"},
		{0.99999, "99.999%"},
		{0.99995, "99.995%"},
		{0.999999, "99.9999%"},
		{0.9999999999, "99.99999999%"},
	} {
		cond := andon.BurnRate(stats, andon.SLO{Kind: "payment", Objective: c.objective}, andon.PageBurnWindows()...)
		assert.Equal(t, "error budget burn rate of payment ("+c.want+")", cond.(fmt.Stringer).String(), c.objective)
	}
}

// A burn rate exactly at a pair's Factor does not exceed it, whatever the
// objective: the error budget of 99.99% is 0.01%, not 1 − 0.9999 as a
// float64 computes it (9.999999999998899e-05), which would read an error
// ratio of exactly 14.4 times the budget as a burn rate above 14.4×.
func TestBurnRateExactlyAtTheFactorOfCommonObjectives(t *testing.T) {
	for _, c := range []struct {
		objective, factor float64
		failed, total     int // failed/total is exactly factor × (1 − objective)
	}{
		{0.9999, 14.4, 9, 6250},
		{0.9995, 14.4, 18, 2500},
		{0.9995, 6, 3, 1000},
		{0.999, 1, 1, 1000},
		{0.9, 6, 3, 5},
		{0.9, 1, 1, 10},
	} {
		name := fmt.Sprintf("%v at %v×", c.objective, c.factor)
		pair := andon.BurnWindow{Long: time.Hour, Short: 5 * time.Minute, Factor: c.factor}
		slo := andon.SLO{Kind: "payment", Objective: c.objective}

		at := newStats(t, pair.Short, pair.Long)
		observe(at, "payment", c.failed, tai.Failed, tai.Allow, time.Millisecond)
		observe(at, "payment", c.total-c.failed, tai.Succeeded, tai.Allow, time.Millisecond)
		m, err := andon.BurnRate(at, slo, pair).Measure(context.Background(), time.Now())
		require.NoError(t, err, name)
		assert.False(t, m.Active, "%s: a burn rate at the factor is not above it (%s)", name, m.Detail)

		above := newStats(t, pair.Short, pair.Long)
		observe(above, "payment", c.failed+1, tai.Failed, tai.Allow, time.Millisecond)
		observe(above, "payment", c.total-c.failed-1, tai.Succeeded, tai.Allow, time.Millisecond)
		m, err = andon.BurnRate(above, slo, pair).Measure(context.Background(), time.Now())
		require.NoError(t, err, name)
		assert.True(t, m.Active, "%s: one more failure is above it (%s)", name, m.Detail)
	}
}

// A pair whose Factor times the budget is exactly 1 could hold only if
// more than every signal failed: it is refused, as one above 1 is.
func TestBurnRateRefusesAFactorOfTheWholeBudget(t *testing.T) {
	stats := newStats(t, 5*time.Minute, time.Hour)
	for _, c := range []struct {
		objective, factor float64
		want              string
	}{
		{0.9, 10, "burn window 0: Factor 10 over an error budget of 10% needs an error ratio above 100%; it could never hold"},
		{0.9999, 10000, "burn window 0: Factor 10000 over an error budget of 0.01% needs an error ratio above 100%; it could never hold"},
	} {
		ev, err := andon.NewEvaluator(andon.EvaluatorOptions{Rules: []andon.Rule{{Name: "Burn", Severity: andon.Page,
			Condition: andon.BurnRate(stats, andon.SLO{Kind: "payment", Objective: c.objective},
				andon.BurnWindow{Long: time.Hour, Short: 5 * time.Minute, Factor: c.factor})}}})
		assert.ErrorContains(t, err, c.want, c.objective)
		if ev != nil {
			require.NoError(t, ev.Shutdown(context.Background()))
		}
	}
}
