package servers

import (
	"encoding/json"
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
		url, out, ok := tryStartPrometheus(t, binary, dir, configFile, addr)
		if ok {
			return url
		}
		if attempt == 3 || !strings.Contains(out, "address already in use") {
			t.Fatalf("prometheus did not become ready: %s", out)
		}
	}
}

// tryStartPrometheus runs prometheus on addr, stopped by the test's
// cleanup, and returns its URL once it is ready; or false and its output
// when it exited first.
func tryStartPrometheus(t testing.TB, binary, dir, configFile, addr string) (url, output string, ok bool) {
	t.Helper()
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
	url = "http://" + addr
	if prometheusReady(t, url, configFile, exited) {
		return url, "", true
	}
	return "", out.String(), false
}

// prometheusReady polls /-/ready for up to 30 s; false if the server
// exited first. Only a server run with configFile counts: another one may
// have taken the port, and this one then exits.
func prometheusReady(t testing.TB, url, configFile string, exited <-chan struct{}) bool {
	t.Helper()
	c := &http.Client{Timeout: time.Second}
	defer c.CloseIdleConnections()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if ok, _ := get(c, url+"/-/ready", nil); ok {
			var flags struct {
				Data map[string]string `json:"data"`
			}
			if ok, err := get(c, url+"/api/v1/status/flags", &flags); ok && err == nil && flags.Data["config.file"] == configFile {
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

// get reports whether url answers 200, and decodes the answer into v
// unless v is nil.
func get(c *http.Client, url string, v any) (bool, error) {
	resp, err := c.Get(url)
	if err != nil {
		return false, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, resp.Body)
		return false, nil
	}
	if v == nil {
		_, err = io.Copy(io.Discard, resp.Body)
		return true, err
	}
	return true, json.NewDecoder(resp.Body).Decode(v)
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
