package kanban

import (
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
