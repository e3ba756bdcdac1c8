package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// RedisState keeps customer state in Redis so replicas share it. Keys
// expire on their own: attempts after the window, spend after two days,
// the last location after 25 hours, when the other stores forget an idle
// customer too.
type RedisState struct {
	rdb    redis.UniversalClient
	prefix string
}

// NewRedisState returns a RedisState on rdb with keys under prefix.
func NewRedisState(rdb redis.UniversalClient, prefix string) *RedisState {
	return &RedisState{rdb: rdb, prefix: prefix}
}

// attemptScript adds an attempt to a sorted set, drops the ones outside
// the window and all but the last ARGV[6] (maxAttemptsKept, as the other
// stores keep), and returns the count, atomically.
//
// A member is the attempt's Unix nanoseconds in base 36, a colon and a
// random suffix; its score is the same nanoseconds, which a float64 (a
// score, and a Lua number) holds to 256 ns only at today's times (61
// bits). So the scores only sort the set and find what is surely out of
// the window (scores below ARGV[3]) or surely in it (above ARGV[4]); an
// attempt between is judged on its member's exact time against the
// window's start (ARGV[5], in base 36 too), as the other stores judge it:
// out if at or before it. The bounds come from Go as strings, exact,
// and no time goes through Lua arithmetic.
var attemptScript = redis.NewScript(`
-- at_or_before reports whether base-36 integer a is at most b.
local function at_or_before(a, b)
  local na, nb = a:sub(1, 1) == '-', b:sub(1, 1) == '-'
  if na ~= nb then return na end
  if #a ~= #b then return (#a < #b) ~= na end
  if na then return a >= b end
  return a <= b
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[3])
for _, m in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], ARGV[3], ARGV[4])) do
  if at_or_before(string.match(m, '^[^:]*'), ARGV[5]) then
    redis.call('ZREM', KEYS[1], m)
  end
end
redis.call('ZADD', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZREMRANGEBYRANK', KEYS[1], 0, -tonumber(ARGV[6]) - 1)
redis.call('PEXPIRE', KEYS[1], ARGV[7])
return redis.call('ZCARD', KEYS[1])
`)

// scoreSlack is beyond twice the rounding of a Unix nanosecond to a
// float64 (512 ns at most, below 2^63): an attempt whose score is further
// than this from the window's start is on the side its score says.
const scoreSlack = 2048

// Attempt implements CustomerState.
func (s *RedisState) Attempt(ctx context.Context, customer string, now time.Time, window time.Duration) (int, error) {
	at := now.UnixNano()
	from := now.Add(-window).UnixNano()
	// The member is unique by chance, not by the clock: attempts at one
	// instant, on one replica or several, are all counted.
	member := strconv.FormatInt(at, 36) + ":" + strconv.FormatUint(rand.Uint64(), 36)
	n, err := attemptScript.Run(ctx, s.rdb, []string{s.prefix + "attempts:" + customer},
		strconv.FormatInt(at, 10), member,
		strconv.FormatInt(from-scoreSlack, 10), strconv.FormatInt(from+scoreSlack, 10), strconv.FormatInt(from, 36),
		maxAttemptsKept, max((window+time.Millisecond-1).Milliseconds(), 1)).Int()
	if err != nil {
		return 0, fmt.Errorf("redis state: attempts: %w", err)
	}
	return n, nil
}

func (s *RedisState) spendKey(customer, currency string, now time.Time) string {
	return s.prefix + "spend:" + customer + ":" + currency + ":" + dayKey(now)
}

// Spent implements CustomerState.
func (s *RedisState) Spent(ctx context.Context, customer, currency string, now time.Time) (int64, error) {
	v, err := s.rdb.Get(ctx, s.spendKey(customer, currency, now)).Int64()
	if errors.Is(err, redis.Nil) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("redis state: spend: %w", err)
	}
	return v, nil
}

// releaseScript gives back ARGV[1] (minor units) of the day's spend at
// KEYS[1], taking it to zero at most, and leaves a key that is not there
// (expired, evicted) alone: INCRBY would create it negative, a credit on
// the daily limit for a hold the store no longer held. The key keeps its
// expiry. Only Redis integers are compared: no amount goes through a Lua
// number.
var releaseScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local v = redis.call('DECRBY', KEYS[1], ARGV[1])
if v < 0 then
  local ttl = redis.call('PTTL', KEYS[1])
  redis.call('SET', KEYS[1], '0')
  if ttl > 0 then redis.call('PEXPIRE', KEYS[1], ttl) end
  return 0
end
return v
`)

// AddSpend implements CustomerState.
func (s *RedisState) AddSpend(ctx context.Context, customer, currency string, minor int64, now time.Time) error {
	key := s.spendKey(customer, currency, now)
	if minor < 0 {
		if err := releaseScript.Run(ctx, s.rdb, []string{key}, strconv.FormatInt(-minor, 10)).Err(); err != nil {
			return fmt.Errorf("redis state: release spend: %w", err)
		}
		return nil
	}
	_, err := s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.IncrBy(ctx, key, minor)
		p.Expire(ctx, key, 48*time.Hour)
		return nil
	})
	if err != nil {
		return fmt.Errorf("redis state: add spend: %w", err)
	}
	return nil
}

// Reserve implements CustomerState: the attempt, then the hold, whose
// new total less minor is the spend before it, and the location, in one
// transaction.
func (s *RedisState) Reserve(ctx context.Context, customer, currency string, minor int64, now time.Time, window time.Duration, at *Point) (Reservation, error) {
	n, err := s.Attempt(ctx, customer, now, window)
	if err != nil {
		return Reservation{}, err
	}
	key := s.spendKey(customer, currency, now)
	var total *redis.IntCmd
	var old *redis.StatusCmd
	if _, err := s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		total = p.IncrBy(ctx, key, minor)
		p.Expire(ctx, key, 48*time.Hour)
		if at != nil {
			old = s.setLocation(ctx, p, customer, *at)
		}
		return nil
	}); err != nil && !errors.Is(err, redis.Nil) {
		return Reservation{}, fmt.Errorf("redis state: hold spend: %w", err)
	}
	res := Reservation{Attempts: n, Spent: total.Val() - minor}
	if old != nil {
		res.Prev, res.HasPrev = parseLocation(old.Val(), old.Err())
	}
	return res, nil
}

// Move implements CustomerState.
func (s *RedisState) Move(ctx context.Context, customer string, p Point) (Point, bool, error) {
	old := s.setLocation(ctx, s.rdb, customer, p)
	if err := old.Err(); err != nil && !errors.Is(err, redis.Nil) {
		return Point{}, false, fmt.Errorf("redis state: location: %w", err)
	}
	prev, ok := parseLocation(old.Val(), old.Err())
	return prev, ok, nil
}

// setLocation sets the customer's location to p with c, asking for the
// one before.
func (s *RedisState) setLocation(ctx context.Context, c redis.Cmdable, customer string, p Point) *redis.StatusCmd {
	v := strconv.FormatFloat(p.Lat, 'g', -1, 64) + " " + strconv.FormatFloat(p.Lon, 'g', -1, 64) + " " + strconv.FormatInt(p.At.UnixNano(), 10)
	return c.SetArgs(ctx, s.prefix+"location:"+customer, v, redis.SetArgs{Get: true, TTL: forgetAfter})
}

// parseLocation reads a location setLocation stored, as its GET answered
// (err redis.Nil: there was none).
func parseLocation(old string, err error) (Point, bool) {
	if err != nil {
		return Point{}, false
	}
	var lat, lon float64
	var at int64
	if _, err := fmt.Sscanf(old, "%g %g %d", &lat, &lon, &at); err != nil {
		return Point{}, false // a value this service did not write: start afresh
	}
	return Point{Lat: lat, Lon: lon, At: time.Unix(0, at)}, true
}
