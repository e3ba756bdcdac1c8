package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestTargetsDropAnInstanceThatExited: an instance that exits between
// deployments leaves the file Prometheus discovers the processes from at
// once; its port may be another process's by now.
func TestTargetsDropAnInstanceThatExited(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the local fleet reads /proc: Linux only")
	}
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("no /proc")
	}
	ts := startService(t, "-fleet", "local", "-local-traffic", "0")
	ts.users.add("api-service", "us-west-2")
	require.NoError(t, ts.target.Deploy(t.Context(), "api-service", "us-west-2", "v1.0.0", 1))
	require.Len(t, readTargets(t, ts.cfg.DataDir), 1)

	pids := processesOf(t, filepath.Join(ts.cfg.DataDir, "bin", "demoapp"))
	require.Len(t, pids, 1)
	require.NoError(t, syscall.Kill(pids[0], syscall.SIGKILL))
	require.Eventually(t, func() bool { return len(readTargets(t, ts.cfg.DataDir)) == 0 },
		10*time.Second, 10*time.Millisecond, "the exited instance is still a target")
}

// readTargets reads the file_sd file the service writes in dir.
func readTargets(t *testing.T, dir string) []sdGroup {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(dir, targetsFile))
	require.NoError(t, err)
	var groups []sdGroup
	require.NoError(t, json.Unmarshal(raw, &groups))
	return groups
}

// processesOf returns the pids of the processes running the executable at
// path.
func processesOf(t *testing.T, path string) []int {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	require.NoError(t, err)
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if exe, err := os.Readlink(filepath.Join("/proc", e.Name(), "exe")); err == nil && exe == path {
			pids = append(pids, pid)
		}
	}
	return pids
}
