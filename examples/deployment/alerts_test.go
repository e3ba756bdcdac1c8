package main

import (
	"context"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/examples/deployment/internal/fleet"
	"github.com/taipattern/taikit/internal/servers"
)

// TestMarginalHealthOfAnyRollout: DeploymentHealthMarginal fires when a
// running rollout's last error rate is between 5% and 10%, whatever the
// others' are. It read the highest of them: a rollout at 15% (its own
// threshold raised) hid another's 7%.
func TestMarginalHealthOfAnyRollout(t *testing.T) {
	s := &Service{}
	s.rollouts.setErrorRate("dpl_a/us-west-2", 0.07)
	s.rollouts.setErrorRate("dpl_b/us-east-1", 0.15)
	s.rollouts.setErrorRate("dpl_c/eu-west-1", 0.01)
	m, err := s.marginalHealth(t.Context(), time.Now())
	require.NoError(t, err)
	assert.True(t, m.Active, "%+v", m)
	assert.Equal(t, 0.07, m.Value, "the marginal error rate")

	s.rollouts.drop("dpl_a/us-west-2")
	m, err = s.marginalHealth(t.Context(), time.Now())
	require.NoError(t, err)
	assert.False(t, m.Active, "no rollout is marginal: %+v", m)
}

// TestMarginalHealthOverANaNReading: a rollout whose last error rate is
// NaN (a broken health source; its sample failed, and with -fail-after
// above 1 it runs on) does not hide the others' rates: the measurement's
// value is the highest of those that are numbers. max with a NaN is NaN,
// which the rule reported as its value whatever the others read.
func TestMarginalHealthOverANaNReading(t *testing.T) {
	s := &Service{}
	s.rollouts.setErrorRate("dpl_a/us-west-2", math.NaN())
	s.rollouts.setErrorRate("dpl_b/us-east-1", 0.15)
	s.rollouts.setErrorRate("dpl_c/eu-west-1", 0.01)
	m, err := s.marginalHealth(t.Context(), time.Now())
	require.NoError(t, err)
	assert.False(t, m.Active, "%+v", m)
	assert.Equal(t, 0.15, m.Value, "the highest error rate measured")

	s.rollouts.setErrorRate("dpl_c/eu-west-1", 0.07)
	m, err = s.marginalHealth(t.Context(), time.Now())
	require.NoError(t, err)
	assert.True(t, m.Active, "%+v", m)
	assert.Equal(t, 0.07, m.Value, "the marginal error rate")
}

// switchedHealth is a health source whose readings of the new version
// are marginal, until noData is set: from then on it has none.
type switchedHealth struct {
	fleet.Health
	noData atomic.Bool
}

func (h *switchedHealth) Sample(ctx context.Context, service, region, version string, window time.Duration) (fleet.Sample, error) {
	if version != "v2.0.0" {
		return h.Health.Sample(ctx, service, region, version, window)
	}
	if h.noData.Load() {
		return fleet.Sample{}, fleet.ErrNoData
	}
	return fleet.Sample{Time: time.Now(), Requests: 100, ErrorRate: 0.07, P99: 50 * time.Millisecond, CPU: 0.3, Memory: 0.3}, nil
}

// TestMarginalHealthOverAnInconclusiveSample: a rollout whose error rate
// was marginal stays so, for the rule evaluated in the process, when its
// next sample has no data, as it does for the exported rule, which reads
// the last error rate sampled. The sample with no data counted as an
// error rate of 0 in the process, which resolved the alert while
// Prometheus's went on firing.
func TestMarginalHealthOverAnInconclusiveSample(t *testing.T) {
	h := &switchedHealth{}
	ts := startServiceWith(t, t.TempDir(), func(c *Config) {
		c.WrapHealth = func(inner fleet.Health) fleet.Health { h.Health = inner; return h }
	}, "-stages", "canary:5:1h,prod:100:0s", "-health-interval", "25ms", "-min-requests", "0", "-max-error-rate", "0.2")
	id := deploy(t, ts.URL, map[string]any{"service": "auth", "version": "v2.0.0", "target_region": "us-west-2"},
		"Prefer", "respond-async").deployment(t).ID
	waitFor(t, ts.URL, id, func(d Deployment) bool { return d.Results[0].Stage == "canary" })
	v, ok := ts.runs.Load(id)
	require.True(t, ok, "the rollout runs here")
	run := v.(*rollout)
	lastVerdict := func() string {
		run.mu.Lock()
		defer run.mu.Unlock()
		st := run.d.Results[0].Stages
		if len(st) == 0 || len(st[len(st)-1].Samples) == 0 {
			return ""
		}
		samples := st[len(st)-1].Samples
		return samples[len(samples)-1].Verdict
	}
	require.Eventually(t, func() bool { return lastVerdict() == "passed" }, 10*time.Second, time.Millisecond)
	m, err := ts.marginalHealth(t.Context(), time.Now())
	require.NoError(t, err)
	require.True(t, m.Active, "%+v", m)

	h.noData.Store(true)
	require.Eventually(t, func() bool { return lastVerdict() == "inconclusive" }, 10*time.Second, time.Millisecond)
	m, err = ts.marginalHealth(t.Context(), time.Now())
	require.NoError(t, err)
	assert.True(t, m.Active, "a sample with no data resolved the marginal rollout: %+v", m)
	assert.Equal(t, 0.07, m.Value)
	assert.Equal(t, 0.07, testutil.ToFloat64(ts.metrics.errorRate.WithLabelValues("auth", "us-west-2", "v2.0.0")), "the exported error rate")
}

// TestMarginalHealthRuleInPrometheus: the exported rule fires as the
// one evaluated in the process does, for a marginal rollout beside one
// over 10%.
func TestMarginalHealthRuleInPrometheus(t *testing.T) {
	promtool := servers.Binary(t, "prometheus", "promtool")
	var b strings.Builder
	require.NoError(t, printRules(&b))
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "deployment.rules.yml"), []byte(b.String()), 0o600))
	tests := `rule_files: [deployment.rules.yml]
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      - series: 'deployment_health_error_rate{service="a",region="us-west-2",version="v2.0.0"}'
        values: '0.07x5'
      - series: 'deployment_health_error_rate{service="b",region="us-east-1",version="v2.0.0"}'
        values: '0.15x5'
    alert_rule_test:
      - eval_time: 2m
        alertname: DeploymentHealthMarginal
        exp_alerts:
          - exp_labels: {severity: ticket}
            exp_annotations:
              runbook_url: https://github.com/taipattern/taikit/tree/main/examples/deployment#alerts
              summary: "a rollout's error rate is marginal: 7%"
  - interval: 1m
    input_series:
      - series: 'deployment_health_error_rate{service="b",region="us-east-1",version="v2.0.0"}'
        values: '0.15x5'
    alert_rule_test:
      - eval_time: 2m
        alertname: DeploymentHealthMarginal
        exp_alerts: []
`
	require.NoError(t, os.WriteFile(filepath.Join(dir, "tests.yml"), []byte(tests), 0o600))
	cmd := exec.Command(promtool, "test", "rules", "tests.yml")
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, string(out))
}

// TestSlowCanaryGaugeEndsWithTheCanary: the canary's overdue ratio, which
// the exported CanarySlowToProgress reads, is gone once the canary's stage
// has passed, as it is from the rule evaluated in the process. It stayed
// at the canary's last value through the stages after it, so that a
// canary held past three times its bake (paused by the cord) kept the
// exported alert firing while the next stage baked.
func TestSlowCanaryGaugeEndsWithTheCanary(t *testing.T) {
	ts := startService(t, "-stages", "first:5:100ms,staging:25:1h,prod:100:0s", "-health-interval", "25ms", "-min-requests", "0")
	id := deploy(t, ts.URL, map[string]any{"service": "auth", "version": "v2.0.0", "target_region": "us-west-2"},
		"Prefer", "respond-async").deployment(t).ID
	waitFor(t, ts.URL, id, func(d Deployment) bool { return d.Results[0].Stage == "first" })
	require.Eventually(t, func() bool { return testutil.CollectAndCount(ts.metrics.overdue) == 1 }, 10*time.Second, time.Millisecond,
		"the canary's overdue ratio is exported while it bakes")
	v, ok := ts.runs.Load(id)
	require.True(t, ok, "the rollout runs here")
	run := v.(*rollout)
	// A sample of the staging stage is recorded after the gauges are set.
	require.Eventually(t, func() bool {
		run.mu.Lock()
		defer run.mu.Unlock()
		st := run.d.Results[0].Stages
		return len(st) == 2 && len(st[1].Samples) > 0
	}, 10*time.Second, time.Millisecond)
	assert.Zero(t, testutil.CollectAndCount(ts.metrics.overdue), "the canary's overdue ratio is still exported in the stage after it")
	_, n := ts.rollouts.max(func(h *rolloutHealth) map[string]float64 { return h.overdue })
	assert.Zero(t, n, "the rule in the process")
}
