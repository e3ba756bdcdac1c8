package taicel_test

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/kaizen"
	"github.com/taipattern/taikit/tai"
	"github.com/taipattern/taikit/tai/taicel"
)

// Gauge has fields that point to values CEL reads as their zero values
// when the pointer is nil.
type Gauge struct {
	Count *int
	Name  *string
	Ok    *bool
	Ratio *float32
	At    *time.Time
	Wait  *time.Duration
	Units *uint
	Raw   *[]byte
	Hash  *[2]byte
}

// gaugeRules read each pointer field as a rule would that does not know
// it may be nil.
var gaugeRules = []taicel.Rule{
	{Name: "count", Weight: 0.001, Expr: `payload.Count == 0`},
	{Name: "name", Weight: 0.002, Expr: `payload.Name == ""`},
	{Name: "ok", Weight: 0.004, Expr: `!payload.Ok`},
	{Name: "ratio", Weight: 0.008, Expr: `payload.Ratio == 0.0`},
	{Name: "at", Weight: 0.016, Expr: `payload.At.getFullYear() == 1`},
	{Name: "wait", Weight: 0.032, Expr: `payload.Wait == duration("0s")`},
	{Name: "units", Weight: 0.064, Expr: `payload.Units == 0u`},
	{Name: "raw", Weight: 0.128, Expr: `payload.Raw == b""`},
	{Name: "hash", Weight: 0.256, Expr: `payload.Hash == b"\x00\x00"`},
}

// A nil pointer field to a number, a string, a bool, a time, a duration
// or bytes read as its zero value live, as CEL reads it, but was recorded
// null, which a backtest without the Go type read as null: every rule
// that read it failed or judged otherwise. It is recorded as the zero
// value CEL read, marked in "nil", so that DecodeInputs reads it back as
// the nil pointer it was.
func TestNilPointerFieldsReadAsTheirZeroLiveAndReplayed(t *testing.T) {
	env, err := taicel.NewEnv(taicel.Options[Gauge]{RecordInputs: true})
	require.NoError(t, err)
	spec := &taicel.Spec{Name: "gauges", Version: "v", Rules: gaugeRules, Thresholds: taicel.Thresholds{Review: 0.9, Deny: 0.95}}
	set, err := env.Compile(spec)
	require.NoError(t, err)
	var trail bytes.Buffer
	audit, err := kaizen.NewAudit(&trail, kaizen.AuditOptions{})
	require.NoError(t, err)
	p, err := tai.New(set, tai.ActionFunc[Gauge, string](func(context.Context, tai.Signal[Gauge]) (string, error) {
		return "", nil
	}), tai.WithObservers(audit))
	require.NoError(t, err)

	one, name, yes, ratio, at, wait, units, raw, hash := 1, "n", true, float32(0.5), time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC), time.Second, uint(1), []byte("r"), [2]byte{1}
	zero, empty, no, zratio, zat, zwait, zunits, zraw, zhash := 0, "", false, float32(0), time.Time{}, time.Duration(0), uint(0), []byte{}, [2]byte{}
	gauges := []Gauge{
		{},
		{Count: &one, Name: &name, Ok: &yes, Ratio: &ratio, At: &at, Wait: &wait, Units: &units, Raw: &raw, Hash: &hash},
		{Count: &zero, Name: &empty, Ok: &no, Ratio: &zratio, At: &zat, Wait: &zwait, Units: &zunits, Raw: &zraw, Hash: &zhash},
	}
	all := 0.0
	for _, r := range gaugeRules {
		all += r.Weight
	}
	want := []float64{all, 0, all}
	for i, g := range gauges {
		res, err := p.Process(t.Context(), tai.Signal[Gauge]{ID: fmt.Sprint("g", i), Kind: "gauge", Time: at, Payload: g})
		require.NoError(t, err)
		assert.InDelta(t, want[i], res.Decision.Score, 1e-9, "gauge %d: %+v", i, res.Decision.Contributions)
		in, err := env.DecodeInputs(res.Decision.Inputs)
		require.NoError(t, err)
		assert.Equal(t, g, in.Payload, "gauge %d reads back as it was: %s", i, res.Decision.Inputs)
	}
	require.NoError(t, audit.Shutdown(t.Context()))

	backtestsAgree(t, set, spec, trail.Bytes(), len(gauges))
}

// Wrapped holds pointers to bytes that are not nil but point to nil
// []byte, in a field and in a list and a map.
type Wrapped struct {
	Raw  *[]byte
	List []*[]byte
	ByID map[string]*[]byte
}

// A pointer to a nil []byte, which CEL reads as a set field of empty
// bytes, was marked null in "nil" as a nil pointer written as its zero
// value is: DecodeInputs read it back as a nil pointer, in a field, a
// list or a map, and a replay judged has() and the list's and the map's
// elements otherwise.
func TestPointerToNilBytesReadsBackAsAPointer(t *testing.T) {
	env, err := taicel.NewEnv(taicel.Options[Wrapped]{RecordInputs: true})
	require.NoError(t, err)
	rules := []taicel.Rule{
		{Name: "raw", Weight: 0.1, Expr: `has(payload.Raw)`},
		{Name: "list", Weight: 0.2, Expr: `payload.List[0] == b""`},
		{Name: "map", Weight: 0.4, Expr: `payload.ByID["a"] == b""`},
	}
	set, err := env.Compile(&taicel.Spec{Name: "wrapped", Version: "v", Rules: rules, Thresholds: taicel.Thresholds{Review: 0.9, Deny: 0.95}})
	require.NoError(t, err)
	w := Wrapped{Raw: new([]byte), List: []*[]byte{new([]byte)}, ByID: map[string]*[]byte{"a": new([]byte)}}
	d, err := set.Evaluate(t.Context(), tai.Signal[Wrapped]{ID: "w", Kind: "wrapped", Payload: w})
	require.NoError(t, err)
	assert.InDelta(t, 0.7, d.Score, 1e-9, "%+v", d.Contributions)

	in, err := env.DecodeInputs(d.Inputs)
	require.NoError(t, err)
	require.NotNil(t, in.Payload.Raw, "%s", d.Inputs)
	assert.Empty(t, *in.Payload.Raw)
	assert.Equal(t, w.List, in.Payload.List, "%s", d.Inputs)
	assert.Equal(t, w.ByID, in.Payload.ByID, "%s", d.Inputs)
	again, err := set.Replay(tai.Signal[Wrapped]{ID: "w", Kind: "wrapped", Time: in.Time, Payload: in.Payload}, in.Vars)
	require.NoError(t, err)
	assert.InDelta(t, d.Score, again.Score, 1e-9, "%+v", again.Contributions)
}
