package andon_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
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
)

// recorder is a Notifier that remembers what it was told.
type recorder struct {
	mu     sync.Mutex
	alerts []andon.Alert
}

func (r *recorder) Notify(_ context.Context, alerts []andon.Alert) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.alerts = append(r.alerts, alerts...)
	return nil
}

// told returns the alerts told, in order.
func (r *recorder) told() []andon.Alert {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.alerts)
}

// events returns "name state" for each alert told.
func (r *recorder) events() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, a := range r.alerts {
		out = append(out, a.Name+" "+a.State.String())
	}
	return out
}

// noWait retries at once, for the tests over a real HTTP server that count
// attempts; TestRetriesGiveUp checks the waits in a synctest bubble.
var noWait = andon.NotifyOptions{Backoff: kanban.BackoffFunc(func(int) time.Duration { return 0 })}

func TestNotifyOnceOnFireAndResolve(t *testing.T) {
	cond := newSwitch()
	rec := &recorder{}
	e := newEvaluator(t, andon.EvaluatorOptions{Notifiers: []andon.Notifier{rec},
		Rules: []andon.Rule{{Name: "R", Severity: andon.Page, Condition: cond, For: time.Minute}}})
	ctx := context.Background()
	cond.Set(true)
	for i := range 5 { // pending, then firing for several evaluations
		e.EvaluateAt(ctx, t0.Add(time.Duration(i)*time.Minute))
	}
	cond.Set(false)
	for i := 5; i < 8; i++ {
		e.EvaluateAt(ctx, t0.Add(time.Duration(i)*time.Minute))
	}
	require.NoError(t, e.Flush(ctx))
	assert.Equal(t, []string{"R firing", "R resolved"}, rec.events(), "deduplicated by fingerprint")
	st := e.NotifierStats()
	require.Len(t, st, 1)
	assert.EqualValues(t, 2, st[0].Sent)
	assert.Equal(t, "notifier 0", st[0].Name)
}

func TestPendingThatNeverFiresIsNotSent(t *testing.T) {
	cond := newSwitch()
	rec := &recorder{}
	e := newEvaluator(t, andon.EvaluatorOptions{Notifiers: []andon.Notifier{rec},
		Rules: []andon.Rule{{Name: "R", Severity: andon.Page, Condition: cond, For: time.Hour}}})
	ctx := context.Background()
	cond.Set(true)
	e.EvaluateAt(ctx, t0)
	cond.Set(false)
	evaluateAndFlush(t, e, time.Minute)
	assert.Empty(t, rec.events())
}

// webhookServer records the messages it receives and fails the first
// failures requests with status code.
type webhookServer struct {
	*httptest.Server
	mu       sync.Mutex
	messages []andon.WebhookMessage
	requests atomic.Int32
	failures int32
	code     int
}

func newWebhookServer(t *testing.T, failures int32, code int) *webhookServer {
	s := &webhookServer{failures: failures, code: code}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := s.requests.Add(1)
		if n <= s.failures {
			http.Error(w, "try later", s.code)
			return
		}
		var m andon.WebhookMessage
		if err := json.NewDecoder(r.Body).Decode(&m); err != nil || r.Header.Get("Content-Type") != "application/json" {
			http.Error(w, "bad body", http.StatusBadRequest)
			return
		}
		s.mu.Lock()
		s.messages = append(s.messages, m)
		s.mu.Unlock()
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *webhookServer) got() []andon.WebhookMessage {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]andon.WebhookMessage(nil), s.messages...)
}

func TestWebhook(t *testing.T) {
	srv := newWebhookServer(t, 2, http.StatusServiceUnavailable)
	wh, err := andon.NewWebhook(andon.WebhookOptions{URL: srv.URL, Receiver: "ops", ExternalURL: "http://board/"})
	require.NoError(t, err)
	cond := newSwitch()
	e := newEvaluator(t, andon.EvaluatorOptions{Notifiers: []andon.Notifier{wh}, Notify: noWait, Logger: discardLogger(),
		Rules: []andon.Rule{{Name: "HighErrorRate", Severity: andon.Page, Condition: cond, Labels: map[string]string{"team": "payments"},
			Summary: "errors at {{ $value | humanizePercentage }}"}}})
	cond.Set(true)
	evaluateAndFlush(t, e, 0)

	msgs := srv.got()
	require.Len(t, msgs, 1, "delivered once after two 503s")
	assert.EqualValues(t, 3, srv.requests.Load())
	m := msgs[0]
	assert.Equal(t, "4", m.Version)
	assert.Equal(t, "firing", m.Status)
	assert.Equal(t, "ops", m.Receiver)
	assert.Equal(t, "http://board/", m.ExternalURL)
	assert.Equal(t, map[string]string{"alertname": "HighErrorRate"}, m.GroupLabels)
	assert.Equal(t, `{}:{alertname="HighErrorRate"}`, m.GroupKey)
	assert.Equal(t, map[string]string{"alertname": "HighErrorRate", "severity": "page", "team": "payments"}, m.CommonLabels)
	require.Len(t, m.Alerts, 1)
	assert.Equal(t, "firing", m.Alerts[0].Status)
	assert.Equal(t, "errors at 10%", m.Alerts[0].Annotations["summary"])
	assert.Equal(t, t0, m.Alerts[0].StartsAt.UTC())
	assert.True(t, m.Alerts[0].EndsAt.IsZero())
	assert.NotEmpty(t, m.Alerts[0].Fingerprint)

	st := e.NotifierStats()[0]
	assert.Equal(t, "webhook", st.Name)
	assert.EqualValues(t, 1, st.Sent)
	assert.EqualValues(t, 2, st.Retries)

	cond.Set(false)
	evaluateAndFlush(t, e, time.Minute)
	msgs = srv.got()
	require.Len(t, msgs, 2)
	assert.Equal(t, "resolved", msgs[1].Status)
	assert.Equal(t, t0.Add(time.Minute), msgs[1].Alerts[0].EndsAt.UTC())
}

func TestWebhookRequestShape(t *testing.T) {
	var body []byte
	var header http.Header
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		header = r.Header.Clone()
		var b bytes.Buffer
		_, _ = b.ReadFrom(r.Body)
		body = b.Bytes()
	}))
	defer srv.Close()
	wh, err := andon.NewWebhook(andon.WebhookOptions{URL: srv.URL, Header: http.Header{"Authorization": {"Bearer x"}}})
	require.NoError(t, err)
	require.NoError(t, wh.Notify(context.Background(), []andon.Alert{{Name: "A", State: andon.Firing, Labels: map[string]string{"alertname": "A"}}}))
	assert.Equal(t, "Bearer x", header.Get("Authorization"))
	var raw map[string]any
	require.NoError(t, json.Unmarshal(body, &raw))
	for _, k := range []string{"version", "groupKey", "truncatedAlerts", "status", "receiver", "groupLabels", "commonLabels", "commonAnnotations", "externalURL", "alerts"} {
		assert.Contains(t, raw, k)
	}
	assert.Equal(t, "andon", raw["receiver"])
}

func TestPermanentErrorIsNotRetried(t *testing.T) {
	srv := newWebhookServer(t, 100, http.StatusBadRequest)
	wh, err := andon.NewWebhook(andon.WebhookOptions{URL: srv.URL})
	require.NoError(t, err)
	cond := newSwitch()
	var logs bytes.Buffer
	e := newEvaluator(t, andon.EvaluatorOptions{Notifiers: []andon.Notifier{wh}, Notify: noWait,
		Logger: slog.New(slog.NewTextHandler(&logs, nil)),
		Rules:  []andon.Rule{{Name: "R", Severity: andon.Page, Condition: cond}}})
	cond.Set(true)
	evaluateAndFlush(t, e, 0)
	assert.EqualValues(t, 1, srv.requests.Load())
	st := e.NotifierStats()[0]
	assert.EqualValues(t, 1, st.Failed)
	assert.EqualValues(t, 0, st.Retries)
	assert.Contains(t, logs.String(), "notification failed")
	assert.Contains(t, logs.String(), "400 Bad Request")
}

func TestRetriesGiveUp(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var calls []time.Duration
		start := time.Now()
		failing := notifierFunc(func(context.Context, []andon.Alert) error {
			calls = append(calls, time.Since(start)) // one worker: no race
			return errors.New("connection refused")
		})
		cond := newSwitch()
		var logs bytes.Buffer
		e := newEvaluator(t, andon.EvaluatorOptions{Notifiers: []andon.Notifier{failing}, Logger: slog.New(slog.NewTextHandler(&logs, nil)),
			Notify: andon.NotifyOptions{MaxAttempts: 4, Backoff: kanban.Exponential{Initial: time.Second, Max: 3 * time.Second, Jitter: -1}},
			Rules:  []andon.Rule{{Name: "R", Severity: andon.Page, Condition: cond}}})
		cond.Set(true)
		evaluateAndFlush(t, e, 0)
		assert.Equal(t, []time.Duration{0, time.Second, 3 * time.Second, 6 * time.Second}, calls,
			"waits of 1s, 2s, then 3s (the cap) between attempts")
		st := e.NotifierStats()[0]
		assert.EqualValues(t, 1, st.Failed)
		assert.EqualValues(t, 3, st.Retries)
		assert.EqualValues(t, 0, st.Sent)
		assert.Equal(t, 3, strings.Count(logs.String(), "notification failed; retrying"))
		assert.Contains(t, logs.String(), "level=ERROR msg=\"andon: notification failed\" notifier=\"notifier 0\" alerts=1 attempts=4 err=\"connection refused\"")
	})
}

func TestDefaultBackoff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var calls []time.Duration
		start := time.Now()
		flaky := notifierFunc(func(context.Context, []andon.Alert) error {
			calls = append(calls, time.Since(start))
			if len(calls) < 3 {
				return errors.New("try later")
			}
			return nil
		})
		cond := newSwitch()
		e := newEvaluator(t, andon.EvaluatorOptions{Notifiers: []andon.Notifier{flaky}, Logger: discardLogger(),
			Rules: []andon.Rule{{Name: "R", Severity: andon.Page, Condition: cond}}})
		cond.Set(true)
		evaluateAndFlush(t, e, 0)
		require.Len(t, calls, 3)
		// 500ms, then 1s, each within the 20% jitter.
		assert.InDelta(t, 500*time.Millisecond, calls[1], float64(100*time.Millisecond))
		assert.InDelta(t, time.Second, calls[2]-calls[1], float64(200*time.Millisecond))
		assert.EqualValues(t, 1, e.NotifierStats()[0].Sent)
		assert.EqualValues(t, 2, e.NotifierStats()[0].Retries)
	})
}

// firstCallFails is a notifier whose first call waits for hold to close
// (unless hold is nil) and fails with err; later calls go to rec.
func firstCallFails(rec *recorder, hold <-chan struct{}, err error) andon.Notifier {
	var calls atomic.Int32
	return notifierFunc(func(ctx context.Context, a []andon.Alert) error {
		if calls.Add(1) == 1 {
			if hold != nil {
				<-hold
			}
			return err
		}
		return rec.Notify(ctx, a)
	})
}

type notifierFunc func(context.Context, []andon.Alert) error

func (f notifierFunc) Notify(ctx context.Context, a []andon.Alert) error { return f(ctx, a) }

func TestSlowNotifierNeverBlocksEvaluation(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		release := make(chan struct{})
		var got atomic.Int32
		slow := notifierFunc(func(ctx context.Context, a []andon.Alert) error {
			got.Add(int32(len(a)))
			select {
			case <-release:
			case <-ctx.Done():
			}
			return nil
		})
		var logs bytes.Buffer
		var rules []andon.Rule
		conds := make([]*switchCond, 6)
		for i := range conds {
			conds[i] = newSwitch()
			rules = append(rules, andon.Rule{Name: "R" + string(rune('a'+i)), Severity: andon.Page, Condition: conds[i]})
		}
		e := newEvaluator(t, andon.EvaluatorOptions{Notifiers: []andon.Notifier{slow}, Notify: andon.NotifyOptions{QueueSize: 2, Timeout: time.Hour},
			Logger: slog.New(slog.NewTextHandler(&logs, nil)), Rules: rules})
		ctx := context.Background()

		conds[0].Set(true)
		e.EvaluateAt(ctx, t0) // Ra goes to the worker, which blocks
		synctest.Wait()
		require.EqualValues(t, 1, got.Load())
		for i := 1; i < 6; i++ {
			conds[i].Set(true)
		}
		// Rb..Rf: two fit the queue, three are dropped. Were evaluation to
		// wait for the notifier, the bubble would deadlock and fail.
		e.EvaluateAt(ctx, t0.Add(time.Minute))
		st := e.NotifierStats()[0]
		assert.EqualValues(t, 3, st.Dropped)
		assert.Equal(t, 2, st.Queued)
		assert.Contains(t, logs.String(), "notification dropped: queue full")
		close(release)
		require.NoError(t, e.Flush(ctx))
		assert.EqualValues(t, 3, got.Load())
		assert.EqualValues(t, 3, e.NotifierStats()[0].Sent)
	})
}

func TestShutdownDeliversQueued(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rec := &recorder{}
		slow := notifierFunc(func(ctx context.Context, a []andon.Alert) error {
			time.Sleep(time.Second) // a slow receiver
			return rec.Notify(ctx, a)
		})
		cond := newSwitch()
		var logs bytes.Buffer
		e, err := andon.NewEvaluator(andon.EvaluatorOptions{Notifiers: []andon.Notifier{slow}, Logger: slog.New(slog.NewTextHandler(&logs, nil)),
			Rules: []andon.Rule{{Name: "R", Severity: andon.Page, Condition: cond}}})
		require.NoError(t, err)
		cond.Set(true)
		e.EvaluateAt(context.Background(), t0)
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		require.NoError(t, e.Shutdown(ctx))
		assert.Equal(t, []string{"R firing"}, rec.events(), "what was queued is delivered")
		assert.Empty(t, logs.String(), "nothing dropped, nothing failed")
		assert.EqualValues(t, 1, e.NotifierStats()[0].Sent)
		require.NoError(t, e.Shutdown(ctx), "idempotent")
		assert.False(t, e.Pull(context.Background(), "x", "y"), "no cord after Shutdown")
		assert.Nil(t, e.EvaluateAt(context.Background(), t0.Add(time.Minute)))
	})
}

func TestShutdownIsBoundedByContext(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		started := make(chan struct{})
		blocking := notifierFunc(func(ctx context.Context, a []andon.Alert) error {
			close(started)
			<-ctx.Done()
			return ctx.Err()
		})
		cond, other := newSwitch(), newSwitch()
		var logs bytes.Buffer
		e, err := andon.NewEvaluator(andon.EvaluatorOptions{Notifiers: []andon.Notifier{blocking}, Logger: slog.New(slog.NewTextHandler(&logs, nil)),
			Notify: andon.NotifyOptions{Timeout: time.Hour},
			Rules: []andon.Rule{{Name: "R", Severity: andon.Page, Condition: cond},
				{Name: "S", Severity: andon.Page, Condition: other}}})
		require.NoError(t, err)
		cond.Set(true)
		e.EvaluateAt(context.Background(), t0)
		<-started
		other.Set(true)
		e.EvaluateAt(context.Background(), t0.Add(time.Minute)) // S waits in the queue

		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		start := time.Now()
		assert.ErrorIs(t, e.Shutdown(ctx), context.DeadlineExceeded)
		assert.Equal(t, 5*time.Second, time.Since(start), "Shutdown waited for delivery until ctx ended")
		require.NoError(t, e.Shutdown(context.Background()), "the worker exits on its own")
		st := e.NotifierStats()[0]
		assert.EqualValues(t, 1, st.Failed, "the canceled call is given up")
		assert.EqualValues(t, 1, st.Dropped, "the queued one is dropped")
		assert.Zero(t, st.Queued)
		assert.Contains(t, logs.String(), "notifications dropped at shutdown")
	})
}

// A batch waiting for its retry when Shutdown's ctx ends was not given
// up after its attempts: Shutdown abandoned it, as it does a queued one.
// It is counted Dropped, not Failed, and not tried again with a context
// that has ended.
func TestShutdownDuringARetryWaitDropsTheBatch(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var calls atomic.Int32
		failing := notifierFunc(func(context.Context, []andon.Alert) error {
			calls.Add(1)
			return errors.New("connection refused")
		})
		cond := newSwitch()
		var logs bytes.Buffer
		e, err := andon.NewEvaluator(andon.EvaluatorOptions{Notifiers: []andon.Notifier{failing}, Logger: slog.New(slog.NewTextHandler(&logs, nil)),
			Notify: andon.NotifyOptions{MaxAttempts: 4, Backoff: kanban.BackoffFunc(func(int) time.Duration { return time.Minute })},
			Rules:  []andon.Rule{{Name: "R", Severity: andon.Page, Condition: cond}}})
		require.NoError(t, err)
		cond.Set(true)
		e.EvaluateAt(context.Background(), t0)
		synctest.Wait() // the first attempt failed; the batch waits a minute to retry

		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		assert.ErrorIs(t, e.Shutdown(ctx), context.DeadlineExceeded)
		require.NoError(t, e.Shutdown(context.Background()), "the worker exits")
		st := e.NotifierStats()[0]
		assert.EqualValues(t, 1, calls.Load(), "no attempt after Shutdown ended the wait")
		assert.EqualValues(t, 0, st.Failed, "the batch was not given up after its attempts")
		assert.EqualValues(t, 1, st.Dropped, "Shutdown abandoned it")
		assert.EqualValues(t, 1, st.Retries)
		assert.Contains(t, logs.String(), "notifications dropped at shutdown")
		assert.NotContains(t, logs.String(), "msg=\"andon: notification failed\"")
	})
}

func TestShutdownWaitsForEvaluation(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rec := &recorder{}
		inHook, release := make(chan struct{}), make(chan struct{})
		cond := newSwitch()
		e, err := andon.NewEvaluator(andon.EvaluatorOptions{Notifiers: []andon.Notifier{rec},
			Rules: []andon.Rule{{Name: "R", Severity: andon.Page, Condition: cond, Hooks: []andon.Hook{andon.HookFuncs{
				OnFire: func(context.Context, andon.Alert) { close(inHook); <-release }}}}}})
		require.NoError(t, err)
		cond.Set(true)
		go e.EvaluateAt(context.Background(), t0)
		<-inHook

		// The evaluation has not queued its notification yet: a Shutdown
		// that ends first leaves it undelivered.
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		assert.ErrorIs(t, e.Shutdown(ctx), context.DeadlineExceeded)
		close(release)
		synctest.Wait()
		require.NoError(t, e.Shutdown(context.Background()))
		assert.Empty(t, rec.events(), "the workers were stopped before the evaluation queued")
	})
	synctest.Test(t, func(t *testing.T) {
		rec := &recorder{}
		inHook, release := make(chan struct{}), make(chan struct{})
		cond := newSwitch()
		e, err := andon.NewEvaluator(andon.EvaluatorOptions{Notifiers: []andon.Notifier{rec},
			Rules: []andon.Rule{{Name: "R", Severity: andon.Page, Condition: cond, Hooks: []andon.Hook{andon.HookFuncs{
				OnFire: func(context.Context, andon.Alert) { close(inHook); <-release }}}}}})
		require.NoError(t, err)
		cond.Set(true)
		go e.EvaluateAt(context.Background(), t0)
		<-inHook
		go func() { time.Sleep(time.Second); close(release) }()
		require.NoError(t, e.Shutdown(context.Background()))
		assert.Equal(t, []string{"R firing"}, rec.events(), "Shutdown let the evaluation in progress queue, then delivered")
	})
}

func TestFlushHonoursContext(t *testing.T) {
	release := make(chan struct{})
	blocking := notifierFunc(func(ctx context.Context, a []andon.Alert) error {
		<-release
		return nil
	})
	cond := newSwitch()
	e := newEvaluator(t, andon.EvaluatorOptions{Notifiers: []andon.Notifier{blocking},
		Rules: []andon.Rule{{Name: "R", Severity: andon.Page, Condition: cond}}})
	cond.Set(true)
	e.EvaluateAt(context.Background(), t0)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	assert.ErrorIs(t, e.Flush(ctx), context.Canceled)
	close(release)
	require.NoError(t, e.Flush(context.Background()))
}

func TestSlogNotifier(t *testing.T) {
	var buf bytes.Buffer
	logger := slog.New(slog.NewJSONHandler(&buf, nil))
	n := andon.SlogNotifier(logger)
	require.NoError(t, n.Notify(context.Background(), []andon.Alert{
		{Name: "A", Severity: andon.Page, State: andon.Firing, Value: 0.031, Unit: andon.UnitRatio,
			Labels: map[string]string{"alertname": "A", "team": "x"}, Annotations: map[string]string{"summary": "fraud 3.1%"}},
		{Name: "B", Severity: andon.Ticket, State: andon.Firing},
		{Name: "A", Severity: andon.Page, State: andon.Resolved},
	}))
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	require.Len(t, lines, 3)
	var first map[string]any
	require.NoError(t, json.Unmarshal([]byte(lines[0]), &first))
	assert.Equal(t, "ERROR", first["level"])
	assert.Equal(t, "A", first["alertname"])
	assert.Equal(t, "3.1%", first["value"])
	assert.Equal(t, "fraud 3.1%", first["summary"])
	assert.Equal(t, map[string]any{"alertname": "A", "team": "x"}, first["labels"])
	assert.Contains(t, lines[1], `"level":"WARN"`)
	assert.Contains(t, lines[2], `"level":"INFO"`)
	assert.Contains(t, lines[2], `"state":"resolved"`)
}

func TestNotifierOptionsValidation(t *testing.T) {
	_, err := andon.NewWebhook(andon.WebhookOptions{URL: "ftp://x"})
	assert.ErrorContains(t, err, `andon: WebhookOptions.URL "ftp://x" is not an http or https URL`)
	_, err = andon.NewAlertmanager(andon.AlertmanagerOptions{})
	assert.ErrorContains(t, err, `andon: AlertmanagerOptions.URL "" is not an http or https URL`)
}

// amServer is a fake Alertmanager recording POST /api/v2/alerts.
type amServer struct {
	*httptest.Server
	mu    sync.Mutex
	posts [][]andon.PostableAlert
}

func newAMServer(t *testing.T) *amServer {
	s := &amServer{}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.Path != "/api/v2/alerts" {
			http.NotFound(w, r)
			return
		}
		var as []andon.PostableAlert
		if err := json.NewDecoder(r.Body).Decode(&as); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		s.mu.Lock()
		s.posts = append(s.posts, as)
		s.mu.Unlock()
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *amServer) got() [][]andon.PostableAlert {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([][]andon.PostableAlert(nil), s.posts...)
}

func TestAlertmanagerResendsFiringAlerts(t *testing.T) {
	srv := newAMServer(t)
	am, err := andon.NewAlertmanager(andon.AlertmanagerOptions{URL: srv.URL + "/"})
	require.NoError(t, err)
	cond := newSwitch()
	e := newEvaluator(t, andon.EvaluatorOptions{Notifiers: []andon.Notifier{am}, Interval: 15 * time.Second,
		Notify: andon.NotifyOptions{ResendInterval: time.Minute},
		Rules:  []andon.Rule{{Name: "R", Severity: andon.Page, Condition: cond}}})
	cond.Set(true)
	for _, at := range []time.Duration{0, 15 * time.Second, 30 * time.Second, 45 * time.Second, time.Minute, 75 * time.Second} {
		evaluateAndFlush(t, e, at)
	}
	posts := srv.got()
	require.Len(t, posts, 2, "sent when it fired and re-sent a minute later")
	assert.Equal(t, t0, posts[0][0].StartsAt.UTC())
	assert.Equal(t, t0.Add(4*time.Minute), posts[0][0].EndsAt.UTC(), "endsAt four resend intervals ahead")
	assert.Equal(t, t0.Add(5*time.Minute), posts[1][0].EndsAt.UTC())
	assert.Equal(t, "R", posts[1][0].Labels["alertname"])

	cond.Set(false)
	evaluateAndFlush(t, e, 90*time.Second)
	posts = srv.got()
	require.Len(t, posts, 3)
	assert.Equal(t, t0.Add(90*time.Second), posts[2][0].EndsAt.UTC(), "resolved: endsAt is the resolve time")
	assert.Equal(t, t0, posts[2][0].StartsAt.UTC())
}

func TestNotifierPanicFailsTheBatch(t *testing.T) {
	var calls atomic.Int32
	panicky := notifierFunc(func(context.Context, []andon.Alert) error {
		calls.Add(1)
		panic("notifier bug")
	})
	cond := newSwitch()
	var logs bytes.Buffer
	e := newEvaluator(t, andon.EvaluatorOptions{Notifiers: []andon.Notifier{panicky}, Notify: noWait,
		Logger: slog.New(slog.NewTextHandler(&logs, nil)),
		Rules:  []andon.Rule{{Name: "R", Severity: andon.Page, Condition: cond}}})
	cond.Set(true)
	evaluateAndFlush(t, e, 0)
	assert.EqualValues(t, 1, calls.Load(), "a panic is not retried")
	st := e.NotifierStats()[0]
	assert.EqualValues(t, 1, st.Failed)
	assert.EqualValues(t, 0, st.Retries)
	assert.Contains(t, logs.String(), `err="andon: panic in notifier notifier 0: notifier bug" stack="goroutine `)
	assert.Contains(t, logs.String(), "notifier_test.go", "the stack is where it panicked")
}

// hintedError is an error type with a retry hint that does not guard
// against a nil receiver.
type hintedError struct{ after time.Duration }

func (e *hintedError) Error() string             { return "hinted" }
func (e *hintedError) RetryAfter() time.Duration { return e.after }

// A notifier whose error panics when asked for its retry hint (a nil
// pointer returned as an error) fails the batch as a panic in Notify
// does, and takes no process down with the worker.
func TestNotifierErrorPanicFailsTheBatch(t *testing.T) {
	var calls atomic.Int32
	nilErr := notifierFunc(func(context.Context, []andon.Alert) error {
		calls.Add(1)
		var err *hintedError
		return err
	})
	cond := newSwitch()
	var logs bytes.Buffer
	var mu sync.Mutex
	e := newEvaluator(t, andon.EvaluatorOptions{Notifiers: []andon.Notifier{nilErr}, Notify: noWait,
		Logger: slog.New(slog.NewTextHandler(&lockedWriter{w: &logs, mu: &mu}, nil)),
		Rules:  []andon.Rule{{Name: "R", Severity: andon.Page, Condition: cond}}})
	cond.Set(true)
	evaluateAndFlush(t, e, 0)
	assert.EqualValues(t, 1, calls.Load(), "a panic is not retried")
	st := e.NotifierStats()[0]
	assert.EqualValues(t, 1, st.Failed)
	assert.EqualValues(t, 0, st.Retries)
	mu.Lock()
	out := logs.String()
	mu.Unlock()
	assert.Contains(t, out, "andon: panic in error of notifier notifier 0: runtime error: invalid memory address or nil pointer dereference")
	assert.Contains(t, out, "notifier_test.go", "the stack is where it panicked")
}

func TestNotificationsCarryTheRunbook(t *testing.T) {
	srv := newWebhookServer(t, 0, 0)
	wh, err := andon.NewWebhook(andon.WebhookOptions{URL: srv.URL})
	require.NoError(t, err)
	am := newAMServer(t)
	amn, err := andon.NewAlertmanager(andon.AlertmanagerOptions{URL: am.URL})
	require.NoError(t, err)
	cond := newSwitch()
	e := newEvaluator(t, andon.EvaluatorOptions{Notifiers: []andon.Notifier{wh, amn},
		Cord: andon.CordOptions{RunbookURL: "https://runbooks.example/cord"},
		Rules: []andon.Rule{{Name: "HighErrorRate", Severity: andon.Page, Condition: cond,
			RunbookURL: "https://runbooks.example/errors"}}})
	ctx := context.Background()
	// Before its first evaluation an alert already names its runbook.
	a, _ := e.Alert("HighErrorRate")
	assert.Equal(t, "https://runbooks.example/errors", a.Annotations["runbook_url"])

	cond.Set(true)
	evaluateAndFlush(t, e, 0)
	require.True(t, e.Pull(ctx, "smoke", "alice"))
	require.NoError(t, e.Flush(ctx))

	msgs := srv.got()
	require.Len(t, msgs, 2)
	assert.Equal(t, "https://runbooks.example/errors", msgs[0].Alerts[0].Annotations["runbook_url"])
	assert.Equal(t, "https://runbooks.example/errors", msgs[0].CommonAnnotations["runbook_url"])
	assert.Equal(t, "https://runbooks.example/cord", msgs[1].Alerts[0].Annotations["runbook_url"], "the cord's own runbook")
	posts := am.got()
	require.Len(t, posts, 2)
	assert.Equal(t, "https://runbooks.example/errors", posts[0][0].Annotations["runbook_url"])
	assert.Equal(t, "https://runbooks.example/cord", posts[1][0].Annotations["runbook_url"])

}

func TestShutdownWaitsForAStubbornNotifier(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		release := make(chan struct{})
		stubborn := notifierFunc(func(context.Context, []andon.Alert) error {
			<-release // ignores ctx
			return nil
		})
		cond := newSwitch()
		e, err := andon.NewEvaluator(andon.EvaluatorOptions{Notifiers: []andon.Notifier{stubborn}, Logger: discardLogger(),
			Rules: []andon.Rule{{Name: "R", Severity: andon.Page, Condition: cond}}})
		require.NoError(t, err)
		cond.Set(true)
		e.EvaluateAt(context.Background(), t0)
		synctest.Wait()
		for range 2 { // the first waits for delivery, the second for the worker
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			assert.ErrorIs(t, e.Shutdown(ctx), context.DeadlineExceeded)
			cancel()
		}
		close(release)
		require.NoError(t, e.Shutdown(context.Background()))
	})
}

// refresher is a notifier that wants firing alerts re-sent, as
// Alertmanager does; it can be held to let notifications queue up.
type refresher struct {
	recorder
	hold chan struct{}
}

func (r *refresher) Notify(ctx context.Context, alerts []andon.Alert) error {
	if r.hold != nil {
		<-r.hold
	}
	return r.recorder.Notify(ctx, alerts)
}

func (*refresher) Refreshes() bool { return true }

func TestResendReplacesTheQueuedOne(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := &refresher{hold: make(chan struct{})}
		cond := newSwitch()
		e := newEvaluator(t, andon.EvaluatorOptions{Notifiers: []andon.Notifier{n},
			Rules: []andon.Rule{{Name: "R", Severity: andon.Page, Condition: cond}}})
		ctx := context.Background()
		cond.Set(true)
		e.EvaluateAt(ctx, t0) // sent; the worker is held
		synctest.Wait()
		e.EvaluateAt(ctx, t0.Add(time.Minute))   // re-sent: queued
		e.EvaluateAt(ctx, t0.Add(2*time.Minute)) // re-sent again: replaces it
		assert.Equal(t, 1, e.NotifierStats()[0].Queued)
		cond.Set(false)
		e.EvaluateAt(ctx, t0.Add(3*time.Minute)) // resolved: queued after it
		assert.Equal(t, 2, e.NotifierStats()[0].Queued)
		close(n.hold)
		require.NoError(t, e.Flush(ctx))
		assert.Equal(t, []string{"R firing", "R firing", "R resolved"}, n.events())
		n.mu.Lock()
		defer n.mu.Unlock()
		assert.Equal(t, t0.Add(2*time.Minute), n.alerts[1].LastEval, "the newer re-send")
		assert.EqualValues(t, 3, e.NotifierStats()[0].Sent)
	})
}

func TestDefaultResendInterval(t *testing.T) {
	n := &refresher{}
	cond := newSwitch()
	e := newEvaluator(t, andon.EvaluatorOptions{Notifiers: []andon.Notifier{n},
		Rules: []andon.Rule{{Name: "R", Severity: andon.Page, Condition: cond}}})
	cond.Set(true)
	for _, at := range []time.Duration{0, 30 * time.Second, time.Minute - time.Nanosecond, time.Minute} {
		evaluateAndFlush(t, e, at)
	}
	assert.Equal(t, []string{"R firing", "R firing"}, n.events(), "re-sent after a minute, not before")
	a, _ := e.Alert("R")
	assert.Equal(t, t0.Add(5*time.Minute), a.ValidUntil, "four resend intervals ahead")
}

func TestValidUntilFollowsTheLongerInterval(t *testing.T) {
	cond := newSwitch()
	cond.Set(true)
	for _, c := range []struct {
		interval, resend, want time.Duration
	}{
		{15 * time.Second, time.Minute, 4 * time.Minute},
		{5 * time.Minute, time.Minute, 20 * time.Minute}, // evaluated less often than re-sent
	} {
		e := newEvaluator(t, andon.EvaluatorOptions{Interval: c.interval, Notify: andon.NotifyOptions{ResendInterval: c.resend},
			Rules: []andon.Rule{{Name: "R", Severity: andon.Page, Condition: cond}}})
		e.EvaluateAt(context.Background(), t0)
		a, _ := e.Alert("R")
		assert.Equal(t, t0.Add(c.want), a.ValidUntil, "Interval %v, ResendInterval %v", c.interval, c.resend)
	}
}

// A failed evaluation says nothing of whether the alert still fires: its
// ValidUntil stays where the last evaluation that measured set it, and a
// re-send to a Refresher (Alertmanager) carries that one, so that a rule
// whose data source is down expires there rather than looking fresh.
func TestFailedEvaluationKeepsValidUntil(t *testing.T) {
	n := &refresher{}
	cond := newSwitch()
	e := newEvaluator(t, andon.EvaluatorOptions{Notifiers: []andon.Notifier{n}, Interval: 15 * time.Second,
		Notify: andon.NotifyOptions{ResendInterval: time.Minute}, Logger: discardLogger(),
		Rules: []andon.Rule{{Name: "R", Severity: andon.Page, Condition: cond}}})
	cond.Set(true)
	evaluateAndFlush(t, e, 0)
	a, _ := e.Alert("R")
	require.Equal(t, andon.Firing, a.State)
	require.Equal(t, t0.Add(4*time.Minute), a.ValidUntil)

	cond.SetErr(errors.New("stats source down"))
	for _, at := range []time.Duration{time.Minute, 2 * time.Minute} {
		evaluateAndFlush(t, e, at)
		a, _ = e.Alert("R")
		require.Equal(t, "stats source down", a.LastError)
		assert.Equal(t, andon.Firing, a.State, "an error leaves the state as it was")
		assert.Equal(t, t0.Add(at), a.LastEval)
		assert.Equal(t, t0.Add(4*time.Minute), a.ValidUntil, "at %v: the failed evaluation made the alert look fresh", at)
	}
	n.mu.Lock()
	for _, sent := range n.alerts {
		assert.Equal(t, t0.Add(4*time.Minute), sent.ValidUntil, "sent at %v", sent.LastEval)
	}
	n.mu.Unlock()

	cond.SetErr(nil)
	evaluateAndFlush(t, e, 3*time.Minute)
	a, _ = e.Alert("R")
	assert.Empty(t, a.LastError)
	assert.Equal(t, t0.Add(7*time.Minute), a.ValidUntil, "measured again: fresh again")
}

// namedNotifier has a Name method that may return "".
type namedNotifier struct {
	recorder
	name string
}

func (n *namedNotifier) Name() string { return n.name }

func TestNotifierNames(t *testing.T) {
	e := newEvaluator(t, andon.EvaluatorOptions{Notifiers: []andon.Notifier{&recorder{}, &namedNotifier{name: "pager"}, &namedNotifier{}}})
	var names []string
	for _, st := range e.NotifierStats() {
		names = append(names, st.Name)
	}
	assert.Equal(t, []string{"notifier 0", "pager", "notifier 2"}, names)
}

func TestNotifyOptionLimits(t *testing.T) {
	for _, n := range []andon.NotifyOptions{
		{QueueSize: 1 << 20, MaxAttempts: 100},
		{QueueSize: 1, MaxAttempts: 1},
		{Backoff: kanban.Exponential{Initial: time.Second, Max: time.Second}},
	} {
		_, err := andon.NewEvaluator(andon.EvaluatorOptions{Notify: n})
		require.NoError(t, err, "%+v", n)
	}
	for _, tt := range []struct {
		n    andon.NotifyOptions
		want string
	}{
		{andon.NotifyOptions{QueueSize: 1<<20 + 1}, "andon: NotifyOptions.QueueSize 1048577 is outside [1, 1048576]"},
		{andon.NotifyOptions{MaxAttempts: 101}, "andon: NotifyOptions.MaxAttempts 101 is outside [1, 100]"},
		{andon.NotifyOptions{ResendInterval: -time.Second}, "andon: NotifyOptions.ResendInterval -1s is negative"},
	} {
		_, err := andon.NewEvaluator(andon.EvaluatorOptions{Notify: tt.n})
		assert.ErrorContains(t, err, tt.want)
	}
}

func TestDefaultTimeoutAndAttempts(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var deadlines []time.Duration
		start := time.Now()
		failing := notifierFunc(func(ctx context.Context, _ []andon.Alert) error {
			d, ok := ctx.Deadline()
			require.True(t, ok)
			deadlines = append(deadlines, time.Until(d))
			return errors.New("down")
		})
		cond := newSwitch()
		e := newEvaluator(t, andon.EvaluatorOptions{Notifiers: []andon.Notifier{failing}, Logger: discardLogger(),
			Rules: []andon.Rule{{Name: "R", Severity: andon.Page, Condition: cond}}})
		cond.Set(true)
		evaluateAndFlush(t, e, 0)
		require.Len(t, deadlines, 4, "four attempts by default")
		assert.Equal(t, 10*time.Second, deadlines[0], "each call has ten seconds")
		assert.Less(t, time.Since(start), 10*time.Second, "3 waits of about 0.5s, 1s and 2s")
	})
}

func TestWebhookGroupsByName(t *testing.T) {
	srv := newWebhookServer(t, 0, 0)
	wh, err := andon.NewWebhook(andon.WebhookOptions{URL: srv.URL})
	require.NoError(t, err)
	fired, resolved := t0, t0.Add(time.Minute)
	a1 := andon.Alert{Name: "A", State: andon.Firing, FiredAt: fired, Fingerprint: "1",
		Labels:      map[string]string{"alertname": "A", "region": "eu", "team": "pay"},
		Annotations: map[string]string{"summary": "a in eu", "runbook_url": "https://r/a"}}
	a2 := andon.Alert{Name: "A", State: andon.Resolved, FiredAt: fired, ResolvedAt: resolved, Fingerprint: "2",
		Labels:      map[string]string{"alertname": "A", "region": "us", "team": "pay"},
		Annotations: map[string]string{"summary": "a in us", "runbook_url": "https://r/a"}}
	b := andon.Alert{Name: "B", State: andon.Resolved, ResolvedAt: resolved}
	require.NoError(t, wh.Notify(context.Background(), []andon.Alert{a1, b, a2}))
	msgs := srv.got()
	require.Len(t, msgs, 2, "one message per alert name, in order of first sight")
	m := msgs[0]
	assert.Equal(t, "firing", m.Status, "firing while any alert of the group fires")
	assert.Equal(t, `{}:{alertname="A"}`, m.GroupKey)
	assert.Equal(t, map[string]string{"alertname": "A", "team": "pay"}, m.CommonLabels)
	assert.Equal(t, map[string]string{"runbook_url": "https://r/a"}, m.CommonAnnotations)
	require.Len(t, m.Alerts, 2)
	assert.Equal(t, "firing", m.Alerts[0].Status)
	assert.True(t, m.Alerts[0].EndsAt.IsZero())
	assert.Equal(t, "resolved", m.Alerts[1].Status)
	assert.Equal(t, resolved, m.Alerts[1].EndsAt.UTC())
	assert.Equal(t, "2", m.Alerts[1].Fingerprint)
	assert.Equal(t, "resolved", msgs[1].Status)
	assert.Equal(t, `{}:{alertname="B"}`, msgs[1].GroupKey)
	assert.NotNil(t, msgs[1].CommonLabels, "an empty object, not null")
	assert.NotNil(t, msgs[1].CommonAnnotations)
}

func TestWebhookStatuses(t *testing.T) {
	for _, tt := range []struct {
		code  int
		retry bool
	}{
		{http.StatusOK, false}, {http.StatusNoContent, false},
		{http.StatusInternalServerError, true}, {http.StatusBadGateway, true}, {http.StatusTooManyRequests, true},
		{http.StatusRequestTimeout, true}, {http.StatusTooEarly, true},
		{http.StatusBadRequest, false}, {http.StatusNotFound, false}, {http.StatusMultipleChoices, false},
	} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, "  answer  ", tt.code)
		}))
		wh, err := andon.NewWebhook(andon.WebhookOptions{URL: srv.URL + "/hook"})
		require.NoError(t, err)
		err = wh.Notify(context.Background(), []andon.Alert{{Name: "A", State: andon.Firing}})
		srv.Close()
		if tt.code/100 == 2 {
			assert.NoError(t, err, tt.code)
			continue
		}
		require.Error(t, err, tt.code)
		assert.Equal(t, fmt.Sprintf("andon: POST %s/…: %d %s: answer", srv.URL, tt.code, http.StatusText(tt.code)), err.Error())
		assert.Equal(t, !tt.retry, kanban.IsPermanent(err), "%d: permanent", tt.code)
	}

	// A receiver that cannot be reached is worth retrying.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	url := "http://" + l.Addr().String()
	require.NoError(t, l.Close())
	wh, err := andon.NewWebhook(andon.WebhookOptions{URL: url})
	require.NoError(t, err)
	err = wh.Notify(context.Background(), []andon.Alert{{Name: "A", State: andon.Firing}, {Name: "B", State: andon.Firing}})
	require.Error(t, err)
	assert.False(t, kanban.IsPermanent(err))
	assert.Equal(t, 2, strings.Count(err.Error(), "andon: POST "+url), "one error per group: %v", err)
}

func TestNotifierOptionsAreCopied(t *testing.T) {
	var got []http.Header
	var mu sync.Mutex
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		got = append(got, r.Header.Clone())
		mu.Unlock()
	}))
	defer srv.Close()
	h := http.Header{"Authorization": {"Bearer one"}}
	wh, err := andon.NewWebhook(andon.WebhookOptions{URL: srv.URL, Header: h})
	require.NoError(t, err)
	am, err := andon.NewAlertmanager(andon.AlertmanagerOptions{URL: "https://am.example", Header: h, Client: &http.Client{Transport: redirect{srv.URL}}})
	require.NoError(t, err)
	h.Set("Authorization", "Bearer two")
	ctx := context.Background()
	require.NoError(t, wh.Notify(ctx, []andon.Alert{{Name: "A"}}))
	require.NoError(t, am.Notify(ctx, []andon.Alert{{Name: "A"}}))
	require.Len(t, got, 2)
	assert.Equal(t, "Bearer one", got[0].Get("Authorization"), "the header as it was given")
	assert.Equal(t, "Bearer one", got[1].Get("Authorization"))
	assert.Equal(t, "application/json", got[1].Get("Content-Type"))

	for _, u := range []string{"https://x.example", "http://x.example:9093/"} {
		_, err := andon.NewWebhook(andon.WebhookOptions{URL: u})
		assert.NoError(t, err, u)
	}
	for u, msg := range map[string]string{
		"http://":     `andon: WebhookOptions.URL "http://" is not an http or https URL`,
		"http://[::1": `andon: WebhookOptions.URL is not a URL: missing ']' in host`,
		"x.example":   `andon: WebhookOptions.URL has no scheme; it must begin with http:// or https://`,
	} {
		_, err := andon.NewWebhook(andon.WebhookOptions{URL: u})
		assert.EqualError(t, err, msg, u)
	}
}

// redirect is a RoundTripper that sends every request to target, keeping
// the path.
type redirect struct{ target string }

func (r redirect) RoundTrip(req *http.Request) (*http.Response, error) {
	u, err := req.URL.Parse(r.target + req.URL.Path)
	if err != nil {
		return nil, err
	}
	out := req.Clone(req.Context())
	out.URL, out.Host, out.RequestURI = u, "", ""
	return http.DefaultTransport.RoundTrip(out)
}

// gateNotifier holds each Notify until the test lets it go.
type gateNotifier struct {
	entered chan struct{}
	release chan struct{}
	recorder
}

func (n *gateNotifier) Notify(ctx context.Context, alerts []andon.Alert) error {
	n.entered <- struct{}{}
	<-n.release
	return n.recorder.Notify(ctx, alerts)
}

// Flush waits for a batch that is being sent, not only for the queue to
// empty: the worker takes the batch off the queue before it sends it.
func TestFlushWaitsForTheBatchInFlight(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := &gateNotifier{entered: make(chan struct{}), release: make(chan struct{})}
		cond := newSwitch()
		e := newEvaluator(t, andon.EvaluatorOptions{Notifiers: []andon.Notifier{n},
			Rules: []andon.Rule{{Name: "A", Severity: andon.Page, Condition: cond}}})
		ctx := context.Background()
		cond.Set(true)
		e.Evaluate(ctx)
		<-n.entered // the batch is off the queue and in Notify

		flushed := make(chan error, 1)
		go func() { flushed <- e.Flush(ctx) }()
		synctest.Wait()
		select {
		case err := <-flushed:
			t.Fatalf("Flush returned (%v) while the batch was being sent", err)
		default:
		}
		close(n.release)
		require.NoError(t, <-flushed)
		assert.Equal(t, []string{"A firing"}, n.events())
	})
}

func TestDroppedFiringAlertIsSentAtANextEvaluation(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		release := make(chan struct{})
		rec := &recorder{}
		slow := notifierFunc(func(ctx context.Context, a []andon.Alert) error {
			select {
			case <-release:
			case <-ctx.Done():
			}
			return rec.Notify(ctx, a)
		})
		conds := []*switchCond{newSwitch(), newSwitch(), newSwitch()}
		var rules []andon.Rule
		for i, c := range conds {
			rules = append(rules, andon.Rule{Name: "R" + string(rune('a'+i)), Severity: andon.Page, Condition: c})
		}
		e := newEvaluator(t, andon.EvaluatorOptions{Notifiers: []andon.Notifier{slow}, Logger: discardLogger(),
			Notify: andon.NotifyOptions{QueueSize: 1, Timeout: time.Hour}, Rules: rules})
		ctx := context.Background()

		conds[0].Set(true)
		e.EvaluateAt(ctx, t0) // Ra goes to the worker, which blocks
		synctest.Wait()
		conds[1].Set(true)
		conds[2].Set(true)
		e.EvaluateAt(ctx, t0.Add(time.Minute)) // Rb fills the queue, Rc is dropped
		require.EqualValues(t, 1, e.NotifierStats()[0].Dropped)
		close(release)
		require.NoError(t, e.Flush(ctx))

		evaluateAndFlush(t, e, 2*time.Minute) // Rc still fires, and there is room
		assert.Equal(t, []string{"Ra firing", "Rb firing", "Rc firing"}, rec.events())

		for _, c := range conds {
			c.Set(false)
		}
		// One resolution fits the queue at each evaluation; the others
		// wait for the next.
		for i := 3; i < 6; i++ {
			evaluateAndFlush(t, e, time.Duration(i)*time.Minute)
		}
		assert.ElementsMatch(t, []string{"Ra firing", "Rb firing", "Rc firing", "Ra resolved", "Rb resolved", "Rc resolved"}, rec.events())
		assert.EqualValues(t, 6, e.NotifierStats()[0].Sent)
	})
}

// Once nothing of the evaluator runs, Shutdown returns nil whatever its
// context, as documented: even one already cancelled.
func TestShutdownAgainWithAnEndedContext(t *testing.T) {
	ended, cancel := context.WithCancel(context.Background())
	cancel()
	for range 50 {
		e, err := andon.NewEvaluator(andon.EvaluatorOptions{Notifiers: []andon.Notifier{&recorder{}, &recorder{}}})
		require.NoError(t, err)
		require.NoError(t, e.Shutdown(context.Background()))
		require.NoError(t, e.Shutdown(ended), "nothing of the evaluator runs")
	}
}

// While a receiver is down, a full queue drops the notifications of many
// alerts at each evaluation: they are counted one by one and logged in
// one line per evaluation, not one each.
func TestDropsAreLoggedOncePerEvaluation(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		release := make(chan struct{})
		blocked := notifierFunc(func(ctx context.Context, a []andon.Alert) error {
			select {
			case <-release:
			case <-ctx.Done():
			}
			return nil
		})
		var buf bytes.Buffer
		var mu sync.Mutex
		logger := slog.New(slog.NewJSONHandler(&lockedWriter{w: &buf, mu: &mu}, nil))
		var rules []andon.Rule
		var conds []*switchCond
		for i := range 10 {
			c := newSwitch()
			conds = append(conds, c)
			rules = append(rules, andon.Rule{Name: fmt.Sprintf("R%d", i), Severity: andon.Page, Condition: c})
		}
		e := newEvaluator(t, andon.EvaluatorOptions{Notifiers: []andon.Notifier{blocked}, Logger: logger,
			Notify: andon.NotifyOptions{QueueSize: 1, Timeout: time.Hour}, Rules: rules})
		ctx := context.Background()
		conds[0].Set(true)
		e.EvaluateAt(ctx, t0) // R0 goes to the worker, which blocks
		synctest.Wait()
		for _, c := range conds {
			c.Set(true)
		}
		e.EvaluateAt(ctx, t0.Add(time.Minute)) // R1 fills the queue; 8 are dropped
		e.EvaluateAt(ctx, t0.Add(2*time.Minute))
		require.EqualValues(t, 16, e.NotifierStats()[0].Dropped)
		close(release)
		require.NoError(t, e.Flush(ctx))

		mu.Lock()
		defer mu.Unlock()
		var drops []map[string]any
		for line := range strings.Lines(buf.String()) {
			var m map[string]any
			require.NoError(t, json.Unmarshal([]byte(line), &m))
			if strings.Contains(m["msg"].(string), "dropped") {
				drops = append(drops, m)
			}
		}
		require.Len(t, drops, 2, "one line per evaluation")
		for _, m := range drops {
			assert.EqualValues(t, 8, m["count"])
			assert.EqualValues(t, 1, m["queue_size"])
		}
	})
}

type lockedWriter struct {
	w  *bytes.Buffer
	mu *sync.Mutex
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// A receiver that was down for every attempt of a batch hears of the
// alerts at a later evaluation, as a dropped notification does: a firing
// alert while it still fires, a resolution while the alert stays
// resolved. A permanent error is not offered again.
func TestGivenUpNotificationIsOfferedAgain(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		flaky := &flakyNotifier{}
		rec, down := &flaky.recorder, &flaky.down
		bad := &recorder{}
		var badCalls atomic.Int32
		permanent := notifierFunc(func(ctx context.Context, a []andon.Alert) error {
			badCalls.Add(1)
			_ = bad.Notify(ctx, a)
			return kanban.Permanent(errors.New("400 Bad Request"))
		})
		cond := newSwitch()
		e := newEvaluator(t, andon.EvaluatorOptions{Notifiers: []andon.Notifier{flaky, permanent}, Logger: discardLogger(),
			Notify: andon.NotifyOptions{MaxAttempts: 2, Backoff: kanban.Exponential{Initial: time.Second, Jitter: -1}},
			Rules:  []andon.Rule{{Name: "R", Severity: andon.Page, Condition: cond}}})

		down.Store(true)
		cond.Set(true)
		evaluateAndFlush(t, e, 0) // fires; every attempt fails
		require.EqualValues(t, 1, e.NotifierStats()[0].Failed)
		down.Store(false)
		evaluateAndFlush(t, e, time.Minute) // still firing: sent now
		assert.Equal(t, []string{"R firing"}, rec.events())

		down.Store(true)
		cond.Set(false)
		evaluateAndFlush(t, e, 2*time.Minute) // resolves; every attempt fails
		require.EqualValues(t, 2, e.NotifierStats()[0].Failed)
		down.Store(false)
		evaluateAndFlush(t, e, 3*time.Minute) // still resolved: sent now
		evaluateAndFlush(t, e, 4*time.Minute) // and only once
		assert.Equal(t, []string{"R firing", "R resolved"}, rec.events())
		assert.EqualValues(t, 2, e.NotifierStats()[0].Sent)

		// A permanent error is given up for good, and the receiver, which
		// refused the alert firing, is not told of its resolution.
		assert.Equal(t, []string{"R firing"}, bad.events(), "a permanent error is given up for good")
		assert.EqualValues(t, 1, badCalls.Load())
	})
}

// flakyNotifier records what it was told and fails while down is set, as
// a receiver that cannot be reached.
type flakyNotifier struct {
	recorder
	down atomic.Bool
}

func (n *flakyNotifier) Notify(ctx context.Context, alerts []andon.Alert) error {
	if n.down.Load() {
		return errors.New("connection refused")
	}
	return n.recorder.Notify(ctx, alerts)
}

// flakyRefresher is a flakyNotifier that is a Refresher, as an
// Alertmanager that cannot be reached.
type flakyRefresher struct{ flakyNotifier }

func (*flakyRefresher) Refreshes() bool { return true }

func TestRefresherHearsTheResolutionAfterAFailedResend(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := &flakyRefresher{}
		cond := newSwitch()
		e := newEvaluator(t, andon.EvaluatorOptions{Notifiers: []andon.Notifier{n}, Logger: discardLogger(),
			Interval: time.Minute, Notify: andon.NotifyOptions{MaxAttempts: 1, ResendInterval: time.Minute},
			Rules: []andon.Rule{{Name: "R", Severity: andon.Page, Condition: cond}}})

		cond.Set(true)
		evaluateAndFlush(t, e, 0) // fires: delivered
		n.down.Store(true)
		evaluateAndFlush(t, e, time.Minute) // the re-send fails and is given up
		require.EqualValues(t, 1, e.NotifierStats()[0].Failed)
		n.down.Store(false)

		// The receiver still holds the alert firing, from the first send:
		// it must hear of the resolution, or it keeps the alert until its
		// endsAt.
		cond.Set(false)
		evaluateAndFlush(t, e, 90*time.Second)
		assert.Equal(t, []string{"R firing", "R resolved"}, n.events())
	})
}

func TestGivenUpResolutionIsSentOnceTheAlertIsPendingAgain(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		flaky := &flakyNotifier{}
		rec, down := &flaky.recorder, &flaky.down
		cond := newSwitch()
		e := newEvaluator(t, andon.EvaluatorOptions{Notifiers: []andon.Notifier{flaky}, Logger: discardLogger(),
			Notify: andon.NotifyOptions{MaxAttempts: 1},
			Rules:  []andon.Rule{{Name: "R", Severity: andon.Page, For: time.Minute, Condition: cond}}})
		step := func(at time.Duration, active bool, want andon.AlertState) {
			t.Helper()
			cond.Set(active)
			evaluateAndFlush(t, e, at)
			a, _ := e.Alert("R")
			require.Equal(t, want, a.State)
		}

		step(0, true, andon.Pending)
		step(time.Minute, true, andon.Firing) // delivered
		down.Store(true)
		step(2*time.Minute, false, andon.Resolved) // given up
		require.EqualValues(t, 1, e.NotifierStats()[0].Failed)
		down.Store(false)
		// The condition holds again, not long enough to fire, and stops:
		// the receiver, which holds the alert firing, must still hear of
		// its resolution.
		step(3*time.Minute, true, andon.Pending)
		step(4*time.Minute, false, andon.Inactive)
		step(5*time.Minute, false, andon.Inactive)
		assert.Equal(t, []string{"R firing", "R resolved"}, rec.events())
		if told := rec.told(); len(told) == 2 {
			assert.Equal(t, t0.Add(2*time.Minute), told[1].ResolvedAt, "the resolution as it was made")
		}
	})
}

func TestDroppedResolutionIsSentOnceTheAlertIsPendingAgain(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rec := &recorder{}
		hold := make(chan struct{})
		held := notifierFunc(func(ctx context.Context, a []andon.Alert) error {
			<-hold
			return rec.Notify(ctx, a)
		})
		e, cond := dropResolutionBehindAHeldSend(t, held)
		ctx := context.Background()
		cond.Set(false)
		e.EvaluateAt(ctx, t0.Add(4*time.Minute)) // and inactive
		close(hold)
		require.NoError(t, e.Flush(ctx))
		evaluateAndFlush(t, e, 5*time.Minute)
		evaluateAndFlush(t, e, 6*time.Minute)
		assert.Equal(t, []string{"A firing", "S firing", "A resolved"}, rec.events())
	})
}

// dropResolutionBehindAHeldSend makes an evaluator with n, whose first
// call the caller holds, as its notifier, with a queue of one, and leaves
// its alert A pending again after a resolution that was dropped: A fires
// and n takes it (at t0+1m), S fires and fills the queue, A resolves
// (dropped) and is pending again at t0+3m. It returns the evaluator and
// A's condition.
func dropResolutionBehindAHeldSend(t *testing.T, n andon.Notifier) (*andon.Evaluator, *switchCond) {
	t.Helper()
	cond, other := newSwitch(), newSwitch()
	e := newEvaluator(t, andon.EvaluatorOptions{Notifiers: []andon.Notifier{n}, Logger: discardLogger(),
		Notify: andon.NotifyOptions{QueueSize: 1},
		Rules: []andon.Rule{{Name: "A", Severity: andon.Page, For: time.Minute, Condition: cond},
			{Name: "S", Severity: andon.Page, Condition: other}}})
	ctx := context.Background()

	cond.Set(true)
	e.EvaluateAt(ctx, t0)
	e.EvaluateAt(ctx, t0.Add(time.Minute)) // A fires; the worker holds the send
	synctest.Wait()
	other.Set(true)
	e.EvaluateAt(ctx, t0.Add(90*time.Second)) // S fires and fills the queue
	cond.Set(false)
	e.EvaluateAt(ctx, t0.Add(2*time.Minute)) // A's resolution is dropped
	require.EqualValues(t, 1, e.NotifierStats()[0].Dropped)
	cond.Set(true)
	e.EvaluateAt(ctx, t0.Add(3*time.Minute)) // A pending again
	a, _ := e.Alert("A")
	require.Equal(t, andon.Pending, a.State)
	return e, cond
}

// A Backoff that panics gives the batch up, as the last attempt would,
// with the panic and its stack logged; the worker goes on, and the alert
// is offered again at the next evaluation.
func TestBackoffPanicGivesTheBatchUp(t *testing.T) {
	flaky := &flakyNotifier{}
	flaky.down.Store(true)
	var delays atomic.Int32
	backoff := kanban.BackoffFunc(func(int) time.Duration {
		delays.Add(1)
		panic("backoff bug")
	})
	cond := newSwitch()
	var buf bytes.Buffer
	var mu sync.Mutex
	e := newEvaluator(t, andon.EvaluatorOptions{Notifiers: []andon.Notifier{flaky}, Notify: andon.NotifyOptions{Backoff: backoff},
		Logger: slog.New(slog.NewTextHandler(&lockedWriter{w: &buf, mu: &mu}, nil)),
		Rules:  []andon.Rule{{Name: "R", Severity: andon.Page, Condition: cond}}})
	cond.Set(true)
	evaluateAndFlush(t, e, 0)
	assert.EqualValues(t, 1, delays.Load())
	st := e.NotifierStats()[0]
	assert.EqualValues(t, 1, st.Failed, "the batch is given up")
	assert.EqualValues(t, 0, st.Retries)
	mu.Lock()
	out := buf.String()
	mu.Unlock()
	assert.Contains(t, out, "andon: panic in backoff of notifier notifier 0: backoff bug")
	assert.Contains(t, out, "connection refused", "the failure that asked for a retry is logged too")
	assert.Contains(t, out, "notifier_test.go", "the stack is where it panicked")

	flaky.down.Store(false)
	evaluateAndFlush(t, e, time.Minute) // still firing: offered again
	assert.Equal(t, []string{"R firing"}, flaky.events())
}

// slowRefresher is a Refresher whose first call fails with a Retry-After,
// as an Alertmanager that answers 503 does; it records each call's alerts.
type slowRefresher struct {
	mu    sync.Mutex
	calls [][]andon.Alert
}

func (n *slowRefresher) Notify(_ context.Context, alerts []andon.Alert) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.calls = append(n.calls, alerts)
	if len(n.calls) == 1 {
		return &hintedError{after: 5 * time.Minute}
	}
	return nil
}

func (*slowRefresher) Refreshes() bool { return true }

// A retry does not send a firing alert that a newer re-send, queued while
// the retry waited, replaces: its ValidUntil, Alertmanager's endsAt, may
// have passed by then, and Alertmanager would resolve the alert while it
// still fires.
func TestRetryLeavesAFiringAlertToTheNewerReSend(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := &slowRefresher{}
		cond := newSwitch()
		e := newEvaluator(t, andon.EvaluatorOptions{Notifiers: []andon.Notifier{n}, Logger: discardLogger(),
			Notify: andon.NotifyOptions{ResendInterval: time.Minute},
			Rules:  []andon.Rule{{Name: "R", Severity: andon.Page, Condition: cond}}})
		ctx := context.Background()
		cond.Set(true)
		e.EvaluateAt(ctx, t0) // fires; the send is answered "retry in 5m"
		synctest.Wait()
		evaluateAndFlush(t, e, 2*time.Minute) // a re-send is queued

		n.mu.Lock()
		defer n.mu.Unlock()
		var validUntil []time.Time
		for _, c := range n.calls[1:] {
			for _, a := range c {
				validUntil = append(validUntil, a.ValidUntil)
			}
		}
		assert.Equal(t, []time.Time{t0.Add(6 * time.Minute)}, validUntil, "only the newer re-send is delivered")
		st := e.NotifierStats()[0]
		assert.EqualValues(t, 1, st.Sent)
		assert.EqualValues(t, 0, st.Failed)
	})
}

// A firing alert given up while its resolution waits in the queue takes
// the resolution with it: the receiver never heard the alert fire.
func TestResolutionOfAFiringAlertGivenUpInFlightIsNotSent(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rec := &recorder{}
		hold := make(chan struct{})
		n := firstCallFails(rec, hold, errors.New("connection refused"))
		cond := newSwitch()
		e := newEvaluator(t, andon.EvaluatorOptions{Notifiers: []andon.Notifier{n}, Logger: discardLogger(),
			Notify: andon.NotifyOptions{MaxAttempts: 1},
			Rules:  []andon.Rule{{Name: "R", Severity: andon.Page, Condition: cond}}})
		ctx := context.Background()

		cond.Set(true)
		e.EvaluateAt(ctx, t0) // fires; the worker holds the send
		synctest.Wait()
		cond.Set(false)
		e.EvaluateAt(ctx, t0.Add(time.Minute)) // resolves: queued behind it
		close(hold)                            // the firing alert is given up
		require.NoError(t, e.Flush(ctx))
		for i := 2; i <= 4; i++ {
			evaluateAndFlush(t, e, time.Duration(i)*time.Minute)
		}
		assert.Empty(t, rec.events(), "no resolution for an alert the receiver never heard fire")
		st := e.NotifierStats()[0]
		assert.EqualValues(t, 1, st.Failed)
		assert.EqualValues(t, 0, st.Sent)
	})
}

// A batch that holds a firing alert and its resolution, given up, leaves
// no resolution owed: the receiver heard of neither.
func TestFiringAndResolutionGivenUpTogetherOweNothing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rec := &recorder{}
		n, hold := holdThenRefuse(rec, 1, nil)
		e, cond, other := twoRules(t, n, andon.NotifyOptions{MaxAttempts: 1}, "R")
		ctx := context.Background()

		other.Set(true)
		e.EvaluateAt(ctx, t0) // S fires; the worker holds its send
		synctest.Wait()
		cond.Set(true)
		e.EvaluateAt(ctx, t0.Add(time.Minute)) // R fires
		cond.Set(false)
		e.EvaluateAt(ctx, t0.Add(2*time.Minute)) // and resolves, in the same batch
		close(hold)
		require.NoError(t, e.Flush(ctx)) // that batch is given up
		require.EqualValues(t, 2, e.NotifierStats()[0].Failed)
		for i := 3; i <= 5; i++ {
			evaluateAndFlush(t, e, time.Duration(i)*time.Minute)
		}
		assert.Equal(t, []string{"S firing"}, rec.events())
		assert.EqualValues(t, 2, e.NotifierStats()[0].Failed)
	})
}

// A Refresher whose first send of a firing alert is given up never held
// the alert: it does not hear of its resolution, and, while it cannot be
// reached, no resolution is kept and retried at every evaluation.
func TestRefresherThatNeverHeardTheAlertGetsNoResolution(t *testing.T) {
	for _, recovers := range []bool{true, false} {
		t.Run(fmt.Sprint("recovers=", recovers), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				n := &flakyRefresher{}
				cond := newSwitch()
				e := newEvaluator(t, andon.EvaluatorOptions{Notifiers: []andon.Notifier{n}, Logger: discardLogger(),
					Interval: time.Minute, Notify: andon.NotifyOptions{MaxAttempts: 1, ResendInterval: time.Minute},
					Rules: []andon.Rule{{Name: "R", Severity: andon.Page, Condition: cond}}})

				n.down.Store(true)
				cond.Set(true)
				evaluateAndFlush(t, e, 0) // fires: given up
				n.down.Store(!recovers)
				cond.Set(false)
				for i := 1; i <= 4; i++ {
					evaluateAndFlush(t, e, time.Duration(i)*time.Minute)
				}
				assert.Empty(t, n.events())
				st := e.NotifierStats()[0]
				assert.EqualValues(t, 1, st.Failed)
				assert.EqualValues(t, 0, st.Sent)
			})
		})
	}
}

// A receiver that refused a firing alert for good (400 Bad Request) never
// held it: it does not hear of the resolution either.
func TestRefusedFiringAlertGetsNoResolution(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rec := &recorder{}
		var calls atomic.Int32
		n := notifierFunc(func(ctx context.Context, a []andon.Alert) error {
			if calls.Add(1) == 1 {
				return kanban.Permanent(errors.New("400 Bad Request"))
			}
			return rec.Notify(ctx, a)
		})
		cond := newSwitch()
		e := newEvaluator(t, andon.EvaluatorOptions{Notifiers: []andon.Notifier{n}, Logger: discardLogger(),
			Rules: []andon.Rule{{Name: "R", Severity: andon.Page, Condition: cond}}})

		cond.Set(true)
		evaluateAndFlush(t, e, 0)           // refused
		evaluateAndFlush(t, e, time.Minute) // not offered again
		cond.Set(false)
		evaluateAndFlush(t, e, 2*time.Minute)
		assert.Empty(t, rec.events())
		assert.EqualValues(t, 1, calls.Load())

		cond.Set(true) // fires again: a new alert, sent
		evaluateAndFlush(t, e, 3*time.Minute)
		cond.Set(false)
		evaluateAndFlush(t, e, 4*time.Minute)
		assert.Equal(t, []string{"R firing", "R resolved"}, rec.events())
	})
}

// A Webhook whose receiver refuses one alert name for good and takes the
// other is told of the resolution of the one it took only.
func TestWebhookRefusedNameGetsNoResolution(t *testing.T) {
	var mu sync.Mutex
	var got []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var m andon.WebhookMessage
		if err := json.NewDecoder(r.Body).Decode(&m); err != nil {
			http.Error(w, "bad body", http.StatusBadRequest)
			return
		}
		name := m.GroupLabels["alertname"]
		if name == "A" && m.Status == "firing" {
			http.Error(w, "refused", http.StatusBadRequest)
			return
		}
		mu.Lock()
		got = append(got, name+" "+m.Status)
		mu.Unlock()
	}))
	t.Cleanup(srv.Close)
	wh, err := andon.NewWebhook(andon.WebhookOptions{URL: srv.URL})
	require.NoError(t, err)
	cond := newSwitch()
	e := newEvaluator(t, andon.EvaluatorOptions{Notifiers: []andon.Notifier{wh}, Notify: noWait, Logger: discardLogger(),
		Rules: []andon.Rule{{Name: "A", Severity: andon.Page, Condition: cond}, {Name: "B", Severity: andon.Page, Condition: cond}}})
	cond.Set(true)
	evaluateAndFlush(t, e, 0)
	cond.Set(false)
	evaluateAndFlush(t, e, time.Minute)
	mu.Lock()
	defer mu.Unlock()
	assert.Equal(t, []string{"B firing", "B resolved"}, got)
	st := e.NotifierStats()[0]
	assert.EqualValues(t, 2, st.Sent)
	assert.EqualValues(t, 1, st.Failed)
}

// A Refresher that holds an alert firing, from an earlier send, still
// hears of its resolution after a re-send it refused for good.
func TestRefresherHoldingTheAlertHearsTheResolutionAfterARefusedResend(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := &flakyRefresher{}
		var refuse atomic.Bool
		r := &refusingRefresher{flakyRefresher: n, refuse: &refuse}
		cond := newSwitch()
		e := newEvaluator(t, andon.EvaluatorOptions{Notifiers: []andon.Notifier{r}, Logger: discardLogger(),
			Interval: time.Minute, Notify: andon.NotifyOptions{ResendInterval: time.Minute},
			Rules: []andon.Rule{{Name: "R", Severity: andon.Page, Condition: cond}}})
		cond.Set(true)
		evaluateAndFlush(t, e, 0) // delivered
		refuse.Store(true)
		evaluateAndFlush(t, e, time.Minute) // the re-send is refused
		require.EqualValues(t, 1, e.NotifierStats()[0].Failed)
		refuse.Store(false)
		cond.Set(false)
		evaluateAndFlush(t, e, 2*time.Minute)
		assert.Equal(t, []string{"R firing", "R resolved"}, n.events())
	})
}

// refusingRefresher refuses every notification for good while refuse is
// set.
type refusingRefresher struct {
	*flakyRefresher
	refuse *atomic.Bool
}

func (n *refusingRefresher) Notify(ctx context.Context, alerts []andon.Alert) error {
	if n.refuse.Load() {
		return kanban.Permanent(errors.New("400 Bad Request"))
	}
	return n.flakyRefresher.Notify(ctx, alerts)
}

// A firing alert given up in flight, with the alert fired again and
// queued since, leaves the resolution owed for that newer firing alert:
// the receiver takes the newer one, so it must hear of its resolution,
// even once the alert is pending again instead of resolved.
func TestGivenUpFiringAlertKeepsTheResolutionOwedForTheNewerOne(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rec := &recorder{}
		hold := make(chan struct{})
		n := firstCallFails(rec, hold, errors.New("connection refused"))
		cond := newSwitch()
		e := newEvaluator(t, andon.EvaluatorOptions{Notifiers: []andon.Notifier{n}, Logger: discardLogger(),
			Notify: andon.NotifyOptions{MaxAttempts: 1, QueueSize: 2},
			Rules:  []andon.Rule{{Name: "R", Severity: andon.Page, For: time.Minute, Condition: cond}}})
		ctx := context.Background()
		step := func(at time.Duration, active bool, want andon.AlertState) {
			t.Helper()
			cond.Set(active)
			e.EvaluateAt(ctx, t0.Add(at))
			synctest.Wait()
			a, _ := e.Alert("R")
			require.Equal(t, want, a.State)
		}

		step(0, true, andon.Pending)
		step(time.Minute, true, andon.Firing)      // the worker holds the send
		step(2*time.Minute, false, andon.Resolved) // queued
		step(3*time.Minute, true, andon.Pending)
		step(4*time.Minute, true, andon.Firing)    // fires again: queued
		step(5*time.Minute, false, andon.Resolved) // the queue is full: dropped, owed
		require.EqualValues(t, 1, e.NotifierStats()[0].Dropped)
		close(hold) // the first firing alert is given up
		require.NoError(t, e.Flush(ctx))
		require.Equal(t, []string{"R firing"}, rec.events(), "the newer firing alert is delivered")

		step(6*time.Minute, true, andon.Pending)
		require.NoError(t, e.Flush(ctx))
		step(7*time.Minute, false, andon.Inactive)
		require.NoError(t, e.Flush(ctx))
		assert.Equal(t, []string{"R firing", "R resolved"}, rec.events())
		if told := rec.told(); len(told) == 2 {
			assert.Equal(t, t0.Add(4*time.Minute), told[0].FiredAt)
			assert.Equal(t, t0.Add(5*time.Minute), told[1].ResolvedAt)
		}
	})
}

// A retried batch that holds a firing alert and its resolution keeps the
// firing alert, even when the alert fired again and was queued during the
// wait: the receiver, which never took it firing, is not sent the
// resolution alone. A notifier that reorders the batch it is given (sorts
// it, say) changes none of that: the batch is its own.
func TestRetryKeepsTheFiringAlertItsResolutionFollows(t *testing.T) {
	for _, reorder := range []bool{false, true} {
		t.Run(fmt.Sprintf("reorder=%v", reorder), func(t *testing.T) { testRetryKeepsTheFiringAlert(t, reorder) })
	}
}

func testRetryKeepsTheFiringAlert(t *testing.T, reorder bool) {
	synctest.Test(t, func(t *testing.T) {
		rec := &recorder{}
		var refused func([]andon.Alert)
		if reorder {
			refused = func(a []andon.Alert) { slices.Reverse(a) }
		}
		n, hold := holdThenRefuse(rec, 1, refused)
		e, cond, other := twoRules(t, n, andon.NotifyOptions{MaxAttempts: 2, Backoff: kanban.BackoffFunc(func(int) time.Duration { return time.Minute })}, "A")
		ctx := context.Background()

		other.Set(true)
		e.EvaluateAt(ctx, t0) // S fires; the worker holds its send
		synctest.Wait()
		cond.Set(true)
		e.EvaluateAt(ctx, t0.Add(time.Minute)) // A fires
		cond.Set(false)
		e.EvaluateAt(ctx, t0.Add(2*time.Minute)) // and resolves, in the same batch
		close(hold)
		synctest.Wait() // that batch failed and waits for its retry
		cond.Set(true)
		evaluateAndFlush(t, e, 3*time.Minute) // A fires again: queued
		assert.Equal(t, []string{"S firing", "A firing", "A resolved", "A firing"}, rec.events())
	})
}

// A firing alert refused for good is not offered again while it fires;
// the alert firing again later, after it resolved and was pending while
// the refused send was in flight, is a new alert, and is sent.
func TestAlertFiringAgainAfterARefusedOneIsSent(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rec := &recorder{}
		hold := make(chan struct{})
		e, _ := dropResolutionBehindAHeldSend(t, firstCallFails(rec, hold, kanban.Permanent(errors.New("400 Bad Request"))))
		ctx := context.Background()
		close(hold) // A's firing alert is refused
		require.NoError(t, e.Flush(ctx))
		evaluateAndFlush(t, e, 4*time.Minute) // A fires again
		a, _ := e.Alert("A")
		require.Equal(t, andon.Firing, a.State)
		assert.Equal(t, []string{"S firing", "A firing"}, rec.events())
	})
}

// A Webhook whose receiver missed a resolution (every attempt was
// answered 503) hears of the alert firing again, with its new startsAt:
// it still holds the old firing alert, and the resolution owed is out of
// date once the alert fires again.
func TestWebhookHearsTheAlertFiringAgainAfterAGivenUpResolution(t *testing.T) {
	var down atomic.Bool
	var mu sync.Mutex
	var got []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if down.Load() {
			http.Error(w, "try later", http.StatusServiceUnavailable)
			return
		}
		var m andon.WebhookMessage
		if err := json.NewDecoder(r.Body).Decode(&m); err != nil {
			http.Error(w, "bad body", http.StatusBadRequest)
			return
		}
		mu.Lock()
		defer mu.Unlock()
		for _, a := range m.Alerts {
			got = append(got, fmt.Sprintf("%s %s %v", a.Status, a.Labels["alertname"], a.StartsAt.UTC().Sub(t0)))
		}
	}))
	t.Cleanup(srv.Close)
	wh, err := andon.NewWebhook(andon.WebhookOptions{URL: srv.URL})
	require.NoError(t, err)
	cond := newSwitch()
	opts := noWait
	opts.MaxAttempts = 2
	e := newEvaluator(t, andon.EvaluatorOptions{Notifiers: []andon.Notifier{wh}, Notify: opts, Logger: discardLogger(),
		Rules: []andon.Rule{{Name: "R", Severity: andon.Page, Condition: cond}}})

	cond.Set(true)
	evaluateAndFlush(t, e, 0) // fires: delivered
	down.Store(true)
	cond.Set(false)
	evaluateAndFlush(t, e, time.Minute) // resolves: given up
	require.EqualValues(t, 1, e.NotifierStats()[0].Failed)
	down.Store(false)
	cond.Set(true)
	evaluateAndFlush(t, e, 2*time.Minute) // fires again, before the resolution went out
	evaluateAndFlush(t, e, 3*time.Minute) // and once only
	cond.Set(false)
	evaluateAndFlush(t, e, 4*time.Minute)
	mu.Lock()
	defer mu.Unlock()
	assert.Equal(t, []string{"firing R 0s", "firing R 2m0s", "resolved R 2m0s"}, got)
	st := e.NotifierStats()[0]
	assert.EqualValues(t, 3, st.Sent)
	assert.EqualValues(t, 1, st.Failed)
}

// A receiver whose resolution was dropped from a full queue hears of the
// alert firing again, as a new alert, and then of its resolution.
func TestAlertFiringAgainAfterADroppedResolutionIsSent(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rec := &recorder{}
		hold := make(chan struct{})
		held := notifierFunc(func(ctx context.Context, a []andon.Alert) error {
			<-hold
			return rec.Notify(ctx, a)
		})
		e, cond := dropResolutionBehindAHeldSend(t, held)
		ctx := context.Background()
		close(hold)
		require.NoError(t, e.Flush(ctx))
		evaluateAndFlush(t, e, 4*time.Minute) // A fires again
		a, _ := e.Alert("A")
		require.Equal(t, andon.Firing, a.State)
		evaluateAndFlush(t, e, 5*time.Minute)
		cond.Set(false)
		evaluateAndFlush(t, e, 6*time.Minute)
		assert.Equal(t, []string{"A firing", "S firing", "A firing", "A resolved"}, rec.events())
		if told := rec.told(); len(told) == 4 {
			assert.Equal(t, t0.Add(4*time.Minute), told[2].FiredAt, "the new firing alert")
		}
	})
}

// A batch that holds an alert's resolution and its firing again, given
// up, while the receiver holds the alert firing from before: the
// receiver missed both, and hears of the newer firing alert at the next
// evaluation.
func TestFiringAgainGivenUpWithItsResolutionIsOfferedAgain(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rec := &recorder{}
		n, hold := holdThenRefuse(rec, 2, nil)
		e, cond, other := twoRules(t, n, andon.NotifyOptions{MaxAttempts: 1}, "R")
		ctx := context.Background()

		cond.Set(true)
		evaluateAndFlush(t, e, 0) // R fires: delivered
		other.Set(true)
		e.EvaluateAt(ctx, t0.Add(time.Minute)) // S fires; the worker holds its send
		synctest.Wait()
		cond.Set(false)
		e.EvaluateAt(ctx, t0.Add(2*time.Minute)) // R resolves
		cond.Set(true)
		e.EvaluateAt(ctx, t0.Add(3*time.Minute)) // and fires again, in the same batch
		close(hold)
		require.NoError(t, e.Flush(ctx)) // that batch is given up
		require.EqualValues(t, 2, e.NotifierStats()[0].Failed)
		evaluateAndFlush(t, e, 4*time.Minute)
		evaluateAndFlush(t, e, 5*time.Minute)
		assert.Equal(t, []string{"R firing", "S firing", "R firing"}, rec.events())
		if told := rec.told(); len(told) == 3 {
			assert.Equal(t, t0.Add(3*time.Minute), told[2].FiredAt, "the newer firing alert")
		}
	})
}

// brokenNotifier is a notifier whose Name or Refreshes method panics.
type brokenNotifier struct {
	recorder
	brokenName, brokenRefreshes bool
}

func (n *brokenNotifier) Name() string {
	if n.brokenName {
		panic("name broken")
	}
	return "broken"
}

func (n *brokenNotifier) Refreshes() bool {
	if n.brokenRefreshes {
		panic("refreshes broken")
	}
	return false
}

// TestNotifierMethodPanicAtConstruction: NewEvaluator, which reads each
// notifier's Name and Refreshes, returns an error naming the notifier and
// the method when one panics, and starts no worker; it panicked.
func TestNotifierMethodPanicAtConstruction(t *testing.T) {
	for _, tt := range []struct {
		n    *brokenNotifier
		want string
	}{
		{&brokenNotifier{brokenName: true}, "andon: the Name method of EvaluatorOptions.Notifiers[1] (*andon_test.brokenNotifier) panicked: name broken"},
		{&brokenNotifier{brokenRefreshes: true}, "andon: the Refreshes method of EvaluatorOptions.Notifiers[1] (*andon_test.brokenNotifier) panicked: refreshes broken"},
	} {
		var err error
		require.NotPanics(t, func() {
			_, err = andon.NewEvaluator(andon.EvaluatorOptions{Notifiers: []andon.Notifier{&recorder{}, tt.n}})
		})
		require.EqualError(t, err, tt.want)
	}
}

// holdThenRefuse is a notifier that hands its calls on to rec but for
// two: call held waits until hold is closed before it does, and the call
// after it is refused ("connection refused"), once refused, if not nil,
// has seen its alerts.
func holdThenRefuse(rec *recorder, held int32, refused func([]andon.Alert)) (n andon.Notifier, hold chan struct{}) {
	hold = make(chan struct{})
	var calls atomic.Int32
	return notifierFunc(func(ctx context.Context, a []andon.Alert) error {
		switch calls.Add(1) {
		case held:
			<-hold
		case held + 1:
			if refused != nil {
				refused(a)
			}
			return errors.New("connection refused")
		}
		return rec.Notify(ctx, a)
	}), hold
}

// twoRules is an evaluator that notifies n under opts of two rules, the
// one named first and "S", whose conditions cond and other switch.
func twoRules(t *testing.T, n andon.Notifier, opts andon.NotifyOptions, first string) (e *andon.Evaluator, cond, other *switchCond) {
	t.Helper()
	cond, other = newSwitch(), newSwitch()
	e = newEvaluator(t, andon.EvaluatorOptions{Notifiers: []andon.Notifier{n}, Logger: discardLogger(), Notify: opts,
		Rules: []andon.Rule{{Name: first, Severity: andon.Page, Condition: cond},
			{Name: "S", Severity: andon.Page, Condition: other}}})
	return e, cond, other
}

// A receiver that asked, with Retry-After, to be left alone for a while
// is not asked again sooner because the batch was given up: the
// notifications of the next evaluations wait until then, as a retry
// would have.
func TestRetryAfterHoldsPastAGiveUp(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var calls []time.Duration
		start := time.Now()
		limited := notifierFunc(func(context.Context, []andon.Alert) error {
			calls = append(calls, time.Since(start)) // one worker: no race
			if len(calls) == 1 {
				return &hintedError{after: time.Minute} // 429 Too Many Requests, Retry-After: 60
			}
			return nil
		})
		cond := newSwitch()
		e := newEvaluator(t, andon.EvaluatorOptions{Notifiers: []andon.Notifier{limited}, Logger: discardLogger(),
			Notify: andon.NotifyOptions{MaxAttempts: 1},
			Rules:  []andon.Rule{{Name: "R", Severity: andon.Page, Condition: cond}}})
		ctx := context.Background()
		cond.Set(true)
		e.Evaluate(ctx) // fires; the one attempt is answered "not before a minute"
		synctest.Wait()
		require.Equal(t, []time.Duration{0}, calls)
		require.EqualValues(t, 1, e.NotifierStats()[0].Failed)

		time.Sleep(15 * time.Second)
		e.Evaluate(ctx) // still firing: offered again, and held
		synctest.Wait()
		assert.Equal(t, []time.Duration{0}, calls, "the receiver is asked again before its Retry-After")
		require.NoError(t, e.Flush(ctx))
		assert.Equal(t, []time.Duration{0, time.Minute}, calls)
		assert.EqualValues(t, 1, e.NotifierStats()[0].Sent)
	})
}
