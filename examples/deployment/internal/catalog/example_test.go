package catalog_test

import (
	"fmt"
	"strings"
	"time"

	"github.com/taipattern/taikit/examples/deployment/internal/catalog"
)

func Example() {
	c, err := catalog.Parse(strings.NewReader(`{
	  "regions": {"us-west-2": {"capacity": 20}, "eu-west-1": {"capacity": 20}},
	  "services": {
	    "api-service": {
	      "running": {"us-west-2": "v1.0.0", "eu-west-1": "v1.0.0"},
	      "versions": {
	        "v1.0.0": {"error_rate": 0.006, "p99_ms": 150, "cpu": 0.35, "memory": 0.5},
	        "v2.0.0": {
	          "error_rate": 0.007, "p99_ms": 180, "cpu": 0.4, "memory": 0.6,
	          "regions": {"eu-west-1": {"error_rate": 0.09, "p99_ms": 220, "cpu": 0.42, "memory": 0.52}}
	        }
	      }
	    }
	  }
	}`))
	if err != nil {
		fmt.Println(err)
		return
	}
	running, _ := c.Running("api-service", "us-west-2")
	fmt.Println("running:", running, "on", c.Instances("api-service"), "instances per region")
	for _, region := range c.RegionNames() {
		p, _ := c.Profile("api-service", "v2.0.0", region, time.Minute)
		fmt.Printf("v2.0.0 in %s: error rate %.1f%%, p99 %v\n", region, p.ErrorRate*100, p.P99)
	}
	// Output:
	// running: v1.0.0 on 4 instances per region
	// v2.0.0 in eu-west-1: error rate 9.0%, p99 220ms
	// v2.0.0 in us-west-2: error rate 0.7%, p99 180ms
}

func ExampleParse_error() {
	_, err := catalog.Parse(strings.NewReader(`{
	  "regions": {"us-west-2": {"capacity": 20}},
	  "services": {"api-service": {"versions": {
	    "v2.0.0": {"error_rate": 7.2, "p99_ms": 180, "cpu": 0.4, "memory": 0.6}
	  }}}
	}`))
	fmt.Println(err)
	// Output:
	// catalog: services.api-service.versions.v2.0.0.error_rate: must be in [0,1], got 7.2
}

func ExampleDemo() {
	c := catalog.Demo()
	fmt.Println(c.RegionNames())
	fmt.Println(c.VersionNames("bad-service"))
	p, _ := c.Profile("bad-service", "v1.0.0", "us-west-2", 0)
	fmt.Printf("bad-service v1.0.0 error rate: %.1f%%\n", p.ErrorRate*100)
	// Output:
	// [ap-south-1 eu-west-1 us-east-1 us-west-2]
	// [v0.9.0 v0.9.1 v1.0.0 v1.0.1]
	// bad-service v1.0.0 error rate: 7.2%
}
