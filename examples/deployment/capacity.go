package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"strings"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/taipattern/taikit/tai"
)

// Capacity reservations. The prerequisites judge a region's capacity on
// the versions serving there; a rollout needs its new version's instances
// beside them until it ends, and two rollouts of different services in
// the same region run at once (the queue takes one at a time per
// service/region only). Each region rollout that passes its
// prerequisites therefore reserves its instances in the region, in one
// key of the deploy_capacity bucket per region written over the revision
// read: of two rollouts that check the same room at once, the second
// write is refused, reads the first's reservation and is judged again.
//
// A reservation counts while its region of its deployment is pending or
// in progress in the deployment's record. The run that ends the region
// releases it; one it could not release (the process killed, the store out
// of reach) stops counting once the region's end is stored — by the run's
// next attempt, the restart's rollback, a give-up or a sweep — and is
// dropped at the region's next reservation. A crash leaks nothing.

// Reservation is a region rollout's hold on its region's capacity.
type Reservation struct {
	Service   string `json:"service"`
	Instances int    `json:"instances"`
}

// Reservations returns the reservations held in region by deployment ID,
// and the revision of the key they were read at (0 when none was ever
// written).
func (s *Store) Reservations(ctx context.Context, region string) (map[string]Reservation, uint64, error) {
	e, err := s.capacity.Get(ctx, region)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return map[string]Reservation{}, 0, nil
	}
	if err != nil {
		return nil, 0, err
	}
	held := map[string]Reservation{}
	if e.Operation() == jetstream.KeyValuePut {
		if err := json.Unmarshal(e.Value(), &held); err != nil {
			return nil, 0, fmt.Errorf("capacity reservations of region %s: %w", region, err)
		}
	}
	return held, e.Revision(), nil
}

// PutReservations stores the reservations held in region over rev, the
// revision they were read at; a write after another since is refused
// with a conflict (isConflict).
func (s *Store) PutReservations(ctx context.Context, region string, held map[string]Reservation, rev uint64) error {
	b, err := json.Marshal(held)
	if err != nil {
		return err
	}
	if rev == 0 {
		_, err = s.capacity.Create(ctx, region, b)
	} else {
		_, err = s.capacity.Update(ctx, region, b, rev)
	}
	return err
}

// capacityReserved is the prerequisites with the region's capacity
// reserved once they let a rollout through: a rollout that no longer
// fits beside the others in progress in the region is refused by
// region_capacity, as one that does not fit beside the versions serving
// is.
type capacityReserved struct {
	s     *Service
	inner tai.Policy[*rollout]
}

// Name is the policy's name in spans: the prerequisites'.
func (p capacityReserved) Name() string {
	if n, ok := p.inner.(interface{ Name() string }); ok {
		return n.Name()
	}
	return "prerequisites"
}

// Evaluate judges the rollout with the prerequisites, then reserves its
// instances in its region.
func (p capacityReserved) Evaluate(ctx context.Context, sig tai.Signal[*rollout]) (tai.Decision, error) {
	d, err := p.inner.Evaluate(ctx, sig)
	if err != nil || d.Verdict != tai.Allow {
		return d, err
	}
	r := sig.Payload
	ok, free, capacity, err := p.s.reserveCapacity(ctx, r)
	if err != nil {
		return tai.Decision{}, &tai.PolicyError{Policy: "region_capacity", Err: fmt.Errorf("capacity of region %s: %w", r.region, err)}
	}
	if !ok {
		return tai.Decision{Verdict: tai.Deny, Policy: "region_capacity", Reason: fmt.Sprintf("Insufficient capacity in %s: %d instances needed, %d free of %d", r.region, p.s.catalog.Instances(r.service), free, capacity)}, nil
	}
	return d, nil
}

// reserveCapacity reserves r's instances in its region if they fit beside
// the versions serving there and the rollouts in progress, and reports
// whether they did, with the instances free and the region's capacity.
// A reservation of r's deployment held already (an earlier attempt of its
// job) is taken again.
func (s *Service) reserveCapacity(ctx context.Context, r *rollout) (ok bool, free, capacity int, err error) {
	reg, known := s.catalog.Region(r.region)
	if !known {
		return true, 0, 0, nil // refused by the prerequisites
	}
	need := s.catalog.Instances(r.service)
	for {
		held, rev, err := s.store.Reservations(ctx, r.region)
		if err != nil {
			return false, 0, 0, err
		}
		used := 0
		for key := range s.stableSnapshot() {
			svc, region, _ := strings.Cut(key, ".")
			if region == r.region {
				used += s.catalog.Instances(svc)
			}
		}
		live := make(map[string]Reservation, len(held)+1)
		for id, res := range held {
			if id == r.d.ID {
				continue
			}
			counts, err := s.reservationCounts(ctx, id, r.region)
			if err != nil {
				return false, 0, 0, err
			}
			if counts {
				live[id] = res
				used += res.Instances
			}
		}
		if used+need > reg.Capacity {
			return false, max(reg.Capacity-used, 0), reg.Capacity, nil
		}
		live[r.d.ID] = Reservation{Service: r.service, Instances: need}
		err = s.store.PutReservations(ctx, r.region, live, rev)
		if isConflict(err) {
			continue // another reservation since: judged again
		}
		return err == nil, 0, reg.Capacity, err
	}
}

// reservationCounts reports whether deployment id's reservation in region
// still counts: the region is pending or in progress in its record.
func (s *Service) reservationCounts(ctx context.Context, id, region string) (bool, error) {
	d, _, err := s.store.Get(ctx, id)
	if errors.Is(err, ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	for _, rr := range d.Results {
		if rr.Region == region {
			return !terminal(rr.Status), nil
		}
	}
	return false, nil
}

// releaseCapacity gives back r's reservation in its region, whose
// rollout has ended. One not released is dropped at the region's next
// reservation (see reserveCapacity), so a failure is logged only.
func (s *Service) releaseCapacity(ctx context.Context, r *rollout) {
	ctx = context.WithoutCancel(ctx)
	for {
		held, rev, err := s.store.Reservations(ctx, r.region)
		if err == nil {
			if _, ok := held[r.d.ID]; !ok {
				return
			}
			rest := maps.Clone(held)
			delete(rest, r.d.ID)
			err = s.store.PutReservations(ctx, r.region, rest, rev)
			if isConflict(err) {
				continue
			}
		}
		if err != nil {
			s.log.Warn("capacity reservation not released; the region's next reservation drops it", "deployment_id", r.d.ID, "region", r.region, "err", err)
		}
		return
	}
}
