package kanban

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestCountersAddCellsExactlyOnce(t *testing.T) {
	tests := []struct {
		name    string
		drop    bool // the worker ended: its cell is folded in
		handled int64
		flight  int64
	}{
		{"a live cell is counted", false, 3, 1},
		{"a dropped cell is counted once", true, 3, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var c Counters
			c.base.addHandled()
			cell := c.newCell()
			for range tc.handled {
				cell.addHandled()
			}
			cell.addRetried()
			cell.addDeadLettered()
			cell.addInFlight(tc.flight)
			if tc.drop {
				c.dropCell(cell)
				assert.Empty(t, c.cells)
			}
			c.AddPublished(4)
			c.AddDuplicates(2)
			want := QueueStats{Published: 4, Duplicates: 2, Handled: 1 + tc.handled, Retried: 1, DeadLettered: 1, InFlight: tc.flight}
			assert.Equal(t, want, c.Snapshot())
			assert.Equal(t, want, c.Snapshot(), "reading does not fold twice")
		})
	}
}
