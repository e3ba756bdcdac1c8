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
// their expressions and reasons) that e does not declare, in Vars or in
// its EnvOptions: what a dynamic Env declares as dyn. An expression that
// does not parse is left to Compile to report.
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
// declared by e nor bound by a comprehension around them (the x of
// all(x, ...), inside it) nor a namespace of a function (math in
// math.greatest(...)).
func (e *Env[T]) exprVars(expr string, found map[string]bool) {
	a, iss := e.env.Parse(expr)
	if iss.Err() != nil {
		return
	}
	root := a.NativeRep().Expr()
	namespaces := map[int64]bool{}
	celast.PreOrderVisit(root, celast.NewExprVisitor(func(x celast.Expr) {
		if x.Kind() == celast.CallKind {
			c := x.AsCall()
			if t := c.Target(); c.IsMemberFunction() && t.Kind() == celast.IdentKind && e.env.HasFunction(t.AsIdent()+"."+c.FunctionName()) {
				namespaces[t.ID()] = true
			}
		}
	}))
	e.freeIn(root, nil, namespaces, found)
}

// freeIn adds to found the identifiers x reads that are not in bound, the
// variables of the comprehensions x is inside, nor declared. The parser
// bounds the nesting of expressions, and so the recursion.
func (e *Env[T]) freeIn(x celast.Expr, bound []string, namespaces map[int64]bool, found map[string]bool) {
	switch x.Kind() {
	case celast.IdentKind:
		name := x.AsIdent()
		switch {
		case namespaces[x.ID()], slices.Contains(bound, name), typeIdents[name], e.vars[name] != nil, e.declared[name],
			name == varPayload, name == varSignal, name == varSets:
			return
		}
		found[name] = true
	case celast.CallKind:
		c := x.AsCall()
		if c.IsMemberFunction() {
			e.freeIn(c.Target(), bound, namespaces, found)
		}
		for _, arg := range c.Args() {
			e.freeIn(arg, bound, namespaces, found)
		}
	case celast.SelectKind:
		e.freeIn(x.AsSelect().Operand(), bound, namespaces, found)
	case celast.ListKind:
		for _, el := range x.AsList().Elements() {
			e.freeIn(el, bound, namespaces, found)
		}
	case celast.MapKind:
		for _, entry := range x.AsMap().Entries() {
			me := entry.AsMapEntry()
			e.freeIn(me.Key(), bound, namespaces, found)
			e.freeIn(me.Value(), bound, namespaces, found)
		}
	case celast.StructKind:
		for _, f := range x.AsStruct().Fields() {
			e.freeIn(f.AsStructField().Value(), bound, namespaces, found)
		}
	case celast.ComprehensionKind:
		// The range and the accumulator's start are outside the
		// comprehension's scope; its loop sees the iteration variables
		// and the accumulator, its result the accumulator.
		c := x.AsComprehension()
		e.freeIn(c.IterRange(), bound, namespaces, found)
		e.freeIn(c.AccuInit(), bound, namespaces, found)
		withAccu := append(slices.Clip(bound), c.AccuVar())
		loop := append(slices.Clip(withAccu), c.IterVar())
		if v := c.IterVar2(); v != "" {
			loop = append(loop, v)
		}
		e.freeIn(c.LoopCondition(), loop, namespaces, found)
		e.freeIn(c.LoopStep(), loop, namespaces, found)
		e.freeIn(c.Result(), withAccu, namespaces, found)
	}
}
