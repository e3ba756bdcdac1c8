package taicel

import (
	"cel.dev/cel-go/cel"
	"cel.dev/cel-go/common/ast"
)

// planError is an error of cel.Env.Program: CEL folds constants and
// compiles constant regular expressions when it plans a program, and
// refuses one that fails then (int('12x'), duration('1x'),
// x.matches('[')) with an error that says what failed but not where.
// node is the ID of the expression that failed, zero when none could be
// told.
type planError struct {
	err  error
	node int64
}

func (e *planError) Error() string { return e.err.Error() }
func (e *planError) Unwrap() error { return e.err }

// failingNode returns the ID of the expression of a that CEL fails to
// plan with opts, as Program did: starting from the whole expression,
// it plans each child alone, in the order the planner takes them, and
// goes down into the first one that fails, until none does. It returns
// zero when the whole expression plans. It plans a few times the
// expression's size, and runs only when a program has failed.
func failingNode(env *cel.Env, a *ast.AST, opts []cel.ProgramOption) int64 {
	fails := func(e ast.Expr) bool {
		sub := ast.NewCheckedAST(ast.NewAST(e, a.SourceInfo()), a.TypeMap(), a.ReferenceMap())
		_, err := env.PlanProgram(sub, opts...)
		return err != nil
	}
	e := ast.NavigateExpr(a, a.Expr())
	if !fails(e) {
		return 0
	}
	for {
		var next ast.NavigableExpr
		for _, c := range e.Children() {
			if fails(c) {
				next = c
				break
			}
		}
		if next == nil {
			return e.ID()
		}
		e = next
	}
}
