package main

import (
	"context"
	"encoding/json"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/examples/deployment/internal/fleet"
	"github.com/taipattern/taikit/kanban"
)

// sickServing is a health source whose readings of the version serving
// (v1.0.0) fail the analysis while sick is set: the prerequisite
// region_health refuses the region.
type sickServing struct {
	fleet.Health
	sick atomic.Bool
}

func (h *sickServing) Sample(ctx context.Context, service, region, version string, window time.Duration) (fleet.Sample, error) {
	if version != "v1.0.0" || !h.sick.Load() {
		return h.Health.Sample(ctx, service, region, version, window)
	}
	return fleet.Sample{Time: time.Now(), Requests: 100, ErrorRate: 0.5, P99: 50 * time.Millisecond, CPU: 0.3, Memory: 0.3}, nil
}

// endWriteFault is the deployments bucket where the first write of a
// region's end that match accepts, the deployment still in progress, is
// refused by the server (not out of reach: the write is not tried again,
// and the job's attempt fails with it); then is called as it is refused.
type endWriteFault struct {
	once  sync.Once
	match func(rr RegionResult) bool
	then  func()
	hit   atomic.Bool
}

func (f *endWriteFault) wrap(kv jetstream.KeyValue) jetstream.KeyValue {
	return &endWriteFaultBucket{kv, f}
}

type endWriteFaultBucket struct {
	jetstream.KeyValue
	f *endWriteFault
}

func (b *endWriteFaultBucket) Update(ctx context.Context, key string, value []byte, revision uint64) (uint64, error) {
	var d Deployment
	if json.Unmarshal(value, &d) == nil && d.Status == StatusInProgress && len(d.Results) > 0 && b.f.match(d.Results[0]) {
		refused := false
		b.f.once.Do(func() {
			refused = true
			b.f.hit.Store(true)
			if b.f.then != nil {
				b.f.then()
			}
		})
		if refused {
			return 0, &jetstream.APIError{Code: http.StatusInternalServerError, Description: "insufficient resources"}
		}
	}
	return b.KeyValue.Update(ctx, key, value, revision)
}

// TestRefusalStandsWhenItsWriteFails: a region its prerequisites refuse
// has its deployment's commands closed to end FAILED, and then the
// refusal's write fails (the store refuses it), so that its job is tried
// again; the region's health, the reason of the refusal, has come back
// meanwhile. The refusal stands: the region ends FAILED with the reason
// and the prerequisite that refused it, and nothing is rolled out. The
// retry judged the prerequisites again, and rolled the region out with
// its commands closed: an abort sent during it was refused as one to a
// deployment that had ended FAILED, and the deployment ended SUCCESS.
func TestRefusalStandsWhenItsWriteFails(t *testing.T) {
	h := &sickServing{}
	h.sick.Store(true)
	f := &endWriteFault{
		match: func(rr RegionResult) bool { return rr.Status == StatusFailed && rr.Decision != "" },
		then:  func() { h.sick.Store(false) }, // the region heals before the retry
	}
	ts := withClosedEndFault(t, f, h)
	r := deploy(t, ts.URL, map[string]any{"service": "api-service", "version": "v2.0.0", "target_region": "us-west-2"})
	require.True(t, f.hit.Load(), "the refusal's write was refused")
	require.Equal(t, http.StatusUnprocessableEntity, r.Code, "%s", r.Body)
	d := r.deployment(t)
	assert.Equal(t, StatusFailed, d.Status)
	assert.Equal(t, StatusFailed, d.Results[0].Status)
	assert.Equal(t, "region_health", d.Results[0].Decision)
	assert.Contains(t, d.Results[0].ErrorMessage, "Region us-west-2 unhealthy before the change (api-service v1.0.0)")
	assert.Empty(t, d.Results[0].Stages, "no stage began")
	assert.Equal(t, "v1.0.0", stableOf(t, ts, "api-service", "us-west-2"), "nothing rolled out")
	m := do(t, "GET", ts.URL+"/metrics", nil).Body
	assert.Equal(t, `taikit_signals_total{kind="deployment",outcome="denied"} 1`,
		sampleLine(m, `taikit_signals_total{kind="deployment",outcome="denied"}`), "counted once, as refused")
}

// TestSuccessStandsWhenItsWriteFails: the last region of a deployment
// passes its last stage and has its deployment's commands closed to end
// SUCCESS (a command sent from then on is refused as too late:
// already_succeeded), and then the write of its success fails (the store
// refuses it), so that its job is tried again. The success stands: the
// region ends SUCCESS, its last stage passed and its version serving.
// The retry took the region for a rollout cut off, and rolled it back
// under commands closed to end SUCCESS: the deployment ended ROLLED_BACK.
func TestSuccessStandsWhenItsWriteFails(t *testing.T) {
	f := &endWriteFault{match: func(rr RegionResult) bool { return rr.Status == StatusSuccess }}
	ts := withClosedEndFault(t, f, nil)
	r := deploy(t, ts.URL, map[string]any{"service": "api-service", "version": "v2.0.0", "target_region": "us-west-2"})
	require.True(t, f.hit.Load(), "the success's write was refused")
	require.Equal(t, http.StatusOK, r.Code, "%s", r.Body)
	d := r.deployment(t)
	assert.Equal(t, StatusSuccess, d.Status)
	assert.Equal(t, StatusSuccess, d.Results[0].Status)
	assert.Equal(t, 100.0, d.Results[0].Percent)
	assert.Equal(t, []string{"validation", "canary", "staging", "prod"}, d.StagesCompleted)
	require.Len(t, d.Results[0].Stages, 3)
	last := d.Results[0].Stages[2]
	assert.Equal(t, "prod", last.Name)
	assert.Equal(t, "passed", last.Verdict)
	assert.NotNil(t, last.EndedAt)
	assert.Equal(t, "v2.0.0", stableOf(t, ts, "api-service", "us-west-2"))
}

// withClosedEndFault starts the service with quick retries, the
// deployments bucket f, and the health source h (nil: the fleet's).
func withClosedEndFault(t *testing.T, f *endWriteFault, h *sickServing) *testService {
	t.Helper()
	return startServiceWith(t, t.TempDir(), func(c *Config) {
		c.JobBackoff = kanban.BackoffFunc(func(int) time.Duration { return time.Millisecond })
		c.WrapDeployments = f.wrap
		if h != nil {
			c.WrapHealth = func(inner fleet.Health) fleet.Health { h.Health = inner; return h }
		}
	}, fastArgs...)
}
