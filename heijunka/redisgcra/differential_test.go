package redisgcra_test

import (
	"context"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/heijunka"
	"github.com/taipattern/taikit/heijunka/redisgcra"
	"github.com/taipattern/taikit/internal/servers"
)

// TestDecidesAsMemoryStore drives a Store and a heijunka.MemoryStore with
// the same pseudo-random calls and requires the same Decisions: several
// limits on the same keys (a limit changed), bursts, batches of more
// events than the burst, zero events, Resets, and a clock that stands
// still, steps, or leaps past every schedule so that keys become fresh
// and are forgotten. Times are whole multiples of ten seconds, and so are
// the limits' intervals, so that the Store's microseconds lose nothing and
// every key it writes lives (PX) for at least ten seconds of real time,
// far longer than the test: the two stores forget a key only when the
// test's clock makes it fresh. The clock does not go back, as a store may
// forget a fresh key (the MemoryStore at once, Redis when the key
// expires), and a clock going back then finds it full.
func TestDecidesAsMemoryStore(t *testing.T) {
	srv := servers.StartRedis(t)
	c := redisClient(t, srv)
	ctx := context.Background()
	limits := []heijunka.Limit{
		heijunka.Every(10 * time.Second).WithBurst(3),
		heijunka.Every(30 * time.Second),
		heijunka.Every(20 * time.Second).WithBurst(10),
		heijunka.Every(time.Minute).WithBurst(1000),
		{}, // closed
		heijunka.Unlimited(),
	}
	keys := []string{"a", "b", "{tag}c", "", "\x00\xff\n", "ключ", strings.Repeat("k", 4096)}
	for seed := range uint64(10) {
		t.Run(strconv.FormatUint(seed, 10), func(t *testing.T) {
			rs := newStore(t, c, redisgcra.Options{Prefix: "diff" + strconv.FormatUint(seed, 10) + ":"})
			// One shard: a key made fresh by the clock is forgotten with
			// the rest of the shard, and a new key sweeps the others.
			ms, err := heijunka.NewMemoryStore(heijunka.MemoryStoreOptions{MaxKeys: 16})
			require.NoError(t, err)
			rng := rand.New(rand.NewPCG(seed, 1))
			now := time.Unix(1_900_000_000, 0)
			for step := range 1500 {
				switch r := rng.IntN(100); {
				case r < 40: // the same instant
				case r < 90:
					now = now.Add(time.Duration(rng.IntN(10)) * 10 * time.Second)
				default: // past every schedule
					now = now.Add(time.Duration(rng.IntN(1000)) * 10 * time.Second)
				}
				key := keys[rng.IntN(len(keys))]
				if rng.IntN(50) == 0 {
					require.NoError(t, rs.Reset(ctx, key))
					require.NoError(t, ms.Reset(ctx, key))
					continue
				}
				limit := limits[rng.IntN(len(limits))]
				n := rng.IntN(limit.Burst + 3)
				want, err := ms.Take(ctx, key, limit, now, n)
				require.NoError(t, err)
				got, err := rs.Take(ctx, key, limit, now, n)
				require.NoError(t, err)
				require.Equal(t, want, got, "step %d: key %.20q, %v, n %d at %v", step, key, limit, n, now)
			}
		})
	}
}

// TestDecidesAsMemoryStoreAtTheEdges is TestDecidesAsMemoryStore at the
// edges: intervals that are whole microseconds but not whole seconds,
// times a few microseconds either side of a schedule, a burst that takes
// the whole ten years to refill, batches of exactly the burst, one more
// and math.MaxInt, a clock that starts at 1970, and keys with spaces,
// braces (Redis Cluster hash tags), the prefix itself, emoji and 80 000
// bytes. Intervals stay at ten seconds or more, so that every key lives
// (PX) far longer than the test, as there.
func TestDecidesAsMemoryStoreAtTheEdges(t *testing.T) {
	srv := servers.StartRedis(t)
	c := redisClient(t, srv)
	ctx := context.Background()
	limits := []heijunka.Limit{
		heijunka.Every(10*time.Second + time.Microsecond),
		heijunka.Every(10*time.Second + 7*time.Microsecond).WithBurst(2),
		heijunka.Every(11 * time.Second).WithBurst(5),
		heijunka.Every(10 * time.Second).WithBurst(31_536_000), // ten years
		heijunka.Every(10 * 365 * 24 * time.Hour),
	}
	keys := []string{"a", "edge0:a", ":", " spaced key ", "😀", "{", "}", "{}", "{a}b", strings.Repeat("é", 40_000)}
	for seed := range uint64(10) {
		t.Run(strconv.FormatUint(seed, 10), func(t *testing.T) {
			rs := newStore(t, c, redisgcra.Options{Prefix: "edge" + strconv.FormatUint(seed, 10) + ":"})
			ms, err := heijunka.NewMemoryStore(heijunka.MemoryStoreOptions{MaxKeys: 16})
			require.NoError(t, err)
			rng := rand.New(rand.NewPCG(seed, 2))
			now := time.Unix(1_000_000_000, 0)
			if seed%2 == 1 {
				now = time.Unix(0, 0)
			}
			for step := range 1500 {
				switch r := rng.IntN(100); {
				case r < 30: // the same instant
				case r < 60:
					now = now.Add(time.Duration(rng.IntN(5)) * time.Microsecond)
				case r < 90: // near a schedule, never back
					now = now.Add(max(0, time.Duration(rng.IntN(10))*10*time.Second+time.Duration(rng.IntN(20)-9)*time.Microsecond))
				default: // past every schedule but the ten-year ones
					now = now.Add(time.Duration(rng.IntN(1000)) * 10 * time.Second)
				}
				key := keys[rng.IntN(len(keys))]
				if rng.IntN(50) == 0 {
					require.NoError(t, rs.Reset(ctx, key))
					require.NoError(t, ms.Reset(ctx, key))
					continue
				}
				limit := limits[rng.IntN(len(limits))]
				var n int
				switch r := rng.IntN(10); r {
				case 0:
					n = math.MaxInt
				case 1:
					n = limit.Burst
				case 2:
					n = limit.Burst + 1
				case 3:
					n = limit.Burst - 1
				default:
					n = rng.IntN(min(limit.Burst, 5) + 2)
				}
				want, err := ms.Take(ctx, key, limit, now, n)
				require.NoError(t, err)
				got, err := rs.Take(ctx, key, limit, now, n)
				require.NoError(t, err)
				require.Equal(t, want, got, "step %d: key %.20q, %v, n %d at %v", step, key, limit, n, now)
			}
		})
	}
}

// TestDecidesAsMemoryStoreAtNanoseconds is TestDecidesAsMemoryStore with
// times that are not whole microseconds, as time.Now gives, and
// intervals that are: the Store keeps a schedule's nanoseconds, so it
// decides as the MemoryStore does, never letting an event in a fraction
// of a microsecond early. Intervals stay at ten seconds or more, so that
// every key lives (PX) far longer than the test.
func TestDecidesAsMemoryStoreAtNanoseconds(t *testing.T) {
	srv := servers.StartRedis(t)
	c := redisClient(t, srv)
	ctx := context.Background()
	limits := []heijunka.Limit{
		heijunka.Every(10 * time.Second),
		heijunka.Every(10*time.Second + time.Microsecond).WithBurst(3),
		heijunka.Every(20 * time.Second).WithBurst(10),
		heijunka.Every(10 * time.Second).WithBurst(31_536_000), // ten years
	}
	keys := []string{"a", "b", "{c}"}
	for seed := range uint64(10) {
		t.Run(strconv.FormatUint(seed, 10), func(t *testing.T) {
			rs := newStore(t, c, redisgcra.Options{Prefix: "ns" + strconv.FormatUint(seed, 10) + ":"})
			ms, err := heijunka.NewMemoryStore(heijunka.MemoryStoreOptions{MaxKeys: 16})
			require.NoError(t, err)
			rng := rand.New(rand.NewPCG(seed, 3))
			now := time.Unix(1_900_000_000, int64(rng.IntN(1000)))
			for step := range 1500 {
				switch r := rng.IntN(100); {
				case r < 20: // the same instant
				case r < 50: // within a microsecond or two
					now = now.Add(time.Duration(rng.IntN(2000)))
				case r < 90: // near a schedule, either side, never back
					now = now.Add(max(0, time.Duration(rng.IntN(4))*10*time.Second+time.Duration(rng.IntN(4000)-2000)))
				default: // past every schedule but the ten-year ones
					now = now.Add(time.Duration(rng.IntN(1000))*10*time.Second + time.Duration(rng.IntN(1000)))
				}
				key := keys[rng.IntN(len(keys))]
				limit := limits[rng.IntN(len(limits))]
				n := rng.IntN(min(limit.Burst, 4) + 2)
				want, err := ms.Take(ctx, key, limit, now, n)
				require.NoError(t, err)
				got, err := rs.Take(ctx, key, limit, now, n)
				require.NoError(t, err)
				require.Equal(t, want, got, "step %d: key %q, %v, n %d at %v", step, key, limit, n, now.Format(time.RFC3339Nano))
			}
		})
	}
}

// TestDecidesAsMemoryStoreAtRandomLimits is TestDecidesAsMemoryStore with
// Limits drawn at random, each a rate whose interval is a whole number of
// microseconds from ten seconds to a minute and a burst up to twenty, two
// replicas (each a Store with a client of its own) taking turns on the
// same keys, and times that step by any number of nanoseconds: the shared
// schedule decides as the MemoryStore's does.
func TestDecidesAsMemoryStoreAtRandomLimits(t *testing.T) {
	srv := servers.StartRedis(t)
	ctx := context.Background()
	for seed := range uint64(10) {
		t.Run(strconv.FormatUint(seed, 10), func(t *testing.T) {
			prefix := "rand" + strconv.FormatUint(seed, 10) + ":"
			replicas := []*redisgcra.Store{
				newStore(t, redisClient(t, srv), redisgcra.Options{Prefix: prefix}),
				newStore(t, redisClient(t, srv), redisgcra.Options{Prefix: prefix}),
			}
			ms, err := heijunka.NewMemoryStore(heijunka.MemoryStoreOptions{MaxKeys: 16})
			require.NoError(t, err)
			rng := rand.New(rand.NewPCG(seed, 4))
			var limits []heijunka.Limit
			for len(limits) < 5 {
				iv := time.Duration(10_000_000+rng.IntN(50_000_000)) * time.Microsecond
				l := heijunka.Limit{Rate: float64(time.Second) / float64(iv), Burst: 1 + rng.IntN(20)}
				require.NoError(t, l.Validate())
				if l.Interval()%time.Microsecond == 0 { // not every rate rounds back to whole microseconds
					limits = append(limits, l)
				}
			}
			now := time.Unix(1_900_000_000, int64(rng.IntN(1e9)))
			for step := range 1000 {
				switch r := rng.IntN(100); {
				case r < 20: // the same instant
				case r < 50: // within a few microseconds
					now = now.Add(time.Duration(rng.IntN(3000)))
				case r < 90:
					now = now.Add(time.Duration(rng.Int64N(int64(40 * time.Second))))
				default: // past most schedules
					now = now.Add(time.Duration(rng.Int64N(int64(1000 * time.Second))))
				}
				key := strconv.Itoa(rng.IntN(3))
				limit := limits[rng.IntN(len(limits))]
				n := rng.IntN(limit.Burst + 2)
				want, err := ms.Take(ctx, key, limit, now, n)
				require.NoError(t, err)
				got, err := replicas[rng.IntN(len(replicas))].Take(ctx, key, limit, now, n)
				require.NoError(t, err)
				require.Equal(t, want, got, "step %d: key %q, %v (interval %v), n %d at %v", step, key, limit, limit.Interval(), n, now.Format(time.RFC3339Nano))
			}
		})
	}
}
