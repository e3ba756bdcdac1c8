package kanban

import (
	"context"
	"errors"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// refusingSource is a Memory queue's Source whose leases fail to
// dead-letter a message the first time, and hand it back to be delivered
// again, as natsjs does when its dead-letter stream is unreachable.
type refusingSource struct {
	*memSource[int]
	mu      sync.Mutex
	refused map[string]bool
}

func (s *refusingSource) Pull(ctx context.Context, max int) ([]Lease[int], error) {
	ls, err := s.memSource.Pull(ctx, max)
	out := make([]Lease[int], len(ls))
	for i, l := range ls {
		out[i] = &refusingLease{memEntry: l.(*memEntry[int]), s: s}
	}
	return out, err
}

type refusingLease struct {
	*memEntry[int]
	s *refusingSource
}

func (l *refusingLease) DeadLetter(ctx context.Context, reason string, attempts int) error {
	l.s.mu.Lock()
	first := !l.s.refused[l.ID()]
	l.s.refused[l.ID()] = true
	l.s.mu.Unlock()
	if first {
		_ = l.memEntry.Retry(ctx, 0)
		return errors.New("dead-letter store unreachable")
	}
	return l.memEntry.DeadLetter(ctx, reason, attempts)
}

// TestDeadLetterFailureKeepsTheReason: a message whose dead-lettering
// failed, handed back by the backend, is dead-lettered on its next
// delivery with the reason it was being dead-lettered for — the handler's
// error — not a note that it was delivered too often; and a message the
// handler called Permanent is not handled again.
func TestDeadLetterFailureKeepsTheReason(t *testing.T) {
	for _, perKey := range []bool{false, true} {
		synctest.Test(t, func(t *testing.T) {
			q, err := NewMemory[int](MemoryOptions{})
			require.NoError(t, err)
			for _, id := range []string{"used-up", "permanent"} {
				require.NoError(t, q.Publish(context.Background(), Message[int]{ID: id, Key: id}))
			}
			src := &refusingSource{memSource: &memSource[int]{q: q}, refused: map[string]bool{}}
			var mu sync.Mutex
			calls := map[string]int{}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() {
				done <- Serve(ctx, Source[int](src), func(_ context.Context, d Delivery[int]) error {
					mu.Lock()
					calls[d.ID]++
					mu.Unlock()
					if d.ID == "permanent" {
						return Permanent(errors.New("card declined"))
					}
					return errors.New("gateway down")
				}, ConsumeOptions{MaxAttempts: 2, PerKey: perKey, Backoff: BackoffFunc(func(int) time.Duration { return time.Second })}, Runtime{Counters: &q.counters})
			}()
			time.Sleep(time.Minute)
			synctest.Wait()
			cancel()
			require.NoError(t, <-done)
			dl, err := q.DeadLetters(context.Background())
			require.NoError(t, err)
			reasons := map[string]string{}
			for _, d := range dl {
				reasons[d.ID] = d.Reason
			}
			assert.Equal(t, map[string]string{"used-up": "gateway down", "permanent": "card declined"}, reasons, "PerKey=%v", perKey)
			assert.Equal(t, map[string]int{"used-up": 2, "permanent": 1}, calls, "PerKey=%v", perKey)
			assert.Zero(t, q.Len())
		})
	}
}

// TestDeadLetterFailureForgottenForANewMessageOfTheID: a message whose
// dead-lettering failed and that another consumer then settled is not
// held against a later message of the same ID (published again, or
// redriven), which starts at Attempt 1: that one's handler runs on every
// attempt, and it is dead-lettered only for its own failures.
func TestDeadLetterFailureForgottenForANewMessageOfTheID(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		q, err := NewMemory[int](MemoryOptions{DedupWindow: -1})
		require.NoError(t, err)
		ctx := context.Background()
		require.NoError(t, q.Publish(ctx, Message[int]{ID: "x"}))
		require.NoError(t, q.Publish(ctx, Message[int]{ID: "block"}))
		var mu sync.Mutex
		calls := 0
		unblock := make(chan struct{})
		h := func(_ context.Context, d Delivery[int]) error {
			if d.ID == "block" {
				<-unblock
				return nil
			}
			mu.Lock()
			calls++
			n := calls
			mu.Unlock()
			switch n {
			case 1: // consumer a: its dead letter is refused, x comes back
				return Permanent(errors.New("card declined"))
			case 3: // the new x, on consumer a
				return errors.New("gateway down")
			}
			return nil
		}
		opts := ConsumeOptions{Backoff: BackoffFunc(func(int) time.Duration { return time.Second })}
		// Consumer a refuses x's dead letter, then waits on block, so
		// that consumer b handles x when it comes back.
		src := &refusingSource{memSource: &memSource[int]{q: q}, refused: map[string]bool{}}
		actx, stopA := context.WithCancel(ctx)
		aDone := make(chan error, 1)
		go func() { aDone <- Serve(actx, Source[int](src), h, opts, Runtime{Counters: &q.counters}) }()
		synctest.Wait()
		bctx, stopB := context.WithCancel(ctx)
		bDone := make(chan error, 1)
		go func() { bDone <- q.Consume(bctx, h, opts) }()
		synctest.Wait()
		stopB()
		require.NoError(t, <-bDone)
		require.Equal(t, 1, q.Len(), "b handled x; a holds block")

		// A new message with the ID x, handled by a: it fails once, and
		// its second attempt runs the handler.
		require.NoError(t, q.Publish(ctx, Message[int]{ID: "x"}))
		close(unblock)
		time.Sleep(time.Minute)
		synctest.Wait()
		stopA()
		require.NoError(t, <-aDone)
		dl, err := q.DeadLetters(ctx)
		require.NoError(t, err)
		assert.Empty(t, dl)
		assert.Equal(t, 4, calls)
		assert.Zero(t, q.Len())
	})
}

// anonSource is a refusingSource whose messages have no ID, as messages
// another client published to a natsjs stream without Nats-Msg-Id do.
type anonSource struct{ *refusingSource }

func (s anonSource) Pull(ctx context.Context, max int) ([]Lease[int], error) {
	ls, err := s.refusingSource.Pull(ctx, max)
	for i, l := range ls {
		ls[i] = anonLease{l.(*refusingLease)}
	}
	return ls, err
}

type anonLease struct{ *refusingLease }

func (anonLease) ID() string { return "" }

// DeadLetter fails the first time it is called, of any message, and
// hands that message back after ten seconds, when the backend has it
// delivered again.
func (l anonLease) DeadLetter(ctx context.Context, reason string, attempts int) error {
	l.s.mu.Lock()
	first := len(l.s.refused) == 0
	l.s.refused[l.memEntry.ID()] = true
	l.s.mu.Unlock()
	if first {
		_ = l.memEntry.Retry(ctx, 10*time.Second)
		return errors.New("dead-letter store unreachable")
	}
	return l.memEntry.DeadLetter(ctx, reason, attempts)
}

// TestDeadLetterFailureOfAMessageWithoutID: what is remembered of a
// message whose dead-lettering failed is found again by its ID; a
// message without one cannot be told from another without one, so
// nothing is remembered of it. Before, a second message without an ID
// was dead-lettered on its second delivery for the first one's reason,
// its handler never run again.
func TestDeadLetterFailureOfAMessageWithoutID(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		q, err := NewMemory[int](MemoryOptions{})
		require.NoError(t, err)
		ctx := context.Background()
		require.NoError(t, q.Publish(ctx, Message[int]{ID: "flaky", Payload: 2}))
		require.NoError(t, q.Publish(ctx, Message[int]{ID: "declined", Payload: 1}))
		src := anonSource{&refusingSource{memSource: &memSource[int]{q: q}, refused: map[string]bool{}}}
		var mu sync.Mutex
		calls := map[int]int{}
		sctx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() {
			done <- Serve(sctx, Source[int](src), func(_ context.Context, d Delivery[int]) error {
				mu.Lock()
				calls[d.Payload]++
				n := calls[d.Payload]
				mu.Unlock()
				if d.Payload == 1 {
					return Permanent(errors.New("card declined"))
				}
				if n == 1 {
					return errors.New("gateway down")
				}
				return nil
			}, ConsumeOptions{MaxAttempts: 3, Backoff: BackoffFunc(func(int) time.Duration { return time.Second })}, Runtime{Counters: &q.counters})
		}()
		time.Sleep(time.Minute)
		synctest.Wait()
		cancel()
		require.NoError(t, <-done)
		dl, err := q.DeadLetters(ctx)
		require.NoError(t, err)
		var got []string
		for _, d := range dl {
			got = append(got, d.ID+": "+d.Reason)
		}
		assert.Equal(t, []string{"declined: card declined"}, got, "the flaky message succeeded on its second attempt")
		assert.Equal(t, 2, calls[2], "the flaky message's handler ran again")
		assert.Zero(t, q.Len())
	})
}
