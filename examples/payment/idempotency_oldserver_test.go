package main

import (
	"context"
	"net"
	"os/exec"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/internal/servers"
)

// TestNATSIdempotencyOnAServerWithoutMessageTTLs: on a NATS server before
// 2.11 (Debian's nats-server), which has no per-message TTLs, the store
// opens its bucket without them, and a released key is deleted and can
// be claimed again. Asking the server for them failed the service's
// start.
func TestNATSIdempotencyOnAServerWithoutMessageTTLs(t *testing.T) {
	bin := servers.Binary(t, "nats-server", "nats-server")
	port := servers.FreePort(t)
	cmd := exec.Command(bin, "-js", "-a", "127.0.0.1", "-p", strconv.Itoa(port), "-sd", t.TempDir())
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	addr := "127.0.0.1:" + strconv.Itoa(port)
	require.Eventually(t, func() bool {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			_ = c.Close()
		}
		return err == nil
	}, 10*time.Second, 10*time.Millisecond, "nats-server listening")
	nc, err := nats.Connect("nats://" + addr)
	require.NoError(t, err)
	defer nc.Close()
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if info, err := js.AccountInfo(ctx); err == nil && info.API.Level >= 1 {
		t.Skipf("%s has per-message TTLs (API level %d): nothing to fall back from", bin, info.API.Level)
	}

	s, err := NewNATSIdempotency(ctx, []jetstream.JetStream{js}, IdemOptions{}, nil)
	require.NoError(t, err)
	assert.False(t, s.ShortMarkers())
	e := claimOf("txn_1", time.Now())
	_, claimed, err := s.Claim(ctx, "k", e)
	require.NoError(t, err)
	require.True(t, claimed)
	require.NoError(t, s.Release(ctx, "k", e))
	_, claimed, err = s.Claim(ctx, "k", claimOf("txn_2", time.Now()))
	require.NoError(t, err)
	assert.True(t, claimed, "a released key is claimed again")
}
