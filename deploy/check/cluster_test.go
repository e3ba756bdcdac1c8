package check

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
)

// freePort returns a loopback TCP port that was free a moment ago.
func freePort(t *testing.T) int { return freePorts(t, 1)[0] }

// freePorts returns n different loopback TCP ports that were free a
// moment ago: each is held until all are found, so that the system cannot
// hand out one of them twice, as separate freePort calls may.
func freePorts(t *testing.T, n int) []int {
	t.Helper()
	ports := make([]int, n)
	for i := range ports {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		defer l.Close()
		ports[i] = l.Addr().(*net.TCPAddr).Port
	}
	return ports
}

// startProcess starts bin and stops it (SIGINT, then SIGKILL after 30s)
// when the test ends. Its output goes to a file, shown if the test fails.
func startProcess(t *testing.T, name string, env []string, bin string, args ...string) {
	t.Helper()
	logFile := filepath.Join(t.TempDir(), name+".log")
	out, err := os.Create(logFile)
	require.NoError(t, err)
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = out, out
	require.NoError(t, cmd.Start(), name)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGINT)
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		_ = out.Close()
		if t.Failed() {
			b, _ := os.ReadFile(logFile)
			t.Logf("%s's output:\n%s", name, tail(string(b), 40))
		}
	})
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// waitOK polls url until it answers 200, or fails the test at the deadline.
func waitOK(t *testing.T, url string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	var last string
	for time.Now().Before(deadline) {
		resp, err := http.Get(url)
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
			last = fmt.Sprintf("%d %s", resp.StatusCode, b)
		} else {
			last = err.Error()
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s did not answer 200 within %v; last: %s", url, within, last)
}

// natsCluster starts three nats-servers with deploy/nats/nats.conf, each
// on ports of its own on loopback (the stack's host names and fixed ports
// overridden on the command line), and returns the client URLs and the
// monitoring URLs once every node reports healthy.
func natsCluster(t *testing.T) (clients, monitors []string) {
	t.Helper()
	bin := tool(t, "nats-server", "nats-server")
	orig, err := os.ReadFile(deployPath(t, "nats", "nats.conf"))
	require.NoError(t, err)
	type node struct{ client, monitor, cluster int }
	nodes := make([]node, 3)
	ports := freePorts(t, 3*len(nodes))
	var routes []string
	for i := range nodes {
		nodes[i] = node{ports[3*i], ports[3*i+1], ports[3*i+2]}
		routes = append(routes, fmt.Sprintf("nats-route://127.0.0.1:%d", nodes[i].cluster))
	}
	for i, n := range nodes {
		name := fmt.Sprintf("nats-%d", i+1)
		// The store directory is the one setting the command line cannot
		// override: the copy differs from the file in it alone.
		require.Equal(t, 1, strings.Count(string(orig), "store_dir: /data\n"))
		conf := filepath.Join(t.TempDir(), "nats.conf")
		require.NoError(t, os.WriteFile(conf, []byte(strings.Replace(string(orig), "store_dir: /data\n", "store_dir: \""+t.TempDir()+"\"\n", 1)), 0o644))
		startProcess(t, name, []string{"SERVER_NAME=" + name}, bin, "-c", conf,
			"-a", "127.0.0.1", "-p", fmt.Sprint(n.client), "-m", fmt.Sprint(n.monitor),
			"--cluster", fmt.Sprintf("nats://127.0.0.1:%d", n.cluster), "--routes", strings.Join(routes, ","))
		clients = append(clients, fmt.Sprintf("nats://127.0.0.1:%d", n.client))
		monitors = append(monitors, fmt.Sprintf("http://127.0.0.1:%d", n.monitor))
	}
	// Plain /healthz: JetStream up and the cluster's meta leader known.
	// Before that, creating a stream times out, and a service starting
	// then exits (a restart policy brings it back).
	for _, m := range monitors {
		waitOK(t, m+"/healthz", time.Minute)
	}
	return clients, monitors
}

// streams returns every JetStream stream the cluster's nodes host, with
// its replicas.
func streams(t *testing.T, monitors []string) map[string]int {
	t.Helper()
	out := map[string]int{}
	for _, m := range monitors {
		resp, err := http.Get(m + "/jsz?accounts=true&streams=true&config=true")
		require.NoError(t, err)
		var jsz struct {
			AccountDetails []struct {
				Streams []struct {
					Name   string `json:"name"`
					Config struct {
						Replicas int `json:"num_replicas"`
					} `json:"config"`
				} `json:"stream_detail"`
			} `json:"account_details"`
		}
		err = json.NewDecoder(resp.Body).Decode(&jsz)
		_ = resp.Body.Close()
		require.NoError(t, err)
		for _, a := range jsz.AccountDetails {
			for _, s := range a.Streams {
				out[s.Name] = s.Config.Replicas
			}
		}
	}
	return out
}

// buildService builds an example service into a temporary directory.
func buildService(t *testing.T, service string) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds the services; skipped with -short")
	}
	goBin, err := exec.LookPath("go")
	require.NoError(t, err)
	bin := filepath.Join(t.TempDir(), service)
	ctx, cancel := context.WithTimeout(context.Background(), 9*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, goBin, "build", "-o", bin, "./"+service)
	cmd.Dir = filepath.Join(repoRoot(t), "examples")
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", out)
	return bin
}

// TestServicesOnTheNATSCluster runs both services as the stack does —
// two replicas each, tokens from files, NATS_URL listing the three nodes
// of a cluster started from deploy/nats/nats.conf, and Redis for payment —
// checks that the Host names the Kubernetes manifests allow are answered
// (and others refused), takes a payment and a deployment, and checks that the streams and
// buckets docs/operations.md lists are the ones the services made, each
// on the three nodes (NATS_REPLICAS=3, as the stack sets it).
func TestServicesOnTheNATSCluster(t *testing.T) {
	redisBin := tool(t, "redis-server", "redis-server")
	payment, deployment := buildService(t, "payment"), buildService(t, "deployment")
	clients, monitors := natsCluster(t)
	redisPort := freePort(t)
	startProcess(t, "redis", nil, redisBin, "--port", fmt.Sprint(redisPort), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no")

	secrets := t.TempDir()
	token := func(name string) string {
		f := filepath.Join(secrets, name)
		require.NoError(t, os.WriteFile(f, []byte(name+"-0123456789abcdef"), 0o600))
		return f
	}
	type replica struct{ url, apiToken string }
	start := func(svc, bin string, n int, extra ...string) replica {
		port := freePort(t)
		inst := fmt.Sprintf("%s-%d", svc, n)
		env := append([]string{
			fmt.Sprintf("ADDR=127.0.0.1:%d", port),
			"API_TOKEN_FILE=" + token(inst+"_api_token"),
			"ADMIN_TOKEN_FILE=" + token(inst+"_admin_token"),
			"AUDIT_KEY_FILE=" + token(inst+"_audit_key"),
			"NATS_URL=" + strings.Join(clients, ","),
			"NATS_REPLICAS=3",
			"DATA_DIR=" + t.TempDir(),
			"INSTANCE=" + inst,
			"LOG_LEVEL=warn",
		}, extra...)
		startProcess(t, inst, env, bin)
		url := fmt.Sprintf("http://127.0.0.1:%d", port)
		waitOK(t, url+"/readyz", 2*time.Minute)
		b, err := os.ReadFile(filepath.Join(secrets, inst+"_api_token"))
		require.NoError(t, err)
		return replica{url, string(b)}
	}
	// The second replica of each answers the Host names the Kubernetes
	// manifests allow, the pod's IP being loopback here.
	allowed := map[string]string{}
	for _, m := range manifests(t) {
		if d, ok := m.Object.(*appsv1.Deployment); ok {
			for _, e := range d.Spec.Template.Spec.Containers[0].Env {
				if e.Name == "ALLOWED_HOSTS" {
					allowed[d.Name] = strings.ReplaceAll(e.Value, "$(POD_IP)", "127.0.0.1")
				}
			}
		}
	}
	require.Len(t, allowed, 2)
	redisURL := fmt.Sprintf("REDIS_URL=redis://127.0.0.1:%d/0", redisPort)
	pay := []replica{start("payment", payment, 1, redisURL), start("payment", payment, 2, redisURL, "ALLOWED_HOSTS="+allowed["payment"])}
	dep := []replica{start("deployment", deployment, 1, "FLEET=sim", "DEMO=true"), start("deployment", deployment, 2, "FLEET=sim", "DEMO=true", "ALLOWED_HOSTS="+allowed["deployment"])}
	for svc, r := range map[string]replica{"payment": pay[1], "deployment": dep[1]} {
		for host, want := range map[string]int{
			svc + ".taikit.svc.cluster.local:3001": http.StatusOK, // the Service's name (the port is not compared)
			svc + ":8080":                          http.StatusOK,
			"127.0.0.1:9999":                       http.StatusOK, // the pod's IP, as the kubelet's probes send it
			"attacker.example":                     http.StatusMisdirectedRequest,
		} {
			req, err := http.NewRequest(http.MethodGet, r.url+"/healthz", nil)
			require.NoError(t, err)
			req.Host = host
			resp, err := http.DefaultClient.Do(req)
			require.NoError(t, err)
			_ = resp.Body.Close()
			assert.Equal(t, want, resp.StatusCode, "%s with Host %s", svc, host)
		}
	}

	post := func(r replica, path, body string, header ...string) (int, string) {
		req, err := http.NewRequest(http.MethodPost, r.url+path, strings.NewReader(body))
		require.NoError(t, err)
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+r.apiToken)
		for i := 0; i+1 < len(header); i += 2 {
			req.Header.Set(header[i], header[i+1])
		}
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		return resp.StatusCode, string(b)
	}
	for i, r := range pay {
		code, body := post(r, "/payment", fmt.Sprintf(`{"amount": 10.5, "customer_id": "cust_ops_%d", "currency": "USD", "merchant_id": "merc_ops"}`, i))
		assert.Equal(t, http.StatusOK, code, body)
		assert.Contains(t, body, `"status":"SUCCESS"`)
	}
	code, body := post(dep[1], "/deploy", `{"service":"api-service","version":"v2.0.0","target_region":"us-west-2","rollout_strategy":"canary"}`, "Prefer", "respond-async")
	assert.Equal(t, http.StatusAccepted, code, body)

	got := streams(t, monitors)
	for _, s := range []string{
		"KV_payments", "KV_payment_idempotency", "KV_payment_audit_heads", "PAYMENT_CONFIRMATIONS", "PAYMENT_CONFIRMATIONS_DEAD",
		"KV_deployments", "KV_deploy_locks", "KV_deploy_stable", "KV_deploy_capacity", "KV_deploy_control", "DEPLOYMENTS", "DEPLOYMENTS_DEAD",
	} {
		replicas, ok := got[s]
		if assert.True(t, ok, "stream %s is on the cluster (it has %v)", s, slices.Sorted(func(yield func(string) bool) {
			for k := range got {
				if !yield(k) {
					return
				}
			}
		})) {
			assert.Equal(t, 3, replicas, "stream %s: NATS_REPLICAS=3 puts every stream on the three nodes", s)
		}
	}
	// With Redis, the fraud state is Redis's: no payment_customers bucket.
	assert.NotContains(t, got, "KV_payment_customers")
}
