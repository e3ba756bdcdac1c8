package andon

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/taipattern/taikit/internal/typednil"
	"github.com/taipattern/taikit/kaizen"
	"github.com/taipattern/taikit/tai"
)

// OutcomeRate holds when more than threshold (a fraction in [0, 1); 1 or
// more is refused when the evaluator is built, as no more than every
// signal can end so) of the signals of kind that finished in the last
// window ended with one of outcomes.
// OutcomeRate(stats, "payment", 5*time.Minute, 0.02, tai.Denied) is "more
// than 2% of payments denied over 5 minutes". Samples is the number of
// signals in the window.
func OutcomeRate(stats StatsSource, kind string, window time.Duration, threshold float64, outcomes ...tai.Outcome) Condition {
	return &outcomeRate{statsCond: statsCond{stats: stats, kind: kind, window: window}, threshold: threshold, outcomes: slices.Clone(outcomes)}
}

// ErrorRate holds when more than threshold (a fraction in [0, 1), as
// OutcomeRate's) of the signals of kind in the last window failed
// (tai.Failed): OutcomeRate with tai.Failed.
func ErrorRate(stats StatsSource, kind string, window time.Duration, threshold float64) Condition {
	c := OutcomeRate(stats, kind, window, threshold, tai.Failed).(*outcomeRate)
	c.what = "error"
	return c
}

// VerdictRate holds when more than threshold (a fraction in [0, 1); 1 or
// more is refused when the evaluator is built) of the signals of kind that
// reached a decision in the last window got one of verdicts:
// VerdictRate(stats, "payment", 5*time.Minute, 0.02, tai.Deny) is a fraud
// rate above 2%. Signals that reached no decision (a gate shed them) count
// neither way, as in kaizen's decisions_total metric; Samples is the number
// of decided signals.
func VerdictRate(stats StatsSource, kind string, window time.Duration, threshold float64, verdicts ...tai.Verdict) Condition {
	return &verdictRate{statsCond: statsCond{stats: stats, kind: kind, window: window}, threshold: threshold, verdicts: slices.Clone(verdicts)}
}

// LatencyQuantile holds when the latency of the signals of kind at
// quantile q (0.99 for p99; q is in (0, 1]) over the last window is above
// threshold, which must be positive; others are refused when the
// evaluator is built:
// LatencyQuantile(stats, "payment", 5*time.Minute, 0.99, 5*time.Second).
// Value and Threshold are in seconds.
func LatencyQuantile(stats StatsSource, kind string, window time.Duration, q float64, threshold time.Duration) Condition {
	return &latencyQuantile{statsCond: statsCond{stats: stats, kind: kind, window: window}, q: q, threshold: threshold}
}

// statsCond is what every Stats condition shares: where to read and what.
type statsCond struct {
	stats  StatsSource
	kind   string
	window time.Duration
}

func (c *statsCond) validate() error {
	if err := checkStats(c.stats); err != nil {
		return err
	}
	if c.kind == "" {
		return errors.New("the signal kind is empty")
	}
	return checkWindows(c.stats, c.window)
}

// checkStats reports a StatsSource that is nil or holds a nil pointer (a
// nil *kaizen.Stats), which would panic when read.
func checkStats(s StatsSource) error {
	if s == nil {
		return errors.New("the StatsSource is nil")
	}
	if typednil.Holds(s) {
		return fmt.Errorf("the StatsSource is a nil %T", s)
	}
	return nil
}

// checkWindows returns an error naming the first window the Stats does not
// keep, or saying that its Windows method, the program's code, panicked.
func checkWindows(s StatsSource, windows ...time.Duration) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = fmt.Errorf("the Windows method of the StatsSource (%T) panicked: %s", s, panicText(v))
		}
	}()
	kept := s.Windows()
	for _, w := range windows {
		if !slices.Contains(kept, w) {
			names := make([]string, len(kept))
			for i, k := range kept {
				names[i] = promDuration(k)
			}
			return fmt.Errorf("window %s is not kept by the Stats (it keeps %s); add it to kaizen.StatsOptions.Windows",
				promDuration(w), strings.Join(names, ", "))
		}
	}
	return nil
}

// current returns the current period of the window, or a zero Period when
// the kind was never seen.
func (c *statsCond) current() kaizen.Period {
	w, ok := c.stats.Window(c.kind, c.window)
	if !ok {
		return kaizen.Period{}
	}
	return w.Current
}

type outcomeRate struct {
	statsCond
	threshold float64
	outcomes  []tai.Outcome
	what      string // what the rate is of, in String; "" names the outcomes
}

func (c *outcomeRate) validate() error {
	if err := c.statsCond.validate(); err != nil {
		return err
	}
	if err := checkRatio(c.threshold); err != nil {
		return err
	}
	if len(c.outcomes) == 0 {
		return errors.New("no outcome given to OutcomeRate")
	}
	for _, o := range c.outcomes {
		if !validOutcome(o) {
			return fmt.Errorf("outcome %d is not a tai.Outcome", o)
		}
	}
	return nil
}

// validOutcome reports whether o is one of tai's outcomes: those encode.
func validOutcome(o tai.Outcome) bool {
	_, err := o.MarshalText()
	return err == nil
}

func checkRatio(t float64) error {
	if !(t >= 0 && t < 1) {
		return fmt.Errorf("threshold %v is outside [0, 1)", t)
	}
	return nil
}

func (c *outcomeRate) Measure(context.Context, time.Time) (Measurement, error) {
	p := c.current()
	v := p.Ratio(c.outcomes...)
	return Measurement{Active: v > c.threshold, Value: v, Threshold: c.threshold, Unit: UnitRatio, Samples: p.Total}, nil
}

// String describes the condition: "denied rate of payment over 5m",
// "error rate of payment over 5m".
func (c *outcomeRate) String() string {
	what := c.what
	if what == "" {
		what = strings.Join(uniqueNames(c.outcomes), "+")
	}
	return fmt.Sprintf("%s rate of %s over %s", what, c.kind, promDuration(c.window))
}

type verdictRate struct {
	statsCond
	threshold float64
	verdicts  []tai.Verdict
}

func (c *verdictRate) validate() error {
	if err := c.statsCond.validate(); err != nil {
		return err
	}
	if err := checkRatio(c.threshold); err != nil {
		return err
	}
	if len(c.verdicts) == 0 {
		return errors.New("no verdict given to VerdictRate")
	}
	for _, v := range c.verdicts {
		if !v.Valid() {
			return fmt.Errorf("verdict %s is not allow, review or deny", v)
		}
	}
	return nil
}

func (c *verdictRate) Measure(context.Context, time.Time) (Measurement, error) {
	p := c.current()
	decided := p.Total - min(p.Verdicts.None, p.Total)
	var n uint64
	for i, v := range c.verdicts {
		if !slices.Contains(c.verdicts[:i], v) {
			n += p.Verdicts.Of(v)
		}
	}
	var r float64
	if decided > 0 {
		r = float64(n) / float64(decided)
	}
	return Measurement{Active: r > c.threshold, Value: r, Threshold: c.threshold, Unit: UnitRatio, Samples: decided}, nil
}

// String describes the condition: "deny verdict rate of payment over 5m".
func (c *verdictRate) String() string {
	return fmt.Sprintf("%s verdict rate of %s over %s", strings.Join(uniqueNames(c.verdicts), "+"), c.kind, promDuration(c.window))
}

// uniqueNames returns the String of each value, in order, without repeats.
func uniqueNames[T fmt.Stringer](vs []T) []string {
	var names []string
	for _, v := range vs {
		if !slices.Contains(names, v.String()) {
			names = append(names, v.String())
		}
	}
	return names
}

type latencyQuantile struct {
	statsCond
	q         float64
	threshold time.Duration
}

func (c *latencyQuantile) validate() error {
	if err := c.statsCond.validate(); err != nil {
		return err
	}
	if !(c.q > 0 && c.q <= 1) {
		return fmt.Errorf("quantile %v is outside (0, 1]", c.q)
	}
	if c.threshold <= 0 {
		return fmt.Errorf("latency threshold %v is not positive", c.threshold)
	}
	return nil
}

func (c *latencyQuantile) Measure(context.Context, time.Time) (Measurement, error) {
	p := c.current()
	v := p.Quantile(c.q)
	return Measurement{Active: v > c.threshold, Value: v.Seconds(), Threshold: c.threshold.Seconds(), Unit: UnitSeconds, Samples: p.Total}, nil
}

// String describes the condition: "p99 latency of payment over 5m".
func (c *latencyQuantile) String() string {
	return fmt.Sprintf("p%s latency of %s over %s", quantileName(c.q), c.kind, promDuration(c.window))
}

// quantileName writes 0.99 as "99" and 0.999 as "99.9".
func quantileName(q float64) string {
	return strings.TrimRight(strings.TrimRight(fmt.Sprintf("%.4f", q*100), "0"), ".")
}
