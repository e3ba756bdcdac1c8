package main

import (
	"context"
	"hash/maphash"
	"sync"
	"time"
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
	// attempts in the window ending at now, this one included.
	Attempt(ctx context.Context, customer string, now time.Time, window time.Duration) (int, error)
	// Spent returns what the customer has paid in currency (minor units)
	// on the UTC day of now.
	Spent(ctx context.Context, customer, currency string, now time.Time) (int64, error)
	// AddSpend adds a successful payment to the day's spend.
	AddSpend(ctx context.Context, customer, currency string, minor int64, now time.Time) error
	// Move records the customer's location and returns the previous one.
	Move(ctx context.Context, customer string, p Point) (prev Point, ok bool, err error)
}

// dayKey names the UTC day of t.
func dayKey(t time.Time) string { return t.UTC().Format("2006-01-02") }

// MemoryState keeps customer state in this process. Memory is bounded: a
// customer not seen for a day is forgotten by an incremental sweep.
type MemoryState struct {
	seed   maphash.Seed
	shards [32]memoryShard
}

type memoryShard struct {
	mu        sync.Mutex
	customers map[string]*customerRecord
	ops       int
}

type customerRecord struct {
	attempts []time.Time // within the longest window asked for, oldest first
	day      string
	spend    map[string]int64 // currency → minor units on day
	last     Point
	hasLast  bool
	seen     time.Time
}

// maxAttemptsKept bounds the attempts remembered per customer: enough to
// count far past any velocity limit.
const maxAttemptsKept = 256

// NewMemoryState returns an empty MemoryState.
func NewMemoryState() *MemoryState {
	m := &MemoryState{seed: maphash.MakeSeed()}
	for i := range m.shards {
		m.shards[i].customers = make(map[string]*customerRecord)
	}
	return m
}

func (m *MemoryState) with(customer string, now time.Time, fn func(r *customerRecord)) {
	sh := &m.shards[maphash.String(m.seed, customer)%uint64(len(m.shards))]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	r := sh.customers[customer]
	if r == nil {
		r = &customerRecord{}
		sh.customers[customer] = r
	}
	if now.After(r.seen) {
		r.seen = now
	}
	fn(r)
	sh.ops++
	if sh.ops%1024 == 0 {
		for k, c := range sh.customers {
			if now.Sub(c.seen) > 25*time.Hour {
				delete(sh.customers, k)
			}
		}
	}
}

// Attempt implements CustomerState.
func (m *MemoryState) Attempt(_ context.Context, customer string, now time.Time, window time.Duration) (n int, _ error) {
	m.with(customer, now, func(r *customerRecord) {
		cut := 0
		for cut < len(r.attempts) && !r.attempts[cut].After(now.Add(-window)) {
			cut++
		}
		r.attempts = append(r.attempts[cut:], now)
		if len(r.attempts) > maxAttemptsKept {
			r.attempts = r.attempts[len(r.attempts)-maxAttemptsKept:]
		}
		n = len(r.attempts)
	})
	return n, nil
}

// Spent implements CustomerState.
func (m *MemoryState) Spent(_ context.Context, customer, currency string, now time.Time) (v int64, _ error) {
	m.with(customer, now, func(r *customerRecord) {
		if r.day == dayKey(now) {
			v = r.spend[currency]
		}
	})
	return v, nil
}

// AddSpend implements CustomerState.
func (m *MemoryState) AddSpend(_ context.Context, customer, currency string, minor int64, now time.Time) error {
	m.with(customer, now, func(r *customerRecord) {
		if d := dayKey(now); r.day != d {
			r.day, r.spend = d, map[string]int64{}
		}
		r.spend[currency] += minor
	})
	return nil
}

// Move implements CustomerState.
func (m *MemoryState) Move(_ context.Context, customer string, p Point) (prev Point, ok bool, _ error) {
	m.with(customer, p.At, func(r *customerRecord) {
		prev, ok = r.last, r.hasLast
		r.last, r.hasLast = p, true
	})
	return prev, ok, nil
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
