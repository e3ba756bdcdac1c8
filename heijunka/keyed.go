package heijunka

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/taipattern/taikit/internal/typednil"
)

// KeyedOptions configures a Keyed limiter. The zero value is ready to use:
// a new MemoryStore with its defaults.
type KeyedOptions struct {
	// Name names the limiter in errors and to the tai pipeline (tai.Namer).
	// Default "heijunka.keyed".
	Name string
	// Store keeps the per-key state. Default (nil): a new MemoryStore made
	// with MemoryStoreOptions{}; make one yourself to set its MaxKeys or
	// WhenFull. Give a redisgcra.Store to share limits across replicas.
	// A Store holding a nil pointer, or a MemoryStore not made by
	// NewMemoryStore, is an error.
	Store Store
	// OnStoreError, if set, is called with the key and the error each time
	// the Store could not decide but failed open, so the request passed
	// unlimited (the Decision's FailedOpen). Those are the store errors
	// Allow and Admit do not return; without OnStoreError they go unseen.
	// It runs on the caller's goroutine, before Allow returns, and should
	// not block; it is not recovered from a panic, which goes on to the
	// caller as a panic of any function it passed would.
	OnStoreError func(key string, err error)
}

// Keyed applies one Limit to every key separately: "5 payments per minute
// per customer". It is a tai.Gate: Admit admits a key's event or returns a
// *LimitedError (errors.Is ErrLimited) whose RetryAfter says when to come
// back. Decisions are values (Decision): allowed, remaining, retry-after,
// reset-after, for RateLimit headers.
//
// State lives in a Store; see MemoryStore for how memory stays bounded
// (no goroutine, fresh keys forgotten, MaxKeys). Use NewKeyed; the zero
// Keyed has no Store and decides nothing: its calls return an error saying
// it was not made by NewKeyed. A Keyed is safe for concurrent use.
type Keyed struct {
	p     atomic.Pointer[params]
	name  string
	store Store
	mem   *MemoryStore // the store, when it is a MemoryStore: the fast path
	onErr func(string, error)
}

// NewKeyed returns a Keyed limiter for limit, or an error for an invalid
// limit or one the Store cannot apply (see LimitChecker), a Store option
// holding a nil pointer, or a zero MemoryStore. The options are optional:
// NewKeyed(limit) is a limiter with the defaults of the zero
// KeyedOptions, NewKeyed(limit, KeyedOptions{...}) one configured by
// them. More than one KeyedOptions is an error.
func NewKeyed(limit Limit, options ...KeyedOptions) (*Keyed, error) {
	p, err := limit.params()
	if err != nil {
		return nil, err
	}
	var opts KeyedOptions
	switch len(options) {
	case 0:
	case 1:
		opts = options[0]
	default:
		return nil, fmt.Errorf("heijunka: NewKeyed takes at most one KeyedOptions, got %d", len(options))
	}
	// A nil pointer in the interface is not nil, and would panic at the
	// first decision.
	if typednil.Holds(opts.Store) {
		return nil, fmt.Errorf("heijunka: KeyedOptions Store is a nil %T", opts.Store)
	}
	k := &Keyed{name: opts.Name, store: opts.Store, onErr: opts.OnStoreError}
	if k.name == "" {
		k.name = "heijunka.keyed"
	}
	if k.store == nil {
		k.store, _ = NewMemoryStore(MemoryStoreOptions{}) // the zero options are valid
	}
	k.mem, _ = k.store.(*MemoryStore)
	if k.mem != nil && len(k.mem.shards) == 0 {
		// The zero MemoryStore has nowhere to keep a key.
		return nil, errors.New("heijunka: KeyedOptions Store is a MemoryStore not made by NewMemoryStore")
	}
	if err := k.checkLimit(limit); err != nil {
		return nil, err
	}
	k.p.Store(&p)
	return k, nil
}

// checkLimit asks a Store that is a LimitChecker whether it can apply
// limit.
func (k *Keyed) checkLimit(limit Limit) error {
	if c, ok := k.store.(LimitChecker); ok {
		if err := c.CheckLimit(limit); err != nil {
			return fmt.Errorf("heijunka: %s: %w", strconv.Quote(k.name), err)
		}
	}
	return nil
}

// Name returns the limiter's name.
func (k *Keyed) Name() string { return k.name }

// Limit returns the current Limit (the zero Limit for the zero Keyed).
func (k *Keyed) Limit() Limit {
	if p := k.p.Load(); p != nil {
		return p.limit
	}
	return Limit{}
}

var errKeyedNotMade = errors.New("heijunka: Keyed not made by NewKeyed")

// Store returns the Store holding the state.
func (k *Keyed) Store() Store { return k.store }

// SetLimit changes the Limit for every key from the next call on. The
// state of each key (its schedule: the time it is full again) is kept as
// it is, not converted as Limiter.SetLimit converts its debt: the Store
// holds only that time, and may serve other limits. So a key that had run
// ahead waits until its schedule comes within the new Limit's refill time
// (Burst intervals), even under a looser Limit: after PerHour(10) is
// used up, SetLimit(PerSecond(10)) leaves the key denied for about an
// hour, where PerHour(10) would have admitted it again after six
// minutes. Reset the keys that should start afresh.
//
// An invalid limit, or one the Store cannot apply (see LimitChecker), is
// an error, and the Limit stays as it was.
func (k *Keyed) SetLimit(limit Limit) error {
	p, err := limit.params()
	if err != nil {
		return err
	}
	if k.store == nil {
		return errKeyedNotMade
	}
	if err := k.checkLimit(limit); err != nil {
		return err
	}
	k.p.Store(&p)
	return nil
}

// Allow decides on one event for key now and records it if allowed. See
// AllowN.
func (k *Keyed) Allow(ctx context.Context, key string) (Decision, error) {
	if k.mem != nil {
		var d Decision
		err := k.mem.takeNow(key, k.p.Load(), &d)
		return d, err
	}
	return k.AllowN(ctx, time.Now(), key, 1)
}

// AllowN decides on n events for key at time now and records them if
// allowed. More events than the Limit's Burst never pass: they are
// denied, with a RetryAfter of InfDuration; an Unlimited Limit admits
// any n, and a closed one none. n = 0 records nothing and reports the
// key's state.
//
// It returns an error only when it has no decision: n is negative, or the
// Store could not decide and does not fail open (a MemoryStore full under
// RejectNew returns ErrStoreFull; a Redis store set to fail closed returns
// its error). The Decision is then not Allowed. When the Store fails open,
// AllowN returns no error but a Decision with Allowed and FailedOpen set,
// and reports the store's error to KeyedOptions.OnStoreError.
func (k *Keyed) AllowN(ctx context.Context, now time.Time, key string, n int) (Decision, error) {
	p := k.p.Load()
	if k.mem != nil && n >= 0 {
		var d Decision
		err := k.mem.take(key, p, k.mem.rel(now), n, &d)
		return d, err
	}
	if k.store == nil {
		return Decision{RetryAfter: InfDuration}, errKeyedNotMade
	}
	d, err := k.store.Take(ctx, key, p.limit, now, n)
	if err != nil && d.Allowed {
		d = Decision{Allowed: true, Limit: p.limit, FailedOpen: true}
		if k.onErr != nil {
			k.onErr(key, err)
		}
		return d, nil
	}
	return d, err
}

// Admit implements tai.Gate: nil when key's event is allowed (also when
// the Store failed open), a *LimitedError when it is over the limit, and
// the Store's error, wrapped, when there is no decision (see AllowN). When
// the Store's Decision says when to retry (a MemoryStore full under
// RejectNew: until a key it holds is fresh), that error has a method
// RetryAfter() time.Duration returning it, as tai.RetryAfter reads it.
func (k *Keyed) Admit(ctx context.Context, key string) error {
	d, err := k.Allow(ctx, key)
	switch {
	case err != nil:
		err = fmt.Errorf("heijunka: %s: %w", strconv.Quote(k.name), err)
		if d.RetryAfter > 0 && d.RetryAfter != InfDuration {
			return &hintedError{err: err, retryAfter: d.RetryAfter}
		}
		return err
	case d.Allowed:
		return nil
	}
	return &LimitedError{Name: k.name, Decision: d}
}

// hintedError is a Store's error that comes with a time to retry after.
type hintedError struct {
	err        error
	retryAfter time.Duration
}

// Error returns the Store's error, wrapped as Admit wraps it.
func (e *hintedError) Error() string { return e.err.Error() }

// Unwrap returns the wrapped error, so errors.Is finds the Store's.
func (e *hintedError) Unwrap() error { return e.err }

// RetryAfter returns how long until the Store expects to decide.
func (e *hintedError) RetryAfter() time.Duration { return e.retryAfter }

// Reset forgets key: its next request finds it full.
func (k *Keyed) Reset(ctx context.Context, key string) error {
	if k.store == nil {
		return errKeyedNotMade
	}
	return k.store.Reset(ctx, key)
}
