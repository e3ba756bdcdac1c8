package main

import (
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestBoardCordInTheAuditTrail: the cord pulled and reset on the board is
// in the audit trail, as one pulled or released with POST /andon/cord is
// (kind deployment.cord), once each: the board following a pull made
// through the API adds no record of its own. A pull or a reset on the
// board stopped and started the line on every replica without a line in
// the trail.
func TestBoardCordInTheAuditTrail(t *testing.T) {
	const admin = "admin-token-0123456789"
	ts := startService(t, append(append([]string{}, fastArgs...), "-admin-token", admin)...)
	auth := []string{"Authorization", "Bearer " + admin}
	board := append([]string{"X-Andon-Board", "1"}, auth...)
	stopped := func(want bool) func() bool {
		return func() bool { s, _ := ts.line.Stopped(); return s == want }
	}
	boardPulled := func(want bool) func() bool {
		return func() bool { return ts.andon.Cord().Pulled == want }
	}

	r := do(t, "POST", ts.URL+"/andon/api/cord", map[string]string{"action": "pull", "reason": "smoke on line 3"}, board...)
	require.Equal(t, http.StatusOK, r.Code, "%s", r.Body)
	require.Eventually(t, stopped(true), 10*time.Second, 5*time.Millisecond)
	r = do(t, "POST", ts.URL+"/andon/api/cord", map[string]string{"action": "reset"}, board...)
	require.Equal(t, http.StatusOK, r.Code, "%s", r.Body)
	require.Eventually(t, stopped(false), 10*time.Second, 5*time.Millisecond)

	// Through the API: the board follows, and its hooks record nothing.
	stopLine(t, ts.URL, "incident 9", auth...)
	require.Eventually(t, boardPulled(true), 10*time.Second, 5*time.Millisecond)
	r = do(t, "POST", ts.URL+"/andon/cord", map[string]string{"action": "start"}, auth...)
	require.Equal(t, http.StatusOK, r.Code, "%s", r.Body)
	require.Eventually(t, boardPulled(false), 10*time.Second, 5*time.Millisecond)

	require.NoError(t, ts.audit.Flush(t.Context()))
	var reasons []string
	for _, rec := range auditRecords(t, filepath.Join(ts.cfg.DataDir, "audit-test.jsonl")) {
		if rec.Kind == "deployment.cord" {
			reasons = append(reasons, rec.Decision.Reason)
		}
	}
	require.Len(t, reasons, 4, "%q", reasons)
	assert.True(t, strings.HasPrefix(reasons[0], "stop: "), "%q", reasons[0])
	assert.Contains(t, reasons[0], "smoke on line 3", "the board's pull")
	assert.True(t, strings.HasPrefix(reasons[1], "start"), "the board's reset: %q", reasons[1])
	assert.Equal(t, "stop: incident 9", reasons[2])
	assert.True(t, strings.HasPrefix(reasons[3], "start"), "%q", reasons[3])
}

// TestCordAuditedOnlyWhenItChanges: a pull of a cord already pulled, or a
// release of one not pulled, changes nothing and writes nothing to the
// audit trail. Each wrote a record of its own: the trail said the cord
// was pulled for "incident 43" when the line had stopped for "incident
// 42", which it went on stopping for, and released when it never was.
func TestCordAuditedOnlyWhenItChanges(t *testing.T) {
	const admin = "admin-token-0123456789"
	ts := startService(t, append(append([]string{}, fastArgs...), "-admin-token", admin)...)
	auth := []string{"Authorization", "Bearer " + admin}
	cord := func(body map[string]string) {
		t.Helper()
		r := do(t, "POST", ts.URL+"/andon/cord", body, auth...)
		require.Equal(t, http.StatusOK, r.Code, "%s", r.Body)
	}
	cord(map[string]string{"action": "start"}) // never pulled
	cord(map[string]string{"action": "stop", "reason": "incident 42"})
	cord(map[string]string{"action": "stop", "reason": "incident 43"}) // pulled already
	cord(map[string]string{"action": "start"})
	cord(map[string]string{"action": "start"}) // released already

	require.NoError(t, ts.audit.Flush(t.Context()))
	var reasons []string
	for _, rec := range auditRecords(t, filepath.Join(ts.cfg.DataDir, "audit-test.jsonl")) {
		if rec.Kind == "deployment.cord" {
			reasons = append(reasons, rec.Decision.Reason)
		}
	}
	assert.Equal(t, []string{"stop: incident 42", "start: "}, reasons)
}
