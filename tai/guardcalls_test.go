package tai_test

import (
	"context"
	"errors"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/tai"
	"github.com/taipattern/taikit/tai/taitest"
)

// A guard may call the action more than once, one call after another or
// several at a time (see Guard); the Result keeps the value of the first
// call that succeeded, or else of the last call to return.
func TestGuardCallsTheActionSeveralTimes(t *testing.T) {
	errFail := errors.New("fail")
	// The action returns n*10 for its n-th call, failing the calls the
	// test chooses.
	type plan struct {
		fail map[int]bool
		mu   sync.Mutex
		n    int
	}
	action := func(pl *plan) tai.Action[int, int] {
		return tai.ActionFunc[int, int](func(context.Context, tai.Signal[int]) (int, error) {
			pl.mu.Lock()
			pl.n++
			n := pl.n
			pl.mu.Unlock()
			if pl.fail[n] {
				return n * 10, errFail
			}
			return n * 10, nil
		})
	}
	// thrice calls fn three times in a row, returning the first success,
	// or nil with fallback.
	thrice := func(fallback bool) tai.Guard {
		return tai.GuardFunc(func(ctx context.Context, fn func(context.Context) error) error {
			var first error = errFail
			for range 3 {
				if err := fn(ctx); err == nil && first != nil {
					first = nil
				}
			}
			if fallback {
				return nil
			}
			return first
		})
	}
	// together calls fn three times at once and waits for them.
	together := tai.GuardFunc(func(ctx context.Context, fn func(context.Context) error) error {
		errs := make([]error, 3)
		var wg sync.WaitGroup
		for i := range errs {
			wg.Go(func() { errs[i] = fn(ctx) })
		}
		wg.Wait()
		for _, err := range errs {
			if err == nil {
				return nil
			}
		}
		return errFail
	})

	for _, tt := range []struct {
		name     string
		fallback bool
		fail     map[int]bool // which of a signal's three calls fail (1, 2, 3)
		want     int          // which call's value the Result keeps, 0 for none
	}{
		{"the first succeeds", false, nil, 1},
		{"the second succeeds", false, map[int]bool{1: true}, 2},
		{"only the last succeeds", false, map[int]bool{1: true, 2: true}, 3},
		{"every call fails", false, map[int]bool{1: true, 2: true, 3: true}, 0},
		{"every call fails, then a fallback", true, map[int]bool{1: true, 2: true, 3: true}, 3},
	} {
		t.Run(tt.name, func(t *testing.T) {
			pl := &plan{fail: map[int]bool{}}
			p, err := tai.New(fixed(allow, nil), action(pl), tai.WithGuards(thrice(tt.fallback)))
			require.NoError(t, err)
			for k := range 3 { // recycled calls start afresh
				for n := range tt.fail {
					pl.fail[3*k+n] = true
				}
				res, err := p.Process(context.Background(), sig())
				if tt.want == 0 {
					require.ErrorIs(t, err, errFail)
					assert.Equal(t, tai.Failed, res.Outcome)
					assert.Zero(t, res.Value)
					continue
				}
				require.NoError(t, err)
				assert.Equal(t, (3*k+tt.want)*10, res.Value, "signal %d", k)
			}
		})
	}

	t.Run("at once", func(t *testing.T) {
		pl := &plan{fail: map[int]bool{}}
		p, err := tai.New(fixed(allow, nil), action(pl), tai.WithGuards(together))
		require.NoError(t, err)
		for range 50 {
			res, err := p.Process(context.Background(), sig())
			require.NoError(t, err)
			assert.Positive(t, res.Value)
			assert.Zero(t, res.Value%10)
		}
	})
}

// raceEnabled is set by race_test.go.
var raceEnabled bool

// The wrapping path allocates nothing per signal, the retried or hedged
// calls' bookkeeping included.
func TestGuardedPathDoesNotAllocate(t *testing.T) {
	if raceEnabled {
		t.Skip("sync.Pool drops items under the race detector")
	}
	twice := tai.GuardFunc(func(ctx context.Context, fn func(context.Context) error) error {
		if err := fn(ctx); err == nil {
			return nil
		}
		return fn(ctx)
	})
	double := tai.ActionFunc[int, int](func(_ context.Context, s tai.Signal[int]) (int, error) { return 2 * s.Payload, nil })
	p, err := tai.New(fixed(allow, nil), double, tai.WithGuards(twice))
	require.NoError(t, err)
	ctx, s := context.Background(), sig()
	_, _ = p.Process(ctx, s) // the pool's first call
	allocs := testing.AllocsPerRun(1000, func() {
		if _, err := p.Process(ctx, s); err != nil {
			t.Fatal(err)
		}
	})
	assert.Zero(t, allocs)
}

// A guard outside one that refuses the call may turn the refusal into nil
// (a fallback): the action did not run and the signal is Rejected, with
// the refusal as its error, so that errors.Is and RetryAfter still find
// what the refusing guard said.
func TestRefusalSwallowedByAnOuterGuard(t *testing.T) {
	refusal := retryErr{d: 5 * time.Second}
	swallow := tai.GuardFunc(func(ctx context.Context, fn func(context.Context) error) error {
		_ = fn(ctx)
		return nil
	})
	refuse := namedGuard{name: "breaker", j: &journal{}, reject: refusal}
	for _, guards := range [][]tai.Guard{
		{swallow, refuse},
		{swallow, swallow, refuse},
		{swallow, refuse, taitest.NopGuard{}},
	} {
		p, err := tai.New(fixed(allow, nil), doubleAction(&journal{}), tai.WithGuards(guards...))
		require.NoError(t, err)
		for range 3 {
			res, err := p.Process(context.Background(), sig())
			assert.Equal(t, tai.Rejected, res.Outcome)
			require.ErrorIs(t, err, refusal)
			assert.Equal(t, 5*time.Second, tai.RetryAfter(err))
			var rej *tai.RejectedError
			require.ErrorAs(t, err, &rej)
			assert.Equal(t, "breaker", rej.Hook)
		}
	}
	// A retry that is refused, then runs the action, succeeds.
	var n int
	flaky := tai.GuardFunc(func(ctx context.Context, fn func(context.Context) error) error {
		if n++; n%2 == 1 {
			return refusal
		}
		return fn(ctx)
	})
	retry := tai.GuardFunc(func(ctx context.Context, fn func(context.Context) error) error {
		if err := fn(ctx); err == nil {
			return nil
		}
		return fn(ctx)
	})
	p, err := tai.New(fixed(allow, nil), doubleAction(&journal{}), tai.WithGuards(retry, flaky))
	require.NoError(t, err)
	for range 3 {
		res, err := p.Process(context.Background(), sig())
		require.NoError(t, err)
		assert.Equal(t, tai.Succeeded, res.Outcome)
	}
	// A guard that skips the action without a reason still says so.
	p, err = tai.New(fixed(allow, nil), doubleAction(&journal{}), tai.WithGuards(swallow, tai.GuardFunc(func(context.Context, func(context.Context) error) error { return nil })))
	require.NoError(t, err)
	_, err = p.Process(context.Background(), sig())
	require.ErrorContains(t, err, "guard returned without running the action")
}

// A call of the action that ends its goroutine with runtime.Goexit, on a
// goroutine a guard started for it (as a hedge does), did not succeed:
// the Result keeps the value of a call that did.
func TestGoexitInACallOnAGuardsGoroutineIsNoSuccess(t *testing.T) {
	var n atomic.Int32
	action := tai.ActionFunc[int, int](func(_ context.Context, s tai.Signal[int]) (int, error) {
		if n.Add(1)%2 == 1 {
			runtime.Goexit()
		}
		return 2 * s.Payload, nil
	})
	// aside runs a first call on a goroutine of its own and waits for it
	// to end, then a second call on Do's goroutine.
	aside := tai.GuardFunc(func(ctx context.Context, fn func(context.Context) error) error {
		ended := make(chan error, 1)
		go func() {
			returned := false
			defer func() {
				if !returned {
					ended <- errors.New("the call ended its goroutine")
				}
			}()
			err := fn(ctx)
			returned = true
			ended <- err
		}()
		first := <-ended
		if err := fn(ctx); err != nil {
			return errors.Join(first, err)
		}
		return nil
	})
	p, err := tai.New(fixed(allow, nil), action, tai.WithGuards(aside))
	require.NoError(t, err)
	for i := range 3 { // recycled calls too
		s := sig()
		s.Payload = 10 + i
		res, err := p.Process(context.Background(), s)
		require.NoError(t, err)
		assert.Equal(t, 2*s.Payload, res.Value, "signal %d", i)
	}
}

// A guard that abandons fn while a guard inside it still holds the call
// (a retry waiting to call again, a bulkhead waiting for a slot) has
// abandoned the signal as surely as one that abandons a running action:
// the signal fails with ErrAbandoned, is not reported as Rejected (the
// action may yet run), and the late call runs the action with this
// signal, never with the data of a signal processed after it.
func TestAbandonedWhileAnInnerGuardHoldsTheCall(t *testing.T) {
	errFail := errors.New("fail")
	// The inner guards hold only the first signal's call, which the outer
	// guard marks in its context, and close entered as they do.
	type abandonedKey struct{}
	for _, tt := range []struct {
		name  string
		inner func(entered chan<- struct{}, again <-chan struct{}) tai.Guard
		fail  bool // the first call of the action fails
	}{
		{"a retry waits to call again", func(entered chan<- struct{}, again <-chan struct{}) tai.Guard {
			return tai.GuardFunc(func(ctx context.Context, fn func(context.Context) error) error {
				if err := fn(ctx); err == nil || ctx.Value(abandonedKey{}) == nil {
					return err
				}
				close(entered)
				<-again
				return fn(ctx)
			})
		}, true},
		{"a bulkhead waits for a slot", func(entered chan<- struct{}, again <-chan struct{}) tai.Guard {
			return tai.GuardFunc(func(ctx context.Context, fn func(context.Context) error) error {
				if ctx.Value(abandonedKey{}) != nil {
					close(entered)
					<-again
				}
				return fn(ctx)
			})
		}, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var (
				mu      sync.Mutex
				seen    []int
				entered = make(chan struct{}) // the first signal waits in the inner guard
				again   = make(chan struct{})
				late    = make(chan struct{}) // the abandoned call has ended
			)
			action := tai.ActionFunc[int, int](func(_ context.Context, s tai.Signal[int]) (int, error) {
				mu.Lock()
				seen = append(seen, s.Payload)
				first := len(seen) == 1
				mu.Unlock()
				if first && tt.fail {
					return 0, errFail
				}
				return 2 * s.Payload, nil
			})
			var first atomic.Bool
			abandon := tai.GuardFunc(func(ctx context.Context, fn func(context.Context) error) error {
				if !first.CompareAndSwap(false, true) {
					return fn(ctx)
				}
				go func() {
					defer close(late)
					_ = fn(context.WithValue(ctx, abandonedKey{}, true))
				}()
				<-entered
				return errors.New("timed out")
			})
			p, err := tai.New(fixed(allow, nil), action, tai.WithGuards(abandon, tt.inner(entered, again)))
			require.NoError(t, err)

			a := sig()
			a.Payload = 1
			res, err := p.Process(context.Background(), a)
			assert.ErrorIs(t, err, tai.ErrAbandoned)
			assert.Equal(t, tai.Failed, res.Outcome)

			for i := range 3 {
				b := sig()
				b.Payload = 10 + i
				res, err = p.Process(context.Background(), b)
				require.NoError(t, err)
				assert.Equal(t, 2*b.Payload, res.Value)
			}
			close(again)
			<-late
			mu.Lock()
			defer mu.Unlock()
			want := []int{10, 11, 12, 1}
			if tt.fail {
				want = []int{1, 10, 11, 12, 1}
			}
			assert.Equal(t, want, seen, "the late call runs the action with its own signal")
		})
	}
}
