package taihttp_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/heijunka"
	"github.com/taipattern/taikit/taihttp"
)

var ok = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "ok") })

func keyed(t *testing.T, l heijunka.Limit, opts ...heijunka.KeyedOptions) *heijunka.Keyed {
	t.Helper()
	k, err := heijunka.NewKeyed(l, opts...)
	require.NoError(t, err)
	return k
}

func rateLimit(t *testing.T, l taihttp.KeyLimiter, opts taihttp.RateLimitOptions) taihttp.Middleware {
	t.Helper()
	mw, err := taihttp.RateLimit(l, opts)
	require.NoError(t, err)
	return mw
}

// serve sends one request to h and returns the recorded response.
func serve(h http.Handler, r *http.Request) *httptest.ResponseRecorder {
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, r)
	return rec
}

func get(remote string) *http.Request {
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	r.RemoteAddr = remote
	return r
}

func TestRateLimitFields(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := rateLimit(t, keyed(t, heijunka.PerMinute(2)), taihttp.RateLimitOptions{})(ok)

		// Two requests a minute: 30 s apart at the sustained rate.
		for i, want := range []string{`"default";r=1;t=30`, `"default";r=0;t=30`} {
			rec := serve(h, get("192.0.2.1:1234"))
			assert.Equal(t, http.StatusOK, rec.Code, i)
			assert.Equal(t, "ok", rec.Body.String())
			assert.Equal(t, `"default";q=2;w=60`, rec.Header().Get("RateLimit-Policy"))
			assert.Equal(t, want, rec.Header().Get("RateLimit"))
			assert.Empty(t, rec.Header().Get("Retry-After"))
		}

		rec := serve(h, get("192.0.2.1:5678"))
		assert.Equal(t, http.StatusTooManyRequests, rec.Code, "same address, other port: same key")
		assert.Equal(t, "30", rec.Header().Get("Retry-After"))
		assert.Equal(t, `"default";r=0;t=30`, rec.Header().Get("RateLimit"))
		assert.Equal(t, `"default";q=2;w=60`, rec.Header().Get("RateLimit-Policy"))
		assert.Equal(t, "application/problem+json", rec.Header().Get("Content-Type"))
		var body map[string]any
		require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &body))
		assert.Equal(t, map[string]any{
			"type":              "https://iana.org/assignments/http-problem-types#quota-exceeded",
			"title":             "too many requests; retry later",
			"status":            float64(429),
			"detail":            "too many requests; retry later",
			"code":              "rate_limited",
			"retry_after":       float64(30),
			"violated-policies": []any{"default"},
		}, body)

		assert.Equal(t, http.StatusOK, serve(h, get("192.0.2.2:1234")).Code, "another client has its own limit")

		time.Sleep(29*time.Second + 500*time.Millisecond)
		rec = serve(h, get("192.0.2.1:1"))
		assert.Equal(t, http.StatusTooManyRequests, rec.Code)
		assert.Equal(t, "1", rec.Header().Get("Retry-After"), "half a second, rounded up")
		time.Sleep(500 * time.Millisecond)
		assert.Equal(t, http.StatusOK, serve(h, get("192.0.2.1:1")).Code)
	})
}

func TestRateLimitIPv6Network(t *testing.T) {
	// By default an IPv6 client is counted by its /64: a host that may
	// send from any address of its /64 does not get a fresh quota with
	// each one.
	h := rateLimit(t, keyed(t, heijunka.PerMinute(2)), taihttp.RateLimitOptions{})(ok)
	assert.Equal(t, http.StatusOK, serve(h, get("[2001:db8:1:2::1]:1234")).Code)
	assert.Equal(t, http.StatusOK, serve(h, get("[2001:db8:1:2::2]:1234")).Code)
	assert.Equal(t, http.StatusTooManyRequests, serve(h, get("[2001:db8:1:2:a:b:c:d]:1234")).Code, "the same /64")
	assert.Equal(t, http.StatusOK, serve(h, get("[2001:db8:1:3::1]:1234")).Code, "another /64 has its own limit")

	// RemoteIP counts each address.
	h = rateLimit(t, keyed(t, heijunka.PerMinute(1)), taihttp.RateLimitOptions{Key: taihttp.RemoteIP})(ok)
	assert.Equal(t, http.StatusOK, serve(h, get("[2001:db8:1:2::1]:1234")).Code)
	assert.Equal(t, http.StatusOK, serve(h, get("[2001:db8:1:2::2]:1234")).Code)
}

func TestRateLimitOptions(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		k := keyed(t, heijunka.PerMinute(1), heijunka.KeyedOptions{Name: "per-key"})
		var mu sync.Mutex
		var refused []error
		h := rateLimit(t, k, taihttp.RateLimitOptions{
			Key:                taihttp.Header("X-Api-Key"),
			Policy:             "per-key",
			HeadersWhenLimited: true,
			Errors:             taihttp.PlainErrors,
			OnError: func(r *http.Request, err error) {
				mu.Lock()
				defer mu.Unlock()
				refused = append(refused, err)
			},
		})(ok)
		req := func(key string) *http.Request {
			r := get("192.0.2.1:1")
			r.Header.Set("X-Api-Key", key)
			return r
		}
		rec := serve(h, req("a"))
		assert.Equal(t, http.StatusOK, rec.Code)
		assert.Empty(t, rec.Header().Get("RateLimit"), "HeadersWhenLimited: none on success")
		assert.Empty(t, rec.Header().Get("RateLimit-Policy"))
		assert.Equal(t, http.StatusOK, serve(h, req("b")).Code, "keyed by the header")

		rec = serve(h, req("a"))
		assert.Equal(t, http.StatusTooManyRequests, rec.Code)
		assert.Equal(t, "60", rec.Header().Get("Retry-After"))
		assert.Equal(t, `"per-key";r=0;t=60`, rec.Header().Get("RateLimit"))
		assert.Equal(t, `"per-key";q=1;w=60`, rec.Header().Get("RateLimit-Policy"))
		assert.Equal(t, "text/plain; charset=utf-8", rec.Header().Get("Content-Type"))
		assert.Equal(t, "too many requests; retry later\n", rec.Body.String())

		require.Len(t, refused, 1)
		var le *heijunka.LimitedError
		require.ErrorAs(t, refused[0], &le)
		assert.Equal(t, "per-key", le.Name)
		assert.Equal(t, time.Minute, le.RetryAfter())
	})
}

func TestRateLimitChangedLimit(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		k := keyed(t, heijunka.PerMinute(10))
		h := rateLimit(t, k, taihttp.RateLimitOptions{})(ok)
		assert.Equal(t, `"default";q=10;w=60`, serve(h, get("192.0.2.1:1")).Header().Get("RateLimit-Policy"))

		require.NoError(t, k.SetLimit(heijunka.Limit{}))
		rec := serve(h, get("192.0.2.1:1"))
		assert.Equal(t, http.StatusTooManyRequests, rec.Code)
		assert.Equal(t, `"default";q=0`, rec.Header().Get("RateLimit-Policy"), "the field follows the limit")
		assert.Equal(t, `"default";r=0`, rec.Header().Get("RateLimit"))
		assert.Equal(t, "86400", rec.Header().Get("Retry-After"), "never is a day")

		require.NoError(t, k.SetLimit(heijunka.Unlimited()))
		rec = serve(h, get("192.0.2.1:1"))
		assert.Equal(t, http.StatusOK, rec.Code)
		assert.Empty(t, rec.Header().Values("RateLimit-Policy"), "no quota, no fields")
		assert.Empty(t, rec.Header().Values("RateLimit"))
	})
}

func TestRateLimitWithoutDecision(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store, err := heijunka.NewMemoryStore(heijunka.MemoryStoreOptions{MaxKeys: 1, WhenFull: heijunka.RejectNew})
		require.NoError(t, err)
		var got error
		h := rateLimit(t, keyed(t, heijunka.PerHour(1), heijunka.KeyedOptions{Store: store}), taihttp.RateLimitOptions{
			RetryAfter: 7 * time.Second,
			OnError:    func(_ *http.Request, err error) { got = err },
		})(ok)
		assert.Equal(t, http.StatusOK, serve(h, get("192.0.2.1:1")).Code)
		time.Sleep(10 * time.Minute)
		rec := serve(h, get("192.0.2.2:1"))
		assert.Equal(t, http.StatusServiceUnavailable, rec.Code, "the store is full: no decision")
		assert.Equal(t, "3000", rec.Header().Get("Retry-After"), "the store's time until the key it holds is fresh, 50 min")
		assert.ErrorIs(t, got, heijunka.ErrStoreFull)
		assert.NotContains(t, rec.Body.String(), "store", "the error is not shown")
	})
}

// failing is a KeyLimiter of a caller's that has no decision and no time
// to retry after.
type failing struct{}

func (failing) Allow(context.Context, string) (heijunka.Decision, error) {
	return heijunka.Decision{}, errors.New("limiter out of reach")
}

func TestRateLimitWithoutDecisionOrHint(t *testing.T) {
	h := rateLimit(t, failing{}, taihttp.RateLimitOptions{RetryAfter: 7 * time.Second})(ok)
	rec := serve(h, get("192.0.2.2:1"))
	assert.Equal(t, http.StatusServiceUnavailable, rec.Code)
	assert.Equal(t, "7", rec.Header().Get("Retry-After"), "RateLimitOptions.RetryAfter")
}

// denyAll is a KeyLimiter of a caller's that denies with no RetryAfter.
type denyAll struct{}

func (denyAll) Allow(context.Context, string) (heijunka.Decision, error) {
	return heijunka.Decision{Limit: heijunka.PerMinute(1)}, nil
}

// A 429 without a hint says 1 s in Retry-After as in RateLimit, whatever
// RateLimitOptions.RetryAfter, which is for the 503s, says.
func TestRateLimitDenialWithoutAHint(t *testing.T) {
	h := rateLimit(t, denyAll{}, taihttp.RateLimitOptions{RetryAfter: 30 * time.Second})(ok)
	rec := serve(h, get("192.0.2.1:1"))
	assert.Equal(t, http.StatusTooManyRequests, rec.Code)
	assert.Equal(t, `"default";r=0;t=1`, rec.Header().Get("RateLimit"))
	assert.Equal(t, "1", rec.Header().Get("Retry-After"))
	var body struct {
		RetryAfter int64 `json:"retry_after"`
	}
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &body))
	assert.EqualValues(t, 1, body.RetryAfter, "the problem document says so too")
}

func TestRateLimitShared(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := rateLimit(t, taihttp.SharedLimiter(limiter(t, heijunka.PerSecond(1))), taihttp.RateLimitOptions{})(ok)
		assert.Equal(t, http.StatusOK, serve(h, get("192.0.2.1:1")).Code)
		rec := serve(h, get("192.0.2.2:1"))
		assert.Equal(t, http.StatusTooManyRequests, rec.Code, "one bucket for every client")
		assert.Equal(t, "1", rec.Header().Get("Retry-After"))
	})
}

// OnError's *heijunka.LimitedError names the limiter, as it does for a
// *heijunka.Keyed and as the Limiter's own Admit names it, when the
// limiter is one heijunka.Limiter made a KeyLimiter by SharedLimiter.
func TestRateLimitSharedNamesTheLimiter(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		lim, err := heijunka.NewLimiter(heijunka.PerSecond(1), heijunka.LimiterOptions{Name: "whole-server"})
		require.NoError(t, err)
		var got error
		h := rateLimit(t, taihttp.SharedLimiter(lim), taihttp.RateLimitOptions{
			OnError: func(_ *http.Request, err error) { got = err },
		})(ok)
		assert.Equal(t, http.StatusOK, serve(h, get("192.0.2.1:1")).Code)
		assert.Equal(t, http.StatusTooManyRequests, serve(h, get("192.0.2.1:1")).Code)
		var le *heijunka.LimitedError
		require.ErrorAs(t, got, &le)
		assert.Equal(t, "whole-server", le.Name)
		assert.Contains(t, got.Error(), `"whole-server"`)
	})
}

func TestRateLimitValidation(t *testing.T) {
	k := keyed(t, heijunka.PerSecond(1))
	for _, tc := range []struct {
		l    taihttp.KeyLimiter
		opts taihttp.RateLimitOptions
		want string
	}{
		{nil, taihttp.RateLimitOptions{}, "limiter is nil"},
		{k, taihttp.RateLimitOptions{Policy: `a"b`}, `Policy "a\"b" must be printable ASCII`},
		{k, taihttp.RateLimitOptions{Policy: "é"}, "must be printable ASCII"},
		{k, taihttp.RateLimitOptions{RetryAfter: -time.Second}, "RetryAfter must not be negative, got -1s"},
	} {
		mw, err := taihttp.RateLimit(tc.l, tc.opts)
		assert.Nil(t, mw)
		assert.ErrorContains(t, err, tc.want)
	}
}

// Against a real server and client: the fields cross the wire as the
// draft writes them, the 429 reaches the client, and the handler does
// not see refused requests.
func TestRateLimitOverHTTP(t *testing.T) {
	var mu sync.Mutex
	hits := 0
	srv := httptest.NewServer(rateLimit(t, keyed(t, heijunka.PerHour(3)), taihttp.RateLimitOptions{})(
		http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			hits++
			mu.Unlock()
			_, _ = io.WriteString(w, "served")
		})))
	defer srv.Close()
	codes := map[int]int{}
	for i := range 5 {
		resp, err := srv.Client().Get(srv.URL)
		require.NoError(t, err)
		body, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		require.NoError(t, resp.Body.Close())
		codes[resp.StatusCode]++

		items, err := parseSFList(resp.Header.Get("RateLimit-Policy"))
		require.NoError(t, err)
		assert.Equal(t, "default", items[0].Value)
		assert.Equal(t, map[string]any{"q": int64(3), "w": int64(3600)}, items[0].Params)
		items, err = parseSFList(resp.Header.Get("RateLimit"))
		require.NoError(t, err, resp.Header.Get("RateLimit"))
		assert.Equal(t, int64(max(2-i, 0)), items[0].Params["r"])
		reset := items[0].Params["t"].(int64)
		assert.True(t, reset > 1190 && reset <= 1200, "a request's worth refills in 20 minutes: t=%d", reset)

		if i < 3 {
			assert.Equal(t, "served", string(body))
			continue
		}
		assert.Equal(t, http.StatusTooManyRequests, resp.StatusCode)
		ra, err := strconv.Atoi(resp.Header.Get("Retry-After"))
		require.NoError(t, err)
		assert.Equal(t, int(reset), ra, "Retry-After and t name the same moment")
		assert.True(t, strings.Contains(string(body), `"rate_limited"`), string(body))
	}
	assert.Equal(t, map[int]int{200: 3, 429: 2}, codes)
	mu.Lock()
	assert.Equal(t, 3, hits, "refused requests never reach the handler")
	mu.Unlock()
}

type failingLimiter struct{}

func (failingLimiter) Allow(context.Context, string) (heijunka.Decision, error) {
	return heijunka.Decision{}, errors.New("redis 10.0.0.7:6379: connection refused")
}

func TestRateLimitHidesLimiterErrors(t *testing.T) {
	rec := serve(rateLimit(t, failingLimiter{}, taihttp.RateLimitOptions{})(ok), get("192.0.2.1:1"))
	assert.Equal(t, http.StatusServiceUnavailable, rec.Code)
	assert.Equal(t, "1", rec.Header().Get("Retry-After"))
	assert.NotContains(t, rec.Body.String(), "10.0.0.7")
	assert.Contains(t, rec.Body.String(), `"code":"unavailable"`)
}

func TestRateLimitStacked(t *testing.T) {
	// Two limits on one route, as the draft's example has them
	// ("permin";q=50;w=60,"perhr";q=1000;w=3600): each middleware adds
	// its policy to the fields, and the client is told of both.
	synctest.Test(t, func(t *testing.T) {
		perMin := rateLimit(t, keyed(t, heijunka.PerMinute(50)), taihttp.RateLimitOptions{Policy: "permin"})
		perHr := rateLimit(t, keyed(t, heijunka.PerHour(1000)), taihttp.RateLimitOptions{Policy: "perhr"})
		h := perMin(perHr(ok))
		rec := serve(h, get("192.0.2.1:1"))
		require.Equal(t, http.StatusOK, rec.Code)
		assert.Equal(t, []string{`"permin";q=50;w=60`, `"perhr";q=1000;w=3600`}, rec.Header().Values("RateLimit-Policy"))
		assert.Equal(t, []string{`"permin";r=49;t=2`, `"perhr";r=999;t=4`}, rec.Header().Values("RateLimit"))
		for _, f := range []string{"RateLimit-Policy", "RateLimit"} {
			items, err := parseSFList(strings.Join(rec.Header().Values(f), ", "))
			require.NoError(t, err)
			require.Len(t, items, 2)
			assert.Equal(t, "permin", items[0].Value)
			assert.Equal(t, "perhr", items[1].Value)
		}

		// The same middlewares serve the next request afresh: a shared
		// field value is not grown by the one before.
		rec = serve(h, get("192.0.2.1:1"))
		assert.Equal(t, []string{`"permin";q=50;w=60`, `"perhr";q=1000;w=3600`}, rec.Header().Values("RateLimit-Policy"))
	})
}

// policyNames returns the names of the items of field f of h, in order.
func policyNames(t *testing.T, h http.Header, f string) []string {
	t.Helper()
	items, err := parseSFList(strings.Join(h.Values(f), ", "))
	require.NoError(t, err, f)
	var names []string
	for _, it := range items {
		names = append(names, it.Value.(string))
	}
	return names
}

// Two limits on one route, neither given a Policy: the inner one's items
// do not take the name of the outer one's, which would make two policies
// "default" in one field, and a RateLimit item no client could pair with
// its policy. The outer keeps "default", the inner is "default-2", in both
// fields and in the 429's violated-policies.
func TestRateLimitStackedWithoutNames(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		outer := rateLimit(t, keyed(t, heijunka.PerMinute(50)), taihttp.RateLimitOptions{})
		inner := rateLimit(t, keyed(t, heijunka.PerHour(2)), taihttp.RateLimitOptions{})
		h := outer(inner(ok))
		for range 2 {
			rec := serve(h, get("192.0.2.1:1"))
			require.Equal(t, http.StatusOK, rec.Code)
			assert.Equal(t, []string{`"default";q=50;w=60`, `"default-2";q=2;w=3600`}, rec.Header().Values("RateLimit-Policy"))
			assert.Equal(t, []string{"default", "default-2"}, policyNames(t, rec.Header(), "RateLimit"))
		}
		rec := serve(h, get("192.0.2.1:1"))
		require.Equal(t, http.StatusTooManyRequests, rec.Code)
		assert.Equal(t, []string{`"default";q=50;w=60`, `"default-2";q=2;w=3600`}, rec.Header().Values("RateLimit-Policy"))
		assert.Equal(t, []string{`"default";r=47;t=2`, `"default-2";r=0;t=1800`}, rec.Header().Values("RateLimit"))
		var body struct {
			Violated []string `json:"violated-policies"`
		}
		require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &body))
		assert.Equal(t, []string{"default-2"}, body.Violated)

		// Three deep, and a name of the user's taken by the one outside:
		// each takes the first name of the sequence not taken yet.
		h = outer(inner(rateLimit(t, keyed(t, heijunka.PerMinute(9)), taihttp.RateLimitOptions{})(ok)))
		named := rateLimit(t, keyed(t, heijunka.PerMinute(8)), taihttp.RateLimitOptions{Policy: "default-2"})
		h = named(h)
		rec = serve(h, get("192.0.2.2:1"))
		require.Equal(t, http.StatusOK, rec.Code)
		want := []string{"default-2", "default", "default-3", "default-4"}
		assert.Equal(t, want, policyNames(t, rec.Header(), "RateLimit-Policy"))
		assert.Equal(t, want, policyNames(t, rec.Header(), "RateLimit"))
	})
}

// A limiter that holds a nil pointer (a constructor's error not checked)
// is refused when the middleware is made, as a nil one is: it neither
// panics there nor on every request later.
func TestRateLimitNilPointerLimiter(t *testing.T) {
	var k *heijunka.Keyed
	var l *heijunka.Limiter
	for name, lim := range map[string]taihttp.KeyLimiter{
		"keyed":  k,
		"shared": taihttp.SharedLimiter(l),
	} {
		var mw taihttp.Middleware
		var err error
		require.NotPanics(t, func() { mw, err = taihttp.RateLimit(lim, taihttp.RateLimitOptions{}) }, name)
		assert.Nil(t, mw, name)
		assert.ErrorContains(t, err, "limiter is nil", name)
	}
}

// A KeyLimiter of the caller's that fills in only Allowed (one wrapping
// an x/time/rate limiter, say) leaves Limit zero, which is a closed
// limit: no quota at all. The fields would tell the client its quota is
// 0 and nothing remains, on every response that passed. A decision a
// closed limit cannot make (an allowed one, a denial that ends) says
// nothing of a quota, and the middleware sends no fields for it.
func TestRateLimitDecisionWithoutALimit(t *testing.T) {
	allowed := heijunka.Decision{Allowed: true}
	denied := heijunka.Decision{}
	h := rateLimit(t, decide(allowed), taihttp.RateLimitOptions{})(ok)
	rec := serve(h, get("192.0.2.1:1"))
	assert.Equal(t, http.StatusOK, rec.Code)
	assert.Empty(t, rec.Header().Values("RateLimit-Policy"), "no quota is known, not a quota of 0")
	assert.Empty(t, rec.Header().Values("RateLimit"), "a request passed: not r=0")

	h = rateLimit(t, decide(denied), taihttp.RateLimitOptions{})(ok)
	rec = serve(h, get("192.0.2.1:1"))
	assert.Equal(t, http.StatusTooManyRequests, rec.Code)
	assert.Equal(t, "1", rec.Header().Get("Retry-After"))
	assert.Empty(t, rec.Header().Values("RateLimit-Policy"), "no quota is known, not a quota of 0")
	assert.Empty(t, rec.Header().Values("RateLimit"))

	for _, d := range []heijunka.Decision{allowed, denied} {
		hdr := http.Header{}
		taihttp.SetDecisionHeaders(hdr, "p", d)
		assert.Empty(t, hdr.Values("RateLimit-Policy"), "%+v", d)
		assert.Empty(t, hdr.Values("RateLimit"), "%+v", d)
		assert.Empty(t, taihttp.RateLimitField("p", d), "%+v", d)
	}

	// A closed limit's own denial is told as it is: a quota of 0 that
	// never refills.
	closed := heijunka.Decision{RetryAfter: heijunka.InfDuration}
	rec = serve(rateLimit(t, decide(closed), taihttp.RateLimitOptions{})(ok), get("192.0.2.1:1"))
	assert.Equal(t, `"default";q=0`, rec.Header().Get("RateLimit-Policy"))
	assert.Equal(t, `"default";r=0`, rec.Header().Get("RateLimit"))
	assert.Equal(t, "86400", rec.Header().Get("Retry-After"))
}

// A handler behind a RateLimit middleware that calls a limiter of its own
// and sets its fields with SetDecisionHeaders or WriteDecisionHeaders adds
// its policy to the fields the middleware set: the client is told of both
// limits, and a refusal, whether the handler writes it with http.Error or
// WriteError, says to come back no sooner than the outer quota the request
// spent refills. The handler's fields replaced the middleware's, and its
// Retry-After was its own limiter's, at which the outer limit refused the
// retry.
func TestDecisionHeadersBehindRateLimit(t *testing.T) {
	for _, tc := range []struct {
		name        string
		outer       string // the middleware's Policy
		inner       string // the handler's policy name; "" for WriteDecisionHeaders
		writeError  bool
		wantPolicy  []string
		wantLimited []string
	}{
		{"SetDecisionHeaders and http.Error", "perip", "percustomer", false,
			[]string{`"perip";q=1;w=60`, `"percustomer";q=1;w=1`},
			[]string{`"perip";r=0;t=60`, `"percustomer";r=0;t=1`}},
		{"SetDecisionHeaders and WriteError", "perip", "percustomer", true,
			[]string{`"perip";q=1;w=60`, `"percustomer";q=1;w=1`},
			[]string{`"perip";r=0;t=60`, `"percustomer";r=0;t=1`}},
		// Both under DefaultPolicy: the handler's items take the next
		// free name rather than make two policies "default" in a field.
		{"WriteDecisionHeaders, both default", "", "", true,
			[]string{`"default";q=1;w=60`, `"default-2";q=1;w=1`},
			[]string{`"default";r=0;t=60`, `"default-2";r=0;t=1`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				perCustomer := keyed(t, heijunka.PerSecond(1))
				_, err := perCustomer.Allow(context.Background(), "c1") // the customer's quota is spent
				require.NoError(t, err)
				h := rateLimit(t, keyed(t, heijunka.PerMinute(1)), taihttp.RateLimitOptions{Policy: tc.outer})(
					http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
						d, err := perCustomer.Allow(r.Context(), "c1")
						require.NoError(t, err)
						if tc.inner == "" {
							taihttp.WriteDecisionHeaders(w, d)
						} else {
							taihttp.SetDecisionHeaders(w.Header(), tc.inner, d)
						}
						require.False(t, d.Allowed)
						if tc.writeError {
							taihttp.WriteError(w, r, &heijunka.LimitedError{Decision: d})
						} else {
							http.Error(w, "slow down", http.StatusTooManyRequests)
						}
					}))
				rec := serve(h, get("192.0.2.1:1"))
				require.Equal(t, http.StatusTooManyRequests, rec.Code)
				assert.Equal(t, tc.wantPolicy, rec.Header().Values("RateLimit-Policy"))
				assert.Equal(t, tc.wantLimited, rec.Header().Values("RateLimit"))
				assert.Equal(t, "60", rec.Header().Get("Retry-After"), "the outer quota refills in a minute")
			})
		})
	}
}

// decisions is a KeyLimiter that gives its decisions in turn.
type decisions struct {
	mu sync.Mutex
	ds []heijunka.Decision
}

func (s *decisions) Allow(context.Context, string) (heijunka.Decision, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d := s.ds[0]
	s.ds = s.ds[1:]
	return d, nil
}

// The middleware keeps the RateLimit fields it made, to send them again
// without formatting them: every response still carries the field of its
// own decision, also when decisions whose fields are kept in one place
// (a remaining count 256 apart) alternate, and when a response's field is
// added to by a handler inside.
func TestRateLimitFieldsKeptAreEachResponsesOwn(t *testing.T) {
	limit := heijunka.Limit{Rate: 1, Burst: 1000}
	var ds []heijunka.Decision
	for _, r := range []int{999, 743, 999, 487, 743, 231, 999, 0, 256, 512, 0} {
		ds = append(ds, heijunka.Decision{Allowed: true, Limit: limit, Remaining: r,
			ResetAfter: time.Duration(limit.Burst-r) * time.Second})
	}
	for _, ra := range []time.Duration{time.Second, 257 * time.Second, time.Second, 2 * time.Second} {
		ds = append(ds, heijunka.Decision{Limit: limit, RetryAfter: ra, ResetAfter: ra + 999*time.Second})
	}
	want := make([]string, len(ds))
	for i, d := range ds {
		want[i] = taihttp.RateLimitField(taihttp.DefaultPolicy, d)
		require.NotEmpty(t, want[i])
	}
	inner := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Has("add") {
			w.Header().Add("RateLimit", `"inner";r=1`)
		}
	})
	h := rateLimit(t, &decisions{ds: ds}, taihttp.RateLimitOptions{})(inner)
	for i := range ds {
		r := get("192.0.2.1:1")
		add := i%3 == 0 && ds[i].Allowed // a denial is not passed on
		if add {
			r = httptest.NewRequest(http.MethodGet, "/?add", nil)
		}
		rec := serve(h, r)
		got := rec.Header().Values("RateLimit")
		require.NotEmpty(t, got, "response %d", i)
		assert.Equal(t, want[i], got[0], "response %d", i)
		if add {
			assert.Equal(t, []string{want[i], `"inner";r=1`}, got, "response %d", i)
		} else {
			assert.Len(t, got, 1, "response %d: a field added to before", i)
		}
	}
}
