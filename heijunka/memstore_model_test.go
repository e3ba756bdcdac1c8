package heijunka_test

import (
	"context"
	"errors"
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

// TestMemoryStoreRejectNewMatchesModel drives a small MemoryStore under
// RejectNew and a model (one Limiter per key) with the same requests: the
// store returns ErrStoreFull exactly when it is asked for a new key while
// every key it holds still owes, and otherwise decides as the model does.
func TestMemoryStoreRejectNewMatchesModel(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		maxKeys := rapid.IntRange(1, 8).Draw(t, "maxKeys")
		s, err := heijunka.NewMemoryStore(heijunka.MemoryStoreOptions{MaxKeys: maxKeys, WhenFull: heijunka.RejectNew})
		if err != nil {
			t.Fatal(err)
		}
		limit := heijunka.Limit{Rate: 10, Burst: rapid.IntRange(1, 4).Draw(t, "burst")}
		model := map[string]*heijunka.Limiter{}
		ctx := context.Background()
		now := t0
		owing := func() int {
			n := 0
			for _, m := range model {
				if m.DecideN(now, 0).ResetAfter > 0 {
					n++
				}
			}
			return n
		}
		for range rapid.IntRange(1, 300).Draw(t, "steps") {
			key := "k" + strconv.Itoa(rapid.IntRange(0, 20).Draw(t, "key"))
			switch rapid.IntRange(0, 9).Draw(t, "op") {
			case 0:
				if err := s.Reset(ctx, key); err != nil {
					t.Fatal(err)
				}
				delete(model, key)
				continue
			case 1:
				now = now.Add(time.Duration(rapid.IntRange(0, 300).Draw(t, "ms")) * time.Millisecond)
				continue
			}
			m := model[key]
			fresh := m == nil || m.DecideN(now, 0).ResetAfter == 0
			if m == nil {
				m, _ = heijunka.NewLimiter(limit, heijunka.LimiterOptions{})
			}
			n := rapid.IntRange(1, limit.Burst).Draw(t, "n")
			full := fresh && owing() >= maxKeys
			got, err := s.Take(ctx, key, limit, now, n)
			if full {
				if !errors.Is(err, heijunka.ErrStoreFull) || got.Allowed || got.RetryAfter <= 0 {
					t.Fatalf("key %s at %v with %d keys owing: %v, %+v", key, now.Sub(t0), owing(), err, got)
				}
				continue
			}
			if err != nil {
				t.Fatalf("key %s at %v with %d keys owing: %v", key, now.Sub(t0), owing(), err)
			}
			model[key] = m
			if want := m.AllowN(now, n); got.Allowed != want {
				t.Fatalf("key %s n %d at %v: store %+v, model %v", key, n, now.Sub(t0), got, want)
			}
		}
	})
}
