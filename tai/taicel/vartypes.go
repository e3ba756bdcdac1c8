package taicel

import (
	"fmt"
	"reflect"
	"time"

	"cel.dev/cel-go/cel"
	"cel.dev/cel-go/common/types"
)

// wrongVar returns an error for the first variable of vars, in name
// order, whose value cannot be of its declared scalar type: a string for
// an int, a nil for a bool. CEL trusts the declarations when it compiles,
// and a value of another kind does not always fail the rule that reads
// it: an equality with it is false, so n != 7 held for any string n. A
// number of any Go type passes for int, uint and double (CEL compares
// numbers across them); lists, maps, objects and dyn are not checked.
func (e *Env[T]) wrongVar(vars map[string]any) error {
	for _, name := range e.varNames {
		v, ok := vars[name]
		if !ok {
			continue // fails the rules that read it, as documented
		}
		want := e.vars[name]
		if !fitsScalar(want, v) {
			if v == nil {
				return fmt.Errorf("taicel: lookup: variable %q is nil; declared %s", name, want)
			}
			return fmt.Errorf("taicel: lookup: variable %q is a %T; declared %s", name, v, want)
		}
	}
	return nil
}

// fitsScalar reports whether v can be a value of the scalar CEL type t;
// true for a type that is not a scalar.
func fitsScalar(t *cel.Type, v any) bool {
	switch t.Kind() {
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
