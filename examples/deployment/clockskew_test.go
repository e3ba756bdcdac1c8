package main

import (
	"context"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// serverClock is the region locks' bucket as a NATS server whose clock is
// apart from this process's would give it: every time the server gives
// (an entry's creation, the time it reports with the stream's state) is
// offset, and the locks of the deployments in aged look as much older.
type serverClock struct {
	mu     sync.Mutex
	offset time.Duration
	aged   map[string]time.Duration // holder → how much older its locks look
}

func (c *serverClock) wrap(kv jetstream.KeyValue) jetstream.KeyValue {
	return &clockedBucket{kv, c}
}

// setOffset sets the server's clock at this process's plus offset.
func (c *serverClock) setOffset(offset time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.offset = offset
}

// age makes the locks of deployment id look taken by as much earlier.
func (c *serverClock) age(id string, by time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.aged == nil {
		c.aged = map[string]time.Duration{}
	}
	c.aged[id] = by
}

func (c *serverClock) shift(holder string) time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.offset - c.aged[holder]
}

type clockedBucket struct {
	jetstream.KeyValue
	c *serverClock
}

type clockedEntry struct {
	jetstream.KeyValueEntry
	created time.Time
}

func (e clockedEntry) Created() time.Time { return e.created }

func (b *clockedBucket) Get(ctx context.Context, key string) (jetstream.KeyValueEntry, error) {
	e, err := b.KeyValue.Get(ctx, key)
	if err != nil {
		return e, err
	}
	return clockedEntry{e, e.Created().Add(b.c.shift(string(e.Value())))}, nil
}

type clockedStatus struct {
	jetstream.KeyValueStatus
	info *jetstream.StreamInfo
}

func (s clockedStatus) StreamInfo() *jetstream.StreamInfo { return s.info }

func (b *clockedBucket) Status(ctx context.Context) (jetstream.KeyValueStatus, error) {
	st, err := b.KeyValue.Status(ctx)
	if err != nil {
		return st, err
	}
	si, ok := st.(interface{ StreamInfo() *jetstream.StreamInfo })
	if !ok {
		return st, nil
	}
	info := *si.StreamInfo()
	info.TimeStamp = info.TimeStamp.Add(b.c.shift(""))
	return clockedStatus{st, &info}, nil
}

// TestLockAgeOnTheServersClock: a region taken a moment ago by a
// deployment being stored holds it however far this replica's clock is
// from the NATS server's: another request for the region is refused
// with 409, and the deployment stored then keeps it. With the server's
// clock two minutes behind, the lock looked two minutes old, taken for
// that of a start a crash cut off, and the region was taken over: two
// deployments rolled out in it.
func TestLockAgeOnTheServersClock(t *testing.T) {
	for _, offset := range []time.Duration{-2 * time.Minute, 2 * time.Minute, -time.Hour} {
		t.Run(offset.String(), func(t *testing.T) {
			ts := startService(t, fastArgs...)
			ts.clock.setOffset(offset)
			starting := newDeploymentID()
			holder, _, err := ts.store.Lock(t.Context(), "auth", "us-west-2", starting)
			require.NoError(t, err)
			require.Empty(t, holder)
			r := deploy(t, ts.URL, map[string]any{"service": "auth", "version": "v2.0.0", "target_region": "us-west-2"}, "Prefer", "respond-async")
			require.Equal(t, http.StatusConflict, r.Code, "%s", r.Body)
			assert.Contains(t, r.errorBody(t)["message"], starting)
		})
	}
}

// TestLocksNowIsTheServers: the NATS server reports its time with the
// locks' stream's state, the time locksNow reads (this process's clock
// is only for a server that reports none).
func TestLocksNowIsTheServers(t *testing.T) {
	ts := startService(t, fastArgs...)
	st, err := ts.store.locks.Status(t.Context())
	require.NoError(t, err)
	si, ok := st.(interface{ StreamInfo() *jetstream.StreamInfo })
	require.True(t, ok, "%T", st)
	assert.False(t, si.StreamInfo().TimeStamp.IsZero(), "the server reports no time")
	ts.clock.setOffset(-time.Hour)
	now, err := ts.store.locksNow(t.Context())
	require.NoError(t, err)
	assert.WithinDuration(t, time.Now().Add(-time.Hour), now, time.Minute)
}

// TestCutOffStartOnTheServersClock: a deployment stored a moment ago,
// whose first region is not queued yet, is left to its start however
// far this replica's clock is from the NATS server's, or from the clock
// of the replica that started it: another request for its region is
// refused with 409, and it is not ended. With the clock of the replica
// that started it two minutes and a half behind, it looked cut off and
// was ended FAILED as its start went on.
func TestCutOffStartOnTheServersClock(t *testing.T) {
	ts := startService(t, fastArgs...)
	starting := startedAt(t, ts, "auth", "v2.0.0", time.Now().Add(-150*time.Second), "us-west-2")
	ts.locksAged(starting.ID, 0) // taken a moment ago, as the server's clock says
	r := deploy(t, ts.URL, map[string]any{"service": "auth", "version": "v2.0.0", "target_region": "us-west-2"}, "Prefer", "respond-async")
	require.Equal(t, http.StatusConflict, r.Code, "%s", r.Body)
	got, _, err := ts.store.Get(t.Context(), starting.ID)
	require.NoError(t, err)
	assert.Equal(t, StatusInProgress, got.Status)
}
