package main

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// promStub is a Prometheus server that answers each query with the value
// of the first of readings whose key the query holds for version (every
// version when it is ""), and healthy values otherwise.
func promStub(t *testing.T, version string, readings map[string]string) *httptest.Server {
	t.Helper()
	prom := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := r.FormValue("query")
		v := "0.01" // the error rate
		switch {
		case strings.HasPrefix(q, "sum(increase("):
			v = "100"
		case strings.HasPrefix(q, "histogram_quantile"):
			v = "0.1"
		case strings.Contains(q, "process_"):
			v = "0.3"
		}
		if version == "" || strings.Contains(q, `version="`+version+`"`) {
			for key, value := range readings {
				if strings.Contains(q, key) {
					v = value
				}
			}
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[%d,%q]}]}}`, time.Now().Unix(), v)
	}))
	t.Cleanup(prom.Close)
	return prom
}

// TestPrometheusReadingNotAMeasurementFails: a reading Prometheus answers
// that cannot be a measurement — a negative CPU share, latency or request
// count (a custom query with its sign wrong), an error rate over 1 (its
// ratio upside down) — fails the sample, and the first such sample rolls
// the canary back naming the reading, as a NaN reading from the simulated
// fleet does. Each was taken as a sample the source failed to give,
// inconclusive: the canary waited past its bake for data and rolled back
// with "No health data for …", and one that had a sample pass before the
// broken reading went on to the next stage.
func TestPrometheusReadingNotAMeasurementFails(t *testing.T) {
	for _, tc := range []struct {
		name    string
		reading map[string]string
		reason  string
	}{
		{"negative cpu", map[string]string{"process_cpu": "-0.4"}, "CPU of v2.0.0 of api-service in us-west-2 is -0.4, not a measurement"},
		{"negative p99", map[string]string{"histogram_quantile": "-0.2"}, "P99 of v2.0.0 of api-service in us-west-2 is -0.2, not a measurement"},
		{"negative requests", map[string]string{"sum(increase(": "-3"}, "Requests of v2.0.0 of api-service in us-west-2 is -3, not a measurement"},
		{"error rate over 1", map[string]string{`code=~"5.."`: "1.5"}, "ErrorRate of v2.0.0 of api-service in us-west-2 is 1.5, not a share in [0, 1]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			prom := promStub(t, "v2.0.0", tc.reading)
			ts := startService(t, append(slices.Clone(fastArgs), "-prometheus-url", prom.URL)...)
			r := deploy(t, ts.URL, map[string]any{"service": "api-service", "version": "v2.0.0", "target_region": "us-west-2"})
			require.Equal(t, http.StatusAccepted, r.Code, "%s", r.Body)
			d := r.deployment(t)
			require.Equal(t, StatusRolledBack, d.Status)
			require.NotNil(t, d.ErrorMessage)
			assert.Contains(t, *d.ErrorMessage, tc.reason)
			require.NotEmpty(t, d.Results[0].Stages)
			canary := d.Results[0].Stages[0]
			assert.Equal(t, "failed", canary.Verdict)
			assert.True(t, slices.ContainsFunc(canary.Samples, func(s HealthSample) bool {
				return s.Verdict == "failed" && strings.Contains(s.Reason, tc.reason)
			}), "%+v", canary.Samples)
			assert.NotZero(t, d.Results[0].RecoveryMs, "timed from the failing sample")
		})
	}
}

// TestPrometheusReadingNotAMeasurementRefuses: the prerequisite
// region_health, which reads the version serving as a stage's analysis
// reads the new one, refuses a region whose reading from Prometheus
// cannot be a measurement, with the Go rules as with the rule files, as
// it refuses one whose request count cannot be one. It took the reading
// as a health source that could not judge: tried again for about 50 s,
// and then FAILED "Not started after 10 attempts".
func TestPrometheusReadingNotAMeasurementRefuses(t *testing.T) {
	for _, rules := range []string{"built-in", "go"} {
		t.Run(rules, func(t *testing.T) {
			prom := promStub(t, "v1.0.0", map[string]string{"process_cpu": "-0.4"})
			args := append(slices.Clone(fastArgs), "-prometheus-url", prom.URL)
			if rules == "go" {
				args = append(args, "-rules", "go")
			}
			ts := startService(t, args...)
			r := deploy(t, ts.URL, map[string]any{"service": "api-service", "version": "v2.0.0", "target_region": "us-west-2"})
			require.Equal(t, http.StatusUnprocessableEntity, r.Code, "%s", r.Body)
			d := r.deployment(t)
			require.Equal(t, StatusFailed, d.Status)
			require.NotNil(t, d.ErrorMessage)
			assert.Contains(t, *d.ErrorMessage, "Region us-west-2 unhealthy before the change (api-service v1.0.0)")
			assert.Contains(t, *d.ErrorMessage, "CPU of v1.0.0 of api-service in us-west-2 is -0.4, not a measurement")
		})
	}
}

// TestBoardShowsAReadingNotAMeasurement: the board shows a sample failed
// on a reading that cannot be a measurement by its reason, as it shows an
// inconclusive one, not as readings of zero that passed every check.
func TestBoardShowsAReadingNotAMeasurement(t *testing.T) {
	const reason = "promhealth: CPU of v2.0.0 of auth in us-west-2 is -0.4, not a measurement: avg(…)"
	r := &rollout{service: "auth", version: "v2.0.0", region: "us-west-2", since: time.Now(),
		d: &Deployment{ID: "dpl_test", Results: []RegionResult{{Stage: "canary", Percent: 5, Stages: []StageResult{{Name: "canary",
			Samples: []HealthSample{
				{Requests: 100, ErrorRate: 0.01, P99Ms: 120, CPU: 0.3, Memory: 0.4, Verdict: "passed"},
				{Verdict: "failed", Reason: reason},
			}}}}}}}
	_, row := r.boardRow()
	assert.Equal(t, "passed: errors 1.00%, p99 120 ms, CPU 30%, memory 40% · failed ("+reason+")", row.Cells[8])
	assert.Equal(t, "red", row.Color)
}
