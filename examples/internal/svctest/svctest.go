// Package svctest helps the example services' tests: a log buffer safe
// for concurrent writes, and the service run as a process of its own (the
// test binary, run again) that a test can kill.
package svctest

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// SyncBuffer is a bytes.Buffer safe for concurrent use: a logger's
// destination that a test reads.
type SyncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

// Write appends p.
func (b *SyncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String returns what was written.
func (b *SyncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// RunAsChild is for TestMain: when the variable env is set, the test
// binary was started by StartChild, so it runs the service with run and
// the variable's arguments, and exits; otherwise it returns.
func RunAsChild(env, name string, run func(args []string) error) {
	args, ok := os.LookupEnv(env)
	if !ok {
		return
	}
	if err := run(strings.Fields(args)); err != nil {
		fmt.Fprintln(os.Stderr, name+":", err)
		os.Exit(1)
	}
	os.Exit(0)
}

// Child is the service running in a process of its own.
type Child struct {
	Cmd  *exec.Cmd
	URL  string        // what the ready line's first group matched
	Done chan struct{} // closed when the process has exited
	Err  error         // its exit, once Done is closed
	Logs *SyncBuffer   // its standard error

	ready chan string // the ready line's first group, once seen
}

// StartChild starts the test binary again with the variable env set to
// args (TestMain then calls RunAsChild), and waits, until ctx ends, for a
// line of its standard error that matches ready; the match's first group
// is the Child's URL. The process is killed when the test ends.
func StartChild(ctx context.Context, t testing.TB, env, args string, ready *regexp.Regexp) *Child {
	t.Helper()
	c := LaunchChild(t, env, args, ready)
	c.WaitReady(ctx, t)
	return c
}

// LaunchChild is StartChild without the wait: the test reads the Logs of
// the service as it starts, and calls WaitReady.
func LaunchChild(t testing.TB, env, args string, ready *regexp.Regexp) *Child {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), env+"="+args)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := &Child{Cmd: cmd, Done: make(chan struct{}), Logs: &SyncBuffer{}, ready: make(chan string, 1)}
	go func() {
		// A line of any length is read whole: a bufio.Scanner stops at
		// one longer than its buffer, and the child, its standard error
		// no longer read, would block on its next write.
		lines := bufio.NewReader(stderr)
		for {
			line, err := lines.ReadString('\n')
			if line != "" {
				line = strings.TrimSuffix(strings.TrimSuffix(line, "\n"), "\r")
				_, _ = c.Logs.Write([]byte(line + "\n"))
				if m := ready.FindStringSubmatch(line); len(m) > 1 {
					select {
					case c.ready <- m[1]:
					default:
					}
				}
			}
			if err != nil {
				break
			}
		}
		c.Err = cmd.Wait()
		close(c.Done)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-c.Done
	})
	return c
}

// WaitReady waits, until ctx ends, for the ready line of a child started
// by LaunchChild, and sets its URL. The test fails if the process exits
// without having written it.
func (c *Child) WaitReady(ctx context.Context, t testing.TB) {
	t.Helper()
	select {
	case c.URL = <-c.ready:
	case <-c.Done:
		// The ready line, if written, was seen before Done was closed.
		select {
		case c.URL = <-c.ready:
			return
		default:
		}
		t.Fatalf("the service exited before it was ready: %v\n%s", c.Err, c.Logs.String())
	case <-ctx.Done():
		t.Fatalf("the service was not ready in time\n%s", c.Logs.String())
	}
}

// WaitLog waits, until ctx ends, for the child's standard error to
// contain s. The test fails if the process exits without having logged
// it.
func (c *Child) WaitLog(ctx context.Context, t testing.TB, s string) {
	t.Helper()
	for !strings.Contains(c.Logs.String(), s) {
		select {
		case <-c.Done:
			// Its logs are whole once Done is closed: it may have logged
			// s, and exited, since the look above.
			if strings.Contains(c.Logs.String(), s) {
				return
			}
			t.Fatalf("the service exited before it logged %q: %v\n%s", s, c.Err, c.Logs.String())
		case <-ctx.Done():
			t.Fatalf("the service did not log %q in time\n%s", s, c.Logs.String())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Stop sends the process sig and waits, until ctx ends, for its exit,
// which it returns; that of a process that has exited already, too.
func (c *Child) Stop(ctx context.Context, t testing.TB, sig os.Signal) error {
	t.Helper()
	if err := c.Cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		t.Fatal(err)
	}
	select {
	case <-c.Done:
		return c.Err
	case <-ctx.Done():
		t.Fatalf("the service did not exit after %v\n%s", sig, c.Logs.String())
		return nil
	}
}
