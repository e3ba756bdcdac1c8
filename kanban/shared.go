package kanban

import "context"

// sharedSource is a Source whose messages several goroutines can take at
// once, each waiting on its own. Serve then runs without a pull loop:
// each of up to WIP workers takes one message, handles it, settles it and
// takes the next, so a message is handed over once, as on a channel. WIP
// stays exact because a worker holds one lease at a time. The in-memory
// queue is such a source; per-key order and leases that need heartbeats
// use the pull loop.
type sharedSource[T any] interface {
	Source[T]
	newTaker() taker[T]
}

// taker is one worker's handle on a sharedSource.
type taker[T any] interface {
	// take first acknowledges done, when not nil (a lease this taker
	// returned, handled successfully), then returns the next lease,
	// waiting while stop is open, and whether more messages are ready
	// behind it. Folding the Ack into the next take settles and pulls
	// under one lock. ok is false when stop closed first; a message being
	// handed over then goes back to the front of the queue, never lost.
	take(done Lease[T], stop <-chan struct{}) (l Lease[T], more, ok bool)
}

func (e *engine[T]) serveShared(ctx context.Context, src sharedSource[T]) error {
	e.spawn(src)
	<-ctx.Done()
	return e.drain()
}

// spawn starts a worker unless WIP of them run already.
func (e *engine[T]) spawn(src sharedSource[T]) {
	if e.nworkers.Add(1) > int64(e.o.WIP) {
		e.nworkers.Add(-1)
		return
	}
	e.wg.Add(1)
	go e.sharedWorker(src)
}

func (e *engine[T]) sharedWorker(src sharedSource[T]) {
	defer e.wg.Done()
	t := src.newTaker()
	var done Lease[T]
	for {
		l, more, ok := t.take(done, e.stopping)
		if !ok {
			return
		}
		done = nil
		e.rt.Counters.addInFlight(1)
		if e.stopped.Load() {
			// The drain started while this message was taken: hand it
			// back unstarted.
			e.settle(l, settleRelease, 0, "", 0)
			return
		}
		// Messages wait behind this one: start another worker, up to WIP,
		// so idle consumers are never kept waiting. Workers then stay
		// until the drain.
		if more && e.nworkers.Load() < int64(e.o.WIP) {
			e.spawn(src)
		}
		if e.handle(l, true) {
			done = l
		}
	}
}
