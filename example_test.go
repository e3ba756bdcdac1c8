package taikit_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/taipattern/taikit/andon"
	"github.com/taipattern/taikit/heijunka"
	"github.com/taipattern/taikit/jidoka"
	"github.com/taipattern/taikit/kaizen"
	"github.com/taipattern/taikit/kanban"
	"github.com/taipattern/taikit/tai"
)

type payment struct {
	Amount   float64
	Customer string
}

// Example runs payments through a pipeline that uses every package: a
// scored fraud policy decides (tai), a per-customer limit and a line that
// can be stopped admit (heijunka, jidoka), a breaker guards the gateway
// (jidoka), confirmations are pulled from a queue (kanban), rolling
// stats measure (kaizen), and an alert rule watches the stats and
// stops the line when too many payments fail (andon).
func Example() {
	ctx := context.Background()

	// tai: the policy and the action.
	fraud, err := tai.NewScored(tai.ScoredOptions{Name: "fraud", Review: 0.3, Deny: 0.5},
		tai.Rule[payment]{Name: "amount", Weight: 0.6, Check: func(_ context.Context, s tai.Signal[payment]) (float64, string, error) {
			if s.Payload.Amount > 5000 {
				return 1, "amount over 5000", nil
			}
			return 0, "", nil
		}},
	)
	if err != nil {
		panic(err)
	}
	confirmations, err := kanban.NewMemory[payment](kanban.MemoryOptions{})
	if err != nil {
		panic(err)
	}
	errGatewayDown := errors.New("gateway unavailable")
	charge := tai.ActionFunc[payment, string](func(ctx context.Context, s tai.Signal[payment]) (string, error) {
		if s.Payload.Customer == "cust_unlucky" {
			return "", errGatewayDown
		}
		// kanban: the confirmation waits in a queue for its consumer.
		return "approved", confirmations.Publish(ctx, kanban.Message[payment]{ID: s.ID, Key: s.Key, Payload: s.Payload})
	})

	// heijunka and jidoka: admission and protection.
	perCustomer, err := heijunka.NewKeyed(heijunka.PerMinute(2), heijunka.KeyedOptions{Name: "customer"})
	if err != nil {
		panic(err)
	}
	line, err := jidoka.NewLine(jidoka.LineOptions{Name: "payments"})
	if err != nil {
		panic(err)
	}
	gateway, err := jidoka.NewBreaker(jidoka.BreakerOptions{Name: "gateway", ConsecutiveFailures: 3})
	if err != nil {
		panic(err)
	}

	// kaizen: rolling stats (kaizen/kaizenprom adds Prometheus metrics).
	stats, err := kaizen.NewStats(kaizen.StatsOptions{})
	if err != nil {
		panic(err)
	}

	pipeline, err := tai.New(fraud, charge,
		tai.WithGates(perCustomer, line),
		tai.WithGuards(gateway),
		tai.WithObservers(stats))
	if err != nil {
		panic(err)
	}

	// andon: page when more than 20% of payments fail, and stop the line.
	alerts, err := andon.NewEvaluator(andon.EvaluatorOptions{Rules: []andon.Rule{{
		Name:       "PaymentErrors",
		Severity:   andon.Page,
		Condition:  andon.ErrorRate(stats, "payment", time.Minute, 0.2),
		MinSamples: 5,
		Hooks:      []andon.Hook{andon.StopLine(line)},
	}}})
	if err != nil {
		panic(err)
	}
	defer func() { _ = alerts.Shutdown(ctx) }()

	for _, p := range []payment{
		{99.99, "cust_1"}, {7500, "cust_2"}, {10, "cust_1"}, {20, "cust_1"},
		{10, "cust_unlucky"}, {10, "cust_unlucky"},
	} {
		res, err := pipeline.Process(ctx, tai.NewSignal("payment", p.Customer, p))
		switch tai.OutcomeOf(err) {
		case tai.Succeeded:
			fmt.Printf("%s %.2f: %s\n", p.Customer, p.Amount, res.Value)
		case tai.Denied:
			fmt.Printf("%s %.2f: blocked, %s\n", p.Customer, p.Amount, res.Decision.Reason)
		case tai.Rejected:
			fmt.Printf("%s %.2f: retry in %v\n", p.Customer, p.Amount, tai.RetryAfter(err).Round(time.Second))
		case tai.Failed:
			fmt.Printf("%s %.2f: failed, %v\n", p.Customer, p.Amount, err)
		}
	}

	alerts.Evaluate(ctx)
	stopped, reason := line.Stopped()
	fmt.Println("line stopped:", stopped, "-", strings.TrimPrefix(reason, "andon: "))
	_, err = pipeline.Process(ctx, tai.NewSignal("payment", "cust_3", payment{5, "cust_3"}))
	fmt.Println("next payment:", tai.OutcomeOf(err))

	w, _ := stats.Window("payment", time.Minute)
	fmt.Println("last minute:", w.Current.Total, "payments,", w.Current.Outcomes.Of(tai.Succeeded), "succeeded")

	// kanban: the consumer pulls the two confirmations, one at a time (WIP 1).
	cctx, cancel := context.WithCancel(ctx)
	confirmed := 0
	_ = confirmations.Consume(cctx, func(context.Context, kanban.Delivery[payment]) error {
		if confirmed++; confirmed == 2 {
			cancel()
		}
		return nil
	}, kanban.ConsumeOptions{WIP: 1})
	fmt.Println("confirmed:", confirmed)
	// Output:
	// cust_1 99.99: approved
	// cust_2 7500.00: blocked, amount over 5000
	// cust_1 10.00: approved
	// cust_1 20.00: retry in 30s
	// cust_unlucky 10.00: failed, gateway unavailable
	// cust_unlucky 10.00: failed, gateway unavailable
	// line stopped: true - PaymentErrors: error rate of payment over 1m is 33.3% (threshold 20%)
	// next payment: rejected
	// last minute: 7 payments, 2 succeeded
	// confirmed: 2
}
