// Package bench compares taikit with peer libraries, side by side in one
// run. It is a module of its own so the library's go.mod stays lean.
package bench

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
	corePolicy tai.Policy[payment] = tai.PolicyFunc[payment](func(_ context.Context, s tai.Signal[payment]) (tai.Decision, error) {
		if s.Payload.Amount > 5000 {
			return tai.Decision{Verdict: tai.Deny, Policy: "amount"}, nil
		}
		return tai.Decision{Verdict: tai.Allow, Policy: "amount"}, nil
	})
	coreAction tai.Action[payment, int] = tai.ActionFunc[payment, int](func(_ context.Context, s tai.Signal[payment]) (int, error) {
		return int(s.Payload.Amount), nil
	})
)

func coreSignal() tai.Signal[payment] {
	return tai.Signal[payment]{ID: "sig_1", Kind: "payment", Key: "cust_1", Payload: payment{Amount: 99.99, Customer: "cust_1"}}
}

// BenchmarkDirect calls the policy and the action by hand: the floor the
// pipeline is measured against.
func BenchmarkDirect(b *testing.B) {
	ctx, s := context.Background(), coreSignal()
	b.ReportAllocs()
	for b.Loop() {
		d, err := corePolicy.Evaluate(ctx, s)
		if err != nil || d.Verdict != tai.Allow {
			b.Fatal("denied")
		}
		if _, err := coreAction.Execute(ctx, s); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkProcess runs the same policy and action through a pipeline with
// no hooks.
func BenchmarkProcess(b *testing.B) {
	p, err := tai.New(corePolicy, coreAction)
	if err != nil {
		b.Fatal(err)
	}
	benchPipeline(b, p)
}

// BenchmarkProcessHooks adds a gate, a guard, an observer and a tracer, all
// no-ops.
func BenchmarkProcessHooks(b *testing.B) {
	p, err := tai.New(corePolicy, coreAction,
		taitest.Hooks()...)
	if err != nil {
		b.Fatal(err)
	}
	benchPipeline(b, p)
}

// BenchmarkProcessHooksWrapGuard is BenchmarkProcessHooks with a guard
// that can only wrap the action (taitest.NopWrapGuard, as a timeout would
// be) instead of a two-step one (taitest.NopGuard, as jidoka.Breaker is).
func BenchmarkProcessHooksWrapGuard(b *testing.B) {
	p, err := tai.New(corePolicy, coreAction,
		tai.WithGates(taitest.NopGate{}), tai.WithGuards(taitest.NopWrapGuard{}),
		tai.WithObservers(taitest.NopObserver{}), tai.WithTracer(taitest.NopTracer{}))
	if err != nil {
		b.Fatal(err)
	}
	benchPipeline(b, p)
}

func benchPipeline(b *testing.B, p *tai.Pipeline[payment, int]) {
	ctx, s := context.Background(), coreSignal()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := p.Process(ctx, s); err != nil {
			b.Fatal(err)
		}
	}
}

// TestCoreBenchmarksRun keeps the comparison honest when the benchmarks are
// only compiled: the pipeline returns what the direct calls return.
func TestCoreBenchmarksRun(t *testing.T) {
	p, err := tai.New(corePolicy, coreAction)
	if err != nil {
		t.Fatal(err)
	}
	res, err := p.Process(context.Background(), coreSignal())
	if err != nil || res.Value != 99 {
		t.Fatalf("Process = %v, %v; want 99, nil", res.Value, err)
	}
}
