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

// commandMarkersAge is how old the marker a dropped command leaves in the
// control bucket is before a sweep removes it (see DropCommandMarkers):
// long past the time a replica's watcher takes to read it, however
// loaded, and still a bound on the bucket, which holds at most an
// hour's markers.
const commandMarkersAge = time.Hour

// sweepCommandMarkers removes the markers of dropped commands older than
// commandMarkersAge (Config.CommandMarkersAge when set) from the control
// bucket. One it cannot remove is left to the next sweep.
func (s *Service) sweepCommandMarkers(ctx context.Context) {
	age := s.cfg.CommandMarkersAge
	if age <= 0 {
		age = commandMarkersAge
	}
	if _, err := s.store.DropCommandMarkers(ctx, age); err != nil && !errors.Is(ctx.Err(), context.Canceled) {
		s.log.Warn("markers of dropped commands not swept", "err", err)
	}
}

// sweep sweeps the regions held, and the markers of dropped commands,
// every interval (sweepEvery when 0), until ctx ends.
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
			s.sweepCommandMarkers(ctx)
		}
	}
}
