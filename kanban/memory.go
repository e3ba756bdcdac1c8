package kanban

import (
	"context"
	"sync"
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
	cfg      MemoryConfig
	counters Counters

	mu       sync.Mutex
	queue    []*memEntry[T] // ready, in order
	size     int            // queued + leased + waiting for retry
	seen     map[string]time.Time
	seenLog  []seenID // publish order, for expiry; entries before seenHead are gone
	seenHead int
	dead     []DeadLetter
	items    chan struct{} // closed when a message arrives; nil without waiters
	space    chan struct{} // closed when room frees; nil without waiters
}

type seenID struct {
	id string
	at time.Time
}

type memEntry[T any] struct {
	msg      Message[T]
	data     []byte // the encoded payload, with a Codec
	attempts int
}

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
	if cfg.Propagator == nil {
		cfg.Propagator = otel.GetTextMapPropagator()
	}
	cfg.Clock = clockOr(cfg.Clock)
	q := &Memory[T]{cfg: cfg}
	if cfg.DedupWindow > 0 {
		q.seen = make(map[string]time.Time)
	}
	return q, nil
}

// InjectTrace returns h with the trace context of ctx added by p. It
// copies h before writing and returns h itself when p adds nothing.
func InjectTrace(ctx context.Context, p propagation.TextMapPropagator, h Header) Header {
	if p == nil {
		return h
	}
	c := &lazyCarrier{src: h}
	p.Inject(ctx, c)
	if c.dst == nil {
		return h
	}
	return c.dst
}

// lazyCarrier copies the headers on the first Set, so a publish without
// trace context allocates nothing.
type lazyCarrier struct{ src, dst Header }

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
	e := &memEntry[T]{msg: msg}
	e.msg.Headers = InjectTrace(ctx, q.cfg.Propagator, msg.Headers)
	if q.cfg.Codec != nil {
		data, err := q.cfg.Codec.Marshal(msg.Payload)
		if err != nil {
			return err
		}
		e.data = data
		var zero T
		e.msg.Payload = zero
	}
	var now time.Time
	if q.seen != nil {
		now = q.cfg.Clock.Now()
	}
	q.mu.Lock()
	for {
		if q.seen != nil {
			q.expireSeen(now)
			if _, dup := q.seen[msg.ID]; dup {
				q.mu.Unlock()
				q.counters.AddDuplicates(1)
				return nil
			}
		}
		if q.size < q.cfg.Capacity {
			break
		}
		if !wait {
			q.mu.Unlock()
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
			return ctx.Err()
		}
		q.mu.Lock()
	}
	if q.seen != nil {
		q.seen[msg.ID] = now
		q.seenLog = append(q.seenLog, seenID{msg.ID, now})
	}
	q.size++
	q.queue = append(q.queue, e)
	q.wakeItems()
	q.mu.Unlock()
	q.counters.AddPublished(1)
	return nil
}

func (q *Memory[T]) expireSeen(now time.Time) {
	i := q.seenHead
	for i < len(q.seenLog) && now.Sub(q.seenLog[i].at) >= q.cfg.DedupWindow {
		if q.seen[q.seenLog[i].id] == q.seenLog[i].at {
			delete(q.seen, q.seenLog[i].id)
		}
		q.seenLog[i] = seenID{}
		i++
	}
	q.seenHead = i
	// Compact once half the log is gone: amortised O(1) per publish.
	if i > 0 && 2*i >= len(q.seenLog) {
		n := copy(q.seenLog, q.seenLog[i:])
		clear(q.seenLog[n:])
		q.seenLog = q.seenLog[:n]
		q.seenHead = 0
	}
}

func (q *Memory[T]) wakeItems() {
	if q.items != nil {
		close(q.items)
		q.items = nil
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
func (q *Memory[T]) Consume(ctx context.Context, h Handler[T], opts ConsumeOptions) error {
	return Serve(ctx, memSource[T]{q}, h, opts, Runtime{Propagator: q.cfg.Propagator, Counters: &q.counters})
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
func (q *Memory[T]) Stats() Stats { return q.counters.Snapshot() }

// Len returns the number of messages held: queued, in flight and waiting
// for a retry.
func (q *Memory[T]) Len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.size
}

type memSource[T any] struct{ q *Memory[T] }

func (s memSource[T]) HeartbeatInterval() time.Duration { return 0 }

func (s memSource[T]) Pull(ctx context.Context, max int) ([]Lease[T], error) {
	q := s.q
	q.mu.Lock()
	for len(q.queue) == 0 {
		if q.items == nil {
			q.items = make(chan struct{})
		}
		ch := q.items
		q.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		q.mu.Lock()
	}
	n := min(max, len(q.queue))
	out := make([]Lease[T], n)
	for i, e := range q.queue[:n] {
		e.attempts++
		out[i] = &memLease[T]{q: q, e: e}
		q.queue[i] = nil
	}
	q.queue = q.queue[n:]
	if len(q.queue) == 0 {
		q.queue = q.queue[:0:0]
	}
	q.mu.Unlock()
	return out, nil
}

type memLease[T any] struct {
	q *Memory[T]
	e *memEntry[T]
}

func (l *memLease[T]) ID() string   { return l.e.msg.ID }
func (l *memLease[T]) Key() string  { return l.e.msg.Key }
func (l *memLease[T]) Attempt() int { return l.e.attempts }

func (l *memLease[T]) Message() (Message[T], error) {
	m := l.e.msg
	if l.q.cfg.Codec != nil {
		if err := l.q.cfg.Codec.Unmarshal(l.e.data, &m.Payload); err != nil {
			return m, err
		}
	}
	return m, nil
}

func (l *memLease[T]) Ack(context.Context) error {
	l.q.mu.Lock()
	l.q.done()
	l.q.mu.Unlock()
	return nil
}

func (l *memLease[T]) Extend(context.Context) error { return nil }

func (l *memLease[T]) Release(context.Context) error {
	q := l.q
	q.mu.Lock()
	l.e.attempts-- // never handled: not an attempt
	q.queue = append([]*memEntry[T]{l.e}, q.queue...)
	q.wakeItems()
	q.mu.Unlock()
	return nil
}

func (l *memLease[T]) Retry(_ context.Context, delay time.Duration) error {
	q := l.q
	requeue := func() {
		q.mu.Lock()
		q.queue = append(q.queue, l.e)
		q.wakeItems()
		q.mu.Unlock()
	}
	if delay <= 0 {
		requeue()
		return nil
	}
	q.cfg.Clock.AfterFunc(delay, requeue)
	return nil
}

func (l *memLease[T]) DeadLetter(_ context.Context, reason string, attempts int) error {
	q := l.q
	payload := l.e.data
	if q.cfg.Codec == nil {
		payload, _ = JSON{}.Marshal(l.e.msg.Payload) // best effort: the value itself is not bytes
	}
	d := DeadLetter{
		ID: l.e.msg.ID, Key: l.e.msg.Key, Headers: l.e.msg.Headers.Clone(),
		Payload: payload, Reason: reason, Attempts: attempts, Time: q.cfg.Clock.Now(),
	}
	q.mu.Lock()
	if len(q.dead) >= q.cfg.DeadLetterLimit {
		q.dead = append(q.dead[:0], q.dead[1:]...)
	}
	q.dead = append(q.dead, d)
	q.done()
	q.mu.Unlock()
	return nil
}
