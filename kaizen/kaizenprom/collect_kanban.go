package kaizenprom

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/taipattern/taikit/kanban"
)

// Queue is what KanbanCollector reads of a queue: every kanban.Queue has
// it, whatever its payload type. A queue that also has a Len() int method
// (the memory queue) has its depth exported too.
type Queue interface {
	Stats() kanban.QueueStats
}

// KanbanCollector exports the counts of kanban queues, read at every
// scrape. With namespace "taikit":
//
//	taikit_queue_published_total{queue}      counter, messages stored
//	taikit_queue_duplicates_total{queue}     counter, publishes dropped as duplicates
//	taikit_queue_handled_total{queue}        counter, messages handled without error
//	taikit_queue_retried_total{queue}        counter, failed attempts scheduled again
//	taikit_queue_dead_lettered_total{queue}  counter, messages sent to the dead letters
//	taikit_queue_in_flight{queue}            gauge, messages pulled and not yet settled
//	taikit_queue_depth{queue}                gauge, messages waiting (queues with a Len method)
//
// The counts are those of this process's queue value (its Stats).
type KanbanCollector struct {
	*families
	published, duplicates, handled, retried, dead, inFlight, depth *prometheus.Desc

	queues sources[Queue]
}

// NewKanbanCollector creates a KanbanCollector and registers it with reg.
// A nil reg is an error. When reg already holds one with the same
// options, that one is returned.
func NewKanbanCollector(reg prometheus.Registerer, opts CollectorOptions) (*KanbanCollector, error) {
	f, err := newFamilies(reg, opts, "NewKanbanCollector")
	if err != nil {
		return nil, err
	}
	return register(reg, &KanbanCollector{
		families:   f,
		published:  f.desc("queue_published_total", "Messages stored by the queue (duplicates not counted).", "queue"),
		duplicates: f.desc("queue_duplicates_total", "Publishes dropped as duplicates of a stored message ID.", "queue"),
		handled:    f.desc("queue_handled_total", "Messages the handler finished without error.", "queue"),
		retried:    f.desc("queue_retried_total", "Failed attempts that were scheduled again.", "queue"),
		dead:       f.desc("queue_dead_lettered_total", "Messages sent to the dead letters.", "queue"),
		inFlight:   f.desc("queue_in_flight", "Messages pulled and not yet settled.", "queue"),
		depth:      f.desc("queue_depth", "Messages waiting in the queue.", "queue"),
	})
}

// AddQueue exports q under name. It returns an error for a nil queue, an
// empty name or a name exported already.
func (c *KanbanCollector) AddQueue(name string, q Queue) error {
	if q == nil {
		return errNil("AddQueue", "queue")
	}
	return c.queues.add("queue", name, q)
}

// Collect reads the stats of every queue.
func (c *KanbanCollector) Collect(ch chan<- prometheus.Metric) {
	for _, q := range c.queues.list() {
		s := q.src.Stats()
		send(ch, c.published, prometheus.CounterValue, float64(s.Published), q.name)
		send(ch, c.duplicates, prometheus.CounterValue, float64(s.Duplicates), q.name)
		send(ch, c.handled, prometheus.CounterValue, float64(s.Handled), q.name)
		send(ch, c.retried, prometheus.CounterValue, float64(s.Retried), q.name)
		send(ch, c.dead, prometheus.CounterValue, float64(s.DeadLettered), q.name)
		send(ch, c.inFlight, prometheus.GaugeValue, float64(s.InFlight), q.name)
		if l, ok := q.src.(interface{ Len() int }); ok {
			send(ch, c.depth, prometheus.GaugeValue, float64(l.Len()), q.name)
		}
	}
}
