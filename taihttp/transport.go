package taihttp

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/taipattern/taikit/heijunka"
	"github.com/taipattern/taikit/internal/deadlines"
	"github.com/taipattern/taikit/internal/typednil"
	"github.com/taipattern/taikit/jidoka"
	"github.com/taipattern/taikit/tai"
)

// TransportOptions configures a Transport. Every field is optional: the
// zero value sends each request once through http.DefaultTransport.
type TransportOptions struct {
	// Base sends each attempt. Default http.DefaultTransport; one that
	// holds a nil pointer or func (a nil *http.Transport) is refused.
	Base http.RoundTripper
	// Retry sends a request again after an attempt that failed: a
	// transport error, a per-attempt timeout, or a status RetryStatus
	// accepts. Its backoff, jitter, budget and RetryOn apply; an attempt
	// that failed on its status fails with an error in which errors.As
	// finds a *StatusError with the status, so that a RetryOn can tell
	// the statuses apart from one another and from other errors. A failed
	// response's Retry-After (seconds or an HTTP date) is the attempt's
	// retry hint, so the wait is at least that long, and a hint longer
	// than the Retry's MaxRetryAfter ends the retries. A date is counted
	// from the response's Date, when it has a valid one (RFC 9110,
	// section 10.2.3), so that a server whose clock is off the client's
	// gets the wait it asked for; from the client's clock otherwise.
	// With a Hedge the hint is the longest of the round's copies that
	// failed on their status, whichever copy's error the Hedge returns.
	// Nil: no retries.
	Retry *jidoka.Retry
	// Hedge sends a second copy of a request whose response is slow to
	// come, and takes the first response that RetryStatus does not
	// reject; the other copies are cancelled and their responses closed.
	// When no copy succeeds, a response that failed on its status is the
	// round's answer even if the first copy failed otherwise, as when it
	// timed out or its connection broke after a hedged copy got a 503:
	// the server's status and Retry-After say more than the first copy's
	// error, and the Retry judges and waits for that response (its
	// RetryOn sees the *StatusError), as it would without the Hedge.
	// Nil: no hedging.
	Hedge *jidoka.Hedge
	// Limiter paces the attempts: each one, retries and hedges included,
	// waits for an event of it (Limiter.Wait) within the request's
	// context, and fails with its *heijunka.LimitedError when the wait
	// would outlast the context's deadline. Nil: no pacing.
	Limiter *heijunka.Limiter
	// AttemptTimeout bounds each attempt, from when it is sent until its
	// response's header has arrived, and, for a response that fails on
	// its status and may be sent again, until its body (the 64 KiB kept
	// of it) has been read too; reading the body of the response
	// returned is bounded by the request's own context only. An attempt
	// that times out is cancelled and fails with a *jidoka.TimeoutError
	// (errors.Is ErrTimeout and context.DeadlineExceeded), which the
	// Breaker counts and the Retry retries. A RoundTrip that fails so
	// returns a net.Error whose Timeout is true, and errors.As finds the
	// *jidoka.TimeoutError in it: the *url.Error of an http.Client says
	// Timeout() as it does for the client's own timeouts. Zero: no bound;
	// it must not be negative.
	AttemptTimeout time.Duration
	// Breaker admits each attempt and counts its result: a transport
	// error or a timeout is a failure, and so is a response whose status
	// FailureStatus accepts. An open breaker fails the attempt with its
	// *jidoka.OpenError without sending it. Nil: no breaker.
	Breaker *jidoka.Breaker
	// RetryStatus tells which statuses fail an attempt, so that it is
	// retried or hedged. Default: 408, 429, 500, 502, 503 and 504.
	RetryStatus func(status int) bool
	// FailureStatus tells which statuses the Breaker counts as failures.
	// Default: 500 and above. (A 429 says the client is too fast, not
	// that the server is failing; include it here to count it.)
	FailureStatus func(status int) bool
	// RetryNonIdempotent lets Retry and Hedge send again requests whose
	// method is not idempotent (POST, PATCH, CONNECT): only the
	// idempotent methods of RFC 9110 (GET, HEAD, OPTIONS, TRACE, PUT,
	// DELETE) are sent more than once otherwise. Such a request with an
	// Idempotency-Key header is retried but not hedged, with
	// RetryNonIdempotent or without, and a request of an idempotent
	// method with one is not hedged either. A header with no single key
	// in it (empty, blank, or given twice), which a server may take for
	// no key, does not let such a request be retried; one given twice
	// with a key in it stops the hedge all the same, as many servers read
	// its first value as the key.
	RetryNonIdempotent bool
}

// Transport is an http.RoundTripper that sends requests through Base with
// taikit's guards around each one. Their order, outermost first:
//
//	Retry → Hedge → Limiter → AttemptTimeout → Breaker → Base
//
// so each retry is hedged afresh, each attempt (a retry or a hedge) waits
// for the limiter, has a deadline of its own and asks the breaker, and the
// breaker counts attempts that timed out.
//
// Only requests that are safe to send twice are retried or hedged: an
// idempotent method (or any request, with RetryNonIdempotent), and a body
// that can be sent again — none, or one with GetBody, which
// http.NewRequest sets for the bytes, strings and buffers it is given.
// Should GetBody fail, the request is not sent again: the attempt fails
// with GetBody's error marked jidoka.Permanent, which ends the retries
// (every one of them would fail so), unless a RetryOn of yours retries
// it. A request of another method with an Idempotency-Key header is
// retried but not hedged, even with RetryNonIdempotent: a server that
// keeps the key answers a copy sent while the first is in progress with
// 409 Conflict, which would win the race. For that reason a request of
// an idempotent method with the header (a keyed PUT) is retried but not
// hedged either. The header must hold one key, not empty or blank, to
// let a request be retried: a server reads such a value as no key, and
// the request as a new one each time it comes. A header given twice is
// no key to retry by either, but with a key in it it stops the hedge:
// many servers read its first value as the key.
// Other requests are sent once, through the limiter, the timeout and the
// breaker.
//
// A request that no server could be sent — a method that is not a token,
// a header or trailer field name that is not one, a field value with a
// control character such as CR or LF, an http or https request with a
// control character in its Host or its URL's host, query or opaque part
// (sent unescaped, over HTTP/1 or HTTP/2), and over an *http.Transport a
// URL without a scheme, an http or https URL without a host, a nil
// Header, or a ContentLength other than 0 with a nil Body — fails at
// once with an error naming the field, without an attempt: it is neither
// retried nor paced, and the breaker does not count it, as it says
// nothing of the server. Over an *http.Transport, a URL whose scheme it has
// no protocol for (neither http nor https, nor one registered with
// RegisterProtocol: "htps", say) fails its first attempt with the
// Transport's error, sent to no server: it is not retried (the error is
// marked jidoka.Permanent), and the breaker does not count it, so that a
// mistyped URL cannot open the breaker for every other request.
// A server whose certificate the client cannot verify — signed by an
// authority the client does not trust, made for another host name,
// expired: a *tls.CertificateVerificationError, or a bare error of
// package x509 — fails every attempt alike until a certificate or the
// client's roots are changed. The first attempt fails with that error,
// marked jidoka.Permanent (errors.As still finds it), and is not
// retried, unless a RetryOn of yours retries it. Unlike a scheme without
// a protocol, it counts as a failure for the breaker, as a refused
// connection or an unknown host does: the attempt reached for the
// server, and every other request to it fails the same way; a
// BreakerOptions.Ignore that finds the error with errors.As leaves it
// out.
//
// What RoundTrip returns: the response that succeeded, with a body that
// stays readable until closed; when every attempt failed with a status
// RetryStatus accepts, the last such response, as the server sent it (its
// body buffered, up to 64 KiB), and so too when the last attempt was a
// hedged round in which a copy failed on its status and the others
// otherwise; otherwise the error of the last attempt —
// a transport error, a *jidoka.TimeoutError (in a net.Error whose
// Timeout is true: use errors.As), a *jidoka.OpenError, a
// *heijunka.LimitedError, GetBody's error. (An attempt not made because
// GetBody failed does not count: the last response that failed on its
// status is returned all the same.) The Request of the response returned
// is req, as http.Transport sets it, not the copy an attempt sent, whose
// context ends with the body. The responses of attempts that failed or
// lost a hedge are drained and closed. One that failed with a body
// longer than 64 KiB, which keeps its connection busy while it is open,
// is closed before another attempt is sent, so that the attempt may have
// the connection (a base may allow one per host): should it still be
// returned, as when a hedged copy sent after it failed with a transport
// error, reading its body past the first 64 KiB fails.
//
// When the request's context ends before RoundTrip has a response to
// return — while an attempt waits for its response or for the limiter,
// or while the Retry waits to send another — RoundTrip returns the
// context's cause, as http.Transport does: context.Canceled or
// context.DeadlineExceeded, or the error of a context ended by a
// CancelCauseFunc or made by WithTimeoutCause or WithDeadlineCause. It
// does not return an earlier attempt's error, and it closes a response
// that failed on its status and was held for a retry or a hedge that
// will not come now. Such a response is returned only when no
// attempt is to follow and the context lives: the
// retries are spent, or the Retry refuses another (its RetryOn, its
// budget, a Retry-After longer than its MaxRetryAfter, a wait the
// context's deadline would not outlast). A response that succeeded
// before the context ended is returned, as http.Transport returns one.
//
// A Base that returns neither a response nor an error fails its attempt
// with an error saying so, as http.Client fails such a transport's; one
// that returns both fails it with the error, and the response is closed. A
// panic in Base, RetryStatus or FailureStatus goes on to the caller of
// RoundTrip, as it would without the Transport; on its way the breaker
// counts it as a failure, as Breaker.Do counts a call that panics, and
// the responses the request had are closed. They are closed too when the
// breaker's IsFailure or Ignore panics, which the breaker passes on
// without counting the attempt.
//
// A Transport is safe for concurrent use. Make one with NewTransport; the
// zero Transport sends nothing.
type Transport struct {
	base      http.RoundTripper
	retry     *jidoka.Retry
	hedge     *jidoka.Hedge
	limiter   *heijunka.Limiter
	timeout   time.Duration
	expiries  *deadlines.Set[attemptBody] // of the attempts, when timeout is set
	breaker   *jidoka.Breaker
	retryOn   func(int) bool
	failureOn func(int) bool
	anyMethod bool
}

// NewTransport returns a Transport configured by opts, or an error naming
// an invalid field: a negative AttemptTimeout, or a Base that holds a nil
// pointer or func (a nil *http.Transport), which could send nothing.
func NewTransport(opts TransportOptions) (*Transport, error) {
	t := &Transport{
		base: opts.Base, retry: opts.Retry, hedge: opts.Hedge, limiter: opts.Limiter, breaker: opts.Breaker,
		timeout: opts.AttemptTimeout, retryOn: opts.RetryStatus, failureOn: opts.FailureStatus,
		anyMethod: opts.RetryNonIdempotent,
	}
	if opts.AttemptTimeout < 0 {
		return nil, fmt.Errorf("taihttp.NewTransport: AttemptTimeout must not be negative, got %v", opts.AttemptTimeout)
	}
	if typednil.Holds(opts.Base) {
		// Every request would panic in it, and the breaker count each.
		return nil, fmt.Errorf("taihttp.NewTransport: Base holds a nil %T", opts.Base)
	}
	if t.timeout > 0 {
		t.expiries = deadlines.New(time.Now(), t.timeout, runtime.GOMAXPROCS(0), attemptExpiry, expireAttempt)
	}
	if t.base == nil {
		t.base = http.DefaultTransport
	}
	if t.retryOn == nil {
		t.retryOn = DefaultRetryStatus
	}
	if t.failureOn == nil {
		t.failureOn = func(status int) bool { return status >= 500 }
	}
	return t, nil
}

// DefaultRetryStatus is the default TransportOptions.RetryStatus: 408
// Request Timeout, 429 Too Many Requests, 500 Internal Server Error, 502
// Bad Gateway, 503 Service Unavailable and 504 Gateway Timeout.
func DefaultRetryStatus(status int) bool {
	switch status {
	case http.StatusRequestTimeout, http.StatusTooManyRequests, http.StatusInternalServerError,
		http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return true
	}
	return false
}

// CloseIdleConnections closes the idle connections of Base, if it has
// such a method; http.Client.CloseIdleConnections calls it.
func (t *Transport) CloseIdleConnections() {
	if c, ok := t.base.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

// errTransportNotMade is the error of RoundTrip on a Transport that
// NewTransport did not make: it has no base to send through.
var errTransportNotMade = errors.New("taihttp: the Transport was not made by NewTransport; it sends nothing")

// RoundTrip sends req as the Transport's guards allow; see Transport. A
// Transport NewTransport did not make (the zero Transport) sends nothing:
// RoundTrip closes the body and returns an error saying so.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	if t.base == nil {
		if req != nil && req.Body != nil {
			_ = req.Body.Close() // a RoundTripper closes the body, sent or not
		}
		return nil, errTransportNotMade
	}
	if err := t.checkRequest(req); err != nil {
		if req.Body != nil {
			_ = req.Body.Close() // a RoundTripper closes the body, sent or not
		}
		return nil, err
	}
	rt := &roundTrip{t: t, req: req}
	rt.bodyUsed.Store(req.Body == nil || req.Body == http.NoBody)
	retry, hedge := t.repeatable(req)
	retry, hedge = retry && t.retry != nil, hedge && t.hedge != nil
	// A panic in an attempt goes on to the caller: the responses it
	// leaves behind, that no one else will close, are closed on its way.
	returned := false
	defer func() {
		if !returned {
			rt.abandon()
		}
	}()
	var err error
	switch {
	case retry && hedge:
		rt.hold = true
		err = t.retry.Do(req.Context(), rt.hedged)
		if he, ok := err.(*hintedError); ok {
			err = he.err
		}
	case retry:
		rt.hold = true
		err = t.retry.Do(req.Context(), rt.call)
	case hedge:
		rt.hold = true
		err = rt.hedged(req.Context())
		if he, ok := err.(*hintedError); ok {
			err = he.err
		}
	default:
		err = rt.call(req.Context())
	}
	returned = true
	if !rt.bodyUsed.Swap(true) {
		_ = req.Body.Close() // a RoundTripper closes the body, sent or not
	}
	rt.mu.Lock()
	defer rt.mu.Unlock()
	rt.done = true
	if err == nil && rt.won != nil {
		rt.dropHeld()
		return rt.won, nil
	}
	if req.Context().Err() != nil {
		// The caller gave up before there was an answer, in an attempt or
		// in the wait for another: a response held for a retry or a hedge
		// that will not come is no answer, nor is an earlier attempt's
		// error. http.Transport returns the context's cause so: the
		// caller's own error, when it ended the context with one.
		rt.dropHeld()
		return nil, context.Cause(req.Context())
	}
	// An attempt that could not be made (its body) sent nothing: the
	// last response that failed on its status is still the answer.
	var se *retryStatusError
	var be *bodyError
	if (errors.As(err, &se) || errors.As(err, &be)) && rt.held != nil {
		resp := rt.held
		rt.held = nil
		return resp, nil
	}
	rt.dropHeld()
	if err == nil { // cannot happen: a call that returns nil has claimed a response
		err = errors.New("taihttp: no response")
	}
	return nil, asNetTimeout(err)
}

// timeoutError is the error of a RoundTrip that failed because an attempt
// timed out: err, whose tree holds the *jidoka.TimeoutError, with the
// methods of a net.Error. http.Client wraps a transport's error in a
// *url.Error, whose Timeout asks the error it wraps for a Timeout method;
// jidoka.TimeoutError has none (its field Timeout takes the name), so
// without this a caller that tells timeouts apart with url.Error.Timeout
// or a net.Error would not see this one.
type timeoutError struct{ err error }

func (e *timeoutError) Error() string { return e.err.Error() }

// Unwrap returns the error the attempts ended with.
func (e *timeoutError) Unwrap() error { return e.err }

// Timeout reports true: the request timed out.
func (e *timeoutError) Timeout() bool { return true }

// Temporary reports true, as it does for every timeout of package net.
func (e *timeoutError) Temporary() bool { return true }

// asNetTimeout returns err as a net.Error whose Timeout is true when its
// tree holds a *jidoka.TimeoutError and err itself has no Timeout method,
// and err otherwise.
func asNetTimeout(err error) error {
	if _, ok := err.(interface{ Timeout() bool }); ok {
		return err
	}
	if te := (*jidoka.TimeoutError)(nil); errors.As(err, &te) {
		return &timeoutError{err: err}
	}
	return err
}

// checkRequest returns an error for a request that cannot be sent as it
// is, the checks net/http's Transport makes before it dials: a method and
// header and trailer field names that are tokens, field values without
// control characters other than HTAB. The base would fail each attempt
// with the same error, and the breaker count a failure the server never
// saw. The error names the field, not its value, which may be a secret.
// An http or https URL with a control character in its host, query or
// opaque part is refused too, over any base, and so is such a request
// whose Host has one: the query and the opaque part are sent unescaped,
// in the HTTP/1 request line or HTTP/2's :path, where no server takes
// one, and the host in the Host field or :authority (a protocol
// registered with RegisterProtocol, of another scheme, sends none of
// them). Over a base that is an *http.Transport, an http or https URL
// without a host is refused as well, a URL without a scheme (a path
// alone), a nil Header, and a ContentLength other than 0 with a nil Body;
// another base may know where to send them, or take them.
func (t *Transport) checkRequest(req *http.Request) error {
	if req.URL == nil {
		return errors.New("taihttp: request has no URL")
	}
	if _, ok := t.base.(*http.Transport); ok {
		switch {
		case req.URL.Scheme == "":
			// A path alone, as a URL made without its base is: the
			// Transport knows no protocol without a name.
			return errors.New("taihttp: request URL has no scheme")
		case req.URL.Host == "" && (req.URL.Scheme == "http" || req.URL.Scheme == "https"):
			return errors.New("taihttp: request URL has no host")
		case req.Header == nil:
			// http.Client gives a request without one an empty Header;
			// the Transport fails it ("http: nil Request.Header").
			return errors.New("taihttp: request has no Header")
		case req.Body == nil && req.ContentLength != 0:
			// A length for content there is none of: the Transport fails
			// it over HTTP/1 ("http: Request.ContentLength=4 with nil
			// Body") after it dialed.
			return fmt.Errorf("taihttp: request has a ContentLength of %d but no body", req.ContentLength)
		}
	}
	if req.URL.Scheme == "http" || req.URL.Scheme == "https" {
		// The query and the opaque part are sent as they are (the path
		// is escaped), whatever the base: in the HTTP/1 request line,
		// which an *http.Transport fails to write after it dialed, or
		// in HTTP/2's :path field, which a server refuses. (A CONNECT
		// without a path names its host alone, or its opaque part.) A
		// protocol registered with RegisterProtocol, of another scheme,
		// takes the request as it is.
		// A host with a control character is sent by no base: over
		// HTTP/2 an *http.Transport fails the attempt once it has a
		// connection, over HTTP/1 it sends an empty Host in its place,
		// and a dial to the URL's host fails.
		switch {
		case hasCTL(req.Host):
			return errors.New("taihttp: request Host has a control character")
		case hasCTL(req.URL.Host):
			return errors.New("taihttp: request URL has a control character in its host")
		case hasCTL(req.URL.RawQuery) && (req.Method != http.MethodConnect || req.URL.Path != ""):
			return errors.New("taihttp: request URL has a control character in its query")
		case hasCTL(req.URL.Opaque):
			return errors.New("taihttp: request URL has a control character in its opaque part")
		}
	}
	if req.Method != "" && !isToken(req.Method) {
		return fmt.Errorf("taihttp: invalid method %q", req.Method)
	}
	if err := checkFields("header", req.Header); err != nil {
		return err
	}
	return checkFields("trailer", req.Trailer)
}

// checkFields returns an error naming the first field of h, of the
// request's header or trailer (what), whose name is not a token or whose
// value is not a valid field value.
func checkFields(what string, h http.Header) error {
	for k, vv := range h {
		if !isToken(k) {
			return fmt.Errorf("taihttp: invalid %s field name %q", what, k)
		}
		for _, v := range vv {
			if !validFieldValue(v) {
				return fmt.Errorf("taihttp: invalid %s field value for %q", what, k)
			}
		}
	}
	return nil
}

// isToken reports whether s is an RFC 9110 token: one or more tchar.
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// hasCTL reports whether s holds a control character (HTAB included) or
// DEL, which net/http does not write in a request line.
func hasCTL(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < ' ' || c == 0x7f {
			return true
		}
	}
	return false
}

// validFieldValue reports whether v holds no control character but HTAB
// (RFC 9110, section 5.5), as net/http requires of a field value it sends.
func validFieldValue(v string) bool {
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < ' ' && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}

// repeatable reports whether req may be sent again after an attempt
// that failed (retry), and while an attempt is in progress (hedge). An
// Idempotency-Key allows the retry only, and stops the hedge of any
// method: a server that keeps the key answers a copy that comes while
// the first is in progress with 409 Conflict
// (draft-ietf-httpapi-idempotency-key-header), and that quick answer
// would win the hedge.
func (t *Transport) repeatable(req *http.Request) (retry, hedge bool) {
	if req.Body != nil && req.Body != http.NoBody && req.GetBody == nil {
		return false, false
	}
	switch req.Method {
	case "", http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace, http.MethodPut, http.MethodDelete:
		// A server that keeps keys may keep them for a PUT or a DELETE
		// too: a keyed copy would meet the key in progress as a POST's
		// does. The header is looked for only when there is a hedge.
		if t.hedge == nil {
			return true, true
		}
		_, some := idempotencyKey(req.Header)
		return true, !some
	}
	// A key stops the hedge with RetryNonIdempotent too: the copy would
	// meet the key in progress all the same.
	one, some := idempotencyKey(req.Header)
	return one || t.anyMethod, !some && t.anyMethod
}

// idempotencyKey reports what the Idempotency-Key fields of h hold. One
// is whether there is one field with a key in it: a server reads an
// empty or blank value (its spaces trimmed) as no key, and a field given
// twice is no single key either (draft-ietf-httpapi-idempotency-key-header
// makes it an Item), so that a server may take a request with one of
// those for a new request each time it is sent. Some is whether any
// field holds more than blanks: many servers read the first value of a
// field given twice (Go's Header.Get), or the values joined, as the key,
// and answer a copy sent while the first is in progress with 409
// Conflict. The field counts under any spelling of its name: one
// assigned to the map under another (h["idempotency-key"]) is sent as it
// is, and a server, for which field names are case-insensitive, reads it
// as the key.
func idempotencyKey(h http.Header) (one, some bool) {
	const name = "Idempotency-Key"
	n := 0
	for k, vs := range h {
		if len(k) == len(name) && len(vs) > 0 && strings.EqualFold(k, name) {
			n += len(vs)
			for _, v := range vs {
				if strings.Trim(v, " \t") != "" {
					some = true
				}
			}
		}
	}
	return n == 1 && some, some
}

// roundTrip is the state of one RoundTrip: the attempts' responses.
type roundTrip struct {
	t        *Transport
	req      *http.Request
	bodyUsed atomic.Bool // req.Body was handed to an attempt (or there is none)
	hold     bool        // attempts may fail on a status and be sent again

	first      attemptBody // the first attempt's, allocated with the rest
	firstTaken atomic.Bool
	live       atomic.Bool // the held response's body holds its connection: see release

	mu   sync.Mutex
	won  *http.Response // the response RoundTrip returns
	held *http.Response // the last response that failed on its status
	done bool           // RoundTrip has returned: late responses are closed
	// hintUntil is when the longest Retry-After of the responses that
	// failed on their status in the hedged round in progress ends.
	hintUntil time.Time
	// roundErr is the error of held when a copy of the hedged round in
	// progress failed on its status, and nil otherwise.
	roundErr *retryStatusError
}

// hedged is a round of copies sent by the Hedge: the request with a
// Hedge alone, or one call of the Retry when there is a Hedge as well.
// The Hedge returns the first copy's error when every one failed; when
// that error is not of a status and a copy failed on its status (the
// first timed out, or its connection broke, and a hedged copy got a 503
// with Retry-After: 30), the round fails with that copy's error instead,
// so that RoundTrip returns its response and the Retry's RetryOn sees
// its status. The longest Retry-After of the round's copies gives the
// round its hint: the server asked for that wait, and the Retry waits
// for it, or ends the retries for a hint past its MaxRetryAfter, as it
// would for the copy alone.
func (rt *roundTrip) hedged(ctx context.Context) error {
	rt.mu.Lock()
	rt.hintUntil, rt.roundErr = time.Time{}, nil
	rt.mu.Unlock()
	err := rt.t.hedge.Do(ctx, rt.call)
	if err == nil {
		return nil
	}
	rt.mu.Lock()
	until, held := rt.hintUntil, rt.roundErr
	rt.mu.Unlock()
	substituted := false
	if se := (*retryStatusError)(nil); held != nil && !errors.As(err, &se) {
		err, substituted = held, true
	}
	if until.IsZero() {
		return err
	}
	// held's own hint counts from when it came, the round's from its end.
	if hint := max(time.Until(until), 0); substituted || hint > tai.RetryAfter(err) {
		return &hintedError{err: err, hint: hint}
	}
	return err
}

// hintedError is the error of a hedged round, err, with the Retry-After
// of a copy that failed on its status: the longest of the round's, from
// the end of the round. RoundTrip returns err.
type hintedError struct {
	err  error
	hint time.Duration
}

func (e *hintedError) Error() string { return e.err.Error() }

// Unwrap returns the round's error.
func (e *hintedError) Unwrap() error { return e.err }

// RetryAfter returns the hint, for the Retry.
func (e *hintedError) RetryAfter() time.Duration { return e.hint }

// retryStatusError fails an attempt whose response had a status
// RetryStatus accepts. It unwraps to a *StatusError with the status, which
// a Retry's RetryOn can look for; its RetryAfter is the response's
// Retry-After, the hint jidoka.Retry waits for.
type retryStatusError struct {
	status     StatusError
	retryAfter time.Duration
}

func (e *retryStatusError) Error() string {
	return "taihttp: response status " + strconv.Itoa(e.status.Status) + " " + http.StatusText(e.status.Status)
}

// Unwrap returns the status as a *StatusError.
func (e *retryStatusError) Unwrap() error { return &e.status }

func (e *retryStatusError) RetryAfter() time.Duration { return e.retryAfter }

// call is one attempt, after the limiter's wait.
func (rt *roundTrip) call(ctx context.Context) error {
	if l := rt.t.limiter; l != nil {
		if err := l.Wait(ctx); err != nil {
			return err
		}
	}
	return rt.attempt(ctx)
}

// attempt sends one copy of the request through the breaker. ctx is the
// attempt's: a hedge cancels it for the copies that lose. The request runs
// on a context of its own, a child of the request's, which ctx's end and
// the attempt's timeout cancel only until the response header has arrived,
// so that the body of the response returned stays readable.
//
// (jidoka.Timeout would end the attempt's context when the attempt
// returns, and with it the body; the timeout here ends the request's
// context only if it passes before the header is in: see the package
// internal/deadlines, which keeps the attempts until their deadlines.)
func (rt *roundTrip) attempt(ctx context.Context) error {
	req, err := rt.request()
	if err != nil {
		return err
	}
	done := func(error) {}
	if b := rt.t.breaker; b != nil {
		if done, err = b.Allow(ctx); err != nil {
			if req.Body != nil {
				_ = req.Body.Close()
			}
			return err
		}
	}
	a := rt.body()
	var reqCtx context.Context
	reqCtx, a.cancel = context.WithCancel(rt.req.Context())
	stop := noStop
	if ctx != rt.req.Context() {
		stop = context.AfterFunc(ctx, a.cancel)
	}
	x := rt.t.expiries
	if x != nil {
		now := x.Since()
		a.expiry.At = now + rt.t.timeout
		x.Add(a, now)
	}
	// A panic in the base or in a status function of the caller's goes on
	// to the caller of RoundTrip, as it would without the Transport; on
	// its way the breaker counts it, as its Do counts a call that panics,
	// and the response and the attempt's context end. So do they when
	// done panics (an IsFailure or Ignore of the breaker's options), but
	// done, told once already, is not told again.
	var resp *http.Response
	reported, ended := false, false
	defer func() {
		if ended {
			return
		}
		v := recover() // nil for runtime.Goexit, which goes on by itself
		if resp != nil && resp.Body != nil {
			_ = resp.Body.Close()
		}
		a.cancel()
		stop()
		if x != nil {
			x.Remove(a)
		}
		if !reported {
			done(&tai.PanicError{Stage: tai.StageAction, Value: v, Stack: debug.Stack()})
		}
		if v != nil {
			panic(v)
		}
	}()
	if rt.hold {
		rt.release()
	}
	sent := req.WithContext(reqCtx)
	resp, err = rt.t.base.RoundTrip(sent)
	if err == nil && resp == nil {
		// As http.Client says of a base that breaks the contract.
		err = fmt.Errorf("taihttp: base RoundTripper (%T) returned a nil *Response with a nil error", rt.t.base)
	}
	if err != nil && resp != nil {
		// A base that breaks the contract the other way: the error
		// stands, as http.Client lets it, and the response, which no one
		// else will see, is closed.
		if resp.Body != nil {
			_ = resp.Body.Close()
		}
		resp = nil
	}
	if err == nil && resp.Request == sent {
		// The request the caller gave, as http.Transport makes it, not
		// the attempt's copy: its context ends with the body, and a
		// request made after with resp.Request.Context() would fail.
		resp.Request = rt.req
	}
	if err == nil && resp.Body == nil {
		// A base transport may leave an empty body nil, as http.Client
		// allows: the wrapper and the caller need one to read and close.
		resp.Body = http.NoBody
	}
	failed := err == nil && rt.hold && rt.t.retryOn(resp.StatusCode)
	if err == nil && resp.StatusCode != http.StatusSwitchingProtocols {
		a.ReadCloser = resp.Body
		resp.Body = a
	}
	if failed {
		// A response that failed on its status is read into memory
		// while the attempt's timeout and context still bound it: a
		// body that does not come must not hold up a retry, nor a hedge
		// that has won.
		buffer(resp)
	}
	intime := x == nil || x.Remove(a)
	if linked := stop(); err == nil && !(intime && linked) {
		// The attempt ended (its timeout, a lost hedge) as the
		// response came: the response is lost with it.
		drain(resp)
		resp, err = nil, context.Canceled
	}
	if err != nil {
		a.cancel()
		report := error(nil)
		switch {
		case rt.t.noProtocol(sent, err):
			// Sent to no server: the breaker is told of a refusal
			// inside it, which it never counts, and no retry would
			// fare better.
			report, err = errNotSent, jidoka.Permanent(err)
		case isCertificateError(err):
			// The server's certificate fails verification, as it will
			// for every attempt until a certificate or the client's
			// roots are changed: no retry would fare better. The
			// breaker counts it, as it counts a refused connection.
			report, err = err, jidoka.Permanent(err)
		case a.expiry.Fired(): // set before Remove returned
			err = &jidoka.TimeoutError{Timeout: "attempt", Duration: rt.t.timeout, Err: context.DeadlineExceeded}
		case ctx.Err() != nil:
			// The attempt's context ended: that is why the request
			// failed, and what the breaker and the retry should see.
			err = ctx.Err()
		}
		if report == nil {
			report = err
		}
		reported = true
		done(report)
		ended = true
		return err
	}
	var result error
	if rt.t.failureOn(resp.StatusCode) {
		result = &StatusError{Status: resp.StatusCode}
	}
	reported = true
	done(result)
	ended = true
	if failed {
		now := time.Now()
		hint, _ := parseRetryAfter(resp.Header.Get(headerRetryAfter), responseDate(resp.Header, now))
		serr := &retryStatusError{status: StatusError{Status: resp.StatusCode}, retryAfter: hint}
		var until time.Time
		if hint > 0 {
			until = now.Add(hint)
		}
		rt.keep(resp, serr, until)
		return serr
	}
	switch {
	case a.ReadCloser == http.NoBody:
		// Nothing to read (HEAD, 204, 304): the response is whole, and
		// its request holds nothing more, as http.Transport's does not.
		resp.Body = http.NoBody
		a.cancel()
	case resp.StatusCode == http.StatusSwitchingProtocols:
		// The body is the connection, the caller's now: http.Transport
		// no longer watches the request's context, nor need we.
		a.cancel()
	}
	rt.claim(resp, a)
	return nil
}

// noProtocol reports whether err is the answer of the base, an
// *http.Transport, to req, whose URL has a scheme it has no protocol for:
// neither http nor https, nor one registered with RegisterProtocol. The
// Transport answers so at once, before it dials, with an error of a type
// of its own that only its text tells apart; which schemes are registered
// cannot be asked beforehand.
func (t *Transport) noProtocol(req *http.Request, err error) bool {
	if _, ok := t.base.(*http.Transport); !ok {
		return false
	}
	s := req.URL.Scheme
	return s != "http" && s != "https" && err.Error() == "unsupported protocol scheme "+strconv.Quote(s)
}

// isCertificateError reports whether err is the failure to verify a
// server's certificate: crypto/tls's *tls.CertificateVerificationError
// (an unknown authority, a name the certificate does not hold, one that
// expired), or an error of package x509 that a base verifying on its own
// may return bare. A handshake that fails so fails the same way each
// time. (An error of a VerifyPeerCertificate or VerifyConnection of the
// caller's may be of any kind: it is retried as any other error is,
// unless it is marked jidoka.Permanent.)
func isCertificateError(err error) bool {
	var (
		ve *tls.CertificateVerificationError
		ua x509.UnknownAuthorityError
		he x509.HostnameError
		ie x509.CertificateInvalidError
	)
	return errors.As(err, &ve) || errors.As(err, &ua) || errors.As(err, &he) || errors.As(err, &ie)
}

// errNotSent is what the breaker is told of an attempt the base refused
// without sending it (see noProtocol). It matches jidoka.ErrBulkheadFull,
// a refusal by a guard inside the breaker, which the breaker never counts
// whatever its IsFailure and Ignore say, nor shows to them: the call did
// not reach the server. The caller gets the base's own error.
var errNotSent error = notSentError{}

type notSentError struct{}

func (notSentError) Error() string { return "taihttp: the base transport sent nothing" }

// Is reports whether target is jidoka.ErrBulkheadFull.
func (notSentError) Is(target error) bool { return target == jidoka.ErrBulkheadFull }

// attemptBody controls the context of an attempt's request, and becomes
// the body of its response: reading it to its end, or closing it, ends
// the context.
type attemptBody struct {
	io.ReadCloser
	cancel context.CancelFunc
	expiry deadlines.Links[attemptBody] // its place among the Transport's expiries
}

// Read reads the body; at its end the request's context ends, so that
// the caller's context does not keep it for a body read but not closed.
func (a *attemptBody) Read(p []byte) (int, error) {
	n, err := a.ReadCloser.Read(p)
	if err == io.EOF {
		a.cancel()
	}
	return n, err
}

func (a *attemptBody) Close() error {
	err := a.ReadCloser.Close()
	a.cancel()
	return err
}

// body returns a new attemptBody: the first from rt itself.
func (rt *roundTrip) body() *attemptBody {
	if !rt.firstTaken.Swap(true) {
		return &rt.first
	}
	return &attemptBody{}
}

// attemptExpiry returns a's place among the Transport's expiries.
func attemptExpiry(a *attemptBody) *deadlines.Links[attemptBody] { return &a.expiry }

// expireAttempt ends an attempt that outlived the Transport's
// AttemptTimeout.
func expireAttempt(a *attemptBody) { a.cancel() }

// noStop is the stop of an attempt whose context is the request's own:
// the request's context is its child already.
func noStop() bool { return true }

// request returns the request for an attempt: the caller's for the first,
// with its body; a copy with a body from GetBody for every other.
func (rt *roundTrip) request() (*http.Request, error) {
	if !rt.bodyUsed.Swap(true) {
		return rt.req, nil
	}
	req := rt.req
	if req.Body == nil || req.Body == http.NoBody {
		return req, nil
	}
	body, err := req.GetBody()
	if err != nil {
		// Each retry would fail so, after its backoff and at the cost of
		// the retry budget: the request is not sent again.
		return nil, jidoka.Permanent(&bodyError{err: err})
	}
	c := *req // a shallow copy: WithContext copies it again, with the attempt's context
	c.Body = body
	return &c, nil
}

// bodyError is the error of an attempt that was not made because GetBody
// failed: the request cannot be sent again.
type bodyError struct{ err error }

func (e *bodyError) Error() string {
	return "taihttp: request body for another attempt: " + e.err.Error()
}

// Unwrap returns GetBody's error.
func (e *bodyError) Unwrap() error { return e.err }

// claim makes resp, the response of the attempt of a, the response
// RoundTrip returns, unless another attempt won first: then the attempt
// is cancelled, and resp drained and closed. (Its header came before the
// winner cancelled it: only its own cancel ends a body that may not come,
// which the hedge waits for.)
func (rt *roundTrip) claim(resp *http.Response, a *attemptBody) {
	rt.mu.Lock()
	if rt.won == nil && !rt.done {
		rt.won = resp
		rt.mu.Unlock()
		return
	}
	rt.mu.Unlock()
	a.cancel()
	drain(resp)
}

// keep holds resp, a response that failed on its status with serr, as
// the one to return should every attempt fail; the one it replaces is
// closed. until is when its Retry-After ends, zero for none.
func (rt *roundTrip) keep(resp *http.Response, serr *retryStatusError, until time.Time) {
	rt.mu.Lock()
	if rt.done {
		rt.mu.Unlock()
		drain(resp)
		return
	}
	if until.After(rt.hintUntil) {
		rt.hintUntil = until
	}
	rt.roundErr = serr
	old := rt.held
	rt.held = resp
	_, long := resp.Body.(*prefixBody)
	rt.live.Store(long)
	rt.mu.Unlock()
	if old != nil {
		drain(old)
	}
}

// release closes the rest of the held response's body before another
// attempt is sent. A body longer than maxDrain, read in part, holds its
// connection, which the attempt may need: over a base that allows one
// connection per host, the attempt would wait for it until the caller's
// deadline. The response stays held, its body cut after the part read;
// it is replaced by the attempt's own, or dropped, unless a copy sent
// before it, of a hedge, ends the request first.
func (rt *roundTrip) release() {
	if !rt.live.Load() {
		return
	}
	rt.mu.Lock()
	defer rt.mu.Unlock()
	if !rt.live.Swap(false) || rt.held == nil {
		return
	}
	if b, ok := rt.held.Body.(*prefixBody); ok {
		b.cut()
	}
}

// abandon closes the request's body, if no attempt took it, and the
// responses rt holds, when an attempt panicked: RoundTrip returns none
// of them. They are closed unread: a panic need not wait for a body.
func (rt *roundTrip) abandon() {
	if !rt.bodyUsed.Swap(true) {
		_ = rt.req.Body.Close()
	}
	rt.mu.Lock()
	defer rt.mu.Unlock()
	rt.done = true
	for _, resp := range [...]*http.Response{rt.won, rt.held} {
		if resp != nil {
			_ = resp.Body.Close()
		}
	}
	rt.won, rt.held = nil, nil
}

// dropHeld closes the held response; rt.mu is held.
func (rt *roundTrip) dropHeld() {
	if rt.held != nil {
		drain(rt.held)
		rt.held = nil
	}
}

// maxDrain is how much of a failed response's body is read, so that its
// connection can serve another request, or kept, for the caller to read
// should that response be the one returned.
const maxDrain = 64 << 10

// drain reads what is left of resp's body, up to maxDrain, and closes it.
// The body of a 101 Switching Protocols is the connection, which no other
// request can use and whose peer may wait for this side to speak: it is
// closed unread.
func drain(resp *http.Response) {
	if resp.StatusCode != http.StatusSwitchingProtocols {
		_, _ = io.CopyN(io.Discard, resp.Body, maxDrain)
	}
	_ = resp.Body.Close()
}

// buffer reads resp's body into memory, when it is at most maxDrain long,
// and closes it, so that the connection is free while resp is held; a
// longer body stays as it is.
func buffer(resp *http.Response) {
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxDrain+1))
	if err != nil || len(b) > maxDrain {
		p := bytes.NewReader(b)
		resp.Body = &prefixBody{prefix: p, r: io.MultiReader(p, resp.Body), c: resp.Body}
		return
	}
	_ = resp.Body.Close()
	resp.Body = io.NopCloser(bytes.NewReader(b))
}

// prefixBody is a body partly read into memory.
type prefixBody struct {
	prefix *bytes.Reader // the part read
	r      io.Reader     // prefix, then the rest of the body
	c      io.Closer     // the body
}

func (b *prefixBody) Read(p []byte) (int, error) { return b.r.Read(p) }
func (b *prefixBody) Close() error               { return b.c.Close() }

// cut closes the body, and with it its connection: a read past the part
// read fails with errCut.
func (b *prefixBody) cut() {
	_ = b.c.Close()
	b.r = io.MultiReader(b.prefix, cutReader{})
}

// errCut is the error of a read past the part read of a failed response's
// body that was closed when another attempt was sent.
var errCut = errors.New("taihttp: the rest of the body of a failed response was closed when another attempt was sent")

type cutReader struct{}

func (cutReader) Read([]byte) (int, error) { return 0, errCut }
