package queuetest_test

import (
	"context"
	"fmt"
	"time"

	"github.com/taipattern/taikit/kanban"
	"github.com/taipattern/taikit/kanban/queuetest"
)

// A backend's conformance test gives Run a factory that makes a fresh
// queue of the backend, every field of Options passed on; Run calls it
// for each of its subtests:
//
//	func TestConformance(t *testing.T) {
//		queuetest.Run(t, func(t *testing.T, opts queuetest.Options) kanban.Queue[queuetest.Payload] {
//			q, err := mybackend.New[queuetest.Payload](mybackend.Options{
//				Capacity: opts.Capacity, Codec: opts.Codec, Propagator: opts.Propagator, Tracer: opts.Tracer,
//			})
//			require.NoError(t, err)
//			return q
//		})
//	}
//
// Run needs a test's *testing.T, so this example runs the parts of the
// suite a backend's own tests use as well, on the memory queue: the
// Codec, which cannot decode a Poison payload, so the queue dead-letters
// it and goes on; and the Tracer, which records each span the queue
// starts.
func Example() {
	tr := queuetest.NewTracer()
	q, err := kanban.NewMemory[queuetest.Payload](kanban.MemoryOptions{Codec: queuetest.Codec{}, Tracer: tr})
	if err != nil {
		fmt.Println(err)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_ = q.Publish(ctx, kanban.Message[queuetest.Payload]{ID: "m-1", Payload: queuetest.Payload{Text: queuetest.Poison}})
	_ = q.Publish(ctx, kanban.Message[queuetest.Payload]{ID: "m-2", Payload: queuetest.Payload{N: 2, Text: "hello"}})

	err = q.Consume(ctx, func(_ context.Context, d kanban.Delivery[queuetest.Payload]) error {
		fmt.Println("handled", d.ID, d.Payload.Text)
		cancel() // m-1 came first, and is settled: stop consuming
		return nil
	}, kanban.ConsumeOptions{WIP: 1})
	fmt.Println("consume:", err)

	dead, _ := q.DeadLetters(context.Background())
	for _, d := range dead {
		fmt.Println("dead letter", d.ID+":", d.Reason)
	}
	for _, s := range tr.Spans() {
		fmt.Println(s.Name, s.Op.Type, s.Op.MessageID, "attempt", s.Op.Attempt, "ended", s.Ended, "error", s.Err)
	}
	// Output:
	// handled m-2 hello
	// consume: <nil>
	// dead letter m-1: kanban: cannot decode payload: queuetest: poison payload
	// span-1 send m-1 attempt 0 ended true error <nil>
	// span-2 send m-2 attempt 0 ended true error <nil>
	// span-3 process m-2 attempt 1 ended true error <nil>
}
