package andon_test

import (
	"context"
	"fmt"
	"math"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/taipattern/taikit/andon"
	"github.com/taipattern/taikit/kaizen"
	"github.com/taipattern/taikit/tai"
)

func TestStatsConditions(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		stats := newStats(t, time.Minute, 5*time.Minute)
		ctx := context.Background()
		// 100 payments over the last minute: 3 denied by policy, 6 failed,
		// 1 rejected by a gate, the rest succeeded; 2 of them slow.
		observe(stats, "payment", 88, tai.Succeeded, tai.Allow, 100*time.Millisecond)
		observe(stats, "payment", 2, tai.Succeeded, tai.Allow, 7*time.Second)
		observe(stats, "payment", 3, tai.Denied, tai.Deny, 50*time.Millisecond)
		observe(stats, "payment", 6, tai.Failed, tai.Allow, 200*time.Millisecond)
		observe(stats, "payment", 1, tai.Rejected, 0, time.Millisecond)
		time.Sleep(time.Second)

		tests := []struct {
			name    string
			cond    andon.Condition
			active  bool
			value   float64
			samples uint64
			unit    andon.Unit
			text    string
		}{
			{"deny outcome rate above 2%", andon.OutcomeRate(stats, "payment", 5*time.Minute, 0.02, tai.Denied), true, 0.03, 100, andon.UnitRatio, "3%"},
			{"deny outcome rate under 5%", andon.OutcomeRate(stats, "payment", 5*time.Minute, 0.05, tai.Denied), false, 0.03, 100, andon.UnitRatio, "3%"},
			{"failed or rejected", andon.OutcomeRate(stats, "payment", time.Minute, 0.05, tai.Failed, tai.Rejected, tai.Failed), true, 0.07, 100, andon.UnitRatio, "7%"},
			{"error rate above 5%", andon.ErrorRate(stats, "payment", 5*time.Minute, 0.05), true, 0.06, 100, andon.UnitRatio, "6%"},
			{"deny verdicts among decided", andon.VerdictRate(stats, "payment", 5*time.Minute, 0.02, tai.Deny), true, 3.0 / 99, 99, andon.UnitRatio, "3.03%"},
			{"p99 above 5s", andon.LatencyQuantile(stats, "payment", 5*time.Minute, 0.99, 5*time.Second), true, 7, 100, andon.UnitSeconds, ""},
			{"p50 under 5s", andon.LatencyQuantile(stats, "payment", 5*time.Minute, 0.5, 5*time.Second), false, 0.1, 100, andon.UnitSeconds, ""},
			{"unknown kind has no samples", andon.ErrorRate(stats, "refund", 5*time.Minute, 0.05), false, 0, 0, andon.UnitRatio, "0%"},
		}
		for _, tt := range tests { // no t.Run in a synctest bubble
			m, err := tt.cond.Measure(ctx, time.Now())
			require.NoError(t, err, tt.name)
			assert.Equal(t, tt.active, m.Active, tt.name)
			assert.InEpsilon(t, tt.value+1e-9, m.Value+1e-9, 0.01, tt.name)
			assert.Equal(t, tt.samples, m.Samples, tt.name)
			assert.Equal(t, tt.unit, m.Unit, tt.name)
			if tt.text != "" { // quantiles are within 0.4%, so their text may differ
				assert.Equal(t, tt.text, m.Unit.Format(m.Value), tt.name)
			}
		}

		// Eleven minutes later the data has left both windows.
		time.Sleep(11 * time.Minute)
		m, err := andon.ErrorRate(stats, "payment", 5*time.Minute, 0.05).Measure(ctx, time.Now())
		require.NoError(t, err)
		assert.False(t, m.Active)
		assert.Zero(t, m.Samples)
	})
}

func TestStatsRuleEndToEnd(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		stats := newStats(t, time.Minute, 5*time.Minute)
		e := newEvaluator(t, andon.EvaluatorOptions{Rules: []andon.Rule{{
			Name: "HighFraudRate", Severity: andon.Page, For: 2 * time.Minute, MinSamples: 50,
			Condition: andon.VerdictRate(stats, "payment", 5*time.Minute, 0.02, tai.Deny),
			Summary:   "fraud rate {{ $value | humanizePercentage }}",
		}}})
		ctx := context.Background()
		get := func() andon.Alert { a, _ := e.Alert("HighFraudRate"); return a }

		observe(stats, "payment", 10, tai.Denied, tai.Deny, time.Millisecond)
		e.Evaluate(ctx)
		assert.Equal(t, andon.Inactive, get().State)
		assert.True(t, get().InsufficientData, "10 samples of 50")

		observe(stats, "payment", 90, tai.Succeeded, tai.Allow, time.Millisecond)
		e.Evaluate(ctx)
		a := get()
		assert.Equal(t, andon.Pending, a.State)
		assert.Equal(t, "fraud rate 10%", a.Annotations["summary"])

		time.Sleep(2 * time.Minute)
		e.Evaluate(ctx)
		assert.Equal(t, andon.Firing, get().State)

		// Plenty of good traffic brings the rate down: 10 / 1000 = 1%.
		observe(stats, "payment", 900, tai.Succeeded, tai.Allow, time.Millisecond)
		e.Evaluate(ctx)
		assert.Equal(t, andon.Resolved, get().State)
	})
}

func TestStatsConditionValidation(t *testing.T) {
	stats := newStats(t, time.Minute, 5*time.Minute)
	tests := []struct {
		name string
		cond andon.Condition
		want string
	}{
		{"window not kept", andon.ErrorRate(stats, "payment", 10*time.Minute, 0.05), "window 10m is not kept by the Stats (it keeps 1m, 5m); add it to kaizen.StatsOptions.Windows"},
		{"nil stats", andon.ErrorRate(nil, "payment", 5*time.Minute, 0.05), "the StatsSource is nil"},
		{"empty kind", andon.ErrorRate(stats, "", 5*time.Minute, 0.05), "the signal kind is empty"},
		{"threshold above 1", andon.ErrorRate(stats, "payment", 5*time.Minute, 5), "threshold 5 is outside [0, 1)"},
		{"no outcome", andon.OutcomeRate(stats, "payment", 5*time.Minute, 0.05), "no outcome given"},
		{"no verdict", andon.VerdictRate(stats, "payment", 5*time.Minute, 0.05), "no verdict given"},
		{"none verdict", andon.VerdictRate(stats, "payment", 5*time.Minute, 0.05, 0), "verdict none is not allow, review or deny"},
		{"bad quantile", andon.LatencyQuantile(stats, "payment", 5*time.Minute, 99, time.Second), "quantile 99 is outside (0, 1]"},
		{"zero latency", andon.LatencyQuantile(stats, "payment", 5*time.Minute, 0.99, 0), "latency threshold 0s is not positive"},
		{"burn window not kept", andon.BurnRate(stats, andon.SLO{Kind: "payment", Objective: 0.999}, andon.PageBurnWindows()...), "window 1h is not kept by the Stats"},
		{"burn objective", andon.BurnRate(stats, andon.SLO{Kind: "payment", Objective: 1}, andon.BurnWindow{Long: 5 * time.Minute, Short: time.Minute, Factor: 2}), "SLO.Objective 1 is outside (0, 1)"},
		{"burn kind", andon.BurnRate(stats, andon.SLO{Objective: 0.99}, andon.BurnWindow{Long: 5 * time.Minute, Short: time.Minute, Factor: 2}), "SLO.Kind is empty"},
		{"burn no pairs", andon.BurnRate(stats, andon.SLO{Kind: "payment", Objective: 0.99}), "no burn windows"},
		{"burn pair order", andon.BurnRate(stats, andon.SLO{Kind: "payment", Objective: 0.99}, andon.BurnWindow{Long: time.Minute, Short: 5 * time.Minute, Factor: 2}), "burn window 0: Long 1m0s must be longer than Short 5m0s > 0"},
		{"burn factor", andon.BurnRate(stats, andon.SLO{Kind: "payment", Objective: 0.99}, andon.BurnWindow{Long: 5 * time.Minute, Short: time.Minute}), "burn window 0: Factor 0 is not a positive number"},
		{"nil line", andon.LineStopped(nil), "the Line is nil"},
		{"nil breaker", andon.BreakerOpen(nil), "the Breaker is nil"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := andon.NewEvaluator(andon.EvaluatorOptions{Rules: []andon.Rule{{Name: "X", Severity: andon.Page, Condition: tt.cond}}})
			require.Error(t, err)
			assert.Contains(t, err.Error(), `andon: rule "X": Rule.Condition: `+tt.want)
		})
	}
}

func TestBurnRate(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		windows := andon.BurnWindowsOf(andon.PageBurnWindows(), andon.TicketBurnWindows())
		require.Equal(t, []time.Duration{5 * time.Minute, 30 * time.Minute, time.Hour, 2 * time.Hour, 6 * time.Hour, 24 * time.Hour, 72 * time.Hour}, windows)
		stats := newStats(t, windows...)
		slo := andon.SLO{Kind: "payment", Objective: 0.999}
		page := andon.BurnRate(stats, slo, andon.PageBurnWindows()...)
		ticket := andon.BurnRate(stats, slo, andon.TicketBurnWindows()...)
		e := newEvaluator(t, andon.EvaluatorOptions{Rules: []andon.Rule{
			{Name: "PaymentBudgetBurnPage", Severity: andon.Page, Condition: page},
			{Name: "PaymentBudgetBurnTicket", Severity: andon.Ticket, Condition: ticket},
		}})
		ctx := context.Background()

		// Six hours of 0.2% errors: a 2× burn, over every ticket threshold but
		// the 3× one; and 3d/6h at 1× holds.
		for range 72 {
			observe(stats, "payment", 998, tai.Succeeded, tai.Allow, time.Millisecond)
			observe(stats, "payment", 2, tai.Failed, tai.Allow, time.Millisecond)
			time.Sleep(5 * time.Minute)
		}
		e.Evaluate(ctx)
		p, _ := e.Alert("PaymentBudgetBurnPage")
		tk, _ := e.Alert("PaymentBudgetBurnTicket")
		assert.Equal(t, andon.Inactive, p.State, "2× is no page")
		assert.Equal(t, andon.Firing, tk.State, "2× over 3d and 6h is a ticket")
		assert.InDelta(t, 2, tk.Value, 0.05, "value is the burn rate of the pair that holds (3d)")
		assert.InDelta(t, 1, tk.Threshold, 1e-9)
		assert.Equal(t, andon.UnitFactor, tk.Unit)
		assert.Contains(t, tk.Detail, "3d 2× and 6h 2× (> 1×)")

		// Then 5% errors for five minutes: 50× over 5m but the hour is diluted.
		observe(stats, "payment", 950, tai.Succeeded, tai.Allow, time.Millisecond)
		observe(stats, "payment", 50, tai.Failed, tai.Allow, time.Millisecond)
		time.Sleep(time.Second)
		e.Evaluate(ctx)
		p, _ = e.Alert("PaymentBudgetBurnPage")
		require.Equal(t, andon.Inactive, p.State, "the 1h window has %s: %s", p.ValueText(), p.Detail)

		// Forty more minutes of it: the hour burns at more than 14.4×.
		for range 8 {
			time.Sleep(5 * time.Minute)
			observe(stats, "payment", 950, tai.Succeeded, tai.Allow, time.Millisecond)
			observe(stats, "payment", 50, tai.Failed, tai.Allow, time.Millisecond)
		}
		time.Sleep(time.Second)
		e.Evaluate(ctx)
		p, _ = e.Alert("PaymentBudgetBurnPage")
		assert.Equal(t, andon.Firing, p.State, p.Detail)
		assert.Greater(t, p.Value, 14.4)
		assert.InDelta(t, 14.4, p.Threshold, 1e-9)
		assert.Contains(t, p.Annotations["summary"], "error budget burn rate of payment (99.9%) is ")

		// Recovery: fifteen minutes of clean traffic clear the 5m window, but
		// the 6h/30m pair still holds; after thirty-five the 30m window is
		// clean too and the page resolves while the hour is still burning.
		for range 3 {
			time.Sleep(5 * time.Minute)
			observe(stats, "payment", 1000, tai.Succeeded, tai.Allow, time.Millisecond)
		}
		time.Sleep(time.Second)
		e.Evaluate(ctx)
		p, _ = e.Alert("PaymentBudgetBurnPage")
		assert.Equal(t, andon.Firing, p.State, p.Detail)
		assert.InDelta(t, 6, p.Threshold, 1e-9, "the 6h pair is the one that holds")
		for range 4 {
			time.Sleep(5 * time.Minute)
			observe(stats, "payment", 1000, tai.Succeeded, tai.Allow, time.Millisecond)
		}
		time.Sleep(time.Second)
		e.Evaluate(ctx)
		p, _ = e.Alert("PaymentBudgetBurnPage")
		assert.Equal(t, andon.Resolved, p.State, p.Detail)
		assert.Greater(t, p.Value, 14.4, "the hour still burns; the short window resolved it")
	})
}

func TestBurnRateCountsChosenErrors(t *testing.T) {
	stats := newStats(t, time.Minute, 5*time.Minute)
	pair := andon.BurnWindow{Long: 5 * time.Minute, Short: time.Minute, Factor: 2}
	failedOnly := andon.BurnRate(stats, andon.SLO{Kind: "k", Objective: 0.99}, pair)
	withShed := andon.BurnRate(stats, andon.SLO{Kind: "k", Objective: 0.99, Errors: []tai.Outcome{tai.Failed, tai.Rejected}}, pair)
	observe(stats, "k", 97, tai.Succeeded, tai.Allow, time.Millisecond)
	observe(stats, "k", 3, tai.Rejected, 0, time.Millisecond)
	m, err := failedOnly.Measure(context.Background(), time.Now())
	require.NoError(t, err)
	assert.False(t, m.Active)
	m, err = withShed.Measure(context.Background(), time.Now())
	require.NoError(t, err)
	assert.True(t, m.Active)
	assert.InDelta(t, 3, m.Value, 1e-9)
	assert.EqualValues(t, 100, m.Samples)
}

func TestBurnWindowsAreFreshCopies(t *testing.T) {
	p := andon.PageBurnWindows()
	p[0].Factor = 1000
	p = append(p[:1], andon.BurnWindow{Long: time.Minute, Short: time.Second, Factor: 1})
	assert.Equal(t, []andon.BurnWindow{
		{Long: time.Hour, Short: 5 * time.Minute, Factor: 14.4},
		{Long: 6 * time.Hour, Short: 30 * time.Minute, Factor: 6},
	}, andon.PageBurnWindows(), "a caller's change does not reach the next caller")
	tk := andon.TicketBurnWindows()
	tk[1].Long = 0
	assert.Equal(t, []andon.BurnWindow{
		{Long: 24 * time.Hour, Short: 2 * time.Hour, Factor: 3},
		{Long: 72 * time.Hour, Short: 6 * time.Hour, Factor: 1},
	}, andon.TicketBurnWindows())
	_ = p
}

var _ andon.StatsSource = (*kaizen.Stats)(nil)

func TestStatsConditionsAtTheThreshold(t *testing.T) {
	stats := newStats(t, time.Minute, 5*time.Minute)
	// 100 payments of 5s: 3 denied by a policy, 4 failed, 2 shed by a gate.
	observe(stats, "payment", 91, tai.Succeeded, tai.Allow, 5*time.Second)
	observe(stats, "payment", 3, tai.Denied, tai.Deny, 5*time.Second)
	observe(stats, "payment", 4, tai.Failed, tai.Allow, 5*time.Second)
	observe(stats, "payment", 2, tai.Rejected, 0, 5*time.Second)
	ctx := context.Background()
	for _, tt := range []struct {
		name    string
		cond    andon.Condition
		value   float64
		samples uint64
	}{
		{"outcome rate equal to the threshold", andon.OutcomeRate(stats, "payment", 5*time.Minute, 0.03, tai.Denied), 0.03, 100},
		{"error rate equal to the threshold", andon.ErrorRate(stats, "payment", time.Minute, 0.04), 0.04, 100},
		{"verdict rate equal to the threshold", andon.VerdictRate(stats, "payment", 5*time.Minute, 3.0/98, tai.Deny, tai.Deny), 3.0 / 98, 98},
		{"latency equal to the threshold", andon.LatencyQuantile(stats, "payment", 5*time.Minute, 0.99, 5*time.Second), 5, 100},
		{"latency at quantile 1", andon.LatencyQuantile(stats, "payment", 5*time.Minute, 1, 5*time.Second), 5, 100},
		{"no decision yet", andon.VerdictRate(stats, "refund", 5*time.Minute, 0, tai.Deny), 0, 0},
	} {
		m, err := tt.cond.Measure(ctx, time.Now())
		require.NoError(t, err, tt.name)
		assert.False(t, m.Active, "%s: holds only above the threshold", tt.name)
		assert.InDelta(t, tt.value, m.Value, 1e-12, tt.name)
		assert.Equal(t, tt.samples, m.Samples, tt.name)
	}
	m, err := andon.VerdictRate(stats, "payment", 5*time.Minute, 0.03, tai.Deny, tai.Review, tai.Deny).Measure(ctx, time.Now())
	require.NoError(t, err)
	assert.True(t, m.Active)
	assert.InDelta(t, 3.0/98, m.Value, 1e-12, "each verdict counted once, over the 98 decided")
	assert.Equal(t, "deny+review verdict rate of payment over 5m", fmt.Sprint(andon.VerdictRate(stats, "payment", 5*time.Minute, 0.03, tai.Deny, tai.Review, tai.Deny)))
	assert.Equal(t, "failed+rejected rate of payment over 1m", fmt.Sprint(andon.OutcomeRate(stats, "payment", time.Minute, 0.03, tai.Failed, tai.Rejected, tai.Failed)))
	assert.Equal(t, "p50 latency of payment over 5m", fmt.Sprint(andon.LatencyQuantile(stats, "payment", 5*time.Minute, 0.5, time.Second)))
}

func TestStatsConditionLimits(t *testing.T) {
	stats := newStats(t, time.Minute, 5*time.Minute)
	ok := func(c andon.Condition) error {
		_, err := andon.NewEvaluator(andon.EvaluatorOptions{Rules: []andon.Rule{{Name: "X", Severity: andon.Page, Condition: c}}})
		return err
	}
	pair := andon.BurnWindow{Long: 5 * time.Minute, Short: time.Minute, Factor: 2}
	for _, c := range []andon.Condition{
		andon.ErrorRate(stats, "payment", time.Minute, 0),
		andon.ErrorRate(stats, "payment", time.Minute, 0.999),
		andon.LatencyQuantile(stats, "payment", time.Minute, 1, time.Nanosecond),
		andon.BurnRate(stats, andon.SLO{Kind: "payment", Objective: 0.0001}, andon.BurnWindow{Long: 5 * time.Minute, Short: time.Minute, Factor: 1.0001}),
		andon.BurnRate(stats, andon.SLO{Kind: "payment", Objective: 0.931}, andon.BurnWindow{Long: 5 * time.Minute, Short: time.Minute, Factor: 14.4}),
	} {
		assert.NoError(t, ok(c))
	}
	for _, tt := range []struct {
		c    andon.Condition
		want string
	}{
		{andon.ErrorRate(stats, "payment", time.Minute, 1), "threshold 1 is outside [0, 1)"},
		{andon.ErrorRate(stats, "payment", time.Minute, -0.5), "threshold -0.5 is outside [0, 1)"},
		{andon.ErrorRate(stats, "payment", time.Minute, math.NaN()), "threshold NaN is outside [0, 1)"},
		{andon.OutcomeRate(stats, "payment", time.Minute, 0.1, tai.Failed, 9), "outcome 9 is not a tai.Outcome"},
		{andon.VerdictRate(nil, "payment", time.Minute, 0.1, tai.Deny), "the StatsSource is nil"},
		{andon.VerdictRate(stats, "", time.Minute, 0.1, tai.Deny), "the signal kind is empty"},
		{andon.VerdictRate(stats, "payment", 2*time.Minute, 0.1, tai.Deny), "window 2m is not kept"},
		{andon.VerdictRate(stats, "payment", time.Minute, 1, tai.Deny), "threshold 1 is outside [0, 1)"},
		{andon.LatencyQuantile(stats, "payment", time.Minute, 0, time.Second), "quantile 0 is outside (0, 1]"},
		{andon.LatencyQuantile(stats, "payment", time.Minute, -1, time.Second), "quantile -1 is outside (0, 1]"},
		{andon.LatencyQuantile(stats, "payment", time.Minute, 0.5, -time.Second), "latency threshold -1s is not positive"},
		{andon.LatencyQuantile(nil, "payment", time.Minute, 0.5, time.Second), "the StatsSource is nil"},
		{andon.BurnRate(nil, andon.SLO{Kind: "payment", Objective: 0.99}, pair), "the StatsSource is nil"},
		{andon.BurnRate(stats, andon.SLO{Kind: "payment", Objective: 0}, pair), "SLO.Objective 0 is outside (0, 1)"},
		{andon.BurnRate(stats, andon.SLO{Kind: "payment", Objective: 0.99, Errors: []tai.Outcome{8}}, pair), "SLO.Errors: outcome 8 is not a tai.Outcome"},
		{andon.BurnRate(stats, andon.SLO{Kind: "payment", Objective: 0.99}, andon.BurnWindow{Long: time.Minute, Factor: 2}), "burn window 0: Long 1m0s must be longer than Short 0s > 0"},
		{andon.BurnRate(stats, andon.SLO{Kind: "payment", Objective: 0.99}, pair, andon.BurnWindow{Long: time.Minute, Short: time.Minute, Factor: 2}), "burn window 1: Long 1m0s must be longer than Short 1m0s > 0"},
		{andon.BurnRate(stats, andon.SLO{Kind: "payment", Objective: 0.99}, andon.BurnWindow{Long: 5 * time.Minute, Short: time.Minute, Factor: math.Inf(1)}), "burn window 0: Factor +Inf is not a positive number"},
		{andon.BurnRate(stats, andon.SLO{Kind: "payment", Objective: 0.99}, andon.BurnWindow{Long: 5 * time.Minute, Short: time.Minute, Factor: math.NaN()}), "burn window 0: Factor NaN is not a positive number"},
		{andon.BurnRate(stats, andon.SLO{Kind: "payment", Objective: 0.99}, andon.BurnWindow{Long: 5 * time.Minute, Short: 2 * time.Minute, Factor: 2}), "window 2m is not kept"},
		{andon.BurnRate(stats, andon.SLO{Kind: "payment", Objective: 0.0001}, pair), "burn window 0: Factor 2 over an error budget of 99.99% needs an error ratio above 200%; it could never hold"},
		{andon.BurnRate(stats, andon.SLO{Kind: "payment", Objective: 0.5}, andon.BurnWindow{Long: 5 * time.Minute, Short: time.Minute, Factor: 2}), "burn window 0: Factor 2 over an error budget of 50% needs an error ratio above 100%; it could never hold"},
		{andon.BurnRate(stats, andon.SLO{Kind: "payment", Objective: 0.9}, pair, andon.BurnWindow{Long: 5 * time.Minute, Short: time.Minute, Factor: 14.4}), "burn window 1: Factor 14.4 over an error budget of 10% needs an error ratio above 144%; it could never hold"},
	} {
		assert.ErrorContains(t, ok(tt.c), tt.want)
	}
}

func TestBurnRateAtTheFactor(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		// An objective of 50% has a budget of 0.5: an error ratio of 0.5
		// burns at exactly 1×.
		slo := andon.SLO{Kind: "k", Objective: 0.5}
		pair := andon.BurnWindow{Long: 5 * time.Minute, Short: time.Minute, Factor: 1}
		ctx := context.Background()

		long := newStats(t, time.Minute, 5*time.Minute)
		observe(long, "k", 1, tai.Failed, tai.Allow, time.Millisecond)
		observe(long, "k", 2, tai.Succeeded, tai.Allow, time.Millisecond)
		time.Sleep(2 * time.Minute)
		observe(long, "k", 1, tai.Failed, tai.Allow, time.Millisecond)
		m, err := andon.BurnRate(long, slo, pair).Measure(ctx, time.Now())
		require.NoError(t, err)
		assert.Equal(t, "burn rate 5m 1× and 1m 2× (> 1×)", m.Detail)
		assert.False(t, m.Active, "the long window burns at the factor, not above")
		assert.Equal(t, 1.0, m.Value)

		short := newStats(t, time.Minute, 5*time.Minute)
		observe(short, "k", 3, tai.Failed, tai.Allow, time.Millisecond)
		time.Sleep(2 * time.Minute)
		observe(short, "k", 1, tai.Failed, tai.Allow, time.Millisecond)
		observe(short, "k", 1, tai.Succeeded, tai.Allow, time.Millisecond)
		m, err = andon.BurnRate(short, slo, pair).Measure(ctx, time.Now())
		require.NoError(t, err)
		assert.Equal(t, "burn rate 5m 1.6× and 1m 1× (> 1×)", m.Detail)
		assert.False(t, m.Active, "the short window burns at the factor, not above")
		assert.EqualValues(t, 5, m.Samples)
	})
}

func TestBurnRateValueOfTheFirstPairThatHolds(t *testing.T) {
	stats := newStats(t, time.Minute, 5*time.Minute, time.Hour)
	observe(stats, "k", 10, tai.Failed, tai.Allow, time.Millisecond) // every window burns at 100×
	slo := andon.SLO{Kind: "k", Objective: 0.99}
	errs := []tai.Outcome{tai.Failed}
	slo.Errors = errs
	c := andon.BurnRate(stats, slo,
		andon.BurnWindow{Long: 5 * time.Minute, Short: time.Minute, Factor: 1000},
		andon.BurnWindow{Long: time.Hour, Short: 5 * time.Minute, Factor: 14.4},
		andon.BurnWindow{Long: 5 * time.Minute, Short: time.Minute, Factor: 6})
	errs[0] = tai.Succeeded // the condition keeps its own copy of the errors
	m, err := c.Measure(context.Background(), time.Now())
	require.NoError(t, err)
	assert.True(t, m.Active)
	assert.InDelta(t, 100, m.Value, 1e-6)
	assert.Equal(t, 14.4, m.Threshold, "the first pair that holds, not a later one")
	assert.EqualValues(t, 10, m.Samples, "the signals in the longest window")

	quiet := andon.BurnRate(stats, andon.SLO{Kind: "other", Objective: 0.99},
		andon.BurnWindow{Long: 5 * time.Minute, Short: time.Minute, Factor: 1000},
		andon.BurnWindow{Long: time.Hour, Short: 5 * time.Minute, Factor: 14.4})
	m, err = quiet.Measure(context.Background(), time.Now())
	require.NoError(t, err)
	assert.False(t, m.Active)
	assert.Equal(t, 1000.0, m.Threshold, "none holds: the first pair")
	assert.Zero(t, m.Value)
	assert.Equal(t, "burn rate 5m 0× and 1m 0× (> 1000×); 1h 0× and 5m 0× (> 14.4×)", m.Detail)
}

// brokenStats is a StatsSource whose Windows method panics.
type brokenStats struct{ kaizen.Stats }

func (*brokenStats) Windows() []time.Duration { panic("windows broken") }

// TestStatsSourcePanicAtConstruction: NewEvaluator, which asks a
// condition's StatsSource for its windows, returns an error naming the
// rule and the method when that panics; it panicked.
func TestStatsSourcePanicAtConstruction(t *testing.T) {
	pair := andon.BurnWindow{Long: time.Hour, Short: 5 * time.Minute, Factor: 14.4}
	for _, c := range []andon.Condition{
		andon.ErrorRate(&brokenStats{}, "payment", time.Minute, 0.1),
		andon.BurnRate(&brokenStats{}, andon.SLO{Kind: "payment", Objective: 0.99}, pair),
	} {
		var err error
		require.NotPanics(t, func() {
			_, err = andon.NewEvaluator(andon.EvaluatorOptions{Rules: []andon.Rule{{Name: "R", Severity: andon.Page, Condition: c}}})
		})
		require.EqualError(t, err, `andon: rule "R": Rule.Condition: the Windows method of the StatsSource (*andon_test.brokenStats) panicked: windows broken`)
	}
}
