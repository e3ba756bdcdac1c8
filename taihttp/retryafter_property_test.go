package taihttp_test

import (
	"math"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"pgregory.net/rapid"

	"github.com/taipattern/taikit/taihttp"
)

// ows draws optional whitespace, as a field value may have around it.
func ows(t *rapid.T, label string) string {
	return rapid.SampledFrom([]string{"", " ", "\t", "  ", " \t"}).Draw(t, label)
}

// ParseRetryAfter reads delay-seconds of any length as the number they
// spell, at most MaxRetryAfter.
func TestParseRetryAfterDelaySecondsProperty(t *testing.T) {
	now := time.Date(2031, 3, 4, 5, 6, 7, 0, time.UTC)
	rapid.Check(t, func(t *rapid.T) {
		digits := rapid.StringMatching(`[0-9]{1,30}`).Draw(t, "digits")
		v := ows(t, "lead") + digits + ows(t, "trail")
		got, ok := taihttp.ParseRetryAfter(v, now)
		if !ok {
			t.Fatalf("%q: not read", v)
		}
		want := taihttp.MaxRetryAfter
		if n, err := strconv.ParseUint(digits, 10, 64); err == nil && n < uint64(taihttp.MaxRetryAfter/time.Second) {
			want = time.Duration(n) * time.Second
		}
		if got != want {
			t.Fatalf("%q: got %v, want %v", v, got, want)
		}
	})
}

// Whatever follows or precedes the digits (a sign, a fraction, a unit)
// makes the value malformed: false and 0.
func TestParseRetryAfterMalformedSecondsProperty(t *testing.T) {
	now := time.Date(2031, 3, 4, 5, 6, 7, 0, time.UTC)
	rapid.Check(t, func(t *rapid.T) {
		digits := rapid.StringMatching(`[0-9]{1,12}`).Draw(t, "digits")
		v := rapid.SampledFrom([]string{
			"-" + digits, "+" + digits, digits + ".5", digits + "s", digits + " 1", "0x" + digits, digits + "e3", "1_" + digits,
		}).Draw(t, "v")
		got, ok := taihttp.ParseRetryAfter(v, now)
		if ok || got != 0 {
			t.Fatalf("%q: got %v, %v; want 0, false", v, got, ok)
		}
	})
}

// An HTTP-date in any of the three formats RFC 9110 allows gives the time
// from now until it, 0 for one in the past, at most MaxRetryAfter; an RFC
// 850 date's two-digit year is the latest with those digits no more than
// 50 years after now.
func TestParseRetryAfterDatesProperty(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		now := time.Unix(rapid.Int64Range(0, 4102444800).Draw(t, "now"), rapid.Int64Range(0, 999_999_999).Draw(t, "nanos")).UTC()
		// Around now: seconds to decades either way, where each of the
		// results (0, the delay, MaxRetryAfter) is met.
		off := rapid.OneOf(
			rapid.Int64Range(-90, 90),
			rapid.Int64Range(-3*86400, 3*86400),
			rapid.Int64Range(-60*365*86400, 60*365*86400),
		).Draw(t, "offset")
		at := now.Truncate(time.Second).Add(time.Duration(off) * time.Second)
		if at.Year() < 1000 || at.Year() > 9999 {
			t.Skip("a four-digit year only")
		}
		format := rapid.SampledFrom([]string{http.TimeFormat, time.RFC850, time.ANSIC}).Draw(t, "format")
		layout := format
		if format == time.RFC850 {
			layout = strings.Replace(format, "MST", "GMT", 1)
		}
		v := ows(t, "lead") + at.Format(layout) + ows(t, "trail")
		want := at
		if format == time.RFC850 {
			// The digits say the year within its century: the latest
			// year with them no more than 50 years after now.
			y := now.Year() + 50
			y -= ((y-at.Year())%100 + 100) % 100
			want = time.Date(y, at.Month(), at.Day(), at.Hour(), at.Minute(), at.Second(), 0, time.UTC)
			if want.After(now.AddDate(50, 0, 0)) {
				want = want.AddDate(-100, 0, 0)
			}
			if want.Month() != at.Month() {
				t.Skip("29 February of a year that has none")
			}
		}
		got, ok := taihttp.ParseRetryAfter(v, now)
		if !ok {
			t.Fatalf("%q: not read", v)
		}
		exp := min(max(want.Sub(now), 0), taihttp.MaxRetryAfter)
		if got != exp {
			t.Fatalf("%q at %v: got %v, want %v", v, now, got, exp)
		}
	})
}

// RetryAfterSeconds is the hint in whole seconds rounded up, never less
// than the hint, never 0 for a positive one, and ParseRetryAfter reads
// what SetRetryAfter writes back as that many seconds.
func TestRetryAfterSecondsProperty(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		d := time.Duration(rapid.Int64Range(math.MinInt64, math.MaxInt64).Draw(t, "d"))
		s := taihttp.RetryAfterSeconds(d)
		if d <= 0 {
			if s != 0 {
				t.Fatalf("%v: got %d, want 0", d, s)
			}
			return
		}
		bound := min(d, taihttp.MaxRetryAfter)
		if s < 1 || time.Duration(s)*time.Second < bound || time.Duration(s-1)*time.Second >= bound {
			t.Fatalf("%v: got %d s", d, s)
		}
		h := http.Header{}
		taihttp.SetRetryAfter(h, d, 0)
		got, ok := taihttp.ParseRetryAfter(h.Get("Retry-After"), time.Now())
		if !ok || got != time.Duration(s)*time.Second {
			t.Fatalf("%v: wrote %q, read %v, %v", d, h.Get("Retry-After"), got, ok)
		}
	})
}
