package main

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestShutdownHoldsRollouts: a rollout running when the service begins to
// shut down starts no further stage, though its stage's bake ends during
// the consumer's drain: the traffic stays at the canary's share. The
// drain's deadline is logged as the normal end it is, not as an error;
// started again on the same data, the service rolls the rollout back at
// once: the rollout's message was handed back as the shutdown ended, and
// the server stopped with the service kept it. The server delivered it
// again only once its lease had run out (7.3 s after the restart at the
// default lease; here a minute).
func TestShutdownHoldsRollouts(t *testing.T) {
	dir := t.TempDir()
	// The canary's bake ends within the drain (one second).
	args := []string{"-stages", "canary:5:500ms,staging:25:1h,prod:100:0s", "-health-interval", "25ms", "-min-requests", "0", "-rollout-lease", "1m"}
	ts := startServiceIn(t, dir, args...)
	id := deploy(t, ts.URL, map[string]any{"service": "api-service", "version": "v2.0.0", "target_region": "us-west-2"}, "Prefer", "respond-async").deployment(t).ID
	waitFor(t, ts.URL, id, func(d Deployment) bool { return d.Results[0].Stage == "canary" })
	began := time.Now()
	ts.shutdown()
	require.Less(t, time.Since(began), 5*time.Second, "the drain lasts a second")
	_, _, pct := ts.target.(interface {
		Split(string, string) (string, string, float64)
	}).Split("api-service", "us-west-2")
	assert.Equal(t, 5.0, pct, "the new version's share when the service stopped")
	logs := ts.logs.String()
	assert.NotContains(t, logs, "level=ERROR")
	assert.Contains(t, logs, `level=WARN msg="rollout cut off by the shutdown; the next start takes it up"`)
	assert.Contains(t, logs, `level=INFO msg="rollout consumer stopped with rollouts running; the next start takes them up"`)

	restarted := time.Now()
	ts = startServiceIn(t, dir, args...)
	d := waitFor(t, ts.URL, id, ended)
	t.Logf("rolled back %v after the restart began", time.Since(restarted))
	assert.Less(t, time.Since(restarted), 30*time.Second, "taken up before its lease ran out")
	assert.Equal(t, StatusRolledBack, d.Status)
	require.NotNil(t, d.ErrorMessage)
	assert.Contains(t, *d.ErrorMessage, "Interrupted at stage canary by a restart")
	for _, st := range d.Results[0].Stages {
		assert.True(t, st.StartedAt.Before(began), "stage %s started %v after the shutdown began", st.Name, st.StartedAt.Sub(began))
	}
	assert.Len(t, d.Results[0].Stages, 1, "the canary only")
}

// TestRestartAfterStableRecorded: a rollout cut off after it recorded its
// version as the one serving, and before it stored its end, is rolled
// back on the next start with the version serving recorded back (none
// for a first deployment): the catalog names the version the traffic
// went back to, and the next deployment rolls back to it.
func TestRestartAfterStableRecorded(t *testing.T) {
	for _, tc := range []struct {
		service, region, version, previous string
	}{
		{"api-service", "us-west-2", "v2.0.0", "v1.0.0"},
		{"api-service", "eu-west-1", "v2.0.0", ""}, // a first deployment
	} {
		t.Run(tc.region, func(t *testing.T) {
			dir := t.TempDir()
			catalog := filepath.Join(t.TempDir(), "catalog.json")
			require.NoError(t, os.WriteFile(catalog, []byte(`{
  "regions": {"us-west-2": {"capacity": 20}, "eu-west-1": {"capacity": 20}},
  "services": {"api-service": {"instances": 4, "running": {"us-west-2": "v1.0.0"}, "versions": {
    "v1.0.0": {"error_rate": 0.006, "p99_ms": 150, "cpu": 0.35, "memory": 0.5},
    "v2.0.0": {"error_rate": 0.007, "p99_ms": 180, "cpu": 0.4, "memory": 0.6}}}}
}`), 0o600))
			args := []string{"-catalog", catalog, "-stages", "canary:5:1h,staging:25:1h,prod:100:0s", "-health-interval", "25ms", "-min-requests", "0"}
			ts := startServiceIn(t, dir, args...)
			req := map[string]any{"service": tc.service, "version": tc.version, "target_region": tc.region, "first_deploy": tc.previous == ""}
			id := deploy(t, ts.URL, req, "Prefer", "respond-async").deployment(t).ID
			waitFor(t, ts.URL, id, func(d Deployment) bool { return d.Results[0].Stage == "canary" })
			// What a rollout that passed its last stage writes before its end.
			require.NoError(t, ts.store.SetStable(t.Context(), tc.service, tc.region, tc.version))
			ts.shutdown()

			ts = startServiceIn(t, dir, args...)
			d := waitFor(t, ts.URL, id, ended)
			assert.Equal(t, StatusRolledBack, d.Status)
			require.NotNil(t, d.ErrorMessage)
			assert.Contains(t, *d.ErrorMessage, "Interrupted at stage canary by a restart")
			var cat CatalogView
			require.NoError(t, json.Unmarshal(do(t, "GET", ts.URL+"/catalog", nil).Body, &cat))
			serving, ok := cat.Services[tc.service].Serving[tc.region]
			assert.Equal(t, tc.previous != "", ok, "a version serves after the rollback")
			assert.Equal(t, tc.previous, serving, "the version serving after the rollback")

			r := deploy(t, ts.URL, map[string]any{"service": tc.service, "version": tc.version, "target_region": tc.region}, "Prefer", "respond-async")
			require.Equal(t, http.StatusAccepted, r.Code, "%s", r.Body)
			if tc.previous == "" {
				d = waitFor(t, ts.URL, r.deployment(t).ID, ended)
				assert.Equal(t, StatusFailed, d.Status, "no rollback plan: no version serves")
				return
			}
			d = waitFor(t, ts.URL, r.deployment(t).ID, func(d Deployment) bool { return d.Results[0].Previous != "" })
			assert.Equal(t, tc.previous, d.Results[0].Previous)
		})
	}
}

// TestInterruptedStageEnds: the stage a restart cut off ends with the
// region's rollback, its verdict interrupted and the rollback's reason as
// its own: the region ended ROLLED_BACK while its stage stayed open, with
// no end and no verdict, as if it still baked.
func TestInterruptedStageEnds(t *testing.T) {
	dir := t.TempDir()
	args := []string{"-stages", "canary:5:1h,staging:25:1h,prod:100:0s", "-health-interval", "25ms", "-min-requests", "0"}
	ts := startServiceIn(t, dir, args...)
	id := deploy(t, ts.URL, map[string]any{"service": "api-service", "version": "v2.0.0", "target_region": "us-west-2"}, "Prefer", "respond-async").deployment(t).ID
	waitFor(t, ts.URL, id, func(d Deployment) bool { return d.Results[0].Stage == "canary" })
	ts.shutdown()

	ts = startServiceIn(t, dir, args...)
	d := waitFor(t, ts.URL, id, ended)
	require.Equal(t, StatusRolledBack, d.Status)
	rr := d.Results[0]
	require.Len(t, rr.Stages, 1, "the canary only")
	st := rr.Stages[0]
	require.NotNil(t, st.EndedAt, "the canary cut off has no end")
	assert.Equal(t, *rr.CompletedAt, *st.EndedAt, "it ends with the rollback")
	assert.Equal(t, "interrupted", st.Verdict)
	assert.Equal(t, rr.ErrorMessage, st.Reason)
	assert.Contains(t, st.Reason, "Interrupted at stage canary by a restart")
}

// TestInterruptedStageEndsInTheAudit: the stage a restart cut off ends in
// the audit trail as it ends in the record, before the rollback: an end
// with the verdict interrupted and the rollback's reason, failed, and
// timed from the stage's start. The record said the stage ended while the
// trail held only its start.
func TestInterruptedStageEndsInTheAudit(t *testing.T) {
	dir := t.TempDir()
	args := []string{"-stages", "canary:5:1h,staging:25:1h,prod:100:0s", "-health-interval", "25ms", "-min-requests", "0"}
	ts := startServiceIn(t, dir, args...)
	id := deploy(t, ts.URL, map[string]any{"service": "api-service", "version": "v2.0.0", "target_region": "us-west-2"}, "Prefer", "respond-async").deployment(t).ID
	waitFor(t, ts.URL, id, func(d Deployment) bool { return d.Results[0].Stage == "canary" })
	ts.shutdown()

	ts = startServiceIn(t, dir, args...)
	d := waitFor(t, ts.URL, id, ended)
	require.Equal(t, StatusRolledBack, d.Status)
	st := d.Results[0].Stages[0]
	require.NotNil(t, st.EndedAt)
	// The deployment's end is audited once it is stored, a moment after
	// the record reads ended.
	var kinds []string
	var end *auditRecord
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		require.NoError(t, ts.audit.Flush(t.Context()))
		kinds, end = nil, nil
		for _, line := range auditRecords(t, filepath.Join(dir, "audit-test.jsonl")) {
			if line.ID != id {
				continue
			}
			kinds = append(kinds, line.Kind)
			if line.Kind == "deployment.canary.end" {
				end = &line
			}
		}
		if slices.Contains(kinds, "deployment.end") || time.Now().After(deadline) {
			break
		}
	}
	require.NotNil(t, end, "the canary's end is not in the audit trail: %v", kinds)
	assert.Equal(t, []string{"deployment.validation", "deployment.canary.start", "deployment.canary.end", "deployment.rollback", "deployment.end"}, kinds)
	assert.Equal(t, "failed", end.Outcome)
	assert.Equal(t, "interrupted: "+st.Reason, end.Decision.Reason)
	assert.Equal(t, st.EndedAt.Sub(st.StartedAt), end.Duration, "the stage's time")
	assert.Equal(t, st.StartedAt, end.Time.UTC(), "it began with the stage")
}

// TestInterruptedStageInTheMetrics: the stage a restart cut off is
// timed in deployment_stage_duration_seconds with its verdict,
// interrupted, as it is in the record, the audit trail and /kaizen. The
// metric timed every other stage's end, and none cut off.
func TestInterruptedStageInTheMetrics(t *testing.T) {
	dir := t.TempDir()
	args := []string{"-stages", "canary:5:1h,staging:25:1h,prod:100:0s", "-health-interval", "25ms", "-min-requests", "0"}
	ts := startServiceIn(t, dir, args...)
	id := deploy(t, ts.URL, map[string]any{"service": "api-service", "version": "v2.0.0", "target_region": "us-west-2", "rollout_strategy": "blue-green"}, "Prefer", "respond-async").deployment(t).ID
	waitFor(t, ts.URL, id, func(d Deployment) bool { return d.Results[0].Stage == "preview" })
	ts.shutdown()

	ts = startServiceIn(t, dir, args...)
	d := waitFor(t, ts.URL, id, ended)
	require.Equal(t, StatusRolledBack, d.Status)
	const want = `deployment_stage_duration_seconds_count{stage="preview",strategy="blue-green",verdict="interrupted"} 1`
	var stages []string
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		stages = stageCounts(t, ts.URL)
		if slices.Contains(stages, want) || time.Now().After(deadline) {
			break
		}
	}
	assert.Equal(t, []string{want}, stages)
}

// stageCounts are the lines of deployment_stage_duration_seconds_count
// on the service's /metrics.
func stageCounts(t *testing.T, base string) []string {
	t.Helper()
	var out []string
	for _, line := range strings.Split(string(do(t, "GET", base+"/metrics", nil).Body), "\n") {
		if strings.HasPrefix(line, "deployment_stage_duration_seconds_count") {
			out = append(out, line)
		}
	}
	return out
}
