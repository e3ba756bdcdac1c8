package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/examples/deployment/internal/fleet"
)

// TestPromoteStaysInItsRegion: a promote ends the bake of the region it
// was sent to; the wave's next region bakes its canary in full.
func TestPromoteStaysInItsRegion(t *testing.T) {
	const admin = "admin-token-0123456789"
	ts := startService(t, "-stages", "canary:5:1h,staging:25:1h,prod:100:0s", "-health-interval", "25ms", "-min-requests", "0", "-admin-token", admin)
	auth := []string{"Authorization", "Bearer " + admin}

	id := deploy(t, ts.URL, map[string]any{"service": "auth", "version": "v2.0.0", "target_regions": []string{"us-west-2", "us-east-1"}},
		"Prefer", "respond-async").deployment(t).ID
	for _, stage := range []string{"canary", "staging"} {
		waitFor(t, ts.URL, id, func(d Deployment) bool { return d.Results[0].Stage == stage })
		r := do(t, "POST", ts.URL+"/deploy/"+id+"/promote", nil, auth...)
		require.Equal(t, http.StatusAccepted, r.Code, "%s", r.Body)
	}
	d := waitFor(t, ts.URL, id, func(d Deployment) bool { return len(d.Results[1].Stages) > 0 })
	assert.Equal(t, StatusSuccess, d.Results[0].Status)
	r := do(t, "POST", ts.URL+"/deploy/"+id+"/abort", map[string]string{"reason": "enough"}, auth...)
	require.Equal(t, http.StatusAccepted, r.Code, "%s", r.Body)
	d = waitFor(t, ts.URL, id, ended)
	require.NotEmpty(t, d.Results[1].Stages)
	assert.Equal(t, "canary", d.Results[1].Stages[0].Name)
	assert.Equal(t, "aborted", d.Results[1].Stages[0].Verdict,
		"us-east-1's canary ended by the abort sent while it baked, not by the promote sent to us-west-2: %+v", d.Results[1].Stages)
}

// stopLine pulls the cord with reason, as the admin (auth), and
// requires it taken.
func stopLine(t *testing.T, url, reason string, auth ...string) {
	t.Helper()
	r := do(t, "POST", url+"/andon/cord", map[string]string{"action": "stop", "reason": reason}, auth...)
	require.Equal(t, http.StatusOK, r.Code, "%s", r.Body)
}

// TestAbortWhilePaused: a rollout the cord paused and a person aborted
// ends rolled back and no longer paused.
func TestAbortWhilePaused(t *testing.T) {
	const admin = "admin-token-0123456789"
	ts := startService(t, "-stages", "canary:5:1h,staging:25:1h,prod:100:0s", "-health-interval", "25ms", "-min-requests", "0", "-admin-token", admin)
	auth := []string{"Authorization", "Bearer " + admin}

	id := deploy(t, ts.URL, map[string]any{"service": "auth", "version": "v2.0.0", "target_region": "us-west-2"},
		"Prefer", "respond-async").deployment(t).ID
	waitFor(t, ts.URL, id, func(d Deployment) bool { return d.Results[0].Stage == "canary" })
	stopLine(t, ts.URL, "incident 7", auth...)
	waitFor(t, ts.URL, id, func(d Deployment) bool { return d.Paused })
	r := do(t, "POST", ts.URL+"/deploy/"+id+"/abort", nil, auth...)
	require.Equal(t, http.StatusAccepted, r.Code, "%s", r.Body)
	d := waitFor(t, ts.URL, id, ended)
	assert.Equal(t, StatusRolledBack, d.Status)
	assert.False(t, d.Paused, "an ended deployment is not paused")
}

// TestFailureWinsOverPromoteAndPass: a stage with a failed analysis
// waiting is rolled back, whatever else is ready with it: a promote, or
// the end of its bake with samples passed before.
func TestFailureWinsOverPromoteAndPass(t *testing.T) {
	ts := startService(t, fastArgs...)
	for i := range 50 {
		r := &rollout{s: ts.Service, service: "auth", version: "v2.0.0", region: "us-west-2",
			cmdReady: make(chan struct{}, 1), failed: make(chan failure, 1), passed: 1}
		r.failed <- failure{reason: "Error rate 7.20% exceeds threshold 5.00%"}
		bake := time.Hour
		if i%2 == 0 {
			r.deliver(Command{Action: "promote", Stage: "prod", At: time.Now(), Seq: 1})
		} else {
			bake = 0 // the last stage's: its bake is over at the first tick
		}
		verdict, reason, _ := r.bake(t.Context(), plannedStage{name: "prod", percent: 100, bake: bake})
		require.Equal(t, "failed", verdict, "round %d: %s", i, reason)
	}
}

// TestStartOnStoppedLine: a deployment that was queued when the cord was
// pulled, and comes to start while the line is stopped, moves no traffic:
// it pauses before its first stage until a person resumes it.
func TestStartOnStoppedLine(t *testing.T) {
	const admin = "admin-token-0123456789"
	ts := startService(t, "-workers", "1", "-stages", "canary:5:1h,staging:25:1h,prod:100:0s", "-health-interval", "25ms", "-min-requests", "0", "-admin-token", admin)
	auth := []string{"Authorization", "Bearer " + admin}
	async := []string{"Prefer", "respond-async"}

	first := deploy(t, ts.URL, map[string]any{"service": "auth", "version": "v2.0.0", "target_region": "us-west-2"}, async...).deployment(t).ID
	waitFor(t, ts.URL, first, func(d Deployment) bool { return d.Results[0].Stage == "canary" })
	queued := deploy(t, ts.URL, map[string]any{"service": "search", "version": "v2.0.0", "target_region": "us-west-2"}, async...).deployment(t).ID
	stopLine(t, ts.URL, "incident 9", auth...)
	waitFor(t, ts.URL, first, func(d Deployment) bool { return d.Paused })
	// The one worker is free again: the queued deployment starts.
	r := do(t, "POST", ts.URL+"/deploy/"+first+"/abort", nil, auth...)
	require.Equal(t, http.StatusAccepted, r.Code, "%s", r.Body)
	d := waitFor(t, ts.URL, queued, func(d Deployment) bool { return d.Paused })
	assert.Zero(t, d.Results[0].Percent, "no traffic moved on a stopped line")
	assert.Empty(t, d.Results[0].Stages, "no stage began on a stopped line")

	r = do(t, "POST", ts.URL+"/andon/cord", map[string]string{"action": "start"}, auth...)
	require.Equal(t, http.StatusOK, r.Code, "%s", r.Body)
	r = do(t, "POST", ts.URL+"/deploy/"+queued+"/resume", nil, auth...)
	require.Equal(t, http.StatusAccepted, r.Code, "%s", r.Body)
	d = waitFor(t, ts.URL, queued, func(d Deployment) bool { return d.Results[0].Stage == "canary" })
	assert.False(t, d.Paused)
	r = do(t, "POST", ts.URL+"/deploy/"+queued+"/abort", map[string]string{"reason": "done"}, auth...)
	require.Equal(t, http.StatusAccepted, r.Code, "%s", r.Body)
	assert.Equal(t, "Aborted: done", *waitFor(t, ts.URL, queued, ended).ErrorMessage)
}

// TestHeldRolloutIsNotJudged: a rollout held before its first stage on a
// stopped line has no stage to judge; the health probes taken meanwhile
// neither fail it nor count, though its version, running and failing
// (bad-service errs on 7.2% of requests), takes preview traffic. They
// sampled five minutes of it, as if a stage had run that long, and
// rolled the deployment back while it waited.
func TestHeldRolloutIsNotJudged(t *testing.T) {
	const admin = "admin-token-0123456789"
	ts := startService(t, "-workers", "1", "-stages", "canary:5:1h,prod:100:0s", "-health-interval", "25ms", "-admin-token", admin)
	auth := []string{"Authorization", "Bearer " + admin}
	async := []string{"Prefer", "respond-async"}

	first := deploy(t, ts.URL, map[string]any{"service": "auth", "version": "v2.0.0", "target_region": "us-west-2"}, async...).deployment(t).ID
	waitFor(t, ts.URL, first, func(d Deployment) bool { return d.Results[0].Stage == "canary" })
	queued := deploy(t, ts.URL, map[string]any{"service": "bad-service", "version": "v1.0.0", "target_region": "us-east-1"}, async...).deployment(t).ID
	stopLine(t, ts.URL, "incident 10", auth...)
	waitFor(t, ts.URL, first, func(d Deployment) bool { return d.Paused })
	r := do(t, "POST", ts.URL+"/deploy/"+first+"/abort", nil, auth...)
	require.Equal(t, http.StatusAccepted, r.Code, "%s", r.Body)
	waitFor(t, ts.URL, queued, func(d Deployment) bool { return d.Paused })

	time.Sleep(40 * 25 * time.Millisecond) // forty health intervals on hold
	d := waitFor(t, ts.URL, queued, func(Deployment) bool { return true })
	assert.Equal(t, StatusInProgress, d.Status, "%+v", d)
	assert.Nil(t, d.ErrorMessage)
	assert.Empty(t, d.Results[0].Stages, "no stage began on a stopped line")
}

// TestFailingSamplesBelowFailAfter: a stage whose samples all failed, too
// few in a row for -fail-after, ends at its limit with the analysis that
// failed as its reason, not as if it had no data.
func TestFailingSamplesBelowFailAfter(t *testing.T) {
	ts := startService(t, append([]string{"-fail-after", "100"}, fastArgs...)...)
	r := deploy(t, ts.URL, map[string]any{"service": "bad-service", "version": "v1.0.0", "target_region": "us-east-1"})
	require.Equal(t, http.StatusAccepted, r.Code, "%s", r.Body)
	d := r.deployment(t)
	assert.Equal(t, StatusRolledBack, d.Status)
	require.NotNil(t, d.ErrorMessage)
	assert.Equal(t, "Error rate 7.20% exceeds threshold 5.00%", *d.ErrorMessage)
	require.NotEmpty(t, d.Results[0].Stages)
	assert.Equal(t, "Error rate 7.20% exceeds threshold 5.00%", d.Results[0].Stages[0].Reason)
}

// TestAbortIsFinal: an abort sent to a deployment still queued stands
// when a promote or a resume follows it; the deployment starts, and is
// rolled back, rather than rolling out as if it had never been aborted.
func TestAbortIsFinal(t *testing.T) {
	const admin = "admin-token-0123456789"
	ts := startService(t, "-workers", "1", "-stages", "canary:5:1h,staging:25:1h,prod:100:0s", "-health-interval", "25ms", "-min-requests", "0", "-admin-token", admin)
	auth := []string{"Authorization", "Bearer " + admin}
	async := []string{"Prefer", "respond-async"}

	first := deploy(t, ts.URL, map[string]any{"service": "auth", "version": "v2.0.0", "target_region": "us-west-2"}, async...).deployment(t).ID
	waitFor(t, ts.URL, first, func(d Deployment) bool { return d.Results[0].Stage == "canary" })
	queued := deploy(t, ts.URL, map[string]any{"service": "search", "version": "v2.0.0", "target_region": "us-west-2"}, async...).deployment(t).ID
	r := do(t, "POST", ts.URL+"/deploy/"+queued+"/abort", map[string]string{"reason": "wrong build"}, auth...)
	require.Equal(t, http.StatusAccepted, r.Code, "%s", r.Body)
	for _, action := range []string{"resume", "promote"} {
		r = do(t, "POST", ts.URL+"/deploy/"+queued+"/"+action, nil, auth...)
		require.Equal(t, http.StatusConflict, r.Code, "%s after an abort: %s", action, r.Body)
		assert.Equal(t, "aborting", r.errorBody(t)["code"])
	}
	// The one worker is free again: the queued deployment starts, and
	// takes the abort.
	r = do(t, "POST", ts.URL+"/deploy/"+first+"/abort", nil, auth...)
	require.Equal(t, http.StatusAccepted, r.Code, "%s", r.Body)
	d := waitFor(t, ts.URL, queued, ended)
	assert.Equal(t, StatusRolledBack, d.Status)
	require.NotNil(t, d.ErrorMessage)
	assert.Equal(t, "Aborted: wrong build", *d.ErrorMessage)
	assert.Empty(t, d.Results[0].Stages, "no traffic moved to the aborted version")
	assert.Equal(t, []string{"v1.0.0"}, ts.target.(interface{ Versions(string, string) []string }).Versions("search", "us-west-2"),
		"the aborted version never ran")
}

// TestAbortEndsTheWave: an abort ends a wave that goes on after a
// failure (continue_on_failure): the regions after the one it stopped are
// skipped, and none of them starts the aborted version or moves traffic
// to it.
func TestAbortEndsTheWave(t *testing.T) {
	const admin = "admin-token-0123456789"
	ts := startService(t, "-stages", "canary:5:1h,staging:25:1h,prod:100:0s", "-health-interval", "25ms", "-min-requests", "0", "-admin-token", admin)
	auth := []string{"Authorization", "Bearer " + admin}
	id := deploy(t, ts.URL, map[string]any{"service": "orders", "version": "v2.0.0", "target_regions": []string{"us-west-2", "us-east-1", "eu-west-1"}, "continue_on_failure": true},
		"Prefer", "respond-async").deployment(t).ID
	waitFor(t, ts.URL, id, func(d Deployment) bool { return d.Results[0].Stage == "canary" })
	r := do(t, "POST", ts.URL+"/deploy/"+id+"/abort", map[string]string{"reason": "bad idea"}, auth...)
	require.Equal(t, http.StatusAccepted, r.Code, "%s", r.Body)
	d := waitFor(t, ts.URL, id, ended)
	assert.Equal(t, StatusRolledBack, d.Status)
	assert.Equal(t, StatusRolledBack, d.Results[0].Status)
	for _, rr := range d.Results[1:] {
		assert.Equal(t, StatusSkipped, rr.Status, "%s after the abort", rr.Region)
		assert.Empty(t, rr.Stages, "%s: no traffic moved to the aborted version", rr.Region)
	}
	assert.Equal(t, []string{"us-west-2/validation"}, d.StagesCompleted)
}

// TestCommandsAtOnce: a promote, an abort and a resume sent together to
// a rollout end it rolled back by the abort, whatever their order.
func TestCommandsAtOnce(t *testing.T) {
	const admin = "admin-token-0123456789"
	ts := startService(t, "-stages", "canary:5:1h,staging:25:1h,prod:100:0s", "-health-interval", "25ms", "-min-requests", "0", "-admin-token", admin)
	auth := []string{"Authorization", "Bearer " + admin}
	id := deploy(t, ts.URL, map[string]any{"service": "auth", "version": "v2.0.0", "target_region": "us-west-2"}, "Prefer", "respond-async").deployment(t).ID
	waitFor(t, ts.URL, id, func(d Deployment) bool { return d.Results[0].Stage == "canary" })
	var wg sync.WaitGroup
	codes := make([]int, 3)
	for i, action := range []string{"promote", "abort", "resume"} {
		wg.Go(func() {
			codes[i] = do(t, "POST", ts.URL+"/deploy/"+id+"/"+action, map[string]string{"reason": action}, auth...).Code
		})
	}
	wg.Wait()
	require.Equal(t, http.StatusAccepted, codes[1], "the abort was taken")
	d := waitFor(t, ts.URL, id, ended)
	assert.Equal(t, StatusRolledBack, d.Status)
	require.NotNil(t, d.ErrorMessage)
	assert.Equal(t, "Aborted: abort", *d.ErrorMessage)
	assert.Zero(t, d.Results[0].Percent)
}

// TestPromoteBeforeTheRegionBegins: a promote sent to a deployment whose
// region has no stage baking yet (it waits for a worker) is refused; it
// would otherwise wait for the region and end its canary at the first
// sample, before anyone saw it.
func TestPromoteBeforeTheRegionBegins(t *testing.T) {
	const admin = "admin-token-0123456789"
	ts := startService(t, "-workers", "1", "-stages", "canary:5:1h,staging:25:1h,prod:100:0s", "-health-interval", "25ms", "-min-requests", "0", "-admin-token", admin)
	auth := []string{"Authorization", "Bearer " + admin}
	async := []string{"Prefer", "respond-async"}

	first := deploy(t, ts.URL, map[string]any{"service": "auth", "version": "v2.0.0", "target_region": "us-west-2"}, async...).deployment(t).ID
	waitFor(t, ts.URL, first, func(d Deployment) bool { return d.Results[0].Stage == "canary" })
	queued := deploy(t, ts.URL, map[string]any{"service": "search", "version": "v2.0.0", "target_region": "us-west-2"}, async...).deployment(t).ID
	r := do(t, "POST", ts.URL+"/deploy/"+queued+"/promote", nil, auth...)
	require.Equal(t, http.StatusConflict, r.Code, "a promote of a region not begun: %s", r.Body)
	assert.Equal(t, "not_baking", r.errorBody(t)["code"])

	// The one worker is free again: the queued deployment starts, and its
	// canary bakes until a promote sent while it bakes.
	r = do(t, "POST", ts.URL+"/deploy/"+first+"/abort", nil, auth...)
	require.Equal(t, http.StatusAccepted, r.Code, "%s", r.Body)
	d := waitFor(t, ts.URL, queued, func(d Deployment) bool { return d.Results[0].Stage == "canary" })
	require.Len(t, d.Results[0].Stages, 1)
	assert.Nil(t, d.Results[0].Stages[0].EndedAt, "the canary bakes: %+v", d.Results[0].Stages[0])
	r = do(t, "POST", ts.URL+"/deploy/"+queued+"/promote", nil, auth...)
	require.Equal(t, http.StatusAccepted, r.Code, "%s", r.Body)
	d = waitFor(t, ts.URL, queued, func(d Deployment) bool { return d.Results[0].Stage == "staging" })
	assert.Equal(t, "promoted", d.Results[0].Stages[0].Verdict)
	r = do(t, "POST", ts.URL+"/deploy/"+queued+"/abort", nil, auth...)
	require.Equal(t, http.StatusAccepted, r.Code, "%s", r.Body)
	waitFor(t, ts.URL, queued, ended)
}

// TestCommandOnStoppedLine: a promote or a resume on a stopped line is
// refused with a message that names what was asked.
func TestCommandOnStoppedLine(t *testing.T) {
	const admin = "admin-token-0123456789"
	ts := startService(t, "-stages", "canary:5:1h,staging:25:1h,prod:100:0s", "-health-interval", "25ms", "-min-requests", "0", "-admin-token", admin)
	auth := []string{"Authorization", "Bearer " + admin}
	id := deploy(t, ts.URL, map[string]any{"service": "auth", "version": "v2.0.0", "target_region": "us-west-2"}, "Prefer", "respond-async").deployment(t).ID
	waitFor(t, ts.URL, id, func(d Deployment) bool { return d.Results[0].Stage == "canary" })
	stopLine(t, ts.URL, "incident 3", auth...)
	for action, want := range map[string]string{"promote": "start it before promoting", "resume": "start it before resuming"} {
		r := do(t, "POST", ts.URL+"/deploy/"+id+"/"+action, nil, auth...)
		require.Equal(t, http.StatusConflict, r.Code, "%s: %s", action, r.Body)
		e := r.errorBody(t)
		assert.Equal(t, "line_stopped", e["code"])
		assert.Equal(t, "the line is stopped (incident 3): "+want, e["message"])
	}
	r := do(t, "POST", ts.URL+"/deploy/"+id+"/abort", nil, auth...)
	require.Equal(t, http.StatusAccepted, r.Code, "%s", r.Body)
	waitFor(t, ts.URL, id, ended)
}

// TestAbortDuringValidation: an abort sent while the region's
// prerequisites are being judged (here the health of the version serving,
// read from a slow Prometheus) ends the region before any traffic moves
// to the new version: no stage starts.
func TestAbortDuringValidation(t *testing.T) {
	ts, d := abortDuringValidation(t, "v2.0.0", false)
	assert.Equal(t, StatusRolledBack, d.Status)
	require.NotNil(t, d.ErrorMessage)
	assert.Equal(t, "Aborted: wrong build", *d.ErrorMessage)
	assert.Empty(t, d.Results[0].Stages, "a stage started, and traffic moved to the new version, after the abort")
	assert.Equal(t, "v1.0.0", stableOf(t, ts, "auth", "us-west-2"))
}

// TestAbortDuringValidationOfARefusedRegion: an abort sent while the
// prerequisites of a region they then refuse (a version not in the
// catalog) are being judged ends the region ROLLED_BACK with the abort's
// reason, as for a region they let through. The abort was answered 202
// and then ignored: the deployment ended FAILED.
func TestAbortDuringValidationOfARefusedRegion(t *testing.T) {
	_, d := abortDuringValidation(t, "v9.9.9", false)
	assert.Equal(t, StatusRolledBack, d.Status)
	require.NotNil(t, d.ErrorMessage)
	assert.Equal(t, "Aborted: wrong build", *d.ErrorMessage)
	assert.Equal(t, StatusRolledBack, d.Results[0].Status)
}

// TestAbortUnheardOfWhenARegionIsRefused: an abort stored while the
// prerequisites of the deployment's last region were judged, and not yet
// heard of by the process that runs it when they refuse the region,
// ends the region ROLLED_BACK with the abort's reason, as one heard of
// does: the refusal closes the deployment's commands in the store, and
// finds the abort there. The abort was answered 202 and then ignored:
// the deployment ended FAILED.
func TestAbortUnheardOfWhenARegionIsRefused(t *testing.T) {
	_, d := abortDuringValidation(t, "v9.9.9", true)
	assert.Equal(t, StatusRolledBack, d.Status)
	require.NotNil(t, d.ErrorMessage)
	assert.Equal(t, "Aborted: wrong build", *d.ErrorMessage)
	assert.Equal(t, StatusRolledBack, d.Results[0].Status)
	assert.Empty(t, d.Results[0].Decision, "recorded refused")
}

// abortDuringValidation deploys version of auth to us-west-2 and aborts
// it while its prerequisites read the health of the version serving from
// a Prometheus that answers once the abort has reached the rollout; with
// unheard, the process then forgets the abort, as one whose watcher has
// not delivered it yet. It returns the service and the deployment ended.
func abortDuringValidation(t *testing.T, version string, unheard bool) (*testService, Deployment) {
	const admin = "admin-token-0123456789"
	validating, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	prom := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := r.FormValue("query")
		if strings.Contains(q, `version="v1.0.0"`) {
			once.Do(func() { close(validating) })
			select {
			case <-release:
			case <-r.Context().Done():
				return
			}
		}
		v := "0.01"
		if strings.HasPrefix(q, "sum(increase(") {
			v = "100"
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[%d,%q]}]}}`, time.Now().Unix(), v)
	}))
	t.Cleanup(prom.Close)
	releaseAll := sync.OnceFunc(func() { close(release) })
	t.Cleanup(releaseAll)
	ts := startService(t, "-stages", "canary:5:1h,staging:25:1h,prod:100:0s", "-health-interval", "25ms", "-min-requests", "0",
		"-admin-token", admin, "-prometheus-url", prom.URL)
	auth := []string{"Authorization", "Bearer " + admin}

	id := deploy(t, ts.URL, map[string]any{"service": "auth", "version": version, "target_region": "us-west-2"},
		"Prefer", "respond-async").deployment(t).ID
	<-validating
	r := do(t, "POST", ts.URL+"/deploy/"+id+"/abort", map[string]string{"reason": "wrong build"}, auth...)
	require.Equal(t, http.StatusAccepted, r.Code, "%s", r.Body)
	require.Eventually(t, func() bool { return ts.aborted(id) }, 10*time.Second, time.Millisecond, "the abort never reached the rollout's process")
	if unheard {
		ts.dropCommand(id)
	}
	releaseAll()
	return ts, waitFor(t, ts.URL, id, ended)
}

// refusalGate is the deployments bucket where the write that records a
// region refused by its prerequisites, its deployment still in progress,
// waits once stored until the test lets it go: the deployment's end,
// stored after it, is held back until then.
type refusalGate struct {
	once            sync.Once
	stored, release chan struct{}
}

func (g *refusalGate) wrap(kv jetstream.KeyValue) jetstream.KeyValue {
	return &refusalGateBucket{kv, g}
}

type refusalGateBucket struct {
	jetstream.KeyValue
	g *refusalGate
}

func (b *refusalGateBucket) Update(ctx context.Context, key string, value []byte, revision uint64) (uint64, error) {
	rev, err := b.KeyValue.Update(ctx, key, value, revision)
	var d Deployment
	if err == nil && json.Unmarshal(value, &d) == nil && d.Status == StatusInProgress &&
		slices.ContainsFunc(d.Results, func(rr RegionResult) bool { return rr.Status == StatusFailed && rr.Decision != "" }) {
		b.g.once.Do(func() {
			close(b.g.stored)
			<-b.g.release
		})
	}
	return rev, err
}

// releaseOnceWaiting calls release once a request waits for the end of
// deployment id (Service.waited), or gives up when the test ends.
func releaseOnceWaiting(t *testing.T, ts *testService, id string, release func()) {
	go func() {
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		for !ts.waited(id) {
			select {
			case <-t.Context().Done():
				return
			case <-tick.C:
			}
		}
		release()
	}()
}

// TestAbortWhileARefusalEnds: an abort sent once the prerequisites have
// refused the deployment's only region, its refusal stored and the
// deployment's end not yet, is refused as one sent once the deployment
// has ended FAILED is: 409 not_in_progress naming FAILED, answered once
// the record reads ended, and not kept. It was answered 202 and then
// ignored: the deployment ended FAILED all the same.
func TestAbortWhileARefusalEnds(t *testing.T) {
	const admin = "admin-token-0123456789"
	gate := &refusalGate{stored: make(chan struct{}), release: make(chan struct{})}
	release := sync.OnceFunc(func() { close(gate.release) })
	ts := startServiceWith(t, t.TempDir(), func(c *Config) { c.WrapDeployments = gate.wrap },
		append(slices.Clip(fastArgs), "-admin-token", admin)...)
	t.Cleanup(release) // before the service's own clean-up, which waits for the rollout
	auth := []string{"Authorization", "Bearer " + admin}

	id := deploy(t, ts.URL, map[string]any{"service": "auth", "version": "v9.9.9", "target_region": "us-west-2"},
		"Prefer", "respond-async").deployment(t).ID
	<-gate.stored
	require.Equal(t, StatusInProgress, do(t, "GET", ts.URL+"/deploy/"+id, nil).deployment(t).Status)
	// The answer waits for the deployment's end, which the run stores
	// once let go.
	releaseOnceWaiting(t, ts, id, release)
	r := do(t, "POST", ts.URL+"/deploy/"+id+"/abort", map[string]string{"reason": "wrong build"}, auth...)
	require.Equal(t, http.StatusConflict, r.Code, "%s", r.Body)
	e := r.errorBody(t)
	assert.Equal(t, "not_in_progress", e["code"])
	assert.Equal(t, "deployment "+id+" has ended FAILED; nothing to abort", e["message"])

	d := do(t, "GET", ts.URL+"/deploy/"+id, nil).deployment(t)
	assert.Equal(t, StatusFailed, d.Status, "answered before the record read ended")
	assert.Equal(t, StatusFailed, d.Results[0].Status)
	assert.Equal(t, "image_exists", d.Results[0].Decision)
	require.Eventually(t, func() bool {
		_, pending := ts.pendingCommand(id)
		_, err := ts.store.control.Get(t.Context(), "cmd."+id)
		return !pending && errors.Is(err, jetstream.ErrKeyNotFound)
	}, 10*time.Second, 10*time.Millisecond, "a command was kept after the deployment's end")
}

// TestCommandWhileAWaveThatFailedEnds: a command sent once the last region
// of a wave that went on past a refused region (continue_on_failure) has
// passed its last stage, and before the deployment's end is stored, is
// refused as one sent to a deployment that has ended FAILED, which it
// does: 409 not_in_progress naming FAILED. It was refused as one sent to
// a deployment that succeeded, 409 already_succeeded, and the deployment
// ended FAILED.
func TestCommandWhileAWaveThatFailedEnds(t *testing.T) {
	const admin = "admin-token-0123456789"
	ts, gate, releaseAll := startWithRetireGate(t, "-admin-token", admin)
	auth := []string{"Authorization", "Bearer " + admin}

	id := deploy(t, ts.URL, map[string]any{"service": "api-service", "version": "v2.0.0", "target_regions": []string{"ap-south-1", "us-west-2"}, "continue_on_failure": true},
		"Prefer", "respond-async").deployment(t).ID
	<-gate.retiring // us-west-2's success is stored; the deployment's end is not
	d := do(t, "GET", ts.URL+"/deploy/"+id, nil).deployment(t)
	require.Equal(t, StatusInProgress, d.Status)
	require.Equal(t, []string{StatusFailed, StatusSuccess}, regionStatuses(d))
	require.NotEmpty(t, d.Results[0].Decision, "ap-south-1 refused by a prerequisite")
	releaseOnceWaiting(t, ts, id, releaseAll)
	r := do(t, "POST", ts.URL+"/deploy/"+id+"/abort", map[string]string{"reason": "too late"}, auth...)
	require.Equal(t, http.StatusConflict, r.Code, "%s", r.Body)
	e := r.errorBody(t)
	assert.Equal(t, "not_in_progress", e["code"])
	assert.Equal(t, "deployment "+id+" has ended FAILED; nothing to abort", e["message"])
	assert.Equal(t, StatusFailed, do(t, "GET", ts.URL+"/deploy/"+id, nil).deployment(t).Status)
}

// TestAbortBetweenRegions: an abort that comes once a region's last stage
// has passed, before the wave's next region is queued, ends the
// deployment ROLLED_BACK with the next region aborted before it began.
// It ended SUCCESS, the abort answered 202 and then lost, with the rest
// of the wave SKIPPED under a deployment that said every region had
// succeeded.
func TestAbortBetweenRegions(t *testing.T) {
	const admin = "admin-token-0123456789"
	ts, gate, releaseAll := startWithRetireGate(t, "-admin-token", admin)
	auth := []string{"Authorization", "Bearer " + admin}

	id := deploy(t, ts.URL, map[string]any{"service": "orders", "version": "v2.0.0", "target_regions": []string{"us-west-2", "us-east-1", "eu-west-1"}},
		"Prefer", "respond-async").deployment(t).ID
	<-gate.retiring
	r := do(t, "POST", ts.URL+"/deploy/"+id+"/abort", map[string]string{"reason": "stop the wave"}, auth...)
	require.Equal(t, http.StatusAccepted, r.Code, "%s", r.Body)
	require.Eventually(t, func() bool { return ts.aborted(id) }, 10*time.Second, time.Millisecond, "the abort never reached the rollout's process")
	releaseAll()

	d := waitFor(t, ts.URL, id, ended)
	assert.Equal(t, StatusRolledBack, d.Status, "a deployment aborted before its wave ended")
	assert.Equal(t, []string{StatusSuccess, StatusRolledBack, StatusSkipped}, regionStatuses(d))
	assert.Equal(t, []string{"us-west-2"}, d.RegionsDone)
	require.NotNil(t, d.ErrorMessage)
	assert.Equal(t, "us-east-1: Aborted: stop the wave", *d.ErrorMessage)
	assert.Empty(t, d.Results[1].Stages, "no traffic moved to the aborted version in us-east-1")
	assert.NotNil(t, d.Results[1].CompletedAt)
	assert.Equal(t, "v1.0.0", stableOf(t, ts, "orders", "us-east-1"))
}

// routeGate is a fleet whose Route to percent waits, once, until the test
// lets it go: the rollout has then passed the stage before, and its
// record still shows that stage baking.
type routeGate struct {
	fleet.Target
	percent          float64
	once             sync.Once
	routing, release chan struct{}
}

func (g *routeGate) Route(ctx context.Context, service, region, stable, next string, percent float64) error {
	if percent == g.percent {
		g.once.Do(func() {
			close(g.routing)
			<-g.release
		})
	}
	return g.Target.Route(ctx, service, region, stable, next, percent)
}

// TestPromoteEndsTheStageItWasSentFor: a promote sent while the record
// shows the canary baking, and taken by the rollout once the canary has
// passed, does not end the next stage: staging bakes (here until an
// abort). It ended staging's bake before it had begun, a stage no one
// had seen, and the rollout went on to prod.
func TestPromoteEndsTheStageItWasSentFor(t *testing.T) {
	const admin = "admin-token-0123456789"
	gate := &routeGate{percent: 25, routing: make(chan struct{}), release: make(chan struct{})}
	releaseAll := sync.OnceFunc(func() { close(gate.release) })
	defer releaseAll()
	ts := startServiceWith(t, t.TempDir(), func(c *Config) {
		c.WrapTarget = func(t fleet.Target) fleet.Target { gate.Target = t; return gate }
	}, "-stages", "canary:5:100ms,staging:25:1h,prod:100:0s", "-health-interval", "25ms", "-min-requests", "0", "-admin-token", admin)
	auth := []string{"Authorization", "Bearer " + admin}

	id := deploy(t, ts.URL, map[string]any{"service": "auth", "version": "v2.0.0", "target_region": "us-west-2"},
		"Prefer", "respond-async").deployment(t).ID
	<-gate.routing // the canary passed; staging is about to begin
	d := do(t, "GET", ts.URL+"/deploy/"+id, nil).deployment(t)
	require.Equal(t, "canary", d.Results[0].Stage, "the record shows the canary baking")
	r := do(t, "POST", ts.URL+"/deploy/"+id+"/promote", map[string]string{"reason": "canary looks good"}, auth...)
	require.Equal(t, http.StatusAccepted, r.Code, "%s", r.Body)
	require.Eventually(t, func() bool {
		c, ok := ts.pendingCommand(id)
		v, running := ts.runs.Load(id)
		if !ok || !running {
			return false
		}
		ro := v.(*rollout)
		ro.mu.Lock()
		defer ro.mu.Unlock()
		return ro.lastCmd == c.Seq
	}, 10*time.Second, time.Millisecond, "the promote never reached the rollout")
	releaseAll()
	waitFor(t, ts.URL, id, func(d Deployment) bool { return d.Results[0].Stage != "canary" })
	r = do(t, "POST", ts.URL+"/deploy/"+id+"/abort", map[string]string{"reason": "enough"}, auth...)
	require.Equal(t, http.StatusAccepted, r.Code, "%s", r.Body)

	d = waitFor(t, ts.URL, id, ended)
	require.Len(t, d.Results[0].Stages, 2, "%+v", d.Results[0].Stages)
	assert.Equal(t, "passed", d.Results[0].Stages[0].Verdict)
	assert.Equal(t, "staging", d.Results[0].Stages[1].Name)
	assert.Equal(t, "aborted", d.Results[0].Stages[1].Verdict, "staging was ended by the promote sent for the canary")
	assert.Equal(t, StatusRolledBack, d.Status)
}

// TestCommandsDroppedAtTheEnd: a command sent to one region of a wave is
// forgotten when the deployment ends in another: every replica kept it
// among the pending ones, and the store kept it, for ever.
func TestCommandsDroppedAtTheEnd(t *testing.T) {
	const admin = "admin-token-0123456789"
	ts := startService(t, "-stages", "canary:5:300ms,staging:25:150ms,prod:100:0s", "-health-interval", "25ms", "-min-requests", "0", "-admin-token", admin)
	auth := []string{"Authorization", "Bearer " + admin}

	id := deploy(t, ts.URL, map[string]any{"service": "auth", "version": "v2.0.0", "target_regions": []string{"us-west-2", "us-east-1"}},
		"Prefer", "respond-async").deployment(t).ID
	waitFor(t, ts.URL, id, func(d Deployment) bool { return d.Results[0].Stage == "canary" })
	r := do(t, "POST", ts.URL+"/deploy/"+id+"/promote", nil, auth...)
	require.Equal(t, http.StatusAccepted, r.Code, "%s", r.Body)
	d := waitFor(t, ts.URL, id, ended)
	require.Equal(t, StatusSuccess, d.Status)
	require.Eventually(t, func() bool {
		_, pending := ts.pendingCommand(id)
		_, err := ts.store.control.Get(t.Context(), "cmd."+id)
		return !pending && errors.Is(err, jetstream.ErrKeyNotFound)
	}, 10*time.Second, 10*time.Millisecond, "the command was kept after the deployment's end")
}

// deployGate is a fleet whose Deploy of version waits, once, until the
// test lets it go: the rollout is then starting its new version, and
// reads no command.
type deployGate struct {
	fleet.Target
	version            string
	once               sync.Once
	deploying, release chan struct{}
	mu                 sync.Mutex
	deployed           []string // the versions deployed, in order
}

func (g *deployGate) Deploy(ctx context.Context, service, region, version string, instances int) error {
	g.mu.Lock()
	g.deployed = append(g.deployed, version)
	g.mu.Unlock()
	if version == g.version {
		g.once.Do(func() {
			close(g.deploying)
			<-g.release
		})
	}
	return g.Target.Deploy(ctx, service, region, version, instances)
}

// abortWhileStarting starts a service, with args, whose fleet holds the
// start of version gated; deploys v2.0.0 to us-west-2; once that start
// has begun stores resumes resumes, then sends an abort, answered 202; waits
// until reached says the abort came where the test wants it; lets the
// start go on, and returns the deployment as it ended, rolled back by the
// abort, and the fleet's gate.
func abortWhileStarting(t *testing.T, gated string, resumes int, reached func(ts *testService, id string) bool, args ...string) (Deployment, *deployGate) {
	const admin = "admin-token-0123456789"
	gate := &deployGate{version: gated, deploying: make(chan struct{}), release: make(chan struct{})}
	releaseAll := sync.OnceFunc(func() { close(gate.release) })
	defer releaseAll()
	ts := startServiceWith(t, t.TempDir(), func(c *Config) {
		c.WrapTarget = func(t fleet.Target) fleet.Target { gate.Target = t; return gate }
	}, slices.Concat(args, []string{"-admin-token", admin})...)
	auth := []string{"Authorization", "Bearer " + admin}

	id := deploy(t, ts.URL, map[string]any{"service": "auth", "version": "v2.0.0", "target_region": "us-west-2"},
		"Prefer", "respond-async").deployment(t).ID
	<-gate.deploying
	// Stored as replicas that read the deployment paused store them: the
	// API refuses a resume of one it reads not paused.
	for range resumes {
		require.NoError(t, ts.store.SendCommand(t.Context(), id, Command{Action: "resume", Reason: "go on", Region: "us-west-2", At: time.Now()}))
	}
	r := do(t, "POST", ts.URL+"/deploy/"+id+"/abort", map[string]string{"reason": "wrong build"}, auth...)
	require.Equal(t, http.StatusAccepted, r.Code, "%s", r.Body)
	require.Eventually(t, func() bool { return reached(ts, id) }, 10*time.Second, time.Millisecond, "the abort never reached where it was sent for")
	releaseAll()

	d := waitFor(t, ts.URL, id, ended)
	assert.Equal(t, StatusRolledBack, d.Status)
	require.NotNil(t, d.ErrorMessage)
	assert.Equal(t, "Aborted: wrong build", *d.ErrorMessage)
	assert.Equal(t, "v1.0.0", stableOf(t, ts, "auth", "us-west-2"))
	return d, gate
}

// abortTaken reports whether the rollout of deployment id has taken the
// abort pending for it (and every command sent before).
func abortTaken(ts *testService, id string) bool {
	c, ok := ts.pendingCommand(id)
	v, running := ts.runs.Load(id)
	if !ok || !running || c.Action != "abort" {
		return false
	}
	run := v.(*rollout)
	run.mu.Lock()
	defer run.mu.Unlock()
	return run.lastCmd == c.Seq
}

// TestAbortAfterManyCommands: an abort sent after more commands than a
// rollout holds, while it starts its new version and reads none, ends
// the rollout once it reads them. The abort was dropped, though answered
// 202, and the deployment rolled out in full.
func TestAbortAfterManyCommands(t *testing.T) {
	abortWhileStarting(t, "v2.0.0", 12, abortTaken, fastArgs...)
}

// TestAbortWhileTheNewVersionStarts: an abort that reaches the rollout
// while it starts the new version ends the region before any traffic
// moves to that version: no stage starts. The canary took its share of
// the traffic first, and was rolled back at its bake's first read of a
// command.
func TestAbortWhileTheNewVersionStarts(t *testing.T) {
	d, _ := abortWhileStarting(t, "v2.0.0", 0, abortTaken, slowArgs...)
	assert.Empty(t, d.Results[0].Stages, "a stage started, and traffic moved to the new version, after the abort")
}

// TestAbortWhileTheVersionServingStarts: an abort sent while the
// rollout makes sure of the version serving (which a fleet that starts
// empty starts then) ends the region before the new version starts. The
// new version was started, to be retired at once.
func TestAbortWhileTheVersionServingStarts(t *testing.T) {
	d, gate := abortWhileStarting(t, "v1.0.0", 0, func(ts *testService, id string) bool { return ts.aborted(id) }, slowArgs...)
	assert.Empty(t, d.Results[0].Stages)
	gate.mu.Lock()
	defer gate.mu.Unlock()
	assert.NotContains(t, gate.deployed, "v2.0.0", "the new version started after the abort")
}

// slowArgs bake each stage an hour: a rollout reads commands only in a
// bake or held at its start, and these tests have it end by an abort.
var slowArgs = []string{"-stages", "canary:5:1h,staging:25:1h,prod:100:0s", "-health-interval", "25ms", "-min-requests", "0"}

// TestResumeBeforeTheLineStartsHere: a resume stored after the stop that
// paused a rollout, and read while the line is stopped on the rollout's
// replica (another replica, on a started line, answered it: one that
// started the line, which this one has yet to follow), resumes the
// rollout once the line starts here. It was read on a stopped line and
// dropped: the rollout stayed paused, though the resume was answered 202.
func TestResumeBeforeTheLineStartsHere(t *testing.T) {
	const admin = "admin-token-0123456789"
	ts := startService(t, "-stages", "canary:5:1h,staging:25:1h,prod:100:0s", "-health-interval", "25ms", "-min-requests", "0", "-admin-token", admin)
	auth := []string{"Authorization", "Bearer " + admin}

	id := deploy(t, ts.URL, map[string]any{"service": "auth", "version": "v2.0.0", "target_region": "us-west-2"},
		"Prefer", "respond-async").deployment(t).ID
	waitFor(t, ts.URL, id, func(d Deployment) bool { return d.Results[0].Stage == "canary" })
	stopLine(t, ts.URL, "incident 11", auth...)
	waitFor(t, ts.URL, id, func(d Deployment) bool { return d.Paused })

	// The resume, as another replica on a started line stores it, held
	// here for the line's change; then a promote of a stage passed, whose
	// drop, logged, says that the rollout has looked at the cord since.
	// The promote is sent only once the resume is held: a deployment's
	// command is one key of the control bucket, which keeps its last
	// value only, and a watcher that had yet to read the resume when the
	// promote replaced it would never see it (the rollout stayed paused).
	held := make(chan struct{})
	var once sync.Once
	lineWaited = func(*rollout) { once.Do(func() { close(held) }) }
	t.Cleanup(func() { lineWaited = nil })
	now := time.Now()
	require.NoError(t, ts.store.SendCommand(t.Context(), id, Command{Action: "resume", Reason: "go on", Region: "us-west-2", At: now}))
	select {
	case <-held:
	case <-time.After(30 * time.Second):
		t.Fatal("the resume was not held for the line's change")
	}
	require.NoError(t, ts.store.SendCommand(t.Context(), id, Command{Action: "promote", Region: "us-west-2", Stage: "staging", At: now}))
	require.Eventually(t, func() bool {
		return strings.Contains(ts.logs.String(), `msg="promote of a stage that has ended is dropped"`)
	}, 10*time.Second, time.Millisecond, "the commands never reached the rollout")

	r := do(t, "POST", ts.URL+"/andon/cord", map[string]string{"action": "start"}, auth...)
	require.Equal(t, http.StatusOK, r.Code, "%s", r.Body)
	d := waitFor(t, ts.URL, id, func(d Deployment) bool { return !d.Paused })
	assert.Equal(t, StatusInProgress, d.Status)
	r = do(t, "POST", ts.URL+"/deploy/"+id+"/abort", nil, auth...)
	require.Equal(t, http.StatusAccepted, r.Code, "%s", r.Body)
	waitFor(t, ts.URL, id, ended)
}

// TestResumeHeldAsTheLineStarts: a resume held for the line's change
// (read while the line is stopped here), with the line started here just
// after — before the rollout takes the cord's channel again, so that the
// change closes a channel no one waits on any more — resumes the rollout
// all the same. It stayed paused on a started line until the line
// changed again.
func TestResumeHeldAsTheLineStarts(t *testing.T) {
	h := holdResumeAsTheLineChanges(t, func(ts *testService, auth []string) {
		startLine(t, ts, auth)
	})
	d := waitFor(t, h.ts.URL, h.id, func(d Deployment) bool { return !d.Paused })
	assert.Equal(t, StatusInProgress, d.Status)
	h.abort(t)
}

// TestResumeHeldAcrossAStopAndStart: a resume held for the line's change
// (read while the line is stopped here), with the line started and
// stopped again here just after — before the rollout takes the cord's
// channel again — is read again on the line stopped after it, and
// dropped: the stop came after it. It stayed held (the line stopped, and
// the channel of that change closed with no one waiting on it) until the
// line's next start resumed the rollout with it.
func TestResumeHeldAcrossAStopAndStart(t *testing.T) {
	h := holdResumeAsTheLineChanges(t, func(ts *testService, auth []string) {
		startLine(t, ts, auth)
		stopLine(t, ts.URL, "incident 14", auth...)
		assert.Eventually(t, func() bool { return ts.cordState().Reason == "incident 14" }, 10*time.Second, time.Millisecond)
	})
	// A promote of a stage passed, whose drop, logged, says that the
	// rollout has looked at the cord since the hook.
	require.NoError(t, h.ts.store.SendCommand(t.Context(), h.id, Command{Action: "promote", Region: "us-west-2", Stage: "staging", At: time.Now()}))
	require.Eventually(t, func() bool {
		return strings.Contains(h.ts.logs.String(), `msg="promote of a stage that has ended is dropped"`)
	}, 10*time.Second, time.Millisecond, "the promote never reached the rollout")
	h.r.mu.Lock()
	still := slices.Clone(h.r.held)
	h.r.mu.Unlock()
	assert.Empty(t, still, "a resume the line's last stop came after is dropped, not held for its next start")
	h.abort(t)
}

// heldResume is a rollout paused by the line in its canary, whose resume
// was held for the line's change.
type heldResume struct {
	ts   *testService
	id   string
	auth []string
	r    *rollout // the rollout that held it
}

// holdResumeAsTheLineChanges pauses a rollout's canary by the cord and
// sends it a resume, as another replica on a started line would; change
// runs on the rollout's goroutine once the rollout holds the resume for
// the line's change, before it looks at the cord's channel again.
func holdResumeAsTheLineChanges(t *testing.T, change func(ts *testService, auth []string)) heldResume {
	const admin = "admin-token-0123456789"
	h := heldResume{auth: []string{"Authorization", "Bearer " + admin}}
	h.ts = startService(t, append(slices.Clip(slowArgs), "-admin-token", admin)...)
	h.id = deploy(t, h.ts.URL, map[string]any{"service": "auth", "version": "v2.0.0", "target_region": "us-west-2"},
		"Prefer", "respond-async").deployment(t).ID
	waitFor(t, h.ts.URL, h.id, func(d Deployment) bool { return d.Results[0].Stage == "canary" })
	stopLine(t, h.ts.URL, "incident 12", h.auth...)
	waitFor(t, h.ts.URL, h.id, func(d Deployment) bool { return d.Paused })

	var once sync.Once
	changed := make(chan struct{})
	lineWaited = func(r *rollout) {
		once.Do(func() {
			defer close(changed)
			h.r = r
			change(h.ts, h.auth)
		})
	}
	t.Cleanup(func() { lineWaited = nil })
	require.NoError(t, h.ts.store.SendCommand(t.Context(), h.id, Command{Action: "resume", Reason: "go on", Region: "us-west-2", At: time.Now()}))
	select {
	case <-changed:
	case <-time.After(30 * time.Second):
		t.Fatal("the resume was not held for the line's change")
	}
	return h
}

// startLine starts the line by the cord and waits until this replica
// follows.
func startLine(t *testing.T, ts *testService, auth []string) {
	r := do(t, "POST", ts.URL+"/andon/cord", map[string]string{"action": "start"}, auth...)
	assert.Equal(t, http.StatusOK, r.Code, "%s", r.Body)
	assert.Eventually(t, func() bool { return !ts.cordState().Stopped }, 10*time.Second, time.Millisecond)
}

// abort ends the rollout by an abort.
func (h heldResume) abort(t *testing.T) {
	r := do(t, "POST", h.ts.URL+"/deploy/"+h.id+"/abort", nil, h.auth...)
	require.Equal(t, http.StatusAccepted, r.Code, "%s", r.Body)
	waitFor(t, h.ts.URL, h.id, ended)
}

// TestPromoteOfThePauseAtStart: a promote sent while the rollout was
// held before its first stage, and read once a stage bakes (another
// promote, or a resume, ended the hold before it), ends no bake: the
// canary bakes on, here until an abort. It ended the canary's bake at
// once, a stage no one had seen.
func TestPromoteOfThePauseAtStart(t *testing.T) {
	ts := startService(t, fastArgs...)
	r := &rollout{s: ts.Service, service: "auth", version: "v2.0.0", region: "us-west-2",
		cmdReady: make(chan struct{}, 1), failed: make(chan failure, 1), passed: 1}
	r.deliver(Command{Action: "promote", At: time.Now(), Seq: 1})
	verdict, reason := "", ""
	done := make(chan struct{})
	go func() {
		defer close(done)
		verdict, reason, _ = r.bake(t.Context(), plannedStage{name: "canary", percent: 5, bake: time.Hour})
	}()
	require.Eventually(t, func() bool {
		r.mu.Lock()
		defer r.mu.Unlock()
		return len(r.inbox) == 0
	}, 10*time.Second, time.Millisecond, "the promote was not read")
	r.deliver(Command{Action: "abort", Reason: "enough", At: time.Now(), Seq: 2})
	<-done
	assert.Equal(t, "aborted", verdict, reason)
}

// TestInboxKeepsEveryKind: the commands a rollout has not read yet are
// kept however many come, the latest of each kind in the order sent, and
// an abort takes the place of them all.
func TestInboxKeepsEveryKind(t *testing.T) {
	r := &rollout{region: "us-west-2", cmdReady: make(chan struct{}, 1)}
	seq := uint64(0)
	send := func(action, stage string) {
		seq++
		r.deliver(Command{Action: action, Stage: stage, At: time.Now(), Seq: seq})
	}
	take := func() []string {
		var got []string
		for {
			select {
			case <-r.cmdReady:
			default:
				return got
			}
			c, ok := r.nextCommand()
			require.True(t, ok, "ready with no command")
			got = append(got, c.Action+":"+c.Stage)
		}
	}
	for i := range 20 {
		send("resume", "")
		send("promote", fmt.Sprint("stage-", i))
	}
	send("resume", "")
	assert.Equal(t, []string{"promote:stage-19", "resume:"}, take())
	for range 20 {
		send("resume", "")
	}
	send("abort", "")
	send("resume", "")
	assert.Equal(t, []string{"abort:"}, take(), "an abort is final")
}

// TestCommandsHeldForTheLine: a resume or a promote read on a line
// stopped here waits for the line's next change if it was stored after
// the stop, and is dropped if the stop came after it.
func TestCommandsHeldForTheLine(t *testing.T) {
	ts := startService(t, fastArgs...)
	ts.applyCord(Cord{Stopped: true, Reason: "incident 12", Rev: 10})
	defer ts.applyCord(Cord{Rev: 13})
	r := &rollout{s: ts.Service, region: "us-west-2", cmdReady: make(chan struct{}, 1)}
	assert.False(t, r.waitForLine(Command{Action: "resume", Seq: 9}), "a resume the stop came after")
	assert.True(t, r.waitForLine(Command{Action: "resume", Seq: 11}))
	assert.True(t, r.waitForLine(Command{Action: "promote", Stage: "canary", Seq: 12}))
	select {
	case <-r.cmdReady:
		t.Fatal("a command held for the line is read before it changes")
	default:
	}
	r.releaseHeld()
	var got []uint64
	for range 2 {
		<-r.cmdReady
		c, ok := r.nextCommand()
		require.True(t, ok)
		got = append(got, c.Seq)
	}
	assert.Equal(t, []uint64{11, 12}, got)
	assert.Empty(t, r.held)
}

// TestAbortWhileTheLastRegionEnds: an abort sent once the last region's
// last stage has passed, while the rollout stores its success, is refused
// with a 409 that says the rollout succeeded and there is nothing to
// abort, and the deployment ends SUCCESS; a promote or a resume then is
// refused alike. The abort was answered 202 "sent", and then ignored: the
// deployment ended SUCCESS.
func TestAbortWhileTheLastRegionEnds(t *testing.T) {
	const admin = "admin-token-0123456789"
	ts, gate, releaseAll := startWithRetireGate(t, "-admin-token", admin)
	auth := []string{"Authorization", "Bearer " + admin}

	id := deploy(t, ts.URL, map[string]any{"service": "auth", "version": "v2.0.0", "target_region": "us-west-2"},
		"Prefer", "respond-async").deployment(t).ID
	<-gate.retiring // the region's success is stored; the deployment's is not
	require.Equal(t, StatusInProgress, do(t, "GET", ts.URL+"/deploy/"+id, nil).deployment(t).Status)
	r := do(t, "POST", ts.URL+"/deploy/"+id+"/abort", map[string]string{"reason": "too late"}, auth...)
	require.Equal(t, http.StatusConflict, r.Code, "an abort that lost the race to the rollout's end: %s", r.Body)
	assert.Equal(t, "already_succeeded", r.errorBody(t)["code"])
	assert.Contains(t, r.errorBody(t)["message"], "nothing to abort")
	r = do(t, "POST", ts.URL+"/deploy/"+id+"/resume", nil, auth...)
	require.Equal(t, http.StatusConflict, r.Code, "%s", r.Body)
	assert.Equal(t, "already_succeeded", r.errorBody(t)["code"])
	releaseAll()

	d := waitFor(t, ts.URL, id, ended)
	assert.Equal(t, StatusSuccess, d.Status)
	assert.Equal(t, "v2.0.0", stableOf(t, ts, "auth", "us-west-2"))
	require.Eventually(t, func() bool {
		_, pending := ts.pendingCommand(id)
		_, err := ts.store.control.Get(t.Context(), "cmd."+id)
		return !pending && errors.Is(err, jetstream.ErrKeyNotFound)
	}, 10*time.Second, 10*time.Millisecond, "a command was kept after the deployment's end")
}

// TestAbortAfterTheEnd: an abort stored once the deployment has ended
// SUCCESS (the request read it in progress, and the run ended it and
// dropped its commands before the abort was stored) is refused, and not
// kept: it was stored, answered 202, and kept for ever by the store and
// every replica.
func TestAbortAfterTheEnd(t *testing.T) {
	ts := startService(t, fastArgs...)
	id := deploy(t, ts.URL, map[string]any{"service": "auth", "version": "v2.0.0", "target_region": "us-west-2"}).deployment(t).ID
	d := waitFor(t, ts.URL, id, ended)
	require.Equal(t, StatusSuccess, d.Status)
	require.Eventually(t, func() bool {
		_, err := ts.store.control.Get(t.Context(), "cmd."+id)
		return errors.Is(err, jetstream.ErrKeyNotFound)
	}, 10*time.Second, 10*time.Millisecond, "the deployment's commands were not dropped at its end")
	err := ts.store.SendCommand(t.Context(), id, Command{Action: "abort", Reason: "too late", Region: "us-west-2", At: time.Now()})
	require.ErrorIs(t, err, ErrSucceeded)
	_, err = ts.store.control.Get(t.Context(), "cmd."+id)
	assert.ErrorIs(t, err, jetstream.ErrKeyNotFound, "the abort was kept")
}

// TestAbortBeforeTheEndWins: an abort stored before the last region's
// run closes the deployment's commands at its end is the run's to act
// on; one sent after is refused.
func TestAbortBeforeTheEndWins(t *testing.T) {
	ts := startService(t, fastArgs...)
	ctx := t.Context()
	require.NoError(t, ts.store.SendCommand(ctx, "d-1", Command{Action: "resume", At: time.Now()}))
	require.NoError(t, ts.store.SendCommand(ctx, "d-1", Command{Action: "abort", Reason: "first", At: time.Now()}))
	c, aborted, _, err := ts.store.EndCommands(ctx, "d-1", Command{Status: StatusSuccess})
	require.NoError(t, err)
	require.True(t, aborted, "an abort stored before the end")
	assert.Equal(t, "first", c.Reason)
	assert.NotZero(t, c.Seq)

	require.NoError(t, ts.store.SendCommand(ctx, "d-2", Command{Action: "resume", At: time.Now()}))
	_, aborted, rev, err := ts.store.EndCommands(ctx, "d-2", Command{Status: StatusSuccess})
	require.NoError(t, err)
	require.False(t, aborted)
	assert.NotZero(t, rev)
	_, aborted, again, err := ts.store.EndCommands(ctx, "d-2", Command{Status: StatusSuccess})
	require.NoError(t, err)
	assert.False(t, aborted)
	assert.Equal(t, rev, again, "closed twice (a retry of a write that landed)")
	for _, action := range []string{"abort", "promote", "resume"} {
		err := ts.store.SendCommand(ctx, "d-2", Command{Action: action, At: time.Now()})
		assert.ErrorIs(t, err, ErrSucceeded, action)
	}
}

// controlMessages counts the messages the control bucket's stream holds
// for deployment id's commands: a key's value, or the marker its purge
// left.
func controlMessages(t *testing.T, ts *testService, id string) uint64 {
	t.Helper()
	st, err := ts.js.Stream(t.Context(), "KV_deploy_control")
	require.NoError(t, err)
	info, err := st.Info(t.Context(), jetstream.WithSubjectFilter("$KV.deploy_control.cmd."+id))
	require.NoError(t, err)
	return info.State.Msgs
}

// TestTheEndOfCommandsLeavesNothing: a deployment that ends SUCCESS with
// no command sent leaves nothing in the control bucket. The end of its
// commands (EndCommands), stored by every deployment that passes its last
// stage, was purged, and the purge's marker kept for good: one for every
// deployment, until the bucket (64 MiB, shared with the cord) refused
// every write, the cord's and every rollout's end among them.
func TestTheEndOfCommandsLeavesNothing(t *testing.T) {
	ts := startService(t, fastArgs...)
	id := deploy(t, ts.URL, map[string]any{"service": "auth", "version": "v2.0.0", "target_region": "us-west-2"}).deployment(t).ID
	require.Equal(t, StatusSuccess, waitFor(t, ts.URL, id, ended).Status)
	require.Eventually(t, func() bool {
		_, pending := ts.pendingCommand(id)
		return !pending && controlMessages(t, ts, id) == 0
	}, 10*time.Second, 10*time.Millisecond, "the deployment left %d messages in the control bucket", controlMessages(t, ts, id))
}

// TestRedeliveredEndDropsTheEndOfCommands: a run cut off after its
// region's success was stored, before it ended the deployment, leaves the
// end of the commands it stored; the job delivered again (which did not
// store it, and may run on a replica that has not seen it yet) drops it
// as it ends the deployment.
func TestRedeliveredEndDropsTheEndOfCommands(t *testing.T) {
	ts, gate, releaseAll := startWithRetireGate(t)
	id := deploy(t, ts.URL, map[string]any{"service": "auth", "version": "v2.0.0", "target_region": "us-west-2"},
		"Prefer", "respond-async").deployment(t).ID
	<-gate.retiring // the region's success is stored; the deployment's is not
	_, err := ts.store.control.Get(t.Context(), "cmd."+id)
	require.NoError(t, err, "the end of the commands is stored")
	// The replica the job is delivered again to has not seen it.
	ts.dropCommand(id)

	takeUp(t, ts, id, "auth")
	require.Equal(t, StatusSuccess, do(t, "GET", ts.URL+"/deploy/"+id, nil).deployment(t).Status)
	_, err = ts.store.control.Get(t.Context(), "cmd."+id)
	assert.ErrorIs(t, err, jetstream.ErrKeyNotFound, "the end of the commands is still kept")
	assert.Zero(t, controlMessages(t, ts, id))
	releaseAll()
	require.Eventually(t, func() bool { _, running := ts.runs.Load(id); return !running },
		10*time.Second, time.Millisecond, "the first run never stopped")
}

// TestPromoteAfterTheEnd: a promote or a resume stored once the
// deployment has ended SUCCESS (the request read it in progress) is
// refused with ErrSucceeded, as an abort is, and not kept. It was
// answered 202 "sent", for a rollout that had nothing left to promote.
func TestPromoteAfterTheEnd(t *testing.T) {
	ts := startService(t, fastArgs...)
	id := deploy(t, ts.URL, map[string]any{"service": "auth", "version": "v2.0.0", "target_region": "us-west-2"}).deployment(t).ID
	require.Equal(t, StatusSuccess, waitFor(t, ts.URL, id, ended).Status)
	require.Eventually(t, func() bool {
		_, err := ts.store.control.Get(t.Context(), "cmd."+id)
		return errors.Is(err, jetstream.ErrKeyNotFound)
	}, 10*time.Second, 10*time.Millisecond, "the deployment's commands were not dropped at its end")
	for _, action := range []string{"promote", "resume"} {
		err := ts.store.SendCommand(t.Context(), id, Command{Action: action, Region: "us-west-2", Stage: "canary", At: time.Now()})
		require.ErrorIs(t, err, ErrSucceeded, action)
		_, err = ts.store.control.Get(t.Context(), "cmd."+id)
		assert.ErrorIs(t, err, jetstream.ErrKeyNotFound, "the %s was kept", action)
	}
}

// TestCommandToAFailedDeployment: a command sent to a deployment that
// has ended FAILED is refused with a 409 that names the status and says
// there is nothing to abort, promote or resume.
func TestCommandToAFailedDeployment(t *testing.T) {
	const admin = "admin-token-0123456789"
	ts := startService(t, append(fastArgs, "-admin-token", admin)...)
	auth := []string{"Authorization", "Bearer " + admin}
	r := deploy(t, ts.URL, map[string]any{"service": "api-service", "version": "v9.9.9", "target_region": "us-west-2"})
	require.Equal(t, http.StatusUnprocessableEntity, r.Code, "%s", r.Body)
	id := r.deployment(t).ID
	for _, action := range []string{"abort", "promote", "resume"} {
		r := do(t, "POST", ts.URL+"/deploy/"+id+"/"+action, nil, auth...)
		require.Equal(t, http.StatusConflict, r.Code, "%s: %s", action, r.Body)
		assert.Equal(t, "not_in_progress", r.errorBody(t)["code"], action)
		assert.Contains(t, r.errorBody(t)["message"], "has ended FAILED; nothing to "+action)
	}
}

// TestCommandAfterAFailedEnd: a command stored once the deployment has
// ended FAILED (the request read it in progress, and the run ended it
// and dropped its commands before the command was stored) is refused
// with ErrEnded, naming the status, and not kept. It was dropped, and
// answered 202 "sent": a command no run would ever take.
func TestCommandAfterAFailedEnd(t *testing.T) {
	ts := startService(t, fastArgs...)
	r := deploy(t, ts.URL, map[string]any{"service": "api-service", "version": "v9.9.9", "target_region": "us-west-2"})
	require.Equal(t, http.StatusUnprocessableEntity, r.Code, "%s", r.Body)
	id := r.deployment(t).ID
	for _, action := range []string{"abort", "promote", "resume"} {
		err := ts.store.SendCommand(t.Context(), id, Command{Action: action, Reason: "too late", Region: "us-west-2", At: time.Now()})
		require.ErrorIs(t, err, ErrEnded, action)
		var ended *EndedError
		require.ErrorAs(t, err, &ended, action)
		assert.Equal(t, StatusFailed, ended.Status, action)
		assert.NotErrorIs(t, err, ErrSucceeded, action)
		_, err = ts.store.control.Get(t.Context(), "cmd."+id)
		assert.ErrorIs(t, err, jetstream.ErrKeyNotFound, "the %s was kept", action)
	}
}

// TestCommandAfterAnAbortedEnd: once an abort has rolled the deployment
// back, the same abort stored again (the run took it and ended the
// deployment before SendCommand read the record) stands as sent; another
// abort, a promote or a resume is refused with ErrEnded, naming
// ROLLED_BACK. None is kept.
func TestCommandAfterAnAbortedEnd(t *testing.T) {
	const admin = "admin-token-0123456789"
	ts := startService(t, "-stages", "canary:5:1h,staging:25:1h,prod:100:0s", "-health-interval", "25ms", "-min-requests", "0", "-admin-token", admin)
	auth := []string{"Authorization", "Bearer " + admin}
	id := deploy(t, ts.URL, map[string]any{"service": "auth", "version": "v2.0.0", "target_region": "us-west-2"},
		"Prefer", "respond-async").deployment(t).ID
	waitFor(t, ts.URL, id, func(d Deployment) bool { return d.Results[0].Stage == "canary" })
	r := do(t, "POST", ts.URL+"/deploy/"+id+"/abort", map[string]string{"reason": "bad canary"}, auth...)
	require.Equal(t, http.StatusAccepted, r.Code, "%s", r.Body)
	require.Equal(t, StatusRolledBack, waitFor(t, ts.URL, id, ended).Status)
	require.Eventually(t, func() bool {
		_, err := ts.store.control.Get(t.Context(), "cmd."+id)
		return errors.Is(err, jetstream.ErrKeyNotFound)
	}, 10*time.Second, 10*time.Millisecond, "the deployment's commands were not dropped at its end")

	require.NoError(t, ts.store.SendCommand(t.Context(), id, Command{Action: "abort", Reason: "bad canary", Region: "us-west-2", At: time.Now()}),
		"the abort the rollback names")
	_, err := ts.store.control.Get(t.Context(), "cmd."+id)
	assert.ErrorIs(t, err, jetstream.ErrKeyNotFound, "the abort was kept")
	for _, c := range []Command{{Action: "abort", Reason: "another"}, {Action: "promote", Stage: "canary"}, {Action: "resume"}} {
		c.Region, c.At = "us-west-2", time.Now()
		err := ts.store.SendCommand(t.Context(), id, c)
		var ended *EndedError
		require.ErrorAs(t, err, &ended, c.Action)
		assert.Equal(t, StatusRolledBack, ended.Status, c.Action)
		_, err = ts.store.control.Get(t.Context(), "cmd."+id)
		assert.ErrorIs(t, err, jetstream.ErrKeyNotFound, "the %s was kept", c.Action)
	}
	r = do(t, "POST", ts.URL+"/deploy/"+id+"/resume", nil, auth...)
	require.Equal(t, http.StatusConflict, r.Code, "%s", r.Body)
	assert.Equal(t, "not_in_progress", r.errorBody(t)["code"])
	assert.Contains(t, r.errorBody(t)["message"], "has ended ROLLED_BACK; nothing to resume")
}

// TestCommandWithAnEmptyChunkedBody: a command whose body is sent chunked
// and empty has no reason, as one with Content-Length: 0 has; it was
// refused as "request body is empty".
func TestCommandWithAnEmptyChunkedBody(t *testing.T) {
	const admin = "admin-token-0123456789"
	ts := startService(t, "-stages", "canary:5:1h,prod:100:0s", "-health-interval", "25ms", "-min-requests", "0", "-admin-token", admin)
	id := deploy(t, ts.URL, map[string]any{"service": "auth", "version": "v2.0.0", "target_region": "us-west-2"},
		"Prefer", "respond-async").deployment(t).ID
	// Sent by hand: net/http sends an empty body of unknown length with
	// Content-Length: 0.
	u, err := url.Parse(ts.URL)
	require.NoError(t, err)
	conn, err := net.Dial("tcp", u.Host)
	require.NoError(t, err)
	defer conn.Close()
	_, err = fmt.Fprintf(conn, "POST /deploy/%s/abort HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\n"+
		"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n0\r\n\r\n", id, u.Host, admin)
	require.NoError(t, err)
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.Equal(t, http.StatusAccepted, resp.StatusCode, "%s", body)
	assert.Equal(t, StatusRolledBack, waitFor(t, ts.URL, id, ended).Status)
}
