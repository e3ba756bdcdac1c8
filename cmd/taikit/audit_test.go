package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/kaizen"
	"github.com/taipattern/taikit/tai"
)

var testKey = []byte("0123456789abcdef0123456789abcdef")

// writeTrail appends n lines to the trail file at path with opts and
// returns the hash of its last line.
func writeTrail(t *testing.T, path string, opts kaizen.AuditOptions, n int) string {
	t.Helper()
	a, _, err := kaizen.OpenAuditFile(path, opts)
	require.NoError(t, err)
	for i := range n {
		a.Observe(context.Background(), tai.Record{ID: fmt.Sprintf("pay-%d", i+1), Kind: "payment", Key: "cust_1",
			Outcome: tai.Succeeded, Start: time.Date(2026, 3, 1, 12, 0, i, 0, time.UTC)})
	}
	require.NoError(t, a.Shutdown(context.Background()))
	last, _ := a.Last()
	return last
}

// fixture is a directory of trail files for the tests.
type fixture struct {
	dir                string
	one, two           string // two files of one keyed chain, 3 and 2 lines
	last1, last2       string // their last hashes
	plain              string // a file of 2 lines without a key
	empty, keyFile     string
	tampered, torn     string // one's lines, line 2 edited; one's lines, the last cut short
	shortKey, emptyKey string // key files too short
}

func newFixture(t *testing.T) *fixture {
	dir := t.TempDir()
	f := &fixture{dir: dir}
	name := func(n string) string { return filepath.Join(dir, n) }
	f.one, f.two, f.plain, f.empty = name("audit-1.jsonl"), name("audit-2.jsonl"), name("plain.jsonl"), name("empty.jsonl")
	f.last1 = writeTrail(t, f.one, kaizen.AuditOptions{Key: testKey}, 3)
	f.last2 = writeTrail(t, f.two, kaizen.AuditOptions{Key: testKey, Genesis: f.last1}, 2)
	writeTrail(t, f.plain, kaizen.AuditOptions{}, 2)
	require.NoError(t, os.WriteFile(f.empty, nil, 0o600))

	raw, err := os.ReadFile(f.one)
	require.NoError(t, err)
	f.tampered = name("tampered.jsonl")
	require.NoError(t, os.WriteFile(f.tampered, []byte(strings.Replace(string(raw), `"id":"pay-2"`, `"id":"pay-9"`, 1)), 0o600))
	f.torn = name("torn.jsonl")
	require.NoError(t, os.WriteFile(f.torn, raw[:len(raw)-20], 0o600))

	f.keyFile, f.shortKey, f.emptyKey = name("key"), name("short-key"), name("empty-key")
	require.NoError(t, os.WriteFile(f.keyFile, testKey, 0o600))
	require.NoError(t, os.WriteFile(f.shortKey, testKey[:15], 0o600))
	require.NoError(t, os.WriteFile(f.emptyKey, nil, 0o600))
	return f
}

func TestAuditVerify(t *testing.T) {
	f := newFixture(t)
	verify := []string{"audit", "verify"}
	keyed := []string{"audit", "verify", "-key-file", f.keyFile}
	otherKey := filepath.Join(f.dir, "other-key")
	require.NoError(t, os.WriteFile(otherKey, append(testKey[1:], 'x'), 0o600))
	missing := filepath.Join(f.dir, "missing.jsonl")
	link := filepath.Join(f.dir, "link.jsonl")
	require.NoError(t, os.Symlink(f.one, link))
	again := filepath.Join(f.dir, "begun-again.jsonl") // a trail of its own, not continuing f.one
	raw, err := os.ReadFile(f.one)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(again, raw, 0o600))
	oneLine := filepath.Join(f.dir, "one-line.jsonl")
	lastOfOneLine := writeTrail(t, oneLine, kaizen.AuditOptions{Key: testKey}, 1)

	runCLICases(t, []cliCase{
		{"one file", slices.Concat(keyed, []string{f.one}), 0, "ok: 3 lines in 1 file; last hash " + f.last1 + "\n", ""},
		{"one line", slices.Concat(keyed, []string{oneLine}), 0, "ok: 1 line in 1 file; last hash " + lastOfOneLine + "\n", ""},
		{"a chain of files", slices.Concat(keyed, []string{f.one, f.two}), 0, "ok: 5 lines in 2 files; last hash " + f.last2 + "\n", ""},
		{"the later file from its genesis", slices.Concat(keyed, []string{"-genesis", f.last1, f.two}), 0, "ok: 2 lines in 1 file; last hash " + f.last2 + "\n", ""},
		{"the published hash is there", slices.Concat(keyed, []string{"-expect", f.last1, f.one, f.two}), 0, "ok: 5 lines in 2 files; last hash " + f.last2 + "\n", ""},
		{"without a key", slices.Concat(verify, []string{f.plain}), 0, "ok: 2 lines in 1 file; last hash ", ""},
		{"empty file", slices.Concat(verify, []string{f.empty}), 0, "ok: 0 lines in 1 file; last hash " + kaizen.GenesisHash + "\n", ""},

		{"tampered", slices.Concat(keyed, []string{f.one, f.two, f.tampered}), 1, "", f.tampered + ":1: its prev hash is not the last hash of " + f.two},
		{"tampered alone", slices.Concat(keyed, []string{f.tampered}), 1, "", f.tampered + ":2: edited: its hash does not match its content\n"},
		{"torn last line", slices.Concat(keyed, []string{f.torn}), 1, "", f.torn + ":3: not an audit line (malformed or truncated): the last line is cut short"},
		{"out of order", slices.Concat(keyed, []string{f.two, f.one}), 1, "", f.two + ":1: its prev hash is not the genesis hash: the trail does not start here\n"},
		{"a file begun at the genesis", slices.Concat(keyed, []string{f.one, again}), 1, "", again + ":1: its prev hash is not the last hash of " + f.one +
			": the files are out of order, one is missing between them, or " + f.one + " was cut short; it is the genesis hash: " + again +
			" begins a trail of its own, as a file written without AuditOptions.Genesis set to the last hash of the one before does\n"},
		{"wrong key", slices.Concat(verify, []string{"-key-file", otherKey, f.one}), 1, "", f.one + ":1: its hash does not match its content under the given key: the key is wrong"},
		{"no key", slices.Concat(verify, []string{f.one}), 1, "", f.one + ":1: edited: its hash does not match its content (or the trail was written with a key"},
		{"expected hash cut off", slices.Concat(keyed, []string{"-expect", f.last2, f.one}), 1, "", f.one + ":4: the trail ends without the expected hash " + f.last2},
		{"missing file", slices.Concat(keyed, []string{f.one, missing}), 1, "", missing + ": open " + missing + ": no such file or directory\n"},
		{"a directory", slices.Concat(keyed, []string{f.dir}), 1, "", f.dir + ": read " + f.dir + ": is a directory\n"},

		{"no file", keyed, 2, "", "taikit audit verify: no FILE to verify\nRun \"taikit audit verify -h\" for help.\n"},
		{"a file twice", slices.Concat(keyed, []string{f.one, f.two, f.one}), 2, "", "taikit audit verify: " + f.one + " is given twice: each trail is read once\n"},
		{"a file twice, through a link", slices.Concat(keyed, []string{f.one, link}), 2, "", "taikit audit verify: " + link + " is the file " + f.one + " given before: each trail is read once\n"},
		{"key file missing", slices.Concat(verify, []string{"-key-file", missing, f.one}), 2, "", "taikit audit verify: -key-file: open " + missing + ": no such file or directory"},
		{"key too short", slices.Concat(verify, []string{"-key-file", f.shortKey, f.one}), 2, "", "taikit audit verify: -key-file: kaizen: audit key file " + f.shortKey + " holds 15 bytes; the key needs at least 16"},
		{"key file empty", slices.Concat(verify, []string{"-key-file", f.emptyKey, f.one}), 2, "", "audit key file " + f.emptyKey + " holds 0 bytes; the key needs at least 16"},
		{"bad genesis", slices.Concat(keyed, []string{"-genesis", "abc", f.one}), 2, "", `taikit audit verify: -genesis "abc" is not a hash: want 64 hex digits, got 3 characters`},
		{"bad expect", slices.Concat(keyed, []string{"-expect", strings.Repeat("g", 64), f.one}), 2, "", `-expect "` + strings.Repeat("g", 64) + `" is not a hash: `},
	})
}

// Flags may follow the files: "audit verify FILE -key-file KEY" verifies
// FILE with the key, not a file named -key-file; after "--" an argument
// beginning with '-' is a file.
func TestAuditVerifyFlagsAfterFiles(t *testing.T) {
	f := newFixture(t)
	runCLICases(t, []cliCase{
		{"a flag after the file", []string{"audit", "verify", f.one, "-key-file", f.keyFile}, 0, "ok: 3 lines in 1 file; last hash " + f.last1 + "\n", ""},
		{"flags between and after the files", []string{"audit", "verify", f.one, "-key-file", f.keyFile, f.two, "-expect", f.last1}, 0,
			"ok: 5 lines in 2 files; last hash " + f.last2 + "\n", ""},
		{"a bad flag after the file", []string{"audit", "verify", f.one, "-key", f.keyFile}, 2, "", "flag provided but not defined: -key"},
		{"a flag after the file without its value", []string{"audit", "verify", f.one, "-expect"}, 2, "", "flag needs an argument: -expect"},
		{"help after the file", []string{"audit", "verify", f.one, "-h"}, 0, "usage: taikit audit verify", ""},
		{"after --, a file", []string{"audit", "verify", "-key-file", f.keyFile, f.one, "--", "-key-file"}, 1, "", "-key-file: open -key-file: no such file or directory"},
	})
}

// "--" given as a flag's value (a key file named "--") does not end the
// flags: the flags after the next file are still flags.
func TestAuditVerifyDoubleDashAsAFlagValue(t *testing.T) {
	f := newFixture(t)
	t.Chdir(f.dir)
	require.NoError(t, os.WriteFile("--", testKey, 0o600))
	runCLICases(t, []cliCase{
		{"-key-file --", []string{"audit", "verify", "-key-file", "--", f.one, "-expect", f.last1}, 0, "ok: 3 lines in 1 file; last hash " + f.last1 + "\n", ""},
		{"-key-file -- then --", []string{"audit", "verify", "-key-file", "--", f.one, "--", "-expect"}, 1, "", "-expect: open -expect: no such file or directory"},
		{"-key-file=--", []string{"audit", "verify", "-key-file=--", f.one, "-expect", f.last1}, 0, "ok: 3 lines in 1 file; last hash " + f.last1 + "\n", ""},
	})
}

// cliCase is a command line and what it answers: its exit code, and the
// start of its output (exit code 0) or a part of its error output.
type cliCase struct {
	name   string
	args   []string
	code   int
	stdout string
	stderr string
}

// stdinCase is a cliCase with what its standard input holds.
type stdinCase struct {
	name   string
	stdin  io.Reader
	args   []string
	code   int
	stdout string
	stderr string
}

// runCLICases runs each case as a subtest.
func runCLICases(t *testing.T, cases []cliCase) {
	t.Helper()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, stdout, stderr := runCLI(c.args...)
			c.check(t, code, stdout, stderr)
		})
	}
}

// check checks what c's command line did: its exit status, and what it
// printed. A failing command prints nothing on standard output, and never
// the test key.
func (c cliCase) check(t *testing.T, code int, stdout, stderr string) {
	t.Helper()
	assert.Equal(t, c.code, code, "stderr: %s", stderr)
	assert.NotContains(t, stderr, string(testKey), "the key is never printed")
	if c.code == 0 {
		assert.True(t, strings.HasPrefix(stdout, c.stdout), stdout)
		assert.Empty(t, stderr)
		return
	}
	assert.Empty(t, stdout)
	assert.Contains(t, stderr, c.stderr)
}

// failWriter fails every write, as a full disk or a closed pipe does.
type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errors.New("no space left on device") }

// A result that cannot be written is not a success: a script that keeps
// the last hash as the -genesis of the next file would get nothing, and
// exit status 0.
func TestAuditVerifyResultNotWritten(t *testing.T) {
	f := newFixture(t)
	var stderr strings.Builder
	code := run([]string{"audit", "verify", "-key-file", f.keyFile, f.one}, strings.NewReader(""), failWriter{}, &stderr)
	assert.Equal(t, 2, code)
	assert.Equal(t, "taikit audit verify: writing the result: no space left on device\n", stderr.String())
}

// An empty value given to -key-file or -expect, as "-key-file $KEY" gives
// with KEY unset, is refused, not taken for the flag left out: a trail
// rewritten without the key, or cut short, verified as if neither had
// been asked for.
func TestAuditVerifyRefusesEmptyFlagValues(t *testing.T) {
	f := newFixture(t)
	runCLICases(t, []cliCase{
		{"empty key file", []string{"audit", "verify", "-key-file", "", f.plain}, 2, "", "taikit audit verify: -key-file: empty FILE\n"},
		{"empty key file, with =", []string{"audit", "verify", "-key-file=", f.plain}, 2, "", "taikit audit verify: -key-file: empty FILE\n"},
		{"empty expect", []string{"audit", "verify", "-key-file", f.keyFile, f.one, "-expect", ""}, 2, "", "taikit audit verify: -expect: empty HASH\n"},
		{"empty genesis", []string{"audit", "verify", "-key-file", f.keyFile, "-genesis", "", f.one}, 2, "", "taikit audit verify: -genesis: empty HASH\n"},
		{"empty file", []string{"audit", "verify", "-key-file", f.keyFile, f.one, ""}, 2, "", "taikit audit verify: the name of FILE 2 is empty\n"},
	})
}

// A -key-file holds the key alone, at most kaizen.MaxAuditKeyFile bytes, as the
// services read theirs: a larger file (the trail itself, given by
// mistake) is refused, not read whole into memory and tried as a key.
func TestAuditVerifyKeyFileIsBounded(t *testing.T) {
	f := newFixture(t)
	big := filepath.Join(f.dir, "big-key")
	require.NoError(t, os.WriteFile(big, []byte(strings.Repeat("k", kaizen.MaxAuditKeyFile+1)), 0o600))
	atMost := filepath.Join(f.dir, "key-at-the-bound")
	require.NoError(t, os.WriteFile(atMost, []byte(strings.Repeat("k", kaizen.MaxAuditKeyFile)), 0o600))
	runCLICases(t, []cliCase{
		{"a key file over the bound", []string{"audit", "verify", "-key-file", big, f.one}, 2, "",
			fmt.Sprintf("taikit audit verify: -key-file: kaizen: audit key file %s holds more than %d bytes; it should hold the key alone\n", big, kaizen.MaxAuditKeyFile)},
		{"a key file at the bound is read", []string{"audit", "verify", "-key-file", atMost, f.one}, 1, "",
			f.one + ":1: its hash does not match its content under the given key"},
	})
}

// A key file that differs from the one the trail was written with only in
// a final newline (one written with echo, the other with printf, or a
// secret store that adds or drops it) fails at the first line as any wrong
// key does; the error says that the line verifies with the key once the
// newline is dropped, or added.
func TestAuditVerifyKeyFileNewline(t *testing.T) {
	f := newFixture(t)
	withNewline := filepath.Join(f.dir, "key-echo")
	require.NoError(t, os.WriteFile(withNewline, append(slices.Clone(testKey), '\n'), 0o600))
	withCRLF := filepath.Join(f.dir, "key-crlf")
	require.NoError(t, os.WriteFile(withCRLF, append(slices.Clone(testKey), '\r', '\n'), 0o600))
	echoed := filepath.Join(f.dir, "echoed.jsonl")
	writeTrail(t, echoed, kaizen.AuditOptions{Key: append(slices.Clone(testKey), '\n')}, 2)
	otherKey := filepath.Join(f.dir, "other-key")
	require.NoError(t, os.WriteFile(otherKey, append(testKey[1:], '\n'), 0o600))

	runCLICases(t, []cliCase{
		{"the key file ends in a newline the key has not", []string{"audit", "verify", "-key-file", withNewline, f.one}, 1, "",
			f.one + ":1: its hash does not match its content under the given key: the key is wrong, or the line was edited; " +
				"the line verifies with the key without the newline that ends the -key-file: write the key file with printf, not echo\n"},
		{"the key file ends in CRLF the key has not", []string{"audit", "verify", "-key-file", withCRLF, f.one}, 1, "",
			"the line verifies with the key without the newline that ends the -key-file"},
		{"the key has a newline the key file has not", []string{"audit", "verify", "-key-file", f.keyFile, echoed}, 1, "",
			echoed + ":1: its hash does not match its content under the given key: the key is wrong, or the line was edited; " +
				"the line verifies with the key followed by a newline: the trail was written with a key file that ends in one\n"},
	})
	// The trail's first line is in its second file when the first is
	// empty.
	empty := filepath.Join(f.dir, "empty.jsonl")
	require.NoError(t, os.WriteFile(empty, nil, 0o600))
	runCLICases(t, []cliCase{
		{"an empty file before the first line", []string{"audit", "verify", "-key-file", withNewline, empty, f.one}, 1, "",
			f.one + ":1: its hash does not match its content under the given key: the key is wrong, or the line was edited; " +
				"the line verifies with the key without the newline that ends the -key-file: write the key file with printf, not echo\n"},
	})
	for _, args := range [][]string{
		{"-key-file", otherKey, f.one},                         // another key, newline or not
		{"-key-file", withNewline, f.two, f.one},               // its first line, keyed right, does not begin a trail
		{"-key-file", withNewline, "-genesis", f.last1, f.one}, // nor continue from that genesis
	} {
		code, _, stderr := runCLI(append([]string{"audit", "verify"}, args...)...)
		assert.Equal(t, 1, code)
		assert.NotContains(t, stderr, "newline", "only when the line verifies with the key so changed")
	}
}

// A flag that takes one value, given twice, is refused: the first value
// was silently dropped, so "-expect NEW -expect OLD" checked only OLD,
// and a trail cut after OLD verified.
func TestAuditVerifyRefusesAFlagGivenTwice(t *testing.T) {
	f := newFixture(t)
	runCLICases(t, []cliCase{
		{"-expect twice", []string{"audit", "verify", "-key-file", f.keyFile, "-expect", f.last2, "-expect", f.last1, f.one}, 2, "",
			"taikit audit verify: -expect is given twice: it takes one value, and only the last would count\n"},
		{"-expect twice, after the file", []string{"audit", "verify", "-key-file", f.keyFile, "-expect", f.last2, f.one, "-expect=" + f.last1}, 2, "",
			"taikit audit verify: -expect is given twice"},
		{"-key-file twice", []string{"audit", "verify", "--key-file", f.keyFile, f.one, "-key-file", f.keyFile}, 2, "",
			"taikit audit verify: -key-file is given twice"},
		{"-genesis twice", []string{"audit", "verify", "-key-file", f.keyFile, "-genesis", f.last1, "-genesis", f.last1, f.two}, 2, "",
			"taikit audit verify: -genesis is given twice"},
		{"a flag's value that names a flag", []string{"audit", "verify", "-key-file", f.keyFile, "-genesis", kaizen.GenesisHash, "--", "-genesis"}, 1, "",
			"-genesis: open -genesis: no such file or directory"},
	})
}

// A -genesis or -expect that is not a hash is named by the flag the user
// typed, with what is wrong with its value, not by the library's option
// (VerifyOptions.Genesis), and before any file is read.
func TestAuditVerifyNamesABadHashByItsFlag(t *testing.T) {
	f := newFixture(t)
	short := f.last1[:63]
	notHex := "z" + f.last1[1:]
	for _, c := range []struct {
		name, flag, value, why string
	}{
		{"genesis too short", "genesis", short, "want 64 hex digits, got 63 characters"},
		{"genesis not hex", "genesis", notHex, "invalid byte: U+007A 'z'"},
		{"expect too long", "expect", f.last1 + "0", "want 64 hex digits, got 65 characters"},
		{"expect not hex", "expect", notHex, "invalid byte: U+007A 'z'"},
	} {
		t.Run(c.name, func(t *testing.T) {
			code, stdout, stderr := runCLI("audit", "verify", "-key-file", f.keyFile, "-"+c.flag, c.value, f.one)
			assert.Equal(t, 2, code)
			assert.Empty(t, stdout)
			assert.True(t, strings.HasPrefix(stderr, fmt.Sprintf("taikit audit verify: -%s %q is not a hash: ", c.flag, c.value)), stderr)
			assert.Contains(t, stderr, c.why)
			assert.NotContains(t, stderr, "VerifyOptions")
		})
	}
}

// A FILE of - is the standard input, read as one file of a trail: as a
// pipe (zcat FILE.gz | taikit audit verify -) or as a shell's < FILE,
// with its errors naming it "(standard input)".
func TestAuditVerifyReadsStandardInput(t *testing.T) {
	f := newFixture(t)
	read := func(path string) string {
		b, err := os.ReadFile(path)
		require.NoError(t, err)
		return string(b)
	}
	open := func(path string) *os.File {
		in, err := os.Open(path)
		require.NoError(t, err)
		t.Cleanup(func() { in.Close() })
		return in
	}
	pipe := func(text string) *os.File {
		r, w, err := os.Pipe()
		require.NoError(t, err)
		t.Cleanup(func() { r.Close() })
		go func() {
			_, _ = w.WriteString(text)
			w.Close()
		}()
		return r
	}
	t.Chdir(f.dir)
	require.NoError(t, os.WriteFile("-", []byte(read(f.plain)), 0o600)) // a file named -, given as ./-
	keyed := []string{"audit", "verify", "-key-file", f.keyFile}
	for _, c := range []stdinCase{
		{"a pipe", pipe(read(f.one)), slices.Concat(keyed, []string{"-"}), 0, "ok: 3 lines in 1 file; last hash " + f.last1 + "\n", ""},
		{"a reader", strings.NewReader(read(f.one)), slices.Concat(keyed, []string{"-"}), 0, "ok: 3 lines in 1 file; last hash " + f.last1 + "\n", ""},
		{"a regular file", open(f.one), slices.Concat(keyed, []string{"-"}), 0, "ok: 3 lines in 1 file; last hash " + f.last1 + "\n", ""},
		{"after --", strings.NewReader(read(f.one)), slices.Concat(keyed, []string{"--", "-"}), 0, "ok: 3 lines in 1 file; last hash " + f.last1 + "\n", ""},
		{"a file that continues another, with -genesis", pipe(read(f.two)), slices.Concat(keyed, []string{"-genesis", f.last1, "-", "-expect", f.last2}), 0,
			"ok: 2 lines in 1 file; last hash " + f.last2 + "\n", ""},
		{"an empty regular file", open(f.empty), []string{"audit", "verify", "-"}, 0, "ok: 0 lines in 1 file; last hash " + kaizen.GenesisHash + "\n", ""},
		{"not a file named -", strings.NewReader(read(f.one)), slices.Concat(keyed, []string{"-"}), 0, "ok: 3 lines in 1 file", ""},
		{"the file named -, as ./-", strings.NewReader(read(f.one)), []string{"audit", "verify", "./-"}, 0, "ok: 2 lines in 1 file", ""},

		{"tampered", pipe(read(f.tampered)), slices.Concat(keyed, []string{"-"}), 1, "", "(standard input):2: edited: its hash does not match its content\n"},
		{"cut short", strings.NewReader(read(f.torn)), slices.Concat(keyed, []string{"-"}), 1, "", "(standard input):3: not an audit line (malformed or truncated)"},
		{"the expected hash cut off", pipe(read(f.one)), slices.Concat(keyed, []string{"-expect", f.last2, "-"}), 1, "",
			"(standard input):4: the trail ends without the expected hash " + f.last2},
		{"a pipe that gives nothing", pipe(""), []string{"audit", "verify", "-"}, 1, "",
			"(standard input): it gave no line: whatever writes it (a zcat of an archived file) failed, or the trail is empty (give it as a file)\n"},
		{"a reader that gives nothing", strings.NewReader(""), []string{"audit", "verify", "-"}, 1, "", "(standard input): it gave no line"},
		{"a reader that fails", iotest.ErrReader(errors.New("input/output error")), []string{"audit", "verify", "-"}, 1, "",
			"(standard input): kaizen: reading audit trail: input/output error\n"},

		{"- with another FILE", pipe(read(f.two)), slices.Concat(keyed, []string{f.one, "-"}), 2, "",
			"taikit audit verify: FILE - (the standard input) is given with another FILE: it is then the only one; " +
				"verify the files before it apart, and give their last hash to -genesis\n"},
		{"- twice", strings.NewReader(read(f.one)), slices.Concat(keyed, []string{"-", "-"}), 2, "", "FILE - (the standard input) is given with another FILE"},
	} {
		t.Run(c.name, func(t *testing.T) {
			code, stdout, stderr := runCLIWithStdin(c.stdin, c.args...)
			cliCase{c.name, c.args, c.code, c.stdout, c.stderr}.check(t, code, stdout, stderr)
		})
	}
}

// A rotated series is files, given as PATH*: the standard input is none of
// them. One of its files read from the standard input is verified alone,
// from the last hash of the file before it (-genesis).
func TestAuditVerifyStandardInputIsNoSeries(t *testing.T) {
	dir := t.TempDir()
	series := filepath.Join(dir, "series.jsonl")
	for range 2 { // a line in PATH, one in PATH.000001, and PATH.000002 empty
		writeTrail(t, series, kaizen.AuditOptions{RotateBytes: 1, Key: testKey}, 1)
	}
	files, err := filepath.Glob(series + "*")
	require.NoError(t, err)
	require.Len(t, files, 3)
	key := filepath.Join(dir, "key")
	require.NoError(t, os.WriteFile(key, testKey, 0o600))
	lastHash := func(out string) string { return strings.TrimSuffix(out[strings.LastIndex(out, " ")+1:], "\n") }

	code, whole, stderr := runCLI(slices.Concat([]string{"audit", "verify", "-key-file", key}, files)...)
	require.Equal(t, 0, code, stderr)
	code, first, stderr := runCLI("audit", "verify", "-key-file", key, files[0])
	require.Equal(t, 0, code, stderr)
	last, err := os.ReadFile(files[1])
	require.NoError(t, err)

	code, stdout, stderr := runCLIWithStdin(strings.NewReader(string(last)), "audit", "verify", "-key-file", key, "-genesis", lastHash(first), "-")
	assert.Equal(t, 0, code, stderr)
	assert.Equal(t, "ok: 1 line in 1 file; last hash "+lastHash(whole)+"\n", stdout, "the last hash of the whole series")

	code, stdout, stderr = runCLIWithStdin(strings.NewReader(string(last)), "audit", "verify", "-key-file", key, files[0], "-")
	assert.Equal(t, 2, code)
	assert.Empty(t, stdout)
	assert.Contains(t, stderr, "FILE - (the standard input) is given with another FILE")

	// Without -genesis, the file from the standard input does not begin
	// the trail.
	code, _, stderr = runCLIWithStdin(strings.NewReader(string(last)), "audit", "verify", "-key-file", key, "-")
	assert.Equal(t, 1, code)
	assert.Contains(t, stderr, "(standard input):1: its prev hash is not the genesis hash")
}

// -key-file - reads the key from the standard input, within the bounds of
// a key file, while the trail is read from files; the standard input is
// not read twice, as the key and as a FILE.
func TestAuditVerifyKeyFromStandardInput(t *testing.T) {
	f := newFixture(t)
	keyIn, err := os.Open(f.keyFile)
	require.NoError(t, err)
	defer keyIn.Close()
	trailIn, err := os.Open(f.one)
	require.NoError(t, err)
	defer trailIn.Close()
	for _, c := range []stdinCase{
		{"the key", strings.NewReader(string(testKey)), []string{"-key-file", "-", f.one, f.two}, 0, "ok: 5 lines in 2 files; last hash " + f.last2 + "\n", ""},
		{"the key with a newline the trail's key has not", strings.NewReader(string(testKey) + "\n"), []string{"-key-file", "-", f.one}, 1, "",
			f.one + ":1: its hash does not match its content under the given key: the key is wrong, or the line was edited; " +
				"the line verifies with the key without the newline that ends the -key-file"},
		{"a key too short", strings.NewReader(string(testKey[:15])), []string{"-key-file", "-", f.one}, 2, "",
			"taikit audit verify: -key-file: the standard input: kaizen: audit key holds 15 bytes; the key needs at least 16\n"},
		{"more than a key", strings.NewReader(strings.Repeat("k", kaizen.MaxAuditKeyFile+1)), []string{"-key-file", "-", f.one}, 2, "",
			fmt.Sprintf("taikit audit verify: -key-file: the standard input: kaizen: audit key holds more than %d bytes; it should hold the key alone\n", kaizen.MaxAuditKeyFile)},
		{"key and trail both from the standard input", strings.NewReader(string(testKey)), []string{"-key-file", "-", "-"}, 2, "",
			"taikit audit verify: -key-file - and FILE - both read the standard input: give one of them as a file\n"},
		{"a FILE that is the standard input the key is read from", keyIn, []string{"-key-file", "-", f.one, f.keyFile}, 2, "",
			"taikit audit verify: FILE " + f.keyFile + " is the standard input, which -key-file - reads: give one of them as a file\n"},
		{"a key file that is the standard input the trail is read from", trailIn, []string{"-key-file", f.one, "-"}, 2, "",
			"taikit audit verify: -key-file " + f.one + " is the standard input, which FILE - reads: give one of them as a file\n"},
	} {
		t.Run(c.name, func(t *testing.T) {
			args := append([]string{"audit", "verify"}, c.args...)
			code, stdout, stderr := runCLIWithStdin(c.stdin, args...)
			cliCase{c.name, args, c.code, c.stdout, c.stderr}.check(t, code, stdout, stderr)
		})
	}
}

// An error reading the standard input names it (standard input) alone, at
// the start of the line, as its other errors do: an *fs.PathError under it
// (the standard input is a directory, "< /var/log") had the message begin
// with the path the runtime gives it, "/dev/stdin: (standard input): ...".
func TestAuditVerifyStandardInputReadErrorNamesIt(t *testing.T) {
	in := iotest.ErrReader(&fs.PathError{Op: "read", Path: "/dev/stdin", Err: errors.New("is a directory")})
	code, stdout, stderr := runCLIWithStdin(in, "audit", "verify", "-")
	assert.Equal(t, 1, code)
	assert.Empty(t, stdout)
	assert.Equal(t, "(standard input): kaizen: reading audit trail: read /dev/stdin: is a directory\n", stderr)
}

// A -key-file that is one of the FILEs (the trail given twice, once by
// mistake as the key) is refused as a FILE given twice is: read as the
// key, a trail of 64 KiB or less had the command say that the key was
// wrong, and a named pipe given as both waited without end for a second
// writer.
func TestAuditVerifyKeyFileIsNoFILE(t *testing.T) {
	f := newFixture(t)
	link := filepath.Join(f.dir, "link.jsonl")
	require.NoError(t, os.Symlink(f.two, link))
	runCLICases(t, []cliCase{
		{"by the same name", []string{"audit", "verify", "-key-file", f.one, f.one}, 2, "",
			"taikit audit verify: -key-file " + f.one + " is the FILE " + f.one + ": the key is read from a file of its own\n"},
		{"by another name", []string{"audit", "verify", "-key-file", link, f.one, f.two}, 2, "",
			"taikit audit verify: -key-file " + link + " is the FILE " + f.two + ": the key is read from a file of its own\n"},
	})
}
