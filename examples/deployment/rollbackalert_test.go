package main

import (
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/kanban"
)

// TestRollbacksOutsideThePipelinePage: a region rolled back outside its
// run's pipeline fires DeploymentRolledBack, as one rolled back on its
// analysis does: one whose job was given up in the middle of its rollout,
// one rolled back whose record, not stored then, is stored on its job's
// last attempt, and one cut off by a restart and rolled back by its next
// delivery. The traffic went back, the region read rolled back, and the
// alert stayed silent.
func TestRollbacksOutsideThePipelinePage(t *testing.T) {
	for _, tc := range []struct {
		name string
		end  func(t *testing.T, ts *testService, d *Deployment)
	}{
		{"given up", func(t *testing.T, ts *testService, d *Deployment) {
			require.True(t, ts.giveUp(t.Context(), Job{ID: d.ID, Index: 0, Region: "us-west-2"}, errors.New("store out of reach")))
		}},
		{"its record stored on the last attempt", func(t *testing.T, ts *testService, d *Deployment) {
			// The run rolled the region back, and its write of the
			// rollback failed: its copy shows it ended.
			got, rev, err := ts.store.Get(t.Context(), d.ID)
			require.NoError(t, err)
			now := time.Now().UTC()
			rr := &got.Results[0]
			rr.Status, rr.ErrorMessage, rr.Percent, rr.Stage, rr.CompletedAt = StatusRolledBack, "Error rate 7.20% exceeds threshold 5.00%; rolled back to v1.0.0", 0, "", &now
			require.NoError(t, ts.target.Route(t.Context(), got.Service, rr.Region, "v1.0.0", got.Version, 0))
			r := &rollout{s: ts.Service, service: got.Service, version: got.Version, region: rr.Region, strategy: got.Strategy,
				d: got, rev: rev, revAt: time.Now(), cmdReady: make(chan struct{}, 1), failed: make(chan failure, 1), stage: -1}
			require.True(t, r.lastAttempt(t.Context(), errors.New("store out of reach"), false))
			require.NoError(t, ts.continueWave(t.Context(), r, false, true))
		}},
		{"cut off by a restart", func(t *testing.T, ts *testService, d *Deployment) {
			require.NoError(t, ts.handleJob(t.Context(), kanban.Delivery[Job]{Attempt: 2, Message: kanban.Message[Job]{
				ID: jobID(d.ID, 0), Key: "api-service/us-west-2", Payload: Job{ID: d.ID, Index: 0, Region: "us-west-2"},
			}}))
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ts := startService(t, fastArgs...)
			d := startedAt(t, ts, "api-service", "v2.0.0", time.Now(), "us-west-2")
			inCanary(t, ts, d, 0, "v1.0.0")
			require.False(t, rolledBackAlert(t, ts).Active)
			tc.end(t, ts, d)
			got := waitFor(t, ts.URL, d.ID, ended)
			assert.Contains(t, got.Results[0].ErrorMessage, "rolled back to v1.0.0")
			assert.True(t, rolledBackAlert(t, ts).Active, "%s does not fire after the rollback", alertRolledBack)
		})
	}
}

// TestAbortsBeforeARegionBeganPage: a region aborted before its rollout
// began fires DeploymentRolledBack, as one aborted while its
// prerequisites are judged or while it bakes does: one whose job was
// queued when the abort came, and the next region of a wave aborted
// after the region before passed its last stage. Both were recorded
// ROLLED_BACK "Aborted: …" and never counted.
func TestAbortsBeforeARegionBeganPage(t *testing.T) {
	t.Run("queued", func(t *testing.T) {
		ts := startService(t, fastArgs...)
		d := startedAt(t, ts, "api-service", "v2.0.0", time.Now(), "us-west-2")
		require.NoError(t, ts.store.SendCommand(t.Context(), d.ID, Command{Action: "abort", Reason: "wrong build", Region: "us-west-2", At: time.Now().UTC()}))
		require.Eventually(t, func() bool { return ts.aborted(d.ID) }, 10*time.Second, time.Millisecond, "the abort never reached the process")
		require.False(t, rolledBackAlert(t, ts).Active)
		require.NoError(t, ts.handleJob(t.Context(), kanban.Delivery[Job]{Attempt: 1, Message: kanban.Message[Job]{
			ID: jobID(d.ID, 0), Key: "api-service/us-west-2", Payload: Job{ID: d.ID, Index: 0, Region: "us-west-2"},
		}}))
		got := waitFor(t, ts.URL, d.ID, ended)
		assert.Equal(t, "Aborted: wrong build", got.Results[0].ErrorMessage)
		assert.Empty(t, got.Results[0].Stages)
		assert.True(t, rolledBackAlert(t, ts).Active, "%s does not fire after the abort", alertRolledBack)
	})
	t.Run("next region of a wave", func(t *testing.T) {
		const admin = "admin-token-0123456789"
		ts, gate, releaseAll := startWithRetireGate(t, "-admin-token", admin)
		id := deploy(t, ts.URL, map[string]any{"service": "orders", "version": "v2.0.0", "target_regions": []string{"us-west-2", "us-east-1"}},
			"Prefer", "respond-async").deployment(t).ID
		<-gate.retiring
		r := do(t, "POST", ts.URL+"/deploy/"+id+"/abort", map[string]string{"reason": "stop the wave"}, "Authorization", "Bearer "+admin)
		require.Equal(t, http.StatusAccepted, r.Code, "%s", r.Body)
		require.Eventually(t, func() bool { return ts.aborted(id) }, 10*time.Second, time.Millisecond, "the abort never reached the process")
		require.False(t, rolledBackAlert(t, ts).Active, "the first region succeeded")
		releaseAll()
		d := waitFor(t, ts.URL, id, ended)
		require.Equal(t, []string{StatusSuccess, StatusRolledBack}, regionStatuses(d))
		// The region is counted rolled back once its end is stored, a
		// moment after the record reads ended.
		assert.Eventually(t, func() bool { return rolledBackAlert(t, ts).Active }, 10*time.Second, time.Millisecond,
			"%s does not fire after the abort", alertRolledBack)
	})
}

// TestRefusedRegionCountsOnce: a region its prerequisites refused counts
// once in the alert rules' stats and in the metrics, as what it ended as:
// refused (DeploymentFailed's share), or, aborted while they were judged,
// rolled back (DeploymentRolledBack's). The aborted one counted both as
// refused and as rolled back: two region rollouts where one ran.
func TestRefusedRegionCountsOnce(t *testing.T) {
	denied := `taikit_signals_total{kind="deployment",outcome="denied"}`
	failed := `taikit_signals_total{kind="deployment",outcome="failed"}`
	t.Run("refused", func(t *testing.T) {
		ts := startService(t, fastArgs...)
		// Answered once the deployment's end is stored, after the
		// region is counted.
		r := deploy(t, ts.URL, map[string]any{"service": "auth", "version": "v9.9.9", "target_region": "us-west-2"})
		require.Equal(t, http.StatusUnprocessableEntity, r.Code, "%s", r.Body)
		refusals := alertMeasure(t, ts, alertFailed)
		assert.Equal(t, uint64(1), refusals.Samples)
		assert.InDelta(t, 1, refusals.Value, 1e-9)
		assert.Zero(t, rolledBackAlert(t, ts).Value)
		m := do(t, "GET", ts.URL+"/metrics", nil).Body
		assert.Equal(t, denied+" 1", sampleLine(m, denied))
		assert.Contains(t, []string{"", failed + " 0"}, sampleLine(m, failed), "none, or 0")
	})
	t.Run("refused and aborted", func(t *testing.T) {
		// The region is counted before the deployment's end is stored,
		// and abortDuringValidation reads the deployment ended.
		ts, d := abortDuringValidation(t, "v9.9.9", false)
		require.Equal(t, []string{StatusRolledBack}, regionStatuses(d))
		rollbacks := rolledBackAlert(t, ts)
		assert.True(t, rollbacks.Active, "%s does not fire after the abort", alertRolledBack)
		assert.Equal(t, uint64(1), rollbacks.Samples)
		assert.InDelta(t, 1, rollbacks.Value, 1e-9)
		assert.Zero(t, alertMeasure(t, ts, alertFailed).Value, "counted refused")
		m := do(t, "GET", ts.URL+"/metrics", nil).Body
		assert.Contains(t, []string{"", denied + " 0"}, sampleLine(m, denied), "none, or 0")
		assert.Equal(t, failed+" 1", sampleLine(m, failed))
	})
}
