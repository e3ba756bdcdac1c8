package jidoka_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"testing/synctest"
	"time"

	"pgregory.net/rapid"

	"github.com/taipattern/taikit/jidoka"
)

// A Retry against a model of its rules: random calls that succeed, fail,
// fail for good or fail with a RetryAfter hint, a caller's context that is
// cancelled or has a deadline, and a small budget. The calls must start
// when the model says, Do must return the last call's error when it says,
// and the budget must hold what it says. The times are chosen so that no
// two events fall on the same instant.

const (
	retryModelBase = 100 * time.Millisecond
	retryModelMax  = time.Second
)

// retryModelHint is an error with a RetryAfter hint.
type retryModelHint struct{ after time.Duration }

func (e *retryModelHint) Error() string             { return fmt.Sprintf("refused for %v", e.after) }
func (e *retryModelHint) RetryAfter() time.Duration { return e.after }

// retryCall is what one call does: it takes took and returns err.
type retryCall struct {
	took time.Duration
	err  error
}

// retryModel works out when the calls start, when Do returns, the retries
// left in the budget, and what Do returns.
func retryModel(calls []retryCall, attempts int, maxHint time.Duration, ends time.Duration, deadline bool, burst int) (starts []time.Duration, returned time.Duration, budget int, result error) {
	now := time.Duration(0)
	budget = burst
	call := func() error {
		starts = append(starts, now)
		c := calls[len(starts)-1]
		now += c.took
		return c.err
	}
	ended := func(at time.Duration) bool { return ends > 0 && at >= ends }
	err := call()
	for attempt := 1; attempt < attempts && err != nil; attempt++ {
		if ended(now) || !jidoka.Retryable(err) {
			break
		}
		wait := min(retryModelBase<<(attempt-1), retryModelMax)
		if hint := jidoka.RetryAfter(err); hint > 0 {
			if hint > maxHint {
				break
			}
			wait = max(wait, hint)
		}
		if deadline && ends > 0 && ends-now <= wait {
			break
		}
		if budget == 0 {
			break
		}
		budget--
		if ended(now + wait) {
			budget++ // the caller gave up during the wait
			now = ends
			break
		}
		now += wait
		err = call()
	}
	return starts, now, budget, err
}

func TestRetryModel(t *testing.T) {
	errFails := errors.New("the call failed")
	errForGood := jidoka.Permanent(errors.New("the call failed for good"))
	rapid.Check(t, func(rt *rapid.T) {
		attempts := rapid.IntRange(1, 6).Draw(rt, "attempts")
		maxHint := []time.Duration{0, 3 * time.Second}[rapid.IntRange(0, 1).Draw(rt, "maxHint")]
		burst := rapid.IntRange(1, 4).Draw(rt, "burst")
		calls := rapid.SliceOfN(rapid.Custom(func(t *rapid.T) retryCall {
			c := retryCall{took: time.Duration(rapid.IntRange(0, 8).Draw(t, "took")) * 25 * time.Millisecond}
			switch rapid.IntRange(0, 3).Draw(t, "outcome") {
			case 0:
			case 1:
				c.err = errFails
			case 2:
				c.err = errForGood
			case 3:
				hints := []time.Duration{50 * time.Millisecond, 500 * time.Millisecond, 2 * time.Second, 5 * time.Second}
				c.err = &retryModelHint{hints[rapid.IntRange(0, len(hints)-1).Draw(t, "hint")]}
			}
			return c
		}), attempts, attempts).Draw(rt, "calls")
		// The caller's context ends half a millisecond past a tenth of a
		// second: never as a call or a wait ends.
		ends := time.Duration(0)
		deadline := false
		if rapid.Bool().Draw(rt, "ends") {
			ends = time.Duration(rapid.IntRange(0, 40).Draw(rt, "endsTenths"))*100*time.Millisecond + 500*time.Microsecond
			deadline = rapid.Bool().Draw(rt, "deadline")
		}
		if maxHint == 0 {
			maxHint = retryModelMax
		}
		wantStarts, wantReturned, wantBudget, wantErr := retryModel(calls, attempts, maxHint, ends, deadline, burst)

		var failure string
		synctest.Test(t, func(t *testing.T) {
			budget, err := jidoka.NewRetryBudget(jidoka.RetryBudgetOptions{Ratio: jidoka.MinBudgetRatio, Burst: burst})
			if err != nil {
				t.Fatal(err)
			}
			r, err := jidoka.NewRetry(jidoka.RetryOptions{
				MaxAttempts: attempts, BaseDelay: retryModelBase, MaxDelay: retryModelMax,
				MaxRetryAfter: maxHint, Budget: budget,
				Jitter: func(d time.Duration) time.Duration { return d },
			})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.Background(), context.CancelFunc(func() {})
			switch {
			case deadline:
				ctx, cancel = context.WithTimeout(ctx, ends)
			case ends > 0:
				ctx, cancel = context.WithCancel(ctx)
				time.AfterFunc(ends, cancel)
			}
			defer cancel()
			start := time.Now()
			var starts []time.Duration
			err = r.Do(ctx, func(context.Context) error {
				starts = append(starts, time.Since(start))
				c := calls[len(starts)-1]
				time.Sleep(c.took)
				return c.err
			})
			returned := time.Since(start)
			// The deposit of this Do is a millionth of a token.
			left := int(budget.Tokens())
			switch {
			case !slices.Equal(starts, wantStarts):
				failure = fmt.Sprintf("calls started at %v, want %v", starts, wantStarts)
			case err != wantErr:
				failure = fmt.Sprintf("Do returned %v, want %v", err, wantErr)
			case returned != wantReturned:
				failure = fmt.Sprintf("Do returned at %v, want %v", returned, wantReturned)
			case left != wantBudget:
				failure = fmt.Sprintf("the budget holds %d retries, want %d", left, wantBudget)
			}
		})
		if failure != "" {
			rt.Fatal(failure)
		}
	})
}
