// Package analysis is the health gate of a rollout stage: it holds one
// fleet.Sample of a new version against Thresholds and says whether the
// stage may go on, and if not, why.
//
// Evaluate judges four checks, always in this order: error_rate,
// p99_latency, cpu and memory. A value exactly at its threshold passes. A
// reading that cannot be a measurement (NaN, negative, or infinite where a
// share is meant) fails: a broken health source must stop a rollout, never
// wave it through.
//
// Evaluate judges what the Sample says, even a Sample with zero Requests:
// the gauges (CPU, memory) still mean something then. Whether there was
// enough traffic to judge at all is the caller's question; a Health source
// answers it by returning an error that wraps fleet.ErrNoData, which a
// rollout treats as inconclusive rather than as a failure.
package analysis

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/taipattern/taikit/examples/deployment/internal/fleet"
)

// Thresholds are the most a version may show and still pass. Shares are
// in (0, 1]. The zero value is not usable; start from Default.
type Thresholds struct {
	MaxErrorRate float64       // share of failed requests
	MaxP99       time.Duration // 99th percentile latency
	MaxCPU       float64       // share of CPU in use
	MaxMemory    float64       // share of memory in use
}

// Default returns the usual gate: at most 5% errors, a p99 of 1000 ms,
// 80% CPU and 85% memory.
func Default() Thresholds {
	return Thresholds{
		MaxErrorRate: 0.05,
		MaxP99:       1000 * time.Millisecond,
		MaxCPU:       0.80,
		MaxMemory:    0.85,
	}
}

// Validate reports every field out of range, each named: shares must be in
// (0, 1] and MaxP99 positive.
func (t Thresholds) Validate() error {
	var errs []error
	share := func(name string, v float64) {
		if !(v > 0 && v <= 1) {
			errs = append(errs, fmt.Errorf("analysis: %s must be a share in (0, 1], got %v", name, v))
		}
	}
	share("MaxErrorRate", t.MaxErrorRate)
	if t.MaxP99 <= 0 {
		errs = append(errs, fmt.Errorf("analysis: MaxP99 must be positive, got %v", t.MaxP99))
	}
	share("MaxCPU", t.MaxCPU)
	share("MaxMemory", t.MaxMemory)
	return errors.Join(errs...)
}

// Check is the outcome of one threshold.
type Check struct {
	Name      string  // "error_rate", "p99_latency", "cpu" or "memory"
	Value     float64 // the reading: a share, or milliseconds for p99_latency
	Threshold float64 // in the same unit as Value
	Passed    bool
	Message   string // e.g. "Error rate 7.20% exceeds threshold 5.00%"
}

// Verdict is the outcome of Evaluate.
type Verdict struct {
	Passed bool    // every check passed
	Checks []Check // all four, in the order error_rate, p99_latency, cpu, memory
	Failed []Check // the checks that failed, in the same order
}

// Reason is "" when v passed, and otherwise the failed checks' messages
// joined by "; ".
func (v Verdict) Reason() string {
	msgs := make([]string, len(v.Failed))
	for i, c := range v.Failed {
		msgs[i] = c.Message
	}
	return strings.Join(msgs, "; ")
}

// Evaluate holds s against t. It expects t to pass Validate; a threshold
// that is NaN fails its check whatever the reading.
func Evaluate(s fleet.Sample, t Thresholds) Verdict {
	checks := []Check{
		judge("error_rate", "Error rate", s.ErrorRate, t.MaxErrorRate, percent),
		judge("p99_latency", "P99 latency", millis(s.P99), millis(t.MaxP99), milliseconds),
		judge("cpu", "CPU usage", s.CPU, t.MaxCPU, percent),
		judge("memory", "Memory usage", s.Memory, t.MaxMemory, percent),
	}
	v := Verdict{Passed: true, Checks: checks}
	for _, c := range checks {
		if !c.Passed {
			v.Passed = false
			v.Failed = append(v.Failed, c)
		}
	}
	return v
}

// judge makes one check. label starts its message; format renders a value
// with the given number of decimals.
func judge(name, label string, value, threshold float64, format func(v float64, decimals int) string) Check {
	c := Check{Name: name, Value: value, Threshold: threshold}
	valid := value >= 0 && !math.IsInf(value, 1) // false for NaN too
	if !valid {
		reading := strconv.FormatFloat(value, 'g', -1, 64) // NaN, +Inf, -Inf
		if !math.IsNaN(value) && !math.IsInf(value, 0) {
			reading = format(value, 2)
		}
		c.Message = fmt.Sprintf("%s %s is not a valid reading, threshold %s", label, reading, format(threshold, 2))
		return c
	}
	c.Passed = value <= threshold
	v, th := distinct(value, threshold, format)
	if c.Passed {
		c.Message = fmt.Sprintf("%s %s within threshold %s", label, v, th)
	} else {
		c.Message = fmt.Sprintf("%s %s exceeds threshold %s", label, v, th)
	}
	return c
}

// distinct renders value and threshold with two decimals, or with up to six
// when that tells them apart, so that a reading just over the threshold
// reads "5.0001% exceeds threshold 5.0000%" rather than "5.00% exceeds
// threshold 5.00%". Differences finer than that are rounding noise and
// keep two decimals.
func distinct(value, threshold float64, format func(float64, int) string) (string, string) {
	for d := 2; d <= 6 && value != threshold; d++ {
		if v, t := format(value, d), format(threshold, d); v != t {
			return v, t
		}
	}
	return format(value, 2), format(threshold, 2)
}

// percent renders a share as a percentage: 0.072 is "7.20%".
func percent(share float64, decimals int) string {
	return strconv.FormatFloat(share*100, 'f', decimals, 64) + "%"
}

// milliseconds renders whole milliseconds without decimals ("1500ms") and
// fractions with as many as they need; it never hides a difference, so it
// ignores decimals.
func milliseconds(ms float64, _ int) string {
	return strconv.FormatFloat(ms, 'f', -1, 64) + "ms"
}

func millis(d time.Duration) float64 {
	return float64(d) / float64(time.Millisecond)
}
