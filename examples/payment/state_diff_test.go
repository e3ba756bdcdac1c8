package main

import (
	"context"
	"fmt"
	"hash/maphash"
	"math"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/internal/servers"
	"github.com/taipattern/taikit/tai"
)

// customerStores opens each kind of customer state, empty.
func customerStores(t *testing.T) map[string]CustomerState {
	t.Helper()
	opts, err := redis.ParseURL(servers.StartRedis(t).URL())
	require.NoError(t, err)
	rdb := redis.NewClient(opts)
	t.Cleanup(func() { _ = rdb.Close() })
	return map[string]CustomerState{
		"memory": NewMemoryState(0),
		"nats":   natsState(t, startJS(t)),
		"redis":  NewRedisState(rdb, "test:"),
	}
}

// stateStep is one call to a customer state, and what it answered.
type stateStep func(ctx context.Context, s CustomerState) (string, error)

func attemptStep(customer string, now time.Time, window time.Duration) stateStep {
	return func(ctx context.Context, s CustomerState) (string, error) {
		n, err := s.Attempt(ctx, customer, now, window)
		return fmt.Sprintf("attempt %s %v: %d", customer, now.Format(time.RFC3339Nano), n), err
	}
}

func reserveStep(customer, currency string, minor int64, now time.Time) stateStep {
	return reserveAtStep(customer, currency, minor, now, nil)
}

// reserveAtStep is reserveStep moving the customer to at as well.
func reserveAtStep(customer, currency string, minor int64, now time.Time, at *Point) stateStep {
	return func(ctx context.Context, s CustomerState) (string, error) {
		r, err := s.Reserve(ctx, customer, newTxn(), currency, minor, now, time.Minute, at)
		got := fmt.Sprintf("reserve %s %s %d %v: %d attempts, %d spent", customer, currency, minor, now.Format(time.RFC3339Nano), r.Attempts, r.Spent)
		if at != nil {
			got += fmt.Sprintf(", moved to %v %v %d from %v %v %v %d", at.Lat, at.Lon, at.At.UnixNano(), r.HasPrev, r.Prev.Lat, r.Prev.Lon, r.Prev.At.UnixNano())
		}
		return got, err
	}
}

func addSpendStep(customer, currency string, minor int64, now time.Time) stateStep {
	return func(ctx context.Context, s CustomerState) (string, error) {
		return fmt.Sprintf("add %s %s %d %v", customer, currency, minor, now.Format(time.RFC3339Nano)), s.AddSpend(ctx, customer, currency, minor, now)
	}
}

func moveStep(customer string, p Point) stateStep {
	return func(ctx context.Context, s CustomerState) (string, error) {
		prev, ok, err := s.Move(ctx, customer, p)
		return fmt.Sprintf("move %s to %v %v %d: from %v %v %v %d", customer, p.Lat, p.Lon, p.At.UnixNano(), ok, prev.Lat, prev.Lon, prev.At.UnixNano()), err
	}
}

func spentStep(customer, currency string, now time.Time) stateStep {
	return func(ctx context.Context, s CustomerState) (string, error) {
		v, err := s.Spent(ctx, customer, currency, now)
		return fmt.Sprintf("spent %s %s %v: %d", customer, currency, now.Format(time.RFC3339Nano), v), err
	}
}

// Every customer state answers a sequence of calls alike: the in-memory
// one, JetStream's and Redis's are interchangeable under the fraud rules.
func TestCustomerStatesAnswerAlike(t *testing.T) {
	stores := customerStores(t)
	ctx := context.Background()
	midnight := time.Date(2026, 11, 29, 0, 0, 0, 0, time.UTC)
	before := midnight.Add(-time.Nanosecond)

	for _, tc := range []struct {
		name  string
		steps []stateStep
	}{
		{"the velocity window's edges", []stateStep{
			attemptStep("v", midnight, time.Minute),
			attemptStep("v", midnight.Add(30*time.Second), time.Minute),
			attemptStep("v", midnight.Add(time.Minute), time.Minute), // the first is out: exactly a window ago
			attemptStep("v", midnight.Add(time.Minute+30*time.Second-time.Microsecond), time.Minute),
			attemptStep("v", midnight.Add(time.Minute+30*time.Second), time.Minute),
		}},
		{"the velocity window's edge within a microsecond", []stateStep{
			// Unix nanoseconds today need 61 bits: a float64 holds them
			// to 256 ns, and these fall on either side of one rounding.
			attemptStep("ns", midnight.Add(100*time.Nanosecond), time.Minute),
			attemptStep("ns", midnight.Add(time.Minute+50*time.Nanosecond), time.Minute),   // the first is in, by 50 ns
			attemptStep("ns", midnight.Add(time.Minute+100*time.Nanosecond), time.Minute),  // and out, exactly a window ago
			attemptStep("ns", midnight.Add(2*time.Minute+49*time.Nanosecond), time.Minute), // the second is in, by 1 ns
			attemptStep("ns", midnight.Add(2*time.Minute+100*time.Nanosecond), time.Minute),
		}},
		{"an attempt out of order", []stateStep{
			// Another replica, its clock a little behind, counts an
			// attempt after a later one.
			attemptStep("o", midnight, time.Minute),
			attemptStep("o", midnight.Add(50*time.Second), time.Minute),
			attemptStep("o", midnight.Add(10*time.Second), time.Minute),
			attemptStep("o", midnight.Add(65*time.Second), time.Minute),
			attemptStep("o", midnight.Add(105*time.Second), time.Minute),
			attemptStep("o", midnight.Add(111*time.Second), time.Minute),
		}},
		{"moves", []stateStep{
			moveStep("g", Point{Lat: 48.8566, Lon: 2.3522, At: midnight}),
			moveStep("g", Point{Lat: -33.8688, Lon: 151.2093, At: midnight.Add(time.Hour)}),
			moveStep("g", Point{Lat: 0.1 + 0.2, Lon: -180, At: midnight.Add(-time.Hour)}),
			moveStep("g", Point{Lat: 90, Lon: 180, At: midnight}),
		}},
		{"reserves with locations", []stateStep{
			reserveAtStep("l", "USD", 100, midnight, nil),
			reserveAtStep("l", "USD", 100, midnight.Add(time.Second), &Point{Lat: 48.8566, Lon: 2.3522, At: midnight.Add(time.Second)}),
			reserveAtStep("l", "USD", 100, midnight.Add(2*time.Second), nil), // no coordinates: the location stays
			moveStep("l", Point{Lat: -33.8688, Lon: 151.2093, At: midnight.Add(time.Hour)}),
			reserveAtStep("l", "EUR", 200, midnight.Add(2*time.Hour), &Point{Lat: 0.1 + 0.2, Lon: -180, At: midnight.Add(2 * time.Hour)}),
			moveStep("l", Point{Lat: 90, Lon: 180, At: midnight.Add(3 * time.Hour)}),
			spentStep("l", "USD", midnight.Add(3*time.Hour)),
		}},
		{"currencies mixed", []stateStep{
			reserveStep("m", "USD", 100, midnight),
			reserveStep("m", "EUR", 200, midnight),
			reserveStep("m", "JPY", 300, midnight),
			addSpendStep("m", "USD", 50, midnight),
			spentStep("m", "USD", midnight),
			spentStep("m", "EUR", midnight),
			spentStep("m", "JPY", midnight),
			spentStep("m", "GBP", midnight),
		}},
		{"the UTC day boundary", []stateStep{
			reserveStep("d", "USD", 400, before),
			reserveStep("d", "USD", 100, midnight),
			spentStep("d", "USD", midnight),
			addSpendStep("d", "USD", -400, before),
			spentStep("d", "USD", midnight.Add(time.Hour)),
		}},
		{"a day before 1970", []stateStep{
			reserveStep("1969", "USD", 5, time.Date(1969, 7, 20, 20, 17, 0, 0, time.UTC)),
			spentStep("1969", "USD", time.Date(1969, 7, 20, 23, 0, 0, 0, time.UTC)),
		}},
		{"a late write of the day before", []stateStep{
			// Another replica, its clock a little behind, books a
			// payment of the day before after one of today.
			addSpendStep("late", "USD", 300, midnight),
			addSpendStep("late", "EUR", 200, midnight),
			addSpendStep("late", "USD", 100, before),
			spentStep("late", "USD", midnight),
			spentStep("late", "EUR", midnight),
			reserveStep("late", "USD", 50, midnight),
		}},
		{"past the attempts kept", func() []stateStep {
			var steps []stateStep
			for i := range maxAttemptsKept + 4 {
				steps = append(steps, attemptStep("many", midnight.Add(time.Duration(i)*time.Millisecond), time.Minute))
			}
			return steps
		}()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			answers := map[string][]string{}
			for name, s := range stores {
				for _, step := range tc.steps {
					got, err := step(ctx, s)
					require.NoError(t, err, "%s: %s", name, got)
					answers[name] = append(answers[name], got)
				}
			}
			assert.Equal(t, answers["memory"], answers["redis"], "memory and redis")
			assert.Equal(t, answers["memory"], answers["nats"], "memory and nats")
		})
	}
}

// Payments of one customer judged at once are each counted, in every
// store, even at the same instant: the velocity limit cannot be passed by
// racing requests.
func TestCustomerStatesCountRacingAttempts(t *testing.T) {
	const racers = 20
	now := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	for name, s := range customerStores(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			var wg sync.WaitGroup
			seen := make([]int, racers)
			for i := range racers {
				wg.Go(func() {
					r, err := s.Reserve(ctx, "race", newTxn(), "USD", 100, now, time.Minute, nil)
					assert.NoError(t, err)
					seen[i] = r.Attempts
				})
			}
			wg.Wait()
			n, err := s.Attempt(ctx, "race", now, time.Minute)
			require.NoError(t, err)
			assert.Equal(t, racers+1, n, "every attempt counted")
			assert.ElementsMatch(t, seq(1, racers), seen, "each racer saw its own count")
			spent, err := s.Spent(ctx, "race", "USD", now)
			require.NoError(t, err)
			assert.EqualValues(t, racers*100, spent)
		})
	}
}

func seq(from, to int) []int {
	var s []int
	for i := from; i <= to; i++ {
		s = append(s, i)
	}
	return s
}

// The fraud rules decide alike on every store: one sequence of payments
// (at the velocity limit and past it, across a UTC midnight, in mixed
// currencies, moving fast) judged by the Go rules and by the built-in
// rule file, on each store, gives the same scores and reasons.
func TestFraudRulesDecideAlikeOnEveryStore(t *testing.T) {
	midnight := time.Date(2026, 11, 29, 0, 0, 0, 0, time.UTC)
	type payment struct {
		after    time.Duration
		customer string
		minor    int64
		currency string
		lat, lon float64
	}
	var seqn []payment
	for i := range 7 { // five is the limit: the sixth and seventh are over it
		seqn = append(seqn, payment{-30*time.Second + time.Duration(i)*5*time.Second, "v", 100_00, "USD", 0, 0})
	}
	seqn = append(seqn,
		payment{-time.Minute, "d", 4_900_00, "USD", 0, 0},
		payment{-time.Second, "d", 200_00, "USD", 0, 0},
		payment{-time.Second, "d", 200_00, "EUR", 0, 0},
		payment{0, "d", 4_900_00, "USD", 0, 0},
		payment{time.Second, "d", 200_00, "USD", 0, 0},
		payment{2 * time.Second, "d", 900_000, "JPY", 0, 0},
		payment{0, "g", 100, "USD", 48.8566, 2.3522},
		payment{time.Hour, "g", 100, "USD", 51.5074, -0.1278},
		payment{2 * time.Hour, "g", 100, "USD", 40.7128, -74.0060},
	)
	byRules := map[string][]string{}
	for _, rules := range []string{fraudRulesGo, fraudRulesEmbedded} {
		t.Run(rules, func(t *testing.T) {
			answers := map[string][]string{}
			defer func() { byRules[rules] = answers["memory"] }()
			for name, state := range customerStores(t) {
				now := midnight
				clock := func() time.Time { return now }
				var pol tai.Policy[Payment]
				if rules == fraudRulesGo {
					p, err := NewFraudPolicy(FraudConfig{}, state, clock)
					require.NoError(t, err)
					pol = p
				} else {
					env, err := NewFraudEnv(FraudConfig{}, state, clock)
					require.NoError(t, err)
					set, err := compileFraudRules(env, defaultFraudRules)
					require.NoError(t, err)
					pol = set
				}
				ctx := context.Background()
				for i, p := range seqn {
					now = midnight.Add(p.after)
					pay := Payment{Amount: float64(p.minor) / math.Pow10(minorUnits[p.currency]), Minor: p.minor, Currency: p.currency,
						CustomerID: p.customer, MerchantID: "m", HasCoords: p.lat != 0, Lat: p.lat, Lon: p.lon}
					d, err := pol.Evaluate(ctx, tai.Signal[Payment]{ID: fmt.Sprint(i), Kind: "payment", Key: p.customer, Payload: pay})
					require.NoError(t, err)
					answers[name] = append(answers[name], fmt.Sprintf("%d %s: %v %.4f %s", i, p.customer, d.Verdict, d.Score, d.Reason))
				}
			}
			assert.Equal(t, answers["memory"], answers["redis"], "memory and redis")
			assert.Equal(t, answers["memory"], answers["nats"], "memory and nats")
		})
	}
	// Both hold each payment's amount as they judge it (neither's hold is
	// given back here): they read the same day's totals.
	assert.Equal(t, byRules[fraudRulesGo], byRules[fraudRulesEmbedded], "the Go rules and the rule file")
}

// sharedReplicas gives two replicas of each shared customer state, by
// name: two NATSStates on one JetStream, two RedisStates on one Redis.
func sharedReplicas(t *testing.T) map[string][2]CustomerState {
	js := startJS(t)
	opts, err := redis.ParseURL(servers.StartRedis(t).URL())
	require.NoError(t, err)
	redisReplica := func() CustomerState {
		rdb := redis.NewClient(opts)
		t.Cleanup(func() { _ = rdb.Close() })
		return NewRedisState(rdb, "test:")
	}
	return map[string][2]CustomerState{
		"nats":  {natsState(t, js), natsState(t, js)},
		"redis": {redisReplica(), redisReplica()},
	}
}

// Replicas sharing a store count every attempt of one customer made at
// once, half through each: the velocity limit holds across replicas.
func TestSharedStatesCountRacingAttemptsAcrossReplicas(t *testing.T) {
	const racers = 20
	now := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	for name, replicas := range sharedReplicas(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			var wg sync.WaitGroup
			seen := make([]int, racers)
			for i := range racers {
				wg.Go(func() {
					r, err := replicas[i%2].Reserve(ctx, "race", newTxn(), "USD", 100, now, time.Minute, nil)
					assert.NoError(t, err)
					seen[i] = r.Attempts
				})
			}
			wg.Wait()
			assert.ElementsMatch(t, seq(1, racers), seen, "each racer saw its own count")
			n, err := replicas[1].Attempt(ctx, "race", now, time.Minute)
			require.NoError(t, err)
			assert.Equal(t, racers+1, n, "every attempt counted")
		})
	}
}

// Just after midnight a replica whose clock is a little behind another's
// still reads and books the day before, in each shared store: the day's
// spend it sees is that day's, not nothing, its payments and their
// releases count on that day, and the new day's spend is left alone.
func TestSharedStatesKeepTheDayBeforeForAClockBehind(t *testing.T) {
	midnight := time.Date(2026, 11, 29, 0, 0, 0, 0, time.UTC)
	behind := midnight.Add(-time.Millisecond) // the clock of replica b
	for name, replicas := range sharedReplicas(t) {
		t.Run(name, func(t *testing.T) {
			a, b, ctx := replicas[0], replicas[1], context.Background()
			_, err := b.Reserve(ctx, "skew", newTxn(), "USD", 400, behind.Add(-time.Minute), time.Minute, nil)
			require.NoError(t, err)
			r, err := a.Reserve(ctx, "skew", newTxn(), "USD", 300, midnight, time.Minute, nil)
			require.NoError(t, err)
			assert.Zero(t, r.Spent, "a new day for a")

			r, err = b.Reserve(ctx, "skew", newTxn(), "USD", 200, behind, time.Minute, nil)
			require.NoError(t, err)
			assert.EqualValues(t, 400, r.Spent, "b's day is still the day before")
			v, err := a.Spent(ctx, "skew", "USD", midnight.Add(time.Second))
			require.NoError(t, err)
			assert.EqualValues(t, 300, v, "b's payment is on b's day")

			require.NoError(t, b.AddSpend(ctx, "skew", "USD", -200, behind))
			v, err = b.Spent(ctx, "skew", "USD", behind)
			require.NoError(t, err)
			assert.EqualValues(t, 400, v, "the hold given back to the day it was taken on")
			r, err = a.Reserve(ctx, "skew", newTxn(), "USD", 50, midnight.Add(2*time.Second), time.Minute, nil)
			require.NoError(t, err)
			assert.EqualValues(t, 300, r.Spent, "the new day's spend is left alone")
		})
	}
}

// forgetCustomer makes s forget the customer, as each store does on its
// own: the memory state past its byte limit, the JetStream bucket
// dropping its oldest entries, Redis evicting or expiring a key.
func forgetCustomer(t *testing.T, s CustomerState, customer, currency string, day time.Time) {
	t.Helper()
	ctx := context.Background()
	switch s := s.(type) {
	case *MemoryState:
		sh := &s.shards[maphash.String(s.seed, customer)%uint64(len(s.shards))]
		sh.mu.Lock()
		delete(sh.customers, customer)
		sh.mu.Unlock()
	case *NATSState:
		require.NoError(t, s.kv.Delete(ctx, customerKey(customer)))
		s.keep(customer, customerEntry{}, 0)
	case *RedisState:
		require.NoError(t, s.rdb.Del(ctx, s.spendKey(customer, currency, day)).Err())
	default:
		t.Fatalf("no way to forget a customer of %T", s)
	}
}

// A hold given back after its customer was forgotten (evicted, expired)
// never takes the day's spend below zero, in any store: a negative spend
// would let the customer pay that much more than the daily limit.
func TestCustomerStatesReleaseNoSpendBelowZero(t *testing.T) {
	day := time.Date(2026, 11, 28, 9, 0, 0, 0, time.UTC)
	for name, s := range customerStores(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			spent := func(customer string) int64 {
				t.Helper()
				v, err := s.Spent(ctx, customer, "USD", day.Add(time.Minute))
				require.NoError(t, err)
				return v
			}

			// Forgotten between the hold and its release.
			_, err := s.Reserve(ctx, "gone", newTxn(), "USD", 400_000, day, time.Minute, nil)
			require.NoError(t, err)
			forgetCustomer(t, s, "gone", "USD", day)
			require.NoError(t, s.AddSpend(ctx, "gone", "USD", -400_000, day))
			assert.Zero(t, spent("gone"), "a release of a hold forgotten")
			r, err := s.Reserve(ctx, "gone", newTxn(), "USD", 100, day.Add(time.Second), time.Minute, nil)
			require.NoError(t, err)
			assert.Zero(t, r.Spent, "the next payment sees no credit")

			// Forgotten, then held again, then the first hold released.
			_, err = s.Reserve(ctx, "back", newTxn(), "USD", 400_000, day, time.Minute, nil)
			require.NoError(t, err)
			forgetCustomer(t, s, "back", "USD", day)
			_, err = s.Reserve(ctx, "back", newTxn(), "USD", 100, day.Add(time.Second), time.Minute, nil)
			require.NoError(t, err)
			require.NoError(t, s.AddSpend(ctx, "back", "USD", -400_000, day))
			assert.GreaterOrEqual(t, spent("back"), int64(0), "a release after the customer came back")

			// A release in another currency than the one kept inline.
			_, err = s.Reserve(ctx, "two", newTxn(), "EUR", 100, day, time.Minute, nil)
			require.NoError(t, err)
			_, err = s.Reserve(ctx, "two", newTxn(), "USD", 50, day, time.Minute, nil)
			require.NoError(t, err)
			require.NoError(t, s.AddSpend(ctx, "two", "USD", -500, day))
			require.NoError(t, s.AddSpend(ctx, "two", "EUR", -500, day))
			assert.Zero(t, spent("two"))
			v, err := s.Spent(ctx, "two", "EUR", day)
			require.NoError(t, err)
			assert.Zero(t, v)

			// A release that fits leaves the rest.
			_, err = s.Reserve(ctx, "kept", newTxn(), "USD", 700, day, time.Minute, nil)
			require.NoError(t, err)
			require.NoError(t, s.AddSpend(ctx, "kept", "USD", -200, day))
			assert.EqualValues(t, 500, spent("kept"))
		})
	}
}

// A Reserve repeated with its transaction ID — the payment run again by a
// takeover after its process died, the money perhaps moved — returns what
// the first returned and changes nothing, in every store: no second
// attempt, hold or move, within the velocity window or after it, until
// the transaction's hold is released; and each store keeps the latest
// maxHoldsKept transactions of a customer, no more.
func TestCustomerStatesReserveOncePerTransaction(t *testing.T) {
	day := time.Date(2026, 11, 28, 9, 0, 0, 0, time.UTC)
	paris := Point{Lat: 48.8566, Lon: 2.3522, At: day}
	for name, s := range customerStores(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			reserve := func(txn string, minor int64, now time.Time, at *Point) Reservation {
				t.Helper()
				r, err := s.Reserve(ctx, "once", txn, "USD", minor, now, time.Minute, at)
				require.NoError(t, err)
				return r
			}
			spent := func(now time.Time) int64 {
				t.Helper()
				v, err := s.Spent(ctx, "once", "USD", now)
				require.NoError(t, err)
				return v
			}
			a, b, c := newTxn(), newTxn(), newTxn()
			first := reserve(a, 1000, day, &paris)
			assert.Equal(t, Reservation{At: day, Attempts: 1}, first)
			berlin := Point{Lat: 52.52, Lon: 13.405, At: day.Add(time.Second)}
			second := reserve(b, 300, day.Add(time.Second), &berlin)
			assert.Equal(t, 2, second.Attempts)
			assert.EqualValues(t, 1000, second.Spent)

			// Run again within the window, from elsewhere: the first
			// Reserve, and nothing changed.
			rome := Point{Lat: 41.9, Lon: 12.5, At: day.Add(2 * time.Second)}
			again := reserve(a, 1000, day.Add(2*time.Second), &rome)
			assert.Equal(t, first.Attempts, again.Attempts)
			assert.Equal(t, first.Spent, again.Spent)
			assert.Equal(t, first.HasPrev, again.HasPrev)
			assert.True(t, again.At.Equal(day), "the hold's time: %v", again.At)
			assert.True(t, again.Again, "the first's hold, returned again")
			assert.False(t, first.Again)
			third := reserve(c, 50, day.Add(3*time.Second), nil)
			assert.Equal(t, 3, third.Attempts, "no second attempt counted")
			assert.EqualValues(t, 1300, third.Spent, "no second hold")
			fourth := reserve(newTxn(), 0, day.Add(4*time.Second), &paris)
			require.True(t, fourth.HasPrev)
			assert.Equal(t, berlin.Lat, fourth.Prev.Lat, "not moved to Rome")

			// Run again later, the attempt out of the window: still the
			// first, and nothing changed.
			later := day.Add(3 * time.Hour)
			again = reserve(b, 300, later, nil)
			assert.Equal(t, 2, again.Attempts)
			assert.EqualValues(t, 1000, again.Spent)
			require.True(t, again.HasPrev)
			assert.Equal(t, paris.Lat, again.Prev.Lat)
			assert.True(t, again.Prev.At.Equal(paris.At))
			assert.EqualValues(t, 1350, spent(later))

			// Released (not charged), it holds afresh when run again.
			require.NoError(t, s.Release(ctx, "once", a, "USD", 1000, first.At))
			assert.EqualValues(t, 350, spent(later))
			fresh := reserve(a, 1000, later, nil)
			assert.Equal(t, 1, fresh.Attempts)
			assert.EqualValues(t, 350, fresh.Spent)
			assert.EqualValues(t, 1350, spent(later))
			// A day after, it is forgotten, as its Idempotency-Key is.
			next := later.Add(holdKept)
			assert.Equal(t, Reservation{At: next, Attempts: 1}, reserve(a, 1000, next, nil))

			// Bounded: the oldest transactions are forgotten first.
			txns := make([]string, maxHoldsKept+1)
			for i := range txns {
				txns[i] = newTxn()
				reserve(txns[i], 1, next.Add(time.Duration(i+1)*time.Second), nil)
			}
			switch s := s.(type) {
			case *MemoryState:
				sh := &s.shards[maphash.String(s.seed, "once")%uint64(len(s.shards))]
				sh.mu.Lock()
				r := sh.customers["once"]
				assert.Len(t, r.holds, maxHoldsKept)
				assert.EqualValues(t, recordBytes("once", &r), sh.bytes, "the estimate counts the holds")
				sh.mu.Unlock()
			case *NATSState:
				e, _, err := s.load(ctx, "once")
				require.NoError(t, err)
				assert.Len(t, e.Holds, maxHoldsKept)
			case *RedisState:
				n, err := s.rdb.HLen(ctx, s.holdsKey("once")).Result()
				require.NoError(t, err)
				assert.EqualValues(t, maxHoldsKept, n)
			}
			end := next.Add(time.Duration(len(txns)+1) * time.Second)
			last := reserve(txns[len(txns)-1], 1, end, nil)
			assert.True(t, last.At.Before(end), "the latest is remembered")
			oldest := reserve(txns[0], 1, end, nil)
			assert.True(t, oldest.At.Equal(end), "the oldest is forgotten: held afresh")
		})
	}
}

// Release gives back only a hold the store holds, in every store: the
// Reserve of a payment whose answer was lost may not have been stored,
// and its release must not give back what was never held (a credit on
// the daily limit); a Release made twice gives back once.
func TestCustomerStatesReleaseOnlyWhatTheyHold(t *testing.T) {
	day := time.Date(2026, 11, 28, 9, 0, 0, 0, time.UTC)
	for name, s := range customerStores(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			spent := func() int64 {
				t.Helper()
				v, err := s.Spent(ctx, "held", "USD", day)
				require.NoError(t, err)
				return v
			}
			require.NoError(t, s.AddSpend(ctx, "held", "USD", 5000, day))
			held := newTxn()
			_, err := s.Reserve(ctx, "held", held, "USD", 700, day, time.Minute, nil)
			require.NoError(t, err)
			require.EqualValues(t, 5700, spent())

			require.NoError(t, s.Release(ctx, "held", newTxn(), "USD", 300, day), "a Reserve never stored")
			assert.EqualValues(t, 5700, spent(), "nothing given back for a hold not held")
			require.NoError(t, s.Release(ctx, "held", held, "USD", 700, day))
			assert.EqualValues(t, 5000, spent())
			require.NoError(t, s.Release(ctx, "held", held, "USD", 700, day), "again")
			assert.EqualValues(t, 5000, spent(), "given back once")
		})
	}
}
