package check

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// madeSecrets are the files `make deploy-secrets` writes
// (TestMakeDeploySecrets runs it).
var madeSecrets = ComposeFiles{
	"deploy/secrets/payment_api_token", "deploy/secrets/payment_admin_token", "deploy/secrets/payment_audit_key",
	"deploy/secrets/deployment_api_token", "deploy/secrets/deployment_admin_token", "deploy/secrets/deployment_audit_key",
}

func TestComposeStack(t *testing.T) {
	root := repoRoot(t)
	p, err := LoadCompose(context.Background(), deployPath(t, "compose.yaml"))
	require.NoError(t, err)
	require.NoError(t, CheckCompose(p, root, madeSecrets))

	names := p.ServiceNames()
	for _, want := range []string{"nats-1", "nats-2", "nats-3", "redis", "prometheus", "alertmanager", "jaeger",
		"payment-1", "payment-2", "deployment-1", "deployment-2", "nats-exporter-1", "alert-sink"} {
		assert.Contains(t, names, want)
	}
	// The NATS cluster: three nodes of one configuration, each its own
	// store, with JetStream and routes to the others (the file itself is
	// checked by nats-server in TestNATSConfig).
	for _, n := range []string{"nats-1", "nats-2", "nats-3"} {
		s := p.Services[n]
		require.NotNil(t, s.Environment["SERVER_NAME"], n)
		assert.Equal(t, n, *s.Environment["SERVER_NAME"])
		assert.Equal(t, n, s.Hostname, "the routes name the nodes by host name")
	}
	// Both services: two replicas each, on the cluster, with their tokens
	// from secrets.
	for _, svc := range []string{"payment", "deployment"} {
		for _, r := range []string{"-1", "-2"} {
			s := p.Services[svc+r]
			nats := s.Environment["NATS_URL"]
			require.NotNil(t, nats, svc+r)
			for _, n := range []string{"nats-1", "nats-2", "nats-3"} {
				assert.Contains(t, *nats, "nats://"+n+":4222", "%s knows every node", svc+r)
			}
			assert.True(t, s.ReadOnly, "%s runs on a read-only root", svc+r)
			// It listens above 1024 as a user without privileges, and
			// needs no capability: none is left to a process that breaks in.
			assert.Equal(t, []string{"ALL"}, s.CapDrop, "%s drops every capability", svc+r)
			assert.Empty(t, s.CapAdd, svc+r)
			assert.Contains(t, s.SecurityOpt, "no-new-privileges:true", "%s gains no privilege through a setuid binary", svc+r)
			assert.Equal(t, "/run/secrets/"+svc+"_api_token", *s.Environment["API_TOKEN_FILE"])
			assert.Equal(t, "http://jaeger:4318", *s.Environment["OTEL_EXPORTER_OTLP_ENDPOINT"])
		}
	}
	assert.Equal(t, "redis://redis:6379/0", *p.Services["payment-1"].Environment["REDIS_URL"])
}

func TestComposeLoadIsStrict(t *testing.T) {
	orig, err := os.ReadFile(deployPath(t, "compose.yaml"))
	require.NoError(t, err)
	for _, tc := range []struct{ name, old, new, want string }{
		{"an unknown key", "    hostname: payment-1\n", "    hostname: payment-1\n    replicaz: 2\n", "replicaz"},
		{"a wrong type", "  read_only: true\n", "  read_only: [true]\n", "read_only"},
		{"an undefined secret", "secrets: [payment_api_token,", "secrets: [payment_api_tokn,", "payment_api_tokn"},
		{"an undefined volume", "volumes: [payment-1-data:/data]", "volumes: [payment-9-data:/data]", "payment-9-data"},
		{"depending on no service", "    redis: {condition: service_healthy}", "    rediss: {condition: service_healthy}", "rediss"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := strings.Replace(string(orig), tc.old, tc.new, 1)
			require.True(t, src != string(orig), "the case changes the file")
			file := filepath.Join(deployPath(t), "compose-test-"+strings.ReplaceAll(tc.name, " ", "-")+".yaml")
			require.NoError(t, os.WriteFile(file, []byte(src), 0o644))
			t.Cleanup(func() { _ = os.Remove(file) })
			_, err := LoadCompose(context.Background(), file)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
	_, err = LoadCompose(context.Background(), deployPath(t, "no-such-compose.yaml"))
	assert.Error(t, err)
}

func TestCheckComposeFindsEachProblem(t *testing.T) {
	root := repoRoot(t)
	load := func(t *testing.T, old, new string) error {
		t.Helper()
		orig, err := os.ReadFile(deployPath(t, "compose.yaml"))
		require.NoError(t, err)
		src := strings.Replace(string(orig), old, new, 1)
		require.True(t, src != string(orig), "the case changes the file")
		// Beside the original, so that its relative paths mean the same.
		f, err := os.CreateTemp(deployPath(t), "compose-test-*.yaml")
		require.NoError(t, err)
		t.Cleanup(func() { _ = os.Remove(f.Name()) })
		_, err = f.WriteString(src)
		require.NoError(t, err)
		require.NoError(t, f.Close())
		p, err := LoadCompose(context.Background(), f.Name())
		require.NoError(t, err)
		return CheckCompose(p, root, madeSecrets)
	}
	for _, tc := range []struct{ name, old, new, want string }{
		{"a missing Dockerfile", "dockerfile: deploy/docker/payment.Dockerfile", "dockerfile: deploy/docker/paymnet.Dockerfile", "Dockerfile deploy/docker/paymnet.Dockerfile does not exist"},
		{"a build context outside", "    context: ..\n    dockerfile: deploy/docker/payment", "    context: ../..\n    dockerfile: deploy/docker/payment", "lies outside the repository"},
		{"a missing config file", "./prometheus/prometheus.yml:/etc", "./prometheus/prometheus.yaml:/etc", "bind mount source deploy/prometheus/prometheus.yaml does not exist"},
		{"a port taken twice", `"127.0.0.1:3011:3001"`, `"127.0.0.1:3001:3001"`, "services payment-1 and payment-2 both publish 3001/tcp"},
		{"a port on every address clashing with one on loopback", `ports: ["127.0.0.1:9093:9093"]`, `ports: ["9090:9093"]`, "services alertmanager and prometheus both publish 9090/tcp"},
		{"a healthy wait on a service without a check", "    redis: {condition: service_healthy}", "    redis: {condition: service_healthy}\n    jaeger: {condition: service_healthy}", "waits for jaeger to be healthy, but jaeger has no health check"},
		{"a public address without a token", "    API_TOKEN_FILE: /run/secrets/payment_api_token\n", "", "ADDR :3001 listens beyond loopback without API_TOKEN_FILE"},
		{"a token file not mounted", "secrets: [payment_api_token, payment_admin_token, payment_audit_key]", "secrets: [payment_api_token, payment_audit_key]", "ADMIN_TOKEN_FILE=/run/secrets/payment_admin_token, but the service mounts no secret there"},
		{"two replicas on one data dir", "volumes: [payment-2-data:/data]", "volumes: [payment-1-data:/data]", "its DATA_DIR volume volume:payment-1-data is payment-1's as well"},
		{"a data dir in the container", "volumes: [deployment-2-data:/data]", "volumes: [deployment-2-data:/var/data]", "DATA_DIR /data is not a mounted volume"},
		{"two replicas of one name", "INSTANCE: deployment-2", "INSTANCE: deployment-1", "INSTANCE deployment-1 is deployment-1's as well"},
		{"an allow-list without the health check's host", "      INSTANCE: payment-1\n", "      INSTANCE: payment-1\n      ALLOWED_HOSTS: payment-1,payment.example\n", "service payment-1: ALLOWED_HOSTS payment-1,payment.example leaves out 127.0.0.1, which its health check asks"},
		{"a secret file nothing makes", "{file: ./secrets/payment_audit_key}", "{file: ./secrets/payment_audit.key}", "secret payment_audit_key: file deploy/secrets/payment_audit.key does not exist, and nothing makes it"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := load(t, tc.old, tc.new)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
	// A service built from a Dockerfile with a HEALTHCHECK may be waited
	// for as healthy; one whose Dockerfile has none may not.
	require.NoError(t, load(t, "  alert-sink:\n    image: mendhak/http-https-echo:37\n", "  alert-sink:\n    image: mendhak/http-https-echo:37\n    depends_on: {payment-1: {condition: service_healthy}}\n"))
	err := load(t, "  alert-sink:\n    image: mendhak/http-https-echo:37\n", "  alert-sink:\n    build: {context: .., dockerfile: go.mod}\n    depends_on: {payment-1: {condition: service_healthy}}\n  sink-2:\n    image: mendhak/http-https-echo:37\n    depends_on: {alert-sink: {condition: service_healthy}}\n")
	require.Error(t, err)
	assert.Contains(t, err.Error(), "sink-2 waits for alert-sink to be healthy, but alert-sink has no health check")
	// An allow-list that names the health check's host, in any spelling,
	// or allows every host, keeps the container healthy.
	require.NoError(t, load(t, "      INSTANCE: payment-1\n", "      INSTANCE: payment-1\n      ALLOWED_HOSTS: payment-1, 127.0.0.1:3001\n"))
	require.NoError(t, load(t, "      INSTANCE: deployment-2\n", "      INSTANCE: deployment-2\n      ALLOWED_HOSTS: \"*\"\n"))
	// The healthy case, through the same path.
	require.NoError(t, load(t, "    DEMO: \"true\"\n    LOG_LEVEL: info", "    DEMO: \"true\"\n    LOG_LEVEL: debug"))
}

// loadChanged loads deploy/compose.yaml with each replacement made once,
// from a file beside it, and checks it.
func loadChanged(t *testing.T, replace ...string) error {
	t.Helper()
	orig, err := os.ReadFile(deployPath(t, "compose.yaml"))
	require.NoError(t, err)
	src := string(orig)
	for i := 0; i+1 < len(replace); i += 2 {
		changed := strings.Replace(src, replace[i], replace[i+1], 1)
		require.NotEqual(t, src, changed, "the case changes the file: %q", replace[i])
		src = changed
	}
	f, err := os.CreateTemp(deployPath(t), "compose-test-*.yaml")
	require.NoError(t, err)
	t.Cleanup(func() { _ = os.Remove(f.Name()) })
	_, err = f.WriteString(src)
	require.NoError(t, err)
	require.NoError(t, f.Close())
	p, err := LoadCompose(context.Background(), f.Name())
	require.NoError(t, err)
	return CheckCompose(p, repoRoot(t), madeSecrets)
}

// TestCheckComposeDataDirAndTokens holds CheckCompose to where a service
// writes its data and where it reads its tokens from: a DATA_DIR on a
// volume mounted read-only cannot be written, and a token in the
// environment shows in docker inspect; each replica's own anonymous
// volume, or a volume mounted above DATA_DIR, holds the data dir.
func TestCheckComposeDataDirAndTokens(t *testing.T) {
	for _, tc := range []struct {
		name    string
		replace []string
		want    string
	}{
		{"a data dir on a read-only volume", []string{"volumes: [payment-1-data:/data]", `volumes: ["payment-1-data:/data:ro"]`}, "service payment-1: DATA_DIR /data is on volume:payment-1-data, mounted read-only"},
		{"a token in the environment", []string{"    API_TOKEN_FILE: /run/secrets/payment_api_token\n", "    API_TOKEN: s3cr3t-t0ken-s3cr3t-t0ken\n"}, "service payment-1: API_TOKEN is set in plain text in its environment"},
		{"an admin token in one replica's environment", []string{"      INSTANCE: deployment-2\n", "      INSTANCE: deployment-2\n      ADMIN_TOKEN: s3cr3t-t0ken-s3cr3t-t0ken\n"}, "service deployment-2: ADMIN_TOKEN is set in plain text in its environment"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := loadChanged(t, tc.replace...)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
			assert.NotContains(t, err.Error(), "s3cr3t", "the error shows no token")
		})
	}
	for _, tc := range []struct {
		name    string
		replace []string
	}{
		{"an anonymous volume for each replica", []string{"volumes: [payment-1-data:/data]", "volumes: [/data]", "volumes: [payment-2-data:/data]", "volumes: [/data]"}},
		{"a volume mounted above the data dir", []string{"    DATA_DIR: /data\n    LOG_LEVEL: info\n  secrets: [payment", "    DATA_DIR: /data/payment\n    LOG_LEVEL: info\n  secrets: [payment"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			assert.NoError(t, loadChanged(t, tc.replace...))
		})
	}
}

// TestLoopbackAsTheServicesReadIt: an ADDR is loopback for the check as
// for the services (httpapi.IsLoopback), localhost in any case among
// them; LOCALHOST was reported as listening beyond loopback, and the
// service as refusing to start, though it starts.
func TestLoopbackAsTheServicesReadIt(t *testing.T) {
	for addr, want := range map[string]bool{
		"localhost:3001": true, "LOCALHOST:3001": true, "LocalHost:3001": true,
		"127.0.0.1:3001": true, "127.1.2.3:3001": true, "[::1]:3001": true,
		":3001": false, "0.0.0.0:3001": false, "[::]:3001": false, "example.com:3001": false,
		"localhost.example.com:3001": false, "localhost": false,
	} {
		assert.Equal(t, want, loopback(addr), addr)
	}
}
