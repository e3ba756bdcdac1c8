package taihttp

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/taipattern/taikit/heijunka"
	"github.com/taipattern/taikit/jidoka"
	"github.com/taipattern/taikit/kanban"
	"github.com/taipattern/taikit/tai"
)

// Problem is an error response: what the middleware tells a client when it
// does not pass a request on, or when the request failed. It carries no
// error text: Message is a fixed sentence per Code, so no internals (a
// policy's reasons, a stack, a store's address) reach the client. Pass an
// OnError function in the options to log the error itself.
type Problem struct {
	// Status is the HTTP status code.
	Status int
	// Code names the condition in a word a client can branch on:
	// "rate_limited", "line_stopped", "breaker_open", "rejected",
	// "denied", "timeout", "canceled", "unavailable", "failed", or
	// "status_NNN" for an error carrying its own status, or a request body
	// over http.MaxBytesReader's limit, status_413 (see ProblemOf).
	Code string
	// Message says the same to a person: the problem document's detail
	// (and the title of a 429's, see JSONErrors).
	Message string
	// RetryAfter is when to try again; sent as Retry-After when positive.
	RetryAfter time.Duration
	// Policy names the quota policy a 429 exceeded, for the body's
	// "violated-policies"; empty otherwise.
	Policy string
}

// ProblemOf maps an error — of a tai pipeline, a heijunka limiter, a
// jidoka breaker or line, or a handler — to the response it calls for:
//
//	nil                            200
//	heijunka.ErrLimited            429 rate_limited, Retry-After: the limiter's hint
//	jidoka.ErrLineStopped          503 line_stopped, Retry-After: the line's hint
//	jidoka.ErrOpen                 503 breaker_open, Retry-After: the rest of the open period
//	jidoka.ErrBulkheadFull         503 rejected, Retry-After: the bulkhead's hint, if any
//	heijunka.ErrStoreFull,         503 rejected, Retry-After: the store's hint, if any
//	ErrBacklogFull, ErrTooManyKeys
//	kanban.ErrFull                 503 rejected, Retry-After: the queue's hint, if any
//	an error with HTTPStatus() int that status, when it is 400–599
//	*http.MaxBytesError            413 status_413 (a request body over its limit)
//	tai.ErrRejected (other)        503 rejected, Retry-After: the hook's hint, if any
//	tai.ErrDenied                  403 denied
//	context.DeadlineExceeded       504 timeout
//	context.Canceled               503 canceled
//	anything else                  500 failed
//
// The first that matches (errors.Is, errors.As) wins. The Message of an
// error's own status is its reason phrase, or for a status without one
// (499, 520) "the request was refused" (4xx) or "the request failed".
//
// The Retry-After of a 429 or 503 may be 0 here when the error carries no
// hint; the middleware then sends its options' RetryAfter, so a client
// turned away is always told when to come back.
func ProblemOf(err error) Problem {
	ra := tai.RetryAfter(err)
	var hs interface{ HTTPStatus() int }
	var mb *http.MaxBytesError
	switch {
	case err == nil:
		return Problem{Status: http.StatusOK}
	case errors.Is(err, heijunka.ErrLimited):
		return Problem{Status: http.StatusTooManyRequests, Code: codeRateLimited,
			Message: "too many requests; retry later", RetryAfter: ra}
	case errors.Is(err, jidoka.ErrLineStopped):
		return Problem{Status: http.StatusServiceUnavailable, Code: "line_stopped",
			Message: "the service is stopped; retry later", RetryAfter: ra}
	case errors.Is(err, jidoka.ErrOpen):
		return Problem{Status: http.StatusServiceUnavailable, Code: "breaker_open",
			Message: "a service this request needs is unavailable; retry later", RetryAfter: ra}
	case errors.Is(err, jidoka.ErrBulkheadFull):
		// Load shed, as a pipeline's guard rejects it (tai.ErrRejected
		// below): the call never ran, whether it was refused at once or
		// its deadline passed while it waited for a slot.
		return Problem{Status: http.StatusServiceUnavailable, Code: "rejected",
			Message: "the service is busy; retry later", RetryAfter: ra}
	case errors.Is(err, heijunka.ErrStoreFull), errors.Is(err, heijunka.ErrBacklogFull), errors.Is(err, heijunka.ErrTooManyKeys),
		errors.Is(err, kanban.ErrFull):
		// Load shed as well: a MemoryStore that takes no new key (its
		// hint is when a key it holds is fresh), a Leveler whose backlog
		// or key table is full, a queue that holds as many messages as
		// it may until its consumers take some. A gate's refusal says
		// the same (below).
		return Problem{Status: http.StatusServiceUnavailable, Code: "rejected",
			Message: "the service is busy; retry later", RetryAfter: ra}
	case errors.As(err, &hs) && hs.HTTPStatus() >= 400 && hs.HTTPStatus() <= 599:
		s := hs.HTTPStatus()
		return Problem{Status: s, Code: "status_" + strconv.Itoa(s), Message: statusMessage(s), RetryAfter: ra}
	case errors.As(err, &mb):
		// The request's body was longer than http.MaxBytesReader lets a
		// handler read: the client's error, not the server's.
		return Problem{Status: http.StatusRequestEntityTooLarge, Code: "status_413",
			Message: http.StatusText(http.StatusRequestEntityTooLarge)}
	case errors.Is(err, tai.ErrRejected):
		return Problem{Status: http.StatusServiceUnavailable, Code: "rejected",
			Message: "the service is busy; retry later", RetryAfter: ra}
	case errors.Is(err, tai.ErrDenied):
		return Problem{Status: http.StatusForbidden, Code: "denied", Message: "the request was denied"}
	case errors.Is(err, context.DeadlineExceeded):
		return Problem{Status: http.StatusGatewayTimeout, Code: "timeout", Message: "the request took too long"}
	case errors.Is(err, context.Canceled):
		return Problem{Status: http.StatusServiceUnavailable, Code: "canceled", Message: "the request was canceled"}
	}
	return Problem{Status: http.StatusInternalServerError, Code: "failed", Message: "the request failed"}
}

// statusMessage is the Message of an error carrying its own status s: its
// reason phrase, or for a status without one (499, 520) a sentence of
// its class, so that the problem still says something to a person.
func statusMessage(s int) string {
	if m := http.StatusText(s); m != "" {
		return m
	}
	if s < 500 {
		return "the request was refused"
	}
	return "the request failed"
}

// StatusOf returns the status code and the retry hint ProblemOf gives err.
func StatusOf(err error) (status int, retryAfter time.Duration) {
	p := ProblemOf(err)
	return p.Status, p.RetryAfter
}

// WriteError answers r with the Problem err maps to (ProblemOf), as
// JSONErrors writes it, with Retry-After on a 429 or 503 (one second when
// err has no hint). It is what the middleware does, for a handler that
// runs a pipeline or a guard itself. Like the middleware's, its
// Retry-After is never sooner than the effective window (t) of a quota
// policy that the RateLimit field on w already says is spent (r=0), as a
// RateLimit middleware around the handler writes it: a retry before then
// would meet that limit.
//
// A nil err, which ProblemOf maps to 200, is answered 500 failed: a
// handler that calls WriteError meant to answer with an error, and a
// problem document sent with a success status would be taken for one.
func WriteError(w http.ResponseWriter, r *http.Request, err error) {
	p := ProblemOf(err)
	if err == nil {
		p = Problem{Status: http.StatusInternalServerError, Code: "failed", Message: "the request failed"}
	}
	writeProblem(w, r, p, JSONErrors, time.Second)
}

// writeProblem sets Retry-After (with fallback for a 429 or 503 without a
// hint, and at least the window of a spent quota in the RateLimit field),
// deletes the cache fields (see ErrorWriter) and hands p to ew.
func writeProblem(w http.ResponseWriter, r *http.Request, p Problem, ew ErrorWriter, fallback time.Duration) {
	h := w.Header()
	for _, f := range cacheFields {
		delete(h, f)
	}
	if p.RetryAfter <= 0 && (p.Status == http.StatusTooManyRequests || p.Status == http.StatusServiceUnavailable) {
		p.RetryAfter = fallback
	}
	if p.RetryAfter > 0 {
		// A RateLimit middleware around this one counted the request and
		// may have said its quota is spent: a retry before that quota
		// refills would be turned away there, and the draft asks that
		// Retry-After name no time before the end of the effective
		// window.
		p.RetryAfter = max(p.RetryAfter, spentQuotaWindow(h[headerRateLimit]))
		SetRetryAfter(h, p.RetryAfter, 0)
	}
	ew(w, r, p)
}

// An ErrorWriter writes the body of an error response, its Content-Type
// and its status (p.Status). Retry-After and the RateLimit fields are set
// on w before it is called (p.RetryAfter is the Retry-After sent: the
// error's hint or the fallback, raised to the effective window of a quota
// the RateLimit field says is spent); a Content-Length a handler set
// before it failed may be there too, which the writer deletes (as
// JSONErrors and PlainErrors do) unless it sets its own. The fields that let a cache
// keep a response and tell its version — Cache-Control, Expires, ETag and
// Last-Modified — are deleted before it is called, as net/http's
// ServeContent does for its errors: set by a handler, or by middleware
// around it, for the response it meant to send, they would let a shared
// cache serve the problem to every client in its place. A writer may set
// its own. JSONErrors and PlainErrors are
// the two this package offers; a function of yours can write any other
// shape.
type ErrorWriter func(w http.ResponseWriter, r *http.Request, p Problem)

// cacheFields are the fields writeProblem deletes, in canonical form.
var cacheFields = [...]string{"Cache-Control", "Expires", "Etag", "Last-Modified"}

// problemJSON is the body JSONErrors writes.
type problemJSON struct {
	Type             string   `json:"type"`
	Title            string   `json:"title"`
	Status           int      `json:"status"`
	Detail           string   `json:"detail,omitempty"`
	Code             string   `json:"code,omitempty"`
	RetryAfter       int64    `json:"retry_after,omitempty"`
	ViolatedPolicies []string `json:"violated-policies,omitempty"`
}

// quotaExceeded is the problem type of draft-ietf-httpapi-ratelimit-headers
// for a request over its quota.
const quotaExceeded = "https://iana.org/assignments/http-problem-types#quota-exceeded"

// codeRateLimited is the Code of a request over a rate limit's quota.
const codeRateLimited = "rate_limited"

// JSONErrors writes p as an RFC 9457 problem document
// (application/problem+json):
//
//	{"type":"https://iana.org/assignments/http-problem-types#quota-exceeded",
//	 "title":"too many requests; retry later","status":429,
//	 "detail":"too many requests; retry later",
//	 "code":"rate_limited","retry_after":12,"violated-policies":["default"]}
//
//	{"type":"about:blank","title":"Service Unavailable","status":503,
//	 "detail":"the service is stopped; retry later","code":"line_stopped","retry_after":30}
//
// The type is the draft's quota-exceeded for a 429 over a quota (Code
// "rate_limited", or a Problem that names its Policy), whose title is
// p.Message. It is "about:blank" otherwise, a 429 of another cause
// included (an error of yours that carries the status, such as a cap on
// requests running at once): its title is the status's reason phrase, as
// RFC 9457 asks (section 4.2.1), so that it is the same for every problem
// of that status. detail is p.Message, and code tells the problems of
// one status apart. retry_after is Retry-After in seconds, when there is
// one.
//
// As http.Error does, it deletes a Content-Length field a handler set for
// the body it meant to send: sent with the problem, it would cut the
// problem short.
func JSONErrors(w http.ResponseWriter, _ *http.Request, p Problem) {
	body := problemJSON{Type: "about:blank", Title: http.StatusText(p.Status), Status: p.Status,
		Detail: p.Message, Code: p.Code, RetryAfter: RetryAfterSeconds(p.RetryAfter)}
	if body.Title == "" { // a status without a reason phrase
		body.Title = p.Message
	}
	if p.Status == http.StatusTooManyRequests && (p.Code == codeRateLimited || p.Policy != "") {
		body.Type = quotaExceeded
		body.Title = p.Message
		if p.Policy != "" {
			body.ViolatedPolicies = []string{p.Policy}
		}
	}
	b, err := json.Marshal(body)
	if err != nil { // cannot happen: the fields are strings and integers
		b = []byte(`{"type":"about:blank","status":` + strconv.Itoa(p.Status) + `}`)
	}
	h := w.Header()
	h.Del("Content-Length")
	h.Set("Content-Type", "application/problem+json")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(p.Status)
	_, _ = w.Write(append(b, '\n'))
}

// PlainErrors writes p's Message as text/plain, one line, as http.Error
// does, deleting a Content-Length field set for another body as it does.
func PlainErrors(w http.ResponseWriter, _ *http.Request, p Problem) {
	h := w.Header()
	h.Del("Content-Length")
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(p.Status)
	_, _ = w.Write([]byte(p.Message + "\n"))
}
