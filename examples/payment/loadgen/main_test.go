package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestAppendPayment(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	o := options{fraud: 0.5, customers: 1000}
	var b []byte
	fraud := 0
	for range 1000 {
		var labelled bool
		b, labelled = appendPayment(b[:0], rng, o)
		var p struct {
			Amount     json.Number `json:"amount"`
			CustomerID string      `json:"customer_id"`
			Currency   string      `json:"currency"`
			MerchantID string      `json:"merchant_id"`
			Location   *struct {
				Country string `json:"country"`
			} `json:"location"`
		}
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.DisallowUnknownFields()
		dec.UseNumber()
		if err := dec.Decode(&p); err != nil {
			t.Fatalf("%s: %v", b, err)
		}
		amount, err := p.Amount.Float64()
		if err != nil || amount < 1 || p.CustomerID == "" || p.MerchantID == "" || p.Currency != "USD" {
			t.Fatalf("bad payment %s", b)
		}
		if amount > 20000 || p.Location != nil {
			fraud++
		}
		if labelled != (amount > 20000 || p.Location != nil) {
			t.Fatalf("%s labelled fraud %v", b, labelled)
		}
	}
	if fraud < 400 || fraud > 600 {
		t.Fatalf("%d of 1000 fraudulent at -fraud 0.5", fraud)
	}
}

func TestStatusOf(t *testing.T) {
	for body, want := range map[string]string{
		`{"transaction_id":"txn_1","status":"SUCCESS","amount":1}`: "SUCCESS",
		`{"status":"RATE_LIMITED"}`:                                "RATE_LIMITED",
		`{"status":"NEW_THING"}`:                                   "NEW_THING",
		`{"error":{"code":"invalid_request"}}`:                     "",
		`{"status":"cut`:                                           "",
	} {
		if got := statusOf([]byte(body)); got != want {
			t.Errorf("statusOf(%s) = %q, want %q", body, got, want)
		}
	}
}

func TestClientReadsResponses(t *testing.T) {
	var seen struct {
		sync.Mutex
		keys, auth []string
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		seen.Lock()
		seen.keys = append(seen.keys, r.Header.Get("Idempotency-Key"))
		seen.auth = append(seen.auth, r.Header.Get("Authorization"))
		seen.Unlock()
		if r.Method != http.MethodPost || r.URL.Path != "/payment" || r.Header.Get("Content-Type") != "application/json" {
			http.Error(w, "bad request line or headers", http.StatusBadRequest)
			return
		}
		switch string(body) {
		case "chunked":
			w.Header().Set("Content-Type", "application/json")
			w.Write([]byte(`{"status":`))
			w.(http.Flusher).Flush() // forces chunked encoding
			w.Write([]byte(`"SUCCESS"}`))
		case "close":
			w.Header().Set("Connection", "close")
			w.Write([]byte(`{"status":"FRAUD_BLOCKED"}`))
		default:
			w.WriteHeader(http.StatusTooManyRequests)
			w.Write([]byte(`{"status":"RATE_LIMITED"}`))
		}
	}))
	defer srv.Close()
	target, err := parseTarget(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	c := &client{target: target}
	defer c.close()
	for i, tc := range []struct {
		body, key, token string
		code             int
		want             string
	}{
		{"plain", "k1", "", 429, `{"status":"RATE_LIMITED"}`},
		{"chunked", "", "tok", 200, `{"status":"SUCCESS"}`},
		{"close", "", "", 200, `{"status":"FRAUD_BLOCKED"}`},
		{"plain", "", "", 429, `{"status":"RATE_LIMITED"}`}, // dials again after the close
	} {
		code, body, err := c.do(appendRequest(nil, target.host, []byte(tc.body), tc.key, tc.token))
		if err != nil || code != tc.code || string(body) != tc.want {
			t.Fatalf("request %d: %d %q %v; want %d %q", i, code, body, err, tc.code, tc.want)
		}
	}
	seen.Lock()
	defer seen.Unlock()
	if seen.keys[0] != "k1" || seen.auth[1] != "Bearer tok" || seen.keys[1] != "" {
		t.Fatalf("headers sent: keys %q auth %q", seen.keys, seen.auth)
	}
}

func TestClientRejectsMalformedResponses(t *testing.T) {
	for _, reply := range []string{
		"garbage\r\n\r\n",
		"HTTP/1.1 abc OK\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
		"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", // then the server hangs up
	} {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		go func() {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			defer conn.Close()
			buf := make([]byte, 4096)
			_, _ = conn.Read(buf)
			_, _ = conn.Write([]byte(reply))
		}()
		c := &client{target: target{addr: ln.Addr().String(), host: ln.Addr().String()}}
		_, _, err = c.do(appendRequest(nil, c.target.host, []byte("{}"), "", ""))
		c.close()
		ln.Close()
		if err == nil {
			t.Errorf("reply %q: no error", reply)
		}
	}
}

func TestParseTarget(t *testing.T) {
	for raw, want := range map[string]target{
		"http://127.0.0.1:3001": {addr: "127.0.0.1:3001", host: "127.0.0.1:3001"},
		"http://localhost/":     {addr: "localhost:80", host: "localhost"},
		"https://pay.example":   {addr: "pay.example:443", host: "pay.example", tls: true},
		"http://[::1]:3001":     {addr: "[::1]:3001", host: "[::1]:3001"},
	} {
		got, err := parseTarget(raw)
		if err != nil || got != want {
			t.Errorf("parseTarget(%q) = %+v, %v; want %+v", raw, got, err, want)
		}
	}
	for _, raw := range []string{"ftp://x", "http://", "http://x/payment", "http://x?a=1", "::"} {
		if _, err := parseTarget(raw); err == nil {
			t.Errorf("parseTarget(%q): no error", raw)
		}
	}
}

func TestRunKeepsTheRate(t *testing.T) {
	var served atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		served.Add(1)
		w.Write([]byte(`{"status":"SUCCESS"}`))
	}))
	defer srv.Close()
	o := options{url: srv.URL, clients: 4, duration: time.Second, fraud: 0, customers: 10, rate: 200}
	rep, err := run(context.Background(), o, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	n := len(rep.latencies)
	if n < 100 || n > 210 { // paced: never above the rate; a slow machine may fall a little behind
		t.Fatalf("%d payments in 1s at -rate 200", n)
	}
	if rep.statuses["SUCCESS"] != n || rep.errors != 0 {
		t.Fatalf("statuses %v, %d errors", rep.statuses, rep.errors)
	}
}

func TestBaselineAnswersInTheServiceShape(t *testing.T) {
	srv := httptest.NewServer(baselineHandler())
	defer srv.Close()
	resp, err := http.Post(srv.URL+"/payment", "application/json", strings.NewReader(`{"amount": 12.50, "customer_id": "c", "currency": "USD", "merchant_id": "m", "location": {"country": "DE"}}`))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var got map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&got); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("%d %v", resp.StatusCode, err)
	}
	for _, k := range []string{"transaction_id", "status", "amount", "currency", "customer_id", "merchant_id", "timestamp", "processing_time_ms", "fraud_score", "gateway_response", "trace_id"} {
		if _, ok := got[k]; !ok {
			t.Errorf("no %q in %v", k, got)
		}
	}
	if got["status"] != "SUCCESS" || got["amount"] != 12.5 {
		t.Errorf("answer %v", got)
	}
	bad, err := http.Post(srv.URL+"/payment", "application/json", strings.NewReader(`{"amount": "x"}`))
	if err != nil {
		t.Fatal(err)
	}
	bad.Body.Close()
	if bad.StatusCode != http.StatusBadRequest {
		t.Errorf("a bad request: %d", bad.StatusCode)
	}
}

// fraudAware is a service that blocks exactly the payments the load
// generator labels fraud.
func fraudAware() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" {
			return
		}
		var p struct {
			Amount   float64 `json:"amount"`
			Location *struct {
				Country string `json:"country"`
			} `json:"location"`
		}
		_ = json.NewDecoder(r.Body).Decode(&p)
		if p.Amount > 20000 || p.Location != nil && p.Location.Country == "KP" {
			w.WriteHeader(http.StatusPaymentRequired)
			w.Write([]byte(`{"status":"FRAUD_BLOCKED"}`))
			return
		}
		w.Write([]byte(`{"status":"SUCCESS"}`))
	})
}

func TestRunCountsFraudCaught(t *testing.T) {
	srv := httptest.NewServer(fraudAware())
	defer srv.Close()
	o := options{url: srv.URL, clients: 4, duration: 300 * time.Millisecond, fraud: 0.3, customers: 10}
	rep, err := run(context.Background(), o, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if rep.fraudSent == 0 || rep.fraudCaught != rep.fraudSent || rep.normalFlagged != 0 || rep.normalSent+rep.fraudSent != len(rep.latencies) {
		t.Fatalf("fraud %d caught %d, normal %d flagged %d, of %d", rep.fraudSent, rep.fraudCaught, rep.normalSent, rep.normalFlagged, len(rep.latencies))
	}
	var out bytes.Buffer
	rep.print(&out)
	if !strings.Contains(out.String(), "(100.0%)") || !strings.Contains(out.String(), "false positives 0 of") {
		t.Fatalf("report:\n%s", out.String())
	}
}

func TestCompareAlternatesServiceAndBaseline(t *testing.T) {
	var calls struct {
		sync.Mutex
		order []string
	}
	track := func(name string, h http.Handler) *httptest.Server {
		return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/healthz" { // each run probes its target first
				calls.Lock()
				calls.order = append(calls.order, name)
				calls.Unlock()
			}
			h.ServeHTTP(w, r)
		}))
	}
	svc, base := track("service", fraudAware()), track("baseline", baselineHandler())
	defer svc.Close()
	defer base.Close()
	var out bytes.Buffer
	o := options{url: svc.URL, clients: 2, duration: 150 * time.Millisecond, fraud: 0.1, customers: 10}
	if err := compare(context.Background(), o, base.URL, 2, &out); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"round 1 service", "round 1 baseline", "round 2 service", "round 2 baseline", "service / baseline: throughput", "fraud caught"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("no %q in:\n%s", want, out.String())
		}
	}
	calls.Lock()
	defer calls.Unlock()
	// Both are checked before the first round, then each round probes its target.
	if want := []string{"service", "baseline", "service", "baseline", "service", "baseline"}; !slices.Equal(calls.order, want) {
		t.Errorf("order %v, want %v", calls.order, want)
	}
}

// A run whose requests the service refuses for want of a token is an
// error naming -token, not a report of 401s at full speed.
func TestRunRefusedWithoutToken(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer t0ken" {
			w.WriteHeader(http.StatusUnauthorized)
			w.Write([]byte(`{"error":{"code":"unauthorized","message":"a valid Bearer token is required"}}`))
			return
		}
		w.Write([]byte(`{"status":"SUCCESS"}`))
	}))
	defer srv.Close()
	o := options{url: srv.URL, clients: 2, duration: 200 * time.Millisecond, customers: 10}
	_, err := run(context.Background(), o, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "pass its API token with -token") {
		t.Fatalf("run without the token: %v", err)
	}
	o.token = "t0ken"
	if _, err := run(context.Background(), o, io.Discard); err != nil {
		t.Fatalf("run with the token: %v", err)
	}
}

// TestRunPausesWhileTheServiceIsDown: a service that drops every
// connection (killed and not yet back) costs each closed-loop client a
// few errors, with growing pauses, rather than a connection attempt
// after another as fast as the machine goes.
func TestRunPausesWhileTheServiceIsDown(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" {
			return
		}
		conn, _, err := w.(http.Hijacker).Hijack()
		if err == nil {
			conn.Close()
		}
	}))
	defer srv.Close()
	o := options{url: srv.URL, clients: 2, duration: 300 * time.Millisecond, customers: 10}
	rep, err := run(context.Background(), o, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "no payment was answered") {
		t.Fatalf("run: %v", err)
	}
	// 10, 20, 40, 80, 160 ms: at most 6 errors a client in 300 ms.
	if rep.errors > 12 {
		t.Fatalf("%d transport errors from 2 clients in 300ms", rep.errors)
	}
}

// TestQuantileIsTheNearestRank: the q-quantile of n latencies is the
// ceil(q·n)-th smallest, so the p99 of 100 is the 99th, not the largest.
func TestQuantileIsTheNearestRank(t *testing.T) {
	hundred := make([]time.Duration, 0, 100)
	for i := 100; i >= 1; i-- {
		hundred = append(hundred, time.Duration(i)*time.Millisecond)
	}
	for _, tc := range []struct {
		lat  []time.Duration
		q    float64
		want time.Duration
	}{
		{hundred, 0.50, 50 * time.Millisecond},
		{hundred, 0.90, 90 * time.Millisecond},
		{hundred, 0.99, 99 * time.Millisecond},
		{hundred, 1, 100 * time.Millisecond},
		{hundred, 0, time.Millisecond},
		{[]time.Duration{2, 1}, 0.50, 1},
		{[]time.Duration{2, 1}, 0.99, 2},
		{[]time.Duration{7}, 0.99, 7},
		{nil, 0.99, 0},
	} {
		r := &report{latencies: slices.Clone(tc.lat)}
		if got := r.quantile(tc.q); got != tc.want {
			t.Errorf("quantile(%v) of %d latencies = %v, want %v", tc.q, len(tc.lat), got, tc.want)
		}
	}
}

// TestPrintEndsTheFraudLine: with -fraud 1 no normal payment is sent, and
// the fraud line still ends before the statuses begin.
func TestPrintEndsTheFraudLine(t *testing.T) {
	r := &report{elapsed: time.Second, latencies: []time.Duration{time.Millisecond, time.Millisecond},
		statuses: map[string]int{"FRAUD_BLOCKED": 2}, fraudSent: 2, fraudCaught: 2}
	var out bytes.Buffer
	r.print(&out)
	if !strings.Contains(out.String(), "fraud caught 2 of 2 (100.0%)\n  FRAUD_BLOCKED") {
		t.Fatalf("report:\n%s", out.String())
	}
	r = &report{elapsed: time.Second, latencies: []time.Duration{time.Millisecond},
		statuses: map[string]int{"SUCCESS": 1}, normalSent: 1}
	out.Reset()
	r.print(&out)
	if !strings.Contains(out.String(), "\nfalse positives 0 of 1 (0.00%)\n  SUCCESS") {
		t.Fatalf("report:\n%s", out.String())
	}
}

// TestCompareChecksTheBaselineFirst: a -baseline URL that is malformed or
// answers nothing is an error naming -baseline before the service is
// driven for a round.
func TestCompareChecksTheBaselineFirst(t *testing.T) {
	var payments atomic.Int64
	svc := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/payment" {
			payments.Add(1)
		}
		w.Write([]byte(`{"status":"SUCCESS"}`))
	}))
	defer svc.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gone := "http://" + ln.Addr().String()
	ln.Close()
	o := options{url: svc.URL, clients: 1, duration: 200 * time.Millisecond, customers: 10}
	for _, baseline := range []string{"ftp://x", "http://x/payment", gone} {
		err := compare(context.Background(), o, baseline, 1, io.Discard)
		if err == nil || !strings.Contains(err.Error(), "-baseline") {
			t.Errorf("compare with -baseline %s: %v", baseline, err)
		}
	}
	if n := payments.Load(); n != 0 {
		t.Errorf("the service was sent %d payments", n)
	}
}

// TestRunStopsWhileTheProbeHangs: a service that accepts the health probe
// and never answers holds a run only until its context ends.
func TestRunStopsWhileTheProbeHangs(t *testing.T) {
	probed, release := make(chan struct{}, 1), make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case probed <- struct{}{}:
		default:
		}
		<-release
	}))
	defer srv.Close()
	defer close(release)
	ctx, cancel := context.WithCancel(context.Background())
	go func() { <-probed; cancel() }()
	o := options{url: srv.URL, clients: 1, duration: time.Second, customers: 10}
	done := make(chan error, 1)
	go func() { _, err := run(ctx, o, io.Discard); done <- err }()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("run: %v, want context.Canceled", err)
		}
	case <-time.After(time.Minute): // a guard against hanging, not a measure
		t.Fatal("run still waiting for the probe a minute after its context ended")
	}
}

// TestRunWithNoAnswerIsAnError: a service that went down after the probe
// answered nothing; the run says so, with the last transport error, not
// that it made 0 payments/s with a p99 of 0.
func TestRunWithNoAnswerIsAnError(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" {
			return
		}
		if conn, _, err := w.(http.Hijacker).Hijack(); err == nil {
			conn.Close()
		}
	}))
	defer srv.Close()
	o := options{url: srv.URL, clients: 2, duration: 100 * time.Millisecond, customers: 10}
	if _, err := run(context.Background(), o, io.Discard); err == nil || !strings.Contains(err.Error(), "no payment was answered") || !strings.Contains(err.Error(), "EOF") {
		t.Errorf("run: %v", err)
	}
	var out bytes.Buffer
	base := httptest.NewServer(baselineHandler())
	defer base.Close()
	if err := compare(context.Background(), o, base.URL, 1, &out); err == nil || !strings.Contains(err.Error(), "no payment was answered") {
		t.Errorf("compare: %v\n%s", err, out.String())
	}
}

// TestMain runs main itself when LOADGEN_RUN_MAIN is set, so that a test
// can see what the command does with its flags.
func TestMain(m *testing.M) {
	if os.Getenv("LOADGEN_RUN_MAIN") == "1" {
		os.Args = append([]string{"loadgen"}, strings.Fields(os.Getenv("LOADGEN_ARGS"))...)
		main()
		os.Exit(0)
	}
	goleak.VerifyTestMain(m)
}

// TestFlagsRefusedByName: a flag out of its range exits 2 with a message
// that names it and its value, before anything is dialled.
func TestFlagsRefusedByName(t *testing.T) {
	down := "-url http://127.0.0.1:1 " // nothing listens there
	for _, tc := range []struct{ args, want string }{
		{down + "-c 0", "-c 0"},
		// A connection a client to one address: more than its ports.
		{down + "-c 65536", "-c 65536"},
		{down + "-c 10000000000", "-c 10000000000"},
		{down + "-d 0s", "-d 0s"},
		{down + "-d -1s", "-d -1s"},
		{down + "-rounds 0", "-rounds 0"},
		{down + "-customers 0", "-customers 0"},
		{down + "-fraud 1.5", "-fraud 1.5"},
		{down + "-fraud NaN", "-fraud NaN"},
		{down + "-rate -1", "-rate -1"},
		{down + "-rate NaN", "-rate NaN"},
		{down + "-rate +Inf", "-rate +Inf"},
		{down + "-rate 1e300", "-rate 1e+300"},
		// A client's interval would overflow a time.Duration and wrap to
		// a negative one: a closed loop, reported as a fixed rate.
		{down + "-rate 1e-9", "-rate 1e-09"},
		{down + "-c 1 -rate 1e-10", "-rate 1e-10"},
		{down + "-serve-baseline 127.0.0.1:0 -baseline http://127.0.0.1:1", "-serve-baseline"},
	} {
		// The timeout guards against a flag taken and a server served for good.
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), "LOADGEN_RUN_MAIN=1", "LOADGEN_ARGS="+tc.args)
		out, err := cmd.CombinedOutput()
		cancel()
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() != 2 || !strings.Contains(string(out), tc.want) {
			t.Errorf("loadgen %s: %v\n%s", tc.args, err, out)
		}
	}
}

// TestRunCountsPaymentsOwedAtTheEnd: at a fixed rate, a service that
// stops answering before the end leaves payments cut off in flight and
// payments never sent; the report counts them, where the latencies of the
// answered ones alone would hide the stall.
func TestRunCountsPaymentsOwedAtTheEnd(t *testing.T) {
	srv := stallingServer(t, 5)
	// 2 clients at 100/s for 300 ms: 30 payments scheduled, 10 ms apart.
	o := options{url: srv.URL, clients: 2, duration: 300 * time.Millisecond, customers: 10, rate: 100}
	rep, err := run(context.Background(), o, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(rep.latencies); n > 5 || rep.errors != 0 {
		t.Fatalf("%d answered, %d transport errors", n, rep.errors)
	}
	var out bytes.Buffer
	rep.print(&out)
	if want := fmt.Sprintf("%d scheduled payments not answered by the end", 30-len(rep.latencies)); !strings.Contains(out.String(), want) {
		t.Fatalf("no %q in:\n%s", want, out.String())
	}
}

// TestCompareInterrupted: an interrupt during a round ends the comparison
// with the rounds complete so far, the cut one left out, rather than
// going on to report every remaining target unreachable.
func TestCompareInterrupted(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var probes atomic.Int64
	svc := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" {
			probes.Add(1)
			return
		}
		if probes.Load() >= 3 { // the check, round 1, round 2
			cancel()
		}
		w.Write([]byte(`{"status":"SUCCESS"}`))
	}))
	defer svc.Close()
	base := httptest.NewServer(baselineHandler())
	defer base.Close()
	var out bytes.Buffer
	o := options{url: svc.URL, clients: 2, duration: 150 * time.Millisecond, customers: 10}
	if err := compare(ctx, o, base.URL, 3, &out); err != nil {
		t.Fatalf("compare: %v\n%s", err, out.String())
	}
	if s := out.String(); !strings.Contains(s, "round 1 baseline") || strings.Contains(s, "round 2") || !strings.Contains(s, "service / baseline") {
		t.Fatalf("output:\n%s", s)
	}
	// Interrupted before a round is complete, there is nothing to compare.
	done, stop := context.WithCancel(context.Background())
	stop()
	if err := compare(done, o, base.URL, 3, io.Discard); !errors.Is(err, context.Canceled) {
		t.Fatalf("compare interrupted at once: %v", err)
	}
}

// TestRunCountsOnlyDecidedPayments: a service that answers half its
// payments with a fast 503 makes half the payments/s of one that decides
// them all, not the same; the 503s have a line of their own, with their
// count and rate, and stay out of the percentiles.
func TestRunCountsOnlyDecidedPayments(t *testing.T) {
	var payments atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/payment" {
			return
		}
		if payments.Add(1)%2 == 0 {
			w.WriteHeader(http.StatusServiceUnavailable)
			w.Write([]byte(`{"status":"FAILED","error":{"code":"line_stopped"}}`))
			return
		}
		w.Write([]byte(`{"status":"SUCCESS"}`))
	}))
	defer srv.Close()
	o := options{url: srv.URL, clients: 2, duration: 200 * time.Millisecond, customers: 10}
	rep, err := run(context.Background(), o, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	decided := rep.statuses["SUCCESS"]
	if decided == 0 || len(rep.latencies) != decided {
		t.Fatalf("%d latencies for %d decided payments; statuses %v", len(rep.latencies), decided, rep.statuses)
	}
	if got, want := rep.rate(), float64(decided)/rep.elapsed.Seconds(); got != want {
		t.Fatalf("rate %v, want %v (%d decided in %v)", got, want, decided, rep.elapsed)
	}
	var out bytes.Buffer
	rep.print(&out)
	for _, want := range []string{
		fmt.Sprintf("%d payments decided in", decided),
		"latency of decided payments",
		"\n  FAILED 503",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("no %q in:\n%s", want, out.String())
		}
	}
}

// TestCompareCountsOnlyDecidedPayments: a service whose line is stopped
// answers every payment with a fast 503; against the baseline, which
// decides every payment, its throughput is nothing, not a ratio of 503s
// to decisions, and it has no p99 to compare.
func TestCompareCountsOnlyDecidedPayments(t *testing.T) {
	svc := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/payment" {
			return
		}
		w.Header().Set("Retry-After", "30")
		w.WriteHeader(http.StatusServiceUnavailable)
		w.Write([]byte(`{"status":"FAILED","error":{"code":"line_stopped"}}`))
	}))
	defer svc.Close()
	base := httptest.NewServer(baselineHandler())
	defer base.Close()
	var out bytes.Buffer
	o := options{url: svc.URL, clients: 2, duration: 100 * time.Millisecond, customers: 10}
	if err := compare(context.Background(), o, base.URL, 1, &out); err != nil {
		t.Fatalf("compare: %v\n%s", err, out.String())
	}
	if s := out.String(); !strings.Contains(s, "service / baseline: throughput 0.00× (decided payments only)\n") || !strings.Contains(s, "p99 none") {
		t.Fatalf("output:\n%s", s)
	}
}

// TestRunCountsTimeoutsAsLatencies: a service that answers one payment
// and then none within the request timeout makes requests cut at the
// timeout; they count in the percentiles at their wait, marked as a lower
// bound, and not in payments/s, where leaving them out as transport
// errors made the p99 that of the one fast answer.
func TestRunCountsTimeoutsAsLatencies(t *testing.T) {
	var payments atomic.Int64
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/payment" && payments.Add(1) > 1 {
			io.Copy(io.Discard, r.Body) // so that the server sees the client hang up
			select {
			case <-r.Context().Done():
			case <-release:
			}
			return
		}
		w.Write([]byte(`{"status":"SUCCESS"}`))
	}))
	defer srv.Close()
	defer close(release)
	o := options{url: srv.URL, clients: 1, duration: time.Second, customers: 10, timeout: 100 * time.Millisecond}
	rep, err := run(context.Background(), o, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if rep.statuses["SUCCESS"] != 1 || rep.timedOut == 0 || len(rep.latencies) != 1+rep.timedOut || rep.errors != 0 {
		t.Fatalf("statuses %v, %d timed out, %d latencies, %d transport errors", rep.statuses, rep.timedOut, len(rep.latencies), rep.errors)
	}
	if got, want := rep.rate(), 1/rep.elapsed.Seconds(); got != want {
		t.Fatalf("rate %v, want %v: one payment decided in %v", got, want, rep.elapsed)
	}
	var out bytes.Buffer
	rep.print(&out)
	for _, want := range []string{
		"1 payments decided in",
		"p99 >= ",
		"max >= ",
		fmt.Sprintf("%d requests timed out after 100ms", rep.timedOut),
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("no %q in:\n%s", want, out.String())
		}
	}
}

// TestPercentileMarksLowerBounds: a percentile at or above the shortest
// wait of a timed-out request may be a lower bound and says so; one below
// it is exact.
func TestPercentileMarksLowerBounds(t *testing.T) {
	lat := make([]time.Duration, 0, 100)
	for i := 1; i <= 100; i++ {
		lat = append(lat, time.Duration(i)*time.Millisecond)
	}
	// The two slowest were cut at the timeout.
	r := &report{latencies: lat, timedOut: 2, minTimedOut: 99 * time.Millisecond}
	for q, want := range map[float64]string{0.50: "50ms", 0.98: "98ms", 0.99: ">= 99ms", 1: ">= 100ms"} {
		if got := r.percentile(q); got != want {
			t.Errorf("percentile(%v) = %q, want %q", q, got, want)
		}
	}
	if r.decisions() != 98 {
		t.Errorf("%d decisions, want 98", r.decisions())
	}
}

// TestRunCountsPaymentsInFlightAtTheEnd: in a closed loop, each client's
// payment still unanswered when the run ends is counted, with how long
// the oldest waited; dropped, a service that stopped answering for the
// last part of the run left no trace but a lower rate.
func TestRunCountsPaymentsInFlightAtTheEnd(t *testing.T) {
	srv := stallingServer(t, 4)
	o := options{url: srv.URL, clients: 2, duration: 200 * time.Millisecond, customers: 10}
	rep, err := run(context.Background(), o, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if rep.statuses["SUCCESS"] != 4 || rep.errors != 0 || rep.owed != 2 {
		t.Fatalf("statuses %v, %d transport errors, %d owed", rep.statuses, rep.errors, rep.owed)
	}
	var out bytes.Buffer
	rep.print(&out)
	if want := "2 payments in flight when the run ended, not answered"; !strings.Contains(out.String(), want) {
		t.Fatalf("no %q in:\n%s", want, out.String())
	}
}

// stallingServer answers SUCCESS to the first n payments and holds every
// later one unanswered until its client gives up or the test ends.
func stallingServer(t *testing.T, n int64) *httptest.Server {
	var payments atomic.Int64
	stalled := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/payment" && payments.Add(1) > n {
			io.Copy(io.Discard, r.Body)
			select {
			case <-stalled:
			case <-r.Context().Done():
			}
			return
		}
		w.Write([]byte(`{"status":"SUCCESS"}`))
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(stalled) }) // runs first: the held requests end
	return srv
}

// TestRunReportsItsPauses: the time closed-loop clients spent waiting
// after transport errors is not the service's: the report says how long
// it was, beside the payments a second it lowered.
func TestRunReportsItsPauses(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" {
			return
		}
		if conn, _, err := w.(http.Hijacker).Hijack(); err == nil {
			conn.Close()
		}
	}))
	defer srv.Close()
	o := options{url: srv.URL, clients: 2, duration: 200 * time.Millisecond, customers: 10}
	rep, err := run(context.Background(), o, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "no payment was answered") {
		t.Fatalf("run: %v", err)
	}
	if rep.errors == 0 {
		t.Fatal("no transport error")
	}
	var out bytes.Buffer
	rep.print(&out)
	if !regexp.MustCompile(`clients waited [0-9.]+m?s in all after transport errors`).MatchString(out.String()) {
		t.Errorf("the report does not say how long the clients paused:\n%s", out.String())
	}
}

// TestCompareWithABaselineThatDecidesNothing: a -baseline that answers
// every payment with a fast 503 (or a 404: not the baseline at all) has no
// throughput to divide by; the ratio is not known, not +Inf or NaN.
func TestCompareWithABaselineThatDecidesNothing(t *testing.T) {
	refusing := func(code int) *httptest.Server {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path != "/payment" {
				return
			}
			w.WriteHeader(code)
			w.Write([]byte(`{"status":"FAILED","error":{"code":"line_stopped"}}`))
		}))
		t.Cleanup(srv.Close)
		return srv
	}
	for _, tc := range []struct {
		name string
		svc  string
	}{
		{"the service decides", func() string {
			srv := httptest.NewServer(fraudAware())
			t.Cleanup(srv.Close)
			return srv.URL
		}()},
		{"neither decides", refusing(http.StatusServiceUnavailable).URL},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			o := options{url: tc.svc, clients: 2, duration: 100 * time.Millisecond, customers: 10}
			if err := compare(context.Background(), o, refusing(http.StatusServiceUnavailable).URL, 1, &out); err != nil {
				t.Fatalf("compare: %v\n%s", err, out.String())
			}
			s := out.String()
			if !strings.Contains(s, "service / baseline: throughput not known: the baseline decided no payment\n") || strings.Contains(s, "Inf") || strings.Contains(s, "NaN") {
				t.Fatalf("output:\n%s", s)
			}
		})
	}
}

// TestRunEndsWithoutAPause: a payment cut off in flight by the end of the
// run is owed, not a transport error, and is followed by no pause; counted
// as one, the report said the clients waited after transport errors in a
// run that had none.
func TestRunEndsWithoutAPause(t *testing.T) {
	srv := stallingServer(t, 2)
	o := options{url: srv.URL, clients: 2, duration: 100 * time.Millisecond, customers: 10}
	rep, err := run(context.Background(), o, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if rep.errors != 0 || rep.owed != 2 || rep.paused != 0 {
		t.Fatalf("%d transport errors, %d owed, paused %v", rep.errors, rep.owed, rep.paused)
	}
	var out bytes.Buffer
	rep.print(&out)
	if strings.Contains(out.String(), "clients waited") {
		t.Fatalf("report:\n%s", out.String())
	}
}

// TestRunRedialsAConnectionClosedWhileIdle: at a low -rate each client's
// connection idles between payments, and a server (or a proxy) closes it
// after its idle timeout. The next payment goes on a new connection, as
// net/http's client does, rather than fail as a transport error each
// time: the service was up all along.
func TestRunRedialsAConnectionClosedWhileIdle(t *testing.T) {
	if !looksAtIdle {
		t.Skip("a connection closed while it idled is not told apart here")
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(`{"status":"SUCCESS"}`))
	}))
	srv.Config.IdleTimeout = 20 * time.Millisecond
	srv.Start()
	defer srv.Close()
	// A payment every 2s, the second after the server closed the
	// connection of the first.
	o := options{url: srv.URL, clients: 1, duration: 2500 * time.Millisecond, customers: 10, rate: 0.5}
	rep, err := run(context.Background(), o, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if rep.errors != 0 || rep.statuses["SUCCESS"] != 2 {
		t.Fatalf("statuses %v, %d transport errors (the last: %v)", rep.statuses, rep.errors, rep.lastErr)
	}
}

// TestRunDoesNotResendOnABusyConnection: a connection in use without a
// pause that the server drops without an answer (it gave up on the
// payment, as at its write timeout under load) is a transport error; the
// payment does not go again, which would only add to the load.
func TestRunDoesNotResendOnABusyConnection(t *testing.T) {
	var payments atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/payment" && payments.Add(1) == 2 {
			panic(http.ErrAbortHandler) // the connection closed, no answer
		}
		w.Write([]byte(`{"status":"SUCCESS"}`))
	}))
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	defer srv.Close()
	o := options{url: srv.URL, clients: 1, duration: 300 * time.Millisecond, customers: 10}
	rep, err := run(context.Background(), o, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	// Every payment answered or dropped reached the server once; the one
	// in flight when the run ended (owed) may have reached it or not, as
	// the end of the run closes its connection. A payment sent again
	// would be served on top of those.
	sent := int64(rep.statuses["SUCCESS"] + rep.errors)
	if served := payments.Load(); rep.errors != 1 || served < sent || served > sent+int64(rep.owed) {
		t.Fatalf("statuses %v, %d transport errors, %d owed, %d payments served", rep.statuses, rep.errors, rep.owed, served)
	}
}

// TestHelpHidesTheToken: -h lists the flags without the API token taken
// from API_TOKEN, which would otherwise print as the -token flag's default.
func TestHelpHidesTheToken(t *testing.T) {
	const secret = "sekrit-token-4711"
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "LOADGEN_RUN_MAIN=1", "LOADGEN_ARGS=-h", "API_TOKEN="+secret)
	out, _ := cmd.CombinedOutput()
	if !strings.Contains(string(out), "-token") {
		t.Fatalf("loadgen -h does not list -token:\n%s", out)
	}
	if strings.Contains(string(out), secret) {
		t.Errorf("loadgen -h prints the API token:\n%s", out)
	}
}

// TestRunDoesNotResendAPaymentTheServerRead: at a low -rate a kept
// connection idles between payments; a server that reads the next
// payment on it and then drops the connection without an answer (it
// gave up on the payment) has had the payment. The payment is a transport
// error, and does not go again on a new connection: sent again, the
// server had it twice and the report showed no error.
func TestRunDoesNotResendAPaymentTheServerRead(t *testing.T) {
	var payments atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/payment" && payments.Add(1) == 2 {
			io.Copy(io.Discard, r.Body)
			panic(http.ErrAbortHandler) // the connection closed, no answer
		}
		w.Write([]byte(`{"status":"SUCCESS"}`))
	}))
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	defer srv.Close()
	// A payment every 1.2s, the second after the connection idled.
	o := options{url: srv.URL, clients: 1, duration: 2 * time.Second, customers: 10, rate: 1 / 1.2}
	rep, err := run(context.Background(), o, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if served := payments.Load(); rep.errors != 1 || rep.statuses["SUCCESS"] != 1 || served != 2 {
		t.Fatalf("statuses %v, %d transport errors, %d payments served", rep.statuses, rep.errors, served)
	}
}

// TestBaselineEchoesMetadataAndRefusesAStringAmount: as the service, the
// baseline answers with the payment's metadata as sent, and refuses an
// amount sent as a JSON string with a 400.
func TestBaselineEchoesMetadataAndRefusesAStringAmount(t *testing.T) {
	srv := httptest.NewServer(baselineHandler())
	defer srv.Close()
	resp, err := http.Post(srv.URL+"/payment", "application/json", strings.NewReader(`{"amount": 12.50, "customer_id": "c", "currency": "USD", "merchant_id": "m", "metadata": {"order": "o-1"}}`))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var got struct {
		Metadata map[string]string `json:"metadata"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&got); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("%d %v", resp.StatusCode, err)
	}
	if got.Metadata["order"] != "o-1" || len(got.Metadata) != 1 {
		t.Errorf("metadata %v, want the request's", got.Metadata)
	}
	bad, err := http.Post(srv.URL+"/payment", "application/json", strings.NewReader(`{"amount": "12.50", "customer_id": "c", "currency": "USD", "merchant_id": "m"}`))
	if err != nil {
		t.Fatal(err)
	}
	bad.Body.Close()
	if bad.StatusCode != http.StatusBadRequest {
		t.Errorf("an amount as a string: %d, want 400", bad.StatusCode)
	}
	if ct := bad.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("an error answered as %q, want application/json", ct)
	}
}

// TestRunLastsItsDurationAtALowRate: at a fixed rate whose last payment
// is scheduled well before the end (10/s for 250 ms: at 0, 100 and 200
// ms), the run still lasts -d and its payments a second are over -d;
// ended with its last answer, it reported 3 payments in about 200 ms,
// 15/s for a rate of 10.
func TestRunLastsItsDurationAtALowRate(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(`{"status":"SUCCESS"}`))
	}))
	defer srv.Close()
	o := options{url: srv.URL, clients: 1, duration: 250 * time.Millisecond, customers: 10, rate: 10}
	rep, err := run(context.Background(), o, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if rep.elapsed < o.duration {
		t.Fatalf("the run lasted %v of -d %v; %d decided, %.1f payments/s at -rate 10", rep.elapsed, o.duration, rep.decisions(), rep.rate())
	}
	if n := rep.decisions() + rep.owed; n != 3 {
		t.Fatalf("%d payments decided and %d owed, want 3 scheduled", rep.decisions(), rep.owed)
	}
}

// TestCloseEndsADialInProgress: a connection being set up when the run
// ends (a TLS handshake the server never answers, a dial whose SYN is
// dropped) is cut by close, as a request in flight is; it held close
// until the dial's timeout, so the run, and the time its payments a
// second are counted over, went on up to 10 s past its end.
func TestCloseEndsADialInProgress(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		if conn, err := ln.Accept(); err == nil {
			accepted <- conn // and never a byte of the handshake
		}
	}()
	c := &client{target: target{addr: ln.Addr().String(), host: ln.Addr().String(), tls: true}, timeout: 10 * time.Minute}
	done := make(chan error, 1)
	go func() {
		_, _, err := c.do(appendRequest(nil, c.target.host, []byte("{}"), "", ""))
		done <- err
	}()
	conn := <-accepted
	defer conn.Close()
	closed := make(chan struct{})
	go func() { c.close(); close(closed) }()
	// The guards are against hanging, not measures.
	select {
	case <-closed:
	case <-time.After(time.Minute):
		t.Fatal("close still waits for the dial a minute later")
	}
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("a request on a client closed while it dialled: no error")
		}
	case <-time.After(time.Minute):
		t.Fatal("the request still waits for the dial a minute after close")
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.conn != nil {
		t.Error("a connection kept after close")
	}
}

// TestRunTalksOnlyToTheAddressGiven: a service whose health check
// redirects elsewhere is probed where it was given, and nothing goes to
// the address it redirects to: the load generator talks only to the
// address it is given.
func TestRunTalksOnlyToTheAddressGiven(t *testing.T) {
	var elsewhere atomic.Int64
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		elsewhere.Add(1)
	}))
	defer other.Close()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" {
			http.Redirect(w, r, other.URL+"/healthz", http.StatusFound)
			return
		}
		w.Write([]byte(`{"status":"SUCCESS"}`))
	}))
	defer srv.Close()
	o := options{url: srv.URL, clients: 1, duration: 50 * time.Millisecond, customers: 10}
	rep, err := run(context.Background(), o, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if rep.decisions() == 0 {
		t.Fatal("no payment decided")
	}
	if n := elsewhere.Load(); n != 0 {
		t.Fatalf("%d requests went to the address the health check redirected to", n)
	}
}

// TestTokenRefusedIfNoHeaderCanCarryIt: an API token with a line break (a
// token file read with its newline) or another control character would
// end the Authorization header early and turn every request into
// garbage; it is refused before anything is dialled, naming -token and
// API_TOKEN without printing the token.
func TestTokenRefusedIfNoHeaderCanCarryIt(t *testing.T) {
	const secret = "sekrit-token-4711"
	for _, token := range []string{secret + "\n", secret + "\r\nX-Evil: 1", "sek\x7frit", " " + secret} {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), "LOADGEN_RUN_MAIN=1", "LOADGEN_ARGS=-url http://127.0.0.1:1", "API_TOKEN="+token)
		out, err := cmd.CombinedOutput()
		cancel()
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() != 2 || !strings.Contains(string(out), "-token") {
			t.Errorf("API_TOKEN %q: %v\n%s", token, err, out)
		}
		if strings.Contains(string(out), "sekrit") || strings.Contains(string(out), "rit") {
			t.Errorf("API_TOKEN %q: the token printed:\n%s", token, out)
		}
	}
}

// TestPrintRoundsNoShareToAllOrNone: one fraud of 4,561 let through is not
// a catch rate of 100.0%, nor is one false positive in a million a rate of
// 0.00%: a share that is neither all nor none is printed with the digits
// it takes to show so.
func TestPrintRoundsNoShareToAllOrNone(t *testing.T) {
	r := &report{elapsed: time.Second, fraudSent: 4561, fraudCaught: 4560, normalSent: 1_000_000, normalFlagged: 1}
	var out bytes.Buffer
	r.print(&out)
	for _, want := range []string{"fraud caught 4560 of 4561 (99.98%)", "false positives 1 of 1000000 (0.0001%)"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("no %q in:\n%s", want, out.String())
		}
	}
	r = &report{elapsed: time.Second, fraudSent: 3, fraudCaught: 3, normalSent: 3}
	out.Reset()
	r.print(&out)
	if want := "fraud caught 3 of 3 (100.0%)  false positives 0 of 3 (0.00%)\n"; !strings.Contains(out.String(), want) {
		t.Errorf("no %q in:\n%s", want, out.String())
	}
}

// TestCompareKeepsTheTokenFromTheBaseline: the service's API token is the
// service's; -baseline may name any address, and its requests carry a
// stand-in of the same length (the same bytes to read), never the token.
func TestCompareKeepsTheTokenFromTheBaseline(t *testing.T) {
	const token = "t0ken-of-the-service"
	var seen struct {
		sync.Mutex
		auth map[string]int
	}
	seen.auth = map[string]int{}
	base := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/payment" {
			seen.Lock()
			seen.auth[r.Header.Get("Authorization")]++
			seen.Unlock()
		}
		baselineHandler().ServeHTTP(w, r)
	}))
	defer base.Close()
	svc := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/payment" && r.Header.Get("Authorization") != "Bearer "+token {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		w.Write([]byte(`{"status":"SUCCESS"}`))
	}))
	defer svc.Close()
	o := options{url: svc.URL, clients: 1, duration: 50 * time.Millisecond, customers: 10, token: token}
	if err := compare(context.Background(), o, base.URL, 1, io.Discard); err != nil {
		t.Fatal(err)
	}
	seen.Lock()
	defer seen.Unlock()
	if len(seen.auth) == 0 {
		t.Fatal("the baseline was sent no payment")
	}
	for auth := range seen.auth {
		if strings.Contains(auth, token) || len(auth) != len("Bearer "+token) {
			t.Errorf("the baseline was sent Authorization %q", auth)
		}
	}
}

// TestRunLeavesNoConnectionOpen: every connection a run opened, the
// probe's and each client's, is closed by the time the run returns, in a
// closed loop and at a fixed rate: the server sees each one end.
func TestRunLeavesNoConnectionOpen(t *testing.T) {
	for _, rate := range []float64{0, 200} {
		var mu sync.Mutex
		open, opened := map[net.Conn]bool{}, 0
		changed := make(chan struct{}, 1)
		srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Write([]byte(`{"status":"SUCCESS"}`))
		}))
		srv.Config.ConnState = func(c net.Conn, s http.ConnState) {
			mu.Lock()
			defer mu.Unlock()
			switch s {
			case http.StateNew:
				open[c] = true
				opened++
			case http.StateClosed, http.StateHijacked:
				delete(open, c)
			}
			select {
			case changed <- struct{}{}:
			default:
			}
		}
		srv.Start()
		o := options{url: srv.URL, clients: 3, duration: 100 * time.Millisecond, customers: 10, rate: rate}
		if _, err := run(context.Background(), o, io.Discard); err != nil {
			t.Fatal(err)
		}
		guard := time.After(time.Minute) // against hanging, not a measure
		for {
			mu.Lock()
			n, all := len(open), opened
			mu.Unlock()
			if n == 0 {
				if all < 4 {
					t.Errorf("-rate %v: %d connections opened, want the probe's and 3 clients'", rate, all)
				}
				break
			}
			select {
			case <-changed:
				continue
			case <-guard:
				t.Fatalf("-rate %v: %d of %d connections still open a minute after the run", rate, n, all)
			}
		}
		srv.Close()
	}
}

// TestPrintShowsAShortOldestWait: a closed loop at full speed ends with
// payments in flight for well under a millisecond; the oldest wait is
// that, not "0s", and a long one still reads to the millisecond.
func TestPrintShowsAShortOldestWait(t *testing.T) {
	for wait, want := range map[time.Duration]string{
		437*time.Microsecond + 212: "the oldest waiting 437µs",
		1234567890:                 "the oldest waiting 1.235s",
	} {
		r := &report{elapsed: time.Second, owed: 2, oldestOwed: wait}
		var out bytes.Buffer
		r.print(&out)
		if !strings.Contains(out.String(), want) {
			t.Errorf("no %q in:\n%s", want, out.String())
		}
	}
}
