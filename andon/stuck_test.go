package andon_test

import (
	"bytes"
	"context"
	"log/slog"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/andon"
)

// stuckCond is a condition that ignores its context: each Measure waits
// until the test releases it, then reports the condition holding.
type stuckCond struct {
	calls   atomic.Int32
	release chan struct{}
}

func newStuck(t *testing.T) *stuckCond {
	s := &stuckCond{release: make(chan struct{})}
	// Before the evaluator's Shutdown, which the test's cleanup runs after.
	t.Cleanup(s.Release)
	return s
}

// Release lets every Measure, the one waiting and the later ones, return.
func (s *stuckCond) Release() {
	select {
	case <-s.release:
	default:
		close(s.release)
	}
}

func (s *stuckCond) Measure(context.Context, time.Time) (andon.Measurement, error) {
	s.calls.Add(1)
	<-s.release
	return andon.Measurement{Active: true, Value: 1, Threshold: 0.5, Samples: 1}, nil
}

// TestRunDoesNotWaitForAStuckCondition: a condition that ignores its
// context and does not return is given up when the evaluation's context
// ends, an error of its rule; the other rules are evaluated then, and at
// every Interval after, the cord is pulled at once, and the condition is
// not called again while it has not returned: its late result is dropped.
// The evaluation waited for it: no rule was evaluated again, and a pull of
// the cord waited for good.
func TestRunDoesNotWaitForAStuckCondition(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		stuck, other, line := newStuck(t), newSwitch(), newLine("checkout")
		other.Set(true)
		var logs bytes.Buffer
		var lmu sync.Mutex
		e := newEvaluator(t, andon.EvaluatorOptions{Interval: time.Minute,
			Logger: slog.New(slog.NewTextHandler(&lockedWriter{w: &logs, mu: &lmu}, nil)),
			Cord:   andon.CordOptions{Hooks: []andon.Hook{andon.StopLine(line)}},
			Rules: []andon.Rule{
				{Name: "Stuck", Severity: andon.Page, Condition: stuck},
				{Name: "Other", Severity: andon.Page, Condition: other},
			}})
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- e.Run(ctx) }()
		defer func() {
			stuck.Release()
			cancel()
			require.ErrorIs(t, <-done, context.Canceled)
		}()
		start := time.Now()

		time.Sleep(time.Minute - time.Nanosecond)
		synctest.Wait()
		o, _ := e.Alert("Other")
		assert.True(t, o.LastEval.IsZero(), "the first evaluation waits for Stuck until its context ends")
		// and a tenth of the Interval, at most 100ms, longer for it to
		// return on its context's end, as one that honours it does.
		time.Sleep(100 * time.Millisecond)
		synctest.Wait()
		o, _ = e.Alert("Other")
		assert.True(t, o.LastEval.IsZero(), "the first evaluation waits for Stuck until its context ends")

		// The first evaluation ends, and the next, due, begins.
		time.Sleep(time.Nanosecond)
		synctest.Wait()
		assert.Equal(t, []andon.Transition{{Rule: "Other", From: andon.Inactive, To: andon.Firing, At: start, Value: 0.1}},
			e.History(), "the other rules are evaluated once Stuck is given up")
		lmu.Lock()
		assert.Contains(t, logs.String(), `msg="andon: condition did not return when its context ended; it is not called again until it does" where="condition of rule Stuck" err="context deadline exceeded"`)
		lmu.Unlock()
		for _, at := range []time.Duration{time.Minute + 100*time.Millisecond, 2 * time.Minute, 3 * time.Minute} {
			time.Sleep(time.Until(start.Add(at)))
			synctest.Wait()
			o, _ = e.Alert("Other")
			assert.True(t, o.LastEval.Equal(start.Add(at)), "every Interval")
			a, _ := e.Alert("Stuck")
			assert.Equal(t, andon.Inactive, a.State)
			assert.Equal(t, "andon: condition of rule Stuck has not returned since its evaluation at "+
				start.Format(time.RFC3339Nano), a.LastError)
		}
		assert.EqualValues(t, 1, stuck.calls.Load(), "not called again while it has not returned")
		lmu.Lock()
		assert.Equal(t, 1, strings.Count(logs.String(), "andon: condition did not return"), "logged once")
		lmu.Unlock()

		pulled := make(chan bool, 1)
		go func() { pulled <- e.Pull(context.Background(), "jam", "dave") }()
		synctest.Wait()
		select {
		case ok := <-pulled:
			assert.True(t, ok)
		default:
			t.Fatal("Pull waits for the stuck condition")
		}
		assert.True(t, line.Status().Stopped, "the cord stops the line")

		// Evaluate skips the condition still out, rather than waiting.
		evaluated := make(chan struct{})
		go func() {
			defer close(evaluated)
			e.Evaluate(context.Background())
		}()
		synctest.Wait()
		select {
		case <-evaluated:
		default:
			t.Fatal("Evaluate waits for the stuck condition")
		}

		// Its late result is dropped; the next evaluation calls it again.
		stuck.Release()
		synctest.Wait()
		a, _ := e.Alert("Stuck")
		assert.Equal(t, andon.Inactive, a.State, "the late result is dropped")
		time.Sleep(time.Minute)
		synctest.Wait()
		a, _ = e.Alert("Stuck")
		assert.Equal(t, andon.Firing, a.State, "measured again once it returned")
		assert.Empty(t, a.LastError)
		assert.EqualValues(t, 2, stuck.calls.Load())
	})
}

// TestEvaluateEndsWithItsContext: Evaluate and EvaluateAt end when their
// context does, whatever a condition does; the condition that has not
// returned is its rule's error, and the other rules are evaluated. They
// waited for it for good.
func TestEvaluateEndsWithItsContext(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		stuck, other := newStuck(t), newSwitch()
		other.Set(true)
		e := newEvaluator(t, andon.EvaluatorOptions{Logger: discardLogger(), Rules: []andon.Rule{
			{Name: "Stuck", Severity: andon.Page, Condition: stuck},
			{Name: "Other", Severity: andon.Page, Condition: other},
		}})
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		start := time.Now()
		trs := e.EvaluateAt(ctx, t0)
		assert.Equal(t, time.Second+100*time.Millisecond, time.Since(start), "ends with its context, and 100ms for the conditions to return")
		require.Len(t, trs, 1)
		assert.Equal(t, "Other", trs[0].Rule)
		a, _ := e.Alert("Stuck")
		assert.Equal(t, "andon: condition of rule Stuck did not return when its context ended: context deadline exceeded", a.LastError)

		ctx, cancel = context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		start = time.Now()
		e.EvaluateAt(ctx, t0.Add(time.Minute))
		assert.Zero(t, time.Since(start), "the condition still out is not waited for")
		a, _ = e.Alert("Stuck")
		assert.Equal(t, "andon: condition of rule Stuck has not returned since its evaluation at "+
			t0.Format(time.RFC3339Nano), a.LastError)
		assert.EqualValues(t, 1, stuck.calls.Load())
	})
}

// TestEvaluateWithoutDeadlineEndsAtItsTimeout: an evaluation whose
// context never ends gives a condition that does not return the
// evaluator's EvaluationTimeout (Interval by default), and its rule an
// error that names the timeout; the other rules are evaluated, and the
// stuck condition is not called again while it is out, so it holds one
// goroutine. Evaluate waited for it for good.
func TestEvaluateWithoutDeadlineEndsAtItsTimeout(t *testing.T) {
	for _, tc := range []struct {
		name     string
		opts     andon.EvaluatorOptions
		timeout  time.Duration
		evaluate func(context.Context, *andon.Evaluator)
	}{
		{"Interval by default", andon.EvaluatorOptions{}, 15 * time.Second,
			func(ctx context.Context, e *andon.Evaluator) { e.Evaluate(ctx) }},
		{"EvaluationTimeout", andon.EvaluatorOptions{Interval: time.Hour, EvaluationTimeout: 2 * time.Second}, 2 * time.Second,
			func(ctx context.Context, e *andon.Evaluator) { e.EvaluateAt(ctx, t0) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				stuck, other := newStuck(t), newSwitch()
				other.Set(true)
				tc.opts.Logger = discardLogger()
				tc.opts.Rules = []andon.Rule{
					{Name: "Stuck", Severity: andon.Page, Condition: stuck},
					{Name: "Other", Severity: andon.Page, Condition: other},
				}
				e := newEvaluator(t, tc.opts)
				ended := func() bool {
					done := make(chan struct{})
					go func() {
						defer close(done)
						tc.evaluate(context.Background(), e)
					}()
					// The timeout, and a tenth of it, at most 100ms, for the
					// conditions to return.
					time.Sleep(tc.timeout + min(tc.timeout/10, 100*time.Millisecond))
					synctest.Wait()
					select {
					case <-done:
						return true
					default:
						return false
					}
				}
				if !ended() {
					stuck.Release()
					t.Fatal("the evaluation waits for the stuck condition for good")
				}
				a, _ := e.Alert("Stuck")
				assert.Equal(t, "andon: condition of rule Stuck did not return when its context ended: "+
					"context deadline exceeded (EvaluationTimeout "+tc.timeout.String()+")", a.LastError)
				o, _ := e.Alert("Other")
				assert.Equal(t, andon.Firing, o.State, "the other rules are evaluated")

				require.True(t, ended(), "the condition still out is not waited for")
				assert.EqualValues(t, 1, stuck.calls.Load(), "one call, one goroutine, while it is out")
			})
		})
	}
}

// TestRunBoundsConditionsByEvaluationTimeout: under Run, an
// EvaluationTimeout shorter than the Interval ends the conditions'
// context, and the evaluation, at it.
func TestRunBoundsConditionsByEvaluationTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		stuck, other := newStuck(t), newSwitch()
		other.Set(true)
		e := newEvaluator(t, andon.EvaluatorOptions{Interval: time.Minute, EvaluationTimeout: 2 * time.Second,
			Logger: discardLogger(), Rules: []andon.Rule{
				{Name: "Stuck", Severity: andon.Page, Condition: stuck},
				{Name: "Other", Severity: andon.Page, Condition: other},
			}})
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- e.Run(ctx) }()
		defer func() {
			stuck.Release()
			cancel()
			require.ErrorIs(t, <-done, context.Canceled)
		}()
		time.Sleep(2*time.Second + 100*time.Millisecond)
		synctest.Wait()
		o, _ := e.Alert("Other")
		assert.Equal(t, andon.Firing, o.State, "the evaluation ends at the EvaluationTimeout")
		a, _ := e.Alert("Stuck")
		assert.Equal(t, "andon: condition of rule Stuck did not return when its context ended: "+
			"context deadline exceeded (EvaluationTimeout 2s)", a.LastError)
	})
}

// TestShutdownDuringAStuckEvaluationEnds: Shutdown with a context that
// never ends, while an evaluation without a deadline waits for a stuck
// condition, returns once the evaluation's timeout has passed: it waited
// for good with the evaluation.
func TestShutdownDuringAStuckEvaluationEnds(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		stuck := newStuck(t)
		e, err := andon.NewEvaluator(andon.EvaluatorOptions{EvaluationTimeout: time.Second, Logger: discardLogger(),
			Rules: []andon.Rule{{Name: "Stuck", Severity: andon.Page, Condition: stuck}}})
		require.NoError(t, err)
		go e.Evaluate(context.Background())
		synctest.Wait()
		start := time.Now()
		shut := make(chan error, 1)
		go func() { shut <- e.Shutdown(context.Background()) }()
		time.Sleep(time.Second + 100*time.Millisecond)
		synctest.Wait()
		select {
		case err := <-shut:
			require.NoError(t, err)
			assert.Equal(t, time.Second+100*time.Millisecond, time.Since(start))
		default:
			stuck.Release()
			require.NoError(t, <-shut)
			t.Fatal("Shutdown waits for the stuck evaluation for good")
		}
	})
}

// nilCause is an error type whose Error method reads its receiver: a nil
// *nilCause panics when its text is read.
type nilCause struct{ msg string }

func (c *nilCause) Error() string { return c.msg }

// panicCause is an error whose Error method panics.
type panicCause struct{}

func (panicCause) Error() string { panic("no text") }

// goexitCause is an error whose Error method ends its goroutine.
type goexitCause struct{}

func (goexitCause) Error() string { runtime.Goexit(); return "" }

// TestStuckConditionWithAnUnprintableCause: a caller's context ended with
// a cause whose text cannot be made (a nil pointer of an error type, an
// Error method that panics or calls runtime.Goexit) gives a condition that does not return an
// error with the context's own text; the evaluation neither panics nor
// crashes the program. The cause's Error method was called unguarded.
func TestStuckConditionWithAnUnprintableCause(t *testing.T) {
	for _, tc := range []struct {
		name  string
		cause error
		want  string
	}{
		{"nil pointer", (*nilCause)(nil), "context canceled"},
		{"panicking Error", panicCause{}, "context canceled"},
		{"Goexit in Error", goexitCause{}, "context canceled"},
		{"plain cause", &nilCause{msg: "shutting down"}, "shutting down"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				stuck := newStuck(t)
				e := newEvaluator(t, andon.EvaluatorOptions{Logger: discardLogger(),
					Rules: []andon.Rule{{Name: "Stuck", Severity: andon.Page, Condition: stuck}}})
				ctx, cancel := context.WithCancelCause(context.Background())
				cancel(tc.cause)
				var panicked any
				func() {
					defer func() { panicked = recover() }()
					e.Evaluate(ctx)
				}()
				require.Nil(t, panicked, "Evaluate panics")
				a, _ := e.Alert("Stuck")
				assert.Equal(t, "andon: condition of rule Stuck did not return when its context ended: "+tc.want, a.LastError)
			})
		})
	}
}
