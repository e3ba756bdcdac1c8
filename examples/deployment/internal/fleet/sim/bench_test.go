package sim_test

import (
	"context"
	"testing"
	"time"

	"github.com/taipattern/taikit/examples/deployment/internal/catalog"
	"github.com/taipattern/taikit/examples/deployment/internal/fleet/sim"
)

func BenchmarkSample(b *testing.B) {
	ctx := context.Background()
	f := sim.New(catalog.Demo())
	for b.Loop() {
		if _, err := f.Sample(ctx, api, west, "v1.0.0", time.Minute); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDeployRetire is a deployment's whole life in the simulator:
// deploy, route there and back, retire.
func BenchmarkDeployRetire(b *testing.B) {
	ctx := context.Background()
	f := sim.New(catalog.Demo())
	for b.Loop() {
		if err := f.Deploy(ctx, api, west, "v2.0.0", 4); err != nil {
			b.Fatal(err)
		}
		if err := f.Route(ctx, api, west, "v1.0.0", "v2.0.0", 10); err != nil {
			b.Fatal(err)
		}
		if err := f.Route(ctx, api, west, "v1.0.0", "v2.0.0", 0); err != nil {
			b.Fatal(err)
		}
		if err := f.Retire(ctx, api, west, "v2.0.0"); err != nil {
			b.Fatal(err)
		}
	}
}
