package main

import (
	"context"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/taipattern/taikit/tai"
)

// FraudConfig sets the fraud policy's limits. Amounts are in major units of
// the payment's currency (the service does not convert currencies).
type FraudConfig struct {
	Blacklist      Blacklist
	VelocityLimit  int           // attempts per customer per VelocityWindow; more is fraud. Default 5; below 256, the attempts a customer's state counts.
	VelocityWindow time.Duration // default one minute; at most 25 hours, how long a customer's state is kept when idle.
	MaxAmount      float64       // per payment; above is flagged (0.3), four times above is fraud. Default 5000.
	MaxDaily       float64       // per customer and currency per UTC day; above is flagged (0.1). Default 5000.
	MaxSpeedKmh    float64       // between consecutive payment locations; above is fraud, above half is reviewed. Default 900 (an airliner).
	MinDistanceKm  float64       // moves shorter than this are ignored (location noise). Default 50.
	Deny           float64       // score from which a payment is blocked. Default 0.5.
	Review         float64       // score from which a payment is held for review, in (0, Deny]; 0 means none: a payment below Deny is charged, flagged by its score and reasons.
}

// Blacklist names customers, merchants and countries whose payments are
// refused outright.
type Blacklist struct {
	Customers, Merchants, Countries map[string]bool
}

// ParseBlacklist reads "customer:cust_9,merchant:merc_1,country:KP". Each
// value must be one a payment could carry, as its request is validated: a
// customer or merchant ID as customer_id and merchant_id take them, a
// country as an ISO 3166 alpha-2 code (any case). An entry no payment can
// match is an error rather than a rule that never fires.
func ParseBlacklist(s string) (Blacklist, error) {
	b := Blacklist{Customers: map[string]bool{}, Merchants: map[string]bool{}, Countries: map[string]bool{}}
	for _, item := range strings.Split(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		kind, v, ok := strings.Cut(item, ":")
		kind, v = strings.TrimSpace(kind), strings.TrimSpace(v)
		if !ok || v == "" {
			return b, fmt.Errorf("blacklist entry %q is not kind:value", item)
		}
		switch kind {
		case "customer", "merchant":
			if err := checkID(kind, v); err != nil {
				return b, fmt.Errorf("blacklist entry %q: %w", item, err)
			}
			if kind == "customer" {
				b.Customers[v] = true
			} else {
				b.Merchants[v] = true
			}
		case "country":
			if len(v) != 2 || !isAlpha(v) {
				return b, fmt.Errorf("blacklist entry %q: %q is not an ISO 3166 alpha-2 code, as a payment's location.country must be", item, v)
			}
			b.Countries[strings.ToUpper(v)] = true
		default:
			return b, fmt.Errorf("blacklist entry %q: kind must be customer, merchant or country", item)
		}
	}
	return b, nil
}

func (c *FraudConfig) defaults() error {
	if c.VelocityLimit == 0 {
		c.VelocityLimit = 5
	}
	if c.VelocityWindow == 0 {
		c.VelocityWindow = time.Minute
	}
	if c.MaxAmount == 0 {
		c.MaxAmount = 5000
	}
	if c.MaxDaily == 0 {
		c.MaxDaily = 5000
	}
	if c.MaxSpeedKmh == 0 {
		c.MaxSpeedKmh = 900
	}
	if c.MinDistanceKm == 0 {
		c.MinDistanceKm = 50
	}
	if c.Deny == 0 {
		c.Deny = 0.5
	}
	switch {
	case c.VelocityLimit < 1:
		return fmt.Errorf("fraud: velocity limit %d must be at least 1", c.VelocityLimit)
	case c.VelocityLimit >= maxAttemptsKept:
		// The states count no further: a limit as high would never fire.
		return fmt.Errorf("fraud: velocity limit %d must be below %d, the attempts a customer's state counts", c.VelocityLimit, maxAttemptsKept)
	case c.VelocityWindow < time.Second:
		return fmt.Errorf("fraud: velocity window %v must be at least 1s", c.VelocityWindow)
	case c.VelocityWindow > forgetAfter:
		// The memory and NATS states forget an idle customer's attempts
		// then; Redis would remember them: the stores would disagree.
		return fmt.Errorf("fraud: velocity window %v must be at most %v, how long a customer's state is kept when idle", c.VelocityWindow, forgetAfter)
	case !(c.MaxAmount > 0) || math.IsInf(c.MaxAmount, 0):
		return fmt.Errorf("fraud: max amount %v must be a positive number", c.MaxAmount)
	case !(c.MaxDaily > 0) || math.IsInf(c.MaxDaily, 0):
		return fmt.Errorf("fraud: max daily amount %v must be a positive number", c.MaxDaily)
	case !(c.MaxSpeedKmh > 0) || math.IsInf(c.MaxSpeedKmh, 0):
		return fmt.Errorf("fraud: max speed %v km/h must be a positive number", c.MaxSpeedKmh)
	case !(c.MinDistanceKm >= 0):
		return fmt.Errorf("fraud: min distance %v km must not be negative", c.MinDistanceKm)
	}
	return nil
}

// Rule weights. One strong signal (a blacklisted party, a burst of
// attempts, a move faster than an airliner, an amount four times the limit)
// reaches the deny threshold (0.5) on its own. A weaker one flags the
// payment without blocking it: an amount over the limit adds 0.3 (0.15
// near it), a fast move 0.3, a day's total over the daily limit 0.1 — so
// 10,000.00 from a customer with nothing else against them scores 0.4 and
// is charged, while two flags together (a large amount from a customer who
// moved fast) block it.
const (
	weightBlacklist = 1.0
	weightStrong    = 0.6
	weightDaily     = 0.1
)

// NewFraudPolicy returns the scored fraud policy: blacklist, velocity,
// amount, daily amount and impossible travel over the customer state,
// which is required, at the clock now (nil: the system clock). The rules
// that read the state make the payment's Reserve, once per transaction
// ID: its attempt counted, its day's spend held and its location moved,
// as the CEL rules' lookup does.
func NewFraudPolicy(cfg FraudConfig, state CustomerState, now func() time.Time) (*tai.Scored[Payment], error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	if state == nil {
		return nil, fmt.Errorf("fraud: no customer state")
	}
	if now == nil {
		now = time.Now
	}
	bl := cfg.Blacklist
	return tai.NewScored(tai.ScoredOptions{Name: "fraud", Review: cfg.Review, Deny: cfg.Deny},
		tai.Rule[Payment]{Name: "blacklist", Weight: weightBlacklist, Check: func(_ context.Context, s tai.Signal[Payment]) (float64, string, error) {
			p := &s.Payload
			switch {
			case bl.Customers[p.CustomerID]:
				return 1, "customer is blacklisted", nil
			case bl.Merchants[p.MerchantID]:
				return 1, "merchant is blacklisted", nil
			case p.Country != "" && bl.Countries[p.Country]:
				return 1, "country " + p.Country + " is blacklisted", nil
			}
			return 0, "", nil
		}},
		tai.Rule[Payment]{Name: "velocity", Weight: weightStrong, Check: func(ctx context.Context, s tai.Signal[Payment]) (float64, string, error) {
			res, _, err := reservePayment(ctx, state, cfg.VelocityWindow, now, s)
			if err != nil {
				return 0, "", err
			}
			if n := res.Attempts; n > cfg.VelocityLimit {
				return 1, fmt.Sprintf("%d attempts in %v (limit %d)", n, cfg.VelocityWindow, cfg.VelocityLimit), nil
			}
			return 0, "", nil
		}},
		tai.Rule[Payment]{Name: "amount", Weight: weightStrong, Check: func(_ context.Context, s tai.Signal[Payment]) (float64, string, error) {
			cur := s.Payload.Currency
			switch a := s.Payload.Amount; {
			case a > 4*cfg.MaxAmount:
				return 1, "amount " + formatAmount(a, cur) + " over four times the " + formatAmount(cfg.MaxAmount, cur) + " limit", nil
			case a > cfg.MaxAmount:
				return 0.5, "amount " + formatAmount(a, cur) + " over " + formatAmount(cfg.MaxAmount, cur), nil
			case a > 0.8*cfg.MaxAmount:
				return 0.25, "amount " + formatAmount(a, cur) + " near the " + formatAmount(cfg.MaxAmount, cur) + " limit", nil
			}
			return 0, "", nil
		}},
		tai.Rule[Payment]{Name: "daily_amount", Weight: weightDaily, Check: func(ctx context.Context, s tai.Signal[Payment]) (float64, string, error) {
			p := &s.Payload
			res, _, err := reservePayment(ctx, state, cfg.VelocityWindow, now, s)
			if err != nil {
				return 0, "", err
			}
			total := (float64(res.Spent) + float64(p.Minor)) / math.Pow10(minorUnits[p.Currency])
			if total > cfg.MaxDaily {
				return 1, formatAmount(total, p.Currency) + " " + p.Currency + " today would exceed " + formatAmount(cfg.MaxDaily, p.Currency), nil
			}
			return 0, "", nil
		}},
		tai.Rule[Payment]{Name: "impossible_travel", Weight: weightStrong, Check: func(ctx context.Context, s tai.Signal[Payment]) (float64, string, error) {
			p := &s.Payload
			if !p.HasCoords {
				return 0, "", nil
			}
			res, t, err := reservePayment(ctx, state, cfg.VelocityWindow, now, s)
			if err != nil || !res.HasPrev {
				return 0, "", err
			}
			prev := res.Prev
			km := haversineKm(prev.Lat, prev.Lon, p.Lat, p.Lon)
			if km < cfg.MinDistanceKm {
				return 0, "", nil
			}
			hours := t.Sub(prev.At).Hours()
			speed := math.Inf(1)
			if hours > 0 {
				speed = km / hours
			}
			switch {
			case speed > cfg.MaxSpeedKmh:
				return 1, fmt.Sprintf("moved %.0f km in %s (%.0f km/h, limit %.0f)", km, movedFor(t.Sub(prev.At)), speed, cfg.MaxSpeedKmh), nil
			case speed > cfg.MaxSpeedKmh/2:
				return 0.5, fmt.Sprintf("moved %.0f km in %s (%.0f km/h)", km, movedFor(t.Sub(prev.At)), speed), nil
			}
			return 0, "", nil
		}},
	)
}

// movedFor writes the time between two payment locations for a reason:
// to the second from a minute on, as Go writes durations (1h0m0s), and to
// three significant digits below (12.3s, 45.3ms, 0s for none), so that the
// time shown agrees with the speed, which is worked out from the exact
// time: never "0s" beside a finite speed.
func movedFor(d time.Duration) string {
	a := d
	if a < 0 {
		a = -a
	}
	if a >= time.Minute {
		return d.Round(time.Second).String()
	}
	unit := time.Duration(1)
	for unit*1000 <= a {
		unit *= 10
	}
	return d.Round(unit).String()
}

// haversineKm is the great-circle distance between two points in km.
func haversineKm(lat1, lon1, lat2, lon2 float64) float64 {
	const earthRadiusKm = 6371.0088
	rad := math.Pi / 180
	dLat, dLon := (lat2-lat1)*rad, (lon2-lon1)*rad
	a := math.Sin(dLat/2)*math.Sin(dLat/2) + math.Cos(lat1*rad)*math.Cos(lat2*rad)*math.Sin(dLon/2)*math.Sin(dLon/2)
	return 2 * earthRadiusKm * math.Asin(math.Min(1, math.Sqrt(a)))
}
