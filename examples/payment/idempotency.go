package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Idempotency keys follow Stripe's semantics: the first request with a key
// runs; a later one with the same key and body gets the first response
// again (status and body) without charging; the same key with another body
// is an error; a twin still in flight gets 409. Keys expire after a day.
const (
	idempotencyTTL = 24 * time.Hour
	// inFlightLease bounds how long a key stays claimed by a request that
	// never finished (its replica died): after it, the key can be claimed
	// again.
	inFlightLease  = 2 * time.Minute
	maxIdemKeyLen  = 255
	stateInFlight  = "in_flight"
	stateCompleted = "completed"
)

// IdemEntry is what the store keeps for an idempotency key.
type IdemEntry struct {
	Fingerprint string          `json:"fingerprint"` // sha256 of the request body
	State       string          `json:"state"`
	Started     time.Time       `json:"started"`
	Status      int             `json:"status,omitempty"`
	Body        json.RawMessage `json:"body,omitempty"`
}

// IdempotencyStore keeps idempotency keys. MemoryIdempotency serves one
// replica; NATSIdempotency shares keys among replicas on one NATS.
type IdempotencyStore interface {
	// Claim stores e (in flight) under key unless a live entry is there,
	// which it returns instead with claimed false.
	Claim(ctx context.Context, key string, e IdemEntry) (existing IdemEntry, claimed bool, err error)
	// Complete replaces the claim with the final response.
	Complete(ctx context.Context, key string, e IdemEntry) error
	// Release drops a claim whose request produced no response, so the
	// client may retry.
	Release(ctx context.Context, key string) error
}

func fingerprint(body []byte) string {
	sum := sha256.Sum256(body)
	return hex.EncodeToString(sum[:])
}

// live reports whether an existing entry still holds the key at now.
func (e *IdemEntry) live(now time.Time) bool {
	if e.State == stateInFlight {
		return now.Sub(e.Started) < inFlightLease
	}
	return now.Sub(e.Started) < idempotencyTTL
}

// MemoryIdempotency keeps keys in this process, forgetting them after the
// TTL through an incremental sweep.
type MemoryIdempotency struct {
	mu      sync.Mutex
	entries map[string]IdemEntry
	now     func() time.Time
	ops     int
}

// NewMemoryIdempotency returns an empty store.
func NewMemoryIdempotency(now func() time.Time) *MemoryIdempotency {
	if now == nil {
		now = time.Now
	}
	return &MemoryIdempotency{entries: make(map[string]IdemEntry), now: now}
}

// Claim implements IdempotencyStore.
func (m *MemoryIdempotency) Claim(_ context.Context, key string, e IdemEntry) (IdemEntry, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	if old, ok := m.entries[key]; ok && old.live(now) {
		return old, false, nil
	}
	m.entries[key] = e
	m.ops++
	if m.ops%4096 == 0 {
		for k, v := range m.entries {
			if !v.live(now) {
				delete(m.entries, k)
			}
		}
	}
	return IdemEntry{}, true, nil
}

// Complete implements IdempotencyStore.
func (m *MemoryIdempotency) Complete(_ context.Context, key string, e IdemEntry) error {
	m.mu.Lock()
	m.entries[key] = e
	m.mu.Unlock()
	return nil
}

// Release implements IdempotencyStore.
func (m *MemoryIdempotency) Release(_ context.Context, key string) error {
	m.mu.Lock()
	delete(m.entries, key)
	m.mu.Unlock()
	return nil
}

// NATSIdempotency keeps keys in a JetStream key-value bucket whose TTL is
// the key lifetime. Claims are atomic (Create fails when the key exists);
// a stale in-flight claim is taken over with a revision check.
type NATSIdempotency struct {
	kv  jetstream.KeyValue
	now func() time.Time
}

// NewNATSIdempotency creates (or reuses) the bucket. now is the clock that
// dates entries (nil: time.Now).
func NewNATSIdempotency(ctx context.Context, js jetstream.JetStream, bucket string, replicas int, now func() time.Time) (*NATSIdempotency, error) {
	if now == nil {
		now = time.Now
	}
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:   bucket,
		TTL:      idempotencyTTL,
		History:  1,
		Storage:  jetstream.FileStorage,
		Replicas: max(replicas, 1),
	})
	if err != nil {
		return nil, fmt.Errorf("idempotency bucket %q: %w", bucket, err)
	}
	return &NATSIdempotency{kv: kv, now: now}, nil
}

// kvKey maps any idempotency key to a valid KV key.
func kvKey(key string) string {
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:])
}

// Claim implements IdempotencyStore.
func (n *NATSIdempotency) Claim(ctx context.Context, key string, e IdemEntry) (IdemEntry, bool, error) {
	k := kvKey(key)
	val, err := json.Marshal(e)
	if err != nil {
		return IdemEntry{}, false, err
	}
	for range 3 {
		_, err = n.kv.Create(ctx, k, val)
		if err == nil {
			return IdemEntry{}, true, nil
		}
		if !errors.Is(err, jetstream.ErrKeyExists) {
			return IdemEntry{}, false, fmt.Errorf("idempotency claim: %w", err)
		}
		got, err := n.kv.Get(ctx, k)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue // released meanwhile: try again
		}
		if err != nil {
			return IdemEntry{}, false, fmt.Errorf("idempotency read: %w", err)
		}
		var old IdemEntry
		if err := json.Unmarshal(got.Value(), &old); err == nil && old.live(n.now()) {
			return old, false, nil
		}
		// A stale claim: take it over unless someone else does first.
		if _, err := n.kv.Update(ctx, k, val, got.Revision()); err == nil {
			return IdemEntry{}, true, nil
		}
	}
	return IdemEntry{}, false, errors.New("idempotency claim: key is contended")
}

// Complete implements IdempotencyStore.
func (n *NATSIdempotency) Complete(ctx context.Context, key string, e IdemEntry) error {
	val, err := json.Marshal(e)
	if err != nil {
		return err
	}
	if _, err := n.kv.Put(ctx, kvKey(key), val); err != nil {
		return fmt.Errorf("idempotency complete: %w", err)
	}
	return nil
}

// Release implements IdempotencyStore.
func (n *NATSIdempotency) Release(ctx context.Context, key string) error {
	if err := n.kv.Delete(ctx, kvKey(key)); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		return fmt.Errorf("idempotency release: %w", err)
	}
	return nil
}
