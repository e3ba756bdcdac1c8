package jidoka_test

import (
	"context"
	"errors"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/jidoka"
)

func TestNewTimeoutRejectsBadOptions(t *testing.T) {
	for _, d := range []time.Duration{0, -time.Second} {
		_, err := jidoka.NewTimeout(jidoka.TimeoutOptions{Duration: d})
		require.Error(t, err)
		assert.Contains(t, err.Error(), "TimeoutOptions.Duration")
	}
}

// A server that answers only when its client gives up: it records that its
// request's context ended.
func hangingServer(t *testing.T) (*httptest.Server, <-chan struct{}) {
	t.Helper()
	cancelled := make(chan struct{}, 100)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-r.Context().Done()
		cancelled <- struct{}{}
	}))
	t.Cleanup(srv.Close)
	return srv, cancelled
}

func get(ctx context.Context, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 500 {
		return errors.New(resp.Status)
	}
	return nil
}

func waitFor(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(10 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
	}
}

func TestTimeoutCancelsTheRequest(t *testing.T) {
	srv, cancelled := hangingServer(t)
	to, err := jidoka.NewTimeout(jidoka.TimeoutOptions{Name: "slow", Duration: 50 * time.Millisecond})
	require.NoError(t, err)

	err = to.Do(context.Background(), func(ctx context.Context) error { return get(ctx, srv.URL) })
	require.Error(t, err)
	assert.ErrorIs(t, err, jidoka.ErrTimeout)
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	var te *jidoka.TimeoutError
	require.ErrorAs(t, err, &te)
	assert.Equal(t, "slow", te.Timeout)
	assert.Equal(t, 50*time.Millisecond, te.Duration)
	assert.Contains(t, err.Error(), `timeout "slow"`)
	waitFor(t, cancelled, "the server to see the request cancelled")
	t.Cleanup(http.DefaultClient.CloseIdleConnections)
}

func TestTimeoutContext(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		to, err := jidoka.NewTimeout(jidoka.TimeoutOptions{Duration: time.Second})
		require.NoError(t, err)
		start := time.Now()
		err = to.Do(context.Background(), func(ctx context.Context) error {
			dl, ok := ctx.Deadline()
			assert.True(t, ok)
			assert.Equal(t, start.Add(time.Second), dl)
			assert.NoError(t, ctx.Err())
			<-ctx.Done()
			assert.Equal(t, start.Add(time.Second), time.Now())
			assert.ErrorIs(t, ctx.Err(), context.DeadlineExceeded)
			return ctx.Err()
		})
		assert.ErrorIs(t, err, jidoka.ErrTimeout)

		// The context ends when the call returns, as after a cancel.
		var kept context.Context
		require.NoError(t, to.Do(context.Background(), func(ctx context.Context) error {
			kept = ctx
			_ = ctx.Done()
			return nil
		}))
		assert.ErrorIs(t, kept.Err(), context.Canceled)
		select {
		case <-kept.Done():
		default:
			t.Fatal("the context's Done is open after the call returned")
		}
	})
}

func TestTimeoutLateSuccessStands(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		to, err := jidoka.NewTimeout(jidoka.TimeoutOptions{Duration: time.Second})
		require.NoError(t, err)
		err = to.Do(context.Background(), func(ctx context.Context) error {
			time.Sleep(2 * time.Second) // ignores ctx
			return nil
		})
		assert.NoError(t, err)
	})
}

func TestTimeoutCallerDeadlineFirst(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		to, err := jidoka.NewTimeout(jidoka.TimeoutOptions{Duration: time.Minute})
		require.NoError(t, err)
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		err = to.Do(ctx, func(ctx context.Context) error {
			<-ctx.Done()
			return ctx.Err()
		})
		assert.ErrorIs(t, err, context.DeadlineExceeded)
		assert.NotErrorIs(t, err, jidoka.ErrTimeout, "the caller's deadline is not the Timeout's")
	})
}

// When the caller's deadline comes before the Timeout's, the call still
// gets a context that ends when it returns, as the Timeout's doc and a
// context.WithTimeout with its deferred cancel promise: work the call
// handed its context to (a goroutine, an AfterFunc) is released then, not
// at the caller's deadline. Its deadline is the caller's.
func TestTimeoutCallerDeadlineFirstContextEndsOnReturn(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		to, err := jidoka.NewTimeout(jidoka.TimeoutOptions{Duration: time.Minute})
		require.NoError(t, err)
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		want, _ := ctx.Deadline()
		var kept context.Context
		var released atomic.Bool
		require.NoError(t, to.Do(ctx, func(ctx context.Context) error {
			kept = ctx
			dl, ok := ctx.Deadline()
			assert.True(t, ok)
			assert.Equal(t, want, dl, "the caller's deadline")
			context.AfterFunc(ctx, func() { released.Store(true) })
			return nil
		}))
		synctest.Wait()
		assert.True(t, released.Load(), "the call's context did not end when it returned")
		assert.ErrorIs(t, kept.Err(), context.Canceled)
		select {
		case <-kept.Done():
		default:
			t.Fatal("the context's Done is open after the call returned")
		}
		assert.NoError(t, ctx.Err(), "the caller's own context goes on")
	})
}

func TestTimeoutCallerCancels(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		to, err := jidoka.NewTimeout(jidoka.TimeoutOptions{Duration: time.Minute})
		require.NoError(t, err)
		ctx, cancel := context.WithCancel(context.Background())
		go func() {
			time.Sleep(time.Second)
			cancel()
		}()
		err = to.Do(ctx, func(ctx context.Context) error {
			<-ctx.Done()
			return ctx.Err()
		})
		assert.ErrorIs(t, err, context.Canceled)
		assert.NotErrorIs(t, err, jidoka.ErrTimeout)

		// Already cancelled: fn is not called.
		called := false
		err = to.Do(ctx, func(context.Context) error { called = true; return nil })
		assert.ErrorIs(t, err, context.Canceled)
		assert.False(t, called)
	})
}

func TestTimeoutContextCarriesValues(t *testing.T) {
	type key struct{}
	to, err := jidoka.NewTimeout(jidoka.TimeoutOptions{Duration: time.Minute})
	require.NoError(t, err)
	ctx := context.WithValue(context.Background(), key{}, "v")
	for range 3 { // with the timer reused
		require.NoError(t, to.Do(ctx, func(ctx context.Context) error {
			assert.Equal(t, "v", ctx.Value(key{}))
			// A child context of the Timeout's ends with it.
			child, cancel := context.WithCancel(ctx)
			defer cancel()
			assert.NoError(t, child.Err())
			return nil
		}))
	}
}

func TestTimeoutPanicPassesOn(t *testing.T) {
	to, err := jidoka.NewTimeout(jidoka.TimeoutOptions{Duration: time.Minute})
	require.NoError(t, err)
	var kept context.Context
	assert.PanicsWithValue(t, "boom", func() {
		_ = to.Do(context.Background(), func(ctx context.Context) error {
			kept = ctx
			_ = ctx.Done()
			panic("boom")
		})
	})
	assert.ErrorIs(t, kept.Err(), context.Canceled, "the context ends when the call panics")
	// The Timeout still works.
	assert.NoError(t, to.Do(context.Background(), func(context.Context) error { return nil }))
}

func TestTimeoutSuccessAllocatesOnlyItsContext(t *testing.T) {
	skipUnderRace(t)
	to, err := jidoka.NewTimeout(jidoka.TimeoutOptions{Duration: time.Minute})
	require.NoError(t, err)
	ctx := context.Background()
	fn := func(context.Context) error { return nil }
	allocs := testing.AllocsPerRun(1000, func() {
		if err := to.Do(ctx, fn); err != nil {
			t.Fatal(err)
		}
	})
	assert.Equal(t, 1.0, allocs, "the call's context; no timer of its own")
}

// No call's context is given to another call, whatever the call did with
// it: work it started that outlives it (context.WithoutCancel and
// context.WithValue ask their parent nothing as they are made) still sees
// it ended, with its own values. A reused context showed such work the
// next call's values, and a nil parent once it was put back.
func TestTimeoutContextIsNeverReused(t *testing.T) {
	to, err := jidoka.NewTimeout(jidoka.TimeoutOptions{Duration: time.Minute})
	require.NoError(t, err)
	type key struct{}
	for name, keep := range map[string]func(context.Context) context.Context{
		"the context itself":    func(ctx context.Context) context.Context { return ctx },
		"read, then kept":       func(ctx context.Context) context.Context { _ = ctx.Err(); _ = ctx.Value(key{}); return ctx },
		"context.WithoutCancel": context.WithoutCancel,
		"context.WithValue": func(ctx context.Context) context.Context {
			return context.WithValue(ctx, struct{ other int }{}, 1)
		},
	} {
		var first, kept context.Context
		require.NoError(t, to.Do(context.WithValue(context.Background(), key{}, "alice"), func(ctx context.Context) error {
			first, kept = ctx, keep(ctx)
			return nil
		}), name)
		var later []context.Context
		for range 100 { // later calls, each free to take a context put back
			require.NoError(t, to.Do(context.WithValue(context.Background(), key{}, "bob"), func(ctx context.Context) error {
				later = append(later, ctx)
				return nil
			}), name)
		}
		assert.Equal(t, "alice", kept.Value(key{}), "%s: the first call's values, after later calls", name)
		if name != "context.WithoutCancel" {
			assert.ErrorIs(t, kept.Err(), context.Canceled, "%s: the first call's context stays ended", name)
		}
		for _, ctx := range later {
			assert.NotSame(t, first, ctx, name)
		}
	}
}

// Contexts derived from a Timeout's end with it, without a goroutine each
// to watch it; context.AfterFunc on it runs once it ends, unless stopped.
func TestTimeoutDerivedContexts(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		to, err := jidoka.NewTimeout(jidoka.TimeoutOptions{Duration: time.Second})
		require.NoError(t, err)
		var ran, stopped atomic.Bool
		err = to.Do(context.Background(), func(ctx context.Context) error {
			before := runtime.NumGoroutine()
			child, cancel := context.WithCancel(ctx)
			defer cancel()
			assert.Equal(t, before, runtime.NumGoroutine(), "a goroutine per derived context")
			stopMe := context.AfterFunc(ctx, func() { stopped.Store(true) })
			context.AfterFunc(ctx, func() { ran.Store(true) })
			assert.True(t, stopMe())
			<-child.Done()
			assert.ErrorIs(t, child.Err(), context.DeadlineExceeded)
			assert.Equal(t, time.Second, time.Until(time.Now().Add(time.Second)))
			return child.Err()
		})
		assert.ErrorIs(t, err, jidoka.ErrTimeout)
		synctest.Wait()
		assert.True(t, ran.Load())
		assert.False(t, stopped.Load())

		// AfterFunc on a context that has ended runs at once.
		var kept context.Context
		require.NoError(t, to.Do(context.Background(), func(ctx context.Context) error { kept = ctx; _ = ctx.Done(); return nil }))
		var late atomic.Bool
		context.AfterFunc(kept, func() { late.Store(true) })
		synctest.Wait()
		assert.True(t, late.Load())
	})
}

// A Duration too long to add to the clock gives a deadline at the farthest
// time there is, not one in the past: a connection or a context made from
// the call's deadline must not end at once.
func TestTimeoutLongestDuration(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		to, err := jidoka.NewTimeout(jidoka.TimeoutOptions{Duration: math.MaxInt64})
		require.NoError(t, err)
		time.Sleep(time.Second)
		err = to.Do(context.Background(), func(ctx context.Context) error {
			dl, ok := ctx.Deadline()
			require.True(t, ok)
			assert.True(t, dl.After(time.Now().Add(200*365*24*time.Hour)), "deadline %v", dl)
			inner, cancel := context.WithTimeout(ctx, time.Minute)
			defer cancel()
			dl, _ = inner.Deadline()
			assert.Equal(t, time.Now().Add(time.Minute), dl, "a shorter deadline made from it")
			return ctx.Err()
		})
		require.NoError(t, err)
	})
}

// A call that gives its deadline to a connection fails at that very
// instant, as the Timeout's timer fires: it timed out, whichever of the two
// the runtime runs first.
func TestTimeoutErrorAtTheDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		to, err := jidoka.NewTimeout(jidoka.TimeoutOptions{Name: "db", Duration: time.Second})
		require.NoError(t, err)
		for range 100 {
			err := to.Do(context.Background(), func(ctx context.Context) error { return readUntilDeadline(t, ctx) })
			require.ErrorIs(t, err, os.ErrDeadlineExceeded)
			require.ErrorIs(t, err, jidoka.ErrTimeout)
		}
	})
}

// readUntilDeadline reads from a connection that never answers, with
// ctx's deadline as its read deadline: it fails with
// os.ErrDeadlineExceeded at that instant, as the timer of ctx fires.
func readUntilDeadline(t *testing.T, ctx context.Context) error {
	client, server := net.Pipe()
	defer client.Close()
	defer server.Close()
	dl, _ := ctx.Deadline()
	require.NoError(t, client.SetReadDeadline(dl))
	_, err := client.Read(make([]byte, 1))
	return err
}

// heldParent is a caller's context that ends when told to and runs the
// functions given to its AfterFunc only when released: the stdlib's
// contexts run them on goroutines of their own, some time after they end.
type heldParent struct {
	context.Context
	done chan struct{}
	mu   sync.Mutex
	err  error
	fns  []func()
}

func newHeldParent() *heldParent {
	return &heldParent{Context: context.Background(), done: make(chan struct{})}
}

func (p *heldParent) Done() <-chan struct{} { return p.done }

func (p *heldParent) Err() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.err
}

func (p *heldParent) AfterFunc(f func()) func() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.fns = append(p.fns, f)
	return func() bool { return false }
}

func (p *heldParent) cancel() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.err = context.Canceled
	close(p.done)
}

func (p *heldParent) release() {
	p.mu.Lock()
	fns := p.fns
	p.fns = nil
	p.mu.Unlock()
	for _, f := range fns {
		f()
	}
}

// A function given to the AfterFunc of a Timeout's context runs when the
// context ends, even when Done is first asked for after the caller's
// context ended and before the context learned of it: Done then ends the
// context, and runs what AfterFunc arranged, as context.AfterFunc does.
func TestTimeoutAfterFuncRunsWhenDoneSeesTheCallerEnd(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		to, err := jidoka.NewTimeout(jidoka.TimeoutOptions{Duration: time.Minute})
		require.NoError(t, err)
		parent := newHeldParent()
		var ran atomic.Bool
		err = to.Do(parent, func(ctx context.Context) error {
			af, ok := ctx.(interface{ AfterFunc(func()) func() bool })
			require.True(t, ok, "the context has an AfterFunc")
			af.AfterFunc(func() { ran.Store(true) })
			parent.cancel()
			<-ctx.Done()
			return ctx.Err()
		})
		require.ErrorIs(t, err, context.Canceled)
		parent.release()
		synctest.Wait()
		assert.True(t, ran.Load(), "the function given to AfterFunc never ran")
	})
}

// Err of a Timeout's context is not nil only once its Done is closed, as
// the context.Context contract has it, also when the caller's context has
// ended and the call's context has not been told yet: Err then ends it,
// closes Done and runs what AfterFunc arranged, as Done does.
func TestTimeoutErrOnlyOnceDoneIsClosed(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		to, err := jidoka.NewTimeout(jidoka.TimeoutOptions{Duration: time.Minute})
		require.NoError(t, err)
		parent := newHeldParent()
		var ran atomic.Bool
		err = to.Do(parent, func(ctx context.Context) error {
			done := ctx.Done() // asked before the caller's context ends
			context.AfterFunc(ctx, func() { ran.Store(true) })
			parent.cancel()
			err := ctx.Err()
			require.ErrorIs(t, err, context.Canceled)
			select {
			case <-done:
			default:
				t.Errorf("Err is %v while Done is open", err)
			}
			synctest.Wait()
			assert.True(t, ran.Load(), "the function given to AfterFunc did not run when Err reported the end")
			return err
		})
		require.ErrorIs(t, err, context.Canceled)
		assert.NotErrorIs(t, err, jidoka.ErrTimeout)
		parent.release()
		synctest.Wait()
	})
}

// timeoutParents are the two kinds of caller's context a Timeout meets:
// one that can never end (its Done is nil), and one that can.
var timeoutParents = map[string]func() (context.Context, context.CancelFunc){
	"background": func() (context.Context, context.CancelFunc) { return context.Background(), func() {} },
	"cancelable": func() (context.Context, context.CancelFunc) { return context.WithCancel(context.Background()) },
}

// A call that never asks its context for Done sees it end at the deadline
// all the same: Err is nil before it and context.DeadlineExceeded from it
// on, Done is closed then, and the call's error is a TimeoutError.
func TestTimeoutErrWithoutDone(t *testing.T) {
	underEachParent(t, jidoka.TimeoutOptions{Name: "t", Duration: time.Second}, func(t *testing.T, ctx context.Context, to *jidoka.Timeout) {
		err := to.Do(ctx, func(ctx context.Context) error {
			time.Sleep(time.Second - time.Nanosecond)
			synctest.Wait()
			assert.NoError(t, ctx.Err(), "before the deadline")
			time.Sleep(time.Nanosecond)
			synctest.Wait()
			assert.ErrorIs(t, ctx.Err(), context.DeadlineExceeded, "at the deadline")
			select {
			case <-ctx.Done():
			default:
				t.Error("Done is open after Err said the deadline passed")
			}
			return ctx.Err()
		})
		assert.ErrorIs(t, err, jidoka.ErrTimeout)
		assert.NoError(t, ctx.Err(), "the caller's context goes on")
	})
}

// A call that ignores its context altogether and returns an error after
// the deadline timed out; one that returns an error before it did not. Its
// context, kept, says which.
func TestTimeoutIgnoredContext(t *testing.T) {
	underEachParent(t, jidoka.TimeoutOptions{Name: "t", Duration: time.Second}, func(t *testing.T, ctx context.Context, to *jidoka.Timeout) {
		failure := errors.New("failed")
		for _, tc := range []struct {
			took    time.Duration
			err     error
			timeout bool
			ctxErr  error
		}{
			{2 * time.Second, failure, true, context.DeadlineExceeded},
			{2 * time.Second, nil, false, context.DeadlineExceeded},
			{time.Second - 1, failure, false, context.Canceled},
			{time.Second - 1, nil, false, context.Canceled},
		} {
			var kept context.Context
			err := to.Do(ctx, func(ctx context.Context) error {
				kept = ctx
				time.Sleep(tc.took)
				return tc.err
			})
			if tc.timeout {
				assert.ErrorIs(t, err, jidoka.ErrTimeout, "took %v", tc.took)
				assert.ErrorIs(t, err, failure, "took %v", tc.took)
			} else {
				assert.Equal(t, tc.err, err, "took %v", tc.took)
			}
			assert.ErrorIs(t, kept.Err(), tc.ctxErr, "took %v", tc.took)
			select {
			case <-kept.Done():
			default:
				t.Errorf("took %v: Done is open after the call returned", tc.took)
			}
		}
	})
}

// Done, AfterFunc and a derived context asked for before the deadline end
// at the deadline, to the nanosecond; asked for after it, they are ended
// at once.
func TestTimeoutDoneAskedLate(t *testing.T) {
	underEachParent(t, jidoka.TimeoutOptions{Duration: time.Second}, func(t *testing.T, ctx context.Context, to *jidoka.Timeout) {
		start := time.Now()
		var ranAt atomic.Int64
		err := to.Do(ctx, func(ctx context.Context) error {
			time.Sleep(time.Second / 2)
			context.AfterFunc(ctx, func() { ranAt.Store(int64(time.Since(start))) })
			child, cancelChild := context.WithCancel(ctx)
			defer cancelChild()
			<-ctx.Done()
			assert.Equal(t, time.Second, time.Since(start), "Done closed")
			<-child.Done()
			assert.ErrorIs(t, child.Err(), context.DeadlineExceeded)
			synctest.Wait()
			assert.Equal(t, int64(time.Second), ranAt.Load(), "AfterFunc ran")
			return ctx.Err()
		})
		assert.ErrorIs(t, err, jidoka.ErrTimeout)

		err = to.Do(ctx, func(ctx context.Context) error {
			time.Sleep(2 * time.Second)
			var ran atomic.Bool
			context.AfterFunc(ctx, func() { ran.Store(true) })
			child, cancelChild := context.WithCancel(ctx)
			defer cancelChild()
			select {
			case <-ctx.Done():
			default:
				t.Error("Done is open after the deadline")
			}
			assert.ErrorIs(t, child.Err(), context.DeadlineExceeded)
			synctest.Wait()
			assert.True(t, ran.Load(), "AfterFunc after the deadline")
			return ctx.Err()
		})
		assert.ErrorIs(t, err, jidoka.ErrTimeout)
	})
}

// When the caller's context ends, before the deadline, while the call
// looks at neither, its error is the one the call's context reports, and
// the call did not time out; when it ends after the deadline, the
// deadline came first.
func TestTimeoutCallerEndsWhileTheCallLooksAway(t *testing.T) {
	for _, tc := range []struct {
		cancelAt time.Duration
		ctxErr   error
		timeout  bool
	}{
		{time.Second / 2, context.Canceled, false},
		{3 * time.Second / 2, context.DeadlineExceeded, true},
	} {
		synctest.Test(t, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			time.AfterFunc(tc.cancelAt, cancel)
			to, err := jidoka.NewTimeout(jidoka.TimeoutOptions{Duration: time.Second})
			require.NoError(t, err)
			var kept context.Context
			err = to.Do(ctx, func(ctx context.Context) error {
				kept = ctx
				time.Sleep(2 * time.Second)
				return ctx.Err()
			})
			assert.ErrorIs(t, err, tc.ctxErr, "caller gave up at %v", tc.cancelAt)
			assert.Equal(t, tc.timeout, errors.Is(err, jidoka.ErrTimeout), "caller gave up at %v", tc.cancelAt)
			assert.ErrorIs(t, kept.Err(), tc.ctxErr)
		})
	}
}

// A panic in fn passes on, and the call's context has ended, whether the
// call asked for Done or not and whether the deadline had passed.
func TestTimeoutPanicEndsTheContext(t *testing.T) {
	underEachParent(t, jidoka.TimeoutOptions{Duration: time.Second}, func(t *testing.T, ctx context.Context, to *jidoka.Timeout) {
		for _, tc := range []struct {
			took   time.Duration
			done   bool
			ctxErr error
		}{
			{0, false, context.Canceled},
			{0, true, context.Canceled},
			{2 * time.Second, false, context.DeadlineExceeded},
			{2 * time.Second, true, context.DeadlineExceeded},
		} {
			var kept context.Context
			var ran atomic.Bool
			assert.PanicsWithValue(t, "boom", func() {
				_ = to.Do(ctx, func(ctx context.Context) error {
					kept = ctx
					if tc.done {
						context.AfterFunc(ctx, func() { ran.Store(true) })
					}
					time.Sleep(tc.took)
					panic("boom")
				})
			})
			assert.ErrorIs(t, kept.Err(), tc.ctxErr, "took %v, asked for Done %v", tc.took, tc.done)
			synctest.Wait()
			assert.Equal(t, tc.done, ran.Load(), "took %v, AfterFunc ran", tc.took)
		}
		require.NoError(t, to.Do(ctx, func(context.Context) error { return nil }))
	})
}

// Timeouts nest: the shorter deadline is the one that counts, and its
// Timeout the one that reports it, whichever is outside.
func TestTimeoutNested(t *testing.T) {
	underEachParent(t, jidoka.TimeoutOptions{Name: "short", Duration: time.Second}, func(t *testing.T, ctx context.Context, short *jidoka.Timeout) {
		long, err := jidoka.NewTimeout(jidoka.TimeoutOptions{Name: "long", Duration: time.Minute})
		require.NoError(t, err)
		for _, pair := range [][2]*jidoka.Timeout{{short, long}, {long, short}} {
			start := time.Now()
			err := pair[0].Do(ctx, func(ctx context.Context) error {
				return pair[1].Do(ctx, func(ctx context.Context) error {
					dl, ok := ctx.Deadline()
					assert.True(t, ok)
					assert.Equal(t, start.Add(time.Second), dl)
					time.Sleep(2 * time.Second)
					return ctx.Err()
				})
			})
			var te *jidoka.TimeoutError
			require.ErrorAs(t, err, &te)
			assert.Equal(t, "short", te.Timeout)
		}
	})
}

// Many goroutines of one call ask its context for Done, Err and AfterFunc
// as the deadline passes and as the call returns: they all see it end, with
// the same error.
func TestTimeoutContextConcurrentUse(t *testing.T) {
	underEachParent(t, jidoka.TimeoutOptions{Duration: time.Second}, func(t *testing.T, ctx context.Context, to *jidoka.Timeout) {
		for _, took := range []time.Duration{time.Second / 2, 2 * time.Second} {
			var wg sync.WaitGroup
			errs := make([]error, 12)
			_ = to.Do(ctx, func(ctx context.Context) error {
				for i := range errs {
					wg.Go(func() {
						time.Sleep(time.Duration(i) * time.Second / 4)
						switch i % 3 {
						case 0:
							<-ctx.Done()
						case 1:
							ended := make(chan struct{})
							context.AfterFunc(ctx, func() { close(ended) })
							<-ended
						case 2:
							for ctx.Err() == nil {
								time.Sleep(time.Millisecond)
							}
						}
						errs[i] = ctx.Err()
					})
				}
				time.Sleep(took)
				return nil
			})
			wg.Wait()
			want := context.Canceled
			if took > time.Second {
				want = context.DeadlineExceeded
			}
			for i, err := range errs {
				assert.ErrorIs(t, err, want, "goroutine %d, call took %v", i, took)
			}
		}
	})
}

// A Timeout whose caller's context can end allocates only the call's
// context too: it sets no timer of its own.
func TestTimeoutSuccessAllocatesOnlyItsContextCancelable(t *testing.T) {
	skipUnderRace(t)
	to, err := jidoka.NewTimeout(jidoka.TimeoutOptions{Duration: time.Minute})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	fn := func(context.Context) error { return nil }
	allocs := testing.AllocsPerRun(1000, func() {
		if err := to.Do(ctx, fn); err != nil {
			t.Fatal(err)
		}
	})
	assert.Equal(t, 1.0, allocs)
}

// A function given to the context's AfterFunc method, as the context
// package's contexts derived from it give theirs, runs at the deadline,
// though nothing asked for Done.
func TestTimeoutAfterFuncMethodRunsAtTheDeadline(t *testing.T) {
	underEachParent(t, jidoka.TimeoutOptions{Duration: time.Second}, func(t *testing.T, ctx context.Context, to *jidoka.Timeout) {
		start := time.Now()
		ranAt := make(chan time.Duration, 1)
		err := to.Do(ctx, func(ctx context.Context) error {
			af, ok := ctx.(interface{ AfterFunc(func()) func() bool })
			require.True(t, ok, "the context has an AfterFunc")
			time.Sleep(time.Second / 2)
			af.AfterFunc(func() { ranAt <- time.Since(start) })
			time.Sleep(2 * time.Second)
			return errors.New("late")
		})
		assert.ErrorIs(t, err, jidoka.ErrTimeout)
		assert.Equal(t, time.Second, <-ranAt)
	})
}

// underEachParent runs test in a synctest bubble under each kind of caller
// context (timeoutParents), with a Timeout of opts.
func underEachParent(t *testing.T, opts jidoka.TimeoutOptions, test func(t *testing.T, ctx context.Context, to *jidoka.Timeout)) {
	t.Helper()
	for name, parent := range timeoutParents {
		t.Run(name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				ctx, cancel := parent()
				defer cancel()
				to, err := jidoka.NewTimeout(opts)
				require.NoError(t, err)
				test(t, ctx, to)
			})
		})
	}
}

// context.Cause of a call's context tells why it ended, as for a context
// of context.WithTimeout: the caller's cause when the caller's context
// ended first, and the call's own end (its deadline, its return) when that
// came first, whatever becomes of the caller's context later.
func TestTimeoutCauseIsWhatEndedTheContext(t *testing.T) {
	cause := errors.New("the caller gave up")
	for _, tc := range []struct {
		name      string
		took      time.Duration // before the call returns
		cancelAt  time.Duration // when the caller's context ends
		askAt     time.Duration // when Cause is asked, after the call returned
		wantCause error
	}{
		{"the caller's end first", 2 * time.Second, time.Second / 2, 3 * time.Second, cause},
		{"the deadline first", 2 * time.Second, 3 * time.Second / 2, 3 * time.Second, context.DeadlineExceeded},
		{"the return first", time.Second / 2, 3 * time.Second / 4, 2 * time.Second, context.Canceled},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				to, err := jidoka.NewTimeout(jidoka.TimeoutOptions{Duration: time.Second})
				require.NoError(t, err)
				ctx, cancel := context.WithCancelCause(context.Background())
				defer cancel(nil)
				time.AfterFunc(tc.cancelAt, func() { cancel(cause) })
				start := time.Now()
				var kept context.Context
				_ = to.Do(ctx, func(ctx context.Context) error {
					kept = ctx
					time.Sleep(tc.took)
					if ctx.Err() != nil {
						assert.Equal(t, tc.wantCause, context.Cause(ctx), "in the call")
					}
					return ctx.Err()
				})
				time.Sleep(tc.askAt - time.Since(start))
				assert.Equal(t, tc.wantCause, context.Cause(kept), "after the call")
			})
		})
	}
}
