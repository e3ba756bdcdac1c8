package main

// The notions this service shares with Argo Rollouts, each stated as what
// the service does; the README's "Compared with Argo Rollouts" says where
// the two differ.

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/examples/deployment/internal/fleet"
)

// scriptedHealth answers the samples of v2.0.0 with answer, given how
// many came before (0 for the first); the other versions' are the inner
// source's.
type scriptedHealth struct {
	fleet.Health
	calls  atomic.Int64
	answer func(n int64) (fleet.Sample, error)
}

func (h *scriptedHealth) Sample(ctx context.Context, service, region, version string, window time.Duration) (fleet.Sample, error) {
	if version != "v2.0.0" {
		return h.Health.Sample(ctx, service, region, version, window)
	}
	return h.answer(h.calls.Add(1) - 1)
}

var (
	healthySample = fleet.Sample{Requests: 100, ErrorRate: 0.01, P99: 50 * time.Millisecond, CPU: 0.3, Memory: 0.3}
	failingSample = fleet.Sample{Requests: 100, ErrorRate: 0.5, P99: 50 * time.Millisecond, CPU: 0.3, Memory: 0.3}
	errSourceDown = errors.New("prometheus: connection refused")
)

func startScripted(t *testing.T, answer func(n int64) (fleet.Sample, error), args ...string) (*testService, *scriptedHealth) {
	t.Helper()
	h := &scriptedHealth{answer: answer}
	ts := startServiceWith(t, t.TempDir(), func(c *Config) {
		c.WrapHealth = func(inner fleet.Health) fleet.Health { h.Health = inner; return h }
	}, args...)
	return ts, h
}

// TestStagesAreWeightsWithBakes: a stage is a setWeight and a pause with
// a duration in one: its share of traffic goes to the new version, which
// bakes there for at least the stage's bake, judged by the analysis all
// along (a background analysis), and the next stage begins only once the
// bake is over and a sample of the stage's own has passed. A bake of 0 is
// not an indefinite pause: the stage passes at its first passing sample.
func TestStagesAreWeightsWithBakes(t *testing.T) {
	ts := startService(t, "-stages", "canary:10:100ms,half:50:100ms,prod:100:0s", "-health-interval", "25ms", "-min-requests", "0")
	d := deploy(t, ts.URL, map[string]any{"service": "api-service", "version": "v2.0.0", "target_region": "us-west-2"}).deployment(t)
	require.Equal(t, StatusSuccess, d.Status)
	stages := d.Results[0].Stages
	require.Len(t, stages, 3)
	for i, want := range []struct {
		name    string
		percent float64
		bake    time.Duration
	}{{"canary", 10, 100 * time.Millisecond}, {"half", 50, 100 * time.Millisecond}, {"prod", 100, 0}} {
		st := stages[i]
		assert.Equal(t, want.name, st.Name)
		assert.Equal(t, want.percent, st.Percent)
		assert.Equal(t, "passed", st.Verdict, "%s: %s", st.Name, st.Reason)
		require.NotNil(t, st.EndedAt)
		assert.GreaterOrEqual(t, st.EndedAt.Sub(st.StartedAt), want.bake, st.Name)
		assert.True(t, slices.ContainsFunc(st.Samples, func(s HealthSample) bool { return s.Verdict == "passed" }), "%s: %+v", st.Name, st.Samples)
	}
	assert.Equal(t, []string{"validation", "canary", "half", "prod"}, d.StagesCompleted)
}

// TestHealthSourceDownIsInconclusive: a sample the health source fails
// to give (Prometheus down) is inconclusive, neither a failure nor a pass,
// and the errors have no limit of their own, as consecutiveErrorLimit is
// in Rollouts: a stage with no passing sample waits up to its bake again,
// then rolls back for want of data; a stage that had one pass before the
// source went down passes at the end of its bake.
func TestHealthSourceDownIsInconclusive(t *testing.T) {
	t.Run("down from the start", func(t *testing.T) {
		ts, _ := startScripted(t, func(int64) (fleet.Sample, error) { return fleet.Sample{}, errSourceDown }, fastArgs...)
		d := deploy(t, ts.URL, map[string]any{"service": "api-service", "version": "v2.0.0", "target_region": "us-west-2"}).deployment(t)
		require.Equal(t, StatusRolledBack, d.Status)
		require.NotNil(t, d.ErrorMessage)
		assert.Equal(t, "No health data for api-service v2.0.0 at canary", *d.ErrorMessage)
		canary := d.Results[0].Stages[0]
		require.NotEmpty(t, canary.Samples)
		for _, s := range canary.Samples {
			assert.Equal(t, "inconclusive", s.Verdict, "%+v", s)
		}
		assert.Contains(t, canary.Samples[0].Reason, "connection refused")
		assert.Zero(t, d.Results[0].RecoveryMs, "no failing sample to recover from")
	})
	t.Run("down after a sample passed", func(t *testing.T) {
		ts, _ := startScripted(t, func(n int64) (fleet.Sample, error) {
			if n == 0 {
				return healthySample, nil
			}
			return fleet.Sample{}, errSourceDown
		}, fastArgs...)
		d := deploy(t, ts.URL, map[string]any{"service": "api-service", "version": "v2.0.0", "target_region": "us-west-2"}).deployment(t)
		require.Equal(t, StatusRolledBack, d.Status)
		stages := d.Results[0].Stages
		require.Len(t, stages, 2)
		assert.Equal(t, "passed", stages[0].Verdict, "the canary passed on its one conclusive sample")
		assert.Equal(t, "1 health sample passed", stages[0].Reason)
		assert.Equal(t, "failed", stages[1].Verdict)
		assert.Equal(t, "No health data for api-service v2.0.0 at staging", stages[1].Reason)
	})
}

// TestFailAfterCountsFailuresInARow: -fail-after counts failing samples in
// a row, as a watchdog does, not failures over the stage as Rollouts'
// failureLimit does: a version whose samples fail and pass by turns never
// has two failures in a row, and with -fail-after 2 every stage passes on
// the samples that pass. With -fail-after 1 (the default, failureLimit 0)
// the first failure rolls back.
func TestFailAfterCountsFailuresInARow(t *testing.T) {
	byTurns := func(n int64) (fleet.Sample, error) {
		if n%2 == 0 {
			return failingSample, nil
		}
		return healthySample, nil
	}
	ts, _ := startScripted(t, byTurns, append([]string{"-fail-after", "2"}, fastArgs...)...)
	d := deploy(t, ts.URL, map[string]any{"service": "api-service", "version": "v2.0.0", "target_region": "us-west-2"}).deployment(t)
	require.Equal(t, StatusSuccess, d.Status, "%+v", d.Results[0].Stages)
	canary := d.Results[0].Stages[0]
	assert.True(t, slices.ContainsFunc(canary.Samples, func(s HealthSample) bool {
		return s.Verdict == "failed" && s.Reason == "Error rate 50.00% exceeds threshold 5.00%"
	}), "%+v", canary.Samples)

	ts, _ = startScripted(t, byTurns, fastArgs...)
	d = deploy(t, ts.URL, map[string]any{"service": "api-service", "version": "v2.0.0", "target_region": "us-west-2"}).deployment(t)
	require.Equal(t, StatusRolledBack, d.Status)
	assert.Equal(t, "Error rate 50.00% exceeds threshold 5.00%", *d.ErrorMessage)
}

// TestAbortDuringAPauseThenDeployAgain: an abort of a rollout the cord
// paused, as one of a rollout paused by a step in Rollouts, sends all
// traffic back to the version before and retires the new one: the region
// ends ROLLED_BACK (Rollouts' Degraded), its stage "aborted". There is no
// retry of the deployment: the same request sent again is a new
// deployment, which starts from the first stage.
func TestAbortDuringAPauseThenDeployAgain(t *testing.T) {
	const admin = "admin-token-0123456789"
	ts := startService(t, "-stages", "canary:5:1h,prod:100:0s", "-health-interval", "25ms", "-min-requests", "0", "-admin-token", admin)
	auth := []string{"Authorization", "Bearer " + admin}
	versions := func() []string {
		return ts.target.(interface{ Versions(string, string) []string }).Versions("auth", "us-west-2")
	}
	req := map[string]any{"service": "auth", "version": "v2.0.0", "target_region": "us-west-2"}

	id := deploy(t, ts.URL, req, "Prefer", "respond-async").deployment(t).ID
	waitFor(t, ts.URL, id, func(d Deployment) bool { return d.Results[0].Stage == "canary" })
	stopLine(t, ts.URL, "incident 12", auth...)
	waitFor(t, ts.URL, id, func(d Deployment) bool { return d.Paused })
	r := do(t, "POST", ts.URL+"/deploy/"+id+"/abort", map[string]string{"reason": "bad canary"}, auth...)
	require.Equal(t, http.StatusAccepted, r.Code, "%s", r.Body)
	d := waitFor(t, ts.URL, id, ended)
	assert.Equal(t, StatusRolledBack, d.Status)
	assert.Equal(t, "Aborted: bad canary", *d.ErrorMessage)
	assert.Zero(t, d.Results[0].Percent)
	require.Len(t, d.Results[0].Stages, 1)
	assert.Equal(t, "aborted", d.Results[0].Stages[0].Verdict)
	assert.Equal(t, []string{"v1.0.0"}, versions(), "the new version retired")
	for _, action := range []string{"promote", "resume", "abort"} {
		r = do(t, "POST", ts.URL+"/deploy/"+id+"/"+action, nil, auth...)
		assert.Equal(t, http.StatusConflict, r.Code, "%s: %s", action, r.Body)
	}

	r = do(t, "POST", ts.URL+"/andon/cord", map[string]string{"action": "start"}, auth...)
	require.Equal(t, http.StatusOK, r.Code, "%s", r.Body)
	again := deploy(t, ts.URL, req, "Prefer", "respond-async").deployment(t).ID
	require.NotEqual(t, id, again)
	waitFor(t, ts.URL, again, func(d Deployment) bool { return d.Results[0].Stage == "canary" })
	r = do(t, "POST", ts.URL+"/deploy/"+again+"/promote", nil, auth...)
	require.Equal(t, http.StatusAccepted, r.Code, "%s", r.Body)
	d = waitFor(t, ts.URL, again, ended)
	assert.Equal(t, StatusSuccess, d.Status)
	assert.Equal(t, []string{"validation", "canary", "prod"}, d.StagesCompleted)
	assert.Equal(t, []string{"v2.0.0"}, versions())
}

// TestPromoteDuringAnalysis: a promote ends the stage baking, and only
// that stage (there is no promote --full): it does not wait for the
// stage's analysis to conclude, as a promote in Rollouts skips a step's
// analysis, and the next stage is judged in full. A failed sample waiting
// wins over it (TestFailureWinsOverPromoteAndPass).
func TestPromoteDuringAnalysis(t *testing.T) {
	const admin = "admin-token-0123456789"
	// No sample of v2.0.0 is conclusive until staging's traffic is routed.
	var staging atomic.Bool
	h := &scriptedHealth{answer: func(int64) (fleet.Sample, error) {
		if !staging.Load() {
			return fleet.Sample{}, fleet.ErrNoData
		}
		return healthySample, nil
	}}
	ts := startServiceWith(t, t.TempDir(), func(c *Config) {
		c.WrapHealth = func(inner fleet.Health) fleet.Health { h.Health = inner; return h }
		c.WrapTarget = func(inner fleet.Target) fleet.Target {
			return routeHook{Target: inner, at: 25, hook: func() { staging.Store(true) }}
		}
	}, "-stages", "canary:5:1h,staging:25:100ms,prod:100:0s", "-health-interval", "25ms", "-min-requests", "0", "-admin-token", admin)
	auth := []string{"Authorization", "Bearer " + admin}

	id := deploy(t, ts.URL, map[string]any{"service": "api-service", "version": "v2.0.0", "target_region": "us-west-2"}, "Prefer", "respond-async").deployment(t).ID
	waitFor(t, ts.URL, id, func(d Deployment) bool { return d.Results[0].Stage == "canary" })
	r := do(t, "POST", ts.URL+"/deploy/"+id+"/promote", nil, auth...)
	require.Equal(t, http.StatusAccepted, r.Code, "%s", r.Body)
	d := waitFor(t, ts.URL, id, ended)
	require.Equal(t, StatusSuccess, d.Status)
	stages := d.Results[0].Stages
	require.Len(t, stages, 3)
	assert.Equal(t, "promoted", stages[0].Verdict)
	assert.Equal(t, "promoted by a person", stages[0].Reason)
	for _, s := range stages[0].Samples {
		assert.Equal(t, "inconclusive", s.Verdict, "the canary had no conclusive sample: %+v", s)
	}
	for _, st := range stages[1:] {
		assert.Equal(t, "passed", st.Verdict, "%s, after the promote, baked and judged", st.Name)
	}
	assert.GreaterOrEqual(t, stages[1].EndedAt.Sub(stages[1].StartedAt), 100*time.Millisecond, "staging baked in full")
}

// routeHook calls hook as traffic is first routed to the new version at
// percent at, before it is.
type routeHook struct {
	fleet.Target
	at   float64
	hook func()
}

func (h routeHook) Route(ctx context.Context, service, region, stable, next string, percent float64) error {
	if percent == h.at {
		h.hook()
	}
	return h.Target.Route(ctx, service, region, stable, next, percent)
}

// TestRollingBackToThePreviousVersionRunsEveryStage: there is no rollback
// window: deploying the version that served before is a deployment like
// any other, through every stage and its bake, not one that skips them.
func TestRollingBackToThePreviousVersionRunsEveryStage(t *testing.T) {
	ts := startService(t, fastArgs...)
	d := deploy(t, ts.URL, map[string]any{"service": "api-service", "version": "v2.0.0", "target_region": "us-west-2"}).deployment(t)
	require.Equal(t, StatusSuccess, d.Status)
	d = deploy(t, ts.URL, map[string]any{"service": "api-service", "version": "v1.0.0", "target_region": "us-west-2"}).deployment(t)
	require.Equal(t, StatusSuccess, d.Status)
	assert.Equal(t, "v2.0.0", d.Results[0].Previous)
	assert.Equal(t, []string{"validation", "canary", "staging", "prod"}, d.StagesCompleted)
	for _, st := range d.Results[0].Stages {
		assert.Equal(t, "passed", st.Verdict, st.Name)
	}
}
