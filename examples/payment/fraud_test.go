package main

import (
	"context"
	"errors"
	"net/http"
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

// stateFailing fails one CustomerState method: a shared store that is
// down for that call.
type stateFailing struct {
	CustomerState
	method string
}

func (s stateFailing) Attempt(ctx context.Context, c string, now time.Time, w time.Duration) (int, error) {
	if s.method == "Attempt" {
		return 0, errStateDown
	}
	return s.CustomerState.Attempt(ctx, c, now, w)
}

func (s stateFailing) Spent(ctx context.Context, c, cur string, now time.Time) (int64, error) {
	if s.method == "Spent" {
		return 0, errStateDown
	}
	return s.CustomerState.Spent(ctx, c, cur, now)
}

func (s stateFailing) Move(ctx context.Context, c string, p Point) (Point, bool, error) {
	if s.method == "Move" {
		return Point{}, false, errStateDown
	}
	return s.CustomerState.Move(ctx, c, p)
}

// A customer state that fails fails the evaluation: the rules never run
// blind and pass a payment they could not check.
func TestFraudFailsClosedOnState(t *testing.T) {
	for _, method := range []string{"Attempt", "Spent", "Move"} {
		t.Run(method, func(t *testing.T) {
			pol, err := NewFraudPolicy(FraudConfig{}, stateFailing{NewMemoryState(0), method}, nil)
			require.NoError(t, err)
			p := Payment{Amount: 10, Minor: 1000, Currency: "USD", CustomerID: "c", MerchantID: "m", HasCoords: true, Lat: 1, Lon: 2}
			_, err = pol.Evaluate(context.Background(), tai.Signal[Payment]{ID: "txn", Kind: "payment", Key: "c", Payload: p})
			require.Error(t, err)
			assert.True(t, errors.Is(err, errStateDown), "%v", err)
		})
	}
}

// The travel rule at its edges: a move shorter than MinDistanceKm is
// noise, one just under the limit speed is fast but possible (flagged),
// one just over is impossible. (Speeds come from floating-point distances,
// so "exactly the limit" is not a speed a test can produce.)
func TestImpossibleTravelEdges(t *testing.T) {
	ctx := context.Background()
	t0 := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	now := t0
	state := NewMemoryState(0)
	pol, err := NewFraudPolicy(FraudConfig{MinDistanceKm: 100, MaxSpeedKmh: 1000}, state, func() time.Time { return now })
	require.NoError(t, err)
	score := func(customer string, lat, lon float64) float64 {
		t.Helper()
		d, err := pol.Evaluate(ctx, tai.Signal[Payment]{ID: "txn", Kind: "payment", Key: customer,
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
