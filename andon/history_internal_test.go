package andon

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

// TestRingLast: last returns the newest values, oldest first, whether or
// not the ring has wrapped, and never more than it keeps.
func TestRingLast(t *testing.T) {
	r := newRing[int](4)
	assert.Equal(t, []int{}, r.last(3))
	for v := range 6 { // 0..5: 2, 3, 4, 5 kept, next at 2
		r.push(v)
		assert.Equal(t, r.values(), r.last(10), "after %d", v)
	}
	for n, want := range [][]int{{}, {5}, {4, 5}, {3, 4, 5}, {2, 3, 4, 5}, {2, 3, 4, 5}} {
		assert.Equal(t, want, r.last(n), "last(%d)", n)
	}
}

// TestRingAgainstAModel: at every size, fill and n, including a ring of
// one and an n below zero, values and last keep what a plain slice of
// the newest values says.
func TestRingAgainstAModel(t *testing.T) {
	for size := 1; size <= 5; size++ {
		r := newRing[int](size)
		var all []int
		for v := range 3*size + 2 {
			r.push(v)
			all = append(all, v)
			kept := all[max(0, len(all)-size):]
			assert.Equal(t, kept, r.values(), "size %d after %d", size, v)
			for n := -1; n <= size+1; n++ {
				assert.Equal(t, kept[len(kept)-max(0, min(n, len(kept))):], r.last(n), "size %d after %d, last(%d)", size, v, n)
			}
		}
	}
}
