package datadir

import (
	"bufio"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestSecondAcquireFailsAndChangesNothing(t *testing.T) {
	dir := t.TempDir()
	l, err := Acquire(dir)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "state"), []byte("kept"), 0o600))

	_, err = Acquire(dir)
	require.ErrorIs(t, err, ErrInUse)
	require.Contains(t, err.Error(), "process "+strconv.Itoa(os.Getpid()))
	b, err := os.ReadFile(filepath.Join(dir, "state"))
	require.NoError(t, err)
	require.Equal(t, "kept", string(b))

	require.NoError(t, l.Release())
	require.NoError(t, l.Release(), "a second Release is harmless")
	l2, err := Acquire(dir)
	require.NoError(t, err, "a released directory can be taken again")
	require.NoError(t, l2.Release())
}

func TestCreatesTheDirectory(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "b")
	l, err := Acquire(dir)
	require.NoError(t, err)
	defer l.Release()
	require.Equal(t, dir, l.Dir())
	fi, err := os.Stat(dir)
	require.NoError(t, err)
	require.True(t, fi.IsDir())
}

// TestKilledHolderLeavesNoStaleLock holds the lock in a child process,
// kills it with SIGKILL and takes the directory.
func TestKilledHolderLeavesNoStaleLock(t *testing.T) {
	if os.Getenv("DATADIR_HOLD") != "" {
		if _, err := Acquire(os.Getenv("DATADIR_HOLD")); err != nil {
			os.Exit(3)
		}
		os.Stdout.WriteString("held\n")
		select {} // until killed
	}
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run", "^TestKilledHolderLeavesNoStaleLock$")
	cmd.Env = append(os.Environ(), "DATADIR_HOLD="+dir)
	out, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	// Should an assertion end the test before the kill below, the child,
	// which waits to be killed, does not outlive it.
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	})
	line, err := bufio.NewReader(out).ReadString('\n')
	require.NoError(t, err)
	require.Equal(t, "held", strings.TrimSpace(line))

	_, err = Acquire(dir)
	require.ErrorIs(t, err, ErrInUse)
	require.Contains(t, err.Error(), "process "+strconv.Itoa(cmd.Process.Pid))

	require.NoError(t, cmd.Process.Kill())
	var exit *exec.ExitError
	require.True(t, errors.As(cmd.Wait(), &exit))
	l, err := Acquire(dir)
	require.NoError(t, err)
	require.NoError(t, l.Release())
}

// An empty path names no directory: it is refused, not taken for the
// working directory.
func TestAcquireRefusesAnEmptyPath(t *testing.T) {
	t.Chdir(t.TempDir())
	l, err := Acquire("")
	if err == nil {
		_ = l.Release()
	}
	require.Error(t, err)
	require.NoFileExists(t, LockFile)
}
