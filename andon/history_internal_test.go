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
