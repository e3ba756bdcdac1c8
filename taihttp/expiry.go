package taihttp

import (
	"math/rand/v2"
	"sync"
	"time"
)

// expirySet spreads the attempts of one Transport over lists of
// expiries, about one per processor, so that attempts made in parallel
// seldom wait for one another's lock. An attempt joins a list at random
// and leaves the same one.
type expirySet struct {
	lists []paddedExpiries
}

// paddedExpiries keeps each list's lock on cache lines of its own.
type paddedExpiries struct {
	expiries
	_ [128]byte
}

// newExpirySet returns the expiries of attempts that each have timeout,
// on n lists (at least one).
func newExpirySet(timeout time.Duration, n int) *expirySet {
	s := &expirySet{lists: make([]paddedExpiries, max(1, n))}
	epoch := time.Now()
	for i := range s.lists {
		s.lists[i].expiries = expiries{timeout: timeout, epoch: epoch}
	}
	return s
}

// add lists e on one of the lists; see expiries.add.
func (s *expirySet) add(e *expiry) {
	x := &s.lists[0].expiries
	if len(s.lists) > 1 {
		x = &s.lists[rand.IntN(len(s.lists))].expiries
	}
	e.list = x
	x.add(e)
}

// done takes e off its list; see expiries.done.
func (s *expirySet) done(e *expiry) bool { return e.list.done(e) }

// expiries ends the attempts on one list of a Transport that outlive its
// AttemptTimeout, with one timer for all of them.
//
// A timer per attempt costs more than its own start and stop: adding a
// timer that is due before anything else wakes the thread waiting in the
// network poller, a system call for every request. Every attempt of a
// Transport has the same timeout, so deadlines come in the order attempts
// start: a list in that order, whose head the one timer is set for, holds
// the live ones. An attempt that ends in time leaves the list and does not
// touch the timer; the timer is set when an attempt joins while it is not
// set, and again when it fires, for the head then. Under steady load it is
// set about once per timeout.
type expiries struct {
	timeout time.Duration
	// epoch is what deadlines count from: time.Since reads the
	// monotonic clock only, half the cost of time.Now.
	epoch time.Time

	mu    sync.Mutex
	head  *expiry // the live attempts, oldest first
	tail  *expiry
	timer *time.Timer
	armed bool // timer is set, or its function runs
	sets  int  // times the timer was set, for tests
}

// expiry is an attempt's place among the expiries.
type expiry struct {
	at         time.Duration // its deadline, since the epoch
	list       *expiries     // the list it joined, in an expirySet
	prev, next *expiry
	listed     bool   // on the list: live
	fired      bool   // its deadline passed first: cancel was called
	cancel     func() // ends the attempt; called at most once, by fire
}

// add lists e, whose cancel is set, with a deadline of now plus the
// timeout.
func (x *expiries) add(e *expiry) {
	e.at = time.Since(x.epoch) + x.timeout
	x.mu.Lock()
	e.listed, e.prev = true, x.tail
	if x.tail != nil {
		// An attempt that read the clock later may have been listed
		// first: keep the list in deadline order, this deadline the
		// nanoseconds between the two later.
		e.at = max(e.at, x.tail.at)
		x.tail.next = e
	} else {
		x.head = e
	}
	x.tail = e
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

// done takes e's attempt off the list and reports whether it ended in
// time: false when its deadline passed first and cancel was called, or
// is being called.
func (x *expiries) done(e *expiry) bool {
	x.mu.Lock()
	defer x.mu.Unlock()
	if !e.listed {
		return !e.fired
	}
	x.unlink(e)
	return true
}

// fire ends the attempts whose deadline has passed and sets the timer
// for the next one.
func (x *expiries) fire() {
	var due, last *expiry // those to cancel, oldest first, linked through next
	x.mu.Lock()
	now := time.Since(x.epoch)
	for x.head != nil && x.head.at <= now {
		e := x.head
		x.unlink(e)
		e.fired = true
		if last == nil {
			due = e
		} else {
			last.next = e
		}
		last = e
	}
	if x.head != nil {
		x.sets++
		x.timer.Reset(x.head.at - now)
	} else {
		x.armed = false
	}
	x.mu.Unlock()
	for due != nil {
		e := due
		due, e.next = e.next, nil
		e.cancel()
	}
}

// unlink takes e off the list; x.mu is held.
func (x *expiries) unlink(e *expiry) {
	if e.prev != nil {
		e.prev.next = e.next
	} else {
		x.head = e.next
	}
	if e.next != nil {
		e.next.prev = e.prev
	} else {
		x.tail = e.prev
	}
	e.prev, e.next, e.listed = nil, nil, false
}
