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
// slots free than it pulls for at once, is taken at once: it reaches a
// handler, whose lease the runtime extends, while the others still hold
// their slots. Left waiting in the request until a quarter of the WIP was
// free, its lease was not extended, it outlived its AckWait under long
// handlers, and the server delivered it a second time while the first
// copy was still to be handled. The AckWait is the default, far longer
// than the test: what is shown is that the message is taken before the
// others end, which no load on the machine changes.
func TestLateMessageOfAPullIsHeldNotLeftToExpire(t *testing.T) {
	srv := startServer(t, natsembed.Options{InProcess: true})
	ctx := context.Background()
	q, err := natsjs.New[int](ctx, connect(t, srv.Connect), natsjs.Options{Stream: "LATE", FetchWait: 2 * time.Second})
	require.NoError(t, err)
	for i := range 7 {
		require.NoError(t, q.Publish(ctx, kanban.Message[int]{ID: strconv.Itoa(i)}))
	}
	var mu sync.Mutex
	attempts := map[string][]int{}
	started := make(chan string, 16)
	release := make(chan struct{})
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- q.Consume(cctx, func(_ context.Context, d kanban.Delivery[int]) error {
			mu.Lock()
			attempts[d.ID] = append(attempts[d.ID], d.Attempt)
			mu.Unlock()
			started <- d.ID
			if d.ID != "late" {
				<-release
			}
			return nil
		}, kanban.ConsumeOptions{WIP: 8})
	}()
	for range 7 {
		require.NotEqual(t, "late", <-started)
	}
	// The pull request for 8 is still open (or, expired, followed by one
	// for the slot free): it delivers this one while one slot of the 8 is
	// free, and the 7 others are held until it is handled.
	require.NoError(t, q.Publish(ctx, kanban.Message[int]{ID: "late"}))
	// The bound only ends a failing run: a passing one does not wait it out.
	timeout := time.NewTimer(20 * time.Second)
	defer timeout.Stop()
	for late := false; !late; {
		select {
		case id := <-started:
			late = id == "late"
		case <-timeout.C:
			close(release)
			t.Fatal("the late message waited in the pull request for the running handlers to end")
		}
	}
	close(release)
	require.Eventually(t, func() bool { return depth(q) == 0 }, 20*time.Second, 10*time.Millisecond)
	cancel()
	require.NoError(t, <-done)
	mu.Lock()
	defer mu.Unlock()
	assert.Equal(t, []int{1}, attempts["late"], "delivered once")
	for i := range 7 {
		assert.Equal(t, []int{1}, attempts[strconv.Itoa(i)], "message %d delivered once", i)
	}
}
