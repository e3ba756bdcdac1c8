package taicel

import (
	"fmt"
	"reflect"
	"time"
)

var (
	stringerType  = reflect.TypeFor[fmt.Stringer]()
	errorType     = reflect.TypeFor[error]()
	formatterType = reflect.TypeFor[fmt.Formatter]()
	timePtrType   = reflect.PointerTo(timeType)
)

// wallClock returns x with each time.Time that fmt reaches when it prints
// x without its monotonic clock reading, which fmt writes ("m=+0.0049"):
// how long the process had run, which a recorded time does not have, so
// that a reason would differ when its decision is replayed. It returns x
// itself when x holds no such time, and copies only what holds one.
func wallClock(x any) any {
	v := reflect.ValueOf(x)
	if !v.IsValid() {
		return x
	}
	if w, ok := wallValue(v, 0); ok {
		return w.Interface()
	}
	return x
}

// wallValue returns a copy of v, at depth in what fmt prints, with its
// times read from the clock rounded to their wall clock reading, and true;
// or v and false when it holds none. It goes where fmt goes: into
// slices, arrays, maps, interfaces and exported struct fields, through a
// pointer only at the top, and not into a value that prints itself (a
// Stringer) but through an embedded time.Time (a types.Timestamp).
func wallValue(v reflect.Value, depth int) (reflect.Value, bool) {
	if depth > maxDepth || !v.CanInterface() {
		return v, false
	}
	t := v.Type()
	switch t {
	case timeType:
		tm := v.Interface().(time.Time)
		if w := tm.Round(0); w != tm {
			return reflect.ValueOf(w), true
		}
		return v, false
	case timePtrType:
		if v.IsNil() {
			return v, false
		}
		if w, ok := wallValue(v.Elem(), depth+1); ok {
			p := reflect.New(timeType)
			p.Elem().Set(w)
			return p, true
		}
		return v, false
	}
	printsItself := t.Implements(stringerType) || t.Implements(errorType) || t.Implements(formatterType)
	switch t.Kind() {
	case reflect.Pointer:
		// fmt follows a pointer at the top only, and prints the address
		// of one within.
		if depth > 0 || v.IsNil() || printsItself {
			return v, false
		}
		if w, ok := wallValue(v.Elem(), depth+1); ok {
			p := reflect.New(t.Elem())
			p.Elem().Set(w)
			return p, true
		}
	case reflect.Interface:
		if v.IsNil() {
			return v, false
		}
		if w, ok := wallValue(v.Elem(), depth+1); ok {
			out := reflect.New(t).Elem()
			out.Set(w)
			return out, true
		}
	case reflect.Slice, reflect.Array:
		if printsItself || (t.Kind() == reflect.Slice && v.IsNil()) || cannotHoldTime(t.Elem()) {
			return v, false
		}
		var out reflect.Value
		for i := range v.Len() {
			w, ok := wallValue(v.Index(i), depth+1)
			if !ok {
				continue
			}
			if !out.IsValid() {
				if t.Kind() == reflect.Slice {
					out = reflect.MakeSlice(t, v.Len(), v.Len())
					reflect.Copy(out, v)
				} else {
					out = reflect.New(t).Elem()
					out.Set(v)
				}
			}
			out.Index(i).Set(w)
		}
		if out.IsValid() {
			return out, true
		}
	case reflect.Map:
		if printsItself || v.IsNil() || cannotHoldTime(t.Key()) && cannotHoldTime(t.Elem()) {
			return v, false
		}
		changed := false
		out := reflect.MakeMapWithSize(t, v.Len())
		for it := v.MapRange(); it.Next(); {
			k, kok := wallValue(it.Key(), depth+1)
			e, eok := wallValue(it.Value(), depth+1)
			changed = changed || kok || eok
			out.SetMapIndex(k, e)
		}
		if changed {
			return out, true
		}
	case reflect.Struct:
		var out reflect.Value
		for i := range t.NumField() {
			f := t.Field(i)
			// A Stringer's own fields print only through its String, but
			// that of a time.Time it embeds.
			if !f.IsExported() || printsItself && !(f.Anonymous && f.Type == timeType) {
				continue
			}
			w, ok := wallValue(v.Field(i), depth+1)
			if !ok {
				continue
			}
			if !out.IsValid() {
				out = reflect.New(t).Elem()
				out.Set(v)
			}
			out.Field(i).Set(w)
		}
		if out.IsValid() {
			return out, true
		}
	}
	return v, false
}

// cannotHoldTime reports whether a value of type t can hold no time: a
// bool, a number or a string.
func cannotHoldTime(t reflect.Type) bool {
	switch t.Kind() {
	case reflect.Bool, reflect.String,
		reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr,
		reflect.Float32, reflect.Float64, reflect.Complex64, reflect.Complex128:
		return true
	}
	return false
}
