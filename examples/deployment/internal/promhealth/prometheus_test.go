package promhealth

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/examples/deployment/internal/fleet"
	"github.com/taipattern/taikit/examples/deployment/internal/localfleet"
)

// prometheusBinary returns the prometheus binary's path, skipping the test
// when there is none unless TAIKIT_REQUIRE_SERVERS=1.
func prometheusBinary(t *testing.T) string {
	t.Helper()
	path, err := exec.LookPath("prometheus")
	if err != nil {
		if os.Getenv("TAIKIT_REQUIRE_SERVERS") == "1" {
			t.Fatalf("prometheus is required (TAIKIT_REQUIRE_SERVERS=1) but not found: %v", err)
		}
		t.Skip("prometheus not installed (Debian: apt-get install -y prometheus); set TAIKIT_REQUIRE_SERVERS=1 to fail instead of skipping")
	}
	return path
}

// syncBuffer collects a process's output.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// startPrometheus runs a Prometheus server on a free loopback port that
// scrapes targets every second, and returns its URL once it is ready. The
// test's cleanup stops it.
func startPrometheus(t *testing.T, binary string, targets []string) string {
	t.Helper()
	dir := t.TempDir()
	quoted := make([]string, len(targets))
	for i, target := range targets {
		quoted[i] = strconv.Quote(target)
	}
	config := fmt.Sprintf(`global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: demoapp
    static_configs:
      - targets: [%s]
`, strings.Join(quoted, ", "))
	configFile := filepath.Join(dir, "prometheus.yml")
	require.NoError(t, os.WriteFile(configFile, []byte(config), 0o644))

	// Prometheus cannot be told port 0, so take a free port and try again
	// should another process grab it first.
	for attempt := 1; ; attempt++ {
		addr := freeAddr(t)
		stderr := &syncBuffer{}
		cmd := exec.Command(binary,
			"--config.file="+configFile,
			"--storage.tsdb.path="+filepath.Join(dir, "data"),
			"--web.listen-address="+addr,
			"--log.level=warn")
		cmd.Stdout, cmd.Stderr = stderr, stderr
		require.NoError(t, cmd.Start())
		exited := make(chan struct{})
		go func() {
			_ = cmd.Wait()
			close(exited)
		}()
		t.Cleanup(func() {
			_ = cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-exited:
			case <-time.After(10 * time.Second):
				_ = cmd.Process.Kill()
				<-exited
			}
		})
		url := "http://" + addr
		if waitReady(t, url, exited) {
			return url
		}
		if attempt == 3 || !strings.Contains(stderr.String(), "address already in use") {
			t.Fatalf("prometheus did not become ready: %s", stderr)
		}
	}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	return addr
}

// waitReady polls /-/ready for up to 30s; false if the server exited.
func waitReady(t *testing.T, url string, exited <-chan struct{}) bool {
	t.Helper()
	c := &http.Client{Timeout: time.Second}
	defer c.CloseIdleConnections()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := c.Get(url + "/-/ready")
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return true
			}
		}
		select {
		case <-exited:
			return false
		case <-time.After(100 * time.Millisecond):
		}
	}
	t.Fatal("prometheus not ready within 30s")
	return false
}

// TestAgainstPrometheus runs two versions of the demoapp, one healthy and
// one failing a fifth of its requests, has a real Prometheus scrape them,
// sends traffic at both, and reads their health back through the HTTP
// API.
func TestAgainstPrometheus(t *testing.T) {
	prometheus := prometheusBinary(t)
	ctx := t.Context()
	binary, err := localfleet.Build(ctx, t.TempDir())
	require.NoError(t, err)
	f, err := localfleet.New(localfleet.Options{
		Binary: binary,
		Profile: func(service, version, region string) (localfleet.AppProfile, error) {
			p := localfleet.AppProfile{Latency: 5 * time.Millisecond}
			if version == "v2" {
				p.ErrorRate = 0.2
			}
			return p, nil
		},
	})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, f.Shutdown(t.Context())) })
	for _, v := range []string{"v1", "v2"} {
		require.NoError(t, f.Deploy(ctx, "web", "eu", v, 1))
	}
	require.NoError(t, f.Route(ctx, "web", "eu", "v1", "v2", 50))
	targets := append(f.Instances("web", "eu", "v1"), f.Instances("web", "eu", "v2")...)
	promURL := startPrometheus(t, prometheus, targets)
	proxy, _ := f.ProxyURL("web", "eu")

	// Traffic at about 100 requests a second to each version until the
	// test ends.
	stop := make(chan struct{})
	var traffic sync.WaitGroup
	t.Cleanup(func() { close(stop); traffic.Wait() })
	c := &http.Client{Transport: &http.Transport{}, Timeout: 10 * time.Second}
	t.Cleanup(c.CloseIdleConnections)
	for range 2 {
		traffic.Go(func() {
			tick := time.NewTicker(10 * time.Millisecond)
			defer tick.Stop()
			for {
				select {
				case <-stop:
					return
				case <-tick.C:
				}
				if resp, err := c.Get(proxy + "/"); err == nil {
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
			}
		})
	}

	h, err := New(Options{URL: promURL})
	require.NoError(t, err)
	const window = 10 * time.Second
	var good, bad fleet.Sample
	var lastErr error
	require.Eventually(t, func() bool {
		good, lastErr = h.Sample(ctx, "web", "eu", "v1", window)
		if lastErr != nil {
			return false
		}
		bad, lastErr = h.Sample(ctx, "web", "eu", "v2", window)
		return lastErr == nil && good.Requests >= 300 && bad.Requests >= 300
	}, 60*time.Second, 500*time.Millisecond, "no full window of data: %v", &lastErr)
	t.Logf("v1: %+v", good)
	t.Logf("v2: %+v", bad)

	assert.InDelta(t, 0, good.ErrorRate, 0.001, "the healthy version fails nothing")
	assert.InDelta(t, 0.2, bad.ErrorRate, 0.02, "the bad version fails a fifth")
	for _, s := range []fleet.Sample{good, bad} {
		assert.GreaterOrEqual(t, s.P99, 5*time.Millisecond, "at least the app's delay")
		assert.Less(t, s.P99, time.Second)
		assert.Greater(t, s.CPU, 0.0)
		assert.LessOrEqual(t, s.CPU, 1.0)
		assert.Greater(t, s.Memory, 0.0, "a Go process has some resident memory")
		assert.Less(t, s.Memory, 1.0, "and far less than 256 MiB")
		assert.WithinDuration(t, time.Now(), s.Time, 10*time.Second)
	}

	t.Run("unknown version", func(t *testing.T) {
		_, err := h.Sample(ctx, "web", "eu", "v9", window)
		assert.ErrorIs(t, err, fleet.ErrNoData)
	})
	t.Run("bad query", func(t *testing.T) {
		q := DefaultQueries()
		q.P99 = `histogram_quantile(0.99, sum by (le) (rate(http_request_duration_seconds_bucket[{{.Window}}]))`
		h, err := New(Options{URL: promURL, Queries: q})
		require.NoError(t, err, "the template is fine; the PromQL is not")
		_, err = h.Sample(ctx, "web", "eu", "v1", window)
		var apiErr *APIError
		require.ErrorAs(t, err, &apiErr)
		assert.Equal(t, http.StatusBadRequest, apiErr.StatusCode)
		assert.Equal(t, "bad_data", apiErr.Type)
		assert.Contains(t, apiErr.Message, "parse error")
		t.Log(err)
	})
}
