package kaizen

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"log/slog"
	"math"
	"os"
	"runtime/debug"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/taipattern/taikit/internal/jsonw"
	"github.com/taipattern/taikit/internal/typednil"
	"github.com/taipattern/taikit/tai"
)

// GenesisHash is the prev hash of the first line of an audit trail that
// does not continue another one: 64 zeros.
const GenesisHash = "0000000000000000000000000000000000000000000000000000000000000000"

// ErrAuditClosed is handed to AuditOptions.OnUnwritten for a record
// observed after Shutdown.
var ErrAuditClosed = errors.New("kaizen: audit trail is closed")

// AuditOptions configures an Audit. The zero value is useful: a queue of
// 4096 records, writes of up to 64 KiB, no redaction, the genesis hash, no
// key (plain SHA-256), unwritten records logged at level Error with
// slog.Default().
type AuditOptions struct {
	// Buffer is the number of records queued between Observe and the
	// writer goroutine. When it is full, Observe blocks until there is
	// room: a slow writer slows the pipeline down instead of losing
	// records. Zero means 4096; it must be from 1 to 1<<20. The queue
	// reserves 8 bytes a record up front (8 MiB for 1<<20); a record
	// takes its own memory, some 300 bytes, only while it is queued.
	Buffer int
	// BatchBytes is how many encoded bytes are gathered into one Write.
	// The writer also writes whenever its queue is empty, so a line
	// waits in memory only while later lines are being encoded. Zero
	// means 64 KiB; it must be from 1 to 64 MiB. Between writes the
	// writer keeps a buffer of BatchBytes plus at most 1 MiB: a longer
	// line's memory is let go once it is written.
	BatchBytes int
	// Redact, if set, rewrites an entry before it is written and hashed:
	// mask the Key, strip personal data from reasons and errors. It runs
	// on the writer goroutine, one entry at a time. The entry's
	// Contributions and Inputs are copies it may change in place: the
	// record is the pipeline caller's, and other observers may keep it.
	// A record whose Redact (or whose Err's Error method) panics or calls
	// runtime.Goexit is not written: it goes to OnUnwritten with an error
	// saying so, once the lines queued before it are written, and the
	// trail goes on. Redact must not call the Audit's Flush, Shutdown or
	// Observe: they wait for the writer goroutine (Observe, while the
	// queue is full), which waits for Redact.
	Redact func(*AuditEntry)
	// Genesis is the prev hash of the first line, in hex: the hash of
	// the last line of a trail this one continues (Audit.Last of the
	// Audit that wrote it, or AuditSummary.Last of its verification).
	// Empty means GenesisHash.
	Genesis string
	// Key, if set, makes each line's hash an HMAC-SHA256 with this key
	// instead of a plain SHA-256 of the same bytes, so that someone who
	// can write the file but does not have the key cannot rewrite the
	// chain consistently. Verifying the trail then needs the key
	// (VerifyOptions.Key). Use 32 random bytes, kept out of logs and out
	// of the trail's directory. Nil means no key; a non-nil Key must hold
	// at least MinAuditKeyLen bytes. The Audit keeps a copy.
	Key []byte
	// OnUnwritten receives every record that could not be written, with
	// the reason: the write error (also returned by Err), or
	// ErrAuditClosed after Shutdown. It runs on the writer goroutine or on
	// the goroutine calling Observe. Nil means each is logged at level
	// Error on Logger. A panic in OnUnwritten is recovered and logged on
	// Logger, and so is a runtime.Goexit, and the trail goes on as it
	// would have. Like Redact, it must not call Flush, Shutdown or
	// Observe, which on the writer goroutine wait for themselves (and an
	// Observe of the record that failed would fail again, without end);
	// on the goroutine calling Observe it may call Flush and Shutdown.
	OnUnwritten func(r tai.Record, err error)
	// Logger logs unwritten records when OnUnwritten is nil, a panic of
	// OnUnwritten or of the io.Writer's Write or Sync, what
	// OpenAuditFile repairs, and its rotations. Nil means slog.Default().
	Logger *slog.Logger
	// RotateBytes, for OpenAuditFile only, bounds the trail's files: once
	// a write leaves the current file holding at least RotateBytes bytes,
	// the Audit syncs it and goes on in a new one, the next of the series
	// path, path.000001, path.000002, ... (the number is at least six
	// digits, so that up to path.999999 the names sort in the trail's
	// order), whose first line continues the chain from the last line of
	// the file before. A relative path is taken from the working
	// directory at the open: the series goes on there, whatever the
	// process changes its working directory to later. Any file of
	// path's directory named so is taken for one of the series,
	// whatever wrote it: one that does not fit
	// the series makes OpenAuditFile fail, naming it. Files once rotated
	// out are never written again by an Audit with RotateBytes
	// (OpenAuditFile without it appends to path itself, whatever follows
	// it): they may be archived or deleted, oldest first, path itself
	// kept or not (OpenAuditFile refuses a last file that follows a gap
	// after a numbered file kept), the last one before the current file
	// best kept (see OpenAuditFile). Zero means one file that grows without
	// bound; it must not be negative, and NewAudit refuses any other
	// value.
	RotateBytes int64
}

// AuditEntry is one line of an audit trail, as written and as read back
// with encoding/json. Redact receives it before Prev and Hash are set.
type AuditEntry struct {
	Time     time.Time     `json:"time"` // when the signal began (Record.Start)
	ID       string        `json:"id"`
	Kind     string        `json:"kind"`
	Key      string        `json:"key"`
	Outcome  string        `json:"outcome"`
	Decision tai.Decision  `json:"decision"`
	Error    string        `json:"error"` // empty when the signal succeeded
	Duration time.Duration `json:"duration_ns"`
	TraceID  string        `json:"trace_id"` // empty without a tracer
	SpanID   string        `json:"span_id"`
	// Prev is the Hash of the line before, or the genesis hash.
	Prev string `json:"prev"`
	// Hash is the SHA-256 (the HMAC-SHA256 with AuditOptions.Key), in
	// hex, of the line as written up to and including Prev, closed with
	// "}": the line without its `,"hash":"..."` member.
	Hash string `json:"hash"`
}

// Audit is a tai.Observer that writes a tamper-evident audit trail: one
// JSON line per finished signal (an AuditEntry), each carrying the hash of
// the line before it, so VerifyAudit finds an edited, deleted, inserted or
// reordered line and names it. With AuditOptions.Key the hashes are
// HMACs, which only a holder of the key can forge.
//
// Observe queues the record and returns; a writer goroutine encodes,
// hashes and writes the lines in order. The trail never drops a record
// silently:
//
//   - When the writer is slow, the queue fills up and Observe blocks until
//     there is room (backpressure). It does not give up when its context
//     ends: a cancelled signal is audited too.
//   - When a Write fails, the Audit stops writing: Err returns the error
//     from then on, and every record that did not reach the writer in
//     full — those of the failed write, those queued, and those observed
//     later — goes to OnUnwritten (by default logged at level Error) and
//     is counted by Unwritten. A trail ends at its first failure and never
//     has a gap in the middle. A line the failed Write wrote all but its
//     newline did reach it: it verifies as the trail's last line (and
//     OpenAuditFile ends it), so it counts as written.
//
// A record whose line would be longer than MaxAuditLineLen, which no
// verifier reads, or whose time (Record.Start, or the Time Redact sets)
// is outside the years 0 to 9999 in UTC, which RFC 3339 cannot write and
// encoding/json cannot read back, is not written either: it goes to
// OnUnwritten with an error saying so, once the lines queued before it
// are written, and the trail goes on. Records are so written or handed over in the order they
// were queued in, which WaitWritten relies on.
//
// Lines reach the writer as soon as the writer goroutine is idle, but
// reach stable storage only at Flush and Shutdown: when the io.Writer has
// a Sync method (an *os.File that is a regular file, or any other writer
// with Sync() error), they call it after writing, and a failed Sync stops
// the trail as a failed Write does. Last reports the last line so made
// durable. A panic in the io.Writer's Write or Sync is recovered, logged
// with its stack on AuditOptions.Logger, and stops the trail as a failed
// call does (for Write, as one that wrote nothing); so does a
// runtime.Goexit there. (Goexit ends the writer goroutine whatever
// recovers: another takes its place and goes on where it stopped.)
//
// Shutdown drains the queue, writes what is left, syncs, and stops the
// goroutine. The Audit does not close the io.Writer given to NewAudit
// (that is its owner's job); it closes the file OpenAuditFile opened.
//
// Make an Audit with NewAudit or OpenAuditFile. The zero Audit writes
// nothing: its Observe logs each record as unwritten, at level Error on
// slog.Default, and returns; its Err, Flush, Shutdown and WaitWritten
// return an error saying so.
type Audit struct {
	w        io.Writer
	syncer   interface{ Sync() error } // nil when w cannot be synced
	closer   io.Closer                 // the file OpenAuditFile opened; nil otherwise
	redact   func(*AuditEntry)
	onUnwrit func(tai.Record, error)
	log      *slog.Logger
	batch    int
	queue    chan *auditItem
	done     chan struct{}
	// senders counts, in steps of 2, the Observe and Flush calls that
	// may send on queue; bit 0 is set by Shutdown. Once it is set and no
	// sender is left, idle is closed and the writer drains the queue and
	// stops.
	senders      atomic.Int64
	idle         chan struct{}
	idleOnce     sync.Once
	shutdownOnce sync.Once

	err       atomic.Pointer[error]
	written   atomic.Uint64
	unwritten atomic.Uint64
	// observed counts the records Observe queued; each becomes written
	// or handed to OnUnwritten by the writer goroutine, in the queue's
	// order, and handed counts the latter. A record handed over on the
	// goroutine calling Observe is in neither count: settled before
	// Observe returns, it would otherwise make up, for a WaitWritten
	// that began before it, for a record still queued. WaitWritten waits
	// on wake, a channel closed and replaced as records are settled
	// while waiters is not zero.
	observed atomic.Uint64
	handed   atomic.Uint64
	waiters  atomic.Int64
	wake     atomic.Pointer[chan struct{}]

	// base is the number of lines the file held before this Audit
	// (OpenAuditFile); Last counts them. fileStart is the number of lines
	// this Audit had written when the current file began (rotation).
	base, fileStart uint64
	// rot is the rotation of OpenAuditFile's files (RotateBytes); its
	// every is zero without one. Owned by the writer goroutine.
	rot rotation
	// durable is the last line on stable storage, for Last.
	durableMu    sync.Mutex
	durableHash  [sha256.Size]byte
	durableLines uint64

	// Owned by the writer goroutine.
	prev     [sha256.Size]byte
	mac      hash.Hash // HMAC-SHA256 with AuditOptions.Key; nil without one
	buf      []byte
	pending  []pendingLine
	wrote    [sha256.Size]byte // hash of the last line written in full
	unsynced bool              // lines were written since the last Sync
	flushing chan error        // the reply of the Flush being answered
	// syncing counts the Flush Syncs running beside the writer goroutine
	// (flush): one at a time, and none while the writer syncs itself.
	syncing sync.WaitGroup
	// lost holds the records of a failed write not yet handed to
	// OnUnwritten, with the error they are handed with.
	lost    []trackedRecord
	lostErr error
	// rejected is a record not written for a reason of its own (Redact,
	// its line's length), with that reason, kept while the lines before
	// it are written: it is handed to OnUnwritten after them, so that
	// records are settled in the queue's order, which WaitWritten counts
	// on.
	rejecting   bool
	rejected    trackedRecord
	rejectedErr error
	// encoding is the track of the record being encoded, for the record
	// rejected when Redact calls runtime.Goexit.
	encoding *writtenTrack
	// After a runtime.Goexit in the caller's code had the writer
	// goroutine end, resumed tells the next one to finish first what it
	// was doing (see takeOver), and exit says where it was.
	resumed bool
	exit    goexitAt
}

// goexitAt says where a runtime.Goexit ended the writer goroutine, for
// what its successor has to finish.
type goexitAt uint8

const (
	// goexitElsewhere: OnUnwritten, whose record was handed over, or
	// Redact or the record's Err.Error, whose record is rejected.
	goexitElsewhere goexitAt = iota
	goexitWrite              // the io.Writer's Write
	goexitSync               // its Sync
)

type auditItem struct {
	rec   tai.Record
	track *writtenTrack // the track of the context it was observed under, if any (TrackWritten)
	flush chan error    // non-nil for a Flush request
}

// trackedRecord is a record with the track of the context it was
// observed under, if any.
type trackedRecord struct {
	rec   tai.Record
	track *writtenTrack
}

// auditItems holds the items of Observe for reuse: the queue holds
// pointers to them, so that a Buffer of many records reserves a pointer
// for each up front, not a whole record (some 300 bytes), and a record
// takes its memory only while it is queued.
var auditItems = sync.Pool{New: func() any { return new(auditItem) }}

type pendingLine struct {
	trackedRecord
	end  int // offset in buf just past the line
	hash [sha256.Size]byte
}

// NewAudit starts an Audit writing to w, or returns an error naming the
// first invalid option. A nil w, or a nil pointer in it (an *os.File left
// unset when its open failed), is an error: the trail would fail at its
// first line. To append to a trail file that may already exist, use
// OpenAuditFile.
func NewAudit(w io.Writer, opts AuditOptions) (*Audit, error) {
	if w == nil {
		return nil, errors.New("kaizen: NewAudit: nil io.Writer")
	}
	if typednil.Holds(w) {
		return nil, fmt.Errorf("kaizen: NewAudit: nil io.Writer (a nil %T)", w)
	}
	if opts.RotateBytes != 0 {
		return nil, errors.New("kaizen: NewAudit: AuditOptions.RotateBytes is for OpenAuditFile, which owns the files it rotates")
	}
	a, err := newAudit(opts)
	if err != nil {
		return nil, err
	}
	a.start(w, nil, 0)
	return a, nil
}

// newAudit validates opts and builds an Audit that is not started yet.
func newAudit(opts AuditOptions) (*Audit, error) {
	size := opts.Buffer
	if size == 0 {
		size = 4096
	}
	if size < 1 || size > 1<<20 {
		return nil, fmt.Errorf("kaizen: AuditOptions.Buffer %d is outside [1, 1048576]", opts.Buffer)
	}
	if opts.RotateBytes < 0 {
		return nil, fmt.Errorf("kaizen: AuditOptions.RotateBytes %d is negative", opts.RotateBytes)
	}
	batch := opts.BatchBytes
	if batch == 0 {
		batch = 64 << 10
	}
	if batch < 1 || batch > 64<<20 {
		return nil, fmt.Errorf("kaizen: AuditOptions.BatchBytes %d is outside [1, 67108864]", opts.BatchBytes)
	}
	a := &Audit{
		redact:   opts.Redact,
		onUnwrit: opts.OnUnwritten,
		batch:    batch,
		queue:    make(chan *auditItem, size),
		done:     make(chan struct{}),
		idle:     make(chan struct{}),
		buf:      make([]byte, 0, batch+4096),
		log:      auditLogger(opts),
	}
	wake := make(chan struct{})
	a.wake.Store(&wake)
	if opts.Genesis != "" {
		if err := decodeHash(opts.Genesis, &a.prev); err != nil {
			return nil, fmt.Errorf("kaizen: AuditOptions.Genesis %q: %w", opts.Genesis, err)
		}
	}
	if opts.Key != nil {
		if len(opts.Key) < MinAuditKeyLen {
			return nil, fmt.Errorf("kaizen: AuditOptions.Key is %d bytes; it must hold at least %d", len(opts.Key), MinAuditKeyLen)
		}
		a.mac = hmac.New(sha256.New, bytes.Clone(opts.Key))
	}
	if a.onUnwrit == nil {
		log := a.log
		a.onUnwrit = func(r tai.Record, err error) {
			log.Error("kaizen: audit record not written", "signal_id", r.ID, "kind", r.Kind,
				"outcome", r.Outcome.String(), "error", err)
		}
	}
	return a, nil
}

func auditLogger(opts AuditOptions) *slog.Logger {
	if opts.Logger != nil {
		return opts.Logger
	}
	return slog.Default()
}

// start makes w the Audit's writer, whose chain so far holds base lines
// and ends at a.prev, and starts the writer goroutine.
func (a *Audit) start(w io.Writer, closer io.Closer, base uint64) {
	a.w, a.closer, a.base = w, closer, base
	a.syncer = syncerOf(w)
	a.wrote, a.durableHash, a.durableLines = a.prev, a.prev, base
	go a.run()
}

// syncerOf returns what Flush syncs for w: an *os.File only when it is a
// regular file (a pipe or a terminal cannot be synced), any other writer
// when it has a Sync method.
func syncerOf(w io.Writer) interface{ Sync() error } {
	if f, ok := w.(*os.File); ok {
		if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
			return nil
		}
		return f
	}
	s, _ := w.(interface{ Sync() error })
	return s
}

func decodeHash(s string, dst *[sha256.Size]byte) error {
	if len(s) != 2*sha256.Size {
		return fmt.Errorf("want %d hex digits, got %d characters", 2*sha256.Size, len(s))
	}
	_, err := hex.Decode(dst[:], []byte(s))
	return err
}

// errAuditNotMade is the error of an Audit that NewAudit or OpenAuditFile
// did not make, which has no writer goroutine.
var errAuditNotMade = errors.New("kaizen: the Audit was not made by NewAudit or OpenAuditFile; it writes nothing")

// Observe queues the record for writing, blocking while the queue is full.
// Under a context from TrackWritten it notes the record there, for
// WaitWritten.
func (a *Audit) Observe(ctx context.Context, r tai.Record) {
	t := trackOf(ctx)
	if a.queue == nil {
		// The zero Audit: nothing would ever take the record from the
		// queue, and the signal would wait for good.
		if t != nil {
			t.refuse(a, errAuditNotMade)
		}
		a.unwritten.Add(1)
		slog.Default().Error("kaizen: audit record not written", "signal_id", r.ID, "kind", r.Kind,
			"outcome", r.Outcome.String(), "error", errAuditNotMade)
		return
	}
	if !a.enter() {
		a.lose(trackedRecord{r, t}, ErrAuditClosed, false)
		return
	}
	if err := a.Err(); err != nil {
		// Counted out first: OnUnwritten may call Shutdown, which waits
		// for every sender to leave.
		a.leave()
		a.lose(trackedRecord{r, t}, err, false)
		return
	}
	defer a.leave()
	a.observed.Add(1)
	it := auditItems.Get().(*auditItem)
	it.rec, it.track = r, t
	a.queue <- it
	if t != nil {
		// Every record queued before this one was counted by now, so
		// once as many are settled, so is this one.
		t.queued(a, a.observed.Load())
	}
}

// enter counts a sender in, or reports false after Shutdown.
func (a *Audit) enter() bool {
	if a.senders.Add(2)&1 != 0 {
		a.leave()
		return false
	}
	return true
}

// leave counts a sender out; the last one out after Shutdown lets the
// writer stop.
func (a *Audit) leave() {
	if a.senders.Add(-2) == 1 {
		a.stopIdle()
	}
}

func (a *Audit) stopIdle() { a.idleOnce.Do(func() { close(a.idle) }) }

// Err returns the write error that stopped the trail, or nil; for the zero
// Audit, which writes nothing, an error saying it was not made by NewAudit
// or OpenAuditFile.
func (a *Audit) Err() error {
	if p := a.err.Load(); p != nil {
		return *p
	}
	if a.queue == nil {
		return errAuditNotMade
	}
	return nil
}

// Written returns the number of lines this Audit has written so far
// (handed to the io.Writer in full; see Last for those made durable).
func (a *Audit) Written() uint64 { return a.written.Load() }

// Last returns the hash, in hex, of the last line known to be durable, and
// the number of lines up to and including it: those this Audit wrote plus,
// for OpenAuditFile, those the file held before. With RotateBytes, the
// lines are those of the current file: once the trail goes on in a new
// one, Last returns the last hash of the file before and 0 lines, as
// after a restart that finds the new file empty. A line is durable once a
// Flush or Shutdown has synced it (or, for a writer that cannot be synced,
// once it is written). Before any, Last returns the genesis, or the file's
// last hash, and that base count.
//
// A service publishes Last, right after a Flush, somewhere the trail's
// writer cannot change (another system, a message stream); a verifier
// given the published hash as VerifyOptions.Expect then tells whether
// lines were cut from the trail's end.
func (a *Audit) Last() (hash string, lines uint64) {
	a.durableMu.Lock()
	h, n := a.durableHash, a.durableLines
	a.durableMu.Unlock()
	return hex.EncodeToString(h[:]), n
}

// WaitWritten waits until every record observed before it was called
// has been written — handed to the io.Writer in full — or handed to
// OnUnwritten, and returns Err; or returns ctx.Err() if ctx ends first.
// Unlike Flush it does not sync, and it does not make the writer write
// sooner than it would: a record is written once the lines encoded
// before it are, as soon as the writer goroutine is idle. A service
// that answers only after WaitWritten returns keeps the line of every
// answer it gave through a crash of its process (the operating system
// holds what was written to a file), though not through one of the
// machine: that needs Flush. It must not be called from Redact or
// OnUnwritten, which run on the writer goroutine it waits for.
//
// Given a context from TrackWritten (or one made from it) under which
// records were observed, it waits for those records alone, and returns an
// error wrapping ErrAuditUnwritten, saying why, when one of them was not
// written: refused for a reason of its own, observed after Shutdown, or
// lost with the write that stopped the trail (the error then wraps Err
// too); and nil when each was written, though a later write stopped the
// trail (Err tells of that). Otherwise, whatever the context, it cannot
// tell a refused record of its caller's from another's, and returns Err:
// nil while the trail goes on, though a record was refused.
//
// The zero Audit writes nothing, so WaitWritten never returns nil for
// it: it returns the error of the records observed under a TrackWritten
// context, as for any Audit, and otherwise, as Flush does, an error
// saying the Audit was not made.
func (a *Audit) WaitWritten(ctx context.Context) error {
	track := trackOf(ctx)
	if a.queue == nil {
		if track != nil {
			if _, ok, err := track.of(a); ok {
				return err
			}
		}
		return errAuditNotMade
	}
	target := a.observed.Load()
	if track != nil {
		if own, ok, _ := track.of(a); ok {
			target = own
		}
	}
	if a.settled() >= target {
		return a.waited(track)
	}
	a.waiters.Add(1)
	defer a.waiters.Add(-1)
	for {
		wake := a.wake.Load()
		if a.settled() >= target {
			return a.waited(track)
		}
		select {
		case <-*wake:
		case <-ctx.Done():
			if a.settled() >= target { // at the same moment
				return a.waited(track)
			}
			return ctx.Err()
		}
	}
}

// waited is what WaitWritten returns once the records it waited for are
// settled: for a track that noted records of a, the error of those not
// written, nil when each was (whatever later stopped the trail); else
// Err.
func (a *Audit) waited(track *writtenTrack) error {
	if track != nil {
		if _, ok, err := track.of(a); ok {
			return err
		}
	}
	return a.Err()
}

// settled returns the number of records written or handed to
// OnUnwritten.
func (a *Audit) settled() uint64 { return a.written.Load() + a.handed.Load() }

// wakeWaiters wakes the WaitWritten calls, if any, to look again.
func (a *Audit) wakeWaiters() {
	if a.waiters.Load() == 0 {
		return
	}
	next := make(chan struct{})
	close(*a.wake.Swap(&next))
}

// Unwritten returns the number of records handed to OnUnwritten.
func (a *Audit) Unwritten() uint64 { return a.unwritten.Load() }

// Flush waits until every record observed before it is written and, when
// the writer can be synced, synced to stable storage, and returns Err. It
// returns ctx.Err() if ctx ends first. The Sync does not hold up the
// records observed meanwhile: they are written as it runs (WaitWritten
// returns for them), and synced by the next Flush. After Shutdown it waits, as a later
// Shutdown does, for the drain to end.
func (a *Audit) Flush(ctx context.Context) error {
	if a.queue == nil {
		return errAuditNotMade
	}
	if !a.enter() {
		// The records observed before are written by Shutdown's drain.
		return a.waitDone(ctx)
	}
	reply := make(chan error, 1)
	select {
	case a.queue <- &auditItem{flush: reply}:
		a.leave()
	case <-ctx.Done():
		a.leave()
		return ctx.Err()
	}
	select {
	case err := <-reply:
		return err
	case <-ctx.Done():
		select { // answered at the same moment: the Flush is done
		case err := <-reply:
			return err
		default:
			return ctx.Err()
		}
	}
}

// Shutdown stops accepting records, writes every queued one, syncs the
// writer as Flush does and stops the writer goroutine, as
// net/http.Server.Shutdown does. It returns Err once the goroutine has
// ended, or ctx.Err() if ctx ends first (the drain goes on in the
// background, and a later Shutdown waits for it). Records observed after
// Shutdown go to OnUnwritten with ErrAuditClosed. Shutdown does not close
// the io.Writer given to NewAudit; it closes the file OpenAuditFile
// opened, and a failure to close it is returned as Err.
func (a *Audit) Shutdown(ctx context.Context) error {
	if a.queue == nil {
		return errAuditNotMade
	}
	a.shutdownOnce.Do(func() {
		// Observe calls blocked on a full queue are still counted: the
		// writer keeps taking from the queue until the last one leaves.
		if a.senders.Or(1) == 0 {
			a.stopIdle()
		}
	})
	return a.waitDone(ctx)
}

// waitDone waits for the writer goroutine to end and returns Err, or
// returns ctx.Err() if ctx ends first. A goroutine that has ended, when
// ctx has too, ended first: its Err is what the caller needs to know.
func (a *Audit) waitDone(ctx context.Context) error {
	select {
	case <-a.done:
		return a.Err()
	case <-ctx.Done():
		select { // both ready: the goroutine ended first, or at once
		case <-a.done:
			return a.Err()
		default:
			return ctx.Err()
		}
	}
}

// lose hands r to OnUnwritten. A panic there is logged rather than let
// through: on the writer goroutine it would end the process. queued says
// r came through the queue, for WaitWritten to count it settled; the
// track of its context, if any, notes it not written before that.
func (a *Audit) lose(tr trackedRecord, err error, queued bool) {
	r := tr.rec
	if tr.track != nil {
		tr.track.refuse(a, err)
	}
	a.unwritten.Add(1)
	returned := false
	defer func() {
		if queued {
			a.handed.Add(1)
			a.wakeWaiters()
		}
		if v := recover(); v != nil {
			a.log.Error("kaizen: AuditOptions.OnUnwritten panicked", "signal_id", r.ID, "panic", fmt.Sprint(v),
				"stack", string(debug.Stack()))
		} else if !returned {
			a.log.Error("kaizen: AuditOptions.OnUnwritten called runtime.Goexit", "signal_id", r.ID,
				"stack", string(debug.Stack()))
		}
	}()
	a.onUnwrit(r, err)
	returned = true
}

// run is the writer goroutine: it encodes records as they come and writes
// a batch when it is full or the queue is empty. Once Shutdown is called
// and no sender is left, it writes what is queued and returns.
//
// The caller's code it runs (Redact, the io.Writer, OnUnwritten) may call
// runtime.Goexit, which ends the goroutine whatever recovers: then another
// takes its place and, before anything else, finishes what this one was
// doing, so that no record is lost silently and no Flush waits for good.
func (a *Audit) run() {
	returned := false
	defer func() {
		if !returned {
			a.resumed = true
			go a.run()
			return
		}
		close(a.done)
	}()
	if a.resumed {
		a.takeOver()
	}
	a.loop()
	returned = true
}

// takeOver finishes what the writer goroutine was doing when a
// runtime.Goexit ended it, as the call that ended so would have, where
// it stopped: a Write or a Sync that ended it fails as one that panicked
// does; the rest of a failed write's records are handed to OnUnwritten;
// the record whose Redact ended it, or that was rejected when the Write
// of the lines before it did, is handed over once they are written; the
// Flush being answered is answered; and the queue is drained and written.
func (a *Audit) takeOver() {
	a.resumed = false
	at := a.exit
	a.exit = goexitElsewhere
	switch at {
	case goexitWrite:
		a.settle(0, errors.New("runtime.Goexit in the io.Writer's Write"))
	case goexitSync:
		a.fail(errors.New("kaizen: syncing audit trail: runtime.Goexit in the io.Writer's Sync"))
	}
	a.handLost()
	if a.rejecting {
		a.write()
		a.handRejected()
	}
	if a.flushing != nil {
		a.flush()
	}
	a.drain()
}

// loop handles the queue until Shutdown, then drains it, syncs and
// closes the file OpenAuditFile opened.
func (a *Audit) loop() {
	for {
		select {
		case it := <-a.queue:
			a.handle(it)
			a.drain()
		case <-a.idle:
			a.drain() // nothing can be sent any more
			a.syncing.Wait()
			a.sync()
			if a.closer != nil {
				if err := a.closer.Close(); err != nil {
					a.fail(fmt.Errorf("kaizen: closing audit trail: %w", err))
				}
			}
			return
		}
	}
}

// drain handles what is queued, then writes the batch.
func (a *Audit) drain() {
	for {
		select {
		case it := <-a.queue:
			a.handle(it)
		default:
			a.write()
			return
		}
	}
}

func (a *Audit) handle(item *auditItem) {
	if item.flush != nil {
		a.flushing = item.flush
		a.flush()
		return
	}
	// The record is copied out and the item reused at once: the code of
	// the caller run below (Redact, OnUnwritten) may end the goroutine.
	rec := trackedRecord{item.rec, item.track}
	*item = auditItem{}
	auditItems.Put(item)
	if err := a.Err(); err != nil {
		a.lose(rec, err, true)
		return
	}
	a.encoding = rec.track
	err := a.encode(&rec.rec)
	a.encoding = nil
	if err != nil {
		a.rejecting, a.rejected, a.rejectedErr = true, rec, err
		a.write()
		a.handRejected()
		return
	}
	a.pending = append(a.pending, pendingLine{trackedRecord: rec, end: len(a.buf), hash: a.prev})
	if len(a.buf) >= a.batch {
		a.write()
	}
}

// auditBufSlack is how far the writer's buffer may grow past BatchBytes
// and be kept for the next batch: room for lines with large decision
// inputs, without keeping the megabytes of a rare huge one.
const auditBufSlack = 1 << 20

// flush writes the batch, syncs, and answers the Flush of a.flushing.
// The Sync runs on a goroutine of its own, and the writer goes on: a
// Sync takes as long as the disk takes to store what was written since
// the last one (tens of milliseconds for megabytes), and the records
// observed meanwhile, whose callers may wait for their lines to be
// written (WaitWritten), do not wait for it. The lines written after the
// Sync began are not counted durable by it; the next Sync takes them.
func (a *Audit) flush() {
	a.write()
	reply := a.flushing
	a.flushing = nil
	a.syncing.Wait() // the Sync of the Flush before, if it still runs
	if a.syncer == nil || !a.unsynced {
		reply <- a.Err()
		return
	}
	a.unsynced = false
	syncer, hash, lines := a.syncer, a.wrote, a.base+a.written.Load()-a.fileStart
	a.syncing.Add(1)
	go func() {
		defer a.syncing.Done()
		returned := false
		defer func() {
			if !returned { // runtime.Goexit in Sync: the trail stops, as on the writer goroutine
				a.log.Error("kaizen: audit trail's io.Writer called runtime.Goexit", "method", "Sync",
					"stack", string(debug.Stack()))
				a.fail(errors.New("kaizen: syncing audit trail: runtime.Goexit in the io.Writer's Sync"))
				reply <- a.Err()
			}
		}()
		err := a.syncOf(syncer)
		returned = true
		if err != nil {
			a.fail(fmt.Errorf("kaizen: syncing audit trail: %w", err))
		} else {
			a.durableAt(hash, lines)
		}
		reply <- a.Err()
	}()
}

// write writes the batch. On failure the lines not written in full are
// handed to OnUnwritten.
func (a *Audit) write() {
	if len(a.buf) == 0 {
		return
	}
	n, err := a.writeBuf()
	a.settle(n, err)
	if a.rot.every > 0 && err == nil {
		a.rot.size += int64(n)
		if a.rot.size >= a.rot.next {
			a.rotate()
		}
	}
}

// settle counts the lines of the batch that a Write of it, which wrote n
// bytes and returned err, wrote in full, and empties the batch. On failure
// it stops the trail and hands the lines not written in full to
// OnUnwritten, once the batch is settled.
func (a *Audit) settle(n int, err error) {
	if err == nil && n < len(a.buf) {
		err = io.ErrShortWrite
	}
	if err != nil {
		err = fmt.Errorf("kaizen: writing audit trail: %w", err)
		a.fail(err)
		a.lostErr = err
	}
	for i := range a.pending {
		p := &a.pending[i]
		// A line written all but its newline is written: it verifies
		// as the trail's last line, and OpenAuditFile ends it.
		if err != nil && p.end-1 > n {
			a.lost = append(a.lost, p.trackedRecord)
		} else {
			a.written.Add(1)
			a.wrote = p.hash
			a.unsynced = true
		}
		p.trackedRecord = trackedRecord{} // let the GC have what it refers to
	}
	a.wakeWaiters()
	a.buf = a.buf[:0]
	if cap(a.buf) > a.batch+auditBufSlack {
		// A line far longer than usual grew buf: let that memory go
		// rather than hold it for the rest of the Audit's life.
		a.buf = make([]byte, 0, a.batch+4096)
	}
	a.pending = a.pending[:0]
	if a.syncer == nil {
		a.durable()
	}
	a.handLost()
}

// handRejected hands the rejected record, if any, to OnUnwritten, once
// the lines before it are written.
func (a *Audit) handRejected() {
	if !a.rejecting {
		return
	}
	r, err := a.rejected, a.rejectedErr
	a.rejecting, a.rejected, a.rejectedErr = false, trackedRecord{}, nil
	a.lose(r, err, true)
}

// handLost hands the records of a failed write to OnUnwritten, each
// taken off the list before, so that after a runtime.Goexit in
// OnUnwritten the next writer goroutine hands over the rest.
func (a *Audit) handLost() {
	for len(a.lost) > 0 {
		r := a.lost[0]
		a.lost[0] = trackedRecord{}
		a.lost = a.lost[1:]
		a.lose(r, a.lostErr, true)
	}
	a.lost = nil
}

// sync makes the lines written so far durable, when the writer can be
// synced, once a Flush's Sync still running has returned. A failed Sync
// stops the trail: what was written since the last Sync may be lost, and
// a later Sync cannot tell.
func (a *Audit) sync() {
	a.syncing.Wait()
	if a.syncer == nil || !a.unsynced {
		return
	}
	a.unsynced = false
	if err := a.syncWriter(); err != nil {
		a.fail(fmt.Errorf("kaizen: syncing audit trail: %w", err))
		return
	}
	a.durable()
}

// writeBuf writes buf to the io.Writer. A panic in its Write is returned
// as an error, with nothing written, rather than end the process from the
// writer goroutine: the trail stops as it does on a failed Write.
func (a *Audit) writeBuf() (n int, err error) {
	returned := false
	defer func() {
		if v := recover(); v != nil {
			n, err = 0, a.writerPanicked("Write", v)
		} else if !returned {
			a.writerGoexit("Write", goexitWrite)
		}
	}()
	n, err = a.w.Write(a.buf)
	returned = true
	return n, err
}

// syncOf calls syncer's Sync, off the writer goroutine (flush). A panic
// in it is returned as an error, as syncWriter does.
func (a *Audit) syncOf(syncer interface{ Sync() error }) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = a.writerPanicked("Sync", v)
		}
	}()
	return syncer.Sync()
}

// syncWriter syncs the io.Writer. A panic in its Sync is returned as an
// error, as writeBuf does for Write.
func (a *Audit) syncWriter() (err error) {
	returned := false
	defer func() {
		if v := recover(); v != nil {
			err = a.writerPanicked("Sync", v)
		} else if !returned {
			a.writerGoexit("Sync", goexitSync)
		}
	}()
	err = a.syncer.Sync()
	returned = true
	return err
}

// writerPanicked logs a panic v in the io.Writer's method, with the stack
// that raised it, and returns it as an error.
func (a *Audit) writerPanicked(method string, v any) error {
	a.log.Error("kaizen: audit trail's io.Writer panicked", "method", method, "panic", fmt.Sprint(v),
		"stack", string(debug.Stack()))
	return fmt.Errorf("panic in the io.Writer's %s: %v", method, v)
}

// writerGoexit logs a runtime.Goexit in the io.Writer's method, with the
// stack that called it, and tells the next writer goroutine where it was.
func (a *Audit) writerGoexit(method string, at goexitAt) {
	a.log.Error("kaizen: audit trail's io.Writer called runtime.Goexit", "method", method,
		"stack", string(debug.Stack()))
	a.exit = at
}

// durable records the last line written as the last durable one.
func (a *Audit) durable() { a.durableAt(a.wrote, a.base+a.written.Load()-a.fileStart) }

// durableAt records the line of hash, the lines-th of the current file,
// as the last durable one.
func (a *Audit) durableAt(hash [sha256.Size]byte, lines uint64) {
	a.durableMu.Lock()
	a.durableHash, a.durableLines = hash, lines
	a.durableMu.Unlock()
}

// fail stops the trail with err, unless it has stopped already.
func (a *Audit) fail(err error) { a.err.CompareAndSwap(nil, &err) }

// entry makes the entry of r, redacted. The code it calls is the
// caller's (Redact, and the Error method of r.Err), on the writer
// goroutine: a panic there is returned as an error, and r is not written,
// rather than ending the process or writing what Redact was to hide; a
// runtime.Goexit there leaves r to the next writer goroutine (see run).
func (a *Audit) entry(r *tai.Record) (e AuditEntry, err error) {
	in := "the record's Err.Error"
	returned := false
	defer func() {
		if v := recover(); v != nil {
			err = fmt.Errorf("kaizen: audit record not written: panic in %s: %v", in, v)
		} else if !returned {
			// runtime.Goexit: the next writer goroutine hands r over,
			// once the lines before it are written.
			a.rejecting, a.rejected = true, trackedRecord{*r, a.encoding}
			a.rejectedErr = fmt.Errorf("kaizen: audit record not written: runtime.Goexit in %s", in)
		}
	}()
	e = AuditEntry{
		Time: r.Start, ID: r.ID, Kind: r.Kind, Key: r.Key, Outcome: r.Outcome.String(),
		Decision: r.Decision, Duration: r.Duration,
		TraceID: r.Span.TraceID.String(), SpanID: r.Span.SpanID.String(),
	}
	if r.Err != nil {
		e.Error = r.Err.Error()
	}
	if a.redact != nil {
		// Copied by capacity, not length: an append to an empty slice
		// with room to spare would write into the record's memory.
		if cap(e.Decision.Contributions) > 0 {
			e.Decision.Contributions = slices.Clone(e.Decision.Contributions)
		}
		if cap(e.Decision.Inputs) > 0 {
			e.Decision.Inputs = bytes.Clone(e.Decision.Inputs)
		}
		in = "AuditOptions.Redact"
		a.redact(&e)
	}
	returned = true
	return e, nil
}

// encode appends the line of r to buf and advances the chain, or returns
// the error of entry, or one saying the entry's time is outside what RFC
// 3339 writes or the line would be longer than MaxAuditLineLen, and
// leaves both as they were.
func (a *Audit) encode(r *tai.Record) error {
	e, err := a.entry(r)
	if err != nil {
		return err
	}
	t := e.Time.UTC()
	if y := t.Year(); y < 0 || y > 9999 {
		// RFC 3339 has four digits for the year: encoding/json would not
		// read the time back into an AuditEntry.
		return fmt.Errorf("kaizen: audit record not written: its time %s is outside the years 0 to 9999 (UTC), which RFC 3339 can write", t.Format(time.RFC3339Nano))
	}
	start := len(a.buf)
	b := a.buf
	b = append(b, `{"time":"`...)
	b = t.AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","id":`...)
	b = jsonw.AppendString(b, e.ID)
	b = append(b, `,"kind":`...)
	b = jsonw.AppendString(b, e.Kind)
	b = append(b, `,"key":`...)
	b = jsonw.AppendString(b, e.Key)
	b = append(b, `,"outcome":`...)
	b = jsonw.AppendString(b, e.Outcome)
	b = append(b, `,"decision":`...)
	b = appendDecision(b, &e.Decision)
	b = append(b, `,"error":`...)
	b = jsonw.AppendString(b, e.Error)
	b = append(b, `,"duration_ns":`...)
	b = strconv.AppendInt(b, int64(e.Duration), 10)
	b = append(b, `,"trace_id":`...)
	b = jsonw.AppendString(b, e.TraceID)
	b = append(b, `,"span_id":`...)
	b = jsonw.AppendString(b, e.SpanID)
	b = append(b, `,"prev":"`...)
	b = hex.AppendEncode(b, a.prev[:])
	b = append(b, `"}`...)
	if n := len(b) - start - 1 + len(`,"hash":"`) + hex.EncodedLen(sha256.Size) + len(`"}`); n > MaxAuditLineLen {
		// a.buf and a.prev are unchanged: b only ran past a.buf's end.
		return fmt.Errorf("kaizen: audit record not written: its line would be %d bytes, longer than %d bytes (MaxAuditLineLen)", n, MaxAuditLineLen)
	}
	if a.mac == nil {
		a.prev = sha256.Sum256(b[start:])
	} else {
		a.mac.Reset()
		a.mac.Write(b[start:])
		a.mac.Sum(a.prev[:0])
	}
	b = b[:len(b)-1]
	b = append(b, `,"hash":"`...)
	b = hex.AppendEncode(b, a.prev[:])
	b = append(b, "\"}\n"...)
	a.buf = b
	return nil
}

// appendDecision writes d as a JSON object. A Verdict that is none of
// tai's is written as none, as the pipeline counts it: its String, such
// as "verdict(7)", is text that no reader of an AuditEntry decodes.
func appendDecision(b []byte, d *tai.Decision) []byte {
	v := d.Verdict
	if !v.Valid() {
		v = 0
	}
	b = append(b, `{"verdict":"`...)
	b = append(b, v.String()...)
	b = append(b, `","policy":`...)
	b = jsonw.AppendString(b, d.Policy)
	b = append(b, `,"reason":`...)
	b = jsonw.AppendString(b, d.Reason)
	b = append(b, `,"score":`...)
	b = appendFloat(b, d.Score)
	if len(d.Contributions) > 0 {
		b = append(b, `,"contributions":[`...)
		for i := range d.Contributions {
			c := &d.Contributions[i]
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, `{"rule":`...)
			b = jsonw.AppendString(b, c.Rule)
			b = append(b, `,"weight":`...)
			b = appendFloat(b, c.Weight)
			b = append(b, `,"risk":`...)
			b = appendFloat(b, c.Risk)
			b = append(b, `,"score":`...)
			b = appendFloat(b, c.Score)
			b = append(b, `,"reason":`...)
			b = jsonw.AppendString(b, c.Reason)
			b = append(b, '}')
		}
		b = append(b, ']')
	}
	if d.FailedOpen {
		b = append(b, `,"failed_open":true`...)
	}
	if len(d.Inputs) > 0 {
		b = appendInputs(b, d.Inputs)
	}
	return append(b, '}')
}

// appendInputs writes a decision's inputs as the member "inputs": the
// JSON compacted onto the line, or, when it is not valid JSON or nests too
// deeply for the line to be, as a string holding it, so that a bad
// producer never breaks the trail's lines. Bytes that are not UTF-8, which
// json.Compact lets through inside strings, are written as \ufffd, as in
// every other field, so the trail stays valid UTF-8.
func appendInputs(b []byte, in []byte) []byte {
	b = append(b, `,"inputs":`...)
	buf := bytes.NewBuffer(b)
	if err := json.Compact(buf, in); err == nil && nesting(buf.Bytes()[len(b):]) <= maxInputsNesting {
		out := buf.Bytes()
		if js := out[len(b):]; !utf8.Valid(js) {
			out = append(b, replaceInvalidUTF8(js)...)
		}
		return out
	}
	return jsonw.AppendString(b, string(in))
}

// replaceInvalidUTF8 returns the valid JSON js with every byte that is not
// part of a UTF-8 sequence written as the escape \ufffd. Outside its
// strings JSON is ASCII, so every such byte is inside a string, where the
// escape reads back as encoding/json reads the byte: U+FFFD.
func replaceInvalidUTF8(js []byte) []byte {
	out := make([]byte, 0, len(js)+16)
	for i := 0; i < len(js); {
		r, size := utf8.DecodeRune(js[i:])
		if r == utf8.RuneError && size == 1 {
			out = append(out, `\ufffd`...)
		} else {
			out = append(out, js[i:i+size]...)
		}
		i += size
	}
	return out
}

// maxInputsNesting is how deeply a decision's inputs may nest on a line:
// encoding/json, whose json.Valid VerifyAudit uses, refuses text nested
// more than 10000 levels, and the line and its decision are two of them.
const maxInputsNesting = 10000 - 2

// nesting returns how deeply the objects and arrays of the valid JSON js
// nest.
func nesting(js []byte) int {
	deepest := 0
	walkNesting(js, func(_, depth int) bool {
		deepest = max(deepest, depth)
		return true
	})
	return deepest
}

// appendFloat writes f as a JSON number; NaN and infinities, which JSON
// cannot hold, as null.
func appendFloat(b []byte, f float64) []byte {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return append(b, "null"...)
	}
	return strconv.AppendFloat(b, f, 'g', -1, 64)
}
