// Command loadgen drives the payment service with concurrent clients for a
// while, with a mix of normal and fraudulent payments, prints progress
// every second, then the throughput, latency percentiles and the count of
// each status:
//
//	go run ./examples/payment/loadgen -c 100 -d 30s
//
// It talks only to the address it is given (default 127.0.0.1:3001) and
// stops by itself after -d.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

type options struct {
	url         string
	clients     int
	duration    time.Duration
	fraud       float64
	customers   int
	idempotency bool
	token       string
}

func main() {
	var o options
	flag.StringVar(&o.url, "url", "http://127.0.0.1:3001", "payment service base URL")
	flag.IntVar(&o.clients, "c", 100, "concurrent clients")
	flag.DurationVar(&o.duration, "d", 10*time.Second, "how long to run")
	flag.Float64Var(&o.fraud, "fraud", 0.05, "share of fraudulent payments (over-limit amounts, blacklisted countries, impossible travel)")
	flag.IntVar(&o.customers, "customers", 10_000_000, "distinct customers to spread payments over (the service limits each customer)")
	flag.BoolVar(&o.idempotency, "idempotency", false, "send an Idempotency-Key with every request")
	flag.StringVar(&o.token, "token", os.Getenv("API_TOKEN"), "API token, if the service wants one")
	flag.Parse()
	if o.clients < 1 || o.duration <= 0 || o.fraud < 0 || o.fraud > 1 || o.customers < 1 {
		fmt.Fprintln(os.Stderr, "loadgen: -c and -customers must be at least 1, -d positive, -fraud in [0, 1]")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	rep, err := run(ctx, o, os.Stdout)
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(1)
	}
	rep.print(os.Stdout)
}

// report is what a run measured.
type report struct {
	elapsed   time.Duration
	latencies []time.Duration
	statuses  map[string]int
	errors    int
}

func run(ctx context.Context, o options, progress io.Writer) (*report, error) {
	tr := &http.Transport{MaxIdleConns: o.clients, MaxIdleConnsPerHost: o.clients, IdleConnTimeout: time.Minute}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 10 * time.Second}

	probe, err := client.Get(o.url + "/healthz")
	if err != nil {
		return nil, fmt.Errorf("service not reachable at %s: %w", o.url, err)
	}
	probe.Body.Close()

	ctx, cancel := context.WithTimeout(ctx, o.duration)
	defer cancel()
	var done atomic.Int64
	type result struct {
		lat      []time.Duration
		statuses map[string]int
		errors   int
	}
	results := make([]result, o.clients)
	start := time.Now()
	var wg sync.WaitGroup
	for i := range o.clients {
		wg.Go(func() {
			r := &results[i]
			r.statuses = map[string]int{}
			rng := rand.New(rand.NewPCG(uint64(i), uint64(start.UnixNano())))
			var body bytes.Buffer
			for ctx.Err() == nil {
				body.Reset()
				writePayment(&body, rng, o)
				req, err := http.NewRequestWithContext(ctx, http.MethodPost, o.url+"/payment", bytes.NewReader(body.Bytes()))
				if err != nil {
					r.errors++
					continue
				}
				req.Header.Set("Content-Type", "application/json")
				if o.idempotency {
					req.Header.Set("Idempotency-Key", "lg-"+strconv.FormatUint(rng.Uint64(), 36))
				}
				if o.token != "" {
					req.Header.Set("Authorization", "Bearer "+o.token)
				}
				t0 := time.Now()
				resp, err := client.Do(req)
				if err != nil {
					if ctx.Err() == nil {
						r.errors++
					}
					continue
				}
				var out struct {
					Status string `json:"status"`
				}
				decErr := json.NewDecoder(resp.Body).Decode(&out)
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				r.lat = append(r.lat, time.Since(t0))
				switch {
				case decErr != nil:
					r.statuses["HTTP "+strconv.Itoa(resp.StatusCode)]++
				case out.Status == "":
					r.statuses["HTTP "+strconv.Itoa(resp.StatusCode)]++
				default:
					r.statuses[out.Status]++
				}
				done.Add(1)
			}
		})
	}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	finished := make(chan struct{})
	go func() { wg.Wait(); close(finished) }()
	last, lastAt := int64(0), start
	for {
		select {
		case <-finished:
			rep := &report{elapsed: time.Since(start), statuses: map[string]int{}}
			for _, r := range results {
				rep.latencies = append(rep.latencies, r.lat...)
				rep.errors += r.errors
				for k, v := range r.statuses {
					rep.statuses[k] += v
				}
			}
			return rep, nil
		case now := <-tick.C:
			n := done.Load()
			fmt.Fprintf(progress, "%5.0fs  %8d payments  %8.0f/s\n", now.Sub(start).Seconds(), n, float64(n-last)/now.Sub(lastAt).Seconds())
			last, lastAt = n, now
		}
	}
}

// writePayment writes one request body: normal most of the time, and a
// fraudulent one (too large, from a blacklisted country, or far away from
// a moment ago) at the -fraud rate.
func writePayment(b *bytes.Buffer, rng *rand.Rand, o options) {
	customer := "cust_" + strconv.Itoa(rng.IntN(o.customers))
	amount := float64(rng.IntN(20000)+100) / 100 // 1.00 to 200.99
	loc := ""
	if rng.Float64() < o.fraud {
		switch rng.IntN(2) {
		case 0:
			amount = 5000 + float64(rng.IntN(100000))/100
		case 1:
			loc = `, "location": {"country": "KP"}`
		}
	}
	fmt.Fprintf(b, `{"amount": %.2f, "customer_id": %q, "currency": "USD", "merchant_id": "merc_%d"%s}`,
		amount, customer, rng.IntN(100), loc)
}

func (r *report) print(w io.Writer) {
	n := len(r.latencies)
	fmt.Fprintf(w, "\n%d payments in %v: %.0f payments/s, %d transport errors\n", n, r.elapsed.Round(time.Millisecond), float64(n)/r.elapsed.Seconds(), r.errors)
	if n == 0 {
		return
	}
	slices.Sort(r.latencies)
	q := func(p float64) time.Duration { return r.latencies[min(n-1, int(p*float64(n)))] }
	fmt.Fprintf(w, "latency p50 %v  p90 %v  p99 %v  max %v\n", q(0.50), q(0.90), q(0.99), r.latencies[n-1])
	keys := make([]string, 0, len(r.statuses))
	for k := range r.statuses {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		fmt.Fprintf(w, "  %-14s %8d  %5.1f%%\n", k, r.statuses[k], 100*float64(r.statuses[k])/float64(n))
	}
}
