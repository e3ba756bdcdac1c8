package main

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/examples/deployment/internal/fleet"
)

// fixedHealth answers every sample with the same requests.
type fixedHealth float64

func (h fixedHealth) Sample(context.Context, string, string, string, time.Duration) (fleet.Sample, error) {
	return fleet.Sample{Requests: float64(h)}, nil
}

// TestFewRequestsReason: a sample inconclusive for resting on fewer than
// -min-requests says how many it rested on without rounding it up to the
// minimum: 9.6 requests are not "10 requests, fewer than 10".
func TestFewRequestsReason(t *testing.T) {
	// No rollout runs: the test's rollouts are the only readers of the
	// settings it changes.
	ts := startService(t)
	for _, tc := range []struct {
		min      float64
		requests float64
		reason   string
	}{
		{10, 9.6, "9 requests, fewer than 10"},
		{10, 5, "5 requests, fewer than 10"},
		{10, 0.4, "0 requests, fewer than 10"},
		{2.5, 2.4, "2 requests, fewer than 2.5"},
		{10.4, 10, "10 requests, fewer than 10.4"},
	} {
		ts.cfg.MinRequests = tc.min
		ts.health = fixedHealth(tc.requests)
		r := &rollout{s: ts.Service, service: "auth", version: "v2.0.0", region: "us-west-2", since: time.Now(), // its first stage began
			d: &Deployment{ID: "dpl_test", Results: []RegionResult{{Stages: []StageResult{{}}}}}}
		require.NoError(t, r.check(t.Context()))
		samples := r.d.Results[0].Stages[0].Samples
		require.Len(t, samples, 1)
		assert.Equal(t, "inconclusive", samples[0].Verdict)
		assert.Equal(t, tc.reason, samples[0].Reason, "-min-requests %v, %v requests", tc.min, tc.requests)
	}
}

// TestNoDataRollbackHasNoRecoveryTime: a stage rolled back for want of
// health data, with no sample failed, has no time to recover: no failing
// sample began it. It was recorded as recovered within microseconds of
// the decision, a recovery_ms and a deployment_rollback_recovery_seconds
// observation that /kaizen's mttr_ms (the mean over rollbacks on a failed
// analysis) took in, and which pulled it toward zero.
func TestNoDataRollbackHasNoRecoveryTime(t *testing.T) {
	h := &switchedHealth{}
	h.noData.Store(true)
	ts := startServiceWith(t, t.TempDir(), func(c *Config) {
		c.WrapHealth = func(inner fleet.Health) fleet.Health { h.Health = inner; return h }
	}, "-stages", "canary:5:50ms,prod:100:0s", "-health-interval", "25ms", "-min-requests", "0")
	d := deploy(t, ts.URL, map[string]any{"service": "api-service", "version": "v2.0.0", "target_region": "us-west-2"}).deployment(t)
	require.Equal(t, StatusRolledBack, d.Status)
	assert.Contains(t, d.Results[0].ErrorMessage, "No health data for api-service v2.0.0 at canary")
	assert.Zero(t, d.Results[0].RecoveryMs, "no failing sample to recover from")

	r := do(t, "GET", ts.URL+"/kaizen", nil)
	require.Equal(t, 200, r.Code)
	var k Kaizen
	require.NoError(t, json.Unmarshal(r.Body, &k))
	assert.Zero(t, k.MTTRMs, "no rollback on a failed analysis")
	assert.Equal(t, "deployment_rollback_recovery_seconds_count 0",
		sampleLine(do(t, "GET", ts.URL+"/metrics", nil).Body, "deployment_rollback_recovery_seconds_count"))
}
