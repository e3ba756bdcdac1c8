package jidoka_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"pgregory.net/rapid"

	"github.com/taipattern/taikit/jidoka"
)

// A hedged Do against a model of its rules: calls start Delay apart while
// no call has succeeded, the first call has not returned, the caller's
// context has not ended and fewer than MaxHedges have started; the first
// success wins and ends every other call's context; Do returns when every
// call started has returned, with nil after a success and the first call's
// error otherwise. Each call takes a random time and succeeds or fails, or
// returns as its context ends, unless it ignores its context. The times
// are chosen so that no two events fall on the same instant: the model
// need not say which came first.

const hedgeModelDelay = time.Second

// hedgeAttempt is what a call does when its context does not end first.
type hedgeAttempt struct {
	took    time.Duration
	ok      bool
	ignores bool // its context: it runs on when it ends
}

// hedgeEnd is how a call ended: when, and with what error.
type hedgeEnd struct {
	started, ended time.Duration
	err            error
}

func (e hedgeEnd) String() string { return fmt.Sprintf("[%v, %v] %v", e.started, e.ended, e.err) }

var errHedgeModel = errors.New("the call failed")

// hedgeModel works out the calls of a Do, when it returns, and what.
func hedgeModel(attempts []hedgeAttempt, maxHedges int, cancelAt time.Duration) (ends []hedgeEnd, returned time.Duration, result error) {
	const never = time.Duration(1<<63 - 1)
	if cancelAt == 0 {
		cancelAt = never
	}
	won := never // when the first success came
	closed := never
	for i := 0; i <= maxHedges && i < len(attempts); i++ {
		start := time.Duration(i) * hedgeModelDelay
		if i > 0 && (start > closed || start > won || start > cancelAt) {
			break
		}
		a := attempts[i]
		end := hedgeEnd{started: start, ended: start + a.took, err: errHedgeModel}
		if a.ok {
			end.err = nil
		}
		// Its context ends when the caller's does, or another call wins.
		if stop := min(cancelAt, won); stop < end.ended && !a.ignores {
			end.ended, end.err = stop, context.Canceled
		}
		if end.err == nil && end.ended < won {
			// An earlier call's end, cut short by this win, must be
			// worked out again.
			won = end.ended
			for j := range ends {
				if ends[j].ended > won && !attempts[j].ignores {
					ends[j].ended, ends[j].err = won, context.Canceled
				}
			}
		}
		if i == 0 {
			closed = end.ended
		}
		closed = min(closed, won)
		ends = append(ends, end)
	}
	result = ends[0].err
	if won != never {
		result = nil
	}
	for _, e := range ends {
		returned = max(returned, e.ended)
	}
	return ends, returned, result
}

func TestHedgeModel(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		maxHedges := rapid.IntRange(1, 4).Draw(rt, "maxHedges")
		// Latencies of k quarter seconds and a millisecond: never a
		// multiple of the delay, where a call starts.
		attempts := rapid.SliceOfN(rapid.Custom(func(t *rapid.T) hedgeAttempt {
			return hedgeAttempt{
				took:    time.Duration(rapid.IntRange(0, 24).Draw(t, "quarters"))*time.Second/4 + time.Millisecond,
				ok:      rapid.Bool().Draw(t, "ok"),
				ignores: rapid.IntRange(0, 3).Draw(t, "ignores") == 0,
			}
		}), maxHedges+1, maxHedges+1).Draw(rt, "attempts")
		// And a millisecond more for each call before it: calls start
		// whole seconds apart, so two of them could end at the same
		// instant (one started at 1 s taking 1.501 s, one at 2 s taking
		// 0.501 s), where which came first is the scheduler's choice.
		for i := range attempts {
			attempts[i].took += time.Duration(i) * time.Millisecond
		}
		cancelAt := time.Duration(0)
		if rapid.Bool().Draw(rt, "cancels") {
			cancelAt = time.Duration(rapid.IntRange(0, 24).Draw(rt, "cancelQuarters"))*time.Second/4 + time.Millisecond/2
		}
		wantEnds, wantReturned, wantErr := hedgeModel(attempts, maxHedges, cancelAt)

		var failure string
		synctest.Test(t, func(t *testing.T) {
			h, err := jidoka.NewHedge(jidoka.HedgeOptions{Delay: hedgeModelDelay, MaxHedges: maxHedges})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			if cancelAt > 0 {
				time.AfterFunc(cancelAt, cancel)
			}
			start := time.Now()
			var mu sync.Mutex
			var ends []hedgeEnd
			var ctxs []context.Context
			err = h.Do(ctx, func(ctx context.Context) error {
				mu.Lock()
				i := len(ends)
				ends = append(ends, hedgeEnd{started: time.Since(start)})
				ctxs = append(ctxs, ctx)
				mu.Unlock()
				a := attempts[i]
				var err error
				var ended <-chan struct{}
				if !a.ignores {
					ended = ctx.Done()
				}
				select {
				case <-time.After(a.took):
					if !a.ok {
						err = errHedgeModel
					}
				case <-ended:
					err = ctx.Err()
				}
				mu.Lock()
				ends[i].ended, ends[i].err = time.Since(start), err
				mu.Unlock()
				return err
			})
			returned := time.Since(start)
			time.Sleep(time.Duration(maxHedges+1) * hedgeModelDelay) // no call starts later
			synctest.Wait()
			mu.Lock()
			defer mu.Unlock()
			switch {
			case !slices.Equal(ends, wantEnds):
				failure = fmt.Sprintf("calls %v, want %v", ends, wantEnds)
			case err != wantErr:
				failure = fmt.Sprintf("Do returned %v, want %v", err, wantErr)
			case returned != wantReturned:
				failure = fmt.Sprintf("Do returned at %v, want %v", returned, wantReturned)
			}
			for i, c := range ctxs {
				if c.Err() == nil {
					failure = fmt.Sprintf("call %d's context did not end", i)
				}
			}
		})
		if failure != "" {
			rt.Fatal(failure)
		}
	})
}
