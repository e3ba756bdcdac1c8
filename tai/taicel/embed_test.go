package taicel_test

import (
	"bytes"
	"context"
	"encoding/json"
	"strconv"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/kaizen"
	"github.com/taipattern/taikit/tai"
	"github.com/taipattern/taikit/tai/taicel"
)

// Party is embedded in Wire: its fields are promoted, but ID, which
// Wire's own ID shadows.
type Party struct {
	ID      string
	Country string
	Tags    []string
}

// Risk is embedded in Wire by pointer, which may be nil.
type Risk struct {
	Score float64
	Flags []string
}

// Channel is embedded in Wire with a json tag.
type Channel struct {
	Via string
}

// geo is embedded in Wire; its type is not exported, its fields are.
type geo struct {
	Region string
	Hops   []int
}

// Wire is a payload with embedded structs of every kind.
type Wire struct {
	Party
	*Risk
	Channel `json:"channel"`
	geo
	ID     string
	Amount float64
}

// embedRules read promoted fields, the embedded structs, and fields
// shadowed by an outer one; each has its own weight, so that a score
// tells which fired.
var embedRules = []taicel.Rule{
	{Name: "country", Weight: 0.01, Expr: `payload.Country == "KP" && payload.Party.Country == "KP"`},
	{Name: "shadow", Weight: 0.02, Expr: `payload.ID == "outer" && payload.Party.ID == "inner"`},
	{Name: "score", Weight: 0.04, Expr: `payload.Score < 0.5`},
	{Name: "flags", Weight: 0.08, Expr: `size(payload.Flags) == 0`},
	{Name: "via", Weight: 0.16, Expr: `payload.Via == "web" && payload.Channel.Via == "web"`},
	{Name: "region", Weight: 0.32, Expr: `payload.Region == "eu" && size(payload.Hops) == 0`},
	{Name: "tags", Weight: 0.03, Expr: `size(payload.Tags) == 0 && size(payload.Party.Tags) == 0`},
}

func embedWires() []Wire {
	return []Wire{
		{},
		{Party: Party{ID: "inner", Country: "KP", Tags: []string{"a"}}, ID: "outer", Amount: 5},
		{Risk: &Risk{Score: 0.9, Flags: []string{"x"}}, Channel: Channel{Via: "web"}, geo: geo{Region: "eu", Hops: []int{1}}},
		{Risk: &Risk{}, geo: geo{Region: "eu"}, Party: Party{Tags: []string{}}},
	}
}

// A payload with embedded structs is recorded so that a backtest decides
// as the live rules did, typed or dynamic: the fields promoted from an
// embedded struct (behind a nil pointer too, or of a type not exported)
// are read by their names, a field shadowed by an outer one is not.
func TestBacktestEmbeddedFields(t *testing.T) {
	spec := &taicel.Spec{Version: "v", Rules: embedRules, Thresholds: taicel.Thresholds{Review: 0.3, Deny: 0.9}}
	env, err := taicel.NewEnv(taicel.Options[Wire]{RecordInputs: true})
	require.NoError(t, err)
	set, err := env.Compile(spec)
	require.NoError(t, err)

	var trail bytes.Buffer
	audit, err := kaizen.NewAudit(&trail, kaizen.AuditOptions{})
	require.NoError(t, err)
	p, err := tai.New(set, tai.ActionFunc[Wire, string](func(context.Context, tai.Signal[Wire]) (string, error) {
		return "", nil
	}), tai.WithObservers(audit))
	require.NoError(t, err)
	var scores []float64
	for i, w := range embedWires() {
		res, _ := p.Process(t.Context(), tai.Signal[Wire]{ID: strconv.Itoa(i), Kind: "wire", Payload: w})
		scores = append(scores, res.Decision.Score)

		d, err := set.Evaluate(t.Context(), tai.Signal[Wire]{Payload: w})
		require.NoError(t, err)
		in, again := replay(t, env, set, d)
		assert.Equal(t, w, in.Payload, "%d: %s", i, d.Inputs)
		assert.Equal(t, d, again, "%d: %s", i, d.Inputs)
	}
	require.NoError(t, audit.Shutdown(t.Context()))
	assert.InDeltaSlice(t, []float64{0.04 + 0.08 + 0.03, 0.01 + 0.02 + 0.04 + 0.08, 0.16 + 0.03, 0.04 + 0.08 + 0.32 + 0.03}, scores, 1e-9)

	typed, err := taicel.Backtest(t.Context(), set, bytes.NewReader(trail.Bytes()), taicel.BacktestOptions{})
	require.NoError(t, err)
	assert.Equal(t, len(scores), typed.Replayed)
	assert.Zero(t, typed.Errors, "%+v", typed.ErrorExamples)
	assert.Zero(t, typed.Changed)
	assert.Zero(t, typed.ScoreChanged)

	denv, err := taicel.NewEnv(taicel.Options[map[string]any]{})
	require.NoError(t, err)
	dset, err := denv.Compile(spec)
	require.NoError(t, err)
	rep, err := taicel.Backtest(t.Context(), dset, bytes.NewReader(trail.Bytes()), taicel.BacktestOptions{})
	require.NoError(t, err)
	assert.Equal(t, len(scores), rep.Replayed)
	assert.Zero(t, rep.Errors, "%+v", rep.ErrorExamples)
	assert.Zero(t, rep.Changed, "%+v", rep.Flips)
	assert.Zero(t, rep.ScoreChanged)
}

// Leaving an embedded struct unrecorded leaves out the fields promoted
// from it too; one of its fields cannot be left out alone, as it is
// written within the struct. A field promoted from an embedded struct of
// a type not exported is written by its name only, and left out by it.
func TestUnrecordedEmbeddedFields(t *testing.T) {
	w := Wire{Party: Party{ID: "secret-id", Country: "secret-country", Tags: []string{"secret-tag"}},
		Risk: &Risk{Score: 0.25}, geo: geo{Region: "secret-region", Hops: []int{1}}, ID: "outer"}
	env, err := taicel.NewEnv(taicel.Options[Wire]{RecordInputs: true, Unrecorded: []string{"Party", "Region"}})
	require.NoError(t, err)
	set, err := env.Compile(&taicel.Spec{Version: "v", Rules: embedRules})
	require.NoError(t, err)
	d, err := set.Evaluate(t.Context(), tai.Signal[Wire]{Payload: w})
	require.NoError(t, err)
	assert.NotContains(t, string(d.Inputs), "secret")
	assert.Contains(t, string(d.Inputs), `"Hops":[1]`)
	assert.Contains(t, string(d.Inputs), `"Score":0.25`)
	in, err := env.DecodeInputs(d.Inputs)
	require.NoError(t, err)
	want := w
	want.Party, want.Region = Party{}, ""
	assert.Equal(t, want, in.Payload)

	for _, names := range [][]string{{"Country"}, {"Tags"}, {"Score"}} {
		_, err := taicel.NewEnv(taicel.Options[Wire]{Unrecorded: names})
		assert.ErrorContains(t, err, "taicel: Options.Unrecorded: \""+names[0]+"\" is a field of taicel_test.Wire's embedded ", names)
	}
	_, err = taicel.NewEnv(taicel.Options[Wire]{Unrecorded: []string{"Risk", "Score"}})
	assert.NoError(t, err, "with the struct it is promoted from")
}

// hidden is embedded by a pointer in Veiled; its type is not exported.
type hidden struct {
	Secret string
}

// Veiled has a field promoted through a pointer to a struct whose type
// is not exported: reflection cannot set the pointer to read it back.
type Veiled struct {
	*hidden
	Amount float64
}

// A field promoted through an embedded pointer to a type that is not
// exported is read live, but could not be read back: recording such a
// payload is refused when the Env is made, naming the field, unless it
// is unrecorded.
func TestRecordRefusesAFieldPromotedThroughAnUnexportedPointer(t *testing.T) {
	_, err := taicel.NewEnv(taicel.Options[Veiled]{RecordInputs: true})
	assert.ErrorContains(t, err, "taicel: payload taicel_test.Veiled: field Secret: promoted through the embedded *taicel_test.hidden")

	env, err := taicel.NewEnv(taicel.Options[Veiled]{})
	require.NoError(t, err, "without recording")
	set, err := env.Compile(&taicel.Spec{Version: "v", Rules: []taicel.Rule{{Name: "s", Verdict: tai.Deny, Expr: `payload.Secret == "x"`}}})
	require.NoError(t, err)
	d, err := set.Evaluate(t.Context(), tai.Signal[Veiled]{Payload: Veiled{hidden: &hidden{Secret: "x"}}})
	require.NoError(t, err)
	assert.Equal(t, tai.Deny, d.Verdict)

	env, err = taicel.NewEnv(taicel.Options[Veiled]{RecordInputs: true, Unrecorded: []string{"Secret"}})
	require.NoError(t, err)
	set, err = env.Compile(&taicel.Spec{Version: "v", Rules: []taicel.Rule{{Name: "a", Weight: 1, Expr: `payload.Amount > 1.0`}}})
	require.NoError(t, err)
	d, err = set.Evaluate(t.Context(), tai.Signal[Veiled]{Payload: Veiled{hidden: &hidden{Secret: "x"}, Amount: 2}})
	require.NoError(t, err)
	assert.JSONEq(t, `{"time":"0001-01-01T00:00:00Z","payload":{"Amount":2.0},"vars":{}}`, string(d.Inputs))
	in, err := env.DecodeInputs(d.Inputs)
	require.NoError(t, err)
	assert.Equal(t, Veiled{Amount: 2}, in.Payload)
}

// Within an interface, whose value is never read back into its Go type,
// such a field is written as any other.
func TestRecordFieldPromotedThroughAnUnexportedPointerInAnInterface(t *testing.T) {
	type Boxed struct{ Extra any }
	env, err := taicel.NewEnv(taicel.Options[Boxed]{RecordInputs: true})
	require.NoError(t, err)
	set, err := env.Compile(&taicel.Spec{Version: "v", Rules: []taicel.Rule{{Name: "r", Weight: 1, Expr: `has(payload.Extra)`}}})
	require.NoError(t, err)
	d, err := set.Evaluate(t.Context(), tai.Signal[Boxed]{Payload: Boxed{Extra: Veiled{hidden: &hidden{Secret: "s"}, Amount: 2}}})
	require.NoError(t, err)
	assert.Contains(t, string(d.Inputs), `"payload":{"Extra":{"Secret":"s","Amount":2.0}}`)
}

func FuzzDecodeEmbeddedInputs(f *testing.F) {
	env, err := taicel.NewEnv(taicel.Options[Wire]{RecordInputs: true})
	require.NoError(f, err)
	set, err := env.Compile(&taicel.Spec{Version: "v", Rules: embedRules})
	require.NoError(f, err)
	for _, w := range embedWires() {
		d, err := set.Evaluate(f.Context(), tai.Signal[Wire]{Payload: w})
		require.NoError(f, err)
		f.Add([]byte(d.Inputs))
	}
	f.Add([]byte(`{"payload":{"Hops":[],"Tags":[],"Risk":null,"Flags":[]},"nil":{"Hops":null,"Tags":null,"Flags":null,"Party":{"Tags":null}}}`))
	f.Add([]byte(`{"payload":{"Region":"eu","Score":1.5,"Party":{"Tags":[]}},"nil":{"Tags":null,"Risk":{"Flags":null},"Region":null}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		in, err := env.DecodeInputs(data)
		if err != nil {
			return
		}
		require.True(t, json.Valid(data), "accepted invalid JSON %q", data)
		_, _ = set.Replay(tai.Signal[Wire]{Payload: in.Payload}, in.Vars)
	})
}
