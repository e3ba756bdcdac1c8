package taicel

import (
	"encoding/base64"
	"errors"
	"fmt"
	"maps"
	"math"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"cel.dev/cel-go/common/types/ref"

	"github.com/taipattern/taikit/internal/jsonw"
)

// The CEL types that JSON writes as others, by the names an inputs
// object's "types" and "var_types" give them: a timestamp and bytes as
// strings, a duration as an int of nanoseconds, a uint as any int, and a
// double that is NaN or infinite as the string "NaN", "+Inf" or "-Inf"
// (a finite double, written as a number, is not marked). A reader that
// knows no Go type (a dynamic Env) reads them back as these types by the
// marks.
const (
	markTimestamp = "timestamp"
	markDuration  = "duration"
	markBytes     = "bytes"
	markUint      = "uint"
	markDouble    = "double"
)

// The types of map keys that JSON writes as the text of a member's name,
// by the names "types" and "var_types" give them: an int or a bool (and
// a uint, markUint). A string key is not marked.
const (
	markInt  = "int"
	markBool = "bool"
)

// The marks as JSON.
const (
	jsonTimestamp = `"` + markTimestamp + `"`
	jsonDuration  = `"` + markDuration + `"`
	jsonBytes     = `"` + markBytes + `"`
	jsonUint      = `"` + markUint + `"`
	jsonDouble    = `"` + markDouble + `"`
)

var durationType = reflect.TypeFor[time.Duration]()

// leafTypes is the types of a value of a marked type, given as JSON.
func leafTypes(mark string) func([]byte, reflect.Value) []byte {
	return func(b []byte, _ reflect.Value) []byte { return append(b, mark...) }
}

// mayHoldMarked reports whether a value of type t can hold one that the
// types of its codec mark: a time.Time, a time.Duration, a []byte, a
// byte array, an unsigned integer, a float (NaN or infinite), or an
// interface, which may hold any of them.
func mayHoldMarked(t reflect.Type) bool {
	return reaches(t, func(t reflect.Type) bool {
		return typeMark(t) != "" || t.Kind() == reflect.Interface || t.Kind() == reflect.Map && keyMark(t.Key()) != ""
	})
}

// keyMark returns the mark of the keys of a map whose keys are of Go type
// t, or "" for strings, which are not marked.
func keyMark(t reflect.Type) string {
	switch t.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return markInt
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return markUint
	case reflect.Bool:
		return markBool
	}
	return ""
}

// typesMember appends to the object of marks being written in b the
// member key (`"name":`) with the marks fn writes of v: after '{' when
// the object is not open yet, after ',' when it is. It appends nothing
// when fn is nil or writes nothing. It reports whether the object is
// open, which its writer closes (closeNils).
func typesMember(b []byte, open bool, key []byte, fn func([]byte, reflect.Value) []byte, v reflect.Value) ([]byte, bool) {
	if fn == nil {
		return b, open
	}
	mark := len(b)
	if open {
		b = append(b, ',')
	} else {
		b = append(b, '{')
	}
	b = append(b, key...)
	n := len(b)
	if b = fn(b, v); len(b) == n {
		return b[:mark], open
	}
	return b, true
}

// floatTypes is the types of a float: marked only when it is NaN or
// infinite, which JSON holds as a string.
func floatTypes(b []byte, v reflect.Value) []byte {
	if f := v.Float(); math.IsNaN(f) || math.IsInf(f, 0) {
		return append(b, jsonDouble...)
	}
	return b
}

// ptrTypes is the types of a pointer to what elem writes.
func ptrTypes(elem *codec) func([]byte, reflect.Value) []byte {
	return func(b []byte, v reflect.Value) []byte {
		if v.IsNil() || elem.types == nil {
			return b
		}
		return elem.types(b, v.Elem())
	}
}

// seqTypes is the types of an array or a slice of what elem writes (see
// uniformMarks).
func seqTypes(elem *codec) func([]byte, reflect.Value) []byte {
	return func(b []byte, v reflect.Value) []byte {
		if elem.types == nil || v.Len() == 0 {
			return b
		}
		u := uniformMarks{start: len(b)}
		var kb [24]byte
		for i := range v.Len() {
			key := append(strconv.AppendInt(append(kb[:0], '"'), int64(i), 10), '"', ':')
			b = u.member(b, key, elem.types, v.Index(i))
		}
		return u.close(b)
	}
}

// mapTypes is the types of a map of type t, of what elem writes, its
// keys in order and those in omit left out, as mapCodec leaves them out
// (see uniformMarks). The types of a map whose keys are not strings, which
// JSON writes as the text of member names, are a list of the keys' mark
// and, when its values hold marked ones, of their marks: ["int"],
// ["bool","uint"], ["int",{"7":{"At":"timestamp"}}].
func mapTypes(t reflect.Type, key keyCodec, elem *codec, omit map[string]bool) func([]byte, reflect.Value) []byte {
	values := func(b []byte, v reflect.Value) []byte {
		if elem.types == nil || v.Len() == 0 {
			return b
		}
		u := uniformMarks{start: len(b)}
		var kb []byte
		for _, e := range sortedEntries(key, v, omit) {
			kb = append(jsonw.AppendString(kb[:0], e.key), ':')
			b = u.member(b, kb, elem.types, e.v)
		}
		return u.close(b)
	}
	km := keyMark(t.Key())
	if km == "" {
		return values
	}
	return func(b []byte, v reflect.Value) []byte {
		b = append(b, `["`...)
		b = append(b, km...)
		b = append(b, '"')
		mark := len(b)
		b = append(b, ',')
		n := len(b)
		if b = values(b, v); len(b) == n {
			b = b[:mark]
		}
		return append(b, ']')
	}
}

// uniformMarks writes the marks of the elements of a list or of the
// values of a map: an object of the marks of each, by index or key, or,
// when every one of them is of one type (a []time.Time, a [][]byte), the
// name of that type once. What it writes depends on the values only, not
// on their Go types, so a list read back into an []any is marked as the
// []time.Time it was.
type uniformMarks struct {
	start           int  // where the marks begin in b
	open            bool // the object is open
	leafAt, leafEnd int  // where the first member's mark is in b, when it is a type's name
	mixed           bool // a member has no mark, an object or another type's
}

// member appends the marks fn writes of v as the member key.
func (u *uniformMarks) member(b, key []byte, fn func([]byte, reflect.Value) []byte, v reflect.Value) []byte {
	mark := len(b)
	if u.open {
		b = append(b, ',')
	} else {
		b = append(b, '{')
	}
	b = append(b, key...)
	n := len(b)
	if b = fn(b, v); len(b) == n {
		u.mixed = true
		return b[:mark]
	}
	u.open = true
	switch m := b[n:]; {
	case m[0] != '"':
		u.mixed = true
	case u.leafEnd == 0:
		u.leafAt, u.leafEnd = n, len(b)
	case string(m) != string(b[u.leafAt:u.leafEnd]):
		u.mixed = true
	}
	return b
}

// close closes the object, or replaces it with the type's name that
// every member has.
func (u *uniformMarks) close(b []byte) []byte {
	switch {
	case !u.open:
		return b
	case !u.mixed:
		n := copy(b[u.start:], b[u.leafAt:u.leafEnd])
		return b[:u.start+n]
	}
	return append(b, '}')
}

// structTypes is the types of a struct with fields: those of every field
// written, promoted fields beside their embedded struct included, as a
// reader without the Go type reads both.
func structTypes(fields []structField) func([]byte, reflect.Value) []byte {
	return func(b []byte, v reflect.Value) []byte {
		open := false
		for i := range fields {
			if f := &fields[i]; !f.omit {
				b, open = typesMember(b, open, f.key, f.codec.types, f.get(v))
			}
		}
		return closeNils(b, open)
	}
}

// interfaceTypes is the types of an interface: those of the value it
// holds.
func interfaceTypes(b []byte, v reflect.Value) []byte {
	if v.IsNil() {
		return b
	}
	return appendTypes(b, v.Elem().Interface())
}

// appendTypes appends the marks of x, as appendAny writes it: nothing
// when x holds no timestamp, duration, bytes or uint.
func appendTypes(b []byte, x any) []byte {
	switch x := x.(type) {
	case nil, string, int64, int, bool:
		return b
	case time.Time:
		return append(b, jsonTimestamp...)
	case time.Duration:
		return append(b, jsonDuration...)
	case []byte:
		return append(b, jsonBytes...)
	case uint64:
		return append(b, jsonUint...)
	case float64:
		return floatTypes(b, reflect.ValueOf(x))
	case ref.Val:
		return appendTypes(b, x.Value())
	}
	v := reflect.ValueOf(x)
	c := dynCodec(v.Type())
	if c == nil || c.types == nil {
		return b
	}
	return c.types(b, v)
}

// setTypes gives the values within v that marks, the "types" of an inputs
// object as jsonReader.any reads it, declares timestamps, durations,
// bytes, uints or doubles those types, where v holds them as JSON values without a Go type
// (within an interface: a dynamic Env's payload, an interface field);
// where v's Go type holds them, it checks that it is the type declared. A
// mark is the name of a type, which holds for v, or for every element of
// v, at any depth; or an object whose members, named by a field's name,
// an element's index or a map's key, hold the marks of those; or a list
// of the type of a map's keys and the marks of its values (see
// mapTypes), which reads a map without a Go type with keys of that type.
// A mark that leads nowhere, or to a value of another type, is an error.
func setTypes(v reflect.Value, marks any) error {
	for v.Kind() == reflect.Pointer {
		if v.IsNil() {
			if _, ok := marks.(string); ok {
				return nil // a nil among values of the type
			}
			return errors.New("a nil pointer")
		}
		v = v.Elem()
	}
	if v.Kind() == reflect.Interface {
		x, err := typedAny(v.Interface(), marks)
		if err != nil {
			return err
		}
		if x == nil {
			v.SetZero()
		} else {
			v.Set(reflect.ValueOf(x))
		}
		return nil
	}
	switch m := marks.(type) {
	case string:
		if err := checkMark(m); err != nil {
			return err
		}
		if want := typeMark(v.Type()); want != "" {
			if want != m {
				return fmt.Errorf("a %v, not %s", v.Type(), article(m))
			}
			return nil
		}
		switch v.Kind() {
		case reflect.Slice, reflect.Array:
			for i := range v.Len() {
				if err := setTypes(v.Index(i), m); err != nil {
					return fmt.Errorf("[%d]: %w", i, err)
				}
			}
			return nil
		case reflect.Map:
			kc, err := mapKeyCodec(v.Type().Key())
			if err != nil {
				return err
			}
			type entry struct {
				name string
				key  reflect.Value
			}
			entries := make([]entry, 0, v.Len())
			for it := v.MapRange(); it.Next(); {
				entries = append(entries, entry{string(kc.enc(nil, it.Key())), it.Key()})
			}
			// The first error is the same every time.
			slices.SortFunc(entries, func(a, b entry) int { return strings.Compare(a.name, b.name) })
			for _, e := range entries {
				if err := setMapTypes(v, e.key, m); err != nil {
					return fmt.Errorf("%s: %w", strconv.Quote(e.name), err)
				}
			}
			return nil
		}
		return fmt.Errorf("a %v, not %s", v.Type(), article(m))
	case map[string]any:
		for _, k := range slices.Sorted(maps.Keys(m)) { // the first error is the same every time
			if err := setTypesIn(v, k, m[k]); err != nil {
				return fmt.Errorf("%s: %w", strconv.Quote(k), err)
			}
		}
		return nil
	case []any:
		km, values, err := keyMarks(m)
		if err != nil {
			return err
		}
		if v.Kind() != reflect.Map || keyMark(v.Type().Key()) != km {
			return fmt.Errorf("a %v, not a map with %s keys", v.Type(), km)
		}
		if values == nil {
			return nil
		}
		return setTypes(v, values)
	}
	return errors.New("neither a type nor an object")
}

// keyMarks returns the mark of the keys of a map, and the marks of its
// values (nil when it has none), from marks, the list mapTypes writes
// for a map whose keys are not strings.
func keyMarks(marks []any) (key string, values any, err error) {
	if len(marks) == 0 || len(marks) > 2 {
		return "", nil, fmt.Errorf("a list of %d marks, not of a map's keys and values", len(marks))
	}
	key, ok := marks[0].(string)
	switch {
	case key == markInt, key == markUint, key == markBool:
	case ok: // a mark, not a value: named
		return "", nil, fmt.Errorf("%q is no type of map keys", key)
	default:
		return "", nil, fmt.Errorf("%s is no type of map keys", describe(marks[0]))
	}
	if len(marks) == 2 {
		values = marks[1]
	}
	return key, values, nil
}

// typedKeys returns m, a map as jsonReader.any reads it, with its keys
// read as the type the mark key names: a map[int64]any, a map[uint64]any
// or a map[bool]any, as CEL looks the keys of maps of those types up.
func typedKeys(m map[string]any, key string) (any, error) {
	switch key {
	case markInt:
		return keysAs(m, key, func(s string) (int64, error) { return strconv.ParseInt(s, 10, 64) })
	case markUint:
		return keysAs(m, key, func(s string) (uint64, error) { return strconv.ParseUint(s, 10, 64) })
	}
	return keysAs(m, key, strconv.ParseBool)
}

func keysAs[K comparable](m map[string]any, mark string, parse func(string) (K, error)) (map[K]any, error) {
	if m == nil {
		return nil, nil // the nil a null reads as (see nilOf)
	}
	out := make(map[K]any, len(m))
	for _, s := range slices.Sorted(maps.Keys(m)) { // the first error is the same every time
		k, err := parse(s)
		if err != nil {
			return nil, fmt.Errorf("a key that is not %s", article(mark))
		}
		out[k] = m[s]
	}
	return out, nil
}

// setTypesIn is setTypes of the member of v named name.
func setTypesIn(v reflect.Value, name string, marks any) error {
	switch v.Kind() {
	case reflect.Struct:
		f, ok := v.Type().FieldByName(name)
		if !ok || !f.IsExported() {
			return fmt.Errorf("%v has no such field", v.Type())
		}
		fv, err := v.FieldByIndexErr(f.Index)
		switch {
		case err != nil:
			// Promoted through a nil embedded pointer: the zero value
			// written for a reader without the Go type; nothing to set.
			return nil
		case !fv.CanSet():
			return fmt.Errorf("%v has no such field to set", v.Type())
		}
		return setTypes(fv, marks)
	case reflect.Slice, reflect.Array:
		i, err := strconv.Atoi(name)
		if err != nil || i < 0 || i >= v.Len() || strconv.Itoa(i) != name {
			return errors.New("no such member")
		}
		return setTypes(v.Index(i), marks)
	case reflect.Map:
		kc, err := mapKeyCodec(v.Type().Key())
		if err != nil {
			return err
		}
		k := reflect.New(v.Type().Key()).Elem()
		if err := kc.dec(name, k); err != nil {
			return errors.New("no such member")
		}
		if !v.MapIndex(k).IsValid() {
			return errors.New("no such member")
		}
		return setMapTypes(v, k, marks)
	}
	return fmt.Errorf("a %v has no members", v.Type())
}

// setMapTypes is setTypes of the value of the map v at k: a map's values
// cannot be set in place, so a copy is, and stored.
func setMapTypes(v, k reflect.Value, marks any) error {
	e := v.MapIndex(k)
	e2 := reflect.New(e.Type()).Elem()
	e2.Set(e)
	if err := setTypes(e2, marks); err != nil {
		return err
	}
	v.SetMapIndex(k, e2)
	return nil
}

// typedAny returns x, a value as jsonReader.any reads it, with the
// values marks declares of a type converted to it: a string to a
// time.Time, a []byte or a float64 ("NaN", "+Inf", "-Inf"), an int64 to
// a time.Duration or a uint64, and a
// map marked with its keys' type to a map with keys of that type. A value already of
// its type is kept, and so is a nil among values of a type.
func typedAny(x any, marks any) (any, error) {
	switch m := marks.(type) {
	case string:
		switch x := x.(type) {
		case nil:
			return nil, checkMark(m)
		case []any:
			for i := range x {
				y, err := typedAny(x[i], m)
				if err != nil {
					return nil, fmt.Errorf("[%d]: %w", i, err)
				}
				x[i] = y
			}
			return x, nil
		case map[string]any:
			for _, k := range slices.Sorted(maps.Keys(x)) {
				y, err := typedAny(x[k], m)
				if err != nil {
					return nil, fmt.Errorf("%s: %w", strconv.Quote(k), err)
				}
				x[k] = y
			}
			return x, nil
		}
		return typedLeaf(x, m)
	case map[string]any:
		switch x := x.(type) {
		case []any:
			for _, k := range slices.Sorted(maps.Keys(m)) {
				i, err := strconv.Atoi(k)
				if err != nil || i < 0 || i >= len(x) || strconv.Itoa(i) != k {
					return nil, fmt.Errorf("%s: no such member", strconv.Quote(k))
				}
				if x[i], err = typedAny(x[i], m[k]); err != nil {
					return nil, fmt.Errorf("%s: %w", strconv.Quote(k), err)
				}
			}
			return x, nil
		case map[string]any:
			for _, k := range slices.Sorted(maps.Keys(m)) {
				e, ok := x[k]
				if !ok {
					return nil, fmt.Errorf("%s: no such member", strconv.Quote(k))
				}
				y, err := typedAny(e, m[k])
				if err != nil {
					return nil, fmt.Errorf("%s: %w", strconv.Quote(k), err)
				}
				x[k] = y
			}
			return x, nil
		}
		return nil, fmt.Errorf("%s has no members", describe(x))
	case []any:
		key, values, err := keyMarks(m)
		if err != nil {
			return nil, err
		}
		switch x := x.(type) {
		case nil:
			return nil, nil
		case map[string]any:
			if values != nil {
				if _, err := typedAny(x, values); err != nil {
					return nil, err
				}
			}
			return typedKeys(x, key)
		}
		return nil, fmt.Errorf("%s is not a map", describe(x))
	}
	return nil, errors.New("neither a type nor an object")
}

// typedLeaf converts x, which is not a list or a map, to the type mark.
func typedLeaf(x any, mark string) (any, error) {
	if err := checkMark(mark); err != nil {
		return nil, err
	}
	switch mark {
	case markTimestamp:
		switch x := x.(type) {
		case time.Time:
			return x, nil
		case string:
			t, err := parseTime(x)
			if err != nil {
				return nil, err
			}
			return t, nil
		}
		return nil, fmt.Errorf("%s is not a timestamp (an RFC 3339 string)", describe(x))
	case markDuration:
		switch x := x.(type) {
		case time.Duration:
			return x, nil
		case int64:
			return time.Duration(x), nil
		}
		return nil, fmt.Errorf("%s is not a duration (an int of nanoseconds)", describe(x))
	case markUint:
		switch x := x.(type) {
		case uint64:
			return x, nil
		case int64:
			if x >= 0 {
				return uint64(x), nil
			}
		}
		if x, ok := x.(int64); ok && x < 0 {
			return nil, errors.New("a negative int is not a uint")
		}
		return nil, fmt.Errorf("%s is not a uint (an int that is not negative)", describe(x))
	case markDouble:
		switch x := x.(type) {
		case float64:
			return x, nil
		case string:
			switch x {
			case "NaN":
				return math.NaN(), nil
			case "+Inf":
				return math.Inf(1), nil
			case "-Inf":
				return math.Inf(-1), nil
			}
		}
		return nil, fmt.Errorf("%s is not a double (a number, or \"NaN\", \"+Inf\" or \"-Inf\")", describe(x))
	default: // bytes
		switch x := x.(type) {
		case []byte:
			return x, nil
		case string:
			raw, err := base64.StdEncoding.DecodeString(x)
			if err != nil {
				return nil, fmt.Errorf("a string that is not bytes in base64: %w", err)
			}
			return raw, nil
		}
		return nil, fmt.Errorf("%s is not bytes (a base64 string)", describe(x))
	}
}

// checkMark returns an error unless mark names a marked type.
func checkMark(mark string) error {
	switch mark {
	case markTimestamp, markDuration, markBytes, markUint, markDouble:
		return nil
	}
	return fmt.Errorf("unknown type %q", mark)
}

// typeMark returns the mark of values of Go type t, or "" for a type whose
// values are not marked.
func typeMark(t reflect.Type) string {
	switch {
	case t == timeType:
		return markTimestamp
	case t == durationType:
		return markDuration
	case t.Kind() == reflect.Slice && t.Elem().Kind() == reflect.Uint8,
		t.Kind() == reflect.Array && t.Elem() == byteType:
		return markBytes
	}
	switch t.Kind() {
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return markUint
	case reflect.Float32, reflect.Float64:
		return markDouble
	}
	return ""
}

// article returns the mark with the article its type takes.
func article(mark string) string {
	switch mark {
	case markBytes:
		return mark
	case markInt:
		return "an " + mark
	}
	return "a " + mark
}

// describe names x, a value jsonReader.any reads, for an error, by its
// kind: never the value, which may be what a trail must not show.
func describe(x any) string {
	switch x.(type) {
	case string:
		return "a string"
	case []any:
		return "a list"
	case map[string]any:
		return "a map"
	case nil:
		return "null"
	case time.Time:
		return "a timestamp"
	case time.Duration:
		return "a duration"
	case []byte:
		return "bytes"
	case bool:
		return "a bool"
	case int64:
		return "an int"
	case uint64:
		return "a uint"
	case float64:
		return "a double"
	}
	return fmt.Sprintf("a %T", x)
}
