package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"net/http"
	"slices"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/tai"
)

func TestHaversineKnownDistances(t *testing.T) {
	for _, tc := range []struct {
		name                   string
		lat1, lon1, lat2, lon2 float64
		km                     float64
	}{
		{"Berlin to Paris", 52.5200, 13.4050, 48.8566, 2.3522, 878},
		{"London to New York", 51.5074, -0.1278, 40.7128, -74.0060, 5570},
		{"a quarter of the equator", 0, 0, 0, 90, 10007.5},
		{"pole to pole", 90, 0, -90, 0, 20015.1},
		{"across the antimeridian", 0, 179.5, 0, -179.5, 111.2},
		{"nowhere", 10, 10, 10, 10, 0},
	} {
		assert.InDelta(t, tc.km, haversineKm(tc.lat1, tc.lon1, tc.lat2, tc.lon2), tc.km*0.005+0.1, tc.name)
	}
}

// A customer state that fails fails the evaluation: the rules never run
// blind and pass a payment they could not check. Evaluated without the
// service's per-payment hold, each rule that reads the state asks it: the
// state fails at the first, second or third (velocity, daily amount,
// travel), and each fails the evaluation.
func TestFraudFailsClosedOnState(t *testing.T) {
	for failAt, rule := range []string{"velocity", "daily_amount", "impossible_travel"} {
		t.Run(rule, func(t *testing.T) {
			state := &reserveFailing{CustomerState: NewMemoryState(0), failAt: failAt}
			pol, err := NewFraudPolicy(FraudConfig{}, state, nil)
			require.NoError(t, err)
			p := Payment{Amount: 10, Minor: 1000, Currency: "USD", CustomerID: "c", MerchantID: "m", HasCoords: true, Lat: 1, Lon: 2}
			_, err = pol.Evaluate(context.Background(), tai.Signal[Payment]{ID: newTxn(), Kind: "payment", Key: "c", Payload: p})
			require.Error(t, err)
			assert.True(t, errors.Is(err, errStateDown), "%v", err)
			assert.Contains(t, err.Error(), `rule "`+rule+`"`)
		})
	}
}

// reserveFailing is a customer state whose Reserve fails at its call
// failAt (from 0) and succeeds before.
type reserveFailing struct {
	CustomerState
	calls, failAt int
}

func (s *reserveFailing) Reserve(ctx context.Context, c, txn, cur string, minor int64, now time.Time, w time.Duration, at *Point) (Reservation, error) {
	s.calls++
	if s.calls-1 == s.failAt {
		return Reservation{}, errStateDown
	}
	return s.CustomerState.Reserve(ctx, c, txn, cur, minor, now, w, at)
}

// The Go rules count a payment once however many of them read the
// customer state, and once however often it is judged under its
// transaction ID: its attempt, its hold on the day's spend and its move.
func TestGoRulesReserveOncePerTransaction(t *testing.T) {
	ctx := context.Background()
	t0 := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	state := NewMemoryState(0)
	pol, err := NewFraudPolicy(FraudConfig{}, state, func() time.Time { return t0 })
	require.NoError(t, err)
	sig := tai.Signal[Payment]{ID: newTxn(), Kind: "payment", Key: "c", Payload: Payment{Amount: 10, Minor: 1000,
		Currency: "USD", CustomerID: "c", MerchantID: "m", HasCoords: true, Lat: 48.85, Lon: 2.35}}
	for range 3 {
		d, err := pol.Evaluate(ctx, sig)
		require.NoError(t, err)
		assert.Equal(t, tai.Allow, d.Verdict)
	}
	n, err := state.Attempt(ctx, "c", t0, time.Minute)
	require.NoError(t, err)
	assert.Equal(t, 2, n, "the payment's attempt and this one")
	spent, err := state.Spent(ctx, "c", "USD", t0)
	require.NoError(t, err)
	assert.EqualValues(t, 1000, spent, "held once")
}

// In the service, which gives each payment a spendHold, the Go rules that
// read the customer state share the payment's one Reserve: one change of
// the state (one write to a shared store) a payment, with coordinates or
// without, and its hold the one the service gives back or keeps.
func TestGoRulesShareThePaymentsReserve(t *testing.T) {
	at := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	state := &countingState{CustomerState: NewMemoryState(0)}
	pol, err := NewFraudPolicy(FraudConfig{}, state, func() time.Time { return at })
	require.NoError(t, err)
	for _, coords := range []bool{false, true} {
		var hold spendHold
		ctx := context.WithValue(context.Background(), spendHoldKey{}, &hold)
		sig := tai.Signal[Payment]{ID: newTxn(), Kind: "payment", Key: "c", Payload: Payment{Amount: 10, Minor: 1000,
			Currency: "USD", CustomerID: "c", MerchantID: "m", HasCoords: coords, Lat: 48.85, Lon: 2.35}}
		before := state.changes.Load()
		d, err := pol.Evaluate(ctx, sig)
		require.NoError(t, err)
		assert.Equal(t, tai.Allow, d.Verdict)
		assert.EqualValues(t, 1, state.changes.Load()-before, "changes of one payment, coordinates=%v", coords)
		h, held := hold.taken()
		require.True(t, held, "the payment's hold")
		assert.Equal(t, heldSpend{customer: "c", currency: "USD", minor: 1000, at: at}, h)
	}
}

// The travel rule at its edges: a move shorter than MinDistanceKm is
// noise, one just under the limit speed is fast but possible (flagged),
// one just over is impossible. (TestImpossibleTravelAtTheLimits takes
// each limit exactly, by setting it from the distance the rule computes.)
func TestImpossibleTravelEdges(t *testing.T) {
	ctx := context.Background()
	t0 := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	now := t0
	state := NewMemoryState(0)
	pol, err := NewFraudPolicy(FraudConfig{MinDistanceKm: 100, MaxSpeedKmh: 1000}, state, func() time.Time { return now })
	require.NoError(t, err)
	score := func(customer string, lat, lon float64) float64 {
		t.Helper()
		d, err := pol.Evaluate(ctx, tai.Signal[Payment]{ID: newTxn(), Kind: "payment", Key: customer,
			Payload: Payment{Amount: 1, Minor: 100, Currency: "USD", CustomerID: customer, MerchantID: "m", HasCoords: true, Lat: lat, Lon: lon}})
		require.NoError(t, err)
		return d.Score
	}
	// Along the equator one degree of longitude is d km.
	d := haversineKm(0, 0, 0, 1)
	deg := func(km float64) float64 { return km / d }

	score("short", 0, 0)
	now = now.Add(time.Second)
	assert.Zero(t, score("short", 0, deg(99)), "99 km in a second: under the minimum distance, noise")

	for _, tc := range []struct {
		name  string
		kmh   float64
		score float64
	}{
		{"just under half the limit", 499.99, 0},
		{"just over half", 500.01, 0.3},
		{"just under the limit", 999.99, 0.3},
		{"just over the limit", 1000.01, 0.6},
	} {
		now = t0
		score(tc.name, 0, 0)
		now = t0.Add(time.Hour)
		assert.InDelta(t, tc.score, score(tc.name, 0, deg(tc.kmh)), 1e-9, tc.name)
	}
}

// TestQuickStart replays the seed's quick-start scenarios against a
// service with default flags.
func TestQuickStart(t *testing.T) {
	ts := startService(t, testConfig(t))
	assert.Equal(t, http.StatusOK, ts.do(t, http.MethodGet, "/health", nil).Code)

	good := ts.do(t, http.MethodPost, "/payment", `{"amount": 50.00, "customer_id": "cust_good", "currency": "USD", "merchant_id": "merchant_1"}`)
	require.Equal(t, http.StatusOK, good.Code, string(good.Raw))
	assert.Equal(t, StatusSuccess, good.str("status"))

	black := ts.do(t, http.MethodPost, "/payment", `{"amount": 100.00, "customer_id": "cust_blacklist", "currency": "USD", "merchant_id": "merchant_1"}`)
	assert.Equal(t, StatusFraudBlocked, black.str("status"), string(black.Raw))
	assert.Equal(t, 1.0, black.Body["fraud_score"])

	big := ts.do(t, http.MethodPost, "/payment", `{"amount": 10000.00, "customer_id": "cust_123", "currency": "USD", "merchant_id": "merchant_1"}`)
	require.Equal(t, http.StatusOK, big.Code, string(big.Raw))
	assert.Equal(t, StatusSuccess, big.str("status"), "flagged, and charged")
	score, _ := big.Body["fraud_score"].(float64)
	assert.True(t, score >= 0.3 && score <= 0.4, "fraud_score %v in [0.3, 0.4]", score)

	statuses := map[string]int{}
	for range 10 {
		r := ts.do(t, http.MethodPost, "/payment", `{"amount": 10.00, "customer_id": "cust_rapid", "currency": "USD", "merchant_id": "merchant_1"}`)
		statuses[r.str("status")]++
	}
	assert.Positive(t, statuses[StatusSuccess], "%v", statuses)
	assert.Equal(t, 10, statuses[StatusSuccess]+statuses[StatusRateLimited], "the rest refused by the limit: %v", statuses)
	assert.Positive(t, statuses[StatusRateLimited], "%v", statuses)
}

func TestParseBlacklist(t *testing.T) {
	b, err := ParseBlacklist(" customer:cust_9, merchant:merc_1 ,,country:kp, ")
	require.NoError(t, err)
	assert.Equal(t, map[string]bool{"cust_9": true}, b.Customers)
	assert.Equal(t, map[string]bool{"merc_1": true}, b.Merchants)
	assert.Equal(t, map[string]bool{"KP": true}, b.Countries, "countries in upper case")

	// Space around the colon is no part of the kind or the value.
	b, err = ParseBlacklist("customer : cust_7,country :de")
	require.NoError(t, err)
	assert.Equal(t, map[string]bool{"cust_7": true}, b.Customers)
	assert.Equal(t, map[string]bool{"DE": true}, b.Countries)

	b, err = ParseBlacklist("")
	require.NoError(t, err)
	assert.Empty(t, b.Customers)
	assert.Empty(t, b.Merchants)
	assert.Empty(t, b.Countries)

	for _, tc := range []struct{ in, want string }{
		{"customer", `blacklist entry "customer" is not kind:value`},
		{"customer:", `blacklist entry "customer:" is not kind:value`},
		{"merchant:m,country:", `blacklist entry "country:" is not kind:value`},
		{"planet:mars", `blacklist entry "planet:mars": kind must be customer, merchant or country`},
		{"Customer:c", `blacklist entry "Customer:c": kind must be customer, merchant or country`},
	} {
		_, err := ParseBlacklist(tc.in)
		assert.EqualError(t, err, tc.want, tc.in)
	}
}

// NewFraudPolicy rejects a configuration it cannot apply, naming the
// field and the value, and takes the values at the edge of what it
// accepts.
func TestFraudConfigLimits(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  FraudConfig
		want string
	}{
		{"velocity limit", FraudConfig{VelocityLimit: -1}, "fraud: velocity limit -1 must be at least 1"},
		{"velocity limit past what the state counts", FraudConfig{VelocityLimit: maxAttemptsKept}, "fraud: velocity limit 256 must be below 256, the attempts a customer's state counts"},
		{"velocity window", FraudConfig{VelocityWindow: time.Second - time.Nanosecond}, "fraud: velocity window 999.999999ms must be at least 1s"},
		{"velocity window past what the state keeps", FraudConfig{VelocityWindow: forgetAfter + time.Second}, "fraud: velocity window 25h0m1s must be at most 25h0m0s, how long a customer's state is kept when idle"},
		{"negative amount", FraudConfig{MaxAmount: -1}, "fraud: max amount -1 must be a positive number"},
		{"infinite amount", FraudConfig{MaxAmount: math.Inf(1)}, "fraud: max amount +Inf must be a positive number"},
		{"NaN amount", FraudConfig{MaxAmount: math.NaN()}, "fraud: max amount NaN must be a positive number"},
		{"negative daily", FraudConfig{MaxDaily: -1}, "fraud: max daily amount -1 must be a positive number"},
		{"infinite daily", FraudConfig{MaxDaily: math.Inf(1)}, "fraud: max daily amount +Inf must be a positive number"},
		{"negative speed", FraudConfig{MaxSpeedKmh: -1}, "fraud: max speed -1 km/h must be a positive number"},
		{"infinite speed", FraudConfig{MaxSpeedKmh: math.Inf(1)}, "fraud: max speed +Inf km/h must be a positive number"},
		{"negative distance", FraudConfig{MinDistanceKm: -0.5}, "fraud: min distance -0.5 km must not be negative"},
		{"NaN distance", FraudConfig{MinDistanceKm: math.NaN()}, "fraud: min distance NaN km must not be negative"},
	} {
		pol, err := NewFraudPolicy(tc.cfg, NewMemoryState(0), nil)
		assert.EqualError(t, err, tc.want, tc.name)
		assert.Nil(t, pol, tc.name)
	}

	pol, err := NewFraudPolicy(FraudConfig{}, nil, nil)
	assert.EqualError(t, err, "fraud: no customer state", "a policy without state would fail on its first payment")
	assert.Nil(t, pol)

	pol, err = NewFraudPolicy(FraudConfig{VelocityLimit: 1, VelocityWindow: time.Second, MaxAmount: 0.01, MaxDaily: 0.01, MaxSpeedKmh: 0.01, MinDistanceKm: 0.01}, NewMemoryState(0), nil)
	require.NoError(t, err, "the smallest values accepted")
	require.NotNil(t, pol)

	_, deny := pol.Thresholds()
	assert.Equal(t, 0.5, deny, "the default deny threshold")

	_, err = NewFraudPolicy(FraudConfig{VelocityWindow: forgetAfter}, NewMemoryState(0), nil)
	require.NoError(t, err, "the longest velocity window accepted")

	// The largest velocity limit fires on the attempt after it.
	now := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	pol, err = NewFraudPolicy(FraudConfig{VelocityLimit: maxAttemptsKept - 1}, NewMemoryState(0), func() time.Time { return now })
	require.NoError(t, err)
	p := Payment{Amount: 1, Minor: 100, Currency: "USD", CustomerID: "c", MerchantID: "m"}
	for range maxAttemptsKept - 1 {
		require.Zero(t, fraudScore(t, pol, p))
	}
	assert.InDelta(t, 0.6, fraudScore(t, pol, p), 1e-9, "one attempt over the limit")
	pol, err = NewFraudPolicy(FraudConfig{Deny: 0.7, Review: 0.2}, NewMemoryState(0), nil)
	require.NoError(t, err)
	review, deny := pol.Thresholds()
	assert.Equal(t, 0.2, review)
	assert.Equal(t, 0.7, deny, "a deny threshold set is kept")
}

// fraudScore evaluates p for its customer at the policy's clock and
// returns the score.
func fraudScore(t *testing.T, pol *tai.Scored[Payment], p Payment) float64 {
	t.Helper()
	d, err := pol.Evaluate(context.Background(), tai.Signal[Payment]{ID: newTxn(), Kind: "payment", Key: p.CustomerID, Payload: p})
	require.NoError(t, err)
	return d.Score
}

// Each threshold of the rules at its exact value, and just past it: a
// limit is the most that passes.
func TestFraudThresholdsAtTheirEdges(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	state := NewMemoryState(0)
	pol, err := NewFraudPolicy(FraudConfig{
		Blacklist:     Blacklist{Countries: map[string]bool{"KP": true}},
		VelocityLimit: 3, MaxAmount: 100, MaxDaily: 500,
	}, state, func() time.Time { return now })
	require.NoError(t, err)
	usd := func(customer string, amount float64) Payment {
		return Payment{Amount: amount, Minor: int64(math.Round(amount * 100)), Currency: "USD", CustomerID: customer, MerchantID: "m"}
	}

	t.Run("velocity", func(t *testing.T) {
		for i := 1; i <= 3; i++ {
			assert.Zero(t, fraudScore(t, pol, usd("fast", 1)), "attempt %d of a limit of 3", i)
		}
		assert.InDelta(t, 0.6, fraudScore(t, pol, usd("fast", 1)), 1e-9, "the fourth attempt")
	})

	t.Run("amount", func(t *testing.T) {
		for _, tc := range []struct {
			amount, score float64
		}{
			{0.8 * 100, 0}, // exactly 80% of the limit: not near it yet
			{math.Nextafter(80, 100), 0.15},
			{100, 0.15}, // exactly the limit
			{100.01, 0.3},
			{4 * 100, 0.3}, // exactly four times
			{400.01, 0.6},
		} {
			// A customer each: no attempts or spend of another case count.
			customer := fmt.Sprintf("amount-%v", tc.amount)
			assert.InDelta(t, tc.score, fraudScore(t, pol, usd(customer, tc.amount)), 1e-9, "amount %v", tc.amount)
		}
	})

	t.Run("daily amount", func(t *testing.T) {
		// 450.00 spent today; the limit is 500.00 a day.
		require.NoError(t, state.AddSpend(ctx, "daily", "USD", 45000, now))
		assert.Zero(t, fraudScore(t, pol, usd("daily", 50)), "exactly the day's limit")
		assert.InDelta(t, 0.1, fraudScore(t, pol, usd("daily", 50.01)), 1e-9, "a cent over")
		require.NoError(t, state.AddSpend(ctx, "yen", "JPY", 450, now))
		assert.Zero(t, fraudScore(t, pol, Payment{Amount: 50, Minor: 50, Currency: "JPY", CustomerID: "yen", MerchantID: "m"}),
			"450 + 50 yen: the day's limit, a yen having no minor unit")
		assert.InDelta(t, 0.1, fraudScore(t, pol, Payment{Amount: 51, Minor: 51, Currency: "JPY", CustomerID: "yen", MerchantID: "m"}), 1e-9,
			"450 + 51 yen")
	})

	t.Run("country", func(t *testing.T) {
		p := usd("traveller", 1)
		p.Country = "KP"
		assert.Equal(t, 1.0, fraudScore(t, pol, p))
		p.Country = "US"
		assert.Zero(t, fraudScore(t, pol, p), "a country not on the list")
		p.Country = ""
		assert.Zero(t, fraudScore(t, pol, p), "no country sent")
	})
}

// The travel rule at its exact limits: a move of exactly MinDistanceKm
// counts, a speed of exactly MaxSpeedKmh is possible and one of exactly
// half of it is not fast. The limits are set from haversineKm itself, so
// that the rule computes the very same numbers.
func TestImpossibleTravelAtTheLimits(t *testing.T) {
	t0 := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	km := haversineKm(0, 0, 0, 1) // one degree along the equator
	move := func(t *testing.T, cfg FraudConfig, after time.Duration, lat, lon float64) float64 {
		t.Helper()
		now := t0
		pol, err := NewFraudPolicy(cfg, NewMemoryState(0), func() time.Time { return now })
		require.NoError(t, err)
		p := Payment{Amount: 1, Minor: 100, Currency: "USD", CustomerID: "c", MerchantID: "m", HasCoords: true}
		assert.Zero(t, fraudScore(t, pol, p), "the first location is nothing to compare")
		now = t0.Add(after)
		p.Lat, p.Lon = lat, lon
		return fraudScore(t, pol, p)
	}

	t.Run("exactly the minimum distance counts", func(t *testing.T) {
		assert.InDelta(t, 0.6, move(t, FraudConfig{MinDistanceKm: km, MaxSpeedKmh: 100}, time.Hour, 0, 1), 1e-9)
	})
	t.Run("exactly the limit speed is possible", func(t *testing.T) {
		assert.InDelta(t, 0.3, move(t, FraudConfig{MinDistanceKm: 1, MaxSpeedKmh: km}, time.Hour, 0, 1), 1e-9)
	})
	t.Run("exactly half the limit speed is not fast", func(t *testing.T) {
		assert.Zero(t, move(t, FraudConfig{MinDistanceKm: 1, MaxSpeedKmh: 2 * km}, time.Hour, 0, 1))
	})
	t.Run("speed is distance over time", func(t *testing.T) {
		// 10 degrees (1112 km) in two hours: 556 km/h, over half of 1000.
		assert.InDelta(t, 0.3, move(t, FraudConfig{MaxSpeedKmh: 1000}, 2*time.Hour, 0, 10), 1e-9)
		// 4 degrees (445 km) in half an hour: 890 km/h.
		assert.InDelta(t, 0.3, move(t, FraudConfig{MaxSpeedKmh: 1000}, 30*time.Minute, 0, 4), 1e-9)
		// The same 445 km in ten minutes: 2669 km/h.
		assert.InDelta(t, 0.6, move(t, FraudConfig{MaxSpeedKmh: 1000}, 10*time.Minute, 0, 4), 1e-9)
		// Two places at once.
		assert.InDelta(t, 0.6, move(t, FraudConfig{}, 0, 0, 4), 1e-9)
	})
	t.Run("the default minimum distance is 50 km", func(t *testing.T) {
		assert.Zero(t, move(t, FraudConfig{}, time.Second, 0, 49/km), "49 km in a second: location noise")
		assert.InDelta(t, 0.6, move(t, FraudConfig{}, time.Second, 0, 51/km), 1e-9, "51 km in a second")
	})
	t.Run("a first location is compared with nothing", func(t *testing.T) {
		// Even at a crawl's limit, a customer's first payment far from
		// (0, 0) has no previous place to have come from.
		now := t0
		pol, err := NewFraudPolicy(FraudConfig{MaxSpeedKmh: 1e-3, MinDistanceKm: 1}, NewMemoryState(0), func() time.Time { return now })
		require.NoError(t, err)
		assert.Zero(t, fraudScore(t, pol, Payment{Amount: 1, Minor: 100, Currency: "USD", CustomerID: "c", MerchantID: "m", HasCoords: true, Lat: 60, Lon: 60}))
	})
}

// The day's spend counts what was charged, once, whichever rules judge:
// the CEL rules and the Go rules alike hold it as they judge, and the
// service gives it back when the payment is not charged (blocked,
// declined by the gateway).
func TestDaysSpendCountsChargesOnce(t *testing.T) {
	for _, rules := range []string{fraudRulesEmbedded, fraudRulesGo} {
		t.Run(rules, func(t *testing.T) {
			spent := func(t *testing.T, cfg Config, customer string) int64 {
				t.Helper()
				v, err := cfg.State.Spent(context.Background(), customer, "USD", cfg.Clock.Now())
				require.NoError(t, err)
				return v
			}
			cfg := testConfig(t)
			cfg.FraudRules = rules
			cfg.State = NewMemoryState(0)
			ts := startService(t, cfg)
			r := ts.pay(t, "c1", 40, nil)
			require.Equal(t, http.StatusOK, r.Code, string(r.Raw))
			assert.EqualValues(t, 4000, spent(t, cfg, "c1"), "a charge counts once")
			r = ts.pay(t, "c1", 10, map[string]any{"location": map[string]any{"country": "KP"}})
			require.Equal(t, StatusFraudBlocked, r.Body["status"], string(r.Raw))
			assert.EqualValues(t, 4000, spent(t, cfg, "c1"), "a blocked payment counts nothing")
			r = ts.pay(t, "c1", 25, nil)
			require.Equal(t, http.StatusOK, r.Code, string(r.Raw))
			assert.EqualValues(t, 6500, spent(t, cfg, "c1"))

			declining := testConfig(t)
			declining.FraudRules = rules
			declining.State = NewMemoryState(0)
			declining.GatewayFail = 1
			ts = startService(t, declining)
			r = ts.pay(t, "c2", 10, nil)
			require.NotEqual(t, http.StatusOK, r.Code, string(r.Raw))
			assert.Zero(t, spent(t, declining, "c2"), "a payment the gateway declined counts nothing")
		})
	}
}

// A charge the gateway made for a payment whose rules held none of the
// day's spend is booked in it after the charge, even when the payment's deadline ran out as
// the gateway answered: the money moved, and a booking cut short by the
// deadline let the customer's later payments that day pass the daily
// limit as if it had not.
func TestChargeAtItsDeadlineIsBooked(t *testing.T) {
	cfg := testConfig(t)
	cfg.FraudRules = fraudRulesGo
	cfg.CustomerState = "nats"
	ts := startService(t, cfg)
	ctx, cancel := context.WithDeadline(context.Background(), time.Now().Add(-time.Millisecond))
	defer cancel()
	sig := tai.Signal[Payment]{ID: "txn_" + tai.NewID(), Kind: "payment", Key: "c_late",
		Payload: Payment{Amount: 12.34, Minor: 1234, Currency: "USD", CustomerID: "c_late", MerchantID: "m"}}
	_, err := ts.charge(ctx, sig) // the simulated gateway, without latency, answers whatever the deadline
	require.NoError(t, err)
	spent, err := ts.state.Spent(context.Background(), "c_late", "USD", ts.clock.Now())
	require.NoError(t, err)
	assert.EqualValues(t, 1234, spent, "the charge is in the day's spend")
}

// The CEL rules fail closed too: a customer state that cannot take the
// attempt, its hold and the location fails the evaluation.
func TestFraudCELFailsClosedOnState(t *testing.T) {
	spec, err := parseDefaultRules()
	require.NoError(t, err)
	for _, coords := range []bool{false, true} {
		t.Run(fmt.Sprintf("coordinates=%v", coords), func(t *testing.T) {
			env, err := NewFraudEnv(FraudConfig{}, &reserveFailing{CustomerState: NewMemoryState(0)}, nil)
			require.NoError(t, err)
			set, err := env.Compile(spec)
			require.NoError(t, err)
			p := Payment{Amount: 10, Minor: 1000, Currency: "USD", CustomerID: "c", MerchantID: "m", HasCoords: coords, Lat: 1, Lon: 2}
			_, err = set.Evaluate(context.Background(), tai.Signal[Payment]{ID: newTxn(), Kind: "payment", Key: "c", Payload: p})
			require.Error(t, err)
			assert.True(t, errors.Is(err, errStateDown), "%v", err)
		})
	}
}

// countingState counts the changes made to a customer state.
type countingState struct {
	CustomerState
	changes atomic.Int64
}

func (s *countingState) Attempt(ctx context.Context, c string, now time.Time, w time.Duration) (int, error) {
	s.changes.Add(1)
	return s.CustomerState.Attempt(ctx, c, now, w)
}

func (s *countingState) AddSpend(ctx context.Context, c, cur string, minor int64, now time.Time) error {
	s.changes.Add(1)
	return s.CustomerState.AddSpend(ctx, c, cur, minor, now)
}

func (s *countingState) Reserve(ctx context.Context, c, txn, cur string, minor int64, now time.Time, w time.Duration, at *Point) (Reservation, error) {
	s.changes.Add(1)
	return s.CustomerState.Reserve(ctx, c, txn, cur, minor, now, w, at)
}

func (s *countingState) Release(ctx context.Context, c, txn, cur string, minor int64, at time.Time) error {
	s.changes.Add(1)
	return s.CustomerState.Release(ctx, c, txn, cur, minor, at)
}

func (s *countingState) Move(ctx context.Context, c string, p Point) (Point, bool, error) {
	s.changes.Add(1)
	return s.CustomerState.Move(ctx, c, p)
}

// The CEL rules change the customer's state once per payment, with
// coordinates or without — each change is a write to a shared store —
// and see the location it moved from.
func TestFraudCELChangesTheStateOnce(t *testing.T) {
	spec, err := parseDefaultRules()
	require.NoError(t, err)
	state := &countingState{CustomerState: NewMemoryState(0)}
	at := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	clock := func() time.Time { return at }
	env, err := NewFraudEnv(FraudConfig{}, state, clock)
	require.NoError(t, err)
	set, err := env.Compile(spec)
	require.NoError(t, err)
	pay := func(p Payment) map[string]any {
		t.Helper()
		before := state.changes.Load()
		p.Amount, p.Minor, p.Currency, p.CustomerID, p.MerchantID = 10, 1000, "USD", "c", "m"
		rec, err := set.Evaluate(context.Background(), tai.Signal[Payment]{ID: newTxn(), Kind: "payment", Key: "c", Payload: p})
		require.NoError(t, err)
		assert.EqualValues(t, 1, state.changes.Load()-before, "changes of one payment")
		var in struct{ Vars map[string]any }
		require.NoError(t, json.Unmarshal(rec.Inputs, &in))
		return in.Vars
	}
	pay(Payment{})
	in := pay(Payment{HasCoords: true, Lat: 48.8566, Lon: 2.3522})
	assert.InDelta(t, 0.0, in["moved_km"], 0, "no location before")
	at = at.Add(time.Hour)
	in = pay(Payment{HasCoords: true, Lat: 51.5074, Lon: -0.1278})
	assert.InDelta(t, 343.5, in["moved_km"], 1, "Paris to London")
	assert.InDelta(t, 1.0, in["moved_hours"], 1e-9)
}

// movedFor shows the time between two locations precisely enough to agree
// with the speed worked out from the exact time: never "0s" beside a
// finite speed.
func TestMovedFor(t *testing.T) {
	for d, want := range map[time.Duration]string{
		0:                                     "0s",
		452 * time.Nanosecond:                 "452ns",
		1234 * time.Nanosecond:                "1.23µs",
		45_350 * time.Microsecond:             "45.4ms",
		50 * time.Millisecond:                 "50ms",
		1500 * time.Millisecond:               "1.5s",
		12_345 * time.Millisecond:             "12.3s",
		59_960 * time.Millisecond:             "1m0s",
		time.Minute + 400*time.Millisecond:    "1m0s",
		90*time.Minute + 600*time.Millisecond: "1h30m1s",
		-5_200 * time.Millisecond:             "-5.2s",
		-1_234_567 * time.Nanosecond:          "-1.23ms",
		-2 * time.Hour:                        "-2h0m0s",
	} {
		assert.Equal(t, want, movedFor(d), "%d ns", int64(d))
	}
}

// Berlin to Paris, 877 km, in 45 ms: the reason shows the time the speed
// was worked out from, with the CEL rules and with the Go rules alike.
func TestImpossibleTravelReasonShowsTheTime(t *testing.T) {
	berlin := map[string]any{"location": map[string]any{"latitude": 52.52, "longitude": 13.405}}
	paris := map[string]any{"location": map[string]any{"latitude": 48.8566, "longitude": 2.3522}}
	for _, rules := range []string{fraudRulesEmbedded, fraudRulesGo} {
		t.Run(rules, func(t *testing.T) {
			cfg := testConfig(t)
			cfg.FraudRules = rules
			ts := startService(t, cfg)
			require.Equal(t, StatusSuccess, ts.pay(t, "traveller", 10, berlin).str("status"))
			ts.clock.Advance(45 * time.Millisecond)
			r := ts.pay(t, "traveller", 10, paris)
			require.Equal(t, StatusFraudBlocked, r.str("status"), string(r.Raw))
			assert.Contains(t, r.Body["reasons"], "moved 877 km in 45ms (70197163 km/h, limit 900)", string(r.Raw))
		})
	}
}

// The amount and daily amount reasons write amounts, and the limits, with
// the payment's currency's own minor digits — none for yen, three for
// Bahraini dinars, two for dollars — in the Go rules and the built-in CEL
// rules alike.
func TestFraudReasonsWriteTheCurrencysDigits(t *testing.T) {
	now := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	goState, celState := NewMemoryState(0), NewMemoryState(0)
	goPolicy, err := NewFraudPolicy(FraudConfig{}, goState, clock)
	require.NoError(t, err)
	env, err := NewFraudEnv(FraudConfig{}, celState, clock)
	require.NoError(t, err)
	spec, err := parseDefaultRules()
	require.NoError(t, err)
	celPolicy, err := env.Compile(spec)
	require.NoError(t, err)

	for i, tc := range []struct {
		amount, currency string
		reasons          []string // of the amount rule, then the daily one
	}{
		{"6000", "JPY", []string{"amount 6000 over 5000", "6000 JPY today would exceed 5000"}},
		{"20001", "JPY", []string{"amount 20001 over four times the 5000 limit", "20001 JPY today would exceed 5000"}},
		{"4000.001", "BHD", []string{"amount 4000.001 near the 5000.000 limit"}},
		{"6000.125", "BHD", []string{"amount 6000.125 over 5000.000", "6000.125 BHD today would exceed 5000.000"}},
		{"6000.5", "USD", []string{"amount 6000.50 over 5000.00", "6000.50 USD today would exceed 5000.00"}},
	} {
		p, err := parsePayment([]byte(`{"amount": ` + tc.amount + `, "customer_id": "c` + strconv.Itoa(i) +
			`", "currency": "` + tc.currency + `", "merchant_id": "m"}`))
		require.NoError(t, err)
		for name, pol := range map[string]tai.Policy[Payment]{"go": goPolicy, "cel": celPolicy} {
			d, err := pol.Evaluate(context.Background(), tai.Signal[Payment]{ID: newTxn(), Kind: "payment", Key: p.CustomerID, Time: now, Payload: p})
			require.NoError(t, err)
			var reasons []string
			for _, c := range d.Contributions {
				reasons = append(reasons, c.Reason)
			}
			assert.Equal(t, tc.reasons, reasons, "%s rules, %s %s", name, tc.amount, tc.currency)
		}
	}
}

// The built-in rule file's currency sets are the currencies of
// minorUnits with no minor digits and with three; every other currency
// has two, which the file's reasons take for the rest.
func TestFraudRulesCurrencySetsAgreeWithMinorUnits(t *testing.T) {
	spec, err := parseDefaultRules()
	require.NoError(t, err)
	byDigits := map[int][]string{}
	for cur, digits := range minorUnits {
		byDigits[digits] = append(byDigits[digits], cur)
	}
	for _, list := range byDigits {
		slices.Sort(list)
	}
	assert.Equal(t, byDigits[0], slices.Sorted(slices.Values(spec.Sets["no_minor_units"])))
	assert.Equal(t, byDigits[3], slices.Sorted(slices.Values(spec.Sets["three_minor_units"])))
	delete(byDigits, 0)
	delete(byDigits, 3)
	assert.Equal(t, []int{2}, slices.Sorted(maps.Keys(byDigits)), "the digits of every other currency")
}
