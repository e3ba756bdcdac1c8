package natsjs

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// A release — a message handed back unstarted as the consumer stops — is
// a negative acknowledgement with a delay, then a plain one sent as a
// request (see nakNow), whose answer comes once the consumer has taken
// both: with replicas, once its leader has, before its followers have
// (see confirm, and the package doc). A drain hands back up to the
// WIP at once, one Release after the other: each waiting for its answer
// before the next was sent, they took a round trip each, 12.8 s for 256
// messages over a link of 50 ms. So a release is sent, and its answer
// waited for later: when maxReleasing are unanswered, and for all as
// Consume returns (awaitReleases). They go out in the order they are
// handed back on the one connection, which the server reads in order: it
// takes them in that order, as when each waited (see ReleaseOrder).

// maxReleasing bounds the releases sent and not yet answered: enough to
// hide a slow link's round trip (256 a round trip of 50 ms are over
// 5,000 a second), few enough that a drain handing back a WIP of
// thousands does not put them all, with a timer each, into the
// connection's buffer at once.
const maxReleasing = 256

// releases are a consumer's releases sent and not yet answered.
type releases struct {
	mu sync.Mutex
	// inbox is the subscription the answers come to, on prefix and a
	// token of their own (see send); nil until the first release.
	inbox  *replySub
	prefix string
	sent   uint64 // releases sent to inbox: the token of the next
	// pending are those sent and not yet waited for, in the order sent;
	// byToken finds them by their answers' token.
	pending []*pendingRelease
	byToken map[string]*pendingRelease
	closed  bool // inbox was told that the connection closed
}

// pendingRelease is a release sent and not yet waited for.
type pendingRelease struct {
	id    string // the message's ID
	token string
	// report says whether a failure is logged: a Release the consumer
	// runtime made, which it would have logged had it waited.
	report bool
	ctx    context.Context // ends PublishTimeout after the release was sent
	cancel context.CancelFunc
	answer *nats.Msg
	err    error // the failure, once waited for
}

// release hands m back to be delivered again at once (see nakNow), and
// returns without waiting for the server's answer: the answer is waited
// for, up to PublishTimeout from the send, once maxReleasing are
// unanswered, and as Consume returns (see awaitReleases), in the order
// the releases were sent. The first that fails is logged, when report,
// as kanban.Serve logs a settlement that fails, and the settlements after
// it are not waited for (see confirm), as when each release waited. A
// release that cannot be sent returns its error.
func (s *source[T]) release(ctx context.Context, m jetstream.Msg, report bool) error {
	return s.releaseAfter(ctx, m, report, 0)
}

// releaseAfter is release, but for a positive delay the message is
// delivered again only once delay has passed (see heldBack).
func (s *source[T]) releaseAfter(ctx context.Context, m jetstream.Msg, report bool, delay time.Duration) error {
	s.releases.mu.Lock()
	failed, err := s.sendRelease(ctx, m, report, delay)
	s.releases.mu.Unlock()
	s.logRelease(failed)
	return err
}

// sendRelease is releaseAfter under releases.mu. It returns the release
// sent before that failed, if any.
func (s *source[T]) sendRelease(ctx context.Context, m jetstream.Msg, report bool, delay time.Duration) (failed *pendingRelease, err error) {
	r := &s.releases
	nc := s.q.js.Conn()
	if len(r.pending) >= maxReleasing {
		failed = s.answerFirst()
	}
	if s.unconfirmed.Load() {
		if delay > 0 {
			return failed, nc.Publish(m.Reply(), nakBody(delay))
		}
		if err := nc.Publish(m.Reply(), nakNowBody); err != nil {
			return failed, err
		}
		return failed, nc.Publish(m.Reply(), nakBodyPlain)
	}
	p := &pendingRelease{id: messageID(m.Headers()), report: report}
	p.ctx, p.cancel = context.WithTimeout(ctx, s.q.opts.PublishTimeout)
	if err := r.send(nc, m.Reply(), p, delay); err != nil {
		p.cancel()
		// Those sent before it are waited for first: had one of them
		// failed, this one would have been sent without waiting, and its
		// error returned as it is.
		failed = s.answerAll()
		if s.unconfirmed.Load() {
			return failed, err
		}
		s.unconfirmed.Store(true)
		return failed, fmt.Errorf("natsjs: releasing %s: %w", p.id, err)
	}
	return failed, nil
}

// send sends the release p of the message whose reply subject is subj,
// its answer to come to inbox, and adds p to pending; with a positive
// delay, a negative acknowledgement with that delay alone. The
// subscription is made with the first release.
func (r *releases) send(nc *nats.Conn, subj string, p *pendingRelease, delay time.Duration) error {
	if r.inbox == nil {
		inbox := nc.NewInbox()
		// Room for every answer that may come and not be read: those of
		// the releases pending, at most maxReleasing, and no more once one
		// has failed, as no release is sent so after it.
		sub, err := subscribeReplies(nc, inbox+".*", maxReleasing)
		if err != nil {
			return err
		}
		r.inbox, r.prefix = sub, inbox+"."
		r.byToken = make(map[string]*pendingRelease)
	}
	p.token = strconv.FormatUint(r.sent, 10)
	r.sent++
	if delay > 0 {
		if err := nc.PublishRequest(subj, r.prefix+p.token, nakBody(delay)); err != nil {
			return err
		}
		r.pending = append(r.pending, p)
		r.byToken[p.token] = p
		return nil
	}
	// The negative acknowledgement with a delay is stored, and the plain
	// one after it has the message delivered again at once, ahead of
	// those not delivered yet (see nakNow). The server takes a
	// connection's acknowledgements in the order sent, and answers the
	// plain one once it has taken both.
	if err := nc.Publish(subj, nakNowBody); err != nil {
		return err
	}
	if err := nc.PublishRequest(subj, r.prefix+p.token, nakBodyPlain); err != nil {
		return err
	}
	r.pending = append(r.pending, p)
	r.byToken[p.token] = p
	return nil
}

// answerFirst waits for the answer to the first release pending and
// returns it when it failed: the releases sent after it are then not
// waited for, and the source's settlements from then on are sent without
// waiting (see confirm).
func (s *source[T]) answerFirst() *pendingRelease {
	r := &s.releases
	p := r.pending[0]
	err := r.wait(p)
	r.pending[0] = nil
	r.pending = r.pending[1:]
	delete(r.byToken, p.token)
	p.cancel()
	if err == nil {
		return nil
	}
	s.unconfirmed.Store(true)
	for _, q := range r.pending {
		q.cancel()
		delete(r.byToken, q.token)
	}
	r.pending = nil
	p.err = fmt.Errorf("natsjs: releasing %s: %w", p.id, err)
	return p
}

// answerAll waits for the answers to the releases pending, in the order
// they were sent, and returns the one that failed, if any.
func (s *source[T]) answerAll() *pendingRelease {
	for len(s.releases.pending) > 0 {
		if failed := s.answerFirst(); failed != nil {
			return failed
		}
	}
	return nil
}

// wait waits for p's answer, as a request does: nats.ErrNoResponders for
// the server's "no responders", nats.ErrConnectionClosed once the
// connection is closed, p.ctx's error when it ends before the answer
// has come (an answer that has come is p's, however late it is read). The
// answers to the releases sent after p that come meanwhile are kept for
// them.
func (r *releases) wait(p *pendingRelease) error {
	for p.answer == nil {
		if r.closed {
			select {
			case m := <-r.inbox.replies:
				r.take(m)
				continue
			default:
				return nats.ErrConnectionClosed
			}
		}
		select {
		case m := <-r.inbox.replies:
			r.take(m)
		case <-r.inbox.closed:
			r.closed = true
		case <-p.ctx.Done():
			// Answers already come are read first: a release waited for
			// after its PublishTimeout (a drain whose handlers ran on)
			// may have been answered long before.
			select {
			case m := <-r.inbox.replies:
				r.take(m)
			default:
				return p.ctx.Err()
			}
		}
	}
	if len(p.answer.Data) == 0 && p.answer.Header.Get(statusHeader) == "503" {
		return nats.ErrNoResponders
	}
	return nil
}

// take gives m, an answer, to its release, when that is pending.
func (r *releases) take(m *nats.Msg) {
	if p := r.byToken[m.Subject[len(r.prefix):]]; p != nil {
		p.answer = m
	}
}

// awaitReleases waits for the answers to the releases pending, in the
// order they were sent, logs the first that failed (see release), and
// ends the subscription the answers come to. Consume calls it once
// nothing releases any more.
func (s *source[T]) awaitReleases() {
	r := &s.releases
	r.mu.Lock()
	failed := s.answerAll()
	if r.inbox != nil {
		r.inbox.unsubscribe()
		r.inbox, r.byToken, r.closed = nil, nil, false
	}
	r.mu.Unlock()
	s.logRelease(failed)
}

// logRelease logs p, a release that failed, when it is one to report, as
// kanban.Serve logs a settlement that fails: its Release returned before
// the failure was known.
func (s *source[T]) logRelease(p *pendingRelease) {
	if p != nil && p.report {
		s.log.Warn("kanban: settling a message failed", "id", p.id, "err", p.err)
	}
}
