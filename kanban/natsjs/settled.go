package natsjs

import (
	"context"
	"sync"

	"github.com/nats-io/nats.go/jetstream"
)

// While the consumer runs, its acknowledgements, a Retry's negative
// acknowledgements and the terminations of the messages dead-lettered
// are sent without waiting for the server's answer: a round trip each
// would slow every handler. The server reads a connection's
// acknowledgements of one durable in the order they were sent, and
// answers an acknowledgement sent as a request once it has taken it
// (with Replicas above 1, once the consumer's followers have it too):
// an acknowledgement answered so confirms every settlement sent before
// it. Without one after them, the
// settlements sent last before the consumer stopped could still be on
// their way, or waiting in the server's queue, as Consume returned; a
// server stopped right after (a service shutting down with its embedded
// server) lost them, and delivered again messages already handled. So
// Consume sends, as it returns, one acknowledgement more as a request
// (see confirmSent), of a message the consumer acknowledged already:
// the server changes nothing for it, and answers once it has taken every
// settlement sent before.

// sentSettlements are a source's settlements sent without waiting for
// the server's answer. The zero value is none sent.
type sentSettlements struct {
	mu sync.Mutex
	n  uint64 // settlements sent without waiting
	// confirmedN are the first of them, sent before an acknowledgement
	// the server answered.
	confirmedN uint64
	// acked is a message the source acknowledged or terminated, whose
	// acknowledgement again changes nothing; nil when none.
	acked jetstream.Msg
}

// add records the settlement of m sent without waiting, unless its
// sending failed (err), and returns err. acks says it acknowledged or
// terminated m.
func (s *sentSettlements) add(m jetstream.Msg, err error, acks bool) error {
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.n++
	if acks {
		s.acked = m
	}
	s.mu.Unlock()
	return nil
}

// count returns the settlements sent without waiting so far. An
// acknowledgement sent after count returned confirms them once answered
// (see confirmed).
func (s *sentSettlements) count() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.n
}

// confirmed records that the server answered an acknowledgement or
// termination of m sent after before settlements sent without waiting
// (see count).
func (s *sentSettlements) confirmed(m jetstream.Msg, before uint64) {
	s.mu.Lock()
	s.confirmedN = max(s.confirmedN, before)
	s.acked = m
	s.mu.Unlock()
}

// forget drops what was sent to a durable that went away: the one made
// again knows nothing of it, and a message acknowledged to the old one
// is not one to acknowledge to the new one.
func (s *sentSettlements) forget() {
	s.mu.Lock()
	s.confirmedN, s.acked = s.n, nil
	s.mu.Unlock()
}

// toConfirm returns the message to acknowledge again for the settlements
// sent without waiting and not confirmed yet to be confirmed; nil when
// none is unconfirmed, or when no message was acknowledged (see
// confirmSent).
func (s *sentSettlements) toConfirm() jetstream.Msg {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.n > s.confirmedN {
		return s.acked
	}
	return nil
}

// confirmSent confirms the settlements sent without waiting for the
// server's answer and not confirmed since: it acknowledges again a
// message the consumer acknowledged, and waits for the answer up to
// PublishTimeout. A failure is logged to kanban.ConsumeOptions.Logger.
// Nothing is sent when the source's settlements are sent without waiting
// already (one went unanswered, see confirm), when the server refuses
// them (see ackRefused), on a closed connection, and when the consumer
// acknowledged no message: a Retry's negative acknowledgement lost then
// has its message delivered again once its lease runs out, not once its
// back-off has passed. Consume calls it as it returns, once nothing
// settles any more.
func (s *source[T]) confirmSent() {
	m := s.sent.toConfirm()
	if m == nil || s.unconfirmed.Load() {
		return
	}
	s.refusedMu.Lock()
	refused := s.refused
	s.refusedMu.Unlock()
	nc := s.q.js.Conn()
	if refused != nil || nc.IsClosed() {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.q.opts.PublishTimeout)
	defer cancel()
	if _, err := nc.RequestWithContext(ctx, m.Reply(), ackBody); err != nil {
		s.log.Warn("natsjs: confirming the settlements sent failed; their messages may be delivered again", "err", err)
	}
}
