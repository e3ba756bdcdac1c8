package main

import (
	"context"
	"fmt"
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

// fleetLog is a fleet that records the routes and retirements asked of
// it once armed.
type fleetLog struct {
	fleet.Target
	mu    sync.Mutex
	armed bool
	calls []string
}

func (f *fleetLog) Route(ctx context.Context, service, region, stable, next string, percent float64) error {
	f.record(fmt.Sprintf("route %s in %s: %v%% to %s", service, region, percent, next))
	return f.Target.Route(ctx, service, region, stable, next, percent)
}

func (f *fleetLog) Retire(ctx context.Context, service, region, version string) error {
	f.record(fmt.Sprintf("retire %s %s in %s", service, version, region))
	return f.Target.Retire(ctx, service, region, version)
}

func (f *fleetLog) record(call string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.armed {
		f.calls = append(f.calls, call)
	}
}

func (f *fleetLog) arm() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.armed = true
}

func (f *fleetLog) recorded() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.calls...)
}

// TestRunTakenOverLeavesTheFleet: a rollout whose job was taken up by
// another consumer while it still ran (its lease lapsed: the process was
// cut off from NATS, or stalled, longer than the queue's AckWait) has been
// rolled back there, its region ended and freed. When the first run goes
// on — its stage passes — it finds the record moved on and stops, leaving
// the fleet and the version serving as the rollback left them. It moved
// the traffic of its next stage to the version rolled back, or, past its
// last stage, retired the version the traffic had gone back to and
// recorded its own as the one serving, under a deployment recorded
// ROLLED_BACK: the next deployment would have rolled back to a version
// that no longer ran.
func TestRunTakenOverLeavesTheFleet(t *testing.T) {
	for _, stage := range []string{"canary", "prod"} {
		t.Run(stage, func(t *testing.T) {
			fl := &fleetLog{}
			stages := "canary:5:1h,prod:100:1h"
			if stage == "prod" {
				stages = "canary:5:0s,prod:100:1h" // the canary passes at once
			}
			ts := startServiceWith(t, t.TempDir(), func(c *Config) {
				c.WrapTarget = func(t fleet.Target) fleet.Target { fl.Target = t; return fl }
			}, "-stages", stages, "-health-interval", "25ms", "-min-requests", "0")
			id := deploy(t, ts.URL, map[string]any{"service": "auth", "version": "v2.0.0", "target_region": "us-west-2"},
				"Prefer", "respond-async").deployment(t).ID
			waitFor(t, ts.URL, id, func(d Deployment) bool { return d.Results[0].Stage == stage })
			v, ok := ts.runs.Load(id)
			require.True(t, ok, "the rollout runs here")
			run := v.(*rollout)

			// The job, redelivered as when its lease lapsed, is taken
			// up as another replica would: the region was in progress,
			// and is rolled back.
			job := Job{ID: id, Index: 0, Region: "us-west-2"}
			require.NoError(t, ts.handleJob(t.Context(), kanban.Delivery[Job]{
				Message: kanban.Message[Job]{ID: jobID(id, 0), Key: "auth/us-west-2", Payload: job}, Attempt: 2,
			}))
			d := waitFor(t, ts.URL, id, ended)
			require.Equal(t, StatusRolledBack, d.Status)
			require.Equal(t, "v1.0.0", stableOf(t, ts, "auth", "us-west-2"))
			fl.arm()
			// A lease lapses only after its run has been silent for the
			// queue's AckWait; a run reads its record again before it
			// moves the fleet once recheckAfter has passed since it last
			// read or wrote it.
			time.Sleep(recheckAfter)

			// The first run's stage passes.
			run.deliver(Command{Action: "promote", Stage: stage, At: time.Now(), Seq: 1 << 40})
			require.Eventually(t, func() bool { _, running := ts.runs.Load(id); return !running },
				10*time.Second, time.Millisecond, "the first run never stopped")

			assert.Empty(t, fl.recorded(), "the run went on with a region another had rolled back")
			assert.Equal(t, "v1.0.0", stableOf(t, ts, "auth", "us-west-2"), "the version serving after the rollback")
			d = do(t, "GET", ts.URL+"/deploy/"+id, nil).deployment(t)
			assert.Equal(t, StatusRolledBack, d.Status)
			assert.Contains(t, *d.ErrorMessage, "Interrupted at stage "+stage+" by a restart")
		})
	}
}

// firstRetireGate is a fleet whose first Retire waits until the test lets
// it go; later ones go through.
type firstRetireGate struct {
	fleet.Target
	first             atomic.Bool
	retiring, release chan struct{}
}

func (g *firstRetireGate) Retire(ctx context.Context, service, region, version string) error {
	if g.first.CompareAndSwap(false, true) {
		close(g.retiring)
		<-g.release
	}
	return g.Target.Retire(ctx, service, region, version)
}

// TestRedeliveredSuccessRetiresTheOldVersion: a region whose success is
// stored, and whose run stopped before it retired the version before (a
// crash between the two), has that version retired when its job is
// delivered again: it would run, idle, for as long as the region does.
func TestRedeliveredSuccessRetiresTheOldVersion(t *testing.T) {
	gate := &firstRetireGate{retiring: make(chan struct{}), release: make(chan struct{})}
	releaseAll := sync.OnceFunc(func() { close(gate.release) })
	defer releaseAll()
	ts := startServiceWith(t, t.TempDir(), func(c *Config) {
		c.WrapTarget = func(t fleet.Target) fleet.Target { gate.Target = t; return gate }
	}, fastArgs...)
	id := deploy(t, ts.URL, map[string]any{"service": "auth", "version": "v2.0.0", "target_regions": []string{"us-west-2", "us-east-1"}},
		"Prefer", "respond-async").deployment(t).ID
	<-gate.retiring
	d := do(t, "GET", ts.URL+"/deploy/"+id, nil).deployment(t)
	require.Equal(t, StatusSuccess, d.Results[0].Status, "the region's success is stored before the version before is retired")
	sim := gate.Target.(interface{ Versions(string, string) []string })
	require.Equal(t, []string{"v1.0.0", "v2.0.0"}, sim.Versions("auth", "us-west-2"))

	job := Job{ID: id, Index: 0, Region: "us-west-2"}
	require.NoError(t, ts.handleJob(t.Context(), kanban.Delivery[Job]{
		Message: kanban.Message[Job]{ID: jobID(id, 0), Key: "auth/us-west-2", Payload: job}, Attempt: 2,
	}))
	assert.Equal(t, []string{"v2.0.0"}, sim.Versions("auth", "us-west-2"), "the version before still runs")
	releaseAll()
	d = waitFor(t, ts.URL, id, ended)
	assert.Equal(t, StatusSuccess, d.Status)
}

// TestRedeliveredEndReleasesTheRegions: a job delivered again after its
// deployment's end was stored, and before its regions were released and
// its command dropped (the process killed between the two), releases and
// drops them. The command was kept by the store and every replica for
// ever, and the lock until another deployment took it over.
func TestRedeliveredEndReleasesTheRegions(t *testing.T) {
	ts := startService(t, fastArgs...)
	id := deploy(t, ts.URL, map[string]any{"service": "auth", "version": "v2.0.0", "target_region": "us-west-2"}).deployment(t).ID
	require.Equal(t, StatusSuccess, waitFor(t, ts.URL, id, ended).Status)
	// What the run left when it was killed after storing the end.
	holder, _, err := ts.store.Lock(t.Context(), "auth", "us-west-2", id)
	require.NoError(t, err)
	require.Empty(t, holder)
	require.NoError(t, ts.store.SendCommand(t.Context(), id, Command{Action: "abort", Reason: "too late", At: time.Now()}))

	job := Job{ID: id, Index: 0, Region: "us-west-2"}
	require.NoError(t, ts.handleJob(t.Context(), kanban.Delivery[Job]{
		Message: kanban.Message[Job]{ID: jobID(id, 0), Key: "auth/us-west-2", Payload: job}, Attempt: 2,
	}))
	_, err = ts.store.locks.Get(t.Context(), lockKey("auth", "us-west-2"))
	assert.ErrorIs(t, err, jetstream.ErrKeyNotFound, "the region is still taken")
	_, err = ts.store.control.Get(t.Context(), "cmd."+id)
	assert.ErrorIs(t, err, jetstream.ErrKeyNotFound, "the command is still kept")
}
