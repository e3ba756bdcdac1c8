package kanban

import (
	"context"
	"strings"
	"sync"
)

// A Propagator carries request-scoped context — a trace, most often — from
// a publisher to the handler of its message, in the message's headers:
// Publish asks it to Inject the context of its ctx, and the consumer asks
// it to Extract that context into the ctx of the handler, so the handler's
// spans join the publisher's trace.
//
// A nil Propagator carries nothing and costs nothing. Package
// kanban/kanbanotel adapts OpenTelemetry propagators.
type Propagator interface {
	// Inject writes the context of ctx into h, a non-nil, empty Header
	// that the queue merges into the message's headers (a name Inject
	// writes replaces the message's own). Inject must not keep h.
	Inject(ctx context.Context, h Header)
	// Extract returns ctx with the context that h, the headers of a
	// delivered message, carry; ctx itself when they carry none. It must
	// not modify h. The consumer calls it for messages that have headers.
	Extract(ctx context.Context, h Header) context.Context
}

// injected holds the empty Headers lent to Propagator.Inject, so that a
// publish whose ctx has nothing to carry allocates nothing.
var injected = sync.Pool{New: func() any { return make(Header, 2) }}

// InjectHeaders returns h with what p injects for ctx added, for a
// backend's Publish: an injected header replaces the one of h of the same
// name in any case. It never modifies h: it returns h itself when p is
// nil or injects nothing, and a new Header otherwise.
func InjectHeaders(ctx context.Context, p Propagator, h Header) Header {
	return injectHeaders(ctx, p, h, false)
}

// namedIn reports whether h has a header named name in any case: the
// message's "Traceparent" (written by an http.Header) gives way to an
// injected "traceparent", which a reader matching names in any case could
// otherwise miss for the old one.
func namedIn(h Header, name string) bool {
	for k := range h {
		if strings.EqualFold(k, name) {
			return true
		}
	}
	return false
}

// injectHeaders is InjectHeaders; with own, it never returns h itself but
// a copy, for a queue that keeps the headers it is given (Memory): the
// caller may change or reuse its Header once Publish returns.
func injectHeaders(ctx context.Context, p Propagator, h Header, own bool) Header {
	if p == nil {
		if own {
			return h.Clone()
		}
		return h
	}
	add := injected.Get().(Header)
	p.Inject(ctx, add)
	if len(add) == 0 {
		injected.Put(add)
		if own {
			return h.Clone()
		}
		return h
	}
	if len(h) == 0 {
		return add // handed on with the message, not returned to the pool
	}
	out := make(Header, len(h)+len(add))
	for k, v := range h {
		if !namedIn(add, k) {
			out[k] = v
		}
	}
	for k, v := range add {
		out[k] = v
	}
	clear(add)
	injected.Put(add)
	return out
}
