package andon_test

import (
	"context"
	"encoding/json"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/andon"
)

// A Run whose context has ended before it began evaluates nothing: a rule
// that would fire (and stop a line through its hook) does not once the
// program has been told to stop.
func TestRunWithAnEndedContextEvaluatesNothing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var n atomic.Int32
		e := newEvaluator(t, andon.EvaluatorOptions{Interval: time.Minute, Rules: []andon.Rule{{Name: "R", Severity: andon.Info,
			Condition: andon.ConditionFunc(func(context.Context, time.Time) (andon.Measurement, error) {
				n.Add(1)
				return andon.Measurement{Active: true}, nil
			})}}})
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		assert.ErrorIs(t, e.Run(ctx), context.Canceled)
		assert.Zero(t, n.Load(), "the condition was called after the context ended")
		a, _ := e.Alert("R")
		assert.Equal(t, andon.Inactive, a.State)
		assert.Empty(t, e.History())
	})
}

// A silence that ended on its own is not expired again: Expire reports
// false for it whether or not an evaluation has run since it ended, as
// Silences no longer lists it.
func TestExpireOfASilenceThatEndedOnItsOwn(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newEvaluator(t, andon.EvaluatorOptions{Rules: []andon.Rule{{Name: "R", Severity: andon.Info, Condition: newSwitch()}}})
		id, err := e.Silence(andon.Silence{Matchers: []andon.Matcher{{Name: "alertname", Value: "R"}}, Duration: time.Minute})
		require.NoError(t, err)
		time.Sleep(2 * time.Minute)
		assert.False(t, e.Expire(id), "a silence that has ended is expired again")
		assert.Empty(t, e.Silences())
	})
}

// The errors of a bad CordOptions name its fields, not a Rule's, which the
// caller never wrote.
func TestCordOptionErrorsNameTheirFields(t *testing.T) {
	rule := andon.Rule{Name: "R", Severity: andon.Info, Condition: newSwitch()}
	for _, tc := range []struct {
		cord andon.CordOptions
		want string
	}{
		{andon.CordOptions{Severity: "urgent"}, `EvaluatorOptions.Cord.Severity "urgent"`},
		{andon.CordOptions{Labels: map[string]string{"bad-name": "x"}}, `EvaluatorOptions.Cord.Labels: name "bad-name"`},
		{andon.CordOptions{Labels: map[string]string{"severity": "x"}}, `EvaluatorOptions.Cord.Labels: label "severity"`},
		{andon.CordOptions{Hooks: []andon.Hook{nil}}, `EvaluatorOptions.Cord.Hooks[0] is nil`},
		{andon.CordOptions{Name: "R"}, `EvaluatorOptions.Cord.Name "R" is used by a rule`},
	} {
		_, err := andon.NewEvaluator(andon.EvaluatorOptions{Rules: []andon.Rule{rule}, Cord: tc.cord})
		if assert.Error(t, err) {
			assert.Contains(t, err.Error(), tc.want)
			assert.NotContains(t, err.Error(), "Rule.")
		}
	}
}

// A cord pulled while another evaluation held the evaluator, and not yet
// fired, fires when it is pulled again with the evaluator free: the second
// Pull, which finds it pulled, reports false but does not leave the lines
// running for want of an evaluation. Likewise a Reset of a cord released
// but still firing resolves it.
func TestPullOfACordPulledButNotFiredFiresIt(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		release := make(chan struct{})
		cond := newSwitch()
		cond.Set(true)
		var cordFired, cordResolved atomic.Int32
		e := newEvaluator(t, andon.EvaluatorOptions{
			Rules: []andon.Rule{{Name: "Slow", Severity: andon.Info, Condition: cond,
				Hooks: []andon.Hook{andon.HookFuncs{OnFire: func(context.Context, andon.Alert) { <-release }}}}},
			Cord: andon.CordOptions{Hooks: []andon.Hook{andon.HookFuncs{
				OnFire:    func(context.Context, andon.Alert) { cordFired.Add(1) },
				OnResolve: func(context.Context, andon.Alert) { cordResolved.Add(1) }}}},
		})
		evaluated := make(chan struct{})
		go func() { e.Evaluate(context.Background()); close(evaluated) }()
		synctest.Wait()
		ended, cancel := context.WithCancel(context.Background())
		cancel()
		require.True(t, e.Pull(ended, "smoke", "ann"))
		close(release)
		<-evaluated

		assert.False(t, e.Pull(context.Background(), "smoke again", "bob"), "the cord was pulled already")
		assert.EqualValues(t, 1, cordFired.Load(), "the cord pulled and not fired fires")
		a, _ := e.Alert(e.CordName())
		assert.Equal(t, andon.Firing, a.State)
		assert.Equal(t, "smoke", e.Cord().Reason, "the first reason is kept")

		// Released while an evaluation holds the evaluator: still firing.
		release = make(chan struct{})
		cond.Set(false)
		e.Evaluate(context.Background())
		cond.Set(true)
		evaluated = make(chan struct{})
		go func() { e.Evaluate(context.Background()); close(evaluated) }()
		synctest.Wait()
		require.True(t, e.Reset(ended))
		close(release)
		<-evaluated
		assert.False(t, e.Reset(context.Background()), "the cord was released already")
		assert.EqualValues(t, 1, cordResolved.Load(), "the cord released and still firing resolves")
		a, _ = e.Alert(e.CordName())
		assert.Equal(t, andon.Resolved, a.State)
	})
}

// A parsed Matcher whose Value is changed afterwards, by hand or by
// decoding JSON into it, matches by its new Value, not by the regexp
// compiled from the old one.
func TestMatcherMatchesByItsValueAfterAChange(t *testing.T) {
	m, err := andon.ParseMatcher(`team=~"pay.*"`)
	require.NoError(t, err)
	labels := map[string]string{"team": "deploys"}
	assert.False(t, m.Matches(labels))
	m.Value = "dep.*"
	assert.True(t, m.Matches(labels), "matched by the regexp of the old value")

	m2, err := andon.ParseMatcher(`team=~"pay.*"`)
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal([]byte(`{"name":"team","type":"=~","value":"dep.*"}`), &m2))
	assert.True(t, m2.Matches(labels), "matched by the regexp of the value before decoding")
}
