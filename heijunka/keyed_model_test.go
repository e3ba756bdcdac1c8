package heijunka

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"testing/synctest"
	"time"

	"pgregory.net/rapid"
)

// keyedStep is one call of TestKeyedEvictsNearestToFresh.
type keyedStep struct {
	key   int
	n     int           // events asked; -1 for Allow
	sleep time.Duration // before the call
}

// TestKeyedEvictsNearestToFresh drives a Keyed over a MemoryStore of at
// most 8 keys under EvictNearest, through Allow and AllowN as the clock
// moves in a synctest bubble, against a model of each key's schedule:
// every Decision is the model's; a full store drops the key nearest to
// fresh (every key is in the sample), and only to make room for a key
// that books events; and a dropped key comes back full.
func TestKeyedEvictsNearestToFresh(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		maxKeys := rapid.IntRange(1, evictSample).Draw(rt, "maxKeys")
		limit := Limit{Rate: 10, Burst: rapid.IntRange(1, 4).Draw(rt, "burst")}
		steps := rapid.SliceOfN(rapid.Custom(func(t *rapid.T) keyedStep {
			return keyedStep{
				key:   rapid.IntRange(0, 2*maxKeys).Draw(t, "key"),
				n:     rapid.IntRange(-1, limit.Burst+1).Draw(t, "n"),
				sleep: time.Duration(rapid.IntRange(0, 30).Draw(t, "sleep")) * 10 * time.Millisecond,
			}
		}), 20, 100).Draw(rt, "steps")
		var failure string
		synctest.Test(t, func(t *testing.T) {
			failure = runKeyedModel(maxKeys, limit, steps)
		})
		if failure != "" {
			rt.Fatal(failure)
		}
	})
}

func runKeyedModel(maxKeys int, limit Limit, steps []keyedStep) string {
	s, err := NewMemoryStore(MemoryStoreOptions{MaxKeys: maxKeys})
	if err != nil {
		return err.Error()
	}
	k, err := NewKeyed(limit, KeyedOptions{Store: s})
	if err != nil {
		return err.Error()
	}
	p, _ := limit.params()
	ctx := context.Background()
	model := map[string]int64{} // the schedules of the keys that owe
	for i, st := range steps {
		time.Sleep(st.sleep)
		now := s.rel(time.Now())
		for key, tat := range model {
			if tat <= now {
				delete(model, key) // full again: as good as forgotten
			}
		}
		key := "k" + strconv.Itoa(st.key)
		n := max(st.n, 1)
		tat, owes := model[key]
		if !owes {
			tat = minTAT
		}
		next, want := p.decide(tat, now, n)
		// A full store makes room for a key that books events by
		// dropping the key nearest to fresh; of keys as near, any.
		var nearest []string
		if next != tat && !owes && len(model) == maxKeys {
			least := int64(maxSchedule)
			for _, v := range model {
				least = min(least, v)
			}
			for key, v := range model {
				if v == least {
					nearest = append(nearest, key)
				}
			}
		}
		var got Decision
		if st.n < 0 {
			got, err = k.Allow(ctx, key)
		} else {
			got, err = k.AllowN(ctx, time.Now(), key, n)
		}
		if err != nil {
			return fmt.Sprintf("step %d: key %s: %v", i, key, err)
		}
		if got != want {
			return fmt.Sprintf("step %d: key %s n %d at %v: %+v, model %+v", i, key, n, time.Duration(now), got, want)
		}
		if nearest != nil {
			var dropped []string
			for _, key := range nearest {
				if _, ok := s.scheduleOf(key); !ok {
					dropped = append(dropped, key)
				}
			}
			if len(dropped) != 1 {
				return fmt.Sprintf("step %d: key %s made room by dropping %v, not one of %v", i, key, dropped, nearest)
			}
			delete(model, dropped[0])
		}
		if next != tat {
			model[key] = next
		}
		for key, v := range model {
			if tat, ok := s.scheduleOf(key); !ok || tat != v {
				return fmt.Sprintf("step %d: key %s owes until %v: held %v at %v", i, key, time.Duration(v), ok, time.Duration(tat))
			}
		}
		if l := s.Len(); l > maxKeys {
			return fmt.Sprintf("step %d: %d keys held, MaxKeys %d", i, l, maxKeys)
		}
	}
	return ""
}
