package main

import (
	"context"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"fmt"
	"math"
	"sync"
	"time"

	"cel.dev/cel-go/cel"

	"github.com/taipattern/taikit/tai"
	"github.com/taipattern/taikit/tai/taicel"
)

// defaultFraudRules is rules/fraud.yaml: the fraud rules of fraud.go as a
// CEL rule set, which the service runs unless -fraud-rules says otherwise.
//
//go:embed rules/fraud.yaml
var defaultFraudRules []byte

// fraudVars are the variables a fraud rule file reads besides the payment:
// what fraudLookup finds for each payment, once, before the rules run.
var fraudVars = map[string]*cel.Type{
	"attempts":             cel.IntType,
	"day_total":            cel.DoubleType,
	"moved_km":             cel.DoubleType,
	"moved_hours":          cel.DoubleType,
	"moved_for":            cel.StringType,
	"customer_blacklisted": cel.BoolType,
	"merchant_blacklisted": cel.BoolType,
	"country_blacklisted":  cel.BoolType,
}

// unrecordedFields are the fields of a payment never written with its
// decision: the client's metadata, which may hold anything, and where the
// customer stood. The rules read the distance and time the lookup worked
// out from the coordinates, which are recorded.
var unrecordedFields = []string{"Metadata", "Lat", "Lon"}

// NewFraudEnv returns the environment fraud rule files compile in: the
// payment as payload, and fraudVars looked up in state at the clock now
// (nil: the system clock). Of cfg it uses the Blacklist (the -blacklist
// and -blacklist-file entries, read into the *_blacklisted variables) and
// the VelocityWindow attempts are counted over; the limits are the rule
// file's.
//
// Each decision carries what the rules read (Decision.Inputs), which the
// audit trail keeps, so that a candidate rule file can be tried on past
// payments (taikit backtest): the payment without unrecordedFields, and
// the variables.
func NewFraudEnv(cfg FraudConfig, state CustomerState, now func() time.Time) (*taicel.Env[Payment], error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	if state == nil {
		return nil, fmt.Errorf("fraud: no customer state")
	}
	if now == nil {
		now = time.Now
	}
	return taicel.NewEnv(taicel.Options[Payment]{
		Vars:         fraudVars,
		Lookup:       fraudLookup(cfg, state, now),
		RecordInputs: true,
		Unrecorded:   unrecordedFields,
	})
}

// fraudLookup reads what the rules need from the customer state, with the
// side effects the Go rules have, in one change of it (reservePayment): the
// attempt is counted, the day's spend held for the payment as it is judged
// and the customer's location moved, once per transaction ID (the
// signal's), however often it is run. A state that fails fails the payment
// (the rules do not run blind), as with the Go rules.
func fraudLookup(cfg FraudConfig, state CustomerState, now func() time.Time) func(context.Context, tai.Signal[Payment]) (map[string]any, error) {
	bl := cfg.Blacklist
	window := cfg.VelocityWindow
	return func(ctx context.Context, s tai.Signal[Payment]) (map[string]any, error) {
		p := &s.Payload
		res, t, err := reservePayment(ctx, state, window, now, s)
		if err != nil {
			return nil, err
		}
		// As the Go rule adds them: exact minor units, then one division.
		total := (float64(res.Spent) + float64(p.Minor)) / math.Pow10(minorUnits[p.Currency])
		// The speed is the rules' to work out, moved_km / moved_hours, as
		// the Go rule does: a variable is recorded with each decision, and
		// the infinite speed of no time passing is no JSON number.
		km, hours, moved := 0.0, 0.0, "0s"
		if res.HasPrev {
			km = haversineKm(res.Prev.Lat, res.Prev.Lon, p.Lat, p.Lon)
			d := t.Sub(res.Prev.At)
			hours, moved = d.Hours(), movedFor(d)
		}
		return map[string]any{
			"attempts":             int64(res.Attempts),
			"day_total":            total,
			"moved_km":             km,
			"moved_hours":          hours,
			"moved_for":            moved,
			"customer_blacklisted": bl.Customers[p.CustomerID],
			"merchant_blacklisted": bl.Merchants[p.MerchantID],
			"country_blacklisted":  p.Country != "" && bl.Countries[p.Country],
		}, nil
	}
}

// compileFraudRules parses and compiles a rule file's text.
func compileFraudRules(env *taicel.Env[Payment], data []byte) (*taicel.Set[Payment], error) {
	spec, err := taicel.Parse(data)
	if err != nil {
		return nil, err
	}
	return env.Compile(spec)
}

// sha256Hex is the SHA-256 of data in hex, as a taicel.Loader reports a
// file's.
func sha256Hex(data []byte) string {
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}

// parseDefaultRules parses the built-in rule file.
func parseDefaultRules() (*taicel.Spec, error) { return taicel.Parse(defaultFraudRules) }

// reservePayment makes the payment's Reserve in the customer state: its attempt
// counted, a hold on the day's spend and its location moved, in one
// change; the service gives the hold back if the payment is not charged.
// It returns the reservation and the time the payment is judged at. A
// payment run again (its first run's process died) is judged as its
// first run was, at its time: what it charged agrees with what it
// answers. Its hold is the first run's (Again), which this run does not
// give back: the first may have moved money.
//
// The reservation is kept in the payment's spendHold (the service puts
// one in ctx): the rules that ask again get it without a call to the
// state. Without one, each asks the state, which returns the
// transaction's first Reserve again and changes nothing.
func reservePayment(ctx context.Context, state CustomerState, window time.Duration, now func() time.Time, s tai.Signal[Payment]) (Reservation, time.Time, error) {
	h, _ := ctx.Value(spendHoldKey{}).(*spendHold)
	if h != nil {
		if res, t, ok := h.reservation(s.ID); ok {
			return res, t, nil
		}
	}
	p := &s.Payload
	t := now()
	var at *Point
	if p.HasCoords {
		at = &Point{Lat: p.Lat, Lon: p.Lon, At: t}
	}
	res, err := state.Reserve(ctx, p.CustomerID, s.ID, p.Currency, p.Minor, t, window, at)
	if err != nil {
		if h != nil {
			// The Reserve may be stored though its answer was lost (a
			// timeout, a connection cut after the write): its hold is
			// given back as a hold is, and Release gives back only one
			// the store holds.
			h.setUnanswered(s.ID, heldSpend{customer: p.CustomerID, currency: p.Currency, minor: p.Minor, at: t, unanswered: true})
		}
		return Reservation{}, time.Time{}, fmt.Errorf("attempts, day's spend and location: %w", err)
	}
	if !res.At.IsZero() {
		t = res.At
	}
	if h != nil {
		h.set(s.ID, res, heldSpend{customer: p.CustomerID, currency: p.Currency, minor: p.Minor, at: t, again: res.Again})
	}
	return res, t, nil
}

// spendHold is, for one payment, the day's spend the fraud rules held
// for it: the charge keeps it, and a payment not charged gives it back.
// It keeps the reservation that took it, for the rules that ask again.
type spendHold struct {
	mu   sync.Mutex
	held bool
	hold heldSpend
	txn  string
	res  Reservation
}

// heldSpend is what a hold took: minor of currency on the day of at.
// again is set when the hold is an earlier run's of the payment
// (Reservation.Again); unanswered when the Reserve failed, and may or
// may not have been stored.
type heldSpend struct {
	customer, currency string
	minor              int64
	at                 time.Time
	again              bool
	unanswered         bool
}

type spendHoldKey struct{}

func (h *spendHold) set(txn string, res Reservation, hold heldSpend) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.held, h.hold, h.txn, h.res = true, hold, txn, res
}

// setUnanswered records the hold a Reserve of transaction txn that
// failed may have taken: given back, never asked again.
func (h *spendHold) setUnanswered(txn string, hold heldSpend) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.held {
		h.held, h.hold, h.txn = true, hold, txn
	}
}

// reservation returns the reservation of transaction txn and the time
// its payment is judged at, if it was made.
func (h *spendHold) reservation(txn string) (Reservation, time.Time, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.held || h.txn != txn || h.hold.unanswered {
		return Reservation{}, time.Time{}, false
	}
	return h.res, h.hold.at, true
}

// taken returns the hold, if the lookup took one.
func (h *spendHold) taken() (heldSpend, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.hold, h.held
}
