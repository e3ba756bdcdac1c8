package svctest_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/taipattern/taikit/examples/internal/svctest"
)

const childEnv = "SVCTEST_CHILD_ARGS"

// TestMain runs a small service as the child: it announces itself and
// waits for a signal, or fails when told to.
func TestMain(m *testing.M) {
	svctest.RunAsChild(childEnv, "toy", func(args []string) error {
		if len(args) > 0 && args[0] == "fail" {
			return fmt.Errorf("told to fail")
		}
		if len(args) > 0 && args[0] == "long" {
			// A log line longer than any line buffer of 64 KiB.
			fmt.Fprintln(os.Stderr, `msg="big" body=`+strings.Repeat("x", 1<<20))
		}
		if len(args) > 0 && args[0] == "brief" {
			fmt.Fprintln(os.Stderr, `msg="toy ready" url=http://127.0.0.1:1/brief`)
			return nil
		}
		fmt.Fprintln(os.Stderr, `msg="toy ready" url=http://127.0.0.1:1/`+args[0])
		time.Sleep(time.Minute)
		return nil
	})
	goleak.VerifyTestMain(m)
}

func TestStartChildAndStop(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ready := regexp.MustCompile(`msg="toy ready" url=(\S+)`)
	c := svctest.StartChild(ctx, t, childEnv, "here", ready)
	assert.Equal(t, "http://127.0.0.1:1/here", c.URL)
	c.WaitLog(ctx, t, `msg="toy ready"`)
	err := c.Stop(ctx, t, syscall.SIGKILL)
	assert.ErrorContains(t, err, "killed")
	assert.Contains(t, c.Logs.String(), "toy ready")
}

func TestStartChildAfterALongLogLine(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ready := regexp.MustCompile(`msg="toy ready" url=(\S+)`)
	c := svctest.StartChild(ctx, t, childEnv, "long", ready)
	assert.Equal(t, "http://127.0.0.1:1/long", c.URL)
	assert.True(t, strings.Contains(c.Logs.String(), `msg="big" body=`+strings.Repeat("x", 1<<20)+"\n"),
		"the long line is in the logs whole")
}

func TestWaitReadyAfterTheChildExited(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ready := regexp.MustCompile(`msg="toy ready" url=(\S+)`)
	// Once the child has exited, its ready line and its exit are both
	// there to see; the ready line must win every time.
	for range 8 {
		c := svctest.LaunchChild(t, childEnv, "brief", ready)
		<-c.Done
		require.NoError(t, c.Err)
		c.WaitReady(ctx, t)
		assert.Equal(t, "http://127.0.0.1:1/brief", c.URL)
	}
}

// TestWaitLogAfterTheChildExited: a child that logs the line waited for
// and exits at once has logged it; WaitLog, meeting its exit, looks at the
// logs once more. It failed when the exit came between its look and its
// wait.
func TestWaitLogAfterTheChildExited(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ready := regexp.MustCompile(`msg="toy ready" url=(\S+)`)
	for range 8 {
		// Launched and waited for at once: the child logs and exits
		// while WaitLog waits between two looks.
		c := svctest.LaunchChild(t, childEnv, "brief", ready)
		c.WaitLog(ctx, t, "/brief")
	}
}

// fatalTB records a failure instead of ending the test.
type fatalTB struct {
	testing.TB
	failed chan string
}

func (f fatalTB) Fatalf(format string, args ...any) { f.failed <- fmt.Sprintf(format, args...) }

// A child that has exited by itself is not an error of Stop: its exit,
// what Stop returns, is there to read.
func TestStopAfterTheChildExited(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := svctest.LaunchChild(t, childEnv, "fail", regexp.MustCompile(`never`))
	<-c.Done
	tb := fatalTB{TB: t, failed: make(chan string, 1)}
	err := c.Stop(ctx, tb, syscall.SIGTERM)
	select {
	case msg := <-tb.failed:
		t.Fatalf("Stop failed the test: %s", msg)
	default:
	}
	assert.ErrorContains(t, err, "exit status 1")
}

func TestWaitHealthyGivesUpOnAHungMonitor(t *testing.T) {
	hung := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-hung:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(hung)
	n := &svctest.NATSNode{Name: "n1", MonitorURL: srv.URL, Logs: &svctest.SyncBuffer{}}
	tb := fatalTB{TB: t, failed: make(chan string, 1)}
	// A monitor that accepts the request and never answers fails the
	// wait when its time is up; it waited for the answer forever.
	n.WaitHealthy(tb, 100*time.Millisecond)
	select {
	case msg := <-tb.failed:
		assert.Contains(t, msg, "n1 not healthy within 100ms")
	default:
		t.Fatal("WaitHealthy returned without failing")
	}
}

func TestSyncBuffer(t *testing.T) {
	var b svctest.SyncBuffer
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 100 {
				_, _ = b.Write([]byte("x"))
			}
		})
	}
	wg.Wait()
	require.Len(t, b.String(), 800)
}

func ExampleSyncBuffer() {
	var b svctest.SyncBuffer
	fmt.Fprint(&b, "logged")
	fmt.Println(b.String())
	// Output: logged
}
