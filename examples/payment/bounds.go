package main

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
)

// Every store the service writes is bounded by bytes (and age), so a flood
// of unique keys, customers or payments fills no disk and no memory:
//
//   - payments (JetStream): a payment is kept PaymentsMaxAge; while the
//     bucket is full new payments are refused (503 store_full), before the
//     gateway is called, never an old one dropped;
//   - idempotency keys (JetStream, or memory): kept a day; while the store
//     is full a request with a new key is refused (503 store_full);
//   - confirmations (JetStream work queue): bounded by ConfirmMaxBytes and
//     the payments' age; while full, payments are refused as for payments;
//   - customer state (memory, or JetStream): the customers seen least
//     recently are forgotten first (counted in
//     payment_customer_state_evicted_total for memory), so the fraud rules
//     lose the history of idle customers rather than refuse payments.
//
// Refusals are counted in payment_store_refused_total{store}; how full
// each JetStream store is shows in payment_store_bytes and
// payment_store_limit_bytes.

// StoreFullError is a payment refused before it ran because a store it
// would be written to is (nearly) full. It matches ErrStoreFull.
type StoreFullError struct{ Store string }

func (e *StoreFullError) Error() string { return fmt.Sprintf("the %s store is full", e.Store) }

// Is makes errors.Is(err, ErrStoreFull) true.
func (e *StoreFullError) Is(target error) bool { return target == ErrStoreFull }

// RetryAfter is the retry hint: stores empty as entries age out.
func (e *StoreFullError) RetryAfter() time.Duration { return 30 * time.Second }

// boundedStore is a JetStream stream whose fill the storage gate watches.
type boundedStore struct{ name, stream string }

// storeLevels keeps how full the JetStream stores a payment writes are,
// read from the server at most once a second.
type storeLevels struct {
	js       jetstream.JetStream
	stores   []boundedStore
	interval time.Duration

	mu      sync.Mutex // one refresh at a time
	checked atomic.Int64
	full    atomic.Pointer[string] // the first store found full, or nil

	bytes, limit *prometheus.GaugeVec
	refused      *prometheus.CounterVec
}

// headroom is the room a store keeps free for what is already on its way
// (the payments admitted before the next check): 2% of it, at least 64 KiB.
func headroom(maxBytes int64) int64 { return max(maxBytes/50, 64<<10) }

// refresh reads every store's size and limit.
func (l *storeLevels) refresh(ctx context.Context) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	var full *string
	var errs []error
	for _, st := range l.stores {
		s, err := l.js.Stream(ctx, st.stream)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", st.name, err))
			continue
		}
		info, err := s.Info(ctx)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", st.name, err))
			continue
		}
		used, limit := int64(info.State.Bytes), info.Config.MaxBytes
		l.bytes.WithLabelValues(st.name).Set(float64(used))
		l.limit.WithLabelValues(st.name).Set(float64(limit))
		if limit > 0 && used >= limit-headroom(limit) && full == nil {
			name := st.name
			full = &name
		}
	}
	l.full.Store(full)
	l.checked.Store(time.Now().UnixNano())
	return errors.Join(errs...)
}

// fullStore names a store too full to take a payment, or returns "". It
// refreshes the levels when they are older than the interval; a request
// that finds another refreshing uses the levels as they are.
func (l *storeLevels) fullStore(ctx context.Context) string {
	if time.Now().UnixNano()-l.checked.Load() >= int64(l.interval) && l.mu.TryLock() {
		l.mu.Unlock()
		rctx, cancel := context.WithTimeout(ctx, time.Second)
		_ = l.refresh(rctx) // a store that cannot be read fails the payment's own writes instead
		cancel()
	}
	if f := l.full.Load(); f != nil {
		return *f
	}
	return ""
}

// storeGate refuses a payment, before any policy or the gateway, while a
// store it would be written to is full.
type storeGate struct{ levels *storeLevels }

func (g storeGate) Name() string { return "storage" }

func (g storeGate) Admit(ctx context.Context, _ string) error {
	if store := g.levels.fullStore(ctx); store != "" {
		g.levels.refused.WithLabelValues(store).Inc()
		return &StoreFullError{Store: store}
	}
	return nil
}
