package taicel_test

import (
	"os"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/tai"
	"github.com/taipattern/taikit/tai/taicel"
)

// FuzzRuleFile takes any bytes as a rule file through the whole way a
// Loader takes one: Parse, Compile by a typed and a dynamic Env, and
// Evaluate. Each step gives a result or an error that says something,
// never a panic.
func FuzzRuleFile(f *testing.F) {
	seed, err := os.ReadFile("testdata/fraud.yaml")
	require.NoError(f, err)
	f.Add(seed)
	f.Add([]byte("version: 1\nrules:\n  - name: a\n    weight: 1\n    expr: payload.Total > 1.0\n    reason: '{{payload.Tags}} {{payload.Total}}'\n"))
	f.Add([]byte("version: 1\nsets:\n  vip: [o1, o2]\nrules:\n  - name: v\n    verdict: allow\n    expr: payload.ID in sets.vip\n"))
	f.Add([]byte(`{"version": "1", "thresholds": {"review": 0.2, "deny": 0.4}, "rules": [{"name": "a", "expr": "payload.Items > 1 ? 0.5 : 0.0", "weight": 1}]}`))
	f.Add([]byte("version: 1\nrules:\n  - name: a\n    verdict: review\n    expr: payload.Tags.exists(t, t.matches('^[a-z]+$'))\n"))
	f.Add([]byte("version: 1\nrules:\n  - name: a\n    verdict: review\n    expr: payload.Tags.exists(t, {'k': [t.matches('[')]}.k[0]) || duration('1x') > duration('1s')\n"))
	typed, err := taicel.NewEnv(taicel.Options[Order]{})
	require.NoError(f, err)
	dynamic, err := taicel.NewEnv(taicel.Options[map[string]any]{})
	require.NoError(f, err)
	order := Order{ID: "o1", Total: 7, Items: 2, Tags: []string{"x"}}
	f.Fuzz(func(t *testing.T, data []byte) {
		spec, err := taicel.Parse(data)
		if err != nil {
			require.Nil(t, spec)
			require.NotEmpty(t, err.Error())
			return
		}
		if set, err := typed.Compile(spec); err != nil {
			require.NotEmpty(t, err.Error())
		} else if d, err := set.Evaluate(t.Context(), tai.Signal[Order]{ID: "1", Kind: "k", Payload: order}); err == nil {
			require.True(t, d.Verdict.Valid())
			require.True(t, d.Score >= 0 && d.Score <= 1, "score %v", d.Score)
		}
		if set, err := dynamic.Compile(spec); err != nil {
			require.NotEmpty(t, err.Error())
		} else if d, err := set.Evaluate(t.Context(), tai.Signal[map[string]any]{ID: "1", Kind: "k",
			Payload: map[string]any{"ID": "o1", "Total": 7.0, "Items": int64(2), "Tags": []any{"x"}}}); err == nil {
			require.True(t, d.Verdict.Valid())
		}
	})
}
