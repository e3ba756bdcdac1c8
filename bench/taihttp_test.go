package bench

import (
	"context"
	"io"
	"maps"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/time/rate"

	"github.com/taipattern/taikit/heijunka"
	"github.com/taipattern/taikit/jidoka"
	"github.com/taipattern/taikit/taihttp"
)

// benchWriter is a ResponseWriter that keeps nothing: a header map emptied
// for every request, so the benchmarks measure the middleware, not a
// recorder.
type benchWriter struct {
	h    http.Header
	code int
}

func (w *benchWriter) Header() http.Header         { return w.h }
func (w *benchWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w *benchWriter) WriteHeader(code int)        { w.code = code }

func (w *benchWriter) reset() {
	clear(w.h)
	w.code = 0
}

// clientAddrs returns 100,000 client addresses. A benchmark sets one of
// them on its request before each call, as a server has a fresh request,
// in cache, for every call.
func clientAddrs() []string {
	addrs := make([]string, heijunkaKeys)
	for i := range addrs {
		addrs[i] = "10." + strconv.Itoa(i>>16) + "." + strconv.Itoa(i>>8&255) + "." + strconv.Itoa(i&255) + ":40000"
	}
	return addrs
}

var noop = http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})

// mapLimiter is the per-key limiter people write by hand: a mutex-guarded
// map of x/time/rate limiters, keyed by client address, answering 429 with
// a Retry-After of one second.
type mapLimiter struct {
	mu sync.Mutex
	m  map[string]*rate.Limiter
	r  rate.Limit
	b  int
}

func (ml *mapLimiter) limiter(r *http.Request) *rate.Limiter {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	ml.mu.Lock()
	defer ml.mu.Unlock()
	l, ok := ml.m[host]
	if !ok {
		l = rate.NewLimiter(ml.r, ml.b)
		ml.m[host] = l
	}
	return l
}

func (ml *mapLimiter) middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !ml.limiter(r).Allow() {
			w.Header().Set("Retry-After", "1")
			http.Error(w, "too many requests", http.StatusTooManyRequests)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// withFields is the same middleware setting the fields taihttp sets on
// every response, written lean: the canonical keys assigned directly,
// RateLimit-Policy's value (which does not change) made once and shared,
// RateLimit's appended into a buffer on the stack — two allocations a
// request. Written as it commonly is, with h.Set and strings joined by +,
// it made seven allocations a request and took about twice as long.
// taihttp goes further: it keeps the RateLimit values it formatted and
// sends them again, with no allocation.
func (ml *mapLimiter) withFields(next http.Handler) http.Handler {
	window := int64(math.Ceil(float64(ml.b) / float64(ml.r)))
	policy := []string{`"default";q=` + strconv.Itoa(ml.b) + ";w=" + strconv.FormatInt(window, 10)}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		l := ml.limiter(r)
		now := time.Now()
		ok := l.AllowN(now, 1)
		tokens := l.TokensAt(now)
		h := w.Header()
		h["Ratelimit-Policy"] = policy
		var buf [64]byte
		field := append(buf[:0], `"default";r=`...)
		field = strconv.AppendInt(field, int64(max(int(tokens), 0)), 10)
		if missing := 1 - (tokens - math.Floor(tokens)); tokens < float64(ml.b) {
			field = append(field, ";t="...)
			field = strconv.AppendInt(field, int64(math.Ceil(missing/float64(ml.r))), 10)
		}
		h["Ratelimit"] = []string{string(field)}
		if !ok {
			h.Set("Retry-After", "1")
			http.Error(w, "too many requests", http.StatusTooManyRequests)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// rateLimitHandlers are the middleware compared, over 100,000 client
// addresses, each admitted for the whole benchmark.
func rateLimitHandlers(b testing.TB) map[string]http.Handler {
	hs := map[string]http.Handler{}
	for _, name := range []string{"taihttp-ratelimit", "taihttp-ratelimit-headers-when-limited"} {
		k, err := heijunka.NewKeyed(heijunkaKeyedLimit)
		if err != nil {
			b.Fatal(err)
		}
		mw, err := taihttp.RateLimit(k, taihttp.RateLimitOptions{HeadersWhenLimited: strings.HasSuffix(name, "limited")})
		if err != nil {
			b.Fatal(err)
		}
		hs[name] = mw(noop)
	}
	ml := &mapLimiter{m: map[string]*rate.Limiter{}, r: rate.Limit(heijunkaKeyedLimit.Rate), b: heijunkaKeyedLimit.Burst}
	hs["mutex-map-x-time-rate"] = ml.middleware(noop)
	ml2 := &mapLimiter{m: map[string]*rate.Limiter{}, r: rate.Limit(heijunkaKeyedLimit.Rate), b: heijunkaKeyedLimit.Burst}
	hs["mutex-map-x-time-rate-fields"] = ml2.withFields(noop)
	return hs
}

// rateLimitOrder runs each middleware beside its hand-written peer:
// taihttp with the fields on every response against the map that formats
// the same fields, then taihttp with the fields only on a 429 against the
// bare map (TestTaihttpRateLimitPeersAgree checks that each pair answers
// alike).
var rateLimitOrder = []string{
	"taihttp-ratelimit", "mutex-map-x-time-rate-fields",
	"taihttp-ratelimit-headers-when-limited", "mutex-map-x-time-rate",
}

// TestTaihttpRateLimitPeersAgree keeps the middleware comparison like for
// like: each middleware and its hand-written peer admit the same requests
// and write the same header fields, so neither side of a pair is timed
// doing less.
func TestTaihttpRateLimitPeersAgree(t *testing.T) {
	hs := rateLimitHandlers(t)
	answer := func(name string) []http.Header {
		var got []http.Header
		for _, addr := range []string{"10.0.0.1:40000", "10.0.0.1:40001", "10.0.0.2:40000"} {
			w := &benchWriter{h: http.Header{}}
			r := httptest.NewRequest(http.MethodGet, "/", nil)
			r.RemoteAddr = addr
			hs[name].ServeHTTP(w, r)
			if w.code != 0 {
				t.Fatalf("%s from %s: status %d, want the handler's", name, addr, w.code)
			}
			got = append(got, w.h)
		}
		return got
	}
	for i := 0; i < len(rateLimitOrder); i += 2 {
		mw, peer := rateLimitOrder[i], rateLimitOrder[i+1]
		got, want := answer(mw), answer(peer)
		for j := range want {
			if !maps.EqualFunc(got[j], want[j], slices.Equal) {
				t.Errorf("request %d: %s wrote %v, %s wrote %v", j, mw, got[j], peer, want[j])
			}
		}
	}
}

// learnAddrs sends h one request from each address, before the timer
// starts, and fails b unless h admits them all.
func learnAddrs(b testing.TB, h http.Handler, addrs []string) {
	w := &benchWriter{h: http.Header{}}
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	for _, a := range addrs {
		r.RemoteAddr = a
		h.ServeHTTP(w, r)
		if w.code != 0 {
			b.Fatalf("%s: status %d", a, w.code)
		}
		w.reset()
	}
}

// BenchmarkTaihttpRateLimit runs the per-key limit middleware over 100,000
// client addresses against the hand-written map of x/time/rate limiters.
// "taihttp-ratelimit" and "mutex-map-x-time-rate-fields" set RateLimit and
// RateLimit-Policy on every response; the other two set nothing on
// success.
func BenchmarkTaihttpRateLimit(b *testing.B) {
	addrs := clientAddrs()
	hs := rateLimitHandlers(b)
	for _, name := range rateLimitOrder {
		h := hs[name]
		b.Run(name, func(b *testing.B) {
			w := &benchWriter{h: http.Header{}}
			r := httptest.NewRequest(http.MethodGet, "/", nil)
			learnAddrs(b, h, addrs) // every key known: the steady state
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				r.RemoteAddr = addrs[i]
				h.ServeHTTP(w, r)
				if w.code != 0 {
					b.Fatalf("status %d", w.code)
				}
				w.reset()
				if i++; i == len(addrs) {
					i = 0
				}
			}
		})
	}
}

func BenchmarkTaihttpRateLimitParallel(b *testing.B) {
	addrs := clientAddrs()
	hs := rateLimitHandlers(b)
	for _, name := range rateLimitOrder {
		h := hs[name]
		b.Run(name, func(b *testing.B) { benchRateLimitParallel(b, h, addrs) })
	}
}

// benchRateLimitParallel sends h requests from every processor, spread
// over addrs, each learned before the timer starts.
func benchRateLimitParallel(b *testing.B, h http.Handler, addrs []string) {
	learnAddrs(b, h, addrs)
	b.ReportAllocs()
	b.ResetTimer() // RunParallel does not: the addresses' setup is not timed
	var seq atomic.Int64
	b.RunParallel(func(pb *testing.PB) {
		w := &benchWriter{h: http.Header{}}
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		i := int(seq.Add(1)) * 7919 % len(addrs) // goroutines start apart
		for pb.Next() {
			r.RemoteAddr = addrs[i]
			h.ServeHTTP(w, r)
			if w.code != 0 {
				b.Errorf("status %d", w.code)
				return
			}
			w.reset()
			if i++; i == len(addrs) {
				i = 0
			}
		}
	})
}

// guardedTransport is a Transport with a breaker, a retry and a
// per-attempt timeout around base.
func guardedTransport(b *testing.B, base http.RoundTripper) http.RoundTripper {
	breaker, err := jidoka.NewBreaker(jidoka.BreakerOptions{Name: "bench"})
	if err != nil {
		b.Fatal(err)
	}
	retry, err := jidoka.NewRetry(jidoka.RetryOptions{})
	if err != nil {
		b.Fatal(err)
	}
	t, err := taihttp.NewTransport(taihttp.TransportOptions{Base: base, Breaker: breaker, Retry: retry, AttemptTimeout: 5 * time.Second})
	if err != nil {
		b.Fatal(err)
	}
	return t
}

// get sends a GET to url and reads the answer whole.
func get(b *testing.B, c *http.Client, url string) { getIn(context.Background(), b, c, url) }

// getWithTimeout is get with the per-request timeout people write by
// hand: a context with a deadline around the call and the body's read.
func getWithTimeout(b *testing.B, c *http.Client, url string) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	getIn(ctx, b, c, url)
}

// getIn is get with the request's context ctx.
func getIn(ctx context.Context, b *testing.B, c *http.Client, url string) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		b.Fatal(err)
	}
	resp, err := c.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b.Fatalf("status %d", resp.StatusCode)
	}
}

// BenchmarkTaihttpTransport sends GETs to a loopback httptest server
// through a plain http.Transport, through the same with a hand-written
// per-request timeout (a context with a deadline), and through a
// taihttp.Transport with a breaker, a retry and a per-attempt timeout on
// the same kind of http.Transport.
func BenchmarkTaihttpTransport(b *testing.B) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "ok")
	}))
	defer srv.Close()
	for _, name := range []string{"plain-http-transport", "plain-http-transport-timeout-context", "taihttp-breaker-retry-timeout"} {
		b.Run(name, func(b *testing.B) {
			base := &http.Transport{MaxIdleConnsPerHost: 16}
			defer base.CloseIdleConnections()
			var rt http.RoundTripper = base
			if name == "taihttp-breaker-retry-timeout" {
				rt = guardedTransport(b, base)
			}
			c := &http.Client{Transport: rt}
			do := get
			if name == "plain-http-transport-timeout-context" {
				do = getWithTimeout
			}
			do(b, c, srv.URL)
			b.ReportAllocs()
			for b.Loop() {
				do(b, c, srv.URL)
			}
		})
	}
}

// BenchmarkTaihttpTransportPaired measures what each way of guarding a
// loopback GET adds to it, request by request: the requests alternate
// between a plain http.Transport and the guarded one, each timed alone, so
// both meet the machine in the same moment and the difference survives
// the drift between runs that separate benchmarks suffer. It reports the
// difference of the means, of the medians and of the 90th percentiles.
// "context-that-can-end" is a plain request whose context can be
// cancelled, the floor of any per-request timeout.
func BenchmarkTaihttpTransportPaired(b *testing.B) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "ok")
	}))
	defer srv.Close()
	client := func(b *testing.B, guarded bool) *http.Client {
		base := &http.Transport{MaxIdleConnsPerHost: 16}
		b.Cleanup(base.CloseIdleConnections)
		if guarded {
			return &http.Client{Transport: guardedTransport(b, base)}
		}
		return &http.Client{Transport: base}
	}
	for _, name := range []string{"context-that-can-end", "hand-written-timeout", "taihttp-breaker-retry-timeout"} {
		b.Run(name, func(b *testing.B) {
			plain, other := client(b, false), client(b, name == "taihttp-breaker-retry-timeout")
			do := get
			switch name {
			case "context-that-can-end":
				do = func(b *testing.B, c *http.Client, url string) {
					ctx, cancel := context.WithCancel(context.Background())
					defer cancel()
					getIn(ctx, b, c, url)
				}
			case "hand-written-timeout":
				do = getWithTimeout
			}
			get(b, plain, srv.URL)
			do(b, other, srv.URL)
			var took [2][]time.Duration // plain, other
			i := 0
			for b.Loop() {
				t0 := time.Now()
				if i&1 == 0 {
					get(b, plain, srv.URL)
				} else {
					do(b, other, srv.URL)
				}
				took[i&1] = append(took[i&1], time.Since(t0))
				i++
			}
			if len(took[1]) < 2 { // -benchtime 1x: nothing to compare
				return
			}
			var mean [2]float64
			for k := range took {
				slices.Sort(took[k])
				var sum time.Duration
				for _, d := range took[k] {
					sum += d
				}
				mean[k] = float64(sum) / float64(len(took[k]))
			}
			at := func(k int, q float64) float64 { return float64(took[k][int(q*float64(len(took[k])-1))]) }
			b.ReportMetric(mean[1]-mean[0], "over-plain-mean-ns")
			b.ReportMetric(at(1, 0.5)-at(0, 0.5), "over-plain-median-ns")
			b.ReportMetric(at(1, 0.9)-at(0, 0.9), "over-plain-p90-ns")
		})
	}
}

// memoryTransport answers every request at once with an empty 200, so the
// cost of what wraps it shows alone.
type memoryTransport struct{}

func (memoryTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	return &http.Response{StatusCode: http.StatusOK, Header: http.Header{}, Body: http.NoBody, Request: r}, nil
}

// overheadOrder names the transports the overhead benchmarks compare.
var overheadOrder = []string{"memory-base", "taihttp-breaker-retry-timeout"}

// overheadTransport returns the transport name stands for: a base that
// answers from memory, alone or with the guards around it.
func overheadTransport(b *testing.B, name string) http.RoundTripper {
	if name == "memory-base" {
		return memoryTransport{}
	}
	return guardedTransport(b, memoryTransport{})
}

// BenchmarkTaihttpTransportOverhead is the Transport's own cost: the same
// guards around a base transport that answers from memory.
func BenchmarkTaihttpTransportOverhead(b *testing.B) {
	req, err := http.NewRequestWithContext(context.Background(), http.MethodGet, "http://bench.test/", nil)
	if err != nil {
		b.Fatal(err)
	}
	for _, name := range overheadOrder {
		b.Run(name, func(b *testing.B) {
			rt := overheadTransport(b, name)
			b.ReportAllocs()
			for b.Loop() {
				resp, err := rt.RoundTrip(req)
				if err != nil {
					b.Fatal(err)
				}
				_ = resp.Body.Close()
			}
		})
	}
}

// BenchmarkTaihttpTransportOverheadParallel is the Transport's own cost
// with calls from every processor at once, as a client shared by a
// server's handlers makes them.
func BenchmarkTaihttpTransportOverheadParallel(b *testing.B) {
	for _, name := range overheadOrder {
		b.Run(name, func(b *testing.B) {
			rt := overheadTransport(b, name)
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				req, err := http.NewRequestWithContext(context.Background(), http.MethodGet, "http://bench.test/", nil)
				if err != nil {
					b.Error(err)
					return
				}
				for pb.Next() {
					resp, err := rt.RoundTrip(req)
					if err != nil {
						b.Error(err)
						return
					}
					_ = resp.Body.Close()
				}
			})
		})
	}
}
