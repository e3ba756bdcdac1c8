package svc_test

import (
	"bytes"
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
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/examples/internal/datadir"
	"github.com/taipattern/taikit/examples/internal/svc"
	"github.com/taipattern/taikit/kanban/natsembed"
)

func parse(t *testing.T, env map[string]string, args ...string) (svc.Serving, error) {
	t.Helper()
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	e := svc.NewEnv(func(k string) string { return env[k] })
	var s svc.Serving
	s.Register(fs, e, 3009, svc.Usage{API: "the API", Admin: "the cord"})
	require.NoError(t, fs.Parse(args))
	return s, errorsJoin(e.Err(), s.Finish())
}

func errorsJoin(a, b error) error {
	switch {
	case a == nil:
		return b
	case b == nil:
		return a
	}
	return fmt.Errorf("%w; %w", a, b)
}

func TestServingDefaults(t *testing.T) {
	s, err := parse(t, nil)
	require.NoError(t, err)
	assert.Equal(t, "127.0.0.1:3009", s.Addr, "no token: loopback only")
	assert.Contains(t, s.AllowedHosts, "localhost")

	s, err = parse(t, map[string]string{"API_TOKEN": "api-token-0123456789"})
	require.NoError(t, err)
	assert.Equal(t, ":3009", s.Addr, "a token: every interface")
	assert.Equal(t, "api-token-0123456789", s.APIToken.Reveal())

	s, err = parse(t, nil, "-allowed-hosts", " pay.example , *")
	require.NoError(t, err)
	assert.Equal(t, []string{"pay.example", "*"}, s.AllowedHosts)
}

func TestServingRefusals(t *testing.T) {
	dir := t.TempDir()
	short := filepath.Join(dir, "short")
	require.NoError(t, os.WriteFile(short, []byte("too short"), 0o600))
	good := filepath.Join(dir, "good")
	require.NoError(t, os.WriteFile(good, bytes.Repeat([]byte("k"), 32), 0o600))
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"-addr", ":8080"}, "-addr :8080 listens beyond loopback without -api-token"},
		{[]string{"-api-token", "same-token-0123456789", "-admin-token", "same-token-0123456789"}, "admin"},
		{[]string{"-audit-key-file", short}, "holds 9 bytes; the key needs at least"},
		{[]string{"-audit-key-file", filepath.Join(dir, "missing")}, "-audit-key-file:"},
		{[]string{"-api-token-file", filepath.Join(dir, "missing")}, "api-token"},
	} {
		_, err := parse(t, nil, c.args...)
		assert.ErrorContains(t, err, c.want, "%v", c.args)
	}
	s, err := parse(t, nil, "-audit-key-file", good)
	require.NoError(t, err)
	assert.Len(t, s.AuditKey.Reveal(), 32)
}

// An audit key file is read no further than a key can be long, as a
// token file is: -audit-key-file /dev/zero would never end.
func TestServingRefusesAnAuditKeyFileHoldingMoreThanAKey(t *testing.T) {
	big := filepath.Join(t.TempDir(), "big")
	require.NoError(t, os.WriteFile(big, bytes.Repeat([]byte("k"), 64<<10+1), 0o600))
	s, err := parse(t, nil, "-audit-key-file", big)
	assert.ErrorContains(t, err, "-audit-key-file: kaizen: audit key file "+big+" holds more than 65536 bytes")
	assert.Zero(t, len(s.AuditKey.Reveal()), "no key is taken")

	most := filepath.Join(t.TempDir(), "most")
	require.NoError(t, os.WriteFile(most, bytes.Repeat([]byte("k"), 64<<10), 0o600))
	s, err = parse(t, nil, "-audit-key-file", most)
	require.NoError(t, err)
	assert.Len(t, s.AuditKey.Reveal(), 64<<10)
}

// An -allowed-hosts entry that no Host header can match (a URL, a path, a
// pattern, a variable left unexpanded) is refused at the start: it
// allowed nothing, and "http://pay.example" allowed a host named "http".
func TestServingRefusesAnAllowedHostNoHostHeaderMatches(t *testing.T) {
	for _, bad := range []string{"https://pay.example", "pay.example/", "*.example.com", "$(POD_IP)", "pay.example:https", "user@pay.example", "[pay.example]"} {
		_, err := parse(t, nil, "-allowed-hosts", "localhost,"+bad)
		assert.ErrorContains(t, err, fmt.Sprintf("-allowed-hosts: %q is not", bad), bad)
	}
	s, err := parse(t, nil, "-allowed-hosts", "pay.example:443, [::1], 0:0:0:0:0:0:0:2, Bücher.example, ops.example., 10.0.0.5, host_1, *")
	require.NoError(t, err)
	assert.Len(t, s.AllowedHosts, 8)
}

// A token flag given on the command line wins over the environment's
// fallback for the token's other form, as over its own: ADMIN_TOKEN left
// exported in a shell does not stop a start with -admin-token-file, nor
// API_TOKEN_FILE set in a container one with -api-token. Both forms given
// on the command line, or both in the environment, are still refused.
func TestServingTokenFlagWinsOverTheEnvironment(t *testing.T) {
	dir := t.TempDir()
	apiFile, adminFile := filepath.Join(dir, "api"), filepath.Join(dir, "admin")
	require.NoError(t, os.WriteFile(apiFile, []byte("api-from-file-0123456789\n"), 0o600))
	require.NoError(t, os.WriteFile(adminFile, []byte("admin-from-file-0123456789\n"), 0o600))

	s, err := parse(t, map[string]string{"ADMIN_TOKEN": "admin-from-env-0123456789", "API_TOKEN_FILE": apiFile},
		"-admin-token-file", adminFile, "-api-token", "api-from-flag-0123456789")
	require.NoError(t, err)
	assert.Equal(t, "admin-from-file-0123456789", s.AdminToken.Reveal())
	assert.Equal(t, "api-from-flag-0123456789", s.APIToken.Reveal())

	s, err = parse(t, map[string]string{"API_TOKEN": "api-from-env-0123456789", "ADMIN_TOKEN_FILE": adminFile},
		"-api-token-file", apiFile, "-admin-token", "admin-from-flag-0123456789")
	require.NoError(t, err)
	assert.Equal(t, "api-from-file-0123456789", s.APIToken.Reveal())
	assert.Equal(t, "admin-from-flag-0123456789", s.AdminToken.Reveal())

	_, err = parse(t, nil, "-api-token", "api-from-flag-0123456789", "-api-token-file", apiFile)
	assert.ErrorContains(t, err, "-api-token and -api-token-file are both set")
	_, err = parse(t, map[string]string{"ADMIN_TOKEN": "admin-from-env-0123456789", "ADMIN_TOKEN_FILE": adminFile})
	assert.ErrorContains(t, err, "ADMIN_TOKEN and ADMIN_TOKEN_FILE are both set")
}

func TestEnv(t *testing.T) {
	e := svc.NewEnv(func(k string) string {
		return map[string]string{"D": "2s", "N": "7", "F": "0.5", "BAD_D": "soon", "BAD_N": "many", "BAD_F": "half"}[k]
	})
	assert.Equal(t, 2*time.Second, e.Duration("D", time.Second))
	assert.Equal(t, 7, e.Int("N", 1))
	assert.Equal(t, 0.5, e.Float("F", 1))
	assert.Equal(t, "x", e.String("UNSET", "x"))
	require.NoError(t, e.Err())
	assert.Equal(t, time.Second, e.Duration("BAD_D", time.Second), "a bad value keeps the default")
	e.Int("BAD_N", 1)
	e.Float("BAD_F", 1)
	err := e.Err()
	assert.ErrorContains(t, err, `BAD_D="soon" is not a duration`)
	assert.ErrorContains(t, err, `BAD_N="many" is not an integer`)
	assert.ErrorContains(t, err, `BAD_F="half" is not a number`)
}

// TestEnvIntAsTheFlag: a variable is the default of its flag, and means
// what the flag would: -workers 0x40 and WORKERS=0x40 alike.
// A duration too long for a time.Duration (about 292 years) is said to be
// out of range, as an integer too large is, not to be no duration at all:
// time.ParseDuration words both alike.
func TestEnvDurationOutOfRange(t *testing.T) {
	vars := map[string]string{
		"LONG": "9999999999h", "JUST_OVER": "2562047h47m16.854775808s", "NEGATIVE": "-2562047h47m16.854775809s",
		"LONGEST": "2562047h47m16.854775807s", "SHORTEST": "-2562047h47m16.854775808s",
		"NO_UNIT": "5", "WORD": "soon", "EMPTY_UNIT": ".s",
	}
	e := svc.NewEnv(func(k string) string { return vars[k] })
	for _, name := range []string{"LONG", "JUST_OVER", "NEGATIVE", "NO_UNIT", "WORD", "EMPTY_UNIT"} {
		assert.Equal(t, time.Second, e.Duration(name, time.Second), name)
	}
	assert.Equal(t, time.Duration(math.MaxInt64), e.Duration("LONGEST", 0))
	assert.Equal(t, time.Duration(math.MinInt64), e.Duration("SHORTEST", 0))
	err := e.Err()
	for _, name := range []string{"LONG", "JUST_OVER", "NEGATIVE"} {
		assert.ErrorContains(t, err, name+"="+strconv.Quote(vars[name])+" is out of range for a duration")
	}
	for _, name := range []string{"NO_UNIT", "WORD", "EMPTY_UNIT"} {
		assert.ErrorContains(t, err, name+"="+strconv.Quote(vars[name])+" is not a duration")
	}
}

func TestEnvIntAsTheFlag(t *testing.T) {
	vars := map[string]string{"HEX": "0x40", "UNDERSCORES": "1_000", "OCTAL": "0o17", "HUGE": "99999999999999999999"}
	e := svc.NewEnv(func(k string) string { return vars[k] })
	for name, v := range vars {
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		n := fs.Int("n", 0, "")
		flagErr := fs.Parse([]string{"-n", v})
		got := e.Int(name, -1)
		if flagErr == nil {
			assert.Equal(t, *n, got, name)
		}
	}
	assert.EqualError(t, e.Err(), `HUGE="99999999999999999999" is out of range for an integer`)
}

func TestListenRefusesABusyDirAndPort(t *testing.T) {
	dir := t.TempDir()
	lock, ln, err := svc.Listen(dir, "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	_, _, err = svc.Listen(dir, "127.0.0.1:0")
	assert.Error(t, err, "a second start on the same data dir")
	require.NoError(t, lock.Release())

	_, _, err = svc.Listen(t.TempDir(), ln.Addr().String())
	assert.ErrorContains(t, err, "cannot listen on -addr")

	// A data dir made for a start that fails on its port is taken away.
	fresh := filepath.Join(t.TempDir(), "new")
	_, _, err = svc.Listen(fresh, ln.Addr().String())
	assert.ErrorContains(t, err, "cannot listen on -addr")
	assert.NoDirExists(t, fresh, "a failed start changes nothing")

	// And so are the directories made above it, down to one that was there.
	parent := t.TempDir()
	nested := filepath.Join(parent, "a", "b", "data")
	_, _, err = svc.Listen(nested, ln.Addr().String())
	assert.ErrorContains(t, err, "cannot listen on -addr")
	assert.NoDirExists(t, filepath.Join(parent, "a"), "a failed start changes nothing")
	assert.DirExists(t, parent)
}

// A start that fails on its port leaves an existing data dir as it found
// it: the lock file it created there is taken away, as it is from a
// directory it made; one that was there stays.
// A data dir written with a ".." after a link is the one Acquire takes
// (the link's name taken away), and a failed start takes away what it
// made of that one, not of the path through the link.
func TestListenOnABusyPortLeavesNoDirectoryAfterDotDot(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	base := t.TempDir()
	require.NoError(t, os.Symlink(t.TempDir(), filepath.Join(base, "link")))
	_, _, err = svc.Listen(base+"/link/../data", ln.Addr().String())
	require.ErrorContains(t, err, "cannot listen on -addr")
	assert.NoDirExists(t, filepath.Join(base, "data"), "a failed start changes nothing")
}

func TestListenOnABusyPortLeavesNoLockFile(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	dir := t.TempDir()
	_, _, err = svc.Listen(dir, ln.Addr().String())
	require.ErrorContains(t, err, "cannot listen on -addr")
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	assert.Empty(t, entries, "a failed start changes nothing")

	kept := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(kept, datadir.LockFile), nil, 0o600))
	_, _, err = svc.Listen(kept, ln.Addr().String())
	require.ErrorContains(t, err, "cannot listen on -addr")
	assert.FileExists(t, filepath.Join(kept, datadir.LockFile), "the lock file of an earlier run stays")
	lock, err := datadir.Acquire(kept)
	require.NoError(t, err, "the directory is free again")
	require.NoError(t, lock.Release())
}

// An address with white space around it (ADDR=" 127.0.0.1:3009" from an
// env file) is refused as not host:port, quoted so that the space shows,
// not said to listen beyond loopback, nor left for the listen to fail on.
func TestAddrWithWhiteSpace(t *testing.T) {
	for _, addr := range []string{" 127.0.0.1:3009", "127.0.0.1:3009 ", "127.0.0.1:3009\n", "\t:3009"} {
		for _, args := range [][]string{nil, {"-api-token", "t0ken"}} {
			_, err := parse(t, map[string]string{"ADDR": addr}, args...)
			require.Error(t, err, "%q %q", addr, args)
			assert.ErrorContains(t, err, "-addr "+strconv.Quote(addr)+" is not host:port", addr)
			assert.NotContains(t, err.Error(), "beyond loopback", addr)
		}
	}
}

func TestMalformedAddr(t *testing.T) {
	for _, addr := range []string{"nonsense", "127.0.0.1", "127.0.0.1:", "[::1"} {
		_, err := parse(t, nil, "-addr", addr)
		assert.ErrorContains(t, err, "-addr \""+addr+"\" is not host:port (127.0.0.1:3009, or :3009 for every interface)", addr)
		assert.NotContains(t, err.Error(), "beyond loopback", addr)
	}
}

func TestServeStopsServerThenService(t *testing.T) {
	var logs bytes.Buffer
	log := svc.Logger(&logs, "debug", "test-1")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte("ok")) })}
	ctx, cancel := context.WithCancel(context.Background())
	addr := ln.Addr().String()
	var afterServer error // a request made while the service closes
	closed := false
	done := make(chan error, 1)
	go func() {
		done <- svc.Serve(ctx, srv, ln, func(context.Context) error {
			closed = true
			_, afterServer = http.Get("http://" + addr)
			return nil
		}, log)
	}()
	resp, err := http.Get("http://" + addr)
	require.NoError(t, err)
	resp.Body.Close()
	cancel()
	require.NoError(t, <-done)
	assert.True(t, closed, "the service was closed")
	assert.Error(t, afterServer, "the server stopped listening before the service closed")
	assert.Contains(t, logs.String(), "instance=test-1")
	assert.True(t, strings.Contains(logs.String(), "msg=stopped"))
}

func ExampleServing() {
	fs := flag.NewFlagSet("payment", flag.ContinueOnError)
	env := svc.NewEnv(func(string) string { return "" })
	var s svc.Serving
	s.Register(fs, env, 3001, svc.Usage{API: "POST /payment", Admin: "the cord"})
	_ = fs.Parse([]string{"-api-token", "a-long-random-api-token"})
	if err := s.Finish(); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(s.Addr)
	// Output: :3001
}

func TestPublicHostPort(t *testing.T) {
	for in, want := range map[string]string{
		":3001":          "localhost:3001",
		"[::]:3001":      "localhost:3001",
		"0.0.0.0:3001":   "localhost:3001",
		"127.0.0.1:3001": "127.0.0.1:3001",
		"pay.example:80": "pay.example:80",
		"no-port":        "no-port",
	} {
		assert.Equal(t, want, svc.PublicHostPort(in), in)
	}
}

func TestRedactURL(t *testing.T) {
	assert.Equal(t, "redis://xxxxx@h:6379,nats://u:xxxxx@h", svc.RedactURL("redis://tok@h:6379,nats://u:p@h"))
	assert.Equal(t, "(unparsable URL)", svc.RedactURL("nats://u:p@h:bad port"))
}

// A URL without a scheme, which nats.Connect takes as nats://, is
// redacted as that URL would be; url.Parse read "user" as its scheme and
// left the password in view.
func TestRedactURLWithoutScheme(t *testing.T) {
	for in, want := range map[string]string{
		"user:s3cret@nats-1:4222": "user:xxxxx@nats-1:4222",
		"s3cret@nats-1:4222":      "xxxxx@nats-1:4222",
		"nats-1:4222":             "nats-1:4222",
		"":                        "",
		"nats://u:s3cret@a:4222, user:s3cret@b:1": "nats://u:xxxxx@a:4222,user:xxxxx@b:1",
	} {
		assert.Equal(t, want, svc.RedactURL(in), in)
	}

	srv, err := natsembed.Start(context.Background(), natsembed.Options{Token: "s3cret-token-0123456789"})
	require.NoError(t, err)
	defer func() { assert.NoError(t, srv.Shutdown(context.Background())) }()
	noScheme := strings.TrimPrefix(srv.ClientURL(), "nats://")
	n, err := svc.StartNATS(context.Background(), noScheme, "", "test", svc.Logger(io.Discard, "info", "t"))
	require.NoError(t, err)
	nc, err := n.Connect()
	require.NoError(t, err, "NATS takes a URL without a scheme")
	nc.Close()
	assert.NotContains(t, n.Location(), "s3cret")
}

// A secret written into a URL unescaped, with a character that ends the
// host part ('/', '?' or '#': a base64 token has '/'), put the "@" where
// url.Parse no longer sees user information: the URL parsed, and the
// secret was shown whole, in the start-up log and in every connect error.
func TestRedactURLSecretWithReservedCharacters(t *testing.T) {
	for in, want := range map[string]string{
		"nats://Zm9v/YmFy@nats-1:4222":        "nats://xxxxx@nats-1:4222",
		"Zm9v/YmFy@nats-1:4222":               "xxxxx@nats-1:4222",
		"redis://default:1234?abcd@h:6379/0":  "redis://default:xxxxx@h:6379/0",
		"redis://u:99#abcd@h:6379":            "redis://u:xxxxx@h:6379",
		"redis://u:p@ss/w@rd@h:6379":          "redis://u:xxxxx@h:6379",
		"nats://a:b@h1:4222,nats://tok/en@h2": "nats://a:xxxxx@h1:4222,nats://xxxxx@h2",
		"nats://nats-1:4222/":                 "nats://nats-1:4222/",
		// A fragment is hidden as a query's values are: a token put
		// there by mistake was shown whole.
		"http://prom:9090/#tok-abcd": "http://prom:9090/#xxxxx",
		"http://prom:9090/?a=abcd#":  "http://prom:9090/?a=xxxxx",
	} {
		got := svc.RedactURL(in)
		assert.Equal(t, want, got, in)
		for _, secret := range []string{"Zm9v", "YmFy", "1234", "abcd", "ss/w", "rd", "tok", "en@"} {
			if strings.Contains(in, secret) {
				assert.NotContains(t, got, secret, in)
			}
		}
	}
}

func TestNATSEmbeddedAndExternal(t *testing.T) {
	var logs bytes.Buffer
	log := svc.Logger(&logs, "info", "t")
	ctx := context.Background()
	n, err := svc.StartNATS(ctx, "", t.TempDir(), "test", log)
	require.NoError(t, err)
	assert.True(t, n.Embedded())
	assert.Equal(t, "embedded (in-process)", n.Location())
	nc, err := n.Connect()
	require.NoError(t, err)
	require.NoError(t, nc.Publish("x", []byte("y")))
	require.NoError(t, svc.CloseConn(nc)(ctx))
	require.NoError(t, n.Shutdown(ctx))

	ext, err := svc.StartNATS(ctx, "nats://user:secret@127.0.0.1:1", "", "test", log)
	require.NoError(t, err)
	assert.False(t, ext.Embedded())
	assert.Equal(t, "nats://user:xxxxx@127.0.0.1:1", ext.Location())
	_, err = ext.Connect()
	require.Error(t, err, "nothing listens on port 1")
	assert.NotContains(t, err.Error(), "secret")
	require.NoError(t, ext.Shutdown(ctx))
}

func TestExitCode(t *testing.T) {
	var out bytes.Buffer
	assert.Equal(t, 0, svc.ExitCode("payment", nil, &out))
	assert.Equal(t, 0, svc.ExitCode("payment", flag.ErrHelp, &out), "-h prints the flags and succeeds")
	assert.Empty(t, out.String())
	assert.Equal(t, 1, svc.ExitCode("payment", fmt.Errorf("parse: %w", os.ErrNotExist), &out))
	assert.Equal(t, "payment: parse: file does not exist\n", out.String())
}

func TestCheckLogLevel(t *testing.T) {
	for _, l := range []string{"debug", "info", "warn", "error"} {
		assert.NoError(t, svc.CheckLogLevel(l))
	}
	assert.EqualError(t, svc.CheckLogLevel("verbose"), `-log-level "verbose" must be debug, info, warn or error`)
	assert.Error(t, svc.CheckLogLevel("INFO"), "as -h says it: lower case")
}

// Logger logs at the level named, one CheckLogLevel knows, and at info
// for any other name, as its doc says: "WARN", "error+4" or "debug-8",
// which slog reads, set the level slog reads them as.
func TestLoggerLevel(t *testing.T) {
	for _, c := range []struct {
		level          string
		debug, info    bool
		warn, errorish bool
	}{
		{"debug", true, true, true, true},
		{"info", false, true, true, true},
		{"warn", false, false, true, true},
		{"error", false, false, false, true},
		{"", false, true, true, true},
		{"verbose", false, true, true, true},
		{"WARN", false, true, true, true},
		{"error+4", false, true, true, true},
		{"debug-8", false, true, true, true},
	} {
		var logs bytes.Buffer
		log := svc.Logger(&logs, c.level, "i")
		log.Debug("d")
		log.Info("i")
		log.Warn("w")
		log.Error("e")
		for _, l := range []struct {
			msg  string
			want bool
		}{{"msg=d", c.debug}, {"msg=i", c.info}, {"msg=w", c.warn}, {"msg=e", c.errorish}} {
			assert.Equal(t, l.want, strings.Contains(logs.String(), l.msg), "level %q, %s", c.level, l.msg)
		}
	}
}

// pipeListener is an in-memory listener: each dial is one net.Pipe.
type pipeListener struct {
	conns  chan net.Conn
	closed chan struct{}
	once   sync.Once
}

func newPipeListener() *pipeListener {
	return &pipeListener{conns: make(chan net.Conn), closed: make(chan struct{})}
}

func (l *pipeListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

func (l *pipeListener) Close() error {
	l.once.Do(func() { close(l.closed) })
	return nil
}

func (l *pipeListener) Addr() net.Addr { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)} }

func (l *pipeListener) dial(ctx context.Context, _, _ string) (net.Conn, error) {
	client, server := net.Pipe()
	select {
	case l.conns <- server:
		return client, nil
	case <-l.closed:
		return nil, net.ErrClosed
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// A stop that comes before the server has begun to serve (a signal at
// start, a context ended already) still closes the listener before the
// service closes and before Serve returns: the port is free again, and no
// connection waits in its backlog for an answer that will not come.
func TestServeStoppedAtOnceClosesTheListenerBeforeTheService(t *testing.T) {
	for range 50 {
		ln := newPipeListener()
		srv := &http.Server{Handler: http.NotFoundHandler()}
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		listening := false
		err := svc.Serve(ctx, srv, ln, func(context.Context) error {
			select {
			case <-ln.closed:
			default:
				listening = true
			}
			return nil
		}, svc.Logger(io.Discard, "error", "t"))
		require.NoError(t, err)
		require.False(t, listening, "the listener was still open as the service closed")
		select {
		case <-ln.closed:
		default:
			t.Fatal("Serve returned with the listener still open")
		}
	}
}

// A server closed by its owner, not by ctx, stops Serve as ctx would:
// the service's close still runs, and its failure (a store not flushed)
// is returned, not taken for the server's closing.
func TestServeReturnsTheCloseErrorOfAServerClosedElsewhere(t *testing.T) {
	ln := newPipeListener()
	srv := &http.Server{Handler: http.NotFoundHandler()}
	require.NoError(t, srv.Close())
	flush := errors.New("audit trail not flushed")
	closed := false
	err := svc.Serve(context.Background(), srv, ln, func(context.Context) error {
		closed = true
		return flush
	}, svc.Logger(io.Discard, "error", "t"))
	assert.True(t, closed, "the service was closed")
	assert.ErrorIs(t, err, flush)
	assert.NotErrorIs(t, err, http.ErrServerClosed)
}

func TestServeFinishesARequestLongerThanTheShutdownTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ln := newPipeListener()
		started := make(chan struct{})
		// A request may run as long as the server may write its answer:
		// a stop in the middle of one waits for it, however long the
		// service's close may take.
		long := svc.ShutdownTimeout + 15*time.Second
		srv := &http.Server{WriteTimeout: long + 10*time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			close(started)
			time.Sleep(long)
			_, _ = w.Write([]byte("answered"))
		})}
		ctx, cancel := context.WithCancel(context.Background())
		var closeErr error
		done := make(chan error, 1)
		go func() {
			done <- svc.Serve(ctx, srv, ln, func(ctx context.Context) error {
				closeErr = ctx.Err()
				return nil
			}, svc.Logger(io.Discard, "error", "t"))
		}()
		client := &http.Client{Transport: &http.Transport{DialContext: ln.dial}}
		type answer struct {
			body string
			err  error
		}
		got := make(chan answer, 1)
		go func() {
			resp, err := client.Get("http://payment/")
			if err != nil {
				got <- answer{err: err}
				return
			}
			b, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			got <- answer{string(b), err}
		}()
		<-started
		cancel()
		// Serve returning is the process exiting: the answer must be out
		// by then.
		serveErr := <-done
		synctest.Wait()
		select {
		case a := <-got:
			assert.NoError(t, a.err, "the request in flight is answered")
			assert.Equal(t, "answered", a.body)
		default:
			t.Error("Serve returned before the request in flight was answered")
			<-got
		}
		client.CloseIdleConnections()
		_ = srv.Close()
		assert.NoError(t, serveErr)
		assert.NoError(t, closeErr, "the service's close has time of its own")
	})
}

// Requests still running when their time is up are cut off before the
// service closes: none runs on against a closed service.
func TestServeCutsOffRequestsPastTheShutdownTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ln := newPipeListener()
		started := make(chan struct{})
		var handlerDone atomic.Bool
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			close(started)
			<-r.Context().Done() // a request that would run for ever
			handlerDone.Store(true)
		})}
		ctx, cancel := context.WithCancel(context.Background())
		var endedBeforeClose bool
		done := make(chan error, 1)
		go func() {
			done <- svc.Serve(ctx, srv, ln, func(context.Context) error {
				synctest.Wait()
				endedBeforeClose = handlerDone.Load()
				return nil
			}, svc.Logger(io.Discard, "error", "t"))
		}()
		client := &http.Client{Transport: &http.Transport{DialContext: ln.dial}}
		got := make(chan error, 1)
		go func() {
			resp, err := client.Get("http://payment/")
			if err == nil {
				resp.Body.Close()
			}
			got <- err
		}()
		<-started
		cancel()
		serveErr := <-done
		assert.ErrorContains(t, serveErr, "requests in flight not finished")
		assert.True(t, endedBeforeClose, "the request was still running when the service closed")
		_ = srv.Close()
		assert.Error(t, <-got, "the request cut off has no answer")
		client.CloseIdleConnections()
	})
}

// A request cut off at the end of its time may take a moment to stop
// once its context has ended (a write to undo, a lock to give back): the
// service closes only after it has, not under it.
func TestServeClosesTheServiceAfterTheRequestsCutOffHaveEnded(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ln := newPipeListener()
		started := make(chan struct{})
		var handlerDone atomic.Bool
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			close(started)
			<-r.Context().Done()
			time.Sleep(time.Second) // what the handler does on its way out
			handlerDone.Store(true)
		})}
		ctx, cancel := context.WithCancel(context.Background())
		var endedBeforeClose bool
		done := make(chan error, 1)
		go func() {
			done <- svc.Serve(ctx, srv, ln, func(context.Context) error {
				endedBeforeClose = handlerDone.Load()
				return nil
			}, svc.Logger(io.Discard, "error", "t"))
		}()
		client := &http.Client{Transport: &http.Transport{DialContext: ln.dial}}
		got := make(chan error, 1)
		go func() {
			resp, err := client.Get("http://payment/")
			if err == nil {
				resp.Body.Close()
			}
			got <- err
		}()
		<-started
		cancel()
		serveErr := <-done
		assert.ErrorContains(t, serveErr, "requests in flight not finished")
		assert.True(t, endedBeforeClose, "the request cut off was still running when the service closed")
		assert.Error(t, <-got, "the request cut off has no answer")
		client.CloseIdleConnections()
	})
}

// A token may ride in a URL's query (an Alertmanager behind a proxy that
// checks ?token=, a Prometheus one that checks ?password=): its value is
// as secret as a password, and was shown whole, in -h among others.
func TestRedactURLHidesTheQuery(t *testing.T) {
	for in, want := range map[string]string{
		"http://am:9093/?token=s3cret":                     "http://am:9093/?token=xxxxx",
		"https://u:pw@prom:9090/prom?password=s3cret&db=1": "https://u:xxxxx@prom:9090/prom?password=xxxxx&db=xxxxx",
		"http://am:9093/?s3cret":                           "http://am:9093/?xxxxx",
		"http://am:9093/?a=&token=s3cret%zz":               "http://am:9093/?a=&token=xxxxx",
		"nats://h1:4222?token=s3cret,nats://h2:4222":       "nats://h1:4222?token=xxxxx,nats://h2:4222",
		"http://am:9093/path?":                             "http://am:9093/path?",
		// A fragment is never sent, but may hold a token all the same
		// (#access_token=…): it is hidden whole.
		"http://am:9093/#section": "http://am:9093/#xxxxx",
	} {
		got := svc.RedactURL(in)
		assert.Equal(t, want, got, in)
		assert.NotContains(t, got, "s3cret", in)
	}
}

// A password with a comma in it (which a URL may hold unescaped) made the
// URL a list of two for RedactURL, NATS's way: what came before the comma
// had no "@", and was shown.
func TestRedactURLPasswordWithComma(t *testing.T) {
	for _, c := range []struct {
		in, want string
		secrets  []string
	}{
		{"redis://u:1234,abcd@h:6379", "redis://u:xxxxx@h:6379", []string{"1234", "abcd"}},
		{"https://1234,abcd@am:9093", "https://xxxxx@am:9093", []string{"1234", "abcd"}},
		{"rediss://:12,34@h:6379/0", "rediss://:xxxxx@h:6379/0", []string{"12,34"}},
		// NATS takes a list: the first is a server, its port shown.
		{"nats://h1:1234,abcd@h2:4222", "nats://h1:1234,xxxxx@h2:4222", []string{"abcd"}},
		{"tls://h1:4222, wss://abcd@h2:443", "tls://h1:4222,wss://xxxxx@h2:443", []string{"abcd"}},
		{"redis://t@h:6379,nats://u:p@h", "redis://xxxxx@h:6379,nats://u:xxxxx@h", nil},
	} {
		got := svc.RedactURL(c.in)
		assert.Equal(t, c.want, got, c.in)
		for _, secret := range c.secrets {
			assert.NotContains(t, got, secret, c.in)
		}
	}
}

// A query runs to the end of a URL, commas and all: one whose value is a
// list of URLs ("?next=https://a,https://b&token=...") is not a list of
// URLs, and the token after the comma is hidden as the rest of the query.
func TestRedactURLQueryWithACommaList(t *testing.T) {
	for in, want := range map[string]string{
		"http://am:9093/?next=https://a,https://b&token=s3cret": "http://am:9093/?next=xxxxx&token=xxxxx",
		"http://am:9093/?token=s3,cr://et":                      "http://am:9093/?token=xxxxx",
		// A list is still one.
		"redis://t@h:6379,nats://u:p@h?token=s3cret": "redis://xxxxx@h:6379,nats://u:xxxxx@h?token=xxxxx",
	} {
		assert.Equal(t, want, svc.RedactURL(in), in)
	}
}

// A server closed by its owner cuts off its requests as Serve's own stop
// does: the service closes once their handlers have returned, not under
// them.
func TestServeClosesTheServiceAfterTheRequestsOfAServerClosedElsewhere(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ln := newPipeListener()
		started := make(chan struct{})
		var handlerDone atomic.Bool
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			close(started)
			<-r.Context().Done()
			time.Sleep(time.Second) // what the handler does on its way out
			handlerDone.Store(true)
		})}
		var endedBeforeClose bool
		done := make(chan error, 1)
		go func() {
			done <- svc.Serve(context.Background(), srv, ln, func(context.Context) error {
				endedBeforeClose = handlerDone.Load()
				return nil
			}, svc.Logger(io.Discard, "error", "t"))
		}()
		client := &http.Client{Transport: &http.Transport{DialContext: ln.dial}}
		got := make(chan error, 1)
		go func() {
			resp, err := client.Get("http://payment/")
			if err == nil {
				resp.Body.Close()
			}
			got <- err
		}()
		<-started
		require.NoError(t, srv.Close())
		require.NoError(t, <-done)
		assert.True(t, endedBeforeClose, "the request cut off was still running when the service closed")
		assert.Error(t, <-got, "the request cut off has no answer")
		client.CloseIdleConnections()
	})
}

// brokenListener's Accept fails, for good, once ctx has ended; closed is
// closed when it is closed (srv.Serve closes it as it returns).
type brokenListener struct {
	ctx    context.Context
	once   sync.Once
	closed chan struct{}
}

var errAcceptBroke = errors.New("accept broke")

func (l *brokenListener) Accept() (net.Conn, error) {
	<-l.ctx.Done()
	return nil, errAcceptBroke
}
func (l *brokenListener) Close() error   { l.once.Do(func() { close(l.closed) }); return nil }
func (l *brokenListener) Addr() net.Addr { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)} }

// waitOnShutdown is a log handler whose "shutting down" waits until
// served is closed: srv.Serve has returned by the time Serve stops srv.
type waitOnShutdown struct {
	slog.Handler
	served <-chan struct{}
}

func (waitOnShutdown) Enabled(context.Context, slog.Level) bool { return true }

func (h waitOnShutdown) Handle(ctx context.Context, r slog.Record) error {
	if r.Message == "shutting down" {
		<-h.served
	}
	return h.Handler.Handle(ctx, r)
}

// Serving that fails as ctx ends (the listener broke) is returned,
// whichever of the two Serve saw first: when it saw ctx's end, the
// failure, read once the server had stopped, was dropped.
func TestServeReturnsAFailureThatCameAsCtxEnded(t *testing.T) {
	for range 30 {
		ctx, cancel := context.WithCancel(context.Background())
		ln := &brokenListener{ctx: ctx, closed: make(chan struct{})}
		srv := &http.Server{Handler: http.NotFoundHandler()}
		log := slog.New(waitOnShutdown{Handler: slog.DiscardHandler, served: ln.closed})
		cancel()
		err := svc.Serve(ctx, srv, ln, func(context.Context) error { return nil }, log)
		require.ErrorIs(t, err, errAcceptBroke)
	}
}

// TestStartCutShort: a start that failed after its context ended (a stop
// asked for) is no failure, and says it stopped before it was ready; one
// that failed on its own is, whatever its error wraps.
func TestStartCutShort(t *testing.T) {
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	failed := fmt.Errorf("payments bucket: %w", context.DeadlineExceeded)
	assert.NoError(t, svc.StartCutShort(context.Background(), nil, log))
	assert.Same(t, failed, svc.StartCutShort(context.Background(), failed, log), "a start that failed with its context live failed")
	assert.Empty(t, logs.String())

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	assert.NoError(t, svc.StartCutShort(ctx, failed, log))
	assert.Contains(t, logs.String(), `msg="stopped before it was ready"`)
	assert.NoError(t, svc.StartCutShort(ctx, nil, log))
}

// TestListenRefusesAnEmptyDataDir: an empty data dir is not the working
// directory; Listen takes nothing, not even the port.
func TestListenRefusesAnEmptyDataDir(t *testing.T) {
	lock, ln, err := svc.Listen("", "127.0.0.1:0")
	require.ErrorContains(t, err, "data directory: no path given")
	assert.Nil(t, lock)
	assert.Nil(t, ln)
	assert.NoFileExists(t, datadir.LockFile, "no lock file made in the working directory")
}
