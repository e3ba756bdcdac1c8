package browsertest_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/andon"
	"github.com/taipattern/taikit/jidoka"
)

// clockAhead makes the pages of ctx read a clock that the test can set
// ahead: window.ahead(ms) moves Date.now on by ms, as time passing (or a
// computer waking from sleep) would, while the page's timers keep their
// pace.
func clockAhead(t *testing.T, ctx context.Context) {
	t.Helper()
	_, err := chromedp.Call(ctx, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{Source: `(function () {
		var now = Date.now, by = 0;
		Date.now = function () { return now() + by; };
		window.ahead = function (ms) { by += ms; };
	})();`})
	require.NoError(t, err)
}

// waitFor waits until the JavaScript expression is true on the page, for
// at most d.
func waitFor(t *testing.T, ctx context.Context, expr string, d time.Duration) {
	t.Helper()
	_, err := chromedp.Run(ctx, chromedp.Poll[bool](expr, chromedp.WithPollingInterval(50*time.Millisecond), chromedp.WithPollingTimeout(d)))
	require.NoError(t, err, "waiting for %s", expr)
}

// TestBoardCordAgeGoesOn pulls the cord and lets time pass on the page's
// clock: the cord's "since" says so, as the line it stopped does, rather
// than the age it had when the page last heard of a change.
func TestBoardCordAgeGoesOn(t *testing.T) {
	_, ev, srv := cordBoard(t)
	require.True(t, ev.Pull(context.Background(), "jam at station 3", "alice"))
	ctx, thrown := browser(t, 60*time.Second)
	clockAhead(t, ctx)
	require.NoError(t, chromedp.Do(ctx, chromedp.Navigate(srv.URL+"/"),
		chromedp.WaitVisible(chromedp.CSS(`#cord[data-pulled="true"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#conn[data-mode="live"]`))))
	// Less than a stream may stay silent: the page has no reason to ask
	// the board for the state again.
	_, err := chromedp.Run(ctx, chromedp.Evaluate[any](`window.ahead(35 * 1000)`))
	require.NoError(t, err)
	// The page's clock has ticked once the line's age shows it.
	const age = `(function (e) { var m = /\((\d+)s\)/.exec(e.textContent); return m ? Number(m[1]) : -1; })`
	waitFor(t, ctx, age+`(document.querySelector('[data-line="checkout"] [data-since]')) >= 35`, 10*time.Second)
	text, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("#cord")))
	require.NoError(t, err)
	assert.Contains(t, text, "PULLED by alice: jam at station 3")
	cordAge, err := chromedp.Run(ctx, chromedp.Evaluate[int](age+`(document.getElementById("cord"))`))
	require.NoError(t, err)
	assert.GreaterOrEqual(t, cordAge, 35, "the cord's age goes on: %s", text)
	assert.Empty(t, thrown(), "no error on the page")
}

// TestBoardCordAnnouncesChangesOnly watches the cord's live region, which
// a screen reader reads out whenever it changes: it changes when the cord
// is pulled, not with every other change on the board nor every second
// as the cord's age goes on.
func TestBoardCordAnnouncesChangesOnly(t *testing.T) {
	errorRate := &switchCond{}
	ev, err := andon.NewEvaluator(andon.EvaluatorOptions{Rules: []andon.Rule{
		{Name: "HighErrorRate", Severity: andon.Page, Condition: errorRate}}})
	require.NoError(t, err)
	srv := serveBoard(t, ev, andon.BoardOptions{AllowCord: true})
	require.True(t, ev.Pull(context.Background(), "jam", "alice"))
	ctx, thrown := browser(t, 60*time.Second)
	require.NoError(t, chromedp.Do(ctx, chromedp.Navigate(srv.URL+"/"),
		chromedp.WaitVisible(chromedp.CSS(`#cord[data-pulled="true"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#conn[data-mode="live"]`))))
	live, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](
		`Array.from(document.querySelectorAll('#cord [aria-live], #cord[aria-live], #cord [role="status"], #cord [role="alert"]')).map(e => e.id)`))
	require.NoError(t, err)
	require.Contains(t, live, "cord-text", "the cord's status is announced")
	_, err = chromedp.Run(ctx, chromedp.Evaluate[any](`window.changes = 0;
		document.querySelectorAll('#cord-text, #cord[aria-live]').forEach(function (e) {
			new MutationObserver(function (m) { window.changes += m.length; }).observe(e, {childList: true, characterData: true, subtree: true});
		})`))
	require.NoError(t, err)
	for i := range 4 { // the rule fires and resolves: four renders
		errorRate.Set(i%2 == 0)
		ev.EvaluateAt(context.Background(), time.Now())
		state := "firing"
		if i%2 == 1 {
			state = "resolved"
		}
		waitFor(t, ctx, fmt.Sprintf(`document.querySelector('article[data-rule="HighErrorRate"]').dataset.state === %q`, state), 10*time.Second)
	}
	// Two ticks of the page's clock at least.
	_, err = chromedp.Run(ctx, chromedp.Evaluate[any](`window.ticked = 0; setTimeout(function () { window.ticked = 1; }, 2100)`))
	require.NoError(t, err)
	waitFor(t, ctx, `window.ticked === 1`, 10*time.Second)
	changes, err := chromedp.Run(ctx, chromedp.Evaluate[int](`window.changes`))
	require.NoError(t, err)
	assert.Zero(t, changes, "the cord's announcement is not made again while the cord is as it was")
	require.True(t, ev.Reset(context.Background()))
	waitFor(t, ctx, `document.getElementById("cord").dataset.pulled === "false"`, 10*time.Second)
	changes, err = chromedp.Run(ctx, chromedp.Evaluate[int](`window.changes`))
	require.NoError(t, err)
	assert.NotZero(t, changes, "the reset is announced")
	assert.Empty(t, thrown(), "no error on the page")
}

// silentStream serves a board whose event stream sends the state once and
// then nothing, as a connection that died without a word (a network that
// dropped, a proxy that lost its upstream) does; while down is set,
// api/state is answered 502 as a proxy with no upstream answers, and
// while gone is set it is not answered at all, as over a network that
// dropped, and counted in unanswered.
type silentStream struct {
	board      *andon.Board
	down       atomic.Bool
	gone       atomic.Bool
	unanswered atomic.Int32
}

func (s *silentStream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.URL.Path == "/api/events":
		body, err := json.Marshal(s.board.State())
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		_, _ = fmt.Fprintf(w, "event: state\ndata: %s\n\n", body)
		http.NewResponseController(w).Flush()
		<-r.Context().Done()
	case r.URL.Path == "/api/state" && s.down.Load():
		http.Error(w, "Bad Gateway", http.StatusBadGateway)
	case r.URL.Path == "/api/state" && s.gone.Load():
		s.unanswered.Add(1)
		<-r.Context().Done()
	default:
		s.board.ServeHTTP(w, r)
	}
}

// TestBoardNoticesASilentStream follows an event stream that goes silent
// without being closed, for longer than the board ever stays silent (it
// sends a keep-alive every 15s): the page stops calling itself live, and,
// the board not answering, says it is offline and greys the state it
// showed, rather than showing that state as current for ever.
func TestBoardNoticesASilentStream(t *testing.T) {
	s, ctx, thrown := openSilentStream(t)
	opacity, err := chromedp.Run(ctx, chromedp.Evaluate[string](`getComputedStyle(document.querySelector("main")).opacity`))
	require.NoError(t, err)
	assert.Equal(t, "1", opacity, "the state shown live is not greyed")
	s.down.Store(true)
	_, err = chromedp.Run(ctx, chromedp.Evaluate[any](`window.ahead(60 * 1000)`))
	require.NoError(t, err)
	waitFor(t, ctx, `document.getElementById("conn").dataset.mode === "offline"`, 15*time.Second)
	opacity, err = chromedp.Run(ctx, chromedp.Evaluate[string](`getComputedStyle(document.querySelector("main")).opacity`))
	require.NoError(t, err)
	assert.NotEqual(t, "1", opacity, "the state of an offline board is greyed")

	// The board answers again: the page polls it.
	s.down.Store(false)
	waitFor(t, ctx, `document.getElementById("conn").dataset.mode !== "offline"`, 15*time.Second)
	assert.Empty(t, thrown(), "no error on the page")
}

// TestBoardFitsANarrowWindow opens the board in a window as narrow as a
// phone's, as someone on call does: the rules, lines and panels fit, and
// the page is no wider than the window.
func TestBoardFitsANarrowWindow(t *testing.T) {
	line, err := jidoka.NewLine(jidoka.LineOptions{Name: "checkout"})
	require.NoError(t, err)
	var rules []andon.Rule
	for i := range 5 {
		rules = append(rules, andon.Rule{Name: fmt.Sprintf("Rule%02d", i), Severity: andon.Page, Condition: &switchCond{},
			Summary: "error rate over 5m"})
	}
	ev, err := andon.NewEvaluator(andon.EvaluatorOptions{Cord: andon.CordOptions{Hooks: []andon.Hook{andon.StopLine(line)}}, Rules: rules})
	require.NoError(t, err)
	board, err := andon.NewBoard(ev, andon.BoardOptions{Title: "Payments andon", AllowCord: true, Lines: []andon.Line{line},
		Panels: []andon.Panel{{Title: "Jobs", Columns: []string{"ID", "Stage", "Traffic"},
			Rows: func() []andon.PanelRow { return []andon.PanelRow{{Cells: []string{"dpl_1", "canary", "5%"}}} }}}})
	require.NoError(t, err)
	srv := httptest.NewServer(board)
	t.Cleanup(func() {
		require.NoError(t, board.Shutdown(context.Background()))
		srv.Close()
		require.NoError(t, ev.Shutdown(context.Background()))
	})
	ev.EvaluateAt(context.Background(), time.Now())
	ctx, thrown := browser(t, 60*time.Second)
	require.NoError(t, chromedp.Do(ctx, chromedp.EmulateViewport(360, 740), chromedp.Navigate(srv.URL+"/"),
		chromedp.WaitVisible(chromedp.CSS(`article[data-rule="Rule04"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#conn[data-mode="live"]`))))
	assertFitsTheWindow(t, ctx)
	assert.Empty(t, thrown(), "no error on the page")
}

// TestBoardKeepAliveKeepsThePageLive follows a board whose state does not
// change: the keep-alive the board sends after 15s tells the page that the
// stream still lives, so that a page that heard nothing else for longer
// than a stream may stay silent stays live.
func TestBoardKeepAliveKeepsThePageLive(t *testing.T) {
	ev, err := andon.NewEvaluator(andon.EvaluatorOptions{Rules: []andon.Rule{
		{Name: "HighErrorRate", Severity: andon.Page, Condition: &switchCond{}}}})
	require.NoError(t, err)
	srv := serveBoard(t, ev, andon.BoardOptions{Refresh: time.Hour})
	ctx, thrown := browser(t, 90*time.Second)
	clockAhead(t, ctx)
	require.NoError(t, chromedp.Do(ctx, chromedp.Navigate(srv.URL+"/"),
		chromedp.WaitVisible(chromedp.CSS(`#conn[data-mode="live"]`))))
	_, err = chromedp.Run(ctx, chromedp.Evaluate[any](`window.keptAlive = 0;
		window.ahead(30 * 1000); // a stream may be silent that long
		new EventSource("api/events").addEventListener("keep-alive", function () { window.keptAlive++; })`))
	require.NoError(t, err)
	// The page's own stream is older than the test's: it has had its
	// keep-alive once the test's has.
	waitFor(t, ctx, `window.keptAlive > 0`, 30*time.Second)
	_, err = chromedp.Run(ctx, chromedp.Evaluate[any](`window.ahead(30 * 1000)`))
	require.NoError(t, err)
	// Two ticks of the page's clock at least.
	_, err = chromedp.Run(ctx, chromedp.Evaluate[any](`window.ticked = 0; setTimeout(function () { window.ticked = 1; }, 2100)`))
	require.NoError(t, err)
	waitFor(t, ctx, `window.ticked === 1`, 10*time.Second)
	mode, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.getElementById("conn").dataset.mode`))
	require.NoError(t, err)
	assert.Equal(t, "live", mode, "60s after the last state, 30s after the keep-alive")
	assert.Empty(t, thrown(), "no error on the page")
}

// TestBoardAnnouncesTheFiringCount watches the board's counts of firing
// and pending rules, a live region a screen reader reads out when a rule
// fires: it changes when a count does, not with every value the rules
// measure.
func TestBoardAnnouncesTheFiringCount(t *testing.T) {
	errorRate := &switchCond{}
	ev, err := andon.NewEvaluator(andon.EvaluatorOptions{Rules: []andon.Rule{
		{Name: "HighErrorRate", Severity: andon.Page, Condition: errorRate}}})
	require.NoError(t, err)
	srv := serveBoard(t, ev, andon.BoardOptions{})
	ctx, thrown := browser(t, 60*time.Second)
	require.NoError(t, chromedp.Do(ctx, chromedp.Navigate(srv.URL+"/"),
		chromedp.WaitVisible(chromedp.CSS(`article[data-rule="HighErrorRate"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#conn[data-mode="live"]`))))
	role, err := chromedp.Run(ctx, chromedp.Evaluate[string](
		`(function (e) { return e.getAttribute("role") || e.getAttribute("aria-live") || ""; })(document.getElementById("summary"))`))
	require.NoError(t, err)
	assert.NotEmpty(t, role, "the counts are a live region")
	_, err = chromedp.Run(ctx, chromedp.Evaluate[any](`window.changes = 0;
		new MutationObserver(function (m) { window.changes += m.length; }).observe(document.getElementById("summary"), {childList: true, characterData: true, subtree: true})`))
	require.NoError(t, err)
	now := time.Now()
	for i := range 3 { // a point more on the sparkline each time
		now = now.Add(time.Minute)
		ev.EvaluateAt(context.Background(), now)
		waitFor(t, ctx, fmt.Sprintf(`(function (p) { return p !== null && p.getAttribute("points").split(" ").length === %d; })(
			document.querySelector('article[data-rule="HighErrorRate"] polyline'))`, i+1), 10*time.Second)
	}
	changes, err := chromedp.Run(ctx, chromedp.Evaluate[int](`window.changes`))
	require.NoError(t, err)
	assert.Zero(t, changes, "the counts are not announced again while they stay as they were")
	errorRate.Set(true)
	ev.EvaluateAt(context.Background(), now.Add(time.Minute))
	waitFor(t, ctx, `document.getElementById("summary").textContent.startsWith("1 firing")`, 10*time.Second)
	assert.Empty(t, thrown(), "no error on the page")
}

// racingSources serves a board whose first poll of api/state is answered
// with the state it had when it was asked, but only once released, and
// whose event stream sends the state once sent, ends once ended, and is
// then never answered again, as a stream that reconnects through a network
// that has dropped is not.
type racingSources struct {
	board   *andon.Board
	asked   chan struct{} // closed when the first poll is asked
	release chan struct{} // closed to answer it
	answer  chan struct{} // closed once it is answered
	send    chan struct{} // closed to send the first stream's state
	end     chan struct{} // closed to end the first stream
	polls   atomic.Int32
	streams atomic.Int32
}

func (s *racingSources) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/api/state":
		if s.polls.Add(1) != 1 {
			s.board.ServeHTTP(w, r)
			return
		}
		body, err := json.Marshal(s.board.State())
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		close(s.asked)
		select {
		case <-s.release:
		case <-r.Context().Done():
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(body)
		http.NewResponseController(w).Flush()
		close(s.answer)
	case "/api/events":
		if s.streams.Add(1) != 1 {
			<-r.Context().Done()
			return
		}
		select {
		case <-s.send:
		case <-r.Context().Done():
			return
		}
		body, err := json.Marshal(s.board.State())
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		_, _ = fmt.Fprintf(w, "event: state\ndata: %s\n\n", body)
		http.NewResponseController(w).Flush()
		select {
		case <-s.end:
		case <-r.Context().Done():
		}
	default:
		s.board.ServeHTTP(w, r)
	}
}

// TestBoardOlderPollDoesNotOverwriteTheStream asks the board for its
// state by a poll and by its event stream at once, the poll answered
// last, after the stream has delivered a newer state and broken: the page
// keeps the newer state, and says that it is reconnecting, rather than
// showing the older state as one it polls.
func TestBoardOlderPollDoesNotOverwriteTheStream(t *testing.T) {
	errorRate := &switchCond{}
	ev, err := andon.NewEvaluator(andon.EvaluatorOptions{Rules: []andon.Rule{
		{Name: "HighErrorRate", Severity: andon.Page, Condition: errorRate}}})
	require.NoError(t, err)
	board, err := andon.NewBoard(ev, andon.BoardOptions{})
	require.NoError(t, err)
	s := &racingSources{board: board, asked: make(chan struct{}), release: make(chan struct{}),
		answer: make(chan struct{}), send: make(chan struct{}), end: make(chan struct{})}
	srv := httptest.NewServer(s)
	t.Cleanup(func() {
		srv.Close()
		require.NoError(t, board.Shutdown(context.Background()))
		require.NoError(t, ev.Shutdown(context.Background()))
	})
	ev.EvaluateAt(context.Background(), time.Now())
	ctx, thrown := browser(t, 60*time.Second)
	require.NoError(t, chromedp.Do(ctx, chromedp.Navigate(srv.URL+"/")))
	select {
	case <-s.asked:
	case <-ctx.Done():
		t.Fatal("the page did not poll")
	}
	// The rule fires after the poll was asked: the stream shows it.
	errorRate.Set(true)
	ev.EvaluateAt(context.Background(), time.Now())
	close(s.send)
	waitFor(t, ctx, `(function (r) { return r !== null && r.dataset.state === "firing"; })(document.querySelector('article[data-rule="HighErrorRate"]'))`, 10*time.Second)
	waitFor(t, ctx, `document.getElementById("conn").dataset.mode === "live"`, 10*time.Second)
	// The stream breaks; the browser tries it again, unanswered.
	close(s.end)
	waitFor(t, ctx, `document.getElementById("conn").dataset.mode === "offline"`, 10*time.Second)
	// The older poll is answered now.
	close(s.release)
	<-s.answer
	_, err = chromedp.Run(ctx, chromedp.Evaluate[any](`window.settled = 0; setTimeout(function () { window.settled = 1; }, 1000)`))
	require.NoError(t, err)
	waitFor(t, ctx, `window.settled === 1`, 10*time.Second)
	got, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](`[document.querySelector('article[data-rule="HighErrorRate"]').dataset.state, document.getElementById("conn").dataset.mode]`))
	require.NoError(t, err)
	assert.Equal(t, []string{"firing", "offline"}, got, "the newer state, and the stream being reconnected")
	assert.Empty(t, thrown(), "no error on the page")
}

// TestBoardNoticesASilentStreamOverASilentNetwork follows an event stream
// that goes silent, over a network where the page's polls go unanswered
// too, as they do when it dropped: the page says at once that it is
// reconnecting and greys the state it showed, rather than calling it live
// until a poll answers, and it asks for one poll at a time, rather than
// piling up one more every two seconds to be sent all at once when the
// network is back.
func TestBoardNoticesASilentStreamOverASilentNetwork(t *testing.T) {
	s, ctx, thrown := openSilentStream(t)
	s.gone.Store(true)
	_, err := chromedp.Run(ctx, chromedp.Evaluate[any](`window.ahead(60 * 1000)`))
	require.NoError(t, err)
	waitFor(t, ctx, `document.getElementById("conn").dataset.mode === "offline"`, 15*time.Second)
	opacity, err := chromedp.Run(ctx, chromedp.Evaluate[string](`getComputedStyle(document.querySelector("main")).opacity`))
	require.NoError(t, err)
	assert.NotEqual(t, "1", opacity, "the state of a board out of reach is greyed")
	// Three polling periods at least.
	_, err = chromedp.Run(ctx, chromedp.Evaluate[any](`window.waited = 0; setTimeout(function () { window.waited = 1; }, 6500)`))
	require.NoError(t, err)
	waitFor(t, ctx, `window.waited === 1`, 15*time.Second)
	assert.Equal(t, int32(1), s.unanswered.Load(), "one poll at a time")
	assert.Empty(t, thrown(), "no error on the page")
}

// openSilentStream opens, in a browser whose clock the test may move on
// (clockAhead), the board of one rule behind a silentStream, and waits
// for the page to be live.
func openSilentStream(t *testing.T) (*silentStream, context.Context, func() []string) {
	t.Helper()
	ev, err := andon.NewEvaluator(andon.EvaluatorOptions{Rules: []andon.Rule{
		{Name: "HighErrorRate", Severity: andon.Page, Condition: &switchCond{}}}})
	require.NoError(t, err)
	board, err := andon.NewBoard(ev, andon.BoardOptions{})
	require.NoError(t, err)
	s := &silentStream{board: board}
	srv := httptest.NewServer(s)
	t.Cleanup(func() {
		srv.Close()
		require.NoError(t, board.Shutdown(context.Background()))
		require.NoError(t, ev.Shutdown(context.Background()))
	})
	ctx, thrown := browser(t, 60*time.Second)
	clockAhead(t, ctx)
	require.NoError(t, chromedp.Do(ctx, chromedp.Navigate(srv.URL+"/"),
		chromedp.WaitVisible(chromedp.CSS(`article[data-rule="HighErrorRate"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#conn[data-mode="live"]`))))
	return s, ctx, thrown
}

// TestBoardUpdatesOnlyWhatChanged changes one thing at a time on a board
// with two rules, a line, a breaker, a panel and a history: the page
// changes the nodes of what changed and keeps the others, so that a card
// that did not change is the same DOM node after the event (a link in it
// keeps its focus, a text selected in it stays selected), rather than
// drawing every card again at every event.
func TestBoardUpdatesOnlyWhatChanged(t *testing.T) {
	a, b := &switchCond{}, &switchCond{}
	line, err := jidoka.NewLine(jidoka.LineOptions{Name: "checkout"})
	require.NoError(t, err)
	breaker, err := jidoka.NewBreaker(jidoka.BreakerOptions{Name: "gateway", OpenDuration: time.Hour})
	require.NoError(t, err)
	ev, err := andon.NewEvaluator(andon.EvaluatorOptions{Rules: []andon.Rule{
		{Name: "A", Severity: andon.Page, Condition: a},
		{Name: "B", Severity: andon.Ticket, Condition: b, RunbookURL: "https://runbooks.example/b"}}})
	require.NoError(t, err)
	var stage atomic.Value
	stage.Store("canary")
	board, err := andon.NewBoard(ev, andon.BoardOptions{Refresh: time.Hour, Lines: []andon.Line{line}, Breakers: []andon.Breaker{breaker},
		Panels: []andon.Panel{{Title: "Jobs", Columns: []string{"ID", "Stage"},
			Rows: func() []andon.PanelRow { return []andon.PanelRow{{Cells: []string{"dpl_1", stage.Load().(string)}}} }}}})
	require.NoError(t, err)
	srv := httptest.NewServer(board)
	t.Cleanup(func() {
		require.NoError(t, board.Shutdown(context.Background()))
		srv.Close()
		require.NoError(t, ev.Shutdown(context.Background()))
	})
	now := time.Now()
	b.Set(true) // a transition in the history
	ev.EvaluateAt(context.Background(), now)
	ctx, thrown := browser(t, 60*time.Second)
	require.NoError(t, chromedp.Do(ctx, chromedp.Navigate(srv.URL+"/"),
		chromedp.WaitVisible(chromedp.CSS(`article[data-rule="B"][data-state="firing"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#conn[data-mode="live"]`))))

	// marked are the elements of the board's lists as they were drawn
	// first; kept reports whether the elements matching a selector are
	// among them.
	_, err = chromedp.Run(ctx, chromedp.Evaluate[any](`window.marked = Array.from(document.querySelectorAll(
		'#rules, #rules *, #lines *, #breakers *, #history *, #panels *'));
		window.kept = function (sel) { return Array.from(document.querySelectorAll(sel)).every(function (e) { return window.marked.indexOf(e) >= 0; }); };
		document.querySelector('article[data-rule="B"] a').focus()`))
	require.NoError(t, err)
	kept := func(sel string) bool {
		t.Helper()
		ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool](fmt.Sprintf(`window.kept(%q)`, sel)))
		require.NoError(t, err)
		return ok
	}

	// A panel's rows change: nothing else does.
	stage.Store("prod")
	board.Notify()
	waitFor(t, ctx, `Array.from(document.querySelectorAll('section[data-panel="Jobs"] td')).some(function (td) { return td.textContent === "prod"; })`, 10*time.Second)
	for _, sel := range []string{"#rules, #rules *", "#lines *", "#breakers *", "#history *"} {
		assert.True(t, kept(sel), "an event for a panel keeps the nodes of %s", sel)
	}
	assert.True(t, kept(`section[data-panel="Jobs"], section[data-panel="Jobs"] table, section[data-panel="Jobs"] thead *`),
		"the panel's section, table and heading are kept")
	focused, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.activeElement.textContent`))
	require.NoError(t, err)
	assert.Equal(t, "runbook", focused, "the focused link keeps its focus")

	// Rule A fires: its card changes, in place; B's, the line's and the
	// breaker's are kept, and so are the history's earlier entries.
	a.Set(true)
	ev.EvaluateAt(context.Background(), now.Add(time.Minute))
	waitFor(t, ctx, `document.querySelector('article[data-rule="A"]').dataset.state === "firing"`, 10*time.Second)
	assert.True(t, kept(`article[data-rule="A"], article[data-rule="B"], article[data-rule="B"] .head *, article[data-rule="B"] .meta *`),
		"the cards are kept; B's parts that did not change too")
	assert.True(t, kept("#lines *, #breakers *"))
	items, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll('#history li').length`))
	require.NoError(t, err)
	assert.Equal(t, 2, items)
	assert.True(t, kept("#history li:last-child"), "the earlier transition's entry is kept")
	focused, err = chromedp.Run(ctx, chromedp.Evaluate[string](`document.activeElement.textContent`))
	require.NoError(t, err)
	assert.Equal(t, "runbook", focused, "the focused link keeps its focus")
	assert.Empty(t, thrown(), "no error on the page")
}
