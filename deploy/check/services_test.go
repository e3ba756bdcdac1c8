package check

import (
	"bytes"
	"context"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/taipattern/taikit/deploy/check/stack"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
)

// goRun runs go run ./<service> with args from the examples module's
// directory — the same build with the workspace (go.work) or without it
// (GOWORK=off) — and returns its stdout, its stderr and how it ended.
// Skipped with -short: it builds the service.
func goRun(t *testing.T, service string, args ...string) (string, string, error) {
	t.Helper()
	if testing.Short() {
		t.Skip("builds the service; skipped with -short")
	}
	goBin, err := exec.LookPath("go")
	require.NoError(t, err, "the go command")
	ctx, cancel := context.WithTimeout(context.Background(), 9*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, goBin, append([]string{"run", "./" + service}, args...)...)
	cmd.Dir = filepath.Join(repoRoot(t), "examples")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err = cmd.Run()
	return stdout.String(), stderr.String(), err
}

// envName is a variable a flag's help names: "(NATS_URL)", or
// "(FRAUD_STOPS_LINE=true)".
var envName = regexp.MustCompile(`\(([A-Z][A-Z0-9_]+)(?:=[^)]*)?\)`)

// serviceVariables returns the environment variables a service reads, from
// its -h.
func serviceVariables(t *testing.T, service string) []string {
	t.Helper()
	_, usage, _ := goRun(t, service, "-h") // -h exits 2 after printing the usage
	require.Contains(t, usage, "Usage of "+service)
	var vars []string
	for _, m := range envName.FindAllStringSubmatch(usage, -1) {
		vars = append(vars, m[1])
	}
	require.Contains(t, vars, "NATS_URL")
	// Read by the Go runtime and OpenTelemetry's SDK, not by a flag.
	return append(vars, "GOMEMLIMIT", "OTEL_SERVICE_NAME", "OTEL_RESOURCE_ATTRIBUTES")
}

// TestServicesReadEveryVariableGiven holds the Compose stack, the
// Kubernetes manifests and the local stack (make up) to the services'
// flags: every variable they set is one the service reads, so a misspelt
// one (REDIS_ULR), or one a service has no flag for, cannot be ignored in
// silence.
func TestServicesReadEveryVariableGiven(t *testing.T) {
	p, err := loadStack(t)
	require.NoError(t, err)
	ms := manifests(t)
	configMaps := map[string]*corev1.ConfigMap{}
	for _, m := range ms {
		if cm, ok := m.Object.(*corev1.ConfigMap); ok {
			configMaps[cm.Name] = cm
		}
	}
	for _, svc := range []string{"payment", "deployment"} {
		t.Run(svc, func(t *testing.T) {
			reads := serviceVariables(t, svc)
			image := "taikit/" + svc + ":dev"
			n := 0
			for name, s := range p.Services {
				if s.Image != image {
					continue
				}
				n++
				for k := range s.Environment {
					assert.Contains(t, reads, k, "compose service %s sets %s, which %s does not read", name, k, svc)
				}
			}
			assert.Equal(t, 2, n, "two replicas of %s in the stack", image)
			found := false
			for _, m := range ms {
				d, ok := m.Object.(*appsv1.Deployment)
				if !ok || d.Name != svc {
					continue
				}
				found = true
				for _, c := range d.Spec.Template.Spec.Containers {
					assert.Equal(t, image, c.Image, "the manifests run the image the stack builds")
					for _, e := range c.Env {
						if e.Name == "POD_IP" { // only for $(POD_IP) in ALLOWED_HOSTS
							continue
						}
						assert.Contains(t, reads, e.Name, "Deployment %s sets %s, which %s does not read", svc, e.Name, svc)
					}
					for _, ef := range c.EnvFrom {
						if ef.ConfigMapRef == nil {
							continue
						}
						cm := configMaps[ef.ConfigMapRef.Name]
						require.NotNil(t, cm)
						for k := range cm.Data {
							assert.True(t, slices.Contains(reads, k), "ConfigMap %s sets %s, which %s does not read", cm.Name, k, svc)
						}
					}
				}
			}
			assert.True(t, found, "a Deployment %s", svc)
			cfg := stack.Config{Dir: t.TempDir(), Repo: repoRoot(t), Bin: t.TempDir(), Self: "stack"}
			n = 0
			for _, c := range cfg.Components() {
				if filepath.Base(c.Bin) != svc {
					continue
				}
				n++
				for _, e := range c.Env {
					k, _, _ := strings.Cut(e, "=")
					assert.Contains(t, reads, k, "the local stack's %s sets %s, which %s does not read", c.Name, k, svc)
				}
			}
			assert.Equal(t, 2, n, "two replicas of %s in the local stack", svc)
		})
	}
}
