package catalog

import (
	"bytes"
	_ "embed"
)

//go:embed demo.json
var demoJSON []byte

// Demo returns the demo catalog, a fresh copy on every call, so a caller
// may change its copy freely. It is parsed from demo.json, which ships in
// the binary.
//
// Regions us-west-2, us-east-1 and eu-west-1 hold 200 instances each;
// ap-south-1 holds 2, too few for any service's 4 instances. Every service
// runs a healthy version in the three large regions and has at least two
// more healthy ones to deploy. Against analysis.Default, these versions
// fail:
//
//	bad-service v1.0.0        error rate 7.2%
//	slow-service v2.0.0       p99 latency 1500 ms
//	regional-service v2.0.0   error rate 9% in eu-west-1 only
//	degrading-service v2.0.0  error rate 15% from 4 s after deployment
//	hungry-service v2.0.0     CPU usage 92%
//	leaky-service v2.0.0      memory usage 90%
//
// Every other version passes; api-service (v1.0.0 running; v2.0.0, v2.1.0,
// v3.0.0) and the fourteen services from web-frontend to pricing are
// healthy throughout.
func Demo() *Catalog {
	c, err := Parse(bytes.NewReader(demoJSON))
	if err != nil {
		panic("catalog: embedded demo.json: " + err.Error()) // caught by the package's tests
	}
	return c
}
