package jidoka_test

import (
	"context"
	"testing"
	"time"

	"github.com/taipattern/taikit/jidoka"
)

var benchConfigs = []struct {
	name string
	opts jidoka.BreakerOptions
}{
	{"Consecutive", jidoka.BreakerOptions{ConsecutiveFailures: 5}},
	{"CountWindow", jidoka.BreakerOptions{FailureRate: 0.5, WindowSize: 100, MinimumCalls: 10}},
	{"TimeWindow", jidoka.BreakerOptions{FailureRate: 0.5, WindowDuration: 10 * time.Second, WindowBuckets: 10, MinimumCalls: 10}},
	{"SlowCall", jidoka.BreakerOptions{FailureRate: 0.5, SlowCallRate: 0.5, SlowCallDuration: time.Second, WindowSize: 100}},
}

func succeed(context.Context) error { return nil }

// BenchmarkBreakerClosed measures a successful call through a closed
// breaker, for each kind of trip rule.
func BenchmarkBreakerClosed(b *testing.B) {
	ctx := context.Background()
	for _, bc := range benchConfigs {
		br, err := jidoka.NewBreaker(bc.opts)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if err := br.Do(ctx, succeed); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(bc.name+"Parallel", func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if err := br.Do(ctx, succeed); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

// BenchmarkBreakerAllow measures the two-step form in the closed state.
func BenchmarkBreakerAllow(b *testing.B) {
	br, err := jidoka.NewBreaker(jidoka.BreakerOptions{})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		done, err := br.Allow(ctx)
		if err != nil {
			b.Fatal(err)
		}
		done(nil)
	}
}

// BenchmarkBreakerExecute measures the generic form in the closed state.
func BenchmarkBreakerExecute(b *testing.B) {
	br, err := jidoka.NewBreaker(jidoka.BreakerOptions{})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	fn := func(context.Context) (int, error) { return 1, nil }
	b.ReportAllocs()
	for b.Loop() {
		if _, err := jidoka.Execute(ctx, br, fn); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkBreakerOpen measures a refused call.
func BenchmarkBreakerOpen(b *testing.B) {
	br, err := jidoka.NewBreaker(jidoka.BreakerOptions{})
	if err != nil {
		b.Fatal(err)
	}
	br.Trip("benchmark")
	ctx := context.Background()
	b.Run("Serial", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if br.Do(ctx, succeed) == nil {
				b.Fatal("admitted")
			}
		}
	})
	b.Run("Parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if br.Do(ctx, succeed) == nil {
					b.Error("admitted")
					return
				}
			}
		})
	})
}

// BenchmarkLineAdmit measures the gate of a running and a stopped line.
func BenchmarkLineAdmit(b *testing.B) {
	l, err := jidoka.NewLine(jidoka.LineOptions{Name: "checkout"})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	b.Run("Running", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if l.Admit(ctx, "k") != nil {
				b.Fatal("stopped")
			}
		}
	})
	l.Stop("benchmark")
	b.Run("Stopped", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if l.Admit(ctx, "k") == nil {
				b.Fatal("running")
			}
		}
	})
}

// BenchmarkTimeout measures a successful call through a Timeout, under a
// caller's context that can never end and under one that can, and one that
// asks its context for Done; each once on one goroutine and once on all
// cores (Parallel), where the calls' contexts meet in the Timeout's lists.
func BenchmarkTimeout(b *testing.B) {
	to, err := jidoka.NewTimeout(jidoka.TimeoutOptions{Duration: time.Minute})
	if err != nil {
		b.Fatal(err)
	}
	cancelable, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := func(ctx context.Context) error { _ = ctx.Done(); return nil }
	for _, bc := range []struct {
		name string
		ctx  context.Context
		fn   func(context.Context) error
	}{
		{"Background", context.Background(), succeed},
		{"Cancelable", cancelable, succeed},
		{"BackgroundDone", context.Background(), done},
		{"CancelableDone", cancelable, done},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if err := to.Do(bc.ctx, bc.fn); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(bc.name+"Parallel", func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if err := to.Do(bc.ctx, bc.fn); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

// BenchmarkHedge times a Hedge around a call that returns before its
// delay, as most do: nothing is hedged, and what is measured is the cost
// of being ready to hedge.
func BenchmarkHedge(b *testing.B) {
	for _, bc := range []struct {
		name string
		opts jidoka.HedgeOptions
	}{
		{"Delay", jidoka.HedgeOptions{Delay: time.Minute}},
		{"Quantile", jidoka.HedgeOptions{Delay: time.Millisecond, Quantile: 0.95}},
	} {
		h, err := jidoka.NewHedge(bc.opts)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if err := h.Do(context.Background(), succeed); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(bc.name+"Parallel", func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if err := h.Do(context.Background(), succeed); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}
