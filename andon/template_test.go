package andon_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/andon"
)

// render evaluates a rule whose summary is tmpl, with value v.
func renderSummary(t *testing.T, tmpl string, v float64) string {
	t.Helper()
	e := newEvaluator(t, andon.EvaluatorOptions{Rules: []andon.Rule{{Name: "R", Severity: andon.Info, Summary: tmpl,
		Labels: map[string]string{"team": "payments"},
		Condition: andon.ConditionFunc(func(context.Context, time.Time) (andon.Measurement, error) {
			return andon.Measurement{Value: v, Threshold: 0.02, Detail: "d"}, nil
		})}}})
	e.EvaluateAt(context.Background(), t0)
	a, _ := e.Alert("R")
	return a.Annotations["summary"]
}

func TestTemplateFunctions(t *testing.T) {
	// The expected texts are what Prometheus's template functions give.
	tests := []struct {
		tmpl string
		v    float64
		want string
	}{
		{"{{ $value | humanizePercentage }}", 0.0312345, "3.123%"},
		{"{{ $value | humanize }}", 1234567, "1.235M"},
		{"{{ $value | humanize }}", 0.00123, "1.23m"},
		{"{{ $value | humanize }}", 0, "0"},
		{"{{ $value | humanizeDuration }}", 0.25, "250ms"},
		{"{{ $value | humanizeDuration }}", 5.25, "5.25s"},
		{"{{ $value | humanizeDuration }}", 3725, "1h 2m 5s"},
		{"{{ $value | humanizeDuration }}", 90061, "1d 1h 1m 1s"},
		{"{{ $value | humanizeDuration }}", 0, "0s"},
		{"{{ $value | humanize }}", math.Inf(1), "+Inf"},
		{"{{ $labels.team | toUpper }} {{ .Labels.alertname | toLower }} {{ \"a b\" | title }}", 0, "PAYMENTS r A B"},
		{"{{ .Threshold }} {{ .Detail }} {{ printf \"%.1f\" .Value }}", 0.5, "0.02 d 0.5"},
		{"{{ $labels.missing }}", 0, ""},
	}
	for _, tt := range tests {
		t.Run(tt.tmpl, func(t *testing.T) {
			assert.Equal(t, tt.want, renderSummary(t, tt.tmpl, tt.v))
		})
	}
	got := renderSummary(t, "{{ template \"nope\" }}", 0)
	assert.Contains(t, got, "<error expanding template:", "a failing template still gives a summary")
}

func TestUnitFormat(t *testing.T) {
	tests := []struct {
		u    andon.Unit
		v    float64
		want string
	}{
		{andon.UnitRatio, 0.031, "3.1%"},
		{andon.UnitRatio, 0.02, "2%"},
		{andon.UnitRatio, 1, "100%"},
		{andon.UnitRatio, 0.00012, "0.012%"},
		{andon.UnitSeconds, 5.2, "5.2s"},
		{andon.UnitSeconds, 0.25, "250ms"},
		{andon.UnitSeconds, 0.0000015, "1.5µs"},
		{andon.UnitSeconds, 0, "0s"},
		{andon.UnitFactor, 14.4, "14.4×"},
		{andon.UnitFactor, 123.456, "123×"},
		{andon.UnitState, 1, "on"},
		{andon.UnitState, 0, "off"},
		{andon.UnitNone, 1234.6, "1235"},
		{andon.UnitNone, 2e9, "2e+09"},
		{andon.UnitNone, math.NaN(), "NaN"},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.want, tt.u.Format(tt.v), "%v %v", tt.u, tt.v)
	}
}

func TestTextEncodings(t *testing.T) {
	for _, s := range []andon.AlertState{andon.Inactive, andon.Pending, andon.Firing, andon.Resolved} {
		b, err := s.MarshalText()
		require.NoError(t, err)
		var back andon.AlertState
		require.NoError(t, back.UnmarshalText(b))
		assert.Equal(t, s, back)
	}
	var s andon.AlertState
	assert.Error(t, s.UnmarshalText([]byte("burning")))
	assert.Equal(t, "state(9)", andon.AlertState(9).String())
	for _, u := range []andon.Unit{andon.UnitNone, andon.UnitRatio, andon.UnitSeconds, andon.UnitFactor, andon.UnitState} {
		b, _ := u.MarshalText()
		var back andon.Unit
		require.NoError(t, back.UnmarshalText(b))
		assert.Equal(t, u, back)
	}
	for _, m := range []andon.MatchType{andon.MatchEqual, andon.MatchNotEqual, andon.MatchRegexp, andon.MatchNotRegexp} {
		b, _ := m.MarshalText()
		var back andon.MatchType
		require.NoError(t, back.UnmarshalText(b))
		assert.Equal(t, m, back)
	}
}

func TestTemplateFunctionEdges(t *testing.T) {
	// The expected texts are what Prometheus's template functions give.
	tests := []struct {
		tmpl string
		v    float64
		want string
	}{
		{"{{ $value | humanize }}", 1000, "1k"},
		{"{{ $value | humanize }}", 999.5, "999.5"},
		{"{{ $value | humanize }}", 1, "1"},
		{"{{ $value | humanize }}", -2500, "-2.5k"},
		{"{{ $value | humanize }}", 0.001, "1m"},
		{"{{ $value | humanize }}", 0.5, "500m"},
		{"{{ $value | humanize }}", 2e-7, "200n"},
		{"{{ $value | humanize }}", math.NaN(), "NaN"},
		{"{{ $value | humanize }}", math.Inf(-1), "-Inf"},
		{"{{ $value | humanizeDuration }}", 60, "1m 0s"},
		{"{{ $value | humanizeDuration }}", 3600, "1h 0m 0s"},
		{"{{ $value | humanizeDuration }}", 86400, "1d 0h 0m 0s"},
		{"{{ $value | humanizeDuration }}", 1, "1s"},
		{"{{ $value | humanizeDuration }}", -3725, "-1h 2m 5s"},
		{"{{ $value | humanizeDuration }}", -5, "-5s"},
		{"{{ $value | humanizeDuration }}", 0.001, "1ms"},
		{"{{ $value | humanizeDuration }}", 0.0000025, "2.5us"},
		{"{{ $value | humanizeDuration }}", math.NaN(), "NaN"},
		{"{{ $value | humanizeDuration }}", math.Inf(1), "+Inf"},
		{"{{ \"ab cd-ef\" | title }}", 0, "Ab Cd-Ef"},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.tmpl, tt.v), func(t *testing.T) {
			assert.Equal(t, tt.want, renderSummary(t, tt.tmpl, tt.v))
		})
	}
}

func TestAnnotationTemplates(t *testing.T) {
	cond := andon.ConditionFunc(func(context.Context, time.Time) (andon.Measurement, error) {
		return andon.Measurement{Active: true, Value: 0.1, Threshold: 0.05, Unit: andon.UnitRatio, Samples: 1, Detail: "a detail"}, nil
	})
	e := newEvaluator(t, andon.EvaluatorOptions{Rules: []andon.Rule{{Name: "R", Severity: andon.Page, Condition: cond,
		Description: "{{ $value | humanizePercentage }} > {{ .Threshold | humanizePercentage }}",
		Annotations: map[string]string{"a": "1", "b": "2", "c": "3", "d": "{{ .Detail }}", "empty": ""}}}})
	e.EvaluateAt(context.Background(), t0)
	a, _ := e.Alert("R")
	assert.Equal(t, map[string]string{
		"summary":     "R is 10% (threshold 5%)", // a number has a detail too: the summary says the number
		"description": "10% > 5%",
		"a":           "1", "b": "2", "c": "3", "d": "a detail",
	}, a.Annotations, "an empty annotation is left out")

	for _, tt := range []struct {
		rule andon.Rule
		want string
	}{
		{andon.Rule{Description: "{{ .Nope "}, `andon: rule "R": Description template`},
		{andon.Rule{Annotations: map[string]string{"dashboard": "{{ if }}"}}, `andon: rule "R": Annotations[dashboard] template`},
		{andon.Rule{Annotations: map[string]string{"1x": "y"}}, `andon: rule "R": Rule.Annotations: name "1x" is not a valid label name`},
		{andon.Rule{Annotations: map[string]string{"runbook_url": "y"}}, `andon: rule "R": Rule.Annotations: "runbook_url" is set by the rule's field`},
		{andon.Rule{Annotations: map[string]string{"description": "y"}}, `"description" is set by the rule's field`},
		{andon.Rule{Labels: map[string]string{"alertname": "y"}}, `andon: rule "R": Rule.Labels: label "alertname" is set by the rule; use Name or Severity`},
		{andon.Rule{Labels: map[string]string{"__": "y"}}, `Rule.Labels: name "__" is reserved (it starts with __)`},
	} {
		r := tt.rule
		r.Name, r.Severity, r.Condition = "R", andon.Page, cond
		_, err := andon.NewEvaluator(andon.EvaluatorOptions{Rules: []andon.Rule{r}})
		assert.ErrorContains(t, err, tt.want)
	}
	_, err := andon.NewEvaluator(andon.EvaluatorOptions{Rules: []andon.Rule{{Name: "R", Severity: andon.Page, Condition: cond,
		Labels: map[string]string{"_": "ok", "_a": "ok"}}}})
	assert.NoError(t, err, "one underscore is a valid label name")
}

func TestUnitFormatEdges(t *testing.T) {
	tests := []struct {
		u    andon.Unit
		v    float64
		want string
	}{
		{andon.UnitSeconds, 1, "1s"},
		{andon.UnitSeconds, 0.001, "1ms"},
		{andon.UnitSeconds, 0.000001, "1µs"},
		{andon.UnitSeconds, 0.0000000025, "2.5ns"},
		{andon.UnitSeconds, -0.25, "-250ms"},
		// A minute or more as Prometheus's humanizeDuration writes it.
		{andon.UnitSeconds, 90, "1m 30s"},
		{andon.UnitSeconds, 1000, "16m 40s"},
		{andon.UnitSeconds, 3725, "1h 2m 5s"},
		{andon.UnitSeconds, 90061.7, "1d 1h 1m 1s"},
		{andon.UnitSeconds, -90, "-1m 30s"},
		{andon.UnitSeconds, 59.9996, "60s"},
		{andon.UnitSeconds, 59.5, "59.5s"},
		{andon.UnitSeconds, 1e300, "1e+300s"},
		// Rounded up to the next prefix's one, it is shown in that prefix.
		{andon.UnitSeconds, 0.9996, "1s"},
		{andon.UnitSeconds, -0.9996, "-1s"},
		{andon.UnitSeconds, 0.0009996, "1ms"},
		{andon.UnitSeconds, 0.0000009996, "1µs"},
		{andon.UnitSeconds, 0.9994, "999ms"},
		{andon.UnitState, 0.5, "on"},
		{andon.UnitState, 0.49, "off"},
		{andon.UnitNone, 1.5, "1.5"},
		{andon.UnitNone, 10, "10"},
		{andon.UnitNone, 120, "120"},
		{andon.UnitNone, 100.4, "100"},
		{andon.UnitNone, 0.001, "0.001"},
		{andon.UnitNone, 0.000123456, "0.000123"},
		{andon.UnitNone, 999999, "999999"},
		{andon.UnitNone, 1e6, "1e+06"},
		{andon.UnitNone, -12.345, "-12.3"},
		{andon.UnitNone, 0, "0"},
		{andon.UnitRatio, math.Inf(1), "+Inf"},
		// A ratio below one never reads 100%: a 99.95% objective is not
		// 100%, which nothing could meet.
		{andon.UnitRatio, 0.9995, "99.95%"},
		{andon.UnitRatio, 0.99999, "99.999%"},
		{andon.UnitRatio, 0.9994, "99.9%"},
		{andon.UnitRatio, 1.00004, "100%"},
		{andon.UnitFactor, 0.5, "0.5×"},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.want, tt.u.Format(tt.v), "%v %v", tt.u, tt.v)
	}
	assert.Equal(t, "unit(9)", andon.Unit(9).String())
	assert.Equal(t, "unit(5)", andon.Unit(5).String(), "the first after the last")
	assert.Equal(t, "match(4)", andon.MatchType(4).String())
	var u andon.Unit = andon.UnitState
	assert.ErrorContains(t, u.UnmarshalText([]byte("percent")), `andon: unknown unit "percent"`)
	assert.Equal(t, andon.UnitState, u, "unchanged on error")
	require.NoError(t, u.UnmarshalText([]byte("none")))
	assert.Equal(t, andon.UnitNone, u)
	var s andon.AlertState = andon.Firing
	require.NoError(t, s.UnmarshalText([]byte("inactive")))
	assert.Equal(t, andon.Inactive, s)
	assert.Equal(t, `"pending"`, string(must(json.Marshal(andon.Pending))))
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// prometheusFuncTests are templates whose expansion Prometheus's own
// template tests give: its functions take a number of any Go kind, or a
// string of one, as well as a float64.
var prometheusFuncTests = []struct{ tmpl, want string }{
	{`{{ humanize "1234567.0" }}`, "1.235M"},
	{`{{ humanize ".12" }}`, "120m"},
	{`{{ humanize "0.0" }}`, "0"},
	{`{{ humanize 1234567 }}`, "1.235M"},
	{`{{ humanize -1 }}`, "-1"},
	{`{{ "+Inf" | humanize }}:{{ "-Inf" | humanizeDuration }}:{{ "NaN" | humanize }}`, "+Inf:-Inf:NaN"},
	{`{{ humanizeDuration "60" }}`, "1m 0s"},
	{`{{ humanizeDuration "86400" }}`, "1d 0h 0m 0s"},
	{`{{ humanizeDuration ".0001" }}`, "100us"},
	{`{{ humanizeDuration "12.345" }}`, "12.35s"},
	{`{{ humanizeDuration 1234567 }}`, "14d 6h 56m 7s"},
	{`{{ humanizeDuration -1 }}`, "-1s"},
	{`{{ "-0.22222" | humanizePercentage }}`, "-22.22%"},
	{`{{ "0.1234567" | humanizePercentage }}`, "12.35%"},
	{`{{ 1 | humanizePercentage }}`, "100%"},
	{`{{ 0.0 | humanizePercentage }}`, "0%"},
	{`{{ humanize1024 0.0 }}:{{ humanize1024 1 }}:{{ humanize1024 1048576.0 }}:{{ humanize1024 .12 }}`, "0:1:1Mi:0.12"},
	{`{{ humanize1024 "1048576.0" }}:{{ humanize1024 -1 }}:{{ humanize1024 1234567 }}`, "1Mi:-1:1.177Mi"},
	{`{{ "+Inf" | humanize1024 }}:{{ "NaN" | humanizeTimestamp }}`, "+Inf:NaN"},
	{`{{ humanizeTimestamp 0 }}`, "1970-01-01 00:00:00 +0000 UTC"},
	{`{{ humanizeTimestamp -1 }}`, "1969-12-31 23:59:59 +0000 UTC"},
	{`{{ humanizeTimestamp 1234567 }}`, "1970-01-15 06:56:07 +0000 UTC"},
	{`{{ humanizeTimestamp 9223372036 }}`, "2262-04-11 23:47:16 +0000 UTC"},
	{`{{ 1435065584.128 | humanizeTimestamp }}`, "2015-06-23 13:19:44.128 +0000 UTC"},
	{`{{ "1435065584.128" | humanizeTimestamp }}`, "2015-06-23 13:19:44.128 +0000 UTC"},
}

func TestTemplateFunctionsTakeWhatPrometheusTakes(t *testing.T) {
	for _, tt := range prometheusFuncTests {
		t.Run(tt.tmpl, func(t *testing.T) {
			assert.Equal(t, tt.want, renderSummary(t, tt.tmpl, 0))
		})
	}
	// What Prometheus refuses fails with its error.
	for _, tt := range []struct{ tmpl, want string }{
		{`{{ humanize "one" }}`, `error calling humanize: strconv.ParseFloat: parsing "one": invalid syntax`},
		{`{{ "one" | humanizePercentage }}`, `error calling humanizePercentage: strconv.ParseFloat: parsing "one": invalid syntax`},
		{`{{ humanizeDuration "1m" }}`, `error calling humanizeDuration: strconv.ParseFloat: parsing "1m": invalid syntax`},
		{`{{ $labels.team | humanize }}`, `error calling humanize: strconv.ParseFloat: parsing "payments": invalid syntax`},
		{`{{ true | humanize }}`, `error calling humanize: can't convert bool to float`},
		{`{{ "one" | humanize1024 }}`, `error calling humanize1024: strconv.ParseFloat: parsing "one": invalid syntax`},
		{`{{ true | humanizeTimestamp }}`, `error calling humanizeTimestamp: can't convert bool to float`},
		{`{{ humanizeTimestamp 1.8446744073709552e19 }}`, `error calling humanizeTimestamp: 1.8446744073709552e+19 cannot be represented as a nanoseconds timestamp since it overflows int64`},
		{`{{ humanizeTimestamp -9.3e18 }}`, `-9.3e+18 cannot be represented as a nanoseconds timestamp since it overflows int64`},
		{`{{ .Labels | humanizeDuration }}`, `error calling humanizeDuration: can't convert map[string]string to float`},
	} {
		got := renderSummary(t, tt.tmpl, 0)
		assert.True(t, strings.HasPrefix(got, "<error expanding template: "), "%s gave %q", tt.tmpl, got)
		assert.Contains(t, got, tt.want, tt.tmpl)
	}
}

// TestTemplateFunctionsAgreeWithPromtool expands prometheusFuncTests in
// Prometheus, with promtool, and checks that it gives what andon does.
func TestTemplateFunctionsAgreeWithPromtool(t *testing.T) {
	promtool := needBinary(t, "/usr/bin/promtool", "promtool")
	var rules, want strings.Builder
	rules.WriteString("groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: vector(1)\n        annotations:\n")
	want.WriteString("rule_files: [rules.yml]\ntests:\n  - alert_rule_test:\n      - eval_time: 0m\n        alertname: A\n" +
		"        exp_alerts:\n          - exp_annotations:\n")
	for i, tt := range prometheusFuncTests {
		fmt.Fprintf(&rules, "          a%d: %s\n", i, must(json.Marshal(tt.tmpl)))
		fmt.Fprintf(&want, "              a%d: %s\n", i, must(json.Marshal(renderSummary(t, tt.tmpl, 0))))
	}
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "rules.yml"), []byte(rules.String()), 0o600))
	runPromtoolTest(t, promtool, dir, want.String(), rules.String())
}

func TestTemplateTitleBreaksWordsAsPrometheus(t *testing.T) {
	// The expected texts are what Prometheus's title, golang.org/x/text's
	// cases.Title(language.AmericanEnglish, cases.NoLower), gives.
	for _, tt := range []struct{ in, want string }{
		{"aa bb CC", "Aa Bb CC"},
		{"hello_world", "Hello_world"},
		{"x__y", "X__y"},
		{"don't stop", "Don't Stop"},
		{"it''s", "It''S"},
		{"foo.bar.baz", "Foo.bar.baz"},
		{"a.b c:d e-f g,h a/b", "A.b C:d E-F G,H A/B"},
		{"3rd place", "3Rd Place"},
		{"a1b", "A1b"},
		{"(hi) [there]", "(Hi) [There]"},
		{"é è", "É È"},
		{"ǆemal", "ǅemal"},
		{"ßtraße", "Sstraße"},
		{"ﬁsh", "Fish"},
		{"a·b", "A·b"},
		{"漢a カa", "漢A カA"},
		{"hello\u200bworld", "Hello\u200bWorld"},
		{"x\u0301y", "X\u0301y"},
		{"a\xffb", "A\xffB"},
		{"", ""},
	} {
		assert.Equal(t, tt.want, renderSummary(t, "{{ "+strconv.Quote(tt.in)+" | title }}", 0), "%q", tt.in)
	}
}

// A template reads text it is given as data, never as a template: a label
// value or a detail that looks like one is written as it is. A label the
// alert does not have reads empty, as in Prometheus; a field the data
// does not have is an error written into the text, and the alert goes
// out.
func TestTemplateDataIsNotATemplate(t *testing.T) {
	const injected = `{{ .Value }}{{ template "x" }}{{ printf "%s" "boo" }}`
	e := newEvaluator(t, andon.EvaluatorOptions{Rules: []andon.Rule{{Name: "R", Severity: andon.Page,
		Labels:      map[string]string{"team": injected},
		Summary:     "team {{ $labels.team }} ({{ .Detail }}), owner [{{ $labels.owner }}] [{{ .Labels.owner }}]",
		Description: "{{ .Nope }}",
		Condition: andon.ConditionFunc(func(context.Context, time.Time) (andon.Measurement, error) {
			return andon.Measurement{Active: true, Value: 0.5, Threshold: 0.1, Detail: injected}, nil
		})}}})
	e.EvaluateAt(context.Background(), t0)
	a, _ := e.Alert("R")
	assert.Equal(t, "team "+injected+" ("+injected+"), owner [] []", a.Annotations["summary"])
	assert.Contains(t, a.Annotations["description"], "<error expanding template: ")
	assert.Contains(t, a.Annotations["description"], "Nope")
}
