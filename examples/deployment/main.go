// Command deployment is a progressive-delivery service built on taikit:
// prerequisites as a policy, staged rollouts (canary, blue-green, rolling)
// whose health a watchdog analyses, automatic rollback, regions one after
// another through a JetStream queue, state in JetStream, Prometheus
// metrics and a hash-chained audit trail. It starts with no setup:
//
//	go run ./examples/deployment
//
// See README.md beside this file.
package main

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"os"
	"time"

	"github.com/taipattern/taikit/examples/internal/svc"
)

func main() {
	os.Exit(svc.ExitCode("deployment", run(context.Background(), os.Args[1:], os.Getenv, os.Stderr), os.Stderr))
}

// run starts the service and blocks until SIGINT or SIGTERM (or ctx ends),
// then shuts down: it stops accepting, finishes in-flight requests and
// leaves running rollouts to be taken up at the next start.
func run(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer) error {
	cfg, err := parseConfig(args, getenv)
	if err != nil {
		return err
	}
	if cfg.PrintRules {
		return printRules(os.Stdout)
	}
	log := svc.Logger(stderr, cfg.LogLevel, cfg.Instance)

	ctx, stop := svc.StopOnSignal(ctx)
	defer stop()

	// One process per data dir, and nothing touched before the port is
	// ours.
	lock, ln, err := svc.Listen(cfg.DataDir, cfg.Addr)
	if err != nil {
		return err
	}
	service, err := newService(ctx, cfg, log, lock)
	if err != nil {
		_ = ln.Close()
		return svc.StartCutShort(ctx, err, log)
	}
	srv := &http.Server{
		Handler:           service.Handler(),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		// A waiting POST /deploy answers at -request-timeout at the latest;
		// event streams set a deadline per write.
		WriteTimeout:   0,
		IdleTimeout:    2 * time.Minute,
		MaxHeaderBytes: 64 << 10,
		ErrorLog:       slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	// Waiting requests answer 202 with where their deployment is, and
	// event streams end, rather than hold the shutdown.
	srv.RegisterOnShutdown(service.closeWaiters)
	base := "http://" + svc.PublicHostPort(ln.Addr().String())
	log.Info("deployment service ready",
		"api", base+"/deploy", "metrics", base+"/metrics", "kaizen", base+"/kaizen", "andon", base+"/andon/",
		"nats", service.nats.Location(), "data_dir", cfg.DataDir, "api_token", cfg.APIToken.IsSet(), "admin_token", cfg.AdminToken.IsSet())

	return svc.Serve(ctx, srv, ln, service.Close, log)
}
