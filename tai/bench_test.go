package tai_test

import (
	"context"
	"testing"

	"github.com/taipattern/taikit/tai"
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

type nopGate struct{}

func (nopGate) Admit(context.Context, string) error { return nil }

type nopGuard struct{}

func (nopGuard) Do(ctx context.Context, fn func(context.Context) error) error { return fn(ctx) }

type nopObserver struct{}

func (nopObserver) Observe(context.Context, tai.Record) {}

type nopTracer struct{}
type nopSpan struct{}

func (nopTracer) Start(ctx context.Context, _ tai.SpanInfo) (context.Context, tai.Span) {
	return ctx, nopSpan{}
}
func (nopSpan) End(error)                         {}
func (nopSpan) SpanContext() (sc tai.SpanContext) { return sc }

func benchSignal() tai.Signal[payment] {
	return tai.Signal[payment]{ID: "sig_1", Kind: "payment", Key: "cust_1", Payload: payment{Amount: 99.99, Customer: "cust_1"}}
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
		tai.WithGates(nopGate{}), tai.WithGuards(nopGuard{}),
		tai.WithObservers(nopObserver{}), tai.WithTracer(nopTracer{}))
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
