package main

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/examples/internal/svc"
)

// TestAbortStoredBeforeACrash: an abort answered 202 is stored, but the
// process is killed before its rollout takes it. Started again, the
// service ends the region as aborted, with the abort's reason and traffic
// back on the old version — not as a rollout a restart cut off, which
// would lose why it was rolled back.
func TestAbortStoredBeforeACrash(t *testing.T) {
	dir := t.TempDir()
	id := killedInCanary(t, dir)

	// The abort the API stores, written while the service is down: as if
	// it had been answered just before the kill.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	n, err := svc.StartNATS(ctx, "", dir, "abort", slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	nc, err := n.Connect()
	require.NoError(t, err)
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	st, err := openStore(ctx, js, nil, StoreOptions{MaxBytes: 1 << 30, MaxAge: 30 * 24 * time.Hour})
	require.NoError(t, err)
	require.NoError(t, st.SendCommand(ctx, id, Command{Action: "abort", Reason: "error budget spent", At: time.Now(), Region: "us-west-2"}))
	nc.Close()
	require.NoError(t, n.Shutdown(ctx))

	c := startChild(t, dir, canaryHourArgs...)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("restarted service's log:\n%s", c.Logs.String())
		}
	})
	d := waitFor(t, c.URL, id, ended)
	assert.Equal(t, StatusRolledBack, d.Status)
	assert.Equal(t, "Aborted: error budget spent", d.Results[0].ErrorMessage)
	assert.Len(t, d.Results[0].Stages, 1, "the canary ran once, and was not started again")
}
