package main

import (
	"encoding/json"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestCommandMarkersSwept: the marker a finished deployment's command
// leaves in the control bucket when it is dropped is removed by the
// sweep once it is old enough, and the sweep leaves a command pending
// and the cord as they are. The marker was kept for good, one for every
// deployment that got a command, until the bucket (64 MiB, with no age
// limit) refused every write, the cord's and every rollout's end among
// them.
func TestCommandMarkersSwept(t *testing.T) {
	const admin = "admin-token-0123456789"
	ts := startServiceWith(t, t.TempDir(), func(c *Config) {
		c.SweepEvery = 10 * time.Millisecond
		c.CommandMarkersAge = time.Nanosecond
	}, append(slowArgs, "-admin-token", admin)...)
	auth := []string{"Authorization", "Bearer " + admin}
	ctx := t.Context()

	// The cord, pulled and released, and a command pending.
	stopLine(t, ts.URL, "incident 13", auth...)
	r := do(t, "POST", ts.URL+"/andon/cord", map[string]string{"action": "start"}, auth...)
	require.Equal(t, http.StatusOK, r.Code, "%s", r.Body)
	cord, err := ts.store.control.Get(ctx, "cord")
	require.NoError(t, err)
	const live = "dpl_00000000000000000000000000000001"
	require.NoError(t, ts.store.SendCommand(ctx, live, Command{Action: "abort", Reason: "pending", At: time.Now()}))

	// A deployment that got a command, and ended.
	id := deploy(t, ts.URL, map[string]any{"service": "auth", "version": "v2.0.0", "target_region": "us-west-2"},
		"Prefer", "respond-async").deployment(t).ID
	waitFor(t, ts.URL, id, func(d Deployment) bool { return d.Results[0].Stage == "canary" })
	r = do(t, "POST", ts.URL+"/deploy/"+id+"/abort", map[string]string{"reason": "bad canary"}, auth...)
	require.Equal(t, http.StatusAccepted, r.Code, "%s", r.Body)
	require.Equal(t, StatusRolledBack, waitFor(t, ts.URL, id, ended).Status)
	require.Eventually(t, func() bool { return commandMessages(t, ts, id) == 0 }, 10*time.Second, 10*time.Millisecond,
		"the marker of the deployment's command was kept: %d messages", commandMessages(t, ts, id))

	e, err := ts.store.control.Get(ctx, "cmd."+live)
	require.NoError(t, err, "the command pending was removed")
	var c Command
	require.NoError(t, json.Unmarshal(e.Value(), &c))
	assert.Equal(t, "abort", c.Action)
	pending, ok := ts.pendingCommand(live)
	assert.True(t, ok && pending.Action == "abort", "the replica forgot the command pending")
	now, err := ts.store.control.Get(ctx, "cord")
	require.NoError(t, err, "the cord was removed")
	assert.Equal(t, cord.Revision(), now.Revision())
	assert.Equal(t, cord.Value(), now.Value())
}

// TestYoungCommandMarkersKept: a marker younger than the age the sweep
// waits for is kept (a replica's watcher may not have read it yet), and
// removed once it is older; the key reads as it did with it, and a
// command stored on it after is kept.
func TestYoungCommandMarkersKept(t *testing.T) {
	ts := startService(t, fastArgs...)
	ctx := t.Context()
	const id = "dpl_00000000000000000000000000000002"
	require.NoError(t, ts.store.SendCommand(ctx, id, Command{Action: "resume", At: time.Now()}))
	require.NoError(t, ts.store.DropCommands(ctx, id))
	require.Equal(t, uint64(1), commandMessages(t, ts, id), "the purge's marker")

	ts.sweepCommandMarkers(ctx)
	assert.Equal(t, uint64(1), commandMessages(t, ts, id), "a marker younger than commandMarkersAge was removed")

	n, err := ts.store.DropCommandMarkers(ctx, time.Nanosecond)
	require.NoError(t, err)
	assert.Equal(t, 1, n)
	assert.Zero(t, commandMessages(t, ts, id), "the marker was kept")
	_, err = ts.store.control.Get(ctx, "cmd."+id)
	assert.True(t, errors.Is(err, jetstream.ErrKeyNotFound), "%v", err)

	require.NoError(t, ts.store.SendCommand(ctx, id, Command{Action: "abort", At: time.Now()}))
	n, err = ts.store.DropCommandMarkers(ctx, time.Nanosecond)
	require.NoError(t, err)
	assert.Zero(t, n)
	_, err = ts.store.control.Get(ctx, "cmd."+id)
	assert.NoError(t, err, "a command stored after the marker went was removed")
}

// commandMessages counts the messages the control bucket's stream holds
// under deployment id's commands alone: its value, or the marker its
// purge left. (The stream's state counts every subject's.)
func commandMessages(t *testing.T, ts *testService, id string) uint64 {
	t.Helper()
	subject := "$KV.deploy_control.cmd." + id
	st, err := ts.js.Stream(t.Context(), "KV_deploy_control")
	require.NoError(t, err)
	info, err := st.Info(t.Context(), jetstream.WithSubjectFilter(subject))
	require.NoError(t, err)
	return info.State.Subjects[subject]
}
