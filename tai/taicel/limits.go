package taicel

import (
	"context"
	"errors"
	"fmt"
	"math"

	"cel.dev/cel-go/cel"
	"cel.dev/cel-go/common/ast"
	"cel.dev/cel-go/common/cost"
	"cel.dev/cel-go/common/types/ref"
	"cel.dev/cel-go/interpreter"
)

// DefaultMaxCost is the cost limit of an expression when Options.MaxCost
// is zero. An expression of the rule files of the payment and deployment
// examples costs at most 363 units; a comprehension with a simple
// predicate, such as L.all(x, x < 10), about 5 per element, so the
// default lets one go through some 20,000 elements. An evaluation that
// reaches it has run for a few milliseconds: a rule nested too deep or
// ranging over a list too long fails the signal then instead of stalling
// the pipeline for seconds.
const DefaultMaxCost = 100_000

// ErrCostLimit is wrapped by the error of an evaluation stopped because an
// expression cost more than Options.MaxCost:
// errors.Is(err, taicel.ErrCostLimit).
var ErrCostLimit = errors.New("cost limit exceeded")

// interruptEvery is how many comprehension iterations, counted over all
// the comprehensions of an evaluation, run between two checks of its
// context. A check is a non-blocking receive, cheap beside a hundred
// iterations, and an evaluation stops well within a millisecond of its
// context ending.
const interruptEvery = 100

// program is a compiled expression: a rule's, or one {{expr}} of a
// reason.
type program struct {
	prg cel.Program
	// loops reports that the expression has a comprehension (all, exists,
	// map, filter, cel.bind, ...): the only part of an evaluation that
	// runs long enough to interrupt, and the only one CEL interrupts
	// when the context ends.
	loops bool
	// maxCost is the program's cost limit, for its error.
	maxCost uint64
	// src is the expression, whose own text its errors may quote.
	src string
}

// newProgram plans the checked expression a with its cost limited to
// maxCost. CEL's static estimate bounds the cost of an expression unless
// the cost grows with the size of a value known only at evaluation (a
// list variable, a string compared with another string, a field of a
// dynamic payload): an expression whose bound exceeds maxCost is
// refused, and one whose bound is within it is not tracked, since
// tracking takes several times as long as a small expression's
// evaluation. The others have their cost tracked as they run, and stop
// when it exceeds maxCost. An expression with a comprehension checks,
// every interruptEvery iterations, whether the context it is evaluated
// in has ended.
func newProgram(env *cel.Env, a *cel.Ast, maxCost uint64) (*program, error) {
	opts := []cel.ProgramOption{cel.EvalOptions(cel.OptOptimize)}
	bound, bounded := costBound(env, a)
	switch {
	case bounded && bound > maxCost:
		return nil, fmt.Errorf("the expression can cost up to %d, over the limit of %d (Options.MaxCost)", bound, maxCost)
	case !bounded:
		opts = append(opts, cel.CostLimit(maxCost))
	}
	p := &program{loops: hasComprehension(a), maxCost: maxCost, src: a.Source().Content()}
	if p.loops {
		opts = append(opts, cel.InterruptCheckFrequency(interruptEvery))
	}
	prg, err := env.Program(a, opts...)
	if err != nil {
		return nil, &planError{err: err, node: failingNode(env, a.NativeRep(), opts)}
	}
	p.prg = prg
	return p, nil
}

// eval evaluates the program on act. A program with a comprehension runs
// under ctx when ctx can end, so that it stops when ctx does; the others
// run without it, which costs no allocation. A failed evaluation returns
// a nil value and an error that says whether the cost limit or ctx
// stopped it.
func (p *program) eval(ctx context.Context, act *activation) (ref.Val, error) {
	var (
		out ref.Val
		err error
	)
	if p.loops && ctx.Done() != nil {
		out, _, err = p.prg.ContextEval(ctx, act)
	} else {
		out, _, err = p.prg.Eval(act)
	}
	if err != nil {
		return nil, p.evalError(ctx, err)
	}
	return out, nil
}

// evalError rewrites CEL's errors for a cost over the limit and for an
// interruption, which name neither the limit nor the context's error,
// and leaves out of the others the input values they quote (valueFree).
func (p *program) evalError(ctx context.Context, err error) error {
	var cancelled interpreter.EvalCancelledError
	switch {
	case errors.As(err, &cancelled) && cancelled.Cause == interpreter.CostLimitExceeded:
		return fmt.Errorf("%w: the evaluation costs more than %d (Options.MaxCost)", ErrCostLimit, p.maxCost)
	case writesOverLimit(err):
		return fmt.Errorf("%w: the evaluation would write a string costing more than %d (Options.MaxCost)", ErrCostLimit, p.maxCost)
	case ctx.Err() != nil && errors.Is(err, interpreter.InterruptError{}):
		return stopped(ctx)
	}
	return valueFree(err, p.src)
}

// stopped is the error of an evaluation that ctx interrupted. It wraps
// ctx.Err(), so that errors.Is(err, context.DeadlineExceeded) or
// context.Canceled holds, and the cause, when ctx was ended with one.
func stopped(ctx context.Context) error {
	err := ctx.Err()
	if cause := context.Cause(ctx); cause != nil && !errors.Is(cause, err) {
		return fmt.Errorf("evaluation stopped: %w: %w", err, cause)
	}
	return fmt.Errorf("evaluation stopped: %w", err)
}

// costBound returns the most an evaluation of the checked expression
// can cost, by CEL's static estimate, and whether there is such a bound:
// there is none when the cost depends on the size of a value known only
// at evaluation, which the estimate reports as math.MaxUint64. The
// estimate follows the cost model CEL tracks evaluations with, as an
// upper bound of what they cost.
func costBound(env *cel.Env, a *cel.Ast) (uint64, bool) {
	est, err := env.EstimateCost(a, noSizeHints{})
	if err != nil || est.Max == math.MaxUint64 {
		return 0, false
	}
	return est.Max, true
}

// stringsCostModels prices the two functions of the strings extension
// that CEL counts as one unit whatever they write, string.format and
// strings.quote: each costs what it scans of its format or its string
// and a unit per character it writes. The length of what they write
// has no bound before they run, so an expression that calls one has its
// cost tracked; otherwise a format of ten copies of a string, in a map
// applied a few times over, wrote a string of gigabytes for a few units.
var stringsCostModels = cel.CostModel(
	cost.MemberOverload("string_format", writerCost(cost.Target())),
	cost.Overload("strings_quote", writerCost(cost.Arg(0))),
)

// writerCost is the cost of a function that scans the string in and
// writes its result.
func writerCost(in cost.QuantityExpr) cost.OverloadModelOption {
	return cost.EvalCost(cost.Sum(
		cost.Const(cost.CallCost),
		cost.StringScan(cost.Length(in)),
		cost.Length(cost.Result()),
	))
}

// noSizeHints is a cost.Estimator that knows nothing of the sizes of
// the variables or of the functions' costs: CEL's defaults apply.
type noSizeHints struct{}

func (noSizeHints) EstimateSize(cost.AstNode) *cost.SizeEstimate { return nil }

func (noSizeHints) EstimateCallCost(string, string, *cost.AstNode, []cost.AstNode) *cost.CallEstimate {
	return nil
}

// hasComprehension reports whether the checked expression has a
// comprehension.
func hasComprehension(a *cel.Ast) bool {
	found := false
	ast.PostOrderVisit(a.NativeRep().Expr(), ast.NewExprVisitor(func(e ast.Expr) {
		if e.Kind() == ast.ComprehensionKind {
			found = true
		}
	}))
	return found
}
