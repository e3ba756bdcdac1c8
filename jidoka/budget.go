package jidoka

import (
	"fmt"
	"math"
	"sync/atomic"
)

// Defaults of RetryBudgetOptions.
const (
	DefaultBudgetRatio = 0.2
	DefaultBudgetBurst = 10
)

// Limits of RetryBudgetOptions.
const (
	MinBudgetRatio = 1e-6 // a retry per million calls: the budget counts millionths of a token
	MaxBudgetRatio = 1000
	MaxBudgetBurst = 1 << 30
)

// RetryBudgetOptions configures a RetryBudget. The zero value is valid:
// retries may add a fifth to the calls, with ten to spare.
type RetryBudgetOptions struct {
	// Ratio is how many retries each call earns: 0.2 lets retries add at
	// most a fifth to the calls made. Zero means DefaultBudgetRatio (0.2);
	// it must be in [MinBudgetRatio, MaxBudgetRatio]. It is kept to the
	// millionth, rounded down.
	Ratio float64
	// Burst is the most retries the budget holds at once, and what it
	// starts with: the retries allowed beyond Ratio, so that a quiet
	// service can still retry its first failures. Zero means
	// DefaultBudgetBurst (10); it must be in [1, MaxBudgetBurst].
	Burst int
}

// A RetryBudget caps retries at a share of calls, as gRPC's retry
// throttling and Finagle's retry budgets do, so that retries cannot
// multiply the load on a service that is already failing. It is a token
// bucket counted in calls rather than time: each call deposits Ratio of a
// token, each retry withdraws a whole one, and a retry without a whole
// token is not made. The bucket holds at most Burst tokens and starts full,
// so over any stretch of calls
//
//	retries ≤ Ratio × calls + Burst.
//
// A Retry takes its token before it waits to retry, and gives it back if
// its caller's context ends during the wait: that retry was not made.
//
// A RetryBudget is safe for concurrent use. One budget may be shared by the
// Retry guards of every call to the same service (RetryOptions.Budget).
// Deposit and Withdraw each read the budget and compare-and-swap it (again
// when another call changed it in between; a deposit into a full bucket, or
// a withdrawal from an empty one, only reads it) and do not allocate. Make one with
// NewRetryBudget; the zero RetryBudget holds no retry and never earns one.
type RetryBudget struct {
	micro   atomic.Int64 // tokens, in millionths
	deposit int64
	limit   int64
}

const tokenMicros = 1_000_000

// NewRetryBudget returns a full budget configured by opts, or an error
// naming the invalid field.
func NewRetryBudget(opts RetryBudgetOptions) (*RetryBudget, error) {
	ratio, burst := opts.Ratio, opts.Burst
	if ratio == 0 {
		ratio = DefaultBudgetRatio
	}
	if burst == 0 {
		burst = DefaultBudgetBurst
	}
	if math.IsNaN(ratio) || ratio < MinBudgetRatio || ratio > MaxBudgetRatio {
		return nil, fmt.Errorf("jidoka: RetryBudgetOptions.Ratio is %v, want a value in [%v, %d]", opts.Ratio, MinBudgetRatio, MaxBudgetRatio)
	}
	if burst < 1 || burst > MaxBudgetBurst {
		return nil, fmt.Errorf("jidoka: RetryBudgetOptions.Burst is %d, want a value in [1, %d]", opts.Burst, MaxBudgetBurst)
	}
	b := &RetryBudget{deposit: depositMicros(ratio), limit: int64(burst) * tokenMicros}
	b.micro.Store(b.limit)
	return b, nil
}

// depositMicros returns the millionths of a token a call earns at ratio,
// rounded down: rounded to the nearest, a ratio such as 1.5e-6 earned a
// third more retries than it allows, call after call. A product that the
// float arithmetic left a few units of its last place below a whole
// millionth (0.000249 × 10^6 is 248.99999999999997) is that millionth.
func depositMicros(ratio float64) int64 {
	x := ratio * tokenMicros
	if r := math.Round(x); r > x && r-x <= x*1e-15 {
		return int64(r)
	}
	return int64(x)
}

// Deposit credits the budget with one call.
func (b *RetryBudget) Deposit() {
	for {
		n := b.micro.Load()
		if n >= b.limit {
			return
		}
		if b.micro.CompareAndSwap(n, min(n+b.deposit, b.limit)) {
			return
		}
	}
}

// Withdraw takes one retry from the budget and reports whether there was
// one to take.
func (b *RetryBudget) Withdraw() bool {
	for {
		n := b.micro.Load()
		if n < tokenMicros {
			return false
		}
		if b.micro.CompareAndSwap(n, n-tokenMicros) {
			return true
		}
	}
}

// refund gives back a token Withdraw took for a retry that was not made.
func (b *RetryBudget) refund() {
	for {
		n := b.micro.Load()
		if b.micro.CompareAndSwap(n, min(n+tokenMicros, b.limit)) {
			return
		}
	}
}

// Tokens returns the retries the budget holds now, fractions included.
func (b *RetryBudget) Tokens() float64 { return float64(b.micro.Load()) / tokenMicros }
