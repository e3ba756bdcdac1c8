package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus/testutil"
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
			takeUp(t, ts, id, "auth")
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

// startWithRetireGate starts the service, with args besides fastArgs, on
// a fleet whose first Retire waits for release (called when the test
// ends, before the service stops, at the latest).
func startWithRetireGate(t *testing.T, args ...string) (ts *testService, gate *firstRetireGate, release func()) {
	gate = &firstRetireGate{retiring: make(chan struct{}), release: make(chan struct{})}
	release = sync.OnceFunc(func() { close(gate.release) })
	ts = startServiceWith(t, t.TempDir(), func(c *Config) {
		c.WrapTarget = func(t fleet.Target) fleet.Target { gate.Target = t; return gate }
	}, append(slices.Clip(fastArgs), args...)...)
	t.Cleanup(release) // before the service's own clean-up, which waits for the rollout
	return ts, gate, release
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
	ts, gate, releaseAll := startWithRetireGate(t)
	id := deploy(t, ts.URL, map[string]any{"service": "auth", "version": "v2.0.0", "target_regions": []string{"us-west-2", "us-east-1"}},
		"Prefer", "respond-async").deployment(t).ID
	<-gate.retiring
	d := do(t, "GET", ts.URL+"/deploy/"+id, nil).deployment(t)
	require.Equal(t, StatusSuccess, d.Results[0].Status, "the region's success is stored before the version before is retired")
	sim := gate.Target.(interface{ Versions(string, string) []string })
	require.Equal(t, []string{"v1.0.0", "v2.0.0"}, sim.Versions("auth", "us-west-2"))

	takeUp(t, ts, id, "auth")
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
	// An abort the run took as it ended (SendCommand refuses one once
	// the deployment has ended, and drops it).
	left, err := json.Marshal(Command{Action: "abort", Reason: "too late", At: time.Now()})
	require.NoError(t, err)
	_, err = ts.store.control.Put(t.Context(), "cmd."+id, left)
	require.NoError(t, err)

	takeUp(t, ts, id, "auth")
	_, err = ts.store.locks.Get(t.Context(), lockKey("auth", "us-west-2"))
	assert.ErrorIs(t, err, jetstream.ErrKeyNotFound, "the region is still taken")
	_, err = ts.store.control.Get(t.Context(), "cmd."+id)
	assert.ErrorIs(t, err, jetstream.ErrKeyNotFound, "the command is still kept")
}

// startGate is a fleet log that holds a rollout at its start until the
// test lets it go: at is "prerequisites" to hold it in the prerequisites,
// at its first health sample (its Health), "start" to hold it as it
// starts the new version (its first Deploy of one that does not serve
// yet), after that was recorded, or else at its first Route, after that
// went through. It records the starts asked of it once armed.
type startGate struct {
	*fleetLog
	at            string
	first         atomic.Bool
	held, release chan struct{}
}

func (g *startGate) hold() {
	if g.first.CompareAndSwap(false, true) {
		close(g.held)
		<-g.release
	}
}

func (g *startGate) Route(ctx context.Context, service, region, stable, next string, percent float64) error {
	err := g.fleetLog.Route(ctx, service, region, stable, next, percent)
	if g.at != "prerequisites" && g.at != "start" {
		g.hold()
	}
	return err
}

func (g *startGate) Deploy(ctx context.Context, service, region, version string, instances int) error {
	g.record(fmt.Sprintf("deploy %s %s in %s", service, version, region))
	if g.at == "start" && version != "v1.0.0" {
		g.hold()
	}
	return g.fleetLog.Deploy(ctx, service, region, version, instances)
}

// Health is the fleet's health source, held by g at its first sample.
func (g *startGate) Health(h fleet.Health) fleet.Health { return heldHealth{h, g} }

type heldHealth struct {
	fleet.Health
	g *startGate
}

func (h heldHealth) Sample(ctx context.Context, service, region, version string, window time.Duration) (fleet.Sample, error) {
	if h.g.at == "prerequisites" {
		h.g.hold()
	}
	return h.Health.Sample(ctx, service, region, version, window)
}

// TestRunTakenOverAtItsStartLeavesTheFleet: a rollout whose job was taken
// up by another consumer at its start (its lease lapsed while it judged
// the prerequisites, made sure of the version serving, or started the
// new version) finds, before it moves the fleet, that the record has
// moved on, and stops. The other consumer rolled the region out in full
// meanwhile and retired the version before. The first run started the
// version retired again and sent all traffic back to it, or, past that,
// started the new version again and sent the first stage's traffic back
// to the version retired; one cut off while it started the new version
// read nothing before its first stage, and sent that stage's traffic to
// the version retired.
func TestRunTakenOverAtItsStartLeavesTheFleet(t *testing.T) {
	for _, at := range []string{"prerequisites", "deploy", "start"} {
		t.Run(at, func(t *testing.T) {
			gate := &startGate{fleetLog: &fleetLog{}, at: at, held: make(chan struct{}), release: make(chan struct{})}
			releaseAll := sync.OnceFunc(func() { close(gate.release) })
			defer releaseAll()
			ts := startServiceWith(t, t.TempDir(), func(c *Config) {
				c.WrapTarget = func(t fleet.Target) fleet.Target { gate.Target = t; return gate }
				c.WrapHealth = gate.Health
			}, "-stages", "canary:5:0s,prod:100:0s", "-health-interval", "25ms", "-min-requests", "0")
			id := deploy(t, ts.URL, map[string]any{"service": "auth", "version": "v2.0.0", "target_region": "us-west-2"},
				"Prefer", "respond-async").deployment(t).ID
			// The first run judges the region's health before the change
			// (prerequisites), or has made sure of the version serving
			// (its route of all traffic to it) and has not started the
			// new version (deploy), or is starting the new version
			// (start).
			<-gate.held

			// The job, redelivered as when its lease lapsed, is taken up
			// as another replica would: the region had not begun in the
			// record, and is rolled out there.
			takeUp(t, ts, id, "auth")
			d := waitFor(t, ts.URL, id, ended)
			require.Equal(t, StatusSuccess, d.Status)
			require.Equal(t, "v2.0.0", stableOf(t, ts, "auth", "us-west-2"))
			sim := gate.Target.(interface{ Versions(string, string) []string })
			require.Equal(t, []string{"v2.0.0"}, sim.Versions("auth", "us-west-2"))
			gate.arm()
			// A lease lapses only after its run has been silent for the
			// queue's AckWait; a run reads its record again before it
			// moves the fleet once recheckAfter has passed since it last
			// read or wrote it.
			time.Sleep(recheckAfter)

			// The first run goes on.
			releaseAll()
			require.Eventually(t, func() bool { return testutil.ToFloat64(ts.metrics.active) == 0 },
				10*time.Second, time.Millisecond, "the first run never stopped")

			assert.Empty(t, gate.recorded(), "the run went on with a region another had rolled out")
			assert.Equal(t, []string{"v2.0.0"}, sim.Versions("auth", "us-west-2"))
			assert.Equal(t, "v2.0.0", stableOf(t, ts, "auth", "us-west-2"))
			d = do(t, "GET", ts.URL+"/deploy/"+id, nil).deployment(t)
			assert.Equal(t, StatusSuccess, d.Status)
		})
	}
}

// TestRunTakenOverRollsNoNewDeploymentBack: a rollout whose job another
// consumer took up while it baked, and whose region that consumer rolled
// back and ended, finds when its own analysis then fails that the record
// has moved on, and leaves the fleet as it is. A new deployment has begun
// in the region meanwhile: the stale run's rollback sent all of the
// region's traffic back to the version before, off the new deployment's
// canary, which went on baking with no traffic of its own.
func TestRunTakenOverRollsNoNewDeploymentBack(t *testing.T) {
	fl := &fleetLog{}
	ts := startServiceWith(t, t.TempDir(), func(c *Config) {
		c.WrapTarget = func(t fleet.Target) fleet.Target { fl.Target = t; return fl }
	}, "-stages", "canary:5:1h,prod:100:1h", "-health-interval", "25ms", "-min-requests", "0")
	id := deploy(t, ts.URL, map[string]any{"service": "auth", "version": "v2.0.0", "target_region": "us-west-2"},
		"Prefer", "respond-async").deployment(t).ID
	waitFor(t, ts.URL, id, func(d Deployment) bool { return d.Results[0].Stage == "canary" })
	v, ok := ts.runs.Load(id)
	require.True(t, ok, "the rollout runs here")
	run := v.(*rollout)

	// The job, redelivered as when its lease lapsed, is taken up as
	// another replica would: the region was in progress, and is rolled
	// back.
	takeUp(t, ts, id, "auth")
	require.Equal(t, StatusRolledBack, waitFor(t, ts.URL, id, ended).Status)

	// A new deployment begins in the region, run by another replica: its
	// canary takes 5% of the traffic.
	require.NoError(t, fl.Target.Deploy(t.Context(), "auth", "us-west-2", "v1.1.0", ts.catalog.Instances("auth")))
	require.NoError(t, fl.Target.Route(t.Context(), "auth", "us-west-2", "v1.0.0", "v1.1.0", 5))
	sim := fl.Target.(interface {
		Split(service, region string) (stable, next string, percent float64)
		Versions(service, region string) []string
	})
	fl.arm()
	// A lease lapses only after its run has been silent for the queue's
	// AckWait; a run reads its record again before it moves the fleet
	// once recheckAfter has passed since it last read or wrote it.
	time.Sleep(recheckAfter)

	// The first run's analysis fails.
	run.failed <- failure{reason: "error rate too high", at: time.Now()}
	require.Eventually(t, func() bool { _, running := ts.runs.Load(id); return !running },
		10*time.Second, time.Millisecond, "the first run never stopped")

	assert.Empty(t, fl.recorded(), "the run rolled back a region another had ended")
	_, canary, percent := sim.Split("auth", "us-west-2")
	assert.Equal(t, "v1.1.0", canary)
	assert.InDelta(t, 5, percent, 0.001, "the new deployment's canary lost its traffic")
	assert.Equal(t, []string{"v1.0.0", "v1.1.0"}, sim.Versions("auth", "us-west-2"))
	d := do(t, "GET", ts.URL+"/deploy/"+id, nil).deployment(t)
	assert.Equal(t, StatusRolledBack, d.Status)
	assert.Contains(t, *d.ErrorMessage, "Interrupted at stage canary by a restart")
}

// TestStaleLastAttemptKeepsTheVersionServing: a rollout on its job's last
// attempt whose rollback fails (the fleet does not answer), while
// another replica takes the job up and rolls the region back and a
// deployment of the same version since rolls it out there and records it
// serving, finds the record moved on before it touches the version
// serving, and leaves it. It put the version before back as the one
// serving, then found the record moved on and left the fleet: the next
// deployment would have rolled back to a version that no longer ran.
func TestStaleLastAttemptKeepsTheVersionServing(t *testing.T) {
	var ts *testService
	var id string
	starts, armed, movedOn := 0, false, false
	// The other runs' work, done while the stale run's rollback waits
	// on the fleet.
	moveOn := func() {
		ctx := context.Background()
		d, rev, err := ts.store.Get(ctx, id)
		if !assert.NoError(t, err) {
			return
		}
		now := time.Now().UTC()
		d.Status, d.CompletedAt = StatusRolledBack, &now
		d.Results[0].Status, d.Results[0].Percent, d.Results[0].CompletedAt = StatusRolledBack, 0, &now
		_, err = ts.store.Update(ctx, d, rev)
		assert.NoError(t, err)
		assert.NoError(t, ts.store.SetStable(ctx, "auth", "us-west-2", "v2.0.0"))
		// A lease lapses only after its run has been silent for the
		// queue's AckWait; a run reads its record again before it moves
		// the fleet once recheckAfter has passed since it last read or
		// wrote it.
		time.Sleep(recheckAfter)
	}
	ts = startServiceWith(t, t.TempDir(), func(c *Config) {
		c.JobBackoff = kanban.BackoffFunc(func(int) time.Duration { return time.Millisecond })
		c.WrapTarget = func(t fleet.Target) fleet.Target {
			return &faultyTarget{Target: t, route: func(percent float64) error {
				switch {
				case armed:
					if !movedOn {
						movedOn = true
						moveOn()
					}
					return errRouting
				case percent == 0 && starts < jobAttempts-1:
					starts++ // the stable version's routing: the rollout starts on its last attempt
					return errRouting
				}
				return nil
			}}
		}
	}, "-stages", "canary:5:1h,prod:100:1h", "-health-interval", "25ms", "-min-requests", "0")
	ft := ts.target.(*faultyTarget)
	d := deploy(t, ts.URL, map[string]any{"service": "auth", "version": "v2.0.0", "target_region": "us-west-2"},
		"Prefer", "respond-async").deployment(t)
	ft.mu.Lock()
	id = d.ID
	ft.mu.Unlock()
	waitFor(t, ts.URL, id, func(d Deployment) bool { return d.Results[0].Stage == "canary" })
	v, ok := ts.runs.Load(id)
	require.True(t, ok, "the rollout runs here")
	run := v.(*rollout)
	ft.mu.Lock()
	require.Equal(t, jobAttempts-1, starts, "the rollout started on its last attempt")
	armed = true
	ft.mu.Unlock()

	// The run's analysis fails; its rollback finds the fleet out of
	// reach.
	run.failed <- failure{reason: "error rate too high", at: time.Now()}
	require.Eventually(t, func() bool {
		return strings.Contains(ts.logs.String(), "rollback left to the run that took the region up")
	},
		30*time.Second, time.Millisecond, "the run never found the record moved on")

	assert.Equal(t, "v2.0.0", stableOf(t, ts, "auth", "us-west-2"), "the version recorded serving since")
	d = do(t, "GET", ts.URL+"/deploy/"+id, nil).deployment(t)
	assert.Equal(t, StatusRolledBack, d.Status)
}

// TestRunTakenOverStopsAtThePause: a rollout whose job another consumer
// took up while it baked, and whose region that consumer rolled back,
// stops when the cord is pulled and its pause cannot be stored over the
// record moved on. It logged the pause as not stored, recorded it in the
// audit trail as the deployment's, and went on baking, paused, as if it
// still ran the region: until the cord was started again and a person
// resumed a deployment that had ended.
func TestRunTakenOverStopsAtThePause(t *testing.T) {
	const admin = "admin-token-0123456789"
	ts := startService(t, "-stages", "canary:5:1h,prod:100:1h", "-health-interval", "25ms", "-min-requests", "0", "-admin-token", admin)
	id := deploy(t, ts.URL, map[string]any{"service": "auth", "version": "v2.0.0", "target_region": "us-west-2"},
		"Prefer", "respond-async").deployment(t).ID
	waitFor(t, ts.URL, id, func(d Deployment) bool { return d.Results[0].Stage == "canary" })
	_, ok := ts.runs.Load(id)
	require.True(t, ok, "the rollout runs here")

	// The job, redelivered as when its lease lapsed, is taken up as
	// another replica would: the region was in progress, and is rolled
	// back.
	takeUp(t, ts, id, "auth")
	require.Equal(t, StatusRolledBack, waitFor(t, ts.URL, id, ended).Status)

	r := do(t, "POST", ts.URL+"/andon/cord", map[string]string{"action": "stop", "reason": "incident 11"}, "Authorization", "Bearer "+admin)
	require.Equal(t, http.StatusOK, r.Code, "%s", r.Body)
	require.Eventually(t, func() bool { _, running := ts.runs.Load(id); return !running },
		10*time.Second, time.Millisecond, "the first run went on baking")

	d := do(t, "GET", ts.URL+"/deploy/"+id, nil).deployment(t)
	assert.Equal(t, StatusRolledBack, d.Status)
	assert.False(t, d.Paused)
	require.NoError(t, ts.audit.Flush(t.Context()))
	for _, line := range auditLines(t, filepath.Join(ts.cfg.DataDir, "audit-test.jsonl")) {
		assert.False(t, line.ID == id && line.Kind == "deployment.paused", "the run taken over recorded a pause: %+v", line)
	}
}

// TestRunTakenOverWhileHeldSendsNoTraffic: a rollout held at its start on
// a stopped line, whose job another consumer took up meanwhile and whose
// region that consumer rolled back, stops when a resume reaches it: the
// resume cannot be stored over the record moved on. It went on to its
// first stage and sent the canary's traffic to the version rolled back.
func TestRunTakenOverWhileHeldSendsNoTraffic(t *testing.T) {
	const admin = "admin-token-0123456789"
	auth := []string{"Authorization", "Bearer " + admin}
	async := []string{"Prefer", "respond-async"}
	fl := &fleetLog{}
	ts := startServiceWith(t, t.TempDir(), func(c *Config) {
		c.WrapTarget = func(t fleet.Target) fleet.Target { fl.Target = t; return fl }
	}, "-workers", "1", "-stages", "canary:5:1h,prod:100:1h", "-health-interval", "25ms", "-min-requests", "0", "-admin-token", admin)
	first := deploy(t, ts.URL, map[string]any{"service": "auth", "version": "v2.0.0", "target_region": "us-west-2"}, async...).deployment(t).ID
	waitFor(t, ts.URL, first, func(d Deployment) bool { return d.Results[0].Stage == "canary" })
	id := deploy(t, ts.URL, map[string]any{"service": "search", "version": "v2.0.0", "target_region": "us-west-2"}, async...).deployment(t).ID
	r := do(t, "POST", ts.URL+"/andon/cord", map[string]string{"action": "stop", "reason": "incident 12"}, auth...)
	require.Equal(t, http.StatusOK, r.Code, "%s", r.Body)
	waitFor(t, ts.URL, first, func(d Deployment) bool { return d.Paused })
	// The one worker is free again: the queued deployment starts, and
	// is held.
	r = do(t, "POST", ts.URL+"/deploy/"+first+"/abort", nil, auth...)
	require.Equal(t, http.StatusAccepted, r.Code, "%s", r.Body)
	waitFor(t, ts.URL, id, func(d Deployment) bool { return d.Paused })
	v, ok := ts.runs.Load(id)
	require.True(t, ok, "the rollout runs here")
	run := v.(*rollout)

	// The job, redelivered as when its lease lapsed, is taken up as
	// another replica would: the region was in progress, and is rolled
	// back.
	takeUp(t, ts, id, "search")
	require.Equal(t, StatusRolledBack, waitFor(t, ts.URL, id, ended).Status)
	fl.arm()

	// The line starts again, and a resume sent while the first run was
	// cut off (the deployment still in progress then) reaches it.
	r = do(t, "POST", ts.URL+"/andon/cord", map[string]string{"action": "start"}, auth...)
	require.Equal(t, http.StatusOK, r.Code, "%s", r.Body)
	run.deliver(Command{Action: "resume", At: time.Now(), Seq: 1 << 40})
	require.Eventually(t, func() bool { _, running := ts.runs.Load(id); return !running },
		10*time.Second, time.Millisecond, "the first run never stopped")

	assert.Empty(t, fl.recorded(), "the run went on with a region another had rolled back")
	d := do(t, "GET", ts.URL+"/deploy/"+id, nil).deployment(t)
	assert.Equal(t, StatusRolledBack, d.Status)
	assert.Empty(t, d.Results[0].Stages, "no stage began")
}

// takeUp hands the job of the first region (us-west-2) of deployment id,
// of service, to ts again as its second attempt: as another replica takes
// up a job whose lease lapsed.
func takeUp(t *testing.T, ts *testService, id, service string) {
	t.Helper()
	job := Job{ID: id, Index: 0, Region: "us-west-2"}
	require.NoError(t, ts.handleJob(t.Context(), kanban.Delivery[Job]{
		Message: kanban.Message[Job]{ID: jobID(id, 0), Key: service + "/us-west-2", Payload: job}, Attempt: 2,
	}))
}
