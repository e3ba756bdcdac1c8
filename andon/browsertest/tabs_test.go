package browsertest_test

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/andon"
	"github.com/taipattern/taikit/jidoka"
)

// streamCounter serves a board, counting the event streams it is serving
// and the most it served at once.
type streamCounter struct {
	h        http.Handler
	now, max atomic.Int32
}

func (s *streamCounter) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if strings.HasSuffix(r.URL.Path, "/api/events") {
		n := s.now.Add(1)
		defer s.now.Add(-1)
		for m := s.max.Load(); n > m && !s.max.CompareAndSwap(m, n); m = s.max.Load() {
		}
	}
	s.h.ServeHTTP(w, r)
}

// tabs opens pages in the browser of ctx, each a tab of its own, and
// gathers the JavaScript exceptions thrown on them.
type tabs struct {
	t      *testing.T
	ctx    context.Context
	mu     sync.Mutex
	thrown []string
}

// open opens a tab at url, running script in it before the page's own,
// and returns its context and a function that closes it. It waits at most
// 10s for the page to load.
func (b *tabs) open(url, script string) (context.Context, context.CancelFunc) {
	b.t.Helper()
	tab, cancel := chromedp.NewContext(b.ctx)
	b.t.Cleanup(cancel)
	require.NoError(b.t, chromedp.Do(tab)) // the tab opens
	require.NoError(b.t, chromedp.Listen(tab, func(ev any) {
		if e, ok := ev.(*runtime.EventExceptionThrown); ok {
			b.mu.Lock()
			defer b.mu.Unlock()
			b.thrown = append(b.thrown, e.ExceptionDetails.Text)
		}
	}))
	if script != "" {
		_, err := chromedp.Call(tab, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{Source: script})
		require.NoError(b.t, err)
	}
	load, stop := context.WithTimeout(tab, 10*time.Second)
	defer stop()
	require.NoError(b.t, chromedp.Do(load, chromedp.Navigate(url)), "the page loads")
	return tab, cancel
}

func (b *tabs) exceptions() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.thrown...)
}

// TestBoardTabsShareOneStream opens eight tabs of a board served over
// HTTP/1.1, where a browser keeps at most six connections to a host and
// each event stream holds one: the tabs share one stream, so every tab
// loads and follows the board (the seventh stalled, its page never
// loaded), and the server serves one stream, two for a moment at most.
// The tab that streams is closed, and another takes its place. It runs on
// 127.0.0.1, a secure context where the page has Web Locks, and on a host
// name over plain HTTP, where it has not.
func TestBoardTabsShareOneStream(t *testing.T) {
	for _, tc := range []struct {
		name, host string
		locks      bool
	}{
		{name: "localhost", locks: true},
		{name: "plain http host", host: "board.test"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			errorRate := &switchCond{}
			line, err := jidoka.NewLine(jidoka.LineOptions{Name: "checkout"})
			require.NoError(t, err)
			ev, err := andon.NewEvaluator(andon.EvaluatorOptions{
				Cord:  andon.CordOptions{Hooks: []andon.Hook{andon.StopLine(line)}},
				Rules: []andon.Rule{{Name: "HighErrorRate", Severity: andon.Page, Condition: errorRate}}})
			require.NoError(t, err)
			streams := &streamCounter{}
			srv := serveBoardBehind(t, ev, andon.BoardOptions{Prefix: "/andon", Lines: []andon.Line{line}},
				func(h http.Handler) http.Handler { streams.h = h; return streams })
			require.False(t, srv.EnableHTTP2)
			url := srv.URL + "/andon/"
			var opts []chromedp.ExecAllocatorOption
			if tc.host != "" {
				url = strings.Replace(url, "127.0.0.1", tc.host, 1)
				opts = append(opts, chromedp.Flag("host-resolver-rules", "MAP "+tc.host+" 127.0.0.1"))
			}
			ctx, _ := browser(t, 150*time.Second, opts...)
			b := &tabs{t: t, ctx: ctx}
			pages := make([]context.Context, 8)
			closers := make([]context.CancelFunc, 8)
			for i := range pages {
				pages[i], closers[i] = b.open(url, "")
				waitFor(t, pages[i], `document.getElementById("conn").dataset.mode === "live"`, 10*time.Second)
			}
			locks, err := chromedp.Run(pages[0], chromedp.Evaluate[bool](`Boolean(navigator.locks)`))
			require.NoError(t, err)
			require.Equal(t, tc.locks, locks, "the page has Web Locks")
			assert.LessOrEqual(t, streams.max.Load(), int32(2), "the tabs share one stream")

			// every checks that each open tab shows what the expression says
			// within a few seconds.
			every := func(expr string) {
				t.Helper()
				for i, p := range pages {
					if p != nil {
						_, err := chromedp.Run(p, chromedp.Poll[bool](expr, chromedp.WithPollingInterval(50*time.Millisecond),
							chromedp.WithPollingTimeout(5*time.Second)))
						require.NoError(t, err, "tab %d: %s", i, expr)
					}
				}
			}
			errorRate.Set(true)
			ev.EvaluateAt(context.Background(), time.Now())
			every(`(function (r) { return r !== null && r.dataset.state === "firing"; })(document.querySelector('article[data-rule="HighErrorRate"]'))`)

			// The first tab, the one that streams, closes: another streams
			// for the rest.
			closers[0]()
			pages[0] = nil
			require.True(t, ev.Pull(context.Background(), "jam at station 3", "alice"))
			every(`document.getElementById("cord").dataset.pulled === "true" && document.querySelector('[data-line="checkout"]').dataset.stopped === "true"`)
			errorRate.Set(false)
			ev.EvaluateAt(context.Background(), time.Now())
			every(`document.querySelector('article[data-rule="HighErrorRate"]').dataset.state === "resolved"`)
			every(`document.getElementById("conn").dataset.mode === "live"`)
			assert.LessOrEqual(t, streams.max.Load(), int32(2), "the tabs share one stream")
			assert.Equal(t, int32(1), streams.now.Load(), "one stream for the tabs left")
			assert.Empty(t, b.exceptions(), "no error on the pages")
		})
	}
}

// TestBoardTabWithoutBroadcastChannel opens two tabs of a board, one of a
// browser without BroadcastChannel: that one follows the board on a
// stream of its own, and both tabs show a change.
func TestBoardTabWithoutBroadcastChannel(t *testing.T) {
	errorRate := &switchCond{}
	ev, err := andon.NewEvaluator(andon.EvaluatorOptions{Rules: []andon.Rule{
		{Name: "HighErrorRate", Severity: andon.Page, Condition: errorRate}}})
	require.NoError(t, err)
	streams := &streamCounter{}
	srv := serveBoardBehind(t, ev, andon.BoardOptions{}, func(h http.Handler) http.Handler { streams.h = h; return streams })
	ctx, _ := browser(t, 60*time.Second)
	b := &tabs{t: t, ctx: ctx}
	shared, _ := b.open(srv.URL+"/", "")
	waitFor(t, shared, `document.getElementById("conn").dataset.mode === "live"`, 10*time.Second)
	alone, _ := b.open(srv.URL+"/", `delete window.BroadcastChannel;`)
	waitFor(t, alone, `document.getElementById("conn").dataset.mode === "live"`, 10*time.Second)
	assert.Equal(t, int32(2), streams.now.Load(), "the tab without BroadcastChannel has a stream of its own")
	errorRate.Set(true)
	ev.EvaluateAt(context.Background(), time.Now())
	for _, p := range []context.Context{shared, alone} {
		waitFor(t, p, `document.querySelector('article[data-rule="HighErrorRate"]').dataset.state === "firing"`, 5*time.Second)
	}
	assert.Empty(t, b.exceptions(), "no error on the pages")
}

// TestBoardTabsShareThePolls opens three tabs of a read-only board that
// cannot stream (a middleware in front hides http.Flusher): the tab that
// follows the board polls, and every tab says it polls, shows a change
// and shows no cord to pull, as a lone tab does.
func TestBoardTabsShareThePolls(t *testing.T) {
	errorRate := &switchCond{}
	ev, err := andon.NewEvaluator(andon.EvaluatorOptions{Rules: []andon.Rule{
		{Name: "HighErrorRate", Severity: andon.Page, Condition: errorRate}}})
	require.NoError(t, err)
	srv := serveBoardBehind(t, ev, andon.BoardOptions{}, func(board http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { board.ServeHTTP(hidingWriter{w}, r) })
	})
	ctx, _ := browser(t, 90*time.Second)
	b := &tabs{t: t, ctx: ctx}
	var pages []context.Context
	for range 3 {
		p, _ := b.open(srv.URL+"/", "")
		waitFor(t, p, `document.getElementById("conn").dataset.mode === "polling"`, 10*time.Second)
		pages = append(pages, p)
	}
	errorRate.Set(true)
	ev.EvaluateAt(context.Background(), time.Now())
	for i, p := range pages {
		waitFor(t, p, `document.querySelector('article[data-rule="HighErrorRate"]').dataset.state === "firing"`, 5*time.Second)
		got, err := chromedp.Run(p, chromedp.Evaluate[[]string](`[document.getElementById("conn").dataset.mode,
			String(document.getElementById("cord-form").hidden), String(document.getElementById("cord-reset").hidden)]`))
		require.NoError(t, err)
		assert.Equal(t, []string{"polling", "true", "true"}, got, "tab %d polls, and shows no cord", i)
	}
	assert.Empty(t, b.exceptions(), "no error on the pages")
}
