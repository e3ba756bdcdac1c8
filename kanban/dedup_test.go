package kanban

import (
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestDedupSetIsExactAcrossGenerations(t *testing.T) {
	const w = int64(time.Minute)
	tests := []struct {
		name  string
		steps []struct {
			id    string
			at    int64
			fresh bool
		}
	}{
		{"a duplicate inside the window", []struct {
			id    string
			at    int64
			fresh bool
		}{{"a", 0, true}, {"a", w - 1, false}, {"a", w, true}}},
		{"kept through a rotation until its window ends", []struct {
			id    string
			at    int64
			fresh bool
		}{{"x", 0, true}, {"a", w / 2, true}, {"b", w, true}, {"a", w + w/2 - 1, false}, {"a", w + w/2, true}}},
		{"a first ID long after the set was made", []struct {
			id    string
			at    int64
			fresh bool
		}{{"a", 5*w + 3, true}, {"a", 6*w + 2, false}, {"b", 6*w + 3, true}, {"a", 6*w + 3, true}, {"b", 7*w + 2, false}}},
		{"forgotten after two idle windows", []struct {
			id    string
			at    int64
			fresh bool
		}{{"a", 0, true}, {"a", 3 * w, true}, {"a", 3*w + 1, false}}},
		{"a recorded again after expiry restarts its window", []struct {
			id    string
			at    int64
			fresh bool
		}{{"a", 0, true}, {"a", w, true}, {"a", 2*w - 1, false}, {"a", 2 * w, true}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := newDedupSet(w)
			for i, s := range tc.steps {
				assert.Equal(t, s.fresh, d.add(s.id, s.at), "step %d: %s at %v", i, s.id, time.Duration(s.at))
			}
			assert.LessOrEqual(t, len(d.cur)+len(d.prev), len(tc.steps))
		})
	}
}

func TestDedupSetDropsOldGenerations(t *testing.T) {
	const w = int64(time.Minute)
	d := newDedupSet(w)
	for i := range int64(1000) {
		require.True(t, d.add(string(rune('a'+i%26))+time.Duration(i).String(), i*w/100))
	}
	// 1000 IDs over ten windows: only the last two generations remain.
	assert.LessOrEqual(t, len(d.cur)+len(d.prev), 200)
}

// TestDedupSetReleasesExpiredGenerations: the memory of IDs older than
// the window is released once the set rotates past them, after a burst
// as well: a map only cleared would keep the room of its most entries.
func TestDedupSetReleasesExpiredGenerations(t *testing.T) {
	const w, n = int64(time.Minute), 200_000
	heap := func() int64 {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return int64(m.HeapAlloc)
	}
	for _, tc := range []struct {
		name string
		// quiet is when the set is next used, after the burst at 0.
		quiet []int64
	}{
		{"quiet for two windows", []int64{2 * w}},
		{"used once a window", []int64{w, 2 * w, 3 * w}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := newDedupSet(w)
			base := heap()
			for i := range n {
				require.True(t, d.add("id-"+strconv.Itoa(i), 0))
			}
			burst := heap() - base
			require.Greater(t, burst, int64(n*16), "the burst's IDs are held")
			for i, at := range tc.quiet {
				require.True(t, d.add("late-"+strconv.Itoa(i), at))
			}
			left := heap() - base
			assert.Less(t, left, burst/10, "memory kept of %d IDs out of the window: %d bytes of %d", n, left, burst)
			runtime.KeepAlive(d)
		})
	}
}
