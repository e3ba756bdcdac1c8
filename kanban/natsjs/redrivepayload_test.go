package natsjs_test

import (
	"context"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/kanban"
	"github.com/taipattern/taikit/kanban/natsembed"
	"github.com/taipattern/taikit/kanban/natsjs"
)

// RedriveDeadLetters refuses with ErrTooLarge, keeping the dead letter, a
// message whose dead letter would not fit within the server's
// max_payload, as Publish does: here one Publish took at the very bound,
// redriven with a larger trace context than it was published with.
// Before, a trace context a few hundred bytes larger was redriven, and
// the message could no longer be dead-lettered with a long reason (its
// handler ran again and again), and a larger one failed with the
// client's max payload error instead of ErrTooLarge.
func TestRedriveLargerThanMaxPayload(t *testing.T) {
	srv := startServer(t, natsembed.Options{InProcess: true})
	ctx := context.Background()
	nc := connect(t, srv.Connect)
	opts := natsjs.Options{Stream: "RDPAYLOAD", Codec: rawCodec{}, Storage: natsjs.MemoryStorage, Propagator: baggageProp{}}
	msg := func(n int) kanban.Message[[]byte] {
		return kanban.Message[[]byte]{ID: "edge", Key: "k", Payload: make([]byte, n)}
	}
	lo := largestPayload(t, nc, opts, "RDPAYLOAD_FULL", msg, int(nc.MaxPayload()))

	q, err := natsjs.New[[]byte](ctx, nc, opts)
	require.NoError(t, err)
	require.NoError(t, q.Publish(ctx, msg(lo)))
	refuseBytes(t, q, func() bool { return q.Stats().DeadLettered == 1 }, nil)

	for _, size := range []int{300, 2000} {
		traced := context.WithValue(ctx, baggageKey{}, strings.Repeat("b", size))
		n, err := q.RedriveDeadLetters(traced, kanban.DeadLetterFilter{All: true})
		assert.Zero(t, n, "%d bytes of trace context", size)
		require.ErrorIs(t, err, natsjs.ErrTooLarge, "%d bytes of trace context", size)
		assert.ErrorContains(t, err, "natsjs: redriving dead letter 1 (message edge): natsjs: message too large: its dead letter would take")
		assert.ErrorContains(t, err, "more than the server's max_payload")
	}
	b, err := q.Backlog(ctx)
	require.NoError(t, err)
	assert.Zero(t, b.Depth, "not redriven")
	assert.EqualValues(t, 1, b.DeadLetters, "the dead letter is kept")

	// Redriven with the headers it was published with, it is taken.
	n, err := q.RedriveDeadLetters(ctx, kanban.DeadLetterFilter{All: true})
	require.NoError(t, err)
	assert.Equal(t, 1, n)
	require.NoError(t, q.Shutdown(ctx))
}
