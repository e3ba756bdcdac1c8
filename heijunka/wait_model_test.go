package heijunka_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"testing/synctest"
	"time"

	"pgregory.net/rapid"

	"github.com/taipattern/taikit/heijunka"
	"github.com/taipattern/taikit/tai"
)

// waitStep is one step of TestLimiterWaitMatchesModel.
type waitStep struct {
	op       int // 0 sleep, 1 AllowN, 2 WaitN canceled later, 3 WaitN with a deadline, 4 cancel the latest waiter
	n        int
	duration time.Duration // sleep, or deadline
}

// TestLimiterWaitMatchesModel runs WaitN calls side by side in a synctest
// bubble, with AllowN calls and sleeps between them, and cancels waiting
// calls latest first, against a model that keeps the schedule (the time
// the limiter is full again): a WaitN passes at once when the model says
// the events fit, else waits exactly until they do; one whose deadline
// comes before that fails at once with the wait as RetryAfter, and the
// model's Remaining and ResetAfter, and books nothing, as does one for
// more than the burst, with a RetryAfter of InfDuration; one canceled
// while it waits fails then and gives back exactly what it booked, so the
// schedule is as if it had never been made.
func TestLimiterWaitMatchesModel(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		limit := heijunka.Limit{Rate: 10, Burst: rapid.IntRange(1, 3).Draw(rt, "burst")}
		steps := rapid.SliceOfN(rapid.Custom(func(t *rapid.T) waitStep {
			s := waitStep{op: rapid.IntRange(0, 4).Draw(t, "op"), n: rapid.IntRange(0, limit.Burst+1).Draw(t, "n")}
			s.duration = time.Duration(rapid.IntRange(0, 50).Draw(t, "duration")) * 10 * time.Millisecond
			return s
		}), 5, 40).Draw(rt, "steps")
		var failure string
		synctest.Test(t, func(t *testing.T) {
			failure = runWaitModel(limit, steps)
		})
		if failure != "" {
			rt.Fatal(failure)
		}
	})
}

// waiter is a WaitN under way in runWaitModel.
type waiter struct {
	n      int
	act    time.Time // when the model says it passes
	cancel context.CancelFunc
	done   chan waitResult
}

type waitResult struct {
	err error
	at  time.Time
}

func runWaitModel(limit heijunka.Limit, steps []waitStep) string {
	lim, err := heijunka.NewLimiter(limit, heijunka.LimiterOptions{})
	if err != nil {
		return err.Error()
	}
	iv := limit.Interval()
	tol := time.Duration(limit.Burst) * iv
	tat := time.Now() // the model: full from tat on
	var waiting []*waiter
	// book returns how long n events wait at now, and books them if they
	// may wait that long.
	book := func(n int, maxWait time.Duration) time.Duration {
		now := time.Now()
		next := tat
		if next.Before(now) {
			next = now
		}
		next = next.Add(time.Duration(n) * iv)
		wait := max(next.Sub(now)-tol, 0)
		if wait <= maxWait {
			tat = next
		}
		return wait
	}
	// denial returns the Decision of a WaitN for events that do not pass
	// now, to wait wait: what DecideN would say.
	denial := func(wait time.Duration) heijunka.Decision {
		ahead := max(time.Until(tat), 0)
		return heijunka.Decision{Limit: limit, Remaining: max(int((tol-ahead)/iv), 0), RetryAfter: wait, ResetAfter: ahead}
	}
	// denied reports whether err is a *LimitedError carrying want, whose
	// RetryAfter tai.RetryAfter finds.
	denied := func(err error, want heijunka.Decision) bool {
		var le *heijunka.LimitedError
		return errors.As(err, &le) && le.Decision == want && tai.RetryAfter(err) == want.RetryAfter
	}
	// settle collects the waiters that returned, and checks each passed
	// when the model said.
	settle := func() string {
		synctest.Wait()
		for len(waiting) > 0 {
			w := waiting[0]
			select {
			case res := <-w.done:
				if res.err != nil || !res.at.Equal(w.act) {
					return fmt.Sprintf("WaitN(%d) due at %v: %v at %v", w.n, w.act, res.err, res.at)
				}
				waiting = waiting[1:]
				continue
			default:
			}
			break
		}
		for _, w := range waiting {
			if !time.Now().Before(w.act) {
				return fmt.Sprintf("WaitN(%d) due at %v still waits at %v", w.n, w.act, time.Now())
			}
		}
		return ""
	}
	start := func(ctx context.Context, cancel context.CancelFunc, n int) *waiter {
		w := &waiter{n: n, cancel: cancel, done: make(chan waitResult, 1)}
		go func() {
			err := lim.WaitN(ctx, n)
			w.done <- waitResult{err, time.Now()}
		}()
		return w
	}

	for i, s := range steps {
		switch s.op {
		case 0:
			time.Sleep(s.duration)
		case 1:
			now := time.Now()
			base := tat
			if base.Before(now) {
				base = now
			}
			want := s.n <= limit.Burst && base.Add(time.Duration(s.n)*iv).Sub(now) <= tol
			if want && s.n > 0 {
				tat = base.Add(time.Duration(s.n) * iv)
			}
			if got := lim.AllowN(now, s.n); got != want {
				return fmt.Sprintf("step %d: AllowN(%d) %v, model %v", i, s.n, got, want)
			}
		case 2, 3:
			ctx, cancel := context.WithCancel(context.Background())
			maxWait := heijunka.InfDuration
			if s.op == 3 {
				ctx, cancel = context.WithTimeout(context.Background(), s.duration)
				maxWait = s.duration
			}
			if s.op == 3 && s.duration == 0 {
				err := lim.WaitN(ctx, s.n)
				cancel()
				if !errors.Is(err, context.DeadlineExceeded) {
					return fmt.Sprintf("step %d: WaitN(%d) past its deadline: %v", i, s.n, err)
				}
				break
			}
			if s.n > limit.Burst {
				err := lim.WaitN(ctx, s.n)
				cancel()
				if want := denial(heijunka.InfDuration); !denied(err, want) {
					return fmt.Sprintf("step %d: WaitN(%d) over the burst: %#v, model %+v", i, s.n, err, want)
				}
				break
			}
			wait := book(s.n, maxWait)
			w := start(ctx, cancel, s.n)
			if wait > maxWait {
				res := <-w.done
				cancel()
				if want := denial(wait); !denied(res.err, want) || !res.at.Equal(time.Now()) {
					return fmt.Sprintf("step %d: WaitN(%d) waiting %v past its deadline in %v: %#v at %v, model %+v",
						i, s.n, wait, maxWait, res.err, res.at, want)
				}
				break
			}
			w.act = time.Now().Add(wait)
			waiting = append(waiting, w)
		case 4:
			if len(waiting) == 0 {
				continue
			}
			w := waiting[len(waiting)-1]
			waiting = waiting[:len(waiting)-1]
			w.cancel()
			res := <-w.done
			if !errors.Is(res.err, context.Canceled) || !res.at.Equal(time.Now()) {
				return fmt.Sprintf("step %d: WaitN(%d) canceled: %v at %v", i, w.n, res.err, res.at)
			}
			tat = tat.Add(-time.Duration(w.n) * iv)
		}
		if msg := settle(); msg != "" {
			return fmt.Sprintf("step %d: %s", i, msg)
		}
		now := time.Now()
		if got, want := lim.DecideN(now, 0).ResetAfter, max(tat.Sub(now), 0); got != want {
			return fmt.Sprintf("step %d (op %d): full again in %v, model %v", i, s.op, got, want)
		}
	}
	for _, w := range waiting {
		w.cancel()
		<-w.done
	}
	return ""
}

// TestLimiterWaitersCanceledInAnyOrder runs WaitN calls side by side in a
// synctest bubble, with AllowN calls and sleeps between them, and cancels
// waiting calls in any order: over any window of length w the events that
// passed number at most Burst + Rate·w, and every wait not canceled ends.
func TestLimiterWaitersCanceledInAnyOrder(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		limit := heijunka.Limit{Rate: 10, Burst: rapid.IntRange(1, 3).Draw(rt, "burst")}
		steps := rapid.SliceOfN(rapid.Custom(func(t *rapid.T) waitStep {
			s := waitStep{op: rapid.IntRange(0, 4).Draw(t, "op"), n: rapid.IntRange(0, limit.Burst).Draw(t, "n")}
			s.duration = time.Duration(rapid.IntRange(0, 30).Draw(t, "duration")) * 10 * time.Millisecond
			return s
		}), 10, 60).Draw(rt, "steps")
		picks := rapid.SliceOfN(rapid.IntRange(0, 1000), len(steps), len(steps)).Draw(rt, "picks")
		var failure string
		synctest.Test(t, func(t *testing.T) {
			lim, err := heijunka.NewLimiter(limit, heijunka.LimiterOptions{})
			if err != nil {
				failure = err.Error()
				return
			}
			var passed []time.Time
			var waiting []*waiter
			for i, s := range steps {
				switch s.op {
				case 0:
					time.Sleep(s.duration)
				case 1:
					if lim.AllowN(time.Now(), s.n) {
						passed = appendN(passed, time.Now(), s.n)
					}
				case 2, 3:
					ctx, cancel := context.WithCancel(context.Background())
					w := &waiter{n: s.n, cancel: cancel, done: make(chan waitResult, 1)}
					go func() {
						err := lim.WaitN(ctx, w.n)
						w.done <- waitResult{err, time.Now()}
					}()
					waiting = append(waiting, w)
				case 4:
					if len(waiting) > 0 {
						waiting[picks[i]%len(waiting)].cancel()
					}
				}
				synctest.Wait()
				kept := waiting[:0]
				for _, w := range waiting {
					select {
					case res := <-w.done:
						if res.err == nil {
							passed = appendN(passed, res.at, w.n)
						}
					default:
						kept = append(kept, w)
					}
				}
				waiting = kept
			}
			// Every wait not canceled ends.
			for _, w := range waiting {
				res := <-w.done
				if res.err == nil {
					passed = appendN(passed, res.at, w.n)
				}
				w.cancel()
			}
			sortTimes(passed)
			for i := range passed {
				for j := i; j < len(passed); j++ {
					w := passed[j].Sub(passed[i])
					if bound := float64(limit.Burst) + w.Seconds()*limit.Rate; float64(j-i+1) > bound+1e-6 {
						failure = fmt.Sprintf("%d events in a window of %v, bound %.3f", j-i+1, w, bound)
						return
					}
				}
			}
		})
		if failure != "" {
			rt.Fatal(failure)
		}
	})
}
