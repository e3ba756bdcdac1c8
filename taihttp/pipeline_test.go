package taihttp_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"net/textproto"
	"runtime"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/heijunka"
	"github.com/taipattern/taikit/jidoka"
	"github.com/taipattern/taikit/tai"
	"github.com/taipattern/taikit/taihttp"
)

// byRole denies requests of role "banned" and asks review for "new".
var byRole = tai.PolicyFunc[*http.Request](func(_ context.Context, s tai.Signal[*http.Request]) (tai.Decision, error) {
	switch s.Payload.Header.Get("X-Role") {
	case "banned":
		return tai.Decision{Verdict: tai.Deny, Policy: "role", Reason: "account 7 banned by fraud rule 12"}, nil
	case "new":
		return tai.Decision{Verdict: tai.Review, Policy: "role"}, nil
	case "broken":
		return tai.Decision{}, errors.New("role service at 10.1.2.3 timed out")
	}
	return tai.Decision{Verdict: tai.Allow, Policy: "role"}, nil
})

// records collects what a pipeline's observer sees.
type records struct {
	mu   sync.Mutex
	list []tai.Record
}

func (rs *records) Observe(_ context.Context, r tai.Record) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	rs.list = append(rs.list, r)
}

func (rs *records) last() tai.Record {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	return rs.list[len(rs.list)-1]
}

func pipelineMW(t *testing.T, p tai.Policy[*http.Request], opts taihttp.PipelineOptions, hooks ...tai.Option) taihttp.Middleware {
	t.Helper()
	mw, err := taihttp.Pipeline(p, opts, hooks...)
	require.NoError(t, err)
	return mw
}

func withRole(role string) *http.Request {
	r := get("192.0.2.1:1")
	r.Header.Set("X-Role", role)
	return r
}

func TestPipelineOutcomes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		obs := &records{}
		var refused []error
		k := keyed(t, heijunka.PerMinute(3), heijunka.KeyedOptions{Name: "per-client"})
		line, err := jidoka.NewLine(jidoka.LineOptions{Name: "api", RetryAfter: 20 * time.Second})
		require.NoError(t, err)
		h := pipelineMW(t, byRole, taihttp.PipelineOptions{
			Kind:    "api",
			ID:      func(r *http.Request) string { return r.Header.Get("X-Request-Id") },
			OnError: func(_ *http.Request, err error) { refused = append(refused, err) },
		}, tai.WithGates(k, line), tai.WithObservers(obs))(ok)

		r := withRole("user")
		r.Header.Set("X-Request-Id", "req-1")
		rec := serve(h, r)
		assert.Equal(t, http.StatusOK, rec.Code)
		assert.Equal(t, "ok", rec.Body.String())
		rec1 := obs.last()
		assert.Equal(t, tai.Succeeded, rec1.Outcome)
		assert.Equal(t, "req-1", rec1.ID)
		assert.Equal(t, "api", rec1.Kind)
		assert.Equal(t, "192.0.2.1", rec1.Key)

		// Denied: 403, and the policy's reason goes to OnError, not out.
		rec = serve(h, withRole("banned"))
		assert.Equal(t, http.StatusForbidden, rec.Code)
		assert.Contains(t, rec.Body.String(), `"code":"denied"`)
		assert.NotContains(t, rec.Body.String(), "fraud")
		assert.Equal(t, tai.Denied, obs.last().Outcome)
		assert.NotEqual(t, "", obs.last().ID, "a request without an ID header gets one")
		var de *tai.DeniedError
		require.ErrorAs(t, refused[len(refused)-1], &de)
		assert.Equal(t, "account 7 banned by fraud rule 12", de.Decision.Reason)

		// Review lets the request through, unless held.
		assert.Equal(t, http.StatusOK, serve(h, withRole("new")).Code)

		// Rejected by the rate limit: 429 with the limiter's fields.
		rec = serve(h, withRole("user"))
		assert.Equal(t, http.StatusTooManyRequests, rec.Code)
		assert.Equal(t, "20", rec.Header().Get("Retry-After"))
		assert.Equal(t, `"per-client";r=0;t=20`, rec.Header().Get("RateLimit"))
		assert.Equal(t, `"per-client";q=3;w=60`, rec.Header().Get("RateLimit-Policy"))
		assert.Equal(t, tai.Rejected, obs.last().Outcome)

		// Rejected by a stopped line: 503 with the line's hint.
		line.Stop("deploy")
		rec = serve(h, get("192.0.2.2:1"))
		assert.Equal(t, http.StatusServiceUnavailable, rec.Code)
		assert.Equal(t, "20", rec.Header().Get("Retry-After"))
		assert.Contains(t, rec.Body.String(), `"code":"line_stopped"`)
		line.Start()

		// A policy that fails: 500, nothing of the error shown.
		r = withRole("broken")
		r.RemoteAddr = "192.0.2.3:1"
		rec = serve(h, r)
		assert.Equal(t, http.StatusInternalServerError, rec.Code)
		assert.NotContains(t, rec.Body.String(), "10.1.2.3")
		assert.Equal(t, tai.Failed, obs.last().Outcome)
		var pe *tai.PolicyError
		assert.ErrorAs(t, refused[len(refused)-1], &pe)
	})
}

func TestPipelineDeniedStatusAndHold(t *testing.T) {
	h := pipelineMW(t, byRole, taihttp.PipelineOptions{DeniedStatus: http.StatusPaymentRequired, Errors: taihttp.PlainErrors},
		tai.WithHoldOnReview())(ok)
	rec := serve(h, withRole("banned"))
	assert.Equal(t, http.StatusPaymentRequired, rec.Code)
	assert.Equal(t, "the request was denied\n", rec.Body.String())
	assert.Equal(t, http.StatusPaymentRequired, serve(h, withRole("new")).Code, "held for review")

	// No policy: only the hooks decide.
	h = pipelineMW(t, nil, taihttp.PipelineOptions{})(ok)
	assert.Equal(t, http.StatusOK, serve(h, withRole("banned")).Code)
}

// A handler's 5xx responses fail the action: a breaker around it counts
// them, opens, and then the middleware answers 503 without calling the
// handler.
func TestPipelineBreakerOpensOn5xx(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b, err := jidoka.NewBreaker(jidoka.BreakerOptions{Name: "backend", ConsecutiveFailures: 2, OpenDuration: 10 * time.Second})
		require.NoError(t, err)
		obs := &records{}
		calls := 0
		failing := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			calls++
			http.Error(w, "backend down", http.StatusBadGateway)
		})
		h := pipelineMW(t, nil, taihttp.PipelineOptions{}, tai.WithGuards(b), tai.WithObservers(obs))(failing)
		for range 2 {
			rec := serve(h, get("192.0.2.1:1"))
			assert.Equal(t, http.StatusBadGateway, rec.Code, "the handler's own response stands")
			assert.Equal(t, "backend down\n", rec.Body.String())
			assert.Equal(t, tai.Failed, obs.last().Outcome)
			var se *taihttp.StatusError
			require.ErrorAs(t, obs.last().Err, &se)
			assert.Equal(t, http.StatusBadGateway, se.Status)
		}
		assert.Equal(t, jidoka.StateOpen, b.State())
		rec := serve(h, get("192.0.2.1:1"))
		assert.Equal(t, http.StatusServiceUnavailable, rec.Code)
		assert.Equal(t, "10", rec.Header().Get("Retry-After"), "the rest of the open period")
		assert.Contains(t, rec.Body.String(), `"code":"breaker_open"`)
		assert.Equal(t, 2, calls, "an open breaker keeps requests from the handler")

		// Statuses counted as failures are configurable.
		b2, err := jidoka.NewBreaker(jidoka.BreakerOptions{ConsecutiveFailures: 1})
		require.NoError(t, err)
		notFound := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { http.NotFound(w, r) })
		h = pipelineMW(t, nil, taihttp.PipelineOptions{IsFailure: func(s int) bool { return s == http.StatusNotFound }},
			tai.WithGuards(b2))(notFound)
		assert.Equal(t, http.StatusNotFound, serve(h, get("192.0.2.1:1")).Code)
		assert.Equal(t, http.StatusServiceUnavailable, serve(h, get("192.0.2.1:1")).Code)
	})
}

func TestPipelineGuardContext(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		deadline := tai.GuardFunc(func(ctx context.Context, fn func(context.Context) error) error {
			ctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
			defer cancel()
			return fn(ctx)
		})
		slow := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, ok := r.Context().Deadline()
			if !ok {
				http.Error(w, "no deadline", http.StatusTeapot)
				return
			}
			<-r.Context().Done() // gives up when the guard's deadline passes, writing nothing
		})
		var got error
		h := pipelineMW(t, nil, taihttp.PipelineOptions{OnError: func(_ *http.Request, err error) { got = err }},
			tai.WithGuards(deadline))(slow)
		rec := serve(h, get("192.0.2.1:1"))
		// The handler wrote nothing and its context ended: the deadline
		// failed the request.
		assert.Equal(t, http.StatusGatewayTimeout, rec.Code)
		assert.Contains(t, rec.Body.String(), `"code":"timeout"`)
		assert.ErrorIs(t, got, context.DeadlineExceeded)

		timeoutAware := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			<-r.Context().Done()
			http.Error(w, "timeout", http.StatusGatewayTimeout)
		})
		h = pipelineMW(t, nil, taihttp.PipelineOptions{OnError: func(_ *http.Request, err error) { got = err }},
			tai.WithGuards(deadline))(timeoutAware)
		rec = serve(h, get("192.0.2.1:1"))
		assert.Equal(t, http.StatusGatewayTimeout, rec.Code)
		var se *taihttp.StatusError
		assert.ErrorAs(t, got, &se)
	})
}

func TestPipelinePanics(t *testing.T) {
	var got error
	opts := taihttp.PipelineOptions{OnError: func(_ *http.Request, err error) { got = err }}
	early := http.HandlerFunc(func(http.ResponseWriter, *http.Request) { panic("nil map in handler") })
	rec := serve(pipelineMW(t, nil, opts)(early), get("192.0.2.1:1"))
	assert.Equal(t, http.StatusInternalServerError, rec.Code)
	assert.NotContains(t, rec.Body.String(), "nil map")
	var pe *tai.PanicError
	require.ErrorAs(t, got, &pe)
	assert.Equal(t, "nil map in handler", pe.Value)

	// A panic after the response began cuts the response off, over a real
	// connection: the client sees a truncated body, not a 500 appended.
	late := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "partial")
		http.NewResponseController(w).Flush()
		panic("late")
	})
	srv := httptest.NewServer(pipelineMW(t, nil, opts)(late))
	defer srv.Close()
	resp, err := srv.Client().Get(srv.URL)
	require.NoError(t, err)
	body, err := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, "partial", string(body))
	assert.ErrorIs(t, err, io.ErrUnexpectedEOF, "the response is aborted")
}

// A handler that panics in WriteHeader, as net/http's does at a code
// outside 100–999, has written nothing: it gets the 500 of a handler that
// panicked before it answered, not a connection cut off.
func TestPipelineHandlerWithAnInvalidStatus(t *testing.T) {
	var got error
	opts := taihttp.PipelineOptions{OnError: func(_ *http.Request, err error) { got = err }}
	srv := httptest.NewServer(pipelineMW(t, nil, opts)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(1000)
	})))
	defer srv.Close()
	resp, err := srv.Client().Get(srv.URL)
	require.NoError(t, err)
	body, err := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	require.NoError(t, err)
	assert.Equal(t, http.StatusInternalServerError, resp.StatusCode)
	assert.Contains(t, string(body), `"code":"failed"`)
	var pe *tai.PanicError
	require.ErrorAs(t, got, &pe)
	assert.Contains(t, fmt.Sprint(pe.Value), "invalid WriteHeader code 1000")
}

func TestPipelineFlushes(t *testing.T) {
	// The wrapped writer passes Flush on through http.ResponseController.
	h := pipelineMW(t, nil, taihttp.PipelineOptions{})(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "a")
		require.NoError(t, http.NewResponseController(w).Flush())
	}))
	rec := serve(h, get("192.0.2.1:1"))
	assert.True(t, rec.Flushed)
}

func TestPipelineValidation(t *testing.T) {
	_, err := taihttp.Pipeline(nil, taihttp.PipelineOptions{DeniedStatus: 200})
	assert.ErrorContains(t, err, "DeniedStatus must be 400–499, got 200")
	_, err = taihttp.Pipeline(nil, taihttp.PipelineOptions{RetryAfter: -time.Second})
	assert.ErrorContains(t, err, "taihttp.Pipeline: RetryAfter must not be negative")
	_, err = taihttp.Pipeline(nil, taihttp.PipelineOptions{}, tai.WithGates(nil))
	assert.ErrorContains(t, err, "taihttp.Pipeline: tai.New: gate 0 is nil")
}

// A retry around the handler cannot run it twice: the handler has
// answered the client.
func TestPipelineRunsTheHandlerOnce(t *testing.T) {
	retry, err := jidoka.NewRetry(jidoka.RetryOptions{MaxAttempts: 3, BaseDelay: time.Millisecond})
	require.NoError(t, err)
	calls := 0
	var got error
	h := pipelineMW(t, nil, taihttp.PipelineOptions{OnError: func(_ *http.Request, err error) { got = err }},
		tai.WithGuards(retry))(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls++
		http.Error(w, "upstream down", http.StatusBadGateway)
	}))
	rec := serve(h, get("192.0.2.1:1"))
	assert.Equal(t, 1, calls)
	assert.Equal(t, http.StatusBadGateway, rec.Code)
	assert.Equal(t, "upstream down\n", rec.Body.String(), "one answer, the handler's")
	assert.ErrorIs(t, got, jidoka.ErrPermanent)
	assert.ErrorContains(t, got, "a guard called the handler a second time")
}

// A retry around a deadline: the handler gives up writing nothing as its
// deadline passes, and the retry is refused. The client gets the 504 of a
// handler whose context ended, and OnError the deadline's error besides
// the refusal; the refusal alone answered 500, as a handler's failure.
func TestPipelineRunsTheHandlerOnceAfterItsDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		retry, err := jidoka.NewRetry(jidoka.RetryOptions{MaxAttempts: 3, BaseDelay: time.Millisecond})
		require.NoError(t, err)
		timeout, err := jidoka.NewTimeout(jidoka.TimeoutOptions{Duration: 50 * time.Millisecond})
		require.NoError(t, err)
		calls := 0
		var got error
		h := pipelineMW(t, nil, taihttp.PipelineOptions{OnError: func(_ *http.Request, err error) { got = err }},
			tai.WithGuards(retry, timeout))(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			calls++
			<-r.Context().Done()
		}))
		rec := serve(h, get("192.0.2.1:1"))
		assert.Equal(t, 1, calls)
		assert.Equal(t, http.StatusGatewayTimeout, rec.Code)
		assert.Contains(t, rec.Body.String(), `"code":"timeout"`)
		assert.ErrorIs(t, got, context.DeadlineExceeded)
		assert.ErrorIs(t, got, jidoka.ErrPermanent)
		assert.ErrorContains(t, got, "a guard called the handler a second time")
		assert.Equal(t, 1, strings.Count(got.Error(), context.DeadlineExceeded.Error()), "%q", got)
	})
}

// A retry whose RetryOn accepts the handler's failure (a deadline, a 503)
// but not the refusal of a second call stops at that refusal: it does not
// wait out its backoff for every attempt, nor spend its budget, on calls
// that cannot run the handler again. The client still gets the first
// call's answer, and OnError its error besides the refusal.
func TestPipelineRetryOnTheHandlersFailureStopsAtTheRefusal(t *testing.T) {
	for _, tc := range []struct {
		name    string
		handler http.HandlerFunc
		retryOn func(error) bool
		status  int
		want    error
	}{
		{"deadline", func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() },
			func(err error) bool { return errors.Is(err, context.DeadlineExceeded) },
			http.StatusGatewayTimeout, context.DeadlineExceeded},
		{"status", func(w http.ResponseWriter, r *http.Request) { http.Error(w, "busy", http.StatusServiceUnavailable) },
			func(err error) bool {
				var se *taihttp.StatusError
				return errors.As(err, &se) && se.Status == http.StatusServiceUnavailable
			},
			http.StatusServiceUnavailable, &taihttp.StatusError{Status: http.StatusServiceUnavailable}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				retry, err := jidoka.NewRetry(jidoka.RetryOptions{MaxAttempts: 5, BaseDelay: time.Second,
					RetryOn: tc.retryOn, Jitter: func(d time.Duration) time.Duration { return d }})
				require.NoError(t, err)
				timeout, err := jidoka.NewTimeout(jidoka.TimeoutOptions{Duration: 50 * time.Millisecond})
				require.NoError(t, err)
				attempts := 0
				count := tai.GuardFunc(func(ctx context.Context, fn func(context.Context) error) error {
					attempts++
					return fn(ctx)
				})
				calls := 0
				var got error
				h := pipelineMW(t, nil, taihttp.PipelineOptions{OnError: func(_ *http.Request, err error) { got = err }},
					tai.WithGuards(retry, count, timeout))(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					calls++
					tc.handler(w, r)
				}))
				rec := serve(h, get("192.0.2.1:1"))
				assert.Equal(t, 1, calls)
				assert.Equal(t, 2, attempts, "the refusal of the second call ends the retries")
				assert.Equal(t, tc.status, rec.Code)
				assert.ErrorIs(t, got, jidoka.ErrPermanent)
				if se, ok := tc.want.(*taihttp.StatusError); ok {
					var gotSE *taihttp.StatusError
					require.ErrorAs(t, got, &gotSE)
					assert.Equal(t, se.Status, gotSE.Status)
				} else {
					assert.ErrorIs(t, got, tc.want)
				}
			})
		})
	}
}

// strictWriter counts the WriteHeader calls made after its header was
// sent, which net/http logs as superfluous.
type strictWriter struct {
	*httptest.ResponseRecorder
	sent bool
	late int
}

func (w *strictWriter) WriteHeader(code int) {
	if w.sent {
		w.late++
		return
	}
	w.sent = true
	w.ResponseRecorder.WriteHeader(code)
}

func (w *strictWriter) Write(b []byte) (int, error) {
	w.sent = true
	return w.ResponseRecorder.Write(b)
}

func (w *strictWriter) Flush() {
	w.sent = true
	w.ResponseRecorder.Flush()
}

// A handler that begins its response with a flush (a stream of server-sent
// events, say) has answered: it succeeds, and nothing is written after it,
// also when the client goes away as such a stream ends.
func TestPipelineHandlerThatFlushesFirst(t *testing.T) {
	for _, gone := range []bool{false, true} {
		var rs records
		var errs []error
		ctx, cancel := context.WithCancel(context.Background())
		h := pipelineMW(t, nil, taihttp.PipelineOptions{OnError: func(_ *http.Request, err error) { errs = append(errs, err) }},
			tai.WithObservers(&rs))(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/event-stream")
			require.NoError(t, http.NewResponseController(w).Flush())
			if gone { // the client goes away
				cancel()
				<-r.Context().Done()
			}
		}))
		w := &strictWriter{ResponseRecorder: httptest.NewRecorder()}
		h.ServeHTTP(w, get("192.0.2.1:1").WithContext(ctx))
		cancel()
		assert.Equal(t, http.StatusOK, w.Code)
		assert.True(t, w.Flushed)
		assert.Zero(t, w.late, "no WriteHeader after the flush sent the header")
		assert.Equal(t, "text/event-stream", w.Header().Get("Content-Type"))
		assert.Empty(t, w.Body.String())
		assert.Empty(t, errs)
		assert.Equal(t, tai.Succeeded, rs.last().Outcome)
	}
}

// syncBuffer is a bytes.Buffer for a server's error log.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// A handler that takes over the connection answers on it: the pipeline
// writes nothing more, which net/http would log as a misuse.
func TestPipelineHandlerThatHijacks(t *testing.T) {
	// The server does not wait for a hijacked connection's handler: the
	// observer tells when the pipeline is done.
	finished := make(chan tai.Record, 1)
	observe := tai.ObserverFunc(func(_ context.Context, r tai.Record) { finished <- r })
	h := pipelineMW(t, nil, taihttp.PipelineOptions{}, tai.WithObservers(observe))(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, rw, err := http.NewResponseController(w).Hijack()
		if !assert.NoError(t, err) {
			return
		}
		defer conn.Close()
		_, _ = rw.WriteString("HTTP/1.1 200 OK\r\nContent-Length: 8\r\nConnection: close\r\n\r\nhijacked")
		_ = rw.Flush()
	}))
	var logged syncBuffer
	srv := httptest.NewUnstartedServer(h)
	srv.Config.ErrorLog = log.New(&logged, "", 0)
	srv.Start()
	resp, err := srv.Client().Get(srv.URL)
	require.NoError(t, err)
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.NoError(t, resp.Body.Close())
	rec := <-finished
	srv.Close()
	assert.Equal(t, "hijacked", string(body))
	assert.Empty(t, logged.String())
	assert.Equal(t, tai.Succeeded, rec.Outcome)
}

// readFromRecorder is a ResponseRecorder with a ReadFrom method, as
// net/http's ResponseWriter has one (it sends a file with sendfile).
type readFromRecorder struct {
	*httptest.ResponseRecorder
	readFrom int // calls of ReadFrom
}

func (w *readFromRecorder) ReadFrom(src io.Reader) (int64, error) {
	w.readFrom++
	return io.Copy(w.ResponseRecorder, src)
}

// A handler's io.Copy to its ResponseWriter reaches the server's own
// ReadFrom, as it does without the middleware, and the status is noted:
// a copy that wrote something answered 200, one that wrote nothing did
// not answer yet.
func TestPipelineReadFrom(t *testing.T) {
	for _, body := range []string{"a file", ""} {
		var rs records
		h := pipelineMW(t, nil, taihttp.PipelineOptions{}, tai.WithObservers(&rs))(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			src := struct{ io.Reader }{strings.NewReader(body)} // no WriteTo: io.Copy asks w
			_, err := io.Copy(w, src)
			require.NoError(t, err)
			if body == "" {
				http.Error(w, "nothing to send", http.StatusBadGateway)
			}
		}))
		w := &readFromRecorder{ResponseRecorder: httptest.NewRecorder()}
		h.ServeHTTP(w, get("192.0.2.1:1"))
		assert.Equal(t, 1, w.readFrom, "the server's ReadFrom sends the body")
		if body == "" {
			assert.Equal(t, http.StatusBadGateway, w.Code)
			assert.Equal(t, tai.Failed, rs.last().Outcome)
			continue
		}
		assert.Equal(t, http.StatusOK, w.Code)
		assert.Equal(t, body, w.Body.String())
		assert.Equal(t, tai.Succeeded, rs.last().Outcome)
	}
}

func TestPipelineFlusher(t *testing.T) {
	// A handler that streams asks its writer for http.Flusher, as most
	// do: the wrapped writer is one, and its Flush reaches the client.
	h := pipelineMW(t, nil, taihttp.PipelineOptions{})(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "a")
		f, ok := w.(http.Flusher)
		require.True(t, ok, "the writer is an http.Flusher")
		f.Flush()
	}))
	rec := serve(h, get("192.0.2.1:1"))
	assert.True(t, rec.Flushed)
	assert.Equal(t, "a", rec.Body.String())
}

func TestPipelineAbortHandler(t *testing.T) {
	// A handler that panics with http.ErrAbortHandler before it wrote
	// anything aborts the response, as net/http does without the
	// middleware: the panic goes on, and no 500 is written.
	var got error
	opts := taihttp.PipelineOptions{OnError: func(_ *http.Request, err error) { got = err }}
	h := pipelineMW(t, nil, opts)(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {
		panic(http.ErrAbortHandler)
	}))
	rec := httptest.NewRecorder()
	assert.PanicsWithValue(t, http.ErrAbortHandler, func() { h.ServeHTTP(rec, get("192.0.2.1:1")) })
	assert.False(t, rec.Flushed)
	assert.Empty(t, rec.Body.String(), "no 500 is written")
	assert.Empty(t, rec.Header().Get("Content-Type"))
	assert.ErrorIs(t, got, http.ErrAbortHandler)
}

// A 101 Switching Protocols is a handler's final answer in net/http over
// HTTP/1, as any status of 200 or more: nothing is written after it, and
// a handler whose context ends after it has answered all the same.
func TestPipelineHandlerThatSwitchesProtocols(t *testing.T) {
	for _, gone := range []bool{false, true} {
		var rs records
		var errs []error
		ctx, cancel := context.WithCancel(context.Background())
		h := pipelineMW(t, nil, taihttp.PipelineOptions{OnError: func(_ *http.Request, err error) { errs = append(errs, err) }},
			tai.WithObservers(&rs))(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Upgrade", "example/1")
			w.WriteHeader(http.StatusSwitchingProtocols)
			if gone {
				cancel()
				<-r.Context().Done()
			}
		}))
		w := &strictWriter{ResponseRecorder: httptest.NewRecorder()}
		h.ServeHTTP(w, get("192.0.2.1:1").WithContext(ctx))
		cancel()
		assert.Equal(t, http.StatusSwitchingProtocols, w.Code)
		assert.Zero(t, w.late, "no WriteHeader after the 101")
		assert.Empty(t, w.Body.String())
		assert.Empty(t, errs)
		assert.Equal(t, tai.Succeeded, rs.last().Outcome)
	}
}

// A handler that set up the header of the body it meant to send, then
// panicked before it wrote, is answered with a problem whose own length
// is sent: the Content-Length it set, for another body, would cut the
// problem short over a real connection, as http.Error knows.
func TestPipelineProblemDropsTheHandlersContentLength(t *testing.T) {
	for _, errs := range []taihttp.ErrorWriter{taihttp.JSONErrors, taihttp.PlainErrors} {
		h := pipelineMW(t, nil, taihttp.PipelineOptions{Errors: errs})(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", "2")
			panic("failed before the body")
		}))
		srv := httptest.NewServer(h)
		resp, err := srv.Client().Get(srv.URL)
		require.NoError(t, err)
		body, err := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		srv.Close()
		require.NoError(t, err)
		assert.Equal(t, http.StatusInternalServerError, resp.StatusCode)
		assert.Contains(t, string(body), "the request failed", "the whole problem, not its first bytes")
	}
}

// A guard that gives up waiting for the handler and returns while it
// still runs (a timeout written as a goroutine and a select, against
// tai.Guard's contract): the pipeline fails the signal with
// tai.ErrAbandoned, but the handler holds the ResponseWriter, which must
// not be used after ServeHTTP returned, nor by two goroutines at once.
// The middleware waits for the handler before it answers, answers as the
// handler's call decides (504 for a handler that wrote nothing as its
// deadline passed, the handler's own response when it wrote one), and
// refuses a call the guard makes later.
func TestPipelineWaitsForAHandlerAGuardAbandoned(t *testing.T) {
	for _, tc := range []struct {
		name   string
		write  bool
		status int
	}{
		{"wrote nothing", false, http.StatusGatewayTimeout},
		{"wrote", true, http.StatusTeapot},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				started, release := make(chan struct{}), make(chan struct{})
				var late chan error
				abandon := abandoning(func(ctx context.Context, fn func(context.Context) error, done <-chan error) {
					// Calls fn again once the signal has ended, as a
					// guard that abandons may.
					late = make(chan error, 1)
					go func() {
						<-done
						late <- fn(ctx)
					}()
				})
				calls := 0
				var got error
				h := pipelineMW(t, nil, taihttp.PipelineOptions{OnError: func(_ *http.Request, err error) { got = err }},
					tai.WithGuards(abandon))(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					calls++
					if calls == 1 {
						close(started)
					}
					<-r.Context().Done()
					<-release
					if tc.write {
						w.WriteHeader(http.StatusTeapot)
					}
				}))
				rec := httptest.NewRecorder()
				served := make(chan struct{})
				go func() {
					defer close(served)
					h.ServeHTTP(rec, get("192.0.2.1:1"))
				}()
				<-started
				time.Sleep(2 * time.Second) // the guard's deadline passes: it gives up
				synctest.Wait()
				select {
				case <-served:
					t.Error("ServeHTTP returned while the handler still ran")
				default:
				}
				close(release)
				<-served
				require.NotNil(t, late)
				assert.ErrorContains(t, <-late, "a guard called the handler a second time")
				assert.Equal(t, 1, calls)
				assert.Equal(t, tc.status, rec.Code)
				assert.ErrorIs(t, got, tai.ErrAbandoned)
				if !tc.write {
					assert.ErrorIs(t, got, context.DeadlineExceeded)
					// The guard's error is the deadline the handler's
					// call failed with: the message says it once.
					assert.Equal(t, 1, strings.Count(got.Error(), context.DeadlineExceeded.Error()), "%q", got)
				}
			})
		})
	}
}

// A handler a guard abandoned that then panics is answered as a handler
// that panics under no such guard: a response it began is cut off
// (http.ErrAbortHandler), not ended as if complete; a panic with
// http.ErrAbortHandler before it began aborts as well; another panic
// before it began is answered 500. The pipeline discards the late call's
// result, so the middleware learns of the panic from the handler's call.
func TestPipelineAbandonedHandlerThatPanics(t *testing.T) {
	for _, tc := range []struct {
		name  string
		write bool
		value any
		abort bool // ServeHTTP panics with http.ErrAbortHandler
	}{
		{"after it began", true, "boom", true},
		{"with ErrAbortHandler before it began", false, http.ErrAbortHandler, true},
		{"before it began", false, "boom", false},
		{"by runtime.Goexit after it began", true, nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				release := make(chan struct{})
				abandon := abandoning(func(context.Context, func(context.Context) error, <-chan error) { close(release) })
				var got error
				h := pipelineMW(t, nil, taihttp.PipelineOptions{OnError: func(_ *http.Request, err error) { got = err }},
					tai.WithGuards(abandon))(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					<-release
					// Go on once the guard has returned and the middleware
					// waits for this call: ended first, the call would not
					// be abandoned (see
					// TestPipelineHandlerPanicBehindAGuardsOwnError).
					synctest.Wait()
					if tc.write {
						w.Header().Set("Content-Length", "10")
						w.WriteHeader(http.StatusOK)
						_, _ = w.Write([]byte("part"))
					}
					if tc.value == nil {
						runtime.Goexit()
					}
					panic(tc.value)
				}))
				rec := httptest.NewRecorder()
				var recovered any
				served := make(chan struct{})
				go func() {
					defer close(served)
					defer func() { recovered = recover() }()
					h.ServeHTTP(rec, get("192.0.2.1:1"))
				}()
				<-served
				assert.ErrorIs(t, got, tai.ErrAbandoned)
				if tc.abort {
					assert.Equal(t, http.ErrAbortHandler, recovered, "the response is cut off")
					if !tc.write {
						assert.Empty(t, rec.Body.String(), "no 500 is written")
					}
					return
				}
				assert.Nil(t, recovered)
				assert.Equal(t, http.StatusInternalServerError, rec.Code)
			})
		})
	}
}

// abandoning is a guard that gives up on its call after a second and
// returns its context's error without waiting for it, as a timeout that
// abandons a call does; gaveUp runs as it gives up, with the call's
// context, fn, and the channel the call's error comes on.
func abandoning(gaveUp func(ctx context.Context, fn func(context.Context) error, done <-chan error)) tai.Guard {
	return tai.GuardFunc(func(ctx context.Context, fn func(context.Context) error) error {
		ctx, cancel := context.WithTimeout(ctx, time.Second)
		done := make(chan error, 1)
		go func() {
			defer cancel()
			done <- fn(ctx)
		}()
		select {
		case err := <-done:
			return err
		case <-ctx.Done():
			gaveUp(ctx, fn, done)
			return ctx.Err()
		}
	})
}

// A request whose call a guard abandons at its deadline while a guard
// inside it still holds the call (a bulkhead's queue, a retry's backoff),
// so that the handler never ran, is answered 504 as a deadline that
// passed, not 500: the guard's context.DeadlineExceeded is in the
// pipeline's error beside tai.ErrAbandoned.
func TestPipelineAbandonedBeforeTheHandlerRan(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		release := make(chan struct{})
		late := make(chan error, 1)
		abandon := abandoning(func(context.Context, func(context.Context) error, <-chan error) {})
		hold := tai.GuardFunc(func(ctx context.Context, fn func(context.Context) error) error {
			<-ctx.Done()
			<-release
			err := fn(ctx)
			late <- err
			return err
		})
		var got error
		calls := 0
		h := pipelineMW(t, nil, taihttp.PipelineOptions{OnError: func(_ *http.Request, err error) { got = err }},
			tai.WithGuards(abandon, hold))(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { calls++ }))
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, get("192.0.2.1:1"))
		close(release)
		assert.ErrorContains(t, <-late, "a guard called the handler a second time")
		synctest.Wait()
		assert.Zero(t, calls)
		assert.ErrorIs(t, got, tai.ErrAbandoned)
		assert.Equal(t, http.StatusGatewayTimeout, rec.Code)
		assert.Contains(t, rec.Body.String(), `"code":"timeout"`)
	})
}

// A guard that waits for its call and then returns an error of its own,
// as a timeout that reports its deadline in place of the call's error
// does, keeps the tai contract but hides the handler's panic from the
// error Process returns; so does an abandoning guard when the handler
// panics before the guard's Do has returned. The panic still decides: a
// response the handler began is cut off, one it had not begun is a 500,
// and OnError sees the panic.
func TestPipelineHandlerPanicBehindAGuardsOwnError(t *testing.T) {
	for _, tc := range []struct {
		name  string
		write bool
	}{
		{"after it began", true},
		{"before it began", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				ownError := tai.GuardFunc(func(ctx context.Context, fn func(context.Context) error) error {
					ctx, cancel := context.WithTimeout(ctx, time.Second)
					defer cancel()
					done := make(chan error, 1)
					go func() { done <- fn(ctx) }()
					select {
					case err := <-done:
						return err
					case <-ctx.Done():
						<-done // the call has ended: the contract holds
						return ctx.Err()
					}
				})
				var got error
				h := pipelineMW(t, nil, taihttp.PipelineOptions{OnError: func(_ *http.Request, err error) { got = err }},
					tai.WithGuards(ownError))(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					<-r.Context().Done()
					if tc.write {
						w.WriteHeader(http.StatusOK)
						_, _ = w.Write([]byte("part"))
					}
					panic("boom")
				}))
				rec := httptest.NewRecorder()
				var recovered any
				func() {
					defer func() { recovered = recover() }()
					h.ServeHTTP(rec, get("192.0.2.1:1"))
				}()
				var pe *tai.PanicError
				require.ErrorAs(t, got, &pe, "OnError sees the panic")
				assert.Equal(t, "boom", pe.Value)
				assert.ErrorIs(t, got, context.DeadlineExceeded, "and the guard's error")
				if tc.write {
					assert.Equal(t, http.ErrAbortHandler, recovered, "the response is cut off")
					return
				}
				assert.Nil(t, recovered)
				assert.Equal(t, http.StatusInternalServerError, rec.Code)
				assert.Contains(t, rec.Body.String(), `"code":"failed"`)
			})
		})
	}
}

// What a handler's informational status (1xx) does, over a real
// connection of each protocol: the pipeline's Outcome and the status its
// observers and OnError are told are those of the response the client
// got. A 103 Early Hints, on either protocol, and a 101 Switching
// Protocols over HTTP/2, which has no upgrade and sends it as any other
// 1xx, come before the final status; over HTTP/1.1 a 101 is final.
func TestPipelineInformationalStatusOverRealConnections(t *testing.T) {
	type want struct {
		status  int   // the client's final status; 0 for a failed request
		info    []int // the 1xx the client was sent before it
		outcome tai.Outcome
		failed  int // the status of the *StatusError the observers get
	}
	cases := []struct {
		name    string
		handler func(w http.ResponseWriter)
		h1, h2  want
	}{{
		name: "103 then 200",
		handler: func(w http.ResponseWriter) {
			w.Header().Set("Link", "</app.css>; rel=preload")
			w.WriteHeader(http.StatusEarlyHints)
			w.WriteHeader(http.StatusOK)
		},
		h1: want{status: 200, info: []int{103}, outcome: tai.Succeeded},
		h2: want{status: 200, info: []int{103}, outcome: tai.Succeeded},
	}, {
		name: "103 then 503",
		handler: func(w http.ResponseWriter) {
			w.WriteHeader(http.StatusEarlyHints)
			w.WriteHeader(http.StatusServiceUnavailable)
		},
		h1: want{status: 503, info: []int{103}, outcome: tai.Failed, failed: 503},
		h2: want{status: 503, info: []int{103}, outcome: tai.Failed, failed: 503},
	}, {
		name: "103 and nothing more",
		handler: func(w http.ResponseWriter) {
			w.WriteHeader(http.StatusEarlyHints)
		},
		h1: want{status: 200, info: []int{103}, outcome: tai.Succeeded},
		h2: want{status: 200, info: []int{103}, outcome: tai.Succeeded},
	}, {
		name: "101 then 500",
		handler: func(w http.ResponseWriter) {
			w.WriteHeader(http.StatusSwitchingProtocols)
			w.WriteHeader(http.StatusInternalServerError)
		},
		h1: want{status: 101, outcome: tai.Succeeded},
		h2: want{status: 500, info: []int{101}, outcome: tai.Failed, failed: 500},
	}, {
		name: "101 then a body",
		handler: func(w http.ResponseWriter) {
			w.WriteHeader(http.StatusSwitchingProtocols)
			_, _ = io.WriteString(w, "ok")
		},
		h1: want{status: 101, outcome: tai.Succeeded},
		h2: want{status: 200, info: []int{101}, outcome: tai.Succeeded},
	}, {
		name: "101 then a panic",
		handler: func(w http.ResponseWriter) {
			w.WriteHeader(http.StatusSwitchingProtocols)
			panic("after the 101")
		},
		// Over HTTP/1.1 the 101 was the answer, which the panic cuts off;
		// over HTTP/2 nothing final was sent, and the middleware answers.
		h1: want{outcome: tai.Failed},
		h2: want{status: 500, info: []int{101}, outcome: tai.Failed},
	}}
	for _, tc := range cases {
		for _, h2 := range []bool{false, true} {
			name, w := tc.name+"/HTTP/1.1", tc.h1
			if h2 {
				name, w = tc.name+"/HTTP/2", tc.h2
			}
			t.Run(name, func(t *testing.T) {
				var rs records
				mw := pipelineMW(t, nil, taihttp.PipelineOptions{}, tai.WithObservers(&rs))
				srv := httptest.NewUnstartedServer(mw(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					tc.handler(w)
				})))
				srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the panic, a superfluous WriteHeader
				srv.EnableHTTP2 = h2
				if h2 {
					srv.StartTLS()
				} else {
					srv.Start()
				}
				defer srv.Close()

				var info []int
				trace := &httptrace.ClientTrace{Got1xxResponse: func(code int, _ textproto.MIMEHeader) error {
					info = append(info, code)
					return nil
				}}
				req, err := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace), http.MethodGet, srv.URL, nil)
				require.NoError(t, err)
				resp, err := srv.Client().Do(req)
				if w.status == 0 {
					require.Error(t, err, "the response was cut off")
				} else {
					require.NoError(t, err)
					_, _ = io.Copy(io.Discard, resp.Body)
					_ = resp.Body.Close()
					if h2 {
						assert.Equal(t, 2, resp.ProtoMajor)
					}
					assert.Equal(t, w.status, resp.StatusCode, "the client's status")
					assert.Equal(t, w.info, info, "the informational statuses")
				}
				srv.Close() // waits for the handler, and so for the observers

				rec := rs.last()
				assert.Equal(t, w.outcome, rec.Outcome)
				var se *taihttp.StatusError
				if w.failed != 0 {
					require.ErrorAs(t, rec.Err, &se)
					assert.Equal(t, w.failed, se.Status)
				} else {
					assert.False(t, errors.As(rec.Err, &se), "no failing status: %v", rec.Err)
				}
			})
		}
	}
}
