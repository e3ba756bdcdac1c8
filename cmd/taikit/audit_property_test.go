package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/kaizen"
	"github.com/taipattern/taikit/tai"
)

// randomTrail writes a trail of n random records with opts and returns
// it, the ends of its lines (each just past its newline) and its last
// hash.
func randomTrail(t *testing.T, rng *rand.Rand, opts kaizen.AuditOptions, n int) (data []byte, ends []int, last string) {
	t.Helper()
	var buf bytes.Buffer
	opts.Logger = slog.New(slog.DiscardHandler)
	a, err := kaizen.NewAudit(&buf, opts)
	require.NoError(t, err)
	runes := []rune{'a', 'é', '"', '\\', '\n', '\r', '\x00', '\u2028', '}', '{'}
	text := func() string {
		var b strings.Builder
		for range rng.IntN(4) {
			b.WriteRune(runes[rng.IntN(len(runes))])
		}
		return b.String()
	}
	for i := range n {
		r := tai.Record{ID: fmt.Sprintf("pay-%d", i+1), Kind: text(), Key: text(),
			Outcome: tai.Outcome(rng.IntN(4)), Decision: tai.Decision{Verdict: tai.Verdict(rng.IntN(4)), Reason: text()},
			Start: time.Date(2026, 3, 1, 12, 0, i, 0, time.UTC), Duration: time.Duration(rng.Int64())}
		if e := text(); e != "" {
			r.Err = errors.New(e)
		}
		a.Observe(context.Background(), r)
	}
	require.NoError(t, a.Shutdown(context.Background()))
	data = buf.Bytes()
	for i, c := range data {
		if c == '\n' {
			ends = append(ends, i+1)
		}
	}
	require.Len(t, ends, n)
	last, _ = a.Last()
	return data, ends, last
}

// randomMutation changes data, a trail whose lines end at ends, in one
// way, and returns the trail changed, what was done, and the line the
// first that does not verify must be: 0 when it still verifies, with and
// without the trail's last hash expected.
func randomMutation(rng *rand.Rand, data []byte, ends []int) (d []byte, what string, line, lineExpect int) {
	n := len(ends)
	lineAt := func(p int) int {
		for i, e := range ends {
			if p < e {
				return i + 1
			}
		}
		return n + 1
	}
	start := func(k int) int { // of line k, from 1
		if k == 1 {
			return 0
		}
		return ends[k-2]
	}
	switch rng.IntN(5) {
	case 0:
		p := rng.IntN(len(data))
		d = slices.Clone(data)
		d[p] ^= byte(1 + rng.IntN(255))
		return d, fmt.Sprintf("byte %d set to %q", p, d[p]), lineAt(p), lineAt(p)
	case 1:
		p := rng.IntN(len(data))
		d = slices.Delete(slices.Clone(data), p, p+1)
		if p == len(data)-1 {
			return d, "final newline deleted", 0, 0
		}
		return d, fmt.Sprintf("byte %d deleted", p), lineAt(p), lineAt(p)
	case 2:
		p := rng.IntN(len(data) + 1)
		b := byte(rng.IntN(256))
		return slices.Insert(slices.Clone(data), p, b), fmt.Sprintf("%q inserted at %d", b, p), lineAt(p), lineAt(p)
	case 3:
		p := rng.IntN(len(data))
		d, k := slices.Clone(data[:p]), lineAt(p)
		switch {
		case p == start(k):
			return d, fmt.Sprintf("cut at line %d's start", k), 0, k
		case p == ends[k-1]-1 && k == n:
			return d, "final newline cut", 0, 0
		case p == ends[k-1]-1:
			return d, fmt.Sprintf("cut at line %d's newline", k), 0, k + 1
		}
		return d, fmt.Sprintf("cut in line %d", k), k, k
	default:
		if n == 1 {
			return slices.Concat(data, data), "line 1 copied", 2, 2
		}
		i := 1 + rng.IntN(n-1)
		j := i + 1 + rng.IntN(n-i)
		li, lj := data[start(i):ends[i-1]], data[start(j):ends[j-1]]
		return slices.Concat(data[:start(i)], lj, data[ends[i-1]:start(j)], li, data[ends[j-1]:]), fmt.Sprintf("lines %d and %d swapped", i, j), i, i
	}
}

// TestAuditVerifyNamesTheMutatedLine: taikit audit verify finds every
// change of one byte, byte inserted or deleted, line swapped or copied,
// and cut of a trail, names its file and line on the standard error, and
// exits 1 with nothing on the standard output; a trail that verifies is
// reported on the standard output alone, with exit status 0. Whatever
// the order of the flags and the file, and from a file or the standard
// input.
func TestAuditVerifyNamesTheMutatedLine(t *testing.T) {
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "key")
	require.NoError(t, os.WriteFile(keyFile, testKey, 0o600))
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 400 {
		var opts kaizen.AuditOptions
		keyed := rng.IntN(2) == 0
		if keyed {
			opts.Key = testKey
		}
		data, ends, last := randomTrail(t, rng, opts, 1+rng.IntN(5))
		d, what, line, lineExpect := randomMutation(rng, data, ends)
		file := filepath.Join(dir, fmt.Sprintf("trail-%d.jsonl", i))
		require.NoError(t, os.WriteFile(file, d, 0o600))

		var flags [][]string
		if keyed {
			flags = append(flags, []string{"-key-file", keyFile})
		}
		expect := rng.IntN(2) == 0
		if expect {
			flags = append(flags, []string{"-expect=" + last})
			line = lineExpect
		}
		rng.Shuffle(len(flags), func(i, j int) { flags[i], flags[j] = flags[j], flags[i] })
		stdin := rng.IntN(4) == 0
		name, shown := file, file
		if stdin {
			name, shown = "-", "(standard input)"
		}
		args := []string{"audit", "verify"}
		at := rng.IntN(len(flags) + 1) // the file's place among the flags
		for k, f := range flags {
			if k == at {
				args = append(args, name)
			}
			args = append(args, f...)
		}
		if at == len(flags) {
			if rng.IntN(2) == 0 {
				args = append(args, "--")
			}
			args = append(args, name)
		}
		code, stdout, stderr := runCLIWithStdin(bytes.NewReader(d), args...)
		if !stdin {
			code, stdout, stderr = runCLI(args...)
		}
		about := fmt.Sprintf("case %d: %s; taikit %s", i, what, strings.Join(args, " "))
		require.NotContains(t, stderr+stdout, string(testKey), about)
		switch {
		case line == 0 && stdin && len(d) == 0:
			require.Equal(t, exitProblem, code, about)
			require.Empty(t, stdout, about)
			require.True(t, strings.HasPrefix(stderr, shown+": it gave no line"), "%s: %s", about, stderr)
		case line == 0:
			require.Equal(t, exitOK, code, "%s: %s", about, stderr)
			require.Empty(t, stderr, about)
			require.True(t, strings.HasPrefix(stdout, "ok: "), "%s: %s", about, stdout)
			require.True(t, strings.HasSuffix(stdout, "; last hash "+last+"\n") || !expect && len(d) < len(data), "%s: %s", about, stdout)
		default:
			require.Equal(t, exitProblem, code, "%s: %s", about, stderr)
			require.Empty(t, stdout, about)
			require.True(t, strings.HasPrefix(stderr, fmt.Sprintf("%s:%d: ", shown, line)), "%s: %s", about, stderr)
			require.True(t, strings.HasSuffix(stderr, "\n") && strings.Count(stderr, "\n") == 1, "%s: one line: %q", about, stderr)
		}
	}
}

// TestParseInterspersedMatchesAModel: flags anywhere among the
// arguments, in every form the flag package reads (-name value,
// -name=value, --name value), are parsed as if they came first, the
// arguments kept in order; "--" ends the flags, unless it is a flag's
// value; and a flag given twice is refused.
func TestParseInterspersedMatchesAModel(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	names := []string{"key-file", "genesis", "expect"}
	values := []string{"v", "-", "--", "-x", "-genesis", "a=b", "", "--expect"}
	files := []string{"a", "b", "-", "c.jsonl"}
	for i := range 3000 {
		var args []string
		want := map[string]string{}
		var wantRest []string
		twice, dashes := false, false
		for range rng.IntN(7) {
			if dashes {
				f := []string{"a", "-b", "--", "-key-file"}[rng.IntN(4)]
				args = append(args, f)
				wantRest = append(wantRest, f)
				continue
			}
			switch rng.IntN(4) {
			case 0:
				f := files[rng.IntN(len(files))]
				args = append(args, f)
				wantRest = append(wantRest, f)
			case 1:
				args = append(args, "--")
				dashes = true
			default:
				name, v := names[rng.IntN(len(names))], values[rng.IntN(len(values))]
				dash := []string{"-", "--"}[rng.IntN(2)]
				if rng.IntN(2) == 0 {
					args = append(args, dash+name+"="+v)
				} else {
					args = append(args, dash+name, v)
				}
				if _, ok := want[name]; ok {
					twice = true
				}
				want[name] = v
			}
		}
		fs := flag.NewFlagSet("verify", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		auditVerifyCommand().flags(fs)
		rest, err := parseInterspersed(fs, args)
		about := fmt.Sprintf("case %d: %q", i, args)
		if twice {
			require.Error(t, err, about)
			require.Contains(t, err.Error(), "is given twice", about)
			continue
		}
		require.NoError(t, err, about)
		require.Equal(t, wantRest, rest, about)
		for _, name := range names {
			require.Equal(t, want[name], fs.Lookup(name).Value.String(), "%s: -%s", about, name)
		}
	}
}

// TestAuditVerifyFilesThatAreNoTrail: a trail whose line endings were
// changed to CRLF, and files that are no trail at all, fail at their
// first line with exit status 1; the standard input that holds them too.
// Blank lines alone are named as such.
func TestAuditVerifyFilesThatAreNoTrail(t *testing.T) {
	f := newFixture(t)
	raw, err := os.ReadFile(f.one)
	require.NoError(t, err)
	name := func(n string) string { return filepath.Join(f.dir, n) }
	files := map[string][]byte{
		"crlf.jsonl":   bytes.ReplaceAll(raw, []byte("\n"), []byte("\r\n")),
		"text.txt":     []byte("hello\nworld\n"),
		"array.json":   []byte("[1, 2, 3]\n"),
		"binary":       {0x1f, 0x8b, 0x08, 0x00, 0xff, 0x00, '\n', 0x01},
		"object.json":  []byte(`{"time":"2026-03-01T12:00:00Z","id":"x"}` + "\n"),
		"blank.jsonl":  []byte("\n"),
		"spaces.jsonl": []byte("   "),
	}
	const (
		crlfReason = "the line ends in CR (CRLF line endings: the file was converted, by a Windows editor or a transfer in text mode; " +
			"convert it back with dos2unix, or sed 's/\\r$//'); with that undone, and the like on 2 more lines, every line verifies, but the file is not as it was written\n"
		blankReason = "the line is blank, which no audit line is: one was added (by an editor, or by joining files), or a line's text was erased; " +
			"the file holds no audit line\n"
	)
	for n, data := range files {
		require.NoError(t, os.WriteFile(name(n), data, 0o600))
		want := "not an audit line (malformed or truncated)"
		args := []string{"audit", "verify", name(n)}
		switch n {
		case "crlf.jsonl":
			want = crlfReason
			args = []string{"audit", "verify", "-key-file", f.keyFile, name(n)}
		case "blank.jsonl", "spaces.jsonl":
			want = blankReason
		}
		code, stdout, stderr := runCLI(args...)
		cliCase{n, args, 1, "", name(n) + ":1: " + want}.check(t, code, stdout, stderr)
		stdinArgs := append(args[:len(args)-1:len(args)-1], "-")
		code, stdout, stderr = runCLIWithStdin(bytes.NewReader(data), stdinArgs...)
		cliCase{n + " on the standard input", stdinArgs, 1, "", "(standard input):1: " + want}.check(t, code, stdout, stderr)
	}
}
