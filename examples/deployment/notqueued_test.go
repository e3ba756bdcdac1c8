package main

import (
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/examples/deployment/internal/fleet"
	"github.com/taipattern/taikit/kanban"
)

// startedAt stores a deployment of version of service to regions as a
// request does (its regions taken, its record stored in progress, every
// region pending), started at startedAt (its regions taken then, as the
// NATS server's clock tells), and queues nothing: the state
// a process killed between storing a deployment and queueing its first
// region leaves.
func startedAt(t *testing.T, ts *testService, service, version string, startedAt time.Time, regions ...string) *Deployment {
	t.Helper()
	d := &Deployment{
		ID: newDeploymentID(), Service: service, Version: version, TargetRegion: regions[0], Regions: regions,
		Strategy: Canary, Status: StatusInProgress, StartedAt: startedAt.UTC(), StagesCompleted: []string{},
		RegionsDone: []string{}, Analysis: thresholdsOf(ts.cfg.Analysis),
	}
	for _, reg := range regions {
		d.Results = append(d.Results, RegionResult{Region: reg, Status: StatusPending, Stages: []StageResult{}})
		holder, _, err := ts.store.Lock(t.Context(), service, reg, d.ID)
		require.NoError(t, err)
		require.Empty(t, holder)
	}
	if age := time.Since(startedAt); age > 0 {
		ts.locksAged(d.ID, age) // its regions taken as it started
	}
	_, err := ts.store.Create(t.Context(), d)
	require.NoError(t, err)
	return d
}

// TestStartCutOffBeforeQueued: a deployment stored, its regions taken,
// whose first region was never queued (the process was killed between
// the two) ends FAILED when another deployment asks for one of its
// regions, once its start is over: nothing would ever run it. It stayed in
// progress for ever, and every later deployment of the service to its
// regions was refused with 409 deployment_active.
func TestStartCutOffBeforeQueued(t *testing.T) {
	ts := startService(t, fastArgs...)
	cut := startedAt(t, ts, "auth", "v2.0.0", time.Now().Add(-time.Hour), "us-west-2", "us-east-1")

	r := deploy(t, ts.URL, map[string]any{"service": "auth", "version": "v2.0.0", "target_region": "us-east-1"})
	require.Equal(t, http.StatusOK, r.Code, "%s", r.Body)
	assert.Equal(t, StatusSuccess, r.deployment(t).Status)

	d := do(t, "GET", ts.URL+"/deploy/"+cut.ID, nil).deployment(t)
	require.Equal(t, StatusFailed, d.Status)
	assert.Equal(t, StatusFailed, d.Results[0].Status)
	assert.Contains(t, d.Results[0].ErrorMessage, "Not queued: ")
	assert.Equal(t, StatusSkipped, d.Results[1].Status)
	assert.NotNil(t, d.CompletedAt)
	assert.Equal(t, 1.0, testutil.ToFloat64(ts.metrics.failed.WithLabelValues(Canary)), "the end is counted")
	// Every region it held is free again, not only the one asked for.
	r = deploy(t, ts.URL, map[string]any{"service": "auth", "version": "v2.0.0", "target_region": "us-west-2"})
	require.Equal(t, http.StatusOK, r.Code, "%s", r.Body)
	require.NoError(t, ts.audit.Flush(t.Context()))
	var ends int
	for _, line := range auditLines(t, filepath.Join(ts.cfg.DataDir, "audit-test.jsonl")) {
		if line.ID == cut.ID && line.Kind == "deployment.end" {
			ends++
		}
	}
	assert.Equal(t, 1, ends, "the end is in the audit trail")
}

// TestQueuedStartHoldsItsRegions: a deployment whose first region is
// queued, waiting for a worker or being judged by one, holds its regions
// however long ago it started: another deployment of the service to them
// is refused with 409, and the one queued is not ended.
func TestQueuedStartHoldsItsRegions(t *testing.T) {
	for _, at := range []string{"waiting", "judged"} {
		t.Run(at, func(t *testing.T) {
			gate := &startGate{fleetLog: &fleetLog{}, at: "prerequisites", held: make(chan struct{}), release: make(chan struct{})}
			releaseAll := sync.OnceFunc(func() { close(gate.release) })
			defer releaseAll()
			ts := startServiceWith(t, t.TempDir(), func(c *Config) {
				c.WrapTarget = func(t fleet.Target) fleet.Target { gate.Target = t; return gate }
				c.WrapHealth = gate.Health
			}, "-workers", "1", "-stages", "canary:5:0s,prod:100:0s", "-health-interval", "25ms", "-min-requests", "0")
			if at == "waiting" {
				// The one worker is held judging another deployment.
				deploy(t, ts.URL, map[string]any{"service": "search", "version": "v2.0.0", "target_region": "us-west-2"}, "Prefer", "respond-async")
				<-gate.held
			}
			queued := startedAt(t, ts, "auth", "v2.0.0", time.Now().Add(-time.Hour), "us-west-2")
			require.NoError(t, ts.publishJob(t.Context(), queued, 0))
			if at == "judged" {
				<-gate.held
			}

			r := deploy(t, ts.URL, map[string]any{"service": "auth", "version": "v2.0.0", "target_region": "us-west-2"}, "Prefer", "respond-async")
			require.Equal(t, http.StatusConflict, r.Code, "%s", r.Body)
			assert.Equal(t, "deployment_active", r.errorBody(t)["code"])
			d := do(t, "GET", ts.URL+"/deploy/"+queued.ID, nil).deployment(t)
			assert.Equal(t, StatusInProgress, d.Status)

			releaseAll()
			assert.Equal(t, StatusSuccess, waitFor(t, ts.URL, queued.ID, ended).Status)
		})
	}
}

// TestRedeliveredJobQueuesTheNextRegionOnce: a region's job delivered
// again after it queued the wave's next region (the process killed
// before it acknowledged the job, or its lease lapsed) does not queue that
// region again when its job has begun or waits in the queue. Queued
// again, it relied on the stream's duplicate window (ten minutes): a
// redelivery later than that, behind a full queue or after every replica
// was down, queued a second job for the region, and a replica that took
// it up while another ran the first rolled that rollout back as one cut
// off by a restart. So is a second job of a region that had ended before
// it was delivered (queued again past the duplicate window by a delivery
// that could not read the queue), delivered for the first time: it queued
// the next region as the first delivery of a job that ran its region does.
func TestRedeliveredJobQueuesTheNextRegionOnce(t *testing.T) {
	for _, tc := range []struct {
		name    string
		attempt int
	}{{"redelivered/queued", 2}, {"redelivered/begun", 2}, {"second job/queued", 1}, {"second job/begun", 1}} {
		next := tc.name[strings.IndexByte(tc.name, '/')+1:]
		t.Run(tc.name, func(t *testing.T) {
			var mu sync.Mutex
			armed, published := false, 0
			gate := &startGate{fleetLog: &fleetLog{}, at: "prerequisites", held: make(chan struct{}), release: make(chan struct{})}
			releaseAll := sync.OnceFunc(func() { close(gate.release) })
			defer releaseAll()
			ts := startServiceWith(t, t.TempDir(), func(c *Config) {
				c.WrapTarget = func(t fleet.Target) fleet.Target { gate.Target = t; return gate }
				c.WrapHealth = gate.Health
				c.PublishFault = func(j Job, publish func() error) error {
					mu.Lock()
					if armed && j.Index == 1 {
						published++
					}
					mu.Unlock()
					return publish()
				}
			}, "-workers", "1", "-stages", "canary:5:0s,prod:100:0s", "-health-interval", "25ms", "-min-requests", "0")
			// The one worker is held judging another deployment.
			deploy(t, ts.URL, map[string]any{"service": "search", "version": "v2.0.0", "target_region": "us-west-2"}, "Prefer", "respond-async")
			<-gate.held

			// A wave whose first region has succeeded, and whose second
			// was queued (waiting for the worker), or has begun.
			d := startedAt(t, ts, "auth", "v2.0.0", time.Now().Add(-time.Minute), "us-west-2", "us-east-1")
			got, rev, err := ts.store.Get(t.Context(), d.ID)
			require.NoError(t, err)
			now := time.Now().UTC()
			got.Results[0].Status, got.Results[0].Previous, got.Results[0].CompletedAt = StatusSuccess, "v2.0.0", &now
			if next == "begun" {
				got.Results[1].Status, got.Results[1].Previous = StatusInProgress, "v1.0.0"
			}
			_, err = ts.store.Update(t.Context(), got, rev)
			require.NoError(t, err)
			if next == "queued" {
				require.NoError(t, ts.publishJob(t.Context(), got, 1))
			}
			mu.Lock()
			armed = true
			mu.Unlock()

			// The first region's job, delivered again, or a second job of
			// it delivered for the first time.
			require.NoError(t, ts.handleJob(t.Context(), kanban.Delivery[Job]{
				Message: kanban.Message[Job]{ID: jobID(d.ID, 0), Key: "auth/us-west-2", Payload: Job{ID: d.ID, Index: 0, Region: "us-west-2"}}, Attempt: tc.attempt,
			}))
			mu.Lock()
			assert.Zero(t, published, "the next region's job was published again")
			mu.Unlock()
		})
	}
}

// TestStartCutOffDropsItsCommands: a command sent to a deployment whose
// start was cut off before its first region was queued (an abort, as a
// person would send to a deployment that never moves) is dropped when
// the deployment ends: no run takes it. It was kept by the store and by
// every replica for ever.
func TestStartCutOffDropsItsCommands(t *testing.T) {
	const admin = "admin-token-0123456789"
	ts := startService(t, append(slices.Clone(fastArgs), "-admin-token", admin)...)
	cut := startedAt(t, ts, "auth", "v2.0.0", time.Now().Add(-time.Hour), "us-west-2")
	r := do(t, "POST", ts.URL+"/deploy/"+cut.ID+"/abort", map[string]string{"reason": "stuck"}, "Authorization", "Bearer "+admin)
	require.Equal(t, http.StatusAccepted, r.Code, "%s", r.Body)
	require.Eventually(t, func() bool { _, ok := ts.pendingCommand(cut.ID); return ok }, 10*time.Second, time.Millisecond)

	r = deploy(t, ts.URL, map[string]any{"service": "auth", "version": "v2.0.0", "target_region": "us-west-2"}, "Prefer", "respond-async")
	require.Equal(t, http.StatusAccepted, r.Code, "%s", r.Body)
	assert.Equal(t, StatusFailed, do(t, "GET", ts.URL+"/deploy/"+cut.ID, nil).deployment(t).Status)
	_, err := ts.store.control.Get(t.Context(), "cmd."+cut.ID)
	assert.ErrorIs(t, err, jetstream.ErrKeyNotFound, "the command is still stored")
	assert.Eventually(t, func() bool { _, ok := ts.pendingCommand(cut.ID); return !ok }, 10*time.Second, time.Millisecond,
		"the command is still pending")
}

// TestRedeliveredJobLeavesAnAbortToTheNextRegion: a region's job delivered
// again while its deployment has an abort pending, after the wave's next
// region has begun (or ended, the one after it running), leaves the
// abort to the run of the region in progress, which rolls it back. It
// recorded the next region ROLLED_BACK, "Aborted", as one that never
// began, and ended the deployment: the run in progress then found its
// record moved on and stopped without rolling back, the new version left
// taking traffic in a region the record showed rolled back.
//
// So does, with continue_on_failure, a job whose region failed: it
// recorded every region after its own SKIPPED, the one in progress and
// the one that succeeded too, and ended the deployment.
func TestRedeliveredJobLeavesAnAbortToTheNextRegion(t *testing.T) {
	const admin = "admin-token-0123456789"
	for _, first := range []string{"succeeded", "failed"} {
		for _, next := range []string{"begun", "ended"} {
			t.Run(first+"/"+next, func(t *testing.T) {
				ts := startService(t, append(slices.Clone(fastArgs), "-admin-token", admin)...)
				d := startedAt(t, ts, "auth", "v2.0.0", time.Now().Add(-time.Minute), "us-west-2", "us-east-1", "eu-west-1")
				got, rev, err := ts.store.Get(t.Context(), d.ID)
				require.NoError(t, err)
				now := time.Now().UTC()
				firstStatus := StatusSuccess
				got.Results[0].Status, got.Results[0].Previous, got.Results[0].CompletedAt = StatusSuccess, "v2.0.0", &now
				if first == "failed" {
					firstStatus = StatusRolledBack
					got.ContinueOn = true
					got.Results[0].Status, got.Results[0].Previous, got.Results[0].ErrorMessage = StatusRolledBack, "v1.0.0", "health failed"
				}
				running := 1
				if next == "ended" {
					got.Results[1].Status, got.Results[1].Previous, got.Results[1].CompletedAt = StatusSuccess, "v1.0.0", &now
					running = 2
				}
				got.Results[running].Status, got.Results[running].Previous, got.Results[running].Stage = StatusInProgress, "v1.0.0", "canary"
				_, err = ts.store.Update(t.Context(), got, rev)
				require.NoError(t, err)
				r := do(t, "POST", ts.URL+"/deploy/"+d.ID+"/abort", map[string]string{"reason": "stop"}, "Authorization", "Bearer "+admin)
				require.Equal(t, http.StatusAccepted, r.Code, "%s", r.Body)
				require.Eventually(t, func() bool { _, ok := ts.pendingCommand(d.ID); return ok }, 10*time.Second, time.Millisecond)

				// The first region's job, delivered again.
				require.NoError(t, ts.handleJob(t.Context(), kanban.Delivery[Job]{
					Message: kanban.Message[Job]{ID: jobID(d.ID, 0), Key: "auth/us-west-2", Payload: Job{ID: d.ID, Index: 0, Region: "us-west-2"}}, Attempt: 2,
				}))
				after, _, err := ts.store.Get(t.Context(), d.ID)
				require.NoError(t, err)
				assert.Equal(t, StatusInProgress, after.Status, "the deployment ended")
				assert.Equal(t, firstStatus, after.Results[0].Status)
				if next == "ended" {
					assert.Equal(t, StatusSuccess, after.Results[1].Status, "the region that succeeded is recorded otherwise")
				}
				assert.Equal(t, StatusInProgress, after.Results[running].Status, "the region in progress is recorded otherwise")
				_, ok := ts.pendingCommand(d.ID)
				assert.True(t, ok, "the abort is no longer pending")
			})
		}
	}
}

// TestRedeliveredJobLeavesAnAbortToTheNextRegionStarting: a region's job
// delivered again while its deployment has an abort pending, after the
// wave's next region was queued and its run has begun to start the new
// version (the record shows the region pending until the run's first
// stage), leaves the abort to that run, which rolls the region back and
// retires the new version. It recorded the region ROLLED_BACK, "Aborted",
// as one that never began, and ended the deployment: the run then found
// its record moved on and stopped without rolling back, the new version
// left running in a region the record showed it never reached.
func TestRedeliveredJobLeavesAnAbortToTheNextRegionStarting(t *testing.T) {
	const admin = "admin-token-0123456789"
	gate := &startGate{fleetLog: &fleetLog{}, at: "start", held: make(chan struct{}), release: make(chan struct{})}
	releaseAll := sync.OnceFunc(func() { close(gate.release) })
	defer releaseAll()
	ts := startServiceWith(t, t.TempDir(), func(c *Config) {
		c.WrapTarget = func(t fleet.Target) fleet.Target { gate.Target = t; return gate }
	}, "-stages", "canary:5:0s,prod:100:0s", "-health-interval", "25ms", "-min-requests", "0", "-admin-token", admin)
	d := startedAt(t, ts, "auth", "v2.0.0", time.Now().Add(-time.Minute), "us-west-2", "us-east-1")
	got, rev, err := ts.store.Get(t.Context(), d.ID)
	require.NoError(t, err)
	now := time.Now().UTC()
	got.Results[0].Status, got.Results[0].Previous, got.Results[0].CompletedAt = StatusSuccess, "v1.0.0", &now
	_, err = ts.store.Update(t.Context(), got, rev)
	require.NoError(t, err)
	// The next region, queued by the first region's job: its run starts
	// the new version.
	require.NoError(t, ts.publishJob(t.Context(), got, 1))
	<-gate.held

	r := do(t, "POST", ts.URL+"/deploy/"+d.ID+"/abort", map[string]string{"reason": "stop"}, "Authorization", "Bearer "+admin)
	require.Equal(t, http.StatusAccepted, r.Code, "%s", r.Body)
	require.Eventually(t, func() bool { _, ok := ts.pendingCommand(d.ID); return ok }, 10*time.Second, time.Millisecond)

	// The first region's job, delivered again.
	require.NoError(t, ts.handleJob(t.Context(), kanban.Delivery[Job]{
		Message: kanban.Message[Job]{ID: jobID(d.ID, 0), Key: "auth/us-west-2", Payload: Job{ID: d.ID, Index: 0, Region: "us-west-2"}}, Attempt: 2,
	}))
	// A run reads its record again before it moves the fleet once
	// recheckAfter has passed since it last read or wrote it.
	time.Sleep(recheckAfter)

	// The run goes on.
	releaseAll()
	end := waitFor(t, ts.URL, d.ID, ended)
	require.Eventually(t, func() bool { return testutil.ToFloat64(ts.metrics.active) == 0 },
		10*time.Second, time.Millisecond, "the run never stopped")
	assert.Equal(t, StatusRolledBack, end.Status)
	assert.Equal(t, StatusSuccess, end.Results[0].Status)
	assert.Equal(t, StatusRolledBack, end.Results[1].Status)
	assert.Equal(t, "Aborted: stop", end.Results[1].ErrorMessage)
	sim := gate.Target.(interface{ Versions(string, string) []string })
	assert.NotContains(t, sim.Versions("auth", "us-east-1"), "v2.0.0", "the new version is left running")
	assert.Equal(t, "v1.0.0", stableOf(t, ts, "auth", "us-east-1"))
}
