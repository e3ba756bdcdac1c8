package bench

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/failsafe-go/failsafe-go"
	"github.com/failsafe-go/failsafe-go/budget"
	"github.com/failsafe-go/failsafe-go/bulkhead"
	"github.com/failsafe-go/failsafe-go/hedgepolicy"
	"github.com/failsafe-go/failsafe-go/retrypolicy"
	"github.com/failsafe-go/failsafe-go/timeout"

	"github.com/taipattern/taikit/jidoka"
)

// The same settings for every library: three attempts, backoff from
// 100 ms to 10 s, a one-minute timeout per attempt, a bulkhead of 16 slots.
// Every call succeeds at once: the figures are what the guards cost on a
// call's success path.
const (
	guardBenchAttempts = 3
	guardBenchBase     = 100 * time.Millisecond
	guardBenchMaxDelay = 10 * time.Second
	guardBenchTimeout  = time.Minute
	guardBenchSlots    = 16
)

func jkRetryTimeout(b *testing.B) func(context.Context) error {
	return jkRetryTimeoutOf(b, jkOkCall)
}

// jkRetryTimeoutOf is jkRetryTimeout around call.
func jkRetryTimeoutOf(b *testing.B, call func(context.Context) error) func(context.Context) error {
	r, err := jidoka.NewRetry(jidoka.RetryOptions{MaxAttempts: guardBenchAttempts, BaseDelay: guardBenchBase, MaxDelay: guardBenchMaxDelay})
	if err != nil {
		b.Fatal(err)
	}
	to, err := jidoka.NewTimeout(jidoka.TimeoutOptions{Duration: guardBenchTimeout})
	if err != nil {
		b.Fatal(err)
	}
	// Retry(Timeout(call)), as a pipeline with WithGuards(retry, timeout)
	// nests them.
	attempt := func(ctx context.Context) error { return to.Do(ctx, call) }
	return func(ctx context.Context) error { return r.Do(ctx, attempt) }
}

func fsRetryTimeout(withBudget bool) failsafe.Executor[any] {
	rb := retrypolicy.NewBuilder[any]().
		WithMaxAttempts(guardBenchAttempts).
		WithBackoff(guardBenchBase, guardBenchMaxDelay).
		WithJitterFactor(0.5)
	if withBudget {
		rb = rb.WithBudget(budget.New())
	}
	return failsafe.With[any](rb.Build(), timeout.New[any](guardBenchTimeout))
}

// Retry + Timeout, successful call, one goroutine.

func BenchmarkRetryTimeout(b *testing.B) {
	call, ctx := jkRetryTimeout(b), context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if err := call(ctx); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkRetryTimeoutFailsafe(b *testing.B) {
	ex := fsRetryTimeout(false)
	b.ReportAllocs()
	for b.Loop() {
		if err := ex.Run(jkOkPlain); err != nil {
			b.Fatal(err)
		}
	}
}

// failsafe-go with a retry budget, as jidoka's Retry always has.
func BenchmarkRetryTimeoutFailsafeBudget(b *testing.B) {
	ex := fsRetryTimeout(true)
	b.ReportAllocs()
	for b.Loop() {
		if err := ex.Run(jkOkPlain); err != nil {
			b.Fatal(err)
		}
	}
}

// Retry + Timeout, successful call that asks its context for Done, as a
// call handing it to network or database I/O does. The rows above time a
// call that never does, for which jidoka's Timeout sets no timer (see
// jidoka.Timeout); failsafe-go's sets one for every call.

// errNoDone fails a call whose context has no Done channel: a Timeout's
// always has one.
var errNoDone = errors.New("the call's context has no Done channel")

func jkReadsDone(ctx context.Context) error {
	if ctx.Done() == nil {
		return errNoDone
	}
	return nil
}

func BenchmarkRetryTimeoutReadsDone(b *testing.B) {
	call, ctx := jkRetryTimeoutOf(b, jkReadsDone), context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if err := call(ctx); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkRetryTimeoutReadsDoneFailsafe(b *testing.B) {
	ex := fsRetryTimeout(false)
	call := func(e failsafe.Execution[any]) error { return jkReadsDone(e.Context()) }
	b.ReportAllocs()
	for b.Loop() {
		if err := ex.RunWithExecution(call); err != nil {
			b.Fatal(err)
		}
	}
}

// Retry + Timeout, successful call, all cores.

func BenchmarkRetryTimeoutParallel(b *testing.B) {
	call, ctx := jkRetryTimeout(b), context.Background()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := call(ctx); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

func BenchmarkRetryTimeoutParallelFailsafe(b *testing.B) {
	ex := fsRetryTimeout(false)
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

func jkBulkhead(b *testing.B) *jidoka.Bulkhead {
	bh, err := jidoka.NewBulkhead(jidoka.BulkheadOptions{MaxConcurrent: guardBenchSlots})
	if err != nil {
		b.Fatal(err)
	}
	return bh
}

// Bulkhead: take a slot and give it back, with no call between.

func BenchmarkBulkheadAcquire(b *testing.B) {
	bh, ctx := jkBulkhead(b), context.Background()
	b.ReportAllocs()
	for b.Loop() {
		done, err := bh.Allow(ctx)
		if err != nil {
			b.Fatal(err)
		}
		done(nil)
	}
}

func BenchmarkBulkheadAcquireFailsafe(b *testing.B) {
	bh := bulkhead.New[any](guardBenchSlots)
	b.ReportAllocs()
	for b.Loop() {
		if !bh.TryAcquirePermit() {
			b.Fatal("full")
		}
		bh.ReleasePermit()
	}
}

func BenchmarkBulkheadAcquireParallel(b *testing.B) {
	bh, ctx := jkBulkhead(b), context.Background()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			done, err := bh.Allow(ctx)
			if err != nil {
				b.Error(err)
				return
			}
			done(nil)
		}
	})
}

func BenchmarkBulkheadAcquireParallelFailsafe(b *testing.B) {
	bh := bulkhead.New[any](guardBenchSlots)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if !bh.TryAcquirePermit() {
				b.Error("full")
				return
			}
			bh.ReleasePermit()
		}
	})
}

// Bulkhead around a successful call: jidoka's Do, failsafe-go's executor.

func BenchmarkBulkheadCall(b *testing.B) {
	bh, ctx := jkBulkhead(b), context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if err := bh.Do(ctx, jkOkCall); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkBulkheadCallFailsafe(b *testing.B) {
	ex := failsafe.With[any](bulkhead.New[any](guardBenchSlots))
	b.ReportAllocs()
	for b.Loop() {
		if err := ex.Run(jkOkPlain); err != nil {
			b.Fatal(err)
		}
	}
}

// Hedge, successful call that returns before the hedge delay (the common
// case: nothing is hedged).

func BenchmarkHedge(b *testing.B) {
	h, err := jidoka.NewHedge(jidoka.HedgeOptions{Delay: guardBenchTimeout})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if err := h.Do(ctx, jkOkCall); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkHedgeFailsafe(b *testing.B) {
	ex := failsafe.With[any](hedgepolicy.NewWithDelay[any](guardBenchTimeout))
	b.ReportAllocs()
	for b.Loop() {
		if err := ex.Run(jkOkPlain); err != nil {
			b.Fatal(err)
		}
	}
}
