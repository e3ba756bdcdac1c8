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
// thresholds turn into Allow, Review or Deny, exactly as tai.Scored does.
// The decision lists the scored rules that contributed; its Reason is the
// reason of the largest contribution. A set without scored rules allows
// what no verdict rule decided. An expression that fails at evaluation (a
// missing variable, a division by zero) or a risk that is NaN fails the
// signal with an error naming the rule.
type Set[T any] struct {
	name, version string
	deny, review  float64
	verdicts      []compiled
	scored        []compiled
	sets          map[string]ref.Val
	lookup        func(ctx context.Context, s tai.Signal[T]) (map[string]any, error)
	ptr           bool // T is a pointer, which may be nil
}

type compiled struct {
	name    string
	weight  float64
	verdict tai.Verdict
	isBool  bool
	prg     cel.Program
	reason  []segment
}

// segment is literal text, or an expression whose value is written.
type segment struct {
	text string
	prg  cel.Program
}

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

// Evaluate judges the signal with the set's rules.
func (s *Set[T]) Evaluate(ctx context.Context, sig tai.Signal[T]) (tai.Decision, error) {
	if s.ptr && reflect.ValueOf(sig.Payload).IsNil() {
		return tai.Decision{Policy: s.name}, errors.New("taicel: the signal's payload is a nil pointer")
	}
	act := &activation{payload: sig.Payload, time: sig.Time, sets: s.sets}
	act.sig.id, act.sig.kind, act.sig.key = sig.ID, sig.Kind, sig.Key
	if s.lookup != nil {
		vars, err := s.lookup(ctx, sig)
		if err != nil {
			return tai.Decision{Policy: s.name}, fmt.Errorf("taicel: lookup: %w", err)
		}
		act.vars = vars
	}
	for i := range s.verdicts {
		r := &s.verdicts[i]
		out, _, err := r.prg.Eval(act)
		if err != nil {
			return tai.Decision{Policy: s.name}, fmt.Errorf("taicel: rule %q: %w", r.name, err)
		}
		if out != types.True {
			continue
		}
		reason, err := r.render(act)
		if err != nil {
			return tai.Decision{Policy: s.name}, err
		}
		return tai.Decision{Verdict: r.verdict, Policy: s.name, Reason: reason}, nil
	}
	d := tai.Decision{Policy: s.name}
	var top float64
	for i := range s.scored {
		r := &s.scored[i]
		risk, err := r.risk(act)
		if err != nil {
			return tai.Decision{Policy: s.name}, err
		}
		if risk <= 0 {
			continue
		}
		reason, err := r.render(act)
		if err != nil {
			return tai.Decision{Policy: s.name}, err
		}
		c := tai.Contribution{Rule: r.name, Weight: r.weight, Risk: risk, Score: r.weight * risk, Reason: reason}
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
	case d.Score >= s.deny:
		d.Verdict = tai.Deny
	case d.Score >= s.review:
		d.Verdict = tai.Review
	default:
		d.Verdict = tai.Allow
	}
	return d, nil
}

// risk evaluates a scored rule: true is 1, false 0, a double is clamped
// to [0, 1].
func (r *compiled) risk(act *activation) (float64, error) {
	out, _, err := r.prg.Eval(act)
	if err != nil {
		return 0, fmt.Errorf("taicel: rule %q: %w", r.name, err)
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
			return 0, fmt.Errorf("taicel: rule %q: risk is NaN", r.name)
		}
		return min(max(f, 0), 1), nil
	}
	return 0, fmt.Errorf("taicel: rule %q: result %v is not a bool or a double", r.name, out.Type())
}

// render writes the rule's reason.
func (r *compiled) render(act *activation) (string, error) {
	if len(r.reason) == 1 && r.reason[0].prg == nil {
		return r.reason[0].text, nil
	}
	var b strings.Builder
	for _, seg := range r.reason {
		if seg.prg == nil {
			b.WriteString(seg.text)
			continue
		}
		out, _, err := seg.prg.Eval(act)
		if err != nil {
			return "", fmt.Errorf("taicel: rule %q reason: %w", r.name, err)
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
	default:
		fmt.Fprint(b, v.Value())
	}
}

var _ tai.Policy[struct{}] = (*Set[struct{}])(nil)
