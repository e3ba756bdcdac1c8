package natsjs

import (
	"context"
	"errors"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/kanban"
)

// TestShutdownRacingPublishAsyncLeavesNothingUnsettled: a PublishAsync
// accepted while Shutdown runs is waited for. Shutdown had closed the
// queue only after its wait for the unsettled messages had returned, and
// a PublishAsync taking a slot in between was accepted — it returned nil
// — while Shutdown returned nil with the message still unsettled: its
// failure, if any, came after Shutdown, from a goroutine still running,
// and never reached Shutdown's error. Each round races publishers against
// Shutdown; the window is narrow, so there are many rounds.
func TestShutdownRacingPublishAsyncLeavesNothingUnsettled(t *testing.T) {
	nc := inProcessConn(t)
	ctx := context.Background()
	const rounds = 1000
	unsettled := 0
	for round := range rounds {
		// One slot: every acknowledgement frees it, waking Shutdown and
		// the publishers waiting for it at once.
		q, err := New[int](ctx, nc, Options{Stream: "SHUTDOWN_RACE", MaxPublishPending: 1})
		require.NoError(t, err)
		var wg sync.WaitGroup
		var sent atomic.Int64
		for g := range 8 {
			wg.Go(func() {
				for n := 0; ; n++ {
					id := strconv.Itoa(round) + "." + strconv.Itoa(g) + "." + strconv.Itoa(n)
					if err := q.PublishAsync(ctx, kanban.Message[int]{ID: id, Payload: n}); errors.Is(err, ErrClosed) {
						return
					}
					sent.Add(1)
				}
			})
		}
		for sent.Load() < 8 {
			runtime.Gosched()
		}
		require.NoError(t, q.Shutdown(ctx))
		q.async.mu.Lock()
		if q.async.held != 0 {
			unsettled++
		}
		q.async.mu.Unlock()
		wg.Wait()
		require.NoError(t, q.Flush(ctx))
	}
	assert.Zero(t, unsettled, "rounds of %d where Shutdown returned nil with a PublishAsync message unsettled", rounds)
}
