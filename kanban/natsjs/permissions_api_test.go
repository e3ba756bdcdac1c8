package natsjs_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
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

// makeDurable has the Consume of q, an administrator's queue, make the
// durable with a WIP of wip: it handles a message published for it, so
// the durable exists when it returns (a Consume ended before it pulled
// may not have made it).
func makeDurable(t *testing.T, q *natsjs.Queue[int], wip int) {
	t.Helper()
	require.NoError(t, q.Publish(context.Background(), kanban.Message[int]{ID: "made"}))
	require.Equal(t, []string{"made"}, handleAll(t, q, wip), "the durable made")
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
	makeDurable(t, admin, 4)

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
	// The worker extends its leases a third of the durable's AckWait
	// apart, and the two thirds left are what a loaded machine has to
	// get each extension to the server: a second here. An AckWait of
	// 300ms left 200ms, which a busy machine exceeded, and the message
	// came again while it was handled.
	admin, err := natsjs.New[int](ctx, connectAs(t, ns, "admin", &violations{}),
		natsjs.Options{Stream: "MADE", AckWait: 1500 * time.Millisecond, FetchWait: 50 * time.Millisecond})
	require.NoError(t, err)
	makeDurable(t, admin, 1)

	q, err := natsjs.New[int](ctx, connectAs(t, ns, "worker", &violations{}), natsjs.Options{Stream: "MADE", FetchWait: 50 * time.Millisecond})
	require.NoError(t, err)
	require.NoError(t, q.Publish(ctx, kanban.Message[int]{ID: "slow"}))
	// Handling for 3.5s is more than twice the durable's AckWait.
	assert.Equal(t, []int{1}, attemptsHandledFor(t, q, 3500*time.Millisecond), "delivered again while handled")
}

// attemptsHandledFor consumes q until it is drained, handling each
// delivery for d, and returns the attempt numbers of the deliveries.
func attemptsHandledFor(t *testing.T, q *natsjs.Queue[int], d time.Duration) []int {
	t.Helper()
	attempts := make(chan int, 10)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- q.Consume(ctx, func(_ context.Context, dl kanban.Delivery[int]) error {
			attempts <- dl.Attempt
			time.Sleep(d)
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
	return got
}

// TestWorkerEndsWhenTheDurableGoes: a durable deleted while a worker not
// permitted to create it consumes ends Consume with the refusal of its
// creation, marked kanban.Permanent and naming the subject, instead of
// taking each refused request's timeout for JetStream out of reach and
// trying again until ctx ends.
func TestWorkerEndsWhenTheDurableGoes(t *testing.T) {
	ns := startUsersServer(t, user("admin"), user("worker", workerPerms...))
	ctx := context.Background()
	opts := natsjs.Options{Stream: "MADE", FetchWait: 50 * time.Millisecond}
	admin, err := natsjs.New[int](ctx, connectAs(t, ns, "admin", &violations{}), opts)
	require.NoError(t, err)
	makeDurable(t, admin, 1)

	q, err := natsjs.New[int](ctx, connectAs(t, ns, "worker", &violations{}), opts)
	require.NoError(t, err)
	require.NoError(t, q.Publish(ctx, kanban.Message[int]{ID: "before"}))
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	handled := make(chan string, 10)
	done := make(chan error, 1)
	go func() {
		done <- q.Consume(cctx, func(_ context.Context, d kanban.Delivery[int]) error {
			handled <- d.ID
			return nil
		}, kanban.ConsumeOptions{})
	}()
	assert.Equal(t, "before", next(t, handled))
	require.NoError(t, admin.JetStream().DeleteConsumer(ctx, "MADE", "MADE_WORKERS"))
	err = <-done
	require.Error(t, err, "Consume ended only with ctx")
	assert.ErrorIs(t, err, nats.ErrPermissionViolation)
	assert.True(t, kanban.IsPermanent(err))
	assert.Contains(t, err.Error(), `"$JS.API.CONSUMER.CREATE.MADE.MADE_WORKERS.MADE"`)
	assert.NoError(t, cctx.Err())
}

// TestWorkerBoundToADurableOfTinyAckWait: a durable an administrator made
// with an AckWait of a few nanoseconds, less than three, does not make a
// worker bound to it panic as its Consume ends.
func TestWorkerBoundToADurableOfTinyAckWait(t *testing.T) {
	ns := startUsersServer(t, user("admin"), user("worker", workerPerms...))
	ctx := context.Background()
	admin := connectAs(t, ns, "admin", &violations{})
	_, err := natsjs.New[int](ctx, admin, natsjs.Options{Stream: "MADE"})
	require.NoError(t, err)
	js, err := jetstream.New(admin)
	require.NoError(t, err)
	_, err = js.CreateConsumer(ctx, "MADE", jetstream.ConsumerConfig{
		Durable: "MADE_WORKERS", AckPolicy: jetstream.AckExplicitPolicy, AckWait: 2, FilterSubject: "MADE",
	})
	require.NoError(t, err)
	q, err := natsjs.New[int](ctx, connectAs(t, ns, "worker", &violations{}), natsjs.Options{Stream: "MADE", FetchWait: 50 * time.Millisecond})
	require.NoError(t, err)
	require.NoError(t, q.Publish(ctx, kanban.Message[int]{ID: "a"}))
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	assert.NoError(t, q.Consume(cctx, func(context.Context, kanban.Delivery[int]) error {
		cancel() // Consume ends with a pull request open
		return nil
	}, kanban.ConsumeOptions{}))
}

// TestWorkerBoundToStreamsOfFewerBytes: a worker not permitted to update
// streams an administrator made with a MaxBytes, its own Options setting
// none, refuses at once with ErrTooLarge a message that alone takes more
// than the work stream holds, or whose dead letter takes more than the
// dead-letter stream holds, as one with those limits does, instead of
// taking it for a full stream (Publish waited for room until its ctx
// ended, and TryPublish failed with kanban.ErrFull) or storing a message
// that could never be dead-lettered.
func TestWorkerBoundToStreamsOfFewerBytes(t *testing.T) {
	for name, admin := range map[string]natsjs.Options{
		"work":        {Stream: "MADE", MaxBytes: 4096, Codec: rawCodec{}},
		"dead letter": {Stream: "MADE", DeadLetterMaxBytes: 4096, Codec: rawCodec{}},
	} {
		t.Run(name, func(t *testing.T) {
			ns := startUsersServer(t, user("admin"), user("worker", workerPerms...))
			ctx := context.Background()
			_, err := natsjs.New[[]byte](ctx, connectAs(t, ns, "admin", &violations{}), admin)
			require.NoError(t, err)
			q, err := natsjs.New[[]byte](ctx, connectAs(t, ns, "worker", &violations{}), natsjs.Options{Stream: "MADE", Codec: rawCodec{}})
			require.NoError(t, err)
			huge := kanban.Message[[]byte]{ID: "huge", Payload: make([]byte, 5000)}
			for name, publish := range map[string]func(context.Context, kanban.Message[[]byte]) error{
				"Publish": q.Publish, "TryPublish": q.TryPublish,
			} {
				pctx, cancel := context.WithTimeout(ctx, 10*time.Second) // bounds a Publish that waits for room
				err := publish(pctx, huge)
				cancel()
				require.ErrorIs(t, err, natsjs.ErrTooLarge, name)
				assert.NotErrorIs(t, err, kanban.ErrFull, name)
			}
			// One that fits is stored.
			require.NoError(t, q.TryPublish(ctx, kanban.Message[[]byte]{ID: "a", Payload: make([]byte, 2000)}))
		})
	}
}
