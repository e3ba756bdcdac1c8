package natsjs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"reflect"
	"strconv"
	"strings"
	"sync"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// A file-stored work stream holds, besides the queue's messages, one
// small message of its own: the keeper, on the subject Stream+".keeper",
// never delivered and not counted in Backlog's Depth.
//
// JetStream's file store replaces the stream's last block file whenever
// the last message in it is removed: it creates a new file, writes a
// marker of the last sequence number into it, and deletes the old one. A
// work queue whose consumer keeps up empties its stream with nearly every
// acknowledgement, so each message cost a file created and a file deleted
// — at a few thousand messages a second, about a tenth of the process's
// CPU with the server embedded, and as much file-system churn. A message
// that stays in the last block keeps it from emptying.
//
// The keeper is published when the queue is made and again after every
// keeperEvery bytes a Queue value has published (a block holds 4 MiB, so
// each new block soon gets one; with a MaxBytes under about 128 KB it
// holds 32 KB, and about half the messages still cost a block); each
// replaces the one before (a subject roll-up). The stream's MaxMsgs and
// MaxBytes leave room for it: with the keeper in it, the work subject
// holds Capacity messages and MaxBytes bytes exactly. The stream sets no
// limit of messages per subject, which would hold the work subject to
// Capacity without a keeper too: the server enforces such a limit, when
// it is set or lowered, by deleting the oldest messages beyond it,
// refusing new ones or not, and a New with a lower Capacity than the
// messages in the stream would lose them.

// keeperEvery is how many bytes a Queue publishes between keepers.
const keeperEvery = 64 << 10

// keeperMsg returns a keeper of stream. Its header rolls the keeper's
// subject up (the one before is removed); each keeper has a header of its
// own, as the client may add to a message's header as it sends it.
func keeperMsg(stream string) *nats.Msg {
	return &nats.Msg{Subject: keeperSubject(stream), Header: nats.Header{"Nats-Rollup": {"sub"}}}
}

// keeperSubject is the subject of a work stream's keeper.
func keeperSubject(stream string) string { return stream + ".keeper" }

// keeps reports whether the queue's work stream is to hold a keeper: when
// it is kept in files. New makes it without one when another stream takes
// the keeper's subject (see subjectsOverlap), and the Queue publishes none
// (Queue.keeper); its durable and Backlog still leave the keeper out,
// because a Queue made after that stream is gone adds the keeper.
func (c Options) keeps() bool { return c.Storage == FileStorage }

// errSubjectsOverlap is the server's error code for a stream whose
// subjects another stream of the account takes.
const errSubjectsOverlap jetstream.ErrorCode = 10065

// subjectsOverlap reports whether err is the server's refusal of a stream
// whose subjects overlap another stream's: one on "<Stream>.>", say, takes
// the keeper's.
func subjectsOverlap(err error) bool {
	var api *jetstream.APIError
	return errors.As(err, &api) && api.ErrorCode == errSubjectsOverlap
}

// keeperSize is the room the keeper takes in the work stream, as the
// server counts it against MaxBytes (see storedSize).
func (c Options) keeperSize() int64 {
	m := keeperMsg(c.Stream)
	return int64(len(m.Subject)+headerSize(m.Header)) + 34
}

// withKeeper makes room in the work stream's configuration for the keeper.
func (c Options) withKeeper(work *jetstream.StreamConfig) {
	work.Subjects = []string{c.Stream, keeperSubject(c.Stream)}
	work.AllowRollup = true
	if c.Capacity < math.MaxInt64 {
		work.MaxMsgs = c.Capacity + 1
	}
	if c.MaxBytes > 0 && c.MaxBytes <= math.MaxInt64-c.keeperSize() {
		work.MaxBytes = c.MaxBytes + c.keeperSize()
	}
}

// keep publishes a keeper, without waiting for the server: a keeper lost
// (the stream is full, the connection down) costs only the files it would
// have saved until the next one.
func (q *Queue[T]) keep() {
	_ = q.js.Conn().PublishMsg(keeperMsg(q.opts.Stream))
}

// published notes a message of n payload bytes published, and publishes a
// keeper when keeperEvery bytes have been since the last. A message counts
// its payload and about what its headers and framing take.
func (q *Queue[T]) published(n int) {
	if !q.keeper {
		return
	}
	if q.sinceKeeper.Add(int64(n)+128) < keeperEvery {
		return
	}
	if q.sinceKeeper.Swap(0) >= keeperEvery { // one of the callers that crossed it
		q.keep()
	}
}

// firstKeeper publishes the keeper of a new Queue and waits, at most
// PublishTimeout, for the server to store it, so that the stream holds
// one from the start. A refusal (the stream is full) is no error: the
// keeper before is still there.
//
// A connection not permitted to publish to the keeper's subject is
// answered by nothing but the server's permissions violation, an error on
// the connection: a request would wait out its timeout. So the keeper goes
// out followed by a ping, and the server's error, which comes before the
// pong, is looked for before the acknowledgement is waited for. The error
// returned then is errKeeperDenied, and the Queue publishes no keeper.
// Probes on one connection take turns (see probes).
func (q *Queue[T]) firstKeeper(ctx context.Context) error {
	if !q.keeper {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, q.opts.PublishTimeout)
	defer cancel()
	nc := q.js.Conn()
	sub, err := subscribeReply(nc)
	if err != nil {
		return err
	}
	defer sub.unsubscribe()
	m := keeperMsg(q.opts.Stream)
	m.Reply = sub.subject()
	done, err := takeProbeTurn(ctx, nc)
	if err != nil {
		return err
	}
	before := nc.LastError()
	err = nc.PublishMsg(m)
	if err == nil {
		err = nc.FlushWithContext(ctx)
	}
	after := nc.LastError()
	done()
	if err != nil {
		return err
	}
	if !sameError(after, before) && keeperDenied(after, q.opts.Stream) {
		q.keeper = false
		return fmt.Errorf("%w: %w", errKeeperDenied, after)
	}
	ack, err := sub.next(ctx)
	if err != nil {
		return err
	}
	if err := pubAckError(ack); err != nil && !isFull(err) {
		return err
	}
	return nil
}

// probes holds, for each connection a keeper or a JetStream API request
// is being probed on (see firstKeeper and apiRequest), whose turn it is:
// one probe at a time. A probe sees the
// server's refusal only as the connection's last error, and the refusal
// of another probe's keeper (New of another Queue on the same connection
// at the same time), coming after it, would replace it: that New would
// wait out PublishTimeout for an acknowledgement that never comes, and
// its Queue publish keepers, each refused.
var probes = struct {
	mu    sync.Mutex
	conns map[*nats.Conn]*probeTurns
}{conns: make(map[*nats.Conn]*probeTurns)}

// probeTurns is the turn of the probes on one connection.
type probeTurns struct {
	turn  chan struct{} // holds a value while a probe runs
	users int           // the probes holding or waiting for the turn; under probes.mu
}

// takeProbeTurn waits until no other probe runs on nc, or ctx ends, and
// returns the function that ends the turn taken; ctx's error, at once,
// when ctx has ended.
func takeProbeTurn(ctx context.Context, nc *nats.Conn) (done func(), err error) {
	return takeProbeTurnUnless(ctx, nc, nil)
}

// errAnswered is takeProbeTurnUnless's error when unless is closed
// before the turn comes.
var errAnswered = errors.New("natsjs: probe not needed")

// takeProbeTurnUnless is takeProbeTurn, which returns errAnswered as soon
// as unless is closed (a nil unless never is) while it waits.
func takeProbeTurnUnless(ctx context.Context, nc *nats.Conn, unless <-chan struct{}) (done func(), err error) {
	if err := ctx.Err(); err != nil {
		// A free turn would win the select below as often as not, and a
		// probe be sent for a call that has ended: a durable updated by
		// a Consume that returns at once, say.
		return nil, err
	}
	probes.mu.Lock()
	p := probes.conns[nc]
	if p == nil {
		p = &probeTurns{turn: make(chan struct{}, 1)}
		probes.conns[nc] = p
	}
	p.users++
	probes.mu.Unlock()
	leave := func() {
		probes.mu.Lock()
		if p.users--; p.users == 0 {
			delete(probes.conns, nc)
		}
		probes.mu.Unlock()
	}
	select {
	case p.turn <- struct{}{}:
		return func() { <-p.turn; leave() }, nil
	case <-ctx.Done():
		leave()
		return nil, ctx.Err()
	case <-unless:
		leave()
		return nil, errAnswered
	}
}

// errKeeperDenied is firstKeeper's error for a connection not permitted
// to publish to the keeper's subject.
var errKeeperDenied = errors.New("natsjs: publishing the keeper not permitted")

// keeperDenied reports whether err, a connection's last error, is the
// server's refusal of a publish to the keeper's subject of stream.
func keeperDenied(err error, stream string) bool {
	return errors.Is(err, nats.ErrPermissionViolation) &&
		strings.Contains(err.Error(), "Publish to "+strconv.Quote(keeperSubject(stream)))
}

// sameError reports whether a and b are the same error value: the
// connection's last error unchanged. Values of a type that cannot be
// compared are taken as different.
func sameError(a, b error) bool {
	if a == nil || b == nil {
		return a == b
	}
	if t := reflect.TypeOf(a); t != reflect.TypeOf(b) || !t.Comparable() {
		return false
	}
	return a == b
}

// pubAckError returns the error a stream's reply to a publish holds: none
// for an acknowledgement, the server's refusal (a *jetstream.APIError),
// or no stream listening.
func pubAckError(reply *nats.Msg) error {
	_, err := pubAckOf(reply)
	return err
}

// pubAckOf returns the acknowledgement a stream's reply to a publish
// holds, or its error as jetstream's PublishMsg returns it: the server's
// refusal (a *jetstream.APIError), no stream listening, or a reply that
// is no acknowledgement.
func pubAckOf(reply *nats.Msg) (*jetstream.PubAck, error) {
	if len(reply.Data) == 0 && reply.Header.Get(statusHeader) == "503" {
		return nil, jetstream.ErrNoStreamResponse
	}
	var ack struct {
		Error *jetstream.APIError `json:"error"`
		*jetstream.PubAck
	}
	switch err := json.Unmarshal(reply.Data, &ack); {
	case err != nil:
		return nil, jetstream.ErrInvalidJSAck
	case ack.Error != nil:
		return nil, fmt.Errorf("nats: %w", ack.Error)
	case ack.PubAck == nil || ack.Stream == "":
		return nil, jetstream.ErrInvalidJSAck
	}
	return ack.PubAck, nil
}

// isKeeper reports whether m is a keeper, delivered to a durable made
// before keepers were filtered out.
func (q *Queue[T]) isKeeper(m jetstream.Msg) bool {
	return m.Subject() == keeperSubject(q.opts.Stream)
}

// workDepth is the count of messages on the work subject of s, the work
// stream: its messages less the keeper. One request to the server.
func (q *Queue[T]) workDepth(ctx context.Context, s jetstream.Stream) (uint64, error) {
	info, err := s.Info(ctx, jetstream.WithSubjectFilter(q.opts.Stream))
	if err != nil {
		return 0, fmt.Errorf("natsjs: stream %s: %w", q.opts.Stream, err)
	}
	return info.State.Subjects[q.opts.Stream], nil
}
