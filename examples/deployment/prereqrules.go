package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"cel.dev/cel-go/cel"
	"cel.dev/cel-go/ext"

	"github.com/taipattern/taikit/examples/deployment/internal/fleet"
	"github.com/taipattern/taikit/tai"
	"github.com/taipattern/taikit/tai/taicel"
)

// RegionRequest is a deployment in one region as the prerequisite rules
// (rules/prerequisites.yaml) read it: payload.Service, payload.Version,
// payload.Region, payload.FirstDeploy.
type RegionRequest struct {
	Service     string
	Version     string
	Region      string
	FirstDeploy bool

	// facts holds what the lookup found, for the rest of the evaluation:
	// each step of the rule set asks again.
	facts *regionFacts
}

// regionFacts are the variables of one evaluation, looked up once.
type regionFacts struct {
	r    *rollout
	vars map[string]any
}

// prerequisiteVars are the variables a prerequisite rule reads besides
// the payload and the signal's time; rules/prerequisites.yaml says what
// each means.
var prerequisiteVars = map[string]*cel.Type{
	"image_exists":         cel.BoolType,
	"region_known":         cel.BoolType,
	"region_capacity":      cel.IntType,
	"region_used":          cel.IntType,
	"instances_needed":     cel.IntType,
	"stable":               cel.StringType,
	"freeze_windows":       cel.ListType(cel.MapType(cel.StringType, cel.StringType)),
	"region_healthy":       cel.BoolType,
	"region_health_reason": cel.StringType,
}

// newPrerequisiteEnv is the environment prerequisite rule files compile
// in, with lookup finding the variables of a deployment in a region.
func newPrerequisiteEnv(lookup func(context.Context, tai.Signal[RegionRequest]) (map[string]any, error)) (*taicel.Env[RegionRequest], error) {
	return taicel.NewEnv(taicel.Options[RegionRequest]{
		Vars:       prerequisiteVars,
		Lookup:     lookup,
		EnvOptions: []cel.EnvOption{ext.Math()},
		// Each decision carries what it was made on (in the audit
		// trail), so that a change to the file can be backtested.
		RecordInputs: true,
	})
}

// prerequisiteLookup reads what the Go rules read, once per region
// rollout: the catalog, the versions serving in the region (for the
// capacity), the version serving there (the rollback plan, which the
// rollout then takes), the freeze windows, and the analysis of the version
// serving (the region's health: healthy on a sample with no data, or on
// fewer than -min-requests requests, as for the Go rule). Unlike the Go
// rules, which stop at the first refusal, it reads them all; a store or
// health source that fails fails the evaluation, as it fails the Go rule
// that reads it.
func (s *Service) prerequisiteLookup(ctx context.Context, sig tai.Signal[RegionRequest]) (map[string]any, error) {
	f := sig.Payload.facts
	if f == nil || f.r == nil {
		return nil, errors.New("prerequisites: the signal has no rollout")
	}
	if f.vars != nil {
		return f.vars, nil
	}
	r := f.r
	reg, known := s.catalog.Region(r.region)
	used := 0
	if known {
		for key := range s.stableSnapshot() {
			svc, region, _ := strings.Cut(key, ".")
			if region == r.region {
				used += s.catalog.Instances(svc)
			}
		}
	}
	stable, err := s.versions.Stable(ctx, r.service, r.region)
	if err != nil {
		return nil, err
	}
	healthy, why := true, ""
	if stable != "" {
		sample, err := s.health.Sample(ctx, r.service, r.region, stable, s.sampleWindow(0))
		switch {
		case errors.Is(err, fleet.ErrNoData):
		case errors.Is(err, fleet.ErrNotAMeasurement):
			healthy, why = false, err.Error()
		case err != nil:
			return nil, fmt.Errorf("health of %s %s in %s: %w", r.service, stable, r.region, err)
		case invalidRequests(sample) != "":
			healthy, why = false, invalidRequests(sample)
		case s.tooFewRequests(sample): // inconclusive, as no data is
		default:
			j, err := s.analyze(ctx, sample, r)
			if err != nil {
				return nil, fmt.Errorf("health of %s %s in %s: %w", r.service, stable, r.region, err)
			}
			healthy, why = j.passed, j.reason
		}
	}
	r.stable = stable
	f.vars = map[string]any{
		"image_exists":         s.catalog.HasImage(r.service, r.version),
		"region_known":         known,
		"region_capacity":      int64(reg.Capacity),
		"region_used":          int64(used),
		"instances_needed":     int64(s.catalog.Instances(r.service)),
		"stable":               stable,
		"freeze_windows":       s.freezeWindows,
		"region_healthy":       healthy,
		"region_health_reason": why,
	}
	return f.vars, nil
}

// freezeVar is the freeze windows as the rules read them: each bound in
// RFC 3339 with nanoseconds, which timestamp() reads back exactly. Text,
// not timestamps: a decision's recorded inputs keep the values inside a
// list as JSON has them, and a backtest must read them as the service
// did.
func freezeVar(ws []Window) []map[string]string {
	out := make([]map[string]string, len(ws))
	for i, w := range ws {
		out[i] = map[string]string{"from": w.From.Format(time.RFC3339Nano), "to": w.To.Format(time.RFC3339Nano)}
	}
	return out
}

// ruledPrerequisites is the prerequisites as the rule file in force
// decides them: a tai.Policy of the rollout, whose decisions name the
// prerequisite that refused, as the Go rules' do.
type ruledPrerequisites struct {
	rules *ruleFile[RegionRequest]
}

// Name is the policy's name in spans.
func (p ruledPrerequisites) Name() string { return "prerequisites" }

// Evaluate judges the rollout with the rule set in force, at the time of
// the signal (now when it has none).
func (p ruledPrerequisites) Evaluate(ctx context.Context, sig tai.Signal[*rollout]) (tai.Decision, error) {
	r := sig.Payload
	at := sig.Time
	if at.IsZero() {
		at = time.Now()
	}
	return p.rules.current().decide(ctx, tai.Signal[RegionRequest]{
		ID: sig.ID, Kind: sig.Kind, Key: sig.Key, Time: at,
		Payload: RegionRequest{Service: r.service, Version: r.version, Region: r.region, FirstDeploy: r.firstDeploy, facts: &regionFacts{r: r}},
	})
}
