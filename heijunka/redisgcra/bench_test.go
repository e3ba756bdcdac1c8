package redisgcra_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/taipattern/taikit/heijunka"
	"github.com/taipattern/taikit/heijunka/redisgcra"
	"github.com/taipattern/taikit/internal/servers"
)

// BenchmarkTake measures one decision against a local redis-server: a
// Background ctx, a ctx with a deadline on a client that honours it
// (ContextTimeoutEnabled), and one on a client that does not, for which the
// Store enforces the deadline itself.
func BenchmarkTake(b *testing.B) {
	srv := servers.StartRedis(b)
	limit := heijunka.PerSecond(1e5)
	for _, bc := range []struct {
		name       string
		ctxTimeout bool
		deadline   bool
	}{
		{"Background", false, false},
		{"Deadline/ContextTimeoutEnabled", true, true},
		{"Deadline/ContextTimeoutDisabled", false, true},
	} {
		b.Run(bc.name, func(b *testing.B) {
			c := redis.NewClient(&redis.Options{Addr: srv.Addr, ContextTimeoutEnabled: bc.ctxTimeout})
			defer c.Close()
			s, err := redisgcra.New(redisgcra.Options{Client: c, OnError: redisgcra.FailClosed})
			if err != nil {
				b.Fatal(err)
			}
			ctx := context.Background()
			if bc.deadline {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, time.Minute)
				defer cancel()
			}
			now := time.Now()
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				i++
				if _, err := s.Take(ctx, strconv.Itoa(i&1023), limit, now, 1); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
