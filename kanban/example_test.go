package kanban_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/taipattern/taikit/kanban"
)

type deploy struct {
	Service, Version string
}

// Regions are deployed one at a time each (PerKey), several regions at
// once (WIP).
func Example() {
	q, err := kanban.NewMemory[deploy](kanban.MemoryOptions{})
	if err != nil {
		fmt.Println(err)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for i, region := range []string{"eu", "us", "eu", "us"} {
		_ = q.Publish(ctx, kanban.Message[deploy]{
			ID: fmt.Sprint("d", i), Key: region, Payload: deploy{"api", fmt.Sprint("v", i)},
		})
	}
	var mu sync.Mutex
	done := map[string][]string{}
	err = q.Consume(ctx, func(ctx context.Context, d kanban.Delivery[deploy]) error {
		mu.Lock()
		defer mu.Unlock()
		done[d.Key] = append(done[d.Key], d.Payload.Version)
		if len(done["eu"])+len(done["us"]) == 4 {
			cancel() // stop consuming; the drain finishes what runs
		}
		return nil
	}, kanban.ConsumeOptions{WIP: 2, PerKey: true})
	fmt.Println(err, done["eu"], done["us"])
	// Output: <nil> [v0 v2] [v1 v3]
}

// A message that keeps failing ends among the dead letters with its
// reason; Permanent skips the retries.
func ExamplePermanent() {
	q, _ := kanban.NewMemory[string](kanban.MemoryOptions{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = q.Publish(ctx, kanban.Message[string]{ID: "p1", Payload: "card 4000-0000"})
	_ = q.Consume(ctx, func(ctx context.Context, d kanban.Delivery[string]) error {
		defer cancel()
		return kanban.Permanent(errors.New("card declined"))
	}, kanban.ConsumeOptions{})
	dl, _ := q.DeadLetters(context.Background())
	fmt.Println(dl[0].ID, dl[0].Reason, dl[0].Attempts)
	// Output: p1 card declined 1
}

// TryPublish does not wait for room.
func ExampleMemory_TryPublish() {
	q, _ := kanban.NewMemory[int](kanban.MemoryOptions{Capacity: 1})
	ctx := context.Background()
	fmt.Println(q.TryPublish(ctx, kanban.Message[int]{ID: "a"}))
	fmt.Println(q.TryPublish(ctx, kanban.Message[int]{ID: "b"}))
	// Output:
	// <nil>
	// kanban: queue full
}

func ExampleExponential() {
	b := kanban.Exponential{Initial: time.Second, Max: 10 * time.Second, Jitter: -1}
	for attempt := 1; attempt <= 5; attempt++ {
		fmt.Print(b.Delay(attempt), " ")
	}
	fmt.Println()
	// Output: 1s 2s 4s 8s 10s
}

// Stats feeds metrics collectors.
func ExampleMemory_Stats() {
	q, _ := kanban.NewMemory[int](kanban.MemoryOptions{})
	ctx := context.Background()
	_ = q.Publish(ctx, kanban.Message[int]{ID: "a"})
	_ = q.Publish(ctx, kanban.Message[int]{ID: "a"})
	fmt.Printf("%+v\n", q.Stats())
	// Output: {Published:1 Duplicates:1 Handled:0 Retried:0 Redelivered:0 DeadLettered:0 Redriven:0 InFlight:0}
}

// NewMessage gives work without an identity of its own a unique ID.
func ExampleNewMessage() {
	q, _ := kanban.NewMemory[string](kanban.MemoryOptions{})
	ctx := context.Background()
	m := kanban.NewMessage("eu-west", "rebuild the search index")
	_ = q.Publish(ctx, m)
	_ = q.Publish(ctx, m) // the same message again: dropped
	fmt.Println(len(m.ID), m.Key, q.Len())
	// Output: 32 eu-west 1
}

// Backoff and Permanent serve any retry loop, not only the consumer's:
// here a call to a remote service, retried with back-off until it
// succeeds, fails for good, or the attempts run out.
func ExampleBackoff() {
	backoff := kanban.Exponential{Initial: time.Millisecond, Max: 10 * time.Millisecond}
	calls := 0
	send := func(context.Context) error { // fails twice, then rejects the request
		if calls++; calls < 3 {
			return errors.New("connection reset")
		}
		return kanban.Permanent(errors.New("400 bad request"))
	}

	ctx := context.Background()
	var err error
	for attempt := 1; attempt <= 5; attempt++ {
		if err = send(ctx); err == nil || kanban.IsPermanent(err) {
			break
		}
		time.Sleep(backoff.Delay(attempt))
	}
	fmt.Println(calls, err, kanban.IsPermanent(err))
	// Output: 3 400 bad request true
}

// Dead letters are listed, then sent back to the queue once what failed
// them is fixed.
func ExampleMemory_RedriveDeadLetters() {
	q, _ := kanban.NewMemory[string](kanban.MemoryOptions{})
	ctx, cancel := context.WithCancel(context.Background())
	for _, id := range []string{"a", "b", "c"} {
		_ = q.Publish(ctx, kanban.Message[string]{ID: id, Key: "customer-" + id, Payload: id})
	}
	refused := 0
	_ = q.Consume(ctx, func(_ context.Context, d kanban.Delivery[string]) error {
		if refused++; refused == 3 {
			cancel()
		}
		return kanban.Permanent(errors.New("gateway down"))
	}, kanban.ConsumeOptions{})

	page, _ := q.ListDeadLetters(context.Background(), kanban.DeadLetterQuery{Newest: true, Limit: 2})
	for _, d := range page.Letters {
		fmt.Println(d.Seq, d.ID, d.Reason)
	}
	fmt.Println("next page after", page.Next, "of", page.Total)

	n, err := q.RedriveDeadLetters(context.Background(), kanban.DeadLetterFilter{Reason: "gateway"})
	fmt.Println("redriven", n, err, "waiting", q.Len())
	_, err = q.DeleteDeadLetters(context.Background(), kanban.DeadLetterFilter{})
	fmt.Println(err)
	// Output:
	// 3 c gateway down
	// 2 b gateway down
	// next page after 2 of 3
	// redriven 3 <nil> waiting 3
	// kanban: dead-letter filter is empty; set All to act on every dead letter
}
