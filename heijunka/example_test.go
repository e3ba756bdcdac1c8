package heijunka_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/taipattern/taikit/heijunka"
	"github.com/taipattern/taikit/tai"
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
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	velocity, err := heijunka.NewKeyed(heijunka.PerMinute(5), heijunka.KeyedOptions{
		Name: "velocity",
		Now:  func() time.Time { return now },
	})
	if err != nil {
		panic(err)
	}
	ctx := context.Background()
	for range 5 {
		_ = velocity.Admit(ctx, "cus_1")
	}
	err = velocity.Admit(ctx, "cus_1")
	fmt.Println(errors.Is(err, heijunka.ErrLimited), tai.RetryAfter(err))
	fmt.Println(err)
	fmt.Println(velocity.Admit(ctx, "cus_2"))
	// Output:
	// true 12s
	// heijunka: "velocity" over limit 5/min burst 5; retry after 12s
	// <nil>
}

func ExampleRamp() {
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	ramp, err := heijunka.NewRamp(heijunka.RampOptions{
		Name:    "checkout-v2",
		Now:     func() time.Time { return now },
		OnEvent: func(e heijunka.RampEvent) { fmt.Println(e.Kind, e.From.Name, "->", e.To.Name) },
	})
	if err != nil {
		panic(err)
	}
	fmt.Println(ramp.Current().Stage.Name, ramp.Current().Percent)
	fmt.Println(ramp.Advance() != nil) // still baking
	now = now.Add(10 * time.Minute)
	_ = ramp.Advance()
	now = now.Add(30 * time.Minute)
	_ = ramp.Advance()
	fmt.Println(ramp.Admits("any customer"))
	// Output:
	// canary 5
	// true
	// advanced canary -> staging
	// completed staging -> prod
	// true
}

func ExampleWarmUp() {
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	w, _ := heijunka.NewWarmUp(heijunka.PerSecond(100), heijunka.WarmUpOptions{
		From: 0.1, Over: time.Minute, Steps: 4,
		Now: func() time.Time { return now },
	})
	w.Start() // e.g. from a breaker's closed event
	for _, at := range []time.Duration{0, 15 * time.Second, 30 * time.Second, 45 * time.Second, time.Minute} {
		fmt.Println(at, w.LimitAt(now.Add(at)))
	}
	// Output:
	// 0s 10/s burst 10
	// 15s 32.5/s burst 33
	// 30s 55/s burst 55
	// 45s 77.5/s burst 78
	// 1m0s 100/s burst 100
}

func ExampleLeveler() {
	l, _ := heijunka.NewLeveler(heijunka.LevelerOptions[string]{})
	for i := range 4 {
		_ = l.Push("bulk", fmt.Sprint("bulk-", i))
	}
	_ = l.Push("alice", "alice-0")
	_ = l.Push("bob", "bob-0")
	for {
		_, item, ok := l.Pop()
		if !ok {
			break
		}
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
