package tai_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/taipattern/taikit/tai"
)

type transfer struct {
	Amount  float64
	Country string
}

func Example() {
	policy := tai.PolicyFunc[transfer](func(_ context.Context, s tai.Signal[transfer]) (tai.Decision, error) {
		if s.Payload.Amount > 5000 {
			return tai.Decision{Verdict: tai.Deny, Policy: "amount", Reason: "over 5000"}, nil
		}
		return tai.Decision{Verdict: tai.Allow, Policy: "amount"}, nil
	})
	action := tai.ActionFunc[transfer, string](func(_ context.Context, s tai.Signal[transfer]) (string, error) {
		return fmt.Sprintf("sent %.2f", s.Payload.Amount), nil
	})
	p, err := tai.New(policy, action)
	if err != nil {
		panic(err)
	}

	for _, amount := range []float64{120, 9000} {
		res, err := p.Process(context.Background(), tai.NewSignal("transfer", "cust_1", transfer{Amount: amount}))
		switch tai.OutcomeOf(err) {
		case tai.Succeeded:
			fmt.Println(res.Value)
		case tai.Denied:
			fmt.Println("denied:", res.Decision.Reason)
		}
	}
	// Output:
	// sent 120.00
	// denied: over 5000
}

func ExampleNewScored() {
	fraud, err := tai.NewScored(tai.ScoredOptions{Name: "fraud", Review: 0.3, Deny: 0.5},
		tai.Rule[transfer]{Name: "amount", Weight: 0.4, Check: func(_ context.Context, s tai.Signal[transfer]) (float64, string, error) {
			if s.Payload.Amount > 5000 {
				return 1, "amount over 5000", nil
			}
			return 0, "", nil
		}},
		tai.Rule[transfer]{Name: "country", Weight: 0.3, Check: func(_ context.Context, s tai.Signal[transfer]) (float64, string, error) {
			if s.Payload.Country == "XX" {
				return 1, "high-risk country", nil
			}
			return 0, "", nil
		}},
	)
	if err != nil {
		panic(err)
	}
	for _, t := range []transfer{{100, "DE"}, {9000, "DE"}, {9000, "XX"}} {
		d, _ := fraud.Evaluate(context.Background(), tai.NewSignal("transfer", "cust_1", t))
		fmt.Println(strings.TrimSpace(fmt.Sprintf("%-6s score=%.1f rules=%d %s", d.Verdict, d.Score, len(d.Contributions), d.Reason)))
	}
	// Output:
	// allow  score=0.0 rules=0
	// review score=0.4 rules=1 amount over 5000
	// deny   score=0.7 rules=2 amount over 5000
}

func ExampleAll() {
	blacklist := tai.PolicyFunc[transfer](func(_ context.Context, s tai.Signal[transfer]) (tai.Decision, error) {
		if s.Key == "cust_banned" {
			return tai.Decision{Verdict: tai.Deny, Policy: "blacklist", Reason: "customer is blacklisted"}, nil
		}
		return tai.Decision{Verdict: tai.Allow, Policy: "blacklist"}, nil
	})
	limit := tai.PolicyFunc[transfer](func(_ context.Context, s tai.Signal[transfer]) (tai.Decision, error) {
		if s.Payload.Amount > 1000 {
			return tai.Decision{Verdict: tai.Review, Policy: "limit", Reason: "large transfer"}, nil
		}
		return tai.Decision{Verdict: tai.Allow, Policy: "limit"}, nil
	})
	both := tai.All(blacklist, limit)
	for _, key := range []string{"cust_1", "cust_banned"} {
		d, _ := both.Evaluate(context.Background(), tai.NewSignal("transfer", key, transfer{Amount: 2000}))
		fmt.Println(key, d.Verdict, d.Policy, d.Reason)
	}
	// Output:
	// cust_1 review limit large transfer
	// cust_banned deny blacklist customer is blacklisted
}

func ExampleOutcomeOf() {
	errLimited := errors.New("too many requests")
	gate := tai.GateFunc(func(context.Context, string) error { return errLimited })
	p, _ := tai.New(
		tai.PolicyFunc[int](func(context.Context, tai.Signal[int]) (tai.Decision, error) {
			return tai.Decision{Verdict: tai.Allow}, nil
		}),
		tai.ActionFunc[int, int](func(context.Context, tai.Signal[int]) (int, error) { return 1, nil }),
		tai.WithGates(gate))
	_, err := p.Process(context.Background(), tai.NewSignal("job", "k", 1))
	fmt.Println(tai.OutcomeOf(err), errors.Is(err, errLimited))
	// Output: rejected true
}

func ExampleWithObservers() {
	count := map[tai.Outcome]int{}
	observer := tai.ObserverFunc(func(_ context.Context, r tai.Record) { count[r.Outcome]++ })
	p, _ := tai.New(
		tai.PolicyFunc[int](func(_ context.Context, s tai.Signal[int]) (tai.Decision, error) {
			if s.Payload < 0 {
				return tai.Decision{Verdict: tai.Deny, Reason: "negative"}, nil
			}
			return tai.Decision{Verdict: tai.Allow}, nil
		}),
		tai.ActionFunc[int, int](func(_ context.Context, s tai.Signal[int]) (int, error) { return s.Payload, nil }),
		tai.WithObservers(observer))
	for _, v := range []int{1, -1, 2} {
		_, _ = p.Process(context.Background(), tai.NewSignal("n", "k", v))
	}
	fmt.Println(count[tai.Succeeded], "succeeded,", count[tai.Denied], "denied")
	// Output: 2 succeeded, 1 denied
}

// failureBudget is a guard that admits calls while fewer than max have
// failed. It has Allow and a done, so the pipeline calls it before and after
// the action instead of wrapping the action in it. (Kept simple for the
// example: it is not safe for concurrent use; jidoka.Breaker is the real
// thing.)
type failureBudget struct {
	max, failed int
}

func (g *failureBudget) Allow(context.Context) (func(error), error) {
	if g.failed >= g.max {
		return nil, errors.New("failure budget spent")
	}
	return g.done, nil
}

func (g *failureBudget) done(err error) {
	if err != nil {
		g.failed++
	}
}

// Do is the same guard for callers that wrap.
func (g *failureBudget) Do(ctx context.Context, fn func(context.Context) error) error {
	return tai.DoTwoStep(ctx, g, fn)
}

func ExampleTwoStepGuard() {
	budget := &failureBudget{max: 2}
	var _ tai.TwoStepGuard = budget
	p, _ := tai.New(
		tai.PolicyFunc[int](func(context.Context, tai.Signal[int]) (tai.Decision, error) {
			return tai.Decision{Verdict: tai.Allow}, nil
		}),
		tai.ActionFunc[int, int](func(context.Context, tai.Signal[int]) (int, error) {
			return 0, errors.New("gateway down")
		}),
		tai.WithGuards(budget))
	for i := range 3 {
		_, err := p.Process(context.Background(), tai.NewSignal("charge", "cust_1", i))
		fmt.Println(tai.OutcomeOf(err), err)
	}
	// Output:
	// failed gateway down
	// failed gateway down
	// rejected tai: rejected at action: failure budget spent
}

// Two guards written as functions: one gives the action a deadline, the
// other caps how many actions run at once. A guard must not return before
// the action it started has returned, so the deadline works through the
// action's context: the action has to honour ctx.
func ExampleGuardFunc() {
	deadline := tai.GuardFunc(func(ctx context.Context, fn func(context.Context) error) error {
		ctx, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
		defer cancel()
		return fn(ctx)
	})
	slots := make(chan struct{}, 2)
	capped := tai.GuardFunc(func(ctx context.Context, fn func(context.Context) error) error {
		select {
		case slots <- struct{}{}:
			defer func() { <-slots }()
			return fn(ctx)
		default:
			return errors.New("too many charges running")
		}
	})
	slowGateway := tai.ActionFunc[int, string](func(ctx context.Context, _ tai.Signal[int]) (string, error) {
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(time.Minute):
			return "charged", nil
		}
	})
	p, _ := tai.New(
		tai.PolicyFunc[int](func(context.Context, tai.Signal[int]) (tai.Decision, error) {
			return tai.Decision{Verdict: tai.Allow}, nil
		}),
		slowGateway,
		tai.WithGuards(capped, deadline))

	_, err := p.Process(context.Background(), tai.NewSignal("charge", "cust_1", 1))
	fmt.Println(tai.OutcomeOf(err), errors.Is(err, context.DeadlineExceeded))

	slots <- struct{}{} // two charges are running elsewhere
	slots <- struct{}{}
	_, err = p.Process(context.Background(), tai.NewSignal("charge", "cust_1", 2))
	fmt.Println(tai.OutcomeOf(err), err)
	// Output:
	// failed true
	// rejected tai: rejected at action: too many charges running
}
