package jidoka_test

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/taipattern/taikit/jidoka"
	"github.com/taipattern/taikit/tai"
)

// A call that outlives its Timeout sees its context end, and the caller
// gets an error that says it timed out.
func ExampleTimeout() {
	t, err := jidoka.NewTimeout(jidoka.TimeoutOptions{Name: "quote", Duration: 20 * time.Millisecond})
	if err != nil {
		panic(err)
	}
	err = t.Do(context.Background(), func(ctx context.Context) error {
		<-ctx.Done() // a slow service, which gives up when its caller does
		return ctx.Err()
	})
	fmt.Println(err)
	fmt.Println(errors.Is(err, jidoka.ErrTimeout), errors.Is(err, context.DeadlineExceeded))
	// Output:
	// jidoka: timeout "quote": call timed out after 20ms
	// true true
}

// Retry calls again after a failure, with jittered exponential backoff,
// within a budget of retries.
func ExampleRetry() {
	r, err := jidoka.NewRetry(jidoka.RetryOptions{
		Name:        "inventory",
		MaxAttempts: 4,
		BaseDelay:   time.Millisecond,
		MaxDelay:    10 * time.Millisecond,
	})
	if err != nil {
		panic(err)
	}
	calls := 0
	err = r.Do(context.Background(), func(context.Context) error {
		calls++
		if calls < 3 {
			return errors.New("503 service unavailable")
		}
		return nil
	})
	fmt.Println(calls, err)
	// Output: 3 <nil>
}

// Errors that retrying cannot mend are returned at once: Permanent marks
// them, and the default classifier never retries a cancelled call or a
// denial.
func ExamplePermanent() {
	r, err := jidoka.NewRetry(jidoka.RetryOptions{BaseDelay: time.Millisecond})
	if err != nil {
		panic(err)
	}
	calls := 0
	err = r.Do(context.Background(), func(context.Context) error {
		calls++
		return jidoka.Permanent(errors.New("400 bad request"))
	})
	fmt.Println(calls, err, errors.Is(err, jidoka.ErrPermanent))
	// Output: 1 400 bad request true
}

// A bulkhead of two slots with no queue refuses a third call while two
// run.
func ExampleBulkhead() {
	b, err := jidoka.NewBulkhead(jidoka.BulkheadOptions{Name: "reports", MaxConcurrent: 2, RetryAfter: time.Second})
	if err != nil {
		panic(err)
	}
	ctx := context.Background()
	done1, _ := b.Allow(ctx)
	done2, _ := b.Allow(ctx)
	err = b.Do(ctx, func(context.Context) error { return nil })
	fmt.Println(err)
	fmt.Println(errors.Is(err, jidoka.ErrBulkheadFull), jidoka.RetryAfter(err))
	done1(nil)
	done2(nil)
	fmt.Println(b.Do(ctx, func(context.Context) error { return nil }))
	// Output:
	// jidoka: bulkhead "reports" is full (2 calls running)
	// true 1s
	// <nil>
}

// With Do alone, the function writes its result to a variable of the
// caller, and the fallback value when it fails; Fallback decides whether
// the error stands.
func ExampleFallback() {
	fb, err := jidoka.NewFallback(jidoka.FallbackOptions{
		Name: "cached price",
		When: func(err error) bool { return !errors.Is(err, jidoka.ErrPermanent) },
		Func: func(ctx context.Context, err error) error { return nil }, // serve the cached price
	})
	if err != nil {
		panic(err)
	}
	cached := 9.99
	var price float64
	err = fb.Do(context.Background(), func(ctx context.Context) error {
		p, err := fetchPrice(ctx)
		if err != nil {
			price = cached
			return err
		}
		price = p
		return nil
	})
	fmt.Println(price, err)
	// Output: 9.99 <nil>
}

func fetchPrice(context.Context) (float64, error) { return 0, errors.New("pricing service down") }

// In a pipeline the action returns its fallback value with its error; when
// Fallback turns the error into nil, the Result carries that value.
func ExampleFallback_pipeline() {
	fb, err := jidoka.NewFallback(jidoka.FallbackOptions{
		Name: "cached price",
		Func: func(context.Context, error) error { return nil },
	})
	if err != nil {
		panic(err)
	}
	allow := tai.PolicyFunc[string](func(context.Context, tai.Signal[string]) (tai.Decision, error) {
		return tai.Decision{Verdict: tai.Allow}, nil
	})
	price := tai.ActionFunc[string, float64](func(ctx context.Context, s tai.Signal[string]) (float64, error) {
		p, err := fetchPrice(ctx)
		if err != nil {
			return 9.99, err // the cached price, for the fallback
		}
		return p, nil
	})
	p, err := tai.New(allow, price, tai.WithGuards(fb))
	if err != nil {
		panic(err)
	}
	res, err := p.Process(context.Background(), tai.Signal[string]{ID: "q1", Kind: "quote", Payload: "SKU-1"})
	fmt.Println(res.Value, res.Outcome, err)
	// Output: 9.99 succeeded <nil>
}

// A Hedge starts a second call when the first is slow, takes the first
// success and cancels the other call.
func ExampleHedge() {
	h, err := jidoka.NewHedge(jidoka.HedgeOptions{Name: "search", Delay: 10 * time.Millisecond})
	if err != nil {
		panic(err)
	}
	var calls atomic.Int32
	slowCancelled := make(chan bool, 1)
	err = h.Do(context.Background(), func(ctx context.Context) error {
		if calls.Add(1) == 1 { // the first call hangs on a slow replica
			<-ctx.Done()
			slowCancelled <- true
			return ctx.Err()
		}
		return nil // the hedge answers
	})
	fmt.Println(err, calls.Load(), <-slowCancelled)
	// Output: <nil> 2 true
}

// RetryAfter finds the retry hint in an error's tree, for code that uses
// jidoka without tai.
func ExampleRetryAfter() {
	b, err := jidoka.NewBreaker(jidoka.BreakerOptions{ConsecutiveFailures: 1, OpenDuration: time.Minute})
	if err != nil {
		panic(err)
	}
	ctx := context.Background()
	_ = b.Do(ctx, func(context.Context) error { return errors.New("down") })
	err = fmt.Errorf("charging: %w", b.Do(ctx, func(context.Context) error { return nil }))
	fmt.Println(jidoka.RetryAfter(err).Round(time.Minute))
	// Output: 1m0s
}

// The guards of a pipeline, outermost first: a fallback for what is left
// when the retries are spent; retries, each with a fresh deadline; a
// breaker that counts the timeouts; a bulkhead around the action alone.
// Fallback(Retry(Timeout(Breaker(Bulkhead(action))))).
func Example_guards() {
	fallback, _ := jidoka.NewFallback(jidoka.FallbackOptions{Func: func(context.Context, error) error { return nil }})
	retry, _ := jidoka.NewRetry(jidoka.RetryOptions{MaxAttempts: 3, BaseDelay: time.Millisecond})
	timeout, _ := jidoka.NewTimeout(jidoka.TimeoutOptions{Duration: 50 * time.Millisecond})
	breaker, _ := jidoka.NewBreaker(jidoka.BreakerOptions{ConsecutiveFailures: 10})
	bulkhead, _ := jidoka.NewBulkhead(jidoka.BulkheadOptions{MaxConcurrent: 100})

	calls := 0
	action := tai.ActionFunc[string, string](func(ctx context.Context, s tai.Signal[string]) (string, error) {
		calls++
		if calls == 1 {
			<-ctx.Done() // the first call hangs until its deadline
			return "", ctx.Err()
		}
		return "shipped " + s.Payload, nil
	})
	allow := tai.PolicyFunc[string](func(context.Context, tai.Signal[string]) (tai.Decision, error) {
		return tai.Decision{Verdict: tai.Allow}, nil
	})
	p, err := tai.New(allow, action, tai.WithGuards(fallback, retry, timeout, breaker, bulkhead))
	if err != nil {
		panic(err)
	}
	res, err := p.Process(context.Background(), tai.Signal[string]{ID: "o1", Kind: "order", Payload: "order 1"})
	fmt.Println(res.Value, err, calls)
	// Output: shipped order 1 <nil> 2
}

// Call collects the value of a call made through any guard: under a Hedge
// the function runs twice at once, and the first success's value is kept.
func ExampleCall() {
	h, err := jidoka.NewHedge(jidoka.HedgeOptions{Delay: 10 * time.Millisecond})
	if err != nil {
		panic(err)
	}
	var calls atomic.Int32
	replica, err := jidoka.Call(context.Background(), h, func(ctx context.Context) (string, error) {
		if calls.Add(1) == 1 {
			<-ctx.Done() // a slow replica, cancelled when the other answers
			return "", ctx.Err()
		}
		return "replica 2", nil
	})
	fmt.Println(replica, err)
	// Output: replica 2 <nil>
}
