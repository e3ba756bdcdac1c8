package bench

import (
	"context"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/failsafe-go/failsafe-go/ratelimiter"
	"go.uber.org/ratelimit"
	"golang.org/x/time/rate"

	"github.com/taipattern/taikit/heijunka"
)

// Every limiter here is configured so that every call is admitted at once
// (uber's Take never waits): the benchmarks measure the cost of a decision,
// not of waiting, and fail on a refusal, so that a misconfigured limiter
// cannot time its other path. The "Denied" variants measure the opposite
// path, a bucket that is empty, and fail on an admission.

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
			if !lim.Allow() {
				b.Fatal("refused")
			}
		}
	})
	b.Run("x-time-rate", func(b *testing.B) {
		lim := rate.NewLimiter(rate.Limit(heijunkaRate), heijunkaRate)
		b.ReportAllocs()
		for b.Loop() {
			if !lim.Allow() {
				b.Fatal("refused")
			}
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
			if !lim.TryAcquirePermit() {
				b.Fatal("refused")
			}
		}
	})
}

func BenchmarkHeijunkaLimiterAllowParallel(b *testing.B) {
	b.Run("heijunka", func(b *testing.B) {
		lim := newHeijunka(b, heijunka.PerSecond(heijunkaRate))
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if !lim.Allow() {
					b.Error("refused")
					return
				}
			}
		})
	})
	b.Run("x-time-rate", func(b *testing.B) {
		lim := rate.NewLimiter(rate.Limit(heijunkaRate), heijunkaRate)
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if !lim.Allow() {
					b.Error("refused")
					return
				}
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
				if !lim.TryAcquirePermit() {
					b.Error("refused")
					return
				}
			}
		})
	})
}

// BenchmarkHeijunkaLimiterDenied measures a limiter that is over its limit:
// one event per hour, spent before the timer starts. Each spends its one
// event at once (a limiter that refused it is not over its limit) and
// must refuse every call after.
func BenchmarkHeijunkaLimiterDenied(b *testing.B) {
	b.Run("heijunka", func(b *testing.B) {
		lim := newHeijunka(b, heijunka.PerHour(1))
		if !lim.Allow() {
			b.Fatal("first event refused")
		}
		b.ReportAllocs()
		for b.Loop() {
			if lim.Allow() {
				b.Fatal("admitted")
			}
		}
	})
	b.Run("x-time-rate", func(b *testing.B) {
		lim := rate.NewLimiter(rate.Every(time.Hour), 1)
		if !lim.Allow() {
			b.Fatal("first event refused")
		}
		b.ReportAllocs()
		for b.Loop() {
			if lim.Allow() {
				b.Fatal("admitted")
			}
		}
	})
	b.Run("failsafe-go", func(b *testing.B) {
		lim := ratelimiter.NewBursty[any](1, time.Hour)
		if !lim.TryAcquirePermit() {
			b.Fatal("first event refused")
		}
		b.ReportAllocs()
		for b.Loop() {
			if lim.TryAcquirePermit() {
				b.Fatal("admitted")
			}
		}
	})
}

// BenchmarkHeijunkaLimiterReserve books one event and asks how long to
// wait for it: none, at a rate that never throttles.
func BenchmarkHeijunkaLimiterReserve(b *testing.B) {
	b.Run("heijunka", func(b *testing.B) {
		lim := newHeijunka(b, heijunka.PerSecond(heijunkaRate))
		b.ReportAllocs()
		for b.Loop() {
			r := lim.Reserve()
			if !r.OK() || r.Delay() != 0 {
				b.Fatal("reservation must wait")
			}
		}
	})
	b.Run("x-time-rate", func(b *testing.B) {
		lim := rate.NewLimiter(rate.Limit(heijunkaRate), heijunkaRate)
		b.ReportAllocs()
		for b.Loop() {
			r := lim.Reserve()
			if !r.OK() || r.Delay() != 0 {
				b.Fatal("reservation must wait")
			}
		}
	})
	b.Run("failsafe-go", func(b *testing.B) {
		lim := ratelimiter.NewBursty[any](heijunkaRate/1000, time.Millisecond)
		b.ReportAllocs()
		for b.Loop() {
			if lim.ReservePermit() != 0 {
				b.Fatal("reservation must wait")
			}
		}
	})
}

const heijunkaKeys = 100_000

// heijunkaKeyedLimit keeps every key tracked and admitted for the length of
// a benchmark: a key revisited every few tens of milliseconds stays ahead
// of its schedule (one second per event) and far from its burst. (A key
// that falls behind its schedule is fresh and is dropped by design.)
var heijunkaKeyedLimit = heijunka.Limit{Rate: 1, Burst: 100_000_000}

// keyedAllow lets key in before the timer starts and fails b unless k
// admits it.
func keyedAllow(b *testing.B, k *heijunka.Keyed, key string) {
	if d, err := k.Allow(context.Background(), key); err != nil || !d.Allowed {
		b.Fatalf("key %s: %+v, %v", key, d, err)
	}
}

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
			keyedAllow(b, k, key)
		}
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			if d, err := k.Allow(ctx, keys[i]); err != nil || !d.Allowed {
				b.Fatalf("key %s: %+v, %v", keys[i], d, err)
			}
			if i++; i == len(keys) {
				i = 0
			}
		}
	})
	b.Run("x-time-rate-single", func(b *testing.B) {
		lim := rate.NewLimiter(rate.Limit(heijunkaRate), heijunkaRate)
		b.ReportAllocs()
		for b.Loop() {
			if !lim.Allow() {
				b.Fatal("refused")
			}
		}
	})
}

func BenchmarkHeijunkaKeyedAllowParallel(b *testing.B) {
	keys := heijunkaKeyNames()
	b.Run("heijunka-keyed-100k", func(b *testing.B) { benchKeyedAllowParallel(b, keys) })
	b.Run("x-time-rate-single", func(b *testing.B) {
		lim := rate.NewLimiter(rate.Limit(heijunkaRate), heijunkaRate)
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if !lim.Allow() {
					b.Error("refused")
					return
				}
			}
		})
	})
}

// benchKeyedAllowParallel spreads calls from every processor over keys,
// each let in before the timer starts.
func benchKeyedAllowParallel(b *testing.B, keys []string) {
	ctx := context.Background()
	k, err := heijunka.NewKeyed(heijunkaKeyedLimit, heijunka.KeyedOptions{})
	if err != nil {
		b.Fatal(err)
	}
	for _, key := range keys {
		keyedAllow(b, k, key)
	}
	b.ReportAllocs()
	b.ResetTimer() // RunParallel does not: the keys' setup is not timed
	var seq atomic.Int64
	b.RunParallel(func(pb *testing.PB) {
		// Goroutines start apart, as concurrent requests are mostly
		// for different keys; started together, they would walk the
		// same keys in step.
		i := int(seq.Add(1)) * 7919 % len(keys)
		for pb.Next() {
			if d, err := k.Allow(ctx, keys[i]); err != nil || !d.Allowed {
				b.Errorf("key %s: %+v, %v", keys[i], d, err)
				return
			}
			if i++; i == len(keys) {
				i = 0
			}
		}
	})
}
