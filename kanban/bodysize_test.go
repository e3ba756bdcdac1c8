package kanban_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/kanban"
	"github.com/taipattern/taikit/kanban/queuetest"
)

// sizedLease is a lease that knows the size of its message's body
// (kanban.BodySizer), held as a value, as a backend may hand one out.
type sizedLease struct {
	*lease
	size int
}

func (l sizedLease) BodySize() int { return l.size }

// sizedSource is a backend whose leases are sizedLease values of size
// bytes each.
type sizedSource struct {
	*backend
	size int
}

func (s sizedSource) Pull(ctx context.Context, max int) ([]kanban.Lease[int], error) {
	ls, err := s.backend.Pull(ctx, max)
	for i, l := range ls {
		ls[i] = sizedLease{lease: l.(*lease), size: s.size}
	}
	return ls, err
}

// TestServeTellsTheTracerTheBodySizeOfALease: Serve gives the Tracer,
// as Operation.BodySize of each attempt, the size a Lease that is a
// kanban.BodySizer tells of its message's body: also for a lease Serve
// holds as a value, in a wrapper of its own (with heartbeats). A Lease
// that is not one gives none.
func TestServeTellsTheTracerTheBodySizeOfALease(t *testing.T) {
	for _, tc := range []struct {
		name      string
		heartbeat time.Duration
		sized     bool
		want      int
	}{
		{"sized", 0, true, 42},
		{"sized with heartbeats", time.Hour, true, 42},
		{"not sized", 0, false, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newBackend(&lease{id: "a"}, &lease{id: "b", attempt: 2})
			b.heartbeat = tc.heartbeat
			var src kanban.Source[int] = b
			if tc.sized {
				src = sizedSource{backend: b, size: 42}
			}
			tr := queuetest.NewTracer()
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			handled := make(chan struct{}, 2)
			done := make(chan error, 1)
			go func() {
				done <- kanban.Serve(ctx, src, func(context.Context, kanban.Delivery[int]) error {
					handled <- struct{}{}
					return nil
				}, kanban.ConsumeOptions{}, kanban.Runtime{Tracer: tr, System: "test", Queue: "q"})
			}()
			<-handled
			<-handled
			cancel()
			require.NoError(t, <-done)
			spans := tr.Spans()
			require.Len(t, spans, 2)
			for _, s := range spans {
				assert.Equal(t, kanban.OpProcess, s.Op.Type)
				assert.Equal(t, tc.want, s.Op.BodySize, "%s", s.Op.MessageID)
			}
		})
	}
}

// TestMemorySpansHaveTheBodySizeWithACodec: a Memory queue with a
// Codec holds its messages' payloads encoded, and tells the Tracer the
// size of the encoding, as a queue on a wire does: on the send of
// Publish, TryPublish and the redrive of a dead letter, and on each
// attempt to handle the message, whether its consumer takes messages
// shared or in key order (PerKey). Without a Codec it holds values, not
// bytes, and tells no body size.
func TestMemorySpansHaveTheBodySizeWithACodec(t *testing.T) {
	const payload = "a payload"
	body, err := kanban.JSON{}.Marshal(payload)
	require.NoError(t, err)
	for _, tc := range []struct {
		name   string
		codec  kanban.Codec
		perKey bool
		want   int
	}{
		{"no codec", nil, false, 0},
		{"no codec, PerKey", nil, true, 0},
		{"JSON", kanban.JSON{}, false, len(body)},
		{"JSON, PerKey", kanban.JSON{}, true, len(body)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr := queuetest.NewTracer()
			q, err := kanban.NewMemory[string](kanban.MemoryOptions{Name: "orders", Codec: tc.codec, Tracer: tr})
			require.NoError(t, err)
			ctx := context.Background()
			require.NoError(t, q.Publish(ctx, kanban.Message[string]{ID: "m1", Key: "k", Payload: payload}))
			require.NoError(t, q.TryPublish(ctx, kanban.Message[string]{ID: "m2", Key: "k", Payload: payload}))
			// m1 is retried once, then dead-lettered; m2 is handled.
			consumeN := func(n int, refuse bool) {
				t.Helper()
				cctx, cancel := context.WithCancel(ctx)
				defer cancel()
				handled := make(chan struct{}, n)
				done := make(chan error, 1)
				go func() {
					done <- q.Consume(cctx, func(_ context.Context, d kanban.Delivery[string]) error {
						defer func() { handled <- struct{}{} }()
						switch {
						case !refuse || d.ID != "m1":
						case d.Attempt == 1:
							return errors.New("not yet")
						default:
							return kanban.Permanent(errors.New("refused"))
						}
						return nil
					}, kanban.ConsumeOptions{PerKey: tc.perKey, MaxAttempts: 3, Backoff: kanban.BackoffFunc(func(int) time.Duration { return 0 })})
				}()
				for range n {
					<-handled
				}
				cancel()
				require.NoError(t, <-done)
			}
			consumeN(3, true)
			n, err := q.RedriveDeadLetters(ctx, kanban.DeadLetterFilter{ID: "m1"})
			require.NoError(t, err)
			require.Equal(t, 1, n)
			consumeN(1, false)

			var sends, processes int
			for _, s := range tr.Spans() {
				switch s.Op.Type {
				case kanban.OpSend:
					sends++
				case kanban.OpProcess:
					processes++
				}
				assert.Equal(t, tc.want, s.Op.BodySize, "%v of %s, attempt %d", s.Op.Type, s.Op.MessageID, s.Op.Attempt)
			}
			assert.Equal(t, 3, sends, "Publish, TryPublish and the redrive")
			assert.Equal(t, 4, processes)
		})
	}
}
