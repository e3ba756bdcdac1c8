package kanban

import "sync/atomic"

// Stats counts what a queue has done since it was created. The counts
// cover this process only; InFlight is a gauge, the others only grow.
type Stats struct {
	Published    int64 // messages stored (duplicates not counted)
	Duplicates   int64 // publishes dropped as duplicates of a stored ID
	Handled      int64 // messages the handler finished without error
	Retried      int64 // failed attempts that were scheduled again
	DeadLettered int64 // messages sent to the dead letters
	InFlight     int64 // messages pulled and not yet settled
}

// Counters is the live, concurrency-safe form of Stats that backends
// update. Metrics collectors read it through the queue's Stats method. The
// zero value is ready to use.
type Counters struct {
	// Publishers and consumers run on different cores: keep their
	// counters on separate cache lines, away from what is next to the
	// Counters, so they do not slow each other.
	_                     [64]byte
	published, duplicates atomic.Int64
	_                     [64]byte
	handled, inFlight     atomic.Int64
	_                     [64]byte
	retried, deadLettered atomic.Int64
	_                     [64]byte
}

// Snapshot returns the current counts.
func (c *Counters) Snapshot() Stats {
	return Stats{
		Published:    c.published.Load(),
		Duplicates:   c.duplicates.Load(),
		Handled:      c.handled.Load(),
		Retried:      c.retried.Load(),
		DeadLettered: c.deadLettered.Load(),
		InFlight:     c.inFlight.Load(),
	}
}

// AddPublished counts n stored messages.
func (c *Counters) AddPublished(n int64) { c.published.Add(n) }

// AddDuplicates counts n publishes dropped as duplicates.
func (c *Counters) AddDuplicates(n int64) { c.duplicates.Add(n) }

func (c *Counters) addHandled()      { c.handled.Add(1) }
func (c *Counters) addRetried()      { c.retried.Add(1) }
func (c *Counters) addDeadLettered() { c.deadLettered.Add(1) }
func (c *Counters) addInFlight(n int64) {
	c.inFlight.Add(n)
}
