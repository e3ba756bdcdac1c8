package jidoka_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/taipattern/taikit/jidoka"
	"github.com/taipattern/taikit/tai"
)

// A payment gateway behind a breaker: five failures in a row open it, and
// calls are refused without reaching the gateway.
func ExampleBreaker() {
	b, err := jidoka.NewBreaker(jidoka.BreakerOptions{Name: "gateway", OpenDuration: 30 * time.Second})
	if err != nil {
		panic(err)
	}
	ctx := context.Background()
	charge := func(context.Context) error { return errors.New("gateway timeout") }
	for range 5 {
		_ = b.Do(ctx, charge)
	}
	err = b.Do(ctx, charge)
	fmt.Println(err)
	fmt.Println(errors.Is(err, jidoka.ErrOpen), tai.RetryAfter(err) > 29*time.Second)
	// Output:
	// jidoka: breaker "gateway" is open: 5 consecutive failures
	// true true
}

// Execute returns the value of the call as well.
func ExampleExecute() {
	b, err := jidoka.NewBreaker(jidoka.BreakerOptions{Name: "fx"})
	if err != nil {
		panic(err)
	}
	rate, err := jidoka.Execute(context.Background(), b, func(context.Context) (float64, error) {
		return 1.08, nil
	})
	fmt.Println(rate, err)
	// Output: 1.08 <nil>
}

// Allow splits admission and report, for calls that do not fit in a
// function (a stream, a callback).
func ExampleBreaker_Allow() {
	b, err := jidoka.NewBreaker(jidoka.BreakerOptions{Name: "stream"})
	if err != nil {
		panic(err)
	}
	done, err := b.Allow(context.Background())
	if err != nil {
		fmt.Println("refused:", err)
		return
	}
	// ... the work ...
	done(nil)
	fmt.Println(b.State())
	// Output: closed
}

// Trip rules combine; a listener sees every change, may call the breaker
// back, and runs outside every lock.
func ExampleBreakerOptions() {
	var b *jidoka.Breaker
	b, err := jidoka.NewBreaker(jidoka.BreakerOptions{
		Name:                "gateway",
		ConsecutiveFailures: 3,
		FailureRate:         0.5, // half of
		WindowSize:          20,  // the last 20 calls
		MinimumCalls:        10,
		OnStateChange: func(ev jidoka.Event) {
			fmt.Printf("%s: %s -> %s (%s)\n", ev.Breaker, ev.From, ev.To, ev.Reason)
			if ev.To == jidoka.StateOpen {
				fmt.Println("state seen by the listener:", b.State())
			}
		},
	})
	if err != nil {
		panic(err)
	}
	ctx := context.Background()
	fail := func(context.Context) error { return errors.New("declined by issuer") }
	ok := func(context.Context) error { return nil }
	for i := range 10 {
		if i%2 == 0 {
			_ = b.Do(ctx, fail)
		} else {
			_ = b.Do(ctx, ok)
		}
	}
	b.Reset()
	// Output:
	// gateway: closed -> open (failure rate 0.5 over 10 calls reached 0.5)
	// state seen by the listener: open
	// gateway: open -> closed (reset)
}

// A line stops when someone pulls the cord, and refuses signals with the
// reason and a retry hint until it is started again.
func ExampleLine() {
	line, err := jidoka.NewLine(jidoka.LineOptions{
		Name:       "payments",
		RetryAfter: time.Minute,
		OnChange: func(ev jidoka.LineEvent) {
			fmt.Println("stopped:", ev.Stopped, "-", ev.Reason)
		},
	})
	if err != nil {
		panic(err)
	}
	ctx := context.Background()
	line.Stop("fraud rate above 2%")
	err = line.Admit(ctx, "cust_42")
	fmt.Println(err, errors.Is(err, jidoka.ErrLineStopped))
	fmt.Println("retry after:", tai.RetryAfter(err))
	line.Start()
	fmt.Println(line.Admit(ctx, "cust_42"))
	// Output:
	// stopped: true - fraud rate above 2%
	// jidoka: line "payments" is stopped: fraud rate above 2% true
	// retry after: 1m0s
	// stopped: false - fraud rate above 2%
	// <nil>
}

// A watchdog probes a new version and rolls back after two failed checks.
func ExampleWatchdog() {
	checks := 0
	rolledBack := make(chan struct{})
	w, err := jidoka.NewWatchdog(jidoka.WatchdogOptions{
		Name:     "checkout v2.3.1",
		Interval: time.Millisecond,
		// A check may take longer than the interval on a loaded machine:
		// bound it apart, or it times out and fails for that reason.
		Timeout:   time.Second,
		FailAfter: 2,
		Check: func(context.Context) error {
			checks++
			if checks > 3 {
				return errors.New("http 503")
			}
			return nil
		},
		OnFail: func(_ context.Context, ev jidoka.WatchdogEvent) {
			fmt.Printf("%s unhealthy after %d failed checks (%v): rolling back\n", ev.Watchdog, ev.Checks, ev.Err)
			close(rolledBack)
		},
	})
	if err != nil {
		panic(err)
	}
	if err := w.Start(context.Background()); err != nil {
		panic(err)
	}
	<-rolledBack
	if err := w.Shutdown(context.Background()); err != nil {
		panic(err)
	}
	fmt.Println("healthy:", w.Healthy())
	// Output:
	// checkout v2.3.1 unhealthy after 2 failed checks (http 503): rolling back
	// healthy: false
}
