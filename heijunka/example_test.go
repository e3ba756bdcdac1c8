package heijunka_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/taipattern/taikit/heijunka"
)

func ExampleLimiter() {
	lim, err := heijunka.NewLimiter(heijunka.PerSecond(2), heijunka.LimiterOptions{})
	if err != nil {
		panic(err)
	}
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := range 3 {
		fmt.Println(i, lim.AllowN(now, 1))
	}
	d := lim.DecideN(now, 1)
	fmt.Println("retry after", d.RetryAfter)
	fmt.Println("later", lim.AllowN(now.Add(500*time.Millisecond), 1))
	// Output:
	// 0 true
	// 1 true
	// 2 false
	// retry after 500ms
	// later true
}

func ExampleLimiter_ReserveN() {
	lim, _ := heijunka.NewLimiter(heijunka.Every(100*time.Millisecond), heijunka.LimiterOptions{})
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	for range 3 {
		r := lim.ReserveN(now, 1)
		fmt.Println(r.OK(), r.DelayFrom(now))
	}
	// Output:
	// true 0s
	// true 100ms
	// true 200ms
}

func ExampleKeyed() {
	velocity, err := heijunka.NewKeyed(heijunka.PerMinute(5), heijunka.KeyedOptions{Name: "velocity"})
	if err != nil {
		panic(err)
	}
	ctx := context.Background()

	// Decisions at a given time, for RateLimit headers.
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	for range 5 {
		_, _ = velocity.AllowN(ctx, now, "cus_1", 1)
	}
	d, _ := velocity.AllowN(ctx, now, "cus_1", 1)
	fmt.Println(d.Allowed, d.Remaining, d.RetryAfter, d.ResetAfter)

	// As a tai.Gate, at the current time.
	for range 5 {
		_ = velocity.Admit(ctx, "cus_2")
	}
	err = velocity.Admit(ctx, "cus_2")
	fmt.Println(errors.Is(err, heijunka.ErrLimited))
	fmt.Println(velocity.Admit(ctx, "cus_3"))
	// Output:
	// false 0 12s 1m0s
	// true
	// <nil>
}

// NewKeyed needs no options for a limiter held in memory.
func ExampleNewKeyed() {
	perIP, err := heijunka.NewKeyed(heijunka.PerSecond(10))
	if err != nil {
		panic(err)
	}
	d, _ := perIP.Allow(context.Background(), "192.0.2.1")
	fmt.Println(d.Allowed, d.Remaining, perIP.Name())
	// Output: true 9 heijunka.keyed
}

func ExampleRamp() {
	ramp, err := heijunka.NewRamp(heijunka.RampOptions{
		Name: "checkout-v2",
		Salt: "checkout-v2",
		OnEvent: func(e heijunka.RampEvent) {
			fmt.Printf("%s from %s: %s\n", e.Kind, e.From.Name, e.Reason)
		},
	})
	if err != nil {
		panic(err)
	}
	st := ramp.Current()
	fmt.Println(st.Stage.Name, st.Percent, st.BakedAt.Sub(st.Since))
	fmt.Println(errors.Is(ramp.Advance(), heijunka.ErrBaking))
	// A health check fails: nobody gets the new version any more.
	_ = ramp.Rollback("error rate 7%")
	fmt.Println(ramp.Admits("cus_1"))
	// Output:
	// canary 5 10m0s
	// true
	// rolled back from canary: error rate 7%
	// false
}

func ExampleRamp_Advance() {
	ramp, err := heijunka.NewRamp(heijunka.RampOptions{
		Stages: []heijunka.RampStage{
			{Name: "canary", Percent: 5},
			{Name: "staging", Percent: 25},
			{Name: "prod", Percent: 100},
		},
		OnEvent: func(e heijunka.RampEvent) { fmt.Println(e.Kind, e.From.Name, "->", e.To.Name) },
	})
	if err != nil {
		panic(err)
	}
	_ = ramp.Advance()
	_ = ramp.Advance()
	fmt.Println(ramp.Admits("any customer"))
	// Output:
	// advanced canary -> staging
	// completed staging -> prod
	// true
}

func ExampleWarmUp() {
	lim, err := heijunka.NewLimiter(heijunka.PerSecond(100), heijunka.LimiterOptions{})
	if err != nil {
		panic(err)
	}
	w, err := heijunka.NewWarmUp(lim, heijunka.WarmUpOptions{From: 0.1, Over: time.Minute, Steps: 4})
	if err != nil {
		panic(err)
	}
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	_ = w.StartAt(now) // e.g. from a breaker's closed event
	for _, at := range []time.Duration{0, 15 * time.Second, 30 * time.Second, 45 * time.Second, time.Minute} {
		fmt.Println(at, w.LimitAt(now.Add(at)))
	}
	// The limiter is used as ever; just after the start it lets 10 pass.
	fmt.Println(lim.AllowN(now, 10), lim.AllowN(now, 1))
	// Output:
	// 0s 10/s burst 10
	// 15s 32.5/s burst 33
	// 30s 55/s burst 55
	// 45s 77.5/s burst 78
	// 1m0s 100/s burst 100
	// true false
}

func ExampleLeveler() {
	l, _ := heijunka.NewLeveler(heijunka.LevelerOptions[string]{})
	for i := range 4 {
		_ = l.Push("bulk", fmt.Sprint("bulk-", i))
	}
	_ = l.Push("alice", "alice-0")
	_ = l.Push("bob", "bob-0")
	for range l.Len() {
		_, item, _ := l.Pop()
		fmt.Println(item)
	}
	// Output:
	// bulk-0
	// alice-0
	// bob-0
	// bulk-1
	// bulk-2
	// bulk-3
}
