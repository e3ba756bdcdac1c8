package stack_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/deploy/check/stack"
)

// repoRoot is the repository's root, two levels up from this package.
func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", "..", ".."))
	require.NoError(t, err)
	return root
}

// need returns the path of bin, or skips the test when it is missing,
// unless TAIKIT_REQUIRE_SERVERS=1, when it fails.
func need(t *testing.T, bin string) string {
	t.Helper()
	p, err := exec.LookPath(bin)
	if err != nil {
		if os.Getenv("TAIKIT_REQUIRE_SERVERS") == "1" {
			t.Fatalf("%s is required (TAIKIT_REQUIRE_SERVERS=1) but not found: %v", bin, err)
		}
		t.Skipf("%s not found; install it (deploy/local/install) to run this test", bin)
	}
	return p
}

func testConfig(t *testing.T) stack.Config {
	return stack.Config{Dir: t.TempDir(), Repo: repoRoot(t), Bin: t.TempDir(), Self: "/bin/true", PortBase: 20000}
}

func TestConfigValidates(t *testing.T) {
	ctx := context.Background()
	for name, cfg := range map[string]stack.Config{
		"no dir":    {Repo: "r", Bin: "b", Self: "s"},
		"no repo":   {Dir: "d", Bin: "b", Self: "s"},
		"no bin":    {Dir: "d", Repo: "r", Self: "s"},
		"no self":   {Dir: "d", Repo: "r", Bin: "b"},
		"bad ports": {Dir: "d", Repo: "r", Bin: "b", Self: "s", PortBase: 65530},
	} {
		assert.Error(t, stack.Up(ctx, cfg), name)
		_, err := stack.Down(context.Background(), cfg)
		assert.Error(t, err, name)
		_, err = stack.Status(ctx, cfg)
		assert.Error(t, err, name)
	}
}

func TestPortsAreDistinct(t *testing.T) {
	for _, base := range []int{0, 20000} {
		cfg := stack.Config{PortBase: base}
		seen := map[int]string{}
		for name, p := range cfg.Ports() {
			require.NotContains(t, seen, p, "%s and %s share port %d", name, seen[p], p)
			seen[p] = name
		}
	}
	cfg := stack.Config{}
	assert.Equal(t, 3001, cfg.Ports()["payment-1"], "the services keep compose.yaml's ports")
	assert.Equal(t, 4222, cfg.Ports()["nats-1"])
}

func TestUpNamesWhatIsMissing(t *testing.T) {
	cfg := testConfig(t)
	err := stack.Up(context.Background(), cfg)
	require.Error(t, err)
	assert.Contains(t, err.Error(), filepath.Join(cfg.Bin, "jaeger")+" (deploy/local/install builds it)")
	assert.Contains(t, err.Error(), filepath.Join(cfg.Bin, "payment"))
	entries, _ := os.ReadDir(cfg.Dir)
	assert.Empty(t, entries, "nothing started, nothing written")
}

// TestConfigsPassTheirTools writes every configuration the stack would and
// has each checked by its own program: promtool, amtool, nats-server.
func TestConfigsPassTheirTools(t *testing.T) {
	cfg := testConfig(t)
	files := map[string]string{}
	for _, c := range cfg.Components() {
		for path, body := range c.Files {
			files[c.Name] = path
			require.NoError(t, os.MkdirAll(filepath.Dir(path), 0o755))
			if body == "<alertmanager>" {
				continue // written below, as Up writes it
			}
			require.NoError(t, os.WriteFile(path, []byte(body), 0o644))
		}
	}
	t.Run("prometheus", func(t *testing.T) {
		promtool := need(t, "promtool")
		out, err := exec.Command(promtool, "check", "config", files["prometheus"]).CombinedOutput()
		require.NoError(t, err, "%s", out)
		assert.Contains(t, string(out), "2 rule files found", "the services' rule files are loaded")
	})
	t.Run("alertmanager", func(t *testing.T) {
		amtool := need(t, "amtool")
		body, err := stack.AlertmanagerYAML(&cfg)
		require.NoError(t, err)
		assert.Contains(t, body, "http://127.0.0.1:"+strconv.Itoa(cfg.Ports()["sink"])+"/page")
		assert.NotContains(t, body, "alert-sink:8080")
		require.NoError(t, os.WriteFile(files["alertmanager"], []byte(body), 0o644))
		out, err := exec.Command(amtool, "check-config", files["alertmanager"]).CombinedOutput()
		require.NoError(t, err, "%s", out)
	})
	t.Run("nats", func(t *testing.T) {
		nats := need(t, "nats-server")
		for _, n := range []string{"nats-1", "nats-2", "nats-3"} {
			out, err := exec.Command(nats, "-t", "-c", files[n]).CombinedOutput()
			require.NoError(t, err, "%s: %s", n, out)
		}
	})
}

func TestSink(t *testing.T) {
	var logs bytes.Buffer
	srv := httptest.NewServer(stack.SinkHandler(slog.New(slog.NewTextHandler(&logs, nil))))
	defer srv.Close()
	body := `{"status":"firing","alerts":[{"status":"firing","labels":{"alertname":"PaymentErrorRate","severity":"page"}}]}`
	resp, err := http.Post(srv.URL+"/page", "application/json", strings.NewReader(body))
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusNoContent, resp.StatusCode)

	resp, err = http.Post(srv.URL+"/ticket", "application/json", strings.NewReader("not json"))
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusBadRequest, resp.StatusCode)

	resp, err = http.Get(srv.URL + "/notifications")
	require.NoError(t, err)
	var got []stack.Notification
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&got))
	resp.Body.Close()
	require.Len(t, got, 1)
	assert.Equal(t, "page", got[0].Receiver)
	assert.Equal(t, []string{"PaymentErrorRate (firing, severity page)"}, got[0].Alerts)
	assert.Contains(t, logs.String(), "PaymentErrorRate")
}

// TestNATSExporter reads a real nats-server's monitoring endpoints and
// checks the output with promtool check metrics.
func TestNATSExporter(t *testing.T) {
	natsBin := need(t, "nats-server")
	promtool := need(t, "promtool")
	port, monitor := freePort(t), freePort(t)
	cmd := exec.Command(natsBin, "-a", "127.0.0.1", "-p", strconv.Itoa(port), "-m", strconv.Itoa(monitor), "-js", "-sd", t.TempDir(), "-n", "solo")
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	base := "http://127.0.0.1:" + strconv.Itoa(monitor)
	require.Eventually(t, func() bool {
		resp, err := http.Get(base + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, 10*time.Second, 50*time.Millisecond)

	// A node that does not answer: up 0, nothing else.
	srv := httptest.NewServer(stack.NATSExporter(map[string]string{"solo": base, "gone": "http://127.0.0.1:1"}, &http.Client{Timeout: 2 * time.Second}))
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/metrics")
	require.NoError(t, err)
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.NoError(t, err)
	out := string(b)
	assert.Contains(t, out, `nats_server_up{nats_server="solo"} 1`)
	assert.Contains(t, out, `nats_server_up{nats_server="gone"} 0`)
	assert.Contains(t, out, `gnatsd_healthz_status{nats_server="solo"} 1`)
	assert.Contains(t, out, `gnatsd_varz_connections{nats_server="solo"} 0`)
	assert.NotContains(t, out, `gnatsd_varz_connections{nats_server="gone"}`)

	check := exec.Command(promtool, "check", "metrics")
	check.Stdin = bytes.NewReader(b)
	res, err := check.CombinedOutput()
	require.NoError(t, err, "promtool check metrics: %s", res)
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// TestDownLeavesAReusedPIDAlone: a PID file whose process now runs another
// binary is not signalled.
func TestDownLeavesAReusedPIDAlone(t *testing.T) {
	cfg := testConfig(t)
	other := exec.Command("sleep", "60")
	require.NoError(t, other.Start())
	t.Cleanup(func() { _ = other.Process.Kill(); _ = other.Wait() })
	require.NoError(t, os.MkdirAll(filepath.Join(cfg.Dir, "pids"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(cfg.Dir, "pids", "redis.pid"),
		[]byte(strconv.Itoa(other.Process.Pid)+" /usr/bin/redis-server\n"), 0o644))
	var out strings.Builder
	cfg.Out = &out
	stopped, err := stack.Down(context.Background(), cfg)
	require.NoError(t, err)
	assert.Empty(t, stopped)
	assert.Equal(t, "nothing of the stack in "+cfg.Dir+" was running\n", out.String(), "down says it stopped nothing")
	assert.NoError(t, other.Process.Signal(syscall.Signal(0)), "the other process still runs")
	assert.NoFileExists(t, filepath.Join(cfg.Dir, "pids", "redis.pid"), "the stale PID file is gone")
}

// startSleep starts bin (a copy of sleep) as the stack would start the
// component name, and stops and reaps it when the test ends.
func startSleep(t *testing.T, cfg stack.Config, name, bin string) int {
	t.Helper()
	for _, d := range []string{"logs", "pids"} {
		require.NoError(t, os.MkdirAll(filepath.Join(cfg.Dir, d), 0o755))
	}
	pid, err := stack.Start(&cfg, stack.Component{Name: name, Bin: bin, Args: []string{"60"}})
	require.NoError(t, err)
	t.Cleanup(func() {
		_ = syscall.Kill(pid, syscall.SIGKILL)
		_, _ = syscall.Wait4(pid, nil, 0, nil)
	})
	return pid
}

// copyBinary copies the program bin to dir and returns the copy's path.
func copyBinary(t *testing.T, bin, dir string) string {
	t.Helper()
	b, err := os.ReadFile(bin)
	require.NoError(t, err)
	require.NoError(t, os.MkdirAll(dir, 0o755))
	p := filepath.Join(dir, filepath.Base(bin))
	require.NoError(t, os.WriteFile(p, b, 0o755))
	return p
}

// TestDownStopsABinaryWhosePathHasSpaces: bin/ under a directory whose
// name holds a space is the stack's all the same.
func TestDownStopsABinaryWhosePathHasSpaces(t *testing.T) {
	cfg := testConfig(t)
	bin := copyBinary(t, need(t, "sleep"), filepath.Join(t.TempDir(), "my projects", "bin"))
	pid := startSleep(t, cfg, "sink", bin)
	stopped, err := stack.Down(context.Background(), cfg)
	require.NoError(t, err)
	assert.Equal(t, []string{"sink"}, stopped)
	assert.False(t, running(pid), "sink (pid %d) is gone", pid)
}

// TestDownLeavesAReusedPIDOfTheSameBinaryAlone: a component that died
// left its PID file; the system gave its PID to another process of the
// same binary, which down does not signal.
func TestDownLeavesAReusedPIDOfTheSameBinaryAlone(t *testing.T) {
	cfg := testConfig(t)
	sleep := need(t, "sleep")
	pid := startSleep(t, cfg, "redis", sleep)
	started := procStart(t, pid)
	require.NoError(t, syscall.Kill(pid, syscall.SIGKILL))
	_, err := syscall.Wait4(pid, nil, 0, nil)
	require.NoError(t, err)

	// The kernel cannot be made to hand out a PID again; the PID file is
	// made to name another process, as it would after the PID's reuse.
	// That process started later: a clock tick later at least.
	var other *exec.Cmd
	for other == nil || procStart(t, other.Process.Pid) == started {
		if other != nil {
			_ = other.Process.Kill()
			_ = other.Wait()
		}
		other = exec.Command(sleep, "60")
		require.NoError(t, other.Start())
	}
	t.Cleanup(func() { _ = other.Process.Kill(); _ = other.Wait() })
	path := filepath.Join(cfg.Dir, "pids", "redis.pid")
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	rest, ok := strings.CutPrefix(string(b), strconv.Itoa(pid)+" ")
	require.True(t, ok, "%q", b)
	require.NoError(t, os.WriteFile(path, []byte(strconv.Itoa(other.Process.Pid)+" "+rest), 0o644))

	stopped, err := stack.Down(context.Background(), cfg)
	require.NoError(t, err)
	assert.Empty(t, stopped)
	assert.NoError(t, other.Process.Signal(syscall.Signal(0)), "the other process still runs")
	assert.NoFileExists(t, path, "the stale PID file is gone")
}

// procStart returns pid's start time in clock ticks since boot, the 22nd
// field of /proc/PID/stat.
func procStart(t *testing.T, pid int) string {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	require.NoError(t, err)
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	require.Greater(t, len(f), 19)
	return f[19]
}

// fakeBinaries puts a shell script with body in place of every binary the
// stack runs: the servers first in PATH, the services and jaeger in
// cfg.Bin.
func fakeBinaries(t *testing.T, cfg *stack.Config, body string) {
	t.Helper()
	path := t.TempDir()
	for dir, names := range map[string][]string{
		path:    {"nats-server", "redis-server", "prometheus", "prometheus-alertmanager"},
		cfg.Bin: {"jaeger", "payment", "deployment"},
	} {
		for _, n := range names {
			require.NoError(t, os.WriteFile(filepath.Join(dir, n), []byte("#!/bin/sh\n"+body+"\n"), 0o755))
		}
	}
	t.Setenv("PATH", path+string(filepath.ListSeparator)+os.Getenv("PATH"))
}

// TestUpRefusesAPortTakenByAnotherProgram: another program listens where
// nats-1's monitoring would and answers its health check; up starts
// nothing and names the port, instead of taking that answer for nats-1's.
func TestUpRefusesAPortTakenByAnotherProgram(t *testing.T) {
	cfg := testConfig(t)
	cfg.PortBase = freeBase(t)
	cfg.Wait = 100 * time.Millisecond
	fakeBinaries(t, &cfg, "exit 1")
	monitor := cfg.Ports()["nats-1-monitor"]
	l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(monitor))
	require.NoError(t, err)
	other := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {}))
	other.Listener.Close()
	other.Listener = l
	other.Start()
	defer other.Close()

	err = stack.Up(context.Background(), cfg)
	require.Error(t, err)
	assert.Contains(t, err.Error(), strconv.Itoa(monitor)+" (nats-1)")
	assert.Contains(t, err.Error(), "ss -ltnp")
	pids, _ := os.ReadDir(filepath.Join(cfg.Dir, "pids"))
	assert.Empty(t, pids, "nothing started")
}

// TestUpWaitsForWhatRunsAlready: the NATS nodes run (an up interrupted
// earlier started them) but are not healthy; up waits for them as for
// those it starts, and starts nothing after them.
func TestUpWaitsForWhatRunsAlready(t *testing.T) {
	cfg := testConfig(t)
	cfg.PortBase = freeBase(t)
	cfg.Wait = 100 * time.Millisecond
	fakeBinaries(t, &cfg, "exit 1")
	sleep := copyBinary(t, need(t, "sleep"), t.TempDir())
	for _, n := range []string{"nats-1", "nats-2", "nats-3"} {
		startSleep(t, cfg, n, sleep)
	}
	err := stack.Up(context.Background(), cfg)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "nats-1 is not healthy")
	assert.NoFileExists(t, filepath.Join(cfg.Dir, "pids", "redis.pid"), "nothing after the nodes started")
}

func TestLogs(t *testing.T) {
	cfg := testConfig(t)
	require.NoError(t, os.MkdirAll(filepath.Join(cfg.Dir, "logs"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(cfg.Dir, "logs", "redis.log"), []byte("one\ntwo\nthree\n"), 0o644))
	var out strings.Builder
	require.NoError(t, stack.Logs(cfg, &out, 2))
	assert.Equal(t, "redis          | two\nredis          | three\n", out.String())
	for _, n := range []int{-1, 0} {
		err := stack.Logs(cfg, io.Discard, n)
		require.Error(t, err, "n=%d", n)
		assert.Contains(t, err.Error(), "give 1 or more")
	}
}

// TestUpSaysItWasInterrupted: up interrupted while it waits (Ctrl-C
// cancels its context) says so, and what to do, rather than blaming the
// component it waited for.
func TestUpSaysItWasInterrupted(t *testing.T) {
	cfg := testConfig(t)
	cfg.PortBase = freeBase(t)
	fakeBinaries(t, &cfg, "exit 1")
	sleep := copyBinary(t, need(t, "sleep"), t.TempDir())
	for _, n := range []string{"nats-1", "nats-2", "nats-3"} {
		startSleep(t, cfg, n, sleep)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := stack.Up(ctx, cfg)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "interrupted while waiting for nats-1")
	assert.Contains(t, err.Error(), "down stops it")
	assert.NotContains(t, err.Error(), "not healthy")
}

// TestDownStopsWhatAComponentForked: a component's child (redis's
// append-only-file rewrite) is in the component's process group, and down
// stops it with the component instead of leaving it running.
func TestDownStopsWhatAComponentForked(t *testing.T) {
	cfg := testConfig(t)
	sh := need(t, "sh")
	need(t, "sleep")
	for _, d := range []string{"logs", "pids"} {
		require.NoError(t, os.MkdirAll(filepath.Join(cfg.Dir, d), 0o755))
	}
	childFile := filepath.Join(t.TempDir(), "child")
	// The shell ignores nothing: SIGTERM ends it while it waits, and the
	// sleep it forked would outlive it if only the shell were signalled.
	pid, err := stack.Start(&cfg, stack.Component{Name: "redis", Bin: sh,
		Args: []string{"-c", "sleep 60 & echo $! >" + childFile + ".new && mv " + childFile + ".new " + childFile + "; wait"}})
	require.NoError(t, err)
	t.Cleanup(func() {
		_ = syscall.Kill(pid, syscall.SIGKILL)
		_, _ = syscall.Wait4(pid, nil, 0, nil)
	})
	var child int
	require.Eventually(t, func() bool {
		b, err := os.ReadFile(childFile)
		if err != nil {
			return false
		}
		child, err = strconv.Atoi(strings.TrimSpace(string(b)))
		return err == nil
	}, 10*time.Second, 10*time.Millisecond, "the component forks its child")
	t.Cleanup(func() { _ = syscall.Kill(child, syscall.SIGKILL) })

	stopped, err := stack.Down(context.Background(), cfg)
	require.NoError(t, err)
	assert.Equal(t, []string{"redis"}, stopped)
	assert.False(t, running(pid), "redis (pid %d) is gone", pid)
	assert.False(t, running(child), "the child redis forked (pid %d) is gone", child)
}

// holdLock takes the lock of cfg.Dir as a running up or down holds it, and
// releases it when the test ends.
func holdLock(t *testing.T, cfg stack.Config) {
	t.Helper()
	require.NoError(t, os.MkdirAll(cfg.Dir, 0o755))
	f, err := os.OpenFile(filepath.Join(cfg.Dir, "stack.lock"), os.O_CREATE|os.O_RDWR, 0o644)
	require.NoError(t, err)
	t.Cleanup(func() { f.Close() })
	require.NoError(t, syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB))
}

// TestUpAndDownRefuseWhileAnotherRuns: while another up or down holds the
// stack's directory, up starts nothing and down stops nothing; each says
// so at once, naming the directory. Each releases the lock when it
// returns.
func TestUpAndDownRefuseWhileAnotherRuns(t *testing.T) {
	cfg := testConfig(t)
	cfg.PortBase = freeBase(t)
	cfg.Wait = 100 * time.Millisecond
	fakeBinaries(t, &cfg, "exit 1")
	sleep := copyBinary(t, need(t, "sleep"), t.TempDir())
	pid := startSleep(t, cfg, "sink", sleep)

	t.Run("held", func(t *testing.T) {
		holdLock(t, cfg)
		err := stack.Up(context.Background(), cfg)
		require.Error(t, err)
		assert.Contains(t, err.Error(), "another up or down runs in "+cfg.Dir)
		assert.NoFileExists(t, filepath.Join(cfg.Dir, "pids", "nats-1.pid"), "nothing started")

		_, err = stack.Down(context.Background(), cfg)
		require.Error(t, err)
		assert.Contains(t, err.Error(), "another up or down runs in "+cfg.Dir)
		assert.True(t, running(pid), "the sink still runs")
	})
	t.Run("released", func(t *testing.T) {
		err := stack.Up(context.Background(), cfg)
		require.Error(t, err)
		assert.Contains(t, err.Error(), "nats-1 is not healthy", "up ran")
		stopped, err := stack.Down(context.Background(), cfg)
		require.NoError(t, err)
		assert.Equal(t, []string{"sink"}, stopped)
		holdLock(t, cfg) // neither kept it
	})
}

// TestStatusChecksConcurrently: the health checks of the components run
// at once, so a stack whose checks hang takes one check's time, not one
// per component. Two running components each answer their health check
// only once both checks have arrived: checked one after the other, the
// first times out. The table keeps the stack's order.
func TestStatusChecksConcurrently(t *testing.T) {
	cfg := testConfig(t)
	cfg.PortBase = freeBase(t)
	sleep := copyBinary(t, need(t, "sleep"), t.TempDir())
	names := []string{"sink", "nats-exporter"}
	arrived := make(chan struct{}, len(names))
	both := make(chan struct{})
	go func() {
		for range names {
			<-arrived
		}
		close(both)
	}()
	for _, n := range names {
		startSleep(t, cfg, n, sleep)
		l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(cfg.Ports()[n]))
		require.NoError(t, err)
		srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			arrived <- struct{}{}
			select {
			case <-both:
			case <-r.Context().Done():
				http.Error(w, "the other check never came", http.StatusServiceUnavailable)
			}
		}))
		srv.Listener.Close()
		srv.Listener = l
		srv.Start()
		t.Cleanup(srv.Close)
	}

	states, err := stack.Status(context.Background(), cfg)
	require.NoError(t, err)
	var order []string
	for _, c := range cfg.Components() {
		order = append(order, c.Name)
	}
	var got []string
	for _, s := range states {
		got = append(got, s.Name)
		switch s.Name {
		case "sink", "nats-exporter":
			assert.True(t, s.Healthy, "%s: %s", s.Name, s.Problem)
		default:
			assert.Equal(t, "not running", s.Problem, s.Name)
		}
	}
	assert.Equal(t, order, got, "the stack's order")
}

// runOnce starts bin as the stack would start the component name, and
// waits for it to end.
func runOnce(t *testing.T, cfg stack.Config, name, bin string, args ...string) {
	t.Helper()
	for _, d := range []string{"logs", "pids"} {
		require.NoError(t, os.MkdirAll(filepath.Join(cfg.Dir, d), 0o755))
	}
	pid, err := stack.Start(&cfg, stack.Component{Name: name, Bin: bin, Args: args})
	require.NoError(t, err)
	_, err = syscall.Wait4(pid, nil, 0, nil)
	require.NoError(t, err)
}

// TestLogsShowTheCurrentRun: a component's log keeps the runs before, each
// begun by a line with its time; logs shows the lines of the current run.
func TestLogsShowTheCurrentRun(t *testing.T) {
	cfg := testConfig(t)
	echo := need(t, "echo")
	runOnce(t, cfg, "redis", echo, "from the first run")
	runOnce(t, cfg, "redis", echo, "from the second run")

	b, err := os.ReadFile(filepath.Join(cfg.Dir, "logs", "redis.log"))
	require.NoError(t, err)
	assert.Contains(t, string(b), "from the first run", "the log keeps the run before")
	assert.Equal(t, 2, strings.Count(string(b), "=== stack up "), "each run begins with a line:\n%s", b)

	var out strings.Builder
	require.NoError(t, stack.Logs(cfg, &out, 20))
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	require.Len(t, lines, 2, "%s", out.String())
	assert.Regexp(t, `^redis +\| === stack up \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d.*Z: starting `, lines[0])
	assert.Equal(t, "redis          | from the second run", lines[1])
}

// clearEnv empties the test's environment; t.Setenv puts it back when the
// test ends.
func clearEnv(t *testing.T) {
	t.Helper()
	for _, kv := range os.Environ() {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
		require.NoError(t, os.Unsetenv(k))
	}
}

// TestComponentsGetACleanEnvironment: of an environment of PATH, HOME, TZ,
// LANG and stray variables, a component gets PATH, HOME, TZ and LANG, and
// what the stack sets for it; a stray variable of the user's (a NATS_URL,
// an OTEL_SERVICE_NAME, a service's own flag) does not reach it.
func TestComponentsGetACleanEnvironment(t *testing.T) {
	cfg := testConfig(t)
	env := need(t, "env")
	path := os.Getenv("PATH")
	clearEnv(t)
	t.Setenv("PATH", path)
	for k, v := range map[string]string{
		"NATS_URL": "nats://stray:4222", "REDIS_URL": "redis://stray:6379/0",
		"OTEL_SERVICE_NAME": "stray", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://stray:4318",
		"PAYMENT_API_TOKEN": "stray", "HOME": "/home/someone", "TZ": "Europe/Paris", "LANG": "C.UTF-8",
	} {
		t.Setenv(k, v)
	}
	for _, d := range []string{"logs", "pids"} {
		require.NoError(t, os.MkdirAll(filepath.Join(cfg.Dir, d), 0o755))
	}
	pid, err := stack.Start(&cfg, stack.Component{Name: "payment-1", Bin: env, Env: []string{"NATS_URL=nats://127.0.0.1:20000", "INSTANCE=payment-1"}})
	require.NoError(t, err)
	_, err = syscall.Wait4(pid, nil, 0, nil)
	require.NoError(t, err)
	b, err := os.ReadFile(filepath.Join(cfg.Dir, "logs", "payment-1.log"))
	require.NoError(t, err)
	// Names only in a failure's message: the test's environment may hold
	// secrets.
	got := map[string]string{}
	var names []string
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if k, v, ok := strings.Cut(l, "="); ok && !strings.HasPrefix(l, "=== stack up ") {
			got[k] = v
			names = append(names, k)
		}
	}
	assert.ElementsMatch(t, []string{"PATH", "HOME", "TZ", "LANG", "NATS_URL", "INSTANCE"}, names)
	assert.True(t, got["PATH"] == path, "the stack's PATH")
	assert.Equal(t, "/home/someone", got["HOME"])
	assert.Equal(t, "Europe/Paris", got["TZ"])
	assert.Equal(t, "C.UTF-8", got["LANG"])
	assert.Equal(t, "nats://127.0.0.1:20000", got["NATS_URL"], "the stack's, not the user's")
	assert.Equal(t, "payment-1", got["INSTANCE"])
}

// TestDownStopsWhatADeadComponentLeft: a component that died left a child
// in its process group; down stops the child, found by the group the
// component led, though the component itself is gone.
func TestDownStopsWhatADeadComponentLeft(t *testing.T) {
	cfg := testConfig(t)
	sh := need(t, "sh")
	need(t, "sleep")
	for _, d := range []string{"logs", "pids"} {
		require.NoError(t, os.MkdirAll(filepath.Join(cfg.Dir, d), 0o755))
	}
	childFile := filepath.Join(t.TempDir(), "child")
	pid, err := stack.Start(&cfg, stack.Component{Name: "redis", Bin: sh,
		Args: []string{"-c", "sleep 60 >/dev/null 2>&1 & echo $! >" + childFile + ".new && mv " + childFile + ".new " + childFile}})
	require.NoError(t, err)
	// The component exits once it has forked; reaped, it is gone.
	_, err = syscall.Wait4(pid, nil, 0, nil)
	require.NoError(t, err)
	b, err := os.ReadFile(childFile)
	require.NoError(t, err)
	child, err := strconv.Atoi(strings.TrimSpace(string(b)))
	require.NoError(t, err)
	t.Cleanup(func() { _ = syscall.Kill(child, syscall.SIGKILL) })
	require.True(t, running(child))

	var out strings.Builder
	cfg.Out = &out
	stopped, err := stack.Down(context.Background(), cfg)
	require.NoError(t, err)
	assert.Equal(t, []string{"redis"}, stopped, "%s", out.String())
	require.Eventually(t, func() bool { return !running(child) }, 10*time.Second, 10*time.Millisecond,
		"the child the dead redis (pid %d) left (pid %d) still runs", pid, child)
	assert.NoFileExists(t, filepath.Join(cfg.Dir, "pids", "redis.pid"))
}

// TestAScriptComponentCountsAsRunning: a component whose binary is a
// script runs as its interpreter (/proc/PID/exe names sh, not the
// script); status shows it running and down stops it.
func TestAScriptComponentCountsAsRunning(t *testing.T) {
	cfg := testConfig(t)
	cfg.PortBase = freeBase(t)
	need(t, "sleep")
	wrapper := filepath.Join(t.TempDir(), "wrapper")
	require.NoError(t, os.WriteFile(wrapper, []byte("#!/bin/sh\nsleep 60\n"), 0o755))
	pid := startSleep(t, cfg, "sink", wrapper)

	states, err := stack.Status(context.Background(), cfg)
	require.NoError(t, err)
	for _, s := range states {
		if s.Name == "sink" {
			assert.Equal(t, pid, s.PID, "the sink runs: %s", s.Problem)
		}
	}
	stopped, err := stack.Down(context.Background(), cfg)
	require.NoError(t, err)
	assert.Equal(t, []string{"sink"}, stopped)
	require.Eventually(t, func() bool { return !running(pid) }, 10*time.Second, 10*time.Millisecond, "the sink (pid %d) still runs", pid)
}

// TestComponentsKeepTheHarmlessEnvironment: the locale, TMPDIR, the
// certificates' place and the Go runtime's settings reach a component;
// what would change what the stack runs still does not.
func TestComponentsKeepTheHarmlessEnvironment(t *testing.T) {
	cfg := testConfig(t)
	env := need(t, "env")
	path := os.Getenv("PATH")
	clearEnv(t)
	keep := map[string]string{
		"PATH": path, "HOME": "/home/someone", "TZ": "UTC", "LANG": "C.UTF-8",
		"LC_ALL": "C.UTF-8", "LC_TIME": "en_GB.UTF-8", "LANGUAGE": "en_GB:en", "TMPDIR": "/var/tmp",
		"SSL_CERT_FILE": "/etc/ssl/certs/ca-certificates.crt", "SSL_CERT_DIR": "/etc/ssl/certs",
		"GOMAXPROCS": "2", "GOMEMLIMIT": "512MiB", "GOGC": "50", "GOTRACEBACK": "all", "GODEBUG": "http2debug=0",
	}
	drop := map[string]string{
		"NATS_URL": "nats://stray:4222", "REDIS_URL": "redis://stray:6379/0", "NATS_REPLICAS": "1",
		"OTEL_SERVICE_NAME": "stray", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://stray:4318", "OTEL_SDK_DISABLED": "true",
		"PAYMENT_API_TOKEN": "stray", "DEPLOYMENT_ADMIN_TOKEN": "stray", "ADDR": ":1", "DATA_DIR": "/stray",
		"LOG_LEVEL": "debug", "GOFLAGS": "-race", "LC": "stray",
	}
	for k, v := range keep {
		t.Setenv(k, v)
	}
	for k, v := range drop {
		t.Setenv(k, v)
	}
	runOnce(t, cfg, "payment-1", env)
	b, err := os.ReadFile(filepath.Join(cfg.Dir, "logs", "payment-1.log"))
	require.NoError(t, err)
	got := map[string]string{}
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if k, v, ok := strings.Cut(l, "="); ok && !strings.HasPrefix(l, "=== stack up ") {
			got[k] = v
		}
	}
	assert.Equal(t, keep, got)
}

// asOfAnotherBoot rewrites the PID file of the component name as a stack
// would have written it before the machine restarted: the same PID and
// start time, another boot's identifier. After a restart the system
// numbers its processes afresh, and a PID file left by a crash or a power
// cut may name a process of the new boot, or the group one leads.
func asOfAnotherBoot(t *testing.T, cfg stack.Config, name string) {
	t.Helper()
	path := filepath.Join(cfg.Dir, "pids", name+".pid")
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	first, _, _ := strings.Cut(string(b), "\n")
	require.NoError(t, os.WriteFile(path, []byte(first+"\nboot 00000000-0000-4000-8000-000000000000\n"), 0o644))
}

// TestAPIDFileOfAnotherBootNamesNothing: a PID file written before the
// machine restarted names no process of this boot, even one given the same
// PID and start time: status shows the component not running, and down
// signals neither that process nor the process group a PID of the file
// numbers now.
func TestAPIDFileOfAnotherBootNamesNothing(t *testing.T) {
	cfg := testConfig(t)
	sh := need(t, "sh")
	need(t, "sleep")

	// A process of this boot with the PID and the start time the file
	// holds.
	pid := startSleep(t, cfg, "sink", need(t, "sleep"))
	b, err := os.ReadFile(filepath.Join(cfg.Dir, "pids", "sink.pid"))
	require.NoError(t, err)
	boot, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	require.NoError(t, err)
	assert.Contains(t, string(b), "\nboot "+strings.TrimSpace(string(boot))+"\n", "the PID file names this boot")
	asOfAnotherBoot(t, cfg, "sink")

	// A process group of this boot whose leader has exited, numbered as
	// the PID the file holds.
	childFile := filepath.Join(t.TempDir(), "child")
	leader, err := stack.Start(&cfg, stack.Component{Name: "redis", Bin: sh,
		Args: []string{"-c", "sleep 60 >/dev/null 2>&1 & echo $! >" + childFile + ".new && mv " + childFile + ".new " + childFile}})
	require.NoError(t, err)
	_, err = syscall.Wait4(leader, nil, 0, nil)
	require.NoError(t, err)
	b, err = os.ReadFile(childFile)
	require.NoError(t, err)
	child, err := strconv.Atoi(strings.TrimSpace(string(b)))
	require.NoError(t, err)
	t.Cleanup(func() { _ = syscall.Kill(child, syscall.SIGKILL) })
	asOfAnotherBoot(t, cfg, "redis")

	states, err := stack.Status(context.Background(), cfg)
	require.NoError(t, err)
	for _, s := range states {
		if s.Name == "sink" {
			assert.Zero(t, s.PID, "status takes the process of this boot for the sink")
		}
	}
	var out strings.Builder
	cfg.Out = &out
	stopped, err := stack.Down(context.Background(), cfg)
	require.NoError(t, err)
	assert.Empty(t, stopped, "%s", out.String())
	assert.True(t, running(pid), "down stopped pid %d, not the stack's", pid)
	assert.True(t, running(child), "down stopped pid %d in group %d, not the stack's", child, leader)
	assert.NoFileExists(t, filepath.Join(cfg.Dir, "pids", "sink.pid"), "the stale PID file is gone")
	assert.NoFileExists(t, filepath.Join(cfg.Dir, "pids", "redis.pid"), "the stale PID file is gone")
}

// TestDownKillsWhatRunsWhenInterrupted: an interrupt (Ctrl-C during make
// down) while Down waits out a component's graceful stop ends the wait:
// the component is killed (SIGKILL) at once, and so is every component
// still to stop, without a grace of its own. Each component here ignores
// SIGTERM, as a service busy with a long graceful stop seems to, and
// notes that it got it; the grace is an hour.
func TestDownKillsWhatRunsWhenInterrupted(t *testing.T) {
	cfg := testConfig(t)
	cfg.Grace = time.Hour
	sh := need(t, "sh")
	need(t, "sleep")
	for _, d := range []string{"logs", "pids"} {
		require.NoError(t, os.MkdirAll(filepath.Join(cfg.Dir, d), 0o755))
	}
	notes := t.TempDir()
	start := func(name string) int {
		pid, err := stack.Start(&cfg, stack.Component{Name: name, Bin: sh,
			Args: []string{"-c", "trap 'touch " + filepath.Join(notes, name) + "' TERM; touch " + filepath.Join(notes, name+".ready") + "; while :; do sleep 0.1; done"}})
		require.NoError(t, err)
		t.Cleanup(func() {
			_ = syscall.Kill(-pid, syscall.SIGKILL)
			_, _ = syscall.Wait4(pid, nil, 0, nil)
		})
		require.Eventually(t, func() bool {
			_, err := os.Stat(filepath.Join(notes, name+".ready"))
			return err == nil
		}, 10*time.Second, 10*time.Millisecond, "%s sets its trap", name)
		return pid
	}
	// Down stops them in the reverse of the starting order: the
	// exporter first, then the sink.
	sink, exporter := start("sink"), start("nats-exporter")

	var out strings.Builder
	cfg.Out = &out
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	type result struct {
		stopped []string
		err     error
	}
	done := make(chan result, 1)
	go func() {
		stopped, err := stack.Down(ctx, cfg)
		done <- result{stopped, err}
	}()
	require.Eventually(t, func() bool {
		_, err := os.Stat(filepath.Join(notes, "nats-exporter"))
		return err == nil
	}, 10*time.Second, 10*time.Millisecond, "down sends the exporter SIGTERM")
	cancel()
	var r result
	select {
	case r = <-done:
	case <-time.After(time.Minute):
		t.Fatal("down still waits out the exporter's grace (an hour) after the interrupt")
	}
	require.NoError(t, r.err)
	assert.Equal(t, []string{"nats-exporter", "sink"}, r.stopped)
	assert.False(t, running(exporter), "the exporter (pid %d) is gone", exporter)
	assert.False(t, running(sink), "the sink (pid %d) is gone", sink)
	assert.NoFileExists(t, filepath.Join(notes, "sink"), "after the interrupt the sink is killed, not asked to stop")
	assert.Contains(t, out.String(), "nats-exporter  killed (SIGKILL, pid ")
	assert.Contains(t, out.String(), "sink           killed (SIGKILL, pid ")
	assert.Contains(t, out.String(), "interrupted")
	for _, n := range []string{"sink", "nats-exporter"} {
		assert.NoFileExists(t, filepath.Join(cfg.Dir, "pids", n+".pid"))
	}
}
