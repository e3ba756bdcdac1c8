package heijunka

import (
	"context"
	"errors"
	"strconv"
	"testing"
	"time"

	"pgregory.net/rapid"
)

// TestMemoryStoreMatchesScheduleModel drives a MemoryStore, small or not,
// under either policy, with requests under Limits that change from call to
// call, and a model that keeps each key's schedule and decides with the
// pure GCRA. Every decision matches the model's; the keys held keep the
// model's schedules; a key leaves only when fresh, or, under EvictNearest,
// to make room in a full store; and RejectNew refuses a new key exactly
// when every key held still owes, with the time until the earliest is
// fresh.
func TestMemoryStoreMatchesScheduleModel(t *testing.T) {
	limits := []Limit{
		{Rate: 10, Burst: 3}, {Rate: 10, Burst: 1}, {Rate: 1, Burst: 5},
		{Rate: 1e9, Burst: 7}, {Rate: 6e8, Burst: 2}, {Rate: 0.001, Burst: 2},
		{Rate: 0, Burst: 1}, Unlimited(),
	}
	rapid.Check(t, func(t *rapid.T) {
		maxKeys := rapid.SampledFrom([]int{1, 2, 3, 17, 33, 1 << 16}).Draw(t, "maxKeys")
		policy := FullPolicy(rapid.IntRange(0, 1).Draw(t, "policy"))
		s, err := NewMemoryStore(MemoryStoreOptions{MaxKeys: maxKeys, WhenFull: policy})
		if err != nil {
			t.Fatal(err)
		}
		ctx := context.Background()
		start := time.Unix(1_900_000_000, 0)
		now := start
		model := map[string]int64{} // key: schedule, for the keys that owe or may
		for range rapid.IntRange(1, 400).Draw(t, "steps") {
			key := "k" + strconv.Itoa(rapid.IntRange(0, 40).Draw(t, "key"))
			limit := limits[rapid.IntRange(0, len(limits)-1).Draw(t, "limit")]
			switch rapid.IntRange(0, 9).Draw(t, "op") {
			case 0:
				if err := s.Reset(ctx, key); err != nil {
					t.Fatal(err)
				}
				delete(model, key)
				continue
			case 1:
				s.Sweep(now)
			case 2:
				now = now.Add(time.Duration(rapid.IntRange(0, 400).Draw(t, "ms")) * time.Millisecond)
				continue
			default:
				n := rapid.IntRange(0, limit.Burst+1).Draw(t, "n")
				p, err := limit.params()
				if err != nil {
					t.Fatal(err)
				}
				rel := s.rel(now)
				tat, known := model[key]
				if !known {
					tat = minTAT
				}
				next, want := p.decide(tat, rel, n)
				earliest, owing := int64(0), 0
				for _, v := range model {
					if v > rel {
						if owing == 0 || v < earliest {
							earliest = v
						}
						owing++
					}
				}
				got, err := s.Take(ctx, key, limit, now, n)
				if errors.Is(err, ErrStoreFull) {
					if policy != RejectNew || next == tat || tat > rel || maxKeys < 32 && owing < maxKeys {
						t.Fatalf("key %s n %d %v at %v: %v with %d keys owing", key, n, limit, now.Sub(start), err, owing)
					}
					if maxKeys < 32 && got.RetryAfter != time.Duration(earliest-rel) {
						t.Fatalf("full: RetryAfter %v, the earliest key is fresh in %v", got.RetryAfter, time.Duration(earliest-rel))
					}
					continue
				}
				if err != nil {
					t.Fatal(err)
				}
				if got != want {
					t.Fatalf("key %s n %d %v at %v: store %+v, model %+v", key, n, limit, now.Sub(start), got, want)
				}
				model[key] = next
			}
			rel := s.rel(now)
			for k, v := range model {
				tat, ok := s.scheduleOf(k)
				switch {
				case ok && tat != v:
					t.Fatalf("key %s: schedule %d, model %d", k, tat, v)
				case !ok && v > rel && (policy == RejectNew || s.Len() < maxKeys && maxKeys < 32):
					t.Fatalf("key %s dropped while it owes %v", k, time.Duration(v-rel))
				case !ok:
					delete(model, k)
				}
			}
			if l := s.Len(); l > maxKeys {
				t.Fatalf("%d keys held, MaxKeys %d", l, maxKeys)
			}
		}
	})
}

// scheduleOf returns the schedule the store holds for key, and whether it
// holds one: what a model of the store compares.
func (m *MemoryStore) scheduleOf(key string) (int64, bool) {
	sh, h1 := m.hash(key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if i, ok := sh.find(h1); ok {
		return sh.slots[i].tat, true
	}
	return 0, false
}
