package main

import (
	"encoding/json"
	"sync"
	"time"
)

// PaymentRecord is what GET /payment/{id} returns: the response given to
// the payment and what happened to it since.
type PaymentRecord struct {
	PaymentResponse
	Confirmed   bool       `json:"confirmed"`
	ConfirmedAt *time.Time `json:"confirmed_at,omitempty"`
}

// PaymentStore keeps recent payments in memory, the newest Capacity of
// them; older ones are forgotten first.
//
// It holds hundreds of thousands of payments at full speed, so it is laid
// out for the garbage collector, which walks every pointer of the live
// heap on each cycle: a payment is kept as the JSON it was answered with
// (one pointer, to bytes the collector does not scan) and found through a
// map keyed by the 16 bytes of its transaction ID (no pointers at all). A
// payment kept as a PaymentResponse would cost a dozen pointers, and the
// longer marking they take slows every request running meanwhile.
type PaymentStore struct {
	mu       sync.RWMutex
	index    map[paymentKey]int32 // position in ring
	ring     []storedPayment      // grows to capacity, then the oldest is replaced
	next     int                  // ring position of the next payment, once full
	capacity int
	// early holds confirmations that arrived before their payment was
	// stored (the consumer can be faster than the response path), as
	// Unix nanoseconds.
	early map[paymentKey]int64
}

// maxStoreCapacity bounds -store-capacity: the store indexes its ring with
// int32, and a hundred million payments is tens of gigabytes already.
const maxStoreCapacity = 100_000_000

// paymentKey is a transaction ID, "txn_" and 32 hex digits, as bytes.
type paymentKey [16]byte

// keyOf returns the key of a transaction ID, or false for a string that
// is not one (then no payment here has it).
func keyOf(id string) (k paymentKey, ok bool) {
	const prefix = "txn_"
	if len(id) != len(prefix)+2*len(k) || id[:len(prefix)] != prefix {
		return k, false
	}
	for i := range k {
		hi, ok1 := lowerHex(id[len(prefix)+2*i])
		lo, ok2 := lowerHex(id[len(prefix)+2*i+1])
		if !ok1 || !ok2 {
			return k, false
		}
		k[i] = hi<<4 | lo
	}
	return k, true
}

// lowerHex is the value of a lower-case hex digit, as tai.NewID writes
// them.
func lowerHex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	}
	return 0, false
}

type storedPayment struct {
	key         paymentKey
	body        []byte // the PaymentResponse as answered, in JSON
	confirmedAt int64  // Unix nanoseconds; 0 until confirmed
}

// NewPaymentStore returns a store holding up to capacity payments.
func NewPaymentStore(capacity int) *PaymentStore {
	return &PaymentStore{
		index:    make(map[paymentKey]int32),
		capacity: capacity,
		early:    make(map[paymentKey]int64),
	}
}

// Put stores a payment: its transaction ID and the JSON of its
// PaymentResponse, which the store keeps and never modifies.
func (s *PaymentStore) Put(id string, body []byte) {
	k, ok := keyOf(id)
	if !ok {
		return // not a transaction ID of this service
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.index[k]; ok {
		return
	}
	p := storedPayment{key: k, body: body}
	if at, ok := s.early[k]; ok {
		delete(s.early, k)
		p.confirmedAt = at
	}
	if len(s.ring) < s.capacity {
		s.index[k] = int32(len(s.ring))
		s.ring = append(s.ring, p)
		return
	}
	delete(s.index, s.ring[s.next].key)
	s.ring[s.next] = p
	s.index[k] = int32(s.next)
	s.next = (s.next + 1) % s.capacity
}

// Confirm marks a payment confirmed. It reports false for an ID it does not
// hold (the payment may be held by another replica, or not stored yet).
func (s *PaymentStore) Confirm(id string, at time.Time) bool {
	k, ok := keyOf(id)
	if !ok {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	i, ok := s.index[k]
	if !ok {
		if len(s.early) < s.capacity {
			s.early[k] = at.UnixNano()
		}
		return false
	}
	if p := &s.ring[i]; p.confirmedAt == 0 {
		p.confirmedAt = at.UnixNano()
	}
	return true
}

// Get returns a stored payment.
func (s *PaymentStore) Get(id string) (PaymentRecord, bool) {
	k, ok := keyOf(id)
	if !ok {
		return PaymentRecord{}, false
	}
	s.mu.RLock()
	i, ok := s.index[k]
	var p storedPayment
	if ok {
		p = s.ring[i]
	}
	s.mu.RUnlock()
	if !ok {
		return PaymentRecord{}, false
	}
	var rec PaymentRecord
	if err := json.Unmarshal(p.body, &rec.PaymentResponse); err != nil {
		return PaymentRecord{}, false // never: the body was encoded from a PaymentResponse
	}
	if p.confirmedAt != 0 {
		at := time.Unix(0, p.confirmedAt).UTC()
		rec.Confirmed, rec.ConfirmedAt = true, &at
	}
	return rec, true
}
