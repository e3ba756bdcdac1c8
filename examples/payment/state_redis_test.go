package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/examples/internal/svc"
	"github.com/taipattern/taikit/internal/servers"
)

func redisState(t *testing.T) (*RedisState, *redis.Client) {
	t.Helper()
	opts, err := redis.ParseURL(servers.StartRedis(t).URL())
	require.NoError(t, err)
	rdb := redis.NewClient(opts)
	t.Cleanup(func() { _ = rdb.Close() })
	return NewRedisState(rdb, "test:"), rdb
}

// Attempts a release before wrote — members the base-36 nanoseconds and
// a suffix, scores the nanoseconds as a float64 — are counted after an
// upgrade, to the nanosecond at the window's edge.
func TestRedisStateCountsAttemptsWrittenBefore(t *testing.T) {
	s, rdb := redisState(t)
	ctx := context.Background()
	t0 := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	for _, at := range []time.Time{t0.Add(100 * time.Nanosecond), t0.Add(30 * time.Second)} {
		ns := at.UnixNano()
		require.NoError(t, rdb.ZAdd(ctx, "test:attempts:old", redis.Z{
			Score:  float64(ns),
			Member: strconv.FormatInt(ns, 36) + ":" + strconv.FormatUint(uint64(ns)*7919, 36),
		}).Err())
	}
	require.NoError(t, rdb.PExpire(ctx, "test:attempts:old", time.Minute).Err())

	n, err := s.Attempt(ctx, "old", t0.Add(time.Minute+50*time.Nanosecond), time.Minute)
	require.NoError(t, err)
	assert.Equal(t, 3, n, "the first attempt is 50 ns inside the window")
	n, err = s.Attempt(ctx, "old", t0.Add(time.Minute+100*time.Nanosecond), time.Minute)
	require.NoError(t, err)
	assert.Equal(t, 3, n, "the first attempt is out, exactly a window ago")
	ttl, err := rdb.PTTL(ctx, "test:attempts:old").Result()
	require.NoError(t, err)
	assert.Greater(t, ttl, 59*time.Second, "the set expires a window after the last attempt")
}

// Redis counts the attempts in a window as the in-memory store does, to
// the nanosecond at its edge, whatever the times' size: before 1970, and
// where the nanoseconds gain a digit in base 36 (36^12, in 2120). A few attempts
// are counted late, after later ones, as another replica's would be.
func TestRedisStateWindowEdgeIsExact(t *testing.T) {
	s, _ := redisState(t)
	m := NewMemoryState(0)
	ctx := context.Background()
	for i, base := range []time.Time{
		time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC),
		time.Date(1969, 12, 31, 23, 58, 0, 0, time.UTC),
		time.Unix(0, -300), // the window's start at 1970: attempts either side
		time.Unix(0, 4738381338321616896-60*int64(time.Second)-300),
	} {
		customer := "edge" + strconv.Itoa(i)
		for _, d := range []time.Duration{0, 1, 100, 101, 127, 255, 256, 257, 300, 301, 383, 511, 600, 1000, 2047, 2049, 5000} {
			for _, at := range []time.Time{base.Add(d), base.Add(time.Minute + 300)} {
				want, err := m.Attempt(ctx, customer, at, time.Minute)
				require.NoError(t, err)
				got, err := s.Attempt(ctx, customer, at, time.Minute)
				require.NoError(t, err)
				require.Equal(t, want, got, fmt.Sprintf("%s at %d", customer, at.UnixNano()))
			}
		}
	}
}

// A Redis Cluster node given as -redis-url is refused at the start, with
// the reason: a single-server client cannot follow its redirections, and
// the customer state's scripts touch several keys of a customer at once,
// which a cluster refuses unless they share a hash slot — every payment
// would otherwise fail (502) on the first script.
func TestRedisClusterRefusedAtStart(t *testing.T) {
	dir := t.TempDir()
	node := servers.StartRedis(t, "--cluster-enabled", "yes", "--cluster-config-file", dir+"/nodes.conf", "--dir", dir)
	cfg := testConfig(t)
	cfg.RedisURL = svc.NewURL(node.URL())
	s, err := NewService(context.Background(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err == nil {
		_ = s.Close(context.Background())
		t.Fatal("the service started on a Redis Cluster node")
	}
	assert.Contains(t, err.Error(), "Redis Cluster")
	assert.Contains(t, err.Error(), node.Addr)
}
