package taicel_test

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"testing"

	"cel.dev/cel-go/cel"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/kaizen"
	"github.com/taipattern/taikit/tai"
	"github.com/taipattern/taikit/tai/taicel"
)

// Meter has doubles wherever a payload holds them: a NaN or an infinity
// in any of them is recorded as a string ("NaN", "+Inf", "-Inf").
type Meter struct {
	Level  float64
	Ratio  float32
	Peak   *float64
	Series []float64
	Mixed  []float64
	ByName map[string]float64
	Extra  any
}

type meterKey struct{}

// A dynamic backtest (the taikit command's) read a NaN or an infinity
// recorded as the string JSON holds it, "NaN", "+Inf" or "-Inf": a rule
// comparing it with a double failed with "no such overload", one asking
// x != x judged otherwise. The record marks such doubles, and a dynamic
// backtest reads them as the doubles the live rules read.
func TestBacktestDynamicReadsNaNAndInfinities(t *testing.T) {
	rules := []taicel.Rule{
		{Name: "level", Weight: 0.001, Expr: `payload.Level != payload.Level`},
		{Name: "ratio", Weight: 0.002, Expr: `payload.Ratio > 1e300`},
		{Name: "peak", Weight: 0.004, Expr: `payload.Peak < 0.0`},
		{Name: "series", Weight: 0.008, Expr: `payload.Series.all(s, s > 1e300)`},
		{Name: "mixed", Weight: 0.016, Expr: `payload.Mixed[0] == 1.5 && payload.Mixed[1] != payload.Mixed[1]`},
		{Name: "by_name", Weight: 0.032, Expr: `payload.ByName["x"] < -1e300`},
		{Name: "extra", Weight: 0.064, Expr: `payload.Extra.f > 1e300 && payload.Extra.l[0] != payload.Extra.l[0]`},
		{Name: "limit", Weight: 0.128, Expr: `limit > 1e300`},
		{Name: "held", Weight: 0.256, Expr: `held.exists(h, h != h)`},
	}
	spec := &taicel.Spec{Name: "meter", Version: "v", Rules: rules, Thresholds: taicel.Thresholds{Review: 0.5, Deny: 0.9}}
	env, err := taicel.NewEnv(taicel.Options[Meter]{
		Vars: map[string]*cel.Type{"limit": cel.DoubleType, "held": cel.DynType},
		Lookup: func(ctx context.Context, _ tai.Signal[Meter]) (map[string]any, error) {
			return ctx.Value(meterKey{}).(map[string]any), nil
		},
		RecordInputs: true,
	})
	require.NoError(t, err)
	set, err := env.Compile(spec)
	require.NoError(t, err)
	var trail bytes.Buffer
	audit, err := kaizen.NewAudit(&trail, kaizen.AuditOptions{})
	require.NoError(t, err)
	p, err := tai.New(set, tai.ActionFunc[Meter, string](func(context.Context, tai.Signal[Meter]) (string, error) {
		return "", nil
	}), tai.WithObservers(audit))
	require.NoError(t, err)
	nan, inf := math.NaN(), math.Inf(1)
	meters := []Meter{
		{Level: nan, Ratio: float32(inf), Peak: &[]float64{-inf}[0], Series: []float64{inf, inf}, Mixed: []float64{1.5, nan},
			ByName: map[string]float64{"x": -inf, "y": 2}, Extra: map[string]any{"f": inf, "l": []any{nan, 1.0}}},
		{Level: 1, Ratio: 2, Peak: &[]float64{3}[0], Series: []float64{4}, Mixed: []float64{1.5, 5},
			ByName: map[string]float64{"x": 6}, Extra: map[string]any{"f": 7.0, "l": []any{8.0}}},
	}
	vars := []map[string]any{{"limit": inf, "held": []any{1.0, nan}}, {"limit": 9.0, "held": []any{10.0}}}
	want := []float64{0.511, 0}
	for i, g := range meters {
		ctx := context.WithValue(t.Context(), meterKey{}, vars[i])
		res, err := p.Process(ctx, tai.Signal[Meter]{ID: fmt.Sprint("g", i), Kind: "meter", Payload: g})
		require.NoError(t, err)
		assert.InDelta(t, want[i], res.Decision.Score, 1e-9, "gauge %d: %+v", i, res.Decision.Contributions)
	}
	require.NoError(t, audit.Shutdown(t.Context()))

	for _, dyn := range []bool{false, true} {
		var rep *taicel.Report
		if dyn {
			denv, err := taicel.NewEnv(taicel.Options[map[string]any]{})
			require.NoError(t, err)
			dset, err := denv.Compile(spec)
			require.NoError(t, err)
			rep, err = taicel.Backtest(t.Context(), dset, bytes.NewReader(trail.Bytes()), taicel.BacktestOptions{})
			require.NoError(t, err)
		} else {
			rep, err = taicel.Backtest(t.Context(), set, bytes.NewReader(trail.Bytes()), taicel.BacktestOptions{})
			require.NoError(t, err)
		}
		assert.Equal(t, len(meters), rep.Replayed, "dynamic %v", dyn)
		assert.Zero(t, rep.Errors, "dynamic %v: %+v", dyn, rep.ErrorExamples)
		assert.Zero(t, rep.Changed, "dynamic %v: %+v", dyn, rep.Flips)
		assert.Zero(t, rep.ScoreChanged, "dynamic %v: %+v", dyn, rep.Rules)
	}
}
