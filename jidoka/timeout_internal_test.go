package jidoka

import (
	"context"
	"sync"
	"testing"
	"testing/synctest"
	"time"
	"unsafe"

	"github.com/taipattern/taikit/internal/deadlines"
)

// TestDeadlineCtxSize: the context a Timeout gives each call, its one
// allocation per call, stays within the 112-byte size class; a field more
// in the wrong place takes it to 128.
func TestDeadlineCtxSize(t *testing.T) {
	if n := unsafe.Sizeof(deadlineCtx{}); n > 112 {
		t.Fatalf("deadlineCtx is %d bytes, over the 112-byte size class", n)
	}
}

// TestTimeoutHoldsNoContextOnceReturned: once a call has returned or
// panicked, its context is in none of the Timeout's lists, whatever the
// call asked of its context and whatever its caller's context; a Timeout
// longer than deadlines.IdleTimerLimit leaves no timer set either.
func TestTimeoutHoldsNoContextOnceReturned(t *testing.T) {
	cancelable, cancel := context.WithCancel(context.Background())
	defer cancel()
	for _, d := range []time.Duration{time.Second, time.Hour} {
		to, err := NewTimeout(TimeoutOptions{Duration: d})
		if err != nil {
			t.Fatal(err)
		}
		for _, parent := range []context.Context{context.Background(), cancelable} {
			for _, ask := range []func(context.Context){
				func(context.Context) {},
				func(ctx context.Context) { _ = ctx.Err() },
				func(ctx context.Context) { _ = ctx.Done() },
				func(ctx context.Context) { context.AfterFunc(ctx, func() {}) },
			} {
				for _, panics := range []bool{false, true} {
					armed := false
					func() {
						defer func() { _ = recover() }()
						_ = to.Do(parent, func(ctx context.Context) error {
							ask(ctx)
							n, _ := to.armed.Listed()
							armed = n == 1
							if panics {
								panic("boom")
							}
							return nil
						})
					}()
					if n, _ := to.armed.Listed(); n != 0 {
						t.Errorf("%v: %d contexts listed after the call returned (panicked: %v)", d, n, panics)
					}
					if _, set := to.armed.Listed(); d > deadlines.IdleTimerLimit && set != 0 {
						t.Errorf("%v: %d timers left set after the call returned (panicked: %v)", d, set, panics)
					}
					if parent == cancelable && !armed {
						t.Errorf("%v: the call's context was not listed while it ran under a caller's context that can end", d)
					}
				}
			}
		}
	}
}

// TestTimeoutArmedOutOfOrder: a context armed after one whose deadline is
// later, in the same list, is ended at its own deadline, not the later
// one's: a call asks for Done late, after a call started after it did.
func TestTimeoutArmedOutOfOrder(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		to, err := NewTimeout(TimeoutOptions{Duration: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		to.armed = deadlines.New(to.epoch, to.d, 1, ctxLinks, (*deadlineCtx).expire)
		start := time.Now()
		var wg sync.WaitGroup
		endedAt := make([]time.Duration, 3)
		for i, tc := range []struct{ startAt, askAt time.Duration }{
			{0, 3 * time.Second / 4},               // deadline 1s, armed last
			{time.Second / 4, time.Second / 4},     // deadline 1.25s, armed first
			{time.Second / 2, 3 * time.Second / 4}, // deadline 1.5s, armed with the first
		} {
			wg.Go(func() {
				time.Sleep(tc.startAt)
				_ = to.Do(context.Background(), func(ctx context.Context) error {
					time.Sleep(tc.askAt - tc.startAt)
					<-ctx.Done()
					endedAt[i] = time.Since(start)
					return nil
				})
			})
		}
		wg.Wait()
		for i, want := range []time.Duration{time.Second, 5 * time.Second / 4, 3 * time.Second / 2} {
			if endedAt[i] != want {
				t.Errorf("call %d: its context ended at %v, want its deadline %v", i, endedAt[i], want)
			}
		}
		if n, _ := to.armed.Listed(); n != 0 {
			t.Errorf("%d contexts listed after the calls returned", n)
		}
	})
}

// TestHedgeHoldsNoCallOnceReturned: once Do has returned (or panicked, or
// its first call ended the goroutine), its call is on none of the Hedge's
// lists, whether it was hedged or not; a Hedge whose delay is longer than
// deadlines.IdleTimerLimit leaves no timer set either.
func TestHedgeHoldsNoCallOnceReturned(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		for _, delay := range []time.Duration{time.Second, time.Hour} {
			h, err := NewHedge(HedgeOptions{Delay: delay, MaxHedges: 3})
			if err != nil {
				t.Fatal(err)
			}
			for _, call := range []struct {
				name string
				fn   func(ctx context.Context, first bool) error
			}{
				{"returns at once", func(context.Context, bool) error { return nil }},
				{"fails at once", func(context.Context, bool) error { return context.Canceled }},
				{"panics", func(context.Context, bool) error { panic("boom") }},
				{"is hedged once", func(ctx context.Context, first bool) error {
					if first {
						time.Sleep(delay + delay/2)
						return nil
					}
					<-ctx.Done()
					return ctx.Err()
				}},
				{"is hedged until a hedge wins", func(ctx context.Context, first bool) error {
					if first {
						<-ctx.Done()
						return ctx.Err()
					}
					time.Sleep(delay * 5)
					return nil
				}},
			} {
				var first sync.Once
				done := make(chan struct{})
				go func() {
					defer close(done)
					defer func() { _ = recover() }()
					_ = h.Do(context.Background(), func(ctx context.Context) error {
						isFirst := false
						first.Do(func() { isFirst = true })
						return call.fn(ctx, isFirst)
					})
				}()
				<-done
				if n, _ := h.waiting.Listed(); n != 0 {
					t.Errorf("%v, a call that %s: %d calls listed after Do returned", delay, call.name, n)
				}
				if _, set := h.waiting.Listed(); delay > deadlines.IdleTimerLimit && set != 0 {
					t.Errorf("%v, a call that %s: %d timers left set after Do returned", delay, call.name, set)
				}
			}
			// Let a timer left set fire, so that the bubble can end.
			time.Sleep(2 * delay)
		}
	})
}
