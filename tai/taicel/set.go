package taicel

import (
	"context"
	"errors"
	"fmt"
	"math"
	"reflect"
	"strconv"
	"strings"
	"time"

	"cel.dev/cel-go/cel"
	"cel.dev/cel-go/common/types"
	"cel.dev/cel-go/common/types/ref"
	"cel.dev/cel-go/interpreter"

	"github.com/taipattern/taikit/tai"
)

// Set is a compiled rule set and a tai.Policy. It is immutable and safe
// for concurrent use.
//
// Evaluate looks the caller's variables up (Options.Lookup), runs the
// verdict rules in order — the first whose expression is true decides,
// with its verdict and reason, and score 0 — and otherwise runs every
// scored rule and adds Weight × risk into a score capped at 1, which the
// thresholds turn into Allow, Review or Deny, exactly as tai.Scored does
// (within tai.ScoreTolerance: a score that reaches a threshold but for the
// rounding of floating point reaches it, and is reported as it).
// The decision lists the scored rules that contributed; its Reason is the
// reason of the largest contribution. A set without scored rules allows
// what no verdict rule decided. An expression that fails at evaluation (a
// missing variable, a division by zero, a cost over Options.MaxCost, a
// comprehension still running when Evaluate's context ends) or a risk
// that is NaN fails the signal with a *RuleError naming the rule.
type Set[T any] struct {
	env           *Env[T]
	cel           *cel.Env // the Env's, with the set's named sets declared
	name, version string
	deny, review  float64
	verdicts      []compiled
	scored        []compiled
	sets          map[string]ref.Val
	free          []string // the variables a dynamic Env declared as dyn for the set
}

type compiled struct {
	name    string
	weight  float64
	verdict tai.Verdict
	isBool  bool
	prg     *program
	reason  []segment
}

// segment is literal text, or an expression whose value is written.
type segment struct {
	text string
	prg  *program
}

// Env returns the Env that compiled the set: where a candidate to shadow
// it (NewShadow) must be compiled.
func (s *Set[T]) Env() *Env[T] { return s.env }

// Name returns the policy's name: the Spec's Name, or "cel".
func (s *Set[T]) Name() string { return s.name }

// Version returns the Spec's Version.
func (s *Set[T]) Version() string { return s.version }

// Thresholds returns the review and deny thresholds in force.
func (s *Set[T]) Thresholds() (review, deny float64) { return s.review, s.deny }

// activation resolves the variables of one evaluation.
type activation struct {
	payload any
	sig     struct{ id, kind, key string }
	time    time.Time
	sets    map[string]ref.Val
	vars    map[string]any
}

func (a *activation) ResolveName(name string) (any, bool) {
	switch name {
	case varPayload:
		return a.payload, true
	case "signal.id":
		return types.String(a.sig.id), true
	case "signal.kind":
		return types.String(a.sig.kind), true
	case "signal.key":
		return types.String(a.sig.key), true
	case "signal.time":
		return types.Timestamp{Time: a.time}, true
	}
	if v, ok := a.sets[name]; ok {
		return v, true
	}
	v, ok := a.vars[name]
	return v, ok
}

func (a *activation) Parent() interpreter.Activation { return nil }

// Current returns s itself: a Set is a Source that never changes.
func (s *Set[T]) Current() *Set[T] { return s }

// Evaluate judges the signal with the set's rules. A comprehension still
// running when ctx ends stops within a hundred iterations, and the
// signal fails with a *RuleError wrapping ctx's error.
func (s *Set[T]) Evaluate(ctx context.Context, sig tai.Signal[T]) (tai.Decision, error) {
	act, err := s.env.activate(ctx, sig)
	if err != nil {
		return tai.Decision{Policy: s.name}, err
	}
	return s.judge(ctx, act)
}

// Replay judges sig with the variables given instead of those Lookup
// would return: a decision recorded with Options.RecordInputs, read back
// with Env.DecodeInputs, is judged again with the set's rules. The same
// set decides as it did then, inputs included. The variables are checked
// and converted as those Lookup returns are (see Options.Lookup): a value
// that cannot be of its variable's declared type is an error. Replay has
// no context to stop it: Options.MaxCost bounds each of its evaluations.
func (s *Set[T]) Replay(sig tai.Signal[T], vars map[string]any) (tai.Decision, error) {
	if err := s.env.checkPayload(sig); err != nil {
		return tai.Decision{Policy: s.name}, err
	}
	vars, err := s.env.typedVars(vars)
	if err != nil {
		return tai.Decision{Policy: s.name}, fmt.Errorf("taicel: replay: %w", err)
	}
	return s.judge(context.Background(), newActivation(sig, vars))
}

// judge decides with act and records the inputs when the Env says so.
func (s *Set[T]) judge(ctx context.Context, act *activation) (tai.Decision, error) {
	d, rule, err := s.decide(ctx, act)
	if err != nil {
		return tai.Decision{Policy: s.name}, err
	}
	if s.env.record {
		if d.Inputs, err = s.env.inputs(act, s.ruleName(rule)); err != nil {
			return tai.Decision{Policy: s.name}, err
		}
	}
	return d, nil
}

// ruleName returns the name of verdict rule i, or "" for -1.
func (s *Set[T]) ruleName(i int) string {
	if i < 0 {
		return ""
	}
	return s.verdicts[i].name
}

// activate checks the payload and looks the variables up.
func (e *Env[T]) activate(ctx context.Context, sig tai.Signal[T]) (*activation, error) {
	if err := e.checkPayload(sig); err != nil {
		return nil, err
	}
	act := newActivation(sig, nil)
	if e.lookup != nil {
		vars, err := e.lookup(ctx, sig)
		if err != nil {
			return nil, fmt.Errorf("taicel: lookup: %w", err)
		}
		if act.vars, err = e.typedVars(vars); err != nil {
			return nil, fmt.Errorf("taicel: lookup: %w", err)
		}
	}
	return act, nil
}

func (e *Env[T]) checkPayload(sig tai.Signal[T]) error {
	if e.ptr && reflect.ValueOf(sig.Payload).IsNil() {
		return errors.New("taicel: the signal's payload is a nil pointer")
	}
	return nil
}

// newActivation returns the activation of sig with vars. signal.time
// reads the signal's time without its monotonic clock reading, which a
// reason would write and a recorded time does not have.
func newActivation[T any](sig tai.Signal[T], vars map[string]any) *activation {
	act := &activation{payload: sig.Payload, time: sig.Time.Round(0), vars: vars}
	act.sig.id, act.sig.kind, act.sig.key = sig.ID, sig.Kind, sig.Key
	return act
}

// decide runs the rules on act, whose sets it sets to the set's; a
// comprehension running when ctx ends stops with an error. It returns the
// decision without inputs and the index of the verdict rule that
// decided, or -1 when the scored rules did.
func (s *Set[T]) decide(ctx context.Context, act *activation) (tai.Decision, int, error) {
	act.sets = s.sets
	for i := range s.verdicts {
		r := &s.verdicts[i]
		out, err := r.prg.eval(ctx, act)
		if err != nil {
			return tai.Decision{}, -1, &RuleError{Rule: r.name, Err: err}
		}
		if b, ok := out.(types.Bool); !ok {
			// only a dynamic Env's rule can return something else
			return tai.Decision{}, -1, &RuleError{Rule: r.name, Err: fmt.Errorf("result %v is not a bool", out.Type())}
		} else if !b {
			continue
		}
		reason, err := r.render(ctx, act)
		if err != nil {
			return tai.Decision{}, -1, err
		}
		return tai.Decision{Verdict: r.verdict, Policy: s.name, Reason: reason}, i, nil
	}
	d := tai.Decision{Policy: s.name}
	var top float64
	for i := range s.scored {
		r := &s.scored[i]
		risk, err := r.risk(ctx, act)
		if err != nil {
			return tai.Decision{}, -1, err
		}
		// A weighted risk that rounds to 0 (a tiny risk) adds nothing, as
		// in tai.Scored: the rule is not listed, nor its reason rendered.
		score := r.weight * risk
		if score <= 0 {
			continue
		}
		reason, err := r.render(ctx, act)
		if err != nil {
			return tai.Decision{}, -1, err
		}
		c := tai.Contribution{Rule: r.name, Weight: r.weight, Risk: risk, Score: score, Reason: reason}
		d.Score += c.Score
		if c.Score > top {
			top, d.Reason = c.Score, reason
		}
		if d.Contributions == nil {
			d.Contributions = make([]tai.Contribution, 0, len(s.scored))
		}
		d.Contributions = append(d.Contributions, c)
	}
	d.Score = min(d.Score, 1)
	switch {
	case d.Score > 0 && d.Score >= s.deny-tai.ScoreTolerance:
		d.Score, d.Verdict = max(d.Score, s.deny), tai.Deny
	case d.Score > 0 && d.Score >= s.review-tai.ScoreTolerance:
		d.Score, d.Verdict = max(d.Score, s.review), tai.Review
	default:
		d.Verdict = tai.Allow
	}
	return d, -1, nil
}

// RuleError reports a rule whose expression, or a {{expr}} of whose
// reason, failed at evaluation: a missing variable, a division by zero, a
// field a dynamic payload does not have, a risk that is NaN, a cost over
// Options.MaxCost (Err wraps ErrCostLimit), or the evaluation's context
// ending in a comprehension (Err wraps the context's error, such as
// context.DeadlineExceeded). Its message, which logs and audit trails
// keep, quotes no value the evaluation read: where CEL's would (a string
// timestamp() could not read, a key a map lacks, an index, a value of a
// Go type CEL cannot read, of which it names only the type), it has …
// instead, unless the expression itself writes that text ("no such key:
// CardCountry" for payload.CardCountry).
type RuleError struct {
	Rule   string // the rule's name
	Reason bool   // the failure is in the rule's Reason
	Err    error
}

func (e *RuleError) Error() string {
	if e.Reason {
		return fmt.Sprintf("taicel: rule %q reason: %v", e.Rule, e.Err)
	}
	return fmt.Sprintf("taicel: rule %q: %v", e.Rule, e.Err)
}

// Unwrap returns Err.
func (e *RuleError) Unwrap() error { return e.Err }

// risk evaluates a scored rule: true is 1, false 0, a double is clamped
// to [0, 1].
func (r *compiled) risk(ctx context.Context, act *activation) (float64, error) {
	out, err := r.prg.eval(ctx, act)
	if err != nil {
		return 0, &RuleError{Rule: r.name, Err: err}
	}
	switch v := out.(type) {
	case types.Bool:
		if v {
			return 1, nil
		}
		return 0, nil
	case types.Double:
		f := float64(v)
		if math.IsNaN(f) {
			return 0, &RuleError{Rule: r.name, Err: errors.New("risk is NaN")}
		}
		return min(max(f, 0), 1), nil
	}
	return 0, &RuleError{Rule: r.name, Err: fmt.Errorf("result %v is not a bool or a double", out.Type())}
}

// render writes the rule's reason.
func (r *compiled) render(ctx context.Context, act *activation) (string, error) {
	if len(r.reason) == 1 && r.reason[0].prg == nil {
		return r.reason[0].text, nil
	}
	var b strings.Builder
	for _, seg := range r.reason {
		if seg.prg == nil {
			b.WriteString(seg.text)
			continue
		}
		out, err := seg.prg.eval(ctx, act)
		if err != nil {
			return "", &RuleError{Rule: r.name, Reason: true, Err: err}
		}
		writeVal(&b, out)
	}
	return b.String(), nil
}

func writeVal(b *strings.Builder, v ref.Val) {
	switch v := v.(type) {
	case types.String:
		b.WriteString(string(v))
	case types.Double:
		b.WriteString(strconv.FormatFloat(float64(v), 'f', -1, 64))
	case types.Int:
		b.WriteString(strconv.FormatInt(int64(v), 10))
	case types.Uint:
		b.WriteString(strconv.FormatUint(uint64(v), 10))
	case types.Bool:
		b.WriteString(strconv.FormatBool(bool(v)))
	case types.Timestamp:
		// As a record keeps it: without the monotonic clock reading of
		// a time read from the clock, and in a zone of its offset alone.
		b.WriteString(asRecorded(v.Time).String())
	default:
		writeValue(b, v.Value())
	}
}

var _ tai.Policy[struct{}] = (*Set[struct{}])(nil)
