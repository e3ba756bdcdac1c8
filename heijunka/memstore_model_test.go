package heijunka_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"pgregory.net/rapid"

	"github.com/taipattern/taikit/heijunka"
)

// TestMemoryStoreMatchesModel drives a MemoryStore and a model (one
// Limiter per key) with the same random requests, resets and sweeps, and
// requires the same decisions: the store's table, its deletions and the
// forgetting of fresh keys lose nothing.
func TestMemoryStoreMatchesModel(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		s, err := heijunka.NewMemoryStore(heijunka.MemoryStoreOptions{MaxKeys: 1 << 16})
		if err != nil {
			t.Fatal(err)
		}
		limit := heijunka.Limit{Rate: 10, Burst: rapid.IntRange(1, 4).Draw(t, "burst")}
		model := map[string]*heijunka.Limiter{}
		ctx := context.Background()
		now := t0
		for range rapid.IntRange(1, 500).Draw(t, "steps") {
			key := "k" + strconv.Itoa(rapid.IntRange(0, 200).Draw(t, "key"))
			m := model[key]
			if m == nil {
				m, _ = heijunka.NewLimiter(limit, heijunka.LimiterOptions{})
				model[key] = m
			}
			switch rapid.IntRange(0, 9).Draw(t, "op") {
			case 0:
				if err := s.Reset(ctx, key); err != nil {
					t.Fatal(err)
				}
				delete(model, key)
			case 1:
				s.Sweep(now)
			case 2:
				now = now.Add(time.Duration(rapid.IntRange(0, 1000).Draw(t, "ms")) * time.Millisecond)
			default:
				n := rapid.IntRange(0, limit.Burst+1).Draw(t, "n")
				got, err := s.Take(ctx, key, limit, now, n)
				if err != nil {
					t.Fatal(err)
				}
				if want := m.DecideN(now, n); got != want {
					t.Fatalf("key %s n %d at %v: store %+v, model %+v", key, n, now.Sub(t0), got, want)
				}
			}
		}
	})
}
