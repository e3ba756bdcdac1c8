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

// attemptScript adds an attempt to a sorted set scored by time, drops the
// ones outside the window and all but the last ARGV[4] (maxAttemptsKept,
// as the other stores keep), and returns the count, atomically.
var attemptScript = redis.NewScript(`
local now = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
redis.call('ZADD', KEYS[1], now, ARGV[3])
redis.call('ZREMRANGEBYRANK', KEYS[1], 0, -tonumber(ARGV[4]) - 1)
redis.call('PEXPIRE', KEYS[1], math.ceil(window / 1000000))
return redis.call('ZCARD', KEYS[1])
`)

// Attempt implements CustomerState.
func (s *RedisState) Attempt(ctx context.Context, customer string, now time.Time, window time.Duration) (int, error) {
	// The member is unique by chance, not by the clock: attempts at one
	// instant, on one replica or several, are all counted.
	member := strconv.FormatInt(now.UnixNano(), 36) + ":" + strconv.FormatUint(rand.Uint64(), 36)
	n, err := attemptScript.Run(ctx, s.rdb, []string{s.prefix + "attempts:" + customer},
		now.UnixNano(), window.Nanoseconds(), member, maxAttemptsKept).Int()
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

// AddSpend implements CustomerState.
func (s *RedisState) AddSpend(ctx context.Context, customer, currency string, minor int64, now time.Time) error {
	key := s.spendKey(customer, currency, now)
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
// new total less minor is the spend before it.
func (s *RedisState) Reserve(ctx context.Context, customer, currency string, minor int64, now time.Time, window time.Duration) (int, int64, error) {
	n, err := s.Attempt(ctx, customer, now, window)
	if err != nil {
		return 0, 0, err
	}
	key := s.spendKey(customer, currency, now)
	var total *redis.IntCmd
	if _, err := s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		total = p.IncrBy(ctx, key, minor)
		p.Expire(ctx, key, 48*time.Hour)
		return nil
	}); err != nil {
		return 0, 0, fmt.Errorf("redis state: hold spend: %w", err)
	}
	return n, total.Val() - minor, nil
}

// Move implements CustomerState.
func (s *RedisState) Move(ctx context.Context, customer string, p Point) (Point, bool, error) {
	v := strconv.FormatFloat(p.Lat, 'g', -1, 64) + " " + strconv.FormatFloat(p.Lon, 'g', -1, 64) + " " + strconv.FormatInt(p.At.UnixNano(), 10)
	old, err := s.rdb.SetArgs(ctx, s.prefix+"location:"+customer, v, redis.SetArgs{Get: true, TTL: forgetAfter}).Result()
	if errors.Is(err, redis.Nil) {
		return Point{}, false, nil
	}
	if err != nil {
		return Point{}, false, fmt.Errorf("redis state: location: %w", err)
	}
	var lat, lon float64
	var at int64
	if _, err := fmt.Sscanf(old, "%g %g %d", &lat, &lon, &at); err != nil {
		return Point{}, false, nil // a value this service did not write: start afresh
	}
	return Point{Lat: lat, Lon: lon, At: time.Unix(0, at)}, true, nil
}
