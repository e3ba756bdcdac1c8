package kaizen

import (
	"math"
	"time"
)

// Direction says whether a measure got better or worse from one window to
// the next.
type Direction string

// The directions of a Trend.
const (
	Better Direction = "better"
	Worse  Direction = "worse"
	Same   Direction = "same" // the change is within the tolerance
	// Unknown: one of the two windows saw no signal, so there is nothing
	// to compare.
	Unknown Direction = "unknown"
)

// Trend compares a measure over a window with the same measure over the
// window of the same length just before it.
type Trend struct {
	Direction Direction `json:"direction"`
	// Delta is current minus previous: a fraction for rates, seconds for
	// latencies. Zero when Direction is Unknown.
	Delta float64 `json:"delta"`
}

// Trends are the trends of a window's main measures.
type Trends struct {
	SuccessRate Trend `json:"success_rate"` // higher is better
	ErrorRate   Trend `json:"error_rate"`   // lower is better
	RejectRate  Trend `json:"reject_rate"`  // lower is better
	P50         Trend `json:"p50"`          // lower is better
	P99         Trend `json:"p99"`          // lower is better
}

// Tolerance sets how large a change must be to count as Better or Worse.
type Tolerance struct {
	// Rate is the largest absolute change of a rate that is the Same; a
	// change of exactly Rate is the Same. Zero means 0.01 (one percentage
	// point).
	Rate float64
	// Latency is the largest change of a latency, relative to the
	// previous window's, that is the Same. Zero means 0.1 (10%).
	Latency float64
}

func (t Tolerance) withDefaults() Tolerance {
	if t.Rate == 0 {
		t.Rate = 0.01
	}
	if t.Latency == 0 {
		t.Latency = 0.1
	}
	return t
}

func trendsOf(cur, prev Period, tol Tolerance) Trends {
	if cur.Total == 0 || prev.Total == 0 {
		u := Trend{Direction: Unknown}
		return Trends{SuccessRate: u, ErrorRate: u, RejectRate: u, P50: u, P99: u}
	}
	return Trends{
		SuccessRate: rateTrend(cur.SuccessRate, prev.SuccessRate, tol.Rate, true),
		ErrorRate:   rateTrend(cur.ErrorRate, prev.ErrorRate, tol.Rate, false),
		RejectRate:  rateTrend(cur.RejectRate, prev.RejectRate, tol.Rate, false),
		P50:         latencyTrend(cur.P50, prev.P50, tol.Latency),
		P99:         latencyTrend(cur.P99, prev.P99, tol.Latency),
	}
}

func rateTrend(cur, prev, tol float64, higherIsBetter bool) Trend {
	d := cur - prev
	t := Trend{Direction: Same, Delta: d}
	if beyond(math.Abs(d), tol) {
		if (d > 0) == higherIsBetter {
			t.Direction = Better
		} else {
			t.Direction = Worse
		}
	}
	return t
}

func latencyTrend(cur, prev time.Duration, tol float64) Trend {
	d := cur - prev
	t := Trend{Direction: Same, Delta: d.Seconds()}
	if beyond(math.Abs(float64(d)), tol*float64(prev)) {
		if d < 0 {
			t.Direction = Better
		} else {
			t.Direction = Worse
		}
	}
	return t
}

// beyond reports whether change exceeds limit by more than the rounding
// of floating point: a change of exactly the tolerance, such as 0.51-0.50
// against 0.01, is the Same, though its difference rounds a little above
// the limit.
func beyond(change, limit float64) bool {
	return change > limit*(1+1e-9)
}
