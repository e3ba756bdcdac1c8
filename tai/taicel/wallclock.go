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
)

// wallClock returns x, a value that writes itself, without the monotonic
// clock reading of the time.Time it is, points to or embeds (as
// types.Timestamp does), which its String writes ("m=+0.0049"): how
// long the process had run, which a recorded time does not have, so that
// a reason would differ when its decision is replayed. It returns x
// itself when it holds no such time.
func wallClock(x any) any {
	switch t := x.(type) {
	case time.Time:
		return t.Round(0)
	case *time.Time:
		if t != nil && t.Round(0) != *t {
			w := t.Round(0)
			return &w
		}
		return x
	}
	v := reflect.ValueOf(x)
	if v.Kind() != reflect.Struct {
		return x
	}
	var out reflect.Value
	for i := range v.NumField() {
		f := v.Type().Field(i)
		if !f.Anonymous || f.Type != timeType {
			continue
		}
		tm := v.Field(i).Interface().(time.Time)
		if w := tm.Round(0); w != tm {
			if !out.IsValid() {
				out = reflect.New(v.Type()).Elem()
				out.Set(v)
			}
			out.Field(i).Set(reflect.ValueOf(w))
		}
	}
	if out.IsValid() {
		return out.Interface()
	}
	return x
}
