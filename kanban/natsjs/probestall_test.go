package natsjs_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/kanban"
	"github.com/taipattern/taikit/kanban/natsembed"
	"github.com/taipattern/taikit/kanban/natsjs"
)

// stallProxy passes TCP connections on to a server; once stalled, what
// the server sends goes no further, while what the client sends still
// reaches the server: a connection the client takes for connected, on
// which no reply, pong or acknowledgement comes.
type stallProxy struct{ stalled atomic.Bool }

// startStallProxy starts a stallProxy to the server at rawURL and returns
// the URL to connect to it with. It stops when the test ends.
func startStallProxy(t *testing.T, rawURL string) (*stallProxy, string) {
	p := &stallProxy{}
	return p, startProxy(t, rawURL, nil, func([]byte) bool { return !p.stalled.Load() })
}

func (p *stallProxy) stall() { p.stalled.Store(true) }

// TestPublishAsyncProbeWaitsPublishTimeoutFromTheSend: a PublishAsync
// message sent to look for a refusal, on a connection that stalls (no
// pong, no acknowledgement comes), fails its attempt PublishTimeout
// after it was sent, as one sent through the client does. Its wait for
// the acknowledgement started only once the flush after it had given up,
// itself after PublishTimeout: the attempt lasted twice PublishTimeout,
// and attempts so lasting could outlast the DedupWindow that New checks
// AsyncAttempts against.
func TestPublishAsyncProbeWaitsPublishTimeoutFromTheSend(t *testing.T) {
	const timeout = 4 * time.Second // long enough that a loaded machine's delays stay far below it
	srv := startServer(t, natsembed.Options{})
	p, proxied := startStallProxy(t, srv.ClientURL())
	nc := connect(t, func(o ...nats.Option) (*nats.Conn, error) {
		return nats.Connect(proxied, append(o, nats.NoReconnect())...)
	})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	failed := make(chan time.Time, 1)
	q, err := natsjs.New[int](ctx, nc, natsjs.Options{
		Stream: "PROBE_STALL", Storage: natsjs.MemoryStorage, PublishTimeout: timeout, AsyncAttempts: 1,
		OnPublishError: func(string, error) { failed <- time.Now() },
	})
	require.NoError(t, err)

	p.stall()
	start := time.Now()
	require.NoError(t, q.PublishAsync(ctx, kanban.Message[int]{ID: "a", Payload: 1}))
	select {
	case at := <-failed:
		assert.Less(t, at.Sub(start), 2*timeout, "the attempt fails PublishTimeout after the send")
	case <-ctx.Done():
		t.Fatal("the attempt did not fail")
	}
	require.Error(t, q.Flush(ctx))
	require.NoError(t, q.Shutdown(ctx))
}
