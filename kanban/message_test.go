package kanban_test

import (
	"context"
	"regexp"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/kanban"
)

func TestHeaderKeepsNamesAsWritten(t *testing.T) {
	h := kanban.Header{}
	h.Set("traceparent", "v1")
	h.Set("X-MiXeD", "v2")
	assert.Equal(t, "v1", h.Get("traceparent"))
	assert.Equal(t, "", h.Get("Traceparent"))
	assert.ElementsMatch(t, []string{"traceparent", "X-MiXeD"}, h.Keys())
	c := h.Clone()
	assert.Equal(t, h, c)
	c.Set("traceparent", "v3")
	assert.Equal(t, "v1", h.Get("traceparent"), "a clone is a copy")
	var nilH kanban.Header
	nilH.Set("a", "b") // no panic
	assert.Nil(t, nilH.Clone())
	assert.Empty(t, nilH.Keys())
}

func TestNewMessage(t *testing.T) {
	hex32 := regexp.MustCompile(`^[0-9a-f]{32}$`)
	m := kanban.NewMessage("customer-7", 42)
	assert.Regexp(t, hex32, m.ID)
	assert.Equal(t, "customer-7", m.Key)
	assert.Equal(t, 42, m.Payload)
	assert.Nil(t, m.Headers)
	seen := map[string]bool{}
	for range 1000 {
		id := kanban.NewMessage("", 0).ID
		require.False(t, seen[id], "IDs are unique")
		seen[id] = true
	}

	q, err := kanban.NewMemory[int](kanban.MemoryOptions{})
	require.NoError(t, err)
	ctx := context.Background()
	require.NoError(t, q.Publish(ctx, m))
	require.NoError(t, q.Publish(ctx, m))
	require.NoError(t, q.Publish(ctx, kanban.NewMessage("customer-7", 42)))
	assert.Equal(t, kanban.QueueStats{Published: 2, Duplicates: 1}, q.Stats(), "one message published twice is stored once; a new one is new")
}
