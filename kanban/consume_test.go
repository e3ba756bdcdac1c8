package kanban_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/kanban"
)

// logRecorder keeps the records logged to it.
type logRecorder struct {
	mu      sync.Mutex
	records []slog.Record
}

func (l *logRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (l *logRecorder) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.records = append(l.records, r.Clone())
	return nil
}
func (l *logRecorder) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *logRecorder) WithGroup(string) slog.Handler      { return l }

// attrs returns the attributes of the records with message msg.
func (l *logRecorder) attrs(msg string) []map[string]any {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []map[string]any
	for _, r := range l.records {
		if r.Message != msg {
			continue
		}
		m := map[string]any{"level": r.Level}
		r.Attrs(func(a slog.Attr) bool {
			m[a.Key] = a.Value.Any()
			return true
		})
		out = append(out, m)
	}
	return out
}

// TestPanickingHandler: a handler's panic is recovered into a PanicError
// logged with its stack; the message is retried as after an error, then
// dead-lettered with the panic as reason; a panic with a Permanent error
// dead-letters it at once.
func TestPanickingHandler(t *testing.T) {
	tests := []struct {
		name     string
		value    any
		attempts int // deliveries before the message is dead-lettered
		reason   string
	}{
		{"retried, then dead-lettered", "boom", 3, "kanban: panic in handler: boom"},
		{"permanent", kanban.Permanent(errors.New("corrupt")), 1, "kanban: panic in handler: corrupt"},
	}
	for _, tc := range tests {
		for _, perKey := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/PerKey=%v", tc.name, perKey), func(t *testing.T) {
				synctest.Test(t, func(t *testing.T) {
					q, err := kanban.NewMemory[int](kanban.MemoryOptions{})
					require.NoError(t, err)
					require.NoError(t, q.Publish(context.Background(), kanban.Message[int]{ID: "p", Key: "k"}))
					var log logRecorder
					ctx, cancel := context.WithCancel(context.Background())
					calls := 0
					err = q.Consume(ctx, func(_ context.Context, d kanban.Delivery[int]) error {
						if calls++; calls == tc.attempts {
							defer cancel()
						}
						panicInHandler(tc.value)
						return nil
					}, kanban.ConsumeOptions{
						MaxAttempts: 3, PerKey: perKey, Logger: slog.New(&log),
						Backoff: kanban.BackoffFunc(func(int) time.Duration { return time.Second }),
					})
					require.NoError(t, err)
					assert.Equal(t, tc.attempts, calls)

					dl, err := q.DeadLetters(context.Background())
					require.NoError(t, err)
					require.Len(t, dl, 1)
					assert.Equal(t, tc.reason, dl[0].Reason)
					assert.Equal(t, tc.attempts, dl[0].Attempts)
					assert.Equal(t, kanban.QueueStats{Published: 1, Retried: int64(tc.attempts - 1), Redelivered: int64(tc.attempts - 1), DeadLettered: 1}, q.Stats())

					logged := log.attrs("kanban: handler panicked")
					require.Len(t, logged, tc.attempts, "each panic is logged")
					for i, a := range logged {
						assert.Equal(t, slog.LevelError, a["level"])
						assert.Equal(t, "p", a["id"])
						assert.EqualValues(t, i+1, a["attempt"])
						var p *kanban.PanicError
						require.ErrorAs(t, a["err"].(error), &p)
						assert.Equal(t, tc.value, p.Value)
						assert.Contains(t, string(p.Stack), "kanban_test.panicInHandler", "the stack is where the handler panicked")
						assert.Equal(t, string(p.Stack), a["stack"])
					}
				})
			})
		}
	}
}

//go:noinline
func panicInHandler(v any) { panic(v) }

// TestPanicWithoutLogger: with no Logger the panic is still recovered, and
// the consumer goes on to the next message.
func TestPanicWithoutLogger(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		q, err := kanban.NewMemory[int](kanban.MemoryOptions{})
		require.NoError(t, err)
		for _, id := range []string{"bad", "good"} {
			require.NoError(t, q.Publish(context.Background(), kanban.Message[int]{ID: id}))
		}
		ctx, cancel := context.WithCancel(context.Background())
		var handled []string
		err = q.Consume(ctx, func(_ context.Context, d kanban.Delivery[int]) error {
			if d.ID == "bad" {
				panic("boom")
			}
			handled = append(handled, d.ID)
			cancel()
			return nil
		}, kanban.ConsumeOptions{MaxAttempts: 1})
		require.NoError(t, err)
		assert.Equal(t, []string{"good"}, handled)
		dl, err := q.DeadLetters(context.Background())
		require.NoError(t, err)
		require.Len(t, dl, 1)
		assert.Equal(t, "kanban: panic in handler: boom", dl[0].Reason)
	})
}

// TestOverDeliveredMessageIsDeadLettered: a message delivered more often
// than the consumer's MaxAttempts — here retried by a consumer that
// allowed more — goes to the dead letters without running the handler.
func TestOverDeliveredMessageIsDeadLettered(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		q, err := kanban.NewMemory[int](kanban.MemoryOptions{})
		require.NoError(t, err)
		require.NoError(t, q.Publish(context.Background(), kanban.Message[int]{ID: "m"}))
		hour := kanban.BackoffFunc(func(int) time.Duration { return time.Hour })
		ctx, cancel := context.WithCancel(context.Background())
		err = q.Consume(ctx, func(_ context.Context, d kanban.Delivery[int]) error {
			if d.Attempt == 3 {
				cancel()
			}
			return errors.New("failing")
		}, kanban.ConsumeOptions{MaxAttempts: 5, Backoff: hour})
		require.NoError(t, err)
		time.Sleep(time.Hour) // the fourth delivery is due

		ctx, cancel = context.WithCancel(context.Background())
		done := make(chan error, 1)
		called := false
		go func() {
			done <- q.Consume(ctx, func(context.Context, kanban.Delivery[int]) error {
				called = true
				return nil
			}, kanban.ConsumeOptions{MaxAttempts: 2})
		}()
		synctest.Wait()
		cancel()
		require.NoError(t, <-done)
		assert.False(t, called)
		dl, err := q.DeadLetters(context.Background())
		require.NoError(t, err)
		require.Len(t, dl, 1)
		assert.Equal(t, "kanban: delivered 4 times, more than MaxAttempts 2", dl[0].Reason)
		assert.Equal(t, 4, dl[0].Attempts)
		assert.Equal(t, kanban.QueueStats{Published: 1, Retried: 3, Redelivered: 2, DeadLettered: 1}, q.Stats())
		assert.Zero(t, q.Len())
	})
}

// TestKeyedRetryWaitingAsTheConsumerStops: a keyed message waiting in
// place for its retry when the consumer stops is not tried again by it:
// it goes back to the queue, to come back after its back-off.
func TestKeyedRetryWaitingAsTheConsumerStops(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		q, err := kanban.NewMemory[int](kanban.MemoryOptions{})
		require.NoError(t, err)
		require.NoError(t, q.Publish(context.Background(), kanban.Message[int]{ID: "m", Key: "k"}))
		opts := kanban.ConsumeOptions{PerKey: true, Backoff: kanban.BackoffFunc(func(int) time.Duration { return time.Hour })}
		ctx, cancel := context.WithCancel(context.Background())
		var attempts []int
		done := make(chan error, 1)
		go func() {
			done <- q.Consume(ctx, func(_ context.Context, d kanban.Delivery[int]) error {
				attempts = append(attempts, d.Attempt)
				return errors.New("failing")
			}, opts)
		}()
		synctest.Wait() // the first attempt failed; the retry waits in place
		start := time.Now()
		cancel()
		require.NoError(t, <-done)
		assert.Zero(t, time.Since(start), "the stop does not wait for the back-off")
		assert.Equal(t, []int{1}, attempts, "no attempt once the consumer stopped")
		assert.Equal(t, 1, q.Len())

		ctx, cancel = context.WithCancel(context.Background())
		err = q.Consume(ctx, func(_ context.Context, d kanban.Delivery[int]) error {
			attempts = append(attempts, d.Attempt)
			cancel()
			return nil
		}, opts)
		require.NoError(t, err)
		assert.Equal(t, []int{1, 2}, attempts)
		assert.Equal(t, time.Hour, time.Since(start), "it came back after its back-off")
	})
}

// TestDrainHandsBackInOrderToAWaitingConsumer stops a consumer holding
// messages it has not started while another consumer of the queue waits:
// the other gets them in their order, of one key with PerKey, in the order
// published without.
func TestDrainHandsBackInOrderToAWaitingConsumer(t *testing.T) {
	// With PerKey the first consumer pulls 4 and runs one; without, its
	// first worker takes 4 (half the 8 ready) and runs one, and its other
	// worker handles the rest.
	for _, c := range []struct {
		perKey bool
		wip    int
	}{{true, 4}, {false, 2}} {
		t.Run(fmt.Sprintf("PerKey=%v", c.perKey), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				ctx := context.Background()
				q, err := kanban.NewMemory[int](kanban.MemoryOptions{})
				require.NoError(t, err)
				for i := range 8 {
					require.NoError(t, q.Publish(ctx, kanban.Message[int]{ID: strconv.Itoa(i), Key: "k", Payload: i}))
				}
				// The first consumer takes messages and keeps some waiting
				// behind the first, whose handler runs until let go.
				letGo := make(chan struct{})
				first, stopFirst := context.WithCancel(ctx)
				firstDone := make(chan error)
				go func() {
					firstDone <- q.Consume(first, func(_ context.Context, d kanban.Delivery[int]) error {
						if d.Payload == 0 {
							<-letGo
						}
						return nil
					}, kanban.ConsumeOptions{WIP: c.wip, PerKey: c.perKey})
				}()
				synctest.Wait()

				var mu sync.Mutex
				var seen []int
				second, stopSecond := context.WithCancel(ctx)
				secondDone := make(chan error)
				go func() {
					secondDone <- q.Consume(second, func(_ context.Context, d kanban.Delivery[int]) error {
						mu.Lock()
						seen = append(seen, d.Payload)
						mu.Unlock()
						return nil
					}, kanban.ConsumeOptions{PerKey: c.perKey})
				}()
				synctest.Wait()
				mu.Lock()
				seen = nil // what it handled before the first consumer stopped
				mu.Unlock()

				stopFirst()
				synctest.Wait()
				close(letGo)
				require.NoError(t, <-firstDone)
				synctest.Wait()
				stopSecond()
				require.NoError(t, <-secondDone)
				assert.Equal(t, []int{1, 2, 3}, seen)
				assert.Zero(t, q.Len())
			})
		})
	}
}

// TestKeyedOrderAcrossAStopDuringARetry pins what ConsumeOptions.PerKey
// says of a drain in the middle of a key's retries: the message waiting
// for its retry comes back after its back-off, while the messages of its
// key pulled behind it are handed back at once, so the next consumer
// handles them first.
func TestKeyedOrderAcrossAStopDuringARetry(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		q, err := kanban.NewMemory[int](kanban.MemoryOptions{})
		require.NoError(t, err)
		for _, id := range []string{"1", "2", "3"} {
			require.NoError(t, q.Publish(context.Background(), kanban.Message[int]{ID: id, Key: "k"}))
		}
		opts := kanban.ConsumeOptions{WIP: 3, PerKey: true, Backoff: kanban.BackoffFunc(func(int) time.Duration { return time.Hour })}
		var seen []string
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() {
			done <- q.Consume(ctx, func(_ context.Context, d kanban.Delivery[int]) error {
				seen = append(seen, fmt.Sprintf("%s@%d", d.ID, d.Attempt))
				return errors.New("failing")
			}, opts)
		}()
		synctest.Wait() // 1 failed and waits in place; 2 and 3 wait behind it
		cancel()
		require.NoError(t, <-done)
		assert.Equal(t, []string{"1@1"}, seen)

		start := time.Now()
		ctx, cancel = context.WithCancel(context.Background())
		defer cancel()
		go func() {
			done <- q.Consume(ctx, func(_ context.Context, d kanban.Delivery[int]) error {
				seen = append(seen, fmt.Sprintf("%s@%d@%v", d.ID, d.Attempt, time.Since(start)))
				return nil
			}, opts)
		}()
		time.Sleep(2 * time.Hour)
		synctest.Wait()
		cancel()
		require.NoError(t, <-done)
		assert.Equal(t, []string{"1@1", "2@1@0s", "3@1@0s", "1@2@1h0m0s"}, seen)
		assert.Zero(t, q.Len())
	})
}

// unreadableErr is an error whose methods read their receiver: returned
// as a nil *unreadableErr (a typed nil), its Error and Unwrap panic.
type unreadableErr struct{ cause error }

func (e *unreadableErr) Error() string { return "unreadable: " + e.cause.Error() }
func (e *unreadableErr) Unwrap() error { return e.cause }

// TestUnreadableHandlerError: a handler error that panics when read (a
// typed nil whose Error and Unwrap read their receiver) fails the attempt
// as a panic in the handler does: logged, retried, then dead-lettered. The
// queue read it outside the handler's recovery, to learn whether it was
// Permanent and for its text, and the panic ended the process.
func TestUnreadableHandlerError(t *testing.T) {
	for _, tc := range []struct{ perKey, panics bool }{{false, false}, {true, false}, {false, true}} {
		perKey, panics := tc.perKey, tc.panics
		t.Run(fmt.Sprintf("PerKey=%v/panics=%v", perKey, panics), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				q, err := kanban.NewMemory[int](kanban.MemoryOptions{})
				require.NoError(t, err)
				require.NoError(t, q.Publish(context.Background(), kanban.Message[int]{ID: "p", Key: "k"}))
				var log logRecorder
				ctx, cancel := context.WithCancel(context.Background())
				calls := 0
				err = q.Consume(ctx, func(context.Context, kanban.Delivery[int]) error {
					if calls++; calls == 2 {
						defer cancel()
					}
					var typedNil *unreadableErr
					if panics {
						panic(typedNil) // the PanicError unwraps to it
					}
					return typedNil
				}, kanban.ConsumeOptions{
					MaxAttempts: 2, PerKey: perKey, Logger: slog.New(&log),
					Backoff: kanban.BackoffFunc(func(int) time.Duration { return time.Second }),
				})
				require.NoError(t, err)
				assert.Equal(t, 2, calls)

				dl, err := q.DeadLetters(context.Background())
				require.NoError(t, err)
				require.Len(t, dl, 1)
				read := "*kanban_test.unreadableErr"
				if panics {
					read = "*kanban.PanicError" // which unwraps to the typed nil
				}
				assert.Contains(t, dl[0].Reason, "kanban: panic in handler: reading its error "+read+": ")
				assert.Equal(t, 2, dl[0].Attempts)
				logged := log.attrs("kanban: handler panicked")
				if panics {
					// The panic, then reading the PanicError, each attempt.
					require.Len(t, logged, 4)
					return
				}
				require.Len(t, logged, 2, "each attempt is logged")
				var p *kanban.PanicError
				require.ErrorAs(t, logged[0]["err"].(error), &p)
				assert.Contains(t, string(p.Stack), "unreadableErr", "the stack is where reading the error panicked")
			})
		})
	}
}

// TestKeyedRetryStoppedPartWayThroughItsBackoff: a keyed message that has
// waited in place for part of its back-off when the consumer stops comes
// back once the rest of it has passed: the back-off counts from the
// failure, not from the stop.
func TestKeyedRetryStoppedPartWayThroughItsBackoff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		q, err := kanban.NewMemory[int](kanban.MemoryOptions{})
		require.NoError(t, err)
		require.NoError(t, q.Publish(context.Background(), kanban.Message[int]{ID: "m", Key: "k"}))
		opts := kanban.ConsumeOptions{PerKey: true, Backoff: kanban.BackoffFunc(func(int) time.Duration { return time.Hour })}
		ctx, cancel := context.WithCancel(context.Background())
		start := time.Now()
		done := make(chan error, 1)
		go func() {
			done <- q.Consume(ctx, func(context.Context, kanban.Delivery[int]) error {
				return errors.New("failing")
			}, opts)
		}()
		time.Sleep(50 * time.Minute) // the retry waits in place
		cancel()
		require.NoError(t, <-done)

		var came time.Duration
		ctx, cancel = context.WithCancel(context.Background())
		err = q.Consume(ctx, func(_ context.Context, d kanban.Delivery[int]) error {
			came = time.Since(start)
			assert.Equal(t, 2, d.Attempt)
			cancel()
			return nil
		}, opts)
		require.NoError(t, err)
		assert.Equal(t, time.Hour, came, "it came back an hour after it failed")
	})
}

// TestDrainHandsBackEveryKeyInPullOrder: the messages waiting behind
// their keys' running ones when a PerKey consumer stops come back in the
// order they were pulled, across keys too, as Serve says: not in the
// order of the consumer's map of keys.
func TestDrainHandsBackEveryKeyInPullOrder(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		q, err := kanban.NewMemory[int](kanban.MemoryOptions{})
		require.NoError(t, err)
		const keys = 12
		// The first message of every key, then the second of every key.
		for i := range 2 * keys {
			key := "k" + strconv.Itoa(i%keys)
			require.NoError(t, q.Publish(ctx, kanban.Message[int]{ID: strconv.Itoa(i), Key: key, Payload: i}))
		}
		// The first consumer pulls them all and runs each key's first,
		// until let go; each key's second waits behind it.
		letGo := make(chan struct{})
		first, stopFirst := context.WithCancel(ctx)
		firstDone := make(chan error)
		go func() {
			firstDone <- q.Consume(first, func(_ context.Context, d kanban.Delivery[int]) error {
				<-letGo
				return nil
			}, kanban.ConsumeOptions{WIP: 2 * keys, PerKey: true})
		}()
		synctest.Wait()
		stopFirst()
		synctest.Wait()
		close(letGo)
		require.NoError(t, <-firstDone)

		var seen []int
		second, stopSecond := context.WithCancel(ctx)
		secondDone := make(chan error)
		go func() {
			secondDone <- q.Consume(second, func(_ context.Context, d kanban.Delivery[int]) error {
				seen = append(seen, d.Payload) // WIP 1: one handler at a time
				return nil
			}, kanban.ConsumeOptions{PerKey: true})
		}()
		synctest.Wait()
		stopSecond()
		require.NoError(t, <-secondDone)
		want := make([]int, 0, keys)
		for i := keys; i < 2*keys; i++ {
			want = append(want, i)
		}
		assert.Equal(t, want, seen)
		assert.Zero(t, q.Len())
	})
}

// TestRetryInPlaceDecodesAfresh: with a Codec, each attempt of a keyed
// message retried in place (PerKey) gets the payload decoded from the
// stored bytes again, as a retry without PerKey does: what a failed
// attempt wrote into its payload's maps and slices is not what the next
// attempt reads. Also when the attempt ended its goroutine
// (runtime.Goexit), whose next attempt another goroutine makes.
func TestRetryInPlaceDecodesAfresh(t *testing.T) {
	type payload struct {
		Meta map[string]string `json:"meta"`
		Tags []string          `json:"tags"`
	}
	for _, goexit := range []bool{false, true} {
		for _, perKey := range []bool{false, true} {
			t.Run(fmt.Sprintf("PerKey=%v/Goexit=%v", perKey, goexit), func(t *testing.T) {
				synctest.Test(t, func(t *testing.T) {
					q, err := kanban.NewMemory[payload](kanban.MemoryOptions{Codec: kanban.JSON{}})
					require.NoError(t, err)
					require.NoError(t, q.Publish(context.Background(), kanban.Message[payload]{
						ID: "m", Key: "k", Payload: payload{Meta: map[string]string{"a": "1"}, Tags: []string{"x"}},
					}))
					ctx, cancel := context.WithCancel(context.Background())
					var seen []payload
					opts := kanban.ConsumeOptions{PerKey: perKey, Logger: slog.New(slog.DiscardHandler),
						Backoff: kanban.BackoffFunc(func(int) time.Duration { return time.Second })}
					err = q.Consume(ctx, func(_ context.Context, d kanban.Delivery[payload]) error {
						seen = append(seen, payload{Meta: maps.Clone(d.Payload.Meta), Tags: slices.Clone(d.Payload.Tags)})
						if d.Attempt == 1 {
							d.Payload.Meta["a"] = "changed"
							d.Payload.Tags[0] = "changed"
							if goexit {
								runtime.Goexit()
							}
							return errors.New("failing")
						}
						cancel()
						return nil
					}, opts)
					require.NoError(t, err)
					want := payload{Meta: map[string]string{"a": "1"}, Tags: []string{"x"}}
					assert.Equal(t, []payload{want, want}, seen)
				})
			})
		}
	}
}

// flakyCodec is JSON whose Unmarshal fails, or ends its goroutine, on its
// second call.
type flakyCodec struct {
	calls  *int
	goexit bool
}

func (c flakyCodec) Marshal(v any) ([]byte, error) { return kanban.JSON{}.Marshal(v) }

func (c flakyCodec) Unmarshal(data []byte, v any) error {
	if *c.calls++; *c.calls != 2 {
		return kanban.JSON{}.Unmarshal(data, v)
	}
	if c.goexit {
		runtime.Goexit()
	}
	return errors.New("unreadable now")
}

// TestRetryInPlaceThatCannotBeDecoded: a keyed message retried in place
// whose payload cannot be decoded for the next attempt (an error, or the
// Codec ends its goroutine) is dead-lettered as such, once, and its key's
// next message is handled.
func TestRetryInPlaceThatCannotBeDecoded(t *testing.T) {
	for _, goexit := range []bool{false, true} {
		t.Run(fmt.Sprintf("Goexit=%v", goexit), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				var calls int
				q, err := kanban.NewMemory[string](kanban.MemoryOptions{Codec: flakyCodec{&calls, goexit}})
				require.NoError(t, err)
				require.NoError(t, q.Publish(context.Background(), kanban.Message[string]{ID: "m", Key: "k", Payload: "p"}))
				ctx, cancel := context.WithCancel(context.Background())
				var handled []string
				opts := kanban.ConsumeOptions{PerKey: true, Logger: slog.New(slog.DiscardHandler),
					Backoff: kanban.BackoffFunc(func(int) time.Duration { return time.Second })}
				go func() {
					synctest.Wait() // the first attempt failed, the second could not be decoded
					require.NoError(t, q.Publish(context.Background(), kanban.Message[string]{ID: "n", Key: "k"}))
				}()
				err = q.Consume(ctx, func(_ context.Context, d kanban.Delivery[string]) error {
					handled = append(handled, d.ID)
					if d.ID == "n" {
						cancel()
						return nil
					}
					return errors.New("failing")
				}, opts)
				require.NoError(t, err)
				assert.Equal(t, []string{"m", "n"}, handled)
				dead, err := q.DeadLetters(context.Background())
				require.NoError(t, err)
				require.Len(t, dead, 1)
				assert.Equal(t, "m", dead[0].ID)
				assert.Equal(t, 2, dead[0].Attempts)
				assert.Contains(t, dead[0].Reason, "kanban: cannot decode payload: ")
				assert.Zero(t, q.Len())
				s := q.Stats()
				assert.Equal(t, int64(1), s.DeadLettered)
				assert.Zero(t, s.InFlight)
			})
		})
	}
}
