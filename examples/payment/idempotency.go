package main

import (
	"container/heap"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Idempotency keys follow Stripe's semantics. The first request with a key
// claims it, naming the transaction ID it will use, and runs; a later one
// with the same key and request gets the first answer again without
// charging; the same key with another request is an error; a twin still in
// flight gets 409. Only decided outcomes keep the key: an answer that
// asks the client to retry (429, 503, a dependency that failed) releases
// it — unless its request took over an abandoned claim, whose transaction
// ID may have reached the gateway: the key keeps that ID, and the claim's
// lease is ended so that the retry takes it over at once. Keys are
// forgotten a day after they were claimed (or last taken over), or once
// the claim's lease has run out if that is later: the claim of a payment
// still being stored is renewed (commitLater) and keeps its key however
// long that takes, where a claim anew would charge the payment again.
//
// The store keeps only the claim — key → request fingerprint and
// transaction ID. The answer itself is the payment's record in the
// payments bucket, stored before the answer is sent: a key whose
// transaction has a record is done, and a replay answers with the record.
const (
	idempotencyTTL = 24 * time.Hour
	// inFlightLease bounds how long a claim without a record holds its
	// key when the process that made it may still be working on it: after
	// it the key can be taken over. A claim holds its key longer when its
	// request may run longer (claimLease).
	inFlightLease = 2 * time.Minute
	maxIdemKeyLen = 255
	// releaseMarkerTTL is how long the marker a released key leaves in
	// the NATS bucket is kept: the shortest time JetStream takes. Kept
	// for the key's whole day, the markers of a flood of refused keys
	// would fill the bucket and crowd out the keys of payments.
	releaseMarkerTTL = time.Second
)

// ErrKeyContended is returned by NATSIdempotency.Claim when its
// compare-and-sets on a key lost to other writers every time: requests
// with the key sent at once, claiming and releasing it in turn. The
// store is up; the key is in flight.
var ErrKeyContended = errors.New("idempotency: key is contended")

// IdemEntry is a claimed idempotency key.
type IdemEntry struct {
	Fingerprint string    `json:"fingerprint"` // of the parsed request
	TxnID       string    `json:"txn_id"`      // the payment this key makes
	Owner       string    `json:"owner"`       // the run that claimed it: "instance/boot"
	Started     time.Time `json:"started"`
	// Until is when the claim's lease runs out: past it, a claim without
	// a record was left by a request that can no longer finish. Zero in a
	// claim stored without it: Started plus inFlightLease.
	Until time.Time `json:"until,omitzero"`

	rev uint64 // the store's revision of the entry, for compare-and-set
}

// same reports whether e and o are the same claim, with the same lease.
func (e IdemEntry) same(o IdemEntry) bool {
	return e.sameClaim(o) && e.Until.Equal(o.Until)
}

// sameClaim reports whether e and o are the same claim, whatever their
// leases: o may be e renewed.
func (e IdemEntry) sameClaim(o IdemEntry) bool {
	return e.Fingerprint == o.Fingerprint && e.TxnID == o.TxnID && e.Owner == o.Owner && e.Started.Equal(o.Started)
}

// leaseEnd is when e's lease runs out.
func (e IdemEntry) leaseEnd() time.Time {
	if e.Until.IsZero() {
		return e.Started.Add(inFlightLease)
	}
	return e.Until
}

// claimLease is how long a claim made by a request that may run for
// requestTimeout holds its key before it can be taken over: inFlightLease,
// or the request's whole deadline and leaseSpare when that is longer. A
// claim taken over while its request still runs would charge its payment
// twice.
func claimLease(requestTimeout time.Duration) time.Duration {
	return max(inFlightLease, requestTimeout+leaseSpare)
}

// leaseSpare is how far apart the clocks of replicas may be: another
// replica reads a claim's lease, which this one wrote, by its own clock.
// A lease is never left to run closer to its end than this while its
// payment may still run or be stored.
const leaseSpare = time.Minute

// size is about what an entry costs the memory store, in bytes: its
// strings, the map entry and its place in the claim order.
func (e IdemEntry) size(key string) int64 {
	return int64(len(key) + len(e.Fingerprint) + len(e.TxnID) + len(e.Owner) + 160)
}

// IdempotencyStore keeps idempotency keys. NATSIdempotency (the default)
// keeps them in JetStream, through restarts and across replicas;
// MemoryIdempotency keeps them in this process and forgets them on restart.
type IdempotencyStore interface {
	// Claim stores e under key unless an entry not expired (younger
	// than a day, or with a lease that still runs) is there, which it
	// returns instead with claimed false. A store that
	// holds its byte limit refuses new keys with ErrStoreFull; one whose
	// writes on the key kept losing to others' returns ErrKeyContended.
	Claim(ctx context.Context, key string, e IdemEntry) (existing IdemEntry, claimed bool, err error)
	// Replace puts e in place of old, which Claim returned, unless the
	// key changed since: it reports whether it did.
	Replace(ctx context.Context, key string, old, e IdemEntry) (bool, error)
	// Release deletes e, the claim of a request that decided nothing, so
	// the client may retry. A key claimed anew meanwhile is left alone.
	Release(ctx context.Context, key string, e IdemEntry) error
	// Renew moves the lease of e, the claim of a payment still being
	// stored, to until, unless the key changed since: it returns the claim
	// as it is now stored and whether it did. A key that holds another
	// claim (or e with another lease: a renewal that landed though its
	// acknowledgement was lost) returns that claim; a key that holds none,
	// or that changed between the store's read and its write (NATS),
	// returns e: the caller tries again. Another replica takes a claim over only once its lease
	// has run out, so renewing it keeps the payment from being run (and
	// charged) again there.
	Renew(ctx context.Context, key string, e IdemEntry, until time.Time) (IdemEntry, bool, error)
}

// MemoryIdempotency keeps keys in this process, which forgets them on
// restart: use it only when that is acceptable. It holds at most MaxBytes
// of entries (refusing new keys beyond, with ErrStoreFull) and forgets
// each once it has expired (a day after its claim, its lease run out),
// oldest first, a few at each claim — and every one that has expired
// before it refuses a key, so that it refuses only while live claims fill
// it.
type MemoryIdempotency struct {
	mu      sync.Mutex
	entries map[string]IdemEntry
	order   []orderedKey // keys in claim order, oldest first, from head
	head    int
	// late holds the keys the order cannot: a day-old claim whose lease
	// still runs, and a claim dated before the last one in the order. It
	// is a heap by when each may expire, so an expired claim is never
	// held behind a younger one.
	late     lateKeys
	bytes    int64
	maxBytes int64
	now      func() time.Time
}

type orderedKey struct {
	key     string
	started time.Time
}

// lateKey is the place of a key held out of claim order: until is when
// its claim may expire, at the earliest.
type lateKey struct {
	orderedKey
	until time.Time
}

// lateKeys is a min-heap of lateKey by until (container/heap).
type lateKeys []lateKey

func (h lateKeys) Len() int           { return len(h) }
func (h lateKeys) Less(i, j int) bool { return h[i].until.Before(h[j].until) }
func (h lateKeys) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *lateKeys) Push(x any)        { *h = append(*h, x.(lateKey)) }
func (h *lateKeys) Pop() any {
	old := *h
	k := old[len(old)-1]
	old[len(old)-1] = lateKey{} // lets go of the key
	*h = old[:len(old)-1]
	return k
}

// NewMemoryIdempotency returns an empty store holding at most maxBytes (0
// means 64 MiB). now is the clock dating entries (nil: time.Now).
func NewMemoryIdempotency(maxBytes int64, now func() time.Time) *MemoryIdempotency {
	if maxBytes <= 0 {
		maxBytes = 64 << 20
	}
	if now == nil {
		now = time.Now
	}
	return &MemoryIdempotency{entries: make(map[string]IdemEntry), maxBytes: maxBytes, now: now}
}

// expired reports whether e is forgotten at now: a day after its claim,
// once its lease has run out too. The claim of a payment being stored in
// the background is renewed until it is stored (commitLater), and never
// expires meanwhile: claimed anew, its key would run the payment again
// under another transaction ID, and charge it twice.
func expired(e IdemEntry, now time.Time) bool {
	return now.Sub(e.Started) >= idempotencyTTL && !now.Before(e.leaseEnd())
}

// expiresAt is the first instant at which e is expired, as its lease
// stands.
func expiresAt(e IdemEntry) time.Time {
	day := e.Started.Add(idempotencyTTL)
	if end := e.leaseEnd(); end.After(day) {
		return end
	}
	return day
}

// Claim implements IdempotencyStore.
func (m *MemoryIdempotency) Claim(_ context.Context, key string, e IdemEntry) (IdemEntry, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	m.sweep(now, e.size(key))
	if old, ok := m.entries[key]; ok {
		if !expired(old, now) {
			return old, false, nil
		}
		m.drop(key, old)
	}
	if m.bytes+e.size(key) > m.maxBytes {
		return IdemEntry{}, false, fmt.Errorf("idempotency: %w (%d bytes)", ErrStoreFull, m.maxBytes)
	}
	m.put(key, e)
	return IdemEntry{}, true, nil
}

// sweep forgets expired entries, those that expire first first: at most a
// few per call, so that no claim waits long, unless the store has no room
// for need bytes more, when it forgets as many as have expired until it
// has. Each place is looked at once per claim or renewal, so what a claim
// pays for the sweep stays bounded however many it frees.
func (m *MemoryIdempotency) sweep(now time.Time, need int64) {
	for n := 0; n < 8 || m.bytes+need > m.maxBytes; n++ {
		if !m.sweepOne(now) {
			break
		}
	}
	// Reuse the order's space once most of it has been swept.
	if m.head > 1024 && m.head > len(m.order)/2 {
		m.order = append(m.order[:0], m.order[m.head:]...)
		m.head = 0
	}
	// A key released (or taken over) leaves its place in the order
	// behind until the sweep reaches it a day later, and a flood of keys
	// released at once (their requests rate limited) would grow the order
	// past the limit: once most places are left behind, keep only those
	// of the keys held. That happens after as many claims as keys held at
	// least, so each claim pays for it a bounded share.
	if pending := len(m.order) - m.head + len(m.late); pending > 1024 && pending > 2*len(m.entries) {
		m.compact()
	}
}

// sweepOne looks at the place due first, if one is due at now: the head of
// the claim order once a day old, or the first of the late places once its
// time has come. It forgets the place's claim if that has expired, and
// puts a claim whose lease runs on among the late places, at its lease's
// end. It reports whether a place was due.
func (m *MemoryIdempotency) sweepOne(now time.Time) bool {
	if m.head < len(m.order) && now.Sub(m.order[m.head].started) >= idempotencyTTL {
		k := m.order[m.head]
		m.order[m.head] = orderedKey{}
		m.head++
		if e, ok := m.entries[k.key]; ok && e.Started.Equal(k.started) {
			if !expired(e, now) {
				// A day old, its lease renewed: looked at again when the
				// lease runs out.
				heap.Push(&m.late, lateKey{orderedKey: k, until: expiresAt(e)})
				return true
			}
			m.drop(k.key, e)
		}
		return true
	}
	if len(m.late) == 0 || now.Before(m.late[0].until) {
		return false
	}
	k := m.late[0]
	e, ok := m.entries[k.key]
	if ok && e.Started.Equal(k.started) && !expired(e, now) {
		// Renewed since: looked at again when the lease runs out.
		m.late[0].until = expiresAt(e)
		heap.Fix(&m.late, 0)
		return true
	}
	heap.Pop(&m.late)
	if ok && e.Started.Equal(k.started) {
		m.drop(k.key, e)
	}
	return true
}

// compact drops from the claim order and the late places those of keys
// no longer held, keeping one place per key held.
func (m *MemoryIdempotency) compact() {
	kept := make([]orderedKey, 0, 2*len(m.entries))
	seen := make(map[string]struct{}, len(m.entries))
	for _, k := range m.order[m.head:] {
		if e, ok := m.entries[k.key]; ok && e.Started.Equal(k.started) {
			if _, dup := seen[k.key]; !dup {
				seen[k.key] = struct{}{}
				kept = append(kept, k)
			}
		}
	}
	var late lateKeys
	for _, k := range m.late {
		if e, ok := m.entries[k.key]; ok && e.Started.Equal(k.started) {
			if _, dup := seen[k.key]; !dup {
				seen[k.key] = struct{}{}
				late = append(late, k)
			}
		}
	}
	heap.Init(&late)
	m.order, m.head, m.late = kept, 0, late
}

func (m *MemoryIdempotency) put(key string, e IdemEntry) {
	m.entries[key] = e
	m.bytes += e.size(key)
	k := orderedKey{key: key, started: e.Started}
	if n := len(m.order); n > m.head && e.Started.Before(m.order[n-1].started) {
		// Dated before the last claim in the order (its clock read before
		// that claim's): the order stays oldest first.
		heap.Push(&m.late, lateKey{orderedKey: k, until: expiresAt(e)})
		return
	}
	m.order = append(m.order, k)
}

func (m *MemoryIdempotency) drop(key string, e IdemEntry) {
	delete(m.entries, key)
	m.bytes -= e.size(key)
}

// Replace implements IdempotencyStore.
func (m *MemoryIdempotency) Replace(_ context.Context, key string, old, e IdemEntry) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	cur, ok := m.entries[key]
	if !ok || !cur.same(old) {
		return false, nil
	}
	m.drop(key, cur)
	m.put(key, e)
	return true, nil
}

// Release implements IdempotencyStore.
func (m *MemoryIdempotency) Release(_ context.Context, key string, e IdemEntry) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if cur, ok := m.entries[key]; ok && cur.same(e) {
		m.drop(key, cur)
	}
	return nil
}

// Renew implements IdempotencyStore.
func (m *MemoryIdempotency) Renew(_ context.Context, key string, e IdemEntry, until time.Time) (IdemEntry, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	cur, ok := m.entries[key]
	if !ok {
		return e, false, nil
	}
	if !cur.same(e) {
		return cur, false, nil
	}
	cur.Until = until // its size is unchanged
	m.entries[key] = cur
	return cur, true, nil
}

// Len returns the number of keys held.
func (m *MemoryIdempotency) Len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.entries)
}

// NATSIdempotency keeps keys in a JetStream key-value bucket (file
// storage) whose TTL is the key lifetime, so they survive restarts and are
// shared by the replicas on one NATS. Claims are atomic (Create fails when
// the key exists); Replace and Release compare revisions. The bucket holds
// at most MaxBytes: JetStream refuses new keys beyond (ErrStoreFull).
//
// A released key leaves a marker in place of its claim, which JetStream
// removes a second later (releaseMarkerTTL), so released keys hold no
// room in the bucket. That takes per-message TTLs (nats-server 2.11 or
// later), which the bucket allows from its first use by this version on;
// JetStream refuses to turn them off again, so a replica of an earlier
// version, which asks for the bucket without them, no longer opens it. On
// an older server the bucket has no per-message TTLs and a released key is
// deleted, its marker kept the bucket's day (ShortMarkers says which).
type NATSIdempotency struct {
	kv  *kvPool
	now func() time.Time
	// markerTTL is releaseMarkerTTL, or 0 on a server without
	// per-message TTLs.
	markerTTL time.Duration
	// missReads is how many times Release and Renew read a key that
	// does not hold the claim they change (missReads, as PaymentRecords
	// reads a payment).
	missReads int
}

// ShortMarkers reports whether a released key's marker expires after
// releaseMarkerTTL (nats-server 2.11 or later), not after the bucket's
// day.
func (n *NATSIdempotency) ShortMarkers() bool { return n.markerTTL > 0 }

// IdemOptions configure a NATSIdempotency.
type IdemOptions struct {
	Bucket   string // "" means "payment_idempotency"
	MaxBytes int64  // 0 means 256 MiB
	Replicas int    // 0 means 1
}

// NewNATSIdempotency creates (or updates) the bucket. now is the clock that
// dates entries (nil: time.Now).
func NewNATSIdempotency(ctx context.Context, js []jetstream.JetStream, o IdemOptions, now func() time.Time) (*NATSIdempotency, error) {
	if o.Bucket == "" {
		o.Bucket = "payment_idempotency"
	}
	if o.MaxBytes == 0 {
		o.MaxBytes = 256 << 20
	}
	if now == nil {
		now = time.Now
	}
	cfg := jetstream.KeyValueConfig{
		Bucket:   o.Bucket,
		TTL:      idempotencyTTL,
		History:  1,
		MaxBytes: o.MaxBytes,
		Storage:  jetstream.FileStorage,
		Replicas: max(o.Replicas, 1),
		// Allows the marker TTL of Release; it is also how long the
		// marker of a claim that expires after its day is kept.
		LimitMarkerTTL: releaseMarkerTTL,
	}
	kv, err := openPool(ctx, js, cfg)
	if errors.Is(err, jetstream.ErrLimitMarkerTTLNotSupported) {
		// A server before 2.11: no per-message TTLs, and a released
		// key's marker stays the bucket's day.
		cfg.LimitMarkerTTL = 0
		kv, err = openPool(ctx, js, cfg)
	}
	if err != nil {
		return nil, fmt.Errorf("idempotency bucket %q: %w", o.Bucket, err)
	}
	return &NATSIdempotency{kv: kv, now: now, markerTTL: cfg.LimitMarkerTTL, missReads: missReads(o.Replicas)}, nil
}

// readClaim reads the key k for a change of e's claim (Release, Renew): the
// entry and the claim it holds, ok false when it holds none. On a cluster
// a read that finds no claim, or another one, may have reached a replica
// that has not caught up with the write of e's claim: it is made again
// (missReads) before it counts, where it would leave the claim to hold its
// key, 409 to every retry, until its lease ran out. Reads that ctx cuts
// short are its error, not a claim gone.
func (n *NATSIdempotency) readClaim(ctx context.Context, k string, e IdemEntry) (got jetstream.KeyValueEntry, cur IdemEntry, ok bool, err error) {
	for try := 1; ; try++ {
		got, err = n.kv.get().Get(ctx, k)
		cur, ok = IdemEntry{}, false
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
			got, err = nil, nil
		case err != nil:
			return nil, cur, false, err
		default:
			ok = json.Unmarshal(got.Value(), &cur) == nil
		}
		if ok && cur.sameClaim(e) || try >= n.missReads {
			return got, cur, ok, nil
		}
		if err := pause(ctx, try); err != nil {
			// The reads were cut short: the claim may be stored yet, and
			// the caller's release or renewal is to be tried again.
			return nil, IdemEntry{}, false, err
		}
	}
}

// storedClaim is a claim as the NATS bucket keeps it: padded (Room) so
// that every write of one claim stores as many bytes, whatever its lease
// and whatever revision the write expects (a header stored with the
// value, whose digits grow with the bucket). JetStream takes a
// replacement no larger than the entry it replaces even in a bucket at
// its limit, so the claim of a payment being stored in the background is
// renewed however full the bucket has become meanwhile (commitLater),
// and its lease never runs out for want of room.
type storedClaim struct {
	IdemEntry
	Room string `json:"room,omitempty"`
}

// longestUntil is a lease at its longest in JSON: to the nanosecond, in
// UTC (as encodeClaim writes every lease).
var longestUntil = time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC)

// encodeClaim is the value that stores e by a write that expects the key
// at revision rev (0 for none): e padded to the size of e with its lease
// at its longest, written at the longest revision, less rev's digits.
func encodeClaim(e IdemEntry, rev uint64) ([]byte, error) {
	e.Until = e.Until.UTC()
	longest := e
	longest.Until = longestUntil
	most, err := json.Marshal(storedClaim{IdemEntry: longest, Room: "-"})
	if err != nil {
		return nil, err
	}
	val, err := json.Marshal(storedClaim{IdemEntry: e, Room: "-"})
	if err != nil {
		return nil, err
	}
	const maxRevisionDigits = 20 // of math.MaxUint64
	room := len(most) - len(val) + 1 + maxRevisionDigits - len(strconv.FormatUint(rev, 10))
	return json.Marshal(storedClaim{IdemEntry: e, Room: strings.Repeat("-", room)})
}

// kvKey maps any idempotency key to a valid KV key.
func kvKey(key string) string {
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:])
}

// Claim implements IdempotencyStore.
func (n *NATSIdempotency) Claim(ctx context.Context, key string, e IdemEntry) (IdemEntry, bool, error) {
	k := kvKey(key)
	val, err := encodeClaim(e, 0)
	if err != nil {
		return IdemEntry{}, false, err
	}
	for range 3 {
		_, err = n.kv.get().Create(ctx, k, val)
		if err == nil {
			return IdemEntry{}, true, nil
		}
		// A conflict: the key is held, or Create read the marker of a
		// released key that expired before its write (which a replicated
		// bucket answers with a code that is not ErrKeyExists).
		if !isConflict(err) {
			return IdemEntry{}, false, storeError("idempotency", err)
		}
		got, err := n.kv.get().Get(ctx, k)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue // released meanwhile: try again
		}
		if err != nil {
			return IdemEntry{}, false, fmt.Errorf("idempotency: %w", err)
		}
		var old IdemEntry
		if err := json.Unmarshal(got.Value(), &old); err == nil && !expired(old, n.now()) {
			old.rev = got.Revision()
			return old, false, nil
		}
		// Expired (or not ours): take it over unless someone else does
		// first.
		over, err := encodeClaim(e, got.Revision())
		if err != nil {
			return IdemEntry{}, false, err
		}
		if _, err := n.kv.get().Update(ctx, k, over, got.Revision()); err == nil {
			return IdemEntry{}, true, nil
		} else if !isConflict(err) {
			return IdemEntry{}, false, storeError("idempotency", err)
		}
	}
	return IdemEntry{}, false, ErrKeyContended
}

// Replace implements IdempotencyStore.
func (n *NATSIdempotency) Replace(ctx context.Context, key string, old, e IdemEntry) (bool, error) {
	val, err := encodeClaim(e, old.rev)
	if err != nil {
		return false, err
	}
	_, err = n.kv.get().Update(ctx, kvKey(key), val, old.rev)
	switch {
	case err == nil:
		return true, nil
	case isConflict(err):
		return false, nil
	}
	return false, storeError("idempotency", err)
}

// Release implements IdempotencyStore. It purges the key only while it
// holds e: a claim released after it was taken over stays. The purge
// leaves a marker that expires after releaseMarkerTTL, where a delete's
// would stay the bucket's whole TTL, a day: a flood of keys released
// (their requests refused) would fill the bucket with markers, and keys
// of payments would be refused as the store full, though it held none.
// The key can be claimed again at once, over the marker.
func (n *NATSIdempotency) Release(ctx context.Context, key string, e IdemEntry) error {
	k := kvKey(key)
	got, cur, ok, err := n.readClaim(ctx, k, e)
	if err != nil {
		return fmt.Errorf("idempotency release: %w", err)
	}
	if !ok || !cur.same(e) {
		return nil
	}
	if n.markerTTL > 0 {
		err = n.kv.get().Purge(ctx, k, jetstream.LastRevision(got.Revision()), jetstream.PurgeTTL(n.markerTTL))
	} else {
		err = n.kv.get().Delete(ctx, k, jetstream.LastRevision(got.Revision()))
	}
	if err != nil && !isConflict(err) && !errors.Is(err, jetstream.ErrKeyNotFound) {
		return fmt.Errorf("idempotency release: %w", err)
	}
	return nil
}

// Renew implements IdempotencyStore, by compare-and-set on the revision
// it read.
func (n *NATSIdempotency) Renew(ctx context.Context, key string, e IdemEntry, until time.Time) (IdemEntry, bool, error) {
	k := kvKey(key)
	got, cur, ok, err := n.readClaim(ctx, k, e)
	if err != nil {
		return e, false, fmt.Errorf("idempotency renew: %w", err)
	}
	if got == nil || !ok {
		return e, false, nil
	}
	if !cur.same(e) {
		cur.rev = got.Revision()
		return cur, false, nil
	}
	cur.Until = until
	val, err := encodeClaim(cur, got.Revision())
	if err != nil {
		return e, false, err
	}
	rev, err := n.kv.get().Update(ctx, k, val, got.Revision())
	switch {
	case err == nil:
		cur.rev = rev
		return cur, true, nil
	case isConflict(err):
		return e, false, nil
	}
	return e, false, storeError("idempotency", err)
}
