package kanban_test

import (
	"context"
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

// TestMemorySpansHaveNoBodySize: a Memory queue holds values, not
// bytes: its send and process operations tell the Tracer no body size,
// with a Codec too.
func TestMemorySpansHaveNoBodySize(t *testing.T) {
	for _, codec := range []kanban.Codec{nil, kanban.JSON{}} {
		tr := queuetest.NewTracer()
		q, err := kanban.NewMemory[string](kanban.MemoryOptions{Name: "orders", Codec: codec, Tracer: tr})
		require.NoError(t, err)
		ctx, cancel := context.WithCancel(context.Background())
		require.NoError(t, q.Publish(ctx, kanban.Message[string]{ID: "m1", Payload: "a payload"}))
		handled := make(chan struct{})
		done := make(chan error, 1)
		go func() {
			done <- q.Consume(ctx, func(context.Context, kanban.Delivery[string]) error {
				close(handled)
				return nil
			}, kanban.ConsumeOptions{})
		}()
		<-handled
		cancel()
		require.NoError(t, <-done)
		spans := tr.Spans()
		require.Len(t, spans, 2)
		for _, s := range spans {
			assert.Zero(t, s.Op.BodySize, "%v, Codec %T", s.Op.Type, codec)
		}
	}
}
