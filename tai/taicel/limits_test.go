package taicel_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"runtime"
	"strings"
	"testing"
	"time"

	"cel.dev/cel-go/cel"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/taipattern/taikit/tai"
	"github.com/taipattern/taikit/tai/taicel"
)

// nestedAll is depth comprehensions over list, one inside the other, whose
// body adds up their variables: 10^depth iterations over a list of ten.
// Seven levels ran for seconds before evaluations had a cost limit.
func nestedAll(list string, depth int) string {
	vars := "abcdefghij"[:depth]
	body := strings.Join(strings.Split(vars, ""), " + ") + " >= 0"
	for i := depth - 1; i >= 0; i-- {
		body = fmt.Sprintf("%s.all(%c, %s)", list, vars[i], body)
	}
	return body
}

const digits = "[0, 1, 2, 3, 4, 5, 6, 7, 8, 9]"

// listEnv declares L, a list of ints, and gives it n elements.
func listEnv(t *testing.T, n int, maxCost int64) *taicel.Env[Payment] {
	t.Helper()
	l := make([]int64, n)
	for i := range l {
		l[i] = int64(i % 10)
	}
	env, err := taicel.NewEnv(taicel.Options[Payment]{
		Vars: map[string]*cel.Type{"L": cel.ListType(cel.IntType)},
		Lookup: func(context.Context, tai.Signal[Payment]) (map[string]any, error) {
			return map[string]any{"L": l}, nil
		},
		MaxCost: maxCost,
	})
	require.NoError(t, err)
	return env
}

// compileRules compiles a set of rules, which must compile.
func compileRules(t *testing.T, env *taicel.Env[Payment], rules ...taicel.Rule) *taicel.Set[Payment] {
	t.Helper()
	set, err := env.Compile(&taicel.Spec{Version: "1", Rules: rules})
	require.NoError(t, err)
	return set
}

func TestCostLimitStopsAnExpensiveRule(t *testing.T) {
	// The verdict rule runs first; the scored rule never does. The
	// limit, not the deadline, stops it: the error is the limit's, not
	// the deadline's (how soon is a benchmark's question, not a test's).
	set := compileRules(t, listEnv(t, 10, 0),
		taicel.Rule{Name: "nested", Verdict: tai.Deny, Expr: nestedAll("L", 7)},
		taicel.Rule{Name: "cheap", Weight: 1, Expr: "size(L) > 5"})
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	d, err := set.Evaluate(ctx, signal(Payment{}))
	assert.ErrorIs(t, err, taicel.ErrCostLimit)
	assert.NotErrorIs(t, err, context.DeadlineExceeded)
	var re *taicel.RuleError
	require.ErrorAs(t, err, &re)
	assert.Equal(t, "nested", re.Rule)
	assert.False(t, re.Reason)
	assert.EqualError(t, err, fmt.Sprintf(
		`taicel: rule "nested": cost limit exceeded: the evaluation costs more than %d (Options.MaxCost)`, taicel.DefaultMaxCost))
	assert.Equal(t, tai.Decision{Policy: "cel"}, d)

	// Without a deadline too.
	_, err = set.Evaluate(context.Background(), signal(Payment{}))
	assert.ErrorIs(t, err, taicel.ErrCostLimit)
}

func TestCostLimitRefusesABoundedExpensiveRule(t *testing.T) {
	env := listEnv(t, 0, 0)
	// Over a list literal, CEL bounds the cost when the rule compiles:
	// 7 levels are refused then, 3 levels (about 10,000) are not.
	_, err := env.Compile(&taicel.Spec{Version: "1", Rules: []taicel.Rule{
		{Name: "nested", Verdict: tai.Deny, Expr: nestedAll(digits, 7)}}})
	var ce *taicel.CompileError
	require.ErrorAs(t, err, &ce)
	assert.Equal(t, "nested", ce.Rule)
	assert.Regexp(t, `^taicel: rule "nested": the expression can cost up to \d+, over the limit of 100000 \(Options.MaxCost\)$`, err.Error())

	set := compileRules(t, env, taicel.Rule{Name: "nested", Verdict: tai.Deny, Expr: nestedAll(digits, 3)})
	d, err := set.Evaluate(t.Context(), signal(Payment{}))
	require.NoError(t, err)
	assert.Equal(t, tai.Deny, d.Verdict)

	// So is a reason's {{expr}}.
	_, err = env.Compile(&taicel.Spec{Version: "1", Rules: []taicel.Rule{
		{Name: "r", Verdict: tai.Deny, Expr: "true", Reason: "{{" + nestedAll(digits, 6) + "}}"}}})
	require.ErrorAs(t, err, &ce)
	assert.True(t, ce.Reason)
	assert.Contains(t, err.Error(), `taicel: rule "r" reason: the expression can cost up to`)
}

func TestMaxCost(t *testing.T) {
	const rule = "L.all(x, x < 10)" // costs 2 + 5 per element
	for _, tc := range []struct {
		n       int
		maxCost int64
		wantErr bool
	}{
		{n: 190, maxCost: 1000},
		{n: 210, maxCost: 1000, wantErr: true},
		{n: 19_000, maxCost: 0},
		{n: 21_000, maxCost: 0, wantErr: true},
		{n: 21_000, maxCost: 200_000},
	} {
		t.Run(fmt.Sprintf("%d/%d", tc.n, tc.maxCost), func(t *testing.T) {
			set := compileRules(t, listEnv(t, tc.n, tc.maxCost), taicel.Rule{Name: "all", Verdict: tai.Deny, Expr: rule})
			d, err := set.Evaluate(t.Context(), signal(Payment{}))
			if !tc.wantErr {
				require.NoError(t, err)
				assert.Equal(t, tai.Deny, d.Verdict)
				return
			}
			assert.ErrorIs(t, err, taicel.ErrCostLimit)
			assert.ErrorContains(t, err, fmt.Sprintf(`taicel: rule "all": cost limit exceeded: the evaluation costs more than %d (Options.MaxCost)`, orDefault(tc.maxCost, taicel.DefaultMaxCost)))
		})
	}

	// The limit is per expression: a reason's {{expr}} has its own, and
	// its error says it is the reason's.
	set := compileRules(t, listEnv(t, 400, 1000),
		taicel.Rule{Name: "r", Weight: 1, Expr: "size(L) > 0", Reason: "{{L.filter(x, x > 0).size()}} positive"})
	_, err := set.Evaluate(t.Context(), signal(Payment{}))
	var re *taicel.RuleError
	require.ErrorAs(t, err, &re)
	assert.True(t, re.Reason)
	assert.ErrorIs(t, err, taicel.ErrCostLimit)
	assert.ErrorContains(t, err, `taicel: rule "r" reason: cost limit exceeded: the evaluation costs more than 1000`)

	// A literal rule whose bound is under the default is refused under a
	// lower limit.
	_, err = listEnv(t, 0, 1000).Compile(&taicel.Spec{Version: "1", Rules: []taicel.Rule{
		{Name: "nested", Verdict: tai.Deny, Expr: nestedAll(digits, 3)}}})
	assert.ErrorContains(t, err, "over the limit of 1000 (Options.MaxCost)")
}

// orDefault returns v, or def when v is zero.
func orDefault(v, def int64) int64 {
	if v == 0 {
		return def
	}
	return v
}

func TestMaxCostInvalid(t *testing.T) {
	_, err := taicel.NewEnv(taicel.Options[Payment]{MaxCost: -1})
	assert.EqualError(t, err, "taicel: Options.MaxCost -1 is negative; want 0 (DefaultMaxCost) or a limit > 0")
}

func TestContextStopsAnEvaluation(t *testing.T) {
	// With the limit out of the way, seven levels run for seconds: the
	// context stops them, whether the cost is tracked (L, a variable, has
	// no size until the evaluation) or bounded when the rule compiles
	// (a list literal).
	for _, list := range []string{"L", digits} {
		for _, inReason := range []bool{false, true} {
			name := fmt.Sprintf("%.1s/reason=%v", list, inReason)
			t.Run(name, func(t *testing.T) {
				rule := taicel.Rule{Name: "nested", Verdict: tai.Deny, Expr: nestedAll(list, 7)}
				if inReason {
					rule.Expr, rule.Reason = "true", "{{"+nestedAll(list, 7)+"}}"
				}
				set := compileRules(t, listEnv(t, 10, math.MaxInt64), rule)
				ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
				defer cancel()
				start := time.Now()
				_, err := set.Evaluate(ctx, signal(Payment{}))
				assert.Less(t, time.Since(start), time.Second)
				assert.ErrorIs(t, err, context.DeadlineExceeded)
				assert.NotErrorIs(t, err, taicel.ErrCostLimit)
				var re *taicel.RuleError
				require.ErrorAs(t, err, &re)
				assert.Equal(t, "nested", re.Rule)
				assert.Equal(t, inReason, re.Reason)
				assert.ErrorContains(t, err, "evaluation stopped: context deadline exceeded")
			})
		}
	}

	t.Run("cause", func(t *testing.T) {
		set := compileRules(t, listEnv(t, 10, math.MaxInt64),
			taicel.Rule{Name: "nested", Verdict: tai.Deny, Expr: nestedAll("L", 7)})
		ctx, cancel := context.WithCancelCause(t.Context())
		stop := errors.New("shutting down")
		timer := time.AfterFunc(20*time.Millisecond, func() { cancel(stop) })
		defer timer.Stop()
		_, err := set.Evaluate(ctx, signal(Payment{}))
		assert.ErrorIs(t, err, context.Canceled)
		assert.ErrorIs(t, err, stop)
		assert.EqualError(t, err, `taicel: rule "nested": evaluation stopped: context canceled: shutting down`)
	})
}

func TestContextStopsTheShadowCandidate(t *testing.T) {
	env := listEnv(t, 10, math.MaxInt64)
	live := compileRules(t, env, taicel.Rule{Name: "cheap", Weight: 1, Expr: "size(L) > 100"})
	cand := compileRules(t, env, taicel.Rule{Name: "nested", Verdict: tai.Deny, Expr: nestedAll("L", 7)})
	var candErr error
	sh, err := taicel.NewShadow[Payment](live, cand, taicel.ShadowOptions[Payment]{
		OnError: func(_ tai.Signal[Payment], err error) { candErr = err },
	})
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	d, err := sh.Evaluate(ctx, signal(Payment{}))
	assert.Less(t, time.Since(start), time.Second)
	require.NoError(t, err) // the live set's decision
	assert.Equal(t, tai.Allow, d.Verdict)
	assert.ErrorIs(t, candErr, context.DeadlineExceeded)
	assert.Equal(t, uint64(1), sh.Stats().Errors)
}

func TestContextStopsTheBacktestWorkers(t *testing.T) {
	trail := writeTrail(t, stream(20))
	opts := fraudOptions()
	opts.MaxCost = math.MaxInt64
	env, err := taicel.NewEnv(opts)
	require.NoError(t, err)
	cand, err := env.Compile(&taicel.Spec{Version: "2", Name: "fraud", Rules: []taicel.Rule{
		{Name: "nested", Verdict: tai.Deny, Expr: nestedAll(digits, 7)}}})
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	_, err = taicel.Backtest(ctx, cand, bytes.NewReader(trail), taicel.BacktestOptions{Workers: 2})
	require.ErrorIs(t, err, context.DeadlineExceeded)
	// The workers stopped with the rule they were evaluating, seconds
	// before it would have ended.
	goleak.VerifyNone(t)
}

// growing applies step to a list of one string n times, each step in a
// map over the list: each step costs a few units, and the string it
// makes is several times the one it is given.
func growing(start, step string, n int) string {
	return "[" + start + "]" + strings.Repeat(".map(x, "+step+")", n) + "[0].size() > 0"
}

func TestCostLimitCountsTheStringsFormatAndQuoteMake(t *testing.T) {
	// string.format and strings.quote make a string longer than what
	// they are given, at a cost CEL counted as 1 whatever the length: six
	// steps of ten made a string of 2,000,000 characters, nine would
	// have made 2 GB, untracked and unbounded.
	const tenfold = `"%s%s%s%s%s%s%s%s%s%s".format([x, x, x, x, x, x, x, x, x, x])`
	env := listEnv(t, 0, 0)
	for _, tc := range []struct{ name, expr string }{
		{"format of a literal", growing(`"ab"`, tenfold, 6)},
		{"format of a field", growing("payload.Country", tenfold, 6)},
		{"quote", growing(`"\""`, "strings.quote(x)", 14)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			set, err := env.Compile(&taicel.Spec{Version: "1", Rules: []taicel.Rule{
				{Name: "grow", Verdict: tai.Deny, Expr: tc.expr}}})
			require.NoError(t, err)
			_, err = set.Evaluate(t.Context(), signal(Payment{Country: "DE"}))
			require.ErrorIs(t, err, taicel.ErrCostLimit)

			// In a reason too.
			set, err = env.Compile(&taicel.Spec{Version: "1", Rules: []taicel.Rule{
				{Name: "grow", Verdict: tai.Deny, Expr: "true", Reason: "{{" + tc.expr + "}}"}}})
			require.NoError(t, err)
			_, err = set.Evaluate(t.Context(), signal(Payment{Country: "DE"}))
			require.ErrorIs(t, err, taicel.ErrCostLimit)
			var re *taicel.RuleError
			require.ErrorAs(t, err, &re)
			assert.True(t, re.Reason)
		})
	}

	// A format or a quote of a few characters costs what it writes.
	set := compileRules(t, env, taicel.Rule{Name: "r", Verdict: tai.Deny, Expr: "true",
		Reason: `{{"%.2f".format([payload.Amount])}} {{strings.quote(payload.Country)}}`})
	d, err := set.Evaluate(t.Context(), signal(Payment{Country: "DE", Amount: 12.5}))
	require.NoError(t, err)
	assert.Equal(t, `12.50 "DE"`, d.Reason)
}

func TestCostLimitStopsAReplaceOrAJoinBeforeItWrites(t *testing.T) {
	// string.replace and list.join write a string whose length is the
	// product of their inputs' (each match replaced by a string as long
	// as the input, a separator as long as the input between each of its
	// characters), and CEL counts what they write only once it is
	// written: a field of 10,000 characters made a string of 100 MB
	// before the evaluation stopped, and one of 100,000 one of 10 GB.
	long := strings.Repeat("D", 10_000)
	env := listEnv(t, 0, 0)
	for _, expr := range []string{
		`payload.Country.replace("D", payload.Country).size() > 0`,
		`payload.Country.replace("", payload.Country).size() > 0`,
		`payload.Country.replace("D", payload.Country, 5000).size() > 0`,
		`payload.Country.split("").join(payload.Country).size() > 0`,
		`[payload.Country, payload.Country].map(x, x.split("")).map(l, l.join()).map(x, x.split("").join(x))[0].size() > 0`,
	} {
		t.Run(expr, func(t *testing.T) {
			evaluateOverLimit(t, env, expr, long)
		})
	}

	// Within the limit, they write what the strings extension does.
	set := compileRules(t, env, taicel.Rule{Name: "r", Verdict: tai.Deny, Expr: `true`, Reason: strings.Join([]string{
		`{{payload.Country.replace("-", "+")}}`,
		`{{payload.Country.replace("", ".")}}`,
		`{{payload.Country.replace("-", "", 1)}}`,
		`{{payload.Country.replace("-", "=", 0)}}`,
		`{{payload.Country.replace("-", "=", -1)}}`,
		`{{payload.Country.split("-").join()}}`,
		`{{payload.Country.split("-").join(", ")}}`,
		`{{[].join(payload.Country)}}`,
	}, " ")})
	d, err := set.Evaluate(t.Context(), signal(Payment{Country: "a-b-é"}))
	require.NoError(t, err)
	assert.Equal(t, "a+b+é .a.-.b.-.é. ab-é a-b-é a=b=é abé a, b, é ", d.Reason)
}

func TestCostLimitStopsAFormatBeforeItWrites(t *testing.T) {
	// string.format writes each of its arguments, and a list as each of
	// its items: a list that holds one string many times is written as
	// many times as it holds it. CEL counts what format writes only once
	// it is written, so a field of 300,000 characters in a list of 300
	// made a string of 90 MB before the evaluation stopped.
	long := strings.Repeat("D", 300_000)
	times := func(x string, n int) string { return strings.TrimSuffix(strings.Repeat(x+", ", n), ", ") }
	env := listEnv(t, 0, 0)
	for _, expr := range []string{
		`"%s".format([[` + times("payload.Country", 300) + `]]).size() > 0`,
		`[[` + times("payload.Country", 10) + `]].map(l, "%s".format([[` + times("l", 10) + `]]))[0].size() > 0`,
		`[[` + times("payload.Country", 10) + `]].map(l, "` + strings.Repeat("%s", 10) + `".format([` + times("l", 10) + `]))[0].size() > 0`,
		`[[` + times("payload.Country", 10) + `]].map(l, "%s".format([{"a": [` + times("l", 10) + `]}]))[0].size() > 0`,
		`[[` + times("payload.Country", 10) + `]].map(l, "%s".format([{payload.Country: l, "k": [` + times("l", 10) + `]}]))[0].size() > 0`,
		`"%x".format([payload.Country]).size() > 0`,
		// A list of two of a list of two of ...: 2^23 copies of "x"
		// within 2^23 - 1 lists, for a cost of 23 maps of one element.
		`"%s".format(["x"]` + strings.Repeat(".map(x, [x, x])", 23) + `).size() > 0`,
	} {
		t.Run(expr[:min(len(expr), 60)], func(t *testing.T) {
			err := evaluateOverLimit(t, env, expr, long)
			assert.ErrorContains(t, err, "would write a string costing more than")
		})
	}

	// A number is written as more than a character: 1e308 as 309 digits
	// under %s and %d, and %f and %e write as many digits as their
	// precision asks, up to 100. 2^16 copies of 1e308 made 148 MB.
	for _, c := range []struct{ expr, country string }{
		{`"%s".format([1e308]` + strings.Repeat(".map(x, [x, x])", 16) + `).size() > 0`, ""},
		{`"` + strings.Repeat("%d", 1400) + `".format([` + times("1e308", 1400) + `]).size() > 0`, ""},
		{`payload.Country.format([` + times("1.0", 4000) + `]).size() > 0`, strings.Repeat("%.100f", 4000)},
		{`payload.Country.format([` + times("-1.5", 4000) + `]).size() > 0`, strings.Repeat("%.100e", 4000)},
	} {
		t.Run(c.expr[:min(len(c.expr), 60)], func(t *testing.T) {
			err := evaluateOverLimit(t, env, c.expr, c.country)
			assert.ErrorContains(t, err, "would write a string costing more than")
		})
	}

	// A format is refused only when what it would write is sure to cost
	// more than the limit: a character takes at most four bytes, and 100
	// of four bytes cost 100. Within the limit, the evaluation goes on
	// and CEL counts what it wrote.
	small := listEnv(t, 0, 100)
	set := compileRules(t, small, taicel.Rule{Name: "r", Verdict: tai.Deny, Expr: `"%s".format([payload.Country]).size() > 0`})
	_, err := set.Evaluate(t.Context(), signal(Payment{Country: strings.Repeat("😀", 100)}))
	require.ErrorIs(t, err, taicel.ErrCostLimit)
	assert.ErrorContains(t, err, "the evaluation costs more than 100")
	_, err = set.Evaluate(t.Context(), signal(Payment{Country: strings.Repeat("😀", 101)}))
	require.ErrorIs(t, err, taicel.ErrCostLimit)
	assert.ErrorContains(t, err, "would write a string costing more than 100")

	// Within the limit, it writes what the strings extension does, and
	// fails as it does.
	set = compileRules(t, env, taicel.Rule{Name: "r", Verdict: tai.Deny, Expr: `true`, Reason: strings.Join([]string{
		`{{"%s|%d|%x|%X|%%|%.2f|%b|%o|%e".format([payload.Country, 42, payload.Country, 255, 1.5, 5, 8, 1000.0])}}`,
		`{{"%s".format([[payload.Country, [1, 2u], {"b": 2.5, "a": [true, null]}, b"xy"]])}}`,
		`{{"no clause".format([])}}`,
	}, " ")})
	d, err := set.Evaluate(t.Context(), signal(Payment{Country: "DE"}))
	require.NoError(t, err)
	assert.Equal(t, `DE|42|4445|FF|%|1.50|101|10|1.000000e+03 [DE, [1, 2], {a: [true, null], b: 2.5}, xy] no clause`, d.Reason)
	for _, format := range []string{"%s %s", "%d", "%", "%q", "%.f"} {
		set := compileRules(t, env, taicel.Rule{Name: "bad", Verdict: tai.Deny, Expr: `payload.Currency.format([payload.Country]).size() > 0`})
		_, err := set.Evaluate(t.Context(), signal(Payment{Country: "DE", Currency: format}))
		require.Error(t, err, format)
		assert.NotErrorIs(t, err, taicel.ErrCostLimit, format)
	}
}

// evaluateOverLimit evaluates a rule of expr on a payment whose Country
// is country, and checks that the cost limit stopped it before it
// allocated 16 MB; it returns the evaluation's error.
func evaluateOverLimit(t *testing.T, env *taicel.Env[Payment], expr, country string) error {
	t.Helper()
	set := compileRules(t, env, taicel.Rule{Name: "grow", Verdict: tai.Deny, Expr: expr})
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, err := set.Evaluate(t.Context(), signal(Payment{Country: country}))
	runtime.ReadMemStats(&after)
	require.ErrorIs(t, err, taicel.ErrCostLimit)
	assert.Less(t, after.TotalAlloc-before.TotalAlloc, uint64(16<<20), "bytes allocated")
	return err
}

// CEL picks the overload of an operator whose operands are dyn (a field
// of a dynamic payload, dyn(x)) only at evaluation, and counted such a
// call as one unit whatever it did: payload.S + payload.S as one, however
// long S, and x in payload.L as one, however long L. A rule that
// doubled a string in each of a chain of maps wrote megabytes within
// the limit, and would have written gigabytes a few maps further; one
// that searched a list for each of its elements ran in its square. Such
// a call counts as the overload it runs: the length of the strings it
// joins or compares, the elements of the list it searches.
func TestCostLimitCountsAnOverloadChosenAtEvaluation(t *testing.T) {
	doubled := func(s string) string {
		return "[" + s + "]" + strings.Repeat(".map(a, a + a)", 24) + "[0].size() > 0"
	}
	t.Run("typed", func(t *testing.T) {
		env := listEnv(t, 0, 0)
		evaluateOverLimit(t, env, doubled("dyn(payload.Country)"), "DE")
		evaluateOverLimit(t, env, "[dyn(bytes(payload.Country))]"+strings.Repeat(".map(a, a + a)", 24)+"[0].size() > 0", "DE")
	})
	dynamic, err := taicel.NewEnv(taicel.Options[map[string]any]{})
	require.NoError(t, err)
	list := make([]any, 2000)
	for i := range list {
		list[i] = int64(i)
	}
	payload := map[string]any{"S": "x", "Long": strings.Repeat("x", 100_000), "Bytes": bytes.Repeat([]byte("x"), 100_000), "L": list}
	for _, tc := range []struct{ name, expr string }{
		{"a string doubled", doubled("payload.S")},
		{"a list searched for each of its elements", "payload.L.all(x, x in payload.L)"},
		{"long strings compared", "payload.L.all(x, payload.Long <= payload.Long)"},
		{"long bytes converted", "payload.L.all(x, size(string(payload.Bytes)) > 0)"},
		{"a long string converted", "payload.L.all(x, size(bytes(payload.Long)) > 0)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			set, err := dynamic.Compile(&taicel.Spec{Version: "1", Rules: []taicel.Rule{{Name: "grow", Verdict: tai.Deny, Expr: tc.expr}}})
			require.NoError(t, err)
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			_, err = set.Evaluate(t.Context(), tai.Signal[map[string]any]{Payload: payload})
			runtime.ReadMemStats(&after)
			require.ErrorIs(t, err, taicel.ErrCostLimit)
			assert.Less(t, after.TotalAlloc-before.TotalAlloc, uint64(16<<20), "bytes allocated")
		})
	}
}

// A list concatenation makes a list that refers to both lists without
// copying them, and CEL counted it as one unit: a rule that doubled a
// list in each of a chain of maps made a list of a million elements
// within the limit, of 2⁴⁰ a few maps further, and a call that goes
// through such a list (x in l, l == m, l.join()), counted once it has
// gone through, ran for hours. A concatenation counts as the smaller of
// its lists, so that no list has more elements than the cost of making
// it; a comprehension's result, which grows by one element a step,
// costs what it did.
func TestCostLimitCountsTheListsAConcatenationMakes(t *testing.T) {
	doubled := func(list string) string {
		return "[" + list + "]" + strings.Repeat(".map(l, l + l)", 20) + "[0]"
	}
	env := listEnv(t, 1, 0)
	evaluateOverLimit(t, env, doubled("L")+" == "+doubled("L"), "")
	evaluateOverLimit(t, env, "1 in "+doubled("L"), "")
	evaluateOverLimit(t, env, doubled("L.map(x, payload.Country)")+".join() != ''", "DE")

	dynamic, err := taicel.NewEnv(taicel.Options[map[string]any]{})
	require.NoError(t, err)
	set, err := dynamic.Compile(&taicel.Spec{Version: "1", Rules: []taicel.Rule{{Name: "grow", Verdict: tai.Deny, Expr: doubled("payload.L") + " == " + doubled("payload.L")}}})
	require.NoError(t, err)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, err = set.Evaluate(t.Context(), tai.Signal[map[string]any]{Payload: map[string]any{"L": []any{int64(1)}}})
	runtime.ReadMemStats(&after)
	require.ErrorIs(t, err, taicel.ErrCostLimit)
	assert.Less(t, after.TotalAlloc-before.TotalAlloc, uint64(16<<20), "bytes allocated")

	// A comprehension's result, which grows by an element a step, costs
	// what it did: some 13 units an element of L.map(x, x).
	copied := compileRules(t, listEnv(t, 7_500, 0), taicel.Rule{Name: "copy", Verdict: tai.Deny, Expr: "size(L.map(x, x)) == 7500"})
	d, err := copied.Evaluate(t.Context(), signal(Payment{}))
	require.NoError(t, err)
	assert.Equal(t, tai.Deny, d.Verdict)
}
