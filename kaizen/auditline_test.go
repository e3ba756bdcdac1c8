package kaizen_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/kaizen"
	"github.com/taipattern/taikit/tai"
)

// endlessLine reads as the start of an audit line that never ends, and
// fails the read once more than limit bytes have been taken from it.
type endlessLine struct {
	head  []byte
	read  int
	limit int
}

var errReadTooFar = errors.New("read past the longest line an audit trail may hold")

func (r *endlessLine) Read(p []byte) (int, error) {
	if r.read > r.limit {
		return 0, errReadTooFar
	}
	n := 0
	for n < len(p) {
		if r.read < len(r.head) {
			c := copy(p[n:], r.head[r.read:])
			n += c
			r.read += c
			continue
		}
		p[n] = 'x'
		n++
		r.read++
	}
	return n, nil
}

func overlongReason() string {
	return fmt.Sprintf("not an audit line: it is longer than %d bytes (MaxAuditLineLen), the most an Audit writes", kaizen.MaxAuditLineLen)
}

func TestVerifyAuditRefusesALineLongerThanTheLimit(t *testing.T) {
	l := trail(t, 2)
	head := []byte(l[0] + "\n" + l[1] + "\n" + `{"time":"`)
	r := &endlessLine{head: head, limit: len(head) + kaizen.MaxAuditLineLen + 1<<20}
	err := kaizen.VerifyAudit(r)
	var ae *kaizen.AuditError
	require.ErrorAs(t, err, &ae)
	assert.Equal(t, kaizen.AuditError{Line: 3, Reason: overlongReason()}, *ae)
}

func TestVerifyAuditFilesRefusesALineLongerThanTheLimit(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	appendTrail(t, path, kaizen.AuditOptions{}, "a")
	// A line of MaxAuditLineLen bytes and more: NUL bytes (a sparse
	// file) between its start and its end.
	f, err := os.OpenFile(path, os.O_RDWR|os.O_APPEND, 0)
	require.NoError(t, err)
	_, err = f.WriteString(`{"time":"`)
	require.NoError(t, err)
	fi, err := f.Stat()
	require.NoError(t, err)
	require.NoError(t, f.Truncate(fi.Size()+int64(kaizen.MaxAuditLineLen)))
	_, err = f.WriteString("\"}\n")
	require.NoError(t, err)
	require.NoError(t, f.Close())

	_, err = kaizen.VerifyAuditFiles(kaizen.VerifyOptions{}, path)
	var ae *kaizen.AuditError
	require.ErrorAs(t, err, &ae)
	assert.Equal(t, kaizen.AuditError{File: path, Line: 2, Reason: overlongReason()}, *ae)

	_, _, err = kaizen.OpenAuditFile(path, kaizen.AuditOptions{})
	require.ErrorAs(t, err, &ae)
	assert.Equal(t, kaizen.AuditError{File: path, Line: 2, Reason: overlongReason()}, *ae)
}

func TestOpenAuditFileCutsNULsLongerThanTheLineLimit(t *testing.T) {
	// A file system that lost a long write reads it back as NUL bytes,
	// more of them than a line may hold: they are still cut off.
	for _, complete := range []bool{true, false} {
		t.Run(fmt.Sprintf("complete=%v", complete), func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "audit.jsonl")
			_, last := appendTrail(t, path, kaizen.AuditOptions{}, "a", "b")
			orig, err := os.ReadFile(path)
			require.NoError(t, err)
			keep := orig
			if complete {
				keep = bytes.TrimSuffix(orig, []byte("\n"))
			} else {
				keep = append(bytes.Clone(orig), `{"time":"2026`...)
			}
			require.NoError(t, os.WriteFile(path, keep, 0o600))
			cut := int64(kaizen.MaxAuditLineLen) + 10
			require.NoError(t, os.Truncate(path, int64(len(keep))+cut))

			state, sum := appendTrail(t, path, kaizen.AuditOptions{}, "c")
			if complete {
				assert.Equal(t, kaizen.AuditFileState{File: path, AuditSummary: last, Cut: cut, NewlineAdded: true}, state)
			} else {
				assert.Equal(t, kaizen.AuditFileState{File: path, AuditSummary: last, Cut: cut + int64(len(`{"time":"2026`))}, state)
			}
			assert.Equal(t, uint64(3), sum.Lines)
			got, err := kaizen.VerifyAuditFiles(kaizen.VerifyOptions{}, path)
			require.NoError(t, err)
			assert.Equal(t, sum, got)
		})
	}
}

func TestAuditDoesNotWriteALineLongerThanTheLimit(t *testing.T) {
	var buf syncBuffer
	var mu sync.Mutex
	var lost []string
	var lostErr error
	a := newAudit(t, &buf, kaizen.AuditOptions{OnUnwritten: func(r tai.Record, err error) {
		mu.Lock()
		defer mu.Unlock()
		lost = append(lost, r.ID)
		lostErr = err
	}})
	a.Observe(context.Background(), record("a"))
	require.NoError(t, a.Flush(context.Background()))
	short := len(buf.Bytes()) - 1 // the line of record a, without a reason
	// Record b's line is MaxAuditLineLen bytes long; c's one more.
	fits, over := record("b"), record("c")
	fits.Decision.Reason = strings.Repeat("r", kaizen.MaxAuditLineLen-short)
	over.Decision.Reason = strings.Repeat("r", kaizen.MaxAuditLineLen-short+1)
	a.Observe(context.Background(), fits)
	a.Observe(context.Background(), over)
	a.Observe(context.Background(), record("d"))
	require.NoError(t, a.Shutdown(context.Background()))

	mu.Lock()
	defer mu.Unlock()
	assert.Equal(t, []string{"c"}, lost)
	require.Error(t, lostErr)
	assert.Equal(t, fmt.Sprintf("kaizen: audit record not written: its line would be %d bytes, longer than %d bytes (MaxAuditLineLen)",
		kaizen.MaxAuditLineLen+1, kaizen.MaxAuditLineLen), lostErr.Error())
	require.NoError(t, a.Err(), "the trail goes on")
	assert.Equal(t, uint64(3), a.Written())
	ls := bytes.Split(bytes.TrimSuffix(buf.Bytes(), []byte("\n")), []byte("\n"))
	require.Len(t, ls, 3)
	assert.Len(t, ls[1], kaizen.MaxAuditLineLen)
	sum, err := kaizen.VerifyAuditWith(bytes.NewReader(buf.Bytes()), kaizen.VerifyOptions{})
	require.NoError(t, err, "a line of MaxAuditLineLen bytes verifies")
	assert.Equal(t, uint64(3), sum.Lines)
}

// The first line of each file of a chain may be the first written with a
// key, without one or with another: the reason says so there, as it does
// at the trail's first line, instead of calling the line edited.
func TestVerifyAuditFilesNamesAFileWrittenWithAnotherKey(t *testing.T) {
	dir := t.TempDir()
	otherKey := []byte("fedcba9876543210fedcba9876543210")
	for _, c := range []struct {
		name         string
		first, later []byte // the keys the files were written with
		reason       string
	}{
		{"a key added", nil, testKey, "edited: its hash does not match its content (or this file was written with a key: verify it with that key)"},
		{"a key dropped", testKey, nil, "its hash is plain SHA-256, not an HMAC: this file was written without a key, but a key was given"},
		{"another key", testKey, otherKey, "its hash does not match its content under the given key: the key is wrong, or the line was edited"},
	} {
		t.Run(c.name, func(t *testing.T) {
			first, later := filepath.Join(dir, c.name+"-1.jsonl"), filepath.Join(dir, c.name+"-2.jsonl")
			_, last := appendTrail(t, first, kaizen.AuditOptions{Key: c.first}, "a", "b")
			appendTrail(t, later, kaizen.AuditOptions{Key: c.later, Genesis: last.Last}, "c", "d")

			_, err := kaizen.VerifyAuditFiles(kaizen.VerifyOptions{Key: c.first}, first, later)
			var ae *kaizen.AuditError
			require.ErrorAs(t, err, &ae)
			assert.Equal(t, kaizen.AuditError{File: later, Line: 1, Reason: c.reason}, *ae)

			_, err = kaizen.VerifyAuditFiles(kaizen.VerifyOptions{Key: c.later, Genesis: last.Last}, later)
			require.NoError(t, err, "the later file verifies with its own key")
		})
	}
}

// endlessNULs reads as head and then NUL bytes for ever, as /dev/zero
// does, and fails the read once more than limit bytes have been taken
// from it.
type endlessNULs struct {
	head  []byte
	read  int
	limit int
}

func (r *endlessNULs) Read(p []byte) (int, error) {
	if r.read > r.limit {
		return 0, errReadTooFar
	}
	n := 0
	if r.read < len(r.head) {
		n = copy(p, r.head[r.read:])
	}
	clear(p[n:])
	r.read += len(p)
	return len(p), nil
}

// TestVerifyAuditEndsAnEndlessRunOfNULs: NUL bytes in place of a last
// line's newline, or of the lines after it, are what a file system that
// lost a write leaves, and a regular file holds a finite number of them.
// A reader that is not a regular file may read them for ever (/dev/zero,
// a pipe from it): past MaxAuditLineLen of them the trail is refused,
// naming the line, rather than read on.
func TestVerifyAuditEndsAnEndlessRunOfNULs(t *testing.T) {
	l := trail(t, 2)
	for name, head := range map[string]string{
		"nothing but NULs":            "",
		"after a line's newline":      l[0] + "\n",
		"in place of a newline":       l[0] + "\n" + l[1],
		"after the start of a line":   l[0] + "\n" + `{"time":"2026`,
		"after a line and a NUL byte": l[0] + "\n" + l[1] + "\x00",
	} {
		t.Run(name, func(t *testing.T) {
			r := &endlessNULs{head: []byte(head), limit: len(head) + 3*kaizen.MaxAuditLineLen}
			err := kaizen.VerifyAudit(r)
			var ae *kaizen.AuditError
			require.ErrorAs(t, err, &ae)
			line := strings.Count(head, "\n") + 1 // the line the NULs end
			assert.Equal(t, kaizen.AuditError{Line: line, Reason: fmt.Sprintf("not an audit line: more than %d NUL bytes (MaxAuditLineLen) "+
				"run on at its end, the most read from a reader that is not a regular file: the input reads without end, "+
				"as a device such as /dev/zero does, or is not a trail", kaizen.MaxAuditLineLen)}, *ae)
		})
	}
}

// TestAuditRefusesATimeOutsideRFC3339: a record whose Start (or the Time
// Redact sets) falls outside the years 0 to 9999 once in UTC, which RFC
// 3339 cannot write, is not written: it goes to OnUnwritten saying why,
// and the trail goes on. Its line was one that encoding/json could not
// read back into an AuditEntry.
func TestAuditRefusesATimeOutsideRFC3339(t *testing.T) {
	var buf syncBuffer
	var mu sync.Mutex
	var lost []string
	var lostErrs []string
	a := newAudit(t, &buf, kaizen.AuditOptions{
		Redact: func(e *kaizen.AuditEntry) {
			if e.ID == "redacted" {
				e.Time = time.Date(-1, 1, 1, 0, 0, 0, 0, time.UTC)
			}
		},
		OnUnwritten: func(r tai.Record, err error) {
			mu.Lock()
			defer mu.Unlock()
			lost = append(lost, r.ID)
			lostErrs = append(lostErrs, err.Error())
		},
	})
	east := time.FixedZone("east", 5*3600)
	west := time.FixedZone("west", -5*3600)
	for _, r := range []tai.Record{
		{ID: "first", Start: time.Date(0, 1, 1, 0, 0, 0, 0, time.UTC)},
		{ID: "future", Start: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)},
		{ID: "past", Start: time.Date(-1, 12, 31, 23, 59, 59, 0, time.UTC)},
		{ID: "west", Start: time.Date(9999, 12, 31, 23, 0, 0, 0, west)},
		{ID: "east", Start: time.Date(0, 1, 1, 1, 0, 0, 0, east)},
		{ID: "redacted", Start: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)},
		{ID: "last", Start: time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC)},
	} {
		r.Kind = "k"
		a.Observe(context.Background(), r)
	}
	require.NoError(t, a.Shutdown(context.Background()))

	mu.Lock()
	defer mu.Unlock()
	assert.Equal(t, []string{"future", "past", "west", "east", "redacted"}, lost)
	for _, e := range lostErrs {
		assert.Contains(t, e, "kaizen: audit record not written: its time ")
		assert.Contains(t, e, "is outside the years 0 to 9999")
	}
	require.NoError(t, a.Err(), "the trail goes on")
	ls := lines(buf.Bytes())
	require.Len(t, ls, 2)
	for _, l := range ls {
		var e kaizen.AuditEntry
		require.NoError(t, json.Unmarshal([]byte(l), &e), l)
	}
	require.NoError(t, kaizen.VerifyAudit(bytes.NewReader(buf.Bytes())))
}
