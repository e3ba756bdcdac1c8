package browsertest_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/taipattern/taikit/andon"
	"github.com/taipattern/taikit/internal/servers"
	"github.com/taipattern/taikit/jidoka"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// switchCond is a condition the test turns on and off.
type switchCond struct {
	mu     sync.Mutex
	active bool
}

func (s *switchCond) Set(active bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.active = active
}

func (s *switchCond) Measure(context.Context, time.Time) (andon.Measurement, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := andon.Measurement{Active: s.active, Value: 0.01, Threshold: 0.05, Unit: andon.UnitRatio, Samples: 100}
	if s.active {
		m.Value = 0.1
	}
	return m, nil
}

// TestBoardInChromium drives the board in a real headless Chromium: the
// page loads, a firing rule shows red, a change in the evaluator reaches
// the page without a reload, pulling the cord stops the line and the page
// shows it. It saves a screenshot to $ANDON_SCREENSHOT_DIR, or to a
// temporary directory.
func TestBoardInChromium(t *testing.T) {
	errorRate, slow := &switchCond{}, &switchCond{}
	line, err := jidoka.NewLine(jidoka.LineOptions{Name: "checkout"})
	require.NoError(t, err)
	breaker, err := jidoka.NewBreaker(jidoka.BreakerOptions{Name: "gateway", OpenDuration: time.Hour})
	require.NoError(t, err)
	ev, err := andon.NewEvaluator(andon.EvaluatorOptions{
		Cord: andon.CordOptions{Hooks: []andon.Hook{andon.StopLine(line)}},
		Rules: []andon.Rule{
			{Name: "HighErrorRate", Severity: andon.Page, Condition: errorRate, RunbookURL: "https://runbooks.example/errors",
				Summary: "error rate {{ $value | humanizePercentage }} over 5m"},
			{Name: "SlowPayments", Severity: andon.Ticket, Condition: slow, For: 5 * time.Minute},
			{Name: "GatewayOpen", Severity: andon.Page, Condition: andon.BreakerOpen(breaker)},
		}})
	require.NoError(t, err)
	var (
		jobsMu sync.Mutex
		jobs   []andon.PanelRow
	)
	board, err := andon.NewBoard(ev, andon.BoardOptions{Prefix: "/andon", Title: "Payments andon", Refresh: time.Hour, AllowCord: true,
		Lines: []andon.Line{line}, Breakers: []andon.Breaker{breaker},
		Panels: []andon.Panel{{Title: "Active rollouts", Columns: []string{"Deployment", "Stage", "Traffic"}, Empty: "no rollout running",
			Rows: func() []andon.PanelRow {
				jobsMu.Lock()
				defer jobsMu.Unlock()
				return jobs
			}}}})
	require.NoError(t, err)
	srv := httptest.NewServer(board)
	t.Cleanup(func() {
		require.NoError(t, board.Shutdown(context.Background())) // ends the page's event stream
		srv.Close()
		require.NoError(t, ev.Shutdown(context.Background()))
	})
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	eval := func() {
		now = now.Add(time.Minute)
		ev.EvaluateAt(context.Background(), now)
	}
	breaker.Trip("gateway timeouts")
	for i := range 8 { // a few values for the sparklines
		errorRate.Set(i != 3)
		eval()
	}

	ctx, _ := browser(t, 90*time.Second)

	start := time.Now()
	step := func(what string) { t.Logf("%6.2fs %s", time.Since(start).Seconds(), what) }
	firing := chromedp.CSS(`article[data-rule="HighErrorRate"][data-state="firing"]`)
	require.NoError(t, chromedp.Do(ctx, chromedp.Navigate(srv.URL+"/andon/")))
	step("navigated")
	require.NoError(t, chromedp.Do(ctx, chromedp.WaitVisible(firing)))
	step("firing rule visible")
	require.NoError(t, chromedp.Do(ctx, chromedp.WaitVisible(chromedp.CSS(`#conn[data-mode="live"]`))))
	step("page loaded, live")
	border, err := chromedp.Run(ctx, chromedp.Evaluate[string](
		`getComputedStyle(document.querySelector('article[data-rule="HighErrorRate"]')).borderLeftColor`))
	require.NoError(t, err)
	assert.Equal(t, "rgb(211, 47, 47)", border, "a firing rule is red")
	green, err := chromedp.Run(ctx, chromedp.Evaluate[string](
		`getComputedStyle(document.querySelector('article[data-rule="SlowPayments"]')).borderLeftColor`))
	require.NoError(t, err)
	assert.Equal(t, "rgb(46, 125, 50)", green, "an inactive rule is green")
	points, err := chromedp.Run(ctx, chromedp.Evaluate[string](
		`document.querySelector('article[data-rule="HighErrorRate"] svg.spark polyline').getAttribute('points')`))
	require.NoError(t, err)
	assert.Len(t, splitFields(points), 8, "one sparkline point per evaluation")

	// A change in the evaluator reaches the page without a reload.
	slow.Set(true)
	eval()
	require.NoError(t, chromedp.Do(ctx, chromedp.WaitVisible(chromedp.CSS(`article[data-rule="SlowPayments"][data-color="amber"]`))))

	step("live update seen")

	// A panel's rows reach the page when the program notifies the board,
	// as a table, its text never parsed as HTML.
	require.NoError(t, chromedp.Do(ctx, chromedp.WaitVisible(chromedp.CSS(`section[data-panel="Active rollouts"] p.note`))))
	empty, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(`section[data-panel="Active rollouts"] p.note`)))
	require.NoError(t, err)
	assert.Equal(t, "no rollout running", empty)
	jobsMu.Lock()
	jobs = []andon.PanelRow{{Cells: []string{"dpl_1", "canary", "5%"}, Color: "red", Link: "/deploy/dpl_1"},
		{Cells: []string{"<b>dpl_2</b>", "prod", "100%"}}}
	jobsMu.Unlock()
	board.Notify()
	row := `section[data-panel="Active rollouts"] tbody tr`
	require.NoError(t, chromedp.Do(ctx, chromedp.WaitVisible(chromedp.CSS(row+`[data-color="red"] a[href="/deploy/dpl_1"]`))))
	cells, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](
		`Array.from(document.querySelectorAll('`+row+` td')).map(td => td.textContent)`))
	require.NoError(t, err)
	assert.Equal(t, []string{"dpl_1", "canary", "5%", "<b>dpl_2</b>", "prod", "100%"}, cells)
	red, err := chromedp.Run(ctx, chromedp.Evaluate[string](
		`getComputedStyle(document.querySelector('`+row+` td')).borderLeftColor`))
	require.NoError(t, err)
	assert.Equal(t, "rgb(211, 47, 47)", red, "a red row is marked red")
	step("panel seen")
	// Pull the cord from the page.
	require.False(t, line.Status().Stopped)
	require.NoError(t, chromedp.Do(ctx,
		chromedp.SendKeys(chromedp.CSS("#cord-reason"), "smoke at station 3"),
		chromedp.SendKeys(chromedp.CSS("#cord-who"), "alice"),
		chromedp.Click(chromedp.CSS("#cord-pull")),
		chromedp.WaitVisible(chromedp.CSS(`#cord[data-pulled="true"]`)),
		chromedp.WaitVisible(chromedp.CSS(`[data-line="checkout"][data-stopped="true"]`)),
		chromedp.WaitVisible(chromedp.CSS("#cord-reset")),
	))
	step("cord pulled")
	st := line.Status()
	require.True(t, st.Stopped, "the cord stopped the line")
	assert.Contains(t, st.Reason, "cord pulled by alice: smoke at station 3")
	text, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("#cord-text")))
	require.NoError(t, err)
	assert.Contains(t, text, "PULLED by alice: smoke at station 3")

	shot, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	require.NoError(t, err)
	dir := os.Getenv("ANDON_SCREENSHOT_DIR")
	if dir == "" {
		dir = t.TempDir()
	}
	path := filepath.Join(dir, "andon-board.png")
	require.NoError(t, os.WriteFile(path, shot, 0o600))
	t.Logf("screenshot: %s", path)

	// Reset from the page restarts the line.
	require.NoError(t, chromedp.Do(ctx,
		chromedp.Click(chromedp.CSS("#cord-reset")),
		chromedp.WaitVisible(chromedp.CSS(`[data-line="checkout"][data-stopped="false"]`)),
	))
	assert.False(t, line.Status().Stopped)
}

// TestFreshBoardInChromium opens the board of a program that has just
// started: no rule has changed state yet, so there is no history. The
// page goes live and shows the rules, with no error on the page, and,
// the board made with no options, no cord to pull.
func TestFreshBoardInChromium(t *testing.T) {
	ev, err := andon.NewEvaluator(andon.EvaluatorOptions{Rules: []andon.Rule{
		{Name: "HighErrorRate", Severity: andon.Page, Condition: &switchCond{}}}})
	require.NoError(t, err)
	srv := serveBoard(t, ev, andon.BoardOptions{})
	ctx, thrown := browser(t, 60*time.Second)
	logged := consoleErrors(t, ctx)
	require.NoError(t, chromedp.Do(ctx, chromedp.Navigate(srv.URL+"/"),
		chromedp.WaitVisible(chromedp.CSS(`article[data-rule="HighErrorRate"]`))))
	summary, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.getElementById("summary").textContent`))
	require.NoError(t, err)
	assert.Equal(t, "0 firing · 0 pending · 1 rule", summary)
	require.NoError(t, chromedp.Do(ctx, chromedp.WaitVisible(chromedp.CSS(`#conn[data-mode="live"]`))))
	hidden, err := chromedp.Run(ctx, chromedp.Evaluate[[]bool](`[document.getElementById("cord-form").hidden, document.getElementById("cord-reset").hidden]`))
	require.NoError(t, err)
	assert.Equal(t, []bool{true, true}, hidden, "a board without AllowCord shows no cord to pull or reset")
	assert.Empty(t, thrown(), "no error on the page")
	assert.Empty(t, logged(), "no error in the console")
}

// brokenLine is a line whose Status panics; brokenBreaker a breaker whose
// Snapshot does.
type brokenLine struct{ *jidoka.Line }

func (brokenLine) Status() jidoka.LineStatus { panic("line status broke") }

type brokenBreaker struct{ *jidoka.Breaker }

func (brokenBreaker) Snapshot() jidoka.Snapshot { panic("breaker snapshot broke") }

// TestBoardShowsALineItCouldNotRead: a line or breaker whose state the
// board could not read (its code panicked) is shown as unknown, with the
// error, not as a line running or a breaker in no state; the rest of the
// page is as it is.
func TestBoardShowsALineItCouldNotRead(t *testing.T) {
	line, err := jidoka.NewLine(jidoka.LineOptions{Name: "checkout"})
	require.NoError(t, err)
	packing, err := jidoka.NewLine(jidoka.LineOptions{Name: "packing"})
	require.NoError(t, err)
	breaker, err := jidoka.NewBreaker(jidoka.BreakerOptions{Name: "gateway", OpenDuration: time.Hour})
	require.NoError(t, err)
	ev, err := andon.NewEvaluator(andon.EvaluatorOptions{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	require.NoError(t, err)
	srv := serveBoard(t, ev, andon.BoardOptions{Lines: []andon.Line{brokenLine{line}, packing},
		Breakers: []andon.Breaker{brokenBreaker{breaker}}, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	ctx, thrown := browser(t, 60*time.Second)
	require.NoError(t, chromedp.Do(ctx, chromedp.Navigate(srv.URL+"/"),
		chromedp.WaitVisible(chromedp.CSS(`[data-line="packing"][data-stopped="false"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#conn[data-mode="live"]`))))
	for _, sel := range []string{`[data-line="checkout"]`, `[data-breaker="gateway"]`} {
		got, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](`(function (e) { return e ? [e.dataset.error || "",
			e.querySelector(".status").textContent, e.textContent] : []; })(document.querySelector('`+sel+`'))`))
		require.NoError(t, err)
		require.Len(t, got, 3, "%s is shown", sel)
		assert.Equal(t, "true", got[0], "%s is marked", sel)
		assert.Equal(t, "unknown", got[1], "%s: its state is not known", sel)
		assert.Contains(t, got[2], "could not be read", "%s says why", sel)
	}
	assert.Empty(t, thrown(), "no error on the page")
}

// TestBoardTextIsNeverHTML puts markup in every text the board shows (a
// rule's name and summary, a line, a panel's title, headings and cells,
// the cord's reason and who): the page shows it as text and runs none of it.
func TestBoardTextIsNeverHTML(t *testing.T) {
	const evil = `<img src=x onerror="window.pwned=1">"'&`
	line, err := jidoka.NewLine(jidoka.LineOptions{Name: "line " + evil})
	require.NoError(t, err)
	ev, err := andon.NewEvaluator(andon.EvaluatorOptions{
		Cord:  andon.CordOptions{Hooks: []andon.Hook{andon.StopLine(line)}},
		Rules: []andon.Rule{{Name: "rule " + evil, Severity: andon.Page, Condition: &switchCond{}, Summary: "summary " + evil}}})
	require.NoError(t, err)
	board, err := andon.NewBoard(ev, andon.BoardOptions{Title: "title " + evil, Lines: []andon.Line{line},
		Panels: []andon.Panel{{Title: "panel " + evil, Columns: []string{"column " + evil},
			Rows: func() []andon.PanelRow {
				return []andon.PanelRow{{Cells: []string{"cell " + evil}, Link: "/jobs/" + evil}}
			}}}})
	require.NoError(t, err)
	srv := httptest.NewServer(board)
	t.Cleanup(func() {
		require.NoError(t, board.Shutdown(context.Background()))
		srv.Close()
		require.NoError(t, ev.Shutdown(context.Background()))
	})
	ev.EvaluateAt(context.Background(), time.Now()) // the summary is expanded
	ev.Pull(context.Background(), "reason "+evil, "who "+evil)
	ctx, thrown := browser(t, 60*time.Second)
	require.NoError(t, chromedp.Do(ctx, chromedp.Navigate(srv.URL+"/"),
		chromedp.WaitVisible(chromedp.CSS(`#cord[data-pulled="true"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#conn[data-mode="live"]`))))
	text, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.body.innerText`))
	require.NoError(t, err)
	for _, want := range []string{"rule ", "summary ", "line ", "panel ", "column ", "cell ", "who " + evil + ": reason "} {
		assert.Contains(t, strings.ToLower(text), strings.ToLower(want+evil), "shown as text")
	}
	title, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.title`))
	require.NoError(t, err)
	assert.Equal(t, "title "+evil, title)
	imgs, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll("img").length`))
	require.NoError(t, err)
	assert.Zero(t, imgs, "no element made from the text")
	pwned, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`window.pwned === 1`))
	require.NoError(t, err)
	assert.False(t, pwned)
	assert.Empty(t, thrown(), "no error on the page")
}

// TestBoardLongTextStaysInTheWindow shows a cord reason as long as the
// cord takes, a summary and a panel cell of as many characters without a
// space (a URL, a token, an ID): they wrap, and the page stays as wide as
// the window, as a board on a wall screen must.
func TestBoardLongTextStaysInTheWindow(t *testing.T) {
	long := strings.Repeat("x", 200)
	line, err := jidoka.NewLine(jidoka.LineOptions{Name: "checkout"})
	require.NoError(t, err)
	ev, err := andon.NewEvaluator(andon.EvaluatorOptions{
		Cord:  andon.CordOptions{Hooks: []andon.Hook{andon.StopLine(line)}},
		Rules: []andon.Rule{{Name: "HighErrorRate", Severity: andon.Page, Condition: &switchCond{}, Summary: long}}})
	require.NoError(t, err)
	board, err := andon.NewBoard(ev, andon.BoardOptions{Lines: []andon.Line{line},
		Panels: []andon.Panel{{Title: "Jobs", Columns: []string{"ID", "Stage"},
			Rows: func() []andon.PanelRow { return []andon.PanelRow{{Cells: []string{long, long}}} }}}})
	require.NoError(t, err)
	srv := httptest.NewServer(board)
	t.Cleanup(func() {
		require.NoError(t, board.Shutdown(context.Background()))
		srv.Close()
		require.NoError(t, ev.Shutdown(context.Background()))
	})
	ev.EvaluateAt(context.Background(), time.Now()) // the summary is expanded
	ev.Pull(context.Background(), long, "alice")
	ctx, thrown := browser(t, 60*time.Second)
	require.NoError(t, chromedp.Do(ctx, chromedp.Navigate(srv.URL+"/"),
		chromedp.WaitVisible(chromedp.CSS(`#cord[data-pulled="true"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#conn[data-mode="live"]`))))
	assertFitsTheWindow(t, ctx)
	assert.Empty(t, thrown(), "no error on the page")
}

// TestBoardOpensAtTheLinkedRule follows an alert's GeneratorURL, the
// board's URL with "#rule-" and the rule's name: the page, whose rules
// are not there yet when the browser looks for the fragment, brings that
// rule into view once it has drawn it, a name that needs escaping too.
func TestBoardOpensAtTheLinkedRule(t *testing.T) {
	const base = "http://board.example/andon/"
	var rules []andon.Rule
	for i := range 40 {
		rules = append(rules, andon.Rule{Name: fmt.Sprintf("Rule %02d", i), Severity: andon.Page, Condition: &switchCond{}})
	}
	ev, err := andon.NewEvaluator(andon.EvaluatorOptions{Rules: rules, GeneratorURL: base})
	require.NoError(t, err)
	srv := serveBoard(t, ev, andon.BoardOptions{Prefix: "/andon"})
	a, ok := ev.Alert("Rule 35")
	require.True(t, ok)
	require.Equal(t, base+"#rule-Rule%2035", a.GeneratorURL)
	ctx, thrown := browser(t, 60*time.Second)
	require.NoError(t, chromedp.Do(ctx, chromedp.Navigate(srv.URL+strings.TrimPrefix(a.GeneratorURL, "http://board.example")),
		chromedp.WaitVisible(chromedp.CSS(`article[data-rule="Rule 35"]`))))
	view, err := chromedp.Run(ctx, chromedp.Evaluate[[]float64](
		`[document.querySelector('article[data-rule="Rule 35"]').getBoundingClientRect().top, window.innerHeight]`))
	require.NoError(t, err)
	require.Len(t, view, 2)
	assert.GreaterOrEqual(t, view[0], 0.0, "the linked rule is in view")
	assert.Less(t, view[0], view[1], "the linked rule is in view")
	assert.Empty(t, thrown(), "no error on the page")
}

// cordBoard serves a board whose cord stops line, served at srv until the
// test ends.
func cordBoard(t *testing.T) (*jidoka.Line, *andon.Evaluator, *httptest.Server) {
	line, err := jidoka.NewLine(jidoka.LineOptions{Name: "checkout"})
	require.NoError(t, err)
	ev, err := andon.NewEvaluator(andon.EvaluatorOptions{
		Cord:  andon.CordOptions{Hooks: []andon.Hook{andon.StopLine(line)}},
		Rules: []andon.Rule{{Name: "HighErrorRate", Severity: andon.Page, Condition: &switchCond{}}}})
	require.NoError(t, err)
	srv := serveBoard(t, ev, andon.BoardOptions{Lines: []andon.Line{line}, AllowCord: true})
	return line, ev, srv
}

// TestBoardCordErrorInChromium pulls the cord from the page with a reason
// the board refuses: the page says that the cord was not pulled, with the
// board's message for it, not "[object Object]", and the line runs on.
func TestBoardCordErrorInChromium(t *testing.T) {
	line, ev, srv := cordBoard(t)
	ctx, thrown := browser(t, 60*time.Second)
	require.NoError(t, chromedp.Do(ctx, chromedp.Navigate(srv.URL+"/"),
		chromedp.WaitVisible(chromedp.CSS(`#conn[data-mode="live"]`)),
		// A right-to-left override, which the board refuses in a reason.
		chromedp.SetValue(chromedp.CSS("#cord-reason"), "pay\u202eton"),
		chromedp.Click(chromedp.CSS("#cord-pull")),
		chromedp.WaitVisible(chromedp.CSS("#cord-error")),
	))
	text, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("#cord-error")))
	require.NoError(t, err)
	assert.Equal(t, "The cord was not pulled: reason and who must not hold control characters, bidi overrides or line separators", text)
	reason, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.getElementById("cord-reason").value`))
	require.NoError(t, err)
	assert.Equal(t, "pay\u202eton", reason, "the reason refused stays in the field, to be corrected")
	assert.False(t, ev.Cord().Pulled)
	assert.False(t, line.Status().Stopped)
	assert.Empty(t, thrown(), "no error on the page")
}

// TestBoardCordReasonOfAnyScript pulls the cord from the page with a
// reason and a name as long as the page's fields take, in a script of
// three bytes a character: the board takes them, and the page shows the
// cord pulled with them.
func TestBoardCordReasonOfAnyScript(t *testing.T) {
	line, ev, srv := cordBoard(t)
	ctx, thrown := browser(t, 60*time.Second)
	require.NoError(t, chromedp.Do(ctx, chromedp.Navigate(srv.URL+"/"),
		chromedp.WaitVisible(chromedp.CSS(`#conn[data-mode="live"]`))))
	fits, err := chromedp.Run(ctx, chromedp.Evaluate[[]int](
		`[document.getElementById("cord-reason").maxLength, document.getElementById("cord-who").maxLength]`))
	require.NoError(t, err)
	require.Len(t, fits, 2)
	reason := strings.Repeat("煙", fits[0]) // smoke
	who := strings.Repeat("山", fits[1])
	require.NoError(t, chromedp.Do(ctx,
		chromedp.SetValue(chromedp.CSS("#cord-reason"), reason),
		chromedp.SetValue(chromedp.CSS("#cord-who"), who),
		chromedp.Click(chromedp.CSS("#cord-pull")),
		// The cord pulled, or the board's refusal shown.
		chromedp.WaitVisible(chromedp.CSS(`#cord[data-pulled="true"] #cord-text, #cord-error:not([hidden])`)),
	))
	refused, err := chromedp.Run(ctx, chromedp.Evaluate[string](
		`document.getElementById("cord-error").hidden ? "" : document.getElementById("cord-error").textContent`))
	require.NoError(t, err)
	require.Empty(t, refused, "the board refused the page's own fields")
	cs := ev.Cord()
	assert.Equal(t, reason, cs.Reason)
	assert.Equal(t, who, cs.Who)
	assert.True(t, line.Status().Stopped)
	text, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("#cord-text")))
	require.NoError(t, err)
	assert.Contains(t, text, "PULLED by "+who+": "+reason)
	assert.Empty(t, thrown(), "no error on the page")
}

// TestBoardGoesLiveAgainAfterRestart shuts a board down while a page
// follows it, so that the page's stream is refused and it polls, then
// serves a new board at the same address, as a restarted program does:
// the page follows the new board's event stream, not polling for ever.
func TestBoardGoesLiveAgainAfterRestart(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	// serve serves a board with one rule on ln until stop, which is also
	// a cleanup of the test.
	serve := func(ln net.Listener, rule string) (board *andon.Board, stop func()) {
		ev, err := andon.NewEvaluator(andon.EvaluatorOptions{Rules: []andon.Rule{
			{Name: rule, Severity: andon.Page, Condition: &switchCond{}}}})
		require.NoError(t, err)
		board, err = andon.NewBoard(ev, andon.BoardOptions{})
		require.NoError(t, err)
		srv := &http.Server{Handler: board}
		served := make(chan struct{})
		go func() {
			defer close(served)
			_ = srv.Serve(ln)
		}()
		var once sync.Once
		stop = func() {
			once.Do(func() {
				require.NoError(t, board.Shutdown(context.Background()))
				require.NoError(t, srv.Close())
				<-served
				require.NoError(t, ev.Shutdown(context.Background()))
			})
		}
		t.Cleanup(stop)
		return board, stop
	}
	board, stop := serve(ln, "BeforeRestart")
	ctx, thrown := browser(t, 90*time.Second)
	require.NoError(t, chromedp.Do(ctx, chromedp.Navigate("http://"+addr+"/"),
		chromedp.WaitVisible(chromedp.CSS(`article[data-rule="BeforeRestart"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#conn[data-mode="live"]`))))
	// The board shuts down first while the server still answers: the
	// page's stream ends, and its next one is refused with 503.
	require.NoError(t, board.Shutdown(context.Background()))
	require.NoError(t, chromedp.Do(ctx, chromedp.WaitVisible(chromedp.CSS(`#conn[data-mode="polling"]`))))
	stop()

	// The program starts again at the same address.
	ln, err = net.Listen("tcp", addr)
	require.NoError(t, err)
	serve(ln, "AfterRestart")
	require.NoError(t, chromedp.Do(ctx,
		chromedp.WaitVisible(chromedp.CSS(`article[data-rule="AfterRestart"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#conn[data-mode="live"]`))))
	assert.Empty(t, thrown(), "no error on the page")
}

// browser starts a headless Chromium for the test, bounded by timeout,
// with the options of the test's own after the usual ones, and returns its
// context and a function that lists the JavaScript exceptions thrown on
// its first page so far.
func browser(t *testing.T, timeout time.Duration, opts ...chromedp.ExecAllocatorOption) (context.Context, func() []string) {
	t.Helper()
	bin := servers.Binary(t, "chromium", "chromium", "chromium-browser")
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), append([]chromedp.ExecAllocatorOption{
		chromedp.ExecPath(bin),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-quic", true),
		chromedp.NoFirstRun,
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 1000),
	}, opts...)...)
	t.Cleanup(cancelAlloc)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(cancel)
	ctx, cancelTimeout := context.WithTimeout(ctx, timeout)
	t.Cleanup(cancelTimeout)
	var (
		mu     sync.Mutex
		thrown []string
	)
	require.NoError(t, chromedp.Listen(ctx, func(ev any) {
		if e, ok := ev.(*runtime.EventExceptionThrown); ok {
			what := e.ExceptionDetails.Text
			if e.ExceptionDetails.Exception != nil {
				what += " " + e.ExceptionDetails.Exception.Description
			}
			mu.Lock()
			defer mu.Unlock()
			thrown = append(thrown, what)
		}
	}))
	return ctx, func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), thrown...)
	}
}

// consoleErrors starts recording the errors the browser of ctx logs to
// its console (a resource that failed to load, a console.error call, a
// refusal by the Content-Security-Policy), and returns a function that
// lists those so far.
func consoleErrors(t *testing.T, ctx context.Context) func() []string {
	t.Helper()
	var (
		mu   sync.Mutex
		seen []string
	)
	require.NoError(t, chromedp.Listen(ctx, func(ev any) {
		mu.Lock()
		defer mu.Unlock()
		switch e := ev.(type) {
		case *log.EventEntryAdded:
			if e.Entry.Level == log.EntryLevelError {
				seen = append(seen, strings.TrimSpace(e.Entry.Text+" "+e.Entry.URL))
			}
		case *runtime.EventConsoleAPICalled:
			if e.Type == runtime.ConsoleAPICalledTypeError {
				what := "console.error:"
				for _, a := range e.Args {
					what += " " + string(a.Value) + a.Description
				}
				seen = append(seen, what)
			}
		}
	}))
	_, err := chromedp.Call(ctx, log.Enable, cdp.Empty{})
	require.NoError(t, err)
	return func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), seen...)
	}
}

func splitFields(s string) []string {
	var out []string
	start := -1
	for i, r := range s + " " {
		if r == ' ' {
			if start >= 0 {
				out = append(out, s[start:i])
			}
			start = -1
		} else if start < 0 {
			start = i
		}
	}
	return out
}

// assertFitsTheWindow checks that the page in ctx is no wider than its
// window: nothing cut off, no scrolling sideways.
func assertFitsTheWindow(t *testing.T, ctx context.Context) {
	t.Helper()
	widths, err := chromedp.Run(ctx, chromedp.Evaluate[[]int](`[document.documentElement.scrollWidth, window.innerWidth]`))
	require.NoError(t, err)
	require.Len(t, widths, 2)
	assert.LessOrEqual(t, widths[0], widths[1], "the page is no wider than the window")
}

// serveBoard serves a board of ev made with opts until the test ends, when
// the board, its server and ev are shut down.
func serveBoard(t *testing.T, ev *andon.Evaluator, opts andon.BoardOptions) *httptest.Server {
	t.Helper()
	return serveBoardBehind(t, ev, opts, func(h http.Handler) http.Handler { return h })
}

// serveBoardBehind is serveBoard with the board behind a middleware, mw.
func serveBoardBehind(t *testing.T, ev *andon.Evaluator, opts andon.BoardOptions, mw func(http.Handler) http.Handler) *httptest.Server {
	t.Helper()
	board, err := andon.NewBoard(ev, opts)
	require.NoError(t, err)
	srv := httptest.NewServer(mw(board))
	t.Cleanup(func() {
		require.NoError(t, board.Shutdown(context.Background()))
		srv.Close()
		require.NoError(t, ev.Shutdown(context.Background()))
	})
	return srv
}

// TestBoardLinksRunbooks: a rule's runbook is linked when its URL is
// http or https, the scheme in any case ("HTTPS://…" was shown without
// its link), or a path on the board's own site ("/runbooks/x"); a URL of
// another scheme (javascript:, data:), a relative one or a
// protocol-relative one ("//host/x", which was linked, leaving the site
// with the page's scheme, while a panel's row refused it) is never a link.
func TestBoardLinksRunbooks(t *testing.T) {
	runbooks := map[string]string{
		"Lower":      "https://runbooks.example/lower",
		"Upper":      "HTTPS://runbooks.example/upper",
		"Mixed":      "Http://runbooks.example/mixed",
		"SameSite":   "/runbooks/same-site",
		"Script":     "javascript:window.pwned=1",
		"ScriptCase": "JavaScript:window.pwned=1",
		"Data":       "data:text/html,<b>x</b>",
		"Relative":   "runbooks/relative",
		"SiteOf":     "//runbooks.example/protocol-relative",
		"Backslash":  `/\runbooks.example/backslash`,
	}
	linked := map[string]bool{"Lower": true, "Upper": true, "Mixed": true, "SameSite": true}
	var rules []andon.Rule
	for name, url := range runbooks {
		rules = append(rules, andon.Rule{Name: name, Severity: andon.Ticket, Condition: &switchCond{}, RunbookURL: url})
	}
	ev, err := andon.NewEvaluator(andon.EvaluatorOptions{Rules: rules})
	require.NoError(t, err)
	srv := serveBoard(t, ev, andon.BoardOptions{})
	ctx, thrown := browser(t, 60*time.Second)
	require.NoError(t, chromedp.Do(ctx, chromedp.Navigate(srv.URL+"/"),
		chromedp.WaitVisible(chromedp.CSS(`article[data-rule="Lower"]`))))
	for name, url := range runbooks {
		href, err := chromedp.Run(ctx, chromedp.Evaluate[string](
			`(function (a) { return a ? a.getAttribute("href") : ""; })(document.querySelector('article[data-rule="`+name+`"] a'))`))
		require.NoError(t, err, name)
		if linked[name] {
			assert.Equal(t, url, href, "%s: %s is linked", name, url)
		} else {
			assert.Empty(t, href, "%s: %s is not linked", name, url)
		}
	}
	assert.Empty(t, thrown(), "no error on the page")
}

// TestBoardShowsARulesDetail: a rule whose measurement says in words what
// its value cannot (why a line stopped) shows that on its tile, as text.
// The board sent it and the page never showed it: a stopped line's rule
// read "ON" and nothing more.
func TestBoardShowsARulesDetail(t *testing.T) {
	const evil = `<img src=x onerror="window.pwned=1">`
	line, err := jidoka.NewLine(jidoka.LineOptions{Name: "checkout"})
	require.NoError(t, err)
	ev, err := andon.NewEvaluator(andon.EvaluatorOptions{Rules: []andon.Rule{
		{Name: "LineStopped", Severity: andon.Page, Condition: andon.LineStopped(line)},
		{Name: "HighErrorRate", Severity: andon.Page, Condition: &switchCond{}},
	}})
	require.NoError(t, err)
	line.Stop("gateway errors " + evil)
	ev.EvaluateAt(context.Background(), time.Now())
	srv := serveBoard(t, ev, andon.BoardOptions{})
	ctx, thrown := browser(t, 60*time.Second)
	require.NoError(t, chromedp.Do(ctx, chromedp.Navigate(srv.URL+"/"),
		chromedp.WaitVisible(chromedp.CSS(`article[data-rule="HighErrorRate"]`))))
	details, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](
		`Array.from(document.querySelectorAll("article.rule")).map(a => a.dataset.rule + ": " + (a.querySelector(".detail") || {}).textContent)`))
	require.NoError(t, err)
	assert.ElementsMatch(t, []string{
		"LineStopped: line checkout stopped: gateway errors " + evil,
		"HighErrorRate: undefined", // no detail, no line for it
	}, details)
	// A rule without a Summary of its own is summed up by its detail: the
	// tile says it once, not in two lines one under the other.
	said, err := chromedp.Run(ctx, chromedp.Evaluate[int](
		`document.querySelector('article[data-rule="LineStopped"]').innerText.split("line checkout stopped").length - 1`))
	require.NoError(t, err)
	assert.Equal(t, 1, said, "the stopped line's tile says why once")
	imgs, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll("img").length`))
	require.NoError(t, err)
	assert.Zero(t, imgs, "no element made from the text")
	assert.Empty(t, thrown(), "no error on the page")
}
