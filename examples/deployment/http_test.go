package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// TestCordState: GET /andon/cord says when the cord was pulled, as the
// POST that pulled it did, and when it was released; a cord never
// touched has no time. A second pull while stopped changes nothing.
func TestCordState(t *testing.T) {
	const admin = "admin-token-0123456789"
	ts := startService(t, append(append([]string{}, fastArgs...), "-admin-token", admin)...)
	auth := []string{"Authorization", "Bearer " + admin}
	cord := func(r reply) Cord {
		t.Helper()
		require.Equal(t, http.StatusOK, r.Code, "%s", r.Body)
		var c Cord
		require.NoError(t, json.Unmarshal(r.Body, &c), "%s", r.Body)
		return c
	}

	r := do(t, "GET", ts.URL+"/andon/cord", nil)
	require.Equal(t, http.StatusOK, r.Code, "%s", r.Body)
	assert.JSONEq(t, `{"stopped":false}`, string(r.Body), "never pulled: no time")

	pulled := cord(do(t, "POST", ts.URL+"/andon/cord", map[string]string{"action": "stop", "reason": "incident 42"}, auth...))
	require.False(t, pulled.At.IsZero())
	got := cord(do(t, "GET", ts.URL+"/andon/cord", nil))
	assert.True(t, got.Stopped)
	assert.Equal(t, "incident 42", got.Reason)
	assert.True(t, got.At.Equal(pulled.At), "pulled at %v, reported %v", pulled.At, got.At)

	cord(do(t, "POST", ts.URL+"/andon/cord", map[string]string{"action": "stop", "reason": "incident 43"}, auth...))
	got = cord(do(t, "GET", ts.URL+"/andon/cord", nil))
	assert.Equal(t, "incident 42", got.Reason, "the line keeps its first reason")
	assert.True(t, got.At.Equal(pulled.At), "and its time")

	released := cord(do(t, "POST", ts.URL+"/andon/cord", map[string]string{"action": "start"}, auth...))
	got = cord(do(t, "GET", ts.URL+"/andon/cord", nil))
	assert.False(t, got.Stopped)
	assert.Empty(t, got.Reason)
	assert.True(t, got.At.Equal(released.At), "released at %v, reported %v", released.At, got.At)
}

// TestListAndNotFound: an empty page is [], a bad limit or offset is
// refused with its true range, a status no deployment can have is refused, and a deployment not found is named alike
// whatever its form.
func TestListAndNotFound(t *testing.T) {
	ts := startService(t, fastArgs...)
	r := do(t, "GET", ts.URL+"/deployments?service=NOPE", nil)
	require.Equal(t, http.StatusOK, r.Code, "%s", r.Body)
	assert.JSONEq(t, `{"deployments":[],"total":0,"limit":50,"offset":0}`, string(r.Body))

	for query, want := range map[string]string{
		"offset=-1":         `offset "-1" is not a number in [0, 1073741824]`,
		"offset=1073741825": `offset "1073741825" is not a number in [0, 1073741824]`,
		"offset=x":          `offset "x" is not a number in [0, 1073741824]`,
		"limit=0":           `limit "0" is not a number in [1, 500]`,
		"limit=501":         `limit "501" is not a number in [1, 500]`,
		// SKIPPED is a region's status, never a deployment's: a filter
		// on it matched nothing, without a word.
		"status=SKIPPED": `status "SKIPPED" is not one of SUCCESS, ROLLED_BACK, FAILED, IN_PROGRESS`,
		"status=success": `status "success" is not one of SUCCESS, ROLLED_BACK, FAILED, IN_PROGRESS`,
	} {
		r := do(t, "GET", ts.URL+"/deployments?"+query, nil)
		require.Equal(t, http.StatusBadRequest, r.Code, "%s: %s", query, r.Body)
		assert.Equal(t, want, r.errorBody(t)["message"], query)
	}
	assert.Equal(t, http.StatusOK, do(t, "GET", ts.URL+"/deployments?offset=0&limit=500", nil).Code)

	id := "dpl_" + strings.Repeat("0", 32)
	for path, want := range map[string]string{
		"/deploy/garbage":           `no deployment "garbage"`,
		"/deploy/" + id:             `no deployment "` + id + `"`,
		"/deploy/" + id + "/events": `no deployment "` + id + `"`,
	} {
		r := do(t, "GET", ts.URL+path, nil)
		require.Equal(t, http.StatusNotFound, r.Code, "%s: %s", path, r.Body)
		assert.Equal(t, want, r.errorBody(t)["message"], path)
	}
}

// TestBoardRoutes: the board is served under /andon/ as before, its cord
// with the admin token; a path or a method it does not serve is a JSON
// 404 or 405 in the API's one error shape.
func TestBoardRoutes(t *testing.T) {
	const admin = "admin-token-0123456789"
	ts := startService(t, append(append([]string{}, fastArgs...), "-admin-token", admin)...)
	auth := []string{"Authorization", "Bearer " + admin}

	for _, path := range []string{"/andon", "/andon/", "/andon/api/state"} {
		assert.Equal(t, http.StatusOK, do(t, "GET", ts.URL+path, nil).Code, path)
	}
	r := do(t, "GET", ts.URL+"/andon/", nil)
	assert.Contains(t, r.Header.Get("Content-Type"), "text/html")
	assert.Equal(t, "DENY", r.Header.Get("X-Frame-Options"), "the board's own headers")
	assert.Equal(t, http.StatusOK, do(t, "HEAD", ts.URL+"/andon/", nil).Code)

	r = do(t, "POST", ts.URL+"/andon/api/cord", map[string]string{"action": "pull"}, "X-Andon-Board", "1")
	assert.Equal(t, http.StatusUnauthorized, r.Code, "the board's cord needs the token: %s", r.Body)
	assert.Contains(t, r.Header.Values("WWW-Authenticate"), `Basic realm="deployment admin", charset="UTF-8"`,
		"a browser on the board asks for the token")
	// What a browser sends once it has asked: the token as the password.
	basic := "Basic " + base64.StdEncoding.EncodeToString([]byte("ops:"+admin))
	r = do(t, "POST", ts.URL+"/andon/api/cord", map[string]string{"action": "pull", "reason": "test"}, "X-Andon-Board", "1", "Authorization", basic)
	require.Equal(t, http.StatusOK, r.Code, "%s", r.Body)
	require.Eventually(t, func() bool { stopped, _ := ts.line.Stopped(); return stopped }, 10*time.Second, 10*time.Millisecond, "the board's cord is the service's")

	for _, tc := range []struct {
		method, path string
		code         int
		errCode      string
	}{
		{"DELETE", "/andon/cord", http.StatusMethodNotAllowed, "method_not_allowed"},
		{"PUT", "/andon/api/state", http.StatusMethodNotAllowed, "method_not_allowed"},
		{"GET", "/andon/api/nope", http.StatusNotFound, "not_found"},
		{"GET", "/andon/nope", http.StatusNotFound, "not_found"},
		{"POST", "/andon/nope", http.StatusNotFound, "not_found"},
		{"DELETE", "/andon/api/cord", http.StatusMethodNotAllowed, "method_not_allowed"},
	} {
		r := do(t, tc.method, ts.URL+tc.path, nil, auth...)
		assert.Equal(t, tc.code, r.Code, "%s %s: %s", tc.method, tc.path, r.Body)
		assert.Equal(t, "application/json", r.Header.Get("Content-Type"), "%s %s", tc.method, tc.path)
		var body struct {
			Error struct {
				Code    string `json:"code"`
				Message string `json:"message"`
			} `json:"error"`
		}
		require.NoError(t, json.Unmarshal(r.Body, &body), "%s %s: %s", tc.method, tc.path, r.Body)
		assert.Equal(t, tc.errCode, body.Error.Code, "%s %s: %s", tc.method, tc.path, r.Body)
		assert.NotEmpty(t, body.Error.Message)
	}
}

// TestCordPulledTwice: a second pull of a pulled cord answers the state in
// force, and leaves it as stored: after a restart (or on another replica)
// the cord still says the first reason and time. A release of a cord
// never pulled leaves it untouched.
func TestCordPulledTwice(t *testing.T) {
	const admin = "admin-token-0123456789"
	dir := t.TempDir()
	args := append(append([]string{}, fastArgs...), "-admin-token", admin)
	ts := startServiceIn(t, dir, args...)
	auth := []string{"Authorization", "Bearer " + admin}
	cord := func(r reply) Cord {
		t.Helper()
		require.Equal(t, http.StatusOK, r.Code, "%s", r.Body)
		var c Cord
		require.NoError(t, json.Unmarshal(r.Body, &c), "%s", r.Body)
		return c
	}

	r := do(t, "POST", ts.URL+"/andon/cord", map[string]string{"action": "start"}, auth...)
	require.Equal(t, http.StatusOK, r.Code, "%s", r.Body)
	assert.JSONEq(t, `{"stopped":false}`, string(r.Body), "never pulled: nothing released")
	r = do(t, "GET", ts.URL+"/andon/cord", nil)
	assert.JSONEq(t, `{"stopped":false}`, string(r.Body))

	pulled := cord(do(t, "POST", ts.URL+"/andon/cord", map[string]string{"action": "stop", "reason": "incident 42"}, auth...))
	again := cord(do(t, "POST", ts.URL+"/andon/cord", map[string]string{"action": "stop", "reason": "incident 43"}, auth...))
	assert.Equal(t, "incident 42", again.Reason, "the answer is the state in force")
	assert.True(t, again.At.Equal(pulled.At), "pulled at %v, answered %v", pulled.At, again.At)

	ts.shutdown()
	ts = startServiceIn(t, dir, args...)
	// The restarted service reads the stored cord as it starts.
	var got Cord
	require.Eventually(t, func() bool {
		got = cord(do(t, "GET", ts.URL+"/andon/cord", nil))
		return got.Stopped
	}, 30*time.Second, 10*time.Millisecond)
	assert.Equal(t, "incident 42", got.Reason, "the reason stored is the first")
	assert.True(t, got.At.Equal(pulled.At), "pulled at %v, reported after a restart %v", pulled.At, got.At)
}

// TestListRefusesRepeatedAndUnknownParameters: a filter given twice, a
// parameter the list does not have, or a query string that does not
// parse, is a 400 naming it; the list took the first of two services and
// left the other out without a word, and a misspelt filter
// (?staus=FAILED), or one with a bad escape (?service=orders%zz), answered
// every deployment.
func TestListRefusesRepeatedAndUnknownParameters(t *testing.T) {
	ts := startService(t, fastArgs...)
	for query, want := range map[string]string{
		"service=orders&service=cart": `query parameter "service" is given 2 times; give it once`,
		"limit=5&limit=abc":           `query parameter "limit" is given 2 times; give it once`,
		"status=&status=FAILED":       `query parameter "status" is given 2 times; give it once`,
		"staus=FAILED":                `query parameter "staus" is not one of service, region, status, limit, offset`,
		"limit=5&page=2&x=1":          `query parameter "page" is not one of service, region, status, limit, offset`,
		// A pair that does not parse was dropped: the filter it held was
		// left out, and every deployment answered.
		"service=orders%zz":      `query string does not parse: invalid URL escape "%zz"`,
		"service=orders;limit=1": `query string does not parse: invalid semicolon separator in query`,
		"limit=5&status=FAIL%E":  `query string does not parse: invalid URL escape "%E"`,
	} {
		r := do(t, "GET", ts.URL+"/deployments?"+query, nil)
		require.Equal(t, http.StatusBadRequest, r.Code, "%s: %s", query, r.Body)
		assert.Equal(t, want, r.errorBody(t)["message"], query)
	}
	r := do(t, "GET", ts.URL+"/deployments?service=orders&region=us-east-1&status=FAILED&limit=5&offset=0", nil)
	require.Equal(t, http.StatusOK, r.Code, "%s", r.Body)
}

// TestListRefusesEmptyParameters: a parameter given with no value
// (?limit=, ?status=) is a 400 naming it. It counted as not given: the
// first page of 50 or every deployment answered for a client whose
// variable was unset (?status=$STATUS), without a word.
func TestListRefusesEmptyParameters(t *testing.T) {
	ts := startService(t, fastArgs...)
	for query, want := range map[string]string{
		"limit=":               `query parameter "limit" is empty; give a value or leave it out`,
		"offset=":              `query parameter "offset" is empty; give a value or leave it out`,
		"service=":             `query parameter "service" is empty; give a value or leave it out`,
		"region=":              `query parameter "region" is empty; give a value or leave it out`,
		"status=":              `query parameter "status" is empty; give a value or leave it out`,
		"service=orders&limit": `query parameter "limit" is empty; give a value or leave it out`,
	} {
		r := do(t, "GET", ts.URL+"/deployments?"+query, nil)
		require.Equal(t, http.StatusBadRequest, r.Code, "%s: %s", query, r.Body)
		e := r.errorBody(t)
		assert.Equal(t, want, e["message"], query)
		assert.Equal(t, "invalid_request", e["code"], query)
		assert.Contains(t, want, `"`+e["field"].(string)+`"`, query)
	}
}

// TestErrorsQuoteWholeCharacters: a long value an error message quotes
// is shortened between characters; it was cut within one, and the
// message named a byte the client never sent ("\xc3").
func TestErrorsQuoteWholeCharacters(t *testing.T) {
	ts := startService(t, fastArgs...)
	long := "a" + strings.Repeat("é", 150)
	r := deploy(t, ts.URL, map[string]any{"service": "api-service", "version": "v2.0.0", "target_region": "us-east-1", "rollout_strategy": long})
	require.Equal(t, http.StatusBadRequest, r.Code, "%s", r.Body)
	assert.Equal(t, `rollout_strategy "a`+strings.Repeat("é", 31)+`…" is not one of canary, blue-green, rolling`, r.errorBody(t)["message"])

	r = do(t, "GET", ts.URL+"/ab"+strings.Repeat("é", 150), nil)
	require.Equal(t, http.StatusNotFound, r.Code, "%s", r.Body)
	assert.Equal(t, "no route for GET /ab"+strings.Repeat("é", 98)+"…", r.errorBody(t)["message"])
}

// TestBoardFollowsTheCord: the board shows the cord as the service holds
// it, however it was pulled or released. A cord pulled with POST
// /andon/cord was not shown on the board, one pulled on the board and
// released with the API stayed pulled there, and the board's reset then
// released a line the API had stopped for another reason.
func TestBoardFollowsTheCord(t *testing.T) {
	const admin = "admin-token-0123456789"
	ts := startService(t, append(append([]string{}, fastArgs...), "-admin-token", admin)...)
	auth := []string{"Authorization", "Bearer " + admin}
	board := func() (pulled bool, reason string) {
		var st struct {
			Cord struct {
				Pulled bool   `json:"pulled"`
				Reason string `json:"reason"`
			} `json:"cord"`
		}
		r := do(t, "GET", ts.URL+"/andon/api/state", nil)
		require.Equal(t, http.StatusOK, r.Code, "%s", r.Body)
		require.NoError(t, json.Unmarshal(r.Body, &st))
		return st.Cord.Pulled, st.Cord.Reason
	}
	showsPulled := func(want bool) func() bool {
		return func() bool { pulled, _ := board(); return pulled == want }
	}

	stopLine(t, ts.URL, "incident 7", auth...)
	require.Eventually(t, showsPulled(true), 10*time.Second, 10*time.Millisecond, "a pull through the API is on the board")
	_, reason := board()
	assert.Contains(t, reason, "incident 7")
	r := do(t, "POST", ts.URL+"/andon/cord", map[string]string{"action": "start"}, auth...)
	require.Equal(t, http.StatusOK, r.Code, "%s", r.Body)
	require.Eventually(t, showsPulled(false), 10*time.Second, 10*time.Millisecond, "a release through the API is on the board")

	r = do(t, "POST", ts.URL+"/andon/api/cord", map[string]string{"action": "pull", "reason": "from the board"}, append([]string{"X-Andon-Board", "1"}, auth...)...)
	require.Equal(t, http.StatusOK, r.Code, "%s", r.Body)
	require.Eventually(t, func() bool { stopped, _ := ts.line.Stopped(); return stopped }, 10*time.Second, 10*time.Millisecond)
	r = do(t, "POST", ts.URL+"/andon/cord", map[string]string{"action": "start"}, auth...)
	require.Equal(t, http.StatusOK, r.Code, "%s", r.Body)
	require.Eventually(t, showsPulled(false), 10*time.Second, 10*time.Millisecond, "released through the API, the board's pull is released too")
	stopped, _ := ts.line.Stopped()
	assert.False(t, stopped, "following the release does not pull the cord again")

	// The API stops the line for another reason; the board shows that
	// pull, and its reset is the reset of that pull, not of the board's
	// first.
	r = do(t, "POST", ts.URL+"/andon/cord", map[string]string{"action": "stop", "reason": "incident 8"}, auth...)
	require.Equal(t, http.StatusOK, r.Code, "%s", r.Body)
	require.Eventually(t, showsPulled(true), 10*time.Second, 10*time.Millisecond)
	_, reason = board()
	assert.Contains(t, reason, "incident 8")
	r = do(t, "GET", ts.URL+"/andon/cord", nil)
	assert.Contains(t, string(r.Body), `"stopped":true`)
}

// TestInvalidRegionNamesItsField: a region name refused is named by the
// field that gave it: target_region when the request gave one region
// alone, target_regions[i] in a wave, as the decoder names an array's
// element. A bad target_region was answered as target_regions, a field
// the request did not have.
func TestInvalidRegionNamesItsField(t *testing.T) {
	ts := startService(t, fastArgs...)
	for _, tc := range []struct{ body, field string }{
		{`{"service": "api-service", "version": "v2.0.0", "target_region": "US-WEST-2"}`, "target_region"},
		{`{"service": "api-service", "version": "v2.0.0", "target_regions": ["us-west-2", "US-EAST-1"]}`, "target_regions[1]"},
		{`{"service": "api-service", "version": "v2.0.0", "target_region": "us-west-2", "target_regions": ["us-west-2", "eu-west-1", "us-west-2"]}`, "target_regions[2]"},
	} {
		r := do(t, "POST", ts.URL+"/deploy", tc.body)
		require.Equal(t, http.StatusBadRequest, r.Code, "%s", r.Body)
		assert.Equal(t, tc.field, r.errorBody(t)["field"], "%s: %s", tc.body, r.Body)
	}
}

// requestContexts hands on the context of each POST /deploy, as its
// deploy span starts under it.
type requestContexts struct{ ch chan context.Context }

func (p requestContexts) OnStart(parent context.Context, s sdktrace.ReadWriteSpan) {
	if strings.HasPrefix(s.Name(), "deploy ") {
		p.ch <- parent
	}
}
func (requestContexts) OnEnd(sdktrace.ReadOnlySpan)      {}
func (requestContexts) Shutdown(context.Context) error   { return nil }
func (requestContexts) ForceFlush(context.Context) error { return nil }

// TestClientLeavesWhileQueued: a client that leaves while its deployment
// is being stored and queued does not end it: it is queued and rolls
// out, as one whose client leaves while it waits for the end does. Its
// publish was cut off with the request, and the deployment ended FAILED,
// "Not queued: context canceled".
func TestClientLeavesWhileQueued(t *testing.T) {
	reqs := requestContexts{make(chan context.Context, 1)}
	queueing := make(chan struct{})
	ts := startServiceWith(t, t.TempDir(), func(c *Config) {
		c.TraceProcessor = reqs
		c.PublishFault = func(_ Job, publish func() error) error {
			rctx := <-reqs.ch
			close(queueing)
			<-rctx.Done() // the client has left
			return publish()
		}
	}, fastArgs...)

	ctx, cancel := context.WithCancel(t.Context())
	req, err := http.NewRequestWithContext(ctx, "POST", ts.URL+"/deploy",
		strings.NewReader(`{"service": "api-service", "version": "v2.0.0", "target_region": "us-west-2"}`))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	gone := make(chan error, 1)
	go func() {
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		gone <- err
	}()
	<-queueing
	cancel()
	require.ErrorIs(t, <-gone, context.Canceled)

	var list struct {
		Deployments []Deployment `json:"deployments"`
	}
	require.Eventually(t, func() bool {
		r := do(t, "GET", ts.URL+"/deployments", nil)
		return json.Unmarshal(r.Body, &list) == nil && len(list.Deployments) == 1
	}, 10*time.Second, 10*time.Millisecond)
	d := waitFor(t, ts.URL, list.Deployments[0].ID, ended)
	msg := ""
	if d.ErrorMessage != nil {
		msg = *d.ErrorMessage
	}
	assert.Equal(t, StatusSuccess, d.Status, "error_message: %s", msg)
}
