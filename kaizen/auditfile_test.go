package kaizen_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/taipattern/taikit/kaizen"
	"github.com/taipattern/taikit/tai"
)

// record returns the record of signal id.
func record(id string) tai.Record {
	return tai.Record{ID: id, Kind: "payment", Key: "cust_1", Outcome: tai.Succeeded,
		Decision: tai.Decision{Verdict: tai.Allow, Policy: "fraud", Score: 0.1},
		Start:    time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC), Duration: time.Millisecond}
}

// appendTrail opens the trail at path, appends a line per id, shuts the
// Audit down and returns what OpenAuditFile found and what Last reports.
func appendTrail(t tb, path string, opts kaizen.AuditOptions, ids ...string) (kaizen.AuditFileState, kaizen.AuditSummary) {
	t.Helper()
	a, state, err := kaizen.OpenAuditFile(path, opts)
	require.NoError(t, err)
	for _, id := range ids {
		a.Observe(context.Background(), record(id))
	}
	require.NoError(t, a.Shutdown(context.Background()))
	last, n := a.Last()
	return state, kaizen.AuditSummary{Lines: n, Last: last}
}

// tb is what appendTrail needs of a *testing.T or *rapid.T.
type tb interface {
	require.TestingT
	Helper()
}

func ids(prefix string, n int) []string {
	s := make([]string, n)
	for i := range s {
		s[i] = fmt.Sprintf("%s-%d", prefix, i+1)
	}
	return s
}

func TestOpenAuditFileContinuesTheChain(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	var logs syncBuffer
	opts := kaizen.AuditOptions{Logger: slog.New(slog.NewTextHandler(&logs, nil))}
	state, last := appendTrail(t, path, opts, ids("run1", 3)...)
	assert.Equal(t, kaizen.AuditFileState{File: path, AuditSummary: kaizen.AuditSummary{Lines: 0, Last: kaizen.GenesisHash}}, state, "a new file")
	fi, err := os.Stat(path)
	require.NoError(t, err)
	assert.Equal(t, fs.FileMode(0o600), fi.Mode().Perm(), "created readable by its owner only")
	assert.Equal(t, uint64(3), last.Lines)

	state2, last2 := appendTrail(t, path, opts, ids("run2", 2)...)
	assert.Equal(t, kaizen.AuditFileState{File: path, AuditSummary: last}, state2, "the file as the first run left it")
	assert.Equal(t, uint64(5), last2.Lines, "Last counts the lines the file held")

	state3, last3 := appendTrail(t, path, opts)
	assert.Equal(t, last2, state3.AuditSummary)
	assert.Empty(t, logs.Bytes(), "nothing to repair, nothing to log")
	assert.Equal(t, last2, last3, "a run that writes nothing leaves Last where it was")

	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	sum, err := kaizen.VerifyAuditWith(f, kaizen.VerifyOptions{Expect: last.Last})
	require.NoError(t, err, "one chain across the runs")
	assert.Equal(t, last2, sum)
}

func TestOpenAuditFileKeepsTheModeOfAnExistingFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	require.NoError(t, os.WriteFile(path, nil, 0o640))
	appendTrail(t, path, kaizen.AuditOptions{}, "1")
	fi, err := os.Stat(path)
	require.NoError(t, err)
	assert.Equal(t, fs.FileMode(0o640), fi.Mode().Perm())
}

// TestOpenAuditFileRefusesABadLine: a complete line that does not verify
// is evidence; OpenAuditFile names it and leaves the file alone.
func TestOpenAuditFileRefusesABadLine(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.jsonl")
	appendTrail(t, good, kaizen.AuditOptions{Key: testKey}, ids("x", 4)...)
	orig, err := os.ReadFile(good)
	require.NoError(t, err)
	ls := lines(orig)

	other := bytes.Clone(testKey)
	other[5] ^= 0xff
	for _, c := range []struct {
		name    string
		content string
		opts    kaizen.AuditOptions
		line    int
		reason  string
	}{
		{"tampered middle line", strings.Join([]string{ls[0], strings.Replace(ls[1], `"cust_1"`, `"cust_2"`, 1), ls[2], ls[3]}, "\n") + "\n",
			kaizen.AuditOptions{Key: testKey}, 2, "edited"},
		{"deleted middle line", strings.Join([]string{ls[0], ls[2], ls[3]}, "\n") + "\n",
			kaizen.AuditOptions{Key: testKey}, 2, "prev hash is not the hash of line 1"},
		{"tampered last line without its newline", strings.Join([]string{ls[0], ls[1], ls[2], strings.Replace(ls[3], `"cust_1"`, `"cust_2"`, 1)}, "\n"),
			kaizen.AuditOptions{Key: testKey}, 4, "edited"},
		{"blank line", string(orig) + "\n", kaizen.AuditOptions{Key: testKey}, 5, blankReason + undone},
		{"wrong key", string(orig), kaizen.AuditOptions{Key: other}, 1, "the key is wrong"},
		{"no key", string(orig), kaizen.AuditOptions{}, 1, "written with a key"},
		{"another genesis", string(orig), kaizen.AuditOptions{Key: testKey, Genesis: strings.Repeat("01", 32)}, 1, "not the genesis hash"},
	} {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(dir, strings.ReplaceAll(c.name, " ", "-")+".jsonl")
			require.NoError(t, os.WriteFile(path, []byte(c.content), 0o600))
			var logs syncBuffer
			c.opts.Logger = slog.New(slog.NewTextHandler(&logs, nil))
			a, state, err := kaizen.OpenAuditFile(path, c.opts)
			require.ErrorIs(t, err, kaizen.ErrAuditTampered)
			assert.Nil(t, a)
			assert.Zero(t, state)
			var ae *kaizen.AuditError
			require.ErrorAs(t, err, &ae)
			assert.Equal(t, path, ae.File)
			assert.Equal(t, c.line, ae.Line)
			assert.Contains(t, ae.Reason, c.reason)
			assert.Equal(t, ae.Error(), err.Error(), "the error is the *AuditError, which names the file already")
			after, err := os.ReadFile(path)
			require.NoError(t, err)
			assert.Equal(t, c.content, string(after), "the file is left as it was")
			assert.Empty(t, logs.Bytes())
		})
	}
}

// TestOpenAuditFileCutsATornLine: a crash in the middle of a write leaves
// the start of a line without its newline. It was never a record: it is
// cut off, reported and logged, and the chain goes on from the line
// before.
func TestOpenAuditFileCutsATornLine(t *testing.T) {
	dir := t.TempDir()
	full := filepath.Join(dir, "full.jsonl")
	appendTrail(t, full, kaizen.AuditOptions{}, ids("x", 3)...)
	orig, err := os.ReadFile(full)
	require.NoError(t, err)
	ls := lines(orig)
	twoLines := len(ls[0]) + len(ls[1]) + 2

	for _, keep := range []int{1, 9, len(ls[2]) / 2, len(ls[2]) - 1} {
		t.Run(fmt.Sprintf("%d bytes of line 3", keep), func(t *testing.T) {
			path := filepath.Join(dir, fmt.Sprintf("torn-%d.jsonl", keep))
			require.NoError(t, os.WriteFile(path, orig[:twoLines+keep], 0o600))
			var logs syncBuffer
			opts := kaizen.AuditOptions{Logger: slog.New(slog.NewTextHandler(&logs, nil))}
			a, state, err := kaizen.OpenAuditFile(path, opts)
			require.NoError(t, err)
			assert.Equal(t, kaizen.AuditFileState{File: path, AuditSummary: kaizen.AuditSummary{Lines: 2, Last: hashOf(ls[1])}, Cut: int64(keep)}, state)
			assert.Contains(t, string(logs.Bytes()), fmt.Sprintf(`level=WARN msg="kaizen: audit trail ended in a line cut short; cut it off" file=%s line=3 bytes=%d`, path, keep))
			last, n := a.Last()
			assert.Equal(t, hashOf(ls[1]), last)
			assert.Equal(t, uint64(2), n)
			after, err := os.ReadFile(path)
			require.NoError(t, err)
			assert.Equal(t, string(orig[:twoLines]), string(after), "cut before anything is appended")

			a.Observe(context.Background(), record("y"))
			require.NoError(t, a.Shutdown(context.Background()))
			sum, err := kaizen.VerifyAuditFiles(kaizen.VerifyOptions{}, path)
			require.NoError(t, err)
			assert.Equal(t, uint64(3), sum.Lines)
		})
	}
}

// TestOpenAuditFileKeepsWhatIsNotATornLine: a last line without its
// newline is cut off only when it begins as an audit line begins (or is
// the NUL bytes a file system that lost a write leaves). A file that is
// not a trail, such as a key written with printf, and a trail that ends
// in something else, are refused and left as they are: they lost all of
// it, cut off as a torn line.
func TestOpenAuditFileKeepsWhatIsNotATornLine(t *testing.T) {
	dir := t.TempDir()
	trail := filepath.Join(dir, "trail.jsonl")
	appendTrail(t, trail, kaizen.AuditOptions{}, ids("x", 2)...)
	orig, err := os.ReadFile(trail)
	require.NoError(t, err)

	for _, tc := range []struct {
		name    string
		content []byte
		line    int
	}{
		{"a key", []byte("\x8f\x02k\xe1 2\x9a\x00q7\xd0\xffS\x11\xb4\x04\x7f\xc3\x9e\x01\x15&\xa0w\x88\xee\x10\x93y\xfa\x06"), 1},
		{"text", []byte("audit-key-file=/etc/taikit/key"), 1},
		{"a trail, then text", append(bytes.Clone(orig), "# rotated"...), 3},
		{"a trail, then a line's end", append(bytes.Clone(orig), `"time":"2026-03-01T12:00:00Z"`...), 3},
		// The last line is complete and something follows it where its
		// newline was: not a line cut short, whose record a cut would
		// lose, but a line that does not verify.
		{"a trail, then text on its last line", append(bytes.Clone(orig[:len(orig)-1]), " # rotated"...), 2},
		{"a trail, then a line's start on its last line", append(bytes.Clone(orig[:len(orig)-1]), `{"time":"2026-03`...), 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "-"))
			require.NoError(t, os.WriteFile(path, tc.content, 0o600))
			_, _, err := kaizen.OpenAuditFile(path, kaizen.AuditOptions{})
			var ae *kaizen.AuditError
			require.ErrorAs(t, err, &ae)
			assert.Equal(t, kaizen.AuditError{File: path, Line: tc.line, Reason: "not an audit line (malformed or truncated)"}, *ae)
			after, err := os.ReadFile(path)
			require.NoError(t, err)
			assert.Equal(t, tc.content, after, "left as it is")
			_, err = kaizen.VerifyAuditFiles(kaizen.VerifyOptions{}, path)
			require.ErrorAs(t, err, &ae)
			assert.Equal(t, "not an audit line (malformed or truncated)", ae.Reason, "not said to be cut short by a crash")
		})
	}

	for _, tail := range []string{"\x00\x00\x00\x00", `{"time":"2026-03`, "{\"ti\x00\x00\x00"} {
		path := filepath.Join(dir, "zeros.jsonl")
		require.NoError(t, os.WriteFile(path, append(bytes.Clone(orig), tail...), 0o600))
		state, sum := appendTrail(t, path, kaizen.AuditOptions{}, "y")
		assert.Equal(t, int64(len(tail)), state.Cut, "%q", tail)
		assert.Equal(t, uint64(3), sum.Lines)
	}
}

// TestOpenAuditFileEndsACompleteLine: a complete line that verifies is a
// record even without its newline; OpenAuditFile keeps it and adds the
// newline.
func TestOpenAuditFileEndsACompleteLine(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	_, last := appendTrail(t, path, kaizen.AuditOptions{Key: testKey}, ids("x", 2)...)
	orig, err := os.ReadFile(path)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(path, bytes.TrimSuffix(orig, []byte("\n")), 0o600))

	var logs syncBuffer
	state, _ := appendTrail(t, path, kaizen.AuditOptions{Key: testKey, Logger: slog.New(slog.NewTextHandler(&logs, nil))}, "y")
	assert.Equal(t, kaizen.AuditFileState{File: path, AuditSummary: last, NewlineAdded: true}, state)
	assert.Contains(t, string(logs.Bytes()), `level=WARN msg="kaizen: audit trail's last line had no newline; added one" file=`+path+" line=2")
	after, err := os.ReadFile(path)
	require.NoError(t, err)
	assert.True(t, bytes.HasPrefix(after, orig), "the line is kept whole")
	sum, err := kaizen.VerifyAuditFiles(kaizen.VerifyOptions{Key: testKey}, path)
	require.NoError(t, err)
	assert.Equal(t, uint64(3), sum.Lines)
}

func TestOpenAuditFileErrors(t *testing.T) {
	dir := t.TempDir()
	// Options are checked before the file is touched.
	path := filepath.Join(dir, "never.jsonl")
	_, _, err := kaizen.OpenAuditFile(path, kaizen.AuditOptions{Key: []byte("short")})
	require.EqualError(t, err, "kaizen: AuditOptions.Key is 5 bytes; it must hold at least 16")
	_, _, err = kaizen.OpenAuditFile(path, kaizen.AuditOptions{Buffer: -1})
	require.ErrorContains(t, err, "AuditOptions.Buffer -1")
	_, err = os.Stat(path)
	require.ErrorIs(t, err, fs.ErrNotExist, "no file is created for invalid options")

	_, _, err = kaizen.OpenAuditFile(filepath.Join(dir, "no-such-dir", "audit.jsonl"), kaizen.AuditOptions{})
	require.ErrorIs(t, err, fs.ErrNotExist)
	var pe *fs.PathError
	require.ErrorAs(t, err, &pe)
	assert.Contains(t, err.Error(), "kaizen: OpenAuditFile: ")

	_, _, err = kaizen.OpenAuditFile(dir, kaizen.AuditOptions{})
	require.ErrorAs(t, err, &pe, "a directory cannot be opened for writing")
}

// TestOpenAuditFileShutdownSyncsAndCloses: Shutdown leaves nothing
// running, and the file it closed can be reopened. The writer goroutine
// ends just after Shutdown returns; in a bubble, VerifyNone's waits end
// only once it has, where on the real clock they gave up after 0.4s.
func TestOpenAuditFileShutdownSyncsAndCloses(t *testing.T) {
	synctest.Test(t, testOpenAuditFileShutdownSyncsAndCloses)
}

func testOpenAuditFileShutdownSyncsAndCloses(t *testing.T) {
	before := goleak.IgnoreCurrent()
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	var late []string
	a, _, err := kaizen.OpenAuditFile(path, kaizen.AuditOptions{OnUnwritten: func(r tai.Record, _ error) { late = append(late, r.ID) }})
	require.NoError(t, err)
	a.Observe(context.Background(), record("1"))
	require.NoError(t, a.Flush(context.Background()))
	last, n := a.Last()
	assert.Equal(t, uint64(1), n)
	raw, err := os.ReadFile(path)
	require.NoError(t, err)
	assert.Equal(t, hashOf(lines(raw)[0]), last, "Last is the line Flush synced")
	require.NoError(t, a.Shutdown(context.Background()))
	require.NoError(t, a.Shutdown(context.Background()), "idempotent")
	goleak.VerifyNone(t, before)
	a.Observe(context.Background(), record("late"))
	assert.Equal(t, []string{"late"}, late, "not written after Shutdown")
	state, _ := appendTrail(t, path, kaizen.AuditOptions{})
	assert.Equal(t, uint64(1), state.Lines)
}

// TestAuditFileChain: a service that starts a new file continues the
// chain of the one before; the files verify as one trail, in order.
func TestAuditFileChain(t *testing.T) {
	dir := t.TempDir()
	paths := []string{filepath.Join(dir, "1.jsonl"), filepath.Join(dir, "2.jsonl"), filepath.Join(dir, "3.jsonl"), filepath.Join(dir, "4.jsonl")}
	opts := kaizen.AuditOptions{Key: testKey}
	var lasts []kaizen.AuditSummary
	for i, p := range paths {
		n := []int{3, 2, 0, 2}[i] // file 3 stays empty
		_, last := appendTrail(t, p, opts, ids(fmt.Sprint(i), n)...)
		lasts = append(lasts, last)
		opts.Genesis = last.Last
	}
	vopts := kaizen.VerifyOptions{Key: testKey}
	sum, err := kaizen.VerifyAuditFiles(vopts, paths...)
	require.NoError(t, err)
	assert.Equal(t, kaizen.AuditSummary{Lines: 7, Last: lasts[3].Last}, sum)
	assert.Equal(t, uint64(2), lasts[3].Lines, "Last counts a file's lines")

	sum, err = kaizen.VerifyAuditFiles(kaizen.VerifyOptions{Key: testKey, Genesis: lasts[1].Last}, paths[2:]...)
	require.NoError(t, err, "the later files alone, from their genesis")
	assert.Equal(t, uint64(2), sum.Lines)

	for _, h := range []string{lasts[0].Last, lasts[1].Last, lasts[3].Last} {
		_, err := kaizen.VerifyAuditFiles(kaizen.VerifyOptions{Key: testKey, Expect: h}, paths...)
		require.NoError(t, err, "an expected hash may be in any file")
	}

	var ae *kaizen.AuditError
	for _, c := range []struct {
		name   string
		opts   kaizen.VerifyOptions
		paths  []string
		file   string
		line   int
		reason string
	}{
		{"out of order", vopts, []string{paths[1], paths[0]}, paths[1], 1, "not the genesis hash"},
		{"swapped later files", vopts, []string{paths[0], paths[3], paths[1]}, paths[3], 1,
			"its prev hash is not the last hash of " + paths[0] + ": the files are out of order, one is missing between them, or " + paths[0] + " was cut short"},
		{"file missing", vopts, []string{paths[0], paths[3]}, paths[3], 1, "last hash of " + paths[0]},
		{"file twice", vopts, []string{paths[0], paths[0]}, paths[0], 1, "last hash of " + paths[0]},
		{"file missing after an empty one", vopts, []string{paths[0], paths[2], paths[3]}, paths[3], 1,
			"its prev hash is not the last hash of " + paths[0] + ": the files are out of order, one is missing between them, or " + paths[0] + " was cut short"},
		{"expected hash cut from the end", kaizen.VerifyOptions{Key: testKey, Expect: lasts[3].Last}, paths[:3], paths[2], 1, "ends without the expected hash"},
		{"wrong key", kaizen.VerifyOptions{Key: testKey[1:]}, paths, paths[0], 1, "the key is wrong"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := kaizen.VerifyAuditFiles(c.opts, c.paths...)
			require.ErrorAs(t, err, &ae)
			assert.Equal(t, c.file, ae.File)
			assert.Equal(t, c.line, ae.Line)
			assert.Contains(t, ae.Reason, c.reason)
		})
	}
}

func TestVerifyAuditFilesErrors(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.jsonl")
	appendTrail(t, good, kaizen.AuditOptions{}, ids("x", 3)...)
	raw, err := os.ReadFile(good)
	require.NoError(t, err)
	ls := lines(raw)
	torn := filepath.Join(dir, "torn.jsonl")
	require.NoError(t, os.WriteFile(torn, raw[:len(raw)-7], 0o600))
	empty := filepath.Join(dir, "empty.jsonl")
	require.NoError(t, os.WriteFile(empty, nil, 0o600))
	tampered := filepath.Join(dir, "tampered.jsonl")
	require.NoError(t, os.WriteFile(tampered, []byte(ls[0]+"\n"+strings.Replace(ls[1], "x-2", "x-9", 1)+"\n"+ls[2]+"\n"), 0o600))

	sum, err := kaizen.VerifyAuditFiles(kaizen.VerifyOptions{}, empty)
	require.NoError(t, err, "an empty file is an empty trail")
	assert.Equal(t, kaizen.AuditSummary{Lines: 0, Last: kaizen.GenesisHash}, sum)
	sum, err = kaizen.VerifyAuditFiles(kaizen.VerifyOptions{}, empty, good, empty)
	require.NoError(t, err)
	assert.Equal(t, uint64(3), sum.Lines)

	var ae *kaizen.AuditError
	_, err = kaizen.VerifyAuditFiles(kaizen.VerifyOptions{}, good, torn)
	require.ErrorAs(t, err, &ae)
	assert.Equal(t, torn, ae.File, "torn.jsonl does not continue good.jsonl")
	assert.Equal(t, 1, ae.Line)

	_, err = kaizen.VerifyAuditFiles(kaizen.VerifyOptions{}, torn)
	require.ErrorAs(t, err, &ae)
	assert.Equal(t, kaizen.AuditError{File: torn, Line: 3, Reason: "not an audit line (malformed or truncated): " +
		"the last line is cut short, as a crash in the middle of a write leaves it (OpenAuditFile cuts it off)"}, *ae)
	// A torn line fails in a file that is not the last, too; OpenAuditFile,
	// which continues the last file only, never cuts it off there. Nor
	// when NUL bytes follow it.
	tornNUL := filepath.Join(dir, "tornnul.jsonl")
	require.NoError(t, os.WriteFile(tornNUL, append(raw[:len(raw)-7:len(raw)-7], make([]byte, 7)...), 0o600))
	for _, f := range []string{torn, tornNUL} {
		_, err = kaizen.VerifyAuditFiles(kaizen.VerifyOptions{}, f, good)
		require.ErrorAs(t, err, &ae)
		assert.Equal(t, kaizen.AuditError{File: f, Line: 3, Reason: "not an audit line (malformed or truncated): " +
			"the last line is cut short, as a crash in the middle of a write leaves it, in a file before the last " +
			"(OpenAuditFile repairs only the last file of a trail, which it continues)"}, *ae)
	}

	_, err = kaizen.VerifyAuditFiles(kaizen.VerifyOptions{}, tampered)
	require.ErrorAs(t, err, &ae)
	assert.Equal(t, "kaizen: audit "+tampered+":2: edited: its hash does not match its content", err.Error())

	missing := filepath.Join(dir, "missing.jsonl")
	_, err = kaizen.VerifyAuditFiles(kaizen.VerifyOptions{}, good, missing)
	require.ErrorIs(t, err, fs.ErrNotExist)
	var pe *fs.PathError
	require.ErrorAs(t, err, &pe)
	assert.Equal(t, missing, pe.Path)
	assert.NotErrorIs(t, err, kaizen.ErrAuditTampered)

	_, err = kaizen.VerifyAuditFiles(kaizen.VerifyOptions{}, dir)
	require.ErrorAs(t, err, &pe, "a directory cannot be read as a trail")
	assert.EqualError(t, err, "read "+dir+": is a directory", "the *fs.PathError names the file")

	_, err = kaizen.VerifyAuditFiles(kaizen.VerifyOptions{})
	require.EqualError(t, err, "kaizen: VerifyAuditFiles: no file to verify")
	_, err = kaizen.VerifyAuditFiles(kaizen.VerifyOptions{Genesis: "x"}, good)
	require.EqualError(t, err, `kaizen: VerifyOptions.Genesis "x": want 64 hex digits, got 1 characters`)
}

// syncWriter is a writer with a Sync method, as a file is; it counts the
// Syncs and fails them from failFrom on (0: never).
type syncWriter struct {
	mu       sync.Mutex
	buf      bytes.Buffer
	syncs    int
	failFrom int
}

var errSync = errors.New("sync failed")

func (w *syncWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.Write(p)
}

func (w *syncWriter) Sync() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.syncs++
	if w.failFrom > 0 && w.syncs >= w.failFrom {
		return errSync
	}
	return nil
}

func (w *syncWriter) Syncs() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.syncs
}

// TestAuditLastIsWhatFlushSynced: with a writer that can be synced, Last
// moves only when Flush or Shutdown has synced the lines.
func TestAuditLastIsWhatFlushSynced(t *testing.T) {
	synctest.Test(t, testAuditLastIsWhatFlushSynced)
}

func testAuditLastIsWhatFlushSynced(t *testing.T) {
	w := &syncWriter{}
	a := newAudit(t, w, kaizen.AuditOptions{})
	ctx := context.Background()
	last, n := a.Last()
	assert.Equal(t, kaizen.GenesisHash, last)
	assert.Zero(t, n)

	a.Observe(ctx, record("1"))
	a.Observe(ctx, record("2"))
	require.NoError(t, a.Flush(ctx))
	assert.Equal(t, 1, w.Syncs())
	last, n = a.Last()
	assert.Equal(t, uint64(2), n)
	ls := lines(w.buf.Bytes())
	assert.Equal(t, hashOf(ls[1]), last)

	require.NoError(t, a.Flush(ctx))
	assert.Equal(t, 1, w.Syncs(), "nothing new to sync")

	a.Observe(ctx, record("3"))
	synctest.Wait() // the writer has written line 3 and waits for more
	require.Equal(t, uint64(3), a.Written())
	last2, n := a.Last()
	assert.Equal(t, last, last2, "written is not yet durable")
	assert.Equal(t, uint64(2), n)
	require.NoError(t, a.Shutdown(ctx))
	assert.Equal(t, 2, w.Syncs(), "Shutdown syncs")
	last, n = a.Last()
	assert.Equal(t, uint64(3), n)
	assert.Equal(t, hashOf(lines(w.buf.Bytes())[2]), last)
}

func TestAuditSyncFailureStopsTheTrail(t *testing.T) {
	w := &syncWriter{failFrom: 2}
	var mu sync.Mutex
	var lost []string
	a := newAudit(t, w, kaizen.AuditOptions{OnUnwritten: func(r tai.Record, err error) {
		mu.Lock()
		defer mu.Unlock()
		lost = append(lost, r.ID+": "+err.Error())
	}})
	ctx := context.Background()
	a.Observe(ctx, record("1"))
	require.NoError(t, a.Flush(ctx))
	a.Observe(ctx, record("2"))
	err := a.Flush(ctx)
	require.ErrorIs(t, err, errSync)
	assert.EqualError(t, err, "kaizen: syncing audit trail: sync failed")
	a.Observe(ctx, record("3"))
	require.ErrorIs(t, a.Shutdown(ctx), errSync)
	_, n := a.Last()
	assert.Equal(t, uint64(1), n, "line 2 was written but may not be durable")
	assert.Equal(t, uint64(2), a.Written())
	mu.Lock()
	defer mu.Unlock()
	assert.Equal(t, []string{"3: kaizen: syncing audit trail: sync failed"}, lost)
}

// TestAuditSyncsARegularFile: an *os.File that is a regular file is
// synced, so Last waits for Flush.
func TestAuditSyncsARegularFile(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f, err := os.Create(filepath.Join(t.TempDir(), "audit.jsonl"))
		require.NoError(t, err)
		defer f.Close()
		a, err := kaizen.NewAudit(f, kaizen.AuditOptions{})
		require.NoError(t, err)
		a.Observe(context.Background(), record("1"))
		synctest.Wait() // the writer has written the line and waits for more
		require.Equal(t, uint64(1), a.Written())
		_, n := a.Last()
		assert.Zero(t, n, "written, not yet synced")
		require.NoError(t, a.Flush(context.Background()))
		_, n = a.Last()
		assert.Equal(t, uint64(1), n)
		require.NoError(t, a.Shutdown(context.Background()))
	})
}

// TestAuditWriterWithoutSync: a writer that cannot be synced — a pipe,
// a buffer — is durable as far as the Audit can tell once written.
func TestAuditWriterWithoutSync(t *testing.T) {
	r, w, err := os.Pipe()
	require.NoError(t, err)
	defer r.Close()
	defer w.Close()
	got := make(chan []byte, 1)
	go func() {
		b := make([]byte, 64<<10)
		n, _ := r.Read(b)
		got <- b[:n]
	}()
	a := newAudit(t, w, kaizen.AuditOptions{})
	a.Observe(context.Background(), record("1"))
	var line []byte
	select {
	case line = <-got:
	case <-time.After(time.Minute):
		t.Fatal("no line came through the pipe")
	}
	require.NoError(t, a.Flush(context.Background()), "a pipe is not synced, so Flush does not fail")
	last, n := a.Last()
	assert.Equal(t, uint64(1), n)
	assert.Equal(t, hashOf(strings.TrimSuffix(string(line), "\n")), last)
	require.NoError(t, a.Shutdown(context.Background()))
}

// TestVerifyAuditFilesNamesAFileThatBeginsATrail: a file whose first line
// links to the genesis hash rather than to the files before it was written
// without AuditOptions.Genesis set to their last hash; the reason says so.
func TestVerifyAuditFilesNamesAFileThatBeginsATrail(t *testing.T) {
	dir := t.TempDir()
	one, two := filepath.Join(dir, "1.jsonl"), filepath.Join(dir, "2.jsonl")
	appendTrail(t, one, kaizen.AuditOptions{}, ids("a", 2)...)
	appendTrail(t, two, kaizen.AuditOptions{}, ids("b", 2)...) // no Genesis: a trail of its own
	_, err := kaizen.VerifyAuditFiles(kaizen.VerifyOptions{}, one, two)
	var ae *kaizen.AuditError
	require.ErrorAs(t, err, &ae)
	assert.Equal(t, kaizen.AuditError{File: two, Line: 1, Reason: "its prev hash is not the last hash of " + one +
		": the files are out of order, one is missing between them, or " + one + " was cut short; " +
		"it is the genesis hash: " + two + " begins a trail of its own, as a file written without AuditOptions.Genesis set to the last hash of the one before does"}, *ae)
}

// TestOpenAuditFileKeepsACompleteLineBeforeNULs: a file system that lost
// the end of a write reads it back as NUL bytes, and the loss can begin
// just after a line's closing brace, with its newline. The line is whole
// and verifies: OpenAuditFile cuts off the NUL bytes only, ends the line,
// and the chain goes on from it; VerifyAudit says what is wrong, not that
// the line was cut short.
func TestOpenAuditFileKeepsACompleteLineBeforeNULs(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	_, last := appendTrail(t, path, kaizen.AuditOptions{Key: testKey}, ids("x", 2)...)
	orig, err := os.ReadFile(path)
	require.NoError(t, err)
	zeros := bytes.Repeat([]byte{0}, 512)
	require.NoError(t, os.WriteFile(path, append(bytes.TrimSuffix(orig, []byte("\n")), zeros...), 0o600))

	_, err = kaizen.VerifyAuditFiles(kaizen.VerifyOptions{Key: testKey}, path)
	var ae *kaizen.AuditError
	require.ErrorAs(t, err, &ae)
	assert.Equal(t, kaizen.AuditError{File: path, Line: 2, Reason: "NUL bytes follow the last line in place of its newline, " +
		"as a file system that lost the end of a write leaves them (OpenAuditFile cuts them off)"}, *ae)

	var logs syncBuffer
	state, sum := appendTrail(t, path, kaizen.AuditOptions{Key: testKey, Logger: slog.New(slog.NewTextHandler(&logs, nil))}, "y")
	assert.Equal(t, kaizen.AuditFileState{File: path, AuditSummary: last, Cut: int64(len(zeros)), NewlineAdded: true}, state, "the line is kept")
	assert.Equal(t, uint64(3), sum.Lines)
	assert.Contains(t, string(logs.Bytes()), fmt.Sprintf(`level=WARN msg="kaizen: audit trail's last line was followed by NUL bytes; cut them off" file=%s line=2 bytes=%d`, path, len(zeros)))
	after, err := os.ReadFile(path)
	require.NoError(t, err)
	assert.True(t, bytes.HasPrefix(after, orig), "the line is kept whole")
	got, err := kaizen.VerifyAuditFiles(kaizen.VerifyOptions{Key: testKey}, path)
	require.NoError(t, err)
	assert.Equal(t, sum, got)
}
