package kanban_test

import (
	"context"
	"testing"
	"testing/synctest"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/kanban"
)

type ctxKey struct{}

// valuePropagator writes the ctx value under ctxKey, if any, as header
// "trace", and overwrites "X-Own" when told to.
type valuePropagator struct{ overwrite bool }

func (p valuePropagator) Inject(ctx context.Context, h kanban.Header) {
	if len(h) != 0 {
		panic("Inject is handed an empty Header")
	}
	if v, ok := ctx.Value(ctxKey{}).(string); ok {
		h.Set("trace", v)
		if p.overwrite {
			h.Set("X-Own", "replaced")
		}
	}
}

func (valuePropagator) Extract(ctx context.Context, h kanban.Header) context.Context {
	if v := h.Get("trace"); v != "" {
		return context.WithValue(ctx, ctxKey{}, v)
	}
	return ctx
}

func TestInjectHeaders(t *testing.T) {
	traced := context.WithValue(context.Background(), ctxKey{}, "t1")
	own := kanban.Header{"X-Own": "mine"}
	tests := []struct {
		name string
		p    kanban.Propagator
		ctx  context.Context
		h    kanban.Header
		want kanban.Header
		same bool // the headers given are returned as they are
	}{
		{"no propagator", nil, traced, own, own, true},
		{"nothing to inject", valuePropagator{}, context.Background(), own, own, true},
		{"nothing to inject, no headers", valuePropagator{}, context.Background(), nil, nil, true},
		{"into no headers", valuePropagator{}, traced, nil, kanban.Header{"trace": "t1"}, false},
		{"added to a copy", valuePropagator{}, traced, own, kanban.Header{"X-Own": "mine", "trace": "t1"}, false},
		{"injected names win", valuePropagator{overwrite: true}, traced, own, kanban.Header{"X-Own": "replaced", "trace": "t1"}, false},
		// A name the message has in another case ("Trace", as an
		// http.Header writes it) gives way to the injected one: a reader
		// that matches names in any case would find the old one.
		{"injected names win in any case", valuePropagator{}, traced, kanban.Header{"Trace": "old", "TRACE": "older", "X-Own": "mine"},
			kanban.Header{"X-Own": "mine", "trace": "t1"}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var before kanban.Header
			if tc.h != nil {
				before = tc.h.Clone()
			}
			got := kanban.InjectHeaders(tc.ctx, tc.p, tc.h)
			assert.Equal(t, tc.want, got)
			assert.Equal(t, before, tc.h, "the headers given are never modified")
			if tc.same && tc.h != nil {
				got["probe"] = "x"
				assert.Equal(t, "x", tc.h["probe"], "the same map, not a copy")
				delete(got, "probe")
			}
		})
	}
}

// TestInjectHeadersAllocatesNothingToCarryNothing: a propagator with
// nothing to inject costs a publish no allocation.
func TestInjectHeadersAllocatesNothingToCarryNothing(t *testing.T) {
	ctx := context.Background()
	h := kanban.Header{"X-Own": "mine"}
	p := valuePropagator{}
	allocs := testing.AllocsPerRun(100, func() { _ = kanban.InjectHeaders(ctx, p, h) })
	assert.Zero(t, allocs)
}

// countingPropagator is valuePropagator counting its Extract calls.
type countingPropagator struct {
	valuePropagator
	extracts *int
}

func (p countingPropagator) Extract(ctx context.Context, h kanban.Header) context.Context {
	*p.extracts++
	return p.valuePropagator.Extract(ctx, h)
}

// TestConsumeExtracts: the handler's ctx carries what the Propagator
// extracts from the message's headers; Extract is asked only about
// messages that have headers; without a Propagator the headers still
// arrive and nothing is extracted.
func TestConsumeExtracts(t *testing.T) {
	traced := context.WithValue(context.Background(), ctxKey{}, "t1")
	tests := []struct {
		name     string
		p        func(*int) kanban.Propagator
		msgs     []kanban.Message[int]
		values   []any
		extracts int
	}{
		{
			"with a propagator",
			func(n *int) kanban.Propagator { return countingPropagator{extracts: n} },
			[]kanban.Message[int]{{ID: "traced"}, {ID: "own", Headers: kanban.Header{"X-Own": "mine"}}},
			[]any{"t1", "t1"}, 2,
		},
		{
			"without",
			func(*int) kanban.Propagator { return nil },
			[]kanban.Message[int]{{ID: "own", Headers: kanban.Header{"X-Own": "mine", "trace": "t0"}}},
			[]any{nil}, 0,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				var extracts int
				q, err := kanban.NewMemory[int](kanban.MemoryOptions{Propagator: tc.p(&extracts)})
				require.NoError(t, err)
				for _, m := range tc.msgs {
					require.NoError(t, q.Publish(traced, m))
				}
				require.NoError(t, q.Publish(context.Background(), kanban.Message[int]{ID: "bare"}))
				ctx, cancel := context.WithCancel(context.Background())
				var values []any
				var headers []kanban.Header
				err = q.Consume(ctx, func(hctx context.Context, d kanban.Delivery[int]) error {
					if d.ID == "bare" {
						assert.Nil(t, hctx.Value(ctxKey{}))
						assert.Empty(t, d.Headers)
						cancel()
						return nil
					}
					values = append(values, hctx.Value(ctxKey{}))
					headers = append(headers, d.Headers)
					return nil
				}, kanban.ConsumeOptions{})
				require.NoError(t, err)
				assert.Equal(t, tc.values, values)
				assert.Equal(t, tc.extracts, extracts, "Extract is asked about messages with headers only")
				for i, m := range tc.msgs {
					for k, v := range m.Headers {
						assert.Equal(t, v, headers[i][k], "the message's own headers arrive")
					}
				}
			})
		})
	}
}
