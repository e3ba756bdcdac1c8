package main

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/andon"
	"github.com/taipattern/taikit/examples/deployment/internal/fleet"
	"github.com/taipattern/taikit/examples/internal/svc"
	"github.com/taipattern/taikit/kanban"
)

// faultyTarget is a fleet whose Route fails when route says so; route
// is called under the target's lock, so it may keep state.
type faultyTarget struct {
	fleet.Target
	mu    sync.Mutex
	route func(percent float64) error
}

func (f *faultyTarget) Route(ctx context.Context, service, region, stable, next string, percent float64) error {
	f.mu.Lock()
	err := f.route(percent)
	f.mu.Unlock()
	if err != nil {
		return err
	}
	return f.Target.Route(ctx, service, region, stable, next, percent)
}

// withFaults starts the service with quick retries, its fleet's routing
// decided by route (nil: no fault) and its publishes by publish (see
// Config.PublishFault).
func withFaults(t *testing.T, route func(percent float64) error, publish func(Job, func() error) error) *testService {
	return startServiceWith(t, t.TempDir(), func(c *Config) {
		c.JobBackoff = kanban.BackoffFunc(func(int) time.Duration { return time.Millisecond })
		c.PublishFault = publish
		if route != nil {
			c.WrapTarget = func(t fleet.Target) fleet.Target { return &faultyTarget{Target: t, route: route} }
		}
	}, fastArgs...)
}

var errRouting = errors.New("routing unavailable")

// TestDeploymentNotQueued: a deployment whose first region cannot be
// queued ends FAILED, and the wave's other regions, never reached, are
// SKIPPED, as after a region that failed; they stayed PENDING under a
// deployment that had ended. It is counted in deployment_failed_total and
// ends in the audit trail, as every FAILED deployment does; it was
// neither.
func TestDeploymentNotQueued(t *testing.T) {
	ts := withFaults(t, nil, func(Job, func() error) error { return errors.New("queue unavailable") })
	r := deploy(t, ts.URL, map[string]any{"service": "api-service", "version": "v2.0.0", "target_regions": []string{"us-west-2", "us-east-1", "eu-west-1"}})
	require.Equal(t, http.StatusServiceUnavailable, r.Code, "%s", r.Body)
	list := do(t, "GET", ts.URL+"/deployments?service=api-service", nil)
	var page struct{ Deployments []Deployment }
	require.NoError(t, json.Unmarshal(list.Body, &page), "%s", list.Body)
	require.Len(t, page.Deployments, 1)
	d := page.Deployments[0]
	assert.Equal(t, StatusFailed, d.Status)
	assert.Equal(t, []string{StatusFailed, StatusSkipped, StatusSkipped}, regionStatuses(d))
	require.NotNil(t, d.ErrorMessage)
	assert.Equal(t, "us-west-2: Not queued: queue unavailable", *d.ErrorMessage)
	// The answer names it, as it is stored (ended FAILED).
	assert.Contains(t, string(r.Body), `"deployment_id":"`+d.ID+`"`)

	// It ends as every FAILED deployment does: counted, and in the audit
	// trail. It was neither.
	m := do(t, "GET", ts.URL+"/metrics", nil)
	assert.Contains(t, string(m.Body), `deployment_failed_total{strategy="canary"} 1`+"\n")
	assert.Contains(t, string(m.Body), `deployment_duration_seconds_count{status="FAILED"} 1`+"\n")
	require.NoError(t, ts.audit.Flush(t.Context()))
	var ends []string
	for _, line := range auditLines(t, filepath.Join(ts.cfg.DataDir, "audit-test.jsonl")) {
		if line.Kind == "deployment.end" {
			ends = append(ends, line.ID)
		}
	}
	assert.Equal(t, []string{d.ID}, ends)
}

// TestQueuedDespiteError: a first region's job queued although its
// publish failed (its acknowledgement lost), and running by the time the
// deployment would be ended for it, runs: the request is answered as
// queued, and the deployment's regions stay taken until it ends. The
// request was answered 503 and the regions freed while the rollout ran, so
// that a second deployment of the same service and region started beside it.
func TestQueuedDespiteError(t *testing.T) {
	hold := make(chan struct{})
	release := sync.OnceFunc(func() { close(hold) })
	var ts *testService
	ts = withFaults(t, func(percent float64) error {
		if percent == 25 {
			<-hold // the rollout waits at its second stage
		}
		return nil
	}, func(j Job, publish func() error) error {
		if err := publish(); err != nil || j.Index > 0 {
			return err
		}
		// The job runs before the publish's error is known.
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(5 * time.Millisecond) {
			d, _, err := ts.store.Get(context.Background(), j.ID)
			if err == nil && d.Results[0].Status != StatusPending {
				break
			}
			if time.Now().After(deadline) {
				return errors.New("the job did not start within 30 s")
			}
		}
		return errors.New("acknowledgement lost")
	})
	t.Cleanup(release) // before the service's shutdown
	req := map[string]any{"service": "api-service", "version": "v2.0.0", "target_region": "us-west-2"}
	r := deploy(t, ts.URL, req, "Prefer", "respond-async")
	require.Equal(t, http.StatusAccepted, r.Code, "%s", r.Body)
	id := r.deployment(t).ID

	second := deploy(t, ts.URL, map[string]any{"service": "api-service", "version": "v3.0.0", "target_region": "us-west-2"}, "Prefer", "respond-async")
	assert.Equal(t, http.StatusConflict, second.Code, "a second deployment of the region while the first runs: %s", second.Body)

	release()
	d := waitFor(t, ts.URL, id, ended)
	assert.Equal(t, StatusSuccess, d.Status)
	// Free once it has ended; the request that waits for its deployment is
	// answered at the end too.
	again := deploy(t, ts.URL, map[string]any{"service": "api-service", "version": "v3.0.0", "target_region": "us-west-2"})
	require.Equal(t, http.StatusOK, again.Code, "%s", again.Body)
	assert.Equal(t, StatusSuccess, again.deployment(t).Status)
}

// TestWaveNotQueued: a wave whose next region cannot be queued, however
// often its job is tried, ends that region FAILED and skips the rest,
// freeing their regions; the queue dead-lettered the job and the
// deployment stayed in progress, its regions taken.
func TestWaveNotQueued(t *testing.T) {
	ts := withFaults(t, nil, func(j Job, publish func() error) error {
		if j.Index == 1 {
			return errors.New("queue unavailable")
		}
		return publish()
	})
	r := deploy(t, ts.URL, map[string]any{"service": "api-service", "version": "v2.0.0", "target_regions": []string{"us-west-2", "us-east-1", "eu-west-1"}}, "Prefer", "respond-async")
	require.Equal(t, http.StatusAccepted, r.Code, "%s", r.Body)
	d := waitFor(t, ts.URL, r.deployment(t).ID, ended)
	assert.Equal(t, StatusFailed, d.Status)
	assert.Equal(t, []string{StatusSuccess, StatusFailed, StatusSkipped}, regionStatuses(d))
	assert.Equal(t, []string{"us-west-2"}, d.RegionsDone)
	require.NotNil(t, d.ErrorMessage)
	assert.Equal(t, "us-east-1: Not queued after 10 attempts: queue unavailable", *d.ErrorMessage)
	assert.Equal(t, "v2.0.0", stableOf(t, ts, "api-service", "us-west-2"))

	// The regions are free again: the next deployment is not refused as
	// a conflict.
	assert.Equal(t, http.StatusOK, deploy(t, ts.URL, map[string]any{"service": "api-service", "version": "v2.0.0", "target_region": "eu-west-1"}).Code)
}

// TestRollbackThatNeverSucceeds: a rollout whose routing breaks after its
// first stage cannot be rolled back on any attempt; at the last it ends
// FAILED, saying the new version may still take traffic, and its regions
// are free. The queue dead-lettered the job and the deployment stayed in
// progress, its regions taken.
func TestRollbackThatNeverSucceeds(t *testing.T) {
	broken := false
	ts := withFaults(t, func(percent float64) error {
		if percent >= 25 {
			broken = true // from the second stage on
		}
		if broken {
			return errRouting
		}
		return nil
	}, nil)
	r := deploy(t, ts.URL, map[string]any{"service": "api-service", "version": "v2.0.0", "target_regions": []string{"us-west-2", "us-east-1"}}, "Prefer", "respond-async")
	require.Equal(t, http.StatusAccepted, r.Code, "%s", r.Body)
	d := waitFor(t, ts.URL, r.deployment(t).ID, ended)
	assert.Equal(t, StatusFailed, d.Status)
	assert.Equal(t, []string{StatusFailed, StatusSkipped}, regionStatuses(d))
	require.NotNil(t, d.ErrorMessage)
	assert.Contains(t, *d.ErrorMessage, "us-west-2: Not rolled back after 10 attempts: ")
	assert.Contains(t, *d.ErrorMessage, "routing unavailable")
	assert.Contains(t, *d.ErrorMessage, "; v2.0.0 may still take traffic")
	assert.Equal(t, 5.0, d.Results[0].Percent, "the share the new version was left with")

	heal(ts)
	again := deploy(t, ts.URL, map[string]any{"service": "api-service", "version": "v2.0.0", "target_regions": []string{"us-west-2", "us-east-1"}})
	assert.Equal(t, http.StatusOK, again.Code, "%s", again.Body)
}

// TestStartedOnLastAttempt: a rollout that could not start on nine
// attempts starts on its last, moves traffic, then fails with an error
// (its routing, then its rollback, failing for a moment): the region is
// rolled back there, and ends ROLLED_BACK with the error. The queue
// dead-lettered the job and the deployment stayed in progress.
func TestStartedOnLastAttempt(t *testing.T) {
	starts, failing := 0, 0
	ts := withFaults(t, func(percent float64) error {
		switch {
		case failing > 0:
			failing--
			return errRouting
		case percent == 0 && starts < jobAttempts-1:
			starts++ // the stable version's routing, before the rollout starts
			return errRouting
		case percent >= 25:
			failing = 2 // the rollback, and its second try
			return errRouting
		}
		return nil
	}, nil)
	r := deploy(t, ts.URL, map[string]any{"service": "api-service", "version": "v2.0.0", "target_region": "us-west-2"}, "Prefer", "respond-async")
	require.Equal(t, http.StatusAccepted, r.Code, "%s", r.Body)
	d := waitFor(t, ts.URL, r.deployment(t).ID, ended)
	assert.Equal(t, StatusRolledBack, d.Status)
	require.NotNil(t, d.ErrorMessage)
	assert.Contains(t, *d.ErrorMessage, "Not finished after 10 attempts: ")
	assert.Contains(t, *d.ErrorMessage, "routing unavailable")
	assert.Contains(t, *d.ErrorMessage, "; rolled back to v1.0.0")
	assert.Equal(t, 0.0, d.Results[0].Percent)
	assert.Equal(t, "v1.0.0", stableOf(t, ts, "api-service", "us-west-2"))
	assert.True(t, rolledBackAlert(t, ts).Active, "%s does not fire after the rollback", alertRolledBack)
	heal(ts)
	assert.Equal(t, http.StatusOK, deploy(t, ts.URL, map[string]any{"service": "api-service", "version": "v2.0.0", "target_region": "us-west-2"}).Code)
}

// heal ends the faults of the service's fleet.
func heal(ts *testService) {
	ft := ts.target.(*faultyTarget)
	ft.mu.Lock()
	ft.route = func(float64) error { return nil }
	ft.mu.Unlock()
}

func regionStatuses(d Deployment) []string {
	var out []string
	for _, r := range d.Results {
		out = append(out, r.Status)
	}
	return out
}

// TestValidationOutageIsNotARollback: a deployment whose validation
// cannot judge the region's health on any attempt (Prometheus out of
// reach) ends FAILED, and nothing was rolled back: DeploymentRolledBack,
// a page, does not fire, and the attempts are counted apart from the
// rollouts' outcomes. Each failed attempt counted as a rolled-back
// rollout, and the page fired during the outage.
func TestValidationOutageIsNotARollback(t *testing.T) {
	prom := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "unavailable", http.StatusServiceUnavailable)
	}))
	defer prom.Close()
	ts := startServiceWith(t, t.TempDir(), func(c *Config) {
		c.JobBackoff = kanban.BackoffFunc(func(int) time.Duration { return time.Millisecond })
		c.PrometheusURL = svc.NewURL(prom.URL)
	}, fastArgs...)
	r := deploy(t, ts.URL, map[string]any{"service": "api-service", "version": "v2.0.0", "target_region": "us-west-2"}, "Prefer", "respond-async")
	require.Equal(t, http.StatusAccepted, r.Code, "%s", r.Body)
	d := waitFor(t, ts.URL, r.deployment(t).ID, ended)
	require.Equal(t, StatusFailed, d.Status)
	assert.False(t, rolledBackAlert(t, ts).Active, "%s fires, and nothing was rolled back", alertRolledBack)
	m := do(t, "GET", ts.URL+"/metrics", nil).Body
	failed := `taikit_signals_total{kind="deployment",outcome="failed"}`
	assert.Contains(t, []string{"", failed + " 0"}, sampleLine(m, failed), "none, or 0")
	assert.Equal(t, `taikit_signals_total{kind="deployment.attempt",outcome="failed"} 10`, sampleLine(m, `taikit_signals_total{kind="deployment.attempt",outcome="failed"}`))

}

// TestRollbackPages: a rollout rolled back on its analysis fires
// DeploymentRolledBack.
func TestRollbackPages(t *testing.T) {
	ts := startService(t, fastArgs...)
	assert.False(t, rolledBackAlert(t, ts).Active)
	r := deploy(t, ts.URL, map[string]any{"service": "bad-service", "version": "v1.0.0", "target_region": "us-east-1"})
	require.Equal(t, StatusRolledBack, r.deployment(t).Status, "%s", r.Body)
	assert.True(t, rolledBackAlert(t, ts).Active, "%s does not fire after a rollback", alertRolledBack)
}

// rolledBackAlert measures the DeploymentRolledBack rule of ts now.
func rolledBackAlert(t *testing.T, ts *testService) andon.Measurement {
	t.Helper()
	return alertMeasure(t, ts, alertRolledBack)
}

// alertMeasure measures the alert rule name of ts now.
func alertMeasure(t *testing.T, ts *testService, name string) andon.Measurement {
	t.Helper()
	for _, rule := range ts.rules() {
		if rule.Name == name {
			m, err := rule.Condition.Measure(t.Context(), time.Now())
			require.NoError(t, err)
			return m
		}
	}
	t.Fatalf("no rule %s", name)
	return andon.Measurement{}
}

// sampleLine is the line of an exposition that begins with series, or
// "" when there is none.
func sampleLine(exposition []byte, series string) string {
	for line := range strings.Lines(string(exposition)) {
		if strings.HasPrefix(line, series+" ") {
			return strings.TrimSuffix(line, "\n")
		}
	}
	return ""
}
