package natsjs_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/kanban"
	"github.com/taipattern/taikit/kanban/natsembed"
	"github.com/taipattern/taikit/kanban/natsjs"
)

// The differential tests run one scenario on a Memory queue and on a
// JetStream queue and require that the handler sees the same on both:
// IDs, keys, headers, payloads, attempts, order per key, and the dead
// letters left behind.

type diffPayload struct {
	N    int    `json:"n"`
	Text string `json:"text,omitempty"`
	Blob []byte `json:"blob,omitempty"`
}

// seen is what a handler was given, with what it answered.
type seen struct {
	ID, Key string
	Attempt int
	Headers kanban.Header
	Payload diffPayload
}

// diffBackends returns a fresh Memory queue (with a JSON codec, as a
// queue on a wire has) and a fresh JetStream queue on srv.
func diffBackends(t *testing.T, srv *natsembed.Server) map[string]kanban.Queue[diffPayload] {
	t.Helper()
	mem, err := kanban.NewMemory[diffPayload](kanban.MemoryOptions{Codec: kanban.JSON{}})
	require.NoError(t, err)
	js, err := natsjs.New[diffPayload](context.Background(), connect(t, srv.Connect), natsjs.Options{
		Stream:    "DIFF" + strconv.FormatInt(streams.Add(1), 10),
		FetchWait: 20 * time.Millisecond,
		Storage:   natsjs.MemoryStorage,
	})
	require.NoError(t, err)
	t.Cleanup(func() { assert.NoError(t, js.Shutdown(context.Background())) })
	return map[string]kanban.Queue[diffPayload]{"memory": mem, "jetstream": js}
}

// consumeUntil runs q's consumer with opts, h answering each delivery,
// until done (called under a lock with what was seen so far and the
// number of dead letters) says so, and returns what was seen.
func consumeUntil(t *testing.T, q kanban.Queue[diffPayload], opts kanban.ConsumeOptions,
	h func(d kanban.Delivery[diffPayload]) error, done func(seen []seen) bool) []seen {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var mu sync.Mutex
	var got []seen
	changed := make(chan struct{}, 1)
	stopped := make(chan error, 1)
	go func() {
		stopped <- q.Consume(ctx, func(_ context.Context, d kanban.Delivery[diffPayload]) error {
			err := h(d)
			mu.Lock()
			got = append(got, seen{ID: d.ID, Key: d.Key, Attempt: d.Attempt, Headers: d.Headers, Payload: d.Payload})
			mu.Unlock()
			select {
			case changed <- struct{}{}:
			default:
			}
			return err
		}, opts)
	}()
	deadline := time.After(30 * time.Second) // a bound on a broken run, not a timing
	for {
		mu.Lock()
		finished := done(got)
		mu.Unlock()
		if finished {
			break
		}
		select {
		case <-changed:
		case err := <-stopped:
			t.Fatalf("consumer stopped early: %v", err)
		case <-deadline:
			mu.Lock()
			t.Fatalf("scenario not finished; seen %+v", got)
		}
	}
	cancel()
	require.NoError(t, <-stopped)
	mu.Lock()
	defer mu.Unlock()
	return got
}

// waitDeadLetters returns q's dead letters once there are n.
func waitDeadLetters(t *testing.T, q kanban.Queue[diffPayload], n int) []kanban.DeadLetter {
	t.Helper()
	for range 3000 {
		dls, err := q.DeadLetters(context.Background())
		require.NoError(t, err)
		if len(dls) >= n {
			return dls
		}
		time.Sleep(10 * time.Millisecond) // polling a server's state, not timing the test
	}
	t.Fatalf("fewer than %d dead letters", n)
	return nil
}

// comparable strips what differs by design: a dead letter's Seq and Time.
func comparableDeadLetters(dls []kanban.DeadLetter) []kanban.DeadLetter {
	out := make([]kanban.DeadLetter, len(dls))
	for i, d := range dls {
		d.Seq, d.Time = 0, time.Time{}
		if len(d.Headers) == 0 {
			d.Headers = nil
		}
		out[i] = d
	}
	return out
}

var quick = kanban.BackoffFunc(func(int) time.Duration { return time.Millisecond })

func TestDifferentialMemoryAndJetStream(t *testing.T) {
	srv := startServer(t, natsembed.Options{InProcess: true})
	ctx := context.Background()
	type outcome struct {
		Seen        []seen
		DeadLetters []kanban.DeadLetter
		Stats       kanban.QueueStats
	}
	scenarios := []struct {
		name string
		run  func(t *testing.T, q kanban.Queue[diffPayload]) outcome
	}{
		{"round trip of odd headers and payloads", func(t *testing.T, q kanban.Queue[diffPayload]) outcome {
			msgs := []kanban.Message[diffPayload]{
				{ID: "empty"},
				{ID: "nil-headers", Key: "k", Payload: diffPayload{N: 1}},
				{ID: "empty-headers", Headers: kanban.Header{}},
				{ID: "odd", Key: "ключ/é", Payload: diffPayload{Text: "ünï\x00code", Blob: []byte{0, 1, 2}},
					Headers: kanban.Header{"x-lower": "v", "X-Empty": "", "!#$%&'*+-.^_`|~": "a\tb", "X-Unicode": "✓ ok", "traceparent": "00-1-2-01"}},
				{ID: "spaces inside", Key: "a key", Headers: kanban.Header{"X-Colon": "a: b", "X-Inner": "a  b"}},
				{ID: "lookalikes", Headers: kanban.Header{"nats-msg-id": "other", "kanban-key": "other", "X-Kanban-Id": "1"}},
			}
			for _, m := range msgs {
				require.NoError(t, q.Publish(ctx, m), m.ID)
			}
			s := consumeUntil(t, q, kanban.ConsumeOptions{}, func(kanban.Delivery[diffPayload]) error { return nil },
				func(s []seen) bool { return len(s) == len(msgs) })
			for i := range s {
				if len(s[i].Headers) == 0 {
					s[i].Headers = nil // an empty map and nil both mean none
				}
			}
			return outcome{Seen: s, Stats: q.Stats()}
		}},
		{"retried after a delay, then handled", func(t *testing.T, q kanban.Queue[diffPayload]) outcome {
			require.NoError(t, q.Publish(ctx, kanban.Message[diffPayload]{ID: "r", Key: "k", Payload: diffPayload{N: 7}, Headers: kanban.Header{"X-A": "1"}}))
			s := consumeUntil(t, q, kanban.ConsumeOptions{Backoff: quick}, func(d kanban.Delivery[diffPayload]) error {
				if d.Attempt < 3 {
					return errors.New("not yet")
				}
				return nil
			}, func(s []seen) bool { return len(s) == 3 })
			return outcome{Seen: s, Stats: q.Stats()}
		}},
		{"dead letter after MaxAttempts", func(t *testing.T, q kanban.Queue[diffPayload]) outcome {
			require.NoError(t, q.Publish(ctx, kanban.Message[diffPayload]{ID: "d", Key: "k", Payload: diffPayload{N: 3}, Headers: kanban.Header{"X-A": "1"}}))
			s := consumeUntil(t, q, kanban.ConsumeOptions{Backoff: quick, MaxAttempts: 3}, func(d kanban.Delivery[diffPayload]) error {
				return fmt.Errorf("attempt %d failed", d.Attempt)
			}, func(s []seen) bool { return len(s) == 3 })
			return outcome{Seen: s, DeadLetters: comparableDeadLetters(waitDeadLetters(t, q, 1)), Stats: q.Stats()}
		}},
		{"Permanent dead-letters at once", func(t *testing.T, q kanban.Queue[diffPayload]) outcome {
			require.NoError(t, q.Publish(ctx, kanban.Message[diffPayload]{ID: "p", Payload: diffPayload{Text: "x"}}))
			s := consumeUntil(t, q, kanban.ConsumeOptions{Backoff: quick}, func(kanban.Delivery[diffPayload]) error {
				return kanban.Permanent(errors.New("refused"))
			}, func(s []seen) bool { return len(s) == 1 })
			return outcome{Seen: s, DeadLetters: comparableDeadLetters(waitDeadLetters(t, q, 1)), Stats: q.Stats()}
		}},
		{"a repeated ID is stored once", func(t *testing.T, q kanban.Queue[diffPayload]) outcome {
			for _, n := range []int{1, 2, 3} {
				require.NoError(t, q.Publish(ctx, kanban.Message[diffPayload]{ID: "same", Payload: diffPayload{N: n}}))
			}
			require.NoError(t, q.Publish(ctx, kanban.Message[diffPayload]{ID: "last"}))
			s := consumeUntil(t, q, kanban.ConsumeOptions{}, func(kanban.Delivery[diffPayload]) error { return nil },
				func(s []seen) bool { return len(s) == 2 })
			return outcome{Seen: s, Stats: q.Stats()}
		}},
		{"order per key across a retry", func(t *testing.T, q kanban.Queue[diffPayload]) outcome {
			for i := range 4 {
				require.NoError(t, q.Publish(ctx, kanban.Message[diffPayload]{ID: "a" + strconv.Itoa(i), Key: "a", Payload: diffPayload{N: i}}))
			}
			failed := false
			s := consumeUntil(t, q, kanban.ConsumeOptions{WIP: 4, PerKey: true, Backoff: quick}, func(d kanban.Delivery[diffPayload]) error {
				if d.ID == "a1" && !failed {
					failed = true // one key: one handler at a time
					return errors.New("once")
				}
				return nil
			}, func(s []seen) bool { return len(s) == 5 })
			return outcome{Seen: s, Stats: q.Stats()}
		}},
	}
	for _, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) {
			results := map[string]outcome{}
			for name, q := range diffBackends(t, srv) {
				results[name] = sc.run(t, q)
			}
			assert.Equal(t, results["memory"], results["jetstream"])
		})
	}
}
