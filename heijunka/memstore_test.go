package heijunka_test

import (
	"context"
	"strconv"
	"testing"
	"time"

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
