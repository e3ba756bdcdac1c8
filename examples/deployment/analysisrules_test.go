package main

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/examples/deployment/internal/analysis"
	"github.com/taipattern/taikit/examples/deployment/internal/fleet"
	"github.com/taipattern/taikit/tai"
	"github.com/taipattern/taikit/tai/taicel"
)

// TestAnalysisVerdictRuleFailsItsCheck: an analysis rule file may refuse
// a sample with a verdict rule; the check the rule belongs to (its name
// up to the first ".") is then the one that failed, as it is for a scored
// rule that fires. The sample failed with no check failed, and
// deployment_analysis_checks_total counted every check passed.
func TestAnalysisVerdictRuleFailsItsCheck(t *testing.T) {
	const file = `version: "1"
name: analysis
thresholds:
  deny: 1
rules:
  - name: cpu.ceiling
    verdict: deny
    expr: payload.CPU >= 0.99
    reason: CPU saturated
  - name: error_rate
    weight: 1
    expr: payload.ErrorRate > max_error_rate
    reason: Error rate over
  - name: memory
    weight: 1
    expr: payload.Memory > max_memory
    reason: Memory over
`
	rs, err := compileRules(mustAnalysisEnv(t), []byte(file), "test")
	require.NoError(t, err)
	limits := thresholdVars(analysis.Default())
	healthy := fleet.Sample{Requests: 100, ErrorRate: 0.01, P99: 100 * time.Millisecond, CPU: 0.5, Memory: 0.5}

	j, err := judgeReading(t.Context(), rs, healthy, limits)
	require.NoError(t, err)
	assert.Equal(t, judgement{passed: true, checks: []string{"cpu", "error_rate", "memory"}}, j)

	saturated := healthy
	saturated.CPU = 1
	j, err = judgeReading(t.Context(), rs, saturated, limits)
	require.NoError(t, err)
	assert.False(t, j.passed)
	assert.Equal(t, "CPU saturated", j.reason)
	assert.Equal(t, []string{"cpu"}, j.failed)

	scored := healthy
	scored.ErrorRate, scored.Memory = 0.5, 0.9
	j, err = judgeReading(t.Context(), rs, scored, limits)
	require.NoError(t, err)
	assert.False(t, j.passed)
	assert.Equal(t, "Error rate over; Memory over", j.reason)
	assert.Equal(t, []string{"error_rate", "memory"}, j.failed)

	// A rule that cannot judge fails as the rule's error, not as a
	// policy's: the prerequisites' lookup, which judges the region's
	// health, would read a *tai.PolicyError as a prerequisite rule that
	// failed, where a lookup that failed is retried.
	broken := strings.Replace(file, "expr: payload.Memory > max_memory", "expr: int(payload.Requests) / 0 > 0", 1)
	require.NotEqual(t, file, broken)
	rs, err = compileRules(mustAnalysisEnv(t), []byte(broken), "test")
	require.NoError(t, err)
	_, err = judgeReading(t.Context(), rs, healthy, limits)
	var rerr *taicel.RuleError
	require.ErrorAs(t, err, &rerr)
	assert.Equal(t, "memory", rerr.Rule)
	var perr *tai.PolicyError
	assert.False(t, errors.As(err, &perr), "%v", err)
}
