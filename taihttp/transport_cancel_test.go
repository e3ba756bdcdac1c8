package taihttp_test

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/jidoka"
	"github.com/taipattern/taikit/taihttp"
)

// trackingBase hands each attempt to another transport, and keeps the
// bodies of the responses it gave, to tell which are closed.
type trackingBase struct {
	rt       http.RoundTripper
	answered chan struct{} // a value for each response given
	mu       sync.Mutex
	bodies   []*trackedBody
}

func (b *trackingBase) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := b.rt.RoundTrip(r)
	if err != nil {
		return nil, err
	}
	tb := &trackedBody{ReadCloser: resp.Body}
	resp.Body = tb
	b.mu.Lock()
	b.bodies = append(b.bodies, tb)
	b.mu.Unlock()
	b.answered <- struct{}{}
	return resp, nil
}

// open returns how many of the bodies given are not closed.
func (b *trackingBase) open() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := 0
	for _, tb := range b.bodies {
		if !tb.closed.Load() {
			n++
		}
	}
	return n
}

// A caller who cancels while the Transport waits to send a request again,
// after a 503 that asked for a minute, gets the context's error at once,
// as from http.Client, not the 503: the retry the 503 was held for will
// not be made. The 503's body, longer than the 64 KiB read of it and
// holding its connection, is closed.
func TestTransportCancelDuringTheRetryWait(t *testing.T) {
	long := strings.Repeat("x", 100<<10)
	srv := newServer(t, func(_ int, w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Retry-After", "60")
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = w.Write([]byte(long))
	})
	base := &trackingBase{rt: srv.Client().Transport, answered: make(chan struct{}, 3)}
	c := client(t, srv, taihttp.TransportOptions{Base: base,
		Retry: newRetry(t, jidoka.RetryOptions{MaxAttempts: 3, MaxDelay: 2 * time.Minute})})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		<-base.answered
		// The 503 is read and held by then, and the Retry waits.
		time.Sleep(50 * time.Millisecond)
		cancel()
	}()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL, nil)
	require.NoError(t, err)
	start := time.Now()
	resp, err := c.Do(req)
	if resp != nil {
		_ = resp.Body.Close()
	}
	assert.Nil(t, resp, "no response: the caller gave up")
	require.ErrorIs(t, err, context.Canceled)
	assert.Less(t, time.Since(start), 10*time.Second, "the wait ended with the context")
	assert.EqualValues(t, 1, srv.hits.Load())
	assert.Zero(t, base.open(), "the held response is closed")
}

// When the caller's context ends before the Transport has an answer to
// give, RoundTrip returns the context's error and closes every response
// the attempts had: with a retry, a hedge, or both, the context ending
// while an attempt is in flight or while the Transport waits to send
// another. A 503 held for a retry or a hedge that is no longer coming is
// no answer.
func TestTransportContextEndsBeforeTheAnswer(t *testing.T) {
	wholeBackoff := func(d time.Duration) time.Duration { return d }
	busy := func(r *http.Request, retryAfter string) *http.Response {
		h := http.Header{}
		if retryAfter != "" {
			h.Set("Retry-After", retryAfter)
		}
		return response(r, http.StatusServiceUnavailable, h, "busy")
	}
	hang := func(r *http.Request) (*http.Response, error) {
		<-r.Context().Done()
		return nil, r.Context().Err()
	}
	for _, tc := range []struct {
		name  string
		opts  func(t *testing.T) taihttp.TransportOptions
		base  func(n int, r *http.Request) (*http.Response, error)
		ctx   func() (context.Context, context.CancelFunc) // under synctest
		want  error
		calls int
	}{
		{
			name: "retry wait cancelled",
			opts: func(t *testing.T) taihttp.TransportOptions {
				return taihttp.TransportOptions{Retry: newRetry(t, jidoka.RetryOptions{MaxAttempts: 3, MaxDelay: time.Minute})}
			},
			base:  func(_ int, r *http.Request) (*http.Response, error) { return busy(r, "10"), nil },
			ctx:   cancelAfter(5 * time.Second),
			want:  context.Canceled,
			calls: 1,
		},
		{
			name: "retry wait after a transport error cancelled",
			opts: func(t *testing.T) taihttp.TransportOptions {
				return taihttp.TransportOptions{Retry: newRetry(t, jidoka.RetryOptions{MaxAttempts: 3,
					BaseDelay: 10 * time.Second, MaxDelay: time.Minute, Jitter: wholeBackoff})}
			},
			base:  func(int, *http.Request) (*http.Response, error) { return nil, errors.New("connection reset") },
			ctx:   cancelAfter(5 * time.Second),
			want:  context.Canceled,
			calls: 1,
		},
		{
			name: "retry in flight past the deadline",
			opts: func(t *testing.T) taihttp.TransportOptions {
				return taihttp.TransportOptions{Retry: newRetry(t, jidoka.RetryOptions{MaxAttempts: 3, MaxDelay: time.Minute})}
			},
			base: func(n int, r *http.Request) (*http.Response, error) {
				if n == 1 {
					return busy(r, "1"), nil
				}
				return hang(r)
			},
			ctx: func() (context.Context, context.CancelFunc) {
				return context.WithTimeout(context.Background(), 1500*time.Millisecond)
			},
			want:  context.DeadlineExceeded,
			calls: 2,
		},
		{
			name: "hedge in flight after the first copy failed",
			opts: func(t *testing.T) taihttp.TransportOptions {
				return taihttp.TransportOptions{Hedge: newHedge(t, 100*time.Millisecond)}
			},
			base: func(n int, r *http.Request) (*http.Response, error) {
				if n == 1 {
					time.Sleep(200 * time.Millisecond) // the hedge is sent meanwhile
					return busy(r, ""), nil
				}
				return hang(r)
			},
			ctx:   cancelAfter(300 * time.Millisecond),
			want:  context.Canceled,
			calls: 2,
		},
		{
			name: "hedge failed while the first copy is in flight",
			opts: func(t *testing.T) taihttp.TransportOptions {
				return taihttp.TransportOptions{Hedge: newHedge(t, 100*time.Millisecond)}
			},
			base: func(n int, r *http.Request) (*http.Response, error) {
				if n == 1 {
					return hang(r)
				}
				return busy(r, ""), nil
			},
			ctx:   cancelAfter(300 * time.Millisecond),
			want:  context.Canceled,
			calls: 2,
		},
		{
			name: "retry and hedge, wait cancelled",
			opts: func(t *testing.T) taihttp.TransportOptions {
				return taihttp.TransportOptions{Hedge: newHedge(t, 100*time.Millisecond),
					Retry: newRetry(t, jidoka.RetryOptions{MaxAttempts: 3, MaxDelay: time.Minute})}
			},
			base:  func(_ int, r *http.Request) (*http.Response, error) { return busy(r, "10"), nil },
			ctx:   cancelAfter(5 * time.Second),
			want:  context.Canceled,
			calls: 1,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				var mu sync.Mutex
				var bodies []*trackedBody
				base, calls := numbered(func(n int, r *http.Request) (*http.Response, error) {
					resp, err := tc.base(n, r)
					if resp != nil {
						b := &trackedBody{ReadCloser: resp.Body}
						resp.Body = b
						mu.Lock()
						bodies = append(bodies, b)
						mu.Unlock()
					}
					return resp, err
				})
				opts := tc.opts(t)
				opts.Base = base
				c := client(t, nil, opts)
				ctx, cancel := tc.ctx()
				defer cancel()
				req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://example.test/", nil)
				require.NoError(t, err)
				resp, err := c.Do(req)
				if resp != nil {
					_ = resp.Body.Close()
				}
				assert.Nil(t, resp, "no response: the context ended first")
				require.ErrorIs(t, err, tc.want)
				synctest.Wait() // for the hedges' goroutines
				assert.Equal(t, tc.calls, calls())
				mu.Lock()
				defer mu.Unlock()
				for i, b := range bodies {
					assert.True(t, b.closed.Load(), "response %d is closed", i+1)
				}
			})
		})
	}
}

// cancelAfter returns a context that a timer cancels after d.
func cancelAfter(d time.Duration) func() (context.Context, context.CancelFunc) {
	return func() (context.Context, context.CancelFunc) {
		ctx, cancel := context.WithCancel(context.Background())
		stop := time.AfterFunc(d, cancel)
		return ctx, func() { stop.Stop(); cancel() }
	}
}

// The 503 is the answer when the Transport will not send the request
// again, the caller's context still live: the Retry refuses a wait its
// deadline would not outlast, or the retries are spent, and the caller
// gets the server's response, its Retry-After with it, at once.
func TestTransportReturnsTheFailedResponseWhileTheContextLives(t *testing.T) {
	for _, tc := range []struct {
		name       string
		retryAfter string
		attempts   int
		deadline   time.Duration
		calls      int
	}{
		{"wait past the deadline", "10", 3, 5 * time.Second, 1},
		{"retries spent", "1", 2, time.Minute, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				base, calls := numbered(func(n int, r *http.Request) (*http.Response, error) {
					h := http.Header{}
					h.Set("Retry-After", tc.retryAfter)
					return response(r, http.StatusServiceUnavailable, h, "busy "+strconv.Itoa(n)), nil
				})
				c := client(t, nil, taihttp.TransportOptions{Base: base,
					Retry: newRetry(t, jidoka.RetryOptions{MaxAttempts: tc.attempts, MaxDelay: time.Minute})})
				ctx, cancel := context.WithTimeout(context.Background(), tc.deadline)
				defer cancel()
				req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://example.test/", nil)
				require.NoError(t, err)
				resp, err := c.Do(req)
				require.NoError(t, err)
				assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
				assert.Equal(t, tc.retryAfter, resp.Header.Get("Retry-After"))
				assert.Equal(t, "busy "+strconv.Itoa(tc.calls), readAll(t, resp))
				assert.Equal(t, tc.calls, calls())
				assert.NoError(t, ctx.Err())
			})
		})
	}
}

// A caller whose context ends with a cause of its own
// (context.WithCancelCause, WithTimeoutCause) gets that cause from the
// Transport, as from http.Transport, which returns context.Cause: while
// an attempt waits for its response, and while the Retry waits to send
// another after a 503.
func TestTransportReturnsTheContextsCause(t *testing.T) {
	errGaveUp := errors.New("the user left")
	arrived := make(chan struct{}, 10)
	srv := newServer(t, func(_ int, w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("quiet") == "" {
			arrived <- struct{}{}
		}
		if r.URL.Path == "/hang" {
			<-r.Context().Done()
			return
		}
		w.Header().Set("Retry-After", "60")
		w.WriteHeader(http.StatusServiceUnavailable)
	})
	plain := func(*testing.T) http.RoundTripper { return srv.Client().Transport }
	guarded := func(withRetry bool) func(*testing.T) http.RoundTripper {
		return func(t *testing.T) http.RoundTripper {
			opts := taihttp.TransportOptions{Base: srv.Client().Transport}
			if withRetry {
				opts.Retry = newRetry(t, jidoka.RetryOptions{MaxAttempts: 3, MaxDelay: 2 * time.Minute})
			}
			tr, err := taihttp.NewTransport(opts)
			require.NoError(t, err)
			return tr
		}
	}
	for _, tc := range []struct {
		name string
		rt   func(*testing.T) http.RoundTripper
		path string // the request the caller cancels
	}{
		{"http.Transport awaiting the response", plain, "/hang"},
		{"Transport awaiting the response", guarded(false), "/hang"},
		{"Transport with a retry awaiting the response", guarded(true), "/hang"},
		// A 503 asking for a minute: cancelled as the Retry waits for it.
		{"Transport with a retry awaiting the retry", guarded(true), "/busy"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := &http.Client{Transport: tc.rt(t)}
			ctx, cancel := context.WithCancelCause(context.Background())
			defer cancel(nil)
			go func() {
				<-arrived
				cancel(errGaveUp)
			}()
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+tc.path, nil)
			require.NoError(t, err)
			resp, err := c.Do(req)
			if resp != nil {
				_ = resp.Body.Close()
			}
			assert.ErrorIs(t, err, errGaveUp, "cancelled with a cause")

			ctx, stop := context.WithTimeoutCause(context.Background(), 20*time.Millisecond, errGaveUp)
			defer stop()
			req, err = http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/hang?quiet=1", nil)
			require.NoError(t, err)
			resp, err = c.Do(req)
			if resp != nil {
				_ = resp.Body.Close()
			}
			assert.ErrorIs(t, err, errGaveUp, "a deadline with a cause")
		})
	}
}
