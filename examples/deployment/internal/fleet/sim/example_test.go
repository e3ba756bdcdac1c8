package sim_test

import (
	"context"
	"fmt"
	"time"

	"github.com/taipattern/taikit/examples/deployment/internal/analysis"
	"github.com/taipattern/taikit/examples/deployment/internal/catalog"
	"github.com/taipattern/taikit/examples/deployment/internal/fleet/sim"
)

// A canary of bad-service v1.0.0: deployed beside v0.9.0, given 10% of the
// traffic, judged, and rolled back.
func Example() {
	ctx := context.Background()
	f := sim.New(catalog.Demo())
	const service, region = "bad-service", "us-west-2"

	if err := f.Deploy(ctx, service, region, "v1.0.0", 4); err != nil {
		fmt.Println(err)
		return
	}
	s, err := f.Sample(ctx, service, region, "v1.0.0", time.Minute)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("before routing, preview requests in a minute:", s.Requests)

	if err := f.Route(ctx, service, region, "v0.9.0", "v1.0.0", 10); err != nil {
		fmt.Println(err)
		return
	}
	s, err = f.Sample(ctx, service, region, "v1.0.0", time.Minute)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("requests in a minute:", s.Requests)
	v := analysis.Evaluate(s, analysis.Default())
	fmt.Println("passed:", v.Passed, "-", v.Reason())

	_ = f.Route(ctx, service, region, "v0.9.0", "v1.0.0", 0)
	_ = f.Retire(ctx, service, region, "v1.0.0")
	stable, next, percent := f.Split(service, region)
	fmt.Printf("split: %q %q %v; running: %v\n", stable, next, percent, f.Versions(service, region))
	// Output:
	// before routing, preview requests in a minute: 300
	// requests in a minute: 600
	// passed: false - Error rate 7.20% exceeds threshold 5.00%
	// split: "v0.9.0" "" 0; running: [v0.9.0]
}
