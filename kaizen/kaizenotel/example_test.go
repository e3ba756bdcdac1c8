package kaizenotel_test

import (
	"context"
	"errors"
	"fmt"
	"log"

	"github.com/taipattern/taikit/kaizen/kaizenotel"
	"github.com/taipattern/taikit/tai"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

type order struct {
	Amount float64
}

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
			return "", errors.New("gateway down")
		}
		return "charged", nil
	})
	p, err := tai.New(policy, action, opts...)
	if err != nil {
		log.Fatal(err)
	}
	return p
}

func ExampleNewTracer() {
	// A real service passes its SDK TracerProvider (or none, for the
	// global one); the example records spans in memory.
	spans := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))
	defer func() { _ = tp.Shutdown(context.Background()) }()

	tracer := kaizenotel.NewTracer(kaizenotel.TracerOptions{Provider: tp})
	p := examplePipeline(tai.WithTracer(tracer))
	res, _ := p.Process(context.Background(), tai.Signal[order]{ID: "pay-1", Kind: "payment", Payload: order{Amount: 13}})

	for _, s := range spans.Ended() {
		fmt.Printf("%-14s status=%s\n", s.Name(), s.Status().Code)
	}
	fmt.Println("result carries the trace:", res.Span.TraceID == tai.TraceID(spans.Ended()[0].SpanContext().TraceID()))
	// Output:
	// policy amount  status=Unset
	// action         status=Error
	// payment        status=Error
	// result carries the trace: true
}
