package main

import (
	"errors"
	"net/http"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestFailedOnTheServerIs5xx: a waiting request whose deployment ends
// FAILED for the service's own reasons (here the queue refused the
// wave's next region on every attempt) is answered 500 in the error
// schema, naming the deployment and why it failed; it was answered 422,
// as if the client's request had been at fault. A deployment a
// prerequisite refuses is still 422.
func TestFailedOnTheServerIs5xx(t *testing.T) {
	ts := withFaults(t, nil, func(j Job, publish func() error) error {
		if j.Index == 1 {
			return errors.New("queue unavailable")
		}
		return publish()
	})
	r := deploy(t, ts.URL, map[string]any{"service": "api-service", "version": "v2.0.0", "target_regions": []string{"us-west-2", "us-east-1"}})
	require.Equal(t, http.StatusInternalServerError, r.Code, "%s", r.Body)
	e := r.errorBody(t)
	assert.Equal(t, "deployment_failed", e["code"])
	assert.Contains(t, e["message"], "us-east-1: Not queued after 10 attempts: queue unavailable")
	details, ok := e["details"].(map[string]any)
	require.True(t, ok, "%s", r.Body)
	id, _ := details["deployment_id"].(string)
	require.NotEmpty(t, id, "%s", r.Body)
	assert.Equal(t, StatusFailed, details["status"])
	assert.Equal(t, "/deploy/"+id, r.Header.Get("Location"))
	assert.Equal(t, StatusFailed, waitFor(t, ts.URL, id, ended).Status)

	refused := deploy(t, ts.URL, map[string]any{"service": "api-service", "version": "v9.9.9", "target_region": "eu-west-1"})
	require.Equal(t, http.StatusUnprocessableEntity, refused.Code, "%s", refused.Body)
	assert.Equal(t, StatusFailed, refused.deployment(t).Status)
}
