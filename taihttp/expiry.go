package taihttp

import (
	"sync"
	"sync/atomic"
	"time"
)

// expiries ends the attempts of one Transport that outlive its
// AttemptTimeout, with one timer for all of them.
//
// A timer per attempt costs more than its own start and stop: adding a
// timer that is due before anything else wakes the thread waiting in the
// network poller, a system call for every request. Every attempt of a
// Transport has the same timeout, so deadlines come in the order attempts
// start: a queue in that order, whose head the one timer is set for,
// holds them. The timer is set when the queue gets an attempt while it is
// not set, and again when it fires for the next live attempt; an attempt
// that ends in time is only marked, and taken off the queue when it is at
// the head. Under steady load the timer is touched about once per timeout.
type expiries struct {
	timeout time.Duration
	// epoch is what deadlines count from: time.Since reads the
	// monotonic clock only, half the cost of time.Now.
	epoch time.Time

	mu    sync.Mutex
	q     []*expiry // a ring: n attempts from head
	head  int
	n     int
	timer *time.Timer
	armed bool // timer is set, or its function runs
	sets  int  // times the timer was set, for tests
}

// newExpiries returns the expiries of attempts that each have timeout.
func newExpiries(timeout time.Duration) *expiries {
	return &expiries{timeout: timeout, epoch: time.Now()}
}

// expiry is an attempt's place in the queue.
type expiry struct {
	at     time.Duration // its deadline, since the epoch
	state  atomic.Int32
	cancel func() // ends the attempt; called at most once, by fire
}

const (
	expiryLive  int32 = iota
	expiryDone        // the attempt ended in time
	expiryFired       // its deadline passed first: cancel was called
)

// add puts e, whose cancel is set, on the queue with a deadline of now
// plus the timeout.
func (x *expiries) add(e *expiry) {
	e.at = time.Since(x.epoch) + x.timeout
	x.mu.Lock()
	if x.n == len(x.q) {
		x.resize(max(16, 2*len(x.q)))
	}
	x.q[(x.head+x.n)%len(x.q)] = e
	x.n++
	if !x.armed {
		x.armed = true
		x.sets++
		if x.timer == nil {
			x.timer = time.AfterFunc(x.timeout, x.fire)
		} else {
			x.timer.Reset(x.timeout)
		}
	}
	x.mu.Unlock()
}

// done marks e's attempt ended and reports whether it ended in time:
// false when its deadline passed first and cancel was called, or is
// being called.
func (x *expiries) done(e *expiry) bool {
	inTime := e.state.CompareAndSwap(expiryLive, expiryDone)
	x.mu.Lock()
	x.popEnded()
	x.mu.Unlock()
	return inTime
}

// fire ends the attempts whose deadline has passed and sets the timer
// for the next live one.
func (x *expiries) fire() {
	var due []*expiry
	x.mu.Lock()
	now := time.Since(x.epoch)
	for x.popEnded(); x.n > 0; x.popEnded() {
		e := x.q[x.head]
		if e.at > now {
			break
		}
		if e.state.CompareAndSwap(expiryLive, expiryFired) {
			due = append(due, e)
		}
	}
	if x.n > 0 {
		x.sets++
		x.timer.Reset(x.q[x.head].at - now)
	} else {
		x.armed = false
	}
	if len(x.q) > 64 && x.n < len(x.q)/4 {
		x.resize(len(x.q) / 2) // after a burst, give back what it took
	}
	x.mu.Unlock()
	for _, e := range due {
		e.cancel()
	}
}

// popEnded takes the ended attempts off the head of the queue; x.mu is
// held.
func (x *expiries) popEnded() {
	for x.n > 0 {
		e := x.q[x.head]
		if e.state.Load() == expiryLive {
			return
		}
		x.q[x.head] = nil
		x.head = (x.head + 1) % len(x.q)
		x.n--
	}
	x.head = 0 // empty: start again at the front
}

// resize gives the ring size places, keeping the order; x.mu is held and
// x.n is at most size.
func (x *expiries) resize(size int) {
	q := make([]*expiry, size)
	for i := range x.n {
		q[i] = x.q[(x.head+i)%len(x.q)]
	}
	x.q, x.head = q, 0
}
