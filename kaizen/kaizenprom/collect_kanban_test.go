package kaizenprom_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/heijunka"
	"github.com/taipattern/taikit/kaizen/kaizenprom"
	"github.com/taipattern/taikit/kanban"
)

// queueFamilies are the families TestKanbanCollectorScriptedRun compares.
var queueFamilies = []string{
	"taikit_queue_published_total", "taikit_queue_duplicates_total", "taikit_queue_handled_total",
	"taikit_queue_retried_total", "taikit_queue_redelivered_total", "taikit_queue_dead_lettered_total",
	"taikit_queue_redriven_total", "taikit_queue_in_flight", "taikit_queue_depth",
	"taikit_queue_oldest_age_seconds", "taikit_queue_dead_letters", "taikit_queue_backlog_up",
	"taikit_queue_handler_duration_seconds",
}

const queueHelp = `# HELP taikit_queue_backlog_up 1 if the last read of the queue's backlog succeeded, else 0.
# TYPE taikit_queue_backlog_up gauge
taikit_queue_backlog_up{queue="orders"} 1
# HELP taikit_queue_dead_lettered_total Messages sent to the dead letters.
# TYPE taikit_queue_dead_lettered_total counter
taikit_queue_dead_lettered_total{queue="orders"} %DEADLETTERED%
# HELP taikit_queue_dead_letters Dead letters kept now.
# TYPE taikit_queue_dead_letters gauge
taikit_queue_dead_letters{queue="orders"} %DEADLETTERS%
# HELP taikit_queue_depth Messages held by the queue: waiting, in flight and waiting for a retry.
# TYPE taikit_queue_depth gauge
taikit_queue_depth{queue="orders"} %DEPTH%
# HELP taikit_queue_duplicates_total Publishes dropped as duplicates of a stored message ID.
# TYPE taikit_queue_duplicates_total counter
taikit_queue_duplicates_total{queue="orders"} 1
# HELP taikit_queue_handled_total Messages the handler finished without error.
# TYPE taikit_queue_handled_total counter
taikit_queue_handled_total{queue="orders"} %HANDLED%
# HELP taikit_queue_in_flight Messages pulled and not yet settled.
# TYPE taikit_queue_in_flight gauge
taikit_queue_in_flight{queue="orders"} 0
# HELP taikit_queue_oldest_age_seconds Age of the oldest message waiting, as the backend knows it.
# TYPE taikit_queue_oldest_age_seconds gauge
taikit_queue_oldest_age_seconds{queue="orders"} %OLDEST%
# HELP taikit_queue_published_total Messages stored by the queue (duplicates not counted).
# TYPE taikit_queue_published_total counter
taikit_queue_published_total{queue="orders"} 4
# HELP taikit_queue_redelivered_total Handler attempts after a message's first delivery.
# TYPE taikit_queue_redelivered_total counter
taikit_queue_redelivered_total{queue="orders"} %REDELIVERED%
# HELP taikit_queue_redriven_total Dead letters published back to the queue.
# TYPE taikit_queue_redriven_total counter
taikit_queue_redriven_total{queue="orders"} %REDRIVEN%
# HELP taikit_queue_retried_total Failed attempts that were scheduled again.
# TYPE taikit_queue_retried_total counter
taikit_queue_retried_total{queue="orders"} %RETRIED%
`

// histogramText is the exposition of the handler histogram of queue
// "orders" with the cumulative bucket counts, count and sum given.
func histogramText(buckets []int, count int, sum string) string {
	var b strings.Builder
	b.WriteString("# HELP taikit_queue_handler_duration_seconds Duration of each handler attempt.\n")
	b.WriteString("# TYPE taikit_queue_handler_duration_seconds histogram\n")
	for i, le := range kaizenprom.HandlerBuckets {
		fmt.Fprintf(&b, "taikit_queue_handler_duration_seconds_bucket{queue=\"orders\",le=\"%s\"} %d\n", strconv.FormatFloat(le, 'g', -1, 64), buckets[i])
	}
	fmt.Fprintf(&b, "taikit_queue_handler_duration_seconds_bucket{queue=\"orders\",le=\"+Inf\"} %d\n", count)
	fmt.Fprintf(&b, "taikit_queue_handler_duration_seconds_sum{queue=\"orders\"} %s\n", sum)
	fmt.Fprintf(&b, "taikit_queue_handler_duration_seconds_count{queue=\"orders\"} %d\n", count)
	return b.String()
}

func expect(vals map[string]string, histogram string) string {
	s := queueHelp
	for k, v := range vals {
		s = strings.ReplaceAll(s, "%"+k+"%", v)
	}
	return s + histogram
}

// TestKanbanCollectorScriptedRun drives a queue through publishes, a
// wait, handling with a retry and a dead letter, and a redrive, in a
// bubble whose clock only the script moves, and compares every series
// after each step.
func TestKanbanCollectorScriptedRun(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		reg := prometheus.NewRegistry()
		c, err := kaizenprom.NewKanbanCollector(reg, kaizenprom.CollectorOptions{})
		require.NoError(t, err)
		q, err := kanban.NewMemory[string](kanban.MemoryOptions{})
		require.NoError(t, err)
		require.NoError(t, c.AddQueue("orders", q))
		obs, err := c.HandlerObserver("orders")
		require.NoError(t, err)
		ctx := context.Background()
		for _, id := range []string{"a", "b", "c", "d", "a"} {
			require.NoError(t, q.Publish(ctx, kanban.Message[string]{ID: id, Payload: id}))
		}
		time.Sleep(90 * time.Second)
		require.NoError(t, testutil.CollectAndCompare(c, strings.NewReader(expect(map[string]string{
			"DEADLETTERED": "0", "DEADLETTERS": "0", "DEPTH": "4", "HANDLED": "0", "OLDEST": "90",
			"REDELIVERED": "0", "REDRIVEN": "0", "RETRIED": "0",
		}, histogramText(make([]int, len(kaizenprom.HandlerBuckets)), 0, "0"))), queueFamilies...))

		// a takes 2s; b fails after 1s, is retried 10s later and takes
		// 3s; c is refused after 0.5s; d takes 2s.
		cctx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() {
			done <- q.Consume(cctx, func(_ context.Context, d kanban.Delivery[string]) error {
				switch {
				case d.ID == "b" && d.Attempt == 1:
					time.Sleep(time.Second)
					return errors.New("again")
				case d.ID == "b":
					time.Sleep(3 * time.Second)
				case d.ID == "c":
					time.Sleep(500 * time.Millisecond)
					return kanban.Permanent(errors.New("refused"))
				default:
					time.Sleep(2 * time.Second)
				}
				return nil
			}, kanban.ConsumeOptions{Observer: obs, Backoff: kanban.BackoffFunc(func(int) time.Duration { return 10 * time.Second })})
		}()
		time.Sleep(time.Minute)
		synctest.Wait()
		cancel()
		require.NoError(t, <-done)
		histogram := histogramText([]int{0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 2, 4, 5, 5, 5, 5}, 5, "8.5")
		require.NoError(t, testutil.CollectAndCompare(c, strings.NewReader(expect(map[string]string{
			"DEADLETTERED": "1", "DEADLETTERS": "1", "DEPTH": "0", "HANDLED": "3", "OLDEST": "0",
			"REDELIVERED": "1", "REDRIVEN": "0", "RETRIED": "1",
		}, histogram)), queueFamilies...))

		// c back in the queue, waiting 5s.
		n, err := q.RedriveDeadLetters(ctx, kanban.DeadLetterFilter{ID: "c"})
		require.NoError(t, err)
		require.Equal(t, 1, n)
		time.Sleep(5 * time.Second)
		require.NoError(t, testutil.CollectAndCompare(c, strings.NewReader(expect(map[string]string{
			"DEADLETTERED": "1", "DEADLETTERS": "0", "DEPTH": "1", "HANDLED": "3", "OLDEST": "5",
			"REDELIVERED": "1", "REDRIVEN": "1", "RETRIED": "1",
		}, histogram)), queueFamilies...))

		problems, err := testutil.GatherAndLint(reg)
		require.NoError(t, err)
		assert.Empty(t, problems)
	})
}

// brokenBacklog is a queue whose backlog cannot be read.
type brokenBacklog struct{ fakeQueue }

func (brokenBacklog) Backlog(context.Context) (kanban.Backlog, error) {
	return kanban.Backlog{}, errors.New("server gone")
}

// unknownAge is a queue that does not know the age of its oldest message.
type unknownAge struct{ fakeQueue }

func (unknownAge) Backlog(context.Context) (kanban.Backlog, error) {
	return kanban.Backlog{Depth: 3, DeadLetters: 2}, nil
}

func TestKanbanCollectorBacklogUnknownOrFailing(t *testing.T) {
	reg := prometheus.NewRegistry()
	c, err := kaizenprom.NewKanbanCollector(reg, kaizenprom.CollectorOptions{})
	require.NoError(t, err)
	require.NoError(t, c.AddQueue("broken", brokenBacklog{}))
	require.NoError(t, c.AddQueue("ageless", unknownAge{}))
	q := func(name string) map[string]string { return map[string]string{"queue": name} }
	assert.Equal(t, 0.0, gaugeValue(t, reg, "taikit_queue_backlog_up", q("broken")))
	assert.Nil(t, series(t, reg, "taikit_queue_depth", q("broken")), "no made-up depth")
	assert.Nil(t, series(t, reg, "taikit_queue_dead_letters", q("broken")))
	assert.Equal(t, 1.0, gaugeValue(t, reg, "taikit_queue_backlog_up", q("ageless")))
	assert.Equal(t, 3.0, gaugeValue(t, reg, "taikit_queue_depth", q("ageless")))
	assert.Equal(t, 2.0, gaugeValue(t, reg, "taikit_queue_dead_letters", q("ageless")))
	assert.Nil(t, series(t, reg, "taikit_queue_oldest_age_seconds", q("ageless")), "an age not known is left out")

	_, err = c.HandlerObserver("")
	require.ErrorContains(t, err, "no name")
	problems, err := testutil.GatherAndLint(reg)
	require.NoError(t, err)
	assert.Empty(t, problems)
}

// silentBacklog is a queue whose server does not answer: its Backlog
// returns when ctx ends.
type silentBacklog struct{ fakeQueue }

func (silentBacklog) Backlog(ctx context.Context) (kanban.Backlog, error) {
	<-ctx.Done()
	return kanban.Backlog{}, ctx.Err()
}

// TestKanbanCollectorSilentServer reads the backlogs of queues on a server
// that does not answer: a scrape takes BacklogTimeout, whatever the number
// of queues, so it ends within Prometheus' scrape timeout (10s by default)
// and reports each queue's backlog_up as 0.
func TestKanbanCollectorSilentServer(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		reg := prometheus.NewRegistry()
		c, err := kaizenprom.NewKanbanCollector(reg, kaizenprom.CollectorOptions{})
		require.NoError(t, err)
		names := []string{"orders", "refunds", "confirmations", "emails"}
		for _, name := range names {
			require.NoError(t, c.AddQueue(name, silentBacklog{}))
		}
		start := time.Now()
		families, err := reg.Gather()
		require.NoError(t, err)
		assert.Equal(t, kaizenprom.BacklogTimeout, time.Since(start), "the backlogs are read at once")
		scraped := prometheus.GathererFunc(func() ([]*dto.MetricFamily, error) { return families, nil })
		for _, name := range names {
			assert.Equal(t, 0.0, gaugeValue(t, scraped, "taikit_queue_backlog_up", map[string]string{"queue": name}), name)
		}
	})
}

// deafBacklog is a queue on a backend that does not heed the context of
// its Backlog: a read returns only once release is closed.
type deafBacklog struct {
	fakeQueue
	release chan struct{}
	calls   *atomic.Int32
}

func (q deafBacklog) Backlog(context.Context) (kanban.Backlog, error) {
	q.calls.Add(1)
	<-q.release
	return kanban.Backlog{Depth: 7}, nil
}

// TestKanbanCollectorBacklogThatIgnoresItsContext: a backend whose Backlog
// does not return when its context ends holds a scrape up no longer than
// BacklogTimeout, and is reported down; the other queues are read as
// usual. While that read still hangs, a scrape starts no other read of
// the queue (they would pile up, one per scrape) and reports it down at
// once; once it returns, the queue is read again.
func TestKanbanCollectorBacklogThatIgnoresItsContext(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		reg := prometheus.NewRegistry()
		c, err := kaizenprom.NewKanbanCollector(reg, kaizenprom.CollectorOptions{})
		require.NoError(t, err)
		deaf := deafBacklog{release: make(chan struct{}), calls: new(atomic.Int32)}
		require.NoError(t, c.AddQueue("deaf", deaf))
		require.NoError(t, c.AddQueue("ageless", unknownAge{}))
		q := func(name string) map[string]string { return map[string]string{"queue": name} }
		scrape := func() prometheus.Gatherer {
			families, err := reg.Gather()
			require.NoError(t, err)
			return prometheus.GathererFunc(func() ([]*dto.MetricFamily, error) { return families, nil })
		}

		start := time.Now()
		scraped := scrape()
		assert.Equal(t, kaizenprom.BacklogTimeout, time.Since(start), "the scrape ends at BacklogTimeout")
		assert.Equal(t, 0.0, gaugeValue(t, scraped, "taikit_queue_backlog_up", q("deaf")))
		assert.Nil(t, series(t, scraped, "taikit_queue_depth", q("deaf")))
		assert.Equal(t, 1.0, gaugeValue(t, scraped, "taikit_queue_backlog_up", q("ageless")))
		assert.Equal(t, 3.0, gaugeValue(t, scraped, "taikit_queue_depth", q("ageless")))

		start = time.Now()
		scraped = scrape()
		assert.Zero(t, time.Since(start), "no new read of a queue whose last one has not returned")
		assert.Equal(t, 0.0, gaugeValue(t, scraped, "taikit_queue_backlog_up", q("deaf")))
		assert.Equal(t, int32(1), deaf.calls.Load())

		close(deaf.release)
		synctest.Wait()
		scraped = scrape()
		assert.Equal(t, 1.0, gaugeValue(t, scraped, "taikit_queue_backlog_up", q("deaf")))
		assert.Equal(t, 7.0, gaugeValue(t, scraped, "taikit_queue_depth", q("deaf")))
		assert.Equal(t, int32(2), deaf.calls.Load())
	})
}

// slowBacklog is a queue on a server that answers a while after it is
// asked: a read returns once answer is closed, or when its context ends.
type slowBacklog struct {
	fakeQueue
	answer chan struct{}
	calls  *atomic.Int32
}

func (q slowBacklog) Backlog(ctx context.Context) (kanban.Backlog, error) {
	q.calls.Add(1)
	select {
	case <-q.answer:
		return kanban.Backlog{Depth: 4}, nil
	case <-ctx.Done():
		return kanban.Backlog{}, ctx.Err()
	}
}

// TestKanbanCollectorConcurrentScrapes: two scrapes at once (two
// Prometheus servers, or a scrape and a Gather of the program's own) both
// report a backlog read in time, whichever of them started it: the second
// waits for the read under way rather than report the queue down.
func TestKanbanCollectorConcurrentScrapes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		reg := prometheus.NewRegistry()
		c, err := kaizenprom.NewKanbanCollector(reg, kaizenprom.CollectorOptions{})
		require.NoError(t, err)
		slow := slowBacklog{answer: make(chan struct{}), calls: new(atomic.Int32)}
		require.NoError(t, c.AddQueue("slow", slow))
		scrapes := make(chan []*dto.MetricFamily, 2)
		scrape := func() {
			families, err := reg.Gather()
			assert.NoError(t, err)
			scrapes <- families
		}
		go scrape()
		synctest.Wait() // the first scrape's read waits for the server
		go scrape()
		synctest.Wait()
		time.Sleep(time.Second)
		close(slow.answer)
		q := map[string]string{"queue": "slow"}
		for range 2 {
			families := <-scrapes
			scraped := prometheus.GathererFunc(func() ([]*dto.MetricFamily, error) { return families, nil })
			assert.Equal(t, 1.0, gaugeValue(t, scraped, "taikit_queue_backlog_up", q))
			assert.Equal(t, 4.0, gaugeValue(t, scraped, "taikit_queue_depth", q))
		}
		assert.Equal(t, int32(1), slow.calls.Load(), "one read serves both scrapes")
	})
}

// goexitBacklog is a queue whose Backlog calls runtime.Goexit, as
// t.FailNow in a test double does.
type goexitBacklog struct{ fakeQueue }

func (goexitBacklog) Backlog(context.Context) (kanban.Backlog, error) {
	runtime.Goexit()
	return kanban.Backlog{Depth: 5}, nil
}

// panicBacklog is a queue whose Backlog panics.
type panicBacklog struct{ fakeQueue }

func (panicBacklog) Backlog(context.Context) (kanban.Backlog, error) { panic("backend bug") }

// TestKanbanCollectorBacklogThatPanicsOrExits: a Backlog that panics or
// calls runtime.Goexit is a read that failed: the queue is reported down,
// with no made-up depth, and the scrape and the process go on.
func TestKanbanCollectorBacklogThatPanicsOrExits(t *testing.T) {
	reg := prometheus.NewRegistry()
	c, err := kaizenprom.NewKanbanCollector(reg, kaizenprom.CollectorOptions{})
	require.NoError(t, err)
	require.NoError(t, c.AddQueue("exits", goexitBacklog{}))
	require.NoError(t, c.AddQueue("panics", panicBacklog{}))
	require.NoError(t, c.AddQueue("ageless", unknownAge{}))
	families, err := reg.Gather()
	require.NoError(t, err)
	scraped := prometheus.GathererFunc(func() ([]*dto.MetricFamily, error) { return families, nil })
	for _, name := range []string{"exits", "panics"} {
		q := map[string]string{"queue": name}
		assert.Equal(t, 0.0, gaugeValue(t, scraped, "taikit_queue_backlog_up", q), name)
		assert.Nil(t, series(t, scraped, "taikit_queue_depth", q), name)
		assert.Nil(t, series(t, scraped, "taikit_queue_dead_letters", q), name)
	}
	assert.Equal(t, 1.0, gaugeValue(t, scraped, "taikit_queue_backlog_up", map[string]string{"queue": "ageless"}))
}

// TestKanbanCollectorHandlerObserverNeedsTheQueue: the handler durations
// are series of a queue the collector exports. A HandlerObserver asked for
// a name no queue is added under (a typo, or a queue removed) is refused,
// naming it; it made a series that no RemoveQueue would ever remove.
func TestKanbanCollectorHandlerObserverNeedsTheQueue(t *testing.T) {
	reg := prometheus.NewRegistry()
	c, err := kaizenprom.NewKanbanCollector(reg, kaizenprom.CollectorOptions{})
	require.NoError(t, err)
	q := func(name string) map[string]string { return map[string]string{"queue": name} }
	require.NoError(t, c.AddQueue("orders", fakeQueue{}))

	_, err = c.HandlerObserver("ordres")
	require.ErrorContains(t, err, `kaizenprom: HandlerObserver: no queue named "ordres" is collected; add it with AddQueue first`)
	assert.Nil(t, series(t, reg, "taikit_queue_handler_duration_seconds", q("ordres")), "no series for a queue not collected")

	obs, err := c.HandlerObserver("orders")
	require.NoError(t, err)
	obs.ObserveHandler(time.Second, nil)
	require.True(t, c.RemoveQueue("orders"))
	_, err = c.HandlerObserver("orders")
	require.ErrorContains(t, err, `no queue named "orders" is collected`, "removed queues are refused too")
	// A consumer still draining with the observer it was given keeps
	// observing; the removed queue's series stays gone.
	obs.ObserveHandler(time.Second, nil)
	assert.Nil(t, series(t, reg, "taikit_queue_handler_duration_seconds", q("orders")))

	// Added again, the queue starts a histogram of its own.
	require.NoError(t, c.AddQueue("orders", fakeQueue{}))
	again, err := c.HandlerObserver("orders")
	require.NoError(t, err)
	again.ObserveHandler(2*time.Second, nil)
	h := series(t, reg, "taikit_queue_handler_duration_seconds", q("orders")).GetHistogram()
	assert.EqualValues(t, 1, h.GetSampleCount())
	assert.Equal(t, 2.0, h.GetSampleSum())
}

// TestKanbanCollectorHandlerObserverRacingRemoveQueue: a HandlerObserver
// asked for while its queue is removed either fails or made its series
// before the removal took it; no series outlives its queue.
func TestKanbanCollectorHandlerObserverRacingRemoveQueue(t *testing.T) {
	reg := prometheus.NewRegistry()
	c, err := kaizenprom.NewKanbanCollector(reg, kaizenprom.CollectorOptions{})
	require.NoError(t, err)
	for range 200 {
		require.NoError(t, c.AddQueue("orders", fakeQueue{}))
		start := make(chan struct{})
		var wg sync.WaitGroup
		wg.Go(func() {
			<-start
			_, _ = c.HandlerObserver("orders")
		})
		wg.Go(func() {
			<-start
			c.RemoveQueue("orders")
		})
		close(start)
		wg.Wait()
		require.Nil(t, series(t, reg, "taikit_queue_handler_duration_seconds", map[string]string{"queue": "orders"}),
			"the handler series of a removed queue")
	}
}

// restoreHandlerBuckets puts HandlerBuckets back, in place and as a
// variable, when the test ends.
func restoreHandlerBuckets(t *testing.T) {
	t.Helper()
	saved := slices.Clone(kaizenprom.HandlerBuckets)
	orig := kaizenprom.HandlerBuckets
	t.Cleanup(func() {
		copy(orig, saved)
		kaizenprom.HandlerBuckets = orig
	})
}

// TestKanbanCollectorKeepsItsBuckets: a collector's histogram keeps the
// bounds HandlerBuckets had when the collector was made. It shared the
// slice, so a program that built bounds of its own from it (an append to
// a prefix of it writes into it) moved the bounds of live histograms.
func TestKanbanCollectorKeepsItsBuckets(t *testing.T) {
	restoreHandlerBuckets(t)
	want := slices.Clone(kaizenprom.HandlerBuckets)
	reg := prometheus.NewRegistry()
	c, err := kaizenprom.NewKanbanCollector(reg, kaizenprom.CollectorOptions{})
	require.NoError(t, err)
	require.NoError(t, c.AddQueue("orders", fakeQueue{}))
	obs, err := c.HandlerObserver("orders")
	require.NoError(t, err)

	mine := append(kaizenprom.HandlerBuckets[:4], 0.02) // up to 5 ms, then 20 ms
	require.Len(t, mine, 5)
	obs.ObserveHandler(15*time.Millisecond, nil)

	h := series(t, reg, "taikit_queue_handler_duration_seconds", map[string]string{"queue": "orders"}).GetHistogram()
	var bounds []float64
	for _, b := range h.GetBucket() {
		bounds = append(bounds, b.GetUpperBound())
	}
	assert.Equal(t, want, bounds)
	assert.EqualValues(t, 1, h.GetBucket()[5].GetCumulativeCount(), "15 ms is at most 25 ms")
	assert.EqualValues(t, 0, h.GetBucket()[4].GetCumulativeCount(), "15 ms is above 10 ms")
}

// TestNewKanbanCollectorChecksHandlerBuckets: HandlerBuckets set to bounds
// a histogram cannot have is an error of NewKanbanCollector; it was
// taken, and HandlerObserver panicked.
func TestNewKanbanCollectorChecksHandlerBuckets(t *testing.T) {
	restoreHandlerBuckets(t)
	for _, c := range []struct {
		buckets []float64
		want    string
	}{
		{[]float64{0.1, 0.05}, "kaizenprom: NewKanbanCollector: HandlerBuckets[1] 0.05 is not above the bucket before it (0.1)"},
		{[]float64{0, 1}, "kaizenprom: NewKanbanCollector: HandlerBuckets[0] 0 is not a positive finite number"},
		{nil, "kaizenprom: NewKanbanCollector: HandlerBuckets is empty"},
	} {
		kaizenprom.HandlerBuckets = c.buckets
		kc, err := kaizenprom.NewKanbanCollector(prometheus.NewRegistry(), kaizenprom.CollectorOptions{})
		if err == nil {
			require.NoError(t, kc.AddQueue("orders", fakeQueue{}))
			require.NotPanics(t, func() { _, _ = kc.HandlerObserver("orders") })
		}
		require.EqualError(t, err, c.want)
	}
}

// TestKanbanCollectorHungReadOfAQueueAddedAgain: while a read of a queue's
// Backlog hangs, the same queue removed and added again, or added under
// another name too, starts no other read of it: hung reads do not pile up,
// one for each time it is added. Once the read returns, the queue is read
// again, once for all its names.
func TestKanbanCollectorHungReadOfAQueueAddedAgain(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		reg := prometheus.NewRegistry()
		c, err := kaizenprom.NewKanbanCollector(reg, kaizenprom.CollectorOptions{})
		require.NoError(t, err)
		deaf := deafBacklog{release: make(chan struct{}), calls: new(atomic.Int32)}
		require.NoError(t, c.AddQueue("deaf", deaf))
		scrape := func() prometheus.Gatherer {
			families, err := reg.Gather()
			require.NoError(t, err)
			return prometheus.GathererFunc(func() ([]*dto.MetricFamily, error) { return families, nil })
		}
		up := func(g prometheus.Gatherer, name string) float64 {
			return gaugeValue(t, g, "taikit_queue_backlog_up", map[string]string{"queue": name})
		}

		assert.Equal(t, 0.0, up(scrape(), "deaf"), "the read hangs past BacklogTimeout")
		for range 3 {
			require.True(t, c.RemoveQueue("deaf"))
			require.NoError(t, c.AddQueue("deaf", deaf))
			start := time.Now()
			scraped := scrape()
			assert.Zero(t, time.Since(start), "no new read of a queue whose last one has not returned")
			assert.Equal(t, 0.0, up(scraped, "deaf"))
		}
		require.NoError(t, c.AddQueue("deaf-too", deaf))
		scraped := scrape()
		assert.Equal(t, 0.0, up(scraped, "deaf-too"))
		assert.Equal(t, int32(1), deaf.calls.Load(), "one hung read of the queue, however often it is added")

		close(deaf.release)
		synctest.Wait()
		scraped = scrape()
		for _, name := range []string{"deaf", "deaf-too"} {
			assert.Equal(t, 1.0, up(scraped, name), name)
			assert.Equal(t, 7.0, gaugeValue(t, scraped, "taikit_queue_depth", map[string]string{"queue": name}), name)
		}
		assert.Equal(t, int32(2), deaf.calls.Load(), "one read serves both names")
	})
}

// sliceQueue is a queue whose value cannot be compared (a map key of it
// panics).
type sliceQueue struct {
	fakeQueue
	depths []int64
}

func (q sliceQueue) Backlog(context.Context) (kanban.Backlog, error) {
	return kanban.Backlog{Depth: q.depths[0]}, nil
}

// TestKanbanCollectorQueueValueNotComparable: a queue whose value cannot
// be compared is read as any other, under each of its names.
func TestKanbanCollectorQueueValueNotComparable(t *testing.T) {
	reg := prometheus.NewRegistry()
	c, err := kaizenprom.NewKanbanCollector(reg, kaizenprom.CollectorOptions{})
	require.NoError(t, err)
	q := sliceQueue{depths: []int64{2}}
	require.NoError(t, c.AddQueue("a", q))
	require.NoError(t, c.AddQueue("b", q))
	families, err := reg.Gather()
	require.NoError(t, err)
	scraped := prometheus.GathererFunc(func() ([]*dto.MetricFamily, error) { return families, nil })
	for _, name := range []string{"a", "b"} {
		labels := map[string]string{"queue": name}
		assert.Equal(t, 1.0, gaugeValue(t, scraped, "taikit_queue_backlog_up", labels), name)
		assert.Equal(t, 2.0, gaugeValue(t, scraped, "taikit_queue_depth", labels), name)
	}
}

// panicStats is a queue whose Stats panics: a wrapper whose inner queue
// was left unset, say.
type panicStats struct{}

func (panicStats) Stats() kanban.QueueStats { panic("queue bug") }

// panicLen is a queue without a Backlog whose Len panics.
type panicLen struct{ fakeQueue }

func (panicLen) Len() int { panic("queue bug") }

// TestKanbanCollectorStatsOrLenThatPanics: a queue whose Stats or Len
// panics at a scrape has those series left out of it, as a Backlog that
// panics has its own; the scrape, the other queues' series and the
// process go on. The registry collects on goroutines of its own, where a
// panic nothing recovers ends the process.
func TestKanbanCollectorStatsOrLenThatPanics(t *testing.T) {
	reg := prometheus.NewRegistry()
	c, err := kaizenprom.NewKanbanCollector(reg, kaizenprom.CollectorOptions{})
	require.NoError(t, err)
	require.NoError(t, c.AddQueue("stats", panicStats{}))
	require.NoError(t, c.AddQueue("len", panicLen{fakeQueue{kanban.QueueStats{Published: 2}}}))
	require.NoError(t, c.AddQueue("fine", fakeQueue{kanban.QueueStats{Published: 3}}))
	ch := make(chan prometheus.Metric, 64)
	require.NotPanics(t, func() { c.Collect(ch) })

	families, err := reg.Gather()
	require.NoError(t, err)
	scraped := prometheus.GathererFunc(func() ([]*dto.MetricFamily, error) { return families, nil })
	assert.Nil(t, series(t, scraped, "taikit_queue_published_total", map[string]string{"queue": "stats"}))
	assert.Nil(t, series(t, scraped, "taikit_queue_in_flight", map[string]string{"queue": "stats"}))
	assert.Nil(t, series(t, scraped, "taikit_queue_depth", map[string]string{"queue": "len"}))
	assert.Equal(t, 2.0, series(t, scraped, "taikit_queue_published_total", map[string]string{"queue": "len"}).GetCounter().GetValue())
	assert.Equal(t, 3.0, series(t, scraped, "taikit_queue_published_total", map[string]string{"queue": "fine"}).GetCounter().GetValue())
}

type goexitStats struct{}

func (goexitStats) Stats() kanban.QueueStats { runtime.Goexit(); return kanban.QueueStats{} }

type goexitLen struct{ fakeQueue }

func (goexitLen) Len() int { runtime.Goexit(); return 0 }

type goexitLenStore struct{ heijunka.Store }

func (goexitLenStore) Len() int { runtime.Goexit(); return 0 }

// TestCollectorsReadThatCallsGoexit: a queue's Stats or Len, or a Keyed
// store's Len, that ends its goroutine with runtime.Goexit at a scrape
// has its series left out, as one that panics. Called on the registry's
// collecting goroutine, it ended that goroutine before it told Gather it
// was done, and the scrape (and every later one) hung for ever; synctest
// reports that as a deadlock.
func TestCollectorsReadThatCallsGoexit(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		reg := prometheus.NewRegistry()
		kc, err := kaizenprom.NewKanbanCollector(reg, kaizenprom.CollectorOptions{})
		require.NoError(t, err)
		require.NoError(t, kc.AddQueue("stats", goexitStats{}))
		require.NoError(t, kc.AddQueue("len", goexitLen{fakeQueue{kanban.QueueStats{Published: 2}}}))
		require.NoError(t, kc.AddQueue("fine", fakeQueue{kanban.QueueStats{Published: 3}}))
		hc, err := kaizenprom.NewHeijunkaCollector(reg, kaizenprom.CollectorOptions{})
		require.NoError(t, err)
		k, err := heijunka.NewKeyed(heijunka.PerSecond(5), heijunka.KeyedOptions{Name: "customers", Store: goexitLenStore{}})
		require.NoError(t, err)
		require.NoError(t, hc.AddKeyed(k))

		families, err := reg.Gather()
		require.NoError(t, err)
		scraped := prometheus.GathererFunc(func() ([]*dto.MetricFamily, error) { return families, nil })
		assert.Nil(t, series(t, scraped, "taikit_queue_published_total", map[string]string{"queue": "stats"}))
		assert.Nil(t, series(t, scraped, "taikit_queue_depth", map[string]string{"queue": "len"}))
		assert.Equal(t, 2.0, series(t, scraped, "taikit_queue_published_total", map[string]string{"queue": "len"}).GetCounter().GetValue())
		assert.Equal(t, 3.0, series(t, scraped, "taikit_queue_published_total", map[string]string{"queue": "fine"}).GetCounter().GetValue())
		q := map[string]string{"limiter": "customers"}
		assert.Nil(t, series(t, scraped, "taikit_limiter_live_keys", q))
		assert.Equal(t, 5.0, series(t, scraped, "taikit_limiter_rate", q).GetGauge().GetValue())
	})
}
