package kanban

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestRingKeepsOrderAcrossGrowthAndWrap(t *testing.T) {
	tests := []struct {
		name  string
		front int // pushed at the front, after the back pushes
		back  int
		pops  int // popped between the two rounds, to wrap the head
	}{
		{"empty", 0, 0, 0},
		{"back only, no growth", 0, 10, 0},
		{"back only, grows", 0, 100, 0},
		{"front only", 40, 0, 0},
		{"both ends, wrapped", 20, 30, 7},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var r ring[int]
			var want []int
			for i := range tc.back {
				r.pushBack(i)
				want = append(want, i)
			}
			for range tc.pops {
				if len(want) > 0 {
					assert.Equal(t, want[0], r.popFront())
					want = want[1:]
				}
			}
			for i := range tc.front {
				*r.addFront() = -1 - i
				want = append([]int{-1 - i}, want...)
			}
			for i := range tc.back {
				r.pushBack(1000 + i)
				want = append(want, 1000+i)
			}
			require.Equal(t, len(want), r.len())
			var got []int
			for range want { // bounded: a ring that never empties fails, not hangs
				got = append(got, r.popFront())
			}
			assert.Zero(t, r.len())
			assert.Equal(t, want, got)
		})
	}
}
