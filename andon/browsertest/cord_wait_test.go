package browsertest_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/andon"
)

// heldCord holds every POST /api/cord until the test releases it (one
// request for each value sent on release), then passes it to the board;
// every other request goes to the board at once. It sends on held when it
// takes a cord request.
type heldCord struct {
	next    http.Handler
	held    chan struct{}
	release chan struct{}
}

func (c *heldCord) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || r.URL.Path != "/api/cord" {
		c.next.ServeHTTP(w, r)
		return
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	c.held <- struct{}{}
	select {
	case <-c.release:
		c.next.ServeHTTP(w, r)
	case <-r.Context().Done():
	}
}

// countCordRequests makes the pages of ctx count, in window.cordAsked,
// the requests they send to the cord.
func countCordRequests(t *testing.T, ctx context.Context) {
	t.Helper()
	_, err := chromedp.Call(ctx, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{Source: `(function () {
		var f = window.fetch;
		window.cordAsked = 0;
		window.fetch = function (url) {
			if (String(url).indexOf("api/cord") >= 0) window.cordAsked++;
			return f.apply(this, arguments);
		};
	})();`})
	require.NoError(t, err)
}

// cordButton is a function of the page: of the button with the id given,
// whether it is disabled, its text (its accessible name) and the id of
// the element that has the focus.
const cordButton = `(function (b) { var e = document.activeElement;
	return [String(b.disabled), b.textContent, e === document.body ? "BODY" : (e.id || e.tagName)]; })`

// TestBoardCordButtonWaitsForItsAnswer pulls, then resets, the cord from
// the page while the board holds each request: the button pressed is
// disabled until the answer comes, says what it waits for, and leaves the
// focus at the cord rather than dropping it to the start of the page; a
// second click, or Enter in the reason, sends no second request. A
// refusal enables the button again. Both buttons stayed enabled, and a
// second click sent a second request.
func TestBoardCordButtonWaitsForItsAnswer(t *testing.T) {
	ev, err := andon.NewEvaluator(andon.EvaluatorOptions{})
	require.NoError(t, err)
	c := &heldCord{held: make(chan struct{}, 4), release: make(chan struct{})}
	srv := serveBoardBehind(t, ev, andon.BoardOptions{AllowCord: true}, func(h http.Handler) http.Handler {
		c.next = h
		return c
	})
	ctx, thrown := browser(t, 60*time.Second)
	countCordRequests(t, ctx)
	require.NoError(t, chromedp.Do(ctx, chromedp.Navigate(srv.URL+"/"),
		chromedp.WaitVisible(chromedp.CSS(`#conn[data-mode="live"]`))))
	held := func(what string) {
		t.Helper()
		select {
		case <-c.held:
		case <-ctx.Done():
			t.Fatalf("%s: the request was not sent", what)
		}
	}
	asked := func() int {
		t.Helper()
		n, err := chromedp.Run(ctx, chromedp.Evaluate[int](`window.cordAsked`))
		require.NoError(t, err)
		return n
	}
	button := func(id string) []string {
		t.Helper()
		got, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](cordButton+`(document.getElementById("`+id+`"))`))
		require.NoError(t, err)
		return got
	}

	// A pull, clicked twice and sent again by Enter while it waits.
	require.NoError(t, chromedp.Do(ctx,
		chromedp.SetValue(chromedp.CSS("#cord-reason"), "jam at station 3"),
		chromedp.Click(chromedp.CSS("#cord-pull"))))
	held("pull")
	assert.Equal(t, []string{"true", "Pulling the cord…", "cord"}, button("cord-pull"), "the pull waits for its answer")
	require.NoError(t, chromedp.Do(ctx,
		chromedp.Click(chromedp.CSS("#cord-pull")),
		chromedp.Focus(chromedp.CSS("#cord-reason")),
		chromedp.KeyEvent(kb.Enter)))
	assert.Equal(t, 1, asked(), "one request for a pull pressed again while it waits")
	c.release <- struct{}{}
	require.NoError(t, chromedp.Do(ctx,
		chromedp.WaitVisible(chromedp.CSS(`#cord[data-pulled="true"] #cord-reset`))))
	assert.Equal(t, "jam at station 3", ev.Cord().Reason)
	assert.Equal(t, []string{"false", "Reset the cord", "cord"}, button("cord-reset"))

	// A reset, clicked twice while it waits.
	require.NoError(t, chromedp.Do(ctx, chromedp.Click(chromedp.CSS("#cord-reset"))))
	held("reset")
	assert.Equal(t, []string{"true", "Resetting the cord…", "cord"}, button("cord-reset"), "the reset waits for its answer")
	require.NoError(t, chromedp.Do(ctx, chromedp.Click(chromedp.CSS("#cord-reset"))))
	assert.Equal(t, 2, asked(), "one request for a reset pressed again while it waits")
	c.release <- struct{}{}
	require.NoError(t, chromedp.Do(ctx,
		chromedp.WaitVisible(chromedp.CSS(`#cord[data-pulled="false"] #cord-pull`))))
	assert.False(t, ev.Cord().Pulled)
	assert.Equal(t, "false", button("cord-pull")[0], "the pull is enabled again")
	assert.Equal(t, "Pull the cord", button("cord-pull")[1])

	// A pull the board refuses: the button is enabled again.
	require.NoError(t, chromedp.Do(ctx,
		chromedp.SetValue(chromedp.CSS("#cord-reason"), "pay\u202eton"),
		chromedp.Click(chromedp.CSS("#cord-pull"))))
	held("refused pull")
	assert.Equal(t, "true", button("cord-pull")[0])
	c.release <- struct{}{}
	require.NoError(t, chromedp.Do(ctx, chromedp.WaitVisible(chromedp.CSS("#cord-error"))))
	assert.Equal(t, []string{"false", "Pull the cord", "cord"}, button("cord-pull"), "a refused pull can be sent again")
	assert.Equal(t, 3, asked())
	assert.False(t, ev.Cord().Pulled)
	assert.Empty(t, thrown(), "no error on the page")
}
