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
