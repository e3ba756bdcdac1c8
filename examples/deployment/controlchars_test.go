package main

import (
	"net/http"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestControlCharactersRefused: a reason (of the cord, of an abort, a
// promote or a resume) or a metadata value holding a control character,
// a bidi override or isolate, or a line separator is a 400 naming the
// field, as the board refuses such a reason for its own cord. They went
// into the logs, the audit trail, the deployment's error_message and, for
// the cord, onto the board, where "abort\u202etxt.exe" reads otherwise
// than it is.
func TestControlCharactersRefused(t *testing.T) {
	const admin = "admin-token-0123456789"
	ts := startService(t, append(append([]string{}, fastArgs...), "-admin-token", admin)...)
	auth := []string{"Authorization", "Bearer " + admin}
	bad := []string{"two\nlines", "tab\there", "bell\a", "esc\x1b[31mred", "del\x7f", "c1\u0085", "flip\u202etxt.exe", "iso\u2066x", "sep\u2028x"}

	for _, reason := range bad {
		r := do(t, "POST", ts.URL+"/andon/cord", map[string]string{"action": "stop", "reason": reason}, auth...)
		require.Equal(t, http.StatusBadRequest, r.Code, "cord reason %q: %s", reason, r.Body)
		assert.Equal(t, "reason", r.errorBody(t)["field"], "cord reason %q", reason)
		for _, action := range []string{"abort", "promote", "resume"} {
			r := do(t, "POST", ts.URL+"/deploy/dpl_"+"0123456789abcdef0123456789abcdef"+"/"+action, map[string]string{"reason": reason}, auth...)
			require.Equal(t, http.StatusBadRequest, r.Code, "%s reason %q: %s", action, reason, r.Body)
			assert.Equal(t, "reason", r.errorBody(t)["field"], "%s reason %q", action, reason)
		}
		req := DeployRequest{Service: "api-service", Version: "v2.0.0", TargetRegion: "us-west-2", Metadata: map[string]string{"ticket": reason}}
		_, _, err := req.validate()
		require.Error(t, err, "metadata value %q", reason)
		assert.Contains(t, err.Error(), "control character", "metadata value %q", reason)
	}
	stopped, _ := ts.line.Stopped()
	assert.False(t, stopped, "no refused pull stopped the line")

	// Text without them goes through, whatever its script.
	r := do(t, "POST", ts.URL+"/andon/cord", map[string]string{"action": "stop", "reason": "incident 42 – «db» see #ops, 事故"}, auth...)
	require.Equal(t, http.StatusOK, r.Code, "%s", r.Body)
	req := DeployRequest{Service: "api-service", Version: "v2.0.0", TargetRegion: "us-west-2", Metadata: map[string]string{"ticket": "OPS-1 «résumé»"}}
	_, _, err := req.validate()
	require.NoError(t, err)
}
