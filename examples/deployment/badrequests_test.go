package main

import (
	"context"
	"math"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/examples/deployment/internal/analysis"
	"github.com/taipattern/taikit/examples/deployment/internal/fleet"
	"github.com/taipattern/taikit/tai"
)

// healthyOn answers every sample with a healthy reading on this many
// requests.
type healthyOn float64

func (h healthyOn) Sample(context.Context, string, string, string, time.Duration) (fleet.Sample, error) {
	return fleet.Sample{Time: time.Now(), Requests: float64(h), ErrorRate: 0.001, P99: 50 * time.Millisecond, CPU: 0.3, Memory: 0.3}, nil
}

// TestRequestsNotAReading: a health sample whose request count cannot be
// one (NaN, negative) fails, as a sample whose error rate or CPU
// cannot be a measurement does: in a rollout's analysis it neither counts
// as a passed sample nor as too few requests, and the prerequisite
// region_health, with the Go rules and with the rule file's lookup,
// refuses on it. A NaN count compared false with -min-requests and was
// taken for enough requests: the sample passed.
func TestRequestsNotAReading(t *testing.T) {
	// No rollout runs: the test's calls are the only readers of the
	// settings it changes.
	ts := startService(t)
	for _, min := range []float64{0, 10} {
		for _, requests := range []float64{math.NaN(), -1, math.Inf(-1)} {
			ts.cfg.MinRequests = min
			ts.health = healthyOn(requests)
			th := analysis.Default()
			newRun := func() *rollout {
				return &rollout{s: ts.Service, service: "auth", version: "v2.0.0", region: "us-west-2", stable: "v1.0.0", since: time.Now(),
					thresholds: th, limits: thresholdVars(th),
					d: &Deployment{ID: "dpl_test", Results: []RegionResult{{Stages: []StageResult{{}}}}}}
			}
			r := newRun()
			err := r.check(t.Context())
			require.Error(t, err, "-min-requests %v, %v requests", min, requests)
			assert.Contains(t, err.Error(), "is not a valid reading")
			samples := r.d.Results[0].Stages[0].Samples
			require.Len(t, samples, 1)
			assert.Equal(t, "failed", samples[0].Verdict, "-min-requests %v, %v requests", min, requests)
			assert.Zero(t, r.passed)

			dec, err := ts.regionHealth(t.Context(), tai.Signal[*rollout]{Payload: newRun()})
			require.NoError(t, err)
			assert.Equal(t, tai.Deny, dec.Verdict, "Go rule, %v requests: %+v", requests, dec)
			assert.Contains(t, dec.Reason, "is not a valid reading")

			vars, err := ts.prerequisiteLookup(t.Context(), tai.Signal[RegionRequest]{Payload: RegionRequest{facts: &regionFacts{r: newRun()}}})
			require.NoError(t, err)
			assert.Equal(t, false, vars["region_healthy"], "rule file's lookup, %v requests", requests)
			assert.Contains(t, vars["region_health_reason"], "is not a valid reading")
		}
	}
}
