package natsjs

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/kanban"
)

// probeWaiters returns how many probes hold or wait for nc's turn.
func probeWaiters(nc *nats.Conn) int {
	probes.mu.Lock()
	defer probes.mu.Unlock()
	if p := probes.conns[nc]; p != nil {
		return p.users
	}
	return 0
}

// TestPublishWaitingForAProbeGoesOnceAnswered: a Publish waiting for
// its turn to probe (another probe on the connection running: many
// publishers starting at once) publishes as soon as another publish of
// the Queue has been answered, instead of probing in its turn. Probes
// on one connection take turns of a round trip each, and a thousand
// publishers starting together on a server 10 ms away waited ten
// seconds, most of them failing after PublishTimeout.
func TestPublishWaitingForAProbeGoesOnceAnswered(t *testing.T) {
	nc := inProcessConn(t)
	ctx := context.Background()
	q, err := New[int](ctx, nc, Options{Stream: "PROBE_WAIT", PublishTimeout: 10 * time.Second})
	require.NoError(t, err)
	t.Cleanup(func() { assert.NoError(t, q.Shutdown(ctx)) })

	done, err := takeProbeTurn(ctx, nc) // another probe runs
	require.NoError(t, err)
	defer done()
	errc := make(chan error, 1)
	go func() { errc <- q.Publish(ctx, kanban.Message[int]{ID: "a", Payload: 1}) }()
	for probeWaiters(nc) < 2 {
		time.Sleep(time.Millisecond)
	}
	q.workTaken.answer() // another publish answered
	require.NoError(t, <-errc)
	assert.Equal(t, int64(1), q.Stats().Published)
}
