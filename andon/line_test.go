package andon_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"
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
	br, err := jidoka.NewBreaker(jidoka.BreakerOptions{Name: "gateway"})
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

// fakeBreaker is a Breaker in whatever state a test sets.
type fakeBreaker struct{ snap jidoka.Snapshot }

func (b *fakeBreaker) Snapshot() jidoka.Snapshot { return b.snap }

func TestBreakerOpenStates(t *testing.T) {
	for _, tt := range []struct {
		state  jidoka.State
		reason string
		active bool
		detail string
	}{
		{jidoka.StateClosed, "", false, "breaker gateway closed"},
		{jidoka.StateHalfOpen, "probing", true, "breaker gateway half-open: probing"},
		{jidoka.StateOpen, "", true, "breaker gateway open"},
		{jidoka.StateOpen, "5 failures", true, "breaker gateway open: 5 failures"},
		{jidoka.StateForcedOpen, "maintenance", true, "breaker gateway forced-open: maintenance"},
		{jidoka.StateDisabled, "", false, "breaker gateway disabled"},
		{jidoka.StateMetricsOnly, "", false, "breaker gateway metrics-only"},
	} {
		c := andon.BreakerOpen(&fakeBreaker{jidoka.Snapshot{Name: "gateway", State: tt.state, Reason: tt.reason}})
		m, err := c.Measure(context.Background(), t0)
		require.NoError(t, err)
		assert.Equal(t, tt.active, m.Active, tt.state)
		assert.Equal(t, tt.detail, m.Detail, tt.state)
		if tt.active {
			assert.Equal(t, 1.0, m.Value)
		} else {
			assert.Zero(t, m.Value)
		}
		assert.EqualValues(t, 1, m.Samples)
		assert.Equal(t, andon.UnitState, m.Unit)
		assert.Equal(t, "breaker gateway open", fmt.Sprint(c))
	}
}

func TestStopLineAgainAndWithoutSummary(t *testing.T) {
	line := newLine("checkout")
	cond := newSwitch()
	e := newEvaluator(t, andon.EvaluatorOptions{Rules: []andon.Rule{{Name: "R", Severity: andon.Page, Condition: cond,
		Summary: "{{ $labels.missing }}", Hooks: []andon.Hook{andon.StopLine(line)}}}})
	ctx := context.Background()
	for i := range 2 { // stops, restarts, and stops again
		cond.Set(true)
		e.EvaluateAt(ctx, t0.Add(time.Duration(2*i)*time.Minute))
		st := line.Status()
		require.True(t, st.Stopped, "round %d", i)
		assert.Equal(t, "andon: R", st.Reason, "an empty summary adds nothing")
		cond.Set(false)
		e.EvaluateAt(ctx, t0.Add(time.Duration(2*i+1)*time.Minute))
		require.False(t, line.Status().Stopped, "round %d", i)
	}
}

func TestPullDefaults(t *testing.T) {
	e := newEvaluator(t, andon.EvaluatorOptions{})
	ctx := context.Background()
	assert.False(t, e.Reset(ctx), "not pulled")
	require.True(t, e.Pull(ctx, "   ", "\t"))
	cs := e.Cord()
	assert.Equal(t, "no reason given", cs.Reason)
	assert.Equal(t, "someone", cs.Who)
	assert.False(t, cs.Since.IsZero())
	a, _ := e.Alert("AndonCord")
	assert.Equal(t, "cord pulled by someone: no reason given", a.Detail)
	assert.Equal(t, 1.0, a.Value)
	require.True(t, e.Reset(ctx))
	require.True(t, e.Pull(ctx, "  smoke  ", " alice "))
	cs = e.Cord()
	assert.Equal(t, "smoke", cs.Reason)
	assert.Equal(t, "alice", cs.Who)
	require.True(t, e.Reset(ctx))
	assert.Equal(t, andon.CordStatus{}, e.Cord())
	a, _ = e.Alert("AndonCord")
	assert.Equal(t, "cord not pulled", a.Detail)
	assert.Zero(t, a.Value)
}

func TestHookFuncsWithOneFunction(t *testing.T) {
	var logs bytes.Buffer
	var fired, resolved atomic.Int32
	cond := newSwitch()
	e := newEvaluator(t, andon.EvaluatorOptions{Logger: slog.New(slog.NewTextHandler(&logs, nil)),
		Rules: []andon.Rule{{Name: "R", Severity: andon.Page, Condition: cond, Hooks: []andon.Hook{
			andon.HookFuncs{OnFire: func(context.Context, andon.Alert) { fired.Add(1) }},
			andon.HookFuncs{OnResolve: func(context.Context, andon.Alert) { resolved.Add(1) }},
		}}}})
	cond.Set(true)
	e.EvaluateAt(context.Background(), t0)
	cond.Set(false)
	e.EvaluateAt(context.Background(), t0.Add(time.Minute))
	assert.EqualValues(t, 1, fired.Load())
	assert.EqualValues(t, 1, resolved.Load())
	assert.Empty(t, logs.String(), "a missing function is not called")
}

func TestSlogNotifierDefaultLogger(t *testing.T) {
	var logs bytes.Buffer
	prev := slog.Default()
	slog.SetDefault(slog.New(slog.NewTextHandler(&logs, nil)))
	defer slog.SetDefault(prev)
	require.NoError(t, andon.SlogNotifier(nil).Notify(context.Background(), []andon.Alert{
		{Name: "A", Severity: andon.Page, State: andon.Resolved},
		{Name: "B", Severity: andon.Info, State: andon.Firing},
	}))
	assert.Contains(t, logs.String(), `level=INFO msg="andon: alert resolved" alertname=A severity=page`, "a resolution is news, not an error")
	assert.Contains(t, logs.String(), `level=INFO msg="andon: alert firing" alertname=B severity=info`)
	assert.Equal(t, "state(4)", andon.AlertState(4).String())
}

// A shared StopLine hook whose stop someone has ended by hand stops the line
// again when another rule fires, or the cord is pulled, and restarts it when
// they resolve.
func TestStopLineAfterARestartByHand(t *testing.T) {
	ctx := context.Background()
	line := newLine("checkout")
	stop := andon.StopLine(line)
	a, b := newSwitch(), newSwitch()
	e := newEvaluator(t, andon.EvaluatorOptions{Hooks: []andon.Hook{stop}, Rules: []andon.Rule{
		{Name: "A", Severity: andon.Page, Condition: a},
		{Name: "B", Severity: andon.Page, Condition: b},
	}})
	a.Set(true)
	e.EvaluateAt(ctx, t0)
	require.True(t, line.Status().Stopped)
	require.True(t, line.Start(), "someone restarts it by hand while A fires")

	b.Set(true)
	e.EvaluateAt(ctx, t0.Add(time.Minute))
	st := line.Status()
	require.True(t, st.Stopped, "B fired")
	assert.Contains(t, st.Reason, "andon: B")

	require.True(t, line.Start(), "restarted by hand again")
	require.True(t, e.Pull(ctx, "smoke", "alice"))
	st = line.Status()
	require.True(t, st.Stopped, "the cord was pulled")
	assert.Equal(t, "andon: AndonCord: cord pulled by alice: smoke", st.Reason)

	a.Set(false)
	b.Set(false)
	e.EvaluateAt(ctx, t0.Add(2*time.Minute))
	assert.True(t, line.Status().Stopped, "the cord is still pulled")
	require.True(t, e.Reset(ctx))
	assert.False(t, line.Status().Stopped)
}

// A cord pulled with a context that has ended, while no other evaluation
// runs, fires at once and stops the line, as its reset restarts it: the
// context only bounds the wait for another evaluation.
func TestPullWithAnEndedContext(t *testing.T) {
	ended, cancel := context.WithCancel(context.Background())
	cancel()
	for range 50 {
		line := newLine("checkout")
		e := newEvaluator(t, andon.EvaluatorOptions{Cord: andon.CordOptions{Hooks: []andon.Hook{andon.StopLine(line)}}})
		require.True(t, e.Pull(ended, "smoke", "alice"))
		require.True(t, line.Status().Stopped, "the cord's alert fired")
		a, _ := e.Alert("AndonCord")
		require.Equal(t, andon.Firing, a.State)
		require.True(t, e.Reset(ended))
		require.False(t, line.Status().Stopped, "the cord's alert resolved")
	}
}

// A StopLine hook ends only the stop it made: a line restarted and stopped
// again between the rule's fire and its resolve stays stopped, though the
// new stop gives the very reason the hook's did (another hook for a rule
// of the same name, or someone who copied the reason).
func TestStopLineEndsOnlyItsOwnStop(t *testing.T) {
	ctx := context.Background()
	alert := andon.Alert{Name: "HighErrorRate", Annotations: map[string]string{"summary": "errors 9%"}}
	const reason = "andon: HighErrorRate: errors 9%"
	t.Run("a stop made by hand with the same reason", func(t *testing.T) {
		line := newLine("checkout")
		stop := andon.StopLine(line)
		stop.Fire(ctx, alert)
		require.Equal(t, reason, line.Status().Reason)
		require.True(t, line.Start(), "someone restarts the line")
		require.True(t, line.Stop(reason), "and stops it again, in the same words")
		stop.Resolve(ctx, alert)
		st := line.Status()
		assert.True(t, st.Stopped, "the second stop is not the hook's")
		assert.Equal(t, reason, st.Reason)
	})
	t.Run("a stop made by another hook for a rule of the same name", func(t *testing.T) {
		line := newLine("checkout")
		first, second := andon.StopLine(line), andon.StopLine(line)
		first.Fire(ctx, alert)
		require.True(t, line.Start(), "someone restarts the line")
		second.Fire(ctx, alert)
		require.Equal(t, reason, line.Status().Reason)
		first.Resolve(ctx, alert)
		assert.True(t, line.Status().Stopped, "the first hook leaves the second's stop")
		first.Fire(ctx, alert)
		first.Resolve(ctx, alert)
		assert.True(t, line.Status().Stopped, "a stop the first hook did not make is not its to end")
		second.Resolve(ctx, alert)
		assert.False(t, line.Status().Stopped, "the second hook ends its own stop")
	})
}

// restoppingLine is a jidoka.Line on which someone restarts and stops the
// line again, for the same reason, the moment Stop stops it.
type restoppingLine struct{ *jidoka.Line }

func (l restoppingLine) Stop(reason string) bool {
	if !l.Line.Stop(reason) {
		return false
	}
	l.Line.Start()
	l.Line.Stop(reason)
	return true
}

// A stop that someone restarted and stopped again before the hook could
// read the line's status is not taken for the hook's.
func TestStopLineRestoppedBeforeItsStatus(t *testing.T) {
	ctx := context.Background()
	line := restoppingLine{newLine("checkout")}
	stop := andon.StopLine(line)
	alert := andon.Alert{Name: "R"}
	stop.Fire(ctx, alert)
	require.Equal(t, jidoka.LineStatus{Stopped: true, Reason: "andon: R", Since: line.Status().Since, Stops: 2}, line.Status())
	stop.Resolve(ctx, alert)
	assert.True(t, line.Status().Stopped, "the current stop may not be the hook's")
}

// plainLine is a Line that cannot end one particular stop: it has only
// the methods of andon.Line.
type plainLine struct{ l *jidoka.Line }

func (p plainLine) Name() string              { return p.l.Name() }
func (p plainLine) Stop(reason string) bool   { return p.l.Stop(reason) }
func (p plainLine) Start() bool               { return p.l.Start() }
func (p plainLine) Status() jidoka.LineStatus { return p.l.Status() }

// A StopLine hook on a Line that is not a StopEnder restarts the line while
// its status gives the hook's reason.
func TestStopLineOnALineWithoutEndStop(t *testing.T) {
	ctx := context.Background()
	line := newLine("checkout")
	var _ andon.StopEnder = line
	stop := andon.StopLine(plainLine{line})
	alert := andon.Alert{Name: "R"}

	stop.Fire(ctx, alert)
	require.Equal(t, "andon: R", line.Status().Reason)
	stop.Resolve(ctx, alert)
	assert.False(t, line.Status().Stopped)

	stop.Fire(ctx, alert)
	require.True(t, line.Start())
	require.True(t, line.Stop("maintenance"))
	stop.Resolve(ctx, alert)
	assert.Equal(t, "maintenance", line.Status().Reason, "another reason: not the hook's stop")
}
