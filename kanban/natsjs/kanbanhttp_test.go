package natsjs_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/kanban"
	"github.com/taipattern/taikit/kanban/kanbanhttp"
	"github.com/taipattern/taikit/kanban/natsembed"
	"github.com/taipattern/taikit/kanban/natsjs"
)

// TestOperationsOverHTTP runs the HTTP API and the board's panels on a
// JetStream queue: list, redrive and delete its dead letters.
func TestOperationsOverHTTP(t *testing.T) {
	srv := startServer(t, natsembed.Options{InProcess: true})
	nc := connect(t, srv.Connect)
	q, err := natsjs.New[int](context.Background(), nc, natsjs.Options{Stream: "HTTP_OPS", FetchWait: 100 * time.Millisecond})
	require.NoError(t, err)
	ctx := context.Background()
	for i, id := range []string{"a", "b", "c"} {
		require.NoError(t, q.Publish(ctx, kanban.Message[int]{ID: id, Key: "k-" + id, Payload: i}))
	}
	refuseAll(t, q, 3)

	const token = "natsjs-http-token-0123456789"
	h, err := kanbanhttp.New(kanbanhttp.Options{Token: token})
	require.NoError(t, err)
	require.NoError(t, h.AddQueue("ops", q))
	call := func(method, target, body string) (int, map[string]any) {
		r := httptest.NewRequest(method, target, strings.NewReader(body))
		r.Header.Set("Authorization", "Bearer "+token)
		r.Header.Set("Content-Type", "application/json")
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		var out map[string]any
		require.NoError(t, json.Unmarshal(w.Body.Bytes(), &out), "%s", w.Body)
		return w.Code, out
	}

	code, page := call("GET", "/queues/ops/deadletters?order=newest&limit=2", "")
	require.Equal(t, http.StatusOK, code, "%v", page)
	dls := page["dead_letters"].([]any)
	require.Len(t, dls, 2)
	assert.Equal(t, "c", dls[0].(map[string]any)["id"])
	assert.Equal(t, 2.0, dls[0].(map[string]any)["payload"])
	assert.EqualValues(t, 3, page["total"])
	assert.NotEmpty(t, page["next"])

	code, body := call("POST", "/queues/ops/deadletters/redrive", `{"key":"k-b"}`)
	require.Equal(t, http.StatusOK, code, "%v", body)
	assert.EqualValues(t, 1, body["redriven"])
	code, body = call("DELETE", "/queues/ops/deadletters?id=a", "")
	require.Equal(t, http.StatusOK, code, "%v", body)
	assert.EqualValues(t, 1, body["deleted"])
	code, body = call("DELETE", "/queues/ops/deadletters/1", "")
	assert.Equal(t, http.StatusNotFound, code, "a deleted already: %v", body)

	code, body = call("GET", "/queues", "")
	require.Equal(t, http.StatusOK, code)
	backlog := body["queues"].([]any)[0].(map[string]any)["backlog"].(map[string]any)
	assert.EqualValues(t, 1, backlog["depth"], "b waits")
	assert.EqualValues(t, 1, backlog["dead_letters"], "c is left")

	require.NoError(t, h.Refresh(ctx))
	rows := h.QueuePanel(kanbanhttp.PanelOptions{}).Rows()
	require.Len(t, rows, 1)
	assert.Equal(t, []string{"ops", "1"}, rows[0].Cells[:2])
	assert.Equal(t, "1", rows[0].Cells[3])
	assert.Equal(t, "red", rows[0].Color)
	dp, err := h.DeadLetterPanel("ops", "")
	require.NoError(t, err)
	require.Len(t, dp.Rows(), 1)
	assert.Equal(t, "c", dp.Rows()[0].Cells[2])
}
