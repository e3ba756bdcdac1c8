package kaizen

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
)

// ErrAuditFileInUse is wrapped by the error OpenAuditFile returns for a
// file another Audit, in this process or another, is appending to.
var ErrAuditFileInUse = errors.New("kaizen: audit trail file in use")

// AuditFileState is what OpenAuditFile found in the file and what it
// repaired before appending.
type AuditFileState struct {
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
// The file's directory is synced too, so that a new file's name is as
// durable as its lines; the directory must be readable for that. The
// Audit owns the file: Flush and Shutdown sync it, and Shutdown closes
// it. Audit.Last starts at the file's last hash and line count.
//
// Only one Audit may append to a file at a time: OpenAuditFile takes an
// exclusive lock on the file (flock), which Shutdown releases as it closes
// the file, and while another Audit, in this process or another, holds it,
// fails with an error wrapping ErrAuditFileInUse and leaves the file as it
// is. On a file system that cannot lock, the file is opened without a lock
// and that is logged at level Warn; Windows and systems without flock have
// no lock. A file is read in full at open; rotate to a new file (with
// AuditOptions.Genesis set to the last hash of the one before) to keep
// that short.
//
// It returns an error naming the first invalid option before touching the
// file; an error wrapping ErrAuditFileInUse; a *AuditError; an
// *fs.PathError when the file or its directory cannot be opened, read,
// repaired or synced; or an error saying path is not a regular file.
func OpenAuditFile(path string, opts AuditOptions) (*Audit, AuditFileState, error) {
	a, err := newAudit(opts)
	if err != nil {
		return nil, AuditFileState{}, err
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, AuditFileState{}, fmt.Errorf("kaizen: OpenAuditFile: %w", err)
	}
	held, lockErr := lockFile(f)
	if held {
		f.Close()
		return nil, AuditFileState{}, fmt.Errorf("%w: %s is appended to by another Audit, in this process or another", ErrAuditFileInUse, path)
	}
	state, err := resume(f, path, opts, &a.prev)
	if err == nil {
		// Make the file's name durable before its lines: a file whose
		// directory entry a crash loses takes the trail with it. (Done
		// on every open, not only when the file is created, so that an
		// open that fails here fails the same way when retried.)
		err = syncDir(filepath.Dir(path))
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
	a.start(f, f, state.Lines)
	return a, state, nil
}

// resume verifies the trail in f and repairs its end, as OpenAuditFile
// describes. It sets last to the hash of the file's last line.
func resume(f *os.File, path string, opts AuditOptions, last *[sha256.Size]byte) (AuditFileState, error) {
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
	end, err := c.read(f, path)
	if err != nil {
		if errors.As(err, new(*AuditError)) {
			return AuditFileState{}, err
		}
		return AuditFileState{}, fmt.Errorf("kaizen: OpenAuditFile: %w", err)
	}
	*last = c.prev
	state := AuditFileState{AuditSummary: c.summary()}
	if end.torn == 0 && !end.unterminated {
		return state, nil
	}
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
	if err := f.Sync(); err != nil {
		return AuditFileState{}, fmt.Errorf("kaizen: OpenAuditFile: %w", err)
	}
	return state, nil
}

// syncDir syncs the directory dir, so the files created in it are durable.
// Windows has no such call (and no need of it).
func syncDir(dir string) error {
	if runtime.GOOS == "windows" {
		return nil
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
