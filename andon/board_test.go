package andon_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"math"
	"mime"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/andon"
	"github.com/taipattern/taikit/jidoka"
)

// boardFixture is an evaluator with two rules, a line the cord and the
// first rule stop, a breaker, and a board over them at /andon.
type boardFixture struct {
	now     time.Time // of the last evaluation
	cond    *switchCond
	other   *switchCond
	line    *jidoka.Line
	breaker *jidoka.Breaker
	ev      *andon.Evaluator
	board   *andon.Board
	srv     *httptest.Server
}

func newBoardFixture(t *testing.T, opts andon.BoardOptions) *boardFixture {
	f := &boardFixture{now: t0, cond: newSwitch(), other: newSwitch()}
	f.line = newLine("checkout")
	f.breaker = newBreaker(t, "gateway")
	stop := andon.StopLine(f.line)
	f.ev = newEvaluator(t, andon.EvaluatorOptions{
		Cord: andon.CordOptions{Hooks: []andon.Hook{stop}},
		Rules: []andon.Rule{
			{Name: "HighErrorRate", Severity: andon.Page, Condition: f.cond, RunbookURL: "https://runbooks.example/errors",
				Summary: "error rate {{ $value | humanizePercentage }} over 5m"},
			{Name: "SlowPayments", Severity: andon.Ticket, Condition: f.other, For: 5 * time.Minute},
			{Name: "GatewayOpen", Severity: andon.Page, Condition: andon.BreakerOpen(f.breaker)},
		}})
	opts.Prefix = "/andon"
	opts.Lines = []andon.Line{f.line}
	opts.Breakers = []andon.Breaker{f.breaker}
	if opts.Title == "" {
		opts.Title = "Payments andon"
	}
	var err error
	f.board, err = andon.NewBoard(f.ev, opts)
	require.NoError(t, err)
	f.srv = httptest.NewServer(f.board)
	t.Cleanup(func() {
		// The board ends its event streams before the server waits for them.
		require.NoError(t, f.board.Shutdown(context.Background()))
		f.srv.Close()
	})
	return f
}

// eval evaluates d after the last evaluation (the first at t0).
func (f *boardFixture) eval(d time.Duration) {
	f.now = f.now.Add(d)
	f.ev.EvaluateAt(context.Background(), f.now)
}

func TestBoardState(t *testing.T) {
	f := newBoardFixture(t, andon.BoardOptions{})
	f.cond.Set(true)
	f.other.Set(true)
	f.eval(0)

	resp, err := http.Get(f.srv.URL + "/andon/api/state")
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, "application/json", resp.Header.Get("Content-Type"))
	assert.Contains(t, resp.Header.Get("Content-Security-Policy"), "default-src 'self'")
	var st andon.BoardState
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&st))
	assert.Equal(t, "Payments andon", st.Title)
	require.Len(t, st.Rules, 4, "three rules and the cord")
	r := st.Rules[0]
	assert.Equal(t, "HighErrorRate", r.Name)
	assert.Equal(t, andon.Firing, r.State)
	assert.Equal(t, "red", r.Color)
	assert.Equal(t, "10%", r.ValueText)
	assert.Equal(t, "5%", r.ThresholdText)
	assert.Equal(t, "error rate 10% over 5m", r.Summary)
	assert.Equal(t, "https://runbooks.example/errors", r.RunbookURL)
	assert.Equal(t, t0, r.Since)
	require.Len(t, r.Recent, 1)
	assert.Equal(t, "amber", st.Rules[1].Color)
	assert.Equal(t, "green", st.Rules[2].Color)
	assert.Equal(t, "AndonCord", st.Cord.Name)
	assert.Equal(t, []andon.BoardLine{{Name: "checkout"}}, st.Lines)
	require.Len(t, st.Breakers, 1)
	assert.Equal(t, "closed", st.Breakers[0].State)
	assert.Len(t, st.History, 2)

	page, err := http.Get(f.srv.URL + "/andon/")
	require.NoError(t, err)
	body, _ := io.ReadAll(page.Body)
	page.Body.Close()
	assert.Equal(t, http.StatusOK, page.StatusCode)
	assert.Contains(t, string(body), `<script src="assets/board.js"`)
	assert.NotContains(t, string(body), "http", "nothing loaded from elsewhere")
	for _, asset := range []string{"board.js", "board.css"} {
		a, err := http.Get(f.srv.URL + "/andon/assets/" + asset)
		require.NoError(t, err)
		a.Body.Close()
		assert.Equal(t, http.StatusOK, a.StatusCode, asset)
	}
	nf, err := http.Get(f.srv.URL + "/elsewhere/")
	require.NoError(t, err)
	nf.Body.Close()
	assert.Equal(t, http.StatusNotFound, nf.StatusCode)
}

// The board's script and style sheet carry their exact types whatever the
// machine's MIME tables say: with nosniff, a browser refuses a script
// served as text/plain, which some systems map .js to.
func TestBoardAssetTypesIgnoreTheSystemTable(t *testing.T) {
	for ext, wrong := range map[string]string{".js": "text/plain", ".css": "application/octet-stream", ".html": "text/plain"} {
		orig := mime.TypeByExtension(ext)
		require.NoError(t, mime.AddExtensionType(ext, wrong))
		t.Cleanup(func() { require.NoError(t, mime.AddExtensionType(ext, orig)) })
	}
	e := newEvaluator(t, andon.EvaluatorOptions{})
	b, err := andon.NewBoard(e, andon.BoardOptions{})
	require.NoError(t, err)
	for path, want := range map[string]string{
		"/assets/board.js":   "text/javascript; charset=utf-8",
		"/assets/board.css":  "text/css; charset=utf-8",
		"/assets/index.html": "text/html; charset=utf-8",
		"/":                  "text/html; charset=utf-8",
	} {
		w := httptest.NewRecorder()
		b.ServeHTTP(w, httptest.NewRequest(http.MethodGet, path, nil))
		assert.Equal(t, http.StatusOK, w.Code, path)
		assert.Equal(t, want, w.Header().Get("Content-Type"), path)
		assert.Equal(t, "nosniff", w.Header().Get("X-Content-Type-Options"), path)
	}
}

// TestBoardStateBeforeAnyChange reads the state of a board whose rules
// have not changed state yet: every list is a JSON list, empty or not,
// never null, which the page could not read.
func TestBoardStateBeforeAnyChange(t *testing.T) {
	f := newBoardFixture(t, andon.BoardOptions{})
	resp, err := http.Get(f.srv.URL + "/andon/api/state")
	require.NoError(t, err)
	defer resp.Body.Close()
	var st map[string]any
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&st))
	for _, field := range []string{"rules", "lines", "breakers", "panels", "history"} {
		assert.IsType(t, []any{}, st[field], field)
	}
	assert.Empty(t, st["history"])
}

func TestBoardCordRequests(t *testing.T) {
	good := func(r *http.Request) {
		r.Header.Set("Content-Type", "application/json")
		r.Header.Set("X-Andon-Board", "1")
	}
	tests := []struct {
		name    string
		method  string
		body    string
		prepare func(*http.Request)
		opts    andon.BoardOptions
		code    int
		pulled  bool
	}{
		{"pull", http.MethodPost, `{"action":"pull","reason":"smoke","who":"alice"}`, good, andon.BoardOptions{AllowCord: true}, http.StatusOK, true},
		{"same-origin browser", http.MethodPost, `{"action":"pull","reason":"smoke"}`, func(r *http.Request) {
			good(r)
			r.Header.Set("Sec-Fetch-Site", "same-origin")
		}, andon.BoardOptions{AllowCord: true}, http.StatusOK, true},
		{"no custom header", http.MethodPost, `{"action":"pull"}`, func(r *http.Request) { r.Header.Set("Content-Type", "application/json") }, andon.BoardOptions{AllowCord: true}, http.StatusForbidden, false},
		{"form content type", http.MethodPost, `{"action":"pull"}`, func(r *http.Request) {
			r.Header.Set("Content-Type", "text/plain")
			r.Header.Set("X-Andon-Board", "1")
		}, andon.BoardOptions{AllowCord: true}, http.StatusUnsupportedMediaType, false},
		{"media type in other case, with parameters", http.MethodPost, `{"action":"pull"}`, func(r *http.Request) {
			good(r)
			r.Header.Set("Content-Type", "Application/JSON ; charset=UTF-8")
		}, andon.BoardOptions{AllowCord: true}, http.StatusOK, true},
		{"media type with a parameter it cannot read", http.MethodPost, `{"action":"pull"}`, func(r *http.Request) {
			good(r)
			r.Header.Set("Content-Type", "application/json;charset")
		}, andon.BoardOptions{AllowCord: true}, http.StatusOK, true},
		{"json in a longer media type", http.MethodPost, `{"action":"pull"}`, func(r *http.Request) {
			good(r)
			r.Header.Set("Content-Type", "application/jsonx")
		}, andon.BoardOptions{AllowCord: true}, http.StatusUnsupportedMediaType, false},
		{"cross-site fetch", http.MethodPost, `{"action":"pull"}`, func(r *http.Request) {
			good(r)
			r.Header.Set("Sec-Fetch-Site", "cross-site")
		}, andon.BoardOptions{AllowCord: true}, http.StatusForbidden, false},
		{"foreign origin", http.MethodPost, `{"action":"pull"}`, func(r *http.Request) {
			good(r)
			r.Header.Set("Origin", "https://evil.example")
		}, andon.BoardOptions{AllowCord: true}, http.StatusForbidden, false},
		{"trusted origin", http.MethodPost, `{"action":"pull"}`, func(r *http.Request) {
			good(r)
			r.Header.Set("Origin", "https://ops.example")
		}, andon.BoardOptions{AllowCord: true, TrustedOrigins: []string{"https://ops.example"}}, http.StatusOK, true},
		{"get is not allowed", http.MethodGet, ``, good, andon.BoardOptions{AllowCord: true}, http.StatusMethodNotAllowed, false},
		{"read-only", http.MethodPost, `{"action":"pull"}`, good, andon.BoardOptions{}, http.StatusForbidden, false},
		{"unknown action", http.MethodPost, `{"action":"yank"}`, good, andon.BoardOptions{AllowCord: true}, http.StatusBadRequest, false},
		{"unknown field", http.MethodPost, `{"action":"pull","force":true}`, good, andon.BoardOptions{AllowCord: true}, http.StatusBadRequest, false},
		{"reason too long", http.MethodPost, `{"action":"pull","reason":"` + strings.Repeat("x", 201) + `"}`, good, andon.BoardOptions{AllowCord: true}, http.StatusBadRequest, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newBoardFixture(t, tt.opts)
			req, err := http.NewRequest(tt.method, f.srv.URL+"/andon/api/cord", strings.NewReader(tt.body))
			require.NoError(t, err)
			tt.prepare(req)
			resp, err := http.DefaultClient.Do(req)
			require.NoError(t, err)
			defer resp.Body.Close()
			assert.Equal(t, tt.code, resp.StatusCode)
			assert.Equal(t, tt.pulled, f.ev.Cord().Pulled)
			assert.Equal(t, tt.pulled, f.line.Status().Stopped, "the cord stops the line")
			if tt.code == http.StatusOK {
				var st andon.BoardState
				require.NoError(t, json.NewDecoder(resp.Body).Decode(&st))
				assert.Equal(t, tt.pulled, st.Cord.Pulled, "the answer is the new state")
			}
		})
	}
}

func TestBoardCordWhoAndReset(t *testing.T) {
	var logs bytes.Buffer
	f := newBoardFixture(t, andon.BoardOptions{AllowCord: true, Who: func(r *http.Request) string { return "sso:" + r.Header.Get("X-User") },
		Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	post := func(body string) *http.Response {
		req, _ := http.NewRequest(http.MethodPost, f.srv.URL+"/andon/api/cord", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json; charset=utf-8")
		req.Header.Set("X-Andon-Board", "1")
		req.Header.Set("X-User", "carol")
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		return resp
	}
	assert.Equal(t, http.StatusOK, post(`{"action":"pull","reason":"jam","who":"mallory"}`).StatusCode)
	assert.Equal(t, "sso:carol", f.ev.Cord().Who, "Who overrides the typed name")
	assert.True(t, f.line.Status().Stopped)
	assert.Equal(t, http.StatusOK, post(`{"action":"pull","reason":"again"}`).StatusCode)
	assert.Equal(t, http.StatusOK, post(`{"action":"reset"}`).StatusCode)
	assert.Contains(t, logs.String(), "cord reset on the board", "the reset that changed something is logged")
	assert.Equal(t, http.StatusOK, post(`{"action":"reset"}`).StatusCode)
	assert.False(t, f.ev.Cord().Pulled)
	assert.False(t, f.line.Status().Stopped)
	lines := strings.Split(strings.TrimSpace(logs.String()), "\n")
	require.Len(t, lines, 2, "what the board changed, once each:\n%s", logs.String())
	assert.Contains(t, lines[0], `level=INFO msg="andon: cord pulled on the board" who=sso:carol reason=jam`)
	assert.Contains(t, lines[1], `level=INFO msg="andon: cord reset on the board" who=sso:carol`)
}

func TestBoardLogsToTheDefault(t *testing.T) {
	var logs bytes.Buffer
	prev := slog.Default()
	slog.SetDefault(slog.New(slog.NewTextHandler(&logs, nil)))
	defer slog.SetDefault(prev)
	e := newEvaluator(t, andon.EvaluatorOptions{})
	b, err := andon.NewBoard(e, andon.BoardOptions{AllowCord: true})
	require.NoError(t, err)
	req := httptest.NewRequest(http.MethodPost, "/api/cord", strings.NewReader(`{"action":"pull","who":"dave"}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Andon-Board", "1")
	rec := httptest.NewRecorder()
	b.ServeHTTP(rec, req)
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	assert.Contains(t, logs.String(), `msg="andon: cord pulled on the board" who=dave reason="no reason given"`)
}

// readEvent reads one server-sent event's data.
func readEvent(t *testing.T, r *bufio.Reader) andon.BoardState {
	t.Helper()
	var data string
	for {
		line, err := r.ReadString('\n')
		require.NoError(t, err)
		line = strings.TrimRight(line, "\n")
		if line == "" && data != "" {
			var st andon.BoardState
			require.NoError(t, json.Unmarshal([]byte(data), &st))
			return st
		}
		if v, ok := strings.CutPrefix(line, "data: "); ok {
			data = v
		}
	}
}

func TestBoardEvents(t *testing.T) {
	f := newBoardFixture(t, andon.BoardOptions{Refresh: time.Hour})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, f.srv.URL+"/andon/api/events", nil)
	require.NoError(t, err)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	assert.Equal(t, "text/event-stream", resp.Header.Get("Content-Type"))
	r := bufio.NewReader(resp.Body)

	before := time.Now()
	st := readEvent(t, r)
	assert.Equal(t, andon.Inactive, st.Rules[0].State)
	assert.WithinDuration(t, before, st.Time, time.Minute, "each event says when its state was read")

	// A change in the evaluator is pushed at once, not at the next refresh.
	f.cond.Set(true)
	f.eval(time.Minute)
	st = readEvent(t, r)
	assert.Equal(t, andon.Firing, st.Rules[0].State)

	f.ev.Pull(context.Background(), "jam", "dave")
	st = readEvent(t, r)
	assert.True(t, st.Cord.Pulled)
	assert.True(t, st.Lines[0].Stopped)

	// The stream ends when the client goes (goleak checks the handler
	// returned).
	cancel()
}

func TestBoardShutdownEndsEvents(t *testing.T) {
	f := newBoardFixture(t, andon.BoardOptions{})
	resp, err := http.Get(f.srv.URL + "/andon/api/events")
	require.NoError(t, err)
	defer resp.Body.Close()
	r := bufio.NewReader(resp.Body)
	readEvent(t, r)
	require.NoError(t, f.board.Shutdown(context.Background()), "the handler returned")
	_, err = io.ReadAll(r)
	require.NoError(t, err, "the stream ends cleanly")
	require.NoError(t, f.board.Shutdown(context.Background()), "idempotent")

	// A later stream is refused, so the page polls instead.
	late, err := http.Get(f.srv.URL + "/andon/api/events")
	require.NoError(t, err)
	late.Body.Close()
	assert.Equal(t, http.StatusServiceUnavailable, late.StatusCode)
	st, err := http.Get(f.srv.URL + "/andon/api/state")
	require.NoError(t, err)
	st.Body.Close()
	assert.Equal(t, http.StatusOK, st.StatusCode, "the rest of the board is still served")
}

// stuckWriter is a ResponseWriter whose writes after the first wait for
// release, as a write to a client that stopped reading does.
type stuckWriter struct {
	header  http.Header
	writes  atomic.Int32
	release chan struct{}
}

func (w *stuckWriter) Header() http.Header { return w.header }
func (w *stuckWriter) WriteHeader(int)     {}
func (w *stuckWriter) Flush()              {}
func (w *stuckWriter) Write(b []byte) (int, error) {
	if w.writes.Add(1) > 1 {
		<-w.release
		return 0, errors.New("client gone")
	}
	return len(b), nil
}

func TestBoardShutdownIsBoundedByContext(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cond := newSwitch()
		e := newEvaluator(t, andon.EvaluatorOptions{Rules: []andon.Rule{{Name: "R", Severity: andon.Page, Condition: cond}}})
		b, err := andon.NewBoard(e, andon.BoardOptions{})
		require.NoError(t, err)
		w := &stuckWriter{header: http.Header{}, release: make(chan struct{})}
		served := make(chan struct{})
		go func() {
			defer close(served)
			b.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/api/events", nil))
		}()
		synctest.Wait() // the first state is written
		cond.Set(true)
		e.EvaluateAt(context.Background(), t0) // the second write sticks
		synctest.Wait()
		require.EqualValues(t, 2, w.writes.Load())

		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		start := time.Now()
		assert.ErrorIs(t, b.Shutdown(ctx), context.DeadlineExceeded)
		assert.Equal(t, time.Second, time.Since(start), "Shutdown waited until ctx ended")

		close(w.release) // the write fails; the handler returns on its own
		<-served
		require.NoError(t, b.Shutdown(context.Background()))
	})
}

func TestBoardOptionsValidation(t *testing.T) {
	e := newEvaluator(t, andon.EvaluatorOptions{})
	for _, tt := range []struct {
		opts andon.BoardOptions
		want string
	}{
		{andon.BoardOptions{Prefix: "andon"}, `BoardOptions.Prefix "andon" must start with /`},
		{andon.BoardOptions{Prefix: "/andon/"}, `BoardOptions.Prefix "/andon/" must start with / and not end with one`},
		{andon.BoardOptions{Prefix: "/ops//andon"}, `BoardOptions.Prefix "/ops//andon" must be a clean path`},
		{andon.BoardOptions{Prefix: "/ops/../andon"}, `BoardOptions.Prefix "/ops/../andon" must be a clean path`},
		{andon.BoardOptions{Prefix: "/ops/./andon"}, `BoardOptions.Prefix "/ops/./andon" must be a clean path`},
		{andon.BoardOptions{Prefix: "/andon/."}, `BoardOptions.Prefix "/andon/." must be a clean path`},
		{andon.BoardOptions{Prefix: "/{team}"}, `BoardOptions.Prefix "/{team}" must not hold any of {, }, #, ? or a space`},
		{andon.BoardOptions{Prefix: "/ops board"}, `BoardOptions.Prefix "/ops board" must not hold any of {, }, #, ? or a space`},
		// The ServeMux reads an escape as the character it stands for,
		// and a bare '%' made the page's links no URL; a control
		// character can be in no request's path.
		{andon.BoardOptions{Prefix: "/a%"}, `BoardOptions.Prefix "/a%" holds a '%': give the path unescaped`},
		{andon.BoardOptions{Prefix: "/ops%20board"}, `BoardOptions.Prefix "/ops%20board" holds a '%'`},
		{andon.BoardOptions{Prefix: "/ops\x01"}, `BoardOptions.Prefix "/ops\x01" must not hold a control character`},
		{andon.BoardOptions{Prefix: "/ops\u0085"}, `BoardOptions.Prefix "/ops\u0085" must not hold a control character`},
		{andon.BoardOptions{Refresh: time.Millisecond}, "BoardOptions.Refresh 1ms is below 100ms"},
		{andon.BoardOptions{Lines: []andon.Line{nil}}, "BoardOptions.Lines[0] is nil"},
		{andon.BoardOptions{TrustedOrigins: []string{"not a url"}}, "BoardOptions.TrustedOrigins"},
	} {
		_, err := andon.NewBoard(e, tt.opts)
		require.Error(t, err)
		assert.Contains(t, err.Error(), "andon: "+tt.want)
	}
	_, err := andon.NewBoard(nil, andon.BoardOptions{})
	assert.ErrorContains(t, err, "andon: NewBoard: nil Evaluator")
}

// streamWriter records what an event stream writes, for a board served
// in-process in a synctest bubble.
type streamWriter struct {
	mu     sync.Mutex
	header http.Header
	writes []string
}

func (w *streamWriter) Header() http.Header { return w.header }
func (w *streamWriter) WriteHeader(int)     {}
func (w *streamWriter) Flush()              {}
func (w *streamWriter) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.writes = append(w.writes, string(b))
	return len(b), nil
}

// kinds returns "state" or "keep-alive" for each write, or the write
// itself if it is neither.
func (w *streamWriter) kinds() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []string
	for _, s := range w.writes {
		if strings.HasPrefix(s, "event: state\ndata: ") {
			out = append(out, "state")
		} else if s == "event: keep-alive\ndata:\n\n" {
			out = append(out, "keep-alive")
		} else {
			out = append(out, strings.TrimSpace(s))
		}
	}
	return out
}

// data returns the data of each state event written.
func (w *streamWriter) data() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []string
	for _, s := range w.writes {
		if d, ok := strings.CutPrefix(s, "event: state\ndata: "); ok {
			out = append(out, strings.TrimSuffix(d, "\n\n"))
		}
	}
	return out
}

// stream serves b's events in a goroutine until the returned stop is called.
func stream(b *andon.Board) (*streamWriter, func()) {
	w := &streamWriter{header: http.Header{}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		b.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/api/events", nil).WithContext(ctx))
	}()
	return w, func() { cancel(); <-done }
}

func TestBoardEventTiming(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		line := newLine("checkout")
		e := newEvaluator(t, andon.EvaluatorOptions{})
		b, err := andon.NewBoard(e, andon.BoardOptions{Lines: []andon.Line{line}}) // Refresh 2s
		require.NoError(t, err)
		w, stop := stream(b)
		defer stop()
		synctest.Wait()
		require.Equal(t, []string{"state"}, w.kinds(), "the state at once")

		time.Sleep(10 * time.Second)
		synctest.Wait()
		assert.Equal(t, []string{"state"}, w.kinds(), "nothing changed, nothing sent")

		line.Stop("jam") // lines change on their own: seen at the next refresh
		time.Sleep(time.Second)
		synctest.Wait()
		assert.Equal(t, []string{"state"}, w.kinds())
		time.Sleep(time.Second)
		synctest.Wait()
		assert.Equal(t, []string{"state", "state"}, w.kinds(), "at the refresh, two seconds after the last")

		time.Sleep(15*time.Second - time.Nanosecond)
		synctest.Wait()
		assert.Equal(t, []string{"state", "state"}, w.kinds())
		time.Sleep(time.Nanosecond)
		synctest.Wait()
		assert.Equal(t, []string{"state", "state", "keep-alive"}, w.kinds(), "a keep-alive after 15s of silence")
		time.Sleep(15*time.Second - time.Nanosecond)
		synctest.Wait()
		assert.Len(t, w.kinds(), 3)
		time.Sleep(time.Nanosecond)
		synctest.Wait()
		assert.Len(t, w.kinds(), 4, "the next keep-alive is 15s after the last write")
	})
}

// TestBoardKeepAlive streams a state that does not change: the stream
// says something every 15s whatever Refresh is, as a proxy cuts a
// connection silent for longer (nginx after 60s).
func TestBoardKeepAlive(t *testing.T) {
	for _, refresh := range []time.Duration{5 * time.Second, time.Hour} {
		t.Run(refresh.String(), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				e := newEvaluator(t, andon.EvaluatorOptions{})
				b, err := andon.NewBoard(e, andon.BoardOptions{Refresh: refresh})
				require.NoError(t, err)
				w, stop := stream(b)
				defer stop()
				time.Sleep(15*time.Second - time.Nanosecond)
				synctest.Wait()
				assert.Equal(t, []string{"state"}, w.kinds())
				time.Sleep(time.Nanosecond)
				synctest.Wait()
				assert.Equal(t, []string{"state", "keep-alive"}, w.kinds(), "15s after the last write")
				time.Sleep(45 * time.Second)
				synctest.Wait()
				assert.Len(t, w.kinds(), 5, "every 15s")
			})
		})
	}
}

func TestBoardMinimumRefresh(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		line := newLine("checkout")
		e := newEvaluator(t, andon.EvaluatorOptions{})
		b, err := andon.NewBoard(e, andon.BoardOptions{Refresh: 100 * time.Millisecond, Lines: []andon.Line{line}})
		require.NoError(t, err)
		w, stop := stream(b)
		defer stop()
		synctest.Wait()
		line.Stop("jam")
		time.Sleep(100 * time.Millisecond)
		synctest.Wait()
		assert.Equal(t, []string{"state", "state"}, w.kinds())
	})
}

func TestBoardShutdownWithStreams(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newEvaluator(t, andon.EvaluatorOptions{})
		idle, err := andon.NewBoard(e, andon.BoardOptions{})
		require.NoError(t, err)
		require.NoError(t, idle.Shutdown(context.Background()), "no stream: at once")

		b, err := andon.NewBoard(e, andon.BoardOptions{})
		require.NoError(t, err)
		_, stop1 := stream(b)
		_, stop2 := stream(b)
		synctest.Wait()
		require.NoError(t, b.Shutdown(context.Background()), "both streams end")
		stop1()
		stop2()
		w, stop3 := stream(b)
		stop3()
		assert.Contains(t, strings.Join(w.writes, ""), "the board is shut down")
	})
}

func TestBoardOptionsAndState(t *testing.T) {
	line := newLine("checkout")
	breaker := newBreaker(t, "gateway")
	cond := newSwitch()
	e := newEvaluator(t, andon.EvaluatorOptions{HistorySize: 100, Rules: []andon.Rule{
		{Name: "R", Severity: andon.Page, Condition: cond, MinSamples: 1000},
		{Name: "Odd", Severity: andon.Info, Condition: andon.ConditionFunc(func(context.Context, time.Time) (andon.Measurement, error) {
			return andon.Measurement{Value: math.NaN(), Threshold: math.Inf(1), Samples: 1}, nil
		})},
	}})
	get := func(b *andon.Board, path string) (int, string) {
		rec := httptest.NewRecorder()
		b.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		return rec.Code, rec.Body.String()
	}

	// At the root, with no lines or breakers, before any evaluation.
	b, err := andon.NewBoard(e, andon.BoardOptions{})
	require.NoError(t, err)
	code, body := get(b, "/api/state")
	require.Equal(t, http.StatusOK, code, body)
	assert.Contains(t, body, `"title":"Andon"`)
	assert.Contains(t, body, `"lines":[],"breakers":[]`)
	assert.Contains(t, body, `"recent":[]`)
	code, _ = get(b, "/")
	assert.Equal(t, http.StatusOK, code)

	// Too little data shows grey; a value JSON cannot carry shows as 0.
	e.EvaluateAt(context.Background(), t0)
	st := b.State()
	assert.Equal(t, "grey", st.Rules[0].Color)
	assert.Equal(t, "NaN", st.Rules[1].ValueText)
	assert.Equal(t, "+Inf", st.Rules[1].ThresholdText)
	assert.Zero(t, st.Rules[1].Value)
	code, body = get(b, "/api/state")
	require.Equal(t, http.StatusOK, code, body)
	assert.Contains(t, body, `"value_text":"NaN"`)

	// History is cut to HistoryLength, newest kept.
	cond.SetSamples(1000)
	for i := range 30 {
		cond.Set(i%2 == 0)
		e.EvaluateAt(context.Background(), t0.Add(time.Duration(i+1)*time.Minute))
	}
	assert.Len(t, b.State().History, 20, "20 by default")
	short, err := andon.NewBoard(e, andon.BoardOptions{HistoryLength: 3, Title: "Ops",
		Lines: []andon.Line{line}, Breakers: []andon.Breaker{breaker}})
	require.NoError(t, err)
	breaker.Trip("gateway timeouts")
	line.Stop("jam")
	st = short.State()
	require.Len(t, st.History, 3)
	assert.Equal(t, t0.Add(30*time.Minute), st.History[2].At)
	assert.True(t, st.ReadOnly)
	assert.Equal(t, "Ops", st.Title)
	require.Len(t, st.Breakers, 1)
	assert.Equal(t, "gateway", st.Breakers[0].Name)
	assert.True(t, st.Breakers[0].Open)
	assert.Equal(t, "open", st.Breakers[0].State)
	assert.Equal(t, "gateway timeouts", st.Breakers[0].Reason)
	assert.False(t, st.Breakers[0].Since.IsZero())
	require.Len(t, st.Lines, 1)
	assert.Equal(t, andon.BoardLine{Name: "checkout", Stopped: true, Reason: "jam", Since: line.Status().Since}, st.Lines[0])
	long, err := andon.NewBoard(e, andon.BoardOptions{HistoryLength: 1000})
	require.NoError(t, err)
	assert.Len(t, long.State().History, 30, "all there is")

	for _, tt := range []struct {
		opts andon.BoardOptions
		want string
	}{
		{andon.BoardOptions{Prefix: "/"}, `BoardOptions.Prefix "/" must start with /`},
		{andon.BoardOptions{Prefix: "/a{b}"}, `BoardOptions.Prefix "/a{b}"`},
		{andon.BoardOptions{Prefix: "/a b"}, `BoardOptions.Prefix "/a b"`},
		{andon.BoardOptions{Refresh: 100*time.Millisecond - 1}, "BoardOptions.Refresh 99.999999ms is below 100ms"},
		{andon.BoardOptions{HistoryLength: 1001}, "BoardOptions.HistoryLength 1001 is outside [1, 1000]"},
		{andon.BoardOptions{HistoryLength: -1}, "BoardOptions.HistoryLength -1 is outside [1, 1000]"},
		{andon.BoardOptions{Breakers: []andon.Breaker{nil}}, "BoardOptions.Breakers[0] is nil"},
	} {
		_, err := andon.NewBoard(e, tt.opts)
		assert.ErrorContains(t, err, "andon: "+tt.want)
	}
	for _, p := range []string{"/a", "/ops/andon"} {
		b, err := andon.NewBoard(e, andon.BoardOptions{Prefix: p})
		require.NoError(t, err, p)
		for _, path := range []string{"/", "/api/state", "/assets/board.js"} {
			code, _ := get(b, p+path)
			assert.Equal(t, http.StatusOK, code, p+path)
		}
		code, _ := get(b, "/api/state")
		assert.Equal(t, http.StatusNotFound, code, "nothing outside the prefix")
	}
}

func TestBoardCordTextLimits(t *testing.T) {
	post := func(f *boardFixture, body string) int {
		req, _ := http.NewRequest(http.MethodPost, f.srv.URL+"/andon/api/cord", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-Andon-Board", "1")
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		return resp.StatusCode
	}
	f := newBoardFixture(t, andon.BoardOptions{AllowCord: true})
	long := strings.Repeat("x", 200)
	assert.Equal(t, http.StatusBadRequest, post(f, `{"action":"pull","who":"`+long+`x"}`))
	assert.False(t, f.ev.Cord().Pulled)
	assert.Equal(t, http.StatusOK, post(f, `{"action":"pull","reason":"`+long+`","who":"  "}`), "200 characters is the limit")
	cs := f.ev.Cord()
	assert.Equal(t, long, cs.Reason)
	assert.Equal(t, "board", cs.Who, "no name given")
	assert.Equal(t, http.StatusOK, post(f, `{"action":"reset"}`))
	assert.Equal(t, http.StatusOK, post(f, `{"action":"pull","who":"`+long+`"}`))
	assert.Equal(t, long, f.ev.Cord().Who)

	assert.Equal(t, http.StatusOK, post(f, `{"action":"reset"}`))
	for _, body := range []string{
		`{"action":"pull","reason":"a\u0000b"}`,
		`{"action":"pull","who":"x\u001b[31m"}`,
		`{"action":"pull","reason":"line\nbreak"}`,
		`{"action":"pull","reason":"\u0085"}`,
		`{"action":"pull","reason":"pay\u202eton"}`, // right-to-left override: shows "paynot"
		`{"action":"pull","who":"a\u2066b\u2069"}`,  // a direction isolate
		`{"action":"pull","reason":"one\u2028two"}`, // a line separator
		`{"action":"pull","reason":"one\u2029two"}`, // a paragraph separator
		`{"action":"reset"}{"action":"pull"}`,
		`{"action":"pull"} x`,
	} {
		assert.Equal(t, http.StatusBadRequest, post(f, body), body)
		assert.False(t, f.ev.Cord().Pulled, body)
	}
	assert.Equal(t, http.StatusOK, post(f, `{"action":"pull","reason":"ünïcode ✓ 👩\u200d💻"} `), "trailing space is no second value; a joiner in an emoji is no control")
}

// TestBoardCordTextLimitInCharacters: the limit of a reason and a who is
// 200 characters, as the page's fields take, whatever bytes each takes in
// UTF-8; the board refused a reason of 70 characters in a script of three
// bytes a character, which the page had let the user type.
func TestBoardCordTextLimitInCharacters(t *testing.T) {
	f := newBoardFixture(t, andon.BoardOptions{AllowCord: true})
	post := func(body string) (int, string) {
		req, _ := http.NewRequest(http.MethodPost, f.srv.URL+"/andon/api/cord", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-Andon-Board", "1")
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	smoke, hill := strings.Repeat("煙", 200), strings.Repeat("山", 199)+"👩"
	code, body := post(`{"action":"pull","reason":"` + smoke + `","who":"` + hill + `"}`)
	require.Equal(t, http.StatusOK, code, body)
	cs := f.ev.Cord()
	assert.Equal(t, smoke, cs.Reason)
	assert.Equal(t, hill, cs.Who)
	code, body = post(`{"action":"reset"}`)
	require.Equal(t, http.StatusOK, code, body)
	for _, req := range []string{
		`{"action":"pull","reason":"` + smoke + `煙"}`,
		`{"action":"pull","who":"` + hill + `山"}`,
	} {
		code, body = post(req)
		assert.Equal(t, http.StatusBadRequest, code, body)
		assert.Contains(t, body, "at most 200 characters")
		assert.False(t, f.ev.Cord().Pulled)
	}
}

// TestBoardCordKeysAreExact: the cord's body names each field once, in
// the case documented. A key twice ({"action":"pull","action":"reset"})
// or one spelled in another case ({"Action":"reset"}) left the action to
// the last key encoding/json read, which a proxy or log that reads the
// first sees otherwise; the board acted on it.
func TestBoardCordKeysAreExact(t *testing.T) {
	f := newBoardFixture(t, andon.BoardOptions{AllowCord: true})
	post := func(body string) *http.Response {
		req, _ := http.NewRequest(http.MethodPost, f.srv.URL+"/andon/api/cord", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-Andon-Board", "1")
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		return resp
	}
	for _, c := range []struct {
		pulled bool
		body   string
	}{
		{false, `{"action":"reset","action":"pull"}`},
		{true, `{"action":"pull","action":"reset"}`},
		{false, `{"Action":"pull"}`},
		{true, `{"ACTION":"reset"}`},
		{false, `{"action":"pull","reason":"a","reason":"b"}`},
		{false, `{"action":"pull","Who":"mallory"}`},
	} {
		if c.pulled {
			require.True(t, f.ev.Pull(context.Background(), "smoke", "alice") || f.ev.Cord().Pulled)
		} else {
			f.ev.Reset(context.Background())
		}
		resp := post(c.body)
		assertErrorBody(t, resp, http.StatusBadRequest, "invalid_request")
		resp.Body.Close()
		assert.Equal(t, c.pulled, f.ev.Cord().Pulled, "%s changed nothing", c.body)
	}
	f.ev.Reset(context.Background())
	resp := post(`{"action":"pull","reason":"smoke","who":"alice"}`)
	resp.Body.Close()
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, "smoke", f.ev.Cord().Reason)
}

// TestBoardEventsHead: a HEAD of the event stream is answered with the
// stream's header and ends, without taking one of the MaxStreams places;
// net/http sends no body for it, so a stream behind it ran, unseen, until
// the board shut down.
func TestBoardEventsHead(t *testing.T) {
	f := newBoardFixture(t, andon.BoardOptions{MaxStreams: 1})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for range 3 {
		req, err := http.NewRequestWithContext(ctx, http.MethodHead, f.srv.URL+"/andon/api/events", nil)
		require.NoError(t, err)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err, "HEAD returns")
		resp.Body.Close()
		assert.Equal(t, http.StatusOK, resp.StatusCode)
		assert.Equal(t, "text/event-stream", resp.Header.Get("Content-Type"))
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, f.srv.URL+"/andon/api/events", nil)
	require.NoError(t, err)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	assert.Equal(t, http.StatusOK, resp.StatusCode, "the one stream's place is free")
}

// TestBoardEventsHeadAnswersAsGet: a HEAD of the event stream gets the
// status a GET would, 503 while MaxStreams are served and after
// Shutdown, as a check of the board's health by HEAD expects; it was
// answered 200 while every GET was refused.
func TestBoardEventsHeadAnswersAsGet(t *testing.T) {
	f := newBoardFixture(t, andon.BoardOptions{MaxStreams: 1})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	head := func() *http.Response {
		req, err := http.NewRequestWithContext(ctx, http.MethodHead, f.srv.URL+"/andon/api/events", nil)
		require.NoError(t, err)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		return resp
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, f.srv.URL+"/andon/api/events", nil)
	require.NoError(t, err)
	stream, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer stream.Body.Close()
	require.Equal(t, http.StatusOK, stream.StatusCode)

	resp := head()
	assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode, "the one stream's place is taken")
	assert.Equal(t, "5", resp.Header.Get("Retry-After"))
	assert.Equal(t, "application/json", resp.Header.Get("Content-Type"))

	require.NoError(t, f.board.Shutdown(ctx))
	resp = head()
	assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode, "shut down")
	assert.Equal(t, "5", resp.Header.Get("Retry-After"))
}

// TestBoardErrorsAreJSON: every error the board answers, whatever the
// route, is {"error": {"code": ..., "message": ...}} with Content-Type
// application/json, the shape services mounting the board answer their
// own errors in.
func TestBoardErrorsAreJSON(t *testing.T) {
	good := func(r *http.Request) {
		r.Header.Set("Content-Type", "application/json")
		r.Header.Set("X-Andon-Board", "1")
	}
	none := func(*http.Request) {}
	tests := []struct {
		name         string
		method, path string
		body         string
		prepare      func(*http.Request)
		opts         andon.BoardOptions
		status       int
		code         string
		header       string // checked when not empty
		value        string
	}{
		{"unknown path", http.MethodGet, "/andon/nothing", "", none, andon.BoardOptions{AllowCord: true}, http.StatusNotFound, "not_found", "", ""},
		{"path outside the prefix", http.MethodGet, "/elsewhere", "", none, andon.BoardOptions{AllowCord: true}, http.StatusNotFound, "not_found", "", ""},
		{"unknown asset", http.MethodGet, "/andon/assets/nothing.js", "", none, andon.BoardOptions{AllowCord: true}, http.StatusNotFound, "not_found", "", ""},
		{"asset in a folder", http.MethodGet, "/andon/assets/x/board.js", "", none, andon.BoardOptions{AllowCord: true}, http.StatusNotFound, "not_found", "", ""},
		{"get the cord", http.MethodGet, "/andon/api/cord", "", good, andon.BoardOptions{AllowCord: true}, http.StatusMethodNotAllowed, "method_not_allowed", "Allow", "POST"},
		{"post the state", http.MethodPost, "/andon/api/state", "{}", good, andon.BoardOptions{AllowCord: true}, http.StatusMethodNotAllowed, "method_not_allowed", "Allow", "GET, HEAD"},
		{"read-only", http.MethodPost, "/andon/api/cord", `{"action":"pull"}`, good, andon.BoardOptions{}, http.StatusForbidden, "forbidden", "", ""},
		{"no custom header", http.MethodPost, "/andon/api/cord", `{"action":"pull"}`, func(r *http.Request) { r.Header.Set("Content-Type", "application/json") },
			andon.BoardOptions{AllowCord: true}, http.StatusForbidden, "forbidden", "", ""},
		{"cross-site", http.MethodPost, "/andon/api/cord", `{"action":"pull"}`, func(r *http.Request) { good(r); r.Header.Set("Sec-Fetch-Site", "cross-site") },
			andon.BoardOptions{AllowCord: true}, http.StatusForbidden, "cross_origin", "", ""},
		{"foreign origin", http.MethodPost, "/andon/api/cord", `{"action":"pull"}`, func(r *http.Request) { good(r); r.Header.Set("Origin", "https://evil.example") },
			andon.BoardOptions{AllowCord: true}, http.StatusForbidden, "cross_origin", "", ""},
		{"form content type", http.MethodPost, "/andon/api/cord", `{"action":"pull"}`, func(r *http.Request) {
			r.Header.Set("Content-Type", "text/plain")
			r.Header.Set("X-Andon-Board", "1")
		}, andon.BoardOptions{AllowCord: true}, http.StatusUnsupportedMediaType, "unsupported_media_type", "", ""},
		{"not JSON", http.MethodPost, "/andon/api/cord", `{"action":`, good, andon.BoardOptions{AllowCord: true}, http.StatusBadRequest, "invalid_request", "", ""},
		{"two values", http.MethodPost, "/andon/api/cord", `{"action":"reset"}{"action":"pull"}`, good, andon.BoardOptions{AllowCord: true}, http.StatusBadRequest, "invalid_request", "", ""},
		{"unknown action", http.MethodPost, "/andon/api/cord", `{"action":"yank"}`, good, andon.BoardOptions{AllowCord: true}, http.StatusBadRequest, "invalid_request", "", ""},
		{"control character", http.MethodPost, "/andon/api/cord", `{"action":"pull","reason":"a\u0000b"}`, good, andon.BoardOptions{AllowCord: true}, http.StatusBadRequest, "invalid_request", "", ""},
		{"reason too long", http.MethodPost, "/andon/api/cord", `{"action":"pull","reason":"` + strings.Repeat("x", 201) + `"}`, good, andon.BoardOptions{AllowCord: true},
			http.StatusBadRequest, "invalid_request", "", ""},
		{"body too large", http.MethodPost, "/andon/api/cord", `{"action":"pull","reason":"` + strings.Repeat("x", 5000) + `"}`, good, andon.BoardOptions{AllowCord: true},
			http.StatusRequestEntityTooLarge, "body_too_large", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newBoardFixture(t, tt.opts)
			req, err := http.NewRequest(tt.method, f.srv.URL+tt.path, strings.NewReader(tt.body))
			require.NoError(t, err)
			tt.prepare(req)
			resp, err := http.DefaultClient.Do(req)
			require.NoError(t, err)
			defer resp.Body.Close()
			assertErrorBody(t, resp, tt.status, tt.code)
			if tt.header != "" {
				assert.Equal(t, tt.value, resp.Header.Get(tt.header))
			}
			assert.False(t, f.ev.Cord().Pulled)
		})
	}

	t.Run("too many streams", func(t *testing.T) {
		f := newBoardFixture(t, andon.BoardOptions{MaxStreams: 1})
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, f.srv.URL+"/andon/api/events", nil)
		require.NoError(t, err)
		stream, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer stream.Body.Close()
		readEvent(t, bufio.NewReader(stream.Body))
		resp, err := http.Get(f.srv.URL + "/andon/api/events")
		require.NoError(t, err)
		defer resp.Body.Close()
		assertErrorBody(t, resp, http.StatusServiceUnavailable, "too_many_streams")
		assert.Equal(t, "5", resp.Header.Get("Retry-After"))
	})
	t.Run("shut down", func(t *testing.T) {
		f := newBoardFixture(t, andon.BoardOptions{})
		require.NoError(t, f.board.Shutdown(context.Background()))
		resp, err := http.Get(f.srv.URL + "/andon/api/events")
		require.NoError(t, err)
		defer resp.Body.Close()
		assertErrorBody(t, resp, http.StatusServiceUnavailable, "shutting_down")
		assert.Equal(t, "5", resp.Header.Get("Retry-After"))
	})
}

// assertErrorBody checks that resp is an error answer with the status, in
// the board's error schema with the code and a message.
func assertErrorBody(t *testing.T, resp *http.Response, status int, code string) {
	t.Helper()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	assert.Equal(t, status, resp.StatusCode, "%s", body)
	assert.Equal(t, "application/json", resp.Header.Get("Content-Type"), "%s", body)
	var e struct {
		Error map[string]json.RawMessage `json:"error"`
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	require.NoError(t, dec.Decode(&e), "%s", body)
	var got struct{ Code, Message string }
	require.Len(t, e.Error, 2, "code and message: %s", body)
	require.NoError(t, json.Unmarshal(e.Error["code"], &got.Code), "%s", body)
	require.NoError(t, json.Unmarshal(e.Error["message"], &got.Message), "%s", body)
	assert.Equal(t, code, got.Code, "%s", body)
	assert.NotEmpty(t, got.Message, "%s", body)
}

// pipeListener hands the server the far ends of net.Pipe connections,
// so that a real http.Server runs in a synctest bubble.
type pipeListener struct {
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
}

func newPipeListener() *pipeListener {
	return &pipeListener{conns: make(chan net.Conn), done: make(chan struct{})}
}

func (l *pipeListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *pipeListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *pipeListener) Addr() net.Addr { return pipeAddr{} }

func (l *pipeListener) dial(ctx context.Context, _, _ string) (net.Conn, error) {
	c, s := net.Pipe()
	select {
	case l.conns <- s:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

type pipeAddr struct{}

func (pipeAddr) Network() string { return "pipe" }
func (pipeAddr) String() string  { return "pipe" }

// TestBoardQuietStreamOverHTTP2 follows a board whose state does not
// change over HTTP/2, as a browser does over https: the stream lives
// past WriteTimeout to its keep-alive. The deadline of the last event,
// left in place, reset the stream WriteTimeout after it.
func TestBoardQuietStreamOverHTTP2(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newEvaluator(t, andon.EvaluatorOptions{})
		b, err := andon.NewBoard(e, andon.BoardOptions{}) // WriteTimeout 10s
		require.NoError(t, err)
		var h2 http.Protocols
		h2.SetUnencryptedHTTP2(true)
		srv := &http.Server{Handler: b, Protocols: &h2}
		l := newPipeListener()
		served := make(chan error, 1)
		go func() { served <- srv.Serve(l) }()
		defer func() { <-served }()
		defer srv.Close()
		defer func() { _ = b.Shutdown(context.Background()) }()
		tr := &http.Transport{Protocols: &h2, DialContext: l.dial}
		defer tr.CloseIdleConnections()

		resp, err := (&http.Client{Transport: tr}).Get("http://board/api/events")
		require.NoError(t, err)
		defer resp.Body.Close()
		require.Equal(t, "HTTP/2.0", resp.Proto)
		r := bufio.NewReader(resp.Body)
		start := time.Now()
		var got []string
		for len(got) < 2 {
			line, err := r.ReadString('\n')
			require.NoError(t, err, "the stream was cut after %v", time.Since(start))
			if strings.HasPrefix(line, "event: ") || strings.HasPrefix(line, ": ") {
				got = append(got, strings.TrimSpace(line))
			}
		}
		assert.Equal(t, []string{"event: state", "event: keep-alive"}, got)
		assert.Equal(t, 15*time.Second, time.Since(start))

		require.NoError(t, b.Shutdown(context.Background()))
		_, err = io.Copy(io.Discard, resp.Body)
		require.NoError(t, err, "the stream ends cleanly")
		require.NoError(t, srv.Shutdown(context.Background()))
	})
}

func TestBoardHistoryWithValuesJSONCannotCarry(t *testing.T) {
	var value atomic.Pointer[float64]
	inf := math.Inf(1)
	value.Store(&inf)
	e := newEvaluator(t, andon.EvaluatorOptions{Rules: []andon.Rule{
		{Name: "Latency", Severity: andon.Page, Condition: andon.ConditionFunc(func(context.Context, time.Time) (andon.Measurement, error) {
			v := *value.Load()
			return andon.Measurement{Value: v, Threshold: 1, Active: v > 1, Samples: 1}, nil
		})},
	}})
	b, err := andon.NewBoard(e, andon.BoardOptions{})
	require.NoError(t, err)
	e.EvaluateAt(context.Background(), t0) // fires at +Inf
	nan := math.NaN()
	value.Store(&nan)
	e.EvaluateAt(context.Background(), t0.Add(time.Minute)) // resolves at NaN

	st := b.State()
	require.Len(t, st.History, 2)
	assert.Zero(t, st.History[0].Value)
	assert.Zero(t, st.History[1].Value)
	rec := httptest.NewRecorder()
	b.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/api/state", nil))
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	assert.Contains(t, rec.Body.String(), `"to":"firing"`)

	w, stop := stream(b)
	defer stop()
	require.Eventually(t, func() bool { return slices.Contains(w.kinds(), "state") }, 10*time.Second, time.Millisecond,
		"the event stream sends the state")
}

// TestBoardRouteErrorClipsTheMethod: a route error names the request's
// method, which the caller chose as it did the path (a server takes one
// of up to its header limit, a megabyte): it is clipped as the path is.
func TestBoardRouteErrorClipsTheMethod(t *testing.T) {
	f := newBoardFixture(t, andon.BoardOptions{})
	huge := strings.Repeat("X", 100<<10)
	for _, target := range []string{"/andon/api/state", "/andon/nothing"} {
		w := httptest.NewRecorder()
		f.board.ServeHTTP(w, httptest.NewRequest(huge, target, nil))
		assert.Contains(t, []int{http.StatusMethodNotAllowed, http.StatusNotFound}, w.Code, target)
		assert.Less(t, w.Body.Len(), 1000, "%s: %.300s", target, w.Body.String())
	}
}

// TestBoardStateIsOnePiece: the rules, their recent values and the
// history of a BoardState are taken together, so an evaluation that
// runs while the board takes its state (here from a panel's Rows, which
// the board calls between them) does not show a transition the rule's
// state and sparkline do not.
func TestBoardStateIsOnePiece(t *testing.T) {
	cond := newSwitch()
	e := newEvaluator(t, andon.EvaluatorOptions{Rules: []andon.Rule{{Name: "R", Severity: andon.Page, Condition: cond}}})
	e.EvaluateAt(context.Background(), t0)
	var once sync.Once
	b, err := andon.NewBoard(e, andon.BoardOptions{Panels: []andon.Panel{{Title: "Jobs", Columns: []string{"Job"},
		Rows: func() []andon.PanelRow {
			once.Do(func() {
				cond.Set(true)
				e.EvaluateAt(context.Background(), t0.Add(time.Minute)) // fires R
			})
			return nil
		}}}})
	require.NoError(t, err)

	st := b.State()
	r := st.Rules[0]
	require.Equal(t, "R", r.Name)
	var last *andon.Transition
	for i := range st.History {
		if st.History[i].Rule == "R" {
			last = &st.History[i]
		}
	}
	switch r.State {
	case andon.Inactive:
		assert.Nil(t, last, "a rule shown inactive has no transition shown: %+v", st.History)
		assert.Len(t, r.Recent, 1, "the sparkline has the evaluations the state has")
	default:
		require.NotNil(t, last)
		assert.Equal(t, r.State, last.To)
		assert.Len(t, r.Recent, 2)
	}
}

// TestBoardEventIsTheState: the data of a state event is the board's
// state as api/state encodes it, with the time it was read, whatever the
// title holds.
func TestBoardEventIsTheState(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cond := newSwitch()
		e := newEvaluator(t, andon.EvaluatorOptions{Rules: []andon.Rule{{Name: "R", Severity: andon.Page, Condition: cond}}})
		title := `Pay "time":"0001-01-01T00:00:00Z", "time":`
		b, err := andon.NewBoard(e, andon.BoardOptions{Title: title})
		require.NoError(t, err)
		e.Evaluate(context.Background())
		w, stop := stream(b)
		defer stop()
		synctest.Wait()
		data := w.data()
		require.Len(t, data, 1)
		var st andon.BoardState
		require.NoError(t, json.Unmarshal([]byte(data[0]), &st))
		assert.Equal(t, title, st.Title)
		assert.True(t, st.Time.Equal(time.Now()), "read now: %v", st.Time)
		want := b.State()
		want.Time = st.Time
		wantJSON, err := json.Marshal(want)
		require.NoError(t, err)
		assert.JSONEq(t, string(wantJSON), data[0])
	})
}

// TestBoardStreamsShareTheState: the live pages that wake for the same
// change, or the same refresh, are sent one state, taken once for all of
// them, rather than each taking and encoding its own: a board with many
// pages costs one state per change.
func TestBoardStreamsShareTheState(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cond := newSwitch()
		line := newLine("checkout")
		e := newEvaluator(t, andon.EvaluatorOptions{Rules: []andon.Rule{{Name: "R", Severity: andon.Page, Condition: cond}}})
		var taken atomic.Int64
		b, err := andon.NewBoard(e, andon.BoardOptions{Lines: []andon.Line{line}, Panels: []andon.Panel{{Title: "Jobs", Columns: []string{"Job"},
			Rows: func() []andon.PanelRow { taken.Add(1); return nil }}}}) // Refresh 2s
		require.NoError(t, err)
		const pages = 5
		var ws []*streamWriter
		for range pages {
			w, stop := stream(b)
			defer stop()
			ws = append(ws, w)
			synctest.Wait()
		}
		assert.Equal(t, int64(pages), taken.Load(), "each page that opens takes the state")

		taken.Store(0)
		cond.Set(true)
		e.Evaluate(context.Background())
		synctest.Wait()
		assert.Equal(t, int64(1), taken.Load(), "one state for a change")
		b.Notify()
		synctest.Wait()
		assert.Equal(t, int64(2), taken.Load(), "one state for a Notify")

		line.Stop("jam") // seen at the next refresh, by every page
		time.Sleep(2 * time.Second)
		synctest.Wait()
		assert.Equal(t, int64(3), taken.Load(), "one state for a refresh")
		for i, w := range ws {
			data := w.data()
			require.Len(t, data, 3, "page %d: the first state, the firing rule, the stopped line", i)
			var st andon.BoardState
			require.NoError(t, json.Unmarshal([]byte(data[0]), &st))
			assert.Equal(t, andon.Inactive, st.Rules[0].State)
			require.NoError(t, json.Unmarshal([]byte(data[1]), &st))
			assert.Equal(t, andon.Firing, st.Rules[0].State)
			assert.False(t, st.Lines[0].Stopped)
			require.NoError(t, json.Unmarshal([]byte(data[2]), &st))
			assert.True(t, st.Lines[0].Stopped)
		}
	})
}

// gatedWriter is a streamWriter whose writes wait while its gate is
// closed.
type gatedWriter struct {
	streamWriter
	open chan struct{} // receives to let a write through
}

func (w *gatedWriter) Write(b []byte) (int, error) {
	<-w.open
	return w.streamWriter.Write(b)
}

// TestBoardSlowStreamGetsAFreshState: a stream whose write was slow is
// not sent the state the other streams shared while it wrote, taken
// long before: the page sets its clock by the state's time.
func TestBoardSlowStreamGetsAFreshState(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cond := newSwitch()
		e := newEvaluator(t, andon.EvaluatorOptions{Rules: []andon.Rule{{Name: "R", Severity: andon.Page, Condition: cond}}})
		b, err := andon.NewBoard(e, andon.BoardOptions{Refresh: time.Hour})
		require.NoError(t, err)
		fast, stopFast := stream(b)
		defer stopFast()
		slow := &gatedWriter{streamWriter: streamWriter{header: http.Header{}}, open: make(chan struct{})}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() {
			defer close(done)
			b.ServeHTTP(slow, httptest.NewRequest(http.MethodGet, "/api/events", nil).WithContext(ctx))
		}()
		defer func() { cancel(); close(slow.open); <-done }()
		synctest.Wait() // the slow stream waits to write its first state

		cond.Set(true)
		e.Evaluate(context.Background()) // the fast stream takes the state now
		synctest.Wait()
		require.Len(t, fast.data(), 2)
		time.Sleep(9 * time.Second)
		slow.open <- struct{}{} // the first state is written; the second is taken
		slow.open <- struct{}{}
		synctest.Wait()
		data := slow.data()
		require.Len(t, data, 2)
		var st andon.BoardState
		require.NoError(t, json.Unmarshal([]byte(data[1]), &st))
		assert.Equal(t, andon.Firing, st.Rules[0].State)
		assert.True(t, st.Time.Equal(time.Now()), "taken when sent, not 9s before: %v", time.Since(st.Time))
	})
}

// TestBoardShowsACordPulledDuringAnEvaluation: a cord pulled while an
// evaluation holds the evaluator past the pull's context, which the next
// evaluation fires, is on the live pages at once, as any change of the
// evaluator is, not at the next refresh.
func TestBoardShowsACordPulledDuringAnEvaluation(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		release := make(chan struct{})
		defer close(release)
		e := newEvaluator(t, andon.EvaluatorOptions{Rules: []andon.Rule{{Name: "Slow", Severity: andon.Page,
			Condition: andon.ConditionFunc(func(context.Context, time.Time) (andon.Measurement, error) {
				<-release
				return andon.Measurement{Samples: 1}, nil
			})}}})
		b, err := andon.NewBoard(e, andon.BoardOptions{Refresh: time.Hour})
		require.NoError(t, err)
		w, stop := stream(b)
		defer stop()
		synctest.Wait()
		go e.Evaluate(context.Background()) // held until release
		synctest.Wait()

		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		require.True(t, e.Pull(ctx, "jam", "dave"), "pulled for the next evaluation")
		synctest.Wait()
		data := w.data()
		require.Len(t, data, 2, "the pulled cord is sent at once")
		var st andon.BoardState
		require.NoError(t, json.Unmarshal([]byte(data[1]), &st))
		assert.True(t, st.Cord.Pulled)
	})
}

// heldLine is a line whose Status waits, the first time after hold is
// called, until the channel hold returned is closed.
type heldLine struct {
	*jidoka.Line
	gate atomic.Pointer[chan struct{}]
}

func (l *heldLine) hold() chan struct{} {
	ch := make(chan struct{})
	l.gate.Store(&ch)
	return ch
}

func (l *heldLine) Status() jidoka.LineStatus {
	if ch := l.gate.Swap(nil); ch != nil {
		<-*ch
	}
	return l.Line.Status()
}

// TestBoardStreamNeverGoesBack: a stream whose state took long to read
// is not then sent a state another stream began after its own but read
// before it, which misses what changed meanwhile (here a line stopped,
// which the board hears of only at a refresh): the page would show the
// line running again after showing it stopped.
func TestBoardStreamNeverGoesBack(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cond := newSwitch()
		e := newEvaluator(t, andon.EvaluatorOptions{Rules: []andon.Rule{{Name: "R", Severity: andon.Page, Condition: cond}}})
		slow := &heldLine{Line: newLine("slow")}
		line := newLine("checkout")
		b, err := andon.NewBoard(e, andon.BoardOptions{Refresh: time.Hour, Lines: []andon.Line{slow, line}})
		require.NoError(t, err)
		w, stop := stream(b)
		defer stop()
		synctest.Wait()
		require.Len(t, w.data(), 1)

		gate := slow.hold()
		cond.Set(true)
		e.Evaluate(context.Background()) // the stream takes a state, held at the slow line
		synctest.Wait()
		b.Notify()
		other, stopOther := stream(b) // takes its own state, at once
		defer stopOther()
		synctest.Wait()
		require.Len(t, other.data(), 1)
		line.Stop("jam") // after the other page's state was read, before the stream's
		close(gate)
		synctest.Wait()

		data := w.data()
		require.GreaterOrEqual(t, len(data), 2)
		var st andon.BoardState
		require.NoError(t, json.Unmarshal([]byte(data[1]), &st))
		require.True(t, st.Lines[1].Stopped, "the state read after the stop shows it")
		for i, d := range data[2:] {
			require.NoError(t, json.Unmarshal([]byte(d), &st))
			assert.True(t, st.Lines[1].Stopped, "event %d goes back to a state read before the stop", i+2)
		}
	})
}

// TestBoardStreamsShareUnderLoad: while changes come faster than a state
// is taken, the streams take one state at a time, shared by all of them,
// however the pages that opened meanwhile fell: a page opened while a
// state was being taken split the streams into groups that each took a
// state at every change for as long as the load lasted.
func TestBoardStreamsShareUnderLoad(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cond := newSwitch()
		e := newEvaluator(t, andon.EvaluatorOptions{Rules: []andon.Rule{{Name: "R", Severity: andon.Page, Condition: cond}}})
		const take = 100 * time.Millisecond // to take a state
		var taken atomic.Int64
		b, err := andon.NewBoard(e, andon.BoardOptions{Refresh: time.Hour, Panels: []andon.Panel{{Title: "Jobs", Columns: []string{"Job"},
			Rows: func() []andon.PanelRow { taken.Add(1); time.Sleep(take); return nil }}}})
		require.NoError(t, err)
		var ws []*streamWriter
		for range 10 {
			w, stop := stream(b)
			defer stop()
			ws = append(ws, w)
		}
		time.Sleep(time.Second)
		synctest.Wait()
		taken.Store(0)

		const (
			every   = 30 * time.Millisecond
			changes = 100
			opened  = 5
		)
		for i := range changes {
			cond.Set(i%2 == 0)
			e.Evaluate(context.Background())
			if i%2 == 1 && i < 2*opened {
				w, stop := stream(b) // while a state is being taken
				defer stop()
				ws = append(ws, w)
			}
			time.Sleep(every)
		}
		time.Sleep(time.Second)
		synctest.Wait()
		// One state per take while the load lasts, each opened page's own,
		// and the one after the last change.
		most := int64(changes*every/take) + opened + 1
		assert.LessOrEqual(t, taken.Load(), most, "states taken for %d changes", changes)
		last, _ := e.Alert("R")
		for i, w := range ws {
			data := w.data()
			var st andon.BoardState
			require.NoError(t, json.Unmarshal([]byte(data[len(data)-1]), &st))
			assert.Equal(t, last.State, st.Rules[0].State, "page %d shows the last change", i)
			assert.True(t, last.LastEval.Equal(st.Rules[0].LastEval), "page %d shows the last change", i)
		}
	})
}

// statusPanicLine is a line whose Status panics while panics is set.
type statusPanicLine struct {
	*jidoka.Line
	panics atomic.Bool
}

func (l *statusPanicLine) Status() jidoka.LineStatus {
	if l.panics.Load() {
		panic("line status broke")
	}
	return l.Line.Status()
}

// panickyBreaker is a breaker whose Snapshot panics while panics is set.
type panickyBreaker struct {
	*jidoka.Breaker
	panics atomic.Bool
}

func (b *panickyBreaker) Snapshot() jidoka.Snapshot {
	if b.panics.Load() {
		panic("breaker snapshot broke")
	}
	return b.Breaker.Snapshot()
}

// lockedBuffer is a log's buffer, written by the goroutines serving the
// streams and read by the test.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestBoardContainsAPanickingLineOrBreaker: a Line's Status or a
// Breaker's Snapshot is the program's code, which the board calls while
// it takes a state. One that panics is logged and shown with an error,
// the rest of the state as it is; the request for the state is answered,
// and the event streams, which share the state, go on.
func TestBoardContainsAPanickingLineOrBreaker(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		line := &statusPanicLine{Line: newLine("checkout")}
		packing := newLine("packing")
		br := &panickyBreaker{Breaker: newBreaker(t, "gateway")}
		var logs lockedBuffer
		e := newEvaluator(t, andon.EvaluatorOptions{})
		b, err := andon.NewBoard(e, andon.BoardOptions{Lines: []andon.Line{line, packing}, Breakers: []andon.Breaker{br},
			Logger: slog.New(slog.NewTextHandler(&logs, nil))})
		require.NoError(t, err)

		// The streams are served as a server serves them, which recovers a
		// panic and ends the request.
		type served struct {
			w        *streamWriter
			done     chan struct{}
			panicked atomic.Value
		}
		ctx, cancel := context.WithCancel(context.Background())
		var streams []*served
		for range 2 {
			s := &served{w: &streamWriter{header: http.Header{}}, done: make(chan struct{})}
			go func() {
				defer close(s.done)
				defer func() {
					if v := recover(); v != nil {
						s.panicked.Store(v)
					}
				}()
				b.ServeHTTP(s.w, httptest.NewRequest(http.MethodGet, "/api/events", nil).WithContext(ctx))
			}()
			streams = append(streams, s)
		}
		defer func() {
			cancel()
			for _, s := range streams {
				<-s.done
			}
		}()
		getState := func() (st andon.BoardState, panicked any) {
			defer func() { panicked = recover() }()
			rec := httptest.NewRecorder()
			b.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/api/state", nil))
			require.Equal(t, http.StatusOK, rec.Code)
			require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &st))
			return st, nil
		}
		synctest.Wait()
		for i, s := range streams {
			require.Len(t, s.w.data(), 1, "stream %d: the state at once", i)
		}

		line.panics.Store(true)
		br.panics.Store(true)
		packing.Stop("jam")
		broken := func(st andon.BoardState) {
			t.Helper()
			require.Len(t, st.Lines, 2)
			assert.Equal(t, "checkout", st.Lines[0].Name)
			assert.NotEmpty(t, st.Lines[0].Error, "the line that panicked says so")
			assert.False(t, st.Lines[0].Stopped)
			assert.Equal(t, "packing", st.Lines[1].Name)
			assert.True(t, st.Lines[1].Stopped, "the other line is shown as it is")
			assert.Empty(t, st.Lines[1].Error)
			require.Len(t, st.Breakers, 1)
			assert.Equal(t, "gateway", st.Breakers[0].Name, "named by its Name method")
			assert.NotEmpty(t, st.Breakers[0].Error, "the breaker that panicked says so")
		}

		time.Sleep(2 * time.Second) // the refresh
		synctest.Wait()
		for i, s := range streams {
			require.Nil(t, s.panicked.Load(), "stream %d panicked", i)
			select {
			case <-s.done:
				t.Fatalf("stream %d ended", i)
			default:
			}
			data := s.w.data()
			require.Len(t, data, 2, "stream %d: the state at the refresh", i)
			var st andon.BoardState
			require.NoError(t, json.Unmarshal([]byte(data[1]), &st))
			broken(st)
		}
		st, panicked := getState()
		require.Nil(t, panicked, "the request for the state panicked")
		broken(st)
		assert.Contains(t, logs.String(), "line status broke")
		assert.Contains(t, logs.String(), "breaker snapshot broke")

		line.panics.Store(false)
		br.panics.Store(false)
		time.Sleep(2 * time.Second)
		synctest.Wait()
		for i, s := range streams {
			data := s.w.data()
			require.Len(t, data, 3, "stream %d: the state once the line and breaker answer again", i)
			var st andon.BoardState
			require.NoError(t, json.Unmarshal([]byte(data[2]), &st))
			assert.Empty(t, st.Lines[0].Error)
			assert.Empty(t, st.Breakers[0].Error)
			assert.Equal(t, "closed", st.Breakers[0].State)
		}
	})
}

// hidingWriter is the ResponseWriter of a middleware that hides every
// interface of the writer it wraps, http.Flusher among them.
type hidingWriter struct{ w http.ResponseWriter }

func (h hidingWriter) Header() http.Header         { return h.w.Header() }
func (h hidingWriter) Write(p []byte) (int, error) { return h.w.Write(p) }
func (h hidingWriter) WriteHeader(code int)        { h.w.WriteHeader(code) }

// TestBoardEventsBehindAWriterThatCannotFlush serves the board behind a
// middleware whose writer cannot flush: the event stream is refused with
// 501 and streaming_unsupported, as a GET and a HEAD, its place among
// MaxStreams freed, and the log says why once, so that the page polls
// api/state. It was answered 200 with one event and then ended, which the
// page took for a lost connection every three seconds.
func TestBoardEventsBehindAWriterThatCannotFlush(t *testing.T) {
	var log lockedBuffer
	e := newEvaluator(t, andon.EvaluatorOptions{})
	b, err := andon.NewBoard(e, andon.BoardOptions{MaxStreams: 1, Logger: slog.New(slog.NewTextHandler(&log, nil))})
	require.NoError(t, err)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { b.ServeHTTP(hidingWriter{w}, r) }))
	t.Cleanup(func() {
		require.NoError(t, b.Shutdown(context.Background()))
		srv.Close()
	})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, method := range []string{http.MethodGet, http.MethodGet, http.MethodHead} {
		req, err := http.NewRequestWithContext(ctx, method, srv.URL+"/api/events", nil)
		require.NoError(t, err)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		require.NoError(t, err)
		assert.Equal(t, http.StatusNotImplemented, resp.StatusCode, method)
		assert.Equal(t, "application/json", resp.Header.Get("Content-Type"), method)
		if method == http.MethodGet {
			assert.Contains(t, string(body), `"code":"streaming_unsupported"`)
		}
	}
	assert.Equal(t, 1, strings.Count(log.String(), "cannot flush"), "logged once: %s", log.String())
}

// TestBoardRefusesCrossSiteReads: a page of another site can make the
// browser open the board's event stream (it cannot read it, but the stream
// holds one of MaxStreams until the browser gives up) or fetch its state.
// Requests the browser marks cross-site or same-site are refused 403,
// before they take a stream; the board's own page (same-origin), a request
// typed in the address bar (none) and a program's (no header) are served.
func TestBoardRefusesCrossSiteReads(t *testing.T) {
	f := newBoardFixture(t, andon.BoardOptions{MaxStreams: 1})
	get := func(path, site string) *http.Response {
		t.Helper()
		req, err := http.NewRequest(http.MethodGet, f.srv.URL+"/andon/"+path, nil)
		require.NoError(t, err)
		if site != "" {
			req.Header.Set("Sec-Fetch-Site", site)
		}
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		t.Cleanup(func() { resp.Body.Close() })
		return resp
	}
	for _, site := range []string{"cross-site", "same-site", "Cross-Site"} {
		for _, path := range []string{"api/events", "api/state"} {
			resp := get(path, site)
			assert.Equal(t, http.StatusForbidden, resp.StatusCode, "%s %s", site, path)
			var e struct {
				Error struct{ Code, Message string }
			}
			require.NoError(t, json.NewDecoder(resp.Body).Decode(&e))
			assert.Equal(t, "cross_origin", e.Error.Code)
			assert.Contains(t, e.Error.Message, "another site")
		}
	}
	// The page itself may be opened from a link on any site.
	assert.Equal(t, http.StatusOK, get("", "cross-site").StatusCode)
	for _, site := range []string{"same-origin", "none", ""} {
		assert.Equal(t, http.StatusOK, get("api/state", site).StatusCode, site)
	}
	// No refused stream took the only one.
	resp := get("api/events", "same-origin")
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	readEvent(t, bufio.NewReader(resp.Body))
}
