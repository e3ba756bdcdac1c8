package kaizen

import (
	"bufio"
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"strconv"
	"strings"
)

// ErrAuditTampered matches (errors.Is) every *AuditError.
var ErrAuditTampered = errors.New("kaizen: audit trail does not verify")

// AuditError names the first line of an audit trail that does not verify.
type AuditError struct {
	// File is the file the line is in, as named to VerifyAuditFiles or
	// OpenAuditFile; empty when the trail was read from an io.Reader.
	File string
	// Line is the 1-based line number, counted from the start of File (or
	// of the reader). For a trail that ends before an expected hash
	// (VerifyOptions.Expect), it is the line after the last one.
	Line   int
	Reason string // what is wrong with it
}

// Error returns "kaizen: audit line N: " and the reason, or
// "kaizen: audit FILE:N: " and the reason when File is set.
func (e *AuditError) Error() string {
	if e.File != "" {
		return "kaizen: audit " + e.File + ":" + strconv.Itoa(e.Line) + ": " + e.Reason
	}
	return "kaizen: audit line " + strconv.Itoa(e.Line) + ": " + e.Reason
}

// Is reports whether target is ErrAuditTampered.
func (e *AuditError) Is(target error) bool { return target == ErrAuditTampered }

// MinAuditKeyLen is the shortest HMAC key AuditOptions.Key and
// VerifyOptions.Key accept, in bytes. Use 32 random bytes.
const MinAuditKeyLen = 16

// MaxAuditKeyFile is the most ReadAuditKeyFile reads of a key file, in
// bytes.
const MaxAuditKeyFile = 64 << 10

// ReadAuditKeyFile reads the HMAC key of an audit trail (AuditOptions.Key,
// VerifyOptions.Key) from the file name, used as stored: every byte is
// the key's, a trailing newline included. It returns an error when the
// file cannot be read, holds fewer than MinAuditKeyLen bytes, or holds
// more than MaxAuditKeyFile: a file given by mistake (the trail itself, or
// /dev/zero) is refused without being read whole.
func ReadAuditKeyFile(name string) ([]byte, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return readAuditKey(f, "audit key file "+name)
}

// ReadAuditKey is ReadAuditKeyFile for a key read from r (a program's
// standard input, say), within the same bounds: it reads at most
// MaxAuditKeyFile bytes and one more, to tell that r holds too many.
func ReadAuditKey(r io.Reader) ([]byte, error) {
	return readAuditKey(r, "audit key")
}

// readAuditKey reads a key from r; what names r in errors.
func readAuditKey(r io.Reader, what string) ([]byte, error) {
	key, err := io.ReadAll(io.LimitReader(r, MaxAuditKeyFile+1))
	switch {
	case err != nil:
		return nil, err
	case len(key) > MaxAuditKeyFile:
		return nil, fmt.Errorf("kaizen: %s holds more than %d bytes; it should hold the key alone", what, MaxAuditKeyFile)
	case len(key) < MinAuditKeyLen:
		return nil, fmt.Errorf("kaizen: %s holds %d bytes; the key needs at least %d", what, len(key), MinAuditKeyLen)
	}
	return key, nil
}

// VerifyOptions says how to verify an audit trail. The zero value verifies
// a trail written without a key that starts at GenesisHash, and does not
// look for an expected hash.
type VerifyOptions struct {
	// Genesis is the prev hash of the trail's first line, in hex: the
	// last hash of the trail it continues (AuditOptions.Genesis). Empty
	// means GenesisHash.
	Genesis string
	// Key is the HMAC key the trail was written with (AuditOptions.Key).
	// Nil means the trail was written without one and its hashes are
	// plain SHA-256. A non-nil Key must hold at least MinAuditKeyLen
	// bytes. A wrong key fails at the trail's first line.
	Key []byte
	// Expect, if set, is a hash in hex that must be in the trail: a hash
	// that Audit.Last returned and the service published somewhere the
	// trail's writer cannot change. The chain alone cannot tell that
	// lines were cut from its end; a published hash missing from the
	// trail can. The genesis counts as in the trail. Empty means no such
	// check.
	Expect string
}

// AuditSummary describes an audit trail that verified.
type AuditSummary struct {
	// Lines is the number of lines in the trail.
	Lines uint64
	// Last is the hash of the last line, in hex, or the genesis when the
	// trail has no line: the genesis of the file that continues it.
	Last string
}

// VerifyAudit reads an audit trail written without a key that starts at
// GenesisHash and checks every line: that it is a well-formed audit line,
// that its hash matches its content (so it was not edited), and that its
// prev is the hash of the line before it (so no line was deleted, inserted
// or moved). It returns a *AuditError naming the first line that fails and
// why, saying so when that line is a copy of the one before it or links to
// the genesis hash (a trail begun again by a writer that did not continue
// this one), or an I/O error from r. It is VerifyAuditWith with the zero VerifyOptions.
//
// A line's hash is of its bytes exactly, so a trail that an editor or a
// copy changed without touching its records does not verify: a blank
// line, a byte-order mark, CRLF line endings, whitespace around or
// between a line's fields. The *AuditError names the first line so
// changed and the change, and says whether every line of its file
// verifies with the changes undone, or names the next line that does not.
//
// A chain cannot tell that lines were cut from its end: keep the hash of
// the last line (Audit.Last) somewhere the trail's writer cannot change,
// and pass it as VerifyOptions.Expect. Nor, without a key, that it was
// rewritten: plain SHA-256 is a hash anyone can compute, so someone who
// can write the file can edit a line and rehash it and every line after
// it, or append lines, and the trail still verifies. A published hash
// shows that a rewrite replaced it; only AuditOptions.Key keeps the
// lines themselves from being forged.
func VerifyAudit(r io.Reader) error {
	_, err := VerifyAuditWith(r, VerifyOptions{})
	return err
}

// VerifyAuditFrom is VerifyAudit for a trail whose first line continues
// from genesis (AuditOptions.Genesis). It returns the hash of the last
// line, or genesis for an empty trail: the genesis of the next file.
func VerifyAuditFrom(r io.Reader, genesis string) (last string, err error) {
	var prev [sha256.Size]byte
	if err := decodeHash(genesis, &prev); err != nil {
		return "", fmt.Errorf("kaizen: VerifyAuditFrom: genesis %q: %w", genesis, err)
	}
	sum, err := VerifyAuditWith(r, VerifyOptions{Genesis: genesis})
	return sum.Last, err
}

// VerifyAuditWith verifies the audit trail read from r as VerifyAudit
// does, with the genesis, key and expected hash of opts. A last line
// without its newline verifies if it is complete; one cut short by a crash
// is a *AuditError (OpenAuditFile cuts it off before appending). So is a
// run of more than MaxAuditLineLen NUL bytes from r, unless r is an
// *os.File that is a regular file: NUL bytes in place of the last line's
// newline are what a file system that lost a write leaves, and a reader
// such as /dev/zero reads them without end. It returns the number of
// lines and the last hash, a *AuditError naming the first line that
// fails, an I/O error from r, or an error naming an invalid option.
func VerifyAuditWith(r io.Reader, opts VerifyOptions) (AuditSummary, error) {
	c, err := newChain(opts)
	if err != nil {
		return AuditSummary{}, err
	}
	end, err := c.read(r, "", nulBound(r))
	if err != nil {
		return AuditSummary{}, err
	}
	if err := c.end(end, ""); err != nil {
		return AuditSummary{}, err
	}
	return c.summary(), nil
}

// VerifyAuditFiles verifies files as one audit trail, in the order given:
// the first line of each file continues from the last line of the files
// before it (the first file from opts.Genesis), as when a service starts a
// new file with AuditOptions.Genesis set to the last hash of the one
// before. opts.Expect may be in any of the files. A file before the last
// may end in NUL bytes, in place of its last newline or after it, as a
// file system that lost the end of a write leaves them (OpenAuditFile
// repairs the last file only, and never writes a file rotated out): they
// are no line, and the next file continues from the line before them. A
// line cut short at the end of a file before the last is a *AuditError,
// as at the end of the last.
// It returns the number of lines in all the files and the last hash; a *AuditError naming the file
// and line of the first line that fails (files out of order or missing
// from the list fail at the first line of the file after the gap); an
// *fs.PathError when a file cannot be opened or read, is a symbolic link
// whose target does not exist (the error says so), or is neither a
// regular file nor a pipe (a device such as /dev/zero, which reads
// without end: refused before it is read); or an error naming an invalid
// option. A file given twice, by its name or another (a link), fails at
// the first line of the second, said to be given twice. A pipe (a FIFO, a
// shell's <(zcat FILE.gz)) is read as VerifyAuditWith reads a reader that
// is not a regular file; one that gives nothing is refused with an
// *fs.PathError: a file of a trail rotated out holds a line at least, and
// an empty pipe is what a zcat of one that failed gives.
func VerifyAuditFiles(opts VerifyOptions, paths ...string) (AuditSummary, error) {
	if len(paths) == 0 {
		return AuditSummary{}, errors.New("kaizen: VerifyAuditFiles: no file to verify")
	}
	c, err := newChain(opts)
	if err != nil {
		return AuditSummary{}, err
	}
	var end fileEnd
	for _, path := range paths {
		// Only the last file may end in a torn line. NUL bytes alone
		// are no line: the next file links to the line before them.
		if end.torn > 0 && !end.nulOnly {
			return AuditSummary{}, end.tornBeforeLastError()
		}
		if err := c.readFile(path, &end); err != nil {
			return AuditSummary{}, err
		}
	}
	if err := c.end(end, paths[len(paths)-1]); err != nil {
		return AuditSummary{}, err
	}
	return c.summary(), nil
}

// readFile verifies one file of a trail and sets end to how it ends.
func (c *chain) readFile(path string, end *fileEnd) error {
	// A pipe (a shell's <(zcat FILE.gz), a FIFO) is opened as any reader
	// of one opens it, waiting for its writer, and refused once it has
	// read more NUL bytes than a line holds. Anything else is opened
	// without waiting, and read only if regular (or a directory, whose
	// read fails): a device such as /dev/zero reads without end.
	fi, err := os.Stat(path) // if it fails, so does the open, saying why
	pipe := err == nil && fi.Mode().Type() == fs.ModeNamedPipe
	flag := os.O_RDONLY | openNonblock
	if pipe {
		flag = os.O_RDONLY
	}
	f, err := os.OpenFile(path, flag, 0)
	if err != nil {
		return explainDanglingLink(err, path)
	}
	defer f.Close()
	if fi, err = f.Stat(); err != nil {
		return err
	}
	maxNULs := 0
	switch {
	case pipe && fi.Mode().Type() == fs.ModeNamedPipe:
		maxNULs = MaxAuditLineLen
	case !fi.Mode().IsRegular() && !fi.IsDir():
		return &fs.PathError{Op: "open", Path: path, Err: errNotRegular(fi.Mode())}
	}
	c.given = append(c.given, givenFile{path, fi})
	before := c.lines
	*end, err = c.read(f, path, maxNULs)
	if err == nil && pipe && c.lines == before && end.torn == 0 {
		return &fs.PathError{Op: "read", Path: path, Err: errEmptyPipe}
	}
	return err
}

// errEmptyPipe is the error of a pipe of a trail that gave nothing.
var errEmptyPipe = errors.New("the pipe gave no line: whatever writes it (a zcat of an archived file) failed, or the file is empty (give it itself)")

// errNotRegular is the error of a trail file of mode m, which is not a
// regular file.
func errNotRegular(m fs.FileMode) error {
	kind := "a file of mode " + m.String()
	switch t := m.Type(); {
	case t&fs.ModeCharDevice != 0:
		kind = "a character device"
	case t&fs.ModeDevice != 0:
		kind = "a block device"
	case t&fs.ModeNamedPipe != 0:
		kind = "a named pipe"
	case t&fs.ModeSocket != 0:
		kind = "a socket"
	case t&fs.ModeDir != 0:
		kind = "a directory"
	}
	return errors.New("not a regular file but " + kind + ": an audit trail is a regular file")
}

// explainDanglingLink returns err, the error of opening path, saying so
// when path is a symbolic link whose target does not exist: the error
// alone says that a file listed in its directory does not exist.
func explainDanglingLink(err error, path string) error {
	var pe *fs.PathError
	if !errors.Is(err, fs.ErrNotExist) || !errors.As(err, &pe) {
		return err
	}
	target, lerr := os.Readlink(path)
	if lerr != nil {
		return err
	}
	pe.Err = fmt.Errorf("%w: it is a symbolic link to %s, which does not exist", pe.Err, target)
	return err
}

// chain checks audit lines one after the other.
type chain struct {
	prev    [sha256.Size]byte
	genesis [sha256.Size]byte // the prev of the trail's first line
	mac     hash.Hash         // HMAC-SHA256 with the key; nil without a key
	lines   uint64            // verified so far, in every file
	// expect is the hash that must be seen; expectMet once it is.
	expect    [sha256.Size]byte
	expectMet bool
	// file and line locate the last line read, for an error about the
	// trail's end; before names the last file before file that held a
	// line, the one a first line of file links to, if any (for
	// OpenAuditFile of a series, the file whose last hash is the genesis).
	file, before string
	line         int
	// lastGood is the number of the last line of file that verified, 0
	// before one; changed is the first line of file that an editor or a
	// copy changed (undress), if any, and changes the number of such
	// lines in file so far.
	lastGood int
	changed  *AuditError
	changes  int
	// given holds the files of VerifyAuditFiles read so far, file last.
	given []givenFile
}

// givenFile is a file of VerifyAuditFiles, by the name it was given.
type givenFile struct {
	name string
	fi   fs.FileInfo
}

// givenAgain returns the name under which the file read now, the last of
// c.given, was read before, or "".
func (c *chain) givenAgain() string {
	if len(c.given) == 0 {
		return ""
	}
	now := c.given[len(c.given)-1]
	for _, g := range c.given[:len(c.given)-1] {
		if g.name == now.name || os.SameFile(g.fi, now.fi) {
			return g.name
		}
	}
	return ""
}

func newChain(opts VerifyOptions) (*chain, error) {
	c := &chain{expectMet: opts.Expect == ""}
	if opts.Genesis != "" {
		if err := decodeHash(opts.Genesis, &c.prev); err != nil {
			return nil, fmt.Errorf("kaizen: VerifyOptions.Genesis %q: %w", opts.Genesis, err)
		}
		c.genesis = c.prev
	}
	if opts.Key != nil {
		if len(opts.Key) < MinAuditKeyLen {
			return nil, fmt.Errorf("kaizen: VerifyOptions.Key is %d bytes; it must hold at least %d", len(opts.Key), MinAuditKeyLen)
		}
		c.mac = hmac.New(sha256.New, opts.Key)
	}
	if !c.expectMet {
		if err := decodeHash(opts.Expect, &c.expect); err != nil {
			return nil, fmt.Errorf("kaizen: VerifyOptions.Expect %q: %w", opts.Expect, err)
		}
		c.expectMet = c.expect == c.prev
	}
	return c, nil
}

func (c *chain) summary() AuditSummary {
	return AuditSummary{Lines: c.lines, Last: hex.EncodeToString(c.prev[:])}
}

// fileEnd describes how a file (or reader) ended.
type fileEnd struct {
	// torn is the length of a last line without its newline that is not
	// a complete line: the start of a line whose write a crash cut
	// short. It is line number line of file.
	torn int
	file string
	line int
	// unterminated is set when the last line, complete and verified,
	// has no newline.
	unterminated bool
	// nulAfter is set when torn counts the NUL bytes that follow the
	// last line, complete and verified, in place of its newline.
	nulAfter bool
	// nulOnly is set when torn counts NUL bytes and nothing else.
	nulOnly bool
}

func (t fileEnd) tornError() error {
	if t.nulAfter {
		return &AuditError{File: t.file, Line: t.line, Reason: "NUL bytes follow the last line in place of its newline, " +
			"as a file system that lost the end of a write leaves them (OpenAuditFile cuts them off)"}
	}
	return &AuditError{File: t.file, Line: t.line, Reason: "not an audit line (malformed or truncated): " +
		"the last line is cut short, as a crash in the middle of a write leaves it (OpenAuditFile cuts it off)"}
}

// tornBeforeLastError is the error of a line cut short at the end of a
// file followed by others in VerifyAuditFiles, which OpenAuditFile, as it
// continues the last file alone, does not cut off.
func (t fileEnd) tornBeforeLastError() error {
	return &AuditError{File: t.file, Line: t.line, Reason: "not an audit line (malformed or truncated): " +
		"the last line is cut short, as a crash in the middle of a write leaves it, in a file before the last " +
		"(OpenAuditFile repairs only the last file of a trail, which it continues)"}
}

// read verifies the lines of one file, or of a reader, named file in
// errors, as lineReader.next reads them with maxNULs. A last line without
// its newline is verified when it is complete JSON, since only a complete
// line is; when it is not, but looksTorn, it is the start of a line cut
// short, returned as torn, or, when it is complete JSON but for the NUL
// bytes after it, a complete line, verified, whose newline and what
// followed a file system lost, returned with those bytes as torn;
// anything else, a whole JSON value with more after it among them, is
// verified, and fails, as a line.
//
// A line that an editor or a copy of the file changed (undress: a blank
// line, a byte-order mark, a CR or whitespace) does not verify, but does
// not stop the reading either: the rest of the file is read on, that
// line's record verified without the change, so that the error, which
// names the first such line, can say whether every line verifies without
// the changes, or which line does not verify either.
func (c *chain) read(r io.Reader, file string, maxNULs int) (fileEnd, error) {
	c.lastGood, c.changed, c.changes = 0, nil, 0
	end, err := c.readLines(r, file, maxNULs)
	if c.changed == nil {
		return end, err
	}
	return fileEnd{}, c.changedError(end, err)
}

// changedError returns c.changed, the first line of the file just read
// that an editor or a copy changed, its reason saying what else is wrong
// with the file, read to end with err: the line itself, without the
// change; a later line, cut short or not; a read that failed; or nothing,
// but that the file held no line that verified.
func (c *chain) changedError(end fileEnd, err error) error {
	e := c.changed
	if err == nil && end.torn > 0 && !end.nulOnly {
		err = end.tornError()
	}
	var ae *AuditError
	switch {
	case errors.As(err, &ae) && ae.Line == e.Line:
		e.Reason += "; without that, the line does not verify either: " + ae.Reason
	case errors.As(err, &ae):
		e.Reason += "; line " + strconv.Itoa(ae.Line) + " does not verify either: " + ae.Reason
	case err != nil:
		e.Reason += "; reading on failed: " + err.Error()
	case c.lastGood == 0:
		e.Reason += "; the file holds no audit line"
	case c.changes == 1:
		e.Reason += "; with that undone, every line verifies, but the file is not as it was written"
	default:
		e.Reason += fmt.Sprintf("; with that undone, and the like on %d more lines, every line verifies, but the file is not as it was written", c.changes-1)
	}
	return e
}

// readLines reads and verifies the lines of one file for read.
func (c *chain) readLines(r io.Reader, file string, maxNULs int) (fileEnd, error) {
	if c.line > 0 { // an empty file holds no hash the next one links to
		c.before = c.file
	}
	c.file, c.line = file, 0
	lr := lineReader{br: bufio.NewReaderSize(r, 64<<10), maxNULs: maxNULs}
	for {
		line, nuls, rerr := lr.next()
		n := c.line + 1
		if errors.Is(rerr, errLineTooLong) {
			return fileEnd{}, c.tooLong(file, n)
		}
		if errors.Is(rerr, errEndlessNULs) {
			return fileEnd{}, &AuditError{File: file, Line: n, Reason: fmt.Sprintf("not an audit line: more than %d NUL bytes (MaxAuditLineLen) "+
				"run on at its end, the most read from a reader that is not a regular file: the input reads without end, "+
				"as a device such as /dev/zero does, or is not a trail", maxNULs)}
		}
		if rerr != nil && rerr != io.EOF {
			if file != "" {
				return fileEnd{}, rerr // an *fs.PathError naming the file
			}
			return fileEnd{}, fmt.Errorf("kaizen: reading audit trail: %w", rerr)
		}
		if len(line) == 0 && nuls == 0 {
			return fileEnd{}, nil
		}
		if rerr == io.EOF && (nuls > 0 || !json.Valid(line)) && looksTorn(line) {
			whole := bytes.TrimRight(line, "\x00")
			if len(whole) < len(line)+nuls && json.Valid(whole) {
				if err := c.verify(whole, file, n); err != nil {
					return fileEnd{}, err
				}
				c.line = n
				return fileEnd{torn: len(line) + nuls - len(whole), file: file, line: n, unterminated: true, nulAfter: true, nulOnly: true}, nil
			}
			if !beginsWithValue(whole) {
				return fileEnd{torn: len(line) + nuls, file: file, line: n, nulOnly: len(whole) == 0}, nil
			}
			// A whole JSON value with more after it: not the start of a
			// line cut short, which a cut would lose with its record,
			// but a line that does not verify.
		}
		if nuls > 0 { // not what a crash leaves: a line too long, its end NULs
			return fileEnd{}, c.tooLong(file, n)
		}
		if err := c.verify(bytes.TrimSuffix(line, []byte{'\n'}), file, n); err != nil {
			return fileEnd{}, err
		}
		c.line = n
		if rerr == io.EOF {
			return fileEnd{unterminated: true}, nil
		}
	}
}

// tooLong is the error of line n of file, longer than MaxAuditLineLen.
func (c *chain) tooLong(file string, n int) error {
	return &AuditError{File: file, Line: n, Reason: fmt.Sprintf("not an audit line: it is longer than %d bytes (MaxAuditLineLen), the most an Audit writes", MaxAuditLineLen)}
}

// errLineTooLong is what lineReader.next returns for a line longer than
// MaxAuditLineLen.
var errLineTooLong = errors.New("kaizen: audit line too long")

// errEndlessNULs is what lineReader.next returns for a run of NUL bytes
// longer than its maxNULs.
var errEndlessNULs = errors.New("kaizen: audit trail ends in too many NUL bytes")

// nulBound returns the maxNULs of a trail read from r: none for a regular
// file, which ends, and MaxAuditLineLen for any other reader, which may
// read NUL bytes for ever (a device such as /dev/zero, a pipe from one).
func nulBound(r io.Reader) int {
	if f, ok := r.(*os.File); ok {
		if fi, err := f.Stat(); err == nil && fi.Mode().IsRegular() {
			return 0
		}
	}
	return MaxAuditLineLen
}

// lineReader reads the lines of a trail, holding at most MaxAuditLineLen
// bytes of one, so that a file holding one line of gigabytes (corrupt, or
// made to exhaust memory) is refused at its limit instead of read whole.
type lineReader struct {
	br  *bufio.Reader
	buf []byte
	// maxNULs, if not zero, is the most NUL bytes next counts in nuls:
	// past it, the trail is refused with errEndlessNULs instead of read
	// on for as long as it reads NUL bytes.
	maxNULs int
}

// next returns the next line, its newline included when it has one, and
// io.EOF at the end of the trail, as bufio.Reader.ReadBytes does; or
// errLineTooLong for a line longer than MaxAuditLineLen, of which it read
// a little more than that. NUL bytes that would take the last line over
// the limit, and that run to the end of the trail, are not held but
// counted in nuls: a file system that lost the end of a long write reads
// it back as NUL bytes, which OpenAuditFile cuts off whatever their
// number. More than maxNULs of them, when it is set, are errEndlessNULs.
func (lr *lineReader) next() (line []byte, nuls int, err error) {
	lr.buf = lr.buf[:0]
	for {
		if lr.maxNULs > 0 && nuls > lr.maxNULs {
			return nil, 0, errEndlessNULs
		}
		chunk, err := lr.br.ReadSlice('\n')
		if err != nil && err != bufio.ErrBufferFull {
			if nuls > 0 || len(lr.buf) > 0 || len(chunk) > 0 {
				if nuls > 0 && !allNUL(chunk) {
					return nil, 0, errLineTooLong
				}
				if nuls > 0 {
					nuls += len(chunk)
				} else if err := lr.hold(chunk, &nuls); err != nil {
					return nil, 0, err
				}
			}
			return lr.buf, nuls, err
		}
		if nuls > 0 {
			if err == nil || !allNUL(chunk) { // more than NULs after the limit
				return nil, 0, errLineTooLong
			}
			nuls += len(chunk)
			continue
		}
		if err == nil { // the chunk ends in the line's newline
			if len(lr.buf)+len(chunk)-1 > MaxAuditLineLen {
				return nil, 0, errLineTooLong
			}
			lr.buf = append(lr.buf, chunk...)
			return lr.buf, 0, nil
		}
		if err := lr.hold(chunk, &nuls); err != nil {
			return nil, 0, err
		}
	}
}

// hold appends chunk, a part of a line without its newline, to the line;
// when that takes it over MaxAuditLineLen, it holds the line without its
// trailing NUL bytes and counts them in nuls, or returns errLineTooLong
// when the line is too long without them.
func (lr *lineReader) hold(chunk []byte, nuls *int) error {
	if len(lr.buf)+len(chunk) <= MaxAuditLineLen {
		lr.buf = append(lr.buf, chunk...)
		return nil
	}
	text := bytes.TrimRight(chunk, "\x00")
	if len(text) == 0 {
		n := len(lr.buf)
		lr.buf = bytes.TrimRight(lr.buf, "\x00")
		*nuls += n - len(lr.buf)
	}
	if len(lr.buf)+len(text) > MaxAuditLineLen {
		return errLineTooLong
	}
	lr.buf = append(lr.buf, text...)
	*nuls += len(chunk) - len(text)
	return nil
}

// allNUL reports whether b holds only NUL bytes.
func allNUL(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// beginsWithValue reports whether b, which begins as a line does, begins
// with a whole JSON object. A line whose write was cut short does not: the
// object it begins ends only with the line. It reads b once and holds
// nothing of it.
func beginsWithValue(b []byte) bool {
	end := -1
	walkNesting(b, func(i, depth int) bool {
		if depth == 0 {
			end = i
			return false
		}
		return true
	})
	return end >= 0 && json.Valid(b[:end+1])
}

// walkNesting calls f at each bracket of JSON text b outside its strings
// ('{', '[', '}', ']'), with its index and the depth of nesting after it,
// until f returns false.
func walkNesting(b []byte, f func(i, depth int) bool) {
	depth, inString := 0, false
	for i := 0; i < len(b); i++ {
		switch c := b[i]; {
		case inString:
			if c == '\\' {
				i++
			} else if c == '"' {
				inString = false
			}
		case c == '"':
			inString = true
		case c == '[' || c == '{':
			depth++
			if !f(i, depth) {
				return
			}
		case c == ']' || c == '}':
			depth--
			if !f(i, depth) {
				return
			}
		}
	}
}

// lineStart is how every line an Audit writes begins.
const lineStart = `{"time":"`

// looksTorn reports whether b, a last line without its newline, can be
// what a crash in the middle of its write left: the start of a line,
// possibly followed by the NUL bytes a file system that lost the write's
// data reads back, or those NUL bytes alone. Text that does not begin as
// a line does was never written by an Audit (a file that is not a trail,
// or something appended to one), and is not cut off as torn.
func looksTorn(b []byte) bool {
	b = bytes.TrimRight(b, "\x00")
	n := min(len(b), len(lineStart))
	return string(b[:n]) == lineStart[:n]
}

// end checks the trail as a whole once every line is read: it must not
// end in a torn line, and must hold the expected hash.
func (c *chain) end(end fileEnd, file string) error {
	if end.torn > 0 {
		return end.tornError()
	}
	if !c.expectMet {
		return &AuditError{File: file, Line: c.line + 1, Reason: "the trail ends without the expected hash " +
			hex.EncodeToString(c.expect[:]) + ": lines were cut from its end, or the hash is not from this trail"}
	}
	return nil
}

const (
	hashSuffixLen = len(`,"hash":"`) + 2*sha256.Size + len(`"}`)
	prevSuffixLen = len(`,"prev":"`) + 2*sha256.Size + len(`"`)
)

// verify checks line n of file against the hash of the line before it
// and, when it verifies, makes its hash the one the next line links to.
// A line that does not verify because an editor or a copy changed it
// (undress) is noted as c.changed, and its record verified without the
// change; a blank one is no line.
func (c *chain) verify(line []byte, file string, n int) error {
	actual, reason := c.check(line, file, n)
	if reason != "" {
		core, what := undress(line, n)
		if what == "" {
			return &AuditError{File: file, Line: n, Reason: reason}
		}
		if c.changed == nil {
			c.changed = &AuditError{File: file, Line: n, Reason: what}
		}
		c.changes++
		if len(core) == 0 {
			return nil
		}
		if actual, reason = c.check(core, file, n); reason != "" {
			return &AuditError{File: file, Line: n, Reason: reason}
		}
	}
	c.prev = actual
	c.lines++
	c.lastGood = n
	if !c.expectMet && actual == c.expect {
		c.expectMet = true
	}
	return nil
}

// check returns the hash of line n of file, and "" when it verifies
// against the hash of the line before it, or why it does not.
func (c *chain) check(line []byte, file string, n int) (actual [sha256.Size]byte, reason string) {
	const malformed = "not an audit line (malformed or truncated)"
	// A whole JSON value is not a line cut short; a line's end is tried
	// only on one.
	const noRecord = malformed + ": it is whole JSON, but no audit record: it does not end in the prev and hash an audit line ends with"
	if !json.Valid(line) {
		if bytes.IndexByte(line, 0) >= 0 {
			if rest := bytes.TrimLeft(line, "\x00"); len(rest) == 0 || bytes.HasPrefix(rest, []byte(lineStart)) {
				return actual, malformed + ": it holds NUL bytes, which an Audit never writes: " +
					"the file system lost data written there (a crash), or something overwrote the file"
			}
		}
		return actual, malformed
	}
	if len(line) < hashSuffixLen+prevSuffixLen+2 {
		return actual, noRecord
	}
	cut := len(line) - hashSuffixLen
	suffix := line[cut:]
	if !bytes.HasPrefix(suffix, []byte(`,"hash":"`)) || !bytes.HasSuffix(suffix, []byte(`"}`)) {
		return actual, noRecord
	}
	var stated [sha256.Size]byte
	if !decodeLowerHex(stated[:], suffix[len(`,"hash":"`):len(`,"hash":"`)+2*sha256.Size]) {
		return actual, malformed + ": its hash is not 64 digits of lower-case hex, as an Audit writes it"
	}
	body := line[:cut]
	ps := body[len(body)-prevSuffixLen:]
	if !bytes.HasPrefix(ps, []byte(`,"prev":"`)) || ps[len(ps)-1] != '"' {
		return actual, noRecord
	}
	var linked [sha256.Size]byte
	if !decodeLowerHex(linked[:], ps[len(`,"prev":"`):len(ps)-1]) {
		return actual, malformed + ": its prev is not 64 digits of lower-case hex, as an Audit writes it"
	}
	actual = lineHash(c.mac, body)
	if actual != stated {
		return actual, c.mismatch(body, stated)
	}
	if linked != c.prev {
		if c.lines == 0 && c.before == "" {
			return actual, "its prev hash is not the genesis hash: the trail does not start here"
		}
		return actual, c.unlinked(linked, actual, file)
	}
	return actual, ""
}

// bom is a byte-order mark (U+FEFF) in UTF-8.
const bom = "\ufeff"

// undress returns line n of a file without what an editor or a copy of
// the file adds to a line and an Audit never writes: a byte-order mark
// at its start, a CR at its end (CRLF line endings), whitespace around
// its JSON or between its fields (none in its strings); and what says
// what was taken, "" for nothing. A line that is blank, or whitespace
// alone, is nothing: core is empty. Only a line that then begins as an
// audit line does is taken to be one changed so: other text (a file that
// is not a trail) is returned as it is, with what "".
func undress(line []byte, n int) (core []byte, what string) {
	const written = ", which an Audit never writes: "
	if len(bytes.Trim(line, " \t\r")) == 0 {
		return nil, "the line is blank, which no audit line is: one was added (by an editor, or by joining files), or a line's text was erased"
	}
	orig := line
	defer func() {
		if !bytes.HasPrefix(core, []byte(lineStart)) {
			core, what = orig, ""
		}
	}()
	var whats []string
	if rest, ok := bytes.CutPrefix(line, []byte(bom)); ok {
		line = rest
		if n == 1 {
			whats = append(whats, "the file begins with a byte-order mark (U+FEFF)"+written+"an editor saved it as UTF-8 with a BOM")
		} else {
			whats = append(whats, "the line begins with a byte-order mark (U+FEFF)"+written+"a file that began with one was joined to the lines before it")
		}
	}
	if rest, ok := bytes.CutSuffix(line, []byte{'\r'}); ok {
		line = rest
		whats = append(whats, "the line ends in CR (CRLF line endings: the file was converted, by a Windows editor or a transfer in text mode; "+
			"convert it back with dos2unix, or sed 's/\\r$//')")
	}
	if rest := bytes.TrimLeft(line, " \t"); len(rest) < len(line) {
		line = rest
		whats = append(whats, "the line begins with whitespace"+written+"an editor or a copy added it")
	}
	if rest := bytes.TrimRight(line, " \t"); len(rest) < len(line) {
		line = rest
		whats = append(whats, "the line has trailing whitespace"+written+"an editor or a copy added it")
	}
	var compact bytes.Buffer
	if json.Valid(line) && json.Compact(&compact, line) == nil && compact.Len() < len(line) {
		line = compact.Bytes()
		whats = append(whats, "the line has whitespace between its fields"+written+"it was reformatted")
	}
	return line, strings.Join(whats, "; ")
}

// unlinked explains a line of file, which verified on its own but whose
// prev hash linked is not the hash of the line before it (line
// c.lastGood, or the last line of c.before when none of file verified; a
// blank line between them is no line), after a first line that verified.
// The causes the chain cannot tell apart are named; then, when the line shows which it is, that one: a prev that is a
// genesis hash (a trail begun again, by a writer that did not continue
// this one), or a line that is a copy of the one before it.
func (c *chain) unlinked(linked, actual [sha256.Size]byte, file string) string {
	var reason, before string
	n := c.lastGood + 1 // blank lines between them are no line
	if n == 1 {
		reason = "its prev hash is not the last hash of " + c.before + ": "
		switch again := c.givenAgain(); {
		case again == file:
			return reason + file + " is given twice: each file of a trail is given once"
		case again != "":
			return reason + file + " is the file " + again + " given before: each file of a trail is given once"
		}
		reason += "the files are out of order, one is missing between them, or " + c.before + " was cut short"
		before = "the last line of " + c.before
	} else {
		reason = "its prev hash is not the hash of line " + strconv.Itoa(n-1) +
			": a line was deleted, inserted or moved before it, or line " + strconv.Itoa(n-1) + " was edited and rehashed"
		before = "line " + strconv.Itoa(n-1)
	}
	switch {
	case actual == c.prev:
		reason += "; it is a copy of " + before
	case (linked == c.genesis || linked == [sha256.Size]byte{}) && n == 1:
		reason += "; it is the genesis hash: " + file + " begins a trail of its own, " +
			"as a file written without AuditOptions.Genesis set to the last hash of the one before does"
	case linked == c.genesis || linked == [sha256.Size]byte{}:
		reason += "; it is the genesis hash, which only a trail's first line links to: a trail begins again here, " +
			"as one written by an Audit that did not continue this one (NewAudit on a file that held a trail, rather than OpenAuditFile) begins"
	}
	return reason
}

// decodeLowerHex decodes src, hex as an Audit writes it, into dst, and
// reports whether it was. hex.Decode alone also reads upper-case digits:
// a line whose hash was rewritten in upper case would verify, although it
// is not the text the Audit wrote and no longer equals, as a string, the
// prev of the line after it.
func decodeLowerHex(dst, src []byte) bool {
	for _, c := range src {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	_, err := hex.Decode(dst, src)
	return err == nil
}

// mismatch explains a line of a file whose hash does not match its
// content. Before a line of the file verified (at its first line), a
// wrong key or a missing one looks the same as an edit, so the reason says
// so: at the trail's first line,
// and at that of a later file, which may have been written with another
// key than the files before it (a key added, changed or dropped when the
// file was begun).
func (c *chain) mismatch(body []byte, stated [sha256.Size]byte) string {
	const edited = "edited: its hash does not match its content"
	if c.lastGood > 0 { // an earlier line of the file verified, so the key is right
		return edited
	}
	written := "the trail was"
	if c.lines > 0 {
		written = "this file was"
	}
	if c.mac == nil {
		return edited + " (or " + written + " written with a key: verify it with that key)"
	}
	if lineHash(nil, body) == stated {
		return "its hash is plain SHA-256, not an HMAC: " + written + " written without a key, but a key was given"
	}
	return "its hash does not match its content under the given key: the key is wrong, or the line was edited"
}

// lineHash is the hash of a line: SHA-256, or HMAC-SHA256 when mac is set,
// of the line's body closed with "}".
func lineHash(mac hash.Hash, body []byte) [sha256.Size]byte {
	var sum [sha256.Size]byte
	if mac == nil {
		h := sha256.New()
		h.Write(body)
		h.Write([]byte{'}'})
		h.Sum(sum[:0])
		return sum
	}
	mac.Reset()
	mac.Write(body)
	mac.Write([]byte{'}'})
	mac.Sum(sum[:0])
	return sum
}

// MaxAuditLineLen is the most bytes a line of an audit trail holds, its
// newline not counted: an Audit does not write a longer line (the record
// goes to AuditOptions.OnUnwritten), and VerifyAudit, VerifyAuditFiles and
// OpenAuditFile refuse one as a line that does not verify, having held no
// more than this much of it in memory. A line is a few hundred bytes, a few
// KiB with a decision's inputs; the limit leaves room for inputs far
// larger, and is the longest line taicel.Backtest reads.
const MaxAuditLineLen = 64 << 20
