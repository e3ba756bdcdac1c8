package kanban_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"pgregory.net/rapid"

	"github.com/taipattern/taikit/kanban"
)

// concConsumer is one consumer of TestMemoryConcurrentConsumers: its
// options, and when it stops (0: at the end).
type concConsumer struct {
	opts   kanban.ConsumeOptions
	start  time.Duration
	stopAt time.Duration
	drain  time.Duration
}

// concMsg is a message of TestMemoryConcurrentConsumers: its key, how
// long each call takes, and whether each call fails.
type concMsg struct {
	key   string
	at    time.Duration // published this long after the start
	took  []time.Duration
	fails []int // 0 succeeds, 1 fails, 2 fails for good
}

// TestMemoryConcurrentConsumers runs several consumers of one Memory
// queue at once — with and without PerKey, with their own WIP and
// MaxAttempts, some stopped part way with a drain deadline that may cut
// handlers short — while messages are published into a small queue
// (Publish waiting for room), on synctest's clock, and requires: no
// consumer runs more handlers at once than its WIP; no message is in two
// handlers at once; a PerKey consumer runs one message of a key at a
// time; a message's attempts count up by one (again the same after a
// drain deadline cancelled it); and in the end every message was handled
// once or dead-lettered once, none left, none in flight.
func TestMemoryConcurrentConsumers(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		capacity := rapid.IntRange(1, 6).Draw(rt, "capacity")
		var consumers []concConsumer
		for range rapid.IntRange(1, 4).Draw(rt, "consumers") {
			c := concConsumer{
				opts: kanban.ConsumeOptions{
					WIP:         rapid.IntRange(1, 3).Draw(rt, "wip"),
					PerKey:      rapid.Bool().Draw(rt, "perKey"),
					MaxAttempts: rapid.IntRange(1, 4).Draw(rt, "maxAttempts"),
				},
				start: concMs(rapid.IntRange(0, 300).Draw(rt, "start")),
			}
			backoff := concMs(rapid.IntRange(0, 100).Draw(rt, "backoff"))
			c.opts.Backoff = kanban.BackoffFunc(func(int) time.Duration { return backoff })
			if rapid.Bool().Draw(rt, "stops") {
				c.stopAt = c.start + concMs(rapid.IntRange(0, 400).Draw(rt, "stopAt"))
				if rapid.Bool().Draw(rt, "drainTimesOut") {
					c.drain = concMs(rapid.IntRange(0, 100).Draw(rt, "drain")) + 500*time.Microsecond
				}
			}
			consumers = append(consumers, c)
		}
		var msgs []concMsg
		at := 0
		for range rapid.IntRange(1, 16).Draw(rt, "messages") {
			at += rapid.IntRange(0, 40).Draw(rt, "gap")
			m := concMsg{key: []string{"", "a", "b"}[rapid.IntRange(0, 2).Draw(rt, "key")], at: concMs(at)}
			for range 5 {
				m.took = append(m.took, concMs(rapid.IntRange(0, 80).Draw(rt, "took")))
				m.fails = append(m.fails, rapid.IntRange(0, 2).Draw(rt, "fails"))
			}
			msgs = append(msgs, m)
		}
		if f := runConcurrentConsumers(t, capacity, consumers, msgs); f != "" {
			rt.Fatal(f)
		}
	})
}

func runConcurrentConsumers(t *testing.T, capacity int, consumers []concConsumer, msgs []concMsg) (failure string) {
	final := concConsumer{opts: kanban.ConsumeOptions{WIP: 1, MaxAttempts: 100,
		Backoff: kanban.BackoffFunc(func(int) time.Duration { return time.Millisecond })}}
	consumers = append(consumers[:len(consumers):len(consumers)], final)
	synctest.Test(t, func(*testing.T) {
		q, err := kanban.NewMemory[int](kanban.MemoryOptions{Capacity: capacity, DeadLetterLimit: len(msgs) + 1})
		if err != nil {
			failure = err.Error()
			return
		}
		var (
			mu       sync.Mutex
			problem  string
			inHand   = map[int]int{}               // handlers running per message
			running  = make([]int, len(consumers)) // handlers running per consumer
			keys     = make([]map[string]int, len(consumers))
			attempts = map[int][]int{} // the attempts each message was handed with
			cut      = map[int]bool{}  // its last call was cancelled by a drain deadline
			calls    = map[int]int{}
			handled  = map[int]int{}
		)
		report := func(format string, args ...any) {
			if problem == "" {
				problem = fmt.Sprintf(format, args...)
			}
		}
		handler := func(ci int) kanban.Handler[int] {
			return func(ctx context.Context, d kanban.Delivery[int]) error {
				i := d.Payload
				m := msgs[i]
				mu.Lock()
				c := calls[i]
				calls[i]++
				if prev := attempts[i]; len(prev) > 0 {
					last := prev[len(prev)-1]
					if want := last + 1; cut[i] {
						want = last
						if d.Attempt != want {
							report("message %d handed as attempt %d after attempt %d was cut short", i, d.Attempt, last)
						}
					} else if d.Attempt != want {
						report("message %d handed as attempt %d after attempt %d", i, d.Attempt, last)
					}
				} else if d.Attempt != 1 {
					report("message %d handed first as attempt %d", i, d.Attempt)
				}
				attempts[i] = append(attempts[i], d.Attempt)
				cut[i] = false
				inHand[i]++
				if inHand[i] > 1 {
					report("message %d in %d handlers at once", i, inHand[i])
				}
				running[ci]++
				if running[ci] > consumers[ci].opts.WIP {
					report("consumer %d runs %d handlers, WIP %d", ci, running[ci], consumers[ci].opts.WIP)
				}
				if consumers[ci].opts.PerKey && d.Key != "" {
					keys[ci][d.Key]++
					if keys[ci][d.Key] > 1 {
						report("consumer %d runs two messages of key %q", ci, d.Key)
					}
				}
				mu.Unlock()
				var err error
				switch m.fails[c%len(m.fails)] {
				case 1:
					err = errors.New("fail " + strconv.Itoa(c))
				case 2:
					err = kanban.Permanent(errors.New("permanent " + strconv.Itoa(c)))
				}
				tm := time.NewTimer(m.took[c%len(m.took)])
				select {
				case <-tm.C:
				case <-ctx.Done():
					tm.Stop()
					err = ctx.Err()
				}
				mu.Lock()
				inHand[i]--
				running[ci]--
				if consumers[ci].opts.PerKey && d.Key != "" {
					keys[ci][d.Key]--
				}
				if ctx.Err() != nil {
					cut[i] = true
				} else if err == nil {
					handled[i]++
				}
				mu.Unlock()
				return err
			}
		}

		start := time.Now()
		var wg sync.WaitGroup
		// The publisher: each message at its time, waiting for room.
		wg.Go(func() {
			for i, m := range msgs {
				time.Sleep(time.Until(start.Add(m.at)))
				if err := q.Publish(context.Background(), kanban.Message[int]{ID: "m" + strconv.Itoa(i), Key: m.key, Payload: i}); err != nil {
					mu.Lock()
					report("publish %d: %v", i, err)
					mu.Unlock()
				}
			}
		})
		ctx, stopAll := context.WithCancel(context.Background())
		for ci := range consumers {
			keys[ci] = map[string]int{}
		}
		for ci, c := range consumers[:len(consumers)-1] {
			wg.Go(func() {
				time.Sleep(c.start)
				cctx := ctx
				opts := c.opts
				if c.stopAt > 0 {
					var cancel context.CancelFunc
					cctx, cancel = context.WithTimeout(ctx, c.stopAt-c.start)
					defer cancel()
					opts.DrainTimeout = c.drain
				}
				err := q.Consume(cctx, handler(ci), opts)
				if err != nil && !(opts.DrainTimeout > 0 && errors.Is(err, kanban.ErrDrainTimeout)) {
					mu.Lock()
					report("consumer %d: %v", ci, err)
					mu.Unlock()
				}
			})
		}
		// Once every consumer that stops has stopped, one more takes
		// what is left; then everything stops.
		last := make(chan struct{})
		wg.Go(func() {
			defer close(last)
			lastStop := time.Duration(0)
			for _, c := range consumers[:len(consumers)-1] {
				lastStop = max(lastStop, c.stopAt, c.start)
			}
			time.Sleep(time.Until(start.Add(lastStop + time.Millisecond)))
			lctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() {
				done <- q.Consume(lctx, handler(len(consumers)-1), final.opts)
			}()
			for deadline := time.Now().Add(time.Hour); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
				mu.Lock()
				n := len(handled)
				mu.Unlock()
				dl, _ := q.DeadLetters(context.Background())
				if n+len(dl) == len(msgs) && q.Len() == 0 {
					break
				}
			}
			cancel()
			if err := <-done; err != nil {
				mu.Lock()
				report("last consumer: %v", err)
				mu.Unlock()
			}
		})
		<-last
		stopAll()
		wg.Wait()

		if problem != "" {
			failure = problem
			return
		}
		dl, err := q.DeadLetters(context.Background())
		if err != nil {
			failure = err.Error()
			return
		}
		deadOf := map[int]int{}
		for _, d := range dl {
			n, _ := strconv.Atoi(d.ID[1:])
			deadOf[n]++
		}
		for i := range msgs {
			if handled[i]+deadOf[i] != 1 {
				failure = fmt.Sprintf("message %d handled %d times and dead-lettered %d times; attempts %v", i, handled[i], deadOf[i], attempts[i])
				return
			}
		}
		if n := q.Len(); n != 0 {
			failure = fmt.Sprintf("%d messages left", n)
			return
		}
		if s := q.Stats(); s.InFlight != 0 || s.Published != int64(len(msgs)) {
			failure = fmt.Sprintf("stats %+v", s)
		}
	})
	return failure
}

func concMs(n int) time.Duration { return time.Duration(n) * time.Millisecond }
