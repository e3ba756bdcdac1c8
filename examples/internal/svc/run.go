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
	"sync"
	"syscall"
	"time"

	"github.com/taipattern/taikit/examples/internal/datadir"
)

// Logger is a service's logger: text lines on w from level ("debug",
// "info", "warn", "error", which CheckLogLevel checks; anything else is
// info), each naming the instance.
func Logger(w io.Writer, level, instance string) *slog.Logger {
	l := slog.LevelInfo
	switch level {
	case "debug":
		l = slog.LevelDebug
	case "warn":
		l = slog.LevelWarn
	case "error":
		l = slog.LevelError
	}
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
	if dataDir == "" {
		// Clean would make it ".", the working directory.
		return nil, nil, errors.New("data directory: no path given")
	}
	dataDir = filepath.Clean(dataDir) // as Acquire takes it
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
// once: the signals' default handling is back before the context ends, so
// one sent as soon as the stop is seen (its "shutting down" logged) is not
// taken for the first, and one that came while it was put back is raised
// again to the default handling.
func StopOnSignal(ctx context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(ctx)
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	var once sync.Once
	// release puts the default handling back; after a first signal, one
	// that came meanwhile is the second.
	release := func(signaled bool) {
		once.Do(func() {
			signal.Stop(sigs)
			select {
			case sig := <-sigs:
				if signaled {
					raise(sig)
				}
			default:
			}
		})
	}
	go func() {
		signaled := false
		select {
		case <-sigs:
			signaled = true
		case <-ctx.Done():
		}
		release(signaled)
		cancel()
	}()
	return ctx, func() { release(false); cancel() }
}

// raise sends sig to the process again, now that its default handling (the
// end of the process) is back; where it cannot be sent, the process exits
// as a shell reports a process a signal ended.
func raise(sig os.Signal) {
	if p, err := os.FindProcess(os.Getpid()); err == nil && p.Signal(sig) == nil {
		time.Sleep(time.Second) // the signal ends the process meanwhile
	}
	code := 130 // SIGINT
	if sig == syscall.SIGTERM {
		code = 143
	}
	os.Exit(code)
}

// StartCutShort is what a service's run returns for err, the failure of
// its start: nil, once it has logged that it stopped before it was ready,
// when ctx has ended (a signal asked it to stop, and the start gave up
// waiting for what it waited for), as a stop asked for is not a failure;
// otherwise err.
func StartCutShort(ctx context.Context, err error, log *slog.Logger) error {
	if err == nil || ctx.Err() == nil {
		return err
	}
	log.Info("stopped before it was ready")
	return nil
}

// ShutdownTimeout bounds a service's graceful stop: the wait for the
// requests in flight (longer when the server's write timeout is), and
// then, again, the service's close.
const ShutdownTimeout = 30 * time.Second

// Serve serves srv on ln until ctx ends, srv is shut down or closed, or
// serving fails, then stops: the server first (no new requests; those in
// flight finish), then the service with closeService. The requests in
// flight get ShutdownTimeout, or srv.WriteTimeout when it is longer — a
// request may run as long as its answer may still be written, and one cut
// short by the stop would leave its client without one; closeService gets
// ShutdownTimeout of its own after them, so slow requests never leave it
// no time to flush. The listener is closed before the service closes, even
// when ctx has ended before srv began to serve. Requests still running
// when their time is up are cut off (srv.Close closes their connections,
// which ends their contexts), and the service closes once their handlers
// have returned (or after CutOffGrace), so that none runs on against the
// service as it closes; so it does after the requests that a close of
// srv elsewhere cut off. Serve wraps srv.Handler to see them return. It
// returns the errors of serving (but http.ErrServerClosed), of the stop
// and of closeService.
func Serve(ctx context.Context, srv *http.Server, ln net.Listener, closeService func(context.Context) error, log *slog.Logger) error {
	handlers := trackHandlers(srv)
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	var err error
	served := false // srv.Serve has returned
	select {
	case err = <-serveErr:
		served = true
		if errors.Is(err, http.ErrServerClosed) {
			err = nil // closed by its owner: a stop, as ctx's end is
		}
	case <-ctx.Done():
		log.Info("shutting down")
	}
	requestsCtx, cancel := context.WithTimeout(context.Background(), max(ShutdownTimeout, srv.WriteTimeout))
	defer cancel()
	if sErr := srv.Shutdown(requestsCtx); sErr != nil {
		_ = srv.Close()
		err = errors.Join(err, fmt.Errorf("requests in flight not finished: %w", sErr))
	}
	// srv.Close, this one or the owner's that stopped srv, does not wait
	// for the handlers it cut off, nor does srv.Shutdown then.
	if !handlers.wait(CutOffGrace) {
		log.Warn("requests cut off still running as the service closes", "requests", handlers.running())
	}
	if !served {
		// A stop before srv.Serve took the listener leaves it to
		// srv.Serve to close, as it returns at once: the port is given
		// back before the service closes, as it is otherwise. A failure
		// of serving that came as ctx ended is returned as any other.
		if sErr := <-serveErr; !errors.Is(sErr, http.ErrServerClosed) {
			err = errors.Join(sErr, err)
		}
	}
	closeCtx, cancelClose := context.WithTimeout(context.Background(), ShutdownTimeout)
	defer cancelClose()
	if cErr := closeService(closeCtx); cErr != nil {
		err = errors.Join(err, cErr)
	}
	log.Info("stopped")
	return err
}

// CutOffGrace bounds Serve's wait for the handlers of requests cut off at
// the end of their time: their contexts have ended, and a handler that
// heeds its context returns well within it.
const CutOffGrace = 5 * time.Second

// handlerCount counts the handlers running.
type handlerCount struct {
	mu   sync.Mutex
	n    int
	idle chan struct{} // closed when n falls to 0 while waited for
}

// trackHandlers wraps srv's handler (http.DefaultServeMux when nil) so
// that the count returned sees each call to it begin and end.
func trackHandlers(srv *http.Server) *handlerCount {
	c := &handlerCount{}
	h := srv.Handler
	if h == nil {
		h = http.DefaultServeMux
	}
	srv.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c.add(1)
		defer c.add(-1)
		h.ServeHTTP(w, r)
	})
	return c
}

func (c *handlerCount) add(d int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.n += d
	if c.n == 0 && c.idle != nil {
		close(c.idle)
		c.idle = nil
	}
}

func (c *handlerCount) running() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n
}

// wait waits up to d for no handler to be running, and reports whether
// none is.
func (c *handlerCount) wait(d time.Duration) bool {
	c.mu.Lock()
	if c.n == 0 {
		c.mu.Unlock()
		return true
	}
	if c.idle == nil {
		c.idle = make(chan struct{})
	}
	idle := c.idle
	c.mu.Unlock()
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-idle:
		return true
	case <-timer.C:
		return c.running() == 0
	}
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
