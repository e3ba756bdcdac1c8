package taicel

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode/utf16"
	"unicode/utf8"
)

// jsonReader reads one JSON value, piece by piece, from data: what the
// codecs need to fill Go values without an intermediate tree.
type jsonReader struct {
	data    []byte
	pos     int
	depth   int
	scratch []byte // unescaped strings
}

// maxDepth bounds the nesting of arrays and objects, so that hostile input
// cannot exhaust the stack.
const maxDepth = 10000

func (r *jsonReader) errorf(format string, args ...any) error {
	return fmt.Errorf("offset %d: %s", r.pos, fmt.Sprintf(format, args...))
}

func (r *jsonReader) ws() {
	for r.pos < len(r.data) {
		switch r.data[r.pos] {
		case ' ', '\t', '\n', '\r':
			r.pos++
		default:
			return
		}
	}
}

// peek returns the next byte after white space, or 0 at the end.
func (r *jsonReader) peek() byte {
	r.ws()
	if r.pos < len(r.data) {
		return r.data[r.pos]
	}
	return 0
}

// end reports an error unless only white space is left. (peek's 0 is no
// proof of the end: a NUL byte reads as 0 too.)
func (r *jsonReader) end() error {
	r.ws()
	if r.pos < len(r.data) {
		return r.errorf("unexpected %q after the value", r.data[r.pos])
	}
	return nil
}

func (r *jsonReader) literal(lit string) error {
	if len(r.data)-r.pos < len(lit) || string(r.data[r.pos:r.pos+len(lit)]) != lit {
		return r.errorf("invalid value")
	}
	r.pos += len(lit)
	return nil
}

// null consumes a null if one is next.
func (r *jsonReader) null() bool {
	if r.peek() == 'n' && r.literal("null") == nil {
		return true
	}
	return false
}

func (r *jsonReader) bool() (bool, error) {
	switch r.peek() {
	case 't':
		return true, r.literal("true")
	case 'f':
		return false, r.literal("false")
	}
	return false, r.errorf("want a bool")
}

// number returns the text of the number that is next, and whether it is
// written as a float (with a fraction or an exponent).
func (r *jsonReader) number() (text []byte, float bool, err error) {
	r.ws()
	start := r.pos
	if r.pos < len(r.data) && r.data[r.pos] == '-' {
		r.pos++
	}
	digits := func() int {
		n := 0
		for r.pos < len(r.data) && r.data[r.pos] >= '0' && r.data[r.pos] <= '9' {
			r.pos++
			n++
		}
		return n
	}
	intStart := r.pos
	if n := digits(); n == 0 || n > 1 && r.data[intStart] == '0' {
		r.pos = start
		return nil, false, r.errorf("want a number")
	}
	if r.pos < len(r.data) && r.data[r.pos] == '.' {
		r.pos++
		float = true
		if digits() == 0 {
			return nil, false, r.errorf("invalid number")
		}
	}
	if r.pos < len(r.data) && (r.data[r.pos] == 'e' || r.data[r.pos] == 'E') {
		r.pos++
		float = true
		if r.pos < len(r.data) && (r.data[r.pos] == '+' || r.data[r.pos] == '-') {
			r.pos++
		}
		if digits() == 0 {
			return nil, false, r.errorf("invalid number")
		}
	}
	return r.data[start:r.pos], float, nil
}

// int reads an integer of bits bits; a float written without a fraction
// (3.0, 1e3) is accepted too.
func (r *jsonReader) int(bits int) (int64, error) {
	text, float, err := r.number()
	if err != nil {
		return 0, err
	}
	if !float {
		n, err := strconv.ParseInt(string(text), 10, bits)
		if err != nil {
			return 0, fmt.Errorf("a number that does not fit an int%d", bits)
		}
		return n, nil
	}
	f, err := strconv.ParseFloat(string(text), 64)
	limit := math.Exp2(float64(bits - 1))
	switch {
	case err == nil && f != math.Trunc(f):
		return 0, fmt.Errorf("a number with a fraction is not an int%d", bits)
	case err != nil || f < -limit || f >= limit:
		return 0, fmt.Errorf("a number that does not fit an int%d", bits)
	}
	return int64(f), nil
}

func (r *jsonReader) uint(bits int) (uint64, error) {
	text, float, err := r.number()
	if err != nil {
		return 0, err
	}
	if !float {
		n, err := strconv.ParseUint(string(text), 10, bits)
		switch {
		case err != nil && text[0] == '-':
			return 0, fmt.Errorf("a negative number is not a uint%d", bits)
		case err != nil:
			return 0, fmt.Errorf("a number that does not fit a uint%d", bits)
		}
		return n, nil
	}
	f, err := strconv.ParseFloat(string(text), 64)
	switch {
	case err == nil && f != math.Trunc(f):
		return 0, fmt.Errorf("a number with a fraction is not a uint%d", bits)
	case err == nil && f < 0:
		return 0, fmt.Errorf("a negative number is not a uint%d", bits)
	case err != nil || f >= math.Exp2(float64(bits)):
		return 0, fmt.Errorf("a number that does not fit a uint%d", bits)
	}
	return uint64(f), nil
}

// float reads a number, or one of the strings "NaN", "+Inf" and "-Inf".
func (r *jsonReader) float(bits int) (float64, error) {
	if r.peek() == '"' {
		s, err := r.string()
		if err != nil {
			return 0, err
		}
		switch s {
		case "NaN":
			return math.NaN(), nil
		case "+Inf":
			return math.Inf(1), nil
		case "-Inf":
			return math.Inf(-1), nil
		}
		return 0, errors.New(`a string other than "NaN", "+Inf" and "-Inf" is not a number`)
	}
	text, _, err := r.number()
	if err != nil {
		return 0, err
	}
	f, err := strconv.ParseFloat(string(text), bits)
	if err != nil {
		return 0, fmt.Errorf("a number that does not fit a float%d", bits)
	}
	return f, nil
}

func (r *jsonReader) time() (time.Time, error) {
	s, err := r.stringBytes()
	if err != nil {
		return time.Time{}, err
	}
	return parseTime(string(s))
}

// timeError is parseTime's error for err, time.Parse's, which quotes the
// string it could not read: it says what is wrong (a month out of range)
// without the string.
func timeError(err error) error {
	var pe *time.ParseError
	if errors.As(err, &pe) && strings.HasSuffix(pe.Message, " out of range") && !strings.ContainsAny(pe.Message, `"'`) {
		return errors.New("a string that is not a timestamp (an RFC 3339 string)" + pe.Message)
	}
	return errors.New("a string that is not a timestamp (an RFC 3339 string)")
}

// parseTime reads a time as appendTime writes it: RFC 3339 with
// nanoseconds. A year beyond 9999 or before 0, which a time.Time holds
// and RFC 3339 has no room for, is written with more digits or a minus
// sign ("10000-01-01T00:00:00Z", "-0001-12-31T00:00:00Z"), and read back
// as that year. Its error quotes no part of s.
func parseTime(s string) (time.Time, error) {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err == nil {
		return t, nil
	}
	err = timeError(err)
	digits, neg := strings.CutPrefix(s, "-")
	n := 0
	for n < len(digits) && digits[n] >= '0' && digits[n] <= '9' {
		n++
	}
	// Four digits and no sign is a year RFC 3339 reads, and its error
	// stands; more than 12 digits is beyond the years a time.Time holds.
	if n < 4 || n > 12 || n == 4 && !neg || n == len(digits) || digits[n] != '-' {
		return time.Time{}, err
	}
	year, perr := strconv.Atoi(digits[:n])
	if perr != nil {
		return time.Time{}, err
	}
	if neg {
		year = -year
	}
	// The date is read in a year of the same length, so that February 29
	// is read where there is one, and moved to its own year.
	sub := 2001
	if year%4 == 0 && (year%100 != 0 || year%400 == 0) {
		sub = 2000
	}
	t, perr = time.Parse(time.RFC3339Nano, strconv.Itoa(sub)+digits[n:])
	if perr != nil {
		return time.Time{}, err
	}
	if t = t.AddDate(year-sub, 0, 0); t.Year() != year {
		return time.Time{}, err // beyond what a time.Time holds
	}
	return t, nil
}

func (r *jsonReader) string() (string, error) {
	b, err := r.stringBytes()
	return string(b), err
}

// stringBytes reads a string. The bytes are the input's, or the reader's
// scratch buffer when the string has escapes: valid until the next read.
func (r *jsonReader) stringBytes() ([]byte, error) {
	if r.peek() != '"' {
		return nil, r.errorf("want a string")
	}
	r.pos++
	start := r.pos
	for r.pos < len(r.data) {
		c := r.data[r.pos]
		switch {
		case c == '"':
			r.pos++
			return r.data[start : r.pos-1], nil
		case c == '\\':
			return r.unescape(start)
		case c < 0x20:
			return nil, r.errorf("control character in a string")
		case c >= utf8.RuneSelf:
			rn, size := utf8.DecodeRune(r.data[r.pos:])
			if rn == utf8.RuneError && size == 1 {
				return r.unescape(start)
			}
			r.pos += size
		default:
			r.pos++
		}
	}
	return nil, r.errorf("string not terminated")
}

// unescape reads the rest of a string that has escapes or invalid UTF-8
// (which becomes U+FFFD) into the scratch buffer.
func (r *jsonReader) unescape(start int) ([]byte, error) {
	b := append(r.scratch[:0], r.data[start:r.pos]...)
	for r.pos < len(r.data) {
		c := r.data[r.pos]
		switch {
		case c == '"':
			r.pos++
			r.scratch = b
			return b, nil
		case c < 0x20:
			return nil, r.errorf("control character in a string")
		case c == '\\':
			if r.pos+1 >= len(r.data) {
				return nil, r.errorf("string not terminated")
			}
			e := r.data[r.pos+1]
			r.pos += 2
			switch e {
			case '"', '\\', '/':
				b = append(b, e)
			case 'b':
				b = append(b, '\b')
			case 'f':
				b = append(b, '\f')
			case 'n':
				b = append(b, '\n')
			case 'r':
				b = append(b, '\r')
			case 't':
				b = append(b, '\t')
			case 'u':
				rn, ok := r.hex4()
				if !ok {
					return nil, r.errorf("invalid \\u escape")
				}
				if utf16.IsSurrogate(rn) {
					rn2 := utf8.RuneError
					if r.pos+1 < len(r.data) && r.data[r.pos] == '\\' && r.data[r.pos+1] == 'u' {
						save := r.pos
						r.pos += 2
						if x, ok := r.hex4(); ok {
							rn2 = x
						} else {
							r.pos = save
						}
					}
					if d := utf16.DecodeRune(rn, rn2); d != utf8.RuneError {
						rn = d
					} else {
						rn = utf8.RuneError
					}
				}
				b = utf8.AppendRune(b, rn)
			default:
				return nil, r.errorf("invalid escape \\%c", e)
			}
		case c >= utf8.RuneSelf:
			rn, size := utf8.DecodeRune(r.data[r.pos:])
			if rn == utf8.RuneError && size == 1 {
				b = utf8.AppendRune(b, utf8.RuneError)
			} else {
				b = append(b, r.data[r.pos:r.pos+size]...)
			}
			r.pos += size
		default:
			b = append(b, c)
			r.pos++
		}
	}
	return nil, r.errorf("string not terminated")
}

func (r *jsonReader) hex4() (rune, bool) {
	if len(r.data)-r.pos < 4 {
		return 0, false
	}
	var n rune
	for _, c := range r.data[r.pos : r.pos+4] {
		switch {
		case c >= '0' && c <= '9':
			n = n<<4 | rune(c-'0')
		case c >= 'a' && c <= 'f':
			n = n<<4 | rune(c-'a'+10)
		case c >= 'A' && c <= 'F':
			n = n<<4 | rune(c-'A'+10)
		default:
			return 0, false
		}
	}
	r.pos += 4
	return n, true
}

// object reads an object, calling member with each key; member must read
// the value. The key's bytes are valid until member reads.
func (r *jsonReader) object(member func(key []byte) error) error {
	if r.peek() != '{' {
		return r.errorf("want an object")
	}
	if r.depth++; r.depth > maxDepth {
		return r.errorf("nested too deeply")
	}
	r.pos++
	if r.peek() == '}' {
		r.pos++
		r.depth--
		return nil
	}
	for {
		key, err := r.stringBytes()
		if err != nil {
			return err
		}
		if r.peek() != ':' {
			return r.errorf("want ':'")
		}
		r.pos++
		if err := member(key); err != nil {
			return err
		}
		switch r.peek() {
		case ',':
			r.pos++
		case '}':
			r.pos++
			r.depth--
			return nil
		default:
			return r.errorf("want ',' or '}'")
		}
	}
}

// array reads an array, calling elem with the index of each element; elem
// must read it.
func (r *jsonReader) array(elem func(i int) error) error {
	if r.peek() != '[' {
		return r.errorf("want an array")
	}
	if r.depth++; r.depth > maxDepth {
		return r.errorf("nested too deeply")
	}
	r.pos++
	if r.peek() == ']' {
		r.pos++
		r.depth--
		return nil
	}
	for i := 0; ; i++ {
		if err := elem(i); err != nil {
			return err
		}
		switch r.peek() {
		case ',':
			r.pos++
		case ']':
			r.pos++
			r.depth--
			return nil
		default:
			return r.errorf("want ',' or ']'")
		}
	}
}

// any reads a value without a Go type to fill: nil, bool, string, int64
// for an integer (uint64 beyond int64, float64 beyond both), float64 for a
// number written with a fraction or an exponent, []any, map[string]any.
func (r *jsonReader) any() (any, error) {
	switch c := r.peek(); {
	case c == '{':
		m := map[string]any{}
		err := r.object(func(key []byte) error {
			k := string(key)
			v, err := r.any()
			m[k] = v
			return err
		})
		return m, err
	case c == '[':
		s := []any{}
		err := r.array(func(int) error {
			v, err := r.any()
			s = append(s, v)
			return err
		})
		return s, err
	case c == '"':
		return r.string()
	case c == 't' || c == 'f':
		return r.bool()
	case c == 'n':
		return nil, r.literal("null")
	case c == '-' || c >= '0' && c <= '9':
		text, float, err := r.number()
		if err != nil {
			return nil, err
		}
		if !float {
			if n, err := strconv.ParseInt(string(text), 10, 64); err == nil {
				return n, nil
			}
			if n, err := strconv.ParseUint(string(text), 10, 64); err == nil {
				return n, nil
			}
		}
		f, err := strconv.ParseFloat(string(text), 64)
		if err != nil && !errors.Is(err, strconv.ErrRange) {
			return nil, err
		}
		return f, nil
	case c == 0:
		return nil, r.errorf("unexpected end of input")
	default:
		return nil, r.errorf("unexpected %q", c)
	}
}

// skip reads a value and discards it.
func (r *jsonReader) skip() error {
	switch c := r.peek(); {
	case c == '{':
		return r.object(func([]byte) error { return r.skip() })
	case c == '[':
		return r.array(func(int) error { return r.skip() })
	case c == '"':
		_, err := r.stringBytes()
		return err
	case c == 't' || c == 'f':
		_, err := r.bool()
		return err
	case c == 'n':
		return r.literal("null")
	case c == 0:
		return r.errorf("unexpected end of input")
	default:
		_, _, err := r.number()
		return err
	}
}
