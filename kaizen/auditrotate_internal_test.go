//go:build darwin || dragonfly || freebsd || illumos || linux || netbsd || openbsd

package kaizen

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/tai"
)

// TestOpenAuditFileRefusesAFileRotatedOutAfterItsListing: the Audit
// appending to a series goes on in the next file between a second
// OpenAuditFile's listing of the series and its lock of the file it took
// for the last one, and so releases that file's lock. The second open
// still fails with ErrAuditFileInUse: it does not append to a file
// rotated out, which would fork the chain.
func TestOpenAuditFileRefusesAFileRotatedOutAfterItsListing(t *testing.T) {
	ctx := context.Background()
	rec := func(id string) tai.Record {
		return tai.Record{ID: id, Kind: "payment", Start: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
	}
	var line bytes.Buffer // every line of this test is as long
	scratch, err := NewAudit(&line, AuditOptions{})
	require.NoError(t, err)
	scratch.Observe(ctx, rec("a-0"))
	require.NoError(t, scratch.Shutdown(ctx))

	path := filepath.Join(t.TempDir(), "audit.jsonl")
	opts := AuditOptions{RotateBytes: int64(line.Len()) + 1} // rotated by the second line
	a, _, err := OpenAuditFile(path, opts)
	require.NoError(t, err)
	a.Observe(ctx, rec("a-1"))
	require.NoError(t, a.Flush(ctx))

	seriesListed = func() {
		seriesListed = nil
		a.Observe(ctx, rec("a-2"))
		require.NoError(t, a.Flush(ctx))
		_, err := os.Stat(path + ".000001")
		require.NoError(t, err, "rotated")
	}
	t.Cleanup(func() { seriesListed = nil })
	_, _, err = OpenAuditFile(path, opts)
	require.ErrorIs(t, err, ErrAuditFileInUse)
	assert.Contains(t, err.Error(), path+".000001")

	a.Observe(ctx, rec("a-3"))
	require.NoError(t, a.Shutdown(ctx))
	sum, err := VerifyAuditFiles(VerifyOptions{}, path, path+".000001")
	require.NoError(t, err)
	assert.Equal(t, uint64(3), sum.Lines)
}

// TestAuditRotationLosingItsNextFileStops: a second OpenAuditFile lists
// the series after the Audit appending to it made the next file and
// before it locked it, and takes that file, and the lines after it, for
// its own. The first Audit then stops its trail instead of going on in
// the file the second one continues, which would fork the chain.
func TestAuditRotationLosingItsNextFileStops(t *testing.T) {
	ctx := context.Background()
	rec := func(id string) tai.Record {
		return tai.Record{ID: id, Kind: "payment", Start: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
	}
	var line bytes.Buffer // every line of this test is as long
	scratch, err := NewAudit(&line, AuditOptions{})
	require.NoError(t, err)
	scratch.Observe(ctx, rec("a-0"))
	require.NoError(t, scratch.Shutdown(ctx))

	path := filepath.Join(t.TempDir(), "audit.jsonl")
	opts := AuditOptions{RotateBytes: int64(line.Len()) + 1} // rotated by the second line
	a, _, err := OpenAuditFile(path, opts)
	require.NoError(t, err)
	var second *Audit
	nextCreated = func() {
		nextCreated = nil
		var err error
		second, _, err = OpenAuditFile(path, opts)
		require.NoError(t, err)
	}
	t.Cleanup(func() { nextCreated = nil })
	a.Observe(ctx, rec("a-1"))
	a.Observe(ctx, rec("a-2"))
	require.ErrorIs(t, a.Flush(ctx), ErrAuditFileInUse)
	require.NotNil(t, second)
	a.Observe(ctx, rec("a-3"))
	assert.Equal(t, uint64(1), a.Unwritten())
	require.ErrorIs(t, a.Shutdown(ctx), ErrAuditFileInUse)

	second.Observe(ctx, rec("b-1"))
	require.NoError(t, second.Shutdown(ctx))
	sum, err := VerifyAuditFiles(VerifyOptions{}, path, path+".000001")
	require.NoError(t, err)
	assert.Equal(t, uint64(3), sum.Lines)
}
