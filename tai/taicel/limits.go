package taicel

import (
	"context"
	"errors"
	"fmt"
	"math"

	"cel.dev/cel-go/cel"
	"cel.dev/cel-go/common/ast"
	"cel.dev/cel-go/common/cost"
	"cel.dev/cel-go/common/operators"
	"cel.dev/cel-go/common/overloads"
	"cel.dev/cel-go/common/types"
	"cel.dev/cel-go/common/types/ref"
	"cel.dev/cel-go/common/types/traits"
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
		opts = append(opts, cel.CostLimit(maxCost), cel.CostTracking(runtimeCosts{}))
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

// runtimeCosts is the cost.ActualCostEstimator of a program whose cost
// is tracked. It counts two kinds of call that CEL's tracker counts as
// one unit whatever they do.
//
// A list concatenation, l + m, makes a list that refers to both without
// copying them, as long as both; a call that goes through it (x in l,
// l == m, l.join()) is counted only once it has gone through it all.
// So a list doubled in each of a chain of maps would reach 2⁴⁰ elements
// for a few hundred units, and one comparison of it run for hours. A
// concatenation counts as the smaller of its two lists, at least one
// unit: a list doubled costs as much as it grows, and a comprehension's
// result, which grows by an element a step, a unit a step, as CEL
// counts it. No list then has more elements than it cost to make.
//
// A call whose overload CEL picks only at evaluation, from the types of
// its arguments, as it does for an operator over dyn operands
// (payload.A + payload.B of a dynamic payload, dyn(x) < y, x in
// payload.L), has no overload the tracker knows: a string doubled in
// each of a chain of maps would grow to gigabytes within the limit.
// Such a call counts as the overload it runs, as one whose overload the
// checker picked does: the length of the strings or bytes it joins,
// compares or converts, the elements of the list it searches.
type runtimeCosts struct{}

// standardTrackers count the calls of CEL's standard overloads.
var standardTrackers = cost.StandardOverloadTrackers()

// CallCost returns the cost of a list concatenation or of a call CEL
// dispatched at evaluation, or nil for another, which CEL counts.
func (runtimeCosts) CallCost(function, overloadID string, args []ref.Val, result ref.Val) *uint64 {
	switch overloadID {
	case overloads.AddList:
		return concatCost(args)
	case "":
	default:
		return nil
	}
	id := dispatchedOverload(function, args)
	if id == overloads.AddList {
		return concatCost(args)
	}
	track := standardTrackers[id]
	if track == nil {
		return nil
	}
	return track(args, result)
}

// concatCost is the cost of the concatenation of two lists: the size of
// the smaller, at least 1.
func concatCost(args []ref.Val) *uint64 {
	n := uint64(1)
	if len(args) == 2 {
		a, aok := args[0].(traits.Lister)
		b, bok := args[1].(traits.Lister)
		if aok && bok {
			x, _ := a.Size().(types.Int)
			y, _ := b.Size().(types.Int)
			n = max(n, uint64(max(min(x, y), 0)))
		}
	}
	return &n
}

// dispatchedOverload returns the ID of the standard overload of function
// that args select, among list concatenation and those whose cost grows
// with their arguments, or "".
func dispatchedOverload(function string, args []ref.Val) string {
	if len(args) == 1 {
		switch _, s := args[0].(types.String); {
		case function == overloads.TypeConvertBytes && s:
			return overloads.StringToBytes
		case function == overloads.TypeConvertString && isBytes(args[0]):
			return overloads.BytesToString
		}
		return ""
	}
	if len(args) != 2 {
		return ""
	}
	_, l0 := args[0].(traits.Lister)
	_, l1 := args[1].(traits.Lister)
	switch {
	case function == operators.In && l1:
		return overloads.InList
	case function == operators.In:
		return ""
	case function == operators.Add && l0 && l1:
		return overloads.AddList
	}
	_, s0 := args[0].(types.String)
	_, s1 := args[1].(types.String)
	strs, byts := s0 && s1, isBytes(args[0]) && isBytes(args[1])
	if !strs && !byts {
		return ""
	}
	pick := func(ofStrings, ofBytes string) string {
		if strs {
			return ofStrings
		}
		return ofBytes
	}
	switch function {
	case operators.Add:
		return pick(overloads.AddString, overloads.AddBytes)
	case operators.Less:
		return pick(overloads.LessString, overloads.LessBytes)
	case operators.LessEquals:
		return pick(overloads.LessEqualsString, overloads.LessEqualsBytes)
	case operators.Greater:
		return pick(overloads.GreaterString, overloads.GreaterBytes)
	case operators.GreaterEquals:
		return pick(overloads.GreaterEqualsString, overloads.GreaterEqualsBytes)
	}
	return ""
}

func isBytes(v ref.Val) bool {
	_, ok := v.(types.Bytes)
	return ok
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
