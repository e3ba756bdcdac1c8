// Package taitest has hooks that do nothing, for measuring what a
// pipeline itself costs and for tests that need a hook in a place but no
// behaviour from it.
package taitest

import (
	"context"

	"github.com/taipattern/taikit/tai"
)

// NopGate admits every signal.
type NopGate struct{}

// Admit returns nil.
func (NopGate) Admit(context.Context, string) error { return nil }

// NopGuard admits every call and ignores its result. It is a
// tai.TwoStepGuard, as jidoka.Breaker is, so a pipeline calls it without
// wrapping the action; NopWrapGuard is the same guard as a plain tai.Guard.
type NopGuard struct{}

// Do returns fn(ctx).
func (NopGuard) Do(ctx context.Context, fn func(context.Context) error) error { return fn(ctx) }

// Allow admits the call; the result it is told is dropped.
func (NopGuard) Allow(context.Context) (func(error), error) { return ignore, nil }

func ignore(error) {}

// NopWrapGuard runs the action and returns its error: a guard that can
// only wrap the action, as a timeout does.
type NopWrapGuard struct{}

// Do returns fn(ctx).
func (NopWrapGuard) Do(ctx context.Context, fn func(context.Context) error) error { return fn(ctx) }

// NopObserver ignores every Record.
type NopObserver struct{}

// Observe does nothing.
func (NopObserver) Observe(context.Context, tai.Record) {}

// NopTracer opens spans that record nothing and have a zero SpanContext.
type NopTracer struct{}

// Start returns ctx and a NopSpan.
func (NopTracer) Start(ctx context.Context, _ tai.SpanInfo) (context.Context, tai.Span) {
	return ctx, NopSpan{}
}

// NopSpan is the span of a NopTracer.
type NopSpan struct{}

// End does nothing.
func (NopSpan) End(error) {}

// SpanContext returns the zero SpanContext.
func (NopSpan) SpanContext() tai.SpanContext { return tai.SpanContext{} }

// Hooks returns the options that put one of each no-op hook in a
// pipeline.
func Hooks() []tai.Option {
	return []tai.Option{
		tai.WithGates(NopGate{}), tai.WithGuards(NopGuard{}),
		tai.WithObservers(NopObserver{}), tai.WithTracer(NopTracer{}),
	}
}
