package taicel_test

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"

	"cel.dev/cel-go/cel"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/kaizen"
	"github.com/taipattern/taikit/tai"
	"github.com/taipattern/taikit/tai/taicel"
)

// Ledger has maps whose keys are not strings: JSON writes their keys as
// the text of an object's member names.
type Ledger struct {
	ByID    map[int]string
	Small   map[int8]float64
	ByUnit  map[uint]time.Time
	Flags   map[bool]uint8
	Nested  map[int]map[bool]string
	Entries []map[int64]Leg
	Extra   any
}

type ledgerKey struct{}

// ledgerRules read the maps by their keys, as a service's rules would.
var ledgerRules = []taicel.Rule{
	{Name: "by_id", Weight: 0.001, Expr: `payload.ByID[7] == "seven" && -1 in payload.ByID`},
	{Name: "small", Weight: 0.002, Expr: `payload.Small[3] > 1.0`},
	{Name: "by_unit", Weight: 0.004, Expr: `payload.ByUnit[2u] < signal.time`},
	{Name: "flags", Weight: 0.008, Expr: `payload.Flags[true] == 3u`},
	{Name: "nested", Weight: 0.016, Expr: `payload.Nested[1][false] == "f"`},
	{Name: "entries", Weight: 0.032, Expr: `payload.Entries[0][5].Left.getFullYear() == 1`},
	{Name: "extra", Weight: 0.064, Expr: `payload.Extra[9] == 1`},
	{Name: "keys", Weight: 0.128, Expr: `payload.ByID.all(k, k < 10)`},
	{Name: "var", Weight: 0.256, Expr: `counts[4] == 2`},
}

// A map whose keys are ints, uints or bools, in the payload, in an
// interface or in a variable, read back with string keys in a dynamic
// backtest (the taikit command's): every rule that looked a key up failed
// with "no such key". The record marks the type of such keys in "types"
// and "var_types", and a dynamic backtest reads the maps with them.
func TestBacktestDynamicReadsMapKeysOfTheirType(t *testing.T) {
	env, err := taicel.NewEnv(taicel.Options[Ledger]{
		Vars: map[string]*cel.Type{"counts": cel.DynType},
		Lookup: func(ctx context.Context, _ tai.Signal[Ledger]) (map[string]any, error) {
			return map[string]any{"counts": ctx.Value(ledgerKey{})}, nil
		},
		RecordInputs: true,
	})
	require.NoError(t, err)
	spec := &taicel.Spec{Name: "ledgers", Version: "v", Rules: ledgerRules, Thresholds: taicel.Thresholds{Review: 0.9, Deny: 0.95}}
	set, err := env.Compile(spec)
	require.NoError(t, err)
	var trail bytes.Buffer
	audit, err := kaizen.NewAudit(&trail, kaizen.AuditOptions{})
	require.NoError(t, err)
	p, err := tai.New(set, tai.ActionFunc[Ledger, string](func(context.Context, tai.Signal[Ledger]) (string, error) {
		return "", nil
	}), tai.WithObservers(audit))
	require.NoError(t, err)

	at := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	ledgers := []Ledger{
		{ByID: map[int]string{7: "seven", -1: "minus"}, Small: map[int8]float64{3: 1.5}, ByUnit: map[uint]time.Time{2: at.Add(-time.Hour)},
			Flags: map[bool]uint8{true: 3}, Nested: map[int]map[bool]string{1: {false: "f"}}, Entries: []map[int64]Leg{{5: {}}},
			Extra: map[int]int{9: 1}},
		{ByID: map[int]string{7: "other", -1: "minus", 12: "twelve"}, Small: map[int8]float64{3: 0.5}, ByUnit: map[uint]time.Time{2: at.Add(time.Hour)},
			Flags: map[bool]uint8{true: 4, false: 3}, Nested: map[int]map[bool]string{1: {false: "g"}}, Entries: []map[int64]Leg{{5: {Left: at}}},
			Extra: map[int]int{9: 2}},
	}
	counts := []any{map[int]int{4: 2}, map[uint]int{4: 1}}
	want := []float64{0.511, 0}
	for i, l := range ledgers {
		ctx := context.WithValue(t.Context(), ledgerKey{}, counts[i])
		res, err := p.Process(ctx, tai.Signal[Ledger]{ID: fmt.Sprint("l", i), Kind: "ledger", Time: at, Payload: l})
		require.NoError(t, err)
		assert.InDelta(t, want[i], res.Decision.Score, 1e-9, "ledger %d: %+v", i, res.Decision.Contributions)
		in, err := env.DecodeInputs(res.Decision.Inputs)
		require.NoError(t, err)
		l.Extra = in.Payload.Extra // an interface reads back without its Go type
		assert.Equal(t, l, in.Payload, "ledger %d reads back as it was: %s", i, res.Decision.Inputs)
	}
	require.NoError(t, audit.Shutdown(t.Context()))

	backtestsAgree(t, set, spec, trail.Bytes(), len(ledgers))
}

// A variable declared a map with keys of type dyn (map(dyn, int), or
// such a map within a list) that held a map with int, uint or bool keys
// was read back with string keys, though "var_types" marked their type:
// a replay, typed or dynamic, failed every rule that looked a key up
// with "no such key".
func TestReplayMapOfDynKeysReadsKeysOfTheirType(t *testing.T) {
	vars := map[string]any{
		"counts": map[int]int{4: 2},
		"lists":  []map[uint]int{{5: 1}},
		"flags":  map[bool]map[int]string{true: {6: "six"}},
	}
	env, err := taicel.NewEnv(taicel.Options[map[string]any]{
		Vars: map[string]*cel.Type{
			"counts": cel.MapType(cel.DynType, cel.IntType),
			"lists":  cel.ListType(cel.MapType(cel.DynType, cel.DynType)),
			"flags":  cel.MapType(cel.DynType, cel.MapType(cel.DynType, cel.StringType)),
		},
		Lookup:       func(context.Context, tai.Signal[map[string]any]) (map[string]any, error) { return vars, nil },
		RecordInputs: true,
	})
	require.NoError(t, err)
	set, err := env.Compile(&taicel.Spec{Version: "v", Rules: []taicel.Rule{
		{Name: "counts", Weight: 0.1, Expr: `counts[4] == 2`},
		{Name: "lists", Weight: 0.2, Expr: `lists[0][5u] == 1`},
		{Name: "flags", Weight: 0.4, Expr: `flags[true][6] == "six"`},
	}})
	require.NoError(t, err)
	d, err := set.Evaluate(t.Context(), tai.Signal[map[string]any]{Payload: map[string]any{}})
	require.NoError(t, err)
	require.Len(t, d.Contributions, 3, "every rule fires: %+v", d.Contributions)

	in, err := env.DecodeInputs(d.Inputs)
	require.NoError(t, err, "%s", d.Inputs)
	again, err := set.Replay(tai.Signal[map[string]any]{Time: in.Time, Payload: in.Payload}, in.Vars)
	require.NoError(t, err, "%s", d.Inputs)
	assert.Equal(t, d, again)
}
