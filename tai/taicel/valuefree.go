package taicel

import (
	"errors"
	"regexp"
	"strconv"
	"strings"
)

// redacted stands for a value an error message leaves out.
const redacted = "…"

// valueFree returns err, an evaluation error of CEL for the expression
// src, without the values it quotes from the evaluation's input: a card
// number that timestamp(), a map's lookup, a regular expression or an
// index quoted would reach logs and audit trails with the rule's error.
// Each quoted text ("…", `…`, and '…' but a name, such as a type's) and
// the value of the messages that end with one ("no such key: …", "index
// out of range: …", ...) is replaced with …, unless it is written in src
// itself: what the rule file holds is no input, and "no such key:
// CardCountry" names the field a rule reads that a dynamic payload
// lacks. It returns err itself when there is nothing to leave out.
func valueFree(err error, src string) error {
	msg := err.Error()
	out := scrubValues(msg, src)
	if out == msg {
		return err
	}
	return errors.New(out)
}

// valueTails match the messages of CEL and its extensions that end with,
// or hold, a value unquoted: its first group is kept, the value (the
// rest, or the second group) is left out. They match across lines: a
// value may hold a line break.
var valueTails = []*regexp.Regexp{
	regexp.MustCompile(`(?s)^(.*?no such key: )(.+)$`),
	regexp.MustCompile(`(?s)^(.*?unknown time zone )(.+)$`),
	regexp.MustCompile(`(?s)^(.*?timezone offset (?:hours|minutes) out of range \[-?\d+, \d+\]: )(.+)$`),
	regexp.MustCompile(`(?s)^(.*?precision )(-?\d+)( exceeds maximum allowed precision.*)$`),
	regexp.MustCompile(`(?s)^(.*?timestamp overflow: )(.+)$`),
	regexp.MustCompile(`(?s)^(.*?index out of (?:bounds|range): )(.+)$`),
	regexp.MustCompile(`(?s)^(.*?join: invalid input: )(.+)$`),
	regexp.MustCompile(`(?s)^(.*?unsupported index value )(.+?)( in list.*)$`),
	regexp.MustCompile(`(?s)^(.*?insert failed: key )(.+?)( already exists.*)$`),
	regexp.MustCompile(`(?s)^(.*?index )(-?\d+)( out of range.*)$`),
	regexp.MustCompile(`(?s)^(.*?invalid substring range\. start: )(-?\d+)(, end: )(-?\d+)(.*)$`),
}

// typeName matches what CEL quotes in single quotes that is no value: a
// type's name ('string', 'google.protobuf.Duration', 'list(int)').
var typeName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_.]*(\([A-Za-z0-9_., ()]*\))?$`)

// unconvertible is how CEL's error for a value it cannot read (of a Go
// type no Env declares, held in an interface) begins; the value's Go
// type in parentheses and the value itself, as %v writes it, follow.
const unconvertible = "unsupported conversion to ref.Val: ("

// typeEnd returns the index in s of the parenthesis that closes the one
// at open, around a Go type's name as %T writes it (func(int) string,
// struct { X int "tag" }), past the quoted tags of a struct, or -1.
func typeEnd(s string, open int) int {
	depth := 0
	for i := open; i < len(s); i++ {
		switch s[i] {
		case '(':
			depth++
		case ')':
			if depth--; depth == 0 {
				return i
			}
		case '"':
			if i = closingQuote(s, i); i < 0 {
				return -1
			}
		}
	}
	return -1
}

// scrubValues is valueFree's message.
func scrubValues(msg, src string) string {
	keep := func(v string) bool { return v == "" || strings.Contains(src, v) }
	if i := strings.Index(msg, unconvertible); i >= 0 {
		// The value ends the message; its type is no input, and stays.
		open := i + len(unconvertible) - 1
		if end := typeEnd(msg, open); end < 0 {
			msg = msg[:open] + redacted // no type to tell from the value
		} else if !keep(msg[end+1:]) {
			msg = msg[:end+1] + redacted
		}
	}
	for _, re := range valueTails {
		m := re.FindStringSubmatchIndex(msg)
		if m == nil {
			continue
		}
		// Groups 2, 4, ... are values; 1, 3, ... kept.
		var b strings.Builder
		for g := 1; 2*g+1 < len(m); g++ {
			part := msg[m[2*g]:m[2*g+1]]
			if g%2 == 0 && !keep(part) {
				part = redacted
			}
			b.WriteString(part)
		}
		msg = b.String()
		break
	}
	var b strings.Builder
	for i := 0; i < len(msg); {
		c := msg[i]
		if c != '"' && c != '`' && c != '\'' {
			b.WriteByte(c)
			i++
			continue
		}
		end := closingQuote(msg, i)
		if end < 0 {
			b.WriteString(msg[i:])
			break
		}
		v := msg[i+1 : end]
		if c == '"' {
			// A Go-quoted string is compared as the text it holds.
			if u, err := strconv.Unquote(msg[i : end+1]); err == nil {
				v = u
			}
		}
		if keep(v) || c == '\'' && typeName.MatchString(v) {
			b.WriteString(msg[i : end+1])
		} else {
			b.WriteByte(c)
			b.WriteString(redacted)
			b.WriteByte(c)
		}
		i = end + 1
	}
	return b.String()
}

// closingQuote returns the index in s of the quote that closes the one at
// open, past escapes in a double-quoted string, or -1.
func closingQuote(s string, open int) int {
	q := s[open]
	for i := open + 1; i < len(s); i++ {
		switch {
		case s[i] == '\\' && q == '"':
			i++
		case s[i] == q:
			return i
		}
	}
	return -1
}
