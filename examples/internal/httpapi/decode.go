package httpapi

import (
	"bytes"
	"encoding"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"unicode"
	"unicode/utf8"
)

// ReadBody checks that r has one Content-Type (400 otherwise), that it is
// application/json and its body is not compressed (415 otherwise), and
// reads the body, at most limit bytes (413 beyond, and before reading a
// byte of a body whose Content-Length says it is).
func ReadBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, error) {
	if cts := r.Header.Values("Content-Type"); len(cts) > 1 {
		// A field of one value given twice: what the first says is not
		// what a proxy that reads the last would have checked.
		return nil, Invalid("Content-Type", "Content-Type is given %d times; a request has one", len(cts))
	}
	if err := CheckContentType(r.Header.Get("Content-Type")); err != nil {
		return nil, err
	}
	for _, ce := range r.Header.Values("Content-Encoding") {
		if ce != "" && !strings.EqualFold(ce, "identity") {
			return nil, Errorf(http.StatusUnsupportedMediaType, "unsupported_media_type",
				"Content-Encoding %q is not accepted; send the body uncompressed", Clip(ce, 32))
		}
	}
	tooLarge := func() error {
		return Errorf(http.StatusRequestEntityTooLarge, "body_too_large", "request body is larger than %d bytes", limit)
	}
	if r.ContentLength > limit {
		// Refused before a byte is read: a client that sent Expect:
		// 100-continue hears 413 instead of an invitation to send it all.
		return nil, tooLarge()
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return nil, tooLarge()
		}
		return nil, Errorf(http.StatusBadRequest, "invalid_request", "could not read the request body")
	}
	return body, nil
}

// CheckContentType accepts application/json, with a charset only of
// UTF-8: JSON exchanged between systems is UTF-8 (RFC 8259).
func CheckContentType(ct string) error {
	if ct == "" {
		return Errorf(http.StatusUnsupportedMediaType, "unsupported_media_type", "Content-Type must be application/json")
	}
	mt, params, err := mime.ParseMediaType(ct)
	if err != nil || mt != "application/json" {
		return Errorf(http.StatusUnsupportedMediaType, "unsupported_media_type", "Content-Type %q is not application/json", Clip(ct, 64))
	}
	if cs, ok := params["charset"]; ok && !strings.EqualFold(cs, "utf-8") && !strings.EqualFold(cs, "utf8") {
		return Errorf(http.StatusUnsupportedMediaType, "unsupported_media_type", "charset %q is not accepted: JSON is UTF-8", Clip(cs, 32))
	}
	return nil
}

// Decode decodes one JSON value from data into v, strictly: an object key
// that appears twice (in a map with integer keys, a number spelled twice:
// "1" and "01"), a key whose spelling differs from the field's only in
// case (encoding/json would accept {"Amount": 7} for "amount"), a key no
// field has, a value of the wrong type, more elements than a fixed-size
// array holds (encoding/json drops them), a string that is not UTF-8 or
// holds half of a UTF-16 surrogate pair (\ud800), and anything after the
// value are errors, each a 400 *Error naming the key — a map's key and an
// array's index too (metadata.a, items[1]), and a body of null for a
// struct or a map (encoding/json leaves it as it was). Numbers are decoded as encoding/json
// does (1000e-4 is 0.1 for a float64); one its field cannot hold (1e400,
// 2.5 for an integer) is an error naming the field. A field tagged
// ",string" takes its value inside a JSON string ("5"), as encoding/json
// reads it, and a []byte field a base64 string.
func Decode(data []byte, v any) error {
	return decode(data, v, true)
}

// decode is Decode; plain says whether its first pass tries plainTokens
// before a json.Decoder.
func decode(data []byte, v any, plain bool) error {
	err := errNotPlain
	if plain {
		err = check(&plainTokens{data: data, stack: make([]byte, 0, 8)}, data, v)
	}
	if err == errNotPlain {
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.UseNumber() // the first pass judges numbers against their fields
		err = check(dec, data, v)
	}
	if err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return decodeError(err)
	}
	return nil
}

// check is Decode's first pass over data, read by toks, for a value of
// v's type. It returns errNotPlain, and nothing else, when toks does.
func check(toks jsonTokens, data []byte, v any) error {
	c := &checker{dec: toks, data: data}
	if err := c.value(reflect.TypeOf(v), ""); err != nil {
		return err
	}
	end := toks.InputOffset()
	switch _, err := toks.Token(); {
	case err == nil:
		return Invalid("", "request body holds more than one JSON value")
	case err == errNotPlain:
		return err
	case err != io.EOF:
		return trailing(data, end)
	}
	return nil
}

// trailing describes what follows the value that ends at data[end], which
// is neither white space nor another value.
func trailing(data []byte, end int64) error {
	at := int(end) + len(data[end:]) - len(bytes.TrimLeft(data[end:], " \t\r\n"))
	return Invalid("", "malformed JSON at byte %d: invalid %s after the request body's value", at, charAt(data, at))
}

// charAt names the character that starts at data[at], or the byte there
// when it starts none.
func charAt(data []byte, at int) string {
	r, size := utf8.DecodeRune(data[at:])
	switch {
	case r == utf8.RuneError && size <= 1:
		return fmt.Sprintf("byte 0x%02x", data[at])
	case r < utf8.RuneSelf && unicode.IsPrint(r):
		return fmt.Sprintf("character '%c'", r)
	}
	return fmt.Sprintf("character %U", r)
}

var bom = []byte("\ufeff")

// syntaxError describes err, a syntax error of the decoder in data, at
// the byte where it is and naming the character there: the decoder's
// offset is not always that byte's (a value's error is counted from
// where the value began to be buffered), and it names a byte alone as if
// it were a character of Latin-1 ('Ã' for the first byte of é).
// Unmarshal's scan of the whole of data meets the same error first, at
// its exact offset.
func syntaxError(data []byte, err error) error {
	var se *json.SyntaxError
	if !errors.As(err, &se) {
		return decodeError(err)
	}
	if bytes.HasPrefix(data, bom) {
		return Invalid("", "malformed JSON at byte 0: the request body starts with a byte order mark (U+FEFF): JSON between systems is sent without one (RFC 8259)")
	}
	var raw json.RawMessage
	if errors.As(json.Unmarshal(data, &raw), &se) && se.Offset > 0 && se.Offset <= int64(len(data)) {
		at := int(se.Offset) - 1
		if context, ok := strings.CutPrefix(se.Error(), "invalid character "+quoteChar(data[at])+" "); ok {
			return Invalid("", "malformed JSON at byte %d: invalid %s %s", at, charAt(data, at), context)
		}
	}
	return decodeError(err)
}

// quoteChar is how encoding/json quotes the byte c in a syntax error.
func quoteChar(c byte) string {
	switch c {
	case '\'':
		return `'\''`
	case '"':
		return `'"'`
	}
	s := strconv.Quote(string(rune(c)))
	return "'" + s[1:len(s)-1] + "'"
}

// checker is the first pass of Decode over data, read by dec.
type checker struct {
	dec  jsonTokens
	data []byte
}

// value reads one value, checking the keys of every object in it against
// t (nil: any value). It reports syntax errors too.
func (c *checker) value(t reflect.Type, path string) error {
	tok, err := c.token(path, false)
	if err == io.EOF {
		return decodeError(err)
	}
	if err != nil {
		return err
	}
	return c.check(tok, t, path, 0)
}

// MaxDepth is how deeply objects and arrays may nest in a request body.
// Deeper is a 400: no request of these APIs nests more than a few levels,
// and a body of a million brackets would otherwise cost memory and time
// in proportion to the square of its depth.
const MaxDepth = 32

// token reads the next token. A string, a key of the object at path when
// key is set, must be Unicode as written: encoding/json would turn bytes
// that are not UTF-8, and a \u escape of half a surrogate pair, into
// U+FFFD, so that two different strings would read alike. io.EOF is
// returned as it is.
func (c *checker) token(path string, key bool) (json.Token, error) {
	start := c.dec.InputOffset()
	tok, err := c.dec.Token()
	if err != nil {
		if err == io.EOF || err == errNotPlain {
			return nil, err
		}
		return nil, syntaxError(c.data, err)
	}
	s, ok := tok.(string)
	if !ok {
		return tok, nil
	}
	// The string as written: after any ':' or ',' and white space, up to
	// where the decoder stopped, its closing quote.
	raw := c.data[start:c.dec.InputOffset()]
	raw = raw[bytes.IndexByte(raw, '"')+1 : len(raw)-1]
	what := orBody(path)
	if key {
		path = join(path, s)
		what = "key " + path
	}
	if !utf8.Valid(raw) {
		return nil, Invalid(path, "%s is not valid UTF-8: JSON is UTF-8 (RFC 8259)", what)
	}
	if esc := loneSurrogate(raw); esc != "" {
		return nil, Invalid(path, "%s holds %s, half of a UTF-16 surrogate pair, which encodes no character", what, esc)
	}
	return tok, nil
}

// loneSurrogate returns the first \u escape in raw, a JSON string's
// content, of a surrogate that is not part of a pair (high, then low), or "".
func loneSurrogate(raw []byte) string {
	for i := 0; i < len(raw); i++ {
		if raw[i] != '\\' {
			continue
		}
		if raw[i+1] != 'u' {
			i++ // the escaped character
			continue
		}
		r, _ := strconv.ParseUint(string(raw[i+2:i+6]), 16, 16)
		switch {
		case r >= 0xDC00 && r <= 0xDFFF:
			return string(raw[i : i+6])
		case r >= 0xD800 && r <= 0xDBFF:
			if len(raw) < i+12 || raw[i+6] != '\\' || raw[i+7] != 'u' {
				return string(raw[i : i+6])
			}
			if lo, _ := strconv.ParseUint(string(raw[i+8:i+12]), 16, 16); lo < 0xDC00 || lo > 0xDFFF {
				return string(raw[i : i+6])
			}
			i += 6
		}
		i += 5
	}
	return ""
}

// next reads the next token inside a value: the input may not end there.
func (c *checker) next(path string, key bool) (json.Token, error) {
	tok, err := c.token(path, key)
	if err == io.EOF {
		err = decodeError(io.ErrUnexpectedEOF)
	}
	return tok, err
}

func (c *checker) check(tok json.Token, t reflect.Type, path string, depth int) error {
	if (tok == json.Delim('{') || tok == json.Delim('[')) && depth == MaxDepth {
		return Invalid(path, "%s nests objects and arrays deeper than %d levels", orBody(path), MaxDepth)
	}
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t != nil && (t.Implements(unmarshalerType) || reflect.PointerTo(t).Implements(unmarshalerType)) {
		t = nil // decodes itself: check only for duplicate keys
	}
	if err := checkContainer(tok, t, path); err != nil {
		return err
	}
	switch tok {
	case json.Delim('{'):
		var fields map[string]field
		var elem, numKey reflect.Type
		if t != nil {
			switch t.Kind() {
			case reflect.Struct:
				fields = fieldsOf(t)
			case reflect.Map:
				elem = t.Elem()
				if k := t.Key(); isInteger(k) && !reflect.PointerTo(k).Implements(textUnmarshalerType) {
					numKey = k // encoding/json reads the keys as integers
				}
			case reflect.Interface:
				elem = untyped(t)
			}
		}
		seen := map[string]bool{}
		for c.dec.More() {
			tok, err := c.next(path, true)
			if err != nil {
				return err
			}
			key := tok.(string)
			at := join(path, key)
			same := key // the key as the map holds it
			if numKey != nil {
				if same, err = integerKey(key, numKey, at); err != nil {
					return err
				}
			}
			if seen[same] {
				return Invalid(at, "key %q appears twice", at)
			}
			seen[same] = true
			typ := elem
			if fields != nil {
				f, ok := fields[key]
				if !ok {
					for name := range fields {
						if strings.EqualFold(name, key) {
							return Invalid(at, "key %q must be spelled %q", at, join(path, name))
						}
					}
					return Invalid(at, "unknown field %q", at)
				}
				typ = f.typ
			}
			tok, err = c.next(at, false)
			if err != nil {
				return err
			}
			if fields != nil && fields[key].quoted {
				if err := checkQuoted(tok, typ, at); err != nil {
					return err
				}
				continue
			}
			if err := c.check(tok, typ, at, depth+1); err != nil {
				return err
			}
		}
		_, err := c.next(path, false) // '}'
		return err
	case json.Delim('['):
		var elem reflect.Type
		if t != nil && (t.Kind() == reflect.Slice || t.Kind() == reflect.Array) {
			elem = t.Elem()
		}
		if t != nil && t.Kind() == reflect.Interface {
			elem = untyped(t)
		}
		for i := 0; c.dec.More(); i++ {
			at := fmt.Sprintf("%s[%d]", path, i)
			if t != nil && t.Kind() == reflect.Array && i == t.Len() {
				noun := "elements"
				if t.Len() == 1 {
					noun = "element"
				}
				return Invalid(at, "%s holds at most %d %s", orBody(path), t.Len(), noun)
			}
			tok, err := c.next(at, false)
			if err != nil {
				return err
			}
			if err := c.check(tok, elem, at, depth+1); err != nil {
				return err
			}
		}
		_, err := c.next(path, false) // ']'
		return err
	}
	return checkScalar(tok, t, path)
}

// checkContainer reports an object or array where a value of type t
// cannot be one, naming path: encoding/json would refuse it naming the
// struct field that holds it, not a map's key nor an array's index
// ("metadata must be a string" for {"metadata":{"a":{}}}).
func checkContainer(tok json.Token, t reflect.Type, path string) error {
	if t == nil || t.Kind() == reflect.Interface {
		return nil
	}
	switch tok {
	case json.Delim('{'):
		if k := t.Kind(); k == reflect.Struct || k == reflect.Map {
			return nil
		}
		return Invalid(path, "%s must be %s, not a JSON object", orBody(path), kindName(t))
	case json.Delim('['):
		if k := t.Kind(); k == reflect.Slice || k == reflect.Array {
			return nil
		}
		return Invalid(path, "%s must be %s, not a JSON array", orBody(path), kindName(t))
	}
	return nil
}

// isInteger reports whether t is of an integer kind.
func isInteger(t reflect.Type) bool {
	switch t.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return true
	}
	return false
}

// integerKey reads key, at path, as encoding/json reads the key of a map
// whose keys are integers of type t, and returns the number in its
// shortest spelling: "1", "+1" and "01" are one key.
func integerKey(key string, t reflect.Type, path string) (string, error) {
	var err error
	switch t.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		var n int64
		if n, err = strconv.ParseInt(key, 10, t.Bits()); err == nil {
			return strconv.FormatInt(n, 10), nil
		}
	default:
		var n uint64
		if n, err = strconv.ParseUint(key, 10, t.Bits()); err == nil {
			return strconv.FormatUint(n, 10), nil
		}
	}
	if errors.Is(err, strconv.ErrRange) {
		return "", Invalid(path, "key %q is out of range for %s", path, kindName(t))
	}
	return "", Invalid(path, "key %q must be %s", path, kindName(t))
}

var textUnmarshalerType = reflect.TypeFor[encoding.TextUnmarshaler]()

// checkScalar reports a string, number or boolean that a value of type t
// cannot hold, naming path: encoding/json names the struct field, but
// neither a map's key nor an array's index, nor the field of a number out
// of range, and an interface's number out of a float64's range is "a
// number" to it. A type that decodes text itself, an interface and an
// unknown type (nil) take anything else here; null leaves any value as it
// is, but for the body, which must be the object or map it is decoded
// into.
func checkScalar(tok json.Token, t reflect.Type, path string) error {
	if tok == nil && path == "" && t != nil && (t.Kind() == reflect.Struct || t.Kind() == reflect.Map) {
		// A body of null: encoding/json leaves the value as it was, which
		// would read as an object without its fields.
		return Invalid(path, "%s must be %s, not null", orBody(path), kindName(t))
	}
	if n, ok := tok.(json.Number); ok && untyped(t) != nil {
		return checkNumber(string(n), float64Type, path) // what encoding/json makes of it
	}
	if tok == nil || t == nil || t.Kind() == reflect.Interface ||
		t.Implements(textUnmarshalerType) || reflect.PointerTo(t).Implements(textUnmarshalerType) {
		return nil
	}
	var got string
	switch v := tok.(type) {
	case string:
		if t == numberType && !isNumber(v) {
			// encoding/json takes a number in a string, and refuses
			// anything else without naming the field.
			return Invalid(path, "%s must be a number, not %q", orBody(path), Clip(v, 64))
		}
		if t.Kind() == reflect.String {
			return nil
		}
		if t.Kind() == reflect.Slice && t.Elem().Kind() == reflect.Uint8 {
			// encoding/json reads a []byte from a base64 string.
			if _, err := base64.StdEncoding.DecodeString(v); err != nil {
				return Invalid(path, "%s must be base64 (RFC 4648, with padding): %v", orBody(path), err)
			}
			return nil
		}
		got = "string"
	case bool:
		if t.Kind() == reflect.Bool {
			return nil
		}
		got = "bool"
	case json.Number:
		if err := checkNumber(string(v), t, path); err != errNotANumber {
			return err
		}
		got = "number"
	default:
		return nil
	}
	return Invalid(path, "%s must be %s, not a JSON %s", orBody(path), kindName(t), got)
}

// untyped returns t if it is an interface without methods, which
// encoding/json fills with a float64, string, bool, map[string]any or
// []any, else nil.
func untyped(t reflect.Type) reflect.Type {
	if t != nil && t.Kind() == reflect.Interface && t.NumMethod() == 0 {
		return t
	}
	return nil
}

var (
	float64Type   = reflect.TypeFor[float64]()
	numberType    = reflect.TypeFor[json.Number]()
	errNotANumber = errors.New("not a number's type")
)

// checkNumber reports a number that t cannot hold: too large for a float,
// not an integer, or out of range for an integer type. It returns
// errNotANumber when t holds no number at all.
func checkNumber(s string, t reflect.Type, path string) error {
	var err error
	switch t.Kind() {
	case reflect.Float32, reflect.Float64:
		_, err = strconv.ParseFloat(s, t.Bits())
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		_, err = strconv.ParseInt(s, 10, t.Bits())
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		_, err = strconv.ParseUint(s, 10, t.Bits())
	case reflect.String:
		if t == numberType {
			return nil
		}
		return errNotANumber
	default:
		return errNotANumber
	}
	switch {
	case err == nil:
		return nil
	case errors.Is(err, strconv.ErrRange):
		return Invalid(path, "%s is out of range for %s: %s", orBody(path), kindName(t), s)
	}
	return Invalid(path, "%s must be %s, not %s", orBody(path), kindName(t), s)
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

var unmarshalerType = reflect.TypeFor[json.Unmarshaler]()

// field is a struct field as the first pass of Decode sees it: its type,
// and whether it is tagged ",string" where encoding/json heeds it (a
// boolean, number or string, or a pointer to one).
type field struct {
	typ    reflect.Type
	quoted bool
}

var fieldCache sync.Map // reflect.Type → map[string]field

// fieldsOf returns the JSON names of t's fields, as encoding/json names
// them (tags, embedded structs' promoted fields, "-" skipped), and picks
// among fields of one name as it does: the least deeply embedded, then
// the tagged one of those; two alike at one depth hide each other, and
// the name is then no field's. A struct embedded again below itself
// (through a pointer) is looked into once, at its shallowest.
func fieldsOf(t reflect.Type) map[string]field {
	if m, ok := fieldCache.Load(t); ok {
		return m.(map[string]field)
	}
	type found struct {
		field
		depth  int
		tagged bool
		hidden bool // another of its name, depth and taggedness
	}
	byName := map[string]*found{}
	visited := map[reflect.Type]bool{}
	// Each level's structs to look into, and how often each is embedded
	// at that level: one embedded twice promotes each field twice.
	level, count := []reflect.Type{t}, map[reflect.Type]int{t: 1}
	for depth := 0; len(level) > 0; depth++ {
		var next []reflect.Type
		nextCount := map[reflect.Type]int{}
		for _, st := range level {
			if visited[st] {
				continue
			}
			visited[st] = true
			for i := range st.NumField() {
				sf := st.Field(i)
				ft := sf.Type
				if ft.Name() == "" && ft.Kind() == reflect.Pointer {
					ft = ft.Elem()
				}
				if sf.Anonymous {
					if !sf.IsExported() && ft.Kind() != reflect.Struct {
						continue
					}
				} else if !sf.IsExported() {
					continue
				}
				tag := sf.Tag.Get("json")
				if tag == "-" {
					continue
				}
				name, opts, _ := strings.Cut(tag, ",")
				if !validTagName(name) {
					name = ""
				}
				if name == "" && sf.Anonymous && ft.Kind() == reflect.Struct {
					nextCount[ft]++
					if nextCount[ft] == 1 {
						next = append(next, ft)
					}
					continue
				}
				f := &found{
					field:  field{typ: sf.Type, quoted: quotable(sf.Type) && hasOption(opts, "string")},
					depth:  depth,
					tagged: name != "",
					hidden: count[st] > 1,
				}
				if name == "" {
					name = sf.Name
				}
				switch prev := byName[name]; {
				case prev == nil || f.depth < prev.depth || f.depth == prev.depth && f.tagged && !prev.tagged:
					byName[name] = f
				case f.depth == prev.depth && f.tagged == prev.tagged:
					prev.hidden = true
				}
			}
		}
		level, count = next, nextCount
	}
	m := map[string]field{}
	for name, f := range byName {
		if !f.hidden {
			m[name] = f.field
		}
	}
	fieldCache.Store(t, m)
	return m
}

// validTagName reports whether encoding/json takes name, from a field's
// tag, as the field's name; it names the field by its Go name otherwise.
func validTagName(name string) bool {
	if name == "" {
		return false
	}
	for _, c := range name {
		if !strings.ContainsRune("!#$%&()*+-./:;<=>?@[]^_{|}~ ", c) && !unicode.IsLetter(c) && !unicode.IsDigit(c) {
			return false
		}
	}
	return true
}

// quotable reports whether encoding/json reads a field of type t tagged
// ",string" from inside a JSON string.
func quotable(t reflect.Type) bool {
	if t.Name() == "" && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.Bool, reflect.String, reflect.Float32, reflect.Float64,
		reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return true
	}
	return false
}

func hasOption(opts, want string) bool {
	for opts != "" {
		var o string
		o, opts, _ = strings.Cut(opts, ",")
		if o == want {
			return true
		}
	}
	return false
}

// checkQuoted reports a value of a field tagged ",string" (of type t) that
// encoding/json refuses: it must be null, or a string holding the field's
// value as JSON writes it (5 as "5", true as "true", "x" as "\"x\"").
func checkQuoted(tok json.Token, t reflect.Type, path string) error {
	s, isString := tok.(string)
	if tok == nil || isString && s == "null" {
		return nil
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if !isString {
		return Invalid(path, "%s must be %s inside a JSON string, as its field is tagged \",string\"", path, kindName(t))
	}
	if t.Implements(unmarshalerType) || reflect.PointerTo(t).Implements(unmarshalerType) ||
		t.Implements(textUnmarshalerType) || reflect.PointerTo(t).Implements(textUnmarshalerType) {
		return nil // decodes itself
	}
	switch t.Kind() {
	case reflect.String:
		var inner string
		if len(s) >= 2 && s[0] == '"' && s[len(s)-1] == '"' && json.Unmarshal([]byte(s), &inner) == nil {
			return nil
		}
	case reflect.Bool:
		if s == "true" || s == "false" {
			return nil
		}
	default:
		if isNumber(s) {
			return checkNumber(s, t, path)
		}
	}
	return Invalid(path, "%s must be %s inside a JSON string, as its field is tagged \",string\", not %q", path, kindName(t), Clip(s, 64))
}

// isNumber reports whether s is a JSON number, as it is written: no white
// space around it.
func isNumber(s string) bool {
	return s != "" && (s[0] == '-' || '0' <= s[0] && s[0] <= '9') && strings.TrimSpace(s) == s && json.Valid([]byte(s))
}

// decodeError turns an encoding/json error into a 400 naming the field.
func decodeError(err error) error {
	if err == nil {
		return nil
	}
	var typeErr *json.UnmarshalTypeError
	var syntaxErr *json.SyntaxError
	var apiErr *Error
	switch {
	case errors.As(err, &apiErr):
		return apiErr
	case errors.As(err, &typeErr):
		f := typeErr.Field
		return Invalid(f, "%s must be %s, not a JSON %s", orBody(f), kindName(typeErr.Type), typeErr.Value)
	case errors.As(err, &syntaxErr):
		return Invalid("", "malformed JSON at byte %d: %v", syntaxErr.Offset, syntaxErr)
	case errors.Is(err, io.EOF):
		return Invalid("", "request body is empty")
	case errors.Is(err, io.ErrUnexpectedEOF):
		return Invalid("", "malformed JSON: unexpected end of input")
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		f := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
		return Invalid(f, "unknown field %q", f)
	}
	return Invalid("", "malformed JSON: %v", err)
}

func orBody(field string) string {
	if field == "" {
		return "the request body"
	}
	return field
}

func kindName(t reflect.Type) string {
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Map, reflect.Struct, reflect.Pointer:
		return "an object"
	case reflect.Slice, reflect.Array:
		return "an array"
	case reflect.Bool:
		return "true or false"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return "an integer"
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return "a non-negative integer"
	}
	return "a " + t.Kind().String()
}
