package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/tai"
)

// The corpus of recorded payments the Go rules and the CEL rules are
// compared on. Regenerate it (deterministically: the same file each time)
// with
//
//	go test ./examples/payment -run TestFraudRulesEquivalent -update
var updateCorpus = flag.Bool("update", false, "regenerate testdata/fraud_corpus.jsonl")

const corpusPath = "testdata/fraud_corpus.jsonl"

// corpusEntry is one payment of the corpus: when it came, and its body
// as POST /payment takes it.
type corpusEntry struct {
	Time    time.Time       `json:"time"`
	Request json.RawMessage `json:"request"`
}

// corpusRequest is the body of a corpus payment; Amount keeps the number's
// text, as a client sends it.
type corpusRequest struct {
	Amount     json.Number     `json:"amount"`
	CustomerID string          `json:"customer_id"`
	Currency   string          `json:"currency"`
	MerchantID string          `json:"merchant_id"`
	Location   *corpusLocation `json:"location,omitempty"`
}

type corpusLocation struct {
	Latitude  *float64 `json:"latitude,omitempty"`
	Longitude *float64 `json:"longitude,omitempty"`
	Country   string   `json:"country,omitempty"`
}

// The blacklisted parties of the corpus. The equivalence test gives some
// to the Go rules' blacklist and the CEL rules' -blacklist entries, and
// some to the rule file's sets.
var (
	corpusBadCustomers = []string{"cust_bl_1", "cust_bl_2"}
	corpusBadMerchants = []string{"merc_bl_1", "merc_bl_2"}
	corpusBadCountries = []string{"KP", "IR"}
)

// corpusGen writes the corpus: ordinary payments, and every branch of the
// rules on purpose — each kind of blacklist, bursts over the velocity
// limit, every amount band and its edges, days over the daily limit in
// currencies of 0, 2 and 3 decimals, moves under the minimum distance,
// fast, very fast and instant, payments without coordinates — over a night
// that crosses a UTC midnight.
type corpusGen struct {
	rng     *rand.Rand
	now     time.Time
	entries []corpusEntry
	last    map[string]corpusPoint // each customer's last location
}

type corpusPoint struct {
	lat, lon float64
	at       time.Time
}

var cities = []struct {
	country  string
	lat, lon float64
}{
	{"DE", 52.52, 13.405}, {"FR", 48.8566, 2.3522}, {"GB", 51.5074, -0.1278}, {"US", 40.7128, -74.006},
	{"JP", 35.6762, 139.6503}, {"BR", -23.5505, -46.6333}, {"AU", -33.8688, 151.2093}, {"KE", -1.2921, 36.8219},
}

var corpusCurrencies = []string{"USD", "EUR", "JPY", "KWD"}

func generateCorpus(n int) []corpusEntry {
	g := &corpusGen{
		rng:  rand.New(rand.NewPCG(20260601, 7)),
		now:  time.Date(2026, 6, 1, 18, 0, 0, 0, time.UTC),
		last: map[string]corpusPoint{},
	}
	for len(g.entries) < n {
		switch k := g.rng.IntN(100); {
		case k < 40:
			g.ordinary()
		case k < 45:
			g.blacklisted()
		case k < 52:
			g.burst()
		case k < 64:
			g.amountBand()
		case k < 72:
			g.dailyRun()
		case k < 92:
			g.travel()
		default:
			g.sameInstant()
		}
	}
	return g.entries[:n]
}

// step moves the corpus clock on by up to 20 s (now and then not at all).
func (g *corpusGen) step() {
	if g.rng.IntN(20) == 0 {
		return
	}
	g.now = g.now.Add(time.Duration(1+g.rng.IntN(20000)) * time.Millisecond)
}

// amountText writes minor units of currency as the decimal text a client
// sends.
func amountText(minor int64, currency string) json.Number {
	d := minorUnits[currency]
	if d == 0 {
		return json.Number(strconv.FormatInt(minor, 10))
	}
	s := fmt.Sprintf("%0*d", d+1, minor)
	return json.Number(s[:len(s)-d] + "." + s[len(s)-d:])
}

// major is amount (in major units) in minor units of currency.
func major(amount float64, currency string) int64 {
	return int64(math.Round(amount * math.Pow10(minorUnits[currency])))
}

// emit adds a payment at the corpus clock; coords nil means none sent.
func (g *corpusGen) emit(customer, merchant, currency string, minor int64, country string, coords *[2]float64) {
	req := corpusRequest{Amount: amountText(minor, currency), CustomerID: customer, Currency: currency, MerchantID: merchant}
	if country != "" || coords != nil {
		req.Location = &corpusLocation{Country: country}
		if coords != nil {
			lat, lon := coords[0], coords[1]
			req.Location.Latitude, req.Location.Longitude = &lat, &lon
			g.last[customer] = corpusPoint{lat: lat, lon: lon, at: g.now}
		}
	}
	raw, err := json.Marshal(req)
	if err != nil {
		panic(err)
	}
	g.entries = append(g.entries, corpusEntry{Time: g.now, Request: raw})
	g.step()
}

func (g *corpusGen) customer(pool string, n int) string {
	return fmt.Sprintf("%s_%03d", pool, g.rng.IntN(n))
}

func (g *corpusGen) merchant() string { return fmt.Sprintf("merc_%02d", g.rng.IntN(40)) }

func (g *corpusGen) currency() string { return corpusCurrencies[g.rng.IntN(len(corpusCurrencies))] }

// near is a point within about 20 km of the city.
func (g *corpusGen) near(city int) *[2]float64 {
	c := cities[city]
	return &[2]float64{c.lat + (g.rng.Float64()-0.5)*0.3, c.lon + (g.rng.Float64()-0.5)*0.3}
}

// ordinary is a small payment of a customer of the big pool, with
// coordinates, a country only, or neither.
func (g *corpusGen) ordinary() {
	cur := g.currency()
	minor := major(1+g.rng.Float64()*2500, cur)
	city := g.rng.IntN(len(cities))
	switch g.rng.IntN(3) {
	case 0:
		g.emit(g.customer("cust", 400), g.merchant(), cur, minor, cities[city].country, g.near(city))
	case 1:
		g.emit(g.customer("cust", 400), g.merchant(), cur, minor, cities[city].country, nil)
	default:
		g.emit(g.customer("cust", 400), g.merchant(), cur, minor, "", nil)
	}
}

func (g *corpusGen) blacklisted() {
	cur := g.currency()
	minor := major(10+g.rng.Float64()*500, cur)
	switch g.rng.IntN(3) {
	case 0:
		g.emit(corpusBadCustomers[g.rng.IntN(2)], g.merchant(), cur, minor, "", nil)
	case 1:
		g.emit(g.customer("cust", 400), corpusBadMerchants[g.rng.IntN(2)], cur, minor, "DE", nil)
	default:
		g.emit(g.customer("cust", 400), g.merchant(), cur, minor, corpusBadCountries[g.rng.IntN(2)], nil)
	}
}

// burst is 4 to 9 payments of one customer within seconds: over the
// velocity limit from the sixth.
func (g *corpusGen) burst() {
	c := g.customer("rapid", 30)
	for range 4 + g.rng.IntN(6) {
		g.emit(c, g.merchant(), "USD", major(5+g.rng.Float64()*50, "USD"), "", nil)
	}
}

// amountBand is one payment in a band of the amount rule, or at one of
// its edges.
func (g *corpusGen) amountBand() {
	edges := []float64{4000, 4000.01, 5000, 5000.01, 20000, 20000.01}
	var amount float64
	switch b := g.rng.IntN(5); b {
	case 0:
		amount = edges[g.rng.IntN(len(edges))]
	case 1:
		amount = 4000.01 + g.rng.Float64()*999
	case 2:
		amount = 5000.01 + g.rng.Float64()*14999
	case 3:
		amount = 20000.01 + g.rng.Float64()*80000
	default:
		amount = g.rng.Float64() * 4000
	}
	cur := []string{"USD", "EUR"}[g.rng.IntN(2)]
	g.emit(g.customer("big", 200), g.merchant(), cur, major(amount, cur), "", nil)
}

// dailyRun is a customer paying several mid-sized amounts in one
// currency: their day's total passes the daily limit, or ends exactly on
// it.
func (g *corpusGen) dailyRun() {
	c := g.customer("daily", 60)
	cur := g.currency()
	if g.rng.IntN(4) == 0 {
		// Exactly the limit, then a minor unit more.
		g.emit(c, g.merchant(), cur, major(2500, cur), "", nil)
		g.emit(c, g.merchant(), cur, major(2500, cur), "", nil)
		g.emit(c, g.merchant(), cur, 1, "", nil)
		return
	}
	for range 2 + g.rng.IntN(3) {
		g.emit(c, g.merchant(), cur, major(800+g.rng.Float64()*2000, cur), "", nil)
	}
}

// travel is a customer of the travellers' pool paying again from another
// place: at a speed chosen from the time since their last payment —
// slow, fast (over half the limit), impossible — or a move short enough
// to be noise.
func (g *corpusGen) travel() {
	c := g.customer("trav", 50)
	prev, ok := g.last[c]
	if !ok {
		city := g.rng.IntN(len(cities))
		g.emit(c, g.merchant(), "EUR", major(20+g.rng.Float64()*200, "EUR"), cities[city].country, g.near(city))
		return
	}
	hours := g.now.Sub(prev.at).Hours()
	var km float64
	switch g.rng.IntN(5) {
	case 0: // noise: under the minimum distance, often just under
		km = 49.9 - g.rng.Float64()*[]float64{10, 49}[g.rng.IntN(2)]
	case 4: // just over the minimum distance, whatever the speed
		km = 50.01 + g.rng.Float64()*0.5
	case 1: // slow
		km = max(60, hours*(20+g.rng.Float64()*380))
	case 2: // fast: between half the limit and the limit
		km = max(60, hours*(480+g.rng.Float64()*380))
	default: // impossible
		km = max(60, hours*(950+g.rng.Float64()*8000))
	}
	km = min(km, 19000)
	lat, lon := destination(prev.lat, prev.lon, g.rng.Float64()*360, km)
	g.emit(c, g.merchant(), "EUR", major(20+g.rng.Float64()*200, "EUR"), "", &[2]float64{lat, lon})
}

// sameInstant is a traveller paying from two places far apart at the same
// instant: an infinite speed.
func (g *corpusGen) sameInstant() {
	c := g.customer("twin", 20)
	city := g.rng.IntN(len(cities))
	other := (city + 1 + g.rng.IntN(len(cities)-1)) % len(cities)
	now := g.now
	g.emit(c, g.merchant(), "USD", major(30, "USD"), "", g.near(city))
	g.now = now
	g.emit(c, g.merchant(), "USD", major(30, "USD"), "", g.near(other))
}

// destination is the point km away from (lat, lon) on the great circle of
// the bearing, in degrees.
func destination(lat, lon, bearing, km float64) (float64, float64) {
	const earthRadiusKm = 6371.0088
	rad := math.Pi / 180
	d := km / earthRadiusKm
	φ1, λ1, θ := lat*rad, lon*rad, bearing*rad
	φ2 := math.Asin(math.Sin(φ1)*math.Cos(d) + math.Cos(φ1)*math.Sin(d)*math.Cos(θ))
	λ2 := λ1 + math.Atan2(math.Sin(θ)*math.Sin(d)*math.Cos(φ1), math.Cos(d)-math.Sin(φ1)*math.Sin(φ2))
	lon2 := math.Mod(λ2/rad+540, 360) - 180
	// Six decimals (about 10 cm), as a client would send.
	return math.Round(φ2/rad*1e6) / 1e6, math.Round(lon2*1e6) / 1e6
}

func writeCorpus(path string, entries []corpusEntry) error {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	for _, e := range entries {
		if err := enc.Encode(e); err != nil {
			return err
		}
	}
	return os.WriteFile(path, b.Bytes(), 0o644)
}

func readCorpus(t *testing.T, path string) []corpusEntry {
	t.Helper()
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	var entries []corpusEntry
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var e corpusEntry
		require.NoError(t, json.Unmarshal(sc.Bytes(), &e), "line %d", len(entries)+1)
		entries = append(entries, e)
	}
	require.NoError(t, sc.Err())
	return entries
}

// corpusSize is the number of payments in the corpus.
const corpusSize = 3000

// The corpus is what its generator writes: regenerating it changes
// nothing, so the file in the repository is the one the generator makes.
func TestFraudCorpusIsGenerated(t *testing.T) {
	if *updateCorpus {
		require.NoError(t, writeCorpus(corpusPath, generateCorpus(corpusSize)))
	}
	var want bytes.Buffer
	for _, e := range generateCorpus(corpusSize) {
		require.NoError(t, json.NewEncoder(&want).Encode(e))
	}
	got, err := os.ReadFile(corpusPath)
	require.NoError(t, err, "generate it with -update")
	require.Equal(t, want.String(), string(got), "the corpus differs from what its generator writes; regenerate it with -update")
}

// replayer judges corpus payments with one policy over a customer state
// of its own, at a clock that follows the corpus, and keeps the day's
// spend as the service does: a payment it allows keeps the hold its rules
// took (or, had they taken none, is booked), and one it does not allow
// gives its hold back.
type replayer struct {
	policy tai.Policy[Payment]
	state  *MemoryState
	now    time.Time
}

func (r *replayer) clock() time.Time { return r.now }

func (r *replayer) judge(ctx context.Context, i int, e corpusEntry, p Payment) (tai.Decision, error) {
	r.now = e.Time
	var hold spendHold
	d, err := r.policy.Evaluate(context.WithValue(ctx, spendHoldKey{}, &hold),
		tai.Signal[Payment]{ID: fmt.Sprintf("txn_%d", i), Kind: "payment", Key: p.CustomerID, Time: e.Time, Payload: p})
	h, held := hold.taken()
	switch charged := err == nil && d.Verdict == tai.Allow; {
	case held && !charged:
		err = errors.Join(err, r.state.AddSpend(ctx, h.customer, h.currency, -h.minor, h.at))
	case !held && charged:
		err = r.state.AddSpend(ctx, p.CustomerID, p.Currency, p.Minor, e.Time)
	}
	return d, err
}

// The CEL rules (rules/fraud.yaml) decide every payment of the corpus as
// the Go rules (fraud.go) do: the same verdict, score, contributing rules
// with their weights and risks, and reasons, word for word. Each policy
// has a customer state of its own. The blacklist reaches the CEL rules
// two ways, through the -blacklist entries and through the file's sets,
// and each is replayed.
func TestFraudRulesEquivalent(t *testing.T) {
	if *updateCorpus {
		require.NoError(t, writeCorpus(corpusPath, generateCorpus(corpusSize)))
	}
	entries := readCorpus(t, corpusPath)
	require.Len(t, entries, corpusSize)
	payments := make([]Payment, len(entries))
	for i, e := range entries {
		p, err := parsePayment(e.Request)
		require.NoError(t, err, "payment %d: %s", i, e.Request)
		payments[i] = p
	}
	all := Blacklist{Customers: setOf(corpusBadCustomers...), Merchants: setOf(corpusBadMerchants...), Countries: setOf(corpusBadCountries...)}

	for _, tc := range []struct {
		name  string
		flags Blacklist           // the CEL rules' -blacklist entries
		sets  map[string][]string // added to the rule file's sets
	}{
		{name: "blacklist from the flags", flags: all},
		{name: "blacklist from the flags and the file", flags: Blacklist{
			Customers: setOf(corpusBadCustomers[0]), Merchants: setOf(corpusBadMerchants[0]), Countries: setOf(corpusBadCountries[0]),
		}, sets: map[string][]string{
			"customers": corpusBadCustomers[1:], "merchants": corpusBadMerchants[1:], "countries": corpusBadCountries[1:],
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			goRun := &replayer{state: NewMemoryState(0)}
			goPolicy, err := NewFraudPolicy(FraudConfig{Blacklist: all}, goRun.state, goRun.clock)
			require.NoError(t, err)
			goRun.policy = goPolicy

			celRun := &replayer{state: NewMemoryState(0)}
			env, err := NewFraudEnv(FraudConfig{Blacklist: tc.flags}, celRun.state, celRun.clock)
			require.NoError(t, err)
			spec, err := parseDefaultRules()
			require.NoError(t, err)
			for name, items := range tc.sets {
				spec.Sets[name] = append(spec.Sets[name], items...)
			}
			set, err := env.Compile(spec)
			require.NoError(t, err)
			celRun.policy = set

			seen := map[string]int{}
			for i, e := range entries {
				p := payments[i]
				want, err := goRun.judge(ctx, i, e, p)
				require.NoError(t, err, "payment %d", i)
				got, err := celRun.judge(ctx, i, e, p)
				require.NoError(t, err, "payment %d", i)
				requireSameDecision(t, want, got, "payment %d at %s: %s", i, e.Time.Format(time.RFC3339Nano), e.Request)
				for _, c := range want.Contributions {
					seen[branchOf(c)]++
				}
				seen["verdict "+want.Verdict.String()]++
			}
			t.Logf("branches seen: %v", seen)
			for _, b := range []string{
				"blacklist customer", "blacklist merchant", "blacklist country",
				"velocity", "amount four times", "amount over", "amount near", "daily_amount",
				"travel impossible", "travel instant", "travel fast", "verdict allow", "verdict deny",
			} {
				assert.GreaterOrEqual(t, seen[b], 5, "the corpus takes the branch %q at least 5 times", b)
			}
		})
	}

	// And it takes the branches no rule fires on: moves under the minimum
	// distance, slow moves, payments without coordinates, days exactly at
	// the limit.
	quiet := map[string]int{}
	last := map[string]Payment{}
	lastAt := map[string]time.Time{}
	day := map[string]int64{}
	for i, p := range payments {
		at := entries[i].Time
		if !p.HasCoords {
			quiet["no coordinates"]++
		} else if prev, ok := last[p.CustomerID]; ok {
			km := haversineKm(prev.Lat, prev.Lon, p.Lat, p.Lon)
			switch h := at.Sub(lastAt[p.CustomerID]).Hours(); {
			case km < 50:
				quiet["move under 50 km"]++
			case h > 0 && km/h <= 450:
				quiet["slow move"]++
			}
		}
		if p.HasCoords {
			last[p.CustomerID], lastAt[p.CustomerID] = p, at
		}
		k := p.CustomerID + " " + p.Currency + " " + dayKey(at)
		day[k] += p.Minor
		if day[k] == major(5000, p.Currency) {
			quiet["day exactly at the limit"]++
		}
	}
	t.Logf("quiet branches: %v", quiet)
	for _, b := range []string{"no coordinates", "move under 50 km", "slow move", "day exactly at the limit"} {
		assert.GreaterOrEqual(t, quiet[b], 5, "the corpus takes the branch %q at least 5 times", b)
	}
}

func setOf(items ...string) map[string]bool {
	m := make(map[string]bool, len(items))
	for _, it := range items {
		m[it] = true
	}
	return m
}

// branchOf names the branch of a rule a contribution came from.
func branchOf(c tai.Contribution) string {
	switch {
	case c.Rule == "blacklist":
		return "blacklist " + strings.Fields(c.Reason)[0]
	case c.Rule == "amount" && strings.Contains(c.Reason, "four times"):
		return "amount four times"
	case c.Rule == "amount" && strings.Contains(c.Reason, "near"):
		return "amount near"
	case c.Rule == "amount":
		return "amount over"
	case c.Rule == "impossible_travel" && strings.Contains(c.Reason, "+Inf"):
		return "travel instant"
	case c.Rule == "impossible_travel" && c.Risk == 1:
		return "travel impossible"
	case c.Rule == "impossible_travel":
		return "travel fast"
	}
	return c.Rule
}

// requireSameDecision fails unless got decides as want: verdict, policy,
// score (within 1e-9), reason, and each contribution in order.
func requireSameDecision(t *testing.T, want, got tai.Decision, msg string, args ...any) {
	t.Helper()
	where := fmt.Sprintf(msg, args...)
	require.Equal(t, want.Verdict, got.Verdict, "verdict of %s", where)
	require.Equal(t, want.Policy, got.Policy, "policy of %s", where)
	require.InDelta(t, want.Score, got.Score, 1e-9, "score of %s", where)
	require.Equal(t, want.Reason, got.Reason, "reason of %s", where)
	require.Len(t, got.Contributions, len(want.Contributions), "contributions of %s: want %+v, got %+v", where, want.Contributions, got.Contributions)
	for j, w := range want.Contributions {
		g := got.Contributions[j]
		require.Equal(t, w.Rule, g.Rule, "contribution %d of %s", j, where)
		require.Equal(t, w.Reason, g.Reason, "reason of rule %s of %s", w.Rule, where)
		require.InDelta(t, w.Weight, g.Weight, 1e-9, "weight of rule %s of %s", w.Rule, where)
		require.InDelta(t, w.Risk, g.Risk, 1e-9, "risk of rule %s of %s", w.Rule, where)
		require.InDelta(t, w.Score, g.Score, 1e-9, "score of rule %s of %s", w.Rule, where)
	}
}
