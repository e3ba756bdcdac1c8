package bench

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/failsafe-go/failsafe-go/ratelimiter"
	"go.uber.org/ratelimit"
	"golang.org/x/time/rate"

	"github.com/taipattern/taikit/heijunka"
)

// Every limiter here is configured so that (almost) every call is
// admitted: the benchmarks measure the cost of a decision, not of waiting.
// The "Denied" variants measure the opposite path: a bucket that is empty.

const heijunkaRate = 1e9 // events per second: never throttles a benchmark

func newHeijunka(b *testing.B, l heijunka.Limit) *heijunka.Limiter {
	lim, err := heijunka.NewLimiter(l, heijunka.LimiterOptions{})
	if err != nil {
		b.Fatal(err)
	}
	return lim
}

func BenchmarkHeijunkaLimiterAllow(b *testing.B) {
	b.Run("heijunka", func(b *testing.B) {
		lim := newHeijunka(b, heijunka.PerSecond(heijunkaRate))
		b.ReportAllocs()
		for b.Loop() {
			lim.Allow()
		}
	})
	b.Run("x-time-rate", func(b *testing.B) {
		lim := rate.NewLimiter(rate.Limit(heijunkaRate), heijunkaRate)
		b.ReportAllocs()
		for b.Loop() {
			lim.Allow()
		}
	})
	b.Run("uber-ratelimit-take", func(b *testing.B) {
		lim := ratelimit.New(heijunkaRate)
		b.ReportAllocs()
		for b.Loop() {
			lim.Take()
		}
	})
	b.Run("failsafe-go", func(b *testing.B) {
		lim := ratelimiter.NewBursty[any](heijunkaRate/1000, time.Millisecond)
		b.ReportAllocs()
		for b.Loop() {
			lim.TryAcquirePermit()
		}
	})
}

func BenchmarkHeijunkaLimiterAllowParallel(b *testing.B) {
	b.Run("heijunka", func(b *testing.B) {
		lim := newHeijunka(b, heijunka.PerSecond(heijunkaRate))
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				lim.Allow()
			}
		})
	})
	b.Run("x-time-rate", func(b *testing.B) {
		lim := rate.NewLimiter(rate.Limit(heijunkaRate), heijunkaRate)
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				lim.Allow()
			}
		})
	})
	b.Run("uber-ratelimit-take", func(b *testing.B) {
		lim := ratelimit.New(heijunkaRate)
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				lim.Take()
			}
		})
	})
	b.Run("failsafe-go", func(b *testing.B) {
		lim := ratelimiter.NewBursty[any](heijunkaRate/1000, time.Millisecond)
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				lim.TryAcquirePermit()
			}
		})
	})
}

// BenchmarkHeijunkaLimiterDenied measures a limiter that is over its limit:
// one event per hour, long spent.
func BenchmarkHeijunkaLimiterDenied(b *testing.B) {
	b.Run("heijunka", func(b *testing.B) {
		lim := newHeijunka(b, heijunka.PerHour(1))
		lim.Allow()
		b.ReportAllocs()
		for b.Loop() {
			lim.Allow()
		}
	})
	b.Run("x-time-rate", func(b *testing.B) {
		lim := rate.NewLimiter(rate.Every(time.Hour), 1)
		lim.Allow()
		b.ReportAllocs()
		for b.Loop() {
			lim.Allow()
		}
	})
	b.Run("failsafe-go", func(b *testing.B) {
		lim := ratelimiter.NewBursty[any](1, time.Hour)
		lim.TryAcquirePermit()
		b.ReportAllocs()
		for b.Loop() {
			lim.TryAcquirePermit()
		}
	})
}

func BenchmarkHeijunkaLimiterReserve(b *testing.B) {
	b.Run("heijunka", func(b *testing.B) {
		lim := newHeijunka(b, heijunka.PerSecond(heijunkaRate))
		b.ReportAllocs()
		for b.Loop() {
			r := lim.Reserve()
			_ = r.Delay()
		}
	})
	b.Run("x-time-rate", func(b *testing.B) {
		lim := rate.NewLimiter(rate.Limit(heijunkaRate), heijunkaRate)
		b.ReportAllocs()
		for b.Loop() {
			r := lim.Reserve()
			_ = r.Delay()
		}
	})
	b.Run("failsafe-go", func(b *testing.B) {
		lim := ratelimiter.NewBursty[any](heijunkaRate/1000, time.Millisecond)
		b.ReportAllocs()
		for b.Loop() {
			_ = lim.ReservePermit()
		}
	})
}

const heijunkaKeys = 100_000

// heijunkaKeyedLimit keeps every key tracked and admitted for the length of
// a benchmark: a key revisited every few tens of milliseconds stays ahead
// of its schedule (one second per event) and far from its burst. (A key
// that falls behind its schedule is fresh and is dropped by design.)
var heijunkaKeyedLimit = heijunka.Limit{Rate: 1, Burst: 100_000_000}

func heijunkaKeyNames() []string {
	keys := make([]string, heijunkaKeys)
	for i := range keys {
		keys[i] = "customer-" + strconv.Itoa(i)
	}
	return keys
}

// BenchmarkHeijunkaKeyedAllow spreads calls over 100,000 keys; the peer is
// x/time/rate's Allow on a single bucket (it has no keyed limiter), the
// bar a per-key limiter should clear.
func BenchmarkHeijunkaKeyedAllow(b *testing.B) {
	keys := heijunkaKeyNames()
	ctx := context.Background()
	b.Run("heijunka-keyed-100k", func(b *testing.B) {
		k, err := heijunka.NewKeyed(heijunkaKeyedLimit, heijunka.KeyedOptions{})
		if err != nil {
			b.Fatal(err)
		}
		for _, key := range keys {
			_, _ = k.Allow(ctx, key)
		}
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			_, _ = k.Allow(ctx, keys[i])
			if i++; i == len(keys) {
				i = 0
			}
		}
	})
	b.Run("x-time-rate-single", func(b *testing.B) {
		lim := rate.NewLimiter(rate.Limit(heijunkaRate), heijunkaRate)
		b.ReportAllocs()
		for b.Loop() {
			lim.Allow()
		}
	})
}

func BenchmarkHeijunkaKeyedAllowParallel(b *testing.B) {
	keys := heijunkaKeyNames()
	ctx := context.Background()
	b.Run("heijunka-keyed-100k", func(b *testing.B) {
		k, err := heijunka.NewKeyed(heijunkaKeyedLimit, heijunka.KeyedOptions{})
		if err != nil {
			b.Fatal(err)
		}
		for _, key := range keys {
			_, _ = k.Allow(ctx, key)
		}
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			i := 0
			for pb.Next() {
				_, _ = k.Allow(ctx, keys[i])
				if i++; i == len(keys) {
					i = 0
				}
			}
		})
	})
	b.Run("x-time-rate-single", func(b *testing.B) {
		lim := rate.NewLimiter(rate.Limit(heijunkaRate), heijunkaRate)
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				lim.Allow()
			}
		})
	})
}
