package main

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/examples/deployment/internal/analysis"
	"github.com/taipattern/taikit/examples/deployment/internal/fleet"
	"github.com/taipattern/taikit/tai"
)

// failingHealth answers every sample with this many requests, a third
// of them failed.
type failingHealth float64

func (h failingHealth) Sample(context.Context, string, string, string, time.Duration) (fleet.Sample, error) {
	return fleet.Sample{Time: time.Now(), Requests: float64(h), ErrorRate: 1.0 / 3, P99: 50 * time.Millisecond, CPU: 0.3, Memory: 0.3}, nil
}

// TestRegionHealthOnFewRequests: the prerequisite region_health, with
// the Go rules and with the rule file's lookup, does not refuse a
// deployment for a reading of the version serving that rests on fewer
// than -min-requests requests: the analysis holds such a sample
// inconclusive, and one failed request of three read as a region failing
// its analysis at 33% errors. On enough requests the same reading still
// refuses.
func TestRegionHealthOnFewRequests(t *testing.T) {
	// No rollout runs: the test's calls are the only readers of the
	// health source it changes.
	ts := startService(t) // -min-requests 10
	for _, tc := range []struct {
		requests float64
		healthy  bool
	}{{3, true}, {9.9, true}, {10, false}, {300, false}} {
		ts.health = failingHealth(tc.requests)
		newRun := func() *rollout {
			th := analysis.Default()
			return &rollout{s: ts.Service, service: "auth", version: "v2.0.0", region: "us-west-2", stable: "v1.0.0",
				thresholds: th, limits: thresholdVars(th), d: &Deployment{ID: "dpl_test"}}
		}
		dec, err := ts.regionHealth(t.Context(), tai.Signal[*rollout]{Payload: newRun()})
		require.NoError(t, err)
		assert.Equal(t, tc.healthy, dec.Verdict == tai.Allow, "Go rule, %v requests: %+v", tc.requests, dec)

		vars, err := ts.prerequisiteLookup(t.Context(), tai.Signal[RegionRequest]{Payload: RegionRequest{facts: &regionFacts{r: newRun()}}})
		require.NoError(t, err)
		assert.Equal(t, tc.healthy, vars["region_healthy"], "rule file's lookup, %v requests: %v", tc.requests, vars["region_health_reason"])
	}
}
