// Command stress drives the deployment service with many deployments at
// once and prints how they ended: by default 50 concurrent deployments of
// the demo catalog's healthy services over its regions, each of a version
// not serving there yet.
//
//	go run ./examples/deployment/stress -url http://127.0.0.1:3002 -n 50
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	neturl "net/url"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"
)

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return // -h: the usage is printed
		}
		fmt.Fprintln(os.Stderr, "stress:", err)
		os.Exit(1)
	}
}

// catalog is what GET /catalog answers.
type catalog struct {
	Regions  []string `json:"regions"`
	Services map[string]struct {
		Versions []string          `json:"versions"`
		Serving  map[string]string `json:"serving"`
	} `json:"services"`
}

// outcome is one deployment's end as the client saw it.
type outcome struct {
	code   int
	status string
	key    string
	err    error
}

func run(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("stress", flag.ContinueOnError)
	fs.SetOutput(out)
	url := fs.String("url", "http://127.0.0.1:3002", "deployment service base URL")
	n := fs.Int("n", 50, "deployments sent at once")
	token := fs.String("token", os.Getenv("API_TOKEN"), "API token, if the service wants one (API_TOKEN)")
	fs.Lookup("token").DefValue = "" // -h does not show the token
	skip := fs.String("skip", "bad-service,slow-service,degrading-service,hungry-service,regional-service", "services left out (the demo catalog's unhealthy ones)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *n < 1 {
		return fmt.Errorf("-n %d: at least one deployment", *n)
	}
	if u, err := neturl.Parse(*url); err != nil || u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
		return fmt.Errorf("-url %s: give the service's base URL, http://host:port", *url)
	}
	// A transport of its own, its connections closed on return: a run
	// leaves no connection open, nor the goroutines that serve one.
	client := &http.Client{Timeout: 10 * time.Minute, Transport: http.DefaultTransport.(*http.Transport).Clone()}
	defer client.CloseIdleConnections()
	get := func(path string, v any) error {
		req, _ := http.NewRequest("GET", *url+path, nil)
		if *token != "" {
			req.Header.Set("Authorization", "Bearer "+*token)
		}
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("GET %s: %s", path, resp.Status)
		}
		return json.NewDecoder(resp.Body).Decode(v)
	}
	var cat catalog
	if err := get("/catalog", &cat); err != nil {
		return err
	}
	// The requests: each service/region pair once, with a version that
	// does not serve there, until n; then the pairs again (the service
	// must refuse those with 409 while the first runs).
	type request struct{ Service, Version, Region string }
	var pairs []request
	names := make([]string, 0, len(cat.Services))
	for name := range cat.Services {
		if !slices.Contains(strings.Split(*skip, ","), name) {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	for _, region := range cat.Regions {
		for _, name := range names {
			svc := cat.Services[name]
			for _, v := range svc.Versions {
				if v != svc.Serving[region] && svc.Serving[region] != "" {
					pairs = append(pairs, request{name, v, region})
					break
				}
			}
		}
	}
	if len(pairs) == 0 {
		return fmt.Errorf("the catalog has nothing to deploy")
	}
	reqs := make([]request, *n)
	for i := range reqs {
		reqs[i] = pairs[i%len(pairs)]
	}
	fmt.Fprintf(out, "%d deployments over %d service/region pairs\n", len(reqs), min(len(reqs), len(pairs)))
	results := make([]outcome, len(reqs))
	start := time.Now()
	var wg sync.WaitGroup
	for i, r := range reqs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			body, _ := json.Marshal(map[string]string{"service": r.Service, "version": r.Version, "target_region": r.Region})
			req, _ := http.NewRequest("POST", *url+"/deploy", bytes.NewReader(body))
			req.Header.Set("Content-Type", "application/json")
			if *token != "" {
				req.Header.Set("Authorization", "Bearer "+*token)
			}
			resp, err := client.Do(req)
			results[i].key = r.Service + "/" + r.Region
			if err != nil {
				results[i].err = err
				return
			}
			defer resp.Body.Close()
			var d struct {
				Status string `json:"status"`
			}
			_ = json.NewDecoder(resp.Body).Decode(&d)
			results[i].code, results[i].status = resp.StatusCode, d.Status
		}()
	}
	wg.Wait()
	wall := time.Since(start)
	counts := map[string]int{}
	success := map[string]int{}
	for _, r := range results {
		switch {
		case r.err != nil:
			counts["transport error"]++
		case r.status != "":
			counts[fmt.Sprintf("%d %s", r.code, r.status)]++
		default:
			counts[fmt.Sprintf("%d", r.code)]++
		}
		if r.status == "SUCCESS" {
			success[r.key]++
		}
	}
	keys := make([]string, 0, len(counts))
	for k := range counts {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	fmt.Fprintf(out, "all answered in %v\n", wall.Round(time.Millisecond))
	for _, k := range keys {
		fmt.Fprintf(out, "  %-24s %d\n", k, counts[k])
	}
	for key, c := range success {
		if c > 1 {
			return fmt.Errorf("%s succeeded %d times at once", key, c)
		}
	}
	if counts["transport error"] > 0 {
		return fmt.Errorf("%d requests failed", counts["transport error"])
	}
	return nil
}
