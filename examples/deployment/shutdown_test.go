package main

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestShutdownHoldsRollouts: a rollout running when the service begins to
// shut down starts no further stage, though its stage's bake ends during
// the consumer's drain: the traffic stays at the canary's share. The
// drain's deadline is logged as the normal end it is, not as an error;
// started again on the same data, the service rolls the rollout back.
func TestShutdownHoldsRollouts(t *testing.T) {
	dir := t.TempDir()
	// The canary's bake ends within the drain (one second).
	args := []string{"-stages", "canary:5:500ms,staging:25:1h,prod:100:0s", "-health-interval", "25ms", "-min-requests", "0"}
	ts := startServiceIn(t, dir, args...)
	id := deploy(t, ts.URL, map[string]any{"service": "api-service", "version": "v2.0.0", "target_region": "us-west-2"}, "Prefer", "respond-async").deployment(t).ID
	waitFor(t, ts.URL, id, func(d Deployment) bool { return d.Results[0].Stage == "canary" })
	began := time.Now()
	ts.shutdown()
	require.Less(t, time.Since(began), 5*time.Second, "the drain lasts a second")
	_, _, pct := ts.target.(interface {
		Split(string, string) (string, string, float64)
	}).Split("api-service", "us-west-2")
	assert.Equal(t, 5.0, pct, "the new version's share when the service stopped")
	logs := ts.logs.String()
	assert.NotContains(t, logs, "level=ERROR")
	assert.Contains(t, logs, `level=WARN msg="rollout cut off by the shutdown; the next start takes it up"`)
	assert.Contains(t, logs, `level=INFO msg="rollout consumer stopped with rollouts running; the next start takes them up"`)

	ts = startServiceIn(t, dir, args...)
	d := waitFor(t, ts.URL, id, ended)
	assert.Equal(t, StatusRolledBack, d.Status)
	require.NotNil(t, d.ErrorMessage)
	assert.Contains(t, *d.ErrorMessage, "Interrupted at stage canary by a restart")
	for _, st := range d.Results[0].Stages {
		assert.True(t, st.StartedAt.Before(began), "stage %s started %v after the shutdown began", st.Name, st.StartedAt.Sub(began))
	}
	assert.Len(t, d.Results[0].Stages, 1, "the canary only")
}
