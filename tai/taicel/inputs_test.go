package taicel_test

import (
	"context"
	"encoding/json"
	"math"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"cel.dev/cel-go/cel"
	"cel.dev/cel-go/common/types"
	"cel.dev/cel-go/ext"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/tai"
	"github.com/taipattern/taikit/tai/taicel"
)

// recordingSet is fraudSet with Options.RecordInputs, and the card number
// left out of the payload.
func recordingSet(t testing.TB, opts taicel.Options[Payment]) (*taicel.Env[Payment], *taicel.Set[Payment]) {
	t.Helper()
	opts.Vars, opts.Lookup = fraudOptions().Vars, fraudOptions().Lookup
	opts.RecordInputs = true
	env, err := taicel.NewEnv(opts)
	require.NoError(t, err)
	spec, err := taicel.ParseFile("testdata/fraud.yaml")
	require.NoError(t, err)
	set, err := env.Compile(spec)
	require.NoError(t, err)
	return env, set
}

func TestRecordInputs(t *testing.T) {
	_, set := recordingSet(t, taicel.Options[Payment]{})
	ctx := context.WithValue(t.Context(), stateKey{}, state{attempts: 6, spentToday: 100, movedKm: 0.5, speedKmh: 12})
	sig := tai.Signal[Payment]{ID: "pay-1", Kind: "payment", Key: "cust_1", Time: time.Date(2026, 3, 1, 12, 0, 0, 500, time.UTC),
		Payload: Payment{CustomerID: "cust_1", MerchantID: "merc_\"2\"", Country: "DE", Currency: "EUR", Amount: 5000}}
	d, err := set.Evaluate(ctx, sig)
	require.NoError(t, err)
	assert.Equal(t, tai.Deny, d.Verdict)
	assert.Equal(t, `{"time":"2026-03-01T12:00:00.0000005Z",`+
		`"payload":{"CustomerID":"cust_1","MerchantID":"merc_\"2\"","Country":"DE","Currency":"EUR","Amount":5000.0},`+
		`"vars":{"attempts":6,"moved_km":0.5,"speed_kmh":12.0,"spent_today":100.0}}`, string(d.Inputs))

	// A verdict rule's decision names the rule.
	sig.Payload.Country = "KP"
	d, err = set.Evaluate(ctx, sig)
	require.NoError(t, err)
	assert.Equal(t, `cust_1 paying merc_"2" from KP: blacklisted`, d.Reason)
	assert.True(t, strings.HasSuffix(string(d.Inputs), `,"verdict_rule":"blacklist"}`), "%s", d.Inputs)

	// Without RecordInputs, nothing is recorded.
	d, err = fraudSet(t).Evaluate(ctx, sig)
	require.NoError(t, err)
	assert.Nil(t, d.Inputs)
}

func TestUnrecorded(t *testing.T) {
	_, set := recordingSet(t, taicel.Options[Payment]{Unrecorded: []string{"CustomerID", "MerchantID"}})
	d, err := set.Evaluate(t.Context(), signal(Payment{CustomerID: "cust_1", MerchantID: "m", Country: "DE", Amount: 1}))
	require.NoError(t, err)
	assert.NotContains(t, string(d.Inputs), "cust_1")
	assert.NotContains(t, string(d.Inputs), "MerchantID")
	assert.Contains(t, string(d.Inputs), `"payload":{"Country":"DE","Currency":"","Amount":1.0}`)

	for _, tc := range []struct {
		names []string
		want  string
	}{
		{[]string{"Card"}, `Options.Unrecorded: taicel_test.Payment has no exported field "Card"`},
		{[]string{""}, "Options.Unrecorded: an empty name"},
	} {
		_, err := taicel.NewEnv(taicel.Options[Payment]{Unrecorded: tc.names})
		assert.ErrorContains(t, err, tc.want)
	}
}

// Card is embedded in Rich.
type Card struct {
	Last4  string
	Expiry time.Time
}

// Rich has a field of every kind a payload may have.
type Rich struct {
	Card
	Name    string
	Amount  float64
	Ratio   float32
	Count   int
	Small   int8
	Big     uint64
	Wait    time.Duration
	When    time.Time
	Tags    []string
	Raw     []byte
	Limits  map[string]float64
	ByID    map[int]string
	Flags   map[bool]uint8
	Next    *Rich
	Extra   any
	Grid    [2]int
	Nothing []int
	Fn      func() // CEL cannot read it: neither recorded nor read back
	hidden  string
}

func richSet(t testing.TB, extra ...taicel.Rule) (*taicel.Env[Rich], *taicel.Set[Rich]) {
	t.Helper()
	env, err := taicel.NewEnv(taicel.Options[Rich]{
		Vars: map[string]*cel.Type{"n": cel.IntType, "x": cel.DoubleType, "u": cel.UintType, "s": cel.StringType, "b": cel.BoolType,
			"at": cel.TimestampType, "d": cel.DurationType, "raw": cel.BytesType, "l": cel.ListType(cel.IntType), "any": cel.DynType},
		Lookup: func(ctx context.Context, _ tai.Signal[Rich]) (map[string]any, error) {
			return ctx.Value(stateKey{}).(map[string]any), nil
		},
		RecordInputs: true,
	})
	require.NoError(t, err)
	rules := append([]taicel.Rule{
		{Name: "card", Verdict: tai.Deny, Expr: `payload.Last4 == "0000"`},
		{Name: "amount", Weight: 0.4, Expr: "payload.Amount > 100.0 && payload.Next.Amount < x", Reason: "{{payload.Name}} {{n}}"},
		{Name: "many", Weight: 0.3, Expr: `size(payload.Tags) > 1 && payload.Limits["day"] > 1.5 && payload.ByID[7] == "seven" && u > 3u && s == "s" && b`},
		{Name: "time", Weight: 0.2, Expr: `payload.When < at && payload.Wait + d > duration("1s") && size(raw) == 2 && size(l) == 2 && payload.Extra.k == 1 && any[0] == 2.5`},
		{Name: "ratio", Weight: 0.1, Expr: `double(payload.Ratio) * double(payload.Small) + double(payload.Big) > 1.0 && payload.Grid[1] == 2 && payload.Flags[true] == 3u`},
	}, extra...)
	set, err := env.Compile(&taicel.Spec{Version: "r", Rules: rules})
	require.NoError(t, err)
	return env, set
}

func richSignal() (tai.Signal[Rich], map[string]any) {
	at := time.Date(2026, 3, 1, 12, 0, 0, 0, time.FixedZone("CET", 3600))
	p := Rich{
		Card: Card{Last4: "4242", Expiry: at.AddDate(2, 0, 0)}, Name: "a \"quoted\"\nname ünï", Amount: 150, Ratio: 0.25, Count: -3, Small: -8,
		Big: math.MaxUint64, Wait: 2 * time.Second, When: at.Add(-time.Hour), Tags: []string{"a", "b"}, Raw: []byte{0, 255},
		Limits: map[string]float64{"day": 2, "week": 1e21}, ByID: map[int]string{7: "seven", -1: "minus"},
		Flags: map[bool]uint8{true: 3}, Next: &Rich{Amount: 1e-7, When: at}, Extra: map[string]any{"k": int64(1), "f": 2.0, "l": []any{"x", nil, true}},
		Grid: [2]int{1, 2}, Fn: func() {}, hidden: "h",
	}
	vars := map[string]any{"n": int64(3), "x": 0.5, "u": uint64(4), "s": "s", "b": true, "at": at, "d": time.Second,
		"raw": []byte("ab"), "l": []int64{1, 2}, "any": []any{2.5}, "undeclared": "not recorded"}
	return tai.Signal[Rich]{ID: "r-1", Kind: "rich", Key: "k", Time: at, Payload: p}, vars
}

// TestInputsRoundTrip checks that a recorded decision read back and
// replayed with the same set is the same decision, byte for byte.
func TestInputsRoundTrip(t *testing.T) {
	env, set := richSet(t)
	sig, vars := richSignal()
	d, err := set.Evaluate(context.WithValue(t.Context(), stateKey{}, vars), sig)
	require.NoError(t, err)
	require.Equal(t, tai.Deny, d.Verdict)
	require.Len(t, d.Contributions, 4, "every scored rule fires")
	assert.Equal(t, `a "quoted"`+"\nname ünï 3", d.Contributions[0].Reason)
	assert.True(t, json.Valid(d.Inputs), "%s", d.Inputs)
	t.Logf("%s", d.Inputs)
	for _, want := range []string{`"Amount":150.0`, `"Ratio":0.25`, `"Count":-3`, `"Big":18446744073709551615`, `"Wait":2000000000`,
		`"Raw":"AP8="`, `"Limits":{"day":2.0,"week":1e+21}`, `"ByID":{"-1":"minus","7":"seven"}`, `"Amount":1e-7`,
		`"When":"2026-03-01T11:00:00+01:00"`, `"Nothing":[]`,
		`"nil":{"Next":{"Tags":null,"Raw":null,"Limits":null,"ByID":null,"Flags":null,"Nothing":null},"Nothing":null}`, `"Card":{"Last4":"4242","Expiry":"2028-03-01T12:00:00+01:00"}`,
		`"vars":{"any":[2.5],"at":"2026-03-01T12:00:00+01:00","b":true,"d":1000000000,"l":[1,2],"n":3,"raw":"YWI=","s":"s","u":4,"x":0.5}`} {
		assert.Contains(t, string(d.Inputs), want)
	}
	assert.NotContains(t, string(d.Inputs), "undeclared")
	assert.NotContains(t, string(d.Inputs), "hidden")
	assert.NotContains(t, string(d.Inputs), "Fn")

	in, err := env.DecodeInputs(d.Inputs)
	require.NoError(t, err)
	assert.True(t, in.Time.Equal(sig.Time))
	assert.Empty(t, in.VerdictRule)
	// Times come back at the same instant with the same offset.
	reparse := func(t0 time.Time) time.Time {
		t1, err := time.Parse(time.RFC3339Nano, t0.Format(time.RFC3339Nano))
		require.NoError(t, err)
		return t1
	}
	want := sig.Payload
	want.Fn, want.hidden = nil, ""
	want.Extra = map[string]any{"k": int64(1), "f": 2.0, "l": []any{"x", nil, true}}
	want.When, want.Expiry = reparse(want.When), reparse(want.Expiry)
	next := *want.Next
	next.When, next.Expiry = reparse(next.When), reparse(next.Expiry)
	want.Next = &next
	assert.Equal(t, want, in.Payload)
	assert.Equal(t, map[string]any{"n": int64(3), "x": 0.5, "u": uint64(4), "s": "s", "b": true, "at": in.Vars["at"], "d": time.Second,
		"raw": []byte("ab"), "l": []any{int64(1), int64(2)}, "any": []any{2.5}}, in.Vars)
	assert.True(t, vars["at"].(time.Time).Equal(in.Vars["at"].(time.Time)))

	sig2 := sig
	sig2.Time, sig2.Payload = in.Time, in.Payload
	again, err := set.Replay(sig2, in.Vars)
	require.NoError(t, err)
	assert.Equal(t, d, again)
	assert.Equal(t, string(d.Inputs), string(again.Inputs))
}

func TestInputsRoundTripVerdictRule(t *testing.T) {
	env, set := richSet(t)
	sig, vars := richSignal()
	sig.Payload.Last4 = "0000"
	d, err := set.Evaluate(context.WithValue(t.Context(), stateKey{}, vars), sig)
	require.NoError(t, err)
	in, err := env.DecodeInputs(d.Inputs)
	require.NoError(t, err)
	assert.Equal(t, "card", in.VerdictRule)
	again, err := set.Replay(tai.Signal[Rich]{ID: sig.ID, Kind: sig.Kind, Key: sig.Key, Time: in.Time, Payload: in.Payload}, in.Vars)
	require.NoError(t, err)
	assert.Equal(t, d, again)
}

func TestFloatsKeepTheirType(t *testing.T) {
	env, err := taicel.NewEnv(taicel.Options[Order]{RecordInputs: true})
	require.NoError(t, err)
	set, err := env.Compile(&taicel.Spec{Version: "f", Rules: []taicel.Rule{{Name: "r", Weight: 1, Expr: "payload.Total != 1.5"}}})
	require.NoError(t, err)
	for _, tc := range []struct {
		total float64
		want  string
	}{
		{0, "0.0"}, {math.Copysign(0, -1), "-0.0"}, {5000, "5000.0"}, {-12, "-12.0"}, {0.1, "0.1"}, {123456789012, "123456789012.0"},
		{1e20, "100000000000000000000.0"}, {1e21, "1e+21"}, {1e-6, "0.000001"}, {1e-7, "1e-7"}, {-2.5e-10, "-2.5e-10"},
		{math.MaxFloat64, "1.7976931348623157e+308"}, {math.SmallestNonzeroFloat64, "5e-324"},
		{math.NaN(), `"NaN"`}, {math.Inf(1), `"+Inf"`}, {math.Inf(-1), `"-Inf"`},
	} {
		d, err := set.Evaluate(t.Context(), tai.Signal[Order]{Payload: Order{Total: tc.total, Items: 3}})
		require.NoError(t, err)
		assert.Contains(t, string(d.Inputs), `"Total":`+tc.want+`,"Items":3,`, "%v", tc.total)
		in, err := env.DecodeInputs(d.Inputs)
		require.NoError(t, err)
		if math.IsNaN(tc.total) {
			assert.True(t, math.IsNaN(in.Payload.Total))
		} else {
			assert.Equal(t, tc.total, in.Payload.Total)
		}
	}
}

func TestDecodeInputsErrors(t *testing.T) {
	env, _ := richSet(t)
	for _, tc := range []struct {
		in, want string
	}{
		{``, "want an object"},
		{`[]`, "want an object"},
		{`{"time":"2026-01-01T00:00:00Z"}`, "no payload"},
		{`{"payload":{}} x`, `unexpected 'x' after the value`},
		{"{\"payload\":{}}\x00", `unexpected '\x00' after the value`},
		{"{\"payload\":{}} \x00junk", `unexpected '\x00' after the value`},
		{`{"payload":{"Nope":1}}`, `payload: taicel_test.Rich has no field "Nope"`},
		{`{"payload":{"Count":1.5}}`, "payload: Count: a number with a fraction is not an int64"},
		{`{"payload":{"Small":300}}`, "payload: Small: a number that does not fit an int8"},
		{`{"payload":{"Big":-1}}`, "payload: Big: a negative number is not a uint64"},
		{`{"payload":{"Amount":"many"}}`, `payload: Amount: a string other than "NaN", "+Inf" and "-Inf" is not a number`},
		{`{"payload":{"Name":5}}`, "payload: Name: offset 19: want a string"},
		{`{"payload":{"When":"yesterday"}}`, "payload: When: a string that is not a timestamp (an RFC 3339 string)"},
		{`{"payload":{"Raw":"%%"}}`, "payload: Raw: bytes: illegal base64"},
		{`{"payload":{"Grid":[1,2,3]}}`, "payload: Grid: more than 2 elements"},
		{`{"payload":{"ByID":{"x":"y"}}}`, `payload: ByID: a key that does not read as int`},
		{`{"payload":{"Tags":["a",1]}}`, "payload: Tags: [1]: offset 24: want a string"},
		{`{"payload":{"Fn":null}}`, `has no field "Fn"`},
		{`{"payload":{},"vars":{"n":"3"}}`, "vars: n: offset 26: want a number"},
		{`{"payload":{},"vars":{"x":true}}`, "vars: x: offset 26: want a number"},
		{`{"payload":{},"vars":{"at":"noon"}}`, "vars: at: a string that is not a timestamp (an RFC 3339 string)"},
		{`{"payload":{},"verdict_rule":3}`, "want a string"},
		{"{\"payload\":{\"Name\":\"\x01\"}}", "control character in a string"},
		{`{"payload":{"Name":"\q"}}`, `invalid escape \q`},
		{`{"payload":{"Name":"abc`, "string not terminated"},
		{`{"payload":{"Count":01}}`, "want a number"},
		{`{"payload":{"Count":-}}`, "want a number"},
		{`{"payload":{"Amount":1.}}`, "invalid number"},
		{`{"payload":{"Amount":1e}}`, "invalid number"},
		{`{"payload":{"Extra":[1,2}}`, "want ',' or ']'"},
		{`{"payload":{"Extra":{"a" 1}}}`, "want ':'"},
		{`{"payload":{"Extra":tru}}`, "invalid value"},
		{`{"payload":{"Extra":` + strings.Repeat("[", 20000) + `}}`, "nested too deeply"},
		{`{"payload":{} "x":1}`, "want ',' or '}'"},
	} {
		_, err := env.DecodeInputs([]byte(tc.in))
		require.Error(t, err, tc.in)
		assert.Contains(t, err.Error(), tc.want, tc.in)
		assert.True(t, strings.HasPrefix(err.Error(), "taicel: inputs: "), err.Error())
	}

	// What a later version may add is ignored; a missing field is zero.
	in, err := env.DecodeInputs([]byte(` {"later":{"a":[1,"b",null,true,false,-1.5e3]},"payload":{"Name":"\u00fc\ud83d\ude00\/"},"vars":{"n":null,"y":12345678901234567890,"z":1e400} } `))
	require.NoError(t, err)
	assert.Equal(t, "ü😀/", in.Payload.Name)
	assert.Equal(t, map[string]any{"n": nil, "y": uint64(12345678901234567890), "z": math.Inf(1)}, in.Vars)
	assert.True(t, in.Time.IsZero())
}

func TestUnrecordableFields(t *testing.T) {
	type key struct{ A, B int }
	type Odd struct {
		ByPair map[key]string
		Name   string
	}
	_, err := taicel.NewEnv(taicel.Options[Odd]{RecordInputs: true})
	assert.ErrorContains(t, err, "taicel: payload taicel_test.Odd: field ByPair: values of type taicel_test.key cannot be recorded; list the field in Options.Unrecorded")
	_, err = taicel.NewEnv(taicel.Options[Odd]{}) // nothing is recorded
	require.NoError(t, err)
	env, err := taicel.NewEnv(taicel.Options[Odd]{RecordInputs: true, Unrecorded: []string{"ByPair"}})
	require.NoError(t, err)
	set, err := env.Compile(&taicel.Spec{Version: "o", Rules: []taicel.Rule{{Name: "r", Weight: 1, Expr: `payload.Name == "x"`}}})
	require.NoError(t, err)
	d, err := set.Evaluate(t.Context(), tai.Signal[Odd]{Payload: Odd{ByPair: map[key]string{{1, 2}: "x"}, Name: "x"}})
	require.NoError(t, err)
	assert.Contains(t, string(d.Inputs), `"payload":{"Name":"x"}`)
	_, err = env.DecodeInputs([]byte(`{"payload":{"ByPair":{}}}`))
	assert.ErrorContains(t, err, "cannot be read back")
}

func TestRecordPointerPayload(t *testing.T) {
	env, err := taicel.NewEnv(taicel.Options[*Order]{RecordInputs: true})
	require.NoError(t, err)
	set, err := env.Compile(&taicel.Spec{Version: "p", Rules: []taicel.Rule{{Name: "r", Weight: 1, Expr: "payload.Items > 1"}}})
	require.NoError(t, err)
	d, err := set.Evaluate(t.Context(), tai.Signal[*Order]{Payload: &Order{ID: "o", Items: 2, Tags: []string{}}})
	require.NoError(t, err)
	assert.Contains(t, string(d.Inputs), `"payload":{"ID":"o","Total":0.0,"Items":2,"Tags":[]}`)
	in, err := env.DecodeInputs(d.Inputs)
	require.NoError(t, err)
	assert.Equal(t, &Order{ID: "o", Items: 2, Tags: []string{}}, in.Payload)
	_, err = set.Replay(tai.Signal[*Order]{}, nil)
	assert.EqualError(t, err, "taicel: the signal's payload is a nil pointer")
	in, err = env.DecodeInputs([]byte(`{"payload":null}`))
	require.NoError(t, err)
	assert.Nil(t, in.Payload)
}

// TestVarsOfLookupTypes checks that a variable recorded with the Go type
// Lookup gave is read back with the Go type of its CEL type, and that CEL
// values are recorded as the values they hold.
func TestVarsOfLookupTypes(t *testing.T) {
	env, err := taicel.NewEnv(taicel.Options[Order]{
		Vars: map[string]*cel.Type{"n": cel.IntType, "x": cel.DoubleType, "s": cel.StringType},
		Lookup: func(context.Context, tai.Signal[Order]) (map[string]any, error) {
			return map[string]any{"n": types.Int(4), "x": 3, "s": types.String("y")}, nil
		},
		RecordInputs: true,
	})
	require.NoError(t, err)
	set, err := env.Compile(&taicel.Spec{Version: "v", Rules: []taicel.Rule{{Name: "r", Weight: 1, Expr: `n > 3 && s == "y"`}}})
	require.NoError(t, err)
	d, err := set.Evaluate(t.Context(), tai.Signal[Order]{})
	require.NoError(t, err)
	assert.Contains(t, string(d.Inputs), `"vars":{"n":4,"s":"y","x":3.0}`, "x is a double, whatever Go type Lookup gave it")
	in, err := env.DecodeInputs(d.Inputs)
	require.NoError(t, err)
	assert.Equal(t, map[string]any{"n": int64(4), "x": 3.0, "s": "y"}, in.Vars)
}

func TestDynamicEnv(t *testing.T) {
	env, err := taicel.NewEnv(taicel.Options[map[string]any]{
		Lookup: func(context.Context, tai.Signal[map[string]any]) (map[string]any, error) {
			return map[string]any{"attempts": int64(6), "spent": 10.0}, nil
		},
		RecordInputs: true,
		Unrecorded:   []string{"Card"},
	})
	require.NoError(t, err)
	set, err := env.Compile(&taicel.Spec{Version: "d", Thresholds: taicel.Thresholds{Deny: 0.5}, Sets: map[string][]string{"bad": {"KP"}}, Rules: []taicel.Rule{
		{Name: "country", Verdict: tai.Deny, Expr: "payload.Country in sets.bad"},
		{Name: "amount", Weight: 0.3, Expr: "payload.Amount > 4.0 * 5000.0", Reason: "{{payload.Amount}} over {{limit}}"},
		{Name: "velocity", Weight: 0.3, Expr: "attempts > 5 && spent < 100.0"},
		{Name: "flag", Weight: 0.1, Expr: "payload.Flag"},
		{Name: "all", Weight: 0.1, Expr: `payload.Items.all(i, i.n > 0) && [1, 2].exists(x, x == 2)`},
	}})
	require.NoError(t, err)
	p := map[string]any{"Country": "DE", "Amount": 30000.0, "Flag": true, "Card": "4242", "Items": []any{map[string]any{"n": int64(1)}}}
	ctx := t.Context()
	d, err := set.Evaluate(ctx, tai.Signal[map[string]any]{Payload: p})
	var re *taicel.RuleError
	require.ErrorAs(t, err, &re, "limit is declared dyn and Lookup lacks it")
	assert.Equal(t, "amount", re.Rule)
	assert.True(t, re.Reason)
	assert.Zero(t, d.Verdict)
	assert.Nil(t, d.Inputs, "a failed evaluation records nothing")

	d, err = set.Replay(tai.Signal[map[string]any]{Payload: p}, map[string]any{"attempts": int64(6), "spent": 10.0, "limit": int64(20000)})
	require.NoError(t, err)
	assert.Equal(t, tai.Deny, d.Verdict)
	assert.InDelta(t, 0.8, d.Score, 1e-12)
	assert.Equal(t, "30000 over 20000", d.Contributions[0].Reason)
	assert.Equal(t, `{"time":"0001-01-01T00:00:00Z","payload":{"Amount":30000.0,"Country":"DE","Flag":true,"Items":[{"n":1}]},`+
		`"vars":{"attempts":6,"limit":20000,"spent":10.0}}`, string(d.Inputs))

	in, err := env.DecodeInputs(d.Inputs)
	require.NoError(t, err)
	assert.Equal(t, map[string]any{"Country": "DE", "Amount": 30000.0, "Flag": true, "Items": []any{map[string]any{"n": int64(1)}}}, in.Payload)
	assert.Equal(t, map[string]any{"attempts": int64(6), "spent": 10.0, "limit": int64(20000)}, in.Vars)
	again, err := set.Replay(tai.Signal[map[string]any]{Payload: in.Payload}, in.Vars)
	require.NoError(t, err)
	assert.Equal(t, d, again)

	// A field no payload has fails the rule that reads it; so does a
	// result of the wrong type.
	delete(p, "Flag")
	_, err = set.Replay(tai.Signal[map[string]any]{Payload: p}, in.Vars)
	require.ErrorAs(t, err, &re)
	assert.Equal(t, "flag", re.Rule)
	assert.Contains(t, err.Error(), "no such key: Flag")
	p["Flag"] = "yes"
	_, err = set.Replay(tai.Signal[map[string]any]{Payload: p}, in.Vars)
	assert.ErrorContains(t, err, `rule "flag": result string is not a bool or a double`)
	p["Flag"], p["Country"] = false, 5
	_, err = set.Replay(tai.Signal[map[string]any]{Payload: p}, in.Vars)
	assert.NoError(t, err, "5 in sets.bad is false")

	// A dynamic Env still checks syntax and what it can.
	_, err = env.Compile(&taicel.Spec{Version: "d", Rules: []taicel.Rule{{Name: "bad", Verdict: tai.Deny, Expr: "payload.Amount >"}}})
	assert.ErrorContains(t, err, "Syntax error")
	_, err = env.Compile(&taicel.Spec{Version: "d", Rules: []taicel.Rule{{Name: "str", Verdict: tai.Deny, Expr: `"a" + 1 == "a1"`}}})
	assert.ErrorContains(t, err, "no matching overload")
}

func FuzzDecodeInputs(f *testing.F) {
	env, set := richSet(f)
	sig, vars := richSignal()
	d, err := set.Evaluate(context.WithValue(f.Context(), stateKey{}, vars), sig)
	require.NoError(f, err)
	f.Add([]byte(d.Inputs))
	f.Add([]byte(`{"payload":{"Name":"\u00fc\ud83d","Extra":[1,2.5,"x",{"a":null}]},"vars":{"n":1e2,"l":[]}}`))
	f.Add([]byte(`{"payload":{"Big":1e19,"Count":-0,"Raw":"","Grid":[],"Next":{"Next":null}}}`))
	f.Add([]byte(`{"payload":{"Tags":[],"Next":{"ByID":{}}},"nil":[["Tags"],["Next","ByID"],["Next","Next","Tags"],["Grid",5],[],3]}`))
	f.Add([]byte(`{"payload":{"Tags":[],"Next":{"ByID":{}}},"nil":{"Tags":null,"Next":{"ByID":null,"Next":{"Tags":null}},"Grid":{"5":null,"0":{}},"x":3}}`))
	f.Add([]byte(`{"payload":{"Tags":[],"Next":{"ByID":{},"Grid":[0,0]},"Limits":{}},"nil":{"Tags":null,"Next":{"ByID":null},"Limits":null}}`))
	f.Add([]byte(`{"payload":{"Extra":{"a":["AP8=",null]},"Next":{"Extra":5}},"types":{"Extra":{"a":"bytes"},"Next":{"Extra":"duration","When":"timestamp"}},"vars":{"any":[1]},"var_types":{"any":{"0":"duration"}}}`))
	f.Add([]byte(`{"payload":{"ByID":{"7":"x"},"Grid":[1,2]},"types":{"ByID":{"7":"bytes"},"Grid":"timestamp","Card":{"Expiry":"timestamp"}}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		_, err := env.DecodeInputs(data)
		if err == nil {
			require.True(t, json.Valid(data), "accepted invalid JSON %q", data)
		}
	})
}

// FuzzRecordRoundTrip checks that what a set records reads back as the
// same payload and variables.
func FuzzRecordRoundTrip(f *testing.F) {
	env, err := taicel.NewEnv(taicel.Options[Rich]{
		Vars: map[string]*cel.Type{"x": cel.DoubleType, "n": cel.IntType, "s": cel.StringType},
		Lookup: func(ctx context.Context, _ tai.Signal[Rich]) (map[string]any, error) {
			return ctx.Value(stateKey{}).(map[string]any), nil
		},
		RecordInputs: true,
	})
	require.NoError(f, err)
	set, err := env.Compile(&taicel.Spec{Version: "f", Rules: []taicel.Rule{{Name: "r", Weight: 1, Expr: "payload.Amount > x"}}})
	require.NoError(f, err)
	f.Add("name", 1.5, int64(3), float32(0.5), uint64(7), []byte("raw"), "tag", int64(-1))
	f.Add("\x00\xff\\\"\u2028", math.Inf(-1), int64(math.MinInt64), float32(math.NaN()), uint64(math.MaxUint64), []byte{}, "", int64(0))
	f.Fuzz(func(t *testing.T, name string, amount float64, count int64, ratio float32, big uint64, raw []byte, tag string, n int64) {
		p := Rich{Name: name, Amount: amount, Count: int(count), Ratio: ratio, Big: big, Raw: raw, Tags: []string{tag},
			Limits: map[string]float64{tag: amount}, Extra: map[string]any{"n": n, "f": amount, "s": name}}
		vars := map[string]any{"x": amount, "n": n, "s": name}
		d, err := set.Evaluate(context.WithValue(t.Context(), stateKey{}, vars), tai.Signal[Rich]{Payload: p})
		require.NoError(t, err)
		require.True(t, json.Valid(d.Inputs), "%s", d.Inputs)
		in, again := replay(t, env, set, d)
		require.Equal(t, d.Verdict, again.Verdict)
		if utf8.ValidString(name) && utf8.ValidString(tag) {
			// Invalid UTF-8 is recorded as U+FFFD, which reads back as itself.
			require.Equal(t, string(d.Inputs), string(again.Inputs), "recorded twice, the same bytes")
			require.Equal(t, name, in.Payload.Name)
			require.Equal(t, name, in.Vars["s"])
		}
		require.Equal(t, n, in.Vars["n"])
		require.Equal(t, n, in.Payload.Extra.(map[string]any)["n"])
		require.Equal(t, big, in.Payload.Big)
		require.Equal(t, int(count), in.Payload.Count)
		if !math.IsNaN(amount) {
			require.Equal(t, amount, in.Payload.Amount)
			require.Equal(t, amount, in.Vars["x"])
		}
		// Without a Go type too: "NaN", "+Inf" and "-Inf" are marked doubles.
		if f := in.Payload.Extra.(map[string]any)["f"]; math.IsNaN(amount) {
			require.IsType(t, float64(0), f)
			require.True(t, math.IsNaN(f.(float64)))
		} else {
			require.Equal(t, amount, f)
		}
		if !math.IsNaN(float64(ratio)) {
			require.Equal(t, ratio, in.Payload.Ratio)
		}
	})
}

func TestDecodeDynamicInputsErrors(t *testing.T) {
	env, err := taicel.NewEnv(taicel.Options[map[string]any]{})
	require.NoError(t, err)
	for in, want := range map[string]string{
		`{"payload":[1]}`:       "payload: offset 11: want an object",
		`{"payload":"x"}`:       "payload: offset 11: want an object",
		`{"payload":{"a":tru}}`: "payload: offset 16: invalid value",
	} {
		_, err := env.DecodeInputs([]byte(in))
		assert.ErrorContains(t, err, want, in)
	}
	in, err := env.DecodeInputs([]byte(`{"payload":null}`))
	require.NoError(t, err)
	assert.Nil(t, in.Payload)
}

// node is a payload type that can hold itself.
type node struct {
	Amount float64
	Next   *node
}

func TestRecordValueThatHoldsItself(t *testing.T) {
	spec, err := taicel.Parse([]byte("version: '1'\nrules:\n  - name: big\n    verdict: deny\n    expr: payload.Amount > 100.0\n"))
	require.NoError(t, err)

	t.Run("struct", func(t *testing.T) {
		env, err := taicel.NewEnv(taicel.Options[node]{RecordInputs: true})
		require.NoError(t, err)
		set, err := env.Compile(spec)
		require.NoError(t, err)
		ring := &node{Amount: 1}
		ring.Next = &node{Amount: 2, Next: ring}
		_, err = set.Evaluate(t.Context(), tai.Signal[node]{ID: "1", Payload: node{Amount: 5, Next: ring}})
		require.ErrorContains(t, err, "taicel: recording inputs: payload: nested more than 10000 deep")

		// A long chain that the reader takes is recorded and read back.
		var chain *node
		for i := range 500 {
			chain = &node{Amount: float64(i), Next: chain}
		}
		d, err := set.Evaluate(t.Context(), tai.Signal[node]{ID: "1", Payload: *chain})
		require.NoError(t, err)
		in, err := env.DecodeInputs(d.Inputs)
		require.NoError(t, err)
		assert.Equal(t, *chain, in.Payload)
	})

	t.Run("dynamic", func(t *testing.T) {
		env, err := taicel.NewEnv(taicel.Options[map[string]any]{RecordInputs: true})
		require.NoError(t, err)
		set, err := env.Compile(spec)
		require.NoError(t, err)
		m := map[string]any{"Amount": 5.0}
		m["a"], m["b"] = m, []any{m} // twice, so that writing it would never end
		_, err = set.Evaluate(t.Context(), tai.Signal[map[string]any]{ID: "1", Payload: m})
		require.ErrorContains(t, err, "taicel: recording inputs: payload: nested more than 10000 deep")
	})

	t.Run("variable", func(t *testing.T) {
		l := []any{1}
		l[0] = l
		env, err := taicel.NewEnv(taicel.Options[map[string]any]{RecordInputs: true,
			Lookup: func(context.Context, tai.Signal[map[string]any]) (map[string]any, error) {
				return map[string]any{"loop": l}, nil
			}})
		require.NoError(t, err)
		set, err := env.Compile(spec)
		require.NoError(t, err)
		_, err = set.Evaluate(t.Context(), tai.Signal[map[string]any]{ID: "1", Payload: map[string]any{"Amount": 5.0}})
		require.ErrorContains(t, err, `taicel: recording inputs: variable "loop": nested more than 10000 deep`)

		// A Shadow records the live set's inputs: it fails the same way.
		sh, err := taicel.NewShadow(set, set, taicel.ShadowOptions[map[string]any]{})
		require.NoError(t, err)
		_, err = sh.Evaluate(t.Context(), tai.Signal[map[string]any]{ID: "1", Payload: map[string]any{"Amount": 5.0}})
		require.ErrorContains(t, err, `variable "loop": nested more than 10000 deep`)
		assert.EqualValues(t, 1, sh.Stats().LiveErrors)
	})
}

// A dynamic Env declares a variable an expression reads outside a
// comprehension whose variable has the same name: the comprehension binds
// it only inside.
func TestDynamicEnvVariableNamedLikeAComprehensions(t *testing.T) {
	env, err := taicel.NewEnv(taicel.Options[map[string]any]{
		Lookup: func(context.Context, tai.Signal[map[string]any]) (map[string]any, error) {
			return nil, nil
		},
		EnvOptions: []cel.EnvOption{ext.Bindings(), ext.TwoVarComprehensions()},
	})
	require.NoError(t, err)
	for _, expr := range []string{
		`x > 5 && [1, 2].all(x, x > 0)`,
		`[1, 2].exists(x, x == 2) && x > 5`,
		`[x].all(x, x == 7)`,                            // the range is outside the loop
		`cel.bind(acc, acc + 1, acc == 3)`,              // so is the start of cel.bind's
		`{"k": 1}.all(k, v, v == 1) && [k].size() == 1`, // a second iteration variable
	} {
		t.Run(expr, func(t *testing.T) {
			lookup := map[string]any{"x": int64(7), "acc": int64(2), "k": "k", "v": 0}
			set, err := env.Compile(&taicel.Spec{Version: "1", Rules: []taicel.Rule{{Name: "r", Verdict: tai.Deny, Expr: expr}}})
			require.NoError(t, err)
			d, err := set.Replay(tai.Signal[map[string]any]{Payload: map[string]any{}}, lookup)
			require.NoError(t, err)
			assert.Equal(t, tai.Deny, d.Verdict)
		})
	}
}

// A dynamic Env declared again, as dyn, the variables and constants its
// EnvOptions declared: every set reading one failed to compile with
// "overlapping identifier". They keep their declarations, and so does
// an Amount reading one.
func TestDynamicEnvKeepsTheVariablesOfItsEnvOptions(t *testing.T) {
	env, err := taicel.NewEnv(taicel.Options[map[string]any]{
		Lookup: func(context.Context, tai.Signal[map[string]any]) (map[string]any, error) {
			return map[string]any{"region": "eu", "attempts": 3}, nil
		},
		EnvOptions: []cel.EnvOption{cel.Variable("region", cel.StringType), cel.Constant("limit", cel.IntType, types.Int(2))},
	})
	require.NoError(t, err)
	set, err := env.Compile(&taicel.Spec{Version: "1", Rules: []taicel.Rule{
		{Name: "r", Verdict: tai.Deny, Expr: `region == "eu" && attempts > limit`, Reason: "{{region}} over {{limit}}"},
	}})
	require.NoError(t, err)
	d, err := set.Evaluate(t.Context(), tai.Signal[map[string]any]{Payload: map[string]any{}})
	require.NoError(t, err)
	assert.Equal(t, tai.Deny, d.Verdict)
	assert.Equal(t, "eu over 2", d.Reason)
	_, err = taicel.Backtest(t.Context(), set, strings.NewReader(""), taicel.BacktestOptions{Amount: "limit + size(region)"})
	assert.NoError(t, err)
}

// TestInputsRoundTripListAndMapVars checks that the elements of a list or
// a map variable are read back with their declared type: a double that
// is not finite, a uint, a timestamp, a duration and bytes, which JSON
// writes as a string or a number of another type.
func TestInputsRoundTripListAndMapVars(t *testing.T) {
	at := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	vars := map[string]any{
		"scores": []float64{0.5, math.Inf(1), math.NaN()},
		"counts": []uint64{3, math.MaxUint64},
		"seen":   []time.Time{at},
		"waits":  map[string]time.Duration{"p99": 2 * time.Second},
		"keys":   map[int64][]byte{7: []byte("k")},
		"grid":   [][]float64{{math.Inf(-1)}},
	}
	env, err := taicel.NewEnv(taicel.Options[Order]{
		Vars: map[string]*cel.Type{
			"scores": cel.ListType(cel.DoubleType),
			"counts": cel.ListType(cel.UintType),
			"seen":   cel.ListType(cel.TimestampType),
			"waits":  cel.MapType(cel.StringType, cel.DurationType),
			"keys":   cel.MapType(cel.IntType, cel.BytesType),
			"grid":   cel.ListType(cel.ListType(cel.DoubleType)),
		},
		Lookup:       func(context.Context, tai.Signal[Order]) (map[string]any, error) { return vars, nil },
		RecordInputs: true,
	})
	require.NoError(t, err)
	set, err := env.Compile(&taicel.Spec{Version: "v", Rules: []taicel.Rule{
		{Name: "inf", Weight: 0.1, Expr: `scores.exists(s, s > 1.0)`},
		{Name: "nan", Weight: 0.1, Expr: `scores.exists(s, s != s)`},
		{Name: "uint", Weight: 0.1, Expr: `counts.all(c, c + 0u > 2u)`},
		{Name: "time", Weight: 0.1, Expr: `seen.exists(s, s > timestamp("2026-01-01T00:00:00Z"))`},
		{Name: "duration", Weight: 0.1, Expr: `waits["p99"] > duration("1s")`},
		{Name: "bytes", Weight: 0.1, Expr: `keys[7] == b"k"`},
		{Name: "nested", Weight: 0.1, Expr: `grid[0][0] < 0.0`},
	}})
	require.NoError(t, err)
	d, err := set.Evaluate(t.Context(), tai.Signal[Order]{Time: at})
	require.NoError(t, err)
	require.Len(t, d.Contributions, 7, "every rule fires: %+v", d.Contributions)

	in, again := replay(t, env, set, d)
	assert.Equal(t, d, again)
	assert.Equal(t, string(d.Inputs), string(again.Inputs))
	assert.Equal(t, []any{uint64(3), uint64(math.MaxUint64)}, in.Vars["counts"])
	assert.Equal(t, []any{at}, in.Vars["seen"])
	assert.Equal(t, map[string]any{"p99": 2 * time.Second}, in.Vars["waits"])
	assert.Equal(t, map[int64]any{7: []byte("k")}, in.Vars["keys"])
}

// TestInputsKeepTheInstantOfATimeWithSecondsInItsOffset checks a time
// whose zone's offset is not whole minutes, as local mean times before
// the 1940s are (Amsterdam was 19 minutes 32 seconds ahead of UTC):
// RFC 3339 writes an offset in minutes, and the seconds were lost.
func TestInputsKeepTheInstantOfATimeWithSecondsInItsOffset(t *testing.T) {
	lmt := time.FixedZone("LMT", 19*60+32)
	at := time.Date(1930, 5, 1, 12, 0, 0, 5, lmt)
	env, err := taicel.NewEnv(taicel.Options[Order]{
		Vars:         map[string]*cel.Type{"at": cel.TimestampType},
		Lookup:       func(context.Context, tai.Signal[Order]) (map[string]any, error) { return map[string]any{"at": at}, nil },
		RecordInputs: true,
	})
	require.NoError(t, err)
	set, err := env.Compile(&taicel.Spec{Version: "v", Rules: []taicel.Rule{
		{Name: "r", Weight: 1, Expr: `signal.time == at && at >= timestamp("1930-05-01T11:40:28.000000005Z")`}}})
	require.NoError(t, err)
	d, err := set.Evaluate(t.Context(), tai.Signal[Order]{Time: at})
	require.NoError(t, err)
	require.Equal(t, tai.Deny, d.Verdict)

	in, err := env.DecodeInputs(d.Inputs)
	require.NoError(t, err)
	assert.True(t, in.Time.Equal(at), "%v, recorded %s", in.Time, d.Inputs)
	assert.True(t, in.Vars["at"].(time.Time).Equal(at), "%v, recorded %s", in.Vars["at"], d.Inputs)
	again, err := set.Replay(tai.Signal[Order]{Time: in.Time, Payload: in.Payload}, in.Vars)
	require.NoError(t, err)
	assert.Equal(t, d, again)
}

// TestInputsRoundTripEmptyListMapAndBytesVars checks variables a store
// returns as nil slices and maps, which CEL reads as empty: JSON writes
// them as null, which read back as nil was CEL's null, and a rule that
// read them (size(l), x in m) failed on replay though it had decided.
func TestInputsRoundTripEmptyListMapAndBytesVars(t *testing.T) {
	vars := map[string]any{
		"countries": []string(nil),
		"limits":    map[string]float64(nil),
		"by_id":     map[int64]string(nil),
		"token":     []byte(nil),
		"grid":      [][]int64{nil},
	}
	env, err := taicel.NewEnv(taicel.Options[Order]{
		Vars: map[string]*cel.Type{
			"countries": cel.ListType(cel.StringType),
			"limits":    cel.MapType(cel.StringType, cel.DoubleType),
			"by_id":     cel.MapType(cel.IntType, cel.StringType),
			"token":     cel.BytesType,
			"grid":      cel.ListType(cel.ListType(cel.IntType)),
		},
		Lookup:       func(context.Context, tai.Signal[Order]) (map[string]any, error) { return vars, nil },
		RecordInputs: true,
	})
	require.NoError(t, err)
	set, err := env.Compile(&taicel.Spec{Version: "v", Rules: []taicel.Rule{
		{Name: "list", Weight: 0.1, Expr: `size(countries) == 0`},
		{Name: "map", Weight: 0.1, Expr: `!("DE" in limits)`},
		{Name: "int_map", Weight: 0.1, Expr: `size(by_id) == 0`},
		{Name: "bytes", Weight: 0.1, Expr: `size(token) == 0`},
		{Name: "nested", Weight: 0.1, Expr: `size(grid[0]) == 0`},
	}})
	require.NoError(t, err)
	d, err := set.Evaluate(t.Context(), tai.Signal[Order]{})
	require.NoError(t, err)
	require.Len(t, d.Contributions, 5, "every rule fires: %+v", d.Contributions)

	in, again := replay(t, env, set, d)
	assert.Equal(t, d, again)
	assert.Equal(t, string(d.Inputs), string(again.Inputs))

	// A trail written when they were recorded as null.
	in, err = env.DecodeInputs([]byte(`{"time":"0001-01-01T00:00:00Z","payload":{},` +
		`"vars":{"by_id":null,"countries":null,"grid":[null],"limits":null,"token":null}}`))
	require.NoError(t, err)
	again, err = set.Replay(tai.Signal[Order]{Time: in.Time, Payload: in.Payload}, in.Vars)
	require.NoError(t, err)
	assert.Equal(t, d.Contributions, again.Contributions)
}

// TestDynamicEnvReadsEmptyListAndMapVars checks variables a store returns
// as nil slices and maps, recorded by a typed Env and replayed by a
// dynamic one, as the taikit backtest command does: written as null, they
// read back as CEL's null there, which knows no type to read them as, and
// every rule reading them failed on decisions the set had made.
func TestDynamicEnvReadsEmptyListAndMapVars(t *testing.T) {
	vars := map[string]any{"countries": []string(nil), "limits": map[string]float64(nil)}
	env, err := taicel.NewEnv(taicel.Options[Order]{
		Vars:         map[string]*cel.Type{"countries": cel.ListType(cel.StringType), "limits": cel.MapType(cel.StringType, cel.DoubleType)},
		Lookup:       func(context.Context, tai.Signal[Order]) (map[string]any, error) { return vars, nil },
		RecordInputs: true,
	})
	require.NoError(t, err)
	spec := &taicel.Spec{Version: "v", Rules: []taicel.Rule{
		{Name: "list", Weight: 0.5, Expr: `size(countries) == 0`},
		{Name: "map", Weight: 0.5, Expr: `!("DE" in limits)`},
	}}
	set, err := env.Compile(spec)
	require.NoError(t, err)
	d, err := set.Evaluate(t.Context(), tai.Signal[Order]{})
	require.NoError(t, err)
	require.Equal(t, tai.Deny, d.Verdict)

	dyn, err := taicel.NewEnv(taicel.Options[map[string]any]{})
	require.NoError(t, err)
	dset, err := dyn.Compile(spec)
	require.NoError(t, err)
	in, err := dyn.DecodeInputs(d.Inputs)
	require.NoError(t, err)
	again, err := dset.Replay(tai.Signal[map[string]any]{Time: in.Time, Payload: in.Payload}, in.Vars)
	require.NoError(t, err, "inputs: %s", d.Inputs)
	assert.Equal(t, d.Verdict, again.Verdict)
	assert.Equal(t, d.Contributions, again.Contributions)
}

// TestInputsRoundTripNestedEmptyListsAndMaps checks nil slices and maps
// inside a dyn variable and inside an interface field of the payload,
// which CEL reads as empty: written as null, they read back as CEL's
// null, which no type declared tells to read as empty, and a rule that
// read them (size(m.a)) failed on replay though it had decided.
func TestInputsRoundTripNestedEmptyListsAndMaps(t *testing.T) {
	type Box struct {
		Extra any
	}
	vars := map[string]any{
		"m": map[string][]string{"a": nil},
		"l": []map[string]int{nil},
		"b": [][]byte{nil},
	}
	env, err := taicel.NewEnv(taicel.Options[Box]{
		Vars:         map[string]*cel.Type{"m": cel.DynType, "l": cel.DynType, "b": cel.DynType},
		Lookup:       func(context.Context, tai.Signal[Box]) (map[string]any, error) { return vars, nil },
		RecordInputs: true,
	})
	require.NoError(t, err)
	spec := &taicel.Spec{Version: "v", Rules: []taicel.Rule{
		{Name: "map", Weight: 0.1, Expr: `size(m.a) == 0`},
		{Name: "list", Weight: 0.1, Expr: `size(l[0]) == 0`},
		{Name: "bytes", Weight: 0.1, Expr: `size(b[0]) == 0`},
		{Name: "payload", Weight: 0.1, Expr: `size(payload.Extra) == 0`},
	}}
	set, err := env.Compile(spec)
	require.NoError(t, err)
	d, err := set.Evaluate(t.Context(), tai.Signal[Box]{Payload: Box{Extra: []int(nil)}})
	require.NoError(t, err)
	require.Len(t, d.Contributions, 4, "every rule fires: %+v", d.Contributions)

	_, again := replay(t, env, set, d)
	assert.Equal(t, d.Contributions, again.Contributions)
	assert.Equal(t, string(d.Inputs), string(again.Inputs))
}

// replay decodes the inputs d recorded and replays them on set: the
// decision again, and the inputs it was made from.
func replay[T any](t *testing.T, env *taicel.Env[T], set *taicel.Set[T], d tai.Decision) (taicel.Inputs[T], tai.Decision) {
	t.Helper()
	in, err := env.DecodeInputs(d.Inputs)
	require.NoError(t, err, "inputs: %s", d.Inputs)
	again, err := set.Replay(tai.Signal[T]{Time: in.Time, Payload: in.Payload}, in.Vars)
	require.NoError(t, err, "inputs: %s", d.Inputs)
	return in, again
}
