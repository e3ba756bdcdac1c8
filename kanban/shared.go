package kanban

import "context"

// The in-memory queue is consumed without a pull loop: Serve runs up to
// WIP workers that each take messages straight from the queue, handle
// them, and acknowledge them in the same locked step that takes the next,
// so a message is handed over once, as on a channel. While many messages
// are ready a worker takes up to batchMax in that step, never more than
// its share of them (ready / WIP), so the others find as much left; the
// lock, which the publisher and every worker share, then changes hands
// less often. WIP stays exact because a worker runs one handler at a
// time; the messages it has taken and not started are not counted in
// flight, and the drain hands them back first in line.
//
// Workers are started as they are needed, up to WIP: one at first, and
// another whenever a worker takes work while none of the others is
// idle. So while the consumer has room, one worker waits for the next
// message: a message published while the others are busy starts at once,
// as WIP promises, and a consumer whose messages come one at a time keeps
// as few workers as it needs.
//
// The workers call the queue's concrete methods rather than going through
// Source and Lease: those are interfaces of a generic type, and each call
// through them costs as much as the rest of a trivial handler's message.
// Per-key order and leases that need heartbeats use the pull loop.

func (e *engine[T]) serveShared(ctx context.Context, q *Memory[T]) error {
	e.onStop = func() { q.wakeStopped(&e.stopped) }
	if ctx.Err() == nil {
		// A worker started for a consumer stopped already could take a
		// message and start it before the drain below says stop.
		e.spawn(q)
	}
	<-ctx.Done()
	return e.drain(nil)
}

// spawn starts a worker unless WIP of them run already.
func (e *engine[T]) spawn(q *Memory[T]) {
	if e.nworkers.Add(1) > int64(e.o.WIP) {
		e.nworkers.Add(-1)
		return
	}
	e.wg.Add(1)
	go e.sharedWorker(q)
}

// batchMax is the most messages a shared worker takes in one step. More
// than a few gains little: the publisher, which stores one message per
// lock, sets the pace.
const batchMax = 4

func (e *engine[T]) sharedWorker(q *Memory[T]) {
	defer e.wg.Done()
	// The worker's leases: each take copies messages into the first few.
	var leases [batchMax]*memEntry[T]
	for i := range leases {
		leases[i] = &memEntry[T]{q: q, own: true}
	}
	w := newMemWaiter(leases[0])
	w.stopped = &e.stopped
	// This worker's own counts: see Counters.
	c := e.newCell()
	defer e.dropCell(c)
	// Since when the messages it took ahead of its handler wait: see
	// Memory.Backlog.
	ahead := q.addAhead()
	defer q.dropAhead(ahead)
	var (
		// acks counts the messages handled successfully; the next take
		// acknowledges them.
		acks int
		// leases[next:taken] hold messages taken and not yet started.
		next, taken int
		// busy says this worker counts one message in flight in c: the
		// one it runs, or, between two, the ones handled and not yet
		// acknowledged. A worker moving from one message to the next
		// leaves the gauge alone.
		busy bool
		buf  Delivery[T] // a decoded delivery, with a Codec
	)
	share := max(1, e.o.WIP)
	handling := false
	defer func() {
		if !handling {
			return
		}
		// A handler or the Codec ended this goroutine (runtime.Goexit),
		// and handleMessage or decode settled its message and counted it
		// out: hand back
		// the messages taken and not started, acknowledge those handled,
		// and let another worker take this one's place.
		e.handBackShared(q, leases[next:taken], acks, ahead)
		e.nworkers.Add(-1)
		if !e.stopped.Load() {
			e.spawn(q)
		}
	}()
	for {
		if next == taken {
			n := q.takeBatch(acks, leases[:], share, ahead)
			acks = 0
			// Keep no handled message alive: the leases this take did not
			// fill again still hold the last batch's (all of them when the
			// worker is about to wait).
			for _, l := range leases[n:max(n, taken)] {
				l.m = memMsg[T]{}
			}
			if n == 0 {
				// Nor the payload last decoded, with a Codec.
				buf = Delivery[T]{}
				if busy {
					c.addInFlight(-1)
					busy = false
				}
				e.idle.Add(1)
				ok := q.waitShared(w)
				e.idle.Add(-1)
				if !ok {
					return
				}
				n = 1
			}
			next, taken = 0, n
			// This worker is busy now: if no other is idle, start one, up
			// to WIP, to take the next message at once. Workers then stay
			// until the drain.
			if e.idle.Load() == 0 && e.nworkers.Load() < int64(e.o.WIP) {
				e.spawn(q)
			}
		}
		if e.stopped.Load() {
			// The drain started while these messages were taken: hand
			// them back unstarted, first in line in their order, and
			// acknowledge the ones handled.
			e.handBackShared(q, leases[next:taken], acks, ahead)
			if busy {
				c.addInFlight(-1)
			}
			return
		}
		l := leases[next]
		next++
		if next > 1 {
			// l waited behind the last: the ones after it wait now.
			setAhead(ahead, leases[next:taken])
		}
		if !busy {
			c.addInFlight(1)
			busy = true
		}
		// Without a Codec the entry's delivery is read in place: one
		// returned by value and copied again on the way to the handler is
		// read back by wider loads than the stores that wrote it, which
		// stalls the processor until the stores land (on the order of
		// 10 ns a message).
		d, err := &l.m.d, error(nil)
		handling = true
		if q.opts.Codec != nil {
			buf.Attempt = l.m.d.Attempt
			buf.Message, err = e.decode(l, buf.Attempt, c)
			d = &buf
		}
		if e.handleMessage(l, d, err, nil, c) {
			acks++
		} else {
			busy = false // settled, and counted out, by handleMessage
		}
		handling = false
	}
}

// handBackShared puts the messages of ls, taken and not started, back
// first in line in their order, and acknowledges acks handled ones. The
// worker's slot ahead then says it holds none.
func (e *engine[T]) handBackShared(q *Memory[T], ls []*memEntry[T], acks int, ahead *aheadSlot) {
	var back [batchMax]*memMsg[T]
	for i, l := range ls {
		back[i] = &l.m
	}
	q.putFront(back[:len(ls)])
	setAhead[T](ahead, nil)
	q.takeBatch(acks, nil, 1, nil)
}
