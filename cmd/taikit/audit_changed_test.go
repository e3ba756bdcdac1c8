package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestAuditVerifyNamesWhatAnEditorOrACopyChanged: a trail with a blank
// line, a byte-order mark, CRLF line endings or trailing whitespace does
// not verify (exit status 1), and the first line it prints says which
// change it is, and that every line verifies without it; a last line cut
// short keeps its own reason, and the trail as written verifies with its
// count of lines. The standard input says the same.
func TestAuditVerifyNamesWhatAnEditorOrACopyChanged(t *testing.T) {
	f := newFixture(t)
	raw, err := os.ReadFile(f.one)
	if err != nil {
		t.Fatal(err)
	}
	ls := strings.SplitAfter(string(raw), "\n")[:3]
	const (
		undone  = "; with that undone, every line verifies, but the file is not as it was written\n"
		undone2 = "; with that undone, and the like on 2 more lines, every line verifies, but the file is not as it was written\n"
	)
	for _, c := range []struct {
		name    string
		content string
		code    int
		out     string // the first line printed, after FILE:
	}{
		{"as written", string(raw), 0, "ok: 3 lines in 1 file; last hash " + f.last1 + "\n"},
		{"a blank line", ls[0] + ls[1] + "\n" + ls[2], 1,
			"3: the line is blank, which no audit line is: one was added (by an editor, or by joining files), or a line's text was erased" + undone},
		{"a byte-order mark", "\ufeff" + string(raw), 1,
			"1: the file begins with a byte-order mark (U+FEFF), which an Audit never writes: an editor saved it as UTF-8 with a BOM" + undone},
		{"CRLF line endings", strings.ReplaceAll(string(raw), "\n", "\r\n"), 1,
			"1: the line ends in CR (CRLF line endings: the file was converted, by a Windows editor or a transfer in text mode; " +
				"convert it back with dos2unix, or sed 's/\\r$//')" + undone2},
		{"trailing whitespace", ls[0] + ls[1] + strings.TrimSuffix(ls[2], "\n") + "  \n", 1,
			"3: the line has trailing whitespace, which an Audit never writes: an editor or a copy added it" + undone},
		{"the last line cut short", ls[0] + ls[1] + ls[2][:50], 1,
			"3: not an audit line (malformed or truncated): the last line is cut short, as a crash in the middle of a write leaves it (OpenAuditFile cuts it off)\n"},
	} {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(f.dir, strings.ReplaceAll(c.name, " ", "-")+".jsonl")
			if err := os.WriteFile(path, []byte(c.content), 0o600); err != nil {
				t.Fatal(err)
			}
			args := []string{"audit", "verify", "-key-file", f.keyFile, path}
			want := cliCase{c.name, args, c.code, c.out, path + ":" + c.out}
			code, stdout, stderr := runCLI(args...)
			want.check(t, code, stdout, stderr)
			if c.code != 0 && stderr != path+":"+c.out {
				t.Errorf("stderr = %q, want %q", stderr, path+":"+c.out)
			}

			args[len(args)-1] = "-"
			code, stdout, stderr = runCLIWithStdin(bytes.NewReader([]byte(c.content)), args...)
			cliCase{c.name + " on the standard input", args, c.code, c.out, "(standard input):" + c.out}.check(t, code, stdout, stderr)
		})
	}
}
