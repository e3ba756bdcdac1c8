package kanbanhttp_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http/httptest"
	"strconv"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/andon"
	"github.com/taipattern/taikit/kanban"
	"github.com/taipattern/taikit/kanban/kanbanhttp"
)

// unreadable is a queue whose server is gone.
type unreadable struct{ *kanban.Memory[order] }

func (unreadable) Backlog(context.Context) (kanban.Backlog, error) {
	return kanban.Backlog{}, errors.New("nats: no servers available")
}

func TestPanels(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dead := deadQueue(t, 0, 3)
		busy, err := kanban.NewMemory[order](kanban.MemoryOptions{})
		require.NoError(t, err)
		idle, err := kanban.NewMemory[order](kanban.MemoryOptions{})
		require.NoError(t, err)
		for _, id := range []string{"a", "b"} {
			require.NoError(t, busy.Publish(context.Background(), kanban.Message[order]{ID: id}))
		}
		var refreshed atomic.Int64
		h, err := kanbanhttp.New(kanbanhttp.Options{Prefix: "/ops", OnRefresh: func() { refreshed.Add(1) }})
		require.NoError(t, err)
		require.NoError(t, h.AddQueue("dead", dead))
		require.NoError(t, h.AddQueue("busy", busy))
		require.NoError(t, h.AddQueue("idle", idle))
		require.NoError(t, h.AddQueue("gone", unreadable{idle}))
		qp := h.QueuePanel(kanbanhttp.PanelOptions{OldestAmber: time.Minute})
		assert.Equal(t, "Queues", qp.Title)
		for _, r := range qp.Rows() {
			assert.Equal(t, "grey", r.Color, "not read yet")
		}

		time.Sleep(90 * time.Second)
		err = h.Refresh(context.Background())
		require.ErrorContains(t, err, "queue gone: nats: no servers available")
		assert.Equal(t, int64(1), refreshed.Load())
		assert.Equal(t, []andon.PanelRow{
			{Cells: []string{"dead", "0", "0s", "3"}, Color: "red", Link: "/ops/queues/dead/deadletters?order=newest"},
			{Cells: []string{"busy", "2", "1m30s", "0"}, Color: "amber", Link: "/ops/queues/busy/deadletters?order=newest"},
			{Cells: []string{"idle", "0", "0s", "0"}, Color: "green", Link: "/ops/queues/idle/deadletters?order=newest"},
			{Cells: []string{"gone", "?", "?", "unreadable; the service's log has the detail"}, Color: "red", Link: "/ops/queues/gone/deadletters?order=newest"},
		}, qp.Rows())
		byDepth := h.QueuePanel(kanbanhttp.PanelOptions{Title: "By depth", DepthAmber: 3})
		assert.Equal(t, "green", byDepth.Rows()[1].Color, "2 is below DepthAmber")

		dp, err := h.DeadLetterPanel("dead", "")
		require.NoError(t, err)
		assert.Equal(t, "Dead letters: dead", dp.Title)
		rows := dp.Rows()
		require.Len(t, rows, 3)
		assert.Equal(t, "3", rows[0].Cells[0], "newest first")
		assert.Equal(t, []string{"o-3", "k-1", "1", "refused k-1"}, rows[0].Cells[2:])
		assert.Equal(t, "/ops/queues/dead/deadletters?seq=3", rows[0].Link)
		_, err = h.DeadLetterPanel("nope", "")
		assert.Error(t, err)

		// The panels are the board's: it shows them as they are.
		ev, err := andon.NewEvaluator(andon.EvaluatorOptions{})
		require.NoError(t, err)
		board, err := andon.NewBoard(ev, andon.BoardOptions{Panels: []andon.Panel{qp, dp}})
		require.NoError(t, err)
		w := httptest.NewRecorder()
		board.ServeHTTP(w, httptest.NewRequest("GET", "/api/state", nil))
		var st andon.BoardState
		require.NoError(t, json.Unmarshal(w.Body.Bytes(), &st))
		require.Len(t, st.Panels, 2)
		assert.Equal(t, qp.Rows(), st.Panels[0].Rows)
		assert.Equal(t, "o-3", st.Panels[1].Rows[0].Cells[2])
		assert.NotContains(t, w.Body.String(), "no servers available", "a backend's error text stays off the board")
		require.NoError(t, board.Shutdown(context.Background()))
	})
}

func TestWatch(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var refreshed atomic.Int64
		h, err := kanbanhttp.New(kanbanhttp.Options{OnRefresh: func() { refreshed.Add(1) }})
		require.NoError(t, err)
		require.NoError(t, h.AddQueue("q", deadQueue(t, 0, 1)))
		assert.Error(t, h.Watch(context.Background(), 0))

		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- h.Watch(ctx, 10*time.Second) }()
		synctest.Wait()
		assert.Equal(t, int64(1), refreshed.Load(), "at once")
		time.Sleep(35 * time.Second)
		synctest.Wait()
		assert.Equal(t, int64(4), refreshed.Load(), "then every 10s")
		cancel()
		assert.ErrorIs(t, <-done, context.Canceled)
	})
}

// slowStore is a queue whose reads wait, while slow is set, until their
// context ends, as a store on a distant server does.
type slowStore struct {
	*kanban.Memory[order]
	slow atomic.Bool
}

func (s *slowStore) ListDeadLetters(ctx context.Context, q kanban.DeadLetterQuery) (kanban.DeadLetterPage, error) {
	if s.slow.Load() {
		<-ctx.Done()
		return kanban.DeadLetterPage{}, ctx.Err()
	}
	return s.Memory.ListDeadLetters(ctx, q)
}

// The end of Watch is no failure of the queues: a read it cuts short
// leaves the panels as the last whole read left them, and tells no live
// board, rather than paint every queue unreadable as the service stops.
func TestWatchStoppedMidReadKeepsThePanels(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var refreshed atomic.Int64
		h, err := kanbanhttp.New(kanbanhttp.Options{OnRefresh: func() { refreshed.Add(1) }})
		require.NoError(t, err)
		q := &slowStore{Memory: deadQueue(t, 0, 1)}
		require.NoError(t, h.AddQueue("q", q))
		qp := h.QueuePanel(kanbanhttp.PanelOptions{})
		dp, err := h.DeadLetterPanel("q", "")
		require.NoError(t, err)

		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- h.Watch(ctx, 10*time.Second) }()
		synctest.Wait()
		require.Equal(t, int64(1), refreshed.Load())
		rows, dead := qp.Rows(), dp.Rows()
		require.Equal(t, "red", rows[0].Color)
		require.Equal(t, "1", rows[0].Cells[3], "one dead letter")
		require.Len(t, dead, 1)

		q.slow.Store(true)
		time.Sleep(10 * time.Second) // the next Refresh begins, and waits
		synctest.Wait()
		cancel()
		require.ErrorIs(t, <-done, context.Canceled)
		assert.Equal(t, rows, qp.Rows(), "the queue is not unreadable: Watch stopped")
		assert.Equal(t, dead, dp.Rows())
		assert.Equal(t, int64(1), refreshed.Load(), "no live board is told of a read cut short")

		// Started with a context that has ended, Watch reads nothing.
		q.slow.Store(false)
		require.ErrorIs(t, h.Watch(ctx, time.Second), context.Canceled)
		assert.Equal(t, rows, qp.Rows())
		assert.Equal(t, int64(1), refreshed.Load())
	})
}

// flakyStore is a queue whose dead letters cannot be read while failing is
// set.
type flakyStore struct {
	*kanban.Memory[order]
	failing atomic.Bool
}

func (f *flakyStore) ListDeadLetters(ctx context.Context, q kanban.DeadLetterQuery) (kanban.DeadLetterPage, error) {
	if f.failing.Load() {
		return kanban.DeadLetterPage{}, errors.New("nats: no servers available")
	}
	return f.Memory.ListDeadLetters(ctx, q)
}

func TestDeadLetterPanelShowsOnlyWhatTheLastRefreshRead(t *testing.T) {
	q := &flakyStore{Memory: deadQueue(t, 0, 3)}
	h, err := kanbanhttp.New(kanbanhttp.Options{Prefix: "/ops"})
	require.NoError(t, err)
	require.NoError(t, h.AddQueue("q", q))
	dp, err := h.DeadLetterPanel("q", "")
	require.NoError(t, err)
	assert.Equal(t, []andon.PanelRow{{Cells: []string{"…", "", "", "", "", "not read yet"}, Color: "grey"}}, dp.Rows(),
		"not \"no dead letters\" before the queue is read")

	require.NoError(t, h.Refresh(context.Background()))
	require.Len(t, dp.Rows(), 3)

	// The queue cannot be read: the panel says so, and no longer lists
	// dead letters that may have been redriven or deleted since.
	q.failing.Store(true)
	require.Error(t, h.Refresh(context.Background()))
	rows := dp.Rows()
	assert.Equal(t, []andon.PanelRow{{Cells: []string{"?", "", "", "", "", "unreadable; the service's log has the detail"}, Color: "red"}}, rows)

	q.failing.Store(false)
	require.NoError(t, h.Refresh(context.Background()))
	require.Len(t, dp.Rows(), 3)
	assert.Equal(t, "3", dp.Rows()[0].Cells[0])
}

// storeOnly is a queue that is a DeadLetterStore alone: no backlog.
type storeOnly struct{ kanban.DeadLetterStore }

// TestQueuePanelCountsDeadLettersWithoutABacklog: a queue with no
// backlog shows the number of dead letters it keeps, as its listing's
// total says, not those the panel read: 20 were shown as "20+", and 25
// as "20+" too.
func TestQueuePanelCountsDeadLettersWithoutABacklog(t *testing.T) {
	for _, n := range []int{0, 3, kanbanhttp.PanelDeadLetters, kanbanhttp.PanelDeadLetters + 5} {
		h, err := kanbanhttp.New(kanbanhttp.Options{})
		require.NoError(t, err)
		require.NoError(t, h.AddQueue("q", storeOnly{deadQueue(t, 0, n)}))
		require.NoError(t, h.Refresh(context.Background()))
		rows := h.QueuePanel(kanbanhttp.PanelOptions{}).Rows()
		require.Len(t, rows, 1)
		assert.Equal(t, []string{"q", "", "", strconv.Itoa(n)}, rows[0].Cells, "%d dead letters", n)
	}
}

// stalledStore is a queue whose first listing reads its dead letters and
// then waits for release before it answers, as a slow server's does.
type stalledStore struct {
	*kanban.Memory[order]
	read    chan struct{} // closed once the first listing has read
	release chan struct{}
	calls   atomic.Int64
}

func (s *stalledStore) ListDeadLetters(ctx context.Context, q kanban.DeadLetterQuery) (kanban.DeadLetterPage, error) {
	page, err := s.Memory.ListDeadLetters(ctx, q)
	if s.calls.Add(1) == 1 {
		close(s.read)
		<-s.release
	}
	return page, err
}

// A Refresh that read a queue before another Refresh did, and finishes
// after it, does not put back on the panels what the later one found gone.
func TestRefreshKeepsTheNewestRead(t *testing.T) {
	q := deadQueue(t, 0, 2)
	s := &stalledStore{Memory: q, read: make(chan struct{}), release: make(chan struct{})}
	h, err := kanbanhttp.New(kanbanhttp.Options{})
	require.NoError(t, err)
	require.NoError(t, h.AddQueue("orders", s))
	earlier := make(chan error)
	go func() { earlier <- h.Refresh(context.Background()) }()
	<-s.read
	n, err := q.DeleteDeadLetters(context.Background(), kanban.DeadLetterFilter{All: true})
	require.NoError(t, err)
	require.Equal(t, 2, n)
	require.NoError(t, h.Refresh(context.Background()))
	close(s.release)
	require.NoError(t, <-earlier)

	rows := h.QueuePanel(kanbanhttp.PanelOptions{}).Rows()
	require.Len(t, rows, 1)
	assert.Equal(t, []string{"orders", "0", "0s", "0"}, rows[0].Cells, "the later Refresh's read")
	dp, err := h.DeadLetterPanel("orders", "")
	require.NoError(t, err)
	assert.Empty(t, dp.Rows(), "the later Refresh's read")
}

// panickyStore is a queue whose reads panic, as a program's own store
// may.
type panickyStore struct{ *kanban.Memory[order] }

func (panickyStore) Backlog(context.Context) (kanban.Backlog, error) { panic("backlog bug") }

// A queue whose reads panic is shown unreadable, its panic logged and
// returned, and the queues after it are read all the same: Watch runs
// in a goroutine of the program's, which the panic would end. So is an
// OnRefresh that panics.
func TestRefreshSurvivesAQueueThatPanics(t *testing.T) {
	var logged bytes.Buffer
	h, err := kanbanhttp.New(kanbanhttp.Options{
		Logger:    slog.New(slog.NewTextHandler(&logged, nil)),
		OnRefresh: func() { panic("notify bug") },
	})
	require.NoError(t, err)
	require.NoError(t, h.AddQueue("bad", panickyStore{deadQueue(t, 0, 1)}))
	require.NoError(t, h.AddQueue("good", deadQueue(t, 0, 2)))
	require.NotPanics(t, func() {
		err = h.Refresh(context.Background())
	})
	require.ErrorContains(t, err, "queue bad: ")
	assert.ErrorContains(t, err, "backlog bug")
	assert.NotContains(t, err.Error(), "queue good")
	rows := h.QueuePanel(kanbanhttp.PanelOptions{}).Rows()
	require.Len(t, rows, 2)
	assert.Equal(t, []string{"bad", "?", "?", "unreadable; the service's log has the detail"}, rows[0].Cells)
	assert.Equal(t, []string{"good", "0", "0s", "2"}, rows[1].Cells)
	assert.Contains(t, logged.String(), "backlog bug")
	assert.Contains(t, logged.String(), "notify bug")
}
