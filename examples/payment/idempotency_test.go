package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"
	"unsafe"
	"weak"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// idemStores are the idempotency stores under the same tests.
var idemStores = map[string]func(t *testing.T, now func() time.Time, maxBytes int64) IdempotencyStore{
	"memory": func(_ *testing.T, now func() time.Time, maxBytes int64) IdempotencyStore {
		return NewMemoryIdempotency(maxBytes, now)
	},
	"nats": func(t *testing.T, now func() time.Time, maxBytes int64) IdempotencyStore {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		s, err := NewNATSIdempotency(ctx, []jetstream.JetStream{startJS(t)}, IdemOptions{MaxBytes: maxBytes}, now)
		require.NoError(t, err)
		return s
	},
}

func claimOf(txn string, at time.Time) IdemEntry {
	return IdemEntry{Fingerprint: "fp-" + txn, TxnID: txn, Owner: "test/boot", Started: at}
}

func TestIdempotencyStores(t *testing.T) {
	for name, newStore := range idemStores {
		t.Run(name, func(t *testing.T) {
			t.Run("a claimed key returns its claim", func(t *testing.T) {
				clock := newManualClock()
				s, ctx := newStore(t, clock.Now, 0), context.Background()
				first := claimOf("txn_1", clock.Now())
				_, claimed, err := s.Claim(ctx, "k", first)
				require.NoError(t, err)
				require.True(t, claimed)
				old, claimed, err := s.Claim(ctx, "k", claimOf("txn_2", clock.Now()))
				require.NoError(t, err)
				assert.False(t, claimed)
				assert.True(t, old.same(first), "the first claim: %+v", old)
				_, claimed, err = s.Claim(ctx, "other", claimOf("txn_3", clock.Now()))
				require.NoError(t, err)
				assert.True(t, claimed, "keys are apart")
			})
			t.Run("a claim is kept exactly a day", func(t *testing.T) {
				clock := newManualClock()
				s, ctx := newStore(t, clock.Now, 0), context.Background()
				_, _, err := s.Claim(ctx, "k", claimOf("txn_1", clock.Now()))
				require.NoError(t, err)
				clock.Advance(idempotencyTTL - time.Nanosecond)
				_, claimed, err := s.Claim(ctx, "k", claimOf("txn_2", clock.Now()))
				require.NoError(t, err)
				assert.False(t, claimed, "held until the last nanosecond of the day")
				clock.Advance(time.Nanosecond)
				_, claimed, err = s.Claim(ctx, "k", claimOf("txn_3", clock.Now()))
				require.NoError(t, err)
				assert.True(t, claimed, "forgotten after a day")
				old, claimed, err := s.Claim(ctx, "k", claimOf("txn_4", clock.Now()))
				require.NoError(t, err)
				assert.False(t, claimed)
				assert.Equal(t, "txn_3", old.TxnID, "the new claim holds the key")
			})
			t.Run("replace compares", func(t *testing.T) {
				clock := newManualClock()
				s, ctx := newStore(t, clock.Now, 0), context.Background()
				_, _, err := s.Claim(ctx, "k", claimOf("txn_1", clock.Now()))
				require.NoError(t, err)
				old, _, err := s.Claim(ctx, "k", claimOf("txn_x", clock.Now()))
				require.NoError(t, err)
				taken := claimOf("txn_1", clock.Now().Add(time.Minute))
				taken.Owner = "test/later"
				ok, err := s.Replace(ctx, "k", old, taken)
				require.NoError(t, err)
				assert.True(t, ok)
				ok, err = s.Replace(ctx, "k", old, claimOf("txn_9", clock.Now()))
				require.NoError(t, err)
				assert.False(t, ok, "the key changed since old was read")
				cur, _, err := s.Claim(ctx, "k", claimOf("txn_y", clock.Now()))
				require.NoError(t, err)
				assert.True(t, cur.same(taken), "%+v", cur)
			})
			t.Run("release deletes only its own claim", func(t *testing.T) {
				clock := newManualClock()
				s, ctx := newStore(t, clock.Now, 0), context.Background()
				mine := claimOf("txn_1", clock.Now())
				_, _, err := s.Claim(ctx, "k", mine)
				require.NoError(t, err)
				require.NoError(t, s.Release(ctx, "k", claimOf("txn_other", clock.Now())))
				_, claimed, err := s.Claim(ctx, "k", claimOf("txn_2", clock.Now()))
				require.NoError(t, err)
				assert.False(t, claimed, "another claim's release leaves the key")
				require.NoError(t, s.Release(ctx, "k", mine))
				_, claimed, err = s.Claim(ctx, "k", claimOf("txn_3", clock.Now()))
				require.NoError(t, err)
				assert.True(t, claimed, "released: the retry claims it")
				require.NoError(t, s.Release(ctx, "never", mine), "releasing a key not held is harmless")
			})
			t.Run("full refuses new keys", func(t *testing.T) {
				clock := newManualClock()
				s, ctx := newStore(t, clock.Now, 64<<10), context.Background()
				var err error
				n := 0
				for ; n < 10_000; n++ {
					if _, _, err = s.Claim(ctx, fmt.Sprintf("key-%d", n), claimOf(fmt.Sprintf("txn_%d", n), clock.Now())); err != nil {
						break
					}
				}
				require.ErrorIs(t, err, ErrStoreFull)
				assert.Greater(t, n, 50)
				old, claimed, err := s.Claim(ctx, "key-0", claimOf("txn_again", clock.Now()))
				require.NoError(t, err, "a key held is still answered")
				assert.False(t, claimed)
				assert.Equal(t, "txn_0", old.TxnID)
			})
		})
	}
}

// The memory store forgets a day-old claim within a few claims of its
// expiry, oldest first, and never a live one.
func TestMemoryIdempotencySweeps(t *testing.T) {
	clock := newManualClock()
	s, ctx := NewMemoryIdempotency(0, clock.Now), context.Background()
	for i := range 100 {
		_, _, err := s.Claim(ctx, fmt.Sprintf("old-%d", i), claimOf("txn_old", clock.Now()))
		require.NoError(t, err)
	}
	clock.Advance(12 * time.Hour)
	for i := range 100 {
		_, _, err := s.Claim(ctx, fmt.Sprintf("young-%d", i), claimOf("txn_young", clock.Now()))
		require.NoError(t, err)
	}
	released := claimOf("txn_gone", clock.Now())
	_, _, err := s.Claim(ctx, "released", released)
	require.NoError(t, err)
	require.NoError(t, s.Release(ctx, "released", released))
	assert.Equal(t, 200, s.Len())

	clock.Advance(12 * time.Hour) // the old ones are a day old
	for i := range 20 {
		_, _, err := s.Claim(ctx, fmt.Sprintf("new-%d", i), claimOf("txn_new", clock.Now()))
		require.NoError(t, err)
	}
	assert.Equal(t, 100+20, s.Len(), "every old claim swept, 8 at each new claim; the young ones kept")
	for i := range 100 {
		_, claimed, err := s.Claim(ctx, fmt.Sprintf("young-%d", i), claimOf("txn_x", clock.Now()))
		require.NoError(t, err)
		require.False(t, claimed, "young-%d is live", i)
	}
	_, claimed, err := s.Claim(ctx, "released", claimOf("txn_back", clock.Now()))
	require.NoError(t, err)
	assert.True(t, claimed)

	// A full store has room again once claims are released.
	small := NewMemoryIdempotency(1024, clock.Now)
	var last IdemEntry
	for i := 0; ; i++ {
		e := claimOf(fmt.Sprintf("txn_%d", i), clock.Now())
		if _, _, err := small.Claim(ctx, fmt.Sprintf("k%d", i), e); err != nil {
			require.ErrorIs(t, err, ErrStoreFull)
			break
		}
		last = e
		require.Less(t, i, 100)
	}
	n := small.Len()
	require.NoError(t, small.Release(ctx, fmt.Sprintf("k%d", n-1), last))
	_, claimed, err = small.Claim(ctx, "after", claimOf("txn_after", clock.Now()))
	require.NoError(t, err)
	assert.True(t, claimed)
}

// A release deletes the claim only when every part of it is the one
// released: the same fingerprint with another transaction, owner or start
// is another claim.
func TestIdempotencyReleaseComparesTheWholeClaim(t *testing.T) {
	for name, newStore := range idemStores {
		t.Run(name, func(t *testing.T) {
			clock := newManualClock()
			s, ctx := newStore(t, clock.Now, 0), context.Background()
			mine := claimOf("txn_1", clock.Now())
			_, claimed, err := s.Claim(ctx, "k", mine)
			require.NoError(t, err)
			require.True(t, claimed)
			for what, other := range map[string]func(e *IdemEntry){
				"fingerprint": func(e *IdemEntry) { e.Fingerprint = "fp-other" },
				"transaction": func(e *IdemEntry) { e.TxnID = "txn_other" },
				"owner":       func(e *IdemEntry) { e.Owner = "other/boot" },
				"start":       func(e *IdemEntry) { e.Started = e.Started.Add(time.Nanosecond) },
			} {
				e := mine
				other(&e)
				require.NoError(t, s.Release(ctx, "k", e))
				held, claimed, err := s.Claim(ctx, "k", claimOf("txn_2", clock.Now()))
				require.NoError(t, err)
				assert.False(t, claimed, "a claim of another %s leaves the key", what)
				assert.True(t, held.same(mine), "%s: %+v", what, held)
			}
		})
	}
}

// A store that refuses a claim never says it claimed the key.
func TestIdempotencyRefusalClaimsNothing(t *testing.T) {
	for name, newStore := range idemStores {
		t.Run(name, func(t *testing.T) {
			clock := newManualClock()
			s, ctx := newStore(t, clock.Now, 64<<10), context.Background()
			for n := 0; ; n++ {
				require.Less(t, n, 10_000, "the store never filled")
				_, claimed, err := s.Claim(ctx, fmt.Sprintf("key-%d", n), claimOf(fmt.Sprintf("txn_%d", n), clock.Now()))
				if err != nil {
					require.ErrorIs(t, err, ErrStoreFull)
					assert.False(t, claimed)
					break
				}
				require.True(t, claimed)
			}
		})
	}
}

// Keys claimed and released — requests refused (429, 503, a request that
// fails validation after its claim) — hold no room in the store for long:
// a client sending a flood of new keys that are all refused cannot fill it
// and so crowd out the keys of payments. A key held through the flood is
// kept.
func TestIdempotencyReleasedKeysHoldNoRoom(t *testing.T) {
	for name, newStore := range idemStores {
		t.Run(name, func(t *testing.T) {
			clock := newManualClock()
			s, ctx := newStore(t, clock.Now, 64<<10), context.Background()
			held := claimOf("txn_held", clock.Now())
			_, claimed, err := s.Claim(ctx, "held", held)
			require.NoError(t, err)
			require.True(t, claimed)
			// 3,000 keys: many times what the store holds at once.
			released := 0
			for n := range 3_000 {
				key, e := fmt.Sprintf("refused-%d", n), claimOf(fmt.Sprintf("txn_%d", n), clock.Now())
				_, claimed, err := s.Claim(ctx, key, e)
				if errors.Is(err, ErrStoreFull) {
					continue // full for the moment: nothing to release
				}
				require.NoError(t, err)
				require.True(t, claimed)
				require.NoError(t, s.Release(ctx, key, e))
				released++
			}
			require.EventuallyWithT(t, func(c *assert.CollectT) {
				_, claimed, err := s.Claim(ctx, "payment", claimOf("txn_payment", clock.Now()))
				require.NoError(c, err)
				assert.True(c, claimed)
			}, 10*time.Second, 20*time.Millisecond, "a new key is claimed after %d released", released)
			old, claimed, err := s.Claim(ctx, "held", claimOf("txn_again", clock.Now()))
			require.NoError(t, err)
			assert.False(t, claimed)
			assert.True(t, old.same(held), "the key held is kept: %+v", old)

			// A key released from a full store makes room for another.
			var last IdemEntry
			for n := 0; ; n++ {
				require.Less(t, n, 10_000, "the store never filled")
				e := claimOf(fmt.Sprintf("txn_full_%d", n), clock.Now())
				_, _, err := s.Claim(ctx, fmt.Sprintf("full-%d", n), e)
				if err != nil {
					require.ErrorIs(t, err, ErrStoreFull)
					require.NoError(t, s.Release(ctx, fmt.Sprintf("full-%d", n-1), last))
					break
				}
				last = e
			}
			require.EventuallyWithT(t, func(c *assert.CollectT) {
				_, claimed, err := s.Claim(ctx, "after", claimOf("txn_after", clock.Now()))
				require.NoError(c, err)
				assert.True(c, claimed)
			}, 10*time.Second, 20*time.Millisecond, "a new key is claimed in the room released")
		})
	}
}

// A memory store of MaxBytes holds entries up to exactly that size.
func TestMemoryIdempotencyHoldsExactlyMaxBytes(t *testing.T) {
	clock := newManualClock()
	ctx := context.Background()
	e := claimOf("txn_1", clock.Now())
	s := NewMemoryIdempotency(e.size("k1"), clock.Now)
	_, claimed, err := s.Claim(ctx, "k1", e)
	require.NoError(t, err)
	require.True(t, claimed, "an entry of exactly MaxBytes fits")
	_, claimed, err = s.Claim(ctx, "k2", claimOf("txn_2", clock.Now()))
	require.ErrorIs(t, err, ErrStoreFull)
	assert.False(t, claimed)
	assert.Equal(t, 1, s.Len())
	require.NoError(t, s.Release(ctx, "k1", e))
	_, claimed, err = s.Claim(ctx, "k2", claimOf("txn_2", clock.Now()))
	require.NoError(t, err)
	assert.True(t, claimed, "released, the space is free again")
}

// What an entry costs the memory store grows with each of its strings, so
// long keys, fingerprints, transaction IDs or owners fill it sooner.
func TestMemoryIdempotencyCountsEveryString(t *testing.T) {
	const limit = 64 << 10
	long := strings.Repeat("x", 4000)
	for _, field := range []string{"key", "fingerprint", "transaction", "owner"} {
		t.Run(field, func(t *testing.T) {
			clock := newManualClock()
			s, ctx := NewMemoryIdempotency(limit, clock.Now), context.Background()
			held := 0
			for n := 0; n < 100; n++ {
				key, e := fmt.Sprintf("k%d", n), claimOf(fmt.Sprintf("t%d", n), clock.Now())
				switch field {
				case "key":
					key += long
				case "fingerprint":
					e.Fingerprint += long
				case "transaction":
					e.TxnID += long
				case "owner":
					e.Owner += long
				}
				if _, _, err := s.Claim(ctx, key, e); err != nil {
					require.ErrorIs(t, err, ErrStoreFull)
					break
				}
				held++
			}
			// 4000 bytes and a little more each: between 15 and 16.
			assert.GreaterOrEqual(t, held, limit/(4000+200))
			assert.LessOrEqual(t, held, limit/4000)
		})
	}
}

// A key released and claimed again is not forgotten when the sweep comes
// to its first, older claim.
func TestMemoryIdempotencySweepSparesAReclaimedKey(t *testing.T) {
	clock := newManualClock()
	s, ctx := NewMemoryIdempotency(0, clock.Now), context.Background()
	first := claimOf("txn_1", clock.Now())
	_, _, err := s.Claim(ctx, "k", first)
	require.NoError(t, err)
	require.NoError(t, s.Release(ctx, "k", first))
	clock.Advance(12 * time.Hour)
	again := claimOf("txn_2", clock.Now())
	_, claimed, err := s.Claim(ctx, "k", again)
	require.NoError(t, err)
	require.True(t, claimed)

	clock.Advance(12 * time.Hour) // the first claim is a day old, the second half a day
	_, _, err = s.Claim(ctx, "other", claimOf("txn_3", clock.Now()))
	require.NoError(t, err)
	assert.Equal(t, 2, s.Len(), "the second claim of k is kept")
	held, claimed, err := s.Claim(ctx, "k", claimOf("txn_4", clock.Now()))
	require.NoError(t, err)
	assert.False(t, claimed)
	assert.True(t, held.same(again), "%+v", held)
}

// The claim order (what the sweep walks) keeps one place per key held, and
// the places already swept at its front never outnumber both 1024 and the
// places in use: its memory follows the keys held, not every key ever
// claimed.
func TestMemoryIdempotencyClaimOrderStaysCompact(t *testing.T) {
	// Bursts of two sizes, so that the order is compacted both while old
	// claims are still being swept and once they all are.
	for _, burst := range []int{1500, 3000} {
		t.Run(fmt.Sprint(burst), func(t *testing.T) {
			clock := newManualClock()
			s, ctx := NewMemoryIdempotency(0, clock.Now), context.Background()
			claim := func(key string) {
				t.Helper()
				_, claimed, err := s.Claim(ctx, key, claimOf(key, clock.Now()))
				require.NoError(t, err)
				require.True(t, claimed, key)
				inUse := len(s.order) - s.head
				if inUse != s.Len() || s.head > 1024 && s.head > inUse {
					t.Fatalf("after claiming %s: %d keys, the order has %d places in use and %d swept", key, s.Len(), inUse, s.head)
				}
			}
			for i := range burst {
				claim(fmt.Sprintf("old-%d", i))
			}
			clock.Advance(idempotencyTTL)
			fresh := burst/8 + 200 // 8 old claims swept at each
			for i := range fresh {
				claim(fmt.Sprintf("new-%d", i))
			}
			assert.Equal(t, fresh, s.Len(), "every old claim swept")
		})
	}
}

// A swept key is let go of: nothing of the store keeps its memory.
func TestMemoryIdempotencyLetsGoOfSweptKeys(t *testing.T) {
	clock := newManualClock()
	s, ctx := NewMemoryIdempotency(0, clock.Now), context.Background()
	// The key is made here, large enough to be an allocation of its own,
	// and only a weak pointer to it kept.
	key := func() weak.Pointer[byte] {
		k := strings.Repeat("swept-key-", 8)
		_, _, err := s.Claim(ctx, k, claimOf("txn_1", clock.Now()))
		require.NoError(t, err)
		return weak.Make(unsafe.StringData(k))
	}()
	clock.Advance(idempotencyTTL)
	_, _, err := s.Claim(ctx, "next", claimOf("txn_2", clock.Now()))
	require.NoError(t, err)
	require.Equal(t, 1, s.Len(), "swept")
	for range 5 {
		runtime.GC()
		if key.Value() == nil {
			break
		}
	}
	assert.Nil(t, key.Value(), "the swept key is still referenced")
	runtime.KeepAlive(s)
}

// Without a clock the memory store dates entries by time.Now.
func TestMemoryIdempotencyDefaultClock(t *testing.T) {
	s, ctx := NewMemoryIdempotency(0, nil), context.Background()
	first := claimOf("txn_1", time.Now())
	_, claimed, err := s.Claim(ctx, "k", first)
	require.NoError(t, err)
	require.True(t, claimed)
	held, claimed, err := s.Claim(ctx, "k", claimOf("txn_2", time.Now()))
	require.NoError(t, err)
	assert.False(t, claimed)
	assert.True(t, held.same(first))
	stale := claimOf("txn_3", time.Now().Add(-idempotencyTTL))
	_, claimed, err = s.Claim(ctx, "stale", stale)
	require.NoError(t, err)
	require.True(t, claimed)
	_, claimed, err = s.Claim(ctx, "stale", claimOf("txn_4", time.Now()))
	require.NoError(t, err)
	assert.True(t, claimed, "a claim started a day before now is forgotten")
}

func TestNATSIdempotencyBucket(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	js := startJS(t)
	s, err := NewNATSIdempotency(ctx, []jetstream.JetStream{js}, IdemOptions{}, nil)
	require.NoError(t, err)
	kv, err := js.KeyValue(ctx, "payment_idempotency")
	require.NoError(t, err, "the default bucket")
	st, err := kv.Status(ctx)
	require.NoError(t, err)
	info := st.(*jetstream.KeyValueBucketStatus).StreamInfo()
	assert.Equal(t, int64(256<<20), info.Config.MaxBytes)
	assert.Equal(t, idempotencyTTL, info.Config.MaxAge)
	assert.Equal(t, int64(1), info.Config.MaxMsgsPerSubject, "history 1")
	assert.Equal(t, jetstream.FileStorage, info.Config.Storage)
	assert.True(t, info.Config.AllowMsgTTL, "released keys' markers expire")
	assert.Equal(t, releaseMarkerTTL, info.Config.SubjectDeleteMarkerTTL)

	// Without a clock, entries are dated by time.Now.
	first := claimOf("txn_1", time.Now())
	_, claimed, err := s.Claim(ctx, "k", first)
	require.NoError(t, err)
	require.True(t, claimed)
	held, claimed, err := s.Claim(ctx, "k", claimOf("txn_2", time.Now()))
	require.NoError(t, err)
	assert.False(t, claimed)
	assert.True(t, held.same(first))

	_, err = NewNATSIdempotency(ctx, nil, IdemOptions{Bucket: "idem"}, nil)
	assert.EqualError(t, err, `idempotency bucket "idem": no JetStream context`)
}

// A bucket made before released keys' markers expired (without message
// TTLs) is updated to allow them, and a key released in it holds no room.
func TestNATSIdempotencyUpdatesAnOlderBucket(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	js := startJS(t)
	_, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket: "payment_idempotency", TTL: idempotencyTTL, History: 1, MaxBytes: 64 << 10, Storage: jetstream.FileStorage,
	})
	require.NoError(t, err)
	s, err := NewNATSIdempotency(ctx, []jetstream.JetStream{js}, IdemOptions{MaxBytes: 64 << 10}, nil)
	require.NoError(t, err)
	stream, err := js.Stream(ctx, "KV_payment_idempotency")
	require.NoError(t, err)
	assert.True(t, stream.CachedInfo().Config.AllowMsgTTL)

	e := claimOf("txn_1", time.Now())
	_, claimed, err := s.Claim(ctx, "k", e)
	require.NoError(t, err)
	require.True(t, claimed)
	require.NoError(t, s.Release(ctx, "k", e))
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		info, err := stream.Info(ctx)
		require.NoError(c, err)
		assert.Zero(c, info.State.Bytes, "the released key's marker is gone")
	}, 10*time.Second, 20*time.Millisecond)
}

// kvFaults is a JetStream bucket some of whose calls fail or race with
// another writer: a hook set for a method runs instead of it.
type kvFaults struct {
	jetstream.KeyValue
	create func(ctx context.Context, key string, val []byte) (uint64, error)
	get    func(ctx context.Context, key string) (jetstream.KeyValueEntry, error)
	update func(ctx context.Context, key string, val []byte, rev uint64) (uint64, error)
	purge  func(ctx context.Context, key string, opts ...jetstream.KVDeleteOpt) error
}

func (f *kvFaults) Create(ctx context.Context, key string, val []byte, opts ...jetstream.KVCreateOpt) (uint64, error) {
	if f.create != nil {
		return f.create(ctx, key, val)
	}
	return f.KeyValue.Create(ctx, key, val, opts...)
}

func (f *kvFaults) Get(ctx context.Context, key string) (jetstream.KeyValueEntry, error) {
	if f.get != nil {
		return f.get(ctx, key)
	}
	return f.KeyValue.Get(ctx, key)
}

func (f *kvFaults) Update(ctx context.Context, key string, val []byte, rev uint64) (uint64, error) {
	if f.update != nil {
		return f.update(ctx, key, val, rev)
	}
	return f.KeyValue.Update(ctx, key, val, rev)
}

func (f *kvFaults) Purge(ctx context.Context, key string, opts ...jetstream.KVDeleteOpt) error {
	if f.purge != nil {
		return f.purge(ctx, key, opts...)
	}
	return f.KeyValue.Purge(ctx, key, opts...)
}

// faultyNATSIdempotency returns a NATS store on a fresh bucket whose calls
// go through the returned kvFaults.
func faultyNATSIdempotency(t *testing.T, now func() time.Time) (*NATSIdempotency, *kvFaults) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := NewNATSIdempotency(ctx, []jetstream.JetStream{startJS(t)}, IdemOptions{}, now)
	require.NoError(t, err)
	f := &kvFaults{KeyValue: s.kv.kvs[0]}
	s.kv = &kvPool{kvs: []jetstream.KeyValue{f}}
	return s, f
}

// A compare-and-set conflict as a replicated (R>1) bucket reports it: error
// code 10164, not the 10071 of ErrKeyExists; Update wraps it in
// ErrKeyRevisionMismatch, Purge returns it as it is.
var (
	errWrongLastSequenceR3 = &jetstream.APIError{Code: 400, ErrorCode: jetstream.JSErrCodeStreamWrongLastSequenceConstant, Description: "wrong last sequence: 7"}
	errRevisionMismatchR3  = fmt.Errorf("%w: %w", errWrongLastSequenceR3, jetstream.ErrKeyRevisionMismatch)
)

// The NATS store when JetStream fails, or another writer gets in between
// its read and its write.
func TestNATSIdempotencyFailures(t *testing.T) {
	ctx := context.Background()
	errDown := errors.New("jetstream is down")

	t.Run("a claim that cannot be stored", func(t *testing.T) {
		clock := newManualClock()
		s, f := faultyNATSIdempotency(t, clock.Now)
		_, claimed, err := s.Claim(ctx, "k", claimOf("txn_1", time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)))
		assert.ErrorContains(t, err, "year outside of range", "a time JSON cannot carry")
		assert.False(t, claimed)
		f.create = func(context.Context, string, []byte) (uint64, error) { return 0, errDown }
		_, claimed, err = s.Claim(ctx, "k", claimOf("txn_1", clock.Now()))
		assert.ErrorIs(t, err, errDown)
		assert.False(t, claimed)
	})

	// Create claims a released key over its marker, by the marker's
	// revision: when the marker expires between its read and that write,
	// a replicated bucket answers with a conflict of code 10164, not
	// ErrKeyExists. The key is free: the claim tries again.
	t.Run("a released key whose marker expires under a claim", func(t *testing.T) {
		clock := newManualClock()
		s, f := faultyNATSIdempotency(t, clock.Now)
		f.create = func(context.Context, string, []byte) (uint64, error) {
			f.create = nil
			return 0, errWrongLastSequenceR3
		}
		_, claimed, err := s.Claim(ctx, "k", claimOf("txn_1", clock.Now()))
		require.NoError(t, err)
		assert.True(t, claimed)
	})

	t.Run("a held claim that cannot be read", func(t *testing.T) {
		clock := newManualClock()
		s, f := faultyNATSIdempotency(t, clock.Now)
		_, _, err := s.Claim(ctx, "k", claimOf("txn_1", clock.Now()))
		require.NoError(t, err)
		f.get = func(context.Context, string) (jetstream.KeyValueEntry, error) { return nil, errDown }
		_, claimed, err := s.Claim(ctx, "k", claimOf("txn_2", clock.Now()))
		assert.ErrorIs(t, err, errDown)
		assert.EqualError(t, err, "idempotency: jetstream is down")
		assert.False(t, claimed)
	})

	t.Run("a claim released between create and read", func(t *testing.T) {
		clock := newManualClock()
		s, f := faultyNATSIdempotency(t, clock.Now)
		first := claimOf("txn_1", clock.Now())
		_, _, err := s.Claim(ctx, "k", first)
		require.NoError(t, err)
		f.get = func(ctx context.Context, key string) (jetstream.KeyValueEntry, error) {
			f.get = nil
			require.NoError(t, s.Release(ctx, "k", first))
			return f.KeyValue.Get(ctx, key)
		}
		_, claimed, err := s.Claim(ctx, "k", claimOf("txn_2", clock.Now()))
		require.NoError(t, err)
		assert.True(t, claimed, "tried again, and claimed")
	})

	// An expired claim is taken over by compare-and-set; one who loses
	// that race to another taker gets the winner's claim.
	for name, conflict := range map[string]func(f *kvFaults, ctx context.Context, key string, val []byte, rev uint64) (uint64, error){
		"lost to another taker": func(f *kvFaults, ctx context.Context, key string, val []byte, rev uint64) (uint64, error) {
			winner, _ := json.Marshal(claimOf("txn_winner", time.Date(2026, 6, 2, 12, 0, 0, 0, time.UTC)))
			_, err := f.KeyValue.Update(ctx, key, winner, rev)
			require.NoError(t, err)
			return f.KeyValue.Update(ctx, key, val, rev)
		},
		"lost in a replicated bucket": func(f *kvFaults, ctx context.Context, key string, val []byte, rev uint64) (uint64, error) {
			winner, _ := json.Marshal(claimOf("txn_winner", time.Date(2026, 6, 2, 12, 0, 0, 0, time.UTC)))
			_, err := f.KeyValue.Update(ctx, key, winner, rev)
			require.NoError(t, err)
			return 0, errRevisionMismatchR3
		},
	} {
		t.Run("a takeover "+name, func(t *testing.T) {
			clock := newManualClock()
			s, f := faultyNATSIdempotency(t, clock.Now)
			_, _, err := s.Claim(ctx, "k", claimOf("txn_1", clock.Now()))
			require.NoError(t, err)
			clock.Advance(idempotencyTTL)
			f.update = func(ctx context.Context, key string, val []byte, rev uint64) (uint64, error) {
				f.update = nil
				return conflict(f, ctx, key, val, rev)
			}
			held, claimed, err := s.Claim(ctx, "k", claimOf("txn_2", clock.Now()))
			require.NoError(t, err)
			assert.False(t, claimed)
			assert.Equal(t, "txn_winner", held.TxnID)
		})
	}

	t.Run("a takeover that always loses", func(t *testing.T) {
		clock := newManualClock()
		s, f := faultyNATSIdempotency(t, clock.Now)
		_, _, err := s.Claim(ctx, "k", claimOf("txn_1", clock.Now()))
		require.NoError(t, err)
		clock.Advance(idempotencyTTL)
		tries := 0
		f.update = func(context.Context, string, []byte, uint64) (uint64, error) {
			tries++
			return 0, jetstream.ErrKeyExists
		}
		_, claimed, err := s.Claim(ctx, "k", claimOf("txn_2", clock.Now()))
		assert.EqualError(t, err, "idempotency: key is contended")
		assert.ErrorIs(t, err, ErrKeyContended, "told apart from a store that failed")
		assert.False(t, claimed)
		assert.Equal(t, 3, tries)
	})

	t.Run("a takeover that fails", func(t *testing.T) {
		clock := newManualClock()
		s, f := faultyNATSIdempotency(t, clock.Now)
		_, _, err := s.Claim(ctx, "k", claimOf("txn_1", clock.Now()))
		require.NoError(t, err)
		clock.Advance(idempotencyTTL)
		f.update = func(context.Context, string, []byte, uint64) (uint64, error) { return 0, errDown }
		_, claimed, err := s.Claim(ctx, "k", claimOf("txn_2", clock.Now()))
		assert.ErrorIs(t, err, errDown)
		assert.False(t, claimed)
	})

	t.Run("a replace that fails", func(t *testing.T) {
		clock := newManualClock()
		s, f := faultyNATSIdempotency(t, clock.Now)
		_, _, err := s.Claim(ctx, "k", claimOf("txn_1", clock.Now()))
		require.NoError(t, err)
		old, _, err := s.Claim(ctx, "k", claimOf("txn_x", clock.Now()))
		require.NoError(t, err)

		ok, err := s.Replace(ctx, "k", old, claimOf("txn_2", time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)))
		assert.ErrorContains(t, err, "year outside of range")
		assert.False(t, ok)
		f.update = func(context.Context, string, []byte, uint64) (uint64, error) { return 0, errDown }
		ok, err = s.Replace(ctx, "k", old, claimOf("txn_2", clock.Now()))
		assert.ErrorIs(t, err, errDown)
		assert.False(t, ok)
		f.update = func(context.Context, string, []byte, uint64) (uint64, error) { return 0, errRevisionMismatchR3 }
		ok, err = s.Replace(ctx, "k", old, claimOf("txn_2", clock.Now()))
		require.NoError(t, err, "a conflict in a replicated bucket is a conflict")
		assert.False(t, ok)

		f.update = nil
		held, _, err := s.Claim(ctx, "k", claimOf("txn_y", clock.Now()))
		require.NoError(t, err)
		assert.True(t, held.same(old), "nothing replaced: %+v", held)
	})

	t.Run("a release that fails", func(t *testing.T) {
		clock := newManualClock()
		s, f := faultyNATSIdempotency(t, clock.Now)
		mine := claimOf("txn_1", clock.Now())
		_, _, err := s.Claim(ctx, "k", mine)
		require.NoError(t, err)
		f.get = func(context.Context, string) (jetstream.KeyValueEntry, error) { return nil, errDown }
		assert.ErrorIs(t, s.Release(ctx, "k", mine), errDown)
		f.get = nil
		f.purge = func(context.Context, string, ...jetstream.KVDeleteOpt) error { return errDown }
		err = s.Release(ctx, "k", mine)
		assert.ErrorIs(t, err, errDown)
		assert.ErrorContains(t, err, "idempotency release")
		f.purge = func(context.Context, string, ...jetstream.KVDeleteOpt) error { return jetstream.ErrKeyNotFound }
		assert.NoError(t, s.Release(ctx, "k", mine), "gone already: nothing to release")
		f.purge = func(context.Context, string, ...jetstream.KVDeleteOpt) error { return errWrongLastSequenceR3 }
		assert.NoError(t, s.Release(ctx, "k", mine), "taken over meanwhile in a replicated bucket: left alone")
	})

	// A key taken over between the release's read and its purge stays
	// with its new holder.
	t.Run("a release that races a takeover", func(t *testing.T) {
		clock := newManualClock()
		s, f := faultyNATSIdempotency(t, clock.Now)
		mine := claimOf("txn_1", clock.Now())
		_, _, err := s.Claim(ctx, "k", mine)
		require.NoError(t, err)
		f.purge = func(ctx context.Context, key string, opts ...jetstream.KVDeleteOpt) error {
			f.purge = nil
			entry, err := f.KeyValue.Get(ctx, key)
			require.NoError(t, err)
			taker, _ := json.Marshal(claimOf("txn_taker", clock.Now()))
			_, err = f.KeyValue.Update(ctx, key, taker, entry.Revision())
			require.NoError(t, err)
			return f.KeyValue.Purge(ctx, key, opts...)
		}
		require.NoError(t, s.Release(ctx, "k", mine))
		held, claimed, err := s.Claim(ctx, "k", claimOf("txn_2", clock.Now()))
		require.NoError(t, err)
		assert.False(t, claimed)
		assert.Equal(t, "txn_taker", held.TxnID)
	})
}

// TestIdempotencyStoresRenew: Renew moves the lease of the claim it is
// given, as many times as asked, and leaves alone a key claimed anew or
// released meanwhile.
func TestIdempotencyStoresRenew(t *testing.T) {
	for name, newStore := range idemStores {
		t.Run(name, func(t *testing.T) {
			clock := newManualClock()
			s, ctx := newStore(t, clock.Now, 0), context.Background()
			first := claimOf("txn_1", clock.Now())
			_, claimed, err := s.Claim(ctx, "k", first)
			require.NoError(t, err)
			require.True(t, claimed)
			held := first
			for i := range 3 {
				until := clock.Now().Add(time.Duration(i+3) * time.Minute)
				renewed, ok, err := s.Renew(ctx, "k", held, until)
				require.NoError(t, err)
				require.True(t, ok, "renewal %d", i+1)
				assert.True(t, renewed.leaseEnd().Equal(until), "renewal %d: %+v", i+1, renewed)
				held = renewed
			}
			old, claimed, err := s.Claim(ctx, "k", claimOf("txn_2", clock.Now()))
			require.NoError(t, err)
			require.False(t, claimed)
			assert.True(t, old.same(held), "the renewed claim is stored: %+v", old)

			_, ok, err := s.Renew(ctx, "k", first, clock.Now().Add(time.Hour))
			require.NoError(t, err)
			assert.False(t, ok, "a claim that is no longer stored is not renewed")
			require.NoError(t, s.Release(ctx, "k", held))
			_, ok, err = s.Renew(ctx, "k", held, clock.Now().Add(time.Hour))
			require.NoError(t, err)
			assert.False(t, ok, "a released key is not renewed")
			_, claimed, err = s.Claim(ctx, "k", claimOf("txn_3", clock.Now()))
			require.NoError(t, err)
			assert.True(t, claimed, "nor claimed again by the renewal")
		})
	}
}

// A claim whose payment is stored in the background (commitLater) is
// renewed for as long as that takes, past its day if the store stays out
// of reach: it holds its key while its lease runs, in either store and
// whatever the memory store sweeps, and a request with the key gets it
// (claimed false; 409 while the payment is stored), not a claim of its
// own that would charge the payment again under another transaction ID.
// Once the renewals stop and its lease runs out, a claim past its day is
// forgotten.
func TestIdempotencyStoresKeepAClaimRenewedPastItsDay(t *testing.T) {
	for name, newStore := range idemStores {
		t.Run(name, func(t *testing.T) {
			clock := newManualClock()
			s, ctx := newStore(t, clock.Now, 0), context.Background()
			held := claimOf("txn_stored_late", clock.Now())
			held.Until = clock.Now().Add(inFlightLease)
			_, claimed, err := s.Claim(ctx, "k", held)
			require.NoError(t, err)
			require.True(t, claimed)
			_, _, err = s.Claim(ctx, "after", claimOf("txn_after", clock.Now()))
			require.NoError(t, err)
			for clock.Now().Sub(held.Started) <= idempotencyTTL+time.Hour {
				clock.Advance(time.Minute)
				renewed, ok, err := s.Renew(ctx, "k", held, clock.Now().Add(inFlightLease))
				require.NoError(t, err)
				require.True(t, ok, "renewed at %v", clock.Now())
				held = renewed
			}
			for i := range 20 { // the memory store sweeps at each claim
				_, _, err := s.Claim(ctx, fmt.Sprintf("new-%d", i), claimOf("txn_new", clock.Now()))
				require.NoError(t, err)
			}
			old, claimed, err := s.Claim(ctx, "k", claimOf("txn_retry", clock.Now()))
			require.NoError(t, err)
			require.False(t, claimed, "a claim whose lease runs holds its key past its day")
			assert.True(t, old.same(held), "%+v", old)
			_, claimed, err = s.Claim(ctx, "after", claimOf("txn_after_2", clock.Now()))
			require.NoError(t, err)
			assert.True(t, claimed, "a claim past its day and its lease is forgotten")

			clock.Advance(inFlightLease)
			_, claimed, err = s.Claim(ctx, "k", claimOf("txn_retry_2", clock.Now()))
			require.NoError(t, err)
			assert.True(t, claimed, "forgotten once its lease runs out too")
		})
	}
}

// On a cluster a release, or the end of a lease, that reads the key from
// a replica not caught up with the claim's write reads it again rather
// than take the key for empty, or for another claim, and leave the claim
// to hold its key until its lease runs out (409 to every retry). A
// replica that never catches up leaves the claim alone, as before.
func TestNATSIdempotencyReadsAgainOnALaggingReplica(t *testing.T) {
	clock := newManualClock()
	ctx := context.Background()
	s, lag, first := claimedOnALaggingReplica(t, clock)
	lag.stale = createReads - 1
	require.NoError(t, s.Release(ctx, "k", first))
	_, claimed, err := s.Claim(ctx, "k", claimOf("txn_2", clock.Now()))
	require.NoError(t, err)
	require.True(t, claimed, "released, though the first reads were stale")

	second := claimOf("txn_2", clock.Now())
	until := clock.Now().Add(time.Hour)
	lag.stale = createReads - 1
	renewed, ok, err := s.Renew(ctx, "k", second, until)
	require.NoError(t, err)
	require.True(t, ok, "renewed, though the first reads were stale")
	assert.True(t, renewed.leaseEnd().Equal(until))

	lag.stale = createReads
	require.NoError(t, s.Release(ctx, "k", renewed))
	old, claimed, err := s.Claim(ctx, "k", claimOf("txn_3", clock.Now()))
	require.NoError(t, err)
	require.False(t, claimed, "a replica that never catches up releases nothing")
	assert.True(t, old.same(renewed))
}

// A release, or the end of a lease, whose context ends while it reads a
// lagging replica again fails rather than report the claim gone: the
// caller then retries it in the background (releaseLater, freeLater),
// where a nil would leave the claim to hold its key until its lease ran
// out, 409 to every retry.
func TestNATSIdempotencyLaggingReadsCutShortFail(t *testing.T) {
	clock := newManualClock()
	ctx := context.Background()
	s, lag, first := claimedOnALaggingReplica(t, clock)
	ended, cancel := context.WithCancel(ctx)
	cancel()

	lag.stale = createReads - 1
	require.ErrorIs(t, s.Release(ended, "k", first), context.Canceled, "release")
	lag.stale = createReads - 1
	_, ok, err := s.Renew(ended, "k", first, clock.Now())
	require.ErrorIs(t, err, context.Canceled, "renew")
	require.False(t, ok)

	lag.stale = 0
	old, claimed, err := s.Claim(ctx, "k", claimOf("txn_2", clock.Now()))
	require.NoError(t, err)
	require.False(t, claimed, "the claim still holds its key")
	assert.True(t, old.same(first))
}

// claimedOnALaggingReplica returns a NATS idempotency store reading
// through lag, a replica whose reads can be made stale, as on a cluster,
// and the claim it holds of key "k".
func claimedOnALaggingReplica(t *testing.T, clock *manualClock) (*NATSIdempotency, *laggingKV, IdemEntry) {
	t.Helper()
	ctx := context.Background()
	s, err := NewNATSIdempotency(ctx, []jetstream.JetStream{startJS(t)}, IdemOptions{}, clock.Now)
	require.NoError(t, err)
	lag := &laggingKV{KeyValue: s.kv.kvs[0]}
	s.kv = &kvPool{kvs: []jetstream.KeyValue{lag}}
	s.missReads = missReads(3)
	first := claimOf("txn_1", clock.Now())
	_, claimed, err := s.Claim(ctx, "k", first)
	require.NoError(t, err)
	require.True(t, claimed)
	return s, lag, first
}

// The claim of a payment being stored in the background is renewed in a
// bucket that has filled up meanwhile: a claim is stored as large as any
// renewal of it (its lease at its longest, its revision at its longest),
// and JetStream takes a replacement no larger than the entry it replaces
// even at the bucket's limit. A renewal refused there would let the lease
// run out, and another replica charge the payment again.
func TestNATSIdempotencyRenewsInAFullBucket(t *testing.T) {
	clock := newManualClock()
	ctx := context.Background()
	s := idemStores["nats"](t, clock.Now, 64<<10)
	var claims []IdemEntry
	for n := 0; ; n++ {
		require.Less(t, n, 10_000, "the bucket never filled")
		e := claimOf(fmt.Sprintf("txn_%d", n), clock.Now())
		e.Until = clock.Now().Add(inFlightLease) // whole seconds: its shortest
		_, _, err := s.Claim(ctx, fmt.Sprintf("key-%d", n), e)
		if errors.Is(err, ErrStoreFull) {
			break
		}
		require.NoError(t, err)
		claims = append(claims, e)
	}
	require.Greater(t, len(claims), 10)
	// A lease to the nanosecond, in a zone other than UTC: the longest
	// a lease is written.
	zone := time.FixedZone("", -int((9*time.Hour + 30*time.Minute).Seconds()))
	until := clock.Now().Add(inFlightLease + 123456789).In(zone)
	for i, e := range claims {
		for range 2 {
			renewed, ok, err := s.Renew(ctx, fmt.Sprintf("key-%d", i), e, until)
			require.NoError(t, err, "claim %d", i)
			require.True(t, ok, "claim %d", i)
			assert.True(t, renewed.leaseEnd().Equal(until), "claim %d: %+v", i, renewed)
			e = renewed
			until = until.Add(time.Second)
		}
	}
}

// A full memory store frees the bytes of every expired claim before it
// refuses a key, wherever the claim stands in the claim order: behind a
// younger claim (a day-old claim whose lease was renewed past the day, a
// claim dated before the one claimed ahead of it), or past the few the
// sweep forgets at each claim. It refuses the key while live claims fill
// it, up to the instant the first of them expires.
func TestMemoryIdempotencyFullStoreFreesExpiredClaims(t *testing.T) {
	ctx := context.Background()
	two := func(clock *manualClock) *MemoryIdempotency {
		return NewMemoryIdempotency(2*claimOf("txn_0", clock.Now()).size("k0"), clock.Now)
	}
	claim := func(t *testing.T, s *MemoryIdempotency, key string, e IdemEntry) error {
		t.Helper()
		_, claimed, err := s.Claim(ctx, key, e)
		if err == nil {
			require.True(t, claimed, key)
		}
		return err
	}
	// atTheEdge claims k2 on s, full, a nanosecond before expires and at
	// it.
	atTheEdge := func(t *testing.T, clock *manualClock, s *MemoryIdempotency, expires time.Time) {
		t.Helper()
		clock.Advance(expires.Sub(clock.Now()) - time.Nanosecond)
		require.ErrorIs(t, claim(t, s, "k2", claimOf("txn_2", clock.Now())), ErrStoreFull, "a nanosecond before the claim expires")
		assert.Equal(t, 2, s.Len())
		clock.Advance(time.Nanosecond)
		require.NoError(t, claim(t, s, "k2", claimOf("txn_2", clock.Now())), "the expired claim's bytes are freed")
		assert.Equal(t, 2, s.Len())
	}

	t.Run("renewed past its day", func(t *testing.T) {
		clock := newManualClock()
		s := two(clock)
		renewed := claimOf("txn_0", clock.Now())
		require.NoError(t, claim(t, s, "k0", renewed))
		clock.Advance(12 * time.Hour)
		require.NoError(t, claim(t, s, "k1", claimOf("txn_1", clock.Now())))
		clock.Advance(12 * time.Hour) // k0 a day old, its payment still being stored
		until := clock.Now().Add(time.Hour)
		_, ok, err := s.Renew(ctx, "k0", renewed, until)
		require.NoError(t, err)
		require.True(t, ok)
		// A claim refused: the sweep finds k0 a day old and its lease
		// running, and looks at it again later.
		require.ErrorIs(t, claim(t, s, "k2", claimOf("txn_2", clock.Now())), ErrStoreFull)
		atTheEdge(t, clock, s, until)
	})
	t.Run("dated before the claim ahead of it", func(t *testing.T) {
		clock := newManualClock()
		s := two(clock)
		early := clock.Now()
		require.NoError(t, claim(t, s, "k1", claimOf("txn_1", early.Add(time.Hour))))
		require.NoError(t, claim(t, s, "k0", claimOf("txn_0", early)))
		atTheEdge(t, clock, s, early.Add(idempotencyTTL))
	})
	t.Run("more than the sweep forgets at a claim", func(t *testing.T) {
		clock := newManualClock()
		small := claimOf("txn_00", clock.Now())
		s := NewMemoryIdempotency(20*small.size("k00"), clock.Now)
		for i := range 20 {
			require.NoError(t, claim(t, s, fmt.Sprintf("k%02d", i), claimOf(fmt.Sprintf("txn_%02d", i), clock.Now())))
		}
		require.ErrorIs(t, claim(t, s, "k20", claimOf("txn_20", clock.Now())), ErrStoreFull)
		clock.Advance(idempotencyTTL)
		// A key that takes the room of ten claims.
		big := claimOf("txn_big", clock.Now())
		big.Fingerprint += strings.Repeat("x", int(9*small.size("k00")))
		require.NoError(t, claim(t, s, "big", big), "twenty expired claims make room for it")
	})
}
