package kaizenprom_test

import (
	"context"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/taipattern/taikit/kaizen/kaizenprom"
	"github.com/taipattern/taikit/kanban"
)

// A queue's counts and backlog are read at each scrape; its handler
// durations are observed by the consumer, through the collector's
// HandlerObserver.
func ExampleKanbanCollector() {
	reg := prometheus.NewRegistry()
	kc, _ := kaizenprom.NewKanbanCollector(reg, kaizenprom.CollectorOptions{})
	q, _ := kanban.NewMemory[string](kanban.MemoryOptions{DedupWindow: -1})
	_ = kc.AddQueue("orders", q)
	observer, _ := kc.HandlerObserver("orders")

	ctx, cancel := context.WithCancel(context.Background())
	_ = q.Publish(ctx, kanban.NewMessage("", "charge"))
	_ = q.Publish(ctx, kanban.NewMessage("", "refund"))
	_ = q.Consume(ctx, func(_ context.Context, d kanban.Delivery[string]) error {
		if d.Payload == "refund" {
			defer cancel()
			return kanban.Permanent(fmt.Errorf("refunds are closed"))
		}
		return nil
	}, kanban.ConsumeOptions{Observer: observer})

	n, _ := testutil.GatherAndCount(reg, "taikit_queue_handler_duration_seconds")
	fmt.Println("histograms:", n)
	mfs, _ := reg.Gather() // a scrape
	for _, name := range []string{"taikit_queue_handled_total", "taikit_queue_dead_letters", "taikit_queue_depth"} {
		for _, mf := range mfs {
			if mf.GetName() == name {
				m := mf.GetMetric()[0]
				fmt.Println(name, m.GetCounter().GetValue()+m.GetGauge().GetValue())
			}
		}
	}
	// Output:
	// histograms: 1
	// taikit_queue_handled_total 1
	// taikit_queue_dead_letters 1
	// taikit_queue_depth 0
}
