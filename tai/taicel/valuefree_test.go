package taicel_test

import (
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/tai"
	"github.com/taipattern/taikit/tai/taicel"
)

// A time zone offset out of range, and a format's precision over the
// maximum, were written in CEL's error as they were read: a payload field
// read as a time zone or a format put its value in the error.
func TestRuleErrorQuotesNoTimeZoneOrPrecision(t *testing.T) {
	for _, tc := range []struct {
		pan, expr, want string
	}{
		{"4111111:11", `timestamp("2026-01-01T00:00:00Z").getHours(payload.PAN) > 0`, `timezone offset hours out of range [-23, 23]: …`},
		{"+11:4111111", `timestamp("2026-01-01T00:00:00Z").getMinutes(payload.PAN) > 0`, `timezone offset minutes out of range [0, 59]: …`},
		{"%.4111111f", `payload.PAN.format([1.0]) == ""`, `precision … exceeds maximum allowed precision 100`},
	} {
		t.Run(tc.expr, func(t *testing.T) {
			env, err := taicel.NewEnv(taicel.Options[Charge]{})
			require.NoError(t, err)
			set, err := env.Compile(&taicel.Spec{Version: "v", Rules: []taicel.Rule{{Name: "r", Verdict: tai.Deny, Expr: tc.expr}}})
			require.NoError(t, err)
			_, err = set.Evaluate(t.Context(), tai.Signal[Charge]{Payload: Charge{PAN: tc.pan}})
			var re *taicel.RuleError
			require.ErrorAs(t, err, &re)
			assert.NotContains(t, err.Error(), "4111111")
			assert.Contains(t, err.Error(), tc.want)
		})
	}
}

// A value that held a line break was quoted in full: the patterns that
// find the value at the end of CEL's message stopped at the line's end.
func TestRuleErrorQuotesNoValueOfSeveralLines(t *testing.T) {
	const pan = "4111 1111\n1111 1111"
	for _, tc := range []struct {
		expr, want string
	}{
		{`{"a": true}[payload.PAN]`, `no such key: …`},
		{`timestamp(0).getHours(payload.PAN) > 0`, `unknown time zone …`},
	} {
		t.Run(tc.expr, func(t *testing.T) {
			env, err := taicel.NewEnv(taicel.Options[Charge]{})
			require.NoError(t, err)
			set, err := env.Compile(&taicel.Spec{Version: "v", Rules: []taicel.Rule{{Name: "r", Verdict: tai.Deny, Expr: tc.expr}}})
			require.NoError(t, err)
			_, err = set.Evaluate(t.Context(), tai.Signal[Charge]{Payload: Charge{PAN: pan, Items: []string{pan}}})
			var re *taicel.RuleError
			require.ErrorAs(t, err, &re)
			assert.NotContains(t, err.Error(), "1111")
			assert.Contains(t, err.Error(), tc.want)
		})
	}
}

// leakExprs are rules that fail, for some values, in the functions of
// CEL and the strings extension that read a value: conversions, time
// zones, formats, lookups, indexes, regular expressions.
var leakExprs = []string{
	`int(payload.PAN) > 0`,
	`uint(payload.PAN) > 0u`,
	`double(payload.PAN) > 0.0`,
	`bool(payload.PAN)`,
	`duration(payload.PAN) > duration("1s")`,
	`timestamp(payload.PAN) > timestamp(0)`,
	`timestamp(0).getHours(payload.PAN) > 0`,
	`timestamp(0).getMinutes(payload.PAN) > 0`,
	`timestamp(0).getDayOfWeek(payload.PAN) > 0`,
	`timestamp(0).getFullYear(payload.Items[0]) > 0`,
	`timestamp(payload.Digits) > timestamp(0)`,
	`timestamp(0) + duration(payload.PAN) > timestamp(0)`,
	`payload.PAN.format([1.0, 2, "x"]) == ""`,
	`payload.PAN.format([payload.Digits]) == ""`,
	`"%s %d".format([payload.PAN, payload.Digits]) == ""`,
	`{"a": true}[payload.PAN]`,
	`{1: true}[payload.Digits]`,
	`{"a": true}[payload.Items[payload.Digits]]`,
	`[true][payload.Digits]`,
	`dyn([true])[dyn(payload.PAN)] == true`,
	`payload.Items[payload.Digits] == ""`,
	`payload.PAN.substring(payload.Digits) == ""`,
	`payload.PAN.substring(0, payload.Digits) == ""`,
	`payload.PAN.charAt(payload.Digits) == ""`,
	`payload.PAN.indexOf("1", payload.Digits) == 0`,
	`payload.PAN.lastIndexOf("1", payload.Digits) == 0`,
	`payload.PAN.matches(payload.PAN)`,
	`payload.PAN.matches("(" + payload.PAN)`,
	`payload.Items[0].matches(payload.PAN + "[")`,
	`[payload.PAN, payload.Digits].join(",") == ""`,
	`dyn([payload.Digits]).join(payload.PAN) == ""`,
	`int(payload.PAN) * payload.Digits > 0`,
	`string(bytes(payload.PAN) + bytes(payload.Items[0])) == ""`,
	`payload.PAN.split(payload.PAN, payload.Digits).size() > 0`,
	`payload.PAN.replace("1", payload.PAN, payload.Digits) == "" && 1 / (payload.Digits - payload.Digits) > 0`,
}

// digitRuns finds the runs of six digits or more: what a card number
// leaves in a message, whatever its separators.
var digitRuns = regexp.MustCompile(`[0-9]{6,}`)

// FuzzRuleErrorQuotesNoInputValue evaluates rules that fail on values of
// every shape and checks that no run of six digits or more of what they
// read (a card number's) reaches the error, unless the rule itself
// writes it.
func FuzzRuleErrorQuotesNoInputValue(f *testing.F) {
	for _, s := range []struct {
		pan    string
		digits int
		item   string
	}{
		{"4111 1111 1111 1111", 4111111111111111, "4111111111111111"},
		{"4111111111111111", -4111111111111111, "+4111111:00"},
		{"4111111:11", 1, "+11:4111111"},
		{"%.4111111f", 4111111, "%4111111$d"},
		{"4111111111111111s", 9, "4111111111111111h"},
		{"(4111111", 2, "x{4111111}"},
		{"4111111111111111T00:00:00Z", 0, "Europe/4111111"},
		{"+4111111111", 1 << 62, "-4111111111:4111111"},
	} {
		f.Add(s.pan, s.digits, s.item)
	}
	env, err := taicel.NewEnv(taicel.Options[Charge]{})
	require.NoError(f, err)
	sets := make([]*taicel.Set[Charge], len(leakExprs))
	for i, expr := range leakExprs {
		sets[i], err = env.Compile(&taicel.Spec{Version: "v", Rules: []taicel.Rule{
			{Name: "r", Verdict: tai.Deny, Expr: expr, Reason: "{{" + expr + "}}"},
		}})
		require.NoError(f, err, expr)
	}
	f.Fuzz(func(t *testing.T, pan string, digits int, item string) {
		p := Charge{PAN: pan, Digits: digits, Items: []string{item, pan}}
		var secrets []string
		for _, s := range []string{pan, item, taicelItoa(digits)} {
			secrets = append(secrets, digitRuns.FindAllString(s, -1)...)
		}
		for i, set := range sets {
			_, err := set.Evaluate(t.Context(), tai.Signal[Charge]{Payload: p})
			if err == nil {
				continue
			}
			msg := err.Error()
			for _, s := range secrets {
				if strings.Contains(msg, s) && !strings.Contains(leakExprs[i], s) {
					t.Fatalf("rule %s: error %q quotes %q of the payload", leakExprs[i], msg, s)
				}
			}
		}
	})
}

func taicelItoa(n int) string {
	neg := n < 0
	var b []byte
	u := uint64(n)
	if neg {
		u = -u
	}
	for {
		b = append([]byte{byte('0' + u%10)}, b...)
		u /= 10
		if u == 0 {
			break
		}
	}
	if neg {
		b = append([]byte{'-'}, b...)
	}
	return string(b)
}
