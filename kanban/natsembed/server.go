package natsembed

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

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
	// presents it, and nothing else on the machine can connect. Any valid
	// UTF-8 text of at most MaxTokenLen bytes works, but for one in the
	// form of a bcrypt hash ("$2a$10$..."), which the server would take
	// for the hash of the token instead of the token. Ignored with
	// InProcess. Options printed (fmt), logged (slog) or encoded as JSON
	// show it as REDACTED.
	Token string
	// NoAuth listens on the port without a token: any process on the
	// machine may connect, publish and read. For tests of clients that
	// cannot present one. With a Token as well (and not InProcess) it is
	// an error, as one of the two is a mistake.
	NoAuth bool
	// Logger receives the server's log at Info (notices), Warn and Error,
	// and Debug. nil means silent.
	Logger *slog.Logger
	// ReadyTimeout bounds the wait for the server to accept connections.
	// 0 means 10s.
	ReadyTimeout time.Duration
	// MaxMemory bounds, in bytes, the messages JetStream keeps in memory:
	// those of memory-stored streams, all streams together. It is not a
	// bound on the memory the server uses as a whole (connections,
	// buffers, the caches of file-stored streams). 0 means the server's
	// own default, kept as it is: 75% of the machine's memory, or of
	// GOMEMLIMIT when that is lower, as nats-server sets it when run on
	// its own. Negative is an error. See MaxStore for what a stream
	// that reaches the bound does.
	MaxMemory int64
	// MaxStore bounds, in bytes, the messages JetStream keeps in
	// StoreDir, all file-stored streams together. 0 means the server's
	// own default, kept as it is: 75% of the space free on StoreDir's
	// file system when the server starts (plus 75% of what the store
	// already holds), as nats-server sets it when run on its own: no
	// fixed bound would suit both a test's server and a service's, and
	// a bound set by default would start refusing the writes of a
	// service whose store had grown past it. A service that shares its
	// disk with other data sets it. Negative is an error.
	//
	// Once the streams of a storage hold its bound or more, JetStream
	// refuses every write to them (the write that crosses the bound is
	// stored): the publisher gets an "insufficient resources" error
	// (jetstream.APIError with ErrorCode 10023), until messages are
	// removed. A stream created with a MaxBytes larger than the room left
	// is refused at creation. Restarting on a store that holds more than
	// a lower MaxStore brings every stream back, and refuses writes until
	// the store is below it.
	MaxStore int64
}

// redacted stands for a token in what Options and Server print.
const redacted = "REDACTED"

// Format prints o as fmt prints a struct, for every verb, with the Token
// shown as REDACTED: a configuration printed or logged whole shows no
// secret.
func (o Options) Format(f fmt.State, verb rune) {
	type options Options // the fields, without this method
	if o.Token != "" {
		o.Token = redacted
	}
	s := fmt.Sprintf(fmt.FormatString(f, verb), options(o))
	if strings.HasPrefix(s, "natsembed.options{") {
		s = "natsembed.Options" + strings.TrimPrefix(s, "natsembed.options") // %#v
	}
	_, _ = io.WriteString(f, s)
}

// LogValue is o for log/slog, with the Token shown as REDACTED, whatever
// the handler: a JSON handler would otherwise encode the field as it is.
func (o Options) LogValue() slog.Value {
	type options Options // the fields, without this method
	if o.Token != "" {
		o.Token = redacted
	}
	return slog.AnyValue(options(o))
}

// MarshalJSON encodes o as encoding/json encodes a struct, with the Token
// shown as REDACTED: slog's JSON handler encodes Options found inside
// another value (a configuration struct, a slice) with encoding/json,
// without calling LogValue. Options encoded this way do not decode back
// to the same token.
func (o Options) MarshalJSON() ([]byte, error) {
	type options Options // the fields, without this method
	if o.Token != "" {
		o.Token = redacted
	}
	return json.Marshal(options(o))
}

// MaxTokenLen is the longest Options.Token, in bytes. A client sends the
// token in its CONNECT line, JSON-encoded (up to six bytes a byte), which
// the server caps at 4 KiB: with a longer token no client could connect.
const MaxTokenLen = 512

// bcryptHash is the form of token the server takes for a bcrypt hash.
var bcryptHash = regexp.MustCompile(`^\$2[abxy]\$\d{2}\$`)

// Validate reports the first field out of range, naming it. It never
// shows the Token.
func (o Options) Validate() error {
	switch {
	case o.Port < 0 || o.Port > 65535:
		return fmt.Errorf("natsembed: invalid Port %d: must be between 0 and 65535", o.Port)
	case o.ReadyTimeout < 0:
		return fmt.Errorf("natsembed: invalid ReadyTimeout %v: must not be negative", o.ReadyTimeout)
	case o.MaxMemory < 0:
		return fmt.Errorf("natsembed: invalid MaxMemory %d: must not be negative", o.MaxMemory)
	case o.MaxStore < 0:
		return fmt.Errorf("natsembed: invalid MaxStore %d: must not be negative", o.MaxStore)
	case len(o.Token) > MaxTokenLen:
		return fmt.Errorf("natsembed: invalid Token: %d bytes long, more than %d", len(o.Token), MaxTokenLen)
	case !utf8.ValidString(o.Token):
		return errors.New("natsembed: invalid Token: must be valid UTF-8")
	case bcryptHash.MatchString(o.Token):
		return errors.New("natsembed: invalid Token: the server would take it for a bcrypt hash (\"$2a$10$...\")")
	case o.Token != "" && o.NoAuth && !o.InProcess:
		return errors.New("natsembed: invalid Token: set with NoAuth, which listens without one; drop one of the two")
	}
	return nil
}

// ErrStoreInUse is wrapped by the error Start returns when another server,
// in this process or another, runs on the same StoreDir.
var ErrStoreInUse = errors.New("natsembed: store directory in use")

// LockFile is the name of the file in the StoreDir that a running server
// holds an exclusive lock on (on Unix and Windows; other systems have no
// lock). The lock is the operating system's: it goes with the process, so
// one killed leaves no stale lock behind. On Unix, a LockFile that is a
// symbolic link fails Start, and so does a file system that refuses the
// lock (one without locks), with an error that is not ErrStoreInUse.
const LockFile = "natsembed.lock"

// Server is a running embedded NATS server. Shutdown stops it.
type Server struct {
	ns        *server.Server
	storeDir  string
	ownsStore bool
	lock      *os.File // LockFile in storeDir, locked; nil once released
	inProcess bool
	port      int    // listened on; 0 with InProcess
	token     string // "" with InProcess or NoAuth
	fatal     fatalLog

	stopOnce sync.Once
	stopped  chan struct{} // closed once the server has stopped
	stopErr  error         // removing the store, set before stopped closes
}

// Start runs a NATS server with JetStream and waits until it accepts
// connections, ctx ends, or ReadyTimeout passes. It holds an exclusive
// lock on StoreDir (the file LockFile in it) until Shutdown has stopped
// the server, since two servers on one store would corrupt it: while
// another server, in this process or another, runs on StoreDir, Start
// fails at once with an error wrapping ErrStoreInUse. A server that
// cannot start — its Port in use, its store unusable — fails Start at
// once with the reason, naming the address for a port.
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
	if err := s.lockStore(); err != nil {
		_ = s.removeStore()
		return nil, err
	}
	sopts := &server.Options{
		ServerName:         "natsembed",
		Host:               "127.0.0.1",
		Port:               opts.Port,
		JetStream:          true,
		StoreDir:           s.storeDir,
		JetStreamMaxMemory: opts.MaxMemory, // 0: the server's default (see Options)
		JetStreamMaxStore:  opts.MaxStore,
		NoSigs:             true,
		NoLog:              opts.Logger == nil,
		DontListen:         opts.InProcess,
		Authorization:      s.token,
	}
	if opts.Port == 0 {
		sopts.Port = server.RANDOM_PORT
	}
	ns, err := server.NewServer(sopts)
	if err != nil {
		_ = s.release()
		return nil, fmt.Errorf("natsembed: %w", err)
	}
	// The logger is set even without opts.Logger: it is how a failure to
	// start (the server's Fatalf, after which it never gets ready) is seen.
	ns.SetLoggerV2(slogLogger{l: opts.Logger, fatal: &s.fatal}, opts.Logger != nil, false, false)
	s.ns = ns
	ns.Start()
	timeout := opts.ReadyTimeout
	if timeout == 0 {
		timeout = 10 * time.Second
	}
	deadline := time.Now().Add(timeout)
	for {
		if err := s.fatal.err(); err != nil {
			_ = s.Shutdown(context.Background()) // the server is not serving: it stops at once
			return nil, err
		}
		if ns.ReadyForConnections(50 * time.Millisecond) {
			if a, ok := ns.Addr().(*net.TCPAddr); ok && !s.inProcess {
				s.port = a.Port
			}
			return s, nil
		}
		if ctx.Err() != nil || time.Now().After(deadline) {
			_ = s.Shutdown(context.Background())
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			return nil, errors.New("natsembed: server not ready within " + timeout.String())
		}
	}
}

// lockStore creates the store directory if need be and takes the lock on
// its LockFile, writing this process's ID in it for the error of a server
// turned away.
func (s *Server) lockStore() error {
	if err := os.MkdirAll(s.storeDir, 0o750); err != nil {
		return fmt.Errorf("natsembed: store directory: %w", err)
	}
	path := filepath.Join(s.storeDir, LockFile)
	// A symbolic link is not followed: one planted in a directory others
	// may write to would have the file it points at truncated.
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|noFollow, 0o600)
	if err != nil {
		return fmt.Errorf("natsembed: store directory: %w", err)
	}
	if err := lockFile(f); err != nil {
		if !heldElsewhere(err) { // a file system without locks, say
			_ = f.Close()
			return fmt.Errorf("natsembed: store directory: cannot lock %s: %w", path, err)
		}
		b := make([]byte, 32)
		n, _ := f.ReadAt(b, 0)
		_ = f.Close()
		holder := "another server"
		if pid, perr := strconv.Atoi(strings.TrimSpace(string(b[:n]))); perr == nil {
			if pid == os.Getpid() {
				holder = "another server of this process"
			} else {
				holder = "a server of process " + strconv.Itoa(pid)
			}
		}
		return fmt.Errorf("%w: %s is locked by %s (%v); shut it down or use another StoreDir", ErrStoreInUse, s.storeDir, holder, err)
	}
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	s.lock = f
	return nil
}

// release gives back the store's lock, then removes the store directory
// when Start created it. It returns the error removing it, if any.
func (s *Server) release() error {
	if s.lock != nil {
		_ = s.lock.Truncate(0)
		_ = unlockFile(s.lock)
		_ = s.lock.Close() // closing releases the lock too
		s.lock = nil
	}
	return s.removeStore()
}

// fatalLog keeps the first fatal error the server logs.
type fatalLog struct {
	mu    sync.Mutex
	first error
}

func (f *fatalLog) set(err error) {
	f.mu.Lock()
	if f.first == nil {
		f.first = err
	}
	f.mu.Unlock()
}

func (f *fatalLog) err() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.first
}

// fatalError turns the server's fatal log line into Start's error. A
// failure to listen names the address; otherwise the line is kept. The
// error found among the arguments, if any, is wrapped, so that errors.Is
// sees syscall.EADDRINUSE, for one.
func fatalError(format string, v []any) error {
	var cause error
	for _, a := range v {
		if err, ok := a.(error); ok {
			cause = err
			break
		}
	}
	var op *net.OpError
	if errors.As(cause, &op) && op.Op == "listen" && op.Addr != nil {
		return fmt.Errorf("natsembed: cannot listen on %s: %w", op.Addr, op.Err)
	}
	msg := fmt.Sprintf(format, v...)
	if cause == nil {
		return errors.New("natsembed: server failed to start: " + msg)
	}
	return &startError{msg: msg, err: cause}
}

// startError is a fatal log line of the server with the error it names.
type startError struct {
	msg string
	err error
}

func (e *startError) Error() string { return "natsembed: server failed to start: " + e.msg }
func (e *startError) Unwrap() error { return e.err }

// Format prints s, for every verb, as where it serves (RedactedURL, or
// in-process) and its store, never its token: fmt would print the
// fields of the struct a *Server points to, the token among them.
func (s *Server) Format(f fmt.State, _ rune) {
	if s == nil {
		_, _ = io.WriteString(f, "<nil>")
		return
	}
	where := "in-process"
	if !s.inProcess {
		where = s.RedactedURL()
	}
	_, _ = fmt.Fprintf(f, "natsembed.Server{%s, StoreDir: %q}", where, s.storeDir)
}

// NATS returns the underlying nats-server, for options this package does
// not wrap.
func (s *Server) NATS() *server.Server { return s.ns }

// StoreDir returns the JetStream store directory.
func (s *Server) StoreDir() string { return s.storeDir }

// ClientURL returns the URL clients connect to, with the token:
// "nats://TOKEN@127.0.0.1:port" ("nats://127.0.0.1:port" with NoAuth), or
// "" for an in-process server. The token is percent-encoded but for
// letters, digits and "-._~", so that any token reaches the server as it
// is: nats.Connect and url.Parse give it back. The URL holds the secret:
// log RedactedURL, never ClientURL. A connection made with ClientURL has
// the token in its URL, which nats.Conn.ConnectedUrlRedacted does not
// hide (it hides passwords, not a token given as the URL's user); one made
// with Connect does not.
func (s *Server) ClientURL() string {
	if s.inProcess {
		return ""
	}
	u := s.ns.ClientURL()
	if s.token != "" {
		u = strings.Replace(u, "nats://", "nats://"+escapeUserinfo(s.token)+"@", 1)
	}
	return u
}

// escapeUserinfo percent-encodes every byte of v but the URL's unreserved
// characters: url.User would leave ',' and ';' as they are, and a comma
// splits the URL in two for nats.Connect, which takes a list.
func escapeUserinfo(v string) string {
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	b.Grow(3 * len(v))
	for i := 0; i < len(v); i++ {
		c := v[i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~' {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hex[c>>4])
		b.WriteByte(hex[c&15])
	}
	return b.String()
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
// server. After Shutdown it is still the port the server listened on, as
// ClientURL is still its URL: a server started again on that Port is
// where the clients reconnect.
func (s *Server) Port() int { return s.port }

// Connect opens a client connection to the server: in memory for an
// in-process server, over loopback TCP otherwise, presenting the token
// with nats.Token, so that the connection's URL (ConnectedUrl, Servers)
// holds no secret. The caller closes it.
func (s *Server) Connect(opts ...nats.Option) (*nats.Conn, error) {
	if s.inProcess {
		return nats.Connect("", append([]nats.Option{nats.InProcessServer(s.ns)}, opts...)...)
	}
	if s.token != "" {
		opts = append([]nats.Option{nats.Token(s.token)}, opts...)
	}
	return nats.Connect(s.ns.ClientURL(), opts...)
}

// Shutdown stops the server, as http.Server.Shutdown does: it closes the
// clients' connections, waits for the server's goroutines to end, releases
// the lock on the store directory — another server may then start on it —
// and removes the directory when Start created it, returning the error
// removing it, if any. When ctx ends first Shutdown returns ctx.Err() and
// the server finishes stopping on its own (and releases the lock then).
// After a nil return no goroutine of the server remains. It is safe to
// call more than once: later calls wait (within their ctx) for the same
// stop and return its result, which a stopped server returns whatever
// its ctx.
func (s *Server) Shutdown(ctx context.Context) error {
	s.stopOnce.Do(func() {
		go func() {
			s.ns.Shutdown()
			s.ns.WaitForShutdown()
			s.stopErr = s.release()
			close(s.stopped)
		}()
	})
	select {
	case <-s.stopped:
		return s.stopErr
	case <-ctx.Done():
		// A stop that has finished is reported even if ctx has ended
		// too: select would pick between the two at random.
		select {
		case <-s.stopped:
			return s.stopErr
		default:
			return ctx.Err()
		}
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

// slogLogger adapts slog to the server's Logger interface; l may be nil,
// which logs nothing. The server's fatal errors also go to fatal.
type slogLogger struct {
	l     *slog.Logger
	fatal *fatalLog
}

func (g slogLogger) log(level slog.Level, f string, v []any) {
	if g.l != nil {
		g.l.Log(context.Background(), level, fmt.Sprintf(f, v...))
	}
}

func (g slogLogger) Noticef(f string, v ...any) { g.log(slog.LevelInfo, f, v) }
func (g slogLogger) Warnf(f string, v ...any)   { g.log(slog.LevelWarn, f, v) }
func (g slogLogger) Errorf(f string, v ...any)  { g.log(slog.LevelError, f, v) }
func (g slogLogger) Debugf(f string, v ...any)  { g.log(slog.LevelDebug, f, v) }
func (g slogLogger) Tracef(f string, v ...any)  { g.log(slog.LevelDebug, f, v) }

func (g slogLogger) Fatalf(f string, v ...any) {
	g.fatal.set(fatalError(f, v))
	g.log(slog.LevelError, f, v)
}
