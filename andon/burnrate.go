package andon

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/big"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/taipattern/taikit/tai"
)

// SLO is a service level objective on one kind of signal: the share of
// signals that must not be errors.
type SLO struct {
	// Name names the objective; exported recording rules carry it in the
	// "slo" label. Empty means the Kind.
	Name string
	// Kind is the kind of signal the objective covers. Required.
	Kind string
	// Objective is the target share of good signals, in (0, 1): 0.999 is
	// "99.9% of payments do not fail", an error budget of 0.1%.
	Objective float64
	// Errors are the outcomes that spend the error budget. Empty means
	// tai.Failed; add tai.Rejected to count shed signals too.
	Errors []tai.Outcome
}

func (s SLO) name() string {
	if s.Name != "" {
		return s.Name
	}
	return s.Kind
}

func (s SLO) errors() []tai.Outcome {
	if len(s.Errors) == 0 {
		return []tai.Outcome{tai.Failed}
	}
	return s.Errors
}

// BurnWindow is one pair of windows of a multiwindow burn-rate alert: it
// holds when the error budget burns faster than Factor times the
// sustainable rate over both the Long window and the Short one. The short
// window makes the alert resolve soon after the problem ends.
type BurnWindow struct {
	Long, Short time.Duration
	Factor      float64
}

// PageBurnWindows returns the page windows of the SRE workbook's
// multiwindow, multi-burn-rate recipe for a 30-day objective: 2% of the
// budget spent in an hour (14.4× over 1h and 5m) or 5% in six hours (6×
// over 6h and 30m). The slice is new at each call; change it freely.
func PageBurnWindows() []BurnWindow {
	return []BurnWindow{
		{Long: time.Hour, Short: 5 * time.Minute, Factor: 14.4},
		{Long: 6 * time.Hour, Short: 30 * time.Minute, Factor: 6},
	}
}

// TicketBurnWindows returns the ticket windows: the workbook's, 10% of
// the budget spent in three days (1× over 3d and 6h), after a pair the
// workbook's table does not have, 10% spent in a day (3× over 1d and 2h).
// For the workbook's table alone, keep the last pair. The slice is new at
// each call.
func TicketBurnWindows() []BurnWindow {
	return []BurnWindow{
		{Long: 24 * time.Hour, Short: 2 * time.Hour, Factor: 3},
		{Long: 72 * time.Hour, Short: 6 * time.Hour, Factor: 1},
	}
}

// BurnWindowsOf returns the window lengths the pairs read, shortest first:
// what kaizen.StatsOptions.Windows must contain.
func BurnWindowsOf(pairs ...[]BurnWindow) []time.Duration {
	var ws []time.Duration
	for _, ps := range pairs {
		for _, p := range ps {
			ws = append(ws, p.Long, p.Short)
		}
	}
	slices.Sort(ws)
	return slices.Compact(ws)
}

// BurnRate holds when the error budget of slo burns too fast over any of
// the window pairs (PageBurnWindows() or TicketBurnWindows(), or your own): the
// burn rate over a window is its error ratio divided by the budget
// (1 − Objective), and a pair holds when the burn rate exceeds its Factor
// over both its windows.
//
// Every window of every pair must be kept by the Stats, or building the
// evaluator fails naming the missing one; BurnWindowsOf lists them:
//
//	kaizen.StatsOptions{Windows: andon.BurnWindowsOf(andon.PageBurnWindows(), andon.TicketBurnWindows())}
//
// A pair whose Factor times the budget is 1 or more could never hold, as
// no more than every signal can fail: building the evaluator fails naming
// it. The 14.4× page pair needs an objective above 1 − 1/14.4, about
// 93.06%.
//
// Value is the burn rate over the long window of the first pair that
// holds, or of the first pair when none does, and Threshold is that pair's
// Factor; Detail lists every window. Samples is the number of signals in
// the longest window.
//
// The Objective and the Factors are taken as the decimals they are
// written as: the budget of 0.9999 is 0.01%, and an error ratio of
// exactly 14.4 times it burns at 14.4×, not above, although 1 − 0.9999
// in floating point is a little less than 0.0001.
func BurnRate(stats StatsSource, slo SLO, pairs ...BurnWindow) Condition {
	slo.Errors = slices.Clone(slo.Errors)
	c := &burnRate{stats: stats, slo: slo, pairs: slices.Clone(pairs), budget: 1 - slo.Objective,
		limits: make([]float64, len(pairs))}
	budget := decimal(slo.Objective) // then 1 − it
	if budget != nil {
		budget.Sub(big.NewRat(1, 1), budget)
		c.budget, _ = budget.Float64()
	}
	for i, p := range c.pairs {
		c.limits[i] = p.Factor * c.budget
		if f := decimal(p.Factor); f != nil && budget != nil {
			c.limits[i], _ = f.Mul(f, budget).Float64()
		}
	}
	return c
}

type burnRate struct {
	stats StatsSource
	slo   SLO
	pairs []BurnWindow
	// budget is 1 − Objective, and limits[i] the error ratio above which
	// pairs[i] burns faster than its Factor, each worked out exactly from
	// the decimals and then rounded: an error ratio of exactly the limit
	// rounds to it, and is not above it.
	budget float64
	limits []float64
}

// decimal returns v as the shortest decimal that reads back as v, the
// number as it was written (0.9999, not 0.99990000000000001101…), or nil
// for NaN and the infinities.
func decimal(v float64) *big.Rat {
	r, ok := new(big.Rat).SetString(strconv.FormatFloat(v, 'g', -1, 64))
	if !ok {
		return nil
	}
	return r
}

func (c *burnRate) validate() error {
	if err := checkStats(c.stats); err != nil {
		return err
	}
	if c.slo.Kind == "" {
		return errors.New("SLO.Kind is empty")
	}
	if !(c.slo.Objective > 0 && c.slo.Objective < 1) {
		return fmt.Errorf("SLO.Objective %v is outside (0, 1)", c.slo.Objective)
	}
	for _, o := range c.slo.Errors {
		if !validOutcome(o) {
			return fmt.Errorf("SLO.Errors: outcome %d is not a tai.Outcome", o)
		}
	}
	if len(c.pairs) == 0 {
		return errors.New("no burn windows given to BurnRate")
	}
	for i, p := range c.pairs {
		if p.Short <= 0 || p.Long <= p.Short {
			return fmt.Errorf("burn window %d: Long %v must be longer than Short %v > 0", i, p.Long, p.Short)
		}
		if !(p.Factor > 0) || math.IsInf(p.Factor, 0) {
			return fmt.Errorf("burn window %d: Factor %v is not a positive number", i, p.Factor)
		}
		// The error ratio is at most 1, so the burn rate at most 1/budget.
		if r := c.limits[i]; r >= 1 {
			return fmt.Errorf("burn window %d: Factor %v over an error budget of %.4g%% needs an error ratio above %.4g%%; it could never hold",
				i, p.Factor, c.budget*100, r*100)
		}
		if err := checkWindows(c.stats, p.Long, p.Short); err != nil {
			return err
		}
	}
	return nil
}

func (c *burnRate) Measure(context.Context, time.Time) (Measurement, error) {
	outcomes := c.slo.errors()
	// ratio returns the error ratio over w and the signals it rests on.
	ratio := func(w time.Duration) (float64, uint64) {
		ws, ok := c.stats.Window(c.slo.Kind, w)
		if !ok {
			return 0, 0
		}
		return ws.Current.Ratio(outcomes...), ws.Current.Total
	}
	m := Measurement{Unit: UnitFactor}
	var detail strings.Builder
	var longest time.Duration
	for i, p := range c.pairs {
		longRatio, n := ratio(p.Long)
		shortRatio, _ := ratio(p.Short)
		if p.Long > longest {
			longest, m.Samples = p.Long, n
		}
		// Compared as error ratios: the burn rates, divided, may round
		// above the Factor where the ratio is exactly at its limit.
		holds := longRatio > c.limits[i] && shortRatio > c.limits[i]
		long, short := longRatio/c.budget, shortRatio/c.budget
		if i == 0 || (holds && !m.Active) {
			m.Value, m.Threshold = long, p.Factor
		}
		m.Active = m.Active || holds
		if i > 0 {
			detail.WriteString("; ")
		}
		fmt.Fprintf(&detail, "%s %s and %s %s (> %s)", promDuration(p.Long), UnitFactor.Format(long),
			promDuration(p.Short), UnitFactor.Format(short), UnitFactor.Format(p.Factor))
	}
	m.Detail = "burn rate " + detail.String()
	return m, nil
}

// String describes the condition: "error budget burn rate of payment
// (99.9%)".
func (c *burnRate) String() string {
	return fmt.Sprintf("error budget burn rate of %s (%s%%)", c.slo.Kind, percentBelow100(c.slo.Objective*100, 4))
}
