package svc_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/examples/internal/svc"
	"github.com/taipattern/taikit/examples/internal/svctest"
	"github.com/taipattern/taikit/kanban/natsembed"
)

// A token given as a NATS URL's user is a secret: the log line of a
// reconnection names the server without it, as Location does.
// nats.Conn.ConnectedUrlRedacted hides a password only.
func TestNATSReconnectLogHidesTheToken(t *testing.T) {
	ctx := context.Background()
	const token = "s3cret-token-0123456789"
	dir := t.TempDir()
	first, err := natsembed.Start(ctx, natsembed.Options{StoreDir: dir, Token: token})
	require.NoError(t, err)
	var logs svctest.SyncBuffer
	n, err := svc.StartNATS(ctx, first.ClientURL(), "", "test", svc.Logger(&logs, "info", "t"))
	require.NoError(t, err)
	nc, err := n.Connect()
	require.NoError(t, err)
	defer nc.Close()
	port := first.Port()
	require.NoError(t, first.Shutdown(ctx))
	again, err := natsembed.Start(ctx, natsembed.Options{StoreDir: dir, Token: token, Port: port})
	require.NoError(t, err)
	defer func() { assert.NoError(t, again.Shutdown(ctx)) }()
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(logs.String(), "nats reconnected") {
		require.True(t, time.Now().Before(deadline), "no reconnection logged:\n%s", logs.String())
		time.Sleep(20 * time.Millisecond)
	}
	assert.Contains(t, logs.String(), "url=nats://xxxxx@127.0.0.1:")
	assert.NotContains(t, logs.String(), token)
}

func TestWarnOnly(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(svc.WarnOnly(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))).
		With("component", "c").WithGroup("g")
	log.Debug("debug")
	log.Info("info")
	log.Warn("warn", "k", 1)
	log.Error("error")
	assert.NotContains(t, buf.String(), "debug")
	assert.NotContains(t, buf.String(), "msg=info")
	assert.Contains(t, buf.String(), "level=WARN msg=warn component=c g.k=1")
	assert.Contains(t, buf.String(), "level=ERROR msg=error component=c")
	assert.False(t, log.Enabled(context.Background(), slog.LevelInfo))
}

func TestEmbeddedNATSLogsWarningsOnly(t *testing.T) {
	// The embedded server's start notices stay out of the service's log;
	// its warnings come in, marked as the server's: here, about a stream
	// directory left without its checksum file.
	var buf svctest.SyncBuffer
	log := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	dir := t.TempDir()
	n, err := svc.StartNATS(context.Background(), "", dir, "test", log)
	require.NoError(t, err)
	require.NoError(t, n.Shutdown(context.Background()))
	assert.NotContains(t, buf.String(), "component=nats-server", "no notice of the server's start")

	broken := filepath.Join(dir, "nats", "jetstream", "$G", "streams", "BROKEN")
	require.NoError(t, os.MkdirAll(broken, 0o700))
	require.NoError(t, os.WriteFile(filepath.Join(broken, "meta.inf"), []byte("{"), 0o600))
	n, err = svc.StartNATS(context.Background(), "", dir, "test", log)
	require.NoError(t, err)
	require.NoError(t, n.Shutdown(context.Background()))
	assert.Regexp(t, `level=WARN msg=.*Missing stream checksum file.* component=nats-server`, buf.String())
	assert.NotContains(t, buf.String(), "level=INFO", "the server's notices stay out")
}

// A NATS printed or logged whole names its server as Location does: fmt
// would print the struct's fields, the URL with its credentials among
// them.
func TestNATSPrintedHidesTheURLsSecret(t *testing.T) {
	const secret = "s3cret-pass-0123456789"
	n, err := svc.StartNATS(context.Background(), "nats://user:"+secret+"@nats.example:4222", "", "test", svc.Logger(io.Discard, "info", "t"))
	require.NoError(t, err)
	var logs bytes.Buffer
	slog.New(slog.NewTextHandler(&logs, nil)).Info("nats", "n", n)
	slog.New(slog.NewJSONHandler(&logs, nil)).Info("nats", "n", n)
	for _, verb := range []string{"%v", "%+v", "%#v", "%s"} {
		printed := fmt.Sprintf(verb, n) + logs.String()
		assert.NotContains(t, printed, secret, verb)
		assert.Contains(t, printed, n.Location(), verb)
	}
	// A copy, held where fmt prints it as it is kept (a field not
	// exported), shows no URL either.
	held := struct{ n svc.NATS }{*n}
	for _, verb := range append([]string{"%v", "%+v", "%#v"}, rawVerbs...) {
		assert.NotContains(t, fmt.Sprintf(verb, held), secret, verb)
	}
}

// A NATS URL that does not parse made Connect's error quote it whole, as
// url.Parse's error does, token or password and all, and the service
// printed it as it stopped. The error names the server as Location does,
// and says what is wrong.
func TestNATSConnectErrorOfAnUnparsableURLHidesItsSecret(t *testing.T) {
	const secret = "s3cret-0123456789"
	for _, c := range []struct{ url, why string }{
		{"nats://" + secret + "@nats.example:bad", `invalid port ":bad" after host`},
		{"nats://user:" + secret + "@[::1", "missing ']' in host"},
		{"nats://nats.example:4222,nats://user:" + secret + "@nats.example:x", `invalid port ":x" after host`},
	} {
		n, err := svc.StartNATS(context.Background(), c.url, "", "test", svc.Logger(io.Discard, "info", "t"))
		require.NoError(t, err)
		_, err = n.Connect()
		require.Error(t, err, c.url)
		assert.NotContains(t, err.Error(), secret, c.url)
		assert.Equal(t, "NATS "+n.Location()+": "+c.why, err.Error(), c.url)
	}
}

// TestStoreRoomHint: JetStream's refusal to set aside a store's byte
// limit says which limits to lower and where to free space; any other
// error is left as it is.
func TestStoreRoomHint(t *testing.T) {
	refused := fmt.Errorf("payment: confirmation queue: %w", &jetstream.APIError{Code: 500, ErrorCode: 10047, Description: "insufficient storage resources available"})
	err := svc.StoreRoomHint(refused, "/var/lib/payment", "-payments-max-bytes, -confirm-max-bytes")
	require.ErrorIs(t, err, refused)
	assert.Equal(t, refused.Error()+": JetStream cannot set aside the stores' byte limits (-payments-max-bytes, -confirm-max-bytes): "+
		"the embedded server's storage is part of the free space on the file system of /var/lib/payment, and a NATS server's at -nats-url "+
		"its max_file_store; free space there, or lower those limits", err.Error())

	for _, other := range []error{
		nil,
		errors.New("no NATS"),
		fmt.Errorf("bucket: %w", &jetstream.APIError{Code: 400, ErrorCode: 10058, Description: "stream name already in use"}),
	} {
		assert.Equal(t, other, svc.StoreRoomHint(other, "/d", "-x"))
	}
}
