// Package deadlines ends things at their deadlines with a timer per list
// of them, not one each: the attempts of a taihttp.Transport, the
// contexts of a jidoka.Timeout's calls, the hedges of a jidoka.Hedge.
//
// A timer per entry costs more than its own start and stop: setting a
// timer that is due before any other wakes the thread waiting in the
// network poller, a system call per entry, and every set and stop takes
// the runtime's timer locks. The entries of one Set have the same
// duration, or nearly, so their deadlines come in the order they start: a list in
// deadline order, whose first deadline the one timer is set for, holds
// the entries that have not ended. An entry that ends in time leaves the
// list and does not touch the timer; the timer is set when an entry joins
// a list whose timer is not set (or is set for later), and again when it
// fires, for the first deadline then. Under steady load it is set about
// once per duration.
package deadlines

import (
	"math/rand/v2"
	"sync"
	"time"
)

// MaxLists caps the lists of a Set.
const MaxLists = 64

// IdleTimerLimit is the longest a list's timer is left set once its last
// entry has ended in time: a list that has held an entry whose duration
// (from the time given to Add to its deadline) is longer, or whose Set's
// duration is, stops the timer, so that a Set no longer used is not kept
// (through its timer's function) for as long as that duration.
const IdleTimerLimit = time.Minute

// Links is an entry's place in a Set: a field of the entry's type, which
// the Set reaches through the function given to New.
type Links[T any] struct {
	// At is the entry's deadline, as time since the Set's epoch: set
	// before Add, and not changed after.
	At time.Duration

	prev, next *T
	list       uint8 // the index of the list it joined
	listed     bool  // on its list, not yet ended
	fired      bool  // its deadline came first: expire was called
}

// Fired reports whether the entry's deadline came before its end, so that
// the Set called expire for it. It is to be read once Remove has returned.
func (l *Links[T]) Fired() bool { return l.fired }

// Set keeps entries of type T that have the same duration, or nearly,
// until their deadlines (an entry whose deadline comes before others'
// already listed is placed among them, from the last), on lists, about one per processor, so that entries added in
// parallel seldom wait for one another's lock. An entry joins a list at
// random and leaves the same one.
type Set[T any] struct {
	epoch  time.Time
	d      time.Duration
	links  func(*T) *Links[T]
	expire func(*T)
	lists  []list[T]
}

// list is one list of a Set: its entries in deadline order, and the timer
// that ends them.
type list[T any] struct {
	s          *Set[T]
	mu         sync.Mutex
	head, tail *T
	timer      *time.Timer // made when first set; its function is fire
	at         time.Duration
	longest    time.Duration // the longest duration of an entry added
	set        bool          // timer is set for at, or its function runs
	sets       int           // times the timer was set, for tests
	_          [64]byte      // keeps lists used on different cores off one cache line
}

// New returns a Set of entries whose deadlines are about d after they start,
// counted from epoch, on n lists (at least one, at most MaxLists). links
// returns an entry's Links; expire is called, on the goroutine of a
// list's timer and under no lock of the Set, for an entry whose deadline
// passed before it was removed.
func New[T any](epoch time.Time, d time.Duration, n int, links func(*T) *Links[T], expire func(*T)) *Set[T] {
	s := &Set[T]{epoch: epoch, d: d, links: links, expire: expire}
	s.lists = make([]list[T], min(max(1, n), MaxLists))
	for i := range s.lists {
		s.lists[i].s, s.lists[i].longest = s, d
	}
	return s
}

// Since returns the time since the Set's epoch, as deadlines count it
// (time.Since reads the monotonic clock only, about half the cost of
// time.Now).
func (s *Set[T]) Since() time.Duration { return time.Since(s.epoch) }

// Add lists e, whose Links.At is after now (the time since the epoch
// read last, from which At was counted), to be expired at that deadline
// unless it is removed first. The deadline is At however long ago now was
// read.
// An entry is listed once at a time: it may be added again, with a new
// deadline, once it has been expired (from its expire function, say),
// but not while it is listed.
func (s *Set[T]) Add(e *T, now time.Duration) {
	l := s.links(e)
	if n := len(s.lists); n > 1 {
		l.list = uint8(rand.Uint32N(uint32(n)))
	}
	s.lists[l.list].add(e, l, now)
}

// Remove takes e off its list and reports whether it ended in time: false
// when its deadline passed first and expire was called, or is being
// called. Removing an entry again reports the same.
func (s *Set[T]) Remove(e *T) (inTime bool) {
	l := s.links(e)
	return s.lists[l.list].remove(e, l)
}

// Listed returns how many entries the Set's lists hold, and how many of
// its lists have their timer set: what a Set keeps, for tests of what
// uses one.
func (s *Set[T]) Listed() (entries, timersSet int) {
	for i := range s.lists {
		x := &s.lists[i]
		x.mu.Lock()
		for e := x.head; e != nil; e = s.links(e).next {
			entries++
		}
		if x.set {
			timersSet++
		}
		x.mu.Unlock()
	}
	return entries, timersSet
}

func (x *list[T]) add(e *T, l *Links[T], now time.Duration) {
	links := x.s.links
	x.mu.Lock()
	// Deadlines come nearly always in order; one that does not (its
	// entry started before the last one listed, but joins after it) is
	// placed among them.
	p := x.tail
	for p != nil && links(p).At > l.At {
		p = links(p).prev
	}
	l.prev = p
	if p == nil {
		l.next, x.head = x.head, e
	} else {
		pl := links(p)
		l.next, pl.next = pl.next, e
	}
	if l.next == nil {
		x.tail = e
	} else {
		links(l.next).prev = e
	}
	l.listed, l.fired = true, false
	x.longest = max(x.longest, l.At-now)
	if !x.set || l.At < x.at {
		// now may have been read some time ago (the caller was
		// descheduled, or waited for the lock): the timer counts from
		// the clock as it is, or it would fire that much late, for this
		// entry and every one listed after it until it fires.
		x.setLocked(l.At, x.s.Since())
	}
	x.mu.Unlock()
}

func (x *list[T]) remove(e *T, l *Links[T]) bool {
	x.mu.Lock()
	defer x.mu.Unlock()
	if !l.listed {
		return !l.fired
	}
	x.unlinkLocked(e, l)
	if x.head == nil && x.set && x.longest > IdleTimerLimit && x.timer.Stop() {
		x.set = false
	}
	return true
}

func (x *list[T]) unlinkLocked(e *T, l *Links[T]) {
	links := x.s.links
	if l.prev == nil {
		x.head = l.next
	} else {
		links(l.prev).next = l.next
	}
	if l.next == nil {
		x.tail = l.prev
	} else {
		links(l.next).prev = l.prev
	}
	l.prev, l.next, l.listed = nil, nil, false
}

// setLocked sets the timer to fire at at, now being the time since the
// epoch.
func (x *list[T]) setLocked(at, now time.Duration) {
	x.at, x.set = at, true
	x.sets++
	if x.timer == nil {
		x.timer = time.AfterFunc(at-now, x.fire)
		return
	}
	x.timer.Reset(at - now)
}

// fire is the timer's function: it expires the entries whose deadline
// has passed and sets the timer for the next deadline, if there is one.
func (x *list[T]) fire() {
	links := x.s.links
	var due, last *T // taken off the list, oldest first, linked through next
	x.mu.Lock()
	now := x.s.Since()
	for x.head != nil && links(x.head).At <= now {
		e := x.head
		l := links(e)
		x.unlinkLocked(e, l)
		l.fired = true
		if last == nil {
			due = e
		} else {
			links(last).next = e
		}
		last = e
	}
	x.set = false
	if x.head != nil {
		x.setLocked(links(x.head).At, now)
	}
	x.mu.Unlock()
	// Off the list, these are no longer its: only this loop reads their
	// next.
	for due != nil {
		e := due
		l := links(e)
		due, l.next = l.next, nil
		x.s.expire(e)
	}
}
