package kanban

import (
	"bytes"
	"context"
	"fmt"
	"time"
)

var (
	_ DeadLetterStore = (*Memory[int])(nil)
	_ BacklogReader   = (*Memory[int])(nil)
)

// ListDeadLetters returns a page of the dead letters q matches, with
// copies of their headers and payloads.
func (q *Memory[T]) ListDeadLetters(ctx context.Context, query DeadLetterQuery) (DeadLetterPage, error) {
	if err := query.Validate(); err != nil {
		return DeadLetterPage{}, err
	}
	if err := ctx.Err(); err != nil {
		return DeadLetterPage{}, err
	}
	query = query.WithDefaults()
	q.mu.Lock()
	defer q.mu.Unlock()
	page := DeadLetterPage{Letters: []DeadLetter{}, Total: len(q.dead)}
	n := len(q.dead)
	for i := range n {
		d := &q.dead[i].dl
		if query.Newest {
			d = &q.dead[n-1-i].dl
		}
		if !query.After(d.Seq) || !query.Filter.Match(d) {
			continue
		}
		if len(page.Letters) == query.Limit {
			page.Next = page.Letters[len(page.Letters)-1].Seq
			break
		}
		c := *d
		c.Headers = d.Headers.Clone()
		c.Payload = bytes.Clone(d.Payload)
		page.Letters = append(page.Letters, c)
	}
	return page, nil
}

// RedriveDeadLetters moves the dead letters f matches back to the queue,
// oldest first, as new messages (Attempt 1) with their ID, Key, headers
// and payload — the value itself, for a queue without a Codec — and the
// trace context of ctx injected by the Propagator. The dead letter goes
// and the message comes in one locked step, so a redrive is exactly once:
// nothing is lost or doubled. The move skips the deduplication window (the
// ID was stored before): it is neither checked against the window nor
// recorded in it again. A redriven message joins the back of the line,
// behind the messages of its key already waiting, and its age (Backlog)
// is timed from the redrive. It fails with ErrFull, leaving the dead letters
// not moved, once the queue has no room: it never waits for it, only,
// when the queue has too little room for every letter f matches, for
// publishes whose IDs are being checked against the dedup window, as
// TryPublish does (a duplicate among them gives its room back). A Tracer
// or Propagator that panics (the panic goes on to the caller) or calls
// runtime.Goexit loses no message: those moved go to the queue.
func (q *Memory[T]) RedriveDeadLetters(ctx context.Context, f DeadLetterFilter) (int, error) {
	if err := f.Validate(); err != nil {
		return 0, err
	}
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	var now int64
	if q.dedup != nil {
		now = int64(time.Since(q.epoch))
	}
	var (
		moved []memMsg[T]
		found bool
		seen  *DeadLetter // the one of f.Seq, not matching f
		err   error
	)
	q.mu.Lock()
	// Each letter moved takes room: while the queue has too little for
	// all of them, a duplicate's publish may give its room back.
	for q.checking > 0 && q.opts.Capacity-q.size < q.countDead(f) {
		q.awaitCheck()
	}
	kept := q.dead[:0]
	for _, d := range q.dead {
		if !f.Match(&d.dl) {
			if f.Seq != 0 && d.dl.Seq == f.Seq {
				seen = &d.dl
			}
			kept = append(kept, d)
			continue
		}
		found = true
		if err == nil && q.size >= q.opts.Capacity {
			err = fmt.Errorf("kanban: redriving dead letter %d (message %s): %w", d.dl.Seq, d.dl.ID, ErrFull)
		}
		if err != nil {
			kept = append(kept, d)
			continue
		}
		q.size++
		m := d.m
		m.d.Attempt, m.at = 1, now
		moved = append(moved, m)
	}
	clear(q.dead[len(kept):])
	q.dead = kept
	q.mu.Unlock()
	q.counters.AddRedriven(int64(len(moved)))
	i := 0
	defer func() {
		// The Tracer or the Propagator panicked or ended the goroutine
		// (runtime.Goexit): the messages moved and not yet in the queue
		// go in all the same, untraced, as their room is taken.
		for ; i < len(moved); i++ {
			q.put(&moved[i], false)
		}
	}()
	for i < len(moved) {
		m := &moved[i]
		// SendTracedOp ends the span with ErrPublishInterrupted when the
		// Propagator panics or ends the goroutine.
		op := Operation{System: memorySystem, Queue: q.opts.Name, MessageID: m.d.ID, BodySize: len(m.data)}
		_ = SendTracedOp(ctx, q.opts.Tracer, op, func(sctx context.Context) error {
			m.d.Headers = InjectHeaders(sctx, q.opts.Propagator, m.d.Headers)
			i++
			q.put(m, false)
			return nil
		})
	}
	if err == nil && f.Seq != 0 && !found {
		err = seqNotMatched("redriving", f, seen)
	}
	return len(moved), err
}

// seqNotMatched returns the error of an operation whose filter f, naming
// a Seq, matched no dead letter: a *DeadLetterMismatchError when the dead
// letter of that Seq is kept (seen), else ErrDeadLetterNotFound.
func seqNotMatched(op string, f DeadLetterFilter, seen *DeadLetter) error {
	if seen == nil {
		return fmt.Errorf("kanban: %s dead letter %d: %w", op, f.Seq, ErrDeadLetterNotFound)
	}
	d := *seen
	d.Headers, d.Payload = nil, nil
	return &DeadLetterMismatchError{Op: op, Letter: d, Filter: f}
}

// countDead returns the number of dead letters f matches. Called with q.mu
// held.
func (q *Memory[T]) countDead(f DeadLetterFilter) int {
	n := 0
	for i := range q.dead {
		if f.Match(&q.dead[i].dl) {
			n++
		}
	}
	return n
}

// DeleteDeadLetters removes the dead letters f matches.
func (q *Memory[T]) DeleteDeadLetters(ctx context.Context, f DeadLetterFilter) (int, error) {
	if err := f.Validate(); err != nil {
		return 0, err
	}
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	var seen *DeadLetter // the one of f.Seq, not matching f
	q.mu.Lock()
	kept := q.dead[:0]
	for _, d := range q.dead {
		if !f.Match(&d.dl) {
			if f.Seq != 0 && d.dl.Seq == f.Seq {
				seen = &d.dl
			}
			kept = append(kept, d)
		}
	}
	n := len(q.dead) - len(kept)
	clear(q.dead[len(kept):])
	q.dead = kept
	q.mu.Unlock()
	if n == 0 && f.Seq != 0 {
		return 0, seqNotMatched("deleting", f, seen)
	}
	return n, nil
}

// Backlog returns the messages held (Len), the dead letters kept, and the
// age of the message at the head of the line: the next to be delivered,
// timed from when it was published (or redriven); or of an older one that a worker of
// Consume took ahead of the handler it runs (see Consume) and has not
// started, as it waits too. That is the oldest waiting message unless a
// retried one, which goes to the back of the line, is older; messages
// being handled or waiting for their retry's delay are not counted, nor,
// with PerKey, those a consumer pulled that wait in it behind their key.
// The age is known only with deduplication on (the default), which reads
// the clock at each publish anyway: with a negative DedupWindow
// OldestKnown is false, and publishing reads no clock for it.
func (q *Memory[T]) Backlog(ctx context.Context) (Backlog, error) {
	if err := ctx.Err(); err != nil {
		return Backlog{}, err
	}
	var now int64
	if q.dedup != nil {
		now = int64(time.Since(q.epoch))
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	b := Backlog{Depth: int64(q.size), DeadLetters: int64(len(q.dead)), OldestKnown: q.dedup != nil}
	if !b.OldestKnown {
		return b, nil
	}
	at := int64(noneAhead)
	if q.ready.len() > 0 {
		at = q.ready.front().at
	}
	for _, s := range q.ahead {
		at = min(at, s.at.Load())
	}
	if at != noneAhead {
		b.Oldest = time.Duration(max(0, now-at))
	}
	return b, nil
}
