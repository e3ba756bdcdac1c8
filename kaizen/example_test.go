package kaizen_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log"
	"strings"
	"time"

	"github.com/taipattern/taikit/kaizen"
	"github.com/taipattern/taikit/tai"
)

// order is the payload of the example pipelines.
type order struct {
	Amount float64
}

var errGateway = errors.New("gateway down")

// examplePipeline returns a pipeline that denies amounts over 1000 and
// fails the action for amount 13.
func examplePipeline(opts ...tai.Option) *tai.Pipeline[order, string] {
	policy := tai.Named("amount", tai.PolicyFunc[order](func(_ context.Context, s tai.Signal[order]) (tai.Decision, error) {
		if s.Payload.Amount > 1000 {
			return tai.Decision{Verdict: tai.Deny, Reason: "amount over 1000"}, nil
		}
		return tai.Decision{Verdict: tai.Allow}, nil
	}))
	action := tai.ActionFunc[order, string](func(_ context.Context, s tai.Signal[order]) (string, error) {
		if s.Payload.Amount == 13 {
			return "", errGateway
		}
		return "charged", nil
	})
	p, err := tai.New(policy, action, opts...)
	if err != nil {
		log.Fatal(err)
	}
	return p
}

func processAll(p *tai.Pipeline[order, string], amounts ...float64) {
	for i, a := range amounts {
		_, _ = p.Process(context.Background(), tai.Signal[order]{
			ID: fmt.Sprintf("pay-%d", i+1), Kind: "payment", Key: "cust_1", Payload: order{Amount: a}})
	}
}

func ExampleStats() {
	stats, err := kaizen.NewStats(kaizen.StatsOptions{Windows: []time.Duration{time.Minute, 5 * time.Minute}})
	if err != nil {
		log.Fatal(err)
	}
	p := examplePipeline(tai.WithObservers(stats))
	processAll(p, 10, 20, 30, 5000, 13)

	// Serve it as JSON with http.Handle("/stats", stats); andon rules read
	// the windows directly.
	w, ok := stats.Window("payment", 5*time.Minute)
	fmt.Println(ok, w.Current.Total, w.Current.Outcomes)
	fmt.Printf("success %.2f, errors %.2f, not served %.2f\n",
		w.Current.SuccessRate, w.Current.Ratio(tai.Failed), w.Current.Ratio(tai.Failed, tai.Rejected, tai.Denied))
	fmt.Println("trend:", w.Trend.ErrorRate.Direction, "(nothing to compare with yet)")
	fmt.Println("p99 measured:", w.Current.P99 > 0)
	// Output:
	// true 5 {3 1 0 1}
	// success 0.60, errors 0.20, not served 0.40
	// trend: unknown (nothing to compare with yet)
	// p99 measured: true
}

func ExampleNewAudit() {
	var file bytes.Buffer // an *os.File in a service
	audit, err := kaizen.NewAudit(&file, kaizen.AuditOptions{
		Redact: func(e *kaizen.AuditEntry) { e.Key = "cust_***" },
	})
	if err != nil {
		log.Fatal(err)
	}
	p := examplePipeline(tai.WithObservers(audit))
	processAll(p, 10, 5000)
	if err := audit.Shutdown(context.Background()); err != nil {
		log.Fatal(err)
	}

	for _, line := range strings.Split(strings.TrimSpace(file.String()), "\n") {
		// Show the stable part of each line.
		fmt.Println(line[strings.Index(line, `"id"`):strings.Index(line, `,"error"`)])
	}
	fmt.Println("verify:", kaizen.VerifyAudit(&file))
	// Output:
	// "id":"pay-1","kind":"payment","key":"cust_***","outcome":"succeeded","decision":{"verdict":"allow","policy":"amount","reason":"","score":0}
	// "id":"pay-2","kind":"payment","key":"cust_***","outcome":"denied","decision":{"verdict":"deny","policy":"amount","reason":"amount over 1000","score":0}
	// verify: <nil>
}

func ExampleVerifyAudit() {
	var file bytes.Buffer
	audit, err := kaizen.NewAudit(&file, kaizen.AuditOptions{})
	if err != nil {
		log.Fatal(err)
	}
	p := examplePipeline(tai.WithObservers(audit))
	processAll(p, 10, 5000, 20)
	if err := audit.Shutdown(context.Background()); err != nil {
		log.Fatal(err)
	}

	// Someone turns the denial into a success.
	forged := strings.Replace(file.String(), `"outcome":"denied"`, `"outcome":"succeeded"`, 1)
	fmt.Println(kaizen.VerifyAudit(strings.NewReader(forged)))

	// Someone deletes the first line.
	lines := strings.SplitAfter(file.String(), "\n")
	fmt.Println(kaizen.VerifyAudit(strings.NewReader(strings.Join(lines[1:], ""))))
	// Output:
	// kaizen: audit line 2: edited: its hash does not match its content
	// kaizen: audit line 1: its prev hash is not the genesis hash: the trail does not start here
}
