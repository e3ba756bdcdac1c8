package tai_test

import (
	"context"
	"testing"

	"github.com/taipattern/taikit/tai"
	"github.com/taipattern/taikit/tai/taitest"
)

type payment struct {
	Amount   float64
	Customer string
}

var (
	benchPolicy = tai.PolicyFunc[payment](func(_ context.Context, s tai.Signal[payment]) (tai.Decision, error) {
		if s.Payload.Amount > 5000 {
			return tai.Decision{Verdict: tai.Deny, Policy: "amount"}, nil
		}
		return tai.Decision{Verdict: tai.Allow, Policy: "amount"}, nil
	})
	benchAction = tai.ActionFunc[payment, int](func(_ context.Context, s tai.Signal[payment]) (int, error) {
		return int(s.Payload.Amount), nil
	})
)

func benchSignal() tai.Signal[payment] {
	return tai.Signal[payment]{ID: "sig_1", Kind: "payment", Key: "cust_1", Payload: payment{Amount: 99.99, Customer: "cust_1"}}
}

// BenchmarkDirect calls the policy and the action by hand: the floor the
// pipeline's benchmarks are measured against.
func BenchmarkDirect(b *testing.B) {
	ctx, s := context.Background(), benchSignal()
	b.ReportAllocs()
	for b.Loop() {
		d, err := benchPolicy.Evaluate(ctx, s)
		if err != nil || d.Verdict != tai.Allow {
			b.Fatal("denied")
		}
		if _, err := benchAction.Execute(ctx, s); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkProcess measures the pipeline with one policy, one action and no
// hooks.
func BenchmarkProcess(b *testing.B) {
	p, err := tai.New(benchPolicy, benchAction)
	if err != nil {
		b.Fatal(err)
	}
	ctx, s := context.Background(), benchSignal()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := p.Process(ctx, s); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkProcessHooks measures the pipeline with a gate, a guard, an
// observer and a tracer, all no-ops.
func BenchmarkProcessHooks(b *testing.B) {
	p, err := tai.New(benchPolicy, benchAction,
		taitest.Hooks()...)
	if err != nil {
		b.Fatal(err)
	}
	ctx, s := context.Background(), benchSignal()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := p.Process(ctx, s); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkProcessObserver measures the pipeline with one observer and no
// other hook: the Record and the two clock reads it needs.
func BenchmarkProcessObserver(b *testing.B) {
	p, err := tai.New(benchPolicy, benchAction, tai.WithObservers(taitest.NopObserver{}))
	if err != nil {
		b.Fatal(err)
	}
	ctx, s := context.Background(), benchSignal()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := p.Process(ctx, s); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkProcessWrapGuards measures the pipeline with two guards that
// only wrap the action, as a retry around a timeout does: the per-signal
// call state and its links.
func BenchmarkProcessWrapGuards(b *testing.B) {
	p, err := tai.New(benchPolicy, benchAction, tai.WithGuards(taitest.NopWrapGuard{}, taitest.NopWrapGuard{}))
	if err != nil {
		b.Fatal(err)
	}
	ctx, s := context.Background(), benchSignal()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := p.Process(ctx, s); err != nil {
			b.Fatal(err)
		}
	}
}
