package main

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/kanban"
)

// succeededIn stores deployment d's region index as a run that succeeded
// there left it, the deployment still in progress, and sends the fleet's
// traffic so.
func succeededIn(t *testing.T, ts *testService, d *Deployment, index int, previous string) {
	t.Helper()
	got, rev, err := ts.store.Get(t.Context(), d.ID)
	require.NoError(t, err)
	now := time.Now().UTC()
	rr := &got.Results[index]
	rr.Status, rr.Stage, rr.Previous, rr.Percent, rr.StartedAt, rr.CompletedAt = StatusSuccess, "prod", previous, 100, &now, &now
	rr.Stages = []StageResult{{Name: "prod", Percent: 100, StartedAt: now, EndedAt: &now, Verdict: "passed", Samples: []HealthSample{}}}
	_, err = ts.store.Update(t.Context(), got, rev)
	require.NoError(t, err)
	ctx := t.Context()
	require.NoError(t, ts.target.Deploy(ctx, got.Service, rr.Region, got.Version, ts.catalog.Instances(got.Service)))
	require.NoError(t, ts.target.Route(ctx, got.Service, rr.Region, previous, got.Version, 100))
}

// TestCutOffAfterItsRegionEnded: a job delivered past its attempts whose
// last attempt ended its region (a success stored) and was cut off
// before it moved the wave on runs the steps left, which roll nothing
// out: a deployment whose every region succeeded ends SUCCESS, and a
// wave's next region is queued and runs. The delivery ran nothing and
// gave the job up: the deployment ended FAILED, "Job given up", with
// every region it had rolled out serving the new version.
func TestCutOffAfterItsRegionEnded(t *testing.T) {
	ts := startService(t, fastArgs...)
	past := func(d *Deployment, index int) kanban.Delivery[Job] {
		return kanban.Delivery[Job]{Attempt: jobAttempts + 1, Message: kanban.Message[Job]{
			ID: jobID(d.ID, index), Key: d.Service + "/" + d.Results[index].Region,
			Payload: Job{ID: d.ID, Index: index, Region: d.Results[index].Region},
		}}
	}

	one := startedAt(t, ts, "api-service", "v2.0.0", time.Now(), "us-west-2")
	succeededIn(t, ts, one, 0, "v1.0.0")
	require.NoError(t, ts.handleJob(t.Context(), past(one, 0)))
	end := waitFor(t, ts.URL, one.ID, ended)
	assert.Equal(t, StatusSuccess, end.Status, "%+v", end)
	assert.Nil(t, end.ErrorMessage)

	wave := startedAt(t, ts, "auth", "v2.0.0", time.Now(), "us-west-2", "us-east-1")
	succeededIn(t, ts, wave, 0, "v1.0.0")
	require.NoError(t, ts.handleJob(t.Context(), past(wave, 0)))
	end = waitFor(t, ts.URL, wave.ID, ended)
	assert.Equal(t, StatusSuccess, end.Status, "%+v", end)
	assert.Equal(t, []string{StatusSuccess, StatusSuccess}, regionStatuses(end))
}
