package check

import (
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/taipattern/taikit/deploy/check/stack"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
)

// sourceSeconds reads a whole number of seconds from a service's source,
// the first submatch of re in the file at rel under the repository's root.
func sourceSeconds(t *testing.T, rel string, re *regexp.Regexp) time.Duration {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot(t), filepath.FromSlash(rel)))
	require.NoError(t, err)
	m := re.FindSubmatch(b)
	require.NotNil(t, m, "%s no longer matches %s: update stopBound to what the code does now", rel, re)
	n, err := strconv.Atoi(string(m[1]))
	require.NoError(t, err)
	return time.Duration(n) * time.Second
}

// stopBound is the longest a service's graceful stop may take, read from
// the code that stops it (examples/internal/svc.Serve): the requests in
// flight get ShutdownTimeout, or the server's write timeout when it is
// longer; those still running then are cut off and their handlers get up
// to CutOffGrace to return; and then the service's close gets
// ShutdownTimeout of its own.
// The payment server's write timeout is its request timeout (30s unless
// REQUEST_TIMEOUT says otherwise) and a margin; the deployment server has
// none (its event streams stay open).
func stopBound(t *testing.T, service string, requestTimeout string) time.Duration {
	t.Helper()
	shutdown := sourceSeconds(t, "examples/internal/svc/run.go", regexp.MustCompile(`const ShutdownTimeout = (\d+) \* time\.Second`))
	var write time.Duration
	switch service {
	case "payment":
		rt := 30 * time.Second
		if requestTimeout != "" {
			var err error
			rt, err = time.ParseDuration(requestTimeout)
			require.NoError(t, err, "REQUEST_TIMEOUT")
		}
		// WriteTimeout is the request timeout and writeSlack; a payment
		// begun before the stop moves its answer's deadline to the same
		// from when its body was read, which is before the stop (one
		// whose body comes later is refused at once).
		main := "examples/payment/main.go"
		b, err := os.ReadFile(filepath.Join(repoRoot(t), filepath.FromSlash(main)))
		require.NoError(t, err)
		require.Regexp(t, `WriteTimeout:\s+cfg\.RequestTimeout \+ writeSlack,`, string(b), "%s: update stopBound to what the code does now", main)
		write = rt + sourceSeconds(t, main, regexp.MustCompile(`const writeSlack = (\d+) \* time\.Second`))
	case "deployment":
		write = sourceSeconds(t, "examples/deployment/main.go", regexp.MustCompile(`WriteTimeout:\s+(\d+),`))
	default:
		t.Fatalf("no stop bound known for %s", service)
	}
	cutOff := sourceSeconds(t, "examples/internal/svc/run.go", regexp.MustCompile(`const CutOffGrace = (\d+) \* time\.Second`))
	return max(shutdown, write) + cutOff + shutdown
}

// TestStopGraceCoversTheGracefulStop holds the time Kubernetes and Compose
// give a replica between SIGTERM and SIGKILL to the services' own bound on
// a graceful stop: a replica killed before it ends cuts off the answers to
// requests it has taken and leaves its close (the confirmation consumer's
// drain, the audit trail's flush) unfinished.
func TestStopGraceCoversTheGracefulStop(t *testing.T) {
	ms := manifests(t)
	configMaps := map[string]*corev1.ConfigMap{}
	for _, m := range ms {
		if cm, ok := m.Object.(*corev1.ConfigMap); ok {
			configMaps[cm.Namespace+"/"+cm.Name] = cm
		}
	}
	for _, m := range ms {
		d, ok := m.Object.(*appsv1.Deployment)
		if !ok {
			continue
		}
		pod := d.Spec.Template.Spec
		require.NotNil(t, pod.TerminationGracePeriodSeconds, d.Name)
		grace := time.Duration(*pod.TerminationGracePeriodSeconds) * time.Second
		for _, c := range pod.Containers {
			// REQUEST_TIMEOUT as the container gets it: from env, or
			// from the ConfigMap.
			rt, given := containerEnv(c, d.Namespace, configMaps, nil)["REQUEST_TIMEOUT"]
			require.True(t, !given || rt.known, "Deployment %s: REQUEST_TIMEOUT%s is not known here", d.Name, rt.origin())
			requestTimeout := rt.value
			// The preStop hook runs first, inside the same grace period,
			// while the server still takes requests.
			var preStop time.Duration
			if c.Lifecycle != nil && c.Lifecycle.PreStop != nil && c.Lifecycle.PreStop.Sleep != nil {
				preStop = time.Duration(c.Lifecycle.PreStop.Sleep.Seconds) * time.Second
			}
			need := preStop + stopBound(t, d.Name, requestTimeout)
			assert.Greater(t, grace, need, "Deployment %s: terminationGracePeriodSeconds %s does not cover the preStop sleep and a graceful stop (%s)", d.Name, grace, need)
		}
	}

	p, err := loadStack(t)
	require.NoError(t, err)
	n := 0
	for name, s := range p.Services {
		service := map[string]string{"taikit/payment:dev": "payment", "taikit/deployment:dev": "deployment"}[s.Image]
		if service == "" {
			continue
		}
		n++
		requestTimeout := ""
		if v := s.Environment["REQUEST_TIMEOUT"]; v != nil {
			requestTimeout = *v
		}
		need := stopBound(t, service, requestTimeout)
		require.NotNil(t, s.StopGracePeriod, "%s: no stop_grace_period, and Compose's default is 10s", name)
		assert.Greater(t, time.Duration(*s.StopGracePeriod), need, "compose service %s: stop_grace_period %s does not cover a graceful stop (%s)", name, time.Duration(*s.StopGracePeriod), need)
	}
	assert.Equal(t, 4, n, "both services' replicas")
}

// TestStackDownCoversTheGracefulStop holds the time make down (the local
// stack's Down, with no -grace given) gives each service replica between
// SIGTERM and SIGKILL to the services' own bound on a graceful stop, as
// TestStopGraceCoversTheGracefulStop holds Kubernetes and Compose to it.
func TestStackDownCoversTheGracefulStop(t *testing.T) {
	cfg := stack.Config{Dir: t.TempDir(), Repo: repoRoot(t), Bin: t.TempDir(), Self: "stack"}
	n := 0
	for _, c := range cfg.Components() {
		service, _, ok := strings.Cut(c.Name, "-")
		if !ok || (service != "payment" && service != "deployment") {
			continue
		}
		n++
		requestTimeout := ""
		for _, e := range c.Env {
			if v, ok := strings.CutPrefix(e, "REQUEST_TIMEOUT="); ok {
				requestTimeout = v
			}
		}
		need := stopBound(t, service, requestTimeout)
		grace := c.StopGrace
		if grace == 0 {
			grace = 30 * time.Second // Down's default
		}
		assert.Greater(t, grace, need, "stack component %s: down sends SIGKILL after %s, before a graceful stop may end (%s)", c.Name, grace, need)
	}
	assert.Equal(t, 4, n, "both services' replicas")
}
