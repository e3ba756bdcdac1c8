package taicel_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strconv"
	"testing"
	"time"

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

// oldWireInputs is embedWires()[1] as it was recorded when only the
// fields of Wire itself were: without the promoted ones.
const oldWireInputs = `{"time":"0001-01-01T00:00:00Z","payload":{"Party":{"ID":"inner","Country":"KP","Tags":["a"]},"Risk":null,"Channel":{"Via":""},"ID":"outer","Amount":5.0},"vars":{}}`

// An audit trail recorded before the promoted fields were reads back
// into T as it was, and a typed backtest decides as the live set did.
func TestDecodeInputsRecordedWithoutPromotedFields(t *testing.T) {
	env, err := taicel.NewEnv(taicel.Options[Wire]{RecordInputs: true})
	require.NoError(t, err)
	set, err := env.Compile(&taicel.Spec{Version: "v", Rules: embedRules})
	require.NoError(t, err)
	w := embedWires()[1]
	live, err := set.Evaluate(t.Context(), tai.Signal[Wire]{Payload: w})
	require.NoError(t, err)
	in, err := env.DecodeInputs(json.RawMessage(oldWireInputs))
	require.NoError(t, err)
	assert.Equal(t, w, in.Payload)
	again, err := set.Replay(tai.Signal[Wire]{Payload: in.Payload}, in.Vars)
	require.NoError(t, err)
	live.Inputs, again.Inputs = nil, nil
	assert.Equal(t, live, again)
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
	f.Add([]byte(oldWireInputs))
	f.Add([]byte(`{"payload":{"Hops":[],"Tags":[],"Risk":null,"Flags":[]},"nil":{"Hops":null,"Tags":null,"Flags":null,"Party":{"Tags":null}}}`))
	f.Add([]byte(`{"payload":{"Region":"eu","Score":1.5,"Party":{"Tags":[]}},"nil":{"Tags":null,"Risk":{"Flags":null},"Region":null}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		in, err := env.DecodeInputs(data)
		if err != nil {
			return
		}
		require.True(t, json.Valid(data), "accepted invalid JSON %q", data)
		_, _ = set.Replay(tai.Signal[Wire]{Payload: in.Payload}, in.Vars)
		// What was read is recorded as it reads back.
		d, err := set.Evaluate(t.Context(), tai.Signal[Wire]{Time: in.Time, Payload: in.Payload})
		require.NoError(t, err)
		again, err := env.DecodeInputs(d.Inputs)
		require.NoError(t, err, "%s", d.Inputs)
		d2, err := set.Evaluate(t.Context(), tai.Signal[Wire]{Time: again.Time, Payload: again.Payload})
		require.NoError(t, err)
		require.Equal(t, string(d.Inputs), string(d2.Inputs))
	})
}

// Replies is embedded in Post: the posts it holds embed it again.
type Replies struct {
	Posts []Post
}

// Post is a tree whose children are promoted from an embedded struct.
type Post struct {
	Replies
	Depth int
}

// Left embeds a pointer to Right, which embeds a pointer to Left.
type Left struct {
	*Right
	L int
}

// Right is Left's other half.
type Right struct {
	*Left
	R int
}

// A payload whose embedded structs hold it again is recorded in a size
// that grows as the payload does: a field promoted from an embedded
// struct is written again beside it only when its type cannot hold the
// struct again, or every level would double the record. It still reads
// back as it was, and the embedded struct is an object a backtest
// without the Go type reads.
func TestRecordRecursiveEmbeddedStructsGrowsAsThePayload(t *testing.T) {
	const depth = 16
	post := Post{Depth: depth}
	for i := range depth {
		post = Post{Replies: Replies{Posts: []Post{post}}, Depth: depth - 1 - i}
	}
	left := &Left{L: depth}
	for i := range depth / 2 {
		left = &Left{Right: &Right{Left: left, R: i}, L: i}
	}

	tenv, err := taicel.NewEnv(taicel.Options[Post]{RecordInputs: true})
	require.NoError(t, err)
	tset, err := tenv.Compile(&taicel.Spec{Version: "v", Rules: []taicel.Rule{
		{Name: "deep", Weight: 1, Expr: `payload.Replies.Posts[0].Replies.Posts[0].Depth == 2`}}})
	require.NoError(t, err)
	d, err := tset.Evaluate(t.Context(), tai.Signal[Post]{Payload: post})
	require.NoError(t, err)
	assert.Equal(t, 1.0, d.Score)
	assert.Less(t, len(d.Inputs), 100*depth, "%.300s", d.Inputs)
	in, again := replay(t, tenv, tset, d)
	assert.Equal(t, post, in.Payload)
	assert.Equal(t, d, again)

	denv, err := taicel.NewEnv(taicel.Options[map[string]any]{})
	require.NoError(t, err)
	dset, err := denv.Compile(&taicel.Spec{Version: "v", Rules: []taicel.Rule{
		{Name: "deep", Weight: 1, Expr: `payload.Replies.Posts[0].Replies.Posts[0].Depth == 2`}}})
	require.NoError(t, err)
	din, err := denv.DecodeInputs(d.Inputs)
	require.NoError(t, err)
	dd, err := dset.Replay(tai.Signal[map[string]any]{Payload: din.Payload}, din.Vars)
	require.NoError(t, err)
	assert.Equal(t, 1.0, dd.Score)

	lenv, err := taicel.NewEnv(taicel.Options[*Left]{RecordInputs: true})
	require.NoError(t, err)
	lset, err := lenv.Compile(&taicel.Spec{Version: "v", Rules: []taicel.Rule{
		{Name: "r", Weight: 1, Expr: `payload.R == 7 && payload.Right.Left.R == 6 && payload.Right.L == 6`}}})
	require.NoError(t, err)
	d, err = lset.Evaluate(t.Context(), tai.Signal[*Left]{Payload: left})
	require.NoError(t, err)
	assert.Equal(t, 1.0, d.Score)
	assert.Less(t, len(d.Inputs), 100*depth, "%.300s", d.Inputs)
	lin, again := replay(t, lenv, lset, d)
	assert.Equal(t, left, lin.Payload)
	assert.Equal(t, d, again)
}

// Labeled embeds an interface with methods, which CEL reads by its
// name.
type Labeled struct {
	fmt.Stringer
	Amount float64
}

// A nil interface with methods, embedded or not, reads back nil: only a
// value within one, which has no Go type to be read into, cannot.
func TestDecodeInputsNilInterfaceWithMethods(t *testing.T) {
	env, err := taicel.NewEnv(taicel.Options[Labeled]{RecordInputs: true})
	require.NoError(t, err)
	set, err := env.Compile(&taicel.Spec{Version: "v", Rules: []taicel.Rule{
		{Name: "labeled", Verdict: tai.Review, Expr: `has(payload.Stringer)`},
		{Name: "amount", Weight: 1, Expr: `payload.Amount > 10.0`}}})
	require.NoError(t, err)
	d, err := set.Evaluate(t.Context(), tai.Signal[Labeled]{Payload: Labeled{Amount: 20}})
	require.NoError(t, err)
	assert.Equal(t, tai.Deny, d.Verdict)
	in, again := replay(t, env, set, d)
	assert.Equal(t, Labeled{Amount: 20}, in.Payload)
	assert.Equal(t, d, again)

	d, err = set.Evaluate(t.Context(), tai.Signal[Labeled]{Payload: Labeled{Stringer: time.Second}})
	require.NoError(t, err)
	assert.Equal(t, tai.Review, d.Verdict)
	_, err = env.DecodeInputs(d.Inputs)
	assert.ErrorContains(t, err, "cannot read a value into interface type fmt.Stringer")
}

// Sender is embedded in envelope, and Letter's own Sender hides it.
type Sender struct{ Name string }

// envelope is embedded in Letter; its type is not exported.
type envelope struct{ Sender }

// Letter reads Name promoted through envelope and the Sender it hides:
// CEL reads payload.Name, but payload.Sender is the string.
type Letter struct {
	envelope
	Sender string
}

// memo is envelope with the Sender behind a pointer.
type memo struct{ *Sender }

// Note is Letter with the hidden Sender behind a pointer.
type Note struct {
	memo
	Sender string
}

// A field promoted through an embedded struct that a shallower field of
// its name hides is written by its own name only, the hidden struct
// being no field of the payload, and is read back from there; through a
// hidden pointer it could not be read back, and recording is refused.
func TestRecordFieldPromotedThroughAHiddenEmbeddedStruct(t *testing.T) {
	rules := []taicel.Rule{{Name: "bob", Verdict: tai.Deny, Expr: `payload.Name == "bob" && payload.Sender == "ann"`}}
	env, err := taicel.NewEnv(taicel.Options[Letter]{RecordInputs: true})
	require.NoError(t, err)
	set, err := env.Compile(&taicel.Spec{Version: "v", Rules: rules})
	require.NoError(t, err)
	l := Letter{envelope: envelope{Sender{Name: "bob"}}, Sender: "ann"}
	d, err := set.Evaluate(t.Context(), tai.Signal[Letter]{Payload: l})
	require.NoError(t, err)
	assert.Equal(t, tai.Deny, d.Verdict)
	in, again := replay(t, env, set, d)
	assert.Equal(t, l, in.Payload, "%s", d.Inputs)
	assert.Equal(t, d, again)

	denv, err := taicel.NewEnv(taicel.Options[map[string]any]{})
	require.NoError(t, err)
	dset, err := denv.Compile(&taicel.Spec{Version: "v", Rules: rules})
	require.NoError(t, err)
	din, dagain := replay(t, denv, dset, d)
	assert.Equal(t, map[string]any{"Name": "bob", "Sender": "ann"}, din.Payload)
	assert.Equal(t, tai.Deny, dagain.Verdict)

	_, err = taicel.NewEnv(taicel.Options[Note]{RecordInputs: true})
	assert.ErrorContains(t, err, "taicel: payload taicel_test.Note: field Name: promoted through the embedded *taicel_test.Sender")
	_, err = taicel.NewEnv(taicel.Options[Note]{RecordInputs: true, Unrecorded: []string{"Name"}})
	assert.NoError(t, err)
}

// Home is embedded in Owner, which is embedded in Deed.
type Home struct{ City string }

// Owner carries Home into Deed.
type Owner struct{ Home }

// Deed's own Home hides the one promoted from Owner, but not the City
// promoted through it.
type Deed struct {
	Owner
	Home string
}

// Leaving out a field that hides an embedded struct of its name leaves
// that struct's fields recorded: they are not its.
func TestUnrecordedFieldHidingAnEmbeddedStruct(t *testing.T) {
	rules := []taicel.Rule{{Name: "city", Verdict: tai.Deny, Expr: `payload.City == "Oslo"`}}
	env, err := taicel.NewEnv(taicel.Options[Deed]{RecordInputs: true, Unrecorded: []string{"Home"}})
	require.NoError(t, err)
	set, err := env.Compile(&taicel.Spec{Version: "v", Rules: rules})
	require.NoError(t, err)
	deed := Deed{Owner: Owner{Home{City: "Oslo"}}, Home: "secret"}
	d, err := set.Evaluate(t.Context(), tai.Signal[Deed]{Payload: deed})
	require.NoError(t, err)
	assert.Equal(t, tai.Deny, d.Verdict)
	assert.NotContains(t, string(d.Inputs), "secret")
	in, again := replay(t, env, set, d)
	assert.Equal(t, Deed{Owner: deed.Owner}, in.Payload)
	assert.Equal(t, d, again)

	denv, err := taicel.NewEnv(taicel.Options[map[string]any]{})
	require.NoError(t, err)
	dset, err := denv.Compile(&taicel.Spec{Version: "v", Rules: rules})
	require.NoError(t, err)
	_, dagain := replay(t, denv, dset, d)
	assert.Equal(t, tai.Deny, dagain.Verdict, "%s", d.Inputs)
}

// Labels is a named slice, embedded in Kinds.
type Labels []string

// AmbA and AmbB are embedded side by side: Dup is ambiguous.
type AmbA struct{ Dup, OnlyA int }

// AmbB is AmbA's twin.
type AmbB struct{ Dup, OnlyB int }

// Kinds embeds one of each kind of type.
type Kinds struct {
	Party
	*Risk
	geo
	Labels
	time.Time
	fmt.Stringer
	AmbA
	AmbB
	ID   string
	Hook func()
}

// The names a recorded payload holds are those CEL reads: every field
// of T, the embedded ones by their type names, and the promoted ones,
// but the hidden, the ambiguous and those of types CEL does not read.
func TestRecordedPayloadNamesAreTheNamesCELReads(t *testing.T) {
	env, err := taicel.NewEnv(taicel.Options[Kinds]{RecordInputs: true})
	require.NoError(t, err)
	var names []string
	seen := map[reflect.Type]bool{}
	var walk func(reflect.Type)
	walk = func(rt reflect.Type) {
		for rt.Kind() == reflect.Pointer {
			rt = rt.Elem()
		}
		if rt.Kind() != reflect.Struct || seen[rt] {
			return
		}
		seen[rt] = true
		for i := range rt.NumField() {
			names = append(names, rt.Field(i).Name)
			walk(rt.Field(i).Type)
		}
	}
	walk(reflect.TypeFor[Kinds]())
	var reads []string
	for _, name := range names {
		if _, err := env.Compile(&taicel.Spec{Version: "v", Rules: []taicel.Rule{{Name: "r", Weight: 1, Expr: "has(payload." + name + ")"}}}); err == nil && !slices.Contains(reads, name) {
			reads = append(reads, name)
		}
	}
	set, err := env.Compile(&taicel.Spec{Version: "v", Rules: []taicel.Rule{{Name: "r", Weight: 1, Expr: "true"}}})
	require.NoError(t, err)
	k := Kinds{Risk: &Risk{}, Time: time.Date(2026, 3, 1, 12, 0, 0, 5, time.UTC), AmbA: AmbA{Dup: 1, OnlyA: 2}, AmbB: AmbB{Dup: 3}}
	d, err := set.Evaluate(t.Context(), tai.Signal[Kinds]{Payload: k})
	require.NoError(t, err)
	in, again := replay(t, env, set, d)
	assert.Equal(t, k, in.Payload, "%s", d.Inputs)
	assert.Equal(t, d, again)
	var rec struct{ Payload map[string]json.RawMessage }
	require.NoError(t, json.Unmarshal(d.Inputs, &rec))
	assert.ElementsMatch(t, reads, slices.Collect(maps.Keys(rec.Payload)))
	assert.Subset(t, reads, []string{"Party", "Country", "Risk", "Score", "Region", "Labels", "Time", "Stringer", "AmbA", "OnlyA", "OnlyB", "ID"})
}
