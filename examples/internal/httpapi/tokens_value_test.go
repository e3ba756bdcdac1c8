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

// amountText keeps a number's text as sent, as the payment service's
// amount does: a number or null, and anything else an error naming the
// field.
type amountText string

func (a *amountText) UnmarshalJSON(b []byte) error {
	switch {
	case string(b) == "null":
		*a = ""
	case len(b) > 0 && (b[0] == '-' || '0' <= b[0] && b[0] <= '9'):
		*a = amountText(b)
	default:
		return Invalid("amount", "amount must be a number, not %s", Clip(string(b), 16))
	}
	return nil
}

// paymentBody is shaped as the payment service's POST /payment request.
type paymentBody struct {
	Amount     amountText         `json:"amount"`
	CustomerID string             `json:"customer_id"`
	Currency   string             `json:"currency"`
	MerchantID string             `json:"merchant_id"`
	Metadata   map[string]*string `json:"metadata,omitempty"`
	Location   *struct {
		Latitude  *float64 `json:"latitude,omitempty"`
		Longitude *float64 `json:"longitude,omitempty"`
		Country   string   `json:"country,omitempty"`
	} `json:"location,omitempty"`
	FailureRate *float64 `json:"failure_rate"` // the gateway's settings
}

// deployBody is shaped as the deployment service's POST /deployments
// request.
type deployBody struct {
	Service           string   `json:"service"`
	Version           string   `json:"version"`
	TargetRegion      string   `json:"target_region"`
	RolloutStrategy   string   `json:"rollout_strategy"`
	TargetRegions     []string `json:"target_regions"`
	ContinueOnFailure bool     `json:"continue_on_failure"`
	Analysis          *struct {
		MaxErrorRate float64 `json:"max_error_rate"`
		MaxP99Ms     float64 `json:"max_p99_ms"`
	} `json:"analysis"`
	Metadata map[string]string `json:"metadata"`
	Reason   string            `json:"reason"`
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
		reflect.TypeFor[paymentBody](), reflect.TypeFor[deployBody](),
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

// serviceBodies are bodies as clients of the payment and deployment
// services send them, and as they should not.
var serviceBodies = []string{
	`{"amount":42.50,"customer_id":"cust_1","currency":"EUR","merchant_id":"m","metadata":{"order":"A-1","note":null},"location":{"latitude":52.52,"longitude":-0.0,"country":"DE"}}`,
	`{"amount":1000e-4}`, `{"amount":-0}`, `{"amount":1e400}`, `{"amount":007}`, `{"amount":"42"}`, `{"amount":null}`, `{"amount":[1]}`,
	`{"failure_rate":1e400}`, `{"failure_rate":1e-400}`, `{"failure_rate":-0}`, `{"failure_rate":0.00000000000000000000000000001}`,
	`{"failure_rate":123456789012345678901234567890}`, `{"failure_rate":null}`, `{"failure_rate":01}`, `{"failure_rate":.5}`, `{"failure_rate":+1}`,
	`{"service":"api","version":"1.2.3","target_regions":["eu","us"],"analysis":{"max_error_rate":0.05,"max_p99_ms":250},"metadata":{"by":"ci"}}`,
	`{"service":"a","service":"b"}`, `{"metadata":{"a":"1","a":"2"}}`, `{"location":{"country":"DE","country":"FR"}}`,
	`{"analysis":{"max_p99_ms":1,"max_p99_ms":1}}`, `{"metadata":{"k":"v"},"metadata":{}}`,
	`{"Service":"a"}`, `{"SERVICE":"a"}`, `{"location":{"Country":"DE"}}`, `{"analysis":{"Max_P99_Ms":1}}`, `{"metadata":{"a":"1","A":"2"}}`,
	`{"service":"a","extra":1}`, `{"analysis":{"max_cpu":1}}`, `{"location":{"city":"x"}}`,
	`{"continue_on_failure":null}`, `{"service":null}`, `{"target_regions":null}`, `{"target_regions":[null]}`, `{"metadata":{"a":null}}`,
	`{"continue_on_failure":"true"}`, `{"continue_on_failure":1}`, `{"target_regions":"eu"}`, `{"analysis":[]}`,
	`{"service":"ünï","version":"日本","reason":"😀"}`, `{"servicé":"a"}`, `{"reason":"a\u00a0b"}`, `{"reason":"\ud83d\ude00"}`, `{"reason":"\ud83d"}`,
	"{\"reason\":\"a\u00a0b\"}", "\u00a0{}", "{\u00a0\"reason\":\"a\"}", "{\"reason\":\"a\"}\u00a0",
	"{\r\n\t\"service\" :\r\n \"a\" ,\r\n\"version\":\"b\"\r\n}\r\n", "\r{}\r", "{\"reason\":\"a\rb\"}", "{\"reason\":\"a\tb\"}",
	`{"service":"a"}}`, `{"service":"a"},`, `{"service":"a"} {"service":"b"}`, `{"service":"a"} null`, `{"service":"a"}]`, `{"service":"a"}x`,
	`{"service":"a"`, `{"service":"a`, `{"service":`, `{"service"`, `{"serv`, `{`, `{"target_regions":["eu",`, `{"amount":1.`, `{"amount":1e`, `{"amount":-`,
	"\xef\xbb\xbf{\"service\":\"a\"}", "\xef\xbb{}", "{\"service\":\"\xff\"}", "{\"serv\xffice\":\"a\"}", "{\"reason\":\"\xe2\x82\"}",
	"{\"reason\":\"\xf4\x90\x80\x80\"}", "{\"reason\":\"a\x00b\"}", "{\"reason\":\"a\"}\x00",
	`{"amount":1,"metadata":{"x":{"y":1}}}`, `{"analysis":{"max_error_rate":1,"nested":{"a":1,"a":2}}}`,
	`{"amount":-9223372036854775809,"failure_rate":4.9e-324}`, `{"failure_rate":1.7976931348623157e309}`, `{"amount":0E0}`, `{"amount":-0.0e-0}`,
}

// Decode's result, error and value, is the same whether plain tokens read
// the body or not.
func TestDecodeAlikeWithPlainTokens(t *testing.T) {
	bodies := append(append([]string(nil), bodiesAtTheEdges...), serviceBodies...)
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
	for _, s := range append(append([]string(nil), bodiesAtTheEdges...), serviceBodies...) {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		decodeBothWays(t, b)
	})
}
