package taihttp_test

import (
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"
)

// sfItem is one member of a structured-field List (RFC 9651) with its
// parameters, as the tests read the RateLimit fields back.
type sfItem struct {
	Value  any // string for a String, int64 for an Integer, []byte for a Byte Sequence
	Params map[string]any
	Order  []string // parameter keys in order
}

// parseSFList parses a structured-field List of Items whose bare items are
// Strings, Integers, Tokens or Byte Sequences; enough of RFC 9651 to check
// what RateLimit and RateLimit-Policy carry, and strict about it.
func parseSFList(s string) ([]sfItem, error) {
	p := &sfParser{s: s}
	p.skipSP()
	var out []sfItem
	for {
		v, err := p.bareItem()
		if err != nil {
			return nil, err
		}
		it := sfItem{Value: v, Params: map[string]any{}}
		for p.peek() == ';' {
			p.i++
			p.skipSP()
			k, err := p.key()
			if err != nil {
				return nil, err
			}
			var pv any = true
			if p.peek() == '=' {
				p.i++
				if pv, err = p.bareItem(); err != nil {
					return nil, err
				}
			}
			if _, dup := it.Params[k]; !dup {
				it.Order = append(it.Order, k)
			}
			it.Params[k] = pv
		}
		out = append(out, it)
		p.skipOWS()
		if p.i == len(p.s) {
			return out, nil
		}
		if p.peek() != ',' {
			return nil, fmt.Errorf("sf: expected ',' at %d in %q", p.i, s)
		}
		p.i++
		p.skipOWS()
		if p.i == len(p.s) {
			return nil, fmt.Errorf("sf: trailing comma in %q", s)
		}
	}
}

type sfParser struct {
	s string
	i int
}

func (p *sfParser) peek() byte {
	if p.i < len(p.s) {
		return p.s[p.i]
	}
	return 0
}

func (p *sfParser) skipSP() {
	for p.peek() == ' ' {
		p.i++
	}
}

func (p *sfParser) skipOWS() {
	for c := p.peek(); c == ' ' || c == '\t'; c = p.peek() {
		p.i++
	}
}

func (p *sfParser) key() (string, error) {
	start := p.i
	c := p.peek()
	if !(c >= 'a' && c <= 'z' || c == '*') {
		return "", fmt.Errorf("sf: bad key start at %d in %q", p.i, p.s)
	}
	for c := p.peek(); c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || strings.IndexByte("_-.*", c) >= 0; c = p.peek() {
		p.i++
	}
	return p.s[start:p.i], nil
}

func (p *sfParser) bareItem() (any, error) {
	switch c := p.peek(); {
	case c == '"':
		p.i++
		var b strings.Builder
		for {
			if p.i >= len(p.s) {
				return nil, fmt.Errorf("sf: unterminated string in %q", p.s)
			}
			c := p.s[p.i]
			p.i++
			switch {
			case c == '\\':
				if p.i >= len(p.s) || (p.s[p.i] != '"' && p.s[p.i] != '\\') {
					return nil, fmt.Errorf("sf: bad escape in %q", p.s)
				}
				b.WriteByte(p.s[p.i])
				p.i++
			case c == '"':
				return b.String(), nil
			case c < 0x20 || c > 0x7e:
				return nil, fmt.Errorf("sf: byte %#x in string %q", c, p.s)
			default:
				b.WriteByte(c)
			}
		}
	case c == '-' || c >= '0' && c <= '9':
		start := p.i
		if c == '-' {
			p.i++
		}
		for c := p.peek(); c >= '0' && c <= '9'; c = p.peek() {
			p.i++
		}
		if p.peek() == '.' {
			return nil, fmt.Errorf("sf: decimal where an integer is expected in %q", p.s)
		}
		digits := p.s[start:p.i]
		if len(strings.TrimPrefix(digits, "-")) == 0 || len(strings.TrimPrefix(digits, "-")) > 15 {
			return nil, fmt.Errorf("sf: bad integer %q", digits)
		}
		return strconv.ParseInt(digits, 10, 64)
	case c == ':':
		end := strings.IndexByte(p.s[p.i+1:], ':')
		if end < 0 {
			return nil, fmt.Errorf("sf: unterminated byte sequence in %q", p.s)
		}
		b, err := base64.StdEncoding.DecodeString(p.s[p.i+1 : p.i+1+end])
		p.i += end + 2
		return b, err
	case c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '*':
		start := p.i
		for c := p.peek(); c > 0x20 && c < 0x7f && strings.IndexByte(`"(),;<=>?@[\]{}`, c) < 0; c = p.peek() {
			p.i++
		}
		return p.s[start:p.i], nil
	}
	return nil, fmt.Errorf("sf: unexpected %q at %d in %q", p.peek(), p.i, p.s)
}
