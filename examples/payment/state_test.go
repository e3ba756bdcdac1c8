package main

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/internal/servers"
	"github.com/taipattern/taikit/tai"
)

func TestMemoryStateCountsAttemptsInTheWindow(t *testing.T) {
	s, ctx := NewMemoryState(0), context.Background()
	t0 := time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC)
	for i, want := range []int{1, 2, 3} {
		n, err := s.Attempt(ctx, "c1", t0.Add(time.Duration(i)*10*time.Second), time.Minute)
		require.NoError(t, err)
		assert.Equal(t, want, n)
	}
	n, _ := s.Attempt(ctx, "c1", t0.Add(70*time.Second), time.Minute)
	assert.Equal(t, 2, n, "the attempts at 0s and 10s are out of the minute ending at 70s")
	n, _ = s.Attempt(ctx, "c2", t0, time.Minute)
	assert.Equal(t, 1, n, "customers are counted apart")
	for i := range 2 * maxAttemptsKept {
		n, _ = s.Attempt(ctx, "c3", t0.Add(time.Duration(i)*time.Millisecond), time.Hour)
	}
	assert.Equal(t, maxAttemptsKept, n)
}

func TestMemoryStateSpendsPerCurrencyAndDay(t *testing.T) {
	s, ctx := NewMemoryState(0), context.Background()
	day := time.Date(2026, 11, 28, 9, 0, 0, 0, time.UTC)
	require.NoError(t, s.AddSpend(ctx, "c", "USD", 1000, day))
	require.NoError(t, s.AddSpend(ctx, "c", "USD", 250, day.Add(time.Hour)))
	require.NoError(t, s.AddSpend(ctx, "c", "EUR", 70, day))
	require.NoError(t, s.AddSpend(ctx, "c", "JPY", 5, day))
	for cur, want := range map[string]int64{"USD": 1250, "EUR": 70, "JPY": 5, "GBP": 0} {
		v, err := s.Spent(ctx, "c", cur, day.Add(2*time.Hour))
		require.NoError(t, err)
		assert.Equal(t, want, v, cur)
	}
	v, _ := s.Spent(ctx, "other", "USD", day)
	assert.Zero(t, v)

	next := day.Add(15 * time.Hour) // 00:00 UTC the next day
	v, _ = s.Spent(ctx, "c", "USD", next)
	assert.Zero(t, v, "a new UTC day starts from nothing")
	require.NoError(t, s.AddSpend(ctx, "c", "EUR", 30, next))
	v, _ = s.Spent(ctx, "c", "EUR", next)
	assert.Equal(t, int64(30), v)
	v, _ = s.Spent(ctx, "c", "USD", next)
	assert.Zero(t, v, "yesterday's spend in another currency is gone too")
}

func TestMemoryStateMoves(t *testing.T) {
	s, ctx := NewMemoryState(0), context.Background()
	at := time.Date(2026, 11, 28, 9, 0, 0, 5, time.UTC)
	_, ok, err := s.Move(ctx, "c", Point{Lat: 1, Lon: 2, At: at})
	require.NoError(t, err)
	assert.False(t, ok, "no previous location")
	prev, ok, _ := s.Move(ctx, "c", Point{Lat: 3, Lon: 4, At: at.Add(time.Minute)})
	require.True(t, ok)
	assert.Equal(t, 1.0, prev.Lat)
	assert.Equal(t, 2.0, prev.Lon)
	assert.True(t, at.Equal(prev.At), "%v", prev.At)
}

func TestMemoryStateForgetsIdleCustomers(t *testing.T) {
	s, ctx := NewMemoryState(0), context.Background()
	t0 := time.Date(2026, 11, 28, 9, 0, 0, 0, time.UTC)
	const n = 64
	for i := range n {
		_, _ = s.Attempt(ctx, "old"+strconv.Itoa(i), t0, time.Minute)
	}
	require.Equal(t, n, s.Len())
	// A day and more later, other customers come. A shard sweeps at every
	// 1024th operation on it, and the new customers spread over the
	// shards by a seeded hash, so how many operations every shard needs
	// varies from run to run: go on until the old customers are gone,
	// within a bound far above what the spread needs.
	later := t0.Add(forgetAfter + time.Minute)
	for i := 0; i < 1024*len(s.shards)*64; i++ {
		_, _ = s.Attempt(ctx, "new"+strconv.Itoa(i%1024), later, time.Minute)
		if i%1024 == 1023 && s.Len() == 1024 {
			break
		}
	}
	assert.Equal(t, 1024, s.Len(), "the customers idle for more than a day are forgotten")
}

// By default the fraud rules' per-customer state is in JetStream: a
// customer's spend of the day is still there after a restart, so the
// daily limit does not start afresh with the process. With -customer-state
// memory it does (the documented opt-out).
func TestCustomerStateSurvivesRestartByDefault(t *testing.T) {
	for _, mode := range []string{"auto", "memory"} {
		cfg := testConfig(t)
		cfg.CustomerState = mode
		score := func(amount float64) float64 {
			t.Helper()
			svc, err := NewService(context.Background(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
			require.NoError(t, err)
			srv := httptest.NewServer(svc.Handler())
			defer func() {
				srv.Close()
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				defer cancel()
				require.NoError(t, svc.Close(ctx))
			}()
			ts := &testService{Service: svc, URL: srv.URL, http: srv, logs: &syncBuffer{}}
			r := ts.pay(t, "cust_daily", amount, nil)
			require.Equal(t, http.StatusOK, r.Code, "%s", r.Raw)
			f, _ := r.Body["fraud_score"].(float64)
			return f
		}
		assert.Zero(t, score(4000), mode)
		after := score(2000) // 6,000 in the day: over the 5,000 daily limit
		if mode == "memory" {
			assert.Zero(t, after, "memory forgets the day's spend on restart")
		} else {
			assert.Greater(t, after, 0.0, "the day's spend survived the restart")
		}
	}
}

// newTxn returns a transaction ID of its own.
func newTxn() string { return "txn_" + tai.NewID() }

// natsState returns a NATSState on the "customers" bucket of js, as each
// replica of a service makes its own.
func natsState(t *testing.T, js jetstream.JetStream) *NATSState {
	t.Helper()
	st, err := NewNATSState(context.Background(), js, "customers", 0, 1)
	require.NoError(t, err)
	return st
}

// countingKV counts a bucket's reads.
type countingKV struct {
	jetstream.KeyValue
	gets atomic.Int64
}

func (c *countingKV) Get(ctx context.Context, key string) (jetstream.KeyValueEntry, error) {
	c.gets.Add(1)
	return c.KeyValue.Get(ctx, key)
}

// A payment's rules read and change one customer four times: the entry
// kept from the first read serves the others, so the store is read once.
// Two replicas on one bucket still count every attempt: a write on a
// kept entry another replica changed is refused, and made again on what
// the store holds.
func TestNATSStateKeepsEntriesAndStaysExactAcrossReplicas(t *testing.T) {
	ctx := context.Background()
	js := startJS(t)
	a := natsState(t, js)
	b := natsState(t, js)
	counted := &countingKV{KeyValue: a.kv}
	a.kv = counted

	now := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	n, err := a.Attempt(ctx, "cust_k", now, time.Minute)
	require.NoError(t, err)
	assert.Equal(t, 1, n)
	spent, err := a.Spent(ctx, "cust_k", "USD", now)
	require.NoError(t, err)
	assert.Zero(t, spent)
	_, moved, err := a.Move(ctx, "cust_k", Point{Lat: 52.5, Lon: 13.4, At: now})
	require.NoError(t, err)
	assert.False(t, moved)
	require.NoError(t, a.AddSpend(ctx, "cust_k", "USD", 500, now))
	assert.EqualValues(t, 1, counted.gets.Load(), "one read for the payment's four calls")

	// The other replica sees it all, and adds to it.
	spent, err = b.Spent(ctx, "cust_k", "USD", now)
	require.NoError(t, err)
	assert.EqualValues(t, 500, spent)
	for i := range 3 {
		n, err = b.Attempt(ctx, "cust_k", now.Add(time.Duration(i+1)*time.Second), time.Minute)
		require.NoError(t, err)
	}
	assert.Equal(t, 4, n)
	// a's kept entry is out of date: its write is refused and made again.
	n, err = a.Attempt(ctx, "cust_k", now.Add(5*time.Second), time.Minute)
	require.NoError(t, err)
	assert.Equal(t, 5, n, "no attempt lost across the replicas")
	require.NoError(t, b.AddSpend(ctx, "cust_k", "USD", 250, now))
	require.NoError(t, a.AddSpend(ctx, "cust_k", "USD", 250, now))
	spent, err = b.Spent(ctx, "cust_k", "USD", now)
	require.NoError(t, err)
	// b kept its own write (750); a's later one is in the store.
	fresh := natsState(t, js)
	total, err := fresh.Spent(ctx, "cust_k", "USD", now)
	require.NoError(t, err)
	assert.EqualValues(t, 1000, total, "no spend lost across the replicas")
	assert.LessOrEqual(t, spent, total)
}

// refusingKV counts the compare-and-sets a bucket refused, and can have a
// rival change the key first, through another replica, before each of the
// next rivalWrites writes.
type refusingKV struct {
	jetstream.KeyValue
	refused     atomic.Int64
	rival       func() error
	rivalWrites int // this many writes lose to the rival first
}

func (c *refusingKV) Create(ctx context.Context, key string, value []byte, opts ...jetstream.KVCreateOpt) (uint64, error) {
	if err := c.race(); err != nil {
		return 0, err
	}
	rev, err := c.KeyValue.Create(ctx, key, value, opts...)
	c.count(err)
	return rev, err
}

func (c *refusingKV) Update(ctx context.Context, key string, value []byte, last uint64) (uint64, error) {
	if err := c.race(); err != nil {
		return 0, err
	}
	rev, err := c.KeyValue.Update(ctx, key, value, last)
	c.count(err)
	return rev, err
}

func (c *refusingKV) race() error {
	if c.rivalWrites == 0 {
		return nil
	}
	c.rivalWrites--
	return c.rival()
}

func (c *refusingKV) count(err error) {
	if isConflict(err) {
		c.refused.Add(1)
	}
}

// The entries kept between a customer's calls are dropped a generation at
// a time once stale, so a stream of new customers keeps only those of the
// last two generations, not every customer seen until a cap.
func TestNATSStateKeepsOnlyFreshEntries(t *testing.T) {
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	now := t0
	n := &NATSState{clock: func() time.Time { return now }}
	kept := func(customer string) bool {
		_, _, ok := n.kept(customer)
		return ok
	}
	n.keep("a", customerEntry{Day: "d"}, 1)
	n.keep("b", customerEntry{}, 2)
	now = t0.Add(cacheTTL * 3 / 4)
	n.keep("c", customerEntry{}, 3)
	if !kept("a") || !kept("c") {
		t.Fatal("entries kept less than cacheTTL ago are not found")
	}
	if e, rev, _ := n.kept("a"); e.Day != "d" || rev != 1 {
		t.Fatalf("kept a = %+v at %d, want its entry at revision 1", e, rev)
	}
	now = t0.Add(cacheTTL + time.Millisecond)
	if kept("a") || kept("b") {
		t.Error("entries kept cacheTTL ago are still found")
	}
	if !kept("c") {
		t.Error("an entry of the generation before, kept less than cacheTTL ago, is not found")
	}
	n.keep("b", customerEntry{}, 0) // forgets b wherever it is
	if _, ok := n.old["b"]; ok {
		t.Error("keep at revision 0 left the old generation's copy")
	}
	now = now.Add(cacheTTL)
	n.keep("d", customerEntry{}, 4)
	if got := len(n.cache) + len(n.old); got != 1 {
		t.Errorf("%d entries kept two generations on, want 1 (d): the stale ones stay", got)
	}
	now = now.Add(2 * cacheTTL)
	if kept("d") || len(n.cache)+len(n.old) != 0 {
		t.Errorf("after two idle generations %d entries are kept, want none", len(n.cache)+len(n.old))
	}
	for i := range cacheEntries + 1 {
		n.keep("x"+strconv.Itoa(i), customerEntry{}, 1)
	}
	if len(n.cache) != 1 || len(n.old) != cacheEntries {
		t.Errorf("a full generation: %d kept in the current one and %d in the old, want 1 and %d",
			len(n.cache), len(n.old), cacheEntries)
	}
	if !kept("x0") || !kept("x"+strconv.Itoa(cacheEntries)) {
		t.Error("entries of a generation turned old by its size are not found")
	}
}

// Requests of one replica changing one customer at once take turns: none
// is refused by the store for another's change, and every change is made.
// (Racing each other through the store, these 512 changes had 226 to 803
// compare-and-sets refused, and some ran out of tries: 502s.)
func TestNATSStateChangesOfOneCustomerTakeTurns(t *testing.T) {
	ctx := context.Background()
	st := natsState(t, startJS(t))
	kv := &refusingKV{KeyValue: st.kv}
	st.kv = kv
	day := time.Date(2026, 12, 3, 9, 0, 0, 0, time.UTC)
	const perRequest, requests = 16, 32
	var wg sync.WaitGroup
	start := make(chan struct{})
	for range requests {
		wg.Go(func() {
			<-start // all at once
			for range perRequest {
				if err := st.AddSpend(ctx, "cust_hot", "EUR", 1, day); err != nil {
					t.Errorf("a change failed: %v", err)
					return
				}
			}
		})
	}
	close(start)
	wg.Wait()
	assert.Zero(t, kv.refused.Load(), "compare-and-sets refused")
	total, err := st.Spent(ctx, "cust_hot", "EUR", day)
	require.NoError(t, err)
	assert.EqualValues(t, perRequest*requests, total, "every change made")
}

// A change that another replica keeps getting in before is made again
// until it lands: thirty lost compare-and-sets in a row (more than the
// twenty quick tries it had, which answered 502) and it still lands, and
// the other replica's changes are all kept.
func TestNATSStateChangeOutlastsAnotherReplica(t *testing.T) {
	ctx := context.Background()
	js := startJS(t)
	a := natsState(t, js)
	b := natsState(t, js)
	day := time.Date(2026, 12, 3, 9, 0, 0, 0, time.UTC)
	const rival = 30
	kv := &refusingKV{KeyValue: a.kv, rivalWrites: rival,
		rival: func() error { return b.AddSpend(ctx, "cust_hot", "EUR", 10, day) }}
	a.kv = kv
	require.NoError(t, a.AddSpend(ctx, "cust_hot", "EUR", 1, day))
	assert.EqualValues(t, rival, kv.refused.Load(), "a's writes lost to b's")
	fresh := natsState(t, js)
	total, err := fresh.Spent(ctx, "cust_hot", "EUR", day)
	require.NoError(t, err)
	assert.EqualValues(t, rival*10+1, total, "a's change and all of b's")

	// A change whose context ends while it loses says so.
	kv.rivalWrites = maxUpdateTries
	cctx, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	err = a.AddSpend(cctx, "cust_hot", "EUR", 1, day)
	require.ErrorIs(t, err, context.DeadlineExceeded)
}

// Reserve counts the attempt and holds the payment's amount in the day's
// spend, returning the spend before the hold; a release gives the hold
// back on its day and changes nothing once that day has passed. Alike in
// every store.
func TestReserveHoldsTheDaysSpend(t *testing.T) {
	stores := map[string]func(t *testing.T) CustomerState{
		"memory": func(*testing.T) CustomerState { return NewMemoryState(0) },
		"nats":   func(t *testing.T) CustomerState { return natsState(t, startJS(t)) },
		"redis": func(t *testing.T) CustomerState {
			opts, err := redis.ParseURL(servers.StartRedis(t).URL())
			require.NoError(t, err)
			rdb := redis.NewClient(opts)
			t.Cleanup(func() { _ = rdb.Close() })
			return NewRedisState(rdb, "test:")
		},
	}
	for name, open := range stores {
		t.Run(name, func(t *testing.T) {
			s, ctx := open(t), context.Background()
			day := time.Date(2026, 11, 28, 9, 0, 0, 0, time.UTC)
			r, err := s.Reserve(ctx, "c", newTxn(), "USD", 1000, day, time.Minute, nil)
			require.NoError(t, err)
			assert.Equal(t, 1, r.Attempts)
			assert.Zero(t, r.Spent, "nothing before the first hold")
			paris := Point{Lat: 48.8566, Lon: 2.3522, At: day.Add(time.Second)}
			r, err = s.Reserve(ctx, "c", newTxn(), "USD", 250, day.Add(time.Second), time.Minute, &paris)
			require.NoError(t, err)
			assert.Equal(t, 2, r.Attempts, "each reserve is an attempt")
			assert.EqualValues(t, 1000, r.Spent, "the first hold counts for the second payment")
			assert.False(t, r.HasPrev, "no location before")
			r, err = s.Reserve(ctx, "c", newTxn(), "USD", 0, day.Add(time.Second), time.Minute, &Point{Lat: 1, Lon: 2, At: day.Add(time.Second)})
			require.NoError(t, err)
			assert.True(t, r.HasPrev)
			assert.Equal(t, paris.Lat, r.Prev.Lat)
			assert.Equal(t, paris.Lon, r.Prev.Lon)
			assert.True(t, paris.At.Equal(r.Prev.At), "%v", r.Prev.At)
			n, err := s.Attempt(ctx, "c", day.Add(2*time.Second), time.Minute)
			require.NoError(t, err)
			assert.Equal(t, 4, n, "reserves and attempts count together")

			// The second payment is not charged: its hold goes back.
			require.NoError(t, s.AddSpend(ctx, "c", "USD", -250, day.Add(time.Second)))
			v, err := s.Spent(ctx, "c", "USD", day.Add(time.Hour))
			require.NoError(t, err)
			assert.EqualValues(t, 1000, v)
			v, err = s.Spent(ctx, "c", "EUR", day)
			require.NoError(t, err)
			assert.Zero(t, v, "a hold is in its currency")

			// A hold taken just before midnight and given back after it
			// leaves the new day alone.
			late := time.Date(2026, 11, 28, 23, 59, 59, 0, time.UTC)
			r, err = s.Reserve(ctx, "d", newTxn(), "USD", 700, late, time.Minute, nil)
			require.NoError(t, err)
			assert.Zero(t, r.Spent)
			next := late.Add(2 * time.Second)
			require.NoError(t, s.AddSpend(ctx, "d", "USD", 300, next))
			require.NoError(t, s.AddSpend(ctx, "d", "USD", -700, late))
			v, err = s.Spent(ctx, "d", "USD", next)
			require.NoError(t, err)
			assert.EqualValues(t, 300, v, "the release of yesterday's hold took nothing from today")
		})
	}
}

// Attempts of one customer at the same instant are each counted in Redis,
// even where the system clock reads the same for them (a coarse clock, or
// time standing still as it does under synctest).
func TestRedisStateCountsAttemptsOfOneInstant(t *testing.T) {
	opts, err := redis.ParseURL(servers.StartRedis(t).URL())
	require.NoError(t, err)
	synctest.Test(t, func(t *testing.T) {
		rdb := redis.NewClient(opts)
		defer rdb.Close()
		s := NewRedisState(rdb, "test:")
		now := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
		for i := range 3 {
			n, err := s.Attempt(context.Background(), "same", now, time.Minute)
			require.NoError(t, err)
			assert.Equal(t, i+1, n)
		}
	})
}

// A customer back after forgetAfter is new to every store: the memory
// one forgets them when they come back, whether or not its sweep has run
// yet, and Redis keeps their last location as long as the others keep
// theirs, so that a return between a day and forgetAfter is judged alike.
func TestCustomerStatesForgetAfterAlike(t *testing.T) {
	ctx := context.Background()
	t0 := time.Date(2026, 11, 28, 9, 0, 0, 0, time.UTC)

	m := NewMemoryState(0)
	_, _, err := m.Move(ctx, "back", Point{Lat: -33.8688, Lon: 151.2093, At: t0})
	require.NoError(t, err)
	_, ok, err := m.Move(ctx, "back", Point{Lat: 51.5074, Lon: -0.1278, At: t0.Add(forgetAfter - time.Second)})
	require.NoError(t, err)
	assert.True(t, ok, "within forgetAfter the last location is kept")
	_, ok, err = m.Move(ctx, "back", Point{Lat: -33.8688, Lon: 151.2093, At: t0.Add(2*forgetAfter + time.Second)})
	require.NoError(t, err)
	assert.False(t, ok, "after forgetAfter the customer is new")

	opts, err := redis.ParseURL(servers.StartRedis(t).URL())
	require.NoError(t, err)
	rdb := redis.NewClient(opts)
	defer rdb.Close()
	_, _, err = NewRedisState(rdb, "test:").Move(ctx, "back", Point{Lat: 1, Lon: 2, At: t0})
	require.NoError(t, err)
	ttl, err := rdb.PTTL(ctx, "test:location:back").Result()
	require.NoError(t, err)
	assert.Greater(t, ttl, forgetAfter-time.Minute, "the last location is kept for forgetAfter")
}

// racingReadKV runs during, once, the next read of the bucket, after the
// store answered it and before the answer reaches the reader.
type racingReadKV struct {
	jetstream.KeyValue
	during func()
}

func (c *racingReadKV) Get(ctx context.Context, key string) (jetstream.KeyValueEntry, error) {
	got, err := c.KeyValue.Get(ctx, key)
	if f := c.during; f != nil {
		c.during = nil
		f()
	}
	return got, err
}

// A read of the day's spend that loses the race to this replica's own
// change of the customer does not keep what it read over the change: the
// change's newer revision stays kept, and the next read sees the spend
// (it missed it for up to cacheTTL, and each change on the old copy was
// refused by the store and made again).
func TestNATSStateReadRacingAChangeKeepsTheChange(t *testing.T) {
	ctx := context.Background()
	st := natsState(t, startJS(t))
	now := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	require.NoError(t, st.AddSpend(ctx, "cust_r", "USD", 100, now))
	st.keep("cust_r", customerEntry{}, 0) // the next read goes to the store
	racing := &racingReadKV{KeyValue: st.kv}
	st.kv = racing
	racing.during = func() {
		require.NoError(t, st.AddSpend(ctx, "cust_r", "USD", 400, now))
	}
	spent, err := st.Spent(ctx, "cust_r", "USD", now)
	require.NoError(t, err)
	assert.EqualValues(t, 100, spent, "the read answers what the store held when it read")
	_, rev, ok := st.kept("cust_r")
	require.True(t, ok)
	got, err := st.kv.Get(ctx, customerKey("cust_r"))
	require.NoError(t, err)
	assert.Equal(t, got.Revision(), rev, "the kept copy is the store's newest")
	spent, err = st.Spent(ctx, "cust_r", "USD", now)
	require.NoError(t, err)
	assert.EqualValues(t, 500, spent, "the replica's own change is read back")
}

// A Reserve repeated on a replica that keeps a copy of the customer's
// entry from before another replica released the transaction's hold is
// checked on the entry as stored: the payment, not charged and run again,
// holds its amount afresh, where the kept copy's hold — given back
// meanwhile — was returned, and the payment charged then went unbooked.
func TestNATSStateRepeatedReserveReadsTheStore(t *testing.T) {
	ctx := context.Background()
	js := startJS(t)
	a, b := natsState(t, js), natsState(t, js)
	day := time.Date(2026, 11, 28, 9, 0, 0, 0, time.UTC)
	txn := newTxn()
	_, err := b.Reserve(ctx, "cust_x", txn, "USD", 700, day, time.Minute, nil)
	require.NoError(t, err)
	spent, err := a.Spent(ctx, "cust_x", "USD", day) // a keeps the entry, the hold in it
	require.NoError(t, err)
	require.EqualValues(t, 700, spent)
	require.NoError(t, b.Release(ctx, "cust_x", txn, "USD", 700, day))

	r, err := a.Reserve(ctx, "cust_x", txn, "USD", 700, day.Add(time.Second), time.Minute, nil)
	require.NoError(t, err)
	assert.Zero(t, r.Spent)
	assert.True(t, r.At.Equal(day.Add(time.Second)), "held afresh: %v", r.At)
	e, _, err := b.load(ctx, "cust_x")
	require.NoError(t, err)
	assert.EqualValues(t, 700, e.spent("USD", day), "the rerun's hold is booked")
}
