package redisgcra_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/heijunka"
	"github.com/taipattern/taikit/heijunka/redisgcra"
	"github.com/taipattern/taikit/heijunka/storetest"
	"github.com/taipattern/taikit/internal/servers"
)

// redisClient returns a client of srv, closed when the test ends.
func redisClient(t *testing.T, srv *servers.Redis) *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: srv.Addr})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func newStore(t *testing.T, c redis.UniversalClient, opts redisgcra.Options) *redisgcra.Store {
	t.Helper()
	opts.Client = c
	if opts.OnError == 0 {
		opts.OnError = redisgcra.FailClosed
	}
	s, err := redisgcra.New(opts)
	require.NoError(t, err)
	return s
}

func TestConformance(t *testing.T) {
	srv := servers.StartRedis(t)
	c := redisClient(t, srv)
	storetest.Run(t, func(t *testing.T) heijunka.Store {
		return newStore(t, c, redisgcra.Options{})
	})
}

func TestNewValidates(t *testing.T) {
	c := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	defer c.Close()
	for _, tc := range []struct {
		name string
		opts redisgcra.Options
		want string
	}{
		{"no client", redisgcra.Options{OnError: redisgcra.FailOpen}, "Client is nil"},
		{"no policy", redisgcra.Options{Client: c}, "OnError 0"},
		{"unknown policy", redisgcra.Options{Client: c, OnError: 7}, "OnError 7"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := redisgcra.New(tc.opts)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
			assert.Contains(t, err.Error(), "redisgcra: ")
		})
	}
}

// TestTwoReplicasShareALimit runs two Keyed limiters, each with its own
// client as two replicas would, against one key. Together they admit no
// more than the limit.
func TestTwoReplicasShareALimit(t *testing.T) {
	srv := servers.StartRedis(t)
	limit := heijunka.Limit{Rate: 10, Burst: 20}

	var replicas [2]*heijunka.Keyed
	for i := range replicas {
		k, err := heijunka.NewKeyed(limit, heijunka.KeyedOptions{
			Store: newStore(t, redisClient(t, srv), redisgcra.Options{Prefix: "shared:"}),
		})
		require.NoError(t, err)
		replicas[i] = k
	}
	// Every request of a run is made at the same instant.
	run := func(now time.Time) int64 {
		var admitted atomic.Int64
		var wg sync.WaitGroup
		for _, k := range replicas {
			for range 4 {
				wg.Go(func() {
					for range 25 {
						d, err := k.AllowN(context.Background(), now, "customer-1", 1)
						if err != nil {
							t.Error(err)
						} else if d.Allowed {
							admitted.Add(1)
						}
					}
				})
			}
		}
		wg.Wait()
		return admitted.Load()
	}
	now := time.Unix(1_900_000_000, 0)
	assert.Equal(t, int64(limit.Burst), run(now), "200 requests at one instant: the burst, in total")
	assert.Equal(t, int64(10), run(now.Add(time.Second)), "one second later: ten more, in total")
}

// TestTwoReplicasServerClock lets Redis's clock decide. Time is real here,
// so the test checks the bound, not an exact count: at one event a minute
// with a burst of 3, a short run admits 3 events, maybe 4.
func TestTwoReplicasServerClock(t *testing.T) {
	srv := servers.StartRedis(t)
	limit := heijunka.PerMinute(1).WithBurst(3)
	stores := []*redisgcra.Store{
		newStore(t, redisClient(t, srv), redisgcra.Options{ServerClock: true}),
		newStore(t, redisClient(t, srv), redisgcra.Options{ServerClock: true}),
	}
	var admitted atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for _, s := range stores {
		wg.Go(func() {
			for range 50 {
				d, err := s.Take(context.Background(), "k", limit, time.Time{}, 1)
				if err != nil {
					t.Error(err)
					return
				}
				if d.Allowed {
					admitted.Add(1)
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	bound := int64(limit.Burst) + int64(elapsed/time.Minute)
	assert.GreaterOrEqual(t, admitted.Load(), int64(limit.Burst))
	assert.LessOrEqual(t, admitted.Load(), bound+1)
}

func TestKeysExpireWhenFresh(t *testing.T) {
	srv := servers.StartRedis(t)
	c := redisClient(t, srv)
	s := newStore(t, c, redisgcra.Options{Prefix: "exp:"})
	ctx := context.Background()
	now := time.Now()
	d, err := s.Take(ctx, "a", heijunka.PerMinute(6), now, 2)
	require.NoError(t, err)
	require.True(t, d.Allowed)
	ttl, err := c.PTTL(ctx, "exp:a").Result()
	require.NoError(t, err)
	// PTTL counts down in real time: allow a second of it.
	assert.LessOrEqual(t, ttl, d.ResetAfter, "the key lives until it is fresh")
	assert.Greater(t, ttl, d.ResetAfter-time.Second, "the key lives until it is fresh")

	_, err = s.Take(ctx, "b", heijunka.PerMinute(6), now, 0)
	require.NoError(t, err)
	n, err := c.Exists(ctx, "exp:b").Result()
	require.NoError(t, err)
	assert.Zero(t, n, "a request that records nothing writes nothing")
}

func TestFailurePolicy(t *testing.T) {
	// Nothing listens on port 1: every call fails at once.
	c := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1})
	defer c.Close()
	ctx := context.Background()
	limit := heijunka.PerSecond(10)

	open := newStore(t, c, redisgcra.Options{OnError: redisgcra.FailOpen})
	d, err := open.Take(ctx, "k", limit, time.Now(), 1)
	require.Error(t, err)
	assert.True(t, d.Allowed, "fail open")
	assert.True(t, d.FailedOpen)

	closed := newStore(t, c, redisgcra.Options{OnError: redisgcra.FailClosed})
	d, err = closed.Take(ctx, "k", limit, time.Now(), 1)
	require.Error(t, err)
	assert.False(t, d.Allowed, "fail closed")
	assert.False(t, d.FailedOpen)

	// Through a Keyed gate: fail open admits and reports the error, fail
	// closed rejects with the store's error (not ErrLimited).
	var seen []string
	k, err := heijunka.NewKeyed(limit, heijunka.KeyedOptions{Store: open, OnStoreError: func(key string, err error) {
		assert.ErrorContains(t, err, "redisgcra: ")
		seen = append(seen, key)
	}})
	require.NoError(t, err)
	require.NoError(t, k.Admit(ctx, "k"))
	d, err = k.Allow(ctx, "j")
	require.NoError(t, err)
	assert.True(t, d.FailedOpen)
	assert.Equal(t, []string{"k", "j"}, seen)

	k, err = heijunka.NewKeyed(limit, heijunka.KeyedOptions{Store: closed})
	require.NoError(t, err)
	err = k.Admit(ctx, "k")
	require.Error(t, err)
	assert.NotErrorIs(t, err, heijunka.ErrLimited)
	assert.Contains(t, err.Error(), "redisgcra: ")
}

func TestRefusesSubMicrosecondRates(t *testing.T) {
	c := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1})
	defer c.Close()
	s := newStore(t, c, redisgcra.Options{})
	_, err := s.Take(context.Background(), "k", heijunka.PerSecond(5e6), time.Now(), 1)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "microsecond")
}

func TestScriptReloadsAfterFlush(t *testing.T) {
	srv := servers.StartRedis(t)
	c := redisClient(t, srv)
	s := newStore(t, c, redisgcra.Options{})
	ctx := context.Background()
	now := time.Now()
	_, err := s.Take(ctx, "k", heijunka.PerSecond(1), now, 1)
	require.NoError(t, err)
	require.NoError(t, c.ScriptFlush(ctx).Err())
	d, err := s.Take(ctx, "k", heijunka.PerSecond(1), now, 1)
	require.NoError(t, err, "EVALSHA falls back to EVAL")
	assert.False(t, d.Allowed, "the state survived, the script was reloaded")
}
