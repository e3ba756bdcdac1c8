package main

import (
	"net/http"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestSweepAtStart: a deployment whose start was cut off before its
// first region was queued (the process killed between the two) is found
// and ended FAILED when the service starts, and every region it held is
// freed, as is a region still held by a deployment that has ended: no
// other deployment need ask for one of them first. It stayed in progress,
// holding its regions, until another deployment of the service asked for
// one of them.
func TestSweepAtStart(t *testing.T) {
	dir := t.TempDir()
	ts := startServiceIn(t, dir, fastArgs...)
	cut := startedAt(t, ts, "auth", "v2.0.0", time.Now().Add(-time.Hour), "us-west-2", "us-east-1")
	done := startedAt(t, ts, "search", "v2.0.0", time.Now().Add(-time.Hour), "us-west-2")
	got, rev, err := ts.store.Get(t.Context(), done.ID)
	require.NoError(t, err)
	got.finish(time.Now().UTC())
	got.Status = StatusFailed
	_, err = ts.store.Update(t.Context(), got, rev)
	require.NoError(t, err)
	ts.shutdown()

	// The same server, its clock read as the first service read it.
	clock := &serverClock{}
	clock.age(cut.ID, time.Hour)
	ts = startServiceWith(t, dir, func(c *Config) { c.WrapLocks = clock.wrap }, fastArgs...)
	end := do(t, "GET", ts.URL+"/deploy/"+cut.ID, nil).deployment(t)
	assert.Equal(t, StatusFailed, end.Status)
	assert.Contains(t, end.Results[0].ErrorMessage, "Not queued: ")
	for _, key := range []string{"auth.us-west-2", "auth.us-east-1", "search.us-west-2"} {
		_, err := ts.store.locks.Get(t.Context(), key)
		assert.ErrorIs(t, err, jetstream.ErrKeyNotFound, "%s is still held", key)
	}
	assert.NotContains(t, ts.logs.String(), "not swept")
}

// TestSweepOnATimer: a deployment whose start was cut off, on another
// replica say, while this one runs is found and ended FAILED at the next
// sweep, with no other deployment asking for its regions.
func TestSweepOnATimer(t *testing.T) {
	ts := startServiceWith(t, t.TempDir(), func(c *Config) { c.SweepEvery = 10 * time.Millisecond }, fastArgs...)
	cut := startedAt(t, ts, "auth", "v2.0.0", time.Now().Add(-time.Hour), "us-west-2")
	end := waitFor(t, ts.URL, cut.ID, ended)
	assert.Equal(t, StatusFailed, end.Status)
	r := deploy(t, ts.URL, map[string]any{"service": "auth", "version": "v2.0.0", "target_region": "us-west-2"})
	assert.Equal(t, http.StatusOK, r.Code, "the region is free: %s", r.Body)
}

// TestSweepLeavesAStartUnderWay: a sweep leaves a deployment whose start
// may still be under way (stored a moment ago, its first region not
// queued yet): it keeps its regions.
func TestSweepLeavesAStartUnderWay(t *testing.T) {
	ts := startService(t, fastArgs...)
	starting := startedAt(t, ts, "auth", "v2.0.0", time.Now(), "us-west-2")
	ts.sweepRegions(t.Context())
	got, _, err := ts.store.Get(t.Context(), starting.ID)
	require.NoError(t, err)
	assert.Equal(t, StatusInProgress, got.Status)
	holder, _, err := ts.store.Lock(t.Context(), "auth", "us-west-2", newDeploymentID())
	require.NoError(t, err)
	assert.Equal(t, starting.ID, holder, "it keeps its region")
}
