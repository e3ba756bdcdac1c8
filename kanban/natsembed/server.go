package natsembed

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// Options configure Start. The zero value starts a server on a random
// loopback port with its store in a temporary directory.
type Options struct {
	// StoreDir is where JetStream keeps its files. "" means a new
	// temporary directory, removed by Shutdown.
	StoreDir string
	// Port is the loopback TCP port to listen on. 0 means a free port
	// chosen by the system. Ignored with InProcess.
	Port int
	// InProcess listens on no port: clients connect with Connect (or
	// nats.InProcessServer(srv.NATS())).
	InProcess bool
	// Token is the secret a client must present on the port. Empty means
	// one generated at random by Start: ClientURL carries it, Connect
	// presents it, and nothing else on the machine can connect. Ignored
	// with InProcess.
	Token string
	// NoAuth listens on the port without a token: any process on the
	// machine may connect, publish and read. For tests of clients that
	// cannot present one.
	NoAuth bool
	// Logger receives the server's log at Info (notices), Warn and Error,
	// and Debug. nil means silent.
	Logger *slog.Logger
	// ReadyTimeout bounds the wait for the server to accept connections.
	// 0 means 10s.
	ReadyTimeout time.Duration
}

// Validate reports the first field out of range, naming it.
func (o Options) Validate() error {
	switch {
	case o.Port < 0 || o.Port > 65535:
		return fmt.Errorf("natsembed: invalid Port %d: must be between 0 and 65535", o.Port)
	case o.ReadyTimeout < 0:
		return fmt.Errorf("natsembed: invalid ReadyTimeout %v: must not be negative", o.ReadyTimeout)
	}
	return nil
}

// Server is a running embedded NATS server. Shutdown stops it.
type Server struct {
	ns        *server.Server
	storeDir  string
	ownsStore bool
	inProcess bool
	token     string // "" with InProcess or NoAuth

	stopOnce sync.Once
	stopped  chan struct{} // closed once the server has stopped
	stopErr  error         // removing the store, set before stopped closes
}

// Start runs a NATS server with JetStream and waits until it accepts
// connections, ctx ends, or ReadyTimeout passes.
func Start(ctx context.Context, opts Options) (*Server, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s := &Server{storeDir: opts.StoreDir, inProcess: opts.InProcess, stopped: make(chan struct{})}
	if !opts.InProcess && !opts.NoAuth {
		s.token = opts.Token
		if s.token == "" {
			b := make([]byte, 24)
			_, _ = rand.Read(b) // crypto/rand never fails
			s.token = hex.EncodeToString(b)
		}
	}
	if s.storeDir == "" {
		dir, err := os.MkdirTemp("", "natsembed-")
		if err != nil {
			return nil, fmt.Errorf("natsembed: store directory: %w", err)
		}
		s.storeDir, s.ownsStore = dir, true
	}
	sopts := &server.Options{
		ServerName:    "natsembed",
		Host:          "127.0.0.1",
		Port:          opts.Port,
		JetStream:     true,
		StoreDir:      s.storeDir,
		NoSigs:        true,
		NoLog:         opts.Logger == nil,
		DontListen:    opts.InProcess,
		Authorization: s.token,
	}
	if opts.Port == 0 {
		sopts.Port = server.RANDOM_PORT
	}
	ns, err := server.NewServer(sopts)
	if err != nil {
		_ = s.removeStore()
		return nil, fmt.Errorf("natsembed: %w", err)
	}
	if opts.Logger != nil {
		ns.SetLoggerV2(slogLogger{opts.Logger}, true, false, false)
	}
	s.ns = ns
	ns.Start()
	timeout := opts.ReadyTimeout
	if timeout == 0 {
		timeout = 10 * time.Second
	}
	deadline := time.Now().Add(timeout)
	for !ns.ReadyForConnections(50 * time.Millisecond) {
		if ctx.Err() != nil || time.Now().After(deadline) {
			_ = s.Shutdown(context.Background()) // the server is not serving: it stops at once
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			return nil, errors.New("natsembed: server not ready within " + timeout.String())
		}
	}
	return s, nil
}

// NATS returns the underlying nats-server, for options this package does
// not wrap.
func (s *Server) NATS() *server.Server { return s.ns }

// StoreDir returns the JetStream store directory.
func (s *Server) StoreDir() string { return s.storeDir }

// ClientURL returns the URL clients connect to, with the token:
// "nats://TOKEN@127.0.0.1:port" ("nats://127.0.0.1:port" with NoAuth), or
// "" for an in-process server. It holds the secret: log RedactedURL,
// never ClientURL (nats.Conn.ConnectedUrlRedacted hides passwords, not a
// token given as the URL's user).
func (s *Server) ClientURL() string {
	if s.inProcess {
		return ""
	}
	u := s.ns.ClientURL()
	if s.token != "" {
		u = strings.Replace(u, "nats://", "nats://"+s.token+"@", 1)
	}
	return u
}

// RedactedURL is ClientURL with the token hidden, for logs.
func (s *Server) RedactedURL() string {
	if s.inProcess {
		return ""
	}
	if s.token == "" {
		return s.ns.ClientURL()
	}
	return strings.Replace(s.ns.ClientURL(), "nats://", "nats://REDACTED@", 1)
}

// Token returns the token clients present on the port, "" when there is
// none (InProcess or NoAuth).
func (s *Server) Token() string { return s.token }

// Port returns the TCP port the server listens on, 0 for an in-process
// server.
func (s *Server) Port() int {
	if s.inProcess {
		return 0
	}
	if a, ok := s.ns.Addr().(*net.TCPAddr); ok {
		return a.Port
	}
	return 0
}

// Connect opens a client connection to the server: in memory for an
// in-process server, over loopback TCP otherwise. The caller closes it.
func (s *Server) Connect(opts ...nats.Option) (*nats.Conn, error) {
	if s.inProcess {
		return nats.Connect("", append([]nats.Option{nats.InProcessServer(s.ns)}, opts...)...)
	}
	return nats.Connect(s.ClientURL(), opts...)
}

// Shutdown stops the server, as http.Server.Shutdown does: it closes the
// clients' connections, waits for the server's goroutines to end and
// removes the store directory when Start created it, returning the error
// removing it, if any. When ctx ends first Shutdown returns ctx.Err() and
// the server finishes stopping on its own. After a nil return no
// goroutine of the server remains. It is safe to call more than once:
// later calls wait (within their ctx) for the same stop and return its
// result.
func (s *Server) Shutdown(ctx context.Context) error {
	s.stopOnce.Do(func() {
		go func() {
			s.ns.Shutdown()
			s.ns.WaitForShutdown()
			s.stopErr = s.removeStore()
			close(s.stopped)
		}()
	})
	select {
	case <-s.stopped:
		return s.stopErr
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (s *Server) removeStore() error {
	if !s.ownsStore {
		return nil
	}
	s.ownsStore = false
	if err := os.RemoveAll(s.storeDir); err != nil {
		return fmt.Errorf("natsembed: removing the store: %w", err)
	}
	return nil
}

// slogLogger adapts slog to the server's Logger interface.
type slogLogger struct{ l *slog.Logger }

func (g slogLogger) Noticef(f string, v ...any) { g.l.Info(fmt.Sprintf(f, v...)) }
func (g slogLogger) Warnf(f string, v ...any)   { g.l.Warn(fmt.Sprintf(f, v...)) }
func (g slogLogger) Fatalf(f string, v ...any)  { g.l.Error(fmt.Sprintf(f, v...)) }
func (g slogLogger) Errorf(f string, v ...any)  { g.l.Error(fmt.Sprintf(f, v...)) }
func (g slogLogger) Debugf(f string, v ...any)  { g.l.Debug(fmt.Sprintf(f, v...)) }
func (g slogLogger) Tracef(f string, v ...any)  { g.l.Debug(fmt.Sprintf(f, v...)) }
