package kanbanhttp

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"mime"
	"net/http"
	"net/url"
	"path"
	"regexp"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/taipattern/taikit/kanban"
)

// DefaultMaxBodyBytes bounds a request body when Options.MaxBodyBytes is
// 0.
const DefaultMaxBodyBytes = 64 << 10

// Options configure a Handler. The zero value serves reads at the root
// and refuses every mutation.
type Options struct {
	// Prefix is the path the API is served under, such as "/ops". Empty
	// means the root. It must start with "/", not end with one, and be a
	// clean path (no "//", "." or ".." segment), unescaped (no '%'), with
	// no '{', '}', '#', '?' or space.
	Prefix string
	// Token, if set, must be presented as "Authorization: Bearer <token>"
	// (the scheme in any case) on every mutation (and read, with
	// AuthorizeReads); at least 16 bytes, with no white space at either
	// end and no control character, which no header can carry.
	Token string
	// Authorize, if set, decides each mutation (and read, with
	// AuthorizeReads): a nil error allows it, an error refuses it with
	// 403 and the error's text. With Token as well, both must pass.
	Authorize func(r *http.Request) error
	// AuthorizeReads applies Token and Authorize to reads as well: the
	// dead letters' payloads may hold personal data.
	AuthorizeReads bool
	// MaxBodyBytes bounds a request body. 0 means DefaultMaxBodyBytes.
	MaxBodyBytes int64
	// TrustedOrigins are origins ("https://ops.example.com") allowed to
	// make mutations from a browser besides the API's own, as
	// http.CrossOriginProtection takes them.
	TrustedOrigins []string
	// Logger records every mutation: the queue, the filter, how many and
	// any error (never payloads). nil means slog.Default().
	Logger *slog.Logger
	// OnRefresh, if set, is called after each Refresh (andon.Board.Notify,
	// so live boards show the new rows at once). A panic in it is logged
	// at Error level with its stack, and Refresh returns as it would.
	OnRefresh func()
}

// Handler is an http.Handler serving the operations on named queues (see
// the package documentation). It is safe for concurrent use; add every
// queue before serving. Make one with New: the zero Handler takes no
// queue and answers every request 500.
type Handler struct {
	opts  Options
	mux   *http.ServeMux
	log   *slog.Logger
	token [sha256.Size]byte // the token's hash, when set
	csrf  *http.CrossOriginProtection

	mu     sync.Mutex
	queues map[string]kanban.DeadLetterStore
	names  []string // in the order added
	seen   map[string]snapshot
	reads  uint64 // the reads of queues Refresh began (see snapshot)
	dlSeen map[string][]kanban.DeadLetter
}

// errNotMade is the error of a Handler New did not make.
var errNotMade = errors.New("the Handler was not made by kanbanhttp.New")

var queueName = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,128}$`)

// New returns a Handler, or an error naming the bad option.
func New(opts Options) (*Handler, error) {
	if opts.Prefix != "" && (!strings.HasPrefix(opts.Prefix, "/") || strings.HasSuffix(opts.Prefix, "/")) {
		return nil, fmt.Errorf("kanbanhttp: Options.Prefix %q must start with / and not end with one (e.g. /ops)", opts.Prefix)
	}
	// The ServeMux reads braces as a wildcard, and a path holds no '#',
	// '?' or space.
	if i := strings.IndexAny(opts.Prefix, "{}# ?"); i >= 0 {
		return nil, fmt.Errorf("kanbanhttp: Options.Prefix %q holds %q: give a plain path, with no '{', '}', '#', '?' or space", opts.Prefix, opts.Prefix[i])
	}
	// The ServeMux reads an escape in a pattern as the character it
	// stands for ("/ops%20x" would serve "/ops x"), and a bare '%' makes
	// the links of the answers no URL.
	if strings.Contains(opts.Prefix, "%") {
		return nil, fmt.Errorf("kanbanhttp: Options.Prefix %q holds a '%%': give the path unescaped", opts.Prefix)
	}
	// A request's path is cleaned before it is matched, so an unclean
	// Prefix could never match (and the ServeMux panics on it).
	if opts.Prefix != "" && (path.Clean(opts.Prefix) != opts.Prefix || strings.ContainsFunc(opts.Prefix, unicode.IsControl)) {
		return nil, fmt.Errorf("kanbanhttp: Options.Prefix %q must be a clean path: no empty, \".\" or \"..\" segment, no control character", opts.Prefix)
	}
	if opts.Token != "" && len(opts.Token) < 16 {
		return nil, fmt.Errorf("kanbanhttp: Options.Token has %d bytes: at least 16 are needed", len(opts.Token))
	}
	// A header's value reaches the handler without the spaces around it
	// and can hold no control character: such a token would refuse every
	// request (a token read from a file with its newline, say).
	if opts.Token != "" && (strings.Trim(opts.Token, " \t") != opts.Token ||
		strings.ContainsFunc(opts.Token, func(r rune) bool { return r < ' ' || r == 0x7f })) {
		return nil, errors.New("kanbanhttp: Options.Token begins or ends with white space or holds a control character: no Authorization header can present it")
	}
	switch {
	case opts.MaxBodyBytes == 0:
		opts.MaxBodyBytes = DefaultMaxBodyBytes
	case opts.MaxBodyBytes < 0:
		return nil, fmt.Errorf("kanbanhttp: Options.MaxBodyBytes %d is negative", opts.MaxBodyBytes)
	}
	h := &Handler{opts: opts, log: opts.Logger, queues: map[string]kanban.DeadLetterStore{},
		seen: map[string]snapshot{}, dlSeen: map[string][]kanban.DeadLetter{}, csrf: http.NewCrossOriginProtection()}
	if h.log == nil {
		h.log = slog.Default()
	}
	if opts.Token != "" {
		h.token = sha256.Sum256([]byte(opts.Token))
	}
	for _, o := range opts.TrustedOrigins {
		if err := h.csrf.AddTrustedOrigin(o); err != nil {
			return nil, fmt.Errorf("kanbanhttp: Options.TrustedOrigins: %w", err)
		}
	}
	p := opts.Prefix
	h.mux = http.NewServeMux()
	h.mux.HandleFunc("GET "+p+"/queues", h.read(h.listQueues))
	h.mux.HandleFunc("GET "+p+"/queues/{queue}/deadletters", h.read(h.listDeadLetters))
	h.mux.HandleFunc("POST "+p+"/queues/{queue}/deadletters/redrive", h.mutate(h.redriveFiltered))
	h.mux.HandleFunc("POST "+p+"/queues/{queue}/deadletters/{seq}/redrive", h.mutate(h.redriveOne))
	h.mux.HandleFunc("DELETE "+p+"/queues/{queue}/deadletters", h.mutate(h.deleteFiltered))
	h.mux.HandleFunc("DELETE "+p+"/queues/{queue}/deadletters/{seq}", h.mutate(h.deleteOne))
	return h, nil
}

// AddQueue serves q under name: letters, digits, '.', '-' and '_', at
// most 128, but not "." or "..", which a request's path loses when it is
// cleaned. A queue that is also a kanban.BacklogReader has its backlog
// shown, one with a Stats() kanban.QueueStats method its counts.
func (h *Handler) AddQueue(name string, q kanban.DeadLetterStore) error {
	if h.mux == nil {
		return fmt.Errorf("kanbanhttp: AddQueue: %w", errNotMade)
	}
	if !queueName.MatchString(name) || name == "." || name == ".." {
		return fmt.Errorf("kanbanhttp: AddQueue: invalid queue name %q: 1 to 128 letters, digits, '.', '-' or '_', and not \".\" or \"..\"", name)
	}
	if q == nil {
		return errors.New("kanbanhttp: AddQueue: nil queue")
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, dup := h.queues[name]; dup {
		return fmt.Errorf("kanbanhttp: AddQueue: a queue named %q is served already", name)
	}
	h.queues[name] = q
	h.names = append(h.names, name)
	return nil
}

// ServeHTTP serves the API. A path it does not serve is answered 404
// and a method its path does not take 405 (with Allow), in the JSON
// error shape as every other error. A store that panics (one of the
// program's own) is answered 500 (internal_error), the panic logged with
// its stack.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Cache-Control", "no-store")
	if h.mux == nil {
		fail(w, &apiError{http.StatusInternalServerError, "internal_error", errNotMade.Error()}, nil)
		return
	}
	if _, pattern := h.mux.Handler(r); pattern == "" {
		// No route: the mux answers 404, 405 or a redirect to the
		// cleaned path; the first two are answered as JSON here.
		w = &routeErrorWriter{ResponseWriter: w, r: r}
	}
	h.mux.ServeHTTP(w, r)
}

// routeErrorWriter answers the mux's plain-text 404 and 405 as JSON, and
// passes any other answer (a redirect) as it is.
type routeErrorWriter struct {
	http.ResponseWriter
	r        *http.Request
	replaced bool
}

// WriteHeader writes a JSON error in place of a 404 or 405. A 405 lists
// the methods the path takes in error.details.allow as well as in the
// Allow header, and a GET of one dead letter points to the list's seq
// filter.
func (e *routeErrorWriter) WriteHeader(code int) {
	var eb errorBody
	switch code {
	case http.StatusNotFound:
		eb.Error.Code = "not_found"
		eb.Error.Message = fmt.Sprintf("no route for %s %s", clip(e.r.Method), clip(e.r.URL.Path))
	case http.StatusMethodNotAllowed:
		eb.Error.Code = "method_not_allowed"
		eb.Error.Message = fmt.Sprintf("%s is not allowed on %s", clip(e.r.Method), clip(e.r.URL.Path))
		dir, seq := path.Split(e.r.URL.Path)
		if n, err := strconv.ParseUint(seq, 10, 64); err == nil && n > 0 && strings.HasSuffix(dir, "/deadletters/") &&
			(e.r.Method == http.MethodGet || e.r.Method == http.MethodHead) {
			eb.Error.Message += fmt.Sprintf("; read one dead letter with GET %s?seq=%d", clip(strings.TrimSuffix(dir, "/")), n)
		}
		if allow := e.Header().Get("Allow"); allow != "" {
			eb.Error.Details = map[string]any{"allow": strings.Split(allow, ", ")}
		}
	default:
		e.ResponseWriter.WriteHeader(code)
		return
	}
	e.replaced = true
	e.Header().Del("Content-Length")
	writeJSON(e.ResponseWriter, code, eb)
}

// Write drops the body of a replaced answer.
func (e *routeErrorWriter) Write(b []byte) (int, error) {
	if e.replaced {
		return len(b), nil
	}
	return e.ResponseWriter.Write(b)
}

// clip bounds s, a method, path or value from a request, for a message:
// a request of megabytes is not answered with as many.
func clip(s string) string {
	const limit = 200
	if len(s) > limit {
		cut := limit
		for cut > limit-utf8.UTFMax && !utf8.RuneStart(s[cut]) {
			cut-- // not inside a character
		}
		return s[:cut] + "…"
	}
	return s
}

// quote quotes v, a value from a request, clipped, for a message.
func quote(v string) string { return strconv.Quote(clip(v)) }

// apiError is an error answered with a status and a code.
type apiError struct {
	status  int
	code    string
	message string
}

func (e *apiError) Error() string { return e.message }

func badRequest(format string, args ...any) *apiError {
	return &apiError{http.StatusBadRequest, "bad_request", fmt.Sprintf(format, args...)}
}

type errorBody struct {
	Error struct {
		Code    string         `json:"code"`
		Message string         `json:"message"`
		Details map[string]any `json:"details,omitempty"`
	} `json:"error"`
}

// writeJSON answers v with status.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// backendMessage answers every backend failure: the error's text may
// name servers, streams or credentials in a URL, so it goes to the log
// only.
const backendMessage = "the queue's backend failed; the service's log has the detail"

// asAPIError returns the status, code and message err is answered with.
// An error from a backend is answered with a fixed message, never its
// text, which may name servers or credentials.
func asAPIError(err error) *apiError {
	var ae *apiError
	var me *kanban.DeadLetterMismatchError
	switch {
	case errors.As(err, &ae):
		return ae
	case errors.As(err, &me):
		// The letter's fields it quotes are the ones a listing shows.
		return &apiError{http.StatusNotFound, "dead_letter_not_matched", strings.TrimPrefix(me.Error(), "kanban: ")}
	case errors.Is(err, kanban.ErrDeadLetterNotFound):
		return &apiError{http.StatusNotFound, "dead_letter_not_found", "no such dead letter: redriven, deleted or never there"}
	case errors.Is(err, kanban.ErrEmptyFilter):
		return &apiError{http.StatusBadRequest, "empty_filter", kanban.ErrEmptyFilter.Error()}
	case errors.Is(err, kanban.ErrFull):
		return &apiError{http.StatusServiceUnavailable, "queue_full", "the queue is full; try again later"}
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return &apiError{http.StatusGatewayTimeout, "timeout", "the request ended before the queue's backend answered"}
	}
	return &apiError{http.StatusBadGateway, "backend_error", backendMessage}
}

// fail answers err as JSON, with extra fields (counts) if any. A failure
// of the backend (a 5xx answer) is logged with its detail, which the
// answer leaves out, unless logged says the caller has logged it.
func (h *Handler) fail(w http.ResponseWriter, r *http.Request, err error, extra map[string]any, logged bool) {
	if !logged && asAPIError(err).status >= http.StatusInternalServerError {
		h.log.Warn("kanbanhttp: request failed", "method", r.Method, "path", r.URL.Path, "remote", r.RemoteAddr, "err", err)
	}
	fail(w, err, extra)
}

// fail answers err as JSON, with extra fields (counts) if any.
func fail(w http.ResponseWriter, err error, extra map[string]any) {
	ae := asAPIError(err)
	if ae.status == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", "1")
	}
	body := map[string]any{}
	maps.Copy(body, extra)
	var eb errorBody
	eb.Error.Code, eb.Error.Message = ae.code, ae.message
	body["error"] = eb.Error
	if ae.status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="kanban"`)
	}
	writeJSON(w, ae.status, body)
}

// authorize checks the caller as Options say, for a mutation when
// mutation is true.
func (h *Handler) authorize(r *http.Request, mutation bool) error {
	if !mutation && !h.opts.AuthorizeReads {
		return nil
	}
	if h.opts.Token == "" && h.opts.Authorize == nil {
		if mutation {
			return &apiError{http.StatusForbidden, "mutations_disabled",
				"changes to dead letters are disabled: the service sets kanbanhttp.Options.Token or Authorize to allow them"}
		}
		return &apiError{http.StatusForbidden, "reads_disabled", "reads need Options.Token or Authorize with AuthorizeReads"}
	}
	if h.opts.Token != "" {
		// The scheme is case-insensitive (RFC 9110, section 11.1).
		scheme, got, _ := strings.Cut(r.Header.Get("Authorization"), " ")
		got = strings.TrimLeft(got, " ")
		sum := sha256.Sum256([]byte(got))
		if !strings.EqualFold(scheme, "Bearer") || subtle.ConstantTimeCompare(sum[:], h.token[:]) != 1 {
			return &apiError{http.StatusUnauthorized, "unauthorized", "a valid bearer token is required"}
		}
	}
	if h.opts.Authorize != nil {
		if err := h.opts.Authorize(r); err != nil {
			return &apiError{http.StatusForbidden, "forbidden", err.Error()}
		}
	}
	return nil
}

// queue returns the queue the request's path names.
func (h *Handler) queue(r *http.Request) (string, kanban.DeadLetterStore, error) {
	name := r.PathValue("queue")
	h.mu.Lock()
	q, ok := h.queues[name]
	h.mu.Unlock()
	if !ok {
		return "", nil, &apiError{http.StatusNotFound, "queue_not_found", fmt.Sprintf("no queue named %s", quote(name))}
	}
	return name, q, nil
}

// answerWriter notes whether the answer has begun.
type answerWriter struct {
	http.ResponseWriter
	begun bool
}

func (w *answerWriter) WriteHeader(code int) {
	w.begun = true
	w.ResponseWriter.WriteHeader(code)
}

func (w *answerWriter) Write(b []byte) (int, error) {
	w.begun = true
	return w.ResponseWriter.Write(b)
}

// Unwrap returns the ResponseWriter w wraps, for http.ResponseController.
func (w *answerWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// recoverPanic, deferred, answers a panic of the request (a store of the
// program's own that panics) 500 in the JSON error shape and logs it with
// its stack, which the answer leaves out. One that comes once the answer
// has begun aborts it (http.ErrAbortHandler): the client is not to take
// an answer cut short for a whole one. http.ErrAbortHandler itself goes
// on as it is.
func (h *Handler) recoverPanic(w *answerWriter, r *http.Request) {
	v := recover()
	if v == nil {
		return
	}
	if v == http.ErrAbortHandler {
		panic(v)
	}
	h.log.Error("kanbanhttp: a request panicked", "method", r.Method, "path", r.URL.Path, "panic", v, "stack", string(debug.Stack()))
	if w.begun {
		panic(http.ErrAbortHandler)
	}
	fail(w, &apiError{http.StatusInternalServerError, "internal_error", "the request failed; the service's log has the detail"}, nil)
}

type endpoint func(w http.ResponseWriter, r *http.Request, name string, q kanban.DeadLetterStore) error

func (h *Handler) read(f func(w http.ResponseWriter, r *http.Request) error) http.HandlerFunc {
	return func(rw http.ResponseWriter, r *http.Request) {
		w := &answerWriter{ResponseWriter: rw}
		defer h.recoverPanic(w, r)
		err := h.authorize(r, false)
		if err == nil {
			err = f(w, r)
		}
		if err != nil {
			h.fail(w, r, err, nil, false)
		}
	}
}

func (h *Handler) mutate(f endpoint) http.HandlerFunc {
	return func(rw http.ResponseWriter, r *http.Request) {
		w := &answerWriter{ResponseWriter: rw}
		defer h.recoverPanic(w, r)
		if err := h.csrf.Check(r); err != nil {
			fail(w, &apiError{http.StatusForbidden, "cross_origin", err.Error()}, nil)
			return
		}
		if err := h.authorize(r, true); err != nil {
			fail(w, err, nil)
			return
		}
		name, q, err := h.queue(r)
		if err != nil {
			fail(w, err, nil)
			return
		}
		if err := f(w, r, name, q); err != nil {
			h.fail(w, r, err, nil, false)
		}
	}
}

// queueJSON is a queue as GET /queues shows it.
type queueJSON struct {
	Name         string       `json:"name"`
	DeadLetters  string       `json:"dead_letters"` // the path of its dead letters
	Backlog      *backlogJSON `json:"backlog,omitempty"`
	BacklogError string       `json:"backlog_error,omitempty"`
	Stats        *statsJSON   `json:"stats,omitempty"`
}

// statsJSON is a queue's QueueStats, named as the rest of the API.
type statsJSON struct {
	Published    int64 `json:"published"`
	Duplicates   int64 `json:"duplicates"`
	Handled      int64 `json:"handled"`
	Retried      int64 `json:"retried"`
	Redelivered  int64 `json:"redelivered"`
	DeadLettered int64 `json:"dead_lettered"`
	Redriven     int64 `json:"redriven"`
	InFlight     int64 `json:"in_flight"`
}

type backlogJSON struct {
	Depth         int64    `json:"depth"`
	OldestSeconds *float64 `json:"oldest_seconds,omitempty"` // absent when the backend does not know it
	DeadLetters   int64    `json:"dead_letters"`
}

func toBacklogJSON(b kanban.Backlog) *backlogJSON {
	j := &backlogJSON{Depth: b.Depth, DeadLetters: b.DeadLetters}
	if b.OldestKnown {
		s := b.Oldest.Seconds()
		j.OldestSeconds = &s
	}
	return j
}

func (h *Handler) listQueues(w http.ResponseWriter, r *http.Request) error {
	if params, err := queryOf(r); err != nil {
		return err
	} else if len(params) > 0 {
		return badRequest("GET /queues takes no query parameters")
	}
	h.mu.Lock()
	names := slices.Clone(h.names)
	h.mu.Unlock()
	out := []queueJSON{}
	for _, name := range names {
		h.mu.Lock()
		q := h.queues[name]
		h.mu.Unlock()
		out = append(out, h.describe(r.Context(), name, q))
	}
	writeJSON(w, http.StatusOK, map[string]any{"queues": out})
	return nil
}

// unreadBacklog is the backlog_error of a queue whose backlog could not be
// read.
const unreadBacklog = "the backlog could not be read; the service's log has the detail"

// describe returns the queue name, q, as GET /queues shows it. A read of
// q that panics (a store of the program's own) is logged, and shown as a
// backlog that could not be read, as Refresh shows it: the other queues
// are listed all the same.
func (h *Handler) describe(ctx context.Context, name string, q kanban.DeadLetterStore) (j queueJSON) {
	j = queueJSON{Name: name, DeadLetters: h.deadLettersPath(name)}
	defer func() {
		if v := recover(); v != nil {
			h.log.Error("kanbanhttp: reading a queue panicked", "queue", name, "panic", v, "stack", string(debug.Stack()))
			j.Backlog, j.Stats, j.BacklogError = nil, nil, unreadBacklog
		}
	}()
	if br, ok := q.(kanban.BacklogReader); ok {
		b, err := br.Backlog(ctx)
		if err != nil {
			// Its text may name servers: the log has it.
			h.log.Warn("kanbanhttp: reading a backlog", "queue", name, "err", err)
			j.BacklogError = unreadBacklog
		} else {
			j.Backlog = toBacklogJSON(b)
		}
	}
	if s, ok := q.(interface{ Stats() kanban.QueueStats }); ok {
		st := s.Stats()
		j.Stats = &statsJSON{st.Published, st.Duplicates, st.Handled, st.Retried, st.Redelivered, st.DeadLettered, st.Redriven, st.InFlight}
	}
	return j
}

func (h *Handler) deadLettersPath(name string) string {
	return h.opts.Prefix + "/queues/" + name + "/deadletters"
}

// deadLetterJSON is a dead letter as the API shows it: the payload as
// JSON when it is JSON (in UTF-8), else in base64.
type deadLetterJSON struct {
	Seq           uint64          `json:"seq"`
	ID            string          `json:"id"`
	Key           string          `json:"key,omitempty"`
	Reason        string          `json:"reason"`
	Attempts      int             `json:"attempts"`
	Time          time.Time       `json:"time"`
	Headers       kanban.Header   `json:"headers,omitempty"`
	Payload       json.RawMessage `json:"payload,omitempty"`
	PayloadBase64 []byte          `json:"payload_base64,omitempty"`
}

func toDeadLetterJSON(d kanban.DeadLetter) deadLetterJSON {
	j := deadLetterJSON{Seq: d.Seq, ID: d.ID, Key: d.Key, Reason: d.Reason, Attempts: d.Attempts, Time: d.Time.UTC(), Headers: d.Headers}
	// JSON is UTF-8 (RFC 8259), which json.Valid does not check inside
	// strings: such a payload, embedded, would make the answer no JSON
	// and lose its bytes to a client's decoder.
	if json.Valid(d.Payload) && utf8.Valid(d.Payload) {
		j.Payload = d.Payload
	} else {
		j.PayloadBase64 = d.Payload
	}
	return j
}

type pageJSON struct {
	DeadLetters []deadLetterJSON `json:"dead_letters"`
	NextCursor  uint64           `json:"next_cursor,omitempty"`
	Next        string           `json:"next,omitempty"` // the URL of the next page
	Total       int              `json:"total"`
}

func (h *Handler) listDeadLetters(w http.ResponseWriter, r *http.Request) error {
	name, q, err := h.queue(r)
	if err != nil {
		return err
	}
	params, err := queryOf(r)
	if err != nil {
		return err
	}
	query := kanban.DeadLetterQuery{}
	if err := onlyParams(params, "limit", "order", "cursor", "all", "seq", "id", "key", "reason", "older_than", "before"); err != nil {
		return err
	}
	if query.Filter, err = filterFromQuery(params); err != nil {
		return err
	}
	if v, ok := single(params, "limit"); ok {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > kanban.MaxDeadLetterPage {
			return badRequest("invalid limit %s: a number from 1 to %d", quote(v), kanban.MaxDeadLetterPage)
		}
		query.Limit = n
	}
	switch v, _ := single(params, "order"); v {
	case "", "oldest":
	case "newest":
		query.Newest = true
	default:
		return badRequest(`invalid order %s: "oldest" or "newest"`, quote(v))
	}
	if v, ok := single(params, "cursor"); ok {
		if query.Cursor, err = strconv.ParseUint(v, 10, 64); err != nil || query.Cursor == 0 {
			return badRequest("invalid cursor %s: the next_cursor of a page", quote(v))
		}
	}
	for k, vs := range params {
		if len(vs) > 1 {
			return badRequest("query parameter %s given %d times", k, len(vs))
		}
	}
	if err := query.Validate(); err != nil {
		return badRequest("%v", err)
	}
	page, err := q.ListDeadLetters(r.Context(), query)
	if err != nil {
		return err
	}
	out := pageJSON{DeadLetters: make([]deadLetterJSON, 0, len(page.Letters)), NextCursor: page.Next, Total: page.Total}
	for _, d := range page.Letters {
		out.DeadLetters = append(out.DeadLetters, toDeadLetterJSON(d))
	}
	if page.Next != 0 {
		next := params
		next.Set("cursor", strconv.FormatUint(page.Next, 10))
		if _, ok := next["older_than"]; ok && !query.Filter.Before.IsZero() {
			// The cut-off this request reckoned, so that the next pages
			// list the same dead letters however much later they are
			// asked for.
			next.Del("older_than")
			next.Set("before", query.Filter.Before.UTC().Format(time.RFC3339Nano))
		}
		out.Next = h.deadLettersPath(name) + "?" + next.Encode()
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// queryOf parses the request's query. One that does not parse is
// refused: url.URL.Query drops the pairs it cannot read (a bad escape,
// a ';'), which would leave a filter wider than the one asked for.
func queryOf(r *http.Request) (url.Values, error) {
	params, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return nil, badRequest("invalid query: %v", err)
	}
	return params, nil
}

// onlyParams refuses a query parameter not in allowed.
func onlyParams(params map[string][]string, allowed ...string) error {
	for k := range params {
		if !slices.Contains(allowed, k) {
			return badRequest("unknown query parameter %s; known: %s", quote(k), strings.Join(allowed, ", "))
		}
	}
	return nil
}

func single(params map[string][]string, k string) (string, bool) {
	vs, ok := params[k]
	if !ok || len(vs) == 0 {
		return "", false
	}
	return vs[0], true
}

// filterJSON is a filter as a request gives it.
type filterJSON struct {
	All       bool    `json:"all"`
	Seq       *uint64 `json:"seq"` // nil: not given; 0 is refused
	ID        string  `json:"id"`
	Key       string  `json:"key"`
	Reason    string  `json:"reason"`
	OlderThan string  `json:"older_than"`
	Before    string  `json:"before"`
}

func (f filterJSON) filter() (kanban.DeadLetterFilter, error) {
	out := kanban.DeadLetterFilter{All: f.All, ID: f.ID, Key: f.Key, Reason: f.Reason}
	if f.Seq != nil {
		if *f.Seq == 0 {
			// No dead letter's: taken as not given, it would leave the
			// other fields to select many where the client meant one.
			return out, badRequest("invalid seq 0: a dead letter's number, from 1")
		}
		out.Seq = *f.Seq
	}
	if f.OlderThan != "" {
		d, err := time.ParseDuration(f.OlderThan)
		if err != nil || d < 0 {
			return out, badRequest("invalid older_than %s: a duration such as 30m or 24h", quote(f.OlderThan))
		}
		// Every dead letter is older than 0: such a filter selects
		// nothing out, so it counts as not given (and a redrive or
		// delete with nothing else needs all=true).
		if d > 0 {
			out.Before = time.Now().Add(-d)
		}
	}
	if f.Before != "" {
		if f.OlderThan != "" {
			return out, badRequest("older_than and before both given: give one")
		}
		t, err := time.Parse(time.RFC3339Nano, f.Before)
		if err != nil || t.IsZero() {
			// The zero time would count as no bound, and match every
			// dead letter where it should match none.
			return out, badRequest("invalid before %s: a time in RFC 3339, such as 2026-01-02T15:04:05Z, after 0001-01-01T00:00:00Z", quote(f.Before))
		}
		out.Before = t
	}
	return out, nil
}

func filterFromQuery(params map[string][]string) (kanban.DeadLetterFilter, error) {
	var f filterJSON
	if v, ok := single(params, "all"); ok {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return kanban.DeadLetterFilter{}, badRequest("invalid all %s: true or false", quote(v))
		}
		f.All = b
	}
	if v, ok := single(params, "seq"); ok {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil || n == 0 {
			return kanban.DeadLetterFilter{}, badRequest("invalid seq %s: a dead letter's number", quote(v))
		}
		f.Seq = &n
	}
	f.ID, _ = single(params, "id")
	f.Key, _ = single(params, "key")
	f.Reason, _ = single(params, "reason")
	f.OlderThan, _ = single(params, "older_than")
	f.Before, _ = single(params, "before")
	return f.filter()
}

// readFilter decodes the JSON filter of a request body.
func (h *Handler) readFilter(w http.ResponseWriter, r *http.Request) (kanban.DeadLetterFilter, error) {
	// A media type is case-insensitive and may carry parameters
	// (RFC 9110, section 8.3.1); one that only begins with
	// "application/json", such as application/jsonl, is another type.
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		return kanban.DeadLetterFilter{}, &apiError{http.StatusUnsupportedMediaType, "unsupported_media_type", "the body must be JSON (Content-Type: application/json)"}
	}
	// Read whole first, so that a body over the limit is answered 413
	// whatever it holds, not 400 for what the decoder stopped at first
	// (the data after a filter that ends within the limit).
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, h.opts.MaxBodyBytes))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return kanban.DeadLetterFilter{}, &apiError{http.StatusRequestEntityTooLarge, "body_too_large", fmt.Sprintf("the body exceeds %d bytes", h.opts.MaxBodyBytes)}
		}
		return kanban.DeadLetterFilter{}, badRequest("reading the body: %s", clip(err.Error()))
	}
	if err := filterIsObject(body); err != nil {
		return kanban.DeadLetterFilter{}, err
	}
	if err := filterFieldsOnce(body); err != nil {
		return kanban.DeadLetterFilter{}, err
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	var f filterJSON
	if err := dec.Decode(&f); err != nil {
		return kanban.DeadLetterFilter{}, filterDecodeError(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return kanban.DeadLetterFilter{}, badRequest("invalid JSON filter: data after the object")
	}
	return f.filter()
}

// filterObjectMessage says what a filter's body must be.
const filterObjectMessage = `the body must be one JSON object, the filter, such as {"key":"k-1"} or {"all":true}`

// filterIsObject refuses a body that is not a JSON object: an empty one,
// or null, an array, a string, a number or a boolean, which the decoder
// would refuse in its own words or (null) take as an empty filter.
func filterIsObject(body []byte) error {
	t, err := json.NewDecoder(bytes.NewReader(body)).Token()
	switch {
	case err == io.EOF:
		return badRequest("%s; it is empty", filterObjectMessage)
	case err != nil:
		return filterDecodeError(err)
	case t == json.Delim('{'):
		return nil
	}
	var got string
	switch t.(type) {
	case nil:
		got = "null"
	case json.Delim: // '[': '}' and ']' are syntax errors
		got = "an array"
	case string:
		got = "a string"
	case float64:
		got = "a number"
	case bool:
		got = "a boolean"
	}
	return badRequest("%s, not %s", filterObjectMessage, got)
}

// filterFieldTypes say what each field of a JSON filter takes.
var filterFieldTypes = map[string]string{
	"all":        "true or false",
	"seq":        "a positive whole number, a dead letter's seq",
	"id":         "a string",
	"key":        "a string",
	"reason":     "a string",
	"older_than": `a string, a duration such as "30m" or "24h"`,
	"before":     `a string, a time in RFC 3339 such as "2026-01-02T15:04:05Z"`,
}

// filterDecodeError says what is wrong with a filter the decoder
// refused, in the terms of the request: the field as the body names it
// and the JSON it takes, not the Go type it is decoded into.
func filterDecodeError(err error) error {
	var typeErr *json.UnmarshalTypeError
	switch {
	case errors.As(err, &typeErr):
		// Field is the path of JSON names; a filter's fields hold no
		// objects, so its first element is the field the body gave.
		field, _, _ := strings.Cut(typeErr.Field, ".")
		if want, ok := filterFieldTypes[field]; ok {
			return badRequest("invalid JSON filter: %s must be %s, not %s", field, want, jsonValueText(typeErr.Value))
		}
		return badRequest("%s, not %s", filterObjectMessage, jsonValueText(typeErr.Value))
	case errors.Is(err, io.ErrUnexpectedEOF):
		return badRequest("invalid JSON filter: the body ends before its JSON does")
	}
	return badRequest("invalid JSON filter: %s", clip(err.Error()))
}

// jsonValueText names the kind of JSON value an UnmarshalTypeError's
// Value describes ("string", "number -1", "array"), as a client would.
func jsonValueText(v string) string {
	switch kind, lit, _ := strings.Cut(v, " "); kind {
	case "number":
		if lit != "" {
			return clip(lit)
		}
		return "a number"
	case "bool":
		return "a boolean"
	case "array", "object":
		return "an " + kind
	case "string":
		return "a string"
	}
	return clip(v)
}

// filterFields are the fields of a JSON filter, as filterJSON names them.
var filterFields = []string{"all", "seq", "id", "key", "reason", "older_than", "before"}

// filterFieldsOnce refuses a JSON filter, body, that gives a field twice
// or names one in another case ("ID"): encoding/json would keep the last
// of two equal names and take a name in any case, so
// {"seq":1,"seq":0,"reason":"x"} would act on every dead letter whose
// reason holds "x", where the query refuses a parameter given twice or
// misspelt. A body that is no object, or does not parse, is left to the
// decoder to say what is wrong with it.
func filterFieldsOnce(body []byte) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return nil
	}
	seen := make(map[string]bool, len(filterFields))
	for dec.More() {
		t, err := dec.Token()
		name, ok := t.(string)
		if err != nil || !ok {
			return nil
		}
		switch {
		case !slices.Contains(filterFields, name):
			return badRequest("invalid JSON filter: unknown field %s; known: %s", quote(name), strings.Join(filterFields, ", "))
		case seen[name]:
			return badRequest("invalid JSON filter: field %s given twice", quote(name))
		}
		seen[name] = true
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil
		}
	}
	return nil
}

// filterText shows the fields of f that are set.
func filterText(f kanban.DeadLetterFilter) string {
	var parts []string
	add := func(k, v string) {
		if v != "" {
			parts = append(parts, k+"="+strconv.Quote(v))
		}
	}
	if f.All {
		parts = append(parts, "all")
	}
	if f.Seq != 0 {
		parts = append(parts, "seq="+strconv.FormatUint(f.Seq, 10))
	}
	add("id", f.ID)
	add("key", f.Key)
	add("reason", f.Reason)
	if !f.Before.IsZero() {
		parts = append(parts, "before="+f.Before.UTC().Format(time.RFC3339))
	}
	return strings.Join(parts, " ")
}

// seqOf reads the {seq} of the path.
func seqOf(r *http.Request) (uint64, error) {
	v := r.PathValue("seq")
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil || n == 0 {
		return 0, badRequest("invalid dead letter %s: its seq, a positive number", quote(v))
	}
	return n, nil
}

func (h *Handler) redriveFiltered(w http.ResponseWriter, r *http.Request, name string, q kanban.DeadLetterStore) error {
	if params, err := queryOf(r); err != nil {
		return err
	} else if len(params) > 0 {
		return badRequest("the filter goes in the JSON body, not the query")
	}
	f, err := h.readFilter(w, r)
	if err != nil {
		return err
	}
	return h.act(w, r, name, "redrive", f, q.RedriveDeadLetters)
}

func (h *Handler) redriveOne(w http.ResponseWriter, r *http.Request, name string, q kanban.DeadLetterStore) error {
	// The path names the dead letter: a filter sent in a body, as a
	// redrive of many takes it, would be ignored, and the dead letter
	// redriven whether it matched or not.
	if err := noBody(r, "redriving one dead letter takes no body: its seq is in the path"); err != nil {
		return err
	}
	seq, err := seqOf(r)
	if err != nil {
		return err
	}
	if params, err := queryOf(r); err != nil {
		return err
	} else if len(params) > 0 {
		return badRequest("redriving one dead letter takes no query parameters")
	}
	return h.act(w, r, name, "redrive", kanban.DeadLetterFilter{Seq: seq}, q.RedriveDeadLetters)
}

func (h *Handler) deleteFiltered(w http.ResponseWriter, r *http.Request, name string, q kanban.DeadLetterStore) error {
	if err := noBody(r, deleteBody); err != nil {
		return err
	}
	params, err := queryOf(r)
	if err != nil {
		return err
	}
	if err := onlyParams(params, "all", "seq", "id", "key", "reason", "older_than", "before"); err != nil {
		return err
	}
	for k, vs := range params {
		if len(vs) > 1 {
			return badRequest("query parameter %s given %d times", k, len(vs))
		}
	}
	f, err := filterFromQuery(params)
	if err != nil {
		return err
	}
	return h.act(w, r, name, "delete", f, q.DeleteDeadLetters)
}

func (h *Handler) deleteOne(w http.ResponseWriter, r *http.Request, name string, q kanban.DeadLetterStore) error {
	if err := noBody(r, deleteBody); err != nil {
		return err
	}
	seq, err := seqOf(r)
	if err != nil {
		return err
	}
	if params, err := queryOf(r); err != nil {
		return err
	} else if len(params) > 0 {
		return badRequest("deleting one dead letter takes no query parameters")
	}
	return h.act(w, r, name, "delete", kanban.DeadLetterFilter{Seq: seq}, q.DeleteDeadLetters)
}

// deleteBody says why a delete with a body is refused: its filter is in
// the query, and one sent in a body as a redrive's is would be ignored,
// leaving the query's filter, which may select more than both together.
const deleteBody = "a delete takes no body: its filter goes in the query"

// noBody refuses a request with a body, with the message why.
func noBody(r *http.Request, why string) error {
	var b [1]byte
	if n, _ := io.ReadFull(r.Body, b[:]); n > 0 {
		return badRequest("%s", why)
	}
	return nil
}

// act validates f, runs do with it, logs and answers.
func (h *Handler) act(w http.ResponseWriter, r *http.Request, name, what string, f kanban.DeadLetterFilter,
	do func(context.Context, kanban.DeadLetterFilter) (int, error)) error {
	if err := f.Validate(); err != nil {
		if errors.Is(err, kanban.ErrEmptyFilter) {
			return &apiError{http.StatusBadRequest, "empty_filter", "the filter names nothing: give seq, id, key, reason, older_than (a positive duration) or before, or all=true for every dead letter"}
		}
		return badRequest("%v", err)
	}
	n, err := do(r.Context(), f)
	field := map[string]string{"redrive": "redriven", "delete": "deleted"}[what]
	attrs := []any{"queue", name, "action", what, field, n, "filter", filterText(f), "remote", r.RemoteAddr}
	if err != nil {
		h.log.Warn("kanbanhttp: dead letters "+what+" failed", append(attrs, "err", err)...)
		h.fail(w, r, err, map[string]any{field: n}, true)
		return nil
	}
	h.log.Info("kanbanhttp: dead letters "+what, attrs...)
	writeJSON(w, http.StatusOK, map[string]int{field: n})
	return nil
}
