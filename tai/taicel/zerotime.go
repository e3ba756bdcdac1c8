package taicel

import (
	"maps"
	"reflect"
	"slices"
	"time"

	"cel.dev/cel-go/cel"
	"cel.dev/cel-go/common/types"
	"cel.dev/cel-go/common/types/ref"
	"cel.dev/cel-go/common/types/traits"
)

// zeroTimes is a types.Provider that reads the time.Time and *time.Time
// fields of the payload's struct types as Go holds them. cel-go's native
// types read a zero time.Time field, and a nil *time.Time, as 1970-01-01
// (Unix 0), the zero of a protobuf Timestamp, but the zero time.Time in a
// list, a map, a variable or signal.time as what it is, year 1; and a
// recorded zero time, "0001-01-01T00:00:00Z", reads back as year 1 where
// no Go type is known (a dynamic Env's backtest). Read the one way live
// and the other replayed, a rule telling "not yet" from a time, or
// comparing two, would decide otherwise in a backtest.
type zeroTimes struct {
	types.Provider
	// fields holds, by CEL type name and field name, the struct type and
	// the index of each time.Time and *time.Time field a payload can
	// reach: those of T and of the struct types T holds.
	fields map[string]map[string]timeField
}

// timeField is a time.Time or *time.Time field of struct, at index.
type timeField struct {
	struct_ reflect.Type
	index   []int
}

// epoch is the instant cel-go's native types read a zero time as.
var epoch = time.Unix(0, 0)

// zeroTimeFields returns, by CEL type name and field name, the time.Time
// and *time.Time fields of the struct types reachable from st.
func zeroTimeFields(st reflect.Type) map[string]map[string]timeField {
	fields := map[string]map[string]timeField{}
	reaches(st, func(t reflect.Type) bool {
		if t.Kind() != reflect.Struct || t == timeType || t.Name() == "" {
			return false
		}
		for _, f := range reflect.VisibleFields(t) {
			if !f.IsExported() || (f.Type != timeType && f.Type != reflect.PointerTo(timeType)) {
				continue
			}
			// The field payload.Name reads: none where the name is
			// ambiguous.
			sf, ok := t.FieldByName(f.Name)
			if !ok || sf.Type != f.Type {
				continue
			}
			name := nativeName(t)
			if fields[name] == nil {
				fields[name] = map[string]timeField{}
			}
			fields[name][f.Name] = timeField{t, sf.Index}
		}
		return false
	})
	return fields
}

// readZeroTimes returns an EnvOption that wraps the environment's type
// provider in a zeroTimes for the struct types of fields. It goes last,
// after the caller's EnvOptions, so that no provider they compose hides
// it.
func readZeroTimes(fields map[string]map[string]timeField) cel.EnvOption {
	return func(e *cel.Env) (*cel.Env, error) {
		if len(fields) == 0 {
			return e, nil
		}
		return cel.CustomTypeProvider(&zeroTimes{Provider: e.CELTypeProvider(), fields: fields})(e)
	}
}

// adaptZeroTimes returns an EnvOption that registers the struct types of
// fields as zeroTimeTypes, whose values read a zero time as year 1 where
// CEL finds the field only when a rule runs: a struct held in an
// interface, or read through dyn(). It goes before ext.NativeTypes, which
// then keeps these registrations for the types' names.
func adaptZeroTimes(fields map[string]map[string]timeField) cel.EnvOption {
	return func(e *cel.Env) (*cel.Env, error) {
		reg, ok := e.CELTypeProvider().(*types.Registry)
		if !ok || len(fields) == 0 || e.CELTypeAdapter() != types.Adapter(reg) {
			return e, nil
		}
		for _, name := range slices.Sorted(maps.Keys(fields)) {
			var st reflect.Type
			for _, tf := range fields[name] {
				st = tf.struct_
				break
			}
			nt, err := types.NewNativeType(st, types.NativeTypeAdapter(reg))
			if err != nil {
				return nil, err
			}
			if err := reg.RegisterType(&zeroTimeType{NativeType: nt, fields: fields[name]}); err != nil {
				return nil, err
			}
		}
		return e, nil
	}
}

// zeroTimeType is the CEL type of a payload struct type with time fields:
// a cel-go native type whose values are zeroTimeObjs.
type zeroTimeType struct {
	*types.NativeType
	fields map[string]timeField // by field name
}

// Adapt returns the native object of value, as a zeroTimeObj.
func (t *zeroTimeType) Adapt(a types.Adapter, value any) ref.Val {
	v := t.NativeType.Adapt(a, value)
	if _, ok := v.(traits.Indexer); !ok {
		return v // null, for a nil pointer
	}
	return &zeroTimeObj{Val: v, fields: t.fields}
}

// zeroTimeObj is a cel-go native object of a struct type with time
// fields whose Get reads a zero time as year 1, as the field reads when
// CEL knows its type when a set compiles. Every value of the type is one,
// so that two compare as the native objects they hold.
type zeroTimeObj struct {
	ref.Val // the native object
	fields  map[string]timeField
}

// Get returns the field, a zero time as year 1.
func (o *zeroTimeObj) Get(field ref.Val) ref.Val {
	v := o.Val.(traits.Indexer).Get(field)
	if ts, ok := v.(types.Timestamp); ok && ts.Time.Equal(epoch) {
		if name, ok := field.(types.String); ok {
			if tf, ok := o.fields[string(name)]; ok && tf.zero(o.Val.Value()) {
				return types.Timestamp{}
			}
		}
	}
	return v
}

// IsSet reports whether the field is set, as the native object does.
func (o *zeroTimeObj) IsSet(field ref.Val) ref.Val { return o.Val.(traits.FieldTester).IsSet(field) }

// IsZeroValue reports whether the struct is its zero value.
func (o *zeroTimeObj) IsZeroValue() bool {
	z, ok := o.Val.(traits.Zeroer)
	return ok && z.IsZeroValue()
}

// Equal compares the native objects.
func (o *zeroTimeObj) Equal(other ref.Val) ref.Val {
	if w, ok := other.(*zeroTimeObj); ok {
		other = w.Val
	}
	return o.Val.Equal(other)
}

// ConvertToType converts the native object, itself to its own type.
func (o *zeroTimeObj) ConvertToType(t ref.Type) ref.Val {
	v := o.Val.ConvertToType(t)
	if v == o.Val {
		return o
	}
	return v
}

// AggregateSize is that of the native object, for the cost of a rule.
func (o *zeroTimeObj) AggregateSize(sizer types.AggregateSizer) uint32 {
	if v, ok := o.Val.(types.AggregateSizeVisitor); ok {
		return v.AggregateSize(sizer)
	}
	return 1
}

// FindStructFieldType returns the field type the wrapped provider
// returns, with a GetFrom that reads a zero time as year 1 for the time
// fields of the payload's struct types.
func (z *zeroTimes) FindStructFieldType(structType, fieldName string) (*types.FieldType, bool) {
	ft, ok := z.Provider.FindStructFieldType(structType, fieldName)
	if !ok || ft == nil || ft.GetFrom == nil {
		return ft, ok
	}
	tf, isTime := z.fields[structType][fieldName]
	if !isTime {
		return ft, ok
	}
	get := ft.GetFrom
	wrapped := *ft
	wrapped.GetFrom = func(obj any) (any, error) {
		v, err := get(obj)
		if err != nil {
			return v, err
		}
		// Only a value read as the epoch may have been a zero time: the
		// others cost nothing more.
		if ts, ok := v.(types.Timestamp); ok && ts.Time.Equal(epoch) {
			if tf.zero(obj) {
				return types.Timestamp{}, nil
			}
		}
		return v, nil
	}
	return &wrapped, true
}

// zero reports whether obj, a value or a pointer to a value of the
// field's struct (or a CEL value holding one), holds the zero time in
// the field, or none behind a nil pointer, whose fields CEL reads as
// their zero values. It reports false for an obj of another type.
func (tf timeField) zero(obj any) bool {
	if rv, ok := obj.(ref.Val); ok {
		obj = rv.Value()
	}
	v := reflect.ValueOf(obj)
	if !v.IsValid() {
		return false
	}
	if v.Kind() == reflect.Pointer && v.Type().Elem() == tf.struct_ {
		if v.IsNil() {
			return true
		}
		v = v.Elem()
	}
	if v.Type() != tf.struct_ {
		return false
	}
	for i, x := range tf.index {
		if i > 0 && v.Kind() == reflect.Pointer {
			if v.IsNil() {
				return true
			}
			v = v.Elem()
		}
		v = v.Field(x)
	}
	if v.Kind() == reflect.Pointer {
		if v.IsNil() {
			return true
		}
		v = v.Elem()
	}
	if v.CanInterface() {
		return v.Interface().(time.Time).IsZero()
	}
	// Promoted from an embedded struct whose type is not exported.
	return v.IsZero()
}
