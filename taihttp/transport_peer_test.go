package taihttp_test

// The cases of failsafe-go's failsafehttp tests (v0.9.8) and of net/http's
// RoundTripper contract for which the Transport has the same notion, each
// stating what the Transport does. Where the two differ, the comment says
// how, and why the Transport's answer is the one it documents.

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/jidoka"
	"github.com/taipattern/taikit/taihttp"
)

// noJitterRetry is a Retry of attempts whose backoff is exactly BaseDelay
// (100 ms) for the first retry.
func noJitterRetry(t *testing.T, attempts int) *jidoka.Retry {
	t.Helper()
	return newRetry(t, jidoka.RetryOptions{MaxAttempts: attempts, BaseDelay: 100 * time.Millisecond,
		Jitter: func(d time.Duration) time.Duration { return d }})
}

// A body is sent again from GetBody, which http.NewRequest sets for a
// *bytes.Buffer, *bytes.Reader or *strings.Reader: every attempt carries
// it whole. A body without GetBody (any other reader, an *os.File) is
// sent once, and the first answer is the caller's: the Transport neither
// reads it into memory nor seeks it, as failsafehttp does before the first
// attempt (a body of unknown size held whole, or a file whose offset the
// caller owns moved). http.Client's own redirects send a body again only
// through GetBody too.
func TestPeerTransportReplaysABodyOnlyThroughGetBody(t *testing.T) {
	for _, tc := range []struct {
		name  string
		body  func() io.Reader
		sends int
	}{
		{"bytes.Buffer", func() io.Reader { return bytes.NewBufferString("the payload") }, 3},
		{"bytes.Reader", func() io.Reader { return bytes.NewReader([]byte("the payload")) }, 3},
		{"strings.Reader", func() io.Reader { return strings.NewReader("the payload") }, 3},
		{"a reader without GetBody", func() io.Reader { return io.MultiReader(strings.NewReader("the payload")) }, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := newServer(t, func(n int, w http.ResponseWriter, r *http.Request) {
				if n < 3 {
					http.Error(w, "busy", http.StatusServiceUnavailable)
					return
				}
				_, _ = io.WriteString(w, "stored")
			})
			c := client(t, srv, taihttp.TransportOptions{Retry: newRetry(t, jidoka.RetryOptions{MaxAttempts: 3})})
			req, err := http.NewRequest(http.MethodPut, srv.URL, tc.body())
			require.NoError(t, err)
			resp, err := c.Do(req)
			require.NoError(t, err)
			body := readAll(t, resp)
			got := srv.got()
			require.Len(t, got, tc.sends)
			for _, b := range got {
				assert.Equal(t, "the payload", b, "every attempt carries the whole body")
			}
			if tc.sends == 1 {
				assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode, "the one answer is returned")
				assert.Equal(t, "busy\n", body)
			} else {
				assert.Equal(t, "stored", body)
			}
		})
	}
}

// The responses of attempts that failed on their status are read to
// their end and closed before the next attempt is sent, so a server that
// counts its connections sees one: every retry, and the requests after,
// reuse it. (failsafehttp leaves a retried attempt's response unclosed
// unless the policy's own handling closes it.)
func TestPeerTransportRetriesOnOneConnection(t *testing.T) {
	var conns atomic.Int32
	var hits atomic.Int32
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch n := hits.Add(1); {
		case n%3 != 0:
			// Within the 64 KiB a failed response's body is read to.
			http.Error(w, strings.Repeat("busy ", 6000), http.StatusServiceUnavailable)
		default:
			_, _ = io.WriteString(w, "ok")
		}
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	c := client(t, nil, taihttp.TransportOptions{Base: srv.Client().Transport,
		Retry: newRetry(t, jidoka.RetryOptions{MaxAttempts: 3})})
	for range 3 {
		resp, err := c.Get(srv.URL)
		require.NoError(t, err)
		assert.Equal(t, "ok", readAll(t, resp))
	}
	assert.EqualValues(t, 9, hits.Load())
	assert.EqualValues(t, 1, conns.Load(), "no failed attempt kept its connection")

	// Retries spent: the last 503 is returned with its body, which the
	// caller reads and closes; the connection serves the next request.
	none := client(t, nil, taihttp.TransportOptions{Base: srv.Client().Transport,
		Retry: newRetry(t, jidoka.RetryOptions{MaxAttempts: 2})})
	hits.Store(0)
	resp, err := none.Get(srv.URL)
	require.NoError(t, err)
	assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
	assert.Len(t, readAll(t, resp), len(strings.Repeat("busy ", 6000))+1)
	assert.EqualValues(t, 1, conns.Load())
}

// Retry-After in each form a server may send, and a few it should not:
// delay-seconds and an HTTP date set the wait when longer than the
// backoff; a date in the past, a negative number, a fraction or garbage
// say nothing, and the backoff (100 ms here) applies; a hint past the
// Retry's MaxRetryAfter (by default its MaxDelay, 10 s) ends the retries
// at once with the server's answer, however large. failsafehttp reads
// delay-seconds alone (strconv.Atoi), on 429 and 503 only: an HTTP date
// there is ignored, and "-3" is a negative delay.
func TestPeerTransportRetryAfterForms(t *testing.T) {
	for _, tc := range []struct {
		name  string
		hint  func(now time.Time) string
		calls int
		wait  time.Duration // before the second call
	}{
		{"seconds", func(time.Time) string { return "7" }, 2, 7 * time.Second},
		{"seconds with spaces", func(time.Time) string { return " 7 " }, 2, 7 * time.Second},
		{"date", func(now time.Time) string { return now.Add(9 * time.Second).UTC().Format(http.TimeFormat) }, 2, 9 * time.Second},
		{"date in the past", func(now time.Time) string { return now.Add(-time.Hour).UTC().Format(http.TimeFormat) }, 2, 100 * time.Millisecond},
		{"zero", func(time.Time) string { return "0" }, 2, 100 * time.Millisecond},
		{"negative", func(time.Time) string { return "-3" }, 2, 100 * time.Millisecond},
		{"fraction", func(time.Time) string { return "1.5" }, 2, 100 * time.Millisecond},
		{"garbage", func(time.Time) string { return "soon" }, 2, 100 * time.Millisecond},
		{"none", func(time.Time) string { return "" }, 2, 100 * time.Millisecond},
		{"past MaxRetryAfter", func(time.Time) string { return "11" }, 1, 0},
		{"huge", func(time.Time) string { return "99999999999999999999999" }, 1, 0},
		{"a date far ahead", func(time.Time) string { return "Fri, 31 Dec 9999 23:59:59 GMT" }, 1, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				var sent []time.Time
				var hint string
				base := roundTripFunc(func(r *http.Request) (*http.Response, error) {
					sent = append(sent, time.Now())
					if len(sent) == 1 {
						h := http.Header{}
						if hint = tc.hint(time.Now()); hint != "" {
							h.Set("Retry-After", hint)
						}
						return response(r, http.StatusServiceUnavailable, h, "wait"), nil
					}
					return response(r, http.StatusOK, nil, "ok"), nil
				})
				c := client(t, nil, taihttp.TransportOptions{Base: base, Retry: noJitterRetry(t, 2)})
				resp, err := c.Get("http://example.test/")
				require.NoError(t, err)
				require.Len(t, sent, tc.calls)
				if tc.calls == 1 {
					assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode, "the server's answer, at once")
					assert.Equal(t, hint, resp.Header.Get("Retry-After"))
					assert.Equal(t, "wait", readAll(t, resp))
					return
				}
				assert.Equal(t, "ok", readAll(t, resp))
				assert.Equal(t, tc.wait, sent[1].Sub(sent[0]))
			})
		})
	}
}

// The statuses retried are RetryStatus's: by default 408, 429, 500, 502,
// 503 and 504, not 501 Not Implemented, 505 or 507, which another attempt
// will not mend (failsafehttp retries 429 and every 5xx but 501). A
// RetryStatus of the caller's decides alone: without 429 in it, a 429 is
// the answer at once.
func TestPeerTransportRetryStatusPerConfig(t *testing.T) {
	retried := map[int]bool{408: true, 429: true, 500: true, 502: true, 503: true, 504: true}
	for _, status := range []int{400, 404, 408, 409, 429, 500, 501, 502, 503, 504, 505, 507} {
		base, calls := numbered(func(_ int, r *http.Request) (*http.Response, error) {
			return response(r, status, nil, "no"), nil
		})
		c := client(t, nil, taihttp.TransportOptions{Base: base, Retry: newRetry(t, jidoka.RetryOptions{MaxAttempts: 2})})
		resp, err := c.Get("http://example.test/")
		require.NoError(t, err)
		assert.Equal(t, status, resp.StatusCode)
		assert.Equal(t, "no", readAll(t, resp))
		want := 1
		if retried[status] {
			want = 2
		}
		assert.Equal(t, want, calls(), "status %d", status)
		assert.Equal(t, retried[status], taihttp.DefaultRetryStatus(status), "status %d", status)
	}

	only503 := func(status int) bool { return status == http.StatusServiceUnavailable }
	for status, want := range map[int]int{429: 1, 503: 2} {
		base, calls := numbered(func(_ int, r *http.Request) (*http.Response, error) {
			return response(r, status, http.Header{"Retry-After": {"0"}}, "no"), nil
		})
		c := client(t, nil, taihttp.TransportOptions{Base: base, RetryStatus: only503,
			Retry: newRetry(t, jidoka.RetryOptions{MaxAttempts: 2})})
		resp, err := c.Get("http://example.test/")
		require.NoError(t, err)
		readAll(t, resp)
		assert.Equal(t, want, calls(), "status %d", status)
	}
}

// Only a request that may be sent twice is retried: an idempotent method
// of RFC 9110, a POST or PATCH with an Idempotency-Key, or any method
// with RetryNonIdempotent. failsafehttp retries every method alike, a
// POST that charged a card included.
func TestPeerTransportRetriesIdempotentRequestsOnly(t *testing.T) {
	for _, tc := range []struct {
		method    string
		key       string
		anyMethod bool
		sends     int
	}{
		{http.MethodGet, "", false, 2},
		{http.MethodHead, "", false, 2},
		{http.MethodOptions, "", false, 2},
		{http.MethodTrace, "", false, 2},
		{http.MethodPut, "", false, 2},
		{http.MethodDelete, "", false, 2},
		{http.MethodPost, "", false, 1},
		{http.MethodPatch, "", false, 1},
		{http.MethodPost, "order-42", false, 2},
		{http.MethodPatch, "order-42", false, 2},
		{http.MethodPost, "", true, 2},
	} {
		base, calls := numbered(func(_ int, r *http.Request) (*http.Response, error) {
			return response(r, http.StatusServiceUnavailable, nil, "busy"), nil
		})
		c := client(t, nil, taihttp.TransportOptions{Base: base, RetryNonIdempotent: tc.anyMethod,
			Retry: newRetry(t, jidoka.RetryOptions{MaxAttempts: 2})})
		req, err := http.NewRequest(tc.method, "http://example.test/", strings.NewReader("charge"))
		require.NoError(t, err)
		if tc.key != "" {
			req.Header.Set("Idempotency-Key", tc.key)
		}
		resp, err := c.Do(req)
		require.NoError(t, err)
		readAll(t, resp)
		assert.Equal(t, tc.sends, calls(), "%s key %q RetryNonIdempotent %v", tc.method, tc.key, tc.anyMethod)
	}
}

// A caller that cancels while an attempt is in flight gets context.Canceled
// at once, and no other attempt is sent, as failsafehttp's AbortOnErrors
// (context.Canceled) does; so does one whose deadline passes. With a
// cause, the cause is returned, as http.Transport returns it.
func TestPeerTransportCancelStopsRetriesAtOnce(t *testing.T) {
	errGaveUp := errors.New("the user left")
	for _, tc := range []struct {
		name string
		end  func(ctx context.Context) (context.Context, func())
		want error
	}{
		{"canceled", func(ctx context.Context) (context.Context, func()) {
			ctx, cancel := context.WithCancel(ctx)
			time.AfterFunc(5*time.Second, cancel)
			return ctx, cancel
		}, context.Canceled},
		{"with a cause", func(ctx context.Context) (context.Context, func()) {
			ctx, cancel := context.WithCancelCause(ctx)
			time.AfterFunc(5*time.Second, func() { cancel(errGaveUp) })
			return ctx, func() { cancel(nil) }
		}, errGaveUp},
		{"deadline", func(ctx context.Context) (context.Context, func()) {
			return context.WithTimeout(ctx, 5*time.Second)
		}, context.DeadlineExceeded},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				base, calls := numbered(func(_ int, r *http.Request) (*http.Response, error) {
					<-r.Context().Done() // a server that does not answer
					return nil, r.Context().Err()
				})
				c := client(t, nil, taihttp.TransportOptions{Base: base,
					Retry: newRetry(t, jidoka.RetryOptions{MaxAttempts: 5, RetryOn: func(error) bool { return true }})})
				ctx, stop := tc.end(context.Background())
				defer stop()
				req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://example.test/", nil)
				require.NoError(t, err)
				start := time.Now()
				_, err = c.Do(req)
				require.ErrorIs(t, err, tc.want)
				assert.Equal(t, 5*time.Second, time.Since(start), "answered as the context ended")
				assert.Equal(t, 1, calls(), "a RetryOn that retries everything sends nothing more")
			})
		})
	}
}

// A hedged request whose copies both answer: the first response wins, the
// other copy's context is cancelled and its response, whose header came
// after, drained and closed by the Transport; RoundTrip returns once
// every copy has, as failsafehttp's hedge policy waits too.
func TestPeerTransportHedgeClosesTheLosersBody(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var mu sync.Mutex
		bodies := map[int]*trackedBody{}
		var loserCtx context.Context
		base, calls := numbered(func(n int, r *http.Request) (*http.Response, error) {
			if n == 1 {
				loserCtx = r.Context()
				time.Sleep(300 * time.Millisecond) // slow, and deaf to its context
			} else {
				time.Sleep(50 * time.Millisecond)
			}
			resp := response(r, http.StatusOK, nil, "copy "+strconv.Itoa(n))
			tb := &trackedBody{ReadCloser: resp.Body}
			resp.Body = tb
			mu.Lock()
			bodies[n] = tb
			mu.Unlock()
			return resp, nil
		})
		hedge, err := jidoka.NewHedge(jidoka.HedgeOptions{Delay: 100 * time.Millisecond})
		require.NoError(t, err)
		c := client(t, nil, taihttp.TransportOptions{Base: base, Hedge: hedge})
		start := time.Now()
		resp, err := c.Get("http://example.test/")
		require.NoError(t, err)
		assert.Equal(t, 300*time.Millisecond, time.Since(start), "the hedge waits for the copy it cancelled")
		assert.Equal(t, 2, calls())
		assert.ErrorIs(t, loserCtx.Err(), context.Canceled, "the losing copy was cancelled when the hedge won")
		mu.Lock()
		assert.True(t, bodies[1].closed.Load(), "the loser's response is closed")
		assert.False(t, bodies[2].closed.Load(), "the winner's is the caller's")
		mu.Unlock()
		assert.Equal(t, "copy 2", readAll(t, resp))
	})
}

// requestSnapshot is what a RoundTripper must leave as it found in the
// request it is given.
type requestSnapshot struct {
	method, url, host string
	header, trailer   http.Header
	headerMap         uintptr
	body              io.ReadCloser
	getBody           uintptr
	contentLength     int64
	ctx               context.Context
	close             bool
}

func snapshot(r *http.Request) requestSnapshot {
	return requestSnapshot{method: r.Method, url: r.URL.String(), host: r.Host,
		header: r.Header.Clone(), trailer: r.Trailer.Clone(), headerMap: reflect.ValueOf(r.Header).Pointer(),
		body: r.Body, getBody: reflect.ValueOf(r.GetBody).Pointer(), contentLength: r.ContentLength,
		ctx: r.Context(), close: r.Close}
}

// net/http's contract: a RoundTripper does not modify the request it is
// given (it may close its body). Through retries, hedges and attempt
// timeouts, each attempt is sent as a copy, with a context and a body of
// its own; the caller's request keeps its URL, header map and values,
// body, GetBody and context, and it is the response's Request.
func TestPeerTransportLeavesTheRequestAsGiven(t *testing.T) {
	hedge, err := jidoka.NewHedge(jidoka.HedgeOptions{Delay: 50 * time.Millisecond})
	require.NoError(t, err)
	for _, tc := range []struct {
		name string
		opts taihttp.TransportOptions
	}{
		{"retry", taihttp.TransportOptions{Retry: newRetry(t, jidoka.RetryOptions{MaxAttempts: 3}), AttemptTimeout: time.Minute}},
		{"hedge", taihttp.TransportOptions{Hedge: hedge}},
		{"retry and hedge", taihttp.TransportOptions{Retry: newRetry(t, jidoka.RetryOptions{MaxAttempts: 3}), Hedge: hedge,
			AttemptTimeout: time.Minute}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			first := 1 // the first attempt that does not fail on its status
			if tc.opts.Retry != nil {
				first = 2
			}
			srv := newServer(t, func(n int, w http.ResponseWriter, r *http.Request) {
				switch {
				case n < first:
					http.Error(w, "busy", http.StatusServiceUnavailable)
				case n == first && tc.opts.Hedge != nil:
					waitCancel(r) // a slow copy, which a hedge overtakes
				default:
					w.Header().Set("Trailer", "X-Done")
					_, _ = io.WriteString(w, "stored")
					w.Header().Set("X-Done", "yes")
				}
			})
			opts := tc.opts
			opts.Base = srv.Client().Transport
			c := client(t, nil, opts)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			req, err := http.NewRequestWithContext(ctx, http.MethodPut, srv.URL+"/items/1?v=2", strings.NewReader("the payload"))
			require.NoError(t, err)
			req.Header.Set("X-Request-Id", "r-1")
			req.Header.Add("Accept", "text/plain")
			req.Trailer = http.Header{"X-Sum": {"abc"}}
			before := snapshot(req)
			resp, err := c.Transport.RoundTrip(req)
			require.NoError(t, err)
			assert.Equal(t, "stored", readAll(t, resp))
			assert.Equal(t, "yes", resp.Trailer.Get("X-Done"))
			sends := first
			if tc.opts.Hedge != nil {
				sends++ // the hedge that overtook the slow copy
			}
			assert.EqualValues(t, sends, srv.hits.Load())
			assert.Equal(t, before, snapshot(req), "the caller's request is unchanged")
			assert.True(t, resp.Request == req)
			assert.NoError(t, req.Context().Err())
		})
	}
}

// When every attempt fails on its status, the last response is returned
// as the server sent it: its status, header and body, read into memory
// up to 64 KiB while the attempt's timeout bounded it, so it stays
// readable after that timeout has passed; a longer one reads whole from
// its connection. failsafehttp's ReturnLastFailure returns the last
// response too, with its body as the transport left it.
func TestPeerTransportReturnsTheLastResponseReadable(t *testing.T) {
	for _, size := range []int{10, 64 << 10, 100 << 10} {
		t.Run(strconv.Itoa(size), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				var bodies []*trackedBody
				base, calls := numbered(func(n int, r *http.Request) (*http.Response, error) {
					resp := response(r, http.StatusTooManyRequests, http.Header{"X-Attempt": {strconv.Itoa(n)}},
						strings.Repeat(strconv.Itoa(n), size))
					tb := &trackedBody{ReadCloser: resp.Body}
					resp.Body = tb
					bodies = append(bodies, tb)
					return resp, nil
				})
				c := client(t, nil, taihttp.TransportOptions{Base: base, AttemptTimeout: time.Second,
					Retry: newRetry(t, jidoka.RetryOptions{MaxAttempts: 3})})
				resp, err := c.Get("http://example.test/")
				require.NoError(t, err)
				assert.Equal(t, 3, calls())
				assert.Equal(t, http.StatusTooManyRequests, resp.StatusCode)
				assert.Equal(t, "3", resp.Header.Get("X-Attempt"))
				time.Sleep(time.Minute) // long past the attempt's timeout
				assert.Equal(t, strings.Repeat("3", size), readAll(t, resp))
				for _, b := range bodies {
					assert.True(t, b.closed.Load())
				}
			})
		})
	}
}

// An open breaker refuses every attempt without sending it. A Retry
// around it waits for the breaker only when the open period's end is
// within the Retry's MaxRetryAfter, and otherwise ends at once with the
// breaker's error (failsafehttp's retries call the open breaker
// MaxRetries times). A breaker forced open knows no end: its refusals are
// retried on the Retry's backoff, and none is sent.
func TestPeerTransportOpenBreakerWithRetries(t *testing.T) {
	for _, tc := range []struct {
		name    string
		open    func(b *jidoka.Breaker)
		elapsed time.Duration
	}{
		{"tripped for a minute", func(b *jidoka.Breaker) { b.Trip("errors") }, 0},
		{"forced open", func(b *jidoka.Breaker) { b.ForceOpen("maintenance") }, 300 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				b, err := jidoka.NewBreaker(jidoka.BreakerOptions{OpenDuration: time.Minute})
				require.NoError(t, err)
				tc.open(b)
				base, calls := numbered(func(_ int, r *http.Request) (*http.Response, error) {
					return response(r, http.StatusOK, nil, "ok"), nil
				})
				c := client(t, nil, taihttp.TransportOptions{Base: base, Breaker: b, Retry: noJitterRetry(t, 3)})
				start := time.Now()
				_, err = c.Get("http://example.test/")
				require.ErrorIs(t, err, jidoka.ErrOpen)
				assert.Equal(t, tc.elapsed, time.Since(start), "backoffs of 100 and 200 ms")
				assert.Zero(t, calls())
			})
		})
	}
}

// A URL whose scheme an *http.Transport has no protocol for ("rstp", a
// typo for "https") fails the same way each time, before anything is
// sent: it is not retried, and the breaker does not count it, which would
// otherwise open for every request of the client (failsafehttp's retry
// policy also leaves it alone). Its error is the Transport's own.
func TestPeerTransportUnsupportedSchemeIsNotRetried(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b, err := jidoka.NewBreaker(jidoka.BreakerOptions{ConsecutiveFailures: 1, OpenDuration: time.Minute})
		require.NoError(t, err)
		base := &http.Transport{}
		c := client(t, nil, taihttp.TransportOptions{Base: base, Breaker: b,
			Retry: newRetry(t, jidoka.RetryOptions{MaxAttempts: 3, BaseDelay: time.Second})})
		start := time.Now()
		for range 3 {
			_, err = c.Get("rstp://example.test/")
			require.ErrorContains(t, err, `unsupported protocol scheme "rstp"`)
			assert.NotErrorIs(t, err, jidoka.ErrOpen)
		}
		assert.Zero(t, time.Since(start), "no retry waited")
		assert.Equal(t, jidoka.StateClosed, b.State(), "the breaker counted none of them")
		var ue *url.Error
		require.ErrorAs(t, err, &ue)
		assert.Equal(t, "rstp://example.test/", ue.URL)

		// A protocol registered with the Transport is a server's to
		// answer: its failures are retried and counted as any other.
		var sent atomic.Int32
		base.RegisterProtocol("rstp", roundTripFunc(func(*http.Request) (*http.Response, error) {
			sent.Add(1)
			return nil, errors.New("connection refused")
		}))
		b2, err := jidoka.NewBreaker(jidoka.BreakerOptions{ConsecutiveFailures: 2, OpenDuration: time.Minute})
		require.NoError(t, err)
		c = client(t, nil, taihttp.TransportOptions{Base: base, Breaker: b2,
			Retry: newRetry(t, jidoka.RetryOptions{MaxAttempts: 2, BaseDelay: time.Second, Jitter: func(d time.Duration) time.Duration { return d }})})
		_, err = c.Get("rstp://example.test/")
		require.ErrorContains(t, err, "connection refused")
		assert.EqualValues(t, 2, sent.Load())
		assert.Equal(t, jidoka.StateOpen, b2.State())
	})
}
