package taicel

import (
	"encoding/base64"
	"errors"
	"fmt"
	"math"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"cel.dev/cel-go/common/types/ref"

	"github.com/taipattern/taikit/internal/jsonw"
)

// A codec writes values of one Go type as JSON and reads them back. The
// JSON keeps the type of numbers: an integer never has a '.', a float
// always has a '.' or an exponent ("5000.0"), so a reader that knows no Go
// type (a dynamic Env) gets an int64 back for an int and a float64 for a
// float. time.Time is an RFC 3339 string with nanoseconds; []byte is
// base64, as encoding/json writes it, and so is a byte array, which CEL
// reads as bytes too; a float that JSON cannot hold is the
// string "NaN", "+Inf" or "-Inf". A nil slice or map is written empty
// ([], {}, "" for bytes), as CEL reads it: null would read back, where no
// Go type is known (a dynamic Env, the taikit command's backtest), as
// CEL's null, which a rule that read an empty list (size(l) == 0) fails
// on or judges otherwise. It reads back empty; nils tells where v held
// such a nil, which has() (a field's zero value) and == on structs
// (reflect.DeepEqual) tell from an empty one.
type codec struct {
	// enc appends v, which is inside depth values (pointers and
	// interfaces count); one that holds others gives them deeper(depth).
	enc func(b []byte, v reflect.Value, depth int) []byte
	dec func(r *jsonReader, v reflect.Value) error
	// nils, unless nil, appends where v holds nil slices and maps (not
	// within an interface, which reads back without its Go type): null
	// when v is one; when v holds some, an object whose members, named by
	// a field's name, an element's index or a map's key as enc writes
	// it, are the nils of those that do; nothing when v holds none. Each
	// container on the way to a nil is written once, so that it grows as
	// what enc writes of v does, however deep. setNils reads it.
	nils func(b []byte, v reflect.Value) []byte
	// types, unless nil, appends where v holds timestamps, durations,
	// bytes, uints and doubles that are NaN or infinite, which enc writes
	// as strings and ints: the name of their
	// type (see setTypes) for v when it is one, or a list or a map whose
	// elements all are; else, when it holds some, an object of the marks
	// of its members, as nils names them; nothing when v holds none. A
	// map whose keys are not strings is marked with a list of its keys'
	// type and its values' marks (see mapTypes). A
	// reader without the Go type (a dynamic Env) reads them back with
	// their types by it.
	types func(b []byte, v reflect.Value) []byte
}

var (
	timeType   = reflect.TypeFor[time.Time]()
	anyType    = reflect.TypeFor[any]()
	dynMapType = reflect.TypeFor[map[string]any]()
)

// codecBuilder builds the codecs of a type and of the types it holds,
// once each, so that a recursive type gets a finite set of codecs.
type codecBuilder struct {
	m     map[reflect.Type]*codec
	order []reflect.Type // the keys of m, as they were added
	// writeOnly builds codecs whose values are never read back into
	// their Go types (those within interfaces).
	writeOnly bool
}

// errNoCodec is the error of a type that cannot be written as JSON: a
// channel, a function, a complex number, a map whose keys are not
// strings, numbers or bools.
type errNoCodec struct{ t reflect.Type }

func (e errNoCodec) Error() string { return fmt.Sprintf("values of type %v cannot be recorded", e.t) }

// of returns the codec of t.
func (cb *codecBuilder) of(t reflect.Type) (*codec, error) {
	if c, ok := cb.m[t]; ok {
		return c, nil
	}
	if cb.m == nil {
		cb.m = map[reflect.Type]*codec{}
	}
	// Registered before it is filled in, so that a type that holds
	// itself (through a pointer, a slice or a map) finds it.
	c := &codec{}
	cb.m[t] = c
	mark := len(cb.order)
	cb.order = append(cb.order, t)
	if err := cb.fill(c, t); err != nil {
		// Codecs built meanwhile may refer to c, which is incomplete.
		for _, u := range cb.order[mark:] {
			delete(cb.m, u)
		}
		cb.order = cb.order[:mark]
		return nil, err
	}
	return c, nil
}

func (cb *codecBuilder) fill(c *codec, t reflect.Type) error {
	switch t {
	case timeType:
		c.enc, c.dec = encTime, decTime
		c.types = leafTypes(jsonTimestamp)
		return nil
	case durationType:
		c.enc, c.dec = encInt, decInt
		c.types = leafTypes(jsonDuration)
		return nil
	}
	// Only a type that can hold a marked value has types.
	marked := mayHoldMarked(t)
	switch t.Kind() {
	case reflect.Bool:
		c.enc, c.dec = encBool, decBool
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		c.enc, c.dec = encInt, decInt
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		c.enc, c.dec = encUint, decUint
		c.types = leafTypes(jsonUint)
	case reflect.Float32, reflect.Float64:
		c.enc, c.dec = encFloat, decFloat
		c.types = floatTypes
	case reflect.String:
		c.enc, c.dec = encString, decString
	case reflect.Interface:
		c.enc, c.dec, c.types = encInterface, decInterface, interfaceTypes
	case reflect.Pointer:
		elem, err := cb.of(t.Elem())
		if err != nil {
			return err
		}
		c.enc, c.dec = ptrCodec(t, elem)
		c.nils = ptrNils(elem)
		if marked {
			c.types = ptrTypes(elem)
		}
	case reflect.Slice:
		if t.Elem().Kind() == reflect.Uint8 {
			c.enc, c.dec, c.nils = encBytes, decBytes, bytesNils
			c.types = leafTypes(jsonBytes)
			return nil
		}
		elem, err := cb.of(t.Elem())
		if err != nil {
			return err
		}
		c.enc, c.dec = sliceCodec(t, elem)
		c.nils = sliceNils(elem)
		if marked {
			c.types = seqTypes(elem)
		}
	case reflect.Array:
		if t.Elem() == byteType {
			// CEL reads a byte array as bytes, as it reads a []byte.
			c.enc, c.dec = encByteArray, decByteArray
			c.types = leafTypes(jsonBytes)
			return nil
		}
		elem, err := cb.of(t.Elem())
		if err != nil {
			return err
		}
		c.enc, c.dec = arrayCodec(elem)
		c.nils = arrayNils(elem)
		if marked {
			c.types = seqTypes(elem)
		}
	case reflect.Map:
		key, err := mapKeyCodec(t.Key())
		if err != nil {
			return err
		}
		elem, err := cb.of(t.Elem())
		if err != nil {
			return err
		}
		c.enc, c.dec = mapCodec(t, key, elem, nil)
		c.nils = mapNils(key, elem)
		if marked {
			c.types = mapTypes(t, key, elem, nil)
		}
	case reflect.Struct:
		fields, err := cb.fields(t, nil)
		if err != nil {
			return fmt.Errorf("%v: %w", t, err)
		}
		c.enc, c.dec = structCodec(t, fields)
		c.nils = structNils(fields)
		if marked {
			c.types = structTypes(fields)
		}
	default:
		return errNoCodec{t}
	}
	return nil
}

// structField is one field of a struct codec: one that CEL reads, by
// the name it reads it by.
type structField struct {
	name  string
	index int   // in the struct, when path is nil
	path  []int // the index sequence of a field promoted from an embedded struct
	zero  reflect.Value
	key   []byte // `"Name":`
	codec *codec
	// omit: never written from here. A field named in
	// Options.Unrecorded, or one promoted from an embedded struct whose
	// type can hold t, the struct promoting it, again: it is written
	// within the embedded struct only.
	omit bool
	// carrier, for a field promoted from an exported embedded struct
	// that no shallower field of its name hides, is the outermost such
	// struct's name: the field is within the value written for it, and
	// written again for a reader that knows no Go type, but neither
	// read back nor marked in nils from here.
	carrier string
}

// fields returns the codecs of the fields of t that CEL reads, as
// cel-go's native types find them: the exported fields, but channels,
// functions and what holds them, and those promoted from embedded
// structs (but where a shallower field of the same name hides them, or
// another at the same depth makes the name ambiguous), which read as
// their zero values behind a nil embedded pointer; the fields named in
// omit, and those promoted from an embedded struct named in it, are read
// back but not written, and so is a field promoted from an embedded
// struct whose type can hold t (it is written within that struct only).
// A field whose type has no codec, or that is promoted through an
// embedded pointer that is no field of t (its type is not exported, or a
// shallower field of its name hides it), which the decoder cannot set
// when it reads the field back, is left out too, and the first such
// field not in omit is the error returned with the fields.
func (cb *codecBuilder) fields(t reflect.Type, omit map[string]bool) ([]structField, error) {
	var fields []structField
	var first error
	visible := reflect.VisibleFields(t)
	shown := make(map[string][]int, len(visible)) // the index of each field payload.Name reads
	for _, f := range visible {
		if f.IsExported() {
			shown[f.Name] = f.Index
		}
	}
	for _, f := range visible {
		if !f.IsExported() || !celReadable(f.Type) {
			continue
		}
		sf := structField{name: f.Name, index: f.Index[0], omit: omit[f.Name]}
		sf.key = jsonw.AppendString(nil, f.Name)
		sf.key = append(sf.key, ':')
		var unsettable reflect.Type // an embedded pointer on the way, not written
		if len(f.Index) > 1 {
			sf.path, sf.zero = f.Index, reflect.Zero(f.Type)
			at := t
			for k, i := range f.Index[:len(f.Index)-1] {
				if at.Kind() == reflect.Pointer {
					at = at.Elem()
				}
				e := at.Field(i)
				// An embedded struct is written, and named in omit, as
				// a field of t only where no shallower field of its name
				// hides it.
				written := e.IsExported() && slices.Equal(shown[e.Name], f.Index[:k+1])
				sf.omit = sf.omit || written && omit[e.Name]
				switch {
				case sf.carrier != "":
				case written:
					sf.carrier = e.Name
				case e.Type.Kind() == reflect.Pointer:
					unsettable = e.Type
				}
				at = e.Type
			}
		}
		c, err := cb.of(f.Type)
		if err == nil && unsettable != nil && !cb.writeOnly {
			err = fmt.Errorf("promoted through the embedded %v, a pointer that is no field of %v (its type is not exported, or a field of its name hides it), which cannot be set when it is read back", unsettable, t)
		}
		if err != nil {
			if !sf.omit && first == nil {
				first = fmt.Errorf("field %s: %w", f.Name, err)
			}
			sf.omit = true
			c = &codec{enc: encNull, dec: func(_ *jsonReader, v reflect.Value) error {
				return fmt.Errorf("a %v cannot be read back", v.Type())
			}}
		}
		if err == nil && f.Type.Kind() == reflect.Pointer && nilReadsZero(f.Type.Elem()) {
			if elem, err := cb.of(f.Type.Elem()); err == nil {
				c = zeroPtrCodec(c, elem, f.Type.Elem())
			}
		}
		sf.codec = c
		// A value of t within a promoted field written again would be
		// written twice in its turn, and so on down: a tree of depth n
		// would take 2ⁿ copies.
		if sf.carrier != "" && holds(f.Type, t) {
			sf.omit = true
		}
		fields = append(fields, sf)
	}
	return fields, first
}

// holds reports whether a value of type t can hold one of type u, as
// codecs write it (see reaches).
func holds(t, u reflect.Type) bool {
	return reaches(t, func(t reflect.Type) bool { return t == u })
}

// reaches reports whether a value of type t is, or can hold, one of a
// type that match accepts, as codecs write it: within a pointer, a slice,
// an array, a map's values or a struct's exported or embedded fields, but
// not within an interface, nor within a time.Time (a value of its own).
func reaches(t reflect.Type, match func(reflect.Type) bool) bool {
	seen := map[reflect.Type]bool{}
	var walk func(t reflect.Type) bool
	walk = func(t reflect.Type) bool {
		if match(t) {
			return true
		}
		if seen[t] || t == timeType {
			return false
		}
		seen[t] = true
		switch t.Kind() {
		case reflect.Pointer, reflect.Slice, reflect.Array, reflect.Map:
			return walk(t.Elem())
		case reflect.Struct:
			for i := range t.NumField() {
				if f := t.Field(i); (f.IsExported() || f.Anonymous) && walk(f.Type) {
					return true
				}
			}
		}
		return false
	}
	return walk(t)
}

// get returns the field f of v, a struct: for a promoted field behind a
// nil embedded pointer, its zero value, as CEL reads it.
func (f *structField) get(v reflect.Value) reflect.Value {
	if f.path == nil {
		return v.Field(f.index)
	}
	for i, x := range f.path {
		if i > 0 && v.Kind() == reflect.Pointer {
			if v.IsNil() {
				return f.zero
			}
			v = v.Elem()
		}
		v = v.Field(x)
	}
	return v
}

// celReadable reports whether cel-go's native types expose a field of type
// t (they skip channels, functions, complex numbers and what holds them).
func celReadable(t reflect.Type) bool {
	switch t.Kind() {
	case reflect.Chan, reflect.Complex64, reflect.Complex128, reflect.Func, reflect.UnsafePointer, reflect.Uintptr:
		return false
	case reflect.Array, reflect.Slice:
		return celReadable(t.Elem())
	case reflect.Map:
		return celReadable(t.Key()) && celReadable(t.Elem())
	}
	return true
}

func structCodec(t reflect.Type, fields []structField) (func([]byte, reflect.Value, int) []byte, func(*jsonReader, reflect.Value) error) {
	byName := make(map[string]int, len(fields))
	for i, f := range fields {
		byName[f.name] = i
	}
	enc := func(b []byte, v reflect.Value, depth int) []byte {
		depth = deeper(depth)
		b = append(b, '{')
		first := true
		for i := range fields {
			f := &fields[i]
			if f.omit {
				continue
			}
			if !first {
				b = append(b, ',')
			}
			first = false
			b = append(b, f.key...)
			b = f.codec.enc(b, f.get(v), depth)
		}
		return append(b, '}')
	}
	dec := func(r *jsonReader, v reflect.Value) error {
		if r.null() {
			v.SetZero()
			return nil
		}
		return r.object(func(key []byte) error {
			i, ok := byName[string(key)]
			if !ok {
				return fmt.Errorf("%v has no field %q", t, key)
			}
			f := &fields[i]
			if f.carrier != "" {
				return r.skip() // read with its carrier
			}
			// A promoted field that is not carried is promoted through
			// embedded structs only (fields refuses pointers): get
			// returns it settable.
			if err := f.codec.dec(r, f.get(v)); err != nil {
				return fmt.Errorf("%s: %w", f.name, err)
			}
			return nil
		})
	}
	return enc, dec
}

// nilsMember appends to the object of nils being written in b the member
// key (`"name":`) with the nils of v, c's value, as its value: after '{'
// when the object is not open yet, after ',' when it is. It appends
// nothing when v holds no nil slice or map. It reports whether the
// object is open, which its writer closes.
func nilsMember(b []byte, open bool, key []byte, c *codec, v reflect.Value) ([]byte, bool) {
	if c.nils == nil {
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
	if b = c.nils(b, v); len(b) == n {
		return b[:mark], open
	}
	return b, true
}

// closeNils closes the object of nils in b, if open.
func closeNils(b []byte, open bool) []byte {
	if open {
		b = append(b, '}')
	}
	return b
}

// structNils is the nils of a struct with fields. Like the others that
// hold values, it reads its members' nils when called: one may be of a
// type that holds this one, whose codec was not yet built with it.
func structNils(fields []structField) func(b []byte, v reflect.Value) []byte {
	return func(b []byte, v reflect.Value) []byte {
		open := false
		for i := range fields {
			if f := &fields[i]; !f.omit && f.carrier == "" {
				b, open = nilsMember(b, open, f.key, f.codec, f.get(v))
			}
		}
		return closeNils(b, open)
	}
}

// ptrNils is the nils of a pointer to what elem writes: a pointer is no
// member of its own.
func ptrNils(elem *codec) func(b []byte, v reflect.Value) []byte {
	return func(b []byte, v reflect.Value) []byte {
		if v.IsNil() || elem.nils == nil {
			return b
		}
		return elem.nils(b, v.Elem())
	}
}

// bytesNils is the nils of a []byte.
func bytesNils(b []byte, v reflect.Value) []byte {
	if v.IsNil() {
		return append(b, "null"...)
	}
	return b
}

// sliceNils is the nils of a slice of what elem writes.
func sliceNils(elem *codec) func(b []byte, v reflect.Value) []byte {
	elems := arrayNils(elem)
	return func(b []byte, v reflect.Value) []byte {
		if v.IsNil() {
			return append(b, "null"...)
		}
		return elems(b, v)
	}
}

// arrayNils is the nils of an array of what elem writes, and of the
// elements of a slice.
func arrayNils(elem *codec) func(b []byte, v reflect.Value) []byte {
	return func(b []byte, v reflect.Value) []byte {
		if elem.nils == nil {
			return b
		}
		open := false
		var kb [24]byte
		for i := range v.Len() {
			key := append(strconv.AppendInt(append(kb[:0], '"'), int64(i), 10), '"', ':')
			b, open = nilsMember(b, open, key, elem, v.Index(i))
		}
		return closeNils(b, open)
	}
}

// mapNils is the nils of a map of what elem writes, its keys in order.
func mapNils(key keyCodec, elem *codec) func(b []byte, v reflect.Value) []byte {
	return func(b []byte, v reflect.Value) []byte {
		if v.IsNil() {
			return append(b, "null"...)
		}
		if elem.nils == nil || v.Len() == 0 {
			return b
		}
		open := false
		var kb []byte
		for _, e := range sortedEntries(key, v, nil) {
			kb = append(jsonw.AppendString(kb[:0], e.key), ':')
			b, open = nilsMember(b, open, kb, elem, e.v)
		}
		return closeNils(b, open)
	}
}

// mapEntry is a map's value and its key as a codec writes it.
type mapEntry struct {
	key string
	v   reflect.Value
}

// sortedEntries returns the entries of v, a map, in the order of their
// keys as key writes them, those in omit left out.
func sortedEntries(key keyCodec, v reflect.Value, omit map[string]bool) []mapEntry {
	entries := make([]mapEntry, 0, v.Len())
	var kb []byte
	for it := v.MapRange(); it.Next(); {
		kb = key.enc(kb[:0], it.Key())
		if omit[string(kb)] {
			continue
		}
		entries = append(entries, mapEntry{string(kb), it.Value()})
	}
	slices.SortFunc(entries, func(a, b mapEntry) int { return strings.Compare(a.key, b.key) })
	return entries
}

// setNils sets to nil the slices and maps within v that nils, what a
// codec's nils wrote as jsonReader.any reads it, marks, which the decoder
// read empty, and the pointer fields written as the zero value they read
// as (see zeroPtrCodec), which it read as pointers to it. A mark that
// leads to no such empty slice or map, or zero value, is an error.
func setNils(v reflect.Value, nils any) error {
	for v.Kind() == reflect.Pointer {
		if v.IsNil() {
			return errors.New("a nil pointer")
		}
		v = v.Elem()
	}
	if nils == nil {
		if k := v.Kind(); (k != reflect.Slice && k != reflect.Map) || v.Len() != 0 {
			return fmt.Errorf("a %v, not an empty slice or map", v.Type())
		}
		v.SetZero()
		return nil
	}
	m, ok := nils.(map[string]any)
	if !ok {
		return errors.New("neither null nor an object")
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys) // the first error is the same every time
	for _, k := range keys {
		if err := setNilsIn(v, k, m[k]); err != nil {
			return fmt.Errorf("%s: %w", strconv.Quote(k), err)
		}
	}
	return nil
}

// setNilsIn is setNils of the member of v named name.
func setNilsIn(v reflect.Value, name string, nils any) error {
	switch v.Kind() {
	case reflect.Struct:
		f, ok := v.Type().FieldByName(name)
		if !ok || !f.IsExported() {
			return fmt.Errorf("%v has no such field", v.Type())
		}
		fv, err := v.FieldByIndexErr(f.Index)
		if err != nil || !fv.CanSet() {
			return fmt.Errorf("%v has no such field to set", v.Type())
		}
		if nils == nil && fv.Kind() == reflect.Pointer && !fv.IsNil() && nilReadsZero(fv.Type().Elem()) {
			// A nil pointer written as the zero value it reads as (see
			// zeroPtrCodec), which only a struct's field is.
			if e := fv.Elem(); !e.IsZero() && (e.Kind() != reflect.Slice || e.Len() != 0) {
				return fmt.Errorf("a %v, not a zero value", e.Type())
			}
			fv.SetZero()
			return nil
		}
		return setNils(fv, nils)
	case reflect.Slice, reflect.Array:
		i, err := strconv.Atoi(name)
		if err != nil || i < 0 || i >= v.Len() || strconv.Itoa(i) != name {
			return fmt.Errorf("no such index in a %v of length %d", v.Type(), v.Len())
		}
		return setNils(v.Index(i), nils)
	case reflect.Map:
		kc, err := mapKeyCodec(v.Type().Key())
		if err != nil {
			return err
		}
		k := reflect.New(v.Type().Key()).Elem()
		if err := kc.dec(name, k); err != nil {
			return err
		}
		e := v.MapIndex(k)
		if !e.IsValid() {
			return fmt.Errorf("no such key in the %v", v.Type())
		}
		// A map's values cannot be set in place: a copy is, and stored.
		e2 := reflect.New(e.Type()).Elem()
		e2.Set(e)
		if err := setNils(e2, nils); err != nil {
			return err
		}
		v.SetMapIndex(k, e2)
		return nil
	}
	return fmt.Errorf("a %v has no members", v.Type())
}

func ptrCodec(t reflect.Type, elem *codec) (func([]byte, reflect.Value, int) []byte, func(*jsonReader, reflect.Value) error) {
	enc := func(b []byte, v reflect.Value, depth int) []byte {
		if v.IsNil() {
			return append(b, "null"...)
		}
		return elem.enc(b, v.Elem(), deeper(depth))
	}
	dec := func(r *jsonReader, v reflect.Value) error {
		if r.null() {
			v.SetZero()
			return nil
		}
		p := reflect.New(t.Elem())
		if err := elem.dec(r, p.Elem()); err != nil {
			return err
		}
		v.Set(p)
		return nil
	}
	return enc, dec
}

// nilReadsZero reports whether cel-go's native types read a nil pointer
// to t in a struct field as t's zero value: a number, a string, a bool, a
// time.Time (which taicel reads as year 1), bytes.
func nilReadsZero(t reflect.Type) bool {
	switch t.Kind() {
	case reflect.Bool, reflect.String, reflect.Float32, reflect.Float64,
		reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return true
	case reflect.Slice, reflect.Array:
		return t.Elem() == byteType
	}
	return t == timeType
}

// zeroPtrCodec is the codec of a struct field of a pointer type, which
// ptr writes, to a type, which elem writes, that CEL reads as its zero
// value behind a nil pointer (see nilReadsZero): a nil pointer is
// written as that zero value, with its types, as CEL read it, so that a
// reader without the Go type (a dynamic Env) reads it so too; its nils
// mark it null, and setNils sets it back to nil.
func zeroPtrCodec(ptr, elem *codec, t reflect.Type) *codec {
	zero := reflect.Zero(t)
	c := &codec{dec: ptr.dec}
	c.enc = func(b []byte, v reflect.Value, depth int) []byte {
		if v.IsNil() {
			return elem.enc(b, zero, deeper(depth))
		}
		return ptr.enc(b, v, depth)
	}
	c.nils = func(b []byte, v reflect.Value) []byte {
		if v.IsNil() {
			return append(b, "null"...)
		}
		if ptr.nils != nil {
			n := len(b)
			if b = ptr.nils(b, v); string(b[n:]) == "null" {
				// A pointer to a nil []byte, whose null would read
				// back as a nil pointer: it is left unmarked, and
				// reads back as a pointer to an empty one, as CEL
				// reads both.
				return b[:n]
			}
		}
		return b
	}
	if elem.types != nil {
		c.types = func(b []byte, v reflect.Value) []byte {
			if v.IsNil() {
				return elem.types(b, zero)
			}
			return elem.types(b, v.Elem())
		}
	}
	return c
}

func sliceCodec(t reflect.Type, elem *codec) (func([]byte, reflect.Value, int) []byte, func(*jsonReader, reflect.Value) error) {
	enc := func(b []byte, v reflect.Value, depth int) []byte {
		if v.IsNil() {
			return append(b, "[]"...)
		}
		depth = deeper(depth)
		b = append(b, '[')
		for i := range v.Len() {
			if i > 0 {
				b = append(b, ',')
			}
			b = elem.enc(b, v.Index(i), depth)
		}
		return append(b, ']')
	}
	dec := func(r *jsonReader, v reflect.Value) error {
		if r.null() {
			v.SetZero()
			return nil
		}
		s := reflect.MakeSlice(t, 0, 4)
		err := r.array(func(i int) error {
			s = reflect.Append(s, reflect.Zero(t.Elem()))
			if err := elem.dec(r, s.Index(i)); err != nil {
				return fmt.Errorf("[%d]: %w", i, err)
			}
			return nil
		})
		if err != nil {
			return err
		}
		v.Set(s)
		return nil
	}
	return enc, dec
}

func arrayCodec(elem *codec) (func([]byte, reflect.Value, int) []byte, func(*jsonReader, reflect.Value) error) {
	enc := func(b []byte, v reflect.Value, depth int) []byte {
		depth = deeper(depth)
		b = append(b, '[')
		for i := range v.Len() {
			if i > 0 {
				b = append(b, ',')
			}
			b = elem.enc(b, v.Index(i), depth)
		}
		return append(b, ']')
	}
	dec := func(r *jsonReader, v reflect.Value) error {
		v.SetZero()
		return r.array(func(i int) error {
			if i >= v.Len() {
				return fmt.Errorf("more than %d elements for %v", v.Len(), v.Type())
			}
			if err := elem.dec(r, v.Index(i)); err != nil {
				return fmt.Errorf("[%d]: %w", i, err)
			}
			return nil
		})
	}
	return enc, dec
}

// keyCodec writes a map key as the text of a JSON object's member name and
// reads it back.
type keyCodec struct {
	enc func(b []byte, v reflect.Value) []byte // appends the text, unquoted
	dec func(s string, v reflect.Value) error
}

func mapKeyCodec(t reflect.Type) (keyCodec, error) {
	switch t.Kind() {
	case reflect.String:
		return keyCodec{
			enc: func(b []byte, v reflect.Value) []byte { return append(b, v.String()...) },
			dec: func(s string, v reflect.Value) error { v.SetString(s); return nil },
		}, nil
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return keyCodec{
			enc: func(b []byte, v reflect.Value) []byte { return strconv.AppendInt(b, v.Int(), 10) },
			dec: func(s string, v reflect.Value) error {
				n, err := strconv.ParseInt(s, 10, v.Type().Bits())
				v.SetInt(n)
				return err
			},
		}, nil
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return keyCodec{
			enc: func(b []byte, v reflect.Value) []byte { return strconv.AppendUint(b, v.Uint(), 10) },
			dec: func(s string, v reflect.Value) error {
				n, err := strconv.ParseUint(s, 10, v.Type().Bits())
				v.SetUint(n)
				return err
			},
		}, nil
	case reflect.Bool:
		return keyCodec{
			enc: func(b []byte, v reflect.Value) []byte { return strconv.AppendBool(b, v.Bool()) },
			dec: func(s string, v reflect.Value) error {
				x, err := strconv.ParseBool(s)
				v.SetBool(x)
				return err
			},
		}, nil
	}
	return keyCodec{}, errNoCodec{t}
}

// mapCodec writes a map as an object with its keys sorted, leaving out the
// keys in omit.
func mapCodec(t reflect.Type, key keyCodec, elem *codec, omit map[string]bool) (func([]byte, reflect.Value, int) []byte, func(*jsonReader, reflect.Value) error) {
	type entry struct {
		key string
		v   reflect.Value
	}
	enc := func(b []byte, v reflect.Value, depth int) []byte {
		if v.IsNil() {
			return append(b, "{}"...)
		}
		depth = deeper(depth)
		entries := make([]entry, 0, v.Len())
		var kb []byte
		for it := v.MapRange(); it.Next(); {
			kb = key.enc(kb[:0], it.Key())
			if omit[string(kb)] {
				continue
			}
			entries = append(entries, entry{string(kb), it.Value()})
		}
		slices.SortFunc(entries, func(a, b entry) int { return strings.Compare(a.key, b.key) })
		b = append(b, '{')
		for i, e := range entries {
			if i > 0 {
				b = append(b, ',')
			}
			b = jsonw.AppendString(b, e.key)
			b = append(b, ':')
			b = elem.enc(b, e.v, depth)
		}
		return append(b, '}')
	}
	dec := func(r *jsonReader, v reflect.Value) error {
		if r.null() {
			v.SetZero()
			return nil
		}
		if t == dynMapType {
			if r.peek() != '{' {
				return r.errorf("want an object")
			}
			m, err := r.any() // an object: a map[string]any
			if err == nil {
				v.Set(reflect.ValueOf(m))
			}
			return err
		}
		m := reflect.MakeMap(t)
		k := reflect.New(t.Key()).Elem()
		err := r.object(func(name []byte) error {
			ks := string(name)
			if err := key.dec(ks, k); err != nil {
				return fmt.Errorf("a key that does not read as %v", t.Key())
			}
			e := reflect.New(t.Elem()).Elem()
			if err := elem.dec(r, e); err != nil {
				return fmt.Errorf("%q: %w", ks, err)
			}
			m.SetMapIndex(k, e)
			return nil
		})
		if err != nil {
			return err
		}
		v.Set(m)
		return nil
	}
	return enc, dec
}

// errTooDeep is what an encoder panics with when the value it writes is
// nested deeper than a jsonReader reads (maxDepth): a value that holds
// itself, through a pointer, a map, a slice or an interface, would be
// written for ever. Env.appendInputs recovers it.
type errTooDeep struct{}

func (errTooDeep) Error() string {
	return fmt.Sprintf("nested more than %d deep; does it hold itself?", maxDepth)
}

// deeper returns depth+1, the depth of what a value at depth holds, and
// panics with errTooDeep beyond maxDepth.
func deeper(depth int) int {
	if depth >= maxDepth {
		panic(errTooDeep{})
	}
	return depth + 1
}

func encNull(b []byte, _ reflect.Value, _ int) []byte { return append(b, "null"...) }

func encBool(b []byte, v reflect.Value, _ int) []byte { return strconv.AppendBool(b, v.Bool()) }

func decBool(r *jsonReader, v reflect.Value) error {
	x, err := r.bool()
	v.SetBool(x)
	return err
}

func encInt(b []byte, v reflect.Value, _ int) []byte { return strconv.AppendInt(b, v.Int(), 10) }

func decInt(r *jsonReader, v reflect.Value) error {
	n, err := r.int(v.Type().Bits())
	v.SetInt(n)
	return err
}

func encUint(b []byte, v reflect.Value, _ int) []byte { return strconv.AppendUint(b, v.Uint(), 10) }

func decUint(r *jsonReader, v reflect.Value) error {
	n, err := r.uint(v.Type().Bits())
	v.SetUint(n)
	return err
}

// encFloat writes a float32 as the double it holds (0.699999988079071
// for float32(0.7)), which is what CEL judges: in its float32 form, 0.7,
// it would read back as another double wherever no float32 reads it (a
// list or a map variable, a dyn one, a dynamic Env's payload). A float32
// reads it back as the float32 it was.
func encFloat(b []byte, v reflect.Value, _ int) []byte {
	return appendFloat(b, v.Float())
}

func decFloat(r *jsonReader, v reflect.Value) error {
	f, err := r.float(v.Type().Bits())
	v.SetFloat(f)
	return err
}

func encString(b []byte, v reflect.Value, _ int) []byte { return jsonw.AppendString(b, v.String()) }

func decString(r *jsonReader, v reflect.Value) error {
	s, err := r.string()
	v.SetString(s)
	return err
}

func encTime(b []byte, v reflect.Value, _ int) []byte {
	return appendTime(b, v.Interface().(time.Time))
}

func decTime(r *jsonReader, v reflect.Value) error {
	t, err := r.time()
	v.Set(reflect.ValueOf(t))
	return err
}

func encBytes(b []byte, v reflect.Value, _ int) []byte {
	b = append(b, '"')
	b = base64.StdEncoding.AppendEncode(b, v.Bytes())
	return append(b, '"')
}

func decBytes(r *jsonReader, v reflect.Value) error {
	if r.null() {
		v.SetZero()
		return nil
	}
	s, err := r.string()
	if err != nil {
		return err
	}
	raw, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return fmt.Errorf("bytes: %w", err)
	}
	v.SetBytes(raw)
	return nil
}

// byteType is the element type of the arrays that CEL reads as bytes.
var byteType = reflect.TypeFor[byte]()

// encByteArray writes a byte array as a []byte is written: base64.
func encByteArray(b []byte, v reflect.Value, _ int) []byte {
	if !v.CanAddr() {
		a := reflect.New(v.Type()).Elem()
		a.Set(v)
		v = a
	}
	return encBytes(b, v, 0)
}

// legacyByteArray reads a byte array as earlier versions wrote it: a
// list of ints.
var _, legacyByteArray = arrayCodec(&codec{enc: encUint, dec: decUint})

// decByteArray reads a byte array as base64, of its length; or as a
// list of ints, as earlier versions wrote it.
func decByteArray(r *jsonReader, v reflect.Value) error {
	if r.peek() == '[' {
		return legacyByteArray(r, v)
	}
	s, err := r.string()
	if err != nil {
		return err
	}
	raw, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return fmt.Errorf("bytes: %w", err)
	}
	if len(raw) != v.Len() {
		return fmt.Errorf("%d bytes for %v", len(raw), v.Type())
	}
	reflect.Copy(v, reflect.ValueOf(raw))
	return nil
}

// Interfaces hold values of any type: their codecs are built when a value
// of a type is first seen, and kept.
var dynCodecs sync.Map // reflect.Type -> *codec, or nil when the type has none

func dynCodec(t reflect.Type) *codec {
	if c, ok := dynCodecs.Load(t); ok {
		return c.(*codec)
	}
	cb := codecBuilder{writeOnly: true}
	c, err := cb.of(t)
	if err != nil {
		c = nil
	}
	dynCodecs.Store(t, c)
	return c
}

func encInterface(b []byte, v reflect.Value, depth int) []byte {
	if v.IsNil() {
		return append(b, "null"...)
	}
	return appendAny(b, v.Elem().Interface(), deeper(depth))
}

// appendAny writes x: the usual types without reflection, a CEL value as
// the Go value it holds, others through the codec of their type. A value
// that has no codec is written as null.
func appendAny(b []byte, x any, depth int) []byte {
	switch x := x.(type) {
	case nil:
		return append(b, "null"...)
	case string:
		return jsonw.AppendString(b, x)
	case int64:
		return strconv.AppendInt(b, x, 10)
	case int:
		return strconv.AppendInt(b, int64(x), 10)
	case float64:
		return appendFloat(b, x)
	case bool:
		return strconv.AppendBool(b, x)
	case time.Time:
		return appendTime(b, x)
	case ref.Val:
		return appendAny(b, x.Value(), depth)
	}
	v := reflect.ValueOf(x)
	c := dynCodec(v.Type())
	if c == nil {
		return append(b, "null"...)
	}
	return c.enc(b, v, depth)
}

// decInterface reads a value without its Go type, or null as a nil
// interface: a value into an interface with methods is an error, as it
// would hold a map, not a value of the type the methods belong to.
func decInterface(r *jsonReader, v reflect.Value) error {
	if r.null() {
		v.SetZero()
		return nil
	}
	if v.NumMethod() > 0 {
		return fmt.Errorf("cannot read a value into interface type %v", v.Type())
	}
	x, err := r.any() // not null: not nil
	if err != nil {
		return err
	}
	v.Set(reflect.ValueOf(x))
	return nil
}

// appendTime writes t in RFC 3339 with nanoseconds, in its own offset
// unless that has seconds, which RFC 3339 cannot write (local mean times,
// before the 1940s): such a time is written in UTC, so that it reads
// back at the same instant.
func appendTime(b []byte, t time.Time) []byte {
	if _, offset := t.Zone(); offset%60 != 0 {
		t = t.UTC()
	}
	b = append(b, '"')
	b = t.AppendFormat(b, time.RFC3339Nano)
	return append(b, '"')
}

// appendFloat writes f so that it reads back as a float: with a '.' or an
// exponent, as encoding/json would write it otherwise; NaN and the
// infinities, which JSON numbers cannot hold, as strings.
func appendFloat(b []byte, f float64) []byte {
	switch {
	case math.IsNaN(f):
		return append(b, `"NaN"`...)
	case math.IsInf(f, 1):
		return append(b, `"+Inf"`...)
	case math.IsInf(f, -1):
		return append(b, `"-Inf"`...)
	}
	start := len(b)
	abs := math.Abs(f)
	format := byte('f')
	if abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	b = strconv.AppendFloat(b, f, format, -1, 64)
	if format == 'e' {
		// clean up e-09 to e-9, as encoding/json does
		if n := len(b); n-start >= 4 && b[n-4] == 'e' && b[n-3] == '-' && b[n-2] == '0' {
			b[n-2] = b[n-1]
			b = b[:n-1]
		}
		return b
	}
	for _, c := range b[start:] {
		if c == '.' {
			return b
		}
	}
	return append(b, ".0"...)
}
