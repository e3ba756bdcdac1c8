package main

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/kanban"
	"github.com/taipattern/taikit/kanban/natsembed"
	"github.com/taipattern/taikit/kanban/natsjs"
)

// simSplit is the simulated fleet's Split: how a service's traffic in a
// region is routed.
type simSplit interface {
	Split(service, region string) (stable, next string, percent float64)
}

// inCanary stores deployment d, stored pending by startedAt, with its
// region index rolling out version over previous at a 5% canary, as a
// run cut off there left it, and sends the fleet's traffic so.
func inCanary(t *testing.T, ts *testService, d *Deployment, index int, previous string) {
	t.Helper()
	got, rev, err := ts.store.Get(t.Context(), d.ID)
	require.NoError(t, err)
	now := time.Now().UTC()
	rr := &got.Results[index]
	rr.Status, rr.Stage, rr.Previous, rr.Percent, rr.StartedAt = StatusInProgress, "canary", previous, 5, &now
	rr.Stages = []StageResult{{Name: "canary", Percent: 5, StartedAt: now, Samples: []HealthSample{}}}
	_, err = ts.store.Update(t.Context(), got, rev)
	require.NoError(t, err)
	ctx := t.Context()
	require.NoError(t, ts.target.Deploy(ctx, got.Service, rr.Region, got.Version, ts.catalog.Instances(got.Service)))
	require.NoError(t, ts.target.Route(ctx, got.Service, rr.Region, previous, got.Version, 5))
}

// TestJobDeliveredPastItsAttempts: a job delivered once more than its
// attempts (its 10th delivery cut off by a restart, its region at the
// canary) ends its deployment as a job given up on its last attempt
// does: FAILED, counted and in the audit trail once, the region rolled
// back and every region freed. The queue dead-lettered it without its
// handler running, and the deployment stayed in progress, the new
// version taking its share of the traffic, until another deployment
// asked for one of its regions.
func TestJobDeliveredPastItsAttempts(t *testing.T) {
	srv, err := natsembed.Start(t.Context(), natsembed.Options{StoreDir: t.TempDir()})
	require.NoError(t, err)
	t.Cleanup(func() { _ = srv.Shutdown(context.Background()) })
	args := append(append([]string{}, fastArgs...), "-nats-url", srv.ClientURL())

	// The deployment, stored with its region at the canary by a first
	// replica, which stops.
	a := startServiceIn(t, t.TempDir(), args...)
	d := startedAt(t, a, "api-service", "v2.0.0", time.Now(), "us-west-2")
	got, rev, err := a.store.Get(t.Context(), d.ID)
	require.NoError(t, err)
	now := time.Now().UTC()
	rr := &got.Results[0]
	rr.Status, rr.Stage, rr.Previous, rr.Percent, rr.StartedAt = StatusInProgress, "canary", "v1.0.0", 5, &now
	rr.Stages = []StageResult{{Name: "canary", Percent: 5, StartedAt: now, Samples: []HealthSample{}}}
	_, err = a.store.Update(t.Context(), got, rev)
	require.NoError(t, err)
	opts := a.queueOptions()
	// The durable the deliveries below are taken from is made by the
	// replica's consumer, which starts after the service does: a replica
	// stopped before would leave none.
	require.Eventually(t, func() bool {
		_, err := a.js.Consumer(t.Context(), queueStream, opts.Durable)
		return err == nil
	}, 10*time.Second, 5*time.Millisecond, "the replica's consumer never made its durable")
	a.shutdown()

	// Its job, delivered ten times and never settled.
	nc, err := nats.Connect(srv.ClientURL())
	require.NoError(t, err)
	defer nc.Close()
	q, err := natsjs.New[Job](t.Context(), nc, opts)
	require.NoError(t, err)
	require.NoError(t, q.Publish(t.Context(), kanban.Message[Job]{
		ID: jobID(d.ID, 0), Key: "api-service/us-west-2", Payload: Job{ID: d.ID, Index: 0, Region: "us-west-2"},
	}))
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	cons, err := js.Consumer(t.Context(), queueStream, opts.Durable)
	require.NoError(t, err)
	for i := range jobAttempts {
		m, err := cons.Next(jetstream.FetchMaxWait(10 * time.Second))
		require.NoError(t, err, "delivery %d", i+1)
		require.NoError(t, m.Nak())
	}

	// A replica started now gets its 11th delivery.
	b := startServiceIn(t, t.TempDir(), args...)
	deadline := time.Now().Add(30 * time.Second)
	for {
		queued, err := b.jobQueued(t.Context(), d.ID, -1)
		require.NoError(t, err)
		if !queued {
			break
		}
		require.True(t, time.Now().Before(deadline), "the job never left the queue")
		time.Sleep(10 * time.Millisecond)
	}
	end, _, err := b.store.Get(t.Context(), d.ID)
	require.NoError(t, err)
	require.Equal(t, StatusFailed, end.Status, "%+v", end)
	assert.Equal(t, StatusFailed, end.Results[0].Status)
	assert.Contains(t, end.Results[0].ErrorMessage, "Job given up after 10 attempts: ")
	assert.Contains(t, end.Results[0].ErrorMessage, "rolled back to v1.0.0")
	assert.Zero(t, end.Results[0].Percent)
	assert.Equal(t, 1, deploymentEnds(t, b, d.ID), "the end is in the audit trail")
	assert.Equal(t, 1.0, testutil.ToFloat64(b.metrics.failed.WithLabelValues(Canary)), "the end is counted")
	stable, next, _ := b.target.(simSplit).Split("api-service", "us-west-2")
	assert.Equal(t, "v1.0.0", stable)
	assert.Empty(t, next, "the traffic is back on the version before")
	r := deploy(t, b.URL, map[string]any{"service": "api-service", "version": "v2.1.0", "target_region": "us-west-2"})
	assert.Equal(t, 200, r.Code, "%s", r.Body)
}

// TestGivenUpRegionRolledBack: a region whose job was given up while its
// rollout was in progress (its last attempt refused as a conflict, or its
// job dead-lettered) is rolled back: the traffic goes back to the version
// before and the new one is retired. It was left as it was, the new
// version taking its share of the traffic, its reason saying it "may
// still take traffic".
func TestGivenUpRegionRolledBack(t *testing.T) {
	for _, tc := range []struct {
		name string
		end  func(t *testing.T, ts *testService, d *Deployment)
	}{
		{"given up on its last attempt", func(t *testing.T, ts *testService, d *Deployment) {
			require.True(t, ts.giveUp(t.Context(), Job{ID: d.ID, Index: 0, Region: "us-west-2"}, errors.New("store out of reach")))
		}},
		{"dead-lettered", func(t *testing.T, ts *testService, d *Deployment) {
			// Another deployment asks for its region.
			r := deploy(t, ts.URL, map[string]any{"service": "api-service", "version": "v2.1.0", "target_region": "us-west-2"}, "Prefer", "respond-async")
			require.Equal(t, 202, r.Code, "%s", r.Body)
			waitFor(t, ts.URL, r.deployment(t).ID, ended)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ts := startService(t, fastArgs...)
			d := startedAt(t, ts, "api-service", "v2.0.0", time.Now(), "us-west-2")
			inCanary(t, ts, d, 0, "v1.0.0")
			tc.end(t, ts, d)
			got := do(t, "GET", ts.URL+"/deploy/"+d.ID, nil).deployment(t)
			require.Equal(t, StatusFailed, got.Status)
			assert.Contains(t, got.Results[0].ErrorMessage, "rolled back to v1.0.0")
			assert.NotContains(t, got.Results[0].ErrorMessage, "may still take traffic")
			assert.Zero(t, got.Results[0].Percent)
			require.Len(t, got.Results[0].Stages, 1)
			assert.Equal(t, "interrupted", got.Results[0].Stages[0].Verdict, "the stage cut off ends")
			assert.Equal(t, 1, deploymentEnds(t, ts, d.ID))
			assert.Contains(t, stageCounts(t, ts.URL), `deployment_stage_duration_seconds_count{stage="canary",strategy="canary",verdict="interrupted"} 1`,
				"the stage cut off is timed in the metrics")
			if tc.name == "given up on its last attempt" {
				stable, next, _ := ts.target.(simSplit).Split("api-service", "us-west-2")
				assert.Equal(t, "v1.0.0", stable)
				assert.Empty(t, next, "the traffic is back on the version before")
				assert.NotContains(t, ts.target.(interface{ Versions(string, string) []string }).Versions("api-service", "us-west-2"), "v2.0.0", "the new version is retired")
			}
		})
	}
}

// TestGivenUpAfterARollbackFails: a deployment with continue_on_failure
// whose job is given up after an earlier region rolled back ends FAILED,
// as every deployment given up does, its message the region given up's.
// It ended ROLLED_BACK, as if the rollback had been its end.
func TestGivenUpAfterARollbackFails(t *testing.T) {
	ts := startService(t, fastArgs...)
	d := startedAt(t, ts, "api-service", "v2.0.0", time.Now(), "us-west-2", "us-east-1")
	got, rev, err := ts.store.Get(t.Context(), d.ID)
	require.NoError(t, err)
	now := time.Now().UTC()
	got.ContinueOn = true
	got.Results[0].Status, got.Results[0].ErrorMessage, got.Results[0].CompletedAt = StatusRolledBack, "Error rate 7.20% exceeds threshold 5.00%", &now
	_, err = ts.store.Update(t.Context(), got, rev)
	require.NoError(t, err)

	require.True(t, ts.giveUp(t.Context(), Job{ID: d.ID, Index: 1, Region: "us-east-1"}, errors.New("store out of reach")))
	end := do(t, "GET", ts.URL+"/deploy/"+d.ID, nil).deployment(t)
	assert.Equal(t, StatusFailed, end.Status)
	assert.Equal(t, []string{StatusRolledBack, StatusFailed}, regionStatuses(end))
	require.NotNil(t, end.ErrorMessage)
	assert.Contains(t, *end.ErrorMessage, "us-east-1: Job given up after 10 attempts: ")
	assert.Equal(t, 1.0, testutil.ToFloat64(ts.metrics.failed.WithLabelValues(Canary)), "counted as failed")
	assert.Zero(t, testutil.ToFloat64(ts.metrics.rollback.WithLabelValues(Canary)), "not as rolled back")
}

// TestNotQueuedRegionCompleted: a deployment whose first region was never
// queued (its publish failed, or the process stopped between storing it
// and queueing the region) gives that region, ended FAILED, the time it
// ended, as every region that ends has. Its completed_at stayed null, as
// for a region still running.
func TestNotQueuedRegionCompleted(t *testing.T) {
	ts := startService(t, fastArgs...)
	cut := startedAt(t, ts, "auth", "v2.0.0", time.Now().Add(-time.Hour), "us-west-2")
	r := deploy(t, ts.URL, map[string]any{"service": "auth", "version": "v2.0.0", "target_region": "us-west-2"})
	require.Equal(t, 200, r.Code, "%s", r.Body)
	d := do(t, "GET", ts.URL+"/deploy/"+cut.ID, nil).deployment(t)
	require.Equal(t, StatusFailed, d.Results[0].Status)
	require.NotNil(t, d.Results[0].CompletedAt, "the region's end has its time")
	require.NotNil(t, d.CompletedAt)
	assert.Equal(t, *d.CompletedAt, *d.Results[0].CompletedAt)
}
