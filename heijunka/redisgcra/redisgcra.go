package redisgcra

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/taipattern/taikit/heijunka"
)

// FailurePolicy is what a Store decides when Redis cannot answer. There is
// no default: Options.OnError must be set, because either answer is wrong
// for some service.
type FailurePolicy uint8

const (
	// FailOpen allows requests while Redis fails: limits stop applying,
	// traffic does not stop.
	FailOpen FailurePolicy = iota + 1
	// FailClosed denies requests while Redis fails: limits hold, at the
	// cost of turning everyone away.
	FailClosed
)

// Options configures a Store.
type Options struct {
	// Client is the Redis client: a *redis.Client, *redis.ClusterClient or
	// *redis.Ring. Required. The Store does not close it.
	Client redis.UniversalClient
	// Prefix is put before every key, so that limits can share a Redis
	// with other data and with each other. Default "heijunka:".
	Prefix string
	// OnError chooses between FailOpen and FailClosed. Required.
	OnError FailurePolicy
	// ServerClock makes every decision read Redis's own clock (TIME)
	// instead of the time the caller passes, so replicas with skewed
	// clocks still agree. Leave it false to decide at the caller's time,
	// as the heijunka/storetest suite requires.
	ServerClock bool
}

// Store is a heijunka.Store kept in Redis: many replicas share one limit
// per key. Each decision is one Lua script (EVALSHA, falling back to EVAL
// when Redis does not know the script), so it is atomic: replicas racing
// for the last event of a burst cannot both win. A key is one string
// holding the schedule in microseconds since 1970, and it expires (PX)
// when it becomes fresh, so Redis holds only keys that carry information.
//
// Times have microsecond resolution: a Limit faster than one event per
// microsecond is refused with an error. A Store is safe for concurrent use.
type Store struct {
	client      redis.UniversalClient
	prefix      string
	onError     FailurePolicy
	serverClock bool
}

// New returns a Store, or an error naming a missing or invalid option.
func New(opts Options) (*Store, error) {
	if opts.Client == nil {
		return nil, errors.New("redisgcra: Client is nil")
	}
	if opts.OnError != FailOpen && opts.OnError != FailClosed {
		return nil, fmt.Errorf("redisgcra: OnError %d is neither FailOpen nor FailClosed", opts.OnError)
	}
	s := &Store{client: opts.Client, prefix: opts.Prefix, onError: opts.OnError, serverClock: opts.ServerClock}
	if s.prefix == "" {
		s.prefix = "heijunka:"
	}
	return s, nil
}

// script decides n events at time now (microseconds; negative reads TIME)
// for the key, with an interval and a tolerance (burst · interval) in
// microseconds. It returns {allowed, base, now}: base is the stored
// schedule brought up to now, before the request.
var script = redis.NewScript(`
local iv = tonumber(ARGV[1])
local tol = tonumber(ARGV[2])
local n = tonumber(ARGV[3])
local now = tonumber(ARGV[4])
if now < 0 then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local base = tonumber(redis.call('GET', KEYS[1])) or now
if base < now then base = now end
local nxt = base + n * iv
if nxt - now > tol then
  return {0, base, now}
end
if n > 0 then
  redis.call('SET', KEYS[1], string.format('%.0f', nxt), 'PX', math.ceil((nxt - now) / 1000))
end
return {1, base, now}
`)

// Take implements heijunka.Store. Errors from Redis (and a ctx that ends)
// return the OnError fallback with the error: for FailOpen a Decision that
// is Allowed and FailedOpen, for FailClosed a denied one. (A
// heijunka.Keyed turns the first into a decision without an error, and
// reports the error to its OnStoreError.)
func (s *Store) Take(ctx context.Context, key string, limit heijunka.Limit, now time.Time, n int) (heijunka.Decision, error) {
	d := heijunka.Decision{Limit: limit}
	if err := limit.Validate(); err != nil {
		d.RetryAfter = heijunka.InfDuration
		return d, err
	}
	if n < 0 {
		d.RetryAfter = heijunka.InfDuration
		return d, fmt.Errorf("redisgcra: n %d is negative", n)
	}
	switch {
	case limit.IsUnlimited():
		d.Allowed, d.Remaining = true, math.MaxInt
		return d, nil
	case limit.IsClosed():
		d.Allowed = n == 0
		if !d.Allowed {
			d.RetryAfter = heijunka.InfDuration
		}
		return d, nil
	}
	iv := int64(math.Round(float64(limit.Interval()) / float64(time.Microsecond)))
	if iv < 1 {
		d.RetryAfter = heijunka.InfDuration
		return d, fmt.Errorf("redisgcra: limit Rate %v/s is finer than the store's microsecond resolution", limit.Rate)
	}
	tol := iv * int64(limit.Burst)
	nowUs := int64(-1)
	if !s.serverClock {
		nowUs = now.UnixMicro()
	}
	res, err := script.Run(ctx, s.client, []string{s.prefix + key}, iv, tol, n, nowUs).Int64Slice()
	if err == nil && len(res) != 3 {
		err = fmt.Errorf("script returned %d values, want 3", len(res))
	}
	if err != nil {
		d.Allowed = s.onError == FailOpen
		d.FailedOpen = d.Allowed
		return d, fmt.Errorf("redisgcra: %w", err)
	}
	allowed, base, at := res[0] == 1, res[1], res[2]
	next := base + int64(n)*iv
	us := func(v int64) time.Duration { return time.Duration(v) * time.Microsecond }
	if allowed {
		d.Allowed = true
		d.Remaining = int((at + tol - next) / iv)
		d.ResetAfter = us(next - at)
		return d, nil
	}
	d.Remaining = int(max(0, (at+tol-base)/iv))
	d.ResetAfter = us(base - at)
	if n > limit.Burst {
		d.RetryAfter = heijunka.InfDuration
	} else {
		d.RetryAfter = us(next - at - tol)
	}
	return d, nil
}

// Reset implements heijunka.Store: it deletes the key. Redis errors are
// returned as they are; the failure policy applies to decisions only.
func (s *Store) Reset(ctx context.Context, key string) error {
	if err := s.client.Del(ctx, s.prefix+key).Err(); err != nil {
		return fmt.Errorf("redisgcra: %w", err)
	}
	return nil
}
