package httpapi

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"pgregory.net/rapid"
)

// checkBoth runs Decode's first pass over data with plainTokens and with a
// json.Decoder, and fails unless plainTokens gave up (errNotPlain) or both
// came to the same end. It reports whether plainTokens read data itself.
func checkBoth(t testing.TB, data []byte, v any) bool {
	t.Helper()
	plain := check(&plainTokens{data: data}, data, v)
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	slow := check(dec, data, v)
	if plain == errNotPlain {
		return false
	}
	if fmt.Sprint(plain) != fmt.Sprint(slow) {
		t.Fatalf("%q: plain tokens: %v; json.Decoder: %v", data, plain, slow)
	}
	return true
}

// Bodies with escapes, errors of syntax or several values are left to the
// json.Decoder; every other body is read alike by both.
func TestPlainTokensAsTheDecoder(t *testing.T) {
	for _, c := range []struct {
		body  string
		plain bool
	}{
		{`{"amount":1}`, true},
		{` {"amount" : 1.5e3 , "customer_id":"c", "metadata":{"a":"b","c":"d"}} `, true},
		{`{"amount":1,"Amount":2}`, true},
		{`{"amount":1,"amount":2}`, true},
		{`{"nope":1}`, true},
		{`{"items":[{"country":1}]}`, true},
		{`{"items":[]}`, true},
		{`{"metadata":{}}`, true},
		{`{"location":null}`, true},
		{`{"any":[1,"x",true,false,null,{"a":[[]]}]}`, true},
		{`{"count":300}`, true},
		{`{"count":-0}`, true},
		{`{"small":1e400}`, true},
		{`{"customer_id":"é"}`, true},
		{`{"tags":["a","b"]}`, true},
		{`[1,2]`, true},
		{`"x"`, true},
		{`{"customer_id":"\u00e9"}`, false},
		{"{\"tags\":[\"\xff\"]}", false},
		{`{"amount":01}`, false},
		{`{"amount":1.}`, false},
		{`{"amount":-}`, false},
		{`{"amount":1e}`, false},
		{`{"amount":1x}`, false},
		{`{"amount":tru}`, false},
		{`{"amount":1,}`, false},
		{`{"tags":["a",]}`, false},
		{`{"amount" 1}`, false},
		{`{"amount":1]`, false},
		{`{"amount":1}{}`, false},
		{`{"amount":1} x`, false},
		{`{"amount":1`, false},
		{``, false},
		{`   `, false},
		{"{\"a\x01\":1}", false},
		{`{"amount":1,"Amount":2 x`, true}, // the key is refused before the syntax is read
	} {
		var r request
		if got := checkBoth(t, []byte(c.body), &r); got != c.plain {
			t.Errorf("%q: read by plain tokens %v, want %v", c.body, got, c.plain)
		}
	}
}

// Generated bodies, valid and not, come to the same end either way.
func TestPlainTokensAsTheDecoderGenerated(t *testing.T) {
	keys := []string{"amount", "Amount", "customer_id", "metadata", "location", "items", "country", "count", "any", "tags", "raw", "x"}
	var value func(depth int) *rapid.Generator[string]
	value = func(depth int) *rapid.Generator[string] {
		return rapid.Custom(func(t *rapid.T) string {
			kind := rapid.IntRange(0, 7).Draw(t, "kind")
			if depth > 3 {
				kind %= 4
			}
			switch kind {
			case 0:
				return rapid.SampledFrom([]string{"0", "-0", "1", "-12.5", "1e3", "1E-2", "300", "1e400", "2.5", "01", "1.", "-", "1e", "1x"}).Draw(t, "number")
			case 1:
				return rapid.SampledFrom([]string{"true", "false", "null", "tru", "nul"}).Draw(t, "literal")
			case 2:
				return rapid.SampledFrom([]string{`"a"`, `"é"`, `""`, `"\n"`, `"\u00e9"`, "\"\xff\"", `"52.5"`}).Draw(t, "string")
			case 3:
				return `"` + rapid.SampledFrom(keys).Draw(t, "word") + `"`
			case 4, 5:
				n := rapid.IntRange(0, 4).Draw(t, "keys")
				parts := make([]string, n)
				for i := range parts {
					parts[i] = `"` + rapid.SampledFrom(keys).Draw(t, "key") + `"` + rapid.SampledFrom([]string{":", " : ", ""}).Draw(t, "colon") + value(depth+1).Draw(t, "value")
				}
				return "{" + strings.Join(parts, rapid.SampledFrom([]string{",", " , ", ",,"}).Draw(t, "comma")) + rapid.SampledFrom([]string{"}", "}", "]", ",}"}).Draw(t, "close")
			default:
				n := rapid.IntRange(0, 4).Draw(t, "elems")
				parts := make([]string, n)
				for i := range parts {
					parts[i] = value(depth+1).Draw(t, "elem")
				}
				return "[" + strings.Join(parts, rapid.SampledFrom([]string{",", " ,\n", ""}).Draw(t, "comma")) + rapid.SampledFrom([]string{"]", "]", "}", ",]"}).Draw(t, "close")
			}
		})
	}
	plain := 0
	rapid.Check(t, func(rt *rapid.T) {
		body := value(0).Draw(rt, "body") + rapid.SampledFrom([]string{"", " ", "\n", " x", "{}", "1"}).Draw(rt, "after")
		var r request
		if checkBoth(t, []byte(body), &r) {
			plain++
		}
		var a any
		checkBoth(t, []byte(body), &a)
	})
	if plain == 0 {
		t.Fatal("no generated body was read by plain tokens")
	}
}

// FuzzPlainTokens: on any input, plain tokens give up or agree with the
// json.Decoder.
func FuzzPlainTokens(f *testing.F) {
	for _, s := range []string{`{"amount":1}`, `{"amount":1,"Amount":2}`, `{"metadata":{"a":"b"}}`, `[`, `{"items":[{"country":1}]}`, `nul`, `{"location":null}`, `[1,[2,{}]]`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var r request
		checkBoth(t, b, &r)
		var a any
		checkBoth(t, b, &a)
	})
}

func BenchmarkDecode(b *testing.B) {
	body := []byte(`{"amount": 42.50, "customer_id": "cust_1234", "currency": "EUR", "merchant_id": "merc_1", "metadata": {"order": "A-1"}, "location": {"country": "DE"}}`)
	type payment struct {
		Amount     float64           `json:"amount"`
		CustomerID string            `json:"customer_id"`
		Currency   string            `json:"currency"`
		MerchantID string            `json:"merchant_id"`
		Metadata   map[string]string `json:"metadata"`
		Location   *inner            `json:"location"`
	}
	b.ReportAllocs()
	for b.Loop() {
		var p payment
		if err := Decode(body, &p); err != nil {
			b.Fatal(err)
		}
	}
}
