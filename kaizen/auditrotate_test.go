package kaizen_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/kaizen"
)

// series returns the files of the trail that begins at first, in the
// order their names sort, as `taikit audit verify first*` takes them.
func series(t *testing.T, first string) []string {
	t.Helper()
	files, err := filepath.Glob(first + "*")
	require.NoError(t, err)
	return files
}

// observeFlushed appends a line per id to a, each flushed on its own, so
// that every write is a line and rotations fall between lines.
func observeFlushed(t *testing.T, a *kaizen.Audit, ids ...string) {
	t.Helper()
	for _, id := range ids {
		a.Observe(context.Background(), record(id))
		require.NoError(t, a.Flush(context.Background()))
	}
}

func TestOpenAuditFileRotates(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "audit.jsonl")
	var logs bytes.Buffer
	opts := kaizen.AuditOptions{RotateBytes: 600, Logger: slog.New(slog.NewTextHandler(&logs, nil))}
	a, _, err := kaizen.OpenAuditFile(path, opts)
	require.NoError(t, err)
	observeFlushed(t, a, ids("a", 9)...)
	last, lines := a.Last()
	require.NoError(t, a.Shutdown(context.Background()))

	files := series(t, path)
	require.Greater(t, len(files), 2, "a line is about 400 bytes: two to a file")
	assert.Equal(t, path, files[0])
	assert.Equal(t, path+".000001", files[1])
	var total uint64
	for _, f := range files {
		fi, err := os.Stat(f)
		require.NoError(t, err)
		assert.Positive(t, fi.Size(), "%s holds no line", f)
		assert.Less(t, fi.Size(), int64(600+1000), "%s passed RotateBytes by more than a line", f)
		got, err := kaizen.VerifyAuditFiles(kaizen.VerifyOptions{}, f)
		if f == path {
			require.NoError(t, err)
		} else {
			require.Error(t, err, "%s verifies alone: it does not continue the file before", f)
		}
		total += got.Lines
	}
	sum, err := kaizen.VerifyAuditFiles(kaizen.VerifyOptions{}, files...)
	require.NoError(t, err)
	assert.Equal(t, uint64(9), sum.Lines)
	assert.Equal(t, sum.Last, last)
	assert.Less(t, lines, uint64(9), "Last counts the lines of the file holding the last one")
	assert.Contains(t, logs.String(), "audit trail rotated")
}

func TestOpenAuditFileRotatedGoesOnInTheLastFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "audit.jsonl")
	key := bytes.Repeat([]byte("k"), kaizen.MinAuditKeyLen)
	opts := kaizen.AuditOptions{RotateBytes: 900, Key: key}
	a, _, err := kaizen.OpenAuditFile(path, opts)
	require.NoError(t, err)
	observeFlushed(t, a, ids("a", 7)...)
	require.NoError(t, a.Shutdown(context.Background()))
	before := series(t, path)
	require.Greater(t, len(before), 1)
	lastFile := before[len(before)-1]
	held, err := kaizen.VerifyAuditFiles(kaizen.VerifyOptions{Key: key}, before...)
	require.NoError(t, err)

	// A restart appends to the last file, verifying it alone from the
	// last hash of the one before.
	a, state, err := kaizen.OpenAuditFile(path, opts)
	require.NoError(t, err)
	inLast, err := kaizen.VerifyAuditFiles(kaizen.VerifyOptions{Key: key, Genesis: lastHashOf(t, before[len(before)-2], key)}, lastFile)
	require.NoError(t, err)
	assert.Equal(t, inLast.Lines, state.Lines, "the state is the last file's")
	assert.Equal(t, lastFile, state.File)
	assert.Equal(t, held.Last, state.Last)
	observeFlushed(t, a, "b-1")
	require.NoError(t, a.Shutdown(context.Background()))
	sum, err := kaizen.VerifyAuditFiles(kaizen.VerifyOptions{Key: key}, series(t, path)...)
	require.NoError(t, err)
	assert.Equal(t, uint64(8), sum.Lines)
}

// lastHashOf returns the last hash of the trail file f, which begins a
// trail or not: it is read line by line without verification.
func lastHashOf(t *testing.T, f string, key []byte) string {
	t.Helper()
	b, err := os.ReadFile(f)
	require.NoError(t, err)
	lines := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
	last := lines[len(lines)-1]
	i := strings.Index(last, `"hash":"`)
	require.GreaterOrEqual(t, i, 0)
	return last[i+8 : i+8+64]
}

func TestOpenAuditFileRotatedAfterACrashBetweenFiles(t *testing.T) {
	// A crash right after the next file was made leaves it empty: a
	// restart goes on in it, from the last hash of the file before.
	dir := t.TempDir()
	path := filepath.Join(dir, "audit.jsonl")
	opts := kaizen.AuditOptions{RotateBytes: 1 << 20}
	_, _ = appendTrail(t, path, opts, ids("a", 3)...)
	require.NoError(t, os.WriteFile(path+".000001", nil, 0o600))
	state, _ := appendTrail(t, path, opts, ids("b", 2)...)
	assert.Zero(t, state.Lines)
	sum, err := kaizen.VerifyAuditFiles(kaizen.VerifyOptions{}, series(t, path)...)
	require.NoError(t, err)
	assert.Equal(t, uint64(5), sum.Lines)
	b, err := os.ReadFile(path + ".000001")
	require.NoError(t, err)
	assert.Equal(t, 2, bytes.Count(b, []byte("\n")))
}

func TestOpenAuditFileRotatedAfterTheFilesBeforeAreArchived(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "audit.jsonl")
	opts := kaizen.AuditOptions{RotateBytes: 600}
	a, _, err := kaizen.OpenAuditFile(path, opts)
	require.NoError(t, err)
	observeFlushed(t, a, ids("a", 7)...)
	require.NoError(t, a.Shutdown(context.Background()))
	files := series(t, path)
	require.Greater(t, len(files), 2)
	// Every file but the last taken away: the last goes on from the prev
	// of its own first line.
	for _, f := range files[:len(files)-1] {
		require.NoError(t, os.Remove(f))
	}
	state, _ := appendTrail(t, path, opts, "b-1")
	assert.Positive(t, state.Lines)
	rest := series(t, path)
	require.Equal(t, files[len(files)-1:], rest[:1])
	_, err = kaizen.VerifyAuditFiles(kaizen.VerifyOptions{Genesis: firstPrevOf(t, rest[0])}, rest...)
	require.NoError(t, err)
}

// firstPrevOf returns the prev of the first line of the trail file f.
func firstPrevOf(t *testing.T, f string) string {
	t.Helper()
	b, err := os.ReadFile(f)
	require.NoError(t, err)
	i := bytes.Index(b, []byte(`"prev":"`))
	require.GreaterOrEqual(t, i, 0)
	return string(b[i+8 : i+8+64])
}

func TestOpenAuditFileRotatedRefusesABrokenLink(t *testing.T) {
	// The last file must continue the one before: one whose first line
	// links elsewhere is refused, and nothing is changed.
	dir := t.TempDir()
	path := filepath.Join(dir, "audit.jsonl")
	opts := kaizen.AuditOptions{RotateBytes: 1 << 20}
	_, _ = appendTrail(t, path, opts, ids("a", 2)...)
	other := filepath.Join(dir, "other.jsonl")
	_, _ = appendTrail(t, other, kaizen.AuditOptions{}, ids("x", 2)...)
	b, err := os.ReadFile(other)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(path+".000001", b, 0o600))

	_, _, err = kaizen.OpenAuditFile(path, opts)
	var ae *kaizen.AuditError
	require.ErrorAs(t, err, &ae)
	assert.Equal(t, path+".000001", ae.File)
	assert.Equal(t, 1, ae.Line)
	after, err := os.ReadFile(path + ".000001")
	require.NoError(t, err)
	assert.Equal(t, b, after)
}

func TestOpenAuditFileRotationFailureKeepsTheTrail(t *testing.T) {
	// The next file cannot be made (a directory holds its name): the
	// Audit goes on in the current file, warns, and tries again once the
	// file holds RotateBytes more.
	dir := t.TempDir()
	scratch := filepath.Join(dir, "scratch.jsonl")
	_, _ = appendTrail(t, scratch, kaizen.AuditOptions{}, "a-1")
	fi, err := os.Stat(scratch)
	require.NoError(t, err)
	line := fi.Size() // every line of this test is as long

	path := filepath.Join(dir, "audit.jsonl")
	require.NoError(t, os.Mkdir(path+".000001", 0o700))
	var logs bytes.Buffer
	opts := kaizen.AuditOptions{RotateBytes: line + 1, Logger: slog.New(slog.NewTextHandler(&logs, nil))}
	a, _, err := kaizen.OpenAuditFile(path, opts)
	require.NoError(t, err)
	// Tried after the second line (2 lines >= RotateBytes), and not
	// again before the file holds 3 lines + 1 byte.
	observeFlushed(t, a, ids("a", 3)...)
	require.NoError(t, a.Err())
	assert.Equal(t, 1, strings.Count(logs.String(), "audit trail not rotated"), logs.String())
	require.NoError(t, os.Remove(path+".000001"))
	observeFlushed(t, a, "a-4")
	require.NoError(t, a.Shutdown(context.Background()))
	assert.Equal(t, 1, strings.Count(logs.String(), "audit trail not rotated"), logs.String())
	assert.Contains(t, logs.String(), "audit trail rotated")
	fi, err = os.Stat(path)
	require.NoError(t, err)
	assert.Equal(t, 4*line, fi.Size(), "the lines went on in the current file")
	assert.Equal(t, []string{path, path + ".000001"}, series(t, path))
	sum, err := kaizen.VerifyAuditFiles(kaizen.VerifyOptions{}, series(t, path)...)
	require.NoError(t, err)
	assert.Equal(t, uint64(4), sum.Lines)
}

func TestOpenAuditFileRotatedIgnoresOtherNames(t *testing.T) {
	// Only path.NNNNNN, as rotation spells it, is a file of the series.
	dir := t.TempDir()
	path := filepath.Join(dir, "audit.jsonl")
	for _, name := range []string{"audit.jsonl.1", "audit.jsonl.0000002", "audit.jsonl.00000x", "audit.jsonl.000000", "audit.jsonl.bak"} {
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), []byte("not a trail\n"), 0o600))
	}
	state, _ := appendTrail(t, path, kaizen.AuditOptions{RotateBytes: 1 << 20}, "a-1")
	assert.Zero(t, state.Lines)
	_, err := kaizen.VerifyAuditFiles(kaizen.VerifyOptions{}, path)
	require.NoError(t, err)
}

func TestAuditRotateBytesErrors(t *testing.T) {
	_, err := kaizen.NewAudit(&bytes.Buffer{}, kaizen.AuditOptions{RotateBytes: 1})
	require.ErrorContains(t, err, "RotateBytes is for OpenAuditFile")
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	_, _, err = kaizen.OpenAuditFile(path, kaizen.AuditOptions{RotateBytes: -1})
	require.ErrorContains(t, err, "RotateBytes -1 is negative")
	_, statErr := os.Stat(path)
	assert.True(t, errors.Is(statErr, os.ErrNotExist), "the file is not made for a bad option")
	// An empty last file with no line before it anywhere cannot say
	// where it continues from.
	require.NoError(t, os.WriteFile(path+".000003", nil, 0o600))
	_, _, err = kaizen.OpenAuditFile(path, kaizen.AuditOptions{RotateBytes: 100})
	require.ErrorContains(t, err, "the hash its first line continues from is unknown")
}

// rotatedTrail writes a trail of n lines with RotateBytes 600, about two
// lines to a file, and returns its files.
func rotatedTrail(t *testing.T, path string, n int) []string {
	t.Helper()
	a, _, err := kaizen.OpenAuditFile(path, kaizen.AuditOptions{RotateBytes: 600})
	require.NoError(t, err)
	observeFlushed(t, a, ids("a", n)...)
	require.NoError(t, a.Shutdown(context.Background()))
	files := series(t, path)
	require.Greater(t, len(files), 2)
	return files
}

func TestOpenAuditFileRotatedEndsAFirstLineWithoutItsNewline(t *testing.T) {
	// The last file holds one complete line, and, in place of its
	// newline, nothing or the NUL bytes a file system that lost the end
	// of a write leaves; the files before are archived away. The line
	// tells where the file continues from, and gets its newline.
	for name, end := range map[string]string{"no newline": "", "NULs": "\x00\x00\x00\x00"} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "audit.jsonl")
			files := rotatedTrail(t, path, 5)
			last := files[len(files)-1]
			b, err := os.ReadFile(files[len(files)-2])
			require.NoError(t, err)
			ls := strings.SplitAfter(string(b), "\n")
			line := ls[len(ls)-2]
			require.NoError(t, os.WriteFile(last, []byte(strings.TrimSuffix(line, "\n")+end), 0o600))
			for _, f := range files[:len(files)-1] {
				require.NoError(t, os.Remove(f))
			}

			state, _ := appendTrail(t, path, kaizen.AuditOptions{RotateBytes: 600}, "b-1")
			assert.Equal(t, last, state.File)
			assert.Equal(t, uint64(1), state.Lines)
			assert.True(t, state.NewlineAdded)
			assert.Equal(t, int64(len(end)), state.Cut)
			_, err = kaizen.VerifyAuditFiles(kaizen.VerifyOptions{Genesis: firstPrevOf(t, last)}, series(t, path)...)
			require.NoError(t, err)
		})
	}
}

func TestOpenAuditFileRotatedAfterAFileWithoutItsLastNewline(t *testing.T) {
	// The file before the last ends in a complete line without its
	// newline: VerifyAuditFiles takes it as that file's last line, and
	// so does OpenAuditFile, whose last file continues from it.
	dir := t.TempDir()
	path := filepath.Join(dir, "audit.jsonl")
	files := rotatedTrail(t, path, 5)
	before := files[len(files)-2]
	b, err := os.ReadFile(before)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(before, bytes.TrimSuffix(b, []byte("\n")), 0o600))
	held, err := kaizen.VerifyAuditFiles(kaizen.VerifyOptions{}, files...)
	require.NoError(t, err)

	state, _ := appendTrail(t, path, kaizen.AuditOptions{RotateBytes: 600}, "b-1")
	assert.Equal(t, held.Last, state.Last)
	sum, err := kaizen.VerifyAuditFiles(kaizen.VerifyOptions{}, series(t, path)...)
	require.NoError(t, err)
	assert.Equal(t, uint64(6), sum.Lines)
}

// TestOpenAuditFileRotatedAfterAFileEndingInNULs: the file before the
// last ends in the NUL bytes a file system that lost the end of a write
// leaves, in place of its last newline or after it, as many as a line
// holds or more. The NUL bytes are no line: the last file continues from
// the last whole line before them, for OpenAuditFile and VerifyAuditFiles
// alike.
func TestOpenAuditFileRotatedAfterAFileEndingInNULs(t *testing.T) {
	for name, tc := range map[string]struct {
		keepNewline bool
		nuls        int64
	}{
		"in place of its newline":          {nuls: 4},
		"after its newline":                {keepNewline: true, nuls: 4},
		"more than a line holds, in place": {nuls: int64(kaizen.MaxAuditLineLen) + 10},
		"more than a line holds, after":    {keepNewline: true, nuls: int64(kaizen.MaxAuditLineLen) + 10},
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "audit.jsonl")
			files := rotatedTrail(t, path, 5)
			held, err := kaizen.VerifyAuditFiles(kaizen.VerifyOptions{}, files...)
			require.NoError(t, err)
			before := files[len(files)-2]
			b, err := os.ReadFile(before)
			require.NoError(t, err)
			if !tc.keepNewline {
				b = bytes.TrimSuffix(b, []byte("\n"))
			}
			require.NoError(t, os.WriteFile(before, b, 0o600))
			require.NoError(t, os.Truncate(before, int64(len(b))+tc.nuls)) // NUL bytes, sparse

			a, state, err := kaizen.OpenAuditFile(path, kaizen.AuditOptions{RotateBytes: 600})
			require.NoError(t, err)
			assert.Equal(t, held.Last, state.Last)
			assert.Zero(t, state.Cut, "the file appended to is whole")
			sum, err := kaizen.VerifyAuditFiles(kaizen.VerifyOptions{}, files...)
			require.NoError(t, err)
			assert.Equal(t, held, sum)
			observeFlushed(t, a, "b-1")
			require.NoError(t, a.Shutdown(context.Background()))
			sum, err = kaizen.VerifyAuditFiles(kaizen.VerifyOptions{}, series(t, path)...)
			require.NoError(t, err)
			assert.Equal(t, uint64(6), sum.Lines)
		})
	}
}

func TestAuditLastAcrossARotationAndARestart(t *testing.T) {
	// Once the trail goes on in a new file, Last gives the last hash of
	// the file before and the lines of the new one, none: what a restart
	// that finds the new file empty gives too.
	dir := t.TempDir()
	path := filepath.Join(dir, "audit.jsonl")
	opts := kaizen.AuditOptions{RotateBytes: 600}
	a, _, err := kaizen.OpenAuditFile(path, opts)
	require.NoError(t, err)
	observeFlushed(t, a, ids("a", 2)...)
	require.Equal(t, []string{path, path + ".000001"}, series(t, path), "the second line rotated the trail")
	hash, lines := a.Last()
	require.NoError(t, a.Shutdown(context.Background()))
	assert.Equal(t, lastHashOf(t, path, nil), hash)

	a, state, err := kaizen.OpenAuditFile(path, opts)
	require.NoError(t, err)
	assert.Equal(t, kaizen.AuditSummary{Lines: 0, Last: hash}, state.AuditSummary)
	rhash, rlines := a.Last()
	assert.Equal(t, hash, rhash)
	assert.Equal(t, rlines, lines, "the same head before and after the restart")
	observeFlushed(t, a, "b-1")
	_, lines = a.Last()
	assert.Equal(t, uint64(1), lines)
	require.NoError(t, a.Shutdown(context.Background()))
}

func TestOpenAuditFileRotatedRefusesAGapBeforeTheLastFile(t *testing.T) {
	// The file before the last is archived away, an older one is not
	// (its shipping failed). Nothing tells that last file from a stray
	// one, so it is not appended to: the open fails naming the files, and
	// nothing is changed. Once the older files are archived too, the last
	// file goes on from the prev of its own first line.
	dir := t.TempDir()
	path := filepath.Join(dir, "audit.jsonl")
	files := rotatedTrail(t, path, 7)
	require.Len(t, files, 4)
	require.NoError(t, os.Remove(files[2]))
	held := contents(t, files[0], files[1], files[3])

	_, _, err := kaizen.OpenAuditFile(path, kaizen.AuditOptions{RotateBytes: 600})
	require.Error(t, err)
	assert.ErrorContains(t, err, files[3]+" follows "+files[1]+", but "+files[2]+" between them is missing")
	assert.Equal(t, held, contents(t, files[0], files[1], files[3]), "nothing is changed")
	assert.Equal(t, []string{files[0], files[1], files[3]}, series(t, path), "nothing is made")

	require.NoError(t, os.Remove(files[0]))
	require.NoError(t, os.Remove(files[1]))
	state, _ := appendTrail(t, path, kaizen.AuditOptions{RotateBytes: 600}, "b-1")
	assert.Equal(t, files[3], state.File)
	_, err = kaizen.VerifyAuditFiles(kaizen.VerifyOptions{Genesis: firstPrevOf(t, files[3])}, files[3:]...)
	require.NoError(t, err)
}

func TestOpenAuditFileRotatedGoesOnWhenOnlyNumberedFilesAreArchived(t *testing.T) {
	// A clean-up of path.* archives the numbered files but the newest and
	// keeps path itself, the oldest: the gap after path is one archiving
	// leaves, and the last file goes on from the prev of its own first
	// line.
	dir := t.TempDir()
	path := filepath.Join(dir, "audit.jsonl")
	files := rotatedTrail(t, path, 7)
	require.Len(t, files, 4)
	require.NoError(t, os.Remove(files[1]))
	require.NoError(t, os.Remove(files[2]))

	state, _ := appendTrail(t, path, kaizen.AuditOptions{RotateBytes: 600}, "b-1")
	assert.Equal(t, files[3], state.File)
	_, err := kaizen.VerifyAuditFiles(kaizen.VerifyOptions{Genesis: firstPrevOf(t, files[3])}, files[3:]...)
	require.NoError(t, err)
}

// contents returns what each of files holds.
func contents(t *testing.T, files ...string) []string {
	t.Helper()
	var held []string
	for _, f := range files {
		b, err := os.ReadFile(f)
		require.NoError(t, err)
		held = append(held, string(b))
	}
	return held
}

func TestOpenAuditFileRotatedRefusesAStrayFile(t *testing.T) {
	// A file named as the series' next but not of it — another trail's
	// file renamed, a copy — is never appended to, and the open says
	// which file it is and why it is refused.
	other := func(t *testing.T, dir string, n int) []byte {
		t.Helper()
		p := filepath.Join(dir, "other.jsonl")
		_, _ = appendTrail(t, p, kaizen.AuditOptions{}, ids("x", n)...)
		b, err := os.ReadFile(p)
		require.NoError(t, err)
		require.NoError(t, os.Remove(p))
		return b
	}
	cases := map[string]struct {
		series func(t *testing.T, path string) []string // the series' files
		stray  func(t *testing.T, path string, files []string) (name string, b []byte)
		want   []string
	}{
		"another trail's file far after the last": {
			series: func(t *testing.T, path string) []string { return rotatedTrail(t, path, 5) },
			stray: func(t *testing.T, path string, _ []string) (string, []byte) {
				return path + ".000007", other(t, filepath.Dir(path), 2)
			},
			want: []string{"audit.jsonl.000007 follows", "audit.jsonl.000002, but", "audit.jsonl.000003 to", "audit.jsonl.000006 between them are missing"},
		},
		"another trail's file after the first": {
			series: func(t *testing.T, path string) []string {
				_, _ = appendTrail(t, path, kaizen.AuditOptions{}, ids("a", 2)...)
				return []string{path}
			},
			stray: func(t *testing.T, path string, _ []string) (string, []byte) {
				return path + ".000007", other(t, filepath.Dir(path), 2)
			},
			want: []string{"audit.jsonl.000007 begins a trail of its own"},
		},
		"a copy of the last file as the next": {
			series: func(t *testing.T, path string) []string { return rotatedTrail(t, path, 5) },
			stray: func(t *testing.T, path string, files []string) (string, []byte) {
				b, err := os.ReadFile(files[len(files)-1])
				require.NoError(t, err)
				return path + ".000003", b
			},
			want: []string{"audit.jsonl.000003:1: its prev hash is not the last hash of", "audit.jsonl.000002"},
		},
		"a copy of the last file after an empty next one": {
			// A crash right after a rotation leaves the next file empty;
			// a copy of the file before it, named as the one after, is
			// not taken for the series' last file.
			series: func(t *testing.T, path string) []string {
				files := rotatedTrail(t, path, 5)
				require.Len(t, files, 3)
				require.NoError(t, os.WriteFile(path+".000003", nil, 0o600))
				return append(files, path+".000003")
			},
			stray: func(t *testing.T, path string, files []string) (string, []byte) {
				b, err := os.ReadFile(files[2])
				require.NoError(t, err)
				return path + ".000004", b
			},
			want: []string{"audit.jsonl.000004:1: its prev hash is not the last hash of", "audit.jsonl.000002"},
		},
		"another trail's later file after the first and an empty next one": {
			// path holds lines and the file after it none, as a crash
			// right after a rotation leaves it: the file after that is
			// checked against path, as VerifyAuditFiles checks it.
			series: func(t *testing.T, path string) []string {
				_, _ = appendTrail(t, path, kaizen.AuditOptions{}, ids("b", 2)...)
				require.NoError(t, os.WriteFile(path+".000001", nil, 0o600))
				return []string{path, path + ".000001"}
			},
			stray: func(t *testing.T, path string, _ []string) (string, []byte) {
				files := rotatedTrail(t, filepath.Join(t.TempDir(), "other.jsonl"), 5)
				b, err := os.ReadFile(files[1])
				require.NoError(t, err)
				return path + ".000002", b
			},
			want: []string{"audit.jsonl.000002:1: its prev hash is not the last hash of", "audit.jsonl: the files are out of order"},
		},
		"another trail's first file as the next": {
			series: func(t *testing.T, path string) []string { return rotatedTrail(t, path, 5) },
			stray: func(t *testing.T, path string, _ []string) (string, []byte) {
				return path + ".000003", other(t, filepath.Dir(path), 2)
			},
			want: []string{"audit.jsonl.000003:1: its prev hash is not the last hash of", "audit.jsonl.000002",
				"begins a trail of its own"},
		},
		"another trail's first file, the series archived": {
			series: func(t *testing.T, path string) []string {
				files := rotatedTrail(t, path, 5)
				for _, f := range files {
					require.NoError(t, os.Remove(f))
				}
				return nil
			},
			stray: func(t *testing.T, path string, _ []string) (string, []byte) {
				return path + ".000007", other(t, filepath.Dir(path), 2)
			},
			want: []string{"audit.jsonl.000007", "begins a trail of its own"},
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "audit.jsonl")
			files := tc.series(t, path)
			held := contents(t, files...)
			stray, b := tc.stray(t, path, files)
			require.NoError(t, os.WriteFile(stray, b, 0o600))

			_, _, err := kaizen.OpenAuditFile(path, kaizen.AuditOptions{RotateBytes: 600})
			require.Error(t, err)
			for _, w := range tc.want {
				assert.ErrorContains(t, err, w)
			}
			after, err := os.ReadFile(stray)
			require.NoError(t, err)
			assert.Equal(t, b, after, "the stray file is not appended to")
			assert.Equal(t, held, contents(t, files...), "the series is not changed")
		})
	}
}

// A relative path names the series' directory as it was when the trail
// was opened: a process that changes its working directory later goes on
// rotating there, not in the new working directory.
func TestOpenAuditFileRotatesWhereARelativePathWasOpened(t *testing.T) {
	dir, elsewhere := t.TempDir(), t.TempDir()
	t.Chdir(dir)
	a, _, err := kaizen.OpenAuditFile("audit.jsonl", kaizen.AuditOptions{RotateBytes: 600})
	require.NoError(t, err)
	t.Chdir(elsewhere)
	observeFlushed(t, a, ids("a", 6)...)
	require.NoError(t, a.Shutdown(context.Background()))

	stray, err := filepath.Glob(filepath.Join(elsewhere, "audit.jsonl*"))
	require.NoError(t, err)
	assert.Empty(t, stray, "rotated into the working directory of the moment")
	sum, err := kaizen.VerifyAuditFiles(kaizen.VerifyOptions{}, series(t, filepath.Join(dir, "audit.jsonl"))...)
	require.NoError(t, err)
	assert.Equal(t, uint64(6), sum.Lines)
}
