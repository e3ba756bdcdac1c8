// Command stack runs the local stack from real binaries, without Docker:
// a three-node NATS JetStream cluster, Redis, Jaeger, two replicas of each
// service, Prometheus, Alertmanager and an alert sink (package
// github.com/taipattern/taikit/deploy/check/stack says what each does).
//
// Usage, from the repository's root (make up, make status, make logs and
// make down wrap these):
//
//	stack up       start what is not running; wait until each is healthy
//	stack status   each component's PID, health and URL
//	stack logs     the last lines of every log (-n lines)
//	stack down     stop every process the stack started, by PID; Ctrl-C
//	               kills (SIGKILL) what still runs instead of waiting
//	               out its graceful stop
//
// Flags (before the command): -dir (default .stack), -bin (default bin),
// -repo (default .), -port-base (0: the standard ports).
//
// The commands sink and nats-exporter are the stack's own helpers, which
// up starts.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/taipattern/taikit/deploy/check/stack"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("stack", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("dir", ".stack", "the stack's data, logs and PID files")
	bin := fs.String("bin", "bin", "the directory of the payment, deployment and jaeger binaries")
	repo := fs.String("repo", ".", "the repository's root (deploy/ is read from it)")
	base := fs.Int("port-base", 0, "move every port to this base plus its index (0: the standard ports)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: stack [flags] up|status|logs [-n N]|down|sink -addr A|nats-exporter -addr A name=url...")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return 2
	}
	self, err := os.Executable()
	if err != nil {
		fmt.Fprintln(stderr, "stack:", err)
		return 1
	}
	abs := func(p string) string {
		a, err := filepath.Abs(p)
		if err != nil {
			return p
		}
		return a
	}
	cfg := stack.Config{Dir: abs(*dir), Bin: abs(*bin), Repo: abs(*repo), Self: self, PortBase: *base, Out: stdout}
	// The first Ctrl-C (or SIGTERM) cancels ctx: up stops waiting, down
	// kills what still runs instead of waiting out its graceful stop, a
	// helper server shuts down. A second one ends the program at once.
	ctx, stopSignals := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stopSignals()
	context.AfterFunc(ctx, stopSignals)

	cmd, rest := fs.Arg(0), fs.Args()[1:]
	switch cmd {
	case "up", "status", "down":
		// They act on the whole stack: "down payment-1" must not stop it
		// all.
		if len(rest) > 0 {
			return unexpected(stderr, cmd, rest[0])
		}
	}
	switch cmd {
	case "up":
		if err := stack.Up(ctx, cfg); err != nil {
			fmt.Fprintln(stderr, err)
			return 1
		}
		states, err := stack.Status(ctx, cfg)
		if err == nil {
			err = stack.WriteStatus(stdout, states)
		}
		if err != nil {
			fmt.Fprintln(stderr, err)
			return 1
		}
		return 0
	case "down":
		if _, err := stack.Down(ctx, cfg); err != nil {
			fmt.Fprintln(stderr, err)
			return 1
		}
		return 0
	case "status":
		states, err := stack.Status(ctx, cfg)
		if err != nil {
			fmt.Fprintln(stderr, err)
			return 1
		}
		if err := stack.WriteStatus(stdout, states); err != nil {
			return 1
		}
		for _, s := range states {
			if !s.Healthy {
				return 1
			}
		}
		return 0
	case "logs":
		lfs := flag.NewFlagSet("stack logs", flag.ContinueOnError)
		lfs.SetOutput(stderr)
		n := lfs.Int("n", 20, "lines of each log")
		if err := lfs.Parse(rest); err != nil {
			return 2
		}
		if lfs.NArg() > 0 {
			return unexpected(stderr, cmd, lfs.Arg(0))
		}
		if err := stack.Logs(cfg, stdout, *n); err != nil {
			fmt.Fprintln(stderr, err)
			return 1
		}
		return 0
	case "sink":
		return serve(ctx, "stack sink", rest, stderr, func(log *slog.Logger, _ []string) (http.Handler, error) {
			return stack.SinkHandler(log), nil
		})
	case "nats-exporter":
		return serve(ctx, "stack nats-exporter", rest, stderr, func(_ *slog.Logger, nodes []string) (http.Handler, error) {
			m := map[string]string{}
			for _, n := range nodes {
				name, url, ok := strings.Cut(n, "=")
				if !ok || name == "" || url == "" {
					return nil, fmt.Errorf("node %q is not name=url", n)
				}
				m[name] = url
			}
			if len(m) == 0 {
				return nil, errors.New("no nodes: give name=url arguments")
			}
			return stack.NATSExporter(m, &http.Client{Timeout: 5 * time.Second}), nil
		})
	default:
		fmt.Fprintf(stderr, "stack: unknown command %q\n", cmd)
		fs.Usage()
		return 2
	}
}

// unexpected reports an argument command cmd does not take, and returns
// the exit code of bad arguments.
func unexpected(stderr io.Writer, cmd, arg string) int {
	fmt.Fprintf(stderr, "stack %s: unexpected argument %q: it acts on the whole stack\n", cmd, arg)
	return 2
}

// serve runs one of the stack's helper servers until a signal, and
// returns once the requests in flight have been answered (or 5 seconds
// have passed): srv.Serve returns as soon as the shutdown begins, and the
// process exits after serve returns.
func serve(ctx context.Context, name string, args []string, stderr io.Writer, handler func(*slog.Logger, []string) (http.Handler, error)) int {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "127.0.0.1:0", "listen address")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	log := slog.New(slog.NewTextHandler(os.Stdout, nil))
	h, err := handler(log, fs.Args())
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", name, err)
		return 2
	}
	l, err := net.Listen("tcp", *addr)
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", name, err)
		return 1
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	ctx, stop := context.WithCancel(ctx)
	defer stop()
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	log.Info("listening", "addr", l.Addr().String())
	if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
		fmt.Fprintf(stderr, "%s: %v\n", name, err)
		return 1
	}
	<-stopped
	return 0
}
