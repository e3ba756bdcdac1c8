package heijunka

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"math"
	"math/bits"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultMaxKeys is the MaxKeys of a MemoryStore whose option is zero.
const DefaultMaxKeys = 1 << 20

// FullPolicy is what a full MemoryStore does with a new key.
type FullPolicy uint8

const (
	// EvictNearest, the default, makes room for the new key by dropping,
	// among a sample of tracked keys, a fresh one if there is one, else the
	// one nearest to fresh. The dropped key loses its debt: it may be
	// admitted early by at most the events it still owed, so the cost of a
	// full store is bounded and falls on the quietest keys.
	EvictNearest FullPolicy = iota
	// RejectNew denies new keys while the store is full and none is fresh
	// (Take returns ErrStoreFull, with a Decision whose RetryAfter is the
	// time until a key held becomes fresh); tracked keys are never dropped
	// early.
	// A flood of new keys then cannot loosen anyone's limit, but new
	// callers are turned away until keys become fresh.
	RejectNew
)

// MemoryStoreOptions configures a MemoryStore. The zero value is ready to use.
type MemoryStoreOptions struct {
	// MaxKeys bounds the keys held; 0 means DefaultMaxKeys, and more than
	// 2^31 is an error. The store is split in shards (a power of two, at
	// most 64, each allowed at least 16 keys) and the bound is kept per
	// shard, so it is reached when one shard fills; a store of MaxKeys
	// below 32 has one shard and holds exactly MaxKeys keys.
	MaxKeys int
	// WhenFull chooses what a new key does when the store is full; the
	// zero value is EvictNearest.
	WhenFull FullPolicy
}

// MemoryStore is the in-process Store. It needs no goroutine. Keys are
// spread over a fixed set of shards, each a mutex and an open-addressing
// table of 16-byte slots: a 64-bit hash of the key and its schedule. The
// key itself is not kept: two distinct keys are confused only if their
// hashes (seeded at random per store, so they cannot be chosen to collide)
// are equal in the 63 bits the table keeps, a chance of about 2^-63 per
// pair: among the million keys a default store may hold at once, about one
// in seventeen million that any two share a schedule. In exchange the store
// copies and retains nothing of the caller's strings, and a lookup touches
// one slot.
//
// A key whose schedule lies in the past is full again and, as long as
// time does not go back, carries no information, so the store forgets it:
//
//   - on access, when the key is found fresh and the request records
//     nothing;
//   - a shard whose every key is fresh (its latest schedule has passed) is
//     dropped at once, in O(1), on its next access: after a quiet period
//     memory goes back to almost nothing;
//   - each new key advances a sweep over a few slots of its shard and drops
//     the fresh keys there, so steady traffic of one-off keys does not
//     accumulate;
//   - Sweep drops every fresh key, for callers that want memory back
//     without waiting for traffic.
//
// A time going back to before the schedule of a key forgotten so finds it
// full, where a key still held counts the time gone back as that much
// longer to wait (as a Limiter does): the store cannot tell it from a key
// never seen. Times read by time.Now, as Keyed.Allow reads them, do not go
// back but for calls racing each other. Times read otherwise may: a wall
// clock stepped forward and back, or times out of order, may let a key
// forgotten at the later time pass up to a burst more than its Limit allows
// at the earlier one (Every(time.Minute).WithBurst(5) passes 5 events at t,
// forgets the key at a request at t+1h, and passes 5 more at t+1m). The
// redisgcra store forgets a key when it expires in Redis's own time,
// whatever the time passed to Take, so a caller's time running ahead does
// not make it forget.
//
// Tables grow by half when more than four fifths full and shrink when they
// fall to an eighth, so memory is returned, not just reused: a live key
// costs 20 to 30 bytes (32 in a table just shrunk, half full). Take
// allocates nothing for a key already held.
//
// The cost of a lookup in a large store is one cache miss on the key's
// slot. Make one with NewMemoryStore; the zero MemoryStore is not usable:
// it holds no key, and Take and Reset return an error saying it was not
// made by NewMemoryStore.
//
// Times are kept relative to the store's creation, on the monotonic
// clock when the time given has a reading of it (time.Now does; a time
// made otherwise, or stripped by UTC or Round(0), is read on the wall
// clock), and within about 73 years of it either way: a time beyond is
// taken as that bound. Keep to one clock source per store, as a Limiter
// asks: a wall-clock step sets the two apart.
type MemoryStore struct {
	epoch  time.Time
	seed   maphash.Seed
	shift  uint
	policy FullPolicy
	shards []memShard
	cache  atomic.Pointer[params]
}

type memShard struct {
	mu     sync.Mutex
	slots  []slot // any length; nil when no key is held
	n      int    // slots in use
	hand   int    // sweep position
	limit  int    // keys this shard may hold
	maxTAT int64  // latest schedule written since the table was empty
	// freshAt is at most the schedule of every key held (schedules only
	// move later), and is the earliest one unless it lies in the past:
	// under RejectNew a full shard has no fresh key before it.
	freshAt int64
	bits    uint // top bits of h1 that chose the shard: the home uses the others
	_       [48]byte
}

// slot holds one key, by its hash h1, never 0 in a used slot.
type slot struct {
	h1  uint64
	tat int64
}

const (
	maxShards   = 64
	sweepSample = 4 // slots a new key sweeps
	evictSample = 8 // keys compared to choose one to evict
	minSlots    = 16
)

// A table grows by half when an insert would fill more than maxLoad of
// it, and is rebuilt at half full when it falls to an eighth. Growing by
// half rather than doubling keeps the table between about 53% and 80%
// full: it is the footprint, more than the probe length, that sets the cost
// of a lookup once the tables outgrow the CPU caches.
const (
	maxLoadNum, maxLoadDen = 4, 5
)

// NewMemoryStore returns an empty MemoryStore, or an error for a negative
// MaxKeys or an unknown WhenFull.
func NewMemoryStore(opts MemoryStoreOptions) (*MemoryStore, error) {
	if opts.MaxKeys < 0 {
		return nil, fmt.Errorf("heijunka: MaxKeys %d is negative", opts.MaxKeys)
	}
	if int64(opts.MaxKeys) > 1<<31 {
		return nil, fmt.Errorf("heijunka: MaxKeys %d exceeds 2^31", opts.MaxKeys)
	}
	if opts.WhenFull > RejectNew {
		return nil, fmt.Errorf("heijunka: WhenFull %d is not a FullPolicy", opts.WhenFull)
	}
	maxKeys := opts.MaxKeys
	if maxKeys == 0 {
		maxKeys = DefaultMaxKeys
	}
	// Small stores get fewer shards so that each holds a useful number of
	// keys; the shard count is a power of two.
	n, shift := 1, uint(64)
	for n < maxShards && maxKeys/(n*2) >= 16 {
		n, shift = n*2, shift-1
	}
	s := &MemoryStore{
		epoch:  time.Now(),
		seed:   maphash.MakeSeed(),
		shift:  shift,
		policy: opts.WhenFull,
		shards: make([]memShard, n),
	}
	for i := range s.shards {
		s.shards[i].limit = maxKeys / n
		if i < maxKeys%n {
			s.shards[i].limit++
		}
		s.shards[i].maxTAT = minTAT
		s.shards[i].freshAt = math.MaxInt64
		s.shards[i].bits = 64 - shift
	}
	return s, nil
}

// hash returns the shard of key and the hash that identifies it there and
// places it in the shard's table.
func (s *MemoryStore) hash(key string) (*memShard, uint64) {
	h := maphash.String(s.seed, key)
	return &s.shards[h>>s.shift&uint64(len(s.shards)-1)], h | 1
}

func (s *MemoryStore) rel(t time.Time) int64 { return clampNow(t.Sub(s.epoch)) }

// paramsOf validates limit, remembering the last one so a store used with
// one limit converts it once.
func (s *MemoryStore) paramsOf(limit Limit) (*params, error) {
	if c := s.cache.Load(); c != nil && c.limit == limit {
		return c, nil
	}
	p, err := limit.params()
	if err != nil {
		return nil, err
	}
	s.cache.Store(&p)
	return &p, nil
}

// Take implements Store. It never blocks and ignores ctx. Its errors are an
// invalid limit, a negative n, and ErrStoreFull under RejectNew.
func (s *MemoryStore) Take(_ context.Context, key string, limit Limit, now time.Time, n int) (Decision, error) {
	p, err := s.paramsOf(limit)
	if err != nil {
		return Decision{Limit: limit, RetryAfter: InfDuration}, err
	}
	if n < 0 {
		return Decision{Limit: limit, RetryAfter: InfDuration}, fmt.Errorf("heijunka: n %d is negative", n)
	}
	if len(s.shards) == 0 {
		return Decision{Limit: limit, RetryAfter: InfDuration}, errMemoryStoreNotMade
	}
	var d Decision
	err = s.take(key, p, s.rel(now), n, &d)
	return d, err
}

// take decides for key at now, in nanoseconds since the store's epoch, and
// writes the Decision to d, which must be zero.
func (s *MemoryStore) take(key string, p *params, now int64, n int, d *Decision) error {
	if p.mode != modeFinite {
		p.decideInto(minTAT, now, n, d)
		return nil
	}
	sh, h1 := s.hash(key)
	return sh.take(h1, p, now, n, s.policy, d)
}

// takeNow is take for one event at the current time of the store's clock.
func (s *MemoryStore) takeNow(key string, p *params, d *Decision) error {
	if p.mode != modeFinite {
		p.decideInto(minTAT, clampNow(time.Since(s.epoch)), 1, d)
		return nil
	}
	sh, h1 := s.hash(key)
	return sh.take(h1, p, clampNow(time.Since(s.epoch)), 1, s.policy, d)
}

// take decides for the key h1 of this shard at now and writes the
// Decision to d, which must be zero.
func (sh *memShard) take(h1 uint64, p *params, now int64, n int, policy FullPolicy, d *Decision) error {
	sh.mu.Lock()
	if sh.maxTAT <= now && sh.n > 0 {
		sh.reset() // every key of the shard is fresh
	}
	i, found := sh.find(h1)
	tat := int64(minTAT)
	if found {
		tat = sh.slots[i].tat
	}
	next := p.decideInto(tat, now, n, d)
	switch {
	case next != tat && found: // recorded n > 0 events: next lies after now
		sh.slots[i].tat = next
		sh.maxTAT = max(sh.maxTAT, next)
		if tat == sh.freshAt {
			// The earliest key may have moved on: a full shard under
			// RejectNew looks for the earliest again, so that its
			// RetryAfter is not a time at which no key is fresh.
			sh.freshAt = math.MinInt64
		}
	case next != tat:
		if err := sh.insert(h1, next, now, policy); err != nil {
			// The shard takes a new key once one it holds is fresh. Read
			// under the lock: another call may empty the shard meanwhile.
			*d = Decision{Limit: p.limit, RetryAfter: time.Duration(sh.freshAt - now)}
			sh.mu.Unlock()
			return err
		}
	case found && tat <= now:
		sh.remove(i)
		sh.shrink()
	}
	sh.mu.Unlock()
	return nil
}

func (sh *memShard) reset() {
	sh.slots = nil
	sh.n, sh.hand = 0, 0
	sh.maxTAT = minTAT
	sh.freshAt = math.MaxInt64
}

// find returns the slot holding h1, or the empty slot where it would
// go (-1 when the table is not allocated).
func (sh *memShard) find(h1 uint64) (int, bool) {
	if len(sh.slots) == 0 {
		return -1, false
	}
	for i := sh.home(h1); ; i = sh.next(i) {
		s := &sh.slots[i]
		if s.h1 == h1 {
			return i, true
		}
		if s.h1 == 0 {
			return i, false
		}
	}
}

func (sh *memShard) home(h1 uint64) int { return home(h1, sh.bits, len(sh.slots)) }

// home returns the slot where the probe for h1 begins in a table of size
// slots: the bits of h1 below the shard bits that chose the shard, scaled
// to the size (a multiply: no division and no power-of-two size).
func home(h1 uint64, shardBits uint, size int) int {
	hi, _ := bits.Mul64(h1<<shardBits, uint64(size))
	return int(hi)
}

// next returns the slot after i, wrapping around the table.
func (sh *memShard) next(i int) int {
	if i++; i == len(sh.slots) {
		return 0
	}
	return i
}

// insert adds a key after sweeping a few slots for fresh keys and, when the
// shard is full, applying the policy.
func (sh *memShard) insert(h1 uint64, tat, now int64, policy FullPolicy) error {
	sh.sweep(now, sweepSample)
	if sh.n >= sh.limit && policy == RejectNew && sh.freshAt <= now {
		// A fresh key may lie outside the few slots swept: look at them
		// all. This finds the earliest schedule too, so a full shard is
		// scanned again only once a key may have become fresh.
		sh.sweep(now, len(sh.slots)+sh.n)
		sh.freshAt = math.MaxInt64
		for _, s := range sh.slots {
			if s.h1 != 0 {
				sh.freshAt = min(sh.freshAt, s.tat)
			}
		}
	}
	if sh.n >= sh.limit {
		if policy == RejectNew {
			return ErrStoreFull
		}
		sh.evict()
	}
	if len(sh.slots) == 0 || (sh.n+1)*maxLoadDen > len(sh.slots)*maxLoadNum {
		sh.resize(max(minSlots, len(sh.slots)+len(sh.slots)/2))
	}
	i, _ := sh.find(h1)
	sh.slots[i] = slot{h1: h1, tat: tat}
	sh.n++
	sh.maxTAT = max(sh.maxTAT, tat)
	sh.freshAt = min(sh.freshAt, tat)
	return nil
}

// sweep examines budget slots from the sweep position and removes the
// fresh keys there.
func (sh *memShard) sweep(now int64, budget int) {
	if len(sh.slots) == 0 {
		return
	}
	for ; budget > 0 && sh.n > 0; budget-- {
		s := &sh.slots[sh.hand]
		if s.h1 != 0 && s.tat <= now {
			sh.remove(sh.hand) // may shift another key here: look again
			continue
		}
		sh.hand = sh.next(sh.hand)
	}
}

// evict removes, among the next evictSample keys from the sweep position,
// the one nearest to fresh: it loses the least.
func (sh *memShard) evict() {
	best, seen := -1, 0
	for i := sh.hand; seen < evictSample && seen < sh.n; i = sh.next(i) {
		if sh.slots[i].h1 == 0 {
			continue
		}
		if best < 0 || sh.slots[i].tat < sh.slots[best].tat {
			best = i
		}
		seen++
	}
	sh.hand = sh.next(best)
	sh.remove(best)
}

// remove empties slot i, shifting back the keys that probed past it so no
// tombstone is needed.
func (sh *memShard) remove(i int) {
	for j := sh.next(i); sh.slots[j].h1 != 0; j = sh.next(j) {
		home := sh.home(sh.slots[j].h1)
		// The key at j may move to i unless its home lies cyclically in
		// (i, j].
		if i <= j && i < home && home <= j || i > j && (i < home || home <= j) {
			continue
		}
		sh.slots[i] = sh.slots[j]
		i = j
	}
	sh.slots[i] = slot{}
	sh.n--
}

// shrink rebuilds the table when it has fallen to an eighth of its size, so
// its memory is returned; an empty shard keeps no table.
func (sh *memShard) shrink() {
	switch {
	case sh.n == 0:
		sh.reset()
	case len(sh.slots) > minSlots && sh.n*8 < len(sh.slots):
		sh.resize(max(minSlots, sh.n*2))
	}
}

func (sh *memShard) resize(size int) {
	old := sh.slots
	sh.slots = make([]slot, size)
	sh.hand = 0
	for _, s := range old {
		if s.h1 == 0 {
			continue
		}
		i := sh.home(s.h1)
		for sh.slots[i].h1 != 0 {
			i = sh.next(i)
		}
		sh.slots[i] = s
	}
}

var errMemoryStoreNotMade = errors.New("heijunka: MemoryStore not made by NewMemoryStore")

// Reset implements Store: it forgets key.
func (s *MemoryStore) Reset(_ context.Context, key string) error {
	if len(s.shards) == 0 {
		return errMemoryStoreNotMade
	}
	sh, h1 := s.hash(key)
	sh.mu.Lock()
	sh.forget(h1)
	sh.mu.Unlock()
	return nil
}

// forget removes the key h1, if held.
func (sh *memShard) forget(h1 uint64) {
	if i, found := sh.find(h1); found {
		if sh.slots[i].tat == sh.freshAt {
			sh.freshAt = math.MinInt64 // the earliest key goes: see take
		}
		sh.remove(i)
		sh.shrink()
	}
}

// Sweep drops every key that is fresh at now and returns how many it
// dropped. It holds one shard's lock at a time, for a scan of that shard.
func (s *MemoryStore) Sweep(now time.Time) int {
	t := s.rel(now)
	dropped := 0
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		before := sh.n
		if sh.maxTAT <= t {
			sh.reset()
		} else {
			sh.sweep(t, len(sh.slots)+sh.n)
			sh.shrink()
		}
		dropped += before - sh.n
		sh.mu.Unlock()
	}
	return dropped
}

// Len returns the number of keys held.
func (s *MemoryStore) Len() int {
	n := 0
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		n += sh.n
		sh.mu.Unlock()
	}
	return n
}
