package taicel_test

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/tai"
	"github.com/taipattern/taikit/tai/taicel"
)

// Charge holds a card number, which no error may quote.
type Charge struct {
	PAN    string
	Digits int
	Items  []string
}

// A rule that failed on a value converted or looked up quoted the value
// in its error ("strconv.ParseInt: parsing \"4111 1111 1111 1111\":
// invalid syntax"), and the error reached logs and the audit trail: a
// card number where none may be. The error says what failed, not with
// what: the value is left out, but for what the rule itself writes.
func TestRuleErrorQuotesNoInputValue(t *testing.T) {
	const pan = "4111 1111 1111 1111"
	const digits = 4111111111111111
	payload := Charge{PAN: pan, Digits: digits, Items: []string{pan}}
	for _, tc := range []struct {
		expr, want string
	}{
		{`int(payload.PAN) > 0`, `type conversion error from 'string' to 'int'`},
		{`timestamp(payload.PAN) > timestamp("2026-01-01T00:00:00Z")`, `invalid RFC 3339 timestamp "…"`},
		{`timestamp("2026-01-01T00:00:00Z").getHours(payload.PAN) > 0`, `unknown time zone …`},
		{`{"a": true}[payload.PAN]`, `no such key: …`},
		{`{"a": true}[payload.Items[0]]`, `no such key: …`},
		{`[true][payload.Digits]`, `index out of bounds: …`},
		{`payload.PAN.matches("(" + payload.PAN)`, "error parsing regexp: missing closing ): `…`"},
		{`payload.PAN.substring(payload.Digits) == ""`, `index out of range: …`},
		{`payload.PAN.charAt(payload.Digits) == ""`, `index out of range: …`},
	} {
		t.Run(tc.expr, func(t *testing.T) {
			env, err := taicel.NewEnv(taicel.Options[Charge]{})
			require.NoError(t, err)
			set, err := env.Compile(&taicel.Spec{Version: "v", Rules: []taicel.Rule{{Name: "r", Verdict: tai.Deny, Expr: tc.expr}}})
			require.NoError(t, err)
			_, err = set.Evaluate(t.Context(), tai.Signal[Charge]{Payload: payload})
			var re *taicel.RuleError
			require.ErrorAs(t, err, &re)
			msg := err.Error()
			for _, part := range []string{"4111", "1111", "111111"} {
				assert.NotContains(t, msg, part)
			}
			assert.Contains(t, msg, tc.want)
			assert.True(t, strings.HasPrefix(msg, `taicel: rule "r": `), msg)
		})
	}
}

// What the rule writes itself is no input: the error names it.
func TestRuleErrorNamesWhatTheRuleWrites(t *testing.T) {
	env, err := taicel.NewEnv(taicel.Options[map[string]any]{})
	require.NoError(t, err)
	set, err := env.Compile(&taicel.Spec{Version: "v", Rules: []taicel.Rule{
		{Name: "r", Verdict: tai.Deny, Expr: `payload.CardCountry == "DE" || payload.At == "12x" && timestamp(payload.At) > signal.time`},
	}})
	require.NoError(t, err)
	_, err = set.Evaluate(t.Context(), tai.Signal[map[string]any]{Payload: map[string]any{"Card": "4111"}})
	assert.EqualError(t, err, `taicel: rule "r": no such key: CardCountry`)
	_, err = set.Evaluate(t.Context(), tai.Signal[map[string]any]{Payload: map[string]any{"CardCountry": "FR", "At": "12x"}})
	assert.EqualError(t, err, `taicel: rule "r": invalid RFC 3339 timestamp "12x"`)
}

// cardHolder is a type no Env declares: CEL cannot read a value of it.
type cardHolder struct {
	PAN string
}

// Metered holds, in an interface, values whose type CEL cannot read.
type Metered struct {
	Meta map[string]any
	Any  any
}

// A value CEL cannot convert (a struct of a type no Env declares, held in
// an interface of the payload) failed the rule with CEL's error, which
// writes the value with %v: the card number it held reached logs and the
// audit trail. The error names the value's Go type, not the value.
func TestRuleErrorOfAnUnreadableValueQuotesNoValue(t *testing.T) {
	const pan = "4111 1111 1111 1111"
	card := cardHolder{PAN: pan}
	tagged := struct {
		PAN string `json:"pan)"`
	}{pan}
	payload := Metered{Meta: map[string]any{"card": card, "f": func(int) string { return pan }, "tagged": tagged}, Any: &card}
	for _, tc := range []struct {
		expr, reason, want string
	}{
		{`has(payload.Meta.card)`, `{{payload.Meta.card}}`, `rule "r" reason: unsupported conversion to ref.Val: (taicel_test.cardHolder)…`},
		{`payload.Meta.card == payload.Meta.card`, ``, `rule "r": unsupported conversion to ref.Val: (taicel_test.cardHolder)…`},
		{`payload.Any != null`, ``, `rule "r": unsupported conversion to ref.Val: (*taicel_test.cardHolder)…`},
		{`payload.Meta.f != null`, ``, `rule "r": unsupported conversion to ref.Val: (func(int) string)…`},
		{`payload.Meta.tagged != null`, ``, `rule "r": unsupported conversion to ref.Val: (struct { PAN string "…" })…`},
	} {
		t.Run(tc.expr, func(t *testing.T) {
			env, err := taicel.NewEnv(taicel.Options[Metered]{})
			require.NoError(t, err)
			set, err := env.Compile(&taicel.Spec{Version: "v", Rules: []taicel.Rule{{Name: "r", Verdict: tai.Deny, Expr: tc.expr, Reason: tc.reason}}})
			require.NoError(t, err)
			_, err = set.Evaluate(t.Context(), tai.Signal[Metered]{Payload: payload})
			var re *taicel.RuleError
			require.ErrorAs(t, err, &re)
			msg := err.Error()
			assert.NotContains(t, msg, "4111")
			assert.NotContains(t, msg, "0x", "nor an address")
			assert.Contains(t, msg, tc.want)
		})
	}
}
