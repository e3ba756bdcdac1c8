package heijunka

import (
	"testing"
	"time"
)

// oneShard returns a store of one shard that holds limit keys, and a key
// maker: key(s) is a key whose probe begins at slot s of a 16-slot table
// (the hashes are chosen, not drawn, so the layout is known).
func oneShard(t *testing.T, limit int) (*memShard, func(s int) uint64) {
	t.Helper()
	st, err := NewMemoryStore(MemoryStoreOptions{MaxKeys: limit})
	if err != nil {
		t.Fatal(err)
	}
	if len(st.shards) != 1 {
		t.Fatalf("%d shards", len(st.shards))
	}
	return &st.shards[0], func(s int) uint64 { return uint64(s)<<60 | 1 }
}

// owe takes n events for key at 0 under one event a minute, burst 12: the
// key owes n minutes.
func owe(t *testing.T, sh *memShard, h1 uint64, n int, now int64) {
	t.Helper()
	p, _ := Limit{Rate: 1.0 / 60, Burst: 12}.params()
	var d Decision
	if err := sh.take(h1, &p, now, n, EvictNearest, &d); err != nil || !d.Allowed {
		t.Fatalf("take: %v, %+v", err, d)
	}
}

// TestMemoryStoreEvictsNearestInItsSample: a full shard drops, among the
// evictSample keys from its sweep position, the one nearest to fresh (the
// first of equals), and moves the position past it, so that the next
// eviction samples other keys.
func TestMemoryStoreEvictsNearestInItsSample(t *testing.T) {
	sh, key := oneShard(t, 12)
	owed := []int{6, 10, 10, 10, 10, 6, 10, 10, 4, 10, 10, 2} // minutes, key in slot i
	for s, n := range owed {
		h1 := key(s)
		owe(t, sh, h1, n, 0)
	}
	held := func(s int) bool {
		h1 := key(s)
		_, ok := sh.find(h1)
		return ok
	}
	for s := range owed {
		if !held(s) {
			t.Fatalf("slot %d: key not held", s)
		}
	}
	// Twelve inserts swept 44 slots: the position is at 12. The next one
	// sweeps the empty slots 12 to 15 and samples slots 0 to 7: the keys
	// owing 6 minutes are nearest, slot 0 first. Slots 8 and 11, nearer
	// still, are not in the sample.
	a1 := key(13)
	owe(t, sh, a1, 1, 0)
	if held(0) || !held(5) || !held(8) || !held(11) || sh.n != 12 {
		t.Fatalf("first eviction: slot 0 should go, 5, 8, 11 stay (n %d)", sh.n)
	}
	// The position moved past slot 0: the next insert sweeps slots 1 to 4
	// and samples 5 to 11 and the new key at 13, which is nearest.
	b1 := key(14)
	owe(t, sh, b1, 2, 0)
	if _, ok := sh.find(a1); ok || !held(11) {
		t.Fatal("second eviction: the key at 13 should go, slot 11 stay")
	}
}

// TestMemoryStoreSweepsAFewSlots: each new key sweeps sweepSample slots
// from the sweep position, and drops the fresh keys there, no more.
func TestMemoryStoreSweepsAFewSlots(t *testing.T) {
	sh, key := oneShard(t, 13)
	for s := range 12 {
		h1 := key(s)
		n := 1 // fresh after a minute
		if s == 11 {
			n = 10
		}
		owe(t, sh, h1, n, 0)
	}
	// The position is at 12: the new key sweeps the empty slots 12 to 15
	// and leaves the fresh key at slot 0.
	h1 := key(12)
	owe(t, sh, h1, 1, int64(time.Minute))
	if sh.n != 13 {
		t.Fatalf("%d keys held, want 13", sh.n)
	}
}

// TestMemoryStoreSweepsOnFromWhereItStopped: the sweep goes on from the
// slot after the last one it examined, wherever keys come and go: a
// shard emptied by a sweep, or left with one key by a Reset, resumes there.
func TestMemoryStoreSweepsOnFromWhereItStopped(t *testing.T) {
	sh, key := oneShard(t, 12)
	l1 := key(8)
	owe(t, sh, l1, 10, 0) // owes 10 minutes: the shard is not fresh before
	x1 := key(5)
	owe(t, sh, x1, 1, 0) // the second insert sweeps slots 0 to 3
	sh.forget(l1)
	if len(sh.slots) != 16 || sh.n != 1 {
		t.Fatalf("%d slots, %d keys", len(sh.slots), sh.n)
	}
	// At one minute x is fresh. A new key sweeps slot 4, then drops x at
	// slot 5, and stops with the shard empty.
	w1 := key(5)
	w1 += 2 // another key of the same home
	owe(t, sh, w1, 1, int64(time.Minute))
	if sh.n != 1 {
		t.Fatalf("after the first sweep: %d keys, want 1", sh.n)
	}
	// At two minutes w is fresh; the next new key's sweep begins at slot 5
	// and drops it.
	v1 := key(12)
	owe(t, sh, v1, 1, int64(2*time.Minute))
	if sh.n != 1 {
		t.Fatalf("after the second sweep: %d keys, want 1", sh.n)
	}
}

// TestMemoryStoreRejectsNewOnlyWhenNoneIsFresh: under RejectNew a full
// shard takes a new key when any key it holds is fresh, wherever that key
// lies, not only when the few slots the new key sweeps hold one.
func TestMemoryStoreRejectsNewOnlyWhenNoneIsFresh(t *testing.T) {
	sh, key := oneShard(t, 12)
	p, _ := Limit{Rate: 1.0 / 60, Burst: 12}.params()
	for s := range 12 {
		h1 := key(s)
		n := 10 // owes 10 minutes
		if s == 0 {
			n = 1 // fresh after a minute
		}
		owe(t, sh, h1, n, 0)
	}
	// The position is at 12: a new key sweeps the empty slots 12 to 15,
	// and the key at slot 0 is fresh at two minutes.
	h1 := key(13)
	var d Decision
	if err := sh.take(h1, &p, int64(2*time.Minute), 1, RejectNew, &d); err != nil || !d.Allowed {
		t.Fatalf("a new key with a fresh key held: %v, %+v", err, d)
	}
	if k1 := key(0); sh.n != 12 {
		t.Fatalf("%d keys held, want 12", sh.n)
	} else if _, ok := sh.find(k1); ok {
		t.Fatal("the fresh key is still held")
	}
	// Half a minute later no key is fresh (the new one owes a minute): the
	// next new key is turned away, and keeps being so, the shard left as
	// it was, until one is.
	g1 := key(14)
	for range 3 {
		d = Decision{}
		if err := sh.take(g1, &p, int64(2*time.Minute+30*time.Second), 1, RejectNew, &d); err != ErrStoreFull || d.Allowed {
			t.Fatalf("no key fresh: %v, %+v", err, d)
		}
		if d.RetryAfter != 30*time.Second {
			t.Fatalf("RetryAfter %v, want 30s: the new key is fresh at three minutes", d.RetryAfter)
		}
	}
	if sh.n != 12 {
		t.Fatalf("%d keys held, want 12", sh.n)
	}
	d = Decision{}
	if err := sh.take(g1, &p, int64(10*time.Minute), 1, RejectNew, &d); err != nil || !d.Allowed {
		t.Fatalf("at ten minutes: %v, %+v", err, d)
	}
}
