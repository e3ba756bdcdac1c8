package main

import (
	"context"
	"errors"
	"time"
)

// sweepEvery is how often each replica sweeps the regions held (see
// sweepRegions), after the sweep of its start.
const sweepEvery = time.Minute

// sweepRegions frees every region held by a stale deployment, as
// lockRegions frees the one a deployment asks for: one that has ended,
// one never stored whose lock is over startingFor old, one stored whose
// start was cut off before its first region was queued (over
// queuedWithin ago) or whose job was dead-lettered; the last two end
// FAILED (endCutOffStart). Without it, such a deployment would stay in
// progress, holding its regions, until another deployment asked for one
// of them. Every replica sweeps; two that judge the same holder at once
// write its end over the same revision, and one of them is refused.
// A region that cannot be judged (the store or the queue out of reach)
// is left to the next sweep.
func (s *Service) sweepRegions(ctx context.Context) {
	// Stopping, the service says nothing: the next start sweeps.
	stopping := func() bool { return errors.Is(ctx.Err(), context.Canceled) }
	locks, err := s.store.Locks(ctx)
	if err != nil {
		if !stopping() {
			s.log.Warn("region locks not swept", "err", err)
		}
		return
	}
	for _, l := range locks {
		if ctx.Err() != nil {
			if !stopping() {
				s.log.Warn("region locks swept in part; the next sweep goes on", "err", ctx.Err())
			}
			return
		}
		if _, err := s.releaseStale(ctx, l.Service, l.Region, l.Holder, l.Held); err != nil && !stopping() {
			s.log.Warn("stale region lock not released", "deployment_id", l.Holder, "region", l.Region, "err", err)
		}
	}
}

// sweep sweeps the regions held every interval (sweepEvery when 0),
// until ctx ends.
func (s *Service) sweep(ctx context.Context, interval time.Duration) {
	if interval <= 0 {
		interval = sweepEvery
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.sweepRegions(ctx)
		}
	}
}
