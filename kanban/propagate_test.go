package kanban_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"

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
