package main

import (
	"context"
	"crypto/sha256"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/examples/internal/datadir"
)

// dirDigest maps every file under dir but the embedded NATS store (which
// the running service's JetStream may rewrite on its own) to the SHA-256
// of its contents.
func dirDigest(t *testing.T, dir string) map[string][32]byte {
	t.Helper()
	out := map[string][32]byte{}
	require.NoError(t, filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		if d.IsDir() {
			if rel == "nats" {
				return filepath.SkipDir
			}
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		out[rel] = sha256.Sum256(b)
		return nil
	}))
	return out
}

// TestSecondStartChangesNothing starts the service a second time on the
// data dir of a running one, and once on a fresh dir with the port busy:
// both fail at once with a message saying why, and neither changes a file
// of the running service nor creates any state.
func TestSecondStartChangesNothing(t *testing.T) {
	cfg := testConfig(t)
	ts := startService(t, cfg)
	first := ts.pay(t, "cust_first", 10, nil)
	require.Equal(t, http.StatusOK, first.Code, string(first.Raw))
	require.NoError(t, ts.audit.Flush(context.Background()))
	before := dirDigest(t, cfg.DataDir)
	require.Contains(t, before, "audit-test.jsonl")
	require.Contains(t, before, "LOCK")

	busy, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer busy.Close()
	noEnv := func(string) string { return "" }
	start := func(dir string) error {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		return run(ctx, []string{"-data-dir", dir, "-addr", busy.Addr().String(), "-instance", "test"}, noEnv, testWriter{t})
	}

	err = start(cfg.DataDir)
	require.ErrorIs(t, err, datadir.ErrInUse)
	assert.Contains(t, err.Error(), "process "+strconv.Itoa(os.Getpid()), "names the process holding it")
	assert.Equal(t, before, dirDigest(t, cfg.DataDir), "the running service's files are untouched")

	fresh := filepath.Join(t.TempDir(), "fresh")
	err = start(fresh)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "cannot listen on -addr "+busy.Addr().String())
	assert.NoDirExists(t, fresh, "the data dir the failed start made is taken away: no NATS store, no audit trail, no lock file")
	l, err := datadir.Acquire(fresh)
	require.NoError(t, err, "the failed start released the directory")
	require.NoError(t, l.Release())

	// The first service goes on as before.
	got := ts.do(t, http.MethodGet, "/payment/"+first.str("transaction_id"), nil)
	assert.Equal(t, http.StatusOK, got.Code, string(got.Raw))
	assert.Equal(t, http.StatusOK, ts.pay(t, "cust_second", 10, nil).Code)
}
