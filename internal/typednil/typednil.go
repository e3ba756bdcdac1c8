// Package typednil tells whether an interface value holds a nil function
// or pointer: a hook that is not nil itself, yet panics when called.
package typednil

import "reflect"

// Holds reports whether v holds a nil function or pointer. A nil
// interface is not one (callers treat it as "not set"), nor is a nil map
// or slice, which may be a working value: reading one is allowed.
func Holds(v any) bool {
	if v == nil {
		return false
	}
	switch rv := reflect.ValueOf(v); rv.Kind() {
	case reflect.Func, reflect.Pointer:
		return rv.IsNil()
	}
	return false
}
