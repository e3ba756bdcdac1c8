package jidoka

import (
	"sync"
	"sync/atomic"
)

// Outcome bits of a call kept in a window.
const (
	bitFailure = 1 << iota
	bitSlow
)

// tally is what a window holds: calls, failures and slow calls.
type tally struct {
	calls, failures, slow int64
}

// countWindow keeps the outcomes of the last len(slots) calls without a
// lock. Each call takes the next slot with one atomic add and swaps its
// outcome in (a success over a success is left as it is); the totals move
// by the difference between the new outcome and the one it replaced, so
// they always equal the sum of the slots.
type countWindow struct {
	next     atomic.Uint64
	_        [56]byte // keep the contended index off the totals' line
	failures atomic.Int64
	slow     atomic.Int64
	slots    []atomic.Uint32
}

func newCountWindow(size int) *countWindow {
	return &countWindow{slots: make([]atomic.Uint32, size)}
}

func (w *countWindow) record(bits uint32) tally {
	i := w.next.Add(1)
	slot := &w.slots[(i-1)%uint64(len(w.slots))]
	var old uint32
	if bits != 0 || slot.Load() != 0 {
		old = slot.Swap(bits)
	}
	var t tally
	t.failures = w.move(&w.failures, old&bitFailure, bits&bitFailure)
	t.slow = w.move(&w.slow, old&bitSlow, bits&bitSlow)
	// The calls are read after the failures, as tally does: the totals may
	// hold the failures of calls recorded after this one, and only a fresh
	// count of the calls keeps the rate they make at most 1. (This call's
	// own number would not: preempted between its two steps, it would set
	// a few calls against every failure recorded meanwhile, and trip.)
	t.calls = int64(min(w.next.Load(), uint64(len(w.slots))))
	return t
}

func (w *countWindow) move(total *atomic.Int64, old, now uint32) int64 {
	switch {
	case old == now:
		return total.Load()
	case now != 0:
		return total.Add(1)
	default:
		return total.Add(-1)
	}
}

// tally reads the totals while calls may be recorded. A call bumps next
// before it counts its failure, so reading the failures and slow calls
// first and the calls last keeps them at most the calls.
func (w *countWindow) tally() tally {
	t := tally{failures: w.failures.Load(), slow: w.slow.Load()}
	t.calls = int64(min(w.next.Load(), uint64(len(w.slots))))
	return t
}

// timeWindow keeps the outcomes of the last width*len(buckets) nanoseconds
// in buckets; a bucket is cleared when time moves past it.
type timeWindow struct {
	mu      sync.Mutex
	width   int64   // nanoseconds per bucket
	head    int64   // absolute number of the newest bucket
	buckets []tally // bucket n lives at buckets[n%len]
	total   tally
}

// newTimeWindow returns an empty window of n buckets over d nanoseconds.
// Its head is bucket 0 until the first call or tally moves it to the
// present (an empty window has nothing to expire on the way).
func newTimeWindow(d int64, n int) *timeWindow {
	return &timeWindow{width: d / int64(n), buckets: make([]tally, n)}
}

// advance expires the buckets older than the window ending at now.
// Called with w.mu held.
func (w *timeWindow) advance(now int64) {
	n := max(now, 0) / w.width
	if n <= w.head {
		return
	}
	if n-w.head >= int64(len(w.buckets)) {
		clear(w.buckets)
		w.total = tally{}
	} else {
		for b := w.head + 1; b <= n; b++ {
			old := &w.buckets[b%int64(len(w.buckets))]
			w.total.calls -= old.calls
			w.total.failures -= old.failures
			w.total.slow -= old.slow
			*old = tally{}
		}
	}
	w.head = n
}

// record adds a call that ended at now. A call that ended in a bucket the
// window has already moved past (its clock read raced another call's) is
// counted in the newest bucket.
func (w *timeWindow) record(now int64, bits uint32) tally {
	w.mu.Lock()
	w.advance(now)
	b := &w.buckets[w.head%int64(len(w.buckets))]
	b.calls++
	w.total.calls++
	if bits&bitFailure != 0 {
		b.failures++
		w.total.failures++
	}
	if bits&bitSlow != 0 {
		b.slow++
		w.total.slow++
	}
	t := w.total
	w.mu.Unlock()
	return t
}

func (w *timeWindow) tally(now int64) tally {
	w.mu.Lock()
	w.advance(now)
	t := w.total
	w.mu.Unlock()
	return t
}
