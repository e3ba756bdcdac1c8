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

// TestStatsSnapshotAcrossASlotEdgeKeepsThePreviousWindow: a record
// observed in the next slot while a Snapshot is under way takes the slot
// of the oldest records of the window before. A kind the Snapshot reads
// after that counts every record that finished in the periods it reports:
// it never reports a Previous period that covers a record it has lost.
func TestStatsSnapshotAcrossASlotEdgeKeepsThePreviousWindow(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s, err := NewStats(StatsOptions{Windows: []time.Duration{time.Minute}}) // 12 slots of 5s
		require.NoError(t, err)
		ctx := context.Background()
		width := 5 * time.Second
		time.Sleep(time.Duration(int64(width) - time.Now().UnixNano()%int64(width))) // at a slot's start
		first := time.Now()
		time.Sleep(time.Second)
		s.Observe(ctx, tai.Record{ID: "old", Kind: "k", Outcome: tai.Succeeded}) // at first+1s
		// Just before the slot of first is the oldest of the window before.
		time.Sleep(time.Until(first.Add(2*time.Minute - time.Nanosecond)))

		hook, stopped, release := pause()
		s.reading = hook
		snaps := make(chan StatsSnapshot)
		go func() { snaps <- s.Snapshot() }()
		<-stopped
		time.Sleep(time.Nanosecond) // the next slot
		s.Observe(ctx, tai.Record{ID: "new", Kind: "k", Outcome: tai.Succeeded})
		release()
		snap := <-snaps
		w, ok := snap.Window("k", time.Minute)
		require.True(t, ok)
		at := []time.Time{first.Add(time.Second), first.Add(2 * time.Minute)} // of "old" and "new"
		for _, p := range []struct {
			got  Period
			name string
		}{{w.Current, "current"}, {w.Previous, "previous"}} {
			var want uint64
			for _, a := range at {
				if !a.Before(p.got.Start) && a.Before(p.got.End) {
					want++
				}
			}
			assert.Equal(t, want, p.got.Total, "%s period %v to %v, records at %v", p.name, p.got.Start, p.got.End, at)
		}
	})
}
