// Package servers starts the external server binaries that taikit's tests
// use (redis-server, nats-server, promtool, prometheus-alertmanager,
// chromium) the same way everywhere: on free loopback ports, stopped when
// the test ends, and skipped with a clear message when the binary is
// missing — unless TAIKIT_REQUIRE_SERVERS=1, which turns the skip into a
// failure (CI sets it after installing the binaries).
package servers

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Required reports whether TAIKIT_REQUIRE_SERVERS=1 is set.
func Required() bool { return os.Getenv("TAIKIT_REQUIRE_SERVERS") == "1" }

// Binary returns the path of the first of names found on PATH (or given as
// an absolute path). When none is found it skips the test, or fails it
// when Required.
func Binary(t testing.TB, debianPackage string, names ...string) string {
	t.Helper()
	for _, n := range names {
		if p, err := exec.LookPath(n); err == nil {
			return p
		}
	}
	if Required() {
		t.Fatalf("%v not found and TAIKIT_REQUIRE_SERVERS=1 (Debian package %s)", names, debianPackage)
	}
	t.Skipf("%v not found; install the Debian package %s, or set TAIKIT_REQUIRE_SERVERS=1 to fail instead", names, debianPackage)
	return ""
}

// FreePort returns a loopback TCP port that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("finding a free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// Redis is a redis-server process started for a test on a free loopback
// port, without persistence.
type Redis struct {
	Addr string
	cmd  *exec.Cmd
	done chan error
	once sync.Once
}

// StartRedis starts redis-server and stops it when the test ends.
func StartRedis(t testing.TB) *Redis {
	t.Helper()
	bin := Binary(t, "redis-server", "redis-server")
	var lastErr error
	for range 3 { // the free port may be taken before redis binds it
		s, err := tryStartRedis(bin, FreePort(t))
		if err == nil {
			t.Cleanup(s.Stop)
			return s
		}
		lastErr = err
	}
	t.Fatalf("starting redis-server: %v", lastErr)
	return nil
}

func tryStartRedis(bin string, port int) (*Redis, error) {
	s := &Redis{Addr: "127.0.0.1:" + strconv.Itoa(port), done: make(chan error, 1)}
	s.cmd = exec.Command(bin, "--port", strconv.Itoa(port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--daemonize", "no", "--loglevel", "warning")
	if err := s.cmd.Start(); err != nil {
		return nil, err
	}
	go func() { s.done <- s.cmd.Wait() }()
	c := redis.NewClient(&redis.Options{Addr: s.Addr, MaxRetries: -1})
	defer c.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		err := c.Ping(ctx).Err()
		cancel()
		if err == nil {
			return s, nil
		}
		select {
		case werr := <-s.done:
			return nil, fmt.Errorf("redis-server exited: %v", werr)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			s.Stop()
			return nil, err
		}
	}
}

// Stop kills the server and waits for it to exit. It is safe to call more
// than once.
func (s *Redis) Stop() {
	s.once.Do(func() {
		_ = s.cmd.Process.Kill()
		<-s.done
	})
}

// URL returns a redis:// URL of the server.
func (s *Redis) URL() string { return "redis://" + s.Addr }

// Client returns a client of s, closed when the test ends.
func (s *Redis) Client(t testing.TB) *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: s.Addr})
	t.Cleanup(func() { _ = c.Close() })
	return c
}
