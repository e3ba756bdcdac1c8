package browsertest_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/andon"
)

// TestReadOnlyBoardShowsNoCordUntilItKnows opens a read-only board whose
// state the page cannot get (a proxy in front answers its API 502): the
// page, not knowing whether the board takes pulls, shows no cord to pull
// or reset. It showed the form and its "Pull the cord" button, which only
// drew a refusal.
func TestReadOnlyBoardShowsNoCordUntilItKnows(t *testing.T) {
	ev, err := andon.NewEvaluator(andon.EvaluatorOptions{Rules: []andon.Rule{
		{Name: "HighErrorRate", Severity: andon.Page, Condition: &switchCond{}}}})
	require.NoError(t, err)
	srv := serveBoardBehind(t, ev, andon.BoardOptions{}, func(board http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if strings.HasPrefix(r.URL.Path, "/api/") {
				http.Error(w, "Bad Gateway", http.StatusBadGateway)
				return
			}
			board.ServeHTTP(w, r)
		})
	})
	ctx, thrown := browser(t, 60*time.Second)
	require.NoError(t, chromedp.Do(ctx, chromedp.Navigate(srv.URL+"/"),
		chromedp.WaitVisible(chromedp.CSS(`#conn[data-mode="offline"]`))))
	shown, err := chromedp.Run(ctx, chromedp.Evaluate[[]bool](`["cord-form", "cord-pull", "cord-reset"].map(function (id) {
		return document.getElementById(id).getClientRects().length > 0; })`))
	require.NoError(t, err)
	assert.Equal(t, []bool{false, false, false}, shown, "no cord form, pull or reset button before the board said it takes pulls")
	assert.Empty(t, thrown(), "no error on the page")
}

// hidingWriter is a ResponseWriter of a middleware that hides the
// http.Flusher (and every other interface) of the writer it wraps.
type hidingWriter struct{ w http.ResponseWriter }

func (h hidingWriter) Header() http.Header         { return h.w.Header() }
func (h hidingWriter) Write(p []byte) (int, error) { return h.w.Write(p) }
func (h hidingWriter) WriteHeader(code int)        { h.w.WriteHeader(code) }

// TestBoardPollsBehindAWriterThatCannotFlush serves the board behind a
// middleware whose ResponseWriter cannot flush, so that no event stream
// can be served: the page polls, and says so, rather than taking each
// stream that ends after one event for a lost connection, flickering
// between live and a greyed "reconnecting…" every three seconds.
func TestBoardPollsBehindAWriterThatCannotFlush(t *testing.T) {
	ev, err := andon.NewEvaluator(andon.EvaluatorOptions{Rules: []andon.Rule{
		{Name: "HighErrorRate", Severity: andon.Page, Condition: &switchCond{}}}})
	require.NoError(t, err)
	srv := serveBoardBehind(t, ev, andon.BoardOptions{}, func(board http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { board.ServeHTTP(hidingWriter{w}, r) })
	})
	ctx, thrown := browser(t, 60*time.Second)
	require.NoError(t, chromedp.Do(ctx, chromedp.Navigate(srv.URL+"/"),
		chromedp.WaitVisible(chromedp.CSS(`article[data-rule="HighErrorRate"]`))))
	_, err = chromedp.Run(ctx, chromedp.Evaluate[any](`window.modes = [document.getElementById("conn").dataset.mode];
		new MutationObserver(function () { window.modes.push(document.getElementById("conn").dataset.mode); })
			.observe(document.getElementById("conn"), { attributes: true });
		window.waited = 0; setTimeout(function () { window.waited = 1; }, 7000);`))
	require.NoError(t, err)
	waitFor(t, ctx, `window.waited === 1`, 15*time.Second)
	modes, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](`window.modes`))
	require.NoError(t, err)
	require.NotEmpty(t, modes)
	assert.NotContains(t, modes, "offline", "the board answers: the page never says it is offline")
	assert.Equal(t, "polling", modes[len(modes)-1])
	assert.Empty(t, thrown(), "no error on the page")
}

// TestBoardAsksNoNameItDoesNotTake: a board whose Who names the person
// pulling the cord (from the request's authentication) shows no field
// for a name, which it would ignore; a board without Who shows it.
func TestBoardAsksNoNameItDoesNotTake(t *testing.T) {
	for _, c := range []struct {
		name  string
		who   func(*http.Request) string
		shown bool
	}{
		{"named by the board", func(*http.Request) string { return "alice" }, false},
		{"typed on the page", nil, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			ev, err := andon.NewEvaluator(andon.EvaluatorOptions{Rules: []andon.Rule{
				{Name: "HighErrorRate", Severity: andon.Page, Condition: &switchCond{}}}})
			require.NoError(t, err)
			srv := serveBoard(t, ev, andon.BoardOptions{AllowCord: true, Who: c.who})
			ctx, thrown := browser(t, 60*time.Second)
			require.NoError(t, chromedp.Do(ctx, chromedp.Navigate(srv.URL+"/"),
				chromedp.WaitVisible(chromedp.CSS(`#conn[data-mode="live"]`)),
				chromedp.WaitVisible(chromedp.CSS("#cord-reason"))))
			shown, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`(function (e) {
				return !e.hidden && e.getClientRects().length > 0 })(document.getElementById("cord-who"))`))
			require.NoError(t, err)
			assert.Equal(t, c.shown, shown)
			require.NoError(t, chromedp.Do(ctx, chromedp.SetValue(chromedp.CSS("#cord-reason"), "jammed"),
				chromedp.Click(chromedp.CSS("#cord-pull")),
				chromedp.WaitVisible(chromedp.CSS("#cord-reset"))))
			if c.who != nil {
				assert.Equal(t, "alice", ev.Cord().Who)
			} else {
				assert.Equal(t, "board", ev.Cord().Who, "no name typed")
			}
			assert.Empty(t, thrown(), "no error on the page")
		})
	}
}
