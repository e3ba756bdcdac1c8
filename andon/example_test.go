package andon_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"os"
	"time"

	"github.com/taipattern/taikit/andon"
	"github.com/taipattern/taikit/jidoka"
	"github.com/taipattern/taikit/kaizen"
	"github.com/taipattern/taikit/tai"
)

// A rule on kaizen Stats stops a jidoka Line when it fires and restarts
// it when it resolves.
func ExampleStopLine() {
	ctx := context.Background()
	stats, _ := kaizen.NewStats(kaizen.StatsOptions{}) // keeps 1m, 5m, 1h
	line, _ := jidoka.NewLine(jidoka.LineOptions{Name: "checkout"})

	ev, err := andon.NewEvaluator(andon.EvaluatorOptions{
		Rules: []andon.Rule{{
			Name:       "HighErrorRate",
			Severity:   andon.Page,
			Condition:  andon.ErrorRate(stats, "payment", 5*time.Minute, 0.05),
			MinSamples: 10,
			Summary:    "payment errors at {{ $value | humanizePercentage }}",
			Hooks:      []andon.Hook{andon.StopLine(line)},
		}},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer ev.Shutdown(ctx)

	record := func(n int, o tai.Outcome) {
		for range n {
			// A record is observed once its signal has ended: it began
			// its Duration ago. (One that ends in the future counts from
			// then, and may fall outside a window that ends now.)
			stats.Observe(ctx, tai.Record{Kind: "payment", Outcome: o, Start: time.Now().Add(-20 * time.Millisecond), Duration: 20 * time.Millisecond})
		}
	}
	record(18, tai.Succeeded)
	record(2, tai.Failed) // 10% errors
	ev.Evaluate(ctx)
	st := line.Status()
	fmt.Println("stopped:", st.Stopped, "-", st.Reason)

	record(180, tai.Succeeded) // 1% errors
	ev.Evaluate(ctx)
	fmt.Println("stopped:", line.Status().Stopped)
	// Output:
	// stopped: true - andon: HighErrorRate: payment errors at 10%
	// stopped: false
}

// Rules follow Prometheus: a rule is pending until its condition has held
// For, then fires; KeepFiringFor rides out a short recovery.
func ExampleEvaluator_EvaluateAt() {
	ctx := context.Background()
	fraud := 0.03
	ev, _ := andon.NewEvaluator(andon.EvaluatorOptions{Rules: []andon.Rule{{
		Name:          "HighFraudRate",
		Severity:      andon.Page,
		For:           2 * time.Minute,
		KeepFiringFor: 5 * time.Minute,
		Condition: andon.ConditionFunc(func(context.Context, time.Time) (andon.Measurement, error) {
			return andon.Measurement{Active: fraud > 0.02, Value: fraud, Threshold: 0.02, Unit: andon.UnitRatio, Samples: 500}, nil
		}),
	}}})
	defer ev.Shutdown(ctx)

	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	for _, step := range []struct {
		at    time.Duration
		fraud float64
	}{{0, 0.03}, {time.Minute, 0.03}, {2 * time.Minute, 0.03}, {3 * time.Minute, 0.01}, {8 * time.Minute, 0.01}} {
		fraud = step.fraud
		for _, tr := range ev.EvaluateAt(ctx, t0.Add(step.at)) {
			fmt.Printf("%v %s → %s\n", step.at, tr.From, tr.To)
		}
	}
	// Output:
	// 0s inactive → pending
	// 2m0s pending → firing
	// 8m0s firing → resolved
}

// SLO burn-rate rules need a Stats that keeps every window of the recipe.
func ExampleBurnRate() {
	ctx := context.Background()
	stats, _ := kaizen.NewStats(kaizen.StatsOptions{
		Windows: andon.BurnWindowsOf(andon.PageBurnWindows(), andon.TicketBurnWindows()),
	})
	slo := andon.SLO{Name: "payment-availability", Kind: "payment", Objective: 0.999}
	ev, err := andon.NewEvaluator(andon.EvaluatorOptions{Rules: []andon.Rule{
		{Name: "PaymentBudgetBurn", Severity: andon.Page, Condition: andon.BurnRate(stats, slo, andon.PageBurnWindows()...)},
		{Name: "PaymentBudgetBurnSlow", Severity: andon.Ticket, Condition: andon.BurnRate(stats, slo, andon.TicketBurnWindows()...)},
	}})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer ev.Shutdown(ctx)
	fmt.Println(stats.Windows())

	// A Stats without the windows is refused, naming the missing one.
	short, _ := kaizen.NewStats(kaizen.StatsOptions{})
	_, err = andon.NewEvaluator(andon.EvaluatorOptions{Rules: []andon.Rule{
		{Name: "PaymentBudgetBurn", Severity: andon.Page, Condition: andon.BurnRate(short, slo, andon.PageBurnWindows()...)},
	}})
	fmt.Println(err)
	// Output:
	// [5m0s 30m0s 1h0m0s 2h0m0s 6h0m0s 24h0m0s 72h0m0s]
	// andon: rule "PaymentBudgetBurn": Rule.Condition: window 6h is not kept by the Stats (it keeps 1m, 5m, 1h); add it to kaizen.StatsOptions.Windows
}

// Anyone can pull the cord: it fires at once and can stop the line.
func ExampleEvaluator_Pull() {
	ctx := context.Background()
	line, _ := jidoka.NewLine(jidoka.LineOptions{Name: "assembly"})
	ev, _ := andon.NewEvaluator(andon.EvaluatorOptions{Cord: andon.CordOptions{Hooks: []andon.Hook{andon.StopLine(line)}}})
	defer ev.Shutdown(ctx)

	ev.Pull(ctx, "smoke at station 3", "alice")
	a, _ := ev.Alert(ev.CordName())
	fmt.Println(a.State, "-", a.Annotations["summary"])
	fmt.Println("line stopped:", line.Status().Stopped)

	ev.Reset(ctx)
	fmt.Println("line stopped:", line.Status().Stopped)
	// Output:
	// firing - cord pulled by alice: smoke at station 3
	// line stopped: true
	// line stopped: false
}

// The board is an http.Handler; mount it and open Prefix+"/" in a
// browser. Its JSON is at Prefix+"/api/state".
func ExampleBoard() {
	ctx := context.Background()
	line, _ := jidoka.NewLine(jidoka.LineOptions{Name: "checkout"})
	ev, _ := andon.NewEvaluator(andon.EvaluatorOptions{Cord: andon.CordOptions{Hooks: []andon.Hook{andon.StopLine(line)}}})
	defer ev.Shutdown(ctx)
	board, _ := andon.NewBoard(ev, andon.BoardOptions{Prefix: "/andon", Title: "Checkout", Lines: []andon.Line{line}})
	defer board.Shutdown(ctx)
	// http.Handle("/andon/", board)

	ev.Pull(ctx, "scanner down", "bob")
	rec := httptest.NewRecorder()
	board.ServeHTTP(rec, httptest.NewRequest("GET", "/andon/api/state", nil))
	var st andon.BoardState
	_ = json.Unmarshal(rec.Body.Bytes(), &st)
	fmt.Println(st.Title, st.Cord.Pulled, st.Cord.Who, st.Lines[0].Stopped)
	// Output: Checkout true bob true
}

// The same rules, exported for a Prometheus server that scrapes
// kaizenprom.Metrics.
func ExamplePrometheusRules() {
	stats, _ := kaizen.NewStats(kaizen.StatsOptions{})
	rules := []andon.Rule{{
		Name:      "HighFraudRate",
		Severity:  andon.Page,
		For:       2 * time.Minute,
		Condition: andon.VerdictRate(stats, "payment", 5*time.Minute, 0.02, tai.Deny),
		Summary:   "fraud rate {{ $value | humanizePercentage }}",
	}}
	if err := andon.PrometheusRules(os.Stdout, "payment", rules, andon.ExportOptions{}); err != nil {
		fmt.Println(err)
	}
	// Output:
	// groups:
	//   - name: "payment"
	//     rules:
	//       - alert: "HighFraudRate"
	//         expr: "sum(rate(taikit_decisions_total{kind=\"payment\",verdict=\"deny\"}[5m])) / sum(rate(taikit_decisions_total{kind=\"payment\"}[5m])) > 0.02"
	//         for: 2m
	//         labels:
	//           severity: "page"
	//         annotations:
	//           summary: "fraud rate {{ $value | humanizePercentage }}"
}

// Notifiers get alerts through a queue of their own; Flush waits for
// delivery.
func ExampleSlogNotifier() {
	ctx := context.Background()
	logger := slog.New(slog.NewTextHandler(os.Stdout, &slog.HandlerOptions{
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey && len(groups) == 0 {
				return slog.Attr{} // keep the output stable
			}
			return a
		},
	}))
	ev, _ := andon.NewEvaluator(andon.EvaluatorOptions{
		Notifiers: []andon.Notifier{andon.SlogNotifier(logger)},
		Rules: []andon.Rule{{Name: "DiskFull", Severity: andon.Ticket,
			Condition: andon.ConditionFunc(func(context.Context, time.Time) (andon.Measurement, error) {
				return andon.Measurement{Active: true, Value: 0.97, Threshold: 0.9, Unit: andon.UnitRatio, Samples: 1}, nil
			})}},
	})
	defer ev.Shutdown(ctx)
	ev.EvaluateAt(ctx, time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))
	_ = ev.Flush(ctx)
	fmt.Printf("%+v\n", ev.NotifierStats()[0])
	// Output:
	// level=WARN msg="andon: alert firing" alertname=DiskFull severity=ticket state=firing value=97% summary="DiskFull is 97% (threshold 90%)" since=2026-03-01T12:00:00.000Z labels.alertname=DiskFull labels.severity=ticket
	// {Name:slog Sent:1 Failed:0 Dropped:0 Retries:0 Queued:0}
}
