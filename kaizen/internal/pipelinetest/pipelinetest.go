// Package pipelinetest builds the payment-like tai pipeline that the tests
// of kaizen and its adapters run signals through, so each of them checks
// its measurements against the same signals.
package pipelinetest

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/taipattern/taikit/tai"
)

// Order is the payload of the pipeline.
type Order struct {
	Amount float64
}

// ErrGateway is the error of the action for amount 13.
var ErrGateway = errors.New("gateway down")

// ErrLimited is the gate's error type, as a rate limiter would return.
type ErrLimited struct{}

func (ErrLimited) Error() string { return "limited" }

// New builds the pipeline: a gate named "limit" that rejects key
// "blocked", then All of a named allow-list check ("allowlist", denying
// keys that start with "banned") and a scored policy ("fraud": rules
// amount and velocity, Deny at 0.5), and an action that fails with
// ErrGateway for amount 13. opts come after the gate.
func New(opts ...tai.Option) (*tai.Pipeline[Order, string], error) {
	gate := NamedGate{GateName: "limit", Fn: func(_ context.Context, key string) error {
		if key == "blocked" {
			return ErrLimited{}
		}
		return nil
	}}
	scored, err := tai.NewScored(tai.ScoredOptions{Name: "fraud", Deny: 0.5},
		tai.Rule[Order]{Name: "amount", Weight: 0.6, Check: func(_ context.Context, s tai.Signal[Order]) (float64, string, error) {
			if s.Payload.Amount > 5000 {
				return 1, "amount over 5000", nil
			}
			return 0, "", nil
		}},
		tai.Rule[Order]{Name: "velocity", Weight: 0.4, Check: func(_ context.Context, s tai.Signal[Order]) (float64, string, error) {
			return 0.1, "2 payments this minute", nil
		}},
	)
	if err != nil {
		return nil, err
	}
	allowList := tai.Named("allowlist", tai.PolicyFunc[Order](func(_ context.Context, s tai.Signal[Order]) (tai.Decision, error) {
		if strings.HasPrefix(s.Key, "banned") {
			return tai.Decision{Verdict: tai.Deny, Reason: "banned"}, nil
		}
		return tai.Decision{Verdict: tai.Allow}, nil
	}))
	action := tai.ActionFunc[Order, string](func(_ context.Context, s tai.Signal[Order]) (string, error) {
		if s.Payload.Amount == 13 {
			return "", ErrGateway
		}
		return "ok", nil
	})
	opts = append([]tai.Option{tai.WithGates(gate)}, opts...)
	return tai.New(tai.All[Order](allowList, scored), action, opts...)
}

// NamedGate is a tai.Gate with a name.
type NamedGate struct {
	GateName string
	Fn       func(context.Context, string) error
}

// Name returns GateName.
func (g NamedGate) Name() string { return g.GateName }

// Admit calls Fn.
func (g NamedGate) Admit(ctx context.Context, key string) error { return g.Fn(ctx, key) }

// Signals returns one signal of each outcome, in this order: succeeded,
// denied by the score, denied by the allow-list, rejected by the gate,
// failed.
func Signals() []tai.Signal[Order] {
	return []tai.Signal[Order]{
		{ID: "s1", Kind: "payment", Key: "cust_1", Payload: Order{Amount: 10}},
		{ID: "s2", Kind: "payment", Key: "cust_2", Payload: Order{Amount: 9000}},
		{ID: "s3", Kind: "payment", Key: "banned_3", Payload: Order{Amount: 10}},
		{ID: "s4", Kind: "payment", Key: "blocked", Payload: Order{Amount: 10}},
		{ID: "s5", Kind: "payment", Key: "cust_5", Payload: Order{Amount: 13}},
	}
}

// RealisticRecord is what a payment pipeline with a gate, a scored policy
// and an action hands its observers: a Review with two contributions and
// all four stage durations, traced but not sampled, ended now: a record
// ending later would be in the future of a window that ends now.
func RealisticRecord() tai.Record {
	const took = 12*time.Millisecond + 345*time.Microsecond
	r := tai.Record{
		ID: "3f6c2a9e0b7d4c1e8a5f2d6b9c0e1a7f", Kind: "payment", Key: "cust_42",
		Outcome: tai.Succeeded,
		Decision: tai.Decision{Verdict: tai.Review, Policy: "fraud", Reason: "velocity: 4 payments this minute", Score: 0.42,
			Contributions: []tai.Contribution{
				{Rule: "velocity", Weight: 0.5, Risk: 0.8, Score: 0.4, Reason: "velocity: 4 payments this minute"},
				{Rule: "amount", Weight: 0.2, Risk: 0.1, Score: 0.02, Reason: "amount 480.00 near daily limit"},
			}},
		Start:    time.Now().Add(-took),
		Duration: took,
		Span:     tai.SpanContext{TraceID: tai.TraceID{0x4b, 0xf9, 0x2f, 0x35}, SpanID: tai.SpanID{0x00, 0xf0, 0x67}},
	}
	r.Stages[tai.StageSignal] = r.Duration
	r.Stages[tai.StageGate] = 2 * time.Microsecond
	r.Stages[tai.StagePolicy] = 340 * time.Microsecond
	r.Stages[tai.StageAction] = 12 * time.Millisecond
	r.StagesTimed = true
	r.Reached = [len(r.Reached)]bool{true, true, true, true}
	return r
}
