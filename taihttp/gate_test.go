package taihttp_test

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/heijunka"
	"github.com/taipattern/taikit/jidoka"
	"github.com/taipattern/taikit/tai"
	"github.com/taipattern/taikit/taihttp"
)

func gate(t *testing.T, g tai.Gate, opts taihttp.GateOptions) taihttp.Middleware {
	t.Helper()
	mw, err := taihttp.Gate(g, opts)
	require.NoError(t, err)
	return mw
}

func TestGateLine(t *testing.T) {
	line, err := jidoka.NewLine(jidoka.LineOptions{Name: "payments", RetryAfter: 30 * time.Second})
	require.NoError(t, err)
	var got error
	h := gate(t, line, taihttp.GateOptions{OnError: func(_ *http.Request, err error) { got = err }})(ok)
	assert.Equal(t, http.StatusOK, serve(h, get("192.0.2.1:1")).Code)

	line.Stop("fraud model down (ticket 4411)")
	rec := serve(h, get("192.0.2.1:1"))
	assert.Equal(t, http.StatusServiceUnavailable, rec.Code)
	assert.Equal(t, "30", rec.Header().Get("Retry-After"), "the line's own hint")
	assert.Contains(t, rec.Body.String(), `"code":"line_stopped"`)
	assert.NotContains(t, rec.Body.String(), "fraud", "the stop's reason stays inside")
	assert.ErrorIs(t, got, jidoka.ErrLineStopped)

	line.Start()
	assert.Equal(t, http.StatusOK, serve(h, get("192.0.2.1:1")).Code)

	// A line without a hint: the options' RetryAfter, one second by default.
	bare, err := jidoka.NewLine(jidoka.LineOptions{})
	require.NoError(t, err)
	bare.Stop("maintenance")
	rec = serve(gate(t, bare, taihttp.GateOptions{})(ok), get("192.0.2.1:1"))
	assert.Equal(t, http.StatusServiceUnavailable, rec.Code)
	assert.Equal(t, "1", rec.Header().Get("Retry-After"), "a 503 always says when to come back")
	rec = serve(gate(t, bare, taihttp.GateOptions{RetryAfter: time.Minute, Errors: taihttp.PlainErrors})(ok), get("192.0.2.1:1"))
	assert.Equal(t, "60", rec.Header().Get("Retry-After"))
	assert.Equal(t, "the service is stopped; retry later\n", rec.Body.String())
}

func TestGateLimiter(t *testing.T) {
	k := keyed(t, heijunka.PerMinute(1), heijunka.KeyedOptions{Name: "per-client"})
	h := gate(t, k, taihttp.GateOptions{})(ok)
	assert.Equal(t, http.StatusOK, serve(h, get("192.0.2.1:1")).Code)
	rec := serve(h, get("192.0.2.1:1"))
	assert.Equal(t, http.StatusTooManyRequests, rec.Code)
	assert.Equal(t, "60", rec.Header().Get("Retry-After"))
	assert.Equal(t, `"per-client";q=1;w=60`, rec.Header().Get("RateLimit-Policy"), "named after the limiter")
	assert.Equal(t, `"per-client";r=0;t=60`, rec.Header().Get("RateLimit"))
	assert.Contains(t, rec.Body.String(), `"violated-policies":["per-client"]`)
	assert.Equal(t, http.StatusOK, serve(h, get("192.0.2.9:1")).Code, "keyed by client address")
}

type statusErr int

func (e statusErr) Error() string   { return "custom" }
func (e statusErr) HTTPStatus() int { return int(e) }

func TestGateOtherErrors(t *testing.T) {
	for _, tc := range []struct {
		err  error
		code int
	}{
		{errors.New("no"), http.StatusServiceUnavailable},
		{statusErr(http.StatusUnauthorized), http.StatusUnauthorized},
		{statusErr(http.StatusTeapot), http.StatusTeapot},
		{statusErr(200), http.StatusServiceUnavailable}, // not an error status: a refusal all the same
	} {
		g := tai.GateFunc(func(context.Context, string) error { return tc.err })
		rec := serve(gate(t, g, taihttp.GateOptions{})(ok), get("192.0.2.1:1"))
		assert.Equal(t, tc.code, rec.Code, "%v", tc.err)
		assert.NotContains(t, rec.Body.String(), "ok")
	}
	_, err := taihttp.Gate(nil, taihttp.GateOptions{})
	assert.ErrorContains(t, err, "taihttp.Gate: gate is nil")
	_, err = taihttp.Gate(tai.GateFunc(func(context.Context, string) error { return nil }), taihttp.GateOptions{RetryAfter: -1})
	assert.ErrorContains(t, err, "RetryAfter must not be negative")
}

// A limiter gate inside a RateLimit middleware: the 429 it answers adds
// its policy to the outer one's fields, as stacked RateLimit middlewares
// do, and the client is told of both limits.
func TestGateLimiterInsideRateLimit(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		perMin := rateLimit(t, keyed(t, heijunka.PerMinute(50)), taihttp.RateLimitOptions{Policy: "permin"})
		perHr := gate(t, keyed(t, heijunka.PerHour(1), heijunka.KeyedOptions{Name: "perhr"}), taihttp.GateOptions{})
		h := perMin(perHr(ok))
		require.Equal(t, http.StatusOK, serve(h, get("192.0.2.1:1")).Code)
		rec := serve(h, get("192.0.2.1:1"))
		require.Equal(t, http.StatusTooManyRequests, rec.Code)
		assert.Equal(t, []string{`"permin";q=50;w=60`, `"perhr";q=1;w=3600`}, rec.Header().Values("RateLimit-Policy"))
		assert.Equal(t, []string{`"permin";r=48;t=2`, `"perhr";r=0;t=3600`}, rec.Header().Values("RateLimit"))
		assert.Equal(t, "3600", rec.Header().Get("Retry-After"))
	})
}

// A gate that holds a nil pointer is refused when the middleware is made,
// as a nil one is, instead of panicking there.
func TestGateNilPointer(t *testing.T) {
	var line *jidoka.Line
	var k *heijunka.Keyed
	for name, g := range map[string]tai.Gate{"line": line, "keyed": k} {
		var mw taihttp.Middleware
		var err error
		require.NotPanics(t, func() { mw, err = taihttp.Gate(g, taihttp.GateOptions{}) }, name)
		assert.Nil(t, mw, name)
		assert.ErrorContains(t, err, "gate is nil", name)
	}
}

// A refusal behind a RateLimit middleware whose quota the request used up
// says to come back no sooner than that quota refills: the outer limit
// would turn away a retry at the inner hint. RateLimit said r=0;t=30 for
// the outer policy; Retry-After, which a client must follow first, says
// 30 too, not the line's 5 or the inner limit's 1 (the draft: Retry-After
// SHOULD NOT name a time before the end of the effective window).
func TestRetryAfterCoversAQuotaSpentOutside(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		line, err := jidoka.NewLine(jidoka.LineOptions{Name: "checkout", RetryAfter: 5 * time.Second})
		require.NoError(t, err)
		line.Stop("maintenance")
		perMin := rateLimit(t, keyed(t, heijunka.PerMinute(2)), taihttp.RateLimitOptions{Policy: "permin"})
		h := perMin(gate(t, line, taihttp.GateOptions{})(ok))

		rec := serve(h, get("192.0.2.1:1"))
		require.Equal(t, http.StatusServiceUnavailable, rec.Code)
		assert.Equal(t, `"permin";r=1;t=30`, rec.Header().Get("RateLimit"))
		assert.Equal(t, "5", rec.Header().Get("Retry-After"), "quota left outside: the line's hint")

		rec = serve(h, get("192.0.2.1:1"))
		require.Equal(t, http.StatusServiceUnavailable, rec.Code)
		assert.Equal(t, `"permin";r=0;t=30`, rec.Header().Get("RateLimit"))
		assert.Equal(t, "30", rec.Header().Get("Retry-After"))
		assert.Contains(t, rec.Body.String(), `"retry_after":30`)

		// An inner limit that refuses for a second, inside the spent outer one.
		perMin = rateLimit(t, keyed(t, heijunka.PerMinute(2)), taihttp.RateLimitOptions{Policy: "permin"})
		perSec := rateLimit(t, keyed(t, heijunka.PerSecond(1)), taihttp.RateLimitOptions{Policy: "persec"})
		h = perMin(perSec(ok))
		require.Equal(t, http.StatusOK, serve(h, get("192.0.2.1:1")).Code)
		rec = serve(h, get("192.0.2.1:1"))
		require.Equal(t, http.StatusTooManyRequests, rec.Code)
		assert.Equal(t, []string{`"permin";r=0;t=30`, `"persec";r=0;t=1`}, rec.Header().Values("RateLimit"))
		assert.Equal(t, "30", rec.Header().Get("Retry-After"))
		assert.Contains(t, rec.Body.String(), `"retry_after":30`)

		// A handler that writes the error itself, behind the spent limit.
		perMin = rateLimit(t, keyed(t, heijunka.PerMinute(1)), taihttp.RateLimitOptions{Policy: "permin"})
		h = perMin(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			taihttp.WriteError(w, r, jidoka.ErrOpen)
		}))
		rec = serve(h, get("192.0.2.1:1"))
		require.Equal(t, http.StatusServiceUnavailable, rec.Code)
		assert.Equal(t, `"permin";r=0;t=60`, rec.Header().Get("RateLimit"))
		assert.Equal(t, "60", rec.Header().Get("Retry-After"))
	})
}
