package taicel

import (
	"cmp"
	"fmt"
	"reflect"
	"slices"
	"strings"

	"cel.dev/cel-go/common/types/ref"
)

var refValType = reflect.TypeFor[ref.Val]()

// MaxReasonValue bounds what a reason writes of the value of one {{expr}}
// that is a list, a map or a struct: past that many bytes it writes "…"
// and stops, so that a value whose pointers share what they point to,
// written whole at each, cannot grow without bound.
const MaxReasonValue = 1 << 20

// valueWriter writes a value of a reason's {{expr}} as fmt's %v does,
// but for the pointers within it and the fields of structs: fmt writes
// the addresses of pointers, which tell nothing and differ when the
// decision is replayed, where a valueWriter writes what they point to
// (&{...} for a struct, as fmt does at the top), <nil> for a nil one,
// and <cycle> where a value comes again within itself; and it writes
// the fields of a struct CEL reads only: the exported ones (and the
// embedded ones) of a type CEL can read, not a channel, a func or a
// complex number.
type valueWriter struct {
	b     *strings.Builder
	start int  // b.Len() when the value began
	cut   bool // MaxReasonValue was reached, and … written
	// path holds the pointers, maps and slices being written, from the
	// top to the value at hand: one met again is a cycle.
	path map[visit]struct{}
}

type visit struct {
	ptr uintptr
	typ reflect.Type
}

// writeValue writes x to b.
func writeValue(b *strings.Builder, x any) {
	w := valueWriter{b: b, start: b.Len()}
	w.value(reflect.ValueOf(x), 0)
}

// next begins the element at index i of a list, a map or a struct: it
// writes the space before it and reports true, or reports false when
// MaxReasonValue is reached, writing … the first time.
func (w *valueWriter) next(i int) bool {
	full := w.b.Len()-w.start >= MaxReasonValue
	if full && w.cut {
		return false
	}
	if i > 0 {
		w.b.WriteByte(' ')
	}
	if full {
		w.b.WriteString("…")
		w.cut = true
	}
	return !full
}

func (w *valueWriter) value(v reflect.Value, depth int) {
	switch {
	case !v.IsValid():
		w.b.WriteString("<nil>")
		return
	case depth > maxDepth:
		w.b.WriteString("…")
		return
	}
	if v.Kind() == reflect.Interface {
		w.value(v.Elem(), depth+1)
		return
	}
	t := v.Type()
	if v.CanInterface() {
		// A CEL value within a list or a map a rule builds ([payload.A])
		// is written as the value it holds, not as CEL's own structure.
		if t.Implements(refValType) && (t.Kind() != reflect.Pointer || !v.IsNil()) {
			if x := v.Interface().(ref.Val).Value(); reflect.TypeOf(x) != t {
				w.value(reflect.ValueOf(x), depth+1)
				return
			}
		}
		// fmt lets a value that can be read through an interface write
		// itself, wherever it is.
		if t.Implements(stringerType) || t.Implements(errorType) || t.Implements(formatterType) {
			fmt.Fprint(w.b, wallClock(v.Interface()))
			return
		}
	}
	switch v.Kind() {
	case reflect.Pointer:
		if v.IsNil() {
			w.b.WriteString("<nil>")
			return
		}
		if !w.enter(v) {
			return
		}
		switch t.Elem().Kind() {
		case reflect.Struct, reflect.Array, reflect.Slice, reflect.Map:
			w.b.WriteByte('&')
		}
		w.value(v.Elem(), depth+1)
		w.leave(v)
	case reflect.Slice, reflect.Array:
		if v.Kind() == reflect.Slice && v.Len() > 0 {
			if !w.enter(v) {
				return
			}
			defer w.leave(v)
		}
		w.b.WriteByte('[')
		for i := range v.Len() {
			if !w.next(i) {
				break
			}
			w.value(v.Index(i), depth+1)
		}
		w.b.WriteByte(']')
	case reflect.Map:
		if v.Len() > 0 {
			if !w.enter(v) {
				return
			}
			defer w.leave(v)
		}
		keys := v.MapKeys()
		slices.SortFunc(keys, compareKeys)
		w.b.WriteString("map[")
		for i, k := range keys {
			if !w.next(i) {
				break
			}
			w.value(k, depth+1)
			w.b.WriteByte(':')
			w.value(v.MapIndex(k), depth+1)
		}
		w.b.WriteByte(']')
	case reflect.Struct:
		// The fields CEL reads and a record holds: the exported ones, and
		// the embedded ones whose exported fields are promoted, but for
		// those of a type CEL cannot read (a channel, a func). Another
		// is zero when the decision is replayed, and a pointer in it may
		// lead to what must not reach a reason (a client's credentials).
		w.b.WriteByte('{')
		n := 0
		for i := range v.NumField() {
			if f := t.Field(i); (!f.IsExported() && !f.Anonymous) || !celReadable(f.Type) {
				continue
			}
			if !w.next(n) {
				break
			}
			n++
			w.value(v.Field(i), depth+1)
		}
		w.b.WriteByte('}')
	default:
		// A bool, a number or a string, or what holds no value to
		// follow (a channel, a func), as fmt writes it.
		fmt.Fprint(w.b, v)
	}
}

// enter records that v, a non-nil pointer, map or slice, is being
// written, and reports true; or writes <cycle> where v is already being
// written, and reports false.
func (w *valueWriter) enter(v reflect.Value) bool {
	k := visit{v.Pointer(), v.Type()}
	if _, ok := w.path[k]; ok {
		w.b.WriteString("<cycle>")
		return false
	}
	if w.path == nil {
		w.path = map[visit]struct{}{}
	}
	w.path[k] = struct{}{}
	return true
}

func (w *valueWriter) leave(v reflect.Value) { delete(w.path, visit{v.Pointer(), v.Type()}) }

// compareKeys orders a map's keys as fmt does: numbers, strings and
// bools by value, structs and arrays by their elements in turn, and
// interfaces by their types' names, then their values.
func compareKeys(a, b reflect.Value) int {
	if a.Kind() != b.Kind() {
		return cmp.Compare(a.Kind(), b.Kind())
	}
	switch a.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return cmp.Compare(a.Int(), b.Int())
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return cmp.Compare(a.Uint(), b.Uint())
	case reflect.String:
		return strings.Compare(a.String(), b.String())
	case reflect.Float32, reflect.Float64:
		return cmp.Compare(a.Float(), b.Float())
	case reflect.Complex64, reflect.Complex128:
		x, y := a.Complex(), b.Complex()
		return cmp.Or(cmp.Compare(real(x), real(y)), cmp.Compare(imag(x), imag(y)))
	case reflect.Bool:
		switch {
		case a.Bool() == b.Bool():
			return 0
		case a.Bool():
			return 1
		}
		return -1
	case reflect.Pointer, reflect.UnsafePointer, reflect.Chan:
		return cmp.Compare(a.Pointer(), b.Pointer())
	case reflect.Struct:
		for i := range a.NumField() {
			if c := compareKeys(a.Field(i), b.Field(i)); c != 0 {
				return c
			}
		}
	case reflect.Array:
		for i := range a.Len() {
			if c := compareKeys(a.Index(i), b.Index(i)); c != 0 {
				return c
			}
		}
	case reflect.Interface:
		switch x, y := a.Elem(), b.Elem(); {
		case !x.IsValid() || !y.IsValid():
			return cmp.Compare(boolInt(x.IsValid()), boolInt(y.IsValid()))
		case x.Type() != y.Type():
			// Two types of one name (from two packages) compare equal.
			return strings.Compare(x.Type().String(), y.Type().String())
		default:
			return compareKeys(x, y)
		}
	}
	return 0
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}
