package andon_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/andon"
	"github.com/taipattern/taikit/jidoka"
	"github.com/taipattern/taikit/kaizen"
)

// nilCond is a Condition type whose nil pointer panics when measured.
type nilCond struct{ active bool }

func (c *nilCond) Measure(context.Context, time.Time) (andon.Measurement, error) {
	return andon.Measurement{Active: c.active}, nil
}

func (c *nilCond) String() string { return "nil cond " + map[bool]string{true: "on"}[c.active] }

// nilHook is a Hook type whose nil pointer panics when it runs.
type nilHook struct{ fired int }

func (h *nilHook) Fire(context.Context, andon.Alert)    { h.fired++ }
func (h *nilHook) Resolve(context.Context, andon.Alert) { h.fired-- }

// A nil *jidoka.Breaker, *jidoka.Line or *kaizen.Stats given to a
// condition, a condition or hook that is a nil pointer or function, or StopLine of a
// nil line, is
// refused by NewEvaluator, naming the field, instead of a panic there or
// at every evaluation.
func TestNewEvaluatorRefusesNilPointers(t *testing.T) {
	var (
		br    *jidoka.Breaker
		line  *jidoka.Line
		stats *kaizen.Stats
		cond  *nilCond
		fn    andon.ConditionFunc
		hook  *nilHook
	)
	for _, c := range []struct {
		name string
		opts andon.EvaluatorOptions
		want string
	}{
		{"breaker", andon.EvaluatorOptions{Rules: []andon.Rule{{Name: "R", Severity: andon.Page, Condition: andon.BreakerOpen(br)}}},
			"Rule.Condition: the Breaker is a nil *jidoka.Breaker"},
		{"line", andon.EvaluatorOptions{Rules: []andon.Rule{{Name: "R", Severity: andon.Page, Condition: andon.LineStopped(line)}}},
			"Rule.Condition: the Line is a nil *jidoka.Line"},
		{"stats", andon.EvaluatorOptions{Rules: []andon.Rule{{Name: "R", Severity: andon.Page,
			Condition: andon.ErrorRate(stats, "payment", time.Minute, 0.1)}}},
			"Rule.Condition: the StatsSource is a nil *kaizen.Stats"},
		{"burn", andon.EvaluatorOptions{Rules: []andon.Rule{{Name: "R", Severity: andon.Page,
			Condition: andon.BurnRate(stats, andon.SLO{Kind: "payment", Objective: 0.999}, andon.PageBurnWindows()...)}}},
			"Rule.Condition: the StatsSource is a nil *kaizen.Stats"},
		{"condition", andon.EvaluatorOptions{Rules: []andon.Rule{{Name: "R", Severity: andon.Page, Condition: cond}}},
			"Rule.Condition is a nil *andon_test.nilCond"},
		{"func", andon.EvaluatorOptions{Rules: []andon.Rule{{Name: "R", Severity: andon.Page, Condition: fn}}},
			"Rule.Condition is a nil andon.ConditionFunc"},
		{"hook", andon.EvaluatorOptions{Hooks: []andon.Hook{hook}}, "EvaluatorOptions.Hooks[0] is a nil *andon_test.nilHook"},
		{"stop line", andon.EvaluatorOptions{Hooks: []andon.Hook{andon.StopLine(line)}},
			"EvaluatorOptions.Hooks[0] is StopLine of a nil line (*jidoka.Line)"},
		{"rule hook", andon.EvaluatorOptions{Rules: []andon.Rule{{Name: "R", Severity: andon.Page, Condition: newSwitch(),
			Hooks: []andon.Hook{andon.StopLine(nil)}}}}, "Rule.Hooks[0] is StopLine of a nil line (<nil>)"},
		{"cord hook", andon.EvaluatorOptions{Cord: andon.CordOptions{Hooks: []andon.Hook{hook}}},
			"EvaluatorOptions.Cord.Hooks[0] is a nil *andon_test.nilHook"},
	} {
		t.Run(c.name, func(t *testing.T) {
			var e *andon.Evaluator
			var err error
			require.NotPanics(t, func() { e, err = andon.NewEvaluator(c.opts) })
			if e != nil {
				require.NoError(t, e.Shutdown(context.Background()))
			}
			require.Error(t, err)
			assert.Contains(t, err.Error(), c.want)
			if strings.HasPrefix(c.want, "Rule.Condition") { // the rule is refused by PrometheusRules too
				var out strings.Builder
				require.NotPanics(t, func() { err = andon.PrometheusRules(&out, "g", c.opts.Rules, andon.ExportOptions{}) })
				require.Error(t, err, "PrometheusRules")
				assert.Contains(t, err.Error(), c.want)
			}
		})
	}
}

// NewBoard refuses a line or breaker that is a nil pointer, naming it,
// rather than serve a board whose every state answer panics.
func TestNewBoardRefusesNilPointers(t *testing.T) {
	e := newEvaluator(t, andon.EvaluatorOptions{})
	var line *jidoka.Line
	var br *jidoka.Breaker
	for _, c := range []struct {
		opts andon.BoardOptions
		want string
	}{
		{andon.BoardOptions{Lines: []andon.Line{newLine("a"), line}}, "BoardOptions.Lines[1] is a nil *jidoka.Line"},
		{andon.BoardOptions{Breakers: []andon.Breaker{br}}, "BoardOptions.Breakers[0] is a nil *jidoka.Breaker"},
	} {
		var b *andon.Board
		var err error
		require.NotPanics(t, func() { b, err = andon.NewBoard(e, c.opts) })
		if err == nil {
			rec := httptest.NewRecorder()
			assert.NotPanics(t, func() { b.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/api/state", nil)) })
		}
		require.Error(t, err)
		assert.Contains(t, err.Error(), c.want)
	}
}
