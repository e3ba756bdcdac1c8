package main

import (
	"context"
	"errors"
	"slices"
	"strings"
	"time"

	"cel.dev/cel-go/cel"
	"cel.dev/cel-go/ext"

	"github.com/taipattern/taikit/examples/deployment/internal/analysis"
	"github.com/taipattern/taikit/examples/deployment/internal/fleet"
	"github.com/taipattern/taikit/tai"
	"github.com/taipattern/taikit/tai/taicel"
)

// HealthReading is a health sample as the analysis rules
// (rules/analysis.yaml) read it: payload.Requests, payload.ErrorRate,
// payload.P99Ms (milliseconds), payload.CPU, payload.Memory.
type HealthReading struct {
	Requests  float64
	ErrorRate float64
	P99Ms     float64
	CPU       float64
	Memory    float64

	// limits are the deployment's thresholds, the variables the lookup
	// returns (see thresholdVars).
	limits map[string]any
}

// analysisVars are the thresholds an analysis rule reads.
var analysisVars = map[string]*cel.Type{
	"max_error_rate": cel.DoubleType,
	"max_p99_ms":     cel.DoubleType,
	"max_cpu":        cel.DoubleType,
	"max_memory":     cel.DoubleType,
}

// thresholdVars are a deployment's thresholds as the analysis rules read
// them, in the units analysis.Evaluate judges in.
func thresholdVars(t analysis.Thresholds) map[string]any {
	return map[string]any{
		"max_error_rate": t.MaxErrorRate,
		"max_p99_ms":     float64(t.MaxP99) / float64(time.Millisecond),
		"max_cpu":        t.MaxCPU,
		"max_memory":     t.MaxMemory,
	}
}

// newAnalysisEnv is the environment analysis rule files compile in.
func newAnalysisEnv() (*taicel.Env[HealthReading], error) {
	return taicel.NewEnv(taicel.Options[HealthReading]{
		Vars: analysisVars,
		Lookup: func(_ context.Context, s tai.Signal[HealthReading]) (map[string]any, error) {
			if s.Payload.limits == nil {
				return nil, errors.New("analysis: the reading has no thresholds")
			}
			return s.Payload.limits, nil
		},
		EnvOptions: []cel.EnvOption{ext.Math(), ext.Bindings()},
	})
}

// judgement is a health sample's analysis, by the Go rules or the rule
// file in force.
type judgement struct {
	passed bool
	reason string   // "" when passed; else each failed check's message, joined by "; "
	checks []string // every check judged, for the metrics
	failed []string // the checks that failed, in order
}

// goChecks are the checks of analysis.Evaluate, in its order.
var goChecks = []string{"error_rate", "p99_latency", "cpu", "memory"}

// analyze judges a health sample against r's thresholds with the Go
// analysis (-rules go) or the analysis rules in force.
func (s *Service) analyze(ctx context.Context, sample fleet.Sample, r *rollout) (judgement, error) {
	if s.analysisRules == nil {
		v := analysis.Evaluate(sample, r.thresholds)
		j := judgement{passed: v.Passed, checks: goChecks}
		if !v.Passed {
			j.reason = v.Reason()
			for _, c := range v.Failed {
				j.failed = append(j.failed, c.Name)
			}
		}
		return j, nil
	}
	return judgeReading(ctx, s.analysisRules.current(), sample, r.limits)
}

// judgeReading judges a sample with an analysis rule set: it passes when
// the set allows it; its reason is the reason of each scored rule that
// contributed, in order (or the verdict rule's that decided); a check
// failed when a rule of its part contributed, or refused the sample.
//
// The set is judged step by step (ruleSet.decide), which names the part
// of the verdict rule that decides, and without a span per step: the
// analysis is one span, and the error is the rule's, as the whole set
// gives it, not a *tai.PolicyError that would read as a prerequisite's
// where the prerequisites' lookup judges the region's health.
func judgeReading(ctx context.Context, rs *ruleSet[HealthReading], sample fleet.Sample, limits map[string]any) (judgement, error) {
	d, err := rs.decide(tai.ContextWithTracer(ctx, nil), tai.Signal[HealthReading]{Kind: "analysis", Time: sample.Time, Payload: HealthReading{
		Requests: sample.Requests, ErrorRate: sample.ErrorRate, P99Ms: float64(sample.P99) / float64(time.Millisecond),
		CPU: sample.CPU, Memory: sample.Memory, limits: limits,
	}})
	if pe, ok := err.(*tai.PolicyError); ok {
		err = pe.Err
	}
	if err != nil {
		return judgement{}, err
	}
	j := judgement{passed: d.Verdict == tai.Allow, checks: rs.parts}
	if j.passed {
		return j, nil
	}
	reasons := make([]string, 0, len(d.Contributions))
	for _, c := range d.Contributions {
		reasons = append(reasons, c.Reason)
		if part := partOf(c.Rule); !slices.Contains(j.failed, part) {
			j.failed = append(j.failed, part)
		}
	}
	j.reason = strings.Join(reasons, "; ")
	if len(reasons) == 0 { // a verdict rule refused it: the step is its part
		j.reason = d.Reason
		j.failed = []string{d.Policy}
	}
	return j, nil
}
