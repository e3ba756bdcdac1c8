package redisgcra

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/taipattern/taikit/internal/typednil"

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
	// *redis.Ring. Required. The Store does not close it. Give it
	// ContextTimeoutEnabled: true (see the package documentation for
	// why, and for the other options a limiter wants).
	Client redis.UniversalClient
	// Prefix is put before every key, so that limits can share a Redis
	// with other data and with each other. Default "heijunka:". Two
	// Stores on one Redis need prefixes neither of which begins the
	// other: with "a:" and "a:b:", the key "b:x" of the first is the key
	// "x" of the second.
	Prefix string
	// OnError chooses between FailOpen and FailClosed. Required.
	OnError FailurePolicy
	// ServerClock makes every decision read Redis's own clock (TIME)
	// instead of the time the caller passes, so replicas with skewed
	// clocks still agree; the time passed to Take is then ignored. Leave
	// it false to decide at the caller's time, as the heijunka/storetest
	// suite requires.
	ServerClock bool
}

// Store is a heijunka.Store kept in Redis: many replicas share one limit
// per key. Each decision is one Lua script (EVALSHA, falling back to EVAL
// when Redis does not know the script), so it is atomic: replicas racing
// for the last event of a burst cannot both win. A key is one string
// holding the schedule in microseconds since 1970, and it expires (PX)
// when it becomes fresh, so Redis holds only keys that carry information.
// A key longer than 128 bytes is kept under its SHA-256 digest, so a long
// key costs Redis no more than a short one (see the package
// documentation).
//
// Times have microsecond resolution. A Limit's interval (Limit.Interval,
// in nanoseconds as for every heijunka limiter) is rounded up to a whole
// microsecond, so the Store never admits more than the Limit allows, and
// a Limit faster than one event per microsecond (Rate above 1e6) is
// refused with an error. The caller's time must lie from 1970 up to, not
// including, 2200 unless Options.ServerClock is set.
//
// Take returns by ctx's deadline whatever the client's options; see the
// package documentation. Make one with New; the zero Store is not usable.
// A Store is safe for concurrent use.
type Store struct {
	client      redis.UniversalClient
	prefix      string
	onError     FailurePolicy
	serverClock bool
	// clientDeadlines reports that the client ends its commands at the
	// ctx's deadline itself, so Take need not watch ctx.
	clientDeadlines bool
}

// New returns a Store, or an error naming a missing or invalid option.
func New(opts Options) (*Store, error) {
	if opts.Client == nil {
		return nil, errors.New("redisgcra: Client is nil")
	}
	// A nil pointer in the interface is not nil, and panics at the first
	// use: here, or in Take for a client type New does not know.
	if typednil.Holds(opts.Client) {
		return nil, fmt.Errorf("redisgcra: Client is a nil %T", opts.Client)
	}
	if opts.OnError != FailOpen && opts.OnError != FailClosed {
		return nil, fmt.Errorf("redisgcra: OnError %d is neither FailOpen nor FailClosed", opts.OnError)
	}
	s := &Store{
		client:          opts.Client,
		prefix:          opts.Prefix,
		onError:         opts.OnError,
		serverClock:     opts.ServerClock,
		clientDeadlines: honoursDeadlines(opts.Client),
	}
	if s.prefix == "" {
		s.prefix = "heijunka:"
	}
	return s, nil
}

// honoursDeadlines reports whether c is a go-redis client that bounds its
// socket reads and writes by the ctx's deadline: ContextTimeoutEnabled,
// and read and write deadlines not disabled. A *redis.Client and a
// *redis.ClusterClient normalise their options, after which a negative
// timeout disables deadlines; a *redis.Ring keeps its options as given and
// passes them to its shards' clients, for which -1 is no timeout (the
// ctx's deadline still applies) and -2 or less disables deadlines. Other
// implementations of redis.UniversalClient are not trusted to.
func honoursDeadlines(c redis.UniversalClient) bool {
	enabled, read, write, least := false, time.Duration(-1), time.Duration(-1), time.Duration(0)
	switch c := c.(type) {
	case *redis.Client:
		o := c.Options()
		enabled, read, write = o.ContextTimeoutEnabled, o.ReadTimeout, o.WriteTimeout
	case *redis.ClusterClient:
		o := c.Options()
		enabled, read, write = o.ContextTimeoutEnabled, o.ReadTimeout, o.WriteTimeout
	case *redis.Ring:
		o := c.Options()
		enabled, read, write, least = o.ContextTimeoutEnabled, o.ReadTimeout, o.WriteTimeout, -1
	}
	return enabled && read >= least && write >= least
}

const (
	// maxRate is the fastest Limit the Store keeps: one event per
	// microsecond.
	maxRate = 1e6
	// maxCallerTime bounds the caller's time (2200-01-01 UTC, in seconds
	// since 1970), so that every time the script computes with, up to
	// forty years after it, is exact in Lua's doubles (below 2^53 µs).
	maxCallerTime = 7_258_118_400
)

// script decides n events at time now (microseconds, with nowr more
// nanoseconds, 0 to 999; a negative now reads TIME) for the key, with an
// interval and a tolerance (burst · interval) in whole microseconds. It
// returns {allowed, microseconds, nanoseconds}: how far the stored
// schedule, brought up to now, lies after now, before the request, in
// whole microseconds and nanoseconds more (-999 to 999).
//
// The schedule is kept as "µs" or "µs.nnn", the nanoseconds of the
// caller's time that started it: cut to whole microseconds, a schedule
// would let an event in up to a microsecond early. A stored value that is
// not a number (nil, NaN, infinite) or that lies more than twenty years
// (631 152 000 000 000 µs) after 2200-01-01, the latest time a caller may
// pass, cannot have been written by a Store, whose schedules run at most
// a tolerance ahead of the time they were taken at (ten years of the
// Limit's interval, just under twenty once the interval is rounded up to
// whole microseconds): it counts as absent. The bound is not relative to
// now: a replica whose clock is decades behind, or a time going back,
// finds the schedule another wrote, and waits as long as it went back.
// Another fraction is cut to whole microseconds.
//
// Every number the script computes with stays below 2^53, exact in Lua's
// doubles: microseconds up to forty years past 2200, and nanoseconds only
// as 0 to 999 beside them.
var script = redis.NewScript(`
local iv = tonumber(ARGV[1])
local tol = tonumber(ARGV[2])
local n = tonumber(ARGV[3])
local now = tonumber(ARGV[4])
local nowr = tonumber(ARGV[5])
if now < 0 then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
  nowr = 0
end
local v = redis.call('GET', KEYS[1])
local base, baser = nil, 0
if v then
  local u, r = string.match(v, '^(%d+)%.(%d%d%d)$')
  if u then
    base, baser = tonumber(u), tonumber(r)
  else
    base = tonumber(v)
  end
end
if base == nil or base ~= base or base > 7889270400000000 then
  base, baser = now, nowr
end
base = math.floor(base)
if base < now or (base == now and baser < nowr) then
  base, baser = now, nowr
end
local nxt = base + n * iv
local d = nxt - now
if d > tol or (d == tol and baser > nowr) then
  return {0, base - now, baser - nowr}
end
if n > 0 then
  local val = string.format('%.0f', nxt)
  if baser > 0 then
    val = val .. string.format('.%03d', baser)
  end
  -- The key lives until the schedule, in whole milliseconds rounded up.
  local ms = math.floor(d / 1000)
  if (d - ms * 1000) * 1000 + baser - nowr > 0 then
    ms = ms + 1
  end
  redis.call('SET', KEYS[1], val, 'PX', ms)
end
return {1, base - now, baser - nowr}
`)

// CheckLimit implements heijunka.LimitChecker: it refuses a finite Limit
// faster than one event per microsecond (Rate above 1e6), the Store's
// resolution, so that heijunka.NewKeyed and Keyed.SetLimit refuse it
// rather than every decision failing. Unlimited and closed Limits need no
// schedule and are taken.
func (s *Store) CheckLimit(limit heijunka.Limit) error {
	if limit.IsUnlimited() || limit.IsClosed() || limit.Rate <= maxRate {
		return nil
	}
	return fmt.Errorf("redisgcra: limit Rate %v/s is faster than one event per microsecond, the store's resolution", limit.Rate)
}

// Take implements heijunka.Store. Errors from Redis, and a ctx that is
// done before Redis answers, return the OnError fallback with the error:
// for FailOpen a Decision that is Allowed and FailedOpen, for FailClosed a
// denied one. (A heijunka.Keyed turns the first into a decision without an
// error, and reports the error to its OnStoreError.) Take returns by ctx's
// deadline, with an error that wraps ctx's. A client that ends commands
// at ctx's deadline itself (see the package documentation) notices a ctx
// cancelled without a deadline only before it sends the command: once
// sent, Take waits for Redis's answer, as long as the client's
// ReadTimeout allows, and returns its decision.
//
// Take refuses, with an error and a denied Decision whatever OnError
// says, an invalid Limit, a negative n, a Limit faster than one event per
// microsecond, and (unless Options.ServerClock is set) a time now before
// 1970 or from 2200 on, such as the zero time.Time.
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
	if err := s.CheckLimit(limit); err != nil {
		d.RetryAfter = heijunka.InfDuration
		return d, err
	}
	// The interval in whole microseconds, rounded up: at least 1, as
	// Rate ≤ 1e6 makes Interval at least 1000 ns.
	iv := (int64(limit.Interval()) + int64(time.Microsecond) - 1) / int64(time.Microsecond)
	tol := iv * int64(limit.Burst)
	nowUs, nowNs := int64(-1), int64(0)
	if !s.serverClock {
		if sec := now.Unix(); sec < 0 || sec >= maxCallerTime {
			d.RetryAfter = heijunka.InfDuration
			return d, callerTimeError(now)
		}
		nowUs, nowNs = now.UnixMicro(), int64(now.Nanosecond()%1000)
	}
	res, err := s.run(ctx, s.name(key), iv, tol, n, nowUs, nowNs)
	if err == nil && len(res) != 3 {
		err = fmt.Errorf("script returned %d values, want 3", len(res))
	}
	if err != nil {
		d.Allowed = s.onError == FailOpen
		d.FailedOpen = d.Allowed
		return d, wrapError(ctx, err)
	}
	// The decision in nanoseconds after now: base lies before 2220 and
	// now after 1970, so base is at most 250 years (7.9e18 ns) ahead,
	// and the tolerance and a batch within it add at most twenty years
	// (6.3e17 ns): nothing overflows.
	allowed := res[0] == 1
	base := time.Duration(res[1])*time.Microsecond + time.Duration(res[2])
	ivD, tolD := time.Duration(iv)*time.Microsecond, time.Duration(tol)*time.Microsecond
	if allowed {
		next := base + time.Duration(n)*ivD
		d.Allowed = true
		d.Remaining = int((tolD - next) / ivD)
		d.ResetAfter = next
		return d, nil
	}
	d.Remaining = int(max(0, (tolD-base)/ivD))
	d.ResetAfter = base
	if n > limit.Burst {
		d.RetryAfter = heijunka.InfDuration
	} else {
		d.RetryAfter = base + time.Duration(n)*ivD - tolD
	}
	return d, nil
}

// maxKeyLen is the longest key kept in Redis as it is; a longer one is
// kept as its digest.
const maxKeyLen = 128

// digestPrefix begins the name of a key kept as its digest.
const digestPrefix = "sha256:"

// name returns the Redis key for key: the prefix and the key, or, for a
// key longer than maxKeyLen bytes, the prefix and "sha256:" with the
// key's SHA-256 in unpadded base64url (50 bytes). A key is often made of
// request data (a header, a path, a user name) that a client chooses:
// kept whole, a megabyte-long key would cost Redis a megabyte for as long
// as it lives, a cost the MemoryStore, which keeps a hash, does not have.
// A key that starts with "sha256:" is kept as its digest too, so that no
// key names another's digest, and so is a key that holds a brace: in a
// Redis Cluster the part of a name between braces (a hash tag) picks its
// slot, and a client that chose such keys could put all of its limits on
// one node. The digest holds no brace.
func (s *Store) name(key string) string {
	if len(key) <= maxKeyLen && !strings.HasPrefix(key, digestPrefix) && !strings.ContainsAny(key, "{}") {
		return s.prefix + key
	}
	sum := sha256.Sum256([]byte(key))
	return s.prefix + digestPrefix + base64.RawURLEncoding.EncodeToString(sum[:])
}

// callerTimeError explains why now cannot be decided at.
func callerTimeError(now time.Time) error {
	if now.IsZero() {
		return errors.New("redisgcra: now is the zero time.Time; pass the current time, or set Options.ServerClock to use Redis's")
	}
	if now.Unix() < 0 {
		return fmt.Errorf("redisgcra: now %s is before 1970, which the store cannot keep", now.Format(time.RFC3339Nano))
	}
	return fmt.Errorf("redisgcra: now %s is not before 2200, which the store cannot keep", now.Format(time.RFC3339Nano))
}

// run runs the script and returns its answer, or ctx's error once ctx is
// done. When the client ends commands at ctx's deadline itself, or ctx
// can never be done, the script runs in this goroutine: that is the fast
// path. Otherwise it runs detached.
func (s *Store) run(ctx context.Context, key string, iv, tol int64, n int, nowUs, nowNs int64) ([]int64, error) {
	if s.clientDeadlines || ctx.Done() == nil {
		return script.Run(ctx, s.client, []string{key}, iv, tol, n, nowUs, nowNs).Int64Slice()
	}
	return detach(ctx, func() ([]int64, error) {
		return script.Run(ctx, s.client, []string{key}, iv, tol, n, nowUs, nowNs).Int64Slice()
	})
}

// detach calls f in a goroutine of its own and returns its answer, or
// ctx's error once ctx is done, whichever comes first; ctx must have a
// Done channel. After ctx's end f goes on until the client ends the
// command (within its read and write timeouts); its answer then goes to a
// buffered channel that nothing reads, and the goroutine exits.
func detach[T any](ctx context.Context, f func() (T, error)) (T, error) {
	type answer struct {
		v   T
		err error
	}
	var zero T
	done := ctx.Done()
	select {
	case <-done:
		return zero, ctx.Err()
	default:
	}
	ch := make(chan answer, 1)
	go func() {
		v, err := f()
		ch <- answer{v, err}
	}()
	select {
	case a := <-ch:
		return a.v, a.err
	case <-done:
		select {
		case a := <-ch: // answered as ctx ended: the answer wins
			return a.v, a.err
		default:
			return zero, ctx.Err()
		}
	}
}

// Reset implements heijunka.Store: it deletes the key. Redis errors, and
// ctx's when it is done first, are returned wrapped; the failure policy
// applies to decisions only. Like Take, Reset returns by ctx's deadline,
// with an error that wraps ctx's.
func (s *Store) Reset(ctx context.Context, key string) error {
	var err error
	if s.clientDeadlines || ctx.Done() == nil {
		err = s.client.Del(ctx, s.name(key)).Err()
	} else {
		_, err = detach(ctx, func() (int64, error) { return s.client.Del(ctx, s.name(key)).Result() })
	}
	if err != nil {
		return wrapError(ctx, err)
	}
	return nil
}

// wrapError prefixes err with the package name and, when ctx has ended,
// wraps ctx's error as well, so that errors.Is(err,
// context.DeadlineExceeded) holds whatever the client returned: a client
// that ends commands at ctx's deadline may answer with a network timeout
// of its own (a *redis.ClusterClient does while it loads the cluster's
// slots).
func wrapError(ctx context.Context, err error) error {
	if cerr := ended(ctx); cerr != nil && !errors.Is(err, cerr) {
		return fmt.Errorf("redisgcra: %w: %w", cerr, err)
	}
	return fmt.Errorf("redisgcra: %w", err)
}

// ended returns ctx's error, or context.DeadlineExceeded once ctx's
// deadline has passed though its timer has not yet fired: the client's
// socket deadline and ctx's timer expire together, and either may be seen
// first.
func ended(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if dl, ok := ctx.Deadline(); ok && !time.Now().Before(dl) {
		return context.DeadlineExceeded
	}
	return nil
}
