package main

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/taipattern/taikit/examples/deployment/internal/analysis"
	"github.com/taipattern/taikit/examples/deployment/internal/fleet"
	"github.com/taipattern/taikit/tai"
)

// prerequisites is the policy a deployment passes in each region before
// any traffic moves: the "validation" stage. Each check is a named policy
// whose denial reason the API answers with.
func (s *Service) prerequisites() tai.Policy[*rollout] {
	return tai.All(
		tai.Named[*rollout]("image_exists", tai.PolicyFunc[*rollout](s.imageExists)),
		tai.Named[*rollout]("region_capacity", tai.PolicyFunc[*rollout](s.regionCapacity)),
		tai.Named[*rollout]("rollback_plan", tai.PolicyFunc[*rollout](s.rollbackPlan)),
		tai.Named[*rollout]("change_freeze", tai.PolicyFunc[*rollout](s.changeFreeze)),
		tai.Named[*rollout]("region_health", tai.PolicyFunc[*rollout](s.regionHealth)),
	)
}

func allow() (tai.Decision, error) { return tai.Decision{Verdict: tai.Allow}, nil }

func deny(format string, args ...any) (tai.Decision, error) {
	return tai.Decision{Verdict: tai.Deny, Reason: fmt.Sprintf(format, args...)}, nil
}

// imageExists: the registry (the catalog) has the version.
func (s *Service) imageExists(_ context.Context, sig tai.Signal[*rollout]) (tai.Decision, error) {
	r := sig.Payload
	if !s.catalog.HasImage(r.service, r.version) {
		return deny("Image not found: %s/%s", r.service, r.version)
	}
	return allow()
}

// regionCapacity: the region is known and has room for the new version's
// instances beside what runs there. The model is deterministic: every
// service serving in the region takes its instance count, and a rollout
// needs its own count on top until the old version is retired.
func (s *Service) regionCapacity(_ context.Context, sig tai.Signal[*rollout]) (tai.Decision, error) {
	r := sig.Payload
	reg, ok := s.catalog.Region(r.region)
	if !ok {
		return deny("Unknown region: %s", r.region)
	}
	used := 0
	for key := range s.stableSnapshot() {
		svc, region, _ := strings.Cut(key, ".")
		if region == r.region {
			used += s.catalog.Instances(svc)
		}
	}
	need := s.catalog.Instances(r.service)
	if used+need > reg.Capacity {
		return deny("Insufficient capacity in %s: %d instances needed, %d free of %d", r.region, need, max(reg.Capacity-used, 0), reg.Capacity)
	}
	return allow()
}

// rollbackPlan: there is a version to return to, or the request says this
// is a first deployment. Deploying the version already serving is refused
// too: there would be nothing to roll out.
func (s *Service) rollbackPlan(ctx context.Context, sig tai.Signal[*rollout]) (tai.Decision, error) {
	r := sig.Payload
	stable, err := s.versions.Stable(ctx, r.service, r.region)
	if err != nil {
		return tai.Decision{}, err
	}
	switch {
	case stable == r.version:
		return deny("%s %s already serves in %s", r.service, r.version, r.region)
	case stable == "" && !r.firstDeploy:
		return deny("No rollback plan: no version of %s serves in %s (set first_deploy to deploy one)", r.service, r.region)
	}
	r.stable = stable
	return allow()
}

// changeFreeze: no deployment starts inside a freeze window.
func (s *Service) changeFreeze(_ context.Context, _ tai.Signal[*rollout]) (tai.Decision, error) {
	now := time.Now()
	for _, w := range s.cfg.Freeze {
		if w.Contains(now) {
			return deny("Change freeze until %s", w.To.UTC().Format(time.RFC3339))
		}
	}
	return allow()
}

// regionHealth: the version serving in the region is within its SLO now;
// a region already burning its error budget gets no change on top. A
// reading with no data, or on fewer than -min-requests requests, is
// inconclusive, as it is in a rollout's analysis, and refuses nothing; one
// whose request count cannot be one refuses, as a reading that cannot be a
// measurement does (the simulated fleet's NaN, or the source's
// fleet.ErrNotAMeasurement).
func (s *Service) regionHealth(ctx context.Context, sig tai.Signal[*rollout]) (tai.Decision, error) {
	r := sig.Payload
	if r.stable == "" {
		return allow()
	}
	sample, err := s.health.Sample(ctx, r.service, r.region, r.stable, s.sampleWindow(0))
	if err == nil {
		if why := invalidRequests(sample); why != "" {
			return deny("Region %s unhealthy before the change (%s %s): %s", r.region, r.service, r.stable, why)
		}
	}
	if errors.Is(err, fleet.ErrNotAMeasurement) {
		return deny("Region %s unhealthy before the change (%s %s): %v", r.region, r.service, r.stable, err)
	}
	if errors.Is(err, fleet.ErrNoData) || err == nil && s.tooFewRequests(sample) {
		return allow()
	}
	if err != nil {
		return tai.Decision{}, fmt.Errorf("health of %s %s in %s: %w", r.service, r.stable, r.region, err)
	}
	if v := analysis.Evaluate(sample, r.thresholds); !v.Passed {
		return deny("Region %s unhealthy before the change (%s %s): %s", r.region, r.service, r.stable, v.Reason())
	}
	return allow()
}

// invalidRequests is why a health sample's request count cannot be a
// count (NaN or negative), or "" when it can: such a sample fails, as a
// reading that cannot be a measurement does, rather than count as enough
// requests (NaN compares false with -min-requests) or as too few. +Inf
// (a source whose count overflowed) is more than enough, and the sample is
// judged on its other readings.
func invalidRequests(sample fleet.Sample) string {
	if sample.Requests >= 0 {
		return ""
	}
	return "Requests " + strconv.FormatFloat(sample.Requests, 'g', -1, 64) + " is not a valid reading"
}

// tooFewRequests reports whether a health sample rests on fewer requests
// than -min-requests: inconclusive, as a sample with no data is.
func (s *Service) tooFewRequests(sample fleet.Sample) bool {
	return sample.Requests < s.cfg.MinRequests
}
