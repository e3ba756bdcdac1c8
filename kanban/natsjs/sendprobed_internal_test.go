package natsjs

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/kanban"
)

// probeWaiters returns how many probes hold or wait for nc's turn.
func probeWaiters(nc *nats.Conn) int {
	probes.mu.Lock()
	defer probes.mu.Unlock()
	if p := probes.conns[nc]; p != nil {
		return p.users
	}
	return 0
}

// TestPublishWaitingForAProbeGoesOnceAnswered: a Publish waiting for
// its turn to probe (another probe on the connection running: many
// publishers starting at once) publishes as soon as another publish of
// the Queue has been answered, instead of probing in its turn. Probes
// on one connection take turns of a round trip each, and a thousand
// publishers starting together on a server 10 ms away waited ten
// seconds, most of them failing after PublishTimeout.
func TestPublishWaitingForAProbeGoesOnceAnswered(t *testing.T) {
	nc := inProcessConn(t)
	ctx := context.Background()
	q, err := New[int](ctx, nc, Options{Stream: "PROBE_WAIT", PublishTimeout: 10 * time.Second})
	require.NoError(t, err)
	t.Cleanup(func() { assert.NoError(t, q.Shutdown(ctx)) })

	done, err := takeProbeTurn(ctx, nc) // another probe runs
	require.NoError(t, err)
	defer done()
	errc := make(chan error, 1)
	go func() { errc <- q.Publish(ctx, kanban.Message[int]{ID: "a", Payload: 1}) }()
	for probeWaiters(nc) < 2 {
		time.Sleep(time.Millisecond)
	}
	q.workTaken.answer() // another publish answered
	require.NoError(t, <-errc)
	assert.Equal(t, int64(1), q.Stats().Published)
}

// recreatingJS is a JetStream that makes the work stream, cfg, again
// just before it publishes: a probe finds no stream, and the publish
// after it one that is back (a server restarting, a leader elected).
type recreatingJS struct {
	jetstream.JetStream
	cfg jetstream.StreamConfig
}

func (j recreatingJS) PublishMsg(ctx context.Context, m *nats.Msg, opts ...jetstream.PublishOpt) (*jetstream.PubAck, error) {
	if _, err := j.CreateOrUpdateStream(ctx, j.cfg); err != nil {
		return nil, err
	}
	return j.JetStream.PublishMsg(ctx, m, opts...)
}

// TestPublishAfterNoRespondersCountsAsAnswered: a Publish whose probe
// finds no stream listening, and whose publish after it is answered,
// marks the work subject answered, as a probe answered does: publishes
// waiting for their turn to probe go at once, and later ones as plain
// requests. They went on probing, each waiting behind the probes before
// it (here behind one that never ends).
func TestPublishAfterNoRespondersCountsAsAnswered(t *testing.T) {
	nc := inProcessConn(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	q, err := New[int](ctx, nc, Options{Stream: "PROBE_NR", Storage: MemoryStorage})
	require.NoError(t, err)
	t.Cleanup(func() { assert.NoError(t, q.Shutdown(context.Background())) })
	require.NoError(t, q.js.DeleteStream(ctx, "PROBE_NR"))
	q.js = recreatingJS{JetStream: q.js, cfg: q.opts.streams()[0]}

	require.NoError(t, q.Publish(ctx, kanban.Message[int]{ID: "a", Payload: 1}))
	assert.True(t, q.workTaken.ok.Load(), "answered")

	done, err := takeProbeTurn(ctx, nc) // another probe runs, and stays
	require.NoError(t, err)
	defer done()
	require.NoError(t, q.Publish(ctx, kanban.Message[int]{ID: "b", Payload: 2}))
	require.NoError(t, ctx.Err())
	assert.Equal(t, int64(2), q.Stats().Published)
}

func (j recreatingJS) PublishMsgAsync(m *nats.Msg, opts ...jetstream.PublishOpt) (jetstream.PubAckFuture, error) {
	if _, err := j.CreateOrUpdateStream(context.Background(), j.cfg); err != nil {
		return nil, err
	}
	return j.JetStream.PublishMsgAsync(m, opts...)
}

// TestPublishAsyncAfterNoResponders: a PublishAsync message sent to look
// for a refusal that finds no stream listening goes again through the
// client, which tries again for a stream coming back, as Publish does;
// its acknowledgement marks the work subject answered.
func TestPublishAsyncAfterNoResponders(t *testing.T) {
	nc := inProcessConn(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	q, err := New[int](ctx, nc, Options{Stream: "PROBE_NR_ASYNC", Storage: MemoryStorage, AsyncAttempts: 1})
	require.NoError(t, err)
	t.Cleanup(func() { assert.NoError(t, q.Shutdown(context.Background())) })
	require.NoError(t, q.js.DeleteStream(ctx, "PROBE_NR_ASYNC"))
	q.ajs = recreatingJS{JetStream: q.ajs, cfg: q.opts.streams()[0]} // PublishAsync sends through ajs

	require.NoError(t, q.PublishAsync(ctx, kanban.Message[int]{ID: "a", Payload: 1}))
	require.NoError(t, q.Flush(ctx))
	assert.True(t, q.workTaken.ok.Load(), "answered")
	assert.Equal(t, int64(1), q.Stats().Published)
}

// TestPublishAsyncWaitingForAProbeTurnEndsWithCtx: a PublishAsync
// waiting for its turn to look for a refusal (another probe on the
// connection running) returns once its ctx ends, the message sent
// through the client, as PublishAsync waits only until ctx ends. It
// waited for the turn, ctx ended or not, up to PublishTimeout (an hour
// here).
func TestPublishAsyncWaitingForAProbeTurnEndsWithCtx(t *testing.T) {
	nc := inProcessConn(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	q, err := New[int](ctx, nc, Options{Stream: "PROBE_ASYNC_CTX", Storage: MemoryStorage, PublishTimeout: time.Hour, AsyncAttempts: 1})
	require.NoError(t, err)
	t.Cleanup(func() { assert.NoError(t, q.Shutdown(context.Background())) })

	done, err := takeProbeTurn(ctx, nc) // another probe runs, and stays
	require.NoError(t, err)
	release := sync.OnceFunc(done)
	defer release()
	pctx, pcancel := context.WithCancel(ctx)
	errc := make(chan error, 1)
	go func() { errc <- q.PublishAsync(pctx, kanban.Message[int]{ID: "a", Payload: 1}) }()
	for probeWaiters(nc) < 2 {
		time.Sleep(time.Millisecond)
	}
	pcancel()
	select {
	case err := <-errc:
		require.NoError(t, err)
	case <-ctx.Done():
		release() // lets the PublishAsync go, so that the test ends
		t.Fatal("PublishAsync waited for its turn after its ctx ended")
	}
	require.NoError(t, q.Flush(ctx))
	assert.Equal(t, int64(1), q.Stats().Published)
}
