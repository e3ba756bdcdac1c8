package taihttp

import (
	"errors"
	"net/http"
	"time"

	"github.com/taipattern/taikit/heijunka"
	"github.com/taipattern/taikit/internal/typednil"
	"github.com/taipattern/taikit/tai"
)

// GateOptions configures Gate. The zero value admits by client address
// and answers with JSON problems.
type GateOptions struct {
	// Key picks the key handed to the gate's Admit. Default RemoteNetwork (a
	// jidoka.Line ignores it).
	Key KeyFunc
	// Errors writes the responses to refused requests. Default
	// JSONErrors.
	Errors ErrorWriter
	// RetryAfter is the Retry-After of a 429 or 503 whose error has no
	// hint of its own (a jidoka.Line made without LineOptions.RetryAfter).
	// Default one second; it must not be negative.
	RetryAfter time.Duration
	// OnError, if set, is called with every request the gate refuses and
	// the gate's error, before the response is written. Log there: the
	// response never shows the error.
	OnError func(r *http.Request, err error)
}

// Gate returns middleware that asks the tai.Gate g to admit every request
// before passing it on, and answers a refused one as ProblemOf maps the
// gate's error: a stopped jidoka.Line gives 503 with the line's
// Retry-After, a heijunka limiter 429 with its own Retry-After and the
// RateLimit fields under the limiter's name (name-2 when a RateLimit
// middleware around this one has that name, as RateLimit does), any
// other gate's error 503 (or the status of an error with an HTTPStatus
// method). OnError gets the gate's error wrapped in a *tai.RejectedError,
// as a pipeline returns it. The next handler does not see a refused
// request.
//
//	line, _ := jidoka.NewLine(jidoka.LineOptions{Name: "payments", RetryAfter: 30 * time.Second})
//	stop, _ := taihttp.Gate(line, taihttp.GateOptions{})
//	http.Handle("/pay", stop(payHandler))
//
// It returns an error for a nil g (or one holding a nil pointer, as
// tai.New does) or invalid options.
func Gate(g tai.Gate, opts GateOptions) (Middleware, error) {
	if g == nil || typednil.Holds(g) {
		return nil, errors.New("taihttp.Gate: gate is nil")
	}
	c, err := newCommon("taihttp.Gate", opts.Key, opts.Errors, opts.RetryAfter, opts.OnError)
	if err != nil {
		return nil, err
	}
	name := ""
	if n, ok := g.(tai.Namer); ok {
		name = n.Name()
	}
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if err := g.Admit(r.Context(), c.key(r)); err != nil {
				// As a pipeline's gate would: the refusal is a
				// *tai.RejectedError wrapping the gate's error.
				c.refuse(w, r, &tai.RejectedError{Stage: tai.StageGate, Hook: name, Err: err})
				return
			}
			next.ServeHTTP(w, r)
		})
	}, nil
}

// refuse answers a request a gate or a pipeline turned away with err. A
// rate limit's decision adds its RateLimit fields, under the limiter's
// name, so that a 429 says the same as RateLimit's would; the policies of
// RateLimit middlewares around this one stay in the fields beside it,
// and a name one of them has is made another (see freePolicyName).
func (c *common) refuse(w http.ResponseWriter, r *http.Request, err error) {
	p := ProblemOf(err)
	var le *heijunka.LimitedError
	if errors.As(err, &le) {
		name := le.Name
		if !validPolicyName(name) {
			name = DefaultPolicy
		}
		p.Policy = setDecisionHeaders(w.Header(), name, le.Decision)
	}
	c.fail(w, r, err, p)
}
