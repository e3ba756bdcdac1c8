package kaizen_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/kaizen"
	"github.com/taipattern/taikit/tai"
)

// TestStatsConcurrentKindsAtTheCap: goroutines observing more kinds than
// MaxKinds at once keep exactly MaxKinds of them; every record of a kind
// not kept is counted in Dropped, every other one in its kind; and every
// Snapshot taken meanwhile is consistent within each period: counts by
// outcome and by verdict add up to Total, quantiles lie in order between
// Min and Max, and no kind or count goes down from one Snapshot to the
// next.
func TestStatsConcurrentKindsAtTheCap(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const maxKinds, goroutines, each = 3, 4, 300
		s, err := kaizen.NewStats(kaizen.StatsOptions{MaxKinds: maxKinds, Windows: []time.Duration{time.Minute}})
		require.NoError(t, err)
		var wg sync.WaitGroup
		for g := range goroutines {
			wg.Go(func() {
				for i := range each {
					kind := fmt.Sprint("k", (g+i)%5)
					s.Observe(context.Background(), rec(kind, tai.Outcome(i%4+1), tai.Verdict(i%4), time.Now(), time.Duration(i)*time.Millisecond))
				}
			})
		}
		var last kaizen.StatsSnapshot
		for range 30 {
			snap := s.Snapshot()
			assert.LessOrEqual(t, len(snap.Kinds), maxKinds)
			assert.GreaterOrEqual(t, snap.Dropped, last.Dropped)
			for name, k := range last.Kinds {
				require.Contains(t, snap.Kinds, name, "a kind kept stays kept")
				assert.GreaterOrEqual(t, snap.Kinds[name].Windows[0].Current.Total, k.Windows[0].Current.Total)
			}
			for name, k := range snap.Kinds {
				checkPeriodConsistent(t, name, k.Windows[0].Current)
			}
			last = snap
		}
		wg.Wait()
		snap := s.Snapshot()
		require.Len(t, snap.Kinds, maxKinds)
		var kept uint64
		for name, k := range snap.Kinds {
			checkPeriodConsistent(t, name, k.Windows[0].Current)
			kept += k.Windows[0].Current.Total
		}
		assert.Equal(t, uint64(goroutines*each), kept+snap.Dropped)
	})
}

func checkPeriodConsistent(t *testing.T, name string, p kaizen.Period) {
	t.Helper()
	o, v := p.Outcomes, p.Verdicts
	assert.Equal(t, p.Total, o.Succeeded+o.Denied+o.Rejected+o.Failed, "kind %s outcomes", name)
	assert.Equal(t, p.Total, v.None+v.Allow+v.Review+v.Deny, "kind %s verdicts", name)
	if p.Total == 0 {
		return
	}
	assert.True(t, p.Min <= p.P50 && p.P50 <= p.P90 && p.P90 <= p.P99 && p.P99 <= p.Max,
		"kind %s: min %v p50 %v p90 %v p99 %v max %v", name, p.Min, p.P50, p.P90, p.P99, p.Max)
	assert.True(t, p.Min <= p.Mean && p.Mean <= p.Max, "kind %s: mean %v", name, p.Mean)
}
