package natsjs_test

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/kanban"
	"github.com/taipattern/taikit/kanban/natsembed"
	"github.com/taipattern/taikit/kanban/natsjs"
)

// TestFlushReturnsTheFirstFailuresAndACount: Flush returns the first 64
// final failures in full and counts the rest, and each failure of a full
// stream wraps kanban.ErrFull.
func TestFlushReturnsTheFirstFailuresAndACount(t *testing.T) {
	const n = 70
	srv := startServer(t, natsembed.Options{InProcess: true})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	q, err := natsjs.New[int](ctx, connect(t, srv.Connect), natsjs.Options{
		Stream: "FLUSHCAP", Capacity: 1, AsyncAttempts: 1, Storage: natsjs.MemoryStorage,
	})
	require.NoError(t, err)
	require.NoError(t, q.Publish(ctx, kanban.Message[int]{ID: "fills"}))
	for i := range n {
		require.NoError(t, q.PublishAsync(ctx, kanban.Message[int]{ID: "id-" + strconv.Itoa(i)}))
	}
	err = q.Flush(ctx)
	require.Error(t, err)
	require.NoError(t, ctx.Err())
	var joined interface{ Unwrap() []error }
	require.True(t, errors.As(err, &joined))
	errs := joined.Unwrap()
	require.Len(t, errs, 65, "64 failures and the count of the rest")
	for _, e := range errs[:64] {
		assert.ErrorIs(t, e, kanban.ErrFull)
	}
	assert.EqualError(t, errs[64], "natsjs: and 6 more failed publishes")
	assert.Equal(t, 64, strings.Count(err.Error(), "natsjs: publishing message id-"))
	assert.NoError(t, q.Flush(ctx), "failures are returned once")
	require.NoError(t, q.Shutdown(ctx))
}

// TestPublishAsyncWaitsForASlot: with MaxPublishPending messages
// unsettled — here one waiting for its re-publish — PublishAsync waits
// for a slot until its ctx ends, and returns ctx's error without sending
// the message; after Shutdown it returns ErrClosed.
func TestPublishAsyncWaitsForASlot(t *testing.T) {
	srv := startServer(t, natsembed.Options{InProcess: true})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	republished := newRepublishLog()
	q, err := natsjs.New[int](ctx, connect(t, srv.Connect), natsjs.Options{
		Stream: "SLOT", Capacity: 1, MaxPublishPending: 1, AsyncAttempts: 2, AsyncRetryWait: time.Minute,
		Storage: natsjs.MemoryStorage, Logger: republished.logger(),
	})
	require.NoError(t, err)
	require.NoError(t, q.Publish(ctx, kanban.Message[int]{ID: "fills"}))
	require.NoError(t, q.PublishAsync(ctx, kanban.Message[int]{ID: "waits"}))
	republished.wait(t, 1) // refused, it waits a minute for its re-publish

	ended, stop := context.WithCancel(ctx)
	stop()
	assert.ErrorIs(t, q.PublishAsync(ended, kanban.Message[int]{ID: "no slot"}), context.Canceled)

	// Not waiting for the re-publish a minute away.
	err = q.Shutdown(ended)
	assert.ErrorIs(t, err, context.Canceled)
	assert.ErrorIs(t, err, natsjs.ErrClosed, "the message waiting for its re-publish fails")
	assert.ErrorIs(t, err, kanban.ErrFull, "with its last failure")
	assert.NoError(t, q.Shutdown(ctx), "nothing left under way")
	assert.ErrorIs(t, q.PublishAsync(ctx, kanban.Message[int]{ID: "after"}), natsjs.ErrClosed)
	b, err := q.Backlog(ctx)
	require.NoError(t, err)
	assert.Equal(t, int64(1), b.Depth, "nothing sent but the first")
}
