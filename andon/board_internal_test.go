package andon

import (
	"context"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A stream that waited for a state it could not share begins the next one
// with the channels current as it begins, not those it asked with before
// the wait: a stream woken by a change that came during the wait asks with
// the current channels, and shares that state rather than begin one more
// after it. With the channels of before the wait, the streams of a board
// under load split in two groups that took a state in turn, each group a
// state behind, for as long as the changes came.
func TestStreamStateBegunAfterAWaitIsShared(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e, err := NewEvaluator(EvaluatorOptions{})
		require.NoError(t, err)
		defer func() { require.NoError(t, e.Shutdown(context.Background())) }()
		const take = 100 * time.Millisecond
		b, err := NewBoard(e, BoardOptions{Refresh: time.Hour, Panels: []Panel{{Title: "Jobs", Columns: []string{"Job"},
			Rows: func() []PanelRow { time.Sleep(take); return nil }}}})
		require.NoError(t, err)
		ctx := context.Background()
		change := func() {
			e.mu.Lock()
			e.broadcast()
			e.mu.Unlock()
		}
		current := func() wake { return wake{changed: e.watch(), poked: b.poked()} }
		ask := func(w *wake, shown *streamState) <-chan *streamState {
			got := make(chan *streamState, 1)
			go func() { got <- b.streamState(ctx, w, shown.seq, shown.order, time.Time{}) }()
			return got
		}

		w0 := current()
		first := b.streamState(ctx, &w0, 0, 0, time.Time{}) // a new stream's own
		require.NoError(t, first.err)

		// A change; one stream begins the state that shows it.
		change()
		w1 := current()
		taking := ask(&w1, first)
		synctest.Wait()
		// Another change: a stream it woke cannot share the state being
		// taken, begun before it, and waits for it.
		change()
		wa := current()
		waiting := ask(&wa, first)
		synctest.Wait()
		// A third change while it waits.
		change()
		now := current()

		time.Sleep(take) // the state being taken is ready; the waiting stream begins the next
		synctest.Wait()
		require.Equal(t, first.seq+1, (<-taking).seq)
		shots := b.shots
		assert.Equal(t, now, wa, "the waiting stream waits next on the channels current when it began")

		// A stream woken by the third change asks now: it shares that
		// state, begun after the change.
		wb := current()
		shared := ask(&wb, first)
		time.Sleep(take)
		synctest.Wait()
		a, bs := <-waiting, <-shared
		assert.Equal(t, a.seq, bs.seq, "the stream woken by the last change shares the state begun after it")
		assert.Equal(t, shots, b.shots, "no state begun after the shared one")
		time.Sleep(take) // a state begun for the second stream, if one was, ends before the bubble does
	})
}
