package kanbanhttp_test

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/kanban"
	"github.com/taipattern/taikit/kanban/kanbanhttp"
)

// deadLetterAt dead-letters the message id in q now.
func deadLetterAt(t *testing.T, q *kanban.Memory[order], id string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	require.NoError(t, q.Publish(ctx, kanban.Message[order]{ID: id, Key: "k"}))
	require.NoError(t, q.Consume(ctx, func(context.Context, kanban.Delivery[order]) error {
		cancel()
		return kanban.Permanent(errors.New("refused"))
	}, kanban.ConsumeOptions{}))
}

// TestOlderThanIsFixedAcrossPages: the pages of a listing filtered with
// older_than, followed through next, hold the dead letters older than
// the bound as the first page's request reckoned it, however much later
// the next pages are asked for: next carries the cut-off as a time
// (before). Before, each page reckoned older_than again from its own
// request, so a dead letter that had aged past the bound meanwhile came
// on a later page.
func TestOlderThanIsFixedAcrossPages(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		q, err := kanban.NewMemory[order](kanban.MemoryOptions{})
		require.NoError(t, err)
		deadLetterAt(t, q, "o-1")
		time.Sleep(10 * time.Minute)
		deadLetterAt(t, q, "o-2")
		time.Sleep(2 * time.Hour)
		deadLetterAt(t, q, "o-3")
		time.Sleep(30 * time.Minute)
		_, s := newServer(t, kanbanhttp.Options{}, map[string]kanban.DeadLetterStore{"orders": q})

		got := s.pages(t, "/queues/orders/deadletters?older_than=2h&limit=1", func() {
			time.Sleep(2 * time.Hour) // o-3 ages past 2h before the next page
		})
		assert.Equal(t, []string{"o-1", "o-2"}, got)
	})
}

// TestBeforeFilter: before, the bound of older_than given as an instant,
// filters listings, redrives and deletes; one that is no RFC 3339 time, or
// is the zero time (which would bound nothing), or comes with older_than,
// is refused.
func TestBeforeFilter(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		q, err := kanban.NewMemory[order](kanban.MemoryOptions{})
		require.NoError(t, err)
		deadLetterAt(t, q, "o-1")
		time.Sleep(time.Hour)
		cut := time.Now().UTC().Format(time.RFC3339Nano)
		deadLetterAt(t, q, "o-2")
		_, s := newServer(t, kanbanhttp.Options{Token: token}, map[string]kanban.DeadLetterStore{"orders": q})

		r := s.do("GET", "/queues/orders/deadletters?before="+cut, "")
		require.Equal(t, http.StatusOK, r.status, "%s", r.raw)
		assert.Equal(t, []string{"o-1"}, r.ids())
		for _, query := range []string{"before=yesterday", "before=0001-01-01T00:00:00Z", "before=" + cut + "&older_than=1h"} {
			r := s.do("GET", "/queues/orders/deadletters?"+query, "")
			assert.Equal(t, http.StatusBadRequest, r.status, "%s: %s", query, r.raw)
		}
		r = s.do("POST", "/queues/orders/deadletters/redrive", `{"before":"yesterday"}`, bearer...)
		assert.Equal(t, http.StatusBadRequest, r.status, "%s", r.raw)
		r = s.do("DELETE", "/queues/orders/deadletters?before="+cut, "", bearer...)
		require.Equal(t, http.StatusOK, r.status, "%s", r.raw)
		assert.EqualValues(t, 1, r.body["deleted"])
		r = s.do("GET", "/queues/orders/deadletters", "")
		assert.Equal(t, []string{"o-2"}, r.ids())
	})
}
