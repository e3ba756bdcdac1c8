package kaizenprom

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/taipattern/taikit/internal/typednil"
	"github.com/taipattern/taikit/kanban"
)

// Queue is what KanbanCollector reads of a queue: every kanban.Queue has
// it, whatever its payload type. A queue that is also a
// kanban.BacklogReader (kanban.Memory, natsjs.Queue) has its depth, the
// age of its oldest message and its dead letters exported too; one with
// only a Len() int method, its depth.
type Queue interface {
	Stats() kanban.QueueStats
}

// BacklogTimeout bounds the reading of the queues' Backlogs at a scrape
// (they are read at once, and a read not back by then has failed); for
// natsjs each is three or four requests to the server.
const BacklogTimeout = 5 * time.Second

// HandlerBuckets are the bounds, in seconds, of the handler duration
// histogram: from half a millisecond to a minute. NewKanbanCollector
// copies them, so a change (setting other bounds before it, or slicing
// and appending to them) never moves the bounds of a collector made
// already; bounds that are not positive, finite and strictly increasing
// are its error.
var HandlerBuckets = []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60}

// KanbanCollector exports the counts and the backlog of kanban queues,
// read at every scrape, and the duration of their handlers. With
// namespace "taikit", every series labelled with the queue's name alone:
//
//	taikit_queue_published_total            counter, messages stored
//	taikit_queue_duplicates_total           counter, publishes dropped as duplicates
//	taikit_queue_handled_total              counter, messages handled without error
//	taikit_queue_retried_total              counter, failed attempts scheduled again
//	taikit_queue_redelivered_total          counter, handler attempts after a message's first
//	taikit_queue_dead_lettered_total        counter, messages sent to the dead letters
//	taikit_queue_redriven_total             counter, dead letters published back to the queue
//	taikit_queue_in_flight                  gauge, messages pulled and not yet settled
//	taikit_queue_depth                      gauge, messages held: waiting, in flight, waiting for a retry
//	taikit_queue_oldest_age_seconds         gauge, age of the oldest waiting message
//	taikit_queue_dead_letters               gauge, dead letters kept now
//	taikit_queue_backlog_up                 gauge, 1 if the last read of the backlog succeeded
//	taikit_queue_handler_duration_seconds   histogram, each handler attempt (HandlerObserver)
//
// The counters are those of this process's queue value (its Stats): a
// queue shared by processes (natsjs) is summed across them by the query.
// The depth, oldest age and dead letters are the queue's own state (its
// Backlog), the same from every process: take one process's (max, not
// sum). A read of it that fails sets backlog_up to 0 and leaves the three
// out of that scrape rather than report a made-up value: one that returns
// an error, or does not return within BacklogTimeout, or panics (see
// Collect). What "oldest"
// means, and whether it is known, depends on the backend (see
// kanban.Memory.Backlog and natsjs.Queue.Backlog); where it is not known
// the series is absent. A queue with a Len method and no Backlog exports
// its depth alone.
//
// Make a KanbanCollector with NewKanbanCollector. The zero
// KanbanCollector has no metrics: its AddQueue and HandlerObserver return
// an error saying so, and registered, it exports nothing.
type KanbanCollector struct {
	*families
	published, duplicates, handled, retried, redelivered, dead, redriven, inFlight *prometheus.Desc
	depth, oldest, deadLetters, backlogUp                                          *prometheus.Desc

	// handlers serializes HandlerObserver and RemoveQueue, so that a
	// handler series is never made for a queue as it is being removed.
	handlers  sync.Mutex
	durations *prometheus.HistogramVec
	queues    sources[*queueSource]
	reads     backlogReads
}

// queueSource is a queue the collector reads.
type queueSource struct {
	q Queue
	// key identifies the queue among the collector's reads: the queue
	// value itself, so that it is read once however many names it has or
	// however often it is added again, or the source when the value
	// cannot be compared.
	key   any
	reads *backlogReads
}

// backlogReads are a collector's reads of Backlogs that have not
// returned, by queue: no other read of a queue is started until its read
// does. A scrape that meets a read in time waits for it, as the scrape
// that started it does.
type backlogReads struct {
	mu    sync.Mutex
	calls map[any]*backlogCall
}

// backlogCall is a read of a queue's Backlog, started by one scrape and
// shared by those that meet it in time.
type backlogCall struct {
	// ctx is the context of the read, that of the scrape that started it:
	// the read is late once it ends.
	ctx  context.Context
	done chan struct{} // closed when b and err are set
	b    kanban.Backlog
	err  error
}

// NewKanbanCollector creates a KanbanCollector and registers it with reg.
// A nil reg (or a nil *prometheus.Registry, also one behind
// prometheus.WrapRegistererWith) is an error, and so are a
// constant label "le" and HandlerBuckets that cannot be the bounds of a
// histogram. When reg already holds one with the same options, that one
// is returned, with the bounds it was made with.
func NewKanbanCollector(reg prometheus.Registerer, opts CollectorOptions) (*KanbanCollector, error) {
	f, err := newFamilies(reg, opts, "NewKanbanCollector", "queue")
	if err != nil {
		return nil, err
	}
	if err := checkHistogramLabels("CollectorOptions.ConstLabels", opts.ConstLabels); err != nil {
		return nil, fmt.Errorf("kaizenprom: NewKanbanCollector: %w", err)
	}
	// A copy: client_golang keeps the slice it is given as the bounds of
	// every series it makes, and HandlerBuckets is the program's to change.
	buckets := slices.Clone(HandlerBuckets)
	if err := checkBuckets("HandlerBuckets", buckets); err != nil {
		return nil, fmt.Errorf("kaizenprom: NewKanbanCollector: %w", err)
	}
	return register(reg, &KanbanCollector{
		families:    f,
		published:   f.desc("queue_published_total", "Messages stored by the queue (duplicates not counted).", "queue"),
		duplicates:  f.desc("queue_duplicates_total", "Publishes dropped as duplicates of a stored message ID.", "queue"),
		handled:     f.desc("queue_handled_total", "Messages the handler finished without error.", "queue"),
		retried:     f.desc("queue_retried_total", "Failed attempts that were scheduled again.", "queue"),
		redelivered: f.desc("queue_redelivered_total", "Handler attempts after a message's first delivery.", "queue"),
		dead:        f.desc("queue_dead_lettered_total", "Messages sent to the dead letters.", "queue"),
		redriven:    f.desc("queue_redriven_total", "Dead letters published back to the queue.", "queue"),
		inFlight:    f.desc("queue_in_flight", "Messages pulled and not yet settled.", "queue"),
		depth:       f.desc("queue_depth", "Messages held by the queue: waiting, in flight and waiting for a retry.", "queue"),
		oldest:      f.desc("queue_oldest_age_seconds", "Age of the oldest message waiting, as the backend knows it.", "queue"),
		deadLetters: f.desc("queue_dead_letters", "Dead letters kept now.", "queue"),
		backlogUp:   f.desc("queue_backlog_up", "1 if the last read of the queue's backlog succeeded, else 0.", "queue"),
		durations: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace:   f.namespace,
			Name:        "queue_handler_duration_seconds",
			Help:        "Duration of each handler attempt.",
			ConstLabels: f.labels,
			Buckets:     buckets,
		}, []string{"queue"}),
	})
}

// AddQueue exports q under name. It returns an error for a nil queue
// (nil itself or a nil pointer, such as a *kanban.Memory left unset, which
// would panic at every scrape), an empty name or a name exported already.
func (c *KanbanCollector) AddQueue(name string, q Queue) error {
	if c.families == nil {
		return errNotMade("AddQueue", "KanbanCollector")
	}
	if q == nil || typednil.Holds(q) {
		return errNil("AddQueue", "queue")
	}
	src := &queueSource{q: q, key: q, reads: &c.reads}
	if !reflect.ValueOf(q).Comparable() {
		src.key = src // a map key of it would panic
	}
	return c.queues.add("queue", name, src)
}

// RemoveQueue stops exporting the queue named name: its series, and those
// of its handler durations, leave the next scrape, and the name is free
// for another queue (whose handlers need a new HandlerObserver). It
// reports whether a queue of that name was exported.
func (c *KanbanCollector) RemoveQueue(name string) bool {
	c.handlers.Lock()
	defer c.handlers.Unlock()
	if !c.queues.remove(name) { // none in the zero KanbanCollector
		return false
	}
	c.durations.DeleteLabelValues(name)
	return true
}

// HandlerObserver returns the kanban.HandlerObserver that records the
// durations of the queue name's handler attempts, for
// kanban.ConsumeOptions.Observer. A negative duration is observed as zero.
//
// The queue must be added (AddQueue) under name first: HandlerObserver
// returns an error for a name no queue is exported under (a typo, or a
// queue removed), whose series nothing would remove, and for an empty
// name or one that is not valid UTF-8. An observer taken before its
// queue's RemoveQueue may still be called (by a consumer draining), but
// its observations are no longer exported.
func (c *KanbanCollector) HandlerObserver(name string) (kanban.HandlerObserver, error) {
	if c.families == nil {
		return nil, errNotMade("HandlerObserver", "KanbanCollector")
	}
	if err := checkLabel("queue", name); err != nil {
		return nil, fmt.Errorf("%w (HandlerObserver)", err)
	}
	c.handlers.Lock()
	defer c.handlers.Unlock()
	if !c.queues.has(name) {
		return nil, fmt.Errorf("kaizenprom: HandlerObserver: no queue named %q is collected; add it with AddQueue first", name)
	}
	h := c.durations.WithLabelValues(name)
	return kanban.HandlerObserverFunc(func(d time.Duration, _ error) { h.Observe(seconds(d)) }), nil
}

// Describe sends the descriptors of every metric of the collector.
func (c *KanbanCollector) Describe(ch chan<- *prometheus.Desc) {
	if c.families == nil {
		return
	}
	c.families.Describe(ch)
	c.durations.Describe(ch)
}

// Collect reads the stats and the backlog of every queue. The backlogs are
// read at once, and waited for no longer than BacklogTimeout, so a server
// that does not answer holds a scrape up for BacklogTimeout whatever the
// number of queues on it, and the scrape reports their backlog_up as 0
// within Prometheus' scrape timeout. A read that has not returned by then
// (a backend that does not heed its context), that panics or that calls
// runtime.Goexit has failed; while such a read still runs, later scrapes
// start no other read of that queue, also when it has been removed and
// added again or is added under other names, and report its backlog_up
// as 0. Scrapes at the same time (two Prometheus servers) share a read,
// and so do the names of one queue: one that meets a read another
// started, and that is not late yet, waits for it and reports what it
// returns. A queue is told by its value, so the names and the AddQueue
// calls of one queue share its reads only when that value can be
// compared (a pointer, as *kanban.Memory and *natsjs.Queue are): a value
// that cannot (a struct holding a slice, a map or a func) is a queue of
// its own under each name and at each AddQueue, and read once for each.
// A queue's Stats or Len that panics or calls runtime.Goexit leaves the
// series it gives out of the scrape, which goes on with the rest.
func (c *KanbanCollector) Collect(ch chan<- prometheus.Metric) {
	if c.families == nil {
		return
	}
	queues := c.queues.list()
	backlogs := readBacklogs(queues)
	for i, q := range queues {
		var s kanban.QueueStats
		if !fails(func() { s = q.src.q.Stats() }) {
			send(ch, c.published, prometheus.CounterValue, float64(s.Published), q.name)
			send(ch, c.duplicates, prometheus.CounterValue, float64(s.Duplicates), q.name)
			send(ch, c.handled, prometheus.CounterValue, float64(s.Handled), q.name)
			send(ch, c.retried, prometheus.CounterValue, float64(s.Retried), q.name)
			send(ch, c.redelivered, prometheus.CounterValue, float64(s.Redelivered), q.name)
			send(ch, c.dead, prometheus.CounterValue, float64(s.DeadLettered), q.name)
			send(ch, c.redriven, prometheus.CounterValue, float64(s.Redriven), q.name)
			send(ch, c.inFlight, prometheus.GaugeValue, float64(s.InFlight), q.name)
		}
		switch src := q.src.q.(type) {
		case kanban.BacklogReader:
			c.sendBacklog(ch, q.name, backlogs[i].Backlog, backlogs[i].err)
		case interface{ Len() int }:
			var n int
			if !fails(func() { n = src.Len() }) {
				send(ch, c.depth, prometheus.GaugeValue, float64(n), q.name)
			}
		}
	}
	c.durations.Collect(ch)
}

// fails calls read on a goroutine of its own and reports whether read did
// not return: it panicked (the panic is recovered) or called
// runtime.Goexit. A queue's Stats or Len, or a limiter Store's Len, is the
// program's code, and Collect runs on a goroutine of the registry's,
// where a panic nothing recovers ends the process, and a Goexit ends the
// goroutine before it tells the registry it is done, which then waits for
// it, and the scrape hangs, for ever. One that fails leaves its series
// out of the scrape instead, as a Backlog that fails leaves its own.
func fails(read func()) bool {
	returned := make(chan bool, 1)
	go func() {
		ok := false
		defer func() {
			_ = recover()
			returned <- ok
		}()
		read()
		ok = true
	}()
	return !<-returned
}

// backlogRead is the result of reading the Backlog of a queue.
type backlogRead struct {
	kanban.Backlog
	err error
}

// The errors of backlog reads that did not return a result.
var (
	errBacklogLate    = errors.New("kaizenprom: the backlog read did not return within BacklogTimeout")
	errBacklogRunning = errors.New("kaizenprom: the backlog read of an earlier scrape has not returned yet")
	errBacklogGoexit  = errors.New("kaizenprom: the backlog read called runtime.Goexit")
)

// readBacklogs reads, at once, the backlogs of the queues that have one,
// and returns them indexed as queues. It waits no longer than
// BacklogTimeout: a read still running then has failed, and runs on
// alone, with its context cancelled; its queue is not read again until it
// returns. A read that panics or calls runtime.Goexit has failed too,
// rather than end the process or pass for a read of an empty queue. A
// read another scrape started, and that is not late yet, is waited for
// until it returns or is late, and its result shared.
func readBacklogs(queues []named[*queueSource]) []backlogRead {
	reads := make([]backlogRead, len(queues))
	ctx, cancel := context.WithTimeout(context.Background(), BacklogTimeout)
	defer cancel()
	calls := make([]*backlogCall, len(queues))
	// The names of one queue share this scrape's read of it, also when
	// it has returned before the next name is reached: looked up among
	// the reads under way only, a read that returned at once would be
	// made again for each name.
	started := make(map[any]*backlogCall)
	for i, q := range queues {
		if r, ok := q.src.q.(kanban.BacklogReader); ok {
			if call, ok := started[q.src.key]; ok {
				calls[i] = call
				continue
			}
			calls[i] = q.src.readBacklog(ctx, r)
			if calls[i] == nil {
				reads[i].err = errBacklogRunning
				continue
			}
			started[q.src.key] = calls[i]
		}
	}
	// A call this scrape started ends with ctx, and one it met, sooner:
	// waiting for each in turn takes no longer than BacklogTimeout.
	for i, call := range calls {
		if call == nil {
			continue
		}
		select {
		case <-call.done:
		case <-call.ctx.Done():
			select { // one back at the same moment counts
			case <-call.done:
			default:
				reads[i].err = errBacklogLate
				continue
			}
		}
		reads[i] = backlogRead{call.b, call.err}
	}
	return reads
}

// readBacklog returns the read of q's Backlog under way, if it is not
// late, or else a read started with ctx; nil when the read under way is
// late.
func (q *queueSource) readBacklog(ctx context.Context, r kanban.BacklogReader) *backlogCall {
	reads := q.reads
	reads.mu.Lock()
	defer reads.mu.Unlock()
	if call := reads.calls[q.key]; call != nil {
		if call.ctx.Err() != nil {
			return nil
		}
		return call
	}
	call := &backlogCall{ctx: ctx, done: make(chan struct{}), err: errBacklogGoexit}
	if reads.calls == nil {
		reads.calls = make(map[any]*backlogCall)
	}
	reads.calls[q.key] = call
	go func() {
		defer func() {
			if v := recover(); v != nil {
				call.b, call.err = kanban.Backlog{}, fmt.Errorf("kaizenprom: the backlog read panicked: %v", v)
			}
			// Cleared before done is closed, so before the scrape that
			// started the read returns and cancels ctx: a read still
			// found here with its ctx ended is late.
			reads.mu.Lock()
			delete(reads.calls, q.key)
			reads.mu.Unlock()
			close(call.done)
		}()
		call.b, call.err = r.Backlog(ctx)
	}()
	return call
}

func (c *KanbanCollector) sendBacklog(ch chan<- prometheus.Metric, name string, b kanban.Backlog, err error) {
	if err != nil {
		send(ch, c.backlogUp, prometheus.GaugeValue, 0, name)
		return
	}
	send(ch, c.backlogUp, prometheus.GaugeValue, 1, name)
	send(ch, c.depth, prometheus.GaugeValue, float64(b.Depth), name)
	send(ch, c.deadLetters, prometheus.GaugeValue, float64(b.DeadLetters), name)
	if b.OldestKnown {
		send(ch, c.oldest, prometheus.GaugeValue, b.Oldest.Seconds(), name)
	}
}
