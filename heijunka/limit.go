package heijunka

import (
	"fmt"
	"math"
	"strconv"
	"time"
)

// Limit is a sustained rate and a burst: up to Burst events may pass at
// once, and capacity refills evenly at Rate events per second. Over any
// window of length w a limiter with this Limit admits at most
// Burst + w/Interval() events.
//
// Limiters keep the time between events as a whole number of nanoseconds,
// the nearest to 1/Rate: Interval() is 1/Rate exactly where a second
// divides into whole nanoseconds, and otherwise off by at most half a
// nanosecond. The rate admitted is then off by at most 0.5·Rate/1e9 of
// itself: 0.05% at a million events per second, but a Rate of 7e8 runs as
// 1e9 (an Interval of 1ns) and one of 6e8 as 5e8 (2ns).
//
// The zero Limit admits nothing. Special values:
//
//   - Rate 0: admits nothing, whatever Burst is (a closed valve; useful to
//     shed all traffic with SetLimit).
//   - Rate +Inf: admits everything, any number of events at once; Burst
//     is ignored, 0 included (see Unlimited). This is rate.Inf of
//     golang.org/x/time/rate, whose value, math.MaxFloat64, is a finite
//     Rate here, and invalid.
//   - Rate NaN or negative, Burst negative, Burst 0 with a positive finite
//     Rate, a Rate above one event per nanosecond, or a Burst whose refill
//     spans more than ten years: invalid. Constructors and SetLimit return
//     an error naming the bad field and value; nothing panics.
type Limit struct {
	Rate  float64 // events per second
	Burst int     // events admitted at once from full
}

// PerSecond returns a Limit of n events per second with a burst of n
// (rounded up, at least 1): all n may pass at once, then one every 1/n s.
// Use WithBurst for another burst.
func PerSecond(n float64) Limit { return Limit{Rate: n, Burst: burstOf(n)} }

// PerMinute returns a Limit of n events per minute with a burst of n
// (rounded up, at least 1).
func PerMinute(n float64) Limit { return Limit{Rate: n / 60, Burst: burstOf(n)} }

// PerHour returns a Limit of n events per hour with a burst of n (rounded
// up, at least 1).
func PerHour(n float64) Limit { return Limit{Rate: n / 3600, Burst: burstOf(n)} }

// Every returns a Limit of one event per interval with a burst of 1. Every(0)
// is Unlimited, as in golang.org/x/time/rate; a negative interval gives an
// invalid Limit.
func Every(interval time.Duration) Limit {
	if interval == 0 {
		return Unlimited()
	}
	return Limit{Rate: float64(time.Second) / float64(interval), Burst: 1}
}

// Unlimited returns the Limit that admits every event: a Rate of +Inf
// (its Burst of 1 limits nothing).
func Unlimited() Limit { return Limit{Rate: math.Inf(1), Burst: 1} }

// WithBurst returns a copy of l with Burst b.
func (l Limit) WithBurst(b int) Limit {
	l.Burst = b
	return l
}

// IsUnlimited reports whether l admits every event.
func (l Limit) IsUnlimited() bool { return math.IsInf(l.Rate, 1) && l.Burst >= 0 }

// IsClosed reports whether l admits nothing (Rate 0).
func (l Limit) IsClosed() bool { return l.Rate == 0 && l.Burst >= 0 }

// Interval returns the time between events at the sustained rate: 0 for
// Unlimited, InfDuration for a closed Limit, and 0 for an invalid one.
func (l Limit) Interval() time.Duration {
	p, err := l.params()
	if err != nil {
		return 0
	}
	switch p.mode {
	case modeClosed:
		return InfDuration
	case modeUnlimited:
		return 0
	}
	return time.Duration(p.interval)
}

// Validate returns nil if l is usable, else an error naming the bad field
// and value.
func (l Limit) Validate() error {
	_, err := l.params()
	return err
}

// String formats l as "10/s burst 20", "unlimited" or "closed".
func (l Limit) String() string {
	switch {
	case math.IsInf(l.Rate, 1):
		return "unlimited"
	case l.Rate == 0:
		return "closed"
	}
	rate, unit := l.Rate, "s"
	if rate < 1 {
		rate, unit = rate*60, "min"
		if rate < 1 {
			rate, unit = rate*60, "h"
		}
	}
	return strconv.FormatFloat(rate, 'g', 6, 64) + "/" + unit + " burst " + strconv.Itoa(l.Burst)
}

// burstOf rounds n up to an int, at least 1, without converting NaN,
// infinities or values past maxBurst (the conversion is undefined for
// them). Those are rates above one event per nanosecond in every unit, so
// the Limit is invalid whatever its Burst.
func burstOf(n float64) int {
	if !(n > 1) || n > maxBurst {
		return 1
	}
	return int(math.Ceil(n))
}

// InfDuration is returned as RetryAfter when a request can never be
// admitted: more events than the burst, or a closed Limit.
const InfDuration = time.Duration(math.MaxInt64)

const (
	// maxTolerance bounds Burst·interval so that sums of times never
	// overflow int64 nanoseconds.
	maxTolerance = int64(10 * 365 * 24 * time.Hour)
	// maxBurst bounds the bursts the constructors derive from a count:
	// half the largest int, so a count rounded up still is one, and far
	// above the 3.6e12 of PerHour at one event per nanosecond.
	maxBurst = math.MaxInt >> 1
	// maxAhead bounds how far reservations may push the schedule.
	maxAhead = int64(1) << 62
	// nowBound clamps epoch-relative times (about 73 years either way).
	nowBound = int64(1) << 61
	// maxSchedule bounds the schedule itself, whatever the time it was
	// booked at: a schedule later than this, plus an interval, minus the
	// earliest time, would overflow int64.
	maxSchedule = math.MaxInt64 - nowBound - maxTolerance
	// minTAT marks a state that has never been used: always full.
	minTAT = math.MinInt64
)

type mode uint8

const (
	modeFinite mode = iota
	modeClosed
	modeUnlimited
)

// params is a validated Limit in the integer form GCRA needs.
type params struct {
	limit     Limit
	mode      mode
	burst     int
	interval  int64 // nanoseconds per event
	tolerance int64 // burst·interval: how far ahead of now the schedule may run
}

func (l Limit) params() (params, error) {
	p := params{limit: l}
	switch {
	case math.IsNaN(l.Rate):
		return p, fmt.Errorf("heijunka: limit Rate %v is not a number", l.Rate)
	case l.Rate < 0:
		return p, fmt.Errorf("heijunka: limit Rate %v is negative", l.Rate)
	case l.Burst < 0:
		return p, fmt.Errorf("heijunka: limit Burst %d is negative", l.Burst)
	case math.IsInf(l.Rate, 1):
		p.mode = modeUnlimited
		return p, nil
	case l.Rate == 0:
		p.mode = modeClosed
		return p, nil
	case l.Rate > 1e9:
		return p, fmt.Errorf("heijunka: limit Rate %v/s exceeds one event per nanosecond; use Unlimited for no limit", l.Rate)
	case l.Burst == 0:
		return p, fmt.Errorf("heijunka: limit Burst 0 with Rate %v/s admits nothing; set Burst to at least 1 or Rate to 0", l.Rate)
	}
	iv := math.Round(1e9 / l.Rate)
	// The product in float64 bounds the one in int64, which cannot then
	// overflow; a Burst past 2^53 is not exact in float64, so the bound
	// itself is checked in whole nanoseconds.
	if iv*float64(l.Burst) > 2*float64(maxTolerance) || int64(iv)*int64(l.Burst) > maxTolerance {
		return p, fmt.Errorf("heijunka: limit Burst %d at Rate %v/s takes more than ten years to refill", l.Burst, l.Rate)
	}
	p.mode = modeFinite
	p.burst = l.Burst
	p.interval = int64(iv)
	p.tolerance = p.interval * int64(l.Burst)
	return p, nil
}

// clampNow keeps an epoch-relative time within nowBound.
func clampNow(d time.Duration) int64 {
	n := int64(d)
	if n > nowBound {
		return nowBound
	}
	if n < -nowBound {
		return -nowBound
	}
	return n
}
