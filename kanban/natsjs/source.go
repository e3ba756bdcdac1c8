package natsjs

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/taipattern/taikit/kanban"
)

// source pulls from the durable with pull requests that never ask for
// more messages than the runtime's free WIP. It reads each request's
// messages straight from the channel nats.go delivers them on.
type source[T any] struct {
	q    *Queue[T]
	cons jetstream.Consumer
	wip  int
	// leaseTime bounds the leases: the durable's AckWait — the Queue's
	// own, unless the durable is one the connection may not update (see
	// upsertConsumer) — or the shortest entry of its BackOff (see
	// leaseTimeOf).
	leaseTime time.Duration
	// maxBatch and maxExpires are the durable's MaxRequestBatch and
	// MaxRequestExpires (0: no bound), which the server refuses pull
	// requests beyond (a durable an administrator made, see
	// upsertConsumer, or gave them since; see noteLimits): a request
	// asks for no more messages than maxBatch and waits on the server no
	// longer than maxExpires or FetchWait.
	maxBatch   int
	maxExpires time.Duration
	// before is the connection's last error as the open request was
	// sent: one after it may be the server's refusal of the request.
	before error
	// ackSeen is the connection's last error when the source last
	// looked for a refused acknowledgement (see ackRefused).
	ackSeen error
	// refusedMu guards refused: the first refusal of the durable's
	// acknowledgements or pull requests that the connection's error
	// handler told of (see watchErrors and seeError).
	refusedMu sync.Mutex
	refused   error
	gone      bool                   // the last pull found no durable: look for it before the next
	cur       jetstream.MessageBatch // the open pull request, nil when none
	msgs      <-chan jetstream.Msg   // cur's messages, closed when it ends
	// stop is closed once the consumer is stopping (Consume's ctx
	// ended): settlements from then on wait for the server (see confirm).
	// nil never is.
	stop <-chan struct{}
	// unconfirmed is set once a release, or a settlement made while the
	// consumer stops, went unanswered (see confirm): the ones after it
	// are not waited for.
	unconfirmed atomic.Bool
	// releases are the releases sent and not yet answered (see release).
	releases releases
	// sent are the settlements sent without waiting for the server's
	// answer, to be confirmed as Consume returns (see confirmSent).
	sent sentSettlements
	// created is when the durable cons names was made (its
	// ConsumerInfo.Created), zero when not known: one made again since,
	// with its stream made again too, numbers other messages as the old
	// one did, which an acknowledgement of the old one's would settle
	// (see confirmSent).
	created time.Time
	// log is the consumer's Logger (kanban.ConsumeOptions.Logger): a
	// release that fails is logged to it (see release).
	log *slog.Logger
}

// stopping reports whether the consumer is stopping (see stop).
func (s *source[T]) stopping() bool {
	select {
	case <-s.stop:
		return true
	default:
		return false
	}
}

// minHeartbeat is the shortest HeartbeatInterval: a durable an
// administrator made with an AckWait of a few nanoseconds would have the
// leases extended without pause (and an interval of 0 is no ticker's).
const minHeartbeat = time.Millisecond

func (s *source[T]) HeartbeatInterval() time.Duration { return max(s.leaseTime/3, minHeartbeat) }

// leaseTimeOf is how long the durable cfg leaves a message delivered, or
// extended last, before it delivers it again: its AckWait, or with a
// BackOff the shortest positive entry. The server gives a message
// delivered the nth time BackOff[n-1] (the last entry beyond them), from
// its delivery and again from each extension (InProgress restarts that
// time, it does not replace it with AckWait), and sets AckWait to
// BackOff[0]: an entry after the first may be shorter. The heartbeat is
// one for all the leases, so it keeps within the shortest. An entry of 0
// has the message delivered again at once, which no extension prevents.
// 0 means cfg says none.
func leaseTimeOf(cfg jetstream.ConsumerConfig) time.Duration {
	d := cfg.AckWait
	for _, b := range cfg.BackOff {
		if b > 0 && (d <= 0 || b < d) {
			d = b
		}
	}
	return d
}

// ReleaseOrder implements kanban.ReleaseOrderer: the server delivers
// messages handed back (see nakNow) again ahead of those it has not
// delivered yet, in the order it got them. A key's messages are in the
// stream in their order.
func (s *source[T]) ReleaseOrder() kanban.ReleaseOrder { return kanban.ReleaseInTurn }

func (s *source[T]) fetch(n int) error {
	if s.maxBatch > 0 {
		n = min(n, s.maxBatch)
	}
	wait := s.q.opts.FetchWait
	if s.maxExpires > 0 {
		wait = min(wait, s.maxExpires)
	}
	s.before = s.q.js.Conn().LastError()
	b, err := s.cons.Fetch(n, jetstream.FetchMaxWait(wait))
	if err != nil {
		return err
	}
	s.cur, s.msgs = b, b.Messages()
	return nil
}

// fetchError wraps a failed pull request's err. A closed connection is
// marked kanban.Permanent, so that Serve stops instead of pulling again:
// nats.go never reopens a closed connection.
func (s *source[T]) fetchError(err error) error {
	s.noteGone(err)
	err = fmt.Errorf("natsjs: fetch: %w", connError(s.q.js.Conn(), err))
	if errors.Is(err, nats.ErrConnectionClosed) {
		return kanban.Permanent(err)
	}
	return err
}

// end closes the open request and returns its error, if any. A request
// the server refused (the connection not permitted to pull) delivers
// nothing and ends without an error when it expires, as one that found
// no messages: the refusal, the connection's error, is looked for, and
// returned marked kanban.Permanent, so that Consume returns it instead
// of pulling, refused, until ctx ends.
func (s *source[T]) end() error {
	err := s.cur.Error()
	s.cur, s.msgs = nil, nil
	s.noteGone(err)
	s.noteLimits(err)
	if err == nil {
		subj := s.pullSubject()
		if last := s.q.js.Conn().LastError(); !sameError(last, s.before) && publishDenied(last, subj) {
			return kanban.Permanent(fmt.Errorf("natsjs: fetch: %w", deniedError(subj, last)))
		}
		return s.ackRefused()
	}
	return err
}

// pullSubject is the subject of the durable's pull requests.
func (s *source[T]) pullSubject() string {
	return apiPrefix + "CONSUMER.MSG.NEXT." + s.q.opts.Stream + "." + s.q.opts.Durable
}

// seeError is told of each asynchronous error of the connection while
// Consume runs (see watchErrors), and keeps the first that refuses one of
// the durable's acknowledgements or pull requests, as ackRefused returns
// it.
func (s *source[T]) seeError(err error) {
	var refused error
	if subj := ackDenied(err, s.q.opts.Stream, s.q.opts.Durable); subj != "" {
		refused = fmt.Errorf("natsjs: acknowledging: %w", deniedError(subj, err))
	} else if subj := s.pullSubject(); publishDenied(err, subj) {
		refused = fmt.Errorf("natsjs: fetch: %w", deniedError(subj, err))
	} else {
		return
	}
	s.refusedMu.Lock()
	if s.refused == nil {
		s.refused = kanban.Permanent(refused)
	}
	s.refusedMu.Unlock()
}

// ackRefused returns, marked kanban.Permanent, the server's refusal of an
// acknowledgement of one of the durable's messages — an Ack, a Nak, a
// Term, an extension of a lease — or of a pull request: a connection not
// permitted to publish to $JS.ACK.<Stream>.<Durable>... (or to the pull
// subject). A refused acknowledgement is sent without a reply and looks,
// to the sender, as if it had been taken; the server says so only with a
// permissions violation, an error on the connection. Consume then ends,
// instead of handling every message again after AckWait, without end.
// The refusal is the one the connection's error handler was told of (see
// watchErrors), or, when that handler was replaced, the connection's
// last error when it is one that came since the source last looked.
func (s *source[T]) ackRefused() error {
	s.refusedMu.Lock()
	refused := s.refused
	s.refusedMu.Unlock()
	if refused != nil {
		return refused
	}
	last := s.q.js.Conn().LastError()
	if sameError(last, s.ackSeen) {
		return nil
	}
	s.ackSeen = last
	if subj := ackDenied(last, s.q.opts.Stream, s.q.opts.Durable); subj != "" {
		return kanban.Permanent(fmt.Errorf("natsjs: acknowledging: %w", deniedError(subj, last)))
	}
	return nil
}

// ackDenied returns the subject of the acknowledgement that err, a
// connection's last error, says the server refused, when it is one of a
// message of durable on stream; "" otherwise. The subject is
// $JS.ACK.<stream>.<durable>.<numbers>, or with a domain and an account
// between $JS.ACK. and the stream; names hold no '.'.
func ackDenied(err error, stream, durable string) string {
	const pre = `Publish to "` + ackPrefix
	if !errors.Is(err, nats.ErrPermissionViolation) {
		return ""
	}
	text := err.Error()
	i := strings.Index(text, pre)
	if i < 0 {
		return ""
	}
	subj := text[i+len(pre)-len(ackPrefix):]
	if j := strings.IndexByte(subj, '"'); j >= 0 {
		subj = subj[:j]
	}
	if !strings.Contains(subj[len(ackPrefix)-1:], "."+stream+"."+durable+".") {
		return ""
	}
	return subj
}

// ackPrefix is the prefix of the subjects of acknowledgements.
const ackPrefix = "$JS.ACK."

// noteGone marks the durable as possibly gone when a pull request's err
// says so: the server deleted it under an open request, or nothing
// answers requests for it — a deleted durable, or a server not back yet.
func (s *source[T]) noteGone(err error) {
	if errors.Is(err, nats.ErrNoResponders) || errors.Is(err, jetstream.ErrConsumerDeleted) ||
		errors.Is(err, jetstream.ErrConsumerNotFound) {
		s.gone = true
	}
}

// noteLimits takes the MaxRequestBatch or MaxRequestExpires that err, a
// pull request's, says the server refused the request for exceeding: one
// the durable was given while Consume runs (an administrator's update).
// The next request keeps within it, where it pulled as before, refused
// each time, until ctx ended.
func (s *source[T]) noteLimits(err error) {
	if err == nil {
		return
	}
	text := err.Error()
	if _, v, ok := strings.Cut(text, "Exceeded MaxRequestBatch of "); ok {
		if n, err := strconv.Atoi(strings.TrimSpace(v)); err == nil && n > 0 {
			s.maxBatch = n
		}
	}
	if _, v, ok := strings.Cut(text, "Exceeded MaxRequestExpires of "); ok {
		if d, err := time.ParseDuration(strings.TrimSpace(v)); err == nil && d > 0 {
			s.maxExpires = d
		}
	}
}

// revive creates the durable again when the server does not know it. A
// durable that exists, or that another process created meanwhile, is
// kept as it is. The refusal of a connection not permitted to create it
// is returned at once, marked kanban.Permanent. A connection not
// permitted to read the durable's info ($JS.API.CONSUMER.INFO...) goes
// on to create it, which the server takes for a durable that exists with
// the same configuration: its refused info request waited out 5 s, and
// failed, before every pull, and the consumer never pulled again.
func (s *source[T]) revive(ctx context.Context) error {
	q := s.q
	infoSubj := apiPrefix + "CONSUMER.INFO." + q.opts.Stream + "." + q.opts.Durable
	_, err := apiRequest(ctx, q.js.Conn(), infoSubj, nil)
	infoDenied := isDenied(err)
	if !infoDenied {
		cons, err := q.js.Consumer(ctx, q.opts.Stream, q.opts.Durable)
		if err == nil {
			// Made again by another process, perhaps.
			s.adopt(cons.CachedInfo())
			s.gone = false
			return nil
		}
		if !errors.Is(err, jetstream.ErrConsumerNotFound) {
			return fmt.Errorf("natsjs: consumer %s: %w", q.opts.Durable, connError(q.js.Conn(), err))
		}
	}
	cfg := q.consumerConfig(s.wip)
	if err := q.probeConsumer(ctx, cfg, "create"); err != nil {
		// The durable cannot be made again by a connection not
		// permitted to create it: Consume ends, as it does when such a
		// connection finds no durable to begin with.
		err = fmt.Errorf("natsjs: creating consumer %s again: %w", q.opts.Durable, connError(q.js.Conn(), err))
		if isDenied(err) {
			return kanban.Permanent(err)
		}
		return err
	}
	cons, err := q.js.CreateConsumer(ctx, q.opts.Stream, cfg)
	switch {
	case err == nil && infoDenied:
		s.cons = cons // gone and made again, or there as it was
		s.sent.forget()
		s.created = cons.CachedInfo().Created
	case err == nil:
		s.cons = cons
		s.sent.forget()
		s.created = cons.CachedInfo().Created
		q.opts.Logger.Warn("natsjs: consumer was gone; created it again", "consumer", q.opts.Durable, "stream", q.opts.Stream)
	case !errors.Is(err, jetstream.ErrConsumerExists):
		return fmt.Errorf("natsjs: creating consumer %s again: %w", q.opts.Durable, connError(q.js.Conn(), err))
	}
	s.gone = false
	return nil
}

// adopt takes info, that of the durable found by its name, as the one
// the consumer settles with: one made since the consumer's own (by
// another process, once it was gone) knows nothing of what was sent to
// the old one (see forget).
func (s *source[T]) adopt(info *jetstream.ConsumerInfo) {
	if info == nil || info.Created.Equal(s.created) {
		return
	}
	if !s.created.IsZero() {
		s.sent.forget()
	}
	s.created = info.Created
}

// Pull is called by one goroutine (the runtime's pull loop).
func (s *source[T]) Pull(ctx context.Context, max int) ([]kanban.Lease[T], error) {
	var out []kanban.Lease[T]
	var ferr error
	take := func(m jetstream.Msg, ok bool) {
		if !ok {
			if err := s.end(); err != nil && ferr == nil {
				ferr = err
			}
			return
		}
		if s.q.isKeeper(m) {
			_ = m.Ack() // a durable made before keepers were filtered out
			return
		}
		if headersOnly(m) {
			// The durable was made to deliver headers only since Consume
			// began: handled, the message would be dead-lettered without
			// its payload, and terminated. It is handed back, and the
			// consumer stops.
			_ = s.release(context.Background(), m, false)
			if ferr == nil {
				ferr = kanban.Permanent(s.q.headersOnlyError())
			}
			return
		}
		l := s.lease(m)
		l.late = ctx.Err() != nil
		out = append(out, l)
	}
	if err := s.ackRefused(); err != nil {
		return nil, err
	}
	if s.gone && s.cur == nil {
		if err := s.revive(ctx); err != nil {
			if errors.Is(err, nats.ErrConnectionClosed) {
				err = kanban.Permanent(err)
			}
			return nil, err
		}
	}
	for {
		if s.cur == nil && ctx.Err() != nil {
			// No request once the consumer stops: what it delivered would
			// only be handed back.
			return out, cmp.Or(ferr, ctx.Err())
		}
		// One request at a time: two open requests would interleave their
		// messages and break the stream's order.
		if want := max - len(out); want > 0 && s.cur == nil {
			if err := s.fetch(want); err != nil {
				return out, s.fetchError(err)
			}
		}
		if s.cur == nil {
			return out, ferr // out is full
		}
		select {
		case m, ok := <-s.msgs:
			take(m, ok)
		case <-ctx.Done():
			// The open request delivers until it expires: collect
			// everything, for the runtime to release once the request
			// has ended (released before, a message would come straight
			// back into it).
			s.collect(take, &out)
			return out, ctx.Err()
		}
		for more := true; more && s.cur != nil; {
			select {
			case m, ok := <-s.msgs:
				take(m, ok)
			default:
				more = false
			}
		}
		if len(out) > 0 || ferr != nil {
			return out, ferr
		}
	}
}

// collect takes what the open request delivers, with take, until it
// ends. Meanwhile it extends the leases in *held, where take puts them,
// every HeartbeatInterval: the request may stay open longer than AckWait
// (FetchWait), and a message held unextended until then came again into
// the same request, each copy using up an attempt.
func (s *source[T]) collect(take func(jetstream.Msg, bool), held *[]kanban.Lease[T]) {
	tick := time.NewTicker(s.HeartbeatInterval())
	defer tick.Stop()
	for s.cur != nil {
		select {
		case m, ok := <-s.msgs:
			take(m, ok)
		case <-tick.C:
			for _, l := range *held {
				_ = l.Extend(context.Background())
			}
		}
	}
}

// wait hands back what the open request still delivers, once Serve has
// returned and nothing pulls any more: it collects the messages until the
// request ends, then releases them in their order (see release).
func (s *source[T]) wait() {
	var out []kanban.Lease[T]
	s.collect(func(m jetstream.Msg, ok bool) {
		if !ok {
			_ = s.end()
			return
		}
		if s.q.isKeeper(m) {
			_ = m.Ack()
			return
		}
		l := s.lease(m)
		l.late = true
		out = append(out, l)
	}, &out)
	for _, l := range out {
		_ = s.releaseAfter(context.Background(), l.(*lease[T]).m, false, l.(*lease[T]).heldBack())
	}
}

// msgSizeHeader is the header the server puts, with the payload's size,
// on a message a durable that delivers headers only (HeadersOnly) sends
// without its payload.
const msgSizeHeader = "Nats-Msg-Size"

// headersOnly reports whether m came without its payload from a durable
// that delivers headers only. Publish refuses a header named Nats-...: a
// message of the Queue's carries this one only from the server.
func headersOnly(m jetstream.Msg) bool {
	return len(m.Data()) == 0 && first(m.Headers(), msgSizeHeader) != ""
}

func (s *source[T]) lease(m jetstream.Msg) *lease[T] {
	l := &lease[T]{s: s, m: m, attempt: 1}
	if md, err := m.Metadata(); err == nil {
		l.attempt = int(md.NumDelivered)
	}
	return l
}

type lease[T any] struct {
	s       *source[T]
	m       jetstream.Msg
	attempt int
	// late says the open pull request delivered the message after the
	// consumer's ctx had ended (see heldBack).
	late bool
}

// heldBack is how long a release of the message waits before the server
// delivers it again: 0, at once, but for a message that came late, into
// the pull request of a consumer already stopping, having been delivered
// before. That is one another consumer handed back (or a retry come due)
// which the server gave to the oldest request open, this one's; consumers
// stopping together (a service's replicas scaled down at once) passed it
// on so from one to the next, each delivery counted among its attempts,
// until MaxAttempts were used up and it was dead-lettered unhandled. It
// is delivered again once FetchWait has passed, by when every request
// open now, and so every one of a consumer stopping with this one, has
// ended (a stopping consumer opens none). Meanwhile it holds its slot of
// the durable's MaxAckPending, and the messages after it may be
// delivered first: the order of a key holds within one consumer, not
// among consumers stopping together (see kanban.ConsumeOptions.PerKey).
func (l *lease[T]) heldBack() time.Duration {
	if l.late && l.attempt > 1 {
		return l.s.q.opts.FetchWait
	}
	return 0
}

func (l *lease[T]) ID() string   { return messageID(l.m.Headers()) }
func (l *lease[T]) Key() string  { return first(l.m.Headers(), HeaderKey) }
func (l *lease[T]) Attempt() int { return l.attempt }

// BodySize returns the size of the message's body, its payload as the
// Codec encoded it: the Tracer is told it (kanban.BodySizer).
func (l *lease[T]) BodySize() int { return len(l.m.Data()) }

// messageID returns the message ID: a redriven message's Kanban-Id, else
// its Nats-Msg-Id.
func messageID(h nats.Header) string {
	if id := first(h, HeaderMessageID); id != "" {
		return id
	}
	return first(h, HeaderID)
}

func first(h nats.Header, k string) string {
	if v := h[k]; len(v) > 0 {
		return v[0]
	}
	return ""
}

func (l *lease[T]) Message() (kanban.Message[T], error) {
	nh := l.m.Headers()
	msg := kanban.Message[T]{ID: messageID(nh), Key: first(nh, HeaderKey)}
	for k, v := range nh {
		if k != HeaderID && k != HeaderMessageID && k != HeaderKey && len(v) > 0 {
			if msg.Headers == nil {
				msg.Headers = make(kanban.Header, len(nh))
			}
			msg.Headers[k] = v[0]
		}
	}
	err := l.s.q.opts.Codec.Unmarshal(l.m.Data(), &msg.Payload)
	return msg, err
}

// Ack acknowledges the message. While the consumer stops, it waits, up to
// PublishTimeout, for the server to have taken the acknowledgement (see
// confirm); before, it does not, and Consume confirms it as it returns
// (see confirmSent).
func (l *lease[T]) Ack(ctx context.Context) error {
	if l.s.stopping() {
		return l.s.confirm(ctx, l.m, ackBody, "acknowledging")
	}
	return l.s.sent.add(l.m, l.m.Ack(), true)
}

// Retry hands the message back to be delivered again after delay. While
// the consumer stops, it waits, up to PublishTimeout, for the server to
// have taken it (see confirm); before, it does not, and Consume confirms
// it as it returns (see retry and confirmSent).
func (l *lease[T]) Retry(ctx context.Context, delay time.Duration) error {
	delay = max(delay, nakNow)
	if l.s.stopping() {
		return l.s.confirm(ctx, l.m, nakBody(delay), "retrying")
	}
	return l.s.retry(l.m, delay)
}

// Release hands the message back to be delivered again at once, or
// after heldBack. It does not wait for the server to have taken it:
// Consume does, before it returns (see release).
func (l *lease[T]) Release(ctx context.Context) error {
	return l.s.releaseAfter(ctx, l.m, true, l.heldBack())
}

// nakNow is the delay of a negative acknowledgement meant to have its
// message delivered again at once. A plain one (no delay) puts the message
// on the consumer's redelivery queue, in the server's memory only: a
// server stopped right after it (a service shutting down with its embedded
// server), or a consumer whose leader changed, delivers the message again
// only once its lease has run out. One with a delay records the message's
// new deadline in the consumer's stored, replicated state (the server
// answers it once the consumer's leader has taken it, before its
// followers have it: see the package doc); but the server delivers it
// again only once its timer next fires, some milliseconds later, in the
// stream's order among those handed back together: a pull meanwhile is
// given messages not delivered yet before it. So a release sends both,
// the one with a delay first (see releases.send): the plain one, after
// it, puts the message on the redelivery queue at once, in turn.
const nakNow = time.Nanosecond

// Bodies of acknowledgements, as jetstream.Msg writes them.
var (
	ackBody  = []byte("+ACK")
	termBody = []byte("+TERM")
	// nakNowBody is that of a negative acknowledgement with the delay
	// nakNow.
	nakNowBody = nakBody(nakNow)
	// nakBodyPlain is that of a negative acknowledgement without a
	// delay.
	nakBodyPlain = []byte("-NAK")
)

// nakBody is the body of a negative acknowledgement with delay.
func nakBody(delay time.Duration) []byte {
	return []byte(`-NAK {"delay": ` + strconv.FormatInt(delay.Nanoseconds(), 10) + `}`)
}

// confirm sends body, an acknowledgement of m, and waits for the
// server's answer, which comes once the consumer has taken it (with
// replicas, an Ack or Term once its followers have it too, a negative
// acknowledgement once its leader has it): a consumer
// stopping, then its server (a service shutting down with its embedded
// server), had its settlements sent and not yet taken lost — a message
// handed back came again only once its lease ran out, and one
// acknowledged was handled again. The settlements while the consumer
// stops are confirmed so; releases are too, but without waiting for each
// answer in turn (see release). One not answered within PublishTimeout
// (a consumer with no leader, a connection not permitted to acknowledge)
// returns the error (what names the settlement), and the source's
// settlements after it are sent without waiting, so that a drain
// settling many does not wait PublishTimeout for each in turn. An Ack
// or Term answered confirms the settlements sent before it without
// waiting too (see confirmSent).
func (s *source[T]) confirm(ctx context.Context, m jetstream.Msg, body []byte, what string) error {
	nc := s.q.js.Conn()
	if s.unconfirmed.Load() {
		return nc.Publish(m.Reply(), body)
	}
	ctx, cancel := context.WithTimeout(ctx, s.q.opts.PublishTimeout)
	defer cancel()
	before := s.sent.count()
	if _, err := nc.RequestWithContext(ctx, m.Reply(), body); err != nil {
		s.unconfirmed.Store(true)
		return fmt.Errorf("natsjs: %s %s: %w", what, messageID(m.Headers()), err)
	}
	if bytes.Equal(body, ackBody) || bytes.Equal(body, termBody) {
		s.sent.confirmed(m, before)
	}
	return nil
}

func (l *lease[T]) Extend(context.Context) error { return l.m.InProgress() }

// DeadLetter publishes the message to the dead-letter stream, then
// terminates it. The reason kept is its first 1024 bytes (see
// ErrTooLarge). When the publish fails, or the dead letter alone takes
// more than DeadLetterMaxBytes (a message published or redriven before
// that bound was set or lowered), the message is handed back, to be
// dead-lettered on its next delivery, after a wait that grows with its
// deliveries as the waits between PublishAsync's attempts do (from
// AsyncRetryWait, doubling up to 2s): handed back at once, it came
// straight back to fail again, as fast as the consumer could pull, while
// the dead-letter stream was gone or the message too large for it.
//
// The dead letter's Nats-Msg-Id is that of the stored message it comes
// from, "<id>.dead.<stream sequence>.<ns>", with the Unix time in
// nanoseconds at which the work stream stored it, and the message ID in
// Kanban-Id: a delivery dead-lettered twice (its Term lost) is stored
// once, while a message published again with the same ID — once the work
// stream's window has passed, or into a work stream deleted and made
// again, which numbers from 1 again — and dead-lettered within the
// dead-letter stream's window is stored, not dropped as a duplicate and
// lost.
//
// The dead letter carries the message's headers, but for those a
// message of another client may have that it cannot: a name nats.go
// refuses to send, and one beginning Nats-, which the server acts on
// (Nats-Expected-Stream would have the dead-letter stream refuse it).
// They are dropped, not sent to have the message handed back at every
// delivery, without end.
//
// A connection not permitted to publish to the dead-letter stream's
// subject, DeadLetterStream, is answered by nothing but the server's
// refusal, an error on the connection: until the server has answered one
// dead letter of the Queue, each is sent with a ping and the refusal
// looked for, so that it fails at once, with an error that wraps
// nats.ErrPermissionViolation and names the subject, the message handed
// back as above, instead of holding the handler's place for
// PublishTimeout.
func (l *lease[T]) DeadLetter(ctx context.Context, reason string, attempts int) error {
	q := l.s.q
	nh := make(nats.Header, len(l.m.Headers())+4)
	for k, v := range l.m.Headers() {
		if carried(k) {
			nh[k] = v
		}
	}
	if md, err := l.m.Metadata(); err == nil {
		id := l.ID()
		nh[HeaderMessageID] = []string{id}
		nh[HeaderID] = []string{id + ".dead." + strconv.FormatUint(md.Sequence.Stream, 10) + "." + strconv.FormatInt(md.Timestamp.UnixNano(), 10)}
	}
	nh[HeaderReason] = []string{cutReason(reason)}
	nh[HeaderAttempts] = []string{fmt.Sprint(attempts)}
	nh[HeaderTime] = []string{time.Now().UTC().Format(time.RFC3339Nano)}
	if q.opts.DeadLetterMaxBytes > 0 {
		// Stored, it would be dropped at once with every dead letter kept.
		if n := q.storedSize(q.opts.DeadLetterStream, headerSize(nh), len(l.m.Data())); n > q.opts.DeadLetterMaxBytes {
			_ = l.Retry(ctx, q.backoff.Delay(attempts))
			return fmt.Errorf("natsjs: dead-lettering message %s: %w: its dead letter takes %d bytes, more than DeadLetterMaxBytes %d", l.ID(), ErrTooLarge, n, q.opts.DeadLetterMaxBytes)
		}
	}
	pctx, cancel := context.WithTimeout(ctx, q.opts.PublishTimeout)
	defer cancel()
	if _, err := q.sendProbed(pctx, &nats.Msg{Subject: q.opts.DeadLetterStream, Data: l.m.Data(), Header: nh}, &q.deadTaken); err != nil {
		_ = l.Retry(ctx, q.backoff.Delay(attempts))
		return fmt.Errorf("natsjs: dead-lettering message %s: %w", l.ID(), err)
	}
	// Not TermWithReason: servers before 2.10 ignore it.
	if l.s.stopping() {
		return l.s.confirm(ctx, l.m, termBody, "terminating")
	}
	return l.s.sent.add(l.m, l.m.Term(), true)
}
