package redisgcra_test

import (
	"context"
	"math"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
	"pgregory.net/rapid"

	"github.com/taipattern/taikit/heijunka"
	"github.com/taipattern/taikit/heijunka/redisgcra"
	"github.com/taipattern/taikit/internal/servers"
)

// tenYears is the longest refill time a Limit may have.
const tenYears = 10 * 365 * 24 * time.Hour

// drawLimit draws a finite Limit whose interval is a whole number of
// microseconds, so that the Store keeps it exactly and decides as a
// MemoryStore does, and of a minute or more, so that every key the Store
// writes lives (PX) in Redis for a minute of real time at least, longer
// than any run of the property. It may be closed or unlimited, take the
// whole ten years to refill, or have the longest interval a Limit may.
func drawLimit(t *rapid.T, label string) heijunka.Limit {
	switch rapid.IntRange(0, 9).Draw(t, label+" kind") {
	case 0:
		return heijunka.Limit{} // closed
	case 1:
		return heijunka.Unlimited()
	case 2:
		return heijunka.Every(tenYears)
	case 3: // a whole number of seconds that takes ten years to refill
		iv := time.Duration(rapid.SampledFrom([]int64{60, 61, 97, 3600, 86_400}).Draw(t, label+" seconds")) * time.Second
		return heijunka.Every(iv).WithBurst(int(tenYears / iv))
	}
	// Up to a million seconds: 1e9/Rate rounds back to the same whole
	// nanoseconds.
	iv := time.Duration(rapid.Int64Range(60_000_000, 1_000_000_000_000).Draw(t, label+" µs")) * time.Microsecond
	burst := rapid.IntRange(1, int(min(50, tenYears/iv))).Draw(t, label+" burst")
	l := heijunka.Limit{Rate: float64(time.Second) / float64(iv), Burst: burst}
	if l.Interval() != iv {
		t.Fatalf("interval %v kept as %v", iv, l.Interval())
	}
	return l
}

// drawN draws a number of events for limit: none, a few, the burst, one
// more, or so many that they overflow a duration.
func drawN(t *rapid.T, limit heijunka.Limit) int {
	switch rapid.IntRange(0, 5).Draw(t, "n kind") {
	case 0:
		return 0
	case 1:
		return limit.Burst
	case 2:
		return limit.Burst + 1
	case 3:
		return math.MaxInt
	}
	return rapid.IntRange(0, min(limit.Burst, 5)).Draw(t, "n")
}

// propertyPrefix gives each run of a property keys of its own.
var propertyPrefix atomic.Int64

func newPrefix(name string) string {
	return name + strconv.FormatInt(propertyPrefix.Add(1), 10) + ":"
}

// replicasOf returns a Store for each client, all with prefix.
func replicasOf(t *rapid.T, clients []*redis.Client, prefix string) []*redisgcra.Store {
	stores := make([]*redisgcra.Store, len(clients))
	for i, c := range clients {
		s, err := redisgcra.New(redisgcra.Options{Client: c, Prefix: prefix, OnError: redisgcra.FailClosed})
		if err != nil {
			t.Fatal(err)
		}
		stores[i] = s
	}
	return stores
}

// TestDecidesAsMemoryStoreProperty drives a Store (two replicas of it,
// each with a client of its own) and a heijunka.MemoryStore with the same
// random calls and requires the same Decisions: Limits drawn at random
// and changed between calls, closed and unlimited ones, ten-year refills,
// batches of none, the burst, one more than the burst and math.MaxInt,
// Resets, keys with odd bytes, times from 1970 on with any nanoseconds,
// standing still, stepping by nanoseconds, landing either side of a
// schedule, and leaping past every schedule. The clock does not go back:
// the MemoryStore forgets a key that is fresh at the time it is given,
// Redis only when the key expires in its own time (see
// TestDecidesAsMemoryStoreBeforeTheSchedule for times going back).
func TestDecidesAsMemoryStoreProperty(t *testing.T) {
	srv := servers.StartRedis(t)
	clients := []*redis.Client{redisClient(t, srv), redisClient(t, srv)}
	ctx := context.Background()
	keys := []string{"a", "b", "", "\x00", "\xff\xfe", "{t}", "sha256:x", string(make([]byte, 200))}
	rapid.Check(t, func(t *rapid.T) {
		replicas := replicasOf(t, clients, newPrefix("prop"))
		ms, err := heijunka.NewMemoryStore(heijunka.MemoryStoreOptions{MaxKeys: 16})
		if err != nil {
			t.Fatal(err)
		}
		limits := []heijunka.Limit{drawLimit(t, "limit 0"), drawLimit(t, "limit 1")}
		now := time.Unix(rapid.Int64Range(0, 3_500_000_000).Draw(t, "start s"), rapid.Int64Range(0, 999_999_999).Draw(t, "start ns"))
		for step := range rapid.IntRange(1, 60).Draw(t, "steps") {
			switch rapid.IntRange(0, 4).Draw(t, "clock") {
			case 0: // the same instant
			case 1:
				now = now.Add(time.Duration(rapid.Int64Range(0, 2000).Draw(t, "ns")))
			case 2: // near a schedule of the first limit, either side
				iv := limits[0].Interval()
				if iv <= 0 || iv == heijunka.InfDuration {
					iv = time.Minute
				}
				k := time.Duration(rapid.IntRange(0, 3).Draw(t, "intervals"))
				now = now.Add(max(0, k*iv+time.Duration(rapid.Int64Range(-2000, 2000).Draw(t, "off ns"))))
			case 3:
				now = now.Add(time.Duration(rapid.Int64Range(0, int64(time.Hour)).Draw(t, "step")))
			case 4: // past most schedules
				now = now.Add(time.Duration(rapid.Int64Range(0, int64(tenYears)).Draw(t, "leap")))
			}
			if now.Unix() > 3_700_000_000 { // the MemoryStore keeps 73 years either side of its creation
				now = time.Unix(3_700_000_000, int64(now.Nanosecond()))
			}
			key := rapid.SampledFrom(keys).Draw(t, "key")
			if rapid.IntRange(0, 19).Draw(t, "reset") == 0 {
				require.NoError(t, replicas[0].Reset(ctx, key))
				require.NoError(t, ms.Reset(ctx, key))
				continue
			}
			if rapid.IntRange(0, 9).Draw(t, "change limit") == 0 {
				limits[0], limits[1] = limits[1], drawLimit(t, "new limit")
			}
			limit := limits[rapid.IntRange(0, 1).Draw(t, "which limit")]
			n := drawN(t, limit)
			want, err := ms.Take(ctx, key, limit, now, n)
			require.NoError(t, err)
			got, err := replicas[rapid.IntRange(0, 1).Draw(t, "replica")].Take(ctx, key, limit, now, n)
			require.NoError(t, err)
			require.Equal(t, want, got, "step %d: key %q, %v, n %d at %s", step, key, limit, n, now.UTC().Format(time.RFC3339Nano))
		}
	})
}

// TestDecidesAsMemoryStoreBeforeTheSchedule drives one key of a Store and
// of a heijunka.MemoryStore with random calls at times that go back and
// forth but stay before the key's schedule (the time it is full again),
// where neither store forgets it, and requires the same Decisions: a
// clock going back counts the time gone back as that much longer to
// wait, in both.
func TestDecidesAsMemoryStoreBeforeTheSchedule(t *testing.T) {
	srv := servers.StartRedis(t)
	clients := []*redis.Client{redisClient(t, srv), redisClient(t, srv)}
	ctx := context.Background()
	rapid.Check(t, func(t *rapid.T) {
		replicas := replicasOf(t, clients, newPrefix("back"))
		ms, err := heijunka.NewMemoryStore(heijunka.MemoryStoreOptions{})
		if err != nil {
			t.Fatal(err)
		}
		limits := []heijunka.Limit{drawLimit(t, "limit 0"), drawLimit(t, "limit 1")}
		now := time.Unix(rapid.Int64Range(0, 3_500_000_000).Draw(t, "start s"), rapid.Int64Range(0, 999_999_999).Draw(t, "start ns"))
		var schedule time.Time // zero until an event is recorded
		for step := range rapid.IntRange(1, 40).Draw(t, "steps") {
			if !schedule.IsZero() {
				// Any time before the schedule, back or forth, from 1970 on.
				before := time.Duration(rapid.Int64Range(1, int64(4*tenYears)).Draw(t, "before the schedule"))
				now = schedule.Add(-before)
				if now.Unix() < 0 {
					now = time.Unix(0, int64(rapid.IntRange(0, 999).Draw(t, "ns after 1970")))
				}
			}
			if rapid.IntRange(0, 9).Draw(t, "change limit") == 0 {
				limits[0], limits[1] = limits[1], drawLimit(t, "new limit")
			}
			limit := limits[rapid.IntRange(0, 1).Draw(t, "which limit")]
			n := drawN(t, limit)
			want, err := ms.Take(ctx, "k", limit, now, n)
			require.NoError(t, err)
			got, err := replicas[rapid.IntRange(0, 1).Draw(t, "replica")].Take(ctx, "k", limit, now, n)
			require.NoError(t, err)
			require.Equal(t, want, got, "step %d: %v, n %d at %s, schedule %s", step, limit, n,
				now.UTC().Format(time.RFC3339Nano), schedule.UTC().Format(time.RFC3339Nano))
			if want.Allowed && n > 0 && want.ResetAfter > 0 {
				schedule = now.Add(want.ResetAfter)
			}
		}
	})
}
