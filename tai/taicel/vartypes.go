package taicel

import (
	"errors"
	"fmt"
	"maps"
	"math"
	"reflect"
	"time"

	"cel.dev/cel-go/cel"
	"cel.dev/cel-go/common/types"
	"cel.dev/cel-go/common/types/ref"
)

// typedVars checks the values of vars against their declared scalar
// types and returns vars, or a copy whose numbers have their variable's
// declared type. It returns an error for the first variable, in name
// order, whose value cannot be of that type: a string for an int, a nil
// for a bool, 5.5 or -1 for a uint. CEL trusts the declarations when it
// compiles, and a value of another kind does not always fail the rule
// that reads it: an equality with it is false, so n != 7 held for any
// string n; a number of another type compares as one, but fails
// arithmetic (x * 2.0 with an int x), and a double in an int variable
// was recorded as one and could not be read back. A list or a map may be
// of any Go type but nil: CEL reads that as null, which l != [] holds
// for, and which a record of it, read back as an empty list (as a nil
// slice, recorded null by earlier versions, must be), would not judge
// as it was judged. Their elements, objects and dyn are not checked.
func (e *Env[T]) typedVars(vars map[string]any) (map[string]any, error) {
	out, copied := vars, false
	for _, name := range e.varNames {
		v, ok := vars[name]
		if !ok {
			continue // fails the rules that read it, as documented
		}
		want := e.vars[name]
		if !fitsScalar(want, v) {
			if v == nil {
				return nil, fmt.Errorf("variable %q is nil; declared %s", name, want)
			}
			return nil, fmt.Errorf("variable %q is a %T; declared %s", name, v, want)
		}
		n, changed, err := asNumber(want.Kind(), v)
		if err != nil {
			// The value is not written: a variable may hold what must
			// not reach a log (an account number).
			return nil, fmt.Errorf("variable %q is a %T its declared %s cannot hold: %w", name, v, want, err)
		}
		if !changed {
			continue
		}
		if !copied {
			// The caller's map may be shared or cached: it is not changed.
			out, copied = maps.Clone(vars), true
		}
		out[name] = n
	}
	return out, nil
}

// asNumber returns v, a number, as a value of the numeric CEL kind k, and
// whether that differs from v; false for a kind that is not numeric and
// for a value CEL already reads as k. A value that k cannot hold exactly
// (a fraction or a negative number for a uint) is an error.
func asNumber(k types.Kind, v any) (ref.Val, bool, error) {
	switch k {
	case types.IntKind, types.UintKind, types.DoubleKind:
	default:
		return nil, false, nil
	}
	var (
		i    int64
		u    uint64
		f    float64
		kind reflect.Kind // Int64, Uint64 or Float64: which of i, u, f holds v
	)
	// A time.Duration is an int64 that CEL reads as a duration, not an
	// int: it is converted like a number of another type.
	_, dur := v.(time.Duration)
	switch x := v.(type) {
	case types.Int:
		i, kind = int64(x), reflect.Int64
	case types.Uint:
		u, kind = uint64(x), reflect.Uint64
	case types.Double:
		f, kind = float64(x), reflect.Float64
	default:
		rv := reflect.ValueOf(v)
		switch {
		case rv.CanInt():
			i, kind = rv.Int(), reflect.Int64
		case rv.CanUint():
			u, kind = rv.Uint(), reflect.Uint64
		default:
			f, kind = rv.Float(), reflect.Float64
		}
	}
	switch {
	case k == types.IntKind && kind == reflect.Int64 && !dur,
		k == types.UintKind && kind == reflect.Uint64,
		k == types.DoubleKind && kind == reflect.Float64:
		return nil, false, nil
	case k == types.IntKind && kind == reflect.Int64:
		return types.Int(i), true, nil
	case k == types.DoubleKind && kind == reflect.Int64:
		// float64(i) rounds an integer beyond 2⁵³ that a double does not
		// hold; 2⁶³, which MaxInt64 rounds to, is no int64.
		if f := float64(i); f >= 1<<63 || int64(f) != i {
			return nil, false, errors.New("an integer a double would round")
		}
		return types.Double(i), true, nil
	case k == types.DoubleKind:
		if f := float64(u); f >= 1<<64 || uint64(f) != u {
			return nil, false, errors.New("an integer a double would round")
		}
		return types.Double(u), true, nil
	case k == types.IntKind && kind == reflect.Uint64:
		if u > math.MaxInt64 {
			return nil, false, errors.New("out of the range of an int")
		}
		return types.Int(u), true, nil
	case k == types.IntKind:
		if f != math.Trunc(f) || !(f >= -(1<<63) && f < 1<<63) {
			return nil, false, errors.New("not an integer in the range of an int")
		}
		return types.Int(f), true, nil
	case kind == reflect.Int64: // for a uint
		if i < 0 {
			return nil, false, errors.New("negative")
		}
		return types.Uint(i), true, nil
	default: // a double for a uint
		if f != math.Trunc(f) || !(f >= 0 && f < 1<<64) {
			return nil, false, errors.New("not an integer in the range of a uint")
		}
		return types.Uint(f), true, nil
	}
}

// fitsScalar reports whether v can be a value of the scalar CEL type t;
// for a list or a map, whether v is not nil; true for another type.
func fitsScalar(t *cel.Type, v any) bool {
	switch t.Kind() {
	case types.ListKind, types.MapKind:
		return v != nil
	case types.IntKind, types.UintKind, types.DoubleKind:
		switch v.(type) {
		case int, int64, float64, types.Int, types.Uint, types.Double:
			return true
		case nil:
			return false
		}
		switch reflect.TypeOf(v).Kind() {
		case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
			reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64,
			reflect.Float32, reflect.Float64:
			return true
		}
		return false
	case types.StringKind:
		switch v.(type) {
		case string, types.String:
			return true
		case nil:
			return false
		}
		return reflect.TypeOf(v).Kind() == reflect.String
	case types.BoolKind:
		switch v.(type) {
		case bool, types.Bool:
			return true
		case nil:
			return false
		}
		return reflect.TypeOf(v).Kind() == reflect.Bool
	case types.TimestampKind:
		switch v.(type) {
		case time.Time, types.Timestamp:
			return true
		}
		return false
	case types.DurationKind:
		switch v.(type) {
		case time.Duration, types.Duration:
			return true
		}
		return false
	case types.BytesKind:
		switch v.(type) {
		case []byte, types.Bytes:
			return true
		}
		return false
	}
	return true
}
