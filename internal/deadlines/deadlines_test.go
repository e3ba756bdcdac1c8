package deadlines

import (
	"math/rand/v2"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// entry records when it was expired.
type entry struct {
	links   Links[entry]
	expired []time.Time
}

func newSet(d time.Duration, n int) *Set[entry] {
	return New(time.Now(), d, n,
		func(e *entry) *Links[entry] { return &e.links },
		func(e *entry) { e.expired = append(e.expired, time.Now()) })
}

// start adds e with a deadline of now plus the Set's duration.
func (s *Set[T]) start(e *T) {
	now := s.Since()
	s.links(e).At = now + s.d
	s.Add(e, now)
}

// state returns what a list holds: its entries, head to tail, whether its
// timer is set, and how often it was.
func (x *list[T]) state() (entries []*T, set bool, sets int) {
	x.mu.Lock()
	defer x.mu.Unlock()
	for e := x.head; e != nil; e = x.s.links(e).next {
		entries = append(entries, e)
	}
	return entries, x.set, x.sets
}

// TestEntriesEndLateOnesOnly: an entry that outlives its duration is
// expired once, at its deadline, whatever ended before or after it; one
// that ends in time is not, and Remove says which.
func TestEntriesEndLateOnesOnly(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newSet(time.Second, 1)
		start := time.Now()
		first, second, third := &entry{}, &entry{}, &entry{}
		s.start(first)
		time.Sleep(100 * time.Millisecond)
		s.start(second)
		time.Sleep(100 * time.Millisecond)
		s.start(third)
		assert.True(t, s.Remove(second), "ended in time")
		assert.True(t, s.Remove(second), "removed again")
		assert.False(t, second.links.Fired())

		time.Sleep(time.Second) // past the first and third deadlines
		synctest.Wait()
		require.Len(t, first.expired, 1)
		assert.Equal(t, start.Add(time.Second), first.expired[0])
		assert.Empty(t, second.expired)
		require.Len(t, third.expired, 1)
		assert.Equal(t, start.Add(1200*time.Millisecond), third.expired[0])
		assert.False(t, s.Remove(first), "expired before it ended")
		assert.True(t, first.links.Fired())
		assert.False(t, s.Remove(third))
		assert.False(t, s.Remove(third), "removed again")

		entries, set, _ := s.lists[0].state()
		assert.Empty(t, entries, "the list is empty")
		assert.False(t, set, "nothing to wait for")

		// The timer is set again for the next entry.
		fourth := &entry{}
		s.start(fourth)
		time.Sleep(2 * time.Second)
		synctest.Wait()
		assert.Len(t, fourth.expired, 1)
	})
}

// TestTheTimerIsKept: entries that end in time do not touch the timer; it
// is set about once per duration, not once per entry.
func TestTheTimerIsKept(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newSet(time.Second, 1)
		for range 1000 { // 10 s
			e := &entry{}
			s.start(e)
			time.Sleep(10 * time.Millisecond)
			require.True(t, s.Remove(e))
			require.Empty(t, e.expired)
		}
		entries, _, sets := s.lists[0].state()
		assert.LessOrEqual(t, sets, 11, "the timer is set once per duration at most")
		assert.Empty(t, entries)
	})
}

// TestALongSetStopsItsIdleTimer: a Set whose duration is longer than
// IdleTimerLimit leaves no timer set once its lists are empty; a shorter
// one leaves it, for the next entry.
func TestALongSetStopsItsIdleTimer(t *testing.T) {
	for _, tc := range []struct {
		d       time.Duration
		leftSet bool
	}{
		{IdleTimerLimit, true},
		{IdleTimerLimit + 1, false},
	} {
		s := newSet(tc.d, 1)
		e := &entry{}
		s.start(e)
		require.True(t, s.Remove(e))
		_, set, _ := s.lists[0].state()
		assert.Equal(t, tc.leftSet, set, "duration %v", tc.d)
		if set {
			s.lists[0].timer.Stop()
		}
	}
}

// TestALongEntryStopsItsListsIdleTimer: a list that has held an entry
// whose duration is longer than IdleTimerLimit stops its timer once it is
// empty, whatever the Set's duration; the timer of one that has not is
// left set.
func TestALongEntryStopsItsListsIdleTimer(t *testing.T) {
	for _, tc := range []struct {
		d       time.Duration
		leftSet bool
	}{
		{IdleTimerLimit, true},
		{IdleTimerLimit + 1, false},
	} {
		s := newSet(time.Second, 1)
		e := &entry{}
		now := s.Since()
		e.links.At = now + tc.d
		s.Add(e, now)
		require.True(t, s.Remove(e))
		_, set, _ := s.lists[0].state()
		assert.Equal(t, tc.leftSet, set, "an entry of %v", tc.d)
		if set {
			s.lists[0].timer.Stop()
		}
	}
}

// TestAnEntryAddedAgainOnceExpired: an entry's expire function may add it
// again with a later deadline; it is then expired at that one, or, removed
// before it, ends in time.
func TestAnEntryAddedAgainOnceExpired(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var s *Set[entry]
		s = New(time.Now(), time.Second, 2,
			func(e *entry) *Links[entry] { return &e.links },
			func(e *entry) {
				e.expired = append(e.expired, time.Now())
				if len(e.expired) < 3 {
					now := s.Since()
					e.links.At = now + time.Duration(len(e.expired))*time.Second
					s.Add(e, now)
				}
			})
		start := time.Now()
		thrice, twice := &entry{}, &entry{}
		s.start(thrice)
		s.start(twice)
		time.Sleep(2500 * time.Millisecond) // past the second deadline, before the third
		synctest.Wait()
		require.Len(t, twice.expired, 2)
		assert.True(t, s.Remove(twice), "added again and removed before its deadline")
		assert.False(t, twice.links.Fired())

		time.Sleep(5 * time.Second)
		synctest.Wait()
		assert.Equal(t, []time.Time{start.Add(time.Second), start.Add(2 * time.Second), start.Add(4 * time.Second)}, thrice.expired)
		assert.False(t, s.Remove(thrice), "expired the third time, not added again")
		assert.True(t, thrice.links.Fired())
		assert.Equal(t, []time.Time{start.Add(time.Second), start.Add(2 * time.Second)}, twice.expired)
		entries, _ := s.Listed()
		assert.Zero(t, entries)
	})
}

// TestModel runs random entries, each ending after a random time, in time
// or late, and checks each against its own deadline: expired once, at the
// deadline, if it had not ended by then; never otherwise. Some join late
// (their deadline counted from a start before entries already listed),
// the list is long and short on the way, and entries leave it from its
// middle.
func TestModel(t *testing.T) {
	for seed := range uint64(20) {
		synctest.Test(t, func(t *testing.T) {
			rnd := rand.New(rand.NewPCG(seed, 1))
			const d = 100 * time.Millisecond
			s := newSet(d, 1+int(seed%3))
			type run struct {
				e      *entry
				start  time.Time
				lasts  time.Duration // how long the entry lives
				inTime bool          // what Remove said
			}
			var runs []*run
			for range 2000 {
				r := &run{e: &entry{}, start: time.Now(), lasts: time.Duration(rnd.IntN(200)) * time.Millisecond}
				runs = append(runs, r)
				now := s.Since()
				r.e.links.At = now + d
				join := time.Duration(0)
				if rnd.IntN(8) == 0 { // it joins late, up to its deadline
					join = time.Duration(rnd.IntN(int(min(r.lasts, d-1)/time.Millisecond)+1)) * time.Millisecond
				}
				go func() {
					if join > 0 {
						time.Sleep(join)
						now = s.Since()
					}
					if now < r.e.links.At && join <= r.lasts {
						s.Add(r.e, now)
					}
					time.Sleep(r.lasts - join)
					r.inTime = s.Remove(r.e)
				}()
				if rnd.IntN(4) == 0 { // bursts of entries that start at once
					time.Sleep(time.Duration(rnd.IntN(5)) * time.Millisecond)
				}
			}
			time.Sleep(time.Second)
			synctest.Wait()
			for i, r := range runs {
				deadline := r.start.Add(d)
				if r.lasts < d {
					assert.True(t, r.inTime, "entry %d", i)
					assert.Empty(t, r.e.expired, "entry %d", i)
					continue
				}
				if r.lasts > d {
					assert.False(t, r.inTime, "entry %d", i)
					if assert.Len(t, r.e.expired, 1, "entry %d", i) {
						assert.Equal(t, deadline, r.e.expired[0], "entry %d", i)
					}
				}
			}
			for i := range s.lists {
				entries, set, _ := s.lists[i].state()
				assert.Empty(t, entries, "list %d", i)
				assert.False(t, set, "list %d", i)
			}
		})
	}
}

// TestListsStayInDeadlineOrder adds entries from many goroutines at once:
// one may read the clock before another yet be listed after it, and the
// list stays in deadline order all the same, as fire needs.
func TestListsStayInDeadlineOrder(t *testing.T) {
	s := newSet(time.Hour, 1)
	var wg sync.WaitGroup
	entries := make([][]*entry, 8)
	for g := range entries {
		wg.Go(func() {
			for range 2000 {
				e := &entry{}
				s.start(e)
				entries[g] = append(entries[g], e)
			}
		})
	}
	wg.Wait()
	listed, _, _ := s.lists[0].state()
	require.Len(t, listed, 8*2000)
	for i := 1; i < len(listed); i++ {
		require.LessOrEqual(t, listed[i-1].links.At, listed[i].links.At, "entry %d", i)
	}
	for _, es := range entries {
		for _, e := range es {
			require.True(t, s.Remove(e))
		}
	}
	listed, set, _ := s.lists[0].state()
	assert.Empty(t, listed)
	assert.False(t, set, "an hour is longer than IdleTimerLimit")
}

// TestAnEarlierDeadlineResetsTheTimer: an entry joining with a deadline
// before the one the timer is set for is expired at its own deadline.
func TestAnEarlierDeadlineResetsTheTimer(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newSet(time.Second, 1)
		start := time.Now()
		early, late := &entry{}, &entry{}
		early.links.At = s.Since() + time.Second
		time.Sleep(time.Second / 4)
		s.start(late) // deadline 1.25 s: the timer is set for it
		time.Sleep(time.Second / 4)
		s.Add(early, s.Since()) // deadline 1 s, joining after
		time.Sleep(2 * time.Second)
		synctest.Wait()
		require.Len(t, early.expired, 1)
		assert.Equal(t, start.Add(time.Second), early.expired[0])
		require.Len(t, late.expired, 1)
		assert.Equal(t, start.Add(5*time.Second/4), late.expired[0])
	})
}

// TestSetSpreadsItsEntries: entries spread over the set's lists, each
// leaves the list it joined, and a late one is expired at its deadline
// whichever list holds it.
func TestSetSpreadsItsEntries(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newSet(time.Second, 3)
		start := time.Now()
		var es []*entry
		for range 200 {
			e := &entry{}
			s.start(e)
			es = append(es, e)
		}
		used := map[uint8]bool{}
		for _, e := range es {
			used[e.links.list] = true
		}
		assert.Len(t, used, len(s.lists), "every list has entries")

		late := es[len(es)-1]
		for _, e := range es[:len(es)-1] {
			require.True(t, s.Remove(e))
		}
		time.Sleep(2 * time.Second)
		synctest.Wait()
		require.Len(t, late.expired, 1)
		assert.Equal(t, start.Add(time.Second), late.expired[0])
		assert.False(t, s.Remove(late))
		for i := range s.lists {
			entries, _, _ := s.lists[i].state()
			assert.Empty(t, entries, "list %d", i)
		}
		for _, e := range es[:len(es)-1] {
			assert.Empty(t, e.expired)
		}
	})
}

// TestNewBoundsTheLists: a Set has at least one list and at most MaxLists.
func TestNewBoundsTheLists(t *testing.T) {
	for n, want := range map[int]int{-1: 1, 0: 1, 1: 1, 5: 5, MaxLists: MaxLists, 1000: MaxLists} {
		assert.Len(t, newSet(time.Second, n).lists, want, "n = %d", n)
	}
}

// TestAnEntryAddedLateKeepsItsDeadline: an entry added a while after its
// deadline was counted (its goroutine was descheduled, or waited for the
// list's lock) is expired at that deadline, not that much after it, and
// so is one listed after it.
func TestAnEntryAddedLateKeepsItsDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newSet(time.Second, 1)
		start := time.Now()
		stale, next := &entry{}, &entry{}
		now := s.Since()
		stale.links.At = now + time.Second
		time.Sleep(300 * time.Millisecond)
		s.Add(stale, now) // now was read 300 ms ago
		time.Sleep(100 * time.Millisecond)
		next.links.At = s.Since() + 700*time.Millisecond
		s.Add(next, s.Since()) // due at 1.1 s, after the stale one
		time.Sleep(2 * time.Second)
		synctest.Wait()
		require.Len(t, stale.expired, 1)
		assert.Equal(t, start.Add(time.Second), stale.expired[0])
		require.Len(t, next.expired, 1)
		assert.Equal(t, start.Add(1100*time.Millisecond), next.expired[0])
	})
}
