package andon_test

import (
	"context"
	"sync/atomic"
	"testing"
	"testing/synctest"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/andon"
)

// A Pull that waits for an evaluation in progress while Shutdown is called
// either fires the cord, hooks and all, or reports that it did not: it
// never reports a pull that no evaluation will ever act on.
func TestPullRacingShutdownReportsWhatHappened(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		release := make(chan struct{})
		cond := newSwitch()
		cond.Set(true)
		var cordFired atomic.Int32
		e, err := andon.NewEvaluator(andon.EvaluatorOptions{
			Rules: []andon.Rule{{Name: "Slow", Severity: andon.Info, Condition: cond,
				Hooks: []andon.Hook{andon.HookFuncs{OnFire: func(context.Context, andon.Alert) { <-release }}}}},
			Cord: andon.CordOptions{Hooks: []andon.Hook{andon.HookFuncs{OnFire: func(context.Context, andon.Alert) { cordFired.Add(1) }}}},
		})
		require.NoError(t, err)

		evaluated := make(chan struct{})
		go func() { e.Evaluate(context.Background()); close(evaluated) }()
		synctest.Wait() // the rule's hook holds the evaluation
		pulled := make(chan bool, 1)
		go func() { pulled <- e.Pull(context.Background(), "smoke", "ann") }()
		synctest.Wait() // the pull waits for the evaluation
		shut := make(chan error, 1)
		go func() { shut <- e.Shutdown(context.Background()) }()
		synctest.Wait() // Shutdown has begun and waits too
		close(release)
		<-evaluated
		require.NoError(t, <-shut)

		ok := <-pulled
		assert.Equal(t, ok, cordFired.Load() == 1, "Pull returned %v; the cord's hook ran %d times", ok, cordFired.Load())
		assert.Equal(t, ok, e.Cord().Pulled, "the cord is pulled only if Pull says so")
		a, _ := e.Alert(e.CordName())
		assert.Equal(t, ok, a.State == andon.Firing, "the cord's alert fires only if Pull says so")
	})
}

// Reset racing Shutdown likewise reports only a reset that resolved the
// cord's alert.
func TestResetRacingShutdownReportsWhatHappened(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		release := make(chan struct{})
		cond := newSwitch()
		cond.Set(true)
		var cordResolved atomic.Int32
		e, err := andon.NewEvaluator(andon.EvaluatorOptions{
			Rules: []andon.Rule{{Name: "Slow", Severity: andon.Info, Condition: cond,
				Hooks: []andon.Hook{andon.HookFuncs{OnFire: func(context.Context, andon.Alert) { <-release }}}}},
			Cord: andon.CordOptions{Hooks: []andon.Hook{andon.HookFuncs{OnResolve: func(context.Context, andon.Alert) { cordResolved.Add(1) }}}},
		})
		require.NoError(t, err)
		require.True(t, e.Pull(context.Background(), "smoke", "ann"))

		evaluated := make(chan struct{})
		go func() { e.Evaluate(context.Background()); close(evaluated) }()
		synctest.Wait()
		reset := make(chan bool, 1)
		go func() { reset <- e.Reset(context.Background()) }()
		synctest.Wait()
		shut := make(chan error, 1)
		go func() { shut <- e.Shutdown(context.Background()) }()
		synctest.Wait()
		close(release)
		<-evaluated
		require.NoError(t, <-shut)

		ok := <-reset
		assert.Equal(t, ok, cordResolved.Load() == 1, "Reset returned %v; the cord's Resolve ran %d times", ok, cordResolved.Load())
		assert.Equal(t, !ok, e.Cord().Pulled, "the cord is released only if Reset says so")
	})
}

// A Pull whose context ends while another evaluation holds the evaluator
// pulls the cord all the same, and the next evaluation fires it.
func TestPullWhoseContextEndsWhileAnEvaluationRuns(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		release := make(chan struct{})
		cond := newSwitch()
		cond.Set(true)
		var cordFired atomic.Int32
		e := newEvaluator(t, andon.EvaluatorOptions{
			Rules: []andon.Rule{{Name: "Slow", Severity: andon.Info, Condition: cond,
				Hooks: []andon.Hook{andon.HookFuncs{OnFire: func(context.Context, andon.Alert) { <-release }}}}},
			Cord: andon.CordOptions{Hooks: []andon.Hook{andon.HookFuncs{OnFire: func(context.Context, andon.Alert) { cordFired.Add(1) }}}},
		})
		evaluated := make(chan struct{})
		go func() { e.Evaluate(context.Background()); close(evaluated) }()
		synctest.Wait()
		ended, cancel := context.WithCancel(context.Background())
		cancel()
		assert.True(t, e.Pull(ended, "smoke", "ann"), "the cord is pulled")
		assert.True(t, e.Cord().Pulled)
		assert.Zero(t, cordFired.Load(), "not yet evaluated")
		close(release)
		<-evaluated
		e.Evaluate(context.Background())
		assert.EqualValues(t, 1, cordFired.Load(), "the next evaluation fires it")
	})
}
