package taicel_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"pgregory.net/rapid"

	"github.com/taipattern/taikit/tai"
	"github.com/taipattern/taikit/tai/taicel"
)

func TestParse(t *testing.T) {
	spec, err := taicel.ParseFile("testdata/fraud.yaml")
	require.NoError(t, err)
	assert.Equal(t, "1", spec.Version)
	assert.Equal(t, "fraud", spec.Name)
	assert.Equal(t, taicel.Thresholds{Review: 0.3, Deny: 0.5}, spec.Thresholds)
	assert.Equal(t, []string{"KP", "IR"}, spec.Sets["countries"])
	require.Len(t, spec.Rules, 5)
	assert.Equal(t, tai.Deny, spec.Rules[0].Verdict)
	assert.Equal(t, 0.6, spec.Rules[1].Weight)
	assert.Equal(t, "attempts > 5", spec.Rules[1].Expr)
}

func TestParseJSON(t *testing.T) {
	spec, err := taicel.Parse([]byte(`{"version": "7", "thresholds": {"deny": 0.8},
		"rules": [{"name": "big", "expr": "payload.Total > 10.0", "verdict": "review", "reason": "big"}]}`))
	require.NoError(t, err)
	assert.Equal(t, "7", spec.Version)
	assert.Equal(t, 0.8, spec.Thresholds.Deny)
	assert.Equal(t, tai.Review, spec.Rules[0].Verdict)
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"empty", "", "rule file is empty"},
		{"no version", "rules: []\n", "has no version"},
		{"unknown field", "version: 1\nrules:\n  - name: a\n    expr: 'true'\n    wieght: 1\n", "line 5: field wieght not found"},
		{"unknown top-level field", "version: 1\nthreshold: {deny: 1}\n", "line 2: field threshold not found"},
		{"duplicate key", "version: 1\nversion: 2\n", `line 2: mapping key "version" already defined`},
		{"wrong type", "version: 1\nrules: {name: a}\n", "line 2: cannot unmarshal"},
		{"weight not a number", "version: 1\nrules:\n  - name: a\n    weight: high\n", "line 4: cannot unmarshal"},
		{"unknown verdict", "version: 1\nrules:\n  - name: a\n    verdict: block\n", `taicel: line 4: tai: unknown verdict "block"`},
		{"unknown verdict of a later rule", "version: 1\nrules:\n  - {name: a, verdict: deny}\n  - name: b\n    expr: 'true'\n    verdict: Deny\n", `taicel: line 6: tai: unknown verdict "Deny"`},
		{"unknown verdict after a null one", "version: 1\nrules:\n  - {name: a, verdict: ~}\n  - {name: b, verdict: block}\n", `taicel: line 4: tai: unknown verdict "block"`},
		{"two documents", "version: 1\n---\nversion: 2\n", "line 2: a rule file holds one document"},
		{"bad yaml", "version: [1\n", "did not find expected"},
		{"bad second document", "version: 1\n---\n[\n", "taicel: yaml"},
		{"a string", "3f9a2c7b5e1d08f4\n", "taicel: not a rule file: line 1 holds a string where a rule file holds a mapping"},
		{"a number", "\n314159265358\n", "taicel: not a rule file: line 2 holds a single value"},
		{"a list", "- version: 1\n", "taicel: not a rule file: line 1 holds a list"},
		{"an alias", "*Zm9vYmFy\n", "taicel: not a rule file: it begins with '*'"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec, err := taicel.Parse([]byte(tt.in))
			require.Error(t, err)
			assert.Nil(t, spec)
			assert.Contains(t, err.Error(), tt.want)
		})
	}
	_, err := taicel.ParseFile(filepath.Join(t.TempDir(), "missing.yaml"))
	assert.ErrorIs(t, err, os.ErrNotExist)
	path := filepath.Join(t.TempDir(), "bad.yaml")
	require.NoError(t, os.WriteFile(path, []byte("version: 1\nfoo: 2\n"), 0o600))
	_, err = taicel.ParseFile(path)
	assert.ErrorContains(t, err, path+": taicel: yaml: unmarshal errors:\n  line 2: field foo not found")
}

// TestCompileErrorFileLine checks that a rule parsed from a file names the
// line of its expression.
func TestCompileErrorFileLine(t *testing.T) {
	env, err := taicel.NewEnv(taicel.Options[Order]{})
	require.NoError(t, err)
	for _, tc := range []struct {
		name, in string
		line     int
	}{
		{"plain", "version: 1\nrules:\n  - name: ok\n    weight: 1\n    expr: payload.Total > 1.0\n  - name: bad\n    weight: 1\n    expr: payload.Totl > 1.0\n", 8},
		{"block", "version: 1\nrules:\n  - name: bad\n    weight: 1\n    expr: |\n      payload.Total > 1.0 &&\n      payload.Itms > 2\n", 6},
		{"flow", "version: 1\nrules: [{name: bad, weight: 1, expr: 'payload.X'}]\n", 2},
		{"result type", "version: 1\nrules:\n  - name: bad\n    weight: 1\n    expr: payload.Items\n", 5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			spec, err := taicel.Parse([]byte(tc.in))
			require.NoError(t, err)
			_, err = env.Compile(spec)
			var ce *taicel.CompileError
			require.ErrorAs(t, err, &ce)
			assert.Equal(t, "bad", ce.Rule)
			assert.Equal(t, tc.line, ce.FileLine)
			assert.Contains(t, err.Error(), "(file line")
			if tc.name == "result type" {
				// about the expression as a whole: no line:column in it
				assert.Zero(t, ce.Line)
				assert.Equal(t, `taicel: rule "bad" (file line 5): expression returns int; want bool or double`, err.Error())
			}
		})
	}
}

// CEL folds constants and compiles constant regular expressions when it
// plans a program, after the expression is checked, and refuses one it
// cannot fold with an error that named the rule and its line in the file
// but not where in the expression it was: in a long expression, which of
// its patterns or durations was wrong was left to the reader. The error
// names the line:column of the call that failed, as a checker's error
// does.
func TestCompileErrorOfAConstantNamesItsPosition(t *testing.T) {
	env, err := taicel.NewEnv(taicel.Options[Order]{})
	require.NoError(t, err)
	dynamic, err := taicel.NewEnv(taicel.Options[map[string]any]{})
	require.NoError(t, err)
	const head = "version: 1\nrules:\n  - name: ok\n    weight: 1\n    expr: 'true'\n  - name: bad\n    weight: 1\n"
	for _, tc := range []struct {
		name, rule   string
		line, column int
		fileLine     int
		reason       bool
		want         string
	}{
		{"regex", "    expr: payload.ID.matches('[')\n", 1, 19, 8, false,
			"error parsing regexp: missing closing ]: `[`\n | payload.ID.matches('[')\n | ..................^"},
		{"regex as a function", "    expr: \"payload.Total > 1.0 && matches(payload.ID, '(')\"\n", 1, 31, 8, false,
			"error parsing regexp: missing closing ): `(`"},
		{"second line of a block", "    expr: |\n      payload.Total > 1.0 &&\n        payload.ID.matches('a(')\n", 2, 21, 9, false,
			"error parsing regexp: missing closing ): `a(`"},
		{"duration", "    expr: duration('1s') < duration('1x')\n", 1, 26, 8, false,
			"type conversion error from 'string' to 'google.protobuf.Duration'"},
		{"timestamp", "    expr: signal.time > timestamp('2026-13-01T00:00:00Z')\n", 1, 24, 8, false,
			`invalid RFC 3339 timestamp "2026-13-01T00:00:00Z"`},
		{"int", "    expr: payload.Items > int('12x')\n", 1, 20, 8, false,
			"type conversion error from 'string' to 'int'"},
		{"in a comprehension", "    expr: payload.Tags.exists(t, t.matches('['))\n", 1, 33, 8, false,
			"error parsing regexp: missing closing ]: `[`"},
		{"reason", "    expr: 'true'\n    reason: 'for {{duration(\"1x\")}}'\n", 1, 9, 9, true,
			"type conversion error from 'string' to 'google.protobuf.Duration'"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			spec, err := taicel.Parse([]byte(head + tc.rule))
			require.NoError(t, err)
			for _, compile := range []func(*taicel.Spec) error{
				func(s *taicel.Spec) error { _, err := env.Compile(s); return err },
				func(s *taicel.Spec) error { _, err := dynamic.Compile(s); return err },
			} {
				err := compile(spec)
				var ce *taicel.CompileError
				require.ErrorAs(t, err, &ce)
				assert.Equal(t, "bad", ce.Rule)
				assert.Equal(t, tc.reason, ce.Reason)
				assert.Equal(t, tc.line, ce.Line, "line")
				assert.Equal(t, tc.column, ce.Column, "column")
				assert.Equal(t, tc.fileLine, ce.FileLine, "file line")
				where := "at"
				if tc.reason {
					where = "reason at"
				}
				assert.True(t, strings.HasPrefix(err.Error(), fmt.Sprintf(`taicel: rule "bad" %s %d:%d (file line %d): ERROR: `, where, tc.line, tc.column, tc.fileLine)), err.Error())
				assert.Contains(t, err.Error(), tc.want)
			}
		})
	}
}

// A rule refused before its expression is compiled is named with the
// line where it begins in the file: "rule 1" alone, counted from 0, did
// not say which of a long file's rules it was.
func TestRuleErrorFileLine(t *testing.T) {
	env, err := taicel.NewEnv(taicel.Options[Order]{})
	require.NoError(t, err)
	const head = "version: 1\nrules:\n  - name: ok\n    weight: 1\n    expr: 'true'\n"
	for _, tc := range []struct {
		name, in, want string
	}{
		{"no name", head + "  - weight: 1\n    expr: 'true'\n", "taicel: rule 1 (file line 6) has no name"},
		{"blank name", head + "  - name: ' '\n    weight: 1\n    expr: 'true'\n", `taicel: rule 1 (file line 6) has no name: " " is only white space`},
		{"padded name", head + "  - name: \"ok\\t\"\n    weight: 1\n    expr: 'true'\n", `taicel: rule 1 (file line 6) has name "ok\t", which begins or ends with white space`},
		{"twice", head + "  # again\n  - name: ok\n    weight: 1\n    expr: 'true'\n", `taicel: rule name "ok" is used twice (file lines 3 and 7)`},
		{"both", head + "  - name: x\n    weight: 1\n    verdict: deny\n    expr: 'true'\n", `taicel: rule "x" (file line 6) has both a verdict and a weight`},
		{"no weight", head + "  - name: x\n    expr: 'true'\n", `taicel: rule "x" (file line 6) has weight 0 and no verdict`},
		{"no expr", head + "  - name: x\n    weight: 1\n", `taicel: rule "x" (file line 6) has no expr`},
		{"flow", `{"version": "1", "rules": [` + "\n" + `{"name": "x", "weight": -1, "expr": "true"}]}`, `taicel: rule "x" (file line 2) has weight -1`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			spec, err := taicel.Parse([]byte(tc.in))
			require.NoError(t, err)
			_, err = env.Compile(spec)
			require.ErrorContains(t, err, tc.want)
		})
	}
}

func FuzzParse(f *testing.F) {
	seed, err := os.ReadFile("testdata/fraud.yaml")
	require.NoError(f, err)
	f.Add(seed)
	f.Add([]byte(`{"version": "1", "rules": [{"name": "a", "expr": "true", "weight": 1}]}`))
	f.Add([]byte("version: 1\n---\nversion: 2\n"))
	f.Add([]byte("version: &a [*a]\n"))
	f.Add([]byte("rules:\n  - expr: |\n      x\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		spec, err := taicel.Parse(data)
		if err != nil {
			require.Nil(t, spec)
			require.NotEmpty(t, err.Error())
			return
		}
		require.NotEmpty(t, spec.Version)
	})
}

// An empty item in the rules (a "-" whose rule was commented out, a
// null) is no rule: the decoder leaves it out. The rules after it were
// located one item off, so an error named the lines of the rule before.
func TestFileLineAfterAnEmptyRuleItem(t *testing.T) {
	env, err := taicel.NewEnv(taicel.Options[Order]{})
	require.NoError(t, err)
	const ok = "  - name: ok\n    weight: 1\n    expr: payload.Total > 1.0\n"
	const bad = "  - name: bad\n    weight: 1\n    expr: payload.Totl > 1.0\n"
	for _, tc := range []struct {
		name, in                    string
		okStart, badStart, exprLine int
	}{
		{"dash alone", "version: 1\nrules:\n  -\n  # - name: old\n" + ok + bad, 5, 8, 10},
		{"null", "version: 1\nrules:\n  - null\n  - ~\n" + ok + bad, 5, 8, 10},
		{"flow", "version: 1\nrules: [null,\n  {name: ok, weight: 1, expr: 'true'},\n  {name: bad, weight: 1, expr: 'payload.X'}]\n", 3, 4, 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			spec, err := taicel.Parse([]byte(tc.in))
			require.NoError(t, err)
			require.Len(t, spec.Rules, 2)
			_, err = env.Compile(spec)
			var ce *taicel.CompileError
			require.ErrorAs(t, err, &ce)
			assert.Equal(t, "bad", ce.Rule)
			assert.Equal(t, tc.exprLine, ce.FileLine)

			spec.Rules[1].Name = "ok"
			_, err = env.Compile(spec)
			assert.ErrorContains(t, err, fmt.Sprintf(`rule name "ok" is used twice (file lines %d and %d)`, tc.okStart, tc.badStart))
		})
	}
}

// A set's item with no value (a lone "-", "~", null) was left out of the
// set without a word, so a value forgotten on a blank item was missing
// from the set the file was meant to hold. A set holds strings: Parse
// refuses the file, naming the set, the item (counted from 0, as rules
// are) and its line. An empty rule item is still no rule (see
// TestFileLineAfterAnEmptyRuleItem).
func TestParseRefusesAnEmptySetItem(t *testing.T) {
	const rules = "rules:\n  - name: r\n    verdict: deny\n    expr: payload.ID in sets.vip\n"
	for _, tc := range []struct {
		name, in, want string
	}{
		{"dash alone", "version: 1\nsets:\n  vip:\n    - o1\n    -\n    - o2\n" + rules,
			`taicel: line 5: item 1 of set "vip" is empty; a set holds strings (write "" for an empty one)`},
		{"tilde", "version: 1\nsets:\n  ok: [a]\n  vip:\n    - ~\n" + rules,
			`taicel: line 5: item 0 of set "vip" is empty; a set holds strings (write "" for an empty one)`},
		{"flow", "version: 1\nsets: {vip: [o1, o2,\n  null]}\n" + rules,
			`taicel: line 3: item 2 of set "vip" is empty; a set holds strings (write "" for an empty one)`},
		{"alias", "version: 1\nname: &none ~\nsets:\n  vip: [o1, *none]\n" + rules,
			`taicel: line 4: item 1 of set "vip" is empty; a set holds strings (write "" for an empty one)`},
		{"json", `{"version": "1", "sets": {"vip": ["o1",` + "\n" + `null]}, "rules": [{"name": "r", "verdict": "deny", "expr": "true"}]}`,
			`taicel: line 2: item 1 of set "vip" is empty; a set holds strings (write "" for an empty one)`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			spec, err := taicel.Parse([]byte(tc.in))
			assert.Nil(t, spec)
			assert.EqualError(t, err, tc.want)
		})
	}
	spec, err := taicel.Parse([]byte("version: 1\nsets:\n  vip: [o1, '', \"\"]\n  none: []\n" + rules))
	require.NoError(t, err)
	assert.Equal(t, map[string][]string{"vip": {"o1", "", ""}, "none": {}}, spec.Sets)
}

// An error in a rule's reason names the line of the reason in the file,
// not that of the expression: "reason at 1:8 (file line 4)" sent the
// reader to the rule's expr.
func TestReasonCompileErrorFileLine(t *testing.T) {
	env, err := taicel.NewEnv(taicel.Options[Order]{})
	require.NoError(t, err)
	const head = "version: 1\nrules:\n  - name: ok\n    weight: 1\n    expr: 'true'\n    reason: '{{payload.Total}}'\n  - name: bad\n    weight: 1\n    expr: 'true'\n"
	for _, tc := range []struct {
		name, in string
		line     int
	}{
		{"plain", head + "\n    reason: 'total {{payload.Totl}}'\n", 11},
		{"before the expr", "version: 1\nrules:\n  - name: bad\n    reason: 'total {{payload.Totl}}'\n    weight: 1\n    expr: 'true'\n", 4},
		{"block", head + "    reason: |\n      total\n      {{payload.Totl}}\n", 12},
		{"folded", head + "    reason: >\n      total\n      {{payload.Totl}}\n", 11},
		{"unterminated", head + "    reason: 'total {{payload.Total'\n", 10},
		{"flow", "version: 1\nrules: [{name: bad, weight: 1, expr: 'true',\n  reason: '{{payload.X}}'}]\n", 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			spec, err := taicel.Parse([]byte(tc.in))
			require.NoError(t, err)
			_, err = env.Compile(spec)
			var ce *taicel.CompileError
			require.ErrorAs(t, err, &ce)
			assert.Equal(t, "bad", ce.Rule)
			assert.True(t, ce.Reason)
			assert.Equal(t, tc.line, ce.FileLine)
			assert.Contains(t, err.Error(), fmt.Sprintf("(file line %d)", tc.line))
		})
	}
}

// A rule can take its expr or its reason from another mapping of the
// file through a YAML merge key (<<: *base). Its compile errors named no
// line: the rule's own mapping has no expr or reason to locate. They
// name the line where the merged mapping has it, where the text in
// error is, so that the line:column within the expression finds it.
func TestCompileErrorFileLineThroughAMergeKey(t *testing.T) {
	env, err := taicel.NewEnv(taicel.Options[Order]{})
	require.NoError(t, err)
	for _, tc := range []struct {
		name, in string
		line     int
		reason   bool
	}{
		{"a rule's", "version: 1\nrules:\n  - &risk\n    name: risk\n    weight: 1\n    expr: payload.Total / 100.0\n" +
			"  - <<: *risk\n    name: bad\n    weight: 0\n    verdict: deny\n", 6, false},
		{"a flow mapping's", "version: 1\nrules:\n  - name: ok\n    <<: &base {weight: 1, expr: 'payload.Totl > 1.0'}\n    expr: payload.Total > 1.0\n" +
			"  - name: bad\n    <<: *base\n", 4, false},
		{"a block", "version: 1\nrules:\n  - name: ok\n    <<: &base\n      weight: 1\n      expr: |\n        payload.Total > 1.0 &&\n          payload.Itms > 2\n    expr: 'true'\n" +
			"  - name: bad\n    <<: *base\n", 7, false},
		{"the first of a list", "version: 1\nrules:\n  - name: ok\n    <<: &a {weight: 1, expr: 'payload.Totl > 1.0'}\n    expr: 'true'\n" +
			"  - name: ok2\n    <<: &b {weight: 1, expr: 'payload.Total > 1.0'}\n" +
			"  - name: bad\n    <<: [*a, *b]\n", 4, false},
		{"a merge within the merged", "version: 1\nrules:\n  - name: ok\n    <<: &inner {expr: 'payload.Totl > 1.0'}\n    weight: 1\n    expr: 'true'\n" +
			"  - name: ok2\n    <<: &outer {<<: *inner, weight: 1}\n    expr: 'true'\n" +
			"  - name: bad\n    <<: *outer\n", 4, false},
		{"the rule's own beside a merged", "version: 1\nrules:\n  - name: ok\n    <<: &base {weight: 1, expr: 'true'}\n" +
			"  - name: bad\n    <<: *base\n    expr: payload.Totl > 1.0\n", 7, false},
		{"a reason", "version: 1\nrules:\n  - name: ok\n    <<: &why {reason: 'total {{payload.Totl}}'}\n    weight: 1\n    expr: 'true'\n    reason: total\n" +
			"  - name: bad\n    <<: *why\n    weight: 1\n    expr: 'true'\n", 4, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			spec, err := taicel.Parse([]byte(tc.in))
			require.NoError(t, err)
			_, err = env.Compile(spec)
			var ce *taicel.CompileError
			require.ErrorAs(t, err, &ce)
			assert.Equal(t, "bad", ce.Rule)
			assert.Equal(t, tc.reason, ce.Reason)
			assert.Equal(t, tc.line, ce.FileLine)
			assert.Contains(t, err.Error(), fmt.Sprintf("(file line %d)", tc.line))
		})
	}
}

// Of several invalid set names, Compile names the first in name order,
// the same one each time: the sets are a map, and the error named
// whichever its iteration met first.
func TestCompileNamesTheFirstInvalidSet(t *testing.T) {
	env, err := taicel.NewEnv(taicel.Options[Order]{})
	require.NoError(t, err)
	spec := &taicel.Spec{Version: "1",
		Sets:  map[string][]string{"ok": nil, "z-z": nil, "b-b": nil, "in": nil, "a-a": nil, "c c": nil},
		Rules: []taicel.Rule{{Name: "r", Weight: 1, Expr: "true"}}}
	for range 50 {
		_, err := env.Compile(spec)
		require.EqualError(t, err, `taicel: set name "a-a" is not an identifier`)
	}
}

// A rule file is JSON as any encoder writes it: escaped slashes (PHP,
// many Java libraries), non-BMP characters as UTF-16 surrogate pairs
// (Python's json.dumps), and raw characters YAML reads as line breaks or
// refuses (U+2028, DEL). Parse reads each as encoding/json does, and
// still names the file's lines.
func TestParseJSONAsEncodersWriteIt(t *testing.T) {
	const in = "{\"version\": \"2026\\/12\\/02\",\n" +
		"  \"sets\": {\"paths\": [\"\\/api\\/pay\", \"caf\\u00e9\", \"\\ud83d\\ude00\", \"C:\\\\u00e9\\\\\"]},\n" +
		"  \"rules\": [\n" +
		"    {\"name\": \"per\\/hour\", \"weight\": 1, \"expr\": \"payload.Total \\/ 2.0 > 1.0\",\n" +
		"     \"reason\": \"\\ud83d\\udcb8 {{payload.Total}} \\u2014 x\u2028y\x7f \\ud800 lone\"},\n" +
		"    {\"name\": \"bad\", \"weight\": 1, \"expr\": \"payload.Totl \\/ 2.0 > 1.0\"}\n" +
		"  ]}\n"
	var want taicel.Spec
	require.NoError(t, json.Unmarshal([]byte(in), &want))
	spec, err := taicel.Parse([]byte(in))
	require.NoError(t, err)
	assert.Equal(t, want.Version, spec.Version)
	assert.Equal(t, want.Sets, spec.Sets)
	require.Len(t, spec.Rules, 2)
	for i := range want.Rules {
		assert.Equal(t, want.Rules[i].Name, spec.Rules[i].Name)
		assert.Equal(t, want.Rules[i].Expr, spec.Rules[i].Expr)
		assert.Equal(t, want.Rules[i].Reason, spec.Rules[i].Reason)
	}
	assert.Equal(t, "\U0001F4B8 {{payload.Total}} \u2014 x\u2028y\x7f \uFFFD lone", spec.Rules[0].Reason)

	env, err := taicel.NewEnv(taicel.Options[Order]{})
	require.NoError(t, err)
	_, err = env.Compile(spec)
	var ce *taicel.CompileError
	require.ErrorAs(t, err, &ce)
	assert.Equal(t, "bad", ce.Rule)
	assert.Equal(t, 6, ce.FileLine)
}

// A key file that YAML reads as a mapping (a cloud provider's JSON key,
// "api_key: sk_live_..." or "AKIA...: secret") was refused with YAML's
// error, which named each of its keys ("field sk_live_... not found in
// type taicel.Spec"). Parse says it is not a rule file, and quotes none
// of it; a mapping with a rule file's key and a misspelt one still
// names the misspelt key.
func TestParseKeyFileMappingIsNotARuleFile(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		line     int
	}{
		{"json key", `{"type": "service_account", "private_key_id": "8f2c41d0", "private_key": "-----BEGIN PRIVATE KEY-----\nMIIEv\n-----END PRIVATE KEY-----\n"}`, 1},
		{"api key", "api_key: sk_live_51HxYzAbCdEf\n", 1},
		{"key as key", "\nAKIAIOSFODNN7EXAMPLE: wJalrXUtnFEMI/K7MDENG\n", 2},
		{"nested", "sk_live_51HxYzAbCdEf:\n  rules: []\n", 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			spec, err := taicel.Parse([]byte(tc.in))
			assert.Nil(t, spec)
			assert.EqualError(t, err, fmt.Sprintf("taicel: not a rule file: the mapping at line %d has none of a rule file's keys (version, name, thresholds, sets, rules)", tc.line))
		})
	}
	_, err := taicel.Parse([]byte("version: 1\nrulez: []\n"))
	assert.ErrorContains(t, err, "line 2: field rulez not found")
}

// A JSON rule file may begin with a byte order mark, as editors on
// Windows write one: YAML allows it, and encoding/json's readers skip
// it. Its strings read as encoding/json reads them with the mark as
// without it, however they are written: each character raw or as a
// \u escape (a UTF-16 surrogate pair beyond the BMP), a slash as \/.
// With the mark, Parse read the file as YAML alone: it refused \/ and
// surrogate pairs, and read U+0085 as a line break folded into a space.
func TestParseJSONWithAByteOrderMark(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		s := rapid.String().Draw(t, "name")
		var q strings.Builder
		q.WriteByte('"')
		for _, r := range s {
			switch {
			case r == '"' || r == '\\':
				q.WriteString(`\` + string(r))
			case r == '/' && rapid.Bool().Draw(t, "escape slash"):
				q.WriteString(`\/`)
			case r < 0x20 || r == utf8.RuneError || rapid.Bool().Draw(t, "escape"):
				for _, u := range utf16.Encode([]rune{r}) {
					fmt.Fprintf(&q, `\u%04x`, u)
				}
			default:
				q.WriteRune(r)
			}
		}
		q.WriteByte('"')
		doc := `{"version": "1", "rules": [{"name": ` + q.String() + `, "weight": 1, "expr": "true"}]}`
		var want taicel.Spec
		require.NoError(t, json.Unmarshal([]byte(doc), &want))
		for _, in := range []string{doc, "\uFEFF" + doc} {
			spec, err := taicel.Parse([]byte(in))
			require.NoError(t, err, "%q", in)
			require.Len(t, spec.Rules, 1)
			assert.Equal(t, want.Rules[0].Name, spec.Rules[0].Name, "%q", in)
		}
	})
}
