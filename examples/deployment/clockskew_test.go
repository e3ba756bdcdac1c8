package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
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

// TestStageCutOffOnAClockBehind: a region ended by a replica whose clock
// is behind that of the replica that began it (one taking the region up
// after a crash, giving up its job, or storing the success an earlier
// attempt decided) ends no earlier than it began: its completed_at, and
// the ended_at of a stage it cut off, its time in the stage metric and
// the mean in /kaizen, are not negative. They ended a minute before they
// began, and the stage went into the metric and /kaizen as -60 s; only
// the deployment's own end was kept at its start.
func TestStageCutOffOnAClockBehind(t *testing.T) {
	for _, tc := range []struct {
		name  string
		start func(t *testing.T) *testService // nil: startService
		cut   func(t *testing.T, ts *testService, d *Deployment)
		want  string // the stage's verdict; "" when the stage is left open
	}{
		{"taken up after a crash", nil, func(t *testing.T, ts *testService, d *Deployment) {
			require.NoError(t, ts.publishJob(t.Context(), d, 0))
		}, "interrupted"},
		{"given up", nil, func(t *testing.T, ts *testService, d *Deployment) {
			require.True(t, ts.giveUp(t.Context(), Job{ID: d.ID, Index: 0, Region: "us-west-2"}, errors.New("store out of reach")))
		}, "interrupted"},
		{"its success stored by a later attempt", nil, func(t *testing.T, ts *testService, d *Deployment) {
			// The stage passed on the replica ahead, which closed the
			// commands to end SUCCESS and was cut off before it stored
			// the region's success.
			_, _, _, err := ts.store.EndCommands(t.Context(), d.ID, Command{
				Region: "us-west-2", Stage: "canary", Verdict: "passed", Reason: "1 health sample passed", At: d.StartedAt.Add(time.Second),
			})
			require.NoError(t, err)
			require.NoError(t, ts.publishJob(t.Context(), d, 0))
		}, "passed"},
		{"not rolled back on its last attempt", func(t *testing.T) *testService {
			return withFaults(t, func(float64) error { return errRouting }, nil)
		}, func(t *testing.T, ts *testService, d *Deployment) {
			require.NoError(t, ts.publishJob(t.Context(), d, 0))
		}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var ts *testService
			if tc.start != nil {
				ts = tc.start(t)
			} else {
				ts = startService(t, fastArgs...)
			}
			// Stored by a replica whose clock is a minute ahead of this
			// one's, its region at the canary there.
			ahead := time.Now().Add(time.Minute).UTC()
			d := startedAt(t, ts, "api-service", "v2.0.0", ahead, "us-west-2")
			got, rev, err := ts.store.Get(t.Context(), d.ID)
			require.NoError(t, err)
			rr := &got.Results[0]
			rr.Status, rr.Stage, rr.Previous, rr.Percent, rr.StartedAt = StatusInProgress, "canary", "v1.0.0", 5, &ahead
			rr.Stages = []StageResult{{Name: "canary", Percent: 5, StartedAt: ahead, Samples: []HealthSample{}}}
			_, err = ts.store.Update(t.Context(), got, rev)
			require.NoError(t, err)
			require.NoError(t, ts.target.Deploy(t.Context(), "api-service", "us-west-2", "v2.0.0", ts.catalog.Instances("api-service")))
			if tc.start == nil {
				require.NoError(t, ts.target.Route(t.Context(), "api-service", "us-west-2", "v1.0.0", "v2.0.0", 5))
			}

			tc.cut(t, ts, d)
			end := waitFor(t, ts.URL, d.ID, ended)
			region := end.Results[0]
			require.NotNil(t, region.CompletedAt)
			assert.False(t, region.CompletedAt.Before(*region.StartedAt), "the region ended at %v, before it began at %v", region.CompletedAt, region.StartedAt)
			require.Len(t, region.Stages, 1)
			st := region.Stages[0]
			require.Equal(t, tc.want, st.Verdict)
			if tc.want == "" {
				assert.Contains(t, region.ErrorMessage, "Not rolled back after 10 attempts: ")
				return
			}
			require.NotNil(t, st.EndedAt)
			assert.False(t, st.EndedAt.Before(st.StartedAt), "the stage ended at %v, before it began at %v", st.EndedAt, st.StartedAt)
			if tc.want != "interrupted" {
				return
			}

			var sum float64
			for _, line := range strings.Split(string(do(t, "GET", ts.URL+"/metrics", nil).Body), "\n") {
				if strings.HasPrefix(line, `deployment_stage_duration_seconds_sum{stage="canary",strategy="canary",verdict="interrupted"}`) {
					_, err := fmt.Sscan(line[strings.LastIndexByte(line, ' ')+1:], &sum)
					require.NoError(t, err)
				}
			}
			assert.GreaterOrEqual(t, sum, 0.0, "the stage's time in the metric")
			var k Kaizen
			require.NoError(t, json.Unmarshal(do(t, "GET", ts.URL+"/kaizen", nil).Body, &k))
			assert.GreaterOrEqual(t, k.StageDuration["canary"], 0.0, "the mean time in the canary in /kaizen")
		})
	}
}
