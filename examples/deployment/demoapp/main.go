// Command demoapp is the small HTTP service the deployment example rolls
// out: each process says which service, version, region and instance it
// is, fails a set share of its requests, adds a set latency, and exports
// Prometheus metrics about it. Run two versions with different knobs and a
// progressive rollout has something real to tell apart:
//
//	go run ./examples/deployment/demoapp -version v2 -error-rate 0.1 -latency 20ms
//
// The first line on stdout is the bound address ("listening on
// 127.0.0.1:41234"), so a parent that asked for port 0 can read where it
// is. Endpoints:
//
//	GET /         {"service","version","region","instance"}: 200, or 500 per -error-rate
//	GET /healthz  200 "ok" while serving
//	GET /metrics  Prometheus metrics, labelled service, version, region
//
// The metrics count requests to / only: http_requests_total{code},
// http_request_duration_seconds (a histogram from 1ms to 10s) and
// http_requests_in_flight, beside the Go and process collectors'
// (process_cpu_seconds_total, process_resident_memory_bytes, ...).
//
// -error-rate and -slow-rate are exact, not random: of the first n requests,
// floor(n*rate) fail (or are slow), spread evenly.
//
// SIGINT or SIGTERM shuts it down gracefully: it stops accepting and
// finishes the requests in flight (up to -shutdown-timeout). A second
// SIGINT or SIGTERM during that stops it at once, the requests in flight
// cut, with exit status 128 plus the signal's number (130 for a second
// Ctrl-C).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"
	"unicode/utf8"
)

func main() {
	// Room for both signals: the second must not be dropped while the
	// first is being handled.
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		<-sigs
		cancel() // shut down gracefully
		sig := <-sigs
		fmt.Fprintf(os.Stderr, "demoapp: %v during the shutdown: stopping at once\n", sig)
		os.Exit(128 + int(sig.(syscall.Signal)))
	}()
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "demoapp:", err)
		os.Exit(1)
	}
}

// config is the app's configuration, from flags.
type config struct {
	Addr            string
	Profile         profile
	ShutdownTimeout time.Duration
}

// parseConfig reads the flags in args and checks their values.
func parseConfig(args []string, stderr io.Writer) (config, error) {
	var c config
	fs := flag.NewFlagSet("demoapp", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.Addr, "addr", "127.0.0.1:0", "listen address; port 0 picks a free port")
	fs.StringVar(&c.Profile.Service, "service", "demo", "service name, in responses and metric labels")
	fs.StringVar(&c.Profile.Version, "version", "v1", "version, in responses and metric labels")
	fs.StringVar(&c.Profile.Region, "region", "local", "region, in responses and metric labels")
	fs.StringVar(&c.Profile.Instance, "instance", "", "instance name in responses; empty: the bound address")
	fs.Float64Var(&c.Profile.ErrorRate, "error-rate", 0, "share of requests to / answered 500, in [0, 1]; deterministic: request n fails when floor(n*rate) > floor((n-1)*rate)")
	fs.DurationVar(&c.Profile.Latency, "latency", 0, "delay added to every request to /")
	fs.Float64Var(&c.Profile.SlowRate, "slow-rate", 0, "share of requests to / delayed by -slow-latency instead of -latency, in [0, 1]; deterministic like -error-rate")
	fs.DurationVar(&c.Profile.SlowLatency, "slow-latency", 0, "delay of the slow share of requests")
	fs.DurationVar(&c.ShutdownTimeout, "shutdown-timeout", 10*time.Second, "how long a shutdown waits for requests in flight")
	if err := fs.Parse(args); err != nil {
		return config{}, err
	}
	if fs.NArg() > 0 {
		return config{}, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if err := c.Profile.validate(); err != nil {
		return config{}, err
	}
	if c.ShutdownTimeout <= 0 {
		return config{}, fmt.Errorf("-shutdown-timeout %v is not positive", c.ShutdownTimeout)
	}
	return c, nil
}

// validate checks the knobs, naming the flag that is wrong.
func (p profile) validate() error {
	if p.Service == "" || p.Version == "" || p.Region == "" {
		return errors.New("-service, -version and -region must not be empty")
	}
	for _, name := range []struct{ flag, value string }{
		{"-service", p.Service}, {"-version", p.Version}, {"-region", p.Region},
	} {
		if !utf8.ValidString(name.value) { // a metric label value must be
			return fmt.Errorf("%s %q is not valid UTF-8", name.flag, name.value)
		}
	}
	if !(p.ErrorRate >= 0 && p.ErrorRate <= 1) { // also catches NaN
		return fmt.Errorf("-error-rate %v is not in [0, 1]", p.ErrorRate)
	}
	if !(p.SlowRate >= 0 && p.SlowRate <= 1) {
		return fmt.Errorf("-slow-rate %v is not in [0, 1]", p.SlowRate)
	}
	if p.Latency < 0 {
		return fmt.Errorf("-latency %v is negative", p.Latency)
	}
	if p.SlowLatency < 0 {
		return fmt.Errorf("-slow-latency %v is negative", p.SlowLatency)
	}
	return nil
}

// run serves until ctx ends, then shuts down gracefully. The bound address
// goes to stdout as the first line; logs go to stderr.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	c, err := parseConfig(args, stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	ln, err := net.Listen("tcp", c.Addr)
	if err != nil {
		return fmt.Errorf("cannot listen on -addr %s: %w", c.Addr, err)
	}
	addr := ln.Addr().String()
	if c.Profile.Instance == "" {
		c.Profile.Instance = addr
	}
	log := slog.New(slog.NewTextHandler(stderr, nil)).With(
		"service", c.Profile.Service, "version", c.Profile.Version, "region", c.Profile.Region, "instance", c.Profile.Instance)

	srv := &http.Server{
		Handler:           newApp(c.Profile).Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	if _, err := fmt.Fprintf(stdout, "listening on %s\n", addr); err != nil {
		_ = srv.Close()
		<-served
		return fmt.Errorf("cannot write the address to stdout: %w", err)
	}
	log.Info("demoapp ready", "error_rate", c.Profile.ErrorRate, "latency", c.Profile.Latency,
		"slow_rate", c.Profile.SlowRate, "slow_latency", c.Profile.SlowLatency)

	select {
	case err := <-served:
		return fmt.Errorf("serving: %w", err)
	case <-ctx.Done():
	}
	log.Info("demoapp shutting down", "timeout", c.ShutdownTimeout)
	shutdownCtx, cancel := context.WithTimeout(context.Background(), c.ShutdownTimeout)
	defer cancel()
	err = srv.Shutdown(shutdownCtx)
	<-served
	if err != nil {
		_ = srv.Close()
		return fmt.Errorf("shutdown: %w", err)
	}
	log.Info("demoapp stopped")
	return nil
}

// every reports whether the n-th event (n from 1) is one of a share rate of
// events, spread evenly: exactly floor(n*rate) of the first n are.
func every(n uint64, rate float64) bool {
	return math.Floor(float64(n)*rate) > math.Floor(float64(n-1)*rate)
}
