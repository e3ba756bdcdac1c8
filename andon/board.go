package andon

import (
	"bytes"
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"mime"
	"net/http"
	"path"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/taipattern/taikit/internal/typednil"
	"github.com/taipattern/taikit/tai"
)

//go:embed board
var boardFiles embed.FS

// BoardOptions configures a Board. The zero value is useful.
type BoardOptions struct {
	// Prefix is the path the board is served under, such as "/andon":
	// the page at Prefix+"/", its JSON at Prefix+"/api/state". Empty means
	// the root. It must start with "/", not end with one, and be a clean
	// path (no "//", "." or ".." segment), given unescaped: no '%', no
	// control character, none of "{}#?" nor a space.
	Prefix string
	// Title heads the page. Empty means "Andon".
	Title string
	// Lines and Breakers are shown with their states (*jidoka.Line and
	// *jidoka.Breaker satisfy the interfaces); a nil one, or a nil
	// pointer, is refused. Their methods are called each time the board
	// takes its state (as a Panel's Rows is); one that panics is logged
	// and its line or breaker shown with an Error, the rest of the state
	// as it is. NewBoard keeps a copy of these slices, and of Panels:
	// changing them afterwards leaves the board as it was.
	Lines    []Line
	Breakers []Breaker
	// Refresh is how often a live page is sent the state when nothing
	// changed in the evaluator (lines and breakers change on their own,
	// and so does an alert's Silenced when a silence begins or ends at its
	// time, which the page shows at the next refresh). The refreshes of
	// every page fall together, at multiples of Refresh after NewBoard,
	// and the pages share the state taken then. Zero means 2s; otherwise
	// at least 100ms. Whatever it is, a stream silent for 15s is sent a
	// keep-alive event.
	Refresh time.Duration
	// AllowCord shows the cord on the page and takes its pulls and resets
	// (POST api/cord). A pull stops lines, so the zero value leaves the
	// cord out: the board is read-only, the cord hidden and its POSTs
	// refused with 403, and a board mounted with nothing in front of it
	// shows the state and changes nothing. Set it when the board is served
	// behind your authentication (Who can name the person from it).
	AllowCord bool
	// Who names the person pulling the cord from the request (from your
	// authentication); the page then asks for no name. Nil means the name
	// typed on the page, or "board".
	// The name is held to the rules of a typed one: a pull or reset whose
	// name is over 200 characters or holds control characters is refused
	// (invalid_request), and an empty one reads "board".
	Who func(r *http.Request) string
	// TrustedOrigins are origins ("https://ops.example.com") allowed to
	// POST besides the board's own, as http.CrossOriginProtection takes
	// them.
	TrustedOrigins []string
	// HistoryLength is the number of recent transitions shown. Zero means
	// 20; otherwise from 1 to 1000. The evaluator keeps
	// EvaluatorOptions.HistorySize of them: no more than that are shown.
	HistoryLength int
	// Logger records the cord pulls and resets made on the board, with who
	// and why, and errors encoding the state. Nil means slog.Default().
	Logger *slog.Logger
	// Panels are tables of the program's own, shown under the lines and
	// breakers (see Panel).
	Panels []Panel
	// MaxStreams caps the event streams served at once; past it a page is
	// answered 503 with Retry-After and polls /api/state instead, asking
	// for the stream again after 5s, then after twice as long each time
	// (a minute at most). Zero means 64.
	MaxStreams int
	// WriteTimeout bounds the writing of each event to a stream; a client
	// that does not read is dropped after it. It replaces the
	// http.Server's WriteTimeout for the stream, which would otherwise cut
	// every stream that outlives it. Zero means 10s.
	WriteTimeout time.Duration
}

// Board is an http.Handler serving a live andon board for an Evaluator:
// every rule with its state in colour (green, amber, red), its value
// against its threshold, since when, and a sparkline of recent values;
// the lines and breakers; tables of the program's own (Panels); the cord,
// with a button to pull and reset it.
// The page is plain HTML, CSS and JavaScript embedded in the binary, with
// nothing loaded from elsewhere. Under Prefix it serves:
//
//	GET  {prefix}/             the page
//	GET  {prefix}/api/state    the BoardState as JSON
//	GET  {prefix}/api/events   the BoardState as server-sent events, on every change
//	                           (event "state"), and event "keep-alive" after 15s without one
//	POST {prefix}/api/cord     {"action": "pull", "reason": "...", "who": "..."} or {"action": "reset"}
//
// The page follows /api/events and falls back to polling /api/state; a
// stream that has said nothing, not even its keep-alive (whose data is
// empty), for 40s is taken for dead although the browser was not told (a
// network that dropped, a proxy that lost its upstream), and the page
// greys the state it shows until the board answers again. The tabs of
// one board open in one browser share one event stream: over HTTP/1.1 a
// browser keeps at most six connections to a host, and a stream holds one
// for as long as its tab is open, so a seventh tab with its own would
// never load. One tab follows the board and passes what it hears to the
// others (over a BroadcastChannel); when it closes, another takes its
// place, at once where the page has Web Locks (https, or localhost), and
// otherwise when the closing tab names it, or after 40s without a word.
// A browser without BroadcastChannel gives each tab its own stream. The
// POST must carry Content-Type application/json and the header
// X-Andon-Board: 1, which a form on another site cannot send without a
// CORS preflight the board never grants, and passes
// http.CrossOriginProtection (Sec-Fetch-Site and Origin checks). It answers
// with the new BoardState.
//
// Every error is answered with Content-Type application/json and the body
// {"error": {"code": "...", "message": "..."}}: the message says what was
// wrong, for people; the code, for programs, is one of
//
//	invalid_request         400  the cord's body: not one JSON object, not UTF-8,
//	                             an unknown field (names are exact: "Action" is
//	                             unknown) or one given twice, an unknown action,
//	                             a reason or who over 200 characters or holding
//	                             control characters (typed, or given by Who), or
//	                             a \u escape of half a surrogate pair
//	forbidden               403  the board is read-only (no AllowCord), or X-Andon-Board is missing
//	cross_origin            403  refused by http.CrossOriginProtection; or a GET of the
//	                             API from a page of another site (Sec-Fetch-Site
//	                             cross-site or same-site)
//	not_found               404  no route or asset at the path
//	method_not_allowed      405  the path takes other methods (see Allow)
//	body_too_large          413  the cord's body is over 4096 bytes
//	unsupported_media_type  415  the cord's Content-Type is not application/json
//	internal                500  the state could not be encoded
//	streaming_unsupported   501  the event stream, when the ResponseWriter cannot
//	                             flush (see below)
//	too_many_streams        503  MaxStreams event streams are served (Retry-After)
//	shutting_down           503  the board is shut down; no more streams (Retry-After);
//	                             or, for the cord, the Evaluator is shut down and the
//	                             cord was left as it was
//
// A service that answers its own errors in the same shape can mount the
// board as it is, and its clients see one error schema.
//
// The event stream needs a ResponseWriter that flushes. A middleware in
// front of the board whose writer hides http.Flusher (and has no Unwrap
// method for http.ResponseController to reach the one beneath) leaves
// the board unable to stream: /api/events is answered 501, which is
// logged once, and the page polls /api/state instead, asking for the
// stream again from time to time as it does after a 503.
//
// Shutdown ends the event streams and waits for their handlers to return;
// the evaluator stays as it is. Shut the board down before the
// http.Server that serves it: the server's Shutdown waits for handlers,
// and an event stream lasts until its client goes.
//
// Make one with NewBoard; the zero Board is not usable: it has no
// evaluator to show, ServeHTTP answers every request 500 in the error
// schema above (code "not_made"), State shows no rule, line or breaker,
// Notify does nothing, and Shutdown returns an error saying it was not
// made by NewBoard.
type Board struct {
	ev      *Evaluator
	opts    BoardOptions
	refresh time.Duration
	mux     *http.ServeMux
	csrf    *http.CrossOriginProtection
	log     *slog.Logger
	done    chan struct{} // closed by Shutdown
	noFlush sync.Once     // logs that the event streams cannot be flushed

	epoch time.Time // NewBoard's time: the refreshes of every stream fall at its multiples of refresh

	mu       sync.Mutex
	shot     *streamState  // the last state begun for the event streams to share
	shots    uint64        // states begun for the event streams so far
	read     uint64        // states read for the event streams so far
	poke     chan struct{} // closed and replaced by Notify
	streams  int           // event streams being served
	shutdown bool          // Shutdown was called
	drained  chan struct{} // closed when shutdown and streams is zero
}

// NewBoard returns a Board for ev, or an error naming the bad option.
func NewBoard(ev *Evaluator, opts BoardOptions) (*Board, error) {
	if ev == nil {
		return nil, errors.New("andon: NewBoard: nil Evaluator")
	}
	if opts.Prefix != "" && (!strings.HasPrefix(opts.Prefix, "/") || strings.HasSuffix(opts.Prefix, "/")) {
		return nil, fmt.Errorf("andon: BoardOptions.Prefix %q must start with / and not end with one (e.g. /andon)", opts.Prefix)
	}
	if strings.ContainsAny(opts.Prefix, "{}# ?") {
		// ServeMux would read them as a wildcard, a method or a host
		// separator; a request path never holds a # or ?.
		return nil, fmt.Errorf("andon: BoardOptions.Prefix %q must not hold any of {, }, #, ? or a space", opts.Prefix)
	}
	// The ServeMux reads an escape in a pattern as the character it
	// stands for ("/ops%20x" would serve "/ops x"), and a bare '%' makes
	// the page's links no URL.
	if strings.Contains(opts.Prefix, "%") {
		return nil, fmt.Errorf("andon: BoardOptions.Prefix %q holds a '%%': give the path unescaped", opts.Prefix)
	}
	if strings.ContainsFunc(opts.Prefix, unicode.IsControl) {
		return nil, fmt.Errorf("andon: BoardOptions.Prefix %q must not hold a control character", opts.Prefix)
	}
	if opts.Prefix != "" && path.Clean(opts.Prefix) != opts.Prefix {
		// A request's path is cleaned before it is matched, so the board
		// could never be reached there (and ServeMux panics on such a pattern).
		return nil, fmt.Errorf("andon: BoardOptions.Prefix %q must be a clean path, without // or . or .. segments (e.g. /andon)", opts.Prefix)
	}
	// A nil pointer would panic in every answer that shows the state.
	for i, l := range opts.Lines {
		if l == nil {
			return nil, fmt.Errorf("andon: BoardOptions.Lines[%d] is nil", i)
		}
		if typednil.Holds(l) {
			return nil, fmt.Errorf("andon: BoardOptions.Lines[%d] is a nil %T", i, l)
		}
	}
	for i, br := range opts.Breakers {
		if br == nil {
			return nil, fmt.Errorf("andon: BoardOptions.Breakers[%d] is nil", i)
		}
		if typednil.Holds(br) {
			return nil, fmt.Errorf("andon: BoardOptions.Breakers[%d] is a nil %T", i, br)
		}
	}
	if err := validatePanels(opts.Panels); err != nil {
		return nil, err
	}
	// The board keeps its own copies of what it checked: a caller that
	// reuses its slices, to build another board, changes neither.
	opts.Lines, opts.Breakers = slices.Clone(opts.Lines), slices.Clone(opts.Breakers)
	opts.Panels = slices.Clone(opts.Panels)
	for i := range opts.Panels {
		opts.Panels[i].Columns = slices.Clone(opts.Panels[i].Columns)
	}
	b := &Board{ev: ev, opts: opts, refresh: opts.Refresh, log: opts.Logger, done: make(chan struct{}), drained: make(chan struct{}),
		poke: make(chan struct{}), epoch: time.Now()}
	switch {
	case b.opts.MaxStreams == 0:
		b.opts.MaxStreams = 64
	case b.opts.MaxStreams < 0:
		return nil, fmt.Errorf("andon: BoardOptions.MaxStreams %d is negative", opts.MaxStreams)
	}
	switch {
	case b.opts.WriteTimeout == 0:
		b.opts.WriteTimeout = 10 * time.Second
	case b.opts.WriteTimeout < 0:
		return nil, fmt.Errorf("andon: BoardOptions.WriteTimeout %v is negative", opts.WriteTimeout)
	}
	switch {
	case b.refresh == 0:
		b.refresh = 2 * time.Second
	case b.refresh < 100*time.Millisecond:
		return nil, fmt.Errorf("andon: BoardOptions.Refresh %v is below 100ms", opts.Refresh)
	}
	switch {
	case b.opts.HistoryLength == 0:
		b.opts.HistoryLength = 20
	case b.opts.HistoryLength < 0 || b.opts.HistoryLength > 1000:
		return nil, fmt.Errorf("andon: BoardOptions.HistoryLength %d is outside [1, 1000]", opts.HistoryLength)
	}
	if b.opts.Title == "" {
		b.opts.Title = "Andon"
	}
	if b.log == nil {
		b.log = slog.Default()
	}
	b.csrf = http.NewCrossOriginProtection()
	for _, o := range opts.TrustedOrigins {
		if err := b.csrf.AddTrustedOrigin(o); err != nil {
			return nil, fmt.Errorf("andon: BoardOptions.TrustedOrigins: %w", err)
		}
	}
	p := opts.Prefix
	b.mux = http.NewServeMux()
	b.mux.HandleFunc("GET "+p+"/{$}", b.page)
	b.mux.HandleFunc("GET "+p+"/assets/{file}", b.asset)
	b.mux.HandleFunc("GET "+p+"/api/state", b.state)
	b.mux.HandleFunc("GET "+p+"/api/events", b.events)
	b.mux.HandleFunc("POST "+p+"/api/cord", b.cord)
	return b, nil
}

// ServeHTTP serves the page, its assets and its API.
func (b *Board) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if b.mux == nil {
		b.fail(w, http.StatusInternalServerError, "not_made", errBoardNotMade.Error())
		return
	}
	h := w.Header()
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "same-origin")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'; base-uri 'none'")
	if _, pattern := b.mux.Handler(r); pattern == "" {
		// No route: the mux would answer 404, or 405 with the methods
		// the path takes, in plain text. Keep its status and Allow, and
		// answer in the board's error schema.
		miss := &routeMiss{header: http.Header{}}
		b.mux.ServeHTTP(miss, r)
		if miss.code == http.StatusMethodNotAllowed {
			if allow := miss.header.Get("Allow"); allow != "" {
				h.Set("Allow", allow)
			}
			b.fail(w, http.StatusMethodNotAllowed, "method_not_allowed", fmt.Sprintf("%s is not allowed on %s", clip(r.Method), clip(r.URL.Path)))
			return
		}
		b.fail(w, http.StatusNotFound, "not_found", fmt.Sprintf("no route for %s %s", clip(r.Method), clip(r.URL.Path)))
		return
	}
	b.mux.ServeHTTP(w, r)
}

// routeMiss takes the mux's answer for a request no route matched: its
// status and header, without its body.
type routeMiss struct {
	header http.Header
	code   int
}

func (m *routeMiss) Header() http.Header { return m.header }

func (m *routeMiss) WriteHeader(code int) {
	if m.code == 0 {
		m.code = code
	}
}

func (m *routeMiss) Write(p []byte) (int, error) {
	m.WriteHeader(http.StatusOK)
	return len(p), nil
}

// clip cuts a method or path from the request to at most 200 bytes for a
// message, at a character boundary.
func clip(s string) string {
	const n = 200
	if len(s) <= n {
		return s
	}
	i := n
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	return s[:i] + "…"
}

// Shutdown ends the event streams being served and waits until their
// handlers have returned, or ctx ends (it returns ctx.Err(); the handlers
// still return on their own, once their writes do). Later requests for
// events are answered 503 Service Unavailable, which makes the page poll
// /api/state instead and ask for the stream again from time to time, so
// that a page left open follows the board of the restarted program; the
// rest of the board is served as before. Shutdown is idempotent.
func (b *Board) Shutdown(ctx context.Context) error {
	if b.done == nil {
		return errBoardNotMade
	}
	b.mu.Lock()
	if !b.shutdown {
		b.shutdown = true
		close(b.done)
		if b.streams == 0 {
			close(b.drained)
		}
	}
	b.mu.Unlock()
	select {
	case <-b.drained:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// errBoardNotMade is the answer of a Board that NewBoard did not make: it
// has no evaluator to show.
var errBoardNotMade = errors.New("andon: Board not made by NewBoard")

// Notify tells the live pages that something a Panel shows has changed,
// so they get the state now rather than at the next refresh.
func (b *Board) Notify() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.poke == nil {
		return // the zero Board has no live page to tell
	}
	close(b.poke)
	b.poke = make(chan struct{})
}

func (b *Board) poked() <-chan struct{} {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.poke
}

// openStream counts an event stream, unless count is false (for a HEAD,
// which gets the answer a GET would without a stream). It refuses with
// the reason after Shutdown and when MaxStreams are being served.
func (b *Board) openStream(count bool) (code, msg string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch {
	case b.shutdown:
		return "shutting_down", "the board is shut down; poll api/state"
	case b.streams >= b.opts.MaxStreams:
		return "too_many_streams", "too many live pages; poll api/state"
	}
	if count {
		b.streams++
	}
	return "", ""
}

// closeStream uncounts an event stream.
func (b *Board) closeStream() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.streams--
	if b.streams == 0 && b.shutdown {
		close(b.drained)
	}
}

// BoardState is what the board shows, and what /api/state returns.
type BoardState struct {
	Title    string    `json:"title"`
	Time     time.Time `json:"time"`
	ReadOnly bool      `json:"read_only"`
	// NamedByBoard is true when BoardOptions.Who names the person pulling
	// the cord: the page asks for no name, which the board would not take.
	NamedByBoard bool           `json:"named_by_board"`
	Cord         BoardCord      `json:"cord"`
	Rules        []BoardRule    `json:"rules"`
	Lines        []BoardLine    `json:"lines"`
	Breakers     []BoardBreaker `json:"breakers"`
	Panels       []BoardPanel   `json:"panels"`
	// History holds the most recent transitions, oldest first. A
	// transition's Value is 0 where the condition measured NaN or an
	// infinity, which JSON cannot carry.
	History []Transition `json:"history"`
}

// BoardCord is the cord on the board: its alertname and status.
type BoardCord struct {
	Name string `json:"name"`
	CordStatus
}

// BoardRule is one rule on the board. Value, Threshold and the values of
// Recent are 0 where the condition measured NaN or an infinity, which JSON
// cannot carry; ValueText and ThresholdText say what they were.
type BoardRule struct {
	Name     string     `json:"name"`
	Severity Severity   `json:"severity"`
	State    AlertState `json:"state"`
	// Color is "red" (firing), "amber" (pending), "grey" (inactive with
	// too little data) or "green".
	Color         string  `json:"color"`
	Value         float64 `json:"value"`
	Threshold     float64 `json:"threshold"`
	Unit          Unit    `json:"unit"`
	ValueText     string  `json:"value_text"`
	ThresholdText string  `json:"threshold_text"`
	Detail        string  `json:"detail,omitempty"`
	Summary       string  `json:"summary"`
	// RunbookURL is the rule's runbook_url annotation when it is a link
	// the board takes, as it takes a PanelRow's Link: an http or https URL
	// (the scheme in any case) or a path on the board's own site starting
	// with a single "/". Any other ("//host/x", "javascript:…", a
	// relative path) is left out.
	RunbookURL       string    `json:"runbook_url,omitempty"`
	Since            time.Time `json:"since,omitzero"`
	LastEval         time.Time `json:"last_eval,omitzero"`
	Samples          uint64    `json:"samples"`
	MinSamples       uint64    `json:"min_samples"`
	InsufficientData bool      `json:"insufficient_data"`
	Silenced         bool      `json:"silenced"`
	LastError        string    `json:"last_error,omitempty"`
	Recent           []Point   `json:"recent"`
}

// BoardLine is a line on the board.
type BoardLine struct {
	Name    string    `json:"name"`
	Stopped bool      `json:"stopped"`
	Reason  string    `json:"reason,omitempty"`
	Since   time.Time `json:"since,omitzero"`
	// Error says the line's Status (or Name) panicked: its state is not
	// known, and the board goes on without it. Name is then
	// "Lines[i]", its place in BoardOptions.Lines, if Name panicked.
	Error string `json:"error,omitempty"`
}

// BoardBreaker is a breaker on the board; Open is true while it refuses
// calls (open, forced open, half-open).
type BoardBreaker struct {
	Name   string    `json:"name"`
	State  string    `json:"state"`
	Open   bool      `json:"open"`
	Reason string    `json:"reason,omitempty"`
	Since  time.Time `json:"since,omitzero"`
	// Error says the breaker's Snapshot panicked: its state is not known,
	// and the board goes on without it. Name is then the breaker's Name()
	// if it has that method (*jidoka.Breaker does), or "Breakers[i]", its
	// place in BoardOptions.Breakers.
	Error string `json:"error,omitempty"`
}

// State returns what the board shows now.
func (b *Board) State() BoardState {
	if b.ev == nil {
		return BoardState{Time: time.Now(), ReadOnly: true, Rules: []BoardRule{}, Lines: []BoardLine{},
			Breakers: []BoardBreaker{}, Panels: []BoardPanel{}, History: []Transition{}}
	}
	st := BoardState{Title: b.opts.Title, Time: time.Now(), ReadOnly: !b.opts.AllowCord,
		NamedByBoard: b.opts.Who != nil, Cord: BoardCord{Name: b.ev.CordName(), CordStatus: b.ev.Cord()}}
	// The rules, their values and the history are one snapshot; the
	// history's shown tail alone is copied.
	alerts, recent, history := b.ev.boardSnapshot(b.opts.HistoryLength)
	st.Rules = make([]BoardRule, 0, len(alerts))
	for i, a := range alerts {
		br := BoardRule{Name: a.Name, Severity: a.Severity, State: a.State, Color: color(a), Value: finite(a.Value), Threshold: finite(a.Threshold),
			Unit: a.Unit, ValueText: a.ValueText(), ThresholdText: a.ThresholdText(), Detail: a.Detail,
			Summary: a.Annotations["summary"], RunbookURL: linkOrNone(a.Annotations["runbook_url"]), Since: a.Since(), LastEval: a.LastEval,
			Samples: a.Samples, MinSamples: a.MinSamples, InsufficientData: a.InsufficientData, Silenced: a.Silenced,
			LastError: a.LastError, Recent: recent[i]}
		if br.Recent == nil {
			br.Recent = []Point{}
		}
		for i := range br.Recent {
			br.Recent[i].Value = finite(br.Recent[i].Value)
		}
		st.Rules = append(st.Rules, br)
	}
	st.Lines = make([]BoardLine, 0, len(b.opts.Lines))
	for i, l := range b.opts.Lines {
		st.Lines = append(st.Lines, b.showLine(i, l))
	}
	st.Breakers = make([]BoardBreaker, 0, len(b.opts.Breakers))
	for i, br := range b.opts.Breakers {
		st.Breakers = append(st.Breakers, b.showBreaker(i, br))
	}
	st.Panels = make([]BoardPanel, 0, len(b.opts.Panels))
	for _, p := range b.opts.Panels {
		st.Panels = append(st.Panels, b.show(p))
	}
	// An empty list, not null, until a rule first changes state: the page
	// reads it as a list.
	st.History = history
	for i := range st.History {
		st.History[i].Value = finite(st.History[i].Value)
	}
	return st
}

// showLine reads the i-th line for the board. Its methods are the
// program's code: a panic in them is logged and shown as the line's
// Error, rather than ending the request, and with it every event stream
// sharing the state.
func (b *Board) showLine(i int, l Line) (bl BoardLine) {
	defer func() {
		if v := recover(); v != nil {
			if bl.Name == "" {
				bl.Name = fmt.Sprintf("Lines[%d]", i)
			}
			b.log.Error("andon: board: a line panicked", "line", bl.Name, "panic", panicText(v), "stack", string(debug.Stack()))
			bl = BoardLine{Name: bl.Name, Error: "the line's status could not be read; see the log"}
		}
	}()
	bl.Name = l.Name()
	s := l.Status()
	bl.Stopped, bl.Reason, bl.Since = s.Stopped, s.Reason, s.Since
	return bl
}

// showBreaker reads the i-th breaker for the board, as showLine reads a
// line: a panic in its Snapshot is logged and shown as its Error.
func (b *Board) showBreaker(i int, br Breaker) (bb BoardBreaker) {
	defer func() {
		if v := recover(); v != nil {
			name := breakerName(i, br)
			b.log.Error("andon: board: a breaker panicked", "breaker", name, "panic", panicText(v), "stack", string(debug.Stack()))
			bb = BoardBreaker{Name: name, Error: "the breaker's state could not be read; see the log"}
		}
	}()
	s := br.Snapshot()
	return BoardBreaker{Name: s.Name, State: s.State.String(), Open: breakerRefuses(s.State), Reason: s.Reason, Since: s.Since}
}

// breakerName names a breaker whose Snapshot failed: by its Name method,
// if it has one that answers, or by its place in BoardOptions.Breakers.
func breakerName(i int, br Breaker) (name string) {
	name = fmt.Sprintf("Breakers[%d]", i)
	defer func() { _ = recover() }()
	if n, ok := br.(tai.Namer); ok {
		if s := n.Name(); s != "" {
			name = s
		}
	}
	return name
}

// finite returns v, or 0 for NaN and the infinities, which JSON cannot
// carry; ValueText and ThresholdText still say what they were.
func finite(v float64) float64 {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return 0
	}
	return v
}

func color(a Alert) string {
	switch {
	case a.State == Firing:
		return "red"
	case a.State == Pending:
		return "amber"
	case a.InsufficientData:
		return "grey"
	}
	return "green"
}

func (b *Board) page(w http.ResponseWriter, r *http.Request) {
	body, err := boardFiles.ReadFile("board/index.html")
	if err != nil {
		b.fail(w, http.StatusInternalServerError, "internal", "the page is missing from the program")
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-cache")
	_, _ = w.Write(body)
}

// asset serves a file the page loads (its script and style sheet).
func (b *Board) asset(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("file")
	// The name is one path segment; an escaped slash in it names no
	// asset (and fs.ValidPath refuses a ".." the FS would see).
	body, err := boardFiles.ReadFile("board/" + name)
	if err != nil || strings.Contains(name, "/") {
		b.fail(w, http.StatusNotFound, "not_found", fmt.Sprintf("no asset %s", clip(name)))
		return
	}
	ct, ok := assetTypes[path.Ext(name)]
	if !ok {
		ct = "application/octet-stream"
	}
	w.Header().Set("Content-Type", ct)
	_, _ = w.Write(body)
}

// assetTypes are the Content-Types of the page's files, by extension. They
// are fixed here rather than read from mime.TypeByExtension, which takes
// the machine's MIME tables: one that maps .js to text/plain would have
// the browser, told nosniff, refuse the script.
var assetTypes = map[string]string{
	".css":  "text/css; charset=utf-8",
	".html": "text/html; charset=utf-8",
	".js":   "text/javascript; charset=utf-8",
}

func (b *Board) state(w http.ResponseWriter, r *http.Request) {
	if b.refuseOtherSites(w, r) {
		return
	}
	b.writeJSON(w, http.StatusOK, b.State())
}

// refuseOtherSites answers 403, and returns true, for a request the
// browser says a page of another site made (Sec-Fetch-Site cross-site or
// same-site): such a page cannot read the answer, which the board never
// shares across origins, but an event stream it opened would hold one of
// MaxStreams until the browser gave up. The board's own page, a request
// typed in the address bar and a program's (no Sec-Fetch-Site) are served.
func (b *Board) refuseOtherSites(w http.ResponseWriter, r *http.Request) bool {
	site := r.Header.Get("Sec-Fetch-Site")
	if !strings.EqualFold(site, "cross-site") && !strings.EqualFold(site, "same-site") {
		return false
	}
	b.fail(w, http.StatusForbidden, "cross_origin", "the board's API is not read by pages of another site")
	return true
}

func (b *Board) writeJSON(w http.ResponseWriter, code int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		b.log.Error("andon: board: encoding an answer", "err", err)
		code, body = http.StatusInternalServerError, []byte(`{"error":{"code":"internal","message":"the answer could not be encoded"}}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_, _ = w.Write(append(body, '\n'))
}

// boardError is the body of every error answer: {"error": {"code",
// "message"}}, the shape the example services answer theirs in.
type boardError struct {
	Error errorDetail `json:"error"`
}

type errorDetail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// fail answers an error with the HTTP status, the code programs branch on
// and a message for people.
func (b *Board) fail(w http.ResponseWriter, status int, code, msg string) {
	b.writeJSON(w, status, boardError{Error: errorDetail{Code: code, Message: msg}})
}

// keepAlive is the longest an event stream stays silent.
const keepAlive = 15 * time.Second

// setStreamHeader sets the header of the event stream's answer.
func setStreamHeader(h http.Header) {
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
}

// events streams the state as server-sent events until the client goes
// or the board shuts down.
func (b *Board) events(w http.ResponseWriter, r *http.Request) {
	// The GET pattern takes HEAD too: it gets the status and header a
	// GET would get now, and ends, as a stream with no body to send would
	// never end.
	if b.refuseOtherSites(w, r) {
		return
	}
	head := r.Method == http.MethodHead
	if code, msg := b.openStream(!head); code != "" {
		w.Header().Set("Retry-After", "5")
		b.fail(w, http.StatusServiceUnavailable, code, msg)
		return
	}
	if !head {
		defer b.closeStream()
	}
	rc := http.NewResponseController(w)
	setStreamHeader(w.Header())
	// The flush sends the header, status 200. A writer that cannot flush
	// (a middleware's that hides http.Flusher) would hold every event
	// until the stream ended: the page is told so, and polls.
	if err := rc.Flush(); err != nil {
		if errors.Is(err, http.ErrNotSupported) {
			b.noFlush.Do(func() {
				b.log.Warn("andon: board: the ResponseWriter cannot flush (a middleware hides http.Flusher): pages poll api/state")
			})
			for _, k := range []string{"Content-Type", "Cache-Control", "X-Accel-Buffering"} {
				w.Header().Del(k)
			}
			b.fail(w, http.StatusNotImplemented, "streaming_unsupported", "the server cannot stream events here; poll api/state")
		}
		return
	}
	if head {
		return
	}
	// The streams' refreshes fall at the same times, so that the streams
	// share the state each takes.
	tick := time.NewTimer(b.untilRefresh(time.Now()))
	defer tick.Stop()
	// A keep-alive is due keepAlive after the last write whatever Refresh
	// is, so that a proxy does not take a quiet stream for a dead one.
	quiet := time.NewTimer(keepAlive)
	defer quiet.Stop()
	var (
		last []byte
		// shown is the seq of the state last taken for this stream (0
		// at first: a new stream takes its own) and read its order
		// among the states read, and after the time a state must have
		// been begun at to be shown next (a refresh's, or shareLag
		// before the stream woke).
		shown, read uint64
		after       time.Time
	)
	lastWrite := time.Now()
	for {
		wk := wake{changed: b.ev.watch(), poked: b.poked()}
		ss := b.streamState(r.Context(), &wk, shown, read, after)
		if ss == nil || ss.err != nil {
			return
		}
		shown, read, after = ss.seq, ss.order, time.Time{}
		var msg []byte
		switch {
		case !bytes.Equal(ss.key, last):
			msg = ss.event
			last = ss.key
		case time.Since(lastWrite) >= keepAlive:
			// An event rather than a comment, which a page cannot see:
			// the page takes a stream silent for long for a dead one.
			msg = []byte("event: keep-alive\ndata:\n\n")
		}
		if msg != nil {
			// Each event gets its own deadline, which also lifts the
			// server's WriteTimeout for the stream; a writer without
			// deadlines (a test's) just goes on.
			if err := rc.SetWriteDeadline(time.Now().Add(b.opts.WriteTimeout)); err != nil && !errors.Is(err, http.ErrNotSupported) {
				return
			}
			if _, err := w.Write(msg); err != nil {
				return
			}
			if err := rc.Flush(); err != nil {
				return
			}
			// The deadline bounds the write, not the wait for the next
			// one: over HTTP/2 a deadline that passes resets the stream
			// even with nothing being written, and over HTTP/1 it stays
			// on a connection kept alive for the page's next request.
			if err := rc.SetWriteDeadline(time.Time{}); err != nil && !errors.Is(err, http.ErrNotSupported) {
				return
			}
			lastWrite = time.Now()
			quiet.Reset(keepAlive)
		}
		select {
		case <-r.Context().Done():
			return
		case <-b.done:
			return
		case <-wk.changed:
		case <-wk.poked:
		case t := <-tick.C:
			// Lines, breakers and panels change on their own: the state
			// shown at a refresh is one taken since.
			after = t
			tick.Reset(b.untilRefresh(time.Now()))
		case <-quiet.C:
		}
		// A state shared with other streams must have been taken as
		// this one woke, give or take shareLag, not before a slow write
		// of this stream's: the page sets its clock by the state's time.
		if woke := time.Now().Add(-shareLag); after.Before(woke) {
			after = woke
		}
	}
}

// shareLag is how long before a stream woke the state it is sent may
// have been taken: long enough for the streams woken together by a change
// to share one state, short enough for a page's clock, set by the state's
// time, to stay right.
const shareLag = 250 * time.Millisecond

// untilRefresh returns the time from now to the streams' next refresh.
func (b *Board) untilRefresh(now time.Time) time.Duration {
	return b.refresh - now.Sub(b.epoch)%b.refresh
}

// streamState is a state taken for the event streams, which the streams
// woken by the same change or refresh share, rather than each taking and
// encoding its own. It is ready once ready is closed.
type streamState struct {
	changed, poked <-chan struct{} // current when the state was taken
	seq            uint64          // Board.shots when it was begun
	from           uint64          // Board.read when it was begun: the states read before it
	order          uint64          // Board.read once it was read: it is the order-th state read
	at             time.Time       // when it was begun, before the state was read
	ready          chan struct{}
	key            []byte // the state's JSON with the zero Time, to tell changes by
	event          []byte // the state's event
	err            error  // why it could not be taken
}

// isReady reports whether the state is ready: taken, or given up on.
func (ss *streamState) isReady() bool {
	select {
	case <-ss.ready:
		return true
	default:
		return false
	}
}

// errNoState is the error of a state whose taking did not return (a
// panic in a Line or Breaker of the program's).
var errNoState = errors.New("andon: board: the state could not be taken")

// wake holds the channels an event stream waits on for a change: the
// evaluator's and Notify's.
type wake struct{ changed, poked <-chan struct{} }

// streamState returns the state a stream is to be sent next: one that
// holds every change after w's channels, the ones it waits on, were made
// (it was begun while they were current, or since the stream asked), that is the state the stream showed last (seq shown, the
// read-th state read) or was begun after that one was read (a stream
// never goes back: one begun before, even if after it by seq, may have
// been read before a line stopped that the shown one shows stopped), and
// was begun at after or later (a refresh). The state begun last, taken
// or being taken, is shared if it will do; if not, a new one is begun,
// once the one being taken is ready: the states the streams share are
// taken one at a time, so each is begun after the one before was read,
// and any stream can share the next. A new stream (shown 0) takes its
// own at once, shared only if none was being taken. Having waited for a
// state it could not share, the stream asks again with w brought up to
// date, as the streams woken meanwhile ask: a state it began with the
// channels of before the wait could not be shared with them, and they
// would each time begin one more after it. It returns nil if ctx ends or
// the board shuts down while it waits.
func (b *Board) streamState(ctx context.Context, w *wake, shown, read uint64, after time.Time) *streamState {
	b.mu.Lock()
	asked := b.shots
	for shown != 0 && b.shot != nil {
		ss := b.shot
		if (ss.changed == w.changed && ss.poked == w.poked || ss.seq > asked) &&
			(ss.seq == shown || ss.from >= read) && !ss.at.Before(after) {
			b.mu.Unlock()
			select {
			case <-ss.ready:
				return ss
			case <-ctx.Done():
			case <-b.done:
			}
			return nil
		}
		if ss.isReady() {
			break
		}
		b.mu.Unlock()
		select {
		case <-ss.ready:
		case <-ctx.Done():
			return nil
		case <-b.done:
			return nil
		}
		// The channels first, then the states begun so far: a state
		// begun after asked was read after the channels were made.
		w.changed = b.ev.watch()
		b.mu.Lock()
		w.poked = b.poke
		asked = b.shots
	}
	b.shots++
	ss := &streamState{changed: w.changed, poked: w.poked, seq: b.shots, from: b.read, at: time.Now(), ready: make(chan struct{}), err: errNoState}
	if b.shot == nil || b.shot.isReady() {
		b.shot = ss
	}
	b.mu.Unlock()
	defer close(ss.ready)
	st := b.State()
	b.mu.Lock()
	b.read++
	ss.order = b.read
	b.mu.Unlock()
	now := st.Time
	st.Time = time.Time{}
	key, err := json.Marshal(st)
	if err != nil {
		b.log.Error("andon: board: encoding state", "err", err)
		ss.err = err
		return ss
	}
	ss.key, ss.event, ss.err = key, stateEvent(key, st, now), nil
	return ss
}

// stateEvent returns the event carrying st at now, whose JSON with the
// zero Time is key: key with now written in the time's place, rather
// than the state encoded a second time.
func stateEvent(key []byte, st BoardState, now time.Time) []byte {
	// The time follows the title, a JSON string, whose quotes are
	// escaped: the first match is the time's.
	const zero = `"time":"0001-01-01T00:00:00Z"`
	i := bytes.Index(key, []byte(zero))
	t, err := now.MarshalJSON()
	if i < 0 || err != nil {
		st.Time = now
		body, _ := json.Marshal(st) // it encoded a moment ago
		return slices.Concat([]byte("event: state\ndata: "), body, []byte("\n\n"))
	}
	i += len(`"time":`)
	return slices.Concat([]byte("event: state\ndata: "), key[:i], t, key[i+len(zero)-len(`"time":`):], []byte("\n\n"))
}

// cordRequest is the body of POST /api/cord.
type cordRequest struct {
	Action string `json:"action"`
	Reason string `json:"reason"`
	Who    string `json:"who"`
}

const (
	maxCordText = 200  // characters of a reason or who, as the page's fields take
	maxCordBody = 4096 // bytes of the body of POST /api/cord
)

// hasControl reports whether s holds a control character (C0, DEL, C1),
// a character that changes how the text around it is laid out (a bidi
// embedding, override or isolate, which can show "paynot" for the text
// "pay\u202eton"; a line or paragraph separator), or is not valid UTF-8.
func hasControl(s string) bool {
	return !utf8.ValidString(s) || strings.ContainsFunc(s, func(r rune) bool {
		return unicode.IsControl(r) ||
			r >= '\u202a' && r <= '\u202e' || r >= '\u2066' && r <= '\u2069' || // bidi embeddings, overrides, isolates
			r == '\u2028' || r == '\u2029' // line and paragraph separators
	})
}

// exactCordKeys reports a body that is empty or one JSON value other than
// an object, and a key of the cord's object that is not one of its
// fields spelled exactly so, that appears twice, or whose value is not a
// string or holds half of a surrogate pair (encoding/json's error would
// name the board's Go type, not the field the client sent, and it
// decodes the half to U+FFFD: the cord would be pulled with other text
// than was sent). encoding/json takes {"Action": "pull"} for "action",
// and the last of two "action" keys, while a proxy or log in front may
// read the first: the action on the line would not be the one they saw.
// A body that is not JSON is left for the decoding to refuse.
func exactCordKeys(body []byte) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	t, err := dec.Token()
	switch {
	case err == io.EOF:
		return errors.New("the body must be one JSON object; it is empty")
	case err != nil:
		return nil
	case t != json.Delim('{'):
		return fmt.Errorf("the body must be one JSON object, not %s", tokenKind(t))
	}
	var seen [3]bool
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return nil
		}
		key, _ := t.(string) // an object's keys are strings
		i := slices.Index([]string{"action", "reason", "who"}, key)
		switch {
		case i < 0:
			return fmt.Errorf("unknown field %q", key)
		case seen[i]:
			return fmt.Errorf("field %q given twice", key)
		}
		seen[i] = true
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil
		}
		if kind := jsonKind(v); kind != "" {
			return fmt.Errorf("field %q must be a string, not %s", key, kind)
		}
		if loneSurrogate(v) {
			return fmt.Errorf("field %q holds a \\u escape of half a surrogate pair, which is no character", key)
		}
	}
	return nil
}

// tokenKind names the JSON value that begins with t in a client's words.
func tokenKind(t json.Token) string {
	switch t.(type) {
	case json.Delim: // a '[': a closing one is refused as no JSON
		return "an array"
	case string:
		return "a string"
	case bool:
		return "true or false"
	case nil:
		return "null"
	}
	return "a number"
}

// loneSurrogate reports whether the JSON string s, quotes and escapes as
// sent, holds an escape \uD800 to \uDFFF that is not one half of a
// pair, high then low: no character, which encoding/json decodes to
// U+FFFD. s is valid JSON: a backslash is followed by its escape, and
// \u by four hexadecimal digits.
func loneSurrogate(s []byte) bool {
	for i := 0; i < len(s); i++ {
		if s[i] != '\\' {
			continue
		}
		if s[i+1] != 'u' {
			i++ // the escaped character, which may be a backslash
			continue
		}
		r := hex4(s[i+2 : i+6])
		i += 5 // the last digit
		switch {
		case !utf16.IsSurrogate(r):
			continue
		case r >= 0xdc00 || !bytes.HasPrefix(s[i+1:], []byte(`\u`)):
			return true // a low half first, or a high half alone
		}
		if lo := hex4(s[i+3 : i+7]); lo < 0xdc00 || lo > 0xdfff {
			return true
		}
		i += 6
	}
	return false
}

// hex4 returns the rune the four hexadecimal digits d stand for.
func hex4(d []byte) rune {
	r, _ := strconv.ParseUint(string(d), 16, 16) // valid JSON: four digits
	return rune(r)
}

// jsonKind names what v holds in a client's words, or returns "" for a
// string or null (which leaves a field empty, as encoding/json takes it).
func jsonKind(v json.RawMessage) string {
	switch {
	case len(v) == 0 || v[0] == '"' || string(v) == "null":
		return ""
	case v[0] == '{':
		return "an object"
	case v[0] == '[':
		return "an array"
	case v[0] == 't' || v[0] == 'f':
		return "true or false"
	}
	return "a number"
}

func (b *Board) cord(w http.ResponseWriter, r *http.Request) {
	if err := b.csrf.Check(r); err != nil {
		b.fail(w, http.StatusForbidden, "cross_origin", err.Error())
		return
	}
	if !b.opts.AllowCord {
		b.fail(w, http.StatusForbidden, "forbidden", "the board is read-only")
		return
	}
	if r.Header.Get("X-Andon-Board") != "1" {
		b.fail(w, http.StatusForbidden, "forbidden", "missing header X-Andon-Board: 1")
		return
	}
	// A media type's name is case-insensitive and may have parameters
	// (RFC 9110, section 8.3.1); the body is JSON whatever they say.
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "application/json" ||
		err != nil && !errors.Is(err, mime.ErrInvalidMediaParameter) {
		b.fail(w, http.StatusUnsupportedMediaType, "unsupported_media_type", "Content-Type must be application/json")
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxCordBody))
	if err != nil {
		if tooLarge := (*http.MaxBytesError)(nil); errors.As(err, &tooLarge) {
			b.fail(w, http.StatusRequestEntityTooLarge, "body_too_large", fmt.Sprintf("the cord's body is larger than %d bytes", maxCordBody))
			return
		}
		b.fail(w, http.StatusBadRequest, "invalid_request", "bad cord request: "+err.Error())
		return
	}
	if !utf8.Valid(body) {
		// encoding/json would take each bad byte for U+FFFD: the cord
		// would be pulled with other text than was sent.
		b.fail(w, http.StatusBadRequest, "invalid_request", "bad cord request: the body is not valid UTF-8")
		return
	}
	if err := exactCordKeys(body); err != nil {
		b.fail(w, http.StatusBadRequest, "invalid_request", "bad cord request: "+err.Error())
		return
	}
	var req cordRequest
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		b.fail(w, http.StatusBadRequest, "invalid_request", "bad cord request: "+err.Error())
		return
	}
	if _, err := dec.Token(); err != io.EOF {
		b.fail(w, http.StatusBadRequest, "invalid_request", "bad cord request: more than one JSON value")
		return
	}
	// Characters, not bytes: the page's fields hold 200 of them, and a
	// reason in a script of three bytes a character is as short.
	if utf8.RuneCountInString(req.Reason) > maxCordText || utf8.RuneCountInString(req.Who) > maxCordText {
		b.fail(w, http.StatusBadRequest, "invalid_request", fmt.Sprintf("reason and who must be at most %d characters", maxCordText))
		return
	}
	if hasControl(req.Reason) || hasControl(req.Who) {
		// They go to logs, alerts and other people's screens.
		b.fail(w, http.StatusBadRequest, "invalid_request", "reason and who must not hold control characters, bidi overrides or line separators")
		return
	}
	if b.opts.Who != nil {
		// The name is held to a typed one's rules: Who may read what the
		// client sends (a header, the user name of HTTP Basic).
		req.Who = b.opts.Who(r)
		if utf8.RuneCountInString(req.Who) > maxCordText {
			b.fail(w, http.StatusBadRequest, "invalid_request", fmt.Sprintf("the name the board's authentication gives this request is over %d characters", maxCordText))
			return
		}
		if hasControl(req.Who) {
			b.fail(w, http.StatusBadRequest, "invalid_request", "the name the board's authentication gives this request holds control characters, bidi overrides or line separators")
			return
		}
	}
	if strings.TrimSpace(req.Who) == "" {
		req.Who = "board"
	}
	var changed bool
	switch req.Action {
	case "pull":
		if changed = b.ev.Pull(r.Context(), req.Reason, req.Who); changed {
			cs := b.ev.Cord()
			b.log.Info("andon: cord pulled on the board", "who", cs.Who, "reason", cs.Reason)
		}
	case "reset":
		if changed = b.ev.Reset(r.Context()); changed {
			b.log.Info("andon: cord reset on the board", "who", req.Who)
		}
	default:
		b.fail(w, http.StatusBadRequest, "invalid_request", fmt.Sprintf("cord action %q is not pull or reset", req.Action))
		return
	}
	if !changed && b.ev.isClosed() {
		// A shut-down evaluator leaves the cord as it was: the page must
		// not take the answer for a pull that stopped the lines.
		b.fail(w, http.StatusServiceUnavailable, "shutting_down", "the evaluator is shut down; the cord is left as it was")
		return
	}
	b.writeJSON(w, http.StatusOK, b.State())
}
