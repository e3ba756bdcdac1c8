package tai

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
)

// Rule is one weighted check of a Scored policy. Check reports a risk in
// [0, 1] (0: nothing suspicious, 1: certainly bad) and a reason; the rule
// adds Weight × risk to the score. Values outside [0, 1] are clamped; NaN
// is an error.
type Rule[T any] struct {
	// Name identifies the rule in contributions, spans and errors; unique
	// within a policy, and neither beginning nor ending with white space
	// (" fraud" would read as "fraud" where the two are shown).
	Name string
	// Weight is the most the rule adds to the score: a finite number >= 0.
	// A rule of weight 0 runs but never contributes.
	Weight float64
	// Check reports the rule's risk for a signal. A panic in it is an error
	// of the rule (a *PanicError).
	Check func(ctx context.Context, s Signal[T]) (risk float64, reason string, err error)
	// FailOpen makes an error from Check count as no risk (the decision
	// then has FailedOpen set) instead of failing the signal.
	FailOpen bool
}

// ScoreTolerance is how far below a threshold of a Scored policy a score
// may fall and still reach it. A sum of weighted risks carries rounding
// errors of floating point (0.7 + 0.2 + 0.1 is 0.9999999999999999), far
// smaller than this; a score that reaches a threshold only within the
// tolerance is reported as the threshold itself. A score of 0 reaches no
// threshold.
const ScoreTolerance = 1e-9

// ScoredOptions names a Scored policy and sets its thresholds. The zero
// value is useful: a policy named "scored" that denies at 0.5 and has no
// review band.
type ScoredOptions struct {
	// Name is the policy's name in decisions and spans. Default "scored".
	Name string
	// Deny is the score at or above which the verdict is Deny, in (0, 1].
	// Zero means 0.5. A score counts as reaching it when it falls short by
	// no more than ScoreTolerance.
	Deny float64
	// Review is the score at or above which the verdict is Review, in
	// (0, Deny], within ScoreTolerance as Deny. Zero means no review band:
	// below Deny is Allow.
	Review float64
}

// Scored is a policy that adds weighted rule risks into a score in [0, 1]
// and compares it with thresholds, within ScoreTolerance: how fraud
// scoring works. Every rule runs on every signal (rules may keep state,
// such as attempt counters), in order, until one fails: an error from a
// rule not marked FailOpen ends the evaluation, the rules after it do not
// run, and the policy errs (the pipeline then fails the signal). The
// decision lists the rules that contributed and how much; its Reason is
// the reason of the largest contribution.
//
// A Scored is made by NewScored. The zero Scored (or one embedded in a
// struct of the caller's and never set) has no rules to score with: it
// fails closed, as a zero Verdict does. New rejects it, and its Evaluate
// returns an error.
type Scored[T any] struct {
	name   string
	deny   float64
	review float64
	rules  []Rule[T]
}

// NewScored returns a Scored policy, or an error naming the first invalid
// threshold or rule: thresholds outside their range, a rule without a name
// or Check, a duplicate name, a negative, NaN or infinite weight.
func NewScored[T any](opts ScoredOptions, rules ...Rule[T]) (*Scored[T], error) {
	p := &Scored[T]{name: opts.Name, deny: opts.Deny, review: opts.Review}
	if p.name == "" {
		p.name = "scored"
	}
	if p.deny == 0 {
		p.deny = 0.5
	}
	if !(p.deny > 0 && p.deny <= 1) { // also rejects NaN
		return nil, fmt.Errorf("tai: ScoredOptions.Deny %v is outside (0, 1]", opts.Deny)
	}
	if p.review == 0 {
		p.review = p.deny
	}
	if !(p.review > 0 && p.review <= p.deny) {
		return nil, fmt.Errorf("tai: ScoredOptions.Review %v is outside (0, Deny=%v]", opts.Review, p.deny)
	}
	if len(rules) == 0 {
		return nil, errors.New("tai: a scored policy needs at least one rule")
	}
	seen := make(map[string]bool, len(rules))
	for i, r := range rules {
		switch {
		case r.Name == "":
			return nil, fmt.Errorf("tai: rule %d has no Name", i)
		case strings.TrimSpace(r.Name) == "":
			return nil, fmt.Errorf("tai: rule %d has no Name: %q is only white space", i, r.Name)
		case strings.TrimSpace(r.Name) != r.Name:
			return nil, fmt.Errorf("tai: rule %d has Name %q, which begins or ends with white space", i, r.Name)
		case seen[r.Name]:
			return nil, fmt.Errorf("tai: rule name %q is used twice", r.Name)
		case r.Check == nil:
			return nil, fmt.Errorf("tai: rule %q has no Check", r.Name)
		case !(r.Weight >= 0) || math.IsInf(r.Weight, 0):
			return nil, fmt.Errorf("tai: rule %q has weight %v; want a finite number >= 0", r.Name, r.Weight)
		}
		seen[r.Name] = true
	}
	p.rules = append([]Rule[T](nil), rules...)
	return p, nil
}

// Name returns the policy's name.
func (p *Scored[T]) Name() string { return p.name }

// errNotMade is the error of a Scored that NewScored did not make.
var errNotMade = errors.New("tai: a Scored policy has no rules; make it with NewScored")

// validate rejects, in New, a Scored that NewScored did not make.
func (p *Scored[T]) validate() error {
	if p == nil { // a nil *Scored embedded in a struct of the caller's
		return errNilPolicy
	}
	if len(p.rules) == 0 {
		return errNotMade
	}
	return nil
}

// Thresholds returns the review and deny thresholds in force.
func (p *Scored[T]) Thresholds() (review, deny float64) { return p.review, p.deny }

// Evaluate runs every rule and returns the scored decision. A rule error
// fails the evaluation unless the rule is marked FailOpen. A Scored that
// NewScored did not make returns an error.
func (p *Scored[T]) Evaluate(ctx context.Context, s Signal[T]) (Decision, error) {
	if len(p.rules) == 0 {
		return Decision{Policy: p.name}, errNotMade
	}
	d := Decision{Policy: p.name}
	var top float64
	for i := range p.rules {
		r := &p.rules[i]
		risk, reason, err := p.check(ctx, r, s)
		if err != nil {
			if !r.FailOpen {
				// A rule that failed open before this one still did.
				return Decision{Policy: p.name, FailedOpen: d.FailedOpen}, fmt.Errorf("rule %q: %w", r.Name, err)
			}
			d.FailedOpen = true
			continue
		}
		// A weighted risk that rounds to 0 (a tiny weight or risk) adds
		// nothing, as a rule of weight 0 or risk 0 does.
		score := r.Weight * risk
		if score <= 0 {
			continue
		}
		c := Contribution{Rule: r.Name, Weight: r.Weight, Risk: risk, Score: score, Reason: reason}
		d.Score += c.Score
		if c.Score > top {
			top, d.Reason = c.Score, reason
		}
		d.Contributions = append(d.Contributions, c)
	}
	d.Score = min(d.Score, 1)
	switch {
	case d.Score > 0 && d.Score >= p.deny-ScoreTolerance:
		d.Score, d.Verdict = max(d.Score, p.deny), Deny
	case d.Score > 0 && d.Score >= p.review-ScoreTolerance:
		d.Score, d.Verdict = max(d.Score, p.review), Review
	default:
		d.Verdict = Allow
	}
	return d, nil
}

func (p *Scored[T]) check(ctx context.Context, r *Rule[T], s Signal[T]) (risk float64, reason string, err error) {
	var span Span
	if t := TracerFromContext(ctx); t != nil {
		ctx, span = t.Start(ctx, SpanInfo{Stage: StagePolicy, Name: p.name + "/" + r.Name, Kind: s.Kind, SignalID: s.ID})
	}
	returned := false
	defer func() {
		if !returned {
			// A panic becomes the rule's error; a runtime.Goexit
			// (recover gives nil) goes on. Either way the rule failed.
			v := recover()
			err = newPanicError(StagePolicy, v)
			if v != nil && span != nil {
				// Should End end the goroutine (runtime.Goexit) or
				// panic, the rule's error cannot be returned: its
				// panic goes on to Process, which fails the signal
				// with it.
				ended := false
				defer func() {
					if !ended {
						panic(v)
					}
				}()
				span.End(err)
				ended = true
				return
			}
		}
		EndSpan(span, err)
	}()
	risk, reason, err = r.Check(ctx, s)
	returned = true
	if err == nil && math.IsNaN(risk) {
		err = errors.New("risk is NaN")
	}
	return min(max(risk, 0), 1), reason, err
}
