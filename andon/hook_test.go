package andon_test

import (
	"context"
	"errors"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/andon"
)

// waitingHook is a hook that waits, on Fire, until its context ends or
// the test releases it, and keeps the cause its context ended with.
type waitingHook struct {
	release chan struct{}
	causes  chan error
}

func newWaitingHook(t *testing.T) *waitingHook {
	h := &waitingHook{release: make(chan struct{}), causes: make(chan error, 8)}
	t.Cleanup(h.Release) // after the evaluator's Shutdown (cleanups run last first)
	return h
}

func (h *waitingHook) Release() {
	select {
	case <-h.release:
	default:
		close(h.release)
	}
}

func (h *waitingHook) Fire(ctx context.Context, _ andon.Alert) {
	select {
	case <-ctx.Done():
		h.causes <- context.Cause(ctx)
	case <-h.release:
		h.causes <- nil
	}
}

func (*waitingHook) Resolve(context.Context, andon.Alert) {}

// TestHookContextEndsAtEvaluationTimeout: a hook is given a context that
// ends EvaluationTimeout after it is called, whatever the caller's
// context: a hook that waits on it (a request to a server that does not
// answer) returns then, and the evaluation, a pull of the cord and
// Shutdown end. The hooks were given the caller's context, which for Run
// or a Background context never ends: the evaluation, and every one
// after it, the cord's pulls and Shutdown waited for good.
func TestHookContextEndsAtEvaluationTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		hook, cond := newWaitingHook(t), newSwitch()
		cond.Set(true)
		e := newEvaluator(t, andon.EvaluatorOptions{Interval: time.Hour, EvaluationTimeout: time.Second,
			Logger: discardLogger(), Hooks: []andon.Hook{hook},
			Rules: []andon.Rule{{Name: "HighErrorRate", Severity: andon.Page, Condition: cond}}})
		ended := func(what string, call func()) {
			t.Helper()
			start := time.Now()
			done := make(chan struct{})
			go func() {
				defer close(done)
				call()
			}()
			time.Sleep(time.Second)
			synctest.Wait()
			select {
			case <-done:
			default:
				hook.Release()
				<-done
				t.Fatalf("%s waits for a hook that waits on its context for good", what)
			}
			assert.Equal(t, time.Second, time.Since(start), what)
			err := <-hook.causes
			require.ErrorIs(t, err, context.DeadlineExceeded, what)
			assert.EqualError(t, err, "context deadline exceeded (EvaluationTimeout 1s)", what)
		}
		ended("Evaluate", func() {
			trs := e.Evaluate(context.Background())
			assert.Len(t, trs, 1)
		})
		a, _ := e.Alert("HighErrorRate")
		assert.Equal(t, andon.Firing, a.State)
		ended("Pull", func() { assert.True(t, e.Pull(context.Background(), "jam", "dave")) })
		assert.True(t, e.Cord().Pulled)
	})
}

// TestHookContextKeepsTheCallersValuesAndEnd: the hook's context carries
// the caller's values, and ends when the caller's does, before the
// EvaluationTimeout.
func TestHookContextKeepsTheCallersValuesAndEnd(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		type key struct{}
		hook, cond := newWaitingHook(t), newSwitch()
		cond.Set(true)
		var got any
		e := newEvaluator(t, andon.EvaluatorOptions{Interval: time.Hour, EvaluationTimeout: time.Minute,
			Logger: discardLogger(), Hooks: []andon.Hook{andon.HookFuncs{OnFire: func(ctx context.Context, _ andon.Alert) {
				got = ctx.Value(key{})
			}}, hook},
			Rules: []andon.Rule{{Name: "HighErrorRate", Severity: andon.Page, Condition: cond}}})
		stop := errors.New("caller gone")
		ctx, cancel := context.WithCancelCause(context.WithValue(context.Background(), key{}, "v"))
		go func() {
			time.Sleep(time.Second)
			cancel(stop)
		}()
		start := time.Now()
		e.Evaluate(ctx)
		assert.Equal(t, time.Second, time.Since(start))
		assert.Equal(t, "v", got)
		assert.ErrorIs(t, <-hook.causes, stop)
	})
}

// TestHookContextEndsWhenTheHookReturns: the context a hook is given is
// canceled once the hook returns, before EvaluationTimeout: work the hook
// leaves running cannot use it, as the Hook documentation says.
func TestHookContextEndsWhenTheHookReturns(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cond := newSwitch()
		cond.Set(true)
		var kept context.Context
		e := newEvaluator(t, andon.EvaluatorOptions{Interval: time.Hour, EvaluationTimeout: time.Minute,
			Logger: discardLogger(), Hooks: []andon.Hook{andon.HookFuncs{OnFire: func(ctx context.Context, _ andon.Alert) {
				require.NoError(t, ctx.Err())
				kept = ctx
			}}},
			Rules: []andon.Rule{{Name: "HighErrorRate", Severity: andon.Page, Condition: cond}}})
		require.Len(t, e.Evaluate(context.Background()), 1)
		require.NotNil(t, kept)
		assert.ErrorIs(t, kept.Err(), context.Canceled)
		assert.ErrorIs(t, context.Cause(kept), context.Canceled)
	})
}
