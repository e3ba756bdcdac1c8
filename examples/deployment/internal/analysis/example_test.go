package analysis_test

import (
	"fmt"
	"time"

	"github.com/taipattern/taikit/examples/deployment/internal/analysis"
	"github.com/taipattern/taikit/examples/deployment/internal/fleet"
)

func Example() {
	sample := fleet.Sample{
		Requests:  600,
		ErrorRate: 0.072,
		P99:       180 * time.Millisecond,
		CPU:       0.42,
		Memory:    0.55,
	}
	v := analysis.Evaluate(sample, analysis.Default())
	fmt.Println("passed:", v.Passed)
	for _, c := range v.Checks {
		fmt.Println(c.Name, c.Passed, c.Message)
	}
	fmt.Println("reason:", v.Reason())
	// Output:
	// passed: false
	// error_rate false Error rate 7.20% exceeds threshold 5.00%
	// p99_latency true P99 latency 180ms within threshold 1000ms
	// cpu true CPU usage 42.00% within threshold 80.00%
	// memory true Memory usage 55.00% within threshold 85.00%
	// reason: Error rate 7.20% exceeds threshold 5.00%
}

func ExampleThresholds_Validate() {
	t := analysis.Default()
	t.MaxCPU = 80 // a percentage where a share is meant
	fmt.Println(t.Validate())
	// Output:
	// analysis: MaxCPU must be a share in (0, 1], got 80
}
