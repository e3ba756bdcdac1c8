package heijunka_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/taipattern/taikit/heijunka"
)

// benchLimit admits every call of a benchmark.
var benchLimit = heijunka.PerSecond(1e9)

func benchLimiter(b *testing.B) *heijunka.Limiter {
	l, err := heijunka.NewLimiter(benchLimit, heijunka.LimiterOptions{})
	if err != nil {
		b.Fatal(err)
	}
	return l
}

func BenchmarkLimiterAllow(b *testing.B) {
	l := benchLimiter(b)
	b.ReportAllocs()
	for b.Loop() {
		l.Allow()
	}
}

func BenchmarkLimiterAllowParallel(b *testing.B) {
	l := benchLimiter(b)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			l.Allow()
		}
	})
}

func BenchmarkLimiterAllowNFixedTime(b *testing.B) {
	l := benchLimiter(b)
	now := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		now = now.Add(time.Nanosecond)
		l.AllowN(now, 1)
	}
}

func BenchmarkLimiterDecide(b *testing.B) {
	l := benchLimiter(b)
	b.ReportAllocs()
	for b.Loop() {
		_ = l.Decide()
	}
}

func BenchmarkLimiterReserve(b *testing.B) {
	l := benchLimiter(b)
	b.ReportAllocs()
	for b.Loop() {
		r := l.Reserve()
		_ = r.OK()
	}
}

// keyedBenchLimit keeps keys tracked and admitted for a whole benchmark:
// one second per event, a huge burst.
var keyedBenchLimit = heijunka.Limit{Rate: 1, Burst: 100_000_000}

func benchKeyed(b *testing.B, n int) (*heijunka.Keyed, []string) {
	k, err := heijunka.NewKeyed(keyedBenchLimit, heijunka.KeyedOptions{})
	if err != nil {
		b.Fatal(err)
	}
	keys := make([]string, n)
	for i := range keys {
		keys[i] = "customer-" + strconv.Itoa(i)
		_, _ = k.Allow(context.Background(), keys[i])
	}
	return k, keys
}

func BenchmarkKeyedAllow(b *testing.B) {
	for _, n := range []int{1, 1_000, 100_000, 1_000_000} {
		b.Run(strconv.Itoa(n)+"-keys", func(b *testing.B) {
			k, keys := benchKeyed(b, n)
			ctx := context.Background()
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				_, _ = k.Allow(ctx, keys[i])
				if i++; i == len(keys) {
					i = 0
				}
			}
		})
	}
}

func BenchmarkKeyedAllowParallel(b *testing.B) {
	k, keys := benchKeyed(b, 100_000)
	ctx := context.Background()
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
}

// BenchmarkKeyedAdmitDenied measures the rejection path of the gate: one
// key over its limit, an error value per call.
func BenchmarkKeyedAdmitDenied(b *testing.B) {
	k, err := heijunka.NewKeyed(heijunka.PerHour(1), heijunka.KeyedOptions{})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	_ = k.Admit(ctx, "k")
	b.ReportAllocs()
	for b.Loop() {
		_ = k.Admit(ctx, "k")
	}
}
