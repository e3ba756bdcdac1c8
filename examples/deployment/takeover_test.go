package main

import (
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/kanban"
)

// TestRedeliveredEndReleasesTheRegions: a job delivered again after its
// deployment's end was stored, and before its regions were released and
// its command dropped (the process killed between the two), releases and
// drops them. The command was kept by the store and every replica for
// ever, and the lock until another deployment took it over.
func TestRedeliveredEndReleasesTheRegions(t *testing.T) {
	ts := startService(t, fastArgs...)
	id := deploy(t, ts.URL, map[string]any{"service": "auth", "version": "v2.0.0", "target_region": "us-west-2"}).deployment(t).ID
	require.Equal(t, StatusSuccess, waitFor(t, ts.URL, id, ended).Status)
	// What the run left when it was killed after storing the end.
	holder, _, err := ts.store.Lock(t.Context(), "auth", "us-west-2", id)
	require.NoError(t, err)
	require.Empty(t, holder)
	require.NoError(t, ts.store.SendCommand(t.Context(), id, Command{Action: "abort", Reason: "too late", At: time.Now()}))

	job := Job{ID: id, Index: 0, Region: "us-west-2"}
	require.NoError(t, ts.handleJob(t.Context(), kanban.Delivery[Job]{
		Message: kanban.Message[Job]{ID: jobID(id, 0), Key: "auth/us-west-2", Payload: job}, Attempt: 2,
	}))
	_, err = ts.store.locks.Get(t.Context(), lockKey("auth", "us-west-2"))
	assert.ErrorIs(t, err, jetstream.ErrKeyNotFound, "the region is still taken")
	_, err = ts.store.control.Get(t.Context(), "cmd."+id)
	assert.ErrorIs(t, err, jetstream.ErrKeyNotFound, "the command is still kept")
}
