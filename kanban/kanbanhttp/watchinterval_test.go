package kanbanhttp_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/kanban"
	"github.com/taipattern/taikit/kanban/kanbanhttp"
)

// TestWatchRefusesAnIntervalBelowAMillisecond: Watch refuses, naming it,
// an interval under 1ms, as andon's Evaluator does: every read of such a
// Refresh would end at its deadline at once, and Watch would read and log
// without pause until its ctx ended. Before, Watch took 1ns.
func TestWatchRefusesAnIntervalBelowAMillisecond(t *testing.T) {
	h, _ := newServer(t, kanbanhttp.Options{}, map[string]kanban.DeadLetterStore{"orders": deadQueue(t, 0, 0)})
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // a Watch that takes the interval returns at once all the same
	for _, d := range []time.Duration{time.Nanosecond, time.Millisecond - 1} {
		err := h.Watch(ctx, d)
		require.Error(t, err)
		assert.NotErrorIs(t, err, context.Canceled, "refused, not run")
		assert.ErrorContains(t, err, "interval "+d.String())
	}
	assert.ErrorIs(t, h.Watch(ctx, time.Millisecond), context.Canceled, "1ms is taken")
}
