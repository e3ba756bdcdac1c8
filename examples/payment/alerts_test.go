package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/andon"
	"github.com/taipattern/taikit/examples/internal/svc"
	"github.com/taipattern/taikit/internal/servers"
)

// evaluate runs the alert rules at the test clock's time.
func (ts *testService) evaluate(t *testing.T) {
	t.Helper()
	ts.andon.EvaluateAt(context.Background(), ts.clock.Now())
}

func (ts *testService) alert(t *testing.T, name string) andon.Alert {
	t.Helper()
	a, ok := ts.andon.Alert(name)
	require.True(t, ok, "no alert %s", name)
	return a
}

func TestFraudAttackFiresAlert(t *testing.T) {
	cfg := testConfig(t)
	cfg.FraudStopsLine = true
	cfg.AlertLabels = map[string]string{"cluster": "eu-1", "service": "payment-eu"}
	ts := startService(t, cfg)

	// Normal traffic: a handful of blocked payments stays under 2%.
	for i := range 100 {
		ts.pay(t, fmt.Sprintf("n%d", i), 20, nil)
	}
	ts.pay(t, "n_big", 25000, nil)
	ts.evaluate(t)
	assert.Equal(t, andon.Inactive, ts.alert(t, alertFraud).State)

	// The attack: many over-limit payments from fresh customers.
	for i := range 40 {
		r := ts.pay(t, fmt.Sprintf("a%d", i), 30000, nil)
		require.Equal(t, StatusFraudBlocked, r.str("status"))
	}
	ts.evaluate(t)
	a := ts.alert(t, alertFraud)
	assert.Equal(t, andon.Pending, a.State, "it must hold for a minute first")
	assert.InDelta(t, 41.0/141, a.Value, 0.001)
	ts.clock.Advance(61 * time.Second)
	ts.evaluate(t)
	a = ts.alert(t, alertFraud)
	require.Equal(t, andon.Firing, a.State)
	assert.Equal(t, "test", a.Labels["instance"], "the replica that fires it")
	assert.Equal(t, "eu-1", a.Labels["cluster"], "the -alert-labels")
	assert.Equal(t, "payment-eu", a.Labels["service"], "the -alert-labels' service replaces the rules'")
	assert.Contains(t, a.Annotations["summary"], "29.08% of payments blocked")

	// The rule stops the line; payments are refused until it resolves.
	r := ts.pay(t, "late", 10, nil)
	assert.Equal(t, http.StatusServiceUnavailable, r.Code)
	assert.Contains(t, r.errField("message"), "stopped")
	require.Eventually(t, func() bool { return strings.Contains(ts.logs.String(), alertFraud) }, 5*time.Second, 10*time.Millisecond, "the log notifier reports it")

	// The board shows it firing.
	var state struct {
		Rules []struct {
			Name  string `json:"name"`
			State string `json:"state"`
		} `json:"rules"`
		Lines []struct {
			Stopped bool `json:"stopped"`
		} `json:"lines"`
	}
	b := ts.do(t, http.MethodGet, "/andon/api/state", nil)
	require.Equal(t, http.StatusOK, b.Code, string(b.Raw))
	require.NoError(t, json.Unmarshal(b.Raw, &state))
	found := false
	for _, r := range state.Rules {
		if r.Name == alertFraud {
			found = true
			assert.Equal(t, "firing", r.State)
		}
	}
	assert.True(t, found)
	require.Len(t, state.Lines, 1)
	assert.True(t, state.Lines[0].Stopped)
}

func TestBreakerOpenAlert(t *testing.T) {
	cfg := testConfig(t)
	cfg.BreakerOpen = 500 * time.Millisecond
	ts := startService(t, cfg)
	ts.evaluate(t)
	assert.Equal(t, andon.Inactive, ts.alert(t, alertBreaker).State)
	require.NoError(t, ts.gateway.Set(1, 0))
	for i := range 5 {
		ts.pay(t, fmt.Sprintf("g%d", i), 10, nil)
	}
	ts.evaluate(t)
	a := ts.alert(t, alertBreaker)
	assert.Equal(t, andon.Firing, a.State, "no pending time for a breaker")
	assert.Contains(t, a.Detail, "open")

	require.NoError(t, ts.gateway.Set(0, 0))
	ts.halfOpen(t)
	for i := range 3 {
		require.Equal(t, http.StatusOK, ts.pay(t, fmt.Sprintf("p%d", i), 10, nil).Code)
	}
	ts.evaluate(t)
	assert.Equal(t, andon.Resolved, ts.alert(t, alertBreaker).State)
}

func TestCordStopsPayments(t *testing.T) {
	ts := startService(t, testConfig(t))
	require.True(t, ts.andon.Pull(context.Background(), "suspicious merchant", "ops"))
	r := ts.pay(t, "c", 10, nil)
	assert.Equal(t, http.StatusServiceUnavailable, r.Code)
	assert.Equal(t, "30", r.Header.Get("Retry-After"))
	require.True(t, ts.andon.Reset(context.Background()))
	assert.Equal(t, http.StatusOK, ts.pay(t, "c", 10, nil).Code)
}

// A payment refused by a stopped line spends nothing of its customer's
// limit: a customer who retried through a stop can pay once the line runs
// again, and is told the line is stopped, not that they pay too often.
func TestStoppedLineSpendsNoCustomerLimit(t *testing.T) {
	ts := startService(t, testConfig(t))
	ts.line.Stop("maintenance")
	for i := range 2 * int(ts.cfg.CustomerLimit) {
		r := ts.pay(t, "cust_wait", 10, nil)
		require.Equal(t, http.StatusServiceUnavailable, r.Code, "attempt %d: %s", i+1, r.Raw)
		require.Equal(t, "line_stopped", r.errField("code"), "attempt %d", i+1)
	}
	ts.line.Start()
	r := ts.pay(t, "cust_wait", 10, nil)
	assert.Equal(t, http.StatusOK, r.Code, string(r.Raw))
}

// The log tells a stop from a restart: a restart is not logged with the
// reason of the stop it ends as if it were the line's reason now.
func TestLineStopAndRestartAreLogged(t *testing.T) {
	ts := startService(t, testConfig(t))
	require.True(t, ts.andon.Pull(context.Background(), "test", "board"))
	require.True(t, ts.andon.Reset(context.Background()))
	logs := ts.logs.String()
	stop := regexp.MustCompile(`msg="payment line stopped" stopped=true reason="[^"]*cord pulled by board: test"`)
	start := regexp.MustCompile(`msg="payment line started again" stopped=false ended_stop="[^"]*cord pulled by board: test"`)
	assert.Regexp(t, stop, logs)
	assert.Regexp(t, start, logs)
	assert.NotRegexp(t, `stopped=false reason=`, logs)
	assert.Less(t, stop.FindStringIndex(logs)[0], start.FindStringIndex(logs)[0], "the stop, then the restart")
}

func TestPrintedRulesPassPromtool(t *testing.T) {
	promtool := servers.Binary(t, "prometheus", "promtool")
	cfg := testConfig(t)
	path := filepath.Join(t.TempDir(), "payment.rules.yml")
	var b strings.Builder
	require.NoError(t, printRules(&b, cfg))
	require.NoError(t, writeFile(path, b.String()))
	out, err := exec.Command(promtool, "check", "rules", path).CombinedOutput()
	require.NoError(t, err, string(out))
	assert.Contains(t, string(out), "SUCCESS: 4 rules found")
}

func TestBoardNeedsTheAdminToken(t *testing.T) {
	cfg := testConfig(t)
	cfg.AdminToken = svc.NewSecret("admin")
	ts := startService(t, cfg)
	r := ts.do(t, http.MethodGet, "/andon/api/state", nil)
	assert.Equal(t, http.StatusUnauthorized, r.Code)
	assert.Contains(t, r.Header.Get("WWW-Authenticate"), "Basic")
	pull := `{"reason": "test", "who": "mallory"}`
	r = ts.do(t, http.MethodPost, "/andon/api/cord", pull, "X-Andon-Board", "1")
	assert.Equal(t, http.StatusUnauthorized, r.Code)
	stopped, _ := ts.line.Stopped()
	assert.False(t, stopped, "no cord without the token")

	basic := "Basic " + base64.StdEncoding.EncodeToString([]byte("ops:admin"))
	r = ts.do(t, http.MethodGet, "/andon/api/state", nil, "Authorization", basic)
	assert.Equal(t, http.StatusOK, r.Code)
}
