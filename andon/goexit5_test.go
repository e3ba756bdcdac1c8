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
	e.EvaluateAt(ctx, t0.Add(time.Minute))
	require.NoError(t, e.Flush(ctx))
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
				e.EvaluateAt(ctx, t0)
				require.NoError(t, e.Flush(ctx))
				b.Set(true)
				e.EvaluateAt(ctx, t0.Add(time.Minute))
				require.NoError(t, e.Flush(ctx))
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
		e.EvaluateAt(ctx, t0)
		require.NoError(t, e.Flush(ctx))
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
