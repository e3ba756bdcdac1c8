package main

import (
	"context"
	"math"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestWriterTurnsPastMaxInt32: the store's counter of record writes
// passes 2^31 after enough of them; where int has 32 bits (386, arm) the
// writer it picks must stay in range.
func TestWriterTurnsPastMaxInt32(t *testing.T) {
	s := &Store{writers: make([]jetstream.KeyValue, 3)}
	for _, start := range []uint32{math.MaxInt32 - 1, math.MaxUint32 - 1} {
		s.next.Store(start)
		for range 4 {
			assert.NotPanics(t, func() { s.writer() })
		}
	}
}

// TestWatchDeploymentsFromNow: the watcher of the deployments, which every
// replica starts, hears of the states stored from then on, as its godoc
// says, not of every record the bucket holds: it read the whole bucket
// (up to a GiB of records) at each start, for no request waits on a
// deployment before the replica serves.
func TestWatchDeploymentsFromNow(t *testing.T) {
	ts := startService(t, fastArgs...)
	before := &Deployment{ID: newDeploymentID(), Service: "api-service", Status: StatusInProgress}
	_, err := ts.store.Create(t.Context(), before)
	require.NoError(t, err)

	seen := make(chan string, 16)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	require.NoError(t, ts.store.WatchDeployments(ctx, func(string) bool { return true }, func(d *Deployment) { seen <- d.ID }))
	after := &Deployment{ID: newDeploymentID(), Service: "api-service", Status: StatusInProgress}
	_, err = ts.store.Create(t.Context(), after)
	require.NoError(t, err)
	// The watcher hears of the states in the order stored: the record
	// stored before it started would come before the one stored after.
	select {
	case id := <-seen:
		assert.Equal(t, after.ID, id, "the record stored before the watcher started was delivered")
	case <-time.After(30 * time.Second):
		t.Fatal("the record stored after the watcher started was never delivered")
	}
}
