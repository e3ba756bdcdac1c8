package taihttp_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/heijunka"
	"github.com/taipattern/taikit/jidoka"
	"github.com/taipattern/taikit/taihttp"
)

// server is an httptest server whose handler the test sets, counting the
// requests it gets and the bodies they carried.
type server struct {
	*httptest.Server
	hits   atomic.Int32
	mu     sync.Mutex
	bodies []string
}

func newServer(t *testing.T, h func(n int, w http.ResponseWriter, r *http.Request)) *server {
	t.Helper()
	s := &server{}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := int(s.hits.Add(1))
		b, _ := io.ReadAll(r.Body)
		s.mu.Lock()
		s.bodies = append(s.bodies, string(b))
		s.mu.Unlock()
		h(n, w, r)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *server) got() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.bodies...)
}

func newRetry(t *testing.T, opts jidoka.RetryOptions) *jidoka.Retry {
	t.Helper()
	if opts.BaseDelay == 0 {
		opts.BaseDelay = time.Millisecond
	}
	r, err := jidoka.NewRetry(opts)
	require.NoError(t, err)
	return r
}

// client returns an http.Client over a Transport with opts, on base (the
// server's own transport when nil), closing its connections at the end.
func client(t *testing.T, srv *server, opts taihttp.TransportOptions) *http.Client {
	t.Helper()
	if opts.Base == nil && srv != nil {
		opts.Base = srv.Client().Transport
	}
	tr, err := taihttp.NewTransport(opts)
	require.NoError(t, err)
	c := &http.Client{Transport: tr}
	t.Cleanup(c.CloseIdleConnections)
	return c
}

func readAll(t *testing.T, resp *http.Response) string {
	t.Helper()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.NoError(t, resp.Body.Close())
	return string(b)
}

// Flapping: 503 twice, then 200. A PUT is retried with its body replayed
// each time.
func TestTransportRetriesAndReplaysBodies(t *testing.T) {
	srv := newServer(t, func(n int, w http.ResponseWriter, r *http.Request) {
		if n < 3 {
			http.Error(w, "busy", http.StatusServiceUnavailable)
			return
		}
		_, _ = io.WriteString(w, "stored")
	})
	c := client(t, srv, taihttp.TransportOptions{Retry: newRetry(t, jidoka.RetryOptions{MaxAttempts: 3})})
	req, err := http.NewRequest(http.MethodPut, srv.URL, strings.NewReader("the payload"))
	require.NoError(t, err)
	resp, err := c.Do(req)
	require.NoError(t, err)
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, "stored", readAll(t, resp))
	assert.Equal(t, []string{"the payload", "the payload", "the payload"}, srv.got(), "every attempt carries the whole body")
}

// When every attempt fails on its status, the last response is returned
// as the server sent it.
func TestTransportReturnsLastFailedResponse(t *testing.T) {
	srv := newServer(t, func(n int, w http.ResponseWriter, r *http.Request) {
		http.Error(w, "busy "+strconv.Itoa(n), http.StatusBadGateway)
	})
	c := client(t, srv, taihttp.TransportOptions{Retry: newRetry(t, jidoka.RetryOptions{MaxAttempts: 3})})
	resp, err := c.Get(srv.URL)
	require.NoError(t, err)
	assert.Equal(t, http.StatusBadGateway, resp.StatusCode)
	assert.Equal(t, "busy 3\n", readAll(t, resp))
	assert.EqualValues(t, 3, srv.hits.Load())
}

func TestTransportNeverRetriesPOSTUnlessTold(t *testing.T) {
	srv := newServer(t, func(n int, w http.ResponseWriter, r *http.Request) {
		http.Error(w, "busy", http.StatusServiceUnavailable)
	})
	retry := newRetry(t, jidoka.RetryOptions{MaxAttempts: 3, Budget: nil})
	post := func(c *http.Client, key string, body io.Reader) int32 {
		t.Helper()
		before := srv.hits.Load()
		req, err := http.NewRequest(http.MethodPost, srv.URL, body)
		require.NoError(t, err)
		if key != "" {
			req.Header.Set("Idempotency-Key", key)
		}
		resp, err := c.Do(req)
		require.NoError(t, err)
		assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
		readAll(t, resp)
		return srv.hits.Load() - before
	}
	c := client(t, srv, taihttp.TransportOptions{Retry: retry})
	assert.EqualValues(t, 1, post(c, "", strings.NewReader("charge")), "a POST is sent once")
	assert.EqualValues(t, 1, post(c, "", nil))
	req, _ := http.NewRequest(http.MethodPatch, srv.URL, nil)
	resp, err := c.Do(req)
	require.NoError(t, err)
	readAll(t, resp)
	assert.EqualValues(t, 3, srv.hits.Load(), "so is a PATCH")

	assert.EqualValues(t, 3, post(c, "key-1", strings.NewReader("charge")), "an Idempotency-Key makes it safe to retry")
	// A body that cannot be sent again is never retried, whatever the options.
	anyMethod := client(t, srv, taihttp.TransportOptions{Retry: retry, RetryNonIdempotent: true})
	assert.EqualValues(t, 3, post(anyMethod, "", strings.NewReader("charge")))
	assert.EqualValues(t, 1, post(anyMethod, "", io.MultiReader(strings.NewReader("one-shot"))), "no GetBody: sent once")
	assert.EqualValues(t, 1, post(c, "key-2", io.MultiReader(strings.NewReader("one-shot"))))
}

// An Idempotency-Key field without one key in it (empty, or white space,
// which a server reads as empty; or given twice, which is no key either:
// the field is a single Item) makes nothing safe: a server takes such a
// request as one without a key, as examples/payment does with an empty
// one, and a retry is a second charge. The POST is sent once.
func TestTransportDoesNotRetryPOSTWithABlankKey(t *testing.T) {
	srv := newServer(t, func(n int, w http.ResponseWriter, r *http.Request) {
		http.Error(w, "busy", http.StatusServiceUnavailable)
	})
	c := client(t, srv, taihttp.TransportOptions{Retry: newRetry(t, jidoka.RetryOptions{MaxAttempts: 3})})
	for _, values := range [][]string{{""}, {" "}, {"\t "}, {"key-1", ""}, {"key-1", "key-2"}, {}} {
		before := srv.hits.Load()
		req, err := http.NewRequest(http.MethodPost, srv.URL, strings.NewReader("charge"))
		require.NoError(t, err)
		req.Header["Idempotency-Key"] = values
		resp, err := c.Do(req)
		require.NoError(t, err)
		assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
		readAll(t, resp)
		assert.EqualValues(t, 1, srv.hits.Load()-before, "Idempotency-Key %q: sent once", values)
	}
}

func TestTransportHonoursRetryAfter(t *testing.T) {
	var first, gap atomic.Int64
	srv := newServer(t, func(n int, w http.ResponseWriter, r *http.Request) {
		if n == 1 {
			first.Store(time.Now().UnixNano())
			w.Header().Set("Retry-After", "1")
			http.Error(w, "slow down", http.StatusTooManyRequests)
			return
		}
		gap.Store(time.Now().UnixNano() - first.Load())
	})
	c := client(t, srv, taihttp.TransportOptions{Retry: newRetry(t, jidoka.RetryOptions{MaxAttempts: 2, MaxDelay: 5 * time.Second})})
	resp, err := c.Get(srv.URL)
	require.NoError(t, err)
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	readAll(t, resp)
	assert.GreaterOrEqual(t, time.Duration(gap.Load()), time.Second, "the retry waited for Retry-After, not the 1 ms backoff")

	// A hint beyond the Retry's MaxRetryAfter ends the retries: the
	// client gets the server's answer at once.
	srv2 := newServer(t, func(n int, w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Retry-After", "3600")
		http.Error(w, "come back in an hour", http.StatusServiceUnavailable)
	})
	c = client(t, srv2, taihttp.TransportOptions{Retry: newRetry(t, jidoka.RetryOptions{MaxAttempts: 5, MaxRetryAfter: time.Minute})})
	resp, err = c.Get(srv2.URL)
	require.NoError(t, err)
	assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
	assert.Equal(t, "3600", resp.Header.Get("Retry-After"))
	assert.Equal(t, "come back in an hour\n", readAll(t, resp))
	assert.EqualValues(t, 1, srv2.hits.Load())
}

// A hedged copy's Retry-After holds for the retry too when the first copy
// failed otherwise (its attempt timed out): the server that answered 503
// asked for that wait, and a hint past MaxRetryAfter ends the retries,
// with that 503 as the answer.
func TestTransportHonoursTheRetryAfterOfAHedgedCopy(t *testing.T) {
	for _, tc := range []struct {
		name    string
		maxHint time.Duration
		calls   int
		retryAt time.Duration // when the third call is sent
		gives   bool          // the caller gets the hedged copy's 503
	}{
		{"waits for the hint", time.Minute, 3, 100*time.Millisecond + 30*time.Second, false},
		{"a hint past MaxRetryAfter ends the retries", 10 * time.Second, 2, 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				start := time.Now()
				var retryAt time.Duration
				base, calls := numbered(func(n int, r *http.Request) (*http.Response, error) {
					switch n {
					case 1: // stalls until its attempt times out
						<-r.Context().Done()
						return nil, r.Context().Err()
					case 2: // the hedge, at 100 ms
						return response(r, http.StatusServiceUnavailable, http.Header{"Retry-After": {"30"}}, "busy"), nil
					}
					retryAt = time.Since(start)
					return response(r, http.StatusOK, nil, "ok"), nil
				})
				hedge, err := jidoka.NewHedge(jidoka.HedgeOptions{Delay: 100 * time.Millisecond})
				require.NoError(t, err)
				c := client(t, nil, taihttp.TransportOptions{Base: base, Hedge: hedge, AttemptTimeout: time.Second,
					Retry: newRetry(t, jidoka.RetryOptions{MaxAttempts: 3, MaxRetryAfter: tc.maxHint,
						Jitter: func(time.Duration) time.Duration { return 0 }})})
				resp, err := c.Get("http://example.test/")
				if tc.gives {
					require.NoError(t, err)
					assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
					assert.Equal(t, "30", resp.Header.Get("Retry-After"))
					assert.Equal(t, "busy", readAll(t, resp))
				} else {
					require.NoError(t, err)
					assert.Equal(t, "ok", readAll(t, resp))
				}
				assert.Equal(t, tc.calls, calls())
				assert.Equal(t, tc.retryAt, retryAt, "the retry is sent once the hint, given at 100 ms, has passed")
			})
		})
	}
}

// The server sees each attempt that times out cancelled, and the client
// gets a timeout error.
func TestTransportAttemptTimeout(t *testing.T) {
	cancelled := make(chan struct{}, 4)
	srv := newServer(t, func(n int, w http.ResponseWriter, r *http.Request) {
		if n <= 2 {
			if waitCancel(r) {
				cancelled <- struct{}{}
			}
			return
		}
		_, _ = io.WriteString(w, "fast")
	})
	c := client(t, srv, taihttp.TransportOptions{AttemptTimeout: 50 * time.Millisecond})
	_, err := c.Get(srv.URL)
	require.Error(t, err)
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	assert.ErrorIs(t, err, jidoka.ErrTimeout)
	waitFor(t, cancelled, "the server sees the timed-out request cancelled")

	// With a retry, the next attempt has a deadline of its own.
	c = client(t, srv, taihttp.TransportOptions{AttemptTimeout: 50 * time.Millisecond,
		Retry: newRetry(t, jidoka.RetryOptions{MaxAttempts: 2})})
	resp, err := c.Get(srv.URL)
	require.NoError(t, err)
	assert.Equal(t, "fast", readAll(t, resp))
	waitFor(t, cancelled, "the first attempt was cancelled")
}

// The timeout bounds an attempt until its response header arrives: the
// body may take longer.
func TestTransportTimeoutSparesTheBody(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var reqCtx context.Context
		pr, pw := io.Pipe()
		base := roundTripFunc(func(r *http.Request) (*http.Response, error) {
			reqCtx = r.Context()
			resp := response(r, http.StatusOK, nil, "")
			resp.Body = pr
			return resp, nil
		})
		c := client(t, nil, taihttp.TransportOptions{Base: base, AttemptTimeout: time.Second})
		resp, err := c.Get("http://example.test/")
		require.NoError(t, err)
		go func() {
			time.Sleep(5 * time.Second) // the body comes well after the attempt's deadline
			_, _ = pw.Write([]byte("late but whole"))
			_ = pw.Close()
		}()
		assert.Equal(t, "late but whole", readAll(t, resp))
		assert.ErrorIs(t, reqCtx.Err(), context.Canceled, "closing the body ends the request's context")
	})
}

// A slow first copy is hedged; the hedge's response wins, its body reads
// whole, and the server sees the first copy cancelled.
func TestTransportHedgeCancelsLosers(t *testing.T) {
	big := bytes.Repeat([]byte("0123456789abcdef"), 64<<10) // 1 MiB
	loserCancelled := make(chan struct{}, 1)
	srv := newServer(t, func(n int, w http.ResponseWriter, r *http.Request) {
		if n == 1 {
			if waitCancel(r) {
				loserCancelled <- struct{}{}
			}
			return
		}
		_, _ = w.Write(big)
	})
	hedge, err := jidoka.NewHedge(jidoka.HedgeOptions{Delay: 20 * time.Millisecond})
	require.NoError(t, err)
	c := client(t, srv, taihttp.TransportOptions{Hedge: hedge})
	resp, err := c.Get(srv.URL)
	require.NoError(t, err)
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	body := readAll(t, resp)
	assert.Equal(t, len(big), len(body), "the winner's body reads whole")
	assert.True(t, body == string(big))
	waitFor(t, loserCancelled, "the server sees the losing copy cancelled")
	assert.EqualValues(t, 2, srv.hits.Load())
}

func TestTransportBreakerOpensOn5xx(t *testing.T) {
	srv := newServer(t, func(n int, w http.ResponseWriter, r *http.Request) {
		http.Error(w, "down", http.StatusInternalServerError)
	})
	b, err := jidoka.NewBreaker(jidoka.BreakerOptions{Name: "api", ConsecutiveFailures: 3, OpenDuration: time.Minute})
	require.NoError(t, err)
	c := client(t, srv, taihttp.TransportOptions{Breaker: b})
	for range 3 {
		resp, err := c.Get(srv.URL)
		require.NoError(t, err)
		assert.Equal(t, http.StatusInternalServerError, resp.StatusCode)
		readAll(t, resp)
	}
	assert.Equal(t, jidoka.StateOpen, b.State())
	_, err = c.Get(srv.URL)
	require.ErrorIs(t, err, jidoka.ErrOpen)
	assert.EqualValues(t, 3, srv.hits.Load(), "an open breaker sends nothing")
	assert.Greater(t, taihttpRetryAfter(err), 50*time.Second)

	// 4xx are the client's mistakes, not the server's failures.
	srv404 := newServer(t, func(n int, w http.ResponseWriter, r *http.Request) { http.NotFound(w, r) })
	b2, err := jidoka.NewBreaker(jidoka.BreakerOptions{ConsecutiveFailures: 1})
	require.NoError(t, err)
	c = client(t, srv404, taihttp.TransportOptions{Breaker: b2})
	for range 3 {
		resp, err := c.Get(srv404.URL)
		require.NoError(t, err)
		readAll(t, resp)
	}
	assert.Equal(t, jidoka.StateClosed, b2.State())
}

func taihttpRetryAfter(err error) time.Duration {
	var ra interface{ RetryAfter() time.Duration }
	if errors.As(err, &ra) {
		return ra.RetryAfter()
	}
	return 0
}

// Retry, timeout and breaker together: the timed-out attempts count as
// failures.
func TestTransportBreakerCountsTimeouts(t *testing.T) {
	srv := newServer(t, func(n int, w http.ResponseWriter, r *http.Request) { waitCancel(r) })
	// Attempts are counted as they are sent: an attempt that times out
	// may reach the server's handler after Get returned, or never.
	var sent atomic.Int32
	base := srv.Client().Transport
	b, err := jidoka.NewBreaker(jidoka.BreakerOptions{ConsecutiveFailures: 2, OpenDuration: time.Minute})
	require.NoError(t, err)
	c := client(t, srv, taihttp.TransportOptions{Breaker: b, AttemptTimeout: 20 * time.Millisecond,
		Base: roundTripFunc(func(r *http.Request) (*http.Response, error) {
			sent.Add(1)
			return base.RoundTrip(r)
		}),
		Retry: newRetry(t, jidoka.RetryOptions{MaxAttempts: 5, MaxRetryAfter: time.Second})})
	_, err = c.Get(srv.URL)
	require.Error(t, err)
	assert.Equal(t, jidoka.StateOpen, b.State(), "two timeouts opened it")
	assert.ErrorIs(t, err, jidoka.ErrOpen, "the retry stopped at the open breaker, whose wait is past MaxRetryAfter")
	assert.EqualValues(t, 2, sent.Load())
}

// Failed attempts' responses are closed; the one returned is not, until
// the caller closes it.
func TestTransportClosesFailedResponses(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var bodies []*trackedBody
		base := roundTripFunc(func(r *http.Request) (*http.Response, error) {
			status := http.StatusServiceUnavailable
			if len(bodies) == 2 {
				status = http.StatusOK
			}
			resp := response(r, status, nil, strings.Repeat("x", 100<<10)) // more than is drained
			tb := &trackedBody{ReadCloser: resp.Body}
			resp.Body = tb
			bodies = append(bodies, tb)
			return resp, nil
		})
		c := client(t, nil, taihttp.TransportOptions{Base: base, Retry: newRetry(t, jidoka.RetryOptions{MaxAttempts: 3})})
		resp, err := c.Get("http://example.test/")
		require.NoError(t, err)
		require.Len(t, bodies, 3)
		assert.True(t, bodies[0].closed.Load())
		assert.True(t, bodies[1].closed.Load())
		assert.False(t, bodies[2].closed.Load(), "the caller's to read")
		assert.Len(t, readAll(t, resp), 100<<10)
		assert.True(t, bodies[2].closed.Load())
	})
}

func TestTransportLimiter(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		lim, err := heijunka.NewLimiter(heijunka.Every(10*time.Second), heijunka.LimiterOptions{})
		require.NoError(t, err)
		var sent []time.Time
		base := roundTripFunc(func(r *http.Request) (*http.Response, error) {
			sent = append(sent, time.Now())
			return response(r, http.StatusOK, nil, "ok"), nil
		})
		c := client(t, nil, taihttp.TransportOptions{Base: base, Limiter: lim})
		for range 2 {
			resp, err := c.Get("http://example.test/")
			require.NoError(t, err)
			readAll(t, resp)
		}
		require.Len(t, sent, 2)
		assert.Equal(t, 10*time.Second, sent[1].Sub(sent[0]), "the second request waited for the limiter")

		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://example.test/", nil)
		_, err = c.Do(req)
		require.ErrorIs(t, err, heijunka.ErrLimited, "a wait past the deadline fails at once")
		assert.Len(t, sent, 2)
	})
}

func TestTransportClosesUnsentBodies(t *testing.T) {
	b, err := jidoka.NewBreaker(jidoka.BreakerOptions{})
	require.NoError(t, err)
	b.ForceOpen("test")
	c := client(t, nil, taihttp.TransportOptions{Base: roundTripFunc(func(r *http.Request) (*http.Response, error) {
		t.Error("sent through an open breaker")
		return nil, errors.New("unreachable")
	}), Breaker: b})
	body := &trackedBody{ReadCloser: io.NopCloser(strings.NewReader("x"))}
	req, _ := http.NewRequest(http.MethodPost, "http://example.test/", body)
	_, err = c.Do(req)
	require.ErrorIs(t, err, jidoka.ErrOpen)
	assert.True(t, body.closed.Load(), "a RoundTripper closes the request body even when it sends nothing")
}

// A body GetBody cannot give again ends the retries: each would fail the
// same way after its backoff, spending the retry budget, and the caller
// gets the server's answer, not an error of the client's that hides it.
func TestTransportBodyThatCannotBeReplayed(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		base, calls := numbered(func(n int, r *http.Request) (*http.Response, error) {
			if n == 1 {
				return response(r, http.StatusServiceUnavailable, http.Header{"Retry-After": {"1"}}, "busy"), nil
			}
			return response(r, http.StatusOK, nil, "stored"), nil
		})
		c := client(t, nil, taihttp.TransportOptions{Base: base, Retry: newRetry(t, jidoka.RetryOptions{MaxAttempts: 5})})
		req, err := http.NewRequest(http.MethodPut, "http://store.test/items/1", strings.NewReader("item"))
		require.NoError(t, err)
		gets := 0
		req.GetBody = func() (io.ReadCloser, error) {
			gets++
			return nil, errors.New("the file is gone")
		}
		start := time.Now()
		resp, err := c.Do(req)
		require.NoError(t, err)
		assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
		assert.Equal(t, "1", resp.Header.Get("Retry-After"))
		assert.Equal(t, "busy", readAll(t, resp))
		assert.Equal(t, 1, calls(), "sent once")
		assert.Equal(t, 1, gets, "GetBody asked once")
		assert.Equal(t, time.Second, time.Since(start), "one wait, for the Retry-After")
	})
	// With no answer to return, the error says why it was not sent again.
	synctest.Test(t, func(t *testing.T) {
		base, calls := numbered(func(n int, r *http.Request) (*http.Response, error) {
			return nil, errors.New("connection reset")
		})
		c := client(t, nil, taihttp.TransportOptions{Base: base, Retry: newRetry(t, jidoka.RetryOptions{MaxAttempts: 5})})
		req, err := http.NewRequest(http.MethodPut, "http://store.test/items/1", strings.NewReader("item"))
		require.NoError(t, err)
		req.GetBody = func() (io.ReadCloser, error) { return nil, errors.New("the file is gone") }
		_, err = c.Do(req)
		require.ErrorContains(t, err, "taihttp: request body for another attempt: the file is gone")
		assert.Equal(t, 1, calls())
	})
}

// A request no server could be sent fails at once: each attempt would
// fail the same way before it left, and a breaker that counted them
// opened for every request because of one bad header value.
func TestTransportRefusesUnsendableRequests(t *testing.T) {
	srv := newServer(t, func(int, http.ResponseWriter, *http.Request) {})
	b, err := jidoka.NewBreaker(jidoka.BreakerOptions{})
	require.NoError(t, err)
	c := client(t, srv, taihttp.TransportOptions{Retry: newRetry(t, jidoka.RetryOptions{MaxAttempts: 3}), Breaker: b,
		Hedge: func() *jidoka.Hedge {
			h, err := jidoka.NewHedge(jidoka.HedgeOptions{Delay: time.Hour})
			require.NoError(t, err)
			return h
		}()})
	for _, tc := range []struct {
		name, want string
		edit       func(r *http.Request)
	}{
		{"CRLF in a value", `invalid header field value for "X-Name"`, func(r *http.Request) { r.Header.Set("X-Name", "a\r\nX-Admin: 1") }},
		{"NUL in a value", `invalid header field value for "X-Name"`, func(r *http.Request) { r.Header.Set("X-Name", "a\x00") }},
		{"DEL in a value", `invalid header field value for "X-Name"`, func(r *http.Request) { r.Header.Set("X-Name", "a\x7f") }},
		{"space in a name", `invalid header field name "X Name"`, func(r *http.Request) { r.Header["X Name"] = []string{"a"} }},
		{"empty name", `invalid header field name ""`, func(r *http.Request) { r.Header[""] = []string{"a"} }},
		{"method", `invalid method "GET /x"`, func(r *http.Request) { r.Method = "GET /x" }},
		// An *http.Transport checks the trailer's fields as the header's.
		{"CRLF in a trailer value", `invalid trailer field value for "X-Sum"`, func(r *http.Request) { r.Trailer = http.Header{"X-Sum": {"a\r\nX-Admin: 1"}} }},
		{"space in a trailer name", `invalid trailer field name "X Sum"`, func(r *http.Request) { r.Trailer = http.Header{"X Sum": {"a"}} }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for range 10 {
				body := &trackedBody{ReadCloser: io.NopCloser(strings.NewReader("x"))}
				req, err := http.NewRequest(http.MethodPut, srv.URL, body)
				require.NoError(t, err)
				tc.edit(req)
				_, err = c.Do(req)
				require.ErrorContains(t, err, tc.want)
				assert.NotContains(t, err.Error(), "X-Admin", "the value may be a secret")
				assert.True(t, body.closed.Load(), "a RoundTripper closes the request body even when it sends nothing")
			}
		})
	}
	t.Run("no host", func(t *testing.T) {
		for range 10 {
			req, err := http.NewRequest(http.MethodGet, "http:///x", nil)
			require.NoError(t, err)
			_, err = c.Do(req)
			require.ErrorContains(t, err, "request URL has no host")
		}
	})
	// A URL without a scheme (a path alone, the base URL forgotten): an
	// *http.Transport fails each attempt with "unsupported protocol
	// scheme", which was retried and counted by the breaker.
	t.Run("no scheme", func(t *testing.T) {
		for _, u := range []*url.URL{{Path: "/x"}, {Host: strings.TrimPrefix(srv.URL, "http://"), Path: "/x"}} {
			for range 10 {
				req, err := http.NewRequest(http.MethodGet, srv.URL, nil)
				require.NoError(t, err)
				req.URL = u
				_, err = c.Do(req)
				require.ErrorContains(t, err, "request URL has no scheme")
			}
		}
	})
	// A URL whose query (or opaque part) holds a control character, as
	// one built by appending a value to RawQuery unescaped does: an
	// *http.Transport dials, then fails each attempt as it writes the
	// request line ("can't write control character in Request.URL"),
	// which was retried and counted by the breaker. The path is escaped
	// when it is written, so a control character in it is sent.
	t.Run("control character in the URL", func(t *testing.T) {
		for _, tc := range []struct {
			name, want string
			edit       func(u *url.URL)
		}{
			{"LF in the query", "request URL has a control character in its query", func(u *url.URL) { u.RawQuery = "name=a\nb" }},
			{"DEL in the query", "request URL has a control character in its query", func(u *url.URL) { u.RawQuery = "name=a\x7f" }},
			{"tab in the query", "request URL has a control character in its query", func(u *url.URL) { u.RawQuery = "name=a\tb" }},
			{"NUL in the opaque part", "request URL has a control character in its opaque part", func(u *url.URL) { u.Opaque = "/x\x00" }},
		} {
			t.Run(tc.name, func(t *testing.T) {
				for range 10 {
					req, err := http.NewRequest(http.MethodGet, srv.URL, nil)
					require.NoError(t, err)
					tc.edit(req.URL)
					_, err = c.Do(req)
					require.ErrorContains(t, err, tc.want)
				}
			})
		}
	})
	// An *http.Transport fails a request with a nil Header ("http: nil
	// Request.Header"); http.Client gives one a Header, a caller of
	// RoundTrip may not.
	t.Run("nil header", func(t *testing.T) {
		for range 10 {
			req, err := http.NewRequest(http.MethodGet, srv.URL, nil)
			require.NoError(t, err)
			req.Header = nil
			_, err = c.Transport.RoundTrip(req)
			require.ErrorContains(t, err, "request has no Header")
		}
	})
	// A request with a ContentLength but no Body: an *http.Transport
	// fails each attempt ("http: Request.ContentLength=4 with nil Body"),
	// which was retried and counted by the breaker.
	t.Run("content length without a body", func(t *testing.T) {
		for _, n := range []int64{4, -1} {
			for range 10 {
				req, err := http.NewRequest(http.MethodPut, srv.URL, nil)
				require.NoError(t, err)
				req.ContentLength = n
				_, err = c.Transport.RoundTrip(req)
				require.ErrorContains(t, err, "request has a ContentLength of "+strconv.FormatInt(n, 10)+" but no body")
			}
		}
	})
	assert.Equal(t, jidoka.StateClosed, b.State(), "the breaker counted requests the server never saw")
	assert.Zero(t, srv.hits.Load())

	req, err := http.NewRequest(http.MethodGet, srv.URL, nil)
	require.NoError(t, err)
	req.Header.Set("X-Name", "tab\tand obs-text \xe9")
	resp, err := c.Do(req)
	require.NoError(t, err)
	require.NoError(t, resp.Body.Close())
	assert.Equal(t, http.StatusOK, resp.StatusCode)

	// A control character in the path is escaped as the request is
	// written: the request is sent.
	req, err = http.NewRequest(http.MethodGet, srv.URL, nil)
	require.NoError(t, err)
	req.URL.Path = "/a\nb"
	resp, err = c.Do(req)
	require.NoError(t, err)
	require.NoError(t, resp.Body.Close())
	assert.Equal(t, http.StatusOK, resp.StatusCode)
}

func TestTransportValidation(t *testing.T) {
	_, err := taihttp.NewTransport(taihttp.TransportOptions{AttemptTimeout: -time.Second})
	assert.ErrorContains(t, err, "AttemptTimeout must not be negative, got -1s")
}

// A Base holding a nil pointer (or a nil func) would panic in every
// request, each one counted by the breaker: NewTransport refuses it, as
// RateLimit and Gate refuse a limiter or gate holding one.
func TestTransportRefusesANilBase(t *testing.T) {
	var tr *http.Transport
	_, err := taihttp.NewTransport(taihttp.TransportOptions{Base: tr})
	assert.ErrorContains(t, err, "taihttp.NewTransport: Base holds a nil *http.Transport")
	var f roundTripFunc
	_, err = taihttp.NewTransport(taihttp.TransportOptions{Base: f})
	assert.ErrorContains(t, err, "taihttp.NewTransport: Base holds a nil taihttp_test.roundTripFunc")
}

// The zero Transport, not made by NewTransport, has no base to send
// through: RoundTrip says so, and closes the body as a RoundTripper must,
// rather than panic on a nil pointer.
func TestZeroTransportRefusesToSend(t *testing.T) {
	var tr taihttp.Transport
	body := &trackedBody{ReadCloser: io.NopCloser(strings.NewReader("x"))}
	req, _ := http.NewRequest(http.MethodPost, "http://example.test/", body)
	var (
		resp *http.Response
		err  error
	)
	require.NotPanics(t, func() { resp, err = tr.RoundTrip(req) })
	assert.Nil(t, resp)
	require.EqualError(t, err, "taihttp: the Transport was not made by NewTransport; it sends nothing")
	assert.True(t, body.closed.Load(), "a RoundTripper closes the request body even when it sends nothing")
	require.NotPanics(t, tr.CloseIdleConnections)
}

// roundTripFunc is an in-memory base transport, for tests under synctest.
// numbered is a base transport that numbers its calls, from 1, for f,
// and a func that says how many it has had.
func numbered(f func(n int, r *http.Request) (*http.Response, error)) (roundTripFunc, func() int) {
	var calls atomic.Int32
	return func(r *http.Request) (*http.Response, error) { return f(int(calls.Add(1)), r) },
		func() int { return int(calls.Load()) }
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Body != nil {
		_ = r.Body.Close()
	}
	return f(r)
}

func response(r *http.Request, status int, h http.Header, body string) *http.Response {
	if h == nil {
		h = http.Header{}
	}
	return &http.Response{StatusCode: status, Status: strconv.Itoa(status) + " " + http.StatusText(status),
		Header: h, Body: io.NopCloser(strings.NewReader(body)), Request: r, ProtoMajor: 1, ProtoMinor: 1}
}

type trackedBody struct {
	io.ReadCloser
	closed atomic.Bool
}

func (b *trackedBody) Close() error {
	b.closed.Store(true)
	return b.ReadCloser.Close()
}

// waitCancel waits for the client to cancel r, and reports whether it did
// within ten seconds: a handler that stands for a slow server.
func waitCancel(r *http.Request) bool {
	select {
	case <-r.Context().Done():
		return true
	case <-time.After(10 * time.Second):
		return false
	}
}

// waitFor waits for a value on ch, failing the test after ten seconds.
func waitFor(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(10 * time.Second):
		t.Fatalf("timed out waiting: %s", what)
	}
}

// Retry and hedge together: a failed attempt is retried, and the slow
// retry is hedged; the hedge's response wins.
func TestTransportRetryThenHedge(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		base, calls := numbered(func(n int, r *http.Request) (*http.Response, error) {
			switch n {
			case 1:
				return response(r, http.StatusServiceUnavailable, nil, "busy"), nil
			case 2: // the retry: slow, and gives up when cancelled
				select {
				case <-r.Context().Done():
					return nil, r.Context().Err()
				case <-time.After(time.Minute):
					return response(r, http.StatusOK, nil, "slow"), nil
				}
			}
			return response(r, http.StatusOK, nil, "hedge "+strconv.Itoa(n)), nil
		})
		hedge, err := jidoka.NewHedge(jidoka.HedgeOptions{Delay: 100 * time.Millisecond})
		require.NoError(t, err)
		c := client(t, nil, taihttp.TransportOptions{Base: base, Hedge: hedge,
			Retry: newRetry(t, jidoka.RetryOptions{MaxAttempts: 2, Jitter: func(time.Duration) time.Duration { return 0 }})})
		start := time.Now()
		resp, err := c.Get("http://example.test/")
		require.NoError(t, err)
		assert.Equal(t, "hedge 3", readAll(t, resp))
		assert.Equal(t, 100*time.Millisecond, time.Since(start), "no backoff, then the hedge delay")
		assert.Equal(t, 3, calls())
	})
}

// Many requests at once through every guard, against a flapping server:
// the first copy of each request to arrive fails. (A failure by a global
// count could fail every attempt of one request.)
func TestTransportConcurrent(t *testing.T) {
	var seen sync.Map
	srv := newServer(t, func(n int, w http.ResponseWriter, r *http.Request) {
		if _, again := seen.LoadOrStore(r.URL.Path, true); !again {
			http.Error(w, "flap", http.StatusServiceUnavailable)
			return
		}
		_, _ = io.WriteString(w, r.URL.Path)
	})
	hedge, err := jidoka.NewHedge(jidoka.HedgeOptions{Delay: 50 * time.Millisecond})
	require.NoError(t, err)
	b, err := jidoka.NewBreaker(jidoka.BreakerOptions{ConsecutiveFailures: 1000})
	require.NoError(t, err)
	budget, err := jidoka.NewRetryBudget(jidoka.RetryBudgetOptions{Ratio: 1, Burst: 100})
	require.NoError(t, err)
	c := client(t, srv, taihttp.TransportOptions{Hedge: hedge, Breaker: b, AttemptTimeout: 5 * time.Second,
		Retry: newRetry(t, jidoka.RetryOptions{MaxAttempts: 5, Budget: budget})})
	var wg sync.WaitGroup
	for i := range 40 {
		wg.Go(func() {
			path := "/item/" + strconv.Itoa(i)
			resp, err := c.Get(srv.URL + path)
			if !assert.NoError(t, err) {
				return
			}
			assert.Equal(t, http.StatusOK, resp.StatusCode)
			b, _ := io.ReadAll(resp.Body)
			_ = resp.Body.Close()
			assert.Equal(t, path, string(b))
		})
	}
	wg.Wait()
}

// stalledBody is the body of a response whose header came but whose body
// does not: a read waits until the request's context ends, as net/http's
// bodies do.
type stalledBody struct{ r *http.Request }

func (b stalledBody) Read([]byte) (int, error) {
	<-b.r.Context().Done()
	return 0, b.r.Context().Err()
}

func (stalledBody) Close() error { return nil }

// A hedged request whose first copy loses to the hedge in each way a
// loser can: the hedge's response wins and reads whole, and the Transport
// closes the loser's body. (The POST, never hedged, is a case of
// TestTransportHedgesOnlyUnkeyedRequests.)
//
//   - late: the first copy ignores its context and answers after the
//     hedge won, all the same.
//   - after its header: both copies succeed, the first one's header a
//     moment before the hedge wins; the loser is cancelled, and its body,
//     which does not come, does not hold up the winner. (A FailureStatus
//     that takes a second stands for the moment between the loser's
//     header and its claim.)
//   - stalled failure: the first copy fails on its status at once, and
//     its body does not come; the hedge wins at its delay, and the
//     stalled copy is cancelled, not waited for.
func TestTransportHedgeLosers(t *testing.T) {
	for _, tc := range []struct {
		name    string
		delay   time.Duration // the hedge's
		loser   func(r *http.Request) *http.Response
		winner  time.Duration // how long the hedge takes to answer
		opts    taihttp.TransportOptions
		elapsed time.Duration // till RoundTrip returns
	}{
		{name: "late", delay: 200 * time.Millisecond, winner: 100 * time.Millisecond,
			loser: func(r *http.Request) *http.Response {
				time.Sleep(time.Second) // ignores its context: answers late all the same
				return response(r, http.StatusOK, nil, "copy 1")
			},
			elapsed: time.Second}, // the hedge waits for every copy
		{name: "after its header", delay: 100 * time.Millisecond, winner: 100 * time.Millisecond,
			loser: func(r *http.Request) *http.Response {
				time.Sleep(150 * time.Millisecond)
				resp := response(r, http.StatusNonAuthoritativeInfo, nil, "")
				resp.Body = stalledBody{r}
				return resp
			},
			opts: taihttp.TransportOptions{FailureStatus: func(status int) bool {
				if status == http.StatusNonAuthoritativeInfo {
					time.Sleep(time.Second)
				}
				return status >= 500
			}},
			elapsed: 1150 * time.Millisecond},
		{name: "stalled failure", delay: 100 * time.Millisecond,
			loser: func(r *http.Request) *http.Response {
				resp := response(r, http.StatusServiceUnavailable, nil, "")
				resp.Body = stalledBody{r}
				return resp
			},
			elapsed: 100 * time.Millisecond}, // the stalled copy was cancelled as the hedge won
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				var mu sync.Mutex
				var bodies []*trackedBody
				base, calls := numbered(func(n int, r *http.Request) (*http.Response, error) {
					var resp *http.Response
					if n == 1 {
						resp = tc.loser(r)
					} else {
						time.Sleep(tc.winner)
						resp = response(r, http.StatusOK, nil, "hedge "+strconv.Itoa(n))
					}
					tb := &trackedBody{ReadCloser: resp.Body}
					resp.Body = tb
					mu.Lock()
					bodies = append(bodies, tb)
					mu.Unlock()
					return resp, nil
				})
				hedge, err := jidoka.NewHedge(jidoka.HedgeOptions{Delay: tc.delay})
				require.NoError(t, err)
				opts := tc.opts
				opts.Base, opts.Hedge = base, hedge
				c := client(t, nil, opts)
				start := time.Now()
				resp, err := c.Get("http://example.test/")
				require.NoError(t, err)
				assert.Equal(t, tc.elapsed, time.Since(start))
				assert.Equal(t, http.StatusOK, resp.StatusCode)
				assert.Equal(t, "hedge 2", readAll(t, resp), "the hedge answered first")
				assert.Equal(t, 2, calls())
				mu.Lock()
				defer mu.Unlock()
				require.Len(t, bodies, 2)
				for _, b := range bodies {
					assert.True(t, b.closed.Load(), "every body is closed: the loser's by the transport")
				}
			})
		})
	}
}

// A response that fails on its status and whose body does not come is
// given up at the attempt's timeout, and the retry is sent then. (Its
// hedged case is one of TestTransportHedgeLosers.)
func TestTransportStalledFailedBody(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		base, _ := numbered(func(n int, r *http.Request) (*http.Response, error) {
			if n == 1 {
				resp := response(r, http.StatusServiceUnavailable, nil, "")
				resp.Body = stalledBody{r}
				return resp, nil
			}
			return response(r, http.StatusOK, nil, "ok"), nil
		})
		c := client(t, nil, taihttp.TransportOptions{Base: base, AttemptTimeout: time.Second,
			Retry: newRetry(t, jidoka.RetryOptions{MaxAttempts: 2, Jitter: func(time.Duration) time.Duration { return 0 }})})
		start := time.Now()
		resp, err := c.Get("http://example.test/")
		require.NoError(t, err)
		assert.Equal(t, "ok", readAll(t, resp))
		assert.Equal(t, time.Second, time.Since(start), "the failed attempt's body was read within its timeout")
	})
}

// A response that fails on its status with a body longer than the 64 KiB
// read of it holds its connection until the body is closed: it is closed
// before another attempt is sent, which may need that connection (over a
// base with MaxConnsPerHost 1 the retry waited for it until the caller's
// deadline). The last response that failed is returned whole, as the
// server sent it.
func TestTransportClosesALongFailedBodyBeforeTheRetry(t *testing.T) {
	long := strings.Repeat("x", 200<<10)
	var bodies []*trackedBody
	base, calls := numbered(func(n int, r *http.Request) (*http.Response, error) {
		for i, b := range bodies {
			if !b.closed.Load() {
				return nil, fmt.Errorf("attempt %d sent while the response of attempt %d holds its connection", n, i+1)
			}
		}
		if n == 3 {
			return response(r, http.StatusOK, nil, "ok"), nil
		}
		resp := response(r, http.StatusServiceUnavailable, nil, long)
		b := &trackedBody{ReadCloser: resp.Body}
		bodies = append(bodies, b)
		resp.Body = b
		return resp, nil
	})
	retry := newRetry(t, jidoka.RetryOptions{MaxAttempts: 3, Jitter: func(time.Duration) time.Duration { return 0 }})
	c := client(t, nil, taihttp.TransportOptions{Base: base, Retry: retry})
	resp, err := c.Get("http://example.test/")
	require.NoError(t, err)
	assert.Equal(t, "ok", readAll(t, resp))
	assert.Equal(t, 3, calls())

	bodies = nil
	base, _ = numbered(func(_ int, r *http.Request) (*http.Response, error) {
		resp := response(r, http.StatusServiceUnavailable, nil, long)
		b := &trackedBody{ReadCloser: resp.Body}
		bodies = append(bodies, b)
		resp.Body = b
		return resp, nil
	})
	c = client(t, nil, taihttp.TransportOptions{Base: base, Retry: retry})
	resp, err = c.Get("http://example.test/")
	require.NoError(t, err)
	assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
	assert.Equal(t, long, readAll(t, resp), "the last failed response is whole")
	require.Len(t, bodies, 3)
	assert.True(t, bodies[0].closed.Load() && bodies[1].closed.Load())
}

// A base transport may leave Body nil for an empty response, as
// http.Client allows (many test doubles do): the response returned, or
// held for a retry, has an empty body to read and close.
func TestTransportNilResponseBody(t *testing.T) {
	for _, status := range []int{http.StatusOK, http.StatusNoContent, http.StatusServiceUnavailable} {
		t.Run(strconv.Itoa(status), func(t *testing.T) {
			base, calls := numbered(func(_ int, r *http.Request) (*http.Response, error) {
				return &http.Response{StatusCode: status, Header: http.Header{}, Request: r}, nil
			})
			c := client(t, nil, taihttp.TransportOptions{Base: base,
				Retry: newRetry(t, jidoka.RetryOptions{MaxAttempts: 2, Jitter: func(time.Duration) time.Duration { return 0 }})})
			resp, err := c.Get("http://example.test/")
			require.NoError(t, err)
			assert.Equal(t, status, resp.StatusCode)
			assert.Empty(t, readAll(t, resp))
			want := 1
			if status == http.StatusServiceUnavailable {
				want = 2
			}
			assert.Equal(t, want, calls())
		})
	}
}

// Retry-After, in seconds or as an HTTP date, with time under synctest:
// the second attempt is sent exactly when the server asked, also after
// more than a day, when that is within the Retry's MaxRetryAfter.
func TestTransportWaitsForRetryAfter(t *testing.T) {
	for _, tc := range []struct {
		name  string
		hint  func(now time.Time) string
		retry jidoka.RetryOptions
		wait  time.Duration
	}{
		{"date", func(now time.Time) string { return now.Add(42 * time.Second).UTC().Format(http.TimeFormat) },
			jidoka.RetryOptions{MaxAttempts: 2, MaxDelay: time.Minute}, 42 * time.Second},
		{"seconds over a day", func(time.Time) string { return "100000" },
			jidoka.RetryOptions{MaxAttempts: 2, MaxRetryAfter: 48 * time.Hour}, 100000 * time.Second},
		{"date over a day", func(now time.Time) string { return now.Add(100000 * time.Second).UTC().Format(http.TimeFormat) },
			jidoka.RetryOptions{MaxAttempts: 2, MaxRetryAfter: 48 * time.Hour}, 100000 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				var sent []time.Time
				base := roundTripFunc(func(r *http.Request) (*http.Response, error) {
					sent = append(sent, time.Now())
					if len(sent) == 1 {
						h := http.Header{}
						h.Set("Retry-After", tc.hint(time.Now()))
						return response(r, http.StatusServiceUnavailable, h, "wait"), nil
					}
					return response(r, http.StatusOK, nil, "ok"), nil
				})
				c := client(t, nil, taihttp.TransportOptions{Base: base, Retry: newRetry(t, tc.retry)})
				resp, err := c.Get("http://example.test/")
				require.NoError(t, err)
				assert.Equal(t, "ok", readAll(t, resp))
				require.Len(t, sent, 2)
				// synctest's clock starts on a whole second, as an HTTP
				// date counts: the wait is exact.
				assert.Equal(t, tc.wait, sent[1].Sub(sent[0]))
			})
		})
	}
}

// A Retry-After date is read against the response's Date (RFC 9110,
// section 10.2.3): a server whose clock is an hour off the client's, that
// asks for a retry two seconds after its Date, is retried two seconds
// later, not an hour more or less. Without a Date, or with one that is
// not an HTTP date, the client's clock is all there is. Time runs under
// synctest.
func TestTransportReadsARetryAfterDateAgainstTheResponseDate(t *testing.T) {
	date := func(off time.Duration) func(now time.Time) string {
		return func(now time.Time) string { return now.Add(off).UTC().Format(http.TimeFormat) }
	}
	for _, tc := range []struct {
		name             string
		date, retryAfter func(now time.Time) string // date nil: no Date field
	}{
		{"server an hour ahead", date(time.Hour), date(time.Hour + 2*time.Second)},
		{"server an hour behind", date(-time.Hour), date(-time.Hour + 2*time.Second)},
		{"server an hour ahead, in RFC 850", date(time.Hour), func(now time.Time) string {
			return now.Add(time.Hour + 2*time.Second).UTC().Format("Monday, 02-Jan-06 15:04:05 GMT")
		}},
		{"server an hour ahead, delay-seconds", date(time.Hour), func(time.Time) string { return "2" }},
		{"no Date", nil, date(2 * time.Second)},
		{"a Date that is not a date", func(time.Time) string { return "an hour from now" }, date(2 * time.Second)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				var sent []time.Time
				base := roundTripFunc(func(r *http.Request) (*http.Response, error) {
					sent = append(sent, time.Now())
					if len(sent) == 1 {
						h := http.Header{}
						if tc.date != nil {
							h.Set("Date", tc.date(time.Now()))
						}
						h.Set("Retry-After", tc.retryAfter(time.Now()))
						return response(r, http.StatusServiceUnavailable, h, "wait"), nil
					}
					return response(r, http.StatusOK, nil, "ok"), nil
				})
				c := client(t, nil, taihttp.TransportOptions{Base: base, Retry: newRetry(t, jidoka.RetryOptions{
					MaxAttempts: 2, MaxDelay: time.Minute, Jitter: func(time.Duration) time.Duration { return 0 }})})
				resp, err := c.Get("http://example.test/")
				require.NoError(t, err)
				assert.Equal(t, "ok", readAll(t, resp))
				require.Len(t, sent, 2, "a hint past MaxRetryAfter ends the retries")
				// synctest's clock starts on a whole second, as an HTTP
				// date counts: the wait is exact.
				assert.Equal(t, 2*time.Second, sent[1].Sub(sent[0]))
			})
		})
	}
}

// The context a Transport gives an attempt's request ends once its
// response is whole: when the body has been read to its end, or at once
// when there is none (HEAD, 204, 304), as http.Transport's own does. The
// caller's context holds it till then: one that serves many requests
// whose bodies are read but not closed, or never opened, would keep
// every one of them.
func TestTransportEndsTheAttemptWithTheResponse(t *testing.T) {
	var ctxs []context.Context
	base := roundTripFunc(func(r *http.Request) (*http.Response, error) {
		ctxs = append(ctxs, r.Context())
		if r.Method == http.MethodHead {
			resp := response(r, http.StatusOK, nil, "")
			resp.Body = http.NoBody
			return resp, nil
		}
		return response(r, http.StatusOK, nil, "whole"), nil
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c := client(t, nil, taihttp.TransportOptions{Base: base})

	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://example.test/", nil)
	require.NoError(t, err)
	resp, err := c.Do(req)
	require.NoError(t, err)
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	assert.Equal(t, "whole", string(b))
	assert.ErrorIs(t, ctxs[0].Err(), context.Canceled, "the body was read to its end")
	require.NoError(t, resp.Body.Close())

	req, err = http.NewRequestWithContext(ctx, http.MethodHead, "http://example.test/", nil)
	require.NoError(t, err)
	resp, err = c.Do(req)
	require.NoError(t, err)
	assert.Equal(t, http.NoBody, resp.Body)
	assert.ErrorIs(t, ctxs[1].Err(), context.Canceled, "there is no body to read")
	assert.NoError(t, ctx.Err())
}

// The response's Request is the request given to RoundTrip, as
// http.Transport makes it, whichever attempt answered: its context stays
// the caller's once the body is read and closed, so that a follow-up
// request made with resp.Request.Context() (the next page of a listing)
// is not cancelled with the attempt.
func TestTransportResponseRequestIsTheCallers(t *testing.T) {
	for _, tc := range []struct {
		name   string
		fail   int // attempts answered 503 before one answered 200
		status int
	}{
		{"first attempt", 0, http.StatusOK},
		{"a retry", 1, http.StatusOK},
		{"the last failed response", 3, http.StatusServiceUnavailable},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := newServer(t, func(n int, w http.ResponseWriter, r *http.Request) {
				if n <= tc.fail {
					http.Error(w, "busy", http.StatusServiceUnavailable)
					return
				}
				_, _ = io.WriteString(w, "page 1")
			})
			c := client(t, srv, taihttp.TransportOptions{
				Retry: newRetry(t, jidoka.RetryOptions{MaxAttempts: 3}), AttemptTimeout: time.Minute,
			})
			req, err := http.NewRequest(http.MethodPut, srv.URL, strings.NewReader("the payload"))
			require.NoError(t, err)
			resp, err := c.Transport.RoundTrip(req)
			require.NoError(t, err)
			assert.Equal(t, tc.status, resp.StatusCode)
			readAll(t, resp)
			assert.True(t, resp.Request == req, "resp.Request is the request given to RoundTrip")
			assert.NoError(t, resp.Request.Context().Err(), "the caller's context is not the attempt's")
		})
	}
	t.Run("a hedge", func(t *testing.T) {
		var calls atomic.Int32
		base := roundTripFunc(func(r *http.Request) (*http.Response, error) {
			if calls.Add(1) == 1 {
				<-r.Context().Done() // the first copy answers only once it lost
				return nil, r.Context().Err()
			}
			return response(r, http.StatusOK, nil, "page 1"), nil
		})
		hedge, err := jidoka.NewHedge(jidoka.HedgeOptions{Delay: time.Millisecond})
		require.NoError(t, err)
		c := client(t, nil, taihttp.TransportOptions{Base: base, Hedge: hedge})
		req, err := http.NewRequest(http.MethodGet, "http://example.test/", nil)
		require.NoError(t, err)
		resp, err := c.Transport.RoundTrip(req)
		require.NoError(t, err)
		assert.Equal(t, "page 1", readAll(t, resp))
		assert.True(t, resp.Request == req, "resp.Request is the request given to RoundTrip")
		assert.NoError(t, resp.Request.Context().Err())
	})
}

// Reading each body to its end and closing it, sequential requests share
// one connection.
func TestTransportReusesConnections(t *testing.T) {
	var conns atomic.Int32
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodHead && r.URL.Path != "/empty" {
			_, _ = io.WriteString(w, strings.Repeat("x", 10000))
		}
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	c := client(t, nil, taihttp.TransportOptions{Base: srv.Client().Transport})
	for _, m := range []string{http.MethodGet, http.MethodHead, http.MethodGet, http.MethodGet} {
		for _, path := range []string{"/", "/empty"} {
			req, err := http.NewRequest(m, srv.URL+path, nil)
			require.NoError(t, err)
			resp, err := c.Do(req)
			require.NoError(t, err)
			readAll(t, resp)
		}
	}
	assert.EqualValues(t, 1, conns.Load())
}

// An upgrade (a WebSocket, say) hedged: both copies are switched to the
// new protocol, whose server then waits for the client to speak. The
// copy that loses is closed, not drained: its body is the connection, and
// reading it waited for bytes that never come, so RoundTrip never
// returned.
func TestTransportHedgedUpgradeLoserIsClosed(t *testing.T) {
	var arrived atomic.Int32
	both := make(chan struct{})
	var (
		conns    sync.WaitGroup
		mu       sync.Mutex
		hijacked []net.Conn
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if arrived.Add(1) == 2 {
			close(both)
		}
		<-both
		conn, rw, err := http.NewResponseController(w).Hijack()
		if !assert.NoError(t, err) {
			return
		}
		mu.Lock()
		hijacked = append(hijacked, conn)
		mu.Unlock()
		conns.Add(1)
		defer conns.Done()
		defer conn.Close()
		_, _ = rw.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
		_ = rw.Flush()
		// Echo until the client closes the connection.
		_, _ = io.Copy(conn, rw)
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() {
		mu.Lock()
		for _, c := range hijacked {
			_ = c.Close()
		}
		mu.Unlock()
		conns.Wait()
	})

	hedge, err := jidoka.NewHedge(jidoka.HedgeOptions{Delay: time.Millisecond})
	require.NoError(t, err)
	var first atomic.Bool
	tr, err := taihttp.NewTransport(taihttp.TransportOptions{Base: srv.Client().Transport, Hedge: hedge,
		FailureStatus: func(status int) bool {
			if status == http.StatusSwitchingProtocols && !first.Swap(true) {
				// The copy whose header came first stalls a moment,
				// so that the other one wins while it holds its own.
				time.Sleep(100 * time.Millisecond)
			}
			return status >= 500
		}})
	require.NoError(t, err)
	c := &http.Client{Transport: tr}
	t.Cleanup(c.CloseIdleConnections)

	req, err := http.NewRequest(http.MethodGet, srv.URL, nil)
	require.NoError(t, err)
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "echo")
	type result struct {
		resp *http.Response
		err  error
	}
	done := make(chan result, 1)
	go func() {
		resp, err := c.Do(req)
		done <- result{resp, err}
	}()
	var res result
	select {
	case res = <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("RoundTrip did not return: the losing copy's connection was read, not closed")
	}
	require.NoError(t, res.err)
	require.Equal(t, http.StatusSwitchingProtocols, res.resp.StatusCode)
	conn, ok := res.resp.Body.(io.ReadWriteCloser)
	require.True(t, ok, "the body of a 101 is the connection")
	_, err = io.WriteString(conn, "ping\n")
	require.NoError(t, err)
	line, err := bufio.NewReader(conn).ReadString('\n')
	require.NoError(t, err)
	assert.Equal(t, "ping\n", line)
	require.NoError(t, conn.Close())
	assert.EqualValues(t, 2, arrived.Load())
}

// An upgrade's response, 101 Switching Protocols, is whole when it comes:
// the connection is the caller's now, and the context a Transport gave
// the request ends at once (http.Transport's own has ended too), so the
// caller's context does not keep one for each upgrade. The connection
// stays open.
func TestTransportEndsTheAttemptOfAnUpgrade(t *testing.T) {
	var conns sync.WaitGroup
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, rw, err := http.NewResponseController(w).Hijack()
		if !assert.NoError(t, err) {
			return
		}
		conns.Add(1)
		defer conns.Done()
		defer conn.Close()
		_, _ = rw.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
		_ = rw.Flush()
		_, _ = io.Copy(conn, rw) // until the client closes the connection
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(conns.Wait)
	var reqCtx context.Context
	inner := srv.Client().Transport
	base := roundTripFunc(func(r *http.Request) (*http.Response, error) {
		reqCtx = r.Context()
		return inner.RoundTrip(r)
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c := client(t, nil, taihttp.TransportOptions{Base: base})

	req, err := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL, nil)
	require.NoError(t, err)
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "echo")
	resp, err := c.Do(req)
	require.NoError(t, err)
	conn, ok := resp.Body.(io.ReadWriteCloser)
	require.True(t, ok, "the body of a 101 is the connection")
	defer conn.Close()
	assert.ErrorIs(t, reqCtx.Err(), context.Canceled, "the attempt ended with its response")
	assert.NoError(t, ctx.Err())

	_, err = io.WriteString(conn, "ping\n")
	require.NoError(t, err)
	line, err := bufio.NewReader(conn).ReadString('\n')
	require.NoError(t, err)
	assert.Equal(t, "ping\n", line, "the connection outlives the attempt's context")
}

// A Retry's RetryOn sees an attempt that failed on its status as a
// *StatusError with that status, so that it can pick which statuses and
// which other errors are worth another attempt.
func TestTransportRetryOnSeesTheStatus(t *testing.T) {
	srv := newServer(t, func(n int, w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/flaky":
			if n%2 == 1 {
				http.Error(w, "busy", http.StatusServiceUnavailable)
				return
			}
		case "/broken":
			http.Error(w, "bug", http.StatusInternalServerError)
			return
		}
		_, _ = io.WriteString(w, "ok")
	})
	var seen []int
	retry := newRetry(t, jidoka.RetryOptions{MaxAttempts: 3, RetryOn: func(err error) bool {
		var se *taihttp.StatusError
		if !errors.As(err, &se) {
			return errors.Is(err, jidoka.ErrTimeout)
		}
		seen = append(seen, se.Status)
		return se.Status == http.StatusServiceUnavailable // not a 500: a bug will not mend
	}})
	c := client(t, srv, taihttp.TransportOptions{Retry: retry})

	resp, err := c.Get(srv.URL + "/flaky")
	require.NoError(t, err)
	assert.Equal(t, http.StatusOK, resp.StatusCode, "a 503 is retried")
	assert.Equal(t, "ok", readAll(t, resp))
	assert.EqualValues(t, 2, srv.hits.Load())

	resp, err = c.Get(srv.URL + "/broken")
	require.NoError(t, err)
	assert.Equal(t, http.StatusInternalServerError, resp.StatusCode)
	assert.Equal(t, "bug\n", readAll(t, resp))
	assert.EqualValues(t, 3, srv.hits.Load(), "a 500 is not retried")
	assert.Equal(t, []int{http.StatusServiceUnavailable, http.StatusInternalServerError}, seen)
}

// hasKey reports whether h holds an Idempotency-Key with a key in it,
// under any spelling of its name, as a server that keeps keys reads one.
func hasKey(h http.Header) bool {
	for k, vs := range h {
		if strings.EqualFold(k, "Idempotency-Key") {
			for _, v := range vs {
				if strings.Trim(v, " \t") != "" {
					return true
				}
			}
		}
	}
	return false
}

// Only a request without a key is hedged. A server that keeps
// idempotency keys (draft-ietf-httpapi-idempotency-key-header) answers a
// copy sent while the first is in progress with 409 Conflict, which would
// win the race, and the caller would get it in place of the first copy's
// answer; it may keep keys for a PUT, a DELETE or a GET too. The key
// counts under any spelling of its name (h["idempotency-key"], sent as
// it is, which a server reads as the key). One given twice is no key to
// retry a POST by (a server may read it as none), but it still stops the
// hedge: many servers read the first value (Go's Header.Get) or both
// joined as the key. A field with nothing but blanks is no key to any
// server: such a request is hedged, as is one without the field.
func TestTransportHedgesOnlyUnkeyedRequests(t *testing.T) {
	for _, tc := range []struct {
		method    string
		header    http.Header
		anyMethod bool // RetryNonIdempotent
		sent      int
	}{
		{http.MethodPost, http.Header{"Idempotency-Key": {"key-1"}}, false, 1},
		{http.MethodPut, http.Header{"Idempotency-Key": {"key-1"}}, false, 1},
		{http.MethodDelete, http.Header{"Idempotency-Key": {"key-1"}}, false, 1},
		{http.MethodGet, http.Header{"Idempotency-Key": {"key-1"}}, false, 1},
		{http.MethodPut, http.Header{}, false, 2},
		{http.MethodPost, http.Header{}, false, 1},
		{http.MethodPost, http.Header{}, true, 2},
		{http.MethodPost, http.Header{"Idempotency-Key": {"key-1"}}, true, 1},
		{http.MethodPost, http.Header{"idempotency-key": {"key-1"}}, true, 1},
		{http.MethodPut, http.Header{"Idempotency-Key": {"key-1", "key-1"}}, true, 1},
		{http.MethodPut, http.Header{"Idempotency-Key": {"key-1", ""}}, true, 1},
		{http.MethodDelete, http.Header{"Idempotency-Key": {"key-1"}, "idempotency-key": {"key-2"}}, true, 1},
		{http.MethodPost, http.Header{"Idempotency-Key": {"key-1", "key-2"}}, true, 1},
		{http.MethodPost, http.Header{"Idempotency-Key": {"", "key-1"}}, true, 1},
		{http.MethodPut, http.Header{"Idempotency-Key": {" ", ""}}, true, 2},
		{http.MethodPost, http.Header{"Idempotency-Key": {"\t"}}, true, 2},
	} {
		t.Run(fmt.Sprint(tc.method, " ", tc.header, " any method ", tc.anyMethod), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				base, calls := numbered(func(n int, r *http.Request) (*http.Response, error) {
					if n == 1 {
						time.Sleep(time.Second)
						return response(r, http.StatusOK, nil, "stored"), nil
					}
					if hasKey(r.Header) {
						return response(r, http.StatusConflict, nil, "a request with this key is in progress"), nil
					}
					return response(r, http.StatusOK, nil, "hedged"), nil
				})
				hedge, err := jidoka.NewHedge(jidoka.HedgeOptions{Delay: 100 * time.Millisecond})
				require.NoError(t, err)
				c := client(t, nil, taihttp.TransportOptions{Base: base, Hedge: hedge, RetryNonIdempotent: tc.anyMethod})
				req, err := http.NewRequest(tc.method, "http://store.test/items/1", strings.NewReader("item"))
				require.NoError(t, err)
				req.Header = tc.header
				resp, err := c.Do(req)
				require.NoError(t, err)
				assert.Equal(t, http.StatusOK, resp.StatusCode)
				want := map[int]string{1: "stored", 2: "hedged"}[tc.sent]
				assert.Equal(t, want, readAll(t, resp))
				assert.Equal(t, tc.sent, calls())
			})
		})
	}
}

// A keyed request of any method is retried after its first attempt
// fails, and that retry is not hedged either.
func TestTransportRetriesKeyedRequestsUnhedged(t *testing.T) {
	for _, method := range []string{http.MethodPost, http.MethodPut} {
		t.Run(method, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				base, calls := numbered(func(n int, r *http.Request) (*http.Response, error) {
					time.Sleep(time.Second) // each past the hedge's delay
					switch n {
					case 1:
						return response(r, http.StatusServiceUnavailable, nil, "busy"), nil
					case 2:
						return response(r, http.StatusOK, nil, "stored"), nil
					}
					return response(r, http.StatusConflict, nil, "a request with this key is in progress"), nil
				})
				hedge, err := jidoka.NewHedge(jidoka.HedgeOptions{Delay: 100 * time.Millisecond})
				require.NoError(t, err)
				c := client(t, nil, taihttp.TransportOptions{Base: base, Hedge: hedge, Retry: newRetry(t, jidoka.RetryOptions{MaxAttempts: 3})})
				req, err := http.NewRequest(method, "http://store.test/items/1", strings.NewReader("item"))
				require.NoError(t, err)
				req.Header.Set("Idempotency-Key", "key-1")
				resp, err := c.Do(req)
				require.NoError(t, err)
				assert.Equal(t, http.StatusOK, resp.StatusCode)
				assert.Equal(t, "stored", readAll(t, resp))
				assert.Equal(t, 2, calls(), "sent twice, one after the other")
			})
		})
	}
}

// RetryNonIdempotent lets a POST without a key be sent again, but a keyed
// one is still not hedged: a server that keeps the key answers the copy
// sent while the first is in progress with 409 Conflict, which would win
// the race although the first goes through.
func TestTransportDoesNotHedgeKeyedPOSTWithRetryNonIdempotent(t *testing.T) {
	var mu sync.Mutex
	inProgress := map[string]chan struct{}{} // closed when a copy of the key came
	srv := newServer(t, func(_ int, w http.ResponseWriter, r *http.Request) {
		key := r.Header.Get("Idempotency-Key")
		mu.Lock()
		copied, busy := inProgress[key]
		if busy {
			mu.Unlock()
			close(copied)
			http.Error(w, "a request with this key is in progress", http.StatusConflict)
			return
		}
		copied = make(chan struct{})
		inProgress[key] = copied
		mu.Unlock()
		// The charge takes a while: long past the hedge's delay, or
		// until a copy came and was turned away.
		select {
		case <-copied:
		case <-time.After(300 * time.Millisecond):
		}
		w.WriteHeader(http.StatusCreated)
		_, _ = io.WriteString(w, "charged")
	})
	hedge, err := jidoka.NewHedge(jidoka.HedgeOptions{Delay: 5 * time.Millisecond})
	require.NoError(t, err)
	c := client(t, srv, taihttp.TransportOptions{Hedge: hedge, RetryNonIdempotent: true})
	req, err := http.NewRequest(http.MethodPost, srv.URL, strings.NewReader("charge"))
	require.NoError(t, err)
	req.Header.Set("Idempotency-Key", "key-1")
	resp, err := c.Do(req)
	require.NoError(t, err)
	assert.Equal(t, http.StatusCreated, resp.StatusCode)
	assert.Equal(t, "charged", readAll(t, resp))
	assert.EqualValues(t, 1, srv.hits.Load(), "sent once")
}

// An Idempotency-Key set under another spelling of its name, as a direct
// assignment to the header map can (h["idempotency-key"]), is sent as
// it is, and a server reads it as the key, field names being
// case-insensitive: such a POST is retried, and not hedged. Under two
// spellings at once it is two fields on the wire, no key: sent once.
func TestTransportReadsIdempotencyKeyUnderAnySpelling(t *testing.T) {
	var seen sync.Map // attempt number → the keys the server read
	srv := newServer(t, func(n int, w http.ResponseWriter, r *http.Request) {
		seen.Store(n, r.Header.Values("Idempotency-Key"))
		http.Error(w, "busy", http.StatusServiceUnavailable)
	})
	c := client(t, srv, taihttp.TransportOptions{Retry: newRetry(t, jidoka.RetryOptions{MaxAttempts: 3})})
	for _, tc := range []struct {
		header http.Header
		server []string // the keys the server reads
		sent   int32
	}{
		{http.Header{"idempotency-key": {"key-1"}}, []string{"key-1"}, 3},
		{http.Header{"IDEMPOTENCY-KEY": {"key-1"}}, []string{"key-1"}, 3},
		{http.Header{"Idempotency-Key": {"key-1"}, "idempotency-key": {"key-2"}}, nil, 1},
		{http.Header{"idempotency-key": {"key-1"}, "IDEMPOTENCY-KEY": {"key-2"}}, nil, 1},
		{http.Header{"Idempotency-Key": {"key-1"}, "idempotency-key": {}}, []string{"key-1"}, 3},
		{http.Header{"idempotency-key": {" "}}, []string{""}, 1},
	} {
		before := srv.hits.Load()
		req, err := http.NewRequest(http.MethodPost, srv.URL, strings.NewReader("charge"))
		require.NoError(t, err)
		req.Header = tc.header
		resp, err := c.Do(req)
		require.NoError(t, err)
		readAll(t, resp)
		got, _ := seen.Load(int(before) + 1)
		if tc.server != nil {
			assert.Equal(t, tc.server, got, "%v: the server reads the key", tc.header)
		} else {
			assert.Len(t, got, 2, "%v: the server reads two fields", tc.header)
		}
		assert.Equal(t, tc.sent, srv.hits.Load()-before, "%v", tc.header)
	}
}

// A base transport that breaks the RoundTripper contract with neither a
// response nor an error fails the attempt with an error, as http.Client
// does for its own transport, and the breaker counts it: the Transport
// dereferenced the nil response and panicked.
func TestTransportNilResponseAndError(t *testing.T) {
	b, err := jidoka.NewBreaker(jidoka.BreakerOptions{ConsecutiveFailures: 2})
	require.NoError(t, err)
	base, calls := numbered(func(int, *http.Request) (*http.Response, error) { return nil, nil })
	c := client(t, nil, taihttp.TransportOptions{Base: base, Breaker: b,
		Retry: newRetry(t, jidoka.RetryOptions{MaxAttempts: 2, Jitter: func(time.Duration) time.Duration { return 0 }})})
	_, err = c.Get("http://example.test/")
	require.ErrorContains(t, err, "returned a nil *Response with a nil error")
	assert.Equal(t, 2, calls(), "the attempt failed and was retried")
	assert.Equal(t, jidoka.StateOpen, b.State(), "the breaker counted both attempts")
}

// A base that returns a response with its error breaks the RoundTripper
// contract as one that returns neither does: the attempt fails with the
// error, and the response, which no one else will close, is closed.
func TestTransportResponseAndError(t *testing.T) {
	var bodies []*trackedBody
	base, calls := numbered(func(_ int, r *http.Request) (*http.Response, error) {
		resp := response(r, http.StatusOK, nil, "ignored")
		b := &trackedBody{ReadCloser: resp.Body}
		bodies = append(bodies, b)
		resp.Body = b
		return resp, errors.New("broken base")
	})
	c := client(t, nil, taihttp.TransportOptions{Base: base,
		Retry: newRetry(t, jidoka.RetryOptions{MaxAttempts: 2, Jitter: func(time.Duration) time.Duration { return 0 }})})
	_, err := c.Get("http://example.test/")
	require.ErrorContains(t, err, "broken base")
	require.Equal(t, 2, calls(), "the attempt failed and was retried")
	for i, b := range bodies {
		assert.True(t, b.closed.Load(), "the response of attempt %d is closed", i+1)
	}
}

// panicOf runs f and returns what it panicked with.
func panicOf(f func()) (v any) {
	defer func() { v = recover() }()
	f()
	return nil
}

// A panic in the base transport, or in a RetryStatus or FailureStatus of
// the caller's, goes on to the caller of RoundTrip, as it would without
// the Transport; the breaker counts it as a failure, as its Do does, and
// the responses the request holds are closed. The breaker was never told
// (a half-open one kept its probe lease until ProbeTimeout), and the
// winner of a hedge, the response a RetryStatus panicked on and the
// attempts' contexts were left open, each response holding a connection.
func TestTransportPanics(t *testing.T) {
	t.Run("breaker", func(t *testing.T) {
		b, err := jidoka.NewBreaker(jidoka.BreakerOptions{ConsecutiveFailures: 2})
		require.NoError(t, err)
		c := client(t, nil, taihttp.TransportOptions{Breaker: b,
			Base: roundTripFunc(func(*http.Request) (*http.Response, error) { panic("base") })})
		for range 2 {
			assert.Equal(t, "base", panicOf(func() { _, _ = c.Get("http://example.test/") }))
		}
		assert.Equal(t, jidoka.StateOpen, b.State(), "each panic counted as a failure")
	})
	t.Run("status callbacks", func(t *testing.T) {
		for _, opts := range []taihttp.TransportOptions{
			{RetryStatus: func(int) bool { panic("status") }, Retry: newRetry(t, jidoka.RetryOptions{})},
			{FailureStatus: func(int) bool { panic("status") }},
		} {
			var body *trackedBody
			var reqCtx context.Context
			opts.Base = roundTripFunc(func(r *http.Request) (*http.Response, error) {
				reqCtx = r.Context()
				resp := response(r, http.StatusOK, nil, "ok")
				body = &trackedBody{ReadCloser: resp.Body}
				resp.Body = body
				return resp, nil
			})
			c := client(t, nil, opts)
			assert.Equal(t, "status", panicOf(func() { _, _ = c.Get("http://example.test/") }))
			assert.True(t, body.closed.Load(), "the response is closed")
			assert.ErrorIs(t, reqCtx.Err(), context.Canceled, "the attempt's context ended")
		}
	})
	// A panic in the breaker's IsFailure goes on to the caller of done
	// (the attempt), the call not counted: the response it was asked of
	// was left open, holding its connection, and its context alive.
	t.Run("breaker callbacks", func(t *testing.T) {
		for _, tc := range []struct {
			name string
			body string
			opts taihttp.TransportOptions
		}{
			{"returned", "down", taihttp.TransportOptions{}},
			{"held", strings.Repeat("x", 100<<10), taihttp.TransportOptions{Retry: newRetry(t, jidoka.RetryOptions{MaxAttempts: 2})}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				b, err := jidoka.NewBreaker(jidoka.BreakerOptions{ConsecutiveFailures: 1,
					IsFailure: func(error) bool { panic("isFailure") }})
				require.NoError(t, err)
				var body *trackedBody
				var reqCtx context.Context
				opts := tc.opts
				opts.Breaker = b
				opts.Base = roundTripFunc(func(r *http.Request) (*http.Response, error) {
					reqCtx = r.Context()
					resp := response(r, http.StatusServiceUnavailable, nil, tc.body)
					body = &trackedBody{ReadCloser: resp.Body}
					resp.Body = body
					return resp, nil
				})
				c := client(t, nil, opts)
				assert.Equal(t, "isFailure", panicOf(func() { _, _ = c.Get("http://example.test/") }))
				require.NotNil(t, body)
				assert.True(t, body.closed.Load(), "the response is closed")
				assert.ErrorIs(t, reqCtx.Err(), context.Canceled, "the attempt's context ended")
				assert.Equal(t, jidoka.StateClosed, b.State(), "the call is reported once, and not counted")
			})
		}
	})
	t.Run("hedge", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			var won *trackedBody
			base, _ := numbered(func(n int, r *http.Request) (*http.Response, error) {
				if n == 1 {
					time.Sleep(150 * time.Millisecond)
					resp := response(r, http.StatusOK, nil, "first")
					won = &trackedBody{ReadCloser: resp.Body}
					resp.Body = won
					return resp, nil
				}
				time.Sleep(200 * time.Millisecond) // past the first's win, its context ignored
				panic("hedge")
			})
			hedge, err := jidoka.NewHedge(jidoka.HedgeOptions{Delay: 100 * time.Millisecond})
			require.NoError(t, err)
			c := client(t, nil, taihttp.TransportOptions{Base: base, Hedge: hedge})
			assert.Equal(t, "hedge", panicOf(func() { _, _ = c.Get("http://example.test/") }))
			require.NotNil(t, won)
			assert.True(t, won.closed.Load(), "the winner's response, never returned, is closed")
		})
	})
	t.Run("held", func(t *testing.T) {
		var held *trackedBody
		base, _ := numbered(func(n int, r *http.Request) (*http.Response, error) {
			if n == 1 {
				// A body longer than what is kept of it: the response
				// held for the retry still has it open.
				resp := response(r, http.StatusServiceUnavailable, nil, strings.Repeat("x", 100<<10))
				held = &trackedBody{ReadCloser: resp.Body}
				resp.Body = held
				return resp, nil
			}
			panic("retry")
		})
		c := client(t, nil, taihttp.TransportOptions{Base: base,
			Retry: newRetry(t, jidoka.RetryOptions{MaxAttempts: 2, Jitter: func(time.Duration) time.Duration { return 0 }})})
		assert.Equal(t, "retry", panicOf(func() { _, _ = c.Get("http://example.test/") }))
		require.NotNil(t, held)
		assert.True(t, held.closed.Load(), "the response held for the retry is closed")
	})
}

// An *http.Transport hands a request of a scheme registered with
// RegisterProtocol to that protocol's RoundTripper, which writes no
// HTTP/1 request line: a control character in the query or the opaque
// part is its to take, and the request reaches it.
func TestTransportRegisteredProtocolTakesAControlCharacterInTheURL(t *testing.T) {
	var got []string
	base := &http.Transport{}
	base.RegisterProtocol("example", roundTripFunc(func(r *http.Request) (*http.Response, error) {
		got = append(got, r.URL.RawQuery+r.URL.Opaque)
		return &http.Response{StatusCode: http.StatusOK, Header: http.Header{}, Body: http.NoBody, Request: r}, nil
	}))
	tr, err := taihttp.NewTransport(taihttp.TransportOptions{Base: base})
	require.NoError(t, err)
	for _, edit := range []func(u *url.URL){
		func(u *url.URL) { u.RawQuery = "q=a\tb" },
		func(u *url.URL) { u.Opaque = "x\x01" },
	} {
		req, err := http.NewRequest(http.MethodGet, "example://host/x", nil)
		require.NoError(t, err)
		edit(req.URL)
		resp, err := tr.RoundTrip(req)
		require.NoError(t, err)
		require.NoError(t, resp.Body.Close())
		assert.Equal(t, http.StatusOK, resp.StatusCode)
	}
	assert.Equal(t, []string{"q=a\tb", "x\x01"}, got)
}

// An attempt that timed out fails the http.Client's call with a
// *url.Error whose Timeout() is true, as a timeout of the client's own
// (http.Client.Timeout, a net.Conn deadline) says: code that tells
// timeouts apart with url.Error.Timeout or a net.Error finds it, and the
// error is still a *jidoka.TimeoutError for errors.As.
func TestTransportAttemptTimeoutIsANetTimeout(t *testing.T) {
	srv := newServer(t, func(_ int, _ http.ResponseWriter, r *http.Request) { waitCancel(r) })
	for _, opts := range []taihttp.TransportOptions{
		{AttemptTimeout: 20 * time.Millisecond},
		{AttemptTimeout: 20 * time.Millisecond, Retry: newRetry(t, jidoka.RetryOptions{MaxAttempts: 2})},
		{AttemptTimeout: 20 * time.Millisecond, Hedge: newHedge(t, time.Hour)},
	} {
		c := client(t, srv, opts)
		_, err := c.Get(srv.URL)
		require.Error(t, err)
		var ue *url.Error
		require.ErrorAs(t, err, &ue)
		assert.True(t, ue.Timeout(), "url.Error.Timeout of %v", err)
		var ne net.Error
		require.ErrorAs(t, err, &ne)
		assert.True(t, ne.Timeout(), "net.Error.Timeout of %v", err)
		var te *jidoka.TimeoutError
		require.ErrorAs(t, err, &te)
		assert.Equal(t, 20*time.Millisecond, te.Duration)
		assert.ErrorIs(t, err, context.DeadlineExceeded)
		assert.ErrorIs(t, err, jidoka.ErrTimeout)
		assert.Equal(t, te.Error(), ue.Err.Error(), "the message is the timeout's")
	}
}

func newHedge(t *testing.T, delay time.Duration) *jidoka.Hedge {
	t.Helper()
	h, err := jidoka.NewHedge(jidoka.HedgeOptions{Delay: delay})
	require.NoError(t, err)
	return h
}

// wrappedBase is a base that hands each request to another, as a
// tracing or logging RoundTripper does.
type wrappedBase struct{ rt http.RoundTripper }

func (w wrappedBase) RoundTrip(r *http.Request) (*http.Response, error) { return w.rt.RoundTrip(r) }

// An http or https URL with a control character in its query is refused
// whatever the base: over HTTP/2 no request line is written, the query
// goes out in the :path field, which a server refuses (net/http's
// resets the stream, or leaves the request unanswered), and a base that
// wraps the transport is no *http.Transport either. Each attempt failed,
// or hung until its timeout, and was retried and counted by the breaker.
func TestTransportRefusesAControlCharacterInTheQueryOverHTTP2(t *testing.T) {
	var hits atomic.Int32
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		_, _ = io.WriteString(w, r.Proto)
	}))
	srv.EnableHTTP2 = true
	srv.StartTLS()
	t.Cleanup(srv.Close)
	b, err := jidoka.NewBreaker(jidoka.BreakerOptions{ConsecutiveFailures: 1})
	require.NoError(t, err)
	c := client(t, nil, taihttp.TransportOptions{Base: wrappedBase{srv.Client().Transport}, Breaker: b,
		AttemptTimeout: 200 * time.Millisecond, Retry: newRetry(t, jidoka.RetryOptions{MaxAttempts: 2})})
	t.Cleanup(srv.Client().CloseIdleConnections)

	resp, err := c.Get(srv.URL)
	require.NoError(t, err)
	assert.Equal(t, "HTTP/2.0", readAll(t, resp))

	for _, q := range []string{"name=a\nb", "name=a\x00", "name=a\tb", "name=a\x7f"} {
		req, err := http.NewRequest(http.MethodGet, srv.URL, nil)
		require.NoError(t, err)
		req.URL.RawQuery = q
		_, err = c.Do(req)
		require.ErrorContains(t, err, "request URL has a control character in its query", "%q", q)
	}
	req, err := http.NewRequest(http.MethodGet, srv.URL, nil)
	require.NoError(t, err)
	req.URL.Opaque = "/x\x01"
	_, err = c.Do(req)
	require.ErrorContains(t, err, "request URL has a control character in its opaque part")
	assert.Equal(t, jidoka.StateClosed, b.State(), "the breaker counted requests the server could not take")
	assert.EqualValues(t, 1, hits.Load())
}

// A Host with a control character, as one copied from untrusted input
// may hold: over HTTP/2 net/http fails each attempt once it has a
// connection ("invalid Host header"), which was retried and counted by
// the breaker; over HTTP/1 it sends the request with an empty Host in
// its place. Either way the request asked for cannot be sent: it fails
// at once, and its error does not show the value.
func TestTransportRefusesAControlCharacterInTheHostOverHTTP2(t *testing.T) {
	var hits atomic.Int32
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		_, _ = io.WriteString(w, r.Proto)
	}))
	srv.EnableHTTP2 = true
	srv.StartTLS()
	t.Cleanup(srv.Close)
	b, err := jidoka.NewBreaker(jidoka.BreakerOptions{ConsecutiveFailures: 1})
	require.NoError(t, err)
	c := client(t, nil, taihttp.TransportOptions{Base: srv.Client().Transport, Breaker: b,
		Retry: newRetry(t, jidoka.RetryOptions{MaxAttempts: 2})})
	t.Cleanup(srv.Client().CloseIdleConnections)

	resp, err := c.Get(srv.URL)
	require.NoError(t, err)
	assert.Equal(t, "HTTP/2.0", readAll(t, resp))

	for _, h := range []string{"a\nX-Admin: 1", "a\x00", "a\tb", "a\x7f"} {
		req, err := http.NewRequest(http.MethodGet, srv.URL, nil)
		require.NoError(t, err)
		req.Host = h
		_, err = c.Do(req)
		require.ErrorContains(t, err, "request Host has a control character", "%q", h)
		assert.NotContains(t, err.Error(), "X-Admin")
	}
	req, err := http.NewRequest(http.MethodGet, srv.URL, nil)
	require.NoError(t, err)
	req.URL.Host += "\r"
	_, err = c.Do(req)
	require.ErrorContains(t, err, "request URL has a control character in its host")
	assert.Equal(t, jidoka.StateClosed, b.State(), "the breaker counted requests the server could not take")
	assert.EqualValues(t, 1, hits.Load())
}

// A hedged copy that answers 503 with Retry-After is the answer when the
// first copy fails with a transport error after it (its connection
// broke): the response, with the server's status and the wait it asks
// for, tells the caller more than the broken connection. The Hedge
// returned the first copy's error, and the 503 was dropped.
func TestTransportReturnsTheHedgedCopysResponseOverTheFirstCopysError(t *testing.T) {
	for _, tc := range []struct {
		name  string
		retry bool
	}{
		{"hedge", false},
		{"retry and hedge, the hint past MaxRetryAfter", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hedgeArrived := make(chan struct{})
			var arrived sync.Once
			srv := newServer(t, func(n int, w http.ResponseWriter, r *http.Request) {
				if n == 1 {
					// The first copy's connection breaks once the hedged
					// copy is in: the client reads no response on it.
					select {
					case <-hedgeArrived:
					case <-time.After(10 * time.Second):
						t.Error("timed out waiting for the hedged copy")
					}
					conn, _, err := http.NewResponseController(w).Hijack()
					if err == nil {
						_ = conn.Close()
					}
					return
				}
				arrived.Do(func() { close(hedgeArrived) })
				w.Header().Set("Retry-After", "3600")
				http.Error(w, "come back in an hour", http.StatusServiceUnavailable)
			})
			opts := taihttp.TransportOptions{Hedge: newHedge(t, 10*time.Millisecond)}
			if tc.retry {
				opts.Retry = newRetry(t, jidoka.RetryOptions{MaxAttempts: 3, MaxRetryAfter: time.Minute})
			}
			c := client(t, srv, opts)
			resp, err := c.Get(srv.URL)
			require.NoError(t, err, "the hedged copy's response, not the first copy's error")
			assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
			assert.Equal(t, "3600", resp.Header.Get("Retry-After"))
			assert.Equal(t, "come back in an hour\n", readAll(t, resp))
			assert.EqualValues(t, 2, srv.hits.Load())
		})
	}
}
