package main

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/examples/deployment/internal/fleet"
)

// stalledHealth is a health source whose first sample of v2.0.0 does not
// answer: it waits for its context to end and returns its error, as a
// Prometheus query cut off by its deadline does. Every other sample is
// the inner source's.
type stalledHealth struct {
	fleet.Health
	stalled atomic.Int32
}

func (h *stalledHealth) Sample(ctx context.Context, service, region, version string, window time.Duration) (fleet.Sample, error) {
	if version == "v2.0.0" && h.stalled.Add(1) == 1 {
		<-ctx.Done()
		return fleet.Sample{}, fmt.Errorf("promhealth: ErrorRate of %s of %s in %s: %w", version, service, region, ctx.Err())
	}
	return h.Health.Sample(ctx, service, region, version, window)
}

// TestStalledHealthSampleIsInconclusive: a health sample the source does
// not answer in time is inconclusive, as one it answers with an error is,
// and the stage goes on to judge the samples after it. The watchdog timed
// the check out and counted it failed, and the deployment of a healthy
// version rolled back with "jidoka: check timed out after 1s", its stage's
// samples all recorded inconclusive or passed.
func TestStalledHealthSampleIsInconclusive(t *testing.T) {
	h := &stalledHealth{}
	ts := startServiceWith(t, t.TempDir(), func(c *Config) {
		c.WrapHealth = func(inner fleet.Health) fleet.Health { h.Health = inner; return h }
	}, "-stages", "canary:5:2s,prod:100:0s", "-health-interval", "25ms", "-min-requests", "0")
	d := deploy(t, ts.URL, map[string]any{"service": "api-service", "version": "v2.0.0", "target_region": "us-west-2"}).deployment(t)
	require.Equal(t, StatusSuccess, d.Status, "%+v", d.Results[0])
	require.GreaterOrEqual(t, h.stalled.Load(), int32(2), "the stage sampled again after the stalled sample")
	canary := d.Results[0].Stages[0]
	require.NotEmpty(t, canary.Samples)
	for _, s := range canary.Samples {
		assert.NotEqual(t, "failed", s.Verdict, "%+v", s)
	}
}
