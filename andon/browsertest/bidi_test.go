package browsertest_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/andon"
)

// textLeftToRight is a function of the page: whether the characters of
// text, found in the text nodes under the element sel selects, are laid
// out left to right, as the board's words are; a right-to-left override
// (U+202E) reaching them would lay them out the other way.
const textLeftToRight = `(function (sel, text) {
	var w = document.createTreeWalker(document.querySelector(sel), NodeFilter.SHOW_TEXT);
	for (var n = w.nextNode(); n; n = w.nextNode()) {
		var i = n.data.indexOf(text);
		if (i < 0) continue;
		var r = document.createRange();
		r.setStart(n, i); r.setEnd(n, i + 1);
		var first = r.getBoundingClientRect().left;
		r.setStart(n, i + text.length - 1); r.setEnd(n, i + text.length);
		return first < r.getBoundingClientRect().left;
	}
	return null;
})`

// TestBoardIsolatesOutsideText: a name or a reason from outside the board
// (who pulled the cord and why, a rule's error) shows in its own
// direction, and a bidirectional control it holds (a right-to-left
// override) does not turn the board's words after it around, nor the
// runbook link after a rule's error.
func TestBoardIsolatesOutsideText(t *testing.T) {
	failing := andon.ConditionFunc(func(context.Context, time.Time) (andon.Measurement, error) {
		return andon.Measurement{}, errors.New("probe failed\u202e")
	})
	ev, err := andon.NewEvaluator(andon.EvaluatorOptions{Rules: []andon.Rule{
		{Name: "Probe", Severity: andon.Page, Condition: failing, RunbookURL: "https://runbooks.example/probe"}}})
	require.NoError(t, err)
	ev.EvaluateAt(context.Background(), time.Now())
	srv := serveBoard(t, ev, andon.BoardOptions{AllowCord: true})
	require.True(t, ev.Pull(context.Background(), "all clear ahead", "mallory\u202e"))
	ctx, thrown := browser(t, 60*time.Second)
	require.NoError(t, chromedp.Do(ctx, chromedp.Navigate(srv.URL+"/"),
		chromedp.WaitVisible(chromedp.CSS(`#cord[data-pulled="true"]`)),
		chromedp.WaitVisible(chromedp.CSS(`article[data-rule="Probe"] a`))))
	text, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("#cord-text")))
	require.NoError(t, err)
	assert.Equal(t, "PULLED by mallory\u202e: all clear ahead", text, "the words as they came")
	inOrder, err := chromedp.Run(ctx, chromedp.Evaluate[any](textLeftToRight+`("#cord-text", "all clear ahead")`))
	require.NoError(t, err)
	assert.Equal(t, true, inOrder, "the reason after the name is laid out left to right")
	inOrder, err = chromedp.Run(ctx, chromedp.Evaluate[any](textLeftToRight+`('article[data-rule="Probe"] .meta a', "runbook")`))
	require.NoError(t, err)
	assert.Equal(t, true, inOrder, "the runbook link after the error is laid out left to right")
	assert.Empty(t, thrown(), "no error on the page")
}

// TestBoardIsolatesRuleNamesInHistory: a rule's name holding a
// right-to-left override ("Probe\u202e") does not turn around the board's
// words after it in the list of recent transitions: "inactive → firing"
// read "gnirif ← evitcani" beside it.
func TestBoardIsolatesRuleNamesInHistory(t *testing.T) {
	errorRate := &switchCond{}
	errorRate.Set(true)
	ev, err := andon.NewEvaluator(andon.EvaluatorOptions{Rules: []andon.Rule{
		{Name: "Probe\u202e", Severity: andon.Page, Condition: errorRate}}})
	require.NoError(t, err)
	ev.EvaluateAt(context.Background(), time.Now())
	srv := serveBoard(t, ev, andon.BoardOptions{})
	ctx, thrown := browser(t, 60*time.Second)
	require.NoError(t, chromedp.Do(ctx, chromedp.Navigate(srv.URL+"/"),
		chromedp.WaitVisible(chromedp.CSS(`#history li`))))
	text, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("#history li")))
	require.NoError(t, err)
	assert.Contains(t, text, "Probe\u202e: inactive → firing", "the words as they came")
	inOrder, err := chromedp.Run(ctx, chromedp.Evaluate[any](textLeftToRight+`("#history li", "inactive → firing")`))
	require.NoError(t, err)
	assert.Equal(t, true, inOrder, "the transition after the rule's name is laid out left to right")
	assert.Empty(t, thrown(), "no error on the page")
}
