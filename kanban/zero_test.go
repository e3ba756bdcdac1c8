package kanban_test

import (
	"context"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/kanban"
)

// TestZeroMemoryHoldsNoMessage: as documented, the zero Memory holds no
// message: TryPublish returns ErrFull, and Publish waits until its ctx
// ends; a consumer of it waits for a message until its ctx ends, and
// returns as at any stop; its reads find an empty queue. It runs in a
// synctest bubble, which reports a wait that nothing would end as a
// deadlock.
func TestZeroMemoryHoldsNoMessage(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		var q kanban.Memory[int]
		msg := kanban.Message[int]{ID: "1", Key: "k", Payload: 1}
		assert.ErrorIs(t, q.TryPublish(ctx, msg), kanban.ErrFull)

		tctx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		start := time.Now()
		assert.ErrorIs(t, q.Publish(tctx, msg), context.DeadlineExceeded)
		assert.Equal(t, time.Minute, time.Since(start), "Publish waits for its ctx")

		cctx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		err := q.Consume(cctx, func(context.Context, kanban.Delivery[int]) error {
			t.Error("the zero Memory delivered a message")
			return nil
		}, kanban.ConsumeOptions{})
		assert.NoError(t, err)

		assert.Zero(t, q.Len())
		assert.Equal(t, kanban.QueueStats{}, q.Stats())
		b, err := q.Backlog(ctx)
		require.NoError(t, err)
		assert.Equal(t, kanban.Backlog{}, b)
		dl, err := q.DeadLetters(ctx)
		require.NoError(t, err)
		assert.Empty(t, dl)
		page, err := q.ListDeadLetters(ctx, kanban.DeadLetterQuery{})
		require.NoError(t, err)
		assert.Empty(t, page.Letters)
		n, err := q.RedriveDeadLetters(ctx, kanban.DeadLetterFilter{All: true})
		require.NoError(t, err)
		assert.Zero(t, n)
		n, err = q.DeleteDeadLetters(ctx, kanban.DeadLetterFilter{All: true})
		require.NoError(t, err)
		assert.Zero(t, n)
	})
}

// TestZeroCountersAreReadyToUse: as documented, the zero Counters counts.
func TestZeroCountersAreReadyToUse(t *testing.T) {
	var c kanban.Counters
	c.AddPublished(2)
	c.AddDuplicates(1)
	c.AddRedriven(3)
	assert.Equal(t, kanban.QueueStats{Published: 2, Duplicates: 1, Redriven: 3}, c.Snapshot())
}

// TestZeroOptionsAreUsable: the zero ConsumeOptions, MemoryOptions,
// Exponential and DeadLetterQuery are valid, with the defaults their
// documentation names; the zero DeadLetterFilter matches nothing until All
// is set, so no call acts on every dead letter by omission.
func TestZeroOptionsAreUsable(t *testing.T) {
	var co kanban.ConsumeOptions
	require.NoError(t, co.Validate())
	d := co.WithDefaults()
	assert.Equal(t, 1, d.WIP)
	assert.Equal(t, 5, d.MaxAttempts)
	assert.Equal(t, 30*time.Second, d.DrainTimeout)
	require.NoError(t, kanban.MemoryOptions{}.Validate())

	var e kanban.Exponential
	require.NoError(t, e.Validate())
	for n := 1; n <= 20; n++ {
		assert.Positive(t, e.Delay(n))
		assert.LessOrEqual(t, e.Delay(n), 30*time.Second)
	}

	var q kanban.DeadLetterQuery
	require.NoError(t, q.Validate())
	assert.Equal(t, 100, q.WithDefaults().Limit)

	var f kanban.DeadLetterFilter
	assert.True(t, f.IsZero())
	assert.ErrorContains(t, f.Validate(), "set All")
}

// TestNilHeader: the nil Header reads as empty, and Set on it does nothing,
// as documented.
func TestNilHeader(t *testing.T) {
	var h kanban.Header
	assert.Empty(t, h.Get("traceparent"))
	assert.Empty(t, h.Keys())
	assert.Nil(t, h.Clone())
	assert.NotPanics(t, func() { h.Set("traceparent", "x") })
	assert.Nil(t, h)
}
