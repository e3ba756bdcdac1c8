package taicel

import (
	"cmp"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/taipattern/taikit/internal/firsterr"
	"github.com/taipattern/taikit/tai"
)

// Report is what a backtest found. Its lists are in a stable order (flips
// by verdicts, rules by name, examples and errors in trail order), so two
// backtests of the same trail and set give the same report, whatever the
// number of workers. It encodes as JSON.
type Report struct {
	// Candidate and Version are the candidate set's name and version.
	Candidate string `json:"candidate"`
	Version   string `json:"version"`
	// Policy, Kind and Amount are the backtest's options: the decisions
	// replayed are those of Policy ("*" for any) and Kind (empty for
	// any); Amount is the expression summed.
	Policy string `json:"policy"`
	Kind   string `json:"kind,omitempty"`
	Amount string `json:"amount,omitempty"`

	// Read counts the lines read (blank lines aside).
	Read int `json:"read"`
	// Replayed counts the decisions the candidate judged again.
	Replayed int `json:"replayed"`
	// Skipped counts the decisions of the policy and kind recorded
	// without inputs.
	Skipped int `json:"skipped"`
	// Filtered counts the lines of other kinds and policies, and the
	// Loader's reload records.
	Filtered int `json:"filtered"`
	// Errors counts the decisions that could not be replayed: inputs
	// that do not decode, a rule (or the Amount) that fails.
	Errors int `json:"errors"`
	// ErrorExamples are the first errors.
	ErrorExamples []ReplayError `json:"error_examples,omitempty"`

	// Changed counts the replayed decisions whose verdict the candidate
	// changes; ScoreChanged those whose verdict it keeps with another
	// score.
	Changed      int `json:"changed"`
	ScoreChanged int `json:"score_changed"`
	// Flips break Changed down by recorded and new verdict.
	Flips []Flip `json:"flips"`
	// Rules lists the rules involved in changed decisions, and the rules
	// of the candidate that failed.
	Rules []RuleChange `json:"rules"`
	// Labels scores the recorded and the candidate's decisions against
	// BacktestOptions.Labels; nil without labels.
	Labels *LabelStats `json:"labels,omitempty"`
}

// ReplayError is a decision a backtest could not replay.
type ReplayError struct {
	File  string `json:"file,omitempty"` // empty for Backtest's io.Reader
	Line  int    `json:"line"`
	ID    string `json:"id"`
	Rule  string `json:"rule,omitempty"` // the rule that failed, if one did
	Error string `json:"error"`
}

// Flip counts the decisions whose verdict went From the recorded one To
// the candidate's.
type Flip struct {
	From   tai.Verdict `json:"from"`
	To     tai.Verdict `json:"to"`
	Count  int         `json:"count"`
	Amount float64     `json:"amount"` // the sum of BacktestOptions.Amount; 0 without
	// Examples are the first flips of the kind in the trail.
	Examples []FlipExample `json:"examples,omitempty"`
}

// FlipExample is one decision the candidate changes.
type FlipExample struct {
	ID        string    `json:"id"`
	Time      time.Time `json:"time"` // the line's time
	Amount    float64   `json:"amount"`
	OldReason string    `json:"old_reason"`
	OldScore  float64   `json:"old_score"`
	NewReason string    `json:"new_reason"`
	NewScore  float64   `json:"new_score"`
}

// RuleChange tells how one rule took part in the changed decisions: it
// fired (decided, for a verdict rule; contributed, for a scored rule) in
// the recorded decision only, in the candidate's only, or in both with a
// different contribution (another verdict, or another score); with the
// sums of the Amount of each.
type RuleChange struct {
	Rule            string  `json:"rule"`
	OnlyOld         int     `json:"only_old"`
	OnlyNew         int     `json:"only_new"`
	Different       int     `json:"different"`
	OnlyOldAmount   float64 `json:"only_old_amount"`
	OnlyNewAmount   float64 `json:"only_new_amount"`
	DifferentAmount float64 `json:"different_amount"`
	// Errors counts the decisions the rule failed to judge, such as an
	// expression reading a field or variable no record has.
	Errors     int    `json:"errors"`
	FirstError string `json:"first_error,omitempty"`
}

// LabelStats compares the recorded decisions and the candidate's with the
// labels, over the replayed decisions: a decision at or above Positive
// flags its signal.
type LabelStats struct {
	Positive tai.Verdict `json:"positive"`
	// Labelled counts the IDs labelled positive; Unseen those of them no
	// replayed decision has.
	Labelled  int       `json:"labelled"`
	Unseen    int       `json:"unseen"`
	Recorded  Confusion `json:"recorded"`
	Candidate Confusion `json:"candidate"`
}

// Confusion counts decisions against labels: true and false positives,
// false and true negatives. Precision is TP/(TP+FP) and Recall
// TP/(TP+FN), each 0 when its denominator is.
type Confusion struct {
	TP        int     `json:"tp"`
	FP        int     `json:"fp"`
	FN        int     `json:"fn"`
	TN        int     `json:"tn"`
	Precision float64 `json:"precision"`
	Recall    float64 `json:"recall"`
}

func (c *Confusion) add(flagged, positive bool) {
	switch {
	case flagged && positive:
		c.TP++
	case flagged:
		c.FP++
	case positive:
		c.FN++
	default:
		c.TN++
	}
}

func (c *Confusion) finish() {
	if c.TP+c.FP > 0 {
		c.Precision = float64(c.TP) / float64(c.TP+c.FP)
	}
	if c.TP+c.FN > 0 {
		c.Recall = float64(c.TP) / float64(c.TP+c.FN)
	}
}

// merger adds the judged lines up, in trail order.
type merger struct {
	rep      Report
	examples int
	flips    map[[2]tai.Verdict]*Flip
	rules    map[string]*RuleChange
	labels   map[string]bool
	seen     map[string]bool // labelled positive IDs replayed
	positive tai.Verdict
}

func newMerger[T any](cand *Set[T], opts BacktestOptions) *merger {
	m := &merger{examples: opts.Examples, flips: map[[2]tai.Verdict]*Flip{}, rules: map[string]*RuleChange{},
		labels: opts.Labels, positive: opts.Positive}
	m.rep.Candidate, m.rep.Version = cand.name, cand.version
	m.rep.Policy, m.rep.Kind, m.rep.Amount = cmp.Or(opts.Policy, cand.name), opts.Kind, opts.Amount
	if opts.Labels != nil {
		m.rep.Labels = &LabelStats{Positive: opts.Positive}
		m.seen = map[string]bool{}
	}
	return m
}

// merge adds a batch; it returns the error that ends the backtest.
func (m *merger) merge(b *batch) error {
	for i := range b.out {
		j := &b.out[i]
		if j.status == lineBlank {
			continue
		}
		m.rep.Read++
		switch j.status {
		case lineFiltered:
			m.rep.Filtered++
		case lineSkipped:
			m.rep.Skipped++
		case lineFailed:
			m.rep.Errors++
			if len(m.rep.ErrorExamples) < m.examples {
				m.rep.ErrorExamples = append(m.rep.ErrorExamples, ReplayError{File: b.file, Line: j.line, ID: j.id, Rule: j.errRule, Error: j.err.Error()})
			}
			if j.errRule != "" {
				r := m.rule(j.errRule)
				if r.Errors++; r.Errors == 1 {
					r.FirstError = j.err.Error()
				}
			}
		case lineReplayed:
			m.replayed(j)
		}
	}
	return b.err
}

func (m *merger) replayed(j *judged) {
	m.rep.Replayed++
	if m.rep.Labels != nil {
		m.rep.Labels.Recorded.add(j.old >= m.positive, j.positive)
		m.rep.Labels.Candidate.add(j.new >= m.positive, j.positive)
		if j.positive {
			m.seen[j.id] = true
		}
	}
	if j.scoreChanged {
		m.rep.ScoreChanged++
	}
	if !j.changed {
		return
	}
	m.rep.Changed++
	key := [2]tai.Verdict{j.old, j.new}
	f := m.flips[key]
	if f == nil {
		f = &Flip{From: j.old, To: j.new}
		m.flips[key] = f
	}
	f.Count++
	f.Amount += j.amount
	if len(f.Examples) < m.examples {
		f.Examples = append(f.Examples, FlipExample{ID: j.id, Time: j.time, Amount: j.amount,
			OldReason: j.oldReason, OldScore: j.oldScore, NewReason: j.newReason, NewScore: j.newScore})
	}
	for _, d := range j.diffs {
		r := m.rule(d.rule)
		switch d.diff {
		case firedOnlyA:
			r.OnlyOld++
			r.OnlyOldAmount += j.amount
		case firedOnlyB:
			r.OnlyNew++
			r.OnlyNewAmount += j.amount
		default:
			r.Different++
			r.DifferentAmount += j.amount
		}
	}
}

func (m *merger) rule(name string) *RuleChange {
	r := m.rules[name]
	if r == nil {
		r = &RuleChange{Rule: name}
		m.rules[name] = r
	}
	return r
}

func (m *merger) report() *Report {
	rep := m.rep
	rep.Flips = make([]Flip, 0, len(m.flips))
	for _, f := range m.flips {
		rep.Flips = append(rep.Flips, *f)
	}
	slices.SortFunc(rep.Flips, func(a, b Flip) int {
		return cmp.Or(cmp.Compare(a.From, b.From), cmp.Compare(a.To, b.To))
	})
	rep.Rules = make([]RuleChange, 0, len(m.rules))
	for _, r := range m.rules {
		rep.Rules = append(rep.Rules, *r)
	}
	slices.SortFunc(rep.Rules, func(a, b RuleChange) int { return strings.Compare(a.Rule, b.Rule) })
	if l := rep.Labels; l != nil {
		for id, pos := range m.labels {
			if pos {
				l.Labelled++
				if !m.seen[id] {
					l.Unseen++
				}
			}
		}
		l.Recorded.finish()
		l.Candidate.finish()
	}
	return &rep
}

// WriteText writes the report for people to read: the counts, each flip
// with its examples, the rules involved, the errors and the labels'
// scores. The candidate's name or version, an ID, a reason, a rule's
// name or an error holding a character that is not printable (a newline,
// a terminal's escape sequence) is written quoted, with Go's escapes.
func (r *Report) WriteText(w io.Writer) error {
	ew := &firsterr.Writer{W: w}
	p := func(format string, args ...any) { fmt.Fprintf(ew, format, args...) }
	p("candidate %s version %s against the decisions of policy %q", printable(r.Candidate), printable(r.Version), r.Policy)
	if r.Kind != "" {
		p(", kind %q", r.Kind)
	}
	p("\n%d %s: %d replayed, %d without inputs, %d of other kinds or policies, %d %s\n",
		r.Read, plural(r.Read, "line"), r.Replayed, r.Skipped, r.Filtered, r.Errors, plural(r.Errors, "error"))
	p("changed verdicts: %d of %d (%s)", r.Changed, r.Replayed, percent(r.Changed, r.Replayed))
	if r.Amount != "" {
		var total float64
		for _, f := range r.Flips {
			total += f.Amount
		}
		p(", %s %s", r.Amount, money(total))
	}
	p("; scores changed, verdict kept: %d\n", r.ScoreChanged)

	if len(r.Flips) > 0 {
		p("\nflips:\n")
		for _, f := range r.Flips {
			p("  %-6s -> %-6s %7d", f.From, f.To, f.Count)
			if r.Amount != "" {
				p("  %s %s", r.Amount, money(f.Amount))
			}
			p("\n")
			for _, ex := range f.Examples {
				p("      %s %s", printable(ex.ID), ex.Time.UTC().Format(time.RFC3339))
				if r.Amount != "" {
					p("  %s", money(ex.Amount))
				}
				p("\n        was %-6s %.2f%s\n        now %-6s %.2f%s\n", f.From, ex.OldScore, spaced(printable(ex.OldReason)), f.To, ex.NewScore, spaced(printable(ex.NewReason)))
			}
		}
	}

	if len(r.Rules) > 0 {
		p("\nrules in the changed decisions:\n")
		w := len("rule")
		for _, rc := range r.Rules {
			w = max(w, len(printable(rc.Rule)))
		}
		p("  %-*s  only old  only new  different  errors", w, "rule")
		if r.Amount != "" {
			p("  %15s  %15s  %16s", "only old amount", "only new amount", "different amount")
		}
		p("\n")
		for _, rc := range r.Rules {
			p("  %-*s  %8d  %8d  %9d  %6d", w, printable(rc.Rule), rc.OnlyOld, rc.OnlyNew, rc.Different, rc.Errors)
			if r.Amount != "" {
				p("  %15s  %15s  %16s", money(rc.OnlyOldAmount), money(rc.OnlyNewAmount), money(rc.DifferentAmount))
			}
			p("\n")
		}
	}

	if len(r.ErrorExamples) > 0 {
		p("\nerrors (the first %d of %d):\n", len(r.ErrorExamples), r.Errors)
		for _, e := range r.ErrorExamples {
			p("  %s %s: %s\n", where(e.File, e.Line), printable(e.ID), printable(e.Error))
		}
	}

	if l := r.Labels; l != nil {
		p("\nlabels: %d signals labelled positive (%d not replayed); a decision of %s or more flags a signal\n", l.Labelled, l.Unseen, l.Positive)
		p("  %-9s  %6s  %6s  %6s  %6s  %9s  %6s\n", "", "TP", "FP", "FN", "TN", "precision", "recall")
		for _, row := range []struct {
			name string
			c    Confusion
		}{{"recorded", l.Recorded}, {"candidate", l.Candidate}} {
			p("  %-9s  %6d  %6d  %6d  %6d  %9.3f  %6.3f\n", row.name, row.c.TP, row.c.FP, row.c.FN, row.c.TN, row.c.Precision, row.c.Recall)
		}
	}
	return ew.Err
}

// printable returns s, or s quoted with Go's escapes when it holds a
// character that is not printable or is not UTF-8: IDs, reasons, rule
// names and errors come from the trail, and a newline or a terminal's
// escape sequence in one must not forge a line of the report or reach the
// terminal it is read on.
func printable(s string) string {
	if utf8.ValidString(s) && !strings.ContainsFunc(s, func(r rune) bool { return r != ' ' && !unicode.IsPrint(r) }) {
		return s
	}
	return strconv.Quote(s)
}

// spaced returns s after a space, or nothing for an empty s.
func spaced(s string) string {
	if s == "" {
		return ""
	}
	return " " + s
}

// plural returns word, with an s unless n is 1.
func plural(n int, word string) string {
	if n == 1 {
		return word
	}
	return word + "s"
}

func percent(n, of int) string {
	if of == 0 {
		return "0%"
	}
	return fmt.Sprintf("%.2f%%", 100*float64(n)/float64(of))
}

func money(f float64) string { return fmt.Sprintf("%.2f", f) }
