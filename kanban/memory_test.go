package kanban_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
	"weak"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/kanban"
	"github.com/taipattern/taikit/kanban/queuetest"
)

func TestMemoryConformance(t *testing.T) {
	queuetest.Run(t, func(t *testing.T, opts queuetest.Options) kanban.Queue[queuetest.Payload] {
		q, err := kanban.NewMemory[queuetest.Payload](kanban.MemoryOptions{
			Capacity: opts.Capacity, Codec: opts.Codec, Propagator: opts.Propagator, Tracer: opts.Tracer,
		})
		require.NoError(t, err)
		return q
	})
}

func TestMemoryWithoutCodecPassesValues(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		q, err := kanban.NewMemory[*int](kanban.MemoryOptions{})
		require.NoError(t, err)
		v := 7
		require.NoError(t, q.Publish(context.Background(), kanban.Message[*int]{ID: "a", Payload: &v}))
		ctx, cancel := context.WithCancel(context.Background())
		var got *int
		err = q.Consume(ctx, func(_ context.Context, d kanban.Delivery[*int]) error {
			got = d.Payload
			cancel()
			return nil
		}, kanban.ConsumeOptions{})
		require.NoError(t, err)
		assert.Same(t, &v, got, "without a Codec the value itself is delivered")
		assert.Equal(t, 0, q.Len())
	})
}

func TestMemoryDedupWindowExpires(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		q, err := kanban.NewMemory[int](kanban.MemoryOptions{DedupWindow: time.Minute})
		require.NoError(t, err)
		ctx := context.Background()
		require.NoError(t, q.Publish(ctx, kanban.Message[int]{ID: "a"}))
		time.Sleep(time.Minute - time.Nanosecond)
		require.NoError(t, q.Publish(ctx, kanban.Message[int]{ID: "a"}))
		assert.Equal(t, 1, q.Len(), "a duplicate until the window ends")
		time.Sleep(time.Nanosecond)
		require.NoError(t, q.Publish(ctx, kanban.Message[int]{ID: "a"}))
		assert.Equal(t, 2, q.Len(), "an ID is forgotten after the window")
		assert.Equal(t, kanban.QueueStats{Published: 2, Duplicates: 1}, q.Stats())
	})
}

func TestMemoryDeadLetterLimit(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		q, err := kanban.NewMemory[int](kanban.MemoryOptions{DeadLetterLimit: 2})
		require.NoError(t, err)
		ctx, cancel := context.WithCancel(context.Background())
		for i, id := range []string{"a", "b", "c"} {
			require.NoError(t, q.Publish(ctx, kanban.Message[int]{ID: id, Payload: i + 1}))
		}
		n := 0
		err = q.Consume(ctx, func(context.Context, kanban.Delivery[int]) error {
			if n++; n == 3 {
				cancel()
			}
			return kanban.Permanent(errors.New("no"))
		}, kanban.ConsumeOptions{})
		require.NoError(t, err)
		dl, err := q.DeadLetters(context.Background())
		require.NoError(t, err)
		require.Len(t, dl, 2)
		assert.Equal(t, []string{"b", "c"}, []string{dl[0].ID, dl[1].ID}, "the oldest goes first")
		assert.Equal(t, []string{"2", "3"}, []string{string(dl[0].Payload), string(dl[1].Payload)},
			"without a Codec a dead letter holds its payload as JSON")
	})
}

func TestPublishRejectsEmptyID(t *testing.T) {
	q, err := kanban.NewMemory[int](kanban.MemoryOptions{})
	require.NoError(t, err)
	require.ErrorIs(t, q.Publish(context.Background(), kanban.Message[int]{}), kanban.ErrNoID)
	require.ErrorIs(t, q.TryPublish(context.Background(), kanban.Message[int]{}), kanban.ErrNoID)
}

func TestMemoryOptionsValidate(t *testing.T) {
	tests := []struct {
		cfg  kanban.MemoryOptions
		want string
	}{
		{kanban.MemoryOptions{Capacity: -1}, "kanban: invalid Capacity -1"},
		{kanban.MemoryOptions{DeadLetterLimit: -3}, "kanban: invalid DeadLetterLimit -3"},
		// A nil pointer (a constructor's error ignored) would panic in
		// Publish, or in a consumer's worker.
		{kanban.MemoryOptions{Codec: (*kanban.JSON)(nil)}, "kanban: invalid Codec: a nil *kanban.JSON"},
		{kanban.MemoryOptions{Propagator: (*nopPropagator)(nil)}, "kanban: invalid Propagator: a nil *kanban_test.nopPropagator"},
		{kanban.MemoryOptions{Tracer: (*nopTracer)(nil)}, "kanban: invalid Tracer: a nil *kanban_test.nopTracer"},
	}
	for _, tc := range tests {
		_, err := kanban.NewMemory[int](tc.cfg)
		require.Error(t, err)
		assert.Contains(t, err.Error(), tc.want)
	}
}

// TestRetryWaitsForTheBackoff: a failed message comes back once its
// back-off has passed, not before.
func TestRetryWaitsForTheBackoff(t *testing.T) {
	for _, perKey := range []bool{false, true} {
		t.Run(fmt.Sprintf("PerKey=%v", perKey), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				q, err := kanban.NewMemory[int](kanban.MemoryOptions{})
				require.NoError(t, err)
				require.NoError(t, q.Publish(context.Background(), kanban.Message[int]{ID: "r", Key: "k"}))
				ctx, cancel := context.WithCancel(context.Background())
				var mu sync.Mutex // the race detector does not see synctest.Wait order
				var attempts []int
				var at []time.Duration
				seen := func() []int {
					mu.Lock()
					defer mu.Unlock()
					return append([]int(nil), attempts...)
				}
				start := time.Now()
				done := make(chan error, 1)
				go func() {
					done <- q.Consume(ctx, func(_ context.Context, d kanban.Delivery[int]) error {
						mu.Lock()
						attempts = append(attempts, d.Attempt)
						at = append(at, time.Since(start))
						mu.Unlock()
						if d.Attempt == 1 {
							return errors.New("again")
						}
						return nil
					}, kanban.ConsumeOptions{PerKey: perKey, Backoff: kanban.BackoffFunc(func(int) time.Duration { return time.Hour })})
				}()
				synctest.Wait()
				require.Equal(t, []int{1}, seen())
				time.Sleep(time.Hour - time.Nanosecond)
				synctest.Wait()
				require.Equal(t, []int{1}, seen(), "no attempt before the back-off has passed")
				time.Sleep(time.Nanosecond)
				synctest.Wait()
				assert.Equal(t, []int{1, 2}, seen(), "the retry runs once it has passed")
				mu.Lock()
				assert.Equal(t, []time.Duration{0, time.Hour}, at)
				mu.Unlock()
				cancel()
				require.NoError(t, <-done)
				assert.Equal(t, kanban.QueueStats{Published: 1, Handled: 1, Retried: 1, Redelivered: 1}, q.Stats())
			})
		})
	}
}

func TestMemoryStatsWhileHandlersRun(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const wip = 3
		q, err := kanban.NewMemory[int](kanban.MemoryOptions{DedupWindow: -1})
		require.NoError(t, err)
		ctx, cancel := context.WithCancel(context.Background())
		for i := range 2 * wip {
			require.NoError(t, q.Publish(ctx, kanban.Message[int]{ID: "m" + strconv.Itoa(i), Payload: i}))
		}
		started := make(chan struct{})
		release := make(chan struct{})
		var calls atomic.Int64
		done := make(chan error, 1)
		go func() {
			done <- q.Consume(ctx, func(context.Context, kanban.Delivery[int]) error {
				if calls.Add(1) <= wip {
					started <- struct{}{}
					<-release
				}
				return nil
			}, kanban.ConsumeOptions{WIP: wip})
		}()
		for range wip {
			<-started
		}
		s := q.Stats()
		assert.Equal(t, int64(wip), s.InFlight, "every running handler's message is in flight")
		assert.Equal(t, int64(0), s.Handled)
		assert.Equal(t, int64(2*wip), s.Published)
		close(release)
		cancel()
		require.NoError(t, <-done)
		s = q.Stats()
		assert.Equal(t, int64(0), s.InFlight)
		assert.Equal(t, calls.Load(), s.Handled, "each handled message counted once, workers gone")
		assert.Equal(t, int(2*wip-calls.Load()), q.Len(), "what was not handled is still queued")
	})
}

// TestMemoryDrainReturnsTakenMessages: with a backlog a worker takes
// several messages at once; the drain hands back the ones it has not
// started, in order, ahead of the rest.
func TestMemoryDrainReturnsTakenMessages(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		q, err := kanban.NewMemory[int](kanban.MemoryOptions{DedupWindow: -1})
		require.NoError(t, err)
		const n = 20
		for i := range n {
			require.NoError(t, q.Publish(context.Background(), kanban.Message[int]{ID: "m" + strconv.Itoa(i), Payload: i}))
		}
		ctx, cancel := context.WithCancel(context.Background())
		var first []int
		err = q.Consume(ctx, func(hctx context.Context, d kanban.Delivery[int]) error {
			first = append(first, d.Payload)
			// The drain starts while the worker holds what it took; the
			// handler returns once the drain deadline has passed, so the
			// drain has begun.
			cancel()
			<-hctx.Done()
			return nil
		}, kanban.ConsumeOptions{WIP: 1, DrainTimeout: 20 * time.Millisecond})
		require.ErrorIs(t, err, kanban.ErrDrainTimeout)
		require.Equal(t, []int{0}, first, "the drain lets no message start after it")
		assert.Equal(t, n-1, q.Len(), "the messages taken and not started are back")
		assert.Equal(t, int64(1), q.Stats().Handled)
		assert.Zero(t, q.Stats().InFlight)

		ctx, cancel = context.WithCancel(context.Background())
		defer cancel()
		var rest []int
		err = q.Consume(ctx, func(_ context.Context, d kanban.Delivery[int]) error {
			rest = append(rest, d.Payload)
			if len(rest) == n-1 {
				cancel()
			}
			return nil
		}, kanban.ConsumeOptions{WIP: 1})
		require.NoError(t, err)
		want := make([]int, 0, n-1)
		for i := 1; i < n; i++ {
			want = append(want, i)
		}
		assert.Equal(t, want, rest, "one worker handles the queue in order, the returned messages first")
		assert.Zero(t, q.Len())
		assert.Equal(t, int64(n), q.Stats().Handled)
	})
}

// TestMemoryInFlightNeverAboveWIP: messages a worker has taken and not
// started are not counted in flight, so the gauge stays within WIP while
// workers take a backlog several at a time.
func TestMemoryInFlightNeverAboveWIP(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		q, err := kanban.NewMemory[int](kanban.MemoryOptions{DedupWindow: -1, Capacity: 4096})
		require.NoError(t, err)
		const n, wip = 2000, 3
		for i := range n {
			require.NoError(t, q.Publish(context.Background(), kanban.Message[int]{ID: "m" + strconv.Itoa(i), Payload: i}))
		}
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		var handled, over atomic.Int64
		err = q.Consume(ctx, func(context.Context, kanban.Delivery[int]) error {
			if f := q.Stats().InFlight; f > wip || f < 1 {
				over.Add(1)
			}
			if handled.Add(1) == n {
				cancel()
			}
			return nil
		}, kanban.ConsumeOptions{WIP: wip})
		require.NoError(t, err)
		assert.Zero(t, over.Load(), "InFlight left [1, WIP] while a handler ran")
		assert.Equal(t, int64(n), q.Stats().Handled)
		assert.Zero(t, q.Len())
	})
}

// TestDeadLetterGivesBackItsRoom: a dead-lettered message leaves the
// queue, so a full queue has room again.
func TestDeadLetterGivesBackItsRoom(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		q, err := kanban.NewMemory[int](kanban.MemoryOptions{Capacity: 1})
		require.NoError(t, err)
		bctx := context.Background()
		require.NoError(t, q.TryPublish(bctx, kanban.Message[int]{ID: "a"}))
		require.ErrorIs(t, q.TryPublish(bctx, kanban.Message[int]{ID: "b"}), kanban.ErrFull)
		ctx, cancel := context.WithCancel(bctx)
		err = q.Consume(ctx, func(context.Context, kanban.Delivery[int]) error {
			defer cancel()
			return kanban.Permanent(errors.New("no"))
		}, kanban.ConsumeOptions{})
		require.NoError(t, err)
		assert.Zero(t, q.Len())
		assert.NoError(t, q.TryPublish(bctx, kanban.Message[int]{ID: "b"}), "the dead letter's room is free")
	})
}

// TestPublishWaitingForRoomIsWoken: with Capacity 1, a Publish waiting for
// room gets in once the one message is handled.
func TestPublishWaitingForRoomIsWoken(t *testing.T) {
	for _, capacity := range []int{1, 2, 8} {
		t.Run(fmt.Sprint("Capacity=", capacity), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				q, err := kanban.NewMemory[int](kanban.MemoryOptions{Capacity: capacity})
				require.NoError(t, err)
				ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
				defer cancel()
				for i := range capacity {
					require.NoError(t, q.Publish(ctx, kanban.Message[int]{ID: fmt.Sprint(i)}))
				}
				published := make(chan error, 1)
				go func() { published <- q.Publish(ctx, kanban.Message[int]{ID: "waiting"}) }()
				synctest.Wait()
				select {
				case err := <-published:
					t.Fatalf("Publish returned %v while the queue was full", err)
				default:
				}
				var handled []string
				cctx, stop := context.WithCancel(ctx)
				err = q.Consume(cctx, func(_ context.Context, d kanban.Delivery[int]) error {
					if handled = append(handled, d.ID); len(handled) == capacity+1 {
						stop()
					}
					return nil
				}, kanban.ConsumeOptions{})
				require.NoError(t, err)
				require.NoError(t, <-published, "the waiting Publish got in")
				assert.Equal(t, "waiting", handled[capacity])
				assert.Zero(t, q.Len())
			})
		})
	}
}

// TestPublishWaitingTakesRoomBelowAQuarter: a waiting Publish is woken
// when a quarter of the capacity is free; room that frees in a smaller
// amount, with no more to come (the consumer stopped), it takes within
// 10 ms. It waited until its ctx ended.
func TestPublishWaitingTakesRoomBelowAQuarter(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		q, err := kanban.NewMemory[int](kanban.MemoryOptions{Capacity: 8})
		require.NoError(t, err)
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		for i := range 8 {
			require.NoError(t, q.Publish(ctx, kanban.Message[int]{ID: fmt.Sprint(i)}))
		}
		published := make(chan error, 1)
		go func() { published <- q.Publish(ctx, kanban.Message[int]{ID: "waiting"}) }()
		synctest.Wait()
		cctx, stop := context.WithCancel(ctx)
		var calls atomic.Int32
		consumed := make(chan error, 1)
		go func() {
			consumed <- q.Consume(cctx, func(hctx context.Context, _ kanban.Delivery[int]) error {
				if calls.Add(1) == 1 {
					return nil // one place frees
				}
				<-hctx.Done() // the next is stuck until the consumer stops
				return hctx.Err()
			}, kanban.ConsumeOptions{WIP: 1, DrainTimeout: time.Millisecond})
		}()
		synctest.Wait()
		require.Equal(t, int32(2), calls.Load())
		stop()
		require.ErrorIs(t, <-consumed, kanban.ErrDrainTimeout, "the stuck handler was cancelled")
		stopped := time.Now()
		require.NoError(t, <-published, "the waiting Publish took the one free place")
		assert.LessOrEqual(t, time.Since(stopped), 10*time.Millisecond)
		assert.Equal(t, 8, q.Len(), "seven left and the one published")
	})
}

// failingCodec fails to encode.
type failingCodec struct{ kanban.JSON }

var errEncode = errors.New("cannot encode")

func (failingCodec) Marshal(any) ([]byte, error) { return nil, errEncode }

// TestPublishReturnsCodecErrors: a payload the Codec cannot encode is not
// stored, and Publish says why.
func TestPublishReturnsCodecErrors(t *testing.T) {
	q, err := kanban.NewMemory[int](kanban.MemoryOptions{Codec: failingCodec{}})
	require.NoError(t, err)
	ctx := context.Background()
	err = q.Publish(ctx, kanban.Message[int]{ID: "a"})
	require.ErrorIs(t, err, errEncode)
	assert.EqualError(t, err, "kanban: encoding message a: cannot encode")
	require.ErrorIs(t, q.TryPublish(ctx, kanban.Message[int]{ID: "a"}), errEncode)
	assert.Zero(t, q.Len())
	assert.Equal(t, kanban.QueueStats{}, q.Stats())
}

// TestRetryWithoutKeyLetsOthersPass: a failed message without a key waits
// for its retry in the queue, not in front of it: the messages behind it
// are handled meanwhile.
func TestRetryWithoutKeyLetsOthersPass(t *testing.T) {
	for _, perKey := range []bool{false, true} {
		t.Run(fmt.Sprintf("PerKey=%v", perKey), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				q, err := kanban.NewMemory[int](kanban.MemoryOptions{})
				require.NoError(t, err)
				for _, id := range []string{"a", "b"} {
					require.NoError(t, q.Publish(context.Background(), kanban.Message[int]{ID: id}))
				}
				ctx, cancel := context.WithCancel(context.Background())
				var order []string
				err = q.Consume(ctx, func(_ context.Context, d kanban.Delivery[int]) error {
					order = append(order, fmt.Sprint(d.ID, d.Attempt))
					if d.ID == "a" && d.Attempt == 1 {
						return errors.New("again")
					}
					if len(order) == 3 {
						cancel()
					}
					return nil
				}, kanban.ConsumeOptions{PerKey: perKey, Backoff: kanban.BackoffFunc(func(int) time.Duration { return time.Second })})
				require.NoError(t, err)
				assert.Equal(t, []string{"a1", "b1", "a2"}, order)
			})
		})
	}
}

// TestMemoryReachesWIP: a consumer runs up to WIP handlers at once
// whether its messages wait in a backlog of exactly WIP or arrive one by
// one while the earlier ones are still being handled.
func TestMemoryReachesWIP(t *testing.T) {
	const wip = 4
	for _, arrival := range []string{"backlog", "one by one"} {
		t.Run(arrival, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				q, err := kanban.NewMemory[int](kanban.MemoryOptions{})
				require.NoError(t, err)
				publish := func() {
					for i := range wip {
						require.NoError(t, q.Publish(context.Background(), kanban.Message[int]{ID: strconv.Itoa(i)}))
						synctest.Wait() // the consumer has taken it, if it could
					}
				}
				if arrival == "backlog" {
					publish()
				}
				ctx, cancel := context.WithCancel(context.Background())
				var running, peak atomic.Int64
				done := make(chan error, 1)
				go func() {
					done <- q.Consume(ctx, func(context.Context, kanban.Delivery[int]) error {
						peak.Store(max(peak.Load(), running.Add(1)))
						time.Sleep(10 * time.Second) // a slow handler
						running.Add(-1)
						return nil
					}, kanban.ConsumeOptions{WIP: wip})
				}()
				synctest.Wait()
				if arrival == "one by one" {
					publish()
				}
				time.Sleep(time.Second)
				assert.Equal(t, int64(wip), running.Load(), "every message is being handled")
				assert.Equal(t, int64(wip), peak.Load())
				cancel()
				require.NoError(t, <-done)
				assert.Equal(t, int64(wip), q.Stats().Handled)
			})
		})
	}
}

// TestPublishWaitingForRoomGivesUpWithCtx: a Publish waiting for room
// returns ctx's error when ctx ends first, and stores nothing.
func TestPublishWaitingForRoomGivesUpWithCtx(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		q, err := kanban.NewMemory[int](kanban.MemoryOptions{Capacity: 1})
		require.NoError(t, err)
		require.NoError(t, q.Publish(context.Background(), kanban.Message[int]{ID: "a"}))
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		start := time.Now()
		err = q.Publish(ctx, kanban.Message[int]{ID: "b"})
		require.ErrorIs(t, err, context.DeadlineExceeded)
		assert.Equal(t, time.Minute, time.Since(start), "it waited for room until ctx ended")
		assert.Equal(t, 1, q.Len())
		assert.Equal(t, int64(1), q.Stats().Published)
	})
}

// TestMemoryConsumersShareAQueue: several consumers of one queue each
// take messages, and stopping one leaves the others working.
func TestMemoryConsumersShareAQueue(t *testing.T) {
	for _, perKey := range []bool{false, true} {
		t.Run(fmt.Sprintf("PerKey=%v", perKey), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				q, err := kanban.NewMemory[int](kanban.MemoryOptions{})
				require.NoError(t, err)
				var mu sync.Mutex
				handled := map[string][]string{}
				consume := func(name string, ctx context.Context, done chan<- error) {
					done <- q.Consume(ctx, func(_ context.Context, d kanban.Delivery[int]) error {
						mu.Lock()
						handled[name] = append(handled[name], d.ID)
						mu.Unlock()
						time.Sleep(time.Second)
						return nil
					}, kanban.ConsumeOptions{WIP: 2, PerKey: perKey})
				}
				ctxA, stopA := context.WithCancel(context.Background())
				ctxB, stopB := context.WithCancel(context.Background())
				doneA, doneB := make(chan error, 1), make(chan error, 1)
				go consume("a", ctxA, doneA)
				go consume("b", ctxB, doneB)
				synctest.Wait() // both wait for messages
				for i := range 4 {
					require.NoError(t, q.Publish(context.Background(), kanban.Message[int]{ID: fmt.Sprint("first", i)}))
				}
				time.Sleep(time.Minute)
				mu.Lock()
				assert.Len(t, handled["a"], 2, "each consumer takes its WIP")
				assert.Len(t, handled["b"], 2)
				mu.Unlock()

				stopA()
				require.NoError(t, <-doneA)
				for i := range 4 {
					require.NoError(t, q.Publish(context.Background(), kanban.Message[int]{ID: fmt.Sprint("then", i)}))
				}
				time.Sleep(time.Minute)
				mu.Lock()
				assert.Len(t, handled["a"], 2, "a stopped consumer takes nothing")
				assert.Len(t, handled["b"], 6, "the other goes on")
				mu.Unlock()
				stopB()
				require.NoError(t, <-doneB)
				assert.Zero(t, q.Len())
			})
		})
	}
}

// TestMemoryDrainStartsNothing: once the consumer stops, no message
// starts: those waiting for their key, or taken and not started, go back
// to the queue, first in line.
func TestMemoryDrainStartsNothing(t *testing.T) {
	for _, perKey := range []bool{false, true} {
		t.Run(fmt.Sprintf("PerKey=%v", perKey), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				q, err := kanban.NewMemory[int](kanban.MemoryOptions{})
				require.NoError(t, err)
				for i := range 5 {
					require.NoError(t, q.Publish(context.Background(), kanban.Message[int]{ID: strconv.Itoa(i), Key: "k"}))
				}
				// PerKey: messages 1 and 2 wait for their key; without: the
				// worker has taken messages 1 to 3 with 0.
				opts := kanban.ConsumeOptions{WIP: 3, PerKey: true}
				if !perKey {
					opts = kanban.ConsumeOptions{WIP: 1}
				}
				ctx, cancel := context.WithCancel(context.Background())
				var handled []string
				err = q.Consume(ctx, func(_ context.Context, d kanban.Delivery[int]) error {
					handled = append(handled, d.ID)
					cancel()
					time.Sleep(time.Second) // still running as the drain starts
					return nil
				}, opts)
				require.NoError(t, err)
				assert.Equal(t, []string{"0"}, handled)
				assert.Equal(t, 4, q.Len(), "the others are back")
				assert.Zero(t, q.Stats().InFlight)

				ctx, cancel = context.WithCancel(context.Background())
				handled = nil
				err = q.Consume(ctx, func(_ context.Context, d kanban.Delivery[int]) error {
					if handled = append(handled, d.ID); len(handled) == 4 {
						cancel()
					}
					return nil
				}, kanban.ConsumeOptions{WIP: 1})
				require.NoError(t, err)
				assert.Equal(t, []string{"1", "2", "3", "4"}, handled, "in their order")
			})
		})
	}
}

// TestMemoryWithCodecHoldsBytes: with a Codec the queue holds the encoded
// payload, as a queue on a wire would, not the value published.
func TestMemoryWithCodecHoldsBytes(t *testing.T) {
	q, err := kanban.NewMemory[*blob](kanban.MemoryOptions{Codec: kanban.JSON{}})
	require.NoError(t, err)
	b := new(blob)
	w := weak.Make(b)
	require.NoError(t, q.Publish(context.Background(), kanban.Message[*blob]{ID: "a", Payload: b}))
	b = nil
	runtime.GC()
	assert.Nil(t, w.Value(), "the published value is not kept")
	assert.Equal(t, 1, q.Len())
}

// TestMemoryMixedConsumers: consumers of one queue with and without
// PerKey, at once, each handle or dead-letter every message exactly once.
func TestMemoryMixedConsumers(t *testing.T) {
	const n = 300
	q, err := kanban.NewMemory[int](kanban.MemoryOptions{Capacity: n})
	require.NoError(t, err)
	for i := range n {
		require.NoError(t, q.Publish(context.Background(), kanban.Message[int]{ID: strconv.Itoa(i), Key: strconv.Itoa(i % 7), Payload: i}))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var mu sync.Mutex
	seen := make(map[string]int, n)
	var settled atomic.Int64
	h := func(_ context.Context, d kanban.Delivery[int]) error {
		mu.Lock()
		seen[d.ID]++
		mu.Unlock()
		if strconv.Itoa(d.Payload) != d.ID {
			t.Errorf("message %s carries payload %d", d.ID, d.Payload)
		}
		if settled.Add(1) == n {
			cancel()
		}
		if d.Payload%3 == 0 {
			return kanban.Permanent(errors.New("no"))
		}
		return nil
	}
	var wg sync.WaitGroup
	for _, perKey := range []bool{false, true, false, true} {
		wg.Go(func() {
			assert.NoError(t, q.Consume(ctx, h, kanban.ConsumeOptions{WIP: 2, PerKey: perKey}))
		})
	}
	wg.Wait()
	require.Equal(t, int64(n), settled.Load(), "every message settled before the deadline")
	for i := range n {
		assert.Equal(t, 1, seen[strconv.Itoa(i)], "message %d", i)
	}
	dl, err := q.DeadLetters(context.Background())
	require.NoError(t, err)
	assert.Len(t, dl, n/3)
	assert.Equal(t, kanban.QueueStats{Published: n, Handled: n - n/3, DeadLettered: n / 3}, q.Stats())
	assert.Zero(t, q.Len())
}

// TestPerKeyAttemptsInPlaceCountAfterADrain: a keyed message retried in
// place, then handed back by a drain, is delivered next with the attempts
// it had, so the handler runs it MaxAttempts times in all. It ran once
// more: the in-place attempts were not counted.
func TestPerKeyAttemptsInPlaceCountAfterADrain(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		q, err := kanban.NewMemory[int](kanban.MemoryOptions{})
		require.NoError(t, err)
		bctx := context.Background()
		require.NoError(t, q.Publish(bctx, kanban.Message[int]{ID: "a", Key: "k"}))
		var attempts []int
		opts := kanban.ConsumeOptions{PerKey: true, MaxAttempts: 3, Backoff: kanban.BackoffFunc(func(attempt int) time.Duration {
			if attempt == 1 {
				return time.Millisecond // the second attempt in place
			}
			return time.Second // the drain comes first
		})}
		fail := func(_ context.Context, d kanban.Delivery[int]) error {
			attempts = append(attempts, d.Attempt)
			return errors.New("no")
		}
		ctx, cancel := context.WithTimeout(bctx, 100*time.Millisecond)
		require.NoError(t, q.Consume(ctx, fail, opts))
		cancel()
		assert.Equal(t, []int{1, 2}, attempts, "two attempts in place, then the drain")
		time.Sleep(2 * time.Second) // the retry's delay
		ctx, cancel = context.WithTimeout(bctx, time.Second)
		defer cancel()
		require.NoError(t, q.Consume(ctx, fail, opts))
		assert.Equal(t, []int{1, 2, 3}, attempts)
		dead, err := q.DeadLetters(bctx)
		require.NoError(t, err)
		require.Len(t, dead, 1)
		assert.Equal(t, 3, dead[0].Attempts)
	})
}

// TestPublishAfterWaitingForRoomTimesTheWindowFromTheStore: a Publish that
// waited for room longer than the dedup window records its ID as of when
// it got in, so a repeat right after is a duplicate.
func TestPublishAfterWaitingForRoomTimesTheWindowFromTheStore(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		q, err := kanban.NewMemory[int](kanban.MemoryOptions{Capacity: 1, DedupWindow: time.Minute})
		require.NoError(t, err)
		ctx := context.Background()
		require.NoError(t, q.Publish(ctx, kanban.Message[int]{ID: "a"}))
		published := make(chan error, 1)
		go func() { published <- q.Publish(ctx, kanban.Message[int]{ID: "b"}) }()
		time.Sleep(2 * time.Minute)
		cctx, stop := context.WithCancel(ctx)
		err = q.Consume(cctx, func(_ context.Context, d kanban.Delivery[int]) error {
			if d.ID == "b" {
				stop()
			}
			return nil
		}, kanban.ConsumeOptions{})
		require.NoError(t, err)
		require.NoError(t, <-published)
		require.NoError(t, q.TryPublish(ctx, kanban.Message[int]{ID: "b"}))
		assert.Zero(t, q.Len(), "b again within the window of its store is a duplicate")
		assert.Equal(t, kanban.QueueStats{Published: 2, Duplicates: 1, Handled: 2}, q.Stats())
	})
}

// TestMemoryKeepsEachMessagesHeaders: a Memory stores a message's headers
// as they were at Publish, as a queue on a wire does: a caller that
// reuses its Header for the next message does not change the one queued.
func TestMemoryKeepsEachMessagesHeaders(t *testing.T) {
	for _, name := range []string{"no Propagator", "a Propagator"} {
		t.Run(name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				opts := kanban.MemoryOptions{}
				if name == "a Propagator" {
					opts.Propagator = nothingPropagator{}
				}
				q, err := kanban.NewMemory[int](opts)
				require.NoError(t, err)
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				h := kanban.Header{}
				for _, tenant := range []string{"a", "b"} {
					h.Set("Tenant", tenant)
					require.NoError(t, q.Publish(ctx, kanban.Message[int]{ID: tenant, Headers: h}))
				}
				h.Set("Tenant", "changed after")
				var got []string
				err = q.Consume(ctx, func(_ context.Context, d kanban.Delivery[int]) error {
					if got = append(got, d.ID+"="+d.Headers.Get("Tenant")); len(got) == 2 {
						cancel()
					}
					return nil
				}, kanban.ConsumeOptions{})
				require.NoError(t, err)
				assert.Equal(t, []string{"a=a", "b=b"}, got)
			})
		})
	}
}

// nothingPropagator injects nothing.
type nothingPropagator struct{}

func (nothingPropagator) Inject(context.Context, kanban.Header) {}

func (nothingPropagator) Extract(ctx context.Context, _ kanban.Header) context.Context { return ctx }

// TestDuplicateOnAFullQueueIsDropped: a repeat of a stored ID is dropped
// as a duplicate whether or not the queue has room, as JetStream does:
// TryPublish returns nil, not ErrFull, and Publish does not wait for room
// the message would not take.
func TestDuplicateOnAFullQueueIsDropped(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		q, err := kanban.NewMemory[int](kanban.MemoryOptions{Capacity: 1})
		require.NoError(t, err)
		ctx := context.Background()
		require.NoError(t, q.Publish(ctx, kanban.Message[int]{ID: "a"}))
		assert.NoError(t, q.TryPublish(ctx, kanban.Message[int]{ID: "a"}))
		pctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		assert.NoError(t, q.Publish(pctx, kanban.Message[int]{ID: "a"}))
		assert.ErrorIs(t, q.TryPublish(ctx, kanban.Message[int]{ID: "b"}), kanban.ErrFull)
		assert.Equal(t, 1, q.Len())
		assert.Equal(t, kanban.QueueStats{Published: 1, Duplicates: 2}, q.Stats())
	})
}

// TestConsumeStoppedBeforeItBeginsHandlesNothing: a Consume whose ctx has
// already ended drains at once and runs no handler, with PerKey or not.
// The consumer's workers raced its drain and now and then ran one.
func TestConsumeStoppedBeforeItBeginsHandlesNothing(t *testing.T) {
	for _, perKey := range []bool{false, true} {
		t.Run(fmt.Sprintf("PerKey=%v", perKey), func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			var handled atomic.Int32
			for range 1000 { // the race, when there was one, was lost now and then
				q, err := kanban.NewMemory[int](kanban.MemoryOptions{})
				require.NoError(t, err)
				require.NoError(t, q.Publish(context.Background(), kanban.Message[int]{ID: "a", Key: "k"}))
				err = q.Consume(ctx, func(context.Context, kanban.Delivery[int]) error {
					handled.Add(1)
					return nil
				}, kanban.ConsumeOptions{PerKey: perKey})
				require.NoError(t, err)
				require.Equal(t, 1, q.Len())
			}
			assert.Zero(t, handled.Load(), "messages handled by stopped consumers")
		})
	}
}

// TestMemoryDeadLettersAreCopies: DeadLetters returns copies, headers and
// payloads too, as ListDeadLetters does: a caller that edits what it got
// (redacting a header before logging it) leaves the dead letter as it was.
func TestMemoryDeadLettersAreCopies(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		q, err := kanban.NewMemory[int](kanban.MemoryOptions{})
		require.NoError(t, err)
		ctx, cancel := context.WithCancel(context.Background())
		require.NoError(t, q.Publish(ctx, kanban.Message[int]{ID: "a", Payload: 7, Headers: kanban.Header{"Token": "secret"}}))
		err = q.Consume(ctx, func(context.Context, kanban.Delivery[int]) error {
			cancel()
			return kanban.Permanent(errors.New("no"))
		}, kanban.ConsumeOptions{})
		require.NoError(t, err)
		got, err := q.DeadLetters(context.Background())
		require.NoError(t, err)
		require.Len(t, got, 1)
		got[0].Headers.Set("Token", "redacted")
		got[0].Payload[0] = 'x'
		page, err := q.ListDeadLetters(context.Background(), kanban.DeadLetterQuery{})
		require.NoError(t, err)
		require.Len(t, page.Letters, 1)
		assert.Equal(t, "secret", page.Letters[0].Headers.Get("Token"))
		assert.Equal(t, "7", string(page.Letters[0].Payload))
	})
}

type nopPropagator struct{}

func (*nopPropagator) Inject(context.Context, kanban.Header)                        {}
func (*nopPropagator) Extract(ctx context.Context, _ kanban.Header) context.Context { return ctx }

type nopTracer struct{}

func (*nopTracer) Start(ctx context.Context, _ kanban.Operation) (context.Context, func(error)) {
	return ctx, func(error) {}
}

// TestMemoryConsumerTakesAheadOfItsWIP: without PerKey, a consumer of a
// Memory queue takes a backlog a few messages at a time, so it holds more
// messages than its WIP (though it runs no more handlers): another
// consumer of the queue cannot have them while its handler runs.
func TestMemoryConsumerTakesAheadOfItsWIP(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		q, err := kanban.NewMemory[int](kanban.MemoryOptions{DedupWindow: -1})
		require.NoError(t, err)
		for i := range 3 {
			require.NoError(t, q.Publish(context.Background(), kanban.Message[int]{ID: "m" + strconv.Itoa(i), Payload: i}))
		}
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		unblock := make(chan struct{})
		var mu sync.Mutex
		handled := map[string][]int{}
		consume := func(name string) chan error {
			done := make(chan error, 1)
			go func() {
				done <- q.Consume(ctx, func(_ context.Context, d kanban.Delivery[int]) error {
					mu.Lock()
					handled[name] = append(handled[name], d.Payload)
					mu.Unlock()
					if d.Payload == 0 {
						<-unblock
					}
					return nil
				}, kanban.ConsumeOptions{WIP: 1})
			}()
			return done
		}
		first := consume("first")
		synctest.Wait()
		second := consume("second")
		synctest.Wait()
		mu.Lock()
		assert.Equal(t, map[string][]int{"first": {0}}, handled, "1 and 2 wait in the first consumer")
		mu.Unlock()
		assert.Equal(t, int64(1), q.Stats().InFlight, "one handler runs")
		close(unblock)
		synctest.Wait()
		cancel()
		require.NoError(t, <-first)
		require.NoError(t, <-second)
		assert.Equal(t, map[string][]int{"first": {0, 1, 2}}, handled)
	})
}

// TestPerKeyAttemptsInPlaceCountWhenTheDrainCancelsOne: a keyed message
// whose attempt in place is cancelled by the drain deadline goes back with
// the attempts it had, the cancelled one to be made again: the next
// consumer sees it as that attempt, and it is dead-lettered after
// MaxAttempts in all. It came back as its first attempt, the failures in
// place forgotten, so a consumer restarted often never gave up on it.
func TestPerKeyAttemptsInPlaceCountWhenTheDrainCancelsOne(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		q, err := kanban.NewMemory[int](kanban.MemoryOptions{})
		require.NoError(t, err)
		bctx := context.Background()
		require.NoError(t, q.Publish(bctx, kanban.Message[int]{ID: "a", Key: "k"}))
		var attempts []int
		opts := kanban.ConsumeOptions{PerKey: true, MaxAttempts: 3, DrainTimeout: time.Second,
			Backoff: kanban.BackoffFunc(func(int) time.Duration { return time.Millisecond })}
		ctx, cancel := context.WithCancel(bctx)
		err = q.Consume(ctx, func(hctx context.Context, d kanban.Delivery[int]) error {
			attempts = append(attempts, d.Attempt)
			if d.Attempt < 2 {
				return errors.New("no")
			}
			cancel()      // the consumer stops while the second attempt runs
			<-hctx.Done() // until the drain deadline
			return hctx.Err()
		}, opts)
		require.ErrorIs(t, err, kanban.ErrDrainTimeout)
		assert.Equal(t, []int{1, 2}, attempts)
		assert.Equal(t, 1, q.Len())

		ctx, cancel = context.WithTimeout(bctx, time.Second)
		defer cancel()
		require.NoError(t, q.Consume(ctx, func(_ context.Context, d kanban.Delivery[int]) error {
			attempts = append(attempts, d.Attempt)
			return errors.New("no")
		}, opts))
		assert.Equal(t, []int{1, 2, 2, 3}, attempts, "the cancelled attempt is made again, then one more")
		dead, err := q.DeadLetters(bctx)
		require.NoError(t, err)
		require.Len(t, dead, 1)
		assert.Equal(t, 3, dead[0].Attempts)
	})
}

// TestMemoryRetrySeesTheHeadersAsPublished: a handler that writes to its
// delivery's headers writes to a copy of its own: the retry, whether made
// in place (PerKey) or through the queue, and the dead letter see the
// headers as published, with or without a Tracer or an Observer.
func TestMemoryRetrySeesTheHeadersAsPublished(t *testing.T) {
	for _, perKey := range []bool{false, true} {
		for _, observed := range []bool{false, true} {
			t.Run(fmt.Sprintf("PerKey=%v/observed=%v", perKey, observed), func(t *testing.T) {
				synctest.Test(t, func(t *testing.T) {
					opts := kanban.MemoryOptions{}
					if observed {
						opts.Tracer = &nopTracer{}
					}
					q, err := kanban.NewMemory[int](opts)
					require.NoError(t, err)
					ctx, cancel := context.WithCancel(context.Background())
					require.NoError(t, q.Publish(ctx, kanban.Message[int]{ID: "a", Key: "k", Headers: kanban.Header{"Tenant": "a"}}))
					var seen []string
					err = q.Consume(ctx, func(_ context.Context, d kanban.Delivery[int]) error {
						seen = append(seen, d.Headers.Get("Tenant")+","+d.Headers.Get("Added"))
						d.Headers.Set("Tenant", "changed")
						d.Headers.Set("Added", "yes")
						if d.Attempt == 3 {
							cancel()
						}
						return errors.New("again")
					}, kanban.ConsumeOptions{PerKey: perKey, MaxAttempts: 3, Backoff: kanban.BackoffFunc(func(int) time.Duration { return time.Second })})
					require.NoError(t, err)
					assert.Equal(t, []string{"a,", "a,", "a,"}, seen)
					dead, err := q.DeadLetters(context.Background())
					require.NoError(t, err)
					require.Len(t, dead, 1)
					assert.Equal(t, kanban.Header{"Tenant": "a"}, dead[0].Headers)
				})
			})
		}
	}
}

// TestMemoryRetrySeesEmptyHeadersEmpty: a message published with an
// empty, not nil, Header is delivered with one the handler may write,
// and its retry gets it empty again.
func TestMemoryRetrySeesEmptyHeadersEmpty(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		q, err := kanban.NewMemory[int](kanban.MemoryOptions{})
		require.NoError(t, err)
		ctx, cancel := context.WithCancel(context.Background())
		require.NoError(t, q.Publish(ctx, kanban.Message[int]{ID: "a", Headers: kanban.Header{}}))
		var seen []kanban.Header
		err = q.Consume(ctx, func(_ context.Context, d kanban.Delivery[int]) error {
			seen = append(seen, d.Headers.Clone())
			d.Headers["Added"] = "yes"
			if d.Attempt == 2 {
				cancel()
				return nil
			}
			return errors.New("again")
		}, kanban.ConsumeOptions{})
		require.NoError(t, err)
		assert.Equal(t, []kanban.Header{{}, {}}, seen)
	})
}

// TestShortDrainTimeoutWithNothingRunning: a drain whose DrainTimeout is
// shorter than the consumer's idle workers take to end has cut no handler
// short: Consume returns nil, not ErrDrainTimeout, whether the consumer
// stops before it began or, idle, once its messages are handled (without
// PerKey, whose workers' settled messages Stats shows exactly).
func TestShortDrainTimeoutWithNothingRunning(t *testing.T) {
	for _, perKey := range []bool{false, true} {
		t.Run(fmt.Sprintf("PerKey=%v", perKey), func(t *testing.T) {
			q, err := kanban.NewMemory[int](kanban.MemoryOptions{})
			require.NoError(t, err)
			opts := kanban.ConsumeOptions{WIP: 4, PerKey: perKey, DrainTimeout: time.Nanosecond}
			for range 100 {
				ctx, cancel := context.WithCancel(context.Background())
				cancel()
				require.NoError(t, q.Consume(ctx, func(context.Context, kanban.Delivery[int]) error { return nil }, opts),
					"stopped before it began")
			}
			if perKey {
				return
			}
			for i := range 20 {
				for j := range 3 {
					id := strconv.Itoa(3*i + j)
					require.NoError(t, q.Publish(context.Background(), kanban.Message[int]{ID: id, Key: id}))
				}
				ctx, cancel := context.WithCancel(context.Background())
				handled := make(chan struct{}, 3)
				done := make(chan error, 1)
				go func() {
					done <- q.Consume(ctx, func(context.Context, kanban.Delivery[int]) error {
						handled <- struct{}{}
						return nil
					}, opts)
				}()
				for range 3 {
					<-handled
				}
				for q.Len() > 0 || q.Stats().InFlight > 0 {
					runtime.Gosched() // until every message is settled
				}
				cancel()
				require.NoError(t, <-done, "stopped idle")
			}
		})
	}
}
