package kanban

import "context"

// The in-memory queue is consumed without a pull loop: Serve runs up to
// WIP workers that each take one message straight from the queue, handle
// it, and acknowledge it in the same locked step that takes the next, so
// a message is handed over once, as on a channel. WIP stays exact because
// a worker holds one lease at a time. The workers call the queue's
// concrete methods rather than going through Source and Lease: those are
// interfaces of a generic type, and each call through them costs as much
// as the rest of a trivial handler's message. Per-key order and leases
// that need heartbeats use the pull loop.

func (e *engine[T]) serveShared(ctx context.Context, q *Memory[T]) error {
	e.onStop = func() { q.wakeStopped(&e.stopped) }
	e.spawn(q)
	<-ctx.Done()
	return e.drain()
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

func (e *engine[T]) sharedWorker(q *Memory[T]) {
	defer e.wg.Done()
	w := newMemWaiter[T]()
	w.stopped = &e.stopped
	// This worker's own counts: see Counters.
	c := e.rt.Counters.newCell()
	defer e.rt.Counters.dropCell(c)
	// done is the last message handled successfully; the next take
	// acknowledges it.
	var done *memEntry[T]
	// busy says this worker holds a lease, counted in flight in c. A
	// lease handled successfully stays counted until the next take
	// acknowledges it, so a worker moving from one message to the next
	// leaves the gauge alone.
	busy := false
	var buf Delivery[T] // a decoded delivery, with a Codec
	for {
		l, more := q.takeReady(done)
		done = nil
		if l == nil {
			if busy {
				c.addInFlight(-1)
				busy = false
			}
			var ok bool
			if l, more, ok = q.waitShared(w); !ok {
				return
			}
		}
		if !busy {
			c.addInFlight(1)
			busy = true
		}
		if e.stopped.Load() {
			// The drain started while this message was taken: hand it
			// back unstarted.
			e.settle(l, settleRelease, 0, "", 0, c)
			return
		}
		// Messages wait behind this one: start another worker, up to WIP,
		// so idle consumers are never kept waiting. Workers then stay
		// until the drain.
		if more && e.nworkers.Load() < int64(e.o.WIP) {
			e.spawn(q)
		}
		d, err := l.delivery(&buf)
		if e.handleMessage(l, d, err, true, c) {
			done = l
		} else {
			busy = false // settled, and counted out, by handleMessage
		}
	}
}
