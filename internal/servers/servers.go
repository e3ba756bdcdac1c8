// Package servers starts the external server binaries that taikit's tests
// use (redis-server, nats-server, promtool, prometheus-alertmanager,
// chromium) the same way everywhere: on free loopback ports, stopped when
// the test ends, and skipped with a clear message when the binary is
// missing — unless TAIKIT_REQUIRE_SERVERS=1, which turns the skip into a
// failure (CI sets it after installing the binaries).
package servers

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
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
func FreePort(t testing.TB) int { return FreePorts(t, 1)[0] }

// FreePorts returns n different loopback TCP ports that were free a
// moment ago: each is held until all are found, so that the system cannot
// hand out one of them twice, as separate FreePort calls may.
func FreePorts(t testing.TB, n int) []int {
	t.Helper()
	ports := make([]int, n)
	for i := range ports {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("finding a free port: %v", err)
		}
		defer l.Close()
		ports[i] = l.Addr().(*net.TCPAddr).Port
	}
	return ports
}

// Redis is a redis-server process started for a test on a free loopback
// port, without persistence.
type Redis struct {
	Addr string
	cmd  *exec.Cmd
	done chan error
	once sync.Once
}

// StartRedis starts redis-server and stops it when the test ends. args are
// added to its command line (say, "--cluster-enabled", "yes").
func StartRedis(t testing.TB, args ...string) *Redis {
	t.Helper()
	bin := Binary(t, "redis-server", "redis-server")
	var lastErr error
	for range 3 { // the free port may be taken before redis binds it
		s, err := tryStartRedis(bin, FreePort(t), args)
		if err == nil {
			t.Cleanup(s.Stop)
			return s
		}
		lastErr = err
	}
	t.Fatalf("starting redis-server: %v", lastErr)
	return nil
}

func tryStartRedis(bin string, port int, args []string) (*Redis, error) {
	s := &Redis{Addr: "127.0.0.1:" + strconv.Itoa(port), done: make(chan error, 1)}
	s.cmd = exec.Command(bin, append([]string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--daemonize", "no", "--loglevel", "warning"}, args...)...)
	out := &syncBuffer{} // why it exited, should it
	s.cmd.Stdout, s.cmd.Stderr = out, out
	// A child it forked (a background save) may hold the output open
	// after the server is gone: Stop waits for it no longer than this.
	s.cmd.WaitDelay = time.Second
	if err := s.cmd.Start(); err != nil {
		return nil, err
	}
	go func() { s.done <- s.cmd.Wait() }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		// Another redis-server may hold the port (this one then exits):
		// only this process's answer says it is ready.
		pid, err := redisPID(s.Addr)
		if err == nil && pid == s.cmd.Process.Pid {
			return s, nil
		}
		if err == nil {
			err = fmt.Errorf("%s is served by another redis-server (process %d)", s.Addr, pid)
		}
		select {
		case werr := <-s.done:
			return nil, fmt.Errorf("redis-server exited: %v: %s", werr, strings.TrimSpace(out.String()))
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

// redisPID asks the server at addr, in the Redis protocol, for the ID of
// its process (INFO server), so that this package needs no Redis client.
func redisPID(addr string) (int, error) {
	c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(200 * time.Millisecond))
	if _, err := c.Write([]byte("*2\r\n$4\r\nINFO\r\n$6\r\nserver\r\n")); err != nil {
		return 0, err
	}
	r := bufio.NewReader(c)
	head, err := r.ReadString('\n')
	if err != nil {
		return 0, err
	}
	n, err := strconv.Atoi(strings.TrimSuffix(strings.TrimPrefix(head, "$"), "\r\n"))
	if !strings.HasPrefix(head, "$") || err != nil || n < 0 || n > 1<<20 {
		return 0, fmt.Errorf("redis-server answered INFO with %q", head)
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(r, body); err != nil {
		return 0, err
	}
	for line := range strings.Lines(string(body)) {
		if v, ok := strings.CutPrefix(line, "process_id:"); ok {
			return strconv.Atoi(strings.TrimSpace(v))
		}
	}
	return 0, fmt.Errorf("redis-server answered INFO without its process_id")
}
