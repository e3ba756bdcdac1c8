package browsertest_test

import (
	"context"
	"testing"
	"time"

	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/andon"
)

// TestBoardDatesTimesOfOtherDays shows a rule that fired three days ago
// and one that fired now, in a browser in Tokyo: each time is shown in
// the browser's time zone, and the one of another day says which day,
// where it read as a time of today ("since 21:00:00", a transition at
// "21:00:00").
func TestBoardDatesTimesOfOtherDays(t *testing.T) {
	tokyo := time.FixedZone("JST", 9*60*60) // no daylight saving time
	old, recent := &switchCond{}, &switchCond{}
	ev, err := andon.NewEvaluator(andon.EvaluatorOptions{Rules: []andon.Rule{
		{Name: "Old", Severity: andon.Page, Condition: old},
		{Name: "Recent", Severity: andon.Page, Condition: recent}}})
	require.NoError(t, err)
	now := time.Now().Truncate(time.Second)
	then := now.Add(-72 * time.Hour)
	old.Set(true)
	ev.EvaluateAt(context.Background(), then)
	recent.Set(true)
	ev.EvaluateAt(context.Background(), now)
	srv := serveBoard(t, ev, andon.BoardOptions{})
	ctx, thrown := browser(t, 60*time.Second)
	_, err = chromedp.Call(ctx, emulation.SetTimezoneOverride, emulation.SetTimezoneOverrideParams{TimezoneID: "Asia/Tokyo"})
	require.NoError(t, err)
	_, err = chromedp.Call(ctx, emulation.SetLocaleOverride, emulation.SetLocaleOverrideParams{Locale: "en_US"})
	require.NoError(t, err)
	require.NoError(t, chromedp.Do(ctx, chromedp.Navigate(srv.URL+"/"),
		chromedp.WaitVisible(chromedp.CSS(`article[data-rule="Recent"][data-state="firing"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#history li`))))
	history, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](
		`Array.from(document.querySelectorAll("#history li")).map(li => li.textContent)`))
	require.NoError(t, err)
	require.Len(t, history, 2)
	day, clock := then.In(tokyo).Format("Jan 2"), then.In(tokyo).Format("15:04:05")
	assert.Contains(t, history[1], day, "the transition of three days ago says its day")
	assert.Contains(t, history[1], clock, "the transition of three days ago says its time in Tokyo")
	since, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(`article[data-rule="Old"] [data-since]`)))
	require.NoError(t, err)
	assert.Contains(t, since, day, "the rule firing for three days says since which day")
	assert.Contains(t, since, clock, "the rule firing for three days says since when in Tokyo")
	if time.Now().In(tokyo).YearDay() == now.In(tokyo).YearDay() { // not past midnight since
		assert.Regexp(t, `^`+now.In(tokyo).Format("15:04:05")+`\s+Recent:`, history[0], "a time of today is a time alone")
	}
	assert.Empty(t, thrown(), "no error on the page")
}
