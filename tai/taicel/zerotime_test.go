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

// Shift has time.Time fields where a Go program leaves the zero time
// for "not yet": directly, behind a pointer, in an embedded struct, behind
// an embedded pointer and in the elements of a slice.
type Shift struct {
	*Break
	Leg
	Start  time.Time
	End    *time.Time
	Legs   []Leg
	Stamps []time.Time
}

// Break is embedded in Shift through a pointer.
type Break struct{ Over time.Time }

// shiftRules read each zero time as a rule would that tells "not yet"
// from a real time, or that compares it with another.
var shiftRules = []taicel.Rule{
	{Name: "start", Weight: 0.01, Expr: `payload.Start.getFullYear() < 1000`},
	{Name: "start_eq", Weight: 0.02, Expr: `payload.Start == timestamp("0001-01-01T00:00:00Z")`},
	{Name: "end", Weight: 0.04, Expr: `payload.End.getFullYear() == 1 && payload.End < signal.time`},
	{Name: "left", Weight: 0.08, Expr: `payload.Left.getFullYear() == 1 && payload.Leg.Left == payload.Start`},
	{Name: "legs", Weight: 0.16, Expr: `payload.Legs.all(l, l.Left.getFullYear() == 1)`},
	{Name: "stamps", Weight: 0.32, Expr: `payload.Stamps.all(s, s == payload.Start)`},
	{Name: "over", Weight: 0.1, Expr: `payload.Over < timestamp("1970-01-01T00:00:00Z")`},
}

// A zero time.Time field of the payload read as 1970-01-01 (Unix 0) in a
// live evaluation, as cel-go's native types read it, but as the zero time,
// year 1, when its record was replayed by a dynamic Env (the taikit
// command's backtest), and so did the elements of a list, the variables
// and signal.time live: a rule that told a zero time from a real one, or
// compared it with another, decided otherwise live and in the backtest.
// Every zero time.Time now reads as the Go zero time, live and replayed.
func TestZeroTimeReadsAsTheGoZeroTimeLiveAndInBacktest(t *testing.T) {
	env, err := taicel.NewEnv(taicel.Options[Shift]{RecordInputs: true})
	require.NoError(t, err)
	spec := &taicel.Spec{Name: "shifts", Version: "v", Rules: shiftRules, Thresholds: taicel.Thresholds{Review: 0.5, Deny: 0.9}}
	set, err := env.Compile(spec)
	require.NoError(t, err)
	var trail bytes.Buffer
	audit, err := kaizen.NewAudit(&trail, kaizen.AuditOptions{})
	require.NoError(t, err)
	p, err := tai.New(set, tai.ActionFunc[Shift, string](func(context.Context, tai.Signal[Shift]) (string, error) {
		return "", nil
	}), tai.WithObservers(audit))
	require.NoError(t, err)

	at := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	epoch := time.Unix(0, 0).UTC()
	shifts := []Shift{
		{End: new(time.Time), Legs: []Leg{{}}, Stamps: []time.Time{{}}, Break: &Break{}},
		{Start: at, End: &at, Leg: Leg{Left: at}, Legs: []Leg{{Left: at}}, Stamps: []time.Time{at}},
		{Start: epoch, End: &epoch, Leg: Leg{Left: epoch}, Legs: []Leg{{Left: epoch}}, Stamps: []time.Time{epoch}, Break: &Break{Over: epoch}},
	}
	want := []float64{0.01 + 0.02 + 0.04 + 0.08 + 0.16 + 0.32 + 0.1, 0.32 + 0.1, 0.32}
	for i, s := range shifts {
		res, err := p.Process(t.Context(), tai.Signal[Shift]{ID: fmt.Sprint("s", i), Kind: "shift", Time: at, Payload: s})
		require.NoError(t, err)
		assert.InDelta(t, want[i], res.Decision.Score, 1e-9, "shift %d: %+v", i, res.Decision.Contributions)
	}
	require.NoError(t, audit.Shutdown(t.Context()))

	denv, err := taicel.NewEnv(taicel.Options[map[string]any]{})
	require.NoError(t, err)
	dset, err := denv.Compile(spec)
	require.NoError(t, err)
	for name, cand := range map[string]interface {
		backtest(*testing.T, []byte) *taicel.Report
	}{"typed": typedCandidate{set}, "dynamic": dynCandidate{dset}} {
		rep := cand.backtest(t, trail.Bytes())
		assert.Equal(t, len(shifts), rep.Replayed, name)
		assert.Zero(t, rep.Errors, "%s: %+v", name, rep.ErrorExamples)
		assert.Zero(t, rep.Changed, "%s: %+v", name, rep.Flips)
		assert.Zero(t, rep.ScoreChanged, "%s: %+v", name, rep.Rules)
	}
}

type typedCandidate struct{ set *taicel.Set[Shift] }

func (c typedCandidate) backtest(t *testing.T, trail []byte) *taicel.Report {
	rep, err := taicel.Backtest(t.Context(), c.set, bytes.NewReader(trail), taicel.BacktestOptions{})
	require.NoError(t, err)
	return rep
}

type dynCandidate struct{ set *taicel.Set[map[string]any] }

func (c dynCandidate) backtest(t *testing.T, trail []byte) *taicel.Report {
	rep, err := taicel.Backtest(t.Context(), c.set, bytes.NewReader(trail), taicel.BacktestOptions{})
	require.NoError(t, err)
	return rep
}

// Trip holds a struct in an interface field, and in a field and a list
// that rules read through dyn().
type Trip struct {
	Leg   Leg
	Extra any
	Legs  []Leg
}

// tripRules read zero times where CEL finds the field only when the rule
// runs: through an interface, and through dyn(); and compare the structs
// that hold them.
var tripRules = []taicel.Rule{
	{Name: "extra", Weight: 0.01, Expr: `payload.Extra.Left.getFullYear() == 1`},
	{Name: "dyn", Weight: 0.02, Expr: `dyn(payload.Leg).Left.getFullYear() == 1`},
	{Name: "dyn_list", Weight: 0.04, Expr: `dyn(payload.Legs)[0].Left == timestamp("0001-01-01T00:00:00Z")`},
	{Name: "dyn_payload", Weight: 0.08, Expr: `dyn(payload).Leg.Left < timestamp("1970-01-01T00:00:00Z")`},
	{Name: "all", Weight: 0.16, Expr: `dyn(payload.Legs).all(l, l.Left.getFullYear() == 1)`},
	{Name: "equal", Weight: 0.32, Expr: `payload.Legs == [payload.Leg] && [payload.Leg] == payload.Legs && payload.Leg in payload.Legs && payload.Legs[0] == payload.Leg`},
}

// A zero time.Time in a struct that CEL reads only when the rule runs —
// held in an interface field, or read through dyn() — read as 1970-01-01
// live, while a field CEL knows when the set compiles read as year 1, and
// so did every zero time when the record was replayed without the Go
// type: a rule telling "not yet" from a time decided otherwise live and
// in a backtest. It reads as the Go zero time wherever it is.
func TestZeroTimeInAStructReadAtRunTime(t *testing.T) {
	env, err := taicel.NewEnv(taicel.Options[Trip]{RecordInputs: true})
	require.NoError(t, err)
	spec := &taicel.Spec{Name: "trips", Version: "v", Rules: tripRules, Thresholds: taicel.Thresholds{Review: 0.9, Deny: 0.95}}
	set, err := env.Compile(spec)
	require.NoError(t, err)
	var trail bytes.Buffer
	audit, err := kaizen.NewAudit(&trail, kaizen.AuditOptions{})
	require.NoError(t, err)
	p, err := tai.New(set, tai.ActionFunc[Trip, string](func(context.Context, tai.Signal[Trip]) (string, error) {
		return "", nil
	}), tai.WithObservers(audit))
	require.NoError(t, err)

	at := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	epoch := time.Unix(0, 0).UTC()
	trips := []Trip{
		{Extra: Leg{}, Legs: []Leg{{}}},
		{Leg: Leg{Left: at}, Extra: Leg{Left: at}, Legs: []Leg{{Left: at}}},
		{Leg: Leg{Left: epoch}, Extra: &Leg{Left: epoch}, Legs: []Leg{{Left: epoch}}},
	}
	want := []float64{0.01 + 0.02 + 0.04 + 0.08 + 0.16 + 0.32, 0.32, 0.32}
	for i, s := range trips {
		res, err := p.Process(t.Context(), tai.Signal[Trip]{ID: fmt.Sprint("t", i), Kind: "trip", Time: at, Payload: s})
		require.NoError(t, err)
		assert.InDelta(t, want[i], res.Decision.Score, 1e-9, "trip %d: %+v", i, res.Decision.Contributions)
	}
	require.NoError(t, audit.Shutdown(t.Context()))

	backtestsAgree(t, set, spec, trail.Bytes(), len(trips))
}

// backtestsAgree replays trail, n records judged by set, against set
// itself (the typed backtest) and against spec compiled for a payload of
// no Go type (the dynamic one, as the taikit command's): each replays
// every record, with no error and no decision or score changed.
func backtestsAgree[T any](t *testing.T, set *taicel.Set[T], spec *taicel.Spec, trail []byte, n int) {
	t.Helper()
	denv, err := taicel.NewEnv(taicel.Options[map[string]any]{})
	require.NoError(t, err)
	dset, err := denv.Compile(spec)
	require.NoError(t, err)
	rep, err := taicel.Backtest(t.Context(), set, bytes.NewReader(trail), taicel.BacktestOptions{})
	require.NoError(t, err)
	drep, err := taicel.Backtest(t.Context(), dset, bytes.NewReader(trail), taicel.BacktestOptions{})
	require.NoError(t, err)
	for name, rep := range map[string]*taicel.Report{"typed": rep, "dynamic": drep} {
		assert.Equal(t, n, rep.Replayed, name)
		assert.Zero(t, rep.Errors, "%s: %+v", name, rep.ErrorExamples)
		assert.Zero(t, rep.Changed, "%s: %+v", name, rep.Flips)
		assert.Zero(t, rep.ScoreChanged, "%s: %+v", name, rep.Rules)
	}
}

// A time.Time whose year is beyond 9999 or before 0 (an expiry read from
// a typo, "12/20000") was recorded as RFC 3339 with more digits or a
// minus sign, which time.Parse refuses: every decision whose payload held
// one, in a field a rule read or not, failed its replay, typed or
// dynamic. It reads back as the instant it was.
func TestTimesBeyondFourDigitYearsReadBack(t *testing.T) {
	env, err := taicel.NewEnv(taicel.Options[Shift]{RecordInputs: true})
	require.NoError(t, err)
	spec := &taicel.Spec{Name: "shifts", Version: "v", Thresholds: taicel.Thresholds{Review: 0.5, Deny: 0.9}, Rules: []taicel.Rule{
		{Name: "far", Weight: 0.3, Expr: `payload.Start > timestamp("9999-12-31T23:59:59Z")`},
		{Name: "stamps", Weight: 0.2, Expr: `size(payload.Stamps) > 1`},
	}}
	set, err := env.Compile(spec)
	require.NoError(t, err)
	var trail bytes.Buffer
	audit, err := kaizen.NewAudit(&trail, kaizen.AuditOptions{})
	require.NoError(t, err)
	p, err := tai.New(set, tai.ActionFunc[Shift, string](func(context.Context, tai.Signal[Shift]) (string, error) {
		return "", nil
	}), tai.WithObservers(audit))
	require.NoError(t, err)

	at := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	far := time.Date(10000, 2, 29, 23, 59, 59, 123456789, time.UTC)
	east := time.FixedZone("", 5*3600+30*60)
	shifts := []Shift{
		{Start: far},
		{Start: at, Stamps: []time.Time{time.Date(-5, 2, 29, 1, 0, 0, 0, east), time.Date(123456, 12, 31, 0, 0, 0, 1, east), time.Unix(1<<62, 5).UTC()}},
		{Leg: Leg{Left: time.Date(-12345, 1, 1, 0, 0, 0, 0, time.UTC)}, End: &far},
	}
	want := []float64{0.3, 0.2, 0}
	for i, s := range shifts {
		res, err := p.Process(t.Context(), tai.Signal[Shift]{ID: fmt.Sprint("s", i), Kind: "shift", Time: at, Payload: s})
		require.NoError(t, err)
		assert.InDelta(t, want[i], res.Decision.Score, 1e-9, "shift %d: %+v", i, res.Decision.Contributions)
		in, err := env.DecodeInputs(res.Decision.Inputs)
		require.NoError(t, err, "%s", res.Decision.Inputs)
		for j, st := range s.Stamps {
			assert.True(t, st.Equal(in.Payload.Stamps[j]), "shift %d stamp %d: %v read back as %v", i, j, st, in.Payload.Stamps[j])
		}
		assert.True(t, s.Start.Equal(in.Payload.Start), "shift %d: %v read back as %v", i, s.Start, in.Payload.Start)
		assert.True(t, s.Left.Equal(in.Payload.Left), "shift %d: %v read back as %v", i, s.Left, in.Payload.Left)
	}
	require.NoError(t, audit.Shutdown(t.Context()))

	backtestsAgree(t, set, spec, trail.Bytes(), len(shifts))
}
