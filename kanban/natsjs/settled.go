package natsjs

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// While the consumer runs, its acknowledgements, a Retry's negative
// acknowledgements and the terminations of the messages dead-lettered
// are sent without waiting for the server's answer: a round trip each
// would slow every handler. The server reads a connection's
// acknowledgements of one durable in the order they were sent, and
// answers one sent with a reply subject once it has taken it (an
// acknowledgement or termination, with Replicas above 1, once the
// consumer's followers have it too): such an answer confirms every
// settlement sent before it. Without one after them, the settlements
// sent last before the consumer stopped could still be on their way, or
// waiting in the server's queue, as Consume returned; a server stopped
// right after (a service shutting down with its embedded server) lost
// them, and delivered again messages already handled, or a retried
// message only once its lease ran out. So Consume, as it returns (see
// confirmSent), acknowledges again, with a reply subject, a message the
// consumer acknowledged already: the server changes nothing for it, and
// answers once it has taken every settlement sent before. A consumer
// that has acknowledged no message has none to acknowledge again, and
// nothing else the server would take in that order changes nothing (a
// negative acknowledgement sent again would restart a back-off, or
// reach the message's next delivery, in another process; an extension
// would replace the back-off with a whole lease; a flush or a request to
// the JetStream API is answered without waiting for the consumer to
// take what is queued for it): so its
// retries carry a reply subject themselves, on an inbox of the source's
// (see retry), and Consume waits for the answer to the last one. Their
// answers are not waited for while it runs.

// sentSettlements are a source's settlements sent without waiting for
// the server's answer. The zero value is none sent.
type sentSettlements struct {
	mu sync.Mutex
	n  uint64 // settlements sent without waiting
	// confirmedN are the first of them, sent before a settlement or an
	// acknowledgement again that the server answered.
	confirmedN uint64
	// acked is a message the source acknowledged or terminated, whose
	// acknowledgement again changes nothing; nil when none.
	acked jetstream.Msg
	// asked is the number of the last settlement sent with a reply
	// subject on answers (see retry); 0 when none.
	asked uint64
	// answers is the subscription the answers to the retries sent with a
	// reply subject come to, on prefix and the retry's number; nil until
	// the first.
	answers *nats.Subscription
	prefix  string
	// answered is signalled when an answer has come, and when the
	// connection closes.
	answered chan struct{}
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

// toConfirm returns what confirms the settlements sent without waiting
// and not confirmed yet: a message to acknowledge again, or else the
// number of the last settlement, sent with a reply subject, whose answer
// to wait for (see confirmSent). Both are nil and 0 when none is
// unconfirmed, and when no message was acknowledged and the last
// settlement has no reply subject (the inbox could not be subscribed to).
func (s *sentSettlements) toConfirm() (jetstream.Msg, uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.n <= s.confirmedN:
		return nil, 0
	case s.acked != nil:
		return s.acked, 0
	case s.asked == s.n:
		return nil, s.asked
	}
	return nil, 0
}

// retry sends the negative acknowledgement of m with delay without
// waiting for the server's answer, and records it (see add). While no
// message is acknowledged, the retry asks for an answer, to come to the
// source's inbox: it is sent under sent.mu, so that its number counts
// only settlements sent before it, and itself, and its answer confirms
// them (see take). A retry whose inbox cannot be subscribed to is sent
// without a reply subject.
func (s *source[T]) retry(m jetstream.Msg, delay time.Duration) error {
	t := &s.sent
	t.mu.Lock()
	if t.acked != nil || !s.subscribeAnswers() {
		t.mu.Unlock()
		return t.add(m, m.NakWithDelay(delay), false)
	}
	defer t.mu.Unlock()
	if err := s.q.js.Conn().PublishRequest(m.Reply(), t.prefix+strconv.FormatUint(t.n+1, 10), nakBody(delay)); err != nil {
		return err
	}
	t.n++
	t.asked = t.n
	return nil
}

// subscribeAnswers makes sent.answers, the subscription the answers to
// retries come to, unless made already, and reports whether there is
// one. sent.mu is held.
func (s *source[T]) subscribeAnswers() bool {
	t := &s.sent
	if t.answers != nil {
		return true
	}
	nc := s.q.js.Conn()
	prefix := nc.NewInbox() + "."
	answered := make(chan struct{}, 1)
	sub, err := nc.Subscribe(prefix+"*", func(a *nats.Msg) { t.take(a) })
	if err != nil {
		return false
	}
	sub.SetClosedHandler(func(string) { signal(answered) })
	t.answers, t.prefix, t.answered = sub, prefix, answered
	return true
}

// take records a, an answer to a retry: the settlements up to the
// retry's number are confirmed. The server's "no responders", for a
// durable gone, confirms nothing.
func (s *sentSettlements) take(a *nats.Msg) {
	if len(a.Data) == 0 && a.Header.Get(statusHeader) == "503" {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	n, err := strconv.ParseUint(strings.TrimPrefix(a.Subject, s.prefix), 10, 64)
	if err != nil {
		return
	}
	s.confirmedN = max(s.confirmedN, n)
	signal(s.answered)
}

// signal wakes the one waiting on c, if any, without blocking.
func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// awaitAnswer waits, until ctx ends or the connection closes, for the
// answer to the retry numbered n (see retry).
func (s *source[T]) awaitAnswer(ctx context.Context, n uint64) error {
	t := &s.sent
	nc := s.q.js.Conn()
	for {
		t.mu.Lock()
		done, answered := t.confirmedN >= n, t.answered
		t.mu.Unlock()
		if done {
			return nil
		}
		if nc.IsClosed() {
			return nats.ErrConnectionClosed
		}
		select {
		case <-answered:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// confirmSent confirms the settlements sent without waiting for the
// server's answer and not confirmed since: it acknowledges again a
// message the consumer acknowledged, and waits for the answer up to
// PublishTimeout, or, when the consumer acknowledged no message, waits
// as long for the answer to its last retry. It acknowledges nothing
// again to a durable made since the one the message came from, nor when
// there is none (see sameDurable): what was sent went to one gone. A
// failure is logged to kanban.ConsumeOptions.Logger. Nothing is sent or
// waited for when the source's settlements are sent without waiting
// already (one went unanswered, see confirm), when the server refuses
// them (see ackRefused), and on a closed connection. It ends the
// subscription the answers to retries come to. Consume calls it as it
// returns, once nothing settles any more.
func (s *source[T]) confirmSent() {
	defer func() {
		s.sent.mu.Lock()
		if s.sent.answers != nil {
			_ = s.sent.answers.Unsubscribe()
			s.sent.answers = nil
		}
		s.sent.mu.Unlock()
	}()
	m, n := s.sent.toConfirm()
	if (m == nil && n == 0) || s.unconfirmed.Load() {
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
	var err error
	if m != nil {
		var same bool
		if same, err = s.sameDurable(ctx); err == nil && !same {
			return // what was sent went to a durable gone since
		}
		if err == nil {
			_, err = nc.RequestWithContext(ctx, m.Reply(), ackBody)
		}
	} else {
		err = s.awaitAnswer(ctx, n)
	}
	if err != nil {
		s.log.Warn("natsjs: confirming the settlements sent failed; their messages may be delivered again", "err", err)
	}
}

// sameDurable reports whether the durable the server has by the
// consumer's name is the one the consumer settled with (made at
// s.created), before confirmSent acknowledges one of its messages again.
// An acknowledgement names a message by its stream sequence number: sent
// to a durable deleted and made again with its stream (an operator's
// doing, New and another process's Consume making them again), it
// settled the message the new stream numbered so — one published since,
// handled by another process, which was gone, however its handler
// ended. A connection not permitted to read the durable's info is not
// told: the durable is taken for the same.
func (s *source[T]) sameDurable(ctx context.Context) (bool, error) {
	if s.created.IsZero() {
		return true, nil
	}
	q := s.q
	reply, err := apiRequest(ctx, q.js.Conn(), apiPrefix+"CONSUMER.INFO."+q.opts.Stream+"."+q.opts.Durable, nil)
	switch {
	case isDenied(err):
		return true, nil
	case err != nil:
		return false, err
	}
	var r struct {
		Error   *jetstream.APIError `json:"error"`
		Created time.Time           `json:"created"`
	}
	if err := json.Unmarshal(reply.Data, &r); err != nil {
		return false, fmt.Errorf("%w: %w", jetstream.ErrInvalidJetStreamResponse, err)
	}
	switch {
	case r.Error != nil && (r.Error.ErrorCode == jetstream.JSErrCodeConsumerNotFound || r.Error.ErrorCode == jetstream.JSErrCodeStreamNotFound):
		return false, nil
	case r.Error != nil:
		return false, r.Error
	}
	return r.Created.Equal(s.created), nil
}
