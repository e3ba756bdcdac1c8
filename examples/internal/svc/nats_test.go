package svc_test

import (
	"context"
	"strings"
	"testing"
	"time"

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
