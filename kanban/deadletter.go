package kanban

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"
)

// DeadLetter is a message the consumer gave up on: its attempts ran out,
// the handler returned a Permanent error, or its payload could not be
// decoded.
type DeadLetter struct {
	// Seq numbers the dead letter in its queue's store: unique there, and
	// larger for a later one. It is how one dead letter is named (a
	// message ID may be dead-lettered more than once) and the cursor of
	// ListDeadLetters.
	Seq     uint64
	ID      string // the message's ID
	Key     string // the message's Key
	Headers Header // the message's headers, with what Publish injected
	// Payload is the message as stored: the encoded bytes for a backend
	// with a Codec, the Codec's encoding of the value for one without.
	Payload []byte
	// Reason is the last error's text.
	Reason string
	// Attempts is the number of deliveries made.
	Attempts int
	// Time is when the message was dead-lettered.
	Time time.Time
}

// DeadLetterStore is what an operator does with a queue's dead letters:
// read them a page at a time, send them back to the queue (redrive), or
// delete them. Memory and natsjs.Queue implement it; package
// kanban/kanbanhttp serves it as JSON.
//
// Redriving publishes the message again — same ID, Key, headers and
// payload, its delivery count starting again at 1 — and removes the dead
// letter only once the queue has stored the message: a redrive that fails
// (the queue full, the server gone) leaves the dead letter where it was.
// What a backend guarantees beyond that (exactly once, or at least once
// with duplicates suppressed within a window) its documentation says.
type DeadLetterStore interface {
	// ListDeadLetters returns a page of the dead letters q matches.
	ListDeadLetters(ctx context.Context, q DeadLetterQuery) (DeadLetterPage, error)
	// RedriveDeadLetters publishes the dead letters f matches back to the
	// queue, oldest first, each removed once its message is stored, and
	// returns how many were. It stops at the first failure, returning it
	// with the count so far; the dead letters not redriven stay. A filter
	// naming a Seq not kept returns ErrDeadLetterNotFound; one naming a
	// Seq kept that its other fields do not match, a
	// *DeadLetterMismatchError.
	RedriveDeadLetters(ctx context.Context, f DeadLetterFilter) (int, error)
	// DeleteDeadLetters removes the dead letters f matches and returns how
	// many it removed. A filter naming a Seq not kept returns
	// ErrDeadLetterNotFound; one naming a Seq kept that its other fields
	// do not match, a *DeadLetterMismatchError.
	DeleteDeadLetters(ctx context.Context, f DeadLetterFilter) (int, error)
}

var (
	// ErrDeadLetterNotFound is returned for a DeadLetterFilter.Seq that
	// names no dead letter kept. A filter whose Seq names one kept that
	// its other fields do not match selects none as well: its error, a
	// *DeadLetterMismatchError, is ErrDeadLetterNotFound to errors.Is,
	// but says what is true.
	ErrDeadLetterNotFound = errors.New("kanban: no such dead letter")
	// ErrEmptyFilter is returned by RedriveDeadLetters and
	// DeleteDeadLetters for a filter that names nothing: acting on every
	// dead letter takes All, so that a missing field never does it by
	// accident.
	ErrEmptyFilter = errors.New("kanban: dead-letter filter is empty; set All to act on every dead letter")
)

// DeadLetterFilter selects dead letters: those matching every field set.
// For RedriveDeadLetters and DeleteDeadLetters at least one field must be
// set, or All; for ListDeadLetters the zero value matches every one.
type DeadLetterFilter struct {
	// All matches every dead letter. No other field may be set with it.
	All bool
	// Seq, if not 0, matches the one dead letter with that Seq.
	Seq uint64
	// ID matches the dead letters of that message ID.
	ID string
	// Key matches the dead letters of that message Key.
	Key string
	// Reason matches dead letters whose reason contains it.
	Reason string
	// Before matches dead letters dead-lettered before it (older than).
	Before time.Time
}

// MaxFilterText bounds the length of DeadLetterFilter's ID, Key and
// Reason.
const MaxFilterText = 1024

// IsZero reports whether f sets no field.
func (f DeadLetterFilter) IsZero() bool {
	return !f.All && f.Seq == 0 && f.ID == "" && f.Key == "" && f.Reason == "" && f.Before.IsZero()
}

// Validate reports what is wrong with f as a filter to act on (redrive,
// delete): ErrEmptyFilter when it names nothing, an error naming the
// field when All comes with another field or a text is too long.
func (f DeadLetterFilter) Validate() error {
	if err := f.validateFields(); err != nil {
		return err
	}
	if f.IsZero() {
		return ErrEmptyFilter
	}
	return nil
}

func (f DeadLetterFilter) validateFields() error {
	for _, s := range []struct{ name, v string }{{"ID", f.ID}, {"Key", f.Key}, {"Reason", f.Reason}} {
		if len(s.v) > MaxFilterText {
			return fmt.Errorf("kanban: invalid DeadLetterFilter.%s: %d bytes, more than %d", s.name, len(s.v), MaxFilterText)
		}
	}
	if f.All {
		f.All = false
		if !f.IsZero() {
			return errors.New("kanban: invalid DeadLetterFilter: All matches every dead letter and takes no other field")
		}
	}
	return nil
}

// Match reports whether d matches f. The zero filter, like All, matches
// every dead letter.
func (f DeadLetterFilter) Match(d *DeadLetter) bool {
	switch {
	case f.Seq != 0 && d.Seq != f.Seq,
		f.ID != "" && d.ID != f.ID,
		f.Key != "" && d.Key != f.Key,
		f.Reason != "" && !strings.Contains(d.Reason, f.Reason),
		!f.Before.IsZero() && !d.Time.Before(f.Before):
		return false
	}
	return true
}

// DeadLetterMismatchError is the error of RedriveDeadLetters and
// DeleteDeadLetters for a filter whose Seq names a dead letter kept that
// the filter's other fields do not match: nothing was done. Its text names
// each field the dead letter does not match and what the dead letter has
// there, as
//
//	kanban: redriving dead letter 3: it does not match the filter: its key is "a", not "other"
//
// in the same words from every backend. It is ErrDeadLetterNotFound to
// errors.Is, as the filter selects no dead letter.
type DeadLetterMismatchError struct {
	// Op is what was asked: "redriving" or "deleting".
	Op string
	// Letter is the dead letter the Seq names, without its Headers and
	// Payload.
	Letter DeadLetter
	// Filter is the filter it does not match.
	Filter DeadLetterFilter
}

// mismatchText bounds each value Error quotes: a reason is an error's
// text, of any length.
const mismatchText = 200

// Error names the dead letter and each field of the filter it does not
// match, with what it has there.
func (e *DeadLetterMismatchError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "kanban: %s dead letter %d: it does not match the filter", e.Op, e.Letter.Seq)
	sep := ": "
	add := func(format string, args ...any) {
		b.WriteString(sep)
		fmt.Fprintf(&b, format, args...)
		sep = "; "
	}
	f, d := e.Filter, &e.Letter
	if f.Seq != 0 && d.Seq != f.Seq {
		add("the filter names dead letter %d", f.Seq)
	}
	if f.ID != "" && d.ID != f.ID {
		add("its ID is %q, not %q", clipText(d.ID), clipText(f.ID))
	}
	if f.Key != "" && d.Key != f.Key {
		add("its key is %q, not %q", clipText(d.Key), clipText(f.Key))
	}
	if f.Reason != "" && !strings.Contains(d.Reason, f.Reason) {
		add("its reason %q does not contain %q", clipText(d.Reason), clipText(f.Reason))
	}
	if !f.Before.IsZero() && !d.Time.Before(f.Before) {
		add("it was dead-lettered at %s, not before %s", d.Time.UTC().Format(time.RFC3339Nano), f.Before.UTC().Format(time.RFC3339Nano))
	}
	return b.String()
}

// Is reports whether target is ErrDeadLetterNotFound.
func (e *DeadLetterMismatchError) Is(target error) bool { return target == ErrDeadLetterNotFound }

// clipText returns s, cut to about mismatchText bytes at a rune's start,
// with "…" where it was cut.
func clipText(s string) string {
	if len(s) <= mismatchText {
		return s
	}
	i := mismatchText
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	return s[:i] + "…"
}

// MaxDeadLetterPage bounds DeadLetterQuery.Limit.
const MaxDeadLetterPage = 1000

// DeadLetterQuery asks ListDeadLetters for a page. The zero value asks for
// the 100 oldest dead letters.
type DeadLetterQuery struct {
	// Filter selects the dead letters listed; the zero value lists all.
	Filter DeadLetterFilter
	// Limit is the most dead letters on the page. 0 means 100; at most
	// MaxDeadLetterPage.
	Limit int
	// Newest lists the newest first; the default is the oldest first.
	Newest bool
	// Cursor continues a listing: the Next of the page before. 0 starts
	// at the oldest (or, with Newest, the newest).
	Cursor uint64
}

// Validate reports the first field out of range, naming it.
func (q DeadLetterQuery) Validate() error {
	if q.Limit < 0 || q.Limit > MaxDeadLetterPage {
		return optionError("kanban", "DeadLetterQuery.Limit", q.Limit, "must be between 0 and 1000")
	}
	return q.Filter.validateFields()
}

// WithDefaults returns q with a zero Limit set to its default.
func (q DeadLetterQuery) WithDefaults() DeadLetterQuery {
	if q.Limit == 0 {
		q.Limit = 100
	}
	return q
}

// After reports whether a dead letter numbered seq comes after the cursor
// in q's order, so belongs on the page.
func (q DeadLetterQuery) After(seq uint64) bool {
	switch {
	case q.Cursor == 0:
		return true
	case q.Newest:
		return seq < q.Cursor
	}
	return seq > q.Cursor
}

// DeadLetterPage is a page of dead letters.
type DeadLetterPage struct {
	// Letters are the dead letters, in the order asked for.
	Letters []DeadLetter
	// Next is the Cursor of the following page; 0 when this one is the
	// last.
	Next uint64
	// Total is the number of dead letters kept, matching or not.
	Total int
}
