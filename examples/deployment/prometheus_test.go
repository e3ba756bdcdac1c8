package main

import (
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/internal/servers"
)

// TestPrometheusAnalysis runs the whole loop with a real Prometheus: the
// service deploys demoapp processes, lists them in its file for
// Prometheus's service discovery, Prometheus scrapes them, and the
// rollout's analysis reads their health back with PromQL. A healthy
// version is promoted; bad-service's 7.2% of errors, as Prometheus saw
// them, roll it back. A stage waits for health data ten health intervals
// beyond its bake before it fails for want of it: Prometheus learns of a
// new process from its file within a second, scrapes it every second,
// and counts requests from two scrapes, which on a loaded machine took
// longer than the 6 s ten intervals of 500 ms left (a healthy canary
// failed with no data); at 2 s they leave 20 s.
func TestPrometheusAnalysis(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the local fleet reads /proc: Linux only")
	}
	dir := t.TempDir()
	prom := startPrometheusSD(t, filepath.Join(dir, targetsFile))
	ts := startServiceIn(t, dir, "-fleet", "local", "-local-traffic", "50", "-prometheus-url", prom,
		"-stages", "canary:50:6s,prod:100:3s", "-health-interval", "2s", "-min-requests", "20")

	r := deploy(t, ts.URL, map[string]any{"service": "api-service", "version": "v2.0.0", "target_region": "us-west-2"})
	require.Equal(t, http.StatusOK, r.Code, "%s", r.Body)
	d := r.deployment(t)
	passed := 0
	for _, st := range d.Results[0].Stages {
		for _, s := range st.Samples {
			if s.Verdict == "passed" {
				passed++
				assert.Positive(t, s.Requests, "requests counted by Prometheus")
			}
		}
	}
	assert.Positive(t, passed, "samples judged from Prometheus's data")

	r = deploy(t, ts.URL, map[string]any{"service": "bad-service", "version": "v1.0.0", "target_region": "us-east-1"})
	require.Equal(t, http.StatusAccepted, r.Code, "%s", r.Body)
	d = r.deployment(t)
	assert.Equal(t, StatusRolledBack, d.Status)
	require.NotNil(t, d.ErrorMessage)
	assert.Contains(t, *d.ErrorMessage, "Error rate", "samples: %+v", d.Results[0].Stages)
}

// startPrometheusSD runs Prometheus scraping, every second, the targets
// listed in the file_sd file sd, and returns its URL once it is ready.
func startPrometheusSD(t *testing.T, sd string) string {
	t.Helper()
	require.NoError(t, os.WriteFile(sd, []byte("[]\n"), 0o644))
	return servers.StartPrometheus(t, fmt.Sprintf(`global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: demoapp
    file_sd_configs:
      - files: [%q]
        refresh_interval: 1s
`, sd))
}

// TestReadingsJSONCannotHold: a health reading that is not a finite
// number (here a Prometheus answering +Inf requests) is judged and
// recorded, as null, like any other: the deployment's record, which JSON
// holds, is still written. It could not be, and the rollout of a healthy
// version was rolled back as if cut off by a restart.
func TestReadingsJSONCannotHold(t *testing.T) {
	prom := promStub(t, "", map[string]string{"sum(increase(": "+Inf"})
	ts := startService(t, append(slices.Clone(fastArgs), "-prometheus-url", prom.URL)...)
	r := deploy(t, ts.URL, map[string]any{"service": "api-service", "version": "v2.0.0", "target_region": "us-west-2"})
	require.Equal(t, http.StatusOK, r.Code, "%s", r.Body)
	assert.Contains(t, string(r.Body), `"requests":null`)
	d := r.deployment(t)
	assert.Equal(t, StatusSuccess, d.Status)
	assert.NotContains(t, ts.logs.String(), "rollout job failed")

	// Read back, a null reading is NaN, and written again null.
	b, err := json.Marshal(HealthSample{Requests: math.Inf(1), ErrorRate: math.NaN(), P99Ms: 12.5, Verdict: "failed"})
	require.NoError(t, err)
	assert.JSONEq(t, `{"time":"0001-01-01T00:00:00Z","requests":null,"error_rate":null,"p99_ms":12.5,"cpu":0,"memory":0,"verdict":"failed"}`, string(b))
	var back HealthSample
	require.NoError(t, json.Unmarshal(b, &back))
	assert.True(t, math.IsNaN(back.Requests) && math.IsNaN(back.ErrorRate), "%+v", back)
	assert.Equal(t, [3]float64{12.5, 0, 0}, [3]float64{back.P99Ms, back.CPU, back.Memory})
	assert.Equal(t, "failed", back.Verdict)
}
