package heijunka

import (
	"context"
	"time"
)

// A Store keeps the state of keyed limits and decides on it: the in-memory
// MemoryStore for one process, redisgcra.Store for many replicas sharing
// limits. A Store holds one number per key (the GCRA schedule), independent
// of the Limit, so one Store serves any number of limits; keys of
// different limits must differ (prefix them).
//
// Every Store passes the conformance suite in package heijunka/storetest.
type Store interface {
	// Take decides whether n events for key may pass at time now under
	// limit, and records them if so. A denied request records nothing.
	// n = 0 reports the state without changing it.
	//
	// Take returns an error for an invalid limit or a negative n, and when
	// the store could not decide (a network failure). The Decision
	// returned with an error is the store's fallback: Allowed, with
	// FailedOpen set, for a store that fails open; denied for one that
	// fails closed or could not decide at all. Keyed turns the first into
	// a decision without an error (see Keyed.AllowN).
	Take(ctx context.Context, key string, limit Limit, now time.Time, n int) (Decision, error)
	// Reset forgets key: its next request finds it full.
	Reset(ctx context.Context, key string) error
}

// LimitChecker is a Store that takes only some of the valid Limits: one
// with a resolution of its own, such as redisgcra.Store, which refuses a
// Rate above one event per microsecond. NewKeyed and Keyed.SetLimit ask
// a Store that is one about their Limit, and refuse one it cannot apply,
// which would otherwise fail every decision, even a store's that fails
// open.
type LimitChecker interface {
	// CheckLimit returns an error saying why limit, a valid Limit, cannot
	// be applied by the store; nil if it can.
	CheckLimit(limit Limit) error
}
