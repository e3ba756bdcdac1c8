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

// wallClock returns x, a value that writes itself, as a record keeps the
// time.Time it is, points to or embeds (asRecorded): without the
// monotonic clock reading, which its String writes ("m=+0.0049"), and
// in a zone of its offset alone. It returns x itself when it holds no
// such time, or one already so.
func wallClock(x any) any {
	switch t := x.(type) {
	case time.Time:
		return asRecorded(t)
	case *time.Time:
		if t != nil {
			if w := asRecorded(*t); w != *t {
				return &w
			}
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
		if w := asRecorded(tm); w != tm {
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

// asRecorded returns t as a reason writes it, the same live and when its
// decision is replayed: as a record keeps it (appendTime), in UTC when
// its offset is 0 or has seconds, and otherwise in a zone of its offset
// alone ("+0100 +0100", not "+0100 CET"); and without its monotonic
// clock reading, how long the process had run. A record keeps the
// offset of a time, not its zone's name, and a time read back takes the
// name of the machine's own zone, where that has the offset.
func asRecorded(t time.Time) time.Time {
	switch _, offset := t.Zone(); {
	case offset == 0 || offset%60 != 0:
		return t.UTC()
	default:
		return t.In(time.FixedZone("", offset))
	}
}
