package kanban_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/kanban"
)

// The tests of this file check that what a user hands a consumer besides
// its handler — a Backoff, an Observer, a Tracer — cannot take the process
// down by panicking, and that a handler ending its goroutine with
// runtime.Goexit (t.FailNow in a test's handler) fails its attempt.

//go:noinline
func panicInHook(v any) { panic(v) }

// panickingTracer is a Tracer whose Start or end panics for a handler's
// attempt.
type panickingTracer struct{ inStart bool }

func (p panickingTracer) Start(ctx context.Context, op kanban.Operation) (context.Context, func(error)) {
	if op.Type != kanban.OpProcess {
		return ctx, func(error) {}
	}
	if p.inStart {
		panicInHook("tracer start")
	}
	return ctx, func(error) { panicInHook("tracer end") }
}

// assertHookPanics checks the records logged for a hook's panics: one at
// Error level for each message ids[i] on its attempt attempts[i], with the
// panic value and its stack.
func assertHookPanics(t *testing.T, log *logRecorder, hook string, value any, ids []string, attempts []int) {
	t.Helper()
	logged := log.attrs("kanban: " + hook + " panicked")
	require.Len(t, logged, len(attempts), "each panic is logged")
	for i, a := range logged {
		assert.Equal(t, slog.LevelError, a["level"])
		assert.Equal(t, ids[i], a["id"])
		assert.EqualValues(t, attempts[i], a["attempt"])
		assert.Equal(t, value, a["panic"])
		assert.Contains(t, a["stack"], "kanban_test.panicInHook", "the stack is where the hook panicked")
	}
}

// TestPanickingBackoff: a Backoff that panics is logged, and the message
// is retried after the default back-off's delay (Exponential{}: 100ms
// ±20% after the first attempt), then dead-lettered as usual.
func TestPanickingBackoff(t *testing.T) {
	for _, perKey := range []bool{false, true} {
		t.Run(fmt.Sprintf("PerKey=%v", perKey), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				q, err := kanban.NewMemory[int](kanban.MemoryOptions{})
				require.NoError(t, err)
				require.NoError(t, q.Publish(context.Background(), kanban.Message[int]{ID: "p", Key: "k"}))
				var log logRecorder
				ctx, cancel := context.WithCancel(context.Background())
				var at []time.Time
				err = q.Consume(ctx, func(_ context.Context, d kanban.Delivery[int]) error {
					if at = append(at, time.Now()); len(at) == 3 {
						defer cancel()
					}
					return errors.New("fail")
				}, kanban.ConsumeOptions{
					MaxAttempts: 3, PerKey: perKey, Logger: slog.New(&log),
					Backoff: kanban.BackoffFunc(func(int) time.Duration { panicInHook("bad backoff"); return 0 }),
				})
				require.NoError(t, err)
				require.Len(t, at, 3)
				first := at[1].Sub(at[0])
				assert.GreaterOrEqual(t, first, 80*time.Millisecond)
				assert.LessOrEqual(t, first, 120*time.Millisecond)

				dl, err := q.DeadLetters(context.Background())
				require.NoError(t, err)
				require.Len(t, dl, 1)
				assert.Equal(t, "fail", dl[0].Reason)
				assert.Equal(t, kanban.QueueStats{Published: 1, Retried: 2, Redelivered: 2, DeadLettered: 1}, q.Stats())
				assertHookPanics(t, &log, "Backoff", "bad backoff", []string{"p", "p"}, []int{1, 2})
			})
		})
	}
}

// TestPanickingObserverAndTracer: an Observer or a Tracer that panics is
// logged, and the message is settled as its handler's result says: a
// handled message is acknowledged, not handled again.
func TestPanickingObserverAndTracer(t *testing.T) {
	tests := []struct {
		name   string
		opts   kanban.ConsumeOptions
		tracer kanban.Tracer
		hook   string
		value  any
	}{
		{name: "Observer", hook: "Observer", value: "bad observer", opts: kanban.ConsumeOptions{
			Observer: kanban.HandlerObserverFunc(func(time.Duration, error) { panicInHook("bad observer") }),
		}},
		{name: "Tracer.Start", hook: "Tracer", value: "tracer start", tracer: panickingTracer{inStart: true}},
		{name: "Tracer end", hook: "Tracer", value: "tracer end", tracer: panickingTracer{}},
	}
	for _, tc := range tests {
		for _, perKey := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/PerKey=%v", tc.name, perKey), func(t *testing.T) {
				synctest.Test(t, func(t *testing.T) {
					q, err := kanban.NewMemory[int](kanban.MemoryOptions{Tracer: tc.tracer})
					require.NoError(t, err)
					for _, id := range []string{"good", "bad"} {
						require.NoError(t, q.Publish(context.Background(), kanban.Message[int]{ID: id, Key: "k"}))
					}
					var log logRecorder
					ctx, cancel := context.WithCancel(context.Background())
					calls := 0
					o := tc.opts
					o.MaxAttempts, o.PerKey, o.Logger = 1, perKey, slog.New(&log)
					err = q.Consume(ctx, func(_ context.Context, d kanban.Delivery[int]) error {
						calls++
						if d.ID == "bad" {
							defer cancel()
							return errors.New("fail")
						}
						return nil
					}, o)
					require.NoError(t, err)
					assert.Equal(t, 2, calls)
					assert.Equal(t, kanban.QueueStats{Published: 2, Handled: 1, DeadLettered: 1}, q.Stats())
					assertHookPanics(t, &log, tc.hook, tc.value, []string{"good", "bad"}, []int{1, 1})
				})
			})
		}
	}
}

// TestHandlerGoexit: a handler that ends its goroutine with runtime.Goexit
// fails its attempt as a panic does, and the consumer goes on: the message
// is retried after its back-off, then dead-lettered, and the messages
// behind it are handled; nothing is left in flight.
func TestHandlerGoexit(t *testing.T) {
	for _, perKey := range []bool{false, true} {
		for _, wip := range []int{1, 3} {
			t.Run(fmt.Sprintf("PerKey=%v/WIP=%d", perKey, wip), func(t *testing.T) {
				synctest.Test(t, func(t *testing.T) {
					q, err := kanban.NewMemory[int](kanban.MemoryOptions{})
					require.NoError(t, err)
					for _, id := range []string{"x", "a", "b"} {
						require.NoError(t, q.Publish(context.Background(), kanban.Message[int]{ID: id, Key: id}))
					}
					var log logRecorder
					ctx, cancel := context.WithCancel(context.Background())
					defer cancel()
					done := make(chan error)
					handled := make(chan string, 10)
					go func() {
						done <- q.Consume(ctx, func(_ context.Context, d kanban.Delivery[int]) error {
							if d.ID == "x" {
								runtime.Goexit()
							}
							handled <- d.ID
							return nil
						}, kanban.ConsumeOptions{
							WIP: wip, MaxAttempts: 2, PerKey: perKey, Logger: slog.New(&log),
							Backoff: kanban.BackoffFunc(func(int) time.Duration { return time.Second }),
						})
					}()
					time.Sleep(time.Minute)
					synctest.Wait()
					assert.Equal(t, kanban.QueueStats{Published: 3, Handled: 2, Retried: 1, Redelivered: 1, DeadLettered: 1}, q.Stats())
					cancel()
					require.NoError(t, <-done)
					assert.ElementsMatch(t, []string{"a", "b"}, []string{<-handled, <-handled})

					dl, err := q.DeadLetters(context.Background())
					require.NoError(t, err)
					require.Len(t, dl, 1)
					assert.Equal(t, "x", dl[0].ID)
					assert.Equal(t, "kanban: runtime.Goexit in handler", dl[0].Reason)
					assert.Equal(t, 2, dl[0].Attempts)
					logged := log.attrs("kanban: handler called runtime.Goexit")
					require.Len(t, logged, 2)
					for i, a := range logged {
						assert.Equal(t, slog.LevelError, a["level"])
						assert.Equal(t, "x", a["id"])
						assert.EqualValues(t, i+1, a["attempt"])
						assert.Contains(t, a["stack"], "runtime.Goexit")
					}
				})
			})
		}
	}
}

// TestServeHandlerGoexit: on a backend of its own, Serve settles the
// message of a handler that called runtime.Goexit as failed, frees its WIP
// slot for the next, and goes on; so it does with a panicking Backoff,
// retrying after the default back-off.
func TestServeHandlerGoexit(t *testing.T) {
	for _, perKey := range []bool{false, true} {
		t.Run(fmt.Sprintf("PerKey=%v", perKey), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				b := newBackend(&lease{id: "x", key: "k"}, &lease{id: "y", key: "k"}, &lease{id: "z", key: "k", attempt: 3})
				stop := serve(t, b, func(_ context.Context, d kanban.Delivery[int]) error {
					if d.ID != "y" {
						runtime.Goexit()
					}
					return nil
				}, kanban.ConsumeOptions{
					WIP: 1, PerKey: perKey, MaxAttempts: 3,
					Backoff: kanban.BackoffFunc(func(n int) time.Duration { return time.Duration(n) * time.Second }),
				})
				time.Sleep(time.Minute)
				synctest.Wait()
				require.NoError(t, stop())
				assert.Equal(t, []string{"retry x 1s", "ack y", "dead z 3 kanban: runtime.Goexit in handler"}, b.recorded())
			})
		})
	}
}

// hookCodec is JSON, except that decoding the payload 13 panics and
// decoding 14 calls runtime.Goexit.
type hookCodec struct{ kanban.JSON }

func (c hookCodec) Unmarshal(data []byte, v any) error {
	switch string(data) {
	case "13":
		panicInHook("bad codec")
	case "14":
		runtime.Goexit()
	}
	return c.JSON.Unmarshal(data, v)
}

// panickingPropagator writes a header on Publish and panics extracting it.
type panickingPropagator struct{}

func (panickingPropagator) Inject(_ context.Context, h kanban.Header) { h.Set("trace", "t") }
func (panickingPropagator) Extract(context.Context, kanban.Header) context.Context {
	panicInHook("bad propagator")
	return nil
}

// consumeAMinute consumes q with h and o for a minute of synctest's time,
// until every goroutine waits, and returns the function that stops the
// consumer and returns what Consume returned.
func consumeAMinute(q *kanban.Memory[int], h kanban.Handler[int], o kanban.ConsumeOptions) (stop func() error) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- q.Consume(ctx, h, o) }()
	time.Sleep(time.Minute)
	synctest.Wait()
	return func() error {
		cancel()
		return <-done
	}
}

// deadLetterOfBadCodec publishes a message of payload bad (which codec
// cannot decode) and one of 1, both of key "k", on a Memory queue with
// codec, consumes them for a minute (PerKey or not), checks that the
// second alone was handled and the first dead-lettered after one attempt,
// and returns its dead letter and what the consumer logged.
func deadLetterOfBadCodec(t *testing.T, codec kanban.Codec, bad int, perKey bool) (kanban.DeadLetter, *logRecorder) {
	t.Helper()
	q, err := kanban.NewMemory[int](kanban.MemoryOptions{Codec: codec})
	require.NoError(t, err)
	for _, m := range []kanban.Message[int]{{ID: "bad", Key: "k", Payload: bad}, {ID: "good", Key: "k", Payload: 1}} {
		require.NoError(t, q.Publish(context.Background(), m))
	}
	log := &logRecorder{}
	var handled []int
	stop := consumeAMinute(q, func(_ context.Context, d kanban.Delivery[int]) error {
		handled = append(handled, d.Payload)
		return nil
	}, kanban.ConsumeOptions{PerKey: perKey, Logger: slog.New(log)})
	require.NoError(t, stop())
	assert.Equal(t, []int{1}, handled)
	assert.Equal(t, kanban.QueueStats{Published: 2, Handled: 1, DeadLettered: 1}, q.Stats())
	dl, err := q.DeadLetters(context.Background())
	require.NoError(t, err)
	require.Len(t, dl, 1)
	assert.Equal(t, "bad", dl[0].ID)
	assert.Equal(t, 1, dl[0].Attempts)
	return dl[0], log
}

// TestPanickingCodecAndPropagator: a Codec that panics decoding a payload
// is logged, and its message dead-lettered as one it cannot decode; a
// Propagator that panics in Extract is logged, and the handler runs with
// the consumer's ctx. The consumer goes on.
func TestPanickingCodecAndPropagator(t *testing.T) {
	for _, perKey := range []bool{false, true} {
		t.Run(fmt.Sprintf("Codec/PerKey=%v", perKey), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				dl, log := deadLetterOfBadCodec(t, hookCodec{}, 13, perKey)
				assert.Equal(t, "kanban: cannot decode payload: Codec panicked: bad codec", dl.Reason)
				assertHookPanics(t, log, "Codec", "bad codec", []string{"bad"}, []int{1})
			})
		})
		t.Run(fmt.Sprintf("Propagator/PerKey=%v", perKey), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				q, err := kanban.NewMemory[int](kanban.MemoryOptions{Propagator: panickingPropagator{}})
				require.NoError(t, err)
				for _, id := range []string{"a", "b"} {
					require.NoError(t, q.Publish(context.Background(), kanban.Message[int]{ID: id, Key: "k"}))
				}
				var log logRecorder
				var handled []string
				stop := consumeAMinute(q, func(ctx context.Context, d kanban.Delivery[int]) error {
					require.NotNil(t, ctx)
					handled = append(handled, d.ID)
					return nil
				}, kanban.ConsumeOptions{PerKey: perKey, Logger: slog.New(&log)})
				require.NoError(t, stop())
				assert.Equal(t, []string{"a", "b"}, handled)
				assert.Equal(t, kanban.QueueStats{Published: 2, Handled: 2}, q.Stats())
				assertHookPanics(t, &log, "Propagator", "bad propagator", []string{"a", "b"}, []int{1, 1})
			})
		})
	}
}

// TestCodecGoexit: a Codec that calls runtime.Goexit decoding a payload
// has its message dead-lettered as one it cannot decode, and the consumer
// goes on in another goroutine: the messages behind it are handled, and
// nothing is left in flight.
func TestCodecGoexit(t *testing.T) {
	for _, perKey := range []bool{false, true} {
		for _, wip := range []int{1, 3} {
			t.Run(fmt.Sprintf("PerKey=%v/WIP=%d", perKey, wip), func(t *testing.T) {
				synctest.Test(t, func(t *testing.T) {
					q, err := kanban.NewMemory[int](kanban.MemoryOptions{Codec: hookCodec{}})
					require.NoError(t, err)
					for _, m := range []kanban.Message[int]{{ID: "x", Key: "x", Payload: 14}, {ID: "a", Key: "a"}, {ID: "b", Key: "b"}} {
						require.NoError(t, q.Publish(context.Background(), m))
					}
					var log logRecorder
					handled := make(chan string, 10)
					stop := consumeAMinute(q, func(_ context.Context, d kanban.Delivery[int]) error {
						handled <- d.ID
						return nil
					}, kanban.ConsumeOptions{WIP: wip, PerKey: perKey, Logger: slog.New(&log)})
					assert.Equal(t, kanban.QueueStats{Published: 3, Handled: 2, DeadLettered: 1}, q.Stats())
					require.NoError(t, stop())
					assert.ElementsMatch(t, []string{"a", "b"}, []string{<-handled, <-handled})
					dl, err := q.DeadLetters(context.Background())
					require.NoError(t, err)
					require.Len(t, dl, 1)
					assert.Equal(t, "x", dl[0].ID)
					assert.Equal(t, "kanban: cannot decode payload: Codec called runtime.Goexit", dl[0].Reason)
					logged := log.attrs("kanban: Codec called runtime.Goexit")
					require.Len(t, logged, 1)
					assert.Equal(t, "x", logged[0]["id"])
					assert.Contains(t, logged[0]["stack"], "runtime.Goexit")
					assert.Empty(t, log.attrs("kanban: handler called runtime.Goexit"))
				})
			})
		}
	}
}

// unreadableCodec is JSON, except that decoding the payload 15 fails with
// a nil *unreadableErr: an error that panics when read.
type unreadableCodec struct{ kanban.JSON }

func (c unreadableCodec) Unmarshal(data []byte, v any) error {
	if string(data) == "15" {
		var typedNil *unreadableErr
		return typedNil
	}
	return c.JSON.Unmarshal(data, v)
}

// TestUnreadableCodecError: a Codec whose decoding error panics when read
// (a typed nil whose Error reads its receiver) has its message
// dead-lettered as one it cannot decode, the panic logged as the Codec's,
// and the consumer goes on. The queue read the error outside any
// recovery, for the dead letter's reason, and the panic ended the
// process.
func TestUnreadableCodecError(t *testing.T) {
	for _, perKey := range []bool{false, true} {
		t.Run(fmt.Sprintf("PerKey=%v", perKey), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				dl, log := deadLetterOfBadCodec(t, unreadableCodec{}, 15, perKey)
				assert.Contains(t, dl.Reason, "kanban: cannot decode payload: Codec panicked: reading its error *kanban_test.unreadableErr: ")
				logged := log.attrs("kanban: Codec panicked")
				require.Len(t, logged, 1)
				assert.Equal(t, "bad", logged[0]["id"])
			})
		})
	}
}

// TestHandlerAndBackoffGoexit: a handler and then its Backoff both calling
// runtime.Goexit on the same attempt: each is logged, the message is
// retried after the default back-off, then dead-lettered.
func TestHandlerAndBackoffGoexit(t *testing.T) {
	for _, perKey := range []bool{false, true} {
		t.Run(fmt.Sprintf("PerKey=%v", perKey), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				q, err := kanban.NewMemory[int](kanban.MemoryOptions{})
				require.NoError(t, err)
				require.NoError(t, q.Publish(context.Background(), kanban.Message[int]{ID: "x", Key: "k"}))
				var log logRecorder
				var at []time.Time
				stop := consumeAMinute(q, func(context.Context, kanban.Delivery[int]) error {
					at = append(at, time.Now())
					runtime.Goexit()
					return nil
				}, kanban.ConsumeOptions{
					MaxAttempts: 2, PerKey: perKey, Logger: slog.New(&log),
					Backoff: kanban.BackoffFunc(func(int) time.Duration { runtime.Goexit(); return 0 }),
				})
				assert.Equal(t, kanban.QueueStats{Published: 1, Retried: 1, Redelivered: 1, DeadLettered: 1}, q.Stats())
				require.NoError(t, stop())
				require.Len(t, at, 2)
				assert.InDelta(t, 100*time.Millisecond, at[1].Sub(at[0]), float64(20*time.Millisecond), "the default back-off")
				dl, err := q.DeadLetters(context.Background())
				require.NoError(t, err)
				require.Len(t, dl, 1)
				assert.Equal(t, "kanban: runtime.Goexit in handler", dl[0].Reason)
				assert.Len(t, log.attrs("kanban: handler called runtime.Goexit"), 2)
				assert.Len(t, log.attrs("kanban: Backoff called runtime.Goexit"), 1)
			})
		})
	}
}

// TestKeyedGoexitKeepsItsPlace: with PerKey, a keyed message whose
// attempt ends the goroutine with runtime.Goexit (its handler's, an
// Observer's after a failure, its Backoff's, a Tracer's Start) is retried
// in place, as a failed one is, before the messages of its key behind it;
// a drain during the back-off hands it back unlost.
func TestKeyedGoexitKeepsItsPlace(t *testing.T) {
	tests := []struct {
		name string
		// goexit ends the goroutine in attempt 1 of x; fail fails it.
		goexit, fail bool
		opts         kanban.ConsumeOptions
		tracer       kanban.Tracer
		xCalls       []int // the attempts x's handler sees
	}{
		{name: "handler", goexit: true, xCalls: []int{1, 2}},
		{name: "Observer", fail: true, xCalls: []int{1, 2}, opts: kanban.ConsumeOptions{
			Observer: kanban.HandlerObserverFunc(func(_ time.Duration, err error) {
				if err != nil {
					runtime.Goexit()
				}
			}),
		}},
		{name: "Backoff", fail: true, xCalls: []int{1, 2}, opts: kanban.ConsumeOptions{
			Backoff: kanban.BackoffFunc(func(int) time.Duration { runtime.Goexit(); return 0 }),
		}},
		{name: "Tracer.Start", tracer: &goexitOnceTracer{id: "x"}, xCalls: []int{2}},
	}
	for _, tc := range tests {
		for _, wip := range []int{1, 3} {
			t.Run(fmt.Sprintf("%s/WIP=%d", tc.name, wip), func(t *testing.T) {
				synctest.Test(t, func(t *testing.T) {
					q, err := kanban.NewMemory[int](kanban.MemoryOptions{Tracer: tc.tracer})
					require.NoError(t, err)
					for _, m := range []kanban.Message[int]{{ID: "x", Key: "k"}, {ID: "y", Key: "k"}, {ID: "z", Key: "other"}} {
						require.NoError(t, q.Publish(context.Background(), m))
					}
					var (
						mu    sync.Mutex
						calls []string
					)
					o := tc.opts
					o.WIP, o.PerKey, o.MaxAttempts, o.Logger = wip, true, 3, slog.New(&logRecorder{})
					stop := consumeAMinute(q, func(_ context.Context, d kanban.Delivery[int]) error {
						mu.Lock()
						calls = append(calls, fmt.Sprintf("%s@%d", d.ID, d.Attempt))
						mu.Unlock()
						if d.ID == "x" && d.Attempt == 1 {
							if tc.goexit {
								runtime.Goexit()
							}
							if tc.fail {
								return errors.New("fail")
							}
						}
						return nil
					}, o)
					require.NoError(t, stop())
					var key []string
					for _, c := range calls {
						if c[0] != 'z' {
							key = append(key, c)
						}
					}
					var want []string
					for _, a := range tc.xCalls {
						want = append(want, fmt.Sprintf("x@%d", a))
					}
					assert.Equal(t, append(want, "y@1"), key, "key k in its order")
					assert.Contains(t, calls, "z@1")
					assert.Equal(t, kanban.QueueStats{Published: 3, Handled: 3, Retried: 1, Redelivered: 1}, q.Stats())
					assert.Zero(t, q.Len())
				})
			})
		}
	}
	t.Run("drain", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			q, err := kanban.NewMemory[int](kanban.MemoryOptions{})
			require.NoError(t, err)
			for _, id := range []string{"x", "y"} {
				require.NoError(t, q.Publish(context.Background(), kanban.Message[int]{ID: id, Key: "k"}))
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			var calls []string
			go func() {
				done <- q.Consume(ctx, func(_ context.Context, d kanban.Delivery[int]) error {
					calls = append(calls, fmt.Sprintf("%s@%d", d.ID, d.Attempt))
					runtime.Goexit()
					return nil
				}, kanban.ConsumeOptions{WIP: 2, PerKey: true, Logger: slog.New(&logRecorder{}),
					Backoff: kanban.BackoffFunc(func(int) time.Duration { return time.Minute })})
			}()
			time.Sleep(time.Second)
			cancel() // x waits in place, y behind it
			require.NoError(t, <-done)
			assert.Equal(t, []string{"x@1"}, calls)
			assert.Equal(t, 2, q.Len(), "nothing lost")
			s := q.Stats()
			assert.Zero(t, s.InFlight)
			assert.Equal(t, int64(1), s.Retried)

			calls = nil
			stop := consumeAMinute(q, func(_ context.Context, d kanban.Delivery[int]) error {
				calls = append(calls, fmt.Sprintf("%s@%d", d.ID, d.Attempt))
				return nil
			}, kanban.ConsumeOptions{PerKey: true})
			require.NoError(t, stop())
			assert.ElementsMatch(t, []string{"x@2", "y@1"}, calls, "x's attempt counts")
			assert.Zero(t, q.Len())
		})
	})
}

// goexitOnceTracer is a Tracer whose Start calls runtime.Goexit for the
// first attempt of the message id.
type goexitOnceTracer struct{ id string }

func (g *goexitOnceTracer) Start(ctx context.Context, op kanban.Operation) (context.Context, func(error)) {
	if op.Type == kanban.OpProcess && op.MessageID == g.id && op.Attempt == 1 {
		runtime.Goexit()
	}
	return ctx, func(error) {}
}

// goexitingTracer is a Tracer whose Start or end calls runtime.Goexit for
// a handler's attempt.
type goexitingTracer struct{ inStart bool }

func (g goexitingTracer) Start(ctx context.Context, op kanban.Operation) (context.Context, func(error)) {
	if op.Type != kanban.OpProcess {
		return ctx, func(error) {}
	}
	if g.inStart {
		runtime.Goexit()
	}
	return ctx, func(error) { runtime.Goexit() }
}

// goexitingPropagator writes a header on Publish and calls
// runtime.Goexit extracting it.
type goexitingPropagator struct{}

func (goexitingPropagator) Inject(_ context.Context, h kanban.Header) { h.Set("trace", "t") }
func (goexitingPropagator) Extract(context.Context, kanban.Header) context.Context {
	runtime.Goexit()
	return nil
}

// TestHookGoexit: an Observer, a Tracer or a Propagator that calls
// runtime.Goexit is logged as the hook's, not the handler's. Once the
// handler has returned, the message is settled as it says: a handled
// message is acknowledged, a failed one dead-lettered with its error. A
// Tracer.Start or a Propagator that ends the goroutine before the handler
// runs has the message retried after the default back-off, as a Backoff
// that does.
func TestHookGoexit(t *testing.T) {
	tests := []struct {
		name       string
		opts       kanban.ConsumeOptions
		tracer     kanban.Tracer
		propagator kanban.Propagator
		hook       string
		calls      int
		stats      kanban.QueueStats
		reason     map[string]string // dead letters by ID
	}{
		{name: "Observer", hook: "Observer", calls: 2, opts: kanban.ConsumeOptions{
			Observer: kanban.HandlerObserverFunc(func(time.Duration, error) { runtime.Goexit() }),
		}, stats: kanban.QueueStats{Published: 2, Handled: 1, DeadLettered: 1}, reason: map[string]string{"bad": "fail"}},
		{name: "Tracer end", hook: "Tracer", calls: 2, tracer: goexitingTracer{},
			stats: kanban.QueueStats{Published: 2, Handled: 1, DeadLettered: 1}, reason: map[string]string{"bad": "fail"}},
		{name: "Tracer.Start", hook: "Tracer", calls: 0, tracer: goexitingTracer{inStart: true},
			stats: kanban.QueueStats{Published: 2, Retried: 2, DeadLettered: 2}, reason: map[string]string{
				"good": "kanban: delivered 2 times, more than MaxAttempts 1",
				"bad":  "kanban: delivered 2 times, more than MaxAttempts 1",
			}},
		{name: "Propagator", hook: "Propagator", calls: 0, propagator: goexitingPropagator{},
			stats: kanban.QueueStats{Published: 2, Retried: 2, DeadLettered: 2}, reason: map[string]string{
				"good": "kanban: delivered 2 times, more than MaxAttempts 1",
				"bad":  "kanban: delivered 2 times, more than MaxAttempts 1",
			}},
	}
	for _, tc := range tests {
		for _, perKey := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/PerKey=%v", tc.name, perKey), func(t *testing.T) {
				synctest.Test(t, func(t *testing.T) {
					q, err := kanban.NewMemory[int](kanban.MemoryOptions{Tracer: tc.tracer, Propagator: tc.propagator})
					require.NoError(t, err)
					for _, id := range []string{"good", "bad"} {
						require.NoError(t, q.Publish(context.Background(), kanban.Message[int]{ID: id, Key: "k"}))
					}
					var log logRecorder
					calls := 0
					o := tc.opts
					o.MaxAttempts, o.PerKey, o.Logger = 1, perKey, slog.New(&log)
					stop := consumeAMinute(q, func(_ context.Context, d kanban.Delivery[int]) error {
						calls++
						if d.ID == "bad" {
							return errors.New("fail")
						}
						return nil
					}, o)
					assert.Equal(t, tc.stats, q.Stats())
					require.NoError(t, stop())
					assert.Equal(t, tc.calls, calls)
					dl, err := q.DeadLetters(context.Background())
					require.NoError(t, err)
					reasons := map[string]string{}
					for _, l := range dl {
						reasons[l.ID] = l.Reason
					}
					assert.Equal(t, tc.reason, reasons)
					assert.Len(t, log.attrs("kanban: "+tc.hook+" called runtime.Goexit"), 2)
					assert.Empty(t, log.attrs("kanban: handler called runtime.Goexit"))
				})
			})
		}
	}
}

// hookJSON is a payload whose MarshalJSON panics for 13 and calls
// runtime.Goexit for 14.
type hookJSON int

func (h hookJSON) MarshalJSON() ([]byte, error) {
	switch h {
	case 13:
		panicInHook("bad payload")
	case 14:
		runtime.Goexit()
	}
	return []byte("0"), nil
}

// TestDeadLetterPayloadPanicOrGoexit: a queue without a Codec keeps the
// JSON of a dead letter's payload as best it can: a MarshalJSON that
// panics or calls runtime.Goexit leaves the dead letter's Payload empty,
// and the message is dead-lettered once all the same, its room freed;
// the consumer goes on.
func TestDeadLetterPayloadPanicOrGoexit(t *testing.T) {
	for _, payload := range []hookJSON{13, 14} {
		for _, perKey := range []bool{false, true} {
			for _, wip := range []int{1, 3} {
				t.Run(fmt.Sprintf("Payload=%d/PerKey=%v/WIP=%d", payload, perKey, wip), func(t *testing.T) {
					synctest.Test(t, func(t *testing.T) {
						q, err := kanban.NewMemory[hookJSON](kanban.MemoryOptions{})
						require.NoError(t, err)
						for _, m := range []kanban.Message[hookJSON]{{ID: "x", Key: "x", Payload: payload}, {ID: "a", Key: "a"}} {
							require.NoError(t, q.Publish(context.Background(), m))
						}
						var log logRecorder
						ctx, cancel := context.WithCancel(context.Background())
						done := make(chan error, 1)
						handled := make(chan string, 10)
						go func() {
							done <- q.Consume(ctx, func(_ context.Context, d kanban.Delivery[hookJSON]) error {
								if d.ID == "x" {
									return kanban.Permanent(errors.New("no"))
								}
								handled <- d.ID
								return nil
							}, kanban.ConsumeOptions{WIP: wip, PerKey: perKey, Logger: slog.New(&log)})
						}()
						time.Sleep(time.Minute)
						synctest.Wait()
						assert.Equal(t, kanban.QueueStats{Published: 2, Handled: 1, DeadLettered: 1}, q.Stats())
						assert.Equal(t, 0, q.Len())
						cancel()
						require.NoError(t, <-done)
						assert.Equal(t, "a", <-handled)
						dl, err := q.DeadLetters(context.Background())
						require.NoError(t, err)
						require.Len(t, dl, 1)
						assert.Equal(t, "x", dl[0].ID)
						assert.Equal(t, "no", dl[0].Reason)
						assert.Empty(t, dl[0].Payload)
						assert.Empty(t, log.attrs("kanban: handler called runtime.Goexit"))
						assert.Empty(t, log.attrs("kanban: settling a message panicked"))
						if payload == 14 {
							// The goroutine ended: the consumer says so.
							logged := log.attrs("kanban: settling a message called runtime.Goexit")
							require.Len(t, logged, 1)
							assert.Equal(t, "x", logged[0]["id"])
						}
					})
				})
			}
		}
	}
}

// spanCounter is a Tracer that counts the process spans (the send spans,
// with send) started and ended, and the errors they ended with.
type spanCounter struct {
	send   bool
	mu     sync.Mutex
	starts int
	ends   []error
}

func (s *spanCounter) Start(ctx context.Context, op kanban.Operation) (context.Context, func(error)) {
	want := kanban.OpProcess
	if s.send {
		want = kanban.OpSend
	}
	if op.Type != want {
		return ctx, func(error) {}
	}
	s.mu.Lock()
	s.starts++
	s.mu.Unlock()
	return ctx, func(err error) {
		s.mu.Lock()
		s.ends = append(s.ends, err)
		s.mu.Unlock()
	}
}

// TestObserverGoexitEndsTheSpan: an Observer that calls runtime.Goexit
// does not leave the attempt's span open: it ends, with the handler's
// error.
func TestObserverGoexitEndsTheSpan(t *testing.T) {
	for _, perKey := range []bool{false, true} {
		t.Run(fmt.Sprintf("PerKey=%v", perKey), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				var spans spanCounter
				q, err := kanban.NewMemory[int](kanban.MemoryOptions{Tracer: &spans})
				require.NoError(t, err)
				for _, id := range []string{"good", "bad"} {
					require.NoError(t, q.Publish(context.Background(), kanban.Message[int]{ID: id, Key: "k"}))
				}
				fail := errors.New("fail")
				var log logRecorder
				stop := consumeAMinute(q, func(_ context.Context, d kanban.Delivery[int]) error {
					if d.ID == "bad" {
						return fail
					}
					return nil
				}, kanban.ConsumeOptions{
					MaxAttempts: 1, PerKey: perKey, Logger: slog.New(&log),
					Observer: kanban.HandlerObserverFunc(func(time.Duration, error) { runtime.Goexit() }),
				})
				require.NoError(t, stop())
				assert.Equal(t, kanban.QueueStats{Published: 2, Handled: 1, DeadLettered: 1}, q.Stats())
				assert.Equal(t, 2, spans.starts)
				assert.ElementsMatch(t, []error{nil, fail}, spans.ends)
				assert.Len(t, log.attrs("kanban: Observer called runtime.Goexit"), 2)
				assert.Empty(t, log.attrs("kanban: Tracer called runtime.Goexit"))
			})
		})
	}
}

// sendFailingTracer is a Tracer whose send spans, once armed, panic or
// call runtime.Goexit in Start or in their end.
type sendFailingTracer struct {
	armed    *atomic.Bool
	inStart  bool
	goexit   bool
	failures *atomic.Int64
}

func (s sendFailingTracer) fail() {
	s.failures.Add(1)
	if s.goexit {
		runtime.Goexit()
	}
	panicInHook("bad tracer")
}

func (s sendFailingTracer) Start(ctx context.Context, op kanban.Operation) (context.Context, func(error)) {
	if op.Type != kanban.OpSend || !s.armed.Load() {
		return ctx, func(error) {}
	}
	if s.inStart {
		s.fail()
	}
	return ctx, func(error) { s.fail() }
}

// TestRedriveWithAFailingTracer: a Memory queue's redrive whose Tracer
// panics or calls runtime.Goexit on the first message it re-publishes
// loses none: every dead letter it took is in the queue, once.
func TestRedriveWithAFailingTracer(t *testing.T) {
	for _, inStart := range []bool{true, false} {
		for _, goexit := range []bool{false, true} {
			t.Run(fmt.Sprintf("inStart=%v/goexit=%v", inStart, goexit), func(t *testing.T) {
				synctest.Test(t, func(t *testing.T) {
					var armed atomic.Bool
					var failures atomic.Int64
					q, err := kanban.NewMemory[int](kanban.MemoryOptions{Tracer: sendFailingTracer{&armed, inStart, goexit, &failures}})
					require.NoError(t, err)
					ids := []string{"a", "b", "c"}
					for _, id := range ids {
						require.NoError(t, q.Publish(context.Background(), kanban.Message[int]{ID: id}))
					}
					stop := consumeAMinute(q, func(context.Context, kanban.Delivery[int]) error {
						return kanban.Permanent(errors.New("no"))
					}, kanban.ConsumeOptions{})
					require.NoError(t, stop())
					armed.Store(true)
					done := make(chan any)
					go func() {
						defer func() { done <- recover() }()
						_, _ = q.RedriveDeadLetters(context.Background(), kanban.DeadLetterFilter{All: true})
					}()
					v := <-done
					if !goexit {
						assert.Equal(t, "bad tracer", v)
					}
					assert.Equal(t, int64(1), failures.Load())
					armed.Store(false)
					dl, err := q.DeadLetters(context.Background())
					require.NoError(t, err)
					assert.Empty(t, dl)
					assert.Equal(t, 3, q.Len())
					var seen []string
					stop = consumeAMinute(q, func(_ context.Context, d kanban.Delivery[int]) error {
						seen = append(seen, d.ID)
						return nil
					}, kanban.ConsumeOptions{})
					require.NoError(t, stop())
					assert.Equal(t, ids, seen)
					assert.Zero(t, q.Len())
					assert.Equal(t, int64(3), q.Stats().Redriven)
				})
			})
		}
	}
}

// marshalFailingCodec panics, or calls runtime.Goexit, encoding 13.
type marshalFailingCodec struct {
	kanban.JSON
	goexit bool
}

func (c marshalFailingCodec) Marshal(v any) ([]byte, error) {
	if v == 13 {
		if c.goexit {
			runtime.Goexit()
		}
		panicInHook("bad marshal")
	}
	return c.JSON.Marshal(v)
}

// TestSendSpanEndsWhenThePublishIsInterrupted: a Codec that panics or
// calls runtime.Goexit encoding a published payload goes on to the
// publisher, and the publish's span is ended all the same, with
// ErrPublishInterrupted; a publish that returns ends its span with its
// error, as before.
func TestSendSpanEndsWhenThePublishIsInterrupted(t *testing.T) {
	for _, goexit := range []bool{false, true} {
		t.Run(fmt.Sprintf("goexit=%v", goexit), func(t *testing.T) {
			spans := spanCounter{send: true}
			q, err := kanban.NewMemory[int](kanban.MemoryOptions{Codec: marshalFailingCodec{goexit: goexit}, Tracer: &spans})
			require.NoError(t, err)
			require.NoError(t, q.Publish(context.Background(), kanban.Message[int]{ID: "good", Payload: 1}))
			done := make(chan any)
			go func() {
				returned := false
				defer func() {
					if !returned {
						done <- recover()
					}
				}()
				_ = q.TryPublish(context.Background(), kanban.Message[int]{ID: "bad", Payload: 13})
				returned = true
				done <- "returned"
			}()
			v := <-done
			if goexit {
				assert.Nil(t, v, "the Goexit goes on")
			} else {
				assert.NotNil(t, v, "the panic goes on")
			}
			assert.Equal(t, 2, spans.starts)
			assert.Equal(t, []error{nil, kanban.ErrPublishInterrupted}, spans.ends)
		})
	}
}

// injectFailingPropagator, once armed, panics or calls runtime.Goexit
// injecting headers.
type injectFailingPropagator struct {
	armed  *atomic.Bool
	goexit bool
}

func (p injectFailingPropagator) Inject(_ context.Context, h kanban.Header) {
	if p.armed.Load() {
		if p.goexit {
			runtime.Goexit()
		}
		panicInHook("bad inject")
	}
}

func (injectFailingPropagator) Extract(ctx context.Context, _ kanban.Header) context.Context {
	return ctx
}

// TestRedriveSpanEndsWhenThePropagatorFails: a redrive whose Propagator
// panics or calls runtime.Goexit injecting a message's headers ends that
// message's send span, with ErrPublishInterrupted, and loses no message.
func TestRedriveSpanEndsWhenThePropagatorFails(t *testing.T) {
	for _, goexit := range []bool{false, true} {
		t.Run(fmt.Sprintf("goexit=%v", goexit), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				var armed atomic.Bool
				spans := spanCounter{send: true}
				q, err := kanban.NewMemory[int](kanban.MemoryOptions{Tracer: &spans, Propagator: injectFailingPropagator{&armed, goexit}})
				require.NoError(t, err)
				for _, id := range []string{"a", "b"} {
					require.NoError(t, q.Publish(context.Background(), kanban.Message[int]{ID: id}))
				}
				stop := consumeAMinute(q, func(context.Context, kanban.Delivery[int]) error {
					return kanban.Permanent(errors.New("no"))
				}, kanban.ConsumeOptions{})
				require.NoError(t, stop())
				armed.Store(true)
				done := make(chan struct{})
				go func() {
					defer close(done)
					defer func() { _ = recover() }()
					_, _ = q.RedriveDeadLetters(context.Background(), kanban.DeadLetterFilter{All: true})
				}()
				<-done
				spans.mu.Lock()
				defer spans.mu.Unlock()
				assert.Equal(t, 3, spans.starts, "two publishes and the redrive's first message")
				assert.Equal(t, []error{nil, nil, kanban.ErrPublishInterrupted}, spans.ends, "every span ended")
				assert.Equal(t, 2, q.Len(), "both dead letters are back in the queue")
			})
		})
	}
}
