package andon_test

import (
	"bufio"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/andon"
)

// jobs is a panel's data that a test changes.
type jobs struct {
	mu   sync.Mutex
	rows []andon.PanelRow
}

func (j *jobs) set(rows ...andon.PanelRow) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.rows = rows
}

func (j *jobs) get() []andon.PanelRow {
	j.mu.Lock()
	defer j.mu.Unlock()
	return append([]andon.PanelRow(nil), j.rows...)
}

func boardState(t *testing.T, b *andon.Board) andon.BoardState {
	t.Helper()
	rec := httptest.NewRecorder()
	b.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/api/state", nil))
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	var st andon.BoardState
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &st))
	return st
}

func TestBoardPanelOptions(t *testing.T) {
	e := newEvaluator(t, andon.EvaluatorOptions{})
	rows := func() []andon.PanelRow { return nil }
	for _, c := range []struct {
		opts andon.BoardOptions
		want string
	}{
		{andon.BoardOptions{Panels: []andon.Panel{{Columns: []string{"a"}, Rows: rows}}}, "Panels[0] has no Title"},
		{andon.BoardOptions{Panels: []andon.Panel{{Title: "Jobs", Rows: rows}}}, `Panels[0] ("Jobs") has no Columns`},
		{andon.BoardOptions{Panels: []andon.Panel{{Title: "Jobs", Columns: []string{"a"}}}}, `Panels[0] ("Jobs") has no Rows function`},
		{andon.BoardOptions{Panels: []andon.Panel{{Title: "Jobs", Columns: []string{"a"}, Rows: rows}, {Title: "Jobs", Columns: []string{"b"}, Rows: rows}}},
			`two panels titled "Jobs"`},
		{andon.BoardOptions{MaxStreams: -1}, "MaxStreams -1 is negative"},
		{andon.BoardOptions{WriteTimeout: -time.Second}, "WriteTimeout -1s is negative"},
	} {
		_, err := andon.NewBoard(e, c.opts)
		assert.ErrorContains(t, err, c.want)
	}
}

func TestBoardPanels(t *testing.T) {
	e := newEvaluator(t, andon.EvaluatorOptions{})
	var j jobs
	many := make([]andon.PanelRow, andon.MaxPanelRows+7)
	for i := range many {
		many[i] = andon.PanelRow{Cells: []string{"job"}}
	}
	var log strings.Builder
	b, err := andon.NewBoard(e, andon.BoardOptions{Logger: slog.New(slog.NewTextHandler(&log, nil)), Panels: []andon.Panel{
		{Title: "Jobs", Columns: []string{"ID", "Stage", "Share"}, Rows: j.get},
		{Title: "Many", Columns: []string{"Job"}, Rows: func() []andon.PanelRow { return many }, Empty: "no jobs"},
		{Title: "Broken", Columns: []string{"Job"}, Rows: func() []andon.PanelRow { panic("boom") }},
	}})
	require.NoError(t, err)

	st := boardState(t, b)
	require.Len(t, st.Panels, 3)
	assert.Equal(t, andon.BoardPanel{Title: "Jobs", Columns: []string{"ID", "Stage", "Share"}, Rows: []andon.PanelRow{}, Empty: "none"}, st.Panels[0])
	assert.Len(t, st.Panels[1].Rows, andon.MaxPanelRows)
	assert.Equal(t, 7, st.Panels[1].More)
	assert.Equal(t, "no jobs", st.Panels[1].Empty)
	assert.Equal(t, "this panel failed; see the log", st.Panels[2].Error, "a panicking panel leaves the board serving")
	assert.Empty(t, st.Panels[2].Rows)
	assert.Contains(t, log.String(), "boom")

	j.set(
		andon.PanelRow{Cells: []string{"a"}, Color: "red", Link: "/jobs/a"},
		andon.PanelRow{Cells: []string{"b", "canary", "5%", "extra"}, Color: "purple", Link: "javascript:alert(1)"},
		andon.PanelRow{Cells: []string{"c"}, Link: "//evil.example/x"},
		andon.PanelRow{Cells: []string{"d"}, Link: `/\evil.example`},
		andon.PanelRow{Cells: []string{"e"}, Color: "green", Link: "https://ci.example/e"},
		andon.PanelRow{Cells: []string{"f"}, Link: "/\t/evil.example"},
		andon.PanelRow{Cells: []string{"g"}, Link: "/\n/evil.example"},
	)
	got := boardState(t, b).Panels[0].Rows
	assert.Equal(t, []andon.PanelRow{
		{Cells: []string{"a", "", ""}, Color: "red", Link: "/jobs/a"},
		{Cells: []string{"b", "canary", "5%"}},
		{Cells: []string{"c", "", ""}},
		{Cells: []string{"d", "", ""}},
		{Cells: []string{"e", "", ""}, Color: "green", Link: "https://ci.example/e"},
		{Cells: []string{"f", "", ""}},
		{Cells: []string{"g", "", ""}},
	}, got, "cells padded and cut to the columns; unknown colours and unsafe links dropped")
}

func TestBoardNotifyWakesStreams(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newEvaluator(t, andon.EvaluatorOptions{})
		var j jobs
		b, err := andon.NewBoard(e, andon.BoardOptions{Refresh: time.Hour,
			Panels: []andon.Panel{{Title: "Jobs", Columns: []string{"ID"}, Rows: j.get}}})
		require.NoError(t, err)
		w, stop := stream(b)
		defer stop()
		synctest.Wait()
		require.Equal(t, []string{"state"}, w.kinds())

		j.set(andon.PanelRow{Cells: []string{"job-1"}})
		synctest.Wait()
		assert.Equal(t, []string{"state"}, w.kinds(), "a change nobody announced waits for the refresh")
		b.Notify()
		synctest.Wait()
		require.Equal(t, []string{"state", "state"}, w.kinds(), "Notify sends the state at once")
		w.mu.Lock()
		assert.Contains(t, w.writes[1], `"cells":["job-1"]`)
		w.mu.Unlock()

		b.Notify()
		synctest.Wait()
		assert.Len(t, w.kinds(), 2, "nothing changed: nothing sent")
		require.NoError(t, b.Shutdown(context.Background()))
	})
}

func TestBoardMaxStreams(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newEvaluator(t, andon.EvaluatorOptions{})
		b, err := andon.NewBoard(e, andon.BoardOptions{MaxStreams: 2})
		require.NoError(t, err)
		_, stop1 := stream(b)
		_, stop2 := stream(b)
		synctest.Wait()

		rec := httptest.NewRecorder()
		b.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/api/events", nil))
		assert.Equal(t, http.StatusServiceUnavailable, rec.Code)
		assert.Equal(t, "5", rec.Header().Get("Retry-After"))
		assert.Contains(t, rec.Body.String(), "too many live pages; poll api/state")

		stop1()
		w, stop3 := stream(b)
		synctest.Wait()
		assert.Equal(t, []string{"state"}, w.kinds(), "a stream that ended makes room")
		stop2()
		stop3()
		require.NoError(t, b.Shutdown(context.Background()))
	})
}

// TestBoardStreamOutlivesServerWriteTimeout serves a board from a real
// http.Server whose WriteTimeout is shorter than the stream: each event's
// own deadline keeps the stream going, where the server's would cut it.
func TestBoardStreamOutlivesServerWriteTimeout(t *testing.T) {
	e := newEvaluator(t, andon.EvaluatorOptions{})
	var j jobs
	b, err := andon.NewBoard(e, andon.BoardOptions{Refresh: 100 * time.Millisecond,
		Panels: []andon.Panel{{Title: "Jobs", Columns: []string{"ID"}, Rows: j.get}}})
	require.NoError(t, err)
	srv := httptest.NewUnstartedServer(b)
	srv.Config.WriteTimeout = 300 * time.Millisecond
	srv.Start()
	defer srv.Close()
	defer func() { require.NoError(t, b.Shutdown(context.Background())) }()

	resp, err := http.Get(srv.URL + "/api/events")
	require.NoError(t, err)
	defer resp.Body.Close()
	r := bufio.NewReader(resp.Body)
	start := time.Now()
	events := 0
	// Past three times the server's WriteTimeout, and a few events in.
	for i := 0; time.Since(start) < 900*time.Millisecond || events < 5; i++ {
		j.set(andon.PanelRow{Cells: []string{strings.Repeat("x", i)}})
		b.Notify()
		for {
			line, err := r.ReadString('\n')
			require.NoError(t, err, "the stream was cut after %v", time.Since(start))
			if strings.HasPrefix(line, "event: state") {
				break
			}
		}
		events++
		time.Sleep(50 * time.Millisecond)
	}
}

// TestBoardKeepsACopyOfItsOptions builds a board and then changes the
// slices its options were given, as a program building a board per
// region from one set of slices does: the board shows what NewBoard
// checked.
func TestBoardKeepsACopyOfItsOptions(t *testing.T) {
	e := newEvaluator(t, andon.EvaluatorOptions{})
	rows := func() []andon.PanelRow { return []andon.PanelRow{{Cells: []string{"1", "2"}}} }
	lines := []andon.Line{newLine("checkout")}
	breakers := []andon.Breaker{newBreaker(t, "gateway")}
	columns := []string{"ID", "Stage"}
	panels := []andon.Panel{{Title: "Jobs", Columns: columns, Rows: rows}}
	b, err := andon.NewBoard(e, andon.BoardOptions{Lines: lines, Breakers: breakers, Panels: panels})
	require.NoError(t, err)

	lines[0], breakers[0] = nil, nil
	panels[0] = andon.Panel{Title: "Other"}
	columns[0] = "Changed"

	st := boardState(t, b)
	require.Len(t, st.Lines, 1)
	assert.Equal(t, "checkout", st.Lines[0].Name)
	require.Len(t, st.Breakers, 1)
	assert.Equal(t, "gateway", st.Breakers[0].Name)
	assert.Equal(t, []andon.BoardPanel{{Title: "Jobs", Columns: []string{"ID", "Stage"},
		Rows: []andon.PanelRow{{Cells: []string{"1", "2"}}}, Empty: "none"}}, st.Panels)
}

// TestBoardPanelPanicValueThatPanics: a panel whose Rows panics with a
// value that panics again when printed fails alone, as any panicking
// panel does; the board's state could not be taken at all.
func TestBoardPanelPanicValueThatPanics(t *testing.T) {
	e := newEvaluator(t, andon.EvaluatorOptions{})
	var log strings.Builder
	b, err := andon.NewBoard(e, andon.BoardOptions{Logger: slog.New(slog.NewTextHandler(&log, nil)), Panels: []andon.Panel{
		{Title: "Broken", Columns: []string{"Job"}, Rows: func() []andon.PanelRow { panic(selfPanic{}) }},
	}})
	require.NoError(t, err)
	var st andon.BoardState
	require.NotPanics(t, func() { st = b.State() })
	require.Len(t, st.Panels, 1)
	assert.Equal(t, "this panel failed; see the log", st.Panels[0].Error)
	assert.Contains(t, log.String(), "andon_test.selfPanic")
}

// TestBoardPanelPanicValueThatCallsGoexit: a panel whose Rows panics
// with a value whose Error method calls runtime.Goexit fails alone; the
// goroutine taking the board's state ended, and with it every live page
// sharing that state.
func TestBoardPanelPanicValueThatCallsGoexit(t *testing.T) {
	e := newEvaluator(t, andon.EvaluatorOptions{})
	b, err := andon.NewBoard(e, andon.BoardOptions{Logger: discardLogger(), Panels: []andon.Panel{
		{Title: "Broken", Columns: []string{"Job"}, Rows: func() []andon.PanelRow { panic(goexitPanic{}) }},
	}})
	require.NoError(t, err)
	var st andon.BoardState
	require.True(t, returns(func() { st = b.State() }), "State ended the goroutine")
	require.Len(t, st.Panels, 1)
	assert.Equal(t, "this panel failed; see the log", st.Panels[0].Error)
}

// TestBoardPanelLinkSchemeInAnyCase: a row's http or https link is kept
// whatever the case of its scheme ("HTTPS://…", as a URL's scheme is
// case-insensitive and a rule's runbook is linked so), and still nothing
// else is; the link was dropped.
func TestBoardPanelLinkSchemeInAnyCase(t *testing.T) {
	e := newEvaluator(t, andon.EvaluatorOptions{})
	var j jobs
	b, err := andon.NewBoard(e, andon.BoardOptions{Panels: []andon.Panel{{Title: "Jobs", Columns: []string{"ID"}, Rows: j.get}}})
	require.NoError(t, err)
	links := []string{"HTTPS://ci.example/a", "Http://ci.example/b", "hTtPs://ci.example/c",
		"JavaScript:alert(1)", "HTTPS:/ci.example/d", "DATA:text/html,x"}
	var rows []andon.PanelRow
	for _, l := range links {
		rows = append(rows, andon.PanelRow{Cells: []string{l}, Link: l})
	}
	j.set(rows...)
	var got []string
	for _, r := range boardState(t, b).Panels[0].Rows {
		got = append(got, r.Link)
	}
	assert.Equal(t, []string{"HTTPS://ci.example/a", "Http://ci.example/b", "hTtPs://ci.example/c", "", "", ""}, got)
}

// TestBoardLinksFollowOneRule gives the same URLs as rules' runbooks and
// as panel rows' links: the board keeps the same ones in both places, an
// http or https URL (the scheme in any case) or a path on the board's own
// site starting with a single "/". A protocol-relative runbook
// ("//host/x", which takes the page's scheme and leaves the site) was
// sent, and linked, while the same panel link was dropped.
func TestBoardLinksFollowOneRule(t *testing.T) {
	links := map[string]bool{
		"https://runbooks.example/lower":    true,
		"HTTPS://runbooks.example/upper":    true,
		"Http://runbooks.example/mixed":     true,
		"/runbooks/same-site":               true,
		"javascript:window.pwned=1":         false,
		"JavaScript:window.pwned=1":         false,
		"data:text/html,<b>x</b>":           false,
		"runbooks/relative":                 false,
		"//runbooks.example/x":              false,
		`/\runbooks.example/x`:              false,
		"/\t/runbooks.example/x":            false,
		"HTTPS:/runbooks.example/one-slash": false,
		" https://runbooks.example/space":   false,
	}
	var rules []andon.Rule
	var rows []andon.PanelRow
	for l := range links {
		rules = append(rules, andon.Rule{Name: "Rule " + l, Severity: andon.Ticket, Condition: newSwitch(), RunbookURL: l})
		rows = append(rows, andon.PanelRow{Cells: []string{"Row " + l}, Link: l})
	}
	e := newEvaluator(t, andon.EvaluatorOptions{Rules: rules})
	e.EvaluateAt(context.Background(), t0) // the annotations are expanded
	var j jobs
	j.set(rows...)
	b, err := andon.NewBoard(e, andon.BoardOptions{Panels: []andon.Panel{{Title: "Jobs", Columns: []string{"ID"}, Rows: j.get}}})
	require.NoError(t, err)
	st := boardState(t, b)
	runbooks, panel := map[string]string{}, map[string]string{}
	for _, r := range st.Rules {
		runbooks[strings.TrimPrefix(r.Name, "Rule ")] = r.RunbookURL
	}
	for _, r := range st.Panels[0].Rows {
		panel[strings.TrimPrefix(r.Cells[0], "Row ")] = r.Link
	}
	for l, ok := range links {
		want := ""
		if ok {
			want = l
		}
		assert.Equal(t, want, runbooks[l], "runbook %q", l)
		assert.Equal(t, want, panel[l], "panel link %q", l)
	}
}
