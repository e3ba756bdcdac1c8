package natsjs_test

import (
	"context"
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

// TestLateMessageOfAPullIsHeldNotLeftToExpire: a message that a pull
// request delivers after the consumer has taken the others, with fewer
// slots free than it pulls for at once, is taken and its lease extended
// at once: left waiting in the request until a quarter of the WIP was
// free, it outlived its AckWait under long handlers, and the server
// delivered it a second time while the first copy was still to be
// handled.
func TestLateMessageOfAPullIsHeldNotLeftToExpire(t *testing.T) {
	const ackWait = 200 * time.Millisecond
	srv := startServer(t, natsembed.Options{InProcess: true})
	ctx := context.Background()
	q, err := natsjs.New[int](ctx, connect(t, srv.Connect), natsjs.Options{Stream: "LATE", AckWait: ackWait, FetchWait: 2 * time.Second})
	require.NoError(t, err)
	for i := range 7 {
		require.NoError(t, q.Publish(ctx, kanban.Message[int]{ID: strconv.Itoa(i)}))
	}
	var mu sync.Mutex
	attempts := map[string][]int{}
	started := make(chan struct{}, 10)
	release, again := make(chan struct{}), make(chan struct{})
	cctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- q.Consume(cctx, func(_ context.Context, d kanban.Delivery[int]) error {
			mu.Lock()
			attempts[d.ID] = append(attempts[d.ID], d.Attempt)
			if d.ID == "late" && len(attempts[d.ID]) == 2 {
				close(again)
			}
			mu.Unlock()
			if d.ID != "late" {
				started <- struct{}{}
				<-release
				return nil
			}
			if d.Attempt == 1 {
				// Long enough for a second delivery to show.
				select {
				case <-again:
				case <-time.After(10 * ackWait):
				}
			}
			return nil
		}, kanban.ConsumeOptions{WIP: 8})
	}()
	for range 7 {
		<-started
	}
	// The pull request for 8 is still open: it delivers this one while
	// one slot of the 8 is free.
	require.NoError(t, q.Publish(ctx, kanban.Message[int]{ID: "late"}))
	time.Sleep(5 * ackWait) // the lease of a message left waiting runs out
	close(release)
	require.Eventually(t, func() bool { return depth(q) == 0 }, 20*time.Second, 10*time.Millisecond)
	cancel()
	require.NoError(t, <-done)
	mu.Lock()
	defer mu.Unlock()
	assert.Equal(t, []int{1}, attempts["late"], "delivered once")
}
