package taicel

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math"
	"reflect"
	"slices"
	"strings"

	"cel.dev/cel-go/cel"
	"cel.dev/cel-go/common"
	"cel.dev/cel-go/common/types"
	"cel.dev/cel-go/common/types/ref"
	"cel.dev/cel-go/ext"

	"github.com/taipattern/taikit/tai"
)

// Options configures an Env. The zero value is useful: the payload, the
// signal's context and the rule set's named sets, and no variables of the
// caller's.
type Options[T any] struct {
	// Vars declares the variables the caller supplies for each signal, by
	// name and CEL type: {"attempts": cel.IntType, "spent_today":
	// cel.DoubleType}. A name is a CEL identifier other than payload,
	// signal and sets, and not a word CEL reserves (in, if, let, ...).
	Vars map[string]*cel.Type
	// Lookup returns the values of Vars for a signal: per-customer state
	// such as attempt counts, read from a store. It runs once per signal
	// and set, before the rules. A variable an expression reads that the
	// map lacks fails the evaluation; an error from Lookup fails it too,
	// and so does a value that cannot be of its variable's declared type
	// when that is a scalar (a string or a nil for an int), and a nil for
	// a list or a map (a nil slice or map is empty). Any Go number (a
	// time.Duration too) will do for int, uint and double: it is judged,
	// and recorded, as a value of the declared type (5 for a double is 5.0), and one that
	// type cannot hold exactly (7.5 for an int, -1 for a uint, 2⁵³+1 for a
	// double) fails the evaluation. The map is not changed.
	// Required when Vars is not empty.
	Lookup func(ctx context.Context, s tai.Signal[T]) (map[string]any, error)
	// EnvOptions are added to the CEL environment: more extension
	// libraries (ext.Math(), ext.Lists()), functions of the caller's. The
	// strings extension (ext.Strings) is always there.
	EnvOptions []cel.EnvOption
	// RecordInputs makes Evaluate fill Decision.Inputs with what the set
	// read, as one JSON object, so that the decision can be replayed
	// later with another set (Backtest):
	//
	//	{"time":"<signal time>","payload":{"<GoField>":value,...},"vars":{"<name>":value,...}}
	//
	// with "verdict_rule":"<name>" added when a verdict rule decided. The
	// payload holds every field of T that an expression reads but those
	// in Unrecorded, under its Go name: an embedded struct as an object,
	// and each field promoted from it again beside it (as its zero value
	// behind a nil embedded pointer), as payload.Field reads it, so that
	// a reader that knows no Go type reads it too (a field promoted
	// through n embedded structs is thus written 2ⁿ times), but one whose
	// type can hold the struct it is promoted into again, which would
	// double the record at each level of a tree, is written within its
	// embedded struct only; vars the variables
	// Lookup returned that Vars declares (all of them, for a dynamic
	// Env). A nil slice or map, which CEL reads as empty, is written
	// empty ([], {}, "" for bytes), and a nil pointer field to a number,
	// a string, a bool, a time.Time or bytes as the zero value CEL reads
	// it as; a member "nil" marks where the payload held those (see the
	// package doc), so that DecodeInputs reads them back nil.
	// The members "types" and "var_types" mark where the payload and
	// the variables hold timestamps, durations, bytes, uints and doubles
	// that are NaN or infinite, which JSON writes as strings and ints,
	// and maps whose keys are ints,
	// uints or bools, which it writes as strings, so that a dynamic Env
	// reads them back with those CEL types.
	// Numbers keep their type: a float always has a '.' or an
	// exponent ("5000.0"), an int never does; a float32 is written as the
	// double CEL judges it as (0.699999988079071 for 0.7). A value nested more than 10000
	// deep, pointers and interfaces counted, fails the signal: it would
	// not read back, and one that holds itself would never end. It costs
	// one allocation and the encoding of the payload per decision; see
	// the package doc.
	RecordInputs bool
	// Unrecorded names payload fields (Go names) that are never recorded,
	// such as personal data. Fields of an embedded struct are left out
	// with the embedded struct, by its type name, and so are the fields
	// promoted from it; naming one of those alone is an error (it is
	// written within the struct). A field promoted from an embedded
	// struct whose type is not exported, or that a field of its name
	// hides, is named alone. A name T has no
	// exported field of is an error; for a map[string]any payload, the
	// names are keys. In a backtest such a field reads as its zero value
	// (a dynamic Env's as missing).
	Unrecorded []string
	// MaxCost is the most one evaluation of an expression may cost, in
	// CEL's cost units (about one per operation, and one per element a
	// function or a comprehension goes through; see the package doc): a
	// rule's expression and each {{expr}} of its reason have the limit
	// each. An evaluation that exceeds it stops there and fails the rule
	// with an error wrapping ErrCostLimit. An expression whose cost CEL
	// bounds when it compiles (one whose cost does not grow with the size
	// of a value known only at evaluation, such as a comprehension over a
	// list literal) and whose bound exceeds MaxCost does not compile.
	// Zero means DefaultMaxCost; a negative value is an error. The limit
	// cannot be turned off: math.MaxInt64 makes it unreachable.
	MaxCost int64
}

// Env compiles rule sets for payloads of type T. It is safe for
// concurrent use.
type Env[T any] struct {
	env      *cel.Env
	lookup   func(ctx context.Context, s tai.Signal[T]) (map[string]any, error)
	vars     map[string]*cel.Type
	varNames []string // the names of vars, sorted
	ptr      bool     // T is a pointer to a struct
	dynamic  bool     // T is map[string]any
	record   bool     // Options.RecordInputs
	maxCost  uint64   // Options.MaxCost, or DefaultMaxCost
	payload  *codec   // writes and reads the payload of an inputs object
	// declared names the variables and constants of the CEL environment,
	// the caller's EnvOptions' included: those a dynamic Env's set does
	// not declare again.
	declared map[string]bool
}

// The variables every expression can read besides the caller's.
const (
	varPayload = "payload"
	varSignal  = "signal"
	varSets    = "sets"
)

// NewEnv returns an Env for the payload type T, which must be a named
// struct type (or a pointer to one): its exported fields, under their Go
// names, are what payload.Field reads (a nil pointer fails the
// evaluation). It returns an error naming the first invalid option.
//
// T may also be map[string]any: a dynamic Env, for tools that know no Go
// type (the taikit backtest command). The payload is then a
// map(string, dyn): payload.Amount compiles whatever the field, and a
// field no payload has fails the evaluation of the rule that reads it. A
// set compiled by a dynamic Env also declares, as dyn, every variable its
// expressions read that neither Vars nor EnvOptions declare, so a rule
// reading attempts compiles without Vars; its value comes from Lookup
// or, in a backtest, from the recorded inputs. Only a struct type T
// checks field names and types when a set is compiled.
func NewEnv[T any](opts Options[T]) (*Env[T], error) {
	rt := reflect.TypeFor[T]()
	dynamic := rt == dynMapType
	st := rt
	if st.Kind() == reflect.Pointer {
		st = st.Elem()
	}
	if !dynamic && (st.Kind() != reflect.Struct || st.Name() == "") {
		return nil, fmt.Errorf("taicel: payload type %v is not a named struct type or map[string]any", rt)
	}
	if len(opts.Vars) > 0 && opts.Lookup == nil {
		return nil, errors.New("taicel: Options.Vars is set but Options.Lookup is nil")
	}
	if opts.MaxCost < 0 {
		return nil, fmt.Errorf("taicel: Options.MaxCost %d is negative; want 0 (DefaultMaxCost) or a limit > 0", opts.MaxCost)
	}
	maxCost := uint64(DefaultMaxCost)
	if opts.MaxCost > 0 {
		maxCost = uint64(opts.MaxCost)
	}
	var celOpts []cel.EnvOption
	var timeFields map[string]map[string]timeField
	if dynamic {
		celOpts = append(celOpts, cel.Variable(varPayload, cel.MapType(cel.StringType, cel.DynType)))
	} else {
		timeFields = zeroTimeFields(st)
		celOpts = append(celOpts, adaptZeroTimes(timeFields), ext.NativeTypes(st), cel.Variable(varPayload, cel.ObjectType(nativeName(st))))
	}
	celOpts = append(celOpts,
		ext.Strings(),
		boundedWriters(maxCost),
		stringsCostModels,
		cel.Variable(varSignal+".id", cel.StringType),
		cel.Variable(varSignal+".kind", cel.StringType),
		cel.Variable(varSignal+".key", cel.StringType),
		cel.Variable(varSignal+".time", cel.TimestampType),
	)
	e := &Env[T]{lookup: opts.Lookup, vars: make(map[string]*cel.Type, len(opts.Vars)),
		ptr: rt.Kind() == reflect.Pointer, dynamic: dynamic, record: opts.RecordInputs,
		maxCost: maxCost}
	// In name order, so that of several invalid names the error names
	// the same one each time.
	for _, name := range slices.Sorted(maps.Keys(opts.Vars)) {
		t := opts.Vars[name]
		switch {
		case !isIdent(name):
			return nil, fmt.Errorf("taicel: Options.Vars: %q is not an identifier", name)
		case celReserved[name]:
			return nil, fmt.Errorf("taicel: Options.Vars: %q is a word CEL reserves; no expression could read it", name)
		case name == varPayload || name == varSignal || name == varSets:
			return nil, fmt.Errorf("taicel: Options.Vars: %q is a name taicel declares", name)
		case t == nil:
			return nil, fmt.Errorf("taicel: Options.Vars: %q has a nil type", name)
		}
		e.vars[name] = t
		e.varNames = append(e.varNames, name)
		celOpts = append(celOpts, cel.Variable(name, t))
	}
	celOpts = append(celOpts, opts.EnvOptions...)
	if !dynamic {
		celOpts = append(celOpts, readZeroTimes(timeFields))
	}
	env, err := cel.NewEnv(celOpts...)
	if err != nil {
		return nil, fmt.Errorf("taicel: %w", err)
	}
	e.env = env
	if dynamic {
		e.declared = make(map[string]bool)
		for _, v := range env.Variables() {
			e.declared[v.Name()] = true
		}
	}
	if e.payload, err = payloadCodec(rt, dynamic, opts.Unrecorded, opts.RecordInputs); err != nil {
		return nil, err
	}
	return e, nil
}

// payloadCodec returns the codec of the payload in inputs objects, which
// leaves the unrecorded fields out. A field whose type cannot be recorded
// is an error only when inputs are recorded.
func payloadCodec(rt reflect.Type, dynamic bool, unrecorded []string, record bool) (*codec, error) {
	omit := make(map[string]bool, len(unrecorded))
	for _, name := range unrecorded {
		if name == "" {
			return nil, errors.New("taicel: Options.Unrecorded: an empty name")
		}
		omit[name] = true
	}
	var cb codecBuilder
	if dynamic {
		elem, err := cb.of(anyType)
		if err != nil {
			return nil, fmt.Errorf("taicel: %w", err)
		}
		key, _ := mapKeyCodec(rt.Key())
		c := &codec{types: mapTypes(rt, key, elem, omit)}
		c.enc, c.dec = mapCodec(rt, key, elem, omit)
		return c, nil
	}
	st := rt
	if st.Kind() == reflect.Pointer {
		st = st.Elem()
	}
	fields, err := cb.fields(st, omit)
	if err != nil && record {
		return nil, fmt.Errorf("taicel: payload %v: %w; list the field in Options.Unrecorded", st, err)
	}
	for _, name := range unrecorded {
		i := slices.IndexFunc(fields, func(f structField) bool { return f.name == name })
		switch {
		case i < 0:
			return nil, fmt.Errorf("taicel: Options.Unrecorded: %v has no exported field %q", st, name)
		case fields[i].carrier != "" && !omit[fields[i].carrier]:
			// It is written within its embedded struct too.
			return nil, fmt.Errorf("taicel: Options.Unrecorded: %q is a field of %v's embedded %s; list %q", name, st, fields[i].carrier, fields[i].carrier)
		}
	}
	c := &codec{nils: structNils(fields)}
	c.enc, c.dec = structCodec(st, fields)
	if mayHoldMarked(st) {
		c.types = structTypes(fields)
	}
	if rt.Kind() == reflect.Pointer {
		p := &codec{nils: ptrNils(c)}
		p.enc, p.dec = ptrCodec(rt, c)
		if c.types != nil {
			p.types = ptrTypes(c)
		}
		return p, nil
	}
	return c, nil
}

// nativeName is the name ext.NativeTypes gives a Go struct type: the last
// element of its package path, a dot, and the type's name.
func nativeName(t reflect.Type) string {
	pkg := t.PkgPath()
	if i := strings.LastIndexByte(pkg, '/'); i >= 0 {
		pkg = pkg[i+1:]
	}
	return pkg + "." + t.Name()
}

// celReserved are the words CEL reserves: none can name a variable.
var celReserved = map[string]bool{
	"false": true, "in": true, "null": true, "true": true,
	"as": true, "break": true, "const": true, "continue": true, "else": true, "for": true,
	"function": true, "if": true, "import": true, "let": true, "loop": true, "package": true,
	"namespace": true, "return": true, "var": true, "void": true, "while": true,
}

// celKeywords are the reserved words CEL does not read as a name even
// after a dot: sets.in is a syntax error, sets.if a set.
var celKeywords = map[string]bool{"false": true, "in": true, "null": true, "true": true}

func isIdent(s string) bool {
	if s == "" {
		return false
	}
	for i, c := range s {
		switch {
		case c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z':
		case i > 0 && c >= '0' && c <= '9':
		default:
			return false
		}
	}
	return true
}

// CompileError reports a rule whose expression or reason does not
// compile: a syntax error, a field the payload does not have, a type
// mismatch, a result of the wrong type, a constant CEL cannot fold (a
// regular expression that does not compile, x.matches('['); a duration,
// a timestamp or a number that does not convert, duration('1x')).
type CompileError struct {
	Rule string // the rule's name
	// Line and Column locate the first error in the expression (or in the
	// reason, when Reason is set), from 1; a constant that does not fold
	// is located at the call that converts or matches it. Zero when the
	// error is about the expression as a whole: its result type, its cost
	// bound over Options.MaxCost, or its length or nesting over CEL's
	// limits.
	Line, Column int
	// FileLine is the line of the rule's expression in the rule file it
	// was parsed from or, when Reason is set, the line of the reason (of
	// the {{expr}} in error, in a literal block); zero when it was not
	// parsed from a file. A rule that takes its expr or its reason from
	// another mapping through a YAML merge key (<<: *base) is located
	// where that mapping has it, the text in error, which every rule
	// merging it shares.
	FileLine int
	// Reason reports that the error is in a {{expr}} of the rule's
	// Reason, not in its Expr.
	Reason bool
	// Detail is CEL's report: every error with the line:column and a
	// snippet pointing at it.
	Detail string
}

func (e *CompileError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "taicel: rule %q", e.Rule)
	if e.Reason {
		b.WriteString(" reason")
	}
	if e.Line > 0 {
		fmt.Fprintf(&b, " at %d:%d", e.Line, e.Column)
	}
	if e.FileLine > 0 {
		fmt.Fprintf(&b, " (file line %d)", e.FileLine)
	}
	b.WriteString(": ")
	b.WriteString(e.Detail)
	return b.String()
}

// Compile checks and compiles spec into a Set, or returns an error naming
// the first invalid threshold, set or rule, and the line where the rule
// begins when spec was parsed from a file; a rule that does not compile
// gives a *CompileError.
func (e *Env[T]) Compile(spec *Spec) (*Set[T], error) {
	if spec == nil {
		return nil, errors.New("taicel: nil Spec")
	}
	s := &Set[T]{env: e, name: spec.Name, version: spec.Version, deny: spec.Thresholds.Deny, review: spec.Thresholds.Review}
	if s.name == "" {
		s.name = "cel"
	}
	if s.deny == 0 {
		s.deny = 0.5
	}
	if !(s.deny > 0 && s.deny <= 1) {
		return nil, fmt.Errorf("taicel: thresholds.deny %v is outside (0, 1]", spec.Thresholds.Deny)
	}
	if s.review == 0 {
		s.review = s.deny
	}
	if !(s.review > 0 && s.review <= s.deny) {
		return nil, fmt.Errorf("taicel: thresholds.review %v is outside (0, deny=%v]", spec.Thresholds.Review, s.deny)
	}
	if len(spec.Rules) == 0 {
		return nil, errors.New("taicel: a rule set needs at least one rule")
	}

	env := e.env
	s.sets = make(map[string]ref.Val, len(spec.Sets))
	var decls []cel.EnvOption
	if e.dynamic {
		s.free = e.freeVars(spec)
		for _, name := range s.free {
			decls = append(decls, cel.Variable(name, cel.DynType))
		}
	}
	if len(spec.Sets) > 0 {
		// In name order, so that of several invalid names the error
		// names the same one each time.
		for _, name := range slices.Sorted(maps.Keys(spec.Sets)) {
			items := spec.Sets[name]
			if !isIdent(name) {
				return nil, fmt.Errorf("taicel: set name %q is not an identifier", name)
			}
			if celKeywords[name] {
				return nil, fmt.Errorf("taicel: set name %q is a word CEL reserves; sets.%s cannot be read", name, name)
			}
			m := make(map[string]bool, len(items))
			for _, it := range items {
				m[it] = true
			}
			s.sets[varSets+"."+name] = types.DefaultTypeAdapter.NativeToValue(m)
			decls = append(decls, cel.Variable(varSets+"."+name, cel.MapType(cel.StringType, cel.BoolType)))
		}
	}
	if len(decls) > 0 {
		var err error
		if env, err = env.Extend(decls...); err != nil {
			return nil, fmt.Errorf("taicel: %w", err)
		}
	}
	s.cel = env

	seen := make(map[string]*Rule, len(spec.Rules))
	for i := range spec.Rules {
		r := &spec.Rules[i]
		switch {
		case r.Name == "":
			return nil, fmt.Errorf("taicel: rule %d%s has no name", i, r.fileLine())
		case strings.TrimSpace(r.Name) == "":
			return nil, fmt.Errorf("taicel: rule %d%s has no name: %q is only white space", i, r.fileLine(), r.Name)
		case strings.TrimSpace(r.Name) != r.Name:
			// " r" and "r" would read as one name in contributions and errors.
			return nil, fmt.Errorf("taicel: rule %d%s has name %q, which begins or ends with white space", i, r.fileLine(), r.Name)
		case seen[r.Name] != nil:
			first := seen[r.Name]
			if r.start > 0 && first.start > 0 {
				return nil, fmt.Errorf("taicel: rule name %q is used twice (file lines %d and %d)", r.Name, first.start, r.start)
			}
			return nil, fmt.Errorf("taicel: rule name %q is used twice", r.Name)
		case r.Verdict != 0 && !r.Verdict.Valid():
			return nil, fmt.Errorf("taicel: rule %q%s has invalid verdict %d", r.Name, r.fileLine(), uint8(r.Verdict))
		case r.Verdict != 0 && r.Weight != 0:
			return nil, fmt.Errorf("taicel: rule %q%s has both a verdict and a weight", r.Name, r.fileLine())
		case r.Verdict == 0 && (!(r.Weight > 0) || math.IsInf(r.Weight, 0)):
			return nil, fmt.Errorf("taicel: rule %q%s has weight %v and no verdict; want a verdict or a finite weight > 0", r.Name, r.fileLine(), r.Weight)
		case strings.TrimSpace(r.Expr) == "":
			return nil, fmt.Errorf("taicel: rule %q%s has no expr", r.Name, r.fileLine())
		}
		seen[r.Name] = r
		cr, err := compileRule(env, r, e.dynamic, e.maxCost)
		if err != nil {
			return nil, err
		}
		if r.Verdict != 0 {
			s.verdicts = append(s.verdicts, cr)
		} else {
			s.scored = append(s.scored, cr)
		}
	}
	return s, nil
}

// compileRule compiles a rule; a dynamic Env's may return dyn, checked
// at evaluation.
func compileRule(env *cel.Env, r *Rule, dynamic bool, maxCost uint64) (compiled, error) {
	c := compiled{name: r.Name, weight: r.Weight, verdict: r.Verdict}
	prg, out, cerr := compileExpr(env, r.Expr, "expr", maxCost)
	if cerr != nil {
		cerr.Rule, cerr.FileLine = r.Name, r.line
		return c, cerr
	}
	switch {
	case out.IsExactType(cel.BoolType):
		c.isBool = true
	case out.IsExactType(cel.DoubleType) && r.Verdict == 0:
	case out.IsExactType(cel.DynType) && dynamic:
	default:
		want := "bool or double"
		if r.Verdict != 0 {
			want = "bool"
		}
		return c, &CompileError{Rule: r.Name, FileLine: r.line,
			Detail: fmt.Sprintf("expression returns %s; want %s", out, want)}
	}
	c.prg = prg
	reason, err := compileReason(env, r, maxCost)
	if err != nil {
		return c, err
	}
	c.reason = reason
	return c, nil
}

// compileExpr compiles one expression into a program whose cost is
// limited to maxCost (newProgram); on failure the *CompileError has the
// position and detail, not the rule.
func compileExpr(env *cel.Env, expr, desc string, maxCost uint64) (*program, *cel.Type, *CompileError) {
	ast, iss := env.CompileSource(common.NewStringSource(expr, desc))
	if iss.Err() != nil {
		ce := &CompileError{Detail: iss.String()}
		// CEL locates an error about the expression as a whole, such as
		// its size or nesting over CEL's limits, at line -1.
		if errs := iss.Errors(); len(errs) > 0 && errs[0].Location.Line() > 0 {
			ce.Line, ce.Column = errs[0].Location.Line(), errs[0].Location.Column()+1
		}
		return nil, nil, ce
	}
	p, err := newProgram(env, ast, maxCost)
	if err != nil {
		ce := &CompileError{Detail: err.Error()}
		// A constant CEL could not fold when it planned the program:
		// located as the checker's errors are.
		var pe *planError
		if errors.As(err, &pe) && pe.node != 0 {
			if loc := ast.NativeRep().SourceInfo().GetStartLocation(pe.node); loc.Line() > 0 {
				errs := common.NewErrors(ast.Source())
				errs.ReportErrorAtID(pe.node, loc, "%s", pe.err)
				ce.Line, ce.Column, ce.Detail = loc.Line(), loc.Column()+1, errs.ToDisplayString()
			}
		}
		return nil, nil, ce
	}
	return p, ast.OutputType(), nil
}

// compileReason splits a reason template into literal text and {{expr}}
// programs.
func compileReason(env *cel.Env, r *Rule, maxCost uint64) ([]segment, error) {
	text := r.Reason
	if text == "" {
		return []segment{{text: r.Name}}, nil
	}
	var segs []segment
	for at := 0; text != ""; {
		i := strings.Index(text, "{{")
		if i < 0 {
			segs = append(segs, segment{text: text})
			break
		}
		if i > 0 {
			segs = append(segs, segment{text: text[:i]})
		}
		j := strings.Index(text[i+2:], "}}")
		if j < 0 {
			return nil, &CompileError{Rule: r.Name, FileLine: r.reasonFileLine(at + i), Reason: true, Detail: "{{ without }} in reason " + fmt.Sprintf("%q", r.Reason)}
		}
		expr := text[i+2 : i+2+j]
		if strings.TrimSpace(expr) == "" {
			// Refused as an empty expr is: CEL's syntax error would
			// be at column 0 of an empty text, which Column, counted
			// from 1, cannot say.
			return nil, &CompileError{Rule: r.Name, FileLine: r.reasonFileLine(at + i), Reason: true, Detail: "empty {{}} in reason " + fmt.Sprintf("%q", r.Reason)}
		}
		prg, _, cerr := compileExpr(env, expr, "reason", maxCost)
		if cerr != nil {
			cerr.Rule, cerr.FileLine, cerr.Reason = r.Name, r.reasonFileLine(at+i+2), true
			return nil, cerr
		}
		segs = append(segs, segment{prg: prg})
		at += i + 2 + j + 2
		text = text[i+2+j+2:]
	}
	return segs, nil
}
