package main

import (
	"net/http"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestResumeOfADeploymentNotPaused: a resume sent to a deployment in
// progress that is not paused is refused with a 409 not_paused, in the
// error schema, and nothing is stored; one sent while it is paused (the
// line started again) is taken, and a second one, once it has resumed,
// is refused alike. It was answered 202 "sent", and stored over the
// command pending, for a rollout that had nothing to resume.
func TestResumeOfADeploymentNotPaused(t *testing.T) {
	const admin = "admin-token-0123456789"
	ts := startService(t, append(slowArgs, "-admin-token", admin)...)
	auth := []string{"Authorization", "Bearer " + admin}
	id := deploy(t, ts.URL, map[string]any{"service": "auth", "version": "v2.0.0", "target_region": "us-west-2"},
		"Prefer", "respond-async").deployment(t).ID
	waitFor(t, ts.URL, id, func(d Deployment) bool { return d.Results[0].Stage == "canary" })

	notPaused := func() {
		t.Helper()
		r := do(t, "POST", ts.URL+"/deploy/"+id+"/resume", map[string]string{"reason": "go on"}, auth...)
		require.Equal(t, http.StatusConflict, r.Code, "%s", r.Body)
		assert.Equal(t, "not_paused", r.errorBody(t)["code"])
		assert.Contains(t, r.errorBody(t)["message"], "deployment "+id+" is not paused: nothing to resume")
	}
	notPaused()
	assert.Zero(t, commandMessages(t, ts, id), "the resume was stored")

	stopLine(t, ts.URL, "incident 12", auth...)
	waitFor(t, ts.URL, id, func(d Deployment) bool { return d.Paused })
	r := do(t, "POST", ts.URL+"/andon/cord", map[string]string{"action": "start"}, auth...)
	require.Equal(t, http.StatusOK, r.Code, "%s", r.Body)
	r = do(t, "POST", ts.URL+"/deploy/"+id+"/resume", nil, auth...)
	require.Equal(t, http.StatusAccepted, r.Code, "a resume of a paused deployment: %s", r.Body)
	waitFor(t, ts.URL, id, func(d Deployment) bool { return !d.Paused })
	notPaused()

	r = do(t, "POST", ts.URL+"/deploy/"+id+"/abort", map[string]string{"reason": "done"}, auth...)
	require.Equal(t, http.StatusAccepted, r.Code, "%s", r.Body)
	assert.Equal(t, StatusRolledBack, waitFor(t, ts.URL, id, ended).Status)
}
