package httpapi

import (
	"encoding/json"
	"errors"
	"io"
	"unicode/utf8"
)

// jsonTokens is what the checker reads a body with: a *json.Decoder, or a
// *plainTokens for the bodies most requests send.
type jsonTokens interface {
	Token() (json.Token, error)
	More() bool
	InputOffset() int64
}

// errNotPlain is what plainTokens returns for anything it does not read
// itself: Decode then checks the body again with a json.Decoder, which
// reads every body and words every error.
var errNotPlain = errors.New("httpapi: not a plain body")

// plainTokens reads the tokens of a body as json.Decoder.Token does (with
// UseNumber), at a fraction of its cost, for bodies that are plain: valid
// JSON whose strings hold no escape and are valid UTF-8. Anything else —
// an escape, a syntax error, a value after the first — is errNotPlain,
// before any token that would differ from the decoder's.
type plainTokens struct {
	data []byte
	off  int // the end of the last token read
	// stack holds, for each array or object open, '[' or '{'; the
	// states say what the next token may be.
	stack []byte
	state plainState
}

type plainState uint8

const (
	plainValue      plainState = iota // a value (or, after '[', the ']' that ends it)
	plainKey                          // a key (or, after '{', the '}' that ends it)
	plainAfterKey                     // ':' then a value
	plainAfterValue                   // ',' or the end of the array or object
	plainEnd                          // the top value has been read
)

func (p *plainTokens) InputOffset() int64 { return int64(p.off) }

// skip returns the offset of the first byte at or after i that is not
// JSON's white space.
func (p *plainTokens) skip(i int) int {
	for i < len(p.data) {
		switch p.data[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}

// More reports, as json.Decoder.More does, whether the array or object
// being read has another element.
func (p *plainTokens) More() bool {
	i := p.skip(p.off)
	return i < len(p.data) && p.data[i] != ']' && p.data[i] != '}'
}

func (p *plainTokens) Token() (json.Token, error) {
	i := p.skip(p.off)
	if p.state == plainEnd {
		if i == len(p.data) {
			return nil, io.EOF
		}
		return nil, errNotPlain
	}
	if i == len(p.data) {
		return nil, errNotPlain
	}
	c := p.data[i]
	switch p.state {
	case plainAfterValue:
		switch {
		case c == ',' && len(p.stack) > 0:
			i = p.skip(i + 1)
			if p.stack[len(p.stack)-1] == '{' {
				p.state = plainKey
				return p.key(i)
			}
			p.state = plainValue
			return p.value(i, false)
		case c == ']' || c == '}':
			return p.close(i, c)
		}
		return nil, errNotPlain
	case plainKey:
		if c == '}' {
			return p.close(i, c)
		}
		return p.key(i)
	case plainAfterKey:
		if c != ':' {
			return nil, errNotPlain
		}
		return p.value(p.skip(i+1), false)
	}
	return p.value(i, len(p.stack) > 0 && p.stack[len(p.stack)-1] == '[' && p.state == plainValue)
}

// close reads the ']' or '}' at i, which must end the innermost array or
// object: c after an element, or at once after the one that opened it.
func (p *plainTokens) close(i int, c byte) (json.Token, error) {
	n := len(p.stack)
	if n == 0 || c == ']' && p.stack[n-1] != '[' || c == '}' && p.stack[n-1] != '{' {
		return nil, errNotPlain
	}
	p.stack = p.stack[:n-1]
	p.off = i + 1
	p.ended()
	return json.Delim(c), nil
}

// ended sets the state after a value has been read.
func (p *plainTokens) ended() {
	if len(p.stack) == 0 {
		p.state = plainEnd
	} else {
		p.state = plainAfterValue
	}
}

// key reads the object key that must start at i.
func (p *plainTokens) key(i int) (json.Token, error) {
	if i == len(p.data) || p.data[i] != '"' {
		return nil, errNotPlain
	}
	s, err := p.str(i)
	if err != nil {
		return nil, err
	}
	p.state = plainAfterKey
	return s, nil
}

// value reads the value that must start at i; mayClose says that a ']'
// there ends an empty array instead.
func (p *plainTokens) value(i int, mayClose bool) (json.Token, error) {
	if i == len(p.data) {
		return nil, errNotPlain
	}
	switch c := p.data[i]; c {
	case '{', '[':
		p.stack = append(p.stack, c)
		p.off = i + 1
		if c == '{' {
			p.state = plainKey
		} else {
			p.state = plainValue
		}
		return json.Delim(c), nil
	case ']':
		if mayClose {
			return p.close(i, c)
		}
		return nil, errNotPlain
	case '"':
		s, err := p.str(i)
		if err != nil {
			return nil, err
		}
		p.ended()
		return s, nil
	case 't':
		return p.literal(i, "true", true)
	case 'f':
		return p.literal(i, "false", false)
	case 'n':
		return p.literal(i, "null", nil)
	}
	return p.number(i)
}

// str reads the string that starts at i, a '"', if it is plain.
func (p *plainTokens) str(i int) (string, error) {
	ascii := true
	for j := i + 1; j < len(p.data); j++ {
		switch c := p.data[j]; {
		case c == '"':
			raw := p.data[i+1 : j]
			if !ascii && !utf8.Valid(raw) {
				return "", errNotPlain
			}
			p.off = j + 1
			return string(raw), nil
		case c == '\\' || c < 0x20:
			return "", errNotPlain
		case c >= utf8.RuneSelf:
			ascii = false
		}
	}
	return "", errNotPlain
}

// literal reads word, which must start at i, as v.
func (p *plainTokens) literal(i int, word string, v json.Token) (json.Token, error) {
	if len(p.data)-i < len(word) || string(p.data[i:i+len(word)]) != word || !p.delimited(i+len(word)) {
		return nil, errNotPlain
	}
	p.off = i + len(word)
	p.ended()
	return v, nil
}

// number reads the number that must start at i, in JSON's grammar.
func (p *plainTokens) number(i int) (json.Token, error) {
	j := i
	digits := func() int {
		k := j
		for j < len(p.data) && '0' <= p.data[j] && p.data[j] <= '9' {
			j++
		}
		return j - k
	}
	if j < len(p.data) && p.data[j] == '-' {
		j++
	}
	switch n := digits(); {
	case n == 0, n > 1 && p.data[j-n] == '0':
		return nil, errNotPlain
	}
	if j < len(p.data) && p.data[j] == '.' {
		j++
		if digits() == 0 {
			return nil, errNotPlain
		}
	}
	if j < len(p.data) && (p.data[j] == 'e' || p.data[j] == 'E') {
		j++
		if j < len(p.data) && (p.data[j] == '+' || p.data[j] == '-') {
			j++
		}
		if digits() == 0 {
			return nil, errNotPlain
		}
	}
	if !p.delimited(j) {
		return nil, errNotPlain
	}
	p.off = j
	p.ended()
	return json.Number(p.data[i:j]), nil
}

// delimited reports whether a literal or number ending at i ends there:
// at the end, white space or a delimiter.
func (p *plainTokens) delimited(i int) bool {
	if i == len(p.data) {
		return true
	}
	switch p.data[i] {
	case ' ', '\t', '\n', '\r', ',', ']', '}':
		return true
	}
	return false
}
