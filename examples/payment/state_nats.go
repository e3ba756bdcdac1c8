package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// NATSState keeps customer state in a JetStream key-value bucket, so
// replicas that share a NATS server share it without Redis. Each customer
// is one entry, changed by compare-and-set on its revision; entries expire
// a day after their last change.
type NATSState struct {
	kv jetstream.KeyValue
}

// customerEntry is a customer's stored state.
type customerEntry struct {
	Attempts []int64          `json:"attempts,omitempty"` // unix nanoseconds, oldest first
	Day      string           `json:"day,omitempty"`
	Spend    map[string]int64 `json:"spend,omitempty"`
	Last     *Point           `json:"last,omitempty"`
}

// NewNATSState creates (or reuses) the bucket, holding maxBytes at most
// (0 means 256 MiB): beyond, the entries changed least recently are
// dropped, so the fraud rules forget idle customers rather than refuse
// payments.
func NewNATSState(ctx context.Context, js jetstream.JetStream, bucket string, maxBytes int64) (*NATSState, error) {
	if maxBytes <= 0 {
		maxBytes = 256 << 20
	}
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:   bucket,
		TTL:      forgetAfter,
		History:  1,
		MaxBytes: maxBytes,
		Storage:  jetstream.FileStorage,
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
	return &NATSState{kv: kv}, nil
}

// Customer IDs are validated to letters, digits, '_', '-' and '.', which
// are all valid key characters.
func customerKey(customer string) string { return "c." + customer }

// read returns the customer's entry and its revision (0 when absent).
func (n *NATSState) read(ctx context.Context, customer string) (customerEntry, uint64, error) {
	var e customerEntry
	got, err := n.kv.Get(ctx, customerKey(customer))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return e, 0, nil
	}
	if err != nil {
		return e, 0, fmt.Errorf("nats state: %w", err)
	}
	if err := json.Unmarshal(got.Value(), &e); err != nil {
		return customerEntry{}, got.Revision(), nil // not ours: start afresh
	}
	return e, got.Revision(), nil
}

// update applies change to the customer's entry with compare-and-set,
// retrying when another replica changed it first.
func (n *NATSState) update(ctx context.Context, customer string, change func(*customerEntry)) error {
	key := customerKey(customer)
	for range 20 {
		e, rev, err := n.read(ctx, customer)
		if err != nil {
			return err
		}
		change(&e)
		val, err := json.Marshal(e)
		if err != nil {
			return err
		}
		if rev == 0 {
			_, err = n.kv.Create(ctx, key, val)
		} else {
			_, err = n.kv.Update(ctx, key, val, rev)
		}
		if err == nil {
			return nil
		}
		var apiErr *jetstream.APIError
		if !errors.Is(err, jetstream.ErrKeyExists) && !(errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence) {
			return fmt.Errorf("nats state: %w", err)
		}
	}
	return fmt.Errorf("nats state: customer %q changed too often to update", clip(customer))
}

// Attempt implements CustomerState.
func (n *NATSState) Attempt(ctx context.Context, customer string, now time.Time, window time.Duration) (count int, err error) {
	err = n.update(ctx, customer, func(e *customerEntry) {
		cut := 0
		for cut < len(e.Attempts) && e.Attempts[cut] <= now.Add(-window).UnixNano() {
			cut++
		}
		e.Attempts = append(e.Attempts[cut:], now.UnixNano())
		if len(e.Attempts) > maxAttemptsKept {
			e.Attempts = e.Attempts[len(e.Attempts)-maxAttemptsKept:]
		}
		count = len(e.Attempts)
	})
	return count, err
}

// Spent implements CustomerState.
func (n *NATSState) Spent(ctx context.Context, customer, currency string, now time.Time) (int64, error) {
	e, _, err := n.read(ctx, customer)
	if err != nil || e.Day != dayKey(now) {
		return 0, err
	}
	return e.Spend[currency], nil
}

// AddSpend implements CustomerState.
func (n *NATSState) AddSpend(ctx context.Context, customer, currency string, minor int64, now time.Time) error {
	return n.update(ctx, customer, func(e *customerEntry) {
		if d := dayKey(now); e.Day != d {
			e.Day, e.Spend = d, map[string]int64{}
		}
		if e.Spend == nil {
			e.Spend = map[string]int64{}
		}
		e.Spend[currency] += minor
	})
}

// Move implements CustomerState.
func (n *NATSState) Move(ctx context.Context, customer string, p Point) (prev Point, ok bool, err error) {
	err = n.update(ctx, customer, func(e *customerEntry) {
		if e.Last != nil {
			prev, ok = *e.Last, true
		} else {
			prev, ok = Point{}, false
		}
		last := p
		e.Last = &last
	})
	return prev, ok, err
}
