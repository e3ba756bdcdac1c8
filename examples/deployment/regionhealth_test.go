package main

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
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

// TestRegionHealthOnAShortInterval: with a health interval under a
// second, the prerequisite region_health reads the version serving over a
// second, as a rollout's analysis reads a stage's first sample, not over
// one interval: the simulated fleet's 100 requests/s gave 2.5 requests in
// 25 ms, fewer than -min-requests, and a region failing its analysis at
// 7.2% errors was read as no data and took the change.
func TestRegionHealthOnAShortInterval(t *testing.T) {
	catalog := filepath.Join(t.TempDir(), "catalog.json")
	require.NoError(t, os.WriteFile(catalog, []byte(`{
  "regions": {"us-west-2": {"capacity": 20}},
  "services": {"api-service": {"instances": 4, "running": {"us-west-2": "v1.0.0"}, "versions": {
    "v1.0.0": {"error_rate": 0.072, "p99_ms": 150, "cpu": 0.35, "memory": 0.5},
    "v2.0.0": {"error_rate": 0.006, "p99_ms": 180, "cpu": 0.4, "memory": 0.6}}}}
}`), 0o600))
	ts := startService(t, "-catalog", catalog, "-health-interval", "25ms") // -min-requests 10
	newRun := func() *rollout {
		th := analysis.Default()
		return &rollout{s: ts.Service, service: "api-service", version: "v2.0.0", region: "us-west-2", stable: "v1.0.0",
			thresholds: th, limits: thresholdVars(th), d: &Deployment{ID: "dpl_test"}}
	}
	dec, err := ts.regionHealth(t.Context(), tai.Signal[*rollout]{Payload: newRun()})
	require.NoError(t, err)
	assert.Equal(t, tai.Deny, dec.Verdict, "Go rule: %+v", dec)
	assert.Contains(t, dec.Reason, "Error rate 7.20% exceeds threshold 5.00%")

	vars, err := ts.prerequisiteLookup(t.Context(), tai.Signal[RegionRequest]{Payload: RegionRequest{facts: &regionFacts{r: newRun()}}})
	require.NoError(t, err)
	assert.Equal(t, false, vars["region_healthy"], "rule file's lookup")
	assert.Contains(t, vars["region_health_reason"], "Error rate 7.20% exceeds threshold 5.00%")

	r := deploy(t, ts.URL, map[string]any{"service": "api-service", "version": "v2.0.0", "target_region": "us-west-2"})
	require.Equal(t, http.StatusUnprocessableEntity, r.Code, "%s", r.Body)
	assert.Contains(t, string(r.Body), "unhealthy before the change")
}
