// Command loadgen drives the payment service with concurrent clients for a
// while, with a mix of normal and fraudulent payments, prints progress
// every second, then the payments decided a second, their latency
// percentiles, and the count and rate of each answer:
//
//	go run ./examples/payment/loadgen -c 100 -d 30s
//
// It talks only to the address it is given (default 127.0.0.1:3001) and
// stops by itself after -d. Each client keeps one HTTP/1.1 connection and
// writes its requests and reads its responses itself, as wrk does, rather
// than through net/http's client: the load generator shares the machine
// with the service, and net/http's client spends two goroutine hand-offs
// and several allocations on every request. A connection the service
// closed while it idled (a second or more, at a low -rate) is dialled
// again and the payment sent on the new one, as net/http's client does.
//
// Without -rate each client is a closed loop: it sends its next payment
// once the last is answered. An answer that turns a payment away (429,
// 503) is an answer: the next payment goes at once, Retry-After
// notwithstanding, so that the service meets the load it is given, and
// the report counts such answers and their rate apart from the payments
// decided. A transport error (a connection refused or dropped: the
// service is down) is not: the client waits 10ms before its next
// payment, twice as long after each further error in a row, up to
// 500ms, rather than spin on the CPU the service would restart on, and
// the report says how long the clients waited so in all. With -rate the
// schedule alone paces the sends.
package main

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/taipattern/taikit/examples/internal/httpapi"
)

type options struct {
	url         string
	clients     int
	duration    time.Duration
	fraud       float64
	customers   int
	idempotency bool
	token       string
	rate        float64       // payments per second in all; 0: as fast as the clients go
	urlFlag     string        // the flag url came from, for errors; "-url" if empty
	timeout     time.Duration // how long a payment may take; 0: requestTimeout
}

// reach parses o.url and checks that something answers GET /healthz
// there, waiting for the answer no longer than a request may take or ctx
// lasts. The probe goes as the payments do, on a connection of its own
// to the address given, closed after the answer: not through a proxy
// from the environment, nor after a redirect to another address.
func reach(ctx context.Context, o options) (target, error) {
	flag := cmp.Or(o.urlFlag, "-url")
	t, err := parseTarget(o.url)
	if err != nil {
		return target{}, fmt.Errorf("%s %w", flag, err)
	}
	c := &client{target: t, timeout: o.timeout}
	defer c.close()
	stop := context.AfterFunc(ctx, c.close) // ends the probe in flight
	defer stop()
	req := "GET /healthz HTTP/1.1\r\nHost: " + t.host + "\r\nConnection: close\r\n\r\n"
	if _, _, err = c.do([]byte(req)); ctx.Err() != nil {
		err = ctx.Err()
	}
	if err != nil {
		return target{}, fmt.Errorf("%s %s not reachable: %w", flag, o.url, err)
	}
	return t, nil
}

func main() {
	var o options
	var baseline, serve string
	var rounds int
	flag.StringVar(&o.url, "url", "http://127.0.0.1:3001", "payment service base URL")
	flag.StringVar(&baseline, "baseline", "", "also drive the baseline server at this base URL, alternating with the service for -rounds rounds of -d each, and compare")
	flag.IntVar(&rounds, "rounds", 3, "rounds of each with -baseline")
	flag.StringVar(&serve, "serve-baseline", "", "serve the baseline at this address (a bare net/http handler that decodes a payment and answers in the service's shape, nothing else) until interrupted")
	flag.IntVar(&o.clients, "c", 100, "concurrent clients")
	flag.DurationVar(&o.duration, "d", 10*time.Second, "how long to run")
	flag.Float64Var(&o.fraud, "fraud", 0.05, "share of fraudulent payments (amounts over four times the service's limit, a blacklisted country)")
	flag.IntVar(&o.customers, "customers", 10_000_000, "distinct customers to spread payments over (the service limits each customer)")
	flag.BoolVar(&o.idempotency, "idempotency", false, "send an Idempotency-Key with every request")
	flag.StringVar(&o.token, "token", os.Getenv("API_TOKEN"), "API token, if the service wants one (API_TOKEN)")
	flag.Lookup("token").DefValue = "" // -h does not show the token
	flag.Float64Var(&o.rate, "rate", 0, "send this many payments per second in all, on a fixed schedule, and measure each latency from its scheduled start (0: each client sends its next payment as soon as the last is answered)")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), usage, minErrorPause, maxErrorPause)
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "loadgen: unexpected arguments %q; every setting is a flag (-h lists them)\n", flag.Args())
		os.Exit(2)
	}
	if err := validate(o, rounds, baseline, serve); err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	switch {
	case serve != "":
		err = serveBaseline(ctx, serve)
	case baseline != "":
		err = compare(ctx, o, baseline, rounds, os.Stdout)
	default:
		var rep *report
		if rep, err = run(ctx, o, os.Stdout); err == nil {
			rep.print(os.Stdout)
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(1)
	}
}

// usage begins -h: what a client does with an answer that turns a
// payment away and with a transport error, as the package's doc says.
const usage = `usage: loadgen [flags]

Drives the payment service with concurrent clients and reports the payments
decided a second, their latency and every answer's count and rate.

Without -rate each client sends its next payment once the last is answered.
A 429 or 503 is an answer: the next payment goes at once (Retry-After is not
heeded), and such answers are counted apart from the payments decided. After
a transport error (the service down) a client waits %v, twice as long after
each further error in a row, up to %v; the report says how long the
clients waited so. With -rate the schedule alone paces the sends.

`

// maxClients is the most clients -c may ask for: the ports of one
// address, one connection each.
const maxClients = 65535

// validate names the first flag out of its range, with its value.
func validate(o options, rounds int, baseline, serve string) error {
	switch {
	case o.clients < 1:
		return fmt.Errorf("-c %d: at least one client", o.clients)
	case o.clients > maxClients:
		// Each client holds a connection of its own to one address, and
		// a machine has no more ports to reach it from; a count far
		// above would be allocated before the first dial, and exhaust
		// memory.
		return fmt.Errorf("-c %d: at most %d clients, each with a connection of its own", o.clients, maxClients)
	case o.duration <= 0:
		return fmt.Errorf("-d %v: the run must last a while", o.duration)
	case rounds < 1:
		return fmt.Errorf("-rounds %d: at least one round", rounds)
	case o.customers < 1:
		return fmt.Errorf("-customers %d: at least one customer", o.customers)
	case !(o.fraud >= 0 && o.fraud <= 1): // NaN too
		return fmt.Errorf("-fraud %v: a share between 0 and 1", o.fraud)
	case !(o.rate >= 0) || math.IsInf(o.rate, 1):
		return fmt.Errorf("-rate %v: payments a second, 0 (as fast as the clients go) or more", o.rate)
	case o.rate > 0 && time.Duration(float64(o.clients)/o.rate*float64(time.Second)) == 0:
		// Each client's interval would round to nothing: a closed loop
		// reported as a fixed rate.
		return fmt.Errorf("-rate %v: over a payment a nanosecond for each of -c %d clients", o.rate, o.clients)
	case o.rate > 0 && float64(o.clients)/o.rate*float64(time.Second) >= math.MaxInt64:
		// Each client's interval would overflow a time.Duration, which
		// wraps to a negative one: a closed loop reported as a fixed rate.
		return fmt.Errorf("-rate %v: each of -c %d clients would send less than a payment in 292 years", o.rate, o.clients)
	case serve != "" && baseline != "":
		return fmt.Errorf("-serve-baseline %s and -baseline %s: serve the baseline in one process and drive it from another", serve, baseline)
	}
	// A token no request carries as it is (a line break would end the
	// Authorization header and spoil every request after it) is refused,
	// on the service's rules, without being shown.
	if err := httpapi.CheckToken(o.token); err != nil {
		return fmt.Errorf("-token (or API_TOKEN) %w", err)
	}
	return nil
}

// compare drives the service and the baseline in turn, rounds times each
// for o.duration, so that both meet the machine in the same moods, and
// prints each round, then payments/s and p99 of each over all rounds and
// the service's share of the baseline's. An interrupt ends it with the
// rounds complete by then.
func compare(ctx context.Context, o options, baseline string, rounds int, w io.Writer) error {
	bo := o
	bo.url, bo.urlFlag = baseline, "-baseline"
	// The API token is the service's, and -baseline may name any
	// address: the baseline gets a stand-in of the same length, the same
	// bytes to read.
	bo.token = strings.Repeat("x", len(o.token))
	// Both answer before either is driven: a mistyped -baseline is not
	// found out a round later.
	for _, oo := range []options{o, bo} {
		if _, err := reach(ctx, oo); err != nil {
			return err
		}
	}
	var svc, base []*report
rounds:
	for i := range rounds {
		for _, t := range []struct {
			name string
			o    options
			into *[]*report
		}{{"service", o, &svc}, {"baseline", bo, &base}} {
			rep, err := run(ctx, t.o, io.Discard)
			if ctx.Err() != nil {
				// Interrupted: the round is cut short, and the complete
				// ones are what there is to compare.
				if len(base) == 0 {
					return fmt.Errorf("interrupted in round 1: %w", ctx.Err())
				}
				svc = svc[:len(base)]
				break rounds
			}
			if err != nil {
				return fmt.Errorf("%s: %w", t.name, err)
			}
			*t.into = append(*t.into, rep)
			fmt.Fprintf(w, "round %d %-8s %s\n", i+1, t.name, rep.summary())
		}
	}
	s, b := merge(svc), merge(base)
	fmt.Fprintf(w, "\nservice   %s\n", s.summary())
	fmt.Fprintf(w, "baseline  %s\n", b.summary())
	if b.decisions() == 0 {
		// Nothing to divide by: a baseline that turns every payment
		// away, or is not the baseline at all.
		fmt.Fprintln(w, "service / baseline: throughput not known: the baseline decided no payment")
		s.print(w)
		return nil
	}
	fmt.Fprintf(w, "service / baseline: throughput %.2f×", s.rate()/b.rate())
	switch ratio := float64(s.quantile(0.99)) / float64(b.quantile(0.99)); {
	case len(s.latencies) == 0:
	case b.bound(0.99):
		fmt.Fprint(w, ", p99 not known (the baseline's is a lower bound)")
	case s.bound(0.99):
		fmt.Fprintf(w, ", p99 >= %.2f×", ratio)
	default:
		fmt.Fprintf(w, ", p99 %.2f×", ratio)
	}
	fmt.Fprintln(w, " (decided payments only)")
	s.print(w)
	return nil
}

// summary is a run's line in a comparison: payments decided a second and
// their p99, and the rate of other answers if there were any.
func (r *report) summary() string {
	p99 := "none"
	if len(r.latencies) > 0 {
		p99 = r.percentile(0.99)
	}
	s := fmt.Sprintf("%8.0f payments/s  p99 %v", r.rate(), p99)
	if len(r.other) > 0 {
		s += fmt.Sprintf("  (and %.0f other answers/s)", float64(len(r.other))/r.elapsed.Seconds())
	}
	return s
}

// merge adds reports of several runs up.
func merge(reps []*report) *report {
	m := &report{statuses: map[string]int{}}
	for _, r := range reps {
		m.elapsed += r.elapsed
		m.latencies = append(m.latencies, r.latencies...)
		m.other = append(m.other, r.other...)
		m.errors += r.errors
		m.paused += r.paused
		if r.timedOut > 0 && (m.timedOut == 0 || r.minTimedOut < m.minTimedOut) {
			m.minTimedOut = r.minTimedOut
		}
		m.timedOut += r.timedOut
		m.timeout = max(m.timeout, r.timeout)
		m.lastErr = cmp.Or(r.lastErr, m.lastErr)
		m.owed += r.owed
		m.paced = m.paced || r.paced
		m.oldestOwed = max(m.oldestOwed, r.oldestOwed)
		m.fraudSent += r.fraudSent
		m.fraudCaught += r.fraudCaught
		m.normalSent += r.normalSent
		m.normalFlagged += r.normalFlagged
		for k, v := range r.statuses {
			m.statuses[k] += v
		}
	}
	return m
}

// report is what a run measured.
type report struct {
	elapsed time.Duration
	// The latencies of the answers that decided a payment (see decided)
	// and of the requests cut at the timeout, and of the other answers:
	// errors, 429s, 503s.
	latencies, other []time.Duration
	// The count of each answer: a decided one by its status, another by
	// its status and HTTP code ("FAILED 503"), or by its code alone
	// ("HTTP 400") when it has no status.
	statuses map[string]int
	errors   int
	// How long the closed-loop clients waited in all after transport
	// errors (minErrorPause, doubling to maxErrorPause): time the run
	// lasted, and its payments a second count, but sent nothing.
	paused time.Duration
	// The requests cut at the timeout, among the latencies at how long
	// each waited: each took at least that. A percentile at or above the
	// shortest of their waits may be a lower bound.
	timedOut    int
	minTimedOut time.Duration
	timeout     time.Duration
	lastErr     error // the last transport error, if any
	// The payments owed when the run ended, and how long the oldest of
	// them had waited: with -rate (paced), those scheduled before the
	// end and not answered (cut off in flight, or never sent for a
	// stall); in a closed loop, those in flight, one a client at most.
	owed       int
	oldestOwed time.Duration
	paced      bool
	// The fraud the run sent and what the service made of it: labelled
	// fraud blocked (or held for review), and normal payments blocked or
	// held, among the payments answered with a decision (not 429 or 503).
	fraudSent, fraudCaught, normalSent, normalFlagged int
}

// unanswered is an error when no request of the run was answered: the
// service went down after the probe, or stalled for the whole run.
func (r *report) unanswered() error {
	if r.decisions()+len(r.other) > 0 {
		return nil
	}
	if r.lastErr != nil {
		return fmt.Errorf("no payment was answered in %v: %d transport errors, %d timed out, the last: %w", r.elapsed.Round(time.Millisecond), r.errors, r.timedOut, r.lastErr)
	}
	return fmt.Errorf("no payment was answered in %v", r.elapsed.Round(time.Millisecond))
}

// refused is an error when the service turned most of the run's requests
// away for want of credentials: the figures would measure its 401s.
func (r *report) refused() error {
	n, denied := 0, r.statuses["HTTP 401"]+r.statuses["HTTP 403"]
	for _, v := range r.statuses {
		n += v
	}
	if denied > 0 && 2*denied >= n {
		return fmt.Errorf("the service refused %d of %d requests with 401 or 403: pass its API token with -token (or API_TOKEN)", denied, n)
	}
	return nil
}

// rate is the payments decided a second: errors answered fast are not
// throughput.
func (r *report) rate() float64 { return float64(r.decisions()) / r.elapsed.Seconds() }

// decisions is the count of payments decided.
func (r *report) decisions() int { return len(r.latencies) - r.timedOut }

// quantile returns the latency of decided payments and timed-out
// requests at q, as nearestRank.
func (r *report) quantile(q float64) time.Duration { return nearestRank(r.latencies, q) }

// bound reports whether the latency at q may be a lower bound: a request
// that timed out waited no longer than it, and would have taken longer.
func (r *report) bound(q float64) bool {
	return r.timedOut > 0 && r.quantile(q) >= r.minTimedOut
}

// percentile formats the latency at q, ">= " before a lower bound.
func (r *report) percentile(q float64) string {
	if r.bound(q) {
		return ">= " + r.quantile(q).String()
	}
	return r.quantile(q).String()
}

// nearestRank returns the latency at q by nearest rank, the ceil(q·n)-th
// smallest of n (the p99 of 100 is the 99th), and 0 without latencies;
// it sorts lat.
func nearestRank(lat []time.Duration, q float64) time.Duration {
	n := len(lat)
	if n == 0 {
		return 0
	}
	if !slices.IsSorted(lat) {
		slices.Sort(lat)
	}
	return lat[min(n-1, max(0, int(math.Ceil(q*float64(n)))-1))]
}

// decided reports whether an answer decided a payment, as the service
// answers one: SUCCESS with 200, REVIEW with 202, FRAUD_BLOCKED with 402.
// Anything else (FAILED with 502, 503 or 504, RATE_LIMITED with 429, an
// error with 400) decided nothing.
func decided(code int, status string) bool {
	switch status {
	case "SUCCESS":
		return code == http.StatusOK
	case "REVIEW":
		return code == http.StatusAccepted
	case "FRAUD_BLOCKED":
		return code == http.StatusPaymentRequired
	}
	return false
}

// After a transport error a closed-loop client waits minErrorPause before
// its next payment, twice as long after each further error in a row, up
// to maxErrorPause.
const (
	minErrorPause = 10 * time.Millisecond
	maxErrorPause = 500 * time.Millisecond
)

func run(ctx context.Context, o options, progress io.Writer) (*report, error) {
	target, err := reach(ctx, o)
	if err != nil {
		return nil, err
	}

	var done, others atomic.Int64
	type result struct {
		lat      []time.Duration
		other    []time.Duration
		statuses map[string]int
		errors   int
		lastErr  error
		// as in report
		paused      time.Duration
		timedOut    int
		minTimedOut time.Duration
		owed        int
		oldestOwed  time.Duration
		// fraud accounting, as in report
		fraudSent, fraudCaught, normalSent, normalFlagged int
	}
	results := make([]result, o.clients)
	// The run ends at start + duration by the clock, not when ctx's
	// timer fires: on a busy machine it fires late, and a schedule behind
	// would send a burst meanwhile. Nor before: the payments a second are
	// counted over the whole run, at a low -rate too, where the
	// schedule's last payment is answered well before the end.
	start := time.Now()
	end := start.Add(o.duration)
	ctx, cancel := context.WithDeadline(ctx, end)
	defer cancel()
	var wg sync.WaitGroup
	for i := range o.clients {
		wg.Go(func() {
			r := &results[i]
			r.statuses = map[string]int{}
			rng := rand.New(rand.NewPCG(uint64(i), uint64(start.UnixNano())))
			c := &client{target: target, timeout: o.timeout}
			defer c.close()
			stop := context.AfterFunc(ctx, c.close) // unblocks a request in flight
			defer stop()
			var body, req []byte
			// With -rate, client i sends its k-th payment at
			// start + (k·clients + i)/rate, and a payment's latency runs
			// from that time: a slow answer that delays the next send
			// counts against the service, not against the schedule.
			var interval time.Duration
			next := start
			if o.rate > 0 {
				interval = time.Duration(float64(o.clients) / o.rate * float64(time.Second))
				next = start.Add(time.Duration(float64(i) / o.rate * float64(time.Second)))
			}
			if interval > 0 {
				// The payments still owed when the client stops: left
				// out of the latencies, a stall at the end of the run
				// would leave no trace but a lower rate.
				defer func() {
					stopped := end
					if now := time.Now(); now.Before(end) { // interrupted
						stopped = now
					}
					if next.Before(stopped) {
						r.owed = int((stopped.Sub(next) + interval - 1) / interval)
						r.oldestOwed = stopped.Sub(next)
					}
				}()
			}
			pause := minErrorPause
			for ctx.Err() == nil {
				if interval > 0 && !next.Before(end) {
					<-ctx.Done() // the schedule is done; the run is not
					return
				}
				if interval == 0 && !time.Now().Before(end) {
					return
				}
				if interval > 0 {
					if wait := time.Until(next); wait > 0 {
						select {
						case <-time.After(wait):
						case <-ctx.Done():
							return
						}
					}
				}
				var fraud bool
				body, fraud = appendPayment(body[:0], rng, o)
				key := ""
				if o.idempotency {
					key = "lg-" + strconv.FormatUint(rng.Uint64(), 36)
				}
				req = appendRequest(req[:0], target.host, body, key, o.token)
				t0 := time.Now()
				if interval > 0 {
					t0 = next
					next = next.Add(interval)
				}
				code, resp, err := c.do(req)
				if err != nil && ctx.Err() == nil && isTimeout(err) {
					// Cut at the timeout: slower than anything answered,
					// so counted at its wait, a lower bound, not dropped
					// as an error to make the percentiles look better.
					waited := time.Since(t0)
					if r.timedOut == 0 || waited < r.minTimedOut {
						r.minTimedOut = waited
					}
					r.timedOut++
					r.lat = append(r.lat, waited)
					r.lastErr = err
					continue
				}
				if err != nil && ctx.Err() != nil {
					// Cut off by the end of the run, not a transport
					// error: owed, and no pause follows.
					if interval > 0 {
						next = t0 // still owed, counted as the client stops
					} else {
						// In flight when the run ended: owed, as at a
						// fixed rate, not dropped.
						stopped := time.Now()
						if stopped.After(end) {
							stopped = end
						}
						r.owed, r.oldestOwed = 1, max(0, stopped.Sub(t0))
					}
					return
				}
				if err != nil {
					r.errors++
					r.lastErr = err
					// A service that is down refuses a connection at once:
					// wait before the next, longer while it stays down,
					// rather than spin on the CPU it would restart on. With
					// -rate the schedule paces the sends.
					if interval == 0 {
						began := time.Now()
						select {
						case <-time.After(pause):
							r.paused += time.Since(began)
						case <-ctx.Done():
							r.paused += time.Since(began)
							return
						}
						pause = min(2*pause, maxErrorPause)
					}
					continue
				}
				pause = minErrorPause
				lat, status := time.Since(t0), statusOf(resp)
				switch {
				case decided(code, status):
					r.lat = append(r.lat, lat)
					r.statuses[status]++
					caught := status != "SUCCESS"
					if fraud {
						r.fraudSent++
						if caught {
							r.fraudCaught++
						}
					} else {
						r.normalSent++
						if caught {
							r.normalFlagged++
						}
					}
					done.Add(1)
				default:
					key := "HTTP " + strconv.Itoa(code)
					if status != "" {
						key = status + " " + strconv.Itoa(code)
					}
					r.other = append(r.other, lat)
					r.statuses[key]++
					others.Add(1)
				}
			}
		})
	}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	finished := make(chan struct{})
	go func() { wg.Wait(); close(finished) }()
	last, lastAt := int64(0), start // decided payments
	for {
		select {
		case <-finished:
			rep := &report{elapsed: time.Since(start), statuses: map[string]int{}, timeout: cmp.Or(o.timeout, requestTimeout), paced: o.rate > 0}
			for _, r := range results {
				rep.latencies = append(rep.latencies, r.lat...)
				rep.other = append(rep.other, r.other...)
				rep.errors += r.errors
				rep.paused += r.paused
				if r.timedOut > 0 && (rep.timedOut == 0 || r.minTimedOut < rep.minTimedOut) {
					rep.minTimedOut = r.minTimedOut
				}
				rep.timedOut += r.timedOut
				rep.lastErr = cmp.Or(r.lastErr, rep.lastErr)
				rep.owed += r.owed
				rep.oldestOwed = max(rep.oldestOwed, r.oldestOwed)
				rep.fraudSent += r.fraudSent
				rep.fraudCaught += r.fraudCaught
				rep.normalSent += r.normalSent
				rep.normalFlagged += r.normalFlagged
				for k, v := range r.statuses {
					rep.statuses[k] += v
				}
			}
			return rep, cmp.Or(rep.unanswered(), rep.refused())
		case now := <-tick.C:
			n := done.Load()
			fmt.Fprintf(progress, "%5.0fs  %8d payments decided  %8.0f/s  %8d other answers\n", now.Sub(start).Seconds(), n, float64(n-last)/now.Sub(lastAt).Seconds(), others.Load())
			last, lastAt = n, now
		}
	}
}

// appendPayment appends one request body, and whether it is fraud: normal
// most of the time, and a fraudulent one (far too large, or from a
// blacklisted country) at the -fraud rate. It builds the JSON by hand: the
// load generator shares the machine with the service, and every cycle it
// spends is one the service lacks.
func appendPayment(b []byte, rng *rand.Rand, o options) ([]byte, bool) {
	cents := rng.IntN(20000) + 100 // 1.00 to 200.99
	country := false
	fraud := rng.Float64() < o.fraud
	if fraud {
		if rng.IntN(2) == 0 {
			cents = 2000001 + rng.IntN(10000000) // over four times the service's 5,000 limit: blocked
		} else {
			country = true
		}
	}
	b = append(b, `{"amount": `...)
	b = strconv.AppendInt(b, int64(cents/100), 10)
	b = append(b, '.', byte('0'+cents/10%10), byte('0'+cents%10))
	b = append(b, `, "customer_id": "cust_`...)
	b = strconv.AppendInt(b, int64(rng.IntN(o.customers)), 10)
	b = append(b, `", "currency": "USD", "merchant_id": "merc_`...)
	b = strconv.AppendInt(b, int64(rng.IntN(100)), 10)
	b = append(b, '"')
	if country {
		b = append(b, `, "location": {"country": "KP"}`...)
	}
	return append(b, '}'), fraud
}

// statusOf finds the value of the top-level "status" field of a payment
// response without decoding the rest.
func statusOf(body []byte) string {
	const key = `"status":"`
	i := bytes.Index(body, []byte(key))
	if i < 0 {
		return ""
	}
	rest := body[i+len(key):]
	j := bytes.IndexByte(rest, '"')
	if j < 0 {
		return ""
	}
	switch status := rest[:j]; string(status) {
	case "SUCCESS":
		return "SUCCESS"
	case "FRAUD_BLOCKED":
		return "FRAUD_BLOCKED"
	case "REVIEW":
		return "REVIEW"
	case "FAILED":
		return "FAILED"
	case "RATE_LIMITED":
		return "RATE_LIMITED"
	default:
		return string(status)
	}
}

// print writes the report: the payments decided and their rate, the
// other answers and theirs, the latency percentiles of each, then the
// fraud caught and the count, share and rate of each answer.
func (r *report) print(w io.Writer) {
	n, secs := r.decisions(), r.elapsed.Seconds()
	answers := n + len(r.other)
	fmt.Fprintf(w, "\n%d payments decided in %v: %.0f payments/s; %d other answers, %.0f/s; %d timed out; %d transport errors\n",
		n, r.elapsed.Round(time.Millisecond), r.rate(), len(r.other), float64(len(r.other))/secs, r.timedOut, r.errors)
	if r.paused > 0 {
		fmt.Fprintf(w, "  clients waited %v in all after transport errors (%v, doubled after each further error in a row up to %v), sending nothing: the payments a second count that time\n",
			r.paused.Round(time.Millisecond), minErrorPause, maxErrorPause)
	}
	if len(r.latencies) > 0 {
		q := r.percentile
		label := "latency of decided payments"
		if r.timedOut > 0 {
			label += " and timed-out requests"
		}
		fmt.Fprintf(w, "%s  p50 %v  p90 %v  p99 %v  max %v\n", label, q(0.50), q(0.90), q(0.99), q(1))
		if r.timedOut > 0 {
			fmt.Fprintf(w, "  >=: %d requests timed out after %v, each counted at its wait, a lower bound, and not as decided\n", r.timedOut, r.timeout)
		}
	}
	if len(r.other) > 0 {
		q := func(q float64) time.Duration { return nearestRank(r.other, q) }
		fmt.Fprintf(w, "latency of other answers  p50 %v  p90 %v  p99 %v  max %v\n", q(0.50), q(0.90), q(0.99), q(1))
	}
	// To the millisecond, or the microsecond below one: a closed loop at
	// full speed ends with payments in flight for less, not for 0s.
	oldest := r.oldestOwed.Round(time.Millisecond)
	if r.oldestOwed < time.Millisecond {
		oldest = r.oldestOwed.Round(time.Microsecond)
	}
	switch {
	case r.owed > 0 && r.paced:
		fmt.Fprintf(w, "%d scheduled payments not answered by the end, the oldest waiting %v: the latencies above leave them out\n", r.owed, oldest)
	case r.owed > 0:
		fmt.Fprintf(w, "%d payments in flight when the run ended, not answered, the oldest waiting %v: the latencies above leave them out\n", r.owed, oldest)
	}
	var fraud []string
	if r.fraudSent > 0 {
		fraud = append(fraud, fmt.Sprintf("fraud caught %d of %d (%s)", r.fraudCaught, r.fraudSent, percent(r.fraudCaught, r.fraudSent, 1)))
	}
	if r.normalSent > 0 {
		fraud = append(fraud, fmt.Sprintf("false positives %d of %d (%s)", r.normalFlagged, r.normalSent, percent(r.normalFlagged, r.normalSent, 2)))
	}
	if len(fraud) > 0 {
		fmt.Fprintln(w, strings.Join(fraud, "  "))
	}
	keys := make([]string, 0, len(r.statuses))
	for k := range r.statuses {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		fmt.Fprintf(w, "  %-16s %8d  %5.1f%%  %8.0f/s\n", k, r.statuses[k], 100*float64(r.statuses[k])/float64(answers), float64(r.statuses[k])/secs)
	}
}

// percent formats n of all (all > 0) as a percentage with digits
// decimals, or with as many more as it takes for a share that is neither
// none nor all not to read as 0 or 100: one fraud let through of 4,561 is
// 99.98%, not 100.0%.
func percent(n, all, digits int) string {
	p := 100 * float64(n) / float64(all)
	s := strconv.FormatFloat(p, 'f', digits, 64)
	for d := digits + 1; n > 0 && n < all && d <= 12; d++ {
		if v, _ := strconv.ParseFloat(s, 64); v != 0 && v != 100 {
			break
		}
		s = strconv.FormatFloat(p, 'f', d, 64)
	}
	return s + "%"
}

// isTimeout reports whether err is the request's timeout, not a refusal
// or a connection lost.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
