package kaizenprom

import (
	"context"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/taipattern/taikit/internal/typednil"
	"github.com/taipattern/taikit/tai"
)

// Tracer returns a tai.Tracer that counts signals in flight in the
// signals_in_flight gauge and passes every span on to next. A nil next,
// or one holding a nil pointer or func (a tracer left unset), means no
// tracing, as tai.WithTracer takes it. An Observer sees only finished
// signals; a Tracer sees each signal start (its StageSignal span) and
// end, so it is where in-flight is measured:
//
//	tai.WithTracer(metrics.Tracer(tracer)) // or metrics.Tracer(nil)
//
// Without next it allocates nothing and hands combinators no tracer.
// A next that a Tracer of these Metrics (or of any Metrics on the same
// registry, which count in the same gauge) returned is returned as it
// is: it counts the signal in flight already.
//
// A Metrics that NewMetrics did not make (the zero Metrics, or a nil
// *Metrics, one left unset) has no gauge to count in: Tracer then returns
// next as it is (nil, which tai.WithTracer takes for no tracing, for a nil
// next), rather than a tracer that fails every signal.
func (m *Metrics) Tracer(next tai.Tracer) tai.Tracer {
	if typednil.Holds(next) {
		// Called, it would panic at the start of every signal, failing
		// each; tai.WithTracer takes such a tracer for none.
		next = nil
	}
	if m == nil || m.inFlight == nil {
		return next
	}
	if t, ok := next.(*inFlightTracer); ok && t.m.inFlight == m.inFlight {
		return next // counts in this gauge already: wrapped again, it would count twice
	}
	return &inFlightTracer{m: m, next: next}
}

type inFlightTracer struct {
	m    *Metrics
	next tai.Tracer
}

// flight is the in-flight gauge of one kind; it is also the span of a
// signal traced without a next tracer.
type flight struct{ gauge prometheus.Gauge }

func (f *flight) End(error)                    { f.gauge.Dec() }
func (f *flight) SpanContext() tai.SpanContext { return tai.SpanContext{} }

// flightSpan ends the next tracer's span and counts the signal out, even
// when that span's End panics: the pipeline recovers the panic and ends
// the signal, which is then no longer in flight.
type flightSpan struct {
	tai.Span
	f *flight
}

func (s *flightSpan) End(err error) {
	defer s.f.gauge.Dec()
	s.Span.End(err)
}

type noSpan struct{}

func (noSpan) End(error)                    {}
func (noSpan) SpanContext() tai.SpanContext { return tai.SpanContext{} }

// Start counts a signal in when info is its StageSignal span.
func (t *inFlightTracer) Start(ctx context.Context, info tai.SpanInfo) (context.Context, tai.Span) {
	if info.Stage != tai.StageSignal {
		if t.next != nil {
			return t.next.Start(ctx, info)
		}
		return ctx, noSpan{}
	}
	f := t.m.flightOf(info.Kind)
	if t.next == nil {
		f.gauge.Inc()
		return ctx, f
	}
	// Counted in once the next tracer has started its span: should Start
	// panic, the pipeline has no span to end, and nothing would count the
	// signal out.
	ctx, sp := t.next.Start(ctx, info)
	f.gauge.Inc()
	if sp == nil {
		return ctx, f
	}
	return ctx, &flightSpan{Span: sp, f: f}
}

// flightOf returns the in-flight gauge of kind: that of OverflowKind for
// a kind past MetricsOptions.MaxKinds, as Observe counts it.
func (m *Metrics) flightOf(kind string) *flight {
	k := m.kindOf(kind)
	if f := k.flight.Load(); f != nil {
		return f
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if f := k.flight.Load(); f != nil {
		return f
	}
	f := &flight{gauge: m.inFlight.WithLabelValues(k.kind)}
	k.flight.Store(f)
	return f
}
