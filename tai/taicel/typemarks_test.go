package taicel_test

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"cel.dev/cel-go/cel"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/kaizen"
	"github.com/taipattern/taikit/tai"
	"github.com/taipattern/taikit/tai/taicel"
)

// Visit has the fields whose CEL types JSON writes as others: a
// timestamp and bytes as strings, a duration as an int.
type Visit struct {
	Leg
	At     time.Time
	Stay   time.Duration
	Token  []byte
	Stamps []time.Time
	Legs   []Leg
	Waits  map[string]time.Duration
	Extra  any
	Note   string
}

// Leg is a struct in Visit, embedded and in a slice.
type Leg struct {
	Left time.Time
	Code []byte
}

type visitKey struct{}

// visitRules read every timestamp, duration and bytes of a Visit and of
// the variables, as a service's rules would.
var visitRules = []taicel.Rule{
	{Name: "early", Weight: 0.1, Expr: `payload.At < timestamp("2026-03-01T12:00:00Z") && payload.At.getHours() < 12`},
	{Name: "long", Weight: 0.1, Expr: `payload.Stay > duration("30m")`},
	{Name: "token", Weight: 0.1, Expr: `payload.Token == b"tok" && size(payload.Code) == 1`},
	{Name: "stamps", Weight: 0.1, Expr: `payload.Stamps.exists(s, s > payload.At) && payload.Left < payload.At`},
	{Name: "legs", Weight: 0.1, Expr: `payload.Legs.all(l, l.Left <= payload.At && l.Code != b"")`},
	{Name: "waits", Weight: 0.1, Expr: `"x" in payload.Waits && payload.Waits["x"] > duration("30m") && payload.Stay >= payload.Waits["x"]`},
	{Name: "extra", Weight: 0.1, Expr: `payload.Extra.when > payload.At && payload.Extra.raw == b"r"`, Reason: `{{string(payload.Extra.when)}}`},
	{Name: "vars", Weight: 0.3, Expr: `since < payload.At && grace > duration("1s") && key == b"k" && stamps[0] <= payload.At && seen < signal.time`},
}

// recordVisits returns the trail of a set of visitRules judging visits,
// with their variables, and the verdicts it gave.
func recordVisits(t *testing.T) ([]byte, []tai.Verdict) {
	t.Helper()
	env, err := taicel.NewEnv(taicel.Options[Visit]{
		Vars: map[string]*cel.Type{"since": cel.TimestampType, "grace": cel.DurationType, "key": cel.BytesType,
			"stamps": cel.ListType(cel.TimestampType), "seen": cel.DynType},
		Lookup: func(ctx context.Context, _ tai.Signal[Visit]) (map[string]any, error) {
			return ctx.Value(visitKey{}).(map[string]any), nil
		},
		RecordInputs: true,
	})
	require.NoError(t, err)
	set, err := env.Compile(&taicel.Spec{Name: "visits", Version: "v", Rules: visitRules, Thresholds: taicel.Thresholds{Review: 0.3, Deny: 0.6}})
	require.NoError(t, err)
	var trail bytes.Buffer
	audit, err := kaizen.NewAudit(&trail, kaizen.AuditOptions{})
	require.NoError(t, err)
	p, err := tai.New(set, tai.ActionFunc[Visit, string](func(context.Context, tai.Signal[Visit]) (string, error) {
		return "", nil
	}), tai.WithObservers(audit))
	require.NoError(t, err)

	at := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	visits := []Visit{
		{At: at, Stay: time.Hour, Token: []byte("tok"), Stamps: []time.Time{at.Add(time.Minute)}, Leg: Leg{Left: at.Add(-time.Hour), Code: []byte{7}},
			Legs: []Leg{{Left: at, Code: []byte("c")}}, Waits: map[string]time.Duration{"x": time.Hour}, Extra: map[string]any{"when": at.Add(time.Second), "raw": []byte("r")}},
		{At: at.Add(5 * time.Hour), Stay: time.Minute, Stamps: []time.Time{at}, Legs: []Leg{{Left: at.Add(9 * time.Hour)}}, Extra: map[string]any{"when": at, "raw": []byte("r")}},
		{At: at.Add(-time.Hour), Stay: 40 * time.Minute, Token: []byte("tok"), Leg: Leg{Code: []byte{1}}, Extra: map[string]any{"when": at, "raw": []byte{}}},
	}
	vars := []map[string]any{
		{"since": at.Add(-time.Minute), "grace": 2 * time.Second, "key": []byte("k"), "stamps": []time.Time{at}, "seen": at},
		{"since": at, "grace": time.Second, "key": []byte("k"), "stamps": []any{at}, "seen": at},
		{"since": at.Add(-24 * time.Hour), "grace": time.Minute, "key": []byte("x"), "stamps": []time.Time{at.Add(-2 * time.Hour)}, "seen": at.Add(-time.Hour)},
	}
	var verdicts []tai.Verdict
	for i, v := range visits {
		ctx := context.WithValue(t.Context(), visitKey{}, vars[i])
		res, _ := p.Process(ctx, tai.Signal[Visit]{ID: "v" + string(rune('0'+i)), Kind: "visit", Time: at.Add(time.Hour), Payload: v})
		require.NotEmpty(t, res.Decision.Inputs)
		verdicts = append(verdicts, res.Decision.Verdict)
	}
	require.NoError(t, audit.Shutdown(t.Context()))
	return trail.Bytes(), verdicts
}

// A dynamic backtest (the taikit command's) read the timestamps, bytes
// and durations of a typed payload and of the variables as the strings
// and ints JSON writes them as: every rule that compared a timestamp,
// bytes or a duration failed with "no such overload". The record marks
// them, and a dynamic backtest judges them as a typed one does, with the
// CEL types the typed Env declared.
func TestBacktestDynamicReadsTimestampsDurationsAndBytes(t *testing.T) {
	trail, verdicts := recordVisits(t)
	assert.Equal(t, []tai.Verdict{tai.Deny, tai.Allow, tai.Review}, verdicts)

	denv, err := taicel.NewEnv(taicel.Options[map[string]any]{})
	require.NoError(t, err)
	dset, err := denv.Compile(&taicel.Spec{Name: "visits", Version: "v", Rules: visitRules, Thresholds: taicel.Thresholds{Review: 0.3, Deny: 0.6}})
	require.NoError(t, err)
	rep, err := taicel.Backtest(t.Context(), dset, bytes.NewReader(trail), taicel.BacktestOptions{})
	require.NoError(t, err)
	assert.Equal(t, len(verdicts), rep.Replayed)
	assert.Zero(t, rep.Errors, "%+v", rep.ErrorExamples)
	assert.Zero(t, rep.Changed, "%+v", rep.Flips)
	assert.Zero(t, rep.ScoreChanged)

	// A rule that takes a timestamp for a string fails as it would live.
	spec := &taicel.Spec{Name: "visits", Version: "v", Rules: []taicel.Rule{{Name: "as_string", Weight: 1, Expr: `payload.At < "2026-03-01T10:00:00Z"`}}}
	dset, err = denv.Compile(spec)
	require.NoError(t, err)
	rep, err = taicel.Backtest(t.Context(), dset, bytes.NewReader(trail), taicel.BacktestOptions{})
	require.NoError(t, err)
	assert.Equal(t, len(verdicts), rep.Errors)
	require.Len(t, rep.Rules, 1)
	assert.Equal(t, "as_string", rep.Rules[0].Rule)
	assert.Contains(t, rep.Rules[0].FirstError, "no such overload")

	// The typed Env reads its own records as before.
	env, err := taicel.NewEnv(taicel.Options[Visit]{Vars: map[string]*cel.Type{"since": cel.TimestampType, "grace": cel.DurationType,
		"key": cel.BytesType, "stamps": cel.ListType(cel.TimestampType), "seen": cel.DynType},
		Lookup: func(context.Context, tai.Signal[Visit]) (map[string]any, error) { return nil, nil }})
	require.NoError(t, err)
	set, err := env.Compile(&taicel.Spec{Name: "visits", Version: "v", Rules: visitRules, Thresholds: taicel.Thresholds{Review: 0.3, Deny: 0.6}})
	require.NoError(t, err)
	rep, err = taicel.Backtest(t.Context(), set, bytes.NewReader(trail), taicel.BacktestOptions{})
	require.NoError(t, err)
	assert.Equal(t, len(verdicts), rep.Replayed)
	assert.Zero(t, rep.Errors, "%+v", rep.ErrorExamples)
	assert.Zero(t, rep.Changed, "%+v", rep.Flips)
	assert.Zero(t, rep.ScoreChanged)
}

// A recorded value that is not of the type its record declares for it
// is an error that names where it is and the type it should be, as is a
// declaration that does not fit the payload's Go type.
func TestDecodeInputsTypeMismatch(t *testing.T) {
	denv, err := taicel.NewEnv(taicel.Options[map[string]any]{})
	require.NoError(t, err)
	for _, tc := range []struct{ in, want string }{
		{`{"payload":{"At":"soon"},"types":{"At":"timestamp"}}`, `types: "At": a string that is not a timestamp (an RFC 3339 string)`},
		{`{"payload":{"At":5},"types":{"At":"timestamp"}}`, `types: "At": an int is not a timestamp`},
		{`{"payload":{"Stay":1.5},"types":{"Stay":"duration"}}`, `types: "Stay": a double is not a duration`},
		{`{"payload":{"Stay":"1s"},"types":{"Stay":"duration"}}`, `types: "Stay": a string is not a duration`},
		{`{"payload":{"Token":"!!"},"types":{"Token":"bytes"}}`, `types: "Token": a string that is not bytes in base64`},
		{`{"payload":{"Stamps":["2026-03-01T10:00:00Z",7]},"types":{"Stamps":"timestamp"}}`, `types: "Stamps": [1]: an int is not a timestamp`},
		{`{"payload":{"Legs":[{"Left":"x"}]},"types":{"Legs":{"0":{"Left":"timestamp"}}}}`, `types: "Legs": "0": "Left": a string that is not a timestamp (an RFC 3339 string)`},
		{`{"payload":{"At":"2026-03-01T10:00:00Z"},"types":{"At":"money"}}`, `types: "At": unknown type "money"`},
		{`{"payload":{},"types":{"At":"timestamp"}}`, `types: "At": no such member`},
		{`{"payload":{"Legs":[]},"types":{"Legs":{"0":"bytes"}}}`, `types: "Legs": "0": no such member`},
		{`{"payload":{"At":"x"},"types":{"At":{"a":"bytes"}}}`, `types: "At": a string has no members`},
		{`{"payload":{},"types":[]}`, `types: want an object`},
		{`{"payload":{"At":1},"types":{"At":3}}`, `types: "At": neither a type nor an object`},
		{`{"payload":{},"vars":{"since":"noon"},"var_types":{"since":"timestamp"}}`, `var_types: "since": a string that is not a timestamp (an RFC 3339 string)`},
		{`{"payload":{},"vars":{},"var_types":{"since":"timestamp"}}`, `var_types: "since": no such variable`},
	} {
		_, err := denv.DecodeInputs([]byte(tc.in))
		assert.ErrorContains(t, err, tc.want, tc.in)
	}

	env, err := taicel.NewEnv(taicel.Options[Visit]{})
	require.NoError(t, err)
	for _, tc := range []struct{ in, want string }{
		{`{"payload":{"At":"2026-03-01T10:00:00Z"},"types":{"At":"bytes"}}`, `types: "At": a time.Time, not bytes`},
		{`{"payload":{"Note":"2026-03-01T10:00:00Z"},"types":{"Note":"timestamp"}}`, `types: "Note": a string, not a timestamp`},
		{`{"payload":{"Extra":["x"]},"types":{"Extra":"duration"}}`, `types: "Extra": [0]: a string is not a duration`},
		{`{"payload":{},"types":{"Nope":"duration"}}`, `types: "Nope": taicel_test.Visit has no such field`},
	} {
		_, err := env.DecodeInputs([]byte(tc.in))
		assert.ErrorContains(t, err, tc.want, tc.in)
	}

	// In a backtest, such a record is an error of its own, and the
	// backtest goes on.
	dset, err := denv.Compile(&taicel.Spec{Name: "visits", Version: "v", Rules: []taicel.Rule{{Name: "r", Weight: 1, Expr: `payload.At < signal.time`}}})
	require.NoError(t, err)
	line := `{"time":"2026-03-01T10:00:00Z","id":"bad","kind":"visit","decision":{"verdict":"allow","policy":"visits","inputs":` +
		`{"payload":{"At":"soon"},"types":{"At":"timestamp"}}}}` + "\n" +
		`{"time":"2026-03-01T10:00:00Z","id":"good","kind":"visit","decision":{"verdict":"allow","policy":"visits","inputs":` +
		`{"time":"2026-03-01T10:00:00Z","payload":{"At":"2026-03-01T11:00:00Z"},"types":{"At":"timestamp"}}}}` + "\n"
	rep, err := taicel.Backtest(t.Context(), dset, strings.NewReader(line), taicel.BacktestOptions{})
	require.NoError(t, err)
	assert.Equal(t, 1, rep.Errors)
	assert.Equal(t, 1, rep.Replayed)
	require.Len(t, rep.ErrorExamples, 1)
	assert.Contains(t, rep.ErrorExamples[0].Error, `types: "At": a string that is not a timestamp (an RFC 3339 string)`)
}

// A dynamic Env's payload and variables that hold timestamps, durations
// and bytes were recorded as strings and ints, and Replay judged those:
// the same set did not decide as it had. They read back with their
// types, and the set decides as it did, inputs byte for byte.
func TestReplayDynamicTimestampsDurationsAndBytes(t *testing.T) {
	at := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	vars := map[string]any{"since": at.Add(-time.Hour), "grace": time.Minute, "keys": [][]byte{[]byte("k")}}
	env, err := taicel.NewEnv(taicel.Options[map[string]any]{
		Vars:         map[string]*cel.Type{"since": cel.DynType, "grace": cel.DynType, "keys": cel.DynType},
		Lookup:       func(context.Context, tai.Signal[map[string]any]) (map[string]any, error) { return vars, nil },
		RecordInputs: true,
	})
	require.NoError(t, err)
	set, err := env.Compile(&taicel.Spec{Version: "v", Rules: []taicel.Rule{
		{Name: "at", Weight: 0.1, Expr: `payload.At < signal.time && payload.At > since`},
		{Name: "stay", Weight: 0.1, Expr: `payload.Stay > grace`},
		{Name: "raw", Weight: 0.1, Expr: `payload.Raw == b"r" && keys[0] == b"k"`},
		{Name: "nested", Weight: 0.1, Expr: `payload.Legs[1].Left < payload.At && payload.Stamps.all(s, s <= payload.At)`},
	}})
	require.NoError(t, err)
	payload := map[string]any{"At": at, "Stay": time.Hour, "Raw": []byte("r"), "Note": "2026-03-01T10:00:00Z",
		"Legs": []any{map[string]any{"Left": "not a time"}, map[string]any{"Left": at.Add(-time.Minute)}}, "Stamps": []time.Time{at, at.Add(-time.Hour)}}
	d, err := set.Evaluate(t.Context(), tai.Signal[map[string]any]{Time: at.Add(time.Hour), Payload: payload})
	require.NoError(t, err)
	require.Len(t, d.Contributions, 4, "every rule fires: %+v", d.Contributions)
	assert.Contains(t, string(d.Inputs), `"types":{"At":"timestamp","Legs":{"1":"timestamp"},"Raw":"bytes","Stamps":"timestamp","Stay":"duration"}`)
	assert.Contains(t, string(d.Inputs), `"var_types":{"grace":"duration","keys":"bytes","since":"timestamp"}`)

	in, err := env.DecodeInputs(d.Inputs)
	require.NoError(t, err)
	assert.Equal(t, "2026-03-01T10:00:00Z", in.Payload["Note"], "a string not marked stays a string")
	assert.Equal(t, "not a time", in.Payload["Legs"].([]any)[0].(map[string]any)["Left"])
	again, err := set.Replay(tai.Signal[map[string]any]{Time: in.Time, Payload: in.Payload}, in.Vars)
	require.NoError(t, err)
	assert.Equal(t, d, again)
	assert.Equal(t, string(d.Inputs), string(again.Inputs))
}

// A variable declared a list or a map of dyn holds its elements as JSON
// reads them, without a type: the timestamps, durations and bytes the
// record marks in them were left strings and ints, and Replay failed on
// a rule that compared them (no such overload). They read back with
// their types, as in a variable declared dyn; the elements of a declared
// type keep it.
func TestReplayListAndMapOfDynVariables(t *testing.T) {
	at := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	vars := map[string]any{
		"stamps": []any{at, "x"},
		"waits":  map[string]any{"a": time.Minute, "b": 3},
		"byID":   map[int64]any{7: []byte("k")},
		"nested": []any{[]time.Time{at}},
		"times":  []time.Time{at},
		"dyn":    map[string]any{"at": at},
	}
	env, err := taicel.NewEnv(taicel.Options[map[string]any]{
		Vars: map[string]*cel.Type{
			"stamps": cel.ListType(cel.DynType),
			"waits":  cel.MapType(cel.StringType, cel.DynType),
			"byID":   cel.MapType(cel.IntType, cel.DynType),
			"nested": cel.ListType(cel.ListType(cel.DynType)),
			"times":  cel.ListType(cel.TimestampType),
			"dyn":    cel.DynType,
		},
		Lookup:       func(context.Context, tai.Signal[map[string]any]) (map[string]any, error) { return vars, nil },
		RecordInputs: true,
	})
	require.NoError(t, err)
	set, err := env.Compile(&taicel.Spec{Version: "v", Rules: []taicel.Rule{
		{Name: "stamps", Weight: 0.1, Expr: `stamps[0] < signal.time && stamps[1] == "x"`},
		{Name: "waits", Weight: 0.1, Expr: `waits.a > duration("1s") && waits.b == 3`},
		{Name: "by_id", Weight: 0.1, Expr: `byID[7] == b"k"`},
		{Name: "nested", Weight: 0.1, Expr: `nested[0][0] <= signal.time`},
		{Name: "times", Weight: 0.1, Expr: `times[0] <= signal.time`},
		{Name: "dyn", Weight: 0.1, Expr: `dyn.at <= signal.time`},
	}})
	require.NoError(t, err)
	d, err := set.Evaluate(t.Context(), tai.Signal[map[string]any]{Time: at.Add(time.Hour), Payload: map[string]any{}})
	require.NoError(t, err)
	require.Len(t, d.Contributions, 6, "every rule fires: %+v", d.Contributions)

	in, err := env.DecodeInputs(d.Inputs)
	require.NoError(t, err)
	assert.Equal(t, "x", in.Vars["stamps"].([]any)[1], "a string not marked stays a string")
	again, err := set.Replay(tai.Signal[map[string]any]{Time: in.Time, Payload: in.Payload}, in.Vars)
	require.NoError(t, err)
	assert.Equal(t, d, again)
	assert.Equal(t, string(d.Inputs), string(again.Inputs))

	for _, tc := range []struct{ in, want string }{
		{`{"payload":{},"vars":{"stamps":["x"]},"var_types":{"stamps":"timestamp"}}`, `var_types: "stamps": [0]: a string that is not a timestamp (an RFC 3339 string)`},
		{`{"payload":{},"vars":{"stamps":["x"]},"var_types":{"stamps":{"1":"timestamp"}}}`, `var_types: "stamps": "1": no such member`},
		{`{"payload":{},"vars":{"byID":{"7":"x"}},"var_types":{"byID":{"8":"bytes"}}}`, `var_types: "byID": "8": no such member`},
		{`{"payload":{},"vars":{"waits":{"a":"x"}},"var_types":{"waits":"duration"}}`, `var_types: "waits": "a": a string is not a duration`},
		{`{"payload":{},"vars":{"waits":{}},"var_types":{"waits":3}}`, `var_types: "waits": neither a type nor an object`},
	} {
		_, err := env.DecodeInputs([]byte(tc.in))
		assert.ErrorContains(t, err, tc.want, tc.in)
	}
}

// Digest has a byte array, which CEL reads as bytes, as it reads a
// []byte.
type Digest struct {
	Sum  [2]byte
	Sums [][2]byte
}

// A byte array ([32]byte, a digest) is bytes to CEL, in a typed payload
// and within an interface, but was recorded as a list of ints, unmarked:
// a dynamic backtest and a dynamic Env's Replay judged a list, and a
// rule comparing it with bytes decided otherwise. It is recorded as
// bytes are, and read back as bytes there; a typed Env reads it back
// into its array, as it still reads the list that earlier versions
// wrote.
func TestByteArraysReadAsBytes(t *testing.T) {
	at := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	rules := []taicel.Rule{
		{Name: "sum", Weight: 0.5, Expr: `payload.Sum == b"\x01\x02"`},
		{Name: "sums", Weight: 0.5, Expr: `payload.Sums.exists(s, s == b"\x03\x04")`},
	}
	spec := &taicel.Spec{Name: "digest", Version: "v", Rules: rules, Thresholds: taicel.Thresholds{Review: 0.5, Deny: 1}}
	env, err := taicel.NewEnv(taicel.Options[Digest]{RecordInputs: true})
	require.NoError(t, err)
	set, err := env.Compile(spec)
	require.NoError(t, err)
	d, err := set.Evaluate(t.Context(), tai.Signal[Digest]{Time: at, Payload: Digest{Sum: [2]byte{1, 2}, Sums: [][2]byte{{3, 4}}}})
	require.NoError(t, err)
	require.Equal(t, tai.Deny, d.Verdict, "CEL reads a byte array as bytes")

	in, err := env.DecodeInputs(d.Inputs)
	require.NoError(t, err)
	assert.Equal(t, Digest{Sum: [2]byte{1, 2}, Sums: [][2]byte{{3, 4}}}, in.Payload)
	again, err := set.Replay(tai.Signal[Digest]{Time: in.Time, Payload: in.Payload}, in.Vars)
	require.NoError(t, err)
	assert.Equal(t, d, again)
	old, err := env.DecodeInputs([]byte(`{"payload":{"Sum":[1,2],"Sums":[[3,4]]}}`))
	require.NoError(t, err)
	assert.Equal(t, Digest{Sum: [2]byte{1, 2}, Sums: [][2]byte{{3, 4}}}, old.Payload)
	for _, tc := range []struct{ in, want string }{
		{`{"payload":{"Sum":"AQID"}}`, `Sum: 3 bytes for [2]uint8`},
		{`{"payload":{"Sum":"!"}}`, `Sum: bytes:`},
		{`{"payload":{"Sum":[1,2,3]}}`, `Sum: more than 2 elements`},
	} {
		_, err := env.DecodeInputs([]byte(tc.in))
		assert.ErrorContains(t, err, tc.want, tc.in)
	}

	denv, err := taicel.NewEnv(taicel.Options[map[string]any]{RecordInputs: true})
	require.NoError(t, err)
	dset, err := denv.Compile(spec)
	require.NoError(t, err)
	din, err := denv.DecodeInputs(d.Inputs)
	require.NoError(t, err)
	dd, err := dset.Replay(tai.Signal[map[string]any]{Time: din.Time, Payload: din.Payload}, din.Vars)
	require.NoError(t, err)
	assert.Equal(t, tai.Deny, dd.Verdict, "a dynamic Env judges the typed record as the typed Env did: %s", d.Inputs)

	// Within a dynamic Env's payload, too.
	dd, err = dset.Evaluate(t.Context(), tai.Signal[map[string]any]{Time: at, Payload: map[string]any{"Sum": [2]byte{1, 2}, "Sums": [][2]byte{{3, 4}}}})
	require.NoError(t, err)
	require.Equal(t, tai.Deny, dd.Verdict)
	din, err = denv.DecodeInputs(dd.Inputs)
	require.NoError(t, err)
	again2, err := dset.Replay(tai.Signal[map[string]any]{Time: din.Time, Payload: din.Payload}, din.Vars)
	require.NoError(t, err)
	assert.Equal(t, dd, again2)
}

// A dynamic Env's payload whose values are all of one marked type is
// marked with the type's name once, as any map is ("types":"timestamp"),
// and DecodeInputs refused that ("types: want an object"): Replay and a
// backtest could not read the record. It reads it.
func TestDecodeInputsPayloadOfOneMarkedType(t *testing.T) {
	at := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	env, err := taicel.NewEnv(taicel.Options[map[string]any]{RecordInputs: true})
	require.NoError(t, err)
	set, err := env.Compile(&taicel.Spec{Name: "at", Version: "v", Rules: []taicel.Rule{
		{Name: "at", Weight: 1, Expr: `payload.At < signal.time && payload.Seen.all(s, s < payload.At)`},
	}})
	require.NoError(t, err)
	d, err := set.Evaluate(t.Context(), tai.Signal[map[string]any]{Time: at, Payload: map[string]any{
		"At": at.Add(-time.Minute), "Seen": []time.Time{at.Add(-time.Hour)}}})
	require.NoError(t, err)
	require.Equal(t, tai.Deny, d.Verdict)
	require.Contains(t, string(d.Inputs), `"types":"timestamp"`)

	in, err := env.DecodeInputs(d.Inputs)
	require.NoError(t, err)
	again, err := set.Replay(tai.Signal[map[string]any]{Time: in.Time, Payload: in.Payload}, in.Vars)
	require.NoError(t, err)
	assert.Equal(t, d, again)

	_, err = env.DecodeInputs([]byte(`{"payload":{"At":"x"},"types":"timestamp"}`))
	assert.ErrorContains(t, err, `types: "At": a string that is not a timestamp (an RFC 3339 string)`)
	_, err = env.DecodeInputs([]byte(`{"payload":{},"types":3}`))
	assert.ErrorContains(t, err, `types: want an object or a type's name`)
}

// Stock has unsigned integers, which JSON writes as any int.
type Stock struct {
	Count  uint
	Bins   []uint32
	ByBin  map[string]uint16
	Signed int64
	Extra  any
}

type stockKey struct{}

// A dynamic backtest (the taikit command's) read the uints of a typed
// payload and of the variables as ints: a rule doing uint arithmetic
// (payload.Count * 2u) failed with "no such overload", one asking
// type(x) == uint judged otherwise. The record marks them, and a dynamic
// backtest reads them as the uints the live rules read.
func TestBacktestDynamicReadsUints(t *testing.T) {
	rules := []taicel.Rule{
		{Name: "count", Weight: 0.01, Expr: `payload.Count * 2u == 10u`},
		{Name: "bins", Weight: 0.02, Expr: `payload.Bins.all(b, b + 1u > 1u)`},
		{Name: "by_bin", Weight: 0.04, Expr: `payload.ByBin["a"] - 1u == 2u`},
		{Name: "signed", Weight: 0.08, Expr: `type(payload.Signed) == int && payload.Signed * 2 == 14`},
		{Name: "extra", Weight: 0.16, Expr: `type(payload.Extra.n) == uint`},
		{Name: "var", Weight: 0.32, Expr: `held % 2u == 1u`},
	}
	spec := &taicel.Spec{Name: "stock", Version: "v", Rules: rules, Thresholds: taicel.Thresholds{Review: 0.5, Deny: 0.9}}
	env, err := taicel.NewEnv(taicel.Options[Stock]{
		Vars: map[string]*cel.Type{"held": cel.DynType},
		Lookup: func(ctx context.Context, _ tai.Signal[Stock]) (map[string]any, error) {
			return ctx.Value(stockKey{}).(map[string]any), nil
		},
		RecordInputs: true,
	})
	require.NoError(t, err)
	set, err := env.Compile(spec)
	require.NoError(t, err)
	var trail bytes.Buffer
	audit, err := kaizen.NewAudit(&trail, kaizen.AuditOptions{})
	require.NoError(t, err)
	p, err := tai.New(set, tai.ActionFunc[Stock, string](func(context.Context, tai.Signal[Stock]) (string, error) {
		return "", nil
	}), tai.WithObservers(audit))
	require.NoError(t, err)
	stocks := []Stock{
		{Count: 5, Bins: []uint32{1, 2}, ByBin: map[string]uint16{"a": 3}, Signed: 7, Extra: map[string]any{"n": uint64(1)}},
		{Count: 4, Bins: []uint32{0}, ByBin: map[string]uint16{"a": 4}, Signed: 6, Extra: map[string]any{"n": int64(1)}},
	}
	vars := []map[string]any{{"held": uint(3)}, {"held": uint64(math.MaxUint64 - 1)}}
	want := []float64{0.63, 0}
	for i, s := range stocks {
		ctx := context.WithValue(t.Context(), stockKey{}, vars[i])
		res, err := p.Process(ctx, tai.Signal[Stock]{ID: fmt.Sprint("s", i), Kind: "stock", Payload: s})
		require.NoError(t, err)
		assert.InDelta(t, want[i], res.Decision.Score, 1e-9, "stock %d: %+v", i, res.Decision.Contributions)
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
		assert.Equal(t, len(stocks), rep.Replayed, "dynamic %v", dyn)
		assert.Zero(t, rep.Errors, "dynamic %v: %+v", dyn, rep.ErrorExamples)
		assert.Zero(t, rep.Changed, "dynamic %v: %+v", dyn, rep.Flips)
		assert.Zero(t, rep.ScoreChanged, "dynamic %v: %+v", dyn, rep.Rules)
	}
}
