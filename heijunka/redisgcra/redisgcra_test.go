package redisgcra_test

import (
	"context"
	"math"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

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

// TestConformanceWhenCallsStall runs the suite as on a machine that
// stalls a quarter of a second after each call: Redis expires a key in its
// own time, which goes on while the caller's explicit times stand still,
// so the suite must not lean on a key outliving a few hundred milliseconds.
// The stall is emulated by taking as much off the key's time to live.
func TestConformanceWhenCallsStall(t *testing.T) {
	srv := servers.StartRedis(t)
	c := redisClient(t, srv)
	storetest.Run(t, func(t *testing.T) heijunka.Store {
		return &stalling{Store: newStore(t, c, redisgcra.Options{Prefix: "stall:"}), client: c, prefix: "stall:"}
	})
}

// stalling is a Store whose keys age by stall after each Take, as they
// would if the caller stalled that long before the next.
type stalling struct {
	*redisgcra.Store
	client redis.UniversalClient
	prefix string
}

const stall = 250 * time.Millisecond

var age = redis.NewScript(`
local ttl = redis.call('PTTL', KEYS[1])
if ttl > tonumber(ARGV[1]) then
  redis.call('PEXPIRE', KEYS[1], ttl - tonumber(ARGV[1]))
elseif ttl >= 0 then
  redis.call('DEL', KEYS[1])
end
return ttl
`)

func (s *stalling) Take(ctx context.Context, key string, limit heijunka.Limit, now time.Time, n int) (heijunka.Decision, error) {
	d, err := s.Store.Take(ctx, key, limit, now, n)
	if aerr := age.Run(ctx, s.client, []string{s.prefix + key}, stall.Milliseconds()).Err(); aerr != nil {
		return d, aerr
	}
	return d, err
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
		// A nil pointer (a client left unset when no Redis is
		// configured) would panic in New, or in Take.
		{"nil *redis.Client", redisgcra.Options{Client: (*redis.Client)(nil), OnError: redisgcra.FailOpen}, "Client is a nil *redis.Client"},
		{"nil *redis.ClusterClient", redisgcra.Options{Client: (*redis.ClusterClient)(nil), OnError: redisgcra.FailOpen}, "Client is a nil *redis.ClusterClient"},
		{"nil *redis.Ring", redisgcra.Options{Client: (*redis.Ring)(nil), OnError: redisgcra.FailClosed}, "Client is a nil *redis.Ring"},
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
// more than the limit. The key lives, by Redis's clock, until its
// schedule is reached: at ten a minute two minutes, which any stall
// between the runs falls far short of (at ten a second it was two
// seconds, and a stall that long made the second run start afresh).
func TestTwoReplicasShareALimit(t *testing.T) {
	srv := servers.StartRedis(t)
	limit := heijunka.PerMinute(10).WithBurst(20)

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
	assert.Equal(t, int64(10), run(now.Add(time.Minute)), "one minute later: ten more, in total")
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
	// PTTL counts down in real time, in whole milliseconds: allow it
	// the time the two calls took, however slow the machine.
	took := time.Since(now)
	assert.LessOrEqual(t, ttl, d.ResetAfter, "the key lives until it is fresh")
	assert.GreaterOrEqual(t, ttl, d.ResetAfter-took-time.Millisecond, "the key lives until it is fresh")

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
	s := newStore(t, c, redisgcra.Options{OnError: redisgcra.FailOpen})
	for _, rate := range []float64{5e6, 1.5e6, math.Nextafter(1e6, math.Inf(1))} {
		d, err := s.Take(context.Background(), "k", heijunka.Limit{Rate: rate, Burst: 1}, time.Now(), 1)
		require.Error(t, err, "Rate %v", rate)
		assert.Contains(t, err.Error(), "microsecond")
		assert.False(t, d.Allowed, "refused, not the fallback")
		assert.Equal(t, heijunka.InfDuration, d.RetryAfter)

		// A Keyed limiter refuses the limit when it is set, rather than
		// failing every decision (even failing open).
		_, err = heijunka.NewKeyed(heijunka.Limit{Rate: rate, Burst: 1}, heijunka.KeyedOptions{Store: s})
		require.Error(t, err, "Rate %v", rate)
		assert.Contains(t, err.Error(), "microsecond")
		k, err := heijunka.NewKeyed(heijunka.Limit{Rate: 1e6, Burst: 1}, heijunka.KeyedOptions{Store: s})
		require.NoError(t, err, "one event per microsecond is taken")
		require.Error(t, k.SetLimit(heijunka.Limit{Rate: rate, Burst: 1}), "Rate %v", rate)
		assert.Equal(t, heijunka.Limit{Rate: 1e6, Burst: 1}, k.Limit())
	}
	require.NoError(t, s.CheckLimit(heijunka.Unlimited()))
	require.NoError(t, s.CheckLimit(heijunka.Limit{Burst: 1}), "closed")
}

// TestIntervalRoundsUp checks that an interval that is not a whole number
// of microseconds is rounded up, so that the Store never admits more than
// the Limit, and that whole ones are kept exactly. Each key first takes
// its whole burst, so that it lives (PX) for seconds of real time while
// the test steps its own clock by microseconds.
func TestIntervalRoundsUp(t *testing.T) {
	srv := servers.StartRedis(t)
	c := redisClient(t, srv)
	s := newStore(t, c, redisgcra.Options{})
	ctx := context.Background()
	now := time.Unix(1_900_000_000, 0)
	for i, tc := range []struct {
		rate heijunka.Limit // its Burst is ignored
		want time.Duration  // the interval kept
	}{
		{heijunka.Limit{Rate: 1e6}, time.Microsecond},
		{heijunka.Limit{Rate: 7e5}, 2 * time.Microsecond},
		{heijunka.Every(1500 * time.Nanosecond), 2 * time.Microsecond},
		{heijunka.Every(2000 * time.Nanosecond), 2 * time.Microsecond},
		{heijunka.Every(2001 * time.Nanosecond), 3 * time.Microsecond},
		{heijunka.Every(29 * time.Microsecond), 29 * time.Microsecond},
		{heijunka.Every(3 * time.Millisecond), 3 * time.Millisecond},
		{heijunka.PerMinute(7), 8_571_429 * time.Microsecond},
	} {
		burst := int(max(1, 10*time.Second/tc.want))
		limit := tc.rate.WithBurst(burst)
		key := strconv.Itoa(i)
		d, err := s.Take(ctx, key, limit, now, burst)
		require.NoError(t, err, "%v", limit)
		require.True(t, d.Allowed)
		assert.Equal(t, tc.want*time.Duration(burst), d.ResetAfter, "%v", limit)
		d, err = s.Take(ctx, key, limit, now.Add(tc.want-time.Microsecond), 1)
		require.NoError(t, err)
		assert.False(t, d.Allowed, "%v: one microsecond early", limit)
		assert.Equal(t, time.Microsecond, d.RetryAfter, "%v", limit)
		d, err = s.Take(ctx, key, limit, now.Add(tc.want), 1)
		require.NoError(t, err)
		assert.True(t, d.Allowed, "%v: on time", limit)
	}
}

// TestCorruptStoredValues writes values no Store writes and checks that
// they count as absent: the key is full, and the event recorded replaces
// the value with a schedule that expires.
func TestCorruptStoredValues(t *testing.T) {
	srv := servers.StartRedis(t)
	c := redisClient(t, srv)
	s := newStore(t, c, redisgcra.Options{Prefix: "bad:"})
	ctx := context.Background()
	now := time.Unix(1_900_000_000, 0)
	// Redis expires a written schedule by its own clock while now stands
	// still: ten-second intervals outlast any stall between the calls.
	limit := heijunka.Every(10 * time.Second).WithBurst(10)
	for _, v := range []string{
		"1e300", "inf", "-inf", "nan", "-nan", "abc", "", "-5", "-1e300", "0x10",
		"1e17",             // year 5138
		"7889270400000001", // twenty years and a microsecond after 2200
	} {
		t.Run(v, func(t *testing.T) {
			require.NoError(t, c.Set(ctx, "bad:k", v, 0).Err())
			d, err := s.Take(ctx, "k", limit, now, 0)
			require.NoError(t, err)
			assert.Equal(t, heijunka.Decision{Allowed: true, Limit: limit, Remaining: 10}, d, "full")
			d, err = s.Take(ctx, "k", limit, now, 1)
			require.NoError(t, err)
			assert.Equal(t, heijunka.Decision{Allowed: true, Limit: limit, Remaining: 9, ResetAfter: 10 * time.Second}, d)
			got, err := c.Get(ctx, "bad:k").Result()
			require.NoError(t, err)
			assert.Equal(t, strconv.FormatInt(now.UnixMicro()+10_000_000, 10), got)
			ttl, err := c.PTTL(ctx, "bad:k").Result()
			require.NoError(t, err)
			assert.Positive(t, ttl, "the value expires again")
		})
	}

	// A fraction is cut to whole microseconds.
	require.NoError(t, c.Set(ctx, "bad:f", "1900000000050000.75", 0).Err())
	d, err := s.Take(ctx, "f", limit, now, 1)
	require.NoError(t, err)
	assert.Equal(t, 10*time.Second+50*time.Millisecond, d.ResetAfter)

	// A schedule far ahead but within twenty years is kept: a Limit may
	// take ten years to refill.
	ahead := 19 * 365 * 24 * time.Hour
	require.NoError(t, c.Set(ctx, "bad:far", strconv.FormatInt(now.Add(ahead).UnixMicro(), 10), 0).Err())
	d, err = s.Take(ctx, "far", limit, now, 1)
	require.NoError(t, err)
	assert.False(t, d.Allowed)
	assert.Equal(t, ahead, d.ResetAfter)
	assert.Equal(t, ahead-limit.Interval()*time.Duration(limit.Burst-1), d.RetryAfter)

	// Twenty years to the microsecond is still kept.
	require.NoError(t, c.Set(ctx, "bad:edge", "2531152000000000", 0).Err())
	d, err = s.Take(ctx, "edge", limit, now, 0)
	require.NoError(t, err)
	assert.False(t, d.Allowed)
	assert.Equal(t, 631_152_000_000_000*time.Microsecond, d.ResetAfter)

	// So is a schedule further ahead of now than any refill time, up to
	// twenty years after 2200: a replica whose clock runs ahead of this
	// one's, or a time gone back, may have written it.
	for _, v := range []string{"2531152000000001", "7889270400000000"} {
		require.NoError(t, c.Set(ctx, "bad:ahead", v, 0).Err())
		d, err = s.Take(ctx, "ahead", limit, now, 0)
		require.NoError(t, err)
		assert.False(t, d.Allowed, v)
		ahead, err := strconv.ParseInt(v, 10, 64)
		require.NoError(t, err)
		assert.Equal(t, time.Duration(ahead-now.UnixMicro())*time.Microsecond, d.ResetAfter, v)
	}
}

// TestLongestScheduleIsKept takes the whole burst of the Limit whose
// schedule runs furthest ahead: ten years of 1001 ns intervals, each
// rounded up to 2 µs, almost twenty years. The schedule is kept, not
// taken for a value no Store writes.
func TestLongestScheduleIsKept(t *testing.T) {
	srv := servers.StartRedis(t)
	s := newStore(t, redisClient(t, srv), redisgcra.Options{})
	ctx := context.Background()
	limit := heijunka.Every(1001 * time.Nanosecond).WithBurst(int(int64(10*365*24*time.Hour) / 1001))
	require.NoError(t, limit.Validate())
	now := time.Unix(1_900_000_000, 0)
	d, err := s.Take(ctx, "k", limit, now, limit.Burst)
	require.NoError(t, err)
	require.True(t, d.Allowed)
	ahead := 2 * time.Microsecond * time.Duration(limit.Burst)
	assert.Equal(t, ahead, d.ResetAfter)
	assert.Greater(t, ahead, 19*365*24*time.Hour)

	d, err = s.Take(ctx, "k", limit, now, 1)
	require.NoError(t, err)
	assert.False(t, d.Allowed, "the schedule is kept")
	assert.Equal(t, ahead, d.ResetAfter)
	assert.Equal(t, 2*time.Microsecond, d.RetryAfter)

	// The furthest a kept schedule lies from a time a caller may pass:
	// from 1970 to twenty years after 2200, and a whole burst of this
	// Limit past it, all without overflow.
	c := redisClient(t, srv)
	require.NoError(t, c.Set(ctx, "heijunka:far", "7889270400000000", 0).Err())
	far := 7_889_270_400_000_000 * time.Microsecond
	for _, n := range []int{0, 1, limit.Burst} {
		d, err = s.Take(ctx, "far", limit, time.Unix(0, 999), n)
		require.NoError(t, err)
		assert.Equal(t, heijunka.Decision{Limit: limit, ResetAfter: far - 999,
			RetryAfter: far - 999 + 2*time.Microsecond*time.Duration(n-limit.Burst)}, d, "n %d", n)
	}
}

// TestCallerTimeOutOfRange checks that a time the Store cannot keep, such
// as the zero time.Time, is refused with an error and a denied Decision
// whatever OnError says, and writes nothing.
func TestCallerTimeOutOfRange(t *testing.T) {
	srv := servers.StartRedis(t)
	c := redisClient(t, srv)
	s := newStore(t, c, redisgcra.Options{Prefix: "t:", OnError: redisgcra.FailOpen})
	ctx := context.Background()
	limit := heijunka.PerSecond(10)
	for _, tc := range []struct {
		now  time.Time
		want string
	}{
		{time.Time{}, "zero time.Time"},
		{time.Unix(0, -1), "before 1970"},
		{time.Date(1969, 7, 20, 20, 17, 0, 0, time.UTC), "before 1970"},
		{time.Date(2200, 1, 1, 0, 0, 0, 0, time.UTC), "not before 2200"},
		{time.Unix(1<<62, 0), "not before 2200"},
	} {
		d, err := s.Take(ctx, "k", limit, tc.now, 1)
		require.Error(t, err, "%v", tc.now)
		assert.Contains(t, err.Error(), tc.want)
		assert.Contains(t, err.Error(), "redisgcra: ")
		assert.False(t, d.Allowed, "%v: refused, not the fallback", tc.now)
		assert.False(t, d.FailedOpen)
		assert.Equal(t, heijunka.InfDuration, d.RetryAfter)
	}
	n, err := c.Exists(ctx, "t:k").Result()
	require.NoError(t, err)
	assert.Zero(t, n, "nothing written")

	// The bounds themselves.
	for _, now := range []time.Time{time.Unix(0, 0), time.Date(2200, 1, 1, 0, 0, 0, 0, time.UTC).Add(-time.Microsecond)} {
		d, err := s.Take(ctx, "edge", limit, now, 1)
		require.NoError(t, err, "%v", now)
		assert.True(t, d.Allowed)
		assert.Equal(t, 100*time.Millisecond, d.ResetAfter)
		require.NoError(t, s.Reset(ctx, "edge"))
	}

	// Through a Keyed limiter the caller sees the error.
	k, err := heijunka.NewKeyed(limit, heijunka.KeyedOptions{Store: s})
	require.NoError(t, err)
	_, err = k.AllowN(ctx, time.Time{}, "k", 1)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "zero time.Time")

	// With ServerClock the time passed is ignored.
	sc := newStore(t, c, redisgcra.Options{Prefix: "t:", ServerClock: true})
	d, err := sc.Take(ctx, "k", limit, time.Time{}, 1)
	require.NoError(t, err)
	assert.True(t, d.Allowed)
}

// TestDeadlineWhileRedisIsPaused pauses Redis's writes (CLIENT PAUSE
// WRITE holds scripts and DEL) and checks that Take and Reset return at
// ctx's end, Take with the OnError fallback, whether or not the client
// enforces ctx deadlines itself, and that nothing is left running once
// Redis answers again. The pause is a minute and is lifted only after
// the calls returned, so a call that waited for Redis would take half of
// it at least; the bounds hold on a machine however loaded.
func TestDeadlineWhileRedisIsPaused(t *testing.T) {
	t.Cleanup(func() { goleak.VerifyNone(t, goleak.IgnoreCurrent()) })
	srv := servers.StartRedis(t)
	const pause = time.Minute
	for _, tc := range []struct {
		name   string
		client func() redis.UniversalClient
		policy redisgcra.FailurePolicy
		cancel bool // cancel ctx rather than let its deadline pass
	}{
		{"default options", func() redis.UniversalClient {
			return redis.NewClient(&redis.Options{Addr: srv.Addr})
		}, redisgcra.FailOpen, false},
		{"default options, cancelled", func() redis.UniversalClient {
			return redis.NewClient(&redis.Options{Addr: srv.Addr})
		}, redisgcra.FailClosed, true},
		{"ContextTimeoutEnabled", func() redis.UniversalClient {
			return redis.NewClient(&redis.Options{Addr: srv.Addr, ContextTimeoutEnabled: true})
		}, redisgcra.FailClosed, false},
		{"ContextTimeoutEnabled, deadlines disabled", func() redis.UniversalClient {
			return redis.NewClient(&redis.Options{Addr: srv.Addr, ContextTimeoutEnabled: true, ReadTimeout: -2, WriteTimeout: -2})
		}, redisgcra.FailOpen, false},
		{"Ring", func() redis.UniversalClient {
			return redis.NewRing(&redis.RingOptions{Addrs: map[string]string{"a": srv.Addr}})
		}, redisgcra.FailClosed, false},
		{"Ring, ContextTimeoutEnabled, no timeouts", func() redis.UniversalClient {
			return redis.NewRing(&redis.RingOptions{Addrs: map[string]string{"a": srv.Addr},
				ContextTimeoutEnabled: true, ReadTimeout: -1, WriteTimeout: -1})
		}, redisgcra.FailOpen, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			client := tc.client()
			t.Cleanup(func() { _ = client.Close() })
			s := newStore(t, client, redisgcra.Options{Prefix: "pause:", OnError: tc.policy})
			now := time.Now()
			_, err := s.Take(context.Background(), "k", heijunka.PerSecond(10), now, 1) // a connection in the pool
			require.NoError(t, err)

			pauser := redisClient(t, srv)
			require.NoError(t, pauser.Do(context.Background(), "CLIENT", "PAUSE", pause.Milliseconds(), "WRITE").Err())
			unpaused := false
			unpause := func() {
				if !unpaused {
					unpaused = true
					require.NoError(t, pauser.Do(context.Background(), "CLIENT", "UNPAUSE").Err())
				}
			}
			defer unpause()

			ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
			if tc.cancel {
				cancel()
				ctx, cancel = context.WithCancel(context.Background())
				time.AfterFunc(100*time.Millisecond, cancel)
			}
			start := time.Now()
			d, err := s.Take(ctx, "k", heijunka.PerSecond(10), now, 1)
			elapsed := time.Since(start)
			cancel()
			require.Error(t, err)
			if tc.cancel {
				assert.ErrorIs(t, err, context.Canceled)
			} else {
				// Also when the client ends the command at the deadline
				// with a network timeout of its own.
				assert.ErrorIs(t, err, context.DeadlineExceeded)
			}
			assert.Contains(t, err.Error(), "redisgcra: ")
			assert.Less(t, elapsed, pause/2, "returns at ctx's end, not when Redis answers")
			assert.Equal(t, tc.policy == redisgcra.FailOpen, d.Allowed, "the fallback")
			assert.Equal(t, tc.policy == redisgcra.FailOpen, d.FailedOpen)

			// A ctx already done does not wait at all.
			done, cancelDone := context.WithCancel(context.Background())
			cancelDone()
			start = time.Now()
			_, err = s.Take(done, "k", heijunka.PerSecond(10), now, 1)
			assert.ErrorIs(t, err, context.Canceled)
			assert.Less(t, time.Since(start), pause/2)

			// Reset keeps the deadline too.
			ctx, cancel = context.WithTimeout(context.Background(), 100*time.Millisecond)
			start = time.Now()
			err = s.Reset(ctx, "k")
			cancel()
			assert.ErrorIs(t, err, context.DeadlineExceeded)
			assert.Contains(t, err.Error(), "redisgcra: ")
			assert.Less(t, time.Since(start), pause/2)

			// Redis answers again; the commands the client left waiting
			// in it end, and the store decides again.
			unpause()
			_, err = s.Take(context.Background(), "k", heijunka.PerSecond(10), now, 1)
			require.NoError(t, err)
		})
	}
}

func TestScriptReloadsAfterFlush(t *testing.T) {
	srv := servers.StartRedis(t)
	c := redisClient(t, srv)
	s := newStore(t, c, redisgcra.Options{})
	ctx := context.Background()
	now := time.Now()
	// A key expires by Redis's clock when its schedule is reached: a
	// minute outlasts any stall between the calls.
	limit := heijunka.Every(time.Minute)
	_, err := s.Take(ctx, "k", limit, now, 1)
	require.NoError(t, err)
	require.NoError(t, c.ScriptFlush(ctx).Err())
	d, err := s.Take(ctx, "k", limit, now, 1)
	require.NoError(t, err, "EVALSHA falls back to EVAL")
	assert.False(t, d.Allowed, "the state survived, the script was reloaded")
}

// A Redis at its maxmemory under noeviction refuses the write of an
// admitted event: the OnError fallback decides it, with Redis's error,
// while a denial, which writes nothing, is still Redis's.
func TestRedisOutOfMemory(t *testing.T) {
	srv := servers.StartRedis(t)
	c := redisClient(t, srv)
	ctx := context.Background()
	limit := heijunka.Every(time.Minute) // "full" outlives the test
	now := time.Now()
	closed := newStore(t, c, redisgcra.Options{OnError: redisgcra.FailClosed})
	d, err := closed.Take(ctx, "full", limit, now, 1)
	require.NoError(t, err)
	require.True(t, d.Allowed)
	require.NoError(t, c.ConfigSet(ctx, "maxmemory-policy", "noeviction").Err())
	require.NoError(t, c.ConfigSet(ctx, "maxmemory", "1").Err())
	t.Cleanup(func() { _ = c.ConfigSet(ctx, "maxmemory", "0").Err() })

	d, err = closed.Take(ctx, "new", limit, now, 1)
	require.ErrorContains(t, err, "OOM")
	assert.False(t, d.Allowed, "fail closed")
	open := newStore(t, c, redisgcra.Options{OnError: redisgcra.FailOpen})
	d, err = open.Take(ctx, "new", limit, now, 1)
	require.ErrorContains(t, err, "OOM")
	assert.True(t, d.Allowed && d.FailedOpen, "fail open")

	d, err = open.Take(ctx, "full", limit, now, 1)
	require.NoError(t, err, "a denial writes nothing")
	assert.False(t, d.Allowed)
	assert.False(t, d.FailedOpen)
}

// TestKeyOfAnotherType: a key that holds a list or a hash is left alone;
// Take gets Redis's error and the fallback, and Reset clears the way.
func TestKeyOfAnotherType(t *testing.T) {
	srv := servers.StartRedis(t)
	c := redisClient(t, srv)
	ctx := context.Background()
	now := time.Unix(1_900_000_000, 0)
	limit := heijunka.PerSecond(10)
	closed := newStore(t, c, redisgcra.Options{Prefix: "typed:", OnError: redisgcra.FailClosed})
	open := newStore(t, c, redisgcra.Options{Prefix: "typed:", OnError: redisgcra.FailOpen})
	require.NoError(t, c.RPush(ctx, "typed:list", "x").Err())
	require.NoError(t, c.HSet(ctx, "typed:hash", "f", "1").Err())
	for _, key := range []string{"list", "hash"} {
		for _, n := range []int{0, 1} {
			d, err := closed.Take(ctx, key, limit, now, n)
			require.ErrorContains(t, err, "WRONGTYPE", "%s, n %d", key, n)
			assert.Contains(t, err.Error(), "redisgcra: ")
			assert.Equal(t, heijunka.Decision{Limit: limit}, d, "fail closed")
			d, err = open.Take(ctx, key, limit, now, n)
			require.ErrorContains(t, err, "WRONGTYPE")
			assert.Equal(t, heijunka.Decision{Allowed: true, Limit: limit, FailedOpen: true}, d, "fail open")
		}
	}
	typ, err := c.Type(ctx, "typed:hash").Result()
	require.NoError(t, err)
	assert.Equal(t, "hash", typ, "not overwritten")

	require.NoError(t, closed.Reset(ctx, "hash"))
	d, err := closed.Take(ctx, "hash", limit, now, 1)
	require.NoError(t, err)
	assert.True(t, d.Allowed)
}

// TestSubMicrosecondTimes passes times with a fraction of a microsecond,
// as time.Now gives, and checks that the Store never admits an event
// before the Limit does: two events are never closer than the interval
// (plus the burst's tolerance), though the Store keeps whole microseconds.
// It may admit up to a microsecond later than the Limit would.
func TestSubMicrosecondTimes(t *testing.T) {
	srv := servers.StartRedis(t)
	s := newStore(t, redisClient(t, srv), redisgcra.Options{Prefix: "sub:"})
	ctx := context.Background()
	base := time.Unix(1_900_000_000, 0)
	for _, tc := range []struct {
		name  string
		limit heijunka.Limit
		first time.Duration // the first event, after base
	}{
		// Redis expires a key by its own clock when the schedule the key
		// holds is reached, while these times stand still: bursts keep
		// every schedule ten seconds or more ahead, so that no key expires
		// between the calls of a slow run.
		{"one a microsecond", heijunka.Every(time.Microsecond).WithBurst(10_000_000), 900 * time.Nanosecond},
		{"one in ten seconds", heijunka.Every(10 * time.Second), 900 * time.Nanosecond},
		{"a burst of three", heijunka.Every(4 * time.Second).WithBurst(3), 999 * time.Nanosecond},
		{"a rounded interval", heijunka.Every(1500 * time.Nanosecond).WithBurst(5_000_000), 100 * time.Nanosecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mem, err := heijunka.NewMemoryStore(heijunka.MemoryStoreOptions{})
			require.NoError(t, err)
			first := base.Add(tc.first)
			burst := tc.limit.Burst
			for _, st := range []heijunka.Store{mem, s} {
				d, err := st.Take(ctx, tc.name, tc.limit, first, burst)
				require.NoError(t, err)
				require.True(t, d.Allowed, "%T: the whole burst at first", st)
			}
			// Just under an interval later the Limit admits nothing; nor
			// may the Store, whose schedule from the first event must not
			// lose the first event's fraction of a microsecond.
			early := first.Add(tc.limit.Interval() - 100*time.Nanosecond)
			want, err := mem.Take(ctx, tc.name, tc.limit, early, 1)
			require.NoError(t, err)
			require.False(t, want.Allowed, "the Limit admits nothing before an interval has passed")
			got, err := s.Take(ctx, tc.name, tc.limit, early, 1)
			require.NoError(t, err)
			assert.False(t, got.Allowed, "admitted %v after the burst, under the interval %v", early.Sub(first), tc.limit.Interval())
			assert.Positive(t, got.RetryAfter)

			// A microsecond after the interval (rounded up to whole
			// microseconds) it admits again.
			iv := (tc.limit.Interval() + time.Microsecond - 1).Truncate(time.Microsecond)
			got, err = s.Take(ctx, tc.name, tc.limit, first.Add(iv+time.Microsecond), 1)
			require.NoError(t, err)
			assert.True(t, got.Allowed, "a microsecond after the interval")
		})
	}
}

// TestLongKeysTakeBoundedSpace takes keys of a megabyte, as a key made of
// a request header may be: Redis keeps a name of bounded length for each,
// not the megabyte, while each long key keeps a limit of its own. Keys up
// to 128 bytes are kept as they are.
func TestLongKeysTakeBoundedSpace(t *testing.T) {
	srv := servers.StartRedis(t)
	c := redisClient(t, srv)
	s := newStore(t, c, redisgcra.Options{Prefix: "long:"})
	ctx := context.Background()
	now := time.Now()
	limit := heijunka.Every(time.Minute) // keys outlive the test
	long := strings.Repeat("k", 1<<20)
	other := long[:len(long)-1] + "x"
	for _, key := range []string{long, other} {
		d, err := s.Take(ctx, key, limit, now, 1)
		require.NoError(t, err)
		assert.True(t, d.Allowed, "each long key is a limit of its own")
	}
	d, err := s.Take(ctx, long, limit, now, 1)
	require.NoError(t, err)
	assert.False(t, d.Allowed, "the same long key")

	names, err := c.Keys(ctx, "long:*").Result()
	require.NoError(t, err)
	require.Len(t, names, 2)
	for _, name := range names {
		assert.LessOrEqual(t, len(name), len("long:")+128, "the name Redis keeps")
	}

	require.NoError(t, s.Reset(ctx, long))
	d, err = s.Take(ctx, long, limit, now, 1)
	require.NoError(t, err)
	assert.True(t, d.Allowed, "Reset forgets a long key")
	d, err = s.Take(ctx, other, limit, now, 1)
	require.NoError(t, err)
	assert.False(t, d.Allowed, "and only that one")

	short := strings.Repeat("s", 128)
	_, err = s.Take(ctx, short, limit, now, 1)
	require.NoError(t, err)
	n, err := c.Exists(ctx, "long:"+short).Result()
	require.NoError(t, err)
	assert.Equal(t, int64(1), n, "a key of 128 bytes is kept as it is")

	// A short key that spells a long key's name is not that key.
	names, err = c.Keys(ctx, "long:sha256:*").Result()
	require.NoError(t, err)
	require.NotEmpty(t, names)
	for _, name := range names {
		d, err := s.Take(ctx, strings.TrimPrefix(name, "long:"), limit, now, 1)
		require.NoError(t, err)
		assert.True(t, d.Allowed, "%s names a long key's limit", name)
	}
}

// TestBracedKeysKeepNoHashTag takes keys that hold a Redis Cluster hash
// tag ("{...}"), as a key made of request data may: were they kept as
// they are, the tag a client chose would pick the Cluster slot of each,
// and a client sending many keys of one tag would put them all on one
// node. They are kept as their digest, which holds no brace, and each
// is still a limit of its own.
func TestBracedKeysKeepNoHashTag(t *testing.T) {
	srv := servers.StartRedis(t)
	c := redisClient(t, srv)
	s := newStore(t, c, redisgcra.Options{Prefix: "tag:"})
	ctx := context.Background()
	now := time.Now()
	limit := heijunka.Every(time.Minute) // keys outlive the test
	keys := []string{"user{42}a", "user{42}b", "{x", "y}", "plain"}
	for _, key := range keys {
		d, err := s.Take(ctx, key, limit, now, 1)
		require.NoError(t, err)
		assert.True(t, d.Allowed, "%s: each key is a limit of its own", key)
	}
	for _, key := range keys {
		d, err := s.Take(ctx, key, limit, now, 1)
		require.NoError(t, err)
		assert.False(t, d.Allowed, "%s: the same key", key)
	}
	names, err := c.Keys(ctx, "tag:*").Result()
	require.NoError(t, err)
	assert.Len(t, names, len(keys))
	for _, name := range names {
		assert.NotContains(t, name, "{", "the name Redis keeps")
		assert.NotContains(t, name, "}", "the name Redis keeps")
	}
	n, err := c.Exists(ctx, "tag:plain").Result()
	require.NoError(t, err)
	assert.Equal(t, int64(1), n, "a key without a brace is kept as it is")

	require.NoError(t, s.Reset(ctx, "user{42}a"))
	d, err := s.Take(ctx, "user{42}a", limit, now, 1)
	require.NoError(t, err)
	assert.True(t, d.Allowed, "Reset forgets a braced key")
}

// TestClockFarBehindGainsNothing passes, after a key's burst was taken,
// a time decades earlier, as a replica whose clock came up at 1970 would,
// or a caller that read a time in the wrong unit: as on a MemoryStore,
// the time gone back is that much longer to wait, and the key's schedule
// stands for the replicas whose clocks are right.
func TestClockFarBehindGainsNothing(t *testing.T) {
	srv := servers.StartRedis(t)
	ctx := context.Background()
	limit := heijunka.PerMinute(5) // each key lives in Redis for a minute
	now := time.Unix(1_900_000_000, 0)
	for _, back := range []time.Time{
		time.Unix(0, 0),
		time.Unix(1_900_000_000/1000, 0), // seconds read as milliseconds
		now.Add(-25 * 365 * 24 * time.Hour),
	} {
		t.Run(back.UTC().Format(time.DateOnly), func(t *testing.T) {
			mem, err := heijunka.NewMemoryStore(heijunka.MemoryStoreOptions{})
			require.NoError(t, err)
			right := newStore(t, redisClient(t, srv), redisgcra.Options{Prefix: "behind" + strconv.FormatInt(back.Unix(), 10) + ":"})
			wrong := newStore(t, redisClient(t, srv), redisgcra.Options{Prefix: "behind" + strconv.FormatInt(back.Unix(), 10) + ":"})
			for _, s := range []heijunka.Store{mem, right} {
				d, err := s.Take(ctx, "k", limit, now, limit.Burst)
				require.NoError(t, err)
				require.True(t, d.Allowed)
			}
			want, err := mem.Take(ctx, "k", limit, back, 1)
			require.NoError(t, err)
			require.False(t, want.Allowed)
			got, err := wrong.Take(ctx, "k", limit, back, 1)
			require.NoError(t, err)
			assert.Equal(t, want, got, "a clock gone back waits as long as it went back")

			want, err = mem.Take(ctx, "k", limit, now, 1)
			require.NoError(t, err)
			got, err = right.Take(ctx, "k", limit, now, 1)
			require.NoError(t, err)
			assert.Equal(t, want, got, "the schedule stands")
			assert.False(t, got.Allowed)
		})
	}
}

// TestReadOnlyReplica points a Store at a read-only replica, as a client
// left on a node that a failover demoted would be: Redis refuses the
// write of an admitted event, which gets the OnError fallback with
// Redis's READONLY error, while a denial and n = 0, which write nothing,
// are still decided, on the replica's copy of the schedule.
func TestReadOnlyReplica(t *testing.T) {
	primary := servers.StartRedis(t)
	pc := redisClient(t, primary)
	ctx := context.Background()
	require.NoError(t, pc.ConfigSet(ctx, "repl-diskless-sync-delay", "0").Err())
	now := time.Now()
	limit := heijunka.Every(time.Minute) // "full" outlives the test
	d, err := newStore(t, pc, redisgcra.Options{}).Take(ctx, "full", limit, now, 1)
	require.NoError(t, err)
	require.True(t, d.Allowed)

	bin := servers.Binary(t, "redis-server", "redis-server")
	port := servers.FreePort(t)
	host, primaryPort, err := net.SplitHostPort(primary.Addr)
	require.NoError(t, err)
	cmd := exec.Command(bin, "--port", strconv.Itoa(port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--daemonize", "no", "--loglevel", "warning",
		"--dir", t.TempDir(), "--replicaof", host, primaryPort)
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	rc := redisClient(t, &servers.Redis{Addr: "127.0.0.1:" + strconv.Itoa(port)})
	// Wait for the replica to listen and to hold the primary's data.
	synced := false
	for range 3000 {
		if n, err := rc.Exists(ctx, "heijunka:full").Result(); err == nil && n == 1 {
			synced = true
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	require.True(t, synced, "the replica did not sync")

	for _, policy := range []redisgcra.FailurePolicy{redisgcra.FailOpen, redisgcra.FailClosed} {
		s := newStore(t, rc, redisgcra.Options{OnError: policy})
		d, err := s.Take(ctx, "new", limit, now, 1)
		require.ErrorContains(t, err, "READONLY")
		assert.Contains(t, err.Error(), "redisgcra: ")
		assert.Equal(t, heijunka.Decision{Allowed: policy == redisgcra.FailOpen, Limit: limit, FailedOpen: policy == redisgcra.FailOpen}, d, "the fallback")

		d, err = s.Take(ctx, "new", limit, now, 0)
		require.NoError(t, err, "n = 0 writes nothing")
		assert.Equal(t, heijunka.Decision{Allowed: true, Limit: limit, Remaining: 1}, d)
		d, err = s.Take(ctx, "full", limit, now, 1)
		require.NoError(t, err, "a denial writes nothing")
		assert.False(t, d.Allowed)
		assert.False(t, d.FailedOpen)
		assert.Positive(t, d.RetryAfter)
	}
}
