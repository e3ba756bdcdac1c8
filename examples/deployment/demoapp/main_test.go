package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/taipattern/taikit/examples/internal/svctest"
)

// binary is the demoapp built once for the tests that run it as a process.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "demoapp-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "demoapp")
	if out, err := exec.Command("go", "build", "-o", binary, ".").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "go build: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := 0
	func() {
		defer func() {
			if err := goleak.Find(); err != nil {
				fmt.Fprintln(os.Stderr, "goleak:", err)
				code = 1
			}
		}()
		code = m.Run()
	}()
	os.RemoveAll(dir)
	os.Exit(code)
}

// process is a demoapp running as a child of the test.
type process struct {
	cmd    *exec.Cmd
	addr   string
	stderr *syncBuffer
	done   chan struct{}
	err    error // of Wait, once done is closed
}

type syncBuffer = svctest.SyncBuffer

// start runs the demoapp with args and reads its address; the test's
// cleanup kills it if it still runs.
func start(t *testing.T, args ...string) *process {
	t.Helper()
	p := &process{cmd: exec.Command(binary, args...), stderr: &syncBuffer{}, done: make(chan struct{})}
	p.cmd.Stderr = p.stderr
	stdout, err := p.cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, p.cmd.Start())
	lines := bufio.NewScanner(stdout)
	first := make(chan string, 1)
	go func() {
		if lines.Scan() {
			first <- lines.Text()
		}
		close(first)
		_, _ = io.Copy(io.Discard, stdout)
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		<-p.done
	})
	select {
	case line, ok := <-first:
		require.True(t, ok, "demoapp printed nothing; stderr: %s", p.stderr)
		addr, found := strings.CutPrefix(line, "listening on ")
		require.True(t, found, "first line %q", line)
		p.addr = addr
	case <-time.After(10 * time.Second):
		t.Fatalf("demoapp printed no address in 10s; stderr: %s", p.stderr)
	}
	return p
}

// wait waits for the process to exit and returns its exit code.
func (p *process) wait(t *testing.T) int {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(15 * time.Second):
		t.Fatalf("demoapp did not exit; stderr: %s", p.stderr)
	}
	return p.cmd.ProcessState.ExitCode()
}

func TestBinaryServes(t *testing.T) {
	p := start(t, "-service", "web", "-version", "v2", "-region", "eu", "-error-rate", "0.5")
	require.True(t, strings.HasPrefix(p.addr, "127.0.0.1:"), p.addr)
	base := "http://" + p.addr

	assert.Equal(t, "ok\n", get(t, base+"/healthz"))
	codes := map[int]int{}
	for range 10 {
		resp, err := http.Get(base + "/")
		require.NoError(t, err)
		var body map[string]string
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&body))
		resp.Body.Close()
		assert.Equal(t, map[string]string{"service": "web", "version": "v2", "region": "eu", "instance": p.addr}, body)
		codes[resp.StatusCode]++
	}
	assert.Equal(t, map[int]int{200: 5, 500: 5}, codes)

	metrics := get(t, base+"/metrics")
	assert.Contains(t, metrics, `http_requests_total{code="500",region="eu",service="web",version="v2"} 5`)
	assert.Contains(t, metrics, `process_cpu_seconds_total{region="eu",service="web",version="v2"}`)
	assert.Contains(t, metrics, `process_resident_memory_bytes{region="eu",service="web",version="v2"}`)
}

func TestBinaryShutsDownGracefully(t *testing.T) {
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT} {
		t.Run(sig.String(), func(t *testing.T) {
			p := start(t, "-latency", "400ms")
			type result struct {
				code int
				err  error
			}
			got := make(chan result, 1)
			go func() {
				resp, err := http.Get("http://" + p.addr + "/")
				if err != nil {
					got <- result{err: err}
					return
				}
				_, err = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				got <- result{code: resp.StatusCode, err: err}
			}()
			// Signal once the request is in flight.
			require.Eventually(t, func() bool { return inFlight(p.addr) }, 5*time.Second, 5*time.Millisecond)
			require.NoError(t, p.cmd.Process.Signal(sig))

			r := <-got
			require.NoError(t, r.err)
			assert.Equal(t, http.StatusOK, r.code, "the request in flight is answered")
			assert.Equal(t, 0, p.wait(t), "stderr: %s", p.stderr)
			assert.Contains(t, p.stderr.String(), "demoapp stopped")
			_, err := net.DialTimeout("tcp", p.addr, time.Second)
			assert.Error(t, err, "the port is closed")
		})
	}
}

// TestBinaryStopsAtOnceOnASecondSignal: a second SIGTERM or SIGINT during
// the graceful shutdown ends the process at once, though a request is
// still in flight, with 128 plus the signal's number; it was ignored, the
// shutdown waiting out -shutdown-timeout.
func TestBinaryStopsAtOnceOnASecondSignal(t *testing.T) {
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT} {
		t.Run(sig.String(), func(t *testing.T) {
			p := start(t, "-latency", "10m", "-shutdown-timeout", "10m")
			failed := make(chan error, 1)
			go func() {
				resp, err := http.Get("http://" + p.addr + "/")
				if err == nil {
					_, err = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
				failed <- err
			}()
			require.Eventually(t, func() bool { return inFlight(p.addr) }, 5*time.Second, 5*time.Millisecond)
			require.NoError(t, p.cmd.Process.Signal(sig))
			// The second signal once the first is being handled: the
			// runtime merges a signal into one still pending.
			require.Eventually(t, func() bool { return strings.Contains(p.stderr.String(), "demoapp shutting down") },
				5*time.Second, 5*time.Millisecond)
			require.NoError(t, p.cmd.Process.Signal(sig))

			assert.Equal(t, 128+int(sig), p.wait(t), "stderr: %s", p.stderr)
			assert.Contains(t, p.stderr.String(), "during the shutdown: stopping at once")
			assert.NotContains(t, p.stderr.String(), "demoapp stopped")
			assert.Error(t, <-failed, "the request in flight is cut")
		})
	}
}

// inFlight reports whether the app at addr is answering a request to /.
func inFlight(addr string) bool {
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return bytes.Contains(b, []byte(`http_requests_in_flight{region="local",service="demo",version="v1"} 1`))
}

func TestBinaryRejectsBadFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-error-rate", "2"}, "-error-rate 2 is not in [0, 1]"},
		{[]string{"-addr", "256.0.0.1:0"}, "cannot listen on -addr 256.0.0.1:0"},
		// Metric label values must be UTF-8; the registry panicked.
		{[]string{"-version", "v\xff"}, `-version "v\xff" is not valid UTF-8`},
		{[]string{"-service", "\xc3", "-region", "eu"}, `-service "\xc3" is not valid UTF-8`},
	} {
		cmd := exec.Command(binary, tc.args...)
		out, err := cmd.CombinedOutput()
		var exit *exec.ExitError
		require.ErrorAs(t, err, &exit, "%q: %s", tc.args, out)
		assert.Equal(t, 1, exit.ExitCode())
		assert.Contains(t, string(out), tc.want)
	}

	// A busy port is refused, not waited for.
	p := start(t)
	out, err := exec.Command(binary, "-addr", p.addr).CombinedOutput()
	require.Error(t, err)
	assert.Contains(t, string(out), "cannot listen on -addr "+p.addr)
}
