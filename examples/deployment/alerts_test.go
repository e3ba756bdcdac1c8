package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/internal/servers"
)

// TestMarginalHealthOfAnyRollout: DeploymentHealthMarginal fires when a
// running rollout's last error rate is between 5% and 10%, whatever the
// others' are. It read the highest of them: a rollout at 15% (its own
// threshold raised) hid another's 7%.
func TestMarginalHealthOfAnyRollout(t *testing.T) {
	s := &Service{}
	s.rollouts.set("dpl_a/us-west-2", 0.07, 0, false)
	s.rollouts.set("dpl_b/us-east-1", 0.15, 0, false)
	s.rollouts.set("dpl_c/eu-west-1", 0.01, 0, false)
	m, err := s.marginalHealth(t.Context(), time.Now())
	require.NoError(t, err)
	assert.True(t, m.Active, "%+v", m)
	assert.Equal(t, 0.07, m.Value, "the marginal error rate")

	s.rollouts.drop("dpl_a/us-west-2")
	m, err = s.marginalHealth(t.Context(), time.Now())
	require.NoError(t, err)
	assert.False(t, m.Active, "no rollout is marginal: %+v", m)
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
