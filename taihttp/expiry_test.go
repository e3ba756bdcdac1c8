package taihttp

import (
	"math/rand/v2"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// entry is an expiry that records when it was cancelled.
type entry struct {
	expiry
	cancelled []time.Time
}

// oneList is the one list of a set of one.
func oneList(timeout time.Duration) *expiries {
	return &newExpirySet(timeout, 1).lists[0].expiries
}

func newEntry() *entry {
	e := &entry{}
	e.cancel = func() { e.cancelled = append(e.cancelled, time.Now()) }
	return e
}

// TestExpiriesEndLateAttemptsOnly: an attempt that outlives the timeout is
// cancelled once, at its deadline, whatever ended before or after it; one
// that ends in time is not, and done says which.
func TestExpiriesEndLateAttemptsOnly(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		x := oneList(time.Second)
		start := time.Now()
		first, second, third := newEntry(), newEntry(), newEntry()
		x.add(&first.expiry)
		time.Sleep(100 * time.Millisecond)
		x.add(&second.expiry)
		time.Sleep(100 * time.Millisecond)
		x.add(&third.expiry)
		assert.True(t, x.done(&second.expiry), "ended in time")

		time.Sleep(time.Second) // past the first and third deadlines
		synctest.Wait()
		require.Len(t, first.cancelled, 1)
		assert.Equal(t, start.Add(time.Second), first.cancelled[0])
		assert.Empty(t, second.cancelled)
		require.Len(t, third.cancelled, 1)
		assert.Equal(t, start.Add(1200*time.Millisecond), third.cancelled[0])
		assert.False(t, x.done(&first.expiry), "cancelled before it ended")
		assert.False(t, x.done(&third.expiry))

		x.mu.Lock()
		assert.Nil(t, x.head, "the list is empty")
		assert.Nil(t, x.tail)
		assert.False(t, x.armed, "nothing to wait for")
		x.mu.Unlock()

		// The timer is set again for the next attempt.
		fourth := newEntry()
		x.add(&fourth.expiry)
		time.Sleep(2 * time.Second)
		synctest.Wait()
		assert.Len(t, fourth.cancelled, 1)
	})
}

// TestExpiriesKeepTheTimer: attempts that end in time do not touch the
// timer; it is set about once per timeout, not once per attempt.
func TestExpiriesKeepTheTimer(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		x := oneList(time.Second)
		for range 1000 { // 10 s
			e := newEntry()
			x.add(&e.expiry)
			time.Sleep(10 * time.Millisecond)
			require.True(t, x.done(&e.expiry))
			require.Empty(t, e.cancelled)
		}
		x.mu.Lock()
		defer x.mu.Unlock()
		assert.LessOrEqual(t, x.sets, 11, "the timer is set once per timeout at most")
		assert.Nil(t, x.head)
	})
}

// TestExpiriesModel runs random attempts, each ending after a random time,
// in time or late, and checks each against its own deadline: cancelled once, at
// the deadline, if it had not ended by then; never otherwise. The list
// is long and short on the way, and attempts leave it from its middle.
func TestExpiriesModel(t *testing.T) {
	for seed := range uint64(20) {
		synctest.Test(t, func(t *testing.T) {
			rnd := rand.New(rand.NewPCG(seed, 1))
			const timeout = 100 * time.Millisecond
			x := oneList(timeout)
			type run struct {
				e      *entry
				start  time.Time
				lasts  time.Duration // how long the attempt takes
				inTime bool          // what done said
			}
			var runs []*run
			for range 2000 {
				r := &run{e: newEntry(), start: time.Now(), lasts: time.Duration(rnd.IntN(200)) * time.Millisecond}
				runs = append(runs, r)
				x.add(&r.e.expiry)
				go func() {
					time.Sleep(r.lasts)
					r.inTime = x.done(&r.e.expiry)
				}()
				if rnd.IntN(4) == 0 { // bursts of attempts that start at once
					time.Sleep(time.Duration(rnd.IntN(5)) * time.Millisecond)
				}
			}
			time.Sleep(time.Second)
			synctest.Wait()
			for i, r := range runs {
				deadline := r.start.Add(timeout)
				if r.lasts < timeout {
					assert.True(t, r.inTime, "attempt %d", i)
					assert.Empty(t, r.e.cancelled, "attempt %d", i)
					continue
				}
				if r.lasts > timeout {
					assert.False(t, r.inTime, "attempt %d", i)
					if assert.Len(t, r.e.cancelled, 1, "attempt %d", i) {
						assert.Equal(t, deadline, r.e.cancelled[0], "attempt %d", i)
					}
				}
			}
			x.mu.Lock()
			defer x.mu.Unlock()
			assert.Nil(t, x.head)
			assert.Nil(t, x.tail)
			assert.False(t, x.armed)
		})
	}
}

// TestExpiriesListInDeadlineOrder lists attempts from many goroutines at
// once: one may read the clock before another yet be listed after it, and
// the list stays in deadline order all the same, as fire needs.
func TestExpiriesListInDeadlineOrder(t *testing.T) {
	x := oneList(time.Hour)
	var wg sync.WaitGroup
	entries := make([][]*entry, 8)
	for g := range entries {
		wg.Go(func() {
			for range 2000 {
				e := newEntry()
				x.add(&e.expiry)
				entries[g] = append(entries[g], e)
			}
		})
	}
	wg.Wait()
	x.mu.Lock()
	n := 0
	for e := x.head; e != nil; e = e.next {
		if e.next != nil {
			require.LessOrEqual(t, e.at, e.next.at, "entry %d", n)
		}
		n++
	}
	x.mu.Unlock()
	assert.Equal(t, 8*2000, n)
	for _, es := range entries {
		for _, e := range es {
			require.True(t, x.done(&e.expiry))
		}
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	assert.Nil(t, x.head)
	x.timer.Stop()
}

// TestExpirySet: attempts spread over the set's lists, each leaves the
// list it joined, and a late one is cancelled at its deadline whichever
// list holds it.
func TestExpirySet(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newExpirySet(time.Second, 3)
		start := time.Now()
		var es []*entry
		for range 200 {
			e := newEntry()
			s.add(&e.expiry)
			es = append(es, e)
		}
		used := map[*expiries]bool{}
		for _, e := range es {
			used[e.list] = true
		}
		assert.Len(t, used, len(s.lists), "every list has attempts")

		late := es[len(es)-1]
		for _, e := range es[:len(es)-1] {
			require.True(t, s.done(&e.expiry))
		}
		time.Sleep(2 * time.Second)
		synctest.Wait()
		require.Len(t, late.cancelled, 1)
		assert.Equal(t, start.Add(time.Second), late.cancelled[0])
		assert.False(t, s.done(&late.expiry))
		for i := range s.lists {
			x := &s.lists[i].expiries
			x.mu.Lock()
			assert.Nil(t, x.head, "list %d", i)
			x.mu.Unlock()
		}
		for _, e := range es[:len(es)-1] {
			assert.Empty(t, e.cancelled)
		}
	})
}
