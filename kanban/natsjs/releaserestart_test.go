package natsjs_test

import (
	"context"
	"errors"
	"log/slog"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/kanban"
	"github.com/taipattern/taikit/kanban/natsembed"
	"github.com/taipattern/taikit/kanban/natsjs"
)

// TestReleaseOutlivesARestart: the messages a stopping consumer hands
// back are delivered again at once by the server started next on the same
// store, in their order, not once their lease has run out. A plain
// negative acknowledgement was kept in the server's memory only: the
// server stopped right after it (a service shutting down with its
// embedded server) delivered them again a whole AckWait after they were
// pulled.
func TestReleaseOutlivesARestart(t *testing.T) {
	const (
		n       = 5
		ackWait = time.Minute
	)
	dir := t.TempDir()
	ctx := context.Background()
	opts := natsjs.Options{Stream: "RELEASED", AckWait: ackWait, FetchWait: 100 * time.Millisecond}

	srv, err := natsembed.Start(ctx, natsembed.Options{StoreDir: dir, InProcess: true})
	require.NoError(t, err)
	q, err := natsjs.New[int](ctx, connect(t, srv.Connect), opts)
	require.NoError(t, err)
	for i := range n {
		require.NoError(t, q.Publish(ctx, kanban.Message[int]{ID: "m" + strconv.Itoa(i), Key: "k", Payload: i}))
	}
	// m0 fails and waits an hour for its retry; m1 to m4, pulled behind
	// it, are handed back as the consumer stops.
	handBackBehindAFailure(t, q, n)
	require.NoError(t, q.Shutdown(ctx))
	require.NoError(t, srv.Shutdown(ctx))
	stopped := time.Now()

	srv = startServer(t, natsembed.Options{StoreDir: dir, InProcess: true})
	q, err = natsjs.New[int](ctx, connect(t, srv.Connect), opts)
	require.NoError(t, err)
	got := make(chan string, n)
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- q.Consume(cctx, func(_ context.Context, d kanban.Delivery[int]) error {
			got <- d.ID
			return nil
		}, kanban.ConsumeOptions{WIP: 1})
	}()
	var order []string
	for len(order) < n-1 {
		select {
		case id := <-got:
			order = append(order, id)
		case <-time.After(ackWait / 2):
			t.Fatalf("%v handed back, and delivered again only %v within %v of the restart", []string{"m1", "m2", "m3", "m4"}, order, ackWait/2)
		}
	}
	t.Logf("delivered again %v after the server stopped", time.Since(stopped).Round(time.Millisecond))
	assert.Equal(t, []string{"m1", "m2", "m3", "m4"}, order)
	cancel()
	require.NoError(t, <-done)
	require.NoError(t, q.Shutdown(ctx))
}

// TestReleasesUnansweredAreNotWaitedForEach: a consumer whose releases go
// unanswered (here a connection not permitted to acknowledge) waits for
// the first one's answer until PublishTimeout, and sends the others
// without waiting: a drain handing back many messages does not wait
// PublishTimeout for each in turn.
func TestReleasesUnansweredAreNotWaitedForEach(t *testing.T) {
	const n = 10
	ns := startUsersServer(t, user("noack", "UNANSWERED", "UNANSWERED.keeper", "UNANSWERED_DLQ", "$JS.API.>"))
	ctx := context.Background()
	nc := connect(t, func(opts ...nats.Option) (*nats.Conn, error) {
		return nats.Connect("", append(opts, nats.InProcessServer(ns), nats.UserInfo("noack", "noack"))...)
	}, nats.ErrorHandler((&violations{}).handler))
	q, err := natsjs.New[int](ctx, nc, natsjs.Options{Stream: "UNANSWERED", FetchWait: 100 * time.Millisecond, PublishTimeout: 300 * time.Millisecond})
	require.NoError(t, err)
	for i := range n {
		require.NoError(t, q.Publish(ctx, kanban.Message[int]{ID: "m" + strconv.Itoa(i), Key: "k", Payload: i}))
	}
	// m0 runs until the drain deadline; the others wait behind it, and
	// are handed back after it.
	started := make(chan struct{})
	var log recordLog
	cctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- q.Consume(cctx, func(hctx context.Context, d kanban.Delivery[int]) error {
			close(started)
			<-hctx.Done()
			return hctx.Err()
		}, kanban.ConsumeOptions{WIP: n, PerKey: true, DrainTimeout: 10 * time.Millisecond, Logger: slog.New(&log)})
	}()
	<-started
	require.Eventually(t, func() bool { return q.Stats().InFlight == n }, 10*time.Second, time.Millisecond)
	cancel()
	require.ErrorIs(t, <-done, kanban.ErrDrainTimeout)
	failed := log.errsOf("kanban: settling a message failed")
	require.Len(t, failed, 1, "the first release unanswered, the others not waited for: %q", failed)
	assert.Contains(t, failed[0], "natsjs: releasing m0: ")
	assert.Contains(t, failed[0], context.DeadlineExceeded.Error())
	require.NoError(t, q.Shutdown(ctx))
}

// TestSettledDuringTheDrainOutlivesARestart: a message its handler
// settles while the consumer drains — acknowledged, or failed and retried
// after a short back-off — is settled for the server started next on the
// same store, however soon the server stops after Consume returns. The
// settlement was sent without waiting for the server, which had not
// taken it when it stopped (a service shutting down with its embedded
// server): the message acknowledged was handled again after the restart,
// and the one retried came again only once its lease ran out.
func TestSettledDuringTheDrainOutlivesARestart(t *testing.T) {
	const ackWait = time.Minute
	for _, tc := range []struct {
		name string
		err  error // the handler's
		// depth is the work stream's after the restart.
		depth int64
	}{
		{name: "acknowledged", err: nil, depth: 0},
		{name: "retried", err: errors.New("failing"), depth: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for round := range 3 {
				dir := t.TempDir()
				ctx := context.Background()
				opts := natsjs.Options{Stream: "DRAINED", AckWait: ackWait, FetchWait: 100 * time.Millisecond}
				srv, err := natsembed.Start(ctx, natsembed.Options{StoreDir: dir, InProcess: true})
				require.NoError(t, err)
				q, err := natsjs.New[int](ctx, connect(t, srv.Connect), opts)
				require.NoError(t, err)
				require.NoError(t, q.Publish(ctx, kanban.Message[int]{ID: "m0", Payload: 0}))
				// The handler returns once the consumer is stopping, its
				// WIP taken: no pull request is open as it drains. The
				// consumer stops once the handler has started: stopped
				// once the message was only pulled (in flight), it handed
				// the message back unhandled.
				cctx, cancel := context.WithCancel(ctx)
				started := make(chan struct{}, 1)
				done := make(chan error, 1)
				go func() {
					done <- q.Consume(cctx, func(context.Context, kanban.Delivery[int]) error {
						select {
						case started <- struct{}{}:
						default:
						}
						<-cctx.Done()
						return tc.err
					}, kanban.ConsumeOptions{WIP: 1, Backoff: kanban.BackoffFunc(func(int) time.Duration { return time.Millisecond })})
				}()
				select {
				case <-started:
				case <-time.After(10 * time.Second):
					t.Fatalf("round %d: the message not handled", round)
				}
				cancel()
				require.NoError(t, <-done)
				require.NoError(t, q.Shutdown(ctx))
				require.NoError(t, srv.Shutdown(ctx))

				srv = startServer(t, natsembed.Options{StoreDir: dir, InProcess: true})
				q, err = natsjs.New[int](ctx, connect(t, srv.Connect), opts)
				require.NoError(t, err)
				b, err := q.Backlog(ctx)
				require.NoError(t, err)
				require.Equal(t, tc.depth, b.Depth, "round %d: messages in the work stream after the restart", round)
				if tc.depth == 0 {
					continue
				}
				got := make(chan int, 1)
				cctx, cancel = context.WithCancel(ctx)
				done = make(chan error, 1)
				go func() {
					done <- q.Consume(cctx, func(_ context.Context, d kanban.Delivery[int]) error {
						got <- d.Attempt
						return nil
					}, kanban.ConsumeOptions{WIP: 1})
				}()
				select {
				case attempt := <-got:
					assert.Equal(t, 2, attempt, "round %d", round)
				case <-time.After(ackWait / 2):
					t.Fatalf("round %d: the message retried after 1ms not delivered again within %v of the restart", round, ackWait/2)
				}
				cancel()
				require.NoError(t, <-done)
				require.NoError(t, q.Shutdown(ctx))
			}
		})
	}
}
