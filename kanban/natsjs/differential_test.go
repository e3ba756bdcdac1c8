package natsjs_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
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

// TestDifferentialDeadLetterOps lists, redrives and deletes the same
// dead letters of a Memory queue and a JetStream queue with the same
// pseudo-random filters (All, Seq, ID, Key, Reason, Before, and Seq or ID
// with another field), pages (limit, order, cursor) and operations, and
// requires the same pages, counts and errors of both, word for word but
// for the package that names itself first.
func TestDifferentialDeadLetterOps(t *testing.T) {
	srv := startServer(t, natsembed.Options{InProcess: true})
	ctx := context.Background()
	const n = 20
	reasons := []string{"gateway down", "card expired", "gateway slow"}
	for seed := range uint64(20) {
		qs := diffBackends(t, srv)
		times := map[string][]time.Time{} // of each backend's dead letters, in order
		for name, q := range qs {
			for i := range n {
				require.NoError(t, q.Publish(ctx, kanban.Message[diffPayload]{ID: "m" + strconv.Itoa(i), Key: []string{"", "a", "b"}[i%3], Payload: diffPayload{N: i}}))
			}
			consumeUntil(t, q, kanban.ConsumeOptions{WIP: 1}, func(d kanban.Delivery[diffPayload]) error {
				return kanban.Permanent(errors.New(reasons[d.Payload.N%3]))
			}, func(s []seen) bool { return len(s) == n })
			for _, d := range waitDeadLetters(t, q, n) {
				times[name] = append(times[name], d.Time)
			}
		}
		r := rand.New(rand.NewPCG(seed, 1))
		for step := range 60 {
			op := []int{0, 0, 0, 0, 1, 2}[r.IntN(6)] // list, redrive, delete
			which := r.IntN(10)
			seq := uint64(r.IntN(n + 2))
			id := "m" + strconv.Itoa(r.IntN(n+2))
			key := []string{"", "a", "b", "c"}[r.IntN(4)]
			before := r.IntN(n + 2)
			query := kanban.DeadLetterQuery{Limit: r.IntN(4), Newest: r.IntN(2) == 0, Cursor: uint64(r.IntN(n + 2))}
			out := map[string]string{}
			for name, q := range qs {
				s := q.(kanban.DeadLetterStore)
				var f kanban.DeadLetterFilter
				switch which {
				case 0:
					f.All = true
				case 1:
					f.Seq = seq
				case 2:
					f.ID = id
				case 3:
					f.Key = key
				case 4:
					f.Reason = "gateway"
				case 5:
					f.Seq, f.Key = seq, key
				case 6:
					f.ID, f.Reason = id, "expired"
				case 7, 8:
					f.Before = time.Now().Add(time.Hour)
					if before < n {
						f.Before = times[name][before]
					}
					if which == 8 {
						f.Seq = seq
					}
				case 9:
					f.Seq, f.Reason = seq, "slow"
				}
				var res string
				switch op {
				case 0:
					query.Filter = f
					p, err := s.ListDeadLetters(ctx, query)
					var ls []string
					for _, d := range p.Letters {
						ls = append(ls, fmt.Sprintf("%d/%s/%s/%s", d.Seq, d.ID, d.Key, d.Reason))
					}
					res = fmt.Sprintf("list: %v, next %d, total %d, %v", ls, p.Next, p.Total, err)
				case 1:
					c, err := s.RedriveDeadLetters(ctx, f)
					res = fmt.Sprintf("redrive: %d, %v", c, err)
				case 2:
					c, err := s.DeleteDeadLetters(ctx, f)
					res = fmt.Sprintf("delete: %d, %v", c, err)
				}
				res = strings.ReplaceAll(res, "natsjs: ", "kanban: ")
				if !f.Before.IsZero() {
					// Each backend timed its own dead letters.
					res = strings.ReplaceAll(res, f.Before.UTC().Format(time.RFC3339Nano), "<before>")
					for i, at := range times[name] {
						res = strings.ReplaceAll(res, at.UTC().Format(time.RFC3339Nano), "<time "+strconv.Itoa(i)+">")
					}
				}
				out[name] = res
			}
			require.Equal(t, out["memory"], out["jetstream"], "seed %d, step %d: %+v of filter %d, seq %d, id %s, key %q, before %d",
				seed, step, query, which, seq, id, key, before)
		}
	}
}
