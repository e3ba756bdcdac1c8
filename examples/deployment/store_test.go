package main

import (
	"context"
	"fmt"
	"math"
	"sync"
	"testing"
	"testing/synctest"
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

// TestWatchersReadTheValuesThereFirst: the watchers a replica starts
// with (the stable versions, the pending commands, the cord) have read
// every value there now when they return, so that a request the replica
// answers right after its start sees them. They returned at once, and
// their values came later: a replica could start a deployment with the
// cord pulled, or show the catalog empty.
func TestWatchersReadTheValuesThereFirst(t *testing.T) {
	ts := startService(t, fastArgs...)
	ctx := t.Context()
	const n = 200
	for i := range n {
		require.NoError(t, ts.store.SetStable(ctx, fmt.Sprintf("svc-%d", i), "us-west-2", "v1.0.0"))
		require.NoError(t, ts.store.SendCommand(ctx, fmt.Sprintf("d-%d", i), Command{Action: "resume", At: time.Now()}))
	}
	_, _, err := ts.store.SetCord(ctx, Cord{Stopped: true, Reason: "incident", At: time.Now()})
	require.NoError(t, err)
	want, err := ts.store.StableAll(ctx)
	require.NoError(t, err)
	require.Greater(t, len(want), n)

	var mu sync.Mutex
	stable, commands := map[string]string{}, map[string]Command{}
	var cord Cord
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	require.NoError(t, ts.store.WatchStable(wctx, func(key, version string) {
		mu.Lock()
		defer mu.Unlock()
		stable[key] = version
	}))
	require.NoError(t, ts.store.WatchCommands(wctx, func(id string, c Command) {
		mu.Lock()
		defer mu.Unlock()
		commands[id] = c
	}, func(string) {}))
	require.NoError(t, ts.store.WatchCord(wctx, func(c Cord) {
		mu.Lock()
		defer mu.Unlock()
		cord = c
	}))
	mu.Lock()
	defer mu.Unlock()
	assert.Equal(t, len(want), len(stable), "the stable versions there at the start")
	assert.Equal(t, want, stable)
	assert.Equal(t, n, len(commands), "the commands pending at the start")
	assert.True(t, cord.Stopped, "the cord as stored at the start")
}

// stuckWatcher is a bucket whose watches never deliver anything, not
// even the end of the values there now.
type stuckWatcher struct {
	jetstream.KeyValue
	updates chan jetstream.KeyValueEntry
}

func (s *stuckWatcher) Bucket() string { return "stuck" }

func (s *stuckWatcher) Watch(context.Context, string, ...jetstream.WatchOpt) (jetstream.KeyWatcher, error) {
	return s, nil
}

func (s *stuckWatcher) Updates() <-chan jetstream.KeyValueEntry { return s.updates }
func (s *stuckWatcher) Stop() error                             { return nil }

// TestWatcherThatNeverLoadsFailsTheStart: a watch that never delivers
// the values there now (the end of them never comes) fails after a
// bound, with an error naming the bucket, rather than wait for ever.
func TestWatcherThatNeverLoadsFailsTheStart(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		kv := &stuckWatcher{updates: make(chan jetstream.KeyValueEntry)}
		err := watchEntries(t.Context(), kv, ">", false, func(jetstream.KeyValueEntry) { t.Error("nothing was stored") })
		require.Error(t, err)
		assert.Contains(t, err.Error(), "bucket stuck")
		assert.Contains(t, err.Error(), "not read within")
	})
}
