package stack_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// jaegerBinary returns the jaeger the stack runs: TAIKIT_JAEGER, or
// bin/jaeger at the repository's root (deploy/local/install builds it).
func jaegerBinary(t *testing.T) string {
	t.Helper()
	p := os.Getenv("TAIKIT_JAEGER")
	if p == "" {
		p = filepath.Join(repoRoot(t), "bin", "jaeger")
	}
	if _, err := os.Stat(p); err != nil {
		if os.Getenv("TAIKIT_REQUIRE_SERVERS") == "1" {
			t.Fatalf("jaeger is required (TAIKIT_REQUIRE_SERVERS=1): %v; deploy/local/install builds it", err)
		}
		t.Skipf("jaeger not found at %s; deploy/local/install builds it", p)
	}
	return p
}

// freeBase returns a port base under which the stack's ports are free.
func freeBase(t *testing.T) int {
	t.Helper()
	for base := 21000; base < 60000; base += 1000 {
		ok := true
		for p := base; p < base+40 && ok; p++ {
			l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
			if err != nil {
				ok = false
				continue
			}
			l.Close()
		}
		if ok {
			return base
		}
	}
	t.Fatal("no free range of ports")
	return 0
}

// TestStackUpStatusDown runs the whole local stack from real binaries, as
// make up does, uses it, and stops it: a payment taken by one replica is
// read from the other through the three-node cluster; Prometheus scrapes
// every target; an alert reaches the sink through Alertmanager; the
// payment's trace reaches Jaeger; down stops every process by PID.
func TestStackUpStatusDown(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the whole stack")
	}
	for _, b := range []string{"nats-server", "redis-server", "prometheus", "prometheus-alertmanager"} {
		need(t, b)
	}
	jaeger := jaegerBinary(t)
	bin := t.TempDir()
	root := repoRoot(t)
	for pkg, name := range map[string]string{"./examples/payment": "payment", "./examples/deployment": "deployment", "./deploy/check/cmd/stack": "stack"} {
		build := exec.Command("go", "build", "-o", filepath.Join(bin, name), pkg)
		build.Dir = root
		out, err := build.CombinedOutput()
		require.NoError(t, err, "go build %s: %s", pkg, out)
	}
	require.NoError(t, os.Symlink(jaeger, filepath.Join(bin, "jaeger")))
	dir := t.TempDir()
	base := freeBase(t)
	port := func(i int) string { return "127.0.0.1:" + strconv.Itoa(base+i) }
	stackCmd := func(ctx context.Context, args ...string) (string, error) {
		cmd := exec.CommandContext(ctx, filepath.Join(bin, "stack"),
			append([]string{"-dir", dir, "-bin", bin, "-repo", root, "-port-base", strconv.Itoa(base)}, args...)...)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	t.Cleanup(func() {
		if out, err := stackCmd(context.Background(), "down"); err != nil {
			t.Errorf("stack down: %v\n%s", err, out)
		}
	})

	out, err := stackCmd(ctx, "up")
	require.NoError(t, err, "stack up:\n%s", out)
	t.Logf("stack up:\n%s", out)
	out, err = stackCmd(ctx, "up")
	require.NoError(t, err, "a second up starts nothing:\n%s", out)
	assert.Equal(t, 13, strings.Count(out, "already running"), out)

	out, err = stackCmd(ctx, "status")
	require.NoError(t, err, "stack status:\n%s", out)
	assert.Equal(t, 13, strings.Count(out, "healthy"), out)

	// Ports by their index in the stack's table: payment-1 15, payment-2 16,
	// prometheus 19, alertmanager 20, sink 22, jaeger-ui 10.
	payment1, payment2 := "http://"+port(15), "http://"+port(16)
	prom, am, sink, jaegerUI := "http://"+port(19), "http://"+port(20), "http://"+port(22), "http://"+port(10)

	// A payment through one replica, read through the other.
	var pay struct {
		ID     string `json:"transaction_id"`
		Status string `json:"status"`
	}
	body := postJSON(t, payment1+"/payment", `{"amount": 12.5, "customer_id": "cust_stack", "currency": "EUR", "merchant_id": "merc_1"}`, http.StatusOK)
	require.NoError(t, json.Unmarshal(body, &pay))
	require.Equal(t, "SUCCESS", pay.Status)
	got := getBody(t, payment2+"/payment/"+pay.ID)
	assert.Contains(t, string(got), pay.ID)

	// Prometheus scrapes every target, the NATS exporter included.
	var targets string
	require.Eventually(t, func() bool {
		var res struct {
			Data struct {
				ActiveTargets []struct {
					Health    string `json:"health"`
					ScrapeURL string `json:"scrapeUrl"`
					LastError string `json:"lastError"`
				} `json:"activeTargets"`
			} `json:"data"`
		}
		if json.Unmarshal(getBody(t, prom+"/api/v1/targets"), &res) != nil {
			return false
		}
		up := 0
		targets = ""
		for _, tg := range res.Data.ActiveTargets {
			targets += fmt.Sprintf("%s %s %s\n", tg.ScrapeURL, tg.Health, tg.LastError)
			if tg.Health == "up" {
				up++
			}
		}
		return up == 8 && len(res.Data.ActiveTargets) == 8
	}, 60*time.Second, time.Second, "all eight scrape targets up: both services' replicas, the NATS exporter, Alertmanager, Jaeger, Prometheus; last seen:\n%s", &targets)
	q := getBody(t, prom+"/api/v1/query?query="+`sum(gnatsd_jsz_meta_cluster_size)`)
	assert.Contains(t, string(q), `"9"`, "three nodes each see a meta group of three: %s", q)

	// An alert of severity page reaches the sink's /page through Alertmanager.
	alert := fmt.Sprintf(`[{"labels":{"alertname":"StackTest","severity":"page","service":"payment"},"startsAt":%q}]`, time.Now().UTC().Format(time.RFC3339))
	postJSON(t, am+"/api/v2/alerts", alert, http.StatusOK)
	require.Eventually(t, func() bool {
		return strings.Contains(string(getBody(t, sink+"/notifications")), `"receiver":"page","status":"firing","alerts":["StackTest (firing, severity page)"]`)
	}, 60*time.Second, 500*time.Millisecond, "the alert reaches the sink")

	// The payment's trace reaches Jaeger.
	require.Eventually(t, func() bool {
		return strings.Contains(string(getBody(t, jaegerUI+"/api/services")), `"payment"`)
	}, 60*time.Second, 500*time.Millisecond, "payment's spans reach Jaeger")

	// Down stops every process it started, by PID.
	pids := map[string]int{}
	entries, err := os.ReadDir(filepath.Join(dir, "pids"))
	require.NoError(t, err)
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(dir, "pids", e.Name()))
		require.NoError(t, err)
		pid, err := strconv.Atoi(strings.Fields(string(b))[0])
		require.NoError(t, err)
		pids[e.Name()] = pid
	}
	require.Len(t, pids, 13)
	out, err = stackCmd(ctx, "down")
	require.NoError(t, err, "stack down:\n%s", out)
	for name, pid := range pids {
		assert.False(t, running(pid), "%s (pid %d) is gone", name, pid)
	}
	out, err = stackCmd(ctx, "status")
	assert.Error(t, err, "status fails when the stack is down")
	assert.Equal(t, 13, strings.Count(out, "not running"), out)
	out, err = stackCmd(ctx, "logs", "-n", "1")
	require.NoError(t, err)
	assert.Contains(t, out, "payment-1")
}

// running reports whether pid runs: its /proc entry exists and it is not a
// zombie waiting for init to reap it.
func running(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	i := bytes.LastIndexByte(b, ')')
	return i < 0 || i+2 >= len(b) || b[i+2] != 'Z'
}

func postJSON(t *testing.T, url, body string, want int) []byte {
	t.Helper()
	resp, err := http.Post(url, "application/json", bytes.NewReader([]byte(body)))
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.Equal(t, want, resp.StatusCode, "%s: %s", url, b)
	return b
}

func getBody(t *testing.T, url string) []byte {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return b
}
