package taihttp_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/jidoka"
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
