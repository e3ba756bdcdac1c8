// Command payment is a payment service built on taikit: a scored fraud
// policy, per-customer limits, a circuit breaker around the gateway,
// confirmations through a JetStream queue, Prometheus metrics, traces, a
// hash-chained audit trail and andon alerts. It starts with no setup:
//
//	go run ./examples/payment
//
// See README.md beside this file.
package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"runtime"
	"time"

	"github.com/taipattern/taikit/andon"
	"github.com/taipattern/taikit/examples/internal/httpapi"
	"github.com/taipattern/taikit/examples/internal/svc"
)

func main() {
	os.Exit(svc.ExitCode("payment", run(context.Background(), os.Args[1:], os.Getenv, os.Stderr), os.Stderr))
}

// run starts the service and blocks until SIGINT or SIGTERM (or ctx ends),
// then shuts down gracefully: it stops accepting, finishes in-flight
// requests, drains the confirmation consumer and flushes the audit trail.
// A second SIGINT or SIGTERM during that ends the process at once.
func run(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer) error {
	cfg, err := parseConfig(args, getenv)
	if err != nil {
		return err
	}
	if cfg.PrintRules {
		return printRules(os.Stdout, cfg)
	}
	log := svc.Logger(stderr, cfg.LogLevel, cfg.Instance)

	// A second signal ends the process at once: nothing answered is lost,
	// as every answer waits for its records.
	ctx, stop := svc.StopOnSignal(ctx)
	defer stop()

	// One process per data dir, and nothing touched before the port is
	// ours: a second start on a directory in use, or on a busy port,
	// fails here and changes nothing.
	lock, ln, err := svc.Listen(cfg.DataDir, cfg.Addr)
	if err != nil {
		return err
	}
	service, err := newService(ctx, cfg, log, lock)
	if err != nil {
		_ = ln.Close()
		if svc.StartCutShort(ctx, err, log) == nil {
			return nil
		}
		return svc.StoreRoomHint(err, cfg.DataDir, "-payments-max-bytes, -idempotency-max-bytes, -confirm-max-bytes, -customer-state-max-bytes")
	}
	srv := newHTTPServer(cfg, service, log)
	base := "http://" + svc.PublicHostPort(ln.Addr().String())
	log.Info("payment service ready",
		"api", base+"/payment", "metrics", base+"/metrics", "andon", base+"/andon/", "kaizen", base+"/kaizen",
		"nats", service.NATSLocation(), "data_dir", cfg.DataDir, "api_token", cfg.APIToken.IsSet(), "admin_token", cfg.AdminToken.IsSet())

	if cfg.DebugAddr != "" {
		// Sample contention too, for /debug/pprof/block and /mutex.
		runtime.SetBlockProfileRate(int(100 * time.Microsecond))
		runtime.SetMutexProfileFraction(100)
		dbg := &http.Server{Addr: cfg.DebugAddr, Handler: debugMux(cfg.DebugAddr), ReadHeaderTimeout: 5 * time.Second}
		go func() {
			if err := dbg.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
				log.Error("debug server", "err", err)
			}
		}()
		defer dbg.Close()
		log.Info("profiling", "url", "http://"+cfg.DebugAddr+"/debug/pprof/")
	}

	return svc.Serve(ctx, srv, ln, service.Close, log)
}

// writeSlack is how much longer than a payment's deadline its answer may
// take to write: the server's write timeout is -request-timeout and this,
// and a payment moves its answer's deadline to the same from the moment
// its body has been read.
const writeSlack = 10 * time.Second

// newHTTPServer is the service's HTTP server. A payment has its own
// deadline (-request-timeout), below the write timeout, so a client
// always hears how its payment ended; the board's event streams set a
// deadline per write instead, and end when the server shuts down.
func newHTTPServer(cfg Config, svc *Service, log *slog.Logger) *http.Server {
	srv := &http.Server{
		Handler:           svc.Handler(),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      cfg.RequestTimeout + writeSlack,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	svc.ConfigureServer(srv)
	return srv
}

// debugMux serves the runtime profiles. Not the command line
// (/debug/pprof/cmdline): it holds whatever tokens were given as flags.
// Only to a loopback Host: the listener is on loopback, and a web page
// whose name an attacker points at 127.0.0.1 (DNS rebinding) would
// otherwise have the visitor's browser read the profiles, or keep the
// CPU profiler busy, for it. addr is the listener's address, whose host
// is allowed too (127.0.0.2).
func debugMux(addr string) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "the command line is not served: it may hold tokens", http.StatusNotFound)
	})
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	hosts := []string{"localhost", "127.0.0.1", "::1"}
	if h, _, err := net.SplitHostPort(addr); err == nil && h != "" {
		hosts = append(hosts, h)
	}
	return httpapi.AllowHosts(hosts, mux)
}

// printRules writes the alert rules as a Prometheus rule file over the
// metric names the service exports, for a Prometheus server that scrapes
// /metrics.
func printRules(w io.Writer, cfg Config) error {
	s := &Service{cfg: cfg}
	var err error
	if s.stats, err = newStats(); err != nil {
		return err
	}
	if s.breaker, err = newBreaker(cfg.BreakerOpen, nil); err != nil {
		return err
	}
	return andon.PrometheusRules(w, "payment", s.paymentRules(false), andon.ExportOptions{})
}
