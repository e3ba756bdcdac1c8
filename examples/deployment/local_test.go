package main

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// load sends requests through a proxy from a few goroutines until stop is
// closed, and counts what came back by version, and the failures that are
// not the app's own (transport errors, and 502/503/504 from the proxy).
type load struct {
	total, shiftFailures atomic.Int64
	mu                   sync.Mutex
	byVersion            map[string]int
	last                 []string // versions of the latest answers, in order
}

func (l *load) run(t *testing.T, url string, workers int, stop <-chan struct{}) *sync.WaitGroup {
	t.Helper()
	l.byVersion = map[string]int{}
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: workers}}
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				resp, err := client.Get(url + "/")
				l.total.Add(1)
				if err != nil {
					l.shiftFailures.Add(1)
					continue
				}
				body, _ := io.ReadAll(resp.Body)
				_ = resp.Body.Close()
				switch resp.StatusCode {
				case http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
					l.shiftFailures.Add(1)
					continue
				}
				var a struct {
					Version string `json:"version"`
				}
				if json.Unmarshal(body, &a) == nil && a.Version != "" {
					l.mu.Lock()
					l.byVersion[a.Version]++
					l.last = append(l.last, a.Version)
					l.mu.Unlock()
				}
			}
		}()
	}
	return &wg
}

// TestLocalFleet runs rollouts on real demoapp processes behind the
// service's weighted proxy, with traffic going through it all along: a
// canary (20% → 50% → 100%: shares that get enough requests to judge even
// on a busy machine) that succeeds moves every answer from v1 to v2
// without a failed request; one that fails its analysis sends the traffic
// back.
func TestLocalFleet(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the local fleet reads /proc: Linux only")
	}
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("no /proc")
	}
	ts := startService(t, "-fleet", "local", "-local-traffic", "0",
		"-stages", "canary:20:2s,staging:50:1s,prod:100:500ms", "-health-interval", "100ms", "-min-requests", "30")
	async := []string{"Prefer", "respond-async"}

	id := deploy(t, ts.URL, map[string]any{"service": "api-service", "version": "v2.0.0", "target_region": "us-west-2"}, async...).deployment(t).ID
	d := waitFor(t, ts.URL, id, func(d Deployment) bool { return d.Results[0].ProxyURL != "" || ended(d) })
	require.NotEmpty(t, d.Results[0].ProxyURL, "%+v", d)
	stop := make(chan struct{})
	var l load
	began := time.Now()
	wg := l.run(t, d.Results[0].ProxyURL, 12, stop)
	d = waitFor(t, ts.URL, id, ended)
	time.Sleep(300 * time.Millisecond) // answers after the last shift
	close(stop)
	wg.Wait()
	took := time.Since(began)
	require.Equal(t, StatusSuccess, d.Status, "%s", *orEmpty(d.ErrorMessage))
	assert.Zero(t, l.shiftFailures.Load(), "requests failed by the traffic shifts, of %d", l.total.Load())
	assert.Positive(t, l.byVersion["v1.0.0"], "the old version answered before the shift")
	assert.Positive(t, l.byVersion["v2.0.0"])
	tail := l.last[len(l.last)-20:]
	for _, v := range tail {
		assert.Equal(t, "v2.0.0", v, "after prod, every answer comes from the new version: %v", tail)
	}
	t.Logf("canary on local processes: %d requests in %v (%.0f/s), %v by version, 0 failed by the shifts",
		l.total.Load(), took.Round(time.Millisecond), float64(l.total.Load())/took.Seconds(), l.byVersion)

	// The file a Prometheus discovers the processes from lists the one
	// now serving, v2.0.0, with its labels.
	raw, err := os.ReadFile(filepath.Join(ts.cfg.DataDir, targetsFile))
	require.NoError(t, err)
	var groups []sdGroup
	require.NoError(t, json.Unmarshal(raw, &groups))
	require.Len(t, groups, 1, "%s", raw)
	assert.Equal(t, map[string]string{"service": "api-service", "region": "us-west-2", "version": "v2.0.0"}, groups[0].Labels)
	require.Len(t, groups[0].Targets, 1)
	resp, err := http.Get("http://" + groups[0].Targets[0] + "/metrics")
	require.NoError(t, err)
	metrics, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	assert.Contains(t, string(metrics), `version="v2.0.0"`, "the target is the new version's demoapp")

	// bad-service v1.0.0 fails 7.2% of its requests: rolled back at the
	// canary, and the traffic is on v0.9.0 again.
	id = deploy(t, ts.URL, map[string]any{"service": "bad-service", "version": "v1.0.0", "target_region": "us-east-1"}, async...).deployment(t).ID
	d = waitFor(t, ts.URL, id, func(d Deployment) bool { return d.Results[0].ProxyURL != "" || ended(d) })
	require.NotEmpty(t, d.Results[0].ProxyURL)
	stop = make(chan struct{})
	var bad load
	wg = bad.run(t, d.Results[0].ProxyURL, 12, stop)
	d = waitFor(t, ts.URL, id, ended)
	time.Sleep(300 * time.Millisecond)
	close(stop)
	wg.Wait()
	require.Equal(t, StatusRolledBack, d.Status)
	assert.Contains(t, *d.ErrorMessage, "Error rate")
	tail = bad.last[len(bad.last)-20:]
	for _, v := range tail {
		assert.Equal(t, "v0.9.0", v, "after the rollback, every answer comes from the old version: %v", tail)
	}
	assert.Zero(t, bad.shiftFailures.Load())

	// From the failing sample to the traffic back on v0.9.0: within one
	// health interval (100ms) and 100ms.
	m := do(t, "GET", ts.URL+"/metrics", nil)
	sum, count := metricValue(t, m.Body, "deployment_rollback_recovery_seconds_sum"), metricValue(t, m.Body, "deployment_rollback_recovery_seconds_count")
	require.Equal(t, 1.0, count)
	assert.Less(t, sum, 0.2, "time to recover")
	t.Logf("rollback on local processes: recovered %.1f ms after the failing sample", sum*1000)
}

// metricValue reads one sample of an exposition without labels.
func metricValue(t *testing.T, body []byte, name string) float64 {
	t.Helper()
	for _, line := range strings.Split(string(body), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, err := strconv.ParseFloat(strings.Fields(v)[0], 64)
			require.NoError(t, err)
			return f
		}
	}
	t.Fatalf("no %s in the metrics", name)
	return 0
}

func orEmpty(s *string) *string {
	if s == nil {
		e := ""
		return &e
	}
	return s
}

// TestLocalFleetFirstDeploymentRolledBack: a first deployment to a region
// (nothing ran there before) aborted at its canary is rolled back, and its
// version retired, which closes the region's proxy. The deployment then
// names no proxy_url: one it named would refuse connections, where a
// proxy it names answers.
func TestLocalFleetFirstDeploymentRolledBack(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the local fleet reads /proc: Linux only")
	}
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("no /proc")
	}
	const admin = "admin-token-0123456789"
	catalog := filepath.Join(t.TempDir(), "catalog.json")
	require.NoError(t, os.WriteFile(catalog, []byte(`{
  "regions": {"us-west-2": {"capacity": 20}, "eu-west-1": {"capacity": 20}},
  "services": {"api-service": {"instances": 1, "running": {"us-west-2": "v1.0.0"}, "versions": {
    "v1.0.0": {"error_rate": 0, "p99_ms": 10, "cpu": 0.1, "memory": 0.1},
    "v2.0.0": {"error_rate": 0, "p99_ms": 10, "cpu": 0.1, "memory": 0.1}}}}
}`), 0o600))
	ts := startService(t, "-catalog", catalog, "-fleet", "local", "-local-traffic", "0", "-admin-token", admin,
		"-stages", "canary:20:1h,prod:100:0s", "-health-interval", "100ms", "-min-requests", "0")
	// api-service runs nowhere in eu-west-1.
	id := deploy(t, ts.URL, map[string]any{"service": "api-service", "version": "v2.0.0", "target_region": "eu-west-1", "first_deploy": true},
		"Prefer", "respond-async").deployment(t).ID
	d := waitFor(t, ts.URL, id, func(d Deployment) bool { return d.Results[0].Stage == "canary" || ended(d) })
	require.Equal(t, "canary", d.Results[0].Stage, "%+v", d)
	require.NotEmpty(t, d.Results[0].ProxyURL, "the proxy is named while the version serves")
	resp, err := http.Get(d.Results[0].ProxyURL + "/")
	require.NoError(t, err)
	_ = resp.Body.Close()

	r := do(t, "POST", ts.URL+"/deploy/"+id+"/abort", map[string]string{"reason": "first try"}, "Authorization", "Bearer "+admin)
	require.Equal(t, http.StatusAccepted, r.Code, "%s", r.Body)
	d = waitFor(t, ts.URL, id, ended)
	require.Equal(t, StatusRolledBack, d.Status)
	if url := d.Results[0].ProxyURL; url != "" {
		resp, err := http.Get(url + "/")
		require.NoError(t, err, "the rolled-back deployment names the proxy %s", url)
		_ = resp.Body.Close()
	}
	assert.Empty(t, d.Results[0].ProxyURL, "nothing is deployed in the region: no proxy")
}

// TestLocalFleetBlueGreen: a blue-green deployment on local processes
// has its new set analysed on the simulated users' preview requests
// while it takes no share of their traffic, then switches. The preview
// had no requests to judge: every sample was inconclusive, and each
// blue-green deployment on the local fleet was rolled back with "No
// health data ... at preview".
func TestLocalFleetBlueGreen(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the local fleet reads /proc: Linux only")
	}
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("no /proc")
	}
	ts := startService(t, "-fleet", "local", "-local-traffic", "100",
		"-stages", "canary:20:1s,prod:100:200ms", "-health-interval", "100ms", "-min-requests", "10")
	id := deploy(t, ts.URL, map[string]any{"service": "api-service", "version": "v2.0.0", "target_region": "us-west-2", "rollout_strategy": "blue-green"},
		"Prefer", "respond-async").deployment(t).ID
	d := waitFor(t, ts.URL, id, ended)
	require.Equal(t, StatusSuccess, d.Status, "%s", *orEmpty(d.ErrorMessage))
	preview := d.Results[0].Stages[0]
	require.Equal(t, "preview", preview.Name)
	assert.Equal(t, "passed", preview.Verdict, preview.Reason)
	assert.Zero(t, preview.Percent)
}
