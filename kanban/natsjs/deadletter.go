package natsjs

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/taipattern/taikit/kanban"
)

var (
	_ kanban.DeadLetterStore = (*Queue[struct{}])(nil)
	_ kanban.BacklogReader   = (*Queue[struct{}])(nil)
)

// scanDeadLetters calls visit with every dead letter from seq from, in
// order (backwards with newest), up to the last one there was when it
// started, until visit returns false. Each dead letter is one request to
// the server; oldest first, so is the gap of dead letters redriven or
// deleted before the next one kept (the request asks for the next message
// from a sequence number on), but newest first each number of the gap is
// a request of its own, as the server has no such request backwards.
func (q *Queue[T]) scanDeadLetters(ctx context.Context, s *probedStream, st jetstream.StreamState, from uint64, newest bool,
	visit func(m *jetstream.RawStreamMsg) bool) error {
	if st.Msgs == 0 {
		return nil
	}
	if !newest {
		for seq := max(from, st.FirstSeq); seq <= st.LastSeq; {
			m, err := s.getMsg(ctx, seq, q.opts.DeadLetterStream)
			if errors.Is(err, jetstream.ErrMsgNotFound) {
				return nil // none from seq on
			}
			if err != nil {
				return fmt.Errorf("natsjs: reading dead letter %d: %w", seq, err)
			}
			if m.Sequence < seq || m.Sequence > st.LastSeq || !visit(m) {
				return nil
			}
			seq = m.Sequence + 1
		}
		return nil
	}
	for seq := min(from, st.LastSeq); seq >= st.FirstSeq && seq != 0; seq-- {
		m, err := s.getMsg(ctx, seq, "")
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			return fmt.Errorf("natsjs: reading dead letter %d: %w", seq, err)
		}
		if !visit(m) {
			return nil
		}
	}
	return nil
}

// ListDeadLetters returns a page of the dead letters query matches, read
// from the dead-letter stream one request per dead letter examined: a
// filter that matches few examines many, up to DeadLetterLimit, except
// one with a Seq, which reads that dead letter alone. Newest first, a dead
// letter redriven or deleted from among those kept costs a request too,
// until the ones older than it are gone.
func (q *Queue[T]) ListDeadLetters(ctx context.Context, query kanban.DeadLetterQuery) (kanban.DeadLetterPage, error) {
	if err := query.Validate(); err != nil {
		return kanban.DeadLetterPage{}, err
	}
	query = query.WithDefaults()
	s, info, err := q.stream(ctx, q.opts.DeadLetterStream)
	if err != nil {
		return kanban.DeadLetterPage{}, err
	}
	st := info.State
	page := kanban.DeadLetterPage{Letters: []kanban.DeadLetter{}, Total: int(st.Msgs)}
	if seq := query.Filter.Seq; seq != 0 {
		if !query.After(seq) {
			return page, nil
		}
		m, err := s.getMsg(ctx, seq, "")
		switch {
		case errors.Is(err, jetstream.ErrMsgNotFound):
			return page, nil
		case err != nil:
			return kanban.DeadLetterPage{}, fmt.Errorf("natsjs: reading dead letter %d: %w", seq, err)
		}
		if d := deadLetterOf(m); query.Filter.Match(&d) {
			page.Letters = append(page.Letters, d)
		}
		return page, nil
	}
	from := st.FirstSeq
	switch {
	case query.Newest && query.Cursor != 0:
		from = min(st.LastSeq, query.Cursor-1)
	case query.Newest:
		from = st.LastSeq
	case query.Cursor >= st.LastSeq:
		return page, nil // nothing after it
	case query.Cursor != 0:
		from = max(st.FirstSeq, query.Cursor+1)
	}
	err = q.scanDeadLetters(ctx, s, st, from, query.Newest, func(m *jetstream.RawStreamMsg) bool {
		d := deadLetterOf(m)
		if !query.Filter.Match(&d) {
			return true
		}
		if len(page.Letters) == query.Limit {
			page.Next = page.Letters[len(page.Letters)-1].Seq
			return false
		}
		page.Letters = append(page.Letters, d)
		return true
	})
	return page, err
}

// RedriveDeadLetters publishes the dead letters f matches back to the work
// stream, oldest first, and deletes each from the dead-letter stream once
// the work stream has acknowledged its message. The message keeps its ID
// (carried in the Kanban-Id header), Key, headers and payload, with the
// trace context of ctx injected by the Propagator; JetStream counts its
// deliveries from 1 again. Headers a message cannot carry — a name
// nats.go refuses to send, or one beginning Nats-, which the server acts
// on, in a dead letter another client published — are dropped, as from
// a dead letter (see the consumer's DeadLetter): sent, they had the
// redrive refused each time.
//
// What it guarantees: a dead letter is deleted only after its message is
// stored, so a failed publish (a full stream — kanban.ErrFull, wrapping
// the server's answer, which names the limit reached, as TryPublish's
// does —, a lost connection, a work stream deleted, which the error
// names) loses nothing; the dead letter stays and the error is returned.
// A message that, with the redrive's headers, takes more room than
// MaxBytes on its own is not sent: the error wraps
// ErrTooLarge, as it would never fit; so is one, as Publish refuses it,
// whose dead letter could take more than the server's max_payload or
// DeadLetterMaxBytes (with the trace context of ctx, and a reason of the
// most bytes kept), as it could
// not be dead-lettered again; and so, likewise, is one larger than the
// MaxMsgSize of a stream New used as it is. The redrive's Nats-Msg-Id is the dead letter's own
// ("<id>.redrive.<seq>.<ns>", with the Unix time in nanoseconds at which
// the dead-letter stream stored it), so the work stream stores a dead
// letter's message once within DedupWindow however often it is redriven —
// two operators at once, or a redrive repeated after its delete failed —
// and a redrive is never mistaken for a duplicate of the message's first
// publish, nor of the redrive of a dead letter of the same message and
// number in a dead-letter stream deleted and made again. A second copy
// comes only from a redrive that stored the message but left its dead
// letter — its delete failed (the error says so), or its publish's
// acknowledgement was lost to a timeout or a broken connection after the
// stream stored it (the error says the redrive failed) — followed by a
// redrive of the same dead letter after DedupWindow: the message is then
// delivered twice, with the same ID, which handlers idempotent on the ID
// (as at-least-once delivery asks anyway) absorb.
// A dead letter that another call redrove or deleted after this one read
// it is not counted (and one named by Seq is kanban.ErrDeadLetterNotFound),
// so that two operators at once count each dead letter once between them:
// a dead letter is counted by the call whose delete took it, also when
// the other call's publish stored its message first. A dead letter the
// dead-letter stream dropped beyond DeadLetterLimit meanwhile is not
// counted either, though its message was stored.
// Dead letters arriving during the call are left for the next.
func (q *Queue[T]) RedriveDeadLetters(ctx context.Context, f kanban.DeadLetterFilter) (int, error) {
	return q.eachDeadLetter(ctx, f, "redriving", q.redrive)
}

// DeleteDeadLetters deletes the dead letters f matches from the
// dead-letter stream. A dead letter that another call deleted or redrove
// after this one read it is not counted (and one named by Seq is
// kanban.ErrDeadLetterNotFound). Dead letters arriving during the call
// are left.
func (q *Queue[T]) DeleteDeadLetters(ctx context.Context, f kanban.DeadLetterFilter) (int, error) {
	return q.eachDeadLetter(ctx, f, "deleting", func(ctx context.Context, s *probedStream, _ *jetstream.RawStreamMsg, d *kanban.DeadLetter) (bool, error) {
		return deleteDeadLetter(ctx, s, d.Seq)
	})
}

// eachDeadLetter runs act on every dead letter f matches, oldest first,
// and returns how many act did (reported true) without an error: a dead
// letter another caller redrove or deleted meanwhile is not counted, and
// one named by f.Seq is not found. It stops at the first error.
func (q *Queue[T]) eachDeadLetter(ctx context.Context, f kanban.DeadLetterFilter, what string,
	act func(context.Context, *probedStream, *jetstream.RawStreamMsg, *kanban.DeadLetter) (bool, error)) (int, error) {
	if err := f.Validate(); err != nil {
		return 0, err
	}
	s, info, err := q.stream(ctx, q.opts.DeadLetterStream)
	if err != nil {
		return 0, err
	}
	var n int
	if f.Seq != 0 {
		m, err := s.getMsg(ctx, f.Seq, "")
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return 0, fmt.Errorf("natsjs: %s dead letter %d: %w", what, f.Seq, kanban.ErrDeadLetterNotFound)
		}
		if err != nil {
			return 0, fmt.Errorf("natsjs: reading dead letter %d: %w", f.Seq, err)
		}
		d := deadLetterOf(m)
		if !f.Match(&d) {
			d.Headers, d.Payload = nil, nil
			return 0, &kanban.DeadLetterMismatchError{Op: what, Letter: d, Filter: f}
		}
		done, err := act(ctx, s, m, &d)
		switch {
		case err != nil:
			return 0, err
		case !done:
			return 0, fmt.Errorf("natsjs: %s dead letter %d: %w", what, f.Seq, kanban.ErrDeadLetterNotFound)
		}
		return 1, nil
	}
	var actErr error
	err = q.scanDeadLetters(ctx, s, info.State, info.State.FirstSeq, false, func(m *jetstream.RawStreamMsg) bool {
		d := deadLetterOf(m)
		if !f.Match(&d) {
			return true
		}
		var done bool
		if done, actErr = act(ctx, s, m, &d); actErr != nil {
			return false
		}
		if done {
			n++
		}
		return true
	})
	if actErr != nil {
		return n, actErr
	}
	return n, err
}

// redrive publishes one dead letter's message to the work stream, then
// deletes the dead letter. It reports whether it redrove it: whether its
// delete took the dead letter, not when another call (a redrive of it,
// whose publish stored the message or was a duplicate of this one's, or
// a delete) deleted it first.
func (q *Queue[T]) redrive(ctx context.Context, s *probedStream, m *jetstream.RawStreamMsg, d *kanban.DeadLetter) (done bool, err error) {
	op := kanban.Operation{System: natsSystem, Queue: q.opts.Stream, MessageID: d.ID, BodySize: len(m.Data)}
	err = kanban.SendTracedOp(ctx, q.opts.Tracer, op, func(ctx context.Context) (err error) {
		done, err = q.redriveMsg(ctx, s, m, d)
		return err
	})
	return done, err
}

func (q *Queue[T]) redriveMsg(ctx context.Context, s *probedStream, m *jetstream.RawStreamMsg, d *kanban.DeadLetter) (bool, error) {
	hdr := kanban.InjectHeaders(ctx, q.opts.Propagator, d.Headers)
	nh := make(nats.Header, len(hdr)+3)
	for k, v := range hdr {
		if carried(k) {
			nh[k] = []string{v}
		}
	}
	if d.Key != "" {
		nh[HeaderKey] = []string{d.Key}
	}
	// As Publish counts it, with the message's own Nats-Msg-Id: its dead
	// letter replaces the redrive's, and adds Kanban-Id again. The trace
	// context of ctx may be larger than the one it was published with,
	// and the dead letter of a message taken before the bound was set or
	// lowered may fit only with a short reason.
	hlen := headerSize(nh) + len(HeaderID) + len(": \r\n") + len(d.ID) + deadLetterRoom(d.ID)
	if q.opts.DeadLetterMaxBytes > 0 {
		if n := q.storedSize(q.opts.DeadLetterStream, hlen, len(m.Data)); n > q.opts.DeadLetterMaxBytes {
			return false, fmt.Errorf("natsjs: redriving dead letter %d (message %s): %w: its dead letter would take %d bytes, more than DeadLetterMaxBytes %d",
				d.Seq, d.ID, ErrTooLarge, n, q.opts.DeadLetterMaxBytes)
		}
	}
	if limit := q.js.Conn().MaxPayload(); limit > 0 {
		if n := int64(hlen + len(m.Data)); n > limit {
			return false, fmt.Errorf("natsjs: redriving dead letter %d (message %s): %w: its dead letter would take %d bytes, more than the server's max_payload %d",
				d.Seq, d.ID, ErrTooLarge, n, limit)
		}
	}
	if n := int64(hlen + len(m.Data)); q.deadMsgMax > 0 && n > q.deadMsgMax {
		return false, fmt.Errorf("natsjs: redriving dead letter %d (message %s): %w: its dead letter would take %d bytes, more than the MaxMsgSize %d of stream %s",
			d.Seq, d.ID, ErrTooLarge, n, q.deadMsgMax, q.opts.DeadLetterStream)
	}
	// The time the dead-letter stream stored it tells apart dead letters
	// of the same number in a stream deleted and made again, which counts
	// from 1 again.
	nh[HeaderID] = []string{d.ID + ".redrive." + strconv.FormatUint(d.Seq, 10) + "." + strconv.FormatInt(m.Time.UnixNano(), 10)}
	nh[HeaderMessageID] = []string{d.ID}
	if n := int64(headerSize(nh) + len(m.Data)); q.msgMax > 0 && n > q.msgMax {
		return false, fmt.Errorf("natsjs: redriving dead letter %d (message %s): %w: it takes %d bytes with the headers of its redrive, more than the MaxMsgSize %d of stream %s",
			d.Seq, d.ID, ErrTooLarge, n, q.msgMax, q.opts.Stream)
	}
	if q.opts.MaxBytes > 0 {
		// The redrive's Kanban-Id and longer Nats-Msg-Id can take a
		// message Publish fitted to MaxBytes past it: not a full stream.
		if n := q.storedSize(q.opts.Stream, headerSize(nh), len(m.Data)); n > q.opts.MaxBytes {
			return false, fmt.Errorf("natsjs: redriving dead letter %d (message %s): %w: it takes %d bytes in the work stream with the headers of its redrive, more than its MaxBytes %d",
				d.Seq, d.ID, ErrTooLarge, n, q.opts.MaxBytes)
		}
	}
	pctx, cancel := context.WithTimeout(ctx, q.opts.PublishTimeout)
	ack, err := s.publish(pctx, &nats.Msg{Subject: q.opts.Stream, Data: m.Data, Header: nh})
	cancel()
	switch {
	case isFull(err):
		return false, fmt.Errorf("natsjs: redriving dead letter %d (message %s): %w", d.Seq, d.ID, fullError(err))
	case err != nil:
		return false, fmt.Errorf("natsjs: redriving dead letter %d (message %s): %w", d.Seq, d.ID, unanswered(err, q.opts.Stream))
	}
	if !ack.Duplicate {
		q.counters.AddRedriven(1)
		q.published(len(m.Data))
	}
	deleted, err := deleteDeadLetter(ctx, s, d.Seq)
	if err != nil {
		return false, fmt.Errorf("natsjs: dead letter %d (message %s) redriven but not deleted; redriving it again within DedupWindow stores it once: %w", d.Seq, d.ID, err)
	}
	// Counted by the call whose delete took the dead letter, whether its
	// publish stored the message or found it stored: a redrive of it by
	// another call, its publish a duplicate of this one's, may delete it
	// first, and counts it.
	return deleted, nil
}

// deleteDeadLetter deletes the dead letter seq and reports whether it
// did; one deleted already (by another redrive or delete, or dropped
// beyond DeadLetterLimit) is not an error.
func deleteDeadLetter(ctx context.Context, s *probedStream, seq uint64) (bool, error) {
	err := s.deleteMsg(ctx, seq)
	switch {
	case err == nil:
		return true, nil
	case deletedAlready(err):
		return false, nil
	}
	return false, fmt.Errorf("natsjs: deleting dead letter %d: %w", seq, err)
}

// deletedAlready reports whether err, from DeleteMsg, says there was no
// message of that number. nats.go keeps the server's answer as text
// alone: "no message found" (err_code 10057) from a stream's store, or
// err_code 10043, "sequence N not found".
func deletedAlready(err error) bool {
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return true
	}
	if !errors.Is(err, jetstream.ErrMsgDeleteUnsuccessful) {
		return false
	}
	text := err.Error()
	return strings.Contains(text, "description=no message found") || strings.Contains(text, "err_code=10043 ")
}

// Backlog reads the work stream's and the dead-letter stream's state: three
// requests to the server, four with file storage, whose keeper (see
// Options.Storage) is not counted, and three probes, each a request and a
// ping, that make a connection not permitted to read the streams
// ($JS.API.STREAM.INFO.<name>, $JS.API.STREAM.MSG.GET.<Stream>) fail at
// once, with an error that wraps nats.ErrPermissionViolation and names
// the subject refused. Depth is the messages in the work stream —
// waiting, being handled, and waiting for a retry: it removes a message
// once it is acknowledged or dead-lettered. Oldest is the age of the
// stream's first message, whichever of those it is, from the time the
// stream stored it (a redriven message's redrive); when that message is
// settled between the two reads, of the first message after it.
func (q *Queue[T]) Backlog(ctx context.Context) (kanban.Backlog, error) {
	ws, wi, err := q.stream(ctx, q.opts.Stream)
	if err != nil {
		return kanban.Backlog{}, err
	}
	_, di, err := q.stream(ctx, q.opts.DeadLetterStream)
	if err != nil {
		return kanban.Backlog{}, err
	}
	depth := wi.State.Msgs
	if q.opts.keeps() {
		// Less the keeper, when it is there: also when this Queue made
		// the stream without one, as another may have added it since.
		if depth, err = q.workDepth(ctx, ws); err != nil {
			return kanban.Backlog{}, err
		}
	}
	b := kanban.Backlog{Depth: int64(depth), DeadLetters: int64(di.State.Msgs), OldestKnown: true}
	if depth > 0 {
		// The first message from FirstSeq on: the first one itself may
		// have been settled since the state was read, on a busy queue
		// often, and then its age is the next one's, not 0.
		m, err := ws.getMsg(ctx, wi.State.FirstSeq, q.opts.Stream)
		switch {
		case err == nil:
			b.Oldest = max(0, time.Since(m.Time))
		case !errors.Is(err, jetstream.ErrMsgNotFound): // all settled meanwhile
			return kanban.Backlog{}, fmt.Errorf("natsjs: reading the oldest message of %s: %w", q.opts.Stream, err)
		}
	}
	return b, nil
}
