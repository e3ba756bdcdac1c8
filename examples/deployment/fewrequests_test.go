package main

import (
	"context"
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
