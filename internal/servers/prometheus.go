package servers

import (
	"io"
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
)

// StartPrometheus runs a prometheus server (Debian package prometheus)
// with the given configuration (the YAML of prometheus.yml) on a free
// loopback port, and returns its URL once /-/ready answers. The test's
// cleanup stops it. Without the binary the test is skipped, or fails when
// Required.
func StartPrometheus(t testing.TB, config string) string {
	t.Helper()
	binary := Binary(t, "prometheus", "prometheus")
	dir := t.TempDir()
	configFile := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(configFile, []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	// Prometheus cannot be told port 0: take a free port, and try again
	// should another process grab it first.
	for attempt := 1; ; attempt++ {
		addr := "127.0.0.1:" + strconv.Itoa(FreePort(t))
		out := &syncBuffer{}
		cmd := exec.Command(binary,
			"--config.file="+configFile,
			"--storage.tsdb.path="+filepath.Join(dir, "data"),
			"--web.listen-address="+addr,
			"--log.level=warn")
		cmd.Stdout, cmd.Stderr = out, out
		if err := cmd.Start(); err != nil {
			t.Fatalf("starting prometheus: %v", err)
		}
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
		if prometheusReady(t, url, exited) {
			return url
		}
		if attempt == 3 || !strings.Contains(out.String(), "address already in use") {
			t.Fatalf("prometheus did not become ready: %s", out)
		}
	}
}

// prometheusReady polls /-/ready for up to 30 s; false if the server
// exited first.
func prometheusReady(t testing.TB, url string, exited <-chan struct{}) bool {
	t.Helper()
	c := &http.Client{Timeout: time.Second}
	defer c.CloseIdleConnections()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := c.Get(url + "/-/ready")
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			_ = resp.Body.Close()
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

// syncBuffer collects a process's output.
type syncBuffer struct {
	mu  sync.Mutex
	buf []byte
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf = append(b.buf, p...)
	return len(p), nil
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return string(b.buf)
}
