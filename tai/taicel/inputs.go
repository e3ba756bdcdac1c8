package taicel

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"cel.dev/cel-go/cel"
	"cel.dev/cel-go/common/types"

	"github.com/taipattern/taikit/internal/jsonw"
)

// Inputs is what a set read to make a decision, as recorded in
// Decision.Inputs with Options.RecordInputs and read back by
// Env.DecodeInputs.
type Inputs[T any] struct {
	// Time is the signal's time.
	Time time.Time
	// Payload is the signal's payload, without the fields listed in
	// Options.Unrecorded (they are zero).
	Payload T
	// Vars are the variables Lookup returned, each with the Go type of
	// its declared CEL type: int64 for int, uint64 for uint, float64 for
	// double, string, bool, []byte for bytes, time.Time for timestamp,
	// time.Duration for duration. A list is an []any and a map a map
	// whose keys have the Go type of the map's key type (map[string]any,
	// map[int64]any, ...), their elements with the Go types of their own
	// declared type. A variable declared otherwise (dyn, a message) or
	// not declared, and an element of type dyn, are read as JSON without
	// a type: int64, float64 (for a number with a '.' or an exponent),
	// string, bool, nil, []any, map[string]any; but where the record
	// marks such a variable as holding timestamps, durations, bytes,
	// uints or doubles that are NaN or infinite (see
	// Options.RecordInputs), it has those as time.Time, time.Duration,
	// []byte, uint64 and float64, as the payload of a dynamic Env has.
	Vars map[string]any
	// VerdictRule names the verdict rule that decided; empty when the
	// scored rules did.
	VerdictRule string
}

// bufs holds the buffers inputs objects are written in before they are
// copied out at their size.
var bufs = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

// inputs returns the inputs object of an evaluation whose verdict rule
// (empty for the scored rules) decided, or the error of a payload or a
// variable that cannot be written.
func (e *Env[T]) inputs(act *activation, rule string) (json.RawMessage, error) {
	bp := bufs.Get().(*[]byte)
	b, err := e.appendInputs((*bp)[:0], act)
	var out json.RawMessage
	if err == nil {
		out = closeInputs(b, rule)
	}
	*bp = b[:0]
	bufs.Put(bp)
	return out, err
}

// appendInputs writes the inputs object of act without its closing brace:
// what two sets judging the same activation share. A payload or a
// variable nested deeper than a jsonReader reads, as one that holds
// itself would be, is an error naming it.
func (e *Env[T]) appendInputs(b []byte, act *activation) (_ []byte, err error) {
	what := "payload"
	defer func() {
		if v := recover(); v != nil {
			deep, ok := v.(errTooDeep)
			if !ok {
				panic(v)
			}
			err = fmt.Errorf("taicel: recording inputs: %s: %w", what, deep)
		}
	}()
	// The inputs object is at depth 1, its payload and vars at 2.
	b = append(b, `{"time":`...)
	b = appendTime(b, act.time)
	b = append(b, `,"payload":`...)
	b = e.payload.enc(b, reflect.ValueOf(act.payload), 1)
	if e.payload.nils != nil {
		b = appendNils(b, e.payload, reflect.ValueOf(act.payload))
	}
	if e.payload.types != nil {
		mark := len(b)
		b = append(b, `,"types":`...)
		n := len(b)
		if b = e.payload.types(b, reflect.ValueOf(act.payload)); len(b) == n {
			b = b[:mark]
		}
	}
	names := e.varNames
	if e.dynamic {
		names = make([]string, 0, len(act.vars))
		for name := range act.vars {
			names = append(names, name)
		}
		slices.Sort(names)
	}
	b = append(b, `,"vars":{`...)
	first := true
	for _, name := range names {
		v, ok := act.vars[name]
		if !ok {
			continue
		}
		if !first {
			b = append(b, ',')
		}
		first = false
		what = "variable " + strconv.Quote(name)
		b = jsonw.AppendString(b, name)
		b = append(b, ':')
		b = appendAny(b, v, 2) // a nil slice or map empty, as CEL reads it
	}
	b = append(b, '}')
	// The marks of the variables that hold timestamps, durations, uints,
	// bytes or doubles that are not finite, which a reader without their declared types needs.
	open := false
	for _, name := range names {
		v, ok := act.vars[name]
		if !ok {
			continue
		}
		mark := len(b)
		if open {
			b = append(b, ',')
		} else {
			b = append(b, `,"var_types":{`...)
		}
		b = jsonw.AppendString(b, name)
		b = append(b, ':')
		n := len(b)
		if b = appendTypes(b, v); len(b) == n {
			b = b[:mark]
		} else {
			open = true
		}
	}
	if open {
		b = append(b, '}')
	}
	return b, nil
}

// appendNils writes the member "nil": where the payload v, which c
// writes, holds nil slices and maps, which are written empty, as CEL
// reads them, and read back nil, as has() and == on structs tell them
// from empty ones. It writes nothing when there is none.
func appendNils(b []byte, c *codec, v reflect.Value) []byte {
	mark := len(b)
	b = append(b, `,"nil":`...)
	n := len(b)
	if b = c.nils(b, v); len(b) == n {
		return b[:mark]
	}
	return b
}

// closeInputs returns a copy of the open inputs object in b, closed, with
// the verdict rule that decided.
func closeInputs(b []byte, rule string) json.RawMessage {
	n := len(b) + 1
	if rule != "" {
		n += len(`,"verdict_rule":""`) + len(rule)
	}
	out := make([]byte, len(b), n)
	copy(out, b)
	if rule != "" {
		out = append(out, `,"verdict_rule":`...)
		out = jsonw.AppendString(out, rule)
	}
	return append(out, '}')
}

// DecodeInputs reads an inputs object that a set of this Env (or of an
// Env with the same payload type) recorded in Decision.Inputs. Payload
// fields are matched by Go name; a field the object lacks is left zero,
// and a field T does not have is an error. Vars get the Go types of their
// declared CEL types (see Inputs.Vars), so that a set judging the inputs
// again with Set.Replay decides exactly as when they were recorded. A
// dynamic Env (T map[string]any) reads back as time.Time, time.Duration,
// []byte, uint64 and float64 the values the record marks as timestamps,
// durations, bytes, uints and doubles (the NaN and infinities written as
// strings; see Options.RecordInputs), as any Env does within an interface;
// a value that is not of the type marked for it, or a mark that leads to
// no value, is an error naming where it is. An error names where the
// value is and what it should be, never the value, which may be what
// must not reach a log: a backtest's report holds them.
func (e *Env[T]) DecodeInputs(data []byte) (Inputs[T], error) {
	var in Inputs[T]
	err := e.decodeInputs(data, &in)
	return in, err
}

func (e *Env[T]) decodeInputs(data []byte, in *Inputs[T]) error {
	r := jsonReader{data: data}
	var payload bool
	var nils, marks any
	var varMarks map[string]any
	err := r.object(func(key []byte) error {
		switch string(key) {
		case "time":
			t, err := r.time()
			in.Time = t
			return member("time", err)
		case "payload":
			payload = true
			if err := e.payload.dec(&r, reflect.ValueOf(&in.Payload).Elem()); err != nil {
				return fmt.Errorf("payload: %w", err)
			}
			return nil
		case "vars":
			in.Vars = make(map[string]any, len(e.varNames))
			return r.object(func(key []byte) error {
				name := string(key)
				v, err := e.decodeVar(&r, name)
				if err != nil {
					return fmt.Errorf("vars: %s: %w", name, err)
				}
				in.Vars[name] = v
				return nil
			})
		case "nil":
			if e.dynamic {
				break // a map payload holds no struct: empty is empty
			}
			if r.peek() != '{' {
				return r.errorf("nil: want an object")
			}
			x, err := r.any()
			nils = x
			return err
		case "types":
			// The marks of a map payload whose values are all of one
			// type are that type's name.
			if c := r.peek(); c != '{' && c != '"' {
				return r.errorf("types: want an object or a type's name")
			}
			x, err := r.any()
			marks = x
			return err
		case "var_types":
			if r.peek() != '{' {
				return r.errorf("var_types: want an object")
			}
			x, err := r.any()
			varMarks, _ = x.(map[string]any)
			return err
		case "verdict_rule":
			s, err := r.string()
			in.VerdictRule = s
			return err
		}
		return r.skip() // written by a later version
	})
	if err == nil {
		err = r.end()
	}
	if err == nil && !payload {
		err = errors.New("no payload")
	}
	if err == nil && marks != nil {
		if err = setTypes(reflect.ValueOf(&in.Payload).Elem(), marks); err != nil {
			err = fmt.Errorf("types: %w", err)
		}
	}
	if err == nil && varMarks != nil {
		err = e.setVarTypes(in.Vars, varMarks)
	}
	if err == nil && nils != nil {
		if err = setNils(reflect.ValueOf(&in.Payload).Elem(), nils); err != nil {
			err = fmt.Errorf("nil: %w", err)
		}
	}
	if err != nil {
		return fmt.Errorf("taicel: inputs: %w", err)
	}
	return nil
}

// setVarTypes gives the values within the variables that marks, the
// "var_types" of an inputs object, declares timestamps, durations,
// bytes, uints or doubles those types (see setTypes), where decodeVar read them without a
// type: a variable declared dyn or not declared, and the elements of
// type dyn of a list or a map (list(dyn), map(string, dyn)), and the
// keys of a map declared with keys of type dyn (map(dyn, int)), which it
// read as strings; the others have their declared types.
func (e *Env[T]) setVarTypes(vars map[string]any, marks map[string]any) error {
	for _, name := range slices.Sorted(maps.Keys(marks)) {
		v, ok := vars[name]
		if !ok {
			return fmt.Errorf("var_types: %s: no such variable", strconv.Quote(name))
		}
		var x any
		var err error
		if t, declared := e.vars[name]; declared {
			x, err = typedAs(v, t, marks[name])
		} else {
			x, err = typedAny(v, marks[name])
		}
		if err != nil {
			return fmt.Errorf("var_types: %s: %w", strconv.Quote(name), err)
		}
		vars[name] = x
	}
	return nil
}

// typedAs is typedAny of x, a value decodeAs read with the CEL type t:
// the values it read without a type (dyn, a message) are converted as
// marks declares; those it gave their types are kept, and the elements
// of a list or a map are judged by the type of their own. The keys of a
// map it read as strings (declared dyn) are read as the type marked for
// them (see mapTypes).
func typedAs(x any, t *cel.Type, marks any) (any, error) {
	switch t.Kind() {
	case types.ListKind:
		l, ok := x.([]any)
		if !ok {
			return nil, fmt.Errorf("%s is not a list", describe(x))
		}
		elem := t.Parameters()[0]
		switch m := marks.(type) {
		case string:
			for i := range l {
				y, err := typedAs(l[i], elem, m)
				if err != nil {
					return nil, fmt.Errorf("[%d]: %w", i, err)
				}
				l[i] = y
			}
			return l, nil
		case map[string]any:
			for _, k := range slices.Sorted(maps.Keys(m)) {
				i, err := strconv.Atoi(k)
				if err != nil || i < 0 || i >= len(l) || strconv.Itoa(i) != k {
					return nil, fmt.Errorf("%s: no such member", strconv.Quote(k))
				}
				if l[i], err = typedAs(l[i], elem, m[k]); err != nil {
					return nil, fmt.Errorf("%s: %w", strconv.Quote(k), err)
				}
			}
			return l, nil
		}
		return nil, errors.New("neither a type nor an object")
	case types.MapKind:
		val := t.Parameters()[1]
		if mk, ok := marks.([]any); ok {
			key, values, err := keyMarks(mk)
			if err != nil {
				return nil, err
			}
			if m, ok := x.(map[string]any); ok {
				// decodeAs read the keys as strings, for keys declared
				// dyn: they are read as the type marked for them.
				if values != nil {
					if err := typedMapAs(m, val, values, func(k string) string { return k }); err != nil {
						return nil, err
					}
				}
				return typedKeys(m, key)
			}
			// decodeAs read the keys with their declared type.
			if values == nil {
				return x, nil
			}
			marks = values
		}
		switch m := x.(type) {
		case map[string]any:
			return m, typedMapAs(m, val, marks, func(k string) string { return k })
		case map[int64]any:
			return m, typedMapAs(m, val, marks, func(k int64) string { return strconv.FormatInt(k, 10) })
		case map[uint64]any:
			return m, typedMapAs(m, val, marks, func(k uint64) string { return strconv.FormatUint(k, 10) })
		case map[bool]any:
			return m, typedMapAs(m, val, marks, strconv.FormatBool)
		}
		return nil, fmt.Errorf("%s is not a map", describe(x))
	case types.IntKind, types.UintKind, types.DoubleKind, types.StringKind, types.BoolKind,
		types.TimestampKind, types.DurationKind, types.BytesKind:
		return x, nil
	}
	return typedAny(x, marks)
}

// typedMapAs is typedAs of the values of m, a map decodeAs read with
// values of the CEL type val; text writes a key as the member name
// marks names it by.
func typedMapAs[K comparable](m map[K]any, val *cel.Type, marks any, text func(K) string) error {
	switch mk := marks.(type) {
	case string:
		keys := make([]K, 0, len(m))
		names := make(map[K]string, len(m))
		for k := range m {
			keys = append(keys, k)
			names[k] = text(k)
		}
		slices.SortFunc(keys, func(a, b K) int { return strings.Compare(names[a], names[b]) })
		for _, k := range keys {
			y, err := typedAs(m[k], val, mk)
			if err != nil {
				return fmt.Errorf("%s: %w", strconv.Quote(names[k]), err)
			}
			m[k] = y
		}
		return nil
	case map[string]any:
		byName := make(map[string]K, len(m))
		for k := range m {
			byName[text(k)] = k
		}
		for _, name := range slices.Sorted(maps.Keys(mk)) {
			k, ok := byName[name]
			if !ok {
				return fmt.Errorf("%s: no such member", strconv.Quote(name))
			}
			y, err := typedAs(m[k], val, mk[name])
			if err != nil {
				return fmt.Errorf("%s: %w", strconv.Quote(name), err)
			}
			m[k] = y
		}
		return nil
	}
	return errors.New("neither a type nor an object")
}

// decodeVar reads the value of the variable name, with the Go type of its
// declared CEL type.
func (e *Env[T]) decodeVar(r *jsonReader, name string) (any, error) {
	t, ok := e.vars[name]
	if !ok {
		return r.any()
	}
	return decodeAs(r, t)
}

// decodeAs reads a value with the Go type of the CEL type t (see
// Inputs.Vars). The elements of a list and the values of a map are read
// with the type of their own: JSON writes a double that is not finite,
// a timestamp and bytes as strings and a duration as an int, which CEL
// would not compare with a double, a timestamp, bytes or a duration.
func decodeAs(r *jsonReader, t *cel.Type) (any, error) {
	if r.null() {
		return nilOf(t), nil
	}
	switch t.Kind() {
	case types.IntKind:
		return r.int(64)
	case types.UintKind:
		return r.uint(64)
	case types.DoubleKind:
		return r.float(64)
	case types.StringKind:
		return r.string()
	case types.BoolKind:
		return r.bool()
	case types.TimestampKind:
		return r.time()
	case types.DurationKind:
		n, err := r.int(64)
		return time.Duration(n), err
	case types.BytesKind:
		var b []byte
		err := decBytes(r, reflect.ValueOf(&b).Elem())
		return b, err
	case types.ListKind:
		elem := t.Parameters()[0]
		l := []any{}
		err := r.array(func(i int) error {
			v, err := decodeAs(r, elem)
			if err != nil {
				return fmt.Errorf("[%d]: %w", i, err)
			}
			l = append(l, v)
			return nil
		})
		return l, err
	case types.MapKind:
		key, val := t.Parameters()[0], t.Parameters()[1]
		switch key.Kind() {
		case types.IntKind:
			return decodeMap(r, val, func(s string) (int64, error) { return strconv.ParseInt(s, 10, 64) })
		case types.UintKind:
			return decodeMap(r, val, func(s string) (uint64, error) { return strconv.ParseUint(s, 10, 64) })
		case types.BoolKind:
			return decodeMap(r, val, strconv.ParseBool)
		}
		return decodeMap(r, val, func(s string) (string, error) { return s, nil })
	}
	return r.any()
}

// nilOf returns what a null reads as for the CEL type t: for a list, a
// map or bytes, the nil of the Go type decodeAs reads it into, which CEL
// reads as empty, as it read the nil slice or map that earlier versions
// wrote as null; nil otherwise.
func nilOf(t *cel.Type) any {
	switch t.Kind() {
	case types.ListKind:
		return []any(nil)
	case types.MapKind:
		switch t.Parameters()[0].Kind() {
		case types.IntKind:
			return map[int64]any(nil)
		case types.UintKind:
			return map[uint64]any(nil)
		case types.BoolKind:
			return map[bool]any(nil)
		}
		return map[string]any(nil)
	case types.BytesKind:
		return []byte(nil)
	}
	return nil
}

// keyType names K, the type of the keys of a map decodeMap reads other
// than from strings, with its article.
func keyType[K comparable]() string {
	var k K
	switch any(k).(type) {
	case int64:
		return "an int"
	case uint64:
		return "a uint"
	}
	return "a bool"
}

// decodeMap reads an object into a map whose keys key parses from the
// members' names and whose values have the CEL type val.
func decodeMap[K comparable](r *jsonReader, val *cel.Type, key func(string) (K, error)) (map[K]any, error) {
	m := map[K]any{}
	err := r.object(func(name []byte) error {
		s := string(name)
		k, err := key(s)
		if err != nil {
			return fmt.Errorf("a key that is not %s", keyType[K]())
		}
		v, err := decodeAs(r, val)
		if err != nil {
			return fmt.Errorf("%q: %w", s, err)
		}
		m[k] = v
		return nil
	})
	return m, err
}
