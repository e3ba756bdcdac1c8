package browsertest_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/andon"
	"github.com/taipattern/taikit/jidoka"
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
// refusal's message as text, saying that the cord was not pulled when
// there was an answer and, when there was none, that it did not respond
// and may still have been pulled, keeps the reason typed, and, the board taking the next pull, hides the
// error.
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
		}, "Failed to fetch. The cord may still have been pulled; the board's event stream will show it."},
	}
	// The board, or the proxy in front of it, answered every case but
	// the last.
	said := func(name string) string {
		if name == "no answer" {
			return "The cord did not respond: "
		}
		return "The cord was not pulled: "
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
		assert.Equal(t, said(tc.name)+tc.want, text, tc.name)
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

// TestBoardCordShowsARefusedReset resets from the page a cord the board
// will not reset: the page says that the cord was not reset, with the
// board's message, not that it did not respond.
func TestBoardCordShowsARefusedReset(t *testing.T) {
	ev, err := andon.NewEvaluator(andon.EvaluatorOptions{})
	require.NoError(t, err)
	require.True(t, ev.Pull(context.Background(), "jam at station 3", "alice"))
	c := &refusingCord{answer: func(w http.ResponseWriter) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = fmt.Fprint(w, `{"error":{"code":"shutting_down","message":"the evaluator is shut down; the cord is left as it was"}}`)
	}}
	srv := serveBoardBehind(t, ev, andon.BoardOptions{AllowCord: true}, func(h http.Handler) http.Handler {
		c.next = h
		return c
	})
	ctx, thrown := browser(t, 60*time.Second)
	require.NoError(t, chromedp.Do(ctx, chromedp.Navigate(srv.URL+"/"),
		chromedp.WaitVisible(chromedp.CSS(`#conn[data-mode="live"]`)),
		chromedp.Click(chromedp.CSS("#cord-reset")),
		chromedp.WaitVisible(chromedp.CSS("#cord-error"))))
	text, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("#cord-error")))
	require.NoError(t, err)
	assert.Equal(t, "The cord was not reset: the evaluator is shut down; the cord is left as it was", text)
	assert.True(t, ev.Cord().Pulled)
	assert.Empty(t, thrown(), "no error on the page")
}

// unansweredCord holds every POST /api/cord, while hold is set, until
// the browser gives it up, as over a network that dropped without a
// word, and passes every other request to the board. It sends on held
// when it takes such a request, and on dropped when the browser has given
// it up.
type unansweredCord struct {
	next    http.Handler
	hold    atomic.Bool
	held    chan struct{}
	dropped chan struct{}
}

func (c *unansweredCord) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodPost && r.URL.Path == "/api/cord" && c.hold.Load() {
		c.held <- struct{}{}
		// The request's context ends with its connection only once its
		// body is read.
		_, _ = io.Copy(io.Discard, r.Body)
		<-r.Context().Done()
		c.dropped <- struct{}{}
		return
	}
	c.next.ServeHTTP(w, r)
}

// TestBoardCordGivesUpOnABoardThatDoesNotAnswer pulls, then resets, the
// cord from the page while the board never answers the cord's request:
// the page gives the request up after the time it allows the board (made
// short here through the cord's data-limit), says that the cord did not
// respond but may still have been pulled (or reset), as the board may
// have taken a request it did not answer, enables the button again, and
// keeps the reason typed, to be sent again; the states the event stream
// brings later show on the page as ever. The request was left unanswered
// until the browser gave up, minutes later, with no word on the page
// meanwhile; then the page read as if the cord had not been pulled.
func TestBoardCordGivesUpOnABoardThatDoesNotAnswer(t *testing.T) {
	line, err := jidoka.NewLine(jidoka.LineOptions{Name: "checkout"})
	require.NoError(t, err)
	ev, err := andon.NewEvaluator(andon.EvaluatorOptions{Cord: andon.CordOptions{Hooks: []andon.Hook{andon.StopLine(line)}}})
	require.NoError(t, err)
	c := &unansweredCord{held: make(chan struct{}, 1), dropped: make(chan struct{}, 1)}
	c.hold.Store(true)
	srv := serveBoardBehind(t, ev, andon.BoardOptions{Lines: []andon.Line{line}, AllowCord: true}, func(h http.Handler) http.Handler {
		c.next = h
		return c
	})
	ctx, thrown := browser(t, 60*time.Second)
	require.NoError(t, chromedp.Do(ctx, chromedp.Navigate(srv.URL+"/"),
		chromedp.WaitVisible(chromedp.CSS(`#conn[data-mode="live"]`)),
		chromedp.Evaluate[chromedp.Void](`document.getElementById("cord").dataset.limit = "500"`)))
	// given waits for the handler to take the cord's request and for the
	// browser to give it up.
	given := func(what string) {
		t.Helper()
		for _, ch := range []chan struct{}{c.held, c.dropped} {
			select {
			case <-ch:
			case <-ctx.Done():
				t.Fatalf("%s: the request was not sent, or not given up", what)
			}
		}
	}
	shown := func(done string) string {
		return `(function (e) { return !e.hidden && e.textContent === "The cord did not respond: the board did not answer in time. ` +
			`The cord may still have been ` + done + `; the board's event stream will show it."; })(document.getElementById("cord-error"))`
	}
	// enabled says whether the button of the id given is enabled, with
	// its own text again.
	enabled := func(id, text string) {
		t.Helper()
		got, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](`(function (b) { return [String(b.disabled), b.textContent]; })(document.getElementById("`+id+`"))`))
		require.NoError(t, err)
		assert.Equal(t, []string{"false", text}, got, "%s is enabled again", id)
	}

	require.NoError(t, chromedp.Do(ctx,
		chromedp.SetValue(chromedp.CSS("#cord-reason"), "jam at station 3"),
		chromedp.Click(chromedp.CSS("#cord-pull"))))
	given("pull")
	waitFor(t, ctx, shown("pulled"), 15*time.Second)
	enabled("cord-pull", "Pull the cord")
	reason, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.getElementById("cord-reason").value`))
	require.NoError(t, err)
	assert.Equal(t, "jam at station 3", reason, "the reason stays in the field, to be sent again")
	assert.False(t, ev.Cord().Pulled)

	// The cord pulled elsewhere: the stream's state shows on the page.
	require.True(t, ev.Pull(context.Background(), "smoke at station 5", "bob"))
	require.NoError(t, chromedp.Do(ctx,
		chromedp.WaitVisible(chromedp.CSS(`#cord[data-pulled="true"]`)),
		chromedp.WaitVisible(chromedp.CSS(`[data-line="checkout"][data-stopped="true"]`)),
		chromedp.WaitVisible(chromedp.CSS("#cord-reset"))))
	text, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("#cord-text")))
	require.NoError(t, err)
	assert.Equal(t, "PULLED by bob: smoke at station 5", text)

	// A reset unanswered is given up as well.
	require.NoError(t, chromedp.Do(ctx, chromedp.Click(chromedp.CSS("#cord-reset"))))
	given("reset")
	waitFor(t, ctx, shown("reset"), 15*time.Second)
	enabled("cord-reset", "Reset the cord")
	assert.True(t, ev.Cord().Pulled)
	require.True(t, ev.Reset(context.Background()))
	require.NoError(t, chromedp.Do(ctx,
		chromedp.WaitVisible(chromedp.CSS(`#cord[data-pulled="false"]`)),
		chromedp.WaitVisible(chromedp.CSS(`[data-line="checkout"][data-stopped="false"]`)),
		chromedp.WaitVisible(chromedp.CSS("#cord-pull"))))

	// The board answers again: the pull sent again is taken.
	c.hold.Store(false)
	require.NoError(t, chromedp.Do(ctx,
		chromedp.Click(chromedp.CSS("#cord-pull")),
		chromedp.WaitVisible(chromedp.CSS("#cord-reset")),
		chromedp.WaitNotVisible(chromedp.CSS("#cord-error"))))
	assert.Equal(t, "jam at station 3", ev.Cord().Reason)
	assert.Empty(t, thrown(), "no error on the page")
}
