package tai

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"

	"github.com/taipattern/taikit/internal/typednil"
)

// A Policy decides whether a signal may go on to the action. It returns
// a Decision, or an error when it cannot decide (a store is down); an
// error fails the signal unless the policy is wrapped with FailOpen.
type Policy[T any] interface {
	Evaluate(ctx context.Context, s Signal[T]) (Decision, error)
}

// PolicyFunc adapts an ordinary function to a Policy.
type PolicyFunc[T any] func(ctx context.Context, s Signal[T]) (Decision, error)

// Evaluate calls f(ctx, s).
func (f PolicyFunc[T]) Evaluate(ctx context.Context, s Signal[T]) (Decision, error) {
	return f(ctx, s)
}

// Namer is implemented by hooks and policies that have a name. The pipeline
// uses it to name spans and errors. It asks a gate or guard for its name
// once, in New, and a policy (and each child of All and Any) at each
// signal, so a policy whose name changes, as a rule set reloaded under a
// new name does, names each signal's span and errors with the name it has
// then. An empty name is no name: the pipeline uses a default.
type Namer interface {
	Name() string
}

// nameOf returns n.Name() when v is a Namer, else def.
func nameOf(v any, def string) string {
	if n, ok := v.(Namer); ok {
		if name := n.Name(); name != "" {
			return name
		}
	}
	return def
}

// validator is implemented by the combinators, so New can reject a tree
// with a nil policy in it before the first signal.
type validator interface {
	validate() error
}

var errNilPolicy = errors.New("tai: nil policy")

func validatePolicy(p any) error {
	if isNil(p) {
		return errNilPolicy
	}
	if v, ok := p.(validator); ok {
		return v.validate()
	}
	return nil
}

// isNil reports whether v is nil, or holds a nil function or pointer: a
// PolicyFunc(nil), or a *Scored whose constructor's error was ignored.
// Either would panic on every signal, and in a Namer's Name. (A nil
// map or slice may be a working hook: reading one is allowed.)
func isNil(v any) bool { return v == nil || typednil.Holds(v) }

// Named gives p a name: spans and errors use it, and a decision of p
// without a Policy field gets it.
func Named[T any](name string, p Policy[T]) Policy[T] {
	return &named[T]{name: name, p: p}
}

type named[T any] struct {
	name string
	p    Policy[T]
}

func (n *named[T]) Name() string    { return n.name }
func (n *named[T]) validate() error { return validatePolicy(n.p) }

func (n *named[T]) Evaluate(ctx context.Context, s Signal[T]) (Decision, error) {
	d, err := n.p.Evaluate(ctx, s)
	if d.Policy == "" {
		d.Policy = n.name
	}
	return d, err
}

// FailOpen wraps p so that an error from it, or a panic in it, allows the
// signal instead of failing it, as a Scored rule marked FailOpen does. The
// decision then has Verdict Allow, FailedOpen set and the error (a panic's
// as a *PanicError's text, without its stack) in its Reason, so records
// and audit trails show what happened. Use it for advisory checks whose
// outage, or bug, must not stop the line. A policy that ends its goroutine
// with runtime.Goexit ends it all the same.
func FailOpen[T any](p Policy[T]) Policy[T] {
	return &failOpen[T]{p: p}
}

type failOpen[T any] struct{ p Policy[T] }

func (f *failOpen[T]) Name() string    { return nameOf(f.p, "") }
func (f *failOpen[T]) validate() error { return validatePolicy(f.p) }

func (f *failOpen[T]) Evaluate(ctx context.Context, s Signal[T]) (d Decision, err error) {
	returned := false
	defer func() {
		if !returned {
			// recover gives nil for a runtime.Goexit, which goes on.
			if v := recover(); v != nil {
				d, err = f.failed(Decision{}, newPanicError(StagePolicy, v)), nil
			}
		}
	}()
	d, err = f.p.Evaluate(ctx, s)
	returned = true
	if err == nil && !d.Verdict.Valid() {
		err = errNoVerdict(d.Verdict)
	}
	if err != nil {
		return f.failed(d, err), nil
	}
	return d, nil
}

// failed is the decision of a policy that failed open with err.
func (f *failOpen[T]) failed(d Decision, err error) Decision {
	return Decision{
		Verdict:    Allow,
		Policy:     nameOf(f.p, d.Policy),
		Reason:     "failed open: " + err.Error(),
		FailedOpen: true,
	}
}

func errNoVerdict(v Verdict) error {
	if v == 0 {
		return errors.New("decision has no verdict")
	}
	return fmt.Errorf("decision has invalid verdict %d", uint8(v))
}

// All combines policies that must all allow. They run in order; the first
// Deny stops the evaluation and is the decision. Otherwise the decision is
// the most severe one (Review over Allow), and among equally severe ones the
// one with the highest score (a NaN score ranks below every number), so a
// scored policy's score survives the combination. The first error stops
// the evaluation and is returned, with the decision's FailedOpen set when
// a policy before it failed open. All of no policies allows. All keeps a
// copy of the list: a slice passed to it may be reused.
func All[T any](policies ...Policy[T]) Policy[T] {
	return &all[T]{ps: slices.Clone(policies)}
}

type all[T any] struct{ ps []Policy[T] }

func (a *all[T]) Name() string    { return "all" }
func (a *all[T]) validate() error { return validateChildren(a.ps) }

func (a *all[T]) Evaluate(ctx context.Context, s Signal[T]) (Decision, error) {
	best := Decision{Verdict: Allow, Policy: "all"}
	failedOpen := false
	for i, p := range a.ps {
		d, err := evalChild(ctx, p, s, i)
		failedOpen = failedOpen || d.FailedOpen
		if err != nil {
			d.FailedOpen = failedOpen
			return d, err
		}
		if d.Verdict == Deny {
			d.FailedOpen = failedOpen
			return d, nil
		}
		if i == 0 || d.Verdict > best.Verdict || (d.Verdict == best.Verdict && higher(d.Score, best.Score)) {
			best = d
		}
	}
	best.FailedOpen = failedOpen
	return best, nil
}

// Any combines alternative policies: the first Allow stops the evaluation
// and is the decision. When none allows, the decision is the Review with
// the highest score if any said Review, else the Deny with the highest
// score: the first on a tie, and a NaN score ranks below every number.
// The first error stops the evaluation and is returned, with FailedOpen
// as All sets it. Any of no policies denies. Any keeps a copy of the
// list, as All does.
func Any[T any](policies ...Policy[T]) Policy[T] {
	return &anyOf[T]{ps: slices.Clone(policies)}
}

type anyOf[T any] struct{ ps []Policy[T] }

func (a *anyOf[T]) Name() string    { return "any" }
func (a *anyOf[T]) validate() error { return validateChildren(a.ps) }

func (a *anyOf[T]) Evaluate(ctx context.Context, s Signal[T]) (Decision, error) {
	best := Decision{Verdict: Deny, Policy: "any", Reason: "no policy allowed"}
	failedOpen := false
	for i, p := range a.ps {
		d, err := evalChild(ctx, p, s, i)
		failedOpen = failedOpen || d.FailedOpen
		if err != nil {
			d.FailedOpen = failedOpen
			return d, err
		}
		if d.Verdict == Allow {
			d.FailedOpen = failedOpen
			return d, nil
		}
		if i == 0 || d.Verdict < best.Verdict || (d.Verdict == best.Verdict && higher(d.Score, best.Score)) {
			best = d
		}
	}
	best.FailedOpen = failedOpen
	return best, nil
}

// higher reports whether score a ranks above b: a NaN (a policy's 0/0) is
// no score, below every number.
func higher(a, b float64) bool {
	return a > b || (math.IsNaN(b) && !math.IsNaN(a))
}

func validateChildren[T any](ps []Policy[T]) error {
	for i, p := range ps {
		if err := validatePolicy(p); err != nil {
			return fmt.Errorf("policy %d: %w", i, err)
		}
	}
	return nil
}

// evalChild evaluates one child of a combinator, in a span of its own when
// the context carries a Tracer, and checks the verdict. A child's error is
// a *PolicyError named as the pipeline names its policy's: by the Policy
// of the child's decision, else the child's name, else its index ("#1").
// The span ends as the policy stage's span does: with the child's error,
// with a *DeniedError holding its decision when it denied (whatever the
// combinator then decides), nil otherwise. A child that panics, or ends
// its goroutine with runtime.Goexit, ends its span with a *PanicError,
// and the panic goes on to Process, even should End panic or end the
// goroutine.
func evalChild[T any](ctx context.Context, p Policy[T], s Signal[T], i int) (d Decision, err error) {
	returned := false
	// With a span, the child is asked its name once, before it runs: a
	// child renamed while it evaluates names its span and its error alike
	// (unless its decision names it).
	name, named := "", false
	if t := TracerFromContext(ctx); t != nil {
		var span Span
		name, named = nameOf(p, ""), true
		ctx, span = t.Start(ctx, SpanInfo{Stage: StagePolicy, Name: nameOrDefault(name, "policy"), Kind: s.Kind, SignalID: s.ID})
		if span != nil {
			defer func() {
				if returned {
					if err == nil && d.Verdict == Deny {
						span.End(&DeniedError{Decision: d})
						return
					}
					span.End(err)
					return
				}
				v := recover() // nil when the child called runtime.Goexit
				if v != nil {
					// Should End panic too, or end the goroutine
					// (runtime.Goexit), the child's panic goes on all
					// the same: the first panic fails the signal.
					defer panic(v)
				}
				span.End(newPanicError(StagePolicy, v))
			}()
		}
	}
	d, err = p.Evaluate(ctx, s)
	returned = true
	if err == nil && !d.Verdict.Valid() {
		err = errNoVerdict(d.Verdict)
	}
	if err != nil && !namesPolicy(err) {
		// A child that names itself in its decision is named so, as the
		// pipeline names its policy; else by its name, else its index.
		if d.Policy == "" && !named {
			name = nameOf(p, "")
		}
		name = nameOrDecision(name, d.Policy)
		if name == "" {
			name = "#" + strconv.Itoa(i)
		}
		err = &PolicyError{Policy: name, Err: err}
	}
	return d, err
}

// nameOrDefault returns name, or def when name is empty.
func nameOrDefault(name, def string) string {
	if name != "" {
		return name
	}
	return def
}

// namesPolicy reports whether err already says which policy failed and
// how, as Process returns it: a *PolicyError of a combinator nested in
// another, which names the policy that failed, or a *PanicError. Either
// must be the outermost of tai's errors in err's tree, the one OutcomeOf
// goes by: a rejection or a denial of another pipeline that holds one
// (joined with it, or wrapping it) is an error of the policy like any
// other, or the signal would end Rejected or Denied for a policy that
// failed.
func namesPolicy(err error) bool {
	var o outcomer
	if !errors.As(err, &o) {
		return false
	}
	switch o.(type) {
	case *PolicyError, *PanicError:
		return true
	}
	return false
}
