package main

import (
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// sharedRegionCatalog is a catalog whose region r has room for one
// rollout at a time: two services of 4 instances serve there (8 of 12),
// and a rollout needs its own 4 beside them until the old version is
// retired.
func sharedRegionCatalog(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "catalog.json")
	require.NoError(t, os.WriteFile(path, []byte(`{
  "regions": {"r": {"capacity": 12}},
  "services": {
    "alpha": {"instances": 4, "running": {"r": "v1.0.0"}, "versions": {
      "v1.0.0": {"error_rate": 0.006, "p99_ms": 150, "cpu": 0.35, "memory": 0.5},
      "v2.0.0": {"error_rate": 0.006, "p99_ms": 150, "cpu": 0.35, "memory": 0.5}}},
    "beta": {"instances": 4, "running": {"r": "v1.0.0"}, "versions": {
      "v1.0.0": {"error_rate": 0.006, "p99_ms": 150, "cpu": 0.35, "memory": 0.5},
      "v2.0.0": {"error_rate": 0.006, "p99_ms": 150, "cpu": 0.35, "memory": 0.5}}}}
}`), 0o600))
	return path
}

const capacityAdmin = "admin-token-0123456789"

const sharedRegionFull = "Insufficient capacity in r: 4 instances needed, 0 free of 12"

// TestCapacityHeldByARolloutInProgress: a rollout in progress takes its
// new version's instances in its region until it ends, so a second
// service's rollout that would need them too is refused, and is let
// through once the first has ended. The capacity counted only the
// versions serving, and both rolled out, 16 instances in a region of 12.
func TestCapacityHeldByARolloutInProgress(t *testing.T) {
	for _, rules := range []string{"", rulesGo} {
		t.Run("rules="+nameOr(rules, "built-in"), func(t *testing.T) {
			args := append(slices.Clone(canaryHourArgs), "-catalog", sharedRegionCatalog(t), "-admin-token", capacityAdmin)
			if rules != "" {
				args = append(args, "-rules", rules)
			}
			ts := startService(t, args...)
			a := deploy(t, ts.URL, map[string]any{"service": "alpha", "version": "v2.0.0", "target_region": "r"}, "Prefer", "respond-async")
			require.Equal(t, http.StatusAccepted, a.Code, "%s", a.Body)
			aID := a.deployment(t).ID
			waitFor(t, ts.URL, aID, func(d Deployment) bool { return d.Results[0].Stage == "canary" })

			b := deploy(t, ts.URL, map[string]any{"service": "beta", "version": "v2.0.0", "target_region": "r"})
			require.Equal(t, http.StatusUnprocessableEntity, b.Code, "%s", b.Body)
			bd := b.deployment(t)
			require.NotNil(t, bd.ErrorMessage)
			assert.Equal(t, sharedRegionFull, *bd.ErrorMessage)
			assert.Equal(t, "region_capacity", bd.Results[0].Decision)

			// Aborted, the first gives its instances back.
			require.Equal(t, http.StatusAccepted, do(t, "POST", ts.URL+"/deploy/"+aID+"/abort", map[string]any{"reason": "make room"}, "Authorization", "Bearer "+capacityAdmin).Code)
			waitFor(t, ts.URL, aID, ended)
			again := deploy(t, ts.URL, map[string]any{"service": "beta", "version": "v2.0.0", "target_region": "r"}, "Prefer", "respond-async")
			require.Equal(t, http.StatusAccepted, again.Code, "%s", again.Body)
			waitFor(t, ts.URL, again.deployment(t).ID, func(d Deployment) bool { return d.Results[0].Stage == "canary" })
		})
	}
}

// TestCapacityOfRolloutsStartedAtOnce: two services' rollouts asked for
// at once in a region with room for one: one rolls out, the other is
// refused for capacity. Each checked the capacity before the other took
// it, and both went on.
func TestCapacityOfRolloutsStartedAtOnce(t *testing.T) {
	ts := startService(t, append(slices.Clone(canaryHourArgs), "-catalog", sharedRegionCatalog(t))...)
	ids := make([]string, 2)
	var wg sync.WaitGroup
	for i, service := range []string{"alpha", "beta"} {
		wg.Go(func() {
			r := deploy(t, ts.URL, map[string]any{"service": service, "version": "v2.0.0", "target_region": "r"}, "Prefer", "respond-async")
			if assert.Equal(t, http.StatusAccepted, r.Code, "%s", r.Body) {
				ids[i] = r.deployment(t).ID
			}
		})
	}
	wg.Wait()
	require.NotContains(t, ids, "")
	var rolling, refused int
	for _, id := range ids {
		d := waitFor(t, ts.URL, id, func(d Deployment) bool { return ended(d) || d.Results[0].Stage == "canary" })
		switch {
		case d.Status == StatusFailed:
			refused++
			require.NotNil(t, d.ErrorMessage)
			assert.Equal(t, sharedRegionFull, *d.ErrorMessage)
		case d.Results[0].Stage == "canary":
			rolling++
		}
	}
	assert.Equal(t, [2]int{1, 1}, [2]int{rolling, refused}, "rolling out, refused")
}

// TestCapacityOfARolloutCutOffIsGivenBack: a rollout killed (SIGKILL)
// while it holds its region's capacity gives it back once the restarted
// service has rolled it back: another service's rollout then fits.
func TestCapacityOfARolloutCutOffIsGivenBack(t *testing.T) {
	dir := t.TempDir()
	args := append(slices.Clone(canaryHourArgs), "-catalog", sharedRegionCatalog(t))
	c := startChild(t, dir, args...)
	id := deploy(t, c.URL, map[string]any{"service": "alpha", "version": "v2.0.0", "target_region": "r"}, "Prefer", "respond-async").deployment(t).ID
	waitFor(t, c.URL, id, func(d Deployment) bool { return d.Results[0].Stage == "canary" })
	require.NoError(t, c.Cmd.Process.Signal(syscall.SIGKILL))
	<-c.Done

	c = startChild(t, dir, args...)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("restarted service's log:\n%s", c.Logs.String())
		}
	})
	d := waitFor(t, c.URL, id, ended)
	require.Equal(t, StatusRolledBack, d.Status)
	r := deploy(t, c.URL, map[string]any{"service": "beta", "version": "v2.0.0", "target_region": "r"}, "Prefer", "respond-async")
	require.Equal(t, http.StatusAccepted, r.Code, "%s", r.Body)
	waitFor(t, c.URL, r.deployment(t).ID, func(d Deployment) bool { return d.Results[0].Stage == "canary" })
}

// TestCapacityReservationLeftBehindIsDropped: a reservation its run did
// not release (the process killed between storing the region's end and
// the release, or the store out of reach) counts no more once its
// deployment's region has ended, or its record is gone: the next rollout
// in the region fits, and drops it.
func TestCapacityReservationLeftBehindIsDropped(t *testing.T) {
	ts := startService(t, append(slices.Clone(fastArgs), "-catalog", sharedRegionCatalog(t))...)
	ended := deploy(t, ts.URL, map[string]any{"service": "alpha", "version": "v2.0.0", "target_region": "r"})
	require.Equal(t, http.StatusOK, ended.Code, "%s", ended.Body)
	endedID := ended.deployment(t).ID
	gone := newDeploymentID()
	left := map[string]Reservation{endedID: {Service: "alpha", Instances: 4}, gone: {Service: "alpha", Instances: 4}}
	_, rev, err := ts.store.Reservations(t.Context(), "r")
	require.NoError(t, err)
	require.NoError(t, ts.store.PutReservations(t.Context(), "r", left, rev))

	r := deploy(t, ts.URL, map[string]any{"service": "beta", "version": "v2.0.0", "target_region": "r"})
	require.Equal(t, http.StatusOK, r.Code, "%s", r.Body)
	held, _, err := ts.store.Reservations(t.Context(), "r")
	require.NoError(t, err)
	assert.Empty(t, held)
}
