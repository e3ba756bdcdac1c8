// Package fleet is the seam between the deployment service's rollout engine
// and what it deploys to. A Target runs versions of a service in a region
// and splits the region's traffic between two of them; a Health source says
// how a version is doing. Three implementations sit behind it: a simulated
// fleet in-process (deterministic, for tests and the demo), real local
// processes behind a weighted reverse proxy, and health read from a
// Prometheus server. A Kubernetes target would fit the same two interfaces:
// Deploy as a Deployment (or ReplicaSet) scaled to the instance count,
// Route as weights on a Service mesh route or Gateway API HTTPRoute, Retire
// as scaling to zero, and Health from the cluster's Prometheus.
package fleet

import (
	"context"
	"errors"
	"time"
)

// Sample is one reading of a version's health in a region, over the window
// that ends at Time.
type Sample struct {
	Time      time.Time     // end of the window the reading covers
	Requests  float64       // requests answered by the version in the window
	ErrorRate float64       // share of those that failed, in [0, 1]
	P99       time.Duration // 99th percentile latency
	CPU       float64       // share of CPU in use, in [0, 1]
	Memory    float64       // share of memory in use, in [0, 1]
}

// Target runs versions of services in regions and routes their traffic.
// Every method is idempotent, so a rollout resumed after a crash can repeat
// the step it was in.
type Target interface {
	// Deploy makes sure version of service runs in region on instances
	// instances, starting what is missing. It returns once they are ready
	// to take traffic, or with ctx's error.
	Deploy(ctx context.Context, service, region, version string, instances int) error
	// Route sends percent (0 to 100) of service's traffic in region to
	// next and the rest to stable. With stable == "" (a first deployment)
	// all traffic goes to next; with both empty (a first deployment rolled
	// back) none goes anywhere, and the region serves nothing.
	Route(ctx context.Context, service, region, stable, next string, percent float64) error
	// Retire stops version's instances of service in region.
	Retire(ctx context.Context, service, region, version string) error
}

// Health reads how a version of a service is doing in a region.
type Health interface {
	// Sample returns the version's health over the last window.
	Sample(ctx context.Context, service, region, version string, window time.Duration) (Sample, error)
}

// ErrNoData is returned (wrapped) by Health.Sample when the version has no
// readings for the window yet, e.g. no traffic reached it. An analysis
// treats it as inconclusive, not as a failure.
var ErrNoData = errors.New("fleet: no health data")

// ErrNotAMeasurement is matched (errors.Is) by the error of Health.Sample
// when the source answered with a reading that cannot be a measurement: a
// negative count, latency or share, an error rate over 1 (a query with
// its sign wrong, or its ratio upside down). The source works, and what it
// says cannot be a healthy version's: an analysis fails the sample, as it
// fails a NaN reading, rather than take it as a sample the source failed
// to give (inconclusive).
var ErrNotAMeasurement = errors.New("fleet: reading is not a measurement")
