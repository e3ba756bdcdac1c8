package kanban_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"testing/synctest"
	"time"
	"weak"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/kanban"
)

// blob is a payload whose memory a test can watch through a weak pointer.
type blob struct{ _ [4096]byte }

// TestSettledMessagesAreNotKeptAlive: once a message is settled — handled,
// retried and handled — the queue and its consumers keep nothing of it
// alive, while the consumer waits for more and after it has stopped: a
// long-lived queue does not hold on to payloads it is done with. A dead
// letter keeps its message, to redrive it, until it is deleted.
func TestSettledMessagesAreNotKeptAlive(t *testing.T) {
	for _, perKey := range []bool{false, true} {
		t.Run(fmt.Sprintf("PerKey=%v", perKey), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				const n = 8
				q, err := kanban.NewMemory[*blob](kanban.MemoryOptions{})
				require.NoError(t, err)
				var watched []weak.Pointer[blob]
				for i := range n {
					b := new(blob)
					watched = append(watched, weak.Make(b))
					m := kanban.Message[*blob]{ID: strconv.Itoa(i), Payload: b, Headers: kanban.Header{"i": strconv.Itoa(i)}}
					if i%2 == 0 {
						m.Key = "k"
					}
					require.NoError(t, q.Publish(context.Background(), m))
				}
				alive := func() (ids []int) {
					runtime.GC()
					for i, w := range watched {
						if w.Value() != nil {
							ids = append(ids, i)
						}
					}
					return ids
				}

				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				done := make(chan error, 1)
				go func() {
					done <- q.Consume(ctx, func(_ context.Context, d kanban.Delivery[*blob]) error {
						switch d.ID {
						case "3":
							return kanban.Permanent(errors.New("dead"))
						case "5":
							if d.Attempt == 1 {
								return errors.New("again")
							}
						}
						return nil
					}, kanban.ConsumeOptions{WIP: 3, PerKey: perKey, Backoff: kanban.BackoffFunc(func(int) time.Duration { return time.Second })})
				}()
				time.Sleep(time.Minute) // every message settled; the consumer waits for more
				synctest.Wait()
				assert.Equal(t, kanban.QueueStats{Published: n, Handled: n - 1, Retried: 1, Redelivered: 1, DeadLettered: 1}, q.Stats())
				assert.Equal(t, []int{3}, alive(), "payloads kept alive while the consumer waits: the dead letter's only")
				cancel()
				require.NoError(t, <-done)
				assert.Equal(t, []int{3}, alive(), "payloads kept alive after the consumer stopped: the dead letter's only")
				deleted, err := q.DeleteDeadLetters(context.Background(), kanban.DeadLetterFilter{All: true})
				require.NoError(t, err)
				assert.Equal(t, 1, deleted)
				assert.Empty(t, alive(), "a deleted dead letter's payload kept alive")
				runtime.KeepAlive(q)
			})
		})
	}
}

// TestDecodedPayloadsAreNotKeptAlive: with a Codec, the payloads decoded
// for the handler are not kept alive once their messages are settled,
// while the consumer waits for more and after it has stopped.
func TestDecodedPayloadsAreNotKeptAlive(t *testing.T) {
	for _, perKey := range []bool{false, true} {
		t.Run(fmt.Sprintf("PerKey=%v", perKey), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				const n = 8
				q, err := kanban.NewMemory[*blob](kanban.MemoryOptions{Codec: kanban.JSON{}})
				require.NoError(t, err)
				for i := range n {
					require.NoError(t, q.Publish(context.Background(), kanban.Message[*blob]{ID: strconv.Itoa(i), Key: "k", Payload: new(blob)}))
				}
				var (
					mu      sync.Mutex
					watched []weak.Pointer[blob]
				)
				alive := func() (count int) {
					runtime.GC()
					mu.Lock()
					defer mu.Unlock()
					for _, w := range watched {
						if w.Value() != nil {
							count++
						}
					}
					return count
				}
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				done := make(chan error, 1)
				go func() {
					done <- q.Consume(ctx, func(_ context.Context, d kanban.Delivery[*blob]) error {
						mu.Lock()
						watched = append(watched, weak.Make(d.Payload))
						mu.Unlock()
						return nil
					}, kanban.ConsumeOptions{WIP: 3, PerKey: perKey})
				}()
				time.Sleep(time.Minute) // every message handled; the consumer waits for more
				synctest.Wait()
				require.EqualValues(t, n, q.Stats().Handled)
				assert.Zero(t, alive(), "decoded payloads kept alive while the consumer waits")
				cancel()
				require.NoError(t, <-done)
				assert.Zero(t, alive(), "decoded payloads kept alive after the consumer stopped")
				runtime.KeepAlive(q)
			})
		})
	}
}
