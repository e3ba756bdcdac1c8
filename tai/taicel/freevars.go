package taicel

import (
	"slices"
	"strings"

	celast "cel.dev/cel-go/common/ast"
)

// typeIdents are the identifiers CEL resolves to types: never variables.
var typeIdents = map[string]bool{
	"bool": true, "bytes": true, "double": true, "duration": true, "dyn": true, "int": true,
	"list": true, "map": true, "null_type": true, "string": true, "timestamp": true,
	"type": true, "uint": true, "google": true,
}

// freeVars returns, sorted, the variables the rules of spec read (in
// their expressions and reasons) that e does not declare: what a dynamic
// Env declares as dyn. An expression that does not parse is left to
// Compile to report.
func (e *Env[T]) freeVars(spec *Spec) []string {
	found := map[string]bool{}
	for i := range spec.Rules {
		r := &spec.Rules[i]
		e.exprVars(r.Expr, found)
		for text := r.Reason; ; {
			i := strings.Index(text, "{{")
			if i < 0 {
				break
			}
			j := strings.Index(text[i+2:], "}}")
			if j < 0 {
				break
			}
			e.exprVars(text[i+2:i+2+j], found)
			text = text[i+2+j+2:]
		}
	}
	names := make([]string, 0, len(found))
	for name := range found {
		names = append(names, name)
	}
	slices.Sort(names)
	return names
}

// exprVars adds to found the identifiers expr reads that are neither
// declared by e nor bound by a comprehension (the x of all(x, ...)) nor a
// namespace of a function (math in math.greatest(...)).
func (e *Env[T]) exprVars(expr string, found map[string]bool) {
	a, iss := e.env.Parse(expr)
	if iss.Err() != nil {
		return
	}
	root := a.NativeRep().Expr()
	bound := map[string]bool{}
	namespaces := map[int64]bool{}
	celast.PreOrderVisit(root, celast.NewExprVisitor(func(x celast.Expr) {
		switch x.Kind() {
		case celast.ComprehensionKind:
			c := x.AsComprehension()
			bound[c.IterVar()], bound[c.AccuVar()] = true, true
			if v := c.IterVar2(); v != "" {
				bound[v] = true
			}
		case celast.CallKind:
			c := x.AsCall()
			if t := c.Target(); c.IsMemberFunction() && t.Kind() == celast.IdentKind && e.env.HasFunction(t.AsIdent()+"."+c.FunctionName()) {
				namespaces[t.ID()] = true
			}
		}
	}))
	celast.PreOrderVisit(root, celast.NewExprVisitor(func(x celast.Expr) {
		if x.Kind() != celast.IdentKind || namespaces[x.ID()] {
			return
		}
		name := x.AsIdent()
		switch {
		case bound[name], typeIdents[name], e.vars[name] != nil,
			name == varPayload, name == varSignal, name == varSets:
			return
		}
		found[name] = true
	}))
}
