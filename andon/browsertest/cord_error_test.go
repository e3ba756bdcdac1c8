package browsertest_test

import (
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/andon"
)

// refusingCord answers POST /api/cord as answer says, when it is set, and
// passes every other request to the board.
type refusingCord struct {
	next   http.Handler
	mu     sync.Mutex
	answer func(http.ResponseWriter)
}

func (c *refusingCord) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	c.mu.Lock()
	answer := c.answer
	c.mu.Unlock()
	if r.Method == http.MethodPost && r.URL.Path == "/api/cord" && answer != nil {
		answer(w)
		return
	}
	c.next.ServeHTTP(w, r)
}

func (c *refusingCord) set(answer func(http.ResponseWriter)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.answer = answer
}

// TestBoardCordShowsEveryRefusal pulls the cord from the page while the
// board, or something in front of it, refuses in each of the ways it can:
// every error code of the board's schema, a proxy's page that is not
// JSON, and a connection closed without an answer. The page shows each
// refusal's message as text, keeps the reason typed, and, the board
// taking the next pull, hides the error.
func TestBoardCordShowsEveryRefusal(t *testing.T) {
	jsonError := func(status int, code, msg string) func(http.ResponseWriter) {
		return func(w http.ResponseWriter) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(status)
			_, _ = fmt.Fprintf(w, `{"error":{"code":%q,"message":%q}}`, code, msg)
		}
	}
	cases := []struct {
		name   string
		answer func(http.ResponseWriter)
		want   string
	}{
		{"invalid_request", jsonError(400, "invalid_request", "bad cord request: <b>x</b>"), "bad cord request: <b>x</b>"},
		{"forbidden", jsonError(403, "forbidden", "the board is read-only"), "the board is read-only"},
		{"cross_origin", jsonError(403, "cross_origin", "cross-origin request detected"), "cross-origin request detected"},
		{"not_found", jsonError(404, "not_found", "no route for POST /api/cord"), "no route for POST /api/cord"},
		{"method_not_allowed", jsonError(405, "method_not_allowed", "POST is not allowed on /api/cord"), "POST is not allowed on /api/cord"},
		{"body_too_large", jsonError(413, "body_too_large", "the cord's body is larger than 4096 bytes"), "the cord's body is larger than 4096 bytes"},
		{"unsupported_media_type", jsonError(415, "unsupported_media_type", "Content-Type must be application/json"), "Content-Type must be application/json"},
		{"internal", jsonError(500, "internal", "the answer could not be encoded"), "the answer could not be encoded"},
		{"shutting_down", jsonError(503, "shutting_down", "the evaluator is shut down; the cord is left as it was"), "the evaluator is shut down; the cord is left as it was"},
		{"a proxy's page", func(w http.ResponseWriter) {
			w.Header().Set("Content-Type", "text/html")
			w.WriteHeader(http.StatusBadGateway)
			_, _ = fmt.Fprint(w, `<html><body><script>window.pwned=1</script>Bad Gateway</body></html>`)
		}, "502 Bad Gateway"},
		{"no answer", func(w http.ResponseWriter) {
			conn, _, err := http.NewResponseController(w).Hijack()
			if err == nil {
				_ = conn.Close()
			}
		}, "Failed to fetch"},
	}
	ev, err := andon.NewEvaluator(andon.EvaluatorOptions{})
	require.NoError(t, err)
	c := &refusingCord{}
	srv := serveBoardBehind(t, ev, andon.BoardOptions{AllowCord: true}, func(h http.Handler) http.Handler {
		c.next = h
		return c
	})
	ctx, thrown := browser(t, 60*time.Second)
	require.NoError(t, chromedp.Do(ctx, chromedp.Navigate(srv.URL+"/"),
		chromedp.WaitVisible(chromedp.CSS(`#conn[data-mode="live"]`))))
	for i, tc := range cases {
		c.set(tc.answer)
		reason := fmt.Sprintf("jam %d", i)
		require.NoError(t, chromedp.Do(ctx,
			chromedp.SetValue(chromedp.CSS("#cord-reason"), reason),
			chromedp.Click(chromedp.CSS("#cord-pull")),
			chromedp.WaitVisible(chromedp.CSS("#cord-error")),
		), tc.name)
		text, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("#cord-error")))
		require.NoError(t, err)
		assert.Equal(t, "The cord did not respond: "+tc.want, text, tc.name)
		value, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.getElementById("cord-reason").value`))
		require.NoError(t, err)
		assert.Equal(t, reason, value, "%s: the reason stays in the field", tc.name)
		// Hidden again, for the next case to wait for it to show.
		require.NoError(t, chromedp.Do(ctx, chromedp.Evaluate[chromedp.Void](`document.getElementById("cord-error").hidden = true`)))
	}
	assert.False(t, ev.Cord().Pulled)
	c.set(nil)
	require.NoError(t, chromedp.Do(ctx,
		chromedp.Evaluate[chromedp.Void](`document.getElementById("cord-error").hidden = false`),
		chromedp.Click(chromedp.CSS("#cord-pull")),
		chromedp.WaitVisible(chromedp.CSS(`#cord[data-pulled="true"]`)),
		chromedp.WaitNotVisible(chromedp.CSS("#cord-error"))))
	pwned, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`window.pwned === 1 || document.querySelectorAll("#cord-error *").length > 0`))
	require.NoError(t, err)
	assert.False(t, pwned, "no refusal is read as HTML")
	assert.Empty(t, thrown(), "no error on the page")
}
