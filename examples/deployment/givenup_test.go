package main

import (
	"context"
	"errors"
	"net/http"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/examples/deployment/internal/fleet"
	"github.com/taipattern/taikit/kanban"
)

// regionTarget is a fleet whose Route asks route first, with the
// region; route is called under the target's lock, so it may keep state.
type regionTarget struct {
	fleet.Target
	mu    sync.Mutex
	route func(region string, percent float64) error
}

func (f *regionTarget) Route(ctx context.Context, service, region, stable, next string, percent float64) error {
	f.mu.Lock()
	err := f.route(region, percent)
	f.mu.Unlock()
	if err != nil {
		return err
	}
	return f.Target.Route(ctx, service, region, stable, next, percent)
}

// deploymentEnds counts the deployment.end lines of deployment id in the
// audit trail of ts, once there is one (or 10 s have passed): a
// deployment's end is counted and audited once it is stored, a moment
// after its record reads ended, so a trail read at once can miss it. The
// end's metrics are counted before it is audited: read after this, they
// hold it.
func deploymentEnds(t *testing.T, ts *testService, id string) int {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		require.NoError(t, ts.audit.Flush(t.Context()))
		n := 0
		for _, line := range auditLines(t, filepath.Join(ts.cfg.DataDir, "audit-test.jsonl")) {
			if line.ID == id && line.Kind == "deployment.end" {
				n++
			}
		}
		if n > 0 || time.Now().After(deadline) {
			return n
		}
	}
}

// TestNextRegionJobGivenUp: the next region's job of a wave, failing on
// nine attempts and refused as a conflict on its last (a replica racing
// it wrote the record), ends the deployment FAILED, saying the region's
// job was given up, counted and in the audit trail once, its regions
// free. The queue dead-lettered the job and the deployment stayed in
// progress for ever, its regions taken. A redelivery of the job, or a
// second give-up of it, neither ends it again nor brings it back.
func TestNextRegionJobGivenUp(t *testing.T) {
	var ts *testService
	stableRoutes := 0
	ts = startServiceWith(t, t.TempDir(), func(c *Config) {
		c.JobBackoff = kanban.BackoffFunc(func(int) time.Duration { return time.Millisecond })
		c.WrapTarget = func(f fleet.Target) fleet.Target {
			return &regionTarget{Target: f, route: func(region string, percent float64) error {
				if region != "us-east-1" || percent != 0 {
					return nil
				}
				// The version serving's routing, before the region's
				// rollout starts.
				stableRoutes++
				switch {
				case stableRoutes < jobAttempts:
					return errRouting
				case stableRoutes == jobAttempts:
					// The last attempt: a replica racing it writes the
					// record, and the attempt's own write is refused.
					ds, err := ts.store.List(context.Background(), func(d *Deployment) bool { return !terminal(d.Status) })
					if err != nil || len(ds) != 1 {
						return errors.Join(err, errors.New("no single deployment in progress"))
					}
					d, rev, err := ts.store.Get(context.Background(), ds[0].ID)
					if err != nil {
						return err
					}
					_, err = ts.store.Update(context.Background(), d, rev)
					return err
				}
				return nil
			}}
		}
	}, fastArgs...)
	r := deploy(t, ts.URL, map[string]any{"service": "api-service", "version": "v2.0.0", "target_regions": []string{"us-west-2", "us-east-1", "eu-west-1"}}, "Prefer", "respond-async")
	require.Equal(t, http.StatusAccepted, r.Code, "%s", r.Body)
	id := r.deployment(t).ID
	d := waitFor(t, ts.URL, id, ended)
	assert.Equal(t, StatusFailed, d.Status)
	assert.Equal(t, []string{StatusSuccess, StatusFailed, StatusSkipped}, regionStatuses(d))
	assert.Equal(t, []string{"us-west-2"}, d.RegionsDone)
	assert.Contains(t, d.Results[1].ErrorMessage, "Job given up after 10 attempts: ")
	require.NotNil(t, d.ErrorMessage)
	assert.Contains(t, *d.ErrorMessage, "us-east-1: Job given up after 10 attempts: ")
	assert.NotNil(t, d.CompletedAt)
	assert.Equal(t, 1, deploymentEnds(t, ts, id), "the end is in the audit trail")
	assert.Equal(t, 1.0, testutil.ToFloat64(ts.metrics.failed.WithLabelValues(Canary)), "the end is counted")

	// A redelivery of the job, and a second give-up of it (a replica
	// whose lease on its last attempt lapsed), change nothing.
	_, rev, err := ts.store.Get(t.Context(), id)
	require.NoError(t, err)
	job := Job{ID: id, Index: 1, Region: "us-east-1"}
	require.NoError(t, ts.handleJob(t.Context(), kanban.Delivery[Job]{Message: kanban.Message[Job]{ID: jobID(id, 1), Payload: job}, Attempt: jobAttempts}))
	assert.False(t, ts.giveUp(t.Context(), job, errors.New("a second give-up")))
	again, rev2, err := ts.store.Get(t.Context(), id)
	require.NoError(t, err)
	assert.Equal(t, rev, rev2, "the record is not written again")
	assert.Equal(t, StatusFailed, again.Status)
	assert.Equal(t, 1.0, testutil.ToFloat64(ts.metrics.failed.WithLabelValues(Canary)), "counted once")
	assert.Equal(t, 1, deploymentEnds(t, ts, id), "in the audit trail once")

	// Its regions are free: the next deployment is not refused as a
	// conflict.
	for _, region := range []string{"us-west-2", "us-east-1", "eu-west-1"} {
		r := deploy(t, ts.URL, map[string]any{"service": "api-service", "version": "v2.1.0", "target_region": region})
		assert.Equal(t, http.StatusOK, r.Code, "%s: %s", region, r.Body)
	}
}

// TestDeadLetteredRegionFreed: a deployment whose next region's job left
// the queue without ending it (dead-lettered while its store was out of
// reach, or delivered once more than its attempts after a restart cut
// its last off) ends FAILED when another deployment asks for one of its
// regions, saying its job was given up, and frees every region it held.
// It stayed in progress for ever, and every later deployment of the
// service to its regions was refused with 409 deployment_active.
func TestDeadLetteredRegionFreed(t *testing.T) {
	ts := startService(t, fastArgs...)
	stuck := startedAt(t, ts, "auth", "v2.0.0", time.Now(), "us-west-2", "us-east-1")
	d, rev, err := ts.store.Get(t.Context(), stuck.ID)
	require.NoError(t, err)
	now := time.Now().UTC()
	d.Results[0].Status, d.Results[0].CompletedAt = StatusSuccess, &now
	_, err = ts.store.Update(t.Context(), d, rev)
	require.NoError(t, err)

	r := deploy(t, ts.URL, map[string]any{"service": "auth", "version": "v2.0.0", "target_region": "us-east-1"})
	require.Equal(t, http.StatusOK, r.Code, "%s", r.Body)
	assert.Equal(t, StatusSuccess, r.deployment(t).Status)

	got := do(t, "GET", ts.URL+"/deploy/"+stuck.ID, nil).deployment(t)
	require.Equal(t, StatusFailed, got.Status)
	assert.Equal(t, []string{StatusSuccess, StatusFailed}, regionStatuses(got))
	assert.Contains(t, got.Results[1].ErrorMessage, "Job given up: ")
	assert.Equal(t, 1, deploymentEnds(t, ts, stuck.ID), "the end is in the audit trail")
	assert.Equal(t, 1.0, testutil.ToFloat64(ts.metrics.failed.WithLabelValues(Canary)), "the end is counted")
	// Every region it held is free again, not only the one asked for.
	r = deploy(t, ts.URL, map[string]any{"service": "auth", "version": "v2.0.0", "target_region": "us-west-2"})
	require.Equal(t, http.StatusOK, r.Code, "%s", r.Body)
}

// TestGiveUpLeavesAWaveMovedOn: a job given up after its region ended,
// its wave moved on to a region whose own job runs (a redelivery of the
// job, its first delivery having queued the next region and been cut off
// before its acknowledgement, failing on its last attempt with the store
// out of reach), does not end the deployment: the next region's run
// carries it on to its end. The give-up ended it FAILED, the running
// region with "Job given up", and that run, finding its record moved on,
// stopped with the new version taking its share of the traffic.
func TestGiveUpLeavesAWaveMovedOn(t *testing.T) {
	routing, release := make(chan struct{}), make(chan struct{})
	releaseAll := sync.OnceFunc(func() { close(release) })
	defer releaseAll()
	held := false
	ts := startServiceWith(t, t.TempDir(), func(c *Config) {
		c.WrapTarget = func(f fleet.Target) fleet.Target {
			return &regionTarget{Target: f, route: func(region string, percent float64) error {
				if region == "us-east-1" && percent == 5 && !held {
					held = true
					close(routing)
					<-release
				}
				return nil
			}}
		}
	}, fastArgs...)
	r := deploy(t, ts.URL, map[string]any{"service": "api-service", "version": "v2.0.0", "target_regions": []string{"us-west-2", "us-east-1"}}, "Prefer", "respond-async")
	require.Equal(t, http.StatusAccepted, r.Code, "%s", r.Body)
	id := r.deployment(t).ID
	<-routing // us-west-2 succeeded; us-east-1's canary is starting

	assert.False(t, ts.giveUp(t.Context(), Job{ID: id, Index: 0, Region: "us-west-2"}, errors.New("store out of reach")),
		"the deployment ended while the next region's job ran")
	releaseAll()
	d := waitFor(t, ts.URL, id, ended)
	assert.Equal(t, StatusSuccess, d.Status, "%+v", d)
	assert.Equal(t, []string{StatusSuccess, StatusSuccess}, regionStatuses(d))
	assert.Equal(t, 1, deploymentEnds(t, ts, id))
}
