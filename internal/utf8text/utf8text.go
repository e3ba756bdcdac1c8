// Package utf8text makes strings valid UTF-8 for exporters that carry
// nothing else: Prometheus label values, OpenTelemetry attributes and
// span names.
package utf8text

import (
	"strings"
	"unicode/utf8"
)

// Clean returns s with each run of bytes that is not UTF-8 replaced by
// U+FFFD; s itself, without a copy, when it is valid.
func Clean(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	return strings.ToValidUTF8(s, "\uFFFD")
}

// LabelValueLen is the length, in bytes, kaizenprom cuts the label values
// of signal kinds and policy names to (kaizenprom.MaxLabelValueLen), and
// andon's exported rules cut the kinds they match to, with Cut.
const LabelValueLen = 128

// Cut returns Clean(s) cut to at most n bytes at a character boundary:
// s cut before a byte that can start a character (so that no valid
// character is cut in two, and shown as U+FFFD), cleaned, and cut again,
// as a bad byte grows to the three of U+FFFD. Only the first n+1 bytes
// of s are read; for a valid s it allocates nothing.
func Cut(s string, n int) string {
	return cutAtRune(Clean(cutAtRune(s, n)), n)
}

// cutAtRune returns s cut to at most n bytes, before a byte that can
// start a character (for valid UTF-8, at a character boundary).
func cutAtRune(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}
