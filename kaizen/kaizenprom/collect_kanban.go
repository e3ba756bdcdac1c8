package kaizen

import (
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/taipattern/taikit/kanban"
)

// QueueStats is what KanbanCollector reads of a queue: every kanban.Queue
// has it, whatever its payload type.
type QueueStats interface {
	Stats() kanban.Stats
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
// The counts are those of this process's queue value (kanban.Stats).
type KanbanCollector struct {
	published, duplicates, handled, retried, dead, inFlight, depth *prometheus.Desc

	mu     sync.Mutex
	queues []namedQueue
}

type namedQueue struct {
	name string
	q    QueueStats
}

// NewKanbanCollector creates a KanbanCollector and registers it with reg.
// A nil reg is an error. When reg already holds one with the same
// options, that one is returned.
func NewKanbanCollector(reg prometheus.Registerer, opts CollectorOptions) (*KanbanCollector, error) {
	const who = "NewKanbanCollector"
	if err := checkRegisterer(reg, who); err != nil {
		return nil, err
	}
	ns, err := opts.namespace(who)
	if err != nil {
		return nil, err
	}
	c := &KanbanCollector{
		published:  opts.desc(ns, "queue_published_total", "Messages stored by the queue (duplicates not counted).", "queue"),
		duplicates: opts.desc(ns, "queue_duplicates_total", "Publishes dropped as duplicates of a stored message ID.", "queue"),
		handled:    opts.desc(ns, "queue_handled_total", "Messages the handler finished without error.", "queue"),
		retried:    opts.desc(ns, "queue_retried_total", "Failed attempts that were scheduled again.", "queue"),
		dead:       opts.desc(ns, "queue_dead_lettered_total", "Messages sent to the dead letters.", "queue"),
		inFlight:   opts.desc(ns, "queue_in_flight", "Messages pulled and not yet settled.", "queue"),
		depth:      opts.desc(ns, "queue_depth", "Messages waiting in the queue.", "queue"),
	}
	return register(reg, c)
}

// AddQueue exports q under name. It returns an error for a nil queue, an
// empty name or a name exported already.
func (c *KanbanCollector) AddQueue(name string, q QueueStats) error {
	if q == nil {
		return errors.New("kaizen: AddQueue: nil queue")
	}
	if name == "" {
		return errors.New("kaizen: AddQueue: empty queue name")
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if slices.ContainsFunc(c.queues, func(x namedQueue) bool { return x.name == name }) {
		return fmt.Errorf("kaizen: a queue named %q is collected already", name)
	}
	c.queues = append(c.queues, namedQueue{name: name, q: q})
	return nil
}

// Describe sends the descriptors of every metric.
func (c *KanbanCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.published, c.duplicates, c.handled, c.retried, c.dead, c.inFlight, c.depth} {
		ch <- d
	}
}

// Collect reads the stats of every queue.
func (c *KanbanCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	queues := slices.Clone(c.queues)
	c.mu.Unlock()
	for _, nq := range queues {
		s := nq.q.Stats()
		send(ch, c.published, prometheus.CounterValue, float64(s.Published), nq.name)
		send(ch, c.duplicates, prometheus.CounterValue, float64(s.Duplicates), nq.name)
		send(ch, c.handled, prometheus.CounterValue, float64(s.Handled), nq.name)
		send(ch, c.retried, prometheus.CounterValue, float64(s.Retried), nq.name)
		send(ch, c.dead, prometheus.CounterValue, float64(s.DeadLettered), nq.name)
		send(ch, c.inFlight, prometheus.GaugeValue, float64(s.InFlight), nq.name)
		if l, ok := nq.q.(interface{ Len() int }); ok {
			send(ch, c.depth, prometheus.GaugeValue, float64(l.Len()), nq.name)
		}
	}
}
