package main

import (
	"context"
	"hash/maphash"
	"slices"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"
)

// Point is where a customer paid from, and when.
type Point struct {
	Lat, Lon float64
	At       time.Time
}

// CustomerState is the per-customer memory the fraud rules need. The
// in-memory one serves a single replica; RedisState shares it across
// replicas.
type CustomerState interface {
	// Attempt records a payment attempt at now and returns the number of
	// attempts in the window ending at now, this one included, up to
	// maxAttemptsKept (256).
	Attempt(ctx context.Context, customer string, now time.Time, window time.Duration) (int, error)
	// Spent returns what the customer has paid in currency (minor units)
	// on the UTC day of now.
	Spent(ctx context.Context, customer, currency string, now time.Time) (int64, error)
	// AddSpend adds a successful payment to the day's spend. A negative
	// minor releases a hold Reserve took on the day of now; once that day
	// has passed there is nothing to release, and it changes nothing. A
	// release never takes the day's spend below zero: a hold the store
	// has forgotten since (the customer evicted or expired) is not given
	// back twice, as a credit on the daily limit.
	AddSpend(ctx context.Context, customer, currency string, minor int64, now time.Time) error
	// Reserve is Attempt and Spent in one change, and holds minor of the
	// day's spend for the payment being judged, transaction txn: it
	// returns the attempts in the window ending at now (this one
	// included) and the spend of now's day before the hold. A payment
	// that is then not charged gives the hold back (Release); one that is
	// charged keeps it, and books nothing more. Payments of a customer
	// judged at the same time see each other's holds. With at not nil it
	// is Move to *at too, in the same change, and returns the location
	// before it: a payment with coordinates makes one write, not two.
	//
	// A Reserve is made once per transaction: one repeated with the same
	// txn (its payment run again after its process died, the money
	// perhaps moved) returns what the first returned, At the first's
	// time and Again set, and changes nothing — no second attempt, hold or move — for
	// as long as the first is remembered: holdKept, for the
	// maxHoldsKept latest transactions of the customer, until it is
	// released or the customer is forgotten. An empty txn is never taken
	// for a repeat.
	Reserve(ctx context.Context, customer, txn, currency string, minor int64, now time.Time, window time.Duration, at *Point) (Reservation, error)
	// Release gives back the hold Reserve took for transaction txn, minor
	// of currency on the day of at (the Reservation's At), as AddSpend
	// with -minor does, and forgets the transaction's Reserve: a payment
	// not charged that is run again holds afresh. It gives back only a
	// Reserve it remembers: one whose answer was lost may or may not be
	// stored, and is released so, and a Release made twice gives back
	// once. (A hold forgotten before it is released — beyond the
	// maxHoldsKept latest, or the customer forgotten — stays, which errs
	// on the side of the daily limit.)
	Release(ctx context.Context, customer, txn, currency string, minor int64, at time.Time) error
	// Move records the customer's location and returns the previous one.
	Move(ctx context.Context, customer string, p Point) (prev Point, ok bool, err error)
}

// dayKey names the UTC day of t.
func dayKey(t time.Time) string { return t.UTC().Format("2006-01-02") }

// MemoryState keeps customer state in this process, which forgets it on
// restart. Memory is bounded twice: a customer not seen for 25 hours is
// forgotten, by an incremental sweep or, if they come back first, then,
// as the shared stores' entries expire; and past MaxBytes (an estimate of
// what the records cost, map overhead included) the customers seen least
// recently are forgotten first — approximately, as Redis does: the oldest
// of a handful of customers picked at random. Evictions are counted
// (Evicted).
//
// With millions of customers it is laid out for the garbage collector,
// which walks every pointer of the live heap on each cycle: a customer's
// record is a value in its shard's map, holding times as Unix nanoseconds
// and the day's spend inline, so it costs the collector two pointers (the
// name and the attempts, bytes it does not scan) instead of an object, a
// map and a string of its own.
type MemoryState struct {
	seed     maphash.Seed
	shards   [32]memoryShard
	shardMax int64 // bytes per shard
	evicted  atomic.Int64
}

type memoryShard struct {
	mu        sync.Mutex
	customers map[string]customerRecord
	bytes     int64
	ops       int
}

// recordBytes estimates what a customer's record costs: the map entry and
// its share of the map, the name, the attempts, the holds and the other
// currencies.
func recordBytes(customer string, r *customerRecord) int64 {
	return int64(192 + len(customer) + 8*cap(r.attempts) + heldRecordBytes*cap(r.holds) + 48*len(r.more))
}

type customerRecord struct {
	attempts []int64 // Unix nanoseconds, within the longest window asked for, oldest first
	// day is the UTC day of the spend, in days since 1970-01-01; the
	// spend is in one currency inline (code, minor), the others in more.
	day     int64
	code    [3]byte
	minor   int64
	more    map[string]int64
	lastLat float64
	lastLon float64
	lastAt  int64 // Unix nanoseconds
	hasLast bool
	seen    int64 // Unix nanoseconds
	// holds are the transactions' Reserves remembered, oldest first.
	holds []heldRecord
}

// heldRecord is a transaction's Reserve as MemoryState remembers it: what
// it returned, and the transaction as a hash of its ID (txnTag). It holds
// no pointer, which the garbage collector would have to walk.
type heldRecord struct {
	tag      uint64
	at       int64 // Unix nanoseconds
	spent    int64
	prevLat  float64
	prevLon  float64
	prevAt   int64 // Unix nanoseconds
	attempts int32
	hasPrev  bool
}

// heldRecordBytes is the size of a heldRecord.
const heldRecordBytes = int(unsafe.Sizeof(heldRecord{}))

// tagSeed seeds the hashes MemoryState keeps of transaction IDs: they
// never leave the process.
var tagSeed = maphash.MakeSeed()

// txnTag is the hash MemoryState keeps of a transaction ID. Two of one
// customer's remembered transactions share one by a chance of one in
// 2^58 at most.
func txnTag(txn string) uint64 { return maphash.String(tagSeed, txn) }

// maxAttemptsKept bounds the attempts remembered per customer, in every
// store: the count of attempts goes no higher, and a velocity limit must
// be below it.
const maxAttemptsKept = 256

// How long, and how many per customer, every store remembers the
// transactions' Reserves, so that a payment run again is not counted
// and held twice: as long as its Idempotency-Key, which a takeover runs
// it again under, is kept; for the customer's latest few transactions.
const (
	holdKept     = idempotencyTTL
	maxHoldsKept = 64
)

// NewMemoryState returns an empty MemoryState holding about maxBytes at
// most (0 means 256 MiB).
func NewMemoryState(maxBytes int64) *MemoryState {
	if maxBytes <= 0 {
		maxBytes = 256 << 20
	}
	m := &MemoryState{seed: maphash.MakeSeed()}
	m.shardMax = max(maxBytes/int64(len(m.shards)), 1)
	for i := range m.shards {
		m.shards[i].customers = make(map[string]customerRecord)
	}
	return m
}

// forgetAfter is how long a customer not seen is remembered: past the
// day their spend counts for.
const forgetAfter = 25 * time.Hour

func (m *MemoryState) with(customer string, now time.Time, fn func(r *customerRecord)) {
	sh := &m.shards[maphash.String(m.seed, customer)%uint64(len(m.shards))]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	r, known := sh.customers[customer]
	if known {
		sh.bytes -= recordBytes(customer, &r)
		if r.seen < now.UnixNano()-int64(forgetAfter) {
			// Idle too long: forgotten, as the sweep would have, and
			// as the shared stores' entries expire.
			r = customerRecord{}
		}
	}
	if n := now.UnixNano(); n > r.seen {
		r.seen = n
	}
	fn(&r)
	sh.customers[customer] = r
	sh.bytes += recordBytes(customer, &r)
	sh.ops++
	if sh.ops%1024 == 0 {
		cut := now.UnixNano() - int64(forgetAfter)
		for k, c := range sh.customers {
			if c.seen < cut {
				sh.bytes -= recordBytes(k, &c)
				delete(sh.customers, k)
			}
		}
	}
	for sh.bytes > m.shardMax && len(sh.customers) > 1 {
		m.evictOne(sh, customer)
	}
}

// evictOne forgets the customer seen least recently among a few picked at
// random (Go's map order), never keep.
func (m *MemoryState) evictOne(sh *memoryShard, keep string) {
	var victim string
	var oldest int64
	found, n := false, 0
	for k, c := range sh.customers {
		if k != keep && (!found || c.seen < oldest) {
			victim, oldest, found = k, c.seen, true
		}
		if n++; n == 8 {
			break
		}
	}
	if !found {
		return
	}
	c := sh.customers[victim]
	sh.bytes -= recordBytes(victim, &c)
	delete(sh.customers, victim)
	m.evicted.Add(1)
}

// Evicted returns how many customers were forgotten to stay within the
// byte limit.
func (m *MemoryState) Evicted() int64 { return m.evicted.Load() }

// Bytes returns the estimated size of the state.
func (m *MemoryState) Bytes() int64 {
	var n int64
	for i := range m.shards {
		m.shards[i].mu.Lock()
		n += m.shards[i].bytes
		m.shards[i].mu.Unlock()
	}
	return n
}

// dayOf numbers the UTC day of t, as dayKey names it.
func dayOf(t time.Time) int64 {
	s := t.Unix()
	d := s / 86400
	if s < 0 && s%86400 != 0 {
		d-- // round towards the past, as a calendar does
	}
	return d
}

// Attempt implements CustomerState.
func (m *MemoryState) Attempt(_ context.Context, customer string, now time.Time, window time.Duration) (n int, _ error) {
	m.with(customer, now, func(r *customerRecord) { n = r.attempt(now, window) })
	return n, nil
}

// Spent implements CustomerState.
func (m *MemoryState) Spent(_ context.Context, customer, currency string, now time.Time) (v int64, _ error) {
	m.with(customer, now, func(r *customerRecord) { v = r.spent(currency, now) })
	return v, nil
}

// AddSpend implements CustomerState.
func (m *MemoryState) AddSpend(_ context.Context, customer, currency string, minor int64, now time.Time) error {
	m.with(customer, now, func(r *customerRecord) { r.addSpend(currency, minor, now) })
	return nil
}

// Reservation is what Reserve read and changed for one payment.
type Reservation struct {
	// At is when the hold was taken: the now of the transaction's first
	// Reserve.
	At time.Time
	// Attempts counts the attempts in the window ending at now, this one
	// included.
	Attempts int
	// Spent is the spend of now's day before the hold, in minor units.
	Spent int64
	// Prev is the customer's location before the one Reserve recorded,
	// when HasPrev is set.
	Prev    Point
	HasPrev bool
	// Again is set when the transaction had reserved before: this is
	// its first Reserve returned again, and the hold is that one's,
	// whose payment may have moved money.
	Again bool
}

// Reserve implements CustomerState.
func (m *MemoryState) Reserve(_ context.Context, customer, txn, currency string, minor int64, now time.Time, window time.Duration, at *Point) (res Reservation, _ error) {
	m.with(customer, now, func(r *customerRecord) { res = reserve(r, txn, currency, minor, now, window, at) })
	return res, nil
}

// Release implements CustomerState.
func (m *MemoryState) Release(_ context.Context, customer, txn, currency string, minor int64, at time.Time) error {
	m.with(customer, at, func(r *customerRecord) {
		if r.forget(txn) {
			r.addSpend(currency, -minor, at)
		}
	})
	return nil
}

// customerBook is one customer's state as Reserve changes it, in each
// store's own form.
type customerBook interface {
	attempt(now time.Time, window time.Duration) int
	spent(currency string, now time.Time) int64
	addSpend(currency string, minor int64, now time.Time)
	move(p Point) (prev Point, ok bool)
	// reserved returns the Reserve of txn, if it is remembered and was
	// made less than holdKept before now.
	reserved(txn string, now time.Time) (Reservation, bool)
	// remember keeps r as the Reserve of txn, made at r.At, and forgets
	// those made holdKept before it and the oldest beyond maxHoldsKept.
	remember(txn string, r Reservation)
	// forget forgets the Reserve of txn and reports whether it was
	// remembered.
	forget(txn string) bool
}

// reserve counts an attempt at now, holds minor of the day's spend in b
// and, with at not nil, moves the customer to *at — unless txn reserved
// already, whose Reserve it returns, changing nothing.
func reserve(b customerBook, txn, currency string, minor int64, now time.Time, window time.Duration, at *Point) Reservation {
	if txn != "" {
		if r, ok := b.reserved(txn, now); ok {
			r.Again = true
			return r
		}
	}
	r := Reservation{At: now, Attempts: b.attempt(now, window), Spent: b.spent(currency, now)}
	b.addSpend(currency, minor, now)
	if at != nil {
		r.Prev, r.HasPrev = b.move(*at)
	}
	if txn != "" {
		b.remember(txn, r)
	}
	return r
}

// reserved implements customerBook.
func (r *customerRecord) reserved(txn string, now time.Time) (Reservation, bool) {
	if len(r.holds) == 0 {
		return Reservation{}, false
	}
	tag, cut := txnTag(txn), now.UnixNano()-int64(holdKept)
	for i := range r.holds {
		if h := &r.holds[i]; h.tag == tag && h.at > cut {
			res := Reservation{At: time.Unix(0, h.at).UTC(), Attempts: int(h.attempts), Spent: h.spent, HasPrev: h.hasPrev}
			if h.hasPrev {
				res.Prev = Point{Lat: h.prevLat, Lon: h.prevLon, At: time.Unix(0, h.prevAt).UTC()}
			}
			return res, true
		}
	}
	return Reservation{}, false
}

// remember implements customerBook.
func (r *customerRecord) remember(txn string, res Reservation) {
	kept := roomForHold(r.holds, func(h heldRecord) int64 { return h.at }, res.At)
	h := heldRecord{tag: txnTag(txn), at: res.At.UnixNano(), spent: res.Spent, attempts: int32(res.Attempts), hasPrev: res.HasPrev}
	if res.HasPrev {
		h.prevLat, h.prevLon, h.prevAt = res.Prev.Lat, res.Prev.Lon, res.Prev.At.UnixNano()
	}
	r.holds = append(kept, h)
}

// roomForHold returns holds (oldest first, at giving each one's Unix
// nanoseconds) without those made holdKept before now, and with room for
// one more within maxHoldsKept, the oldest dropped: every store keeps its
// holds so.
func roomForHold[H any](holds []H, at func(H) int64, now time.Time) []H {
	cut := now.UnixNano() - int64(holdKept)
	kept := holds[:0]
	for _, h := range holds {
		if at(h) > cut {
			kept = append(kept, h)
		}
	}
	if len(kept) >= maxHoldsKept {
		kept = kept[:copy(kept, kept[len(kept)-maxHoldsKept+1:])]
	}
	return kept
}

// forget implements customerBook.
func (r *customerRecord) forget(txn string) bool {
	if len(r.holds) == 0 || txn == "" {
		return false
	}
	tag, n := txnTag(txn), len(r.holds)
	r.holds = slices.DeleteFunc(r.holds, func(h heldRecord) bool { return h.tag == tag })
	return len(r.holds) < n
}

// attempt records an attempt at now and returns the attempts in the
// window ending at now.
func (r *customerRecord) attempt(now time.Time, window time.Duration) int {
	r.attempts = addAttempt(r.attempts, now, window)
	return len(r.attempts)
}

// addAttempt drops from attempts (Unix nanoseconds, oldest first) those
// outside the window ending at now, adds now in its place, and keeps the
// last maxAttemptsKept. An attempt counted late (another replica's clock
// a little behind) goes before the later ones, so that it leaves the
// window in its turn and not only after them.
func addAttempt(attempts []int64, now time.Time, window time.Duration) []int64 {
	from := now.Add(-window).UnixNano()
	cut := 0
	for cut < len(attempts) && attempts[cut] <= from {
		cut++
	}
	attempts = attempts[cut:]
	at := now.UnixNano()
	i := len(attempts)
	for i > 0 && attempts[i-1] > at {
		i--
	}
	attempts = slices.Insert(attempts, i, at)
	if len(attempts) > maxAttemptsKept {
		attempts = attempts[len(attempts)-maxAttemptsKept:]
	}
	return attempts
}

// spent returns the spend in currency on now's day.
func (r *customerRecord) spent(currency string, now time.Time) int64 {
	if r.day != dayOf(now) {
		return 0
	}
	if len(currency) == len(r.code) && string(r.code[:]) == currency {
		return r.minor
	}
	return r.more[currency]
}

// addSpend adds minor to the spend in currency on now's day; a release
// (minor < 0) of a day that has passed changes nothing, and neither does
// a payment booked late on a day before the one kept (a clock a little
// behind, just after midnight): no rule reads that day's spend any more,
// and today's must not be lost to it. A release takes the spend to zero
// at most (addSpent).
func (r *customerRecord) addSpend(currency string, minor int64, now time.Time) {
	if d := dayOf(now); r.day != d {
		booked := r.code != [3]byte{} || r.more != nil
		if minor < 0 || booked && d < r.day {
			return
		}
		r.day, r.code, r.minor, r.more = d, [3]byte{}, 0, nil
	}
	switch {
	case len(currency) == len(r.code) && string(r.code[:]) == currency:
		r.minor = addSpent(r.minor, minor)
	case r.code == [3]byte{} && len(currency) == len(r.code):
		copy(r.code[:], currency)
		r.minor = addSpent(0, minor)
	default:
		if r.more == nil {
			r.more = make(map[string]int64)
		}
		r.more[currency] = addSpent(r.more[currency], minor)
	}
}

// addSpent returns the spend v with minor added, and no less than zero
// after a release (minor < 0): a release of more than is booked gives
// back a hold the store forgot since (its customer evicted or expired,
// then back), and a negative spend would let the customer pay that much
// beyond the daily limit.
func addSpent(v, minor int64) int64 {
	if minor < 0 && v+minor < 0 {
		return 0
	}
	return v + minor
}

// Move implements CustomerState.
func (m *MemoryState) Move(_ context.Context, customer string, p Point) (prev Point, ok bool, _ error) {
	m.with(customer, p.At, func(r *customerRecord) { prev, ok = r.move(p) })
	return prev, ok, nil
}

// move records p as the customer's location and returns the one before.
func (r *customerRecord) move(p Point) (prev Point, ok bool) {
	if ok = r.hasLast; ok {
		prev = Point{Lat: r.lastLat, Lon: r.lastLon, At: time.Unix(0, r.lastAt).UTC()}
	}
	r.lastLat, r.lastLon, r.lastAt, r.hasLast = p.Lat, p.Lon, p.At.UnixNano(), true
	return prev, ok
}

// Len returns the number of customers remembered.
func (m *MemoryState) Len() int {
	n := 0
	for i := range m.shards {
		m.shards[i].mu.Lock()
		n += len(m.shards[i].customers)
		m.shards[i].mu.Unlock()
	}
	return n
}

// has reports whether the customer is remembered.
func (m *MemoryState) has(customer string) bool {
	sh := &m.shards[maphash.String(m.seed, customer)%uint64(len(m.shards))]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	_, ok := sh.customers[customer]
	return ok
}

// boundedState gives each call to a shared store a deadline of its own, so
// a store that is down (NATS or Redis restarting, whose clients wait to
// reconnect) fails the fraud check promptly — closed, nothing charged —
// instead of holding the payment to its request deadline.
type boundedState struct {
	CustomerState
	timeout time.Duration
}

func (b boundedState) Attempt(ctx context.Context, customer string, now time.Time, window time.Duration) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, b.timeout)
	defer cancel()
	return b.CustomerState.Attempt(ctx, customer, now, window)
}

func (b boundedState) Spent(ctx context.Context, customer, currency string, now time.Time) (int64, error) {
	ctx, cancel := context.WithTimeout(ctx, b.timeout)
	defer cancel()
	return b.CustomerState.Spent(ctx, customer, currency, now)
}

func (b boundedState) AddSpend(ctx context.Context, customer, currency string, minor int64, now time.Time) error {
	ctx, cancel := context.WithTimeout(ctx, b.timeout)
	defer cancel()
	return b.CustomerState.AddSpend(ctx, customer, currency, minor, now)
}

func (b boundedState) Reserve(ctx context.Context, customer, txn, currency string, minor int64, now time.Time, window time.Duration, at *Point) (Reservation, error) {
	ctx, cancel := context.WithTimeout(ctx, b.timeout)
	defer cancel()
	return b.CustomerState.Reserve(ctx, customer, txn, currency, minor, now, window, at)
}

func (b boundedState) Release(ctx context.Context, customer, txn, currency string, minor int64, at time.Time) error {
	ctx, cancel := context.WithTimeout(ctx, b.timeout)
	defer cancel()
	return b.CustomerState.Release(ctx, customer, txn, currency, minor, at)
}

func (b boundedState) Move(ctx context.Context, customer string, p Point) (Point, bool, error) {
	ctx, cancel := context.WithTimeout(ctx, b.timeout)
	defer cancel()
	return b.CustomerState.Move(ctx, customer, p)
}
