package httpapi

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"
)

// selfDecoding decodes itself: the first pass checks only its keys.
type selfDecoding struct{ Raw string }

func (s *selfDecoding) UnmarshalJSON(b []byte) error {
	s.Raw = string(b)
	return nil
}

// Embedded's fields are promoted into wide's.
type Embedded struct {
	E    string `json:"e"`
	Name string
}

// wide has a field of every kind Decode treats apart.
type wide struct {
	F64    float64          `json:"f64"`
	F32    float32          `json:"f32"`
	I8     int8             `json:"i8"`
	I64    int64            `json:"i64"`
	U16    uint16           `json:"u16"`
	S      string           `json:"s"`
	B      bool             `json:"b"`
	Lower  int              `json:"k"`
	Upper  int              `json:"K"`
	QI     int              `json:"qi,string"`
	QF     *float64         `json:"qf,string"`
	QS     string           `json:"qs,string"`
	QB     bool             `json:"qb,string"`
	Bytes  []byte           `json:"bytes"`
	Arr    [2]int           `json:"arr"`
	IntMap map[int]string   `json:"intmap"`
	U8Map  map[uint8]any    `json:"u8map"`
	StrMap map[string][]int `json:"strmap"`
	Num    json.Number      `json:"num"`
	Raw    json.RawMessage  `json:"raw"`
	Self   selfDecoding     `json:"self"`
	SelfP  *selfDecoding    `json:"selfp"`
	When   time.Time        `json:"when"`
	Any    any              `json:"any"`
	Nested *wide            `json:"nested"`
	List   []wide           `json:"list"`
	Embedded
}

// decodeBothWays decodes data into a new value of each of a few types,
// with Decode's first pass read by plain tokens and by a json.Decoder
// alone, and fails unless the errors and the values decoded are the same.
// It reports whether plain tokens read data for any of the types.
func decodeBothWays(t testing.TB, data []byte) bool {
	t.Helper()
	read := false
	for _, typ := range []reflect.Type{
		reflect.TypeFor[request](), reflect.TypeFor[wide](), reflect.TypeFor[any](),
		reflect.TypeFor[[]wide](), reflect.TypeFor[map[int]float64](), reflect.TypeFor[[1]string](),
	} {
		plain, slow := reflect.New(typ), reflect.New(typ)
		plainErr := decode(data, plain.Interface(), true)
		slowErr := decode(data, slow.Interface(), false)
		if fmt.Sprint(plainErr) != fmt.Sprint(slowErr) || !reflect.DeepEqual(plainErr, slowErr) {
			t.Fatalf("%q into %v: with plain tokens: %#v; without: %#v", data, typ, plainErr, slowErr)
		}
		if !reflect.DeepEqual(plain.Interface(), slow.Interface()) {
			t.Fatalf("%q into %v: with plain tokens: %#v; without: %#v", data, typ, plain.Elem(), slow.Elem())
		}
		if check(&plainTokens{data: data}, data, reflect.New(typ).Interface()) != errNotPlain {
			read = true
		}
	}
	return read
}

// bodiesAtTheEdges are bodies at the edges of what plain tokens read.
var bodiesAtTheEdges = []string{
	`{"f64":-0}`, `{"f64":-0.0}`, `{"f64":0e0}`, `{"f64":1E+2}`, `{"f64":1e-400}`, `{"f64":1e400}`,
	`{"f64":-1.7976931348623157e308}`, `{"f64":1.7976931348623159e308}`, `{"f32":3.4028236e38}`,
	`{"f32":1e-46}`, `{"i8":-128}`, `{"i8":-129}`, `{"i8":127}`, `{"i8":128}`, `{"i8":-0}`,
	`{"i8":1e0}`, `{"i8":1.0}`, `{"i64":9223372036854775807}`, `{"i64":9223372036854775808}`,
	`{"i64":-9223372036854775808}`, `{"u16":-0}`, `{"u16":-1}`, `{"u16":65536}`,
	`{"num":1E+2}`, `{"num":"1E+2"}`, `{"num":"x"}`, `{"num":"-0"}`, `{"num":""}`, `{"num":null}`,
	`{"any":-0}`, `{"any":1e400}`, `{"any":[[],{},[{}],{"a":[]}]}`, `{"any":{"a":1,"A":2}}`,
	`{"k":1,"K":2}`, `{"K":1}`, `{"k":1,"k":2}`, `{"Name":"n","e":"x"}`, `{"name":"n"}`, `{"Embedded":{}}`,
	`{"qi":"5"}`, `{"qi":5}`, `{"qi":"5.5"}`, `{"qi":"-0"}`, `{"qi":" 5"}`, `{"qi":"null"}`, `{"qi":null}`,
	`{"qf":"1e400"}`, `{"qf":"1E+2"}`, `{"qf":"null"}`, `{"qs":"\"x\""}`, `{"qs":"x"}`, `{"qs":"\"\""}`,
	`{"qb":"true"}`, `{"qb":"TRUE"}`, `{"qb":true}`,
	`{"bytes":"aGk="}`, `{"bytes":"aGk"}`, `{"bytes":""}`, `{"bytes":null}`, `{"bytes":[1,2]}`,
	`{"arr":[1,2]}`, `{"arr":[1,2,3]}`, `{"arr":[]}`, `{"arr":[1]}`,
	`{"intmap":{"1":"a","01":"b"}}`, `{"intmap":{"-0":"a","0":"b"}}`, `{"intmap":{"+1":"a"}}`,
	`{"intmap":{"9223372036854775808":"a"}}`, `{"intmap":{"x":"a"}}`, `{"intmap":{}}`,
	`{"u8map":{"255":1,"256":2}}`, `{"u8map":{"-1":1}}`, `{"u8map":{"1":{"2":[]}}}`,
	`{"strmap":{"a":[],"A":[1]}}`, `{"strmap":{"a":[1.5]}}`,
	`{"raw":{"a":1,"a":2}}`, `{"raw":[1,2]}`, `{"raw":-0}`,
	`{"self":{"x":1}}`, `{"self":{"x":1,"x":2}}`, `{"self":1}`, `{"selfp":null}`, `{"selfp":"s"}`,
	`{"when":"2026-12-06T05:00:00Z"}`, `{"when":"2026-12-06T05:00:00+01:00"}`, `{"when":"yesterday"}`, `{"when":1}`,
	`{"nested":{"nested":{"nested":{}}}}`, `{"list":[{},{"list":[]}]}`, `{"list":{}}`,
	`{"s":"\u2028"}`, "{\"s\":\"\u2028\u2029\"}", "{\"s\":\"\xed\xa0\x80\"}", "{\"s\":\"\xc0\xaf\"}",
	"{\"s\":\"\xef\xbf\xbd\"}", "{\"s\":\"\x7f\"}", "{\"s\":\"\U0001F600\"}", "{\"\u00e9\":1}",
	"{\"s\":\"a\"}\t\r\n ", "\ufeff{}", "{\"s\":\"a\"}\x00", "{\"s\":\"a\"}\f", "\f{}",
	`{}`, `[]`, `[{}]`, `{"list":[{"list":[{"list":[]}]}]}`, `null`, `true`, `1`, `-0`, `"s"`, `{"s":1}`,
	`{"s":null}`, `{"b":null}`, `{"b":1}`, `{"f64":"1"}`, `{"i8":true}`,
	`{"amount":1.5,"metadata":{},"items":[],"tags":[],"location":{}}`, `{"size":1E+2}`, `{"count":1E2}`,
	`{"when":"2026-12-06T05:00:00Z","small":1e39}`, `{"any":[1,2]} `, `{"any":[1,2]} 3`,
	`[1.0,2]`, `{"i8":01}`, `{"f64":1.}`, `[1,]`, `{"s":1,}`, `{"s":"a",,"b":true}`, `{"s" "a"}`, `[1,"a"]`, `{"1":1,"01":2}`, `{"-1":0.5}`, `{"18446744073709551616":1}`, `["a","b"]`,
}

// Decode's result, error and value, is the same whether plain tokens read
// the body or not.
func TestDecodeAlikeWithPlainTokens(t *testing.T) {
	bodies := append([]string(nil), bodiesAtTheEdges...)
	var nested strings.Builder
	for depth := MaxDepth - 1; depth <= MaxDepth+1; depth++ {
		for _, open := range []string{"[", `{"any":`, `{"nested":`, `{"list":[`} {
			nested.Reset()
			for range depth {
				nested.WriteString(open)
			}
			body := nested.String() + strings.Repeat(map[string]string{"[": "]", `{"any":`: "}", `{"nested":`: "}", `{"list":[`: "]}"}[open], depth)
			bodies = append(bodies, body, strings.Replace(body, open+open, open+"{}"+open, 1))
		}
	}
	read := 0
	for _, body := range bodies {
		if decodeBothWays(t, []byte(body)) {
			read++
		}
	}
	if read < len(bodies)*3/4 {
		t.Fatalf("plain tokens read %d of %d bodies", read, len(bodies))
	}
}

// FuzzDecodePlainTokens: on any input, Decode's error and value are the
// same with plain tokens as without.
func FuzzDecodePlainTokens(f *testing.F) {
	for _, s := range bodiesAtTheEdges {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		decodeBothWays(t, b)
	})
}
