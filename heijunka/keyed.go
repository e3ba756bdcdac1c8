package heijunka

import (
	"context"
	"fmt"
	"strconv"
	"sync/atomic"
	"time"
)

// KeyedOptions configures a Keyed limiter. The zero value is ready to use:
// an in-memory store of DefaultMaxKeys keys and the system clock.
type KeyedOptions struct {
	// Name names the limiter in errors and to the tai pipeline (tai.Namer).
	// Default "heijunka.keyed".
	Name string
	// Store keeps the per-key state. Default: a new MemoryStore made with
	// MaxKeys and WhenFull. Give a redisgcra.Store to share limits across
	// replicas.
	Store Store
	// MaxKeys and WhenFull configure the default MemoryStore (see
	// MemoryOptions); setting them together with Store is an error.
	MaxKeys  int
	WhenFull FullPolicy
	// Now is the clock. Default: the monotonic system clock.
	Now func() time.Time
	// OnStoreError, if set, is called by Admit with the errors of a Store
	// that still allowed the request (a store that fails open), which
	// would otherwise go unseen. It runs on the caller's goroutine.
	OnStoreError func(error)
}

// Keyed applies one Limit to every key separately: "5 payments per minute
// per customer". It is a tai.Gate: Admit admits a key's event or returns a
// *LimitedError (errors.Is ErrLimited) whose RetryAfter says when to come
// back. Decisions are values (Decision): allowed, remaining, retry-after,
// reset-after, for RateLimit headers.
//
// State lives in a Store; see MemoryStore for how memory stays bounded
// (no goroutine, fresh keys forgotten, MaxKeys). A Keyed is safe for
// concurrent use.
type Keyed struct {
	p     atomic.Pointer[params]
	name  string
	store Store
	mem   *MemoryStore // the store, when it is a MemoryStore: the fast path
	now   func() time.Time
	onErr func(error)
}

// NewKeyed returns a Keyed limiter for limit, or an error for an invalid
// limit or options.
func NewKeyed(limit Limit, opts KeyedOptions) (*Keyed, error) {
	p, err := limit.params()
	if err != nil {
		return nil, err
	}
	k := &Keyed{name: opts.Name, store: opts.Store, now: opts.Now, onErr: opts.OnStoreError}
	if k.name == "" {
		k.name = "heijunka.keyed"
	}
	if k.store == nil {
		m, err := NewMemoryStore(MemoryOptions{MaxKeys: opts.MaxKeys, WhenFull: opts.WhenFull})
		if err != nil {
			return nil, err
		}
		k.store = m
	} else if opts.MaxKeys != 0 || opts.WhenFull != EvictNearest {
		return nil, fmt.Errorf("heijunka: MaxKeys %d and WhenFull %d configure the default store; set them on the Store given", opts.MaxKeys, opts.WhenFull)
	}
	k.mem, _ = k.store.(*MemoryStore)
	k.p.Store(&p)
	return k, nil
}

// Name returns the limiter's name.
func (k *Keyed) Name() string { return k.name }

// Limit returns the current Limit.
func (k *Keyed) Limit() Limit { return k.p.Load().limit }

// Store returns the Store holding the state.
func (k *Keyed) Store() Store { return k.store }

// SetLimit changes the Limit for every key from the next call on. The
// state of each key (its schedule) is kept as it is.
func (k *Keyed) SetLimit(limit Limit) error {
	p, err := limit.params()
	if err != nil {
		return err
	}
	k.p.Store(&p)
	return nil
}

// Allow decides on one event for key now and records it if allowed. The
// error is the Store's (see Store.Take); a MemoryStore never returns one
// here unless it is full under RejectNew.
func (k *Keyed) Allow(ctx context.Context, key string) (d Decision, err error) {
	if k.mem != nil && k.now == nil {
		err = k.mem.takeNow(key, k.p.Load(), &d)
		return d, err
	}
	return k.AllowN(ctx, k.clock(), key, 1)
}

func (k *Keyed) clock() time.Time {
	if k.now != nil {
		return k.now()
	}
	return time.Now()
}

// AllowN decides on n events for key at time now and records them if
// allowed.
func (k *Keyed) AllowN(ctx context.Context, now time.Time, key string, n int) (d Decision, err error) {
	p := k.p.Load()
	if k.mem != nil && n >= 0 {
		err = k.mem.take(key, p, k.mem.rel(now), n, &d)
		return d, err
	}
	return k.store.Take(ctx, key, p.limit, now, n)
}

// Admit implements tai.Gate: nil when key's event is allowed, a
// *LimitedError when it is over the limit, and the Store's error (wrapped)
// when the store could not decide and does not fail open.
func (k *Keyed) Admit(ctx context.Context, key string) error {
	d, err := k.Allow(ctx, key)
	switch {
	case d.Allowed:
		if err != nil && k.onErr != nil {
			k.onErr(err)
		}
		return nil
	case err != nil:
		return fmt.Errorf("heijunka: %s: %w", strconv.Quote(k.name), err)
	}
	return &LimitedError{Name: k.name, Decision: d}
}

// Reset forgets key: its next request finds it full.
func (k *Keyed) Reset(ctx context.Context, key string) error { return k.store.Reset(ctx, key) }
