package taikit_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/taipattern/taikit/tai"
)

type payment struct {
	Amount   float64
	Customer string
}

// Example runs payments through a pipeline: a scored fraud policy decides,
// a gateway action charges, and every outcome is mapped in one switch.
func Example() {
	fraud, err := tai.NewScored(tai.ScoredConfig{Name: "fraud", Review: 0.3, Deny: 0.5},
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
	errGatewayDown := errors.New("gateway unavailable")
	charge := tai.ActionFunc[payment, string](func(_ context.Context, s tai.Signal[payment]) (string, error) {
		if s.Payload.Customer == "cust_unlucky" {
			return "", errGatewayDown
		}
		return "approved", nil
	})
	var observed int
	pipeline, err := tai.New(fraud, charge,
		tai.WithObservers(tai.ObserverFunc(func(context.Context, tai.Record) { observed++ })))
	if err != nil {
		panic(err)
	}

	for _, p := range []payment{{99.99, "cust_1"}, {7500, "cust_2"}, {10, "cust_unlucky"}} {
		res, err := pipeline.Process(context.Background(), tai.NewSignal("payment", p.Customer, p))
		switch tai.OutcomeOf(err) {
		case tai.Succeeded:
			fmt.Printf("%s: %s (score %.1f)\n", p.Customer, res.Value, res.Decision.Score)
		case tai.Denied:
			fmt.Printf("%s: blocked, %s (score %.1f)\n", p.Customer, res.Decision.Reason, res.Decision.Score)
		case tai.Rejected:
			fmt.Printf("%s: try again later\n", p.Customer)
		case tai.Failed:
			fmt.Printf("%s: failed, %v\n", p.Customer, err)
		}
	}
	fmt.Println("observed", observed)
	// Output:
	// cust_1: approved (score 0.0)
	// cust_2: blocked, amount over 5000 (score 0.6)
	// cust_unlucky: failed, gateway unavailable
	// observed 3
}
