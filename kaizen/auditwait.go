package kaizen

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"
)

// ErrAuditUnwritten is wrapped by the error WaitWritten returns, given a
// context from TrackWritten, when a record observed under that context
// was not written: refused for a reason of its own (Redact panicked, its
// line would be too long, its time is outside what RFC 3339 writes), or
// observed after Shutdown. The error says why; the record went to
// AuditOptions.OnUnwritten.
var ErrAuditUnwritten = errors.New("kaizen: audit record not written")

// TrackWritten returns a copy of ctx under which an Audit notes the
// records its Observe is given, so that WaitWritten called with that
// context, or with one made from it (context.WithoutCancel,
// context.WithTimeout), waits for those records and reports whether each
// was written. A service makes one per request, before the pipeline
// observes its signal:
//
//	ctx = kaizen.TrackWritten(ctx)
//	res, err := pipeline.Process(ctx, sig) // the Audit observes the record under ctx
//	...
//	if err := audit.WaitWritten(ctx); err != nil { // the record's line is not written
//
// Without it, WaitWritten cannot tell the caller's records from the
// others: it waits for every record observed before it, and a record the
// trail refused for a reason of its own, while the trail goes on, goes to
// OnUnwritten without making it return an error.
func TrackWritten(ctx context.Context) context.Context {
	return context.WithValue(ctx, writtenKey{}, new(writtenTrack))
}

type writtenKey struct{}

// writtenTrack notes, for one context of TrackWritten, the records each
// Audit observed under it.
type writtenTrack struct {
	mu     sync.Mutex
	audits []trackedAudit // usually one
}

type trackedAudit struct {
	a *Audit
	// target is the number of records observed once the last one under
	// the context was queued: once as many are settled, so is it.
	target uint64
	// refused is the reason the first record under the context not
	// written was not, and refusals counts them.
	refused  error
	refusals int
}

// trackOf returns the track of ctx, or nil.
func trackOf(ctx context.Context) *writtenTrack {
	if ctx == nil {
		return nil
	}
	t, _ := ctx.Value(writtenKey{}).(*writtenTrack)
	return t
}

// entry returns a's entry, added when add is set, or nil. t.mu is held.
func (t *writtenTrack) entry(a *Audit, add bool) *trackedAudit {
	for i := range t.audits {
		if t.audits[i].a == a {
			return &t.audits[i]
		}
	}
	if !add {
		return nil
	}
	t.audits = append(t.audits, trackedAudit{a: a})
	return &t.audits[len(t.audits)-1]
}

// queued notes a record of a queued under the context, once the records
// observed numbered target.
func (t *writtenTrack) queued(a *Audit, target uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	e := t.entry(a, true)
	e.target = max(e.target, target)
}

// refuse notes a record of a under the context that was not written, for
// err.
func (t *writtenTrack) refuse(a *Audit, err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	e := t.entry(a, true)
	if e.refused == nil {
		e.refused = err
	}
	e.refusals++
}

// of returns what t noted of a: the records to wait for, and the error
// of those not written, nil when all were; ok is false when no record of
// a was observed under the context.
func (t *writtenTrack) of(a *Audit) (target uint64, ok bool, err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	e := t.entry(a, false)
	if e == nil {
		return 0, false, nil
	}
	if e.refused != nil {
		err = &unwrittenError{err: e.refused, n: e.refusals}
	}
	return e.target, true, err
}

// unwrittenError is the error of WaitWritten for the records of a
// tracked context that were not written.
type unwrittenError struct {
	err error // the first one's reason
	n   int
}

func (e *unwrittenError) Error() string {
	msg := e.err.Error()
	if head := ErrAuditUnwritten.Error(); !strings.HasPrefix(msg, head) {
		msg = head + ": " + strings.TrimPrefix(msg, "kaizen: ")
	}
	if e.n > 1 {
		msg += " (and " + strconv.Itoa(e.n-1) + " more records observed under the context)"
	}
	return msg
}

func (e *unwrittenError) Unwrap() []error { return []error{ErrAuditUnwritten, e.err} }
