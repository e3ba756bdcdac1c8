package taihttp_test

import (
	"context"
	"math"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/heijunka"
	"github.com/taipattern/taikit/jidoka"
	"github.com/taipattern/taikit/taihttp"
)

var t0 = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)

func limiter(t *testing.T, l heijunka.Limit) *heijunka.Limiter {
	t.Helper()
	lim, err := heijunka.NewLimiter(l, heijunka.LimiterOptions{})
	require.NoError(t, err)
	return lim
}

// The window of a limit of n per second, minute or hour is that second,
// minute or hour, whatever n: the nanoseconds by which the limiter's
// interval, rounded to a whole nanosecond, makes the burst refill later
// do not add a second to it.
func TestPolicyFieldWindowOfARoundedInterval(t *testing.T) {
	for _, tc := range []struct {
		limit heijunka.Limit
		want  string
	}{
		{heijunka.PerSecond(6), `"p";q=6;w=1`},
		{heijunka.PerSecond(7), `"p";q=7;w=1`},
		{heijunka.PerMinute(9), `"p";q=9;w=60`},
		{heijunka.PerHour(7), `"p";q=7;w=3600`},
		{heijunka.Limit{Rate: 6, Burst: 12}, `"p";q=12;w=2`},
		{heijunka.Limit{Rate: 6, Burst: 13}, `"p";q=13;w=3`},
		{heijunka.Limit{Rate: 3e6, Burst: 1}, `"p";q=1;w=1`},
	} {
		assert.Equal(t, tc.want, taihttp.PolicyField("p", tc.limit), "%v", tc.limit)
	}
}

// The examples of draft-ietf-httpapi-ratelimit-headers (RateLimit-Policy
// and RateLimit Field Examples, and the examples of Appendix B), made from
// heijunka limits and decisions.
func TestPolicyFieldDraftExamples(t *testing.T) {
	for _, tc := range []struct {
		name  string
		limit heijunka.Limit
		want  string
	}{
		// "RateLimit-Policy: "default";q=100;w=10"
		{"default", heijunka.Limit{Rate: 10, Burst: 100}, `"default";q=100;w=10`},
		// "RateLimit-Policy: "permin";q=50;w=60,"perhr";q=1000;w=3600"
		{"permin", heijunka.PerMinute(50), `"permin";q=50;w=60`},
		{"perhr", heijunka.PerHour(1000), `"perhr";q=1000;w=3600`},
		// "RateLimit-Policy: "burst";q=100;w=60,"daily";q=1000;w=86400"
		{"burst", heijunka.PerMinute(100), `"burst";q=100;w=60`},
		{"daily", heijunka.Limit{Rate: 1000.0 / 86400, Burst: 1000}, `"daily";q=1000;w=86400`},
		// Appendix B: "basic";q=100;w=60, "dynamic";q=15;w=20
		{"basic", heijunka.PerMinute(100), `"basic";q=100;w=60`},
		{"dynamic", heijunka.Limit{Rate: 15.0 / 20, Burst: 15}, `"dynamic";q=15;w=20`},
		// Windows that are not whole seconds round up: w is at least 1.
		{"default", heijunka.PerSecond(10), `"default";q=10;w=1`},
		{"default", heijunka.Limit{Rate: 1000, Burst: 1}, `"default";q=1;w=1`},
		{"default", heijunka.Limit{Rate: 3, Burst: 10}, `"default";q=10;w=4`},
		// A closed limit has a quota of 0 and no window (w must be > 0).
		{"default", heijunka.Limit{}, `"default";q=0`},
		// No quota at all: nothing to advertise.
		{"default", heijunka.Unlimited(), ``},
		{"default", heijunka.Limit{Rate: -1, Burst: 1}, ``},
	} {
		got := taihttp.PolicyField(tc.name, tc.limit)
		assert.Equal(t, tc.want, got, "%s %v", tc.name, tc.limit)
		if got == "" {
			continue
		}
		items, err := parseSFList(got)
		require.NoError(t, err, got)
		require.Len(t, items, 1)
		assert.Equal(t, tc.name, items[0].Value, "the policy is a String")
		q, ok := items[0].Params["q"].(int64)
		require.True(t, ok, "q is an Integer: %s", got)
		assert.GreaterOrEqual(t, q, int64(0))
		if w, ok := items[0].Params["w"]; ok {
			assert.Greater(t, w.(int64), int64(0), "w is a positive Integer")
		}
	}
}

func TestRateLimitFieldDraftExamples(t *testing.T) {
	// "RateLimit: "default";r=50;t=30": 49 of a 100-request quota that
	// refills one a minute used at t0, one more 30 s later. 50 remain,
	// and the next one comes back in 30 s.
	lim := limiter(t, heijunka.Limit{Rate: 1.0 / 60, Burst: 100})
	require.True(t, lim.DecideN(t0, 49).Allowed)
	d := lim.DecideN(t0.Add(30*time.Second), 1)
	require.True(t, d.Allowed)
	assert.Equal(t, `"default";r=50;t=30`, taihttp.RateLimitField("default", d))

	// Appendix B, throttled: "Retry-After" 5 s later and
	// "RateLimit: "default";r=0;t=5" name the same moment.
	lim = limiter(t, heijunka.Every(5*time.Second))
	require.True(t, lim.DecideN(t0, 1).Allowed)
	d = lim.DecideN(t0, 1)
	require.False(t, d.Allowed)
	assert.Equal(t, `"default";r=0;t=5`, taihttp.RateLimitField("default", d))
	h := http.Header{}
	taihttp.SetDecisionHeaders(h, "", d)
	assert.Equal(t, "5", h.Get("Retry-After"))
	assert.Equal(t, `"default";r=0;t=5`, h.Get("RateLimit"))
	assert.Equal(t, `"default";q=1;w=5`, h.Get("RateLimit-Policy"))

	// A denial without a RetryAfter (a KeyLimiter of the caller's) says
	// t=1, as Retry-After says 1.
	d = heijunka.Decision{Limit: heijunka.Every(5 * time.Second)}
	h = http.Header{}
	taihttp.SetDecisionHeaders(h, "", d)
	assert.Equal(t, "1", h.Get("Retry-After"))
	assert.Equal(t, `"default";r=0;t=1`, h.Get("RateLimit"))

	// Appendix B, "basic";q=100;w=60 then "basic";r=60;t=58 after 40
	// requests in 2 s: with a GCRA the remaining quota has refilled by
	// 2 s / 0.6 s = 3 requests, and the next unit is 0.2 s away.
	lim = limiter(t, heijunka.PerMinute(100))
	require.True(t, lim.DecideN(t0, 39).Allowed)
	d = lim.DecideN(t0.Add(2*time.Second), 1)
	assert.Equal(t, `"basic";r=63;t=1`, taihttp.RateLimitField("basic", d))

	items, err := parseSFList(taihttp.RateLimitField("basic", d))
	require.NoError(t, err)
	assert.Equal(t, []string{"r", "t"}, items[0].Order)
}

func TestRateLimitFieldResetParameter(t *testing.T) {
	// One request a minute, burst 3: t is the time until one more request
	// fits, not until the whole burst is back.
	lim := limiter(t, heijunka.Limit{Rate: 1.0 / 60, Burst: 3})
	d := lim.DecideN(t0, 1)
	assert.Equal(t, `"p";r=2;t=60`, taihttp.RateLimitField("p", d))
	d = lim.DecideN(t0.Add(10*time.Second), 1)
	assert.Equal(t, `"p";r=1;t=50`, taihttp.RateLimitField("p", d), "the first refill is 50 s away")
	d = lim.DecideN(t0.Add(10*time.Second+500*time.Millisecond), 1)
	assert.Equal(t, `"p";r=0;t=50`, taihttp.RateLimitField("p", d), "49.5 s rounds up")
	d = lim.DecideN(t0.Add(11*time.Second), 1)
	require.False(t, d.Allowed)
	assert.Equal(t, 49*time.Second, d.RetryAfter)
	assert.Equal(t, `"p";r=0;t=49`, taihttp.RateLimitField("p", d))

	// A full bucket after a request of none: no t.
	lim = limiter(t, heijunka.PerMinute(3))
	assert.Equal(t, `"p";r=3`, taihttp.RateLimitField("p", lim.DecideN(t0, 0)))

	// A closed limit: nothing remains and nothing will.
	lim = limiter(t, heijunka.Limit{})
	d = lim.DecideN(t0, 1)
	assert.Equal(t, `"p";r=0`, taihttp.RateLimitField("p", d))
	h := http.Header{}
	taihttp.SetDecisionHeaders(h, "p", d)
	assert.Equal(t, "86400", h.Get("Retry-After"), "a request that can never pass is told to wait MaxRetryAfter")
	assert.Equal(t, `"p";q=0`, h.Get("RateLimit-Policy"))

	// Nothing was limited: no fields.
	assert.Empty(t, taihttp.RateLimitField("p", limiter(t, heijunka.Unlimited()).DecideN(t0, 1)))
	assert.Empty(t, taihttp.RateLimitField("p", heijunka.Decision{Allowed: true, Limit: heijunka.PerSecond(1), FailedOpen: true}))
	h = http.Header{}
	taihttp.SetDecisionHeaders(h, "p", heijunka.Decision{Allowed: true, FailedOpen: true, Limit: heijunka.PerSecond(1)})
	assert.Empty(t, h.Get("RateLimit"))
	assert.Empty(t, h.Get("Retry-After"))
}

func TestPolicyNameIsEscaped(t *testing.T) {
	got := taihttp.PolicyField("a\"b\\c\x01é d", heijunka.PerSecond(1))
	assert.Equal(t, `"a\"b\\c d";q=1;w=1`, got)
	items, err := parseSFList(got)
	require.NoError(t, err)
	assert.Equal(t, `a"b\c d`, items[0].Value)
}

// A name a String cannot hold as it is (a byte outside printable ASCII,
// which is dropped, or a quote or a backslash, which is escaped) names its
// items apart all the same: a second decision under it goes under name-2,
// as under any other name, not under the name of the first one's items.
func TestSetDecisionHeadersNamesAnEscapedPolicyApart(t *testing.T) {
	d := heijunka.Decision{Allowed: true, Limit: heijunka.PerMinute(10), Remaining: 9, ResetAfter: 6 * time.Second}
	for _, tc := range []struct{ name, first, second string }{
		{"límite", "lmite", "lmite-2"},
		{"per\tuser", "peruser", "peruser-2"},
		{`a"b`, `a"b`, `a"b-2`},
		{`a\b`, `a\b`, `a\b-2`},
		{"é", "default", "default-2"},
	} {
		h := http.Header{}
		taihttp.SetDecisionHeaders(h, tc.name, d)
		taihttp.SetDecisionHeaders(h, tc.name, d)
		for _, f := range []string{"RateLimit-Policy", "RateLimit"} {
			items, err := parseSFList(strings.Join(h.Values(f), ", "))
			require.NoError(t, err, "%s: %q", f, h.Values(f))
			require.Len(t, items, 2)
			assert.Equal(t, tc.first, items[0].Value, "%s of %q", f, tc.name)
			assert.Equal(t, tc.second, items[1].Value, "%s of %q", f, tc.name)
		}
	}
}

func TestWriteDecisionHeaders(t *testing.T) {
	lim := limiter(t, heijunka.PerMinute(1))
	rec := httptest.NewRecorder()
	taihttp.WriteDecisionHeaders(rec, lim.DecideN(t0, 1))
	assert.Equal(t, `"default";q=1;w=60`, rec.Header().Get("RateLimit-Policy"))
	assert.Equal(t, `"default";r=0;t=60`, rec.Header().Get("RateLimit"))
	assert.Empty(t, rec.Header().Get("Retry-After"), "allowed: no Retry-After")

	rec = httptest.NewRecorder()
	taihttp.WriteDecisionHeaders(rec, lim.DecideN(t0.Add(59*time.Second+time.Millisecond), 1))
	assert.Equal(t, "1", rec.Header().Get("Retry-After"), "999 ms rounds up to 1 s, never 0")
	assert.Equal(t, `"default";r=0;t=1`, rec.Header().Get("RateLimit"))
}

func TestRetryAfterSeconds(t *testing.T) {
	for _, tc := range []struct {
		d    time.Duration
		want int64
	}{
		{-time.Second, 0}, {0, 0}, {1, 1}, {time.Second, 1}, {time.Second + 1, 2},
		{90 * time.Second, 90}, {taihttp.MaxRetryAfter + time.Second, 86400}, {heijunka.InfDuration, 86400},
	} {
		assert.Equal(t, tc.want, taihttp.RetryAfterSeconds(tc.d), "%v", tc.d)
	}
	h := http.Header{}
	taihttp.SetRetryAfter(h, 0, 0)
	assert.Empty(t, h.Values("Retry-After"))
	taihttp.SetRetryAfter(h, 0, 3*time.Second)
	assert.Equal(t, "3", h.Get("Retry-After"), "the fallback when there is no hint")
	taihttp.SetRetryAfter(h, 1500*time.Millisecond, 3*time.Second)
	assert.Equal(t, "2", h.Get("Retry-After"))
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2019, 8, 5, 9, 27, 0, 0, time.UTC)
	for _, tc := range []struct {
		v    string
		want time.Duration
		ok   bool
	}{
		{"5", 5 * time.Second, true},
		{" 120 ", 2 * time.Minute, true},
		{"0", 0, true},
		{"Mon, 05 Aug 2019 09:27:05 GMT", 5 * time.Second, true}, // the draft's example
		{"Mon, 05 Aug 2019 09:26:00 GMT", 0, true},               // in the past
		{"Monday, 05-Aug-19 09:28:00 GMT", time.Minute, true},    // RFC 850
		{"Mon Aug  5 09:27:30 2019", 30 * time.Second, true},     // asctime
		{"99999999999999999999999", taihttp.MaxRetryAfter, true},
		{"", 0, false}, {"-1", 0, false}, {"1.5", 0, false}, {"5s", 0, false}, {"soon", 0, false},
	} {
		got, ok := taihttp.ParseRetryAfter(tc.v, now)
		assert.Equal(t, tc.ok, ok, "%q", tc.v)
		assert.Equal(t, tc.want, got, "%q", tc.v)
	}
}

// An RFC 850 date has a two-digit year, which RFC 9110 (section 5.6.7)
// reads as the year nearest now with those digits, no more than 50 years
// ahead: a minute before 2069, "01-Jan-69" is a minute away, not a
// century past (time.Parse puts 69 to 99 in the 1900s whenever it is).
func TestParseRetryAfterRFC850Century(t *testing.T) {
	for _, tc := range []struct {
		now  time.Time
		v    string
		want time.Duration
	}{
		{time.Date(2068, 12, 31, 23, 59, 0, 0, time.UTC), "Tuesday, 01-Jan-69 00:00:30 GMT", 90 * time.Second},
		{time.Date(2099, 12, 31, 23, 59, 0, 0, time.UTC), "Friday, 01-Jan-00 00:01:00 GMT", 2 * time.Minute},
		{time.Date(2026, 12, 6, 0, 0, 0, 0, time.UTC), "Sunday, 06-Dec-26 00:00:05 GMT", 5 * time.Second},
		{time.Date(2026, 12, 6, 0, 0, 0, 0, time.UTC), "Friday, 06-Dec-75 00:00:00 GMT", taihttp.MaxRetryAfter}, // 2075
		{time.Date(2026, 12, 6, 0, 0, 0, 0, time.UTC), "Monday, 06-Dec-77 00:00:00 GMT", 0},                     // 1977
		{time.Date(2026, 12, 6, 0, 0, 0, 0, time.UTC), "Sunday, 06-Dec-76 00:00:00 GMT", taihttp.MaxRetryAfter}, // 2076
		{time.Date(2026, 12, 6, 0, 0, 0, 0, time.UTC), "Monday, 07-Dec-76 00:00:00 GMT", 0},                     // 1976: 2076 is past 50 years
	} {
		got, ok := taihttp.ParseRetryAfter(tc.v, tc.now)
		assert.True(t, ok, "%q", tc.v)
		assert.Equal(t, tc.want, got, "%q at %v", tc.v, tc.now)
	}
}

func FuzzParseRetryAfter(f *testing.F) {
	for _, s := range []string{"5", "0", "Mon, 05 Aug 2019 09:27:05 GMT", "", "-1", "99999999999999999999", " 7 "} {
		f.Add(s)
	}
	now := time.Date(2019, 8, 5, 9, 27, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, v string) {
		d, ok := taihttp.ParseRetryAfter(v, now)
		if !ok {
			assert.Zero(t, d)
			return
		}
		assert.GreaterOrEqual(t, d, time.Duration(0))
		assert.LessOrEqual(t, d, taihttp.MaxRetryAfter)
	})
}

// A denial whose RetryAfter is longer than MaxRetryAfter (one request in
// 48 hours, say) names in t the moment Retry-After names: MaxRetryAfter.
func TestRateLimitFieldLongDenial(t *testing.T) {
	lim := limiter(t, heijunka.Every(48*time.Hour))
	require.True(t, lim.DecideN(t0, 1).Allowed)
	d := lim.DecideN(t0.Add(time.Hour), 1)
	require.False(t, d.Allowed)
	require.Equal(t, 47*time.Hour, d.RetryAfter)
	h := http.Header{}
	taihttp.SetDecisionHeaders(h, "p", d)
	assert.Equal(t, "86400", h.Get("Retry-After"))
	assert.Equal(t, `"p";r=0;t=86400`, h.Get("RateLimit"))
	assert.Equal(t, `"p";q=1;w=172800`, h.Get("RateLimit-Policy"))

	rec := serve(rateLimit(t, denyFor(47*time.Hour), taihttp.RateLimitOptions{})(ok), get("192.0.2.1:1"))
	assert.Equal(t, http.StatusTooManyRequests, rec.Code)
	assert.Equal(t, "86400", rec.Header().Get("Retry-After"))
	assert.Equal(t, `"default";r=0;t=86400`, rec.Header().Get("RateLimit"))
}

// denyFor is a KeyLimiter that denies every request, one a 48 hours, for
// the given time.
type denyFor time.Duration

func (d denyFor) Allow(context.Context, string) (heijunka.Decision, error) {
	return heijunka.Decision{Limit: heijunka.Every(48 * time.Hour), RetryAfter: time.Duration(d), ResetAfter: time.Duration(d)}, nil
}

// A structured-field Integer has at most 15 digits (RFC 9651, section
// 3.3.1): a quota or a remaining count past that is sent as the largest
// Integer, so that the fields still parse.
func TestFieldsIntegersFitAStructuredField(t *testing.T) {
	const most = int64(999_999_999_999_999)
	huge := heijunka.Limit{Rate: 1e9, Burst: 1e15} // a valid limit: ten years' refill at most
	require.NoError(t, huge.Validate())
	allowed := heijunka.Decision{Allowed: true, Limit: huge, Remaining: 1e15 - 1, ResetAfter: 2 * time.Nanosecond}
	// A KeyLimiter of the caller's may say anything remains, a key it
	// exempts from the limit, say.
	exempt := heijunka.Decision{Allowed: true, Limit: heijunka.PerSecond(10), Remaining: math.MaxInt}

	h := http.Header{}
	taihttp.SetDecisionHeaders(h, "big", allowed)
	for name, tc := range map[string]struct {
		field, param string
		want         int64
	}{
		"policy":    {taihttp.PolicyField("big", huge), "q", most},
		"header":    {h.Get("RateLimit-Policy"), "q", most},
		"remaining": {taihttp.RateLimitField("big", allowed), "r", most},
		"exempt":    {taihttp.RateLimitField("free", exempt), "r", most},
	} {
		items, err := parseSFList(tc.field)
		require.NoError(t, err, "%s: %s", name, tc.field)
		require.Len(t, items, 1, name)
		assert.Equal(t, tc.want, items[0].Params[tc.param], "%s: %s", name, tc.field)
	}

	rec := serve(rateLimit(t, decide(exempt), taihttp.RateLimitOptions{})(ok), get("192.0.2.1:1"))
	items, err := parseSFList(rec.Header().Get("RateLimit"))
	require.NoError(t, err, rec.Header().Get("RateLimit"))
	assert.Equal(t, most, items[0].Params["r"])
}

// decide is a KeyLimiter that answers every request with its decision.
type decide heijunka.Decision

func (d decide) Allow(context.Context, string) (heijunka.Decision, error) {
	return heijunka.Decision(d), nil
}

// A decision whose store failed open was not counted: it has no RateLimit
// field, yet the policy it was not counted under is still advertised, by
// SetDecisionHeaders as by the middleware.
func TestSetDecisionHeadersFailedOpen(t *testing.T) {
	d := heijunka.Decision{Allowed: true, FailedOpen: true, Limit: heijunka.PerSecond(1)}
	h := http.Header{}
	taihttp.SetDecisionHeaders(h, "p", d)
	assert.Equal(t, []string{`"p";q=1;w=1`}, h.Values("RateLimit-Policy"))
	assert.Empty(t, h.Values("RateLimit"))
	assert.Empty(t, h.Values("Retry-After"))

	rec := serve(rateLimit(t, decide(d), taihttp.RateLimitOptions{Policy: "p"})(ok), get("192.0.2.1:1"))
	assert.Equal(t, h.Values("RateLimit-Policy"), rec.Header().Values("RateLimit-Policy"))
	assert.Empty(t, rec.Header().Values("RateLimit"))
}

// The Retry-After of an error response is at least the effective window of
// every item the RateLimit field already on it says is spent (r=0), read as
// a structured-field List; whatever the field holds, it neither panics nor
// gives a Retry-After outside 1 s..MaxRetryAfter.
func FuzzRetryAfterOfASpentQuota(f *testing.F) {
	for _, s := range []string{
		`"permin";r=0;t=30`, `"permin";r=0;t=30, "perhr";r=5;t=3000`, `"a";r=1;t=9, "b";r=0;t=7`,
		`"a\";r=0;t=99";r=3;t=5`, `a;r=0;t=12;pk=:cHsdsRa894==:`, `"x";t=40;r=0`, `"x";r=0;t=1.5`,
		`"x";r=0;t=999999999999999`, `"x";r=0;t=9999999999999999`, `"x";r=-0;t=5`, `"x";r;t=5`,
		`"x";r=0;r="a";t=50`, `"x";r=0;t=50;t=2`, `,`, `"`, `"x";r=0;t=5,`, ``,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		rec := httptest.NewRecorder()
		rec.Header()["Ratelimit"] = []string{v}
		taihttp.WriteError(rec, httptest.NewRequest(http.MethodGet, "/", nil), jidoka.ErrOpen)
		got, err := strconv.ParseInt(rec.Header().Get("Retry-After"), 10, 64)
		require.NoError(t, err)
		require.GreaterOrEqual(t, got, int64(1))
		require.LessOrEqual(t, got, int64(taihttp.MaxRetryAfter/time.Second))
		items, err := parseSFList(v)
		if err != nil {
			return
		}
		want := int64(1)
		for _, it := range items {
			if r, t := it.Params["r"], it.Params["t"]; r == int64(0) {
				if t, ok := t.(int64); ok && t > 0 {
					want = max(want, min(t, int64(taihttp.MaxRetryAfter/time.Second)))
				}
			}
		}
		assert.Equal(t, want, got, "%q", v)
	})
}

// The items SetDecisionHeaders adds take a name no item of the fields
// already on the response has (a RateLimit middleware's around it, a
// handler's own), read as a structured-field List, whatever else those
// items hold: strings with commas or escapes in their parameters, tokens,
// byte sequences. Whatever the fields hold, it does not panic.
func FuzzSetDecisionHeadersNamesItsPolicyApart(f *testing.F) {
	for _, s := range []string{
		`"p";r=1;t=2`, `"p";q=1;w=60, "p-2";q=2;w=60`, `"x";qu="a, \"p\"";w=1, "p"`, `"a\"p";r=0, p;r=1`,
		`"q";pk=:cHsdsRa894==:, "p";r=0;t=5`, `"p`, `,"p"`, `"p" , "p-2" ,"p-3"`, `"p";a;b=?1, "p-2"`, ``,
		`"pp";r=1, "p-22";r=2`, `"p";x="unclosed`,
	} {
		f.Add(s)
	}
	d := heijunka.Decision{Allowed: true, Limit: heijunka.PerMinute(10), Remaining: 5, ResetAfter: time.Second}
	f.Fuzz(func(t *testing.T, v string) {
		for _, field := range []string{"RateLimit-Policy", "RateLimit"} {
			h := http.Header{}
			h.Set(field, v)
			taihttp.SetDecisionHeaders(h, "p", d)
			old, err := parseSFList(v)
			if err != nil {
				continue
			}
			taken := map[string]bool{}
			for _, it := range old {
				if s, ok := it.Value.(string); ok {
					taken[s] = true
				}
			}
			for _, f := range []string{"RateLimit-Policy", "RateLimit"} {
				items, err := parseSFList(strings.Join(h.Values(f), ", "))
				require.NoError(t, err, "%s: %q", f, h.Values(f))
				name := items[len(items)-1].Value.(string)
				assert.False(t, taken[name], "%s: %q is taken in %q", f, name, v)
				assert.Regexp(t, `^p(-[0-9]+)?$`, name)
			}
		}
	})
}
