package check

import (
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
)

// startupRetryFor is how long a service retries a step of its start that
// JetStream does not answer (a cluster electing its leaders), read from
// the code that retries it (examples/internal/svc.StartupRetryFor).
func startupRetryFor(t *testing.T) time.Duration {
	t.Helper()
	const rel = "examples/internal/svc/retry.go"
	b, err := os.ReadFile(filepath.Join(repoRoot(t), filepath.FromSlash(rel)))
	require.NoError(t, err)
	m := regexp.MustCompile(`const StartupRetryFor = (?:(\d+) \* )?time\.(Second|Minute)\n`).FindSubmatch(b)
	require.NotNil(t, m, "%s no longer matches: update startupRetryFor to what the code does now", rel)
	n := 1
	if len(m[1]) > 0 {
		n, err = strconv.Atoi(string(m[1]))
		require.NoError(t, err)
	}
	unit := time.Second
	if string(m[2]) == "Minute" {
		unit = time.Minute
	}
	return time.Duration(n) * unit
}

// probeBudget is how long after a container starts the kubelet kills it
// when every try of the probe fails: the initial delay, then the last of
// failureThreshold tries, each periodSeconds apart, timing out (the API's
// defaults where a field is not set).
func probeBudget(pr *corev1.Probe) time.Duration {
	period, threshold, timeout := pr.PeriodSeconds, pr.FailureThreshold, pr.TimeoutSeconds
	if period == 0 {
		period = 10
	}
	if threshold == 0 {
		threshold = 3
	}
	if timeout == 0 {
		timeout = 1
	}
	return time.Duration(pr.InitialDelaySeconds+(threshold-1)*period+timeout) * time.Second
}

// TestStartupProbeCoversTheStartupRetries holds the time the kubelet gives
// a replica to start to the services' own retries of their start: a
// service whose JetStream is electing its leaders retries each stream and
// bucket it sets up for StartupRetryFor, and a startup probe that gives
// up first kills a replica on its way to ready, in the middle of its
// setup, rather than let it start or fail with its own error.
func TestStartupProbeCoversTheStartupRetries(t *testing.T) {
	retry := startupRetryFor(t)
	n := 0
	for _, m := range manifests(t) {
		d, ok := m.Object.(*appsv1.Deployment)
		if !ok {
			continue
		}
		for _, c := range d.Spec.Template.Spec.Containers {
			pr := c.StartupProbe
			if pr == nil {
				// Liveness then runs from the start.
				pr = c.LivenessProbe
			}
			require.NotNil(t, pr, "Deployment %s container %s", d.Name, c.Name)
			n++
			assert.Greater(t, probeBudget(pr), retry, "Deployment %s container %s: the kubelet kills a replica that has not started within %s, but a step of its start is retried for %s", d.Name, c.Name, probeBudget(pr), retry)
		}
	}
	assert.Equal(t, 2, n, "both services' containers")
}

func TestProbeBudget(t *testing.T) {
	assert.Equal(t, 21*time.Second, probeBudget(&corev1.Probe{}), "the API's defaults: 3 tries 10s apart, 1s each")
	assert.Equal(t, 59*time.Second, probeBudget(&corev1.Probe{PeriodSeconds: 2, FailureThreshold: 30}))
	assert.Equal(t, 20*time.Second, probeBudget(&corev1.Probe{InitialDelaySeconds: 5, PeriodSeconds: 5, FailureThreshold: 3, TimeoutSeconds: 5}))
}
