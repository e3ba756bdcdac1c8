package bench

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/failsafe-go/failsafe-go"
	"github.com/failsafe-go/failsafe-go/circuitbreaker"
	"github.com/sony/gobreaker/v2"

	"github.com/taipattern/taikit/jidoka"
)

// The same settings for every library: trip after 5 consecutive failures,
// or (time window) at a failure rate of 50% over the last 10 s in 1 s
// buckets once 10 calls are counted; stay open 30 s; close after 3 probe
// successes.
const (
	jkBenchFailures  = 5
	jkBenchOpen      = 30 * time.Second
	jkBenchSuccesses = 3
	jkBenchWindow    = 10 * time.Second
	jkBenchBucket    = time.Second
	jkBenchMinCalls  = 10
	jkBenchRate      = 0.5
)

var errJidokaBench = errors.New("bench: failure")

func jkOkCall(context.Context) error { return nil }
func jkOkPlain() error               { return nil }
func jkOkValue() (struct{}, error)   { return struct{}{}, nil }

func jkJidokaConsecutive(b *testing.B) *jidoka.Breaker {
	br, err := jidoka.NewBreaker(jidoka.BreakerOptions{ConsecutiveFailures: jkBenchFailures, OpenDuration: jkBenchOpen, HalfOpenSuccesses: jkBenchSuccesses})
	if err != nil {
		b.Fatal(err)
	}
	return br
}

func jkJidokaTimeWindow(b *testing.B) *jidoka.Breaker {
	br, err := jidoka.NewBreaker(jidoka.BreakerOptions{
		FailureRate: jkBenchRate, MinimumCalls: jkBenchMinCalls,
		WindowDuration: jkBenchWindow, WindowBuckets: int(jkBenchWindow / jkBenchBucket),
		OpenDuration: jkBenchOpen, HalfOpenSuccesses: jkBenchSuccesses,
	})
	if err != nil {
		b.Fatal(err)
	}
	return br
}

func jkGobreakerConsecutiveSettings() gobreaker.Settings {
	return gobreaker.Settings{
		MaxRequests: jkBenchSuccesses,
		Timeout:     jkBenchOpen,
		ReadyToTrip: func(c gobreaker.Counts) bool { return c.ConsecutiveFailures >= jkBenchFailures },
	}
}

func jkGobreakerConsecutive() *gobreaker.CircuitBreaker[struct{}] {
	return gobreaker.NewCircuitBreaker[struct{}](jkGobreakerConsecutiveSettings())
}

func jkGobreakerTimeWindow() *gobreaker.CircuitBreaker[struct{}] {
	return gobreaker.NewCircuitBreaker[struct{}](gobreaker.Settings{
		MaxRequests:  jkBenchSuccesses,
		Interval:     jkBenchWindow,
		BucketPeriod: jkBenchBucket,
		Timeout:      jkBenchOpen,
		ReadyToTrip: func(c gobreaker.Counts) bool {
			return c.Requests >= jkBenchMinCalls && float64(c.TotalFailures)/float64(c.Requests) >= jkBenchRate
		},
	})
}

func jkFailsafeConsecutive() (circuitbreaker.CircuitBreaker[any], failsafe.Executor[any]) {
	cb := circuitbreaker.NewBuilder[any]().
		WithFailureThreshold(jkBenchFailures).
		WithDelay(jkBenchOpen).
		WithSuccessThreshold(jkBenchSuccesses).
		Build()
	return cb, failsafe.With[any](cb)
}

func jkFailsafeTimeWindow() failsafe.Executor[any] {
	cb := circuitbreaker.NewBuilder[any]().
		WithFailureRateThreshold(jkBenchRate, jkBenchMinCalls, jkBenchWindow).
		WithDelay(jkBenchOpen).
		WithSuccessThreshold(jkBenchSuccesses).
		Build()
	return failsafe.With[any](cb)
}

// Closed state, successful call, one goroutine.

func BenchmarkJidokaClosed(b *testing.B) {
	br, ctx := jkJidokaConsecutive(b), context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if err := br.Do(ctx, jkOkCall); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkJidokaClosedGobreaker(b *testing.B) {
	cb := jkGobreakerConsecutive()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := cb.Execute(jkOkValue); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkJidokaClosedFailsafe(b *testing.B) {
	_, ex := jkFailsafeConsecutive()
	b.ReportAllocs()
	for b.Loop() {
		if err := ex.Run(jkOkPlain); err != nil {
			b.Fatal(err)
		}
	}
}

// Closed state, successful call, one goroutine, through each library's
// two-step form (admit, run the call, report its result): jidoka's Allow
// and done, gobreaker's TwoStepCircuitBreaker, failsafe-go's breaker used
// standalone (TryAcquirePermit, RecordError), which does without the
// executor's allocations.

func BenchmarkJidokaClosedTwoStep(b *testing.B) {
	br, ctx := jkJidokaConsecutive(b), context.Background()
	b.ReportAllocs()
	for b.Loop() {
		done, err := br.Allow(ctx)
		if err != nil {
			b.Fatal(err)
		}
		done(jkOkPlain())
	}
}

func BenchmarkJidokaClosedTwoStepGobreaker(b *testing.B) {
	cb := gobreaker.NewTwoStepCircuitBreaker[struct{}](jkGobreakerConsecutiveSettings())
	b.ReportAllocs()
	for b.Loop() {
		done, err := cb.Allow()
		if err != nil {
			b.Fatal(err)
		}
		done(jkOkPlain())
	}
}

func BenchmarkJidokaClosedTwoStepFailsafe(b *testing.B) {
	cb, _ := jkFailsafeConsecutive()
	b.ReportAllocs()
	for b.Loop() {
		if !cb.TryAcquirePermit() {
			b.Fatal("refused")
		}
		cb.RecordError(jkOkPlain())
	}
}

// Closed state, successful call, all cores.

func BenchmarkJidokaClosedParallel(b *testing.B) {
	br, ctx := jkJidokaConsecutive(b), context.Background()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := br.Do(ctx, jkOkCall); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

func BenchmarkJidokaClosedParallelGobreaker(b *testing.B) {
	cb := jkGobreakerConsecutive()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := cb.Execute(jkOkValue); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

func BenchmarkJidokaClosedParallelFailsafe(b *testing.B) {
	_, ex := jkFailsafeConsecutive()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := ex.Run(jkOkPlain); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// Open state: the call is refused.

func BenchmarkJidokaOpen(b *testing.B) {
	br, ctx := jkJidokaConsecutive(b), context.Background()
	for range jkBenchFailures {
		_ = br.Do(ctx, func(context.Context) error { return errJidokaBench })
	}
	if br.State() != jidoka.StateOpen {
		b.Fatal("not open")
	}
	b.ReportAllocs()
	for b.Loop() {
		if err := br.Do(ctx, jkOkCall); err == nil {
			b.Fatal("admitted")
		}
	}
}

func BenchmarkJidokaOpenGobreaker(b *testing.B) {
	cb := jkGobreakerConsecutive()
	for range jkBenchFailures {
		_, _ = cb.Execute(func() (struct{}, error) { return struct{}{}, errJidokaBench })
	}
	if cb.State() != gobreaker.StateOpen {
		b.Fatal("not open")
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := cb.Execute(jkOkValue); err == nil {
			b.Fatal("admitted")
		}
	}
}

func BenchmarkJidokaOpenFailsafe(b *testing.B) {
	cb, ex := jkFailsafeConsecutive()
	for range jkBenchFailures {
		_ = ex.Run(func() error { return errJidokaBench })
	}
	if !cb.IsOpen() {
		b.Fatal("not open")
	}
	b.ReportAllocs()
	for b.Loop() {
		if err := ex.Run(jkOkPlain); err == nil {
			b.Fatal("admitted")
		}
	}
}

// Time window (failure rate over 10 s in 1 s buckets), successful call.

func BenchmarkJidokaTimeWindow(b *testing.B) {
	br, ctx := jkJidokaTimeWindow(b), context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if err := br.Do(ctx, jkOkCall); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkJidokaTimeWindowGobreaker(b *testing.B) {
	cb := jkGobreakerTimeWindow()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := cb.Execute(jkOkValue); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkJidokaTimeWindowFailsafe(b *testing.B) {
	ex := jkFailsafeTimeWindow()
	b.ReportAllocs()
	for b.Loop() {
		if err := ex.Run(jkOkPlain); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkJidokaTimeWindowParallel(b *testing.B) {
	br, ctx := jkJidokaTimeWindow(b), context.Background()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := br.Do(ctx, jkOkCall); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

func BenchmarkJidokaTimeWindowParallelGobreaker(b *testing.B) {
	cb := jkGobreakerTimeWindow()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := cb.Execute(jkOkValue); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

func BenchmarkJidokaTimeWindowParallelFailsafe(b *testing.B) {
	ex := jkFailsafeTimeWindow()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := ex.Run(jkOkPlain); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
