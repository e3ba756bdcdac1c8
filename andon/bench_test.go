package andon_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/taipattern/taikit/andon"
	"github.com/taipattern/taikit/kaizen"
	"github.com/taipattern/taikit/tai"
)

var nopNotifier = notifierFunc(func(context.Context, []andon.Alert) error { return nil })

// BenchmarkEvaluate measures one evaluation of ten Stats rules (and the
// cord) with a notifier attached, steady state (nothing changes).
func BenchmarkEvaluate(b *testing.B) {
	stats, err := kaizen.NewStats(kaizen.StatsOptions{Windows: []time.Duration{time.Minute, 5 * time.Minute}})
	if err != nil {
		b.Fatal(err)
	}
	for k := range 10 {
		observe(stats, fmt.Sprint("kind", k), 100, tai.Succeeded, tai.Allow, time.Millisecond)
	}
	var rules []andon.Rule
	for k := range 10 {
		rules = append(rules, andon.Rule{Name: fmt.Sprint("R", k), Severity: andon.Page,
			Condition: andon.ErrorRate(stats, fmt.Sprint("kind", k), 5*time.Minute, 0.05)})
	}
	e, err := andon.NewEvaluator(andon.EvaluatorOptions{Rules: rules, Notifiers: []andon.Notifier{nopNotifier}})
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _ = e.Shutdown(context.Background()) }()
	ctx := context.Background()
	now := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		e.EvaluateAt(ctx, now)
	}
}

// BenchmarkTransition measures an evaluation that fires or resolves a
// rule, running a hook and queuing a notification.
func BenchmarkTransition(b *testing.B) {
	cond := newSwitch()
	// Evaluation outruns delivery here, so some notifications are
	// dropped (and logged, to nowhere): that is the bounded queue at work.
	e, err := andon.NewEvaluator(andon.EvaluatorOptions{Notifiers: []andon.Notifier{nopNotifier}, Logger: discardLogger(),
		Rules: []andon.Rule{{Name: "R", Severity: andon.Page, Condition: cond, Summary: "errors {{ $value | humanizePercentage }}",
			Hooks: []andon.Hook{andon.StopLine(newLine("l"))}}}})
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _ = e.Shutdown(context.Background()) }()
	ctx := context.Background()
	i := 0
	b.ReportAllocs()
	for b.Loop() {
		i++
		cond.Set(i%2 == 0)
		e.EvaluateAt(ctx, t0.Add(time.Duration(i)*time.Second))
	}
}

// BenchmarkBoardState measures what the board's state costs with 200
// rules, each with its recent values, and a long history of which the
// board shows the default 20 transitions.
func BenchmarkBoardState(b *testing.B) {
	conds := make([]*switchCond, 200)
	rules := make([]andon.Rule, len(conds))
	for i := range conds {
		conds[i] = newSwitch()
		rules[i] = andon.Rule{Name: fmt.Sprint("R", i), Severity: andon.Page, Condition: conds[i]}
	}
	e, err := andon.NewEvaluator(andon.EvaluatorOptions{Rules: rules, HistorySize: 1 << 16, Logger: discardLogger()})
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _ = e.Shutdown(context.Background()) }()
	ctx := context.Background()
	for i := range 1 << 9 {
		for _, c := range conds {
			c.Set(i%2 == 0)
		}
		e.EvaluateAt(ctx, t0.Add(time.Duration(i)*time.Second))
	}
	board, err := andon.NewBoard(e, andon.BoardOptions{})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		_ = board.State()
	}
}

// BenchmarkBoardStateJSON measures encoding the state of
// BenchmarkBoardState, as each live page's event does.
func BenchmarkBoardStateJSON(b *testing.B) {
	conds := make([]*switchCond, 200)
	rules := make([]andon.Rule, len(conds))
	for i := range conds {
		conds[i] = newSwitch()
		rules[i] = andon.Rule{Name: fmt.Sprint("R", i), Severity: andon.Page, Condition: conds[i]}
	}
	e, err := andon.NewEvaluator(andon.EvaluatorOptions{Rules: rules, Logger: discardLogger()})
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _ = e.Shutdown(context.Background()) }()
	for i := range 60 {
		e.EvaluateAt(context.Background(), t0.Add(time.Duration(i)*time.Second))
	}
	board, err := andon.NewBoard(e, andon.BoardOptions{})
	if err != nil {
		b.Fatal(err)
	}
	st := board.State()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := json.Marshal(st); err != nil {
			b.Fatal(err)
		}
	}
}
