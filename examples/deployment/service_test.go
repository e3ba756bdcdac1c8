package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/andon"
	"github.com/taipattern/taikit/kaizen"
	"github.com/taipattern/taikit/kanban"
)

// TestQuickStart runs the reference's two deployment scenarios as written,
// with default flags: api-service v2.0.0 through canary, staging and prod;
// bad-service v1.0.0 rolled back at the canary for its error rate.
func TestQuickStart(t *testing.T) {
	ts := startService(t)
	var wg sync.WaitGroup
	var ok, bad reply
	wg.Add(2)
	go func() {
		defer wg.Done()
		ok = deploy(t, ts.URL, map[string]any{"service": "api-service", "version": "v2.0.0", "target_region": "us-west-2", "rollout_strategy": "canary"})
	}()
	go func() {
		defer wg.Done()
		bad = deploy(t, ts.URL, map[string]any{"service": "bad-service", "version": "v1.0.0", "target_region": "us-east-1", "rollout_strategy": "canary"})
	}()
	wg.Wait()

	require.Equal(t, http.StatusOK, ok.Code, "%s", ok.Body)
	d := ok.deployment(t)
	assert.Regexp(t, `^dpl_[0-9a-f]{32}$`, d.ID)
	assert.Equal(t, StatusSuccess, d.Status)
	assert.Equal(t, []string{"validation", "canary", "staging", "prod"}, d.StagesCompleted)
	assert.Nil(t, d.ErrorMessage)
	require.NotNil(t, d.CompletedAt)
	assert.GreaterOrEqual(t, d.DurationSecs, 8.0, "bakes of 3 s and 5 s")
	require.Len(t, d.Results, 1)
	stages := d.Results[0].Stages
	require.Len(t, stages, 3)
	assert.Equal(t, []float64{5, 25, 100}, []float64{stages[0].Percent, stages[1].Percent, stages[2].Percent})
	for _, st := range stages {
		assert.Equal(t, "passed", st.Verdict, st.Name)
		assert.NotEmpty(t, st.Samples, st.Name)
	}
	assert.Equal(t, "v1.0.0", d.Results[0].Previous)
	assert.Contains(t, string(ok.Body), `"completed_at":"20`, "RFC 3339")

	require.Equal(t, http.StatusAccepted, bad.Code, "%s", bad.Body)
	b := bad.deployment(t)
	assert.Equal(t, StatusRolledBack, b.Status)
	require.NotNil(t, b.ErrorMessage)
	assert.Equal(t, "Error rate 7.20% exceeds threshold 5.00%", *b.ErrorMessage)
	assert.Equal(t, []string{"validation"}, b.StagesCompleted, "validation passed; the canary did not")
	assert.Equal(t, "failed", b.Results[0].Stages[0].Verdict)
	// The canary's 5% is 5 requests a second: its samples, 500 ms apart,
	// are inconclusive below -min-requests (10), so the first to fail
	// comes about 2 s in, as the quick start says: the fourth or the
	// fifth, as the ticks fall against the requests (a busy machine delays
	// a tick, and the sample after it holds more), with at least one
	// inconclusive before it.
	samples := b.Results[0].Stages[0].Samples
	require.GreaterOrEqual(t, len(samples), 2, "%+v", samples)
	for _, hs := range samples[:len(samples)-1] {
		assert.Equal(t, "inconclusive", hs.Verdict, "%+v", hs)
		assert.Regexp(t, `^\d+ requests, fewer than 10$`, hs.Reason)
	}
	last := samples[len(samples)-1]
	assert.Equal(t, "failed", last.Verdict)
	assert.GreaterOrEqual(t, last.Requests, 10.0)
	assert.GreaterOrEqual(t, b.DurationSecs, 1.9)

	// The rollback left the old version serving; the success moved it on.
	assert.Equal(t, "v2.0.0", stableOf(t, ts, "api-service", "us-west-2"))
	assert.Equal(t, "v0.9.0", stableOf(t, ts, "bad-service", "us-east-1"))
}

func stableOf(t *testing.T, ts *testService, service, region string) string {
	t.Helper()
	v, err := ts.store.Stable(t.Context(), service, region)
	require.NoError(t, err)
	return v
}

// TestPrerequisites: each failing prerequisite answers 422 FAILED with its
// reason, and no traffic moves.
func TestPrerequisites(t *testing.T) {
	ts := startService(t, fastArgs...)
	for _, tc := range []struct {
		name string
		req  map[string]any
		want string
	}{
		{"image missing", map[string]any{"service": "api-service", "version": "v9.9.9", "target_region": "us-west-2"}, "Image not found: api-service/v9.9.9"},
		{"unknown service", map[string]any{"service": "no-such-service", "version": "v1", "target_region": "us-west-2"}, "Image not found: no-such-service/v1"},
		{"unknown region", map[string]any{"service": "api-service", "version": "v2.0.0", "target_region": "mars-north-1"}, "Unknown region: mars-north-1"},
		{"same version", map[string]any{"service": "api-service", "version": "v1.0.0", "target_region": "eu-west-1"}, "api-service v1.0.0 already serves in eu-west-1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := deploy(t, ts.URL, tc.req)
			require.Equal(t, http.StatusUnprocessableEntity, r.Code, "%s", r.Body)
			d := r.deployment(t)
			assert.Equal(t, StatusFailed, d.Status)
			require.NotNil(t, d.ErrorMessage)
			assert.Equal(t, tc.want, *d.ErrorMessage)
			assert.Empty(t, d.StagesCompleted)
		})
	}
}

// TestStrategies: each strategy moves traffic its own way and succeeds.
func TestStrategies(t *testing.T) {
	ts := startService(t, fastArgs...)
	for _, tc := range []struct {
		strategy string
		stages   []string
		percents []float64
	}{
		{"canary", []string{"canary", "staging", "prod"}, []float64{5, 25, 100}},
		{"blue-green", []string{"preview", "switch"}, []float64{0, 100}},
		{"rolling", []string{"batch-1", "batch-2", "batch-3", "batch-4"}, []float64{25, 50, 75, 100}},
	} {
		t.Run(tc.strategy, func(t *testing.T) {
			r := deploy(t, ts.URL, map[string]any{"service": "web-frontend", "version": "v2.0.0", "target_region": regionFor(tc.strategy), "rollout_strategy": tc.strategy})
			require.Equal(t, http.StatusOK, r.Code, "%s", r.Body)
			d := r.deployment(t)
			assert.Equal(t, tc.strategy, d.Strategy)
			assert.Equal(t, append([]string{"validation"}, tc.stages...), d.StagesCompleted)
			var got []float64
			for _, st := range d.Results[0].Stages {
				got = append(got, st.Percent)
				// A passed stage counts its passing samples, in words:
				// "1 health sample passed", "2 health samples passed".
				var n int
				_, err := fmt.Sscanf(st.Reason, "%d ", &n)
				require.NoError(t, err, st.Reason)
				want := fmt.Sprintf("%d health samples passed", n)
				if n == 1 {
					want = "1 health sample passed"
				}
				assert.Equal(t, want, st.Reason, st.Name)
			}
			assert.Equal(t, tc.percents, got)
		})
	}
}

func regionFor(strategy string) string {
	return map[string]string{"canary": "us-west-2", "blue-green": "us-east-1", "rolling": "eu-west-1"}[strategy]
}

// TestRollbacks: a latency violation and a version that degrades after a
// while are rolled back, each with the reference's wording, and traffic is
// back on the old version.
func TestRollbacks(t *testing.T) {
	ts := startService(t, "-stages", "canary:5:150ms,staging:25:6s,prod:100:0s", "-health-interval", "25ms", "-min-requests", "0")
	r := deploy(t, ts.URL, map[string]any{"service": "slow-service", "version": "v2.0.0", "target_region": "us-west-2"})
	require.Equal(t, http.StatusAccepted, r.Code, "%s", r.Body)
	d := r.deployment(t)
	assert.Equal(t, StatusRolledBack, d.Status)
	require.NotNil(t, d.ErrorMessage)
	assert.Contains(t, *d.ErrorMessage, "P99 latency")
	assert.Contains(t, *d.ErrorMessage, "exceeds threshold 1000ms")
	stable, next, pct := ts.target.(interface {
		Split(string, string) (string, string, float64)
	}).Split("slow-service", "us-west-2")
	assert.Equal(t, 0.0, pct, "stable %s next %s", stable, next)

	r = deploy(t, ts.URL, map[string]any{"service": "degrading-service", "version": "v2.0.0", "target_region": "us-west-2"})
	require.Equal(t, http.StatusAccepted, r.Code, "%s", r.Body)
	d = r.deployment(t)
	assert.Equal(t, StatusRolledBack, d.Status)
	assert.Equal(t, []string{"validation", "canary"}, d.StagesCompleted, "it passed the canary, then degraded at staging")
}

// TestConflict: a second deployment of a service in a region where one is
// active gets 409 naming it; another region is free.
func TestConflict(t *testing.T) {
	ts := startService(t, "-stages", "canary:5:2s,staging:25:2s,prod:100:0s", "-health-interval", "25ms", "-min-requests", "0")
	first := deploy(t, ts.URL, map[string]any{"service": "checkout", "version": "v2.0.0", "target_region": "us-west-2"}, "Prefer", "respond-async")
	require.Equal(t, http.StatusAccepted, first.Code, "%s", first.Body)
	id := first.deployment(t).ID
	assert.Equal(t, "/deploy/"+id, first.Header.Get("Location"))

	second := deploy(t, ts.URL, map[string]any{"service": "checkout", "version": "v1.1.0", "target_region": "us-west-2"})
	require.Equal(t, http.StatusConflict, second.Code, "%s", second.Body)
	assert.Contains(t, second.errorBody(t)["message"], id)

	other := deploy(t, ts.URL, map[string]any{"service": "checkout", "version": "v1.1.0", "target_region": "us-east-1"}, "Prefer", "respond-async")
	assert.Equal(t, http.StatusAccepted, other.Code, "%s", other.Body)

	// Ended, the first frees its region.
	d := waitFor(t, ts.URL, id, ended)
	assert.Equal(t, StatusSuccess, d.Status)
	third := deploy(t, ts.URL, map[string]any{"service": "checkout", "version": "v1.1.0", "target_region": "us-west-2"}, "Prefer", "respond-async")
	assert.Equal(t, http.StatusAccepted, third.Code, "%s", third.Body)
}

// TestWave: regions one after another, in order, each starting once the
// one before succeeded; a failure stops the wave, unless told to go on.
func TestWave(t *testing.T) {
	ts := startService(t, fastArgs...)
	regions := []string{"us-west-2", "us-east-1", "eu-west-1"}
	r := deploy(t, ts.URL, map[string]any{"service": "search", "version": "v2.0.0", "target_regions": regions})
	require.Equal(t, http.StatusOK, r.Code, "%s", r.Body)
	d := r.deployment(t)
	assert.Equal(t, StatusSuccess, d.Status)
	assert.Equal(t, regions, d.RegionsDone)
	for i := 1; i < len(d.Results); i++ {
		prev, cur := d.Results[i-1], d.Results[i]
		require.NotNil(t, prev.CompletedAt)
		require.NotNil(t, cur.StartedAt)
		assert.False(t, cur.StartedAt.Before(*prev.CompletedAt), "%s started before %s ended", cur.Region, prev.Region)
	}
	assert.Contains(t, d.StagesCompleted, "eu-west-1/prod")

	// regional-service v2.0.0 fails in eu-west-1 only. With
	// continue_on_failure the wave goes on past it: 2 of 3 regions.
	order := []string{"us-west-2", "eu-west-1", "us-east-1"}
	r = deploy(t, ts.URL, map[string]any{"service": "regional-service", "version": "v2.0.0", "target_regions": order, "continue_on_failure": true})
	require.Equal(t, http.StatusAccepted, r.Code, "%s", r.Body)
	d = r.deployment(t)
	assert.Equal(t, StatusRolledBack, d.Status)
	assert.Equal(t, []string{"us-west-2", "us-east-1"}, d.RegionsDone, "2 of 3 regions")
	require.NotNil(t, d.ErrorMessage)
	assert.True(t, strings.HasPrefix(*d.ErrorMessage, "eu-west-1: Error rate"), *d.ErrorMessage)

	// Without it, the first failure stops the wave: the blast radius is
	// one region.
	r = deploy(t, ts.URL, map[string]any{"service": "regional-service", "version": "v2.0.0", "target_regions": []string{"eu-west-1", "ap-south-1"}})
	require.Equal(t, http.StatusAccepted, r.Code, "%s", r.Body)
	d = r.deployment(t)
	assert.Equal(t, StatusRolledBack, d.Status)
	assert.Empty(t, d.RegionsDone)
	assert.Equal(t, StatusSkipped, d.Results[1].Status)
}

// TestAbortPromoteAndCord: abort rolls back at once; promote skips a bake;
// the cord refuses new deployments and pauses running ones until resumed.
func TestAbortPromoteAndCord(t *testing.T) {
	const admin = "admin-token-0123456789"
	ts := startService(t, "-stages", "canary:5:1h,staging:25:1h,prod:100:0s", "-health-interval", "25ms", "-min-requests", "0", "-admin-token", admin)
	auth := []string{"Authorization", "Bearer " + admin}
	async := []string{"Prefer", "respond-async"}

	id := deploy(t, ts.URL, map[string]any{"service": "auth", "version": "v2.0.0", "target_region": "us-west-2"}, async...).deployment(t).ID
	waitFor(t, ts.URL, id, func(d Deployment) bool { return d.Results[0].Stage == "canary" })
	r := do(t, "POST", ts.URL+"/deploy/"+id+"/abort", map[string]string{"reason": "wrong build"})
	assert.Equal(t, http.StatusUnauthorized, r.Code, "no token: %s", r.Body)
	r = do(t, "POST", ts.URL+"/deploy/"+id+"/abort", map[string]string{"reason": "wrong build"}, auth...)
	require.Equal(t, http.StatusAccepted, r.Code, "%s", r.Body)
	d := waitFor(t, ts.URL, id, ended)
	assert.Equal(t, StatusRolledBack, d.Status)
	assert.Equal(t, "Aborted: wrong build", *d.ErrorMessage)
	r = do(t, "POST", ts.URL+"/deploy/"+id+"/abort", nil, auth...)
	assert.Equal(t, http.StatusConflict, r.Code, "an ended deployment: %s", r.Body)

	id = deploy(t, ts.URL, map[string]any{"service": "auth", "version": "v1.1.0", "target_region": "us-west-2"}, async...).deployment(t).ID
	for _, stage := range []string{"canary", "staging"} {
		waitFor(t, ts.URL, id, func(d Deployment) bool { return d.Results[0].Stage == stage })
		r = do(t, "POST", ts.URL+"/deploy/"+id+"/promote", nil, auth...)
		require.Equal(t, http.StatusAccepted, r.Code, "%s", r.Body)
	}
	d = waitFor(t, ts.URL, id, ended)
	assert.Equal(t, StatusSuccess, d.Status, "promoted past two one-hour bakes")
	assert.Equal(t, "promoted", d.Results[0].Stages[0].Verdict)

	// The cord.
	id = deploy(t, ts.URL, map[string]any{"service": "auth", "version": "v1.2.0", "target_region": "us-east-1"}, async...).deployment(t).ID
	waitFor(t, ts.URL, id, func(d Deployment) bool { return d.Results[0].Stage == "canary" })
	// The board shows the rollout with its stage, share and last samples.
	row := boardRow(t, ts.URL, func(r andon.PanelRow) bool { return strings.HasPrefix(r.Cells[8], "passed: errors ") })
	assert.Equal(t, []string{id, "auth", "v1.2.0", "us-east-1", "canary", "canary", "5%"}, row.Cells[:7])
	assert.Equal(t, "green", row.Color)
	assert.Equal(t, "/deploy/"+id, row.Link)
	r = do(t, "POST", ts.URL+"/andon/cord", map[string]string{"action": "stop", "reason": "incident 42"}, auth...)
	require.Equal(t, http.StatusOK, r.Code, "%s", r.Body)
	d = waitFor(t, ts.URL, id, func(d Deployment) bool { return d.Paused })
	assert.Equal(t, "canary", d.Results[0].Stage, "a paused rollout holds its stage")
	row = boardRow(t, ts.URL, func(r andon.PanelRow) bool { return r.Cells[5] == "canary (paused)" })
	assert.Equal(t, "amber", row.Color)
	assert.Equal(t, "5%", row.Cells[6], "the share held")
	r = deploy(t, ts.URL, map[string]any{"service": "search", "version": "v2.0.0", "target_region": "us-east-1"})
	require.Equal(t, http.StatusServiceUnavailable, r.Code, "%s", r.Body)
	assert.NotEmpty(t, r.Header.Get("Retry-After"))
	r = do(t, "POST", ts.URL+"/deploy/"+id+"/resume", nil, auth...)
	assert.Equal(t, http.StatusConflict, r.Code, "no resuming while the line is stopped: %s", r.Body)
	r = do(t, "POST", ts.URL+"/andon/cord", map[string]string{"action": "start"}, auth...)
	require.Equal(t, http.StatusOK, r.Code, "%s", r.Body)
	time.Sleep(100 * time.Millisecond)
	assert.True(t, waitFor(t, ts.URL, id, func(Deployment) bool { return true }).Paused, "still paused until a person resumes it")
	r = do(t, "POST", ts.URL+"/deploy/"+id+"/resume", nil, auth...)
	require.Equal(t, http.StatusAccepted, r.Code, "%s", r.Body)
	waitFor(t, ts.URL, id, func(d Deployment) bool { return !d.Paused })
	r = do(t, "POST", ts.URL+"/deploy/"+id+"/abort", nil, auth...)
	require.Equal(t, http.StatusAccepted, r.Code, "%s", r.Body)
	assert.Equal(t, StatusRolledBack, waitFor(t, ts.URL, id, ended).Status)
	require.Eventually(t, func() bool { return len(boardPanel(t, ts.URL).Rows) == 0 }, 10*time.Second, 10*time.Millisecond,
		"an ended rollout leaves the board")
	assert.Equal(t, "no rollout running", boardPanel(t, ts.URL).Empty)
}

// boardPanel is the board's panel of active rollouts.
func boardPanel(t *testing.T, base string) andon.BoardPanel {
	t.Helper()
	return boardPanelTitled(t, base, "Active rollouts on this replica")
}

// boardPanelTitled is the board's panel of this title.
func boardPanelTitled(t *testing.T, base, title string) andon.BoardPanel {
	t.Helper()
	r := do(t, "GET", base+"/andon/api/state", nil)
	require.Equal(t, http.StatusOK, r.Code, "%s", r.Body)
	var st andon.BoardState
	require.NoError(t, json.Unmarshal(r.Body, &st))
	for _, p := range st.Panels {
		if p.Title == title {
			return p
		}
	}
	t.Fatalf("no panel %q on the board: %s", title, r.Body)
	return andon.BoardPanel{}
}

// boardRow waits for the board to show one rollout that satisfies cond.
func boardRow(t *testing.T, base string, cond func(andon.PanelRow) bool) andon.PanelRow {
	t.Helper()
	var last andon.BoardPanel
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		last = boardPanel(t, base)
		if len(last.Rows) == 1 && cond(last.Rows[0]) {
			return last.Rows[0]
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("the board never showed the rollout as expected; last: %+v", last)
	return andon.PanelRow{}
}

// TestBadInput: malformed requests get a 4xx JSON error and store nothing.
func TestBadInput(t *testing.T) {
	ts := startService(t, fastArgs...)
	long := strings.Repeat("a", 100_000)
	for _, tc := range []struct {
		name, body string
		code       int
	}{
		{"not json", `{`, 400},
		{"array", `[]`, 400},
		{"wrong type", `{"service": 1, "version": "v2.0.0", "target_region": "us-west-2"}`, 400},
		{"unknown field", `{"service": "api-service", "version": "v2.0.0", "target_region": "us-west-2", "colour": "red"}`, 400},
		{"duplicate key", `{"service": "api-service", "service": "x", "version": "v2.0.0", "target_region": "us-west-2"}`, 400},
		{"mis-cased key", `{"Service": "api-service", "version": "v2.0.0", "target_region": "us-west-2"}`, 400},
		{"no service", `{"version": "v2.0.0", "target_region": "us-west-2"}`, 400},
		{"no version", `{"service": "api-service", "target_region": "us-west-2"}`, 400},
		{"no region", `{"service": "api-service", "version": "v2.0.0"}`, 400},
		{"bad service name", `{"service": "API service", "version": "v2.0.0", "target_region": "us-west-2"}`, 400},
		{"bad version", `{"service": "api-service", "version": "v2 0", "target_region": "us-west-2"}`, 400},
		{"bad region", `{"service": "api-service", "version": "v2.0.0", "target_region": "US WEST"}`, 400},
		{"unknown strategy", `{"service": "api-service", "version": "v2.0.0", "target_region": "us-west-2", "rollout_strategy": "yolo"}`, 400},
		{"region twice", `{"service": "api-service", "version": "v2.0.0", "target_regions": ["us-west-2", "us-west-2"]}`, 400},
		{"first region differs", `{"service": "api-service", "version": "v2.0.0", "target_region": "us-east-1", "target_regions": ["us-west-2"]}`, 400},
		{"bad threshold", `{"service": "api-service", "version": "v2.0.0", "target_region": "us-west-2", "analysis": {"max_error_rate": 2}}`, 400},
		{"p99 under a nanosecond", `{"service": "api-service", "version": "v2.0.0", "target_region": "us-west-2", "analysis": {"max_p99_ms": 1e-7}}`, 400},
		{"100 kB field", `{"service": "` + long + `", "version": "v2.0.0", "target_region": "us-west-2"}`, 413},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := do(t, "POST", ts.URL+"/deploy", tc.body)
			require.Equal(t, tc.code, r.Code, "%s", r.Body)
			assert.NotEmpty(t, r.errorBody(t)["message"])
		})
	}
	r := do(t, "POST", ts.URL+"/deploy", `{}`, "Content-Type", "text/plain")
	assert.Equal(t, http.StatusUnsupportedMediaType, r.Code, "%s", r.Body)
	r = do(t, "GET", ts.URL+"/deploy/dpl_nope", nil)
	assert.Equal(t, http.StatusNotFound, r.Code)
	r = do(t, "GET", ts.URL+"/deployments", nil)
	require.Equal(t, http.StatusOK, r.Code, "%s", r.Body)
	assert.Contains(t, string(r.Body), `"total":0`, "nothing was stored")
}

// TestListKaizenMetricsAudit: the list filters, /kaizen counts, the
// metrics are exported and the audit trail records every stage and
// verifies.
func TestListKaizenMetricsAudit(t *testing.T) {
	dir := t.TempDir()
	ts := startServiceIn(t, dir, fastArgs...)
	good := deploy(t, ts.URL, map[string]any{"service": "api-service", "version": "v2.0.0", "target_region": "us-west-2"})
	require.Equal(t, 200, good.Code)
	bad := deploy(t, ts.URL, map[string]any{"service": "bad-service", "version": "v1.0.0", "target_region": "us-east-1"})
	require.Equal(t, 202, bad.Code)
	// Each answered once its end was stored; its metrics and audit record
	// follow a moment later.
	for _, id := range []string{good.deployment(t).ID, bad.deployment(t).ID} {
		require.Equal(t, 1, deploymentEnds(t, ts, id), "deployment %s", id)
	}
	require.Equal(t, 422, deploy(t, ts.URL, map[string]any{"service": "api-service", "version": "v9", "target_region": "us-east-1"}).Code)

	r := do(t, "GET", ts.URL+"/deployments?status=ROLLED_BACK", nil)
	require.Equal(t, 200, r.Code)
	assert.Contains(t, string(r.Body), `"total":1`)
	assert.Contains(t, string(r.Body), "bad-service")
	r = do(t, "GET", ts.URL+"/deployments?service=api-service&limit=1", nil)
	assert.Contains(t, string(r.Body), `"total":2`)
	assert.Equal(t, 400, do(t, "GET", ts.URL+"/deployments?limit=0", nil).Code)

	r = do(t, "GET", ts.URL+"/kaizen", nil)
	require.Equal(t, 200, r.Code)
	for _, want := range []string{`"total_deployments":3`, `"successful_deployments":1`, `"rollback_count":1`, `"success_rate_percent":33.33`} {
		assert.Contains(t, string(r.Body), want)
	}
	var k Kaizen
	require.NoError(t, json.Unmarshal(r.Body, &k))
	assert.Positive(t, k.MTTRMs, "the bad-service rollback's time to recover")
	assert.Less(t, k.MTTRMs, 25.0+100, "within a health interval (25ms) and 100ms")
	assert.Contains(t, k.StageDuration, "canary")
	assert.Contains(t, k.StageDuration, "prod")

	r = do(t, "GET", ts.URL+"/metrics", nil)
	for _, want := range []string{`deployment_success_total{strategy="canary"} 1`, `deployment_rollback_total{strategy="canary"} 1`, `deployment_duration_seconds_count{status="SUCCESS"} 1`, `deployment_analysis_checks_total{check="error_rate",result="fail"}`, `deployment_rollback_recovery_seconds_count 1`} {
		assert.Contains(t, string(r.Body), want)
	}

	require.NoError(t, ts.audit.Flush(t.Context()))
	path := filepath.Join(dir, "audit-test.jsonl")
	_, err := kaizen.VerifyAuditFiles(kaizen.VerifyOptions{}, path)
	require.NoError(t, err)
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	kinds := map[string]int{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		i := strings.Index(line, `"kind":"`)
		j := strings.Index(line[i+8:], `"`)
		kinds[line[i+8:i+8+j]]++
	}
	for _, k := range []string{"deployment", "deployment.validation", "deployment.canary.start", "deployment.canary.end", "deployment.prod.end", "deployment.analysis", "deployment.rollback", "deployment.end"} {
		assert.Positive(t, kinds[k], "audit kind %s in %v", k, kinds)
	}
}

// canaryHourArgs are the flags of a service whose canary bakes for an
// hour: a rollout stays in it.
var canaryHourArgs = []string{"-stages", "canary:5:1h,staging:25:1h,prod:100:0s", "-health-interval", "25ms", "-min-requests", "0"}

// killedInCanary starts the service on dir (canaryHourArgs), rolls
// v2.0.0 of api-service out to us-west-2 and kills the service (SIGKILL)
// once the canary has begun; it returns the deployment's ID.
func killedInCanary(t *testing.T, dir string) string {
	t.Helper()
	c := startChild(t, dir, canaryHourArgs...)
	id := deploy(t, c.URL, map[string]any{"service": "api-service", "version": "v2.0.0", "target_region": "us-west-2"}, "Prefer", "respond-async").deployment(t).ID
	waitFor(t, c.URL, id, func(d Deployment) bool { return d.Results[0].Stage == "canary" })
	require.NoError(t, c.Cmd.Process.Signal(syscall.SIGKILL))
	<-c.Done
	return id
}

// TestCrashMidRollout: the service is killed (SIGKILL) during a canary;
// started again on the same data, it ends the deployment — rolled back,
// traffic on the old version — and never runs it twice.
func TestCrashMidRollout(t *testing.T) {
	dir := t.TempDir()
	id := killedInCanary(t, dir)
	c := startChild(t, dir, canaryHourArgs...)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("restarted service's log:\n%s", c.Logs.String())
		}
	})
	d := waitFor(t, c.URL, id, ended)
	assert.Equal(t, StatusRolledBack, d.Status)
	require.NotNil(t, d.ErrorMessage)
	assert.Contains(t, *d.ErrorMessage, "Interrupted at stage canary by a restart")
	assert.Len(t, d.Results[0].Stages, 1, "the canary ran once, and was not started again")
	// The region is free again, and the old version still serves.
	r := deploy(t, c.URL, map[string]any{"service": "api-service", "version": "v2.0.0", "target_region": "us-west-2"}, "Prefer", "respond-async")
	require.Equal(t, http.StatusAccepted, r.Code, "%s", r.Body)
	again := waitFor(t, c.URL, r.deployment(t).ID, func(d Deployment) bool { return d.Results[0].Previous != "" })
	assert.Equal(t, "v1.0.0", again.Results[0].Previous)
}

// TestLockOfAStartingDeployment: a deployment that has taken its region
// and is being stored holds it: another request for the region meanwhile
// is refused with 409, not taken for the lock of a start a crash cut off.
func TestLockOfAStartingDeployment(t *testing.T) {
	ts := startService(t, fastArgs...)
	starting := newDeploymentID()
	holder, _, err := ts.store.Lock(t.Context(), "auth", "us-west-2", starting)
	require.NoError(t, err)
	require.Empty(t, holder)
	r := deploy(t, ts.URL, map[string]any{"service": "auth", "version": "v2.0.0", "target_region": "us-west-2"}, "Prefer", "respond-async")
	require.Equal(t, http.StatusConflict, r.Code, "%s", r.Body)
	assert.Equal(t, "deployment_active", r.errorBody(t)["code"])
	assert.Contains(t, r.errorBody(t)["message"], starting)
}

// TestFirstDeploymentRolledBackServesNothing: a first deployment has no
// version to return to, so its rollback takes the new version out of the
// region, traffic and all: it served every request of the region, as a
// deployment said rolled back, until a later deployment replaced it.
func TestFirstDeploymentRolledBackServesNothing(t *testing.T) {
	catalog := filepath.Join(t.TempDir(), "catalog.json")
	require.NoError(t, os.WriteFile(catalog, []byte(`{
  "regions": {"us-west-2": {"capacity": 20}, "eu-west-1": {"capacity": 20}},
  "services": {"api-service": {"instances": 4, "running": {"us-west-2": "v1.0.0"}, "versions": {
    "v1.0.0": {"error_rate": 0.006, "p99_ms": 150, "cpu": 0.35, "memory": 0.5},
    "v2.0.0": {"error_rate": 0.5, "p99_ms": 180, "cpu": 0.4, "memory": 0.6}}}}
}`), 0o600))
	ts := startService(t, "-catalog", catalog, "-stages", "canary:5:150ms,prod:100:0s", "-health-interval", "25ms", "-min-requests", "0")
	r := deploy(t, ts.URL, map[string]any{"service": "api-service", "version": "v2.0.0", "target_region": "eu-west-1", "first_deploy": true})
	require.Equal(t, http.StatusAccepted, r.Code, "%s", r.Body)
	d := r.deployment(t)
	require.Equal(t, StatusRolledBack, d.Status, "%s", r.Body)
	sim := ts.target.(interface {
		Split(string, string) (string, string, float64)
		Versions(string, string) []string
	})
	assert.Empty(t, sim.Versions("api-service", "eu-west-1"), "the rolled-back version still runs")
	stable, next, pct := sim.Split("api-service", "eu-west-1")
	assert.Equal(t, [3]any{"", "", 0.0}, [3]any{stable, next, pct}, "the rolled-back version still takes traffic")
	assert.NotContains(t, ts.logs.String(), "not retired")
}

// TestValidationThatNeverSucceeds: a region whose validation fails on
// every attempt (the health source out of reach: no Prometheus answers)
// ends FAILED with the last error when the queue gives up on it, instead
// of staying in progress forever with its region taken, which no abort
// could end.
func TestValidationThatNeverSucceeds(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	down := "http://" + ln.Addr().String()
	require.NoError(t, ln.Close())
	for _, rules := range []string{"", rulesGo} {
		t.Run("rules="+nameOr(rules, "built-in"), func(t *testing.T) {
			args := append(slices.Clone(fastArgs), "-prometheus-url", down)
			if rules != "" {
				args = append(args, "-rules", rules)
			}
			quick := func(c *Config) {
				c.JobBackoff = kanban.BackoffFunc(func(int) time.Duration { return time.Millisecond })
			}
			ts := startServiceWith(t, t.TempDir(), quick, args...)
			r := deploy(t, ts.URL, map[string]any{"service": "api-service", "version": "v2.0.0", "target_regions": []string{"us-west-2", "us-east-1"}}, "Prefer", "respond-async")
			require.Equal(t, http.StatusAccepted, r.Code, "%s", r.Body)
			d := waitFor(t, ts.URL, r.deployment(t).ID, ended)
			assert.Equal(t, StatusFailed, d.Status, "%+v", d)
			require.NotNil(t, d.ErrorMessage)
			assert.Contains(t, *d.ErrorMessage, "us-west-2: Not started after 10 attempts: ")
			assert.Contains(t, *d.ErrorMessage, "health of api-service v1.0.0 in us-west-2: ")
			assert.Contains(t, *d.ErrorMessage, "connection refused")
			assert.Equal(t, []string{StatusFailed, StatusSkipped}, []string{d.Results[0].Status, d.Results[1].Status})
			assert.Empty(t, d.StagesCompleted)
			assert.Equal(t, "v1.0.0", stableOf(t, ts, "api-service", "us-west-2"))

			// The regions are free again: the next deployment is judged,
			// not refused as a conflict, and fails as this one did, for
			// the service's own reasons (500), not the request's.
			again := deploy(t, ts.URL, map[string]any{"service": "api-service", "version": "v2.0.0", "target_region": "us-east-1"})
			assert.Equal(t, http.StatusInternalServerError, again.Code, "%s", again.Body)
			assert.Equal(t, "deployment_failed", again.errorBody(t)["code"])
		})
	}
}

// TestRequestThresholdExactlyMet: a request's analysis threshold is the
// one the samples are judged against, to the nanosecond: a version whose
// p99 is exactly the max_p99_ms asked for passes, as a reading exactly at
// its threshold does (max_p99_ms 4.1 was 4.099999 ms, truncated through a
// float64, and the rollout failed on "4.1ms exceeds threshold 4.099999ms").
func TestRequestThresholdExactlyMet(t *testing.T) {
	catalog := filepath.Join(t.TempDir(), "catalog.json")
	require.NoError(t, os.WriteFile(catalog, []byte(`{
  "regions": {"us-west-2": {"capacity": 20}},
  "services": {"api-service": {"instances": 4, "running": {"us-west-2": "v1.0.0"}, "versions": {
    "v1.0.0": {"error_rate": 0.006, "p99_ms": 2, "cpu": 0.35, "memory": 0.5},
    "v2.0.0": {"error_rate": 0.006, "p99_ms": 4.1, "cpu": 0.4, "memory": 0.6}}}}
}`), 0o600))
	for _, rules := range []string{"", rulesGo} {
		t.Run("rules="+nameOr(rules, "built-in"), func(t *testing.T) {
			args := append(slices.Clone(fastArgs), "-catalog", catalog)
			if rules != "" {
				args = append(args, "-rules", rules)
			}
			ts := startService(t, args...)
			r := deploy(t, ts.URL, map[string]any{"service": "api-service", "version": "v2.0.0", "target_region": "us-west-2", "analysis": map[string]any{"max_p99_ms": 4.1}})
			d := r.deployment(t)
			require.Equal(t, StatusSuccess, d.Status, "%s", r.Body)
			assert.Equal(t, 4.1, d.Analysis.MaxP99Ms)
		})
	}
	assert.Equal(t, 4100*time.Microsecond, Thresholds{MaxP99Ms: 4.1}.analysis().MaxP99)
	assert.Equal(t, 250300*time.Microsecond, Thresholds{MaxP99Ms: 250.3}.analysis().MaxP99)
}

// TestTimesInUTC: every time in a deployment is in UTC, whatever the
// zone of the machine the service runs on: started_at was, but
// completed_at, each region's and stage's times and the health samples'
// were in the machine's zone (2026-12-04T21:19:29+05:30).
func TestTimesInUTC(t *testing.T) {
	const zone = "Asia/Kolkata"
	if _, err := time.LoadLocation(zone); err != nil {
		t.Skipf("no time zone database: %v", err)
	}
	t.Setenv("TZ", zone) // read by the service's process at its start
	c := startChild(t, t.TempDir(), fastArgs...)
	times := regexp.MustCompile(`"(started_at|completed_at|ended_at|time)":"([^"]+)"`)
	for _, req := range []map[string]any{
		{"service": "api-service", "version": "v2.0.0", "target_regions": []string{"us-west-2", "us-east-1"}},
		{"service": "bad-service", "version": "v1.0.0", "target_region": "us-east-1"},
		{"service": "api-service", "version": "v9.9.9", "target_region": "eu-west-1"},
	} {
		r := deploy(t, c.URL, req)
		require.True(t, terminal(r.deployment(t).Status), "%s", r.Body)
		got := do(t, "GET", c.URL+"/deploy/"+r.deployment(t).ID, nil)
		for _, body := range [][]byte{r.Body, got.Body} {
			found := times.FindAllStringSubmatch(string(body), -1)
			require.NotEmpty(t, found, "%s", body)
			for _, m := range found {
				assert.True(t, strings.HasSuffix(m[2], "Z"), "%s %s is not in UTC", m[1], m[2])
			}
		}
	}
}
