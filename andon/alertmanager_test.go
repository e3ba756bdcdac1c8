package andon_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/andon"
	"github.com/taipattern/taikit/kanban"
)

// startAlertmanager runs prometheus-alertmanager on a free loopback port
// with a minimal configuration and returns its URL; it is stopped at the
// end of the test.
func startAlertmanager(t *testing.T) string {
	bin := needBinary(t, "/usr/bin/prometheus-alertmanager", "prometheus-alertmanager", "alertmanager")
	dir := t.TempDir()
	cfg := filepath.Join(dir, "alertmanager.yml")
	require.NoError(t, os.WriteFile(cfg, []byte("route:\n  receiver: blackhole\nreceivers:\n  - name: blackhole\n"), 0o600))
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	require.NoError(t, l.Close())

	var logs bytes.Buffer
	cmd := exec.Command(bin, "--config.file="+cfg, "--storage.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr, "--cluster.listen-address=")
	cmd.Stdout, cmd.Stderr = &logs, &logs
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("alertmanager output:\n%s", logs.String())
		}
	})
	url := "http://" + addr
	require.Eventually(t, func() bool {
		resp, err := http.Get(url + "/-/ready")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, 30*time.Second, 50*time.Millisecond, "alertmanager did not become ready")
	return url
}

// gettableAlert is the part of Alertmanager's GET /api/v2/alerts answer the
// test reads.
type gettableAlert struct {
	Labels       map[string]string `json:"labels"`
	Annotations  map[string]string `json:"annotations"`
	StartsAt     time.Time         `json:"startsAt"`
	EndsAt       time.Time         `json:"endsAt"`
	GeneratorURL string            `json:"generatorURL"`
	Fingerprint  string            `json:"fingerprint"`
	Status       struct {
		State string `json:"state"`
	} `json:"status"`
}

func getAlerts(t *testing.T, url string) []gettableAlert {
	resp, err := http.Get(url + "/api/v2/alerts")
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	var as []gettableAlert
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&as))
	return as
}

func TestAlertmanagerIntegration(t *testing.T) {
	url := startAlertmanager(t)
	am, err := andon.NewAlertmanager(andon.AlertmanagerOptions{URL: url})
	require.NoError(t, err)
	cond := newSwitch()
	e := newEvaluator(t, andon.EvaluatorOptions{Notifiers: []andon.Notifier{am}, GeneratorURL: "http://board.example/andon/",
		Rules: []andon.Rule{{Name: "HighErrorRate", Severity: andon.Page, Condition: cond,
			Labels: map[string]string{"team": "payments"}, Summary: "errors at {{ $value | humanizePercentage }}",
			RunbookURL: "https://runbooks.example/errors"}}})
	ctx := context.Background()

	cond.Set(true)
	fired := time.Now().UTC().Truncate(time.Millisecond)
	e.EvaluateAt(ctx, fired)
	require.NoError(t, e.Flush(ctx))
	st := e.NotifierStats()[0]
	require.EqualValues(t, 1, st.Sent, "%+v", st)

	var got []gettableAlert
	require.Eventually(t, func() bool { got = getAlerts(t, url); return len(got) == 1 }, 10*time.Second, 20*time.Millisecond)
	a := got[0]
	assert.Equal(t, map[string]string{"alertname": "HighErrorRate", "severity": "page", "team": "payments"}, a.Labels)
	assert.Equal(t, "errors at 10%", a.Annotations["summary"])
	assert.Equal(t, "https://runbooks.example/errors", a.Annotations["runbook_url"])
	assert.Equal(t, "http://board.example/andon/#rule-HighErrorRate", a.GeneratorURL)
	assert.True(t, a.StartsAt.Equal(fired), "startsAt %v, fired %v", a.StartsAt, fired)
	assert.True(t, a.EndsAt.After(fired.Add(time.Minute)), "endsAt %v is in the future", a.EndsAt)
	assert.Equal(t, "active", a.Status.State)

	// Resolving sends endsAt = the resolve time; Alertmanager stops
	// listing the alert as active.
	cond.Set(false)
	e.EvaluateAt(ctx, time.Now())
	require.NoError(t, e.Flush(ctx))
	require.EqualValues(t, 2, e.NotifierStats()[0].Sent)
	require.Eventually(t, func() bool { return len(getAlerts(t, url)) == 0 }, 10*time.Second, 20*time.Millisecond,
		fmt.Sprintf("alerts still listed: %+v", getAlerts(t, url)))
}

// Notify returns the Alertmanager's refusal: a 5xx is worth retrying, a 4xx
// is permanent.
func TestAlertmanagerNotifyReturnsRefusal(t *testing.T) {
	for _, c := range []struct {
		status    int
		permanent bool
	}{{http.StatusServiceUnavailable, false}, {http.StatusBadRequest, true}} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, "no", c.status)
		}))
		am, err := andon.NewAlertmanager(andon.AlertmanagerOptions{URL: srv.URL})
		require.NoError(t, err)
		err = am.Notify(context.Background(), []andon.Alert{{Name: "X", State: andon.Firing, Severity: andon.Page}})
		srv.Close()
		require.Error(t, err, "status %d", c.status)
		assert.Contains(t, err.Error(), strconv.Itoa(c.status))
		assert.Equal(t, c.permanent, kanban.IsPermanent(err), "status %d", c.status)
	}
}

// The API path goes after the base URL's path, before its query: a base
// URL behind a proxy may carry a prefix and a token in the query.
func TestAlertmanagerURLWithPathAndQuery(t *testing.T) {
	var got []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = append(got, r.URL.Path+" ? "+r.URL.RawQuery)
	}))
	defer srv.Close()
	for _, base := range []string{"", "/", "/am", "/am/", "/?token=abc", "/am?token=abc", "/am/?token=abc#frag"} {
		am, err := andon.NewAlertmanager(andon.AlertmanagerOptions{URL: srv.URL + base})
		require.NoError(t, err)
		require.NoError(t, am.Notify(context.Background(), []andon.Alert{{Name: "X", State: andon.Firing}}))
	}
	assert.Equal(t, []string{
		"/api/v2/alerts ? ", "/api/v2/alerts ? ", "/am/api/v2/alerts ? ", "/am/api/v2/alerts ? ",
		"/api/v2/alerts ? token=abc", "/am/api/v2/alerts ? token=abc", "/am/api/v2/alerts ? token=abc",
	}, got)
}

// A resend interval or an evaluation interval too long to be multiplied by
// four leaves endsAt as far ahead as a time goes, never before startsAt,
// which Alertmanager refuses with a 400 or takes as resolved.
func TestAlertmanagerEndsAtWithHugeIntervals(t *testing.T) {
	var (
		mu  sync.Mutex
		got []andon.PostableAlert
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var as []andon.PostableAlert
		if err := json.NewDecoder(r.Body).Decode(&as); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		mu.Lock()
		got = append(got, as...)
		mu.Unlock()
	}))
	defer srv.Close()
	for _, opts := range []andon.EvaluatorOptions{
		{Notify: andon.NotifyOptions{ResendInterval: math.MaxInt64}},
		{Interval: math.MaxInt64},
		{Interval: 100 * 365 * 24 * time.Hour},
		{Notify: andon.NotifyOptions{ResendInterval: math.MaxInt64 / 4}},
	} {
		am, err := andon.NewAlertmanager(andon.AlertmanagerOptions{URL: srv.URL})
		require.NoError(t, err)
		cond := newSwitch()
		cond.Set(true)
		opts.Notifiers = []andon.Notifier{am}
		opts.Rules = []andon.Rule{{Name: "R", Severity: andon.Page, Condition: cond}}
		e := newEvaluator(t, opts)
		evaluateAndFlush(t, e, 0)
		a, _ := e.Alert("R")
		assert.True(t, a.ValidUntil.After(t0.Add(100*365*24*time.Hour)), "ValidUntil %v with Interval %v, ResendInterval %v", a.ValidUntil, opts.Interval, opts.Notify.ResendInterval)
		mu.Lock()
		require.Len(t, got, 1)
		assert.True(t, got[0].EndsAt.After(got[0].StartsAt), "endsAt %v, startsAt %v with Interval %v, ResendInterval %v", got[0].EndsAt, got[0].StartsAt, opts.Interval, opts.Notify.ResendInterval)
		got = nil
		mu.Unlock()
	}
}

// An alert Alertmanager took firing stays active there while a silence
// of the evaluator's mutes it: the evaluator goes on re-sending it, as
// Prometheus does, rather than letting its endsAt pass, which
// Alertmanager takes as the alert's resolution and tells its receivers.
func TestAlertmanagerKeepsASilencedAlertFiring(t *testing.T) {
	url := startAlertmanager(t)
	am, err := andon.NewAlertmanager(andon.AlertmanagerOptions{URL: url})
	require.NoError(t, err)
	cond := newSwitch()
	// endsAt is four ResendIntervals ahead: 4s.
	e := newEvaluator(t, andon.EvaluatorOptions{Notifiers: []andon.Notifier{am}, Interval: 100 * time.Millisecond,
		Notify: andon.NotifyOptions{ResendInterval: time.Second},
		Rules:  []andon.Rule{{Name: "HighErrorRate", Severity: andon.Page, Condition: cond}}})
	ctx := context.Background()
	cond.Set(true)
	e.Evaluate(ctx)
	require.NoError(t, e.Flush(ctx))
	require.Eventually(t, func() bool { return len(getAlerts(t, url)) == 1 }, 10*time.Second, 20*time.Millisecond)

	_, err = e.Silence(andon.Silence{Matchers: []andon.Matcher{{Name: "alertname", Value: "HighErrorRate"}}, Duration: time.Hour})
	require.NoError(t, err)
	for deadline := time.Now().Add(6 * time.Second); time.Now().Before(deadline); {
		e.Evaluate(ctx)
		require.NoError(t, e.Flush(ctx))
		time.Sleep(100 * time.Millisecond)
	}
	got := getAlerts(t, url)
	require.Len(t, got, 1, "Alertmanager resolved the alert, which still fires")
	assert.Equal(t, "active", got[0].Status.State)
	assert.True(t, got[0].EndsAt.After(time.Now()), "endsAt %v", got[0].EndsAt)
}

// An alert's Fingerprint, which the Webhook sends as Alertmanager's
// webhook does, is the one Alertmanager gives the same labels: a receiver
// can tell an alert by it whichever of the two sent it.
func TestAlertFingerprintIsAlertmanagers(t *testing.T) {
	url := startAlertmanager(t)
	am, err := andon.NewAlertmanager(andon.AlertmanagerOptions{URL: url})
	require.NoError(t, err)
	cond := newSwitch()
	cond.Set(true)
	e := newEvaluator(t, andon.EvaluatorOptions{Notifiers: []andon.Notifier{am},
		Rules: []andon.Rule{
			{Name: "HighErrorRate", Severity: andon.Page, Condition: cond, Labels: map[string]string{"team": "payments"}},
			{Name: "Zahlungsfehler", Severity: andon.Ticket, Condition: cond, Labels: map[string]string{"team": "zahlungen – süd", "a": "x\ny"}},
		}})
	e.Evaluate(context.Background())
	require.NoError(t, e.Flush(context.Background()))
	require.EqualValues(t, 2, e.NotifierStats()[0].Sent)
	var got []gettableAlert
	require.Eventually(t, func() bool { got = getAlerts(t, url); return len(got) == 2 }, 10*time.Second, 20*time.Millisecond)
	for _, g := range got {
		a, ok := e.Alert(g.Labels["alertname"])
		require.True(t, ok, g.Labels)
		assert.Equal(t, g.Labels, a.Labels)
		assert.Equal(t, g.Fingerprint, a.Fingerprint, a.Name)
	}
}
