package natsjs_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/kanban"
	"github.com/taipattern/taikit/kanban/natsjs"
)

// opsPerms are the publish permissions of an operator of the queue OPS:
// New's stream requests, the work, keeper and dead-letter subjects, and
// the reads and deletes of messages that Backlog and the dead-letter
// calls make.
var opsPerms = []string{"OPS", "OPS.keeper", "OPS_DLQ",
	"$JS.API.STREAM.CREATE.>", "$JS.API.STREAM.UPDATE.>", "$JS.API.STREAM.INFO.>",
	"$JS.API.STREAM.MSG.GET.>", "$JS.API.STREAM.MSG.DELETE.>", "$JS.API.CONSUMER.>", "$JS.ACK.>"}

// without returns perms less drop.
func without(perms []string, drop string) []string {
	return slices.DeleteFunc(slices.Clone(perms), func(p string) bool { return p == drop })
}

// TestOperatorCallsNotPermitted: Backlog, DeadLetters, ListDeadLetters,
// RedriveDeadLetters and DeleteDeadLetters on a connection not permitted
// to publish to a subject they need — the streams' info, the reads or
// deletes of their messages, the work subject a redrive publishes to —
// return the server's refusal at once, naming the subject, instead of
// waiting out the request's timeout (5 s, or the whole deadline of ctx)
// and failing with a bare timeout.
func TestOperatorCallsNotPermitted(t *testing.T) {
	calls := map[string]func(context.Context, *natsjs.Queue[int]) error{
		"Backlog": func(ctx context.Context, q *natsjs.Queue[int]) error {
			_, err := q.Backlog(ctx)
			return err
		},
		"DeadLetters": func(ctx context.Context, q *natsjs.Queue[int]) error {
			_, err := q.DeadLetters(ctx)
			return err
		},
		"ListDeadLetters": func(ctx context.Context, q *natsjs.Queue[int]) error {
			_, err := q.ListDeadLetters(ctx, kanban.DeadLetterQuery{})
			return err
		},
		"ListDeadLetters Seq": func(ctx context.Context, q *natsjs.Queue[int]) error {
			_, err := q.ListDeadLetters(ctx, kanban.DeadLetterQuery{Filter: kanban.DeadLetterFilter{Seq: 1}})
			return err
		},
		"RedriveDeadLetters": func(ctx context.Context, q *natsjs.Queue[int]) error {
			_, err := q.RedriveDeadLetters(ctx, kanban.DeadLetterFilter{All: true})
			return err
		},
		"RedriveDeadLetters Seq": func(ctx context.Context, q *natsjs.Queue[int]) error {
			_, err := q.RedriveDeadLetters(ctx, kanban.DeadLetterFilter{Seq: 1})
			return err
		},
		"DeleteDeadLetters": func(ctx context.Context, q *natsjs.Queue[int]) error {
			_, err := q.DeleteDeadLetters(ctx, kanban.DeadLetterFilter{All: true})
			return err
		},
		"DeleteDeadLetters Seq": func(ctx context.Context, q *natsjs.Queue[int]) error {
			_, err := q.DeleteDeadLetters(ctx, kanban.DeadLetterFilter{Seq: 1})
			return err
		},
	}
	for _, c := range []struct {
		name, drop, subject string
		calls               []string
	}{
		{"no stream info", "$JS.API.STREAM.INFO.>", "$JS.API.STREAM.INFO.OPS",
			[]string{"Backlog"}},
		{"no dead-letter stream info", "$JS.API.STREAM.INFO.>", "$JS.API.STREAM.INFO.OPS_DLQ",
			[]string{"DeadLetters", "ListDeadLetters", "ListDeadLetters Seq", "RedriveDeadLetters", "RedriveDeadLetters Seq", "DeleteDeadLetters", "DeleteDeadLetters Seq"}},
		{"no reads", "$JS.API.STREAM.MSG.GET.>", "$JS.API.STREAM.MSG.GET.OPS",
			[]string{"Backlog"}},
		{"no dead-letter reads", "$JS.API.STREAM.MSG.GET.>", "$JS.API.STREAM.MSG.GET.OPS_DLQ",
			[]string{"DeadLetters", "ListDeadLetters", "ListDeadLetters Seq", "RedriveDeadLetters", "RedriveDeadLetters Seq", "DeleteDeadLetters", "DeleteDeadLetters Seq"}},
		{"no deletes", "$JS.API.STREAM.MSG.DELETE.>", "$JS.API.STREAM.MSG.DELETE.OPS_DLQ",
			[]string{"RedriveDeadLetters", "RedriveDeadLetters Seq", "DeleteDeadLetters", "DeleteDeadLetters Seq"}},
		{"no work subject", "OPS", "OPS",
			[]string{"RedriveDeadLetters", "RedriveDeadLetters Seq"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			ns := startUsersServer(t, user("admin"), user("ops", without(opsPerms, c.drop)...))
			ctx := context.Background()
			admin, err := natsjs.New[int](ctx, connectAs(t, ns, "admin", &violations{}), natsjs.Options{Stream: "OPS"})
			require.NoError(t, err)
			require.NoError(t, admin.Publish(ctx, kanban.Message[int]{ID: "waiting"}))
			_, err = admin.JetStream().PublishMsg(ctx, &nats.Msg{Subject: "OPS_DLQ", Data: []byte("1"), Header: nats.Header{
				natsjs.HeaderID: {"d.dead.1.1"}, natsjs.HeaderMessageID: {"d"}, natsjs.HeaderReason: {"refused"}, natsjs.HeaderAttempts: {"1"},
			}})
			require.NoError(t, err)
			q, err := natsjs.New[int](ctx, connectAs(t, ns, "ops", &violations{}), natsjs.Options{Stream: "OPS"})
			require.NoError(t, err)
			for _, name := range c.calls {
				// A ctx without a deadline: a request not answered waits
				// out 5 s and fails with a timeout.
				err := calls[name](ctx, q)
				require.Error(t, err, name)
				assert.ErrorIs(t, err, nats.ErrPermissionViolation, name)
				assert.Contains(t, err.Error(), `"`+c.subject+`"`, name)
			}
			// What the operator may do works as before.
			dls, err := admin.DeadLetters(ctx)
			require.NoError(t, err)
			require.Len(t, dls, 1, "the dead letter kept")
		})
	}
}

// TestOperatorCallsPermitted: the calls a connection is permitted to make
// work as before, every one of them, with their probes.
func TestOperatorCallsPermitted(t *testing.T) {
	ns := startUsersServer(t, user("ops", opsPerms...))
	ctx := context.Background()
	var v violations
	q, err := natsjs.New[int](ctx, connectAs(t, ns, "ops", &v), natsjs.Options{Stream: "OPS"})
	require.NoError(t, err)
	require.NoError(t, q.Publish(ctx, kanban.Message[int]{ID: "waiting"}))
	for _, id := range []string{"d1", "d2", "d3"} {
		_, err = q.JetStream().PublishMsg(ctx, &nats.Msg{Subject: "OPS_DLQ", Data: []byte("1"), Header: nats.Header{
			natsjs.HeaderID: {id + ".dead.1.1"}, natsjs.HeaderMessageID: {id}, natsjs.HeaderReason: {"refused"}, natsjs.HeaderAttempts: {"1"},
		}})
		require.NoError(t, err)
	}
	b, err := q.Backlog(ctx)
	require.NoError(t, err)
	assert.Equal(t, kanban.Backlog{Depth: 1, DeadLetters: 3, OldestKnown: true, Oldest: b.Oldest}, b)
	dls, err := q.DeadLetters(ctx)
	require.NoError(t, err)
	require.Len(t, dls, 3)
	page, err := q.ListDeadLetters(ctx, kanban.DeadLetterQuery{Newest: true})
	require.NoError(t, err)
	assert.Len(t, page.Letters, 3)
	n, err := q.RedriveDeadLetters(ctx, kanban.DeadLetterFilter{ID: "d1"})
	require.NoError(t, err)
	assert.Equal(t, 1, n)
	n, err = q.RedriveDeadLetters(ctx, kanban.DeadLetterFilter{Seq: dls[1].Seq})
	require.NoError(t, err)
	assert.Equal(t, 1, n)
	n, err = q.DeleteDeadLetters(ctx, kanban.DeadLetterFilter{All: true})
	require.NoError(t, err)
	assert.Equal(t, 1, n)
	b, err = q.Backlog(ctx)
	require.NoError(t, err)
	assert.Equal(t, int64(3), b.Depth)
	assert.Zero(t, b.DeadLetters)
	assert.Equal(t, int64(2), q.Stats().Redriven)
	assert.Empty(t, v.all(), "no request refused")
}

// TestConsumeNotPermittedToAcknowledge: Consume by a user who may pull
// but not acknowledge ($JS.ACK.>) — an acknowledgement, a retry's
// negative one, or the termination of a message dead-lettered — returns
// the server's refusal, marked kanban.Permanent and naming the subject,
// instead of running on until ctx ends while every message it handles
// stays unacknowledged, to be delivered and handled again after AckWait,
// without end and without a word.
func TestConsumeNotPermittedToAcknowledge(t *testing.T) {
	for name, handler := range map[string]kanban.Handler[int]{
		"ack":         func(context.Context, kanban.Delivery[int]) error { return nil },
		"retry":       func(context.Context, kanban.Delivery[int]) error { return errors.New("again") },
		"dead letter": func(context.Context, kanban.Delivery[int]) error { return kanban.Permanent(errors.New("no")) },
	} {
		t.Run(name, func(t *testing.T) {
			ns := startUsersServer(t, user("noack", "NOACK", "NOACK.keeper", "NOACK_DLQ", "$JS.API.>"))
			ctx := context.Background()
			var v violations
			q, err := natsjs.New[int](ctx, connectAs(t, ns, "noack", &v), natsjs.Options{Stream: "NOACK", FetchWait: 100 * time.Millisecond})
			require.NoError(t, err)
			require.NoError(t, q.Publish(ctx, kanban.Message[int]{ID: "a"}))
			cctx, cancel := context.WithTimeout(ctx, 20*time.Second)
			defer cancel()
			err = q.Consume(cctx, handler, kanban.ConsumeOptions{Backoff: kanban.BackoffFunc(func(int) time.Duration { return time.Millisecond })})
			require.Error(t, err, "Consume ended only with ctx")
			assert.ErrorIs(t, err, nats.ErrPermissionViolation)
			assert.True(t, kanban.IsPermanent(err))
			assert.Contains(t, err.Error(), `"$JS.ACK.`)
			assert.Contains(t, err.Error(), ".NOACK.NOACK_WORKERS.")
			assert.NoError(t, cctx.Err())
		})
	}
}

// TestConsumeRevivesWithoutConsumerInfo: a durable deleted while a user
// who may create it and pull, but not read its info
// ($JS.API.CONSUMER.INFO), consumes is created again, and what is
// published after is handled. Before, Consume asked for the durable's
// info before each pull to see whether it was gone, waited out each
// refused request's 5 s, and pulled no more until its ctx ended.
func TestConsumeRevivesWithoutConsumerInfo(t *testing.T) {
	ns := startUsersServer(t, user("admin"), user("noinfo", "REVIVE", "REVIVE.keeper", "REVIVE_DLQ",
		"$JS.API.STREAM.>", "$JS.API.CONSUMER.CREATE.>", "$JS.API.CONSUMER.MSG.NEXT.>", "$JS.ACK.>"))
	ctx := context.Background()
	// A pull request the client gave up on (nats.go waits FetchWait and
	// a second) may still be answered by a server slowed down under
	// load: the message comes again after AckWait, here well within
	// next's 10 s.
	opts := natsjs.Options{Stream: "REVIVE", FetchWait: 50 * time.Millisecond, AckWait: time.Second}
	admin, err := natsjs.New[int](ctx, connectAs(t, ns, "admin", &violations{}), opts)
	require.NoError(t, err)
	q, err := natsjs.New[int](ctx, connectAs(t, ns, "noinfo", &violations{}), opts)
	require.NoError(t, err)
	require.NoError(t, q.Publish(ctx, kanban.Message[int]{ID: "before"}))
	handled, stop := runConsumer(t, q, kanban.ConsumeOptions{})
	defer stop()
	assert.Equal(t, "before", next(t, handled))
	drained(t, admin) // acknowledged: not delivered again by the new durable
	require.NoError(t, admin.JetStream().DeleteConsumer(ctx, "REVIVE", "REVIVE_WORKERS"))
	require.NoError(t, q.Publish(ctx, kanban.Message[int]{ID: "after"}))
	assert.Equal(t, "after", next(t, handled), "handled once the durable is made again")
}
