package taihttp_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"pgregory.net/rapid"

	"github.com/taipattern/taikit/jidoka"
	"github.com/taipattern/taikit/taihttp"
)

// countingBase hands each attempt to a real transport and counts the
// response bodies it gave that are not closed yet.
type countingBase struct {
	rt   http.RoundTripper
	open atomic.Int32
	sent atomic.Int32
}

func (c *countingBase) RoundTrip(r *http.Request) (*http.Response, error) {
	c.sent.Add(1)
	resp, err := c.rt.RoundTrip(r)
	if err == nil {
		c.open.Add(1)
		resp.Body = &countedBody{ReadCloser: resp.Body, open: &c.open}
	}
	return resp, err
}

type countedBody struct {
	io.ReadCloser
	open *atomic.Int32
	once sync.Once
}

func (b *countedBody) Close() error {
	b.once.Do(func() { b.open.Add(-1) })
	return b.ReadCloser.Close()
}

// scriptServer answers the n-th request (in the order they come) with the
// n-th step of the script, and records each request's method and body.
type scriptServer struct {
	*httptest.Server
	mu     sync.Mutex
	run    int // requests of another run (a hedge's loser, late) are answered 410
	steps  []scriptStep
	n      int
	bodies []string
	// cut says of each copy whether its body ended before its end: the
	// client gave the copy up while sending it (a hedge's loser).
	cut []bool
}

type scriptStep struct {
	status     int
	retryAfter string
	slow       bool // waits for the client to give up, or a while
	bodyLen    int
}

func (s *scriptServer) serve(w http.ResponseWriter, r *http.Request) {
	b, err := io.ReadAll(r.Body)
	s.mu.Lock()
	if r.Header.Get("X-Run") != strconv.Itoa(s.run) {
		s.mu.Unlock()
		w.WriteHeader(http.StatusGone)
		return
	}
	i := s.n
	s.n++
	s.bodies = append(s.bodies, string(b))
	s.cut = append(s.cut, err != nil)
	step := scriptStep{status: http.StatusOK}
	if i < len(s.steps) {
		step = s.steps[i]
	}
	s.mu.Unlock()
	if step.slow {
		select {
		case <-r.Context().Done():
			return
		case <-time.After(50 * time.Millisecond):
		}
	}
	if step.retryAfter != "" {
		w.Header().Set("Retry-After", step.retryAfter)
	}
	w.Header().Set("X-Step", strconv.Itoa(i))
	w.WriteHeader(step.status)
	_, _ = io.WriteString(w, strings.Repeat("x", step.bodyLen))
}

// reset starts a run with the script steps, and returns the X-Run header
// value its requests carry.
func (s *scriptServer) reset(steps []scriptStep) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.run++
	s.steps, s.n, s.bodies, s.cut = steps, 0, nil, nil
	return strconv.Itoa(s.run)
}

// got returns the body of each copy the server took, and whether it was
// cut.
func (s *scriptServer) got() ([]string, []bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.bodies), slices.Clone(s.cut)
}

// Whatever the server answers, and whatever the method, body and options:
// a request is sent more than once only when it may be, each copy with
// the whole body; the response returned is the first that succeeded, or
// the last that failed on its status; and every other response's body is
// closed by the time RoundTrip returns.
func TestTransportProperty(t *testing.T) {
	srv := &scriptServer{}
	srv.Server = httptest.NewServer(http.HandlerFunc(srv.serve))
	defer srv.Close()
	tcp := srv.Client().Transport.(*http.Transport).Clone()
	defer tcp.CloseIdleConnections()
	statuses := []int{200, 201, 204, 400, 404, 408, 429, 500, 502, 503, 504}
	rapid.Check(t, func(t *rapid.T) {
		hedged := rapid.Bool().Draw(t, "hedged")
		steps := rapid.SliceOfN(rapid.Custom(func(t *rapid.T) scriptStep {
			return scriptStep{
				status:     rapid.SampledFrom(statuses).Draw(t, "status"),
				retryAfter: rapid.SampledFrom([]string{"", "0", "x", "-1", "Thu, 01 Jan 1970 00:00:00 GMT"}).Draw(t, "retryAfter"),
				slow:       hedged && rapid.IntRange(0, 3).Draw(t, "slow") == 0,
				bodyLen:    rapid.SampledFrom([]int{0, 10, 70 << 10}).Draw(t, "bodyLen"),
			}
		}), 0, 5).Draw(t, "steps")
		run := srv.reset(steps)
		method := rapid.SampledFrom([]string{"GET", "HEAD", "PUT", "DELETE", "POST", "PATCH"}).Draw(t, "method")
		body := rapid.SampledFrom([]string{"", "payload", strings.Repeat("b", 100<<10)}).Draw(t, "body")
		if method == "GET" || method == "HEAD" {
			body = ""
		}
		key := rapid.SampledFrom([]string{"", "k1", " "}).Draw(t, "key")
		anyMethod := rapid.Bool().Draw(t, "anyMethod")
		attempts := rapid.IntRange(1, 4).Draw(t, "attempts")

		base := &countingBase{rt: tcp}
		opts := taihttp.TransportOptions{Base: base, RetryNonIdempotent: anyMethod}
		retry, err := jidoka.NewRetry(jidoka.RetryOptions{MaxAttempts: attempts, BaseDelay: time.Microsecond, MaxDelay: time.Microsecond})
		if err != nil {
			t.Fatal(err)
		}
		opts.Retry = retry
		if hedged {
			h, err := jidoka.NewHedge(jidoka.HedgeOptions{Delay: 5 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			opts.Hedge = h
		}
		tr, err := taihttp.NewTransport(opts)
		if err != nil {
			t.Fatal(err)
		}
		req, err := http.NewRequest(method, srv.URL, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		if body == "" {
			req, _ = http.NewRequest(method, srv.URL, nil)
		}
		if key != "" {
			req.Header.Set("Idempotency-Key", key)
		}
		req.Header.Set("X-Run", run)
		resp, err := tr.RoundTrip(req)
		if err != nil {
			t.Fatalf("RoundTrip: %v", err)
		}
		// The one returned may be open, unless it failed on its status
		// and was read into memory.
		if n := base.open.Load(); n > 1 {
			t.Fatalf("%d response bodies open after RoundTrip, want the one returned at most", n)
		}
		got, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatalf("reading the body: %v", err)
		}
		_ = resp.Body.Close()
		if n := base.open.Load(); n != 0 {
			t.Fatalf("%d response bodies open after Close", n)
		}

		sent, cut := srv.got()
		idempotent := slices.Contains([]string{"GET", "HEAD", "PUT", "DELETE"}, method)
		mayRetry := idempotent || anyMethod || key == "k1"
		mayHedge := hedged && (idempotent || anyMethod) && key != "k1"
		for i, b := range sent {
			// A hedge's loser given up while it was sent ends short on
			// the server; a copy sent whole carries the whole body, and
			// only a loser, which two copies in flight make, is given up.
			if cut[i] && mayHedge && strconv.Itoa(i) != resp.Header.Get("X-Step") {
				continue
			}
			if cut[i] {
				t.Fatalf("copy %d was cut after %d bytes of %d", i, len(b), len(body))
			}
			if b != body {
				t.Fatalf("copy %d carried %d bytes, want %d", i, len(b), len(body))
			}
		}
		if !mayRetry && len(sent) > 1 {
			t.Fatalf("%s sent %d times", method, len(sent))
		}
		if !mayHedge {
			// One copy at a time: the attempts are the steps in order,
			// up to the first that succeeds.
			want := 1
			if mayRetry {
				for want < attempts && want <= len(steps) && taihttp.DefaultRetryStatus(steps[want-1].status) {
					want++
				}
			}
			if len(sent) != want {
				t.Fatalf("sent %d copies, want %d", len(sent), want)
			}
			if step := strconv.Itoa(want - 1); resp.Header.Get("X-Step") != step {
				t.Fatalf("returned the answer to copy %s, want %s", resp.Header.Get("X-Step"), step)
			}
		}
		if taihttp.DefaultRetryStatus(resp.StatusCode) && (mayRetry || mayHedge) {
			// A failure is returned only when no copy succeeded.
			for i := range min(len(sent), len(steps)) {
				if !taihttp.DefaultRetryStatus(steps[i].status) {
					t.Fatalf("returned %d, yet copy %d got %d", resp.StatusCode, i, steps[i].status)
				}
			}
			if len(sent) > len(steps) {
				t.Fatalf("returned %d, yet copy %d got 200", resp.StatusCode, len(steps))
			}
		}
		if i, err := strconv.Atoi(resp.Header.Get("X-Step")); err == nil && i < len(steps) {
			if resp.StatusCode != steps[i].status {
				t.Fatalf("status %d, the server said %d", resp.StatusCode, steps[i].status)
			}
			if method != "HEAD" && len(got) != steps[i].bodyLen && resp.StatusCode != 204 {
				t.Fatalf("body of %d bytes, the server sent %d", len(got), steps[i].bodyLen)
			}
		}
	})
}

// When the caller's context ends, every attempt ends with it: RoundTrip
// returns at once with the context's error, or a response that came in
// before, and no handler of the server is left waiting for its client.
func TestTransportCancelEndsEveryAttemptProperty(t *testing.T) {
	var running atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		running.Add(1)
		defer running.Add(-1)
		_, _ = io.Copy(io.Discard, r.Body)
		if r.Header.Get("X-Fail") != "" {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		<-r.Context().Done()
	}))
	defer srv.Close()
	tcp := srv.Client().Transport.(*http.Transport).Clone()
	defer tcp.CloseIdleConnections()
	rapid.Check(t, func(t *rapid.T) {
		base := &countingBase{rt: tcp}
		opts := taihttp.TransportOptions{Base: base}
		if rapid.Bool().Draw(t, "retry") {
			r, err := jidoka.NewRetry(jidoka.RetryOptions{MaxAttempts: 3, BaseDelay: time.Microsecond})
			if err != nil {
				t.Fatal(err)
			}
			opts.Retry = r
		}
		if rapid.Bool().Draw(t, "hedge") {
			h, err := jidoka.NewHedge(jidoka.HedgeOptions{Delay: time.Duration(rapid.IntRange(1, 5).Draw(t, "hedgeDelay")) * time.Millisecond, MaxHedges: 2})
			if err != nil {
				t.Fatal(err)
			}
			opts.Hedge = h
		}
		if rapid.Bool().Draw(t, "timeout") {
			opts.AttemptTimeout = time.Duration(rapid.IntRange(1, 20).Draw(t, "attemptTimeout")) * time.Millisecond
		}
		tr, err := taihttp.NewTransport(opts)
		if err != nil {
			t.Fatal(err)
		}
		method := rapid.SampledFrom([]string{"GET", "PUT", "POST"}).Draw(t, "method")
		ctx, cancel := context.WithCancel(context.Background())
		req, _ := http.NewRequestWithContext(ctx, method, srv.URL, strings.NewReader("body"))
		if rapid.Bool().Draw(t, "fail") {
			req.Header.Set("X-Fail", "1")
		}
		after := time.Duration(rapid.IntRange(0, 30).Draw(t, "cancelAfter")) * time.Millisecond
		stop := time.AfterFunc(after, cancel)
		defer stop.Stop()
		begin := time.Now()
		resp, err := tr.RoundTrip(req)
		if took := time.Since(begin); took > after+2*time.Second {
			t.Fatalf("RoundTrip took %v, the context ended after %v", took, after)
		}
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			_ = resp.Body.Close()
		}
		cancel()
		if n := base.open.Load(); n != 0 {
			t.Fatalf("%d response bodies open", n)
		}
		deadline := time.Now().Add(2 * time.Second)
		for running.Load() != 0 {
			if time.Now().After(deadline) {
				t.Fatalf("%d handlers still wait for their client", running.Load())
			}
			time.Sleep(time.Millisecond)
		}
	})
}
