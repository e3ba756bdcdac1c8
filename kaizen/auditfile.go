package kaizen

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
)

// ErrAuditFileInUse is wrapped by the error OpenAuditFile returns for a
// file another Audit, in this process or another, is appending to; and,
// with AuditOptions.RotateBytes, by Err of an Audit that stopped because
// another one took the next file of its series first.
var ErrAuditFileInUse = errors.New("kaizen: audit trail file in use")

// AuditFileState is what OpenAuditFile found in the file and what it
// repaired before appending.
type AuditFileState struct {
	// File is the file appended to: the path given, or with
	// AuditOptions.RotateBytes the last file of its series.
	File string
	// AuditSummary holds the number of lines the file held and the
	// hash of the last one (AuditOptions.Genesis, or GenesisHash, for a
	// file with none): the new lines continue from it.
	AuditSummary
	// Cut is the number of bytes cut from the end of the file: a last
	// line without its newline that is not a complete line, which a
	// crash in the middle of a write leaves; it was never a complete
	// record (a line is written whole or the Audit reports it unwritten).
	// Or the NUL bytes that follow a complete last line in place of its
	// newline, as a file system that lost the end of a write leaves
	// them; the line is kept, and NewlineAdded set. Zero when the file
	// ended with a complete line.
	Cut int64
	// NewlineAdded reports that the last line was complete and verified
	// but had no newline; OpenAuditFile added one.
	NewlineAdded bool
}

// OpenAuditFile opens the audit trail file at path and starts an Audit
// that appends to it, continuing its hash chain, so that a service keeps
// one trail across restarts. The file is created with mode 0600 if it
// does not exist, and opened for appending (O_APPEND).
//
// Before appending, it verifies every line of the file, from
// opts.Genesis and with opts.Key, as VerifyAuditWith does:
//
//   - A complete line that does not verify (edited, deleted, inserted,
//     moved; or a wrong key) is refused: OpenAuditFile returns the
//     *AuditError naming the file and line, and leaves the file as it is.
//   - A last line cut short by a crash in the middle of a write is cut
//     off, since it was never a complete record; a complete last line
//     missing only its newline gets one, and one followed by NUL bytes
//     instead (a file system that lost the end of a write) has them cut
//     off and gets one. The repairs are synced to disk before the Audit
//     starts, reported in the returned AuditFileState and logged at level
//     Warn on opts.Logger.
//   - A last line without its newline that neither begins as an audit
//     line begins ({"time":") nor is the NUL bytes a file system that
//     lost a write reads back was not written by an Audit: it is refused
//     as a line that does not verify, and the file left as it is. So is
//     one that holds a whole line and then more than NUL bytes: a crash
//     cuts a line short, and never writes past its end.
//
// The file is synced before the Audit starts, repaired or not: a process
// that ended between its writes and its next Flush may have left its
// last lines in the operating system's cache alone, and Audit.Last starts
// at the file's last hash and line count, reported durable. The file's
// directory is synced too (that of the file a symbolic link path leads
// to), so that a new file's name is as durable as its lines; the
// directory must be readable for that. The Audit owns the file: Flush and
// Shutdown sync it, and Shutdown closes it.
//
// Only one Audit may append to a file at a time: OpenAuditFile takes an
// exclusive lock on the file (flock), which Shutdown releases as it closes
// the file, and while another Audit, in this process or another, holds it,
// fails with an error wrapping ErrAuditFileInUse and leaves the file as it
// is. On a file system that cannot lock, the file is opened without a lock
// and that is logged at level Warn; Windows and systems without flock have
// no lock.
//
// A file is read in full at open. To keep that short, set
// AuditOptions.RotateBytes: the trail then goes on in a series of files,
// path, path.000001, path.000002, ..., each begun once the one before
// holds RotateBytes, and OpenAuditFile appends to the last of the series
// that exists, verifying it alone, from the last hash of the file before
// (passing over files before it that hold no line; or, when the
// file before has been archived away with every older numbered one, from
// the prev of its own first line). A last file that is not shown to be
// the series' own is refused, not appended to, with an error naming it
// and why: one that does not continue the file before it (a *AuditError
// at its first line); one that follows a gap, its file before missing
// while an older numbered one is there, which rotation never leaves (a stray file
// named as the series', or files archived out of order: archive them
// oldest first); and one whose first line links to a genesis hash, which
// begins a trail of its own. VerifyAuditFiles, or `taikit audit verify
// path*` (the names sort in the trail's order up to path.999999, and the
// pattern must match no other file), verifies the series as one chain;
// once its first files are archived away, from the prev of the first
// line of the first file left (VerifyOptions.Genesis, -genesis); path
// itself, kept while numbered files after it are archived, no longer
// leads to the numbered files left, which are then verified without it
// (path.[0-9]*), and it alone. The lock is taken on the last file: one
// rotated out while OpenAuditFile was opening it is not appended to, and
// an Audit whose next file another one opened and locked before it did
// stops its trail there, with an Err
// wrapping ErrAuditFileInUse. A trail of one file that grows past
// RotateBytes goes on in path.000001.
// Without RotateBytes, rotate by hand: a new file, with
// AuditOptions.Genesis set to the last hash of the one before.
//
// path itself is created if it does not exist, through a symbolic link
// too; a numbered file of the series is never created by an open: one
// that is a symbolic link whose target does not exist is refused, its
// target not created, with an *fs.PathError (wrapped) that says so.
//
// It returns an error naming the first invalid option before touching the
// file; an error wrapping ErrAuditFileInUse; a *AuditError; an
// *fs.PathError when the file or its directory cannot be opened, read,
// repaired or synced; an error saying path, or a file of its series, is
// not a regular file; or, with RotateBytes, one naming a file of the
// series that cannot be the one to append to, and why.
func OpenAuditFile(path string, opts AuditOptions) (*Audit, AuditFileState, error) {
	a, err := newAudit(opts)
	if err != nil {
		return nil, AuditFileState{}, err
	}
	var (
		rot       rotation
		f         *os.File
		lockErr   error
		continues string // the file whose last hash path's first line continues from
	)
	first, genesis := path, opts.Genesis
	for {
		if opts.RotateBytes > 0 {
			rot = rotation{first: first, every: opts.RotateBytes, next: opts.RotateBytes}
			if path, opts.Genesis, rot.n, continues, err = seriesHead(first, genesis); err != nil {
				return nil, AuditFileState{}, err
			}
			if seriesListed != nil {
				seriesListed()
			}
		}
		// Only path itself is created: a numbered file is listed, so it
		// exists, and one that opens as missing is a symbolic link to no
		// file, whose target an open that creates would make, wherever
		// it points, and append the trail to.
		flags := os.O_RDWR | os.O_APPEND
		if rot.n == 0 {
			flags |= os.O_CREATE
		}
		if f, err = os.OpenFile(path, flags, 0o600); err != nil {
			return nil, AuditFileState{}, fmt.Errorf("kaizen: OpenAuditFile: %w", explainDanglingLink(err, path))
		}
		var held bool
		if held, lockErr = lockFile(f); held {
			f.Close()
			return nil, AuditFileState{}, fmt.Errorf("%w: %s is appended to by another Audit, in this process or another", ErrAuditFileInUse, path)
		}
		// An Audit makes (and locks) the next file before it lets go of
		// the current one: a file with no next one, once locked, is the
		// series' last for good. One that has a next one was rotated out
		// since the listing, and is never written again.
		if rot.every == 0 || !seriesHas(first, rot.n+1) {
			break
		}
		f.Close()
	}
	state, err := resume(f, path, opts, continues, &a.prev)
	if err == nil {
		// Make the file's name durable before its lines: a file whose
		// directory entry a crash loses takes the trail with it. (Done
		// on every open, not only when the file is created, so that an
		// open that fails here fails the same way when retried.)
		err = syncDir(nameDir(path))
	}
	if err != nil {
		f.Close()
		return nil, AuditFileState{}, err
	}
	log := auditLogger(opts)
	if lockErr != nil {
		log.Warn("kaizen: audit trail file cannot be locked; nothing keeps a second Audit from appending to it",
			"file", path, "error", lockErr)
	}
	switch {
	case state.Cut > 0 && state.NewlineAdded:
		log.Warn("kaizen: audit trail's last line was followed by NUL bytes; cut them off",
			"file", path, "line", state.Lines, "bytes", state.Cut)
	case state.Cut > 0:
		log.Warn("kaizen: audit trail ended in a line cut short; cut it off",
			"file", path, "line", state.Lines+1, "bytes", state.Cut)
	case state.NewlineAdded:
		log.Warn("kaizen: audit trail's last line had no newline; added one", "file", path, "line", state.Lines)
	}
	if rot.every > 0 {
		if rot.size, err = f.Seek(0, io.SeekEnd); err != nil {
			f.Close()
			return nil, AuditFileState{}, fmt.Errorf("kaizen: OpenAuditFile: %w", err)
		}
		// The next files are made where the series is now: a relative
		// path would follow a later change of the working directory,
		// and the trail go on in a directory no restart looks in.
		if rot.first, err = filepath.Abs(rot.first); err != nil {
			f.Close()
			return nil, AuditFileState{}, fmt.Errorf("kaizen: OpenAuditFile: %w", err)
		}
		a.rot = rot
	}
	a.start(f, f, state.Lines)
	state.File = path
	return a, state, nil
}

// seriesListed and nextCreated, when a test sets them, run once
// OpenAuditFile has listed the files of a series, before it opens the
// last one, and once rotate has made the next file, before it locks it.
var seriesListed, nextCreated func()

// edgeOpening, when a test sets it, runs as edgeHash opens a file of a
// series to read the hash at one of its ends.
var edgeOpening func(path string)

// dirSyncing, when a test sets it, runs as syncDir syncs a directory;
// fileSyncing, as OpenAuditFile syncs the file it appends to.
var dirSyncing, fileSyncing func(path string)

// rotation is where an Audit of OpenAuditFile with RotateBytes stands in
// its series of files.
type rotation struct {
	first string // the series' first file, the path given
	n     int    // the current file's number; 0 for first
	every int64  // RotateBytes
	size  int64  // bytes the current file holds
	next  int64  // the size at which the next rotation is tried
}

// seriesName is the name of file n of the series that begins with first.
func seriesName(first string, n int) string {
	if n == 0 {
		return first
	}
	return fmt.Sprintf("%s.%06d", first, n)
}

// seriesHas reports whether file n of first's series exists, as
// seriesNumbers counts it.
func seriesHas(first string, n int) bool {
	fi, err := os.Lstat(seriesName(first, n))
	return err == nil && !fi.IsDir()
}

// seriesNumbers returns the numbers of the files of first's series that
// exist, in order: 0 for first itself, then path.000001 and on.
func seriesNumbers(first string) ([]int, error) {
	dir, base := filepath.Split(first)
	if dir == "" {
		dir = "."
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("kaizen: OpenAuditFile: listing the trail's files: %w", err)
	}
	var ns []int
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() {
			continue
		}
		if name == base {
			ns = append(ns, 0)
			continue
		}
		digits, ok := strings.CutPrefix(name, base+".")
		if !ok || len(digits) < 6 || strings.Trim(digits, "0123456789") != "" {
			continue
		}
		// Only the spelling seriesName gives: path.0000001 is not file 1.
		if n, err := strconv.Atoi(digits); err == nil && n > 0 && filepath.Base(seriesName(first, n)) == name {
			ns = append(ns, n)
		}
	}
	slices.Sort(ns)
	return ns, nil
}

// seriesHead returns the file of first's series to append to, the last
// one, with the hash its first line continues from, its number, and the
// file that hash is the last hash of, if any. That hash is the last hash
// of the file numbered before it (continues), or, when that one holds no
// line, of the newest file before it that holds one (first itself
// included), none missing between them; when no such file holds a line,
// or the file before is gone together with every older numbered one
// (archived away; first itself may be kept), the prev of the current
// file's own first line; for first itself, genesis.
//
// A last file that nothing shows to be the series' own is refused, not
// appended to: one whose file before is missing while an older numbered
// one is there (a gap, which rotation never leaves: a stray file named as the
// series', or files archived out of order), and one whose first line
// links to a genesis hash, which begins a trail of its own. The error
// names the file and why.
func seriesHead(first, genesis string) (path, from string, n int, continues string, err error) {
	ns, err := seriesNumbers(first)
	if err != nil || len(ns) == 0 || ns[len(ns)-1] == 0 {
		return first, genesis, 0, "", err
	}
	n = ns[len(ns)-1]
	path = seriesName(first, n)
	if len(ns) > 1 {
		before := seriesName(first, n-1)
		// path itself kept while numbered files are archived (a clean-up
		// of path.*) leaves a gap after it, and the last file goes on from
		// its own first line. A numbered file kept before a gap is one that
		// rotation and archiving oldest first never leave.
		if older := ns[len(ns)-2]; older != n-1 && older > 0 {
			missing := before + " between them is"
			if older < n-2 {
				missing = seriesName(first, older+1) + " to " + before + " between them are"
			}
			return "", "", 0, "", fmt.Errorf("kaizen: OpenAuditFile: %s follows %s, but %s missing, a gap rotation never leaves: "+
				"%s is a stray file, or the files before it were archived out of order; it is not appended to: "+
				"move it away if it is not a file of this trail, or archive %s and the files before it if it is",
				path, seriesName(first, older), missing, path, seriesName(first, older))
		}
		// The last file continues the newest file before it that holds a
		// line, none missing between them. Rotation goes on from a file
		// only once it holds a line, so a numbered file before the last
		// that holds none (a crash right after a rotation leaves the next
		// file empty; a stray may be named as the one after it) does not
		// make the last file go on from its own first line: it is passed
		// over, and the last file checked against the one before it,
		// path itself too. A gap ends the search: one after path is what
		// archiving leaves while path is kept.
		for i, m := len(ns)-2, n-1; i >= 0 && ns[i] == m; i, m = i-1, m-1 {
			prev := seriesName(first, m)
			from, found, err := edgeHash(prev, false)
			if err != nil {
				return "", "", 0, "", err
			}
			if found {
				return path, from, n, prev, nil
			}
		}
	}
	from, found, err := edgeHash(path, true)
	if err != nil {
		return "", "", 0, "", err
	}
	if !found {
		return "", "", 0, "", fmt.Errorf("kaizen: OpenAuditFile: %s holds no complete line, and the file before it is gone or holds none: "+
			"the hash its first line continues from is unknown", path)
	}
	if from == GenesisHash || strings.EqualFold(from, genesis) {
		return "", "", 0, "", fmt.Errorf("kaizen: OpenAuditFile: %s begins a trail of its own (the prev of its first line is the genesis hash), "+
			"so it continues no file of %s's series; it is not appended to: move it away", path, first)
	}
	return path, from, n, "", nil
}

// edgeHash reads, from the trail file at path, the hash of its last
// complete line or, with first, the prev of its first line; found is
// false for a file without a complete line. A complete line is one that
// ends in its newline or, at the end of the file, a whole JSON value
// without it, possibly followed by NUL bytes: what OpenAuditFile keeps
// and ends of a file's last line. NUL bytes that end a file, after its
// last newline, are no line. Lines are not verified: the file's own
// verification (OpenAuditFile's of the file after it, or
// VerifyAuditFiles) does that.
func edgeHash(path string, first bool) (hash string, found bool, err error) {
	if edgeOpening != nil {
		edgeOpening(path)
	}
	// Opened without waiting, and read only if regular: a plain open of
	// a FIFO waits for a writer, and a look at the name before the open
	// can see another file than the one opened.
	f, err := os.OpenFile(path, os.O_RDONLY|openNonblock, 0)
	if err != nil {
		return "", false, fmt.Errorf("kaizen: OpenAuditFile: %w", explainDanglingLink(err, path))
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return "", false, fmt.Errorf("kaizen: OpenAuditFile: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return "", false, fmt.Errorf("kaizen: OpenAuditFile: %s is not a regular file (%s)", path, fi.Mode().Type())
	}
	var line []byte
	if first {
		line, err = firstLine(f, path)
	} else {
		line, err = lastLine(f)
	}
	if err != nil || line == nil {
		return "", false, err
	}
	var e struct{ Prev, Hash string }
	if err := json.Unmarshal(line, &e); err != nil {
		// Named as VerifyAuditFiles names it, when an editor or a copy
		// changed the line: not as JSON that does not parse.
		which, n := "last", 2 // a line after the first, as far as undress is concerned
		if first {
			which, n = "first", 1
		}
		if _, what := undress(bytes.TrimSuffix(line, []byte{'\n'}), n); what != "" {
			return "", false, fmt.Errorf("kaizen: OpenAuditFile: %s: its %s line: %s", path, which, what)
		}
		return "", false, fmt.Errorf("kaizen: OpenAuditFile: %s: a line that is not an audit line: %w", path, err)
	}
	hash = e.Hash
	if first {
		hash = e.Prev
	}
	var h [sha256.Size]byte
	if err := decodeHash(hash, &h); err != nil {
		return "", false, fmt.Errorf("kaizen: OpenAuditFile: %s: a line's hash %q: %w", path, hash, err)
	}
	return hash, true, nil
}

// firstLine returns the first complete line of the trail file f, named
// path, or nil when it has none: a line cut short, or no line.
func firstLine(f *os.File, path string) ([]byte, error) {
	lr := lineReader{br: bufio.NewReaderSize(f, 64<<10)}
	line, _, err := lr.next()
	switch {
	case errors.Is(err, errLineTooLong):
		return nil, (&chain{}).tooLong(path, 1)
	case err == nil:
		return line, nil
	case err != io.EOF:
		return nil, fmt.Errorf("kaizen: OpenAuditFile: %w", err)
	}
	// The file's only line, without its newline: complete when it is a
	// whole JSON value, with or without the NUL bytes in place of its
	// newline that a file system that lost the end of a write leaves.
	if line = bytes.TrimRight(line, "\x00"); len(line) > 0 && json.Valid(line) {
		return line, nil
	}
	return nil, nil
}

// lastLine returns the last complete line of f, read backwards from its
// end, or nil when it has none. A last line without its newline is
// complete when it is a whole JSON value, as VerifyAuditFiles takes it.
// The NUL bytes that end a file whose file system lost the end of a write,
// in place of the last newline or after it, are no line: they are passed
// over, however many, and the line before them is the last.
func lastLine(f *os.File) ([]byte, error) {
	end, err := textEnd(f)
	if err != nil {
		return nil, fmt.Errorf("kaizen: OpenAuditFile: %w", err)
	}
	var tail []byte
	for chunk := int64(64 << 10); ; chunk *= 2 {
		from := max(end-chunk, 0)
		tail = make([]byte, end-from)
		if _, err := f.ReadAt(tail, from); err != nil {
			return nil, fmt.Errorf("kaizen: OpenAuditFile: %w", err)
		}
		// The last complete line ends at the last newline and begins
		// after the one before it; or it is what follows the last
		// newline, when that is a whole line without its newline.
		stop := bytes.LastIndexByte(tail, '\n')
		if stop >= 0 || from == 0 {
			if rest := tail[stop+1:]; len(rest) > 0 && json.Valid(rest) {
				return rest, nil
			}
		}
		if stop < 0 && from == 0 {
			return nil, nil
		}
		if stop >= 0 {
			if start := bytes.LastIndexByte(tail[:stop], '\n'); start >= 0 || from == 0 {
				return tail[start+1 : stop], nil
			}
		}
		if from == 0 || chunk > MaxAuditLineLen {
			return nil, fmt.Errorf("kaizen: OpenAuditFile: %s: no line end in its last %d bytes", f.Name(), len(tail))
		}
	}
}

// textEnd returns the size of f without the NUL bytes that end it.
func textEnd(f *os.File) (int64, error) {
	end, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return 0, err
	}
	buf := make([]byte, 64<<10)
	for end > 0 {
		b := buf[:min(end, int64(len(buf)))]
		if _, err := f.ReadAt(b, end-int64(len(b))); err != nil {
			return 0, err
		}
		for i := len(b) - 1; i >= 0; i-- {
			if b[i] != 0 {
				return end - int64(len(b)) + int64(i) + 1, nil
			}
		}
		end -= int64(len(b))
	}
	return 0, nil
}

// rotate, once the current file holds RotateBytes, syncs it and goes on
// in the next file of the series. A next file that cannot be made is
// logged, and the Audit goes on in the current one and tries again once
// it holds as much again: the trail never has a gap. One that another
// Audit locked first stops the trail, as a failed write does.
func (a *Audit) rotate() {
	a.sync()
	if a.Err() != nil {
		return
	}
	cur, next := seriesName(a.rot.first, a.rot.n), seriesName(a.rot.first, a.rot.n+1)
	f, err := createNext(next)
	if errors.Is(err, ErrAuditFileInUse) {
		// Another Audit opened the next file between its making and its
		// lock, and continues the chain there from this file's last
		// line: a line more here would fork it.
		a.fail(fmt.Errorf("kaizen: rotating audit trail: %w; another Audit appends to the trail", err))
		a.log.Error("kaizen: audit trail taken over by another Audit; this one stops", "file", cur, "next", next)
		return
	}
	if err != nil {
		a.rot.next = a.rot.size + a.rot.every
		a.log.Warn("kaizen: audit trail not rotated; appending to the current file", "file", cur, "next", next, "error", err)
		return
	}
	old := a.closer
	a.w, a.syncer, a.closer = f, f, f
	a.rot.n++
	a.rot.size, a.rot.next = 0, a.rot.every
	a.base, a.fileStart = 0, a.written.Load()
	// Last counts the lines of the new file, none yet, after the last
	// hash of the one before, as OpenAuditFile finds them at a restart.
	a.durable()
	if err := old.Close(); err != nil { // its lines are synced already
		a.log.Warn("kaizen: closing a rotated audit trail file", "file", cur, "error", err)
	}
	a.log.Info("kaizen: audit trail rotated", "file", next, "previous", cur, "continues_from", hex.EncodeToString(a.prev[:]))
}

// createNext creates the next file of a series, locked, with its name
// made durable.
func createNext(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_APPEND|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, err
	}
	if nextCreated != nil {
		nextCreated()
	}
	if held, _ := lockFile(f); held {
		f.Close() // another Audit's now, which appends to it
		return nil, fmt.Errorf("%w: %s", ErrAuditFileInUse, path)
	}
	if err := syncDir(filepath.Dir(path)); err != nil {
		// Not left behind empty: the next try makes it again, and a
		// restart would take it for the trail's last file.
		f.Close()
		os.Remove(path)
		return nil, err
	}
	return f, nil
}

// resume verifies the trail in f, repairs its end, as OpenAuditFile
// describes, and syncs it. continues names the file whose last hash
// opts.Genesis is, if any, for the error of a first line that does not
// link to it. It sets last to the hash of the file's last line.
func resume(f *os.File, path string, opts AuditOptions, continues string, last *[sha256.Size]byte) (AuditFileState, error) {
	fi, err := f.Stat()
	if err != nil {
		return AuditFileState{}, fmt.Errorf("kaizen: OpenAuditFile: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return AuditFileState{}, fmt.Errorf("kaizen: OpenAuditFile: %s is not a regular file (%s)", path, fi.Mode().Type())
	}
	c, err := newChain(VerifyOptions{Genesis: opts.Genesis, Key: opts.Key})
	if err != nil {
		return AuditFileState{}, err
	}
	c.before = continues
	end, err := c.read(f, path, 0)
	if err != nil {
		if errors.As(err, new(*AuditError)) {
			return AuditFileState{}, err
		}
		return AuditFileState{}, fmt.Errorf("kaizen: OpenAuditFile: %w", err)
	}
	*last = c.prev
	state := AuditFileState{AuditSummary: c.summary()}
	if end.torn > 0 {
		state.Cut = int64(end.torn)
		size, err := f.Seek(0, io.SeekEnd)
		if err == nil {
			err = f.Truncate(size - state.Cut)
		}
		if err != nil {
			return AuditFileState{}, fmt.Errorf("kaizen: OpenAuditFile: cutting off the torn last line: %w", err)
		}
	}
	if end.unterminated {
		state.NewlineAdded = true
		if _, err := f.Write([]byte{'\n'}); err != nil {
			return AuditFileState{}, fmt.Errorf("kaizen: OpenAuditFile: %w", err)
		}
	}
	// Synced, repaired or not: the lines were read from the operating
	// system's cache, and a process that ended between its writes and
	// its next Flush left them there alone. Last reports the last of
	// them as durable from the start.
	if fileSyncing != nil {
		fileSyncing(path)
	}
	if err := f.Sync(); err != nil {
		return AuditFileState{}, fmt.Errorf("kaizen: OpenAuditFile: %w", err)
	}
	return state, nil
}

// nameDir returns the directory that holds the name of the file at path:
// path's own, or, when path is a symbolic link, that of the file it leads
// to, whose name an open that created the file made there.
func nameDir(path string) string {
	if fi, err := os.Lstat(path); err == nil && fi.Mode()&fs.ModeSymlink != 0 {
		if real, err := filepath.EvalSymlinks(path); err == nil {
			return filepath.Dir(real)
		}
	}
	return filepath.Dir(path)
}

// syncDir syncs the directory dir, so the files created in it are durable.
// Windows has no such call (and no need of it).
func syncDir(dir string) error {
	if runtime.GOOS == "windows" {
		return nil
	}
	if dirSyncing != nil {
		dirSyncing(dir)
	}
	d, err := os.Open(dir)
	if err == nil {
		err = d.Sync()
		d.Close()
	}
	if err != nil {
		return fmt.Errorf("kaizen: OpenAuditFile: syncing the directory: %w", err)
	}
	return nil
}
