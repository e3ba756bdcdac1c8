package kaizen_test

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/kaizen"
)

// The reasons of lines an editor or a copy of the file changed without
// touching their records, and what follows them.
const (
	blankReason    = "the line is blank, which no audit line is: one was added (by an editor, or by joining files), or a line's text was erased"
	bomFileReason  = "the file begins with a byte-order mark (U+FEFF), which an Audit never writes: an editor saved it as UTF-8 with a BOM"
	bomLineReason  = "the line begins with a byte-order mark (U+FEFF), which an Audit never writes: a file that began with one was joined to the lines before it"
	crReason       = "the line ends in CR (CRLF line endings: the file was converted, by a Windows editor or a transfer in text mode; convert it back with dos2unix, or sed 's/\\r$//')"
	trailingReason = "the line has trailing whitespace, which an Audit never writes: an editor or a copy added it"
	leadingReason  = "the line begins with whitespace, which an Audit never writes: an editor or a copy added it"
	spacedReason   = "the line has whitespace between its fields, which an Audit never writes: it was reformatted"
	undone         = "; with that undone, every line verifies, but the file is not as it was written"
	tornReason     = "not an audit line (malformed or truncated): the last line is cut short, as a crash in the middle of a write leaves it (OpenAuditFile cuts it off)"
)

// undoneOnMore is undone for a change made on n more lines than the first.
func undoneOnMore(n int) string {
	return fmt.Sprintf("; with that undone, and the like on %d more lines, every line verifies, but the file is not as it was written", n)
}

// TestVerifyAuditNamesWhatAnEditorOrACopyChanged: a blank line, a
// byte-order mark, CRLF line endings and whitespace around or between a
// line's fields are not what an Audit wrote, and a line's hash is of its
// bytes exactly, so the trail does not verify; the reason says which
// change it is, and whether the lines verify without it.
func TestVerifyAuditNamesWhatAnEditorOrACopyChanged(t *testing.T) {
	for _, key := range [][]byte{nil, testKey} {
		orig, _ := trailWith(t, kaizen.AuditOptions{Key: key}, 4)
		join := func(l []string) string { return strings.Join(l, "\n") + "\n" }
		edit := func(l string) string { return strings.Replace(l, `"sig-`, `"sig-9`, 1) }
		cases := []struct {
			name    string
			content func(l []string) string
			line    int
			reason  string
		}{
			{"blank line", func(l []string) string { return join(slices.Insert(l, 2, "")) }, 3, blankReason + undone},
			{"blank last line", func(l []string) string { return join(l) + "\n" }, 5, blankReason + undone},
			{"whitespace alone", func(l []string) string { return join(slices.Insert(l, 1, " \t")) }, 2, blankReason + undone},
			{"byte-order mark", func(l []string) string { return "\ufeff" + join(l) }, 1, bomFileReason + undone},
			{"byte-order mark of a joined file", func(l []string) string { l[2] = "\ufeff" + l[2]; return join(l) }, 3, bomLineReason + undone},
			{"CRLF line endings", func(l []string) string { return strings.ReplaceAll(join(l), "\n", "\r\n") }, 1, crReason + undoneOnMore(3)},
			{"CRLF line endings but the last", func(l []string) string { return strings.Join(l, "\r\n") }, 1, crReason + undoneOnMore(2)},
			{"byte-order mark and CRLF", func(l []string) string { return "\ufeff" + strings.ReplaceAll(join(l), "\n", "\r\n") }, 1,
				bomFileReason + "; " + crReason + undoneOnMore(3)},
			{"trailing space", func(l []string) string { l[2] += " "; return join(l) }, 3, trailingReason + undone},
			{"trailing tab on the last line, without its newline", func(l []string) string { l[3] += "\t"; return strings.Join(l, "\n") }, 4, trailingReason + undone},
			{"leading space", func(l []string) string { l[1] = "  " + l[1]; return join(l) }, 2, leadingReason + undone},
			{"reformatted", func(l []string) string { l[1] = strings.ReplaceAll(l[1], `,"`, `, "`); return join(l) }, 2, spacedReason + undone},
			{"CR on an edited line", func(l []string) string { l[1] = edit(l[1]) + "\r"; return join(l) }, 2,
				crReason + "; without that, the line does not verify either: edited: its hash does not match its content"},
			{"trailing space, then an edited line", func(l []string) string { l[1] += " "; l[3] = edit(l[3]); return join(l) }, 2,
				trailingReason + "; line 4 does not verify either: edited: its hash does not match its content"},
			{"a line erased", func(l []string) string { l[2] = ""; return join(l) }, 3,
				blankReason + "; line 4 does not verify either: its prev hash is not the hash of line 2: " +
					"a line was deleted, inserted or moved before it, or line 2 was edited and rehashed"},
			{"CRLF line endings and the last line cut short", func(l []string) string {
				return strings.ReplaceAll(join(l[:3]), "\n", "\r\n") + l[3][:40]
			}, 1, crReason + "; line 4 does not verify either: " + tornReason},
			{"blank lines alone", func([]string) string { return "\n\n" }, 1, blankReason + "; the file holds no audit line"},
		}
		for _, c := range cases {
			t.Run(fmt.Sprintf("%s/key %t", c.name, key != nil), func(t *testing.T) {
				content := c.content(slices.Clone(orig))
				_, err := kaizen.VerifyAuditWith(strings.NewReader(content), kaizen.VerifyOptions{Key: key})
				require.ErrorIs(t, err, kaizen.ErrAuditTampered)
				var ae *kaizen.AuditError
				require.ErrorAs(t, err, &ae)
				assert.Equal(t, kaizen.AuditError{Line: c.line, Reason: c.reason}, *ae)

				path := filepath.Join(t.TempDir(), "audit.jsonl")
				require.NoError(t, os.WriteFile(path, []byte(content), 0o600))
				_, err = kaizen.VerifyAuditFiles(kaizen.VerifyOptions{Key: key}, path)
				require.ErrorAs(t, err, &ae)
				assert.Equal(t, kaizen.AuditError{File: path, Line: c.line, Reason: c.reason}, *ae)
			})
		}
	}
}

// TestVerifyAuditKeepsTheReasonsOfOtherLines: a trail as written verifies
// as before, with its count of lines, and a last line cut short keeps its
// own reason.
func TestVerifyAuditKeepsTheReasonsOfOtherLines(t *testing.T) {
	orig, hashes := trailWith(t, kaizen.AuditOptions{Key: testKey}, 4)
	for _, end := range []string{"\n", ""} {
		sum, err := kaizen.VerifyAuditWith(strings.NewReader(strings.Join(orig, "\n")+end), kaizen.VerifyOptions{Key: testKey})
		require.NoError(t, err)
		assert.Equal(t, kaizen.AuditSummary{Lines: 4, Last: hashes[3]}, sum)
	}
	torn := strings.Join(orig[:3], "\n") + "\n" + orig[3][:40]
	_, err := kaizen.VerifyAuditWith(strings.NewReader(torn), kaizen.VerifyOptions{Key: testKey})
	var ae *kaizen.AuditError
	require.ErrorAs(t, err, &ae)
	assert.Equal(t, kaizen.AuditError{Line: 4, Reason: tornReason}, *ae)
}

// TestOpenAuditFileRefusesAChangedFile: OpenAuditFile appends to no file
// an editor or a copy changed, names the change, and leaves the file as it
// is: a last line cut short after it is not cut off, nor a newline added.
func TestOpenAuditFileRefusesAChangedFile(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.jsonl")
	appendTrail(t, good, kaizen.AuditOptions{}, ids("x", 3)...)
	orig, err := os.ReadFile(good)
	require.NoError(t, err)
	ls := lines(orig)
	for _, c := range []struct {
		name, content string
		line          int
		reason        string
	}{
		{"CRLF line endings", strings.ReplaceAll(string(orig), "\n", "\r\n"), 1, crReason + undoneOnMore(2)},
		{"a blank line, then a line cut short", ls[0] + "\n\n" + ls[1] + "\n" + ls[2][:30], 2,
			blankReason + "; line 4 does not verify either: " + tornReason},
		{"a byte-order mark, without the last newline", "\ufeff" + strings.TrimSuffix(string(orig), "\n"), 1, bomFileReason + undone},
	} {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(dir, strings.ReplaceAll(c.name, " ", "-")+".jsonl")
			require.NoError(t, os.WriteFile(path, []byte(c.content), 0o600))
			a, _, err := kaizen.OpenAuditFile(path, kaizen.AuditOptions{})
			assert.Nil(t, a)
			var ae *kaizen.AuditError
			require.ErrorAs(t, err, &ae)
			assert.Equal(t, kaizen.AuditError{File: path, Line: c.line, Reason: c.reason}, *ae)
			after, err := os.ReadFile(path)
			require.NoError(t, err)
			assert.Equal(t, c.content, string(after), "left as it is")
		})
	}
}

// TestOpenAuditFileRotatedNamesAChangedEdge: the hash a series' last file
// continues from is read from the last line of the file before it, or the
// first line of its own; a line there that an editor changed is named as
// VerifyAuditFiles names it, not as JSON that does not parse.
func TestOpenAuditFileRotatedNamesAChangedEdge(t *testing.T) {
	t.Run("a blank last line in the file before", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "audit.jsonl")
		files := rotatedTrail(t, path, 5)
		before := files[len(files)-2]
		b, err := os.ReadFile(before)
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(before, append(b, '\n'), 0o600))
		_, _, err = kaizen.OpenAuditFile(path, kaizen.AuditOptions{RotateBytes: 600})
		require.EqualError(t, err, "kaizen: OpenAuditFile: "+before+": its last line: "+blankReason)
	})
	t.Run("a byte-order mark in the last file", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "audit.jsonl")
		appendTrail(t, path, kaizen.AuditOptions{RotateBytes: 1 << 20}, ids("a", 2)...)
		next := path + ".000001"
		appendTrail(t, next, kaizen.AuditOptions{Genesis: strings.Repeat("ab", 32)}, ids("b", 2)...)
		require.NoError(t, os.Remove(path)) // archived: the last file goes on from its own first line
		b, err := os.ReadFile(next)
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(next, append([]byte("\ufeff"), b...), 0o600))
		_, _, err = kaizen.OpenAuditFile(path, kaizen.AuditOptions{RotateBytes: 1 << 20})
		require.EqualError(t, err, "kaizen: OpenAuditFile: "+next+": its first line: "+bomFileReason)
		after, err := os.ReadFile(next)
		require.NoError(t, err)
		assert.True(t, bytes.HasPrefix(after, []byte("\ufeff")), "left as it is")
	})
}

// TestVerifyAuditNamesWhatIsNoAuditLine: a whole JSON value that is no
// audit record is not said to be cut short, and NUL bytes where a line
// was, as a file system that lost a write leaves them, are named.
func TestVerifyAuditNamesWhatIsNoAuditLine(t *testing.T) {
	orig, _ := trailWith(t, kaizen.AuditOptions{}, 3)
	const notRecord = "not an audit line (malformed or truncated): it is whole JSON, but no audit record: " +
		"it does not end in the prev and hash an audit line ends with"
	const nuls = "not an audit line (malformed or truncated): it holds NUL bytes, which an Audit never writes: " +
		"the file system lost data written there (a crash), or something overwrote the file"
	for _, c := range []struct {
		name, content string
		reason        string
	}{
		{"an object", orig[0] + "\n" + `{"level":"info","msg":"started"}` + "\n" + orig[1] + "\n", notRecord},
		{"a record without its hash", orig[0] + "\n" + orig[1][:strings.LastIndex(orig[1], `,"hash":"`)] + "}\n", notRecord},
		{"a number", orig[0] + "\n42\n", notRecord},
		{"NUL bytes in place of a line", orig[0] + "\n" + strings.Repeat("\x00", len(orig[1])+1) + orig[2] + "\n", nuls},
		{"a NUL byte in a line", orig[0] + "\n" + orig[1][:30] + "\x00" + orig[1][31:] + "\n", nuls},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := kaizen.VerifyAudit(strings.NewReader(c.content))
			var ae *kaizen.AuditError
			require.ErrorAs(t, err, &ae)
			assert.Equal(t, kaizen.AuditError{Line: 2, Reason: c.reason}, *ae)
		})
	}
}

// TestVerifyAuditFilesRefusesAFileGivenTwice: a file given twice, by its
// name or another, fails at the first line of the second, named so, not
// as a file that begins a trail of its own or a copy of the line before
// it.
func TestVerifyAuditFilesRefusesAFileGivenTwice(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "audit.jsonl")
	appendTrail(t, path, kaizen.AuditOptions{}, ids("a", 2)...)
	link := filepath.Join(dir, "link.jsonl")
	require.NoError(t, os.Symlink(path, link))
	one := filepath.Join(dir, "one.jsonl") // its line is a copy of the last line before it
	appendTrail(t, one, kaizen.AuditOptions{}, "b-1")
	for files, want := range map[[2]string]string{
		{path, path}: path + " is given twice",
		{path, link}: link + " is the file " + path + " given before",
		{one, one}:   one + " is given twice",
	} {
		_, err := kaizen.VerifyAuditFiles(kaizen.VerifyOptions{}, files[:]...)
		var ae *kaizen.AuditError
		require.ErrorAs(t, err, &ae)
		assert.Equal(t, kaizen.AuditError{File: files[1], Line: 1, Reason: "its prev hash is not the last hash of " + files[0] + ": " +
			want + ": each file of a trail is given once"}, *ae)
	}
}
