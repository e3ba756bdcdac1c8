package taihttp_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"time"

	"github.com/taipattern/taikit/heijunka"
	"github.com/taipattern/taikit/jidoka"
	"github.com/taipattern/taikit/tai"
	"github.com/taipattern/taikit/taihttp"
)

func hello(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "hello") }

// A per-client limit of two requests a minute in front of a handler.
func ExampleRateLimit() {
	perClient, err := heijunka.NewKeyed(heijunka.PerMinute(2))
	if err != nil {
		panic(err)
	}
	limit, err := taihttp.RateLimit(perClient, taihttp.RateLimitOptions{Key: taihttp.Header("X-Api-Key")})
	if err != nil {
		panic(err)
	}
	srv := httptest.NewServer(limit(http.HandlerFunc(hello)))
	defer srv.Close()

	for range 3 {
		req, _ := http.NewRequest(http.MethodGet, srv.URL, nil)
		req.Header.Set("X-Api-Key", "key-1")
		resp, err := srv.Client().Do(req)
		if err != nil {
			panic(err)
		}
		_ = resp.Body.Close()
		fmt.Printf("%d %s retry-after=%q\n", resp.StatusCode, resp.Header.Get("RateLimit-Policy"), resp.Header.Get("Retry-After"))
	}
	// Output:
	// 200 "default";q=2;w=60 retry-after=""
	// 200 "default";q=2;w=60 retry-after=""
	// 429 "default";q=2;w=60 retry-after="30"
}

// A stop-the-line switch in front of a handler: while the line is
// stopped, every request is answered 503 with the line's Retry-After.
func ExampleGate() {
	line, _ := jidoka.NewLine(jidoka.LineOptions{Name: "checkout", RetryAfter: 30 * time.Second})
	stop, err := taihttp.Gate(line, taihttp.GateOptions{Errors: taihttp.PlainErrors})
	if err != nil {
		panic(err)
	}
	h := stop(http.HandlerFunc(hello))

	line.Stop("payment provider incident")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/checkout", nil))
	fmt.Print(rec.Code, " ", rec.Header().Get("Retry-After"), " ", rec.Body.String())

	line.Start()
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/checkout", nil))
	fmt.Println(rec.Code, rec.Body.String())
	// Output:
	// 503 30 the service is stopped; retry later
	// 200 hello
}

// A whole pipeline in front of a handler: a policy on the request, a
// per-client limit as a gate, a breaker around the handler. The gates run
// first, so a denied request counts against the limit too.
func ExamplePipeline() {
	admins := tai.PolicyFunc[*http.Request](func(_ context.Context, s tai.Signal[*http.Request]) (tai.Decision, error) {
		if s.Payload.Header.Get("X-Role") != "admin" {
			return tai.Decision{Verdict: tai.Deny, Reason: "not an admin"}, nil
		}
		return tai.Decision{Verdict: tai.Allow}, nil
	})
	perClient, _ := heijunka.NewKeyed(heijunka.PerMinute(2))
	breaker, _ := jidoka.NewBreaker(jidoka.BreakerOptions{Name: "admin-api"})
	mw, err := taihttp.Pipeline(admins, taihttp.PipelineOptions{Kind: "admin"},
		tai.WithGates(perClient), tai.WithGuards(breaker))
	if err != nil {
		panic(err)
	}
	h := mw(http.HandlerFunc(hello))

	for _, role := range []string{"guest", "admin", "admin"} {
		req := httptest.NewRequest(http.MethodPost, "/admin", nil)
		req.Header.Set("X-Role", role)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		fmt.Printf("%s %d retry-after=%q\n", role, rec.Code, rec.Header().Get("Retry-After"))
	}
	// Output:
	// guest 403 retry-after=""
	// admin 200 retry-after=""
	// admin 429 retry-after="30"
}

// A handler that calls a limiter itself sets the fields in one line.
func ExampleWriteDecisionHeaders() {
	perCustomer, _ := heijunka.NewKeyed(heijunka.PerMinute(5))
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		d, err := perCustomer.Allow(r.Context(), r.URL.Query().Get("customer"))
		if err != nil { // no decision (a full store): no fields to send
			taihttp.WriteError(w, r, err)
			return
		}
		taihttp.WriteDecisionHeaders(w, d)
		if !d.Allowed {
			http.Error(w, "slow down", http.StatusTooManyRequests)
			return
		}
		_, _ = io.WriteString(w, "charged")
	})
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/charge?customer=c1", nil))
	fmt.Println(rec.Code, rec.Header().Get("RateLimit-Policy"), rec.Header().Get("RateLimit"))
	// Output: 200 "default";q=5;w=60 "default";r=4;t=12
}

// ProblemOf and StatusOf map errors of the taikit packages to responses.
func ExampleStatusOf() {
	line, _ := jidoka.NewLine(jidoka.LineOptions{RetryAfter: time.Minute})
	line.Stop("maintenance")
	for _, err := range []error{
		nil,
		line.Admit(context.Background(), ""),
		&tai.DeniedError{Decision: tai.Decision{Verdict: tai.Deny}},
		context.DeadlineExceeded,
		errors.New("database down"),
	} {
		status, retryAfter := taihttp.StatusOf(err)
		fmt.Println(status, retryAfter)
	}
	// Output:
	// 200 0s
	// 503 1m0s
	// 403 0s
	// 504 0s
	// 500 0s
}

// A client whose GETs are retried on 503, each attempt with a deadline
// and through a breaker.
func ExampleNewTransport() {
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if hits.Add(1) == 1 {
			w.Header().Set("Retry-After", "0")
			http.Error(w, "busy", http.StatusServiceUnavailable)
			return
		}
		_, _ = io.WriteString(w, "inventory: 12")
	}))
	defer srv.Close()

	retry, _ := jidoka.NewRetry(jidoka.RetryOptions{MaxAttempts: 3, BaseDelay: 10 * time.Millisecond})
	breaker, _ := jidoka.NewBreaker(jidoka.BreakerOptions{Name: "inventory"})
	transport, err := taihttp.NewTransport(taihttp.TransportOptions{
		Base:           srv.Client().Transport,
		Retry:          retry,
		AttemptTimeout: 2 * time.Second,
		Breaker:        breaker,
	})
	if err != nil {
		panic(err)
	}
	client := &http.Client{Transport: transport}
	defer client.CloseIdleConnections()

	resp, err := client.Get(srv.URL)
	if err != nil {
		panic(err)
	}
	body, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	fmt.Println(resp.StatusCode, string(body), "after", hits.Load(), "attempts")
	// Output: 200 inventory: 12 after 2 attempts
}
