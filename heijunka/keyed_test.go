package heijunka_test

import (
	"context"
	"errors"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/heijunka"
	"github.com/taipattern/taikit/tai"
)

func newKeyed(t testing.TB, l heijunka.Limit, opts heijunka.KeyedOptions) *heijunka.Keyed {
	t.Helper()
	k, err := heijunka.NewKeyed(l, opts)
	require.NoError(t, err)
	return k
}

func TestKeyedPerKey(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		k := newKeyed(t, heijunka.PerMinute(5), heijunka.KeyedOptions{Name: "velocity"})
		ctx := context.Background()
		for i := range 5 {
			d, err := k.Allow(ctx, "alice")
			require.NoError(t, err)
			require.True(t, d.Allowed)
			assert.Equal(t, 4-i, d.Remaining)
		}
		d, err := k.Allow(ctx, "alice")
		require.NoError(t, err)
		assert.False(t, d.Allowed)
		assert.Equal(t, 12*time.Second, d.RetryAfter)
		assert.Equal(t, time.Minute, d.ResetAfter)

		d, err = k.Allow(ctx, "bob")
		require.NoError(t, err)
		assert.True(t, d.Allowed, "bob has his own limit")

		time.Sleep(12 * time.Second)
		d, err = k.Allow(ctx, "alice")
		require.NoError(t, err)
		assert.True(t, d.Allowed)

		require.NoError(t, k.Reset(ctx, "alice"))
		d, err = k.AllowN(ctx, time.Now(), "alice", 5)
		require.NoError(t, err)
		assert.True(t, d.Allowed, "reset: full again")
		assert.Equal(t, "velocity", k.Name())
		assert.Equal(t, heijunka.PerMinute(5), k.Limit())
	})
}

func TestKeyedIsAGate(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		k := newKeyed(t, heijunka.PerMinute(1), heijunka.KeyedOptions{Name: "per-customer"})
		var _ tai.Namer = k
		p, err := tai.New(
			tai.PolicyFunc[int](func(context.Context, tai.Signal[int]) (tai.Decision, error) {
				return tai.Decision{Verdict: tai.Allow}, nil
			}),
			tai.ActionFunc[int, int](func(_ context.Context, s tai.Signal[int]) (int, error) { return s.Payload, nil }),
			tai.WithGates(k),
		)
		require.NoError(t, err)
		sig := func(id string) tai.Signal[int] {
			return tai.Signal[int]{ID: id, Kind: "payment", Key: "cus_1", Time: time.Now(), Payload: 1}
		}
		_, err = p.Process(context.Background(), sig("1"))
		require.NoError(t, err)
		_, err = p.Process(context.Background(), sig("2"))
		require.Error(t, err)
		assert.Equal(t, tai.Rejected, tai.OutcomeOf(err))
		assert.ErrorIs(t, err, heijunka.ErrLimited)
		assert.Equal(t, time.Minute, tai.RetryAfter(err))
		var re *tai.RejectedError
		require.ErrorAs(t, err, &re)
		assert.Equal(t, "per-customer", re.Hook)
	})
}

func TestKeyedOptions(t *testing.T) {
	k := newKeyed(t, heijunka.PerSecond(1), heijunka.KeyedOptions{})
	assert.Equal(t, "heijunka.keyed", k.Name())
	assert.IsType(t, &heijunka.MemoryStore{}, k.Store(), "a MemoryStore by default")

	store, err := heijunka.NewMemoryStore(heijunka.MemoryStoreOptions{MaxKeys: 1, WhenFull: heijunka.RejectNew})
	require.NoError(t, err)
	k = newKeyed(t, heijunka.PerHour(1), heijunka.KeyedOptions{Store: store})
	assert.Same(t, store, k.Store())
	ctx := context.Background()
	require.NoError(t, k.Admit(ctx, "a"))
	assert.ErrorIs(t, k.Admit(ctx, "b"), heijunka.ErrStoreFull, "the store given, with its options, is the one used")

	require.Error(t, k.SetLimit(heijunka.PerSecond(-1)))
	assert.Equal(t, heijunka.PerHour(1), k.Limit(), "an invalid limit changes nothing")
	require.NoError(t, k.SetLimit(heijunka.PerSecond(2)))
	assert.Equal(t, heijunka.PerSecond(2), k.Limit())
	d, err := k.Allow(ctx, "a")
	require.NoError(t, err)
	assert.Equal(t, heijunka.PerSecond(2), d.Limit, "decided under the new limit")
}

// TestNewKeyedRefusesANilStore: a Store option holding a nil pointer (a
// store left unset when none is configured) is not nil itself, and would
// panic at the first decision; NewKeyed names it instead.
func TestNewKeyedRefusesANilStore(t *testing.T) {
	var mem *heijunka.MemoryStore
	_, err := heijunka.NewKeyed(heijunka.PerSecond(1), heijunka.KeyedOptions{Store: mem})
	require.ErrorContains(t, err, "Store is a nil *heijunka.MemoryStore")
	var other *nilStore
	_, err = heijunka.NewKeyed(heijunka.PerSecond(1), heijunka.KeyedOptions{Store: other})
	require.ErrorContains(t, err, "Store is a nil *heijunka_test.nilStore")
}

// TestNewKeyedRefusesAZeroMemoryStore: the zero MemoryStore has no shards
// and would panic at the first decision; NewKeyed says so instead.
func TestNewKeyedRefusesAZeroMemoryStore(t *testing.T) {
	_, err := heijunka.NewKeyed(heijunka.PerSecond(1), heijunka.KeyedOptions{Store: &heijunka.MemoryStore{}})
	require.ErrorContains(t, err, "MemoryStore not made by NewMemoryStore")
}

// nilStore is a Store of a type of the caller's own.
type nilStore struct{ heijunka.Store }

// coarseStore is a MemoryStore that, as a store of a coarser resolution
// would, applies no Limit faster than one event a second.
type coarseStore struct{ *heijunka.MemoryStore }

func (coarseStore) CheckLimit(l heijunka.Limit) error {
	if l.Rate > 1 && !l.IsUnlimited() {
		return errors.New("faster than one event a second")
	}
	return nil
}

// TestKeyedAsksTheStoreAboutItsLimit: a Store that is a LimitChecker is
// asked about the Limit of NewKeyed and SetLimit, and one it cannot
// apply is refused there, the Limit unchanged, rather than failing every
// decision.
func TestKeyedAsksTheStoreAboutItsLimit(t *testing.T) {
	mem, err := heijunka.NewMemoryStore(heijunka.MemoryStoreOptions{})
	require.NoError(t, err)
	store := coarseStore{mem}
	_, err = heijunka.NewKeyed(heijunka.PerSecond(10), heijunka.KeyedOptions{Name: "api", Store: store})
	require.EqualError(t, err, `heijunka: "api": faster than one event a second`)

	k, err := heijunka.NewKeyed(heijunka.PerMinute(10), heijunka.KeyedOptions{Name: "api", Store: store})
	require.NoError(t, err)
	require.EqualError(t, k.SetLimit(heijunka.PerSecond(10)), `heijunka: "api": faster than one event a second`)
	assert.Equal(t, heijunka.PerMinute(10), k.Limit(), "a limit the store refuses changes nothing")
	require.NoError(t, k.SetLimit(heijunka.Unlimited()))
	assert.Equal(t, heijunka.Unlimited(), k.Limit())
}

func TestNewKeyedWithoutOptions(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		k, err := heijunka.NewKeyed(heijunka.PerMinute(2))
		require.NoError(t, err)
		assert.Equal(t, "heijunka.keyed", k.Name(), "the defaults of the zero KeyedOptions")
		assert.IsType(t, &heijunka.MemoryStore{}, k.Store())
		ctx := context.Background()
		require.NoError(t, k.Admit(ctx, "a"))
		require.NoError(t, k.Admit(ctx, "a"))
		err = k.Admit(ctx, "a")
		require.ErrorIs(t, err, heijunka.ErrLimited)
		assert.Equal(t, 30*time.Second, tai.RetryAfter(err))
		require.NoError(t, k.Admit(ctx, "b"), "per key")
	})

	_, err := heijunka.NewKeyed(heijunka.PerMinute(2), heijunka.KeyedOptions{Name: "a"}, heijunka.KeyedOptions{Name: "b"})
	require.ErrorContains(t, err, "at most one KeyedOptions, got 2")
	_, err = heijunka.NewKeyed(heijunka.PerSecond(-1))
	require.ErrorContains(t, err, "Rate -1 is negative")
}

func TestMemoryStoreOptionsValidation(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts heijunka.MemoryStoreOptions
		want string
	}{
		{"negative MaxKeys", heijunka.MemoryStoreOptions{MaxKeys: -1}, "MaxKeys -1 is negative"},
		{"huge MaxKeys", heijunka.MemoryStoreOptions{MaxKeys: 1<<31 + 1}, "MaxKeys 2147483649 exceeds 2^31"},
		{"unknown policy", heijunka.MemoryStoreOptions{WhenFull: 2}, "WhenFull 2 is not a FullPolicy"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := heijunka.NewMemoryStore(tc.opts)
			require.Error(t, err)
			assert.Contains(t, err.Error(), "heijunka: "+tc.want)
		})
	}
	_, err := heijunka.NewMemoryStore(heijunka.MemoryStoreOptions{MaxKeys: 1 << 31, WhenFull: heijunka.RejectNew})
	assert.NoError(t, err, "the bounds themselves are valid")
}

// failingStore is a Store whose backend is down: every Take fails, and the
// store falls back as a Redis store configured to fail open or closed does.
type failingStore struct {
	open bool
	err  error
}

func (s failingStore) Take(_ context.Context, _ string, limit heijunka.Limit, _ time.Time, _ int) (heijunka.Decision, error) {
	return heijunka.Decision{Allowed: s.open, Limit: limit, Remaining: 7}, s.err
}

func (s failingStore) Reset(context.Context, string) error { return s.err }

func TestKeyedStoreFailure(t *testing.T) {
	ctx := context.Background()
	down := errors.New("backend down")
	limit := heijunka.PerSecond(10)
	type report struct {
		key string
		err error
	}

	t.Run("fails open", func(t *testing.T) {
		var seen []report
		k := newKeyed(t, limit, heijunka.KeyedOptions{
			Store:        failingStore{open: true, err: down},
			OnStoreError: func(key string, err error) { seen = append(seen, report{key, err}) },
		})
		d, err := k.Allow(ctx, "alice")
		require.NoError(t, err, "a decision was made: to let the request pass")
		assert.Equal(t, heijunka.Decision{Allowed: true, Limit: limit, FailedOpen: true}, d)
		require.NoError(t, k.Admit(ctx, "bob"))
		d, err = k.AllowN(ctx, t0, "carol", 3)
		require.NoError(t, err)
		assert.True(t, d.FailedOpen)
		assert.Equal(t, []report{{"alice", down}, {"bob", down}, {"carol", down}}, seen, "every swallowed error is reported, with its key")

		k = newKeyed(t, limit, heijunka.KeyedOptions{Store: failingStore{open: true, err: down}})
		d, err = k.Allow(ctx, "alice")
		require.NoError(t, err, "no hook: still a decision")
		assert.True(t, d.FailedOpen)
	})
	t.Run("fails closed", func(t *testing.T) {
		var seen []report
		k := newKeyed(t, limit, heijunka.KeyedOptions{
			Name:         "velocity",
			Store:        failingStore{err: down},
			OnStoreError: func(key string, err error) { seen = append(seen, report{key, err}) },
		})
		d, err := k.Allow(ctx, "alice")
		require.ErrorIs(t, err, down, "no decision: the error is returned")
		assert.False(t, d.Allowed)
		assert.False(t, d.FailedOpen)
		err = k.Admit(ctx, "alice")
		require.ErrorIs(t, err, down)
		assert.NotErrorIs(t, err, heijunka.ErrLimited)
		assert.Equal(t, `heijunka: "velocity": backend down`, err.Error())
		assert.Empty(t, seen, "a returned error is not reported twice")
		assert.ErrorIs(t, k.Reset(ctx, "alice"), down, "Reset returns the store's error")
	})
	t.Run("memory store", func(t *testing.T) {
		k := newKeyed(t, limit, heijunka.KeyedOptions{})
		d, err := k.AllowN(ctx, t0, "alice", -1)
		require.ErrorContains(t, err, "n -1 is negative")
		assert.False(t, d.Allowed)
		d, err = k.AllowN(ctx, t0, "alice", 1)
		require.NoError(t, err)
		assert.True(t, d.Allowed)
		assert.False(t, d.FailedOpen, "a store that decided did not fail open")
	})
}

func TestKeyedConcurrent(t *testing.T) {
	k := newKeyed(t, heijunka.Limit{Rate: 1, Burst: 10}, heijunka.KeyedOptions{})
	ctx := context.Background()
	var admitted [4]atomic.Int64
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 400 {
				key := i % 4
				d, err := k.AllowN(ctx, t0, "k"+strconv.Itoa(key), 1)
				if err != nil {
					t.Error(g, err)
					return
				}
				if d.Allowed {
					admitted[key].Add(1)
				}
			}
		})
	}
	wg.Wait()
	for i := range admitted {
		assert.Equal(t, int64(10), admitted[i].Load(), "key %d", i)
	}
}

func TestMemoryStoreForgetsFreshKeys(t *testing.T) {
	// MaxKeys 20 makes one shard, so only the keys named are touched.
	s, err := heijunka.NewMemoryStore(heijunka.MemoryStoreOptions{MaxKeys: 20})
	require.NoError(t, err)
	ctx := context.Background()
	take := func(key string, l heijunka.Limit, at time.Time, n int) {
		t.Helper()
		_, err := s.Take(ctx, key, l, at, n)
		require.NoError(t, err)
	}
	for i := range 10 {
		take("k"+strconv.Itoa(i), heijunka.PerSecond(1), t0, 1) // fresh at t0+1s
	}
	take("slow", heijunka.PerHour(1), t0, 1) // fresh at t0+1h
	assert.Equal(t, 11, s.Len())
	take("k0", heijunka.PerSecond(1), t0, 0)
	assert.Equal(t, 11, s.Len(), "a key owing time is kept")

	// Fresh means full again: at t0+1s exactly.
	for i := range 5 {
		take("k"+strconv.Itoa(i), heijunka.PerSecond(1), t0.Add(time.Second), 0)
	}
	assert.Equal(t, 6, s.Len(), "a key found fresh is dropped")
	assert.Equal(t, 5, s.Sweep(t0.Add(time.Second)))
	assert.Equal(t, 1, s.Len())
	assert.Equal(t, 1, s.Sweep(t0.Add(time.Hour)))
	assert.Equal(t, 0, s.Len())
	assert.Equal(t, 0, s.Sweep(t0.Add(time.Hour)))

	// A shard whose every key is fresh is dropped whole on its next use,
	// also, in a new store, at times before the store was made.
	past := time.Now().Add(-time.Hour)
	for _, at := range []time.Time{t0, past} {
		if at == past {
			s, err = heijunka.NewMemoryStore(heijunka.MemoryStoreOptions{MaxKeys: 20})
			require.NoError(t, err)
		}
		for i := range 10 {
			take("k"+strconv.Itoa(i), heijunka.PerSecond(1), at, 1)
		}
		require.Equal(t, 10, s.Len())
		take("other", heijunka.PerSecond(1), at.Add(time.Second), 0)
		assert.Equal(t, 0, s.Len(), "at %v", at)
	}
}

func TestMemoryStoreFullPolicies(t *testing.T) {
	ctx := context.Background()
	slow := heijunka.PerHour(1)
	t.Run("EvictNearest", func(t *testing.T) {
		s, err := heijunka.NewMemoryStore(heijunka.MemoryStoreOptions{MaxKeys: 8})
		require.NoError(t, err)
		for i := range 8 {
			// Key i owes i+1 hours: k0 is nearest to fresh.
			_, err := s.Take(ctx, "k"+strconv.Itoa(i), slow.WithBurst(8), t0, i+1)
			require.NoError(t, err)
		}
		require.Equal(t, 8, s.Len())
		d, err := s.Take(ctx, "new", slow, t0, 1)
		require.NoError(t, err)
		assert.True(t, d.Allowed)
		assert.Equal(t, 8, s.Len(), "the bound holds")
		d, err = s.Take(ctx, "k0", slow.WithBurst(8), t0, 8)
		require.NoError(t, err)
		assert.True(t, d.Allowed, "k0, nearest to fresh, was the one evicted")
		d, err = s.Take(ctx, "k7", slow.WithBurst(8), t0, 1)
		require.NoError(t, err)
		assert.False(t, d.Allowed, "the others kept their debt")
	})
	t.Run("RejectNew", func(t *testing.T) {
		s, err := heijunka.NewMemoryStore(heijunka.MemoryStoreOptions{MaxKeys: 4, WhenFull: heijunka.RejectNew})
		require.NoError(t, err)
		for i := range 4 {
			_, err := s.Take(ctx, "k"+strconv.Itoa(i), slow, t0, 1)
			require.NoError(t, err)
		}
		d, err := s.Take(ctx, "new", slow, t0, 1)
		require.ErrorIs(t, err, heijunka.ErrStoreFull)
		assert.False(t, d.Allowed)
		assert.Equal(t, 4, s.Len())
		d, err = s.Take(ctx, "new", slow, t0.Add(time.Hour), 1)
		require.NoError(t, err, "once keys are fresh there is room")
		assert.True(t, d.Allowed)

		one, err := heijunka.NewMemoryStore(heijunka.MemoryStoreOptions{MaxKeys: 1, WhenFull: heijunka.RejectNew})
		require.NoError(t, err)
		k := newKeyed(t, slow, heijunka.KeyedOptions{Store: one})
		require.NoError(t, k.Admit(ctx, "a"))
		d, err = k.Allow(ctx, "b")
		require.ErrorIs(t, err, heijunka.ErrStoreFull, "no decision for a key the store cannot hold")
		assert.False(t, d.Allowed)
		err = k.Admit(ctx, "b")
		require.ErrorIs(t, err, heijunka.ErrStoreFull)
		assert.False(t, errors.Is(err, heijunka.ErrLimited))
		d, err = k.AllowN(ctx, time.Now(), "b", 1)
		require.ErrorIs(t, err, heijunka.ErrStoreFull, "AllowN neither")
		assert.False(t, d.Allowed)
	})
}

// TestKeyedAdmitStoreFullSaysWhenToRetry: a Keyed gate turned away by a
// MemoryStore full under RejectNew passes on the store's hint, the time
// until a key held is fresh, as the RetryAfter of its error, so a caller
// (tai.RetryAfter, an HTTP Retry-After) knows when there will be room.
func TestKeyedAdmitStoreFullSaysWhenToRetry(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		one, err := heijunka.NewMemoryStore(heijunka.MemoryStoreOptions{MaxKeys: 1, WhenFull: heijunka.RejectNew})
		require.NoError(t, err)
		k := newKeyed(t, heijunka.PerHour(1), heijunka.KeyedOptions{Name: "velocity", Store: one})
		require.NoError(t, k.Admit(ctx, "a"))
		time.Sleep(10 * time.Minute)

		d, err := k.Allow(ctx, "b")
		require.ErrorIs(t, err, heijunka.ErrStoreFull)
		require.Equal(t, 50*time.Minute, d.RetryAfter, "the store's hint")

		err = k.Admit(ctx, "b")
		require.ErrorIs(t, err, heijunka.ErrStoreFull)
		assert.False(t, errors.Is(err, heijunka.ErrLimited))
		assert.Equal(t, `heijunka: "velocity": heijunka: store full`, err.Error())
		assert.Equal(t, 50*time.Minute, tai.RetryAfter(err), "the hint reaches the gate's caller")

		time.Sleep(50 * time.Minute)
		require.NoError(t, k.Admit(ctx, "b"), "room at the time it said")
	})
}

// TestKeyedMemory puts one million distinct keys in a Keyed limiter,
// lets time pass, and checks that it then holds almost nothing.
func TestKeyedMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("one million keys")
	}
	synctest.Test(t, testKeyedMemory)
}

func testKeyedMemory(t *testing.T) {
	k := newKeyed(t, heijunka.PerMinute(5), heijunka.KeyedOptions{})
	store := k.Store().(*heijunka.MemoryStore)
	ctx := context.Background()
	const keys = 1_000_000
	names := make([]string, keys)
	for i := range names {
		names[i] = "customer-" + strconv.Itoa(i)
	}
	before := heapInUse()
	for _, key := range names {
		require.NoError(t, k.Admit(ctx, key))
	}
	require.Equal(t, keys, store.Len())
	held := heapInUse() - before
	perKey := float64(held) / keys
	t.Logf("%d live keys hold %d bytes: %.1f bytes per key", keys, held, perKey)
	assert.Less(t, perKey, 80.0)

	time.Sleep(time.Minute) // every key is full again
	for i := range 1000 {   // ordinary traffic on new keys
		require.NoError(t, k.Admit(ctx, "later-"+strconv.Itoa(i)))
	}
	assert.Equal(t, 1000, store.Len(), "a million fresh keys forgotten")
	left := heapInUse() - before
	t.Logf("after a minute: %d keys, %d bytes", store.Len(), left)
	assert.Less(t, left, int64(1<<20), "memory returned")
	runtime.KeepAlive(names)
}

func heapInUse() int64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapInuse)
}

func TestKeyedAllowsNothingAllocatedForKnownKeys(t *testing.T) {
	k := newKeyed(t, heijunka.Limit{Rate: 1, Burst: 1_000_000}, heijunka.KeyedOptions{})
	ctx := context.Background()
	_, _ = k.Allow(ctx, "known")
	allocs := testing.AllocsPerRun(1000, func() { _, _ = k.Allow(ctx, "known") })
	assert.Zero(t, allocs)
	lim := newLimiter(t, heijunka.PerSecond(1e9))
	assert.Zero(t, testing.AllocsPerRun(1000, func() { lim.Allow() }))
	assert.Zero(t, testing.AllocsPerRun(1000, func() { _ = lim.Decide() }))
	assert.Equal(t, 1.0, testing.AllocsPerRun(1000, func() { lim.Reserve().Cancel() }),
		"a Reservation is one allocation, shared by whoever holds it")
}

// TestKeyedConcurrentGrowth runs Allow on the system clock from several
// goroutines while the tables grow under them. The limit refills once an
// hour, so within the test every key admits exactly its burst.
func TestKeyedConcurrentGrowth(t *testing.T) {
	const keys, burst, rounds, workers = 2000, 3, 4, 4
	k := newKeyed(t, heijunka.Limit{Rate: 1.0 / 3600, Burst: burst}, heijunka.KeyedOptions{})
	store := k.Store().(*heijunka.MemoryStore)
	ctx := context.Background()
	var admitted [keys]atomic.Int64
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for r := range rounds {
				for i := range keys {
					key := (i + w*keys/workers + r) % keys
					d, err := k.Allow(ctx, "customer-"+strconv.Itoa(key))
					if err != nil {
						t.Error(err)
						return
					}
					if d.Allowed {
						admitted[key].Add(1)
					}
				}
			}
		})
	}
	wg.Go(func() {
		for range 50 {
			store.Sweep(time.Now()) // nothing is fresh: drops nothing
			_ = store.Len()
		}
	})
	wg.Wait()
	for i := range admitted {
		require.Equal(t, int64(burst), admitted[i].Load(), "key %d", i)
	}
	assert.Equal(t, keys, store.Len())
}

// TestMemoryStoreFullUnderContention: the Decision a full store gives with
// ErrStoreFull while other calls empty and fill the shard says to retry
// when the key held is fresh. (It was read after the shard's lock was
// let go, and could find the shard emptied: a RetryAfter of 292 years.)
func TestMemoryStoreFullUnderContention(t *testing.T) {
	ctx := context.Background()
	s, err := heijunka.NewMemoryStore(heijunka.MemoryStoreOptions{MaxKeys: 1, WhenFull: heijunka.RejectNew})
	require.NoError(t, err)
	slow := heijunka.PerHour(1)
	var wg sync.WaitGroup
	wg.Go(func() {
		for range 20000 {
			// The key held comes and goes: the shard empties, and its
			// earliest schedule is set again.
			if err := s.Reset(ctx, "held"); err != nil {
				t.Error(err)
			}
			if _, err := s.Take(ctx, "held", slow, t0, 1); err != nil && !errors.Is(err, heijunka.ErrStoreFull) {
				t.Error(err)
			}
		}
	})
	wg.Go(func() {
		for range 20000 {
			d, err := s.Take(ctx, "new", slow, t0, 1)
			if err != nil {
				assert.ErrorIs(t, err, heijunka.ErrStoreFull)
				assert.False(t, d.Allowed)
				assert.Equal(t, time.Hour, d.RetryAfter, "until the key held is fresh")
			} else if err := s.Reset(ctx, "new"); err != nil {
				t.Error(err)
			}
		}
	})
	wg.Wait()
}

// TestZeroKeyedAdmitsNothing: the zero Keyed has no Store; its calls say
// so, with no decision, instead of panicking.
func TestZeroKeyedAdmitsNothing(t *testing.T) {
	ctx := context.Background()
	var k heijunka.Keyed
	require.NotPanics(t, func() {
		d, err := k.Allow(ctx, "k")
		assert.ErrorContains(t, err, "not made by NewKeyed")
		assert.Equal(t, heijunka.Decision{RetryAfter: heijunka.InfDuration}, d)
	})
	require.NotPanics(t, func() {
		d, err := k.AllowN(ctx, time.Now(), "k", 1)
		assert.ErrorContains(t, err, "not made by NewKeyed")
		assert.False(t, d.Allowed)
	})
	require.NotPanics(t, func() {
		err := k.Admit(ctx, "k")
		assert.ErrorContains(t, err, "not made by NewKeyed")
		assert.NotErrorIs(t, err, heijunka.ErrLimited, "no decision was made")
	})
	require.NotPanics(t, func() { assert.ErrorContains(t, k.Reset(ctx, "k"), "not made by NewKeyed") })
	require.NotPanics(t, func() { assert.Equal(t, heijunka.Limit{}, k.Limit()) })
	assert.ErrorContains(t, k.SetLimit(heijunka.PerSecond(1)), "not made by NewKeyed", "a Limit set would have no Store to apply it")
	require.NotPanics(t, func() {
		_, err := k.Allow(ctx, "k")
		assert.ErrorContains(t, err, "not made by NewKeyed", "and stays so")
	})
	assert.Nil(t, k.Store())
}
