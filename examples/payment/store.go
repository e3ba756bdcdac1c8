package main

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/maphash"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/taipattern/taikit/examples/internal/svc"
)

// PaymentRecord is what GET /payment/{id} returns: the response given to
// the payment and what happened to it since.
type PaymentRecord struct {
	PaymentResponse
	Confirmed   bool       `json:"confirmed"`
	ConfirmedAt *time.Time `json:"confirmed_at,omitempty"`
}

// storedPayment is a payment as the payments bucket keeps it: the answer
// given (HTTP status and body) and, for a charge, when its confirmation was
// processed.
type storedPayment struct {
	Code        int             `json:"code"`
	Status      string          `json:"status"`
	Response    json.RawMessage `json:"response"`
	ConfirmedAt *time.Time      `json:"confirmed_at,omitempty"`
	// answeredAt is Response's timestamp, when the payment was decided in
	// this process: its confirmation then need not read it back from
	// Response. It is not stored.
	answeredAt time.Time
}

// unconfirmedRecord is a charge as Create stores it, not yet confirmed:
// padded (Room) by as many bytes as the mark of its confirmation will add,
// so that Confirm replaces it with a record no larger. JetStream takes
// such a replacement even in a bucket at its limit (it refuses only one
// that grows the bucket), so a charge once stored is always confirmed,
// however full the bucket has become meanwhile.
type unconfirmedRecord struct {
	storedPayment
	Room string `json:"room,omitempty"`
}

// confirmRoom is the Room of an unconfirmed charge: the bytes its
// confirmed_at adds, at its longest, less those of the room's own field;
// and the digits by which the update's expected revision (a header stored
// with the value) can be longer than the create's "0".
var confirmRoom = func() string {
	longest := time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC)
	with, _ := json.Marshal(storedPayment{ConfirmedAt: &longest})
	without, _ := json.Marshal(storedPayment{})
	field, _ := json.Marshal(unconfirmedRecord{Room: "-"})
	mark := len(with) - len(without)
	revision := len(strconv.FormatUint(math.MaxUint64, 10)) - len("0")
	return strings.Repeat("-", mark+revision-(len(field)-len(without)-1))
}()

// encodeNew is the value Create stores for p: a charge not yet confirmed
// with room for its confirmation.
func encodeNew(p storedPayment) ([]byte, error) {
	if p.Status != StatusSuccess || p.ConfirmedAt != nil {
		return json.Marshal(p)
	}
	return json.Marshal(unconfirmedRecord{storedPayment: p, Room: confirmRoom})
}

// record returns what GET /payment/{id} shows of p.
func (p storedPayment) record() (PaymentRecord, error) {
	var rec PaymentRecord
	if err := json.Unmarshal(p.Response, &rec.PaymentResponse); err != nil {
		return rec, fmt.Errorf("stored payment: %w", err)
	}
	if p.ConfirmedAt != nil {
		at := p.ConfirmedAt.UTC()
		rec.Confirmed, rec.ConfirmedAt = true, &at
	}
	return rec, nil
}

// ErrStoreFull is returned (wrapped) when a bounded store refuses a write
// because it holds its MaxBytes; nothing was stored.
var ErrStoreFull = errors.New("store is full")

// ErrNotCharged is returned by PaymentRecords.Confirm for a payment that
// was not a successful charge: there is nothing to confirm.
var ErrNotCharged = errors.New("payment was not charged")

// RecordOptions bound the payments bucket.
type RecordOptions struct {
	Bucket   string        // "" means "payments"
	MaxBytes int64         // the bucket's size; a payment beyond it is refused. 0 means 2 GiB.
	MaxAge   time.Duration // how long a payment is kept. 0 means 7 days.
	Replicas int           // JetStream replicas; 0 means 1
	Memory   bool          // memory storage (tests only): forgets on restart
}

// PaymentRecords keeps every decided payment in a JetStream key-value
// bucket (file storage), keyed by transaction ID, so GET /payment/{id}
// finds it after a restart and at any replica. The bucket is bounded by
// bytes and age: a payment is kept MaxAge, and a new one is refused
// (ErrStoreFull) while the bucket holds MaxBytes — never an old one
// dropped early, since an idempotency key may still point at it.
type PaymentRecords struct {
	kv *kvPool
	// missReads is how many times Get reads a payment before it says the
	// payment is missing (missReads).
	missReads int
	// created holds the revisions of the charges this process stored,
	// until their confirmations are consumed; shared by the
	// PaymentRecords of one bucket in a process (Service.openRecords).
	created *createdRevs
}

// createdRevs remembers the revision at which Create stored each charge,
// so that Confirm, when the confirmation is consumed in the same process,
// marks the record by compare-and-set at that revision without reading it
// first. A record changed since (confirmed by another replica, say) fails
// the compare-and-set and is read as any other. Two generations of at most
// createdGen entries each bound it: a charge whose confirmation another
// replica consumes, or one whose confirmation was consumed before Create
// had its acknowledgement (the two are written at once: see
// Service.commit), is forgotten after twice that many others. It relies
// on a bucket never using a revision twice: a bucket deleted and made again
// while the process runs starts its revisions over, and a charge stored
// there again (from its confirmation, by another replica) at the revision
// remembered would be marked a second time.
type createdRevs struct {
	mu        sync.Mutex
	cur, prev map[string]created
	seed      maphash.Seed // set when it is made
}

// created is a charge as Create stored it: at rev, and its fingerprint,
// which the copy a confirmation carries must match to be stored in its
// place (a confirmation is a message anyone allowed on its subject can
// publish).
type created struct {
	rev uint64
	sum uint64
}

// fingerprint sums what Create stores of p.
func (c *createdRevs) fingerprint(p storedPayment) uint64 {
	var h maphash.Hash
	h.SetSeed(c.seed)
	var code [8]byte
	binary.LittleEndian.PutUint64(code[:], uint64(p.Code))
	h.Write(code[:])
	h.WriteString(p.Status)
	h.WriteByte(0)
	h.Write(p.Response)
	return h.Sum64()
}

// createdGen is the size of a generation of createdRevs.
const createdGen = 1 << 14

// put remembers that p was stored as id at rev.
func (c *createdRevs) put(id string, rev uint64, p storedPayment) {
	sum := c.fingerprint(p)
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.cur) >= createdGen || c.cur == nil {
		c.prev, c.cur = c.cur, make(map[string]created)
	}
	c.cur[id] = created{rev: rev, sum: sum}
}

// take returns, and forgets, the revision at which id was stored as p; ok
// is false if it was not, or not as p.
func (c *createdRevs) take(id string, p storedPayment) (rev uint64, ok bool) {
	c.mu.Lock()
	e, found := c.cur[id]
	if found {
		delete(c.cur, id)
	} else if e, found = c.prev[id]; found {
		delete(c.prev, id)
	}
	c.mu.Unlock()
	return e.rev, found && c.fingerprint(p) == e.sum
}

// missReads is how many times Get reads a payment of a bucket on replicas
// servers before it says the payment is missing. On one server once. On a
// cluster a read may reach a replica that has not caught up with a write
// already acknowledged — a payment just answered at another replica — so
// a miss is read again as Create reads a payment it found stored
// (createReads), before GET /payment/{id} answers 404 or a replay of its
// key 409.
func missReads(replicas int) int {
	if replicas > 1 {
		return createReads
	}
	return 1
}

// kvPool is one bucket through several JetStream contexts (connections),
// used in turn.
type kvPool struct {
	kvs  []jetstream.KeyValue
	next atomic.Uint32
}

// openPool creates (or updates) the bucket of cfg through js[0] and binds
// it through every context.
func openPool(ctx context.Context, js []jetstream.JetStream, cfg jetstream.KeyValueConfig) (*kvPool, error) {
	if len(js) == 0 {
		return nil, errors.New("no JetStream context")
	}
	p := &kvPool{}
	for i, j := range js {
		var kv jetstream.KeyValue
		var err error
		if i == 0 {
			kv, err = svc.KeyValue(ctx, j, cfg)
		} else {
			kv, err = j.KeyValue(ctx, cfg.Bucket)
		}
		if err != nil {
			return nil, err
		}
		p.kvs = append(p.kvs, kv)
	}
	return p, nil
}

// get returns the bucket through the next context.
func (p *kvPool) get() jetstream.KeyValue {
	// In uint32: an int of 32 bits would turn negative past 2^31 calls.
	return p.kvs[p.next.Add(1)%uint32(len(p.kvs))]
}

// NewPaymentRecords creates (or updates) the bucket, used through js in
// turn (one context or several).
func NewPaymentRecords(ctx context.Context, js []jetstream.JetStream, o RecordOptions) (*PaymentRecords, error) {
	if o.Bucket == "" {
		o.Bucket = "payments"
	}
	if o.MaxBytes == 0 {
		o.MaxBytes = 2 << 30
	}
	if o.MaxAge == 0 {
		o.MaxAge = 7 * 24 * time.Hour
	}
	storage := jetstream.FileStorage
	if o.Memory {
		storage = jetstream.MemoryStorage
	}
	kv, err := openPool(ctx, js, jetstream.KeyValueConfig{
		Bucket:   o.Bucket,
		History:  1,
		TTL:      o.MaxAge,
		MaxBytes: o.MaxBytes,
		Storage:  storage,
		Replicas: max(o.Replicas, 1),
	})
	if err != nil {
		return nil, fmt.Errorf("payments bucket %q: %w", o.Bucket, err)
	}
	return &PaymentRecords{kv: kv, missReads: missReads(o.Replicas), created: &createdRevs{seed: maphash.MakeSeed()}}, nil
}

// isTxnID reports whether id is a transaction ID of this service, "txn_"
// and 32 lower-case hex digits, as tai.NewID writes them. Anything else is
// no payment here, and never reaches the store as a key.
func isTxnID(id string) bool {
	const prefix = "txn_"
	if len(id) != len(prefix)+32 || !strings.HasPrefix(id, prefix) {
		return false
	}
	for i := len(prefix); i < len(id); i++ {
		if c := id[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// Create stores a new payment and waits for JetStream's acknowledgement.
// If the payment is there already (stored by an earlier attempt, or
// rebuilt from its confirmation) it returns the one stored, which is the
// answer that stands; otherwise p.
func (r *PaymentRecords) Create(ctx context.Context, id string, p storedPayment) (storedPayment, error) {
	val, err := encodeNew(p)
	if err != nil {
		return p, err
	}
	rev, err := r.kv.get().Create(ctx, id, val)
	if err == nil && p.Status == StatusSuccess && p.ConfirmedAt == nil {
		r.created.put(id, rev, p)
	}
	if isConflict(err) {
		// Stored already. A read may reach a replica that has not caught
		// up with the write that got in first (its confirmation's, on a
		// cluster): it is read again for a while before that counts as
		// an error.
		for try := 0; ; try++ {
			got, _, found, gErr := r.get(ctx, id)
			switch {
			case gErr != nil:
				return p, gErr
			case found:
				return got, nil
			case try == createReads-1:
				return p, storeError("payments", err)
			}
			if pErr := pause(ctx, try+1); pErr != nil {
				return p, storeError("payments", errors.Join(err, pErr))
			}
		}
	}
	if err != nil {
		return p, storeError("payments", err)
	}
	return p, nil
}

// createReads is how many times Create reads a payment it found stored
// already, before its absence is an error.
const createReads = 8

// Get returns a stored payment; found is false for an ID it does not hold
// (or that is not a transaction ID). On a cluster a miss is read again
// (missReads): the replica read may not have caught up yet. Reads that
// ctx cuts short are an error, not a payment missing.
func (r *PaymentRecords) Get(ctx context.Context, id string) (p storedPayment, found bool, err error) {
	for try := 1; ; try++ {
		p, _, found, err = r.get(ctx, id)
		if found || err != nil || try >= r.missReads || !isTxnID(id) {
			return p, found, err
		}
		if err := pause(ctx, try); err != nil {
			// Cut short: the payment may be stored yet.
			return p, false, fmt.Errorf("payments: %w", err)
		}
	}
}

func (r *PaymentRecords) get(ctx context.Context, id string) (storedPayment, uint64, bool, error) {
	var p storedPayment
	if !isTxnID(id) {
		return p, 0, false, nil
	}
	e, err := r.kv.get().Get(ctx, id)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return p, 0, false, nil
	}
	if err != nil {
		return p, 0, false, fmt.Errorf("payments: %w", err)
	}
	if err := json.Unmarshal(e.Value(), &p); err != nil {
		return p, 0, false, fmt.Errorf("payments: stored payment %s: %w", id, err)
	}
	return p, e.Revision(), true, nil
}

// Confirm marks a charged payment confirmed at at, once: it reports
// whether this call confirmed it (false when it was confirmed already).
// A payment not stored yet — its confirmation overtook it, or the process
// that charged it died before storing it — is stored from charged, the
// copy its confirmation carries. A payment that is not a successful
// charge is ErrNotCharged.
func (r *PaymentRecords) Confirm(ctx context.Context, id string, at time.Time, charged storedPayment) (bool, error) {
	if rev, ok := r.created.take(id, charged); ok && charged.Status == StatusSuccess && charged.ConfirmedAt == nil {
		// Stored by this process at rev from the copy the confirmation
		// carries: marked at that revision, it needs no read. A record
		// changed since fails the compare-and-set, and is read below.
		p, at := charged, at.UTC()
		p.ConfirmedAt = &at
		val, err := json.Marshal(p)
		if err != nil {
			return false, err
		}
		_, err = r.kv.get().Update(ctx, id, val, rev)
		if err == nil {
			return true, nil
		}
		if !isConflict(err) {
			return false, storeError("payments", err)
		}
	}
	for range 10 {
		p, rev, found, err := r.get(ctx, id)
		if err != nil {
			return false, err
		}
		if !found {
			if charged.Status != StatusSuccess {
				return false, fmt.Errorf("%w: confirmation of %s carries status %q", ErrNotCharged, id, charged.Status)
			}
			p = charged
		}
		switch {
		case p.Status != StatusSuccess:
			return false, fmt.Errorf("%w: %s has status %q", ErrNotCharged, id, p.Status)
		case p.ConfirmedAt != nil:
			return false, nil
		}
		at := at.UTC()
		p.ConfirmedAt = &at
		val, err := json.Marshal(p)
		if err != nil {
			return false, err
		}
		if !found {
			_, err = r.kv.get().Create(ctx, id, val)
		} else {
			_, err = r.kv.get().Update(ctx, id, val, rev)
		}
		if err == nil {
			return true, nil
		}
		if !isConflict(err) {
			return false, storeError("payments", err)
		}
		// Changed meanwhile (stored by its request, or confirmed by
		// another replica): read it again.
	}
	return false, fmt.Errorf("payments: %s changed too often to confirm", id)
}

// isConflict reports a compare-and-set that lost: the key exists, or its
// revision moved on. A bucket with one replica reports that as "wrong last
// sequence" (10071), a replicated one as 10164.
func isConflict(err error) bool {
	var apiErr *jetstream.APIError
	return errors.Is(err, jetstream.ErrKeyExists) ||
		errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
			apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant)
}

// storeError wraps err, as a StoreFullError naming the store (which
// matches ErrStoreFull) when JetStream refused the write because the store
// holds its limit.
func storeError(store string, err error) error {
	if isFull(err) {
		return fmt.Errorf("%w (%v)", &StoreFullError{Store: store}, err)
	}
	return fmt.Errorf("%s: %w", store, err)
}

// fullStores names the stores err says refused a write as full, each
// once: a commit's error joins those of its record and its confirmation.
func fullStores(err error) []string {
	var names []string
	var walk func(error)
	walk = func(err error) {
		var full *StoreFullError
		switch e := err.(type) {
		case nil:
		case interface{ Unwrap() []error }:
			for _, err := range e.Unwrap() {
				walk(err)
			}
		default:
			if errors.As(err, &full) && !slices.Contains(names, full.Store) {
				names = append(names, full.Store)
			}
		}
	}
	walk(err)
	return names
}

// isFull reports JetStream refusing a write to a stream at its limit
// (discard new).
func isFull(err error) bool {
	var apiErr *jetstream.APIError
	if !errors.As(err, &apiErr) {
		return false
	}
	d := apiErr.Description
	return strings.Contains(d, "maximum bytes exceeded") || strings.Contains(d, "maximum messages exceeded")
}
