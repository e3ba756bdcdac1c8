package svc

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/taipattern/taikit/examples/internal/datadir"
)

// Logger is a service's logger: text lines on w from level ("debug",
// "info", "warn", "error", which CheckLogLevel checks; anything else is
// info), each naming the instance.
func Logger(w io.Writer, level, instance string) *slog.Logger {
	var l slog.Level
	_ = l.UnmarshalText([]byte(level))
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: l})).With("instance", instance)
}

// ExitCode is a service's exit status for the error its run returned: 0
// for none and for flag.ErrHelp (the flags were printed, as -h asks),
// else 1 after writing "name: err" to stderr.
func ExitCode(name string, err error, stderr io.Writer) int {
	if err == nil || errors.Is(err, flag.ErrHelp) {
		return 0
	}
	fmt.Fprintf(stderr, "%s: %v\n", name, err)
	return 1
}

// CheckLogLevel returns an error naming -log-level unless level is one
// Logger knows.
func CheckLogLevel(level string) error {
	switch level {
	case "debug", "info", "warn", "error":
		return nil
	}
	return fmt.Errorf("-log-level %q must be debug, info, warn or error", level)
}

// Listen takes the data dir's lock, then the address, and touches nothing
// else: a second start on a directory in use, or on a busy port, fails
// here and changes nothing (the lock file and directories it made are
// taken away again).
func Listen(dataDir, addr string) (*datadir.Lock, net.Listener, error) {
	made := missingDirs(dataDir)
	_, err := os.Lstat(filepath.Join(dataDir, datadir.LockFile))
	madeLockFile := errors.Is(err, fs.ErrNotExist)
	lock, err := datadir.Acquire(dataDir)
	if err != nil {
		return nil, nil, err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		if madeLockFile {
			_ = lock.Discard()
		} else {
			_ = lock.Release()
		}
		for _, dir := range made { // made by Acquire: take them away again
			_ = os.Remove(dir)
		}
		return nil, nil, fmt.Errorf("cannot listen on -addr %s: %w", addr, err)
	}
	return lock, ln, nil
}

// missingDirs returns dir and those of its parents that do not exist,
// deepest first: what creating dir makes.
func missingDirs(dir string) []string {
	var missing []string
	for {
		if _, err := os.Stat(dir); !errors.Is(err, fs.ErrNotExist) {
			return missing
		}
		missing = append(missing, dir)
		parent := filepath.Dir(dir)
		if parent == dir {
			return missing
		}
		dir = parent
	}
}

// StopOnSignal returns a context that ends at the first SIGINT or
// SIGTERM, and its stop. The first signal begins a graceful stop, which may
// wait for requests in flight for minutes; a second one ends the process at
// once, as the signals' default handling is back once the first has come.
func StopOnSignal(ctx context.Context) (context.Context, context.CancelFunc) {
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	context.AfterFunc(ctx, stop)
	return ctx, stop
}

// ShutdownTimeout bounds a service's graceful stop: the wait for the
// requests in flight (longer when the server's write timeout is), and
// then, again, the service's close.
const ShutdownTimeout = 30 * time.Second

// Serve serves srv on ln until ctx ends or serving fails, then stops: the
// server first (no new requests; those in flight finish), then the
// service with closeService. The requests in flight get ShutdownTimeout,
// or srv.WriteTimeout when it is longer — a request may run as long as its
// answer may still be written, and one cut short by the stop would leave
// its client without one; closeService gets ShutdownTimeout of its own
// after them, so slow requests never leave it no time to flush. Requests
// still running when their time is up are cut off (srv.Close closes their
// connections, which ends their contexts), so that their handlers stop
// rather than run on against the service as it closes.
func Serve(ctx context.Context, srv *http.Server, ln net.Listener, closeService func(context.Context) error, log *slog.Logger) error {
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	var err error
	select {
	case err = <-serveErr:
	case <-ctx.Done():
		log.Info("shutting down")
	}
	requestsCtx, cancel := context.WithTimeout(context.Background(), max(ShutdownTimeout, srv.WriteTimeout))
	defer cancel()
	if sErr := srv.Shutdown(requestsCtx); sErr != nil {
		_ = srv.Close()
		err = errors.Join(err, fmt.Errorf("requests in flight not finished: %w", sErr))
	}
	closeCtx, cancelClose := context.WithTimeout(context.Background(), ShutdownTimeout)
	defer cancelClose()
	if cErr := closeService(closeCtx); cErr != nil {
		err = errors.Join(err, cErr)
	}
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	log.Info("stopped")
	return err
}

// PublicHostPort turns a listen address into one a person can open: an
// unspecified host (":3001", "[::]:3001") becomes localhost.
func PublicHostPort(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		host = "localhost"
	}
	return net.JoinHostPort(host, port)
}
