package natsjs

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/assert"
)

// TestSentSettlementsToConfirm: the message acknowledged again as
// Consume returns is asked for only while a settlement sent without
// waiting has no acknowledgement answered after it; a settlement whose
// sending failed was not sent, and a durable made again forgets what
// was sent to the old one.
func TestSentSettlementsToConfirm(t *testing.T) {
	a, b := &heldMsg{id: "a"}, &heldMsg{id: "b"}
	var s sentSettlements
	assert.Nil(t, s.toConfirm(), "none sent")

	assert.NoError(t, s.add(a, nil, false))
	assert.Nil(t, s.toConfirm(), "a retry sent, but no message acknowledged")
	assert.NoError(t, s.add(a, nil, true))
	assert.Same(t, a, s.toConfirm())

	before := s.count()
	assert.NoError(t, s.add(b, nil, true)) // sent while b's confirmation was on its way
	s.confirmed(b, before)
	assert.Same(t, b, s.toConfirm(), "one sent after the confirmation's count is not confirmed by it")
	s.confirmed(b, s.count())
	assert.Nil(t, s.toConfirm(), "all confirmed")

	failed := errors.New("connection closed")
	assert.ErrorIs(t, s.add(a, failed, true), failed)
	assert.Nil(t, s.toConfirm(), "a settlement not sent is nothing to confirm")

	assert.NoError(t, s.add(a, nil, true))
	s.forget()
	assert.Nil(t, s.toConfirm(), "the durable made again")
	assert.NoError(t, s.add(a, nil, false))
	assert.Nil(t, s.toConfirm(), "no message acknowledged to the new durable")
}
