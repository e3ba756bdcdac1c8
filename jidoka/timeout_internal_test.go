package jidoka

import (
	"context"
	"testing"
	"time"
	"unsafe"
)

// timerOf returns the timer set to end c, if any.
func timerOf(c *deadlineCtx) *time.Timer {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.timer == nil {
		return nil
	}
	return c.timer.t
}

// TestDeadlineCtxSize: the context a Timeout gives each call, its one
// allocation per call, stays within the 112-byte size class; a field more
// in the wrong place takes it to 128.
func TestDeadlineCtxSize(t *testing.T) {
	if n := unsafe.Sizeof(deadlineCtx{}); n > 112 {
		t.Fatalf("deadlineCtx is %d bytes, over the 112-byte size class", n)
	}
}

// TestTimeoutLeavesNoTimerSet: once a call has returned or panicked, the
// timer that was to end its context is stopped, whatever the call asked of
// its context and whatever its caller's context.
func TestTimeoutLeavesNoTimerSet(t *testing.T) {
	to, err := NewTimeout(TimeoutOptions{Duration: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	cancelable, cancel := context.WithCancel(context.Background())
	defer cancel()
	for _, parent := range []context.Context{context.Background(), cancelable} {
		for _, ask := range []func(context.Context){
			func(context.Context) {},
			func(ctx context.Context) { _ = ctx.Err() },
			func(ctx context.Context) { _ = ctx.Done() },
			func(ctx context.Context) { context.AfterFunc(ctx, func() {}) },
		} {
			for _, panics := range []bool{false, true} {
				var kept *deadlineCtx
				func() {
					defer func() { _ = recover() }()
					_ = to.Do(parent, func(ctx context.Context) error {
						kept = ctx.(*deadlineCtx)
						ask(ctx)
						if panics {
							panic("boom")
						}
						return nil
					})
				}()
				if tm := timerOf(kept); tm != nil && tm.Stop() {
					t.Errorf("the timer was still set after the call returned (panicked: %v)", panics)
				}
			}
		}
	}
}
