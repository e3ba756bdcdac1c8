package main

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"slices"
	"strings"

	"github.com/taipattern/taikit/kaizen"
)

func auditCommand() *command {
	return &command{
		name:    "audit",
		summary: "work with audit trails written by package kaizen",
		subs:    []*command{auditVerifyCommand()},
	}
}

const auditVerifyDoc = `Verify audit trail files written by kaizen.Audit (kaizen.OpenAuditFile), as
one hash chain in the order given: the first line of each file continues
from the last line of the file before. It is kaizen.VerifyAuditFiles. A
trail kaizen.AuditOptions.RotateBytes spread over files (PATH, PATH.000001,
PATH.000002, ...) is given as PATH*: the names sort in the trail's order up to
PATH.999999, and PATH* must match no other file. Once the first files of a
series are archived, give -genesis the prev of the first line left. The
flags may come before or after the files; after "--" every argument is a
file. Each FILE is a regular file or a pipe (a FIFO, or a shell's
<(zcat FILE.gz) for an archived file), or a symbolic link to one: a device
such as /dev/zero is refused as it is opened, a pipe that gives nothing (a
zcat that failed) is refused once read, and a symbolic link to no file is
named as one.

A FILE of - is the standard input (a file named - is given as ./-), read
as one file of a trail, not a series: it is then the only FILE. A file that
continues another is given the last hash of that one with -genesis, as in
"zcat audit.jsonl.000002.gz | taikit audit verify -genesis HASH -". As for
a pipe, a standard input that gives nothing is refused, unless it is a
regular file (< FILE). Errors name it (standard input). -key-file - reads
the key from the standard input instead; the trail is then files.

On success it prints the number of lines and the hash of the last line,
which is the -genesis of the file that will continue the trail. Otherwise
it prints FILE:LINE: and why that line, the first one that does not verify,
is wrong: edited, deleted, inserted, copied or moved, cut short by a crash,
the start of a trail begun again by a writer that did not continue the one
before, hashed with another key, or missing because the trail ends before
the -expect hash. A file an editor or a copy changed without touching its
records (a blank line, a byte-order mark, CRLF line endings, whitespace
around or between a line's fields) does not verify either, as a line's
hash is of its bytes exactly: the first changed line is named with the
change, and whether every line verifies with the changes undone. A first
line that verifies with the key of -key-file once a final newline is
dropped from it, or added to it, says so, of a FILE that is a regular
file, which can be read again.

Exit status: 0 when the files verify, 1 when they do not or cannot be read,
2 when the command is called wrongly (no FILE, an empty FILE name, a FILE
given twice, - with another FILE, -key-file - with FILE - or a FILE that is
the standard input, a -key-file that is a FILE, a bad flag, a flag given an
empty value or given twice, an unreadable -key-file, a key that is too
short, a -key-file of more than 64 KiB, a -genesis or -expect that is not a
hash) or cannot write its result.`

// stdinArg is the FILE, or -key-file, that names the standard input.
const stdinArg = "-"

// stdinName names the standard input where a FILE's name goes in what the
// command prints.
const stdinName = "(standard input)"

func auditVerifyCommand() *command {
	return &command{
		name:    "verify",
		summary: "verify audit trail files as one hash chain",
		args:    "[-key-file FILE] [-genesis HASH] [-expect HASH] FILE...",
		doc:     auditVerifyDoc,
		flags: func(fs *flag.FlagSet) runFunc {
			keyFile := fs.String("key-file", "", "read the HMAC key the trail was written with (kaizen.AuditOptions.Key) from `FILE`\n"+
				"(- for the standard input): its bytes exactly, a final newline included (write it with\n"+
				"printf, not echo); at most 64 KiB")
			var opts kaizen.VerifyOptions
			fs.StringVar(&opts.Genesis, "genesis", "", "the prev `HASH` of the first line: the last hash of the trail the files continue\n"+
				"(default the genesis hash, 64 zeros)")
			fs.StringVar(&opts.Expect, "expect", "", "a `HASH` that must be in the files: one the service published from\n"+
				"kaizen.Audit.Last; when it is missing, lines were cut from the end")
			return func(path string, files []string, stdin io.Reader, stdout, stderr io.Writer) int {
				if err := emptyFlag(fs, "key-file", "genesis", "expect"); err != nil {
					return usageError(stderr, path, "%v", err)
				}
				if err := checkHashFlag("genesis", opts.Genesis); err != nil {
					return usageError(stderr, path, "%v", err)
				}
				if err := checkHashFlag("expect", opts.Expect); err != nil {
					return usageError(stderr, path, "%v", err)
				}
				if len(files) == 0 {
					return usageError(stderr, path, "no FILE to verify")
				}
				if i := slices.Index(files, ""); i >= 0 {
					return usageError(stderr, path, "the name of FILE %d is empty", i+1)
				}
				if err := stdinOnce(*keyFile, files, stdin); err != nil {
					return usageError(stderr, path, "%v", err)
				}
				if err := distinctFiles("", files); err != nil {
					return usageError(stderr, path, "%v", err)
				}
				if err := keyFileIsNoFILE(*keyFile, files); err != nil {
					return usageError(stderr, path, "%v", err)
				}
				if *keyFile != "" {
					key, err := readKey(*keyFile, stdin)
					if err != nil {
						return usageError(stderr, path, "-key-file: %v", explainDanglingLink(err))
					}
					opts.Key = key
				}
				return auditVerify(path, opts, files, stdin, stdout, stderr)
			}
		},
	}
}

// checkHashFlag returns an error naming flag when value, not empty, is
// not a hash as kaizen reads one (the genesis of a trail): the library's
// own error names its option (VerifyOptions.Genesis), not the flag.
func checkHashFlag(flag, value string) error {
	if value == "" {
		return nil
	}
	_, err := kaizen.VerifyAuditFrom(strings.NewReader(""), value)
	if err == nil {
		return nil
	}
	if why := errors.Unwrap(err); why != nil {
		err = why // without the library's "VerifyAuditFrom: genesis ..."
	}
	return fmt.Errorf("-%s %q is not a hash: %v", flag, value, err)
}

// stdinOnce returns an error when FILE - is given with another FILE:
// kaizen verifies a chain of files by their names, so the standard input
// is a trail on its own; or when the key and the trail would both be read
// from it: -key-file - with FILE -, or either with a file that is the
// standard input (/dev/stdin).
func stdinOnce(keyFile string, files []string, stdin io.Reader) error {
	fromStdin := slices.Contains(files, stdinArg)
	switch {
	case fromStdin && len(files) > 1:
		return errors.New("FILE - (the standard input) is given with another FILE: it is then the only one; " +
			"verify the files before it apart, and give their last hash to -genesis")
	case fromStdin && keyFile == stdinArg:
		return errors.New("-key-file - and FILE - both read the standard input: give one of them as a file")
	case fromStdin && isStdin(keyFile, stdin):
		return fmt.Errorf("-key-file %s is the standard input, which FILE - reads: give one of them as a file", keyFile)
	case keyFile == stdinArg:
		for _, f := range files {
			if isStdin(f, stdin) {
				return fmt.Errorf("FILE %s is the standard input, which -key-file - reads: give one of them as a file", f)
			}
		}
	}
	return nil
}

// keyFileIsNoFILE returns an error when the -key-file keyFile is one of
// files, by the same name or another (a link): the trail given as its own
// key by mistake would be read as the key, or, a named pipe, waited on for
// a second writer. The standard input is stdinOnce's.
func keyFileIsNoFILE(keyFile string, files []string) error {
	if keyFile == "" || keyFile == stdinArg {
		return nil
	}
	kfi, err := os.Stat(keyFile)
	if err != nil {
		return nil // readKey says why
	}
	for _, f := range files {
		if f == stdinArg {
			continue
		}
		if fi, err := os.Stat(f); err == nil && os.SameFile(kfi, fi) {
			return fmt.Errorf("-key-file %s is the FILE %s: the key is read from a file of its own", keyFile, f)
		}
	}
	return nil
}

// isStdin reports whether path names the file stdin reads, as /dev/stdin
// does.
func isStdin(path string, stdin io.Reader) bool {
	f, ok := stdin.(*os.File)
	if !ok || path == "" || path == stdinArg {
		return false
	}
	in, err := f.Stat()
	if err != nil {
		return false
	}
	fi, err := os.Stat(path)
	return err == nil && os.SameFile(fi, in)
}

// readKey reads the key of -key-file name: kaizen.ReadAuditKeyFile, or
// the standard input for "-", within the same bounds.
func readKey(name string, stdin io.Reader) ([]byte, error) {
	if name != stdinArg {
		return kaizen.ReadAuditKeyFile(name)
	}
	key, err := kaizen.ReadAuditKey(stdin)
	if err != nil {
		return nil, fmt.Errorf("the standard input: %w", err)
	}
	return key, nil
}

// auditVerify verifies files, or the standard input for FILE -, and
// reports as the help says.
func auditVerify(path string, opts kaizen.VerifyOptions, files []string, stdin io.Reader, stdout, stderr io.Writer) int {
	var sum kaizen.AuditSummary
	var err error
	if files[0] == stdinArg {
		sum, err = verifyStdin(opts, stdin)
	} else {
		sum, err = kaizen.VerifyAuditFiles(opts, files...)
	}
	var ae *kaizen.AuditError
	var pe *fs.PathError
	var ie *inputError
	switch {
	case err == nil:
		if _, err := fmt.Fprintf(stdout, "ok: %d %s in %d %s; last hash %s\n", sum.Lines, plural(sum.Lines, "line"), len(files), plural(len(files), "file"), sum.Last); err != nil {
			// The last hash is what a script keeps: without it the
			// command did not do its job.
			fmt.Fprintf(stderr, "%s: writing the result: %v\n", path, err)
			return exitUsage
		}
		return exitOK
	case errors.As(err, &ae):
		hint := ""
		if opts.Key != nil && ae.Line == 1 && firstWithLines(files, ae.File) {
			hint = keyNewlineHint(ae.File, opts)
		}
		fmt.Fprintf(stderr, "%s:%d: %s%s\n", ae.File, ae.Line, ae.Reason, hint)
		return exitProblem
	case errors.As(err, &ie): // before pe: the standard input's may wrap one
		fmt.Fprintln(stderr, ie)
		return exitProblem
	case errors.As(err, &pe):
		fmt.Fprintf(stderr, "%s: %v\n", pe.Path, err)
		return exitProblem
	default: // VerifyAuditFiles's other errors name an invalid option
		return usageError(stderr, path, "%v", err)
	}
}

// verifyStdin verifies the trail read from stdin as VerifyAuditFiles
// verifies a FILE, its errors naming it stdinName: one that gives no line
// is refused unless it is a regular file (a shell's < FILE), as a pipe
// that gives nothing is what a zcat that failed gives.
func verifyStdin(opts kaizen.VerifyOptions, stdin io.Reader) (kaizen.AuditSummary, error) {
	sum, err := kaizen.VerifyAuditWith(stdin, opts)
	var ae *kaizen.AuditError
	switch {
	case errors.As(err, &ae):
		ae.File = stdinName
		return sum, err
	case err != nil:
		// An option was checked before: an error reading stdin.
		return sum, &inputError{err}
	case sum.Lines == 0 && !isRegular(stdin):
		return sum, &inputError{errors.New("it gave no line: whatever writes it (a zcat of an archived file) failed, " +
			"or the trail is empty (give it as a file)")}
	}
	return sum, nil
}

// inputError is an error reading the standard input as a trail.
type inputError struct{ err error }

func (e *inputError) Error() string { return stdinName + ": " + e.err.Error() }
func (e *inputError) Unwrap() error { return e.err }

// isRegular reports whether r is a regular file.
func isRegular(r io.Reader) bool {
	f, ok := r.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode().IsRegular()
}

// firstWithLines reports whether file is the first of files that holds a
// line: it is among them, and every file before it is empty (a rotation
// can leave one). Its first line is then the trail's first.
func firstWithLines(files []string, file string) bool {
	for _, f := range files {
		if f == file {
			return true
		}
		if fi, err := os.Stat(f); err != nil || !fi.Mode().IsRegular() || fi.Size() != 0 {
			return false
		}
	}
	return false
}

// keyNewlineHint returns what to add to the reason why the first line of
// file, the first line of the trail, does not verify with opts.Key: that it
// verifies with the key without the newline that ends it, or with one
// after it, when it does, and "" otherwise. A key file written with echo
// ends in a newline, one written with printf or by a secret store may
// not, and the key is its bytes exactly. The line is read again, so only
// from a regular file.
func keyNewlineHint(file string, opts kaizen.VerifyOptions) string {
	key := opts.Key
	var alt []byte
	hint := "; the line verifies with the key without the newline that ends the -key-file: write the key file with printf, not echo"
	switch {
	case bytes.HasSuffix(key, []byte("\r\n")):
		alt = key[:len(key)-2]
	case bytes.HasSuffix(key, []byte("\n")):
		alt = key[:len(key)-1]
	default:
		alt = append(slices.Clone(key), '\n')
		hint = "; the line verifies with the key followed by a newline: the trail was written with a key file that ends in one"
	}
	if len(alt) < kaizen.MinAuditKeyLen {
		return ""
	}
	if fi, err := os.Stat(file); err != nil || !fi.Mode().IsRegular() {
		return ""
	}
	f, err := os.Open(file)
	if err != nil {
		return ""
	}
	defer f.Close()
	line, err := bufio.NewReader(io.LimitReader(f, kaizen.MaxAuditLineLen+1)).ReadBytes('\n')
	if len(line) == 0 || (err != nil && err != io.EOF) {
		return ""
	}
	if _, err := kaizen.VerifyAuditWith(bytes.NewReader(line), kaizen.VerifyOptions{Genesis: opts.Genesis, Key: alt}); err != nil {
		return ""
	}
	return hint
}

// plural returns word, with an s unless n is 1.
func plural[N int | uint64](n N, word string) string {
	if n == 1 {
		return word
	}
	return word + "s"
}
