package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/maphash"
	"maps"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/taipattern/taikit/examples/internal/svc"
)

// NATSState keeps customer state in a JetStream key-value bucket, so
// replicas that share a NATS server share it without Redis. Each customer
// is one entry, changed by compare-and-set on its revision; entries expire
// 25 hours after their last change.
//
// The entries this process read or wrote in the last cacheTTL are kept
// with their revisions, so the rules of one payment — which read and
// change one customer up to four times (the Go rules), or once (the CEL
// rules' lookup: Reserve, the location with it) — make one
// read and their writes, not a read before each. A write still compares and sets: if
// another replica changed the entry meanwhile, the write is refused, the
// kept copy dropped, and the change made again on what the store holds.
// Only a pure read (the day's spend) may miss another replica's change,
// for cacheTTL at most.
//
// This process's changes to one customer take turns (a lane per customer,
// shared by a few customers), so requests of one replica never race each
// other's compare-and-set through the store; a change refused because
// another replica wrote first is made again after a short random pause,
// for as long as the call's context allows.
type NATSState struct {
	kv    jetstream.KeyValue
	seed  maphash.Seed
	lanes [stateLanes]chan struct{}

	// The kept entries in two generations: cache, begun at since, and
	// old, the one before. A generation becomes old once cacheTTL has
	// passed since it began (or it holds cacheEntries), and the old one
	// is dropped then: every kept entry still fresh is in one of the two,
	// and the stale ones go a generation at a time, without a scan.
	mu    sync.Mutex
	cache map[string]cachedEntry
	old   map[string]cachedEntry
	since time.Time
	clock func() time.Time // nil: time.Now (tests set it)
}

const (
	// stateLanes is the number of lanes customers' changes take turns
	// in. Customers that share a lane wait for each other too: with a
	// hundred payments at once, a payment finds its lane taken at most
	// about one time in ten, for one write.
	stateLanes = 1024
	// maxUpdateTries bounds the compare-and-sets of one change, for a
	// context without a deadline.
	maxUpdateTries = 64
)

// cachedEntry is a customer's entry as last read or written here.
type cachedEntry struct {
	e   customerEntry
	rev uint64
	at  time.Time
}

// How long a read or written entry is kept, and how many a generation
// holds at most (two are kept). Entries kept long past their use are not
// free: every one is a few hundred bytes of pointers that each garbage
// collection walks, and at 2,000 payments a second a single map pruned
// only when full held about 40 MB of them, most stale, which made each
// collection longer and the latency tail with it.
const (
	cacheTTL     = 2 * time.Second
	cacheEntries = 1 << 15
)

// clone copies e deeply: a change must not reach the kept copy.
func (e customerEntry) clone() customerEntry {
	c := e
	c.Attempts = append([]int64(nil), e.Attempts...)
	c.Spend = maps.Clone(e.Spend)
	c.PrevSpend = maps.Clone(e.PrevSpend)
	if e.Last != nil {
		last := *e.Last
		c.Last = &last
	}
	// A held entry is never changed in place: copying the slice is
	// enough.
	c.Holds = append([]heldEntry(nil), e.Holds...)
	return c
}

// kept returns the customer's kept entry, if it is fresh.
func (n *NATSState) kept(customer string) (customerEntry, uint64, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	now := n.now()
	n.age(now)
	c, ok := n.cache[customer]
	if !ok {
		c, ok = n.old[customer]
	}
	if !ok || now.Sub(c.at) >= cacheTTL {
		return customerEntry{}, 0, false
	}
	return c.e.clone(), c.rev, true
}

// keep remembers the customer's entry at rev (0 forgets it), unless a
// newer revision is kept.
func (n *NATSState) keep(customer string, e customerEntry, rev uint64) {
	n.mu.Lock()
	defer n.mu.Unlock()
	now := n.now()
	n.age(now)
	if rev == 0 {
		delete(n.cache, customer)
		delete(n.old, customer)
		return
	}
	// A read (Spent, which does not take the customer's lane) that raced
	// a change of this process may come to keep what it read after the
	// change kept its newer revision: the newer one stays, for the
	// bucket's revisions only grow.
	if c, ok := n.cache[customer]; ok && c.rev > rev {
		return
	}
	if c, ok := n.old[customer]; ok && c.rev > rev {
		return
	}
	if len(n.cache) >= cacheEntries {
		n.old, n.cache, n.since = n.cache, nil, now
	}
	if n.cache == nil {
		n.cache = map[string]cachedEntry{}
	}
	// An older copy in the old generation is shadowed by this one.
	delete(n.old, customer)
	n.cache[customer] = cachedEntry{e: e.clone(), rev: rev, at: now}
}

func (n *NATSState) now() time.Time {
	if n.clock != nil {
		return n.clock()
	}
	return time.Now()
}

// age begins a new generation once the current one is cacheTTL old: its
// entries become the old ones, and the old ones — all kept at least
// cacheTTL ago, so stale — are dropped. n.mu is held.
func (n *NATSState) age(now time.Time) {
	if now.Sub(n.since) < cacheTTL {
		return
	}
	if now.Sub(n.since) >= 2*cacheTTL {
		// Nothing was kept for a whole generation: both are stale.
		n.old, n.cache = nil, nil
	} else {
		n.old, n.cache = n.cache, nil
	}
	n.since = now
}

// customerEntry is a customer's stored state.
type customerEntry struct {
	Attempts []int64 `json:"attempts,omitempty"` // unix nanoseconds, oldest first
	// Spend is the spend per currency on Day (as dayKey names it), the
	// latest day booked; PrevSpend that of the day before it, which a
	// replica whose clock is a little behind still reads and books, just
	// after midnight, as Redis's keys per day let it.
	Day       string           `json:"day,omitempty"`
	Spend     map[string]int64 `json:"spend,omitempty"`
	PrevDay   string           `json:"prev_day,omitempty"`
	PrevSpend map[string]int64 `json:"prev_spend,omitempty"`
	Last      *Point           `json:"last,omitempty"`
	// Holds are the transactions' Reserves remembered, oldest first.
	Holds []heldEntry `json:"holds,omitempty"`
}

// heldEntry is a transaction's Reserve as the entry keeps it: what it
// returned.
type heldEntry struct {
	Txn      string `json:"txn"`
	At       int64  `json:"at"` // Unix nanoseconds
	Attempts int    `json:"attempts"`
	Spent    int64  `json:"spent"`
	Prev     *Point `json:"prev,omitempty"`
}

// NewNATSState creates (or reuses) the bucket on replicas servers of a
// cluster (0 means 1), holding maxBytes at most (0 means 256 MiB): beyond, the entries changed least recently are
// dropped, so the fraud rules forget idle customers rather than refuse
// payments.
func NewNATSState(ctx context.Context, js jetstream.JetStream, bucket string, maxBytes int64, replicas int) (*NATSState, error) {
	if maxBytes <= 0 {
		maxBytes = 256 << 20
	}
	kv, err := svc.KeyValue(ctx, js, jetstream.KeyValueConfig{
		Bucket:   bucket,
		TTL:      forgetAfter,
		History:  1,
		MaxBytes: maxBytes,
		Storage:  jetstream.FileStorage,
		Replicas: max(replicas, 1),
	})
	if err != nil {
		return nil, fmt.Errorf("customer state bucket %q: %w", bucket, err)
	}
	// A key-value bucket refuses writes when full (discard new); this
	// one drops its oldest entries instead.
	st, err := js.Stream(ctx, "KV_"+bucket)
	if err != nil {
		return nil, fmt.Errorf("customer state bucket %q: %w", bucket, err)
	}
	if cfg := st.CachedInfo().Config; cfg.Discard != jetstream.DiscardOld {
		cfg.Discard = jetstream.DiscardOld
		if _, err := js.UpdateStream(ctx, cfg); err != nil {
			return nil, fmt.Errorf("customer state bucket %q: %w", bucket, err)
		}
	}
	n := &NATSState{kv: kv, seed: maphash.MakeSeed()}
	for i := range n.lanes {
		n.lanes[i] = make(chan struct{}, 1)
	}
	return n, nil
}

// Customer IDs are validated to letters, digits, '_', '-' and '.', which
// are all valid key characters.
func customerKey(customer string) string { return "c." + customer }

// read returns the customer's entry and its revision (0 when absent),
// the kept copy if it is fresh.
func (n *NATSState) read(ctx context.Context, customer string) (customerEntry, uint64, error) {
	if e, rev, ok := n.kept(customer); ok {
		return e, rev, nil
	}
	return n.load(ctx, customer)
}

// load reads the customer's entry from the store and keeps it.
func (n *NATSState) load(ctx context.Context, customer string) (customerEntry, uint64, error) {
	var e customerEntry
	got, err := n.kv.Get(ctx, customerKey(customer))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return e, 0, nil
	}
	if err != nil {
		return e, 0, fmt.Errorf("nats state: %w", err)
	}
	if err := json.Unmarshal(got.Value(), &e); err != nil {
		e = customerEntry{} // not ours: start afresh
	}
	n.keep(customer, e, got.Revision())
	return e, got.Revision(), nil
}

// update applies change to the customer's entry with compare-and-set,
// retrying when another replica changed it first. A change that reports
// false changed nothing: nothing is written, once it has been made on the
// entry as the store holds it — not on a kept copy, which another replica
// may have changed since (a repeated Reserve must not return a hold that
// was released meanwhile).
func (n *NATSState) update(ctx context.Context, customer string, change func(*customerEntry) bool) error {
	lane := n.lanes[maphash.String(n.seed, customer)%stateLanes]
	select {
	case lane <- struct{}{}:
	case <-ctx.Done():
		return fmt.Errorf("nats state: %w", ctx.Err())
	}
	defer func() { <-lane }()
	key := customerKey(customer)
	for try := range maxUpdateTries {
		if try > 0 {
			if err := pause(ctx, try); err != nil {
				return fmt.Errorf("nats state: customer %q changed by others meanwhile: %w", clip(customer), err)
			}
		}
		e, rev, kept := n.kept(customer)
		if !kept {
			var err error
			if e, rev, err = n.load(ctx, customer); err != nil {
				return err
			}
		}
		if !change(&e) {
			if !kept {
				return nil
			}
			// Made again on the entry as stored.
			var err error
			if e, rev, err = n.load(ctx, customer); err != nil {
				return err
			}
			if !change(&e) {
				return nil
			}
		}
		val, err := json.Marshal(e)
		if err != nil {
			return err
		}
		var next uint64
		if rev == 0 {
			next, err = n.kv.Create(ctx, key, val)
		} else {
			next, err = n.kv.Update(ctx, key, val, rev)
		}
		if err == nil {
			n.keep(customer, e, next)
			return nil
		}
		// Whatever happened, what is kept may be out of date.
		n.keep(customer, customerEntry{}, 0)
		if !isConflict(err) {
			return fmt.Errorf("nats state: %w", err)
		}
	}
	return fmt.Errorf("nats state: customer %q changed too often to update", clip(customer))
}

// pause waits before the try-th compare-and-set of a change: a random
// time up to 0.5 ms doubled with each try, at most 32 ms, so replicas that
// collided do not collide again in step. It returns ctx's error if ctx
// ends first.
func pause(ctx context.Context, try int) error {
	limit := min(500*time.Microsecond<<min(try-1, 6), 32*time.Millisecond)
	t := time.NewTimer(rand.N(limit) + 1)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Attempt implements CustomerState.
func (n *NATSState) Attempt(ctx context.Context, customer string, now time.Time, window time.Duration) (count int, err error) {
	err = n.update(ctx, customer, func(e *customerEntry) bool {
		count = e.attempt(now, window)
		return true
	})
	return count, err
}

// Spent implements CustomerState.
func (n *NATSState) Spent(ctx context.Context, customer, currency string, now time.Time) (int64, error) {
	e, _, err := n.read(ctx, customer)
	if err != nil {
		return 0, err
	}
	return e.spent(currency, now), nil
}

// AddSpend implements CustomerState.
func (n *NATSState) AddSpend(ctx context.Context, customer, currency string, minor int64, now time.Time) error {
	return n.update(ctx, customer, func(e *customerEntry) bool {
		e.addSpend(currency, minor, now)
		return true
	})
}

// Reserve implements CustomerState: one compare-and-set for the attempt,
// the hold and the location. A repeated one writes nothing.
func (n *NATSState) Reserve(ctx context.Context, customer, txn, currency string, minor int64, now time.Time, window time.Duration, at *Point) (res Reservation, err error) {
	err = n.update(ctx, customer, func(e *customerEntry) bool {
		if r, repeated := e.reserved(txn, now); repeated && txn != "" {
			res = r
			res.Again = true
			return false
		}
		res = reserve(e, txn, currency, minor, now, window, at)
		return true
	})
	return res, err
}

// Release implements CustomerState.
func (n *NATSState) Release(ctx context.Context, customer, txn, currency string, minor int64, at time.Time) error {
	return n.update(ctx, customer, func(e *customerEntry) bool {
		if !e.forget(txn) {
			return false // not held: nothing to give back
		}
		e.addSpend(currency, -minor, at)
		return true
	})
}

// reserved implements customerBook.
func (e *customerEntry) reserved(txn string, now time.Time) (Reservation, bool) {
	cut := now.UnixNano() - int64(holdKept)
	for _, h := range e.Holds {
		if h.Txn == txn && h.At > cut {
			r := Reservation{At: time.Unix(0, h.At).UTC(), Attempts: h.Attempts, Spent: h.Spent}
			if h.Prev != nil {
				r.Prev, r.HasPrev = *h.Prev, true
			}
			return r, true
		}
	}
	return Reservation{}, false
}

// remember implements customerBook.
func (e *customerEntry) remember(txn string, r Reservation) {
	kept := roomForHold(e.Holds, func(h heldEntry) int64 { return h.At }, r.At)
	h := heldEntry{Txn: txn, At: r.At.UnixNano(), Attempts: r.Attempts, Spent: r.Spent}
	if r.HasPrev {
		prev := r.Prev
		h.Prev = &prev
	}
	e.Holds = append(kept, h)
}

// forget implements customerBook.
func (e *customerEntry) forget(txn string) bool {
	if txn == "" {
		return false
	}
	n := len(e.Holds)
	e.Holds = slices.DeleteFunc(e.Holds, func(h heldEntry) bool { return h.Txn == txn })
	return len(e.Holds) < n
}

// attempt records an attempt at now and returns the attempts in the
// window ending at now.
func (e *customerEntry) attempt(now time.Time, window time.Duration) int {
	e.Attempts = addAttempt(e.Attempts, now, window)
	return len(e.Attempts)
}

// spent returns the spend in currency on now's day.
func (e *customerEntry) spent(currency string, now time.Time) int64 {
	switch dayKey(now) {
	case e.Day:
		return e.Spend[currency]
	case e.PrevDay:
		return e.PrevSpend[currency]
	}
	return 0
}

// addSpend adds minor to the spend in currency on now's day. A payment of
// a new day starts it, and keeps the day before it (if it is the one
// before) for a replica whose clock is a little behind, just after
// midnight: its payments are booked on, and given back to, the day its
// clock reads, as with Redis. A release (minor < 0) of a day not kept
// changes nothing, and neither does a payment of an older day: today's
// spend must not be lost to it; a release takes a day's spend to zero at
// most (addSpent). Days as dayKey writes them sort as they follow each
// other.
func (e *customerEntry) addSpend(currency string, minor int64, now time.Time) {
	switch d := dayKey(now); {
	case d == e.Day:
	case d == e.PrevDay:
		if e.PrevSpend == nil {
			e.PrevSpend = map[string]int64{}
		}
		e.PrevSpend[currency] = addSpent(e.PrevSpend[currency], minor)
		return
	case minor < 0 || d < e.Day:
		return
	default:
		e.PrevDay, e.PrevSpend = "", nil
		if e.Day == dayKey(now.Add(-24*time.Hour)) {
			e.PrevDay, e.PrevSpend = e.Day, e.Spend
		}
		e.Day, e.Spend = d, map[string]int64{}
	}
	if e.Spend == nil {
		e.Spend = map[string]int64{}
	}
	e.Spend[currency] = addSpent(e.Spend[currency], minor)
}

// Move implements CustomerState.
func (n *NATSState) Move(ctx context.Context, customer string, p Point) (prev Point, ok bool, err error) {
	err = n.update(ctx, customer, func(e *customerEntry) bool {
		prev, ok = e.move(p)
		return true
	})
	return prev, ok, err
}

// move records p as the customer's location and returns the one before.
// A change tried again starts from the entry as stored, so prev is set on
// every call.
func (e *customerEntry) move(p Point) (prev Point, ok bool) {
	if e.Last != nil {
		prev, ok = *e.Last, true
	}
	last := p
	e.Last = &last
	return prev, ok
}
