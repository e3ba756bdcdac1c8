package kaizen

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/taipattern/taikit/tai"
)

// GenesisHash is the prev hash of the first line of an audit trail that
// does not continue another one: 64 zeros.
const GenesisHash = "0000000000000000000000000000000000000000000000000000000000000000"

// ErrAuditClosed is handed to AuditOptions.OnUnwritten for a record
// observed after Shutdown.
var ErrAuditClosed = errors.New("kaizen: audit trail is closed")

// AuditOptions configures an Audit. The zero value is useful: a queue of
// 4096 records, writes of up to 64 KiB, no redaction, the genesis hash,
// unwritten records logged at level Error with slog.Default().
type AuditOptions struct {
	// Buffer is the number of records queued between Observe and the
	// writer goroutine. When it is full, Observe blocks until there is
	// room: a slow writer slows the pipeline down instead of losing
	// records. Zero means 4096; it must be from 1 to 1<<20.
	Buffer int
	// BatchBytes is how many encoded bytes are gathered into one Write.
	// The writer also writes whenever its queue is empty, so a line
	// waits in memory only while later lines are being encoded. Zero
	// means 64 KiB; it must be from 1 to 64 MiB.
	BatchBytes int
	// Redact, if set, rewrites an entry before it is written and hashed:
	// mask the Key, strip personal data from reasons and errors. It runs
	// on the writer goroutine, one entry at a time. The entry's
	// Contributions are a copy it may change.
	Redact func(*AuditEntry)
	// Genesis is the prev hash of the first line, in hex: the hash of
	// the last line of a trail this one continues (see VerifyAuditFrom).
	// Empty means GenesisHash.
	Genesis string
	// OnUnwritten receives every record that could not be written, with
	// the reason: the write error (also returned by Err), or
	// ErrAuditClosed after Shutdown. It runs on the writer goroutine or on
	// the goroutine calling Observe. Nil means each is logged at level
	// Error on Logger.
	OnUnwritten func(r tai.Record, err error)
	// Logger logs unwritten records when OnUnwritten is nil. Nil means
	// slog.Default().
	Logger *slog.Logger
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
	// Hash is the SHA-256, in hex, of the line as written up to and
	// including Prev, closed with "}": the line without its
	// `,"hash":"..."` member.
	Hash string `json:"hash"`
}

// Audit is a tai.Observer that writes a tamper-evident audit trail: one
// JSON line per finished signal (an AuditEntry), each carrying the hash of
// the line before it, so VerifyAudit finds an edited, deleted, inserted or
// reordered line and names it.
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
//     has a gap in the middle.
//
// Shutdown drains the queue, writes what is left and stops the goroutine.
// The Audit does not close or sync the io.Writer: that is its owner's job.
type Audit struct {
	w        io.Writer
	redact   func(*AuditEntry)
	onUnwrit func(tai.Record, error)
	batch    int
	queue    chan auditItem
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

	// Owned by the writer goroutine.
	prev    [sha256.Size]byte
	buf     []byte
	pending []pendingLine
}

type auditItem struct {
	rec   tai.Record
	flush chan error // non-nil for a Flush request
}

type pendingLine struct {
	rec tai.Record
	end int // offset in buf just past the line
}

// NewAudit starts an Audit writing to w, or returns an error naming the
// first invalid option.
func NewAudit(w io.Writer, opts AuditOptions) (*Audit, error) {
	if w == nil {
		return nil, errors.New("kaizen: NewAudit: nil io.Writer")
	}
	size := opts.Buffer
	if size == 0 {
		size = 4096
	}
	if size < 1 || size > 1<<20 {
		return nil, fmt.Errorf("kaizen: AuditOptions.Buffer %d is outside [1, 1048576]", opts.Buffer)
	}
	batch := opts.BatchBytes
	if batch == 0 {
		batch = 64 << 10
	}
	if batch < 1 || batch > 64<<20 {
		return nil, fmt.Errorf("kaizen: AuditOptions.BatchBytes %d is outside [1, 67108864]", opts.BatchBytes)
	}
	a := &Audit{
		w:        w,
		redact:   opts.Redact,
		onUnwrit: opts.OnUnwritten,
		batch:    batch,
		queue:    make(chan auditItem, size),
		done:     make(chan struct{}),
		idle:     make(chan struct{}),
		buf:      make([]byte, 0, batch+4096),
	}
	if opts.Genesis != "" {
		if err := decodeHash(opts.Genesis, &a.prev); err != nil {
			return nil, fmt.Errorf("kaizen: AuditOptions.Genesis %q: %w", opts.Genesis, err)
		}
	}
	if a.onUnwrit == nil {
		log := opts.Logger
		if log == nil {
			log = slog.Default()
		}
		a.onUnwrit = func(r tai.Record, err error) {
			log.Error("kaizen: audit record not written", "signal_id", r.ID, "kind", r.Kind,
				"outcome", r.Outcome.String(), "error", err)
		}
	}
	go a.run()
	return a, nil
}

func decodeHash(s string, dst *[sha256.Size]byte) error {
	if len(s) != 2*sha256.Size {
		return fmt.Errorf("want %d hex digits, got %d characters", 2*sha256.Size, len(s))
	}
	_, err := hex.Decode(dst[:], []byte(s))
	return err
}

// Observe queues the record for writing, blocking while the queue is full.
func (a *Audit) Observe(_ context.Context, r tai.Record) {
	if !a.enter() {
		a.lose(r, ErrAuditClosed)
		return
	}
	defer a.leave()
	if err := a.Err(); err != nil {
		a.lose(r, err)
		return
	}
	a.queue <- auditItem{rec: r}
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

// Err returns the write error that stopped the trail, or nil.
func (a *Audit) Err() error {
	if p := a.err.Load(); p != nil {
		return *p
	}
	return nil
}

// Written returns the number of lines written so far.
func (a *Audit) Written() uint64 { return a.written.Load() }

// Unwritten returns the number of records handed to OnUnwritten.
func (a *Audit) Unwritten() uint64 { return a.unwritten.Load() }

// Flush waits until every record observed before it is written, and
// returns Err. It returns ctx.Err() if ctx ends first.
func (a *Audit) Flush(ctx context.Context) error {
	if !a.enter() {
		return a.Err()
	}
	reply := make(chan error, 1)
	select {
	case a.queue <- auditItem{flush: reply}:
		a.leave()
	case <-ctx.Done():
		a.leave()
		return ctx.Err()
	}
	select {
	case err := <-reply:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Shutdown stops accepting records, writes every queued one and stops the
// writer goroutine, as net/http.Server.Shutdown does. It returns Err once
// the goroutine has ended, or ctx.Err() if ctx ends first (the drain goes
// on in the background, and a later Shutdown waits for it). Records
// observed after Shutdown go to OnUnwritten with ErrAuditClosed. Shutdown
// does not close the io.Writer.
func (a *Audit) Shutdown(ctx context.Context) error {
	a.shutdownOnce.Do(func() {
		// Observe calls blocked on a full queue are still counted: the
		// writer keeps taking from the queue until the last one leaves.
		if a.senders.Or(1) == 0 {
			a.stopIdle()
		}
	})
	select {
	case <-a.done:
		return a.Err()
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (a *Audit) lose(r tai.Record, err error) {
	a.unwritten.Add(1)
	a.onUnwrit(r, err)
}

// run is the writer goroutine: it encodes records as they come and writes
// a batch when it is full or the queue is empty. Once Shutdown is called
// and no sender is left, it writes what is queued and returns.
func (a *Audit) run() {
	defer close(a.done)
	for {
		select {
		case it := <-a.queue:
			a.handle(it)
			a.drain()
		case <-a.idle:
			a.drain() // nothing can be sent any more
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

func (a *Audit) handle(it auditItem) {
	if it.flush != nil {
		a.write()
		it.flush <- a.Err()
		return
	}
	if err := a.Err(); err != nil {
		a.lose(it.rec, err)
		return
	}
	a.encode(&it.rec)
	a.pending = append(a.pending, pendingLine{rec: it.rec, end: len(a.buf)})
	if len(a.buf) >= a.batch {
		a.write()
	}
}

// write writes the batch. On failure the lines not written in full are
// handed to OnUnwritten.
func (a *Audit) write() {
	if len(a.buf) == 0 {
		return
	}
	n, err := a.w.Write(a.buf)
	if err == nil && n < len(a.buf) {
		err = io.ErrShortWrite
	}
	if err != nil {
		err = fmt.Errorf("kaizen: writing audit trail: %w", err)
		a.err.CompareAndSwap(nil, &err)
	}
	for i := range a.pending {
		p := &a.pending[i]
		if err != nil && p.end > n {
			a.lose(p.rec, err)
		} else {
			a.written.Add(1)
		}
		p.rec = tai.Record{} // let the GC have what it refers to
	}
	a.buf = a.buf[:0]
	a.pending = a.pending[:0]
}

// encode appends the line of r to buf and advances the chain.
func (a *Audit) encode(r *tai.Record) {
	e := AuditEntry{
		Time: r.Start, ID: r.ID, Kind: r.Kind, Key: r.Key, Outcome: r.Outcome.String(),
		Decision: r.Decision, Duration: r.Duration,
		TraceID: r.Span.TraceID.String(), SpanID: r.Span.SpanID.String(),
	}
	if r.Err != nil {
		e.Error = r.Err.Error()
	}
	if a.redact != nil {
		if len(e.Decision.Contributions) > 0 {
			e.Decision.Contributions = append([]tai.Contribution(nil), e.Decision.Contributions...)
		}
		a.redact(&e)
	}
	start := len(a.buf)
	b := a.buf
	b = append(b, `{"time":"`...)
	b = e.Time.UTC().AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","id":`...)
	b = appendString(b, e.ID)
	b = append(b, `,"kind":`...)
	b = appendString(b, e.Kind)
	b = append(b, `,"key":`...)
	b = appendString(b, e.Key)
	b = append(b, `,"outcome":`...)
	b = appendString(b, e.Outcome)
	b = append(b, `,"decision":`...)
	b = appendDecision(b, &e.Decision)
	b = append(b, `,"error":`...)
	b = appendString(b, e.Error)
	b = append(b, `,"duration_ns":`...)
	b = strconv.AppendInt(b, int64(e.Duration), 10)
	b = append(b, `,"trace_id":`...)
	b = appendString(b, e.TraceID)
	b = append(b, `,"span_id":`...)
	b = appendString(b, e.SpanID)
	b = append(b, `,"prev":"`...)
	b = hex.AppendEncode(b, a.prev[:])
	b = append(b, `"}`...)
	a.prev = sha256.Sum256(b[start:])
	b = b[:len(b)-1]
	b = append(b, `,"hash":"`...)
	b = hex.AppendEncode(b, a.prev[:])
	b = append(b, "\"}\n"...)
	a.buf = b
}

func appendDecision(b []byte, d *tai.Decision) []byte {
	b = append(b, `{"verdict":"`...)
	b = append(b, d.Verdict.String()...)
	b = append(b, `","policy":`...)
	b = appendString(b, d.Policy)
	b = append(b, `,"reason":`...)
	b = appendString(b, d.Reason)
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
			b = appendString(b, c.Rule)
			b = append(b, `,"weight":`...)
			b = appendFloat(b, c.Weight)
			b = append(b, `,"risk":`...)
			b = appendFloat(b, c.Risk)
			b = append(b, `,"score":`...)
			b = appendFloat(b, c.Score)
			b = append(b, `,"reason":`...)
			b = appendString(b, c.Reason)
			b = append(b, '}')
		}
		b = append(b, ']')
	}
	if d.FailedOpen {
		b = append(b, `,"failed_open":true`...)
	}
	return append(b, '}')
}

// appendFloat writes f as a JSON number; NaN and infinities, which JSON
// cannot hold, as null.
func appendFloat(b []byte, f float64) []byte {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return append(b, "null"...)
	}
	return strconv.AppendFloat(b, f, 'g', -1, 64)
}

const hexDigits = "0123456789abcdef"

// appendString writes s as a JSON string. Invalid UTF-8 becomes U+FFFD, as
// encoding/json does.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i++
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
