package main

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/taipattern/taikit/internal/servers"
	"github.com/taipattern/taikit/kanban/natsembed"
)

// TestTwoReplicas: two services on one NATS share the queue and the
// state. Deployments sent to either run exactly once, on one of them; a
// deployment started on one is seen, and refused a twin (409), on the
// other; the cord pulled on one stops both.
func TestTwoReplicas(t *testing.T) {
	srv, err := natsembed.Start(t.Context(), natsembed.Options{StoreDir: t.TempDir()})
	require.NoError(t, err)
	t.Cleanup(func() { _ = srv.Shutdown(context.Background()) })
	const admin = "admin-token-0123456789"
	args := append(append([]string{}, fastArgs...), "-nats-url", srv.ClientURL(), "-admin-token", admin)
	a := startServiceIn(t, t.TempDir(), args...)
	b := startServiceIn(t, t.TempDir(), args...)

	// Twelve deployments, sent alternately to the two.
	var wg sync.WaitGroup
	ids := make([]string, 12)
	services := []string{"web-frontend", "checkout", "search", "cart", "orders", "pricing"}
	for i := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			base := a.URL
			if i%2 == 1 {
				base = b.URL
			}
			region := []string{"us-west-2", "us-east-1"}[i/len(services)]
			r := deploy(t, base, map[string]any{"service": services[i%len(services)], "version": "v1.1.0", "target_region": region})
			assert.Equal(t, http.StatusOK, r.Code, "%s", r.Body)
			ids[i] = r.deployment(t).ID
		}()
	}
	wg.Wait()
	// Each ran once: one region signal in one of the two audit trails.
	require.NoError(t, a.audit.Flush(t.Context()))
	require.NoError(t, b.audit.Flush(t.Context()))
	runs := map[string]int{}
	for _, ts := range []*testService{a, b} {
		for _, line := range auditLines(t, filepath.Join(ts.cfg.DataDir, "audit-test.jsonl")) {
			if line.Kind == "deployment.validation" {
				runs[line.ID]++
			}
		}
	}
	for _, id := range ids {
		assert.Equal(t, 1, runs[id], "deployment %s ran %d times", id, runs[id])
	}
	// Either replica answers for any deployment.
	assert.Equal(t, http.StatusOK, do(t, "GET", b.URL+"/deploy/"+ids[0], nil).Code)
	assert.Equal(t, http.StatusOK, do(t, "GET", a.URL+"/deploy/"+ids[1], nil).Code)

	// A deployment running on one blocks its twin on the other.
	slow := append(append([]string{}, args...), "-stages", "canary:5:1h,staging:25:1h,prod:100:0s")
	c := startServiceIn(t, t.TempDir(), slow...)
	id := deploy(t, c.URL, map[string]any{"service": "auth", "version": "v1.1.0", "target_region": "eu-west-1"}, "Prefer", "respond-async").deployment(t).ID
	r := deploy(t, a.URL, map[string]any{"service": "auth", "version": "v1.2.0", "target_region": "eu-west-1"})
	assert.Equal(t, http.StatusConflict, r.Code, "%s", r.Body)

	// The cord pulled on b stops a and c too, and c's rollout pauses.
	auth := []string{"Authorization", "Bearer " + admin}
	require.Equal(t, http.StatusOK, do(t, "POST", b.URL+"/andon/cord", map[string]string{"action": "stop", "reason": "freeze"}, auth...).Code)
	waitFor(t, a.URL, id, func(d Deployment) bool { return d.Paused })
	// The stop reaches a through its watch of the shared state; until it
	// has, a would take the deployment (and a second try of the same one
	// would meet the first, not the stop).
	require.Eventually(t, func() bool { stopped, _ := a.line.Stopped(); return stopped }, 10*time.Second, 5*time.Millisecond,
		"the cord pulled on b stops a's line")
	r = deploy(t, a.URL, map[string]any{"service": "search", "version": "v1.2.0", "target_region": "eu-west-1"})
	assert.Equal(t, http.StatusServiceUnavailable, r.Code, "%s", r.Body)
	require.Equal(t, http.StatusOK, do(t, "POST", a.URL+"/andon/cord", map[string]string{"action": "start"}, auth...).Code)
	require.Equal(t, http.StatusAccepted, do(t, "POST", b.URL+"/deploy/"+id+"/abort", map[string]string{"reason": "done testing"}, auth...).Code)
	d := waitFor(t, a.URL, id, ended)
	assert.Equal(t, StatusRolledBack, d.Status)
	assert.Equal(t, "Aborted: done testing", *d.ErrorMessage, "an abort sent to one replica reached the rollout on another")
}

type auditLine struct {
	ID   string `json:"id"`
	Kind string `json:"kind"`
}

func auditLines(t *testing.T, path string) []auditLine {
	t.Helper()
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	var out []auditLine
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var l auditLine
		require.NoError(t, json.Unmarshal(sc.Bytes(), &l))
		out = append(out, l)
	}
	require.NoError(t, sc.Err())
	return out
}

// TestEvents: GET /deploy/{id}/events streams the deployment's states as
// server-sent events until it ends.
func TestEvents(t *testing.T) {
	ts := startService(t, fastArgs...)
	id := deploy(t, ts.URL, map[string]any{"service": "api-service", "version": "v2.0.0", "target_region": "us-west-2"}, "Prefer", "respond-async").deployment(t).ID
	resp, err := http.Get(ts.URL + "/deploy/" + id + "/events")
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, "text/event-stream", resp.Header.Get("Content-Type"))
	var stages []string
	var last Deployment
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		data, ok := strings.CutPrefix(sc.Text(), "data: ")
		if !ok {
			continue
		}
		require.NoError(t, json.Unmarshal([]byte(data), &last))
		if st := last.Results[0].Stage; st != "" && (len(stages) == 0 || stages[len(stages)-1] != st) {
			stages = append(stages, st)
		}
	}
	require.NoError(t, sc.Err(), "the stream ends when the deployment does")
	assert.Equal(t, StatusSuccess, last.Status)
	assert.Equal(t, []string{"canary", "staging", "prod"}, stages)
}

// TestEventsHead: a HEAD of GET /deploy/{id}/events gets the stream's
// status and header and ends at once, as the board's stream does. It
// streamed, with no body to send, until the deployment ended: the
// client's next request on the same connection waited as long.
func TestEventsHead(t *testing.T) {
	ts := startService(t, "-stages", "canary:5:1h,prod:100:0s", "-health-interval", "25ms", "-min-requests", "0")
	id := deploy(t, ts.URL, map[string]any{"service": "api-service", "version": "v2.0.0", "target_region": "us-west-2"}, "Prefer", "respond-async").deployment(t).ID
	client := &http.Client{Transport: &http.Transport{MaxConnsPerHost: 1}}
	defer client.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "HEAD", ts.URL+"/deploy/"+id+"/events", nil)
	require.NoError(t, err)
	resp, err := client.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, "text/event-stream", resp.Header.Get("Content-Type"))

	// The same connection serves the next request: the HEAD has ended.
	req, err = http.NewRequestWithContext(ctx, "GET", ts.URL+"/deploy/"+id, nil)
	require.NoError(t, err)
	resp, err = client.Do(req)
	require.NoError(t, err, "the request after the HEAD waited for the deployment's end")
	resp.Body.Close()
	assert.Equal(t, http.StatusOK, resp.StatusCode)
}

// byID finds the span with id among spans.
func byID(spans []sdktrace.ReadWriteSpan, id trace.SpanID) (sdktrace.ReadWriteSpan, bool) {
	for _, s := range spans {
		if s.SpanContext().SpanID() == id {
			return s, true
		}
	}
	return nil, false
}

// TestShutdownWithOpenStreams: SIGTERM ends the process promptly with
// twenty board pages and a deployment's event stream open, and it stops
// cleanly.
func TestShutdownWithOpenStreams(t *testing.T) {
	c := startChild(t, t.TempDir(), "-stages", "canary:5:1h,prod:100:0s", "-health-interval", "50ms")
	id := deploy(t, c.URL, map[string]any{"service": "api-service", "version": "v2.0.0", "target_region": "us-west-2"}, "Prefer", "respond-async").deployment(t).ID
	var bodies []io.Closer
	defer func() {
		for _, b := range bodies {
			b.Close()
		}
	}()
	for i := range 21 {
		url := c.URL + "/andon/api/events"
		if i == 20 {
			url = c.URL + "/deploy/" + id + "/events"
		}
		resp, err := http.Get(url)
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, resp.StatusCode)
		bodies = append(bodies, resp.Body)
	}
	require.NoError(t, c.Cmd.Process.Signal(syscall.SIGTERM))
	select {
	case <-c.Done:
	case <-time.After(5 * time.Second):
		t.Fatalf("still running 5 s after SIGTERM with streams open\n%s", c.Logs.String())
	}
	require.NoError(t, c.Err, "a clean exit\n%s", c.Logs.String())
	assert.Contains(t, c.Logs.String(), `msg=stopped`)
}

// TestPrintedRulesPassPromtool: -print-rules writes rules Prometheus
// accepts.
func TestPrintedRulesPassPromtool(t *testing.T) {
	promtool := servers.Binary(t, "prometheus", "promtool")
	var b strings.Builder
	require.NoError(t, printRules(&b))
	path := filepath.Join(t.TempDir(), "deployment.rules.yml")
	require.NoError(t, os.WriteFile(path, []byte(b.String()), 0o600))
	out, err := exec.Command(promtool, "check", "rules", path).CombinedOutput()
	require.NoError(t, err, string(out))
	assert.Contains(t, string(out), "SUCCESS: 5 rules found")
	for _, name := range []string{alertRolledBack, alertFailed, alertMarginal, alertSlow, alertFrequency} {
		assert.Contains(t, b.String(), `alert: "`+name+`"`)
	}
}

// FuzzDeployRequest: any body decodes to a request that validates, or to
// a 4xx error; nothing panics.
func FuzzDeployRequest(f *testing.F) {
	for _, s := range []string{
		`{"service":"api-service","version":"v2.0.0","target_region":"us-west-2","rollout_strategy":"canary"}`,
		`{"service":"a","version":"1","target_regions":["a","b"],"analysis":{"max_error_rate":0.1},"metadata":{"k":"v"}}`,
		`{"service":1}`, `[]`, `{"service":"a","service":"b"}`, ``,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		var req DeployRequest
		if err := decodeStrict(body, &req); err != nil {
			return
		}
		regions, strategy, err := req.validate()
		if err != nil {
			return
		}
		if len(regions) == 0 || strategy == "" {
			t.Fatalf("a valid request without regions or strategy: %q", body)
		}
		for _, r := range regions {
			if !regionRE.MatchString(r) {
				t.Fatalf("region %q passed validation", r)
			}
		}
	})
}

// TestOneTrace: a deployment is one trace, across its regions: the
// request's span, each region's signal, each policy, each stage.
func TestOneTrace(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	ts := startServiceWith(t, t.TempDir(), func(c *Config) { c.TraceProcessor = rec }, fastArgs...)
	// The caller's trace is joined.
	const caller = "4bf92f3577b34da6a3ce929d0e0e4736"
	r := deploy(t, ts.URL, map[string]any{"service": "web-frontend", "version": "v1.1.0", "target_regions": []string{"us-west-2", "eu-west-1"}},
		"traceparent", "00-"+caller+"-00f067aa0ba902b7-01")
	require.Equal(t, http.StatusOK, r.Code, "%s", r.Body)
	d := r.deployment(t)
	require.Equal(t, caller, d.TraceID)
	do(t, "GET", ts.URL+"/metrics", nil) // scrapes, probes and the board make no spans
	do(t, "GET", ts.URL+"/healthz", nil)
	do(t, "GET", ts.URL+"/andon/api/state", nil)
	require.NoError(t, ts.tracing.ForceFlush(t.Context()))
	names := map[string]int{}
	for _, sp := range rec.Ended() {
		if sp.SpanContext().TraceID().String() == d.TraceID {
			names[sp.Name()]++
		}
	}
	assert.Equal(t, 1, names["POST /deploy"], "the server span, from otelhttp: %v", names)
	assert.Equal(t, 1, names["deploy web-frontend"], "%v", names)
	for _, sp := range rec.Ended() {
		switch sp.Name() {
		case "GET /metrics", "GET /healthz", "GET /andon/", "GET":
			t.Errorf("a span for %s", sp.Name())
		}
	}
	for _, want := range []string{"deployment", "policy image_exists", "policy region_capacity", "policy rollback_plan", "policy change_freeze", "policy region_health", "action", "stage canary", "stage staging", "stage prod"} {
		assert.Equal(t, 2, names[want], "%s once per region, in the deployment's trace: %v", want, names)
	}
	assert.GreaterOrEqual(t, names["analysis"], 2, "each health analysis is a span of its stage's: %v", names)
	for _, sp := range rec.Ended() {
		if sp.Name() == "analysis" && sp.SpanContext().TraceID().String() == d.TraceID {
			p, ok := byID(rec.Started(), sp.Parent().SpanID()) // the parent may not have ended yet
			require.True(t, ok, "an analysis has its stage as parent")
			assert.Contains(t, p.Name(), "stage ", "an analysis is a child of a stage")
		}
	}
}
