package httpapi

import (
	"bufio"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"io"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

type inner struct {
	Country string `json:"country"`
}

type request struct {
	Amount   float64           `json:"amount"`
	Customer string            `json:"customer_id"`
	Metadata map[string]string `json:"metadata,omitempty"`
	Location *inner            `json:"location,omitempty"`
	Items    []inner           `json:"items,omitempty"`
	Ignored  string            `json:"-"`
	Count    int8              `json:"count,omitempty"`
	Size     uint              `json:"size,omitempty"`
	Small    float32           `json:"small,omitempty"`
	Raw      json.Number       `json:"raw,omitempty"`
	Any      any               `json:"any,omitempty"`
	When     time.Time         `json:"when,omitzero"`
	Tags     []string          `json:"tags,omitempty"`
}

func TestDecodeStrict(t *testing.T) {
	for _, tc := range []struct {
		name, body, field, msg string
	}{
		{"duplicate key", `{"amount":1,"amount":7}`, "amount", `key "amount" appears twice`},
		{"mis-cased key", `{"amount":1,"Amount":7}`, "Amount", `key "Amount" must be spelled "amount"`},
		{"mis-cased alone", `{"Amount":7}`, "Amount", `must be spelled "amount"`},
		{"unknown key", `{"amount":1,"colour":"red"}`, "colour", `unknown field "colour"`},
		{"ignored field is unknown", `{"Ignored":"x"}`, "Ignored", `unknown field "Ignored"`},
		{"nested duplicate", `{"location":{"country":"DE","country":"FR"}}`, "location.country", "appears twice"},
		{"nested mis-cased", `{"location":{"Country":"DE"}}`, "location.Country", `must be spelled "location.country"`},
		{"duplicate in a map", `{"metadata":{"a":"1","a":"2"}}`, "metadata.a", "appears twice"},
		{"in an array", `{"items":[{"country":"DE"},{"COUNTRY":"FR"}]}`, "items[1].COUNTRY", "must be spelled"},
		{"wrong type", `{"amount":"12"}`, "amount", "amount must be a number, not a JSON string"},
		{"bool for a string", `{"customer_id":true}`, "customer_id", "customer_id must be a string, not a JSON bool"},
		{"string for an object", `{"location":"DE"}`, "location", "location must be an object, not a JSON string"},
		{"number too large", `{"amount":1e400}`, "amount", "amount is out of range for a number: 1e400"},
		{"too large for a float32", `{"small":1e39}`, "small", "small is out of range for a number: 1e39"},
		{"fraction for an integer", `{"count":2.5}`, "count", "count must be an integer, not 2.5"},
		{"exponent for an integer", `{"count":1e2}`, "count", "count must be an integer, not 1e2"},
		{"integer out of range", `{"count":128}`, "count", "count is out of range for an integer: 128"},
		{"negative for unsigned", `{"size":-1}`, "size", "size must be a non-negative integer, not -1"},
		{"map value's type", `{"metadata":{"a":1}}`, "metadata.a", "metadata.a must be a string, not a JSON number"},
		{"array element's type", `{"tags":["a",2]}`, "tags[1]", "tags[1] must be a string, not a JSON number"},
		{"nested field's type", `{"items":[{"country":false}]}`, "items[0].country", "items[0].country must be a string, not a JSON bool"},
		{"map value's object", `{"metadata":{"a":{"b":"c"}}}`, "metadata.a", "metadata.a must be a string, not a JSON object"},
		{"map value's array", `{"metadata":{"a":["c"]}}`, "metadata.a", "metadata.a must be a string, not a JSON array"},
		{"array element's object", `{"tags":["a",{}]}`, "tags[1]", "tags[1] must be a string, not a JSON object"},
		{"two values", `{"amount":1} {"amount":2}`, "", "more than one JSON value"},
		{"empty", ``, "", "request body is empty"},
		{"truncated", `{"amount":1`, "", "unexpected end of input"},
		{"syntax", `{"amount":}`, "", "malformed JSON"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var r request
			err := Decode([]byte(tc.body), &r)
			var e *Error
			require.True(t, errors.As(err, &e), "got %v", err)
			assert.Equal(t, http.StatusBadRequest, e.Status)
			assert.Equal(t, "invalid_request", e.Code)
			assert.Equal(t, tc.field, e.Field)
			assert.Contains(t, e.Message, tc.msg)
		})
	}
}

// TestDecodeRefusesWhatIsNotUnicode: RFC 8259 requires UTF-8, and a
// \u escape of half a surrogate pair encodes no character. encoding/json
// turns both into U+FFFD, so two different keys or IDs would read alike.
func TestDecodeRefusesWhatIsNotUnicode(t *testing.T) {
	for _, tc := range []struct {
		name, body, field, msg string
	}{
		{"invalid byte", "{\"customer_id\":\"a\xff\"}", "customer_id", "customer_id is not valid UTF-8"},
		{"truncated sequence", "{\"customer_id\":\"a\xc3\"}", "customer_id", "customer_id is not valid UTF-8"},
		{"in a map value", "{\"metadata\":{\"k\":\"\xfe\"}}", "metadata.k", "metadata.k is not valid UTF-8"},
		{"in a key", "{\"metadata\":{\"\xff\":\"1\",\"\xfe\":\"2\"}}", "metadata.\ufffd", "key metadata.\ufffd is not valid UTF-8"},
		{"lone high surrogate", `{"customer_id":"a\ud800b"}`, "customer_id", `customer_id holds \ud800, half of a UTF-16 surrogate pair`},
		{"lone low surrogate", `{"tags":["\uDC00"]}`, "tags[0]", `tags[0] holds \uDC00, half of a UTF-16 surrogate pair`},
		{"pair reversed", `{"customer_id":"\udc00\ud800"}`, "customer_id", `holds \udc00`},
		{"high then not low", `{"customer_id":"\ud800\u0041"}`, "customer_id", `holds \ud800`},
		{"in an untyped value", `{"any":{"x":"\ud83d"}}`, "any.x", `any.x holds \ud83d`},
		{"in a key of a struct", `{"\ud800":1}`, "\ufffd", `holds \ud800`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var r request
			err := Decode([]byte(tc.body), &r)
			var e *Error
			require.True(t, errors.As(err, &e), "got %v", err)
			assert.Equal(t, http.StatusBadRequest, e.Status)
			assert.Equal(t, tc.field, e.Field)
			assert.Contains(t, e.Message, tc.msg)
		})
	}
	var r request
	require.NoError(t, Decode([]byte(`{"customer_id":"\ud83d\ude00 \u00e9 \ufffd \\ud800","metadata":{"k":"\"\\"}}`), &r))
	assert.Equal(t, "\U0001F600 \u00e9 \ufffd \\ud800", r.Customer, "a pair, an escaped backslash before u, and U+FFFD itself are fine")
	require.NoError(t, Decode([]byte("{\"customer_id\":\"caf\u00e9 \U0001F600\"}"), &r))
	assert.Equal(t, "caf\u00e9 \U0001F600", r.Customer)
}

// TestDecodeNumberOutOfRangeInAnUntypedValue: encoding/json decodes a
// number in an interface as a float64, and names neither the key nor the
// problem of one a float64 cannot hold.
func TestDecodeNumberOutOfRangeInAnUntypedValue(t *testing.T) {
	for _, tc := range []struct {
		body, field string
		v           any
	}{
		{`{"any":1e400}`, "any", new(request)},
		{`{"any":{"x":[1,-1e400]}}`, "any.x[1]", new(request)},
		{`{"a":{"b":1e400}}`, "a.b", new(map[string]any)},
		{`[1e400]`, "[0]", new([]any)},
		{`1e400`, "", new(any)},
	} {
		err := Decode([]byte(tc.body), tc.v)
		var e *Error
		require.True(t, errors.As(err, &e), "%s: got %v", tc.body, err)
		assert.Equal(t, tc.field, e.Field, tc.body)
		assert.Contains(t, e.Message, orBody(tc.field)+" is out of range for a number", tc.body)
	}
	var m map[string]any
	require.NoError(t, Decode([]byte(`{"a":[1e308,-1e-400,"1e400"]}`), &m))
	assert.Equal(t, map[string]any{"a": []any{1e308, math.Copysign(0, -1), "1e400"}}, m)
}

// TestDecodeAfterTheValue: what follows the value is named for what it
// is; only a second value is "more than one JSON value".
func TestDecodeAfterTheValue(t *testing.T) {
	for body, msg := range map[string]string{
		`{"amount":1} {"amount":2}`: "request body holds more than one JSON value",
		`{"amount":1} 2`:            "request body holds more than one JSON value",
		`{"amount":1}}`:             "malformed JSON at byte 12: invalid character '}' after the request body's value",
		`{"amount":1},`:             "malformed JSON at byte 12: invalid character ',' after the request body's value",
		`{"amount":1}x`:             "malformed JSON at byte 12: invalid character 'x' after the request body's value",
		"{\"amount\":1}\u00a0":      "malformed JSON at byte 12: invalid character U+00A0 after the request body's value",
		"{\"amount\":1}\x00":        "malformed JSON at byte 12: invalid character U+0000 after the request body's value",
		"{\"amount\":1}\xff":        "malformed JSON at byte 12: invalid byte 0xff after the request body's value",
	} {
		err := Decode([]byte(body), new(request))
		var e *Error
		require.True(t, errors.As(err, &e), "%q: got %v", body, err)
		assert.Equal(t, http.StatusBadRequest, e.Status)
		assert.Equal(t, msg, e.Message, body)
	}
	require.NoError(t, Decode([]byte("{\"amount\":1} \t\r\n"), new(request)), "JSON's own white space")
}

// TestDecodeSyntaxErrorAt: a syntax error names the byte where it is, as
// what follows the value does, and the character the client sent there,
// not one of its bytes read as Latin-1 ('Ã' for é).
func TestDecodeSyntaxErrorAt(t *testing.T) {
	for body, msg := range map[string]string{
		`{"amount":}`:                           "malformed JSON at byte 10: invalid character '}' looking for beginning of value",
		`{"amount" 1}`:                          "malformed JSON at byte 10: invalid character '1' after object key",
		`{"amount":01}`:                         "malformed JSON at byte 11: invalid character '1' after object key:value pair",
		"{\"amount\":\u00e9}":                   "malformed JSON at byte 10: invalid character U+00E9 looking for beginning of value",
		"{\"amount\":\xff}":                     "malformed JSON at byte 10: invalid byte 0xff looking for beginning of value",
		"{\"amount\":1,\u00a0}":                 "malformed JSON at byte 12: invalid character U+00A0 looking for beginning of object key string",
		"{\"items\":[{},\x01]}":                 "malformed JSON at byte 13: invalid character U+0001 looking for beginning of value",
		"\ufeff{\"amount\":1}":                  "malformed JSON at byte 0: the request body starts with a byte order mark (U+FEFF): JSON between systems is sent without one (RFC 8259)",
		"{\"amount\":1,\"tags\":[\"a\" \"b\"]}": "malformed JSON at byte 24: invalid character '\"' after array element",
	} {
		err := Decode([]byte(body), new(request))
		var e *Error
		require.True(t, errors.As(err, &e), "%q: got %v", body, err)
		assert.Equal(t, http.StatusBadRequest, e.Status)
		assert.Equal(t, msg, e.Message, "%q", body)
	}
}

func TestDecodeDepth(t *testing.T) {
	nested := func(n int) []byte {
		return []byte(`{"any":` + strings.Repeat("[", n) + strings.Repeat("]", n) + `}`)
	}
	var r request
	require.NoError(t, Decode(nested(MaxDepth-1), &r), "as deep as allowed")
	for _, n := range []int{MaxDepth, 500_000} { // the second is a body of 1 MB
		err := Decode(nested(n), &r)
		var e *Error
		require.True(t, errors.As(err, &e), "got %v", err)
		assert.Equal(t, http.StatusBadRequest, e.Status)
		assert.Equal(t, "any"+strings.Repeat("[0]", MaxDepth-1), e.Field)
		assert.Contains(t, e.Message, "deeper than 32 levels")
	}
	err := Decode([]byte(strings.Repeat(`{"a":`, 100)+"1"+strings.Repeat("}", 100)), new(any))
	path := strings.Repeat("a.", MaxDepth-1) + "a"
	assert.EqualError(t, err, path+" nests objects and arrays deeper than 32 levels")
}

func TestDecodeAccepts(t *testing.T) {
	var r request
	require.NoError(t, Decode([]byte(`{"amount":1000e-4,"customer_id":"c","metadata":{"Amount":"x","amount":"y"},"location":{"country":"DE"},"items":[{"country":"FR"}]}`), &r))
	assert.Equal(t, 0.1, r.Amount)
	assert.Equal(t, "c", r.Customer)
	assert.Equal(t, map[string]string{"Amount": "x", "amount": "y"}, r.Metadata, "map keys differing in case are different keys")
	assert.Equal(t, "DE", r.Location.Country)
	assert.Equal(t, []inner{{"FR"}}, r.Items)

	// Numbers at the edges of their fields, null, and the types that take
	// anything in the first pass.
	r = request{}
	require.NoError(t, Decode([]byte(`{"count":-128,"size":18446744073709551615,"small":3.4e38,"raw":12.5e3,`+
		`"any":[1,"x",true,null,{"k":1e300}],"when":"2026-12-03T00:00:00Z","location":null,"tags":[null]}`), &r))
	assert.Equal(t, int8(-128), r.Count)
	assert.Equal(t, uint(18446744073709551615), r.Size)
	assert.Equal(t, float32(3.4e38), r.Small)
	assert.Equal(t, json.Number("12.5e3"), r.Raw)
	assert.Nil(t, r.Location)
	assert.Equal(t, []string{""}, r.Tags)
}

func TestWriteError(t *testing.T) {
	rec := httptest.NewRecorder()
	WriteError(rec, &Error{Status: 429, Code: "rate_limited", Message: "slow down", RetryAfter: 1500 * time.Millisecond})
	assert.Equal(t, 429, rec.Code)
	assert.Equal(t, "2", rec.Header().Get("Retry-After"))
	assert.Equal(t, "application/json", rec.Header().Get("Content-Type"))
	assert.JSONEq(t, `{"error":{"code":"rate_limited","message":"slow down"}}`, rec.Body.String())

	rec = httptest.NewRecorder()
	WriteError(rec, errors.New("database password is hunter2"))
	assert.Equal(t, 500, rec.Code)
	assert.NotContains(t, rec.Body.String(), "hunter2")
	assert.JSONEq(t, `{"error":{"code":"internal","message":"internal error"}}`, rec.Body.String())
}

func TestRetryAfterSeconds(t *testing.T) {
	assert.Equal(t, 1, RetryAfterSeconds(0))
	assert.Equal(t, 1, RetryAfterSeconds(time.Millisecond))
	assert.Equal(t, 1, RetryAfterSeconds(time.Second))
	assert.Equal(t, 2, RetryAfterSeconds(time.Second+time.Nanosecond))
}

// A wait within a second of the longest duration is rounded up too: the
// sum that rounded it overflowed, and a client was told to come back in a
// second.
func TestRetryAfterSecondsOfTheLongestWait(t *testing.T) {
	assert.Equal(t, math.MaxInt64/int(time.Second)+1, RetryAfterSeconds(math.MaxInt64))
	assert.Equal(t, math.MaxInt64/int(time.Second), RetryAfterSeconds(math.MaxInt64/time.Second*time.Second))
	assert.Equal(t, 1, RetryAfterSeconds(math.MinInt64))
}

func TestReadBody(t *testing.T) {
	req := func(ct, body string) *http.Request {
		r := httptest.NewRequest("POST", "/", strings.NewReader(body))
		if ct != "" {
			r.Header.Set("Content-Type", ct)
		}
		return r
	}
	status := func(err error) int {
		var e *Error
		require.True(t, errors.As(err, &e))
		return e.Status
	}
	_, err := ReadBody(httptest.NewRecorder(), req("", "{}"), 10)
	assert.Equal(t, 415, status(err))
	_, err = ReadBody(httptest.NewRecorder(), req("text/plain", "{}"), 10)
	assert.Equal(t, 415, status(err))
	twice := req("application/json", "{}")
	twice.Header.Add("Content-Type", "text/plain")
	_, err = ReadBody(httptest.NewRecorder(), twice, 10)
	assert.Equal(t, 400, status(err))
	assert.ErrorContains(t, err, "Content-Type is given 2 times")
	_, err = ReadBody(httptest.NewRecorder(), req("application/json", strings.Repeat("x", 11)), 10)
	assert.Equal(t, 413, status(err))
	b, err := ReadBody(httptest.NewRecorder(), req("application/json; charset=utf-8", "{}"), 10)
	require.NoError(t, err)
	assert.Equal(t, "{}", string(b))
	_, err = ReadBody(httptest.NewRecorder(), req("application/json; charset=UTF-8", "{}"), 10)
	require.NoError(t, err)
	_, err = ReadBody(httptest.NewRecorder(), req("application/json; charset=latin1", "{}"), 10)
	assert.Equal(t, 415, status(err))
	assert.ErrorContains(t, err, `charset "latin1" is not accepted`)

	gz := req("application/json", "\x1f\x8b")
	gz.Header.Set("Content-Encoding", "gzip")
	_, err = ReadBody(httptest.NewRecorder(), gz, 10)
	assert.Equal(t, 415, status(err))
	assert.ErrorContains(t, err, `Content-Encoding "gzip" is not accepted`)
	plain := req("application/json", "{}")
	plain.Header.Set("Content-Encoding", "identity")
	_, err = ReadBody(httptest.NewRecorder(), plain, 10)
	assert.NoError(t, err)
}

func TestBearer(t *testing.T) {
	for h, want := range map[string]string{
		"Bearer abc": "abc", "bearer abc": "abc", "BEARER abc": "abc", "Bearer  abc": "abc",
		"Basic abc": "", "Bearer": "", "Bearer ": "", "": "", "Bearerabc": "",
	} {
		got, ok := Bearer(h)
		assert.Equal(t, want, got, h)
		assert.Equal(t, want != "", ok, h)
	}
}

func TestTokenComparisonHidesTheLength(t *testing.T) {
	// Every comparison of a token sees two inputs of one length, whatever
	// the lengths of the token and of what a request sent: a comparison
	// of unequal lengths returns at once, and its time tells the length.
	var lens [][2]int
	constantTimeCompare = func(x, y []byte) int {
		lens = append(lens, [2]int{len(x), len(y)})
		return subtle.ConstantTimeCompare(x, y)
	}
	t.Cleanup(func() { constantTimeCompare = subtle.ConstantTimeCompare })

	const token = "s3cret-admin-token"
	for sent, want := range map[string]bool{token: true, "s3cret": false, token + "x": false, "x": false} {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.Header.Set("Authorization", "Bearer "+sent)
		assert.Equal(t, want, Matches(r, token), "bearer %q", sent)
		r = httptest.NewRequest(http.MethodGet, "/", nil)
		r.SetBasicAuth("u", sent)
		assert.Equal(t, want, MatchesAdmin(r, token), "basic %q", sent)
	}
	require.NotEmpty(t, lens)
	for _, l := range lens {
		assert.Equal(t, l[0], l[1], "compared inputs of different lengths")
	}
}

func TestTokens(t *testing.T) {
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(204) })
	call := func(h http.Handler, auth string) int {
		r := httptest.NewRequest("POST", "/", nil)
		if auth != "" {
			r.Header.Set("Authorization", auth)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		return rec.Code
	}
	var rejected []int
	count := func(_ *http.Request, e *Error) { rejected = append(rejected, e.Status) }

	open := Tokens{}
	assert.Equal(t, 204, call(open.RequireAPI(ok, count), ""))
	assert.Equal(t, 403, call(open.RequireAdmin(ok, count), "Bearer anything"), "no admin token: admin actions are off")

	tok := Tokens{API: "api", Admin: "adm"}
	assert.Equal(t, 401, call(tok.RequireAPI(ok, count), ""))
	assert.Equal(t, 401, call(tok.RequireAPI(ok, count), "Bearer adm"))
	assert.Equal(t, 204, call(tok.RequireAPI(ok, count), "bearer api"))
	assert.Equal(t, 401, call(tok.RequireAdmin(ok, count), "Bearer api"), "the API token is not the admin token")
	assert.Equal(t, 204, call(tok.RequireAdmin(ok, count), "Bearer adm"))
	basic := func(user, pass string) string {
		r := httptest.NewRequest("POST", "/", nil)
		r.SetBasicAuth(user, pass)
		return r.Header.Get("Authorization")
	}
	assert.Equal(t, 204, call(tok.RequireAdmin(ok, count), basic("", "adm")), "the admin token as the Basic password")
	assert.Equal(t, 204, call(tok.RequireAdmin(ok, count), basic("ops", "adm")), "any user name")
	assert.Equal(t, 401, call(tok.RequireAdmin(ok, count), basic("adm", "")), "the token is the password, not the user")
	assert.Equal(t, 401, call(tok.RequireAPI(ok, count), basic("", "api")), "the API token is Bearer only")

	rec := httptest.NewRecorder()
	Tokens{Admin: "adm", Realm: "deployment admin"}.RequireAdmin(ok, nil).ServeHTTP(rec, httptest.NewRequest("POST", "/", nil))
	assert.Equal(t, 401, rec.Code)
	assert.Equal(t, []string{`Basic realm="deployment admin", charset="UTF-8"`, `Bearer realm="deployment admin"`},
		rec.Header().Values("WWW-Authenticate"), "a browser asks for the password")

	// A browser sends a Basic password it knows with any page's requests:
	// a change from another site is refused, a read is not.
	cross := func(method string) int {
		r := httptest.NewRequest(method, "http://svc.example/", nil)
		r.SetBasicAuth("", "adm")
		r.Header.Set("Sec-Fetch-Site", "cross-site")
		rec := httptest.NewRecorder()
		tok.RequireAdmin(ok, count).ServeHTTP(rec, r)
		return rec.Code
	}
	assert.Equal(t, 403, cross("POST"))
	assert.Equal(t, 204, cross("GET"))
	assert.Equal(t, []int{403, 401, 401, 401, 401, 401, 403}, rejected)

	require.Error(t, Tokens{API: "x", Admin: "x"}.Validate())
	require.Error(t, Tokens{API: "x "}.Validate())
	require.NoError(t, Tokens{API: "x", Admin: "y"}.Validate())
	require.NoError(t, Tokens{}.Validate())
}

func TestReadToken(t *testing.T) {
	f := filepath.Join(t.TempDir(), "tok")
	require.NoError(t, os.WriteFile(f, []byte("s3cret\n"), 0o600))
	got, err := ReadToken("api-token", "", f)
	require.NoError(t, err)
	assert.Equal(t, "s3cret", got)
	got, err = ReadToken("api-token", "direct", "")
	require.NoError(t, err)
	assert.Equal(t, "direct", got)
	_, err = ReadToken("api-token", "direct", f)
	assert.ErrorContains(t, err, "-api-token and -api-token-file are both set")
	_, err = ReadToken("api-token", "", filepath.Join(t.TempDir(), "missing"))
	assert.ErrorContains(t, err, "-api-token-file")
	empty := filepath.Join(t.TempDir(), "empty")
	require.NoError(t, os.WriteFile(empty, []byte("\n"), 0o600))
	_, err = ReadToken("api-token", "", empty)
	assert.ErrorContains(t, err, "is empty")
}

// TestTokenNoRequestCanCarry: a token with a character no header holds
// (a line break inside, from a file of two lines), one invisible in any
// client (a byte order mark, from a file saved by an editor that adds
// one), or one longer than servers take headers, would refuse every
// request with 401; the start refuses it instead.
func TestTokenNoRequestCanCarry(t *testing.T) {
	for _, tc := range []struct {
		tokens Tokens
		msg    string
	}{
		{Tokens{API: "abc\ndef"}, "the API token holds U+000A at byte 3"},
		{Tokens{API: "abc\r\ndef"}, "the API token holds U+000D at byte 3"},
		{Tokens{Admin: "\ufeffs3cret"}, "the admin token holds U+FEFF at byte 0"},
		{Tokens{Admin: "s3\u200bcret"}, "the admin token holds U+200B at byte 2"},
		{Tokens{API: "ok", Admin: "a\x00b"}, "the admin token holds U+0000 at byte 1"},
		{Tokens{API: "a\xffb"}, "the API token is not valid UTF-8"},
		{Tokens{API: strings.Repeat("a", 4097)}, "the API token is 4097 bytes long; at most 4096"},
	} {
		assert.ErrorContains(t, tc.tokens.Validate(), tc.msg)
	}
	require.NoError(t, Tokens{API: strings.Repeat("a", 4096), Admin: "s3cret with spaces, ünïcødé & !#$%"}.Validate())

	dir := t.TempDir()
	read := func(content string) (string, error) {
		f := filepath.Join(dir, "tok")
		require.NoError(t, os.WriteFile(f, []byte(content), 0o600))
		return ReadToken("api-token", "", f)
	}
	got, err := read("s3cret\r\n")
	require.NoError(t, err)
	assert.Equal(t, "s3cret", got, "a file from Windows")
	got, err = read("s3cret\n\n\n")
	require.NoError(t, err)
	assert.Equal(t, "s3cret", got)
	_, err = read(strings.Repeat("a", 1<<20))
	assert.ErrorContains(t, err, "-api-token-file "+filepath.Join(dir, "tok")+" holds more than 65536 bytes")
	_, err = read("\r\n")
	assert.ErrorContains(t, err, "is empty")
}

func TestAllowHosts(t *testing.T) {
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(204) })
	h := AllowHosts([]string{"localhost", "127.0.0.1", "::1", "Pay.Example"}, ok)
	for host, want := range map[string]int{
		"localhost:3001": 204, "127.0.0.1": 204, "[::1]:3001": 204, "pay.example": 204,
		"evil.example:3001": 421, "": 421, "localhost.evil.example": 421,
	} {
		r := httptest.NewRequest("GET", "/", nil)
		r.Host = host
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		assert.Equal(t, want, rec.Code, host)
		if want == 421 {
			assert.Contains(t, rec.Body.String(), `"host_not_allowed"`)
		}
	}
	r := httptest.NewRequest("GET", "/", nil)
	r.Host = "anything"
	rec := httptest.NewRecorder()
	AllowHosts([]string{"*"}, ok).ServeHTTP(rec, r)
	assert.Equal(t, 204, rec.Code)
}

// TestAllowHostsEntriesAsHostHeaders: -allowed-hosts takes Host header
// values, which may carry a port; a name may end in the root's dot, and an
// IPv6 address has more than one spelling.
func TestAllowHostsEntriesAsHostHeaders(t *testing.T) {
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(204) })
	h := AllowHosts([]string{"pay.example:443", "[::1]:3001", "ops.example.", "[2001:DB8::1]", "0:0:0:0:0:0:0:2"}, ok)
	for host, want := range map[string]int{
		"pay.example": 204, "pay.example:443": 204, "PAY.EXAMPLE.:8443": 204,
		"[::1]:3001": 204, "[0:0:0:0:0:0:0:1]": 204, "ops.example": 204, "ops.example.:80": 204,
		"[2001:db8:0::1]:80": 204, "[::2]": 204,
		"pay.example..": 421, "evil.example:443": 421, "[::3]": 421, ".": 421, "": 421,
	} {
		r := httptest.NewRequest("GET", "/", nil)
		r.Host = host
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		assert.Equal(t, want, rec.Code, host)
	}
}

// An entry of an internationalized domain name, written as people write
// it, allows its Host header: a browser sends the name in its ASCII form
// (xn--...), and a Host header of any other byte is refused by net/http
// before it gets here, so such an entry allowed nothing and every request
// for the name was answered 421.
func TestAllowHostsInternationalizedName(t *testing.T) {
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(204) })
	h := AllowHosts([]string{"Bücher.example", "пример.рф:443"}, ok)
	for host, want := range map[string]int{
		"xn--bcher-kva.example": 204, "XN--BCHER-KVA.EXAMPLE.:3001": 204, "xn--e1afmkfd.xn--p1ai": 204,
		"bucher.example": 421, "xn--bcher-kva.example.evil": 421,
	} {
		r := httptest.NewRequest("GET", "/", nil)
		r.Host = host
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		assert.Equal(t, want, rec.Code, host)
	}
}

// An entry ending in an ideographic full stop (U+3002), or its full- and
// half-width forms, ends in the root's dot once in ASCII: it allows its
// name as an entry ending in "." does.
func TestAllowHostsInternationalizedRootDot(t *testing.T) {
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(204) })
	h := AllowHosts([]string{"例え。テスト。", "pay.example\u3002", "ops.example\uff0e:443", "api.example\uff61"}, ok)
	for host, want := range map[string]int{
		"xn--r8jz45g.xn--zckzah": 204, "xn--r8jz45g.xn--zckzah.:3001": 204,
		"pay.example": 204, "PAY.EXAMPLE.": 204, "ops.example:80": 204, "api.example": 204,
		"xn--r8jz45g.xn--zckzah..": 421, "evil.example": 421,
	} {
		r := httptest.NewRequest("GET", "/", nil)
		r.Host = host
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		assert.Equal(t, want, rec.Code, host)
	}
	for _, entry := range []string{"例え。テスト。", "pay.example\u3002", "ops.example\uff0e:443", "api.example\uff61"} {
		assert.NoError(t, CheckHost(entry), entry)
	}
}

func TestIsLoopback(t *testing.T) {
	assert.True(t, IsLoopback("127.0.0.1:3001"))
	assert.True(t, IsLoopback("[::1]:3001"))
	assert.True(t, IsLoopback("localhost:3001"))
	assert.True(t, IsLoopback("LocalHost:3001"), "a host name in any case")
	assert.False(t, IsLoopback(":3001"))
	assert.False(t, IsLoopback("0.0.0.0:3001"))
	assert.False(t, IsLoopback("10.0.0.1:3001"))
	assert.False(t, IsLoopback("nonsense"))
}

func TestJSONErrors(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /payment", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(201) })
	mux.HandleFunc("GET /dir/", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(200) })
	h := JSONErrors(mux)
	do := func(method, path string) *httptest.ResponseRecorder {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(method, path, nil))
		return rec
	}
	assert.Equal(t, 201, do("POST", "/payment").Code)

	rec := do("GET", "/nope")
	assert.Equal(t, 404, rec.Code)
	assert.Equal(t, "application/json", rec.Header().Get("Content-Type"))
	var body ErrorBody
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &body))
	assert.Equal(t, "not_found", body.Error.Code)

	rec = do("DELETE", "/payment")
	assert.Equal(t, 405, rec.Code)
	assert.Equal(t, "application/json", rec.Header().Get("Content-Type"))
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &body))
	assert.Equal(t, "method_not_allowed", body.Error.Code)
	assert.Contains(t, rec.Header().Get("Allow"), "POST")

	rec = do("GET", "/dir")
	assert.Equal(t, http.StatusTemporaryRedirect, rec.Code, "redirects pass through")
	assert.Equal(t, "/dir/", rec.Header().Get("Location"))
}

// FuzzDecode: any input decodes or fails with a 400 *Error; never a panic
// or another kind of error.
func FuzzDecode(f *testing.F) {
	for _, s := range []string{`{"amount":1}`, `{"amount":1,"Amount":2}`, `{"metadata":{"a":"b"}}`, `[`, `{"items":[{"country":1}]}`, `nul`, `{"location":null}`,
		`{"customer_id":"\ud83d\ude00","any":{"x":"\ud800"}}`, "{\"tags\":[\"\xff\"]}", `{"a" : "\\u"}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var r request
		err := Decode(b, &r)
		if err == nil {
			return
		}
		var e *Error
		if !errors.As(err, &e) || e.Status != http.StatusBadRequest {
			t.Fatalf("Decode(%q) = %v, want a 400 *Error", b, err)
		}
	})
}

// A fixed-size array holds no more elements than its length: encoding/json
// drops those beyond it without a word, and the client's value would be
// taken cut short.
func TestDecodeArrayLongerThanItsType(t *testing.T) {
	var v struct {
		Pair [2]int `json:"pair"`
	}
	err := Decode([]byte(`{"pair":[1,2,3]}`), &v)
	var e *Error
	require.True(t, errors.As(err, &e), "got %v", err)
	assert.Equal(t, http.StatusBadRequest, e.Status)
	assert.Equal(t, "pair[2]", e.Field)
	assert.Equal(t, "pair holds at most 2 elements", e.Message)
	require.NoError(t, Decode([]byte(`{"pair":[1,2]}`), &v))
	assert.Equal(t, [2]int{1, 2}, v.Pair)
	require.NoError(t, Decode([]byte(`{"pair":[3]}`), &v), "fewer is fine, as for encoding/json")
	assert.Equal(t, [2]int{3, 0}, v.Pair)
}

// A field tagged ",string" takes its value inside a JSON string, as
// encoding/json reads it; a bare value or a quoted one of the wrong form
// is an error naming the field.
func TestDecodeQuotedField(t *testing.T) {
	type quoted struct {
		N int64    `json:"n,string"`
		F *float64 `json:"f,string,omitempty"`
		B bool     `json:"b,string"`
		S string   `json:"s,string"`
	}
	var v quoted
	require.NoError(t, Decode([]byte(`{"n":"-5","f":"2.5e1","b":"true","s":"\"x\""}`), &v))
	assert.Equal(t, int64(-5), v.N)
	assert.Equal(t, 25.0, *v.F)
	assert.True(t, v.B)
	assert.Equal(t, "x", v.S)
	require.NoError(t, Decode([]byte(`{"n":null,"f":"null","b":null,"s":"null"}`), new(quoted)), "null, bare or quoted")
	for body, field := range map[string]string{
		`{"n":"x"}`:     "n",
		`{"n":5}`:       "n",
		`{"n":"1.5"}`:   "n",
		`{"n":" 5"}`:    "n",
		`{"n":"+5"}`:    "n",
		`{"n":"1e99"}`:  "n",
		`{"n":{}}`:      "n",
		`{"f":"1e400"}`: "f",
		`{"b":"1"}`:     "b",
		`{"s":"x"}`:     "s",
		`{"s":"\"x"}`:   "s",
	} {
		err := Decode([]byte(body), new(quoted))
		var e *Error
		require.True(t, errors.As(err, &e), "%s: got %v", body, err)
		assert.Equal(t, http.StatusBadRequest, e.Status, body)
		assert.Equal(t, field, e.Field, body)
		assert.Error(t, json.Unmarshal([]byte(body), new(quoted)), "encoding/json refuses %s too", body)
	}
}

// A []byte field is a base64 string in JSON, as encoding/json writes and
// reads it; one that is not base64 is refused naming the field.
func TestDecodeBytesFromBase64(t *testing.T) {
	var r struct {
		Data []byte            `json:"data"`
		Sums map[string][]byte `json:"sums"`
	}
	require.NoError(t, Decode([]byte(`{"data":"aGVsbG8=","sums":{"a":"AAE="}}`), &r))
	assert.Equal(t, []byte("hello"), r.Data)
	assert.Equal(t, map[string][]byte{"a": {0, 1}}, r.Sums)

	r.Data = nil
	require.NoError(t, Decode([]byte(`{"data":[104,105]}`), &r), "an array of bytes is taken too")
	assert.Equal(t, []byte("hi"), r.Data)

	err := Decode([]byte(`{"sums":{"a":"not base64!"}}`), &r)
	var e *Error
	require.ErrorAs(t, err, &e)
	assert.Equal(t, "sums.a", e.Field)
	assert.Contains(t, e.Message, "base64")
}

// A map with integer keys reads each key as a number: one that is no
// integer of the key's type is refused naming it, and two spellings of one
// number ("1", "+1", "01") are one key given twice, which encoding/json
// would let the last win.
func TestDecodeIntegerMapKeys(t *testing.T) {
	var r struct {
		Slots map[int8]string `json:"slots"`
	}
	require.NoError(t, Decode([]byte(`{"slots":{"1":"a","-2":"b"}}`), &r))
	assert.Equal(t, map[int8]string{1: "a", -2: "b"}, r.Slots)

	for body, field := range map[string]string{
		`{"slots":{"1":"a","+1":"b"}}`: "slots.+1",
		`{"slots":{"1":"a","01":"b"}}`: "slots.01",
		`{"slots":{"x":"a"}}`:          "slots.x",
		`{"slots":{"128":"a"}}`:        "slots.128",
	} {
		err := Decode([]byte(body), &r)
		var e *Error
		require.ErrorAs(t, err, &e, body)
		assert.Equal(t, field, e.Field, body)
		assert.Contains(t, e.Message, field, body)
	}
}

// CheckHost takes what AllowHosts matches a Host header against, and
// refuses what no Host header can be.
func TestCheckHost(t *testing.T) {
	for _, good := range []string{"*", "pay.example", "pay.example:443", "PAY.example.", "[::1]", "[::1]:3001", "::1",
		"0:0:0:0:0:0:0:2", "10.0.0.5", "10.0.0.5:3001", "Bücher.example", "пример.рф:443", "host_1", "localhost:"} {
		assert.NoError(t, CheckHost(good), good)
	}
	for _, bad := range []string{"https://pay.example", "pay.example/", "*.example.com", "$(POD_IP)", "pay.example:https",
		"user@pay.example", "[pay.example]", "[::1", "", ".", "pay example", "**"} {
		assert.ErrorContains(t, CheckHost(bad), "is not a host name or IP address", bad)
	}
}

// Promoted fields are those encoding/json fills: of two fields of one
// name, the one less deeply embedded, or the tagged one of two at one
// depth; two alike at one depth hide each other. A type embedding itself
// through a pointer is read as encoding/json reads it.
type (
	deepX        struct{ X int }
	embedsDeepX  struct{ deepX }
	shallowX     struct{ X string }
	promotesBoth struct {
		embedsDeepX
		shallowX
	}
	sameDepthA struct{ Y int }
	sameDepthB struct{ Y string }
	hidesY     struct {
		sameDepthA
		sameDepthB
	}
	taggedY struct {
		Y string `json:"Y"`
	}
	prefersTagged struct {
		sameDepthA
		taggedY
	}
	selfEmbedding struct {
		*selfEmbedding
		V int
	}
	mutualA struct {
		*mutualB
		A int
	}
	mutualB struct {
		*mutualA
		B int
	}
)

func TestDecodeEmbeddedFieldsAsEncodingJSON(t *testing.T) {
	var p promotesBoth
	require.NoError(t, Decode([]byte(`{"X":"s"}`), &p), "the shallower X is a string")
	assert.Equal(t, "s", p.shallowX.X)
	err := Decode([]byte(`{"X":1}`), &promotesBoth{})
	assert.EqualError(t, err, "X must be a string, not a JSON number")

	err = Decode([]byte(`{"Y":"s"}`), &hidesY{})
	assert.EqualError(t, err, `unknown field "Y"`, "two Y at one depth hide each other")

	var pt prefersTagged
	require.NoError(t, Decode([]byte(`{"Y":"s"}`), &pt), "the tagged Y is the one filled")
	assert.Equal(t, "s", pt.taggedY.Y)

	var s selfEmbedding
	require.NoError(t, Decode([]byte(`{"V":1}`), &s))
	assert.Equal(t, 1, s.V)
	assert.Nil(t, s.selfEmbedding)
	var m mutualA
	require.NoError(t, Decode([]byte(`{"A":1}`), &m))
	assert.Equal(t, 1, m.A)
	err = Decode([]byte(`{"B":1}`), &mutualA{})
	assert.Error(t, err, "encoding/json cannot set a field through a nil pointer to an unexported type")
}

// An Error made without a status, or with one that is no error's, is
// written as a 500, and a nil *Error as an internal error: net/http
// panicked on a status it cannot send (0), and the nil pointer was read,
// so the client got no answer; a 1xx or 2xx told it the request had
// succeeded.
func TestWriteErrorWithoutAStatus(t *testing.T) {
	for _, status := range []int{0, -1, 99, 100, 200, 304, 600, 1000} {
		rec := httptest.NewRecorder()
		require.NotPanics(t, func() { WriteError(rec, &Error{Status: status, Code: "teapot", Message: "no status"}) })
		assert.Equal(t, http.StatusInternalServerError, rec.Code, status)
		assert.JSONEq(t, `{"error":{"code":"teapot","message":"no status"}}`, rec.Body.String(), status)
	}
	rec := httptest.NewRecorder()
	require.NotPanics(t, func() { WriteError(rec, (*Error)(nil)) })
	assert.Equal(t, http.StatusInternalServerError, rec.Code)
	assert.JSONEq(t, `{"error":{"code":"internal","message":"internal error"}}`, rec.Body.String())
}

// A json.Number field given a string that is not a number is a 400 that
// names the field: it was encoding/json's own message, naming none.
func TestDecodeNumberFieldFromAString(t *testing.T) {
	for _, in := range []string{`{"raw":"abc"}`, `{"raw":""}`, `{"raw":" 1"}`, `{"raw":"01"}`, `{"raw":"1e"}`} {
		var r request
		err := Decode([]byte(in), &r)
		var e *Error
		require.ErrorAs(t, err, &e, in)
		assert.Equal(t, "raw", e.Field, in)
		assert.Equal(t, http.StatusBadRequest, e.Status, in)
		assert.Contains(t, e.Message, "raw must be a number", in)
	}
	var r request
	require.NoError(t, Decode([]byte(`{"raw":"-1.5e3"}`), &r))
	assert.Equal(t, json.Number("-1.5e3"), r.Raw)
}

// A name with an empty label (two dots in a row, a dot first, a dot left
// after the root's) or a label longer than DNS holds (63 bytes) is no
// name a browser resolves, and so no Host header it sends: an entry
// "pay..example" is a typo that would allow nothing.
func TestCheckHostRefusesANameDNSCannotHold(t *testing.T) {
	long := strings.Repeat("a", 64)
	for _, bad := range []string{"pay..example", "..", "...", ".pay.example", "pay.example..", "pay..example:443",
		long + ".example", "bücher..example"} {
		assert.ErrorContains(t, CheckHost(bad), "is not a host name or IP address", bad)
	}
	for _, good := range []string{"pay.example.", "pay.example.:443", strings.Repeat("a", 63) + ".example", "localhost."} {
		assert.NoError(t, CheckHost(good), good)
	}
}

// A body declared larger than the limit is refused before it is read:
// with Expect: 100-continue the client is told 413 at once, not invited
// (100 Continue) to send megabytes that would be refused.
func TestReadBodyRefusesADeclaredLengthOverTheLimit(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, err := ReadBody(w, r, 1<<10); err != nil {
			WriteError(w, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	require.NoError(t, err)
	defer conn.Close()
	_, err = io.WriteString(conn, "POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"+
		"Content-Length: 2000000\r\nExpect: 100-continue\r\n\r\n")
	require.NoError(t, err)
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	require.NoError(t, err)
	defer resp.Body.Close()
	assert.Equal(t, http.StatusRequestEntityTooLarge, resp.StatusCode, "the first answer")
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	assert.Contains(t, string(body), `"body_too_large"`)
}

// A body of null is no object: encoding/json leaves the value as it was,
// which would read as a request without its fields. A null inside the
// object leaves its field as it is, as encoding/json does.
func TestDecodeRefusesABodyOfNull(t *testing.T) {
	for _, body := range []string{`null`, " null\n"} {
		var v request
		err := Decode([]byte(body), &v)
		var e *Error
		require.ErrorAs(t, err, &e, "%q", body)
		assert.Equal(t, 400, e.Status)
		assert.Equal(t, "the request body must be an object, not null", e.Message, "%q", body)
		var m map[string]string
		assert.ErrorContains(t, Decode([]byte(body), &m), "must be an object, not null", "%q", body)
	}
	var v request
	require.NoError(t, Decode([]byte(`{"location":null,"amount":1}`), &v))
	assert.Nil(t, v.Location)
}
