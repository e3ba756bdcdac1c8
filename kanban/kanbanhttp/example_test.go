package kanbanhttp_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"strings"

	"github.com/taipattern/taikit/andon"
	"github.com/taipattern/taikit/kanban"
	"github.com/taipattern/taikit/kanban/kanbanhttp"
)

// An operator lists a queue's dead letters and redrives one; the board
// shows the queue.
func Example() {
	q, _ := kanban.NewMemory[string](kanban.MemoryOptions{Name: "orders"})
	ctx, cancel := context.WithCancel(context.Background())
	_ = q.Publish(ctx, kanban.Message[string]{ID: "order-1", Key: "customer-7", Payload: "charge"})
	_ = q.Consume(ctx, func(context.Context, kanban.Delivery[string]) error {
		cancel()
		return kanban.Permanent(errors.New("gateway refused"))
	}, kanban.ConsumeOptions{})

	h, _ := kanbanhttp.New(kanbanhttp.Options{
		Prefix: "/ops",
		Token:  "s3cret-token-0123456789",
		Logger: slog.New(slog.DiscardHandler),
	})
	_ = h.AddQueue("orders", q)
	call := func(method, target, body string) map[string]any {
		r := httptest.NewRequest(method, target, strings.NewReader(body))
		r.Header.Set("Authorization", "Bearer s3cret-token-0123456789")
		r.Header.Set("Content-Type", "application/json")
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		var out map[string]any
		_ = json.Unmarshal(w.Body.Bytes(), &out)
		fmt.Print(w.Code, " ")
		return out
	}
	page := call("GET", "/ops/queues/orders/deadletters?key=customer-7", "")
	for _, d := range page["dead_letters"].([]any) {
		d := d.(map[string]any)
		fmt.Println(d["seq"], d["id"], d["reason"], d["payload"])
	}
	fmt.Println(call("POST", "/ops/queues/orders/deadletters/redrive", `{"reason": "gateway"}`))
	fmt.Println(call("POST", "/ops/queues/orders/deadletters/redrive", `{}`)["error"].(map[string]any)["code"])

	// The board's tile, as the last Refresh read the queue (Watch
	// refreshes it in the background).
	_ = h.Refresh(context.Background())
	var board andon.BoardOptions
	board.Panels = append(board.Panels, h.QueuePanel(kanbanhttp.PanelOptions{}))
	for _, row := range board.Panels[0].Rows() {
		queue, depth, deadLetters := row.Cells[0], row.Cells[1], row.Cells[3] // Cells[2]: the oldest's age
		fmt.Println(queue, depth, deadLetters, row.Color, row.Link)
	}
	// Output:
	// 200 1 order-1 gateway refused charge
	// 200 map[redriven:1]
	// 400 empty_filter
	// orders 1 0 green /ops/queues/orders/deadletters?order=newest
}
