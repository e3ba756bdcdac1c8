package stack_test

import (
	"fmt"

	"github.com/taipattern/taikit/deploy/check/stack"
)

// A second stack beside the default one: every port moves to the base
// plus its index, and the components start in order.
func ExampleConfig_Ports() {
	cfg := stack.Config{PortBase: 20000}
	p := cfg.Ports()
	fmt.Println("nats-1", p["nats-1"], "payment-1", p["payment-1"], "prometheus", p["prometheus"])
	for _, c := range cfg.Components()[:4] {
		fmt.Println(c.Name, c.Group)
	}
	// Output:
	// nats-1 20000 payment-1 20015 prometheus 20019
	// nats-1 nats
	// nats-2 nats
	// nats-3 nats
	// redis
}
