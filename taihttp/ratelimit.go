package taihttp

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/taipattern/taikit/heijunka"
	"github.com/taipattern/taikit/internal/typednil"
)

// A KeyLimiter decides on one request of a key and records it if it is
// allowed. *heijunka.Keyed is one; SharedLimiter makes one of a
// heijunka.Limiter.
//
// An error means there is no decision (a store that cannot decide and
// does not fail open); the request is then answered 503. The RateLimit
// fields are made of the Decision's Limit, Remaining, RetryAfter and
// ResetAfter: a KeyLimiter that leaves Limit zero (a closed limit) gets
// no fields but Retry-After, unless its decision is a closed limit's (a
// denial with RetryAfter heijunka.InfDuration).
type KeyLimiter interface {
	Allow(ctx context.Context, key string) (heijunka.Decision, error)
}

// SharedLimiter makes one heijunka.Limiter a KeyLimiter: every key
// shares its single bucket, a limit for the whole server. It has the
// Limiter's Name, which RateLimit gives the *heijunka.LimitedError it
// hands to OnError.
func SharedLimiter(l *heijunka.Limiter) KeyLimiter { return sharedLimiter{l} }

type sharedLimiter struct{ l *heijunka.Limiter }

// Name returns the Limiter's name.
func (s sharedLimiter) Name() string { return s.l.Name() }

func (s sharedLimiter) Allow(context.Context, string) (heijunka.Decision, error) {
	return s.l.Decide(), nil
}

// RateLimitOptions configures RateLimit. The zero value limits by client
// address under the policy "default" and answers with JSON problems.
type RateLimitOptions struct {
	// Key picks the key a request is counted under. Default
	// RemoteNetwork: the address of an IPv4 client, the /64 of an IPv6
	// one.
	Key KeyFunc
	// Policy names the quota policy in the RateLimit and RateLimit-Policy
	// fields. It must be printable ASCII without '"' or '\'. Default
	// DefaultPolicy ("default"). A response whose fields already have an
	// item of that name, set by a RateLimit middleware around this one,
	// gets this one's items under the first of Policy-2, Policy-3, … that
	// they do not have: see RateLimit.
	Policy string
	// HeadersWhenLimited sends the RateLimit and RateLimit-Policy fields
	// only with a 429, not with every response: the draft lets a server
	// leave them out, and a busy one saves the work. Retry-After goes
	// with every 429 either way.
	HeadersWhenLimited bool
	// Errors writes the 429 and 503 responses. Default JSONErrors.
	Errors ErrorWriter
	// RetryAfter is the Retry-After of a 503 sent when the limiter has no
	// decision and its Decision gives no RetryAfter of its own (a full
	// heijunka.MemoryStore gives the time until a key it holds is fresh,
	// which goes instead). Default one second; it must not be negative.
	RetryAfter time.Duration
	// OnError, if set, is called with every request the middleware turns
	// away and why: a *heijunka.LimitedError for a 429, the limiter's
	// error for a 503. Log there: the response never shows the error. It
	// runs on the request's goroutine before the response is written.
	OnError func(r *http.Request, err error)
}

// RateLimit returns middleware that asks l about every request's key
// before it passes the request on. Every response carries the draft
// standard's fields (draft-ietf-httpapi-ratelimit-headers), unless
// HeadersWhenLimited:
//
//	RateLimit-Policy: "default";q=100;w=60
//	RateLimit: "default";r=42;t=1
//
// Middlewares stacked on one route (a limit per minute around one per
// hour) each add their policy to the fields, a list item of their own, so
// give each its own Policy name:
//
//	RateLimit-Policy: "permin";q=50;w=60
//	RateLimit-Policy: "perhr";q=1000;w=3600
//
// The draft's items name the policy they tell of, and a client cannot
// tell two of one name apart, so a middleware whose Policy an item on the
// response has already (two left at "default") takes the first name of
// Policy-2, Policy-3, … that none has, for its items in both fields and
// for the violated-policies of its 429:
//
//	RateLimit-Policy: "default";q=50;w=60
//	RateLimit-Policy: "default-2";q=1000;w=3600
//
// Such a name tells of the middlewares' order, and of what the ones
// around this one sent on this response, so it is no name to document
// to clients: give each its own Policy.
//
// A request over its limit is answered 429 Too Many Requests with
// Retry-After in whole seconds, rounded up and at least 1, and the next
// handler does not see it. When l has no decision (its error) the
// request is answered 503 with the RetryAfter of the Decision l returned
// with its error, if any (a full heijunka.MemoryStore's time until a key
// it holds is fresh), or opts.RetryAfter. See PolicyField and
// RateLimitField for what the fields say.
//
// A request that a middleware or handler inside turns away (a 429 of an
// inner limit, a Gate's 503, WriteError) after this one counted it gets a
// Retry-After no sooner than the effective window this one gives when it
// says the quota is spent (r=0): a retry before then would be refused
// here.
//
// The fields' values are formatted once and shared by the responses that
// send the same ones, so that a response costs no allocation: a handler
// that changes a field replaces it (Header.Set, Add or Del), and never
// assigns into its slice.
//
// It returns an error naming the field for invalid options, or for a nil
// l: nil itself, one holding a nil pointer (a *heijunka.Keyed whose
// constructor failed), or SharedLimiter of a nil *heijunka.Limiter.
func RateLimit(l KeyLimiter, opts RateLimitOptions) (Middleware, error) {
	if s, ok := l.(sharedLimiter); l == nil || typednil.Holds(l) || ok && s.l == nil {
		return nil, errors.New("taihttp.RateLimit: limiter is nil")
	}
	if opts.Policy == "" {
		opts.Policy = DefaultPolicy
	}
	if !validPolicyName(opts.Policy) {
		return nil, fmt.Errorf("taihttp.RateLimit: Policy %q must be printable ASCII without '\"' or '\\'", opts.Policy)
	}
	c, err := newCommon("taihttp.RateLimit", opts.Key, opts.Errors, opts.RetryAfter, opts.OnError)
	if err != nil {
		return nil, err
	}
	rl := &rateLimit{l: l, own: policyCache{name: opts.Policy}, quiet: opts.HeadersWhenLimited, common: c}
	if n, ok := l.(interface{ Name() string }); ok {
		rl.name = n.Name()
	}
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if rl.admit(w, r) {
				next.ServeHTTP(w, r)
			}
		})
	}, nil
}

type rateLimit struct {
	l     KeyLimiter
	name  string // the limiter's, for the LimitedError handed to OnError
	quiet bool
	common
	// own is the policy of opts.Policy; renamed, the one under the name
	// it took last when a middleware around it had that one (see
	// freePolicyName).
	own     policyCache
	renamed atomic.Pointer[policyCache]
}

// policyCache holds the fields of a policy's name.
type policyCache struct {
	name string
	n    int // the suffix of name after opts.Policy; 0 for none
	// cached is the RateLimit-Policy field of the last limit seen: a
	// limit changes seldom, so the field is formatted once per change.
	cached atomic.Pointer[policyValue]
}

type policyValue struct {
	limitInfo
	field []string // shared by the responses: len and cap 1, so Add copies
	// fields holds RateLimit fields made under this limit, each in the
	// slot its r and t hash to, so that the values a busy server sends
	// over and over (a quota nearly full, a second to refill) are
	// formatted once and sent without an allocation. A slot holds the
	// last field made there.
	fields [fieldSlots]atomic.Pointer[rateLimitValue]
}

// fieldSlots is the number of RateLimit fields a middleware keeps per
// limit: 256 pointers, 2 KiB.
const fieldSlots = 256

// rateLimitValue is one RateLimit field: its r, its t (0 when it has
// none) and the field, shared by the responses as policyValue.field is.
type rateLimitValue struct {
	r, t  int64
	field [1]string
}

// rateLimitField returns the RateLimit field for d, decided under the
// limit of pv, as a slice of len and cap 1 shared by the responses that
// send the same field; nil when d has none (see RateLimitField).
func (pv *policyValue) rateLimitField(policy string, d *heijunka.Decision) []string {
	r, t, ok := pv.rateLimitItems(d)
	if !ok {
		return nil
	}
	slot := &pv.fields[(uint64(r)+uint64(t)*97)%fieldSlots]
	if v := slot.Load(); v != nil && v.r == r && v.t == t {
		return v.field[:]
	}
	var buf [64]byte
	v := &rateLimitValue{r: r, t: t}
	v.field[0] = string(appendRateLimitItems(buf[:0], policy, r, t))
	slot.Store(v)
	return v.field[:]
}

// admit decides on r, sets the fields and answers r when it may not pass.
func (rl *rateLimit) admit(w http.ResponseWriter, r *http.Request) bool {
	d, err := rl.l.Allow(r.Context(), rl.key(r))
	if err != nil {
		// A limiter with no decision may still know when it will have
		// one (a full heijunka.MemoryStore: when a key it holds is
		// fresh); without that, opts.RetryAfter goes (fail).
		var hint time.Duration
		if d.RetryAfter > 0 && d.RetryAfter != heijunka.InfDuration {
			hint = d.RetryAfter
		}
		rl.fail(w, r, err, Problem{Status: http.StatusServiceUnavailable, Code: "unavailable",
			Message: "the service is unavailable; retry later", RetryAfter: hint})
		return false
	}
	if d.Allowed && rl.quiet {
		return true
	}
	h := w.Header()
	pc := rl.policy(h)
	pv := pc.value(d.Limit)
	if pv.field != nil && pv.made(&d) {
		addShared(h, headerRateLimitPolicy, pv.field)
	}
	if v := pv.rateLimitField(pc.name, &d); v != nil {
		addShared(h, headerRateLimit, v)
	}
	if d.Allowed {
		return true
	}
	// A denial without a hint (a KeyLimiter of the caller's) says 1 s in
	// Retry-After, as RateLimit says t=1; RateLimitOptions.RetryAfter is
	// for the 503s.
	ra := d.RetryAfter
	if ra <= 0 {
		ra = time.Second
	}
	rl.fail(w, r, &heijunka.LimitedError{Name: rl.name, Decision: d}, Problem{Status: http.StatusTooManyRequests,
		Code: codeRateLimited, Message: "too many requests; retry later", RetryAfter: ra, Policy: pc.name})
	return false
}

// addShared adds the field value v, a slice of len and cap 1 shared by
// responses, to the field name of h: v itself when h has no such field,
// else a list's item more (a RateLimit middleware around this one has its
// own policy in the fields; the draft lets a list span field lines), which
// copies v.
func addShared(h http.Header, name string, v []string) {
	if old := h[name]; len(old) > 0 {
		h[name] = append(old, v[0])
		return
	}
	h[name] = v
}

// policy returns the policy whose items go to h: the one of
// opts.Policy, unless an item of h has its name already.
func (rl *rateLimit) policy(h http.Header) *policyCache {
	n := freePolicyName(h, rl.own.name)
	if n == 0 {
		return &rl.own
	}
	if pc := rl.renamed.Load(); pc != nil && pc.n == n {
		return pc
	}
	pc := &policyCache{name: suffixed(rl.own.name, n), n: n}
	rl.renamed.Store(pc)
	return pc
}

// value returns the field and the limitInfo of l, made once per change
// of limit.
func (pc *policyCache) value(l heijunka.Limit) *policyValue {
	if c := pc.cached.Load(); c != nil && c.limit == l {
		return c
	}
	c := &policyValue{limitInfo: limitOf(l)}
	if f := PolicyField(pc.name, l); f != "" {
		c.field = []string{f}
	}
	pc.cached.Store(c)
	return c
}

// common is what every middleware here is configured with.
type common struct {
	key      KeyFunc
	errs     ErrorWriter
	fallback time.Duration
	onError  func(*http.Request, error)
}

func newCommon(who string, key KeyFunc, errs ErrorWriter, fallback time.Duration, onError func(*http.Request, error)) (common, error) {
	if fallback < 0 {
		return common{}, fmt.Errorf("%s: RetryAfter must not be negative, got %v", who, fallback)
	}
	c := common{key: key, errs: errs, fallback: fallback, onError: onError}
	if c.key == nil {
		c.key = RemoteNetwork
	}
	if c.errs == nil {
		c.errs = JSONErrors
	}
	if c.fallback == 0 {
		c.fallback = time.Second
	}
	return c, nil
}

// fail reports err to OnError and answers r with p.
func (c *common) fail(w http.ResponseWriter, r *http.Request, err error, p Problem) {
	if c.onError != nil {
		c.onError(r, err)
	}
	writeProblem(w, r, p, c.errs, c.fallback)
}
