package kaizen

import (
	"context"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/tai"
)

// pause returns a hook that stops the goroutine running it until release
// is called, and a channel that receives when it has stopped.
func pause() (hook func(), stopped <-chan struct{}, release func()) {
	stop, resume := make(chan struct{}), make(chan struct{})
	return func() { stop <- struct{}{}; <-resume }, stop, func() { close(resume) }
}

// TestStatsReadWhileAnEarlierRecordIsCounted: a record that finished
// before the Stats was made takes the start of the statistics back to its
// time. A Window or Snapshot read in the moment that record is counted
// sees it over the time since then, never over the shorter time since the
// Stats was made: one signal 30s before a Stats made 1s ago is 1/31 a
// second, not one a second.
func TestStatsReadWhileAnEarlierRecordIsCounted(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s, err := NewStats(StatsOptions{Windows: []time.Duration{time.Minute}})
		require.NoError(t, err)
		made := time.Now()
		time.Sleep(time.Second)
		early := tai.Record{ID: "early", Kind: "k", Outcome: tai.Succeeded, Start: made.Add(-30 * time.Second)}

		hook, stopped, release := pause()
		s.counted = hook
		done := make(chan struct{})
		go func() {
			defer close(done)
			s.Observe(context.Background(), early)
		}()
		<-stopped
		w, ok := s.Window("k", time.Minute)
		require.True(t, ok)
		assert.Equal(t, uint64(1), w.Current.Total)
		assert.InDelta(t, 1/31.0, w.Current.Throughput, 1e-9, "Window: one signal over the 31s since it finished")
		w, ok = s.Snapshot().Window("k", time.Minute)
		require.True(t, ok)
		assert.InDelta(t, 1/31.0, w.Current.Throughput, 1e-9, "Snapshot: one signal over the 31s since it finished")
		release()
		<-done
	})
}

// TestStatsSnapshotWhileAnEarlierRecordIsCounted: a Snapshot that began
// before a record from before the Stats was made is counted, and reads the
// kind after, sees that record over the time since it finished.
func TestStatsSnapshotWhileAnEarlierRecordIsCounted(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s, err := NewStats(StatsOptions{Windows: []time.Duration{time.Minute}})
		require.NoError(t, err)
		made := time.Now()
		time.Sleep(time.Second)
		ctx := context.Background()
		s.Observe(ctx, tai.Record{ID: "now", Kind: "k", Outcome: tai.Succeeded})

		hook, stopped, release := pause()
		s.reading = hook
		snaps := make(chan StatsSnapshot)
		go func() { snaps <- s.Snapshot() }()
		<-stopped
		s.Observe(ctx, tai.Record{ID: "early", Kind: "k", Outcome: tai.Succeeded, Start: made.Add(-30 * time.Second)})
		release()
		w, ok := (<-snaps).Window("k", time.Minute)
		require.True(t, ok)
		assert.Equal(t, uint64(2), w.Current.Total)
		assert.InDelta(t, 2/31.0, w.Current.Throughput, 1e-9, "two signals over the 31s since the first finished")
	})
}
