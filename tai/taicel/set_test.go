package taicel_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math"
	"strings"
	"testing"
	"time"

	"cel.dev/cel-go/cel"
	"cel.dev/cel-go/common/types"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/tai"
	"github.com/taipattern/taikit/tai/taicel"
)

// Payment is the payload of the tests, a payment as in examples/payment.
type Payment struct {
	CustomerID string
	MerchantID string
	Country    string
	Currency   string
	Amount     float64
}

// state is what a caller's store knows of a customer.
type state struct {
	attempts   int64
	spentToday float64
	movedKm    float64
	speedKmh   float64
}

type stateKey struct{}

// fraudOptions declares the customer state; the tests pass it in the
// context so that each case has its own.
func fraudOptions() taicel.Options[Payment] {
	return taicel.Options[Payment]{
		Vars: map[string]*cel.Type{
			"attempts":    cel.IntType,
			"spent_today": cel.DoubleType,
			"moved_km":    cel.DoubleType,
			"speed_kmh":   cel.DoubleType,
		},
		Lookup: func(ctx context.Context, _ tai.Signal[Payment]) (map[string]any, error) {
			st, _ := ctx.Value(stateKey{}).(state)
			return map[string]any{
				"attempts":    st.attempts,
				"spent_today": st.spentToday,
				"moved_km":    st.movedKm,
				"speed_kmh":   st.speedKmh,
			}, nil
		},
	}
}

func fraudSet(t testing.TB) *taicel.Set[Payment] {
	t.Helper()
	env, err := taicel.NewEnv(fraudOptions())
	require.NoError(t, err)
	spec, err := taicel.ParseFile("testdata/fraud.yaml")
	require.NoError(t, err)
	set, err := env.Compile(spec)
	require.NoError(t, err)
	return set
}

func signal(p Payment) tai.Signal[Payment] {
	return tai.Signal[Payment]{ID: "sig-1", Kind: "payment", Key: p.CustomerID, Time: time.Unix(1700000000, 0), Payload: p}
}

func TestFraudRules(t *testing.T) {
	set := fraudSet(t)
	assert.Equal(t, "fraud", set.Name())
	assert.Equal(t, "1", set.Version())
	review, deny := set.Thresholds()
	assert.Equal(t, 0.3, review)
	assert.Equal(t, 0.5, deny)

	ok := Payment{CustomerID: "cust_1", MerchantID: "merc_2", Country: "DE", Currency: "EUR", Amount: 120}
	with := func(f func(*Payment)) Payment { p := ok; f(&p); return p }
	tests := []struct {
		name    string
		p       Payment
		st      state
		verdict tai.Verdict
		score   float64
		reason  string
		rules   []string
	}{
		{name: "clean", p: ok, verdict: tai.Allow},
		{name: "blacklisted customer", p: with(func(p *Payment) { p.CustomerID = "cust_9" }), verdict: tai.Deny,
			reason: "cust_9 paying merc_2 from DE: blacklisted"},
		{name: "blacklisted country wins over scores", p: with(func(p *Payment) { p.Country = "IR"; p.Amount = 99999 }),
			st: state{attempts: 50}, verdict: tai.Deny, reason: "cust_1 paying merc_2 from IR: blacklisted"},
		{name: "velocity", p: ok, st: state{attempts: 6}, verdict: tai.Deny, score: 0.6,
			reason: "6 attempts in a minute (limit 5)", rules: []string{"velocity"}},
		{name: "velocity at the limit", p: ok, st: state{attempts: 5}, verdict: tai.Allow},
		{name: "large amount flagged", p: with(func(p *Payment) { p.Amount = 10000 }), verdict: tai.Review, score: 0.4,
			reason: "amount 10000.00 over the limit", rules: []string{"amount", "daily_amount"}},
		{name: "near the limit", p: with(func(p *Payment) { p.Amount = 4500 }), verdict: tai.Allow, score: 0.15,
			reason: "amount 4500.00 over the limit", rules: []string{"amount"}},
		{name: "daily total", p: ok, st: state{spentToday: 4900.5}, verdict: tai.Allow, score: 0.1,
			reason: "5020.5 EUR today", rules: []string{"daily_amount"}},
		{name: "impossible travel", p: ok, st: state{movedKm: 800, speedKmh: 1600}, verdict: tai.Deny, score: 0.6,
			reason: "moved 800 km at 1600 km/h", rules: []string{"impossible_travel"}},
		{name: "fast travel and large amount", p: with(func(p *Payment) { p.Amount = 6000 }), st: state{movedKm: 800, speedKmh: 600},
			verdict: tai.Deny, score: 0.7, reason: "amount 6000.00 over the limit", rules: []string{"amount", "daily_amount", "impossible_travel"}},
		{name: "short move ignored", p: ok, st: state{movedKm: 10, speedKmh: 5000}, verdict: tai.Allow},
		{name: "score capped at 1", p: with(func(p *Payment) { p.Amount = 30000 }), st: state{attempts: 9, movedKm: 900, speedKmh: 2000},
			verdict: tai.Deny, score: 1, reason: "9 attempts in a minute (limit 5)", rules: []string{"velocity", "amount", "daily_amount", "impossible_travel"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.WithValue(t.Context(), stateKey{}, tt.st)
			d, err := set.Evaluate(ctx, signal(tt.p))
			require.NoError(t, err)
			assert.Equal(t, tt.verdict, d.Verdict)
			assert.Equal(t, "fraud", d.Policy)
			assert.InDelta(t, tt.score, d.Score, 1e-9)
			assert.Equal(t, tt.reason, d.Reason)
			var rules []string
			for _, c := range d.Contributions {
				rules = append(rules, c.Rule)
				assert.InDelta(t, c.Weight*c.Risk, c.Score, 1e-12)
			}
			assert.Equal(t, tt.rules, rules)
		})
	}
}

type Order struct {
	ID    string
	Total float64
	Items int
	Tags  []string
}

func compileOne(t *testing.T, r taicel.Rule) (*taicel.Set[Order], error) {
	t.Helper()
	env, err := taicel.NewEnv(taicel.Options[Order]{})
	require.NoError(t, err)
	return env.Compile(&taicel.Spec{Version: "t", Sets: map[string][]string{"vip": {"o1"}}, Rules: []taicel.Rule{r}})
}

func TestSignalContextAndSets(t *testing.T) {
	set, err := compileOne(t, taicel.Rule{Name: "ctx", Weight: 1,
		Expr:   `signal.kind == "order" && signal.key == "k" && signal.id == "i" && signal.time == timestamp("2023-11-14T22:13:20Z") && !(payload.ID in sets.vip) && "x" in payload.Tags`,
		Reason: "{{signal.kind}}/{{payload.Items}}/{{payload.Tags}}"})
	require.NoError(t, err)
	s := tai.Signal[Order]{ID: "i", Kind: "order", Key: "k", Time: time.Unix(1700000000, 0), Payload: Order{ID: "o2", Items: 3, Tags: []string{"x"}}}
	d, err := set.Evaluate(t.Context(), s)
	require.NoError(t, err)
	assert.Equal(t, tai.Deny, d.Verdict)
	assert.Equal(t, "order/3/[x]", d.Reason)
	assert.Equal(t, "cel", d.Policy)

	s.Payload.ID = "o1" // in the set
	d, err = set.Evaluate(t.Context(), s)
	require.NoError(t, err)
	assert.Equal(t, tai.Allow, d.Verdict)
	assert.Empty(t, d.Contributions)
}

func TestRiskClampedAndReasonDefault(t *testing.T) {
	set, err := compileOne(t, taicel.Rule{Name: "big", Weight: 0.5, Expr: "payload.Total / 100.0"})
	require.NoError(t, err)
	for _, tc := range []struct {
		total, score float64
		verdict      tai.Verdict
	}{{-50, 0, tai.Allow}, {50, 0.25, tai.Allow}, {100, 0.5, tai.Deny}, {1e6, 0.5, tai.Deny}} {
		d, err := set.Evaluate(t.Context(), tai.Signal[Order]{Payload: Order{Total: tc.total}})
		require.NoError(t, err)
		assert.InDelta(t, tc.score, d.Score, 1e-12, "total %v", tc.total)
		assert.Equal(t, tc.verdict, d.Verdict, "total %v", tc.total)
		if tc.score > 0 {
			assert.Equal(t, "big", d.Reason)
		}
	}
}

func TestVerdictRulesInOrder(t *testing.T) {
	env, err := taicel.NewEnv(taicel.Options[Order]{})
	require.NoError(t, err)
	set, err := env.Compile(&taicel.Spec{Version: "1", Rules: []taicel.Rule{
		{Name: "staff", Verdict: tai.Allow, Expr: `"staff" in payload.Tags`, Reason: "staff order"},
		{Name: "huge", Verdict: tai.Deny, Expr: `payload.Total > 1000.0`, Reason: "total {{payload.Total}}"},
		{Name: "many", Verdict: tai.Review, Expr: `payload.Items > 10`},
	}})
	require.NoError(t, err)
	for _, tc := range []struct {
		o       Order
		verdict tai.Verdict
		reason  string
	}{
		{Order{Total: 5000, Tags: []string{"staff"}}, tai.Allow, "staff order"},
		{Order{Total: 5000.5, Items: 20}, tai.Deny, "total 5000.5"},
		{Order{Items: 20}, tai.Review, "many"},
		{Order{Items: 1}, tai.Allow, ""},
	} {
		d, err := set.Evaluate(t.Context(), tai.Signal[Order]{Payload: tc.o})
		require.NoError(t, err)
		assert.Equal(t, tc.verdict, d.Verdict, "%+v", tc.o)
		assert.Equal(t, tc.reason, d.Reason, "%+v", tc.o)
		assert.Zero(t, d.Score)
	}
}

func TestCompileErrors(t *testing.T) {
	tests := []struct {
		name string
		rule taicel.Rule
		want []string
		line int
		col  int
	}{
		{name: "misspelt field", rule: taicel.Rule{Name: "amount", Weight: 1, Expr: "payload.Totl > 5.0"},
			want: []string{`rule "amount" at 1:8`, "undefined field 'Totl'"}, line: 1, col: 8},
		{name: "on a later line", rule: taicel.Rule{Name: "two", Weight: 1, Expr: "payload.Total > 5.0 &&\n  payload.Itemz > 1"},
			want: []string{`rule "two" at 2:10`, "undefined field 'Itemz'"}, line: 2, col: 10},
		{name: "type mismatch", rule: taicel.Rule{Name: "cmp", Weight: 1, Expr: `payload.Total > "5"`},
			want: []string{`rule "cmp"`, "no matching overload"}, line: 1},
		{name: "syntax", rule: taicel.Rule{Name: "syn", Weight: 1, Expr: `payload.Total >`},
			want: []string{`rule "syn"`, "Syntax error"}, line: 1},
		{name: "undeclared variable", rule: taicel.Rule{Name: "var", Weight: 1, Expr: `attempts > 5`},
			want: []string{"undeclared reference to 'attempts'"}, line: 1},
		{name: "unknown set", rule: taicel.Rule{Name: "set", Weight: 1, Expr: `payload.ID in sets.nope`},
			want: []string{"sets.nope"}, line: 1},
		{name: "scored returns int", rule: taicel.Rule{Name: "int", Weight: 1, Expr: `payload.Items`},
			want: []string{`rule "int": expression returns int; want bool or double`}},
		{name: "verdict returns double", rule: taicel.Rule{Name: "dbl", Verdict: tai.Deny, Expr: `payload.Total`},
			want: []string{`rule "dbl": expression returns double; want bool`}},
		{name: "reason field misspelt", rule: taicel.Rule{Name: "why", Weight: 1, Expr: `true`, Reason: "total {{payload.Tota}}"},
			want: []string{`rule "why" reason at 1:8`, "undefined field 'Tota'"}, line: 1, col: 8},
		{name: "reason unterminated", rule: taicel.Rule{Name: "why", Weight: 1, Expr: `true`, Reason: "total {{payload.Total"},
			want: []string{`rule "why" reason`, "{{ without }}"}},
		// An empty {{}} is no expression: it has no position in itself.
		{name: "reason empty", rule: taicel.Rule{Name: "why", Weight: 1, Expr: `true`, Reason: "total {{}} today"},
			want: []string{`rule "why" reason: empty {{}} in reason "total {{}} today"`}},
		{name: "reason blank", rule: taicel.Rule{Name: "why", Weight: 1, Expr: `true`, Reason: "{{payload.Total}} {{ \n }}"},
			want: []string{`rule "why" reason: empty {{}} in reason`}},
		// CEL's limits on an expression as a whole have no position.
		{name: "nested past the limit", rule: taicel.Rule{Name: "deep", Weight: 1, Expr: strings.Repeat("(", 300) + "true" + strings.Repeat(")", 300)},
			want: []string{`rule "deep": ERROR`, "recursion limit exceeded"}},
		{name: "longer than the limit", rule: taicel.Rule{Name: "long", Weight: 1, Expr: "true" + strings.Repeat(" && true", 20000)},
			want: []string{`rule "long": ERROR`, "size exceeds limit"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := compileOne(t, tt.rule)
			require.Error(t, err)
			var ce *taicel.CompileError
			require.ErrorAs(t, err, &ce)
			assert.Equal(t, tt.rule.Name, ce.Rule)
			for _, w := range tt.want {
				assert.Contains(t, err.Error(), w)
			}
			assert.Equal(t, tt.line, ce.Line)
			if tt.col > 0 || tt.line == 0 {
				assert.Equal(t, tt.col, ce.Column)
			}
		})
	}
}

func TestSpecErrors(t *testing.T) {
	env, err := taicel.NewEnv(taicel.Options[Order]{})
	require.NoError(t, err)
	ok := taicel.Rule{Name: "r", Weight: 1, Expr: "true"}
	tests := []struct {
		name string
		spec *taicel.Spec
		want string
	}{
		{"nil", nil, "nil Spec"},
		{"no rules", &taicel.Spec{Version: "1"}, "at least one rule"},
		{"deny above 1", &taicel.Spec{Thresholds: taicel.Thresholds{Deny: 1.5}, Rules: []taicel.Rule{ok}}, "thresholds.deny 1.5"},
		{"review above deny", &taicel.Spec{Thresholds: taicel.Thresholds{Review: 0.6}, Rules: []taicel.Rule{ok}}, "thresholds.review 0.6"},
		{"negative review", &taicel.Spec{Thresholds: taicel.Thresholds{Review: -0.1}, Rules: []taicel.Rule{ok}}, "thresholds.review -0.1"},
		{"unnamed rule", &taicel.Spec{Rules: []taicel.Rule{{Weight: 1, Expr: "true"}}}, "rule 0 has no name"},
		{"duplicate", &taicel.Spec{Rules: []taicel.Rule{ok, ok}}, `"r" is used twice`},
		{"blank name", &taicel.Spec{Rules: []taicel.Rule{ok, {Name: "  ", Weight: 1, Expr: "true"}}}, `rule 1 has no name: "  " is only white space`},
		{"tab name", &taicel.Spec{Rules: []taicel.Rule{{Name: "\t", Weight: 1, Expr: "true"}}}, `rule 0 has no name: "\t" is only white space`},
		{"name with a leading space", &taicel.Spec{Rules: []taicel.Rule{ok, {Name: " r", Weight: 1, Expr: "true"}}}, `rule 1 has name " r", which begins or ends with white space`},
		{"name with a trailing newline", &taicel.Spec{Rules: []taicel.Rule{{Name: "r\n", Weight: 1, Expr: "true"}}}, `rule 0 has name "r\n", which begins or ends with white space`},
		{"no weight or verdict", &taicel.Spec{Rules: []taicel.Rule{{Name: "x", Expr: "true"}}}, `"x" has weight 0 and no verdict`},
		{"negative weight", &taicel.Spec{Rules: []taicel.Rule{{Name: "x", Weight: -1, Expr: "true"}}}, `"x" has weight -1`},
		{"both", &taicel.Spec{Rules: []taicel.Rule{{Name: "x", Weight: 1, Verdict: tai.Deny, Expr: "true"}}}, "both a verdict and a weight"},
		{"bad verdict", &taicel.Spec{Rules: []taicel.Rule{{Name: "x", Verdict: 9, Expr: "true"}}}, "invalid verdict 9"},
		{"no expr", &taicel.Spec{Rules: []taicel.Rule{{Name: "x", Weight: 1, Expr: "  "}}}, `"x" has no expr`},
		{"bad set name", &taicel.Spec{Sets: map[string][]string{"a-b": nil}, Rules: []taicel.Rule{ok}}, `set name "a-b"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := env.Compile(tt.spec)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.want)
		})
	}
}

func TestNewEnvErrors(t *testing.T) {
	_, err := taicel.NewEnv(taicel.Options[int]{})
	assert.ErrorContains(t, err, "payload type int is not a named struct type")
	_, err = taicel.NewEnv(taicel.Options[struct{ A int }]{})
	assert.ErrorContains(t, err, "not a named struct type")
	_, err = taicel.NewEnv(taicel.Options[Order]{Vars: map[string]*cel.Type{"n": cel.IntType}})
	assert.ErrorContains(t, err, "Lookup is nil")
	lookup := func(context.Context, tai.Signal[Order]) (map[string]any, error) { return nil, nil }
	for name, want := range map[string]string{"1a": "not an identifier", "payload": "a name taicel declares", "sets": "a name taicel declares"} {
		_, err = taicel.NewEnv(taicel.Options[Order]{Vars: map[string]*cel.Type{name: cel.IntType}, Lookup: lookup})
		assert.ErrorContains(t, err, want, name)
	}
	_, err = taicel.NewEnv(taicel.Options[Order]{Vars: map[string]*cel.Type{"n": nil}, Lookup: lookup})
	assert.ErrorContains(t, err, "nil type")
	// A pointer to a struct is a payload too.
	env, err := taicel.NewEnv(taicel.Options[*Order]{})
	require.NoError(t, err)
	set, err := env.Compile(&taicel.Spec{Version: "p", Rules: []taicel.Rule{{Name: "r", Weight: 1, Expr: "payload.Items > 1"}}})
	require.NoError(t, err)
	d, err := set.Evaluate(t.Context(), tai.Signal[*Order]{Payload: &Order{Items: 2}})
	require.NoError(t, err)
	assert.Equal(t, tai.Deny, d.Verdict)
}

func TestEvaluationErrors(t *testing.T) {
	errStore := errors.New("store down")
	var fail bool
	env, err := taicel.NewEnv(taicel.Options[Order]{
		Vars: map[string]*cel.Type{"n": cel.IntType, "d": cel.DoubleType},
		Lookup: func(context.Context, tai.Signal[Order]) (map[string]any, error) {
			if fail {
				return nil, errStore
			}
			return map[string]any{"d": 0.0}, nil // n is missing
		},
	})
	require.NoError(t, err)
	compile := func(r taicel.Rule) *taicel.Set[Order] {
		set, err := env.Compile(&taicel.Spec{Version: "e", Rules: []taicel.Rule{r}})
		require.NoError(t, err)
		return set
	}
	tests := []struct {
		name string
		rule taicel.Rule
		want string
	}{
		{"missing variable", taicel.Rule{Name: "count", Weight: 1, Expr: "n > 1"}, `rule "count"`},
		{"NaN risk", taicel.Rule{Name: "nan", Weight: 1, Expr: "d / d"}, `rule "nan": risk is NaN`},
		{"division by zero", taicel.Rule{Name: "div", Verdict: tai.Deny, Expr: "payload.Items / payload.Items > 1"}, `rule "div": division by zero`},
		{"reason fails", taicel.Rule{Name: "why", Weight: 1, Expr: "true", Reason: "{{payload.Items / 0}}"}, `rule "why" reason: division by zero`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := compile(tt.rule).Evaluate(t.Context(), tai.Signal[Order]{})
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.want)
			assert.Zero(t, d.Verdict)
		})
	}
	fail = true
	_, err = compile(taicel.Rule{Name: "r", Weight: 1, Expr: "true"}).Evaluate(t.Context(), tai.Signal[Order]{})
	assert.ErrorIs(t, err, errStore)
}

func TestInPipeline(t *testing.T) {
	set := fraudSet(t)
	p, err := tai.New[Payment, string](set, tai.ActionFunc[Payment, string](func(context.Context, tai.Signal[Payment]) (string, error) {
		return "charged", nil
	}))
	require.NoError(t, err)
	ctx := context.WithValue(t.Context(), stateKey{}, state{attempts: 7})
	_, err = p.Process(ctx, tai.NewSignal("payment", "cust_1", Payment{CustomerID: "cust_1"}))
	var denied *tai.DeniedError
	require.ErrorAs(t, err, &denied)
	assert.Equal(t, "velocity", denied.Decision.Contributions[0].Rule)
	assert.True(t, strings.HasPrefix(denied.Decision.Reason, "7 attempts"))
}

// FuzzCompileRule compiles arbitrary expressions and reason templates: a
// rule compiles or gives an error, never a panic, and a rule that compiles
// evaluates or gives an error.
func FuzzCompileRule(f *testing.F) {
	f.Add("payload.Total > 5.0", "total {{payload.Total}}", false)
	f.Add("payload.Total / 0.0", "{{", true)
	f.Add(`"x" in payload.Tags`, "{{payload.Tags}}}}{{", false)
	f.Add("payload.Items", "{{}}", true)
	f.Add("[1,2].all(x, x > 0)", `{{"%d".format([payload.Items])}}`, true)
	env, err := taicel.NewEnv(taicel.Options[Order]{})
	require.NoError(f, err)
	f.Fuzz(func(t *testing.T, expr, reason string, verdict bool) {
		r := taicel.Rule{Name: "r", Expr: expr, Reason: reason, Weight: 1}
		if verdict {
			r.Weight, r.Verdict = 0, tai.Review
		}
		set, err := env.Compile(&taicel.Spec{Version: "f", Rules: []taicel.Rule{r}})
		if err != nil {
			require.NotEmpty(t, err.Error())
			return
		}
		d, err := set.Evaluate(t.Context(), tai.Signal[Order]{Payload: Order{Total: 7, Items: 2, Tags: []string{"x"}}})
		if err == nil {
			require.True(t, d.Verdict.Valid())
		}
	})
}

// TestScoreTolerance checks that a set turns scores into verdicts as
// tai.Scored does: a sum of weights that reaches a threshold but for the
// rounding of floating point reaches it.
func TestScoreTolerance(t *testing.T) {
	env, err := taicel.NewEnv(taicel.Options[Order]{})
	require.NoError(t, err)
	spec := &taicel.Spec{Version: "1", Thresholds: taicel.Thresholds{Review: 0.6, Deny: 1}, Rules: []taicel.Rule{
		{Name: "a", Weight: 0.7, Expr: "true"},
		{Name: "b", Weight: 0.2, Expr: "payload.Items > 0"},
		{Name: "c", Weight: 0.1, Expr: "payload.Items > 0"},
	}}
	set, err := env.Compile(spec)
	require.NoError(t, err)
	rules := []tai.Rule[Order]{
		{Name: "a", Weight: 0.7, Check: func(context.Context, tai.Signal[Order]) (float64, string, error) { return 1, "a", nil }},
		{Name: "b", Weight: 0.2, Check: func(_ context.Context, s tai.Signal[Order]) (float64, string, error) {
			return float64(min(s.Payload.Items, 1)), "b", nil
		}},
		{Name: "c", Weight: 0.1, Check: func(_ context.Context, s tai.Signal[Order]) (float64, string, error) {
			return float64(min(s.Payload.Items, 1)), "c", nil
		}},
	}
	scored, err := tai.NewScored(tai.ScoredOptions{Review: 0.6, Deny: 1}, rules...)
	require.NoError(t, err)
	for _, items := range []int{0, 1} {
		s := tai.Signal[Order]{Payload: Order{Items: items}}
		want, err := scored.Evaluate(t.Context(), s)
		require.NoError(t, err)
		got, err := set.Evaluate(t.Context(), s)
		require.NoError(t, err)
		assert.Equal(t, want.Verdict, got.Verdict, "items %d", items)
		assert.Equal(t, want.Score, got.Score, "items %d", items)
	}
	d, err := set.Evaluate(t.Context(), tai.Signal[Order]{Payload: Order{Items: 1}})
	require.NoError(t, err)
	assert.Equal(t, tai.Deny, d.Verdict)
	assert.Equal(t, 1.0, d.Score)

	// A score of 0 reaches no threshold, however small.
	spec.Thresholds = taicel.Thresholds{Review: 1e-12, Deny: 1e-10}
	spec.Rules = spec.Rules[1:]
	set, err = env.Compile(spec)
	require.NoError(t, err)
	d, err = set.Evaluate(t.Context(), tai.Signal[Order]{})
	require.NoError(t, err)
	assert.Equal(t, tai.Allow, d.Verdict)
	assert.Zero(t, d.Score)
}

// A value Lookup returns for a declared variable that cannot be of its
// type fails the signal: CEL trusts the declaration, and an inequality
// with a string held for an int variable whatever its value.
func TestLookupValueOfAnotherType(t *testing.T) {
	type label string
	var vars map[string]any
	env, err := taicel.NewEnv(taicel.Options[Order]{
		Vars: map[string]*cel.Type{"n": cel.IntType, "s": cel.StringType, "b": cel.BoolType, "at": cel.TimestampType, "tags": cel.ListType(cel.StringType)},
		Lookup: func(context.Context, tai.Signal[Order]) (map[string]any, error) {
			return vars, nil
		},
	})
	require.NoError(t, err)
	set, err := env.Compile(&taicel.Spec{Version: "1", Rules: []taicel.Rule{
		{Name: "not seven", Verdict: tai.Deny, Expr: "n != 7"},
		{Name: "r", Weight: 1, Expr: `s == "x" || b`},
	}})
	require.NoError(t, err)
	good := func() map[string]any {
		return map[string]any{"n": 7, "s": "y", "b": false, "at": time.Unix(0, 0), "tags": []string{"a"}}
	}
	for _, v := range []map[string]any{
		good(),
		{"n": int32(7), "s": label("y"), "b": false},
		{"n": uint8(7), "s": types.String("y"), "b": types.Bool(false)},
		{"n": 7.0, "s": "y", "b": false, "tags": "not checked"},
	} {
		vars = v
		d, err := set.Evaluate(t.Context(), tai.Signal[Order]{})
		require.NoError(t, err, "%v", v)
		assert.Equal(t, tai.Allow, d.Verdict, "%v", v)
	}
	for _, tc := range []struct {
		name string
		v    any
		want string
	}{
		{"n", "7", `taicel: lookup: variable "n" is a string; declared int`},
		{"n", nil, `taicel: lookup: variable "n" is nil; declared int`},
		{"s", 1, `variable "s" is a int; declared string`},
		{"b", "false", `variable "b" is a string; declared bool`},
		{"at", "2026-01-01T00:00:00Z", `variable "at" is a string; declared google.protobuf.Timestamp`},
	} {
		vars = good()
		vars[tc.name] = tc.v
		d, err := set.Evaluate(t.Context(), tai.Signal[Order]{})
		require.Error(t, err, "%s=%#v", tc.name, tc.v)
		assert.ErrorContains(t, err, tc.want)
		assert.NotContains(t, err.Error(), "411111", "the value")
		assert.Zero(t, d.Verdict)
	}
}

// A number Lookup returns for a numeric variable of another type (a
// time.Duration too) is judged, and recorded, as a value of the declared
// type; one that type cannot hold fails the signal, naming the variable.
func TestLookupNumberOfAnotherType(t *testing.T) {
	type count int
	var vars map[string]any
	env, err := taicel.NewEnv(taicel.Options[Order]{
		Vars: map[string]*cel.Type{"n": cel.IntType, "u": cel.UintType, "x": cel.DoubleType},
		Lookup: func(context.Context, tai.Signal[Order]) (map[string]any, error) {
			return vars, nil
		},
		RecordInputs: true,
	})
	require.NoError(t, err)
	set, err := env.Compile(&taicel.Spec{Version: "1", Rules: []taicel.Rule{
		{Name: "sums", Verdict: tai.Deny, Expr: "x * 2.0 == 10.0 && n + 1 == 8 && u + 1u == 4u"},
	}})
	require.NoError(t, err)
	for _, v := range []map[string]any{
		{"n": 7, "u": uint(3), "x": 5.0},
		{"n": 7.0, "u": 3, "x": 5},
		{"n": uint64(7), "u": 3.0, "x": int32(5)},
		{"n": types.Double(7), "u": types.Int(3), "x": types.Uint(5)},
		{"n": count(7), "u": int8(3), "x": uint16(5)},
		// CEL reads a time.Duration as a duration, which an int's
		// n + 1 failed on: it is an int64 like the others.
		{"n": time.Duration(7), "u": time.Duration(3), "x": time.Duration(5)},
	} {
		vars = v
		given := maps.Clone(v)
		d, err := set.Evaluate(t.Context(), tai.Signal[Order]{})
		require.NoError(t, err, "%#v", v)
		assert.Equal(t, tai.Deny, d.Verdict, "%#v", v)
		assert.Equal(t, given, v, "the map Lookup returned is left alone")
		assert.Contains(t, string(d.Inputs), `"vars":{"n":7,"u":3,"x":5.0}`, "%#v", v)
		in, err := env.DecodeInputs(d.Inputs)
		require.NoError(t, err)
		d2, err := set.Replay(tai.Signal[Order]{}, in.Vars)
		require.NoError(t, err)
		assert.Equal(t, d, d2)
	}
	for _, tc := range []struct {
		name string
		v    any
		want string
	}{
		{"n", 7.5, `taicel: lookup: variable "n" is a float64 its declared int cannot hold: not an integer`},
		{"n", math.Inf(1), `variable "n" is a float64 its declared int cannot hold`},
		{"n", uint64(math.MaxUint64), `variable "n" is a uint64 its declared int cannot hold: out of the range`},
		{"u", -1, `variable "u" is a int its declared uint cannot hold: negative`},
		{"u", 0.5, `variable "u" is a float64 its declared uint cannot hold: not an integer`},
		// The value itself is never written: it may be an account number.
		{"n", 4111111111111111.5, `variable "n" is a float64 its declared int cannot hold: not an integer`},
		// A double holds every integer up to 2⁵³ and only some beyond:
		// one it would round is refused as a fraction is for an int.
		{"x", int64(1<<53 + 1), `variable "x" is a int64 its declared double cannot hold: an integer a double would round`},
		{"x", uint64(math.MaxUint64), `variable "x" is a uint64 its declared double cannot hold: an integer a double would round`},
		{"x", types.Int(math.MaxInt64), `variable "x" is a types.Int its declared double cannot hold: an integer a double would round`},
	} {
		vars = map[string]any{"n": 7, "u": uint(3), "x": 5.0}
		vars[tc.name] = tc.v
		d, err := set.Evaluate(t.Context(), tai.Signal[Order]{})
		require.Error(t, err, "%s=%#v", tc.name, tc.v)
		assert.ErrorContains(t, err, tc.want)
		assert.Zero(t, d.Verdict)
	}
}

// A float32 Lookup returns for a double is judged as the double it
// holds (0.7 is 0.699999988079071), and must be recorded as that double:
// recorded as the float32's shortest form, 0.7, it read back as another
// double, and the set replaying the decision it had made flipped it.
func TestLookupFloat32ReplaysAsJudged(t *testing.T) {
	env, err := taicel.NewEnv(taicel.Options[Order]{
		Vars: map[string]*cel.Type{"risk": cel.DoubleType},
		Lookup: func(context.Context, tai.Signal[Order]) (map[string]any, error) {
			return map[string]any{"risk": float32(0.7)}, nil
		},
		RecordInputs: true,
	})
	require.NoError(t, err)
	set, err := env.Compile(&taicel.Spec{Version: "1", Thresholds: taicel.Thresholds{Deny: 0.7},
		Rules: []taicel.Rule{{Name: "risk", Weight: 1, Expr: "risk"}}})
	require.NoError(t, err)
	d, err := set.Evaluate(t.Context(), tai.Signal[Order]{})
	require.NoError(t, err)
	assert.Equal(t, tai.Allow, d.Verdict, "float32(0.7) is below 0.7")
	_, again := replay(t, env, set, d)
	assert.Equal(t, d, again, "inputs: %s", d.Inputs)
}

// A word CEL reserves is no identifier: a variable so named could not be
// read by any expression, nor a set named in, true, false or null (the
// words that cannot follow "sets."), yet both were accepted and every
// rule reading them failed with a syntax error at the rule.
func TestNamesCELReserves(t *testing.T) {
	lookup := func(context.Context, tai.Signal[Order]) (map[string]any, error) { return nil, nil }
	for _, name := range []string{"in", "true", "false", "null", "as", "let", "if", "while", "namespace"} {
		_, err := taicel.NewEnv(taicel.Options[Order]{Vars: map[string]*cel.Type{name: cel.IntType}, Lookup: lookup})
		assert.ErrorContains(t, err, fmt.Sprintf("taicel: Options.Vars: %q is a word CEL reserves", name))
	}
	env, err := taicel.NewEnv(taicel.Options[Order]{})
	require.NoError(t, err)
	rules := []taicel.Rule{{Name: "r", Weight: 1, Expr: "true"}}
	for _, name := range []string{"in", "true", "false", "null"} {
		_, err := env.Compile(&taicel.Spec{Version: "1", Sets: map[string][]string{name: {"x"}}, Rules: rules})
		assert.ErrorContains(t, err, fmt.Sprintf("taicel: set name %q is a word CEL reserves", name))
	}
	// A reserved word that CEL reads after a dot still names a set.
	set, err := env.Compile(&taicel.Spec{Version: "1", Sets: map[string][]string{"if": {"x"}},
		Rules: []taicel.Rule{{Name: "r", Weight: 1, Expr: "payload.ID in sets.if"}}})
	require.NoError(t, err)
	d, err := set.Evaluate(t.Context(), tai.Signal[Order]{Payload: Order{ID: "x"}})
	require.NoError(t, err)
	assert.Equal(t, tai.Deny, d.Verdict)
}

// Replay checks and converts the variables it is given as Evaluate does
// those Lookup returns: a string held for an int variable made n != 7
// true whatever its value, and an int held for a double failed the
// arithmetic of the rule that read it.
func TestReplayVariablesOfAnotherType(t *testing.T) {
	env, err := taicel.NewEnv(taicel.Options[Order]{
		Vars: map[string]*cel.Type{"n": cel.IntType, "x": cel.DoubleType},
		Lookup: func(context.Context, tai.Signal[Order]) (map[string]any, error) {
			return nil, errors.New("not called")
		},
	})
	require.NoError(t, err)
	set, err := env.Compile(&taicel.Spec{Version: "1", Rules: []taicel.Rule{
		{Name: "not seven", Verdict: tai.Deny, Expr: "n != 7"},
		{Name: "double", Weight: 1, Expr: "x * 2.0 > 9.0"},
	}})
	require.NoError(t, err)

	d, err := set.Replay(tai.Signal[Order]{}, map[string]any{"n": 7, "x": 5})
	require.NoError(t, err)
	assert.Equal(t, tai.Deny, d.Verdict)
	assert.Equal(t, "double", d.Reason)

	d, err = set.Replay(tai.Signal[Order]{}, map[string]any{"n": "7", "x": 1.0})
	assert.EqualError(t, err, `taicel: replay: variable "n" is a string; declared int`)
	assert.Zero(t, d.Verdict)
	_, err = set.Replay(tai.Signal[Order]{}, map[string]any{"n": 7.5, "x": 1.0})
	assert.ErrorContains(t, err, `taicel: replay: variable "n" is a float64 its declared int cannot hold`)
}

// A nil Lookup returns for a list or a map variable is CEL's null, which
// no list or map is: a rule comparing it (l == [], l != []) decided on
// it, and its decision, recorded with null, replayed with an empty list
// and flipped. It fails the signal, as a nil for a scalar does.
func TestLookupNilForAListOrAMap(t *testing.T) {
	var vars map[string]any
	env, err := taicel.NewEnv(taicel.Options[Order]{
		Vars: map[string]*cel.Type{"l": cel.ListType(cel.StringType), "m": cel.MapType(cel.StringType, cel.IntType)},
		Lookup: func(context.Context, tai.Signal[Order]) (map[string]any, error) {
			return vars, nil
		},
		RecordInputs: true,
	})
	require.NoError(t, err)
	set, err := env.Compile(&taicel.Spec{Version: "1", Rules: []taicel.Rule{
		{Name: "r", Verdict: tai.Deny, Expr: "l != [] || m != {}"},
	}})
	require.NoError(t, err)
	for _, tc := range []struct {
		vars map[string]any
		want string
	}{
		{map[string]any{"l": nil, "m": map[string]int{}}, `taicel: lookup: variable "l" is nil; declared list(string)`},
		{map[string]any{"l": []string(nil), "m": nil}, `taicel: lookup: variable "m" is nil; declared map(string, int)`},
	} {
		vars = tc.vars
		d, err := set.Evaluate(t.Context(), tai.Signal[Order]{})
		if err == nil {
			in, err := env.DecodeInputs(d.Inputs)
			require.NoError(t, err)
			again, err := set.Replay(tai.Signal[Order]{}, in.Vars)
			require.NoError(t, err)
			assert.Equal(t, d.Verdict, again.Verdict, "inputs: %s", d.Inputs)
		}
		require.Error(t, err, "%#v", tc.vars)
		assert.ErrorContains(t, err, tc.want)
		assert.Zero(t, d.Verdict)
	}
	// Nil slices and maps are empty.
	vars = map[string]any{"l": []string(nil), "m": map[string]int(nil)}
	d, err := set.Evaluate(t.Context(), tai.Signal[Order]{})
	require.NoError(t, err)
	assert.Equal(t, tai.Allow, d.Verdict)
}

// A float32 in a list, a map or a dyn variable, or in the payload, is
// judged as the double it holds, as one for a double variable is, and
// must be recorded as that double: recorded in its float32 form (0.7),
// the list's and the map's replay judged another number, and so did the
// dyn variable's and the payload's in a dynamic Env (taikit backtest).
func TestFloat32ElementsReplayAsJudged(t *testing.T) {
	type Reading struct{ Ratio float32 }
	env, err := taicel.NewEnv(taicel.Options[Reading]{
		Vars: map[string]*cel.Type{"l": cel.ListType(cel.DoubleType), "m": cel.MapType(cel.StringType, cel.DoubleType), "x": cel.DynType},
		Lookup: func(context.Context, tai.Signal[Reading]) (map[string]any, error) {
			return map[string]any{"l": []float32{0.7}, "m": map[string]float32{"a": 0.7}, "x": float32(0.7)}, nil
		},
		RecordInputs: true,
	})
	require.NoError(t, err)
	spec := &taicel.Spec{Version: "1", Rules: []taicel.Rule{
		{Name: "l", Weight: 0.1, Expr: "l[0] < 0.7"},
		{Name: "m", Weight: 0.1, Expr: "m.a < 0.7"},
		{Name: "x", Weight: 0.1, Expr: "x < 0.7"},
		{Name: "p", Weight: 0.1, Expr: "payload.Ratio < 0.7"},
	}}
	set, err := env.Compile(spec)
	require.NoError(t, err)
	d, err := set.Evaluate(t.Context(), tai.Signal[Reading]{Payload: Reading{Ratio: 0.7}})
	require.NoError(t, err)
	require.Len(t, d.Contributions, 4, "float32(0.7) is below 0.7")
	_, again := replay(t, env, set, d)
	assert.Equal(t, d, again, "inputs: %s", d.Inputs)

	dyn, err := taicel.NewEnv(taicel.Options[map[string]any]{})
	require.NoError(t, err)
	dset, err := dyn.Compile(spec)
	require.NoError(t, err)
	din, err := dyn.DecodeInputs(d.Inputs)
	require.NoError(t, err)
	dagain, err := dset.Replay(tai.Signal[map[string]any]{Time: din.Time, Payload: din.Payload}, din.Vars)
	require.NoError(t, err)
	assert.Equal(t, d.Contributions, dagain.Contributions, "inputs: %s", d.Inputs)
}
