package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
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
// stores keep), and returns the count, atomically (luaAttempt).
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
var attemptScript = redis.NewScript(luaAtOrBefore + luaAttempt + "return attempts\n")

// luaAtOrBefore defines at_or_before(a, b), which reports whether base-36
// integer a is at most b.
const luaAtOrBefore = `
local function at_or_before(a, b)
  local na, nb = a:sub(1, 1) == '-', b:sub(1, 1) == '-'
  if na ~= nb then return na end
  if #a ~= #b then return (#a < #b) ~= na end
  if na then return a >= b end
  return a <= b
end
`

// luaAttempt counts an attempt in the sorted set KEYS[1], as attemptArgs
// give it in ARGV[1] to ARGV[7], and leaves the count in attempts.
const luaAttempt = `
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[3])
for _, m in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], ARGV[3], ARGV[4])) do
  if at_or_before(string.match(m, '^[^:]*'), ARGV[5]) then
    redis.call('ZREM', KEYS[1], m)
  end
end
redis.call('ZADD', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZREMRANGEBYRANK', KEYS[1], 0, -tonumber(ARGV[6]) - 1)
redis.call('PEXPIRE', KEYS[1], ARGV[7])
local attempts = redis.call('ZCARD', KEYS[1])
`

// scoreSlack is beyond twice the rounding of a Unix nanosecond to a
// float64 (512 ns at most, below 2^63): an attempt whose score is further
// than this from the window's start is on the side its score says.
const scoreSlack = 2048

// Attempt implements CustomerState.
func (s *RedisState) Attempt(ctx context.Context, customer string, now time.Time, window time.Duration) (int, error) {
	n, err := attemptScript.Run(ctx, s.rdb, []string{s.attemptsKey(customer)}, attemptArgs(now, window)...).Int()
	if err != nil {
		return 0, fmt.Errorf("redis state: attempts: %w", err)
	}
	return n, nil
}

func (s *RedisState) attemptsKey(customer string) string { return s.prefix + "attempts:" + customer }

// attemptArgs are luaAttempt's ARGV[1] to ARGV[7] for an attempt at now
// in a window.
func attemptArgs(now time.Time, window time.Duration) []any {
	at := now.UnixNano()
	from := now.Add(-window).UnixNano()
	// The member is unique by chance, not by the clock: attempts at one
	// instant, on one replica or several, are all counted.
	member := strconv.FormatInt(at, 36) + ":" + strconv.FormatUint(rand.Uint64(), 36)
	return []any{strconv.FormatInt(at, 10), member,
		strconv.FormatInt(from-scoreSlack, 10), strconv.FormatInt(from+scoreSlack, 10), strconv.FormatInt(from, 36),
		maxAttemptsKept, max((window + time.Millisecond - 1).Milliseconds(), 1)}
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

// releaseScript forgets the Reserve of transaction ARGV[2] in the hash
// KEYS[2], when given, and gives nothing back when the hash did not hold
// it; else it gives back ARGV[1] (minor units) of the day's
// spend at KEYS[1], taking it to zero at most, and leaves a key that is not there
// (expired, evicted) alone: INCRBY would create it negative, a credit on
// the daily limit for a hold the store no longer held. The key keeps its
// expiry. Only Redis integers are compared: no amount goes through a Lua
// number.
var releaseScript = redis.NewScript(`
if KEYS[2] and redis.call('HDEL', KEYS[2], ARGV[2]) == 0 then return 0 end
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

// reserveScript is Reserve in one script: unless the hash KEYS[4] holds
// the Reserve of transaction ARGV[8] made after ARGV[14] (base 36), which
// it returns as {1, held} (an empty ARGV[8] is never held), it counts the attempt (luaAttempt), holds
// ARGV[10] of the day's spend at KEYS[2] (its expiry ARGV[11] ms), sets
// the location at KEYS[3] to ARGV[12] unless that is empty (its expiry
// ARGV[13] ms), asking for the one before, and keeps what it did in the
// hash as held, "at|attempts|total|minor|previous location" (ARGV[9],
// the time, in base 36), which it returns as {0, held} (with an empty
// ARGV[8] it keeps nothing). The hash expires
// ARGV[16] ms after its last change, and keeps ARGV[15] entries at most:
// a full one first forgets the entries made at ARGV[14] or before, then
// the oldest. The spend's new total is read back as the string Redis
// keeps, so no amount goes through a Lua number.
var reserveScript = redis.NewScript(luaAtOrBefore + `
local held = ARGV[8] ~= '' and redis.call('HGET', KEYS[4], ARGV[8])
if held and not at_or_before(string.match(held, '^[^|]*'), ARGV[14]) then
  return {1, held}
end
` + luaAttempt + `
redis.call('INCRBY', KEYS[2], ARGV[10])
redis.call('PEXPIRE', KEYS[2], ARGV[11])
local total = redis.call('GET', KEYS[2])
local prev = ''
if ARGV[12] ~= '' then
  prev = redis.call('SET', KEYS[3], ARGV[12], 'PX', ARGV[13], 'GET') or ''
end
held = ARGV[9] .. '|' .. attempts .. '|' .. total .. '|' .. ARGV[10] .. '|' .. prev
if ARGV[8] == '' then return {0, held} end
if redis.call('HLEN', KEYS[4]) >= tonumber(ARGV[15]) then
  local all = redis.call('HGETALL', KEYS[4])
  local left, oldest, oldestAt = #all / 2, nil, nil
  for i = 1, #all, 2 do
    local at = string.match(all[i + 1], '^[^|]*')
    if at_or_before(at, ARGV[14]) then
      redis.call('HDEL', KEYS[4], all[i])
      left = left - 1
    elseif oldestAt == nil or at_or_before(at, oldestAt) then
      oldest, oldestAt = all[i], at
    end
  end
  if left >= tonumber(ARGV[15]) then redis.call('HDEL', KEYS[4], oldest) end
end
redis.call('HSET', KEYS[4], ARGV[8], held)
redis.call('PEXPIRE', KEYS[4], ARGV[16])
return {0, held}
`)

func (s *RedisState) holdsKey(customer string) string { return s.prefix + "holds:" + customer }

func (s *RedisState) locationKey(customer string) string { return s.prefix + "location:" + customer }

// Reserve implements CustomerState: the attempt, the hold, whose new
// total less minor is the spend before it, and the location, in one
// script (reserveScript).
func (s *RedisState) Reserve(ctx context.Context, customer, txn, currency string, minor int64, now time.Time, window time.Duration, at *Point) (Reservation, error) {
	loc := ""
	if at != nil {
		loc = locationValue(*at)
	}
	keys := []string{s.attemptsKey(customer), s.spendKey(customer, currency, now), s.locationKey(customer), s.holdsKey(customer)}
	args := append(attemptArgs(now, window), txn, strconv.FormatInt(now.UnixNano(), 36), minor, (48 * time.Hour).Milliseconds(),
		loc, forgetAfter.Milliseconds(), strconv.FormatInt(now.Add(-holdKept).UnixNano(), 36), maxHoldsKept, holdKept.Milliseconds())
	got, err := reserveScript.Run(ctx, s.rdb, keys, args...).Slice()
	if err != nil {
		return Reservation{}, fmt.Errorf("redis state: reserve: %w", err)
	}
	held, _ := got[1].(string)
	res, ok := parseHeld(held)
	if !ok {
		return Reservation{}, fmt.Errorf("redis state: reserve: transaction %q holds %q", clip(txn), clip(held))
	}
	res.Again = got[0] == int64(1)
	return res, nil
}

// parseHeld reads a Reserve reserveScript kept.
func parseHeld(held string) (Reservation, bool) {
	f := strings.SplitN(held, "|", 5)
	if len(f) != 5 {
		return Reservation{}, false
	}
	at, err1 := strconv.ParseInt(f[0], 36, 64)
	attempts, err2 := strconv.Atoi(f[1])
	total, err3 := strconv.ParseInt(f[2], 10, 64)
	minor, err4 := strconv.ParseInt(f[3], 10, 64)
	if err := errors.Join(err1, err2, err3, err4); err != nil {
		return Reservation{}, false
	}
	res := Reservation{At: time.Unix(0, at).UTC(), Attempts: attempts, Spent: total - minor}
	if f[4] != "" {
		res.Prev, res.HasPrev = parseLocation(f[4], nil)
	}
	return res, true
}

// Release implements CustomerState.
func (s *RedisState) Release(ctx context.Context, customer, txn, currency string, minor int64, at time.Time) error {
	keys := []string{s.spendKey(customer, currency, at), s.holdsKey(customer)}
	if err := releaseScript.Run(ctx, s.rdb, keys, strconv.FormatInt(minor, 10), txn).Err(); err != nil {
		return fmt.Errorf("redis state: release spend: %w", err)
	}
	return nil
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
	return c.SetArgs(ctx, s.locationKey(customer), locationValue(p), redis.SetArgs{Get: true, TTL: forgetAfter})
}

// locationValue is how p is stored.
func locationValue(p Point) string {
	return strconv.FormatFloat(p.Lat, 'g', -1, 64) + " " + strconv.FormatFloat(p.Lon, 'g', -1, 64) + " " + strconv.FormatInt(p.At.UnixNano(), 10)
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
