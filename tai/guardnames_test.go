package tai_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/tai"
)

// A guard inside a retry may refuse one attempt and a guard outside it the
// next (a full bulkhead, then an open breaker): when a fallback outside
// the retry turns the last refusal into nil, the signal is Rejected with
// that refusal, the reason the action did not run in the end, so that
// errors.Is and RetryAfter find what the last refusing guard said, and
// Hook names it.
func TestSwallowedRefusalIsTheLastOne(t *testing.T) {
	full := retryErr{d: time.Millisecond}
	open := retryErr{d: 30 * time.Second}
	swallow := tai.GuardFunc(func(ctx context.Context, fn func(context.Context) error) error {
		_ = fn(ctx)
		return nil
	})
	// The bulkhead refuses the first attempt of each signal, the breaker
	// the second.
	var attempt int
	retry := tai.GuardFunc(func(ctx context.Context, fn func(context.Context) error) error {
		if attempt = 1; fn(ctx) == nil {
			return nil
		}
		attempt = 2
		return fn(ctx)
	})
	breaker := namedGuardFunc{"breaker", tai.GuardFunc(func(ctx context.Context, fn func(context.Context) error) error {
		if attempt == 2 {
			return open
		}
		return fn(ctx)
	})}
	bulkhead := namedGuardFunc{"bulkhead", tai.GuardFunc(func(ctx context.Context, fn func(context.Context) error) error {
		if attempt == 1 {
			return full
		}
		return fn(ctx)
	})}
	j := &journal{}
	p, err := tai.New(fixed(allow, nil), doubleAction(j), tai.WithGuards(swallow, retry, breaker, bulkhead))
	require.NoError(t, err)
	for range 3 {
		res, err := p.Process(context.Background(), sig())
		assert.Equal(t, tai.Rejected, res.Outcome)
		require.ErrorIs(t, err, open, "the breaker's refusal of the last attempt, not the bulkhead's of the first")
		assert.Equal(t, 30*time.Second, tai.RetryAfter(err))
		var rej *tai.RejectedError
		require.ErrorAs(t, err, &rej)
		assert.Equal(t, "breaker", rej.Hook)
	}
	assert.Empty(t, j.get(), "the action never ran")
}

// The error of a signal abandoned by a guard names that guard, not a
// guard inside it that was still running (holding the call, or waiting
// for the action to return) when it gave up.
func TestAbandonedErrorNamesTheGuardThatGaveUp(t *testing.T) {
	for _, tt := range []struct {
		name string
		hold bool // the inner guard holds the call before running the action
	}{
		{"the action runs", false},
		{"an inner guard holds the call", true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			entered, release, finished := make(chan struct{}), make(chan struct{}), make(chan struct{})
			deadline := namedGuardFunc{"deadline", tai.GuardFunc(func(ctx context.Context, fn func(context.Context) error) error {
				go func() {
					defer close(finished)
					_ = fn(ctx)
				}()
				<-entered
				return errors.New("gave up")
			})}
			breaker := namedGuardFunc{"breaker", tai.GuardFunc(func(ctx context.Context, fn func(context.Context) error) error {
				if tt.hold {
					close(entered)
					<-release
				}
				return fn(ctx)
			})}
			action := tai.ActionFunc[int, int](func(context.Context, tai.Signal[int]) (int, error) {
				if !tt.hold {
					close(entered)
					<-release
				}
				return 1, nil
			})
			p, err := tai.New(allowAll, action, tai.WithGuards(deadline, breaker))
			require.NoError(t, err)
			_, err = p.Process(context.Background(), tai.Signal[int]{ID: "1", Kind: "k"})
			close(release)
			<-finished
			require.ErrorIs(t, err, tai.ErrAbandoned)
			assert.Equal(t, `tai: guard returned before the action it started (guard "deadline"): gave up`, err.Error())
		})
	}
}

// Under a guard that runs calls at the same time (a hedge), one call may
// be refused by a guard inside (a bulkhead whose wait ran out) while
// another is refused by a guard outside that one (a breaker that opened
// meanwhile). When a fallback turns the hedge's error into nil, the
// signal is Rejected with one of those refusals, and Hook names the guard
// that gave that one, so that errors.Is, RetryAfter and Hook agree.
func TestConcurrentRefusalsNameTheirGuard(t *testing.T) {
	full := retryErr{d: time.Millisecond}
	open := retryErr{d: 30 * time.Second}
	type hedgedKey struct{}
	swallow := tai.GuardFunc(func(ctx context.Context, fn func(context.Context) error) error {
		_ = fn(ctx)
		return nil
	})
	// The first call waits in the bulkhead; the hedge then starts a second
	// call, which the breaker refuses; then the first call's wait runs out.
	var waiting, release chan struct{}
	hedge := tai.GuardFunc(func(ctx context.Context, fn func(context.Context) error) error {
		first := make(chan error, 1)
		go func() { first <- fn(ctx) }()
		<-waiting
		_ = fn(context.WithValue(ctx, hedgedKey{}, true))
		close(release)
		return <-first
	})
	breaker := namedGuardFunc{"breaker", tai.GuardFunc(func(ctx context.Context, fn func(context.Context) error) error {
		if ctx.Value(hedgedKey{}) != nil {
			return open
		}
		return fn(ctx)
	})}
	bulkhead := namedGuardFunc{"bulkhead", tai.GuardFunc(func(ctx context.Context, fn func(context.Context) error) error {
		close(waiting)
		<-release
		return full
	})}
	j := &journal{}
	p, err := tai.New(fixed(allow, nil), doubleAction(j), tai.WithGuards(swallow, hedge, breaker, bulkhead))
	require.NoError(t, err)
	for range 3 {
		waiting, release = make(chan struct{}), make(chan struct{})
		res, err := p.Process(context.Background(), sig())
		assert.Equal(t, tai.Rejected, res.Outcome)
		var rej *tai.RejectedError
		require.ErrorAs(t, err, &rej)
		switch rej.Hook {
		case "breaker":
			require.ErrorIs(t, err, open, "the breaker's refusal")
			assert.Equal(t, 30*time.Second, tai.RetryAfter(err))
		case "bulkhead":
			require.ErrorIs(t, err, full, "the bulkhead's refusal")
			assert.Equal(t, time.Millisecond, tai.RetryAfter(err))
		default:
			t.Fatalf("Hook is %q, want the breaker or the bulkhead", rej.Hook)
		}
	}
	assert.Empty(t, j.get(), "the action never ran")
}

// A guard outside one that refused the call may return an error of its
// own in place of the refusal (a retry that gives up with "retries
// exhausted"): the signal is Rejected with that error, and Hook names the
// guard whose error it is, the outer one. A guard that passes the refusal
// on, as it is or wrapped with %w, leaves Hook naming the guard that
// refused.
func TestRejectionNamesTheGuardWhoseErrorItIs(t *testing.T) {
	full := retryErr{d: time.Second}
	exhausted := errors.New("retries exhausted")
	refuse := namedGuardFunc{"bulkhead", tai.GuardFunc(func(context.Context, func(context.Context) error) error {
		return full
	})}
	// outer calls fn twice, as a retry does, and returns what mine makes
	// of the last error.
	outer := func(name string, mine func(error) error) tai.Guard {
		return namedGuardFunc{name, tai.GuardFunc(func(ctx context.Context, fn func(context.Context) error) error {
			_ = fn(ctx)
			return mine(fn(ctx))
		})}
	}
	own := func(error) error { return exhausted }
	same := func(err error) error { return err }
	wrap := func(err error) error { return fmt.Errorf("retry: %w", err) }
	pass := tai.GuardFunc(func(ctx context.Context, fn func(context.Context) error) error { return fn(ctx) })
	for _, tt := range []struct {
		name   string
		guards []tai.Guard
		hook   string
		is     error
	}{
		{"own error", []tai.Guard{outer("retry", own), refuse}, "retry", exhausted},
		{"own error, passed on by a guard outside", []tai.Guard{pass, outer("retry", own), pass, refuse}, "retry", exhausted},
		{"own error of the outermost", []tai.Guard{outer("fallback", own), outer("retry", same), refuse}, "fallback", exhausted},
		{"own error inside another's", []tai.Guard{outer("fallback", same), outer("retry", own), refuse}, "retry", exhausted},
		{"the refusal passed on", []tai.Guard{outer("retry", same), refuse}, "bulkhead", full},
		{"the refusal wrapped", []tai.Guard{outer("retry", wrap), refuse}, "bulkhead", full},
	} {
		t.Run(tt.name, func(t *testing.T) {
			j := &journal{}
			p, err := tai.New(fixed(allow, nil), doubleAction(j), tai.WithGuards(tt.guards...))
			require.NoError(t, err)
			for range 3 {
				res, err := p.Process(context.Background(), sig())
				assert.Equal(t, tai.Rejected, res.Outcome)
				require.ErrorIs(t, err, tt.is)
				var rej *tai.RejectedError
				require.ErrorAs(t, err, &rej)
				assert.Equal(t, tt.hook, rej.Hook, "%v", err)
			}
			assert.Empty(t, j.get(), "the action never ran")
		})
	}
}
