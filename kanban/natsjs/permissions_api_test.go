package natsjs_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/kanban"
	"github.com/taipattern/taikit/kanban/natsjs"
)

// TestNewNotPermittedToCreate: a user who may publish to the work subject
// and use the rest of the JetStream API, but not create or update
// streams, gets from New, for a stream nobody made, the server's refusal
// at once, naming the subject refused, instead of a timeout after the
// request's 5 s.
func TestNewNotPermittedToCreate(t *testing.T) {
	ns := startUsersServer(t, user("tight", "NOCREATE", "NOCREATE.keeper",
		"$JS.API.STREAM.INFO.>", "$JS.API.CONSUMER.>", "$JS.ACK.>"))
	var v violations
	_, err := natsjs.New[int](context.Background(), connectAs(t, ns, "tight", &v), natsjs.Options{Stream: "NOCREATE"})
	require.Error(t, err)
	assert.ErrorIs(t, err, nats.ErrPermissionViolation)
	assert.Contains(t, err.Error(), `"$JS.API.STREAM.CREATE.NOCREATE"`)
	assert.Contains(t, err.Error(), "publish")
	assert.False(t, natsjs.Unreachable(err), "not a server out of reach: %v", err)
}

// TestConsumeNotPermittedToCreate: Consume by a user not permitted to
// create the durable, which nobody made, returns the server's refusal at
// once, naming the subject, instead of taking each request's timeout for
// JetStream out of reach and trying again until ctx ends.
func TestConsumeNotPermittedToCreate(t *testing.T) {
	ns := startUsersServer(t, user("admin"), user("tight", "NOCONS", "NOCONS.keeper",
		"$JS.API.STREAM.>", "$JS.API.CONSUMER.INFO.>", "$JS.API.CONSUMER.MSG.NEXT.>", "$JS.ACK.>"))
	var v violations
	q, err := natsjs.New[int](context.Background(), connectAs(t, ns, "tight", &v), natsjs.Options{Stream: "NOCONS", FetchWait: 100 * time.Millisecond})
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err = q.Consume(ctx, func(context.Context, kanban.Delivery[int]) error { return nil }, kanban.ConsumeOptions{})
	require.Error(t, err, "Consume ended only with ctx")
	assert.ErrorIs(t, err, nats.ErrPermissionViolation)
	assert.Contains(t, err.Error(), `"$JS.API.CONSUMER.CREATE.NOCONS.NOCONS_WORKERS.NOCONS"`)
	assert.NoError(t, ctx.Err())
}

// workerPerms are the publish permissions of a worker whose streams and
// durable an administrator made: the work and keeper subjects, stream and
// consumer info, pulls, acknowledgements and the dead-letter subject.
var workerPerms = []string{"MADE", "MADE.keeper", "MADE_DLQ", "$JS.API.STREAM.INFO.>", "$JS.API.STREAM.MSG.GET.>",
	"$JS.API.CONSUMER.INFO.>", "$JS.API.CONSUMER.MSG.NEXT.>", "$JS.ACK.>"}

// TestWorkerBindsToWhatAnAdminMade: a user not permitted to create or
// update streams and consumers uses those an administrator made: New and
// Consume bind to them, the queue publishes and handles, its keeper kept.
// Before, New waited out the update's request timeout and failed.
func TestWorkerBindsToWhatAnAdminMade(t *testing.T) {
	ns := startUsersServer(t, user("admin"), user("worker", workerPerms...))
	ctx := context.Background()
	opts := natsjs.Options{Stream: "MADE", FetchWait: 100 * time.Millisecond}
	admin, err := natsjs.New[int](ctx, connectAs(t, ns, "admin", &violations{}), opts)
	require.NoError(t, err)
	assert.Empty(t, handleAll(t, admin, 4), "the durable made")

	differs := newMsgLog("natsjs: the connection may not update the stream; the queue uses it as it is")
	opts.Logger = differs.logger()
	var v violations
	q, err := natsjs.New[int](ctx, connectAs(t, ns, "worker", &v), opts)
	require.NoError(t, err)
	assert.Zero(t, differs.count(), "the same configuration")
	for _, id := range []string{"a", "b", "c"} {
		require.NoError(t, q.Publish(ctx, kanban.Message[int]{ID: id, Payload: 1}))
	}
	assert.ElementsMatch(t, []string{"a", "b", "c"}, handleAll(t, q, 4))
	assert.Equal(t, uint64(1), keepers(t, admin.JetStream(), "MADE"))
	for _, err := range v.all() {
		assert.NotContains(t, err.Error(), "MSG.NEXT", "pulls refused")
		assert.NotContains(t, err.Error(), "$JS.ACK", "acknowledgements refused")
	}
}

// TestWorkerBindsToADifferentStream: a worker not permitted to update a
// stream made with another Capacity uses it as it is, and says so at Warn.
func TestWorkerBindsToADifferentStream(t *testing.T) {
	ns := startUsersServer(t, user("admin"), user("worker", workerPerms...))
	ctx := context.Background()
	admin, err := natsjs.New[int](ctx, connectAs(t, ns, "admin", &violations{}), natsjs.Options{Stream: "MADE", Capacity: 2})
	require.NoError(t, err)
	differs := newMsgLog("natsjs: the connection may not update the stream; the queue uses it as it is")
	q, err := natsjs.New[int](ctx, connectAs(t, ns, "worker", &violations{}), natsjs.Options{Stream: "MADE", Logger: differs.logger()})
	require.NoError(t, err)
	assert.Equal(t, 1, differs.count())
	for _, id := range []string{"a", "b"} {
		require.NoError(t, q.TryPublish(ctx, kanban.Message[int]{ID: id}))
	}
	assert.True(t, errors.Is(q.TryPublish(ctx, kanban.Message[int]{ID: "c"}), kanban.ErrFull), "the stream's Capacity holds")
	require.NoError(t, admin.Shutdown(ctx))
}

// TestConsumeNotPermittedToPull: Consume by a user who may create the
// durable but not pull from it returns the server's refusal, naming the
// subject, instead of sending pull requests, each refused and ending
// empty, until ctx ends.
func TestConsumeNotPermittedToPull(t *testing.T) {
	ns := startUsersServer(t, user("tight", "NOPULL", "NOPULL.keeper",
		"$JS.API.STREAM.>", "$JS.API.CONSUMER.CREATE.>", "$JS.API.CONSUMER.INFO.>", "$JS.ACK.>"))
	q, err := natsjs.New[int](context.Background(), connectAs(t, ns, "tight", &violations{}), natsjs.Options{Stream: "NOPULL", FetchWait: 100 * time.Millisecond})
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err = q.Consume(ctx, func(context.Context, kanban.Delivery[int]) error { return nil }, kanban.ConsumeOptions{})
	require.Error(t, err, "Consume ended only with ctx")
	assert.ErrorIs(t, err, nats.ErrPermissionViolation)
	assert.True(t, kanban.IsPermanent(err))
	assert.Contains(t, err.Error(), `"$JS.API.CONSUMER.MSG.NEXT.NOPULL.NOPULL_WORKERS"`)
	assert.NoError(t, ctx.Err())
}

// TestWorkerExtendsLeasesByTheDurablesAckWait: a worker not permitted to
// update the durable an administrator made with a shorter AckWait than
// the worker's extends its leases within the durable's AckWait, so a
// message handled for longer than that is not delivered again meanwhile.
func TestWorkerExtendsLeasesByTheDurablesAckWait(t *testing.T) {
	ns := startUsersServer(t, user("admin"), user("worker", workerPerms...))
	ctx := context.Background()
	admin, err := natsjs.New[int](ctx, connectAs(t, ns, "admin", &violations{}),
		natsjs.Options{Stream: "MADE", AckWait: 300 * time.Millisecond, FetchWait: 50 * time.Millisecond})
	require.NoError(t, err)
	assert.Empty(t, handleAll(t, admin, 1), "the durable made")

	q, err := natsjs.New[int](ctx, connectAs(t, ns, "worker", &violations{}), natsjs.Options{Stream: "MADE", FetchWait: 50 * time.Millisecond})
	require.NoError(t, err)
	require.NoError(t, q.Publish(ctx, kanban.Message[int]{ID: "slow"}))
	attempts := make(chan int, 10)
	cctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- q.Consume(cctx, func(_ context.Context, d kanban.Delivery[int]) error {
			attempts <- d.Attempt
			time.Sleep(time.Second) // more than three of the durable's AckWaits
			return nil
		}, kanban.ConsumeOptions{WIP: 2})
	}()
	drained(t, q)
	cancel()
	require.NoError(t, <-done)
	close(attempts)
	var got []int
	for a := range attempts {
		got = append(got, a)
	}
	assert.Equal(t, []int{1}, got, "delivered again while handled")
}
