package natsjs_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/kanban"
	"github.com/taipattern/taikit/kanban/natsembed"
	"github.com/taipattern/taikit/kanban/natsjs"
)

func TestUnreachable(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{nil, false},
		{errors.New("bad config"), false},
		{nats.ErrTimeout, true},
		{context.DeadlineExceeded, true},
		{fmt.Errorf("bucket: %w", context.DeadlineExceeded), true},
		{context.Canceled, false},
		{nats.ErrNoResponders, true},
		{nats.ErrConnectionReconnecting, true},
		// A request, or a PublishAsync acknowledgement, cut off by a
		// disconnect (a reconnect forced, a server restarting).
		{nats.ErrDisconnected, true},
		{fmt.Errorf("natsjs: publishing message a: 10 attempts failed: %w", nats.ErrDisconnected), true},
		{jetstream.ErrNoStreamResponse, true},
		{&jetstream.APIError{Code: 503, ErrorCode: 10008, Description: "JetStream system temporarily unavailable"}, true},
		{jetstream.ErrJetStreamNotEnabled, false},
		{fmt.Errorf("x: %w", jetstream.ErrJetStreamNotEnabledForAccount), false},
		{&jetstream.APIError{Code: 400, ErrorCode: 10058, Description: "stream name already in use"}, false},
		{jetstream.ErrStreamNotFound, false},
		// As a cluster answers while it has not heard from every server yet.
		{fmt.Errorf("stream PAYMENTS: %w", &jetstream.APIError{Code: 400, ErrorCode: 10005,
			Description: "no suitable peers for placement, peer offline"}), true},
		// As a restarted cluster answers while one of its servers is not back.
		{&jetstream.APIError{Code: 400, ErrorCode: 10005, Description: "no suitable peers for placement, miscellaneous issue"}, true},
		{&jetstream.APIError{Code: 400, ErrorCode: 10005, Description: "no suitable peers for placement, insufficient storage"}, false},
		{&jetstream.APIError{Code: 400, ErrorCode: 10005, Description: "no suitable peers for placement"}, false},
		{&jetstream.APIError{Code: 400, ErrorCode: 10005, Description: "no suitable peers for placement, tags not matched ['az:1']"}, false},
	} {
		assert.Equal(t, tc.want, natsjs.Unreachable(tc.err), "%v", tc.err)
	}
}

// TestConsumeWaitsForJetStream starts a consumer while its server is
// down: creating the durable fails until the server is back, and is tried
// again until then, so the consumer takes the message published before.
func TestConsumeWaitsForJetStream(t *testing.T) {
	dir := t.TempDir()
	srv, err := natsembed.Start(context.Background(), natsembed.Options{StoreDir: dir, Token: restartToken})
	require.NoError(t, err)
	port := srv.Port()
	var srvMu sync.Mutex
	defer func() {
		srvMu.Lock()
		defer srvMu.Unlock()
		assert.NoError(t, srv.Shutdown(context.Background()))
	}()
	down := make(chan struct{}, 1)
	nc := connect(t, func(opts ...nats.Option) (*nats.Conn, error) {
		return nats.Connect(srv.ClientURL(), append(opts, nats.MaxReconnects(-1), nats.ReconnectWait(20*time.Millisecond))...)
	}, nats.DisconnectErrHandler(func(*nats.Conn, error) {
		select {
		case down <- struct{}{}:
		default:
		}
	}))
	retried := newMsgLog("natsjs: consumer not created yet; retrying")
	q, err := natsjs.New[int](context.Background(), nc, natsjs.Options{
		Stream: "WAITS", FetchWait: 200 * time.Millisecond, Logger: retried.logger(),
	})
	require.NoError(t, err)
	require.NoError(t, q.Publish(context.Background(), kanban.Message[int]{ID: "before", Payload: 1}))

	require.NoError(t, srv.Shutdown(context.Background()))
	select {
	case <-down:
	case <-time.After(30 * time.Second):
		t.Fatal("the client did not see the server go")
	}
	ctx, cancel := context.WithCancel(context.Background())
	got := make(chan string, 1)
	consumed := make(chan error, 1)
	go func() {
		consumed <- q.Consume(ctx, func(_ context.Context, d kanban.Delivery[int]) error {
			got <- d.ID
			return nil
		}, kanban.ConsumeOptions{WIP: 1})
	}()
	waitRetrying(t, retried, consumed)
	srvMu.Lock()
	srv, err = natsembed.Start(context.Background(), natsembed.Options{StoreDir: dir, Port: port, Token: restartToken})
	srvMu.Unlock()
	require.NoError(t, err)
	select {
	case id := <-got:
		assert.Equal(t, "before", id)
	case err := <-consumed:
		t.Fatalf("Consume returned: %v", err)
	case <-time.After(time.Minute):
		t.Fatal("the message was not consumed after the server came back")
	}
	cancel()
	require.NoError(t, <-consumed)
}

// TestConsumeStopsWhileWaiting: a consumer whose ctx ends while it waits
// for JetStream returns nil, as one that stops after pulling does.
func TestConsumeStopsWhileWaiting(t *testing.T) {
	retried := newMsgLog("natsjs: consumer not created yet; retrying")
	q := downQueue(t, natsjs.Options{Stream: "STOPS", Logger: retried.logger()})
	ctx, cancel := context.WithCancel(context.Background())
	consumed := make(chan error, 1)
	go func() {
		consumed <- q.Consume(ctx, func(context.Context, kanban.Delivery[int]) error { return nil }, kanban.ConsumeOptions{})
	}()
	waitRetrying(t, retried, consumed)
	cancel()
	select {
	case err := <-consumed:
		assert.NoError(t, err)
	case <-time.After(30 * time.Second):
		t.Fatal("Consume did not return when its ctx ended")
	}
}

// waitRetrying waits until l logged a retry of the consumer's creation,
// failing the test if Consume returns first.
func waitRetrying(t *testing.T, l *msgLog, consumed <-chan error) {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for l.count() == 0 {
		select {
		case err := <-consumed:
			t.Fatalf("Consume returned while the server was down: %v", err)
		case <-deadline:
			t.Fatal("no retry of the consumer's creation logged in 30s")
		case <-time.After(10 * time.Millisecond):
		}
	}
}
