package main

import (
	"encoding/json"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/examples/deployment/internal/fleet"
)

// TestGiveUpFencesARunWhoseWriteLanded: a run of the region still going
// while its job is given up (a replica whose lease lapsed), whose last
// write failed unanswered and was stored all the same, finds its record
// moved on before the give-up moves the fleet. The give-up wrote the
// record as read, the same bytes as that write, which the run took for
// its own (landed): it went on moving traffic to the version being
// rolled back.
func TestGiveUpFencesARunWhoseWriteLanded(t *testing.T) {
	var (
		mu      sync.Mutex
		r       *rollout
		checked bool
		fence   error
	)
	ts := startServiceWith(t, t.TempDir(), func(c *Config) {
		c.WrapTarget = func(f fleet.Target) fleet.Target {
			return &regionTarget{Target: f, route: func(_ string, percent float64) error {
				mu.Lock()
				defer mu.Unlock()
				if r != nil && percent == 0 && !checked {
					// The give-up sends the traffic back: the run asks
					// whether the record is still its own, as it does
					// before its next move of the fleet.
					checked = true
					fence = r.stillOurs(t.Context())
				}
				return nil
			}}
		}
	}, fastArgs...)
	d := startedAt(t, ts, "api-service", "v2.0.0", time.Now(), "us-west-2")
	inCanary(t, ts, d, 0, "v1.0.0")

	// The run, its record as read, writes a sample: the write fails
	// unanswered, and is stored.
	got, rev, err := ts.store.Get(t.Context(), d.ID)
	require.NoError(t, err)
	run := &rollout{
		s: ts.Service, service: got.Service, version: got.Version, region: "us-west-2", index: 0, stable: "v1.0.0",
		d: got, rev: rev, revAt: time.Now().Add(-time.Minute), cmdReady: make(chan struct{}, 1), failed: make(chan failure, 1),
	}
	st := &run.d.Results[0].Stages[0]
	st.Samples = append(st.Samples, HealthSample{Time: time.Now().UTC(), Requests: 10, Verdict: "passed"})
	b, err := json.Marshal(run.d)
	require.NoError(t, err)
	run.writeMu.Lock()
	run.sentUnanswered(b)
	run.writeMu.Unlock()
	_, err = ts.store.UpdateRaw(t.Context(), d.ID, b, rev)
	require.NoError(t, err)

	mu.Lock()
	r = run
	mu.Unlock()
	require.True(t, ts.giveUp(t.Context(), Job{ID: d.ID, Index: 0, Region: "us-west-2"}, errors.New("store out of reach")))
	mu.Lock()
	defer mu.Unlock()
	require.True(t, checked, "the give-up sent the traffic back")
	assert.ErrorIs(t, fence, errMovedOn, "the run finds its record moved on before the fleet moves")
	end, _, err := ts.store.Get(t.Context(), d.ID)
	require.NoError(t, err)
	assert.Equal(t, StatusFailed, end.Status)
	assert.Contains(t, end.Results[0].ErrorMessage, "rolled back to v1.0.0")
}
