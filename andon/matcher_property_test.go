package andon_test

import (
	"testing"

	"pgregory.net/rapid"

	"github.com/taipattern/taikit/andon"
)

// TestParseMatcherReadsBackAnyValue checks that ParseMatcher reads back
// what Matcher.String writes for any label name, match type and value,
// quotes, backslashes, newlines and spaces included, and that the
// matcher read matches the labels the written one does.
func TestParseMatcherReadsBackAnyValue(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		m := andon.Matcher{
			Name:  rapid.StringMatching(`[a-z_][a-z0-9_]{0,5}`).Draw(rt, "name"),
			Type:  andon.MatchType(rapid.IntRange(0, 1).Draw(rt, "type")),
			Value: rapid.StringOf(rapid.SampledFrom([]rune{'a', 'b', ' ', '"', '\\', '\n', '\t', '=', '!', '~', 'é'})).Draw(rt, "value"),
		}
		if len(m.Name) >= 2 && m.Name[:2] == "__" {
			rt.Skip("reserved name")
		}
		got, err := andon.ParseMatcher(m.String())
		if err != nil {
			rt.Fatalf("ParseMatcher(%s): %v", m.String(), err)
		}
		if got.Name != m.Name || got.Type != m.Type || got.Value != m.Value {
			rt.Fatalf("ParseMatcher(%s) = %+v, want %+v", m.String(), got, m)
		}
		labels := map[string]string{m.Name: m.Value}
		if !got.Matches(labels) == (m.Type == andon.MatchEqual) {
			rt.Fatalf("%s does not match its own value", got)
		}
	})
}
