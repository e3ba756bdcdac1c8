package taihttp_test

import (
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/heijunka"
	"github.com/taipattern/taikit/jidoka"
	"github.com/taipattern/taikit/kanban"
	"github.com/taipattern/taikit/tai"
	"github.com/taipattern/taikit/taihttp"
)

// An "about:blank" problem's title is the status's reason phrase (RFC
// 9457, section 4.2.1), the same for every problem of that status; what
// tells them apart is in detail and code.
func TestJSONErrorsAboutBlankTitle(t *testing.T) {
	for _, tc := range []struct {
		err            error
		status         int
		title, code    string
		detailContains string
	}{
		{jidoka.ErrLineStopped, 503, "Service Unavailable", "line_stopped", "stopped"},
		{jidoka.ErrOpen, 503, "Service Unavailable", "breaker_open", "unavailable"},
		{tai.ErrRejected, 503, "Service Unavailable", "rejected", "busy"},
		{context.Canceled, 503, "Service Unavailable", "canceled", "canceled"},
		{tai.ErrDenied, 403, "Forbidden", "denied", "denied"},
		{context.DeadlineExceeded, 504, "Gateway Timeout", "timeout", "too long"},
		{errors.New("boom"), 500, "Internal Server Error", "failed", "failed"},
	} {
		t.Run(tc.code, func(t *testing.T) {
			rec := httptest.NewRecorder()
			taihttp.WriteError(rec, httptest.NewRequest(http.MethodGet, "/", nil), tc.err)
			require.Equal(t, tc.status, rec.Code)
			var body map[string]any
			require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &body))
			assert.Equal(t, "about:blank", body["type"])
			assert.Equal(t, tc.title, body["title"])
			assert.Equal(t, float64(tc.status), body["status"])
			assert.Equal(t, tc.code, body["code"])
			assert.Contains(t, body["detail"], tc.detailContains)
		})
	}
}

// A handler that runs a guard itself answers its refusal as a pipeline
// does: a full Bulkhead sheds load, 503 with the bulkhead's Retry-After,
// whether the call was refused at once or waited in vain until its
// deadline; it is no failure of the server's (500).
func TestWriteErrorOfAFullBulkhead(t *testing.T) {
	for _, waiting := range []int{0, 1} {
		bh, err := jidoka.NewBulkhead(jidoka.BulkheadOptions{Name: "db", MaxConcurrent: 1, MaxWaiting: waiting, RetryAfter: 3 * time.Second})
		require.NoError(t, err)
		hold, err := bh.Allow(context.Background())
		require.NoError(t, err)
		h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			// The call's deadline passes once it waits for a slot (with
			// MaxWaiting 0 it is refused before): not before it is made.
			ctx := &deadlineAfter{Context: r.Context(), done: make(chan struct{})}
			if waiting > 0 {
				go func() {
					for bh.Waiting() == 0 {
						time.Sleep(time.Millisecond)
					}
					close(ctx.done)
				}()
			} else {
				defer close(ctx.done)
			}
			if err := bh.Do(ctx, func(context.Context) error { return nil }); err != nil {
				taihttp.WriteError(w, r, err)
			}
		})
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/", nil))
		assert.Equal(t, http.StatusServiceUnavailable, rec.Code, "MaxWaiting %d", waiting)
		assert.Equal(t, "3", rec.Header().Get("Retry-After"), "MaxWaiting %d", waiting)
		var body map[string]any
		require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &body))
		assert.Equal(t, "rejected", body["code"], "MaxWaiting %d", waiting)
		assert.Equal(t, float64(3), body["retry_after"], "MaxWaiting %d", waiting)
		hold(nil)
	}
	status, retryAfter := taihttp.StatusOf(fmt.Errorf("wrapped: %w", jidoka.ErrBulkheadFull))
	assert.Equal(t, http.StatusServiceUnavailable, status)
	assert.Zero(t, retryAfter)
}

// A heijunka limiter or leveler that sheds load — a full MemoryStore
// under RejectNew that takes no new key, a Leveler whose backlog or key
// table is full — is answered 503 with the store's time to retry, as
// RateLimit, Gate and Pipeline answer the same error: it says the server
// is busy, not that it failed.
func TestWriteErrorOfAHeijunkaStoreThatIsFull(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store, err := heijunka.NewMemoryStore(heijunka.MemoryStoreOptions{MaxKeys: 1, WhenFull: heijunka.RejectNew})
		require.NoError(t, err)
		k, err := heijunka.NewKeyed(heijunka.PerMinute(1), heijunka.KeyedOptions{Name: "per-customer", Store: store})
		require.NoError(t, err)
		require.NoError(t, k.Admit(t.Context(), "c1"))
		full := k.Admit(t.Context(), "c2")
		require.ErrorIs(t, full, heijunka.ErrStoreFull)

		h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { taihttp.WriteError(w, r, full) })
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/", nil))
		assert.Equal(t, http.StatusServiceUnavailable, rec.Code)
		assert.Equal(t, "60", rec.Header().Get("Retry-After"), "when c1 is fresh again")
		var body map[string]any
		require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &body))
		assert.Equal(t, "rejected", body["code"])

		// The same error from a Pipeline's gate.
		gated, err := taihttp.Gate(k, taihttp.GateOptions{Key: taihttp.Header("X-Customer")})
		require.NoError(t, err)
		req := httptest.NewRequest(http.MethodGet, "/", nil)
		req.Header.Set("X-Customer", "c3")
		grec := httptest.NewRecorder()
		gated(ok).ServeHTTP(grec, req)
		assert.Equal(t, rec.Code, grec.Code)
		assert.Equal(t, rec.Header().Get("Retry-After"), grec.Header().Get("Retry-After"))
	})
	for _, err := range []error{heijunka.ErrBacklogFull, heijunka.ErrTooManyKeys, fmt.Errorf("push: %w", heijunka.ErrStoreFull)} {
		p := taihttp.ProblemOf(err)
		assert.Equal(t, http.StatusServiceUnavailable, p.Status, "%v", err)
		assert.Equal(t, "rejected", p.Code, "%v", err)
	}
}

// deadlineAfter is a context whose deadline passes when done is closed.
type deadlineAfter struct {
	context.Context
	done chan struct{}
}

func (c *deadlineAfter) Done() <-chan struct{} { return c.done }

func (c *deadlineAfter) Err() error {
	select {
	case <-c.done:
		return context.DeadlineExceeded
	default:
		return nil
	}
}

// The fields a handler, or middleware around it, set for the response it
// meant to send — how long a cache may keep it, its validators — do not
// go out with the problem sent in its place: with them a shared cache
// would serve a 429, or a 500, to every client for as long as they say.
func TestProblemsDropCacheFields(t *testing.T) {
	cacheable := func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			h := w.Header()
			h.Set("Cache-Control", "public, max-age=3600")
			h.Set("Expires", time.Now().Add(time.Hour).UTC().Format(http.TimeFormat))
			h.Set("ETag", `"v1"`)
			h.Set("Last-Modified", "Mon, 02 Jan 2006 15:04:05 GMT")
			next.ServeHTTP(w, r)
		})
	}
	limit, err := heijunka.NewKeyed(heijunka.PerHour(1))
	require.NoError(t, err)
	rl, err := taihttp.RateLimit(limit, taihttp.RateLimitOptions{})
	require.NoError(t, err)
	pl, err := taihttp.Pipeline(nil, taihttp.PipelineOptions{})
	require.NoError(t, err)
	mux := http.NewServeMux()
	mux.Handle("/catalog", cacheable(rl(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("catalog"))
	}))))
	mux.Handle("/report", pl(cacheable(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {
		panic("report failed")
	}))))
	srv := httptest.NewServer(mux)
	defer srv.Close()
	fetch := func(path string) *http.Response {
		resp, err := srv.Client().Get(srv.URL + path)
		require.NoError(t, err)
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		return resp
	}

	resp := fetch("/catalog")
	require.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, "public, max-age=3600", resp.Header.Get("Cache-Control"), "the handler's response keeps them")
	for path, status := range map[string]int{"/catalog": http.StatusTooManyRequests, "/report": http.StatusInternalServerError} {
		resp := fetch(path)
		require.Equal(t, status, resp.StatusCode, path)
		for _, f := range []string{"Cache-Control", "Expires", "Etag", "Last-Modified"} {
			assert.Empty(t, resp.Header.Values(f), "%s: %s", path, f)
		}
	}
}

// Behind Pipeline, a handler that declared its body's coding (gzip, as
// one that compresses its own output does) and then failed before it
// wrote has the middleware's problem sent without that coding: the
// problem is plain JSON, and a client that decodes the coding it was told
// of (Go's http.Client does) could not read it. Middleware around it that
// set the coding encodes what is written through it, the problem too, and
// keeps its field.
func TestPipelineProblemDropsTheHandlersContentEncoding(t *testing.T) {
	pl, err := taihttp.Pipeline(nil, taihttp.PipelineOptions{})
	require.NoError(t, err)
	limit, err := heijunka.NewKeyed(heijunka.PerHour(1))
	require.NoError(t, err)
	rl, err := taihttp.RateLimit(limit, taihttp.RateLimitOptions{})
	require.NoError(t, err)
	failing := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Encoding", "gzip")
		panic("export failed")
	})
	mux := http.NewServeMux()
	mux.Handle("/export", pl(failing))
	mux.Handle("/outer/export", gzipped(pl(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { panic("export failed") }))))
	mux.Handle("/outer/limited", gzipped(rl(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) }))))
	srv := httptest.NewServer(mux)
	defer srv.Close()
	get := func(path string) (*http.Response, map[string]any) {
		t.Helper()
		resp, err := srv.Client().Get(srv.URL + path)
		require.NoError(t, err)
		body, err := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		require.NoError(t, err, "%s: the problem is readable", path)
		var p map[string]any
		require.NoError(t, json.Unmarshal(body, &p), "%s: %s", path, body)
		return resp, p
	}
	resp, p := get("/export")
	require.Equal(t, http.StatusInternalServerError, resp.StatusCode)
	assert.Empty(t, resp.Header.Values("Content-Encoding"))
	assert.EqualValues(t, http.StatusInternalServerError, p["status"])

	resp, p = get("/outer/export")
	require.Equal(t, http.StatusInternalServerError, resp.StatusCode)
	assert.True(t, resp.Uncompressed, "the outer coding stays, and the problem was encoded in it")
	assert.EqualValues(t, http.StatusInternalServerError, p["status"])

	first, err := srv.Client().Get(srv.URL + "/outer/limited") // spends the quota
	require.NoError(t, err)
	_, _ = io.Copy(io.Discard, first.Body)
	_ = first.Body.Close()
	require.Equal(t, http.StatusOK, first.StatusCode)
	resp, p = get("/outer/limited")
	require.Equal(t, http.StatusTooManyRequests, resp.StatusCode)
	assert.True(t, resp.Uncompressed, "the outer coding stays, and the problem was encoded in it")
	assert.EqualValues(t, http.StatusTooManyRequests, p["status"])
}

// gzipped compresses every response, setting Content-Encoding before it
// calls next, as gorilla/handlers' CompressHandler does.
func gzipped(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Encoding", "gzip")
		w.Header().Del("Content-Length")
		gz := gzip.NewWriter(w)
		defer gz.Close()
		next.ServeHTTP(gzipWriter{ResponseWriter: w, w: gz}, r)
	})
}

type gzipWriter struct {
	http.ResponseWriter
	w io.Writer
}

func (g gzipWriter) Write(b []byte) (int, error) { return g.w.Write(b) }

// A full kanban queue refuses a message for now, as a full bulkhead or
// store does: a handler that answers TryPublish's ErrFull with
// WriteError tells the client 503 and when to come back, not that the
// server failed.
func TestWriteErrorOfAFullQueue(t *testing.T) {
	q, err := kanban.NewMemory[string](kanban.MemoryOptions{Capacity: 1})
	require.NoError(t, err)
	require.NoError(t, q.TryPublish(t.Context(), kanban.Message[string]{ID: "1", Payload: "a"}))
	full := q.TryPublish(t.Context(), kanban.Message[string]{ID: "2", Payload: "b"})
	require.ErrorIs(t, full, kanban.ErrFull)

	rec := httptest.NewRecorder()
	taihttp.WriteError(rec, httptest.NewRequest(http.MethodPost, "/", nil), fmt.Errorf("confirm: %w", full))
	assert.Equal(t, http.StatusServiceUnavailable, rec.Code)
	assert.Equal(t, "1", rec.Header().Get("Retry-After"))
	var body map[string]any
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &body))
	assert.Equal(t, "rejected", body["code"])
}

// An error carrying a status that has no reason phrase (499, 520: codes
// some proxies use) still gets a problem a person can read: a title and
// a detail in the JSON document, a line of text in the plain one.
func TestProblemOfAStatusWithoutAReasonPhrase(t *testing.T) {
	for _, status := range []int{420, 499, 520, 599} {
		p := taihttp.ProblemOf(statusErr(status))
		assert.Equal(t, status, p.Status)
		assert.Equal(t, fmt.Sprintf("status_%d", status), p.Code)
		assert.NotEmpty(t, p.Message, "%d", status)

		rec := httptest.NewRecorder()
		taihttp.WriteError(rec, httptest.NewRequest(http.MethodGet, "/", nil), statusErr(status))
		require.Equal(t, status, rec.Code)
		var body map[string]any
		require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &body))
		assert.NotEmpty(t, body["title"], "%d", status)
		assert.NotEmpty(t, body["detail"], "%d", status)

		rec = httptest.NewRecorder()
		taihttp.PlainErrors(rec, nil, p)
		assert.NotEqual(t, "\n", rec.Body.String(), "%d", status)
	}
}

// A handler that reads its request through http.MaxBytesReader and hands
// the error of an over-long body to WriteError answers 413 Content Too
// Large, the client's error, not 500, the server's.
func TestWriteErrorOfABodyTooLarge(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 4))
		taihttp.WriteError(w, r, fmt.Errorf("decoding the order: %w", err))
	})
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/", strings.NewReader("0123456789")))
	assert.Equal(t, http.StatusRequestEntityTooLarge, rec.Code)
	var body map[string]any
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &body))
	assert.Equal(t, "status_413", body["code"])
	assert.Empty(t, rec.Header().Get("Retry-After"))
	status, _ := taihttp.StatusOf(&http.MaxBytesError{Limit: 4})
	assert.Equal(t, http.StatusRequestEntityTooLarge, status)
}

// A handler that runs a pipeline itself, under a guard that gives up
// waiting for the action at its deadline and abandons it, answers 504 as
// for any deadline that passed: the abandoned signal's error keeps the
// guard's context.DeadlineExceeded.
func TestWriteErrorOfAnAbandonedSignal(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		release := make(chan struct{})
		abandon := abandoning(func(context.Context, func(context.Context) error, <-chan error) {})
		p, err := tai.New(tai.PolicyFunc[int](func(context.Context, tai.Signal[int]) (tai.Decision, error) {
			return tai.Decision{Verdict: tai.Allow}, nil
		}), tai.ActionFunc[int, int](func(context.Context, tai.Signal[int]) (int, error) {
			<-release
			return 1, nil
		}), tai.WithGuards(abandon))
		require.NoError(t, err)
		rec := httptest.NewRecorder()
		h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if _, err := p.Process(r.Context(), tai.NewSignal("pay", "k", 1)); err != nil {
				taihttp.WriteError(w, r, err)
			}
		})
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/", nil))
		close(release)
		synctest.Wait()
		assert.Equal(t, http.StatusGatewayTimeout, rec.Code)
		assert.Contains(t, rec.Body.String(), `"code":"timeout"`)
	})
}

// WriteError answers a nil error as a failure, 500, never as a problem
// document with status 200, which a client would take for a success.
func TestWriteErrorOfNil(t *testing.T) {
	rec := httptest.NewRecorder()
	taihttp.WriteError(rec, httptest.NewRequest(http.MethodGet, "/", nil), nil)
	require.Equal(t, http.StatusInternalServerError, rec.Code)
	var body map[string]any
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &body))
	assert.Equal(t, float64(http.StatusInternalServerError), body["status"])
	assert.Equal(t, "failed", body["code"])
	assert.Equal(t, "application/problem+json", rec.Header().Get("Content-Type"))
}

// The quota-exceeded problem type says the request was over a quota
// (draft-ietf-httpapi-ratelimit-headers): a 429 for another reason — an
// error of the application's carrying 429 (a cap on requests running at
// once), a gate refusing with one — is an "about:blank" problem, titled
// with the status's reason phrase, and names no violated policy. A rate
// limit's 429, or one whose Problem names the quota policy it exceeded,
// keeps the type.
func TestJSONErrorsTypesOnlyQuotasQuotaExceeded(t *testing.T) {
	const quota = "https://iana.org/assignments/http-problem-types#quota-exceeded"
	req := httptest.NewRequest(http.MethodGet, "/", nil)
	busy := statusErr(http.StatusTooManyRequests)
	for _, tc := range []struct {
		name  string
		write func(w http.ResponseWriter)
		typ   string
		title string
	}{
		{"WriteError of a status", func(w http.ResponseWriter) { taihttp.WriteError(w, req, busy) }, "about:blank", "Too Many Requests"},
		{"JSONErrors of another code", func(w http.ResponseWriter) {
			taihttp.JSONErrors(w, req, taihttp.Problem{Status: 429, Code: "concurrency", Message: "too many at once"})
		}, "about:blank", "Too Many Requests"},
		{"JSONErrors naming a quota policy", func(w http.ResponseWriter) {
			taihttp.JSONErrors(w, req, taihttp.Problem{Status: 429, Code: "over_quota", Message: "over the quota", Policy: "p"})
		}, quota, "over the quota"},
		{"a gate's 429", func(w http.ResponseWriter) {
			mw, err := taihttp.Gate(tai.GateFunc(func(context.Context, string) error { return busy }), taihttp.GateOptions{})
			require.NoError(t, err)
			mw(http.NotFoundHandler()).ServeHTTP(w, req)
		}, "about:blank", "Too Many Requests"},
		{"a rate limit", func(w http.ResponseWriter) {
			taihttp.WriteError(w, req, &heijunka.LimitedError{Name: "api"})
		}, quota, "too many requests; retry later"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			tc.write(rec)
			require.Equal(t, http.StatusTooManyRequests, rec.Code)
			var body map[string]any
			require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &body))
			assert.Equal(t, tc.typ, body["type"])
			assert.Equal(t, tc.title, body["title"])
			if tc.typ != quota {
				assert.NotContains(t, body, "violated-policies")
			}
		})
	}
}
