package natsjs_test

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/kanban"
	"github.com/taipattern/taikit/kanban/natsembed"
	"github.com/taipattern/taikit/kanban/natsjs"
)

// recordLog keeps the message of every record logged to it, and the
// value of its "err" attribute, if any.
type recordLog struct {
	mu   sync.Mutex
	msgs []string
	errs []string // by record; "" for one without err
}

func (l *recordLog) Enabled(context.Context, slog.Level) bool { return true }
func (l *recordLog) Handle(_ context.Context, r slog.Record) error {
	e := ""
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "err" {
			e = a.Value.String()
		}
		return true
	})
	l.mu.Lock()
	defer l.mu.Unlock()
	l.msgs = append(l.msgs, r.Message)
	l.errs = append(l.errs, e)
	return nil
}
func (l *recordLog) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *recordLog) WithGroup(string) slog.Handler      { return l }

func (l *recordLog) messages() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.msgs...)
}

// errsOf returns the err attributes of the records whose message is msg.
func (l *recordLog) errsOf(msg string) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for i, m := range l.msgs {
		if m == msg {
			out = append(out, l.errs[i])
		}
	}
	return out
}

// TestConsumeReturnsWhenTheConnectionCloses closes the connection under a
// running consumer: a closed connection never comes back, so Consume
// returns its error instead of pulling again, and again, until its ctx
// ends.
func TestConsumeReturnsWhenTheConnectionCloses(t *testing.T) {
	srv := startServer(t, natsembed.Options{InProcess: true})
	nc := connect(t, srv.Connect)
	logs := &recordLog{}
	logger := slog.New(logs)
	q, err := natsjs.New[int](context.Background(), nc, natsjs.Options{
		Stream: "CLOSES", FetchWait: 100 * time.Millisecond, Logger: logger,
	})
	require.NoError(t, err)
	require.NoError(t, q.Publish(context.Background(), kanban.Message[int]{ID: "a", Payload: 1}))

	// The deadline only keeps a failing run from hanging.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	handled := make(chan string, 1)
	consumed := make(chan error, 1)
	go func() {
		consumed <- q.Consume(ctx, func(_ context.Context, d kanban.Delivery[int]) error {
			handled <- d.ID
			return nil
		}, kanban.ConsumeOptions{WIP: 4, Logger: logger})
	}()
	select {
	case id := <-handled:
		require.Equal(t, "a", id)
	case err := <-consumed:
		t.Fatalf("Consume returned before handling anything: %v", err)
	}
	nc.Close()
	err = <-consumed
	require.Error(t, err)
	require.NoError(t, ctx.Err(), "Consume returned only when its ctx ended: %v", err)
	assert.ErrorIs(t, err, nats.ErrConnectionClosed)
	assert.LessOrEqual(t, len(logs.messages()), 1, "logged: %q", logs.messages())
}

// TestConsumeReturnsWhenReconnectingGivesUp: a connection that has spent
// its MaxReconnects is closed by nats.go; Consume returns then, as after
// nc.Close.
func TestConsumeReturnsWhenReconnectingGivesUp(t *testing.T) {
	srv := startServer(t, natsembed.Options{})
	nc := connect(t, srv.Connect, nats.MaxReconnects(1), nats.ReconnectWait(10*time.Millisecond))
	q, err := natsjs.New[int](context.Background(), nc, natsjs.Options{Stream: "GIVESUP", FetchWait: 100 * time.Millisecond})
	require.NoError(t, err)
	require.NoError(t, q.Publish(context.Background(), kanban.Message[int]{ID: "a", Payload: 1}))

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	handled := make(chan struct{}, 1)
	consumed := make(chan error, 1)
	go func() {
		consumed <- q.Consume(ctx, func(context.Context, kanban.Delivery[int]) error {
			handled <- struct{}{}
			return nil
		}, kanban.ConsumeOptions{WIP: 1})
	}()
	<-handled
	require.NoError(t, srv.Shutdown(context.Background()))
	err = <-consumed
	require.NoError(t, ctx.Err(), "Consume returned only when its ctx ended: %v", err)
	assert.True(t, nc.IsClosed())
	assert.ErrorIs(t, err, nats.ErrConnectionClosed)
}

// TestConsumeFinishesHandlersWhenTheConnectionCloses: a handler running as
// the connection closes finishes before Consume returns the connection's
// error, as on any other stop.
func TestConsumeFinishesHandlersWhenTheConnectionCloses(t *testing.T) {
	srv := startServer(t, natsembed.Options{InProcess: true})
	nc := connect(t, srv.Connect)
	q, err := natsjs.New[int](context.Background(), nc, natsjs.Options{Stream: "CLOSESRUNNING", FetchWait: 100 * time.Millisecond})
	require.NoError(t, err)
	require.NoError(t, q.Publish(context.Background(), kanban.Message[int]{ID: "a", Payload: 1}))

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var finished bool
	consumed := make(chan error, 1)
	go func() {
		consumed <- q.Consume(ctx, func(context.Context, kanban.Delivery[int]) error {
			nc.Close()
			finished = true // read after Consume returns: the drain waits for it
			return nil
		}, kanban.ConsumeOptions{WIP: 1})
	}()
	err = <-consumed
	require.NoError(t, ctx.Err(), "Consume returned only when its ctx ended: %v", err)
	assert.ErrorIs(t, err, nats.ErrConnectionClosed)
	assert.True(t, finished, "Consume returned before its handler did")
}

// TestPublishOnAClosedConnection: Publish, TryPublish and PublishAsync fail
// at once on a closed connection, without waiting for their ctx, with an
// error matching nats.ErrConnectionClosed; so does Consume.
func TestPublishOnAClosedConnection(t *testing.T) {
	srv := startServer(t, natsembed.Options{InProcess: true})
	nc := connect(t, srv.Connect)
	q, err := natsjs.New[int](context.Background(), nc, natsjs.Options{Stream: "PUBCLOSED"})
	require.NoError(t, err)
	nc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for name, publish := range map[string]func(context.Context, kanban.Message[int]) error{
		"Publish": q.Publish, "TryPublish": q.TryPublish, "PublishAsync": q.PublishAsync,
	} {
		err := publish(ctx, kanban.Message[int]{ID: "a", Payload: 1})
		require.NoError(t, ctx.Err(), name)
		assert.ErrorIs(t, err, nats.ErrConnectionClosed, name)
		assert.False(t, errors.Is(err, context.DeadlineExceeded), name)
	}
	err = q.Consume(ctx, func(context.Context, kanban.Delivery[int]) error { return nil }, kanban.ConsumeOptions{})
	require.NoError(t, ctx.Err())
	assert.ErrorIs(t, err, nats.ErrConnectionClosed)
}

// TestConsumeOnAClosedConnectionIsPermanent: Consume started on a closed
// connection returns at once an error marked kanban.Permanent, as one
// whose connection closes while it runs does: a supervisor that starts
// Consume again on any other error would otherwise start it again and
// again, though a closed connection never comes back.
func TestConsumeOnAClosedConnectionIsPermanent(t *testing.T) {
	srv := startServer(t, natsembed.Options{InProcess: true})
	nc := connect(t, srv.Connect)
	q, err := natsjs.New[int](context.Background(), nc, natsjs.Options{Stream: "CONSUMECLOSED"})
	require.NoError(t, err)
	nc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err = q.Consume(ctx, func(context.Context, kanban.Delivery[int]) error { return nil }, kanban.ConsumeOptions{})
	require.NoError(t, ctx.Err())
	assert.ErrorIs(t, err, nats.ErrConnectionClosed)
	assert.True(t, kanban.IsPermanent(err), "not marked Permanent: %v", err)
}

// TestUnacknowledgedMessageComesBackAfterAckWait: a message whose
// consumer is gone before it acknowledges it (its process killed, its
// connection closed while the handler runs) stays in the stream and is
// delivered again, to a consumer of another connection, once its lease
// has run out (AckWait), under its next attempt. A handler's success is
// not the message's: it is settled only by the acknowledgement that
// reaches the server.
func TestUnacknowledgedMessageComesBackAfterAckWait(t *testing.T) {
	srv := startServer(t, natsembed.Options{InProcess: true})
	opts := natsjs.Options{Stream: "UNACKED", AckWait: 500 * time.Millisecond, FetchWait: 100 * time.Millisecond}
	dying := connect(t, srv.Connect)
	q, err := natsjs.New[int](context.Background(), dying, opts)
	require.NoError(t, err)
	require.NoError(t, q.Publish(context.Background(), kanban.Message[int]{ID: "a", Payload: 1}))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err = q.Consume(ctx, func(context.Context, kanban.Delivery[int]) error {
		dying.Close() // as the process dies, before the acknowledgement
		return nil
	}, kanban.ConsumeOptions{})
	require.ErrorIs(t, err, nats.ErrConnectionClosed)

	other, err := natsjs.New[int](context.Background(), connect(t, srv.Connect), opts)
	require.NoError(t, err)
	got := make(chan kanban.Delivery[int], 1)
	cctx, stop := context.WithCancel(ctx)
	defer stop()
	require.NoError(t, other.Consume(cctx, func(_ context.Context, d kanban.Delivery[int]) error {
		got <- d
		stop()
		return nil
	}, kanban.ConsumeOptions{}))
	select {
	case d := <-got:
		assert.Equal(t, "a", d.ID)
		assert.Equal(t, 2, d.Attempt)
	default:
		t.Fatal("the message did not come back") // ctx's deadline ended the consumer
	}
}
