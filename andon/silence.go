package andon

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"
	"unicode/utf8"
)

// MatchType is how a Matcher compares a label's value.
type MatchType uint8

// The match types, as in Alertmanager. The zero MatchType is MatchEqual.
const (
	MatchEqual     MatchType = iota // =
	MatchNotEqual                   // !=
	MatchRegexp                     // =~, the whole value
	MatchNotRegexp                  // !~
)

var matchOps = [...]string{"=", "!=", "=~", "!~"}

// String returns "=", "!=", "=~" or "!~".
func (t MatchType) String() string {
	if int(t) < len(matchOps) {
		return matchOps[t]
	}
	return fmt.Sprintf("match(%d)", uint8(t))
}

// MarshalText encodes the match type as its String.
func (t MatchType) MarshalText() ([]byte, error) { return []byte(t.String()), nil }

// UnmarshalText decodes "=", "!=", "=~" or "!~".
func (t *MatchType) UnmarshalText(b []byte) error {
	for i, op := range matchOps {
		if op == string(b) {
			*t = MatchType(i)
			return nil
		}
	}
	return fmt.Errorf("andon: unknown match type %q", b)
}

// Matcher matches alerts by one label. A label an alert does not have has
// the empty value, as in Prometheus: {team=""} matches alerts without a
// team.
type Matcher struct {
	Name  string    `json:"name"`
	Type  MatchType `json:"type"`
	Value string    `json:"value"`

	// re is the regexp compiled from reFor, the Value it was compiled
	// from: a Value changed since (by hand, or by decoding JSON into the
	// Matcher) is compiled anew.
	re    *regexp.Regexp
	reFor string
}

// ParseMatcher parses "name=value", "name!=value", "name=~regexp" or
// "name!~regexp", as Alertmanager parses a matcher: spaces around the name,
// the operator and the value are ignored, and the value may be
// double-quoted. In the value, quoted or not, \", \\ and \n are a quote, a
// backslash and a newline, and any other backslash is itself (a regexp's
// \.): ParseMatcher reads back what Matcher.String writes. A quote not
// escaped is an error anywhere but around the whole value, and so is an
// opening quote without its closing one.
func ParseMatcher(s string) (Matcher, error) {
	i := strings.IndexAny(s, "=!")
	if i <= 0 {
		return Matcher{}, fmt.Errorf("andon: matcher %q has no label name and operator", s)
	}
	m := Matcher{Name: strings.Trim(s[:i], matcherSpace)}
	rest := s[i:]
	switch {
	case strings.HasPrefix(rest, "=~"):
		m.Type, rest = MatchRegexp, rest[2:]
	case strings.HasPrefix(rest, "!~"):
		m.Type, rest = MatchNotRegexp, rest[2:]
	case strings.HasPrefix(rest, "!="):
		m.Type, rest = MatchNotEqual, rest[2:]
	case strings.HasPrefix(rest, "="):
		m.Type, rest = MatchEqual, rest[1:]
	default:
		return Matcher{}, fmt.Errorf("andon: matcher %q has no operator (=, !=, =~, !~)", s)
	}
	v, err := unescapeValue(strings.Trim(rest, matcherSpace))
	if err != nil {
		return Matcher{}, fmt.Errorf("andon: matcher %q: %w", s, err)
	}
	m.Value = v
	if err := m.compile(); err != nil {
		return Matcher{}, fmt.Errorf("andon: matcher %q: %w", s, err)
	}
	return m, nil
}

// matcherSpace is the space Alertmanager trims around the parts of a
// matcher (a regexp's \s).
const matcherSpace = " \t\n\f\r"

// unescapeValue undoes escapeValue, as Alertmanager reads a matcher's value
// s: without its quotes, if it has them, and with \", \\ and \n unescaped;
// any other backslash, and one that ends s, stays.
func unescapeValue(s string) (string, error) {
	quoted := strings.HasPrefix(s, `"`)
	if quoted {
		s = s[1:]
	}
	if !utf8.ValidString(s) {
		return "", fmt.Errorf("value %q is not valid UTF-8", s)
	}
	var b strings.Builder
	escaped := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		if escaped {
			escaped = false
			switch c {
			case 'n':
				b.WriteByte('\n')
			case '"', '\\':
				b.WriteByte(c)
			default:
				b.WriteByte('\\')
				b.WriteByte(c)
			}
			continue
		}
		switch c {
		case '\\':
			if i < len(s)-1 {
				escaped = true
				continue
			}
			b.WriteByte(c)
		case '"':
			if !quoted || i < len(s)-1 {
				return "", errors.New(`value has a quote that is not escaped; write \" for a quote in it`)
			}
			quoted = false
		default:
			b.WriteByte(c)
		}
	}
	if quoted {
		return "", errors.New(`value has an opening quote and no closing one (\" does not close it)`)
	}
	return b.String(), nil
}

// escapeValue escapes a backslash, a quote and a newline, as
// Alertmanager writes matcher values.
var escapeValue = strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`).Replace

func (m *Matcher) compile() error {
	if err := checkLabelName(m.Name); err != nil {
		return err
	}
	switch m.Type {
	case MatchEqual, MatchNotEqual:
		return nil
	case MatchRegexp, MatchNotRegexp:
		re, err := regexp.Compile("^(?:" + m.Value + ")$")
		if err != nil {
			return fmt.Errorf("value %q is not a regular expression: %w", m.Value, err)
		}
		m.re, m.reFor = re, m.Value
		return nil
	}
	return fmt.Errorf("match type %d is unknown", m.Type)
}

// Matches reports whether labels satisfy the matcher. A Matcher made as a
// literal, not by ParseMatcher or a Silence, or whose Value changed since,
// compiles its regexp here each time.
func (m Matcher) Matches(labels map[string]string) bool {
	v := labels[m.Name]
	switch m.Type {
	case MatchEqual:
		return v == m.Value
	case MatchNotEqual:
		return v != m.Value
	}
	re := m.re
	if re == nil || m.reFor != m.Value {
		if err := m.compile(); err != nil {
			return false
		}
		re = m.re
	}
	return re.MatchString(v) == (m.Type == MatchRegexp)
}

// String writes the matcher as `name="value"`, escaping a backslash, a
// quote and a newline in the value as Alertmanager does; ParseMatcher
// reads it back.
func (m Matcher) String() string {
	return m.Name + m.Type.String() + `"` + escapeValue(m.Value) + `"`
}

// Silence mutes the notifications of the alerts whose labels match every
// Matcher, from StartsAt until EndsAt: they are not sent while they fire,
// but the resolution of one sent firing before is, so that its receiver
// does not hold it firing for good. One that a Refresher (Alertmanager)
// took firing before is still re-sent to it every
// NotifyOptions.ResendInterval, as Prometheus re-sends whatever the
// silences: otherwise its endsAt would pass and Alertmanager would tell
// its receivers that the alert resolved while it fires (mute it there
// with a silence of Alertmanager's). At least one Matcher must not match
// the empty value, as Alertmanager requires: {team!="payments"} alone
// would mute every alert without a team. The board shows silenced alerts as
// such; hooks still run.
type Silence struct {
	// ID is set by Evaluator.Silence.
	ID       string    `json:"id"`
	Matchers []Matcher `json:"matchers"`
	// StartsAt is when the silence begins; zero means now.
	StartsAt time.Time `json:"starts_at"`
	// EndsAt is when it ends, later than now; zero means StartsAt plus
	// Duration.
	EndsAt time.Time `json:"ends_at"`
	// Duration is used when EndsAt is zero; one of them is required.
	Duration  time.Duration `json:"-"`
	CreatedBy string        `json:"created_by,omitempty"`
	Comment   string        `json:"comment,omitempty"`
}

// prepare validates s and fills its times from now.
func (s *Silence) prepare(now time.Time) error {
	if len(s.Matchers) == 0 {
		return errors.New("andon: Silence.Matchers is empty; a silence must match something")
	}
	for i := range s.Matchers {
		if err := s.Matchers[i].compile(); err != nil {
			return fmt.Errorf("andon: Silence.Matchers[%d]: %w", i, err)
		}
	}
	if !slices.ContainsFunc(s.Matchers, func(m Matcher) bool { return !m.Matches(nil) }) {
		// As Alertmanager refuses it: {team!="payments"} alone would
		// mute every alert without a team, the cord's among them.
		return errors.New("andon: Silence.Matchers all match an empty value, so the silence would mute every alert " +
			"without their labels; at least one matcher must need a value, as in Alertmanager")
	}
	if s.StartsAt.IsZero() {
		s.StartsAt = now
	}
	if s.EndsAt.IsZero() {
		if s.Duration <= 0 {
			return fmt.Errorf("andon: Silence.Duration %v is not positive and EndsAt is not set", s.Duration)
		}
		s.EndsAt = s.StartsAt.Add(s.Duration)
	}
	if !s.EndsAt.After(s.StartsAt) {
		return fmt.Errorf("andon: Silence.EndsAt %v is not after StartsAt %v", s.EndsAt, s.StartsAt)
	}
	if !s.EndsAt.After(now) {
		return fmt.Errorf("andon: Silence.EndsAt %v has passed; the silence would mute nothing", s.EndsAt)
	}
	return nil
}

// activeAt reports whether the silence is in force at t.
func (s *Silence) activeAt(t time.Time) bool {
	return !t.Before(s.StartsAt) && t.Before(s.EndsAt)
}

// matches reports whether every matcher matches labels.
func (s *Silence) matches(labels map[string]string) bool {
	for _, m := range s.Matchers {
		if !m.Matches(labels) {
			return false
		}
	}
	return true
}
