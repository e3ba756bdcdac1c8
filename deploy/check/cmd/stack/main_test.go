package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestDownEndsOnInterrupt: the operator's Ctrl-C during make down reaches
// the command as SIGINT while down waits out a component's graceful stop
// (the sink's, 30s); down then kills the component (SIGKILL) instead of
// waiting on. The component ignores SIGTERM and notes that it got it.
func TestDownEndsOnInterrupt(t *testing.T) {
	dir, notes := t.TempDir(), t.TempDir()
	for _, d := range []string{"logs", "pids"} {
		require.NoError(t, os.MkdirAll(filepath.Join(dir, d), 0o755))
	}
	sh, err := exec.LookPath("sh")
	require.NoError(t, err)
	cmd := exec.Command(sh, "-c", "trap 'touch "+filepath.Join(notes, "term")+"' TERM; touch "+filepath.Join(notes, "ready")+"; while :; do sleep 0.1; done")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	require.NoError(t, cmd.Start())
	pid := cmd.Process.Pid
	t.Cleanup(func() {
		_ = syscall.Kill(-pid, syscall.SIGKILL)
		_ = cmd.Wait()
	})
	exists := func(name string) func() bool {
		return func() bool { _, err := os.Stat(filepath.Join(notes, name)); return err == nil }
	}
	require.Eventually(t, exists("ready"), 10*time.Second, 10*time.Millisecond, "the component sets its trap")
	// The PID file as up writes it: "PID START PATH", START the 22nd
	// field of /proc/PID/stat.
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	require.NoError(t, err)
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "pids", "sink.pid"), []byte(strconv.Itoa(pid)+" "+f[19]+" "+sh+"\n"), 0o644))

	var stdout, stderr bytes.Buffer
	done := make(chan int, 1)
	go func() {
		done <- run([]string{"-dir", dir, "-bin", t.TempDir(), "-repo", ".", "-port-base", "20000", "down"}, &stdout, &stderr)
	}()
	require.Eventually(t, exists("term"), 10*time.Second, 10*time.Millisecond, "down sends the sink SIGTERM")
	require.NoError(t, syscall.Kill(os.Getpid(), syscall.SIGINT))
	select {
	case code := <-done:
		assert.Equal(t, 0, code, "stderr: %s", stderr.String())
	case <-time.After(2 * time.Minute):
		t.Fatal("down does not end")
	}
	assert.Contains(t, stdout.String(), "interrupted")
	assert.Contains(t, stdout.String(), "sink           killed (SIGKILL, pid "+strconv.Itoa(pid)+")")
	assert.NoFileExists(t, filepath.Join(dir, "pids", "sink.pid"))
}

// TestCommandsRefuseArguments: up, status, down and logs act on the
// whole stack; an argument they do not take ("stack down payment-1", as
// if it stopped one component) is refused before anything is done, not
// ignored while the whole stack is stopped or started.
func TestCommandsRefuseArguments(t *testing.T) {
	dir := t.TempDir()
	for _, args := range [][]string{{"down", "payment-1"}, {"logs", "payment-1"}, {"logs", "-n", "5", "nats-1"}} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(append([]string{"-dir", dir, "-bin", t.TempDir(), "-repo", ".", "-port-base", "20000"}, args...), &stdout, &stderr)
			assert.Equal(t, 2, code)
			assert.Empty(t, stdout.String(), "nothing is done")
			assert.Contains(t, stderr.String(), "stack "+args[0]+": unexpected argument \""+args[len(args)-1]+"\"")
		})
	}
}

// TestHelperServerFinishesRequestsInFlight: a helper server (the sink, the
// NATS exporter) stopped by a signal answers the requests it is serving
// before it returns, and the process exits: an alert Alertmanager is
// delivering as make down stops the sink is answered, not cut off. The
// handler holds its answer until the server has begun to shut down, then
// until serve has returned or a second has passed.
func TestHelperServerFinishesRequestsInFlight(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	require.NoError(t, l.Close())

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	entered, returned := make(chan struct{}), make(chan struct{})
	var cutOff atomic.Bool
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		began := make(chan struct{})
		r.Context().Value(http.ServerContextKey).(*http.Server).RegisterOnShutdown(func() { close(began) })
		close(entered)
		<-began
		select {
		case <-returned:
			cutOff.Store(true)
		case <-time.After(time.Second):
		}
		_, _ = io.WriteString(w, "answered")
	})
	var stderr bytes.Buffer
	code := make(chan int, 1)
	go func() {
		defer close(returned)
		code <- serve(ctx, "stack test", []string{"-addr", addr}, &stderr, func(*slog.Logger, []string) (http.Handler, error) { return h, nil })
	}()

	body := make(chan string, 1)
	go func() {
		for {
			resp, err := http.Get("http://" + addr + "/")
			if err != nil {
				select {
				case <-returned:
					body <- err.Error()
					return
				case <-time.After(10 * time.Millisecond): // not listening yet
					continue
				}
			}
			b, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil {
				body <- err.Error()
				return
			}
			body <- string(b)
			return
		}
	}()
	<-entered
	cancel()
	assert.Equal(t, 0, <-code, "stderr: %s", stderr.String())
	assert.Equal(t, "answered", <-body)
	assert.False(t, cutOff.Load(), "serve returned while a request was in flight")
}
