package heijunka

import (
	"bytes"
	"runtime"
	"testing"
	"time"
)

// TestWarmUpTickAfterAnEarlierStep: two calls reach new steps of a climb
// at once, the one at the later step waiting for the lock while the other
// sets the earlier step. The later call then sets its own step: it was
// decided under the earlier one, and denied what its step admits.
func TestWarmUpTickAfterAnEarlierStep(t *testing.T) {
	// Step s begins at s seconds, with a Rate of 1+0.9s and a Burst of
	// round(1+0.9s): 2.8/s burst 3 at step 2, 3.7/s burst 4 at step 3.
	lim, err := NewLimiter(Limit{Rate: 10, Burst: 10}, LimiterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	w, err := NewWarmUp(lim, WarmUpOptions{From: 0.1, Over: 10 * time.Second, Steps: 10})
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	if err := w.StartAt(t0); err != nil {
		t.Fatal(err)
	}
	c := lim.climb.Load()

	lim.mu.Lock()
	allowed := make(chan bool)
	go func() { allowed <- lim.AllowN(t0.Add(3*time.Second), 4) }()
	waitForTickLock(t)
	// The other call, at 2 s, sets step 2 as tick does.
	c.step.Store(2)
	np, err := c.limitAt(2).params()
	if err != nil {
		t.Fatal(err)
	}
	lim.setParams(&np, lim.rel(t0.Add(2*time.Second)), c.fullIv)
	lim.mu.Unlock()

	if !<-allowed {
		t.Error("4 events at 3 s, under step 3's Burst of 4, were denied")
	}
	if got, want := lim.st.Load().p.limit, c.limitAt(3); got != want {
		t.Errorf("limit after the call at 3 s: %v, want step 3's %v", got, want)
	}
}

// waitForTickLock returns once a goroutine waits for a Limiter's lock in
// tick.
func waitForTickLock(t *testing.T) {
	t.Helper()
	buf := make([]byte, 1<<20)
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); runtime.Gosched() {
		n := runtime.Stack(buf, true)
		for _, g := range bytes.Split(buf[:n], []byte("\n\n")) {
			if bytes.Contains(g, []byte("[sync.Mutex.Lock")) && bytes.Contains(g, []byte("(*Limiter).tick")) {
				return
			}
		}
	}
	t.Fatal("no call waits for the lock in tick")
}
