package main

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestPreferAsyncHeader: respond-async is asked for in any case, among
// other preferences, and with parameters or a value (RFC 7240: a
// preference may carry ";" parameters); a preference that merely starts
// or ends with its letters is not it. "respond-async; foo=bar" was not
// taken, and the request waited up to -request-timeout for the end.
func TestPreferAsyncHeader(t *testing.T) {
	for _, tc := range []struct {
		values []string
		want   bool
	}{
		{[]string{"respond-async"}, true},
		{[]string{"RESPOND-ASYNC"}, true},
		{[]string{" respond-async "}, true},
		{[]string{"wait=5, respond-async"}, true},
		{[]string{"handling=lenient", "respond-async"}, true},
		{[]string{"respond-async; foo=bar"}, true},
		{[]string{"respond-async;x"}, true},
		{[]string{"respond-async ;x, wait=10"}, true},
		{[]string{`respond-async=""`}, true},
		{nil, false},
		{[]string{""}, false},
		{[]string{"wait=5"}, false},
		{[]string{"respond-asynchronously"}, false},
		{[]string{"x-respond-async"}, false},
		{[]string{"handling=respond-async"}, false},
		{[]string{"foo; respond-async"}, false},
	} {
		r := httptest.NewRequest("POST", "/deploy", nil)
		for _, v := range tc.values {
			r.Header.Add("Prefer", v)
		}
		assert.Equal(t, tc.want, preferAsync(r), "Prefer: %q", tc.values)
	}
}

// TestRespondAsyncWithParameters: a deployment asked for with Prefer:
// respond-async and a parameter is answered 202 at once, the preference
// applied, as one without.
func TestRespondAsyncWithParameters(t *testing.T) {
	const admin = "admin-token-0123456789"
	// A bake no test waits for; a request that waits is answered 202
	// without Preference-Applied once -request-timeout is over.
	ts := startService(t, "-stages", "canary:5:1h,prod:100:0s", "-health-interval", "25ms", "-min-requests", "0",
		"-admin-token", admin, "-request-timeout", "10ms")
	r := deploy(t, ts.URL, map[string]any{"service": "auth", "version": "v2.0.0", "target_region": "us-west-2"},
		"Prefer", "respond-async; reason=ci")
	require.Equal(t, http.StatusAccepted, r.Code, "%s", r.Body)
	assert.Equal(t, "respond-async", r.Header.Get("Preference-Applied"))
	id := r.deployment(t).ID
	a := do(t, "POST", ts.URL+"/deploy/"+id+"/abort", nil, "Authorization", "Bearer "+admin)
	require.Equal(t, http.StatusAccepted, a.Code, "%s", a.Body)
	waitFor(t, ts.URL, id, ended)
}
