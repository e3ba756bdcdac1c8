package taihttp

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime/debug"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/taipattern/taikit/jidoka"
	"github.com/taipattern/taikit/tai"
)

// PipelineOptions configures Pipeline. The zero value makes signals of
// kind "http" keyed by client address, answers denials 403, counts 5xx
// responses as failures and writes JSON problems.
type PipelineOptions struct {
	// Kind is the Kind of every request's signal. Default "http".
	Kind string
	// Key picks the Key of a request's signal. Default RemoteNetwork:
	// the address of an IPv4 client, the /64 of an IPv6 one.
	Key KeyFunc
	// ID gives a request's signal its ID, such as a request-ID header.
	// Default, and for a request it returns "" for: tai.NewID().
	ID func(r *http.Request) string
	// DeniedStatus is the status of a request the policy denies (or holds
	// for review with tai.WithHoldOnReview). Default 403; it must be
	// 400–499.
	DeniedStatus int
	// IsFailure tells whether a status the handler wrote fails the
	// action: the pipeline's guards (a breaker) count it, its observers
	// see Outcome Failed. Default: 500 and above.
	IsFailure func(status int) bool
	// Errors writes the responses the middleware writes itself. Default
	// JSONErrors.
	Errors ErrorWriter
	// RetryAfter is the Retry-After of a 429 or 503 whose error has no
	// hint of its own. Default one second; it must not be negative.
	RetryAfter time.Duration
	// OnError, if set, is called with every request that does not
	// succeed and the error Process returned (joined to the handler's
	// own when a guard called the handler a second time or abandoned it,
	// see Pipeline, and to the handler's panic when the guards' error
	// does not hold it),
	// before the response is written (if the middleware writes it). Log
	// there: the response never shows the error.
	OnError func(r *http.Request, err error)
}

// Pipeline returns middleware that runs every request through a tai
// pipeline whose action is the next handler:
//
//	gates → policy → guards around the handler → observers
//
// hooks are the pipeline's options (tai.WithGates, tai.WithGuards,
// tai.WithObservers, tai.WithTracer, tai.WithHoldOnReview). A request
// becomes a tai.Signal[*http.Request] of opts.Kind, keyed by opts.Key;
// policy evaluates it (nil allows every request, so that only the gates
// and guards decide). The handler runs with the context the guards give
// it (a deadline, say). It answers the client, so it runs once: a guard
// that would call it again (jidoka.Retry, jidoka.Hedge) gets an error
// that is not retried, and the handler's first answer stands; should the
// first call have written nothing and failed (its deadline passed), that
// error decides the answer, and OnError gets it joined to the one Process
// returned. Retry on the client's side instead (Transport). A guard that
// returns while the handler still runs (one that stops waiting for it at
// a deadline, against tai.Guard's contract; the pipeline fails the signal
// with tai.ErrAbandoned) is waited out: the handler holds the
// ResponseWriter, so the middleware answers, as that call decides, only
// once it has returned, and a call the guard makes after that is refused;
// when the handler had not run, the guards' error decides (504 for a
// deadline that passed).
//
// What the client gets, by the Outcome (see ProblemOf for the details):
//
//   - Succeeded: the handler's response.
//   - Rejected by a gate or a guard: 429 for a rate limit (with
//     Retry-After and the RateLimit fields under the limiter's name), 503
//     for a stopped line, an open breaker or another hook, with
//     Retry-After.
//   - Denied: opts.DeniedStatus (403), no reason given: a policy's
//     reasons are for logs and audit trails (OnError, the observers).
//   - Failed: the handler's own response when it wrote one; a status that
//     opts.IsFailure counts (5xx) makes the action fail with a
//     *StatusError, so breakers and observers count it. When the handler
//     wrote nothing because it panicked, 500; because its context ended (a
//     guard's deadline passed), 504, or 503 when it was canceled. A
//     handler that panics after it began its response aborts it, as
//     net/http does with http.ErrAbortHandler; so does one that panics
//     with http.ErrAbortHandler before it began. A problem the middleware
//     writes in place of the handler's response goes without the
//     Content-Encoding the handler set for the body it meant to send (a
//     coding set by middleware around this one, which encodes what is
//     written here, stays).
//
// The handler's status is the final one it wrote. The informational
// ones it may send first (WriteHeader with a 1xx, such as 103 Early
// Hints) are not its answer; nor is 101 Switching Protocols over HTTP/2,
// which has no upgrade and where net/http sends it as informational, but
// over HTTP/1 a 101 is the answer, as net/http takes it.
//
// It returns an error for invalid options, or the error of tai.New (a nil
// hook).
func Pipeline(policy tai.Policy[*http.Request], opts PipelineOptions, hooks ...tai.Option) (Middleware, error) {
	if opts.Kind == "" {
		opts.Kind = "http"
	}
	if opts.DeniedStatus == 0 {
		opts.DeniedStatus = http.StatusForbidden
	}
	if opts.DeniedStatus < 400 || opts.DeniedStatus > 499 {
		return nil, fmt.Errorf("taihttp.Pipeline: DeniedStatus must be 400–499, got %d", opts.DeniedStatus)
	}
	if opts.IsFailure == nil {
		opts.IsFailure = func(status int) bool { return status >= 500 }
	}
	if policy == nil {
		policy = allowAll{}
	}
	c, err := newCommon("taihttp.Pipeline", opts.Key, opts.Errors, opts.RetryAfter, opts.OnError)
	if err != nil {
		return nil, err
	}
	pl := &pipeline{opts: opts, common: c}
	pl.p, err = tai.New[*http.Request, struct{}](policy, tai.ActionFunc[*http.Request, struct{}](serve), hooks...)
	if err != nil {
		return nil, fmt.Errorf("taihttp.Pipeline: %w", err)
	}
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { pl.serveHTTP(next, w, r) })
	}, nil
}

type allowAll struct{}

func (allowAll) Name() string { return "allow" }
func (allowAll) Evaluate(context.Context, tai.Signal[*http.Request]) (tai.Decision, error) {
	return tai.Decision{Verdict: tai.Allow}, nil
}

type pipeline struct {
	p    *tai.Pipeline[*http.Request, struct{}]
	opts PipelineOptions
	common
}

// exchange is what the action needs besides the request: it travels in
// the context handed to Process, since a signal carries only the request.
type exchange struct {
	ctx       context.Context // the context Process was given
	w         statusWriter
	next      http.Handler
	isFailure func(int) bool
	state     atomic.Int32 // idle, running, then ended: see serve and end
	returned  atomic.Bool  // the handler's call returned, with err
	err       error        // the error of that call, when it failed; read once returned
	panicked  error        // a *tai.PanicError, when the call panicked or ended its goroutine; read once ended

	mu   sync.Mutex
	wait chan struct{} // made by end while the handler runs; closed when it returns
}

// The states of an exchange: the handler may be called while idle, and
// is not called again once it ran or the request ended.
const (
	idle int32 = iota
	running
	ended
)

// end makes sure the handler is not running, and will not be called,
// once it returns: a guard that gave up waiting for the handler (and left
// the pipeline ErrAbandoned) may have left it running with w, which must
// not be used after ServeHTTP returned, nor from two goroutines at once.
// It waits for that call to return.
func (ex *exchange) end() {
	if ex.state.CompareAndSwap(idle, ended) || ex.state.Load() == ended {
		return
	}
	ex.mu.Lock()
	if ex.state.Load() == ended {
		ex.mu.Unlock()
		return
	}
	ex.wait = make(chan struct{})
	wait := ex.wait
	ex.mu.Unlock()
	<-wait
}

// returnedFromHandler marks the handler's call as over, and wakes end if
// it waits for it.
func (ex *exchange) returnedFromHandler() {
	ex.mu.Lock()
	ex.state.Store(ended)
	if ex.wait != nil {
		close(ex.wait)
	}
	ex.mu.Unlock()
}

// errRanTwice is the error of a second call of the action: a guard that
// retries or hedges (jidoka.Retry, jidoka.Hedge) called it again, but the
// handler has answered the client already, or is answering.
var errRanTwice = jidoka.Permanent(errors.New("taihttp: a guard called the handler a second time; a handler answers once, so retries and hedges do not belong around it"))

// ranTwiceError is the error Process returned with errRanTwice or
// tai.ErrAbandoned in it, after a first call of the handler that failed
// (for ErrAbandoned, one the middleware waited for, which may have
// panicked: its *tai.PanicError then stands for its error), or any error
// of a guard's own that hides a panic of the handler: it holds that call's
// error too, so that OnError and the answer still tell why the handler
// failed (a deadline that passed before it wrote anything is answered
// 504, as without the retry). The second call returns errRanTwice alone:
// a RetryOn that accepts the first call's error would otherwise retry the
// refusal, waiting out its backoff for each attempt left.
type ranTwiceError struct{ refusal, first error }

// Error returns the refusal's message, followed by the first call's error
// unless the refusal holds it already (an abandoning guard's deadline, the
// one the handler's call failed with), which would say it twice.
func (e *ranTwiceError) Error() string {
	if errors.Is(e.refusal, e.first) {
		return e.refusal.Error()
	}
	return e.refusal.Error() + ": " + e.first.Error()
}

// Unwrap returns Process's error and the first call's.
func (e *ranTwiceError) Unwrap() []error { return []error{e.refusal, e.first} }

type exchangeKey struct{}

func (pl *pipeline) serveHTTP(next http.Handler, w http.ResponseWriter, r *http.Request) {
	// The coding the response has on its way in: middleware around this
	// one that set it encodes what is written here.
	encoding := w.Header()[headerContentEncoding]
	ex := &exchange{w: statusWriter{ResponseWriter: w, upgrades: r.ProtoMajor < 2}, next: next, isFailure: pl.opts.IsFailure}
	ex.ctx = context.WithValue(r.Context(), exchangeKey{}, ex)
	id := ""
	if pl.opts.ID != nil {
		id = pl.opts.ID(r)
	}
	if id == "" {
		id = tai.NewID()
	}
	s := tai.Signal[*http.Request]{ID: id, Kind: pl.opts.Kind, Key: pl.key(r), Time: time.Now(), Payload: r}
	_, err := pl.p.Process(ex.ctx, s)
	ex.end()
	if err == nil {
		return
	}
	var pe *tai.PanicError
	if ex.returned.Load() && ex.err != nil && (errors.Is(err, errRanTwice) || errors.Is(err, tai.ErrAbandoned)) {
		err = &ranTwiceError{refusal: err, first: ex.err}
	} else if ex.panicked != nil && !errors.As(err, &pe) {
		// The handler panicked, but what Process returned does not say
		// so: a guard abandoned the call, or returned an error of its own
		// once the call had ended (a timeout that reports its deadline;
		// one that gave up as the handler panicked). The panic is
		// answered as a panic is (below).
		err = &ranTwiceError{refusal: err, first: ex.panicked}
	}
	if ex.w.status != 0 || errors.As(err, &pe) && pe.Value == http.ErrAbortHandler {
		// The handler answered (a failing status, say): its response
		// stands. Should it have panicked after it began, the response
		// cannot be replaced, only cut off, as net/http does; and a
		// handler that panicked with http.ErrAbortHandler asked for that
		// cut, whether it began or not.
		if pl.onError != nil {
			pl.onError(r, err)
		}
		if errors.As(err, &pe) {
			panic(http.ErrAbortHandler)
		}
		return
	}
	// The problem is written to w, past any writer the handler's own
	// middleware made: a Content-Encoding set inside (a handler that
	// compresses its body and failed before it wrote) would label the
	// plain problem as compressed, and a client that decodes it would
	// lose it. The coding set around this middleware stays.
	if !slices.Equal(w.Header()[headerContentEncoding], encoding) {
		if encoding == nil {
			delete(w.Header(), headerContentEncoding)
		} else {
			w.Header()[headerContentEncoding] = encoding
		}
	}
	switch tai.OutcomeOf(err) {
	case tai.Rejected:
		pl.refuse(w, r, err)
	case tai.Denied:
		pl.fail(w, r, err, Problem{Status: pl.opts.DeniedStatus, Code: "denied", Message: "the request was denied"})
	default:
		// The handler's first call decides the answer when a guard
		// called it again or abandoned it: what that guard returned (an
		// abandoning timeout's deadline) does not hide a handler that
		// panicked.
		decides := err
		var rt *ranTwiceError
		if errors.As(err, &rt) {
			decides = rt.first
		}
		p := ProblemOf(decides)
		if p.Status < 500 {
			// A failure the handler did not answer is the server's.
			p = Problem{Status: http.StatusInternalServerError, Code: "failed", Message: "the request failed"}
		}
		pl.fail(w, r, err, p)
	}
}

// serve is the pipeline's action: the next handler, run with the context
// the guards give it.
func serve(ctx context.Context, s tai.Signal[*http.Request]) (struct{}, error) {
	ex := ctx.Value(exchangeKey{}).(*exchange)
	if !ex.state.CompareAndSwap(idle, running) {
		return struct{}{}, errRanTwice
	}
	ok := false
	defer func() {
		if ok {
			ex.returnedFromHandler()
			return
		}
		// The handler panicked, or ended its goroutine (recover gives
		// nil). The pipeline recovers the panic into the signal's error,
		// but not when a guard abandoned the call: that error is
		// discarded, and the middleware learns of the panic from here.
		v := recover()
		ex.panicked = &tai.PanicError{Stage: tai.StageAction, Value: v, Stack: debug.Stack()}
		ex.returnedFromHandler()
		if v != nil {
			panic(v)
		}
	}()
	r := s.Payload
	if ctx != ex.ctx {
		r = r.WithContext(ctx)
	}
	ex.next.ServeHTTP(&ex.w, r)
	ok = true
	err := ex.result(ctx)
	ex.err = err
	ex.returned.Store(true)
	return struct{}{}, err
}

// result is the error of the handler's call, which has returned; ctx is
// the call's.
func (ex *exchange) result(ctx context.Context) error {
	if ex.w.status == 0 {
		// A handler that wrote nothing because its context ended (a
		// guard's deadline) failed; otherwise it answered 200, as
		// net/http would have.
		if err := ctx.Err(); err != nil {
			return err
		}
		ex.w.WriteHeader(http.StatusOK)
	}
	if ex.isFailure(ex.w.status) {
		return &StatusError{Status: ex.w.status}
	}
	return nil
}

// StatusError is the error of a request whose handler answered with a
// status PipelineOptions.IsFailure counts as a failure (5xx by default):
// breakers and observers see it, the client gets the handler's response.
// In a Transport it is the error of an attempt whose response had a
// failing status: the Breaker is told one for a status FailureStatus
// accepts, and the error a Retry's RetryOn is asked about wraps one for a
// status RetryStatus accepts.
type StatusError struct {
	Status int
}

// Error returns "taihttp: handler answered 503 Service Unavailable".
func (e *StatusError) Error() string {
	return "taihttp: handler answered " + strconv.Itoa(e.Status) + " " + http.StatusText(e.Status)
}

// HTTPStatus returns Status, for ProblemOf.
func (e *StatusError) HTTPStatus() int { return e.Status }

// statusWriter remembers the status a handler wrote.
type statusWriter struct {
	http.ResponseWriter
	status int
	// upgrades tells that the request came over HTTP/1, where a 101
	// Switching Protocols is final; HTTP/2 and later have no upgrade.
	upgrades bool
}

// WriteHeader notes the first final status: 200 or more, or, over HTTP/1,
// 101 Switching Protocols, which net/http takes as final there. The other
// 1xx are informational and may come before it (103 Early Hints, say);
// over HTTP/2 net/http sends a 101 as one of them too, and the client
// waits for the final status after it. The status is noted once the
// underlying writer took it: net/http panics at a code outside 100–999
// before it writes anything, and the handler has then answered nothing.
func (w *statusWriter) WriteHeader(code int) {
	w.ResponseWriter.WriteHeader(code)
	if w.status == 0 && (code >= 200 || code == http.StatusSwitchingProtocols && w.upgrades) {
		w.status = code
	}
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// ReadFrom copies src to the underlying ResponseWriter with its ReadFrom,
// when it has one, so that a handler's io.Copy of a file is sent as it
// would be without the middleware (net/http uses sendfile). A copy that
// wrote something has answered, with status 200 if none was written.
func (w *statusWriter) ReadFrom(src io.Reader) (int64, error) {
	rf, ok := w.ResponseWriter.(io.ReaderFrom)
	if !ok {
		return io.Copy(writerOnly{w}, src) // through Write, which notes the status
	}
	n, err := rf.ReadFrom(src)
	if n > 0 && w.status == 0 {
		w.status = http.StatusOK
	}
	return n, err
}

// writerOnly hides every method of a writer but Write, so that io.Copy
// to it does not come back to ReadFrom.
type writerOnly struct{ io.Writer }

// FlushError flushes the underlying ResponseWriter, for
// http.ResponseController. A flush sends the header, with status 200 if
// none was written: the handler has answered.
func (w *statusWriter) FlushError() error {
	err := http.NewResponseController(w.ResponseWriter).Flush()
	if err == nil && w.status == 0 {
		w.status = http.StatusOK
	}
	return err
}

// Flush is FlushError without its error, for a handler that asks its
// writer for an http.Flusher, as streaming handlers do.
func (w *statusWriter) Flush() { _ = w.FlushError() }

// Hijack takes over the connection of the underlying ResponseWriter, for
// http.ResponseController: the handler answers on it, and nothing more
// is written to w.
func (w *statusWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, rw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err == nil && w.status == 0 {
		w.status = http.StatusSwitchingProtocols
	}
	return c, rw, err
}

// Unwrap returns the underlying ResponseWriter, for
// http.ResponseController (deadlines, full duplex).
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
