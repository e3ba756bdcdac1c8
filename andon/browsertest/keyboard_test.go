package browsertest_test

import (
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// activeElement is a function of the page: the id of the element that
// has the focus, "BODY" when none has it, or the tag of one without an id.
const activeElement = `(function (e) { return e === document.body ? "BODY" : (e.id || e.tagName); })(document.activeElement)`

// TestBoardCordByKeyboard pulls and resets the cord with the keyboard
// alone: the button pressed is hidden once the board took it, and the
// focus stays at the cord, not thrown back to the start of the page, so
// that the next Tab reaches the control shown in its place. Neither
// button takes the focus on its own: a key pressed twice does not undo
// what the first did.
func TestBoardCordByKeyboard(t *testing.T) {
	line, ev, srv := cordBoard(t)
	ctx, thrown := browser(t, 60*time.Second)
	require.NoError(t, chromedp.Do(ctx, chromedp.Navigate(srv.URL+"/"),
		chromedp.WaitVisible(chromedp.CSS(`#conn[data-mode="live"]`)),
		chromedp.Focus(chromedp.CSS("#cord-reason")),
		chromedp.KeyEvent("jam at station 3"+kb.Enter),
		chromedp.WaitVisible(chromedp.CSS(`#cord[data-pulled="true"] #cord-reset`))))
	require.True(t, line.Status().Stopped)
	focus, err := chromedp.Run(ctx, chromedp.Evaluate[string](activeElement))
	require.NoError(t, err)
	assert.Equal(t, "cord", focus, "the focus stays at the cord once it is pulled")
	require.NoError(t, chromedp.Do(ctx, chromedp.KeyEvent(kb.Tab)))
	focus, err = chromedp.Run(ctx, chromedp.Evaluate[string](activeElement))
	require.NoError(t, err)
	require.Equal(t, "cord-reset", focus, "the next Tab reaches the reset")

	require.NoError(t, chromedp.Do(ctx, chromedp.KeyEvent(kb.Enter),
		chromedp.WaitVisible(chromedp.CSS(`#cord[data-pulled="false"] #cord-pull`))))
	assert.False(t, ev.Cord().Pulled)
	assert.False(t, line.Status().Stopped)
	focus, err = chromedp.Run(ctx, chromedp.Evaluate[string](activeElement))
	require.NoError(t, err)
	assert.Equal(t, "cord", focus, "the focus stays at the cord once it is reset")
	require.NoError(t, chromedp.Do(ctx, chromedp.KeyEvent(kb.Tab)))
	focus, err = chromedp.Run(ctx, chromedp.Evaluate[string](activeElement))
	require.NoError(t, err)
	assert.Equal(t, "cord-reason", focus, "the next Tab reaches the reason")
	assert.Empty(t, thrown(), "no error on the page")
}
