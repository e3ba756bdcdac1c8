package kanban

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
)

// MemoryConfig configures a Memory queue. The zero value is usable.
type MemoryConfig struct {
	// Capacity is the most messages the queue holds, counting those
	// pulled and not yet settled and those waiting for a retry. 0 means
	// 1024.
	Capacity int
	// DedupWindow is how long a published ID is remembered: a second
	// publish of it within the window is dropped. 0 means 2 minutes, as
	// JetStream's default; a negative value disables deduplication.
	DedupWindow time.Duration
	// DeadLetterLimit is the most dead letters kept; the oldest go first.
	// 0 means 1000.
	DeadLetterLimit int
	// Codec, when set, encodes payloads on Publish and decodes them on
	// delivery, as a queue on a wire would; a payload it cannot decode
	// goes to the dead letters. nil passes values through unencoded (and
	// uses JSON only to fill DeadLetter.Payload).
	Codec Codec
	// Propagator carries trace context in headers. nil means
	// otel.GetTextMapPropagator().
	Propagator propagation.TextMapPropagator
	// Clock times retries and the dedup window. nil means the system
	// clock.
	Clock Clock
}

// Validate reports the first field out of range, naming it.
func (c MemoryConfig) Validate() error {
	switch {
	case c.Capacity < 0:
		return optionError("kanban", "Capacity", c.Capacity, "must not be negative")
	case c.DeadLetterLimit < 0:
		return optionError("kanban", "DeadLetterLimit", c.DeadLetterLimit, "must not be negative")
	}
	return nil
}

// Memory is an in-process Queue: bounded, with exact WIP, deduplication,
// retries with back-off and dead letters. Its messages live as long as the
// value; use natsjs for work that must survive the process.
type Memory[T any] struct {
	cfg MemoryConfig // read only
	// onGlobal says cfg.Propagator is otel's global one, which publish
	// skips while none is registered (see unsetGlobal).
	onGlobal bool
	counters Counters // padded: cfg is not on its cache lines
	// spare is an entry ready for the next publish, taken without the
	// lock; it is refilled from free while a publisher holds mu.
	spare atomic.Pointer[memEntry[T]]
	_     [72]byte // puts mu at the start of a cache line (see TestMemoryLayout)

	// What a publish and a take touch under mu fills two cache lines,
	// which pass between the publisher's core and the consumers' with the
	// lock: the fewer they are, the less each hand-over costs.
	mu    sync.Mutex
	size  int                // ready + leased + waiting for retry
	ready ring[*memEntry[T]] // in delivery order
	// Stats.Published and, for Serve's workers, which acknowledge under
	// mu, Stats.Handled: counted here as the lock is held anyway.
	stored, acked int64
	waiters       []*memWaiter[T] // consumers waiting for a message, while ready is empty
	free          []*memEntry[T]  // settled entries for reuse, at most maxFree
	space         chan struct{}   // closed when room frees; nil without waiters
	dead          []DeadLetter

	dedupMu sync.Mutex
	dedup   *dedupSet // nil without deduplication
}

// maxFree bounds the settled entries a Memory keeps for reuse.
const maxFree = 1024

// memEntry is a stored message. Pulled, it is also the Lease: it goes
// back to the queue's free list once settled by Ack or DeadLetter, so a
// message costs no allocation in steady state.
type memEntry[T any] struct {
	q *Memory[T]
	// d is the message as a handler gets it. d.Attempt is the number of
	// the delivery the entry is waiting for or in: 1 once published, one
	// more after each Retry (a Release hands it back unstarted). Only the
	// entry's holder writes d, so a consumer taking the entry only reads
	// it, and Serve's shared workers hand it to the handler from here
	// without a copy of their own (see delivery).
	d       Delivery[T]
	data    []byte      // the encoded payload, with a Codec
	carrier lazyCarrier // for InjectTrace, without allocating
}

// memWaiter is a consumer waiting for a message: a publisher hands it one
// directly through ch (capacity 1, so the hand-off never blocks). A
// waiter of Serve's shared workers has stopped, its consumer's flag: the
// drain hands it nil instead (see waitShared).
type memWaiter[T any] struct {
	ch      chan *memEntry[T]
	stopped *atomic.Bool
}

func newMemWaiter[T any]() *memWaiter[T] { return &memWaiter[T]{ch: make(chan *memEntry[T], 1)} }

// NewMemory returns an empty in-memory queue, or an error naming a bad
// field of cfg.
func NewMemory[T any](cfg MemoryConfig) (*Memory[T], error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Capacity == 0 {
		cfg.Capacity = 1024
	}
	if cfg.DedupWindow == 0 {
		cfg.DedupWindow = 2 * time.Minute
	}
	if cfg.DeadLetterLimit == 0 {
		cfg.DeadLetterLimit = 1000
	}
	onGlobal := cfg.Propagator == nil
	if onGlobal {
		cfg.Propagator = otel.GetTextMapPropagator()
	}
	cfg.Clock = clockOr(cfg.Clock)
	q := &Memory[T]{cfg: cfg, onGlobal: onGlobal && unsetGlobal != nil}
	if cfg.DedupWindow > 0 {
		q.dedup = newDedupSet(int64(cfg.DedupWindow))
	}
	return q, nil
}

// InjectTrace returns h with the trace context of ctx added by p. It
// copies h before writing and returns h itself when p adds nothing.
func InjectTrace(ctx context.Context, p propagation.TextMapPropagator, h Header) Header {
	c := &lazyCarrier{}
	return c.inject(ctx, p, h)
}

// unsetGlobal is otel's global propagator as long as none is registered,
// when it injects nothing, yet takes a lock on each call: a queue on it
// skips the call (see Memory.onGlobal). otel.SetTextMapPropagator replaces what
// otel.GetTextMapPropagator returns, so a propagator registered later is
// seen at once. It is nil if one was registered before this package was
// initialised (then no call is skipped).
var unsetGlobal = func() propagation.TextMapPropagator {
	p := otel.GetTextMapPropagator()
	if fmt.Sprintf("%T", p) != "*global.textMapPropagator" {
		return nil
	}
	return p
}()

// lazyCarrier copies the headers on the first Set, so a publish without
// trace context allocates nothing.
type lazyCarrier struct{ src, dst Header }

func (c *lazyCarrier) inject(ctx context.Context, p propagation.TextMapPropagator, h Header) Header {
	if p == nil {
		return h
	}
	c.src, c.dst = h, nil
	p.Inject(ctx, c)
	out := h
	if c.dst != nil {
		out = c.dst
	}
	c.src, c.dst = nil, nil
	return out
}

func (c *lazyCarrier) Get(k string) string { return c.cur().Get(k) }
func (c *lazyCarrier) Keys() []string      { return c.cur().Keys() }
func (c *lazyCarrier) Set(k, v string) {
	if c.dst == nil {
		c.dst = make(Header, len(c.src)+2)
		for hk, hv := range c.src {
			c.dst[hk] = hv
		}
	}
	c.dst[k] = v
}
func (c *lazyCarrier) cur() Header {
	if c.dst != nil {
		return c.dst
	}
	return c.src
}

// Publish stores msg, waiting while the queue is full until ctx ends.
func (q *Memory[T]) Publish(ctx context.Context, msg Message[T]) error {
	return q.publish(ctx, msg, true)
}

// TryPublish stores msg or returns ErrFull at once.
func (q *Memory[T]) TryPublish(ctx context.Context, msg Message[T]) error {
	return q.publish(ctx, msg, false)
}

func (q *Memory[T]) publish(ctx context.Context, msg Message[T], wait bool) error {
	if msg.ID == "" {
		return ErrNoID
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	e := q.spare.Swap(nil)
	if e == nil {
		e = &memEntry[T]{q: q}
	}
	// Every field is written: a reused entry keeps nothing of its last
	// message. They are written one by one, from msg's registers: a
	// struct copy would read msg back from its spill slots with loads
	// wider than the stores that just put it there, and wait for them.
	e.d.ID, e.d.Key, e.d.Payload = msg.ID, msg.Key, msg.Payload
	e.d.Attempt, e.data = 1, nil
	p := q.cfg.Propagator
	if q.onGlobal && otel.GetTextMapPropagator() == unsetGlobal {
		p = nil // none registered yet: nothing to inject
	}
	e.d.Headers = e.carrier.inject(ctx, p, msg.Headers)
	if q.cfg.Codec != nil {
		data, err := q.cfg.Codec.Marshal(msg.Payload)
		if err != nil {
			q.recycle(e)
			return err
		}
		e.data = data
		var zero T
		e.d.Payload = zero
	}
	var now int64
	if q.dedup != nil {
		now = q.cfg.Clock.Now().UnixNano()
	}
	q.mu.Lock()
	for q.size >= q.cfg.Capacity {
		if !wait {
			q.mu.Unlock()
			q.recycle(e)
			return ErrFull
		}
		if q.space == nil {
			q.space = make(chan struct{})
		}
		ch := q.space
		q.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			q.recycle(e)
			return ctx.Err()
		}
		q.mu.Lock()
	}
	q.size++
	if q.dedup != nil {
		// The ID is recorded only once room is reserved, so a duplicate is
		// never dropped in favour of a publish that then fails. The set
		// has its own lock: consumers need not wait for the map write.
		q.mu.Unlock()
		q.dedupMu.Lock()
		fresh := q.dedup.add(msg.ID, now)
		q.dedupMu.Unlock()
		q.mu.Lock()
		if !fresh {
			q.done()
			*e = memEntry[T]{q: q}
			q.keep(e)
			q.mu.Unlock()
			q.counters.AddDuplicates(1)
			return nil
		}
	}
	w := q.enqueue(e, false)
	q.stored++
	var spare *memEntry[T]
	if n := len(q.free); n > 0 && q.spare.Load() == nil {
		spare = q.free[n-1]
		q.free[n-1] = nil
		q.free = q.free[:n-1]
	}
	q.mu.Unlock()
	if spare != nil {
		// Stored outside the lock, which this full fence would hold
		// longer. Should another publisher have stored one meanwhile, the
		// garbage collector has it.
		q.spare.Store(spare)
	}
	if w != nil {
		w.ch <- e
	}
	return nil
}

// enqueue adds e to the ready messages, at the front or the back, or
// returns a waiting consumer to hand e to once q.mu is released. Called
// with q.mu held.
func (q *Memory[T]) enqueue(e *memEntry[T], front bool) *memWaiter[T] {
	if n := len(q.waiters); n > 0 {
		// Consumers wait only while ready is empty, so e is next either
		// way.
		w := q.waiters[n-1]
		q.waiters[n-1] = nil
		q.waiters = q.waiters[:n-1]
		return w
	}
	if front {
		q.ready.pushFront(e)
	} else {
		q.ready.pushBack(e)
	}
	return nil
}

// put hands e back to be delivered again.
func (q *Memory[T]) put(e *memEntry[T], front bool) {
	q.mu.Lock()
	w := q.enqueue(e, front)
	q.mu.Unlock()
	if w != nil {
		w.ch <- e
	}
}

// take acknowledges done (when not nil), then returns the next message,
// waiting for one while stop is open, and whether more are ready behind
// it. It returns ok false when stop closed first.
func (q *Memory[T]) take(done *memEntry[T], w *memWaiter[T], stop <-chan struct{}) (e *memEntry[T], more, ok bool) {
	if e, more := q.takeReady(done); e != nil {
		return e, more, true
	}
	return q.wait(w, stop)
}

// takeReady acknowledges done (when not nil) and counts it handled, then
// returns the next ready message and whether more are ready behind it, or
// nil when none is: one lock for both.
func (q *Memory[T]) takeReady(done *memEntry[T]) (e *memEntry[T], more bool) {
	if done != nil {
		*done = memEntry[T]{q: q}
	}
	q.mu.Lock()
	if done != nil {
		q.acked++
		q.done()
		q.keep(done)
	}
	if q.ready.len() == 0 {
		q.mu.Unlock()
		return nil, false
	}
	e = q.ready.popFront()
	more = q.ready.len() > 0
	q.mu.Unlock()
	return e, more
}

// takeBatch acknowledges the entries of done and counts them handled, then
// moves ready messages into out and returns how many, and whether more
// are ready behind them: one, or more while the ready messages are many
// per consumer (share is their number), so that a consumer taking a few
// leaves plenty for the others. One lock for all of it.
func (q *Memory[T]) takeBatch(done, out []*memEntry[T], share int) (n int, more bool) {
	for _, d := range done {
		*d = memEntry[T]{q: q}
	}
	q.mu.Lock()
	q.acked += int64(len(done))
	for _, d := range done {
		q.done()
		q.keep(d)
	}
	r := q.ready.len()
	n = min(len(out), max(1, r/share), r)
	for i := range n {
		out[i] = q.ready.popFront()
	}
	q.mu.Unlock()
	return n, r > n
}

// wait returns the next message, waiting for one while stop is open, and
// whether more are ready behind it. It returns ok false when stop closed
// first.
func (q *Memory[T]) wait(w *memWaiter[T], stop <-chan struct{}) (e *memEntry[T], more, ok bool) {
	if e, more, _ := q.enlist(w); e != nil {
		return e, more, true
	}
	select {
	case e := <-w.ch:
		return e, false, true
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
			return nil, false, false
		}
	}
	q.mu.Unlock()
	// A publisher took w off the list and is handing a message over: put
	// it back first in line, as it was.
	q.put(<-w.ch, true)
	return nil, false, false
}

// enlist takes the next ready message and reports whether more are ready
// behind it, or else lists w as waiting for one (listed). A shared
// worker's waiter whose consumer is stopping is not listed.
func (q *Memory[T]) enlist(w *memWaiter[T]) (e *memEntry[T], more, listed bool) {
	q.mu.Lock()
	if q.ready.len() > 0 {
		e = q.ready.popFront()
		more = q.ready.len() > 0
		q.mu.Unlock()
		return e, more, false
	}
	// Checked under mu: a drain that set the flag before wakeStopped
	// took mu is seen here; one that sets it later finds w listed.
	if w.stopped != nil && w.stopped.Load() {
		q.mu.Unlock()
		return nil, false, false
	}
	q.waiters = append(q.waiters, w)
	q.mu.Unlock()
	return nil, false, true
}

// waitShared is wait for Serve's shared workers: it blocks on the
// waiter's channel alone, which is cheaper to wake than a select, and
// learns of the drain from a nil that wakeStopped hands it. It returns ok
// false once the consumer is stopping.
func (q *Memory[T]) waitShared(w *memWaiter[T]) (e *memEntry[T], more, ok bool) {
	e, more, listed := q.enlist(w)
	if e != nil {
		return e, more, true
	}
	if !listed {
		return nil, false, false
	}
	if e = <-w.ch; e == nil {
		return nil, false, false
	}
	return e, false, true
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

// takeMore moves up to len(out) ready messages into out without waiting
// and returns how many it moved.
func (q *Memory[T]) takeMore(out []Lease[T]) int {
	q.mu.Lock()
	n := min(len(out), q.ready.len())
	for i := range n {
		out[i] = q.ready.popFront()
	}
	q.mu.Unlock()
	return n
}

// recycle keeps a settled entry for reuse.
func (q *Memory[T]) recycle(e *memEntry[T]) {
	*e = memEntry[T]{q: q}
	q.mu.Lock()
	q.keep(e)
	q.mu.Unlock()
}

// keep adds a cleared entry to the free list, unless it is full. Called
// with q.mu held.
func (q *Memory[T]) keep(e *memEntry[T]) {
	if len(q.free) < maxFree {
		q.free = append(q.free, e)
	}
}

// done frees the room of a settled message. Called with q.mu held.
// Waiting publishers are woken once a quarter of the capacity is free, so
// a full queue refills in runs rather than one message per wake-up.
func (q *Memory[T]) done() {
	q.size--
	if q.space != nil && q.cfg.Capacity-q.size >= max(1, q.cfg.Capacity/4) {
		close(q.space)
		q.space = nil
	}
}

// Consume runs h on the queue's messages until ctx ends, then drains; see
// Serve. Several Consume calls may share one queue; each has its own WIP.
//
// Without PerKey, a backlog is taken a few messages at a time (at most 4
// per worker, and no more than ready/WIP): the messages a worker has
// taken wait for the handler before them, as with a prefetch, and go back
// to the front of the queue if the drain starts first.
func (q *Memory[T]) Consume(ctx context.Context, h Handler[T], opts ConsumeOptions) error {
	return Serve(ctx, &memSource[T]{q: q}, h, opts, Runtime{Propagator: q.cfg.Propagator, Counters: &q.counters})
}

// DeadLetters returns a copy of the dead letters kept, oldest first.
func (q *Memory[T]) DeadLetters(ctx context.Context) ([]DeadLetter, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	return append([]DeadLetter(nil), q.dead...), nil
}

// Stats returns the queue's counts.
func (q *Memory[T]) Stats() Stats {
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

func (s *memSource[T]) Pull(ctx context.Context, max int) ([]Lease[T], error) {
	if max <= 0 {
		return nil, nil
	}
	if s.w == nil {
		s.w = newMemWaiter[T]()
	}
	if cap(s.pull) < max {
		s.pull = make([]Lease[T], max)
	}
	out := s.pull[:max]
	e, _, ok := s.q.take(nil, s.w, ctx.Done())
	if !ok {
		return nil, ctx.Err()
	}
	out[0] = e
	n := 1 + s.q.takeMore(out[1:])
	return out[:n], nil
}

func (e *memEntry[T]) ID() string   { return e.d.ID }
func (e *memEntry[T]) Key() string  { return e.d.Key }
func (e *memEntry[T]) Attempt() int { return e.d.Attempt }

func (e *memEntry[T]) Message() (Message[T], error) {
	if e.q.cfg.Codec == nil {
		return e.d.Message, nil
	}
	m := e.d.Message
	var p T
	err := e.q.cfg.Codec.Unmarshal(e.data, &p)
	m.Payload = p
	return m, err
}

// delivery returns the delivery of e to hand a handler: e's own without a
// Codec, else buf filled with the decoded payload, with the error decoding
// it. The entry's is read in place: a Delivery returned by value and
// copied again on the way to the handler is read back by wider loads than
// the stores that wrote it, which stalls the processor until the stores
// land (on the order of 10 ns a message).
func (e *memEntry[T]) delivery(buf *Delivery[T]) (*Delivery[T], error) {
	if e.q.cfg.Codec == nil {
		return &e.d, nil
	}
	*buf = e.d
	var p T
	err := e.q.cfg.Codec.Unmarshal(e.data, &p)
	buf.Payload = p
	return buf, err
}

func (e *memEntry[T]) Ack(context.Context) error {
	q := e.q
	*e = memEntry[T]{q: q}
	q.mu.Lock()
	q.done()
	q.keep(e)
	q.mu.Unlock()
	return nil
}

func (e *memEntry[T]) Extend(context.Context) error { return nil }

func (e *memEntry[T]) Release(context.Context) error {
	e.q.put(e, true)
	return nil
}

func (e *memEntry[T]) Retry(_ context.Context, delay time.Duration) error {
	e.d.Attempt++
	if delay <= 0 {
		e.q.put(e, false)
		return nil
	}
	e.q.cfg.Clock.AfterFunc(delay, func() { e.q.put(e, false) })
	return nil
}

func (e *memEntry[T]) DeadLetter(_ context.Context, reason string, attempts int) error {
	q := e.q
	payload := e.data
	if q.cfg.Codec == nil {
		payload, _ = JSON{}.Marshal(e.d.Payload) // best effort: the value itself is not bytes
	}
	d := DeadLetter{
		ID: e.d.ID, Key: e.d.Key, Headers: e.d.Headers.Clone(),
		Payload: payload, Reason: reason, Attempts: attempts, Time: q.cfg.Clock.Now(),
	}
	q.mu.Lock()
	if len(q.dead) >= q.cfg.DeadLetterLimit {
		q.dead = append(q.dead[:0], q.dead[1:]...)
	}
	q.dead = append(q.dead, d)
	q.done()
	q.mu.Unlock()
	q.recycle(e)
	return nil
}
