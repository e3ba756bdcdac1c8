package natsjs_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/taipattern/taikit/kanban"
	"github.com/taipattern/taikit/kanban/natsembed"
	"github.com/taipattern/taikit/kanban/natsjs"
)

type confirmation struct {
	Payment string
	Amount  int
}

func Example() {
	ctx := context.Background()
	srv, err := natsembed.Start(ctx, natsembed.Options{InProcess: true})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer func() { _ = srv.Shutdown(ctx) }()
	nc, err := srv.Connect()
	if err != nil {
		fmt.Println(err)
		return
	}
	defer nc.Close()

	q, err := natsjs.New[confirmation](ctx, nc, natsjs.Options{Stream: "CONFIRMATIONS"})
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, id := range []string{"tx-1", "tx-2", "tx-1"} { // tx-1 twice: stored once
		_ = q.Publish(ctx, kanban.Message[confirmation]{ID: id, Key: "customer-9", Payload: confirmation{id, 100}})
	}
	cctx, stop := context.WithTimeout(ctx, 30*time.Second)
	defer stop()
	n := 0
	err = q.Consume(cctx, func(_ context.Context, d kanban.Delivery[confirmation]) error {
		fmt.Println("confirm", d.Payload.Payment)
		if n++; n == 2 {
			stop()
		}
		return nil
	}, kanban.ConsumeOptions{WIP: 8, PerKey: true})
	fmt.Println(err, q.Stats().Duplicates)
	// Output:
	// confirm tx-1
	// confirm tx-2
	// <nil> 1
}

func ExampleQueue_PublishAsync() {
	ctx := context.Background()
	srv, err := natsembed.Start(ctx, natsembed.Options{InProcess: true})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer func() { _ = srv.Shutdown(ctx) }()
	nc, err := srv.Connect()
	if err != nil {
		fmt.Println(err)
		return
	}
	defer nc.Close()

	// A failed send is repeated up to 5 times, 50ms, 100ms, ... apart.
	q, err := natsjs.New[confirmation](ctx, nc, natsjs.Options{
		Stream:         "ASYNC_CONFIRMATIONS",
		AsyncAttempts:  5,
		AsyncRetryWait: 50 * time.Millisecond,
		OnPublishError: func(id string, err error) { fmt.Println("lost", id, err) },
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	for i := range 100 {
		id := fmt.Sprintf("tx-%d", i)
		if err := q.PublishAsync(ctx, kanban.Message[confirmation]{ID: id, Payload: confirmation{id, 100}}); err != nil {
			fmt.Println(err)
		}
	}
	fmt.Println("flush:", q.Flush(ctx), "stored:", q.Stats().Published)
	fmt.Println("shutdown:", q.Shutdown(ctx))
	// Output:
	// flush: <nil> stored: 100
	// shutdown: <nil>
}

// Dead letters are redriven once what failed them is fixed: each goes back
// to the work stream, and leaves the dead-letter stream once stored.
func ExampleQueue_RedriveDeadLetters() {
	ctx := context.Background()
	srv, err := natsembed.Start(ctx, natsembed.Options{InProcess: true})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer func() { _ = srv.Shutdown(ctx) }()
	nc, err := srv.Connect()
	if err != nil {
		fmt.Println(err)
		return
	}
	defer nc.Close()
	q, err := natsjs.New[confirmation](ctx, nc, natsjs.Options{Stream: "LEDGER"})
	if err != nil {
		fmt.Println(err)
		return
	}
	_ = q.Publish(ctx, kanban.Message[confirmation]{ID: "tx-1", Key: "customer-9", Payload: confirmation{"tx-1", 100}})

	ledgerUp := false
	consume := func() {
		cctx, stop := context.WithTimeout(ctx, 30*time.Second)
		defer stop()
		_ = q.Consume(cctx, func(_ context.Context, d kanban.Delivery[confirmation]) error {
			defer stop()
			if !ledgerUp {
				return kanban.Permanent(errors.New("ledger closed"))
			}
			fmt.Println("posted", d.Payload.Payment, "attempt", d.Attempt)
			return nil
		}, kanban.ConsumeOptions{})
	}
	consume()
	page, _ := q.ListDeadLetters(ctx, kanban.DeadLetterQuery{Filter: kanban.DeadLetterFilter{Reason: "ledger"}})
	for _, d := range page.Letters {
		fmt.Println(d.Seq, d.ID, d.Key, d.Reason)
	}

	ledgerUp = true
	n, err := q.RedriveDeadLetters(ctx, kanban.DeadLetterFilter{Reason: "ledger"})
	fmt.Println("redriven", n, err)
	consume()
	b, _ := q.Backlog(ctx)
	fmt.Println("dead letters left", b.DeadLetters)
	// Output:
	// 1 tx-1 customer-9 ledger closed
	// redriven 1 <nil>
	// posted tx-1 attempt 1
	// dead letters left 0
}

// A service's start creates its queue again while JetStream is out of
// reach — a cluster starting with it answers a moment later — and stops
// at any other error, or after a minute.
func ExampleUnreachable() {
	ctx := context.Background()
	srv, err := natsembed.Start(ctx, natsembed.Options{InProcess: true})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer func() { _ = srv.Shutdown(ctx) }()
	nc, err := srv.Connect()
	if err != nil {
		fmt.Println(err)
		return
	}
	defer nc.Close()

	var q *natsjs.Queue[confirmation]
	deadline := time.Now().Add(time.Minute)
	for wait := 100 * time.Millisecond; ; wait = min(2*wait, 2*time.Second) {
		q, err = natsjs.New[confirmation](ctx, nc, natsjs.Options{Stream: "CONFIRMATIONS"})
		if err == nil || !natsjs.Unreachable(err) || time.Now().Add(wait).After(deadline) {
			break
		}
		time.Sleep(wait)
	}
	if err != nil {
		fmt.Println("no queue:", err)
		return
	}
	fmt.Println("queue", q.Options().Stream, "ready")
	// Output: queue CONFIRMATIONS ready
}
