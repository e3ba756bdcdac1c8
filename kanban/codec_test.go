package kanban_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taipattern/taikit/kanban"
)

func TestJSONCodec(t *testing.T) {
	type order struct {
		ID    string `json:"id"`
		Cents int    `json:"cents"`
	}
	data, err := kanban.JSON{}.Marshal(order{"o-1", 250})
	require.NoError(t, err)
	assert.JSONEq(t, `{"id":"o-1","cents":250}`, string(data))
	var got order
	require.NoError(t, kanban.JSON{}.Unmarshal(data, &got))
	assert.Equal(t, order{"o-1", 250}, got)
	assert.Error(t, kanban.JSON{}.Unmarshal([]byte("{"), &got))
	_, err = kanban.JSON{}.Marshal(func() {})
	assert.Error(t, err)
}
