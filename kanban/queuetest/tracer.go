package queuetest

import (
	"context"
	"strconv"
	"sync"

	"github.com/taipattern/taikit/kanban"
)

// Tracer is a kanban.Tracer that records every operation it is told of,
// for tests. Each span gets a name, "span-1", "span-2"..., which it puts
// in the ctx it returns, and which the suite's Propagator carries in a
// header of its own: a process span then shows which send span its
// message was published under. The zero value is not usable; call NewTracer.
type Tracer struct {
	mu    sync.Mutex
	spans []*Span
}

// Span is an operation a Tracer recorded.
type Span struct {
	Name  string           // "span-1", "span-2"... in the order started
	Op    kanban.Operation // what the queue said it was
	Ended bool             // whether its end function was called
	Err   error            // what the end function was given
	// Parent is the name of the span the ctx it started with carried, if
	// any: for a process span, its message's send span.
	Parent any
}

// NewTracer returns a Tracer that has recorded nothing.
func NewTracer() *Tracer { return &Tracer{} }

// Start records op.
func (tr *Tracer) Start(ctx context.Context, op kanban.Operation) (context.Context, func(error)) {
	tr.mu.Lock()
	s := &Span{Name: "span-" + strconv.Itoa(len(tr.spans)+1), Op: op, Parent: ctx.Value(spanKey{})}
	tr.spans = append(tr.spans, s)
	tr.mu.Unlock()
	return context.WithValue(ctx, spanKey{}, s.Name), func(err error) {
		tr.mu.Lock()
		defer tr.mu.Unlock()
		if s.Ended {
			panic("queuetest: span " + s.Name + " ended twice")
		}
		s.Ended, s.Err = true, err
	}
}

// Spans returns copies of the spans recorded, in the order they started.
func (tr *Tracer) Spans() []Span {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	out := make([]Span, len(tr.spans))
	for i, s := range tr.spans {
		out[i] = *s
	}
	return out
}
