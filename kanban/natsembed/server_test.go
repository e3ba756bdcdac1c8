package natsembed_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/kanban/natsembed"
)

func TestRestartKeepsStoredMessages(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	srv, err := natsembed.Start(ctx, natsembed.Options{StoreDir: dir})
	require.NoError(t, err)
	port := srv.Port()
	require.NotZero(t, port)
	assert.Equal(t, dir, srv.StoreDir())
	assert.Regexp(t, `^nats://[0-9a-f]{48}@127\.0\.0\.1:\d+$`, srv.ClientURL(), "a generated token")
	assert.Regexp(t, `^nats://REDACTED@127\.0\.0\.1:\d+$`, srv.RedactedURL())

	nc, err := srv.Connect()
	require.NoError(t, err)
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	_, err = js.CreateStream(ctx, jetstream.StreamConfig{Name: "KEEP", Subjects: []string{"keep"}})
	require.NoError(t, err)
	_, err = js.Publish(ctx, "keep", []byte("hello"))
	require.NoError(t, err)
	nc.Close()
	require.NoError(t, srv.Shutdown(ctx))
	require.NoError(t, srv.Shutdown(ctx), "twice is fine")
	_, err = os.Stat(dir)
	require.NoError(t, err, "a caller's store directory is kept")

	srv, err = natsembed.Start(ctx, natsembed.Options{StoreDir: dir, Port: port})
	require.NoError(t, err)
	defer func() { assert.NoError(t, srv.Shutdown(ctx)) }()
	assert.Equal(t, port, srv.Port())
	nc, err = srv.Connect()
	require.NoError(t, err)
	defer nc.Close()
	js, err = jetstream.New(nc)
	require.NoError(t, err)
	s, err := js.Stream(ctx, "KEEP")
	require.NoError(t, err)
	m, err := s.GetMsg(ctx, 1)
	require.NoError(t, err)
	assert.Equal(t, "hello", string(m.Data))
}

// A server on a port refuses clients without its token, unless NoAuth.
func TestPortNeedsTheToken(t *testing.T) {
	ctx := context.Background()
	srv, err := natsembed.Start(ctx, natsembed.Options{Token: "s3cret-token-0123456789"})
	require.NoError(t, err)
	defer func() { assert.NoError(t, srv.Shutdown(ctx)) }()
	assert.Equal(t, "s3cret-token-0123456789", srv.Token())
	plain := fmt.Sprintf("nats://127.0.0.1:%d", srv.Port())
	_, err = nats.Connect(plain, nats.MaxReconnects(0))
	require.Error(t, err, "no token")
	assert.ErrorIs(t, err, nats.ErrAuthorization)
	_, err = nats.Connect(plain, nats.Token("wrong"), nats.MaxReconnects(0))
	require.Error(t, err, "a wrong token")
	nc, err := nats.Connect(srv.ClientURL())
	require.NoError(t, err, "ClientURL carries the token")
	nc.Close()
	nc, err = srv.Connect()
	require.NoError(t, err, "Connect presents it")
	nc.Close()

	open, err := natsembed.Start(ctx, natsembed.Options{NoAuth: true})
	require.NoError(t, err)
	defer func() { assert.NoError(t, open.Shutdown(ctx)) }()
	assert.Empty(t, open.Token())
	assert.Equal(t, open.ClientURL(), open.RedactedURL())
	nc, err = nats.Connect(open.ClientURL())
	require.NoError(t, err, "NoAuth: anyone on the machine")
	nc.Close()
}

func TestInProcess(t *testing.T) {
	srv, err := natsembed.Start(context.Background(), natsembed.Options{InProcess: true})
	require.NoError(t, err)
	dir := srv.StoreDir()
	assert.Equal(t, "", srv.ClientURL())
	assert.Equal(t, 0, srv.Port())
	nc, err := srv.Connect()
	require.NoError(t, err)
	sub, err := nc.SubscribeSync("ping")
	require.NoError(t, err)
	require.NoError(t, nc.Publish("ping", []byte("x")))
	m, err := sub.NextMsg(5 * time.Second)
	require.NoError(t, err)
	assert.Equal(t, "x", string(m.Data))
	nc.Close()
	require.NoError(t, srv.Shutdown(context.Background()))
	_, err = os.Stat(dir)
	assert.True(t, os.IsNotExist(err), "a temporary store directory is removed")
}

// TestShutdownBoundedByContext: a Shutdown whose ctx has ended returns
// at once with ctx's error; the server stops anyway, and a later
// Shutdown waits for that stop.
func TestShutdownBoundedByContext(t *testing.T) {
	srv, err := natsembed.Start(context.Background(), natsembed.Options{InProcess: true})
	require.NoError(t, err)
	dir := srv.StoreDir()
	nc, err := srv.Connect() // a client whose connection the stop must close
	require.NoError(t, err)
	defer nc.Close()
	ended, cancel := context.WithCancel(context.Background())
	cancel()
	if err := srv.Shutdown(ended); err != nil { // nil only if the stop won the race
		assert.ErrorIs(t, err, context.Canceled)
	}
	require.NoError(t, srv.Shutdown(context.Background()))
	_, err = os.Stat(dir)
	assert.True(t, os.IsNotExist(err), "the store is removed by the stop the first call began")
}

// TestShutdownAfterStopIsNil: once the server has stopped, Shutdown
// returns the stop's result, nil, whatever its ctx: a ctx that has ended
// since is no reason to report a failure to stop.
func TestShutdownAfterStopIsNil(t *testing.T) {
	srv, err := natsembed.Start(context.Background(), natsembed.Options{InProcess: true})
	require.NoError(t, err)
	require.NoError(t, srv.Shutdown(context.Background()))
	ended, cancel := context.WithCancel(context.Background())
	cancel()
	for i := range 100 {
		require.NoError(t, srv.Shutdown(ended), "call %d", i)
	}
}

func TestLogsOnlyWhenAsked(t *testing.T) {
	var buf bytes.Buffer
	srv, err := natsembed.Start(context.Background(), natsembed.Options{InProcess: true, Logger: slog.New(slog.NewTextHandler(&buf, nil))})
	require.NoError(t, err)
	require.NoError(t, srv.Shutdown(context.Background()))
	assert.Contains(t, buf.String(), "Starting nats-server")
}

func TestOptionsValidate(t *testing.T) {
	tests := []struct {
		opts natsembed.Options
		want string
	}{
		{natsembed.Options{Port: -1}, "natsembed: invalid Port -1"},
		{natsembed.Options{Port: 70000}, "natsembed: invalid Port 70000"},
		{natsembed.Options{ReadyTimeout: -1}, "natsembed: invalid ReadyTimeout -1ns"},
		{natsembed.Options{MaxMemory: -1}, "natsembed: invalid MaxMemory -1: must not be negative"},
		{natsembed.Options{MaxStore: -1 << 20}, "natsembed: invalid MaxStore -1048576: must not be negative"},
	}
	for _, tc := range tests {
		_, err := natsembed.Start(context.Background(), tc.opts)
		assert.ErrorContains(t, err, tc.want)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := natsembed.Start(ctx, natsembed.Options{})
	assert.ErrorIs(t, err, context.Canceled)
}

// Any token reaches the server as it is, through ClientURL as through
// Connect, and neither RedactedURL nor the URL of a connection made with
// Connect shows it.
func TestAnyTokenConnects(t *testing.T) {
	ctx := context.Background()
	for _, token := range []string{"p/q#r", "x:y", "100%", "sp ace", " lead", "a,b", "semi;colon", "at@sign?q=1", "ünï€ode", "tab\there", `back\slash"quote`} {
		t.Run(token, func(t *testing.T) {
			srv, err := natsembed.Start(ctx, natsembed.Options{Token: token})
			require.NoError(t, err)
			defer func() { assert.NoError(t, srv.Shutdown(ctx)) }()
			assert.Equal(t, token, srv.Token())

			u, err := url.Parse(srv.ClientURL())
			require.NoError(t, err)
			require.NotNil(t, u.User)
			_, hasPassword := u.User.Password()
			assert.False(t, hasPassword, "the token is the URL's user, whole")
			assert.Equal(t, token, u.User.Username(), "url.Parse gives the token back")
			assert.NotContains(t, srv.RedactedURL(), token)

			nc, err := nats.Connect(srv.ClientURL(), nats.MaxReconnects(0))
			require.NoError(t, err, "ClientURL carries the token")
			nc.Close()

			nc, err = srv.Connect(nats.MaxReconnects(0))
			require.NoError(t, err, "Connect presents the token")
			defer nc.Close()
			assert.NotContains(t, nc.ConnectedUrl(), escapeAll(token), "the connection's URL holds no token")
			assert.NotContains(t, nc.ConnectedUrlRedacted(), escapeAll(token))
			assert.NotContains(t, strings.Join(nc.Servers(), " "), escapeAll(token))
			assert.NotContains(t, nc.ConnectedUrl(), "@")

			_, err = nats.Connect(srv.RedactedURL(), nats.MaxReconnects(0))
			assert.ErrorIs(t, err, nats.ErrAuthorization, "the token is needed")
		})
	}
}

// A Token is at most MaxTokenLen bytes: a client sends it in its CONNECT
// line, which the server caps, and with a longer one no client could
// connect. One at the limit connects even when every byte is one the
// client's JSON writes as six ("\u003c").
func TestTokenLength(t *testing.T) {
	ctx := context.Background()
	for _, c := range []string{"a", "<", "\x01"} {
		token := strings.Repeat(c, natsembed.MaxTokenLen)
		srv, err := natsembed.Start(ctx, natsembed.Options{Token: token})
		require.NoError(t, err)
		nc, err := srv.Connect(nats.MaxReconnects(0), nats.Name(strings.Repeat("n", 256)))
		assert.NoError(t, err, "%q × MaxTokenLen through Connect", c)
		if err == nil {
			nc.Close()
		}
		nc, err = nats.Connect(srv.ClientURL(), nats.MaxReconnects(0))
		assert.NoError(t, err, "%q × MaxTokenLen through ClientURL", c)
		if err == nil {
			nc.Close()
		}
		require.NoError(t, srv.Shutdown(ctx))
	}
	long := strings.Repeat("a", natsembed.MaxTokenLen+1)
	err := natsembed.Options{Token: long}.Validate()
	require.Error(t, err)
	assert.ErrorContains(t, err, fmt.Sprintf("natsembed: invalid Token: %d bytes long, more than %d", natsembed.MaxTokenLen+1, natsembed.MaxTokenLen))
	assert.NotContains(t, err.Error(), long)
	_, err = natsembed.Start(ctx, natsembed.Options{Token: strings.Repeat("a", 5000)})
	assert.ErrorContains(t, err, "natsembed: invalid Token", "Start validates")
}

// escapeAll is the token as ClientURL writes it.
func escapeAll(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("-._~", c) >= 0 {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}

// A token the server cannot check as it is given is refused, and the
// error does not show it.
func TestTokenValidate(t *testing.T) {
	for _, token := range []string{"$2a$10$abcdefghijklmnopqrstuv", "$2b$12$x", "bad\xffutf8"} {
		err := natsembed.Options{Token: token}.Validate()
		require.Error(t, err, "%q", token)
		assert.ErrorContains(t, err, "natsembed: invalid Token")
		assert.NotContains(t, err.Error(), token)
		_, err = natsembed.Start(context.Background(), natsembed.Options{Token: token})
		assert.ErrorContains(t, err, "natsembed: invalid Token", "Start validates")
	}
	assert.NoError(t, natsembed.Options{Token: "$2 dollars"}.Validate())
}

// A Token with NoAuth is refused: the server would listen open to every
// process on the machine while its caller believes a secret guards it.
func TestTokenWithNoAuth(t *testing.T) {
	opts := natsembed.Options{Token: "a-secret-token-here", NoAuth: true}
	err := opts.Validate()
	require.Error(t, err)
	assert.ErrorContains(t, err, "natsembed: invalid Token: set with NoAuth")
	assert.NotContains(t, err.Error(), opts.Token)
	srv, err := natsembed.Start(context.Background(), opts)
	if err == nil {
		_ = srv.Shutdown(context.Background())
	}
	require.Error(t, err, "Start validates")
	assert.NoError(t, natsembed.Options{NoAuth: true}.Validate())
	assert.NoError(t, natsembed.Options{Token: "a-secret-token-here", InProcess: true}.Validate(), "InProcess ignores the Token")
}

// Two servers never run on one store: a second Start on a StoreDir in use
// fails at once, leaving the first server serving, and succeeds once the
// first has shut down.
func TestStoreDirLocked(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	first, err := natsembed.Start(ctx, natsembed.Options{StoreDir: dir, InProcess: true})
	require.NoError(t, err)
	began := time.Now()
	for _, opts := range []natsembed.Options{{StoreDir: dir, InProcess: true}, {StoreDir: dir}} {
		second, err := natsembed.Start(ctx, opts)
		require.Error(t, err)
		assert.Nil(t, second)
		assert.ErrorIs(t, err, natsembed.ErrStoreInUse)
		assert.ErrorContains(t, err, dir)
		assert.ErrorContains(t, err, "another server of this process")
	}
	assert.Less(t, time.Since(began), 5*time.Second, "the second start fails at once")

	nc, err := first.Connect()
	require.NoError(t, err)
	_, err = nc.Request("$JS.API.INFO", nil, 5*time.Second)
	assert.NoError(t, err, "the first server still serves JetStream")
	nc.Close()
	require.NoError(t, first.Shutdown(ctx))

	again, err := natsembed.Start(ctx, natsembed.Options{StoreDir: dir, InProcess: true})
	require.NoError(t, err, "Shutdown releases the store")
	require.NoError(t, again.Shutdown(ctx))
}

// Port is the port the server listened on after Shutdown too, as
// ClientURL is: a restart on the same Port, which the clients reconnect
// to, reads it from the server it replaces.
func TestPortAfterShutdown(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	srv, err := natsembed.Start(ctx, natsembed.Options{StoreDir: dir})
	require.NoError(t, err)
	port := srv.Port()
	require.NotZero(t, port)
	url := srv.ClientURL()
	require.NoError(t, srv.Shutdown(ctx))
	assert.Equal(t, port, srv.Port(), "the port it listened on")
	assert.Equal(t, url, srv.ClientURL())

	again, err := natsembed.Start(ctx, natsembed.Options{StoreDir: dir, Port: srv.Port(), Token: srv.Token()})
	require.NoError(t, err)
	defer func() { assert.NoError(t, again.Shutdown(ctx)) }()
	assert.Equal(t, url, again.ClientURL(), "the clients' URL serves again")
}

// Options and Server printed whole — with %v, %+v or %#v, or in a log
// record as text or JSON — show no token: a configuration logged at start
// is a common habit, and the token is all that guards the port.
func TestPrintingHidesTheToken(t *testing.T) {
	ctx := context.Background()
	const token = "s3cr3t-token-value"
	opts := natsembed.Options{Token: token, ReadyTimeout: 5 * time.Second}
	srv, err := natsembed.Start(ctx, opts)
	require.NoError(t, err)
	defer func() { assert.NoError(t, srv.Shutdown(ctx)) }()
	generated, err := natsembed.Start(ctx, natsembed.Options{})
	require.NoError(t, err)
	defer func() { assert.NoError(t, generated.Shutdown(ctx)) }()

	var logs bytes.Buffer
	slog.New(slog.NewTextHandler(&logs, nil)).Info("nats", "opts", opts, "srv", srv, "generated", generated)
	slog.New(slog.NewJSONHandler(&logs, nil)).Info("nats", "opts", opts, "srv", srv, "generated", generated)
	for _, verb := range []string{"%v", "%+v", "%#v", "%s"} {
		printed := fmt.Sprintf(verb+" "+verb+" "+verb, opts, &opts, srv) + fmt.Sprintf(verb, generated) + logs.String()
		assert.NotContains(t, printed, token, verb)
		assert.NotContains(t, printed, generated.Token(), verb)
	}
	assert.Contains(t, fmt.Sprintf("%+v", opts), "ReadyTimeout:5s", "the other fields are shown")
	assert.Contains(t, fmt.Sprint(srv), srv.RedactedURL())
}

// Options inside a configuration logged by a JSON handler, or encoded
// with encoding/json, show no token: neither calls LogValue on a field.
func TestOptionsInJSONHideTheToken(t *testing.T) {
	const token = "s3cr3t-token-value"
	type config struct {
		Name string
		NATS natsembed.Options
		Ptr  *natsembed.Options
	}
	cfg := config{Name: "svc", NATS: natsembed.Options{StoreDir: "/data", Token: token, ReadyTimeout: time.Second}}
	cfg.Ptr = &cfg.NATS
	var logs bytes.Buffer
	slog.New(slog.NewJSONHandler(&logs, nil)).Info("config", "cfg", cfg, "all", []natsembed.Options{cfg.NATS})
	b, err := json.Marshal(cfg)
	require.NoError(t, err)
	for _, s := range []string{logs.String(), string(b)} {
		assert.NotContains(t, s, token)
		assert.Contains(t, s, `"Token":"REDACTED"`)
		assert.Contains(t, s, `"StoreDir":"/data"`, "the other fields are shown")
		assert.Contains(t, s, `"ReadyTimeout":1000000000`)
	}
	b, err = json.Marshal(natsembed.Options{})
	require.NoError(t, err)
	assert.Contains(t, string(b), `"Token":""`, "no token is shown as none")
}
