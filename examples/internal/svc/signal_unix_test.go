//go:build unix

package svc_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/examples/internal/svc"
)

// A second SIGINT ends the process at once, even sent the moment the
// first one's stop is seen: the default handling is back before the
// context ends, where it came back on a goroutine of its own after, and a
// signal sent in between was taken for the first and dropped, leaving a
// process that waited out its graceful stop. The process sends itself
// both, twenty times over.
func TestSecondSignalEndsTheProcess(t *testing.T) {
	if os.Getenv("SVC_SECOND_SIGNAL_CHILD") == "1" {
		ctx, stop := svc.StopOnSignal(context.Background())
		defer stop()
		self, err := os.FindProcess(os.Getpid())
		if err != nil {
			os.Exit(3)
		}
		_ = self.Signal(os.Interrupt)
		<-ctx.Done()
		_ = self.Signal(os.Interrupt)
		time.Sleep(5 * time.Second)
		os.Exit(0) // the second signal was dropped
	}
	for i := range 20 {
		cmd := exec.Command(os.Args[0], "-test.run=^TestSecondSignalEndsTheProcess$")
		cmd.Env = append(os.Environ(), "SVC_SECOND_SIGNAL_CHILD=1")
		err := cmd.Run()
		var exit *exec.ExitError
		require.True(t, errors.As(err, &exit), "run %d: the process ran on after the second signal (%v)", i, err)
		status, ok := exit.Sys().(syscall.WaitStatus)
		require.True(t, ok)
		require.True(t, status.Signaled() && status.Signal() == syscall.SIGINT || status.ExitStatus() == 130,
			"run %d: the process ended with %v, not by the second SIGINT", i, exit)
	}
}
