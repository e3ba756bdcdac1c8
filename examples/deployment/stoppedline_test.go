package main

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestBadDeployOnStoppedLine: with the cord pulled, a POST /deploy that
// would be refused as malformed (a body that does not parse, a field
// missing, unknown or invalid, a body too large, another content type) is
// refused as such, in the error schema and with no Retry-After: sending
// it again later cannot help. Only a valid deployment meets the stopped
// line, 503 line_stopped with Retry-After, and so does one whose region
// another deployment holds: the stopped line refuses every deployment,
// and the regions are not taken, nor their holder looked for, while it
// is stopped. Nothing is stored. The stopped line answered 503 first,
// whatever the body held.
func TestBadDeployOnStoppedLine(t *testing.T) {
	const admin = "admin-token-0123456789"
	ts := startService(t, "-stages", "canary:5:1h,staging:25:1h,prod:100:0s", "-health-interval", "25ms", "-min-requests", "0", "-admin-token", admin)
	auth := []string{"Authorization", "Bearer " + admin}
	held := deploy(t, ts.URL, map[string]any{"service": "auth", "version": "v2.0.0", "target_region": "us-west-2"}, "Prefer", "respond-async").deployment(t).ID
	waitFor(t, ts.URL, held, func(d Deployment) bool { return d.Results[0].Stage == "canary" })
	stopLine(t, ts.URL, "incident 7", auth...)

	for _, tc := range []struct {
		name   string
		body   string
		header []string
		status int
		code   string
		field  string
	}{
		{name: "not JSON", body: `{"service": "auth",`, status: http.StatusBadRequest, code: "invalid_request"},
		{name: "unknown strategy", body: `{"service": "auth", "version": "v2.0.0", "target_region": "eu-west-1", "rollout_strategy": "big-bang"}`,
			status: http.StatusBadRequest, code: "invalid_request", field: "rollout_strategy"},
		{name: "no service", body: `{"version": "v2.0.0", "target_region": "eu-west-1"}`, status: http.StatusBadRequest, code: "invalid_request", field: "service"},
		{name: "no region", body: `{"service": "auth", "version": "v2.0.0"}`, status: http.StatusBadRequest, code: "invalid_request", field: "target_region"},
		{name: "unknown key", body: `{"service": "auth", "version": "v2.0.0", "target_region": "eu-west-1", "region": "eu-west-1"}`,
			status: http.StatusBadRequest, code: "invalid_request"},
		{name: "region twice", body: `{"service": "auth", "version": "v2.0.0", "target_regions": ["eu-west-1", "eu-west-1"]}`,
			status: http.StatusBadRequest, code: "invalid_request", field: "target_regions[1]"},
		{name: "too large", body: `{"service": "auth", "version": "v2.0.0", "target_region": "eu-west-1", "metadata": {"x": "` + strings.Repeat("a", maxBody) + `"}}`,
			status: http.StatusRequestEntityTooLarge, code: "body_too_large"},
		{name: "not JSON's content type", body: `{"service": "auth", "version": "v2.0.0", "target_region": "eu-west-1"}`, header: []string{"Content-Type", "text/plain"},
			status: http.StatusUnsupportedMediaType, code: "unsupported_media_type"},
	} {
		r := do(t, "POST", ts.URL+"/deploy", tc.body, tc.header...)
		require.Equal(t, tc.status, r.Code, "%s: %s", tc.name, r.Body)
		e := r.errorBody(t)
		assert.Equal(t, tc.code, e["code"], "%s: %s", tc.name, r.Body)
		assert.NotEmpty(t, e["message"], "%s: %s", tc.name, r.Body)
		if tc.field != "" {
			assert.Equal(t, tc.field, e["field"], "%s: %s", tc.name, r.Body)
		}
		assert.Empty(t, r.Header.Get("Retry-After"), "%s: a malformed request is no better later", tc.name)
	}

	for name, body := range map[string]map[string]any{
		"region free":                 {"service": "auth", "version": "v2.0.0", "target_region": "eu-west-1"},
		"region held by a paused one": {"service": "auth", "version": "v2.0.0", "target_region": "us-west-2"},
	} {
		r := deploy(t, ts.URL, body)
		require.Equal(t, http.StatusServiceUnavailable, r.Code, "%s: %s", name, r.Body)
		e := r.errorBody(t)
		assert.Equal(t, "line_stopped", e["code"], name)
		assert.Equal(t, "deployments are stopped: incident 7", e["message"], name)
		secs, err := strconv.Atoi(r.Header.Get("Retry-After"))
		require.NoError(t, err, "%s: Retry-After %q", name, r.Header.Get("Retry-After"))
		assert.Positive(t, secs, name)
	}

	r := do(t, "GET", ts.URL+"/deployments", nil)
	require.Equal(t, http.StatusOK, r.Code, "%s", r.Body)
	var list struct {
		Total int `json:"total"`
	}
	require.NoError(t, json.Unmarshal(r.Body, &list), "%s", r.Body)
	assert.Equal(t, 1, list.Total, "only the deployment begun before the cord was stored: %s", r.Body)

	r = do(t, "POST", ts.URL+"/deploy/"+held+"/abort", nil, auth...)
	require.Equal(t, http.StatusAccepted, r.Code, "%s", r.Body)
	waitFor(t, ts.URL, held, ended)
}
