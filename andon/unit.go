package andon

import (
	"fmt"
	"math"
	"slices"
	"strconv"
)

// Unit says how to read a Measurement's Value and Threshold.
type Unit uint8

// The units. The zero Unit is UnitNone.
const (
	// UnitNone is a plain number.
	UnitNone Unit = iota
	// UnitRatio is a fraction in [0, 1], shown as a percentage.
	UnitRatio
	// UnitSeconds is a duration in seconds.
	UnitSeconds
	// UnitFactor is a multiple, such as an error-budget burn rate.
	UnitFactor
	// UnitState is 1 when something is in a bad state (a breaker open, a
	// line stopped, the cord pulled) and 0 otherwise; the Detail says
	// which.
	UnitState
)

var unitNames = [...]string{"none", "ratio", "seconds", "factor", "state"}

// String returns "none", "ratio", "seconds", "factor" or "state".
func (u Unit) String() string {
	if int(u) < len(unitNames) {
		return unitNames[u]
	}
	return "unit(" + strconv.Itoa(int(u)) + ")"
}

// MarshalText encodes the unit as its String.
func (u Unit) MarshalText() ([]byte, error) { return []byte(u.String()), nil }

// UnmarshalText decodes a unit's String.
func (u *Unit) UnmarshalText(b []byte) error {
	i := slices.Index(unitNames[:], string(b))
	if i < 0 {
		return fmt.Errorf("andon: unknown unit %q", b)
	}
	*u = Unit(i)
	return nil
}

// Format writes v in the unit with three significant digits: "3.1%",
// "250ms", "5.2s", "14.4×", "on"/"off" for UnitState. A ratio below one
// has as many more as keep it from reading 100%: "99.95%". In
// UnitSeconds, a minute or more is written in days, hours, minutes and
// whole seconds, as Prometheus's humanizeDuration writes it: "1m 30s",
// "16m 40s", "1h 2m 5s", so that a summary reads alike in process and in
// Prometheus, where the exported rules render the value with
// humanizeDuration (and the threshold with Format).
func (u Unit) Format(v float64) string {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return strconv.FormatFloat(v, 'g', -1, 64)
	}
	switch u {
	case UnitRatio:
		// A ratio below one does not read 100%, which nothing below could
		// meet: a 99.95% objective is shown so.
		if p := v * 100; p < 100 && sig3(p) == "100" {
			return percentBelow100(p, 4) + "%"
		}
		return sig3(v*100) + "%"
	case UnitSeconds:
		// Past what int64 holds, humanizeDuration's days would overflow.
		if a := math.Abs(v); a >= 60 && a < 0x1p63 {
			return humanizeDuration(v)
		}
		// The prefix is chosen for the value as it is shown, rounded to
		// three digits: 0.9996 is "1s", not "1000ms".
		a, _ := strconv.ParseFloat(strconv.FormatFloat(math.Abs(v), 'g', 3, 64), 64)
		switch {
		case a == 0 || a >= 1:
			return sig3(v) + "s"
		case a >= 1e-3:
			return sig3(v*1e3) + "ms"
		case a >= 1e-6:
			return sig3(v*1e6) + "µs"
		}
		return sig3(v*1e9) + "ns"
	case UnitFactor:
		return sig3(v) + "×"
	case UnitState:
		if v >= 0.5 {
			return "on"
		}
		return "off"
	}
	return sig3(v)
}

// percentBelow100 writes p, a percentage below 100, with digits
// significant digits, or as many more as keep it from reading 100: 99.95,
// 99.999.
func percentBelow100(p float64, digits int) string {
	for ; ; digits++ {
		s := strconv.FormatFloat(p, 'g', digits, 64)
		if r, _ := strconv.ParseFloat(s, 64); r < 100 || digits >= 17 {
			return s
		}
	}
}

// sig3 formats v with up to three significant digits and no exponent for
// everyday magnitudes.
func sig3(v float64) string {
	if v == 0 {
		return "0"
	}
	if a := math.Abs(v); a >= 1e-3 && a < 1e6 {
		digits := 2 - int(math.Floor(math.Log10(a)))
		if digits < 0 {
			digits = 0
		}
		s := strconv.FormatFloat(v, 'f', digits, 64)
		if digits > 0 {
			for s[len(s)-1] == '0' {
				s = s[:len(s)-1]
			}
			if s[len(s)-1] == '.' {
				s = s[:len(s)-1]
			}
		}
		return s
	}
	return strconv.FormatFloat(v, 'g', 3, 64)
}
