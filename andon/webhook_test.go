package andon_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/andon"
	"github.com/taipattern/taikit/kanban"
	"github.com/taipattern/taikit/tai"
)

// A redirect is not followed: a 301, 302 or 303 would turn the POST into
// a GET without the notification, and its answer would read as success.
func TestWebhookRedirectIsAnError(t *testing.T) {
	var mu sync.Mutex
	var methods []string
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		methods = append(methods, r.Method)
		mu.Unlock()
	}))
	defer target.Close()
	for _, code := range []int{http.StatusMovedPermanently, http.StatusFound, http.StatusSeeOther,
		http.StatusTemporaryRedirect, http.StatusPermanentRedirect} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, target.URL+"/moved/SECRET?token=abc", code)
		}))
		alerts := []andon.Alert{{Name: "A", State: andon.Firing}}

		// The webhook's own client reports the redirect, naming where to.
		wh, err := andon.NewWebhook(andon.WebhookOptions{URL: srv.URL + "/hook"})
		require.NoError(t, err)
		err = wh.Notify(context.Background(), alerts)
		require.Error(t, err, code)
		assert.True(t, kanban.IsPermanent(err), code)
		assert.Contains(t, err.Error(), "redirect to "+target.URL+"/… not followed", code)
		assert.NotContains(t, err.Error(), "SECRET", code)
		mu.Lock()
		assert.Empty(t, methods, "%d: not followed", code)
		mu.Unlock()

		// A client that follows redirects: a GET does not count as sent.
		wh, err = andon.NewWebhook(andon.WebhookOptions{URL: srv.URL + "/hook", Client: &http.Client{}})
		require.NoError(t, err)
		err = wh.Notify(context.Background(), alerts)
		mu.Lock()
		require.Len(t, methods, 1, code)
		if methods[0] == http.MethodGet {
			require.Error(t, err, code)
			assert.True(t, kanban.IsPermanent(err), code)
			assert.Contains(t, err.Error(), "redirected to "+target.URL+"/… as a GET", code)
		} else {
			assert.NoError(t, err, "%d: the POST is sent again", code)
		}
		methods = nil
		mu.Unlock()
		srv.Close()
	}
}

// Errors name the URL by scheme and host: no password, no path token, no
// query.
func TestWebhookErrorsRedactURL(t *testing.T) {
	const secret = "/services/T000/B000/XXXXSECRETTOKEN?token=abc"
	check := func(host string) error {
		wh, err := andon.NewWebhook(andon.WebhookOptions{URL: "http://user:s3cr3tpw@" + host + secret})
		require.NoError(t, err)
		err = wh.Notify(context.Background(), []andon.Alert{{Name: "A", State: andon.Firing}})
		require.Error(t, err)
		for _, s := range []string{"user", "s3cr3tpw", "services", "XXXXSECRETTOKEN", "token", "abc"} {
			assert.NotContains(t, err.Error(), s)
		}
		assert.Contains(t, err.Error(), "http://"+host+"/…")
		return err
	}
	for _, code := range []int{http.StatusUnauthorized, http.StatusInternalServerError} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, "nope", code)
		}))
		err := check(strings.TrimPrefix(srv.URL, "http://"))
		assert.Contains(t, err.Error(), "nope")
		srv.Close()
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	host := l.Addr().String()
	require.NoError(t, l.Close())
	err = check(host)
	assert.Contains(t, err.Error(), "refused")
}

// An answer that quotes the request's path or query, as many servers' "not
// found" pages do ("Cannot POST /services/…"), has them left out of the
// error, which the evaluator logs: they may hold the receiver's token.
func TestWebhookErrorsRedactTheURLQuotedByTheAnswer(t *testing.T) {
	const (
		token = "XXXXSECRETTOKEN"
		path  = "/services/T000/B000/" + token
		query = "token=abc" + token
		pass  = "s3cr3tpw" + token
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, p, _ := r.BasicAuth()
		http.Error(w, "Cannot POST "+r.URL.Path+" ("+r.URL.RequestURI()+", "+r.URL.EscapedPath()+
			", "+r.URL.RawQuery+", "+r.URL.Query().Get("token")+", "+u+":"+p+")", http.StatusNotFound)
	}))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	for _, raw := range []string{
		"http://user:" + pass + "@" + host + path + "?" + query,
		"http://" + host + "/services/T%30%30%30/B000/" + token + "?" + query,
	} {
		wh, err := andon.NewWebhook(andon.WebhookOptions{URL: raw})
		require.NoError(t, err)
		am, err := andon.NewAlertmanager(andon.AlertmanagerOptions{URL: raw})
		require.NoError(t, err)
		for _, n := range []andon.Notifier{wh, am} {
			err := n.Notify(context.Background(), []andon.Alert{{Name: "A", State: andon.Firing, Labels: map[string]string{"alertname": "A"}}})
			require.Error(t, err)
			assert.NotContains(t, err.Error(), token, raw)
			assert.Contains(t, err.Error(), "404 Not Found: Cannot POST ", "the rest of the answer is quoted")
		}
	}
}

// An answer that quotes a credential the request's headers carried, as
// some servers' "invalid token" answers do, has it left out of the error,
// which the evaluator logs: the Header option is where a receiver's token
// goes.
func TestNotifierErrorsRedactTheHeadersQuotedByTheAnswer(t *testing.T) {
	const (
		bearer = "XXXXSECRETBEARER"
		apiKey = "XXXXSECRETAPIKEY"
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		auth := r.Header.Get("Authorization")
		http.Error(w, "invalid credentials: "+auth+" ("+strings.TrimPrefix(auth, "Bearer ")+"), key "+
			r.Header.Get("X-Api-Key"), http.StatusUnauthorized)
	}))
	defer srv.Close()
	header := http.Header{"Authorization": {"Bearer " + bearer}, "X-Api-Key": {apiKey}}
	wh, err := andon.NewWebhook(andon.WebhookOptions{URL: srv.URL, Header: header})
	require.NoError(t, err)
	am, err := andon.NewAlertmanager(andon.AlertmanagerOptions{URL: srv.URL, Header: header})
	require.NoError(t, err)
	for _, n := range []andon.Notifier{wh, am} {
		err := n.Notify(context.Background(), []andon.Alert{{Name: "A", State: andon.Firing, Labels: map[string]string{"alertname": "A"}}})
		require.Error(t, err)
		assert.NotContains(t, err.Error(), bearer)
		assert.NotContains(t, err.Error(), apiKey)
		assert.Contains(t, err.Error(), "401 Unauthorized: invalid credentials: ", "the rest of the answer is quoted")
	}
}

// Credentials in the URL's userinfo go out as a Basic Authorization
// header, which an answer may quote as the Header option's are: the
// encoded "user:password" is left out of the error as the password is,
// and so is a user name given without a password, which is then the
// credential ("https://<token>@host/").
func TestNotifierErrorsRedactTheUserinfoQuotedByTheAnswer(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, _, _ := r.BasicAuth()
		http.Error(w, "invalid credentials: "+r.Header.Get("Authorization")+" for "+u, http.StatusUnauthorized)
	}))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	for _, c := range []struct{ userinfo, encoded, user string }{
		{"user:s3cr3tpw", base64.StdEncoding.EncodeToString([]byte("user:s3cr3tpw")), ""},
		{"XXXXSECRETTOKEN", base64.StdEncoding.EncodeToString([]byte("XXXXSECRETTOKEN:")), "XXXXSECRETTOKEN"},
	} {
		raw := "http://" + c.userinfo + "@" + host + "/"
		wh, err := andon.NewWebhook(andon.WebhookOptions{URL: raw})
		require.NoError(t, err)
		am, err := andon.NewAlertmanager(andon.AlertmanagerOptions{URL: raw})
		require.NoError(t, err)
		for _, n := range []andon.Notifier{wh, am} {
			err := n.Notify(context.Background(), []andon.Alert{{Name: "A", State: andon.Firing, Labels: map[string]string{"alertname": "A"}}})
			require.Error(t, err)
			assert.NotContains(t, err.Error(), c.encoded, c.userinfo)
			if c.user != "" {
				assert.NotContains(t, err.Error(), c.user, c.userinfo)
			}
			assert.Contains(t, err.Error(), "401 Unauthorized: invalid credentials: Basic ", "the rest of the answer is quoted")
		}
	}
}

// An answer too long to quote whole is cut where a credential it repeats
// begins, not in the middle of it: the start of a token, or of the URL's
// path, is no more quoted in the error than the whole of it.
func TestNotifierErrorsRedactACredentialTheQuoteCuts(t *testing.T) {
	const (
		bearer = "XXXXSECRETBEARER"
		token  = "XXXXSECRETTOKEN"
	)
	var pad atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		filler := strings.Repeat(".", int(pad.Load()))
		if strings.HasSuffix(r.URL.Path, "/bearer") {
			http.Error(w, filler+"Bearer "+strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer "), http.StatusUnauthorized)
			return
		}
		http.Error(w, filler+r.URL.Path, http.StatusNotFound)
	}))
	defer srv.Close()
	header := http.Header{"Authorization": {"Bearer " + bearer}}
	alerts := []andon.Alert{{Name: "A", State: andon.Firing, Labels: map[string]string{"alertname": "A"}}}
	for _, c := range []struct {
		url, secret string
	}{
		{srv.URL + "/bearer", bearer},
		{srv.URL + "/services/" + token, "/services/" + token},
	} {
		wh, err := andon.NewWebhook(andon.WebhookOptions{URL: c.url, Header: header})
		require.NoError(t, err)
		am, err := andon.NewAlertmanager(andon.AlertmanagerOptions{URL: c.url, Header: header})
		require.NoError(t, err)
		// The answer is long enough that the credential straddles the
		// end of what is quoted, at every byte of it.
		for n := 400; n < 600; n++ {
			pad.Store(int64(n))
			for _, nf := range []andon.Notifier{wh, am} {
				err := nf.Notify(context.Background(), alerts)
				require.Error(t, err)
				for i := 4; i <= len(c.secret); i++ {
					if !assert.NotContains(t, err.Error(), c.secret[:i], "%s, %d bytes before it", c.secret, n) {
						return
					}
				}
			}
		}
	}
}

// A URL the constructors refuse is named as errors name it, without the
// password, path or query that may hold a token.
func TestBadURLErrorsRedactURL(t *testing.T) {
	for _, u := range []string{
		"hooks.example.com/services/T000/XXXXSECRETTOKEN",
		"ftp://user:s3cr3tpw@host/XXXXSECRETTOKEN?token=abc",
		"http://user:s3cr3tpw@host:bad/XXXXSECRETTOKEN",
		"http://user:s3cr3tpw@/XXXXSECRETTOKEN",
		"http://ho st/XXXXSECRETTOKEN?token=abc",
		"http://host/%zzXXXXSECRETTOKEN",
	} {
		_, err := andon.NewWebhook(andon.WebhookOptions{URL: u})
		require.Error(t, err, u)
		_, amErr := andon.NewAlertmanager(andon.AlertmanagerOptions{URL: u})
		require.Error(t, amErr, u)
		for _, e := range []error{err, amErr} {
			for _, s := range []string{"s3cr3tpw", "XXXXSECRETTOKEN", "token=abc"} {
				assert.NotContains(t, e.Error(), s, u)
			}
		}
	}
	_, err := andon.NewWebhook(andon.WebhookOptions{URL: "ftp://user:s3cr3tpw@host/XXXXSECRETTOKEN"})
	assert.EqualError(t, err, `andon: WebhookOptions.URL "ftp://host/…" is not an http or https URL`)
	_, err = andon.NewWebhook(andon.WebhookOptions{URL: "http://host:bad/XXXXSECRETTOKEN"})
	assert.EqualError(t, err, `andon: WebhookOptions.URL is not a URL: invalid port ":bad" after host`)
}

// groupServer answers each alert name's message with the codes given for
// it in turn, then 200, and counts the messages.
type groupServer struct {
	*httptest.Server
	mu    sync.Mutex
	codes map[string][]int
	got   map[string]int
}

func newGroupServer(t *testing.T, codes map[string][]int) *groupServer {
	s := &groupServer{codes: codes, got: map[string]int{}}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var m andon.WebhookMessage
		if err := json.NewDecoder(r.Body).Decode(&m); err != nil {
			http.Error(w, "bad body", http.StatusBadRequest)
			return
		}
		name := m.GroupLabels["alertname"]
		s.mu.Lock()
		defer s.mu.Unlock()
		s.got[name]++
		if cs := s.codes[name]; len(cs) > 0 {
			s.codes[name] = cs[1:]
			http.Error(w, name+" refused", cs[0])
		}
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *groupServer) counts() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]int{}
	for k, v := range s.got {
		out[k] = v
	}
	return out
}

// One alert name's failure is permanent only for itself: the error of
// several is permanent only if each is.
func TestWebhookGroupErrors(t *testing.T) {
	for _, tt := range []struct {
		codes     map[string][]int
		permanent bool
	}{
		{map[string][]int{"A": {400}, "B": {503}}, false},
		{map[string][]int{"A": {503}, "B": {400}}, false},
		{map[string][]int{"A": {400}, "B": {404}}, true},
		{map[string][]int{"A": {500}, "B": {503}}, false},
	} {
		srv := newGroupServer(t, tt.codes)
		wh, err := andon.NewWebhook(andon.WebhookOptions{URL: srv.URL})
		require.NoError(t, err)
		err = wh.Notify(context.Background(), []andon.Alert{{Name: "A", State: andon.Firing}, {Name: "B", State: andon.Firing}})
		require.Error(t, err)
		assert.Equal(t, tt.permanent, kanban.IsPermanent(err), "%v", tt.codes)
		assert.Contains(t, err.Error(), "A refused")
		assert.Contains(t, err.Error(), "B refused")
	}
}

// The evaluator retries only the alert names whose message may yet go
// out: not those delivered, nor those refused for good.
func TestWebhookRetriesOnlyFailedGroups(t *testing.T) {
	srv := newGroupServer(t, map[string][]int{"A": {400}, "B": {503, 503}})
	wh, err := andon.NewWebhook(andon.WebhookOptions{URL: srv.URL})
	require.NoError(t, err)
	a, b, c := newSwitch(), newSwitch(), newSwitch()
	var logs bytes.Buffer
	e := newEvaluator(t, andon.EvaluatorOptions{Notifiers: []andon.Notifier{wh}, Notify: noWait,
		Logger: slog.New(slog.NewTextHandler(&logs, nil)),
		Rules: []andon.Rule{{Name: "A", Severity: andon.Page, Condition: a}, {Name: "B", Severity: andon.Page, Condition: b},
			{Name: "C", Severity: andon.Page, Condition: c}}})
	a.Set(true)
	b.Set(true)
	c.Set(true)
	e.EvaluateAt(context.Background(), t0)
	require.NoError(t, e.Flush(context.Background()))
	assert.Equal(t, map[string]int{"A": 1, "B": 3, "C": 1}, srv.counts())
	st := e.NotifierStats()[0]
	assert.EqualValues(t, 2, st.Sent, "B and C")
	assert.EqualValues(t, 1, st.Failed, "A")
	assert.EqualValues(t, 2, st.Retries)
	assert.Contains(t, logs.String(), "400 Bad Request")
	assert.Equal(t, 1, strings.Count(logs.String(), "level=ERROR"), logs.String())
}

// tooMany is a RoundTripper answering 429 Too Many Requests with a
// Retry-After of after, then 200, noting when each request came.
type tooMany struct {
	after string
	n     int
	mu    sync.Mutex
	at    []time.Time
}

func (tm *tooMany) RoundTrip(req *http.Request) (*http.Response, error) {
	tm.mu.Lock()
	defer tm.mu.Unlock()
	tm.at = append(tm.at, time.Now())
	code, h := http.StatusOK, http.Header{}
	if len(tm.at) <= tm.n {
		code = http.StatusTooManyRequests
		h.Set("Retry-After", tm.after)
	}
	return &http.Response{StatusCode: code, Status: http.StatusText(code), Header: h, Request: req,
		Body: io.NopCloser(strings.NewReader(""))}, nil
}

// A receiver that answers 429 or 503 with Retry-After is not asked again
// before then: the default back-off of 500ms, 1s, 2s would spend every
// attempt within the wait a rate-limited receiver asked for.
func TestWebhookWaitsForRetryAfter(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tm := &tooMany{after: "120", n: 2}
		wh, err := andon.NewWebhook(andon.WebhookOptions{URL: "http://hooks.example/x", Client: &http.Client{Transport: tm}})
		require.NoError(t, err)
		err = wh.Notify(context.Background(), []andon.Alert{{Name: "A", State: andon.Firing}})
		require.Error(t, err)
		assert.Equal(t, 120*time.Second, tai.RetryAfter(err))

		tm = &tooMany{after: "90", n: 2}
		wh, err = andon.NewWebhook(andon.WebhookOptions{URL: "http://hooks.example/x", Client: &http.Client{Transport: tm}})
		require.NoError(t, err)
		sw := newSwitch()
		e := newEvaluator(t, andon.EvaluatorOptions{Notifiers: []andon.Notifier{wh}, Logger: discardLogger(),
			Rules: []andon.Rule{{Name: "A", Severity: andon.Page, Condition: sw}}})
		sw.Set(true)
		e.Evaluate(context.Background())
		require.NoError(t, e.Flush(context.Background()))
		assert.EqualValues(t, 1, e.NotifierStats()[0].Sent)
		require.Len(t, tm.at, 3)
		assert.GreaterOrEqual(t, tm.at[1].Sub(tm.at[0]), 90*time.Second)
		assert.GreaterOrEqual(t, tm.at[2].Sub(tm.at[1]), 90*time.Second)
	})
}

// A batch a Webhook sends as several requests, one per alert name, may get
// several answers with Retry-After: the retry waits for the longest, so
// that no receiver is asked again before it said it could answer.
func TestWebhookWaitsForTheLongestRetryAfter(t *testing.T) {
	after := map[string]string{"A": "1", "B": "2"} // seconds
	var mu sync.Mutex
	at := map[string][]time.Time{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var m andon.WebhookMessage
		if err := json.NewDecoder(r.Body).Decode(&m); err != nil {
			http.Error(w, "bad body", http.StatusBadRequest)
			return
		}
		name := m.GroupLabels["alertname"]
		mu.Lock()
		defer mu.Unlock()
		at[name] = append(at[name], time.Now())
		if len(at[name]) == 1 {
			w.Header().Set("Retry-After", after[name])
			http.Error(w, name+" rate-limited", http.StatusTooManyRequests)
		}
	}))
	defer srv.Close()
	wh, err := andon.NewWebhook(andon.WebhookOptions{URL: srv.URL})
	require.NoError(t, err)
	a, b := newSwitch(), newSwitch()
	e := newEvaluator(t, andon.EvaluatorOptions{Notifiers: []andon.Notifier{wh}, Notify: noWait, Logger: discardLogger(),
		Rules: []andon.Rule{{Name: "A", Severity: andon.Page, Condition: a}, {Name: "B", Severity: andon.Page, Condition: b}}})
	a.Set(true)
	b.Set(true)
	e.EvaluateAt(context.Background(), t0) // both fire: one batch, a request for A, then one for B
	require.NoError(t, e.Flush(context.Background()))
	assert.EqualValues(t, 2, e.NotifierStats()[0].Sent)
	mu.Lock()
	require.Len(t, at["A"], 2)
	require.Len(t, at["B"], 2)
	assert.GreaterOrEqual(t, at["A"][1].Sub(at["B"][0]), 2*time.Second, "A was asked again before B's Retry-After")
	assert.GreaterOrEqual(t, at["B"][1].Sub(at["B"][0]), 2*time.Second, "B was asked again before its Retry-After")
	clear(at)
	mu.Unlock()

	// Called directly, Notify's error tells the longest wait too.
	err = wh.Notify(context.Background(), []andon.Alert{{Name: "A", State: andon.Firing}, {Name: "B", State: andon.Firing}})
	require.Error(t, err)
	assert.Equal(t, 2*time.Second, tai.RetryAfter(err))
}

// A receiver's answer longer than what an error quotes of it is read on,
// within a bound, so that the connection goes back to the pool: one
// connection carries every request of a Webhook.
func TestWebhookReusesConnections(t *testing.T) {
	for _, code := range []int{http.StatusOK, http.StatusServiceUnavailable} {
		t.Run(http.StatusText(code), func(t *testing.T) {
			answer := strings.Repeat("x", 8<<10)
			srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				_, _ = io.Copy(io.Discard, r.Body)
				w.WriteHeader(code)
				_, _ = io.WriteString(w, answer)
			}))
			var conns atomic.Int32
			srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
				if s == http.StateNew {
					conns.Add(1)
				}
			}
			srv.Start()
			defer srv.Close()
			wh, err := andon.NewWebhook(andon.WebhookOptions{URL: srv.URL})
			require.NoError(t, err)
			for range 3 {
				err := wh.Notify(context.Background(), []andon.Alert{{Name: "A", State: andon.Firing}, {Name: "B", State: andon.Firing}})
				if code == http.StatusOK {
					require.NoError(t, err)
				} else {
					require.Error(t, err)
					assert.Less(t, len(err.Error()), 2<<10, "an error quotes only the start of the answer")
				}
			}
			assert.EqualValues(t, 1, conns.Load(), "connections opened for 6 requests")
		})
	}
}

// deadlineTransport records the deadline of each request's context, by
// the alert name of the message it carries.
type deadlineTransport struct {
	base      http.RoundTripper
	mu        sync.Mutex
	deadlines map[string]time.Time
}

func (d *deadlineTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	body, err := io.ReadAll(req.Body)
	if err != nil {
		return nil, err
	}
	var m andon.WebhookMessage
	if err := json.Unmarshal(body, &m); err != nil {
		return nil, err
	}
	req.Body = io.NopCloser(bytes.NewReader(body))
	dl, ok := req.Context().Deadline()
	if !ok {
		return nil, errors.New("the request has no deadline")
	}
	d.mu.Lock()
	d.deadlines[m.GroupLabels["alertname"]] = dl
	d.mu.Unlock()
	return d.base.RoundTrip(req)
}

// NotifyOptions.Timeout bounds each request of a Webhook, which sends one
// per alert name: a slow answer for one name does not eat into the time
// the next request has.
func TestWebhookTimeoutIsPerRequest(t *testing.T) {
	const hold = 200 * time.Millisecond
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var m andon.WebhookMessage
		if err := json.NewDecoder(r.Body).Decode(&m); err != nil {
			http.Error(w, "bad body", http.StatusBadRequest)
			return
		}
		if m.GroupLabels["alertname"] == "A" {
			time.Sleep(hold) // a slow answer
		}
	}))
	defer srv.Close()
	tr := &deadlineTransport{base: srv.Client().Transport, deadlines: map[string]time.Time{}}
	wh, err := andon.NewWebhook(andon.WebhookOptions{URL: srv.URL, Client: &http.Client{Transport: tr}})
	require.NoError(t, err)
	a, b := newSwitch(), newSwitch()
	e := newEvaluator(t, andon.EvaluatorOptions{Notifiers: []andon.Notifier{wh}, Logger: discardLogger(),
		Notify: andon.NotifyOptions{Timeout: time.Minute, MaxAttempts: 1},
		Rules:  []andon.Rule{{Name: "A", Severity: andon.Page, Condition: a}, {Name: "B", Severity: andon.Page, Condition: b}}})
	a.Set(true)
	b.Set(true)
	e.EvaluateAt(context.Background(), t0) // both fire: one batch, a request for A, then one for B
	require.NoError(t, e.Flush(context.Background()))
	st := e.NotifierStats()[0]
	require.EqualValues(t, 2, st.Sent, "%+v", st)

	tr.mu.Lock()
	defer tr.mu.Unlock()
	require.Len(t, tr.deadlines, 2)
	// B's request began after A's answer, which took hold: with a
	// deadline of its own, B's is at least hold after A's.
	assert.GreaterOrEqual(t, tr.deadlines["B"].Sub(tr.deadlines["A"]), hold,
		"each request has the whole Timeout; A's deadline %v, B's %v", tr.deadlines["A"], tr.deadlines["B"])
}

// embeddedWebhook embeds a Webhook and reports the time its Notify call
// has.
type embeddedWebhook struct {
	*andon.Webhook
	deadline chan time.Duration
}

func (w embeddedWebhook) Notify(ctx context.Context, alerts []andon.Alert) error {
	var left time.Duration // none: no deadline
	if d, ok := ctx.Deadline(); ok {
		left = time.Until(d)
	}
	w.deadline <- left
	return w.Webhook.Notify(ctx, alerts)
}

// A notifier that embeds a Webhook still has its call bounded: by the
// Timeout once per alert name of the batch.
func TestWebhookEmbeddedCallIsBounded(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		wh, err := andon.NewWebhook(andon.WebhookOptions{URL: "http://receiver.invalid",
			Client: &http.Client{Transport: roundTripFunc(func(*http.Request) (*http.Response, error) {
				return &http.Response{StatusCode: http.StatusOK, Body: http.NoBody}, nil
			})}})
		require.NoError(t, err)
		n := embeddedWebhook{Webhook: wh, deadline: make(chan time.Duration, 1)}
		a, b := newSwitch(), newSwitch()
		e := newEvaluator(t, andon.EvaluatorOptions{Notifiers: []andon.Notifier{n}, Logger: discardLogger(),
			Notify: andon.NotifyOptions{Timeout: time.Second},
			Rules:  []andon.Rule{{Name: "A", Severity: andon.Page, Condition: a}, {Name: "B", Severity: andon.Page, Condition: b}}})
		a.Set(true)
		b.Set(true)
		e.EvaluateAt(context.Background(), t0)
		require.NoError(t, e.Flush(context.Background()))
		assert.Equal(t, 2*time.Second, <-n.deadline, "two alert names, a second each")
		assert.EqualValues(t, 2, e.NotifierStats()[0].Sent)
	})
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// fanOut is a notifier of one's own that sends every batch to a Webhook
// and to another notifier, and fails with both their errors.
type fanOut struct {
	wh    *andon.Webhook
	other andon.Notifier
}

func (f fanOut) Notify(ctx context.Context, alerts []andon.Alert) error {
	return errors.Join(f.wh.Notify(ctx, alerts), f.other.Notify(ctx, alerts))
}

// flaky is a notifier that fails its first n calls, worth a retry, and
// notes the alert names it took.
type flaky struct {
	mu   sync.Mutex
	n    int
	took []string
}

func (f *flaky) Notify(_ context.Context, alerts []andon.Alert) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.n > 0 {
		f.n--
		return errors.New("other receiver down")
	}
	for _, a := range alerts {
		f.took = append(f.took, a.Name)
	}
	return nil
}

// A notifier whose error joins a Webhook's with another failure is
// retried whole: the Webhook's error says which of its own requests went
// out, not that the other receiver took them.
func TestWebhookErrorJoinedWithAnotherIsRetriedWhole(t *testing.T) {
	srv := newGroupServer(t, map[string][]int{"A": {503}})
	wh, err := andon.NewWebhook(andon.WebhookOptions{URL: srv.URL})
	require.NoError(t, err)
	other := &flaky{n: 1}
	a, c := newSwitch(), newSwitch()
	e := newEvaluator(t, andon.EvaluatorOptions{Notifiers: []andon.Notifier{fanOut{wh, other}}, Notify: noWait,
		Rules: []andon.Rule{{Name: "A", Severity: andon.Page, Condition: a}, {Name: "C", Severity: andon.Page, Condition: c}}})
	a.Set(true)
	c.Set(true)
	e.EvaluateAt(context.Background(), t0)
	require.NoError(t, e.Flush(context.Background()))
	assert.ElementsMatch(t, []string{"A", "C"}, other.took, "the other receiver failed for both")
	st := e.NotifierStats()[0]
	assert.EqualValues(t, 2, st.Sent)
	assert.EqualValues(t, 1, st.Retries)
	assert.Zero(t, st.Failed)
}

// A notifier that joins a Webhook's error with another receiver's that
// succeeded (errors.Join with a nil error) returns the Webhook's error
// alone: only the alert names whose request failed are sent again, and
// those whose request failed for good fail alone.
func TestWebhookErrorJoinedWithNilIsRetriedByName(t *testing.T) {
	t.Run("retry", func(t *testing.T) {
		srv := newGroupServer(t, map[string][]int{"A": {503}})
		wh, err := andon.NewWebhook(andon.WebhookOptions{URL: srv.URL})
		require.NoError(t, err)
		other := &flaky{}
		a, c := newSwitch(), newSwitch()
		e := newEvaluator(t, andon.EvaluatorOptions{Notifiers: []andon.Notifier{fanOut{wh, other}}, Notify: noWait,
			Rules: []andon.Rule{{Name: "A", Severity: andon.Page, Condition: a}, {Name: "C", Severity: andon.Page, Condition: c}}})
		a.Set(true)
		c.Set(true)
		e.EvaluateAt(context.Background(), t0)
		require.NoError(t, e.Flush(context.Background()))
		assert.Equal(t, map[string]int{"A": 2, "C": 1}, srv.counts(), "C went out the first time")
		assert.ElementsMatch(t, []string{"A", "C", "A"}, other.took)
		st := e.NotifierStats()[0]
		assert.EqualValues(t, 2, st.Sent)
		assert.EqualValues(t, 1, st.Retries)
		assert.Zero(t, st.Failed)
	})
	t.Run("permanent", func(t *testing.T) {
		srv := newGroupServer(t, map[string][]int{"A": {400}})
		wh, err := andon.NewWebhook(andon.WebhookOptions{URL: srv.URL})
		require.NoError(t, err)
		a, c := newSwitch(), newSwitch()
		e := newEvaluator(t, andon.EvaluatorOptions{Notifiers: []andon.Notifier{fanOut{wh, &flaky{}}}, Notify: noWait,
			Rules: []andon.Rule{{Name: "A", Severity: andon.Page, Condition: a}, {Name: "C", Severity: andon.Page, Condition: c}}})
		a.Set(true)
		c.Set(true)
		e.EvaluateAt(context.Background(), t0)
		require.NoError(t, e.Flush(context.Background()))
		assert.Equal(t, map[string]int{"A": 1, "C": 1}, srv.counts())
		st := e.NotifierStats()[0]
		assert.EqualValues(t, 1, st.Sent, "C went out")
		assert.EqualValues(t, 1, st.Failed, "A failed for good")
	})
}

// permanentWebhook marks every error of its Webhook with kanban.Permanent.
type permanentWebhook struct{ wh *andon.Webhook }

func (p permanentWebhook) Notify(ctx context.Context, alerts []andon.Alert) error {
	if err := p.wh.Notify(ctx, alerts); err != nil {
		return kanban.Permanent(err)
	}
	return nil
}

// A notifier that marks a Webhook's error with kanban.Permanent is not
// retried: the alert names whose request went out count as sent, and
// the others fail for good, those worth a retry too.
func TestWebhookErrorMarkedPermanentIsNotRetried(t *testing.T) {
	srv := newGroupServer(t, map[string][]int{"A": {503}})
	wh, err := andon.NewWebhook(andon.WebhookOptions{URL: srv.URL})
	require.NoError(t, err)
	a, c := newSwitch(), newSwitch()
	e := newEvaluator(t, andon.EvaluatorOptions{Notifiers: []andon.Notifier{permanentWebhook{wh}}, Notify: noWait,
		Rules: []andon.Rule{{Name: "A", Severity: andon.Page, Condition: a}, {Name: "C", Severity: andon.Page, Condition: c}}})
	a.Set(true)
	c.Set(true)
	e.EvaluateAt(context.Background(), t0)
	require.NoError(t, e.Flush(context.Background()))
	assert.Equal(t, map[string]int{"A": 1, "C": 1}, srv.counts())
	st := e.NotifierStats()[0]
	assert.EqualValues(t, 1, st.Sent, "C went out")
	assert.Zero(t, st.Retries)
	assert.EqualValues(t, 1, st.Failed, "A failed for good")
}

// holdingTransport is a RoundTripper that holds its first request until
// release is closed, answers 200 to every request and keeps the messages.
type holdingTransport struct {
	release chan struct{}
	held    chan struct{} // closed once the first request is held
	mu      sync.Mutex
	n       int
	msgs    []andon.WebhookMessage
}

func newHoldingTransport() *holdingTransport {
	return &holdingTransport{release: make(chan struct{}), held: make(chan struct{})}
}

func (h *holdingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	var m andon.WebhookMessage
	if err := json.NewDecoder(req.Body).Decode(&m); err != nil {
		return nil, err
	}
	h.mu.Lock()
	h.n++
	first := h.n == 1
	h.mu.Unlock()
	if first {
		close(h.held)
		<-h.release
	}
	h.mu.Lock()
	h.msgs = append(h.msgs, m)
	h.mu.Unlock()
	return &http.Response{StatusCode: http.StatusOK, Status: "200 OK", Header: http.Header{}, Request: req,
		Body: io.NopCloser(strings.NewReader(""))}, nil
}

func (h *holdingTransport) messages() []andon.WebhookMessage {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]andon.WebhookMessage(nil), h.msgs...)
}

// An alert that fired and resolved while the receiver was busy is sent in
// two messages, firing and then resolved, as Alertmanager would have sent
// them: one message holding both would say "firing" for an alert that has
// resolved, and a receiver that acts on the message's status and groupKey
// (as Alertmanager's own PagerDuty and Opsgenie integrations do) would
// hold it firing for good.
func TestWebhookSendsTheFiringAndTheResolutionOfAnAlertApart(t *testing.T) {
	tr := newHoldingTransport()
	wh, err := andon.NewWebhook(andon.WebhookOptions{URL: "http://receiver.test/hook", Client: &http.Client{Transport: tr}})
	require.NoError(t, err)
	a, other := newSwitch(), newSwitch()
	e := newEvaluator(t, andon.EvaluatorOptions{Notifiers: []andon.Notifier{wh}, Notify: noWait,
		Rules: []andon.Rule{{Name: "A", Severity: andon.Page, Condition: a}, {Name: "S", Severity: andon.Page, Condition: other}}})
	ctx := context.Background()
	other.Set(true)
	e.EvaluateAt(ctx, t0) // S fires; its request is held
	<-tr.held
	a.Set(true)
	e.EvaluateAt(ctx, t0.Add(time.Minute)) // A fires
	a.Set(false)
	e.EvaluateAt(ctx, t0.Add(2*time.Minute)) // and resolves, before the receiver answers
	close(tr.release)
	require.NoError(t, e.Flush(ctx))

	var statuses []string
	for _, m := range tr.messages() {
		if m.GroupLabels["alertname"] != "A" {
			continue
		}
		var alerts []string
		for _, wa := range m.Alerts {
			alerts = append(alerts, wa.Status)
		}
		statuses = append(statuses, m.Status+" "+strings.Join(alerts, ","))
	}
	assert.Equal(t, []string{"firing firing", "resolved resolved"}, statuses)
	assert.EqualValues(t, 3, e.NotifierStats()[0].Sent)
}

// scriptedTransport answers the requests for each alert name with the
// status codes given for it, in turn, and 200 after them, keeping the
// statuses of the messages it answered 200.
type scriptedTransport struct {
	mu    sync.Mutex
	codes map[string][]int
	sent  []string // "name status" of each message taken
}

func (s *scriptedTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	var m andon.WebhookMessage
	if err := json.NewDecoder(req.Body).Decode(&m); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	name := m.GroupLabels["alertname"]
	code := http.StatusOK
	if cs := s.codes[name]; len(cs) > 0 {
		code, s.codes[name] = cs[0], cs[1:]
	}
	if code == http.StatusOK {
		s.sent = append(s.sent, name+" "+m.Status)
	}
	return &http.Response{StatusCode: code, Status: http.StatusText(code), Header: http.Header{}, Request: req,
		Body: io.NopCloser(strings.NewReader(""))}, nil
}

func (s *scriptedTransport) messages() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.sent...)
}

// When the firing message of an alert goes out and its resolution, in
// the same batch, is given up, the receiver holds the alert firing: the
// resolution is owed, and sent at the next evaluation.
func TestWebhookResolutionGivenUpAfterItsFiringWentOutIsSentLater(t *testing.T) {
	tr := &scriptedTransport{codes: map[string][]int{"A": {http.StatusOK, http.StatusServiceUnavailable, http.StatusServiceUnavailable}}}
	wh, err := andon.NewWebhook(andon.WebhookOptions{URL: "http://receiver.test/hook", Client: &http.Client{Transport: tr}})
	require.NoError(t, err)
	hold := make(chan struct{})
	held := make(chan struct{})
	first := true
	n := notifierFunc(func(ctx context.Context, a []andon.Alert) error {
		if first {
			first = false
			close(held)
			<-hold
		}
		return wh.Notify(ctx, a)
	})
	a, other := newSwitch(), newSwitch()
	opts := noWait
	opts.MaxAttempts = 2
	e := newEvaluator(t, andon.EvaluatorOptions{Notifiers: []andon.Notifier{n}, Notify: opts, Logger: discardLogger(),
		Rules: []andon.Rule{{Name: "A", Severity: andon.Page, Condition: a}, {Name: "S", Severity: andon.Page, Condition: other}}})
	ctx := context.Background()
	other.Set(true)
	e.EvaluateAt(ctx, t0) // S fires; its send is held
	<-held
	a.Set(true)
	e.EvaluateAt(ctx, t0.Add(time.Minute)) // A fires
	a.Set(false)
	e.EvaluateAt(ctx, t0.Add(2*time.Minute)) // and resolves, in the same batch
	close(hold)
	require.NoError(t, e.Flush(ctx))
	assert.Equal(t, []string{"S firing", "A firing"}, tr.messages(), "the resolution was given up")

	evaluateAndFlush(t, e, 3*time.Minute)
	assert.Equal(t, []string{"S firing", "A firing", "A resolved"}, tr.messages())
}

// A resolution is not sent before the firing message of its alert: when
// that one fails, the resolution waits and is retried after it. Sent
// first, it would leave the receiver holding the alert firing once the
// retried firing message came.
func TestWebhookResolutionWaitsForItsFailedFiringMessage(t *testing.T) {
	tr := &scriptedTransport{codes: map[string][]int{"A": {http.StatusServiceUnavailable}}}
	wh, err := andon.NewWebhook(andon.WebhookOptions{URL: "http://receiver.test/hook", Client: &http.Client{Transport: tr}})
	require.NoError(t, err)
	fired := t0
	f := andon.Alert{Name: "A", State: andon.Firing, FiredAt: fired, Fingerprint: "1", Labels: map[string]string{"alertname": "A"}}
	r := f
	r.State, r.ResolvedAt = andon.Resolved, fired.Add(time.Minute)
	b := andon.Alert{Name: "B", State: andon.Firing, FiredAt: fired, Fingerprint: "2", Labels: map[string]string{"alertname": "B"}}
	err = wh.Notify(context.Background(), []andon.Alert{f, b, r})
	require.Error(t, err)
	assert.False(t, kanban.IsPermanent(err))
	assert.Equal(t, 1, strings.Count(err.Error(), "andon: POST"), "one failure: %v", err)
	assert.Equal(t, []string{"B firing"}, tr.messages(), "A's resolution waits for its firing message")
}

// httpNotifiers makes, by name, the notifiers that POST to a URL, with
// their default options.
func httpNotifiers() map[string]func(url string) (andon.Notifier, error) {
	return map[string]func(url string) (andon.Notifier, error){
		"webhook": func(url string) (andon.Notifier, error) {
			return andon.NewWebhook(andon.WebhookOptions{URL: url})
		},
		"alertmanager": func(url string) (andon.Notifier, error) {
			return andon.NewAlertmanager(andon.AlertmanagerOptions{URL: url})
		},
	}
}

// A Webhook's or Alertmanager's error, called directly, hints at most 5
// minutes, as the evaluator waits, whether the Retry-After asks for more
// in seconds or as an HTTP date.
func TestNotifyRetryAfterIsCapped(t *testing.T) {
	far := time.Now().Add(1000 * time.Hour).UTC().Format(http.TimeFormat)
	for name, newNotifier := range httpNotifiers() {
		for _, code := range []int{http.StatusServiceUnavailable, http.StatusTooManyRequests} {
			for _, tc := range []struct{ header, why string }{
				{far, "an HTTP date 1000 hours ahead"},
				{"3600000", "1000 hours in seconds"},
				{"99999999999999999999", "more seconds than an int64 holds"},
			} {
				srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					w.Header().Set("Retry-After", tc.header)
					http.Error(w, "busy", code)
				}))
				n, err := newNotifier(srv.URL)
				require.NoError(t, err)
				err = n.Notify(context.Background(), []andon.Alert{{Name: "A", State: andon.Firing}})
				srv.Close()
				require.Error(t, err)
				assert.False(t, kanban.IsPermanent(err))
				assert.Equal(t, 5*time.Minute, tai.RetryAfter(err), "%s, %d, %s", name, code, tc.why)
			}
		}
	}
}
