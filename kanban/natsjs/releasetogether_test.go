package natsjs_test

import (
	"bytes"
	"context"
	"log/slog"
	"strconv"
	"sync"
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

// holdProxy passes TCP connections on to a server. From the first
// release a client sends (negative acknowledgements, "-NAK") until it
// has sent want of them, nothing the server sends reaches the client: no
// answer to a release comes before want are sent.
type holdProxy struct {
	want  int
	armed atomic.Bool // a release was sent
	naks  atomic.Int64
	open  chan struct{} // closed once want releases are sent, or by free
	once  sync.Once
}

// startHoldProxy starts a holdProxy to the server at rawURL that holds
// back what the server sends until want releases are sent, and returns
// the URL to connect to it with. It stops when the test ends.
func startHoldProxy(t *testing.T, rawURL string, want int) (*holdProxy, string) {
	p := &holdProxy{want: want, open: make(chan struct{})}
	proxied := startProxy(t, rawURL, p.count, func(b []byte) bool { p.hold(b); return true })
	t.Cleanup(p.free) // before the proxy stops: a held copy would keep it
	return p, proxied
}

// count counts the releases in b, what the client sends, before the
// server gets them: a release is a negative acknowledgement with a delay,
// then a plain one, and the first is counted. One split between two
// chunks is not counted: the client writes each release whole, most
// often several in one chunk.
func (p *holdProxy) count(b []byte) {
	n := bytes.Count(b, []byte(`-NAK {"delay"`))
	if n == 0 {
		return
	}
	p.armed.Store(true)
	if p.naks.Add(int64(n)) >= int64(p.want) {
		p.free()
	}
}

// hold waits, once a release was sent, until want are, before b, what
// the server sends, goes on to the client.
func (p *holdProxy) hold([]byte) {
	if p.armed.Load() {
		<-p.open
	}
}

// free lets what the server sends through from now on.
func (p *holdProxy) free() { p.once.Do(func() { close(p.open) }) }

// TestStopSendsItsReleasesTogether: a consumer stopping sends all the
// releases of its drain before the first is answered, and waits for the
// answers after. It sent one, waited for its answer, then sent the next:
// a round trip each, 12.8 s of drain for 256 messages over a link of
// 50 ms. Here the link holds back every answer until all are sent, so a
// consumer that waits for each in turn sends one, and no more. The
// messages still come to the next consumer in their order, and every
// release is answered (none is logged as failed) before Consume returns.
func TestStopSendsItsReleasesTogether(t *testing.T) {
	const n = 64
	srv := startServer(t, natsembed.Options{})
	p, proxied := startHoldProxy(t, srv.ClientURL(), n)
	nc := connect(t, func(o ...nats.Option) (*nats.Conn, error) {
		return nats.Connect(proxied, append(o, nats.NoReconnect())...)
	})
	ctx := context.Background()
	// A release not answered within PublishTimeout fails, and those after
	// it go without waiting: it is longer than the test waits.
	q, err := natsjs.New[int](ctx, nc, natsjs.Options{
		Stream: "TOGETHER", FetchWait: 100 * time.Millisecond, PublishTimeout: time.Minute, AsyncAttempts: 1,
	})
	require.NoError(t, err)
	want := make([]string, n)
	for i := range n {
		want[i] = "m" + strconv.Itoa(i)
		require.NoError(t, q.Publish(ctx, kanban.Message[int]{ID: want[i], Key: "k", Payload: i}))
	}
	// m0 runs until the drain deadline, and is handed back then; the
	// others wait behind it, and are handed back after it.
	started := make(chan struct{})
	var log recordLog
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
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
	select {
	case <-p.open:
	case <-time.After(10 * time.Second):
		t.Errorf("%d of %d releases sent before the first was answered", p.naks.Load(), n)
		p.free()
	}
	require.ErrorIs(t, <-done, kanban.ErrDrainTimeout)
	assert.Empty(t, log.errsOf("kanban: settling a message failed"))
	assert.Equal(t, want, handledInOrder(t, q, n))
}
