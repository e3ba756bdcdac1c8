package main

import (
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
type PaymentStore struct {
	mu       sync.RWMutex
	byID     map[string]*PaymentRecord
	order    []string // ring of IDs, oldest at next
	next     int
	capacity int
	// early holds confirmations that arrived before their payment was
	// stored (the consumer can be faster than the response path).
	early map[string]time.Time
}

// NewPaymentStore returns a store holding up to capacity payments.
func NewPaymentStore(capacity int) *PaymentStore {
	return &PaymentStore{
		byID:     make(map[string]*PaymentRecord),
		order:    make([]string, capacity),
		capacity: capacity,
		early:    make(map[string]time.Time),
	}
}

// Put stores a payment's response.
func (s *PaymentStore) Put(resp PaymentResponse) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.byID[resp.TransactionID]; ok {
		return
	}
	if old := s.order[s.next]; old != "" {
		delete(s.byID, old)
	}
	s.order[s.next] = resp.TransactionID
	s.next = (s.next + 1) % s.capacity
	rec := &PaymentRecord{PaymentResponse: resp}
	if at, ok := s.early[resp.TransactionID]; ok {
		delete(s.early, resp.TransactionID)
		rec.Confirmed, rec.ConfirmedAt = true, &at
	}
	s.byID[resp.TransactionID] = rec
}

// Confirm marks a payment confirmed. It reports false for an ID it does not
// hold (the payment may be held by another replica, or not stored yet).
func (s *PaymentStore) Confirm(id string, at time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	rec, ok := s.byID[id]
	if !ok {
		if len(s.early) < s.capacity {
			s.early[id] = at
		}
		return false
	}
	if !rec.Confirmed {
		rec.Confirmed, rec.ConfirmedAt = true, &at
	}
	return true
}

// Get returns a copy of a stored payment.
func (s *PaymentStore) Get(id string) (PaymentRecord, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	rec, ok := s.byID[id]
	if !ok {
		return PaymentRecord{}, false
	}
	return *rec, true
}
