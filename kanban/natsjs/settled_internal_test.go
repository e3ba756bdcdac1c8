package natsjs

import (
	"errors"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
)

// TestSentSettlementsToConfirm: the message acknowledged again as
// Consume returns is asked for only while a settlement sent without
// waiting has no acknowledgement answered after it; a settlement whose
// sending failed was not sent, and a durable made again forgets what
// was sent to the old one. Without a message acknowledged, the answer
// to the last retry is waited for, when it asked for one.
func TestSentSettlementsToConfirm(t *testing.T) {
	a, b := &heldMsg{id: "a"}, &heldMsg{id: "b"}
	var s sentSettlements
	ack := func() jetstream.Msg { m, _ := s.toConfirm(); return m }
	answer := func() uint64 { _, n := s.toConfirm(); return n }
	assert.Nil(t, ack(), "none sent")
	assert.Zero(t, answer(), "none sent")

	assert.NoError(t, s.add(a, nil, false))
	assert.Nil(t, ack(), "a retry sent, but no message acknowledged")
	assert.Zero(t, answer(), "a retry that asked for no answer")
	assert.NoError(t, s.add(a, nil, true))
	assert.Same(t, a, ack())
	assert.Zero(t, answer(), "a message to acknowledge again")

	before := s.count()
	assert.NoError(t, s.add(b, nil, true)) // sent while b's confirmation was on its way
	s.confirmed(b, before)
	assert.Same(t, b, ack(), "one sent after the confirmation's count is not confirmed by it")
	s.confirmed(b, s.count())
	assert.Nil(t, ack(), "all confirmed")

	failed := errors.New("connection closed")
	assert.ErrorIs(t, s.add(a, failed, true), failed)
	assert.Nil(t, ack(), "a settlement not sent is nothing to confirm")

	assert.NoError(t, s.add(a, nil, true))
	s.forget()
	assert.Nil(t, ack(), "the durable made again")
	assert.NoError(t, s.add(a, nil, false))
	assert.Nil(t, ack(), "no message acknowledged to the new durable")
	assert.Zero(t, answer())
}

// TestSentSettlementsAnswers: an answer to a retry confirms the
// settlements up to the retry's number, and the server's "no responders"
// confirms none; a retry that asked for no answer after the last that
// did leaves nothing to wait for.
func TestSentSettlementsAnswers(t *testing.T) {
	s := sentSettlements{prefix: "_INBOX.x.", answered: make(chan struct{}, 1)}
	answer := func() uint64 { _, n := s.toConfirm(); return n }
	assert.NoError(t, s.add(&heldMsg{id: "a"}, nil, false))
	s.n, s.asked = 2, 2 // a retry sent with a reply subject, numbered 2
	assert.EqualValues(t, 2, answer(), "the last retry's answer")

	s.take(&nats.Msg{Subject: "_INBOX.x.2", Header: nats.Header{statusHeader: []string{"503"}}})
	assert.EqualValues(t, 2, answer(), "no responders confirms nothing")
	s.take(&nats.Msg{Subject: "_INBOX.x.1"})
	assert.EqualValues(t, 2, answer(), "an earlier answer confirms the settlements up to its own only")
	s.take(&nats.Msg{Subject: "_INBOX.x.2"})
	assert.Zero(t, answer(), "all confirmed")
	select {
	case <-s.answered:
	default:
		t.Fatal("the answer was not signalled")
	}

	assert.NoError(t, s.add(&heldMsg{id: "b"}, nil, false))
	assert.Zero(t, answer(), "the last retry asked for no answer")
}
