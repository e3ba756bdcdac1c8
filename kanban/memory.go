package kanban

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/taipattern/taikit/internal/typednil"
)

// MemoryOptions configure a Memory queue. The zero value is usable.
type MemoryOptions struct {
	// Capacity is the most messages the queue holds, counting those
	// pulled and not yet settled and those waiting for a retry. 0 means
	// 1024. A worker of Consume that took a few messages at once (at
	// most 4) settles the ones it handled when it takes more or stops,
	// with one lock for both: until then they count here and in Len, and
	// not yet in QueueStats.Handled, while it runs the next ones. A
	// handler that publishes to its own queue with Publish, which waits
	// for room, can so wait for good on a queue full of messages not yet
	// handled (with a WIP of 1, on room its own worker holds): publish
	// there with TryPublish, or with a ctx that ends.
	Capacity int
	// DedupWindow is how long a published ID is remembered: a second
	// publish of it within the window is dropped. 0 means 2 minutes, as
	// JetStream's default; a negative value disables deduplication.
	DedupWindow time.Duration
	// DeadLetterLimit is the most dead letters kept; the oldest go first.
	// 0 means 1000. A dead letter keeps its message (the payload value
	// itself, without a Codec) to redrive it, until it is redriven,
	// deleted or pushed out.
	DeadLetterLimit int
	// Codec, when set, encodes payloads on Publish and decodes them on
	// delivery, as a queue on a wire would; a payload it cannot decode,
	// or panics decoding, goes to the dead letters. nil passes values
	// through unencoded (and uses JSON only to fill DeadLetter.Payload):
	// every attempt, the dead letter and a redrive then have the value
	// published itself, so what a publisher or a handler changes through
	// it (a map, a slice, a pointer) they see too; a Codec gives each
	// attempt its own decoded copy, as a queue on a wire does, and the
	// Tracer is told the size of each encoded payload
	// (Operation.BodySize).
	Codec Codec
	// Propagator carries context (a trace) from Publish to the handler in
	// the message headers; kanban/kanbanotel adapts OpenTelemetry's. nil
	// carries nothing.
	Propagator Propagator
	// Tracer records a span around each publish and each handler attempt;
	// kanban/kanbanotel implements it with OpenTelemetry. nil records
	// nothing.
	Tracer Tracer
	// Name is the queue's name in spans (messaging.destination.name). ""
	// means "kanban".
	Name string
}

// Validate reports the first field out of range, naming it.
func (o MemoryOptions) Validate() error {
	switch {
	case o.Capacity < 0:
		return optionError("kanban", "Capacity", o.Capacity, "must not be negative")
	case o.DeadLetterLimit < 0:
		return optionError("kanban", "DeadLetterLimit", o.DeadLetterLimit, "must not be negative")
	}
	// A nil pointer in an interface is not nil: it would panic in
	// Publish, and in a consumer's worker on every message.
	for _, f := range []struct {
		name string
		v    any
	}{{"Codec", o.Codec}, {"Propagator", o.Propagator}, {"Tracer", o.Tracer}} {
		if typednil.Holds(f.v) {
			return fmt.Errorf("kanban: invalid %s: a nil %T", f.name, f.v)
		}
	}
	return nil
}

// Memory is an in-process Queue: bounded, with exact WIP, deduplication,
// retries with back-off and dead letters. Its messages live as long as the
// value; use natsjs for work that must survive the process.
//
// A Memory runs no goroutine of its own and needs no Shutdown: its
// consumers are stopped through the ctx of Consume, and a message retried
// after a delay waits on a timer (time.AfterFunc) that puts it back when
// it fires.
//
// Make one with NewMemory. The zero Memory holds no message: TryPublish
// returns ErrFull and Publish waits until its ctx ends.
type Memory[T any] struct {
	opts MemoryOptions // read only
	// epoch is when the queue was made: the dedup window is timed on the
	// monotonic clock, from it.
	epoch    time.Time
	counters Counters // padded: opts is not on its cache lines
	_        [pad]byte

	// What a publish and a take touch under mu fills two cache lines,
	// which pass between the publisher's core and the consumers' with the
	// lock: the fewer they are, the less each hand-over costs.
	mu   sync.Mutex
	size int // ready + leased + waiting for retry
	// ready holds the messages to deliver, in order, by value: a publish
	// writes its message into the next slot, as a send on a channel does,
	// and a take copies it out into the lease that carries it to a
	// handler. No object passes from the publisher to the consumers and
	// back for each message.
	ready ring[memMsg[T]]
	// QueueStats.Published and, for Serve's workers, which acknowledge under
	// mu, QueueStats.Handled: counted here as the lock is held anyway.
	stored, acked int64
	waiters       []*memWaiter[T] // consumers waiting for a message, while ready is empty
	free          []*memEntry[T]  // settled leases of Pull, for reuse, at most maxFree
	space         chan struct{}   // closed when room frees; nil without waiters
	dead          []memDead[T]    // oldest first
	deadSeq       uint64          // the Seq of the last dead letter

	dedupMu sync.Mutex
	dedup   *dedupSet // nil without deduplication
	// checking, under mu, counts the publishes that hold room in size
	// while their ID is checked in dedup: a duplicate gives it back. Here,
	// not with the fields above: only a publish with deduplication writes
	// it, which takes dedupMu too. checked is closed when a check ends,
	// for awaitCheck; nil while none waits.
	checking int
	checked  chan struct{}

	// ahead holds, for each of Serve's shared workers, when the oldest
	// of the messages it took ahead of its handler and has not started
	// was stored: they wait, as the ready ones do (see Backlog). Listed
	// under mu, with deduplication only, which times messages.
	ahead []*aheadSlot
}

// aheadSlot is a shared worker's entry in Memory.ahead: the at of the
// oldest message it holds and has not started, or noneAhead. On a cache
// line of its own: the worker writes it as it starts each message of a
// batch.
type aheadSlot struct {
	at atomic.Int64
	_  [56]byte
}

// noneAhead is an aheadSlot's value while its worker holds no message it
// has not started.
const noneAhead = math.MaxInt64

// addAhead lists a slot for a shared worker, or returns nil without
// deduplication; dropAhead must follow.
func (q *Memory[T]) addAhead() *aheadSlot {
	if q.dedup == nil {
		return nil
	}
	s := new(aheadSlot)
	s.at.Store(noneAhead)
	q.mu.Lock()
	q.ahead = append(q.ahead, s)
	q.mu.Unlock()
	return s
}

// dropAhead takes the slot s of addAhead off the list.
func (q *Memory[T]) dropAhead(s *aheadSlot) {
	if s == nil {
		return
	}
	q.mu.Lock()
	for i, o := range q.ahead {
		if o == s {
			last := len(q.ahead) - 1
			q.ahead[i] = q.ahead[last]
			q.ahead[last] = nil
			q.ahead = q.ahead[:last]
			break
		}
	}
	q.mu.Unlock()
}

// setAhead stores in s, if not nil, the at of the oldest message of ls,
// messages taken and not started, or noneAhead when ls is empty.
func setAhead[T any](s *aheadSlot, ls []*memEntry[T]) {
	if s == nil {
		return
	}
	at := int64(noneAhead)
	for _, l := range ls {
		at = min(at, l.m.at)
	}
	s.at.Store(at)
}

// pad puts mu at the start of a cache line (see TestMemoryLayout).
const pad = 40

// maxFree bounds the settled leases a Memory keeps for reuse.
const maxFree = 1024

// memMsg is a stored message: as a handler gets it, with the payload
// encoded in data when the queue has a Codec. d.Attempt is the number of
// the delivery the message waits for or is in: 1 once published, one more
// after each Retry (a Release hands it back unstarted).
type memMsg[T any] struct {
	d    Delivery[T]
	data []byte
	// at is when the message was stored, in nanoseconds since the queue's
	// epoch: read for the dedup window, so kept only with deduplication
	// (see Memory.Backlog).
	at int64
}

// set writes every field of m, one by one from registers: a struct
// copied from a value just built would be read back by loads wider than
// the stores that wrote it, and wait for them.
func (m *memMsg[T]) set(id, key string, payload T, h Header, data []byte, at int64) {
	m.d.ID, m.d.Key, m.d.Payload, m.d.Headers, m.d.Attempt, m.data, m.at = id, key, payload, h, 1, data, at
}

// memDead is a dead letter of a Memory queue, with the message as it was
// stored, to redrive.
type memDead[T any] struct {
	dl DeadLetter
	m  memMsg[T]
}

// memEntry is a message taken from the queue: its Lease. Serve's shared
// workers own a few each (own), which every take refills, so handing a
// message to a handler allocates nothing and touches no memory the
// publisher writes but the ring slot; Pull's come from the queue's free
// list and go back to it once settled.
type memEntry[T any] struct {
	q   *Memory[T]
	m   memMsg[T]
	own bool
}

// memWaiter is a consumer waiting for a message: a publisher writes the
// message into e and hands e over through ch (capacity 1, so the hand-off
// never blocks), as a send to a waiting receiver on a channel does. A
// waiter of Serve's shared workers has stopped, its consumer's flag: the
// drain hands it nil instead (see waitShared).
type memWaiter[T any] struct {
	ch      chan *memEntry[T]
	e       *memEntry[T]
	stopped *atomic.Bool
}

func newMemWaiter[T any](e *memEntry[T]) *memWaiter[T] {
	return &memWaiter[T]{ch: make(chan *memEntry[T], 1), e: e}
}

// NewMemory returns an empty in-memory queue, or an error naming a bad
// field of opts.
func NewMemory[T any](opts MemoryOptions) (*Memory[T], error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	if opts.Capacity == 0 {
		opts.Capacity = 1024
	}
	if opts.DedupWindow == 0 {
		opts.DedupWindow = 2 * time.Minute
	}
	if opts.DeadLetterLimit == 0 {
		opts.DeadLetterLimit = 1000
	}
	if opts.Name == "" {
		opts.Name = "kanban"
	}
	q := &Memory[T]{opts: opts, epoch: time.Now()}
	if opts.DedupWindow > 0 {
		q.dedup = newDedupSet(int64(opts.DedupWindow))
	}
	return q, nil
}

// Publish stores msg, waiting while the queue is full until ctx ends.
// Waiting publishers are woken when a quarter of the capacity is free, so
// a full queue refills in runs; each also looks again every 10 ms, so it
// takes room that frees in smaller amounts (the consumers stopped, say)
// within that time. A repeat of an ID within the dedup window is dropped
// at once, full or not.
func (q *Memory[T]) Publish(ctx context.Context, msg Message[T]) error {
	if q.opts.Tracer != nil {
		return q.publishTraced(ctx, msg, true)
	}
	return q.publish(ctx, msg, true)
}

// TryPublish stores msg or returns ErrFull at once. A repeat of an ID
// within the dedup window is dropped, returning nil, full or not. A
// publish holds its room while its ID is checked against the window, and
// a duplicate gives it back: TryPublish waits for those checks (a map
// lookup each) before it finds the queue full, so a duplicate never makes
// another publish fail for want of room.
func (q *Memory[T]) TryPublish(ctx context.Context, msg Message[T]) error {
	if q.opts.Tracer != nil {
		return q.publishTraced(ctx, msg, false)
	}
	return q.publish(ctx, msg, false)
}

// publishTraced is publish in the span of a send. With a Codec the
// payload is encoded before the span starts, so that the Tracer is told
// its size (Operation.BodySize); the headers, which carry the span's
// trace context, are made in the span. A payload that cannot be encoded
// ends the span with the error, and a Codec that panics or calls
// runtime.Goexit ends it with ErrPublishInterrupted, as in publish.
func (q *Memory[T]) publishTraced(ctx context.Context, msg Message[T], wait bool) error {
	op := Operation{System: memorySystem, Queue: q.opts.Name, MessageID: msg.ID}
	if q.opts.Codec == nil || msg.ID == "" || ctx.Err() != nil {
		return SendTracedOp(ctx, q.opts.Tracer, op, func(ctx context.Context) error {
			return q.publish(ctx, msg, wait)
		})
	}
	encoded := false
	defer func() {
		if !encoded {
			_ = SendTracedOp(ctx, q.opts.Tracer, op, func(context.Context) error { return ErrPublishInterrupted })
		}
	}()
	data, err := q.encode(msg)
	encoded = true
	op.BodySize = len(data)
	return SendTracedOp(ctx, q.opts.Tracer, op, func(ctx context.Context) error {
		if err != nil {
			return err
		}
		return q.store(ctx, msg, data, wait)
	})
}

// memorySystem is a Memory queue's messaging.system in spans.
const memorySystem = "kanban"

func (q *Memory[T]) publish(ctx context.Context, msg Message[T], wait bool) error {
	if msg.ID == "" {
		return ErrNoID
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	var data []byte
	if q.opts.Codec != nil {
		var err error
		if data, err = q.encode(msg); err != nil {
			return err
		}
	}
	return q.store(ctx, msg, data, wait)
}

// encode returns msg's payload as the queue's Codec encodes it.
func (q *Memory[T]) encode(msg Message[T]) ([]byte, error) {
	data, err := q.opts.Codec.Marshal(msg.Payload)
	if err != nil {
		return nil, fmt.Errorf("kanban: encoding message %s: %w", msg.ID, err)
	}
	return data, nil
}

// store stores msg, with its payload encoded in data when the queue has a
// Codec, as publish says.
func (q *Memory[T]) store(ctx context.Context, msg Message[T], data []byte, wait bool) error {
	// A copy: the caller may reuse its Header for the next message.
	h := injectHeaders(ctx, q.opts.Propagator, msg.Headers, true)
	payload := msg.Payload
	if q.opts.Codec != nil {
		var zero T
		payload = zero
	}
	var now int64
	if q.dedup != nil {
		now = int64(time.Since(q.epoch))
	}
	q.mu.Lock()
	for q.size >= q.opts.Capacity {
		if q.dedup != nil {
			// A repeat of a stored ID is dropped, as JetStream drops it,
			// full or not: it takes no room, so it neither fails for want
			// of room nor waits for it (and is stored again if the wait
			// outlasts the window).
			q.dedupMu.Lock()
			dup := q.dedup.has(msg.ID, now)
			q.dedupMu.Unlock()
			if dup {
				q.mu.Unlock()
				q.counters.AddDuplicates(1)
				return nil
			}
		}
		if q.checking == 0 {
			break
		}
		// Full, perhaps only with the room of duplicates: see after
		// their checks.
		q.awaitCheck()
	}
	if q.size >= q.opts.Capacity {
		if !wait {
			q.mu.Unlock()
			return ErrFull
		}
		if err := q.waitForRoom(ctx); err != nil {
			return err
		}
		if q.dedup != nil {
			// The message is stored now, not when Publish began: its ID
			// is remembered for a whole window from here.
			now = int64(time.Since(q.epoch))
		}
	}
	q.size++
	if q.dedup != nil {
		// The ID is recorded only once room is reserved, so a duplicate is
		// never dropped in favour of a publish that then fails. The set
		// has its own lock: consumers need not wait for the map write.
		// (q.mu is taken before dedupMu, never after it.)
		q.checking++
		q.mu.Unlock()
		q.dedupMu.Lock()
		fresh := q.dedup.add(msg.ID, now)
		q.dedupMu.Unlock()
		q.mu.Lock()
		q.checking--
		if q.checked != nil {
			close(q.checked)
			q.checked = nil
		}
		if !fresh {
			q.settled(1)
			q.mu.Unlock()
			q.counters.AddDuplicates(1)
			return nil
		}
	}
	q.stored++
	if w := q.popWaiter(); w != nil {
		q.mu.Unlock()
		w.e.m.set(msg.ID, msg.Key, payload, h, data, now)
		w.ch <- w.e
		return nil
	}
	q.ready.addBack().set(msg.ID, msg.Key, payload, h, data, now)
	q.mu.Unlock()
	return nil
}

// awaitCheck waits, with q.mu held, until one of the publishes that hold
// room while their IDs are checked (checking > 0) has its answer, and
// returns with q.mu held. A duplicate gives its room back, so a queue
// full only with such room is not full: a check is a map lookup, and no
// publish reserves room while the queue is full, so a caller that waits
// while it is full and checks are under way waits briefly.
func (q *Memory[T]) awaitCheck() {
	if q.checked == nil {
		q.checked = make(chan struct{})
	}
	ch := q.checked
	q.mu.Unlock()
	<-ch
	q.mu.Lock()
}

// popWaiter returns a consumer waiting for a message, taken off the list,
// or nil. Consumers wait only while ready is empty, so the message handed
// to it is next either way. Called with q.mu held.
func (q *Memory[T]) popWaiter() *memWaiter[T] {
	n := len(q.waiters)
	if n == 0 {
		return nil
	}
	w := q.waiters[n-1]
	q.waiters[n-1] = nil
	q.waiters = q.waiters[:n-1]
	return w
}

// put hands m, a message taken before, back to be delivered again, at
// the front or the back.
func (q *Memory[T]) put(m *memMsg[T], front bool) {
	q.mu.Lock()
	if w := q.popWaiter(); w != nil {
		q.mu.Unlock()
		w.e.m = *m
		w.ch <- w.e
		return
	}
	if front {
		*q.ready.addFront() = *m
	} else {
		*q.ready.addBack() = *m
	}
	q.mu.Unlock()
}

// putFront hands ms, messages taken before and not started, back first
// in line in their order, in one locked step. Put back one at a time, the
// last first, the last would go straight to a consumer waiting, ahead of
// the others: out of their order, of one key's order with PerKey.
func (q *Memory[T]) putFront(ms []*memMsg[T]) {
	q.mu.Lock()
	for i := len(ms) - 1; i >= 0; i-- {
		*q.ready.addFront() = *ms[i]
	}
	// Consumers wait only while ready is empty: hand them the first.
	for q.ready.len() > 0 {
		w := q.popWaiter()
		if w == nil {
			break
		}
		q.ready.takeFront(&w.e.m)
		w.ch <- w.e // a listed waiter has been handed nothing: never blocks
	}
	q.mu.Unlock()
}

// releaseAll releases ls, leases of Pull not started, as putFront does.
func (q *Memory[T]) releaseAll(ls []Lease[T]) {
	ms := make([]*memMsg[T], len(ls))
	for i, l := range ls {
		ms[i] = &l.(*memEntry[T]).m
	}
	q.putFront(ms)
	for _, l := range ls {
		l.(*memEntry[T]).recycle()
	}
}

// entry returns a lease for Pull to fill: a settled one or a new one.
// Called with q.mu held.
func (q *Memory[T]) entry() *memEntry[T] {
	if n := len(q.free); n > 0 {
		e := q.free[n-1]
		q.free[n-1] = nil
		q.free = q.free[:n-1]
		return e
	}
	return &memEntry[T]{q: q}
}

// take returns the next message in a lease of its own, waiting for one
// while stop is open, through w. It returns ok false when stop closed
// first.
func (q *Memory[T]) take(w *memWaiter[T], stop <-chan struct{}) (e *memEntry[T], ok bool) {
	q.mu.Lock()
	if q.ready.len() > 0 {
		e = q.entry()
		q.ready.takeFront(&e.m)
		q.mu.Unlock()
		return e, true
	}
	if w.e == nil {
		w.e = q.entry()
	}
	q.waiters = append(q.waiters, w)
	q.mu.Unlock()
	select {
	case e := <-w.ch:
		w.e = nil // handed out: the next wait takes another
		return e, true
	case <-stop:
	}
	q.mu.Lock()
	for i, o := range q.waiters {
		if o == w {
			last := len(q.waiters) - 1
			copy(q.waiters[i:], q.waiters[i+1:])
			q.waiters[last] = nil
			q.waiters = q.waiters[:last]
			q.mu.Unlock()
			return nil, false
		}
	}
	q.mu.Unlock()
	// A publisher took w off the list and is handing a message over: put
	// it back first in line, as it was.
	e = <-w.ch
	q.put(&e.m, true)
	e.m = memMsg[T]{}
	return nil, false
}

// takeMore moves up to len(out) ready messages into leases in out
// without waiting and returns how many it moved.
func (q *Memory[T]) takeMore(out []Lease[T]) int {
	q.mu.Lock()
	n := min(len(out), q.ready.len())
	for i := range n {
		e := q.entry()
		q.ready.takeFront(&e.m)
		out[i] = e
	}
	q.mu.Unlock()
	return n
}

// takeBatch acknowledges acked messages and counts them handled, then
// copies ready messages into out's leases and returns how many: one, or
// more while the ready messages are many per consumer (share is their
// number), so that a consumer taking a few leaves plenty for the others.
// The messages after the first wait in the worker: ahead, its slot (nil
// without deduplication), says since when. One lock for all of it.
func (q *Memory[T]) takeBatch(acked int, out []*memEntry[T], share int, ahead *aheadSlot) (n int) {
	q.mu.Lock()
	q.acked += int64(acked)
	q.settled(acked)
	r := q.ready.len()
	n = min(len(out), max(1, r/share), r)
	for i := range n {
		q.ready.takeFront(&out[i].m)
	}
	if n > 1 {
		// In the same locked step: Backlog sees them either in ready or
		// here.
		setAhead(ahead, out[1:n])
	}
	q.mu.Unlock()
	return n
}

// waitShared is take for Serve's shared workers, into w.e: it blocks on
// the waiter's channel alone, which is cheaper to wake than a select, and
// learns of the drain from a nil that wakeStopped hands it. It returns
// false once the consumer is stopping. A waiter whose consumer is
// stopping is not listed.
func (q *Memory[T]) waitShared(w *memWaiter[T]) (ok bool) {
	q.mu.Lock()
	if q.ready.len() > 0 {
		q.ready.takeFront(&w.e.m)
		q.mu.Unlock()
		return true
	}
	// Checked under mu: a drain that set the flag before wakeStopped
	// took mu is seen here; one that sets it later finds w listed.
	if w.stopped.Load() {
		q.mu.Unlock()
		return false
	}
	q.waiters = append(q.waiters, w)
	q.mu.Unlock()
	return <-w.ch != nil
}

// wakeStopped hands nil to every listed waiter whose consumer's flag is
// stopped. A listed waiter has been handed nothing yet, so its channel
// has room.
func (q *Memory[T]) wakeStopped(stopped *atomic.Bool) {
	q.mu.Lock()
	kept := q.waiters[:0]
	for _, w := range q.waiters {
		if w.stopped == stopped {
			w.ch <- nil
			continue
		}
		kept = append(kept, w)
	}
	clear(q.waiters[len(kept):])
	q.waiters = kept
	q.mu.Unlock()
}

// settled frees the room of n settled messages. Called with q.mu held.
// Waiting publishers are woken once a quarter of the capacity is free, so
// a full queue refills in runs rather than one message per wake-up.
func (q *Memory[T]) settled(n int) {
	q.size -= n
	if q.space != nil && q.opts.Capacity-q.size >= max(1, q.opts.Capacity/4) {
		close(q.space)
		q.space = nil
	}
}

// waitForRoom waits, with q.mu held, until the queue has room, and returns
// with q.mu held; or returns ctx's error, with q.mu released, when ctx
// ends first. It is the slow path of a publish, apart so that the fast
// one keeps no timer and no deferred call.
func (q *Memory[T]) waitForRoom(ctx context.Context) error {
	recheck := time.NewTimer(publishRecheck)
	defer recheck.Stop()
	for q.size >= q.opts.Capacity {
		if q.space == nil {
			q.space = make(chan struct{})
		}
		ch := q.space
		q.mu.Unlock()
		select {
		case <-ch:
		case <-recheck.C:
		case <-ctx.Done():
			return ctx.Err()
		}
		recheck.Reset(publishRecheck)
		q.mu.Lock()
	}
	return nil
}

// publishRecheck is how often a waiting Publish looks for room it was not
// woken for: see Publish.
const publishRecheck = 10 * time.Millisecond

// Consume runs h on the queue's messages until ctx ends, then drains; see
// Serve. Several Consume calls may share one queue; each has its own WIP.
//
// Without PerKey, a backlog is taken a few messages at a time (at most 4
// per worker, and no more than ready/WIP): the messages a worker has
// taken wait for the handler before them, as with a prefetch, and go back
// to the front of the queue when that handler returns, if the drain has
// started by then: until it returns, another consumer of the queue cannot
// have them. A message whose handler the drain's deadline cut off is
// released to the front first and those behind it then go in front of
// it: without PerKey no order is kept (a, b, c, d may come back as b, c,
// d, a).
func (q *Memory[T]) Consume(ctx context.Context, h Handler[T], opts ConsumeOptions) error {
	return Serve(ctx, &memSource[T]{q: q}, h, opts, Runtime{
		Propagator: q.opts.Propagator, Counters: &q.counters,
		Tracer: q.opts.Tracer, System: memorySystem, Queue: q.opts.Name,
	})
}

// DeadLetters returns a copy of the dead letters kept, oldest first, with
// copies of their headers and payloads.
func (q *Memory[T]) DeadLetters(ctx context.Context) ([]DeadLetter, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	out := make([]DeadLetter, len(q.dead))
	for i := range q.dead {
		d := &q.dead[i].dl
		out[i] = *d
		out[i].Headers = d.Headers.Clone()
		out[i].Payload = bytes.Clone(d.Payload)
	}
	return out, nil
}

// Stats returns the queue's counts.
func (q *Memory[T]) Stats() QueueStats {
	s := q.counters.Snapshot()
	q.mu.Lock()
	s.Published = q.stored
	s.Handled += q.acked
	q.mu.Unlock()
	return s
}

// Len returns the number of messages held: queued, in flight and waiting
// for a retry.
func (q *Memory[T]) Len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.size
}

// memSource is one consumer's view of a Memory queue. Its Pull is for
// Serve's pull loop; without PerKey, Serve's workers take messages from
// the queue directly (see serveShared).
type memSource[T any] struct {
	q    *Memory[T]
	w    *memWaiter[T]
	pull []Lease[T] // Pull's result, reused: Serve dispatches it before pulling again
}

func (s *memSource[T]) HeartbeatInterval() time.Duration { return 0 }

// Pull takes at most max messages; Serve asks for one at least.
func (s *memSource[T]) Pull(ctx context.Context, max int) ([]Lease[T], error) {
	if s.w == nil {
		s.w = newMemWaiter[T](nil)
	}
	if cap(s.pull) < max {
		s.pull = make([]Lease[T], max)
	}
	out := s.pull[:max]
	e, ok := s.q.take(s.w, ctx.Done())
	if !ok {
		return nil, ctx.Err()
	}
	out[0] = e
	n := 1 + s.q.takeMore(out[1:])
	return out[:n], nil
}

// BodySize returns the size of the message's payload as the queue's
// Codec encoded it; 0 without a Codec, which holds the value, not bytes
// (BodySizer).
func (e *memEntry[T]) BodySize() int { return len(e.m.data) }

func (e *memEntry[T]) ID() string   { return e.m.d.ID }
func (e *memEntry[T]) Key() string  { return e.m.d.Key }
func (e *memEntry[T]) Attempt() int { return e.m.d.Attempt }

func (e *memEntry[T]) Message() (Message[T], error) {
	m := e.m.d.Message
	if e.q.opts.Codec == nil {
		return m, nil
	}
	var p T
	err := e.q.opts.Codec.Unmarshal(e.m.data, &p)
	m.Payload = p
	return m, err
}

func (e *memEntry[T]) Ack(context.Context) error {
	q := e.q
	e.m = memMsg[T]{}
	q.mu.Lock()
	q.settled(1)
	q.keep(e)
	q.mu.Unlock()
	return nil
}

func (e *memEntry[T]) Extend(context.Context) error { return nil }

// setAttempt implements attemptCounter: Retry counts on from n.
func (e *memEntry[T]) setAttempt(n int) { e.m.d.Attempt = n }

func (e *memEntry[T]) Release(context.Context) error {
	e.q.put(&e.m, true)
	e.recycle()
	return nil
}

func (e *memEntry[T]) Retry(_ context.Context, delay time.Duration) error {
	q := e.q
	e.m.d.Attempt++
	if delay <= 0 {
		q.put(&e.m, false)
	} else {
		m := e.m
		time.AfterFunc(delay, func() { q.put(&m, false) })
	}
	e.recycle()
	return nil
}

// DeadLetter keeps the message among the dead letters. Without a Codec
// the dead letter's Payload is the JSON of the value, as best it can be
// had: empty when it cannot be encoded, or its MarshalJSON panics or
// calls runtime.Goexit. The message is dead-lettered all the same, even
// when the goroutine ends, so that it is neither lost nor holds its room.
func (e *memEntry[T]) DeadLetter(_ context.Context, reason string, attempts int) error {
	d := memDead[T]{dl: DeadLetter{
		ID: e.m.d.ID, Key: e.m.d.Key, Headers: e.m.d.Headers.Clone(),
		Payload: e.m.data, Reason: reason, Attempts: attempts, Time: time.Now(),
	}, m: e.m}
	defer e.storeDead(&d) // also when MarshalJSON ends the goroutine
	if e.q.opts.Codec == nil {
		d.dl.Payload = jsonOf(e.m.d.Payload)
	}
	return nil
}

// jsonOf returns the JSON of v, or nil when it cannot be had: v cannot be
// encoded, or its MarshalJSON panics.
func jsonOf(v any) (b []byte) {
	defer func() {
		if recover() != nil {
			b = nil
		}
	}()
	b, _ = JSON{}.Marshal(v)
	return b
}

// storeDead adds d, the dead letter of e's message, to the queue's and
// settles e.
func (e *memEntry[T]) storeDead(d *memDead[T]) {
	q := e.q
	e.m = memMsg[T]{}
	q.mu.Lock()
	if len(q.dead) >= q.opts.DeadLetterLimit {
		// The oldest goes: the slice moves past it. Moving every other
		// letter down one would copy the whole store, under mu, for each
		// dead letter once the limit is reached; append moves them only
		// when the slice reaches the end of its array, a few times in a
		// letter's life.
		q.dead[0] = memDead[T]{}
		q.dead = q.dead[1:]
	}
	q.deadSeq++
	d.dl.Seq = q.deadSeq
	q.dead = append(q.dead, *d)
	q.settled(1)
	q.keep(e)
	q.mu.Unlock()
}

// recycle clears a lease whose message has gone back to the queue and
// keeps it for reuse.
func (e *memEntry[T]) recycle() {
	e.m = memMsg[T]{}
	if !e.own {
		e.q.mu.Lock()
		e.q.keep(e)
		e.q.mu.Unlock()
	}
}

// keep adds a cleared lease of Pull to the free list, unless it is full;
// a shared worker's stays with it. Called with q.mu held.
func (q *Memory[T]) keep(e *memEntry[T]) {
	if !e.own && len(q.free) < maxFree {
		q.free = append(q.free, e)
	}
}
