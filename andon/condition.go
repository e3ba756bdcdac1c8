package andon

import (
	"context"
	"time"

	"github.com/taipattern/taikit/kaizen"
)

// A Condition measures something and says whether it is wrong. The
// evaluator calls Measure once per evaluation, with the evaluation time,
// each rule's on a goroutine of its own and all of an evaluation's at the
// same time, but never concurrently for one rule. Its context ends with
// the evaluation's: EvaluatorOptions.EvaluationTimeout (Interval by
// default) after the evaluation began, or sooner with the caller's context
// under Evaluate and EvaluateAt, or at Interval under Run. A Measure
// that has not returned a tenth of the time it had (at least 1ms, at most
// 100ms) after that is given up: its rule's evaluation fails with an
// error, the other rules are evaluated and the evaluation ends; while
// it has not returned, later evaluations do not call it again (their
// error for the rule says since when it is out), and what it returns at
// last is dropped. An error leaves the rule's state as it was and is
// shown in Alert.LastError; so does a panic, and a runtime.Goexit, as a
// *PanicError.
//
// The built-in conditions read kaizen Stats (OutcomeRate, ErrorRate,
// VerdictRate, LatencyQuantile, BurnRate) or jidoka state (BreakerOpen,
// LineStopped); ConditionFunc turns a function into one. A Condition that is
// also a fmt.Stringer describes itself in default summaries.
type Condition interface {
	Measure(ctx context.Context, now time.Time) (Measurement, error)
}

// Measurement is what a Condition found at one evaluation.
type Measurement struct {
	// Active reports that the condition holds: the value crossed the
	// threshold, the breaker is open.
	Active bool
	// Value is what was measured and Threshold what it is compared with,
	// both in Unit.
	Value     float64
	Threshold float64
	Unit      Unit
	// Samples is the number of signals Value rests on; the rule compares
	// it with Rule.MinSamples. Conditions on a state (breaker, line, cord)
	// report 1.
	Samples uint64
	// Detail says in words what a number does not ("gateway open: 5
	// consecutive failures"); it may be empty.
	Detail string
}

// ConditionFunc adapts a function to a Condition, as http.HandlerFunc does
// for handlers. A rule with a ConditionFunc can be exported to Prometheus
// only when Rule.Expr gives its PromQL.
type ConditionFunc func(ctx context.Context, now time.Time) (Measurement, error)

// Measure calls f(ctx, now).
func (f ConditionFunc) Measure(ctx context.Context, now time.Time) (Measurement, error) {
	return f(ctx, now)
}

// StatsSource is what the Stats conditions read: a *kaizen.Stats. Window
// returns the statistics of a kind of signal over the last d, and false
// when the kind was never seen (or d is not kept); Windows lists the window
// lengths kept, which rules are checked against when the evaluator is built.
// It must be safe for concurrent use: the conditions of several rules read
// it at the same time.
//
// The Stats reads time.Now, not the time a rule is evaluated at; tests
// that need time to pass run the Stats and the evaluator in a
// testing/synctest bubble.
type StatsSource interface {
	Window(kind string, d time.Duration) (kaizen.WindowStats, bool)
	Windows() []time.Duration
}

// validator is implemented by the built-in conditions that can check
// their configuration when the evaluator is built.
type validator interface {
	validate() error
}

// stateCondition marks the conditions on a state rather than on samples;
// Rule.MinSamples above 1 would keep them from ever firing.
type stateCondition interface {
	onState()
}
