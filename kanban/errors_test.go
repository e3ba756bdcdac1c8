package kanban_test

import (
	"errors"
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/taipattern/taikit/kanban"
)

func TestPermanent(t *testing.T) {
	base := errors.New("bad card")
	err := kanban.Permanent(base)
	assert.True(t, kanban.IsPermanent(err))
	assert.True(t, kanban.IsPermanent(errors.Join(errors.New("x"), err)))
	assert.True(t, kanban.IsPermanent(fmt.Errorf("wrapped: %w", err)))
	assert.ErrorIs(t, err, base)
	assert.Equal(t, "bad card", err.Error())
	assert.NoError(t, kanban.Permanent(nil))
	assert.False(t, kanban.IsPermanent(base))
	assert.False(t, kanban.IsPermanent(nil))
	assert.Equal(t, "kanban: permanent failure", (&kanban.PermanentError{}).Error())
}

func TestPanicError(t *testing.T) {
	base := errors.New("bad state")
	tests := []struct {
		value  any
		text   string
		unwrap error
	}{
		{"boom", "kanban: panic in handler: boom", nil},
		{42, "kanban: panic in handler: 42", nil},
		{base, "kanban: panic in handler: bad state", base},
		{nil, "kanban: runtime.Goexit in handler", nil},
	}
	for _, tc := range tests {
		p := &kanban.PanicError{Value: tc.value, Stack: []byte("stack")}
		assert.Equal(t, tc.text, p.Error())
		assert.Equal(t, tc.unwrap, p.Unwrap())
	}
	assert.ErrorIs(t, &kanban.PanicError{Value: base}, base)
	assert.True(t, kanban.IsPermanent(&kanban.PanicError{Value: kanban.Permanent(base)}), "a panic with a Permanent error is permanent")
}
