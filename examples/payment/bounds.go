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
//   - confirmations (JetStream work queue): bounded by ConfirmMaxBytes,
//     defaultConfirmCapacity messages and the payments' age; while full,
//     payments are refused as for payments;
//   - customer state (memory, or JetStream): the customers seen least
//     recently are forgotten first (counted in
//     payment_customer_state_evicted_total for memory), so the fraud rules
//     lose the history of idle customers rather than refuse payments.
//
// Refusals are counted in payment_store_refused_total{store}; how full
// each JetStream store is shows in payment_store_bytes and
// payment_store_limit_bytes.

// StoreFullError names a store that is full: one a payment would be
// written to, nearly full, when the payment is refused before it ran, or
// one that refused a write because it holds its limit of bytes or of
// messages. It matches ErrStoreFull.
type StoreFullError struct{ Store string }

func (e *StoreFullError) Error() string { return fmt.Sprintf("the %s store is full", e.Store) }

// Is makes errors.Is(err, ErrStoreFull) true.
func (e *StoreFullError) Is(target error) bool { return target == ErrStoreFull }

// RetryAfter is the retry hint: stores empty as entries age out.
func (e *StoreFullError) RetryAfter() time.Duration { return 30 * time.Second }

// boundedStore is a JetStream stream whose fill the storage gate watches.
type boundedStore struct{ name, stream string }

// storeLevels keeps how full the JetStream stores a payment writes are,
// read from the server at the start, before the first payment, then about
// once a second (ten times as often near the limit), and counts what this
// process admitted since: a payment is admitted only while every store
// would still hold it with all the payments admitted before it, so those
// already charged always fit. A
// payment is taken at the store's usual payment (storeLevel.each) and,
// beyond it, at its metadata's bytes (Payment.extraBytes), which can make
// it a hundred times larger than the usual one.
//
// The count is this process's: replicas sharing the stores see each
// other's payments at their next read, so with several the limit can be
// overrun by what the others admit in between — which is what the
// DiscardNew stores refuse and commitLater retries.
type storeLevels struct {
	js       jetstream.JetStream
	stores   []boundedStore
	interval time.Duration

	mu      sync.Mutex // one refresh at a time
	checked atomic.Int64
	read    atomic.Pointer[levelsRead]
	// admitted counts the payments admitted since the last read; inflight
	// the payments between their start and their record's commit, which a
	// read does not see yet. admittedBytes and inflightBytes are their
	// bytes beyond the usual payment's (Payment.extraBytes).
	admitted, inflight           atomic.Int64
	admittedBytes, inflightBytes atomic.Int64
	// admitMu makes an admission's check and its count one step, and a
	// refresh's read of the counts a consistent pair.
	admitMu sync.Mutex

	bytes, limit *prometheus.GaugeVec
	refused      *prometheus.CounterVec
}

// levelsRead is one read of the stores: each one's bytes, limit and the
// bytes a payment adds to it, and the payments then in flight, with
// their bytes beyond the usual payment's.
type levelsRead struct {
	stores        []storeLevel
	inflight      int64
	inflightBytes int64
}

// level returns the level of the store named name at this read, if it
// was read (or kept) then; r may be nil.
func (r *levelsRead) level(name string) (storeLevel, bool) {
	if r == nil {
		return storeLevel{}, false
	}
	for _, lv := range r.stores {
		if lv.name == name {
			return lv, true
		}
	}
	return storeLevel{}, false
}

// storeLevel is a store's fill at a read: its bytes (used, of limit, each
// payment taken to add each) and its messages (msgs, of maxMsgs; a
// payment adds one). A limit or maxMsgs of 0 or less is none. kept is
// set on a level carried over from an earlier read, the store not read
// since.
type storeLevel struct {
	name              string
	used, limit, each int64
	msgs, maxMsgs     int64
	kept              bool
}

// minPaymentBytes is the least a payment is taken to add to a store: a
// stored payment with its headers and the server's overhead is about 1
// KiB; an empty store has no average to go by.
const minPaymentBytes = 1 << 10

// headroom is the room a store keeps free for what the estimate of a
// payment's size may miss: 2% of it, at least 64 KiB.
func headroom(maxBytes int64) int64 { return max(maxBytes/50, 64<<10) }

// full reports whether a store of this level could not take n more
// payments, holding extra bytes beyond their usual size.
func (s storeLevel) full(n, extra int64) bool {
	return s.limit > 0 && s.used+n*s.each+extra >= s.limit-headroom(s.limit) ||
		s.maxMsgs > 0 && s.msgs+n >= s.maxMsgs-msgHeadroom(s.maxMsgs)
}

// msgHeadroom is the room a store capped in messages keeps free: 2% of
// the cap, at least one message (the queue's own keeper takes one).
func msgHeadroom(maxMsgs int64) int64 { return max(maxMsgs/50, 1) }

// nearFull reports whether n more payments, holding extra bytes beyond
// their usual size, would take a store of this level within a tenth of
// its limit.
func (s storeLevel) nearFull(n, extra int64) bool {
	return s.limit > 0 && s.used+n*s.each+extra >= s.limit-s.limit/10 ||
		s.maxMsgs > 0 && s.msgs+n >= s.maxMsgs-s.maxMsgs/10
}

// refresh reads every store's size and limit.
func (l *storeLevels) refresh(ctx context.Context) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	// Read the counts first: a payment admitted or stored while the stores
	// are read is counted twice rather than not at all.
	l.admitMu.Lock()
	admitted, admittedBytes := l.admitted.Load(), l.admittedBytes.Load()
	l.admitMu.Unlock()
	read := &levelsRead{inflight: l.inflight.Load(), inflightBytes: l.inflightBytes.Load()}
	prev := l.read.Load()
	var errs []error
	unread := func(st boundedStore, err error) {
		errs = append(errs, fmt.Errorf("%s: %w", st.name, err))
		// A store that cannot be read now (its server busy past the
		// read's deadline) keeps its last level, with every payment
		// counted then and admitted since taken as stored: one found
		// full stays full, where dropped it would admit payments to be
		// charged and then refused by the store. The payments in
		// flight at the level's read are added once, when it is first
		// kept; those admitted after it, at the refresh after each
		// was admitted.
		if lv, ok := prev.level(st.name); ok {
			n, extra := admitted, admittedBytes
			if !lv.kept {
				n += prev.inflight
				extra += prev.inflightBytes
			}
			lv.used += n*lv.each + extra
			lv.msgs += n
			lv.kept = true
			read.stores = append(read.stores, lv)
		}
	}
	for _, st := range l.stores {
		s, err := l.js.Stream(ctx, st.stream)
		if err != nil {
			unread(st, err)
			continue
		}
		info, err := s.Info(ctx)
		if err != nil {
			unread(st, err)
			continue
		}
		lv := storeLevel{name: st.name, used: int64(info.State.Bytes), limit: info.Config.MaxBytes, each: minPaymentBytes,
			msgs: int64(info.State.Msgs), maxMsgs: info.Config.MaxMsgs}
		if info.State.Msgs > 0 {
			// Twice the average message: payments vary in size.
			lv.each = max(lv.each, 2*lv.used/int64(info.State.Msgs))
		}
		l.bytes.WithLabelValues(st.name).Set(float64(lv.used))
		l.limit.WithLabelValues(st.name).Set(float64(lv.limit))
		read.stores = append(read.stores, lv)
	}
	l.read.Store(read)
	l.admitted.Add(-admitted)
	l.admittedBytes.Add(-admittedBytes)
	l.checked.Store(time.Now().UnixNano())
	return errors.Join(errs...)
}

// admit takes a place for one payment in every store, or names a store too
// full to take it: the payment of ctx (paymentBytesKey), at the usual
// payment's size and its own bytes beyond it. It refreshes the levels
// when they are older than the interval, or a tenth of it when a store is
// near its limit; a request that finds another refreshing uses the levels
// as they are.
func (l *storeLevels) admit(ctx context.Context) string {
	every := int64(l.interval)
	if l.nearFull() {
		every /= 10
	}
	if time.Now().UnixNano()-l.checked.Load() >= every && l.mu.TryLock() {
		l.mu.Unlock()
		rctx, cancel := context.WithTimeout(ctx, time.Second)
		_ = l.refresh(rctx) // a store that cannot be read keeps its last level
		cancel()
	}
	read := l.read.Load()
	if read == nil {
		return ""
	}
	own, _ := ctx.Value(paymentBytesKey{}).(int64)
	l.admitMu.Lock()
	defer l.admitMu.Unlock()
	n, extra := l.admitted.Load(), l.admittedBytes.Load()
	for _, st := range read.stores {
		if st.full(read.inflight+n+1, read.inflightBytes+extra+own) {
			return st.name
		}
	}
	l.admitted.Add(1)
	l.admittedBytes.Add(own)
	return ""
}

// paymentBytesKey is the context key of a payment's bytes beyond the
// usual payment's (Payment.extraBytes), which the storage gate takes it
// at.
type paymentBytesKey struct{}

// nearFull reports whether a store, at the last read, was within a tenth
// of its limit.
func (l *storeLevels) nearFull() bool {
	read := l.read.Load()
	if read == nil {
		return false
	}
	for _, st := range read.stores {
		if st.nearFull(read.inflight+l.admitted.Load(), read.inflightBytes+l.admittedBytes.Load()) {
			return true
		}
	}
	return false
}

// storeGate refuses a payment, before any policy or the gateway, while a
// store it would be written to is full.
type storeGate struct{ levels *storeLevels }

func (g storeGate) Name() string { return "storage" }

func (g storeGate) Admit(ctx context.Context, _ string) error {
	if store := g.levels.admit(ctx); store != "" {
		g.levels.refused.WithLabelValues(store).Inc()
		return &StoreFullError{Store: store}
	}
	return nil
}
