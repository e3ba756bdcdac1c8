package kanban

import (
	"sync"
	"sync/atomic"
)

// QueueStats counts what a queue has done since it was created. The
// counts cover this process only; InFlight is a gauge, the others only
// grow.
type QueueStats struct {
	Published  int64 // messages stored (duplicates not counted)
	Duplicates int64 // publishes dropped as duplicates of a stored ID
	Handled    int64 // messages the handler finished without error
	Retried    int64 // failed attempts that were scheduled again
	// Redelivered counts handler attempts after a message's first: those
	// of retries, and on JetStream those of messages delivered again after
	// a lost acknowledgement, a crash or a drain.
	Redelivered  int64
	DeadLettered int64 // messages sent to the dead letters
	Redriven     int64 // dead letters published back to the queue
	// InFlight is the messages pulled and not yet settled, at most WIP per
	// consumer. The in-memory queue's workers may take a few messages
	// ahead of their handler (see Memory.Consume): those count once their
	// handler starts.
	InFlight int64
}

// Counters is the live, concurrency-safe form of QueueStats that backends
// update. Metrics collectors read it through the queue's Stats method. The
// zero value is ready to use.
//
// The consumer-side counts are kept in cells: the pull loop uses a shared
// one, and each worker consuming an in-memory queue its own, on its own
// cache line, so that workers on different cores never write to one line
// per message. Snapshot adds the cells up; a worker's cell is folded into
// the shared one when the worker ends.
type Counters struct {
	// Publishers and consumers run on different cores: keep their
	// counters on separate cache lines, away from what is next to the
	// Counters, so they do not slow each other.
	_                     [64]byte
	published, duplicates atomic.Int64
	redriven              atomic.Int64
	_                     [64]byte
	base                  counterCell
	_                     [64]byte
	mu                    sync.Mutex
	cells                 map[*counterCell]struct{} // workers' cells, live
}

// counterCell holds consumer-side counts. Sized to a cache line, so that
// cells allocated on their own never share one.
type counterCell struct {
	handled, inFlight, retried, deadLettered, redelivered atomic.Int64
	_                                                     [24]byte
}

// Snapshot returns the current counts.
func (c *Counters) Snapshot() QueueStats {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := QueueStats{
		Published:    c.published.Load(),
		Duplicates:   c.duplicates.Load(),
		Handled:      c.base.handled.Load(),
		Retried:      c.base.retried.Load(),
		Redelivered:  c.base.redelivered.Load(),
		DeadLettered: c.base.deadLettered.Load(),
		Redriven:     c.redriven.Load(),
		InFlight:     c.base.inFlight.Load(),
	}
	for cell := range c.cells {
		s.Handled += cell.handled.Load()
		s.Retried += cell.retried.Load()
		s.DeadLettered += cell.deadLettered.Load()
		s.Redelivered += cell.redelivered.Load()
		s.InFlight += cell.inFlight.Load()
	}
	return s
}

// AddPublished counts n stored messages.
func (c *Counters) AddPublished(n int64) { c.published.Add(n) }

// AddDuplicates counts n publishes dropped as duplicates.
func (c *Counters) AddDuplicates(n int64) { c.duplicates.Add(n) }

// AddRedriven counts n dead letters published back to the queue.
func (c *Counters) AddRedriven(n int64) { c.redriven.Add(n) }

// newCell returns a cell of c for one worker; dropCell must follow.
func (c *Counters) newCell() *counterCell {
	cell := new(counterCell)
	c.mu.Lock()
	if c.cells == nil {
		c.cells = make(map[*counterCell]struct{})
	}
	c.cells[cell] = struct{}{}
	c.mu.Unlock()
	return cell
}

// dropCell folds a worker's cell into the shared counts once the worker
// has stopped writing to it. Under c.mu, so that Snapshot counts it
// exactly once.
func (c *Counters) dropCell(cell *counterCell) {
	c.mu.Lock()
	c.base.handled.Add(cell.handled.Load())
	c.base.retried.Add(cell.retried.Load())
	c.base.deadLettered.Add(cell.deadLettered.Load())
	c.base.redelivered.Add(cell.redelivered.Load())
	c.base.inFlight.Add(cell.inFlight.Load())
	delete(c.cells, cell)
	c.mu.Unlock()
}

func (c *counterCell) addHandled()         { c.handled.Add(1) }
func (c *counterCell) addRetried()         { c.retried.Add(1) }
func (c *counterCell) addDeadLettered()    { c.deadLettered.Add(1) }
func (c *counterCell) addRedelivered()     { c.redelivered.Add(1) }
func (c *counterCell) addInFlight(n int64) { c.inFlight.Add(n) }
