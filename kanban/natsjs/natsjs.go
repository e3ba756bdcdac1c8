package natsjs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/taipattern/taikit/internal/typednil"
	"github.com/taipattern/taikit/kanban"
)

// Header names the queue writes. Names are kept exactly as written.
const (
	HeaderID = "Nats-Msg-Id" // the message ID (JetStream deduplication)
	// HeaderMessageID carries the message ID of a redriven message, whose
	// Nats-Msg-Id is its redrive's own (see RedriveDeadLetters).
	HeaderMessageID = "Kanban-Id"
	HeaderKey       = "Kanban-Key"      // the message key
	HeaderReason    = "Kanban-Reason"   // on a dead letter: why
	HeaderAttempts  = "Kanban-Attempts" // on a dead letter: deliveries made
	HeaderTime      = "Kanban-Time"     // on a dead letter: when (RFC 3339); without it, when its stream stored it
)

// Storage says where the streams keep messages.
type Storage uint8

// The storages. The zero value is FileStorage.
const (
	FileStorage Storage = iota
	MemoryStorage
)

// Options configure a Queue. The zero value is usable and names the
// stream "KANBAN".
type Options struct {
	// Stream is the work stream's name; it is also its subject. ""
	// means "KANBAN". Letters, digits, '-' and '_' only, and at most 255
	// bytes, as the names made from it (Durable, DeadLetterStream).
	Stream string
	// Durable is the consumer every process shares. "" means
	// Stream+"_WORKERS".
	Durable string
	// DeadLetterStream keeps dead letters. "" means Stream+"_DLQ".
	DeadLetterStream string
	// Capacity is the most messages the work stream holds (including
	// those being handled); Publish waits and TryPublish fails with
	// kanban.ErrFull beyond it. 0 means 100000. A file-stored stream
	// holds one more while its keeper is missing (see Storage). New with
	// a lower Capacity than the messages in the stream keeps them all and
	// refuses new ones until they are fewer (a 2.9 server deletes the
	// oldest beyond it instead).
	Capacity int64
	// MaxBytes, if positive, is the most bytes the work stream holds as
	// well: beyond it Publish waits and TryPublish fails with kanban.ErrFull,
	// as beyond Capacity. A message that alone takes more (its payload,
	// headers and subject, and a few bytes of framing) is refused at once
	// with ErrTooLarge. 0 means no byte limit besides Capacity.
	MaxBytes int64
	// MaxAge, if positive, is how long the work stream keeps a message not
	// yet acknowledged; older ones are dropped without being handled. 0
	// means messages stay until they are acknowledged or dead-lettered;
	// otherwise at least 100ms, as JetStream asks.
	MaxAge time.Duration
	// DeadLetterLimit is the most dead letters kept; the oldest go first.
	// 0 means 10000.
	DeadLetterLimit int64
	// DeadLetterMaxBytes, if positive, is the most bytes the dead-letter
	// stream holds as well; beyond it the oldest dead letters go first, as
	// beyond DeadLetterLimit: dropped by the server, neither counted nor
	// logged. A count alone bounds the stream's size only by
	// DeadLetterLimit times the largest message (up to the server's
	// max_payload, 1 MB by default, each). Publish, and
	// RedriveDeadLetters, refuse with ErrTooLarge a message whose dead
	// letter alone would take more (see ErrTooLarge), so that every
	// message taken can be dead-lettered;
	// one taken before the bound was set or lowered whose dead letter does
	// not fit is not dead-lettered but handed back, as when the
	// dead-letter stream is out of reach (see the consumer's DeadLetter),
	// since the server would store it only to drop it at once with every
	// dead letter kept. Lowering the bound drops the oldest dead letters
	// beyond it when New updates the stream. 0 means no byte limit
	// besides DeadLetterLimit: a default bound would drop dead letters,
	// which wait for a person's decision, that a count keeps.
	DeadLetterMaxBytes int64
	// Replicas is how many servers of a JetStream cluster hold each of
	// the queue's streams (and its consumer), at most 5; usually 3, which
	// survives the loss of one server (as 5 does of two; an even count
	// survives no more than the odd count below it). 0 means 1. A single
	// server accepts only 1.
	Replicas int
	// DedupWindow is how long the stream remembers message IDs. A server
	// that restarts remembers, from its store, only the IDs of the
	// messages the stream still holds: a message handled (acknowledged,
	// so removed) before the restart and published again with its ID
	// within the window is stored, and handled, again. 0 means
	// 2 minutes, or MaxAge when that is shorter. Otherwise at least 100ms
	// and, with a MaxAge, at most MaxAge, as JetStream asks: it remembers
	// no ID longer than it keeps the message.
	DedupWindow time.Duration
	// Storage selects file (the zero value) or memory storage. A
	// file-stored work stream holds one message of the queue's own
	// besides, the keeper, on the subject Stream+".keeper": never
	// delivered, not counted in Backlog's Depth or against Capacity, and
	// its size (71 bytes and the length of Stream) more in the stream's
	// MaxBytes. It keeps the server from replacing the stream's last
	// block file each time the consumer catches up and the stream
	// empties, which without it cost a file created and one deleted for
	// nearly every message. The stream's limits count the keeper: while
	// it is missing — expired by MaxAge before a Queue published 64 KiB
	// more, which publishes the next — the stream takes one message more
	// than Capacity, and the keeper's size more than MaxBytes. New makes
	// the work stream without a keeper when another stream of the account
	// takes its subject (one on Stream+".>", say), and logs it. A
	// connection whose publish permissions leave out Stream+".keeper"
	// (one allowed Stream alone) gets a Queue that publishes no keeper:
	// New sees the server's refusal at once and logs it, once, at Warn.
	// Such a Queue works as one with a keeper, only without the saving;
	// while no process publishes the keeper the stream takes one message
	// more than Capacity, as above. Allow Stream+".keeper" for the saving.
	Storage Storage
	// AckWait is how long a delivered message stays leased without an
	// acknowledgement; the consumer extends it at most a third of it
	// after the pull, then at most a third of it apart, while the
	// message is handled or waits behind its key (PerKey). 0 means 30s.
	// It is the durable's, which every process shares: Consume sets it,
	// so the last process to start sets it for all, and one whose own
	// AckWait is three times as long or more extends its leases too late
	// — the server delivers its messages again while they are handled —
	// and one half as long again leaves no time for an extension lost.
	// Give every process sharing the durable the same AckWait.
	// A process not permitted to update the durable extends its leases
	// within the durable's own AckWait, or the shortest entry of its
	// BackOff when it has one (see Consume).
	AckWait time.Duration
	// FetchWait is how long one pull request waits on the server. It
	// bounds how soon a drain can start releasing messages. 0 means 1s.
	// The client stops reading a request's answers a second after it
	// expires: a server stalled for longer than that (starved of CPU, say)
	// may deliver into a request given up on, and the message comes again
	// only after AckWait.
	FetchWait time.Duration
	// MaxPublishPending bounds the PublishAsync messages not yet settled:
	// those awaiting an acknowledgement and those waiting to be
	// re-published. PublishAsync waits beyond it, so a stalled server
	// slows the publisher instead of filling memory. 0 means 256.
	MaxPublishPending int
	// PublishTimeout bounds the wait for one acknowledgement. A
	// PublishAsync acknowledgement lost to a broken connection or a
	// server restart fails the attempt as soon as the client sees the
	// disconnect, and after PublishTimeout at the latest; Publish,
	// TryPublish, a consumer's dead-lettering, and a PublishAsync
	// message sent to look for a refusal (see PublishAsync) wait out
	// PublishTimeout for one lost so (nats.go does not end a request at
	// a disconnect, as the reply may still come once it reconnects). 0
	// means 5s; otherwise at least 1ms, as no acknowledgement comes
	// sooner.
	PublishTimeout time.Duration
	// AsyncAttempts is how many times a PublishAsync message is sent
	// before its failure is final: a failed attempt (no acknowledgement
	// within PublishTimeout, a lost connection, a full stream, ...) is
	// sent again after a wait. Repeats are harmless because the message
	// keeps its ID and the stream stores an ID once within DedupWindow;
	// New rejects a configuration whose attempts could outlast
	// DedupWindow. 0 means 10: with the other defaults the waits add
	// up to about 12s, and to about a minute with attempts that each wait
	// out PublishTimeout — enough for a server restart. 1 means no
	// re-publishing. At most 1000.
	AsyncAttempts int
	// AsyncRetryWait is the wait before the first re-publish of a failed
	// PublishAsync message; it doubles after each further failure up to
	// 2s (or AsyncRetryWait, when larger), with 20% jitter so that
	// messages failing together do not come back together. 0 means
	// 100ms; otherwise at least 1ms.
	AsyncRetryWait time.Duration
	// Codec encodes payloads. nil means kanban.JSON.
	Codec kanban.Codec
	// Propagator carries context (a trace) from Publish to the handler in
	// the message headers; kanban/kanbanotel adapts OpenTelemetry's. nil
	// carries nothing.
	Propagator kanban.Propagator
	// Tracer records a span around each publish and each handler attempt
	// (messaging.system "nats", the stream as destination, the durable as
	// consumer group, the size of the payload as the Codec encoded it as
	// the body size); kanban/kanbanotel implements it with OpenTelemetry.
	// PublishAsync's span ends when the message is sent, before its
	// acknowledgement. nil records nothing.
	Tracer kanban.Tracer
	// OnPublishError is called, on a client goroutine, once for every
	// PublishAsync message whose failure is final (after AsyncAttempts),
	// with the message ID, before Flush can return. Keep it quick and do
	// not publish from it. A panic in it is logged at Error and goes no
	// further; the failure is returned by Flush all the same. nil means
	// the errors are only returned by Flush.
	OnPublishError func(id string, err error)
	// Logger receives errors the queue recovers from; each re-publish
	// of a PublishAsync message is logged at Debug level. nil discards
	// them.
	Logger *slog.Logger
}

var streamName = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

// maxNameLen is the longest stream or consumer name JetStream takes.
const maxNameLen = 255

// Validate reports the first field out of range, naming it.
func (c Options) Validate() error {
	for _, f := range []struct{ name, v string }{{"Stream", c.Stream}, {"Durable", c.Durable}, {"DeadLetterStream", c.DeadLetterStream}} {
		if f.v != "" && !streamName.MatchString(f.v) {
			return fmt.Errorf("natsjs: invalid %s %q: letters, digits, '-' and '_' only", f.name, f.v)
		}
	}
	switch {
	case c.Capacity < 0:
		return fmt.Errorf("natsjs: invalid Capacity %d: must not be negative", c.Capacity)
	case c.MaxBytes < 0:
		return fmt.Errorf("natsjs: invalid MaxBytes %d: must not be negative", c.MaxBytes)
	case c.MaxAge < 0 || (c.MaxAge > 0 && c.MaxAge < 100*time.Millisecond):
		return fmt.Errorf("natsjs: invalid MaxAge %v: must be 0 or at least 100ms", c.MaxAge)
	case c.DeadLetterLimit < 0:
		return fmt.Errorf("natsjs: invalid DeadLetterLimit %d: must not be negative", c.DeadLetterLimit)
	case c.DeadLetterMaxBytes < 0:
		return fmt.Errorf("natsjs: invalid DeadLetterMaxBytes %d: must not be negative", c.DeadLetterMaxBytes)
	case c.Replicas < 0 || c.Replicas > 5:
		return fmt.Errorf("natsjs: invalid Replicas %d: must be between 0 and 5", c.Replicas)
	case c.DedupWindow < 0 || (c.DedupWindow > 0 && c.DedupWindow < 100*time.Millisecond):
		return fmt.Errorf("natsjs: invalid DedupWindow %v: must be 0 or at least 100ms", c.DedupWindow)
	case c.MaxAge > 0 && c.DedupWindow > c.MaxAge:
		return fmt.Errorf("natsjs: invalid DedupWindow %v: must not exceed MaxAge %v", c.DedupWindow, c.MaxAge)
	case c.Storage > MemoryStorage:
		return fmt.Errorf("natsjs: invalid Storage %d", c.Storage)
	case c.AckWait < 0 || (c.AckWait > 0 && c.AckWait < 100*time.Millisecond):
		return fmt.Errorf("natsjs: invalid AckWait %v: must be 0 or at least 100ms", c.AckWait)
	case c.FetchWait < 0 || (c.FetchWait > 0 && c.FetchWait < 10*time.Millisecond):
		return fmt.Errorf("natsjs: invalid FetchWait %v: must be 0 or at least 10ms", c.FetchWait)
	case c.MaxPublishPending < 0:
		return fmt.Errorf("natsjs: invalid MaxPublishPending %d: must not be negative", c.MaxPublishPending)
	case c.PublishTimeout < 0 || (c.PublishTimeout > 0 && c.PublishTimeout < time.Millisecond):
		return fmt.Errorf("natsjs: invalid PublishTimeout %v: must be 0 or at least 1ms", c.PublishTimeout)
	case c.AsyncAttempts < 0 || c.AsyncAttempts > maxAsyncAttempts:
		return fmt.Errorf("natsjs: invalid AsyncAttempts %d: must be between 0 and %d", c.AsyncAttempts, maxAsyncAttempts)
	case c.AsyncRetryWait < 0 || (c.AsyncRetryWait > 0 && c.AsyncRetryWait < time.Millisecond):
		return fmt.Errorf("natsjs: invalid AsyncRetryWait %v: must be 0 or at least 1ms", c.AsyncRetryWait)
	}
	// A nil pointer or function in an interface is not nil: it would
	// panic in every Publish, or in every handler attempt.
	for _, f := range []struct {
		name string
		v    any
	}{{"Codec", c.Codec}, {"Propagator", c.Propagator}, {"Tracer", c.Tracer}} {
		if typednil.Holds(f.v) {
			return fmt.Errorf("natsjs: invalid %s: a nil %T", f.name, f.v)
		}
	}
	d := c.withDefaults()
	for _, f := range []struct{ name, set, v string }{{"Stream", c.Stream, d.Stream}, {"Durable", c.Durable, d.Durable}, {"DeadLetterStream", c.DeadLetterStream, d.DeadLetterStream}} {
		if len(f.v) > maxNameLen {
			from := ""
			if f.set == "" {
				from = " (made from Stream)"
			}
			return fmt.Errorf("natsjs: invalid %s %q%s: %d bytes, more than the %d JetStream takes", f.name, f.v, from, len(f.v), maxNameLen)
		}
	}
	if d.DeadLetterStream == d.Stream {
		return fmt.Errorf("natsjs: invalid DeadLetterStream %q: must differ from Stream %q", c.DeadLetterStream, d.Stream)
	}
	if span := d.retrySpan(); span > d.DedupWindow {
		window := ""
		if c.DedupWindow == 0 && d.DedupWindow == c.MaxAge {
			window = " (MaxAge)"
		}
		return fmt.Errorf("natsjs: invalid AsyncAttempts %d: re-publishing may last up to %v, beyond DedupWindow %v%s", d.AsyncAttempts, span, d.DedupWindow, window)
	}
	return nil
}

func (c Options) withDefaults() Options {
	if c.Stream == "" {
		c.Stream = "KANBAN"
	}
	if c.Durable == "" {
		c.Durable = c.Stream + "_WORKERS"
	}
	if c.DeadLetterStream == "" {
		c.DeadLetterStream = c.Stream + "_DLQ"
	}
	if c.Capacity == 0 {
		c.Capacity = 100000
	}
	if c.DeadLetterLimit == 0 {
		c.DeadLetterLimit = 10000
	}
	if c.DedupWindow == 0 {
		c.DedupWindow = 2 * time.Minute
		if c.MaxAge > 0 {
			c.DedupWindow = min(c.DedupWindow, c.MaxAge)
		}
	}
	if c.AckWait == 0 {
		c.AckWait = 30 * time.Second
	}
	if c.FetchWait == 0 {
		c.FetchWait = time.Second
	}
	if c.MaxPublishPending == 0 {
		c.MaxPublishPending = 256
	}
	if c.PublishTimeout == 0 {
		c.PublishTimeout = 5 * time.Second
	}
	if c.AsyncAttempts == 0 {
		c.AsyncAttempts = 10
	}
	if c.AsyncRetryWait == 0 {
		c.AsyncRetryWait = 100 * time.Millisecond
	}
	if c.Codec == nil {
		c.Codec = kanban.JSON{}
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// Queue is a kanban.Queue on JetStream. It is safe for concurrent use.
//
// A Queue runs goroutines only for PublishAsync (the waits before
// re-publishing a failed send, and for the acknowledgement of a message
// sent to look for a refusal, see PublishAsync); Shutdown stops them.
// Consumers are stopped through the ctx of Consume. The connection stays
// the caller's: close it after Shutdown.
type Queue[T any] struct {
	opts Options
	js   jetstream.JetStream
	// ajs sends PublishAsync's messages, and no others: its handlers are
	// told of the queue's messages alone, and its pending count is
	// theirs (see JetStream).
	ajs      jetstream.JetStream
	counters kanban.Counters
	async    asyncState
	backoff  kanban.Exponential // waits between re-publishes
	// keeper is whether this Queue publishes keepers (see
	// Options.Storage): New made the work stream with the keeper's
	// subject, and the connection may publish to it. sinceKeeper counts
	// the bytes published since the last one.
	keeper      bool
	sinceKeeper atomic.Int64
	// msgMax and deadMsgMax are the MaxMsgSize of the work stream and of
	// the dead-letter stream, when New used one that has it as it is: the
	// most bytes of headers and payload a message may take there. 0 means
	// no such bound.
	msgMax, deadMsgMax int64
	// workTaken and deadTaken are whether the server has answered a
	// publish of this Queue to the work subject, and to the dead-letter
	// stream's (see sendProbed).
	workTaken, deadTaken taken
}

var _ kanban.Queue[struct{}] = (*Queue[struct{}])(nil)

// New creates (or updates) the work stream and the dead-letter stream and
// returns the queue, or an error naming a bad field of opts. An update
// sets only what the queue sets — subjects, retention, discard policy,
// MaxMsgs, MaxBytes, MaxAge, MaxMsgSize, the deduplication window,
// storage, replicas and roll-ups — and keeps the rest as the stream has
// it: a description, compression, direct gets, metadata and the like
// that an administrator gave it (a connection not permitted to read the
// stream's info, $JS.API.STREAM.INFO.<name>, updates it with the queue's
// settings alone). For a
// file-stored work stream it publishes the keeper and waits, at most
// PublishTimeout, for the stream to store it; a keeper not stored (the
// connection not permitted to publish it, say) is logged at Warn and
// fails nothing (see Options.Storage).
//
// A connection whose user may not create or update a stream (publish to
// $JS.API.STREAM.CREATE.<name> or $JS.API.STREAM.UPDATE.<name>) uses the
// stream as it is when it exists — one an administrator made, or a
// process with those permissions — which needs $JS.API.STREAM.INFO.<name>
// alone; a stream whose configuration differs from opts is logged at
// Warn, naming the fields, and its own limits hold: its MaxBytes is the
// Queue's MaxBytes, or DeadLetterMaxBytes, in Options and in the
// refusals with ErrTooLarge, as is its MaxMsgSize, when it has one (a
// stream New updates has none); the work stream's deduplication window is
// the Queue's DedupWindow, and New fails, naming AsyncAttempts, when
// PublishAsync's re-publishing may outlast it (see
// Options.AsyncAttempts). When the stream does
// not exist, or its info is refused too, New fails at once with an error
// that wraps nats.ErrPermissionViolation and names the subjects refused.
func New[T any](ctx context.Context, nc *nats.Conn, opts Options) (*Queue[T], error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	if nc == nil {
		return nil, errors.New("natsjs: nil connection")
	}
	q := &Queue[T]{opts: opts.withDefaults()}
	c := q.opts
	q.backoff = c.retryBackoff()
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("natsjs: %w", err)
	}
	ajs, err := jetstream.New(nc,
		jetstream.WithPublishAsyncMaxPending(c.MaxPublishPending),
		jetstream.WithPublishAsyncTimeout(c.PublishTimeout),
		jetstream.WithPublishAsyncAckHandler(q.onAsyncAck),
		jetstream.WithPublishAsyncErrHandler(q.onAsyncErr),
	)
	if err != nil {
		return nil, fmt.Errorf("natsjs: %w", err)
	}
	q.js, q.ajs = js, ajs
	q.keeper = c.keeps()
	var overlap error // the keeper's subject refused
	for i, sc := range c.streams() {
		if i == 0 && q.keeper {
			kept := sc
			c.withKeeper(&kept)
			info, err := q.upsertStream(ctx, kept)
			if !subjectsOverlap(err) {
				if err != nil {
					return nil, fmt.Errorf("natsjs: stream %s: %w", sc.Name, err)
				}
				// A stream the connection may not update is used as it
				// is: with a keeper only when it takes the keeper's subject.
				q.keeper = slices.Contains(info.Config.Subjects, keeperSubject(c.Stream))
				q.boundBytes(i, kept.MaxBytes, info.Config.MaxBytes)
				q.boundMsgSize(i, info.Config.MaxMsgSize)
				if err := q.boundDedup(info.Config.Duplicates); err != nil {
					return nil, err
				}
				continue
			}
			// Another stream takes the keeper's subject: the work stream
			// goes without one, as a memory-stored one. (Or it takes the
			// work subject too, and the stream is refused again.)
			q.keeper = false
			overlap = err
		}
		info, err := q.upsertStream(ctx, sc)
		if err != nil {
			return nil, fmt.Errorf("natsjs: stream %s: %w", sc.Name, err)
		}
		q.boundBytes(i, sc.MaxBytes, info.Config.MaxBytes)
		q.boundMsgSize(i, info.Config.MaxMsgSize)
		if i == 0 {
			if err := q.boundDedup(info.Config.Duplicates); err != nil {
				return nil, err
			}
		}
		if i == 0 && overlap != nil {
			c.Logger.Warn("natsjs: the work stream's keeper subject is another stream's; the work stream has no keeper",
				"stream", c.Stream, "subject", keeperSubject(c.Stream), "err", overlap)
		}
	}
	switch err := q.firstKeeper(ctx); {
	case errors.Is(err, errKeeperDenied):
		c.Logger.Warn("natsjs: the connection may not publish to the work stream's keeper subject; the queue publishes no keeper",
			"stream", c.Stream, "subject", keeperSubject(c.Stream), "err", err)
	case err != nil:
		// It saves work; the queue works without it.
		c.Logger.Warn("natsjs: the work stream's keeper not stored", "stream", c.Stream, "err", err)
	}
	return q, nil
}

// boundBytes takes got, the MaxBytes of a stream used as it is (see
// upsertStream), the work stream (i 0) or the dead-letter stream (i 1),
// when it differs from want, the one New asked for: into MaxBytes or
// DeadLetterMaxBytes, so that a message that alone takes more than the
// stream holds is refused with ErrTooLarge, not waited for as one that
// finds the stream full. A work stream with a keeper holds the keeper's
// size more.
func (q *Queue[T]) boundBytes(i int, want, got int64) {
	if got == want {
		return
	}
	if got <= 0 {
		got = 0 // no limit
	} else if i == 0 && q.keeper {
		got = max(got-q.opts.keeperSize(), 1)
	}
	if i == 0 {
		q.opts.MaxBytes = got
	} else {
		q.opts.DeadLetterMaxBytes = got
	}
}

// boundMsgSize takes got, the MaxMsgSize of a stream used as it is (see
// upsertStream), the work stream (i 0) or the dead-letter stream (i 1):
// New asks for none, so that a message the stream would refuse, or whose
// dead letter it would, is refused with ErrTooLarge instead.
func (q *Queue[T]) boundMsgSize(i int, got int32) {
	if got <= 0 {
		return
	}
	if i == 0 {
		q.msgMax = int64(got)
	} else {
		q.deadMsgMax = int64(got)
	}
}

// boundDedup takes got, the deduplication window of the work stream used
// as it is (see upsertStream), into DedupWindow when it differs from the
// one New asked for, and refuses, as Validate does, a queue whose
// PublishAsync may send a message again after the stream has forgotten
// its ID: the stream would store it twice.
func (q *Queue[T]) boundDedup(got time.Duration) error {
	if got <= 0 || got == q.opts.DedupWindow {
		return nil
	}
	q.opts.DedupWindow = got
	if span := q.opts.retrySpan(); span > got {
		return fmt.Errorf("natsjs: invalid AsyncAttempts %d: re-publishing may last up to %v, beyond the DedupWindow %v of stream %s, which the connection may not update",
			q.opts.AsyncAttempts, span, got, q.opts.Stream)
	}
	return nil
}

// streams returns the configurations of the work stream and the
// dead-letter stream. They differ in name, retention and limits alone:
// the work stream removes a message once it is acknowledged and refuses
// new ones when full (backpressure); the dead-letter stream keeps
// messages and drops the oldest beyond its limits. A byte limit not set
// is -1, not left out, so that New removes one set before. c has its
// defaults filled in.
func (c Options) streams() [2]jetstream.StreamConfig {
	storage := jetstream.FileStorage
	if c.Storage == MemoryStorage {
		storage = jetstream.MemoryStorage
	}
	stream := func(name string, retention jetstream.RetentionPolicy, discard jetstream.DiscardPolicy, limit int64) jetstream.StreamConfig {
		return jetstream.StreamConfig{
			Name:       name,
			Subjects:   []string{name},
			Retention:  retention,
			Discard:    discard,
			MaxMsgs:    limit,
			Duplicates: c.DedupWindow,
			Storage:    storage,
			Replicas:   max(c.Replicas, 1),
		}
	}
	work := stream(c.Stream, jetstream.WorkQueuePolicy, jetstream.DiscardNew, c.Capacity)
	work.MaxAge = c.MaxAge
	work.MaxBytes = byteLimit(c.MaxBytes)
	dead := stream(c.DeadLetterStream, jetstream.LimitsPolicy, jetstream.DiscardOld, c.DeadLetterLimit)
	dead.MaxBytes = byteLimit(c.DeadLetterMaxBytes)
	return [2]jetstream.StreamConfig{work, dead}
}

// byteLimit is a stream's MaxBytes for an option's n: -1, no limit, for 0.
func byteLimit(n int64) int64 {
	if n > 0 {
		return n
	}
	return -1
}

// JetStream returns a JetStream context on the queue's connection, the one
// Publish, TryPublish and the queue's requests go through. PublishAsync
// sends through a context of its own: asynchronous publishes of the
// caller's through this one are neither counted, nor settled, nor
// reported by the queue (Stats, MaxPublishPending, Flush, Shutdown,
// OnPublishError).
func (q *Queue[T]) JetStream() jetstream.JetStream { return q.js }

// Options returns the queue's options with defaults filled in, and
// MaxBytes, DeadLetterMaxBytes and DedupWindow those of streams New used
// as they are (see New).
func (q *Queue[T]) Options() Options { return q.opts }

// Stats returns the counts of this queue value.
func (q *Queue[T]) Stats() kanban.QueueStats { return q.counters.Snapshot() }

// ErrInvalidMessage is wrapped by the error Publish, TryPublish and
// PublishAsync return, without sending anything, for a message whose ID,
// Key or headers would not arrive as written: NATS headers drop the white
// space (space, tab) around a value, turn CR and LF into spaces and refuse
// header names outside the HTTP token characters; and a header named
// Kanban-... (the queue's own: Kanban-Id would replace the message's ID,
// Kanban-Key its Key) or Nats-... (the server's: Nats-Msg-Id is the dedup
// ID, Nats-Expected-Stream and the like make it refuse or act); and a
// header named Status, not empty, on a message whose payload encodes to
// no bytes, which nats.go takes for the server's status reply and never
// delivers. A Memory queue takes every such header as a plain one. The
// error names the field or header.
var ErrInvalidMessage = errors.New("natsjs: invalid message")

// checkIdentifier reports why the message's ID or Key v (field names
// which) would not arrive as written, or is unfit to identify a message.
func checkIdentifier(field, v string) error {
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < 0x20 || c == 0x7f {
			return fmt.Errorf("%w %s %q: control character %q at byte %d: an ID or Key travelling in a NATS header must be printable text", ErrInvalidMessage, field, v, c, i)
		}
	}
	if v != "" && (v[0] == ' ' || v[len(v)-1] == ' ') {
		return fmt.Errorf("%w %s %q: begins or ends with a space, which NATS headers drop", ErrInvalidMessage, field, v)
	}
	return nil
}

// checkHeader reports why the header name: value would not arrive as
// written. The error names the header and never shows its value, which
// may be a secret.
func checkHeader(name, value string) error {
	if name == "" {
		return fmt.Errorf("%w header name \"\": must not be empty", ErrInvalidMessage)
	}
	if i := badNameByte(name); i >= 0 {
		return fmt.Errorf("%w header name %q: %q at byte %d; a name holds letters, digits and !#$%%&'*+-.^_`|~ only", ErrInvalidMessage, name, name[i], i)
	}
	if strings.HasPrefix(name, "Kanban-") || strings.HasPrefix(name, "Nats-") {
		return fmt.Errorf("%w header %q: names beginning Kanban- or Nats- are the queue's and the server's", ErrInvalidMessage, name)
	}
	if strings.ContainsAny(value, "\r\n") {
		return fmt.Errorf("%w header %q: its value holds CR or LF, which NATS headers turn into spaces", ErrInvalidMessage, name)
	}
	if value != "" && (isBlank(value[0]) || isBlank(value[len(value)-1])) {
		return fmt.Errorf("%w header %q: its value begins or ends with white space, which NATS headers drop", ErrInvalidMessage, name)
	}
	return nil
}

// carried reports whether the header name of a message delivered goes
// with it into its dead letter, and of a dead letter with its message
// redriven: not a name nats.go refuses to send, one outside the HTTP
// token characters, which a client of another language may have
// published with; nor one beginning Nats-, which Publish refuses and the
// server acts on (Nats-Expected-Stream, which other clients' publish
// options set, had the dead-letter stream refuse every dead letter of
// the message), but for Nats-Msg-Id, which the dead letter replaces.
func carried(name string) bool {
	return name != "" && badNameByte(name) < 0 && (!strings.HasPrefix(name, "Nats-") || name == HeaderID)
}

// badNameByte returns the index of the first byte of name that a header
// name may not hold (outside the HTTP token characters), or -1.
func badNameByte(name string) int {
	for i := 0; i < len(name); i++ {
		if !isTokenChar(name[i]) {
			return i
		}
	}
	return -1
}

// statusHeader is the header nats.go reads the status of a server's
// reply from, in a message without a payload: a pull request's "no
// messages", "request timeout", heartbeat and the like.
const statusHeader = "Status"

// isTokenChar reports whether c may appear in a header name: an HTTP
// token character (RFC 9110), as nats.go accepts.
func isTokenChar(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}

func isBlank(c byte) bool { return c == ' ' || c == '\t' }

// marshal checks msg's ID and Key and returns its payload encoded by the
// Codec: the body of its NATS message.
func (q *Queue[T]) marshal(msg kanban.Message[T]) ([]byte, error) {
	if msg.ID == "" {
		return nil, kanban.ErrNoID
	}
	if err := checkIdentifier("ID", msg.ID); err != nil {
		return nil, err
	}
	if err := checkIdentifier("Key", msg.Key); err != nil {
		return nil, err
	}
	data, err := q.opts.Codec.Marshal(msg.Payload)
	if err != nil {
		return nil, fmt.Errorf("natsjs: encoding message %s: %w", msg.ID, err)
	}
	return data, nil
}

// encode returns the NATS message of msg, whose payload marshal encoded
// to data, with the trace context of ctx in its headers, or the error
// that refuses it.
func (q *Queue[T]) encode(ctx context.Context, msg kanban.Message[T], data []byte) (*nats.Msg, error) {
	hdr := kanban.InjectHeaders(ctx, q.opts.Propagator, msg.Headers)
	for k, v := range hdr {
		if err := checkHeader(k, v); err != nil {
			return nil, err
		}
	}
	if len(data) == 0 && hdr[statusHeader] != "" {
		return nil, fmt.Errorf("%w header %q: on a message whose payload encodes to nothing, NATS clients read it as the server's status and never deliver the message", ErrInvalidMessage, statusHeader)
	}
	nh := make(nats.Header, len(hdr)+2)
	for k, v := range hdr {
		nh[k] = []string{v} // as written: Header.Set would canonicalize
	}
	nh[HeaderID] = []string{msg.ID}
	if msg.Key != "" {
		nh[HeaderKey] = []string{msg.Key}
	}
	hlen := headerSize(nh)
	if max := q.js.Conn().MaxPayload(); max > 0 {
		if n := int64(hlen + len(data) + deadLetterRoom(msg.ID)); n > max {
			return nil, fmt.Errorf("%w: message %s takes %d bytes with the headers of its dead letter, more than the %d the server takes", ErrTooLarge, msg.ID, n, max)
		}
	}
	if n := int64(hlen + len(data)); q.msgMax > 0 && n > q.msgMax {
		return nil, fmt.Errorf("%w: message %s takes %d bytes with its headers, more than the MaxMsgSize %d of stream %s", ErrTooLarge, msg.ID, n, q.msgMax, q.opts.Stream)
	}
	if n := int64(hlen + deadLetterRoom(msg.ID) + len(data)); q.deadMsgMax > 0 && n > q.deadMsgMax {
		return nil, fmt.Errorf("%w: message %s takes %d bytes as a dead letter, more than the MaxMsgSize %d of stream %s", ErrTooLarge, msg.ID, n, q.deadMsgMax, q.opts.DeadLetterStream)
	}
	if q.opts.MaxBytes > 0 {
		if n := q.storedSize(q.opts.Stream, hlen, len(data)); n > q.opts.MaxBytes {
			return nil, fmt.Errorf("%w: message %s takes %d bytes in the work stream, more than its MaxBytes %d", ErrTooLarge, msg.ID, n, q.opts.MaxBytes)
		}
	}
	if q.opts.DeadLetterMaxBytes > 0 {
		if n := q.storedSize(q.opts.DeadLetterStream, hlen+deadLetterRoom(msg.ID), len(data)); n > q.opts.DeadLetterMaxBytes {
			return nil, fmt.Errorf("%w: message %s takes %d bytes as a dead letter, more than DeadLetterMaxBytes %d", ErrTooLarge, msg.ID, n, q.opts.DeadLetterMaxBytes)
		}
	}
	return &nats.Msg{Subject: q.opts.Stream, Data: data, Header: nh}, nil
}

// ErrTooLarge is wrapped by the error Publish, TryPublish and
// PublishAsync return, without sending anything, for a message that
// takes more room in the work stream than Options.MaxBytes: it would
// never fit, so it is not a full stream (kanban.ErrFull) to wait for. It
// is also wrapped for a message that, with the headers its dead letter
// adds (about 1.2 KB and its ID again), is larger than the server's
// max_payload (1 MB by default), or takes more room in the dead-letter
// stream than Options.DeadLetterMaxBytes: its dead letter could never be
// stored. So it is for a message larger, with its headers (and, as a dead
// letter, with those its dead letter adds), than the MaxMsgSize of a
// stream New used as it is (see New). A consumer's dead-lettering of a
// message wraps it, and hands the message back, when its dead letter
// takes more than DeadLetterMaxBytes.
// RedriveDeadLetters wraps it for a dead letter whose message, with the
// Kanban-Id and longer Nats-Msg-Id of its redrive, takes more than
// MaxBytes (one Publish fitted within a few dozen bytes of it, or one
// published before MaxBytes was lowered), or whose dead letter, as
// Publish counts it with the trace context of the redrive, would take
// more than the server's max_payload or DeadLetterMaxBytes.
var ErrTooLarge = errors.New("natsjs: message too large")

// maxReason is the most bytes of a dead letter's reason kept in its
// Kanban-Reason header.
const maxReason = 1024

// deadLetterRoom is the most a dead letter's headers add to those of a
// message with ID id: Kanban-Id, the ".dead.<sequence>.<ns>" of its
// Nats-Msg-Id, and the reason, attempts and time.
func deadLetterRoom(id string) int {
	const line = len(": \r\n")
	return len(HeaderMessageID) + line + len(id) +
		len(".dead.") + 20 + len(".") + 20 +
		len(HeaderReason) + line + maxReason +
		len(HeaderAttempts) + line + 20 +
		len(HeaderTime) + line + len(time.RFC3339Nano)
}

// cutReason returns reason cut to its first maxReason bytes, at a
// character boundary.
func cutReason(reason string) string {
	if len(reason) <= maxReason {
		return reason
	}
	n := maxReason
	for n > 0 && !utf8.RuneStart(reason[n]) {
		n--
	}
	return reason[:n]
}

// headerSize is the length of h as NATS sends it: a version line, a
// line per value and an empty line. The values of a message Publish takes
// hold no CR or LF, which NATS would rewrite.
func headerSize(h nats.Header) int {
	n := len("NATS/1.0\r\n") + len("\r\n")
	for k, vs := range h {
		for _, v := range vs {
			n += len(k) + len(": ") + len(v) + len("\r\n")
		}
	}
	return n
}

// storedSize is the room a message of hlen header and dlen data bytes
// takes in the queue's stream named stream (its subject), as the server
// counts it against the stream's MaxBytes: with its subject, and in a
// file store the record's framing (length, sequence, time, subject
// length, header length, hash), in memory its sequence and time.
func (q *Queue[T]) storedSize(stream string, hlen, dlen int) int64 {
	n := int64(len(stream) + hlen + dlen)
	if q.opts.Storage == MemoryStorage {
		return n + 16
	}
	return n + 34
}

// isFull reports the server refusing a message for a stream at its limit:
// its messages, its bytes, or (a work stream with a keeper) the messages
// of the work subject.
func isFull(err error) bool {
	return err != nil && (strings.Contains(err.Error(), "maximum messages exceeded") ||
		strings.Contains(err.Error(), "maximum bytes exceeded") ||
		strings.Contains(err.Error(), "maximum messages per subject exceeded"))
}

// fullError returns err, the server's refusal of a message for a full
// stream, as kanban.ErrFull that still wraps it: the server's API error
// (its code, and which limit was reached) stays readable with errors.As.
func fullError(err error) error {
	return fmt.Errorf("%w: %w", kanban.ErrFull, err)
}

// Publish stores msg and waits for the stream's acknowledgement. While
// the stream is at Capacity it retries, backing off up to 100ms, until
// there is room or ctx ends. A ctx that has ended sends nothing: ctx's
// error is returned, as a Memory queue returns it.
//
// The ID and Key travel in NATS headers, and so must arrive exactly as
// published — the ID is what handlers and deduplication go by: Publish
// refuses, with an error wrapping ErrInvalidMessage that names the field,
// an ID or Key holding a control character (CR, LF, tab, NUL, ...) or
// beginning or ending with a space. A header of msg.Headers is refused
// the same way for a name that is empty or holds a character other than
// an HTTP token's (letters, digits and !#$%&'*+-.^_`|~) or beginning
// Kanban- or Nats- (names the queue and the server read, matched with
// their case, as NATS matches them), and for a value holding CR or LF or
// beginning or ending with a space or tab, and a header named Status (not
// empty) when the payload encodes to no bytes: nats.go reads such a
// delivery as the server's status reply, not as a message. The error
// names the header but not its value. An empty ID is kanban.ErrNoID, and
// a message that alone takes more than MaxBytes, or whose dead letter
// would take more than DeadLetterMaxBytes, is refused with ErrTooLarge.
//
// A connection not permitted to publish to the work subject, Stream, is
// answered by nothing but the server's refusal, an error on the
// connection: until the server has answered one publish of the Queue to
// the work subject, Publish and TryPublish send each with a ping and look
// for that refusal, and fail at once with an error that wraps
// nats.ErrPermissionViolation and names the subject, instead of waiting
// out PublishTimeout.
func (q *Queue[T]) Publish(ctx context.Context, msg kanban.Message[T]) error {
	return q.publish(ctx, msg, true)
}

// TryPublish stores msg or returns an error wrapping kanban.ErrFull when
// the stream is at Capacity (or MaxBytes); the error wraps the server's
// answer too (a *jetstream.APIError). It checks msg, and fails on a
// connection not permitted to publish to the work subject, as Publish
// does.
func (q *Queue[T]) TryPublish(ctx context.Context, msg kanban.Message[T]) error {
	return q.publish(ctx, msg, false)
}

// natsSystem is the queue's messaging.system in spans.
const natsSystem = "nats"

func (q *Queue[T]) publish(ctx context.Context, msg kanban.Message[T], wait bool) error {
	if q.opts.Tracer != nil {
		return q.sendTraced(ctx, msg, func(ctx context.Context, data []byte) error {
			return q.publishMsg(ctx, msg, data, wait)
		})
	}
	data, err := q.marshal(msg)
	if err != nil {
		return err
	}
	return q.publishMsg(ctx, msg, data, wait)
}

// sendTraced runs publish, a publish of msg given its payload encoded
// (marshal), in the span of a send, as kanban.SendTraced does. The
// payload is encoded before the span starts, so that the Tracer is told
// its size (Operation.BodySize); the headers, which carry the span's
// trace context, are encoded in the span. A payload that cannot be
// encoded (or a message marshal refuses) ends the span with the error,
// without publish, and a Codec that panics or calls runtime.Goexit ends
// it with kanban.ErrPublishInterrupted, as one in publish does.
func (q *Queue[T]) sendTraced(ctx context.Context, msg kanban.Message[T], publish func(context.Context, []byte) error) error {
	op := kanban.Operation{Type: kanban.OpSend, System: natsSystem, Queue: q.opts.Stream, MessageID: msg.ID}
	marshalled := false
	defer func() {
		if !marshalled {
			_ = kanban.SendTracedOp(ctx, q.opts.Tracer, op, func(context.Context) error { return kanban.ErrPublishInterrupted })
		}
	}()
	data, err := q.marshal(msg)
	marshalled = true
	op.BodySize = len(data)
	return kanban.SendTracedOp(ctx, q.opts.Tracer, op, func(ctx context.Context) error {
		if err != nil {
			return err
		}
		return publish(ctx, data)
	})
}

func (q *Queue[T]) publishMsg(ctx context.Context, msg kanban.Message[T], data []byte, wait bool) error {
	nm, err := q.encode(ctx, msg, data)
	if err != nil {
		return err
	}
	poll := time.Millisecond
	for {
		if err := ctx.Err(); err != nil {
			// Sent, the message might be stored while the caller is told
			// it was not.
			return err
		}
		pctx, cancel := context.WithTimeout(ctx, q.opts.PublishTimeout)
		ack, err := q.sendWork(pctx, nm)
		cancel()
		switch {
		case err == nil:
			q.countAck(ack)
			q.published(len(nm.Data))
			return nil
		case !isFull(err):
			return fmt.Errorf("natsjs: publishing message %s: %w", msg.ID, unanswered(err, q.opts.Stream))
		case !wait:
			return fmt.Errorf("natsjs: publishing message %s: %w", msg.ID, fullError(err))
		}
		t := time.NewTimer(poll)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		}
		poll = min(2*poll, 100*time.Millisecond)
	}
}

// unanswered names stream in err, a publish's, when no stream answered
// it: jetstream's error names none, and the stream may have been deleted.
func unanswered(err error, stream string) error {
	if errors.Is(err, jetstream.ErrNoStreamResponse) {
		return fmt.Errorf("stream %s did not answer (deleted, or JetStream unavailable): %w", stream, err)
	}
	return err
}

// sendWork publishes nm to the work subject, as jetstream's PublishMsg
// does, and returns the stream's acknowledgement; see sendProbed.
func (q *Queue[T]) sendWork(ctx context.Context, nm *nats.Msg) (*jetstream.PubAck, error) {
	return q.sendProbed(ctx, nm, &q.workTaken)
}

// sendProbed publishes nm, as jetstream's PublishMsg does, and returns
// the stream's acknowledgement. Until the server has answered one
// publish to nm's subject (t), each is sent as a probe (see
// probeRequest): a connection not permitted to publish to the subject is
// answered by nothing but the server's refusal, an error on the
// connection, and a request waited out PublishTimeout. Once one is
// answered, the connection may publish there, and publishes go as plain
// requests: also those still waiting for their turn to probe (probes on
// a connection take turns of a round trip each, and publishers starting
// together would each wait for all those before it).
func (q *Queue[T]) sendProbed(ctx context.Context, nm *nats.Msg, t *taken) (*jetstream.PubAck, error) {
	if t.ok.Load() {
		return q.js.PublishMsg(ctx, nm)
	}
	reply, err := probeRequestUnless(ctx, q.js.Conn(), nm, t.done())
	switch {
	case errors.Is(err, errAnswered):
		return q.js.PublishMsg(ctx, nm)
	case errors.Is(err, nats.ErrNoResponders):
		// No stream yet: PublishMsg tries again for one coming back (a
		// server restarting, a leader elected). The server let the probe
		// through, so an answer to it is as good as the probe's.
		ack, err := q.js.PublishMsg(ctx, nm)
		if streamAnswered(err) {
			t.answer()
		}
		return ack, err
	case err != nil:
		return nil, err
	}
	t.answer()
	return pubAckOf(reply)
}

// streamAnswered reports whether err, a publish's outcome, says that a
// stream answered it: an acknowledgement (nil), or the stream's refusal.
func streamAnswered(err error) bool {
	var api *jetstream.APIError
	return err == nil || errors.As(err, &api)
}

// taken is whether the server has answered a publish to one subject (see
// sendProbed). The zero value is none answered yet.
type taken struct {
	ok   atomic.Bool
	once sync.Once
	ch   chan struct{} // closed once ok is set; made by done
}

// done returns a channel closed once a publish has been answered.
func (t *taken) done() <-chan struct{} {
	t.once.Do(func() { t.ch = make(chan struct{}) })
	return t.ch
}

// answer records that a publish has been answered.
func (t *taken) answer() {
	t.done()
	if !t.ok.Swap(true) {
		close(t.ch)
	}
}

func (q *Queue[T]) countAck(ack *jetstream.PubAck) {
	if ack.Duplicate {
		q.counters.AddDuplicates(1)
	} else {
		q.counters.AddPublished(1)
	}
}

// Consume creates or updates the durable consumer with MaxAckPending set
// to the WIP and runs h on the messages until ctx ends, then drains; see
// kanban.Serve. It returns once the server has answered the releases of
// the messages handed back, which are sent without waiting for each
// answer in turn, and has confirmed the settlements sent before the stop
// without waiting for their answers (see the package doc). A message
// waiting out the back-off of a failed attempt holds its slot of MaxAckPending until
// JetStream delivers it again (see the package doc): while WIP messages
// wait so, the durable delivers nothing else. Every process sharing the
// durable should use the same WIP and AckWait: the last one to start
// sets them for all (see Options.AckWait). Updating a durable that
// exists sets the queue's own settings — AckWait, MaxAckPending,
// MaxDeliver, the subject filter, and no BackOff, headers-only delivery
// or priority groups — and keeps the others as the durable has them: a
// description, an inactivity threshold, pull request limits, metadata,
// and those the server lets no update change (MaxWaiting, ReplayPolicy,
// MemoryStorage). A durable whose AckPolicy is not explicit, or that
// pushes its messages (a DeliverSubject), neither of which an update
// changes, is refused at once with an error naming the setting, the
// value found and the one the queue needs; the durable is left as it
// is. A durable that goes away while
// Consume runs — deleted by an operator, or with its stream, which New
// then creates again — is created again, with this call's WIP, at the
// pull after its loss, also by a connection not permitted to read the
// durable's info ($JS.API.CONSUMER.INFO.<Stream>.<Durable>). While JetStream is out of reach
// (see Unreachable) — a server restarting, a cluster electing a leader —
// creating the durable is tried again, as pulling is, until ctx ends;
// any other refusal is returned. A durable an operator paused (nats
// consumer pause) stays paused, as the server keeps a pause when the
// durable is updated, and delivers nothing, to any process, until the
// pause ends: Consume logs that at Warn (Options.Logger), once, with the
// time the pause ends, and pulls meanwhile, as from a durable with
// nothing to deliver. (One paused while Consume runs is not told of: the
// server answers its pull requests as it does when there is nothing to
// deliver.)
//
// A connection whose user may not create the durable (publish to
// $JS.API.CONSUMER.CREATE.<Stream>.<Durable>...) uses the durable as it
// is when it exists, which needs $JS.API.CONSUMER.INFO.<Stream>.<Durable>;
// a durable whose configuration differs is logged at Warn, naming the
// fields, and leases are extended within its own AckWait, or within the
// shortest entry of its BackOff when it has one: the server delivers a
// message again once the entry for its deliveries (BackOff[n-1] on the
// nth, the last beyond them) has passed since its delivery or its last
// extension, and reports the first entry as the durable's AckWait, while
// a later one may be shorter; a MaxDeliver of
// its own below opts.MaxAttempts takes the place of MaxAttempts, so that
// a message failing at the last delivery the server makes is
// dead-lettered, not retried to stay in the stream for good (a message
// handed back unstarted uses up one of those deliveries too, see
// kanban.ConsumeOptions.MaxAttempts, and may still reach MaxDeliver
// unhandled: the server then keeps it, undelivered); and its pull
// requests ask for no more messages than its MaxRequestBatch and wait no
// longer than its MaxRequestExpires, which the server refuses them
// beyond (as do those of any durable given them while Consume runs, from
// the pull request the server refused on: that refusal is logged, once).
// One that delivers headers only (HeadersOnly) is refused: its
// messages would arrive without their payloads. So is any durable,
// also one Consume made, changed to deliver headers only while Consume
// runs: at the first message it delivers without its payload, which is
// handed back, Consume stops pulling, drains as when ctx ends, and
// returns an error marked kanban.Permanent naming HeadersOnly. When the
// durable does not exist, or its info is refused too, Consume returns at
// once an error that wraps nats.ErrPermissionViolation and names the subjects refused;
// so it does, marked kanban.Permanent, when a pull request
// ($JS.API.CONSUMER.MSG.NEXT.<Stream>.<Durable>) is refused: as the
// refused request expires, within FetchWait and a second; and when the
// durable goes away while Consume runs, at the pull after its loss,
// with the refusal to create it again. A connection not permitted to
// acknowledge ($JS.ACK.<Stream>.<Durable>...) — an Ack, a Retry's
// negative acknowledgement, the Term of a message dead-lettered, a lease
// extended — has every message it handles delivered again after AckWait,
// handled again, without end; the server tells of such a refusal only as
// an error on the connection, which Consume looks for before each pull
// and as a pull request ends: it then returns the refusal, marked
// kanban.Permanent, wrapping nats.ErrPermissionViolation and naming the
// subject refused, within FetchWait and a second of the acknowledgement.
// To be told of every such error, also one that another error replaces
// as the connection's LastError, Consume chains an error handler of its
// own in front of the connection's (see nats.ErrorHandler) while it runs:
// the connection's handler is called with every error as before, and is
// the connection's handler again once the last Consume on the connection
// has returned. A handler set with nc.SetErrorHandler while a Consume
// runs replaces the chained one, and stays; Consume then reads
// LastError alone, and misses a refusal that another error replaces
// before it looks. One set at the very moment the first Consume on the
// connection chains its handler, or the last one to return puts the
// connection's own back, may be replaced by it, and lost: nats.go has no
// way to swap a handler at once. Set the connection's handler when
// connecting (nats.ErrorHandler), or while no Consume starts or returns.
//
// A closed connection (nc.Close, or nats.go giving up after MaxReconnects)
// never comes back: Consume then stops pulling — within FetchWait and a
// second, when a pull request is open — drains as when ctx ends, and
// returns an error marked kanban.Permanent that matches
// nats.ErrConnectionClosed (errors.Is), without logging it; so does a
// Consume started on a closed connection, at once.
func (q *Queue[T]) Consume(ctx context.Context, h kanban.Handler[T], opts kanban.ConsumeOptions) error {
	if err := opts.Validate(); err != nil {
		return err
	}
	if h == nil {
		// Refused before the durable every process shares is changed, or
		// JetStream waited for.
		return errors.New("natsjs: nil handler")
	}
	cons, err := q.consumer(ctx, opts.WithDefaults().WIP)
	if err != nil || cons == nil {
		return err
	}
	src := &source[T]{
		q: q, cons: cons, wip: opts.WithDefaults().WIP, leaseTime: q.opts.AckWait, ackSeen: q.js.Conn().LastError(), stop: ctx.Done(),
		log: opts.WithDefaults().Logger,
	}
	if info := cons.CachedInfo(); info != nil {
		if info.Config.HeadersOnly {
			// Its deliveries have no payload: each would be dead-lettered
			// as one that cannot be decoded, without it, and terminated.
			return q.headersOnlyError()
		}
		src.created = info.Created
		q.warnPaused(info)
		if d := leaseTimeOf(info.Config); d > 0 {
			src.leaseTime = d
		}
		src.maxBatch, src.maxExpires = info.Config.MaxRequestBatch, info.Config.MaxRequestExpires
		if md := info.Config.MaxDeliver; md > 0 && md < opts.WithDefaults().MaxAttempts {
			// The server delivers a message no more than MaxDeliver
			// times: one retried after its last delivery would stay in
			// the stream, neither handled nor dead-lettered.
			opts.MaxAttempts = md
		}
	}
	stop := watchErrors(q.js.Conn(), src.seeError)
	defer stop()
	err = kanban.Serve(ctx, src, h, opts, kanban.Runtime{
		Propagator: q.opts.Propagator, Counters: &q.counters,
		Tracer: q.opts.Tracer, System: natsSystem, Queue: q.opts.Stream, Consumer: q.opts.Durable,
	})
	src.wait()
	src.awaitReleases()
	src.confirmSent()
	return err
}

// warnPaused logs at Warn, naming the durable and when its pause ends,
// when info says it is paused (nats consumer pause): the server keeps a
// pause when Consume updates the durable, and the durable delivers
// nothing, to any process, until the pause ends.
func (q *Queue[T]) warnPaused(info *jetstream.ConsumerInfo) {
	if !info.Paused {
		return
	}
	until := info.Config.PauseUntil
	if until == nil {
		t := info.TimeStamp.Add(info.PauseRemaining)
		until = &t
	}
	q.opts.Logger.Warn("natsjs: the consumer is paused; it delivers nothing until the pause ends",
		"consumer", q.opts.Durable, "stream", q.opts.Stream, "pause_until", until.UTC(), "pause_remaining", info.PauseRemaining)
}

// headersOnlyError is the error of a durable that delivers headers only.
func (q *Queue[T]) headersOnlyError() error {
	return fmt.Errorf("natsjs: consumer %s delivers headers only (HeadersOnly): its messages' payloads would be lost", q.opts.Durable)
}

// consumer creates or updates the durable, again while JetStream is out
// of reach, 10 ms doubling to 1 s apart. It returns nil and no error when
// ctx ends first: the consumer stopped before it pulled anything. The
// error of a closed connection is marked kanban.Permanent.
func (q *Queue[T]) consumer(ctx context.Context, wip int) (jetstream.Consumer, error) {
	wait := 10 * time.Millisecond
	for {
		cons, err := q.upsertConsumer(ctx, q.consumerConfig(wip))
		if err == nil {
			return cons, nil
		}
		if ctx.Err() != nil {
			return nil, nil
		}
		err = fmt.Errorf("natsjs: consumer %s: %w", q.opts.Durable, connError(q.js.Conn(), err))
		if errors.Is(err, nats.ErrConnectionClosed) {
			return nil, kanban.Permanent(err) // never reopened: see Consume
		}
		if !Unreachable(err) {
			return nil, err
		}
		q.opts.Logger.Warn("natsjs: consumer not created yet; retrying", "err", err, "retry_in", wait)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, nil
		case <-t.C:
		}
		wait = min(2*wait, time.Second)
	}
}

// consumerConfig is the durable's configuration for a WIP of wip.
func (q *Queue[T]) consumerConfig(wip int) jetstream.ConsumerConfig {
	cfg := jetstream.ConsumerConfig{
		Durable:       q.opts.Durable,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       q.opts.AckWait,
		MaxAckPending: wip,
		MaxDeliver:    -1, // attempts are counted by the consumer runtime
	}
	if q.opts.keeps() {
		// Not the keeper. Also when this Queue made the stream without
		// one: another may have added it since, and the durable is shared.
		cfg.FilterSubject = q.opts.Stream
	}
	return cfg
}

// DeadLetters reads the dead-letter stream, oldest first: a request per
// dead letter. A connection not permitted to read it
// ($JS.API.STREAM.INFO.<DeadLetterStream>, and
// $JS.API.STREAM.MSG.GET.<DeadLetterStream>) fails at once with an error
// that wraps nats.ErrPermissionViolation and names the subject refused,
// as do ListDeadLetters, RedriveDeadLetters and DeleteDeadLetters, which
// need those too, and for a redrive and a delete
// $JS.API.STREAM.MSG.DELETE.<DeadLetterStream>, and for a redrive the
// work subject, Stream. Each call's first request to a subject is sent
// so that the server's refusal is seen: with a ping, and a read once more.
func (q *Queue[T]) DeadLetters(ctx context.Context) ([]kanban.DeadLetter, error) {
	s, info, err := q.stream(ctx, q.opts.DeadLetterStream)
	if err != nil {
		return nil, err
	}
	var out []kanban.DeadLetter
	err = q.scanDeadLetters(ctx, s, info.State, info.State.FirstSeq, false, func(m *jetstream.RawStreamMsg) bool {
		out = append(out, deadLetterOf(m))
		return true
	})
	return out, err
}

func deadLetterOf(m *jetstream.RawStreamMsg) kanban.DeadLetter {
	d := kanban.DeadLetter{Seq: m.Sequence, Payload: m.Data, Headers: kanban.Header{}}
	for k, v := range m.Header {
		if len(v) == 0 {
			continue
		}
		switch k {
		case HeaderID:
			if d.ID == "" {
				d.ID = v[0]
			}
		case HeaderMessageID:
			d.ID = v[0]
		case HeaderKey:
			d.Key = v[0]
		case HeaderReason:
			d.Reason = v[0]
		case HeaderAttempts:
			d.Attempts, _ = strconv.Atoi(v[0])
		case HeaderTime:
			d.Time, _ = time.Parse(time.RFC3339Nano, v[0])
		default:
			d.Headers[k] = v[0]
		}
	}
	if d.Time.IsZero() {
		// Stored by another client, without a time of its own (or one
		// that does not parse): the stream's is when it was stored. The
		// zero time would be before every DeadLetterFilter.Before.
		d.Time = m.Time
	}
	return d
}
