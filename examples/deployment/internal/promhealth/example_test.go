package promhealth_test

import (
	"fmt"
	"time"

	"github.com/taipattern/taikit/examples/deployment/internal/promhealth"
)

// The queries a canary analysis of v2 sends, over a one-minute window.
// Sample sends them to the server and reads the numbers back.
func ExampleHealth_Render() {
	h, err := promhealth.New(promhealth.Options{URL: "http://127.0.0.1:9090"})
	if err != nil {
		panic(err)
	}
	q, err := h.Render("web", "eu", "v2", time.Minute)
	if err != nil {
		panic(err)
	}
	fmt.Println(q.ErrorRate)
	fmt.Println(q.P99)
	fmt.Println(q.Memory)
	// Output:
	// (sum(rate(http_requests_total{service="web",region="eu",version="v2",code=~"5.."}[1m])) or vector(0)) / sum(rate(http_requests_total{service="web",region="eu",version="v2"}[1m]))
	// histogram_quantile(0.99, sum by (le) (rate(http_request_duration_seconds_bucket{service="web",region="eu",version="v2"}[1m])))
	// avg(process_resident_memory_bytes{service="web",region="eu",version="v2"}) / 268435456
}

// Custom queries for an app with other metric names.
func ExampleNew_customQueries() {
	sel := `job="checkout",stage="{{.Region}}",release="{{.Version}}"`
	h, err := promhealth.New(promhealth.Options{
		URL: "http://prometheus.internal:9090",
		Queries: promhealth.Queries{
			ErrorRate: `sum(rate(checkout_failures_total{` + sel + `}[{{.Window}}])) / sum(rate(checkout_total{` + sel + `}[{{.Window}}]))`,
			P99:       `histogram_quantile(0.99, sum by (le) (rate(checkout_seconds_bucket{` + sel + `}[{{.Window}}])))`,
			CPU:       `avg(rate(container_cpu_usage_seconds_total{` + sel + `}[{{.Window}}]))`,
			Memory:    `avg(container_memory_working_set_bytes{` + sel + `}) / {{.MemoryLimit}}`,
		},
		MemoryLimit: 1 << 30,
	})
	if err != nil {
		panic(err)
	}
	q, _ := h.Render("checkout", "canary", "r42", 5*time.Minute)
	fmt.Println(q.Memory)
	// Output:
	// avg(container_memory_working_set_bytes{job="checkout",stage="canary",release="r42"}) / 1073741824
}
