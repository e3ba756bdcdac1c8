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
// goroutine is already doing so.
func (q *queue[E]) drain(fn func(E)) {
	q.mu.Lock()
	if q.delivering || len(q.pending) == 0 {
		q.mu.Unlock()
		return
	}
	q.delivering = true
	for len(q.pending) > 0 {
		batch := q.pending
		q.pending = nil
		q.mu.Unlock()
		q.deliver(batch, fn)
		q.mu.Lock()
	}
	q.delivering = false
	q.mu.Unlock()
}

// deliver calls fn with each event of batch, in order. If fn does not
// return, the events after the one it was given go back to the front of
// the queue and delivery is released. If it panicked, the panic goes on and
// the next drain delivers them. If it ended its goroutine (runtime.Goexit:
// t.FailNow in a test), they are delivered before the goroutine ends: the
// events queued behind its own may have been pushed by goroutines that
// left their delivery to this one, and there may be no next drain for a
// long time (a stopped line stays stopped until someone starts it).
func (q *queue[E]) deliver(batch []E, fn func(E)) {
	i := 0
	panicked := false
	defer func() {
		if i < len(batch) { // fn did not return from batch[i]
			q.mu.Lock()
			q.pending = append(batch[i+1:len(batch):len(batch)], q.pending...)
			q.delivering = false
			q.mu.Unlock()
			if !panicked {
				q.drain(fn)
			}
		}
	}()
	for ; i < len(batch); i++ {
		call(fn, batch[i], &panicked)
	}
}

// call calls fn(e), setting *panicked if fn panics. recover returns nil
// when fn ends its goroutine with runtime.Goexit, which tells one from
// the other.
func call[E any](fn func(E), e E, panicked *bool) {
	defer func() {
		if v := recover(); v != nil {
			*panicked = true
			panic(v)
		}
	}()
	fn(e)
}
