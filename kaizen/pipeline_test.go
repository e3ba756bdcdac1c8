package kaizen_test

import (
	"context"
	"errors"
	"strings"

	"github.com/taipattern/taikit/tai"
)

// order is the payload of the test pipelines.
type order struct {
	Amount float64
}

var errGateway = errors.New("gateway down")

// errLimited is a gate's error type, as a rate limiter would return.
type errLimited struct{}

func (errLimited) Error() string { return "limited" }

// testPipeline builds a payment-like pipeline: a gate that rejects key
// "blocked", a scored policy (amount, velocity) inside All with a named
// allow-list check, and an action that fails for amount 13.
func testPipeline(opts ...tai.Option) (*tai.Pipeline[order, string], error) {
	gate := namedGate{name: "limit", fn: func(_ context.Context, key string) error {
		if key == "blocked" {
			return errLimited{}
		}
		return nil
	}}
	scored, err := tai.NewScored(tai.ScoredConfig{Name: "fraud", Deny: 0.5},
		tai.Rule[order]{Name: "amount", Weight: 0.6, Check: func(_ context.Context, s tai.Signal[order]) (float64, string, error) {
			if s.Payload.Amount > 5000 {
				return 1, "amount over 5000", nil
			}
			return 0, "", nil
		}},
		tai.Rule[order]{Name: "velocity", Weight: 0.4, Check: func(_ context.Context, s tai.Signal[order]) (float64, string, error) {
			return 0.1, "2 payments this minute", nil
		}},
	)
	if err != nil {
		return nil, err
	}
	allowList := tai.Named("allowlist", tai.PolicyFunc[order](func(_ context.Context, s tai.Signal[order]) (tai.Decision, error) {
		if strings.HasPrefix(s.Key, "banned") {
			return tai.Decision{Verdict: tai.Deny, Reason: "banned"}, nil
		}
		return tai.Decision{Verdict: tai.Allow}, nil
	}))
	action := tai.ActionFunc[order, string](func(_ context.Context, s tai.Signal[order]) (string, error) {
		if s.Payload.Amount == 13 {
			return "", errGateway
		}
		return "ok", nil
	})
	opts = append([]tai.Option{tai.WithGates(gate)}, opts...)
	return tai.New(tai.All[order](allowList, scored), action, opts...)
}

type namedGate struct {
	name string
	fn   func(context.Context, string) error
}

func (g namedGate) Name() string                                { return g.name }
func (g namedGate) Admit(ctx context.Context, key string) error { return g.fn(ctx, key) }

// signalsFor returns one signal of each outcome: succeeded, denied by the
// score, denied by the allow-list, rejected by the gate, failed.
func signalsFor() []tai.Signal[order] {
	return []tai.Signal[order]{
		{ID: "s1", Kind: "payment", Key: "cust_1", Payload: order{Amount: 10}},
		{ID: "s2", Kind: "payment", Key: "cust_2", Payload: order{Amount: 9000}},
		{ID: "s3", Kind: "payment", Key: "banned_3", Payload: order{Amount: 10}},
		{ID: "s4", Kind: "payment", Key: "blocked", Payload: order{Amount: 10}},
		{ID: "s5", Kind: "payment", Key: "cust_5", Payload: order{Amount: 13}},
	}
}
