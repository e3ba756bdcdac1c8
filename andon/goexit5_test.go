package andon_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/andon"
	"github.com/taipattern/taikit/kanban"
)

// A notifier that ends the worker's goroutine with runtime.Goexit (a
// t.FailNow in a test's notifier) fails its batch as a panic does; the
// notifier still hears of later alerts, and Flush and Shutdown return.
func TestNotifierGoexitFailsTheBatch(t *testing.T) {
	synctest.Test(t, testNotifierGoexitFailsTheBatch)
}

func testNotifierGoexitFailsTheBatch(t *testing.T) {
	var calls atomic.Int32
	rec := &recorder{}
	n := notifierFunc(func(ctx context.Context, alerts []andon.Alert) error {
		if calls.Add(1) == 1 {
			runtime.Goexit()
		}
		return rec.Notify(ctx, alerts)
	})
	a, b := newSwitch(), newSwitch()
	var logs bytes.Buffer
	var lmu sync.Mutex
	e, err := andon.NewEvaluator(andon.EvaluatorOptions{Notifiers: []andon.Notifier{n}, Notify: noWait,
		Logger: slog.New(slog.NewTextHandler(&lockedWriter{w: &logs, mu: &lmu}, nil)),
		Rules: []andon.Rule{{Name: "A", Severity: andon.Page, Condition: a},
			{Name: "B", Severity: andon.Page, Condition: b}}})
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	a.Set(true)
	e.EvaluateAt(ctx, t0)
	require.NoError(t, e.Flush(ctx), "Flush returns after the Goexit")
	b.Set(true)
	evaluateAndFlush(t, e, time.Minute)
	require.NoError(t, e.Shutdown(ctx), "Shutdown finds no worker gone missing")

	assert.Equal(t, []string{"B firing"}, rec.events(), "the worker goes on after the Goexit")
	st := e.NotifierStats()[0]
	assert.EqualValues(t, 1, st.Failed, "the batch that ended in Goexit is failed")
	assert.EqualValues(t, 1, st.Sent)
	lmu.Lock()
	assert.Contains(t, logs.String(), "runtime.Goexit")
	lmu.Unlock()
}

// goexitErr is an error whose Error method ends the goroutine with
// runtime.Goexit, as a t.FailNow there does.
type goexitErr struct{}

func (goexitErr) Error() string {
	runtime.Goexit()
	return "unreachable"
}

// A notifier whose error ends the goroutine when it is read, for the log
// line of a batch already counted as failed, has its batch counted as
// failed once, not twice; the worker goes on.
func TestNotifierErrorGoexitCountsTheBatchOnce(t *testing.T) {
	for _, c := range []struct {
		name string
		err  error
		opts andon.NotifyOptions
		want []string // what the receiver gets after the failure
	}{
		{"permanent", kanban.Permanent(goexitErr{}), noWait, []string{"B firing"}},
		// Given up after its last attempt, A is offered again, as after
		// an error read without a Goexit.
		{"last attempt", goexitErr{}, andon.NotifyOptions{MaxAttempts: 1}, []string{"A firing", "B firing"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				rec := &recorder{}
				n := firstCallFails(rec, nil, c.err)
				a, b := newSwitch(), newSwitch()
				var logs bytes.Buffer
				var lmu sync.Mutex
				e, err := andon.NewEvaluator(andon.EvaluatorOptions{Notifiers: []andon.Notifier{n}, Notify: c.opts,
					Logger: slog.New(slog.NewTextHandler(&lockedWriter{w: &logs, mu: &lmu}, nil)),
					Rules: []andon.Rule{{Name: "A", Severity: andon.Page, Condition: a},
						{Name: "B", Severity: andon.Page, Condition: b}}})
				require.NoError(t, err)
				ctx := context.Background()
				a.Set(true)
				evaluateAndFlush(t, e, 0)
				b.Set(true)
				evaluateAndFlush(t, e, time.Minute)
				require.NoError(t, e.Shutdown(ctx))
				st := e.NotifierStats()[0]
				assert.EqualValues(t, 1, st.Failed, "the batch of A is counted as failed once")
				got := rec.events()
				slices.Sort(got)
				assert.Equal(t, c.want, got, "the worker goes on")
				assert.EqualValues(t, len(c.want), st.Sent)
				lmu.Lock()
				assert.Contains(t, logs.String(), "runtime.Goexit")
				lmu.Unlock()
			})
		})
	}
}

// A runtime.Goexit in NotifyOptions.Backoff fails the batch once, and the
// log names the backoff, not the notifier, as a panic there is named.
func TestNotifierBackoffGoexitIsNamed(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := notifierFunc(func(context.Context, []andon.Alert) error { return errors.New("down") })
		a := newSwitch()
		var logs bytes.Buffer
		var lmu sync.Mutex
		e, err := andon.NewEvaluator(andon.EvaluatorOptions{Notifiers: []andon.Notifier{n},
			Notify: andon.NotifyOptions{Backoff: kanban.BackoffFunc(func(int) time.Duration {
				runtime.Goexit()
				return 0
			})},
			Logger: slog.New(slog.NewTextHandler(&lockedWriter{w: &logs, mu: &lmu}, nil)),
			Rules:  []andon.Rule{{Name: "A", Severity: andon.Page, Condition: a}}})
		require.NoError(t, err)
		ctx := context.Background()
		a.Set(true)
		evaluateAndFlush(t, e, 0)
		require.NoError(t, e.Shutdown(ctx))
		st := e.NotifierStats()[0]
		assert.EqualValues(t, 1, st.Failed)
		lmu.Lock()
		assert.Contains(t, logs.String(), "andon: backoff of notifier notifier 0 ended its goroutine with runtime.Goexit")
		lmu.Unlock()
	})
}

// A hook that ends the evaluating goroutine with runtime.Goexit (t.FailNow
// in a test's hook) cannot be stopped from ending it, but the hooks after
// it still run, the notifiers still hear of the evaluation's alerts, and
// the Goexit is logged, as a hook's panic is.
func TestHooksAfterOneThatCallsGoexitStillRun(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var mu sync.Mutex
		var fired []string
		record := andon.HookFuncs{OnFire: func(_ context.Context, a andon.Alert) {
			mu.Lock()
			defer mu.Unlock()
			fired = append(fired, a.Name)
		}}
		exits := andon.HookFuncs{OnFire: func(context.Context, andon.Alert) { runtime.Goexit() }}
		n := &recorder{}
		a, b := newSwitch(), newSwitch()
		var logs bytes.Buffer
		var lmu sync.Mutex
		e, err := andon.NewEvaluator(andon.EvaluatorOptions{Notifiers: []andon.Notifier{n}, Notify: noWait,
			Logger: slog.New(slog.NewTextHandler(&lockedWriter{w: &logs, mu: &lmu}, nil)),
			Rules: []andon.Rule{
				{Name: "A", Severity: andon.Page, Condition: a, Hooks: []andon.Hook{record, exits, exits, record}},
				{Name: "B", Severity: andon.Page, Condition: b, Hooks: []andon.Hook{record}}}})
		require.NoError(t, err)
		ctx := context.Background()
		a.Set(true)
		b.Set(true)
		ended := make(chan struct{})
		go func() {
			defer close(ended)
			e.EvaluateAt(ctx, t0)
			t.Error("EvaluateAt returned after a hook's runtime.Goexit")
		}()
		<-ended
		require.NoError(t, e.Flush(ctx))
		require.NoError(t, e.Shutdown(ctx))
		mu.Lock()
		assert.Equal(t, []string{"A", "A", "B"}, fired, "the hooks after the one that ended its goroutine still run, once")
		mu.Unlock()
		got := n.events()
		slices.Sort(got)
		assert.Equal(t, []string{"A firing", "B firing"}, got, "the notifier hears of the evaluation's alerts")
		lmu.Lock()
		assert.Contains(t, logs.String(), "runtime.Goexit")
		lmu.Unlock()
	})
}

// A hook or a condition that ends its goroutine with runtime.Goexit (a
// t.FailNow in a test's callback) does not end Run, as a panic does not:
// the Goexit is logged and Run goes on evaluating every Interval until
// its context ends, and then returns.
func TestRunGoesOnAfterAGoexit(t *testing.T) {
	for _, in := range []string{"hook", "condition"} {
		t.Run(in, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				var exited atomic.Bool // the callback calls Goexit once
				exitOnce := func() {
					if !exited.Swap(true) {
						runtime.Goexit()
					}
				}
				a := newSwitch()
				rule := andon.Rule{Name: "A", Severity: andon.Page, Condition: a}
				switch in {
				case "hook":
					rule.Hooks = []andon.Hook{andon.HookFuncs{OnFire: func(context.Context, andon.Alert) { exitOnce() }}}
				case "condition":
					rule.Condition = andon.ConditionFunc(func(ctx context.Context, now time.Time) (andon.Measurement, error) {
						exitOnce()
						return a.Measure(ctx, now)
					})
				}
				var logs bytes.Buffer
				var lmu sync.Mutex
				e := newEvaluator(t, andon.EvaluatorOptions{Interval: time.Minute, Rules: []andon.Rule{rule},
					Logger: slog.New(slog.NewTextHandler(&lockedWriter{w: &logs, mu: &lmu}, nil))})
				a.Set(true)
				ctx, cancel := context.WithCancel(context.Background())
				done := make(chan error, 1)
				go func() { done <- e.Run(ctx) }()
				synctest.Wait()
				require.True(t, exited.Load())
				time.Sleep(time.Minute)
				synctest.Wait()
				st, _ := e.Alert("A")
				assert.Equal(t, andon.Firing, st.State, "Run evaluates after the Goexit")
				a.Set(false)
				time.Sleep(time.Minute)
				synctest.Wait()
				st, _ = e.Alert("A")
				assert.Equal(t, andon.Resolved, st.State, "Run goes on evaluating")
				cancel()
				synctest.Wait()
				select {
				case err := <-done:
					assert.ErrorIs(t, err, context.Canceled)
				default:
					t.Fatal("Run did not return when its context ended")
				}
				lmu.Lock()
				assert.Contains(t, logs.String(), "runtime.Goexit")
				lmu.Unlock()
			})
		})
	}
}

// A condition that ends the evaluating goroutine with runtime.Goexit is
// an error of its rule, as a panic is: the evaluation it was part of is
// finished before the goroutine goes on ending, so the other rules are
// evaluated, their hooks run and the notifiers hear of them.
func TestConditionGoexitIsAnError(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		exits := andon.ConditionFunc(func(context.Context, time.Time) (andon.Measurement, error) {
			runtime.Goexit()
			return andon.Measurement{}, nil
		})
		var fired atomic.Int32
		rec := &recorder{}
		b := newSwitch()
		b.Set(true)
		var logs bytes.Buffer
		var lmu sync.Mutex
		e := newEvaluator(t, andon.EvaluatorOptions{Notifiers: []andon.Notifier{rec},
			Logger: slog.New(slog.NewTextHandler(&lockedWriter{w: &logs, mu: &lmu}, nil)),
			Rules: []andon.Rule{
				{Name: "A", Severity: andon.Page, Condition: exits},
				{Name: "B", Severity: andon.Page, Condition: b,
					Hooks: []andon.Hook{andon.HookFuncs{OnFire: func(context.Context, andon.Alert) { fired.Add(1) }}}},
				{Name: "C", Severity: andon.Page, Condition: exits},
			}})
		ctx := context.Background()
		ended := make(chan struct{})
		go func() {
			defer close(ended)
			e.EvaluateAt(ctx, t0)
			t.Error("EvaluateAt returned after a condition's runtime.Goexit")
		}()
		<-ended
		require.NoError(t, e.Flush(ctx))
		for _, name := range []string{"A", "C"} {
			a, _ := e.Alert(name)
			assert.Equal(t, t0, a.LastEval, name)
			assert.Equal(t, "andon: runtime.Goexit in condition of rule "+name, a.LastError)
		}
		b2, _ := e.Alert("B")
		assert.Equal(t, andon.Firing, b2.State, "the rules after it are evaluated")
		assert.EqualValues(t, 1, fired.Load(), "their hooks run")
		assert.Equal(t, []string{"B firing"}, rec.events(), "the notifiers hear of them")
		assert.Len(t, e.History(), 1)
		lmu.Lock()
		assert.Contains(t, logs.String(), "andon: condition called runtime.Goexit")
		lmu.Unlock()
	})
}
