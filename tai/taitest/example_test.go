package taitest_test

import (
	"context"
	"fmt"

	"github.com/taipattern/taikit/tai"
	"github.com/taipattern/taikit/tai/taitest"
)

// A pipeline with one of each hook, none of which changes anything.
func ExampleHooks() {
	p, _ := tai.New(
		tai.PolicyFunc[int](func(context.Context, tai.Signal[int]) (tai.Decision, error) {
			return tai.Decision{Verdict: tai.Allow}, nil
		}),
		tai.ActionFunc[int, int](func(_ context.Context, s tai.Signal[int]) (int, error) { return s.Payload * 2, nil }),
		taitest.Hooks()...)
	res, err := p.Process(context.Background(), tai.NewSignal("n", "k", 21))
	fmt.Println(res.Value, err, res.Span.TraceID.IsValid())
	// Output: 42 <nil> false
}
