package andon_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/taipattern/taikit/andon"
	"github.com/taipattern/taikit/jidoka"
)

func TestStopLine(t *testing.T) {
	ctx := context.Background()
	t.Run("stops on fire and restarts on resolve", func(t *testing.T) {
		line := newLine("checkout")
		cond := newSwitch()
		e := newEvaluator(t, andon.EvaluatorOptions{Rules: []andon.Rule{{Name: "HighErrorRate", Severity: andon.Page, Condition: cond,
			Hooks: []andon.Hook{andon.StopLine(line)}}}})
		cond.Set(true)
		e.EvaluateAt(ctx, t0)
		st := line.Status()
		require.True(t, st.Stopped)
		assert.Equal(t, "andon: HighErrorRate: HighErrorRate is 10% (threshold 5%)", st.Reason)
		cond.Set(false)
		e.EvaluateAt(ctx, t0.Add(time.Minute))
		assert.False(t, line.Status().Stopped)
	})
	t.Run("does not restart a line someone else stopped", func(t *testing.T) {
		line := newLine("checkout")
		cond := newSwitch()
		e := newEvaluator(t, andon.EvaluatorOptions{Rules: []andon.Rule{{Name: "R", Severity: andon.Page, Condition: cond,
			Hooks: []andon.Hook{andon.StopLine(line)}}}})
		require.True(t, line.Stop("maintenance"))
		cond.Set(true)
		e.EvaluateAt(ctx, t0)
		cond.Set(false)
		e.EvaluateAt(ctx, t0.Add(time.Minute))
		st := line.Status()
		assert.True(t, st.Stopped)
		assert.Equal(t, "maintenance", st.Reason)
	})
	t.Run("does not restart a line stopped again since for another reason", func(t *testing.T) {
		line := newLine("checkout")
		cond := newSwitch()
		e := newEvaluator(t, andon.EvaluatorOptions{Rules: []andon.Rule{{Name: "R", Severity: andon.Page, Condition: cond,
			Hooks: []andon.Hook{andon.StopLine(line)}}}})
		cond.Set(true)
		e.EvaluateAt(ctx, t0)
		require.True(t, line.Start(), "someone restarts it by hand")
		require.True(t, line.Stop("smoke"), "and someone stops it again")
		cond.Set(false)
		e.EvaluateAt(ctx, t0.Add(time.Minute))
		assert.Equal(t, "smoke", line.Status().Reason)
	})
	t.Run("a shared hook restarts when the last rule resolves", func(t *testing.T) {
		line := newLine("checkout")
		stop := andon.StopLine(line)
		a, b := newSwitch(), newSwitch()
		e := newEvaluator(t, andon.EvaluatorOptions{Rules: []andon.Rule{
			{Name: "A", Severity: andon.Page, Condition: a, Hooks: []andon.Hook{stop}},
			{Name: "B", Severity: andon.Page, Condition: b, Hooks: []andon.Hook{stop}},
		}})
		a.Set(true)
		b.Set(true)
		e.EvaluateAt(ctx, t0)
		require.Contains(t, line.Status().Reason, "andon: A")
		a.Set(false)
		e.EvaluateAt(ctx, t0.Add(time.Minute))
		assert.True(t, line.Status().Stopped, "B still fires")
		b.Set(false)
		e.EvaluateAt(ctx, t0.Add(2*time.Minute))
		assert.False(t, line.Status().Stopped)
	})
	t.Run("the cord stops and restarts the line", func(t *testing.T) {
		line := newLine("checkout")
		rec := &recorder{}
		e := newEvaluator(t, andon.EvaluatorOptions{Notifiers: []andon.Notifier{rec},
			Cord: andon.CordOptions{Hooks: []andon.Hook{andon.StopLine(line)}, Labels: map[string]string{"team": "ops"}}})
		assert.True(t, e.Pull(ctx, "smoke at station 3", "alice"))
		assert.False(t, e.Pull(ctx, "again", "bob"), "a pulled cord keeps its first reason")
		st := line.Status()
		require.True(t, st.Stopped)
		assert.Equal(t, "andon: AndonCord: cord pulled by alice: smoke at station 3", st.Reason)
		cs := e.Cord()
		assert.True(t, cs.Pulled)
		assert.Equal(t, "alice", cs.Who)
		a, ok := e.Alert("AndonCord")
		require.True(t, ok)
		assert.Equal(t, andon.Firing, a.State, "the cord is visible as a firing alert")
		assert.Equal(t, andon.Page, a.Severity)
		assert.Equal(t, "ops", a.Labels["team"])

		assert.True(t, e.Reset(ctx))
		assert.False(t, e.Reset(ctx))
		assert.False(t, line.Status().Stopped)
		a, _ = e.Alert("AndonCord")
		assert.Equal(t, andon.Resolved, a.State)
		require.NoError(t, e.Flush(ctx))
		assert.Equal(t, []string{"AndonCord firing", "AndonCord resolved"}, rec.events())
	})
}

func TestLineStoppedAndBreakerOpen(t *testing.T) {
	ctx := context.Background()
	line := newLine("checkout")
	br, err := jidoka.NewBreaker(jidoka.Config{Name: "gateway"})
	require.NoError(t, err)
	e := newEvaluator(t, andon.EvaluatorOptions{Rules: []andon.Rule{
		{Name: "LineStopped", Severity: andon.Ticket, Condition: andon.LineStopped(line)},
		{Name: "GatewayOpen", Severity: andon.Page, Condition: andon.BreakerOpen(br), MinSamples: 1},
	}})
	e.EvaluateAt(ctx, t0)
	for _, a := range e.Alerts()[:2] {
		assert.Equal(t, andon.Inactive, a.State, a.Name)
		assert.Equal(t, "off", a.ValueText())
	}
	line.Stop("inventory check")
	br.Trip("gateway timeouts")
	e.EvaluateAt(ctx, t0.Add(time.Second))
	l, _ := e.Alert("LineStopped")
	assert.Equal(t, andon.Firing, l.State)
	assert.Equal(t, "line checkout stopped: inventory check", l.Detail)
	assert.Equal(t, l.Detail, l.Annotations["summary"])
	b, _ := e.Alert("GatewayOpen")
	assert.Equal(t, andon.Firing, b.State)
	assert.Contains(t, b.Detail, "breaker gateway")
	assert.Contains(t, b.Detail, "gateway timeouts")
	assert.Equal(t, "on", b.ValueText())
	assert.Empty(t, b.ThresholdText())

	line.Start()
	br.Reset()
	e.EvaluateAt(ctx, t0.Add(2*time.Second))
	for _, a := range e.Alerts()[:2] {
		assert.Equal(t, andon.Resolved, a.State, a.Name)
	}
}
