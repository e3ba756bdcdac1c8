package main

import (
	"context"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/examples/deployment/internal/fleet"
)

// lateHealth is a health source whose second sample of v2.0.0 waits for
// release (or stop), then answers a failing reading; every other sample
// is the inner source's.
type lateHealth struct {
	fleet.Health
	n                      atomic.Int32
	held, release, stopped chan struct{}
}

func (h *lateHealth) Sample(ctx context.Context, service, region, version string, window time.Duration) (fleet.Sample, error) {
	if version != "v2.0.0" || h.n.Add(1) != 2 {
		return h.Health.Sample(ctx, service, region, version, window)
	}
	close(h.held)
	select {
	case <-h.release:
	case <-h.stopped:
	case <-ctx.Done():
		// Cut off at its timeout (a machine too loaded to promote within
		// it), the sample is inconclusive, as one stalled is.
		return fleet.Sample{}, ctx.Err()
	}
	return fleet.Sample{Time: time.Now(), Requests: 1000, ErrorRate: 0.5, P99: 100 * time.Millisecond, CPU: 0.3, Memory: 0.3}, nil
}

// TestLateHealthSampleLeavesItsStageAlone: a health sample begun during
// the canary that answers once the canary has ended (promoted) and the
// prod stage has begun is the canary's, whose verdict is decided: it is
// recorded in neither stage and judges neither. It was added to the
// stage in progress's record, and its failure rolled prod back with a
// reading taken at the canary's share of traffic.
func TestLateHealthSampleLeavesItsStageAlone(t *testing.T) {
	const admin = "admin-token-0123456789"
	h := &lateHealth{held: make(chan struct{}), release: make(chan struct{}), stopped: make(chan struct{})}
	t.Cleanup(func() { close(h.stopped) })
	ts := startServiceWith(t, t.TempDir(), func(c *Config) {
		c.WrapHealth = func(inner fleet.Health) fleet.Health { h.Health = inner; return h }
	}, "-stages", "canary:5:1h,prod:100:0s", "-health-interval", "25ms", "-min-requests", "0", "-admin-token", admin)
	r := deploy(t, ts.URL, map[string]any{"service": "api-service", "version": "v2.0.0", "target_region": "us-west-2"}, "Prefer", "respond-async")
	require.Equal(t, http.StatusAccepted, r.Code, "%s", r.Body)
	id := r.deployment(t).ID
	<-h.held
	p := do(t, "POST", ts.URL+"/deploy/"+id+"/promote", nil, "Authorization", "Bearer "+admin)
	require.Equal(t, http.StatusAccepted, p.Code, "%s", p.Body)
	waitFor(t, ts.URL, id, func(d Deployment) bool { return d.Results[0].Stage == "prod" })
	close(h.release)

	d := waitFor(t, ts.URL, id, ended)
	require.Equal(t, StatusSuccess, d.Status, "%+v", d.Results[0])
	require.Len(t, d.Results[0].Stages, 2)
	for _, st := range d.Results[0].Stages {
		for _, s := range st.Samples {
			assert.NotEqual(t, "failed", s.Verdict, "stage %s: %+v", st.Name, s)
		}
	}
	assert.Equal(t, "promoted", d.Results[0].Stages[0].Verdict)
	assert.Equal(t, "passed", d.Results[0].Stages[1].Verdict)
}
