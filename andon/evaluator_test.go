package andon_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"maps"
	"net/url"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/andon"
	"github.com/taipattern/taikit/jidoka"
	"github.com/taipattern/taikit/kanban"
)

// step is one evaluation of a scripted test: at offset from t0, the
// condition is active or not, and the rule must be in state want after it.
type step struct {
	at     time.Duration
	active bool
	want   andon.AlertState
}

func TestStates(t *testing.T) {
	tests := []struct {
		name          string
		forDur, keep  time.Duration
		steps         []step
		wantFires     int
		wantResolves  int
		wantResolveAt time.Duration
	}{
		{
			name:      "for zero fires at once and resolves at once",
			steps:     []step{{0, false, andon.Inactive}, {time.Minute, true, andon.Firing}, {2 * time.Minute, false, andon.Resolved}},
			wantFires: 1, wantResolves: 1, wantResolveAt: 2 * time.Minute,
		},
		{
			name:   "pending until For has passed",
			forDur: 2 * time.Minute,
			steps: []step{
				{0, true, andon.Pending}, {time.Minute, true, andon.Pending},
				{2*time.Minute - time.Nanosecond, true, andon.Pending}, {2 * time.Minute, true, andon.Firing},
				{3 * time.Minute, true, andon.Firing}, {4 * time.Minute, false, andon.Resolved},
				{5 * time.Minute, false, andon.Resolved},
			},
			wantFires: 1, wantResolves: 1, wantResolveAt: 4 * time.Minute,
		},
		{
			name:   "flapping shorter than For never fires",
			forDur: 2 * time.Minute,
			steps: []step{
				{0, true, andon.Pending}, {time.Minute, false, andon.Inactive},
				{2 * time.Minute, true, andon.Pending}, {3 * time.Minute, false, andon.Inactive},
				{4 * time.Minute, true, andon.Pending}, {5 * time.Minute, false, andon.Inactive},
			},
		},
		{
			name: "keep firing for holds through flaps and resets on each return",
			keep: 3 * time.Minute,
			steps: []step{
				{0, true, andon.Firing},
				{time.Minute, false, andon.Firing},       // keep firing since 1m
				{2 * time.Minute, true, andon.Firing},    // back: the keep clock resets
				{3 * time.Minute, false, andon.Firing},   // keep firing since 3m
				{5 * time.Minute, false, andon.Firing},   // 2m < 3m
				{6 * time.Minute, false, andon.Resolved}, // 3m have passed
			},
			wantFires: 1, wantResolves: 1, wantResolveAt: 6 * time.Minute,
		},
		{
			name:   "a resolved rule goes pending again",
			forDur: time.Minute,
			steps: []step{
				{0, true, andon.Pending}, {time.Minute, true, andon.Firing}, {2 * time.Minute, false, andon.Resolved},
				{3 * time.Minute, true, andon.Pending}, {4 * time.Minute, true, andon.Firing},
			},
			wantFires: 2, wantResolves: 1, wantResolveAt: 2 * time.Minute,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cond := newSwitch()
			var fires, resolves atomic.Int32
			hook := andon.HookFuncs{
				OnFire:    func(context.Context, andon.Alert) { fires.Add(1) },
				OnResolve: func(context.Context, andon.Alert) { resolves.Add(1) },
			}
			e := newEvaluator(t, andon.EvaluatorOptions{Rules: []andon.Rule{{Name: "R", Severity: andon.Page, Condition: cond,
				For: tt.forDur, KeepFiringFor: tt.keep, Hooks: []andon.Hook{hook}}}})
			for _, s := range tt.steps {
				cond.Set(s.active)
				e.EvaluateAt(context.Background(), t0.Add(s.at))
				a, ok := e.Alert("R")
				require.True(t, ok)
				require.Equal(t, s.want, a.State, "at %v", s.at)
			}
			assert.EqualValues(t, tt.wantFires, fires.Load(), "fire hooks")
			assert.EqualValues(t, tt.wantResolves, resolves.Load(), "resolve hooks")
			if tt.wantResolves > 0 {
				var resolvedAt time.Time
				for _, tr := range e.History() {
					if tr.To == andon.Resolved {
						resolvedAt = tr.At
					}
				}
				assert.Equal(t, t0.Add(tt.wantResolveAt), resolvedAt)
			}
		})
	}
}

func TestTimestamps(t *testing.T) {
	cond := newSwitch()
	e := newEvaluator(t, andon.EvaluatorOptions{Rules: []andon.Rule{{Name: "R", Severity: andon.Ticket, Condition: cond,
		For: time.Minute, KeepFiringFor: 2 * time.Minute}}})
	ctx := context.Background()

	cond.Set(true)
	e.EvaluateAt(ctx, t0)
	a, _ := e.Alert("R")
	assert.Equal(t, t0, a.ActiveAt)
	assert.True(t, a.FiredAt.IsZero())
	assert.Equal(t, t0, a.Since())

	e.EvaluateAt(ctx, t0.Add(time.Minute))
	a, _ = e.Alert("R")
	assert.Equal(t, t0, a.ActiveAt, "activeAt stays at the start")
	assert.Equal(t, t0.Add(time.Minute), a.FiredAt)
	assert.Equal(t, a.FiredAt, a.Since())

	cond.Set(false)
	e.EvaluateAt(ctx, t0.Add(2*time.Minute))
	a, _ = e.Alert("R")
	assert.Equal(t, andon.Firing, a.State)
	assert.Equal(t, t0.Add(2*time.Minute), a.KeepFiringSince)

	e.EvaluateAt(ctx, t0.Add(4*time.Minute))
	a, _ = e.Alert("R")
	assert.Equal(t, andon.Resolved, a.State)
	assert.Equal(t, t0.Add(4*time.Minute), a.ResolvedAt)
	assert.True(t, a.KeepFiringSince.IsZero())
	assert.Equal(t, t0.Add(4*time.Minute), a.LastEval)

	want := []andon.Transition{
		{Rule: "R", From: andon.Inactive, To: andon.Pending, At: t0, Value: 0.1},
		{Rule: "R", From: andon.Pending, To: andon.Firing, At: t0.Add(time.Minute), Value: 0.1},
		{Rule: "R", From: andon.Firing, To: andon.Resolved, At: t0.Add(4 * time.Minute), Value: 0.01},
	}
	assert.Equal(t, want, e.History())
}

func TestEvaluateAtReturnsTransitions(t *testing.T) {
	a, b := newSwitch(), newSwitch()
	e := newEvaluator(t, andon.EvaluatorOptions{Rules: []andon.Rule{
		{Name: "A", Severity: andon.Info, Condition: a},
		{Name: "B", Severity: andon.Info, Condition: b, For: time.Minute},
	}})
	a.Set(true)
	b.Set(true)
	trs := e.EvaluateAt(context.Background(), t0)
	require.Len(t, trs, 2)
	assert.Equal(t, andon.Transition{Rule: "A", From: andon.Inactive, To: andon.Firing, At: t0, Value: 0.1}, trs[0])
	assert.Equal(t, andon.Transition{Rule: "B", From: andon.Inactive, To: andon.Pending, At: t0, Value: 0.1}, trs[1])
	assert.Empty(t, e.EvaluateAt(context.Background(), t0.Add(time.Second)), "no change, no transitions")
}

func TestMinSamples(t *testing.T) {
	cond := newSwitch()
	e := newEvaluator(t, andon.EvaluatorOptions{Rules: []andon.Rule{{Name: "R", Severity: andon.Page, Condition: cond, MinSamples: 50}}})
	ctx := context.Background()

	// Too little data: the condition holds but the rule does not fire.
	cond.Set(true)
	cond.SetSamples(10)
	e.EvaluateAt(ctx, t0)
	a, _ := e.Alert("R")
	assert.Equal(t, andon.Inactive, a.State)
	assert.True(t, a.InsufficientData)
	assert.EqualValues(t, 10, a.Samples)
	assert.EqualValues(t, 50, a.MinSamples)
	assert.InDelta(t, 0.1, a.Value, 1e-12, "the value is still shown")

	// Enough data: it fires.
	cond.SetSamples(50)
	e.EvaluateAt(ctx, t0.Add(time.Minute))
	a, _ = e.Alert("R")
	assert.Equal(t, andon.Firing, a.State)
	assert.False(t, a.InsufficientData)

	// Too little data again: the condition no longer holds but the rule
	// does not resolve either.
	cond.Set(false)
	cond.SetSamples(3)
	e.EvaluateAt(ctx, t0.Add(2*time.Minute))
	a, _ = e.Alert("R")
	assert.Equal(t, andon.Firing, a.State)
	assert.True(t, a.InsufficientData)

	cond.SetSamples(80)
	e.EvaluateAt(ctx, t0.Add(3*time.Minute))
	a, _ = e.Alert("R")
	assert.Equal(t, andon.Resolved, a.State)
}

func TestConditionErrorKeepsState(t *testing.T) {
	cond := newSwitch()
	e := newEvaluator(t, andon.EvaluatorOptions{Rules: []andon.Rule{{Name: "R", Severity: andon.Page, Condition: cond}}})
	ctx := context.Background()
	cond.Set(true)
	e.EvaluateAt(ctx, t0)
	cond.Set(false)
	cond.SetErr(errors.New("stats unavailable"))
	e.EvaluateAt(ctx, t0.Add(time.Minute))
	a, _ := e.Alert("R")
	assert.Equal(t, andon.Firing, a.State)
	assert.Equal(t, "stats unavailable", a.LastError)

	cond.SetErr(nil)
	e.EvaluateAt(ctx, t0.Add(2*time.Minute))
	a, _ = e.Alert("R")
	assert.Equal(t, andon.Resolved, a.State)
	assert.Empty(t, a.LastError)
}

func TestConditionPanicIsAnError(t *testing.T) {
	var logs bytes.Buffer
	calls := 0
	e := newEvaluator(t, andon.EvaluatorOptions{Logger: slog.New(slog.NewTextHandler(&logs, nil)), Rules: []andon.Rule{{Name: "R", Severity: andon.Page,
		Condition: andon.ConditionFunc(func(context.Context, time.Time) (andon.Measurement, error) {
			if calls++; calls == 3 {
				panic(errors.New("other bug"))
			}
			panic("boom")
		})}}})
	e.EvaluateAt(context.Background(), t0)
	a, _ := e.Alert("R")
	assert.Equal(t, andon.Inactive, a.State)
	assert.Equal(t, "andon: panic in condition of rule R: boom", a.LastError)
	assert.Contains(t, logs.String(), `level=ERROR msg="andon: condition panicked" where="condition of rule R" panic=boom stack="goroutine `)
	assert.Contains(t, logs.String(), "evaluator_test.go", "the stack is where it panicked")

	e.EvaluateAt(context.Background(), t0.Add(time.Minute))
	assert.Equal(t, 1, strings.Count(logs.String(), "condition panicked"), "the same panic again is not logged again")
	e.EvaluateAt(context.Background(), t0.Add(2*time.Minute))
	a, _ = e.Alert("R")
	assert.Equal(t, "andon: panic in condition of rule R: other bug", a.LastError)
	assert.Equal(t, 2, strings.Count(logs.String(), "condition panicked"), "a different panic is")
}

func TestPanicError(t *testing.T) {
	cause := errors.New("nil map")
	p := &andon.PanicError{Where: "hook h", Value: cause, Stack: []byte("stack")}
	assert.Equal(t, "andon: panic in hook h: nil map", p.Error())
	assert.ErrorIs(t, p, cause, "Unwrap returns an error value")
	assert.NoError(t, (&andon.PanicError{Value: "text"}).Unwrap())
}

func TestAnnotations(t *testing.T) {
	cond := newSwitch()
	e := newEvaluator(t, andon.EvaluatorOptions{
		GeneratorURL: "http://board.example/andon/",
		Rules: []andon.Rule{{
			Name: "HighErrorRate", Severity: andon.Page, Condition: cond,
			Labels:      map[string]string{"team": "payments"},
			Summary:     "error rate {{ $value | humanizePercentage }} for {{ $labels.team }}",
			Description: "threshold {{ .Threshold | humanizePercentage }}; {{ .Labels.alertname }}",
			RunbookURL:  "https://runbooks.example/errors",
			Annotations: map[string]string{"dashboard": "https://grafana.example/d/{{ $labels.team }}"},
		}, {
			Name: "Plain", Severity: andon.Info, Condition: cond,
		}},
	})
	cond.Set(true)
	e.EvaluateAt(context.Background(), t0)
	a, _ := e.Alert("HighErrorRate")
	assert.Equal(t, map[string]string{
		"summary":     "error rate 10% for payments",
		"description": "threshold 5%; HighErrorRate",
		"runbook_url": "https://runbooks.example/errors",
		"dashboard":   "https://grafana.example/d/payments",
	}, a.Annotations)
	assert.Equal(t, map[string]string{"alertname": "HighErrorRate", "severity": "page", "team": "payments"}, a.Labels)
	assert.Len(t, a.Fingerprint, 16)
	assert.Equal(t, "http://board.example/andon/#rule-HighErrorRate", a.GeneratorURL)

	p, _ := e.Alert("Plain")
	assert.Equal(t, "Plain is 10% (threshold 5%)", p.Annotations["summary"])
	assert.NotEqual(t, a.Fingerprint, p.Fingerprint)
}

func TestSilences(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cond := newSwitch()
		rec := &recorder{}
		e := newEvaluator(t, andon.EvaluatorOptions{Notifiers: []andon.Notifier{rec},
			Rules: []andon.Rule{
				{Name: "A", Severity: andon.Page, Condition: cond, Labels: map[string]string{"team": "payments"}},
				{Name: "B", Severity: andon.Page, Condition: cond, Labels: map[string]string{"team": "deploys"}},
			}})
		ctx := context.Background()
		id, err := e.Silence(andon.Silence{Matchers: []andon.Matcher{{Name: "team", Value: "payments"}}, Duration: 10 * time.Minute,
			CreatedBy: "alice", Comment: "maintenance"})
		require.NoError(t, err)
		sil := e.Silences()
		require.Len(t, sil, 1)
		assert.Equal(t, id, sil[0].ID)
		assert.Equal(t, time.Now().Add(10*time.Minute), sil[0].EndsAt)
		assert.Equal(t, "alice", sil[0].CreatedBy)

		cond.Set(true)
		e.Evaluate(ctx)
		require.NoError(t, e.Flush(ctx))
		a, _ := e.Alert("A")
		assert.Equal(t, andon.Firing, a.State, "a silence does not change the state")
		assert.True(t, a.Silenced)
		b, _ := e.Alert("B")
		assert.False(t, b.Silenced)
		assert.Equal(t, []string{"B firing"}, rec.events(), "the silenced alert is not sent")

		// When the silence ends, the still-firing alert is sent.
		time.Sleep(10 * time.Minute)
		e.Evaluate(ctx)
		require.NoError(t, e.Flush(ctx))
		a, _ = e.Alert("A")
		assert.False(t, a.Silenced)
		assert.Equal(t, []string{"B firing", "A firing"}, rec.events())
		assert.Empty(t, e.Silences(), "ended silences are forgotten")

		// Expire ends a silence early.
		id, err = e.Silence(andon.Silence{Matchers: []andon.Matcher{{Name: "alertname", Type: andon.MatchRegexp, Value: "A|B"}}, Duration: time.Hour})
		require.NoError(t, err)
		a, _ = e.Alert("A")
		assert.True(t, a.Silenced, "a new silence applies at once")
		assert.True(t, e.Expire(id))
		assert.False(t, e.Expire(id))
		a, _ = e.Alert("A")
		assert.False(t, a.Silenced)
	})
}

func TestSilencedResolutionOfAnAlertSentFiringIsSent(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cond := newSwitch()
		rec := &recorder{}
		e := newEvaluator(t, andon.EvaluatorOptions{Notifiers: []andon.Notifier{rec},
			Rules: []andon.Rule{{Name: "A", Severity: andon.Page, Condition: cond}}})
		ctx := context.Background()
		step := func(active bool) {
			t.Helper()
			cond.Set(active)
			e.Evaluate(ctx)
			require.NoError(t, e.Flush(ctx))
			time.Sleep(time.Minute)
		}
		step(true) // sent firing
		_, err := e.Silence(andon.Silence{Matchers: []andon.Matcher{{Name: "alertname", Value: "A"}}, Duration: time.Hour})
		require.NoError(t, err)
		step(false) // the receiver holds it firing: it hears of the resolution
		assert.Equal(t, []string{"A firing", "A resolved"}, rec.events())
		step(true)  // fires, silenced: not sent
		step(false) // nor is its resolution
		assert.Equal(t, []string{"A firing", "A resolved"}, rec.events())
	})
}

func TestSilenceIDsAreUnique(t *testing.T) {
	// IDs name silences to people and to Expire: one that two silences
	// share would expire the wrong one. Two evaluators (two replicas, or
	// one process before and after a restart) must not hand out the same.
	a := newEvaluator(t, andon.EvaluatorOptions{})
	b := newEvaluator(t, andon.EvaluatorOptions{})
	s := andon.Silence{ID: "mine", Matchers: []andon.Matcher{{Name: "team", Value: "payments"}}, Duration: time.Hour}
	seen := map[string]bool{}
	for range 50 {
		for _, e := range []*andon.Evaluator{a, b} {
			id, err := e.Silence(s)
			require.NoError(t, err)
			require.NotEqual(t, "mine", id, "the ID is the evaluator's to give")
			require.False(t, seen[id], "ID %s given twice", id)
			seen[id] = true
		}
	}
	idA := a.Silences()[0].ID
	assert.False(t, b.Expire(idA), "an ID of another evaluator expires nothing")
	assert.Len(t, b.Silences(), 50)
	assert.True(t, a.Expire(idA))
	assert.Len(t, a.Silences(), 49)
}

func TestSilenceValidation(t *testing.T) {
	e := newEvaluator(t, andon.EvaluatorOptions{})
	tests := []struct {
		name string
		s    andon.Silence
		want string
	}{
		{"no matchers", andon.Silence{Duration: time.Minute}, "Silence.Matchers is empty"},
		{"no duration", andon.Silence{Matchers: []andon.Matcher{{Name: "a", Value: "b"}}}, "Silence.Duration 0s is not positive"},
		{"bad regexp", andon.Silence{Matchers: []andon.Matcher{{Name: "a", Type: andon.MatchRegexp, Value: "("}}, Duration: time.Minute}, `value "(" is not a regular expression`},
		{"bad label", andon.Silence{Matchers: []andon.Matcher{{Name: "1a", Value: "b"}}, Duration: time.Minute}, `name "1a" is not a valid label name`},
		{"ends at start", andon.Silence{Matchers: []andon.Matcher{{Name: "a", Value: "b"}}, StartsAt: t0, EndsAt: t0}, "is not after StartsAt"},
		{"negative duration", andon.Silence{Matchers: []andon.Matcher{{Name: "a", Value: "b"}}, Duration: -time.Minute}, "Silence.Duration -1m0s is not positive"},
		{"unknown type", andon.Silence{Matchers: []andon.Matcher{{Name: "a", Type: 7, Value: "b"}}, Duration: time.Minute}, "Silence.Matchers[0]: match type 7 is unknown"},
		{"ends before start", andon.Silence{Matchers: []andon.Matcher{{Name: "a", Value: "b"}}, StartsAt: t0, EndsAt: t0.Add(-time.Second)}, "is not after StartsAt"},
		// A silence over by the time it is made would mute nothing, yet
		// had an ID and no error.
		{"ended", andon.Silence{Matchers: []andon.Matcher{{Name: "a", Value: "b"}}, StartsAt: time.Now().Add(-2 * time.Hour), Duration: time.Hour}, "has passed"},
		{"ends in the past", andon.Silence{Matchers: []andon.Matcher{{Name: "a", Value: "b"}}, EndsAt: time.Now().Add(-time.Minute)}, "Silence.EndsAt"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := e.Silence(tt.s)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.want)
			assert.Contains(t, err.Error(), "andon: ")
		})
	}
}

func TestParseMatcher(t *testing.T) {
	labels := map[string]string{"alertname": "HighFraudRate", "severity": "page"}
	tests := []struct {
		in    string
		want  andon.Matcher
		match bool
	}{
		{`severity=page`, andon.Matcher{Name: "severity", Type: andon.MatchEqual, Value: "page"}, true},
		{`severity="page"`, andon.Matcher{Name: "severity", Type: andon.MatchEqual, Value: "page"}, true},
		{` severity = "page" `, andon.Matcher{Name: "severity", Type: andon.MatchEqual, Value: "page"}, true},
		{`severity!=page`, andon.Matcher{Name: "severity", Type: andon.MatchNotEqual, Value: "page"}, false},
		{`severity!=ticket`, andon.Matcher{Name: "severity", Type: andon.MatchNotEqual, Value: "ticket"}, true},
		{`alertname=~High.*`, andon.Matcher{Name: "alertname", Type: andon.MatchRegexp, Value: "High.*"}, true},
		{`alertname=~Fraud`, andon.Matcher{Name: "alertname", Type: andon.MatchRegexp, Value: "Fraud"}, false}, // anchored, as in Alertmanager
		{`alertname!~Low.*`, andon.Matcher{Name: "alertname", Type: andon.MatchNotRegexp, Value: "Low.*"}, true},
		{`alertname!~High.*`, andon.Matcher{Name: "alertname", Type: andon.MatchNotRegexp, Value: "High.*"}, false},
		{`team=""`, andon.Matcher{Name: "team", Type: andon.MatchEqual, Value: ""}, true}, // a missing label is empty
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			m, err := andon.ParseMatcher(tt.in)
			require.NoError(t, err)
			assert.Equal(t, tt.want.String(), m.String())
			assert.Equal(t, tt.want.Type, m.Type)
			assert.Equal(t, tt.want.Value, m.Value)
			assert.Equal(t, tt.match, m.Matches(labels))
			assert.Equal(t, tt.match, tt.want.Matches(labels), "a literal Matcher matches the same")
		})
	}
	for _, tt := range []struct{ in, want string }{
		{"severity", `andon: matcher "severity" has no label name and operator`},
		{"=page", `andon: matcher "=page" has no label name and operator`},
		{"a!page", `andon: matcher "a!page" has no operator (=, !=, =~, !~)`},
		{"a=~(", `andon: matcher "a=~(": value "(" is not a regular expression`},
		{"1a=b", `andon: matcher "1a=b": name "1a" is not a valid label name`},
		{"__a=b", `name "__a" is reserved`},
		{`team="x`, `andon: matcher "team=\"x": value has an opening quote and no closing one`}, // as in Alertmanager
		{`team=x"`, `andon: matcher "team=x\"": value has a quote that is not escaped`},
		{`team="`, `value has an opening quote and no closing one`},
	} {
		_, err := andon.ParseMatcher(tt.in)
		assert.ErrorContains(t, err, tt.want, tt.in)
	}
	assert.Equal(t, `severity!~"pa.e"`, andon.Matcher{Name: "severity", Type: andon.MatchNotRegexp, Value: "pa.e"}.String())
	assert.False(t, andon.Matcher{Name: "severity", Type: andon.MatchRegexp, Value: "("}.Matches(labels), "a bad regexp matches nothing")
	assert.False(t, andon.Matcher{Name: "severity", Type: 9, Value: "page"}.Matches(labels), "nor does an unknown type")
	assert.Equal(t, "match(9)", andon.MatchType(9).String())
	var mt andon.MatchType
	assert.ErrorContains(t, mt.UnmarshalText([]byte("==")), `andon: unknown match type "=="`)
}

func TestSilenceWindow(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cond := newSwitch()
		rec := &recorder{}
		e := newEvaluator(t, andon.EvaluatorOptions{Notifiers: []andon.Notifier{rec}, Rules: []andon.Rule{
			{Name: "A", Severity: andon.Page, Condition: cond, Labels: map[string]string{"team": "payments"}},
		}})
		ctx := context.Background()
		start := time.Now().Add(time.Hour)
		_, err := e.Silence(andon.Silence{Matchers: []andon.Matcher{{Name: "team", Value: "payments"}, {Name: "alertname", Value: "A"}},
			StartsAt: start, EndsAt: start.Add(time.Hour)})
		require.NoError(t, err)
		_, err = e.Silence(andon.Silence{Matchers: []andon.Matcher{{Name: "team", Value: "payments"}, {Name: "alertname", Value: "B"}},
			Duration: time.Hour})
		require.NoError(t, err, "a silence that matches one label of two does not apply")
		cond.Set(true)
		e.Evaluate(ctx)
		a, _ := e.Alert("A")
		assert.False(t, a.Silenced, "the first silence has not begun")

		time.Sleep(time.Hour)
		e.Evaluate(ctx)
		a, _ = e.Alert("A")
		assert.True(t, a.Silenced, "it begins at StartsAt")
		sil := e.Silences()
		require.Len(t, sil, 1, "the second has ended")
		assert.Equal(t, start, sil[0].StartsAt)

		time.Sleep(time.Hour - time.Nanosecond)
		e.Evaluate(ctx)
		a, _ = e.Alert("A")
		assert.True(t, a.Silenced, "until EndsAt")
		time.Sleep(time.Nanosecond)
		e.Evaluate(ctx)
		a, _ = e.Alert("A")
		assert.False(t, a.Silenced, "it ends at EndsAt")
		require.NoError(t, e.Flush(ctx))
		assert.Equal(t, []string{"A firing"}, rec.events(), "sent when it began to fire, before the silence")
	})
}

func TestHookPanicIsRecovered(t *testing.T) {
	cond := newSwitch()
	var after atomic.Bool
	var logs bytes.Buffer
	e := newEvaluator(t, andon.EvaluatorOptions{Logger: slog.New(slog.NewTextHandler(&logs, nil)), Rules: []andon.Rule{{Name: "R", Severity: andon.Page, Condition: cond,
		Hooks: []andon.Hook{
			andon.HookFuncs{OnFire: func(context.Context, andon.Alert) { panic("hook bug") }},
			andon.HookFuncs{OnFire: func(context.Context, andon.Alert) { after.Store(true) }},
		}}}})
	cond.Set(true)
	e.EvaluateAt(context.Background(), t0)
	assert.True(t, after.Load(), "the hooks after a panicking one still run")
	assert.Contains(t, logs.String(), `level=ERROR msg="andon: hook panicked" hook=andon.HookFuncs alertname=R panic="hook bug" stack="goroutine `)
	assert.Contains(t, logs.String(), "evaluator_test.go", "the stack is where it panicked")
	a, _ := e.Alert("R")
	assert.Equal(t, andon.Firing, a.State)
}

func TestHistoryIsBounded(t *testing.T) {
	cond := newSwitch()
	e := newEvaluator(t, andon.EvaluatorOptions{HistorySize: 3, RecentValues: 2,
		Rules: []andon.Rule{{Name: "R", Severity: andon.Page, Condition: cond}}})
	for i := range 10 {
		cond.Set(i%2 == 0)
		e.EvaluateAt(context.Background(), t0.Add(time.Duration(i)*time.Minute))
	}
	h := e.History()
	require.Len(t, h, 3)
	assert.Equal(t, t0.Add(7*time.Minute), h[0].At, "oldest kept first")
	assert.Equal(t, t0.Add(9*time.Minute), h[2].At)
	r := e.Recent("R")
	require.Len(t, r, 2)
	assert.Equal(t, t0.Add(9*time.Minute), r[1].Time)
	assert.Nil(t, e.Recent("nope"))
}

func TestRunEvaluatesUntilCanceled(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var n atomic.Int32
		e := newEvaluator(t, andon.EvaluatorOptions{Interval: time.Minute, Rules: []andon.Rule{{Name: "R", Severity: andon.Info,
			Condition: andon.ConditionFunc(func(context.Context, time.Time) (andon.Measurement, error) {
				n.Add(1)
				return andon.Measurement{}, nil
			})}}})
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- e.Run(ctx) }()
		time.Sleep(2*time.Minute + time.Second)
		synctest.Wait()
		assert.EqualValues(t, 3, n.Load(), "at once, then every Interval")
		cancel()
		assert.ErrorIs(t, <-done, context.Canceled)

		go func() { done <- e.Run(context.Background()) }()
		synctest.Wait()
		require.NoError(t, e.Shutdown(context.Background()))
		assert.ErrorIs(t, <-done, andon.ErrClosed)
		assert.EqualValues(t, 4, n.Load())
		assert.Nil(t, e.EvaluateAt(context.Background(), t0), "nothing is evaluated after Shutdown")
		assert.Nil(t, e.Evaluate(context.Background()))
		assert.EqualValues(t, 4, n.Load())
	})
}

func TestConcurrentUse(t *testing.T) {
	cond := newSwitch()
	rec := &recorder{}
	line := newLine("main")
	e := newEvaluator(t, andon.EvaluatorOptions{Notifiers: []andon.Notifier{rec},
		Cord:  andon.CordOptions{Hooks: []andon.Hook{andon.StopLine(line)}},
		Rules: []andon.Rule{{Name: "R", Severity: andon.Page, Condition: cond, Hooks: []andon.Hook{andon.StopLine(line)}}}})
	b, err := andon.NewBoard(e, andon.BoardOptions{Lines: []andon.Line{line}})
	require.NoError(t, err)
	defer func() { require.NoError(t, b.Shutdown(context.Background())) }()
	ctx := context.Background()
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 200 {
				switch (g + i) % 6 {
				case 0:
					cond.Set(i%3 == 0)
				case 1:
					e.EvaluateAt(ctx, t0.Add(time.Duration(i)*time.Second))
				case 2:
					e.Pull(ctx, "test", "g")
				case 3:
					e.Reset(ctx)
				case 4:
					_ = b.State()
					_ = e.History()
					_ = e.NotifierStats()
				case 5:
					id, _ := e.Silence(andon.Silence{Matchers: []andon.Matcher{{Name: "alertname", Value: "R"}}, Duration: time.Second})
					e.Expire(id)
				}
			}
		})
	}
	wg.Wait()
	require.NoError(t, e.Flush(ctx))
	e.Reset(ctx)
	cond.Set(false)
	e.EvaluateAt(ctx, t0.Add(time.Hour))
	assert.False(t, line.Status().Stopped, "every stop was matched by a restart")
}

func TestOptionsValidation(t *testing.T) {
	cond := newSwitch()
	ok := andon.Rule{Name: "R", Severity: andon.Page, Condition: cond}
	tests := []struct {
		name string
		opts andon.EvaluatorOptions
		want string
	}{
		{"empty name", andon.EvaluatorOptions{Rules: []andon.Rule{{Severity: andon.Page, Condition: cond}}}, `rule "#0": Rule.Name is empty`},
		{"no severity", andon.EvaluatorOptions{Rules: []andon.Rule{{Name: "R", Condition: cond}}}, `rule "R": Rule.Severity is empty`},
		{"bad severity", andon.EvaluatorOptions{Rules: []andon.Rule{{Name: "R", Severity: "critical", Condition: cond}}}, `Rule.Severity "critical" is not page, ticket or info`},
		{"no condition", andon.EvaluatorOptions{Rules: []andon.Rule{{Name: "R", Severity: andon.Page}}}, "Rule.Condition is nil"},
		{"duplicate", andon.EvaluatorOptions{Rules: []andon.Rule{ok, ok}}, `Rule.Name "R" is used by another rule`},
		{"cord name clash", andon.EvaluatorOptions{Rules: []andon.Rule{{Name: "AndonCord", Severity: andon.Page, Condition: cond}}}, `EvaluatorOptions.Cord.Name "AndonCord" is used`},
		{"negative for", andon.EvaluatorOptions{Rules: []andon.Rule{{Name: "R", Severity: andon.Page, Condition: cond, For: -time.Second}}}, "Rule.For -1s is negative"},
		{"negative keep", andon.EvaluatorOptions{Rules: []andon.Rule{{Name: "R", Severity: andon.Page, Condition: cond, KeepFiringFor: -time.Second}}}, "Rule.KeepFiringFor -1s is negative"},
		{"bad label", andon.EvaluatorOptions{Rules: []andon.Rule{{Name: "R", Severity: andon.Page, Condition: cond, Labels: map[string]string{"a-b": "x"}}}}, `Rule.Labels: name "a-b" is not a valid label name`},
		{"reserved label", andon.EvaluatorOptions{Rules: []andon.Rule{{Name: "R", Severity: andon.Page, Condition: cond, Labels: map[string]string{"severity": "x"}}}}, `label "severity" is set by the rule`},
		{"bad template", andon.EvaluatorOptions{Rules: []andon.Rule{{Name: "R", Severity: andon.Page, Condition: cond, Summary: "{{ .Value "}}}, "Summary template"},
		{"summary annotation", andon.EvaluatorOptions{Rules: []andon.Rule{{Name: "R", Severity: andon.Page, Condition: cond, Annotations: map[string]string{"summary": "x"}}}}, `"summary" is set by the rule's field`},
		{"nil hook", andon.EvaluatorOptions{Rules: []andon.Rule{{Name: "R", Severity: andon.Page, Condition: cond, Hooks: []andon.Hook{nil}}}}, "Rule.Hooks[0] is nil"},
		{"tiny interval", andon.EvaluatorOptions{Interval: time.Microsecond}, "EvaluatorOptions.Interval 1µs is below 1ms"},
		{"tiny evaluation timeout", andon.EvaluatorOptions{EvaluationTimeout: time.Microsecond}, "EvaluatorOptions.EvaluationTimeout 1µs is below 1ms"},
		{"negative evaluation timeout", andon.EvaluatorOptions{EvaluationTimeout: -time.Second}, "EvaluatorOptions.EvaluationTimeout -1s is below 1ms"},
		{"negative history", andon.EvaluatorOptions{HistorySize: -1}, "EvaluatorOptions.HistorySize -1 is outside"},
		{"nil notifier", andon.EvaluatorOptions{Notifiers: []andon.Notifier{nil}}, "EvaluatorOptions.Notifiers[0] is nil"},
		{"nil global hook", andon.EvaluatorOptions{Hooks: []andon.Hook{nil}}, "EvaluatorOptions.Hooks[0] is nil"},
		{"negative timeout", andon.EvaluatorOptions{Notify: andon.NotifyOptions{Timeout: -1}}, "NotifyOptions.Timeout -1ns is negative"},
		{"backoff above max", andon.EvaluatorOptions{Notify: andon.NotifyOptions{Backoff: kanban.Exponential{Initial: time.Minute, Max: time.Second}}}, "NotifyOptions.Backoff: kanban: invalid Exponential.Initial 1m0s: must not exceed Max"},
		{"backoff pointer", andon.EvaluatorOptions{Notify: andon.NotifyOptions{Backoff: &kanban.Exponential{Multiplier: 0.5}}}, "NotifyOptions.Backoff: kanban: invalid Exponential.Multiplier 0.5: must be finite and at least 1"},
		{"nil backoff pointer", andon.EvaluatorOptions{Notify: andon.NotifyOptions{Backoff: (*kanban.Exponential)(nil)}}, "NotifyOptions.Backoff is a nil *kanban.Exponential"},
		{"nil backoff func", andon.EvaluatorOptions{Notify: andon.NotifyOptions{Backoff: kanban.BackoffFunc(nil)}}, "NotifyOptions.Backoff is a nil kanban.BackoffFunc"},
		{"nil notifier pointer", andon.EvaluatorOptions{Notifiers: []andon.Notifier{(*andon.Webhook)(nil)}}, "EvaluatorOptions.Notifiers[0] is a nil *andon.Webhook"},
		{"attempts", andon.EvaluatorOptions{Notify: andon.NotifyOptions{MaxAttempts: -2}}, "NotifyOptions.MaxAttempts -2 is outside [1, 100]"},
		{"queue", andon.EvaluatorOptions{Notify: andon.NotifyOptions{QueueSize: -2}}, "NotifyOptions.QueueSize -2 is outside"},
		{"cord severity", andon.EvaluatorOptions{Cord: andon.CordOptions{Severity: "loud"}}, `EvaluatorOptions.Cord.Severity "loud"`},
		{"generator URL", andon.EvaluatorOptions{GeneratorURL: "http://board.example/%zz/"}, `EvaluatorOptions.GeneratorURL "http://board.example/%zz/" is not a URL`},
		// Alertmanager takes an absolute URL or a path, and refuses with 422
		// every alert whose generatorURL is neither.
		{"generator URL without a scheme", andon.EvaluatorOptions{GeneratorURL: "board.example/andon/"}, `EvaluatorOptions.GeneratorURL "board.example/andon/" is not an absolute URL or a path starting with /`},
		{"generator URL relative path", andon.EvaluatorOptions{GeneratorURL: "andon/"}, `EvaluatorOptions.GeneratorURL "andon/" is not an absolute URL or a path starting with /`},
		{"generator URL fragment", andon.EvaluatorOptions{GeneratorURL: "http://board.example/andon/#top"}, `EvaluatorOptions.GeneratorURL "http://board.example/andon/#top" has a fragment`},
		{"min samples on a state", andon.EvaluatorOptions{Rules: []andon.Rule{{Name: "R", Severity: andon.Page, Condition: andon.LineStopped(newLine("l")), MinSamples: 5}}}, "Rule.MinSamples 5 is above 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := andon.NewEvaluator(tt.opts)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.want)
			assert.Regexp(t, "^andon: ", err.Error())
		})
	}
}

func TestRunDefaultInterval(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var n atomic.Int32
		e := newEvaluator(t, andon.EvaluatorOptions{Rules: []andon.Rule{{Name: "R", Severity: andon.Info,
			Condition: andon.ConditionFunc(func(context.Context, time.Time) (andon.Measurement, error) {
				n.Add(1)
				return andon.Measurement{}, nil
			})}}})
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- e.Run(ctx) }()
		time.Sleep(time.Minute - time.Second)
		synctest.Wait()
		assert.EqualValues(t, 4, n.Load(), "at 0s, 15s, 30s and 45s")
		cancel()
		<-done
	})
}

func TestOptionLimits(t *testing.T) {
	for _, opts := range []andon.EvaluatorOptions{
		{Interval: time.Millisecond},
		{HistorySize: 1 << 20, RecentValues: 1000},
		{HistorySize: 1, RecentValues: 1},
	} {
		_, err := andon.NewEvaluator(opts)
		require.NoError(t, err, "%+v", opts)
	}
	_, err := andon.NewEvaluator(andon.EvaluatorOptions{RecentValues: 1001})
	assert.ErrorContains(t, err, "andon: EvaluatorOptions.RecentValues 1001 is outside [1, 1000]")
}

func TestNilLoggerLogsToDefault(t *testing.T) {
	var logs bytes.Buffer
	prev := slog.Default()
	slog.SetDefault(slog.New(slog.NewTextHandler(&logs, nil)))
	defer slog.SetDefault(prev)
	cond := newSwitch()
	e := newEvaluator(t, andon.EvaluatorOptions{Rules: []andon.Rule{{Name: "R", Severity: andon.Page, Condition: cond,
		Hooks: []andon.Hook{andon.HookFuncs{OnFire: func(context.Context, andon.Alert) { panic("x") }}}}}})
	cond.Set(true)
	e.EvaluateAt(context.Background(), t0)
	assert.Contains(t, logs.String(), "andon: hook panicked")
}

func TestAlertsBeforeFirstEvaluation(t *testing.T) {
	e := newEvaluator(t, andon.EvaluatorOptions{GeneratorURL: "http://board/",
		Rules: []andon.Rule{
			{Name: "HighErrorRate", Severity: andon.Ticket, MinSamples: 20, Labels: map[string]string{"team": "payments"},
				Condition: newSwitch(), RunbookURL: "https://runbooks.example/errors"},
			{Name: "Plain", Severity: andon.Info, Condition: andon.LineStopped(newLine("checkout"))},
		}})
	as := e.Alerts()
	require.Len(t, as, 3, "two rules and the cord")
	a := as[0]
	assert.Equal(t, "HighErrorRate", a.Name)
	assert.Equal(t, andon.Ticket, a.Severity)
	assert.Equal(t, andon.Inactive, a.State)
	assert.Equal(t, map[string]string{"alertname": "HighErrorRate", "severity": "ticket", "team": "payments"}, a.Labels)
	assert.Len(t, a.Fingerprint, 16)
	assert.EqualValues(t, 20, a.MinSamples)
	assert.Equal(t, map[string]string{"summary": "HighErrorRate", "runbook_url": "https://runbooks.example/errors"}, a.Annotations)
	assert.Equal(t, "http://board/#rule-HighErrorRate", a.GeneratorURL)
	assert.True(t, a.LastEval.IsZero())
	assert.Equal(t, map[string]string{"summary": "line checkout stopped"}, as[1].Annotations, "the condition's description; no runbook")
	assert.Equal(t, "AndonCord", as[2].Name)
	got, ok := e.Alert("Plain")
	require.True(t, ok)
	assert.Equal(t, as[1], got)
	_, ok = e.Alert("nope")
	assert.False(t, ok)

	// Alerts are copies: changing one changes nothing in the evaluator.
	as[0].Labels["team"] = "x"
	as[0].Annotations["summary"] = "x"
	again, _ := e.Alert("HighErrorRate")
	assert.Equal(t, "payments", again.Labels["team"])
	assert.Equal(t, "HighErrorRate", again.Annotations["summary"])
}

func TestPendingAgainClearsOldTimes(t *testing.T) {
	cond := newSwitch()
	e := newEvaluator(t, andon.EvaluatorOptions{Rules: []andon.Rule{{Name: "R", Severity: andon.Page, Condition: cond, For: time.Minute}}})
	ctx := context.Background()
	cond.Set(true)
	e.EvaluateAt(ctx, t0)
	e.EvaluateAt(ctx, t0.Add(time.Minute))
	cond.Set(false)
	e.EvaluateAt(ctx, t0.Add(2*time.Minute))
	a, _ := e.Alert("R")
	require.Equal(t, andon.Resolved, a.State)
	assert.Equal(t, t0.Add(time.Minute), a.FiredAt, "a resolved alert still says when it fired")

	cond.Set(true)
	e.EvaluateAt(ctx, t0.Add(3*time.Minute))
	a, _ = e.Alert("R")
	require.Equal(t, andon.Pending, a.State)
	assert.Equal(t, t0.Add(3*time.Minute), a.ActiveAt)
	assert.True(t, a.FiredAt.IsZero(), "a new episode: %v", a.FiredAt)
	assert.True(t, a.ResolvedAt.IsZero(), "a new episode: %v", a.ResolvedAt)
}

func TestNamedHookPanic(t *testing.T) {
	var logs bytes.Buffer
	cond := newSwitch()
	e := newEvaluator(t, andon.EvaluatorOptions{Logger: slog.New(slog.NewTextHandler(&logs, nil)),
		Rules: []andon.Rule{{Name: "R", Severity: andon.Page, Condition: cond, Hooks: []andon.Hook{andon.StopLine(panickyLine{})}}}})
	cond.Set(true)
	e.EvaluateAt(context.Background(), t0)
	assert.Contains(t, logs.String(), `hook="stop line broken" alertname=R panic="line broken"`)
}

// nameless is a Line whose Name panics, as well as its Stop.
type nameless struct{ panickyLine }

func (nameless) Name() string { panic("name broken") }

// TestHookPanicWithANameThatPanics: the name a panicking hook is logged
// by comes from its Name method (StopLine's from its line's), the
// program's code, which may panic too: the hook is then named by its type,
// and the evaluation, the hooks after it and the program go on.
func TestHookPanicWithANameThatPanics(t *testing.T) {
	var logs bytes.Buffer
	cond := newSwitch()
	var after atomic.Bool
	e := newEvaluator(t, andon.EvaluatorOptions{Logger: slog.New(slog.NewTextHandler(&logs, nil)),
		Rules: []andon.Rule{{Name: "R", Severity: andon.Page, Condition: cond, Hooks: []andon.Hook{andon.StopLine(nameless{}),
			andon.HookFuncs{OnFire: func(context.Context, andon.Alert) { after.Store(true) }}}}}})
	cond.Set(true)
	var trs []andon.Transition
	require.NotPanics(t, func() { trs = e.EvaluateAt(context.Background(), t0) })
	require.Len(t, trs, 1)
	a, _ := e.Alert("R")
	assert.Equal(t, andon.Firing, a.State)
	assert.True(t, after.Load(), "the next hook ran")
	assert.Contains(t, logs.String(), `panic="line broken"`)
	assert.Contains(t, logs.String(), `hook=*andon.lineStopper`)
}

// panickyLine is a Line whose Stop panics.
type panickyLine struct{ andon.Line }

func (panickyLine) Name() string              { return "broken" }
func (panickyLine) Stop(string) bool          { panic("line broken") }
func (panickyLine) Status() jidoka.LineStatus { return jidoka.LineStatus{} }

func TestSilencesAreCopies(t *testing.T) {
	cond := newSwitch()
	e := newEvaluator(t, andon.EvaluatorOptions{Rules: []andon.Rule{{Name: "R", Severity: andon.Page, Condition: cond}}})
	matchers := []andon.Matcher{{Name: "alertname", Value: "R"}}
	_, err := e.Silence(andon.Silence{Matchers: matchers, Duration: time.Hour})
	require.NoError(t, err)
	matchers[0].Value = "other" // the caller reuses its slice
	got := e.Silences()
	got[0].Matchers[0].Value = "other"
	e.Evaluate(context.Background())
	a, _ := e.Alert("R")
	assert.True(t, a.Silenced, "the silence still matches R")
	assert.Equal(t, "R", e.Silences()[0].Matchers[0].Value)
}

func TestGeneratorURLEscapesTheRuleName(t *testing.T) {
	e := newEvaluator(t, andon.EvaluatorOptions{GeneratorURL: "http://board.example/andon/",
		Rules: []andon.Rule{{Name: "Errors above 5% für Zahlungen", Severity: andon.Page, Condition: newSwitch()}}})
	a, ok := e.Alert("Errors above 5% für Zahlungen")
	require.True(t, ok)
	assert.Equal(t, "http://board.example/andon/#rule-Errors%20above%205%25%20f%C3%BCr%20Zahlungen", a.GeneratorURL)
	u, err := url.Parse(a.GeneratorURL)
	require.NoError(t, err, "Alertmanager refuses an alert whose generatorURL is not a URL")
	assert.Equal(t, "rule-Errors above 5% für Zahlungen", u.Fragment)
}

func TestParseMatcherReadsWhatStringWrites(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{`team="a\"b"`, `a"b`},
		{`team="a\\b"`, `a\b`},
		{`team="x\ny"`, "x\ny"},
		{`alertname=~"High\.Rate"`, `High\.Rate`}, // a regexp's escape stays
		{`team=a\"b`, `a"b`},                      // unquoted too, as in Alertmanager
	} {
		m, err := andon.ParseMatcher(tt.in)
		require.NoError(t, err, tt.in)
		assert.Equal(t, tt.want, m.Value, tt.in)
	}
	m, err := andon.ParseMatcher(`alertname=~"High\.Rate"`)
	require.NoError(t, err)
	assert.True(t, m.Matches(map[string]string{"alertname": "High.Rate"}))
	assert.False(t, m.Matches(map[string]string{"alertname": "HighXRate"}))

	for _, v := range []string{`a"b`, `a\b`, "x\ny", `High\.Rate`, `\`, `\\n`, "é\u200b", `say "hi"`} {
		for _, typ := range []andon.MatchType{andon.MatchEqual, andon.MatchNotEqual} {
			want := andon.Matcher{Name: "team", Type: typ, Value: v}
			got, err := andon.ParseMatcher(want.String())
			require.NoError(t, err, want.String())
			assert.Equal(t, want.Value, got.Value, "%s", want.String())
			assert.Equal(t, want.Type, got.Type)
		}
	}
	assert.Equal(t, `team="say \"hi\" \\ \n"`, andon.Matcher{Name: "team", Value: "say \"hi\" \\ \n"}.String())
}

func TestSilencesReadTheClockUnderEvaluateAt(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cond := newSwitch()
		rec := &recorder{}
		e := newEvaluator(t, andon.EvaluatorOptions{Notifiers: []andon.Notifier{rec},
			Rules: []andon.Rule{{Name: "R", Severity: andon.Page, Condition: cond}}})
		ctx := context.Background()
		id, err := e.Silence(andon.Silence{Matchers: []andon.Matcher{{Name: "alertname", Value: "R"}}, Duration: time.Hour})
		require.NoError(t, err)
		cond.Set(true)

		// Times of the caller's, before the silence began and after it
		// ends, neither lift it nor forget it: it is in force now.
		for _, at := range []time.Time{time.Now().Add(-24 * time.Hour), time.Now().Add(24 * time.Hour)} {
			e.EvaluateAt(ctx, at)
			a, _ := e.Alert("R")
			assert.True(t, a.Silenced, "evaluated at %v", at)
			sil := e.Silences()
			require.Len(t, sil, 1)
			assert.Equal(t, id, sil[0].ID)
		}
		require.NoError(t, e.Flush(ctx))
		assert.Empty(t, rec.events(), "the silenced alert is not sent")

		time.Sleep(time.Hour)
		evaluateAndFlush(t, e, 0)
		assert.Equal(t, []string{"R firing"}, rec.events(), "sent once the silence ended")
		assert.Empty(t, e.Silences())
	})
}

// describedCond is a condition that describes itself, and whose
// description panics once broken is set.
type describedCond struct {
	switchCond
	broken atomic.Bool
}

func (c *describedCond) String() string {
	if c.broken.Load() {
		panic("description broken")
	}
	return "described"
}

func TestConditionDescriptionPanicIsAnError(t *testing.T) {
	var logs bytes.Buffer
	cond := &describedCond{switchCond: switchCond{samples: 100}}
	cond.Set(true)
	e, err := andon.NewEvaluator(andon.EvaluatorOptions{Logger: slog.New(slog.NewTextHandler(&logs, nil)),
		Rules: []andon.Rule{{Name: "R", Severity: andon.Page, Condition: cond}}})
	require.NoError(t, err)
	cond.broken.Store(true) // the default summary is made from the description
	require.NotPanics(t, func() { e.EvaluateAt(context.Background(), t0) })

	// The evaluator is still usable: its lock was not left held.
	a, _ := e.Alert("R")
	assert.Equal(t, andon.Inactive, a.State, "a failed evaluation leaves the state as it was")
	assert.Equal(t, "andon: panic in condition of rule R: description broken", a.LastError)
	assert.Contains(t, logs.String(), `msg="andon: condition panicked"`)
	cond.broken.Store(false)
	e.EvaluateAt(context.Background(), t0.Add(time.Minute))
	a, _ = e.Alert("R")
	assert.Equal(t, andon.Firing, a.State)
	assert.Equal(t, "described is 10% (threshold 5%)", a.Annotations["summary"])
	require.NoError(t, e.Shutdown(context.Background()))
}

// A silence that ends, or begins, on its own shows at once in the
// alert's state and on the board, without waiting for an evaluation.
func TestSilenceEndingOnItsOwnShowsAtOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cond := newSwitch()
		e := newEvaluator(t, andon.EvaluatorOptions{Logger: discardLogger(),
			Rules: []andon.Rule{{Name: "A", Severity: andon.Page, Condition: cond}}})
		b, err := andon.NewBoard(e, andon.BoardOptions{})
		require.NoError(t, err)
		silenced := func() []bool {
			t.Helper()
			a, ok := e.Alert("A")
			require.True(t, ok)
			st := b.State()
			require.Equal(t, "A", st.Rules[0].Name)
			return []bool{a.Silenced, e.Alerts()[0].Silenced, st.Rules[0].Silenced}
		}
		ctx := context.Background()
		cond.Set(true)
		e.Evaluate(ctx)
		start := time.Now().Add(time.Minute)
		_, err = e.Silence(andon.Silence{Matchers: []andon.Matcher{{Name: "alertname", Value: "A"}},
			StartsAt: start, EndsAt: start.Add(10 * time.Minute)})
		require.NoError(t, err)
		assert.Equal(t, []bool{false, false, false}, silenced(), "not begun")
		time.Sleep(time.Minute)
		assert.Equal(t, []bool{true, true, true}, silenced(), "begun at StartsAt")
		e.Evaluate(ctx)
		time.Sleep(10 * time.Minute)
		assert.Equal(t, []bool{false, false, false}, silenced(), "ended at EndsAt")

		_, err = e.Silence(andon.Silence{Matchers: []andon.Matcher{{Name: "alertname", Value: "A"}}, Duration: time.Hour})
		require.NoError(t, err)
		e.Evaluate(ctx)
		assert.Equal(t, []bool{true, true, true}, silenced())
		time.Sleep(time.Hour)
		assert.Equal(t, []bool{false, false, false}, silenced(), "ended after its Duration")
		assert.Empty(t, e.Silences())
		assert.Equal(t, []bool{false, false, false}, silenced(), "ended, and forgotten by Silences")
	})
}

// An alert a Refresher (Alertmanager) took firing before a silence began
// is still re-sent to it while silenced: the silence mutes what the
// receiver is told anew, not what it holds. Otherwise the alert's
// ValidUntil (Alertmanager's endsAt) passes and Alertmanager resolves it,
// telling its receivers it resolved while it still fires. An alert that
// fires under the silence is not sent until the silence ends.
func TestSilenceKeepsRefreshingAnAlertTheRefresherHolds(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := &refresher{}
		a, b := newSwitch(), newSwitch()
		e := newEvaluator(t, andon.EvaluatorOptions{Notifiers: []andon.Notifier{n},
			Notify: andon.NotifyOptions{ResendInterval: time.Minute}, Interval: 15 * time.Second,
			Rules: []andon.Rule{
				{Name: "A", Severity: andon.Page, Condition: a, Labels: map[string]string{"team": "payments"}},
				{Name: "B", Severity: andon.Page, Condition: b, Labels: map[string]string{"team": "payments"}},
			}})
		ctx := context.Background()
		a.Set(true)
		e.Evaluate(ctx)
		require.NoError(t, e.Flush(ctx))
		require.Equal(t, []string{"A firing"}, n.events())

		_, err := e.Silence(andon.Silence{Matchers: []andon.Matcher{{Name: "team", Value: "payments"}}, Duration: 30 * time.Minute})
		require.NoError(t, err)
		// B fires under the silence; every 15s until the silence ends, A
		// is still held firing by the refresher, and B is not sent.
		b.Set(true)
		for range 30*4 - 1 {
			time.Sleep(15 * time.Second)
			e.Evaluate(ctx)
			require.NoError(t, e.Flush(ctx))
			n.mu.Lock()
			var last andon.Alert
			for _, x := range n.alerts {
				if x.Name == "A" {
					last = x
				}
			}
			names := map[string]bool{}
			for _, x := range n.alerts {
				names[x.Name] = true
			}
			n.mu.Unlock()
			require.Equal(t, andon.Firing, last.State)
			require.True(t, last.ValidUntil.After(time.Now()), "at %v Alertmanager holds A until %v: it takes it as resolved", time.Now(), last.ValidUntil)
			require.False(t, names["B"], "B fired under the silence and is not sent")
		}
		time.Sleep(15 * time.Second) // the silence has ended
		e.Evaluate(ctx)
		require.NoError(t, e.Flush(ctx))
		assert.Contains(t, n.events(), "B firing")
	})
}

// A Refresher that holds a silenced alert firing is re-sent it every
// ResendInterval, not at every evaluation; a re-send given up is tried
// again at the next evaluation, as the Refresher may let the alert
// expire otherwise, and then every ResendInterval again.
func TestSilencedAlertIsReSentToTheRefresherEveryResendInterval(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := &flakyRefresher{}
		cond := newSwitch()
		e := newEvaluator(t, andon.EvaluatorOptions{Notifiers: []andon.Notifier{n}, Logger: discardLogger(),
			Interval: 15 * time.Second, Notify: andon.NotifyOptions{MaxAttempts: 1, ResendInterval: time.Minute},
			Rules: []andon.Rule{{Name: "A", Severity: andon.Page, Condition: cond}}})
		ctx := context.Background()
		sends := func(after time.Duration) int {
			t.Helper()
			time.Sleep(after)
			e.Evaluate(ctx)
			require.NoError(t, e.Flush(ctx))
			return len(n.events())
		}
		cond.Set(true)
		require.Equal(t, 1, sends(0)) // fires: delivered
		_, err := e.Silence(andon.Silence{Matchers: []andon.Matcher{{Name: "alertname", Value: "A"}}, Duration: time.Hour})
		require.NoError(t, err)
		var got []int
		for range 4 {
			got = append(got, sends(15*time.Second))
		}
		assert.Equal(t, []int{1, 1, 1, 2}, got, "re-sent once a minute has passed")

		n.down.Store(true)
		require.Equal(t, 2, sends(time.Minute)) // the re-send is given up
		require.EqualValues(t, 1, e.NotifierStats()[0].Failed)
		n.down.Store(false)
		assert.Equal(t, 3, sends(15*time.Second), "re-sent at the next evaluation")
		assert.Equal(t, []int{3, 3, 3, 4}, []int{sends(15 * time.Second), sends(15 * time.Second), sends(15 * time.Second),
			sends(15 * time.Second)}, "then once a minute again")
	})
}

// measureError is a condition's error type whose methods read its
// fields, as many do: a nil one panics in them.
type measureError struct{ cause error }

func (e *measureError) Error() string { return "measuring: " + e.cause.Error() }
func (e *measureError) Unwrap() error { return e.cause }

// TestConditionErrorPanicIsAnError: a condition's error whose Error or
// Unwrap method panics, as a nil pointer of an error type returned as an
// error does, is the condition's *PanicError, as a panic in Measure is.
// It panicked in the evaluation with the evaluator's lock held, so the
// program crashed, and every later call would have blocked for good.
func TestConditionErrorPanicIsAnError(t *testing.T) {
	var logs bytes.Buffer
	var bad atomic.Pointer[measureError] // nil: its methods panic
	e, err := andon.NewEvaluator(andon.EvaluatorOptions{Logger: slog.New(slog.NewTextHandler(&logs, nil)), Rules: []andon.Rule{
		{Name: "R", Severity: andon.Page, Condition: andon.ConditionFunc(func(context.Context, time.Time) (andon.Measurement, error) {
			return andon.Measurement{}, bad.Load()
		})},
		{Name: "Other", Severity: andon.Page, Condition: newSwitch()},
	}})
	require.NoError(t, err)
	// Without notifiers the evaluator has no goroutine; one whose lock
	// is held for good is not shut down.
	t.Cleanup(func() {
		if !t.Failed() {
			require.NoError(t, e.Shutdown(context.Background()))
		}
	})
	// evaluate evaluates at at on a goroutine of its own, failing the
	// test at once should it panic or block.
	evaluate := func(at time.Time) {
		t.Helper()
		done := make(chan any, 1)
		go func() {
			defer func() { done <- recover() }()
			e.EvaluateAt(context.Background(), at)
		}()
		select {
		case v := <-done:
			require.Nil(t, v, "the evaluation panicked")
		case <-time.After(10 * time.Second):
			t.Fatal("the evaluation blocked")
		}
	}
	evaluate(t0)
	a, _ := e.Alert("R")
	assert.Equal(t, andon.Inactive, a.State)
	assert.Contains(t, a.LastError, "andon: panic in condition of rule R: runtime error: invalid memory address")
	assert.Contains(t, logs.String(), `msg="andon: condition panicked" where="condition of rule R"`)
	other, _ := e.Alert("Other")
	assert.Equal(t, t0, other.LastEval, "the other rules are evaluated")

	bad.Store(&measureError{cause: errors.New("no data")})
	evaluate(t0.Add(time.Minute))
	a, _ = e.Alert("R")
	assert.Equal(t, "measuring: no data", a.LastError)
}

// TestConditionDescriptionPanicAtConstruction: NewEvaluator, which makes
// each rule's first summary from its condition's String method, returns
// an error naming the rule when that method panics; it panicked.
func TestConditionDescriptionPanicAtConstruction(t *testing.T) {
	cond := &describedCond{switchCond: switchCond{samples: 100}}
	cond.broken.Store(true)
	var err error
	require.NotPanics(t, func() {
		_, err = andon.NewEvaluator(andon.EvaluatorOptions{Rules: []andon.Rule{{Name: "R", Severity: andon.Page, Condition: cond}}})
	})
	require.EqualError(t, err, `andon: rule "R": the String method of Rule.Condition (*andon_test.describedCond) panicked: description broken`)
}

// TestRunBoundsEachEvaluation: the context Run gives an evaluation ends
// after Interval, so a condition that waits on it (a request to a
// server that never answers) fails then, and the next evaluations, of
// every rule and of the cord, go on. It had Run's context, which does not
// end: every rule stopped being evaluated, and a pulled cord never fired
// nor stopped its line.
func TestRunBoundsEachEvaluation(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var hung atomic.Bool
		hung.Store(true)
		other := newSwitch()
		line := newLine("checkout")
		e := newEvaluator(t, andon.EvaluatorOptions{Interval: time.Minute, Cord: andon.CordOptions{Hooks: []andon.Hook{andon.StopLine(line)}},
			Rules: []andon.Rule{
				{Name: "Remote", Severity: andon.Page, Condition: andon.ConditionFunc(func(ctx context.Context, _ time.Time) (andon.Measurement, error) {
					if hung.Load() {
						<-ctx.Done() // a server that never answers
						return andon.Measurement{}, ctx.Err()
					}
					return andon.Measurement{Samples: 1}, nil
				})},
				{Name: "Other", Severity: andon.Page, Condition: other},
			}})
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- e.Run(ctx) }()
		time.Sleep(time.Minute - time.Nanosecond)
		synctest.Wait()
		a, _ := e.Alert("Other")
		assert.True(t, a.LastEval.IsZero(), "the first evaluation waits for Remote")

		time.Sleep(time.Nanosecond)
		synctest.Wait()
		a, _ = e.Alert("Remote")
		assert.Equal(t, context.DeadlineExceeded.Error(), a.LastError, "cut at the Interval")
		a, _ = e.Alert("Other")
		assert.False(t, a.LastEval.IsZero(), "the other rules are evaluated")

		hung.Store(false)
		time.Sleep(time.Minute)
		synctest.Wait()
		pulled := make(chan bool, 1)
		go func() { pulled <- e.Pull(context.Background(), "jam", "dave") }()
		synctest.Wait()
		require.True(t, <-pulled)
		assert.True(t, line.Status().Stopped, "the cord stops the line")
		cancel()
		assert.ErrorIs(t, <-done, context.Canceled)
	})
}

// reentrantPanic is a panic value whose Error method reads the evaluator.
type reentrantPanic struct{ e *andon.Evaluator }

func (p reentrantPanic) Error() string {
	return fmt.Sprintf("while %d rules were evaluated", len(p.e.Alerts()))
}

// selfPanic is a panic value whose Error method panics with it, which
// fmt does not recover from when it prints it.
type selfPanic struct{}

func (p selfPanic) Error() string { panic(p) }

// TestConditionPanicValueReadOutsideTheLock: the text of a condition's
// panic, made by the panic value's own Error or String method, is made
// with the evaluator's lock not held, and a panic in it is recovered: a
// method that reads the evaluator (or ends the goroutine) blocked the
// evaluation, and every later call, for good, and one that panics again
// crashed the program from Run.
func TestConditionPanicValueReadOutsideTheLock(t *testing.T) {
	var e *andon.Evaluator
	e, err := andon.NewEvaluator(andon.EvaluatorOptions{Logger: discardLogger(), Rules: []andon.Rule{
		{Name: "R", Severity: andon.Page, Condition: andon.ConditionFunc(func(context.Context, time.Time) (andon.Measurement, error) {
			panic(reentrantPanic{e})
		})},
		{Name: "S", Severity: andon.Page, Condition: andon.ConditionFunc(func(context.Context, time.Time) (andon.Measurement, error) {
			panic(selfPanic{})
		})},
	}})
	require.NoError(t, err)
	t.Cleanup(func() {
		if !t.Failed() {
			require.NoError(t, e.Shutdown(context.Background()))
		}
	})
	done := make(chan any, 1)
	go func() {
		defer func() { done <- recover() }()
		e.EvaluateAt(context.Background(), t0)
	}()
	select {
	case v := <-done:
		require.Nil(t, v, "the evaluation panicked")
	case <-time.After(10 * time.Second):
		t.Fatal("the evaluation blocked")
	}
	a, _ := e.Alert("R")
	assert.Equal(t, "andon: panic in condition of rule R: while 3 rules were evaluated", a.LastError)
	a, _ = e.Alert("S")
	assert.Contains(t, a.LastError, "andon: panic in condition of rule S")
}

// TestHookPanicValueThatPanics: a hook's panic whose value panics again
// when printed is logged, and the evaluation goes on; it crashed the
// program from Run.
func TestHookPanicValueThatPanics(t *testing.T) {
	var logs bytes.Buffer
	cond := newSwitch()
	cond.Set(true)
	e := newEvaluator(t, andon.EvaluatorOptions{Logger: slog.New(slog.NewTextHandler(&logs, nil)), Rules: []andon.Rule{
		{Name: "R", Severity: andon.Page, Condition: cond, Hooks: []andon.Hook{andon.HookFuncs{
			OnFire: func(context.Context, andon.Alert) { panic(selfPanic{}) },
		}}},
	}})
	var trs []andon.Transition
	require.NotPanics(t, func() { trs = e.EvaluateAt(context.Background(), t0) })
	require.Len(t, trs, 1)
	assert.Equal(t, andon.Firing, trs[0].To)
	assert.Contains(t, logs.String(), `msg="andon: hook panicked"`)
	assert.Contains(t, logs.String(), `panic="a andon_test.selfPanic whose text could not be made"`)
}

// goexitPanic is a panic value whose Error method ends the goroutine
// with runtime.Goexit, as t.FailNow in a test's error type does.
type goexitPanic struct{}

func (goexitPanic) Error() string {
	runtime.Goexit()
	return ""
}

// returns reports whether f returns, rather than ending the goroutine
// it runs on with runtime.Goexit.
func returns(f func()) bool {
	done := make(chan bool, 1)
	go func() {
		ok := false
		defer func() { done <- ok }()
		f()
		ok = true
	}()
	return <-done
}

// TestPanicValueThatCallsGoexit: the text of a panic whose value's Error
// method calls runtime.Goexit names the value's type, and the
// goroutine that made it goes on: a recovered panic of a condition or a
// hook ended the goroutine that called Evaluate, and a condition's was
// taken for a Goexit of the condition's, its value lost.
func TestPanicValueThatCallsGoexit(t *testing.T) {
	var logs bytes.Buffer
	cond := newSwitch()
	cond.Set(true)
	e := newEvaluator(t, andon.EvaluatorOptions{Logger: slog.New(slog.NewTextHandler(&logs, nil)), Rules: []andon.Rule{
		{Name: "R", Severity: andon.Page, Condition: andon.ConditionFunc(func(context.Context, time.Time) (andon.Measurement, error) {
			panic(goexitPanic{})
		})},
		{Name: "S", Severity: andon.Page, Condition: cond, Hooks: []andon.Hook{andon.HookFuncs{
			OnFire: func(context.Context, andon.Alert) { panic(goexitPanic{}) },
		}}},
	}})
	require.True(t, returns(func() { e.EvaluateAt(context.Background(), t0) }), "the evaluation ended its caller's goroutine")
	a, _ := e.Alert("R")
	assert.Equal(t, "andon: panic in condition of rule R: a andon_test.goexitPanic whose text could not be made", a.LastError)
	a, _ = e.Alert("S")
	assert.Equal(t, andon.Firing, a.State)
	assert.Contains(t, logs.String(), `msg="andon: hook panicked"`)
	assert.NotContains(t, logs.String(), "runtime.Goexit")

	p := &andon.PanicError{Where: "notifier webhook", Value: goexitPanic{}}
	var text string
	require.True(t, returns(func() { text = p.Error() }), "Error ended the goroutine")
	assert.Equal(t, "andon: panic in notifier webhook: a andon_test.goexitPanic whose text could not be made", text)
}

// promFingerprint is the fingerprint Prometheus and Alertmanager give a
// label set (model.LabelSet.Fingerprint): FNV-1a over the names, sorted,
// and values, each followed by the byte 0xff, in hexadecimal.
func promFingerprint(labels map[string]string) string {
	h := fnv.New64a()
	for _, k := range slices.Sorted(maps.Keys(labels)) {
		h.Write([]byte(k + "\xff" + labels[k] + "\xff"))
	}
	return fmt.Sprintf("%016x", h.Sum64())
}

// A label whose value is empty is no label, as in Prometheus, which drops
// it from the alert, and Alertmanager, which drops it before it
// fingerprints the alert: the alert's labels and fingerprint are those of
// the labels that have values.
func TestEmptyLabelValueIsNoLabel(t *testing.T) {
	cond := newSwitch()
	e := newEvaluator(t, andon.EvaluatorOptions{
		Rules: []andon.Rule{{Name: "HighErrorRate", Severity: andon.Page, Condition: cond,
			Labels: map[string]string{"team": "payments", "tier": ""}}},
		Cord: andon.CordOptions{Labels: map[string]string{"team": "", "site": "fra"}},
	})
	cond.Set(true)
	e.EvaluateAt(context.Background(), t0)
	for name, want := range map[string]map[string]string{
		"HighErrorRate": {"alertname": "HighErrorRate", "severity": "page", "team": "payments"},
		"AndonCord":     {"alertname": "AndonCord", "severity": "page", "site": "fra"},
	} {
		a, ok := e.Alert(name)
		require.True(t, ok, name)
		assert.Equal(t, want, a.Labels, name)
		assert.Equal(t, promFingerprint(want), a.Fingerprint, name)
	}
}
