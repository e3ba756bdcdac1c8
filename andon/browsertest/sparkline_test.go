package browsertest_test

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/andon"
)

// fixedCond measures the same value against the same threshold each time.
type fixedCond struct{ value, threshold float64 }

func (c fixedCond) Measure(context.Context, time.Time) (andon.Measurement, error) {
	return andon.Measurement{Value: c.value, Threshold: c.threshold, Active: c.value < c.threshold, Samples: 1}, nil
}

// TestBoardSparklineHoldsItsThreshold draws the sparklines of a rule
// whose threshold is below zero (it fires when the value falls under it)
// and of a rule whose values are near the largest float64: each draws its
// values and its threshold line inside the chart. The first had its
// threshold line drawn below the chart, out of sight; the second had
// every coordinate NaN, and no line at all.
func TestBoardSparklineHoldsItsThreshold(t *testing.T) {
	ev, err := andon.NewEvaluator(andon.EvaluatorOptions{Rules: []andon.Rule{
		{Name: "Cold", Severity: andon.Page, Condition: fixedCond{value: -2, threshold: -5}},
		{Name: "Huge", Severity: andon.Page, Condition: fixedCond{value: -1.7e308, threshold: 1.7e308}},
	}})
	require.NoError(t, err)
	t0 := time.Now()
	for i := range 3 {
		ev.EvaluateAt(context.Background(), t0.Add(time.Duration(i)*time.Second))
	}
	srv := serveBoard(t, ev, andon.BoardOptions{})
	ctx, thrown := browser(t, 60*time.Second)
	require.NoError(t, chromedp.Do(ctx, chromedp.Navigate(srv.URL+"/"),
		chromedp.WaitVisible(chromedp.CSS(`article[data-rule="Huge"]`))))
	for _, rule := range []string{"Cold", "Huge"} {
		spark := fmt.Sprintf(`document.querySelector('article[data-rule=%q] svg.spark')`, rule)
		got, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](`[`+spark+`.getAttribute("height"), `+spark+`.querySelector("line").getAttribute("y1"), `+spark+`.querySelector("polyline").getAttribute("points")]`))
		require.NoError(t, err)
		require.Len(t, got, 3)
		height, err := strconv.ParseFloat(got[0], 64)
		require.NoError(t, err)
		coords := []string{got[1]}
		for _, p := range splitFields(got[2]) {
			_, y, ok := strings.Cut(p, ",")
			require.True(t, ok, "%s: point %q", rule, p)
			coords = append(coords, y)
		}
		require.Len(t, coords, 4, "%s: the threshold and three values", rule)
		for i, c := range coords {
			y, err := strconv.ParseFloat(c, 64)
			require.NoError(t, err, "%s: coordinate %d %q", rule, i, c)
			assert.True(t, y >= 0 && y <= height, "%s: coordinate %d %v is inside the chart (0 to %v): %v", rule, i, y, height, got)
		}
	}
	assert.Empty(t, thrown(), "no error on the page")
}
