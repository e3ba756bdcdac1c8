package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/andon"
	"github.com/taipattern/taikit/examples/internal/svc"
	"github.com/taipattern/taikit/kanban"
)

func basicAuth(user, pass string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass))
}

// queueLink returns the link of the board's Queues panel row of the
// confirmation queue, as the board's state shows it.
func queueLink(t *testing.T, ts *testService, auth ...string) string {
	t.Helper()
	r := ts.do(t, http.MethodGet, "/andon/api/state", nil, auth...)
	require.Equal(t, http.StatusOK, r.Code, string(r.Raw))
	var st andon.BoardState
	require.NoError(t, json.Unmarshal(r.Raw, &st))
	for _, p := range st.Panels {
		if p.Title == "Queues" {
			require.Len(t, p.Rows, 1)
			return p.Rows[0].Link
		}
	}
	t.Fatalf("no Queues panel on the board: %s", r.Raw)
	return ""
}

// The admin token opens every admin route — the admin API, the queues
// and the board — as a Bearer token or as the HTTP Basic password, and a
// request without it, or with a wrong one, gets the same 401 with a
// challenge a browser answers: a browser logged in on the board follows
// its link to the dead letters.
func TestAdminTokenAsBearerOrBasic(t *testing.T) {
	const admin = "admin-token-0123456789"
	cfg := testConfig(t)
	cfg.APIToken, cfg.AdminToken = svc.NewSecret("api-token-0123456789"), svc.NewSecret(admin)
	ts := startService(t, cfg)

	link := queueLink(t, ts, "Authorization", basicAuth("ops", admin))
	assert.Equal(t, "/admin/queues/confirmations/deadletters?order=newest", link, "the board links to the dead letters")
	routes := []string{"/admin/gateway", "/admin/queues", link, "/andon/api/state"}
	for _, path := range routes {
		for name, auth := range map[string]string{
			"bearer":                "Bearer " + admin,
			"bearer, any case":      "bearer " + admin,
			"basic":                 basicAuth("ops", admin),
			"basic, no user name":   basicAuth("", admin),
			"basic, any user name":  basicAuth("someone-else", admin),
			"basic, token and user": basicAuth(admin, admin),
		} {
			r := ts.do(t, http.MethodGet, path, nil, "Authorization", auth)
			assert.Equal(t, http.StatusOK, r.Code, "%s %s: %s", path, name, r.Raw)
		}
	}

	refused := testutil.ToFloat64(ts.badRequests.WithLabelValues("401"))
	for _, path := range routes {
		for name, auth := range map[string]string{
			"none":                  "",
			"wrong bearer":          "Bearer wrong-token-0123456789",
			"the API token":         "Bearer " + cfg.APIToken.Reveal(),
			"wrong basic":           basicAuth("ops", "wrong-token-0123456789"),
			"the token as the user": basicAuth(admin, ""),
			"another scheme":        "Token " + admin,
		} {
			var headers []string
			if auth != "" {
				headers = []string{"Authorization", auth}
			}
			r := ts.do(t, http.MethodGet, path, nil, headers...)
			require.Equal(t, http.StatusUnauthorized, r.Code, "%s %s: %s", path, name, r.Raw)
			assert.Equal(t, "unauthorized", r.errField("code"), "%s %s: the one error schema: %s", path, name, r.Raw)
			challenges := r.Header.Values("WWW-Authenticate")
			assert.Contains(t, challenges, `Basic realm="payment admin", charset="UTF-8"`, "%s %s", path, name)
			assert.Contains(t, challenges, `Bearer realm="payment admin"`, "%s %s", path, name)
			refused++
		}
	}
	assert.Equal(t, refused, testutil.ToFloat64(ts.badRequests.WithLabelValues("401")), "every refusal counted")

	// A browser that holds the Basic password is not made to change
	// anything from another site's page.
	r := ts.do(t, http.MethodPost, "/admin/gateway", `{"failure_rate": 1}`,
		"Authorization", basicAuth("ops", admin), "Sec-Fetch-Site", "cross-site", "Origin", "https://evil.example")
	assert.Equal(t, http.StatusForbidden, r.Code, string(r.Raw))
	assert.Equal(t, "cross_origin", r.errField("code"))
	rate, _ := ts.gateway.Settings()
	assert.Zero(t, rate)
	r = ts.do(t, http.MethodPost, "/admin/gateway", `{"failure_rate": 0.5}`, "Authorization", basicAuth("ops", admin))
	require.Equal(t, http.StatusOK, r.Code, string(r.Raw))
	rate, _ = ts.gateway.Settings()
	assert.Equal(t, 0.5, rate, "the Basic password changes the gateway")
}

// Without an admin token every admin route is off alike — 403 in the
// error schema, counted — and the read-only board links to none of them.
func TestNoAdminTokenNoAdminRoutes(t *testing.T) {
	ts := startService(t, testConfig(t))
	for _, path := range []string{"/admin/gateway", "/admin/queues", "/admin/queues/confirmations/deadletters?order=newest"} {
		for _, auth := range [][]string{nil, {"Authorization", "Bearer anything"}, {"Authorization", basicAuth("ops", "anything")}} {
			r := ts.do(t, http.MethodGet, path, nil, auth...)
			assert.Equal(t, http.StatusForbidden, r.Code, "%s %v: %s", path, auth, r.Raw)
			assert.Equal(t, "forbidden", r.errField("code"), "%s: %s", path, r.Raw)
			assert.Contains(t, r.errField("message"), "-admin-token")
			assert.Empty(t, r.Header.Get("WWW-Authenticate"), "no credential opens it")
		}
	}
	assert.Equal(t, 9.0, testutil.ToFloat64(ts.badRequests.WithLabelValues("403")))
	assert.Empty(t, queueLink(t, ts), "no link to a route that is off")
}

// The queues' own router answers a path it has no route for, or a method
// a path does not take, in the one error schema, as the service's router
// does; reading one dead letter by its seq is the list's filter, and the
// 405 says so.
func TestQueueRouteErrorsAreJSON(t *testing.T) {
	const admin = "admin-token-0123456789"
	cfg := testConfig(t)
	cfg.AdminToken = svc.NewSecret(admin)
	ts := startService(t, cfg)
	auth := []string{"Authorization", "Bearer " + admin}

	r := ts.do(t, http.MethodGet, "/admin/queues/confirmations/deadletters/7", nil, auth...)
	require.Equal(t, http.StatusMethodNotAllowed, r.Code, string(r.Raw))
	assert.Equal(t, "application/json", r.Header.Get("Content-Type"))
	assert.Equal(t, "method_not_allowed", r.errField("code"), string(r.Raw))
	assert.Contains(t, r.errField("message"), "read one dead letter with GET /admin/queues/confirmations/deadletters?seq=7")
	details, _ := r.Body["error"].(map[string]any)["details"].(map[string]any)
	assert.Equal(t, []any{"DELETE"}, details["allow"], string(r.Raw))
	assert.Equal(t, "DELETE", r.Header.Get("Allow"))

	r = ts.do(t, http.MethodGet, "/admin/queues/confirmations/deadletters?seq=7", nil, auth...)
	assert.Equal(t, http.StatusOK, r.Code, "the filter reads one: %s", r.Raw)

	r = ts.do(t, http.MethodGet, "/admin/queues/confirmations/nothing", nil, auth...)
	require.Equal(t, http.StatusNotFound, r.Code, string(r.Raw))
	assert.Equal(t, "not_found", r.errField("code"), string(r.Raw))

	r = ts.do(t, http.MethodDelete, "/admin/queues/confirmations/deadletters/7", nil, auth...)
	assert.Equal(t, http.StatusNotFound, r.Code, string(r.Raw))
	assert.Equal(t, "dead_letter_not_found", r.errField("code"), "the queues' own JSON answers pass as they are: %s", r.Raw)
}

// The board's routes answer a path they do not have, or a method a path
// does not take, in the one error schema, as the service's router does.
func TestBoardRouteErrorsAreJSON(t *testing.T) {
	const admin = "admin-token-0123456789"
	cfg := testConfig(t)
	cfg.AdminToken = svc.NewSecret(admin)
	ts := startService(t, cfg)
	auth := []string{"Authorization", "Bearer " + admin}

	for _, c := range []struct {
		method, path string
		code         int
		errCode      string
		allow        string
	}{
		{http.MethodGet, "/andon/nothing", http.StatusNotFound, "not_found", ""},
		{http.MethodGet, "/andon/assets/nothing.js", http.StatusNotFound, "not_found", ""},
		{http.MethodGet, "/andon/api/cord", http.StatusMethodNotAllowed, "method_not_allowed", "POST"},
		{http.MethodPut, "/andon/api/cord", http.StatusMethodNotAllowed, "method_not_allowed", "POST"},
		{http.MethodPost, "/andon/api/state", http.StatusMethodNotAllowed, "method_not_allowed", "GET, HEAD"},
	} {
		r := ts.do(t, c.method, c.path, nil, auth...)
		require.Equal(t, c.code, r.Code, "%s %s: %s", c.method, c.path, r.Raw)
		assert.Equal(t, "application/json", r.Header.Get("Content-Type"), "%s %s", c.method, c.path)
		assert.Equal(t, c.errCode, r.errField("code"), "%s %s: %s", c.method, c.path, r.Raw)
		assert.Equal(t, c.allow, r.Header.Get("Allow"), "%s %s", c.method, c.path)
	}
	r := ts.do(t, http.MethodGet, "/andon/api/state", nil, auth...)
	assert.Equal(t, http.StatusOK, r.Code, "the board's own answers pass: %s", r.Raw)
	r = ts.do(t, http.MethodPost, "/andon/api/cord", `{"action":"yank"}`, append(auth, "X-Andon-Board", "1")...)
	assert.Equal(t, http.StatusBadRequest, r.Code, "the board's own JSON errors pass: %s", r.Raw)
}

// POST /admin/gateway refuses what it cannot apply — a failure rate or a
// latency out of range, a wrong type, an unknown field, a body not JSON
// — with a 400 (415) naming the field, changes nothing, and counts each
// refusal in payment_invalid_requests_total, as every route does.
func TestGatewayAdminRefusesBadSettings(t *testing.T) {
	const admin = "admin-token-0123456789"
	cfg := testConfig(t)
	cfg.AdminToken = svc.NewSecret(admin)
	ts := startService(t, cfg)
	auth := []string{"Authorization", "Bearer " + admin}
	require.Equal(t, http.StatusOK, ts.do(t, http.MethodPost, "/admin/gateway", `{"failure_rate": 0.25, "latency_ms": 5}`, auth...).Code)

	before400 := testutil.ToFloat64(ts.badRequests.WithLabelValues("400"))
	before415 := testutil.ToFloat64(ts.badRequests.WithLabelValues("415"))
	for _, c := range []struct{ body, field string }{
		{`{"failure_rate": 1.5}`, "failure_rate"},
		{`{"failure_rate": -1}`, "failure_rate"},
		{`{"failure_rate": 1.5, "latency_ms": 1}`, "failure_rate"},
		{`{"latency_ms": -1}`, "latency_ms"},
		{`{"latency_ms": 1e30}`, "latency_ms"},
		{`{"latency_ms": 60001}`, "latency_ms"},
		{`{"failure_rate": "0.5"}`, "failure_rate"},
		{`{"failure_rate": 1e400}`, "failure_rate"},
		{`{"latency": 5}`, "latency"},
		{`[]`, ""},
		{`null`, ""},
		{` null `, ""},
		{`"x"`, ""},
		{`7`, ""},
		{`true`, ""},
		{`{"failure_rate": 0.5`, ""},
	} {
		r := ts.do(t, http.MethodPost, "/admin/gateway", c.body, auth...)
		require.Equal(t, http.StatusBadRequest, r.Code, "%s: %s", c.body, r.Raw)
		assert.Equal(t, "invalid_request", r.errField("code"), "%s: %s", c.body, r.Raw)
		assert.Equal(t, c.field, r.errField("field"), "%s: %s", c.body, r.Raw)
	}
	r := ts.do(t, http.MethodPost, "/admin/gateway", `{"failure_rate": 1}`, append(auth, "Content-Type", "text/plain")...)
	assert.Equal(t, http.StatusUnsupportedMediaType, r.Code, string(r.Raw))

	rate, latency := ts.gateway.Settings()
	assert.Equal(t, 0.25, rate, "nothing changed")
	assert.Equal(t, 5*time.Millisecond, latency, "nothing changed")
	assert.Equal(t, before400+16, testutil.ToFloat64(ts.badRequests.WithLabelValues("400")), "every refusal counted")
	assert.Equal(t, before415+1, testutil.ToFloat64(ts.badRequests.WithLabelValues("415")), "every refusal counted")
}

// POST /admin/gateway at once, some changing the failure rate, others the
// latency, all take: none puts back another's setting as it was before.
func TestGatewayAdminKeepsConcurrentChanges(t *testing.T) {
	const admin = "admin-token-0123456789"
	cfg := testConfig(t)
	cfg.AdminToken = svc.NewSecret(admin)
	ts := startService(t, cfg)
	h := ts.http.Config.Handler
	post := func(body string) int {
		req := httptest.NewRequest(http.MethodPost, "/admin/gateway", strings.NewReader(body))
		req.RemoteAddr, req.Host = "127.0.0.1:1234", strings.TrimPrefix(ts.URL, "http://")
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+admin)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		return w.Code
	}
	// One writer changes only the failure rate, the other only the
	// latency; each then finds its own setting as it left it.
	var lostRate, lostLatency atomic.Int64
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := range 2000 {
			rate := float64(i%100+1) / 100
			assert.Equal(t, http.StatusOK, post(fmt.Sprintf(`{"failure_rate": %v}`, rate)))
			if got, _ := ts.gateway.Settings(); got != rate {
				lostRate.Add(1)
			}
		}
	})
	wg.Go(func() {
		for i := range 2000 {
			latency := time.Duration(i%1000+1) * time.Millisecond
			assert.Equal(t, http.StatusOK, post(fmt.Sprintf(`{"latency_ms": %d}`, latency.Milliseconds())))
			if _, got := ts.gateway.Settings(); got != latency {
				lostLatency.Add(1)
			}
		}
	})
	wg.Wait()
	assert.Zero(t, lostRate.Load(), "failure rates put back by a change of the latency")
	assert.Zero(t, lostLatency.Load(), "latencies put back by a change of the failure rate")
	rate, latency := ts.gateway.Settings()
	assert.Equal(t, 1.0, rate)
	assert.Equal(t, time.Second, latency)
}

// Without an admin token the board is open to whoever reaches the
// service, who could not read the dead letters through the admin API:
// it shows the confirmation queue's depth, oldest message and count of
// dead letters, but not the dead letters themselves, whose transaction
// and customer IDs (and reasons, which name transactions) are the
// payments' personal data.
func TestBoardWithoutAdminTokenHidesDeadLetters(t *testing.T) {
	cfg := testConfig(t)
	cfg.APIToken = svc.NewSecret("api-token-0123456789")
	ts := startService(t, cfg)
	require.NoError(t, ts.queue.Publish(context.Background(), kanban.Message[Confirmation]{
		ID: "txn_forged", Key: "cust_private", Payload: Confirmation{TransactionID: "txn_other"}}))

	var st andon.BoardState
	var raw []byte
	require.Eventually(t, func() bool {
		r := ts.do(t, http.MethodGet, "/andon/api/state", nil)
		require.Equal(t, http.StatusOK, r.Code, string(r.Raw))
		require.NoError(t, json.Unmarshal(r.Raw, &st))
		raw = r.Raw
		for _, p := range st.Panels {
			if p.Title == "Queues" && len(p.Rows) == 1 && len(p.Rows[0].Cells) == 4 {
				return p.Rows[0].Cells[3] == "1"
			}
		}
		return false
	}, 10*time.Second, 50*time.Millisecond, "the board counts the dead letter")
	for _, secret := range []string{"cust_private", "txn_forged", "txn_other"} {
		assert.False(t, strings.Contains(string(raw), secret), "the board without the admin token shows %s: %+v", secret, st.Panels)
	}
	page := ts.do(t, http.MethodGet, "/andon/", nil)
	require.Equal(t, http.StatusOK, page.Code)
	assert.NotContains(t, string(page.Raw), "cust_private")
}
