package main

import (
	"context"
	"fmt"
	"testing"
	"time"

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
