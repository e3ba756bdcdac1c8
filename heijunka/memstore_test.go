package heijunka_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/heijunka"
	"github.com/taipattern/taikit/heijunka/storetest"
)

func TestMemoryStoreConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) heijunka.Store {
		s, err := heijunka.NewMemoryStore(heijunka.MemoryStoreOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}

// TestMemoryStoreForgetsOnlyWhatItRemoves fills one shard's table so that
// keys collide and sit in clusters, then removes keys one at a time (by
// Reset, and by Sweep of the keys that became fresh) and checks after each
// removal that every other key still owes what it owed. Removal shifts
// keys back within their cluster; a key moved before the slot its lookup
// starts from would be lost, and its debt forgiven. The hash seeds are
// random per store, so many stores are tried.
func TestMemoryStoreForgetsOnlyWhatItRemoves(t *testing.T) {
	ctx := context.Background()
	owe := heijunka.PerHour(1)     // one event, owed for an hour
	short := heijunka.PerMinute(1) // one event, owed for a minute
	for store := range 200 {
		// MaxKeys 20 makes one shard: every key shares one table.
		s, err := heijunka.NewMemoryStore(heijunka.MemoryStoreOptions{MaxKeys: 20})
		require.NoError(t, err)
		keys := map[string]heijunka.Limit{}
		for i := range 12 {
			k := "k" + strconv.Itoa(i)
			l := owe
			if i%3 == 0 {
				l = short
			}
			d, err := s.Take(ctx, k, l, t0, 1)
			require.NoError(t, err)
			require.True(t, d.Allowed)
			keys[k] = l
		}
		check := func(when string) {
			t.Helper()
			require.Equal(t, len(keys), s.Len(), "store %d, %s", store, when)
			for k, l := range keys {
				d, err := s.Take(ctx, k, l, t0, 0)
				require.NoError(t, err)
				require.Equal(t, 0, d.Remaining, "store %d, %s: %s forgot its debt", store, when, k)
			}
		}
		check("filled")
		for i := 1; i < 12; i += 3 {
			k := "k" + strconv.Itoa(i)
			require.NoError(t, s.Reset(ctx, k))
			delete(keys, k)
			check("after resetting " + k)
		}
		// The keys owing a minute become fresh; a sweep drops them alone.
		for k, l := range keys {
			if l == short {
				delete(keys, k)
			}
		}
		s.Sweep(t0.Add(2 * time.Minute))
		require.Equal(t, len(keys), s.Len())
		for k, l := range keys {
			d, err := s.Take(ctx, k, l, t0.Add(2*time.Minute), 0)
			require.NoError(t, err)
			require.Equal(t, 0, d.Remaining, "store %d, after the sweep: %s forgot its debt", store, k)
		}
	}
}

// TestMemoryStoreTableSizes checks what the MemoryStore promises of its
// memory: while keys are added a table stays between about 53% and 80%
// full (20 to 30 bytes a key), and as keys go it shrinks once it falls to
// an eighth, down to no table at all.
func TestMemoryStoreTableSizes(t *testing.T) {
	ctx := context.Background()
	owe := heijunka.PerHour(1)
	// One shard of MaxKeys 31; a table's first size is 16 slots.
	s, err := heijunka.NewMemoryStore(heijunka.MemoryStoreOptions{MaxKeys: 31})
	require.NoError(t, err)
	var sizes []int
	for i := range 31 {
		_, err := s.Take(ctx, "k"+strconv.Itoa(i), owe, t0, 1)
		require.NoError(t, err)
		if n := heijunka.Slots(s); len(sizes) == 0 || sizes[len(sizes)-1] != n {
			sizes = append(sizes, n)
		}
		load := float64(i+1) / float64(heijunka.Slots(s))
		require.LessOrEqual(t, load, 0.8, "%d keys", i+1)
	}
	assert.Equal(t, []int{16, 24, 36, 54}, sizes, "each growth adds half")

	// Remove keys: the table keeps its size until it is less than an
	// eighth full (7 keys of 54 slots are not), then is rebuilt for twice
	// its keys (16 slots at least).
	for i := range 31 {
		require.NoError(t, s.Reset(ctx, "k"+strconv.Itoa(i)))
		switch left := 30 - i; {
		case left >= 7:
			require.Equal(t, 54, heijunka.Slots(s), "%d keys left", left)
		case left > 0:
			require.Equal(t, 16, heijunka.Slots(s), "%d keys left", left)
		default:
			require.Zero(t, heijunka.Slots(s), "an empty shard keeps no table")
		}
	}

	// A table of 24 slots (13 to 19 keys) is not rebuilt at 3 keys, an
	// eighth exactly, but at 2.
	for i := range 13 {
		_, err := s.Take(ctx, "k"+strconv.Itoa(i), owe, t0, 1)
		require.NoError(t, err)
	}
	require.Equal(t, 24, heijunka.Slots(s))
	for i := range 10 {
		require.NoError(t, s.Reset(ctx, "k"+strconv.Itoa(i)))
	}
	assert.Equal(t, 24, heijunka.Slots(s), "3 keys in 24 slots")
	require.NoError(t, s.Reset(ctx, "k10"))
	assert.Equal(t, 16, heijunka.Slots(s), "2 keys in 24 slots")

	// Many shards: the whole store holds between 1.25 and 1.875 slots a
	// key once each table holds enough keys for the bound to apply.
	s, err = heijunka.NewMemoryStore(heijunka.MemoryStoreOptions{})
	require.NoError(t, err)
	for i := range 20_000 {
		_, err := s.Take(ctx, "c"+strconv.Itoa(i), owe, t0, 1)
		require.NoError(t, err)
		if n := i + 1; n%2000 == 0 {
			per := float64(heijunka.Slots(s)) / float64(n)
			assert.GreaterOrEqual(t, per, 1.25, "%d keys", n)
			assert.LessOrEqual(t, per, 1.9, "%d keys", n)
		}
	}
	// Down to a tenth of the keys: the tables shrink with them.
	for i := range 18_000 {
		require.NoError(t, s.Reset(ctx, "c"+strconv.Itoa(i)))
	}
	assert.Equal(t, 2000, s.Len())
	assert.LessOrEqual(t, heijunka.Slots(s), 8*2000, "no table is less than an eighth full")
	assert.Equal(t, 2000, s.Sweep(t0.Add(2*time.Hour)))
	assert.Zero(t, heijunka.Slots(s), "a sweep of fresh keys returns every table")
}

// TestMemoryStoreShards: a store has as many shards as keep at least 16
// keys each, a power of two up to 64, so that small stores keep their
// bound exactly and large ones spread their locks; the shards' bounds add
// up to MaxKeys and differ by one at most.
func TestMemoryStoreShards(t *testing.T) {
	for _, tc := range []struct{ maxKeys, shards int }{
		{1, 1}, {31, 1}, {32, 2}, {33, 2}, {63, 2}, {64, 4}, {1023, 32}, {1024, 64}, {1 << 31, 64},
		{0, 64},
	} {
		s, err := heijunka.NewMemoryStore(heijunka.MemoryStoreOptions{MaxKeys: tc.maxKeys})
		require.NoError(t, err)
		limits := heijunka.ShardLimits(s)
		assert.Len(t, limits, tc.shards, "MaxKeys %d", tc.maxKeys)
		want := tc.maxKeys
		if want == 0 {
			want = heijunka.DefaultMaxKeys
		}
		sum := 0
		for _, l := range limits {
			sum += l
			assert.LessOrEqual(t, max(limits[0], l)-min(limits[0], l), 1, "MaxKeys %d: %v", tc.maxKeys, limits)
		}
		assert.Equal(t, want, sum, "MaxKeys %d", tc.maxKeys)
	}
}

// TestMemoryStoreEvictsInASmallStore: a store smaller than the eviction
// sample compares all its keys and drops the one nearest to fresh.
func TestMemoryStoreEvictsInASmallStore(t *testing.T) {
	ctx := context.Background()
	slow := heijunka.PerHour(1).WithBurst(3)
	s, err := heijunka.NewMemoryStore(heijunka.MemoryStoreOptions{MaxKeys: 3})
	require.NoError(t, err)
	for i, n := range []int{3, 1, 2} { // k1 is nearest to fresh
		_, err := s.Take(ctx, "k"+strconv.Itoa(i), slow, t0, n)
		require.NoError(t, err)
	}
	_, err = s.Take(ctx, "new", slow, t0, 1)
	require.NoError(t, err)
	assert.Equal(t, 3, s.Len())
	for i, full := range []bool{false, true, false} {
		d, err := s.Take(ctx, "k"+strconv.Itoa(i), slow, t0, 0)
		require.NoError(t, err)
		assert.Equal(t, full, d.Remaining == 3, "k%d", i)
	}
}

// TestMemoryStoreShrinksAfterASweep: a table that shrinks after a sweep
// went round it keeps working: new keys are held and old ones keep their
// debt.
func TestMemoryStoreShrinksAfterASweep(t *testing.T) {
	ctx := context.Background()
	owe := heijunka.PerHour(1)
	s, err := heijunka.NewMemoryStore(heijunka.MemoryStoreOptions{MaxKeys: 31}) // one shard
	require.NoError(t, err)
	for i := range 31 {
		_, err := s.Take(ctx, "k"+strconv.Itoa(i), owe, t0, 1)
		require.NoError(t, err)
	}
	require.Equal(t, 54, heijunka.Slots(s))
	assert.Zero(t, s.Sweep(t0), "nothing is fresh")
	for i := range 25 {
		require.NoError(t, s.Reset(ctx, "k"+strconv.Itoa(i)))
	}
	require.Equal(t, 16, heijunka.Slots(s), "6 keys: the table shrank")
	d, err := s.Take(ctx, "new", owe, t0, 1)
	require.NoError(t, err)
	assert.True(t, d.Allowed)
	assert.Equal(t, 7, s.Len())
	for i := 25; i < 31; i++ {
		d, err := s.Take(ctx, "k"+strconv.Itoa(i), owe, t0, 1)
		require.NoError(t, err)
		assert.False(t, d.Allowed, "k%d kept its debt", i)
	}
}

func TestMemoryStoreFullRetryAfterFollowsTheEarliestKey(t *testing.T) {
	ctx := context.Background()
	s, err := heijunka.NewMemoryStore(heijunka.MemoryStoreOptions{MaxKeys: 1, WhenFull: heijunka.RejectNew})
	require.NoError(t, err)
	lim := heijunka.Limit{Rate: 1, Burst: 5}
	now := time.Now()
	_, err = s.Take(ctx, "a", lim, now, 1) // fresh after 1s
	require.NoError(t, err)
	_, err = s.Take(ctx, "a", lim, now, 4) // now fresh after 5s
	require.NoError(t, err)
	d, err := s.Take(ctx, "b", lim, now, 1)
	require.ErrorIs(t, err, heijunka.ErrStoreFull)
	assert.Equal(t, 5*time.Second, d.RetryAfter, "until the key held is fresh")
	_, err = s.Take(ctx, "b", lim, now.Add(d.RetryAfter), 1)
	assert.NoError(t, err, "the store takes the key when told to retry")

	s, err = heijunka.NewMemoryStore(heijunka.MemoryStoreOptions{MaxKeys: 2, WhenFull: heijunka.RejectNew})
	require.NoError(t, err)
	_, err = s.Take(ctx, "a", lim, now, 1) // fresh after 1s
	require.NoError(t, err)
	_, err = s.Take(ctx, "b", lim, now, 3) // fresh after 3s
	require.NoError(t, err)
	require.NoError(t, s.Reset(ctx, "a"))
	_, err = s.Take(ctx, "c", lim, now, 4) // fresh after 4s
	require.NoError(t, err)
	d, err = s.Take(ctx, "d", lim, now, 1)
	require.ErrorIs(t, err, heijunka.ErrStoreFull)
	assert.Equal(t, 3*time.Second, d.RetryAfter, "until the earliest key held is fresh, not one reset")
}

// TestMemoryStoreTimeGoingBackAfterForgetting: what the MemoryStore
// documents of a time going back. A key still held counts the time gone
// back as longer to wait; a key forgotten at a later time (here by a
// request of no events, when it is fresh) is full at the earlier one.
func TestMemoryStoreTimeGoingBackAfterForgetting(t *testing.T) {
	ctx := context.Background()
	limit := heijunka.Every(time.Minute).WithBurst(5)
	at := time.Unix(1_900_000_000, 0)
	// A store for each key: a key the other's request made forget could
	// share its shard, and be forgotten with it.
	held, err := heijunka.NewMemoryStore(heijunka.MemoryStoreOptions{})
	require.NoError(t, err)
	forgetting, err := heijunka.NewMemoryStore(heijunka.MemoryStoreOptions{})
	require.NoError(t, err)
	take := func(s *heijunka.MemoryStore, now time.Time, n int) heijunka.Decision {
		t.Helper()
		d, err := s.Take(ctx, "k", limit, now, n)
		require.NoError(t, err)
		return d
	}

	require.True(t, take(held, at, 5).Allowed)
	require.True(t, take(forgetting, at, 5).Allowed)
	assert.Equal(t, 5, take(forgetting, at.Add(time.Hour), 0).Remaining)
	assert.Equal(t, 0, forgetting.Len(), "the fresh key is forgotten")

	back := at.Add(time.Minute)
	assert.False(t, take(held, back, 2).Allowed, "one event refilled in a minute")
	assert.True(t, take(held, back, 1).Allowed)
	assert.True(t, take(forgetting, back, 5).Allowed, "a key forgotten starts full")
}

// TestZeroMemoryStoreRefusesKeys: the zero MemoryStore has nowhere to keep
// a key; Take and Reset say so instead of panicking.
func TestZeroMemoryStoreRefusesKeys(t *testing.T) {
	ctx := context.Background()
	var s heijunka.MemoryStore
	require.NotPanics(t, func() {
		d, err := s.Take(ctx, "k", heijunka.PerSecond(1), time.Now(), 1)
		assert.ErrorContains(t, err, "not made by NewMemoryStore")
		assert.Equal(t, heijunka.Decision{Limit: heijunka.PerSecond(1), RetryAfter: heijunka.InfDuration}, d)
	})
	require.NotPanics(t, func() { assert.ErrorContains(t, s.Reset(ctx, "k"), "not made by NewMemoryStore") })
	assert.Zero(t, s.Len())
	assert.Zero(t, s.Sweep(time.Now()))
}
