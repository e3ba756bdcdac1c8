package taihttp

import (
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/taipattern/taikit/heijunka"
)

// DefaultPolicy is the name of the quota policy in the RateLimit and
// RateLimit-Policy fields when none is given.
const DefaultPolicy = "default"

// MaxRetryAfter is the longest Retry-After this package sends. A longer
// hint — heijunka.InfDuration, for a request that can never pass under
// the current limit — is sent as MaxRetryAfter: long enough to stop a
// client's retries, short enough that a limit raised later is found.
const MaxRetryAfter = 24 * time.Hour

// The field names, in the canonical form net/http stores them in.
const (
	headerRetryAfter      = "Retry-After"
	headerDate            = "Date"
	headerRateLimit       = "Ratelimit"
	headerRateLimitPolicy = "Ratelimit-Policy"
	headerContentEncoding = "Content-Encoding"
)

// PolicyField returns the value of the RateLimit-Policy field
// (draft-ietf-httpapi-ratelimit-headers) for a quota policy named name
// under limit l:
//
//	"default";q=100;w=60
//
// q is the limit's Burst, the most requests a client may make at once,
// and w the seconds the limit takes to refill the whole burst at its Rate,
// rounded up, so PerMinute(100) gives q=100;w=60 and PerSecond(10) gives
// q=10;w=1. A closed limit gives q=0 without a window. It returns "" for
// an Unlimited or invalid limit, which has no quota to advertise.
//
// The name is sent as a structured-field String: quotes and backslashes
// are escaped and bytes outside printable ASCII are dropped. A number
// longer than the 15 digits of a structured-field Integer is sent as the
// largest one, 999999999999999.
func PolicyField(name string, l heijunka.Limit) string {
	return string(appendPolicy(nil, name, l))
}

func appendPolicy(b []byte, name string, l heijunka.Limit) []byte {
	if l.IsUnlimited() || l.Validate() != nil {
		return b
	}
	b = appendSFString(b, name)
	if l.IsClosed() {
		return append(b, ";q=0"...)
	}
	b = append(b, ";q="...)
	b = appendSFInteger(b, int64(l.Burst))
	b = append(b, ";w="...)
	return appendSFInteger(b, policyWindow(l))
}

// policyWindow returns w for the finite, open limit l: the seconds its
// Rate takes to refill its Burst, rounded up. It is worked out from Rate,
// not from Interval, which is rounded to a whole nanosecond: 6 per second
// has an interval of 166666667 ns, so six of them are 2 ns over a second,
// which rounded up would say w=2, half the rate. The quotient's own error,
// a few parts in 10^16, is taken off before it is rounded up for the
// same reason.
func policyWindow(l heijunka.Limit) int64 {
	secs := float64(l.Burst) / l.Rate
	return int64(math.Ceil(secs - secs*1e-12))
}

// RateLimitField returns the value of the RateLimit field for the quota
// policy named name after the limiter's decision d:
//
//	"default";r=50;t=30
//
// r is d.Remaining (at most 999999999999999, the largest
// structured-field Integer). t, the seconds until more quota is available, rounded
// up: for a denied decision its RetryAfter, at most MaxRetryAfter (so t
// and Retry-After name the same moment, as the draft asks), for an
// allowed one the time until the next request's worth refills; t is left
// out when the quota is full, and when the request can never pass (a
// closed limit). It returns "" for a
// decision under an Unlimited limit or one whose store failed open:
// no quota was applied; and for a decision a closed limit cannot make (an
// allowed one, or a denial that ends), which comes from a KeyLimiter of
// the caller's that left Limit zero: it says nothing of a quota.
func RateLimitField(name string, d heijunka.Decision) string {
	return string(appendRateLimit(nil, name, d))
}

func appendRateLimit(b []byte, name string, d heijunka.Decision) []byte {
	l := limitOf(d.Limit)
	return l.appendRateLimit(b, name, &d)
}

// limitInfo is what the fields need of a Limit, worked out once: a
// middleware keeps it for the limit it last saw.
type limitInfo struct {
	limit    heijunka.Limit
	quota    bool          // a finite or closed limit: one the fields can describe
	closed   bool          // Rate 0
	interval time.Duration // between requests at the sustained rate
}

func limitOf(l heijunka.Limit) limitInfo {
	return limitInfo{limit: l, quota: !l.IsUnlimited() && l.Validate() == nil, closed: l.IsClosed(), interval: l.Interval()}
}

// appendRateLimit appends the RateLimit field for d, decided under the
// limit of li.
func (li *limitInfo) appendRateLimit(b []byte, name string, d *heijunka.Decision) []byte {
	r, t, ok := li.rateLimitItems(d)
	if !ok {
		return b
	}
	return appendRateLimitItems(b, name, r, t)
}

// rateLimitItems returns the r and t of the RateLimit field for d,
// decided under the limit of li, t 0 when the field has none; ok is false
// when d has no field.
func (li *limitInfo) rateLimitItems(d *heijunka.Decision) (r, t int64, ok bool) {
	if d.FailedOpen || !li.quota || !li.made(d) {
		return 0, 0, false
	}
	r = min(int64(max(d.Remaining, 0)), maxSFInteger)
	if refill := li.refill(d); refill > 0 {
		t = min(ceilSeconds(refill), maxSFInteger)
	}
	return r, t, true
}

// appendRateLimitItems appends the RateLimit field of the policy name
// with r and t, leaving t out when it is 0.
func appendRateLimitItems(b []byte, name string, r, t int64) []byte {
	b = appendSFString(b, name)
	b = append(b, ";r="...)
	b = appendSFInteger(b, r)
	if t > 0 {
		b = append(b, ";t="...)
		b = appendSFInteger(b, t)
	}
	return b
}

// maxSFInteger is the largest structured-field Integer: 15 digits (RFC
// 9651, section 3.3.1). A longer number makes a parser reject the whole
// field.
const maxSFInteger = 999_999_999_999_999

// appendSFInteger appends the non-negative n as a structured-field
// Integer, at most maxSFInteger: a quota or a remaining count past it
// (a Burst of 10^15, a KeyLimiter of the caller's that says math.MaxInt
// remain) is as good as endless to a client.
func appendSFInteger(b []byte, n int64) []byte {
	return strconv.AppendInt(b, min(n, maxSFInteger), 10)
}

// made reports whether d may have been decided under the limit of li. A
// closed limit admits nothing and never refills: an allowed decision
// under it, or a denial that ends, is of a KeyLimiter that left
// Decision.Limit zero, and tells nothing of a quota, not a quota of 0.
func (li *limitInfo) made(d *heijunka.Decision) bool {
	return !li.closed || !d.Allowed && d.RetryAfter == heijunka.InfDuration
}

// refill is how long until the key of d has more quota; 0 when it is full
// or never will have.
func (li *limitInfo) refill(d *heijunka.Decision) time.Duration {
	if !d.Allowed {
		if d.RetryAfter == heijunka.InfDuration {
			return 0
		}
		// At least a moment, as Retry-After is at least 1 s: a KeyLimiter
		// of the caller's may deny with no RetryAfter. At most what
		// Retry-After says, MaxRetryAfter, so both name one moment.
		return min(max(d.RetryAfter, 1), MaxRetryAfter)
	}
	if li.closed || d.Remaining >= li.limit.Burst {
		return 0
	}
	// Remaining is how many requests fit into the burst at ResetAfter's
	// debt; one more fits once the debt drops by what is over a whole
	// number of intervals.
	return d.ResetAfter - time.Duration(li.limit.Burst-d.Remaining-1)*li.interval
}

// appendSFString appends s as a structured-field String (RFC 9651,
// section 3.3.3): quoted, with '"' and '\' escaped; bytes outside
// %x20-7E, which a String cannot hold, are dropped.
func appendSFString(b []byte, s string) []byte {
	b = append(b, '"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			b = append(b, '\\', c)
		case c >= 0x20 && c <= 0x7e:
			b = append(b, c)
		}
	}
	return append(b, '"')
}

// printableASCII returns s without its bytes outside %x20-7E, the ones
// appendSFString drops; s itself when it has none.
func printableASCII(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e {
			b := []byte(s[:i])
			for ; i < len(s); i++ {
				if c := s[i]; c >= 0x20 && c <= 0x7e {
					b = append(b, c)
				}
			}
			return string(b)
		}
	}
	return s
}

// validPolicyName reports whether name is a non-empty structured-field
// String without escapes: printable ASCII, no quote, no backslash.
func validPolicyName(name string) bool {
	if name == "" {
		return false
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}

// SetDecisionHeaders adds the limiter's decision d to the RateLimit-Policy
// and RateLimit fields of h, a list item under the policy name
// (without the bytes a structured-field String cannot hold, those outside
// printable ASCII, as PolicyField drops them; DefaultPolicy when that
// leaves it empty; when an item in those fields has that name already,
// the first of name-2, name-3, … that none has, as RateLimit does), and
// for a denied decision sets Retry-After, in whole seconds, rounded up,
// never 0. The items of other policies stay:
// a handler behind a RateLimit middleware that calls a limiter of its own
// tells the client of both limits, as stacked RateLimit middlewares do
// (give each its own policy name), and the Retry-After of a denial is no
// sooner than the effective window (t) of an item the RateLimit field
// already says is spent (r=0), at which that limit would refuse the
// retry. Call it once for each decision.
//
// It adds no field, and sets only Retry-After, for a decision under an
// Unlimited limit, or one a closed limit cannot make (see
// RateLimitField). For one whose store failed open it adds to
// RateLimit-Policy alone, as the RateLimit middleware does: the policy
// stands, but this request was not counted, so there is no RateLimit to
// tell.
func SetDecisionHeaders(h http.Header, name string, d heijunka.Decision) {
	setDecisionHeaders(h, name, d)
}

// setDecisionHeaders is SetDecisionHeaders; it returns the name the items
// went under.
func setDecisionHeaders(h http.Header, name string, d heijunka.Decision) string {
	// The name as the items hold it: two names that differ only in bytes
	// a String cannot hold are one name to a client.
	if name = printableASCII(name); name == "" {
		name = DefaultPolicy
	}
	name = suffixed(name, freePolicyName(h, name))
	var buf [96]byte
	li := limitOf(d.Limit)
	// A decision no closed limit makes is of a limiter that left Limit
	// zero: it gets Retry-After alone.
	if p := appendPolicy(buf[:0], name, d.Limit); len(p) > 0 && li.made(&d) {
		addField(h, headerRateLimitPolicy, string(p))
	}
	if v := li.appendRateLimit(buf[:0], name, &d); len(v) > 0 {
		addField(h, headerRateLimit, string(v))
	}
	if !d.Allowed {
		ra := d.RetryAfter
		if ra <= 0 {
			ra = time.Second
		}
		SetRetryAfter(h, max(ra, spentQuotaWindow(h[headerRateLimit])), 0)
	}
	return name
}

// freePolicyName returns 0 when no item of the RateLimit-Policy or
// RateLimit fields of h has name, and otherwise the first n of 2, 3, …
// for which none has name-n (suffixed): the draft's items name the policy
// they are of, and two of one name in a field leave the client unable to
// tell which limit a RateLimit item tells of. A RateLimit middleware
// around the one adding its items, or a handler's limiter behind one,
// under the same name (DefaultPolicy, when neither was named) put it
// there. It builds no name, so that the middleware whose suffixed name
// is the one it used before costs no allocation.
func freePolicyName(h http.Header, name string) int {
	p, r := h[headerRateLimitPolicy], h[headerRateLimit]
	if len(p)+len(r) == 0 {
		return 0
	}
	for n := 0; ; n++ {
		if n == 1 {
			n = 2
		}
		if !namesItem(p, name, n) && !namesItem(r, name, n) {
			return n
		}
	}
}

// suffixed returns name, or name-n for an n that is not 0.
func suffixed(name string, n int) string {
	if n == 0 {
		return name
	}
	return name + "-" + strconv.Itoa(n)
}

// isSuffixed reports whether s is suffixed(name, n).
func isSuffixed(s, name string, n int) bool {
	if n == 0 {
		return s == name
	}
	if len(s) < len(name)+2 || s[:len(name)] != name || s[len(name)] != '-' || s[len(name)+1] < '1' || s[len(name)+1] > '9' {
		return false
	}
	m, err := strconv.Atoi(s[len(name)+1:])
	return err == nil && m == n
}

// namesItem reports whether an item of the List of field lines vs is
// suffixed(name, n), printable ASCII: a String, its escapes read, or a
// Token, as a handler may have written a name. A line is read up to the
// first thing that cannot be parsed as a List of Items.
func namesItem(vs []string, name string, n int) bool {
	for _, v := range vs {
		i := 0
		for {
			i = skipOWS(v, i)
			if i == len(v) {
				break
			}
			j := skipBareItem(v, i)
			if j < 0 {
				break
			}
			if v[i] == '"' && isSuffixed(sfUnescape(v[i+1:j-1]), name, n) || v[i] != '"' && isSuffixed(strings.TrimRight(v[i:j], " \t"), name, n) {
				return true
			}
			i = j
			for i >= 0 && i < len(v) && v[i] == ';' { // the parameters
				i++
				for i < len(v) && v[i] != '=' && v[i] != ';' && v[i] != ',' {
					i++
				}
				if i < len(v) && v[i] == '=' {
					i = skipBareItem(v, i+1)
				}
			}
			if i < 0 { // a String without its closing quote
				break
			}
			i = skipOWS(v, i)
			if i == len(v) || v[i] != ',' {
				break
			}
			i++
		}
	}
	return false
}

// sfUnescape returns the content of a String whose quotes are cut off
// (s), its escapes read: '\"' is '"', '\\' is '\'. It allocates only for a
// String with an escape in it.
func sfUnescape(s string) string {
	i := strings.IndexByte(s, '\\')
	if i < 0 {
		return s
	}
	b := []byte(s[:i])
	for ; i < len(s); i++ {
		if s[i] == '\\' && i+1 < len(s) {
			i++
		}
		b = append(b, s[i])
	}
	return string(b)
}

// addField adds v to the field name of h, a list's item more. (A
// RateLimit middleware's values may share their array: append to one of
// length and capacity 1 copies it.)
func addField(h http.Header, name, v string) {
	h[name] = append(h[name], v)
}

// WriteDecisionHeaders is SetDecisionHeaders on w's header under
// DefaultPolicy: the one line a handler that calls a heijunka limiter
// itself needs before it answers. Behind a RateLimit middleware, whose
// Policy is DefaultPolicy too unless named, the items go under
// "default-2"; use SetDecisionHeaders with a name of the limiter's own to
// give them a name a client can be told of.
//
//	d, err := perCustomer.Allow(ctx, customerID)
//	if err != nil { // no decision (a full store): no fields to send
//		taihttp.WriteError(w, r, err)
//		return
//	}
//	taihttp.WriteDecisionHeaders(w, d)
//	if !d.Allowed { ... 429 ... }
func WriteDecisionHeaders(w http.ResponseWriter, d heijunka.Decision) {
	SetDecisionHeaders(w.Header(), DefaultPolicy, d)
}

// RetryAfterSeconds converts a retry hint into the delay-seconds of a
// Retry-After field: whole seconds, rounded up, at most MaxRetryAfter.
// It returns 0 for a hint that is not positive.
func RetryAfterSeconds(d time.Duration) int64 {
	if d <= 0 {
		return 0
	}
	return ceilSeconds(min(d, MaxRetryAfter))
}

// SetRetryAfter sets the Retry-After field to d in whole seconds, rounded
// up (see RetryAfterSeconds); when d is not positive, to fallback
// instead, and when that is not positive either it leaves the field unset.
func SetRetryAfter(h http.Header, d, fallback time.Duration) {
	if d <= 0 {
		d = fallback
	}
	if s := RetryAfterSeconds(d); s > 0 {
		h[headerRetryAfter] = []string{strconv.FormatInt(s, 10)}
	}
}

// ParseRetryAfter reads a Retry-After field value (RFC 9110, section
// 10.2.3): delay-seconds or an HTTP-date, which it measures from now (the
// two-digit year of an RFC 850 date is the one nearest now, no more than
// 50 years ahead, as RFC 9110 asks). It returns the delay, at most
// MaxRetryAfter (a date in the past gives 0), and false for an empty or
// malformed value. For a response's field, pass as now the response's
// Date, when it is a valid HTTP date (http.ParseTime): the server's
// date is meant from its own clock, which may be off the client's. The
// Transport does so.
func ParseRetryAfter(v string, now time.Time) (time.Duration, bool) {
	d, ok := parseRetryAfter(v, now)
	return min(d, MaxRetryAfter), ok
}

// parseRetryAfter is ParseRetryAfter without the bound of MaxRetryAfter:
// delay-seconds are read up to math.MaxUint32 (136 years), a date as far
// as a Duration reaches. The Transport's Retry weighs the whole hint
// against its own MaxRetryAfter.
func parseRetryAfter(v string, now time.Time) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	if v[0] >= '0' && v[0] <= '9' {
		var secs uint64
		for i := 0; i < len(v); i++ {
			c := v[i]
			if c < '0' || c > '9' {
				return 0, false
			}
			if secs < math.MaxUint32 {
				secs = secs*10 + uint64(c-'0')
			}
		}
		return time.Duration(min(secs, math.MaxUint32)) * time.Second, true
	}
	t, err := http.ParseTime(v)
	if err != nil {
		return 0, false
	}
	if strings.IndexByte(v, '-') >= 0 {
		// RFC 850, the one format with a dash, and a two-digit year.
		t = rfc850Century(t, now)
	}
	return max(t.Sub(now), 0), true
}

// responseDate returns the time from which the Retry-After date of a
// response with header h is measured: its Date, the time the server
// made it, when that is a valid HTTP date (RFC 9110, sections 6.6.1 and
// 10.2.3), so that a server whose clock is off the client's asks for the
// wait it means; now, the client's clock, otherwise.
func responseDate(h http.Header, now time.Time) time.Time {
	v := strings.TrimSpace(h.Get(headerDate))
	if v == "" {
		return now
	}
	t, err := http.ParseTime(v)
	if err != nil {
		return now
	}
	if strings.IndexByte(v, '-') >= 0 {
		t = rfc850Century(t, now)
	}
	return t
}

// rfc850Century returns the RFC 850 date t, whose two-digit year
// time.Parse put in 1969–2068, in the latest year with those digits that
// puts it no more than 50 years after now, as RFC 9110 (section 5.6.7)
// reads such a year: a minute before 2069, "01-Jan-69" is a minute away.
func rfc850Century(t, now time.Time) time.Time {
	cur := now.UTC().Year()
	in := func(y int) time.Time {
		return time.Date(y, t.Month(), t.Day(), t.Hour(), t.Minute(), t.Second(), t.Nanosecond(), t.Location())
	}
	y := cur - cur%100 + t.Year()%100
	limit := now.AddDate(50, 0, 0)
	switch {
	case in(y).After(limit):
		y -= 100
	case !in(y + 100).After(limit):
		y += 100
	}
	return in(y)
}

// ceilSeconds rounds d up to whole seconds.
func ceilSeconds(d time.Duration) int64 {
	s := int64(d / time.Second)
	if d%time.Second > 0 {
		s++
	}
	return s
}

// spentQuotaWindow returns the longest effective window (t) of the items
// of the RateLimit field lines vs whose available quota (r) is 0, at most
// MaxRetryAfter: the time before which a request would be refused under
// one of those policies. An item without t, and what cannot be parsed as a
// List of Items with Integer parameters (RFC 9651), are passed over; the
// fields are the server's own, but a handler may have set them.
func spentQuotaWindow(vs []string) time.Duration {
	var most int64
	for _, v := range vs {
		most = max(most, spentQuotaSeconds(v))
	}
	return time.Duration(min(most, int64(MaxRetryAfter/time.Second))) * time.Second
}

// spentQuotaSeconds is spentQuotaWindow of one field line, in seconds; it
// stops at the first thing it cannot parse.
func spentQuotaSeconds(v string) int64 {
	var most int64
	i := 0
	for {
		i = skipOWS(v, i)
		if i == len(v) {
			return most
		}
		// The bare item: a String (a policy name), or a Token.
		if i = skipBareItem(v, i); i < 0 {
			return most
		}
		r, t := int64(-1), int64(-1)
		for i < len(v) && v[i] == ';' {
			i++
			for i < len(v) && v[i] == ' ' {
				i++
			}
			k := i
			for i < len(v) && v[i] != '=' && v[i] != ';' && v[i] != ',' {
				i++
			}
			key := v[k:i]
			// A value that is not an Integer replaces one before it
			// under the same key, as the last parameter of a name wins.
			if key == "r" {
				r = -1
			} else if key == "t" {
				t = -1
			}
			if i == len(v) || v[i] != '=' {
				continue // a Boolean true parameter
			}
			i++
			n, j := parseSFInteger(v, i)
			switch {
			case j == i: // not an Integer: another parameter's value
				if j = skipBareItem(v, i); j < 0 {
					return most
				}
			case j < len(v) && v[j] != ';' && v[j] != ',' && v[j] != ' ' && v[j] != '\t':
				return most // a Decimal, or worse
			case key == "r":
				r = n
			case key == "t":
				t = n
			}
			i = j
		}
		if r == 0 && t > 0 {
			most = max(most, t)
		}
		i = skipOWS(v, i)
		if i == len(v) {
			return most
		}
		if v[i] != ',' {
			return most
		}
		i++
	}
}

// skipBareItem returns the index after the bare item at v[i:]: a String,
// with its escapes, or anything else up to the next ';' or ','; -1 for a
// String without its closing quote.
func skipBareItem(v string, i int) int {
	if i == len(v) || v[i] != '"' {
		for i < len(v) && v[i] != ';' && v[i] != ',' {
			i++
		}
		return i
	}
	for i++; i < len(v); i++ {
		switch v[i] {
		case '\\':
			i++
		case '"':
			return i + 1
		}
	}
	return -1
}

// parseSFInteger reads a structured-field Integer (an optional '-' and
// one to 15 digits) at v[i:] and returns it and the index after it; j == i
// when there is none.
func parseSFInteger(v string, i int) (n int64, j int) {
	j = i
	neg := j < len(v) && v[j] == '-'
	if neg {
		j++
	}
	d := j
	for j < len(v) && j-d < 15 && v[j] >= '0' && v[j] <= '9' {
		n = n*10 + int64(v[j]-'0')
		j++
	}
	if j == d || j < len(v) && v[j] >= '0' && v[j] <= '9' { // none, or longer than an Integer
		return 0, i
	}
	if neg {
		n = -n
	}
	return n, j
}

// skipOWS skips spaces and tabs at v[i:].
func skipOWS(v string, i int) int {
	for i < len(v) && (v[i] == ' ' || v[i] == '\t') {
		i++
	}
	return i
}
