//go:build unix

package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/kaizen"
)

// TestBinary builds the command and runs it as a shell would: the exit
// status and the output are what a script sees. It runs the binary as
// the user nobody too (when the test runs as root), to see a trail it may
// not read fail with status 1.
func TestBinary(t *testing.T) {
	dir, err := os.MkdirTemp("", "taikit-cli")
	require.NoError(t, err)
	t.Cleanup(func() { os.RemoveAll(dir) })
	require.NoError(t, os.Chmod(dir, 0o755)) // nobody may run the binary
	bin := filepath.Join(dir, "taikit")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "go", "build", "-o", bin, ".").CombinedOutput()
	require.NoError(t, err, "%s", out)

	f := newFixture(t)
	runBin := func(cred *syscall.Credential, args ...string) (int, string, string, error) {
		cmd := exec.CommandContext(ctx, bin, args...)
		cmd.Dir = dir
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
		var stdout, stderr bytes.Buffer // Run waits for the copying to end
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			return exit.ExitCode(), stdout.String(), stderr.String(), nil
		}
		return 0, stdout.String(), stderr.String(), err
	}

	code, stdout, stderr, err := runBin(nil, "audit", "verify", "-key-file", f.keyFile, f.one, f.two)
	require.NoError(t, err)
	assert.Equal(t, 0, code, stderr)
	assert.Equal(t, "ok: 5 lines in 2 files; last hash "+f.last2+"\n", stdout)

	code, stdout, stderr, err = runBin(nil, "audit", "verify", "-key-file", f.keyFile, f.tampered)
	require.NoError(t, err)
	assert.Equal(t, 1, code)
	assert.Empty(t, stdout)
	assert.Equal(t, f.tampered+":2: edited: its hash does not match its content\n", stderr)

	code, _, stderr, err = runBin(nil, "audit", "verify")
	require.NoError(t, err)
	assert.Equal(t, 2, code)
	assert.Contains(t, stderr, "no FILE to verify")

	// FILE - is the standard input of the process.
	cmd := exec.CommandContext(ctx, bin, "audit", "verify", "-key-file", f.keyFile, "-")
	in, err := os.Open(f.one)
	require.NoError(t, err)
	defer in.Close()
	cmd.Stdin = in
	out, err = cmd.Output()
	require.NoError(t, err)
	assert.Equal(t, "ok: 3 lines in 1 file; last hash "+f.last1+"\n", string(out))

	// A trail file only its owner may read.
	locked := filepath.Join(dir, "audit.jsonl")
	writeTrail(t, locked, kaizen.AuditOptions{}, 2)
	var cred *syscall.Credential
	if os.Geteuid() == 0 {
		cred = &syscall.Credential{Uid: 65534, Gid: 65534} // root may read anything
	} else {
		require.NoError(t, os.Chmod(locked, 0))
	}
	code, stdout, stderr, err = runBin(cred, "audit", "verify", locked)
	if errors.Is(err, syscall.EPERM) {
		t.Skipf("cannot run a process as nobody: %v", err)
	}
	require.NoError(t, err)
	assert.Equal(t, 1, code)
	assert.Empty(t, stdout)
	assert.Equal(t, locked+": open "+locked+": permission denied\n", stderr)
}
