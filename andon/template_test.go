package andon_test

import (
	"context"
	"math"
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
