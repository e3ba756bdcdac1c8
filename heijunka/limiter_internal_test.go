package heijunka

import (
	"testing"
	"time"
)

// TestReservationChainIsBounded: each reservation links to the one booked
// before it, for cancels, but a state keeps no more than maxLinks of them
// alive, however many are booked ahead and dropped by their callers, and
// none whose time had come when the next was booked.
func TestReservationChainIsBounded(t *testing.T) {
	lim, err := NewLimiter(Limit{Rate: 1000, Burst: 1}, LimiterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	chain := func() int {
		st := lim.st.Load()
		st.resMu.Lock()
		defer st.resMu.Unlock()
		n := 0
		for r := st.top; r != nil; r = r.prev {
			n++
		}
		return n
	}
	for range 10 * maxLinks {
		if !lim.ReserveN(now, 1).OK() {
			t.Fatal("not booked")
		}
	}
	if n := chain(); n > maxLinks+1 {
		t.Fatalf("%d reservations booked ahead kept alive, want at most %d", n, maxLinks+1)
	}
	// Once their times have come, the next booking keeps none of them.
	if !lim.ReserveN(now.Add(time.Hour), 1).OK() {
		t.Fatal("not booked")
	}
	if n := chain(); n != 1 {
		t.Fatalf("%d reservations kept alive, want the latest alone", n)
	}
}
