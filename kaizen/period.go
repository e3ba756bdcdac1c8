package kaizen

import (
	"encoding/json"
	"time"

	"github.com/taipattern/taikit/tai"
)

// OutcomeCounts counts signals by tai.Outcome.
type OutcomeCounts struct {
	Succeeded uint64 `json:"succeeded"`
	Denied    uint64 `json:"denied"`
	Rejected  uint64 `json:"rejected"`
	Failed    uint64 `json:"failed"`
}

// Of returns the count of outcome o (0 for an unknown outcome).
func (c OutcomeCounts) Of(o tai.Outcome) uint64 {
	switch o {
	case tai.Succeeded:
		return c.Succeeded
	case tai.Denied:
		return c.Denied
	case tai.Rejected:
		return c.Rejected
	case tai.Failed:
		return c.Failed
	}
	return 0
}

// VerdictCounts counts signals by the Verdict of their deciding decision.
// None counts the signals that reached no decision (a gate rejected them or
// the policy failed).
type VerdictCounts struct {
	None   uint64 `json:"none"`
	Allow  uint64 `json:"allow"`
	Review uint64 `json:"review"`
	Deny   uint64 `json:"deny"`
}

// Of returns the count of verdict v; the zero Verdict gives None.
func (c VerdictCounts) Of(v tai.Verdict) uint64 {
	switch v {
	case 0:
		return c.None
	case tai.Allow:
		return c.Allow
	case tai.Review:
		return c.Review
	case tai.Deny:
		return c.Deny
	}
	return 0
}

// Period is what one kind of signal did during a stretch of time: counts,
// rates and latencies of the signals that finished in [Start, End). Rates
// are fractions in [0, 1] of Total; they and the latencies are zero when
// Total is zero.
type Period struct {
	Start, End time.Time
	Total      uint64
	Outcomes   OutcomeCounts
	Verdicts   VerdictCounts

	SuccessRate float64 // Succeeded / Total
	DenyRate    float64 // Denied / Total
	RejectRate  float64 // Rejected / Total
	ErrorRate   float64 // Failed / Total
	// Throughput is Total divided by the time the period has covered, in
	// signals per second: its length less the part of it still to come
	// (the rest of the slot that holds now, in a current window) and the
	// part before the statistics began (when the Stats was made, or the
	// earliest record it kept, if earlier). So a process that has run for
	// 10 seconds at 10 signals a second reports 10 in every window, not
	// 100 signals over the 3600 seconds of an hour. The time covered is
	// counted as at least a second (or the whole period, if shorter), so
	// that one signal in the first millisecond reads as 1 a second, not a
	// thousand.
	Throughput float64

	// Latencies of whole signals (Record.Duration; a negative one counts
	// as zero). Quantiles are within 0.4% of the exact value; Min, Max
	// and Mean are exact.
	P50, P90, P99  time.Duration
	Min, Max, Mean time.Duration

	lat *latencies // nil when Total is zero
}

// Ratio returns the fraction of signals whose outcome is one of outcomes:
// Ratio(tai.Failed) is the error ratio an SLO burn-rate rule reads,
// Ratio(tai.Failed, tai.Rejected) counts shed signals as errors too. It is
// zero when Total is zero.
func (p Period) Ratio(outcomes ...tai.Outcome) float64 {
	if p.Total == 0 {
		return 0
	}
	var n uint64
	for i, o := range outcomes {
		if !containsOutcome(outcomes[:i], o) {
			n += p.Outcomes.Of(o)
		}
	}
	return float64(n) / float64(p.Total)
}

func containsOutcome(os []tai.Outcome, o tai.Outcome) bool {
	for _, x := range os {
		if x == o {
			return true
		}
	}
	return false
}

// Quantile returns the latency at quantile q in [0, 1] (0.999 for p99.9),
// using the nearest-rank definition, within 0.4% of the exact value: the
// value at rank ceil(q×Total), where a q×Total within floating-point
// rounding of a whole number is that number (Quantile(0.07) of 100
// signals is the 7th). The first rank is Min and the last Max, exactly:
// Quantile(1) is Max, and so is the P99 of fewer than 100 signals. It is
// zero when Total is zero or q is NaN. q outside [0, 1] is clamped.
func (p Period) Quantile(q float64) time.Duration {
	return p.lat.quantile(q, p.Total, p.Min, p.Max)
}

type periodJSON struct {
	Start       time.Time     `json:"start"`
	End         time.Time     `json:"end"`
	Total       uint64        `json:"total"`
	Outcomes    OutcomeCounts `json:"outcomes"`
	Verdicts    VerdictCounts `json:"verdicts"`
	SuccessRate float64       `json:"success_rate"`
	DenyRate    float64       `json:"deny_rate"`
	RejectRate  float64       `json:"reject_rate"`
	ErrorRate   float64       `json:"error_rate"`
	Throughput  float64       `json:"throughput_per_second"`
	Latency     latencyJSON   `json:"latency_seconds"`
}

type latencyJSON struct {
	P50  float64 `json:"p50"`
	P90  float64 `json:"p90"`
	P99  float64 `json:"p99"`
	Min  float64 `json:"min"`
	Max  float64 `json:"max"`
	Mean float64 `json:"mean"`
}

// MarshalJSON encodes the period with latencies in seconds.
func (p Period) MarshalJSON() ([]byte, error) {
	return json.Marshal(periodJSON{
		Start: p.Start, End: p.End, Total: p.Total, Outcomes: p.Outcomes, Verdicts: p.Verdicts,
		SuccessRate: p.SuccessRate, DenyRate: p.DenyRate, RejectRate: p.RejectRate, ErrorRate: p.ErrorRate,
		Throughput: p.Throughput,
		Latency: latencyJSON{
			P50: p.P50.Seconds(), P90: p.P90.Seconds(), P99: p.P99.Seconds(),
			Min: p.Min.Seconds(), Max: p.Max.Seconds(), Mean: p.Mean.Seconds(),
		},
	})
}
