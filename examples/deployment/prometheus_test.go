package main

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
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
// them, roll it back.
func TestPrometheusAnalysis(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the local fleet reads /proc: Linux only")
	}
	dir := t.TempDir()
	prom := startPrometheusSD(t, filepath.Join(dir, targetsFile))
	ts := startServiceIn(t, dir, "-fleet", "local", "-local-traffic", "50", "-prometheus-url", prom,
		"-stages", "canary:50:6s,prod:100:3s", "-health-interval", "500ms", "-min-requests", "20")

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
