package natsjs_test

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/kanban"
	"github.com/taipattern/taikit/kanban/natsembed"
	"github.com/taipattern/taikit/kanban/natsjs"
)

// deadLetterMaxBytes reads the dead-letter stream's MaxBytes.
func deadLetterMaxBytes(t *testing.T, q *natsjs.Queue[[]byte]) int64 {
	t.Helper()
	s, err := q.JetStream().Stream(context.Background(), q.Options().DeadLetterStream)
	require.NoError(t, err)
	return s.CachedInfo().Config.MaxBytes
}

// largestPayload returns the largest payload, for the message msg makes,
// that Publish takes on a queue of opts: TryPublish on a full stream (one
// named name, of opts otherwise) refuses a larger one with ErrTooLarge,
// and one that fits with ErrFull. A payload of hi bytes must be refused.
func largestPayload(t *testing.T, nc *nats.Conn, opts natsjs.Options, name string, msg func(n int) kanban.Message[[]byte], hi int) int {
	t.Helper()
	ctx := context.Background()
	opts.Stream, opts.DeadLetterStream, opts.Capacity = name, name+"_DLQ", 1
	full, err := natsjs.New[[]byte](ctx, nc, opts)
	require.NoError(t, err)
	require.NoError(t, full.Publish(ctx, kanban.Message[[]byte]{ID: "filler"}))
	fits := func(n int) bool {
		err := full.TryPublish(ctx, msg(n))
		if errors.Is(err, kanban.ErrFull) {
			return true
		}
		require.ErrorIs(t, err, natsjs.ErrTooLarge, "%d bytes", n)
		return false
	}
	require.False(t, fits(hi), "%d bytes", hi)
	lo := 0
	for lo+1 < hi {
		if mid := (lo + hi) / 2; fits(mid) {
			lo = mid
		} else {
			hi = mid
		}
	}
	require.NoError(t, full.Shutdown(ctx))
	return lo
}

// refuseBytes consumes q with a handler that refuses every message, each
// dead-lettered at once, until done reports true; failed, if not nil,
// counts the failures to settle a message.
func refuseBytes(t *testing.T, q *natsjs.Queue[[]byte], done func() bool, failed *msgLog) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		opts := kanban.ConsumeOptions{MaxAttempts: 1}
		if failed != nil {
			opts.Logger = failed.logger()
		}
		errc <- q.Consume(ctx, func(context.Context, kanban.Delivery[[]byte]) error {
			return kanban.Permanent(errors.New("refused"))
		}, opts)
	}()
	require.Eventually(t, done, 30*time.Second, 5*time.Millisecond) // polls the queue's state
	cancel()
	require.NoError(t, <-errc)
}

// DeadLetterMaxBytes bounds the dead-letter stream by bytes as well as
// by count: the oldest dead letters go beyond it. New sets it on a stream
// made without it, and removes it again. Publish refuses a message whose
// dead letter alone would take more.
func TestDeadLetterMaxBytes(t *testing.T) {
	srv := startServer(t, natsembed.Options{InProcess: true})
	ctx := context.Background()
	nc := connect(t, srv.Connect)
	require.ErrorContains(t, natsjs.Options{DeadLetterMaxBytes: -1}.Validate(), "natsjs: invalid DeadLetterMaxBytes -1: must not be negative")

	opts := natsjs.Options{Stream: "DLBYTES", Codec: rawCodec{}, FetchWait: 50 * time.Millisecond}
	q, err := natsjs.New[[]byte](ctx, nc, opts)
	require.NoError(t, err)
	assert.EqualValues(t, -1, deadLetterMaxBytes(t, q), "no byte bound by default")

	opts.DeadLetterMaxBytes = 8192
	q, err = natsjs.New[[]byte](ctx, nc, opts)
	require.NoError(t, err)
	require.EqualValues(t, 8192, deadLetterMaxBytes(t, q), "New updates the stream")

	err = q.Publish(ctx, kanban.Message[[]byte]{ID: "huge", Payload: make([]byte, 8000)})
	require.ErrorIs(t, err, natsjs.ErrTooLarge)
	assert.ErrorContains(t, err, "more than DeadLetterMaxBytes 8192")

	const n = 5
	for i := range n {
		require.NoError(t, q.Publish(ctx, kanban.Message[[]byte]{ID: "m" + strconv.Itoa(i), Payload: make([]byte, 3000)}))
	}
	refuseBytes(t, q, func() bool { return q.Stats().DeadLettered == n }, nil)
	s, err := q.JetStream().Stream(ctx, "DLBYTES_DLQ")
	require.NoError(t, err)
	st := s.CachedInfo().State
	assert.LessOrEqual(t, st.Bytes, uint64(8192))
	dead, err := q.DeadLetters(ctx)
	require.NoError(t, err)
	require.Len(t, dead, 2, "two dead letters of 3 KB fit in 8 KB")
	assert.Equal(t, "m3", dead[0].ID, "the oldest went first")
	assert.Equal(t, "m4", dead[1].ID)

	opts.DeadLetterMaxBytes = 0
	q, err = natsjs.New[[]byte](ctx, nc, opts)
	require.NoError(t, err)
	assert.EqualValues(t, -1, deadLetterMaxBytes(t, q), "New removes the bound")
	require.NoError(t, q.Shutdown(ctx))
}

// A message taken before DeadLetterMaxBytes was set, whose dead letter
// alone takes more, is handed back instead of dead-lettered: the server
// would store it, then drop it at once together with every dead letter
// kept, and the message, terminated, would be lost.
func TestDeadLetterLargerThanDeadLetterMaxBytes(t *testing.T) {
	srv := startServer(t, natsembed.Options{InProcess: true})
	ctx := context.Background()
	nc := connect(t, srv.Connect)
	opts := natsjs.Options{Stream: "DLHUGE", Codec: rawCodec{}, FetchWait: 50 * time.Millisecond, AsyncRetryWait: time.Millisecond}
	unbounded, err := natsjs.New[[]byte](ctx, nc, opts)
	require.NoError(t, err)
	require.NoError(t, unbounded.Publish(ctx, kanban.Message[[]byte]{ID: "small", Payload: []byte("x")}))
	refuseBytes(t, unbounded, func() bool { return unbounded.Stats().DeadLettered == 1 }, nil)
	require.NoError(t, unbounded.Publish(ctx, kanban.Message[[]byte]{ID: "big", Payload: make([]byte, 6000)}))

	opts.DeadLetterMaxBytes = 4096
	q, err := natsjs.New[[]byte](ctx, nc, opts)
	require.NoError(t, err)
	failed := newMsgLog("kanban: settling a message failed")
	refuseBytes(t, q, func() bool { return failed.count() >= 2 || q.Stats().DeadLettered > 0 }, failed)
	assert.Zero(t, q.Stats().DeadLettered)

	b, err := q.Backlog(ctx)
	require.NoError(t, err)
	assert.EqualValues(t, 1, b.Depth, "the message is kept")
	dead, err := q.DeadLetters(ctx)
	require.NoError(t, err)
	require.Len(t, dead, 1, "the dead letters are kept")
	assert.Equal(t, "small", dead[0].ID)
	require.NoError(t, q.Shutdown(ctx))
	require.NoError(t, unbounded.Shutdown(ctx))
}

// baggageKey carries, in a ctx, the value baggageProp injects.
type baggageKey struct{}

// baggageProp injects the baggage a ctx carries, if any.
type baggageProp struct{}

func (baggageProp) Inject(ctx context.Context, h kanban.Header) {
	if v, ok := ctx.Value(baggageKey{}).(string); ok {
		h.Set("baggage", v)
	}
}
func (baggageProp) Extract(ctx context.Context, _ kanban.Header) context.Context { return ctx }

// RedriveDeadLetters takes a message back into the work stream as Publish
// does, so it refuses with ErrTooLarge, keeping the dead letter, one whose
// dead letter would not fit DeadLetterMaxBytes: here a message Publish
// took at the very bound, redriven with a larger trace context than it
// was published with. Redriven, it could not be dead-lettered again, and
// its handler ran again and again. Redriven with the headers it was
// published with, the same message is taken, and dead-lettered again
// with a reason however long.
func TestRedriveLargerThanDeadLetterMaxBytes(t *testing.T) {
	srv := startServer(t, natsembed.Options{InProcess: true})
	ctx := context.Background()
	nc := connect(t, srv.Connect)
	const bound = 4096
	opts := natsjs.Options{
		Stream: "DLREDRIVE", Codec: rawCodec{}, FetchWait: 50 * time.Millisecond, AsyncRetryWait: time.Millisecond,
		DeadLetterMaxBytes: bound, Propagator: baggageProp{},
	}
	msg := func(n int) kanban.Message[[]byte] {
		return kanban.Message[[]byte]{ID: "edge", Key: "k", Headers: kanban.Header{"h": "v"}, Payload: make([]byte, n)}
	}
	lo := largestPayload(t, nc, opts, "DLREDRIVE_FULL", msg, bound)

	q, err := natsjs.New[[]byte](ctx, nc, opts)
	require.NoError(t, err)
	require.NoError(t, q.Publish(ctx, msg(lo)))
	long := strings.Repeat("é", 4000)
	refuseLong := func(dead int64) {
		cctx, cancel := context.WithCancel(ctx)
		errc := make(chan error, 1)
		go func() {
			errc <- q.Consume(cctx, func(context.Context, kanban.Delivery[[]byte]) error {
				return kanban.Permanent(errors.New(long))
			}, kanban.ConsumeOptions{MaxAttempts: 1})
		}()
		require.Eventually(t, func() bool { return q.Stats().DeadLettered == dead }, 30*time.Second, 5*time.Millisecond) // polls the queue's state
		cancel()
		require.NoError(t, <-errc)
	}
	refuseLong(1)

	traced := context.WithValue(ctx, baggageKey{}, strings.Repeat("b", 2000))
	n, err := q.RedriveDeadLetters(traced, kanban.DeadLetterFilter{All: true})
	assert.Zero(t, n)
	require.ErrorIs(t, err, natsjs.ErrTooLarge)
	assert.ErrorContains(t, err, "natsjs: redriving dead letter 1 (message edge): natsjs: message too large: its dead letter would take")
	assert.ErrorContains(t, err, "more than DeadLetterMaxBytes 4096")
	b, err := q.Backlog(ctx)
	require.NoError(t, err)
	assert.Zero(t, b.Depth, "not redriven")
	assert.EqualValues(t, 1, b.DeadLetters, "the dead letter is kept")

	n, err = q.RedriveDeadLetters(ctx, kanban.DeadLetterFilter{All: true})
	require.NoError(t, err)
	require.Equal(t, 1, n)
	refuseLong(2)
	dead, err := q.DeadLetters(ctx)
	require.NoError(t, err)
	require.Len(t, dead, 1)
	assert.Equal(t, "edge", dead[0].ID)
	assert.Len(t, dead[0].Payload, lo)
	assert.Equal(t, strings.Repeat("é", 512), dead[0].Reason)
	require.NoError(t, q.Shutdown(ctx))
}
