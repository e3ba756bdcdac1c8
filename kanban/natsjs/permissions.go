package natsjs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// A connection whose user may not publish to a JetStream API subject
// (say $JS.API.STREAM.CREATE.<stream>) is answered by nothing but the
// server's permissions violation, an error on the connection, and a
// request waits out its timeout for a reply that never comes. So the
// requests New and Consume make to set up the streams and the durable go
// out as the keeper does (see firstKeeper): followed by a ping, with the
// server's refusal, which comes before the pong, looked for before the
// reply is waited for. A refusal fails the call at once with an error
// naming the subject refused, unless what the call would create exists:
// then the queue uses it as it is.

// apiPrefix is the prefix of the JetStream API's subjects.
const apiPrefix = "$JS.API."

// apiTimeout bounds a JetStream API request whose ctx has no deadline, as
// jetstream's own requests are.
const apiTimeout = 5 * time.Second

// apiRequest sends data to the JetStream API subject subj (apiPrefix and
// what follows) and returns the reply: at once an error wrapping
// nats.ErrPermissionViolation and naming subj when the server refuses
// the connection's publish to it, nats.ErrNoResponders when JetStream
// does not answer, and ctx's error when no reply comes in time.
func apiRequest(ctx context.Context, nc *nats.Conn, subj string, data []byte) (*nats.Msg, error) {
	return probeRequest(ctx, nc, &nats.Msg{Subject: subj, Data: data})
}

// probeRequest sends m, with its subject, headers and data, as apiRequest
// sends a request, and returns the reply as apiRequest does.
func probeRequest(ctx context.Context, nc *nats.Conn, m *nats.Msg) (*nats.Msg, error) {
	return probeRequestUnless(ctx, nc, m, nil)
}

// probeRequestUnless is probeRequest, which sends nothing and returns
// errAnswered when unless is closed (a nil unless never is) while it
// waits for its turn (see takeProbeTurnUnless).
func probeRequestUnless(ctx context.Context, nc *nats.Conn, m *nats.Msg, unless <-chan struct{}) (*nats.Msg, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, apiTimeout)
		defer cancel()
	}
	sub, err := probeSend(ctx, nc, m, unless)
	if err != nil {
		return nil, err
	}
	defer sub.unsubscribe()
	return sub.next(ctx)
}

// probeSend sends m as probeRequestUnless does and returns the
// subscription its reply comes to, which the caller ends; or the
// server's refusal of the publish or of the subscription (an error
// wrapping nats.ErrPermissionViolation, see isDenied); or another error,
// and then m was not sent. ctx has a deadline.
func probeSend(ctx context.Context, nc *nats.Conn, m *nats.Msg, unless <-chan struct{}) (*replySub, error) {
	done, err := takeProbeTurnUnless(ctx, nc, unless)
	if err != nil {
		return nil, err
	}
	// The subscription is made in the turn too: the server's refusal of
	// it is looked for as the publish's is.
	before := nc.LastError()
	sub, err := subscribeReply(nc)
	if err != nil {
		done()
		return nil, err
	}
	sub.sent = time.Now()
	err = nc.PublishMsg(&nats.Msg{Subject: m.Subject, Reply: sub.subject(), Header: m.Header, Data: m.Data})
	var flushed bool
	if err == nil {
		// A flush that fails (the connection lost meanwhile) shows no
		// refusal: the reply is waited for as a request's would be.
		flushed = nc.FlushWithContext(ctx) == nil
	}
	after := nc.LastError()
	done()
	if err == nil && flushed && !sameError(after, before) {
		switch {
		case publishDenied(after, m.Subject):
			err = deniedError(m.Subject, after)
		case subscribeDenied(after, sub.subject()):
			err = fmt.Errorf("natsjs: the connection may not subscribe to %q, the inbox of the reply to %q (a subscribe permission is missing): %w", sub.subject(), m.Subject, after)
		}
	}
	if err != nil {
		sub.unsubscribe()
		return nil, err
	}
	return sub, nil
}

// subscribeDenied reports whether err, a connection's last error, is the
// server's refusal of a subscription to subj.
func subscribeDenied(err error, subj string) bool {
	return errors.Is(err, nats.ErrPermissionViolation) &&
		strings.Contains(err.Error(), "Subscription to "+strconv.Quote(subj))
}

// replySlots is the room for replies of a probe's subscription: one is
// expected.
const replySlots = 4

// replySub is a subscription whose replies come on a channel: the one
// reply a probe (see probeRequest and firstKeeper) waits for, on a
// channel of replySlots, or the answers to a consumer's releases (see
// release). A synchronous subscription's channel has the connection's
// SubChanLen slots (65,536 by default, 512 KiB of pointers), allocated
// for every probe.
type replySub struct {
	sub     *nats.Subscription
	replies chan *nats.Msg
	closed  chan struct{} // holds a value once the connection is closed
	sent    time.Time     // when probeSend sent the message replied to
}

// subscribeReply subscribes to a new inbox of nc for a probe's reply.
func subscribeReply(nc *nats.Conn) (*replySub, error) {
	return subscribeReplies(nc, nc.NewInbox(), replySlots)
}

// subscribeReplies subscribes to subj, an inbox of nc, with room for
// slots replies not yet read: one more is dropped, and the connection's
// error handler told of a slow consumer.
func subscribeReplies(nc *nats.Conn, subj string, slots int) (*replySub, error) {
	r := &replySub{replies: make(chan *nats.Msg, slots), closed: make(chan struct{}, 1)}
	sub, err := nc.ChanSubscribe(subj, r.replies)
	if err != nil {
		return nil, err
	}
	r.sub = sub
	// Called when the connection closes, as a synchronous subscription's
	// wait is ended then; and by unsubscribe, once nothing waits.
	sub.SetClosedHandler(func(string) {
		select {
		case r.closed <- struct{}{}:
		default:
		}
	})
	if nc.IsClosed() { // closed before the handler was set
		r.closed <- struct{}{}
	}
	return r, nil
}

// subject is the inbox the reply goes to.
func (r *replySub) subject() string { return r.sub.Subject }

// unsubscribe ends the subscription.
func (r *replySub) unsubscribe() { _ = r.sub.Unsubscribe() }

// next returns the reply, as a synchronous subscription's
// NextMsgWithContext does: nats.ErrNoResponders for the server's "no
// responders", nats.ErrConnectionClosed once the connection is closed
// (a reply that came before is returned), ctx's error when ctx ends first.
func (r *replySub) next(ctx context.Context) (*nats.Msg, error) {
	var reply *nats.Msg
	select {
	case reply = <-r.replies:
	case <-r.closed:
		select {
		case reply = <-r.replies:
		default:
			return nil, nats.ErrConnectionClosed
		}
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if len(reply.Data) == 0 && reply.Header.Get(statusHeader) == "503" {
		return nil, nats.ErrNoResponders
	}
	return reply, nil
}

// publishDenied reports whether err, a connection's last error, is the
// server's refusal of a publish to subj.
func publishDenied(err error, subj string) bool {
	return errors.Is(err, nats.ErrPermissionViolation) &&
		strings.Contains(err.Error(), "Publish to "+strconv.Quote(subj))
}

// deniedError is the error of a request to subj that the server refused,
// with violation, the connection's error.
func deniedError(subj string, violation error) error {
	return fmt.Errorf("natsjs: the connection may not publish to %q (a publish permission is missing): %w", subj, violation)
}

// isDenied reports whether err is apiRequest's for a refused publish.
func isDenied(err error) bool { return errors.Is(err, nats.ErrPermissionViolation) }

// streamInfoRequest sends data to the stream API subject subj and returns
// the stream's info. A stream the server does not know is
// jetstream.ErrStreamNotFound.
func streamInfoRequest(ctx context.Context, nc *nats.Conn, subj string, data []byte) (*jetstream.StreamInfo, error) {
	reply, err := apiRequest(ctx, nc, subj, data)
	if err != nil {
		return nil, err
	}
	var r struct {
		Error *jetstream.APIError `json:"error"`
		*jetstream.StreamInfo
	}
	if err := json.Unmarshal(reply.Data, &r); err != nil {
		return nil, fmt.Errorf("%w: %w", jetstream.ErrInvalidJetStreamResponse, err)
	}
	switch {
	case r.Error != nil && r.Error.ErrorCode == jetstream.JSErrCodeStreamNotFound:
		return nil, jetstream.ErrStreamNotFound
	case r.Error != nil && r.Error.ErrorCode == jetstream.JSErrCodeJetStreamNotEnabled:
		return nil, jetstream.ErrJetStreamNotEnabled
	case r.Error != nil:
		return nil, r.Error
	case r.StreamInfo == nil:
		return nil, jetstream.ErrInvalidJetStreamResponse
	}
	return r.StreamInfo, nil
}

// upsertStream updates the stream cfg names, or creates it when the
// server does not know it, and returns its info. The update changes the
// fields the queue sets (see ownStream) and keeps the others as the
// stream has them: a description, compression, direct gets, metadata and
// the like that an administrator gave it. A connection not permitted to
// read the stream's info ($JS.API.STREAM.INFO.<name>) updates it with cfg
// whole. A connection not permitted to update it (or to create it) uses
// the stream as it is, when it exists: one an administrator made. A
// stream whose configuration then differs from cfg is logged at Warn,
// with the fields that differ.
func (q *Queue[T]) upsertStream(ctx context.Context, cfg jetstream.StreamConfig) (*jetstream.StreamInfo, error) {
	nc := q.js.Conn()
	infoSubj := apiPrefix + "STREAM.INFO." + cfg.Name
	request := func(op string, c jetstream.StreamConfig) (*jetstream.StreamInfo, error) {
		data, err := json.Marshal(c)
		if err != nil {
			return nil, err
		}
		return streamInfoRequest(ctx, nc, apiPrefix+"STREAM."+op+"."+cfg.Name, data)
	}
	// Two rounds: a stream made or deleted by another process between
	// the read and the create or update is read again.
	for round := 0; ; round++ {
		cur, err := streamInfoRequest(ctx, nc, infoSubj, nil)
		switch {
		case errors.Is(err, jetstream.ErrStreamNotFound):
			info, err := request("CREATE", cfg)
			if streamExists(err) && round == 0 {
				continue
			}
			return info, err
		case isDenied(err):
			return q.upsertStreamUnread(ctx, cfg, request, err)
		case err != nil:
			return nil, err
		}
		info, err := request("UPDATE", ownStream(cur.Config, cfg))
		switch {
		case errors.Is(err, jetstream.ErrStreamNotFound) && round == 0:
			continue
		case !isDenied(err):
			return info, err
		}
		if diff := streamDiff(cfg, cur.Config); len(diff) > 0 {
			q.opts.Logger.Warn("natsjs: the connection may not update the stream; the queue uses it as it is",
				"stream", cfg.Name, "differs", diff, "err", err)
		}
		return cur, nil
	}
}

// upsertStreamUnread is upsertStream for a connection not permitted to
// read the stream's info (infoDenied, the refusal): it updates the stream
// with cfg whole, or creates it, and fails when it may do neither.
func (q *Queue[T]) upsertStreamUnread(ctx context.Context, cfg jetstream.StreamConfig, request func(string, jetstream.StreamConfig) (*jetstream.StreamInfo, error), infoDenied error) (*jetstream.StreamInfo, error) {
	info, err := request("UPDATE", cfg)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		info, err = request("CREATE", cfg)
	}
	if isDenied(err) {
		return nil, fmt.Errorf("%w; %w", err, infoDenied)
	}
	return info, err
}

// ownStream returns cur, a stream's configuration as the server has it,
// with the fields the queue sets (those of Options.streams and of the
// keeper) taken from want.
func ownStream(cur, want jetstream.StreamConfig) jetstream.StreamConfig {
	cur.Subjects = want.Subjects
	cur.Retention = want.Retention
	cur.Discard = want.Discard
	cur.MaxMsgs = want.MaxMsgs
	cur.MaxBytes = want.MaxBytes
	cur.MaxAge = want.MaxAge
	cur.Duplicates = want.Duplicates
	cur.MaxMsgSize = want.MaxMsgSize
	cur.Storage = want.Storage
	cur.Replicas = want.Replicas
	cur.AllowRollup = want.AllowRollup
	return cur
}

// streamExists reports whether err is the server's refusal to create a
// stream that exists with another configuration.
func streamExists(err error) bool {
	var api *jetstream.APIError
	return errors.As(err, &api) && api.ErrorCode == jetstream.JSErrCodeStreamNameInUse
}

// streamDiff names the fields New sets that differ between want and got.
func streamDiff(want, got jetstream.StreamConfig) []string {
	var diff []string
	for _, f := range []struct {
		name string
		same bool
	}{
		{"Subjects", slices.Equal(want.Subjects, got.Subjects)},
		{"Retention", want.Retention == got.Retention},
		{"Discard", want.Discard == got.Discard},
		{"MaxMsgs", want.MaxMsgs == got.MaxMsgs},
		{"MaxBytes", want.MaxBytes == got.MaxBytes},
		{"MaxAge", want.MaxAge == got.MaxAge},
		{"Duplicates", want.Duplicates == got.Duplicates},
		{"MaxMsgSize", want.MaxMsgSize == got.MaxMsgSize || (want.MaxMsgSize <= 0 && got.MaxMsgSize <= 0)},
		{"Storage", want.Storage == got.Storage},
		{"Replicas", want.Replicas == got.Replicas},
		{"AllowRollup", want.AllowRollup == got.AllowRollup},
	} {
		if !f.same {
			diff = append(diff, f.name)
		}
	}
	return diff
}

// probeConsumer sends the request that creates the durable as cfg says
// (action "create"), or creates or updates it (action ""), as jetstream
// does, and returns apiRequest's error: at once the refusal of a
// connection not permitted to create it. The reply is left to jetstream,
// which sends the request again, returns the durable and reads the
// server's refusals.
func (q *Queue[T]) probeConsumer(ctx context.Context, cfg jetstream.ConsumerConfig, action string) error {
	stream := q.opts.Stream
	subj := apiPrefix + "CONSUMER.CREATE." + stream + "." + cfg.Durable
	if cfg.FilterSubject != "" {
		subj += "." + cfg.FilterSubject // as jetstream sends it
	}
	data, err := json.Marshal(struct {
		Stream string                    `json:"stream_name"`
		Config *jetstream.ConsumerConfig `json:"config"`
		Action string                    `json:"action"`
	}{stream, &cfg, action})
	if err != nil {
		return err
	}
	_, err = apiRequest(ctx, q.js.Conn(), subj, data)
	return err
}

// upsertConsumer creates the durable as want says, or updates it, and
// returns it. The update changes the fields the queue sets (see
// ownConsumer) and keeps the others as the durable has them: a
// description, an inactivity threshold, pull request limits, metadata and
// the like that an administrator gave it, and those the server lets no
// update change (MaxWaiting, ReplayPolicy, MemoryStorage...). A durable
// whose own fields the server lets no update change to the queue's (see
// ownConsumer) is an error naming them, sent no update. A connection not
// permitted to read the durable's info ($JS.API.CONSUMER.INFO...) creates
// or updates it with want whole. A connection not permitted to create it
// uses the durable as it is, when it exists: one an administrator made. A
// durable whose configuration then differs from want is logged at Warn,
// with the fields that differ.
func (q *Queue[T]) upsertConsumer(ctx context.Context, want jetstream.ConsumerConfig) (jetstream.Consumer, error) {
	stream := q.opts.Stream
	cur, infoDenied, err := q.durableConfig(ctx, want.Durable)
	if err != nil {
		return nil, err
	}
	cfg := want
	if cur != nil {
		if cfg, err = ownConsumer(*cur, want); err != nil {
			return nil, err
		}
	}
	err = q.probeConsumer(ctx, cfg, "")
	if err == nil {
		return q.js.CreateOrUpdateConsumer(ctx, stream, cfg)
	}
	if !isDenied(err) {
		return nil, err
	}
	denied := err
	if infoDenied != nil {
		return nil, fmt.Errorf("%w; %w", denied, infoDenied)
	}
	// Read again: another process may have made it since.
	cons, err := q.js.Consumer(ctx, stream, want.Durable)
	switch {
	case errors.Is(err, jetstream.ErrConsumerNotFound):
		return nil, denied
	case err != nil:
		return nil, err
	}
	if diff := consumerDiff(want, cons.CachedInfo().Config); len(diff) > 0 {
		q.opts.Logger.Warn("natsjs: the connection may not create or update the consumer; the queue uses it as it is",
			"consumer", want.Durable, "stream", stream, "differs", diff, "err", denied)
	}
	return cons, nil
}

// durableConfig returns the configuration of the durable name, nil when
// it does not exist or its info cannot be read; and the server's refusal
// of the connection's request for its info, if it refused. JetStream out
// of reach, or the connection closed, is returned as the error.
func (q *Queue[T]) durableConfig(ctx context.Context, name string) (cfg *jetstream.ConsumerConfig, infoDenied, err error) {
	reply, err := apiRequest(ctx, q.js.Conn(), apiPrefix+"CONSUMER.INFO."+q.opts.Stream+"."+name, nil)
	switch {
	case err == nil:
	case Unreachable(err) || errors.Is(err, nats.ErrConnectionClosed):
		return nil, nil, err
	case isDenied(err):
		return nil, err, nil
	default:
		return nil, nil, nil
	}
	var r struct {
		Error  *jetstream.APIError       `json:"error"`
		Config *jetstream.ConsumerConfig `json:"config"`
	}
	if json.Unmarshal(reply.Data, &r) != nil || r.Error != nil {
		return nil, nil, nil
	}
	return r.Config, nil, nil
}

// ownConsumer returns cur, a durable's configuration as the server has
// it, with the fields the queue sets taken from want: those
// Queue.consumerConfig sets, and those it leaves out on purpose — no
// BackOff (leases are extended within AckWait), no headers-only delivery
// (the payloads are the messages), no priority groups (the queue's pull
// requests name none, which the server refuses such a durable). Fields
// the server lets no update change are kept; those the queue needs as
// want has them — explicit acknowledgements, pulled deliveries (no
// DeliverSubject) — are an error naming each, with the value found and
// the one needed, when they differ.
func ownConsumer(cur, want jetstream.ConsumerConfig) (jetstream.ConsumerConfig, error) {
	var fixed []string
	if cur.AckPolicy != want.AckPolicy {
		fixed = append(fixed, fmt.Sprintf("its AckPolicy is %s and the queue needs %s", cur.AckPolicy, want.AckPolicy))
	}
	if cur.DeliverSubject != want.DeliverSubject {
		fixed = append(fixed, fmt.Sprintf("its DeliverSubject is %q (a push consumer) and the queue needs none (a pull consumer)", cur.DeliverSubject))
	}
	if len(fixed) > 0 {
		return cur, fmt.Errorf("%s, which the server lets no update change: delete the consumer, or name another in Options.Durable", strings.Join(fixed, "; "))
	}
	cur.AckWait = want.AckWait
	cur.MaxAckPending = want.MaxAckPending
	cur.MaxDeliver = want.MaxDeliver
	cur.FilterSubject = want.FilterSubject
	cur.FilterSubjects = want.FilterSubjects
	cur.BackOff = want.BackOff
	cur.HeadersOnly = want.HeadersOnly
	cur.PriorityPolicy = want.PriorityPolicy
	cur.PriorityGroups = want.PriorityGroups
	cur.PinnedTTL = want.PinnedTTL
	return cur, nil
}

// consumerDiff names the fields Consume sets that differ between want
// and got.
func consumerDiff(want, got jetstream.ConsumerConfig) []string {
	var diff []string
	for _, f := range []struct {
		name string
		same bool
	}{
		{"AckPolicy", want.AckPolicy == got.AckPolicy},
		{"AckWait", want.AckWait == got.AckWait},
		{"MaxAckPending", want.MaxAckPending == got.MaxAckPending},
		{"MaxDeliver", want.MaxDeliver == got.MaxDeliver},
		{"FilterSubject", want.FilterSubject == got.FilterSubject && len(got.FilterSubjects) == 0},
		{"BackOff", slices.Equal(want.BackOff, got.BackOff)},
	} {
		if !f.same {
			diff = append(diff, f.name)
		}
	}
	return diff
}
