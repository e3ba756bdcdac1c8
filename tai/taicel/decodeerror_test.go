package taicel_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"cel.dev/cel-go/cel"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/tai"
	"github.com/taipattern/taikit/tai/taicel"
)

type Vault struct {
	At    time.Time
	Count int64
	Units uint
	Ratio float64
	ByPIN map[int]string
}

// secret is a card number where a trail holds a value it cannot read.
const secret = "4111111111111111"

// The errors of inputs that do not decode quoted the value that did not
// ("time: parsing time \"4111111111111111\" as ..."), and a backtest's
// report carried them to the terminal, where the rule errors of the same
// replay leave out the values CEL quotes. They name where the value is
// and what it should be, never the value.
func TestDecodeErrorsQuoteNoValue(t *testing.T) {
	vars := map[string]*cel.Type{"n": cel.IntType, "since": cel.TimestampType}
	lookup := func(context.Context, tai.Signal[Vault]) (map[string]any, error) { return nil, nil }
	env, err := taicel.NewEnv(taicel.Options[Vault]{Vars: vars, Lookup: lookup})
	require.NoError(t, err)
	denv, err := taicel.NewEnv(taicel.Options[map[string]any]{})
	require.NoError(t, err)
	for _, tc := range []struct {
		name, in, where string
		dynamic         bool
	}{
		{"time", `{"time":"` + secret + `","payload":{}}`, "time", false},
		{"timestamp field", `{"payload":{"At":"` + secret + `"}}`, "At", false},
		{"int too big", `{"payload":{"Count":` + secret + `0000}}`, "Count", false},
		{"int with a fraction", `{"payload":{"Count":` + secret + `.5}}`, "Count", false},
		{"uint negative", `{"payload":{"Units":-` + secret + `}}`, "Units", false},
		{"uint with a fraction", `{"payload":{"Units":` + secret + `.5}}`, "Units", false},
		{"double as a string", `{"payload":{"Ratio":"` + secret + `"}}`, "Ratio", false},
		{"double too big", `{"payload":{"Ratio":` + secret + `e999}}`, "Ratio", false},
		{"int key", `{"payload":{"ByPIN":{"` + secret + `x":"a"}}}`, "ByPIN", false},
		{"int variable", `{"payload":{},"vars":{"n":"` + secret + `"}}`, "n", false},
		{"timestamp variable", `{"payload":{},"vars":{"since":"` + secret + `"}}`, "since", false},
		{"marked timestamp", `{"payload":{"At":"` + secret + `"},"types":{"At":"timestamp"}}`, "At", true},
		{"marked bytes", `{"payload":{"Raw":"` + secret + `!"},"types":{"Raw":"bytes"}}`, "Raw", true},
		{"marked duration", `{"payload":{"D":"` + secret + `"},"types":{"D":"duration"}}`, "D", true},
		{"marked uint", `{"payload":{"U":"` + secret + `"},"types":{"U":"uint"}}`, "U", true},
		{"marked double", `{"payload":{"F":"` + secret + `"},"types":{"F":"double"}}`, "F", true},
		{"marked list", `{"payload":{"L":"` + secret + `"},"types":{"L":{"0":"uint"}}}`, "L", true},
		{"marked map", `{"payload":{"M":"` + secret + `"},"types":{"M":["int"]}}`, "M", true},
		{"marked key", `{"payload":{"M":{"` + secret + `x":1}},"types":{"M":["int"]}}`, "M", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.dynamic {
				_, err = denv.DecodeInputs([]byte(tc.in))
			} else {
				_, err = env.DecodeInputs([]byte(tc.in))
			}
			require.Error(t, err)
			assert.NotContains(t, err.Error(), secret[:6])
			assert.Contains(t, err.Error(), tc.where)
		})
	}
}

// A backtest's report names the line whose inputs do not decode, not
// the value.
func TestBacktestReportQuotesNoValueOfTheTrail(t *testing.T) {
	env, err := taicel.NewEnv(taicel.Options[Vault]{})
	require.NoError(t, err)
	set, err := env.Compile(&taicel.Spec{Version: "1", Name: "vault", Rules: []taicel.Rule{
		{Name: "r", Weight: 1, Expr: "payload.Count > 1"},
	}})
	require.NoError(t, err)
	line := `{"time":"2026-03-01T12:00:00Z","id":"s1","kind":"k","decision":{"verdict":"allow","policy":"vault","score":0,` +
		`"inputs":{"payload":{"At":"` + secret + `"}}}}` + "\n"
	rep, err := taicel.Backtest(t.Context(), set, strings.NewReader(line), taicel.BacktestOptions{})
	require.NoError(t, err)
	require.Len(t, rep.ErrorExamples, 1)
	assert.NotContains(t, rep.ErrorExamples[0].Error, secret[:6])
	assert.Contains(t, rep.ErrorExamples[0].Error, "payload: At: ")
}
