package jidoka

import "sync"

// queue delivers events in the order they were pushed, outside the lock of
// their owner. The owner pushes under its own lock (so the order of pushes
// is the order of state changes) and calls drain after unlocking. One
// goroutine drains at a time; a listener that changes the owner's state from
// inside its callback only pushes, and the goroutine already draining
// delivers that event after the current one. No lock is held while a
// listener runs, so a listener may call back into its owner.
type queue[E any] struct {
	mu         sync.Mutex
	pending    []E
	delivering bool
}

func (q *queue[E]) push(e E) {
	q.mu.Lock()
	q.pending = append(q.pending, e)
	q.mu.Unlock()
}

// drain delivers pending events to fn until none are left, unless another
// goroutine is already doing so. If fn panics the panic propagates; the
// events after the one that panicked stay queued for the next drain.
func (q *queue[E]) drain(fn func(E)) {
	q.mu.Lock()
	if q.delivering || len(q.pending) == 0 {
		q.mu.Unlock()
		return
	}
	q.delivering = true
	var batch []E
	next := 0
	defer func() {
		if next < len(batch) { // fn panicked at batch[next]
			q.mu.Lock()
			q.pending = append(batch[next+1:len(batch):len(batch)], q.pending...)
			q.delivering = false
			q.mu.Unlock()
		}
	}()
	for {
		batch, q.pending = q.pending, nil
		if len(batch) == 0 {
			q.delivering = false
			q.mu.Unlock()
			return
		}
		q.mu.Unlock()
		for next = 0; next < len(batch); next++ {
			fn(batch[next])
		}
		batch, next = nil, 0
		q.mu.Lock()
	}
}
